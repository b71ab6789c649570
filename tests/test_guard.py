"""The divergence guard: backtrack (return to the best point, shrink the step, restart the rule,
record it), stop, raise; bounded backtracks; defaults."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from steps_problems import NOTEBOOK_TARGET, notebook, quadratic

import descend
from descend import loop, steps, stops
from descend.errors import InputError


def test_lr_10_on_the_notebook_converges_with_the_guard():
    case = notebook()
    res = descend.minimize(case.fn, case.x0, rule="gd", lr=10.0, stop=stops.LossBelow(1e-5),
                           on_divergence="backtrack")
    assert res.reason == "loss_below" and res.success
    torch.testing.assert_close(res.x, NOTEBOOK_TARGET, atol=1e-2, rtol=0)
    h = res.history
    marks = h.extra["backtrack"]
    assert len(marks) == len(h)
    rows = [k for k, m in enumerate(marks) if m == 1]
    assert len(rows) == 1  # lr 10 -> 5 is stable: |1 - 2*5/9| < 1
    k = rows[0]
    assert h.loss[k] == min(h.loss[:k])  # back at the best point (the start)
    assert math.isnan(h.lr[k])
    assert set(h.lr[k + 1:]) == {5.0}


def test_without_the_guard_lr_10_diverges():
    case = notebook()
    res = descend.minimize(case.fn, case.x0, rule="gd", lr=10.0, stop=stops.LossBelow(1e-5))
    assert res.reason == "diverged" and not res.success
    assert "backtrack" not in res.history.extra


def test_raise_names_the_iteration_and_the_loss():
    case = notebook()
    with pytest.raises(loop.DivergenceError) as info:
        descend.minimize(case.fn, case.x0, rule="gd", lr=10.0, on_divergence="raise")
    e = info.value
    assert not isinstance(e, InputError)
    assert e.reason == "diverged" and e.iteration == 23
    assert str(e).startswith(f"diverged at iteration 23 (loss {e.loss:.4e}): diverged: the loss")
    assert descend.DivergenceError is loop.DivergenceError


def test_backtracking_from_a_non_finite_loss():
    # f = |x|^2 while max |x_i| < 10, inf beyond: a large step lands outside
    def walled(x: torch.Tensor) -> torch.Tensor:
        wall = torch.where(x.detach().abs().max() < 10, 0.0, math.inf)
        return (x ** 2).sum() + wall

    x0 = torch.full((3,), 5.0, dtype=torch.float64)
    res = descend.minimize(walled, x0, rule="gd", lr=3.0, stop=stops.LossBelow(1e-12),
                           on_divergence="backtrack")
    assert res.reason == "loss_below"
    assert res.history.extra["backtrack"].count(1) >= 1
    stopped = descend.minimize(walled, x0, rule="gd", lr=3.0, on_divergence="stop")
    assert stopped.reason == "nonfinite"


def test_backtracks_are_bounded():
    # lr 1e9 on |x|^2 needs ~30 halvings to become stable: more than the guard allows
    res = descend.minimize(lambda x: (x ** 2).sum(), torch.ones(2, dtype=torch.float64),
                           rule="gd", lr=1e9, on_divergence="backtrack")
    assert res.reason in ("diverged", "nonfinite")
    assert res.history.extra["backtrack"].count(1) == loop.MAX_BACKTRACKS
    assert res.best_loss == 2.0


def test_the_guard_restarts_the_rule_state():
    case = notebook()
    restarts: list[int] = []

    class Counting(descend.rules.Momentum):
        def init(self, values):
            restarts.append(1)
            super().init(values)

    res = descend.minimize(case.fn, case.x0, rule=Counting(momentum=0.5), lr=20.0,
                           stop=stops.LossBelow(1e-5), on_divergence="backtrack")
    assert res.reason == "loss_below"
    assert len(restarts) == 1 + res.history.extra["backtrack"].count(1)


@pytest.mark.parametrize(("kwargs", "guarded"), [
    (dict(), True),                      # lbfgs, chosen for the user
    (dict(rule="gd"), True),             # lr auto
    (dict(rule="gd", lr="auto"), True),
    (dict(lr="auto"), True),
    (dict(rule="gd", lr=0.1), False),
    (dict(rule="gd", lr="armijo"), False),
    (dict(rule="gd", lr=0.1, on_divergence="backtrack"), True),
    (dict(on_divergence="stop"), False),
])
def test_backtrack_is_the_default_when_the_step_is_chosen_for_you(kwargs, guarded):
    case = quadratic(10.0)
    res = descend.minimize(case.fn, case.x0, max_iter=3, **kwargs)
    assert ("backtrack" in res.history.extra) is guarded


@pytest.mark.parametrize("strategy", [
    lambda: steps.Constant(20.0), lambda: steps.Schedule(lambda k: 20.0),
    lambda: steps.BarzilaiBorwein(lr0=20.0), lambda: steps.AdaptiveGD(lr0=20.0),
])
def test_every_strategy_recovers_from_a_too_large_step(strategy):
    t = NOTEBOOK_TARGET.double()
    res = descend.minimize(lambda x: F.mse_loss(x, t), notebook().x0.double(), rule="gd",
                           lr=strategy(), stop=stops.LossBelow(1e-10),
                           on_divergence="backtrack", max_iter=2000)
    assert res.reason == "loss_below", res
