"""The compiled chunks of ``compile=True`` (:mod:`descend.chunks`) and the screened chunked
reads (:mod:`descend.screen`) give the numbers of the plain loop: the same reason, iteration and
evaluation counts, history and point (to rounding where the compiler fuses arithmetic)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from test_fast import CHUNKED, history_rows, quartic, start

import descend
from descend import chunks, stops
from descend.history import History
from descend.objective import Objective, Params
from descend.screen import quiet
from descend.state import Rows
from descend.steps import make_step

# ------------------------------------------------------------------ screened chunked reads


@pytest.mark.parametrize("k", [3, 64])
@pytest.mark.parametrize(("name", "kw"), CHUNKED,
                         ids=["loss_below", "grad_small", "max_iter", "no_improvement",
                              "diverged", "nonfinite", "backtrack", "schedule", "defaults"])
def test_screened_reads_stop_on_the_same_iterate(name, kw, k, monkeypatch):
    """Without observers the rows no criterion fires on are taken at once: the same run as
    reading every iteration, row for row (guards, backtracks and unscreened criteria too)."""
    extends = []
    real = History.extend
    monkeypatch.setattr(History, "extend",
                        lambda self, cols: (extends.append(len(cols["loss"])), real(self, cols)))
    res1 = descend.minimize(quartic, start(), **kw)
    assert not extends
    resk = descend.minimize(quartic, start(), read_every=k, **kw)
    assert res1.reason == resk.reason == name
    assert (resk.nit, resk.nfev, resk.message) == (res1.nit, res1.nfev, res1.message)
    assert history_rows(resk) == history_rows(res1)
    for key in ("a", "b"):
        assert torch.equal(resk.x[key], res1.x[key])
        assert torch.equal(resk.best_x[key], res1.best_x[key])
        assert torch.equal(resk.jac[key], res1.jac[key])
    # (the default criteria, Stationary and Stalled, and NoImprovement have no screen)
    assert bool(extends) == ("stop" in kw and name in ("loss_below", "grad_small", "nonfinite"))


INF, NAN = math.inf, math.nan


def rows(loss, gn=None, it0=1, best=INF, loss0=10.0) -> Rows:
    gn = gn if gn is not None else [1.0] * len(loss)
    b, bests = best, []
    for f, g in zip(loss, gn):
        b = f if f < b and math.isfinite(g) else b
        bests.append(b)
    n = len(loss)
    return Rows(list(range(it0, it0 + n)), loss, gn, list(range(it0 + 1, it0 + n + 1)), bests,
                loss0)


SCREENS = [
    ([stops.LossBelow(0.5)], rows([3.0, 2.0, 0.5, 0.1]), 2),
    ([stops.LossBelow(0.5)], rows([3.0, 2.0, 1.0]), 3),
    ([stops.GradNormBelow(0.1)], rows([3.0, 2.0, 1.0], [1.0, 0.1, 0.01]), 1),
    ([stops.MaxIter(12)], rows([3.0] * 5, it0=9), 3),
    ([stops.MaxEvals(12)], rows([3.0] * 5, it0=9), 2),
    ([stops.NonFinite()], rows([3.0, NAN, 1.0]), 1),
    ([stops.NonFinite()], rows([3.0, 2.0, 1.0], [1.0, 1.0, INF]), 2),
    # Diverged: a rise above the best of more than factor * max(|best|, |f0|, f0 - best)
    ([stops.Diverged(2.0)], rows([3.0, 1.0, 10.0, 25.0], loss0=5.0), 3),
    ([stops.Diverged(2.0)], rows([3.0, 1.0, 11.0, 0.5], loss0=5.0), 4),
    ([stops.NonFinite(), stops.LossBelow(0.5), stops.MaxIter(100)], rows([3.0, 0.4]), 1),
    ([stops.LossBelow(0.5), stops.Stalled()], rows([3.0, 2.0]), 0),  # Stalled: no screen
    ([stops.LossBelow(0.5), stops.Callback(print)], rows([3.0, 2.0]), 0),
]


@pytest.mark.parametrize(("criteria", "r", "expected"), SCREENS)
def test_quiet_counts_the_rows_no_criterion_fires_on(criteria, r, expected):
    assert quiet(criteria, r) == expected


# ------------------------------------------------------------------ compiled chunks

COMPILED = [
    ("gd", {"weight_decay": 0.1}, 0.1, stops.LossBelow(1.0)),
    ("momentum", {}, 0.05, stops.MaxIter(150)),
    ("nesterov", {"weight_decay": 0.01}, 0.05, stops.GradNormBelow(0.08)),
    ("adam", {"weight_decay": 0.1}, 0.05, stops.MaxIter(70)),
    ("adamw", {}, 0.05, stops.LossBelow(0.2)),
]


@pytest.mark.parametrize(("name", "hyper", "lr", "stop"), COMPILED,
                         ids=[f"{n}{h}" for n, h, _, _ in COMPILED])
def test_compiled_chunks_follow_the_eager_run(name, hyper, lr, stop):
    """Two tensors, every rule with a pure form, a stop inside a chunk (or the cap past one):
    the eager run's reason, counts and rows; its numbers to float32 rounding."""
    runs = [descend.minimize(quartic, start(), rule=descend.rules.RULES[name](**hyper), lr=lr,
                             stop=[stop, stops.MaxIter(300)], compile=flag)
            for flag in (False, True)]
    eager, compiled = runs
    assert compiled.reason == eager.reason == stop.reason
    assert (compiled.nit, compiled.nfev) == (eager.nit, eager.nfev)
    assert compiled.nit % chunks.CHUNK != 0 or compiled.reason == "max_iter"
    torch.testing.assert_close(compiled.history.tensor("loss"), eager.history.tensor("loss"),
                               rtol=1e-5, atol=1e-7)
    for key in ("a", "b"):
        torch.testing.assert_close(compiled.x[key], eager.x[key], rtol=1e-5, atol=1e-6)
    assert 0 < compiled.compile_seconds < compiled.seconds and eager.compile_seconds == 0


def test_compiled_chunks_backtrack_like_the_eager_run():
    """A step too long for the notebook: the guard backtracks (rows past a chunk's divergence
    are dropped, the step halves, the rule restarts) exactly as without compiling."""
    target = torch.linspace(0.1, 0.9, 9).reshape(3, 3)
    x0 = torch.rand(3, 3, generator=torch.Generator().manual_seed(0))
    runs = [descend.minimize(lambda x: torch.nn.functional.mse_loss(x, target), x0,
                             rule="momentum", lr=20.0, on_divergence="backtrack",
                             stop=stops.LossBelow(1e-8), compile=flag) for flag in (False, True)]
    eager, compiled = runs
    assert compiled.reason == eager.reason == "loss_below"
    assert (compiled.nit, compiled.nfev) == (eager.nit, eager.nfev)
    assert list(compiled.history.extra["backtrack"]) == list(eager.history.extra["backtrack"])
    assert sum(eager.history.extra["backtrack"]) >= 1
    torch.testing.assert_close(compiled.x, eager.x, rtol=1e-5, atol=1e-6)


def test_fn_the_compiler_cannot_take_whole_falls_back_with_a_warning():
    """A Python branch on a value: the chunks cannot compile, the run goes on compiling fn
    alone, with the eager run's result."""
    target = torch.linspace(0.1, 0.9, 9).reshape(3, 3)

    def fn(x):
        loss = torch.nn.functional.mse_loss(x, target)
        return loss * 2 if loss.item() > 100 else loss

    x0 = torch.rand(3, 3, generator=torch.Generator().manual_seed(0))
    eager = descend.minimize(fn, x0, rule="gd", lr=1.0, stop=stops.LossBelow(1e-6))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = descend.minimize(fn, x0, rule="gd", lr=1.0, stop=stops.LossBelow(1e-6),
                                    compile=True)
    said = [str(w.message) for w in caught if "compile=True" in str(w.message)]
    assert len(said) == 1 and said[0].startswith(
        "descend: compile=True could not compile the iterations whole (")
    assert said[0].endswith("; fn is compiled alone instead, which saves less: keep fn free of "
                            ".item(), numpy and Python branches on tensor values to compile "
                            "the whole loop")
    assert (compiled.reason, compiled.nit, compiled.nfev) == (eager.reason, eager.nit, eager.nfev)
    torch.testing.assert_close(compiled.x, eager.x)


def qualifies(x0, rule, lr, compile=True, checkpoints=None) -> bool:
    params = Params(x0)
    objective = Objective(lambda x: (x ** 2).sum(), params, compile=compile)
    the_rule = descend.rules.make_rule(rule)
    return chunks.make(objective, the_rule, make_step(lr, the_rule), checkpoints) is not None


QUALIFY = [
    (torch.ones(3), "gd", 0.1, {}, True),
    (torch.ones(3), "adamw", 0.1, {}, True),
    (torch.ones(3), "gd", 0.1, {"compile": False}, False),  # compile not asked for
    (torch.ones(3), "rmsprop", 0.1, {}, False),  # no pure form here
    (torch.ones(3), descend.rules.Momentum(dampening=0.5), 0.1, {}, False),
    (torch.ones(3), "gd", "auto", {}, False),  # a line search reads losses between rows
    (torch.ones(3), "gd", lambda k: 0.1, {}, False),  # a schedule
    (torch.ones(chunks.MAX_NUMEL + 1), "gd", 0.1, {}, False),  # large: fn compiled alone
    (torch.nn.Linear(2, 1), "gd", 0.1, {}, False),  # a module
    (torch.ones(3), "gd", 0.1, {"checkpoints": object()}, False),  # checkpoints
]


@pytest.mark.parametrize(("x0", "rule", "lr", "kw", "expected"), QUALIFY)
def test_which_runs_take_the_compiled_chunks(x0, rule, lr, kw, expected):
    assert qualifies(x0, rule, lr, **kw) is expected


def test_a_new_hyper_parameter_value_is_not_a_new_compile():
    """The hyper-parameters and lr enter the compiled iterations as tensors: a sweep over them
    compiles once (torch's own count of the graphs it compiled), and each run is its own."""
    from torch._dynamo.utils import counters

    target = torch.linspace(0.1, 0.9, 9).reshape(3, 3)
    x0 = torch.rand(3, 3, generator=torch.Generator().manual_seed(0))

    def run(mu, lr, flag=True):
        return descend.minimize(lambda x: torch.nn.functional.mse_loss(x, target), x0,
                                rule=descend.rules.Nesterov(momentum=mu, weight_decay=0.01),
                                lr=lr, stop=stops.MaxIter(70), compile=flag)

    run(0.5, 0.1)
    graphs = counters["stats"]["unique_graphs"]
    for mu, lr in ((0.7, 0.2), (0.9, 0.05)):
        res = run(mu, lr)
        torch.testing.assert_close(res.x, run(mu, lr, False).x, rtol=1e-5, atol=1e-6)
    assert counters["stats"]["unique_graphs"] == graphs
