"""Before (or after) a run: local curvature, the safe step, and predicted iterations.

:func:`diagnose` looks at the objective around a point ``x0`` through Hessian-vector products
``H v`` (double backward through autograd; the Hessian is never formed) and fits the local
quadratic model

.. math:: f(x_0 + d) \\approx f(x_0) + g^\\top d + \\tfrac12 d^\\top H d .

On that model, gradient descent with a fixed step ``lr`` multiplies the error along an
eigenvector of ``H`` with eigenvalue ``lambda`` by ``1 - lr * lambda`` per step. So with ``L``
the largest and ``mu`` the smallest eigenvalue:

* steps are stable for ``0 < lr < 2/L`` (``|1 - lr L| < 1``);
* the error contracts per step by ``rho(lr) = max(|1 - lr mu|, |1 - lr L|)``, smallest at
  ``lr = 2/(L + mu)``, where ``rho = (kappa - 1)/(kappa + 1)`` with ``kappa = L/mu``;
* the loss gap contracts by ``rho^2``, so from a gap ``f_0 - f*`` the threshold ``t`` is reached
  after ``k = ceil(log((t - f*)/(f_0 - f*)) / (2 log rho))`` steps.

``L`` and ``mu`` are the extreme Ritz values of a Lanczos run with full reorthogonalisation.
Every figure is a *local estimate*: exact for a quadratic, a description of the neighbourhood of
``x0`` otherwise. For the notebook (``F.mse_loss`` over 9 numbers, ``H = (2/9) I``) it gives
``L = mu = 2/9``: ``2/L = 9``, one step at ``lr = 4.5`` and ``rho = 7/9`` at ``lr = 1``.

References:
    C. Lanczos, An iteration method for the solution of the eigenvalue problem of linear
    differential and integral operators, J. Res. Nat. Bur. Standards 45 (1950).
    B. Pearlmutter, Fast exact multiplication by the Hessian, Neural Computation 6 (1994).
    Y. Nesterov, Introductory Lectures on Convex Optimization (2004), Theorem 2.1.15.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .errors import InputError, InputTypeError, check_fraction, check_positive
from .i18n import _
from .objective import Objective, Params

__all__ = ["Diagnosis", "diagnose", "diagnose_at", "lanczos_extremes"]

#: A contraction within this of 1 counts as 1 (no progress): the estimates of ``L`` carry
#: round-off, and ``lr = 2/L`` must read as "oscillates", not as "converges in 10^7 steps".
UNIT_TOL = 1e-6

#: ``mu`` counts as positive (the model is convex) when it exceeds this fraction of ``L``.
CONVEX_TOL = 1e-10


@dataclass(frozen=True)
class Diagnosis:
    """What :func:`diagnose` found. Every curvature figure is a local estimate at ``x0``, from
    the quadratic model built with Hessian-vector products (exact for a quadratic).

    Attributes:
        loss: ``f(x0)``.
        grad_norm: ``||grad f(x0)||``.
        L: top curvature, the largest eigenvalue of the Hessian at ``x0`` (local estimate).
        mu: bottom curvature, the smallest eigenvalue (local estimate); ``<= 0`` when the model
            is not convex there.
        convex: whether ``mu > 0`` (beyond round-off): the local model has a unique minimum.
        condition: ``L / mu`` when convex, else ``inf`` (local estimate).
        lr_max: ``2 / L``: fixed steps in ``(0, lr_max)`` are stable on the model; larger ones
            diverge, ``lr_max`` itself oscillates (``inf`` when ``L <= 0``).
        lr_one_step: ``1 / L``: removes the top-curvature component of the error in one step
            (the whole error when ``L == mu``, as in the notebook).
        lr_fastest: the fixed step with the smallest contraction on the model: ``2 / (L + mu)``
            when convex, else ``1 / L``.
        lr: the step that was asked about (``None`` if none).
        contraction: ``rho(lr) = max(|1 - lr mu|, |1 - lr L|)``, the factor by which the error
            shrinks per gd step (the loss gap by its square); ``None`` without ``lr``.
        contraction_fastest: ``rho(lr_fastest) = (kappa - 1)/(kappa + 1)`` when convex.
        threshold: the loss asked about (``None`` if none).
        f_star: the optimal loss assumed for the predictions (0 by default: a non-negative loss).
        iterations: predicted gd iterations at ``lr`` to bring the loss to ``threshold``: 0 if
            already there, ``inf`` if ``rho >= 1``; ``None`` without ``lr`` or ``threshold``, or
            when the model is not convex (local estimate).
        iterations_fastest: the same at ``lr_fastest``.
        hvps: Hessian-vector products spent.
        exact: whether Lanczos exhausted its Krylov space (then ``L`` and ``mu`` are the
            extreme eigenvalues of the Hessian to round-off, not approximations).
    """

    loss: float
    grad_norm: float
    L: float
    mu: float
    convex: bool
    condition: float
    lr_max: float
    lr_one_step: float
    lr_fastest: float
    lr: float | None
    contraction: float | None
    contraction_fastest: float
    threshold: float | None
    f_star: float
    iterations: float | None
    iterations_fastest: float | None
    hvps: int
    exact: bool

    def summary(self) -> dict[str, str]:
        """The figures as labelled strings (every curvature figure marked a local estimate), for
        run records and reports."""
        est = " (local estimate)"
        out = {
            "loss at the start": f"{self.loss:.4e}",
            "gradient norm at the start": f"{self.grad_norm:.4e}",
            "top curvature L" + est: f"{self.L:.6g}",
            "bottom curvature mu" + est: f"{self.mu:.6g}",
            "condition number" + est: f"{self.condition:.6g}",
            "stable steps 0 < lr < 2/L" + est: f"{self.lr_max:.6g}",
            "one-step lr 1/L" + est: f"{self.lr_one_step:.6g}",
            "fastest fixed lr" + est: f"{self.lr_fastest:.6g}",
        }
        if self.lr is not None and self.contraction is not None:
            out[f"error contraction per step at lr={self.lr:g}" + est] = f"{self.contraction:.4g}"
        if self.threshold is not None:
            for lr, k in ((self.lr, self.iterations), (self.lr_fastest, self.iterations_fastest)):
                if lr is not None and k is not None:
                    key = f"predicted iterations to {self.threshold:g} at lr={lr:.4g}" + est
                    out[key] = "never" if math.isinf(k) else str(int(k))
        out["Hessian-vector products"] = str(self.hvps)
        return out

    @property
    def stable_range(self) -> tuple[float, float]:
        """``(0, 2/L)``: the fixed steps that converge on the local model (local estimate)."""
        return (0.0, self.lr_max)

    def contraction_at(self, lr: float) -> float:
        """``max(|1 - lr mu|, |1 - lr L|)``: the error factor per step at ``lr`` (local
        estimate; within :data:`UNIT_TOL` of 1 it is 1)."""
        return _contraction(lr, self.L, self.mu)

    def iterations_at(self, lr: float, threshold: float | None = None) -> float | None:
        """Predicted gd iterations at ``lr`` to reach ``threshold`` (default: the diagnosed
        one) from :attr:`loss` (local estimate; ``None`` when it cannot be predicted)."""
        t = self.threshold if threshold is None else threshold
        if t is None or not self.convex:
            return None
        return _iterations(self.loss, t, self.f_star, self.contraction_at(lr))

    def __str__(self) -> str:
        head = (_("Diagnosis (local estimates at x0, from the quadratic model built with 1 "
                  "Hessian-vector product{exact}):") if self.hvps == 1 else
                _("Diagnosis (local estimates at x0, from the quadratic model built with {hvps} "
                  "Hessian-vector products{exact}):"))
        top = (_("  top curvature L ~ {L}, bottom curvature mu ~ {mu}") if self.convex else
               _("  top curvature L ~ {L}, bottom curvature mu ~ {mu} (not convex here)"))
        lines = [
            head.format(hvps=self.hvps, exact=_("; exact") if self.exact else ""),
            _("  loss {loss:.4e}, gradient norm {grad_norm:.4e}").format(
                loss=self.loss, grad_norm=self.grad_norm),
            top.format(L=f"{self.L:.6g}", mu=f"{self.mu:.6g}"),
            _("  condition number ~ {condition:.6g}").format(condition=self.condition),
            _("  stable steps: 0 < lr < 2/L ~ {lr_max:.6g}; one-step lr 1/L ~ {lr_one_step:.6g}; "
              "fastest fixed lr ~ {lr_fastest:.6g} (contraction {contraction:.4g} per "
              "step)").format(lr_max=self.lr_max, lr_one_step=self.lr_one_step,
                              lr_fastest=self.lr_fastest, contraction=self.contraction_fastest),
        ]
        if self.lr is not None and self.contraction is not None:
            lines.append(_("  at lr = {lr:g}: error contraction ~ {contraction:.4g} per step, "
                           "loss factor ~ {factor:.4g}").format(
                               lr=self.lr, contraction=self.contraction,
                               factor=self.contraction ** 2))
        if self.threshold is not None:
            fields = {"threshold": self.threshold, "f_star": self.f_star, "lr": self.lr,
                      "at_lr": _count(self.iterations),
                      "fastest": _count(self.iterations_fastest)}
            text = (_("  predicted gd iterations to loss <= {threshold:.10g} (assuming f* = "
                      "{f_star:.10g}): {fastest} at the fastest lr") if self.lr is None else
                    _("  predicted gd iterations to loss <= {threshold:.10g} (assuming f* = "
                      "{f_star:.10g}): {at_lr} at lr = {lr:g}, {fastest} at the fastest lr"))
            lines.append(text.format(**fields))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"Diagnosis(local estimates: L={self.L:.6g}, mu={self.mu:.6g}, "
            f"condition={self.condition:.6g}, lr_max={self.lr_max:.6g}, lr={_g(self.lr)}, "
            f"contraction={_g(self.contraction)}, iterations={_count(self.iterations, str)}, "
            f"hvps={self.hvps})"
        )


def _g(v: float | None) -> str:
    return "None" if v is None else f"{v:.6g}"


def _count(k: float | None, say: Callable[[str], str] = _) -> str:
    if k is None:
        return say("n/a")
    return say("never") if math.isinf(k) else str(int(k))


def _contraction(lr: float, big: float, small: float) -> float:
    rho = max(abs(1.0 - lr * small), abs(1.0 - lr * big))
    return 1.0 if abs(rho - 1.0) <= UNIT_TOL else rho


def _iterations(loss: float, threshold: float, f_star: float, rho: float) -> float:
    """Smallest ``k`` with ``(loss - f*) rho^(2k) <= threshold - f*``; ``inf`` if none."""
    gap0, gap = loss - f_star, threshold - f_star
    if gap0 <= gap:
        return 0
    if gap <= 0 or rho >= 1.0:
        return math.inf
    if rho == 0.0:
        return 1
    k = math.log(gap / gap0) / (2.0 * math.log(rho))
    # ceil, but a k that is an integer up to round-off stays that integer
    return max(1, math.ceil(k - 1e-9))


def lanczos_extremes(
    hvp: Callable[[Tensor], Tensor],
    n: int,
    *,
    max_iter: int = 100,
    rtol: float = 1e-4,
    seed: int = 0,
    exact_tol: float = 1e-12,
) -> tuple[float, float, int, bool]:
    """The largest and smallest eigenvalues of a symmetric operator, by Lanczos.

    Builds the tridiagonal ``T_k = Q_k' H Q_k`` (float64, with full reorthogonalisation, so the
    Ritz values do not repeat), whose extreme eigenvalues (Ritz values) approach those of ``H``
    from inside. Stops when each extreme Ritz pair has residual ``beta_k |s_ki|`` at most
    ``rtol * |theta_i|`` (``|theta_i|`` floored at ``1e-8`` of the spectral radius), when the
    Krylov space is exhausted (``beta_k ~ 0``; then the values are exact), or after
    ``max_iter`` products.

    Args:
        hvp: ``v -> H v`` on flat float64 vectors of length ``n``.
        n: the dimension.
        max_iter: at most this many products (and never more than ``n``).
        rtol: the residual tolerance, relative to each extreme Ritz value.
        seed: seeds the random start vector.
        exact_tol: ``beta_k`` below this fraction of the spectral radius means the Krylov
            space is exhausted (raise it to the round-off of ``hvp``, e.g. for float32).

    Returns:
        ``(largest, smallest, products spent, exact)``.

    References:
        G. Golub, C. Van Loan, Matrix Computations (4th ed.), Section 10.1.
    """
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, generator=g, dtype=torch.float64)
    q /= q.norm()
    basis = [q]
    alphas: list[float] = []
    betas: list[float] = []
    exact = False
    top = bottom = math.nan
    for k in range(min(max_iter, n)):
        w = hvp(basis[-1])
        alphas.append(float(basis[-1] @ w))
        # full reorthogonalisation, twice ("twice is enough"): keeps Q orthonormal in floats
        qmat = torch.stack(basis, 1)
        for _twice in range(2):
            w = w - qmat @ (qmat.T @ w)
        beta = float(w.norm())
        t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            t = t + torch.diag(off, 1) + torch.diag(off, -1)
        theta, s = torch.linalg.eigh(t)
        top, bottom = float(theta[-1]), float(theta[0])
        scale = max(abs(top), abs(bottom), 1e-300)
        if beta <= exact_tol * scale or k + 1 == n:
            exact = True
            return top, bottom, k + 1, exact
        # Each extreme Ritz value lies within its residual of an eigenvalue; ask for a
        # relative accuracy on both (down to 1e-8 of the spectral radius, so a singular
        # Hessian does not run to max_iter).
        floor = 1e-8 * scale
        if (beta * abs(float(s[-1, -1])) <= rtol * max(abs(top), floor)
                and beta * abs(float(s[-1, 0])) <= rtol * max(abs(bottom), floor)):
            return top, bottom, k + 1, exact
        betas.append(beta)
        basis.append(w / beta)
    return top, bottom, min(max_iter, n), exact


class _HVP:
    """``v -> H v`` at a point, by double backward through one graph of ``grad f``."""

    def __init__(self, fn: Callable[..., Tensor], params: Params, args: tuple) -> None:
        self.leaves = params.leaves
        self.sizes = [leaf.numel() for leaf in self.leaves]
        loss = fn(params.structure, *args)
        grads = torch.autograd.grad(loss, self.leaves, create_graph=True, allow_unused=True)
        self.loss = float(loss.detach())
        flat = [torch.zeros(s, dtype=torch.float64) if gr is None
                else gr.detach().reshape(-1).to("cpu", torch.float64)
                for gr, s in zip(grads, self.sizes)]
        self.grad_norm = float(torch.cat(flat).norm())
        # A gradient that does not require grad is constant in x: its block of H is zero.
        self.live = [i for i, gr in enumerate(grads) if gr is not None and gr.requires_grad]
        self.grads = grads
        self.count = 0

    def __call__(self, v: Tensor) -> Tensor:
        self.count += 1
        if not self.live:
            return torch.zeros_like(v)
        parts = torch.split(v, self.sizes)
        outputs = [self.grads[i] for i in self.live]
        # Lanczos runs in float64 on the CPU; H v in the parameters' own dtype and device.
        seeds = [parts[i].reshape(self.leaves[i].shape).to(self.leaves[i]) for i in self.live]
        # H v = d/dx (g(x) . v): the gradient of a scalar, so no grad_outputs (passing them makes
        # torch import sympy, 0.4 s, on the first call)
        gv = torch.stack([(g * seed).sum() for g, seed in zip(outputs, seeds)]).sum()
        hv = torch.autograd.grad(gv, self.leaves, retain_graph=True, allow_unused=True)
        return torch.cat([torch.zeros(s, dtype=torch.float64) if h is None
                          else h.reshape(-1).to("cpu", torch.float64)
                          for h, s in zip(hv, self.sizes)])


def diagnose(
    fn: Callable[..., Tensor],
    x0: Any,
    lr: float | None = None,
    *,
    args: tuple = (),
    threshold: float | None = None,
    f_star: float = 0.0,
    max_iter: int = 100,
    rtol: float = 1e-4,
    seed: int = 0,
) -> Diagnosis:
    """Local curvature of ``f(x) = fn(x, *args)`` at ``x0``, the safe step and, given ``lr`` and
    ``threshold``, the predicted gd iterations. Every figure is a local estimate.

    Args:
        fn: the objective, as for :func:`descend.minimize` (it must be twice differentiable:
            built from torch operations autograd can differentiate twice).
        x0: the point: a tensor, a tuple/list/dict of tensors, or an ``nn.Module`` (its current
            parameters; it is not changed).
        lr: a fixed gd step to assess (contraction and predicted iterations).
        args: extra positional arguments for ``fn``.
        threshold: a loss level to predict the iterations to.
        f_star: the optimal loss the prediction assumes (default 0, right for non-negative
            losses that can reach 0, such as the notebook's).
        max_iter: at most this many Hessian-vector products (Lanczos steps).
        rtol: Lanczos residual tolerance, relative to ``L`` and to ``mu``.
        seed: seeds Lanczos' random start vector (the result is reproducible).

    Returns:
        A :class:`Diagnosis`.

    Raises:
        InputError: on a bad ``lr``, ``threshold``, ``max_iter`` or ``rtol``, or an ``fn``
            that breaks the objective's contract (see :class:`~descend.objective.Objective`).
    """
    params = Params(x0)
    return diagnose_at(fn, params, params.values, args, lr, threshold, f_star, max_iter, rtol,
                     seed)


def _check(lr: float | None, threshold: float | None, f_star: float, max_iter: int,
           rtol: float) -> None:
    if lr is not None:
        check_positive("lr", lr)
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise InputTypeError(f"threshold must be a number, got {threshold!r}")
        if not math.isfinite(threshold):
            raise InputError(f"threshold must be a finite number, got {threshold!r}")
    if isinstance(f_star, bool) or not isinstance(f_star, (int, float)) or not math.isfinite(
            f_star):
        raise InputError(f"f_star must be a finite number, got {f_star!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise InputError(f"max_iter must be a whole number >= 1, got {max_iter!r}")
    check_fraction("rtol", rtol, low_open=True)


def diagnose_at(
    fn: Callable[..., Tensor],
    params: Params,
    values: Sequence[Tensor],
    args: tuple,
    lr: float | None,
    threshold: float | None,
    f_star: float,
    max_iter: int,
    rtol: float,
    seed: int,
) -> Diagnosis:
    """:func:`diagnose` at ``values`` (one tensor per leaf of ``params``), all arguments
    positional; ``params`` is set back to its current values afterwards."""
    _check(lr, threshold, f_star, max_iter, rtol)
    if any(v.is_complex() for v in values):
        raise InputTypeError("diagnose needs real floating-point parameters, got complex ones")
    current = params.values
    params.set(list(values))
    try:
        # One checked evaluation: fn's contract errors read as they do in minimize.
        Objective(fn, params, args)()
        hvp = _HVP(fn, params, args)
        # H v carries the round-off of the parameters' dtype (float32 for the notebook)
        eps = max(torch.finfo(v.dtype).eps for v in values)
        big, small, _steps, exact = lanczos_extremes(
            hvp, sum(hvp.sizes), max_iter=max_iter, rtol=rtol, seed=seed,
            exact_tol=max(1e-12, 10 * eps))
    finally:
        params.set(current)
    convex = small > CONVEX_TOL * abs(big) and big > 0
    lr_max = 2.0 / big if big > 0 else math.inf
    lr_one = 1.0 / big if big > 0 else math.inf
    lr_fast = 2.0 / (big + small) if convex else lr_one
    rho_fast = _contraction(lr_fast, big, small) if big > 0 else math.nan
    rho = None if lr is None else _contraction(float(lr), big, small)

    def predict(r: float | None) -> float | None:
        if threshold is None or r is None or not convex:
            return None
        return _iterations(hvp.loss, float(threshold), float(f_star), r)

    return Diagnosis(
        loss=hvp.loss,
        grad_norm=hvp.grad_norm,
        L=big,
        mu=small,
        convex=convex,
        condition=big / small if convex else math.inf,
        lr_max=lr_max,
        lr_one_step=lr_one,
        lr_fastest=lr_fast,
        lr=None if lr is None else float(lr),
        contraction=rho,
        contraction_fastest=rho_fast,
        threshold=None if threshold is None else float(threshold),
        f_star=float(f_star),
        iterations=predict(rho),
        iterations_fastest=predict(rho_fast),
        hvps=hvp.count,
        exact=exact,
    )
