"""The parts of the batched loop (:mod:`descend.batched`): many problems packed as one tensor, the
per-problem stopping tests, batched L-BFGS, and the probes behind an honest success.

Every tensor here has a leading *working* dimension ``w``: the problems still in the loop's
working set, a subset of the ``K`` given (see :mod:`descend.batched`). Each test mirrors its
single-problem original in :mod:`descend.stops` and :mod:`descend.convergence` formula for
formula, one value per problem, so a problem solved in a batch stops where it stops alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from time import perf_counter
from typing import Any

import torch
from torch import Tensor

from .errors import InputError, InputTypeError
from .stops import Diverged, GradNormBelow, LossBelow, MaxIter, NonFinite, Stalled, Stationary

__all__ = ["Batch", "BatchedLBFGS", "Tests", "first_order", "not_a_minimum"]

_run_backward: Callable[..., tuple[Tensor, ...]] | None
try:  # what torch.autograd.grad calls, less its argument handling (tens of us a call)
    from torch.autograd.graph import _engine_run_backward as _run_backward
except ImportError:  # pragma: no cover (an older or newer torch: torch.autograd.grad)
    _run_backward = None


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


class Batch:
    """``K`` problems packed as one ``(K, n)`` matrix, and ``fn``'s view of a working set.

    ``x0`` is a tensor, or a tuple/list/dict of tensors, each with the problem dimension ``K``
    first; ``args`` hold tensors with the same leading ``K`` (indexed with the working set) and
    anything else (passed as is).
    """

    def __init__(self, fn: Callable[..., Tensor], x0: Any, args: tuple) -> None:
        if isinstance(x0, Tensor):
            self.kind, self.keys, items = "tensor", ["x0"], [x0]
        elif isinstance(x0, Mapping):
            self.kind, self.keys, items = "dict", list(x0), list(x0.values())
        elif isinstance(x0, (tuple, list)) and x0:
            self.kind = "tuple" if isinstance(x0, tuple) else "list"
            self.keys, items = [f"x0[{i}]" for i in range(len(x0))], list(x0)
        else:
            raise InputTypeError(
                "with batched=True, x0 must be a tensor or a tuple/list/dict of tensors whose "
                f"first dimension counts the problems, got {type(x0).__name__}")
        for name, t in zip(self.keys, items):
            if not isinstance(t, Tensor) or not t.is_floating_point() or t.dim() < 1:
                what = (f"dtype {t.dtype}, shape {_shape(t.shape)}" if isinstance(t, Tensor)
                        else type(t).__name__)
                raise InputTypeError(
                    f"with batched=True, {name} must be a real floating-point tensor with the "
                    f"problem dimension K first, got {what}")
        self.K = K = items[0].shape[0]
        dtypes = {t.dtype for t in items}
        if len(dtypes) > 1:
            raise InputError(f"with batched=True, the tensors of x0 must share one dtype, got "
                             f"{sorted(str(d) for d in dtypes)}; convert them with .to(dtype)")
        for name, t in zip(self.keys, items):
            if t.shape[0] != K:
                raise InputError(
                    f"with batched=True, every tensor in x0 and args has the problem dimension "
                    f"K first: {self.keys[0]} has K = {K}, but {name} has shape "
                    f"{_shape(t.shape)}; stack the problems along dimension 0")
        self.tensor_args = []
        for i, a in enumerate(args):
            if isinstance(a, Tensor):
                if a.dim() < 1 or a.shape[0] != K:
                    raise InputError(
                        f"with batched=True, every tensor in x0 and args has the problem "
                        f"dimension K first: x0 has K = {K}, but args[{i}] has shape "
                        f"{_shape(a.shape)}; stack its values per problem along dimension 0 "
                        f"(a value shared by all problems: .expand({K}, ...))")
                self.tensor_args.append(i)
        if K < 1:
            raise InputError("with batched=True, x0 holds no problem (K = 0)")
        self.fn, self.args = fn, tuple(args)
        self.shapes = [tuple(t.shape[1:]) for t in items]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.n = sum(self.sizes)
        self.bounds = [(sum(self.sizes[:j]), sum(self.sizes[:j + 1]))
                       for j in range(len(self.sizes))]
        self.X0 = torch.cat([t.detach().reshape(K, -1) for t in items], 1).clone()
        self.dtype = self.X0.dtype
        self.eps = float(torch.finfo(self.dtype).eps)
        self.checked = False
        self._ones_t: Tensor | None = None
        self.compile_seconds = 0.0
        self._compiling = False

    def compile_alone(self) -> None:
        """Evaluate ``fn`` through ``torch.compile`` from here on (forward and backward by
        AOTAutograd, the working dimension dynamic); the next evaluation's wall time, which
        compiles, is kept in :attr:`compile_seconds`."""
        self.fn = torch.compile(self.fn, dynamic=True)
        self._compiling = True

    def build(self, X: Tensor) -> Any:
        """The structure of ``x0`` over the rows of ``X`` (views, no copies)."""
        w = X.shape[0]
        parts = [X[:, a:b].reshape(w, *shape) if self.n != b - a else X.view(w, *shape)
                 for (a, b), shape in zip(self.bounds, self.shapes)]
        if self.kind == "tensor":
            return parts[0]
        if self.kind == "dict":
            return dict(zip(self.keys, parts))
        return tuple(parts) if self.kind == "tuple" else parts

    def take_args(self, args: tuple, index: Tensor) -> tuple:
        """``args`` for the problems at ``index`` of the working set they hold."""
        if not self.tensor_args:
            return args
        out = list(args)
        for i in self.tensor_args:
            out[i] = args[i].index_select(0, index)
        return tuple(out)

    def losses(self, X: Tensor, args: tuple) -> Tensor:
        """``fn`` at the rows of ``X`` (no gradient)."""
        with torch.no_grad():
            return self._check(self.fn(self.build(X), *args), X.shape[0])

    def evaluate(self, X: Tensor, args: tuple) -> tuple[Tensor, Tensor]:
        """The losses ``(w,)`` and gradients ``(w, n)`` at the rows of ``X``: the gradient of
        the sum of the losses, which is each problem's own gradient (the problems are
        independent).

        A small batch's iteration is mostly fixed cost, so the backward pass goes straight to
        the autograd engine with what ``loss.sum()``'s backward would pass down (a one,
        expanded to ``(w,)``), the same numbers as ``torch.autograd.grad(loss.sum(), X)``
        without its argument handling; and an ``x0`` that is one tensor is differentiated as
        ``fn`` sees it (a view of ``X``), so the backward pass has no reshape to undo.
        """
        if not torch.is_grad_enabled():
            with torch.enable_grad():
                return self.evaluate(X, args)
        if self._compiling:
            self._compiling = False
            t0 = perf_counter()
            got = self.evaluate(X, args)
            self.compile_seconds += perf_counter() - t0
            return got
        w = X.shape[0]
        one = self.kind == "tensor"
        Xg = (X.view(w, *self.shapes[0]) if one else X.detach()).requires_grad_(True)
        loss = self.fn(Xg if one else self.build(Xg), *args)
        if not self.checked:
            self._check(loss, w)
        if not loss.requires_grad:
            raise InputError("fn's losses do not depend on x: build them from the tensors fn "
                             "receives")
        ones = self._ones_t
        if (ones is None or ones.shape != loss.shape or ones.dtype != loss.dtype
                or ones.device != loss.device):
            ones = self._ones(loss)
        if _run_backward is not None and type(loss) is Tensor:
            (G,) = _run_backward((loss,), (ones,), False, False, (Xg,), False,
                                 accumulate_grad=False)
        else:  # a torch without the engine call, or a tensor subclass
            (G,) = torch.autograd.grad(loss.sum(), Xg)
        return loss.detach(), G.view(w, self.n) if one else G

    def _ones(self, loss: Tensor) -> Tensor:
        """``loss.sum()``'s backward of a one: a 0-dim one expanded to ``loss``'s shape (kept
        for the next call)."""
        self._ones_t = torch.ones((), dtype=loss.dtype, device=loss.device).expand_as(loss)
        return self._ones_t

    def _check(self, loss: Any, w: int) -> Tensor:
        if self.checked:
            return loss
        if not isinstance(loss, Tensor):
            raise InputTypeError(f"fn must return a tensor of {w} losses, got "
                                 f"{type(loss).__name__}")
        if tuple(loss.shape) != (w,):
            raise InputError(
                f"with batched=True, fn must return one loss per problem, shape ({w},), got "
                f"shape {_shape(loss.shape)}; reduce over every dimension but the first, "
                "e.g. ((x - t) ** 2).mean(dim=(1, 2)) rather than F.mse_loss(x, t)")
        if not loss.is_floating_point():
            raise InputTypeError(f"fn must return floating-point losses, got {loss.dtype}")
        self.checked = True
        return loss

    def typical(self, X0: Tensor) -> Tensor:
        """``typ x_i`` per problem (:func:`descend.convergence.typical`), tensor by tensor."""
        out = []
        for a, b in self.bounds:
            v = X0[:, a:b].abs()
            rms = torch.linalg.vector_norm(v, dim=1, keepdim=True) / math.sqrt(max(b - a, 1))
            rms = torch.where(rms > 0, rms, torch.ones_like(rms))
            out.append(torch.where(v > 0, v, rms.expand_as(v)))
        return torch.cat(out, 1)

    def rms(self, X: Tensor) -> Tensor:
        """Each tensor's RMS per problem, spread over its coordinates."""
        return torch.cat([(torch.linalg.vector_norm(X[:, a:b], dim=1, keepdim=True)
                           / math.sqrt(max(b - a, 1))).expand(-1, b - a)
                          for a, b in self.bounds], 1)


def _round_up(t: float, dtype: torch.dtype) -> float:
    """The smallest value of ``dtype`` at or above ``t``."""
    v = torch.tensor(t, dtype=dtype)
    if float(v) < t:
        v = torch.nextafter(v, torch.tensor(math.inf, dtype=dtype))
    return float(v)


def first_order(loss: Tensor, loss0: Tensor, X: Tensor, G: Tensor, typx: Tensor,
                c: float) -> Tensor:
    """The scaled gradient of :func:`descend.convergence.first_order`, one per problem (in
    float64, whatever the dtype of the losses)."""
    num = (G.abs() * torch.maximum(X.abs(), typx)).sum(1).double()
    den = torch.maximum(loss.double().abs(), c * loss0.double().abs())
    out = torch.where(den > 0, num / den, torch.full_like(den, math.inf))
    out = torch.where(num == 0, torch.zeros_like(out), out)
    return torch.where(torch.isfinite(num) & torch.isfinite(den), out,
                       torch.full_like(out, math.inf))


class Tests:
    """The run's stopping criteria as per-problem tests.

    ``fires(...)`` gives a ``(c, w)`` boolean matrix, one row per criterion in the run's order;
    :attr:`success` says which rows succeed without a further check, :attr:`resolves` which
    need one (``Stationary``, ``Stalled``: :mod:`descend.batched` resolves them).
    """

    SUPPORTED = (NonFinite, Diverged, LossBelow, GradNormBelow, MaxIter, Stationary, Stalled)

    def __init__(self, criteria: Sequence[Any], batch: Batch) -> None:
        for c in criteria:
            if type(c) not in self.SUPPORTED:
                names = ", ".join(t.__name__ for t in self.SUPPORTED)
                raise InputError(
                    f"with batched=True, stop may hold only {names}; got {c!r}: combine "
                    "criteria as a list, or solve such problems one by one with batched=False")
        self.criteria = list(criteria)
        self.batch = batch
        eps = batch.eps
        self.stationary_tol = [(c.gtol if c.gtol is not None else math.sqrt(eps))
                               if isinstance(c, Stationary) else math.nan for c in criteria]
        self.guards = [isinstance(c, (NonFinite, Diverged)) for c in criteria]
        self.success = [isinstance(c, (LossBelow, GradNormBelow)) for c in criteria]
        self.resolves = [isinstance(c, (Stationary, Stalled)) for c in criteria]
        self.stalled = [c for c in criteria if isinstance(c, Stalled)]
        # what the screen reads
        self.loss_below = [c.threshold for c in criteria if isinstance(c, LossBelow)]
        self.grad_below = [c.tol for c in criteria if isinstance(c, GradNormBelow)]
        self.diverges = any(isinstance(c, Diverged) for c in criteria)
        self.max_iter = min([c.n for c in criteria if isinstance(c, MaxIter)], default=math.inf)
        self.resolving = [j for j, r in enumerate(self.resolves) if r]
        self.kept: dict[int, Tensor] = {}
        self._const_key: tuple[int, torch.dtype] | None = None
        self._const_alive: Tensor | None = None
        self._const: tuple[Tensor, Tensor] = (torch.zeros(0), torch.zeros(0))
        self._base = self._ninf = torch.zeros(0)
        self.ref_loss: Tensor | None = None
        self.ref_X: Tensor | None = None
        self.quiet: Tensor | None = None
        self.scaled: dict[int, Tensor] = {}

    def take(self, keep: Tensor) -> None:
        """Keep the state of the problems at ``keep`` (compaction)."""
        if self.ref_loss is not None and self.ref_X is not None and self.quiet is not None:
            self.ref_loss, self.ref_X = self.ref_loss[keep], self.ref_X[keep]
            self.quiet = self.quiet[keep]

    def screen(self, st: Any, alive: Tensor | None) -> tuple[bool, bool, bool]:
        """Whether anything can have happened at the working state ``st``, in one host read:
        ``(finite_all, improved_all, maybe)``, where ``finite_all`` says every loss and
        gradient norm is finite, ``improved_all`` that every running problem's loss is below
        its best so far (so none diverged), and ``maybe`` that a criterion may fire on a
        running problem (:meth:`fires` then says which, exactly). ``alive`` marks the running
        rows when finished ones are still in the working set (None: all run).

        Every quiet running problem has, in the losses' dtype,

            f - f_best < 0,   lo - f < 0,   f - f_max / 2 < 0,   |g| - f_max / 2 < 0,
            [g_tol - |g| < 0]

        with ``f_max`` the dtype's largest finite value (so ``f + |g|`` is finite),
        ``lo`` the largest ``LossBelow`` threshold rounded up to the dtype (``-f_max`` without
        one), ``g_tol`` likewise for ``GradNormBelow``: so the screen takes one ``addcmul``
        of the stacked rows with their constants (``-inf`` at finished problems) and the
        largest value per row. It is conservative, never wrong: a nan or a huge value in a
        row, or a tie at a rounded-up threshold, only sends the iteration to the exact
        float64 tests of :meth:`fires`. ``Stationary`` and ``Stalled`` are evaluated here,
        every iteration (``Stalled`` counts quiet iterations), and kept for :meth:`fires`.
        """
        loss, gn = st.loss, st.gnorm
        rows = [loss - st.best_loss, loss, loss, gn]
        if self.grad_below:
            rows.append(gn)
        A = torch.stack(rows)
        if A.dtype not in (torch.float32, torch.float64):
            A = A.double()
        C, S = self._constants(A, alive)
        top = torch.addcmul(C, A, S).amax(1)
        self.scaled, self.kept = {}, {}
        if self.resolving:
            anys = []
            for j in self.resolving:
                c = self.criteria[j]
                if isinstance(c, Stationary):
                    scaled = first_order(st.loss, st.loss0, st.X, st.G, st.typx,
                                         self.stationary_tol[j])
                    self.scaled[j] = scaled
                    row = scaled <= self.stationary_tol[j]
                else:
                    row = self._stalled(c, st)
                self.kept[j] = row
                anys.append((row if alive is None else row & alive).any())
            got = torch.cat([top, torch.stack(anys).to(top.dtype)]).tolist()
        else:
            got = top.tolist()
        # (nan fails every test)
        small = got[2] < 0 and got[3] < 0  # f and |g| below f_max / 2: no inf, no overflow
        improved_all = got[0] < 0 and got[3] < 0
        maybe = ((not improved_all and self.diverges) or not small
                 or any(not v < 0 for v in got[1:len(rows)]) or any(got[len(rows):])
                 or st.iteration >= self.max_iter)
        # lo - f < 0: no loss is -inf (else a threshold or -inf: look)
        finite_all = small and (got[1] < 0 or math.isfinite(loss.amin().item()))
        return finite_all, improved_all, maybe

    def _constants(self, A: Tensor, alive: Tensor | None) -> tuple[Tensor, Tensor]:
        """The screen's constants for stacked rows ``A`` and the running rows ``alive``
        (see :meth:`screen`), kept until either changes."""
        key = (A.shape[1], A.dtype)  # (one device a run)
        if self._const_alive is alive and self._const_key == key:
            return self._const
        dt, dev = A.dtype, A.device
        if self._const_key is None or self._const_key[1] != dt:
            fmax = torch.finfo(dt).max
            lo = max([_round_up(t, dt) for t in self.loss_below if t == t] + [-fmax])
            cols = [0.0, lo, -fmax / 2, -fmax / 2] + (
                [max(_round_up(t, dt) for t in self.grad_below)] if self.grad_below else [])
            signs = [1.0, -1.0, 1.0, 1.0] + ([-1.0] if self.grad_below else [])
            self._base = torch.tensor(cols, dtype=dt, device=dev)[:, None]
            self._ninf = torch.tensor(-math.inf, dtype=dt, device=dev)
            self._const = (self._base, torch.tensor(signs, dtype=dt, device=dev)[:, None])
        # (laid out in full, as the where gives it: an addcmul that broadcasts an expanded C
        # took 196 us at a width of 1e5, against 42)
        C = (self._base.expand(-1, key[0]).contiguous() if alive is None
             else torch.where(alive, self._base, self._ninf))
        self._const_key, self._const_alive, self._const = key, alive, (C, self._const[1])
        return self._const

    def fires(self, st: Any, improved_all: bool, finite_all: bool,
              alive: Tensor | None) -> tuple[list[Tensor | None], Tensor | None]:
        """Which criteria fire on which running problem of the working state ``st``, after
        :meth:`screen`: one row per criterion (None: fires on no running problem) and their
        union over the running problems (None: no criterion fired). ``improved_all``: every
        running problem's loss is its best so far, so none diverged; ``finite_all``: every
        loss and gradient norm is finite; ``alive``: as for :meth:`screen`. The tests run in
        float64, formula for formula as :mod:`descend.stops`; one host read for all (none when
        one criterion can fire: the union may then be empty)."""
        rows: list[Tensor | None] = []
        w = st.loss.shape[0]
        f64: dict[str, Tensor] = {}

        def loss() -> Tensor:
            if "loss" not in f64:
                f64["loss"] = st.loss.double()
            return f64["loss"]

        def gnorm() -> Tensor:
            if "gnorm" not in f64:
                f64["gnorm"] = st.gnorm.double()
            return f64["gnorm"]

        for j, c in enumerate(self.criteria):
            row: Tensor | None
            if isinstance(c, NonFinite) and finite_all:
                row = None
            elif isinstance(c, NonFinite):
                both = loss() + gnorm()
                row = (both - both) != 0  # nan for nan or inf, 0 for finite
            elif isinstance(c, Diverged):
                if improved_all:  # loss == best loss: no rise at all
                    row = None
                else:
                    best, f0 = st.best_loss.double(), st.loss0
                    scale = torch.maximum(torch.maximum(best.abs(), f0.abs()), f0 - best)
                    st.div_scale = scale
                    row = (best < math.inf) & (loss() - best > c.factor * scale)
            elif isinstance(c, LossBelow):
                row = loss() <= c.threshold
            elif isinstance(c, GradNormBelow):
                row = gnorm() <= c.tol
            elif isinstance(c, MaxIter):
                row = (torch.ones(w, dtype=torch.bool, device=st.loss.device)
                       if st.iteration >= c.n else None)
            else:
                row = self.kept[j]
            rows.append(row)
        some = [j for j, r in enumerate(rows) if r is not None]
        if not some:
            return rows, None
        if len(some) == 1:
            row = rows[some[0]]
            return rows, row if alive is None else row & alive  # type: ignore[operator]
        F = torch.stack([rows[j] for j in some])  # type: ignore[misc]
        if alive is not None:
            F &= alive
        fired = F.any(1).tolist()
        if not any(fired):
            return [None] * len(rows), None
        for j, hit in zip(some, fired):
            if not hit:
                rows[j] = None  # fired on no running problem
        return rows, F.any(0)

    @staticmethod
    def matrix(rows: list[Tensor | None], pos: Tensor) -> Tensor:
        """The ``(c, m)`` fired matrix of the problems at ``pos``."""
        none = torch.zeros(len(pos), dtype=torch.bool, device=pos.device)
        return torch.stack([none if r is None else r[pos] for r in rows])

    def _stalled(self, c: Stalled, st: Any) -> Tensor:
        eps = self.batch.eps
        loss = st.loss.double()
        if self.ref_loss is None or self.ref_X is None or self.quiet is None:
            self.ref_loss, self.ref_X = loss, st.X
            self.quiet = torch.zeros_like(loss, dtype=torch.long)
            return self.quiet >= c.window
        still = ((loss - self.ref_loss).abs()
                 <= 4 * eps * torch.maximum(loss.abs(), math.sqrt(eps) * st.loss0.abs()))
        moved = ((st.X - self.ref_X).abs() / torch.maximum(st.X.abs(), st.typx)).amax(1)
        still &= (moved <= 4 * eps)
        self.quiet = torch.where(still, self.quiet + 1, torch.zeros_like(self.quiet))
        self.ref_loss = torch.where(still, self.ref_loss, loss)
        self.ref_X = torch.where(still[:, None], self.ref_X, st.X)
        return self.quiet >= c.window


#: Up to this many parameters the probes move each coordinate (as in
#: :data:`descend.convergence.PLATEAU_COORDINATES`); above, three directions.
PLATEAU_COORDINATES = 32


def not_a_minimum(batch: Batch, X: Tensor, G: Tensor, loss: Tensor, X0: Tensor, G0: Tensor,
                  typx: Tensor, args: tuple) -> list[str | None]:
    """:func:`descend.convergence.not_a_minimum` for the problems in the rows of ``X``, all
    probes in one evaluation of ``fn``: None where a problem is at a minimum, else what its
    probes saw."""
    m, n = X.shape
    loss = loss.double()
    move = batch.eps ** 0.25
    sizes = torch.maximum(torch.maximum(X.abs(), typx), batch.rms(X))
    band = 4 * batch.eps * loss.abs()
    small = n <= PLATEAU_COORDINATES
    if small:
        eye = torch.eye(n, dtype=X.dtype, device=X.device)
        sign = torch.where(G >= 0, -move, move)  # downhill, coordinate by coordinate
        steps = (sign * sizes)[:, :, None] * eye  # (m, probe, n)
    else:
        gen = torch.Generator().manual_seed(0)
        r = torch.cat([(torch.randint(0, 2, s, generator=gen).to(X.dtype) * 2 - 1).reshape(-1)
                       for s in batch.shapes]).to(X.device)
        scaled = sizes * G
        top = scaled.abs().amax(1, keepdim=True)
        down = torch.where(top > 0, -move * sizes * scaled / top, torch.zeros_like(X))
        steps = torch.stack([down, move * sizes * r, -move * sizes * r], 1)
    p = steps.shape[1]
    pts = torch.cat([X[:, None, :] + steps, X[:, None, :] + 2.0 * steps], 1)
    idx = torch.arange(m, device=X.device).repeat_interleave(2 * p)
    f = batch.losses(pts.reshape(-1, n), batch.take_args(args, idx)).double().reshape(m, 2 * p)
    f1, f2 = f[:, :p], f[:, p:]
    valid = torch.ones_like(f1, dtype=torch.bool)
    if not small:  # no downhill probe where the scaled gradient is 0
        valid[:, 0] = (sizes * G).abs().amax(1) > 0
    lo, b = loss[:, None], band[:, None]
    falls = (valid & (f1 < lo - b) & (f2 < f1 - b)).any(1).tolist()
    flat = (~valid | ((f1 - lo).abs() <= b)).all(1).tolist()
    sat = ([False] * m if not small
           else (((f1 - lo).abs() <= b) & (G0 != 0)).any(1).tolist())
    out: list[str | None] = []
    for fa, fl, sa in zip(falls, flat, sat):
        if fa:
            out.append("the loss still falls")
        elif fl:
            out.append("the loss does not change")
        elif sa:
            out.append("the loss does not change along a parameter that mattered at the start "
                       "(it saturated)")
        else:
            out.append(None)
    return out


class BatchedLBFGS:
    """:class:`descend.rules.LBFGS` for many problems at once: each problem keeps its own
    curvature pairs (the last ``history_size`` accepted), skips its own pairs that fail the
    curvature test, and restarts alone. The pairs sit in ``(w, m, n)`` buffers, newest last; a
    slot not filled has ``rho = 0`` and so adds exact zeros in the two-loop recursion."""

    def __init__(self, history_size: int, eps: float) -> None:
        self.m, self.eps = history_size, eps
        self.S: Tensor | None = None

    def init(self, X: Tensor) -> None:
        w, n = X.shape
        self.S = X.new_zeros(w, self.m, n)
        self.Y = X.new_zeros(w, self.m, n)
        self.rho = X.new_zeros(w, self.m)
        self.x_prev, self.g_prev = X, torch.zeros_like(X)
        self.has_prev = torch.zeros(w, dtype=torch.bool, device=X.device)

    def take(self, keep: Tensor) -> None:
        assert self.S is not None
        self.S, self.Y, self.rho = self.S[keep], self.Y[keep], self.rho[keep]
        self.x_prev, self.g_prev = self.x_prev[keep], self.g_prev[keep]
        self.has_prev = self.has_prev[keep]

    def restart(self, pos: Tensor, X: Tensor, G: Tensor) -> Tensor:
        """Forget the pairs of the problems at ``pos``; their first direction ``g / |g|``."""
        assert self.S is not None
        self.S[pos] = 0
        self.Y[pos] = 0
        self.rho[pos] = 0
        return _unit(G[pos])

    def direction(self, X: Tensor, G: Tensor) -> Tensor:
        """Take the new pair of every problem that passes its curvature test, then ``u = H g``
        by the two-loop recursion (``g / |g|`` for a problem with no pair)."""
        assert self.S is not None
        s, y = X - self.x_prev, G - self.g_prev
        sy = (s * y).sum(1)
        norms = torch.linalg.vector_norm(s, dim=1) * torch.linalg.vector_norm(y, dim=1)
        acc = self.has_prev & (sy > self.eps * norms)
        a3 = acc[:, None, None]
        self.S = torch.where(a3, torch.cat([self.S[:, 1:], s[:, None]], 1), self.S)
        self.Y = torch.where(a3, torch.cat([self.Y[:, 1:], y[:, None]], 1), self.Y)
        new_rho = torch.cat([self.rho[:, 1:], (1.0 / sy)[:, None]], 1)
        self.rho = torch.where(acc[:, None], new_rho, self.rho)
        self.x_prev, self.g_prev = X, G
        self.has_prev = torch.ones_like(self.has_prev)
        curv = self.rho[:, -1] != 0
        q = G.clone()
        alphas = []
        for j in range(self.m - 1, -1, -1):
            a = self.rho[:, j] * (self.S[:, j] * q).sum(1)
            q -= self.Y[:, j] * a[:, None]
            alphas.append(a)
        sn, yn = self.S[:, -1], self.Y[:, -1]
        gamma = (sn * yn).sum(1) / (yn * yn).sum(1)
        q *= torch.where(curv, gamma, torch.ones_like(gamma))[:, None]
        for j, a in zip(range(self.m), reversed(alphas)):
            b = self.rho[:, j] * (self.Y[:, j] * q).sum(1)
            q += self.S[:, j] * (a - b)[:, None]
        return torch.where(curv[:, None], q, _unit(G))


def _unit(G: Tensor) -> Tensor:
    gn = torch.linalg.vector_norm(G, dim=1, keepdim=True)
    return torch.where(gn > 0, G / gn, G)
