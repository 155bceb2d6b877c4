"""The reference policy: supervised pretraining (SFT) of the tiny GPT on a task's synthetic corpus, cached on disk.

The corpus (``Task.demonstration``) is well-formed but only partly right, so the pretrained model is fluent in the
format and leaves RL something to improve. Each task's model trains in well under 20 s on one CPU thread and is
cached under ``$SANDBOX_CACHE`` (default ``~/.cache/dropout-rl-sandbox``), keyed by everything that shapes it;
later runs reload it. The RL trainers start from these weights and keep a frozen copy, always in eval mode, as the
KL reference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..envs.lang_tasks import EOS, PAD, VOCAB, Task
from ..models.gpt import ModelConfig, TinyGPT, sample
from .progress import progress_bar

REWARD_ONLY = frozenset({"sparse", "partial_credit", "threshold", "reward_range"})  # do not change the corpus
REWARD_OPTIONS = ("sparse", "partial_credit")  # change the reward, so the reference's measured reward
VERSION = 2  # bump when the corpus, the model, the recipe or the cached stats change: old entries are then ignored
# 2: the stats record the reward options their reward was measured with


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    steps: int = 600
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    dropout: float = 0.1
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    seed: int = 0


def reward_options(task: Task) -> dict:
    """The task's options that change its reward but not its corpus (``--sparse``, ``--partial-credit``): one cached
    model serves them all, but its measured ``reference_reward`` holds only for the options it was measured with."""
    return {name: getattr(task, name, None) for name in REWARD_OPTIONS}


def cache_dir() -> Path:
    return Path(os.environ.get("SANDBOX_CACHE", Path.home() / ".cache" / "dropout-rl-sandbox"))


def model_config(task: Task, pc: PretrainConfig) -> ModelConfig:
    return ModelConfig(
        len(VOCAB), task.prompt_len + task.max_new_tokens, pc.d_model, pc.n_heads, pc.n_layers, pc.dropout
    )


def corpus_batch(task: Task, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` sequences prompt + demonstration + ``<eos>``, padded: ``(tokens (n, T), target mask (n, T))``. The
    mask marks the positions whose token is learned: the completion and its ``<eos>``, not the prompt."""
    prompts, infos = task.sample(n, rng)
    T = task.prompt_len + task.max_new_tokens
    tokens = np.full((n, T), PAD, dtype=np.int64)
    learn = np.zeros((n, T), dtype=bool)
    tokens[:, : task.prompt_len] = prompts
    for i, info in enumerate(infos):
        completion = (task.demonstration(info, rng) + [EOS])[: task.max_new_tokens]
        tokens[i, task.prompt_len : task.prompt_len + len(completion)] = completion
        learn[i, task.prompt_len : task.prompt_len + len(completion)] = True
    return torch.from_numpy(tokens), torch.from_numpy(learn)


def _key(task: Task, pc: PretrainConfig) -> str:
    """What shapes the model: the task's corpus (its name: reward options such as --sparse do not change the
    corpus), the recipe and the vocabulary. Never object reprs: they hold memory addresses."""
    corpus = {
        f.name: getattr(task, f.name)
        for f in dataclasses.fields(task)
        if f.name not in REWARD_ONLY and not callable(getattr(task, f.name))
    }
    spec = {"version": VERSION, "task": corpus, "pretrain": dataclasses.asdict(pc), "vocab": VOCAB}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_path(task: Task, pc: PretrainConfig) -> Path:
    return cache_dir() / f"ref-{task.name}-{_key(task, pc)}.pt"


def pretrain(task: Task, pc: PretrainConfig = PretrainConfig(), progress: bool = False) -> tuple[TinyGPT, dict]:
    """Train the reference on ``task``'s corpus; return ``(model in eval mode, stats)``."""
    torch.manual_seed(pc.seed)
    rng = np.random.default_rng(pc.seed)
    model = TinyGPT(model_config(task, pc))
    opt = torch.optim.AdamW(model.parameters(), lr=pc.learning_rate, weight_decay=pc.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=pc.learning_rate, total_steps=pc.steps, pct_start=0.1)
    t0 = time.perf_counter()
    model.train()
    loss = torch.tensor(float("nan"))
    bar = progress_bar(pc.steps, quiet=not progress, desc=f"pretrain {task.name}")
    for _ in range(pc.steps):
        bar.update(1)
        tokens, learn = corpus_batch(task, pc.batch_size, rng)
        logits, _, _ = model(tokens)  # all T positions (the last prediction is unused): see TinyGPT's note on T
        target = tokens[:, 1:].masked_fill(~learn[:, 1:], -100)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    bar.close()
    model.eval()
    stats = {
        "task": task.name,
        "seconds": time.perf_counter() - t0,
        "final_loss": loss.item(),
        "steps": pc.steps,
        **evaluate_reference(model, task),
        "reward_options": reward_options(task),
    }
    return model, stats


@torch.no_grad()
def evaluate_reference(model: TinyGPT, task: Task, n: int = 512, seed: int = 12345) -> dict:
    """Mean reward and format rate of ``n`` sampled completions (eval mode, temperature 1)."""
    prompts, infos = task.sample(n, np.random.default_rng(seed))
    was_training = model.training
    model.eval()
    completions, _ = sample(model, torch.from_numpy(prompts), task.max_new_tokens)
    model.train(was_training)
    rewards = task.rewards(infos, completions.numpy())
    ended = (completions == EOS).any(1).float().mean().item()
    return {"reference_reward": float(rewards.mean()), "reference_eos_rate": ended}


def load_reference(
    task: Task, pc: PretrainConfig = PretrainConfig(), progress: bool = False, force: bool = False
) -> tuple[TinyGPT, dict]:
    """The cached reference for ``task`` (pretrained now if missing or ``force``), in eval mode.

    Neither path moves the caller's random stream (pretraining, and building a model to load weights into, both
    draw random numbers), so a run gives the same numbers whether its reference was cached or not.
    """
    with torch.random.fork_rng(devices=[]):
        return _load_or_pretrain(task, pc, progress, force)


def _load_or_pretrain(task: Task, pc: PretrainConfig, progress: bool, force: bool) -> tuple[TinyGPT, dict]:
    path = cache_path(task, pc)
    if path.exists() and not force:
        blob = torch.load(path, weights_only=True)  # a cache directory may be shared: never run code from it
        model = TinyGPT(ModelConfig(**blob["model_config"]))
        model.load_state_dict(blob["state_dict"])
        model.eval()
        stats = blob["stats"]
        if stats.get("reward_options") != reward_options(task):  # cached by a run with other reward options
            torch.manual_seed(pc.seed)  # (inside load_reference's fork_rng: the caller's stream is untouched)
            stats = {**stats, **evaluate_reference(model, task), "reward_options": reward_options(task)}
        return model, {**stats, "cached": str(path), "from_cache": True}
    model, stats = pretrain(task, pc, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"model_config": dataclasses.asdict(model.cfg), "state_dict": model.state_dict(), "stats": stats}, tmp)
    os.replace(tmp, path)  # atomic: parallel runs may race to write the same entry, never half of it
    return model, {**stats, "cached": str(path), "from_cache": False}


def show_reference(task: Task, env: str, steps: int, progress: bool = True, force: bool = False) -> None:
    """``sandbox pretrain``: the reference of ``task`` (``env``, its ``lang:NAME``) with ``steps`` supervised steps,
    loaded from the cache or pretrained and cached (:func:`load_reference`), then printed: where it is, its training,
    its mean reward, and four of its completions (prompts and sampling seeded with 1)."""
    from ..envs.lang_tasks import completion_tokens, decode

    model, stats = load_reference(task, PretrainConfig(steps=steps), progress=progress, force=force)
    prompts, infos = task.sample(4, np.random.default_rng(1))
    torch.manual_seed(1)
    completions, _ = sample(model, torch.from_numpy(prompts), task.max_new_tokens)
    how = "loaded from the cache" if stats["from_cache"] else "pretrained and cached"
    print(f"{env}: reference {how}: {stats['cached']}")
    print(
        f"  supervised steps {stats['steps']}, {stats['seconds']:.1f} s of training, "
        f"final loss {stats['final_loss']:.3f}"
    )
    print(
        f"  reference mean reward {stats['reference_reward']:.3f} (task threshold {task.threshold}), "
        f"ends with <eos> {stats['reference_eos_rate']:.0%}"
    )
    for p, c, info in zip(prompts, completions.numpy(), infos):
        words = completion_tokens(c)
        print(f"  {decode(p):<28} -> {decode(words):<20} reward {task.reward(info, words):.2f}")
