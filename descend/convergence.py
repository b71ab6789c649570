"""The tests behind an honest success, shared by the stopping criteria (:mod:`descend.stops`).

* :func:`first_order`: the scale-free first-order test,
  ``sum_i |g_i| max(|x_i|, typ x_i) / max(|f|, c |f_0|)``, with ``typ x_i`` from the start
  (:func:`typical`): the relative change of ``f`` to first order when every coordinate moves
  by its own size; see :mod:`descend.stops` for the tolerances. A sum, not Dennis and
  Schnabel's per-coordinate maximum: that one shrinks as ``1/n`` for a mean over ``n``
  coordinates (each coordinate moves the mean by ``1/n`` of its share), so a 70,000-element
  ``((x - t)**2).mean()`` looked stationary at its start.
* :func:`not_a_minimum`: probes around a point whose gradient is small, which tell a minimum
  (the loss rises around it) from a slope that flattens out or a plateau.
* :func:`hint`: what a run that cannot go on should try, by dtype.

References:
    Dennis & Schnabel, Numerical Methods for Unconstrained Optimization and Nonlinear
    Equations, 1983, sec. 7.2 (the relative gradient and typical magnitudes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .i18n import N_, _

if TYPE_CHECKING:
    from .state import LoopState

__all__ = ["HINT_FLOAT32", "HINT_FLOAT64", "PLATEAU_COORDINATES", "eps_of", "first_order",
           "hint", "not_a_minimum", "probe_move", "typical"]


def eps_of(s: LoopState) -> float:
    """The machine epsilon of the parameters' dtype."""
    return float(torch.finfo(s.values[0].dtype).eps)


def typical(values: Sequence[Tensor]) -> list[Tensor]:
    """``typ x_i = |x0_i|``, the tensor's RMS where ``x0_i = 0``, 1 where all of it is 0."""
    out = []
    for v in values:
        a = v.detach().abs()
        if a.is_complex():
            a = a.real
        rms = float(torch.linalg.vector_norm(a)) / math.sqrt(max(a.numel(), 1))
        out.append(torch.where(a > 0, a, torch.full_like(a, rms if rms > 0 else 1.0)))
    return out


def first_order(s: LoopState, c: float, typx: Sequence[Tensor] | None = None) -> float:
    """The scaled gradient ``sum_i |g_i| max(|x_i|, typ x_i) / max(|f|, c |f_0|)`` at the
    current point (see the module docstring); ``typx`` from :func:`typical` of the start."""
    typx = typx if typx is not None else typical(s.start_values)
    num = 0.0
    for g, x, t in zip(s.grads, s.values, typx):
        num += float((g.abs() * torch.maximum(x.abs(), t)).sum())
    den = max(abs(s.loss), c * abs(s.loss0))
    if not (math.isfinite(den) and math.isfinite(num)):
        return math.inf
    if num == 0.0:
        return 0.0
    return num / den if den > 0 else math.inf


#: What a run that cannot go on should try, by dtype.
HINT_FLOAT32 = N_("the problem may be badly scaled or too ill-conditioned for float32: try "
                "float64 (x0.double()), rescaling the parameters to similar sizes, or another "
                "start")
HINT_FLOAT64 = N_("the problem may be badly scaled or the gradient may not match the loss: try "
                "rescaling the parameters to similar sizes, checking the gradient, or another "
                "start")


def hint(s: LoopState) -> str:
    """What to try when a run cannot go on, for its dtype."""
    return _(HINT_FLOAT32 if eps_of(s) > 1e-10 else HINT_FLOAT64)


def _rms(x: Tensor) -> Tensor:
    a = x.detach().abs()
    return torch.linalg.vector_norm(a) / math.sqrt(max(a.numel(), 1))


def probe_move(s: LoopState) -> float:
    """The relative move of :func:`not_a_minimum`'s probes: ``eps^(1/4)`` (1.2e-4 in float64, 0.018
    in float32), large enough that a minimum's quadratic rise clears the loss's round-off."""
    return eps_of(s) ** 0.25


#: Up to this many parameters :func:`not_a_minimum` probes each coordinate; above, three directions.
PLATEAU_COORDINATES = 32


def not_a_minimum(s: LoopState) -> str | None:
    """The check behind every success by a small gradient: probes that move coordinates by
    ``h = eps^(1/4)`` of their size ``D_i = max(|x_i|, typ x_i, RMS of its tensor)``
    (evaluations, counted). With at
    most :data:`PLATEAU_COORDINATES` parameters, one probe per coordinate, downhill
    (``x_i - sign(g_i) h D_i``); above, one down the scaled gradient
    (``x - h D^2 g / max_i |D_i g_i|``) and two at ``x +- h D r`` with seeded random signs ``r``.
    At a minimum the loss falls at no probe (beyond ``4 eps |f|``, and on at twice the move:
    a slope, not the round-off of a large sum) and rises at some (for a
    small problem, at every coordinate whose gradient was not 0 at the start: a parameter that
    mattered there and has no effect here has saturated): None. Else what the probes saw: the
    loss still falls (a slope that flattens out far away, as where an exponential saturates)
    or does not change."""
    move = probe_move(s)
    typx = typical(s.start_values)
    # each coordinate's size, at least its tensor's RMS (a parameter near 0 is probed at the
    # scale of its neighbours, or its quadratic rise would drown in round-off)
    sizes = [torch.maximum(torch.maximum(x.abs(), t), _rms(x)) for x, t in zip(s.values, typx)]
    band = 4 * eps_of(s) * abs(s.loss)
    moves: list[list[Tensor]] = []  # one probe: a step per parameter tensor
    small = sum(x.numel() for x in s.values) <= PLATEAU_COORDINATES
    if small:
        for k, (x, d, g) in enumerate(zip(s.values, sizes, s.grads)):
            for i in range(x.numel()):
                step = torch.zeros_like(x).reshape(-1)
                step[i] = (-move if float(g.reshape(-1)[i]) >= 0 else move) * d.reshape(-1)[i]
                moves.append([step.reshape(x.shape) if j == k else torch.zeros_like(v)
                              for j, v in enumerate(s.values)])
    else:
        gen = torch.Generator().manual_seed(0)
        scaled = [d * g for d, g in zip(sizes, s.grads)]
        top = max(float(v.abs().max()) for v in scaled)
        if top > 0:
            moves.append([-move * d * v / top for d, v in zip(sizes, scaled)])
        signs = [torch.randint(0, 2, x.shape, generator=gen).to(x.device, x.real.dtype) * 2 - 1
                 for x in s.values]
        moves += [[side * move * d * r for d, r in zip(sizes, signs)] for side in (1.0, -1.0)]

    def at(step: list[Tensor], times: float = 1.0) -> float:
        return s.loss_at([x + times * m for x, m in zip(s.values, step)])

    probes = [at(m) for m in moves]
    # a fall counts when it goes on at twice the move (a slope, not the loss's round-off noise)
    if any(f < s.loss - band and at(m, 2.0) < f - band for f, m in zip(probes, moves)):
        return _("the loss still falls")
    if all(abs(f - s.loss) <= band for f in probes):
        return _("the loss does not change")
    if small:  # a parameter that mattered at the start and has no effect here has saturated
        mattered = [bool(v) for g0 in s.start_grads for v in (g0.reshape(-1) != 0).tolist()]
        if any(abs(f - s.loss) <= band and m for f, m in zip(probes, mattered)):
            return _("the loss does not change along a parameter that mattered at the start "
                     "(it saturated)")
    return None
