"""Step sizes: how far to move along the rule's update vector.

A step-size strategy is a small object called once per iteration as
``step(state, u, line) -> alpha | None``, with the loop's :class:`~descend.state.LoopState`
(read only), the rule's update vector ``u`` and the loop's :class:`~descend.state.Line`
``x - alpha u``, on which a line search evaluates its trials (on this iteration's batch). It
chooses a length, nothing else: the loop moves ``x <- x - alpha u`` (reusing an evaluated trial)
and, when a strategy finds no acceptable length (``None``), restarts the rule once and asks
again.

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
search returns ``None``; the loop restarts the rule (its state reset, which makes ``u`` a
positive scaling of the gradient) and asks once more; if that fails too, the run stops with
reason ``"step_failed"`` (or ``"roundoff"``). The searches themselves are the pure functions of
:mod:`descend.linesearch`. They need rules whose update is ``x - lr * u`` (``Rule.scalable``);
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

from .errors import InputError, InputTypeError, check_count, check_fraction, check_positive
from .linesearch import armijo_backtracking, nonmonotone_armijo, strong_wolfe
from .state import Line, LoopState, dot, norm, probe_size, sub

if TYPE_CHECKING:
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


class Step:
    """Base of all step-size strategies.

    Attributes:
        scale: the factor the divergence guard has shrunk the steps by (1 at the start).
    """

    #: True for strategies that evaluate trial points along ``u`` (need ``Rule.scalable``).
    searches: ClassVar[bool] = False

    scale: float = 1.0

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

    def __call__(self, s: LoopState, u: list[Tensor], line: Line) -> float | None:
        """The step length along ``-u`` (``None``: no acceptable length along this ``u``)."""
        raise NotImplementedError

    def restarted(self) -> None:
        """The loop restarted the rule: forget what depended on its old directions."""

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

    def __call__(self, s: LoopState, u: list[Tensor], line: Line) -> float:
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

    def __call__(self, s: LoopState, u: list[Tensor], line: Line) -> float:
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

    def __call__(self, s: LoopState, u: list[Tensor], line: Line) -> float:
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


class LineSearch(Step):
    """Base of the strategies that search along ``u`` over the loop's :class:`Line`: the
    descent check and the hooks. Subclasses implement :meth:`search` and return an ``alpha``
    whose condition holds (a function of :mod:`descend.linesearch` verified it) or ``None``."""

    searches: ClassVar[bool] = True

    def search(self, s: LoopState, u: list[Tensor], line: Line) -> float | None:
        raise NotImplementedError

    def accepted(self, s: LoopState, u: list[Tensor], alpha: float, line: Line) -> None:
        """Hook: remember what the next search needs (called once per accepted step)."""

    def __call__(self, s: LoopState, u: list[Tensor], line: Line) -> float | None:
        if not line.d0 < 0:  # not a descent direction (or nan): the loop restarts the rule
            return None
        alpha = self.search(s, u, line)
        if alpha is not None:
            self.accepted(s, u, alpha, line)
        return alpha


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
        self.max_evals = check_count("max_evals", max_evals)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.next_lr = self.lr0

    def search(self, s: LoopState, u: list[Tensor], line: Line) -> float | None:
        return armijo_backtracking(line, line.f0, line.d0, self.next_lr * self.scale,
                                   c1=self.c1, shrink=self.shrink_factor,
                                   max_evals=self.max_evals, alpha_min=line.alpha_min)

    def accepted(self, s: LoopState, u: list[Tensor], alpha: float, line: Line) -> None:
        self.next_lr = alpha * self.growth / self.scale

    def describe(self) -> str:
        return (f"Armijo backtracking (lr0={self.lr0:g}, c1={self.c1:g}, "
                f"shrink={self.shrink_factor:g})")

    def __repr__(self) -> str:
        return (f"Armijo(lr0={self.lr0!r}, c1={self.c1!r}, shrink={self.shrink_factor!r}, "
                f"growth={self.growth!r})")


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
        self.max_evals = check_count("max_evals", max_evals)
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

    def accepted(self, s: LoopState, u: list[Tensor], alpha: float, line: Line) -> None:
        self.prev = (alpha, line.d0)

    def search(self, s: LoopState, u: list[Tensor], line: Line) -> float | None:
        return strong_wolfe(line, line.f0, line.d0, self._first_trial(s, line.d0), c1=self.c1,
                            c2=self.c2, max_evals=self.max_evals, alpha_min=line.alpha_min)

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

    def __call__(self, s: LoopState, u: list[Tensor], line: Line) -> float:
        gu = dot(s.grads, u)
        gap = s.loss - self.f_star
        if gap > 0 and gu > 0:
            self.last = min(gap / gu, self.max_lr)
        elif not math.isfinite(self.last):  # nothing to reuse yet: a unit-length move
            self.last = min(1.0 / max(norm(u), 1e-300), self.max_lr)
        return self.last * self.scale

    def describe(self) -> str:
        return f"Polyak step (f*={self.f_star:g})"

    def __repr__(self) -> str:
        return f"Polyak(f_star={self.f_star!r})"


def _curvature_step(s: LoopState, u: list[Tensor], line: Line) -> float:
    """The minimiser along ``u`` of the local quadratic model, from a gradient difference over a
    tiny probe move: ``phi''(0) ~ (phi'(h) - phi'(0)) / h``, ``alpha = -phi'(0) / phi''(0)``.
    One evaluation (counted); falls back to a unit-length move when the curvature is not
    positive."""
    u_norm = norm(u)
    h = probe_size(s.values, u_norm)
    d0 = line.d0
    curv = (line.slope(h) - d0) / h
    if curv > 0 and math.isfinite(curv):
        return -d0 / curv
    return max(1.0, norm(s.values)) / u_norm


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

    def __call__(self, s: LoopState, u: list[Tensor], line: Line) -> float:
        if self.prev is None:
            lr = self.lr0 if self.lr0 is not None else _curvature_step(s, u, line)
            lr *= self.scale
        else:
            x_prev, g_prev = self.prev
            sv, y = sub(s.values, x_prev), sub(s.grads, g_prev)
            sy, ss, yy = dot(sv, y), dot(sv, sv), dot(y, y)
            long = self.variant == "long" or (self.variant == "alternate" and self.k % 2 == 0)
            if sy > 0 and yy > 0:
                lr = ss / sy if long else sy / yy
                gu, uu = dot(s.grads, u), dot(u, u)
                if gu > 0 and not s.is_gradient(u):
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

    def __call__(self, s: LoopState, u: list[Tensor], line: Line) -> float:
        if self.prev is None:
            if math.isfinite(self.last):  # after a backtrack: resume from the shrunk step
                lr = self.last
            elif self.lr0 is not None:
                lr = self.lr0 * self.scale
            else:
                lr = probe_size(s.values, max(norm(u), 1e-300))
            self.theta = math.inf
        else:
            x_prev, g_prev = self.prev
            dx, dg = norm(sub(s.values, x_prev)), norm(sub(s.grads, g_prev))
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
        self.memory = check_count("memory", memory)
        self.max_evals = check_count("max_evals", max_evals)
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

    def _first_trial(self, s: LoopState, u: list[Tensor], line: Line) -> float:
        d0 = line.d0
        if self.prev is None:
            return _curvature_step(s, u, line) * self.scale
        x_prev, g_prev = self.prev
        sv, y = sub(s.values, x_prev), sub(s.grads, g_prev)
        sy, ss, yy = dot(sv, y), dot(sv, sv), dot(y, y)
        if yy <= 0 or ss <= 0:
            return _curvature_step(s, u, line) * self.scale
        lr = ss / sy if sy > 0 else math.sqrt(ss / yy)
        if not s.is_gradient(u):
            lr *= -d0 / dot(u, u)
        return lr * self.scale

    def search(self, s: LoopState, u: list[Tensor], line: Line) -> float | None:
        self.losses.append(line.f0)
        alpha = self._first_trial(s, u, line)
        if not (alpha > 0 and math.isfinite(alpha)):
            alpha = 1.0 / max(norm(u), 1e-300)
        return nonmonotone_armijo(line, line.f0, line.d0, alpha, f_ref=max(self.losses),
                                  c1=self.c1, max_evals=self.max_evals,
                                  alpha_min=line.alpha_min)

    def accepted(self, s: LoopState, u: list[Tensor], alpha: float, line: Line) -> None:
        self.prev = (s.values, s.grads)

    def describe(self) -> str:
        return "auto (curvature start, Barzilai-Borwein, non-monotone Armijo safeguard)"

    def __repr__(self) -> str:
        return f"Auto(c1={self.c1!r}, memory={self.memory!r})"


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
