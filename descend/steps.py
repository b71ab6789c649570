"""Step sizes: how far to move along the rule's update vector.

A step-size strategy is a small object called once per iteration as ``step(state, u) -> lr``,
with the loop's :class:`~descend.loop.LoopState` (iteration, loss, gradients, values, objective)
and the rule's update vector ``u``; the loop then moves ``x <- x - lr * u``. A strategy that
evaluates the objective at the point it accepts (a line search) leaves that point, its loss and
gradient in ``state.trial`` so the loop does not evaluate it again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import InputError, InputTypeError, check_positive

if TYPE_CHECKING:
    from torch import Tensor

    from .loop import LoopState

__all__ = ["Constant", "Schedule", "Step", "make_step"]


class Step:
    """Base of all step-size strategies."""

    def reset(self) -> None:
        """Forget state from an earlier run (called when a run starts)."""

    def __call__(self, s: LoopState, u: list[Tensor]) -> float:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The strategy's state as plain data."""
        return {k: v for k, v in vars(self).items() if not callable(v)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave."""
        vars(self).update(state)

    def describe(self) -> str:
        """The strategy in a few words, for results and reports."""
        return repr(self)


class Constant(Step):
    """The same step every iteration: ``lr_k = lr``."""

    def __init__(self, lr: float) -> None:
        self.lr = check_positive("lr", lr)

    def __call__(self, s: LoopState, u: list[Tensor]) -> float:
        return self.lr

    def describe(self) -> str:
        return f"lr={self.lr:g}"

    def __repr__(self) -> str:
        return f"Constant(lr={self.lr!r})"


class Schedule(Step):
    """A plain callable schedule: ``lr_k = fn(k)`` for ``k = 0, 1, ...`` (the update count)."""

    def __init__(self, fn: Callable[[int], float]) -> None:
        if not callable(fn):
            raise InputTypeError(f"a schedule must be callable k -> lr, got {fn!r}")
        self.fn = fn

    def __call__(self, s: LoopState, u: list[Tensor]) -> float:
        lr = float(self.fn(s.iteration))
        if not (lr > 0 and math.isfinite(lr)):
            raise InputError(
                f"the schedule gave lr={lr!r} at iteration {s.iteration}; it must return "
                "finite numbers > 0"
            )
        return lr

    def describe(self) -> str:
        return f"schedule {getattr(self.fn, '__name__', type(self.fn).__name__)}"

    def __repr__(self) -> str:
        return f"Schedule({self.fn!r})"


def make_step(lr: float | Step | Callable[[int], float]) -> Step:
    """Resolve ``lr`` (a number, a :class:`Step`, or a callable ``k -> lr``) to a fresh step."""
    if isinstance(lr, Step):
        return lr
    if isinstance(lr, bool):
        raise InputTypeError(f"lr must be a number > 0 or a step-size strategy, got {lr!r}")
    if isinstance(lr, (int, float)):
        return Constant(lr)
    if callable(lr):
        return Schedule(lr)
    raise InputTypeError(
        f"lr must be a number > 0, a callable k -> lr or a step-size strategy, got {lr!r}"
    )
