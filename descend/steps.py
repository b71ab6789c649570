"""Step sizes: how far to move along the rule's update vector.

A step-size strategy is a small object called once per iteration as ``step(state, u) -> lr``,
with the loop's :class:`~descend.loop.LoopState` (iteration, loss, gradients, values, objective)
and the rule's update vector ``u``; the loop then moves ``x <- x - lr * u``. A strategy that
evaluates the objective at the point it accepts (a line search) leaves that point, its loss and
gradient in ``state.trial`` so the loop does not evaluate it again, and may leave numbers for the
history in ``state.info`` (one extra column each).

Which one to pick (all are also reachable by name through :data:`STEPS`, e.g. ``lr="armijo"``):

==================  ==========================================================================
``lr="auto"``       the default when a rule is named without an lr. No constants: the first
                    step from the curvature along ``u`` (a gradient difference), then
                    Barzilai-Borwein steps guarded by a non-monotone Armijo test. Robust on
                    smooth deterministic problems; far faster than a fixed lr when ill-conditioned.
:class:`Constant`   a number: the notebook. Exactly ``x - lr * u`` every step, nothing evaluated.
:class:`Schedule`   a callable ``k -> lr``, or :class:`TorchScheduler` for any
                    ``torch.optim.lr_scheduler``: stochastic training with a known recipe.
:class:`Armijo`     backtracking to sufficient decrease; monotone; safe with any descent rule.
:class:`StrongWolfe`  the line search quasi-Newton rules (``lbfgs``, ``bfgs``) need; also fine
                    for gd when gradients are cheap relative to the wasted trials.
:class:`Polyak`     ``(f - f*) / (g . u)``: best when the optimal value ``f*`` is known (0 for
                    interpolating fits); no evaluations beyond one per step.
:class:`BarzilaiBorwein`  spectral steps from the last two gradients, no line search: very fast
                    on (nearly) quadratic problems, non-monotone; clamped, with a fallback.
:class:`AdaptiveGD` Malitsky-Mishchenko steps from a local Lipschitz estimate, no line search,
                    provably convergent on convex problems; a cautious BB.
==================  ==========================================================================

Line searches (:class:`Armijo`, :class:`StrongWolfe`, and ``auto``) are written over the scalar
``phi(alpha) = f(x - alpha * u)`` with ``phi'(alpha) = -grad f(x - alpha u) . u``; every trial
goes through the objective (so ``nfev`` in the history counts it, value and gradient together),
and a step is only accepted when its condition holds. When ``-u`` is not a descent direction
(``phi'(0) >= 0``, e.g. a momentum buffer pointing uphill) or the search fails along ``u``, the
rule is restarted (its state reset, which makes ``u`` a positive scaling of the gradient) and
the search runs once more; if that fails too, the strategy reports failure and the run stops
with reason ``"step_failed"``. They need rules whose update is ``x - lr * u`` (``Rule.scalable``);
``torch.optim`` wrappers are refused up front.

The divergence guard (``on_divergence="backtrack"``) calls :meth:`Step.shrink` after returning
to the best point: every strategy scales the steps it proposes by the accumulated factor.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from .errors import InputError, InputTypeError, check_fraction, check_positive

if TYPE_CHECKING:
    from .loop import LoopState
    from .rules import Rule

__all__ = [
    "STEPS",
    "AdaptiveGD",
    "Armijo",
    "Auto",
    "BarzilaiBorwein",
    "Constant",
    "LineSearch",
    "Polyak",
    "Schedule",
    "Step",
    "StrongWolfe",
    "TorchScheduler",
    "make_step",
]


def _dot(a: list[Tensor], b: list[Tensor]) -> float:
    """``sum_i <a_i, b_i>`` over all tensors, as a Python float (real part for complex)."""
    if len(a) == 1:
        return torch.vdot(a[0].reshape(-1), b[0].reshape(-1)).real.item()
    total = torch.stack([torch.vdot(x.reshape(-1), y.reshape(-1)).real for x, y in zip(a, b)])
    return total.sum().item()


def _norm(a: list[Tensor]) -> float:
    return math.sqrt(max(_dot(a, a), 0.0))


def _finite(v: float) -> float:
    """nan and -inf become +inf, so a bad trial simply fails every test."""
    return v if math.isfinite(v) else math.inf


def _sub(a: list[Tensor], b: list[Tensor]) -> list[Tensor]:
    return list(torch._foreach_sub(a, b))


def _probe_size(values: list[Tensor], u_norm: float) -> float:
    """A finite-difference step: a move of ``sqrt(eps) * max(1, |x|)`` along ``u``, the classic
    choice balancing truncation and round-off (``eps`` of ``x``'s dtype)."""
    eps = torch.finfo(values[0].dtype).eps
    return math.sqrt(eps) * max(1.0, _norm(values)) / u_norm


class Step:
    """Base of all step-size strategies.

    Attributes:
        scale: the factor the divergence guard has shrunk the steps by (1 at the start).
    """

    #: True for strategies that evaluate trial points along ``u`` (need ``Rule.scalable``).
    searches: ClassVar[bool] = False

    scale: float = 1.0
    #: Set by a line search that found no acceptable step; the loop then stops.
    failed: bool = False

    def reset(self) -> None:
        """Forget state from an earlier run (called when a run starts)."""
        self.scale = 1.0

    def shrink(self, factor: float) -> None:
        """Scale every later step by ``factor`` (the divergence guard's backtrack)."""
        self.scale *= factor

    def check(self, rule: Rule) -> None:
        """Raise an :class:`InputError` when this strategy cannot drive ``rule``."""
        if self.searches and not rule.scalable:
            raise InputError(
                f"{type(self).__name__} searches along the update, which rule "
                f"{getattr(rule, 'label', rule.name)!r} cannot take (it updates in place); "
                "give it a number or a schedule as lr"
            )

    def __call__(self, s: LoopState, u: list[Tensor]) -> float:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The strategy's state as plain data (tensors cloned)."""
        return copy.deepcopy({k: v for k, v in vars(self).items() if not callable(v)})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave."""
        vars(self).update(copy.deepcopy(state))

    def describe(self) -> str:
        """The strategy in a few words, for results and reports."""
        return repr(self)


class Constant(Step):
    """The same step every iteration: ``lr_k = lr`` (times the guard's ``scale``)."""

    def __init__(self, lr: float) -> None:
        self.lr = check_positive("lr", lr)

    def __call__(self, s: LoopState, u: list[Tensor]) -> float:
        return self.lr if self.scale == 1.0 else self.lr * self.scale

    def describe(self) -> str:
        return f"lr={self.lr:g}"

    def __repr__(self) -> str:
        return f"Constant(lr={self.lr!r})"


class Schedule(Step):
    """A plain callable schedule: ``lr_k = fn(k)`` for ``k = 0, 1, ...`` (the update count).

    ``fn(0)`` is called once up front to check that ``fn`` is a schedule (a
    ``torch.optim.lr_scheduler`` factory goes in :class:`TorchScheduler` instead).
    """

    def __init__(self, fn: Callable[[int], float]) -> None:
        if not callable(fn):
            raise InputTypeError(f"a schedule must be callable k -> lr, got {fn!r}")
        try:
            lr0 = fn(0)
        except (TypeError, AttributeError) as e:
            raise InputTypeError(
                f"lr={fn!r} failed when called as a schedule k -> lr ({type(e).__name__}: {e}); "
                "a torch.optim.lr_scheduler factory goes in "
                "steps.TorchScheduler(factory, lr=BASE_LR)"
            ) from None
        if isinstance(lr0, bool) or not isinstance(lr0, (int, float, Tensor)):
            raise InputTypeError(
                f"the schedule {fn!r} returned {lr0!r} at k=0; it must return a number > 0 "
                "(a torch.optim.lr_scheduler factory goes in steps.TorchScheduler)"
            )
        self.fn = fn

    def __call__(self, s: LoopState, u: list[Tensor]) -> float:
        lr = float(self.fn(s.iteration))
        if not (lr > 0 and math.isfinite(lr)):
            raise InputError(
                f"the schedule gave lr={lr!r} at iteration {s.iteration}; it must return "
                "finite numbers > 0"
            )
        return lr if self.scale == 1.0 else lr * self.scale

    def describe(self) -> str:
        return f"schedule {getattr(self.fn, '__name__', type(self.fn).__name__)}"

    def __repr__(self) -> str:
        return f"Schedule({self.fn!r})"


_LRScheduler = torch.optim.lr_scheduler.LRScheduler
_Plateau = torch.optim.lr_scheduler.ReduceLROnPlateau


class TorchScheduler(Step):
    """Any ``torch.optim.lr_scheduler`` as the step size.

    Two ways in::

        opt = torch.optim.SGD([torch.zeros(())], lr=0.5)      # only its lr is used
        minimize(f, x0, rule="gd", lr=torch.optim.lr_scheduler.StepLR(opt, 10, gamma=0.5))
        minimize(f, x0, rule="gd",
                 lr=steps.TorchScheduler(lambda opt: StepLR(opt, 10, gamma=0.5), lr=0.5))

    A scheduler instance is used as given (its optimizer's lr is the base lr; a private copy is
    stepped, so the caller's objects are not changed). A factory (a scheduler class, a
    ``functools.partial`` of one, or any callable ``optimizer -> scheduler``) is called with a
    private one-parameter ``SGD(lr=lr)``. At iteration ``k`` the step is the optimizer's current
    lr; the scheduler is then stepped once (``ReduceLROnPlateau`` is stepped with the loss first).

    Args:
        scheduler: a scheduler instance or a factory.
        lr: the base lr for a factory (not allowed with an instance).
    """

    def __init__(self, scheduler: Any, lr: float | None = None) -> None:
        if isinstance(scheduler, (_LRScheduler, _Plateau)):
            if lr is not None:
                raise InputError(
                    f"lr={lr!r} given with a scheduler instance; its optimizer's lr is the base "
                    "lr, so leave lr out"
                )
            sched = copy.deepcopy(scheduler)
        elif callable(scheduler):
            if lr is None:
                raise InputError(
                    f"a scheduler factory {scheduler!r} needs the base lr: "
                    "steps.TorchScheduler(factory, lr=0.1)"
                )
            check_positive("lr", lr)
            opt = torch.optim.SGD([torch.zeros((), requires_grad=True)], lr=lr)
            sched = scheduler(opt)
            if not isinstance(sched, (_LRScheduler, _Plateau)):
                raise InputTypeError(
                    f"the factory {scheduler!r} returned {type(sched).__name__}, not a "
                    "torch.optim.lr_scheduler"
                )
        else:
            raise InputTypeError(
                f"TorchScheduler needs a torch.optim.lr_scheduler or a factory, got {scheduler!r}"
            )
        self.scheduler = sched
        self._initial = copy.deepcopy(
            (sched.state_dict(), sched.optimizer.state_dict())
        )

    def reset(self) -> None:
        super().reset()
        sd, opt_sd = copy.deepcopy(self._initial)
        self.scheduler.optimizer.load_state_dict(opt_sd)
        self.scheduler.load_state_dict(sd)

    def __call__(self, s: LoopState, u: list[Tensor]) -> float:
        if isinstance(self.scheduler, _Plateau):
            self.scheduler.step(s.loss)
        lr = float(self.scheduler.optimizer.param_groups[0]["lr"])
        if not isinstance(self.scheduler, _Plateau):
            with warnings.catch_warnings():
                # the private optimizer is never stepped: torch's order warnings do not apply
                warnings.simplefilter("ignore", UserWarning)
                self.scheduler.step()
        return lr * self.scale

    def state_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "scheduler": copy.deepcopy(self.scheduler.state_dict()),
            "optimizer": copy.deepcopy(self.scheduler.optimizer.state_dict()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = state["scale"]
        self.scheduler.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.scheduler.load_state_dict(copy.deepcopy(state["scheduler"]))

    def describe(self) -> str:
        return f"torch scheduler {type(self.scheduler).__name__}"

    def __repr__(self) -> str:
        return f"TorchScheduler({type(self.scheduler).__name__})"


class _Phi:
    """``phi(alpha) = f(x - alpha u)`` and ``phi'(alpha) = -grad f(x - alpha u) . u``, evaluated
    through the objective (counted), each trial kept so the accepted one is not recomputed."""

    def __init__(self, s: LoopState, u: list[Tensor]) -> None:
        self.s, self.u = s, u
        self.trials: dict[float, tuple[list[Tensor], Tensor, list[Tensor]]] = {}
        self.evals = 0
        # below this step the move is lost in round-off: x - alpha u == x
        u_max = max(v.abs().max().item() for v in u)
        x_max = max(max(v.abs().max().item() for v in s.values), 1.0)
        eps = torch.finfo(s.values[0].dtype).eps
        self.alpha_min = eps * x_max / u_max if u_max > 0 else math.inf

    def __call__(self, alpha: float) -> tuple[float, float]:
        s = self.s
        new = s.rule.apply(s.values, self.u, alpha)
        s.params.set(new)
        loss_t, grads = s.objective()
        self.evals += 1
        self.trials[alpha] = (new, loss_t, grads)
        f = _finite(loss_t.item())
        d = -_dot(grads, self.u) if f < math.inf else math.inf
        return f, _finite(d)

    def value(self, alpha: float) -> float:
        return self.trials[alpha][1].item()


class LineSearch(Step):
    """Base of the strategies that search along ``u``: the descent check, the restart of the
    rule, the accepted trial handed to the loop, and the failure report.

    Subclasses implement :meth:`search` over ``phi`` and return the accepted ``alpha`` (whose
    condition they have verified) or ``None``.

    Attributes:
        failed: set when no acceptable step was found even after restarting the rule.
    """

    searches: ClassVar[bool] = True

    def reset(self) -> None:
        super().reset()
        self.failed = False

    def search(self, s: LoopState, phi: _Phi, f0: float, d0: float,
               u: list[Tensor]) -> float | None:
        raise NotImplementedError

    def accepted(self, s: LoopState, u: list[Tensor], alpha: float, phi: _Phi) -> None:
        """Hook: remember what the next search needs (called once per accepted step)."""

    def __call__(self, s: LoopState, u: list[Tensor]) -> float:
        if not s.rule.scalable:
            self.check(s.rule)
        for attempt in range(2):
            if attempt:  # restart the rule: its fresh direction is a scaled gradient
                if u is s.grads:  # plain gd: a restart would search the same line again
                    break
                s.rule.init(s.values)
                u = s.rule.direction(s.values, s.grads)
                self.restarted()
            d0 = -_dot(s.grads, u)
            if not d0 < 0:  # not a descent direction (or nan)
                continue
            phi = _Phi(s, u)
            alpha = self.search(s, phi, s.loss, d0, u)
            if alpha is not None:
                s.trial = phi.trials[alpha]
                s.info.update({"ls_evals": phi.evals, "dphi0": d0})
                self.accepted(s, u, alpha, phi)
                return alpha
        self.failed = True
        s.params.set(s.values)
        return 0.0

    def restarted(self) -> None:
        """Hook: the rule was restarted; forget what depended on its old directions."""


class Armijo(LineSearch):
    """Backtracking line search to sufficient decrease (the Armijo condition)::

        phi(alpha) <= phi(0) + c1 * alpha * phi'(0)

    The first trial is ``lr0``; each later search starts from the last accepted step times
    ``growth`` (so the step can grow back after a cut), and every rejected trial is multiplied by
    ``shrink``. Monotone: the loss never increases.

    Args:
        lr0: the first trial step.
        c1: the sufficient-decrease constant, in (0, 1).
        shrink: the factor a rejected trial is multiplied by, in (0, 1).
        growth: the factor the next search's first trial grows by (>= 1).
        max_evals: trials per search before it gives up.

    References:
        Armijo, "Minimization of functions having Lipschitz continuous first partial
        derivatives", Pacific J. Math. 16, 1966; Nocedal & Wright, Numerical Optimization,
        2nd ed., Alg. 3.1.
    """

    def __init__(self, lr0: float = 1.0, *, c1: float = 1e-4, shrink: float = 0.5,
                 growth: float = 2.0, max_evals: int = 60) -> None:
        self.lr0 = check_positive("lr0", lr0)
        self.c1 = check_fraction("c1", c1, low_open=True)
        self.shrink_factor = check_fraction("shrink", shrink, low_open=True)
        self.growth = check_positive("growth", growth)
        if self.growth < 1:
            raise InputError(f"growth must be >= 1, got {growth!r}")
        self.max_evals = _check_evals(max_evals)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.next_lr = self.lr0

    def search(self, s: LoopState, phi: _Phi, f0: float, d0: float,
               u: list[Tensor]) -> float | None:
        alpha = self.next_lr * self.scale
        for _ in range(self.max_evals):
            if alpha < phi.alpha_min:
                return None
            f, _d = phi(alpha)
            if f <= f0 + self.c1 * alpha * d0:
                return alpha
            alpha *= self.shrink_factor
        return None

    def accepted(self, s: LoopState, u: list[Tensor], alpha: float, phi: _Phi) -> None:
        self.next_lr = alpha * self.growth / self.scale

    def describe(self) -> str:
        return (f"Armijo backtracking (lr0={self.lr0:g}, c1={self.c1:g}, "
                f"shrink={self.shrink_factor:g})")

    def __repr__(self) -> str:
        return (f"Armijo(lr0={self.lr0!r}, c1={self.c1!r}, shrink={self.shrink_factor!r}, "
                f"growth={self.growth!r})")


def _cubic_min(a: float, fa: float, da: float, b: float, fb: float, db: float,
               lo: float, hi: float) -> float:
    """Minimiser of the cubic through ``(a, fa, da)`` and ``(b, fb, db)``, clamped to
    ``[lo, hi]``; the midpoint when the cubic has no minimiser or a value is not finite
    (Nocedal & Wright eq. 3.59)."""
    if a == b or not all(math.isfinite(v) for v in (fa, da, fb, db)):
        return (lo + hi) / 2
    d1 = da + db - 3 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    if disc < 0:
        return (lo + hi) / 2
    d2 = math.copysign(math.sqrt(disc), b - a)
    den = db - da + 2 * d2
    if den == 0:
        return (lo + hi) / 2
    t = b - (b - a) * (db + d2 - d1) / den
    if not math.isfinite(t):
        return (lo + hi) / 2
    return min(max(t, lo), hi)


class StrongWolfe(LineSearch):
    """Line search to the strong Wolfe conditions::

        phi(alpha) <= phi(0) + c1 * alpha * phi'(0)        (sufficient decrease)
        |phi'(alpha)| <= c2 * |phi'(0)|                    (curvature)

    Bracketing then zoom with safeguarded cubic interpolation (Nocedal & Wright Alg. 3.5 and
    3.6, the structure of ``torch.optim.LBFGS``'s ``strong_wolfe``), but a step is returned
    only when both conditions hold. The curvature condition guarantees ``s . y > 0``, which
    quasi-Newton updates need. The first trial is ``lr0`` for rules whose update is
    Newton-scaled (``lbfgs``, ``bfgs``: the unit step); for other rules the first trial of the
    first search is ``lr0`` and later ones assume the same first-order decrease as the last
    step: ``alpha_0 = alpha_prev * phi'_prev(0) / phi'(0)`` (N&W eq. 3.60).

    Args:
        lr0: the first trial step.
        c1: sufficient-decrease constant, in (0, c2).
        c2: curvature constant, in (c1, 1); 0.9 for quasi-Newton, 0.1 for conjugate gradient.
        max_evals: trials per search before it gives up.

    References:
        Nocedal & Wright, Numerical Optimization, 2nd ed., Alg. 3.5-3.6 and eq. 3.59-3.60;
        More & Thuente, "Line search algorithms with guaranteed sufficient decrease", ACM TOMS
        20, 1994.
    """

    def __init__(self, lr0: float = 1.0, *, c1: float = 1e-4, c2: float = 0.9,
                 max_evals: int = 25) -> None:
        self.lr0 = check_positive("lr0", lr0)
        self.c1 = check_fraction("c1", c1, low_open=True)
        self.c2 = check_fraction("c2", c2, low_open=True)
        if not self.c1 < self.c2:
            raise InputError(f"StrongWolfe needs c1 < c2, got c1={c1!r}, c2={c2!r}")
        self.max_evals = _check_evals(max_evals)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.prev: tuple[float, float] | None = None  # (alpha, phi'(0)) of the last search

    def restarted(self) -> None:
        self.prev = None

    def _first_trial(self, s: LoopState, d0: float) -> float:
        if getattr(s.rule, "newton_scaled", False) or self.prev is None:
            return self.lr0 * self.scale
        a, dprev = self.prev
        return a * dprev / d0

    def accepted(self, s: LoopState, u: list[Tensor], alpha: float, phi: _Phi) -> None:
        self.prev = (alpha, s.info["dphi0"])

    def search(self, s: LoopState, phi: _Phi, f0: float, d0: float,
               u: list[Tensor]) -> float | None:
        c1, c2, n = self.c1, self.c2, self.max_evals

        def wolfe(a: float, f: float, d: float) -> bool:
            return f <= f0 + c1 * a * d0 and abs(d) <= -c2 * d0

        # bracketing (Alg. 3.5)
        a_prev, f_prev, d_prev = 0.0, f0, d0
        a = self._first_trial(s, d0)
        f, d = phi(a)
        lo = hi = None
        while True:
            if f > f0 + c1 * a * d0 or (phi.evals > 1 and f >= f_prev):
                lo, hi = (a_prev, f_prev, d_prev), (a, f, d)
                break
            if abs(d) <= -c2 * d0:
                return a if wolfe(a, f, d) else None
            if d >= 0:
                lo, hi = (a, f, d), (a_prev, f_prev, d_prev)
                break
            if phi.evals >= n:
                return None
            # extrapolate: the cubic's minimiser, between 1.01 a and 10 a
            a_new = _cubic_min(a_prev, f_prev, d_prev, a, f, d, a + 0.01 * (a - a_prev), 10 * a)
            a_prev, f_prev, d_prev = a, f, d
            a = a_new
            f, d = phi(a)
        # zoom (Alg. 3.6): lo holds the lowest f that satisfies sufficient decrease
        insufficient = False
        while phi.evals < n:
            (al, fl, dl), (ah, fh, dh) = lo, hi
            width = abs(ah - al)
            if width < phi.alpha_min:  # the bracket is below round-off
                return None
            left, right = min(al, ah), max(al, ah)
            a = _cubic_min(al, fl, dl, ah, fh, dh, left, right)
            # keep trials away from the ends, or the bracket shrinks too slowly
            margin = 0.1 * width
            if min(right - a, a - left) < margin:
                if insufficient or a >= right or a <= left:
                    a = right - margin if abs(a - right) < abs(a - left) else left + margin
                    insufficient = False
                else:
                    insufficient = True
            else:
                insufficient = False
            f, d = phi(a)
            if f > f0 + c1 * a * d0 or f >= fl:
                hi = (a, f, d)
            else:
                if abs(d) <= -c2 * d0:
                    return a if wolfe(a, f, d) else None
                if d * (ah - al) >= 0:
                    hi = lo
                lo = (a, f, d)
        return None

    def describe(self) -> str:
        return f"strong Wolfe line search (lr0={self.lr0:g}, c1={self.c1:g}, c2={self.c2:g})"

    def __repr__(self) -> str:
        return f"StrongWolfe(lr0={self.lr0!r}, c1={self.c1!r}, c2={self.c2!r})"


class Polyak(Step):
    """Polyak's step: the step that would reach the optimal value on a linear model::

        lr_k = (f(x_k) - f*) / (g_k . u_k)          (= (f - f*) / |g|^2 for gd)

    ``f_star`` is a known optimal value or a lower bound (0 by default, right for non-negative
    losses that can be driven to 0; an underestimate makes the steps too long). When
    ``f(x_k) <= f*`` the bound is wrong and the last step is reused. No extra evaluations.

    Args:
        f_star: the optimal value or a lower bound of it.
        max_lr: an upper clamp on the step (default none).

    References:
        Polyak, Introduction to Optimization, 1987, Sec. 5.3; Hazan & Kakade, "Revisiting the
        Polyak step size", arXiv:1905.00313, 2019.
    """

    def __init__(self, f_star: float = 0.0, *, max_lr: float = math.inf) -> None:
        if isinstance(f_star, bool) or not isinstance(f_star, (int, float)) or not math.isfinite(
                f_star):
            raise InputTypeError(f"f_star must be a finite number, got {f_star!r}")
        self.f_star = float(f_star)
        self.max_lr = math.inf if max_lr == math.inf else check_positive("max_lr", max_lr)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.last = math.nan

    def __call__(self, s: LoopState, u: list[Tensor]) -> float:
        gu = _dot(s.grads, u)
        gap = s.loss - self.f_star
        if gap > 0 and gu > 0:
            self.last = min(gap / gu, self.max_lr)
        elif not math.isfinite(self.last):  # nothing to reuse yet: a unit-length move
            self.last = min(1.0 / max(_norm(u), 1e-300), self.max_lr)
        return self.last * self.scale

    def describe(self) -> str:
        return f"Polyak step (f*={self.f_star:g})"

    def __repr__(self) -> str:
        return f"Polyak(f_star={self.f_star!r})"


def _curvature_step(s: LoopState, u: list[Tensor], d0: float) -> float:
    """The minimiser along ``u`` of the local quadratic model, from a gradient difference over a
    tiny probe move: ``phi''(0) ~ (phi'(h) - phi'(0)) / h``, ``alpha = -phi'(0) / phi''(0)``.
    One evaluation (counted); falls back to a unit-length move when the curvature is not
    positive. The probe point is left as the current parameters' value; callers reset it."""
    u_norm = _norm(u)
    h = _probe_size(s.values, u_norm)
    s.params.set(s.rule.apply(s.values, u, h))
    _, g_h = s.objective()
    s.params.set(s.values)
    curv = (-_dot(g_h, u) - d0) / h
    if curv > 0 and math.isfinite(curv):
        return -d0 / curv
    return max(1.0, _norm(s.values)) / u_norm


class BarzilaiBorwein(Step):
    """Barzilai-Borwein (spectral) steps, no line search. With ``s = x_k - x_{k-1}`` and
    ``y = g_k - g_{k-1}``::

        long  (BB1):  lr_k = s.s / s.y        short (BB2):  lr_k = s.y / y.y

    ``"alternate"`` switches between them every step. Safeguards: when ``s.y <= 0`` (negative
    curvature along ``s``) the last step is reused; every step is clamped to
    ``[lr_min, lr_max]`` and to at most ``max_growth`` times the last one. The first step is
    ``lr0``, or, by default, the curvature step along ``u`` from a gradient difference (one
    extra evaluation). For rules other than gd the step is scaled by ``g.u / u.u``. Non-monotone:
    the loss may rise for a few steps; pair it with the divergence guard on non-convex problems.

    Args:
        variant: ``"long"``, ``"short"`` or ``"alternate"``.
        lr0: the first step (default: from the curvature).
        lr_min, lr_max: the clamp.
        max_growth: the largest factor between consecutive steps.

    References:
        Barzilai & Borwein, "Two-point step size gradient methods", IMA J. Numer. Anal. 8, 1988;
        Raydan, "The Barzilai and Borwein gradient method for the large scale unconstrained
        minimization problem", SIAM J. Optim. 7, 1997.
    """

    VARIANTS: ClassVar[tuple[str, ...]] = ("long", "short", "alternate")

    def __init__(self, variant: str = "long", *, lr0: float | None = None, lr_min: float = 1e-10,
                 lr_max: float = 1e10, max_growth: float = 1e4) -> None:
        if variant not in self.VARIANTS:
            raise InputError(f"variant must be one of {', '.join(self.VARIANTS)}, got {variant!r}")
        self.variant = variant
        self.lr0 = None if lr0 is None else check_positive("lr0", lr0)
        self.lr_min = check_positive("lr_min", lr_min)
        self.lr_max = check_positive("lr_max", lr_max)
        if self.lr_min >= self.lr_max:
            raise InputError(f"lr_min must be < lr_max, got {lr_min!r} and {lr_max!r}")
        self.max_growth = check_positive("max_growth", max_growth)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.prev: tuple[list[Tensor], list[Tensor]] | None = None
        self.last = math.nan
        self.k = 0

    def shrink(self, factor: float) -> None:
        super().shrink(factor)
        self.prev = None  # the guard returned to the best point: the old pair is stale

    def __call__(self, s: LoopState, u: list[Tensor]) -> float:
        if self.prev is None:
            lr = self.lr0 if self.lr0 is not None else _curvature_step(s, u, -_dot(s.grads, u))
            lr *= self.scale
        else:
            x_prev, g_prev = self.prev
            sv, y = _sub(s.values, x_prev), _sub(s.grads, g_prev)
            sy, ss, yy = _dot(sv, y), _dot(sv, sv), _dot(y, y)
            long = self.variant == "long" or (self.variant == "alternate" and self.k % 2 == 0)
            if sy > 0 and yy > 0:
                lr = ss / sy if long else sy / yy
                gu, uu = _dot(s.grads, u), _dot(u, u)
                if gu > 0 and u is not s.grads:
                    lr *= gu / uu
                lr *= self.scale
            else:
                lr = self.last
            lr = min(lr, self.max_growth * self.last)
        lr = min(max(lr, self.lr_min), self.lr_max)
        self.prev = (s.values, s.grads)
        self.last = lr
        self.k += 1
        return lr

    def describe(self) -> str:
        return f"Barzilai-Borwein ({self.variant})"

    def __repr__(self) -> str:
        return f"BarzilaiBorwein(variant={self.variant!r})"


class AdaptiveGD(Step):
    """Adaptive gradient descent without descent (Malitsky & Mishchenko 2020, Alg. 1): the step
    follows a local Lipschitz estimate from gradient differences, never more than
    ``sqrt(1 + theta)`` times the last one::

        lr_k = min( sqrt(1 + theta_{k-1}) lr_{k-1},  |x_k - x_{k-1}| / (2 |g_k - g_{k-1}|) )
        theta_k = lr_k / lr_{k-1}

    No line search, no constants: the first step is a tiny finite-difference move (or ``lr0``),
    after which ``theta_0 = inf`` lets the second step jump straight to ``1 / (2 L_local)``.
    Converges on convex, locally smooth problems; the loss need not fall every step.

    Args:
        lr0: the first step (default: a move of ``sqrt(eps) * max(1, |x|)``).

    References:
        Malitsky & Mishchenko, "Adaptive gradient descent without descent", ICML 2020.
    """

    def __init__(self, lr0: float | None = None) -> None:
        self.lr0 = None if lr0 is None else check_positive("lr0", lr0)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.prev: tuple[list[Tensor], list[Tensor]] | None = None
        self.last = math.nan
        self.theta = math.inf

    def shrink(self, factor: float) -> None:
        super().shrink(factor)
        if math.isfinite(self.last):
            self.last *= factor
        self.prev = None

    def __call__(self, s: LoopState, u: list[Tensor]) -> float:
        if self.prev is None:
            if math.isfinite(self.last):  # after a backtrack: resume from the shrunk step
                lr = self.last
            elif self.lr0 is not None:
                lr = self.lr0 * self.scale
            else:
                lr = _probe_size(s.values, max(_norm(u), 1e-300))
            self.theta = math.inf
        else:
            x_prev, g_prev = self.prev
            dx, dg = _norm(_sub(s.values, x_prev)), _norm(_sub(s.grads, g_prev))
            local = dx / (2 * dg) * self.scale if dg > 0 else math.inf
            lr = min(math.sqrt(1 + self.theta) * self.last, local)
            self.theta = lr / self.last
        self.prev = (s.values, s.grads)
        self.last = lr
        return lr

    def describe(self) -> str:
        return "adaptive GD (Malitsky-Mishchenko)"

    def __repr__(self) -> str:
        return f"AdaptiveGD(lr0={self.lr0!r})"


class Auto(LineSearch):
    """``lr="auto"``: a step that needs no problem constants.

    1. First step: the minimiser along ``u`` of the local quadratic model, from the curvature
       ``phi''(0)`` measured by a gradient difference over a tiny probe move (one evaluation; on
       a quadratic this is the exact line minimum, so the notebook converges in one step).
    2. Later steps: the Barzilai-Borwein step ``s.s / s.y`` (scaled by ``g.u / u.u`` for rules
       other than gd), which adapts to the local curvature; ``|s| / |y|`` when ``s.y <= 0``.
    3. Safeguard: each trial must pass the non-monotone Armijo test against the largest of the
       last ``memory`` losses (Grippo-Lampariello-Lucidi), so BB keeps its speed on
       ill-conditioned problems yet cannot run away; a rejected trial is replaced by the
       minimiser of the quadratic through ``phi(0), phi'(0), phi(alpha)``, kept in
       ``[0.1, 0.5] alpha``.

    ``minimize`` pairs it with the divergence guard ``on_divergence="backtrack"``.

    References:
        Raydan, "The Barzilai and Borwein gradient method for the large scale unconstrained
        minimization problem", SIAM J. Optim. 7, 1997; Grippo, Lampariello & Lucidi, "A
        nonmonotone line search technique for Newton's method", SIAM J. Numer. Anal. 23, 1986.
    """

    def __init__(self, *, c1: float = 1e-4, memory: int = 10, max_evals: int = 60) -> None:
        self.c1 = check_fraction("c1", c1, low_open=True)
        self.memory = _check_evals(memory)
        self.max_evals = _check_evals(max_evals)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.prev: tuple[list[Tensor], list[Tensor]] | None = None
        self.losses: deque[float] = deque(maxlen=self.memory)

    def restarted(self) -> None:
        self.prev = None

    def shrink(self, factor: float) -> None:
        super().shrink(factor)
        self.prev = None
        self.losses.clear()

    def _first_trial(self, s: LoopState, u: list[Tensor], d0: float) -> float:
        if self.prev is None:
            return _curvature_step(s, u, d0) * self.scale
        x_prev, g_prev = self.prev
        sv, y = _sub(s.values, x_prev), _sub(s.grads, g_prev)
        sy, ss, yy = _dot(sv, y), _dot(sv, sv), _dot(y, y)
        if yy <= 0 or ss <= 0:
            return _curvature_step(s, u, d0) * self.scale
        lr = ss / sy if sy > 0 else math.sqrt(ss / yy)
        if u is not s.grads:
            lr *= -d0 / _dot(u, u)
        return lr * self.scale

    def search(self, s: LoopState, phi: _Phi, f0: float, d0: float,
               u: list[Tensor]) -> float | None:
        self.losses.append(f0)
        f_ref = max(self.losses)
        alpha = self._first_trial(s, u, d0)
        if not (alpha > 0 and math.isfinite(alpha)):
            alpha = 1.0 / max(_norm(u), 1e-300)
        for _ in range(self.max_evals):
            if alpha < phi.alpha_min:
                return None
            f, _d = phi(alpha)
            if f <= f_ref + self.c1 * alpha * d0:
                s.info["f_ref"] = f_ref
                return alpha
            # quadratic interpolation through phi(0), phi'(0), phi(alpha), safeguarded
            den = 2 * (f - f0 - d0 * alpha)
            a_q = -d0 * alpha * alpha / den if den > 0 and math.isfinite(den) else 0.1 * alpha
            alpha = min(max(a_q, 0.1 * alpha), 0.5 * alpha)
        return None

    def accepted(self, s: LoopState, u: list[Tensor], alpha: float, phi: _Phi) -> None:
        self.prev = (s.values, s.grads)

    def describe(self) -> str:
        return "auto (curvature start, Barzilai-Borwein, non-monotone Armijo safeguard)"

    def __repr__(self) -> str:
        return f"Auto(c1={self.c1!r}, memory={self.memory!r})"


def _check_evals(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"max_evals must be a whole number >= 1, got {n!r}")
    return n


#: Step-size strategies by name (``lr="armijo"`` etc.); ``"auto"`` resolves per rule in
#: :func:`make_step`.
STEPS: dict[str, type[Step]] = {
    "auto": Auto,
    "armijo": Armijo,
    "wolfe": StrongWolfe,
    "polyak": Polyak,
    "bb": BarzilaiBorwein,
    "adaptive": AdaptiveGD,
}


def _is_scheduler_factory(lr: Any) -> bool:
    f = lr.func if isinstance(lr, functools.partial) else lr
    return isinstance(f, type) and issubclass(f, (_LRScheduler, _Plateau))


def make_step(lr: Any, rule: Rule | None = None) -> Step:
    """Resolve ``lr`` to a fresh step-size strategy for ``rule``.

    ``lr`` may be a number (:class:`Constant`), a name from :data:`STEPS` (``"auto"``,
    ``"armijo"``, ...), a :class:`Step`, a callable ``k -> lr`` (:class:`Schedule`), or a
    ``torch.optim.lr_scheduler`` instance (:class:`TorchScheduler`). Quasi-Newton rules
    (``rule.newton_scaled``) always get :class:`StrongWolfe`: a number becomes its first trial
    step, ``"auto"`` the unit step.

    Raises:
        InputError: for an lr the rule cannot use, naming both and the fix.
    """
    wolfe_only = rule is not None and getattr(rule, "newton_scaled", False)
    if isinstance(lr, bool):
        raise InputTypeError(f"lr must be a number > 0 or a step-size strategy, got {lr!r}")
    step: Step
    if isinstance(lr, Step):
        step = lr
    elif isinstance(lr, str):
        cls = STEPS.get(lr)
        if cls is None:
            raise InputError(f"unknown lr {lr!r}; known names: {', '.join(STEPS)}, or a number")
        step = StrongWolfe() if wolfe_only and cls is Auto else cls()
    elif isinstance(lr, (int, float)):
        step = StrongWolfe(lr0=lr) if wolfe_only else Constant(lr)
    elif isinstance(lr, (_LRScheduler, _Plateau)):
        step = TorchScheduler(lr)
    elif _is_scheduler_factory(lr):
        raise InputTypeError(
            f"lr={lr!r} is a scheduler factory without a base lr; "
            "use steps.TorchScheduler(factory, lr=0.1)"
        )
    elif callable(lr):
        step = Schedule(lr)
    else:
        raise InputTypeError(
            f"lr must be a number > 0, a callable k -> lr or a step-size strategy, got {lr!r}"
        )
    if rule is not None:
        if wolfe_only and not isinstance(step, StrongWolfe):
            raise InputError(
                f"rule {rule.name!r} needs the strong-Wolfe line search (its curvature pairs "
                f"need s.y > 0), got lr={step.describe()!r}; give lr as a number (the first "
                "trial step), 'auto' or steps.StrongWolfe(...)"
            )
        step.check(rule)
    return step
