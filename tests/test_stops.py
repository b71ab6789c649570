"""Every stop reason fires exactly when it should (and not one iteration earlier)."""

from __future__ import annotations

import math
import time

import pytest
import torch

import descend
from descend import stops
from descend.errors import InputError
from descend.problems import notebook


def hand_gd(seed=0, lr=1.0, n=40):
    """Losses and gradient norms of plain gd on the notebook, by hand: rows 0..n."""
    p = notebook(seed)
    x = p.x0.clone()
    losses, gnorms = [], []
    for _ in range(n + 1):
        x.requires_grad_(True)
        loss = p.fn(x)
        (g,) = torch.autograd.grad(loss, x)
        losses.append(loss.item())
        gnorms.append(g.norm().item())
        x = (x - lr * g).detach()
    return p, losses, gnorms


@pytest.mark.parametrize("k", [1, 5, 12])
def test_loss_below_fires_at_the_first_loss_at_or_under_the_threshold(k):
    p, losses, _ = hand_gd()
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=1.0, stop=stops.LossBelow(losses[k]))
    assert (res.nit, res.reason, res.success) == (k, "loss_below", True)
    assert res.message == f"loss {losses[k]:.4e} is at or below the threshold {losses[k]:g}"


@pytest.mark.parametrize("k", [2, 9])
def test_grad_norm_below_fires_exactly(k):
    p, _, gnorms = hand_gd()
    tol = (gnorms[k] + gnorms[k - 1]) / 2  # between rows k-1 and k
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=1.0, stop=stops.GradNormBelow(tol))
    assert (res.nit, res.reason, res.success) == (k, "grad_small", True)
    assert res.history.grad_norm[k] == pytest.approx(gnorms[k], rel=1e-6)


@pytest.mark.parametrize("n", [1, 7, 30])
def test_max_iter_fires_after_n_updates(n):
    p = notebook(0)
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=0.1, stop=stops.MaxIter(n))
    assert (res.nit, res.reason, res.success) == (n, "max_iter", False)
    assert res.message == f"reached the iteration cap of {n} iterations"
    assert len(res.history) == n + 1


def test_every_run_is_bounded_by_the_default_cap():
    p = notebook(0)
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=9.0, stop=stops.LossBelow(0.0))
    assert (res.nit, res.reason) == (stops.DEFAULT_MAX_ITER, "max_iter")


def test_an_explicit_max_iter_criterion_replaces_the_default_cap():
    crit = stops.criteria_list([stops.MaxIter(20_000)])
    assert [c.n for c in crit if isinstance(c, stops.MaxIter)] == [20_000]


@pytest.mark.parametrize("n", [1, 5])
def test_max_evals_counts_the_start_too(n):
    p = notebook(0)
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=0.1, stop=stops.MaxEvals(n))
    assert (res.nfev, res.nit, res.reason) == (n, n - 1, "max_evals")


def test_no_improvement_fires_after_patience_flat_iterations():
    f = lambda x: (x.clamp(min=1.0) - 1.0).pow(2).sum() + 0 * x.sum()  # noqa: E731
    # from 1.5 gd (lr 0.25) reaches the flat region x <= 1 after one step, then stays
    res = descend.minimize(f, torch.tensor([1.5]), rule="gd", lr=1.0,
                           stop=stops.NoImprovement(patience=4, rtol=0.0))
    assert res.history.loss[:2] == [0.25, 0.0]
    assert (res.nit, res.reason, res.success) == (5, "no_improvement", False)


def test_time_limit_fires_on_the_first_record_past_the_limit():
    def slow(x):
        time.sleep(0.02)
        return (x**2).sum()

    res = descend.minimize(slow, torch.ones(2), rule="gd", lr=0.01,
                           stop=stops.TimeLimit(0.1))
    assert res.reason == "time_limit"
    assert res.history.time[-1] >= 0.1 > res.history.time[-2]


@pytest.mark.parametrize("at", [0, 3])
def test_a_callback_stops_the_run_by_raising_stop_iteration(at):
    def cb(s):
        if s.iteration == at:
            raise StopIteration

    p = notebook(0)
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=0.1, callback=cb)
    assert (res.nit, res.reason, res.success) == (at, "callback", True)


def test_nonfinite_loss_stops_and_returns_the_last_finite_point():
    # sqrt(x) from 1 with lr 1: x1 = 0.5, x2 = 0.5 - 0.5/sqrt(0.5) < 0 -> nan
    res = descend.minimize(lambda x: x.sqrt().sum(), torch.tensor([1.0]), rule="gd", lr=1.0)
    assert (res.nit, res.reason, res.success) == (2, "nonfinite", False)
    assert math.isnan(res.history.loss[-1])
    assert res.x.item() == 0.5 and res.loss == pytest.approx(math.sqrt(0.5))
    assert res.message.startswith("the loss or gradient became non-finite (nan or inf) at "
                                  "iteration 2")


def test_nonfinite_gradient_at_the_start_stops_at_once():
    res = descend.minimize(lambda x: x.abs().sqrt().sum(), torch.zeros(2), rule="gd", lr=1.0)
    assert (res.nit, res.reason) == (0, "nonfinite")
    assert torch.equal(res.x, torch.zeros(2))


def test_nonfinite_restores_a_module_to_the_last_finite_point():
    m = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(1.0)
    res = descend.minimize(lambda mod: mod.weight.sqrt().sum(), m, rule="gd", lr=1.0)
    assert res.reason == "nonfinite"
    assert m.weight.item() == 0.5 and res.x is m


def test_divergence_fires_at_the_first_loss_past_the_factor():
    p, losses, _ = hand_gd(lr=10.0, n=60)
    factor = 100.0
    k = next(i for i, v in enumerate(losses) if v > factor * losses[0])
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=10.0, stop=stops.Diverged(factor))
    assert (res.nit, res.reason, res.success) == (k, "diverged", False)
    assert res.loss == pytest.approx(losses[k], rel=1e-5)


def test_first_criterion_in_order_names_the_reason():
    p, losses, _ = hand_gd()
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=1.0,
                           stop=[stops.LossBelow(losses[3]), stops.MaxIter(3)])
    assert res.reason == "loss_below"


def test_every_reason_has_one_message_and_a_success_flag():
    for reason, (success, template) in stops.REASONS.items():
        assert isinstance(success, bool) and template, reason
    fired = {c.reason for c in (stops.LossBelow(0), stops.GradNormBelow(0),
                                stops.NoImprovement(), stops.MaxIter(1), stops.MaxEvals(1),
                                stops.TimeLimit(1), stops.Callback(print), stops.NonFinite(),
                                stops.Diverged(), stops.MaxEpochs(1), stops.TrainLossBelow(0),
                                stops.ValLossBelow(0), stops.EarlyStopping(), stops.StepFailed(),
                                stops.RoundOff(), stops.Stationary(), stops.Stalled())}
    assert fired == set(stops.REASONS)


BAD = [
    (lambda: stops.LossBelow(-1e-5), "threshold must be a finite number >= 0, got -1e-05"),
    (lambda: stops.LossBelow(float("nan")), "threshold must be a finite number >= 0, got nan"),
    (lambda: stops.MaxIter(0), "max_iter must be a whole number >= 1, got 0"),
    (lambda: stops.MaxEvals(2.5), "max_evals must be a whole number >= 1, got 2.5"),
    (lambda: stops.NoImprovement(patience=-3), "patience must be a whole number >= 1, got -3"),
    (lambda: stops.TimeLimit(0), "seconds must be a finite number > 0, got 0"),
    (lambda: stops.Diverged(0.5), "factor must be > 1, got 0.5"),
    (lambda: stops.Callback(3), "callback must be callable, got int"),
    (lambda: stops.criteria_list([print]), "stop must hold stopping criteria from "
     "descend.stops, got <built-in function print>; wrap a function with stops.Callback(fn)"),
]


@pytest.mark.parametrize(("make", "msg"), BAD, ids=[m for _, m in BAD])
def test_bad_criteria_are_named(make, msg):
    with pytest.raises(InputError) as e:
        make()
    assert str(e.value) == msg
