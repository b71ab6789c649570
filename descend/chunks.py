"""``compile=True``'s whole-loop path: :data:`CHUNK` iterations in one compiled call.

On a small problem an iteration costs what Python and the dispatcher cost, not arithmetic:
compiling ``fn`` alone saves little, since the loop around it (the update, the reads, the
criteria) still runs op by op. So a run that qualifies (see :func:`make`) compiles the
iterations themselves: one function runs ``k`` of them,

    for j in 1..k:   u, state = rule(g, state)       (the rule's update, as a pure function)
                     x = x - lr * u
                     f, g = value_and_grad(fn)(x)
                     rows[j] = (f, |g|, x, g)

under :func:`torch._higher_order_ops.scan.scan` (a loop the compiler keeps as a loop: one
kernel per step rather than ``k`` unrolled copies), through ``torch.compile``. The rows come
back as the loop's pending rows (the ``read_every`` path of :class:`~descend.state.LoopState`):
the criteria are asked row by row in Python and the run stops on the row where one held, with
that row's ``x``; the rule's state alone has moved on, as with ``read_every``. The rows past
the stop were computed but are not counted in ``nfev``.

Which runs qualify: ``compile=True`` in :func:`descend.minimize` on tensors (not a module), a
rule with a pure form here (:data:`PURE`: ``gd``, ``momentum`` without dampening,
``nesterov``, ``adam``, ``adamw``), a constant step, no checkpoints, and at most
:data:`MAX_NUMEL` parameters (a chunk keeps ``k`` iterates and gradients). Other runs compile
``fn`` alone (:class:`~descend.objective.Objective`). The iterates are those of the eager run
to rounding (the compiler may fuse and reorder a step's arithmetic). If ``fn`` cannot be
captured whole (Python control flow on values, ``.item()``, numpy), the first chunk fails to
compile and the run goes on, from the same point, with ``fn`` compiled alone.
"""

from __future__ import annotations

import math
import types
import warnings
import weakref
from collections.abc import Callable
from time import perf_counter
from typing import Any

import torch
from torch import Tensor

from .objective import Objective
from .rules import GD, Adam, AdamW, Momentum, Nesterov, Rule
from .state import Block, LoopState
from .steps import Constant, Step

__all__ = ["CHUNK", "MAX_NUMEL", "PURE", "Chunks", "Compiled", "make", "own_code",
           "warn_uncompiled"]

#: Iterations per compiled call: the rows read at once (and at most ``CHUNK - 1`` evaluations
#: past the stop).
CHUNK = 64
#: Up to this many parameters (a chunk holds ``CHUNK`` iterates and gradients); above it, an
#: iteration's arithmetic outweighs the loop's overhead and ``fn`` is compiled alone.
MAX_NUMEL = 1 << 14
#: Below this many elements in every tensor of the problem, the compiled kernels run on one
#: thread, as eager torch's do (its grain size): an OpenMP region per kernel costs more than
#: such a kernel, and much more when the cores are shared (10x measured on 2 busy cores).
GRAIN = 32768

Tensors = tuple[Tensor, ...]


#: The code objects of the compiled loops, by the code of the objective they were built for
#: (see :func:`own_code`).
_CODES: weakref.WeakKeyDictionary[Any, dict[types.CodeType, types.CodeType]] = (
    weakref.WeakKeyDictionary())


def own_code(f: Callable[..., Any], fn: Any, fresh: bool = False) -> Callable[..., Any]:
    """``f`` (a compiled loop built for the objective ``fn``) under a code object kept for
    ``fn``'s code. ``torch.compile`` keeps its graphs, and counts recompilations, per code
    object, and every run builds its loop from the same source: with one code object for all,
    each run of another objective recompiled the last one's, and the ninth (dynamo's
    ``recompile_limit``, 8) failed and ran uncompiled. Keyed by ``fn``'s code, objectives from
    different sources keep apart, while a run of the same ``fn`` (or of a new lambda from the
    same line) finds its graphs. ``fresh``: a new code object (its graphs start empty)."""
    try:
        codes = _CODES.setdefault(getattr(fn, "__code__", fn), {})
    except TypeError:  # an fn that cannot be weakly referenced or hashed: a code of its own
        codes = {}
    if fresh or f.__code__ not in codes:
        codes[f.__code__] = f.__code__.replace()
    return types.FunctionType(codes[f.__code__], f.__globals__, f.__name__, f.__defaults__,
                              f.__closure__)


def warn_uncompiled(e: Exception, what: str, stacklevel: int) -> None:
    """The warning of a compiled loop that could not capture ``fn`` (``e``, its first line)
    and goes on with ``fn`` compiled alone; ``what``: the loop, in words."""
    first = (str(e).strip().splitlines() or [""])[0][:160]
    warnings.warn(f"descend: compile=True could not compile {what} whole "
                  f"({type(e).__name__}: {first}); fn is compiled alone instead, which saves "
                  "less: keep fn free of .item(), numpy and Python branches on tensor values "
                  "to compile the whole loop", RuntimeWarning, stacklevel=stacklevel)


class Compiled:
    """``torch.compile(f, fullgraph=True)`` under :func:`own_code`; a call that meets dynamo's
    recompile limit (one objective run with many different constants) compiles afresh under a
    new code object, rather than failing."""

    def __init__(self, f: Callable[..., Any], fn: Any, options: dict[str, Any]) -> None:
        self.f, self.fn, self.options = f, fn, options
        self._c = self._make(False)

    def _make(self, fresh: bool) -> Callable[..., Any]:
        return torch.compile(own_code(self.f, self.fn, fresh), fullgraph=True, dynamic=False,
                             options=self.options)

    def __call__(self, *args: Any) -> Any:
        try:
            return self._c(*args)
        except Exception as e:
            if "RecompileLimit" not in type(e).__name__:
                raise
            self._c = self._make(True)
            return self._c(*args)


def _wd(h: dict[str, Tensor], g: Tensors, x: Tensors) -> Tensors:
    """``g + wd * x`` (the rules' L2 weight decay), ``g`` itself without one."""
    return tuple(gi + h["wd"] * xi for gi, xi in zip(g, x)) if "wd" in h else g


def _gd(h: dict[str, Tensor], x: Tensors, g: Tensors, st: Tensors) -> tuple[Tensors, Tensors]:
    return _wd(h, g, x), st


def _momentum(h: dict[str, Tensor], x: Tensors, g: Tensors,
              st: Tensors) -> tuple[Tensors, Tensors]:
    # b_k = mu b_{k-1} + g_k from b_0 = 0 (exactly torch's first b_1 = g_1 without dampening)
    b = tuple(bi * h["mu"] + gi for bi, gi in zip(st, _wd(h, g, x)))
    return b, b


def _nesterov(h: dict[str, Tensor], x: Tensors, g: Tensors,
              st: Tensors) -> tuple[Tensors, Tensors]:
    g = _wd(h, g, x)
    b = tuple(bi * h["mu"] + gi for bi, gi in zip(st, g))
    return tuple(gi + h["mu"] * bi for gi, bi in zip(g, b)), b


def _adam(h: dict[str, Tensor], x: Tensors, g: Tensors, st: Tensors) -> tuple[Tensors, Tensors]:
    n = len(g)
    k, m, v = st[0] + 1, st[1:1 + n], st[1 + n:]
    gw = _wd(h, g, x)  # (L2 decay: Adam's; AdamW's is decoupled, "dwd" below)
    m = tuple(torch.lerp(mi, gi, h["1-b1"]) for mi, gi in zip(m, gw))
    v = tuple(vi * h["b2"] + h["1-b2"] * gi * gi for vi, gi in zip(v, gw))
    bc1 = 1 - h["b1_64"] ** k  # the bias corrections in float64, as eager's Python floats
    bc2_sqrt = torch.sqrt(1 - h["b2_64"] ** k)
    u = tuple((mi / ((vi.sqrt() / bc2_sqrt) + h["eps"])) / bc1 for mi, vi in zip(m, v))
    if "dwd" in h:
        u = tuple(ui + h["dwd"] * xi for ui, xi in zip(u, x))
    return u, (k, *m, *v)


#: The rules with a pure form: ``(hyper, x, g, state) -> (u, state)``, by exact type; the
#: hyper-parameters come in as tensors (:func:`_hyper`), so a new value is not a new compile.
PURE: dict[type, Callable[..., tuple[Tensors, Tensors]]] = {
    GD: _gd, Momentum: _momentum, Nesterov: _nesterov, Adam: _adam, AdamW: _adam}


def _hyper(rule: Rule, dtype: torch.dtype, device: torch.device) -> dict[str, Tensor]:
    """The rule's hyper-parameters as 0-dim tensors (of ``x``'s dtype: eager casts its Python
    scalars the same way); a weight decay of 0 is left out (no term at all, as in eager)."""
    r: Any = rule
    h: dict[str, float] = {}
    wd = r.weight_decay
    if wd and not isinstance(rule, AdamW):
        h["wd"] = wd
    if isinstance(rule, Momentum):
        h["mu"] = r.momentum
    if isinstance(rule, Adam):
        h.update({"1-b1": 1 - r.beta1, "b2": r.beta2, "1-b2": 1 - r.beta2, "eps": r.eps})
        if isinstance(rule, AdamW) and wd:
            h["dwd"] = wd
    out = {k: torch.tensor(v, dtype=dtype, device=device) for k, v in h.items()}
    if isinstance(rule, Adam):
        out["b1_64"] = torch.tensor(r.beta1, dtype=torch.float64, device=device)
        out["b2_64"] = torch.tensor(r.beta2, dtype=torch.float64, device=device)
    return out


def _state_in(rule: Rule, values: list[Tensor]) -> Tensors:
    """The rule's state as the chunk's carry."""
    st = rule.state
    if type(rule) is GD:
        return ()
    if isinstance(rule, Momentum):
        buf = st.get("buf")
        return tuple(buf) if buf is not None else tuple(torch.zeros_like(v) for v in values)
    k = torch.tensor(float(st["step"]), dtype=torch.float64, device=values[0].device)
    return (k, *st["m"], *st["v"])


def _state_out(rule: Rule, carry: Tensors, k: int) -> None:
    """Write the carry back into the rule's state after ``k`` iterations."""
    st = rule.state
    st["step"] += k
    if isinstance(rule, Momentum):
        st["buf"] = list(carry)
    elif isinstance(rule, Adam):
        n = (len(carry) - 1) // 2
        st["m"], st["v"] = list(carry[1:1 + n]), list(carry[1 + n:])


class Chunks:
    """The compiled ``k``-iteration function of one run, and the step that calls it.

    The first call's wall time (tracing and compiling) is the objective's ``compile_seconds``.

    Attributes:
        size: iterations per call (:data:`CHUNK`).
    """

    def __init__(self, objective: Objective, rule: Rule, step: Constant,
                 size: int = CHUNK) -> None:
        from torch._higher_order_ops.scan import scan

        self.objective, self.rule, self.step, self.size = objective, rule, step, size
        self._calls = 0
        params, fn, args = objective.params, objective.fn, objective.args
        pure = PURE[type(rule)]

        def loss(xs: Tensors) -> Tensor:
            return fn(params.build(list(xs)), *args).reshape(())

        value_and_grad = torch.func.grad_and_value(loss)

        def chunk(x: Tensors, g: Tensors, st: Tensors, lr: Tensor, h: dict[str, Tensor],
                  steps: Tensor) -> tuple[Any, Any]:
            def body(carry: Any, _: Tensor) -> tuple[Any, Any]:
                x, g, st = carry
                u, st = pure(h, x, g, st)
                x = tuple(xi - lr * ui for xi, ui in zip(x, u))
                g, f = value_and_grad(x)
                gn = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(gi)
                                                           for gi in g]))
                row = (f.detach(), gn, tuple(xi.clone() for xi in x),
                       tuple(gi.clone() for gi in g))
                return (x, g, st), row
            return scan(body, (x, g, st), steps)

        # (size_asserts: inductor's checks of every intermediate's shape, a Python call each,
        # per step of the loop: half an iteration's time here; the shapes are fixed)
        options: dict[str, Any] = {"size_asserts": False}
        sizes = [v.numel() for v in params.values] + [a.numel() for a in args
                                                       if isinstance(a, Tensor)]
        if max(sizes) < GRAIN:
            options["cpp.threads"] = 1
        self._fn = Compiled(chunk, fn, options)
        self._steps = torch.zeros(size, device=params.values[0].device)

    def advance(self, s: LoopState, info: dict[str, float]) -> bool:
        """Run :attr:`size` iterations from the current point and leave them as ``s``'s pending
        rows (each with the columns ``info``); False (nothing done) when ``fn`` could not be
        compiled whole: the objective then compiles ``fn`` alone."""
        x0 = s.values
        dt, dev = x0[0].dtype, x0[0].device
        lr = self.step(s, s.grads, None)  # type: ignore[arg-type]
        st = _state_in(self.rule, x0)
        t0 = perf_counter()
        try:
            (_, _, st), rows = self._fn(tuple(x0), tuple(s.grads), st,
                                        torch.tensor(lr, dtype=dt, device=dev),
                                        _hyper(self.rule, dt, dev), self._steps)
        except Exception as e:  # any failure to capture fn: go on without chunks
            if self._calls:
                raise
            self.objective.compile_seconds = perf_counter() - t0
            self.objective.compiled(True)
            warn_uncompiled(e, "the iterations", stacklevel=6)
            return False
        if not self._calls:
            self.objective.compile_seconds = perf_counter() - t0
        self._calls += 1
        _state_out(self.rule, st, self.size)
        losses, norms, xs, gs = rows
        obj = self.objective
        base, it0, n = obj.nfev, s.iteration, self.size
        obj.nfev += n
        obj.ngev += n
        start, end = t0 - s.start, perf_counter() - s.start
        s.pending = block = Block(it0, losses.to(torch.float64).tolist(),  # one host read a chunk
                                  norms.to(torch.float64).tolist(), xs, gs, base, lr,
                                  [start + (end - start) * (j + 1) / n for j in range(n)],
                                  info)
        s.iteration = it0 + n
        s.lr = lr
        s.values, s.grads = block.values(n - 1), block.grads(n - 1)
        s.params.set(s.values)
        return True


def make(objective: Objective, rule: Rule, step: Step, checkpoints: Any) -> Chunks | None:
    """The run's :class:`Chunks` when it qualifies (see the module docstring), else None."""
    params = objective.params
    if not objective.compile or checkpoints is not None or params.kind == "module":
        return None
    if type(rule) not in PURE or type(step) is not Constant:
        return None
    if isinstance(rule, Momentum) and not isinstance(rule, Nesterov) and rule.dampening:
        return None
    if params.numel() > MAX_NUMEL or not math.isfinite(step.lr):
        return None
    objective.compiled(False)  # the chunks compile fn with the iterations
    return Chunks(objective, rule, step)
