"""``minimize(fn, x0, ...)``: tensors, tuples/lists/dicts of tensors or a module in, a
:class:`~descend.result.Result` out."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any, Literal, overload

import torch
from torch import Tensor

from .checkpoint import Checkpoints, check_args, fingerprint
from .errors import InputError, InputTypeError
from .loop import Observer, assemble, run
from .objective import Objective, Params
from .result import Result, outcome, start_diagnosis
from .rules import Rule
from .steps import Constant, Step
from .stops import Criterion

if TYPE_CHECKING:
    from .batched import BatchedResult

__all__ = ["minimize"]


@overload
def minimize(
    fn: Callable[..., Tensor] | None = ...,
    x0: Any = ...,
    *,
    fun: Callable[..., Tensor] | None = ...,
    args: tuple = ...,
    rule: str | Rule | Any | None = ...,
    lr: float | str | Step | Callable[[int], float] | Any | None = ...,
    stop: Criterion | Iterable[Criterion] | None = ...,
    max_iter: int | None = ...,
    callback: Callable[[Any], Any] | None = ...,
    observers: Sequence[Observer] = ...,
    verbose: bool = ...,
    progress: bool = ...,
    record: str | os.PathLike[str] | bool | None = ...,
    on_divergence: str | None = ...,
    checkpoint: str | os.PathLike[str] | None = ...,
    checkpoint_every: int | str | None = ...,
    resume: str | os.PathLike[str] | None = ...,
    compile: bool = ...,
    read_every: int = ...,
    batched: Literal[False] = ...,
) -> Result: ...


@overload
def minimize(
    fn: Callable[..., Tensor] | None = ...,
    x0: Any = ...,
    *,
    fun: Callable[..., Tensor] | None = ...,
    args: tuple = ...,
    rule: str | Rule | Any | None = ...,
    lr: float | str | Step | Callable[[int], float] | Any | None = ...,
    stop: Criterion | Iterable[Criterion] | None = ...,
    max_iter: int | None = ...,
    callback: Callable[[Any], Any] | None = ...,
    observers: Sequence[Observer] = ...,
    verbose: bool = ...,
    progress: bool = ...,
    record: str | os.PathLike[str] | bool | None = ...,
    on_divergence: str | None = ...,
    checkpoint: str | os.PathLike[str] | None = ...,
    checkpoint_every: int | str | None = ...,
    resume: str | os.PathLike[str] | None = ...,
    compile: bool = ...,
    read_every: int = ...,
    batched: Literal[True],
) -> BatchedResult: ...


def minimize(
    fn: Callable[..., Tensor] | None = None,
    x0: Any = None,
    *,
    fun: Callable[..., Tensor] | None = None,
    args: tuple = (),
    rule: str | Rule | Any | None = None,
    lr: float | str | Step | Callable[[int], float] | Any | None = None,
    stop: Criterion | Iterable[Criterion] | None = None,
    max_iter: int | None = None,
    callback: Callable[[Any], Any] | None = None,
    observers: Sequence[Observer] = (),
    verbose: bool = False,
    progress: bool = False,
    record: str | os.PathLike[str] | bool | None = None,
    on_divergence: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int | str | None = None,
    resume: str | os.PathLike[str] | None = None,
    compile: bool = False,
    read_every: int = 1,
    batched: bool = False,
) -> Result | BatchedResult:
    """Minimise ``f(x) = fn(x, *args)`` by gradient descent from ``x0``.

    The loop (:func:`descend.loop.run`) repeats ``x_{k+1} = x_k - lr_k * u_k``, where the rule
    turns the gradient into ``u_k`` (``u = g`` for ``"gd"``), until a stopping criterion fires.

    Defaults, decided in one place for ``minimize`` and ``fit`` (:func:`descend.loop.assemble`):

    * neither ``rule`` nor ``lr`` (or only ``lr="auto"``): the strongest general method for a
      deterministic objective, ``rule="lbfgs"`` with the strong-Wolfe line search
      (``result.rule``/``result.step`` say so);
    * a ``rule`` name without ``lr``: ``lr="auto"`` (see :class:`descend.steps.Auto`);
      ``lbfgs``/``bfgs`` always get the strong-Wolfe search; ``torch.optim`` classes their
      default lr;
    * any other ``lr`` without ``rule``: ``rule="gd"``; ``rule="gd", lr=1.0`` is the notebook
      exactly;
    * ``on_divergence``: ``"backtrack"`` when the step was chosen for you (``lr`` left out or
      ``"auto"``), else ``"stop"``.

    Args:
        fn: the objective; receives the parameters in the structure of ``x0`` (plus ``args``) and
            returns a scalar loss tensor built from them. ``fun=`` is scipy's name for it.
        x0: the start: a floating-point tensor, a tuple/list/dict of them, an ``nn.Module``, or
            a numpy array (as scipy users pass it: ``fn`` then receives a float64 tensor, and
            ``res.x``, ``res.best_x`` and ``res.jac`` come back as numpy arrays). Tensors are
            never mutated (small ones are copied; one of 65,536 elements or more is read
            where it is, and the result never shares its storage); a module is trained in
            place.
        args: extra positional arguments for ``fn``.
        rule: a name from :data:`descend.rules.RULES` (``"gd"``, ``"momentum"``,
            ``"nesterov"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``, ``"adagrad"``, ``"lbfgs"``,
            ``"bfgs"``), a :class:`~descend.rules.Rule` with its hyper-parameters, or a
            ``torch.optim`` optimizer class (or ``functools.partial`` of one).
        lr: the step size: a number, ``"auto"`` or another name from
            :data:`descend.steps.STEPS`, a callable ``k -> lr``, a ``torch.optim.lr_scheduler``
            instance, or a strategy from :mod:`descend.steps`.
        stop: a criterion from :mod:`descend.stops` or a list of them; any one firing stops the
            run. The non-finite and divergence guards are always on.
        max_iter: the iteration cap; default 10,000 unless ``stop`` holds a ``MaxIter``.
        callback: called with the loop state every iteration; raising ``StopIteration`` stops
            the run with reason ``"callback"``.
        observers: read-only callables called with the loop state after every iteration.
        verbose: print the notebook's lines (``'%d-th Loss: %.4e'`` and ``x``) every iteration.
        progress: show a progress display (a bar on a terminal, a line every 5 s otherwise).
        record: write a run record (:mod:`descend.store`) into this records folder, or into
            the default one (``$DESCEND_RUNS`` or ``runs``) for ``True``.
        on_divergence: what the divergence guards do when the loss becomes non-finite or
            diverges: ``"backtrack"`` (return to the best point, halve the step, restart the
            rule; each backtrack is a history row with ``backtrack`` = 1), ``"stop"`` (stop with
            the reason) or ``"raise"`` (raise :class:`descend.loop.DivergenceError`).
        checkpoint: a folder to write checkpoints into (:mod:`descend.checkpoint`): all the
            run needs to continue exactly, written crash-safe.
        checkpoint_every: how often: a number of iterations (``100``) or of seconds
            (``"30s"``, ``"5m"``); default ``"30s"``. A checkpoint is also written when SIGINT
            or SIGTERM stops the run (reason ``"interrupted"``).
        resume: a checkpoint folder to continue from (checkpoints then go on into it unless
            ``checkpoint`` names another); the other arguments must describe the same run.
            The result is bitwise that of the uninterrupted run (same threads and device).
        compile: compile with ``torch.compile`` (opt-in). A small run with ``gd``,
            ``momentum``, ``nesterov``, ``adam`` or ``adamw`` and a constant ``lr`` compiles
            the iterations themselves, 64 per call (:mod:`descend.chunks`); any other compiles
            the loss and gradient. The iterates match the uncompiled run to rounding; the time
            spent compiling is ``result.compile_seconds`` (also inside ``result.seconds``).
            With ``batched=True`` see :mod:`descend.batched_chunks` (32 iterations a call).
        read_every: with a fixed or scheduled ``lr``, keep the loss and gradient norm on the
            device and read them every ``read_every`` iterations in one host synchronisation
            (two per iteration otherwise: worth it on a GPU). The criteria are then asked row
            by row and the run stops exactly where one held, with that iterate: the result and
            history are those of ``read_every=1``. Costs up to ``read_every`` iterates and
            gradients in memory, and up to ``read_every - 1`` evaluations past the stop (not
            counted in ``nfev``); observers see each row at the read. Not with ``checkpoint``
            or ``resume`` (a checkpoint holds whole rows).
        batched: solve many independent problems at once (:mod:`descend.batched`): every
            tensor in ``x0`` and ``args`` has the problem dimension ``K`` first, and ``fn``
            returns one loss per problem, shape ``(K,)`` (over the problems still running).
            Each problem stops alone, with its own reason; the result is a
            :class:`~descend.batched.BatchedResult` (``res[i]`` is problem ``i``'s
            :class:`~descend.result.Result`).

    Returns:
        A :class:`~descend.result.Result`; not converging is a result with a reason, never an
        exception.

    Raises:
        InputError: on misuse, before any work, naming the bad value and the fix.
        DivergenceError: only with ``on_divergence="raise"``.
    """
    fn, x0, numpy_in = _scipy_style(fn, fun, x0)
    if batched:
        from .batched import solve

        return solve(fn, x0, args, rule=rule, lr=lr, stop=stop, max_iter=max_iter,
                     on_divergence=on_divergence, refused={
                         "callback": callback, "observers": observers, "verbose": verbose,
                         "progress": progress, "record": record, "checkpoint": checkpoint,
                         "checkpoint_every": checkpoint_every, "resume": resume,
                         "read_every": None if read_every == 1 else read_every},
                     compile=compile)
    checkpoints = check_args(checkpoint, checkpoint_every, resume)  # before any work
    params = Params(x0)
    objective = Objective(fn, params, args, compile=compile)
    parts = assemble(params, rule=rule, lr=lr, stop=stop, max_iter=max_iter, callback=callback,
                     observers=observers, progress=progress, verbose=verbose,
                     on_divergence=on_divergence, read_every=read_every)
    if checkpoints:
        if parts.read_every > 1:
            raise InputError(f"read_every={read_every} cannot be combined with checkpoint or "
                             "resume (a checkpoint holds rows already read); pass read_every=1")
        parts.checkpoints = Checkpoints(
            parts, fingerprint(parts, params, fn, args),
            folder=checkpoint if checkpoint is not None else resume, every=checkpoint_every,
            resume=resume)
    fixed = parts.step.lr if isinstance(parts.step, Constant) else None
    start = start_diagnosis(fn, params, args, fixed, parts.criteria)  # for explain; lazy
    snaps = None
    if record is not None and record is not False:
        from .observers import Snapshots
        from .store import records_root

        root = records_root(record)  # checked before any work
        parts.observers.append(snaps := Snapshots())

    t0 = perf_counter()
    s, fired = run(objective, parts)
    seconds = perf_counter() - t0

    res = Result(**outcome(s, fired, seconds, parts.step.describe()), diagnose=start,
                 compile_seconds=objective.compile_seconds)
    if numpy_in:
        res = dataclasses.replace(res, x=_numpy(res.x), best_x=_numpy(res.best_x),
                                  jac=_numpy(res.jac))
    if snaps is not None:
        from .result import record_result

        record_result(root, res, snapshots=snaps, config={
            "kind": "minimize", "problem": getattr(fn, "__name__", type(fn).__name__),
            "lr": parts.lr, "stop": [repr(c) for c in parts.criteria], "max_iter": max_iter})
    return res


def _scipy_style(fn: Any, fun: Any, x0: Any) -> tuple[Callable[..., Tensor], Any, bool]:
    """Accept scipy's spellings: ``fun=`` for ``fn``, a numpy ``x0`` (float64 unless it is
    float32; integers become float64). Returns ``(fn, x0, numpy_in)``."""
    if fun is not None:
        if fn is not None:
            raise InputError("give the objective once: as fn (the first argument) or as fun=, "
                             "not both")
        fn = fun
    if fn is None:
        raise InputTypeError("minimize needs the objective: minimize(fn, x0) or "
                             "minimize(fun=fn, x0=x0)")
    if x0 is None:
        raise InputTypeError("minimize needs a start x0: a tensor, a numpy array, a "
                             "tuple/list/dict of tensors or an nn.Module")
    if type(x0).__module__ == "numpy" and hasattr(x0, "dtype"):
        import numpy as np

        a = np.asarray(x0)
        if a.dtype.kind in "biu":
            a = a.astype(np.float64)
        return fn, torch.from_numpy(np.array(a, copy=True)), True
    return fn, x0, False


def _numpy(v: Any) -> Any:
    return v.detach().cpu().numpy() if isinstance(v, Tensor) else v
