"""``compile=True`` with ``batched=True`` (:mod:`descend.batched_chunks`): the compiled
iterations stop every problem where the uncompiled batched run stops it, with the same reason,
counts and history, and the point to rounding; other runs compile ``fn`` alone; and repeated
compiled runs of many objectives in one process each compile whole."""

from __future__ import annotations

import warnings

import pytest
import torch

import descend
from descend import batched_chunks, batched_parts, chunks, stops
from descend.loop import assemble
from descend.objective import Params


def losses(x, t, w, c=None):
    """The notebook's MSE per problem, weighted; with ``c``, ``sqrt(x_00 + c)`` (times 0)
    turns a problem's loss nan once ``x_00`` falls below ``-c``."""
    out = w * ((x - t) ** 2).mean(dim=(1, 2))
    return out if c is None else out + 0.0 * torch.sqrt(x[:, 0, 0] + c)


def problems(K: int = 40):
    """K problems of different difficulty, one that diverges under a large step (weight 100),
    one pulled to a target where its loss turns nan (``x_00 < -1/2``), one too slow for the cap
    (weight 1e-3): starts and the ``args`` of :func:`losses`."""
    g = torch.Generator().manual_seed(1)
    X0, T = torch.rand(K, 3, 3, generator=g), torch.rand(K, 3, 3, generator=g)
    W = 0.05 + torch.rand(K, generator=g)
    C = torch.full((K,), 1e9)
    W[3], T[5, 0, 0], C[5], W[7] = 100.0, -3.0, 0.5, 1e-3
    return X0, (T, W, C)


STOP = [stops.LossBelow(1e-6), stops.GradNormBelow(1e-5)]
RULES = [  # (rule, lr, the reasons the table must show)
    ("gd", 1.0, {"loss_below", "diverged", "nonfinite", "max_iter"}),
    ("momentum", 0.3, {"loss_below", "diverged", "nonfinite", "max_iter"}),
    (descend.rules.AdamW(weight_decay=0.01), 0.05, {"loss_below", "nonfinite", "max_iter"}),
]


@pytest.mark.parametrize(("rule", "lr", "reasons"), RULES, ids=["gd", "momentum", "adamw"])
def test_compiled_batches_stop_every_problem_where_the_eager_batch_does(rule, lr, reasons):
    X0, args = problems()
    kw = dict(args=args, rule=rule, lr=lr, stop=STOP, max_iter=150, batched=True)
    eager = descend.minimize(losses, X0, **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = descend.minimize(losses, X0, compile=True, **kw)
    assert not [w for w in caught if "descend" in str(w.message)]
    assert set(eager.reason) == reasons
    assert compiled.reason == eager.reason
    assert torch.equal(compiled.nit, eager.nit) and torch.equal(compiled.nfev, eager.nfev)
    assert len(set(eager.nit.tolist())) > 5  # problems stop at many different iterations
    for got, want in ((compiled.x, eager.x), (compiled.best_x, eager.best_x),
                      (compiled.loss, eager.loss), (compiled.best_loss, eager.best_loss),
                      (compiled.jac, eager.jac), (compiled.grad_norm, eager.grad_norm)):
        # (Adam near its optimum divides rounding-sized gradients: 150 iterations there drift
        # by 1e-6 on points of order 1)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, equal_nan=True)
    for i in (0, 3, 5, 7):
        h, e = compiled[i].history, eager[i].history
        assert list(h.iteration) == list(e.iteration)
        torch.testing.assert_close(torch.tensor(list(h.loss)), torch.tensor(list(e.loss)),
                                   rtol=1e-5, atol=1e-7, equal_nan=True)
    assert compiled.compile_seconds > 0 and eager.compile_seconds == 0
    assert compiled[0].compile_seconds == compiled.compile_seconds


def test_gd_compiled_in_a_batch_takes_the_eager_iterates():
    """gd's update and the notebook's gradient compile to the eager arithmetic: the same
    points, bit for bit (with the problems finished at every width the batch passes through)."""
    g = torch.Generator().manual_seed(0)
    K = 300
    X0, T = torch.rand(K, 3, 3, generator=g), torch.rand(K, 3, 3, generator=g)
    W = torch.where(torch.rand(K, generator=g) < 0.1, 0.08, 1.0)
    kw = dict(args=(T, W), rule="gd", lr=1.0, stop=stops.LossBelow(1e-5), batched=True)
    eager = descend.minimize(losses, X0, **kw)
    compiled = descend.minimize(losses, X0, compile=True, **kw)
    assert torch.equal(compiled.nit, eager.nit) and int(eager.nit.max()) > 5 * int(
        eager.nit.min())
    assert torch.equal(compiled.x, eager.x) and torch.equal(compiled.best_x, eager.best_x)
    assert compiled.reason == eager.reason == ["loss_below"] * K


def test_a_batch_the_compiler_cannot_take_whole_goes_on_with_fn_compiled_alone():
    """A Python branch on a value: the compiled iterations cannot be captured, the run goes
    on (from the same point) with fn compiled alone, warned once, with the eager result."""
    X0, args = problems(12)

    def branchy(x, t, w, c):
        out = losses(x, t, w, c)
        return out * 2 if float(out.max()) > 1e6 else out

    kw = dict(args=args, rule="gd", lr=0.5, stop=stops.LossBelow(1e-6), max_iter=60,
              batched=True)
    eager = descend.minimize(branchy, X0, **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = descend.minimize(branchy, X0, compile=True, **kw)
    said = [str(w.message) for w in caught if "compile=True" in str(w.message)]
    assert len(said) == 1 and said[0].startswith(
        "descend: compile=True could not compile the batched iterations whole (")
    assert compiled.reason == eager.reason and torch.equal(compiled.nit, eager.nit)
    torch.testing.assert_close(compiled.x, eager.x, equal_nan=True)


def test_a_batch_outside_the_compiled_iterations_compiles_fn_alone():
    """The default method (L-BFGS with its line search) and the default criteria: fn alone
    is compiled; each problem ends as uncompiled."""
    g = torch.Generator().manual_seed(2)
    X0, T = torch.rand(16, 3, 3, generator=g), torch.rand(16, 3, 3, generator=g)
    W = 0.1 + torch.rand(16, generator=g)
    eager = descend.minimize(losses, X0, args=(T, W), batched=True)
    compiled = descend.minimize(losses, X0, args=(T, W), batched=True, compile=True)
    assert compiled.reason == eager.reason and all(compiled.success.tolist())
    assert torch.equal(compiled.nit, eager.nit)
    torch.testing.assert_close(compiled.x, eager.x, rtol=1e-4, atol=1e-5)
    assert compiled.compile_seconds > 0


def qualifies(rule, lr, stop, K=4, compile=True) -> bool:
    X0 = torch.rand(K, 3)
    batch = batched_parts.Batch(lambda x: (x ** 2).sum(1), X0, ())
    parts = assemble(Params(X0[:1].clone()), rule=rule, lr=lr, stop=stop, max_iter=None,
                     on_divergence="stop")
    batched_parts.Tests(parts.criteria, batch)  # (the checks solve runs first)
    return batched_chunks.make(batch, parts, compile) is not None


LOSS = stops.LossBelow(1e-6)
QUALIFY = [
    ("gd", 0.1, LOSS, {}, True),
    ("nesterov", 0.1, [LOSS, stops.GradNormBelow(1e-4), stops.MaxIter(9)], {}, True),
    ("adam", 0.1, LOSS, {"compile": False}, False),  # not asked for
    ("gd", 0.1, None, {}, False),  # the default criteria: Stationary, Stalled
    ("gd", 0.1, [LOSS, stops.Stalled()], {}, False),
    ("rmsprop", 0.1, LOSS, {}, False),  # no pure form
    (descend.rules.Momentum(dampening=0.5), 0.1, LOSS, {}, False),
    ("gd", "armijo", LOSS, {}, False),  # a line search per problem
    ("gd", lambda k: 0.1, LOSS, {}, False),  # a schedule
    ("lbfgs", "wolfe", LOSS, {}, False),
    ("gd", 0.1, LOSS, {"K": 1}, False),  # one problem: the working width would be 1
]


@pytest.mark.parametrize(("rule", "lr", "stop", "kw", "expected"), QUALIFY)
def test_which_batched_runs_take_the_compiled_iterations(rule, lr, stop, kw, expected):
    assert qualifies(rule, lr, stop, **kw) is expected


def test_compile_must_be_a_bool_in_a_batch_too():
    with pytest.raises(descend.errors.InputTypeError) as e:
        descend.minimize(lambda x: (x ** 2).sum(1), torch.ones(3, 2), batched=True,
                         compile="yes")
    assert str(e.value) == "compile must be True or False, got 'yes'"


def test_many_objectives_in_one_process_each_compile_whole():
    """Every run builds its compiled loop from the same source; past dynamo's recompile limit
    (set to 1 here, 8 by default) a run used to fail to compile and go on uncompiled with a
    misleading warning. Objectives from different sources keep apart, and one that meets the
    limit compiles afresh: no warning, single and batched, and the eager numbers."""
    target = torch.linspace(0.1, 0.9, 9).reshape(3, 3)
    x0 = torch.rand(3, 3, generator=torch.Generator().manual_seed(0))
    X0, (T, W, _) = problems(8)

    def single(c):
        def fn(x, c=c):
            return torch.nn.functional.mse_loss(x, target) * c
        return fn

    def batch(c):
        def fn(x, t, w, c=c):
            return losses(x, t, w) * c
        return fn

    with warnings.catch_warnings(record=True) as caught, torch._dynamo.config.patch(
            recompile_limit=1):
        warnings.simplefilter("always")
        for c in (1.0, 2.0, 3.0):  # the same source, a constant the graphs depend on
            one = dict(rule="gd", lr=0.5, stop=stops.LossBelow(1e-6))
            res = descend.minimize(single(c), x0, compile=True, **one)
            assert res.nit == descend.minimize(single(c), x0, **one).nit
            many = dict(args=(T, W), rule="gd", lr=0.5, stop=stops.LossBelow(1e-6),
                        max_iter=40, batched=True)
            resb = descend.minimize(batch(c), X0, compile=True, **many)
            assert torch.equal(resb.nit, descend.minimize(batch(c), X0, **many).nit)
    assert not [str(w.message) for w in caught if "descend" in str(w.message)]
    assert len(chunks._CODES) >= 2  # (one entry per objective source)


def test_a_float64_batch_of_two_tensors_compiles_whole_to_the_least_squares_optimum():
    """x0 a tuple (weights, bias) in float64, the data held by fn: the compiled batch takes
    its eager iterations, and every start ends at the least-squares solution (lstsq). (In
    float64 the start's losses in float64 are the losses themselves: the compiled loop's
    inputs must not alias.)"""
    g = torch.Generator().manual_seed(3)
    X = torch.randn(20, 3, generator=g, dtype=torch.float64)
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.3 + 0.1 * torch.randn(
        20, generator=g, dtype=torch.float64)

    def mse(p):
        w, b = p
        return ((X @ w.T + b - y[:, None]) ** 2).mean(0)

    K = 8
    starts = (torch.randn(K, 3, generator=g, dtype=torch.float64),
              torch.randn(K, generator=g, dtype=torch.float64))
    kw = dict(rule="gd", lr=0.2, stop=stops.GradNormBelow(1e-10), max_iter=3000, batched=True)
    eager = descend.minimize(mse, starts, **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = descend.minimize(mse, starts, compile=True, **kw)
    assert not [str(w.message) for w in caught if "descend" in str(w.message)]
    assert compiled.reason == eager.reason == ["grad_small"] * K
    assert torch.equal(compiled.nit, eager.nit)
    best = torch.linalg.lstsq(torch.cat([X, torch.ones(20, 1, dtype=torch.float64)], 1),
                              y[:, None]).solution.squeeze(1)
    for k in range(K):
        torch.testing.assert_close(compiled.x[0][k], best[:3], rtol=0, atol=1e-9)
        torch.testing.assert_close(compiled.x[1][k], best[3], rtol=0, atol=1e-9)
