"""The one metrics schema shared by every algorithm and task.

``metrics.csv`` has one row per update with exactly these columns, in this order. A column an algorithm does not
compute is left empty (NaN). Columns are added at the end over time, never renamed or removed.
"""

from __future__ import annotations

METRICS: dict[str, str] = {
    "update": "Update index, from 1.",
    "env_steps": "Environment steps so far, all environments together (autoreset steps included).",
    "wall_s": "Seconds since learning started (timing column: differs between identical runs).",
    "sps": "Environment steps per second so far (timing column).",
    "ep_return_mean": "Mean return of the last 20 finished episodes (NaN before the first one). Language tasks: the "
    "batch's mean reward, the same number as reward_mean (kept there: the report's learning curves and collapse "
    "check read this column for every task).",
    "ep_len_mean": "Mean length of the last 20 finished episodes (GRPO on Gym: of the batch's episodes, as "
    "completion_len). Empty on language tasks: completion_len.",
    "episodes": "Episodes finished so far.",
    "first_ratio_dev": "Mean |r - 1| over the first minibatch of the first epoch of the update. The policy has not "
    "changed yet, so r must be exactly 1: anything else is dropout noise (or a bug).",
    "first_clipfrac": "Fraction of the first minibatch with r outside the clip range, before any gradient step.",
    "first_approx_kl": "approx_kl of the first minibatch, before any gradient step (0 without noise).",
    "clipfrac": "Fraction of samples with r outside [1 - clip_coef, 1 + clip_coef_high] (clip_coef_high = clip_coef "
    "unless set), mean over all minibatch steps of the update.",
    "approx_kl": "k3 estimate of KL(pi_old || pi_theta) = mean((r - 1) - log r), mean over minibatch steps.",
    "old_approx_kl": "k1 estimate mean(-log r), mean over minibatch steps.",
    "entropy": "Mean policy entropy (nats).",
    "policy_loss": "Clipped surrogate loss, mean over minibatch steps.",
    "value_loss": "Value loss 0.5 * (V - R)^2, mean over minibatch steps.",
    "explained_var": "1 - Var(R - V_old) / Var(R) on the batch: how well the critic predicted the returns.",
    "grad_norm": "Global gradient norm before clipping, mean over minibatch steps.",
    "surrogate_var": "Variance of r * A within a minibatch (A as used in the loss), mean over minibatch steps.",
    "lr": "Learning rate used in the update.",
    "clip_coef": "Clip range used in the update (annealed with anneal_clip).",
    "dropout_p": "Dropout probability the dropout layers used (0 in mode off).",
    "epochs_done": "Passes over the batch run before target_kl stopped the update (update_epochs when it did not).",
    # added with the language tasks and GRPO (empty for PPO on Gym, except kl_ref and beta)
    "reward_mean": "Mean reward of the batch's completions (language tasks) or episodes (GRPO on Gym).",
    "reward_std": "Standard deviation of those rewards.",
    "kl_ref": "KL(pi || pi_ref) of the sampling policy to the frozen reference (--ref, else the initial policy "
    "or the pretrained model), from the behaviour policy's own log-probs, k1 = log pi_old - log pi_ref: "
    "batch mean of the per-sequence (GRPO on Gym: per-episode) sum; PPO on Gym: mean per step. Exactly 0 "
    "at the start when the policy is its reference and nothing is noisy.",
    "beta": "KL coefficient used in the update (changes over time with kl_target).",
    "zero_std_frac": (
        "Fraction of groups whose rewards (length-penalised where `--length-penalty` applies, before any KL shaping) "
        "are all equal: no signal, advantage 0 (GRPO)."
    ),
    "completion_len": "Mean completion length in tokens, <eos> included (episode length for GRPO on Gym).",
    # added with the dropout variants
    "surrogate_var_kept": "Var(r * A) over the samples sample dropout kept, mean over minibatch steps.",
    "dropped_frac": "Fraction of samples sample dropout left out of the surrogate, mean over minibatch steps.",
    "dropped_frac_pos": "The same among samples with A > 0.",
    "dropped_frac_neg": "The same among samples with A < 0 (a rule that drops mostly these biases the update).",
    "grad_gdv": "Gradient direction variance: mean pairwise (1 - cosine) between minibatch gradients of the policy "
    "loss, at the start of the update (every --grad-diag-every updates; empty otherwise).",
    "grad_gde": "Gradient direction error: mean (1 - cosine) between each minibatch gradient and the batch's.",
    "grad_snr": "Gradient signal-to-noise: |mean g|^2 / mean |g - mean g|^2 over the minibatch gradients.",
    # added with GRPO-lambda (GRPO on a language task whose reward is a 0/1 correctness; empty otherwise)
    "correct_ratio": "Fraction of the batch's completions that are correct (lang:reverse or lang:sort with --sparse, "
    "lang:add), whatever reward the advantages used: the accuracy, and the mean of the groups' correctness ratios.",
    "length_penalty_frac": "Fraction of the batch's groups whose reward was the length-penalised one "
    "(--length-penalty; with --grpo-lambda, the groups its switch picked).",
    "plain_reward_frac": "Fraction of the batch's groups whose reward was the plain 0/1 correctness "
    "(1 - length_penalty_frac).",
    # added with the variance-flatness diagnostic (every --flatness-every updates; empty otherwise)
    "flat_slope": "Fitted slope of log variance against log flatness over the leading PCA directions of the policy's "
    "weights in the last --flatness-window updates (Feng & Tu's inverse relation: negative). Per direction: "
    "flatness.csv.",
    "curv_slope": "Fitted slope of log variance against log curvature along the same directions (those of positive "
    "curvature only).",
    # added with the critic-side diagnostic (empty where there is no critic: GRPO)
    "first_value_dev": "Mean |V_theta(s) - V_old(s)| over the first minibatch of the first epoch of the update, before "
    "any gradient step: the critic's first_ratio_dev. V_old is the value the rollout computed, so this is 0 up to "
    "rounding when the update sees the critic that valued the states (dropout off, consistent, or dropout in the "
    "policy only), dropout noise in the critic otherwise (naive or rollout-eval with dropout in the critic: "
    "--dropout-value on Gym, the transformer under the value head on language tasks).",
}

FLATNESS: dict[str, str] = {
    "update": "The update at whose start the diagnostic ran (before its first gradient step).",
    "direction": "Principal direction of the window's weight trajectory, 1 = the largest variance.",
    "variance": "Variance of the policy's weights along the direction over the window (Feng & Tu's sigma^2).",
    "flatness": "Width of the interval along the direction within which the held batch's policy loss (dropout off) "
    "rises by less than flatness_rise * clip_coef * mean|A| (Feng & Tu's F): left + right.",
    "curvature": "Second derivative of that loss along the direction at the window's centre, p^T H p (can be < 0).",
    "left": "Distance to the crossing on the negative side (the direction's sign is arbitrary).",
    "right": "Distance to the crossing on the positive side.",
    "censored": "True when a side did not rise that much within the norm of the weights (its distance is that norm; "
    "left out of flat_slope).",
}
"""``flatness.csv`` (``--flatness-every``): one row per measured direction, these columns."""

METRIC_COLUMNS: tuple[str, ...] = tuple(METRICS)
FLATNESS_COLUMNS: tuple[str, ...] = tuple(FLATNESS)
TIMING_COLUMNS: tuple[str, ...] = ("wall_s", "sps")
EPISODE_COLUMNS: tuple[str, ...] = ("env_steps", "wall_s", "return", "length")

SUMMARY: dict[str, str] = {
    "status": "'ok', or 'non-finite-loss' when a NaN/inf loss stopped the run (its rows so far are kept).",
    "final_return": "Mean return of the last 20 finished episodes (null if none finished).",
    "solved_at_steps": "Env steps when the mean of the last 20 finished episodes first reached the env's "
    "reward_threshold (null if never, or if the env has no threshold).",
    "solved_at_s": "Seconds from the start of learning to that moment (null likewise).",
    "reward_threshold": "The threshold used: gymnasium's reward_threshold for the env; for language tasks the "
    "task's own (README), reached by the batch mean reward.",
    "final_reward": "Language tasks and GRPO: mean reward of the last batch.",
    "reference_path": "The KL reference's file: --ref's policy, the cached pretrained model (language tasks), or "
    "null for the initial policy (Gym).",
    "total_s": "Seconds from the start of learning to the end of the run.",
    "env_steps": "Environment steps taken.",
    "updates": "Updates done.",
    "episodes": "Episodes finished.",
    "message": "What stopped the run, in words.",
    "population": "Seeds trained together with this one as a population (sandbox sweep --population): 1 for a run "
    "on its own. A member's numbers equal its single-seed run's up to float rounding.",
}
