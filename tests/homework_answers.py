"""Answers to the six homework assignments, for the grader's self-check (tests/test_grade.py): correct rewrites in
another order of operations, which must PASS, and wrong answers (the stub, zeros, the classic mistakes), each of
which must FAIL. A wrong answer replaces one function; the assignment's other functions are ours."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from sandbox import maths
from sandbox.dropout import dropout_mask


def stub(*args, **kwargs):
    raise NotImplementedError


# --- hw1: gae ------------------------------------------------------------------------------------------------------


def gae_rewritten(rewards, values, next_values, terminated, dones, gamma, gae_lambda):
    """Correct: float64 throughout, deltas inside the loop, a list stacked at the end."""
    r, v, nv, term, d = (x.double() for x in (rewards, values, next_values, terminated, dones))
    out, carry = [], torch.zeros_like(r[0])
    for t in reversed(range(r.shape[0])):
        delta = r[t] - v[t] + gamma * nv[t] * (1 - term[t])
        carry = delta + (gamma * gae_lambda) * (1 - d[t]) * carry
        out.append(carry)
    adv = torch.stack(out[::-1])
    return adv.float(), (adv + v).float()


def _gae(rewards, values, next_values, terminated, dones, gamma, lam, *, delta_end=None, cut=None, factor=None,
         forward=False):  # fmt: skip
    delta_end = terminated if delta_end is None else delta_end
    cut = dones if cut is None else cut
    factor = gamma * lam if factor is None else factor
    deltas = rewards + gamma * (1 - delta_end) * next_values - values
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    order = range(rewards.shape[0]) if forward else reversed(range(rewards.shape[0]))
    for t in order:
        last = deltas[t] + factor * (1 - cut[t]) * last
        adv[t] = last
    return adv, adv + values


def gae_bootstrap_zero_at_truncation(r, v, nv, term, dones, gamma, lam):
    return _gae(r, v, nv, term, dones, gamma, lam, delta_end=dones)


def gae_cut_on_terminated(r, v, nv, term, dones, gamma, lam):
    return _gae(r, v, nv, term, dones, gamma, lam, cut=term)


def gae_never_cut(r, v, nv, term, dones, gamma, lam):
    return _gae(r, v, nv, term, dones, gamma, lam, cut=torch.zeros_like(dones))


def gae_forgets_lambda(r, v, nv, term, dones, gamma, lam):
    return _gae(r, v, nv, term, dones, gamma, lam, factor=gamma)


def gae_forward_recursion(r, v, nv, term, dones, gamma, lam):
    return _gae(r, v, nv, term, dones, gamma, lam, forward=True)


def gae_returns_without_values(r, v, nv, term, dones, gamma, lam):
    adv, _ = maths.gae(r, v, nv, term, dones, gamma, lam)
    return adv, adv


def gae_zeros(r, *args):
    return torch.zeros_like(r), torch.zeros_like(r)


def gae_in_place(r, v, nv, term, dones, gamma, lam):
    adv, ret = maths.gae(r, v, nv, term, dones, gamma, lam)
    r.zero_()  # right values, but the rollout's rewards are gone
    return adv, ret


def gae_float64(r, v, nv, term, dones, gamma, lam):
    adv, ret = maths.gae(r, v, nv, term, dones, gamma, lam)
    return adv.double(), ret.double()


def gae_transposed(r, v, nv, term, dones, gamma, lam):
    adv, ret = maths.gae(r, v, nv, term, dones, gamma, lam)
    return adv.T.contiguous(), ret.T.contiguous()


# --- hw2: ppo_loss, value_loss -------------------------------------------------------------------------------------


def ppo_rewritten(ratio, advantages, clip_coef, clip_coef_high=None):
    """Correct: the maximum of the negated terms, the clip written with where."""
    high = clip_coef if clip_coef_high is None else clip_coef_high
    clipped = torch.where(ratio > 1 + high, 1 + high, torch.where(ratio < 1 - clip_coef, 1 - clip_coef, ratio))
    return torch.max(-advantages * ratio, -advantages * clipped)


def value_rewritten(values, old_values, returns, clip_coef):
    if clip_coef is None:
        return (values - returns) ** 2 / 2
    clipped = old_values + (values - old_values).clamp(-clip_coef, clip_coef)
    return torch.stack([(values - returns) ** 2, (clipped - returns) ** 2]).max(dim=0).values * 0.5


def ppo_min_of_losses(ratio, adv, clip_coef, clip_coef_high=None):
    high = clip_coef if clip_coef_high is None else clip_coef_high
    return torch.minimum(-ratio * adv, -torch.clamp(ratio, 1 - clip_coef, 1 + high) * adv)


def ppo_mean(ratio, adv, clip_coef, clip_coef_high=None):
    return maths.ppo_loss(ratio, adv, clip_coef, clip_coef_high).mean()


def ppo_ignores_clip_high(ratio, adv, clip_coef, clip_coef_high=None):
    return maths.ppo_loss(ratio, adv, clip_coef)


def ppo_clip_only(ratio, adv, clip_coef, clip_coef_high=None):
    high = clip_coef if clip_coef_high is None else clip_coef_high
    return -torch.clamp(ratio, 1 - clip_coef, 1 + high) * adv


def ppo_objective_not_loss(ratio, adv, clip_coef, clip_coef_high=None):
    return -maths.ppo_loss(ratio, adv, clip_coef, clip_coef_high)


def ppo_high_for_both(ratio, adv, clip_coef, clip_coef_high=None):
    high = clip_coef if clip_coef_high is None else clip_coef_high
    return maths.ppo_loss(ratio, adv, high)


def ppo_detached(ratio, adv, clip_coef, clip_coef_high=None):
    return maths.ppo_loss(ratio.detach(), adv, clip_coef, clip_coef_high)


def ppo_column(ratio, adv, clip_coef, clip_coef_high=None):
    return maths.ppo_loss(ratio, adv, clip_coef, clip_coef_high)[..., None]  # (n, 1): broadcasts against (n,)


def ppo_zeros(ratio, *args):
    return torch.zeros_like(ratio)


def value_min(values, old_values, returns, clip_coef):
    if clip_coef is None:
        return 0.5 * (values - returns) ** 2
    clipped = old_values + torch.clamp(values - old_values, -clip_coef, clip_coef)
    return 0.5 * torch.minimum((values - returns) ** 2, (clipped - returns) ** 2)


def value_no_half(values, old_values, returns, clip_coef):
    return 2 * maths.value_loss(values, old_values, returns, clip_coef)


def value_clip_around_returns(values, old_values, returns, clip_coef):
    return maths.value_loss(values, returns, returns, clip_coef)


def value_never_clips(values, old_values, returns, clip_coef):
    return maths.value_loss(values, old_values, returns, None)


# --- hw3: kl_k1, kl_k2, kl_k3 --------------------------------------------------------------------------------------


def k3_rewritten(log_ratio):
    """Correct: the textbook r - 1 - log r with r = exp(-log_ratio), without expm1."""
    r = torch.exp(-log_ratio)
    return r - 1 - torch.log(r)


def k2_rewritten(log_ratio):
    return log_ratio * log_ratio / 2


def k1_rewritten(log_ratio):
    return log_ratio * 1.0


def k3_wrong_direction(log_ratio):
    return torch.exp(log_ratio) - 1 - log_ratio


def k3_is_k2(log_ratio):
    return 0.5 * log_ratio**2


def k2_without_half(log_ratio):
    return log_ratio**2


def k1_absolute(log_ratio):
    return log_ratio.abs()


def k1_negated(log_ratio):
    return -log_ratio


def k3_detached(log_ratio):
    return maths.kl_k3(log_ratio.detach())


def kl_zeros(log_ratio):
    return torch.zeros_like(log_ratio)


# --- hw4: group_advantages, aggregate_loss -------------------------------------------------------------------------


def advantages_rewritten(rewards, scale_rewards, eps=1e-4):
    G = rewards.shape[1]
    mean = rewards.sum(dim=1, keepdim=True) / G
    centred = rewards - mean
    if scale_rewards == "none":
        return centred
    if scale_rewards == "group":
        std = (centred.square().sum(dim=1, keepdim=True) / (G - 1)).sqrt()
    else:
        std = rewards.flatten().std()
    return centred / (std + eps)


def aggregate_rewritten(per_token, mask, mode, max_len=None):
    mask = mask.float()
    if mode == "grpo":
        counts = mask.sum(-1)
        per_seq = (per_token * mask).sum(-1) / counts.clamp(min=1)
        has = (counts > 0).float()
        return (per_seq * has).sum() / has.sum().clamp(min=1)
    total = (per_token * mask).sum()
    if mode == "bnpo":
        return total / mask.sum().clamp(min=1)
    return total / (per_token.shape[0] * (max_len if max_len is not None else per_token.shape[1]))


def advantages_population_std(rewards, scale_rewards, eps=1e-4):
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if scale_rewards == "group":
        return centred / (rewards.std(dim=1, keepdim=True, unbiased=False) + eps)
    return maths.group_advantages(rewards, scale_rewards, eps)


def advantages_batch_centred_by_batch(rewards, scale_rewards, eps=1e-4):
    if scale_rewards == "batch":
        return (rewards - rewards.mean()) / (rewards.std() + eps)
    return maths.group_advantages(rewards, scale_rewards, eps)


def advantages_none_still_divides(rewards, scale_rewards, eps=1e-4):
    return maths.group_advantages(rewards, "group" if scale_rewards == "none" else scale_rewards, eps)


def advantages_without_eps(rewards, scale_rewards, eps=1e-4):
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if scale_rewards == "group":
        return centred / rewards.std(dim=1, keepdim=True)
    return maths.group_advantages(rewards, scale_rewards, eps)


def advantages_eps_inside_sqrt(rewards, scale_rewards, eps=1e-4):
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if scale_rewards == "group":
        return centred / (rewards.var(dim=1, keepdim=True) + eps).sqrt()
    return maths.group_advantages(rewards, scale_rewards, eps)


def advantages_across_groups(rewards, scale_rewards, eps=1e-4):
    with warnings.catch_warnings():  # a single group makes torch warn about the std of one value
        warnings.simplefilter("ignore", UserWarning)
        return maths.group_advantages(rewards.T, scale_rewards, eps).T  # normalised over the wrong dimension


def advantages_zeros(rewards, scale_rewards, eps=1e-4):
    return torch.zeros_like(rewards)


def aggregate_mean_over_padding(per_token, mask, mode, max_len=None):
    return (per_token * mask).mean()


def aggregate_ignores_mask(per_token, mask, mode, max_len=None):
    return per_token.mean()


def aggregate_bnpo_as_grpo(per_token, mask, mode, max_len=None):
    return maths.aggregate_loss(per_token, mask, "grpo" if mode == "bnpo" else mode, max_len)


def aggregate_dr_grpo_by_longest_in_batch(per_token, mask, mode, max_len=None):
    if mode == "dr_grpo":
        longest = int(mask.float().sum(dim=1).max().clamp(min=1))
        return (per_token * mask).sum() / (per_token.shape[0] * longest)
    return maths.aggregate_loss(per_token, mask, mode, max_len)


def aggregate_grpo_counts_empty_as_zero(per_token, mask, mode, max_len=None):
    if mode == "grpo":
        m = mask.float()
        return ((per_token * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)).mean()
    return maths.aggregate_loss(per_token, mask, mode, max_len)


def aggregate_item(per_token, mask, mode, max_len=None):
    return torch.tensor(maths.aggregate_loss(per_token, mask, mode, max_len).item())


# --- hw5: dropout_mask, apply_dropout, layer_mask ------------------------------------------------------------------


def mask_rewritten(shape, p):
    return (torch.rand(shape) >= p).float() / (1 - p)


def apply_rewritten(x, mask):
    return torch.mul(mask, x)


def choice_rewritten(stored, fresh, shape, p, draw):
    if stored is None and fresh:
        return draw(shape, p)
    return stored


def mask_unscaled(shape, p):
    return (torch.rand(shape) >= p).float()


def mask_keeps_p(shape, p):
    return (torch.rand(shape) < p).float() / (1 - p) if p > 0 else torch.ones(shape)


def mask_scaled_by_keep(shape, p):
    return (torch.rand(shape) >= p).float() * (1 - p)


def mask_numpy(shape, p):
    return torch.from_numpy((np.random.rand(*shape) >= p).astype(np.float32) / (1 - p))


def mask_one_row(shape, p):
    return dropout_mask((1, *shape[1:]), p).expand(shape).contiguous()


def apply_draws_its_own(x, mask):
    return x * dropout_mask(tuple(x.shape), 0.2)


def apply_returns_mask(x, mask):
    return mask * torch.ones_like(x)


def choice_redraws_at_update(stored, fresh, shape, p, draw):
    if fresh:
        return draw(shape, p)  # the update is in train mode: a new mask, not the rollout's
    return stored


def choice_draws_then_replays(stored, fresh, shape, p, draw):
    new = draw(shape, p) if fresh else None
    return stored if stored is not None else new


def choice_dropout_in_eval(stored, fresh, shape, p, draw):
    return stored if stored is not None else draw(shape, p)


# --- hw6: dppo_scores, sample_dropout_mask -------------------------------------------------------------------------


def scores_rewritten(surrogate):
    return surrogate * surrogate.sum() - surrogate.square()


def keep_rewritten(surrogate, ratio, advantages, mode="none", rate=0.1, delta=0.25, by_sign=False):
    """Correct: argsort instead of topk, badness in float64, groups as index lists."""
    x = surrogate.detach().double()
    n = x.numel()
    keep = torch.ones(n, dtype=torch.bool)
    if mode == "none" or n == 0:
        return keep
    if mode == "sdpo":
        keep = (ratio.detach() - 1).abs() < delta
    else:
        bad = -(x * (x.sum() - x)) if mode == "dppo" else (x - x.mean()).abs()
        a = advantages.detach()
        groups = [torch.nonzero(a > 0).flatten(), torch.nonzero(a <= 0).flatten()] if by_sign else [torch.arange(n)]
        for idx in groups:
            k = int(rate * len(idx))
            if k:
                order = torch.argsort(bad[idx], descending=True, stable=True)
                keep[idx[order[:k]]] = False
    return keep if keep.any() else torch.ones(n, dtype=torch.bool)


def scores_without_self(surrogate):
    return surrogate * surrogate.sum()


def scores_square(surrogate):
    return surrogate.square()


def scores_sum_minus_self(surrogate):
    return surrogate.sum() - surrogate


def _keep_with(surrogate, ratio, advantages, mode, rate, delta, by_sign, *, bad=None, count=None, signs=None):
    x = surrogate.detach()
    n = x.numel()
    if mode == "none" or n == 0:
        return torch.ones(n, dtype=torch.bool)
    if mode == "sdpo":
        return maths.sample_dropout_mask(surrogate, ratio, advantages, mode, rate, delta, by_sign)
    if bad is None:
        bad = -maths.dppo_scores(x) if mode == "dppo" else (x - x.mean()).abs()
    else:
        bad = bad(x, mode)
    a = advantages.detach()
    keep = torch.ones(n, dtype=torch.bool)
    groups = (signs or (lambda a: [a > 0, a <= 0]))(a) if by_sign else [torch.ones(n, dtype=torch.bool)]
    for grp in groups:
        idx = grp.nonzero().flatten()
        k = (count or (lambda r, m: int(r * m)))(rate, len(idx))
        if k > 0:
            keep[idx[torch.topk(bad[idx], k).indices]] = False
    return keep if keep.any() else torch.ones(n, dtype=torch.bool)


def keep_drops_highest_scores(*args):
    return _keep_with(*args, bad=lambda x, m: maths.dppo_scores(x) if m == "dppo" else -(x - x.mean()).abs())


def keep_ceil(*args):
    return _keep_with(*args, count=lambda r, m: int(np.ceil(r * m)))


def keep_round(*args):
    return _keep_with(*args, count=lambda r, m: int(round(r * m)))


def keep_ignores_sign(surrogate, ratio, advantages, mode, rate, delta, by_sign):
    return maths.sample_dropout_mask(surrogate, ratio, advantages, mode, rate, delta, False)


def keep_outlier_by_abs(*args):
    return _keep_with(*args, bad=lambda x, m: -maths.dppo_scores(x) if m == "dppo" else x.abs())


def keep_dppo_lowest_surrogate(*args):
    return _keep_with(*args, bad=lambda x, m: -x if m == "dppo" else (x - x.mean()).abs())


def keep_zero_advantage_positive(*args):
    return _keep_with(*args, signs=lambda a: [a >= 0, a < 0])


def keep_sdpo_inclusive(surrogate, ratio, advantages, mode, rate, delta, by_sign):
    if mode == "sdpo":
        keep = (ratio.detach() - 1).abs() <= delta
        return keep if keep.any() else torch.ones_like(keep)
    return maths.sample_dropout_mask(surrogate, ratio, advantages, mode, rate, delta, by_sign)


def keep_no_fallback(surrogate, ratio, advantages, mode, rate, delta, by_sign):
    if mode == "sdpo":
        return (ratio.detach() - 1).abs() < delta
    return maths.sample_dropout_mask(surrogate, ratio, advantages, mode, rate, delta, by_sign)


def keep_float(*args):
    return maths.sample_dropout_mask(*args).float()


def keep_not_detached(surrogate, ratio, advantages, mode, rate, delta, by_sign):
    x = surrogate.numpy()  # fails on a tensor that requires grad
    return maths.sample_dropout_mask(torch.from_numpy(x), ratio, advantages, mode, rate, delta, by_sign)


# --- the self-check's table ----------------------------------------------------------------------------------------

CORRECT = {
    "hw1": {"gae": gae_rewritten},
    "hw2": {"ppo_loss": ppo_rewritten, "value_loss": value_rewritten},
    "hw3": {"kl_k1": k1_rewritten, "kl_k2": k2_rewritten, "kl_k3": k3_rewritten},
    "hw4": {"group_advantages": advantages_rewritten, "aggregate_loss": aggregate_rewritten},
    "hw5": {"dropout_mask": mask_rewritten, "apply_dropout": apply_rewritten, "layer_mask": choice_rewritten},
    "hw6": {"dppo_scores": scores_rewritten, "sample_dropout_mask": keep_rewritten},
}
"""Per assignment, a correct rewrite of every function, in another order of operations: must pass every test."""

WRONG = {
    "hw1": {
        "gae": {
            "stub (raise NotImplementedError)": stub,
            "return zeros": gae_zeros,
            "bootstrapping from 0 at a truncation": gae_bootstrap_zero_at_truncation,
            "cutting the recursion on terminated instead of dones": gae_cut_on_terminated,
            "never cutting the recursion": gae_never_cut,
            "forgetting lambda in the recursion": gae_forgets_lambda,
            "the recursion run forwards in time": gae_forward_recursion,
            "returns = advantages (forgetting + values)": gae_returns_without_values,
            "changing the rewards in place": gae_in_place,
            "float64 results": gae_float64,
            "(N, T) results, transposed": gae_transposed,
        }
    },
    "hw2": {
        "ppo_loss": {
            "stub (raise NotImplementedError)": stub,
            "return zeros": ppo_zeros,
            "min of the losses instead of max of the negated objectives": ppo_min_of_losses,
            "the mean instead of one loss per sample": ppo_mean,
            "an (n, 1) result that would broadcast": ppo_column,
            "ignoring clip_coef_high": ppo_ignores_clip_high,
            "the clipped term only (no min)": ppo_clip_only,
            "the objective instead of the loss (sign)": ppo_objective_not_loss,
            "clip_coef_high on both sides": ppo_high_for_both,
            "a detached ratio (no gradient)": ppo_detached,
        },
        "value_loss": {
            "stub (raise NotImplementedError)": stub,
            "min of the squared errors instead of max": value_min,
            "without the factor 0.5": value_no_half,
            "clipping around the returns instead of the old values": value_clip_around_returns,
            "never clipping": value_never_clips,
        },
    },
    "hw3": {
        "kl_k1": {
            "stub (raise NotImplementedError)": stub,
            "return zeros": kl_zeros,
            "|log ratio|": k1_absolute,
            "-log ratio (the other direction)": k1_negated,
        },
        "kl_k2": {"stub (raise NotImplementedError)": stub, "without the factor 0.5": k2_without_half},
        "kl_k3": {
            "stub (raise NotImplementedError)": stub,
            "r = p/q instead of q/p (exp(x) - 1 - x)": k3_wrong_direction,
            "k2 in place of k3": k3_is_k2,
            "detached (no gradient)": k3_detached,
        },
    },  # fmt: skip
    "hw4": {
        "group_advantages": {
            "stub (raise NotImplementedError)": stub,
            "return zeros": advantages_zeros,
            "population std in group advantages": advantages_population_std,
            "batch scaling centred on the batch mean": advantages_batch_centred_by_batch,
            "scale_rewards none still divides by the std": advantages_none_still_divides,
            "no eps (NaN for an all-equal group)": advantages_without_eps,
            "eps inside the square root": advantages_eps_inside_sqrt,
            "normalising across groups (wrong dimension)": advantages_across_groups,
        },
        "aggregate_loss": {
            "stub (raise NotImplementedError)": stub,
            "a mean over padded tokens": aggregate_mean_over_padding,
            "ignoring the mask": aggregate_ignores_mask,
            "bnpo computed as grpo": aggregate_bnpo_as_grpo,
            "dr_grpo dividing by the batch's longest sequence": aggregate_dr_grpo_by_longest_in_batch,
            "grpo counting an empty sequence as a zero": aggregate_grpo_counts_empty_as_zero,
            "a float made back into a tensor (no gradient)": aggregate_item,
        },
    },
    "hw5": {
        "dropout_mask": {
            "stub (raise NotImplementedError)": stub,
            "a 0/1 mask, not scaled": mask_unscaled,
            "keeping with probability p instead of 1 - p": mask_keeps_p,
            "scaled by 1 - p instead of 1 / (1 - p)": mask_scaled_by_keep,
            "numpy's generator instead of torch's": mask_numpy,
            "one mask row for the whole batch": mask_one_row,
        },
        "apply_dropout": {
            "stub (raise NotImplementedError)": stub,
            "drawing its own mask": apply_draws_its_own,
            "returning the mask": apply_returns_mask,
        },
        "layer_mask": {
            "stub (raise NotImplementedError)": stub,
            "masks redrawn at update time (train mode draws even with a stored mask)": choice_redraws_at_update,
            "drawing a mask before replaying the stored one": choice_draws_then_replays,
            "dropout in eval mode": choice_dropout_in_eval,
        },
    },
    "hw6": {
        "dppo_scores": {
            "stub (raise NotImplementedError)": stub,
            "x_i * S (counting x_i^2)": scores_without_self,
            "x_i^2": scores_square,
            "S - x_i": scores_sum_minus_self,
        },
        "sample_dropout_mask": {
            "stub (raise NotImplementedError)": stub,
            "dropping the highest scores": keep_drops_highest_scores,
            "ceil(rate * n) instead of floor": keep_ceil,
            "round(rate * n) instead of floor": keep_round,
            "by_sign ignored": keep_ignores_sign,
            "outlier by |x| instead of |x - mean|": keep_outlier_by_abs,
            "dppo dropping the lowest surrogate instead of the lowest score": keep_dppo_lowest_surrogate,
            "A = 0 counted with the positive samples": keep_zero_advantage_positive,
            "sdpo keeping |r - 1| <= delta": keep_sdpo_inclusive,
            "no keep-everything fallback": keep_no_fallback,
            "a float 0/1 mask": keep_float,
            "numpy on a tensor that requires grad": keep_not_detached,
        },
    },
}
"""Per assignment and function, wrong answers by name: each must FAIL (with the assignment's other functions ours)."""

TEACHES = {
    "bootstrapping from 0 at a truncation": "truncation at the last step bootstraps",
    "cutting the recursion on terminated instead of dones": "every episode end stops the recursion",
    "never cutting the recursion": "termination: no bootstrap from the terminal state, and the recursion stops",
    "min of the losses instead of max of the negated objectives": "pessimism",
    "an (n, 1) result that would broadcast": "one float32 loss per sample",
    "population std in group advantages": "the sample one (n - 1)",
    "a mean over padded tokens": "on a hand case of unequal lengths",
    "masks redrawn at update time (train mode draws even with a stored mask)": "replays a stored mask",
    "r = p/q instead of q/p (exp(x) - 1 - x)": "bias by Monte Carlo",
    "dropping the highest scores": "lowest scores",
}
"""The classic mistakes, each with (part of) the name of the test that must catch it."""
