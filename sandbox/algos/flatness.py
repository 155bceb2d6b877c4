"""The variance-flatness measurement of Feng & Tu (2021), as pure functions of a weight trajectory and a loss.

Feng & Tu take the weights ``w(t)`` visited by SGD over a window of T steps, and their principal directions ``p_i``
(PCA of the trajectory). Along each one they measure two things:

- the *variance* of the weights, ``sigma_i^2 = mean_t ((w(t) - w0) . p_i)^2`` with ``w0`` the window's mean;
- the *flatness* of the loss, ``F_i = theta_r - theta_l``: the width of the interval around ``w0`` along ``p_i``
  within which the loss stays below ``e * L(w0)``, i.e. rises by less than ``(e - 1) * L(w0)``.

In equilibrium (a Gibbs distribution, ``P(w) ~ exp(-L / T)``) the weights would fluctuate *more* where the loss is
*flatter*: ``sigma^2 ~ F^2``. SGD does the opposite: ``sigma_i^2 ~ F_i^(-psi)`` with psi about 4 on MNIST, the
*inverse* variance-flatness relation, because the minibatch noise is stronger along sharp directions. Zhang et al.
(2024, "Stochastic Modified Equations and Dynamics of Dropout Algorithm") report the same inverse relation for
dropout's noise, and a Hessian-variance relation (the noise covariance aligned with the Hessian): along each direction
we also measure the curvature ``p_i^T H p_i`` at ``w0``.

Everything here is plain maths on a loss the caller supplies (``loss()`` at the parameters' current values), with a
known-answer test on a quadratic loss (``tests/test_flatness.py``). How a run uses it (the loss is the policy loss on
one held batch, since RL has no fixed dataset) is :class:`sandbox.algos.diagnostics.FlatnessProbe`.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from scipy import optimize, stats
from torch import Tensor

FENG_TU_FACTOR = math.e
"""Feng & Tu's flatness: the width within which the loss stays below e times its value at the centre."""


def trajectory_pca(trajectory: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """PCA of a weight trajectory ``(T, P)`` (T weight vectors of P parameters, one per step of the window).

    Returns ``(centre (P,), directions (k, P), variances (k,))`` in float64: the window's mean, the k leading
    principal directions (orthonormal rows, largest variance first; each one's sign is arbitrary) and the variance of
    the weights along each, ``mean_t ((w(t) - centre) . p_i)^2`` (divided by T, as Feng & Tu). T points span at most
    T - 1 directions, so ``k <= T - 1``.

    The trap: with P >> T, PCA of a pure random walk already gives variances falling like 1/i^2 along cosine-shaped
    directions (Antognini & Sohl-Dickstein 2018); a decreasing spectrum alone says nothing about the landscape.
    """
    x = trajectory.to(torch.float64)
    T = x.shape[0]
    if not 1 <= k <= T - 1:
        raise ValueError(f"k must be in [1, T - 1] = [1, {T - 1}], got {k}")
    centre = x.mean(dim=0)
    _, s, vh = torch.linalg.svd(x - centre, full_matrices=False)
    return centre, vh[:k], s[:k].square() / T


def loss_width(
    profile: Callable[[float], float], rise: float, start: float, max_dist: float
) -> tuple[float, float, bool]:
    """Where a 1-D loss profile first rises by ``rise`` above its value at 0, on each side.

    ``profile(d)`` is the loss at distance ``d`` along a direction (``d`` < 0: the other side). From ``start`` (> 0),
    the distance doubles until the rise is reached, then Brent's method finds the crossing between the last two
    distances. Returns ``(left, right, censored)``, both >= 0: the flatness is ``left + right``. A side that does not
    rise by ``rise`` within ``max_dist`` counts as ``max_dist`` and sets ``censored``. The trap: only the probed
    distances are looked at, so a bump that rises above ``rise`` and falls back between two of them is missed, and
    when the last doubling holds several crossings Brent's method returns one of them, not necessarily the first.
    """
    base = profile(0.0)

    def side(sign: float) -> tuple[float, bool]:
        low, high = 0.0, min(start, max_dist)
        while profile(sign * high) - base < rise:
            if high >= max_dist:
                return max_dist, True
            low, high = high, min(2 * high, max_dist)
        crossing = optimize.brentq(lambda d: profile(sign * d) - base - rise, low, high, xtol=1e-9 * high, rtol=1e-12)
        return float(crossing), False

    (left, cl), (right, cr) = side(-1.0), side(1.0)
    return left, right, cl or cr


def curvature_along(loss: Callable[[], Tensor], params: Sequence[Tensor], direction: Tensor) -> float:
    """``p^T H p``: the second derivative of ``loss()`` along the unit vector ``direction (P,)`` at the parameters'
    current values (a Hessian-vector product by double backpropagation; exact, no finite differences). ``params``:
    the leaf tensors whose flattened concatenation, in order, is the P-vector."""
    params = list(params)
    grads = torch.autograd.grad(loss(), params, create_graph=True, allow_unused=True)
    pieces = _split(direction, params)
    slope = sum((g * p).sum() for g, p in zip(grads, pieces) if g is not None)
    if not isinstance(slope, Tensor) or not slope.requires_grad:
        return 0.0  # the loss is linear (or constant) in these parameters
    hvp = torch.autograd.grad(slope, params, allow_unused=True)
    return float(sum((h * p).sum() for h, p in zip(hvp, pieces) if h is not None))


def variance_flatness(
    trajectory: Tensor,
    loss: Callable[[], Tensor],
    params: Sequence[Tensor],
    k: int,
    rise: float,
    max_dist: float | None = None,
) -> dict[str, list]:
    """Feng & Tu's measurement along the ``k`` leading principal directions of ``trajectory (T, P)``.

    ``loss()`` is evaluated at the parameters' current values; ``params`` are those leaf tensors (their flattened
    concatenation is a P-vector, the trajectory's space). They are moved to the window's centre and along each
    direction, then put back exactly as they were. ``rise``: the loss increase that bounds the flat region (Feng &
    Tu: ``(e - 1) * L(centre)``, :data:`FENG_TU_FACTOR`); ``max_dist``: how far to look on each side (default: the
    norm of the centre, moving by a whole weight vector).

    Returns lists of length k: ``variance``, ``flatness`` (= ``left + right``), ``curvature`` (``p^T H p`` at the
    centre), ``left``, ``right``, ``censored``.
    """
    params = list(params)
    saved = torch.cat([p.detach().reshape(-1) for p in params]).clone()
    centre, directions, variances = trajectory_pca(trajectory, k)
    max_dist = float(centre.norm()) if max_dist is None else max_dist
    out: dict[str, list] = {"variance": variances.tolist()}
    out |= {name: [] for name in ("flatness", "curvature", "left", "right", "censored")}
    try:
        for direction, variance in zip(directions, variances):

            def profile(d: float, direction=direction) -> float:
                _assign(params, centre + d * direction)
                with torch.no_grad():
                    return float(loss())

            start = max(math.sqrt(float(variance)), 1e-6 * max_dist)
            left, right, censored = loss_width(profile, rise, start, max_dist)
            _assign(params, centre)
            out["curvature"].append(curvature_along(loss, params, direction))
            out["flatness"].append(left + right)
            out["left"].append(left)
            out["right"].append(right)
            out["censored"].append(censored)
    finally:
        _assign(params, saved)
    return out


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares slope of ``log y`` on ``log x`` with its 95% t interval (n - 2 degrees of freedom):
    ``(slope, low, high)``. Points where either is not positive and finite are left out; fewer than 3 points left:
    NaN everywhere (two points always fit a line exactly)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 3:
        return math.nan, math.nan, math.nan
    fit = stats.linregress(np.log(x[ok]), np.log(y[ok]))
    half = stats.t.ppf(0.975, ok.sum() - 2) * fit.stderr
    return float(fit.slope), float(fit.slope - half), float(fit.slope + half)


def _split(vector: Tensor, params: Sequence[Tensor]) -> list[Tensor]:
    """``vector (P,)`` cut into pieces shaped like ``params``, in their dtype."""
    pieces, offset = [], 0
    for p in params:
        pieces.append(vector[offset : offset + p.numel()].view_as(p).to(p.dtype))
        offset += p.numel()
    return pieces


@torch.no_grad()
def _assign(params: Sequence[Tensor], vector: Tensor) -> None:
    for p, piece in zip(params, _split(vector, params)):
        p.copy_(piece)
