"""diagnose: curvature from Hessian-vector products against dense Hessians (numpy), the
notebook's closed form (H = 2/9 I) and the iteration counts that runs and the notebook's own
loop observe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import descend
from descend import problems, stops
from descend.diagnose import Diagnosis, diagnose, lanczos_extremes
from descend.errors import InputError


def dense_spectrum(fn, x0) -> np.ndarray:
    """Eigenvalues of the dense Hessian (ascending), the oracle diagnose never builds."""
    if isinstance(x0, tuple):
        shapes = [t.shape for t in x0]
        sizes = [t.numel() for t in x0]
        flat = torch.cat([t.reshape(-1) for t in x0])

        def f(v):
            return fn(tuple(p.reshape(s) for p, s in zip(torch.split(v, sizes), shapes)))

        hess = torch.autograd.functional.hessian(f, flat)
    else:
        hess = torch.autograd.functional.hessian(fn, x0).reshape(x0.numel(), x0.numel())
    return np.linalg.eigvalsh(hess.double().numpy())


@pytest.mark.parametrize("name", ["quadratic_k1", "quadratic_k1e2", "quadratic_k1e4"])
def test_quadratics_L_and_mu_within_one_percent_of_the_true_eigenvalues(name):
    p = problems.get(name)
    d = diagnose(p.fn, p.x0)
    eig = dense_spectrum(p.fn, p.x0)
    assert pytest.approx(eig[-1], rel=1e-2) == d.L
    assert d.mu == pytest.approx(eig[0], rel=1e-2)
    cond = {"quadratic_k1": 1.0, "quadratic_k1e2": 1e2, "quadratic_k1e4": 1e4}[name]
    assert d.condition == pytest.approx(cond, rel=2e-2)
    assert d.convex and d.lr_max == pytest.approx(2 / eig[-1], rel=1e-2)
    assert d.hvps <= 100


@pytest.mark.parametrize(
    "name", ["rosenbrock_2", "rosenbrock_100", "diabetes_lstsq", "breast_cancer_logistic",
             "mlp_regression"])
def test_other_problems_extremes_match_the_dense_hessian(name):
    p = problems.get(name)
    d = diagnose(p.fn, p.x0)
    eig = dense_spectrum(p.fn, p.x0)
    assert pytest.approx(eig[-1], rel=1e-2) == d.L
    assert d.mu == pytest.approx(eig[0], rel=1e-2, abs=1e-2 * abs(eig[-1]) * 1e-6)
    assert d.convex == (eig[0] > 0)
    assert (d.condition == math.inf) == (eig[0] <= 0)


def test_rosenbrock_2_at_the_start_matches_the_closed_form_hessian():
    # H = [[1200 x^2 - 400 y + 2, -400 x], [-400 x, 200]] at (-1.2, 1)
    x, y = -1.2, 1.0
    eig = np.linalg.eigvalsh(np.array([[1200 * x * x - 400 * y + 2, -400 * x], [-400 * x, 200]]))
    p = problems.rosenbrock(2)
    d = diagnose(p.fn, p.x0)
    assert (d.mu, d.L) == pytest.approx(tuple(eig), rel=1e-12)
    assert d.exact and d.hvps == 2


def test_notebook_curvature_is_2_over_9_and_the_bound_is_9():
    p = problems.notebook(0)
    d = diagnose(p.fn, p.x0, lr=1.0, threshold=1e-5)
    assert pytest.approx(2 / 9, rel=1e-6) == d.L
    assert d.mu == pytest.approx(2 / 9, rel=1e-6)
    assert d.lr_max == pytest.approx(9.0, rel=1e-6)
    assert d.stable_range == (0.0, d.lr_max)
    assert d.lr_one_step == pytest.approx(4.5, rel=1e-6)
    assert d.lr_fastest == pytest.approx(4.5, rel=1e-6)
    assert d.condition == pytest.approx(1.0, rel=1e-6)
    assert d.contraction == pytest.approx(7 / 9, rel=1e-6)
    assert d.exact and d.hvps == 1  # H = (2/9) I: the first Krylov vector is an eigenvector
    assert d.loss == pytest.approx(float(p.fn(p.x0)), rel=1e-7)


@pytest.mark.parametrize("seed", range(8))
def test_notebook_prediction_at_lr_1_within_one_of_minimize_and_the_notebook_loop(seed, nb_loop):
    p = problems.notebook(seed)
    d = diagnose(p.fn, p.x0, lr=1.0, threshold=1e-5)
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=1.0, stop=stops.LossBelow(1e-5))
    _, iterates, _ = nb_loop(seed)
    assert res.reason == "loss_below"
    assert abs(d.iterations - res.nit) <= 1
    assert abs(d.iterations - len(iterates)) <= 1
    assert 18 <= d.iterations <= 21


@pytest.mark.parametrize("lr", [0.5, 2.0, 3.0, 4.5, 6.0, 8.0])
def test_notebook_prediction_within_one_at_other_stable_steps(lr):
    p = problems.notebook(1)
    d = diagnose(p.fn, p.x0, lr=lr, threshold=1e-5)
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=lr, stop=stops.LossBelow(1e-5))
    assert res.reason == "loss_below"
    assert abs(d.iterations - res.nit) <= 1
    assert d.contraction == pytest.approx(abs(1 - 2 * lr / 9), rel=1e-5, abs=1e-6)
    assert d.iterations_at(lr) == d.iterations


@pytest.mark.parametrize(("lr", "rho"), [(9.0, 1.0), (10.0, 11 / 9), (20.0, 31 / 9)])
def test_notebook_unstable_steps_never_reach_the_threshold(lr, rho):
    p = problems.notebook(0)
    d = diagnose(p.fn, p.x0, lr=lr, threshold=1e-5)
    assert d.contraction == pytest.approx(rho, rel=1e-6)
    assert d.iterations == math.inf


def test_already_below_the_threshold_predicts_zero():
    p = problems.notebook(0)
    d = diagnose(p.fn, p.x0, lr=1.0, threshold=1.0)
    assert d.iterations == 0 and d.iterations_fastest == 0


@pytest.mark.parametrize("name", ["quadratic_k1", "quadratic_k1e2"])
def test_quadratic_prediction_bounds_a_hand_written_gd_loop(name):
    # rho = max |1 - lr lambda| is the worst eigen-direction: the loop needs at most that many.
    p = problems.get(name)
    d = diagnose(p.fn, p.x0, lr=1.0, threshold=p.threshold, f_star=p.f_star)
    x, k = p.x0.clone(), 0
    while True:
        x = x.requires_grad_(True)
        loss = p.fn(x)
        if loss.item() <= p.threshold:
            break
        (g,) = torch.autograd.grad(loss, x)
        x = (x - 1.0 * g).detach()
        k += 1
    assert k <= d.iterations
    assert d.iterations == math.ceil(math.log(1e-6) / (2 * math.log(d.contraction)) - 1e-9)
    if name == "quadratic_k1":
        assert k == d.iterations == 1


def test_module_and_tuple_inputs_match_the_dense_hessian_and_are_not_changed():
    torch.manual_seed(0)
    x = torch.randn(50, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    model = nn.Linear(3, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d = diagnose(lambda m: F.mse_loss(m(x).squeeze(1), y), model)
    design = torch.cat([x, torch.ones(50, 1)], 1).double()
    eig = np.linalg.eigvalsh((2 / 50 * design.T @ design).numpy())
    assert pytest.approx(eig[-1], rel=1e-5) == d.L
    assert d.mu == pytest.approx(eig[0], rel=1e-5)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    p = problems.mlp_regression()
    x0 = tuple(t.clone() for t in p.x0)
    d = diagnose(p.fn, p.x0, lr=0.1, threshold=p.threshold)
    assert all(torch.equal(a, b) for a, b in zip(x0, p.x0))
    assert not d.convex and d.iterations is None and d.iterations_at(0.1) is None


def test_a_linear_function_has_zero_curvature():
    d = diagnose(lambda x: (3 * x).sum(), torch.ones(4), lr=1.0)
    assert (d.L, d.mu) == (0.0, 0.0)
    assert not d.convex and d.lr_max == math.inf and d.condition == math.inf


@pytest.mark.parametrize("k", [3, 10, 40])
def test_lanczos_ritz_values_lie_inside_the_spectrum_and_converge(k):
    lam = torch.linspace(-1.0, 5.0, 40, dtype=torch.float64)
    top, bottom, count, exact = lanczos_extremes(lambda v: lam * v, 40, max_iter=k, rtol=1e-12)
    assert bottom >= -1.0 - 1e-12 and top <= 5.0 + 1e-12
    assert count <= k and exact == (count == 40)
    if k == 40:
        assert (bottom, top) == pytest.approx((-1.0, 5.0), rel=1e-12)


def test_repr_and_str_say_local_estimate():
    p = problems.notebook(0)
    d = diagnose(p.fn, p.x0, lr=1.0, threshold=1e-5)
    assert isinstance(d, Diagnosis)
    assert repr(d).startswith("Diagnosis(local estimates: L=0.222222, mu=0.222222, "
                              "condition=1, lr_max=9, lr=1, contraction=0.777778, iterations=19")
    text = str(d)
    assert text.splitlines()[0].startswith("Diagnosis (local estimates at x0")
    assert "2/L ~ 9;" in text and "one-step lr 1/L ~ 4.5" in text
    assert "19 at lr = 1, 1 at the fastest lr" in text
    for name in ("L", "mu", "condition", "lr_max", "contraction", "iterations"):
        doc = Diagnosis.__doc__ or ""
        assert f"    {name}:" in doc
    assert "local estimate" in (Diagnosis.__doc__ or "")


def test_diagnose_is_exported():
    assert descend.diagnose is diagnose and descend.Diagnosis is Diagnosis


BAD = [
    ({"lr": -1.0}, "lr must be a finite number > 0, got -1.0"),
    ({"lr": math.nan}, "lr must be a finite number > 0, got nan"),
    ({"threshold": math.inf}, "threshold must be a finite number, got inf"),
    ({"threshold": "1e-5"}, "threshold must be a number, got '1e-5'"),
    ({"f_star": math.nan}, "f_star must be a finite number, got nan"),
    ({"max_iter": 0}, "max_iter must be a whole number >= 1, got 0"),
    ({"rtol": 0.0}, "rtol must lie in (0, 1), got 0.0"),
]


@pytest.mark.parametrize(("kw", "msg"), BAD, ids=[next(iter(k)) + str(v) for k, v in BAD])
def test_bad_arguments_are_named(kw, msg):
    p = problems.notebook(0)
    with pytest.raises(InputError) as e:
        diagnose(p.fn, p.x0, **kw)
    assert str(e.value) == msg


def test_bad_fn_gets_the_objective_contract_message():
    with pytest.raises(InputError) as e:
        diagnose(lambda x: x * 2, torch.ones(3))
    assert str(e.value) == ("fn must return a scalar loss, got a tensor of shape (3,); "
                            "reduce it, e.g. with .mean() or .sum()")
