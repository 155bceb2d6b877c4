# %% [markdown]
# # Lesson 00: a tour. PPO solves CartPole
#
# **Learning goals.** After this lesson you can
#
# 1. train PPO from Python (`sandbox.train(sandbox.preset("cartpole"))`) and find what a run writes;
# 2. read a run's three result files: `metrics.csv` (one row per update), `episodes.csv` (one row per finished
#    episode) and `summary.json` (the outcome in a few numbers);
# 3. say how much two seeds of the same code and settings differ, with an interval instead of one number;
# 4. watch the policy act, before and after training (the GIF that `sandbox eval` writes).
#
# **Assumes.** Python and a little pandas; what an environment, a policy, an episode and a return are. No PPO
# knowledge: lessons 01 (advantages) and 02 (the clipped surrogate) take it apart, lesson 03 adds dropout.
#
# **Running time** (`make course-check` on the machine and the date the [course map](README.md) states): full mode 1.7
# min (105 s) of wall time, 1.6 min (96 s) of CPU time; with `SANDBOX_FAST=1`, what `make test` runs, 7 s (a check
# that the notebook works: what it trains is tiny, and its numbers mean nothing). The committed outputs are those of
# that full run.
#
# **Reading the numbers.** A sentence with a number of a run in it is printed by a cell, from the run you made: run
# the lesson on your laptop and those sentences change with your numbers. A sentence that must hold on any run is
# checked by the cell under it (`sandbox.analysis.course.claim`), which stops the lesson, naming the sentence, if your run
# contradicts it.

# %%
import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Image, display

import sandbox
from sandbox import stats
from sandbox.analysis import course
from sandbox.runs.evaluate import evaluate
from sandbox.plots import OTHER_COLORS, use_style
from sandbox.runs.rundir import checkpoint_path

use_style()
FAST = os.environ.get("SANDBOX_FAST") == "1"
STEPS = 4_096 if FAST else 100_000  # the preset's budget: 100k environment steps
SEEDS = course.seeds(2 if FAST else 6)  # [0, ..., 5]; SANDBOX_SEED_SET=2 shifts them to [1000, ..., 1005]
EARLY = 5 if FAST else 10  # a checkpoint every EARLY updates: section 4 watches the first one
RUNS = Path("runs") / "lesson00"  # run directories, next to this notebook (git ignores runs/)
print(f"FAST={FAST}: {len(SEEDS)} seeds of {STEPS:,} steps ({course.seed_names(SEEDS)})")

# %% [markdown]
# ## 1. One run
#
# `sandbox.preset("cartpole")` is the rl-baselines3-zoo tuned PPO for CartPole-v1: 8 environments x 32 steps per
# rollout (a batch of 256 transitions), 20 epochs over each batch, gamma 0.98, GAE lambda 0.8, learning rate 1e-3 and
# clip range 0.2, both decayed linearly to 0 over the run. Any keyword overrides a field (all of them, grouped by
# topic, are in `sandbox/config.py`; `sandbox train --help` prints the same). Here: no dropout (`dropout_mode="off"`;
# dropout is lesson 03's subject), a run directory (`out`), and a checkpoint every 10 updates (`save_every`) so that
# section 4 can watch an early policy.
#
# `sandbox.train(cfg)` returns a `RunResult`: `config`, `metrics` (a DataFrame, one row per update), `episodes`,
# `summary` and `run_dir`. The same call from a terminal: `sandbox train --preset cartpole --dropout-mode off
# --save-every 10 --out runs/lesson00/seed0`.

# %%
cfg = sandbox.preset(
    "cartpole",
    dropout_mode="off",
    seed=SEEDS[0],
    total_steps=STEPS,
    out=str(RUNS / "seed0"),
    overwrite=True,
    save_every=EARLY,
    quiet=True,
)
result = sandbox.train(cfg)
run_dir = result.run_dir
print(
    f"{cfg.num_envs} envs x {cfg.num_steps} steps = {cfg.batch_size} transitions per update, {cfg.num_updates} updates"
)
print("the run directory:", sorted(p.name for p in run_dir.iterdir()))

# %% [markdown]
# ## 2. What a run writes
#
# ### `summary.json`: the outcome
#
# Written last, atomically: a run directory without it did not finish. `final_return` is the mean return of the last
# 20 finished episodes; `solved_at_steps` the first moment that mean reached the env's `reward_threshold` (475 for
# CartPole-v1, whose episodes are cut at 500 steps), `null` if never.

# %%
summary = json.loads((run_dir / "summary.json").read_text())
print(json.dumps(summary, indent=1))

# %% [markdown]
# ### `metrics.csv`: one row per update
#
# Every algorithm writes the same columns, in the same order (their meanings: the [Metrics](../docs/reference/metrics.md) page,
# or `sandbox.metrics.METRICS`). Three groups to know now: *progress* (`env_steps`, `ep_return_mean`, `ep_len_mean`),
# *what the update did* (`approx_kl`, `clipfrac`, `entropy`, `explained_var`: lessons 01-02), and *the schedule*
# (`lr`, `clip_coef`). `first_ratio_dev` comes first because it is the sandbox's central measurement: lesson 03. (An
# `explained_var` below 0, if a row below shows one, is not a bug: lesson 01, section 4.)

# %%
metrics = pd.read_csv(run_dir / "metrics.csv")
print(f"{len(metrics)} rows x {len(metrics.columns)} columns")
metrics[["update", "env_steps", "ep_return_mean", "entropy", "approx_kl", "clipfrac", "explained_var", "lr"]].iloc[
    [0, 1, 2, len(metrics) // 4, len(metrics) // 2, -1]
]

# %% mystnb={"image": {"alt": "Three panels against env steps for one PPO run on CartPole. Left: the return (mean of the last 20 episodes), with a dotted line at the solved threshold and a dashed line where the run first reached it. Middle: the policy's entropy in nats, from the dotted line at ln 2 (a uniform choice between the two actions) downwards as the policy grows certain. Right: the learning rate and the clip coefficient, each divided by its first value, falling in a straight line to 0."}}
fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
axes[0].plot(metrics.env_steps, metrics.ep_return_mean, color=OTHER_COLORS[0])
axes[0].axhline(summary["reward_threshold"], color="grey", ls=":", lw=1)
if summary["solved_at_steps"] is not None:
    axes[0].axvline(summary["solved_at_steps"], color="grey", ls="--", lw=1)
axes[0].set(title="return (mean of last 20 episodes)", xlabel="env steps")
axes[1].plot(metrics.env_steps, metrics.entropy, color=OTHER_COLORS[1])
axes[1].axhline(np.log(2), color="grey", ls=":", lw=1)
axes[1].set(title="policy entropy (nats; ln 2 = uniform)", xlabel="env steps")
axes[2].plot(metrics.env_steps, metrics.lr / metrics.lr.iloc[0], label="lr / 1e-3", color=OTHER_COLORS[2])
axes[2].plot(metrics.env_steps, metrics.clip_coef / metrics.clip_coef.iloc[0], label="clip_coef / 0.2", ls="--")
axes[2].set(title="the schedule (annealed to 0)", xlabel="env steps")
axes[2].legend()
plt.show()

# %% [markdown]
# Left: the dotted line is the threshold, the dashed one `solved_at_steps`. Middle: CartPole has two actions, so a
# uniform policy has entropy ln 2 = 0.69 nats; the policy becomes more certain as it learns. Right: the preset decays
# the learning rate and the clip range to 0 by the last update, so late updates barely move the policy.

# %%
course.claim(
    "the policy becomes more certain as it learns",
    metrics.entropy.iloc[-10:].mean() < metrics.entropy.iloc[:10].mean(),
    f"entropy {metrics.entropy.iloc[:10].mean():.3f} over the first 10 updates, "
    f"{metrics.entropy.iloc[-10:].mean():.3f} over the last 10",
)
straight = 1 - (metrics["update"] - 1) / len(metrics)  # 1 at the first update, 1 / updates at the last
course.claim(
    "the preset decays the learning rate and the clip range to 0 by the last update",
    np.allclose(metrics.lr / metrics.lr.iloc[0], straight) and np.allclose(metrics.clip_coef / 0.2, straight),
    f"lr / 1e-3 from {metrics.lr.iloc[0] / 1e-3:.3f} to {metrics.lr.iloc[-1] / 1e-3:.3f} over {len(metrics)} updates",
    outcome=False,
)

# %% [markdown]
# ### `episodes.csv`: one row per finished episode
#
# `env_steps, wall_s, return, length`. `ep_return_mean` in `metrics.csv` is the rolling mean of the last 20 of these,
# read at each update; the solved check uses the same mean. Check it yourself: the cell below recomputes
# `solved_at_steps` from `episodes.csv` and compares it with the summary.

# %% mystnb={"image": {"alt": "Scatter of every finished episode's return against the env steps at which it ended (episodes.csv), with a black line for the mean of the last 20 episodes, the number the solved check reads."}}
episodes = pd.read_csv(run_dir / "episodes.csv")
rolling = episodes["return"].rolling(20).mean()  # NaN until 20 episodes have finished
reached = episodes.env_steps[rolling >= summary["reward_threshold"]]
recomputed = int(reached.iloc[0]) if len(reached) else None
print(
    f"{len(episodes)} episodes; solved at {recomputed} steps from episodes.csv, "
    f"{summary['solved_at_steps']} in summary.json"
)

fig, ax = plt.subplots(figsize=(7, 3))
ax.scatter(episodes.env_steps, episodes["return"], s=6, alpha=0.5, color=OTHER_COLORS[0], label="one episode")
ax.plot(episodes.env_steps, rolling, color="black", lw=1.5, label="mean of the last 20")
ax.set(xlabel="env steps", ylabel="episode return", title="episodes.csv")
ax.legend(loc="lower right")
plt.show()

# %% [markdown]
# Early on, episodes are short and many finish in every rollout; later each one lasts up to 500 steps and they thin
# out. Once the policy balances the pole, episodes are cut at 500 steps by CartPole's time limit: the episode is
# *truncated*, not terminated. Lesson 01 shows why PPO must tell the two apart.

# %%
quarter = max(len(episodes) // 4, 1)
course.claim(
    "early on, episodes are short; later each one lasts up to 500 steps",
    episodes.length.iloc[-quarter:].mean() > episodes.length.iloc[:quarter].mean() and episodes.length.max() <= 500,
    f"mean length {episodes.length.iloc[:quarter].mean():.0f} over the first quarter of the episodes, "
    f"{episodes.length.iloc[-quarter:].mean():.0f} over the last; longest {episodes.length.max()}",
)
course.claim(
    "the solved step recomputed from episodes.csv is summary.json's",
    recomputed == summary["solved_at_steps"],
    f"{recomputed} and {summary['solved_at_steps']}",
    outcome=False,
)

# %% [markdown]
# ## 3. How much do seeds differ?
#
# The seed sets the network's initial weights, the environments' starting states and every random draw. Same code,
# same settings, different seeds: how different are the runs? The first seed is the run above; the others write no
# run directory (`out` is not set) and return the same `RunResult`.

# %%
results = {SEEDS[0]: result}
for seed in SEEDS[1:]:
    results[seed] = sandbox.train(cfg.replace(seed=seed, out=None, save_every=0))
table = pd.DataFrame(
    [
        {
            "seed": seed,
            "solved_at_steps": r.summary["solved_at_steps"],
            "final_return": r.summary["final_return"],
            "episodes": r.summary["episodes"],
            "seconds": round(r.summary["total_s"], 1),
        }
        for seed, r in results.items()
    ]
).set_index("seed")
table

# %% mystnb={"image": {"alt": "Learning curves of several seeds of the same settings on CartPole, one line per seed: the return (mean of the last 20 episodes) against env steps, with a dotted line at the solved threshold 475; the seeds climb at different speeds."}}
fig, ax = plt.subplots(figsize=(7, 3.2))
for i, (seed, r) in enumerate(results.items()):
    ax.plot(r.metrics.env_steps, r.metrics.ep_return_mean, lw=1.2, color=OTHER_COLORS[i % 7], label=f"seed {seed}")
ax.axhline(475, color="grey", ls=":", lw=1)
ax.set(xlabel="env steps", ylabel="return (last 20 episodes)", title=f"same settings, {len(SEEDS)} seeds")
ax.legend(ncol=2, loc="lower right")
plt.show()

solved = table.solved_at_steps.astype(float)
if solved.notna().sum() >= 2:
    ci = stats.t_interval(solved)
    print(
        f"steps to solve: {int(solved.min()):,} (fastest seed) to {int(solved.max()):,} (slowest), "
        f"{solved.max() / solved.min():.2f}x apart; mean {solved.mean():,.0f}, "
        f"95% {ci.method} interval [{ci.low:,.0f}, {ci.high:,.0f}] over {solved.notna().sum()} seeds"
    )
else:
    print("fewer than two seeds solved: no interval (FAST mode runs are too short to solve)")

# %% [markdown]
# With a handful of seeds the interval of the mean is wide: its width is the honest answer to "how long does PPO
# take to solve CartPole?". It also says how careful a comparison must be. Split these same-settings seeds into two
# groups of three and compare them as if they were two methods (`sandbox.stats.compare`: a permutation test, Welch's
# interval of the difference, the probability that a seed of one group beats a seed of the other):

# %%
half = len(SEEDS) // 2
a, b = solved.iloc[:half].dropna().to_numpy(), solved.iloc[half:].dropna().to_numpy()
c = stats.compare(a, b)
print(f"seeds {SEEDS[:half]} vs seeds {SEEDS[half:]}: mean steps to solve {c.mean_x:,.0f} vs {c.mean_y:,.0f}")
print(
    f"difference, 95% {c.diff_interval.method} interval: "
    f"[{c.diff_interval.low:,.0f}, {c.diff_interval.high:,.0f}] steps"
)
print(f"permutation test p = {c.p_value:.2f}; verdict: {stats.verdict(c, c.p_value, higher_is_better=False)}")

# %% [markdown]
# Identical settings, yet the two groups' means differ (by how much in your run: the lines above); with three seeds
# per group `verdict` refuses to call it either way, whatever the numbers. Every later lesson compares settings the
# same way, and says "too few seeds for a verdict" when that is the honest answer.

# %%
course.claim(
    "with three seeds per group `verdict` refuses to call it either way",
    stats.verdict(c, c.p_value).startswith("too few seeds"),
    f"{c.n_x} against {c.n_y} seeds: {stats.verdict(c, c.p_value)!r}",
    outcome=False,
)

# %% [markdown]
# ## 4. Watch the policy
#
# `sandbox.runs.evaluate.evaluate` (the command line's `sandbox eval runs/lesson00/seed0 --gif x.gif`) plays episodes
# with the saved policy and reports the mean and spread of the return; with `gif=` it also draws the first episode.
# First the checkpoint after 10 updates (2,560 steps; 5 in FAST mode), then the final `policy.pt`, each playing 10
# episodes from the seed set's first seed. The GIFs are cut at 100 frames (2 seconds of CartPole) to keep this
# notebook small.

# %% mystnb={"image": {"alt": "Animation of the first evaluation episode of the policy saved after 10 updates (at most 100 frames): a cart on a track with a pole hinged on top, which the policy lets lean further and further."}}
early = checkpoint_path(run_dir, EARLY)  # runs/lesson00/seed0/checkpoints/update-000010.pt
before = evaluate(early, episodes=10, seed=SEEDS[0], gif=RUNS / "early.gif", gif_max_frames=100)
display(Image(filename=str(RUNS / "early.gif"), embed=True))

# %% mystnb={"image": {"alt": "Animation of the first evaluation episode of the trained policy (at most 100 frames): the cart makes small pushes left and right and the pole stays upright."}}
after = evaluate(run_dir, episodes=10, seed=SEEDS[0], gif=RUNS / "final.gif", gif_max_frames=100)
display(Image(filename=str(RUNS / "final.gif"), embed=True))

# %% [markdown]
# After 10 updates the policy lets the pole lean further and further until it passes 12 degrees, where CartPole
# ends the episode: it *terminates*. The trained policy keeps the pole upright with small pushes left and right, for
# all 500 steps of every episode: its episodes are *truncated* by the time limit. (`evaluate` runs the network without
# dropout and samples actions; `deterministic=True` takes the most likely action instead.)

# %%
course.say(
    f"""In this run, the policy after {EARLY} updates kept the pole up for {before["lengths"][0]} steps in its first
    episode (the one drawn above) and {np.mean(before["lengths"]):.0f} on average over its 10 episodes; the trained
    policy's episodes lasted {course.span(after["lengths"])} steps."""
)
course.claim(
    "after 10 updates the policy lets the pole fall: its episodes terminate",
    max(before["lengths"]) < 500,
    f"episode lengths {before['lengths']}",
)
course.claim(
    "the trained policy keeps the pole upright for all 500 steps of every episode",
    min(after["lengths"]) == 500,
    f"episode lengths {after['lengths']}",
)

# %% [markdown]
# ## Check yourself
#
# 1. Which file tells you whether a run finished, and why is it written last?
# 2. `ep_return_mean` at update 10 is the mean of which episodes?
# 3. The learning rate decays to 0 over the run. What does that imply for updates near the end, whatever the data?
# 4. Two settings A and B, three seeds each: A solves in 30k, 35k, 41k steps and B in 28k, 33k, 37k. Is B faster?
# 5. An episode of the trained policy ends at 500 steps. Did it terminate or was it truncated, and why might a
#    learning algorithm care?
#
# <details><summary>Answers</summary>
#
# 1. `summary.json`: it is written last and atomically, so its presence means the run got to the end (a killed run
#    leaves `metrics.csv` and `episodes.csv` up to its last update, and no summary).
# 2. The last 20 episodes finished before the end of update 10's rollout (fewer if fewer have finished; NaN before
#    the first one). Episodes are counted when they finish, at the step where they finish.
# 3. The steps get smaller and smaller: late updates barely change the policy, which also protects a solved policy
#    from being knocked off by one bad batch. It also means the budget (`total_steps`) changes the schedule: the same
#    seed with another budget is a different run.
# 4. You cannot say. Section 3 showed that seeds of the *same* settings spread widely; with three
#    seeds per group `stats.verdict` gives no verdict, and a permutation test of 3 against 3 cannot reach p < 0.1.
# 5. Truncated: CartPole-v1 stops every episode at 500 steps, but the pole was still up, so the state was not
#    terminal. Value estimates must treat it as "the future was cut off", not "there was no future" (lesson 01).
#
# </details>
#
# Next: lesson 01, advantages (`notebooks/01_advantages.ipynb`).
