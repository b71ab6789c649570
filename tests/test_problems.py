"""The problem set: every stated optimum checked against an independent oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import rosen, rosen_der

from descend import problems
from descend.errors import InputError
from descend.problems import PROBLEMS, Problem

NAMES = [
    "notebook", "quadratic_k1", "quadratic_k1e2", "quadratic_k1e4", "rosenbrock_2",
    "rosenbrock_100", "diabetes_lstsq", "breast_cancer_logistic", "mlp_regression",
]


def grad_norm(p: Problem, x: object) -> float:
    leaves = [t.detach().clone().requires_grad_(True)
              for t in (x if isinstance(x, tuple) else (x,))]
    loss = p.fn(tuple(leaves) if isinstance(x, tuple) else leaves[0])
    grads = torch.autograd.grad(loss, leaves)
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))


def test_names_are_exactly_the_set() -> None:
    assert list(PROBLEMS) == NAMES


def test_get_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(InputError) as e:
        problems.get("rosenbrock_3")
    assert str(e.value) == "unknown problem 'rosenbrock_3'; known problems: " + ", ".join(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_problem_is_well_formed(name: str) -> None:
    p = problems.get(name)
    assert p.name == name
    x0 = p.x0 if isinstance(p.x0, tuple) else (p.x0,)
    dtype = torch.float32 if name == "notebook" else torch.float64
    assert all(t.dtype == dtype for t in x0)
    f0 = p.fn(p.x0)
    assert f0.dim() == 0 and f0.dtype == dtype and torch.isfinite(f0)
    assert p.threshold is not None and p.f_star < p.threshold < float(f0)
    assert not p.solved(float(f0)) and p.solved(p.threshold)


@pytest.mark.parametrize(
    ("name", "gtol"),
    [("notebook", 1e-7), ("quadratic_k1", 1e-12), ("quadratic_k1e2", 1e-12),
     ("quadratic_k1e4", 1e-12), ("rosenbrock_2", 0.0), ("rosenbrock_100", 0.0),
     ("diabetes_lstsq", 1e-9), ("breast_cancer_logistic", 1e-12)],
)
def test_stated_optimum_is_stationary_with_the_stated_loss(name: str, gtol: float) -> None:
    p = problems.get(name)
    assert grad_norm(p, p.x_star) <= gtol
    assert float(p.fn(p.x_star)) == p.f_star


@pytest.mark.parametrize("name", ["notebook", "rosenbrock_2", "rosenbrock_100"])
def test_zero_optimum_has_an_absolute_threshold(name: str) -> None:
    p = problems.get(name)
    assert p.f_star == 0.0
    assert p.threshold == {"notebook": 1e-5}.get(name, 1e-10)


@pytest.mark.parametrize(
    "name", ["quadratic_k1", "quadratic_k1e2", "quadratic_k1e4", "diabetes_lstsq",
             "breast_cancer_logistic"]
)
def test_nonzero_optimum_is_solved_at_relative_gap_1e_6(name: str) -> None:
    p = problems.get(name)
    assert p.threshold == pytest.approx(p.f_star + 1e-6 * abs(p.f_star), rel=0, abs=1e-15)


def test_notebook_start_is_the_seeded_rand_like() -> None:
    torch.manual_seed(3)
    expected = torch.rand(3, 3)
    p = problems.notebook(3)
    assert torch.equal(p.x0, expected)
    assert torch.equal(p.x_star, problems.notebook_target())
    assert p.target is not None and torch.equal(p.target, p.x_star)


@pytest.mark.parametrize(("name", "cond"), [("quadratic_k1", 1.0), ("quadratic_k1e2", 1e2),
                                            ("quadratic_k1e4", 1e4)])
def test_quadratic_hessian_has_the_stated_spectrum(name: str, cond: float) -> None:
    p = problems.get(name)
    hess = torch.autograd.functional.hessian(p.fn, p.x0).numpy()
    eig = np.sort(np.linalg.eigvalsh(hess))[::-1]
    spectrum = problems.quadratic_spectrum(cond, 100).numpy()
    np.testing.assert_allclose(eig, spectrum, rtol=1e-10, atol=1e-12)
    assert eig[0] / eig[-1] == pytest.approx(cond, rel=1e-9)
    # closed form: x* = A^{-1} b with b = -grad f(0); f* = -b'x*/2
    b = -torch.autograd.functional.jacobian(p.fn, p.x0).numpy()
    x_star = np.linalg.solve(hess, b)
    np.testing.assert_allclose(x_star, p.x_star.numpy(), rtol=1e-8, atol=1e-8)
    assert p.f_star == pytest.approx(-0.5 * b @ x_star, rel=1e-10)


@pytest.mark.parametrize("n", [2, 3, 100])
def test_rosenbrock_matches_scipy(n: int) -> None:
    p = problems.rosenbrock(n)
    assert p.x0.tolist() == ([-1.2, 1.0] * n)[:n]
    rng = np.random.default_rng(n)
    for x in [p.x0.numpy(), rng.normal(size=n), np.ones(n)]:
        xt = torch.tensor(x, requires_grad=True)
        loss = p.fn(xt)
        (g,) = torch.autograd.grad(loss, xt)
        assert float(loss.detach()) == pytest.approx(rosen(x), rel=1e-14, abs=0)
        np.testing.assert_allclose(g.numpy(), rosen_der(x), rtol=1e-12, atol=1e-12)


def test_rosenbrock_rejects_one_dimension() -> None:
    with pytest.raises(InputError) as e:
        problems.rosenbrock(1)
    assert str(e.value) == "rosenbrock needs n >= 2 dimensions, got 1"


def test_diabetes_optimum_matches_normal_equations_and_sklearn() -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import StandardScaler

    p = problems.diabetes_lstsq()
    x, y = load_diabetes(return_X_y=True)
    xs = StandardScaler().fit_transform(x)
    design = np.hstack([xs, np.ones((len(xs), 1))])
    w = np.linalg.solve(design.T @ design, design.T @ y)
    np.testing.assert_allclose(p.x_star.numpy(), w, rtol=1e-9, atol=1e-9)
    lr = LinearRegression().fit(xs, y)
    np.testing.assert_allclose(p.x_star.numpy(), np.append(lr.coef_, lr.intercept_), rtol=1e-8)
    assert p.f_star == pytest.approx(np.mean((design @ w - y) ** 2), rel=1e-12)


def test_breast_cancer_optimum_matches_sklearn() -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    p = problems.breast_cancer_logistic()
    x, y = load_breast_cancer(return_X_y=True)
    xs = StandardScaler().fit_transform(x)
    # mean log-loss + (lam/2)|w|^2 = lam * (C * sum log-loss + |w|^2/2) with C = 1/(n lam)
    clf = LogisticRegression(C=1 / (len(y) * problems.LOGISTIC_L2), tol=1e-12, max_iter=10_000)
    clf.fit(xs, y)
    w = np.append(clf.coef_.ravel(), clf.intercept_)
    np.testing.assert_allclose(p.x_star.numpy(), w, rtol=1e-5, atol=1e-5)
    # strictly convex: the Hessian at the optimum is positive definite
    hess = torch.autograd.functional.hessian(p.fn, p.x_star).numpy()
    assert np.linalg.eigvalsh(hess)[0] > 0


def test_mlp_floor_is_reached_by_lbfgs_and_never_beaten_by_much() -> None:
    p = problems.mlp_regression()
    assert p.f_star == problems.MLP_FLOOR
    assert p.threshold == pytest.approx(problems.MLP_FLOOR * 1.05, rel=1e-15)
    assert [tuple(t.shape) for t in p.x0] == [(4, 2), (4,), (4,), (1,)]
    params = [t.clone().requires_grad_(True) for t in p.x0]
    opt = torch.optim.LBFGS(params, lr=1, max_iter=100, history_size=50,
                            tolerance_grad=0.0, tolerance_change=0.0,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = p.fn(tuple(params))
        loss.backward()
        return loss

    opt.step(closure)
    loss = float(p.fn(tuple(params)).detach())
    assert p.solved(loss)
    assert loss >= problems.MLP_FLOOR * (1 - 1e-9)


def test_mlp_floor_is_what_its_stated_command_finds() -> None:
    # the run behind MLP_FLOOR (python -m descend.problems), cut at 1,000 iterations
    loss, gnorm = problems._mlp_floor(1000)
    assert loss == pytest.approx(problems.MLP_FLOOR, rel=1e-9)
    assert gnorm < 1e-8
