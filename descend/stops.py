"""Stopping criteria and the one table of stop reasons and their messages.

A criterion is a small object: ``criterion(state) -> bool`` says whether it fires on the loop's
current state (:class:`~descend.state.LoopState`), ``reason`` names it, and :func:`message`
renders its line of :data:`REASONS`. A list of criteria fires when any one does; when several
fire on the same iteration, the first with a success reason names it (so a threshold met on
the last allowed iteration reports ``loss_below``, not ``max_iter``), else the first in order.
``a | b`` (:class:`AnyOf`) and ``a & b`` (:class:`AllOf`) combine criteria. Two guards are always
on, ahead of the user's criteria: :class:`NonFinite` and :class:`Diverged`; an iteration cap
(:class:`MaxIter`, 10,000 unless the caller gives one) bounds every run.

**The default criteria.** When the caller gives no ``stop``, a deterministic run stops when it
is done: :class:`Stationary` (a scale-free first-order test, reason ``converged``) or
:class:`Stalled` (the loss and ``x`` no longer change beyond round-off over a window: reason
``roundoff``, a success, when the point passes the first-order test at round-off level, else
``stalled``, a failure with a hint). Their tolerances follow the dtype. Any ``stop`` replaces
them: ``stop=LossBelow(1e-5)`` alone is the notebook's ``while loss > threshold``.

**The first-order test** is scale-free: with ``typ x_i = |x0_i|`` (the start's magnitudes; the
tensor's RMS where ``x0_i = 0``, 1 where all are 0)::

    scaled gradient = sum_i |g_i| max(|x_i|, typ x_i) / max(|f|, c |f_0|)   <=   c

with ``c = sqrt(eps)`` for :class:`Stationary` and ``c = eps^(1/3)`` at round-off (Dennis &
Schnabel, *Numerical Methods for Unconstrained Optimization*, 1983, sec. 7.2: the relative
gradient; here the typical loss is ``c |f_0|``, so multiplying ``f`` by a constant or rescaling
a coordinate changes nothing, and a zero-residual problem is measured against its start).

Divergence is declared when the loss rises above the best loss seen by more than ``factor``
(default ``1e4``) times the scale of the loss seen, ``max(|f_best|, |f_0|, f_0 - f_best)``;
so the sign of the loss does not matter. On the notebook problem with ``lr = 10`` the loss grows
by ``(1 - 2*10/9)^2 ~ 1.49`` per step, so the guard fires after 23 steps, long before an
overflow.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from .convergence import eps_of, first_order, hint, not_a_minimum, probe_move, typical
from .errors import InputError, InputTypeError, check_count, check_positive
from .i18n import N_, _, translate

if TYPE_CHECKING:
    from .state import Line, LoopState

__all__ = [
    "DEFAULT_MAX_ITER",
    "EPOCH_CRITERIA",
    "REASONS",
    "AllOf",
    "AnyOf",
    "Callback",
    "Criterion",
    "Diverged",
    "EarlyStopping",
    "GradNormBelow",
    "Interrupted",
    "LossBelow",
    "MaxEpochs",
    "MaxEvals",
    "MaxIter",
    "NoImprovement",
    "NonFinite",
    "Plateau",
    "RoundOff",
    "Stalled",
    "Stationary",
    "StepFailed",
    "TimeLimit",
    "TrainLossBelow",
    "ValLossBelow",
    "as_criteria",
    "criteria_list",
    "default_criteria",
    "first_order",
    "message",
    "no_step",
    "pick",
    "plateau",
    "succeeded",
]

#: The cap that bounds every run when the caller gives none.
DEFAULT_MAX_ITER = 10_000

#: reason -> (success, message template). Templates read the criterion's fields and the state's
#: ``iteration``, ``loss``, ``grad_norm``, ``best_loss``, ``nfev`` and ``elapsed``.
REASONS: dict[str, tuple[bool, str]] = {
    "loss_below": (True, N_("loss {loss:.4e} is at or below the threshold {threshold:g}")),
    "grad_small": (True, N_("gradient norm {grad_norm:.3e} is at or below the tolerance {tol:g}")),
    "callback": (True, N_("the callback asked to stop (raised StopIteration)")),
    "no_improvement": (
        False,
        N_("the loss has not improved by a relative {rtol:g} in {patience} iterations "
        "(best {best_loss:.4e})"),
    ),
    "max_iter": (False, N_("reached the iteration cap of {n} iterations")),
    "max_evals": (False, N_("reached the cap of {n} function evaluations")),
    "time_limit": (False, N_("ran past the time limit of {seconds:g} s")),
    "nonfinite": (
        False,
        N_("the loss or gradient became non-finite (nan or inf) at iteration {iteration}; "
        "x is the last finite iterate; lower the step size"),
    ),
    "converged": (
        True,
        N_("converged at iteration {iteration}: the scaled gradient {scaled:.3e} is within the "
        "tolerance {tol:.3g} (a stationary point to working precision)"),
    ),
    "roundoff": (
        True,
        N_("converged to working precision at iteration {iteration} (loss {loss:.4e}): {what}"),
    ),
    "plateau": (
        False,
        N_("stopped at iteration {iteration} where the gradient is small but x is no minimum: when "
        "x moves by {move:g} of its size, {what} (loss {loss:.4e}); often a plateau far out, "
        "where an exponential saturates, or a classifier that separates its data: try another "
        "start, a smaller step, a penalty (l2), or, for a sum of squares, descend.least_squares"),
    ),
    "stalled": (
        False,
        N_("stalled at iteration {iteration}: the loss {loss:.4e} and x no longer change beyond "
        "round-off, but the point is not stationary (scaled gradient {scaled:.3e} > "
        "{tol:.3g}); {hint}"),
    ),
    "step_failed": (
        False,
        N_("the line search found no step along the search direction that satisfies its condition "
        "at iteration {iteration} (loss {loss:.4e}), even after restarting the rule, and the "
        "point is not stationary (scaled gradient {scaled:.3e} > {tol:.3g}); {hint}"),
    ),
    "diverged": (
        False,
        N_("diverged: the loss {loss:.4e} rose above the best loss {best_loss:.4e} by more than "
        "{factor:g} times the loss scale {scale:.4e}; lower the step size"),
    ),
    "interrupted": (
        False,
        N_("interrupted by {signal} after iteration {iteration} (loss {loss:.4e}); {hint}"),
    ),
    # fit only: criteria keyed on the epoch count (iteration // batches per epoch)
    "max_epochs": (True, N_("completed {n} epochs")),
    "train_loss_below": (
        True, N_("the epoch's training loss {train_loss:.4e} is at or below the threshold "
        "{threshold:g}"),
    ),
    "val_loss_below": (
        True, N_("validation loss {val_loss:.4e} is at or below the threshold {threshold:g}"),
    ),
    "monitor_nonfinite": (
        False,
        "early stopping: the {monitor} was never a finite number in {patience} epochs (NaN or "
        "inf): check the validation rows and the loss",
    ),
    "early_stopping": (
        True,
        N_("the {monitor} has not improved by {min_delta:g} in {patience} epochs; "
        "best {best:.4e} at epoch {best_epoch}"),
    ),
}


class Criterion:
    """Base of all criteria: ``reason`` names the line of :data:`REASONS` it fires with."""

    reason: ClassVar[str] = ""

    def reset(self) -> None:
        """Forget any state from an earlier run (called when a run starts)."""

    def __call__(self, s: LoopState) -> bool:
        raise NotImplementedError

    def resolve(self, s: LoopState) -> Criterion:
        """The criterion to report once this one fired (itself, unless it defers)."""
        return self

    def __or__(self, other: Criterion) -> Criterion:
        return AnyOf(self, other)

    def __and__(self, other: Criterion) -> Criterion:
        return AllOf(self, other)

    def state_dict(self) -> dict[str, Any]:
        """The criterion's fields and state as plain data."""
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave."""
        vars(self).update(state)

    def __repr__(self) -> str:
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in names if hasattr(self, n))
        return f"{type(self).__name__}({args})"


def message(c: Criterion, s: LoopState) -> str:
    """The message of ``c``'s reason, filled in from ``c`` and the state ``s``."""
    if isinstance(c, AllOf):
        return _("all of: ") + "; ".join(message(m, s) for m in c.members)
    fields: dict[str, Any] = {
        "iteration": s.iteration, "loss": s.loss, "grad_norm": s.grad_norm,
        "best_loss": s.best_loss, "nfev": s.nfev, "elapsed": s.elapsed,
    }
    fields.update({k: translate(v) if isinstance(v, str) else v for k, v in vars(c).items()
                   if not k.startswith("_")})
    return _(REASONS[c.reason][1]).format(**fields)


class LossBelow(Criterion):
    """Fires when ``loss <= threshold``: the notebook's ``while loss > threshold``."""

    reason = "loss_below"

    def __init__(self, threshold: float) -> None:
        self.threshold = check_positive("threshold", threshold, allow_zero=True)

    def __call__(self, s: LoopState) -> bool:
        return s.loss <= self.threshold


class GradNormBelow(Criterion):
    """Fires when the gradient's Euclidean norm (all tensors together) is ``<= tol``."""

    reason = "grad_small"

    def __init__(self, tol: float) -> None:
        self.tol = check_positive("tol", tol, allow_zero=True)

    def __call__(self, s: LoopState) -> bool:
        return s.grad_norm <= self.tol

    def resolve(self, s: LoopState) -> Criterion:
        # A gradient norm is not scale-free: the tolerance met is a success only where the
        # probes of not_a_minimum do not find the loss flat around x (a plateau), and, if the
        # loss still falls there, only below the starting loss (not stuck on a slope above it).
        flat = plateau(s)
        if flat is None or (flat.what == "the loss still falls" and s.loss < s.loss0):
            return self
        return flat


class NoImprovement(Criterion):
    """Fires when the loss has not dropped below ``ref * (1 - rtol)`` (``ref``: the loss at the
    last counted improvement) for ``patience`` iterations."""

    reason = "no_improvement"

    def __init__(self, patience: int = 10, rtol: float = 1e-8) -> None:
        self.patience = check_count("patience", patience)
        self.rtol = check_positive("rtol", rtol, allow_zero=True)
        self.reset()

    def reset(self) -> None:
        self._ref = math.inf
        self._since = 0

    def __call__(self, s: LoopState) -> bool:
        ref = self._ref
        if s.loss < (ref - self.rtol * abs(ref) if ref != math.inf else ref):
            self._ref, self._since = s.loss, s.iteration
            return False
        return s.iteration - self._since >= self.patience


class MaxIter(Criterion):
    """Fires after ``n`` iterations (updates of ``x``)."""

    reason = "max_iter"

    def __init__(self, n: int) -> None:
        self.n = check_count("max_iter", n)

    def __call__(self, s: LoopState) -> bool:
        return s.iteration >= self.n


class MaxEvals(Criterion):
    """Fires once ``n`` evaluations of the objective have been spent."""

    reason = "max_evals"

    def __init__(self, n: int) -> None:
        self.n = check_count("max_evals", n)

    def __call__(self, s: LoopState) -> bool:
        return s.nfev >= self.n


class TimeLimit(Criterion):
    """Fires once ``seconds`` of wall-clock time have passed since the run started."""

    reason = "time_limit"

    def __init__(self, seconds: float) -> None:
        self.seconds = check_positive("seconds", seconds)

    def __call__(self, s: LoopState) -> bool:
        return s.elapsed >= self.seconds


class Callback(Criterion):
    """Calls ``fn(state)`` every iteration; fires when ``fn`` raises ``StopIteration``."""

    reason = "callback"

    def __init__(self, fn: Callable[[LoopState], Any]) -> None:
        if not callable(fn):
            raise InputTypeError(f"callback must be callable, got {type(fn).__name__}")
        self.fn = fn

    def __call__(self, s: LoopState) -> bool:
        try:
            self.fn(s)
        except StopIteration:
            return True
        return False


class Interrupted(Criterion):
    """Reported by the loop (not polled) when SIGINT or SIGTERM asked the run to stop
    (:mod:`descend.checkpoint`): the current iteration was finished and, when the run
    checkpoints, a checkpoint written. Reason ``interrupted``, a failure; ``hint`` says how to
    resume."""

    reason = "interrupted"

    def __init__(self, signal: str = "a signal", hint: str = "") -> None:
        self.signal, self.hint = signal, hint

    def __call__(self, s: LoopState) -> bool:
        return True


class NonFinite(Criterion):
    """Always on: fires when the loss or the gradient norm is nan or inf."""

    reason = "nonfinite"

    def __call__(self, s: LoopState) -> bool:
        return not (math.isfinite(s.loss) and math.isfinite(s.grad_norm))


class RoundOff(Criterion):
    """Reported when nothing moves the point any more (a line search finds no acceptable step,
    or :class:`Stalled` sees no change beyond round-off) and the point passes the first-order
    test at round-off level (``c = eps^(1/3)``): converged as far as floating point allows."""

    reason = "roundoff"

    def __init__(self, what: str = "", scaled: float = math.nan, tol: float = math.nan) -> None:
        self.what, self.scaled, self.tol = what, scaled, tol

    def __call__(self, s: LoopState) -> bool:
        return False


class StepFailed(Criterion):
    """Reported by the loop (not polled) when a line search finds no acceptable step and the
    point fails the first-order test (see :class:`RoundOff` for the other case): a gradient
    that does not match the loss, or a problem too badly scaled for the dtype."""

    reason = "step_failed"

    def __init__(self, scaled: float = math.nan, tol: float = math.nan, hint: str = "") -> None:
        self.scaled, self.tol, self.hint = scaled, tol, hint

    def __call__(self, s: LoopState) -> bool:
        return False


#: How far above the round-off tolerance the scaled gradient may be for :func:`no_step` to take
#: the quasi-Newton model's predicted decrease as evidence of an ill-conditioned optimum.
NEAR = 100.0


def no_step(s: LoopState, newton: Line | None = None) -> Criterion:
    """What the loop reports when no step length is acceptable along the search direction (the
    rule already restarted): :class:`RoundOff` when the point passes the first-order test at
    round-off level, or (``newton``: the failed line of a quasi-Newton rule, whose direction
    approximates Newton's) when the decrease its local quadratic model predicts
    (:meth:`~descend.state.Line.predicted_decrease`, about ``f - f*``) is below
    ``eps^(3/4) |f|`` (1.8e-12 relative in float64), near the loss's round-off: an
    ill-conditioned optimum, where the gradient is not small yet no step can lower the loss
    measurably (only while the scaled gradient is within :data:`NEAR` times the tolerance: far
    from stationarity a poor direction predicts little). Else :class:`StepFailed` with a hint.
    A round-off verdict on a plateau (:func:`plateau`) is :class:`Plateau`, a failure."""
    eps = eps_of(s)
    tol = eps ** (1 / 3)
    scaled = first_order(s, tol)
    if scaled <= tol:
        return plateau(s) or RoundOff(
            _("no step along the search direction lowers the loss beyond round-off, and the "
              "scaled gradient {scaled:.3e} is within round-off ({tol:.3g})").format(
                  scaled=scaled, tol=tol), scaled, tol)
    floor = eps ** 0.75 * abs(s.loss)
    near = scaled <= NEAR * tol  # the model's verdict counts only near a stationary point
    delta = newton.predicted_decrease() if newton is not None and near else math.inf
    if delta <= floor:
        return plateau(s) or RoundOff(
            _("no step along the quasi-Newton direction lowers the loss: the decrease its local "
              "model predicts, {delta:.2e}, is below eps^(3/4) |f| = {floor:.2e}").format(
                  delta=delta, floor=floor), scaled, tol)
    return StepFailed(scaled, tol, hint(s))


class Plateau(Criterion):
    """Reported instead of a success when the gradient vanishes but the point is no minimum
    (:func:`plateau`): the loss is flat around it, or still falls on one side (often far out,
    where an exponential underflowed). A failure."""

    reason = "plateau"

    def __init__(self, move: float = math.nan, what: str = "") -> None:
        self.move, self.what = move, what

    def __call__(self, s: LoopState) -> bool:
        return False


def plateau(s: LoopState) -> Plateau | None:
    """A :class:`Plateau` when :func:`~descend.convergence.not_a_minimum` finds the point is
    no minimum; None at a minimum."""
    what = not_a_minimum(s)
    return None if what is None else Plateau(probe_move(s), what)


class Stationary(Criterion):
    """A default criterion: fires when the scaled gradient (see :func:`first_order`) is at most
    ``gtol`` (default ``sqrt(eps)`` of the parameters' dtype: 1.5e-8 in float64, 3.5e-4 in
    float32). Reason ``converged``, a success."""

    reason = "converged"

    def __init__(self, gtol: float | None = None) -> None:
        self.gtol = None if gtol is None else check_positive("gtol", gtol)
        self.reset()

    def reset(self) -> None:
        self._typx: list[Tensor] | None = None
        self.scaled = math.nan
        self.tol = math.nan

    def __call__(self, s: LoopState) -> bool:
        if self._typx is None:
            self._typx = typical(s.start_values)
            self.tol = self.gtol if self.gtol is not None else math.sqrt(eps_of(s))
        self.scaled = first_order(s, self.tol, self._typx)
        return self.scaled <= self.tol

    def resolve(self, s: LoopState) -> Criterion:
        return plateau(s) or self


class Stalled(Criterion):
    """A default criterion: fires when, for ``window`` iterations in a row, neither the loss nor
    any coordinate of ``x`` moved beyond round-off from where the quiet stretch began
    (``f_r``, ``x_r``)::

        |f_k - f_r| <= 4 eps max(|f_k|, sqrt(eps) |f_0|)
        max_i |x_k,i - x_r,i| / max(|x_k,i|, typ x_i) <= 4 eps

    Only the stretch's first point is kept (one reference; updates never write into it). It
    then reports :class:`RoundOff` (a success) when the point passes the first-order test at
    round-off level (``eps^(1/3)``), else reason ``stalled``, a failure whose message says what
    to try.
    """

    reason = "stalled"

    def __init__(self, window: int = 10) -> None:
        self.window = check_count("window", window)
        self.reset()

    def reset(self) -> None:
        self._ref: tuple[float, list[Tensor]] | None = None
        self._quiet = 0
        self._last = -1
        self._typx: list[Tensor] | None = None
        self.scaled = math.nan
        self.tol = math.nan
        self.hint = ""

    def _still(self, s: LoopState) -> bool:
        """Whether the current point is within round-off of the stretch's first point."""
        assert self._ref is not None
        f_ref, x_ref = self._ref
        eps = eps_of(s)
        if not abs(s.loss - f_ref) <= 4 * eps * max(abs(s.loss), math.sqrt(eps) * abs(s.loss0)):
            return False
        if self._typx is None:
            self._typx = typical(s.start_values)
        return all(x is xr or float(((x - xr).abs() / torch.maximum(x.abs(), t)).max()) <= 4 * eps
                   for x, xr, t in zip(s.values, x_ref, self._typx))

    def __call__(self, s: LoopState) -> bool:
        if s.iteration == self._last:  # a rollback row of the guard is not an iteration
            return False
        self._last = s.iteration
        if self._ref is not None and self._still(s):
            self._quiet += 1
        else:
            self._ref, self._quiet = (s.loss, s.values), 0
        return self._quiet >= self.window

    def resolve(self, s: LoopState) -> Criterion:
        self.tol = eps_of(s) ** (1 / 3)
        self.scaled = first_order(s, self.tol, self._typx)
        if self.scaled <= self.tol:
            return plateau(s) or RoundOff(
                _("the loss and x have not changed beyond round-off in {window} iterations, "
                  "and the scaled gradient {scaled:.3e} is within round-off ({tol:.3g})").format(
                      window=self.window, scaled=self.scaled, tol=self.tol),
                self.scaled, self.tol)
        self.hint = hint(s)
        return self


def default_criteria() -> list[Criterion]:
    """The criteria a deterministic run gets when the caller gives no ``stop``:
    :class:`Stationary` and :class:`Stalled`."""
    return [Stationary(), Stalled()]


class Diverged(Criterion):
    """Always on: fires when the loss rises above the best loss seen by more than ``factor``
    times the scale of the loss seen, ``max(|f_best|, |f_0|, f_0 - f_best)``; any sign of loss.
    """

    reason = "diverged"

    def __init__(self, factor: float = 1e4) -> None:
        self.factor = check_positive("factor", factor)
        if self.factor <= 1:
            raise InputError(f"factor must be > 1, got {factor!r}")
        self.scale = math.nan

    def __call__(self, s: LoopState) -> bool:
        best, f0 = s.best_loss, s.loss0
        if not math.isfinite(best):
            return False
        self.scale = max(abs(best), abs(f0), f0 - best)
        return s.loss - best > self.factor * self.scale


class AnyOf(Criterion):
    """Fires when any member fires (``a | b``); reports the member that fired (a success
    reason first, as in a list of criteria)."""

    def __init__(self, *members: Criterion) -> None:
        self.members = _members("AnyOf", members)
        self._fired: Criterion | None = None

    def reset(self) -> None:
        self._fired = None
        for m in self.members:
            m.reset()

    def __call__(self, s: LoopState) -> bool:
        self._fired = pick([m for m in self.members if m(s)], s)
        return self._fired is not None

    def resolve(self, s: LoopState) -> Criterion:
        return self._fired if self._fired is not None else self

    @property
    def reason(self) -> str:  # type: ignore[override]
        return "any_of" if self._fired is None else self._fired.reason

    def __repr__(self) -> str:
        return " | ".join(repr(m) for m in self.members)


class AllOf(Criterion):
    """Fires when every member fires on the same iteration (``a & b``); a success when every
    member's reason is one. Each member is asked every iteration (their state stays current)."""

    reason = "all_of"

    def __init__(self, *members: Criterion) -> None:
        self.members = _members("AllOf", members)

    def reset(self) -> None:
        for m in self.members:
            m.reset()

    def __call__(self, s: LoopState) -> bool:
        return all([m(s) for m in self.members])  # a list: every member sees every iteration

    def __repr__(self) -> str:
        return " & ".join(repr(m) for m in self.members)


def _members(kind: str, members: Sequence[Any]) -> tuple[Criterion, ...]:
    if len(members) < 2:
        raise InputError(f"{kind} needs at least two criteria, got {len(members)}")
    for m in members:
        if not isinstance(m, Criterion):
            raise InputTypeError(f"{kind} combines stopping criteria from descend.stops, got "
                                 f"{m!r}")
    return tuple(members)


def succeeded(c: Criterion) -> bool:
    """Whether ``c``'s reason counts as a success (for :class:`AllOf`: every member's)."""
    if isinstance(c, AllOf):
        return all(succeeded(m) for m in c.members)
    return REASONS.get(c.reason, (False, ""))[0]


def pick(fired: Sequence[Criterion], s: LoopState) -> Criterion | None:
    """Of the criteria that fired on one iteration, the one to report: a guard
    (:class:`NonFinite`, :class:`Diverged`) when one fired first, else the first whose
    (resolved) reason is a success, else the first."""
    if fired and isinstance(fired[0], (NonFinite, Diverged)):
        return fired[0]
    resolved = [c.resolve(s) for c in fired]
    return next((c for c in resolved if succeeded(c)), resolved[0] if resolved else None)


def as_criteria(stop: Criterion | Iterable[Criterion] | None) -> list[Criterion]:
    """``stop`` (a criterion, a list of them, or None) as a list, each item checked."""
    given: list[Criterion]
    if stop is None:
        given = []
    elif isinstance(stop, Criterion):
        given = [stop]
    else:
        try:
            given = list(stop)
        except TypeError:
            raise InputTypeError(
                f"stop must be a stopping criterion or a list of them, got {stop!r}"
            ) from None
    for c in given:
        if not isinstance(c, Criterion):
            raise InputTypeError(
                f"stop must hold stopping criteria from descend.stops, got {c!r}; "
                "wrap a function with stops.Callback(fn)"
            )
    return given


def criteria_list(
    stop: Criterion | Iterable[Criterion] | None, max_iter: int | None = None
) -> list[Criterion]:
    """The full list a run checks, in order: the guards, the caller's criteria, the cap.

    ``max_iter`` adds a :class:`MaxIter`; when neither it nor ``stop`` bounds the run (a
    ``MaxIter`` or a ``MaxEpochs``), the default cap :data:`DEFAULT_MAX_ITER` is added.
    """
    given = as_criteria(stop)
    guards: list[Criterion] = [NonFinite()]
    if not any(isinstance(c, Diverged) for c in given):
        guards.append(Diverged())
    caps: list[Criterion] = []
    if max_iter is not None:
        caps.append(MaxIter(max_iter))
    elif not any(isinstance(c, (MaxIter, MaxEpochs)) for c in given):
        caps.append(MaxIter(DEFAULT_MAX_ITER))
    out = guards + given + caps
    for c in out:
        c.reset()
    return out


def _epochs(c: Criterion, s: LoopState) -> Any:
    """The epoch record of a ``fit`` run (the mini-batch objective's ``epochs``)."""
    log = getattr(s.objective, "epochs", None)
    if log is None:
        raise InputError(f"{type(c).__name__} counts epochs; it works only in descend.fit")
    return log


class MaxEpochs(Criterion):
    """``fit`` only: fires after ``n`` full passes over the training data, i.e. at iteration
    ``n * batches_per_epoch``."""

    reason = "max_epochs"

    def __init__(self, n: int) -> None:
        self.n = check_count("epochs", n)
        self._limit = 0

    def reset(self) -> None:
        self._limit = 0

    def __call__(self, s: LoopState) -> bool:
        if not self._limit:
            self._limit = self.n * _epochs(self, s).batches_per_epoch
        return s.iteration >= self._limit


class _EpochLossBelow(Criterion):
    """``fit`` only: fires at the end of an epoch whose ``watched`` loss (an attribute of the
    run's epoch record, kept on the criterion under the same name for its message) is
    ``<= threshold``."""

    watched: ClassVar[str] = ""

    def __init__(self, threshold: float) -> None:
        self.threshold = check_positive("threshold", threshold, allow_zero=True)
        self.reset()

    def reset(self) -> None:
        setattr(self, self.watched, math.nan)

    def __call__(self, s: LoopState) -> bool:
        value = getattr(_epochs(self, s), self.watched)
        setattr(self, self.watched, value)
        return bool(value <= self.threshold)


class TrainLossBelow(_EpochLossBelow):
    """``fit`` only: fires at the end of an epoch whose mean training loss (over its batches)
    is ``<= threshold``. (:class:`LossBelow` in ``fit`` watches the latest batch's loss.)"""

    reason = "train_loss_below"
    watched = "train_loss"


class ValLossBelow(_EpochLossBelow):
    """``fit`` only: fires at the end of an epoch whose validation loss is ``<= threshold``."""

    reason = "val_loss_below"
    watched = "val_loss"


class EarlyStopping(Criterion):
    """``fit`` only: fires when the monitored loss (validation loss, or the epoch's training
    loss without validation data) has not dropped below ``best - min_delta`` for ``patience``
    epochs. With ``restore_best`` the model ends with the weights of its best epoch.

    References:
        Prechelt, "Early Stopping - But When?", in Neural Networks: Tricks of the Trade, 1998.
    """

    reason = "early_stopping"

    def __init__(self, patience: int = 10, min_delta: float = 0.0,
                 restore_best: bool = True) -> None:
        self.patience = check_count("patience", patience)
        self.min_delta = check_positive("min_delta", min_delta, allow_zero=True)
        self.restore_best = bool(restore_best)
        self.reset()

    def reset(self) -> None:
        self.best = math.inf
        self.best_epoch = 0
        self.monitor = "loss"
        self._seen = 0

    def __call__(self, s: LoopState) -> bool:
        log = _epochs(self, s)
        epoch = log.count
        if epoch == self._seen:
            return False
        self._seen = epoch
        self.monitor = log.monitor
        value = log.monitored
        if value < self.best - self.min_delta:
            self.best, self.best_epoch = value, epoch
            return False
        return epoch - self.best_epoch >= self.patience

    def resolve(self, s: LoopState) -> Criterion:
        # no finite monitored loss was ever seen (NaN validation losses): not a success
        return self if math.isfinite(self.best) else _NeverFinite(self.monitor, self.patience)


class _NeverFinite(Criterion):
    """Reported instead of ``early_stopping`` when the monitored loss was never finite."""

    reason = "monitor_nonfinite"

    def __init__(self, monitor: str = "loss", patience: int = 0) -> None:
        self.monitor, self.patience = monitor, patience

    def __call__(self, s: LoopState) -> bool:
        return False


#: The criteria that count epochs (``fit`` only): refused up front elsewhere.
EPOCH_CRITERIA: tuple[type[Criterion], ...] = (MaxEpochs, _EpochLossBelow, EarlyStopping)
