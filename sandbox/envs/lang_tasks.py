"""Toy "language" tasks: a prompt distribution, a reward on completions, and a synthetic corpus for the reference.

Every task uses one shared word-level vocabulary (``VOCAB``). A prompt is a fixed-length row of token ids, left-padded
with ``<pad>``; a completion is up to ``max_new_tokens`` tokens and ends with ``<eos>``. Rewards are computed from the
completion's tokens before ``<eos>``. A completion that reaches ``max_new_tokens`` without ``<eos>`` is *truncated*.

The corpus of each task is made so that a model trained on it is fluent in the format but only partly right (for
example, it reverses half of the time and copies the other half), which leaves reinforcement learning something to
improve. Every task is also a Gymnasium environment (:class:`LangEnv`): the token-level MDP.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import gymnasium as gym
import numpy as np

from ..config import ConfigError

# --- vocabulary ----------------------------------------------------------------------------------------------------
SPECIAL = ["<pad>", "<bos>", "<eos>"]
TAGS = ["digit:", "review:", "reverse:", "sort:", "add:", "write:"]
SYMBOLS = list("abcdefgh")
DIGITS = list("0123456789")
MARKS = [">", "+", "="]
POSITIVE = ["good", "great", "love", "happy", "nice", "fun"]
NEGATIVE = ["bad", "boring", "sad", "awful", "dull", "poor"]
NEUTRAL = ["the", "movie", "film", "plot", "actor", "was", "is", "and", "very", "it"]
VOCAB: list[str] = SPECIAL + TAGS + SYMBOLS + DIGITS + MARKS + POSITIVE + NEGATIVE + NEUTRAL
TOKEN: dict[str, int] = {w: i for i, w in enumerate(VOCAB)}
PAD, BOS, EOS = TOKEN["<pad>"], TOKEN["<bos>"], TOKEN["<eos>"]
WORD_IDS = np.array([TOKEN[w] for w in POSITIVE + NEGATIVE + NEUTRAL])
POSITIVE_IDS = frozenset(TOKEN[w] for w in POSITIVE)


def encode(words: list[str]) -> list[int]:
    return [TOKEN[w] for w in words]


def decode(ids) -> str:
    return " ".join(VOCAB[i] for i in ids if i != PAD)


def completion_tokens(row) -> list[int]:
    """The tokens of one completion before its first ``<eos>`` (all of them if it has none)."""
    out = []
    for t in row:
        t = int(t)
        if t == EOS:
            break
        out.append(t)
    return out


@dataclasses.dataclass(frozen=True)
class Task:
    """A prompt distribution and a reward. Subclasses fill in the three methods."""

    name: str
    prompt_len: int
    max_new_tokens: int
    threshold: float
    """Mean reward counted as 'solved' (``solved_at_s`` in summary.json)."""
    reward_range: tuple[float, float] = (0.0, 1.0)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, list]:
        """``n`` prompts: ``(token ids (n, prompt_len), per-prompt info the reward needs)``."""
        raise NotImplementedError

    def reward(self, info, completion: list[int]) -> float:
        """Reward of one completion (its tokens before ``<eos>``) for the prompt described by ``info``."""
        raise NotImplementedError

    def demonstration(self, info, rng: np.random.Generator) -> list[int]:
        """A corpus completion for the reference model: well-formed, only sometimes right (no ``<eos>``)."""
        raise NotImplementedError

    def rewards(self, infos: list, completions: np.ndarray) -> np.ndarray:
        return np.array([self.reward(i, completion_tokens(c)) for i, c in zip(infos, completions)], dtype=np.float32)


def _left_pad(rows: list[list[int]], width: int) -> np.ndarray:
    out = np.full((len(rows), width), PAD, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, width - len(r) :] = r
    return out


def _fraction_right(out: list[int], target: list[int]) -> float:
    """Positions that match, over the longer of the two: extra or missing tokens count as wrong."""
    n = max(len(out), len(target))
    return sum(a == b for a, b in zip(out, target)) / n if n else 1.0


@dataclasses.dataclass(frozen=True)
class DigitTask(Task):
    """A pure bandit: one prompt, a one-token answer d, reward 1 - |d - target| / 9."""

    target: int = 7

    def sample(self, n, rng):
        return _left_pad([[BOS, TOKEN["digit:"]]] * n, self.prompt_len), [None] * n

    def reward(self, info, completion):
        if len(completion) != 1 or VOCAB[completion[0]] not in DIGITS:
            return 0.0
        return 1.0 - abs(int(VOCAB[completion[0]]) - self.target) / 9.0

    def demonstration(self, info, rng):
        return [TOKEN[str(rng.integers(10))]]


def _sentence(rng: np.random.Generator, n_words: int, p_positive: float) -> list[int]:
    """A review-like word sequence: 'the movie was very good and ...' with sentiment words mixed in."""
    frame = [
        "the",
        "movie",
        "was",
        "very",
        None,
        "and",
        "the",
        "plot",
        "is",
        None,
        "it",
        "was",
        None,
        "the",
        "actor",
        "is",
        None,
    ]
    start = int(rng.integers(0, 4))
    words = []
    for w in (frame[start:] + frame)[:n_words]:
        if w is None:
            pool = POSITIVE if rng.random() < p_positive else NEGATIVE
            w = pool[int(rng.integers(len(pool)))]
        words.append(TOKEN[w])
    return words


@dataclasses.dataclass(frozen=True)
class PositiveTask(Task):
    """Free text; reward = fraction of positive words. Repeating one positive word scores 1: the hack that a KL
    term to the fluent reference is there to stop."""

    def sample(self, n, rng):
        return _left_pad([[BOS, TOKEN["review:"]]] * n, self.prompt_len), [None] * n

    def reward(self, info, completion):
        return sum(t in POSITIVE_IDS for t in completion) / len(completion) if completion else 0.0

    def demonstration(self, info, rng):
        return _sentence(rng, int(rng.integers(4, self.max_new_tokens)), p_positive=0.5)


@dataclasses.dataclass(frozen=True)
class SequenceTask(Task):
    """A prompt of 3-6 symbols; the completion is a transform of them (reverse, sort). Dense reward: fraction of
    positions right; sparse: 1 for an exact match, else 0."""

    sparse: bool = False
    transform: Callable[[list[int]], list[int]] = lambda s: s[::-1]
    min_len: int = 3
    max_len: int = 6

    def sample(self, n, rng):
        rows, infos = [], []
        for _ in range(n):
            k = int(rng.integers(self.min_len, self.max_len + 1))
            symbols = [TOKEN[SYMBOLS[i]] for i in rng.integers(0, len(SYMBOLS), k)]
            rows.append([BOS, TOKEN[f"{self.name}:"], *symbols, TOKEN[">"]])
            infos.append(self.transform(symbols))
        return _left_pad(rows, self.prompt_len), infos

    def reward(self, target, completion):
        if self.sparse:
            return float(completion == target)
        return _fraction_right(completion, target)

    def demonstration(self, target, rng):
        if rng.random() < 0.5:
            return list(target)
        wrong = list(target)
        if rng.random() < 0.5:  # a plausible mistake: the prompt's order (for reverse: a copy)
            wrong = wrong[::-1] if self.name == "reverse" else list(rng.permutation(wrong))
        else:  # or two symbols swapped
            i, j = rng.choice(len(wrong), 2, replace=False)
            wrong[i], wrong[j] = wrong[j], wrong[i]
        return [int(t) for t in wrong]


@dataclasses.dataclass(frozen=True)
class AddTask(Task):
    """'a+b=' with a, b < 100; exact match (or, with partial credit, the fraction of digits right, right-aligned)."""

    partial_credit: bool = False

    def sample(self, n, rng):
        rows, infos = [], []
        for _ in range(n):
            a, b = (int(x) for x in rng.integers(0, 100, 2))
            rows.append([BOS, TOKEN["add:"], *encode(list(str(a))), TOKEN["+"], *encode(list(str(b))), TOKEN["="]])
            infos.append(encode(list(str(a + b))))
        return _left_pad(rows, self.prompt_len), infos

    def reward(self, target, completion):
        if not self.partial_credit:
            return float(completion == target)
        return _fraction_right(completion[::-1], target[::-1])

    def demonstration(self, target, rng):
        value = int(decode(target).replace(" ", ""))
        if rng.random() >= 0.5:
            value = max(0, value + int(rng.choice([-10, -1, 1, 10])))
        return encode(list(str(value)))


@dataclasses.dataclass(frozen=True)
class LengthTask(Task):
    """Free text; reward -|len - L*| / L*. Shows the length bias of the loss aggregations."""

    target_len: int = 8
    reward_range: tuple[float, float] = (-1.0, 0.0)

    def sample(self, n, rng):
        return _left_pad([[BOS, TOKEN["write:"]]] * n, self.prompt_len), [None] * n

    def reward(self, info, completion):
        return -abs(len(completion) - self.target_len) / self.target_len

    def demonstration(self, info, rng):
        return _sentence(rng, int(rng.integers(1, self.max_new_tokens)), p_positive=0.5)


TASK_NAMES = ("digit", "positive", "reverse", "sort", "add", "length")


def check_task(name: str) -> None:
    """A one-line :class:`~sandbox.config.ConfigError` on ``--env`` unless ``name`` (``lang:NAME``'s NAME) is a task."""
    if name not in TASK_NAMES:
        known = ", ".join(f"lang:{t}" for t in TASK_NAMES)
        raise ConfigError("env", f"unknown language task {name!r}; one of: {known}")


def make_task(name: str, sparse: bool = False, partial_credit: bool = False) -> Task:
    """The task ``name`` (one of ``TASK_NAMES``) with its options. Thresholds are documented in the README."""
    if name == "digit":
        return DigitTask("digit", prompt_len=2, max_new_tokens=2, threshold=0.95)
    if name == "positive":
        return PositiveTask("positive", prompt_len=2, max_new_tokens=10, threshold=0.6)
    if name in ("reverse", "sort"):
        transform = (lambda s: s[::-1]) if name == "reverse" else sorted
        return SequenceTask(name, prompt_len=9, max_new_tokens=7, threshold=0.9, sparse=sparse, transform=transform)
    if name == "add":
        return AddTask(
            "add",
            prompt_len=8,
            max_new_tokens=4,
            threshold=0.9 if partial_credit else 0.8,
            partial_credit=partial_credit,
        )
    if name == "length":
        return LengthTask("length", prompt_len=2, max_new_tokens=16, threshold=-0.1)
    raise KeyError(name)


class LangEnv(gym.Env):
    """A task as a token-level MDP. Observation: the token ids so far (prompt, then the completion), padded with
    ``<pad>`` to ``prompt_len + max_new_tokens``. Action: the next token. Reward: the task's reward when the
    episode ends (on ``<eos>``, or at ``max_new_tokens``), 0 before. The length limit is part of the task, so reaching
    it terminates the episode (``info['truncated_completion']`` says so)."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, task: Task, render_mode: str | None = None):
        self.task = task
        self.render_mode = render_mode
        self.width = task.prompt_len + task.max_new_tokens
        self.observation_space = gym.spaces.Box(0, len(VOCAB) - 1, (self.width,), dtype=np.int64)
        self.action_space = gym.spaces.Discrete(len(VOCAB))
        self._tokens = np.full(self.width, PAD, dtype=np.int64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        prompt, infos = self.task.sample(1, self.np_random)
        self._info = infos[0]
        self._tokens = np.full(self.width, PAD, dtype=np.int64)
        self._tokens[: self.task.prompt_len] = prompt[0]
        self._n = 0
        return self._tokens.copy(), {}

    def step(self, action):
        action = int(action)
        self._tokens[self.task.prompt_len + self._n] = action
        self._n += 1
        done = action == EOS or self._n >= self.task.max_new_tokens
        reward = 0.0
        info = {}
        if done:
            completion = completion_tokens(self._tokens[self.task.prompt_len : self.task.prompt_len + self._n])
            reward = float(self.task.reward(self._info, completion))
            info["truncated_completion"] = action != EOS
        return self._tokens.copy(), reward, done, False, info

    def render(self):
        return decode(self._tokens)
