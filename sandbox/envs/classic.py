"""Acrobot, Pendulum, MountainCar and MountainCarContinuous with every sub-environment stepped at once in numpy, as
gymnasium's own ``CartPoleVectorEnv`` steps CartPole, and equal to gymnasium's ``SyncVectorEnv`` of ``gym.make(id)``
to the last bit: the same observations, rewards, terminations, truncations and random starts from the same seeds
(``tests/test_classic.py``, thousands of random actions per env).

Why: a ``SyncVectorEnv`` steps its sub-environments one after the other in Python, each through four wrappers; for
an Acrobot population (16 members, 64 sub-environments) that loop was about half of the time. Here one call of
:meth:`ClassicVectorEnv.step` computes every sub-environment's physics in one pass of array operations.

What stays gymnasium's: the physics constants and the spaces (read from gymnasium's own env when ours is built),
``sandbox eval``, the GIFs (:func:`sandbox.envs.gym_tasks.make_env`, a single env), every other id (CartPole keeps
gymnasium's ``CartPoleVectorEnv``), and the definition of what is right: gymnasium's env is the reference the tests
compare with.

What "equal" takes, beyond writing the same formulas in the same order of operations:

- **The random starts.** ``SyncVectorEnv.reset(seed=s)`` seeds sub-environment ``i`` with ``s + i``, and each
  sub-environment then draws every start of its episodes from its own generator. So do we: one generator per
  sub-environment (:attr:`ClassicVectorEnv.generators`), each start drawn by the same call gymnasium's ``reset``
  makes. (``CartPoleVectorEnv`` differs: one generator for all its sub-environments.)
- **Next-step autoreset and the time limit.** The step after an episode ends ignores its action and returns the new
  episode's first observation with reward 0 and no done flag; ``TimeLimit`` truncates when the episode's step count
  reaches the registered ``max_episode_steps`` (also at a step that terminates).
- **Squares of a scalar are not squares of an array.** For a numpy *array*, ``x ** 2`` is ``x * x``, correctly
  rounded; for a numpy *scalar* (what gymnasium's single env holds), it is C's ``pow(x, 2)``, which glibc rounds the
  other way about once in a thousand (``powf`` for float32 likewise), so our arrays call the scalar operation element
  by element where gymnasium squares a scalar (:func:`scalar_square`). With ``x * x`` instead, Acrobot's observations
  and Pendulum's rewards leave gymnasium's within a few hundred steps.
- **Which cosine.** Gymnasium's MountainCars call ``math.cos`` (C's libm); numpy's ``np.cos`` of an array may be a
  different (SIMD) implementation on some CPUs, so the MountainCars call ``math.cos`` element by element
  (:func:`libm_cos`). Acrobot and Pendulum call ``np.cos``/``np.sin`` on numpy scalars, which run the same loop as
  on an array.
- **Dtypes.** Where gymnasium's state is float32 (Acrobot's start, MountainCarContinuous after its first step), its
  arithmetic is float32, and a Python float operand is rounded to float32 first (numpy 2's promotion rules); our
  arrays do the same arithmetic, see each class.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import utils
from gymnasium.envs.classic_control.pendulum import DEFAULT_X, DEFAULT_Y
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space


def scalar_square(x: np.ndarray) -> np.ndarray:
    """``x ** 2`` computed element by element as numpy computes it for one scalar: C's ``pow(x, 2)`` for float64,
    ``powf`` for float32; returns an array of ``x``'s shape and dtype.

    The trap: ``x ** 2`` of an array is ``x * x`` (correctly rounded), but gymnasium's single envs square numpy
    scalars, and glibc's ``pow`` misses the correct rounding by one unit in the last place about once in a thousand.
    A Python float's ``v ** 2`` is the same C ``pow`` as a numpy float64 scalar's (and faster to reach); float32 has
    no Python type, so its elements are squared as numpy scalars."""
    if x.dtype == np.float64:
        return np.fromiter([v**2 for v in x.ravel().tolist()], np.float64, x.size).reshape(x.shape)
    return np.array([v**2 for v in x.ravel()], dtype=x.dtype).reshape(x.shape)


def libm_cos(x: np.ndarray) -> np.ndarray:
    """``math.cos`` of every element of a float64 array (C's libm, what gymnasium's MountainCars call), as float64.
    ``np.cos`` gives the same numbers on the machines we test, but numpy may use its own vectorised cosine on a CPU
    that has the instructions for it; this costs about 0.1 microseconds an element and cannot differ."""
    return np.fromiter([math.cos(v) for v in x.tolist()], np.float64, x.size)


def _clip(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """``np.clip(x, low, high)`` without its Python overhead (several microseconds, more than the arithmetic on a
    few sub-environments): ``minimum(maximum(x, low), high)`` picks the same element, in the same dtype."""
    return np.minimum(np.maximum(x, low), high)


def _f32(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to float32, kept as float64 values: a float32 sum, difference or product of float32 values is
    the float64 one rounded to float32 (float64 has more than twice float32's 24 bits, so rounding twice is
    harmless), which lets one float64 array carry elements of both types."""
    return x.astype(np.float32).astype(np.float64)


class ClassicVectorEnv(VectorEnv):
    """``num_envs`` copies of one of gymnasium's classic-control envs, stepped together; equal, sub-environment by
    sub-environment, to ``gym.make_vec(env_id, num_envs, vectorization_mode="sync")``.

    State, with the sub-environments along the last axis: :attr:`state` ``(S, num_envs)`` float64 (the physics
    state's values; a float32 state is held exactly), :attr:`steps` (the time limit's count),
    :attr:`prev_done` (who is reset at the next step), :attr:`generators` (one random generator per
    sub-environment). All plain arrays and generators, so :func:`sandbox.runs.snapshot.env_state` checkpoints them.

    A subclass names its gymnasium env (:attr:`env_id`), the constants its physics reads (:attr:`CONSTANTS`, copied
    from gymnasium's env at construction; ``--env-params`` sets those of :attr:`PARAMS` after), and writes
    :meth:`_draw` (one random start, as gymnasium's ``reset`` draws it), :meth:`_dynamics` (one step of every
    sub-environment) and :meth:`_observe`.
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}
    env_id: ClassVar[str]
    PARAMS: ClassVar[tuple[str, ...]]
    """What ``--env-params`` may set (``sandbox.envs.gym_tasks.ENV_PARAMS`` lists them for gymnasium's env and ours):
    the constants the dynamics read at every step, not those the spaces were built from."""
    CONSTANTS: ClassVar[tuple[str, ...]]
    """Every constant the dynamics read: :attr:`PARAMS` and the rest."""
    STATE_SIZE: ClassVar[int]
    PER_ENV: ClassVar[tuple[str, ...]] = ("state", "steps", "prev_done")
    """The arrays that hold one entry per sub-environment (along their last axis)."""

    def __init__(self, num_envs: int):
        reference = gym.make(self.env_id).unwrapped  # gymnasium's own env: its constants and spaces
        for name in self.CONSTANTS:
            setattr(self, name, getattr(reference, name))
        self.num_envs = num_envs
        self.max_episode_steps = gym.spec(self.env_id).max_episode_steps
        self.single_observation_space = reference.observation_space
        self.single_action_space = reference.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        reference.close()
        self.state = np.zeros((self.STATE_SIZE, num_envs))
        self.steps = np.zeros(num_envs, np.int64)
        self.prev_done = np.zeros(num_envs, bool)
        self.generators: list[np.random.Generator] = []

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        """Start every sub-environment: with ``seed`` an int, sub-environment ``i`` is seeded with ``seed + i``
        (``SyncVectorEnv``'s rule); a list gives each its own; None keeps the generators (new random ones the first
        time). ``options`` are the single env's (reset bounds). Returns ``(observations, {})``."""
        if seed is None or isinstance(seed, int):
            seed = [None if seed is None else seed + i for i in range(self.num_envs)]
        if len(seed) != self.num_envs:
            raise ValueError(f"{len(seed)} seeds for {self.num_envs} sub-environments")
        old = self.generators or [None] * self.num_envs
        self.generators = [seeding.np_random(s)[0] if s is not None or g is None else g for s, g in zip(seed, old)]
        everyone = np.arange(self.num_envs)
        obs = np.zeros((self.num_envs, *self.single_observation_space.shape), np.float32)
        self._start(everyone, obs, options)
        self.prev_done[:] = False
        return obs, {}

    def step(self, actions):
        """One step of every sub-environment: ``(obs (N, O) float32, rewards (N,) float64, terminated (N,) bool,
        truncated (N,) bool, {})``. A sub-environment whose episode ended at the previous step starts a new one
        instead (its action is ignored, its reward 0, its flags False): gymnasium's next-step autoreset."""
        state, rewards, terminated = self._dynamics(np.asarray(actions))
        self.state = state
        obs = self._observe(state)
        self.steps += 1
        truncated = self.steps >= self.max_episode_steps  # TimeLimit: also at a step that terminates
        resetting = np.flatnonzero(self.prev_done)
        if resetting.size:
            self._start(resetting, obs)
            rewards[resetting], terminated[resetting], truncated[resetting] = 0.0, False, False
        self.prev_done = terminated | truncated
        return obs, rewards, terminated, truncated, {}

    def _start(self, idx: np.ndarray, obs: np.ndarray, options: dict | None = None) -> None:
        """New episodes for the sub-environments ``idx``: each start drawn from its own generator, written into the
        state and, as a first observation, into ``obs``."""
        drawn = np.stack([self._draw(self.generators[i], options) for i in idx], axis=1)  # (S, len(idx)), its dtype
        obs[idx] = self._observe(drawn)  # from the state as gymnasium holds it (Acrobot's is float32)
        self.state[:, idx] = drawn
        self.steps[idx] = 0

    @classmethod
    def side_by_side(cls, members: list["ClassicVectorEnv"]) -> "ClassicVectorEnv":
        """One env of every sub-environment of ``members`` (the same class and constants), in order, each keeping
        its state and its own generator, so that stepping it steps every member exactly as on its own (a population's
        envs, :class:`sandbox.envs.gym_tasks.StepTogether`). The members' objects must not be stepped after this."""
        env = cls(sum(m.num_envs for m in members))
        for name in cls.CONSTANTS:
            setattr(env, name, getattr(members[0], name))
        for name in cls.PER_ENV:
            setattr(env, name, np.concatenate([getattr(m, name) for m in members], axis=-1))
        env.generators = [g for m in members for g in m.generators]
        return env

    def _draw(self, rng: np.random.Generator, options: dict | None) -> np.ndarray:
        """One sub-environment's random start ``(S,)``, drawn and typed as gymnasium's ``reset`` does."""
        raise NotImplementedError

    def _dynamics(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One step of every sub-environment from :attr:`state`: ``(next state (S, N) float64, rewards (N,)
        float64, terminated (N,) bool)``."""
        raise NotImplementedError

    def _observe(self, state: np.ndarray) -> np.ndarray:
        """Observations ``(N, O)`` float32 of states ``(S, N)`` (in the state's dtype: float32 arithmetic for a
        float32 state)."""
        raise NotImplementedError


class AcrobotVectorEnv(ClassicVectorEnv):
    """``Acrobot-v1``: two links, torque -1, 0 or +1 on the joint between them; reward -1 a step until the tip
    swings above the bar, 500 steps at most.

    The integration is gymnasium's: one fourth-order Runge-Kutta step of ``dt`` (``rk4`` in its acrobot.py) of the
    book's equations (``_dsdt``), then the angles wrapped into [-pi, pi] and the velocities bounded, written for
    arrays with every operation in the same order. The start is float32 (gymnasium draws four uniforms in
    [-0.1, 0.1] and casts them), so the first observation's cosines are float32 cosines; from the first step on the
    state is float64."""

    env_id = "Acrobot-v1"
    PARAMS = (
        "LINK_LENGTH_1",
        "LINK_LENGTH_2",
        "LINK_MASS_1",
        "LINK_MASS_2",
        "LINK_COM_POS_1",
        "LINK_COM_POS_2",
        "LINK_MOI",
        "dt",
    )
    CONSTANTS = (*PARAMS, "MAX_VEL_1", "MAX_VEL_2", "AVAIL_TORQUE")
    STATE_SIZE = 4  # theta1, theta2, dtheta1, dtheta2

    def _draw(self, rng, options):
        low, high = utils.maybe_parse_reset_bounds(options, -0.1, 0.1)
        return rng.uniform(low=low, high=high, size=(4,)).astype(np.float32)

    def _dynamics(self, actions):
        torque = np.asarray(self.AVAIL_TORQUE, dtype=np.float64)[actions]  # gymnasium: np.append(s, torque)
        dt = self.dt  # rk4(_dsdt, s_augmented, [0, dt]): a single step from 0 to dt
        dt2 = dt / 2.0
        y0 = self.state
        k1 = self._dsdt(y0, torque)
        k2 = self._dsdt(y0 + dt2 * k1, torque)
        k3 = self._dsdt(y0 + dt2 * k2, torque)
        k4 = self._dsdt(y0 + dt * k3, torque)
        ns = y0 + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        ns[0] = _wrap(ns[0], -np.pi, np.pi)
        ns[1] = _wrap(ns[1], -np.pi, np.pi)
        ns[2] = _clip(ns[2], -self.MAX_VEL_1, self.MAX_VEL_1)  # bound(x, m, M): min(max(x, m), M)
        ns[3] = _clip(ns[3], -self.MAX_VEL_2, self.MAX_VEL_2)
        terminated = -np.cos(ns[0]) - np.cos(ns[1] + ns[0]) > 1.0
        return ns, np.where(terminated, 0.0, -1.0), terminated

    def _dsdt(self, s: np.ndarray, a: np.ndarray) -> np.ndarray:
        """The time derivative of the states ``s (4, N)`` under torques ``a (N,)``: gymnasium's ``_dsdt`` (the book's
        equations) with its scalars' squares (:func:`scalar_square`) and its order of operations."""
        m1 = self.LINK_MASS_1
        m2 = self.LINK_MASS_2
        l1 = self.LINK_LENGTH_1
        lc1 = self.LINK_COM_POS_1
        lc2 = self.LINK_COM_POS_2
        I1 = self.LINK_MOI
        I2 = self.LINK_MOI
        g = 9.8
        theta1, theta2, dtheta1, dtheta2 = s
        square1, square2 = scalar_square(s[2:])  # dtheta1**2, dtheta2**2
        cos2, sin2 = np.cos(theta2), np.sin(theta2)
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos2) + I1 + I2
        d2 = m2 * (lc2**2 + l1 * lc2 * cos2) + I2
        phi2 = m2 * lc2 * g * np.cos(theta1 + theta2 - np.pi / 2.0)
        phi1 = (
            -m2 * l1 * lc2 * square2 * sin2
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin2
            + (m1 * lc1 + m2 * l1) * g * np.cos(theta1 - np.pi / 2)
            + phi2
        )
        ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * square1 * sin2 - phi2) / (
            m2 * lc2**2 + I2 - scalar_square(d2) / d1
        )
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return np.array((dtheta1, dtheta2, ddtheta1, ddtheta2))

    def _observe(self, state):
        theta1, theta2, dtheta1, dtheta2 = state
        obs = np.array((np.cos(theta1), np.sin(theta1), np.cos(theta2), np.sin(theta2), dtheta1, dtheta2), np.float32)
        return obs.T.copy()  # (N, 6), C-contiguous as SyncVectorEnv returns it


def _wrap(x: np.ndarray, m: float, M: float) -> np.ndarray:
    """Gymnasium's ``wrap`` for arrays: subtract ``M - m`` while above ``M``, then add it while below ``m``."""
    diff = M - m
    while (above := x > M).any():
        x = np.where(above, x - diff, x)
    while (below := x < m).any():
        x = np.where(below, x + diff, x)
    return x


class PendulumVectorEnv(ClassicVectorEnv):
    """``Pendulum-v1``: a torque in [-2, 2] on a pendulum that starts anywhere; reward minus the cost of angle,
    speed and torque; 200 steps, never terminates.

    The torque keeps the action's dtype (float32 from the trainers), as gymnasium's ``np.clip(u, ...)[0]`` does: its
    square is float32's ``powf`` and ``0.001 * u**2`` and ``3 / (m l^2) * u`` are float32 products, added to float64
    terms."""

    env_id = "Pendulum-v1"
    PARAMS = ("g", "m", "l", "dt")
    CONSTANTS = (*PARAMS, "max_speed", "max_torque")
    STATE_SIZE = 2  # th, thdot

    def _draw(self, rng, options):
        if options is None:
            high = np.array([DEFAULT_X, DEFAULT_Y])
        else:
            x = utils.verify_number_and_cast(options.get("x_init", DEFAULT_X))
            y = utils.verify_number_and_cast(options.get("y_init", DEFAULT_Y))
            high = np.array([x, y])
        return rng.uniform(low=-high, high=high)

    def _dynamics(self, actions):
        th, thdot = self.state
        g, m, length, dt = self.g, self.m, self.l, self.dt
        u = _clip(actions.reshape(self.num_envs, -1)[:, 0], -self.max_torque, self.max_torque)
        angle = ((th + np.pi) % (2 * np.pi)) - np.pi  # angle_normalize
        costs = scalar_square(angle) + 0.1 * scalar_square(thdot) + 0.001 * scalar_square(u)
        newthdot = thdot + (3 * g / (2 * length) * np.sin(th) + 3.0 / (m * length**2) * u) * dt
        newthdot = _clip(newthdot, -self.max_speed, self.max_speed)
        newth = th + newthdot * dt
        return np.array((newth, newthdot)), -costs, np.zeros(self.num_envs, bool)

    def _observe(self, state):
        theta, thetadot = state
        return np.array((np.cos(theta), np.sin(theta), thetadot), np.float32).T.copy()


class MountainCarVectorEnv(ClassicVectorEnv):
    """``MountainCar-v0``: push left, not at all, or right; reward -1 a step until the car reaches the flag at 0.5,
    200 steps at most. All float64, with ``math.cos`` (:func:`libm_cos`)."""

    env_id = "MountainCar-v0"
    PARAMS = ("force", "gravity")
    CONSTANTS = (*PARAMS, "min_position", "max_position", "max_speed", "goal_position", "goal_velocity")
    STATE_SIZE = 2  # position, velocity

    def _draw(self, rng, options):
        low, high = utils.maybe_parse_reset_bounds(options, -0.6, -0.4)
        return np.array([rng.uniform(low=low, high=high), 0])

    def _dynamics(self, actions):
        if not self.action_space.contains(actions):
            raise ValueError(f"{actions!r} ({type(actions)}) invalid")
        position, velocity = self.state
        velocity = velocity + ((actions - 1) * self.force + libm_cos(3 * position) * (-self.gravity))
        velocity = _clip(velocity, -self.max_speed, self.max_speed)
        position = _clip(position + velocity, self.min_position, self.max_position)
        velocity = np.where((position == self.min_position) & (velocity < 0), 0.0, velocity)
        terminated = (position >= self.goal_position) & (velocity >= self.goal_velocity)
        return np.array((position, velocity)), np.full(self.num_envs, -1.0), terminated

    def _observe(self, state):
        return np.ascontiguousarray(state.T, np.float32)


class MountainCarContinuousVectorEnv(ClassicVectorEnv):
    """``MountainCarContinuous-v0``: a force in [-1, 1]; reward 100 at the flag (0.45) minus 0.1 force squared a
    step; 999 steps at most.

    The trap here is types. Gymnasium's state is float64 after a reset and float32 after a step, and each of its
    Python ``if``s may swap a numpy number for a Python float (a velocity or position at its bound, a force clipped to
    [-1, 1]); numpy 2 then computes a step in float64 or in float32 depending on which. We follow each
    sub-environment's types with masks, in float64 arrays rounded to float32 where gymnasium's number is float32
    (:func:`_f32`), and compare a float32 number with a Python constant as numpy does (the constant rounded to
    float32). Actions are float32 (the trainers' and the space's) or float64; other dtypes are taken as float64."""

    env_id = "MountainCarContinuous-v0"
    PARAMS = ("power",)
    CONSTANTS = (*PARAMS, "min_action", "max_action", "min_position", "max_position", "max_speed")
    CONSTANTS += ("goal_position", "goal_velocity")
    STATE_SIZE = 2  # position, velocity
    PER_ENV = (*ClassicVectorEnv.PER_ENV, "fresh")

    def __init__(self, num_envs: int):
        super().__init__(num_envs)
        self.fresh = np.zeros(num_envs, bool)
        """Whose state was drawn by a reset and is still float64 (gymnasium's step makes it float32)."""

    def _start(self, idx, obs, options=None):
        super()._start(idx, obs, options)
        self.fresh[idx] = True

    def _draw(self, rng, options):
        low, high = utils.maybe_parse_reset_bounds(options, -0.6, -0.4)
        return np.array([rng.uniform(low=low, high=high), 0])

    def _dynamics(self, actions):
        action = actions.reshape(self.num_envs, -1)[:, 0]
        inside = (action >= self.min_action) & (action <= self.max_action)
        if action.dtype == np.float32 and inside.all() and not self.fresh.any():
            out = self._float32_step(action)  # the trainers' actions, no episode just started: the usual step
        else:
            out = self._mixed_step(action)
        self.fresh = np.zeros(self.num_envs, bool)
        return out

    def _float32_step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gymnasium's step where everything is float32: a float32 state (not fresh from a reset) and float32
        forces inside [-1, 1]. Numpy 2 computes float32 arrays with Python constants as it computes float32 scalars,
        so this is gymnasium's code; a bound that gymnasium assigns as a Python float is float32 here, which changes
        nothing (the next operation or the float32 state rounds it the same way)."""
        position, velocity = self.state.astype(np.float32)
        slope = 0.0025 * libm_cos(3 * position)  # float64, as gymnasium's Python float
        velocity = velocity + (action * self.power - slope.astype(np.float32))  # float32 - Python float: float32
        velocity = _clip(velocity, -self.max_speed, self.max_speed)
        position = _clip(position + velocity, self.min_position, self.max_position)
        velocity = np.where((position == self.min_position) & (velocity < 0), np.float32(0), velocity)
        terminated = (position >= self.goal_position) & (velocity >= self.goal_velocity)
        rewards = np.where(terminated, 100.0, 0.0) - self._squares(action) * 0.1
        return np.array((position, velocity), np.float64), rewards, terminated

    @staticmethod
    def _squares(action: np.ndarray) -> np.ndarray:
        """``math.pow(action[0], 2)`` of every action (C's ``pow`` in float64, the action unclipped)."""
        return np.fromiter([math.pow(v, 2) for v in action.tolist()], np.float64, action.size)

    def _mixed_step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gymnasium's step with each sub-environment's own types: float64 where its state was just drawn by a
        reset, or its action is float64 (other dtypes are taken as float64); a Python float where a force, velocity
        or position sits at its bound. Values in float64 arrays, rounded to float32 where gymnasium's number is
        float32 (:func:`_f32`)."""
        pos, vel = self.state
        wide = self.fresh  # the state is float64 (just reset), else float32
        a = action.astype(np.float64)

        def above(x, bound, x_wide):  # x > bound as numpy compares it: in float32 where x is float32
            return np.where(x_wide, x > bound, x > float(np.float32(bound)))

        def below(x, bound, x_wide):
            return np.where(x_wide, x < bound, x < float(np.float32(bound)))

        # force = min(max(action[0], min_action), max_action): the action itself, or a Python float at a bound
        clipped = (a < self.min_action) | (a > self.max_action)
        pushed = np.where(a > self.max_action, self.max_action, self.min_action) * self.power
        if action.dtype == np.float32:  # float32 * Python float: a float32 product, float32 all along
            narrow = ~clipped
            kept = _f32(a * float(np.float32(self.power)))
        else:
            narrow = np.zeros(self.num_envs, bool)
            kept = a * self.power
        # velocity += force * power - 0.0025 * math.cos(3 * position)
        slope = 0.0025 * libm_cos(np.where(wide, 3 * pos, _f32(3 * pos)))
        increment = np.where(narrow, _f32(kept - _f32(slope)), np.where(clipped, pushed, kept) - slope)
        vel_wide = wide | (~clipped & ~narrow)  # float64 velocity: a float64 state, or a float64 force
        velocity = np.where(vel_wide, vel + increment, _f32(vel + _f32(increment)))
        # if velocity > max_speed: velocity = max_speed (a Python float from here on); likewise below
        fast, slow = above(velocity, self.max_speed, vel_wide), below(velocity, -self.max_speed, vel_wide)
        velocity = np.where(fast, self.max_speed, np.where(slow, -self.max_speed, velocity))
        vel_python = fast | slow
        pos_wide = wide | (vel_wide & ~vel_python)
        position = np.where(pos_wide, pos + velocity, _f32(pos + _f32(velocity)))
        right, left = above(position, self.max_position, pos_wide), below(position, self.min_position, pos_wide)
        position = np.where(right, self.max_position, np.where(left, self.min_position, position))
        pos_wide = pos_wide | right | left  # a Python float now compares in float64
        at_wall = np.where(pos_wide, position == self.min_position, position == float(np.float32(self.min_position)))
        velocity = np.where(at_wall & (velocity < 0), 0.0, velocity)
        vel_wide = vel_wide | vel_python | (at_wall & (velocity == 0))
        terminated = ~below(position, self.goal_position, pos_wide) & ~below(velocity, self.goal_velocity, vel_wide)
        rewards = np.where(terminated, 100.0, 0.0) - self._squares(a) * 0.1
        return _f32(np.array((position, velocity))), rewards, terminated

    def _observe(self, state):
        return np.ascontiguousarray(state.T, np.float32)


CLASSES: dict[str, type[ClassicVectorEnv]] = {
    c.env_id: c for c in (AcrobotVectorEnv, PendulumVectorEnv, MountainCarVectorEnv, MountainCarContinuousVectorEnv)
}
"""The ids we step ourselves, and the class of each."""
