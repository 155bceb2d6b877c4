"""Sampling a batch of completions for the RL trainers on the language tasks, and scoring it.

``sample_groups`` draws ``n_prompts`` prompts, ``G`` completions each, from the current policy in the dropout mode's
rollout setting, scores them with the task's reward, and evaluates the frozen reference on them.

Where ``logp_old`` comes from (the log-probability of each sampled token under the policy that sampled it; the
mode's ``sampler_reproducible`` in :mod:`sandbox.dropout_modes`):
- ``naive``: the sampler's own log-probs. Its masks were drawn and thrown away, so no other forward pass can
  reproduce them: this is the only true ``logp_old``.
- ``off``, ``rollout-eval``, ``consistent``: the sampling network is deterministic given its masks (none, none, the
  stored ones), so ``logp_old`` is recomputed in one batched forward over whole sequences. Same numbers up to float
  rounding, and exactly the numbers the update computes before its first step, so the first ratio is exactly 1.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..dropout_modes import DropoutMode
from ..envs.lang_tasks import EOS, Task
from ..models.gpt import SeqMasks, TinyGPT, sample


@dataclasses.dataclass
class LangBatch:
    """``B = n_prompts * G`` sequences; completion tensors are ``(B, n)`` with ``n = max_new_tokens``."""

    prompts: Tensor  # (B, P) int64, each prompt repeated G times in a row
    completions: Tensor  # (B, n) int64, <pad> after <eos>
    logp_old: Tensor  # (B, n) log-prob of each token under the sampling policy
    ref_logp: Tensor  # (B, n) under the frozen reference (eval mode)
    token_mask: Tensor  # (B, n) bool: the completion's tokens, <eos> included
    truncated: Tensor  # (B,) bool: reached max_new_tokens without <eos>
    rewards: Tensor  # (B,) float32 task reward
    lengths: Tensor  # (B,) tokens generated (<eos> included)
    dropout_masks: SeqMasks | None  # consistent mode: the dropout masks of every position
    group_size: int

    @property
    def tokens(self) -> Tensor:
        return torch.cat([self.prompts, self.completions], dim=1)


def sequence_logp(
    model: TinyGPT,
    tokens: Tensor,
    prompt_len: int,
    temperature: float,
    masks: SeqMasks | None = None,
    entropy_grad: bool = False,
    all_samples: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """One forward over whole sequences ``tokens (B, P + n)``: ``(logp (B, n), entropy (B, n), hidden (B, n, d))``
    of the completion tokens under the temperature-scaled distribution, with gradients if enabled (for the entropy
    only with ``entropy_grad``: it is usually a metric, not a loss term). With ``all_samples`` and multi-sample
    dropout averaged over losses, ``logp`` and ``entropy`` are ``(K, B, n)``."""
    logits, hidden, _ = model(tokens, masks, all_samples=all_samples)
    logits = logits[..., prompt_len - 1 : -1, :] / temperature
    logp_all = F.log_softmax(logits, dim=-1)
    index = tokens[:, prompt_len:, None].expand(*logits.shape[:-1], 1)
    logp = logp_all.gather(-1, index).squeeze(-1)
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy, hidden[:, prompt_len - 1 : -1]


@torch.no_grad()
def sample_groups(
    policy: TinyGPT,
    reference: TinyGPT,
    task: Task,
    rng: np.random.Generator,
    n_prompts: int,
    group_size: int,
    temperature: float,
    mode: DropoutMode,
) -> LangBatch:
    """``n_prompts`` prompts, ``group_size`` completions each, sampled in the dropout ``mode``'s rollout setting."""
    prompts_np, infos = task.sample(n_prompts, rng)
    prompts = torch.from_numpy(prompts_np).repeat_interleave(group_size, dim=0)
    infos = [info for info in infos for _ in range(group_size)]
    B, P = prompts.shape

    policy.train(mode.rollout_train)
    masks = policy.sample_masks(B, P + task.max_new_tokens) if mode.store_masks and policy.p > 0 else None
    completions, sampler_logp = sample(policy, prompts, task.max_new_tokens, temperature, masks)
    n = completions.shape[1]
    has_eos = completions == EOS
    ended = has_eos.any(dim=1)
    first_eos = torch.where(ended, has_eos.float().argmax(dim=1), torch.full((B,), n - 1))
    mask = torch.arange(n)[None, :] <= first_eos[:, None]
    tokens = torch.cat([prompts, completions], dim=1)

    if mode.sampler_reproducible:  # one batched forward: exactly what the update computes before its first step
        logp_old = sequence_logp(policy, tokens, P, temperature, masks)[0] * mask
    else:  # the sampler's fresh masks are gone: its own log-probs are the only true logp_old
        logp_old = sampler_logp
    ref_logp = sequence_logp(reference, tokens, P, temperature)[0] * mask
    rewards = torch.from_numpy(task.rewards(infos, completions.numpy()))
    return LangBatch(prompts, completions, logp_old, ref_logp, mask, ~ended, rewards, mask.sum(1), masks, group_size)
