"""Many independent problems at once: ``minimize(fn, x0, batched=True)``.

Every tensor in ``x0`` (and in ``args``) has a leading problem dimension ``K``; ``fn`` gets the
problems still running stacked the same way and returns their losses, shape ``(w,)``. Each
problem's gradient is the gradient of the sum of the losses (the problems are independent). The
method is resolved by :func:`descend.loop.assemble`, the one policy; :func:`run` then repeats the
loop's phases over the working set, every problem with its own iteration count, stop reason,
step size, best point and history::

    evaluate   losses (w,) and gradients (w, n) of the working set     one call of fn
    stop?      every criterion, per problem (batched_parts.Tests)     -> finished problems
    direction  u per problem (the rule; batched L-BFGS per problem)
    step size  a constant or scheduled lr, or a line search per problem (all the problems'
               trials evaluated in one call of fn per round)
    update     x <- x - alpha u
    record     one row per iteration for the working set

Why a loop of its own rather than :func:`descend.loop.run` over a stacked problem: ``run`` stops
when *one* criterion fires for the whole run and reads every value as a Python float; here each
problem stops alone and every test is a tensor operation over the working set, so the host reads
a few numbers per iteration, in one read, not ``K``: the screen of
:meth:`~descend.batched_parts.Tests.screen` (did every running problem improve, can a criterion
have fired), taken in the losses' own dtype; the exact float64 tests run only when it says a
criterion may have fired. A small batch's iteration is mostly fixed cost (a few microseconds a
tensor operation), so the loop keeps its operations few: the losses stay in their dtype until a
test needs float64, the best point is kept by reference while every problem improves, and
``fn``'s gradient comes from one call of the autograd engine
(:meth:`~descend.batched_parts.Batch.evaluate`).

Finished problems stop costing: their results are written out when they finish, and once fewer
than :data:`COMPACT_BELOW` of the working set are still running, ``x``, the tensors in ``args``,
the rule's state and the criteria's state are compacted to the running ones. The results come
back in the original order.

What runs batched (anything else is refused up front, naming what is supported): the rules
``gd``, ``momentum``, ``nesterov``, ``adam``, ``adamw``, ``rmsprop``, ``adagrad`` with a constant
or scheduled lr, ``gd`` with Armijo backtracking or the strong-Wolfe search, and ``lbfgs`` with
strong Wolfe (the default method); the criteria of :class:`~descend.batched_parts.Tests`; and
``on_divergence="stop"`` (the default here: a problem that diverges stops alone with its reason).
A quasi-Newton rule with ``scale=None`` never turns its scaling on in a batch (the single loop's
``# rescale?`` restart).

``compile=True``: a qualifying run hands its iterations, after the start's row, to
:mod:`descend.batched_chunks` (compiled, several iterations a call); any other evaluates ``fn``
through ``torch.compile``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from . import batched_chunks
from .batched_parts import Batch, BatchedLBFGS, Tests, first_order, not_a_minimum
from .batched_result import REASON_CODES, BatchedHistory, BatchedResult
from .errors import InputError, InputTypeError
from .linesearch import armijo_trials, strong_wolfe_trials
from .loop import assemble
from .objective import Params
from .rules import GD, LBFGS, AdaGrad, Adam, Momentum, RMSProp
from .steps import Armijo, Constant, Schedule, StrongWolfe
from .stops import NEAR, REASONS, Stalled, Stationary

__all__ = ["COMPACT_BELOW", "REASON_CODES", "BatchedHistory", "BatchedResult", "run", "solve"]

#: The working set is compacted once fewer than this fraction of it is still running.
COMPACT_BELOW = 0.75
_CODE = {r: i for i, r in enumerate(REASON_CODES)}
_ELEMENTWISE = (GD, Momentum, Adam, RMSProp, AdaGrad)


class _Shared:
    """What a constant or scheduled step reads: the iteration, shared by the working set."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration


class _State:
    """The working set's state (every tensor has the working dimension first)."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)

    iteration: int
    X: Tensor
    G: Tensor
    X0: Any  # the start, its gradient and typ x: tensors when the criteria or probes read
    G0: Any  # them (Stationary, Stalled, a line search's verdict), else None
    typx: Any
    X_prev: Tensor
    loss_prev: Tensor
    best_X: Tensor
    loss: Tensor  # loss, gnorm, best_loss, loss_prev: in fn's dtype (a test that needs
    gnorm: Tensor  # float64 converts, exactly)
    loss0: Tensor  # float64
    best_loss: Tensor
    div_scale: Tensor  # float64


def _check_method(parts: Any) -> None:
    rule, step = parts.rule, parts.step
    lbfgs = type(rule) is LBFGS
    searches = isinstance(step, (Armijo, StrongWolfe))
    ok = (lbfgs and isinstance(step, StrongWolfe) and rule.scale is not True) or (
        isinstance(rule, _ELEMENTWISE) and (isinstance(step, (Constant, Schedule))
                                            or (type(rule) is GD and searches)))
    if not ok:
        raise InputError(
            f"with batched=True, rule {getattr(rule, 'label', rule.name)!r} with "
            f"lr={step.describe()!r} cannot run per problem; supported: rules gd, momentum, "
            "nesterov, adam, adamw, rmsprop, adagrad with a number or a schedule k -> lr as lr; "
            "rule gd with lr='armijo' or 'wolfe'; rule lbfgs (scale None or False), the "
            "default, with its strong-Wolfe search")


def solve(fn: Callable[..., Tensor], x0: Any, args: tuple, *, rule: Any, lr: Any, stop: Any,
          max_iter: int | None, on_divergence: str | None, refused: dict[str, Any],
          cost: Callable[[Tensor], Tensor] | None = None, compile: bool = False) -> BatchedResult:
    """Check everything up front, assemble by the one policy, run, and return the result.

    ``refused`` holds the options a batched run does not take, by name, with what was given
    (an error names the first one given). ``cost`` maps ``fn``'s output to the losses (for
    ``least_squares``: residual vectors to ``1/2 |r|^2``). ``compile``: the iterations compiled
    where the run qualifies (:mod:`descend.batched_chunks`), else ``fn`` alone.
    """
    if not isinstance(compile, bool):
        raise InputTypeError(f"compile must be True or False, got {compile!r}")
    for name, given in refused.items():
        if given not in (None, False, (), []):
            raise InputError(f"with batched=True, {name}= is not supported (per-problem runs "
                             f"have no live state to show); leave it out, or use "
                             "batched=False for one problem")
    if on_divergence not in (None, "stop"):
        raise InputError(f"with batched=True, on_divergence must be 'stop' (each problem that "
                         f"diverges stops alone with its reason), got {on_divergence!r}")
    objective = fn if cost is None else _composed(fn, cost)
    batch = Batch(objective, x0, args)
    params = Params(batch.X0[:1].clone())  # one problem's worth, for the policy's checks
    parts = assemble(params, rule=rule, lr=lr, stop=stop, max_iter=max_iter,
                     on_divergence="stop")
    _check_method(parts)
    tests = Tests(parts.criteria, batch)
    chunked = batched_chunks.make(batch, parts, compile)
    if compile and chunked is None:
        batch.compile_alone()
    return run(batch, parts, tests, chunked)


def _composed(fn: Callable[..., Tensor], cost: Callable[[Tensor], Tensor]) -> Callable[..., Tensor]:
    def objective(x: Any, *args: Any) -> Tensor:
        return cost(fn(x, *args))

    return objective


@dataclass
class _Out:
    """The results of the ``K`` problems, filled in as they finish."""

    K: int
    n: int
    dtype: torch.dtype
    device: torch.device

    def __post_init__(self) -> None:
        K, n, dt, d = self.K, self.n, self.dtype, self.device
        self.x = torch.empty(K, n, dtype=dt, device=d)
        self.best_x = torch.empty(K, n, dtype=dt, device=d)
        self.jac = torch.empty(K, n, dtype=dt, device=d)
        self.loss = torch.empty(K, dtype=torch.float64, device=d)
        self.best_loss = torch.empty(K, dtype=torch.float64, device=d)
        self.gnorm = torch.empty(K, dtype=torch.float64, device=d)
        self.aux = torch.full((K,), math.nan, dtype=torch.float64, device=d)
        self.nit = torch.zeros(K, dtype=torch.long, device=d)
        self.nfev = torch.zeros(K, dtype=torch.long, device=d)
        self.code = torch.zeros(K, dtype=torch.long, device=d)
        self.what: dict[int, str] = {}


def run(batch: Batch, parts: Any, tests: Tests,
        chunked: batched_chunks.BatchedChunks | None = None) -> BatchedResult:
    """The batched loop (see the module docstring); ``chunked``: its iterations compiled,
    after the start's row (:mod:`descend.batched_chunks`)."""
    t0 = perf_counter()
    K, n = batch.K, batch.n
    out = _Out(K, n, batch.dtype, batch.X0.device)
    hist = BatchedHistory()
    rule, step = parts.rule, parts.step
    lbfgs = BatchedLBFGS(rule.history_size, rule.eps) if isinstance(rule, LBFGS) else None
    searches = isinstance(step, (Armijo, StrongWolfe))
    for c in parts.criteria:
        c.reset()
    step.reset()
    dev = batch.X0.device
    ids = torch.arange(K, device=dev)
    args = batch.args
    X = batch.X0
    loss, G = batch.evaluate(X, args)
    gnorm = torch.linalg.vector_norm(G, dim=1)
    nfev = torch.ones(K, dtype=torch.long, device=dev)
    start = any(tests.resolves) or searches
    loss0 = loss.double()
    st = _State(iteration=0, X=X, G=G, loss=loss, gnorm=gnorm, loss0=loss0,
                X0=X if start else None, G0=G if start else None,
                typx=batch.typical(X) if start else None,
                best_loss=torch.full_like(loss, math.inf), best_X=X,
                X_prev=X, loss_prev=loss, div_scale=loss0)
    if lbfgs is not None:
        lbfgs.init(X)
    else:
        rule.init([X])
    ls = _LineState(step, K, dev) if searches else None
    alive = torch.ones(K, dtype=torch.bool, device=dev)
    running = width = K
    hist.segment(ids)
    lr_row: Any = math.nan
    while True:
        # record; then the screen, one host read: did every running problem improve (its best
        # point: by reference, as gd's usually do), can a criterion have fired?
        hist.add(st.iteration, st.loss, st.gnorm, lr_row, nfev.clone() if searches else None,
                 perf_counter() - t0)
        some_done = running < width
        finite_all, improved_all, maybe = tests.screen(st, alive if some_done else None)
        if improved_all:
            st.best_loss, st.best_X = st.loss, st.X
        else:
            improved = st.loss < st.best_loss
            if not finite_all:
                improved &= st.gnorm < math.inf
            st.best_loss = torch.where(improved, st.loss, st.best_loss)
            st.best_X = torch.where(improved[:, None], st.X, st.best_X)
        # stop?
        pos = None
        if maybe:
            rows, newly = tests.fires(st, improved_all, finite_all, alive if some_done else None)
            if newly is not None:
                pos = newly.nonzero().squeeze(1)
        if pos is not None and len(pos):
            _finish(st, tests, batch, args, pos, rows, ids, nfev, out,
                    offset=0 if searches else st.iteration)
            alive = alive.index_fill(0, pos, False)  # a new tensor: the screen keys on it
            running -= len(pos)
            if running == 0:
                break
            if running < COMPACT_BELOW * len(ids):
                keep = alive.nonzero().squeeze(1)
                ids, args, nfev = ids[keep], batch.take_args(args, keep), nfev[keep]
                width = running
                alive = torch.ones(len(keep), dtype=torch.bool, device=dev)
                same = st.best_X is st.X, st.best_loss is st.loss
                # (x_prev is set afresh before it is next read)
                for name in ("X", "G", "loss", "gnorm", "loss0") + (
                        ("X0", "G0", "typx") if start else ()):
                    setattr(st, name, getattr(st, name).index_select(0, keep))
                st.best_X = st.X if same[0] else st.best_X.index_select(0, keep)
                st.best_loss = st.loss if same[1] else st.best_loss.index_select(0, keep)
                tests.take(keep)
                if lbfgs is not None:
                    lbfgs.take(keep)
                else:
                    _take_rule_state(rule, keep)
                if ls is not None:
                    ls.take(keep)
                hist.segment(ids)
        # (compiled: the rest of the run, chunk by chunk; else fn alone, compiled)
        if chunked is not None:
            handed = SimpleNamespace(st=st, alive=alive, args=args, ids=ids, running=running,
                                     hist=hist, out=out, tests=tests, t0=t0, finish=_finish,
                                     State=_State, compact_below=COMPACT_BELOW)
            if chunked.finish(handed):
                break
            batch.compile_seconds += chunked.compile_seconds  # (the attempt's, then fn's)
            chunked = None
            batch.compile_alone()
        # direction
        U = lbfgs.direction(st.X, st.G) if lbfgs is not None else rule.direction([st.X],
                                                                                  [st.G])[0]
        # step size, update, evaluate
        st.X_prev, st.loss_prev = st.X, st.loss
        if ls is None:
            alpha = step(_Shared(st.iteration), [U], None)
            lr_row = float(alpha)
            X = torch.add(st.X, U, alpha=-alpha)
            st.iteration += 1
            loss_t, G = batch.evaluate(X, args)  # nfev: one per iteration, added on finishing
        else:
            res = ls.search(st, U, U is st.G, alive, batch, args, nfev, lbfgs, tests, ids, out)
            if res is None:  # every running problem stopped (no step)
                break
            X, loss_t, G, lr_row, alive = res
            running = int(alive.sum())
            st.iteration += 1
        st.X, st.G = X, G
        st.loss = loss_t
        st.gnorm = torch.linalg.vector_norm(G, dim=1)
    seconds = perf_counter() - t0
    compiled = batch.compile_seconds + (chunked.compile_seconds if chunked is not None else 0)
    return BatchedResult.build(batch, out, hist, seconds, parts, compiled)


def _take_rule_state(rule: Any, keep: Tensor) -> None:
    for k, v in rule.state.items():
        if isinstance(v, list) and v and isinstance(v[0], Tensor):
            rule.state[k] = [t[keep] for t in v]


def _finish(st: _State, tests: Tests, batch: Batch, args: tuple, pos: Tensor, rows: Any,
            ids: Tensor, nfev: Tensor | None, out: _Out, codes: Tensor | None = None,
            offset: int = 0, nit: Tensor | None = None) -> None:
    """Write out the problems at working positions ``pos`` that stopped: the reason each
    reports (a guard that fired first; else the first success, after resolving ``Stationary``
    and ``Stalled``; else the first), their final point and numbers. ``codes`` given: the
    reasons, none of them a guard's. ``nit`` given: each problem's iteration (the compiled
    chunks, where problems stop at different rows), and ``nfev`` one more."""
    guarded = None  # the codes when they may hold a guard's
    one = None
    if codes is None:
        codes, one = _pick(st, tests, batch, args, pos, rows, out, ids)
        if one in (_CODE["nonfinite"], _CODE["diverged"]):
            codes = torch.full((len(pos),), one, dtype=torch.long, device=pos.device)
        guarded = codes
    orig = ids.index_select(0, pos)
    X = Xcur = st.X.index_select(0, pos)
    loss = lcur = st.loss.index_select(0, pos).double()
    nonfinite = None if guarded is None else guarded == _CODE["nonfinite"]
    if nonfinite is not None and bool(nonfinite.any()):
        # the last finite iterate (the start's own if the start is not)
        X = torch.where(nonfinite[:, None], st.X_prev.index_select(0, pos), X)
        loss = torch.where(nonfinite & (st.iteration > 0),
                           st.loss_prev.index_select(0, pos).double(), loss)
    out.x.index_copy_(0, orig, X)
    out.loss.index_copy_(0, orig, loss)
    out.jac.index_copy_(0, orig, st.G.index_select(0, pos))
    out.gnorm.index_copy_(0, orig, st.gnorm.index_select(0, pos).double())
    if st.best_X is st.X and st.best_loss is st.loss:  # every problem is at its best
        out.best_x.index_copy_(0, orig, Xcur)
        out.best_loss.index_copy_(0, orig, lcur)
    else:
        bl = st.best_loss.index_select(0, pos)
        out.best_x.index_copy_(0, orig, torch.where((bl < math.inf)[:, None],
                                                    st.best_X.index_select(0, pos), Xcur))
        out.best_loss.index_copy_(0, orig, bl.double())
    if nit is not None:
        out.nit.index_copy_(0, orig, nit)
        out.nfev.index_copy_(0, orig, nit + 1)
    else:
        out.nit.index_fill_(0, orig, st.iteration)
        if offset:  # no search: nfev is one per iteration
            out.nfev.index_fill_(0, orig, 1 + offset)
        else:
            assert nfev is not None
            out.nfev.index_copy_(0, orig, nfev.index_select(0, pos))
    if codes is None:
        out.code.index_fill_(0, orig, int(one))  # type: ignore[arg-type]
    else:
        out.code.index_copy_(0, orig, codes)
    if guarded is not None:
        div = guarded == _CODE["diverged"]
        if bool(div.any()):
            out.aux[orig[div]] = st.div_scale.index_select(0, pos)[div]


def _pick(st: _State, tests: Tests, batch: Batch, args: tuple, pos: Tensor,
          rows: list[Tensor | None], out: _Out, ids: Tensor) -> tuple[Tensor | None, int | None]:
    """The reason code of each stopped problem (see :func:`_finish`), or None and the one code
    of them all when one criterion fired."""
    crit = tests.criteria
    hit = [j for j, r in enumerate(rows) if r is not None]
    if len(hit) == 1 and not tests.resolves[hit[0]]:  # one criterion fired: its reason
        return None, REASON_CODES.index(crit[hit[0]].reason)
    F = Tests.matrix(rows, pos)
    c = len(crit)
    dev = F.device
    order = torch.arange(c, 0, -1, device=dev)[:, None]
    first = (F * order).argmax(0)  # the first criterion that fired, per problem
    guard = torch.tensor(tests.guards, device=dev)[first]
    static = torch.tensor([REASON_CODES.index(x.reason) if not r else -1
                           for x, r in zip(crit, tests.resolves)], device=dev)
    success = torch.tensor(tests.success, device=dev)[:, None] & F
    has_success = success.any(0)
    pick_s = (success * order).argmax(0)
    codes = torch.where(has_success, static[pick_s], static[first])
    codes = torch.where(guard, static[first], codes)
    needs = (~guard) & (F & torch.tensor(tests.resolves, device=dev)[:, None]).any(0)
    if not bool(needs.any()):
        return codes, None
    # resolve Stationary / Stalled problem by problem (probes batched): they may turn into a
    # success (converged, roundoff) or a failure (plateau, stalled)
    sub = needs.nonzero().squeeze(1)
    p = pos[sub]
    tol_ro = batch.eps ** (1 / 3)
    ro_scaled = first_order(st.loss[p], st.loss0[p], st.X[p], st.G[p], st.typx[p], tol_ro)
    plateau = not_a_minimum(batch, st.X[p], st.G[p], st.loss[p], st.X0[p], st.G0[p],
                            st.typx[p], batch.take_args(args, p))
    Fs = F[:, sub].t().tolist()
    ro = ro_scaled.tolist()
    new = codes.clone()
    for k, row in enumerate(Fs):
        resolved: list[tuple[int, float, str | None]] = []
        for j, hit in enumerate(row):
            if not hit:
                continue
            cj = crit[j]
            if isinstance(cj, Stationary):
                if plateau[k] is not None:
                    resolved.append((_CODE["plateau"], math.nan, plateau[k]))
                else:
                    resolved.append((_CODE["converged"], float(tests.scaled[j][p[k]]), None))
            elif isinstance(cj, Stalled):
                if ro[k] <= tol_ro:
                    resolved.append((_CODE["plateau"], math.nan, plateau[k]) if plateau[k]
                                    else (_CODE["roundoff"], ro[k], _stalled_text(cj, ro[k],
                                                                                  tol_ro)))
                else:
                    resolved.append((_CODE["stalled"], ro[k], None))
            else:
                resolved.append((REASON_CODES.index(cj.reason), math.nan, None))
        chosen = next((r for r in resolved if REASONS[REASON_CODES[r[0]]][0]), resolved[0])
        i = int(ids[p[k]])
        new[sub[k]] = chosen[0]
        out.aux[i] = chosen[1]
        if chosen[2] is not None:
            out.what[i] = chosen[2]
    return new, None


def _stalled_text(c: Stalled, scaled: float, tol: float) -> str:
    return (f"the loss and x have not changed beyond round-off in {c.window} iterations, and "
            f"the scaled gradient {scaled:.3e} is within round-off ({tol:.3g})")


class _LineState:
    """A line search per problem: each problem's search is a generator of trials
    (:mod:`descend.linesearch`), and every round evaluates the trials of all searching problems
    in one call of ``fn``."""

    def __init__(self, step: Any, K: int, dev: torch.device) -> None:
        self.step = step
        self.armijo = isinstance(step, Armijo)
        self.next_lr = torch.full((K,), step.lr0 if self.armijo else math.nan,
                                  dtype=torch.float64, device=dev)
        self.prev_a = torch.full((K,), math.nan, dtype=torch.float64, device=dev)
        self.prev_d = torch.full((K,), math.nan, dtype=torch.float64, device=dev)

    def take(self, keep: Tensor) -> None:
        self.next_lr, self.prev_a, self.prev_d = (self.next_lr[keep], self.prev_a[keep],
                                                  self.prev_d[keep])

    def _trials(self, f0: float, d0: float, p: int, amin: float, newton: bool) -> Any:
        s = self.step
        if self.armijo:
            return armijo_trials(f0, d0, float(self.next_lr[p]), c1=s.c1, shrink=s.shrink_factor,
                                 max_evals=s.max_evals, alpha_min=amin)
        pa = float(self.prev_a[p])
        a0 = s.lr0 if newton or math.isnan(pa) else pa * float(self.prev_d[p]) / d0
        return strong_wolfe_trials(f0, d0, a0, c1=s.c1, c2=s.c2, max_evals=s.max_evals,
                                   alpha_min=amin)

    def _rounds(self, st: _State, U: Tensor, P: list[int], batch: Batch, args: tuple,
                nfev: Tensor, newton: bool) -> tuple[dict[int, tuple[float, Tensor, Tensor,
                                                                     Tensor]],
                                                     dict[int, tuple[float, float]], list[float]]:
        """Run the searches of the problems at working positions ``P`` along their rows of
        ``U``: the accepted ``(alpha, x, loss, grad)`` by position, each one's longest finite
        trial ``(alpha, phi'(alpha))``, and the ``d0`` of every search."""
        idx = torch.tensor(P, dtype=torch.long, device=st.X.device)
        Xs, Us, Gs = st.X[idx], U[idx], st.G[idx]
        d0s = (-(Gs * Us).sum(1)).tolist()
        f0s = st.loss[idx].tolist()
        umax = Us.abs().amax(1)
        xmax = torch.clamp(Xs.abs().amax(1), min=1.0)
        amins = torch.where(umax > 0, batch.eps * xmax / umax,
                            torch.full_like(umax, math.inf)).tolist()
        accepted: dict[int, tuple[float, Tensor, Tensor, Tensor]] = {}
        longest: dict[int, tuple[float, float]] = {}
        gens: dict[int, Any] = {}
        pending: dict[int, float] = {}
        for k, p in enumerate(P):
            if not d0s[k] < 0:  # not a descent direction (or nan)
                continue
            g = self._trials(f0s[k], d0s[k], p, amins[k], newton)
            try:
                pending[k] = next(g)
                gens[k] = g
            except StopIteration:
                pass
        while pending:
            ks = list(pending)
            rows = torch.tensor([P[k] for k in ks], dtype=torch.long, device=st.X.device)
            a = torch.tensor([pending[k] for k in ks], dtype=torch.float64, device=st.X.device)
            Xt = st.X[rows] - a.to(st.X.dtype)[:, None] * U[rows]
            ft, Gt = batch.evaluate(Xt, batch.take_args(args, rows))
            nfev[rows] += 1
            fl = ft.double().tolist()
            dl = (-(Gt * U[rows]).sum(1)).tolist()
            pending = {}
            for r, k in enumerate(ks):
                f = fl[r] if math.isfinite(fl[r]) else math.inf
                d = dl[r] if f < math.inf and math.isfinite(dl[r]) else math.inf
                alpha = float(a[r])
                if f < math.inf and alpha >= longest.get(k, (-1.0, 0.0))[0]:
                    longest[k] = (alpha, d)
                try:
                    pending[k] = gens[k].send((f, d))
                except StopIteration as done:
                    if done.value is not None:
                        accepted[k] = (done.value, Xt[r], ft[r], Gt[r])
        return accepted, longest, d0s

    def search(self, st: _State, U: Tensor, is_grad: bool, alive: Tensor, batch: Batch,
               args: tuple, nfev: Tensor, lbfgs: BatchedLBFGS | None, tests: Tests,
               ids: Tensor, out: _Out) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor] | None:
        """Step every running problem by its own search; stop the ones with no step (after a
        restart of the rule for L-BFGS). The new point, its losses and gradients, the steps
        and which problems still run; None when no problem is left running."""
        P = alive.nonzero().squeeze(1).tolist()
        newton = lbfgs is not None
        acc, longest, d0s = self._rounds(st, U, P, batch, args, nfev, newton)
        failed = [k for k in range(len(P)) if k not in acc]
        first_line = {P[k]: (longest.get(k), d0s[k]) for k in failed}
        if failed and lbfgs is not None:  # restart?  those problems alone, along g / |g|
            retry = [P[k] for k in failed]
            ridx = torch.tensor(retry, dtype=torch.long, device=st.X.device)
            U = U.clone()
            U[ridx] = lbfgs.restart(ridx, st.X, st.G)
            acc2, _, _ = self._rounds(st, U, retry, batch, args, nfev, newton)
            for k2, v in acc2.items():
                acc[P.index(retry[k2])] = v
            failed = [k for k in range(len(P)) if k not in acc]
        X, loss_t, G = st.X.clone(), torch.empty_like(st.loss, dtype=st.X.dtype), st.G.clone()
        alphas = torch.full_like(st.loss, math.nan, dtype=torch.float64)
        if acc:
            ks = list(acc)
            rows = torch.tensor([P[k] for k in ks], dtype=torch.long, device=st.X.device)
            X[rows] = torch.stack([acc[k][1] for k in ks])
            loss_t[rows] = torch.stack([acc[k][2] for k in ks])
            G[rows] = torch.stack([acc[k][3] for k in ks])
            a = torch.tensor([acc[k][0] for k in ks], dtype=torch.float64, device=st.X.device)
            alphas[rows] = a
            if self.armijo:
                self.next_lr[rows] = a * self.step.growth
            else:
                self.prev_a[rows] = a
                self.prev_d[rows] = torch.tensor([d0s[k] for k in ks], dtype=torch.float64,
                                                 device=st.X.device)
        if failed:
            pos = torch.tensor([P[k] for k in failed], dtype=torch.long, device=st.X.device)
            codes = self._no_step(st, pos, first_line if newton else {}, batch, args, ids, out)
            _finish(st, tests, batch, args, pos, None, ids, nfev, out, codes)
            alive = alive.clone()  # a new tensor: the screen keys its padding on it
            alive[pos] = False
            # the stopped problems keep their point: no step, so nothing moves
            loss_t[pos] = st.loss[pos].to(loss_t.dtype)
            if not bool(alive.any()):
                return None
        return X, loss_t, G, alphas, alive

    def _no_step(self, st: _State, pos: Tensor, first_line: dict[int, Any], batch: Batch,
                 args: tuple, ids: Tensor, out: _Out) -> Tensor:
        """:func:`descend.stops.no_step` per problem: roundoff, plateau or step_failed."""
        eps = batch.eps
        tol = eps ** (1 / 3)
        scaled = first_order(st.loss[pos], st.loss0[pos], st.X[pos], st.G[pos], st.typx[pos],
                             tol).tolist()
        losses = st.loss[pos].tolist()
        plateau = not_a_minimum(batch, st.X[pos], st.G[pos], st.loss[pos], st.X0[pos],
                                st.G0[pos], st.typx[pos], batch.take_args(args, pos))
        codes = []
        for k, p in enumerate(pos.tolist()):
            i = int(ids[p])
            floor = eps ** 0.75 * abs(losses[k])
            delta = math.inf
            line = first_line.get(p)
            if scaled[k] > tol and line is not None and scaled[k] <= NEAR * tol and line[0]:
                (a, da), d0 = line
                curv = (da - d0) / a
                delta = d0 * d0 / (2 * curv) if curv > 0 and math.isfinite(curv) else math.inf
            if scaled[k] <= tol or delta <= floor:
                if plateau[k] is not None:
                    codes.append(_CODE["plateau"])
                    out.what[i] = plateau[k]  # type: ignore[assignment]
                    continue
                codes.append(_CODE["roundoff"])
                out.aux[i] = scaled[k]
                out.what[i] = (
                    "no step along the search direction lowers the loss beyond round-off, and "
                    f"the scaled gradient {scaled[k]:.3e} is within round-off ({tol:.3g})"
                    if scaled[k] <= tol else
                    "no step along the quasi-Newton direction lowers the loss: the decrease its "
                    f"local model predicts, {delta:.2e}, is below eps^(3/4) |f| = {floor:.2e}")
            else:
                codes.append(_CODE["step_failed"])
                out.aux[i] = scaled[k]
        return torch.tensor(codes, dtype=torch.long, device=st.X.device)
