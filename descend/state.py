"""What the parts of a run may read: the loop's :class:`LoopState` and the :class:`Line` along
which a step size is chosen, plus the list-of-tensor helpers they share.

This module sits below the parts (step sizes, criteria, observers): they import it, never the
loop. Only the loop writes the state and moves ``x``; a step-size strategy evaluates trial points
through the :class:`Line` (which puts ``x`` back after each trial) and returns a length.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import torch
from torch import Tensor

from .history import History
from .objective import Objective
from .rules import Rule

__all__ = ["IN_PLACE_NUMEL", "Block", "Line", "LoopState", "Rows", "Spare", "dot", "finite",
           "grad_norm", "norm", "probe_size", "sub"]

#: From this many parameters on, the update writes the new iterate into spare storage of the
#: run's own (see :class:`Spare`) instead of new tensors. Below it a fresh allocation is as
#: cheap as the bookkeeping, and the out-of-place path is kept.
IN_PLACE_NUMEL = 1 << 16
#: At most this many spare buffers per run (the current, best and last finite points may each
#: hold one); past it the update allocates as before.
MAX_SPARES = 4

#: The number of tensor objects sharing a storage, where torch exposes it (else the out-of-place
#: path is always taken).
_use_count: Any = getattr(torch._C, "_storage_Use_Count", None)


def _holders(t: Tensor) -> tuple[int, int]:
    """Who holds ``t``: its Python references and the tensors sharing its storage."""
    return sys.getrefcount(t), _use_count(t.untyped_storage()._cdata)


def _counts(buf: list[Tensor]) -> list[tuple[int, int]]:
    """:func:`_holders` of every tensor of ``buf`` less those of a tensor one list alone holds,
    measured alongside (so a frame-evaluation hook that keeps a frame's locals alive, as
    ``torch.compile`` installs, counts alike in both): ``(0, 0)`` for a tensor its list alone
    holds."""
    alone = [torch.empty(0)]
    one = _holders(alone[0])
    return [(r - one[0], u - one[1]) for r, u in (_holders(buf[i]) for i in range(len(buf)))]


def _held_alike(b: Any, ref: Any) -> bool:
    """Whether ``b``, the base a gradient is an alias of, has the holders of ``ref``, a base
    known to be held by its view alone, each bound to one name of the caller: then no Python
    name, list or attribute holds ``b`` (a custom ``autograd.Function`` may return a view of a
    tensor it keeps, which the update must not write over) and no other C++ owner does (a
    graph's saved tensor). Only compared, never fixed: how torch keeps a base's Python object
    alive differs between versions, and a frame hook that keeps frames' locals alive (as
    ``torch.compile`` installs) adds to both alike."""
    return sys.getrefcount(b) == sys.getrefcount(ref) and b._use_count() == ref._use_count()


class Spare:
    """Storage for the next iterate, so an update writes into memory the run already owns:
    no allocation (and no page faults on a fresh 400 MB tensor) on the hot path.

    The loop keeps earlier points by reference (the start, the best and the last finite point;
    a criterion such as :class:`~descend.stops.Stalled` or an observer may keep one too), so a
    buffer is reused only when nothing but this pool holds it: no Python reference to its
    tensors and no other tensor (a view, a leaf) on their storage. So the best point is never
    copied: it stays where it was written until the run leaves it behind. The numbers are
    those of the out-of-place update (the same kernels, another destination).
    """

    def __init__(self, values: list[Tensor]) -> None:
        self.like = values
        self.bufs: list[tuple[list[Tensor], list[tuple[int, int]]]] = []

    @staticmethod
    def wanted(values: list[Tensor]) -> bool:
        """Whether a run on ``values`` takes the in-place path."""
        return _use_count is not None and sum(v.numel() for v in values) >= IN_PLACE_NUMEL

    def take(self) -> list[Tensor] | None:
        """A buffer nothing else holds (as a fresh list), or None past :data:`MAX_SPARES`."""
        for buf, free in self.bufs:
            if _counts(buf) == free:
                return list(buf)
        if len(self.bufs) >= MAX_SPARES:
            return None
        buf = [torch.empty_like(v) for v in self.like]
        self.bufs.append((buf, _counts(buf)))
        return list(buf)


@dataclass
class Rows:
    """A chunk's numbers, as :class:`LoopState` would see them taken in turn.

    Attributes:
        iteration, loss, grad_norm, nfev: one entry per row.
        best: the best loss after each row is taken (``loss < best`` with a finite gradient
            norm, as the loop keeps it).
        loss0: the run's starting loss.
    """

    iteration: Sequence[int]
    loss: Sequence[float]
    grad_norm: Sequence[float]
    nfev: Sequence[int]
    best: Sequence[float]
    loss0: float


class Block:
    """Pending rows from one compiled chunk (:mod:`descend.chunks`), kept as the chunk's
    stacked tensors and lists of numbers: a row's tuple (the one :meth:`LoopState.record`
    keeps) is made only for a row read one by one.

    Attributes:
        iteration, nfev: the rows' iteration and evaluation counts (ranges).
        losses, norms: their losses and gradient norms, read already (floats).
        xs, gs: one ``(n, ...)`` stack per parameter of the iterates and gradients.
        lr, times, info: the step, each row's elapsed seconds, the extra columns.
    """

    def __init__(self, it0: int, losses: list[float], norms: list[float], xs: Sequence[Tensor],
                 gs: Sequence[Tensor], nfev0: int, lr: float, times: list[float],
                 info: dict[str, float]) -> None:
        n = len(losses)
        self.iteration, self.nfev = range(it0 + 1, it0 + n + 1), range(nfev0 + 1, nfev0 + n + 1)
        self.losses, self.norms, self.xs, self.gs = losses, norms, xs, gs
        self.lr, self.times, self.info = lr, times, info

    def __len__(self) -> int:
        return len(self.losses)

    def values(self, j: int) -> list[Tensor]:
        return [x[j] for x in self.xs]

    def grads(self, j: int) -> list[Tensor]:
        return [g[j] for g in self.gs]

    def row(self, j: int) -> tuple[Any, ...]:
        """Row ``j`` as :meth:`LoopState.record` keeps one."""
        return (self.iteration[j], self.losses[j], self.norms[j], self.grads(j), self.values(j),
                self.nfev[j], self.lr, self.times[j], dict(self.info))


def dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> float:
    """``sum_i <a_i, b_i>`` over all tensors, as a Python float (real part for complex)."""
    if len(a) == 1:
        return torch.vdot(a[0].reshape(-1), b[0].reshape(-1)).real.item()
    total = torch.stack([torch.vdot(x.reshape(-1), y.reshape(-1)).real for x, y in zip(a, b)])
    return total.sum().item()


def norm(a: Sequence[Tensor]) -> float:
    """Euclidean norm of all tensors together (through :func:`dot`)."""
    return math.sqrt(max(dot(a, a), 0.0))


def grad_norm(grads: Sequence[Tensor]) -> float:
    """Euclidean norm of all gradient tensors together (see :func:`_grad_norm_t`)."""
    return _grad_norm_t(grads).item()


#: From this many elements on, gradients of :data:`_DOT_DTYPES` take their norm through BLAS.
DOT_NORM_NUMEL = 1 << 16
#: Dtypes whose large gradients take their norm as ``sqrt(sum_i <g_i, g_i>)`` through BLAS.
_DOT_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)


def _grad_norm_t(grads: Sequence[Tensor]) -> Tensor:
    """Euclidean norm of all gradient tensors together, as a tensor on the device (no host
    synchronisation): ``sqrt(sum_i <g_i, g_i>)`` through one BLAS dot a tensor for large
    (:data:`DOT_NORM_NUMEL` and up) single and double precision gradients, where it is
    faster than ``vector_norm`` and closer to the exact norm (on ``randn(1e7)`` in float32, 1.0
    against 1.7 ms, relative error 5e-5 against 4e-4, both against the float64 norm; both
    overflow to inf past the dtype's range alike); else one fused ``vector_norm`` kernel."""
    if (grads and grads[0].dtype in _DOT_DTYPES and grads[0].device.type == "cpu"
            and sum(g.numel() for g in grads) >= DOT_NORM_NUMEL):
        flat = [g.reshape(-1) for g in grads]
        sq = [torch.vdot(f, f).real for f in flat]
        return (sq[0] if len(sq) == 1 else torch.stack(sq).sum()).sqrt()
    if len(grads) == 1:
        return torch.linalg.vector_norm(grads[0])
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(grads))))


def sub(a: Sequence[Tensor], b: Sequence[Tensor]) -> list[Tensor]:
    """``a - b`` tensor by tensor."""
    return list(torch._foreach_sub(list(a), list(b)))


def finite(v: float) -> float:
    """nan and -inf become +inf, so a bad trial simply fails every test."""
    return v if math.isfinite(v) else math.inf


def probe_size(values: Sequence[Tensor], u_norm: float) -> float:
    """A finite-difference step: a move of ``sqrt(eps) * max(1, |x|)`` along ``u``, the classic
    choice balancing truncation and round-off (``eps`` of ``x``'s dtype)."""
    eps = torch.finfo(values[0].dtype).eps
    return math.sqrt(eps) * max(1.0, norm(values)) / u_norm


class LoopState:
    """The live state of a run, read by criteria, step sizes and observers; written by the loop
    alone.

    Attributes:
        iteration: updates of ``x`` so far (0 at the start).
        loss: ``f(x)`` at the current point, as a float.
        grad_norm: norm of ``grad f(x)`` at the current point.
        lr: the last step size taken (nan before the first).
        nfev: objective evaluations so far.
        loss0: the starting loss.
        best_loss, best_iter, best_values: the lowest loss seen, where, and the point.
        best_grads: the gradient at ``best_values`` (kept where the divergence guard may
            backtrack to it, :attr:`keep_best_grads`; else empty).
        finite_loss, finite_values: the last point whose loss and gradient were finite.
        elapsed: seconds since the run started, at the last record.
        values: the current point (list of detached tensors, one per parameter).
        start_values: the starting point (kept by reference: updates never write into it).
        start_grads: the gradient there (left empty on the in-place path, where nothing reads
            it unless the rule may restart rescaled: one gradient less held for the whole run).
        grads: the gradient at the current point (a new list at each read, so whoever keeps
            it holds the tensors themselves, which :meth:`spent` sees).
        history: the :class:`History` being recorded.
        info: numbers for the row being recorded (a line search's trial count, the guard's
            backtrack flag), ``{column: value}``; each becomes a column of ``history.extra``.
        backtracks: backtracks of the divergence guard so far.
        spare: the :class:`Spare` storage updates write into (None: out of place).
        keep_best_grads: whether :attr:`best_grads` is kept (the loop sets it where the guard
            backtracks; else the gradient just used is free for the next iterate, see
            :meth:`spent`).
        read_every: rows are read from the device every this many iterations (1: every
            iteration; see :meth:`read`).
        pending: the rows recorded since the last read, kept as tensors (or a compiled
            chunk's :class:`Block`).
        objective, params, rule, step: the parts of the run (read them, never call them).
    """

    __slots__ = (
        "_asked",
        "_grads",
        "backtracks",
        "best_grads",
        "best_iter",
        "best_loss",
        "best_values",
        "elapsed",
        "finite_loss",
        "finite_values",
        "grad_norm",
        "history",
        "info",
        "iteration",
        "keep_best_grads",
        "keep_start",
        "loss",
        "loss0",
        "lr",
        "nfev",
        "objective",
        "params",
        "pending",
        "read_every",
        "rule",
        "spare",
        "start",
        "start_grads",
        "start_values",
        "step",
        "values",
    )

    def __init__(self, objective: Objective, rule: Rule, step: Any = None) -> None:
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
        self.best_grads: list[Tensor] = []
        self.finite_loss = math.nan
        self.finite_values: list[Tensor] = []
        self.elapsed = 0.0
        self.start = perf_counter()
        self.values: list[Tensor] = self.params.values
        self.start_values: list[Tensor] = self.values
        self.start_grads: list[Tensor] = []
        self._grads: list[Tensor] = []
        self.keep_best_grads = True
        self.info: dict[str, float] = {}
        self.backtracks = 0
        self.spare = Spare(self.values) if rule.scalable and Spare.wanted(self.values) else None
        # (the start's gradient: read by the saturation probe of small problems and by a
        # rescaled restart; neither happens to a large parameter with a rule that never rescales)
        self.keep_start = self.spare is None or getattr(rule, "scale", False) is None
        self.read_every = 1
        self.pending: list[tuple[Any, ...]] | Block = []
        self._asked = 0

    @property
    def grads(self) -> list[Tensor]:
        return list(self._grads)

    @grads.setter
    def grads(self, grads: list[Tensor]) -> None:
        self._grads = list(grads)

    def is_gradient(self, u: Sequence[Tensor]) -> bool:
        """Whether the direction ``u`` is the gradient itself (gd's), tensor for tensor: the
        list :attr:`grads` hands out is new at each read, so compare its tensors."""
        g = self._grads
        return len(u) == len(g) and all(a is b for a, b in zip(u, g))

    def spent(self, *dead: list[Tensor]) -> list[Tensor] | None:
        """The current gradient's storage, for the next iterate, when nothing but the loop
        holds it (None otherwise): the update then writes ``x - lr u`` over the gradient it
        has just used, a buffer the run owns whose cache lines it has just read, and keeps
        the current point intact (the best and last finite points stay where they are).

        ``dead`` are the caller's lists that hold gradient tensors and die with the update (the
        direction ``u``, which is the gradient list for gd). Taken only on the in-place path,
        for gradients shaped, typed and laid out like the point, each on a storage of its own
        that no other tensor shares (but the base it aliases whole, as autograd returns a
        matrix product's gradient), and held by no one else: not by the best point
        (:attr:`keep_best_grads`), the start, a pending row, a step size, a criterion or an
        observer (each keeps its own list, so the tensors' counts show it). Never for a
        compiled objective (its outputs may be buffers the compiled code reuses)."""
        g, vs = self._grads, self.values
        if self.spare is None or not g or self.objective.compile or len(g) != len(vs):
            return None
        lists = [g, *(d for d in dead if d is not g)]
        ref_view = torch.empty(1).view(1)  # (its base's Python object is gone: the view holds it)
        ref = ref_view._base
        slots: list[int] = []  # (per tensor: the lists beyond g that hold it)
        aliases: list[int] = []  # (and the other tensors on its storage: its base, if a view)
        for i in range(len(g)):
            t, v = g[i], vs[i]
            if (t.shape != v.shape or t.dtype != v.dtype or t.device != v.device
                    or t.layout != torch.strided or t.requires_grad or not t.is_contiguous()
                    or t.storage_offset() != 0
                    or t.untyped_storage().nbytes() != t.numel() * t.element_size()):
                return None
            b = t._base  # (autograd may return a gradient as an alias of a whole tensor)
            if b is not None and (b.numel() != t.numel() or not b.is_contiguous()
                                  or b.storage_offset() != 0 or b._base is not None
                                  or not _held_alike(b, ref)):
                return None
            aliases.append(0 if b is None else 1)
            slots.append(sum(1 for lst in lists[1:] if any(x is t for x in lst)))
        del t, v, b, ref, ref_view  # (a name bound to a tensor holds it)
        if _counts(g) != [(h, a) for h, a in zip(slots, aliases)]:
            return None
        return list(g)

    @property
    def x(self) -> Any:
        """The current point in the structure of ``x0`` (live leaves; for a module, the module)."""
        return self.params.structure

    def record(self, loss_t: Tensor, grads: list[Tensor], defer: bool = False) -> bool:
        """Take ``loss_t`` and ``grads`` at the current point as this iteration's row (the loop's
        ``# record`` phase). With ``defer`` and :attr:`read_every` > 1 the row is kept as
        tensors (no host synchronisation) until the next :meth:`read`; returns whether it was
        taken now."""
        if defer and self.read_every > 1:
            self.grads, self.values = grads, self.params.values
            assert isinstance(self.pending, list)  # (a Block only from compiled chunks)
            self.pending.append((self.iteration, loss_t.detach().reshape(()),
                                 _grad_norm_t(grads), list(grads), self.values, self.objective.nfev,
                                 self.lr, perf_counter() - self.start, self.info))
            self.info = {}
            return False
        self._take(self.iteration, loss_t.item(), grad_norm(grads), grads, self.params.values,
                   self.objective.nfev, self.lr, perf_counter() - self.start)
        return True

    def _take(self, iteration: int, loss: float, gn: float, grads: list[Tensor],
              values: list[Tensor], nfev: int, lr: float, elapsed: float) -> None:
        self.iteration, self.loss, self.grad_norm, self.lr = iteration, loss, gn, lr
        self.grads = grads
        if not self.start_grads and self.keep_start:
            self.start_grads = list(grads)
        self.nfev = nfev
        self.elapsed = elapsed
        self.values = values
        if loss < self.best_loss and math.isfinite(gn):
            self.best_loss, self.best_iter, self.best_values = loss, self.iteration, values
            self.best_grads = list(grads) if self.keep_best_grads else []
        if math.isfinite(loss) and math.isfinite(gn):
            self.finite_loss, self.finite_values = loss, values
        self.history.append(self.iteration, loss, gn, self.lr, self.elapsed, self.nfev,
                            **self.info)
        if self.info:
            self.info = {}

    def _take_many(self, rows: list[tuple[Any, ...]] | Block, q: int, losses: list[float],
                   norms: list[float]) -> None:
        """:meth:`_take` of each of the first ``q`` rows in turn (rows no criterion fires on),
        with the history written as one chunk."""
        block = rows if isinstance(rows, Block) else None
        best = finite = -1
        for j in range(q):
            f, gn = losses[j], norms[j]
            if f < self.best_loss and math.isfinite(gn):
                self.best_loss, best = f, j
            if math.isfinite(f) and math.isfinite(gn):
                finite = j
        last = q - 1
        points: dict[int, tuple[list[Tensor], list[Tensor]]] = {}  # (one list per row)
        for j in {best, finite, last, 0} - {-1}:
            r = block.row(j) if block is not None else rows[j]  # type: ignore[index]
            points[j] = r[4], r[3]
        if block is not None:
            its, nfevs, lrs, times = (list(block.iteration[:q]), list(block.nfev[:q]),
                                      [block.lr] * q, block.times[:q])
            infos: Any = [block.info] * q
        else:
            assert not isinstance(rows, Block)
            head = rows[:q]
            its, nfevs = [r[0] for r in head], [r[5] for r in head]
            lrs, times, infos = [r[6] for r in head], [r[7] for r in head], [r[8] for r in head]
        if best >= 0:
            self.best_iter, self.best_values = its[best], points[best][0]
            self.best_grads = list(points[best][1]) if self.keep_best_grads else []
        if finite >= 0:
            self.finite_loss, self.finite_values = losses[finite], points[finite][0]
        if not self.start_grads and self.keep_start:
            self.start_grads = list(points[0][1])
        self.iteration, self.loss, self.grad_norm, self.lr = (its[last], losses[last],
                                                              norms[last], lrs[last])
        self.values, self.grads = points[last]
        self.nfev, self.elapsed = nfevs[last], times[last]
        self.params.set(self.values)
        columns: dict[str, Any] = {"iteration": its, "loss": losses[:q], "grad_norm": norms[:q],
                                   "lr": lrs, "time": times, "nfev": nfevs}
        for name in {k for i in infos for k in i}:
            columns[name] = [i.get(name, math.nan) for i in infos]
        self.history.extend(columns)
        self.info = {}

    def _rows(self, rows: list[tuple[Any, ...]] | Block, losses: list[float],
              norms: list[float]) -> Rows:
        """The numbers of pending ``rows`` as the criteria would see them taken in turn."""
        best, b = [], self.best_loss
        for f, gn in zip(losses, norms):
            if f < b and math.isfinite(gn):
                b = f
            best.append(b)
        if isinstance(rows, Block):
            return Rows(rows.iteration, losses, norms, rows.nfev, best, self.loss0)
        return Rows([r[0] for r in rows], losses, norms, [r[5] for r in rows], best,
                    self.loss0)

    def read(self, observers: Sequence[Any] = (), cap: int | None = None,
             quiet: Callable[[Rows], int] | None = None) -> Iterator[None]:
        """The rows to ask the stopping criteria about, one at a time (the loop's ``# stop?``).

        First the row taken last, if it was not asked about yet (every row when reading every
        iteration; the start and the guard's rollback rows otherwise). Then, once
        :attr:`read_every` rows are pending (or the iteration reaches ``cap``), their losses and
        gradient norms are read in one host synchronisation and the rows are taken in order,
        each made the current state (``x`` included) and shown to the ``observers`` before it
        is yielded; without observers, the leading rows ``quiet`` counts (those no criterion
        can fire on: :func:`descend.screen.quiet`) are taken at once, without being yielded.
        A caller that stops at a row leaves the state there: the later rows are dropped and
        the evaluation count set back, so the run ends
        exactly as reading every iteration would (the rule's state alone has moved on).
        """
        if self._asked < len(self.history):
            self._asked = len(self.history)
            yield
        if not self.pending or (len(self.pending) < self.read_every
                                and (cap is None or self.iteration < cap)):
            return
        rows: list[tuple[Any, ...]] | Block
        rows, self.pending = self.pending, []
        if isinstance(rows, Block):  # read already (compiled chunks)
            losses, norms = rows.losses, rows.norms
        else:
            losses = torch.stack([r[1].to(torch.float64) for r in rows]).tolist()
            norms = torch.stack([r[2].to(torch.float64) for r in rows]).tolist()
        taken, live = 0, self.objective.nfev
        if quiet is not None and not observers:
            taken = quiet(self._rows(rows, losses, norms))
            if taken:
                self._take_many(rows, taken, losses, norms)
                self._asked = len(self.history)
        try:
            for j in range(taken, len(rows)):
                it, _, _, grads, values, nfev, lr, elapsed, info = (
                    rows.row(j) if isinstance(rows, Block) else rows[j])
                f, gn = losses[j], norms[j]
                self.info = info
                self.params.set(values)
                self._take(it, f, gn, grads, values, nfev, lr, elapsed)
                taken += 1
                self._asked = len(self.history)
                for obs in observers:
                    obs(self)
                yield
        finally:
            if taken < len(rows):  # stopped on a row: the later ones never happened
                dropped = live - self.nfev  # (evaluations the criteria made since are kept)
                self.objective.nfev -= dropped
                self.objective.ngev -= dropped

    def loss_at(self, values: list[Tensor]) -> float:
        """The loss at ``values`` (no gradient; counted in ``nfev``), on this iteration's batch;
        the current point is put back. For checks that probe around the final point."""
        self.params.set(values)
        try:
            with torch.no_grad():
                self.objective.nfev += 1
                return float(self.objective.fn(self.params.structure, *self.objective.args))
        finally:
            self.params.set(self.values)

    def __repr__(self) -> str:
        return (
            f"LoopState(iteration={self.iteration}, loss={self.loss:.4e}, "
            f"grad_norm={self.grad_norm:.3e}, lr={self.lr:g}, nfev={self.nfev})"
        )


#: A trial point along the line: its values, the loss tensor and the gradient there.
Trial = tuple[list[Tensor], Tensor, list[Tensor]]


class Line:
    """The ray ``x(alpha) = x - alpha u`` from the current point, on this iteration's batch.

    ``line(alpha)`` returns ``(phi(alpha), phi'(alpha))`` with ``phi(alpha) = f(x - alpha u)``
    and ``phi'(alpha) = -grad f(x - alpha u) . u``, evaluated through the objective (counted in
    ``nfev``) on the same batch as the gradient at ``x``; the current point is put back after
    each trial. Non-finite values come back as ``+inf``. The loop then calls :meth:`accept` with
    the chosen ``alpha``: a trial already evaluated there is not evaluated again.

    Attributes:
        u: the update vector (``x`` moves along ``-u``).
        evals: trials evaluated (the curvature probe of :meth:`slope` not counted).
        trials: ``{alpha: (values, loss, grads)}`` of the evaluated trials.
    """

    def __init__(self, s: LoopState, u: list[Tensor]) -> None:
        self.s, self.u = s, u
        self.trials: dict[float, Trial] = {}
        self.evals = 0

    @functools.cached_property
    def f0(self) -> float:
        """``phi(0)``: the loss at the current point."""
        return self.s.loss

    @functools.cached_property
    def d0(self) -> float:
        """``phi'(0) = -g . u``: negative when ``-u`` is a descent direction."""
        return -dot(self.s.grads, self.u)

    @functools.cached_property
    def alpha_min(self) -> float:
        """Below this step the move is lost in round-off: ``x - alpha u == x``."""
        u_max = max(v.abs().max().item() for v in self.u)
        x_max = max(max(v.abs().max().item() for v in self.s.values), 1.0)
        eps = torch.finfo(self.s.values[0].dtype).eps
        return eps * x_max / u_max if u_max > 0 else math.inf

    def _evaluate(self, alpha: float) -> Trial:
        s = self.s
        new = s.rule.apply(s.values, self.u, alpha)
        s.params.set(new)
        try:
            loss_t, grads = s.objective()
        finally:
            s.params.set(s.values)
        return new, loss_t, grads

    def __call__(self, alpha: float) -> tuple[float, float]:
        trial = self.trials[alpha] = self._evaluate(alpha)
        self.evals += 1
        f = finite(trial[1].item())
        d = -dot(trial[2], self.u) if f < math.inf else math.inf
        return f, finite(d)

    def slope(self, h: float) -> float:
        """``phi'(h)`` at a probe step ``h`` (one evaluation, not kept as a trial)."""
        _, _, grads = self._evaluate(h)
        return -dot(grads, self.u)

    def predicted_decrease(self) -> float:
        """The decrease of the local quadratic model along the line, ``phi'(0)^2 / (2 phi'')``,
        with ``phi''`` the mean curvature over the longest finite trial; ``inf`` when the
        curvature is not positive or no trial was evaluated."""
        finite_trials = [(a, t) for a, t in self.trials.items()
                         if a > 0 and math.isfinite(t[1].item())]
        if not finite_trials:
            return math.inf
        a, (_, _, grads) = max(finite_trials, key=lambda at: at[0])
        curv = (-dot(grads, self.u) - self.d0) / a
        return self.d0 * self.d0 / (2 * curv) if curv > 0 and math.isfinite(curv) else math.inf

    def accept(self, alpha: float, *dead: list[Tensor]
               ) -> tuple[list[Tensor], tuple[Tensor, list[Tensor]] | None]:
        """The new point ``x - alpha u`` and, when it was a trial, its loss and gradient. A new
        point is written over the gradient when nothing else holds it (:meth:`LoopState.spent`;
        ``dead``: the caller's lists that die with the update, besides ``u``), else into the
        run's spare storage when it has one."""
        trial = self.trials.get(alpha)
        if trial is None:
            s = self.s
            out = s.spent(self.u, *dead)
            if out is None and s.spare is not None:
                out = s.spare.take()
            return s.rule.apply(s.values, self.u, alpha, out), None
        return trial[0], (trial[1], trial[2])

    def __repr__(self) -> str:
        return f"Line(evals={self.evals}, trials={sorted(self.trials)})"
