"""Our numpy vector envs (sandbox/envs/classic.py) against gymnasium's own: bit for bit, step for step, over
thousands of actions (episodes that terminate, that are truncated, the autoreset steps and their random starts),
with the trainers' clipped float32 actions and with raw float32 and float64 ones; the --env-params variants; reset
options and seeds; a population's members stepped together; checkpoints."""

import gymnasium as gym
import numpy as np
import pytest

from sandbox.envs import classic
from sandbox.envs.gym_tasks import ENV_PARAMS, StepTogether, make_vec_env
from sandbox.runs.snapshot import env_state, set_env_state

STEPS = {"Acrobot-v1": 1100, "Pendulum-v1": 600, "MountainCar-v0": 600, "MountainCarContinuous-v0": 1100}
"""Steps per comparison: past each env's time limit (500, 200, 200, 999), so that some episodes are truncated."""


def _actions(env_id: str, obs: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
    """Even sub-environments mostly follow a heuristic that ends episodes early (Acrobot's tip above the bar, the cars
    at the flag, the left wall on the way); odd ones act at random and run into the time limit. Box actions come as
    the trainers send them (``clipped``: float32 within the bounds) or raw, beyond the bounds (``float32``,
    ``float64``)."""
    n = len(obs)
    heuristic = (np.arange(n) % 2 == 0) & (rng.random(n) < 0.8)
    if env_id == "Acrobot-v1":  # torque along the second joint's velocity pumps energy in
        return np.where(heuristic, np.where(obs[:, 5] > 0, 2, 0), rng.integers(0, 3, n))
    if env_id == "MountainCar-v0":  # push along the velocity
        return np.where(heuristic, np.where(obs[:, 1] > 0, 2, 0), rng.integers(0, 3, n))
    if env_id == "MountainCarContinuous-v0":
        raw = np.where(heuristic, np.sign(obs[:, 1]) * rng.uniform(0.5, 1.6, n), rng.normal(0, 1.5, n))[:, None]
    else:
        raw = rng.normal(0, 2.5, (n, 1))
    if kind == "clipped":
        bound = 2.0 if env_id == "Pendulum-v1" else 1.0
        return np.clip(raw.astype(np.float32), np.float32(-bound), np.float32(bound))
    return raw.astype(np.float32 if kind == "float32" else np.float64)


def _compare(env_id: str, steps: int, kind: str = "clipped", params: dict | None = None, n: int = 6, seed: int = 3):
    """Step ours and gymnasium's SyncVectorEnv side by side; every answer equal (values and dtype). Returns counts
    of what happened: terminations, truncations, autoreset steps, and (the cars) steps at a speed or position
    bound."""
    ours = classic.CLASSES[env_id](n)
    theirs = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync")
    for name, value in (params or {}).items():
        setattr(ours, name, value)
        for env in theirs.unwrapped.envs:
            setattr(env.unwrapped, name, value)
    obs, _ = ours.reset(seed=seed)
    want, _ = theirs.reset(seed=seed)
    assert obs.dtype == want.dtype == np.float32 and np.array_equal(obs, want)
    rng = np.random.default_rng(seed)
    seen = dict(terminated=0, truncated=0, autoreset=0, at_bound=0)
    done = np.zeros(n, bool)
    for t in range(steps):
        actions = _actions(env_id, obs, rng, kind)
        got, answer = ours.step(actions)[:4], theirs.step(actions)[:4]
        for name, x, y in zip(("obs", "reward", "terminated", "truncated"), got, answer):
            assert x.dtype == y.dtype and np.array_equal(x, y), f"{env_id} {kind} step {t}: {name} differs"
            assert x.flags.c_contiguous
        obs = got[0]
        seen["autoreset"] += int(done.sum())
        done = got[2] | got[3]
        seen["terminated"] += int(got[2].sum())
        seen["truncated"] += int(got[3].sum())
        if "MountainCar" in env_id:
            seen["at_bound"] += int((np.abs(obs[:, 1]) == np.float32(ours.max_speed)).sum())
            seen["at_bound"] += int((obs[:, 0] == np.float32(ours.min_position)).sum())
    return seen


@pytest.mark.parametrize("env_id", list(classic.CLASSES))
def test_equal_to_gymnasium_step_for_step(env_id):
    """The trainers' actions, past the time limit: episodes terminate (where the task can), are truncated, restart."""
    seen = _compare(env_id, STEPS[env_id])
    assert seen["truncated"] > 0 and seen["autoreset"] > 0
    if env_id != "Pendulum-v1":  # Pendulum never terminates
        assert seen["terminated"] > 0
    if "MountainCar" in env_id:
        assert seen["at_bound"] > 0  # the speed limit or the left wall, where gymnasium's ifs change the types


@pytest.mark.parametrize("kind", ["float32", "float64"])
@pytest.mark.parametrize("env_id", ["Pendulum-v1", "MountainCarContinuous-v0"])
def test_equal_with_raw_box_actions(env_id, kind):
    """Actions beyond the bounds (clipped inside the env) and float64 actions, which change gymnasium's arithmetic."""
    seen = _compare(env_id, 400, kind)
    assert seen["autoreset"] > 0
    if "MountainCar" in env_id:
        assert seen["at_bound"] > 0 and seen["terminated"] > 0


@pytest.mark.parametrize("env_id", list(classic.CLASSES))
def test_equal_with_every_env_param(env_id):
    """Each --env-params name of the task, changed at once (``ENV_PARAMS`` lists the same names for ours)."""
    names = ENV_PARAMS[type(classic.CLASSES[env_id](1)).__name__]
    reference = gym.make(env_id).unwrapped
    params = {name: float(getattr(reference, name)) * (1.1 + 0.05 * i) for i, name in enumerate(names)}
    _compare(env_id, 300, params=params)


def test_make_vec_env_builds_ours_for_these_ids_and_gymnasiums_for_others():
    for env_id, cls in classic.CLASSES.items():
        envs, obs = make_vec_env(env_id, 3, 7, {})
        want, _ = gym.make_vec(env_id, num_envs=3, vectorization_mode="sync").reset(seed=7)
        assert type(envs) is cls and np.array_equal(obs, want)
    envs, _ = make_vec_env("Acrobot-v1", 2, 0, {"LINK_MASS_2": 1.5})
    assert envs.LINK_MASS_2 == 1.5
    cartpole, _ = make_vec_env("CartPole-v1", 2, 0)
    assert type(cartpole).__name__ == "CartPoleVectorEnv"


def test_reset_seeds_and_options_as_gymnasium():
    """A list of seeds; no seed (the generators carry on); None in a list (that one carries on); reset bounds in
    ``options``."""
    bounds = {"Pendulum-v1": {"x_init": 1.0, "y_init": 0.5}}
    for env_id in classic.CLASSES:
        options = bounds.get(env_id, {"low": -0.3, "high": 0.2})
        ours, theirs = classic.CLASSES[env_id](3), gym.make_vec(env_id, num_envs=3, vectorization_mode="sync")
        for kwargs in [dict(seed=[5, 6, 9]), {}, dict(seed=[None, 4, None]), dict(seed=11, options=options)]:
            got, want = ours.reset(**kwargs)[0], theirs.reset(**kwargs)[0]
            assert np.array_equal(got, want), (env_id, kwargs)


@pytest.mark.parametrize("env_id", list(classic.CLASSES))
def test_members_stepped_together_answer_as_if_alone(env_id):
    """A population's envs (StepTogether) are one env of every member's sub-environments; each member's resets still
    come from its own generators."""
    alone = [make_vec_env(env_id, 3, seed)[0] for seed in (0, 1, 2)]
    members = [make_vec_env(env_id, 3, seed)[0] for seed in (0, 1, 2)]
    together = StepTogether(members, env_id, {})
    assert together.together
    rng = np.random.default_rng(0)
    obs = [env.reset(seed=seed)[0] for env, seed in zip(alone, (0, 1, 2))]
    for _ in range(250):  # past Pendulum's and MountainCar's time limit, with Acrobot and the cars at the goal
        actions = [_actions(env_id, o, rng, "clipped") for o in obs]
        got = together.step(actions)
        for k, (env, a, answer) in enumerate(zip(alone, actions, got)):
            want = env.step(a)[:4]
            assert all(np.array_equal(x, y) for x, y in zip(want, answer))
            obs[k] = want[0]


@pytest.mark.parametrize("env_id", ["Acrobot-v1", "MountainCarContinuous-v0"])
def test_checkpoint_resumes_mid_episode_exactly(env_id):
    """env_state / set_env_state: an env rebuilt and given the saved state continues as the original does."""
    rng = np.random.default_rng(1)
    env, obs = make_vec_env(env_id, 4, 0, {"power": 0.002} if "Continuous" in env_id else {})
    for _ in range(150):
        obs = env.step(_actions(env_id, obs, rng, "clipped"))[0]
    saved = env_state(env)
    copy, _ = make_vec_env(env_id, 4, 99, {"power": 0.002} if "Continuous" in env_id else {})
    set_env_state(copy, saved)
    for _ in range(150):
        actions = _actions(env_id, obs, rng, "clipped")
        want, got = env.step(actions)[:4], copy.step(actions)[:4]
        assert all(np.array_equal(x, y) for x, y in zip(want, got))
        obs = want[0]


def test_scalar_square_is_numpys_scalar_power_not_the_arrays():
    x = np.random.default_rng(0).uniform(-30, 30, 20_000)
    for values in (x, x.astype(np.float32)):
        want = np.array([v**2 for v in values])  # numpy scalars, as gymnasium's single envs hold them
        got = classic.scalar_square(values)
        assert got.dtype == values.dtype and np.array_equal(got, want)


@pytest.mark.parametrize(
    "env_id, seeds", [("Acrobot-v1", [0]), ("MountainCarContinuous-v0", [0, 1]), ("Pendulum-v1", [2, 3])]
)
def test_training_gives_the_same_numbers_as_on_gymnasiums_envs(env_id, seeds, monkeypatch):
    """A run (one seed) or a population (two) trained on our envs and on gymnasium's SyncVectorEnv (the ids taken
    out of ``classic.CLASSES``): the same metrics and episodes (Pendulum's end in this budget), to the last bit."""
    import sandbox
    from sandbox.metrics import TIMING_COLUMNS

    def train() -> list:
        fields = dict(env=env_id, total_steps=1024, dropout=0.1, quiet=True)  # two updates of 4 envs x 128 steps
        cfgs = [sandbox.Config(**fields, seed=s) for s in seeds]
        results = sandbox.train_population(cfgs) if len(cfgs) > 1 else [sandbox.train(cfgs[0])]
        return [(r.metrics.drop(columns=list(TIMING_COLUMNS)), r.episodes.drop(columns=["wall_s"])) for r in results]

    ours = train()
    monkeypatch.setattr(classic, "CLASSES", {})
    theirs = train()
    for (metrics, episodes), (want_metrics, want_episodes) in zip(ours, theirs):
        assert metrics.equals(want_metrics) and episodes.equals(want_episodes)
    if env_id == "Pendulum-v1":
        assert len(ours[0][1]) > 0
