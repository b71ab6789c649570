"""The one run loop. ``minimize`` and ``fit`` both call :func:`run`; there is no second loop.

It reads like the notebook, one labelled phase a line::

    evaluate  loss and gradient at x              (objective)
    stop?     ask the stopping criteria           (stops)   -> reason, or go on
    direction update vector u from the gradient   (rules)   u = g for gd
    step      step size along -u                  (steps)
    update    x <- x - lr * u                     (rules)
    record    one row of history; observers see it (history, observers)

When a divergence guard fires (:class:`~descend.stops.NonFinite`, :class:`~descend.stops.Diverged`)
the loop does what ``on_divergence`` says:

* ``"stop"``: stop with the guard's reason (x is the last finite iterate);
* ``"raise"``: raise :class:`DivergenceError` naming the iteration and the loss;
* ``"backtrack"``: return to the best point seen, shrink the step by :data:`BACKTRACK_SHRINK`
  (:meth:`~descend.steps.Step.shrink`), restart the rule's state, and go on. The backtrack is
  recorded as one row (the best point again; column ``backtrack`` = 1). After
  :data:`MAX_BACKTRACKS` backtracks the guard stops the run with its reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any

import torch
from torch import Tensor

from .errors import InputError
from .history import History
from .objective import Objective
from .rules import Rule
from .steps import Step
from .stops import REASONS, Criterion, Diverged, NonFinite, RoundOff, StepFailed, message

__all__ = [
    "BACKTRACK_SHRINK",
    "GUARD_ACTIONS",
    "MAX_BACKTRACKS",
    "DivergenceError",
    "LoopState",
    "grad_norm",
    "outcome",
    "run",
]

Observer = Callable[["LoopState"], Any]

#: What a run may do when a divergence guard fires.
GUARD_ACTIONS = ("backtrack", "stop", "raise")
#: The factor a backtrack multiplies the step size by.
BACKTRACK_SHRINK = 0.5
#: Backtracks allowed per run before the guard stops it.
MAX_BACKTRACKS = 16


class DivergenceError(ArithmeticError):
    """Raised with ``on_divergence="raise"`` when the loss diverges or becomes non-finite.

    Attributes:
        iteration: the iteration at which the guard fired.
        loss: the loss there.
        reason: ``"diverged"`` or ``"nonfinite"``.
    """

    def __init__(self, reason: str, iteration: int, loss: float, detail: str) -> None:
        super().__init__(f"{reason} at iteration {iteration} (loss {loss:.4e}): {detail}")
        self.reason, self.iteration, self.loss = reason, iteration, loss


def grad_norm(grads: Sequence[Tensor]) -> float:
    """Euclidean norm of all gradient tensors together."""
    if len(grads) == 1:
        return torch.linalg.vector_norm(grads[0]).item()
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(grads)))).item()


class LoopState:
    """The live state of a run, read by criteria, step sizes and observers (never written by
    observers).

    Attributes:
        iteration: updates of ``x`` so far (0 at the start).
        loss: ``f(x)`` at the current point, as a float.
        grad_norm: norm of ``grad f(x)`` at the current point.
        lr: the last step size taken (nan before the first).
        nfev: objective evaluations so far.
        loss0: the starting loss.
        best_loss, best_iter, best_values: the lowest loss seen, where, and the point.
        elapsed: seconds since the run started, at the last record.
        values: the current point (list of detached tensors, one per parameter).
        grads: the gradient at the current point.
        history: the :class:`History` being recorded.
        trial: set by a step-size strategy that already evaluated the point it accepts, as
            ``(values, loss_tensor, grads)``; the loop takes it instead of evaluating again.
        info: numbers a step-size strategy (or the guard) reports for the row being recorded,
            ``{column: value}``; each becomes a column of ``history.extra`` (nan where absent).
        backtracks: backtracks of the divergence guard so far.
        best_grads: the gradient at ``best_values``.
    """

    __slots__ = (
        "backtracks",
        "best_grads",
        "best_iter",
        "best_loss",
        "best_values",
        "elapsed",
        "finite_loss",
        "finite_values",
        "grad_norm",
        "grads",
        "history",
        "info",
        "iteration",
        "loss",
        "loss0",
        "lr",
        "nfev",
        "objective",
        "params",
        "rule",
        "start",
        "step",
        "trial",
        "values",
    )

    def __init__(self, objective: Objective, rule: Rule, step: Step) -> None:
        self.objective = objective
        self.params = objective.params
        self.rule = rule
        self.step = step
        self.history = History()
        self.iteration = 0
        self.loss = math.nan
        self.grad_norm = math.nan
        self.lr = math.nan
        self.nfev = 0
        self.loss0 = math.nan
        self.best_loss = math.inf
        self.best_iter = 0
        self.best_values: list[Tensor] = []
        self.finite_loss = math.nan
        self.finite_values: list[Tensor] = []
        self.elapsed = 0.0
        self.start = perf_counter()
        self.values: list[Tensor] = self.params.values
        self.grads: list[Tensor] = []
        self.trial: tuple[list[Tensor], Tensor, list[Tensor]] | None = None
        self.info: dict[str, float] = {}
        self.backtracks = 0
        self.best_grads: list[Tensor] = []

    @property
    def x(self) -> Any:
        """The current point in the structure of ``x0`` (live leaves; for a module, the module)."""
        return self.params.structure

    def _record(self, loss_t: Tensor, grads: list[Tensor]) -> None:
        self.loss = loss = loss_t.item()
        self.grads = grads
        self.grad_norm = gn = grad_norm(grads)
        self.nfev = self.objective.nfev
        self.elapsed = perf_counter() - self.start
        self.values = values = self.params.values
        if loss < self.best_loss and math.isfinite(gn):
            self.best_loss, self.best_iter, self.best_values = loss, self.iteration, values
            self.best_grads = grads
        if math.isfinite(loss) and math.isfinite(gn):
            self.finite_loss, self.finite_values = loss, values
        h = self.history
        h.append(self.iteration, loss, gn, self.lr, self.elapsed, self.nfev)
        if self.info or h.extra:
            rows = len(h)
            for name, v in self.info.items():
                h.extra.setdefault(name, [math.nan] * (rows - 1)).append(v)
            for col in h.extra.values():
                if len(col) < rows:
                    col.append(math.nan)
            self.info = {}

    def __repr__(self) -> str:
        return (
            f"LoopState(iteration={self.iteration}, loss={self.loss:.4e}, "
            f"grad_norm={self.grad_norm:.3e}, lr={self.lr:g}, nfev={self.nfev})"
        )


def run(
    objective: Objective,
    rule: Rule,
    step: Step,
    criteria: Sequence[Criterion],
    observers: Sequence[Observer] = (),
    *,
    on_divergence: str = "stop",
) -> tuple[LoopState, Criterion]:
    """Run the loop until a criterion fires; return the final state and that criterion.

    After a non-finite loss or gradient the parameters are set back to the last finite point.
    ``on_divergence`` (one of :data:`GUARD_ACTIONS`) says what the divergence guards do; see the
    module docstring.

    Raises:
        DivergenceError: with ``on_divergence="raise"``, when a guard fires.
    """
    if on_divergence not in GUARD_ACTIONS:
        raise InputError(
            f"on_divergence must be one of {', '.join(GUARD_ACTIONS)}, got {on_divergence!r}"
        )
    try:
        return _run(objective, rule, step, criteria, observers, on_divergence)
    finally:
        for obs in observers:
            close = getattr(obs, "close", None)
            if close is not None:
                close()


def outcome(s: LoopState, fired: Criterion, seconds: float) -> dict[str, Any]:
    """The fields of a :class:`~descend.history.Result` that every front end fills alike, from
    the final state and the criterion that fired."""
    params = s.params
    return {
        "x": params.structure if params.kind == "module" else params.build(params.values),
        "loss": s.finite_loss if s.finite_values else s.loss,
        "best_x": params.build(s.best_values or params.values),
        "best_loss": s.best_loss,
        "nit": s.iteration,
        "nfev": s.objective.nfev,
        "reason": fired.reason,
        "message": message(fired, s),
        "success": REASONS[fired.reason][0],
        "history": s.history,
        "seconds": seconds,
        "rule": getattr(s.rule, "label", s.rule.name),
        "step": s.step.describe(),
    }


def _backtrack(s: LoopState) -> None:
    """The guard's recovery: back to the best point, a smaller step, a fresh rule state; the
    best point is recorded again as one row with ``backtrack = 1``."""
    s.backtracks += 1
    s.params.set(s.best_values)
    s.step.shrink(BACKTRACK_SHRINK)
    s.rule.init(s.best_values)
    s.iteration += 1
    s.lr = math.nan
    s.info["backtrack"] = 1
    s._record(torch.tensor(s.best_loss, dtype=torch.float64), s.best_grads)


def _run(
    objective: Objective,
    rule: Rule,
    step: Step,
    criteria: Sequence[Criterion],
    observers: Sequence[Observer],
    on_divergence: str,
) -> tuple[LoopState, Criterion]:
    params = objective.params
    s = LoopState(objective, rule, step)
    rule.init(params.values)
    step.reset()
    backtrack = on_divergence == "backtrack"
    if backtrack:
        s.info["backtrack"] = 0
    # evaluate (the start)
    loss_t, grads = objective()
    s._record(loss_t, grads)
    s.loss0 = s.loss
    for obs in observers:
        obs(s)
    while True:
        # stop?
        for fired in criteria:
            if fired(s):
                break
        else:
            fired = None
        if fired is not None:
            if isinstance(fired, (NonFinite, Diverged)) and on_divergence != "stop":
                if on_divergence == "raise":
                    raise DivergenceError(fired.reason, s.iteration, s.loss, message(fired, s))
                if s.backtracks < MAX_BACKTRACKS and s.best_values:
                    _backtrack(s)
                    for obs in observers:
                        obs(s)
                    continue
            if s.values is not s.finite_values and s.finite_values:
                params.set(s.finite_values)  # never end on a non-finite point
            return s, fired
        # direction
        u = rule.direction(s.values, s.grads)
        # step size
        s.lr = lr = step(s, u)
        if step.failed:  # the line search found no acceptable step
            params.set(s.values)
            eps = torch.finfo(s.values[0].dtype).eps
            converged = s.grad_norm <= math.sqrt(eps) * s.history.grad_norm[0]
            return s, RoundOff() if converged else StepFailed()
        if s.trial is not None:  # the step-size strategy evaluated the accepted point already
            new, loss_t, grads = s.trial
            s.trial = None
            params.set(new)
        else:
            # update
            params.set(rule.apply(s.values, u, lr))
            # evaluate
            loss_t, grads = objective()
        s.iteration += 1
        # record
        if backtrack:
            s.info["backtrack"] = 0
        s._record(loss_t, grads)
        for obs in observers:
            obs(s)
