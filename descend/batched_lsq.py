"""``least_squares(..., batched=True)`` and ``curve_fit(..., batched=True)``: many independent
fits at once through the batched loop (:mod:`descend.batched`).

Each problem minimises its own cost ``f_k(x_k) = 1/2 ||r_k(x_k)||^2``. The Levenberg-Marquardt
and Gauss-Newton rules do not run batched (their damped solves and gain ratios are per run), so
the default here is the batched default of :func:`descend.minimize`, ``lbfgs`` with the
strong-Wolfe search per problem, on the same cost; ``curve_fit`` then estimates each problem's
covariance from its Jacobian at the optimum, as the single fit does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .batched import solve
from .batched_result import BatchedResult
from .errors import InputError

__all__ = ["batched_curve_fit", "batched_least_squares", "covariances"]


def _cost(r: Tensor) -> Tensor:
    if r.dim() < 1:
        raise InputError(f"with batched=True, the residuals must have the problem dimension K "
                         f"first, got shape {tuple(r.shape)}; return one row of residuals per "
                         "problem")
    flat = r.reshape(r.shape[0], -1)
    return 0.5 * (flat * flat).sum(1)


def _refuse_lsq_rule(rule: Any) -> Any:
    if (isinstance(rule, str) and rule in ("lm", "gauss-newton")) or type(rule).__name__ in (
            "LevenbergMarquardt", "GaussNewton"):
        raise InputError(f"with batched=True, rule {rule!r} cannot run per problem (its damped "
                         "solves are per run); leave rule out for lbfgs with the strong-Wolfe "
                         "search per problem, or use rule='gd' with lr='armijo'")
    return rule


def batched_least_squares(residuals: Callable[..., Tensor], x0: Any, args: tuple, *,
                          rule: Any, lr: Any, stop: Any, max_iter: int | None,
                          on_divergence: str | None, refused: dict[str, Any]) -> BatchedResult:
    """:func:`descend.least_squares` over ``K`` problems: ``residuals(x, *args)`` returns the
    residuals of the running problems, one row each (shape ``(w, ...)``); ``loss`` is each
    problem's ``1/2 ||r||^2``."""
    return solve(residuals, x0, args, rule=_refuse_lsq_rule(rule), lr=lr, stop=stop,
                 max_iter=max_iter, on_divergence=on_divergence, refused=refused, cost=_cost)


def covariances(J: Tensor, cost: Tensor, absolute_sigma: bool) -> Tensor:
    """:func:`descend.lsq.covariance` for a stack of Jacobians ``(K, m, n)`` and costs ``(K,)``:
    ``(K, n, n)``, all ``inf`` for a problem whose ``J`` has rank below ``n``."""
    _, m, n = J.shape
    _, S, Vh = torch.linalg.svd(J, full_matrices=False)
    tol = torch.finfo(J.dtype).eps * max(m, n) * S[:, :1]
    full = (tol < S).all(1)
    pcov = (Vh.mT / (S * S)[:, None, :]) @ Vh
    if not absolute_sigma:
        scale = (2 * cost / (m - n)) if m > n else torch.full_like(cost, math.inf)
        pcov = pcov * scale.to(J.dtype)[:, None, None]
        if m <= n:
            full = torch.zeros_like(full)
    return torch.where(full[:, None, None], pcov, torch.full_like(pcov, math.inf))


def batched_curve_fit(model: Callable[..., Tensor], xdata: Tensor, ydata: Tensor, p0: Tensor,
                      sigma: Tensor | float | None, absolute_sigma: bool, unpacks: bool,
                      **kw: Any) -> tuple[Tensor, Tensor, Tensor, BatchedResult]:
    """:func:`descend.curve_fit` over ``K`` data sets: ``xdata``, ``ydata`` (and ``sigma``)
    ``(K, m)``, ``p0`` ``(K, n)``. A model written scipy's way, ``f(x, a, b, c)``, gets each
    parameter as a ``(w, 1)`` column (so ``a * torch.exp(-b * x)`` works unchanged); a model
    ``f(x, p)`` gets ``p`` as ``(w, n)`` (index columns: ``p[:, :1]``). Returns ``popt``,
    ``pcov``, ``perr`` (each with the leading ``K``) and the run's result."""
    for name, t in (("xdata", xdata), ("ydata", ydata), ("p0", p0)):
        if not isinstance(t, Tensor) or t.dim() != 2 or not t.is_floating_point():
            what = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise InputError(f"with batched=True, {name} must be a 2-D floating tensor with the "
                             f"problem dimension K first, got {what}")
    K, m = ydata.shape
    n = p0.shape[1]
    if sigma is None or isinstance(sigma, (int, float)):
        sig = torch.full_like(ydata, 1.0 if sigma is None else float(sigma))
    else:
        sig = sigma.to(ydata.dtype)
    if m < n:
        raise InputError(f"curve_fit needs at least as many observations as parameters, got "
                         f"{m} per problem for {n} parameters")

    def call(x: Tensor, p: Tensor) -> Tensor:
        return model(x, *(p[:, i:i + 1] for i in range(n))) if unpacks else model(x, p)

    def residuals(p: Tensor, x: Tensor, y: Tensor, s: Tensor) -> Tensor:
        return (call(x, p) - y) / s

    res = batched_least_squares(residuals, p0, (xdata, ydata, sig), rule=kw.pop("rule"),
                                lr=kw.pop("lr"), stop=kw.pop("stop"),
                                max_iter=kw.pop("max_iter"),
                                on_divergence=kw.pop("on_divergence"), refused=kw)
    popt = res.x
    cols = []
    for j in range(n):  # the Jacobian one parameter at a time, by forward mode
        e = torch.zeros_like(popt)
        e[:, j] = 1.0
        out = torch.func.jvp(lambda p: residuals(p, xdata, ydata, sig), (popt,), (e,))
        cols.append(out[1].reshape(K, -1))
    J = torch.stack(cols, 2)
    pcov = covariances(J, res.loss, absolute_sigma)
    return popt, pcov, pcov.diagonal(dim1=1, dim2=2).sqrt(), res
