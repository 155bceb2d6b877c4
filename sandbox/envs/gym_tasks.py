"""Gymnasium environments for the trainers: vectorised, checked, and with episode bookkeeping.

Gymnasium 1.x vector environments reset a finished sub-environment *on the next call* to ``step``
("next-step" autoreset): the step after an episode ends ignores its action, returns the first observation of the
new episode, reward 0 and no done flags. The trainers record such steps as ``valid = False`` and leave them out of
the loss. The benefit: the observation stored at that step is the *final* observation of the finished episode,
exactly what a truncated episode needs to bootstrap from.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

from ..config import LANG_PREFIX, ConfigError, import_user_module
from . import classic, minatar

# What --env-params may set, per environment class: the constants the dynamics read at every step. Not what the
# spaces were built from (Pendulum's max_torque, say), which would leave the action or observation bounds stale.
_CARTPOLE = ("gravity", "masscart", "masspole", "length", "force_mag", "tau")
ENV_PARAMS: dict[str, tuple[str, ...]] = {
    "CartPoleEnv": _CARTPOLE,  # length is the pole's half-length (0.5); masspole 0.1, masscart 1.0, force_mag 10
    "CartPoleVectorEnv": _CARTPOLE,
    "PendulumEnv": classic.PendulumVectorEnv.PARAMS,  # g 10.0, m 1.0, l 1.0, dt 0.05
    "AcrobotEnv": classic.AcrobotVectorEnv.PARAMS,  # the links' lengths, masses, centres of mass, inertia; dt 0.2
    "MountainCarEnv": classic.MountainCarVectorEnv.PARAMS,  # force 0.001, gravity 0.0025
    "Continuous_MountainCarEnv": classic.MountainCarContinuousVectorEnv.PARAMS,  # power 0.0015
}
ENV_PARAMS |= {cls.__name__: cls.PARAMS for cls in classic.CLASSES.values()}  # ours take the same names


def split_module(env_id: str) -> tuple[str | None, str]:
    """Gymnasium's ``module:Env-v0`` form (the module registers the env when imported) as ``(module, "Env-v0")``;
    ``(None, env_id)`` for a plain id and for the sandbox's own ``minatar:`` and ``lang:`` tasks."""
    if minatar.is_minatar(env_id) or env_id.startswith(LANG_PREFIX) or ":" not in env_id:
        return None, env_id
    module, _, name = env_id.partition(":")
    return module, name


def gym_id(env_id: str) -> str:
    """The id in gymnasium's registry of an ``--env``: itself; for ``module:Env-v0``, ``Env-v0``, once ``module`` is
    imported (it registers the env; a one-line error if it cannot be imported); for a MinAtar game
    (``minatar:breakout``) the id the ``minatar`` package registers (``MinAtar/Breakout-v1``;
    :mod:`sandbox.envs.minatar`)."""
    if minatar.is_minatar(env_id):
        return minatar.gym_id(env_id)
    module, name = split_module(env_id)
    if module is not None:
        import_user_module(module, "env")
    return name


def check_env_id(env_id: str) -> None:
    """Raise :class:`ConfigError` for an id gymnasium does not know (after importing the module of a
    ``module:Env-v0``), suggesting the closest ones."""
    if minatar.is_minatar(env_id):
        minatar.gym_id(env_id)  # an unknown game: one line naming the games
        return
    if env_id.startswith("MinAtar/"):
        raise ConfigError("env", f"{env_id}: name MinAtar games as minatar:NAME, e.g. minatar:breakout")
    name = gym_id(env_id)
    if name in gym.envs.registry:
        return
    module, _ = split_module(env_id)
    if module is not None:
        mine = [k for k, spec in gym.envs.registry.items() if _entry_module(spec.entry_point) == module]
        found = f"it registers {', '.join(mine)}" if mine else "it registers no env with gymnasium.register"
        raise ConfigError("env", f"module {module} was imported but {name!r} is not registered: {found}")
    close = difflib.get_close_matches(env_id, list(gym.envs.registry), n=3)
    hint = (
        f"; did you mean {' or '.join(close)}?"
        if close
        else "; see gymnasium.envs.registry for the ids, or name your env's module: --env module:Env-v0"
    )
    raise ConfigError("env", f"unknown environment id {env_id!r}{hint}")


def _entry_module(entry_point) -> str:
    """The module an env's ``entry_point`` (``"module:Class"`` or the class itself) lives in."""
    return entry_point.partition(":")[0] if isinstance(entry_point, str) else getattr(entry_point, "__module__", "")


def apply_env_params(env: gym.Env | gym.vector.VectorEnv, env_id: str, params: dict[str, float]) -> None:
    """Set physical parameters (``--env-params``) on ``env``: a single env, a numpy-vectorised one, or every
    sub-env of a ``SyncVectorEnv``. Raise :class:`ConfigError` for a name the env does not have (listing those it
    has) or a value that is not positive. CartPole's derived constants (total mass, pole mass x length) follow."""
    if not params:
        return
    inner = env.unwrapped
    targets = [e.unwrapped for e in inner.envs] if isinstance(inner, gym.vector.SyncVectorEnv) else [inner]
    for target in targets:
        allowed = ENV_PARAMS.get(type(target).__name__)
        if allowed is None:
            names = ", ".join(sorted(n.removesuffix("Env") for n in ENV_PARAMS if not n.endswith("VectorEnv")))
            raise ConfigError("env_params", f"{env_id} has no documented physical parameters; supported envs: {names}")
        for name, value in params.items():
            if name not in allowed:
                raise ConfigError("env_params", f"{env_id} has no parameter {name!r}; one of: {', '.join(allowed)}")
            if not value > 0:
                raise ConfigError("env_params", f"{name} must be > 0, got {value!r}")
            setattr(target, name, float(value))
        if type(target).__name__.startswith("CartPole"):
            target.total_mass = target.masspole + target.masscart
            target.polemass_length = target.masspole * target.length


def make_env(env_id: str, env_params: dict[str, float] | None = None, render_mode: str | None = None) -> gym.Env:
    """One env (for evaluation and GIFs), with ``env_params`` applied."""
    check_env_id(env_id)
    if minatar.is_minatar(env_id):
        env = minatar.make(env_id, render_mode)
    else:
        kwargs = {} if render_mode is None else {"render_mode": render_mode}  # an env of your own may take none
        try:
            with warnings.catch_warnings():  # gymnasium warns of a render mode the env lacks: the error below says it
                warnings.filterwarnings("ignore", message=".*render_mode.*")
                env = gym.make(gym_id(env_id), **kwargs)
        except TypeError as err:
            if render_mode is None or "render_mode" not in str(err):
                raise
            raise ConfigError("gif", f"{env_id} does not render (its __init__ takes no render_mode)") from None
        if render_mode is not None and render_mode not in env.metadata.get("render_modes", ()):
            env.close()
            raise ConfigError("gif", f"{env_id} has no {render_mode} rendering (metadata render_modes)")
    apply_env_params(env, env_id, env_params or {})
    return env


def make_vec_env(
    env_id: str, num_envs: int, seed: int, env_params: dict[str, float] | None = None
) -> tuple[gym.vector.VectorEnv, np.ndarray]:
    """Build ``num_envs`` copies of ``env_id`` behind gymnasium's vector API, with ``env_params`` applied, and
    reset them with ``seed``.

    Acrobot, Pendulum and the two MountainCars: ours, stepped together in numpy and equal to gymnasium's
    ``SyncVectorEnv`` to the last bit (:mod:`sandbox.envs.classic`). Else gymnasium's numpy-vectorised
    implementation where the env registers one (CartPole), else ``SyncVectorEnv`` (one process: for these cheap
    envs, subprocesses cost more than they save); MinAtar games with channels-first float32 observations
    (:func:`sandbox.envs.minatar.make_vec`).
    Returns ``(envs, first_observations)``. Raises :class:`ConfigError` for unknown ids and unsupported spaces.
    """
    check_env_id(env_id)
    if minatar.is_minatar(env_id):
        envs = minatar.make_vec(env_id, num_envs)
    elif env_id in classic.CLASSES:
        envs = classic.CLASSES[env_id](num_envs)
    else:
        spec = gym.spec(gym_id(env_id))
        mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
        envs = gym.make_vec(spec.id, num_envs=num_envs, vectorization_mode=mode)
    check_spaces(env_id, envs.single_observation_space, envs.single_action_space)
    apply_env_params(envs, env_id, env_params or {})
    if envs.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP) != gym.vector.AutoresetMode.NEXT_STEP:
        raise ConfigError("env", f"{env_id}: the trainers expect gymnasium's next-step autoreset")
    obs, _ = envs.reset(seed=seed)
    return envs, obs


def check_env(env_id: str, env_params: dict[str, float] | None = None) -> tuple[gym.Space, gym.Space]:
    """Raise :class:`ConfigError` unless ``env_id`` is known, has spaces the agents handle and takes
    ``env_params`` (builds one env). Returns its ``(observation_space, action_space)``."""
    check_env_id(env_id)
    try:
        env = minatar.make(env_id) if minatar.is_minatar(env_id) else gym.make(gym_id(env_id))
    except gym.error.Error as err:  # e.g. DependencyNotInstalled for Box2D or MuJoCo envs
        raise ConfigError("env", f"{env_id} cannot be built here: {str(err).splitlines()[0]}") from None
    try:
        check_spaces(env_id, env.observation_space, env.action_space)
        apply_env_params(env, env_id, env_params or {})
        return env.observation_space, env.action_space
    finally:
        env.close()


def check_spaces(env_id: str, obs_space: gym.Space, act_space: gym.Space) -> None:
    """The agents handle a flat Box observation (a MinAtar game: channels-first images, ``(C, 10, 10)``) and a
    Discrete or Box action."""
    if minatar.is_minatar(env_id):
        return  # the package's own games: (C, 10, 10) and Discrete
    if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1):
        raise ConfigError("env", f"{env_id} has observation space {obs_space}; supported: a 1-D Box")
    if isinstance(act_space, gym.spaces.Box):
        if len(act_space.shape) != 1:
            raise ConfigError("env", f"{env_id} has action space {act_space}; supported: Discrete or a 1-D Box")
    elif not isinstance(act_space, gym.spaces.Discrete):
        raise ConfigError("env", f"{env_id} has action space {act_space}; supported: Discrete or a 1-D Box")


def reward_threshold(env_id: str) -> float | None:
    """The env's registered ``reward_threshold`` (475 for CartPole-v1), or None (MinAtar's games have none)."""
    return gym.spec(gym_id(env_id)).reward_threshold


@dataclass
class EpisodeTracker:
    """Sums rewards per sub-environment and reports the episodes that finish.

    ``step(rewards, dones, valid)`` takes one vector step's arrays and returns ``(returns, lengths)`` of the
    episodes that finished at it. Steps with ``valid = False`` (autoreset steps) are not counted.
    """

    num_envs: int

    def __post_init__(self):
        self._ret = np.zeros(self.num_envs, dtype=np.float64)
        self._len = np.zeros(self.num_envs, dtype=np.int64)

    def step(self, rewards: np.ndarray, dones: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._ret += rewards * valid
        self._len += valid
        if not dones.any():
            return _EMPTY_F, _EMPTY_I
        ret, length = self._ret[dones].copy(), self._len[dones].copy()
        self._ret[dones] = 0.0
        self._len[dones] = 0
        return ret, length

    def state_dict(self) -> dict:
        """For checkpoints: the running sums of the episodes in flight, as tensors."""
        return {
            "running_return": torch.from_numpy(self._ret.copy()),
            "running_length": torch.from_numpy(self._len.copy()),
        }

    def load_state_dict(self, d: dict) -> None:
        self._ret[:], self._len[:] = d["running_return"].numpy(), d["running_length"].numpy()


def action_clipper(space: gym.Space):
    """Box actions are sampled from an unbounded Gaussian and clipped to the bounds only for the env (the stored
    action, and its log-prob, are the unclipped sample). Discrete actions pass through."""
    if isinstance(space, gym.spaces.Box):
        low, high = space.low, space.high
        return lambda a: np.clip(a, low, high)
    return lambda a: a


class StepTogether:
    """Step the environments of several population members as if each stepped its own, in one call where possible.

    ``members``: one vector env per member (the same env id and parameters). Where the members' envs are stepped in
    numpy (gymnasium's ``CartPoleVectorEnv``; ours for Acrobot, Pendulum and the MountainCars,
    :mod:`sandbox.envs.classic`), they are stepped as one vector env of all their sub-environments: the dynamics are
    elementwise, so each column computes exactly what it would alone, and a member's resets draw from the member's
    own random generators, in the same order as on its own (ours keep one generator per sub-environment, which
    simply moves into the combined env; CartPole's single generator per member is drawn from here). The answers are
    equal to the separate steps', to the last bit (tested). Any other env is stepped member by member. The members'
    own env objects stop being stepped (only closed): the combined env holds the state from then on.
    """

    def __init__(self, members: list[gym.vector.VectorEnv], env_id: str, env_params: dict[str, float]):
        self.members = members
        kind = type(members[0])
        numpy_vectorised = kind is CartPoleVectorEnv or issubclass(kind, classic.ClassicVectorEnv)
        self.together = numpy_vectorised and len(members) > 1 and all(type(m) is kind for m in members)
        if not self.together:
            return
        self.bounds = np.cumsum([0, *(m.num_envs for m in members)])
        if kind is not CartPoleVectorEnv:
            self.env = kind.side_by_side(members)
            return
        self.env, _ = make_vec_env(env_id, int(self.bounds[-1]), 0, env_params)  # its own resets are overwritten
        self.env.state = np.concatenate([m.state for m in members], axis=1)
        self.env.steps = np.concatenate([m.steps for m in members])
        self.env.prev_done = np.concatenate([m.prev_done for m in members])

    def step(self, actions: list[np.ndarray], active: list[int] | None = None) -> list[tuple | None]:
        """``(obs, rewards, terminated, truncated)`` of every member, for its ``actions``. Members not ``active``
        (default: all) may be left unstepped (their answer is None)."""
        if not self.together:
            active = range(len(self.members)) if active is None else active
            return [m.step(a)[:4] if k in active else None for k, (m, a) in enumerate(zip(self.members, actions))]
        env = self.env
        if isinstance(env, classic.ClassicVectorEnv):
            obs, rewards, terminated, truncated, _ = env.step(np.concatenate(actions))
        else:
            obs, rewards, terminated, truncated = self._step_cartpole(env, np.concatenate(actions))
        return [
            (obs[a:b], rewards[a:b], terminated[a:b], truncated[a:b]) for a, b in zip(self.bounds[:-1], self.bounds[1:])
        ]

    def _step_cartpole(self, env: CartPoleVectorEnv, actions: np.ndarray) -> tuple:
        """A step of the combined CartPole env, each member's resets drawn again from the member's generator."""
        resetting = env.prev_done.copy()  # the sub-environments this step resets (next-step autoreset)
        _, rewards, terminated, truncated, _ = env.step(actions)
        for k, member in enumerate(self.members):  # resets from each member's own generator, as on its own
            block = slice(self.bounds[k], self.bounds[k + 1])
            n = int(resetting[block].sum())
            if n:
                cols = np.flatnonzero(resetting[block]) + self.bounds[k]
                env.state[:, cols] = member.np_random.uniform(low=env.low, high=env.high, size=(4, n))
        return env.state.T.astype(np.float32), rewards, terminated, truncated

    def close(self) -> None:
        if self.together:
            self.env.close()


def episode_limit(env_id: str) -> int | None:
    """The env's registered time limit (``max_episode_steps``: 500 for CartPole-v1), or None (MinAtar's games have
    none)."""
    return gym.spec(gym_id(env_id)).max_episode_steps


_EMPTY_F = np.zeros(0, dtype=np.float64)
_EMPTY_I = np.zeros(0, dtype=np.int64)
