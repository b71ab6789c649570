"""``compile=True`` for a batched run: :data:`CHUNK` iterations of the working set in one
compiled call.

A batch of small problems spends its iterations on fixed costs (a few microseconds a tensor
operation, a dozen operations an iteration), not arithmetic, so an eager loop cannot go far
below the cost of ``fn`` and its gradient op by op. This path compiles the iterations
themselves, as :mod:`descend.chunks` does for one problem: one function runs ``k`` of them,
every running problem stepping in lockstep and each one frozen where it stops::

    for j in 1..k:   u, state = rule(g, state)             (the rule's pure form, chunks.PURE)
                     x' = x - lr u ;  f', g' = value_and_grad(sum of fn)(x')
                     running: (x, g, f, |g|, best) <- (x', g', f', |g'|, ...)  else kept
                     running <- running and no criterion fires on the row

under :func:`torch._higher_order_ops.scan.scan` and ``torch.compile``, with the working
dimension dynamic (one compile serves every width). The criteria are tested inside, in float64,
formula for formula as :meth:`descend.batched_parts.Tests.fires` (:func:`fired` is that one
formula, traced there and run eagerly here), so a problem stops on the row where it stops
uncompiled, with that row's point; the rows past its stop only repeat it. Between calls, the
problems that stopped are written out by :func:`descend.batched._finish` (their reasons picked
as uncompiled, from :func:`fired` on their frozen rows) and the working set is compacted as in
the eager loop (never below two problems: a width of one would be a second compile).

Which runs qualify: ``compile=True`` with ``batched=True``, at least two problems, a rule with
a pure form (``gd``, ``momentum`` without dampening, ``nesterov``, ``adam``, ``adamw``), a
constant ``lr``, and criteria among :data:`SIMPLE` (the guards, ``LossBelow``,
``GradNormBelow``, ``MaxIter``: ``Stationary`` and ``Stalled`` keep per-problem state and
probes that stay eager). Any other batched run with ``compile=True`` compiles ``fn`` alone. The
iterates are those of the uncompiled run to rounding (the compiler may fuse a step's arithmetic
into one rounding). If ``fn`` cannot be captured whole, the first call fails to compile and the
run goes on uncompiled from the same point, with ``fn`` compiled alone and a warning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from time import perf_counter
from typing import Any

import torch
from torch import Tensor

from .chunks import GRAIN, PURE, Compiled, _hyper, _state_in, warn_uncompiled
from .rules import Momentum, Nesterov
from .steps import Constant
from .stops import Diverged, GradNormBelow, LossBelow, MaxIter, NonFinite

__all__ = ["CHUNK", "SIMPLE", "BatchedChunks", "fired", "make"]

#: Iterations per compiled call (and at most ``CHUNK - 1`` iterations of a stopped problem
#: that only repeat its point).
CHUNK = 32
#: The criteria tested inside the compiled iterations.
SIMPLE = (NonFinite, Diverged, LossBelow, GradNormBelow, MaxIter)


def fired(criteria: Sequence[Any], loss: Tensor, gnorm: Tensor, best: Tensor, loss0: Tensor,
          it: Tensor) -> tuple[list[Tensor], Tensor]:
    """Which of ``criteria`` (all in :data:`SIMPLE`) fire on each row, and the divergence
    scale ``max(|f_best|, |f_0|, f_0 - f_best)``; in float64, as
    :meth:`~descend.batched_parts.Tests.fires`. ``it`` is the rows' iteration (a 0-dim tensor
    or one per row)."""
    f, gn, b = loss.double(), gnorm.double(), best.double()
    scale = torch.maximum(torch.maximum(b.abs(), loss0.abs()), loss0 - b)
    none = torch.zeros_like(f, dtype=torch.bool)
    rows = []
    for c in criteria:
        if isinstance(c, NonFinite):
            both = f + gn
            rows.append((both - both) != 0)  # nan for nan or inf, 0 for finite
        elif isinstance(c, Diverged):
            rows.append((b < math.inf) & (f - b > c.factor * scale))
        elif isinstance(c, LossBelow):
            rows.append(f <= c.threshold)
        elif isinstance(c, GradNormBelow):
            rows.append(gn <= c.tol)
        else:
            rows.append((it >= c.n) | none)
    return rows, scale


def make(batch: Any, parts: Any, compile: bool) -> BatchedChunks | None:
    """The run's :class:`BatchedChunks` when it qualifies (see the module docstring), else
    None."""
    rule, step = parts.rule, parts.step
    if not compile or batch.K < 2 or type(rule) not in PURE or type(step) is not Constant:
        return None
    if isinstance(rule, Momentum) and not isinstance(rule, Nesterov) and rule.dampening:
        return None
    if not math.isfinite(step.lr) or any(type(c) not in SIMPLE for c in parts.criteria):
        return None
    return BatchedChunks(batch, parts)


def _distinct(ts: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """``ts`` with every tensor on storage of its own (a copy of any that shares one): the
    eager loop keeps the best and previous points by reference, and a compiled loop's carry
    may not alias."""
    seen: set[int] = set()
    out = []
    for t in ts:
        p = t.untyped_storage().data_ptr()
        out.append(t.clone() if p in seen else t)
        seen.add(p)
    return tuple(out)


class BatchedChunks:
    """The compiled ``k``-iteration function of one batched run, and the rest of the run
    through it (:meth:`finish`)."""

    def __init__(self, batch: Any, parts: Any, size: int = CHUNK) -> None:
        from torch._higher_order_ops.scan import scan

        self.batch, self.parts, self.size = batch, parts, size
        self.compile_seconds = 0.0
        criteria, fn, pure = parts.criteria, batch.fn, PURE[type(parts.rule)]
        nonfinite = next(j for j, c in enumerate(criteria) if isinstance(c, NonFinite))

        def total(X: Tensor, *args: Any) -> tuple[Tensor, Tensor]:
            losses = fn(batch.build(X), *args)
            return losses.sum(), losses

        value_and_grad = torch.func.grad_and_value(total, has_aux=True)

        def chunk(carry: tuple, st: tuple, lr: Tensor, h: dict[str, Tensor], loss0: Tensor,
                  its: Tensor, args: tuple) -> tuple[Any, Any]:
            def body(c: Any, it: Tensor) -> tuple[Any, Any]:
                (X, G, f, gn, best, best_X, fprev, on), st = c
                (u,), st = pure(h, (X,), (G,), st)
                Xn = X - lr * u
                Gn, (_, fnew) = value_and_grad(Xn, *args)
                gnn = torch.linalg.vector_norm(Gn, dim=1)
                fprev = torch.where(on, f, fprev)
                f, gn = torch.where(on, fnew.detach(), f), torch.where(on, gnn, gn)
                G = torch.where(on[:, None], Gn, G)
                better = on & (f < best) & (gn < math.inf)
                best = torch.where(better, f, best)
                best_X = torch.where(better[:, None], Xn, best_X)
                rows, _ = fired(criteria, f, gn, best, loss0, it)
                # (a row that is not finite keeps the last finite point: the eager loop's x_prev)
                X = torch.where((on & ~rows[nonfinite])[:, None], Xn, X)
                for r in rows:
                    on = on & ~r
                return ((X, G, f, gn, best, best_X, fprev, on), st), (f.clone(), gn.clone(),
                                                                    on.clone())
            return scan(body, (carry, st), its)

        options: dict[str, Any] = {"size_asserts": False}
        sizes = [batch.X0.numel()] + [a.numel() for a in batch.args if isinstance(a, Tensor)]
        if max(sizes) < GRAIN:
            options["cpp.threads"] = 1
        self._fn = Compiled(chunk, fn, options)

    def finish(self, run: Any) -> bool:
        """Run the batched loop on from where ``run`` stands (its state ``st``, ``alive``,
        ``args``, ``ids``, ``running``, ``hist``, ``out``, ``tests``, ``t0``; and the loop's own
        ``finish``, ``State`` and ``compact_below``, handed in rather than imported: the loop
        imports this module) to its end; False (nothing done) when ``fn`` cannot be compiled
        whole."""
        batch, parts, st = self.batch, self.parts, run.st
        X = st.X
        dt, dev = X.dtype, X.device
        lr = float(parts.step.lr)
        lr_t = torch.tensor(lr, dtype=dt, device=dev)
        h = _hyper(parts.rule, dt, dev)
        state = _state_in(parts.rule, [X])
        *carry_l, loss0 = _distinct((st.X, st.G, st.loss, st.gnorm, st.best_loss, st.best_X,
                                     st.loss_prev, run.alive, st.loss0))
        carry = tuple(carry_l)  # (loss0 too: in float64 it is the loss itself)
        first = True
        while True:
            it0 = st.iteration
            its = torch.arange(it0 + 1, it0 + 1 + self.size, dtype=torch.float64, device=dev)
            for t in (*carry, loss0, *run.args):
                if isinstance(t, Tensor) and t.dim() and t.shape[0] == carry[0].shape[0]:
                    torch._dynamo.mark_dynamic(t, 0)
            for t in state:
                if t.dim():
                    torch._dynamo.mark_dynamic(t, 0)
            t0 = perf_counter()
            try:
                (carry2, state), (fs, gns, ons) = self._fn(carry, state, lr_t, h, loss0, its,
                                                           run.args)
            except Exception as e:  # any failure to capture fn: go on uncompiled
                if not first:
                    raise
                self.compile_seconds = perf_counter() - t0
                warn_uncompiled(e, "the batched iterations", stacklevel=7)
                return False
            if first:
                self.compile_seconds = perf_counter() - t0
                first = False
            end = perf_counter() - run.t0
            for j in range(self.size):
                run.hist.add(it0 + 1 + j, fs[j], gns[j], lr, None, end)
            on_in, on = carry[-1], carry2[-1]
            st.iteration = it0 + self.size
            stopped = (on_in & ~on).nonzero().squeeze(1)
            if len(stopped):
                self._write(run, carry2, loss0, stopped, ons, it0)
                run.running -= len(stopped)
                if run.running == 0:
                    return True
            carry = carry2
            width = carry[0].shape[0]
            if run.running < run.compact_below * width and run.running >= 2:
                keep = on.nonzero().squeeze(1)
                carry = tuple(t.index_select(0, keep) for t in carry)
                loss0 = loss0.index_select(0, keep)
                state = tuple(t.index_select(0, keep) if t.dim() else t for t in state)
                run.ids = run.ids.index_select(0, keep)
                run.args = batch.take_args(run.args, keep)
                run.hist.segment(run.ids)

    def _write(self, run: Any, carry: tuple, loss0: Tensor, pos: Tensor, ons: Tensor,
               it0: int) -> None:
        """Write out the problems at working positions ``pos``, stopped in the last chunk:
        their rows are frozen at their stop, iteration ``it0 + 1 + (rows still running)``, and
        ``x`` at the last finite point (what the eager loop's ``x_prev`` holds there)."""
        X, G, f, gn, best, best_X, fprev, _ = (t.index_select(0, pos) for t in carry)
        nit = it0 + 1 + ons.index_select(1, pos).sum(0)
        rows, scale = fired(self.parts.criteria, f, gn, best, loss0.index_select(0, pos), nit)
        sub = run.State(iteration=int(nit.min()), X=X, G=G, loss=f, gnorm=gn, best_X=best_X,
                     best_loss=best, X_prev=X, loss_prev=fprev, div_scale=scale)
        some = [r if bool(r.any()) else None for r in rows]
        m = torch.arange(len(pos), device=pos.device)
        run.finish(sub, run.tests, self.batch, run.args, m, some, run.ids.index_select(0, pos),
                None, run.out, nit=nit)
