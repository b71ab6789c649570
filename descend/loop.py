"""The one loop, and the one place a run is assembled.

:func:`assemble` turns a front end's arguments (``rule``, ``lr``, ``stop``, ``max_iter``,
``callback``, ``observers``, ``progress``, ``on_divergence``) into the :class:`Parts` a run needs,
with the policy written once: names resolved, quasi-Newton rules paired with the strong-Wolfe
line search and refused on mini-batches, every check up front, the divergence guard's default.
``minimize`` and ``fit`` both call it, then :func:`run`; there is no second loop.

:func:`run` reads like the notebook, one labelled phase a line::

    evaluate   loss and gradient at x, on this iteration's batch   (objective)
    stop?      ask the stopping criteria                            (stops)  -> reason, or go on
    direction  update vector u from the gradient and rule state     (rules)  u = g for gd
    step size  alpha = step(state, u, line): a length, nothing else (steps)
    restart?   no acceptable alpha: restart the rule once, retry    (loop)
    update     x <- x - alpha u; line.accept(alpha)                 (loop: the only place x moves)
    record     one row of history; observers see it                 (history, observers)

At the top of each pass, before ``stop?``, the run's state is settled: there a checkpoint is
written when due and a signal (SIGINT, SIGTERM) stops the run with reason ``interrupted``; a
resumed run starts there from its checkpoint instead of evaluating the start
(:mod:`descend.checkpoint`, :attr:`Parts.checkpoints`).

When a divergence guard fires (:class:`~descend.stops.NonFinite`, :class:`~descend.stops.Diverged`)
the loop does what ``on_divergence`` says:

* ``"stop"``: stop with the guard's reason (x is the last finite iterate);
* ``"raise"``: raise :class:`DivergenceError` naming the iteration and the loss;
* ``"backtrack"``: return to the best point seen, shrink the step by :data:`BACKTRACK_SHRINK`
  (:meth:`~descend.steps.Step.shrink`), restart the rule's state, and go on. The backtrack is
  recorded as one row (the best point again; column ``backtrack`` = 1; a rollback, not an
  iteration). After
  :data:`MAX_BACKTRACKS` backtracks the guard stops the run with its reason.

Two fast paths leave the numbers unchanged. On large parameters the update writes into storage
the run owns rather than new tensors: the gradient it has just read, when nothing else holds it
(:meth:`LoopState.spent <descend.state.LoopState.spent>`), else spare buffers
(:class:`~descend.state.Spare`). With
``read_every=k`` (a fixed or scheduled step) the rows stay tensors on the device and are read
every ``k`` iterations in one host synchronisation; ``stop?`` then asks the criteria row by row
(:meth:`LoopState.read <descend.state.LoopState.read>`) and the run stops on the row where one
held, with that row's ``x``. With ``compile=True`` a run that qualifies takes its iterations
``CHUNK`` at a time from one compiled call (:mod:`descend.chunks`) and reads them the same way.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from . import screen
from .checkpoint import interrupted_by, signals
from .chunks import make as make_chunks
from .errors import InputError, check_count
from .i18n import N_
from .objective import Objective, Params
from .observers import Printer, Progress
from .rules import Rule, TorchOptimizer, make_rule
from .state import Line, LoopState
from .steps import Constant, Schedule, Step, make_step
from .stops import (
    EPOCH_CRITERIA,
    Callback,
    Criterion,
    Diverged,
    EarlyStopping,
    Interrupted,
    MaxEpochs,
    MaxIter,
    NonFinite,
    ValLossBelow,
    as_criteria,
    criteria_list,
    default_criteria,
    message,
    no_step,
    pick,
)

__all__ = [
    "BACKTRACK_SHRINK",
    "DEFAULT_EPOCHS",
    "GUARD_ACTIONS",
    "MAX_BACKTRACKS",
    "DivergenceError",
    "LoopState",
    "Parts",
    "assemble",
    "run",
]

Observer = Callable[[LoopState], Any]

#: What a run may do when a divergence guard fires.
GUARD_ACTIONS = ("backtrack", "stop", "raise")
#: The factor a backtrack multiplies the step size by.
BACKTRACK_SHRINK = 0.5
#: Backtracks allowed per run before the guard stops it.
MAX_BACKTRACKS = 16
#: The epoch cap of a ``fit`` run that gives no other bound.
DEFAULT_EPOCHS = 100


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


@dataclass
class Parts:
    """What :func:`run` needs, as :func:`assemble` resolved it.

    Attributes:
        rule: the update rule.
        step: the step-size strategy.
        criteria: every criterion the loop asks, in order (guards, the caller's, the caps).
        observers: read-only callables called after every recorded row.
        on_divergence: one of :data:`GUARD_ACTIONS`.
        lr: the ``lr`` as resolved (a number, a name or the object given), for records.
        chosen: whether the method was chosen for the caller (no ``lr``, or ``"auto"``).
        checkpoints: the checkpoint hook (:class:`descend.checkpoint.Checkpoints`): writes
            checkpoints, restores a resumed run; None for neither.
        read_every: read the rows from the device every this many iterations (used with a
            fixed or scheduled step; 1 with any other).
    """

    rule: Rule
    step: Step
    criteria: list[Criterion]
    observers: list[Observer] = field(default_factory=list)
    on_divergence: str = "stop"
    lr: Any = None
    chosen: bool = False
    checkpoints: Any = None
    read_every: int = 1

    @property
    def max_iter(self) -> int | None:
        """The smallest iteration cap among the criteria (None when only epochs bound it)."""
        return min((c.n for c in self.criteria if isinstance(c, MaxIter)), default=None)

    @property
    def max_epochs(self) -> int | None:
        """The smallest epoch cap among the criteria (``fit`` only)."""
        return min((c.n for c in self.criteria if isinstance(c, MaxEpochs)), default=None)


def _rule_name(rule: Rule) -> str:
    return str(getattr(rule, "label", rule.name))


def assemble(
    params: Params,
    *,
    rule: Any = None,
    lr: Any = None,
    stop: Criterion | Iterable[Criterion] | None = None,
    max_iter: int | None = None,
    callback: Callable[[Any], Any] | None = None,
    observers: Sequence[Observer] = (),
    progress: bool | Callable[[int | None], Observer] = False,
    verbose: bool = False,
    on_divergence: str | None = None,
    counts_epochs: bool = False,
    minibatch: str | None = None,
    epochs: int | None = None,
    patience: int | None = None,
    validation: bool = False,
    read_every: int = 1,
) -> Parts:
    """Resolve a front end's arguments into the parts of a run: the one policy.

    * Neither ``rule`` nor ``lr`` (or only ``lr="auto"``): ``rule="lbfgs"`` with the
      strong-Wolfe search on a deterministic objective, ``"adam"`` on mini-batches. A ``rule``
      without ``lr``: ``lr="auto"`` on a deterministic objective, else the rule's default lr.
      Any other ``lr`` without ``rule``: ``"gd"``.
    * Quasi-Newton rules (``lbfgs``, ``bfgs``) always get the strong-Wolfe search, and are
      refused on mini-batches smaller than the data (``minibatch`` describes them). Their
      rescaled restart (``scale=None``) is off for an ``nn.Module``, whose weights are random
      draws rather than sizes.
    * ``on_divergence``: ``"backtrack"`` when the step was chosen for the caller, else
      ``"stop"``.
    * Criteria: the guards, the caller's ``stop`` (or, without one, on a deterministic
      objective, :func:`~descend.stops.default_criteria`: stationary or stalled), ``fit``'s
      epoch criteria (``patience``, ``epochs``), the callback, then a cap: ``max_iter``, else
      10,000 iterations (or :data:`DEFAULT_EPOCHS` epochs in ``fit``) unless ``stop`` already
      bounds the run.
    * ``progress`` may be a factory ``total -> observer`` (``fit``'s epoch display); ``verbose``
      adds the notebook's printer.

    Args:
        params: the parameters (a ``torch.optim`` class as the rule is bound to their leaves).
        counts_epochs: True for ``fit``: epoch criteria are allowed and the default bound is
            :data:`DEFAULT_EPOCHS` epochs.
        minibatch: ``None`` for a deterministic objective; for mini-batches smaller than the
            data, a few words on how they split it (used in the quasi-Newton refusal).
        epochs, patience, validation: ``fit``'s epoch cap, early-stopping patience, and whether
            validation data exist (``ValLossBelow`` needs them).
        read_every: see :attr:`Parts.read_every`.

    Raises:
        InputError: on any bad argument, before any work.
    """
    chosen = lr is None or (isinstance(lr, str) and lr == "auto")
    the_rule, step, lr = _method(params, rule, lr, chosen, minibatch)
    if on_divergence is None:
        on_divergence = "backtrack" if chosen else "stop"
    if on_divergence not in GUARD_ACTIONS:
        raise InputError(
            f"on_divergence must be one of {', '.join(GUARD_ACTIONS)}, got {on_divergence!r}"
        )
    given = _criteria(stop, minibatch, counts_epochs, epochs, patience, validation, max_iter)
    if callback is not None:
        given.append(Callback(callback))
    parts = Parts(the_rule, step, criteria_list(given, max_iter), list(observers),
                  on_divergence, lr, chosen, read_every=check_count("read_every", read_every))
    if verbose:
        parts.observers.append(Printer())
    if progress:
        if callable(progress):
            parts.observers.append(progress(parts.max_epochs if counts_epochs
                                            else parts.max_iter))
        else:
            parts.observers.append(Progress(total=parts.max_iter))
    return parts


def _method(params: Params, rule: Any, lr: Any, chosen: bool,
            minibatch: str | None) -> tuple[Any, Step, Any]:
    """The rule and the step size, by the policy of :func:`assemble`; returns the resolved
    ``lr`` too."""
    if rule is None:  # no rule: the default method, unless a step is given (then gd)
        rule = ("adam" if minibatch else "lbfgs") if chosen else "gd"
    the_rule: Any = make_rule(rule)
    if params.kind == "module" and getattr(the_rule, "scale", False) is None:
        the_rule.scale = False  # a module's weights are random draws, not sizes: never rescale
    if minibatch and getattr(the_rule, "newton_scaled", False):
        raise InputError(
            f"rule {_rule_name(the_rule)!r} needs the full batch (its curvature pairs and line "
            f"search compare gradients on the same data), but {minibatch}; pass "
            "batch_size=None (--batch-size full) for the full batch, or use a first-order rule "
            "such as adam"
        )
    if isinstance(the_rule, TorchOptimizer):
        the_rule.leaves = params.leaves
    if lr is None:
        lr = "auto" if the_rule.scalable and not minibatch else type(the_rule).default_lr
    return the_rule, make_step(lr, the_rule), lr


def _criteria(stop: Any, minibatch: str | None, counts_epochs: bool, epochs: int | None,
              patience: int | None, validation: bool, max_iter: int | None) -> list[Criterion]:
    """The caller's criteria (or the defaults) with ``fit``'s epoch criteria, checked."""
    given = as_criteria(stop) if stop is not None else (
        [] if minibatch else default_criteria())
    if not counts_epochs:
        for c in given:
            if isinstance(c, EPOCH_CRITERIA):
                raise InputError(f"{type(c).__name__} counts epochs; it works only in "
                                 "descend.fit")
    if any(isinstance(c, ValLossBelow) for c in given) and not validation:
        raise InputError("ValLossBelow needs validation data: pass val=0.2 or a validation set")
    if patience is not None:
        given.append(EarlyStopping(check_count("patience", patience)))
    if epochs is not None:
        given.append(MaxEpochs(check_count("epochs", epochs)))
    bounded = max_iter is not None or any(isinstance(c, (MaxIter, MaxEpochs)) for c in given)
    if counts_epochs and not bounded:
        given.append(MaxEpochs(DEFAULT_EPOCHS))
    return given


def run(objective: Objective, parts: Parts) -> tuple[LoopState, Criterion]:
    """Run the loop until a criterion fires; return the final state and that criterion.

    After a non-finite loss or gradient the parameters are set back to the last finite point.
    See the module docstring for the guards' ``on_divergence``.

    Raises:
        DivergenceError: with ``on_divergence="raise"``, when a guard fires.
    """
    ck = parts.checkpoints
    try:
        with signals(sigterm=ck is not None and ck.folder is not None):
            s, fired = _run(objective, parts)
        _warn_low_precision(s, fired)
        return s, fired
    finally:
        for obs in parts.observers:
            close = getattr(obs, "close", None)
            if close is not None:
                close()


def _warn_low_precision(s: LoopState, fired: Criterion) -> None:
    """Warn (once per place, Python's default) when a run in less than float64 stops because
    nothing moves it while its point is not stationary: the problem is more ill-conditioned
    than the dtype resolves."""
    dtype = s.values[0].dtype
    if fired.reason in ("step_failed", "stalled") and torch.finfo(dtype).eps > 1e-10:
        warnings.warn(
            f"descend: the run in {str(dtype).replace('torch.', '')} stopped at iteration "
            f"{s.iteration} ({fired.reason}) where the point is not stationary: the problem is "
            "likely more ill-conditioned than this precision resolves; try float64 "
            "(x0.double(), model.double())", RuntimeWarning, stacklevel=4)


def _backtrack(s: LoopState, parts: Parts) -> None:
    """The guard's recovery: back to the best point, a smaller step, a fresh rule state; the
    best point is recorded again as one row with ``backtrack = 1`` (a rollback, not an
    iteration: the row keeps the iteration count)."""
    s.backtracks += 1
    s.params.set(s.best_values)
    parts.step.shrink(BACKTRACK_SHRINK)
    parts.rule.init(s.best_values)
    s.lr = math.nan
    s.info["backtrack"] = 1
    s.record(torch.tensor(s.best_loss, dtype=torch.float64), s.best_grads)


#: The failures after which a rule with ``scale=None`` restarts once under its scaling.
RESCALE_ON = ("step_failed", "stalled", "plateau")


def _rescale(s: LoopState, fired: Criterion, parts: Parts) -> bool:
    """``# rescale?``: when the run would end in one of :data:`RESCALE_ON` and the rule can work
    in scaled coordinates (``scale=None``: not yet), turn its scaling on and start it again from
    the start, whose magnitudes are the sizes it scales by (the best point may be a saturation
    the scaled rule cannot leave either); recorded as one row with ``rescaled = 1`` (not an
    iteration). The run keeps its best point. True to go on."""
    rule: Any = parts.rule
    if fired.reason not in RESCALE_ON or getattr(rule, "scale", False) is not None:
        return False
    rule.scale = True
    s.params.set(s.start_values)
    rule.init(s.start_values)
    parts.step.restarted()
    s.lr = math.nan
    s.info["rescaled"] = 1
    s.record(torch.tensor(s.loss0, dtype=torch.float64), s.start_grads)
    return True


def _guard(s: LoopState, fired: Criterion, parts: Parts) -> bool:
    """What ``on_divergence`` says when ``fired`` is a guard: True to go on (after a
    backtrack), False to stop; raises for ``"raise"``."""
    if not isinstance(fired, (NonFinite, Diverged)) or parts.on_divergence == "stop":
        return False
    if parts.on_divergence == "raise":
        raise DivergenceError(fired.reason, s.iteration, s.loss, message(fired, s))
    if s.backtracks < MAX_BACKTRACKS and s.best_values:
        _backtrack(s, parts)
        return True
    return False


def _interrupted(ck: Any) -> Interrupted:
    import signal

    num = interrupted_by()
    name = signal.Signals(num).name if num is not None else N_("a signal")
    return Interrupted(name, ck.message_hint() if ck is not None else
                       N_("pass checkpoint=PATH to keep the state of an interrupted run"))


def _ask(criteria: list[Criterion], s: LoopState) -> Criterion | None:
    """The criterion that fires on the current row, if any (see :func:`~descend.stops.pick`)."""
    for i, c in enumerate(criteria):
        if c(s):
            return pick([c, *(d for d in criteria[i + 1:] if d(s))], s)
    return None


def _run(objective: Objective, parts: Parts) -> tuple[LoopState, Criterion]:
    params, rule, step, criteria = objective.params, parts.rule, parts.step, parts.criteria
    s = LoopState(objective, rule, step)
    fixed = isinstance(step, (Constant, Schedule))  # steps that read no loss between reads
    if fixed:
        s.read_every = parts.read_every
    backtrack = parts.on_divergence == "backtrack"
    s.keep_best_grads = backtrack  # (read by a backtrack alone)
    searches = step.searches
    ck = parts.checkpoints
    chunks = make_chunks(objective, rule, step, ck)  # compile=True: iterations compiled too
    fuse = fixed and getattr(rule, "fused", False) is True
    quiet = functools.partial(screen.quiet, criteria)  # the rows no criterion fires on
    if chunks is not None:
        s.read_every = chunks.size
    grads: list[torch.Tensor] = []  # (the last evaluation's gradient)
    if ck is None or not ck.restore(s):  # resume: the state as checkpointed, else the start
        rule.init(params.values)
        step.reset()
        if backtrack:
            s.info["backtrack"] = 0
        # evaluate (the start): this iteration's batch, then loss and gradient at x
        objective.draw()
        loss_t, grads = objective()
        s.record(loss_t, grads)
        s.loss0 = s.loss
        for obs in parts.observers:
            obs(s)
    while True:
        # checkpoint? (when due)  interrupted? (a signal asked to stop: after a checkpoint)
        if s.pending and interrupted_by() is not None:
            s.read_every = 1  # rows read in chunks: read them now, stop at the next top
        elif ck.at_top(s) if ck is not None else interrupted_by() is not None:
            return s, _interrupted(ck)
        # stop?  (several at once: a success reason wins over a cap; rows read in chunks are
        #        asked one by one, and the run stops on the row where a criterion held)
        fired = None
        for _ in s.read(parts.observers, parts.max_iter, quiet):
            fired = _ask(criteria, s)
            if fired is not None:
                break
        if fired is not None:
            if _guard(s, fired, parts) or _rescale(s, fired, parts):
                for obs in parts.observers:
                    obs(s)
                continue
            if s.values is not s.finite_values and s.finite_values:
                params.set(s.finite_values)  # never end on a non-finite point
            return s, fired
        # (compiled chunks: the next rows, from direction to record, in one call)
        if chunks is not None:
            if chunks.advance(s, {"backtrack": 0} if backtrack else {}):
                continue
            chunks, s.read_every = None, parts.read_every if fixed else 1
        # (a fused rule: direction, step size and update in one kernel; a fixed or scheduled
        # step reads neither u nor the line)
        new: list[torch.Tensor] | None = None
        alpha: float | None = None
        if fuse:
            alpha = step(s, s.grads, None)  # type: ignore[arg-type]
            new = rule.fused_step(  # type: ignore[attr-defined]
                s.values, s.grads, alpha, s.spare.take() if s.spare is not None else None)
        if new is not None:
            known = None
        else:
            # direction
            u = rule.direction(s.values, s.grads)
            # step size
            line = Line(s, u)
            alpha = step(s, u, line)
            # restart?  (a restarted rule's u is a scaled gradient; for gd it is the same line)
            first = line
            if alpha is None and not s.is_gradient(u):
                rule.init(s.values)
                step.restarted()
                u = rule.direction(s.values, s.grads)
                line = Line(s, u)
                alpha = step(s, u, line)
            if alpha is None:  # nothing moves x: converged to round-off, or a failure, a hint
                newton = first if getattr(rule, "newton_scaled", False) else None
                verdict = no_step(s, newton)
                if _rescale(s, verdict, parts):
                    for obs in parts.observers:
                        obs(s)
                    continue
                return s, verdict
            # update
            new, known = line.accept(alpha, grads)
        assert alpha is not None  # (None returned above)
        s.lr = alpha
        params.set(new)
        s.iteration += 1
        # evaluate (a trial on the same batch is reused)
        if objective.draw() or known is None:
            loss_t, grads = objective()
        else:
            loss_t, grads = known
        # record
        if searches:
            s.info["ls_evals"] = line.evals
        if backtrack:
            s.info["backtrack"] = 0
        if s.record(loss_t, grads, defer=True):  # else kept, as tensors, for the next read
            for obs in parts.observers:
                obs(s)
