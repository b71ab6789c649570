"""Every stop reason fires exactly when it should (and not one iteration earlier)."""

from __future__ import annotations

import math
import time

import pytest
import torch
from steps_problems import Flip

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
                                stops.RoundOff(), stops.Stationary(), stops.Stalled(),
                                stops.Plateau(), stops.Interrupted(), stops._NeverFinite())}
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


# ---------------------------------------------------------------- convergence you can trust


_T = torch.tensor([1.0, -2.0, 3.0])


@pytest.mark.parametrize(("rule", "lr"), [("gd", 0.1), ("adam", 0.1), ("momentum", 0.05),
                                          ("nesterov", 0.05), ("rmsprop", 0.01), ("gd", "bb"),
                                          ("gd", "armijo"), (None, None)])
def test_without_a_stop_a_finished_run_stops_with_a_success_reason(rule, lr):
    res = descend.minimize(lambda x: ((x - _T) ** 2).sum(), torch.zeros(3), rule=rule, lr=lr)
    assert res.success and res.reason in ("converged", "roundoff"), res
    assert res.nit < 1000
    torch.testing.assert_close(res.x, _T, atol=1e-3, rtol=0)


def test_a_stop_of_its_own_replaces_the_defaults_as_in_the_notebook():
    p = notebook()
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=1.0, stop=stops.LossBelow(1e-5))
    assert (res.reason, res.nit) == ("loss_below", 19)
    capped = descend.minimize(lambda x: ((x - _T) ** 2).sum(), torch.zeros(3), rule="gd",
                              lr=0.1, stop=stops.MaxIter(300))
    assert capped.reason == "max_iter" and capped.nit == 300


def test_a_success_reason_wins_over_a_cap_on_the_same_iteration():
    p = notebook()
    for stop in ([stops.MaxIter(19), stops.LossBelow(1e-5)],
                 [stops.LossBelow(1e-5), stops.MaxIter(19)],
                 stops.MaxIter(19) | stops.LossBelow(1e-5)):
        res = descend.minimize(p.fn, p.x0, rule="gd", lr=1.0, stop=stop)
        assert (res.reason, res.nit, res.success) == ("loss_below", 19, True)
    early = descend.minimize(p.fn, p.x0, rule="gd", lr=1.0,
                             stop=[stops.MaxIter(18), stops.LossBelow(1e-5)])
    assert (early.reason, early.nit, early.success) == ("max_iter", 18, False)


def test_all_of_fires_when_every_member_holds_and_says_so():
    p = notebook()
    both = stops.LossBelow(1e-3) & stops.GradNormBelow(1e-2)
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=1.0, stop=both)
    h = res.history
    k = next(i for i in range(len(h)) if h.loss[i] <= 1e-3 and h.grad_norm[i] <= 1e-2)
    assert res.nit == k and res.reason == "all_of" and res.success
    assert res.message.startswith("all of: loss ") and "; gradient norm " in res.message
    with pytest.raises(InputError, match=r"^AllOf needs at least two criteria, got 1$"):
        stops.AllOf(stops.MaxIter(3))
    with pytest.raises(InputError, match="AnyOf combines stopping criteria"):
        stops.AnyOf(stops.MaxIter(3), print)  # type: ignore[arg-type]


@pytest.mark.parametrize("shift", [-10.0, 0.0, 10.0])
def test_the_guard_measures_growth_for_any_sign_of_loss(shift):
    res = descend.minimize(lambda x: ((x - 1) ** 2).sum() + shift, torch.zeros(2), rule="adam",
                           lr=0.1)
    assert res.success and res.reason in ("converged", "roundoff"), res
    assert res.loss == pytest.approx(shift, abs=1e-5)
    assert 50 < res.nit < 1000


def test_rollback_rows_are_not_iterations():
    p = notebook()
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=10.0, stop=stops.LossBelow(1e-5),
                           on_divergence="backtrack")
    h = res.history
    back = h.extra["backtrack"]
    rows = [k for k, b in enumerate(back) if b == 1]
    assert rows and len(h) == res.nit + 1 + len(rows)
    assert all(h.iteration[k] == h.iteration[k - 1] for k in rows)
    assert h.iteration[-1] == res.nit
    assert res.nfev == res.nit + 1  # gd at a fixed lr: one evaluation per iteration


def test_a_point_that_is_not_stationary_never_reports_success():
    # the lying gradient: a line search finds no step, and the point is far from stationary
    res = descend.minimize(lambda x: Flip.apply(x).sum(), torch.ones(3, dtype=torch.float64),
                           rule="gd", lr="armijo")
    assert (res.reason, res.success) == ("step_failed", False)
    assert "try rescaling the parameters to similar sizes, checking the gradient" in res.message
    with pytest.warns(RuntimeWarning, match="try float64"):
        res32 = descend.minimize(lambda x: Flip.apply(x).sum(), torch.ones(3), rule="gd",
                                 lr="armijo")
    assert "try float64 (x0.double())" in res32.message


def test_the_first_order_test_is_scale_free():
    # the same problem with f multiplied by 1e6 and x by 1e-3: same iterations, same verdict
    def f(x: torch.Tensor) -> torch.Tensor:
        return ((x - torch.tensor([2.0, -1.0], dtype=x.dtype)) ** 2 * torch.tensor(
            [1.0, 30.0], dtype=x.dtype)).sum() + 0.5

    x0 = torch.tensor([5.0, 5.0], dtype=torch.float64)
    a = descend.minimize(f, x0, rule="gd", lr=0.01)
    # gd in z = x / 1e3 on 1e6 f: the same iterates with lr scaled by 1e-12
    b = descend.minimize(lambda z: 1e6 * f(z * 1e3), x0 * 1e-3, rule="gd", lr=1e-14)
    assert (a.reason, a.success) == (b.reason, b.success) == ("converged", True)
    assert abs(a.nit - b.nit) <= 1 and 100 < a.nit < 2000
