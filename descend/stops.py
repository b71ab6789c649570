"""Stopping criteria and the one table of stop reasons and their messages.

A criterion is a small object: ``criterion(state) -> bool`` says whether it fires on the loop's
current state (:class:`~descend.state.LoopState`), ``reason`` names it, and :func:`message`
renders its line of :data:`REASONS`. A list of criteria fires when any one does, the first in
order naming the reason. Two guards are always on, ahead of the user's criteria:
:class:`NonFinite` and :class:`Diverged`; an iteration cap (:class:`MaxIter`, 10,000 unless the
caller gives one) bounds every run.

Divergence is declared when the loss exceeds both the starting loss and ``factor`` (default
``1e4``) times the best loss seen. On the notebook problem with ``lr = 10`` the loss grows by
``(1 - 2*10/9)^2 ~ 1.49`` per step, so the guard fires after 23 steps, long before an overflow;
requiring the loss to exceed the start as well keeps round-off noise near an exact optimum
(best loss ~ 0) from being called divergence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import InputError, InputTypeError, check_count, check_positive

if TYPE_CHECKING:
    from .state import LoopState

__all__ = [
    "DEFAULT_MAX_ITER",
    "EPOCH_CRITERIA",
    "REASONS",
    "Callback",
    "Criterion",
    "Diverged",
    "EarlyStopping",
    "GradNormBelow",
    "LossBelow",
    "MaxEpochs",
    "MaxEvals",
    "MaxIter",
    "NoImprovement",
    "NonFinite",
    "RoundOff",
    "StepFailed",
    "TimeLimit",
    "TrainLossBelow",
    "ValLossBelow",
    "as_criteria",
    "criteria_list",
    "message",
]

#: The cap that bounds every run when the caller gives none.
DEFAULT_MAX_ITER = 10_000

#: reason -> (success, message template). Templates read the criterion's fields and the state's
#: ``iteration``, ``loss``, ``grad_norm``, ``best_loss``, ``nfev`` and ``elapsed``.
REASONS: dict[str, tuple[bool, str]] = {
    "loss_below": (True, "loss {loss:.4e} is at or below the threshold {threshold:g}"),
    "grad_small": (True, "gradient norm {grad_norm:.3e} is at or below the tolerance {tol:g}"),
    "callback": (True, "the callback asked to stop (raised StopIteration)"),
    "no_improvement": (
        False,
        "the loss has not improved by a relative {rtol:g} in {patience} iterations "
        "(best {best_loss:.4e})",
    ),
    "max_iter": (False, "reached the iteration cap of {n} iterations"),
    "max_evals": (False, "reached the cap of {n} function evaluations"),
    "time_limit": (False, "ran past the time limit of {seconds:g} s"),
    "nonfinite": (
        False,
        "the loss or gradient became non-finite (nan or inf) at iteration {iteration}; "
        "x is the last finite iterate; lower the step size",
    ),
    "roundoff": (
        True,
        "converged to working precision at iteration {iteration}: no step along the search "
        "direction lowers the loss {loss:.4e} beyond round-off, and the gradient norm "
        "{grad_norm:.3e} has fallen below sqrt(eps) times its start",
    ),
    "step_failed": (
        False,
        "the line search found no step along the search direction that satisfies its condition "
        "at iteration {iteration} (loss {loss:.4e}, gradient norm {grad_norm:.3e}), even after "
        "restarting the rule; the loss is likely at its round-off floor",
    ),
    "diverged": (
        False,
        "diverged: the loss {loss:.4e} grew past {factor:g} times the best loss "
        "{best_loss:.4e}; lower the step size",
    ),
    # fit only: criteria keyed on the epoch count (iteration // batches per epoch)
    "max_epochs": (True, "completed {n} epochs"),
    "train_loss_below": (
        True, "the epoch's training loss {train_loss:.4e} is at or below the threshold "
        "{threshold:g}",
    ),
    "val_loss_below": (
        True, "validation loss {val_loss:.4e} is at or below the threshold {threshold:g}",
    ),
    "early_stopping": (
        True,
        "the {monitor} has not improved by {min_delta:g} in {patience} epochs; "
        "best {best:.4e} at epoch {best_epoch}",
    ),
}


class Criterion:
    """Base of all criteria: ``reason`` names the line of :data:`REASONS` it fires with."""

    reason: ClassVar[str] = ""

    def reset(self) -> None:
        """Forget any state from an earlier run (called when a run starts)."""

    def __call__(self, s: LoopState) -> bool:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The criterion's fields and state as plain data."""
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave."""
        vars(self).update(state)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def message(c: Criterion, s: LoopState) -> str:
    """The message of ``c``'s reason, filled in from ``c`` and the state ``s``."""
    fields = {
        "iteration": s.iteration, "loss": s.loss, "grad_norm": s.grad_norm,
        "best_loss": s.best_loss, "nfev": s.nfev, "elapsed": s.elapsed,
    }
    fields.update({k: v for k, v in vars(c).items() if not k.startswith("_")})
    return REASONS[c.reason][1].format(**fields)


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


class NonFinite(Criterion):
    """Always on: fires when the loss or the gradient norm is nan or inf."""

    reason = "nonfinite"

    def __call__(self, s: LoopState) -> bool:
        return not (math.isfinite(s.loss) and math.isfinite(s.grad_norm))


class RoundOff(Criterion):
    """Reported by the loop (not polled) when a line search finds no acceptable step and the
    gradient norm is below ``sqrt(eps)`` (of the parameters' dtype) times its starting value:
    the run has converged as far as floating point allows."""

    reason = "roundoff"

    def __call__(self, s: LoopState) -> bool:
        return False


class StepFailed(Criterion):
    """Reported by the loop (not polled) when a line search finds no acceptable step while the
    gradient is still large (see :class:`RoundOff` for the other case): typically a gradient
    that does not match the loss."""

    reason = "step_failed"

    def __call__(self, s: LoopState) -> bool:
        return False


class Diverged(Criterion):
    """Always on: fires when ``loss > factor * best_loss`` and ``loss > loss_0``."""

    reason = "diverged"

    def __init__(self, factor: float = 1e4) -> None:
        self.factor = check_positive("factor", factor)
        if self.factor <= 1:
            raise InputError(f"factor must be > 1, got {factor!r}")

    def __call__(self, s: LoopState) -> bool:
        return s.loss > self.factor * s.best_loss and s.loss > s.loss0


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


#: The criteria that count epochs (``fit`` only): refused up front elsewhere.
EPOCH_CRITERIA: tuple[type[Criterion], ...] = (MaxEpochs, _EpochLossBelow, EarlyStopping)
