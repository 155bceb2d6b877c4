"""MinAtar (Young & Tian 2019): five Atari games on a 10 x 10 grid, for the trainers, through gymnasium's vector API.

``--env minatar:breakout`` names a game; :func:`gym_id` gives the id the ``minatar`` package registers on Gymnasium
(``minatar.gym.register_envs()``: ``MinAtar/Breakout-v1``, the ``-v1`` ids act with the game's minimal action set, as
the paper's agents do). The games keep the package's defaults, which are the paper's: sticky actions (the previous
action is repeated with probability 0.1) and difficulty ramping; no time limit.

A MinAtar observation is a ``(10, 10, C)`` array of booleans, one channel per kind of object (paddle, ball, trail and
bricks in Breakout: C = 4). The agents see it channels-first as float32, ``(C, 10, 10)``, as a convolution takes it
(:class:`ChannelsFirst`, one transpose per vector step for all envs). :func:`frame` colours a state for a GIF with
numpy alone: no display, no plotting library.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ..config import MINATAR_GAMES, MINATAR_PREFIX, ConfigError

_IDS = {game: f"MinAtar/{game.title().replace('_', '')}-v1" for game in MINATAR_GAMES}


def is_minatar(env_id: str) -> bool:
    """Does ``env_id`` name a MinAtar game (``minatar:NAME``)?"""
    return env_id.startswith(MINATAR_PREFIX)


def gym_id(env_id: str) -> str:
    """The Gymnasium id of ``minatar:NAME`` (``MinAtar/Breakout-v1``), registered on first use. Raises
    :class:`ConfigError` naming the games for an unknown one."""
    game = env_id[len(MINATAR_PREFIX) :]
    if game not in _IDS:
        raise ConfigError(
            "env", f"unknown MinAtar game {game!r}; one of: {', '.join(MINATAR_PREFIX + g for g in _IDS)}"
        )
    if _IDS[game] not in gym.envs.registry:
        import minatar.gym

        minatar.gym.register_envs()
    return _IDS[game]


class ChannelsFirst(gym.vector.VectorObservationWrapper):
    """A vector env of MinAtar games whose observations are float32 ``(N, C, 10, 10)`` instead of boolean
    ``(N, 10, 10, C)``: one transpose and one cast per vector step, for all N envs."""

    def __init__(self, env: gym.vector.VectorEnv):
        super().__init__(env)
        h, w, c = env.single_observation_space.shape
        self.single_observation_space = gym.spaces.Box(0.0, 1.0, (c, h, w), np.float32)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (env.num_envs, c, h, w), np.float32)

    def observations(self, observations: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(observations.transpose(0, 3, 1, 2), dtype=np.float32)


class ChannelsFirstEnv(gym.ObservationWrapper):
    """One MinAtar game with float32 ``(C, 10, 10)`` observations (evaluation, GIFs); ``render()`` in ``rgb_array``
    mode gives :func:`frame` of the current state."""

    def __init__(self, env: gym.Env, render_mode: str | None = None):
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0.0, 1.0, (c, h, w), np.float32)
        self._render_mode = render_mode
        self.metadata = {**env.metadata, "render_modes": ["rgb_array"], "render_fps": 10}

    @property
    def render_mode(self) -> str | None:
        return self._render_mode

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(observation.transpose(2, 0, 1), dtype=np.float32)

    def render(self) -> np.ndarray | None:
        if self._render_mode != "rgb_array":
            return None
        return frame(self.env.unwrapped.game.state())


def make_vec(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """``num_envs`` copies of a MinAtar game in one ``SyncVectorEnv`` (the games are a few microseconds a step:
    subprocesses would cost more than they save), with channels-first float32 observations."""
    return ChannelsFirst(gym.make_vec(gym_id(env_id), num_envs=num_envs, vectorization_mode="sync"))


def make(env_id: str, render_mode: str | None = None) -> gym.Env:
    """One MinAtar game with channels-first float32 observations; ``render_mode="rgb_array"`` renders with
    :func:`frame`."""
    return ChannelsFirstEnv(gym.make(gym_id(env_id)), render_mode)


# One colour per channel (object kind), in channel order, on a black background; cells where several objects overlap
# take the colour of the last channel, as MinAtar's own display does.
PALETTE = np.array(
    [
        (0, 0, 0),
        (240, 200, 60),
        (80, 200, 255),
        (120, 120, 200),
        (230, 90, 70),
        (110, 220, 110),
        (250, 140, 200),
        (200, 200, 200),
        (255, 160, 60),
        (150, 100, 240),
        (60, 160, 120),
    ],
    dtype=np.uint8,
)


def frame(state: np.ndarray, cell: int = 24) -> np.ndarray:
    """A MinAtar state ``(10, 10, C)`` of booleans as an RGB image ``(10 * cell, 10 * cell, 3)`` of uint8: each cell
    coloured by the last channel set there (black where none is), thin dark lines between the cells."""
    h, w, c = state.shape
    index = np.max(state * np.arange(1, c + 1), axis=2)  # 0 where empty, else 1 + the last channel set
    image = PALETTE[index % len(PALETTE)].repeat(cell, axis=0).repeat(cell, axis=1)
    image[::cell, :] //= 2  # the grid
    image[:, ::cell] //= 2
    return image
