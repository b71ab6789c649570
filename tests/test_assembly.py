"""One assembly for every run: ``fit`` gets the engine ``minimize`` has (each defect of the
old second assembly, from its reproduction), results that pickle, and no global state changed."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import descend
from descend import steps, stops
from descend.errors import InputError
from descend.loop import DivergenceError, assemble
from descend.objective import Params
from descend.problems import NOTEBOOK_TARGET


def _diabetes() -> tuple[torch.Tensor, torch.Tensor, float]:
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    X, Y = torch.tensor(X), torch.tensor(y)[:, None]
    A = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)
    sol = torch.linalg.lstsq(A, Y).solution
    return X, Y, F.mse_loss(A @ sol, Y).item()


@pytest.mark.parametrize("rule", ["lbfgs", "bfgs"])
def test_fit_quasi_newton_on_the_full_batch_reaches_least_squares(rule):
    X, Y, optimum = _diabetes()
    net = torch.nn.Linear(10, 1).double()
    res = descend.fit(net, (X, Y), rule=rule, lr=None, batch_size=None, metrics=[])
    assert res.step == "strong Wolfe line search (lr0=1, c1=0.0001, c2=0.9)"
    with torch.no_grad():
        loss = F.mse_loss(net(X), Y).item()
    assert abs(loss - optimum) <= 1e-6 * optimum


@pytest.mark.parametrize(("lr", "first"), [(None, 1.0), (0.01, 0.01)])
def test_fit_lbfgs_always_gets_strong_wolfe(lr, first):
    X, Y, _ = _diabetes()
    res = descend.fit(torch.nn.Linear(10, 1).double(), (X, Y), rule="lbfgs", lr=lr,
                      batch_size=None, metrics=[], max_iter=2)
    assert res.step == f"strong Wolfe line search (lr0={first:g}, c1=0.0001, c2=0.9)"


@pytest.mark.parametrize("rule", ["lbfgs", "bfgs"])
def test_quasi_newton_on_mini_batches_is_refused_before_any_work(rule):
    X, Y, _ = _diabetes()
    net = torch.nn.Linear(10, 1).double()
    w0 = net.weight.detach().clone()
    with pytest.raises(InputError) as info:
        descend.fit(net, (X, Y), rule=rule, batch_size=64)
    assert str(info.value) == (
        f"rule {rule!r} needs the full batch (its curvature pairs and line search compare "
        "gradients on the same data), but batch_size=64 splits the training rows into 7 "
        "mini-batches; pass batch_size=None (--batch-size full) for the full batch, or use a "
        "first-order rule such as adam")
    assert torch.equal(net.weight, w0)


def _linear(noise: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The issue's reproduction: 2,000 rows, y linear in 4 columns plus noise."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(2000, 4, generator=g)
    Y = X @ torch.tensor([[1.5], [-2.0], [0.5], [3.0]]) + 0.7 + noise * torch.randn(
        2000, 1, generator=g)
    A = torch.cat([X, torch.ones(2000, 1)], 1).double()
    sol = torch.linalg.lstsq(A, Y.double()).solution
    return X, Y, F.mse_loss(A @ sol, Y.double()).item()


@pytest.mark.parametrize("lr", ["armijo", "wolfe"])
def test_a_stochastic_line_search_reaches_the_optimum_where_batches_agree(lr):
    # noise-free targets: every batch has the same minimiser (interpolation), so a line search
    # along each iteration's own batch converges to it
    X, Y, optimum = _linear(0.0)
    net = torch.nn.Linear(4, 1)
    res = descend.fit(net, (X, Y), rule="gd", lr=lr, metrics=[], epochs=5, batch_size=64)
    with torch.no_grad():
        loss = F.mse_loss(net(X), Y).item()
    # the optimum is 0 up to round-off: within 1e-6 of the target's variance (r2 > 1 - 1e-6)
    assert loss <= optimum + 1e-6 * Y.var(unbiased=False).item()
    assert res.reason != "step_failed"


@pytest.mark.parametrize("lr", ["armijo", "wolfe"])
def test_a_stochastic_line_search_on_noisy_data_no_longer_stops_after_three_steps(lr):
    # the old fit drew a new batch for every trial: step_failed after 3 iterations, r2 0.56
    X, Y, optimum = _linear(0.1)
    net = torch.nn.Linear(4, 1)
    res = descend.fit(net, (X, Y), rule="gd", lr=lr, metrics=[], epochs=5, batch_size=64)
    with torch.no_grad():
        loss = F.mse_loss(net(X), Y).item()
    r2 = 1 - loss / Y.var(unbiased=False).item()
    assert res.reason == "max_epochs" and res.nit == 5 * 32
    assert r2 > 0.998 and loss < 1.5 * optimum


@pytest.mark.parametrize("lr", ["armijo", "wolfe", "auto"])
def test_every_trial_of_a_line_search_sees_the_batch_of_its_iteration(lr):
    X, Y, _ = _linear(0.1)
    seen: list[tuple[float, ...]] = []

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append((len(y), *y[:4].flatten().tolist()))
        return F.mse_loss(out, y)

    res = descend.fit(torch.nn.Linear(4, 1), (X, Y), loss=loss_fn, rule="gd", lr=lr,
                      metrics=[], epochs=1, batch_size=500)
    h = res.history
    assert len(seen) == res.nfev == h.nfev[-1]
    for k in range(len(h) - 1):
        # evaluations nfev_k .. nfev_{k+1} - 1: the gradient at x_k and the trials along u_k
        batch = seen[h.nfev[k] - 1:h.nfev[k + 1] - 1]
        assert len(batch) >= 2 and len(set(batch)) == 1, k
        assert seen[h.nfev[k + 1] - 1] != batch[0]  # iteration k + 1 draws the next batch


def test_the_full_batch_is_drawn_once_and_an_accepted_trial_is_not_evaluated_again():
    X, Y, _ = _diabetes()
    res = descend.fit(torch.nn.Linear(10, 1).double(), (X, Y), rule="lbfgs", lr=None,
                      batch_size=None, metrics=[], max_iter=5)
    h = res.history
    assert all(h.nfev[k + 1] - h.nfev[k] == h.extra["ls_evals"][k + 1] for k in range(5))


def test_fit_gains_the_divergence_guard():
    X, Y, _ = _linear(0.1)
    with pytest.raises(DivergenceError):
        descend.fit(torch.nn.Linear(4, 1), (X, Y), rule="gd", lr=10.0, metrics=[],
                    on_divergence="raise", epochs=3)
    res = descend.fit(torch.nn.Linear(4, 1), (X, Y), rule="gd", lr=10.0, metrics=[], epochs=3)
    assert res.reason in ("diverged", "nonfinite") and not res.success
    chosen = descend.fit(torch.nn.Linear(4, 1), (X, Y), rule="gd", lr=None, batch_size=None,
                         metrics=[], max_iter=3)
    assert "backtrack" in chosen.history.extra  # the step was chosen: the guard backtracks
    with pytest.raises(InputError, match="on_divergence must be one of backtrack, stop, raise, "
                                         "got 'ignore'"):
        descend.fit(torch.nn.Linear(4, 1), (X, Y), on_divergence="ignore")


# (rule, lr) -> the step both front ends must resolve to, from the one policy
POLICY = [
    (None, None, "lbfgs", "strong Wolfe line search (lr0=1, c1=0.0001, c2=0.9)"),
    (None, "auto", "lbfgs", "strong Wolfe line search (lr0=1, c1=0.0001, c2=0.9)"),
    ("lbfgs", 0.5, "lbfgs", "strong Wolfe line search (lr0=0.5, c1=0.0001, c2=0.9)"),
    ("gd", None, "gd", "auto (curvature start, Barzilai-Borwein, non-monotone Armijo safeguard)"),
    (None, 0.1, "gd", "lr=0.1"),
    ("adam", "armijo", "adam", "Armijo backtracking (lr0=1, c1=0.0001, shrink=0.5)"),
]


@pytest.mark.parametrize(("rule", "lr", "name", "step"), POLICY)
def test_minimize_and_full_batch_fit_resolve_rule_and_lr_alike(rule, lr, name, step):
    X, Y, _ = _diabetes()
    m = descend.minimize(lambda w: F.mse_loss(X @ w, Y), torch.zeros(10, 1, dtype=X.dtype),
                         rule=rule, lr=lr, max_iter=1)
    net = torch.nn.Linear(10, 1).double()
    f = descend.fit(net, (X, Y), rule=rule, lr=lr, batch_size=None, metrics=[], max_iter=1)
    parts = assemble(Params(torch.zeros(2)), rule=rule, lr=lr)
    assert (m.rule, m.step) == (f.rule, f.step) == (name, step) == (parts.rule.name,
                                                                    parts.step.describe())


def test_epoch_criteria_are_refused_by_minimize_before_any_work():
    calls = []

    def f(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return (x ** 2).sum()

    with pytest.raises(InputError, match=r"^MaxEpochs counts epochs; it works only in "
                                         "descend.fit$"):
        descend.minimize(f, torch.ones(2), stop=stops.MaxEpochs(2))
    assert calls == []


def test_one_count_check_names_the_argument_it_checks():
    with pytest.raises(InputError, match=r"^memory must be a whole number >= 1, got 0$"):
        steps.Auto(memory=0)
    with pytest.raises(InputError, match=r"^max_evals must be a whole number >= 1, got 0$"):
        steps.Armijo(max_evals=0)
    with pytest.raises(InputError, match=r"^batch_size must be a whole number >= 1, got 0$"):
        descend.fit(torch.nn.Linear(1, 1), (torch.ones(2, 1), torch.ones(2, 1)), batch_size=0)


def test_a_result_pickles_and_keeps_a_diagnosis_already_computed():
    target = torch.tensor(NOTEBOOK_TARGET)
    res = descend.minimize(lambda x: F.mse_loss(x, target), torch.zeros(3, 3),
                           rule="gd", lr=1.0, stop=stops.LossBelow(1e-5))
    back = pickle.loads(pickle.dumps(res))
    assert torch.equal(back.x, res.x) and torch.equal(back.best_x, res.best_x)
    assert repr(back) == repr(res) and back.message == res.message
    assert repr(back.history.columns) == repr(res.history.columns)  # nan != nan
    assert back.explain().splitlines()[-1] == (
        "No diagnosis: the start's diagnosis was not computed before this Result was pickled, "
        "and a pickle keeps no objective; call res.diagnose() before pickling, or "
        "descend.diagnose(fn, x0, lr=...) on the objective")
    d = res.diagnose()
    again = pickle.loads(pickle.dumps(res))
    assert again.diagnose is not None and again.diagnose() == d
    assert again.explain() == res.explain()


def test_a_fit_result_pickles():
    X, Y, _ = _linear(0.1)
    res = descend.fit("linear", (X, Y), epochs=2, val=0.2)
    back = pickle.loads(pickle.dumps(res))
    for name in ("loss", "nit", "nfev", "reason", "message", "success", "epochs", "metrics",
                 "best_epoch", "best_val_loss", "rule", "step", "spec"):
        a, b = getattr(back, name), getattr(res, name)
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), name
    assert all(torch.equal(a, b) for a, b in zip(back.model.state_dict().values(),
                                                 res.model.state_dict().values()))
    assert np.array_equal(back.predict(X[:5]), res.predict(X[:5]))


def test_fit_leaves_the_global_generator_alone():
    X, Y, _ = _linear(0.1)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = descend.fit("linear", (X, Y), epochs=1, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = descend.fit("linear", (X, Y), epochs=1, seed=7)
    assert torch.equal(a.model.weight, b.model.weight)  # the seed still fixes the weights


def test_history_plot_leaves_the_matplotlib_backend_alone(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    try:
        matplotlib.use("svg")
        res = descend.minimize(lambda x: (x ** 2).sum(), torch.ones(2), rule="gd", lr=0.1,
                               max_iter=5)
        ax = res.history.plot()
        assert matplotlib.get_backend() == "svg" and ax.get_yscale() == "log"
        plt.close("all")
    finally:
        matplotlib.use(before)
