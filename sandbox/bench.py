"""Benchmarks, run side by side with a peer in one command (never as timed tests): ``cartpole``, ``lang``,
``sweep``, ``report`` and ``population``; and the two studies the README reports, ``grpo-lambda`` and ``flatness``
(``sandbox/studies.py``).

``sandbox bench cartpole``: our PPO (cartpole preset, dropout off) against stable-baselines3's PPO with the same
rl-zoo3 hyperparameters, alternating, one run at a time, each in a fresh process with one torch thread.
Time-to-solve = wall seconds and env steps from the start of learning until the mean of the last 20 finished
training episodes reaches 475 (CartPole-v1's reward_threshold).
"""

from __future__ import annotations

import collections
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOLVE_WINDOW = 20


def _ours_cartpole(seed: int, max_steps: int) -> dict:
    import sandbox

    with tempfile.TemporaryDirectory() as tmp:  # the run directory is written, as for any user run
        cfg = sandbox.preset(
            "cartpole",
            seed=seed,
            total_steps=max_steps,
            stop_at_threshold=True,
            quiet=True,
            out=os.path.join(tmp, "run"),
        )
        s = sandbox.train(cfg).summary
    return {"solved_s": s["solved_at_s"], "solved_steps": s["solved_at_steps"], "total_s": s["total_s"]}


def _sb3_cartpole(seed: int, max_steps: int) -> dict:
    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)

    class SolveClock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.returns = collections.deque(maxlen=SOLVE_WINDOW)
            self.solved_s = self.solved_steps = None

        def _on_training_start(self) -> None:
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(info["episode"]["r"])
                    if len(self.returns) == SOLVE_WINDOW and np.mean(self.returns) >= 475:
                        self.solved_s = time.perf_counter() - self.t0
                        self.solved_steps = self.num_timesteps
                        return False
            return True

    def lin(v):
        return lambda progress_remaining: progress_remaining * v

    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    # rl-baselines3-zoo hyperparams/ppo.yml, CartPole-v1; SB3 defaults otherwise (64x64 tanh, separate nets).
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=lin(1e-3),
        clip_range=lin(0.2),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    clock = SolveClock()
    t0 = time.perf_counter()
    model.learn(total_timesteps=max_steps, callback=clock)
    return {"solved_s": clock.solved_s, "solved_steps": clock.solved_steps, "total_s": time.perf_counter() - t0}


WORKERS = {"ours": _ours_cartpole, "sb3": _sb3_cartpole}


def _run_one(system: str, seed: int, max_steps: int) -> dict:
    """One run in a fresh interpreter, so neither system inherits the other's warm caches."""
    code = f"import json, sandbox.bench as b; print(json.dumps(b.WORKERS[{system!r}]({seed}, {max_steps})))"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{system} seed {seed} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median(xs: list[float | None]) -> float | None:
    done = [x for x in xs if x is not None]
    return statistics.median(done) if len(done) == len(xs) and done else None


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, 1 torch thread"
    )


def bench_cartpole(seeds: tuple[int, ...] = (0, 1, 2, 3, 4), max_steps: int = 100_000, quiet: bool = False) -> dict:
    """Alternate ours and SB3 on each seed; print and return per-run figures and medians."""
    from tqdm import tqdm

    runs: dict[str, list[dict]] = {"ours": [], "sb3": []}
    jobs = [(system, seed) for seed in seeds for system in ("ours", "sb3")]
    bar = tqdm(jobs, desc="bench cartpole", unit="run", disable=quiet or not sys.stderr.isatty(), leave=False)
    for system, seed in bar:
        bar.set_postfix(run=f"{system} seed {seed}")
        runs[system].append({"seed": seed, **_run_one(system, seed, max_steps)})
    result = {"machine": machine(), "seeds": list(seeds), "runs": runs}
    for system in runs:
        result[f"{system}_median_s"] = _median([r["solved_s"] for r in runs[system]])
        result[f"{system}_median_steps"] = _median([r["solved_steps"] for r in runs[system]])
    ours_s, sb3_s = result["ours_median_s"], result["sb3_median_s"]
    result["ratio_s"] = ours_s / sb3_s if ours_s and sb3_s else None
    print(format_cartpole(result))
    return result


def format_cartpole(r: dict) -> str:
    def fmt(x, spec):
        return "unsolved" if x is None else format(x, spec)

    lines = [
        f"CartPole-v1 time-to-solve (mean of last {SOLVE_WINDOW} episodes >= 475), seeds "
        f"{', '.join(map(str, r['seeds']))}",
        f"machine: {r['machine']}",
        "",
        "| system | median wall s | median env steps | per seed: wall s / env steps |",
        "|---|---|---|---|",
    ]
    names = {"ours": "sandbox PPO (preset cartpole, dropout off)", "sb3": "SB3 PPO (rl-zoo3 tuned)"}
    for system, runs in r["runs"].items():
        per = ", ".join(f"{fmt(x['solved_s'], '.1f')} / {fmt(x['solved_steps'], ',')}" for x in runs)
        lines.append(
            f"| {names[system]} | {fmt(r[system + '_median_s'], '.2f')} | "
            f"{fmt(r[system + '_median_steps'], ',.0f')} | {per} |"
        )
    ratio = r["ratio_s"]
    target = "met" if ratio is not None and ratio <= 0.33 and (r["ours_median_steps"] or 1e9) <= 40_000 else "NOT met"
    lines += [
        "",
        f"ratio ours/SB3 (median wall s): {fmt(ratio, '.2f')}   target: ratio <= 0.33 and our median "
        f"env steps <= 40k: {target}",
    ]
    return "\n".join(lines)


# --- sandbox bench lang: GRPO on lang:reverse, ours and TRL's, from the same SFT reference ---------------------------

LANG_THRESHOLD = 0.9
LANG_SETTINGS = dict(prompts=16, group_size=8, learning_rate=1e-3, beta=0.0, max_grad_norm=0.5)


def _ours_reverse(seed: int, max_steps: int) -> dict:
    import sandbox

    s = LANG_SETTINGS
    cfg = sandbox.Config(
        algo="grpo",
        env="lang:reverse",
        seed=seed,
        dropout_mode="off",
        anneal_lr=False,
        prompts_per_update=s["prompts"],
        group_size=s["group_size"],
        learning_rate=s["learning_rate"],
        beta=s["beta"],
        max_grad_norm=s["max_grad_norm"],
        total_steps=max_steps,
        stop_at_threshold=True,
        quiet=True,
    )
    r = sandbox.train(cfg)
    steps_at = r.summary["solved_at_steps"]
    solved_s = r.summary["solved_at_s"]
    return {
        "solved_s": solved_s,
        "solved_updates": int((r.metrics.env_steps <= (steps_at or 0)).sum()) or None,
        "tokens": r.summary["env_steps"],
        "total_s": r.summary["total_s"],
        "tokens_per_s": r.summary["env_steps"] / r.summary["total_s"],
        "reference_reward": r.summary["reference_reward"],
    }


def _trl_reverse(seed: int, max_steps: int) -> dict:
    """TRL's GRPOTrainer on the same task, model (our SFT reference, converted to GPT2LMHeadModel), group size,
    prompts per step, learning rate, beta and gradient clip, dropout off (disable_dropout), one torch thread."""
    import logging
    import os
    import tempfile
    import warnings

    import numpy as np
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.disable(logging.WARNING)
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from .lang.model import to_hf_gpt2_state_dict
    from .lang.pretrain import load_reference
    from .lang.tasks import BOS, EOS, PAD, TOKEN, VOCAB, make_task

    task = make_task("reverse")
    ours, ref_stats = load_reference(task)
    c = ours.cfg
    hf = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=c.vocab_size,
            n_positions=c.max_len,
            n_embd=c.d_model,
            n_layer=c.n_layers,
            n_head=c.n_heads,
            resid_pdrop=c.dropout,
            embd_pdrop=c.dropout,
            attn_pdrop=c.dropout,
            layer_norm_epsilon=1e-5,
            activation_function="gelu_new",
            tie_word_embeddings=True,
            bos_token_id=BOS,
            eos_token_id=EOS,
            pad_token_id=PAD,
        )
    )
    hf.load_state_dict(to_hf_gpt2_state_dict(ours))
    tok = Tokenizer(models.WordLevel(vocab=TOKEN, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<pad>"
    )
    s = LANG_SETTINGS
    steps = max_steps // (s["prompts"] * s["group_size"] * 5) + 1  # ~5 tokens per completion
    rng = np.random.default_rng(seed)
    prompts, targets = task.sample(s["prompts"] * steps, rng)
    # the prompt is written out with its <pad>s: all prompts have the same length, and the model sees the format
    # (and the positions) it was pretrained on
    data = Dataset.from_list(
        [{"prompt": " ".join(VOCAB[t] for t in p), "target": tg} for p, tg in zip(prompts, targets)]
    )

    def reward(prompts, completions, target, **_):
        out = []
        for text, tg in zip(completions, target):
            words = [TOKEN[w] for w in text.split() if w in TOKEN and w not in ("<pad>", "<eos>", "<bos>")]
            out.append(task.reward(tg, words))
        return out

    class Clock(TrainerCallback):
        t0 = solved_s = solved_step = None
        tokens = 0.0

        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            self.tokens += logs.get("completions/mean_length", 0.0) * s["prompts"] * s["group_size"]
            if self.solved_s is None and logs.get("reward", 0.0) >= LANG_THRESHOLD:
                self.solved_s, self.solved_step = time.perf_counter() - self.t0, state.global_step
                control.should_training_stop = True

    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(
            output_dir=tmp,
            per_device_train_batch_size=s["prompts"] * s["group_size"],
            num_generations=s["group_size"],
            max_completion_length=task.max_new_tokens,
            learning_rate=s["learning_rate"],
            lr_scheduler_type="constant",
            beta=s["beta"],
            max_grad_norm=s["max_grad_norm"],
            loss_type="grpo",
            scale_rewards="group",
            disable_dropout=True,
            temperature=1.0,
            max_steps=steps,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            use_cpu=True,
            seed=seed,
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        clock = Clock()
        trainer = GRPOTrainer(
            model=hf, reward_funcs=reward, args=args, train_dataset=data, processing_class=tokenizer, callbacks=[clock]
        )
        t0 = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - t0
    return {
        "solved_s": clock.solved_s,
        "solved_updates": clock.solved_step,
        "tokens": clock.tokens,
        "total_s": total,
        "tokens_per_s": clock.tokens / total,
        "reference_reward": ref_stats["reference_reward"],
    }


def trl_available() -> str | None:
    """None if TRL can run here, else why not."""
    try:
        import datasets  # noqa: F401
        import transformers  # noqa: F401
        import trl  # noqa: F401
    except ImportError as err:
        return f"TRL is not installed ({err.name}); pip install -c requirements.lock -e '.[bench]'"
    return None


WORKERS.update({"ours-lang": _ours_reverse, "trl-lang": _trl_reverse})


def bench_lang(seeds: tuple[int, ...] = (0, 1, 2), max_steps: int = 300_000, quiet: bool = False) -> dict:
    """GRPO on lang:reverse (dense) from the SFT reference, dropout off, until the batch mean reward >= 0.9:
    ours and TRL's, alternating, one run at a time, each in a fresh process."""
    from tqdm import tqdm

    from .lang.pretrain import load_reference
    from .lang.tasks import make_task

    t0 = time.perf_counter()
    _, ref = load_reference(make_task("reverse"), progress=not quiet)  # once, shared by every run
    pretrain_s = ref.get("seconds") if not ref["from_cache"] else None
    why_not = trl_available()
    systems = ["ours-lang"] + ([] if why_not else ["trl-lang"])
    runs: dict[str, list[dict]] = {k: [] for k in systems}
    jobs = [(system, seed) for seed in seeds for system in systems]
    bar = tqdm(jobs, desc="bench lang", unit="run", disable=quiet or not sys.stderr.isatty(), leave=False)
    for system, seed in bar:
        bar.set_postfix(run=f"{system} seed {seed}")
        runs[system].append({"seed": seed, **_run_one(system, seed, max_steps)})
    result = {
        "machine": machine(),
        "seeds": list(seeds),
        "runs": runs,
        "trl": why_not or "ran",
        "reference_reward": ref["reference_reward"],
        "pretrain_s": pretrain_s,
        "wall_s": time.perf_counter() - t0,
    }
    for system in systems:
        result[f"{system}_median_s"] = _median([r["solved_s"] for r in runs[system]])
        result[f"{system}_tokens_per_s"] = statistics.median(r["tokens_per_s"] for r in runs[system])
    print(format_lang(result))
    return result


def format_lang(r: dict) -> str:
    def fmt(x, spec):
        return "unsolved" if x is None else format(x, spec)

    names = {"ours-lang": "sandbox GRPO", "trl-lang": "TRL GRPOTrainer"}
    lines = [
        f"GRPO on lang:reverse (dense reward) from the SFT reference (mean reward {r['reference_reward']:.3f}), "
        f"dropout off, 16 prompts x 8 completions, until the batch mean reward >= {LANG_THRESHOLD}; seeds "
        f"{', '.join(map(str, r['seeds']))}",
        f"machine: {r['machine']}",
        "",
        "| system | median time-to-0.9 (s) | sampled tokens/s | per seed: s / updates |",
        "|---|---|---|---|",
    ]
    for system, runs in r["runs"].items():
        per = ", ".join(f"{fmt(x['solved_s'], '.1f')} / {fmt(x['solved_updates'], 'd')}" for x in runs)
        lines.append(
            f"| {names[system]} | {fmt(r[system + '_median_s'], '.2f')} | {r[system + '_tokens_per_s']:,.0f} | {per} |"
        )
    if r["trl"] != "ran":
        lines.append(f"\nTRL not run: {r['trl']}")
    ours = r.get("ours-lang_median_s")
    lines.append(
        f"\ntarget: under 60 s: {'met' if ours is not None and ours < 60 else 'NOT met'} (ours {fmt(ours, '.1f')} s)"
    )
    return "\n".join(lines)


# --- sandbox bench sweep / report: the experiment machinery itself ------------------------------------------------


def _write(path, text: str):
    path.write_text(text)
    return path


def bench_sweep(runs: int = 10, steps: int = 20_000, rounds: int = 2, quiet: bool = False) -> dict:
    """The same sweep of ``runs`` short PPO runs with 1 worker and with 2, in the order 1, 2, 2, 1, ... (``rounds``
    of each), so that the machine's drift over minutes is shared. Target: 2 workers <= 0.6 x 1 worker, both timed
    from the command's start (worker start-up included) to the last run's summary."""
    from .sweep import run_sweep

    spec = f'[base]\npreset = "cartpole"\ntotal_steps = {steps}\n\n[grid]\nseed = {list(range(runs))}\n'
    order = [w for r in range(rounds) for w in ((1, 2) if r % 2 == 0 else (2, 1))]
    times: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "spec.toml", spec)
        for i, workers in enumerate(order):
            t0 = time.perf_counter()
            run_sweep(path, Path(tmp) / f"round{i}", workers=workers, quiet=True, population=0)
            times[workers].append(time.perf_counter() - t0)
            if not quiet:
                print(f"  {workers} worker(s): {times[workers][-1]:.1f} s", file=sys.stderr, flush=True)
    serial, parallel = sum(times[1]), sum(times[2])
    ratio = parallel / serial
    result = {
        "machine": machine(),
        "runs": runs,
        "steps": steps,
        "serial_s": times[1],
        "parallel_s": times[2],
        "ratio": ratio,
    }
    rows = "\n".join(
        f"| {w} | {', '.join(f'{t:.1f}' for t in times[w])} | {sum(times[w]) / len(times[w]):.1f} |" for w in (1, 2)
    )
    print(
        f"sweep of {runs} PPO runs (preset cartpole, {steps:,} steps each), order {order}\n"
        f"machine: {result['machine']}\n\n| workers | wall s per round | mean |\n|---|---|---|\n{rows}\n\n"
        f"ratio 2 workers / 1 worker: {ratio:.3f}   target <= 0.6: {'met' if ratio <= 0.6 else 'NOT met'}"
    )
    return result


def bench_report(quiet: bool = False) -> dict:
    """A real 100-run sweep (20 groups x 5 seeds of short PPO runs), then the time of ``sandbox report``."""
    from .report import write_report
    from .sweep import run_sweep

    spec = (
        '[base]\npreset = "cartpole"\ntotal_steps = 2048\n\n[grid]\n'
        'dropout_mode = ["off", "rollout-eval", "naive", "consistent"]\ndropout = [0.1, 0.2, 0.3, 0.4, 0.5]\n'
        "seed = [0, 1, 2, 3, 4]\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "spec.toml", spec)
        t0 = time.perf_counter()
        run_sweep(path, Path(tmp) / "out", workers=2, quiet=quiet)
        sweep_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        table = write_report(Path(tmp) / "out", quiet=True)
        report_s = time.perf_counter() - t0
    result = {"machine": machine(), "runs": 100, "groups": len(table), "sweep_s": sweep_s, "report_s": report_s}
    print(
        f"report of a 100-run sweep ({len(table)} groups x 5 seeds), figures included\nmachine: {result['machine']}"
        f"\n\nreport: {report_s:.1f} s (the sweep itself took {sweep_s:.0f} s)   target < 15 s: "
        f"{'met' if report_s < 15 else 'NOT met'}"
    )
    return result


# --- sandbox bench population: a 16-seed population against 16 runs one at a time --------------------------------

POPULATION_SETTINGS = {
    "preset cartpole, 30k steps": dict(preset="cartpole", total_steps=30_000),
    "default settings, 50k steps": dict(total_steps=50_000),
}


def _population_worker(settings: str, how: str, seeds: list[int]) -> dict:
    """In a fresh process: train ``seeds`` of ``settings`` as one population (``how="population"``) or one after
    the other (``"separate"``, as a sweep worker would); CPU seconds and wall seconds of the training alone."""
    import torch

    import sandbox

    torch.set_num_threads(1)
    fields = dict(POPULATION_SETTINGS[settings])
    preset = fields.pop("preset", None)
    make = (
        (lambda s: sandbox.preset(preset, **fields, seed=s, quiet=True))
        if preset
        else (lambda s: sandbox.Config(**fields, seed=s, quiet=True))
    )
    cfgs = [make(s) for s in seeds]
    cpu, wall = time.process_time(), time.perf_counter()
    results = sandbox.train_population(cfgs) if how == "population" else [sandbox.train(c) for c in cfgs]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finals = [r.summary["final_return"] for r in results]
    solved = [r.summary["solved_at_steps"] is not None for r in results]
    return {"cpu_s": cpu, "wall_s": wall, "final_returns": finals, "solved": solved}


def _population_profile(settings: str, seeds: list[int]) -> dict[str, float]:
    """Where a population's time goes: each phase's share of the training (cProfile over one run)."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    _population_worker(settings, "population", seeds)
    profile.disable()
    stats = pstats.Stats(profile).stats  # {(file, line, function): (calls, calls, own s, cumulative s, callers)}

    def cumulative(function: str, file: str) -> float:
        return sum(v[3] for (f, _, name), v in stats.items() if function in name and file in f)

    total = cumulative("train_ppo_population", "population.py")
    phases = [
        ("_collect", "population.py", "rollouts (batched acting, env steps per member)"),
        ("_values", "population.py", "critic values"),
        ("_batches", "population.py", "advantages (GAE, all members at once)"),
        ("_optimise", "population.py", "update"),
        ("evaluate", "stacked.py", "  of which forward passes"),
        ("run_backward", "~", "  of which backward passes"),
        ("_fused_adam", "~", "  of which Adam"),
        ("update_metrics", "diagnostics.py", "  of which metrics"),
    ]
    return {label: cumulative(function, file) / total for function, file, label in phases}


def bench_population(k: int = 16, quiet: bool = False) -> dict:
    """Seeds per CPU-second of a ``k``-seed population against ``k`` separate runs, on preset cartpole (30k steps)
    and the default settings (50k steps), alternating (population, separate; then separate, population), each in a
    fresh process; and whether the population learns the same (final returns, permutation test)."""
    from .stats import compare, iqm

    seeds = list(range(k))
    result: dict = {"machine": machine(), "k": k, "settings": {}}
    for i, settings in enumerate(POPULATION_SETTINGS):
        order = ("population", "separate") if i % 2 == 0 else ("separate", "population")
        got = {}
        for how in order:
            if not quiet:
                print(f"  {settings}: {how} ...", file=sys.stderr, flush=True)
            code = (
                f"import json, sandbox.bench as b; "
                f"print(json.dumps(b._population_worker({settings!r}, {how!r}, {seeds})))"
            )
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
            if out.returncode != 0:
                raise RuntimeError(f"{settings} {how} failed:\n{out.stderr[-2000:]}")
            got[how] = json.loads(out.stdout.strip().splitlines()[-1])
        pop, sep = got["population"], got["separate"]
        c = compare(pop["final_returns"], sep["final_returns"])
        result["settings"][settings] = {
            **got,
            "speedup_cpu": sep["cpu_s"] / pop["cpu_s"],
            "speedup_wall": sep["wall_s"] / pop["wall_s"],
            "iqm": {h: float(iqm(got[h]["final_returns"])) for h in got},
            "p_value": c.p_value,
            "test": c.test,
        }
    result["profile"] = _population_profile("preset cartpole, 30k steps", seeds)
    print(format_population(result))
    return result


def format_population(r: dict) -> str:
    lines = [
        f"K = {r['k']} seeds as one population against {r['k']} runs one after the other (seeds 0-{r['k'] - 1})",
        f"machine: {r['machine']}",
        "",
        "| settings | population CPU s | separate CPU s | seeds per CPU-s, ratio | wall ratio | final return IQM "
        "(population / separate) | solved | p (permutation test) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    targets = {"preset cartpole, 30k steps": 2.0, "default settings, 50k steps": 3.0}
    verdicts = []
    for name, s in r["settings"].items():
        pop, sep = s["population"], s["separate"]
        lines.append(
            f"| {name} | {pop['cpu_s']:.1f} | {sep['cpu_s']:.1f} | {s['speedup_cpu']:.2f} | {s['speedup_wall']:.2f} | "
            f"{s['iqm']['population']:.1f} / {s['iqm']['separate']:.1f} | {sum(pop['solved'])} / {sum(sep['solved'])} "
            f"| {s['p_value']:.2f} |"
        )
        met = s["speedup_cpu"] >= targets[name]
        verdicts.append(
            f"{name}: speed-up {s['speedup_cpu']:.2f} (target >= {targets[name]:g}): "
            f"{'met' if met else 'NOT met'}; learns the same (p > 0.05): "
            f"{'yes' if s['p_value'] > 0.05 else 'NO'}"
        )
    lines += ["", *verdicts, "", "where a population's time goes (preset cartpole, cProfile):"]
    lines += [f"  {label}: {share:.0%}" for label, share in r["profile"].items()]
    return "\n".join(lines)


# --- the studies (sandbox/studies.py) -----------------------------------------------------------------------------

DROPOUT_ARMS = ("0/1 reward", "length penalty, Kimi form", "GRPO-lambda top 0.2, Kimi form")


def bench_grpo_lambda(seeds: tuple[int, ...], out: str, quiet: bool = False) -> dict:
    """GRPO-lambda: every task and arm of :mod:`sandbox.studies` with dropout off, then lang:sort's three main arms in
    the other dropout modes (p = 0.1). Writes ``curves.csv``, ``finals.csv``, ``table.csv``, ``tests.csv`` and the
    figures ``grpo_lambda.png``, ``grpo_lambda_dropout.png`` into ``out``; prints the tables."""
    import pandas as pd

    from . import studies

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    curves = studies.grpo_lambda_runs(seeds=seeds)
    others = studies.grpo_lambda_runs(["sort"], DROPOUT_ARMS, ("rollout-eval", "naive", "consistent"), seeds)
    curves = pd.concat([curves, others], ignore_index=True)
    finals = studies.final_scores(curves)
    table, tests = studies.grpo_lambda_table(finals), studies.grpo_lambda_tests(finals)
    curves.to_csv(out_dir / "curves.csv", index=False)
    finals.to_csv(out_dir / "finals.csv", index=False)
    table.to_csv(out_dir / "table.csv")
    tests.to_csv(out_dir / "tests.csv")
    studies.plot_grpo_lambda(curves[curves["mode"] == "off"]).savefig(out_dir / "grpo_lambda.png")
    sort = curves[(curves["task"] == "sort") & curves["arm"].isin(DROPOUT_ARMS)]
    studies.plot_grpo_lambda(sort, colour_by="mode").savefig(out_dir / "grpo_lambda_dropout.png")
    seconds = time.perf_counter() - t0
    if not quiet:
        with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 40):
            print(table.to_string(), tests.to_string(), sep="\n\n")
        print(f"\n{len(finals)} runs in {seconds:.0f} s on {machine()}; tables and figures in {out_dir}")
    return {"runs": len(finals), "seconds": seconds, "out": str(out_dir)}


def bench_flatness(seeds: tuple[int, ...], out: str, quiet: bool = False) -> dict:
    """The variance-flatness relation on CartPole (PPO) and lang:reverse (GRPO), dropout off and each mode at p =
    0.1. Writes ``directions.csv``, ``measurements.csv``, ``table.csv`` and ``flatness.png`` into ``out``."""
    import pandas as pd

    from . import studies

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    directions, measurements = studies.flatness_runs(seeds=seeds)
    table = studies.flatness_table(directions, measurements)
    directions.to_csv(out_dir / "directions.csv", index=False)
    measurements.to_csv(out_dir / "measurements.csv", index=False)
    table.to_csv(out_dir / "table.csv")
    studies.plot_flatness(directions).savefig(out_dir / "flatness.png")
    seconds = time.perf_counter() - t0
    if not quiet:
        with pd.option_context("display.width", 250, "display.max_columns", 20):
            print(table.to_string())
        print(
            f"\n{measurements[['env', 'mode', 'seed']].drop_duplicates().shape[0]} runs in {seconds:.0f} s on "
            f"{machine()}; tables and figure in {out_dir}"
        )
    return {"seconds": seconds, "out": str(out_dir)}


# --- sandbox bench grading: a class of made-up hw1 submissions, graded as a course would ----------------------------


def bench_grading(n: int = 150, workers: int = 2, quiet: bool = False) -> dict:
    """Grade ``n`` made-up hw1 submissions (:mod:`sandbox.grade.classroom`: correct, the usual mistakes, stubs,
    broken and hostile files, the reference reached three ways) with ``workers`` grading processes, as
    ``sandbox grade hw1 FOLDER --workers N`` does (training runs included, default limits); the wall time, and
    whether every verdict is the one that submission must get."""
    from .grade.classroom import make_class, verdict
    from .grade.submission import Options, grade_folder, write_json

    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "submissions", Path(tmp) / "grades"
        expected = make_class(folder, n)
        options = Options("hw1", seed=0, hidden_paths=(str(folder), str(out)))
        done = [0]

        def progress(name, report, i, total):
            done[0] = i
            if not quiet:
                print(f"  {i}/{total} {name}: {report.summary_line()}", file=sys.stderr, flush=True)

        t0 = time.perf_counter()
        graded = grade_folder(folder, options, out, lambda r, p: write_json(r, p, "gradescope"), "gradescope",
                              workers, progress)  # fmt: skip
        wall = time.perf_counter() - t0
        isolation = graded[0].isolation if graded else "none"
    wrong = [g.report.submission for g in graded if not verdict(g.report, expected[g.report.submission])]
    by_kind: dict[str, list[float]] = {}
    for g in graded:
        by_kind.setdefault(expected[g.report.submission].kind, []).append(g.report.seconds)
    result = {
        "machine": machine(),
        "submissions": n,
        "workers": workers,
        "isolation": isolation,
        "wall_s": wall,
        "per_kind_median_s": {k: statistics.median(v) for k, v in sorted(by_kind.items())},
        "per_kind_count": {k: len(v) for k, v in sorted(by_kind.items())},
        "verdicts_as_expected": n - len(wrong),
        "unexpected": wrong,
    }
    rows = "\n".join(
        f"| {k} | {result['per_kind_count'][k]} | {m:.1f} |" for k, m in result["per_kind_median_s"].items()
    )
    print(
        f"grading {n} made-up hw1 submissions with {workers} grading processes ({isolation} isolation)\n"
        f"machine: {result['machine']}\n\n| kind | submissions | median s each |\n|---|---|---|\n{rows}\n\n"
        f"wall: {wall:.0f} s ({wall / 60:.1f} min), {wall / n:.1f} s per submission\n"
        f"verdicts as expected: {n - len(wrong)} of {n}" + (f" (not: {', '.join(wrong)})" if wrong else "")
    )
    return result
