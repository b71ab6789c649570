"""The fast paths give the numbers of the plain ones: the update into spare storage against the
out-of-place update (iterate by iterate, ``torch.equal``, as torch.optim tests ``foreach``
against its for-loop)."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch

import descend
from descend import state, stops
from descend.errors import InputTypeError
from descend.rules import RULES
from descend.state import LoopState

TARGET = torch.linspace(-1.0, 2.0, 60).reshape(3, 20)


def quartic(x: dict[str, torch.Tensor]) -> torch.Tensor:
    """A smooth two-tensor problem whose iterates depend on every part of each rule."""
    return (((x["a"] - TARGET) ** 2).mean() + 0.1 * (x["b"] ** 4).sum()
            + 0.05 * torch.sin(x["a"].sum() * x["b"]).sum())


def start() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"a": torch.randn(3, 20, generator=g), "b": torch.randn(5, generator=g)}


def solve(in_place: bool, monkeypatch: pytest.MonkeyPatch, **kw):
    """``minimize`` on the quartic with the in-place path on or off; every iterate and the
    result."""
    monkeypatch.setattr(state, "IN_PLACE_NUMEL", 0 if in_place else 1 << 62)
    seen: list[tuple[int, list[torch.Tensor], int | None]] = []

    def watch(s: LoopState) -> None:
        seen.append((s.iteration, [v.clone() for v in s.values],
                     None if s.spare is None else len(s.spare.bufs)))

    res = descend.minimize(quartic, start(), observers=[watch], **kw)
    return seen, res


CASES = [
    ("gd", {}), ("gd", {"weight_decay": 0.1}), ("momentum", {}),
    ("momentum", {"dampening": 0.3, "weight_decay": 0.01}), ("nesterov", {}),
    ("adam", {}), ("adam", {"weight_decay": 0.1}), ("adamw", {}), ("rmsprop", {}),
    ("rmsprop", {"centered": True, "momentum": 0.5, "weight_decay": 0.1}), ("adagrad", {}),
    ("adagrad", {"lr_decay": 0.01, "weight_decay": 0.1}),
]


@pytest.mark.parametrize(("name", "hyper"), CASES, ids=[f"{n}{h}" for n, h in CASES])
@pytest.mark.parametrize("lr", [0.01, 0.3, "schedule"])
def test_in_place_equals_out_of_place(name, hyper, lr, monkeypatch):
    rule = RULES[name](**hyper)
    step = (lambda k: 0.05 / (1 + k)) if lr == "schedule" else lr
    kw = {"rule": rule, "lr": step, "stop": stops.MaxIter(40)}
    fast, res_fast = solve(True, monkeypatch, **kw)
    slow, res_slow = solve(False, monkeypatch, **kw)
    assert fast[-1][2] is not None and slow[-1][2] is None  # each path was taken
    assert [k for k, _, _ in fast] == [k for k, _, _ in slow]
    for (k, a, _), (_, b, _) in zip(fast, slow):
        assert all(torch.equal(u, v) for u, v in zip(a, b)), f"iterate {k} differs"
    assert res_fast.reason == res_slow.reason and res_fast.nit == res_slow.nit
    assert res_fast.best_loss == res_slow.best_loss
    for key in ("a", "b"):
        assert torch.equal(res_fast.x[key], res_slow.x[key])
        assert torch.equal(res_fast.best_x[key], res_slow.best_x[key])


def test_in_place_keeps_points_others_hold(monkeypatch):
    """The default criteria (``Stalled`` keeps a past point), a best point left behind (the
    loss rises: lr too large for momentum) and the guard's backtrack to it: same numbers, and
    the start is never written into."""
    x0 = start()
    before = {k: v.clone() for k, v in x0.items()}
    kw = {"rule": "momentum", "lr": 0.9, "max_iter": 300, "on_divergence": "backtrack"}
    fast, res_fast = solve(True, monkeypatch, **kw)
    slow, res_slow = solve(False, monkeypatch, **kw)
    assert len(fast) == len(slow)
    for (k, a, _), (_, b, _) in zip(fast, slow):
        assert all(torch.equal(u, v) for u, v in zip(a, b)), f"iterate {k} differs"
    assert res_fast.reason == res_slow.reason
    assert res_fast.history.extra["backtrack"] == res_slow.history.extra["backtrack"]
    assert sum(res_fast.history.extra["backtrack"]) >= 1
    assert max(n for _, _, n in fast) <= state.MAX_SPARES
    assert all(torch.equal(start()[k], before[k]) for k in x0)


def _keep_locals(frame, event, arg):
    """A tracer that keeps every frame's locals alive while it runs (``frame.f_locals``), as
    the frame-evaluation hook of ``torch.compile`` does once installed."""
    frame.f_locals  # noqa: B018
    return None


@pytest.mark.parametrize("traced", [False, True], ids=["plain", "frame hook"])
@pytest.mark.parametrize("rule", ["gd", "momentum", "nesterov", "adam"])
def test_in_place_writes_the_next_iterate_over_the_spent_gradient(rule, traced, monkeypatch):
    """On a descent with a fixed step nothing but the loop holds the gradient once the update
    has read it, so the update writes ``x_{k+1}`` into ``g_k``'s storage: the spare pool never
    allocates, and each iterate's tensors sit where the previous row's gradient was; also
    under a hook that keeps frames' locals alive (the counts are taken against a reference
    measured alongside)."""
    import sys

    monkeypatch.setattr(state, "IN_PLACE_NUMEL", 0)
    if traced:
        old = sys.gettrace()
        sys.settrace(_keep_locals)  # (restored below)
    rows: list[tuple[list[int], list[int], int]] = []

    def watch(s: LoopState) -> None:  # (addresses only: holding a tensor would block the path)
        rows.append(([v.data_ptr() for v in s.values], [g.data_ptr() for g in s._grads],
                     len(s.spare.bufs)))

    try:
        res = descend.minimize(quartic, start(), rule=rule, lr=0.01, stop=stops.MaxIter(20),
                               observers=[watch])
    finally:
        if traced:
            sys.settrace(old)
    assert res.nit == 20 and {n for _, _, n in rows} == {0}
    for (_, g_before, _), (x_after, _, _) in itertools.pairwise(rows):
        assert x_after == g_before


class KeepGrads:
    """An observer that keeps every row's gradient, as a list or as the tensors themselves."""

    def __init__(self, as_list: bool) -> None:
        self.as_list = as_list
        self.kept: list[tuple[object, list[torch.Tensor]]] = []

    def __call__(self, s: LoopState) -> None:
        g = s.grads
        self.kept.append((g if self.as_list else tuple(g), [t.clone() for t in g]))


@pytest.mark.parametrize("as_list", [True, False], ids=["list", "tensors"])
def test_in_place_never_writes_over_a_gradient_someone_holds(as_list, monkeypatch):
    """A gradient an observer keeps (the list ``s.grads`` or its tensors) is left as it was:
    the update goes to the spare storage instead, with the same iterates as out of place."""
    keep = KeepGrads(as_list)
    monkeypatch.setattr(state, "IN_PLACE_NUMEL", 0)
    res = descend.minimize(quartic, start(), rule="gd", lr=0.01, stop=stops.MaxIter(15),
                           observers=[keep])
    assert len(keep.kept) == 16
    for held, copy in keep.kept:
        assert all(torch.equal(a, b) for a, b in zip(held, copy))  # type: ignore[call-overload]
    _, slow = solve(False, monkeypatch, rule="gd", lr=0.01, stop=stops.MaxIter(15))
    assert all(torch.equal(res.x[k], slow.x[k]) for k in ("a", "b"))


def test_in_place_keeps_the_best_gradient_for_a_backtrack(monkeypatch):
    """Where the guard may backtrack, the best point's gradient is kept (the rollback row
    starts from it), so the update does not take its storage: the same rows as out of place."""
    kw = {"rule": "gd", "lr": 3.0, "max_iter": 60, "on_divergence": "backtrack"}
    fast, res_fast = solve(True, monkeypatch, **kw)
    slow, res_slow = solve(False, monkeypatch, **kw)
    assert sum(res_fast.history.extra["backtrack"]) >= 1
    assert history_rows(res_fast) == history_rows(res_slow)
    assert all(torch.equal(u, v) for (_, a, _), (_, b, _) in zip(fast, slow)
               for u, v in zip(a, b))


def test_torch_optimizer_rule_stays_out_of_place(monkeypatch):
    """A ``torch.optim`` rule updates its leaves itself: no spare storage."""
    fast, res = solve(True, monkeypatch, rule=functools.partial(torch.optim.SGD, momentum=0.5),
                      lr=0.01, max_iter=5)
    assert res.nit == 5 and all(n is None for _, _, n in fast)


def history_rows(res) -> list[tuple]:
    """Every column of the history but the wall-clock time."""
    cols = {k: v for k, v in res.history.columns.items() if k != "time"}
    return list(zip(*cols.values()))


CHUNKED = [
    ("loss_below", {"rule": "gd", "lr": 1.0, "stop": stops.LossBelow(0.3)}),
    ("grad_small", {"rule": "momentum", "lr": 0.1, "stop": stops.GradNormBelow(0.01)}),
    ("max_iter", {"rule": "adam", "lr": 0.01, "max_iter": 37}),
    ("no_improvement", {"rule": "gd", "lr": 0.1, "stop": stops.NoImprovement(3, rtol=0.01)}),
    ("diverged", {"rule": "momentum", "lr": 0.5, "on_divergence": "stop"}),
    ("nonfinite", {"rule": "gd", "lr": 10.0, "stop": stops.Diverged(1e30),
                   "on_divergence": "stop"}),
    ("max_iter", {"rule": "momentum", "lr": 0.5, "on_divergence": "backtrack",
                  "max_iter": 120}),
    ("loss_below", {"rule": "gd", "lr": lambda k: 2.0 / (1 + 0.1 * k),
                    "stop": stops.LossBelow(0.3), "max_iter": 200}),
    ("converged", {"rule": "momentum", "lr": 0.1, "max_iter": 400}),
]


@pytest.mark.parametrize("k", [2, 7, 64])
@pytest.mark.parametrize(("name", "kw"), CHUNKED,
                         ids=["loss_below", "grad_small", "max_iter", "no_improvement",
                              "diverged", "nonfinite", "backtrack", "schedule", "defaults"])
def test_chunked_reads_stop_on_the_same_iterate(name, kw, k, monkeypatch):
    """Reading the rows every k iterations stops on exactly the iterate reading every one does:
    the same reason, iteration count, evaluation count, x, history and observed rows (the
    guards, the backtrack's rollback rows and the default criteria included)."""
    every, res1 = solve(False, monkeypatch, **kw)
    chunked, resk = solve(False, monkeypatch, read_every=k, **kw)
    _, res_both = solve(True, monkeypatch, read_every=k, **kw)  # with the in-place path
    assert history_rows(res_both) == history_rows(res1)
    assert all(torch.equal(res_both.x[key], res1.x[key]) for key in ("a", "b"))
    assert res1.reason == name
    assert resk.reason == res1.reason and resk.nit == res1.nit and resk.nfev == res1.nfev
    assert resk.message == res1.message
    assert history_rows(resk) == history_rows(res1)
    assert [i for i, _, _ in chunked] == [i for i, _, _ in every]
    for (i, a, _), (_, b, _) in zip(chunked, every):
        assert all(torch.equal(u, v) for u, v in zip(a, b)), f"observed iterate {i} differs"
    for key in ("a", "b"):
        assert torch.equal(resk.x[key], res1.x[key])
        assert torch.equal(resk.best_x[key], res1.best_x[key])
        assert torch.equal(resk.jac[key], res1.jac[key])


def test_chunked_reads_read_in_chunks(monkeypatch):
    """The losses are read from the tensors once per chunk, not once per iteration."""
    reads = 0
    real = torch.Tensor.tolist

    def counting(t):
        nonlocal reads
        reads += 1
        return real(t)

    monkeypatch.setattr(torch.Tensor, "tolist", counting)
    res = descend.minimize(quartic, start(), rule="gd", lr=0.01, max_iter=40, read_every=10)
    assert res.nit == 40 and reads == 2 * 4  # losses and gradient norms, 4 chunks


NOTEBOOK_TARGET = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]])


def notebook(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(x, NOTEBOOK_TARGET)


def test_compile_gives_the_same_iterates():
    """``compile=True`` (forward and backward through torch.compile) follows the eager run
    iterate by iterate, to float32 rounding (inductor may fuse operations differently: a
    relative 1e-6 here); the compile time is reported apart."""
    x0 = torch.rand(3, 3, generator=torch.Generator().manual_seed(0))
    runs = {}
    for flag in (False, True):
        seen: list[torch.Tensor] = []
        res = descend.minimize(notebook, x0, rule="momentum", lr=0.5,
                               stop=stops.LossBelow(1e-6), max_iter=300, compile=flag,
                               observers=[lambda s, seen=seen: seen.append(s.values[0].clone())])
        runs[flag] = (seen, res)
    (eager, r0), (compiled, r1) = runs[False], runs[True]
    assert r1.reason == r0.reason == "loss_below" and r1.nit == r0.nit
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert r1.compile_seconds > 0 and r0.compile_seconds == 0
    assert r1.compile_seconds < r1.seconds


def test_compile_must_be_a_bool():
    with pytest.raises(InputTypeError, match="compile must be True or False, got 'yes'"):
        descend.minimize(notebook, torch.zeros(3, 3), lr=0.1, compile="yes")


@pytest.mark.parametrize(("numel", "rule", "kept"), [
    (1 << 16, "gd", False),  # the in-place path, a rule that never rescales: not held
    (1 << 16, "lbfgs", True),  # lbfgs may restart rescaled from the start's gradient
    (100, "gd", True),  # small: the saturation probe reads it
])
def test_the_start_gradient_is_held_only_where_read(numel, rule, kept):
    seen: list[int] = []
    descend.minimize(lambda x: ((x - 1.0) ** 2).sum(), torch.zeros(numel), rule=rule,
                     lr=0.1 if rule == "gd" else None, stop=stops.MaxIter(3),
                     observers=[lambda s: seen.append(len(s.start_grads))])
    assert set(seen) == ({1} if kept else {0})


@pytest.mark.parametrize("n", [1 << 16, 50])  # the in-place path, and new tensors
@pytest.mark.parametrize(("rule", "torch_class", "wd"), [
    ("adam", torch.optim.Adam, 0.0), ("adam", torch.optim.Adam, 0.1),
    ("adamw", torch.optim.AdamW, 0.01),
])
def test_fused_adam_is_torchs_fused_adam(rule, torch_class, wd, n):
    """``Adam(fused=True)`` with a fixed step takes torch's fused kernel: every iterate is
    ``torch.optim.Adam(fused=True)``'s (or AdamW's) to the bit."""
    g = torch.Generator().manual_seed(0)
    t, x0 = torch.randn(n, generator=g), torch.randn(n, generator=g)

    def f(x):
        return ((x - t) ** 2).mean() + 0.1 * (x ** 4).mean()

    seen: list[torch.Tensor] = []
    hyper = {"beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": wd, "fused": True}
    descend.minimize(f, x0, rule=RULES[rule](**hyper), lr=0.05, stop=stops.MaxIter(12),
                     observers=[lambda s: seen.append(s.values[0].clone())])
    x = x0.clone().requires_grad_(True)
    opt = torch_class([x], lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=wd, fused=True)
    for k in range(12):
        assert torch.equal(x.detach(), seen[k]), f"iterate {k} differs"
        opt.zero_grad()
        f(x).backward()
        opt.step()
    assert torch.equal(x.detach(), seen[12])


def test_fused_must_be_a_bool():
    with pytest.raises(InputTypeError, match=r"^fused must be True or False, got 'yes'$"):
        RULES["adam"](fused="yes")


NORMS = [
    ("float32", [(200_000,)], torch.float32, 2e-6),
    ("float32 x3", [(300, 300), (50_000,), (7,)], torch.float32, 2e-6),
    ("float64", [(100_000,)], torch.float64, 1e-14),
    ("complex64", [(70_000,)], torch.complex64, 2e-6),
    ("float16", [(100_000,)], torch.float16, 2e-3),  # (squares past float16's range)
    ("small float32", [(10,)], torch.float32, 1e-6),
]


@pytest.mark.parametrize(("shapes", "dtype", "rtol"), [c[1:] for c in NORMS],
                         ids=[c[0] for c in NORMS])
def test_grad_norm_against_the_exact_norm(shapes, dtype, rtol):
    """The gradient norm (BLAS dot for large single and double precision gradients, else
    ``vector_norm``) against the norm summed exactly in Python (``math.fsum`` of float64
    squares), finite where the squares leave the dtype's range."""
    import math

    g = torch.Generator().manual_seed(3)
    grads = [(torch.randn(s, generator=g, dtype=torch.float64) * 100).to(dtype) for s in shapes]
    exact = math.sqrt(math.fsum(float(abs(v)) ** 2 for t in grads
                                for v in t.reshape(-1).tolist()))
    got = state.grad_norm(grads)
    assert math.isfinite(got) and abs(got - exact) <= rtol * exact


@pytest.mark.parametrize(("lr", "stop", "nit"), [
    (0.1, stops.MaxIter(5), 5),
    (0.1, stops.LossBelow(1e9), 0),  # stops at the start
    (2.0, stops.MaxIter(3), 3),  # every step makes it worse: the best point is the start
], ids=["descends", "no iteration", "best at the start"])
def test_a_large_start_is_read_in_place_never_written_nor_returned(lr, stop, nit):
    """A tensor of x0 with SHARED_NUMEL elements or more is the start itself (no private copy
    held for the run): it is never written into, and no result tensor shares its storage, also
    when the result is the start (no iteration, or every step made it worse)."""
    from descend.objective import SHARED_NUMEL

    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(SHARED_NUMEL + 3, generator=g)
    t = torch.randn(SHARED_NUMEL + 3, generator=g)
    before = x0.clone()
    starts: list[int] = []

    def watch(s: LoopState) -> None:
        if s.iteration == 0:
            starts.append(s.values[0].data_ptr())

    res = descend.minimize(lambda x: ((x - t) ** 2).sum(), x0, rule="gd", lr=lr, stop=stop,
                           on_divergence="stop", observers=[watch])
    assert res.nit == nit
    assert starts[0] == x0.data_ptr()  # read where it is
    assert torch.equal(x0, before)
    for out in (res.x, res.best_x):
        assert out.data_ptr() != x0.data_ptr()
    if nit != 5:
        assert torch.equal(res.best_x, before) and res.best_loss == res.history.loss[0]


@pytest.mark.parametrize("traced", [False, True], ids=["plain", "traced"])
def test_fit_writes_over_gradients_autograd_returns_as_views(monkeypatch, traced):
    """A linear layer's gradients come back from autograd as aliases of whole tensors (views of
    a matrix product's result, a bias's reshaped sum): ``fit`` still writes each next iterate
    over them, and trains the same weights as out of place, bit for bit; also under a trace
    hook that keeps every frame's locals alive (the bases' holders are counted alike)."""
    import sys

    X = torch.randn(96, 6, generator=torch.Generator().manual_seed(2))
    Y = X @ torch.linspace(-1, 1, 12).reshape(6, 2) + 0.1

    def train(in_place: bool) -> tuple[list[torch.Tensor], list[bool]]:
        monkeypatch.setattr(state, "IN_PLACE_NUMEL", 0 if in_place else 1 << 62)
        taken: list[bool] = []
        spent = LoopState.spent

        def spy(self, *dead):
            out = spent(self, *dead)
            taken.append(out is not None)
            return out

        monkeypatch.setattr(LoopState, "spent", spy)
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
        descend.fit(net, (X, Y), rule="momentum", lr=0.05, epochs=3, batch_size=32, seed=0,
                    progress=False)
        monkeypatch.setattr(LoopState, "spent", spent)
        return [p.detach().clone() for p in net.parameters()], taken

    if traced:
        old = sys.gettrace()
        sys.settrace(_keep_locals)  # (restored below)
    try:
        fast, taken = train(True)
    finally:
        if traced:
            sys.settrace(old)
    slow, _ = train(False)
    assert len(taken) == 9 and all(taken)
    assert all(torch.equal(a, b) for a, b in zip(fast, slow))


class _Keeper:
    """A user's object that keeps the tensor its custom gradient hands out."""

    def __init__(self) -> None:
        self.w = torch.linspace(-1, 1, 70_000)


_KEPT = torch.linspace(-2, 2, 70_000)
_OBJ = _Keeper()
_KEPT_2D = torch.linspace(-3, 3, 70_000).reshape(700, 100)


def _linear_with(grad: object) -> type[torch.autograd.Function]:
    """``f(x) = <c, x>`` whose backward returns ``grad()``: a tensor someone else holds."""

    class Linear(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return (x.reshape(-1) * _KEPT).sum()

        @staticmethod
        def backward(ctx, g):
            return grad()  # type: ignore[operator]

    return Linear


@pytest.mark.parametrize("grad", [
    lambda: _KEPT.view(700, 100),  # a view of a module-level tensor
    lambda: _KEPT.reshape(700, 100),  # (reshape of a contiguous tensor: a view too)
    lambda: _OBJ.w.view(700, 100),  # a view of an object's attribute
    lambda: _KEPT.view(700, 100).view(700, 100),  # a view of a view
    lambda: _KEPT_2D,  # the kept tensor itself
], ids=["view", "reshape", "attribute", "view-of-view", "itself"])
def test_a_gradient_that_is_a_view_of_a_kept_tensor_is_never_written_over(monkeypatch, grad):
    """A custom backward may return a view of a tensor it keeps: the update must not take that
    storage for the next iterate (the base's holders are counted), and the run equals the one
    out of place."""
    before = (_KEPT.clone(), _OBJ.w.clone(), _KEPT_2D.clone())
    fn = _linear_with(grad).apply
    x0 = torch.linspace(0, 1, 70_000).reshape(700, 100)
    fast = descend.minimize(fn, x0, rule="gd", lr=1e-3, stop=stops.MaxIter(4))
    assert all(torch.equal(a, b) for a, b in zip((_KEPT, _OBJ.w, _KEPT_2D), before))
    monkeypatch.setattr(state, "IN_PLACE_NUMEL", 1 << 62)
    slow = descend.minimize(fn, x0, rule="gd", lr=1e-3, stop=stops.MaxIter(4))
    assert torch.equal(fast.x, slow.x) and fast.nit == slow.nit == 4


class _Ascent(torch.autograd.Function):
    """``sum(x^2)`` whose gradient is reported with the wrong sign: no step along it helps."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x * x).sum()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return -2 * x * g


def test_gd_with_a_failing_search_does_not_restart(monkeypatch):
    """gd's direction is the gradient itself, so a step size that finds nothing ends the run
    without a restart (a restart re-scales a rule's direction; gd's would be the same line):
    the rule is set up once, also where ``s.grads`` hands out a new list at each read."""
    from descend.rules import GD

    inits: list[int] = []

    class Counted(GD):
        def init(self, values):
            inits.append(1)
            super().init(values)

    with pytest.warns(RuntimeWarning, match="step_failed"):
        res = descend.minimize(_Ascent.apply, torch.ones(4), rule=Counted(), lr="armijo",
                               max_iter=20, on_divergence="stop")
    assert res.nit == 0 and not res.success and len(inits) == 1
