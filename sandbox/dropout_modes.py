"""The four ways of handling dropout in policy-gradient training, defined once.

How the rollout forward pass and the update forward pass treat dropout decides what PPO's ratio
``r = pi_theta(a|s) / pi_old(a|s)`` means. Everything that depends on the mode (the trainers, the language sampler,
``sandbox eval``, the config) reads this table; nothing else compares mode names.

================  ==============================  =====================================  =====================
mode              rollout forward                 update forward                         first-minibatch ratio
================  ==============================  =====================================  =====================
``off``           p = 0 everywhere                p = 0                                  exactly 1
``rollout-eval``  eval mode: no dropout           train mode: fresh masks                != 1 (SB3's behaviour)
``naive``         train mode: fresh masks         train mode: new fresh masks            != 1 (TRL's default)
``consistent``    train mode, masks stored        the stored masks are reused            exactly 1
================  ==============================  =====================================  =====================

``off`` is open-instruct's ``disable_dropout_in_model``; ``consistent`` is Hausknecht & Wagener (2022), "Consistent
Dropout for Policy Gradient Reinforcement Learning".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DropoutModeName = Literal["off", "rollout-eval", "naive", "consistent"]


@dataclass(frozen=True)
class DropoutMode:
    """One row of the table: what the rollout and the update do with the dropout layers."""

    name: str
    uses_dropout: bool
    """False: p is set to 0 on every dropout layer (mode ``off``)."""
    rollout_train: bool
    """The rollout (sampling) forward runs in train mode: dropout on."""
    update_train: bool
    """The update forward runs in train mode: dropout on (fresh masks unless ``store_masks``)."""
    store_masks: bool
    """The rollout's masks are stored with each transition (token) and replayed by the update."""
    exact_ratio: bool
    """The first minibatch of every update has r = 1 exactly (up to float rounding)."""

    @property
    def sampler_reproducible(self) -> bool:
        """Can another forward pass give the sampler's exact log-probs? Not when the rollout drew fresh masks and
        threw them away (``naive``): then the sampler's own log-probs are the only true ``logp_old``."""
        return not self.rollout_train or self.store_masks


MODES: dict[str, DropoutMode] = {
    m.name: m
    for m in (
        DropoutMode(
            "off", uses_dropout=False, rollout_train=False, update_train=False, store_masks=False, exact_ratio=True
        ),
        DropoutMode(
            "rollout-eval",
            uses_dropout=True,
            rollout_train=False,
            update_train=True,
            store_masks=False,
            exact_ratio=False,
        ),
        DropoutMode(
            "naive", uses_dropout=True, rollout_train=True, update_train=True, store_masks=False, exact_ratio=False
        ),
        DropoutMode(
            "consistent", uses_dropout=True, rollout_train=True, update_train=True, store_masks=True, exact_ratio=True
        ),
    )
}
MODE_NAMES: tuple[str, ...] = tuple(MODES)


def dropout_is_off(name: object) -> bool:
    """True for a mode in which the dropout layers do nothing (``off``): its rate, schedule and variants are inert.
    Any other value, a mode name or not, is False."""
    return isinstance(name, str) and name in MODES and not MODES[name].uses_dropout
