"""What a batched run returns (:mod:`descend.batched`): :class:`BatchedResult`, one entry per
problem as tensors with a leading ``K``, and :class:`BatchedHistory`, every problem's rows;
``res[i]`` is problem ``i`` as an ordinary :class:`~descend.result.Result`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .convergence import HINT_FLOAT32, HINT_FLOAT64
from .history import History
from .result import Result, status_of
from .stops import REASONS, Criterion, Diverged, MaxIter, Stationary

if TYPE_CHECKING:
    from .batched_parts import Batch

__all__ = ["REASON_CODES", "BatchedHistory", "BatchedResult"]

#: The reasons a batched problem can stop with, by code (``BatchedResult.reason_code``).
REASON_CODES = ("nonfinite", "diverged", "loss_below", "grad_small", "max_iter", "converged",
                "roundoff", "plateau", "stalled", "step_failed")
_CODE = {r: i for i, r in enumerate(REASON_CODES)}


class BatchedHistory:
    """The per-iteration rows of a batched run, kept as one tensor per row for the working
    set of the time; :meth:`problem` gives problem ``i``'s :class:`~descend.history.History`."""

    def __init__(self) -> None:
        self.segments: list[tuple[Tensor, list[tuple[int, Tensor, Tensor, Any, Any, float]]]] = []

    def segment(self, ids: Tensor) -> None:
        self.segments.append((ids, []))

    def add(self, it: int, loss: Tensor, gnorm: Tensor, lr: Any, nfev: Any, t: float) -> None:
        self.segments[-1][1].append((it, loss, gnorm, lr, nfev, t))

    def problem(self, i: int, nit: int) -> History:
        """Problem ``i``'s rows, iterations ``0 .. nit``."""
        h = History()
        for ids, rows in self.segments:
            hit = (ids == i).nonzero()
            if not len(hit):
                continue
            p = int(hit[0, 0])
            for it, loss, gnorm, lr, nfev, t in rows:
                if it > nit:
                    break
                a = lr if isinstance(lr, float) else float(lr[p])
                e = it + 1 if nfev is None else int(nfev[p])
                h.append(it, float(loss[p]), float(gnorm[p]), a, t, e)
        return h


@dataclass(frozen=True)
class BatchedResult:
    """The outcome of a batched run: one entry per problem, in the order given.

    Attributes:
        x: the final points, in the structure of ``x0`` with the leading ``K`` (after a
            non-finite loss: that problem's last finite iterate).
        loss: ``f(x)`` per problem, a float64 tensor ``(K,)``.
        best_x: the points with the lowest loss seen, like ``x``.
        best_loss: their losses ``(K,)``.
        nit: iterations per problem, an int64 tensor ``(K,)``.
        nfev: evaluations per problem (line-search trials and probes included), ``(K,)``.
        reason_code: the reason per problem as an index into :data:`REASON_CODES`, ``(K,)``.
        success: whether each problem's reason counts as convergence, a bool tensor ``(K,)``.
        grad_norm: the gradient norm at ``x`` per problem, ``(K,)``.
        jac: the gradient at ``x``, like ``x``.
        history: the rows of every problem (:meth:`BatchedHistory.problem`).
        seconds: wall-clock time of the whole batch.
        compile_seconds: with ``compile=True``, the time of the first compiled call
            (tracing and compiling; also inside ``seconds``).
        rule, step: the method, in words (the same for every problem).

    ``res.reason`` and ``res.message`` are lists of ``K`` strings, ``res.fun`` is ``loss``,
    ``res.status`` the scipy-style codes; ``res[i]`` is problem ``i`` as an ordinary
    :class:`~descend.result.Result`, ``len(res)`` is ``K`` and ``iter(res)`` yields them.
    """

    x: Any
    loss: Tensor
    best_x: Any
    best_loss: Tensor
    nit: Tensor
    nfev: Tensor
    reason_code: Tensor
    success: Tensor
    grad_norm: Tensor
    jac: Any = field(repr=False)
    history: BatchedHistory = field(repr=False)
    seconds: float
    rule: str
    step: str
    _aux: Tensor = field(repr=False)
    _what: dict[int, str] = field(repr=False)
    _consts: list[dict[str, Any]] = field(repr=False)
    compile_seconds: float = field(default=0.0, repr=False)

    @classmethod
    def build(cls, batch: Batch, out: Any, hist: BatchedHistory, seconds: float,
              parts: Any, compile_seconds: float = 0.0) -> BatchedResult:
        succ = torch.tensor([REASONS[r][0] for r in REASON_CODES], device=out.code.device)[out.code]
        consts = _consts(parts.criteria, batch)
        return cls(batch.build(out.x), out.loss, batch.build(out.best_x), out.best_loss,
                   out.nit, out.nfev, out.code, succ, out.gnorm, batch.build(out.jac), hist,
                   seconds, str(getattr(parts.rule, "label", parts.rule.name)),
                   parts.step.describe(), out.aux, out.what, consts, compile_seconds)

    @property
    def fun(self) -> Tensor:
        """scipy's name for :attr:`loss`."""
        return self.loss

    @property
    def reason(self) -> list[str]:
        """Why each problem stopped: a key of :data:`descend.stops.REASONS`, per problem."""
        return [REASON_CODES[c] for c in self.reason_code.tolist()]

    @property
    def status(self) -> Tensor:
        """scipy-style codes per problem (:data:`descend.result.STATUS`)."""
        return torch.tensor([status_of(r, bool(s)) for r, s in
                             zip(self.reason, self.success.tolist())])

    @property
    def message(self) -> list[str]:
        """Each problem's reason in words, with its numbers."""
        return [self._message(i) for i in range(len(self))]

    def _message(self, i: int) -> str:
        code = int(self.reason_code[i])
        reason = REASON_CODES[code]
        fields: dict[str, Any] = {
            "iteration": int(self.nit[i]), "loss": float(self.loss[i]),
            "grad_norm": float(self.grad_norm[i]), "best_loss": float(self.best_loss[i]),
            "nfev": int(self.nfev[i]), "elapsed": self.seconds}
        fields.update(self._consts[code])
        aux = float(self._aux[i])
        fields.update(scaled=aux, scale=aux, what=self._what.get(i, ""))
        return REASONS[reason][1].format(**fields)

    def __len__(self) -> int:
        return int(self.nit.shape[0])

    def __getitem__(self, i: int) -> Result:
        K = len(self)
        if isinstance(i, bool) or not isinstance(i, int) or not -K <= i < K:
            raise IndexError(f"problem index must be an int in [-{K}, {K}), got {i!r}")
        i %= K
        nit = int(self.nit[i])
        return Result(
            x=_row(self.x, i), loss=float(self.loss[i]), best_x=_row(self.best_x, i),
            best_loss=float(self.best_loss[i]), nit=nit, nfev=int(self.nfev[i]),
            reason=REASON_CODES[int(self.reason_code[i])], message=self._message(i),
            success=bool(self.success[i]), history=self.history.problem(i, nit),
            seconds=self.seconds, rule=self.rule, step=self.step, jac=_row(self.jac, i),
            compile_seconds=self.compile_seconds)

    def __iter__(self) -> Iterator[Result]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        ok = int(self.success.sum())
        counts: dict[str, int] = {}
        for r in self.reason:
            counts[r] = counts.get(r, 0) + 1
        why = ", ".join(f"{r}: {k}" for r, k in sorted(counts.items(), key=lambda x: -x[1]))
        return (f"BatchedResult(K={len(self)}, success {ok}/{len(self)} ({why}), "
                f"nit {int(self.nit.min())}..{int(self.nit.max())}, rule={self.rule!r}, "
                f"step={self.step!r}, seconds={self.seconds:.3g})")


def _row(x: Any, i: int) -> Any:
    if isinstance(x, Tensor):
        return x[i].clone()
    if isinstance(x, dict):
        return {k: v[i].clone() for k, v in x.items()}
    return type(x)(v[i].clone() for v in x)


def _consts(criteria: Iterable[Criterion], batch: Batch) -> list[dict[str, Any]]:
    """Per reason code, the message fields that are the same for every problem."""
    eps = batch.eps
    hint = HINT_FLOAT32 if eps > 1e-10 else HINT_FLOAT64
    out: list[dict[str, Any]] = [{} for _ in REASON_CODES]
    tol_ro = eps ** (1 / 3)
    for code in ("roundoff", "stalled", "step_failed"):
        out[_CODE[code]].update(tol=tol_ro, hint=hint)
    out[_CODE["plateau"]]["move"] = eps ** 0.25
    for c in criteria:
        fields = {k: v for k, v in vars(c).items() if not k.startswith("_")}
        if c.reason in _CODE and c.reason not in ("stalled",):
            if isinstance(c, Stationary):
                fields["tol"] = c.gtol if c.gtol is not None else math.sqrt(eps)
                fields.pop("scaled", None)
            if isinstance(c, Diverged):
                fields.pop("scale", None)
            if isinstance(c, MaxIter) and out[_CODE["max_iter"]]:
                continue
            out[_CODE[c.reason]].update(fields)
    return out
