"""GRPO with dropout on a toy language task, in one file to read from top to bottom (the sandbox's reading edition).

    python sandbox/reading/grpo_dropout.py --dropout 0.1 --dropout-mode consistent --out runs/g
    python sandbox/reading/grpo_dropout.py --ref ~/.cache/dropout-rl-sandbox/ref-reverse-<key>.pt   # the engine's

GRPO (Shao et al. 2024, DeepSeekMath) is PPO without a value function: for every prompt it samples a *group* of G
completions and scores each against the others. Here on ``lang:reverse`` ("<bos> reverse: c a f >" should give
"f a c <eos>"), with a tiny GPT-2 whose three dropouts (embeddings, attention, residual branches) can be handed their
masks, for consistent dropout to store and replay. RL starts from a frozen *reference*: the model after a supervised
phase (``pretrain``), or the engine's cached one (``--ref``, weights only). Per token t of completion i, minimise::

    L     = agg_{i,t}[ -min(r_it A_i, clip(r_it, 1 - clip_coef, 1 + clip_coef) A_i) ] + beta * agg_{i,t}[ k3_it ]
    A_i   = (R_i - mean_G R) / (std_G R + 1e-4), for every token of o_i          (group_advantages)
    r_it  = pi_theta(o_it | q, o_i,<t) / pi_old(o_it | q, o_i,<t)
    k3_it = exp(-x) - 1 + x, x = log pi_theta(o_it | ...) - log pi_ref(o_it | ...)  (kl_k3: KL to the reference)
    agg   = the token aggregation, grpo, bnpo or dr_grpo                          (aggregate_loss)

The file reads in that order: the arguments, the task (the engine's vocabulary, prompts, rewards), the tiny GPT-2
whose dropout masks can be drawn, stored and replayed, sampling, the supervised phase, the maths of the loss, then
one loop per update with the groups' rewards, the advantages and the clipped update in sight, one row of
``metrics.csv`` per update under the engine's column names. It imports nothing from the sandbox, and computes what
the engine computes (``sandbox.train``, ``--algo grpo --env lang:reverse``) op for op, drawing the random numbers in
the engine's order: ``tests/test_reading.py`` holds its first two updates to the engine's, and says how closely.
``pretrain`` follows the engine's recipe and gives its cached reference bit for bit. Not here: other tasks, the
temperature, sample and multi-sample dropout, length penalties.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro


@dataclass
class Args:
    seed: int = 0
    """seeds torch and the prompts"""
    total_steps: int = 12_000
    """sampled tokens to train for (make demo's budget)"""
    dropout: float = 0.1
    """dropout probability p at GPT-2's three places (GPT-2's own 0.1)"""
    dropout_mode: Literal["off", "rollout-eval", "naive", "consistent"] = "naive"
    """what the sampler and the update do with dropout (MODES)"""
    out: str | None = None
    """write DIR/metrics.csv, one row per update"""
    quiet: bool = False
    """print nothing while training"""
    ref: str | None = None
    """a weights-only reference file with a 'state_dict' (the engine's cache); None: pretrain one here"""
    sft_steps: int = 600
    """supervised steps of the reference's pretraining (without --ref)"""
    sparse: bool = False
    """reward 1 for an exact match only (default: the fraction of positions right)"""
    group_size: int = 8
    """G: completions per prompt"""
    prompts_per_update: int = 16
    """prompts per batch: a batch holds prompts_per_update * group_size completions"""
    learning_rate: float = 1e-3
    """Adam's learning rate"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over total_steps"""
    update_epochs: int = 1
    """passes (gradient steps) over each batch: GRPO's mu (DeepSeekMath)"""
    clip_coef: float = 0.2
    """the ratio is clipped to [1 - clip_coef, 1 + clip_coef]"""
    beta: float = 0.0
    """coefficient of the KL to the reference (DeepSeekMath: 0.04)"""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """divide each reward's distance to its group's mean by the group's std, the batch's, or nothing (Dr. GRPO)"""
    loss_agg: Literal["grpo", "bnpo", "dr_grpo"] = "grpo"
    """token aggregation (aggregate_loss)"""
    max_grad_norm: float = 0.5
    """global gradient-norm clip"""


class Mode(NamedTuple):
    uses_dropout: bool  # False: p = 0 everywhere
    rollout_train: bool  # the sampler runs in train mode (dropout on)
    update_train: bool  # the update's forward runs in train mode (fresh masks, unless they are stored)
    store_masks: bool  # the sampler's masks are stored for every position and replayed in the update


MODES = {  # the four ways of handling dropout, and what they do to the ratio r before the first gradient step
    "off": Mode(False, False, False, False),  # p = 0 everywhere: r = 1 exactly
    "rollout-eval": Mode(True, False, True, False),  # no dropout sampling, fresh masks updating: r != 1
    "naive": Mode(True, True, True, False),  # fresh masks in both (TRL's GRPO on a model with dropout): r != 1
    "consistent": Mode(True, True, True, True),  # the update replays the sampler's masks: r = 1
}

# --- the task, lang:reverse. The engine's vocabulary (sandbox/envs/lang_tasks.py, all its tasks'): the same token ids,
# so that its reference loads here. A prompt: <bos> reverse: then 3-6 of the symbols a-h then >, left-padded.
VOCAB = (
    "<pad> <bos> <eos> digit: review: reverse: sort: add: write: a b c d e f g h 0 1 2 3 4 5 6 7 8 9 > + = good "
    "great love happy nice fun bad boring sad awful dull poor the movie film plot actor was is and very it"
).split()
TOKEN = {w: i for i, w in enumerate(VOCAB)}
PAD, BOS, EOS, SYMBOLS = TOKEN["<pad>"], TOKEN["<bos>"], TOKEN["<eos>"], [TOKEN[s] for s in "abcdefgh"]
PROMPT_LEN, MAX_NEW = 9, 7  # the longest prompt; the longest completion (6 symbols and <eos>)


def sample_prompts(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, list[list[int]]]:
    """``n`` prompts ``(n, PROMPT_LEN)`` and their answers (the symbols reversed)."""
    prompts, targets = torch.full((n, PROMPT_LEN), PAD), []
    for i in range(n):
        symbols = [SYMBOLS[j] for j in rng.integers(0, len(SYMBOLS), int(rng.integers(3, 7)))]
        row = [BOS, TOKEN["reverse:"], *symbols, TOKEN[">"]]
        prompts[i, PROMPT_LEN - len(row) :] = torch.tensor(row)
        targets.append(symbols[::-1])
    return prompts, targets


def reward(target: list[int], completion: list[int], sparse: bool) -> float:
    """The completion's tokens before <eos> against the answer: 1 for an exact match, else (unless ``sparse``) the
    fraction of positions right over the longer of the two (extra and missing tokens count as wrong)."""
    completion = completion[: completion.index(EOS)] if EOS in completion else completion
    right = sum(a == b for a, b in zip(completion, target)) / max(len(completion), len(target))
    return float(completion == target) if sparse else right


def demonstration(target: list[int], rng: np.random.Generator) -> list[int]:
    """A corpus answer, right half of the time (else the prompt's order, or two symbols swapped): the reference is
    fluent in the format and leaves RL something to learn."""
    if rng.random() < 0.5:
        return list(target)
    if rng.random() < 0.5:
        return target[::-1]
    wrong, (i, j) = list(target), rng.choice(len(target), 2, replace=False)
    wrong[i], wrong[j] = wrong[j], wrong[i]
    return wrong


# --- the model: a tiny GPT-2 whose dropout masks can be drawn, stored and replayed -------------------------------
def dropout_mask(shape: tuple[int, ...], p: float) -> torch.Tensor:
    """Inverted dropout's mask: each entry 0 with probability p, else 1 / (1 - p), so the expectation is unchanged."""
    return torch.empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)


def dropout_at(masks: dict | None, p: float, start: int, end: int):
    """The dropout of one forward pass over the positions ``start .. end - 1``: ``drop(x, place, layer)`` multiplies x
    by the stored masks of those positions (consistent), else by fresh ones (p > 0: train mode), else leaves it."""

    def drop(x: torch.Tensor, place: str, layer: int | None = None) -> torch.Tensor:
        if masks is not None:
            m = masks[place] if layer is None else masks[place][layer]
            return x * (m[:, :, start:end, :end] if place == "attn" else m[:, start:end])
        return x * dropout_mask(x.shape, p) if p > 0 else x

    return drop


class Block(nn.Module):
    """Pre-LayerNorm transformer block: causal self-attention, then a GELU MLP, each on a residual branch."""

    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.ln_1, self.c_attn, self.c_proj = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln_2, self.c_fc, self.mlp_proj = nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x, drop, layer: int, past=None):
        """``x (B, t, d)``: the newest t positions; ``past``: the keys and values of the positions before them."""
        B, t, d = x.shape
        q, k, v = (z.view(B, t, self.n_heads, -1).transpose(1, 2) for z in self.c_attn(self.ln_1(x)).split(d, dim=2))
        if past is not None:  # the KV cache: earlier positions are not computed again
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, H, end, d / H)
        end = k.shape[2]
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.n_heads)  # (B, H, t, end)
        causal = torch.ones(t, end, dtype=torch.bool).tril(diagonal=end - t)  # a position sees itself and before
        probs = drop(torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1), "attn", layer)
        x = x + drop(self.c_proj((probs @ v).transpose(1, 2).reshape(B, t, d)), "resid_attn", layer)
        mlp = self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x + drop(mlp, "resid_mlp", layer), (k, v)


class TinyGPT(nn.Module):
    """GPT-2 in miniature (learned positions, 2 blocks, tied output embedding), dropout p at GPT-2's three places, its
    masks drawn fresh (train mode), replayed (``masks``, from :meth:`sample_masks`) or none (eval mode)."""

    def __init__(self, p: float, d: int = 64, n_heads: int = 4, n_layers: int = 2):
        super().__init__()
        self.p, self.d, self.n_heads, self.n_layers = p, d, n_heads, n_layers
        self.wte, self.wpe = nn.Embedding(len(VOCAB), d), nn.Embedding(PROMPT_LEN + MAX_NEW, d)
        self.blocks = nn.ModuleList(Block(d, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d)
        for m in self.modules():  # GPT-2's initialisation; residual projections scaled by 1 / sqrt(2 n_layers)
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        for block in self.blocks:
            for proj in (block.c_proj, block.mlp_proj):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * n_layers))

    def sample_masks(self, B: int, T: int) -> dict:
        """Masks for every position of ``B`` sequences of ``T`` tokens (drawn in the engine's order)."""
        d, H, L, p = self.d, self.n_heads, self.n_layers, self.p
        resid_mlp = [dropout_mask((B, T, d), p) for _ in range(L)]
        emb = dropout_mask((B, T, d), p)
        attn = [dropout_mask((B, H, T, T), p) for _ in range(L)]  # query row t: position t's attention
        return dict(emb=emb, attn=attn, resid_attn=[dropout_mask((B, T, d), p) for _ in range(L)], resid_mlp=resid_mlp)

    def forward(self, tokens, masks: dict | None = None, past: list | None = None, start: int = 0):
        """``tokens (B, t)`` at positions ``start ..``: ``(logits (B, t, vocab), present)``, present the KV cache."""
        end = start + tokens.shape[1]
        drop = dropout_at(masks, self.p if self.training else 0.0, start, end)
        x = drop(self.wte(tokens) + self.wpe(torch.arange(start, end)), "emb")  # (B, t, d)
        present = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, drop, i, past[i] if past is not None else None)
            present.append(kv)
        return F.linear(self.ln_f(x), self.wte.weight), present


@torch.no_grad()
def generate(model: TinyGPT, prompts: torch.Tensor, masks: dict | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample completions ``(B, MAX_NEW)`` one token at a time, and each token's log-probability from the forward pass
    that sampled it; <pad> (log-prob 0) after <eos>."""
    B, P = prompts.shape
    logits, past = model(prompts, masks)
    completions, logps, done = torch.full((B, MAX_NEW), PAD), torch.zeros(B, MAX_NEW), torch.zeros(B, dtype=torch.bool)
    for i in range(MAX_NEW):
        logp_all = F.log_softmax(logits[:, -1], dim=-1)  # (B, vocab)
        # Gumbel-max: argmax(log p + Gumbel noise), Gumbel = -log Exp(1), is a sample of p (as torch.multinomial)
        token = (logp_all - torch.empty_like(logp_all).exponential_().log()).argmax(-1)
        completions[:, i] = torch.where(done, PAD, token)
        logps[:, i] = torch.where(done, 0.0, logp_all.gather(1, token[:, None]).squeeze(1))
        done |= token == EOS
        if bool(done.all()) or i == MAX_NEW - 1:
            break
        logits, past = model(completions[:, i : i + 1], masks, past, start=P + i)
    return completions, logps


def sequence_logp(model: TinyGPT, tokens: torch.Tensor, masks: dict | None = None):
    """One forward over whole sequences ``(B, P + n)``: the log-probability of every completion token ``(B, n)``, and
    the entropy of its distribution (a metric, without gradient)."""
    logp_all = F.log_softmax(model(tokens, masks)[0][:, PROMPT_LEN - 1 : -1], dim=-1)  # (B, n, vocab)
    entropy = -(logp_all.exp() * logp_all).sum(-1).detach()
    return logp_all.gather(-1, tokens[:, PROMPT_LEN:, None]).squeeze(-1), entropy


def pretrain(steps: int, seed: int = 0) -> TinyGPT:
    """The reference: supervised steps on the corpus (prompt, demonstration, <eos>), the engine's recipe (AdamW,
    one-cycle learning rate, batches of 64, dropout 0.1); the loss is on the completion's tokens only."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = TinyGPT(p=0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    for _ in range(steps):
        prompts, targets = sample_prompts(64, rng)
        tokens = torch.cat([prompts, torch.full((64, MAX_NEW), PAD)], dim=1)
        labels = torch.full_like(tokens, -100)  # -100: not learned (the prompt, the padding)
        for i, target in enumerate(targets):
            answer = (demonstration(target, rng) + [EOS])[:MAX_NEW]
            span = slice(PROMPT_LEN, PROMPT_LEN + len(answer))
            tokens[i, span] = labels[i, span] = torch.tensor(answer)
        logits = model(tokens)[0]  # position t predicts token t + 1
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, len(VOCAB)), labels[:, 1:].reshape(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
    return model.eval()


def group_advantages(rewards: torch.Tensor, scale_rewards: str = "group") -> torch.Tensor:
    """``rewards (n_groups, G) -> advantages (n_groups, G)``: each reward minus its group's mean, over the group's
    (sample) std + 1e-4, the batch's, or nothing. A group of equal rewards gets 0: it teaches nothing."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    scale = {"group": rewards.std(dim=1, keepdim=True) + 1e-4, "batch": rewards.std() + 1e-4, "none": 1.0}
    return centred / scale[scale_rewards]


def aggregate_loss(per_token: torch.Tensor, mask: torch.Tensor, loss_agg: str) -> torch.Tensor:
    """A per-token loss ``(B, n)`` over ``mask``'s tokens to one number. grpo: the mean of each sequence's mean (a long
    sequence's tokens weigh less: a length bias); bnpo: the batch's token mean; dr_grpo: sum / (B * MAX_NEW)."""
    masked = per_token * mask
    if loss_agg == "grpo":
        return (masked.sum(dim=1) / mask.sum(dim=1)).mean()
    return masked.sum() / (mask.sum() if loss_agg == "bnpo" else mask.shape[0] * MAX_NEW)


def kl_k3(log_ratio: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(p || q) for x ~ p, ``log_ratio = log p(x) - log q(x)``: always >= 0, unbiased."""
    return torch.expm1(-log_ratio) + log_ratio


def train(args: Args) -> list[dict]:
    """GRPO on lang:reverse; returns the metrics rows (one dict per update), also written to ``args.out``."""
    # TRY NOT TO MODIFY: the reference, seeding, the policy, the optimiser
    torch.set_num_threads(1)  # small networks: one thread is fastest
    if args.ref is not None:  # weights only: a file never runs code
        reference = TinyGPT(p=0.1)
        reference.load_state_dict(torch.load(args.ref, weights_only=True)["state_dict"])
    else:
        if not args.quiet:
            print(f"pretraining the reference: {args.sft_steps} supervised steps on the corpus")
        reference = pretrain(args.sft_steps)
    reference.eval().requires_grad_(False)  # frozen, and always without dropout
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)  # draws the prompts
    mode, G = MODES[args.dropout_mode], args.group_size
    policy = copy.deepcopy(reference).requires_grad_(True)  # RL starts from the reference
    policy.p = args.dropout if mode.uses_dropout else 0.0
    optimizer = torch.optim.Adam(policy.parameters(), lr=args.learning_rate, eps=1e-5)
    tokens_seen, update, start_time, rows = 0, 0, time.perf_counter(), []
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        out_file = open(os.path.join(args.out, "metrics.csv"), "w", newline="")

    while tokens_seen < args.total_steps:
        update += 1
        lr = args.learning_rate * (1.0 - tokens_seen / args.total_steps) if args.anneal_lr else args.learning_rate
        optimizer.param_groups[0]["lr"] = lr

        # ALGO LOGIC: sample prompts_per_update groups of G completions, in the mode's sampling setting
        prompts, targets = sample_prompts(args.prompts_per_update, rng)
        prompts, targets = prompts.repeat_interleave(G, dim=0), [t for t in targets for _ in range(G)]  # (B, P)
        policy.train(mode.rollout_train)
        masks = policy.sample_masks(len(prompts), PROMPT_LEN + MAX_NEW) if mode.store_masks and policy.p > 0 else None
        completions, sampler_logp = generate(policy, prompts, masks)  # (B, n)
        is_eos = completions == EOS
        first_eos = torch.where(is_eos.any(dim=1), is_eos.float().argmax(dim=1), MAX_NEW - 1)
        mask = torch.arange(MAX_NEW)[None, :] <= first_eos[:, None]  # (B, n): each completion's tokens, <eos> too
        tokens = torch.cat([prompts, completions], dim=1)
        with torch.no_grad():  # naive: the sampler's masks are gone, its own log-probs are the only true ones; else
            # the sampling network can run again: one forward over whole sequences, the numbers the update starts from
            fresh = mode.rollout_train and not mode.store_masks
            logp_old = sampler_logp if fresh else sequence_logp(policy, tokens, masks)[0] * mask
            ref_logp = sequence_logp(reference, tokens)[0] * mask
        rewards = torch.tensor([reward(t, c.tolist(), args.sparse) for t, c in zip(targets, completions)])  # (B,)
        tokens_seen += int(mask.sum())

        # ALGO LOGIC: group advantages, one per completion, given to each of its tokens
        advantages = group_advantages(rewards.view(-1, G), args.scale_rewards).flatten()  # (B,)
        all_equal = rewards.view(-1, G).max(dim=1).values == rewards.view(-1, G).min(dim=1).values  # no signal

        # ALGO LOGIC: the update, update_epochs (mu) gradient steps on the whole batch, in the mode's update setting
        policy.train(mode.update_train)
        seen = []  # what each step measured, before the step
        for _ in range(args.update_epochs):
            logp, entropy = sequence_logp(policy, tokens, masks)  # (B, n); consistent: the sampler's masks
            logratio = (logp - logp_old) * mask
            ratio = logratio.exp()  # exactly 1 before the first step, unless dropout drew other masks
            adv = advantages[:, None].expand_as(ratio)
            per_token = -torch.minimum(ratio * adv, ratio.clamp(1.0 - args.clip_coef, 1.0 + args.clip_coef) * adv)
            pg_loss = aggregate_loss(per_token, mask, args.loss_agg)
            loss = pg_loss
            if args.beta > 0:  # the KL to the reference, per token (masked first: k3 of padding can overflow)
                loss = loss + args.beta * aggregate_loss(kl_k3((logp - ref_logp) * mask), mask, args.loss_agg)
            with torch.no_grad():  # what this step saw, on the completions' tokens
                x, r = logratio[mask], ratio[mask]
                clipped = (r < 1.0 - args.clip_coef) | (r > 1.0 + args.clip_coef)
                seen.append(dict(ratio_dev=(r - 1).abs().mean().item(), clipfrac=clipped.float().mean().item(),
                                 approx_kl=(torch.expm1(x) - x).mean().item(), old_approx_kl=(-x).mean().item(),
                                 entropy=entropy[mask].mean().item(), policy_loss=pg_loss.item()))  # fmt: skip
            optimizer.zero_grad()
            loss.backward()
            seen[-1]["grad_norm"] = nn.utils.clip_grad_norm_(policy.parameters(), args.max_grad_norm).item()
            optimizer.step()

        # TRY NOT TO MODIFY: one row of metrics under the engine's names (sandbox/metrics.py)
        reward_mean, length, n_seq = rewards.mean().item(), mask.sum(dim=1).float().mean().item(), len(rewards)
        row = dict(update=update, env_steps=tokens_seen, wall_s=time.perf_counter() - start_time, lr=lr,
                   clip_coef=args.clip_coef, dropout_p=policy.p, epochs_done=args.update_epochs,
                   episodes=update * n_seq, ep_return_mean=reward_mean, reward_mean=reward_mean,
                   reward_std=rewards.std().item(), kl_ref=((logp_old - ref_logp) * mask).sum(dim=1).mean().item(),
                   beta=args.beta, zero_std_frac=all_equal.float().mean().item(), completion_len=length)  # fmt: skip
        row |= {f"first_{k}": seen[0][k] for k in ("ratio_dev", "clipfrac", "approx_kl")}
        row |= {k: float(np.mean([s[k] for s in seen])) for k in seen[0] if k != "ratio_dev"}
        rows.append(row)
        if args.out:
            if update == 1:
                print(*row, sep=",", file=out_file)  # the header: the column names
            print(*row.values(), sep=",", file=out_file, flush=True)
        if not args.quiet and (update % 5 == 0 or tokens_seen >= args.total_steps):
            print(f"update {update}, tokens {tokens_seen}, reward {reward_mean:.3f}, kl_ref {row['kl_ref']:.3f}")

    if args.out:
        out_file.close()
    solved = next((row for row in rows if row["reward_mean"] >= 0.9), None)  # the task's threshold
    if not args.quiet and solved is not None:
        print(f"reached a batch mean reward of 0.9 at {solved['env_steps']} tokens, {solved['wall_s']:.1f} s")
    return rows


if __name__ == "__main__":
    train(tyro.cli(Args))  # the flags: --help shows the field docstrings of Args
