"""least_squares and curve_fit against independent oracles: scipy.optimize's MINPACK
Levenberg-Marquardt (``least_squares(method="lm")``) and ``curve_fit``, and the optima published
with the Moré-Garbow-Hillstrom test set (MGH, ACM TOMS 7, 1981)."""

from __future__ import annotations

import math
import pickle
import re

import numpy as np
import pytest
import scipy.optimize as so
import torch
from torch import Tensor

import descend
from descend import store
from descend.errors import InputError
from descend.lsq import (
    CurveFit,
    GaussNewton,
    LevenbergMarquardt,
    covariance,
    curve_fit,
    jacobian,
    least_squares,
    solve_damped,
)
from descend.stops import REASONS

F64 = torch.float64


# ----------------------------------------------------------------- MGH residuals (float64)


def meyer(x: Tensor) -> Tensor:  # MGH 10
    t = 45 + 5 * torch.arange(1, 17, dtype=x.dtype)
    y = torch.tensor([34780, 28610, 23650, 19630, 16370, 13720, 11540, 9744, 8261, 7030, 6005,
                      5147, 4427, 3820, 3307, 2872], dtype=x.dtype)
    return x[0] * torch.exp(x[1] / (t + x[2])) - y


def box3d(x: Tensor) -> Tensor:  # MGH 12, m = 10
    t = 0.1 * torch.arange(1, 11, dtype=x.dtype)
    return (torch.exp(-t * x[0]) - torch.exp(-t * x[1])
            - x[2] * (torch.exp(-t) - torch.exp(-10 * t)))


def bard(x: Tensor) -> Tensor:  # MGH 8
    y = torch.tensor([0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96,
                      1.34, 2.10, 4.39], dtype=x.dtype)
    u = torch.arange(1, 16, dtype=x.dtype)
    v = 16 - u
    return y - (x[0] + u / (v * x[1] + torch.minimum(u, v) * x[2]))


def brown_badly_scaled(x: Tensor) -> Tensor:  # MGH 4
    return torch.stack([x[0] - 1e6, x[1] - 2e-6, x[0] * x[1] - 2])


def beale(x: Tensor) -> Tensor:  # MGH 5
    y = torch.tensor([1.5, 2.25, 2.625], dtype=x.dtype)
    i = torch.arange(1, 4, dtype=x.dtype)
    return y - x[0] * (1 - x[1] ** i)


def jennrich_sampson(x: Tensor) -> Tensor:  # MGH 6, m = 10
    i = torch.arange(1, 11, dtype=x.dtype)
    return 2 + 2 * i - (torch.exp(i * x[0]) + torch.exp(i * x[1]))


def kowalik_osborne(x: Tensor) -> Tensor:  # MGH 15
    y = torch.tensor([0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323,
                      0.0235, 0.0246], dtype=x.dtype)
    u = torch.tensor([4, 2, 1, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625],
                     dtype=x.dtype)
    return y - x[0] * (u * u + u * x[1]) / (u * u + u * x[2] + x[3])


def osborne1(x: Tensor) -> Tensor:  # MGH 17
    y = torch.tensor([0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784,
                      0.751, 0.718, 0.685, 0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522,
                      0.506, 0.490, 0.478, 0.467, 0.457, 0.448, 0.438, 0.431, 0.424, 0.420,
                      0.414, 0.411, 0.406], dtype=x.dtype)
    t = 10 * torch.arange(33, dtype=x.dtype)
    return y - (x[0] + x[1] * torch.exp(-t * x[3]) + x[2] * torch.exp(-t * x[4]))


#: name -> (residuals, standard start, f* = sum r^2 at the optimum as MGH publish it)
MGH = {
    "meyer": (meyer, [0.02, 4000.0, 250.0], 87.9458),
    "box3d": (box3d, [0.0, 10.0, 20.0], 0.0),
    "bard": (bard, [1.0, 1.0, 1.0], 8.21487e-3),
    "brown_badly_scaled": (brown_badly_scaled, [1.0, 1.0], 0.0),
    "beale": (beale, [1.0, 1.0], 0.0),
    "jennrich_sampson": (jennrich_sampson, [0.3, 0.4], 124.362),
    "kowalik_osborne": (kowalik_osborne, [0.25, 0.39, 0.415, 0.39], 3.07505e-4),
    "osborne1": (osborne1, [0.5, 1.5, -1.0, 0.01, 0.02], 5.46489e-5),
}

#: A zero-residual optimum is reached when the cost is below this (scipy reaches ~1e-32).
ZERO = 1e-20


def _scipy(fun, x0):
    return so.least_squares(lambda z: fun(torch.tensor(z, dtype=F64)).numpy(),
                            np.array(x0), method="lm")


def _same_optimum(cost: float, oracle: float, rel: float = 1e-6) -> bool:
    if oracle < ZERO:
        return cost < ZERO
    return abs(cost - oracle) <= rel * oracle


@pytest.mark.parametrize("name", sorted(MGH))
def test_lm_reaches_scipy_lm_optimum_on_mgh(name):
    fun, x0, f_star = MGH[name]
    start = torch.tensor(x0, dtype=F64)
    res = least_squares(fun, start)
    ref = _scipy(fun, x0)
    assert _same_optimum(res.loss, ref.cost), (res.loss, ref.cost)
    assert _same_optimum(2 * res.loss, f_star, rel=1e-5)  # MGH publish f = sum r^2 = 2 cost
    assert res.success and REASONS[res.reason][0], res.message
    assert res.rule == "lm" and "strong Wolfe" in res.step
    assert torch.equal(start, torch.tensor(x0, dtype=F64))  # x0 untouched


@pytest.mark.parametrize("name", ["meyer", "bard", "beale", "box3d", "osborne1"])
def test_gauss_newton_reaches_the_optimum_where_j_is_well_conditioned(name):
    fun, x0, _ = MGH[name]
    res = least_squares(fun, torch.tensor(x0, dtype=F64), rule="gauss-newton")
    assert _same_optimum(res.loss, _scipy(fun, x0).cost)
    assert res.success and res.rule == "gauss-newton"


def test_the_result_reads_like_scipys():
    res = least_squares(bard, torch.tensor([1.0, 1.0, 1.0], dtype=F64))
    ref = _scipy(bard, [1.0, 1.0, 1.0])
    # MINPACK stops at its xtol = 1e-8 with a finite-difference Jacobian: agree to that
    np.testing.assert_allclose(res.x.numpy(), ref.x, rtol=1e-6)
    np.testing.assert_allclose(res.fun.numpy(), ref.fun, atol=1e-6 * np.abs(ref.fun).max())
    np.testing.assert_allclose(res.jac.numpy(), ref.jac, atol=1e-6 * np.abs(ref.jac).max())
    assert res.cost == res.loss == pytest.approx(0.5 * float(res.fun @ res.fun), rel=1e-12)
    assert res.njev >= res.nit  # one per iteration (and restart) plus the final one
    assert repr(res).startswith("LeastSquaresResult(") is False  # Result's own repr
    assert pickle.loads(pickle.dumps(res)).loss == res.loss


def test_history_counts_and_monotone_cost():
    calls = [0]

    def counted(x):
        calls[0] += 1
        return osborne1(x)

    x0 = torch.tensor(MGH["osborne1"][1], dtype=F64)
    res = least_squares(counted, x0)
    h = res.history
    assert len(h.loss) == res.nit + 1 and h.iteration == list(range(res.nit + 1))
    assert h.loss[0] == pytest.approx(0.5 * float((osborne1(x0) ** 2).sum()), rel=1e-14)
    assert all(b <= a for a, b in zip(h.loss, h.loss[1:]))  # the line search is monotone
    # the last search (no acceptable step: the round-off stop) adds trials but no row
    assert h.nfev == sorted(h.nfev) and h.nfev[-1] <= res.nfev
    # every residual evaluation is accounted for: the up-front check, one per cost evaluation
    # (nfev, line-search trials included) and one per Jacobian (vmapped, njev)
    assert calls[0] == 1 + res.nfev + res.njev


def test_tuple_start_and_any_residual_shape():
    def split(ab):
        a, b = ab
        return beale(torch.stack([a[0], b[0, 0]])).reshape(3, 1)

    res = least_squares(split, (torch.ones(1, dtype=F64), torch.ones(1, 1, dtype=F64)))
    assert isinstance(res.x, tuple) and res.x[1].shape == (1, 1)
    assert res.loss < ZERO and res.success
    torch.testing.assert_close(torch.stack([res.x[0][0], res.x[1][0, 0]]),
                               torch.tensor([3.0, 0.5], dtype=F64))


def test_other_rules_minimise_the_same_cost():
    res = least_squares(beale, torch.tensor([1.0, 1.0], dtype=F64), rule="lbfgs")
    assert res.rule == "lbfgs" and res.loss < 1e-12


@pytest.mark.parametrize("mode", ["rev", "fwd", "auto"])
def test_jacobian_modes_agree_and_fall_back(mode):
    z = torch.tensor([0.5, 1.5, -1.0, 0.01, 0.02], dtype=F64)
    r, J = jacobian(osborne1, z, mode)
    ref = torch.autograd.functional.jacobian(osborne1, z)
    torch.testing.assert_close(J, ref)
    torch.testing.assert_close(r, osborne1(z))

    def untraceable(w):  # .item() cannot run under torch.func's vmap
        return osborne1(w) * (1.0 if w[0].item() > 0 else -1.0)

    _, J2 = jacobian(untraceable, z, mode)
    torch.testing.assert_close(J2, ref)


def test_lm_state_dict_round_trip():
    fun = meyer
    x = torch.tensor([0.02, 4000.0, 250.0], dtype=F64)
    rule = LevenbergMarquardt()
    rule.bind(fun)
    rule.init([x])
    for _ in range(3):
        (u,) = rule.direction([x], [torch.zeros_like(x)])
        x = x - 0.5 * u  # a shortened step: lam grows
    sd = rule.state_dict()
    assert sd["step"] == 3 and sd["njev"] == 3 and sd["lam"] > 0 and sd["D"].shape == (3,)
    assert all(isinstance(v, (Tensor, int, float)) for v in sd.values())
    restored = pickle.loads(pickle.dumps(sd))
    (u1,) = rule.direction([x], [torch.zeros_like(x)])
    assert rule.state["step"] == 4 and sd["step"] == 3  # the dict is a copy
    other = LevenbergMarquardt()
    other.bind(fun)
    other.init([x])
    other.load_state_dict(restored)
    (u2,) = other.direction([x], [torch.zeros_like(x)])
    assert torch.equal(u1, u2) and other.state["lam"] == rule.state["lam"]


def test_lm_step_solves_the_damped_normal_equations():
    x = torch.tensor([1.0, 1.0, 1.0], dtype=F64)
    r, J = jacobian(bard, x)
    for rule in (LevenbergMarquardt(damping=0.3), GaussNewton()):
        rule.bind(bard)
        rule.init([x])
        (u,) = rule.direction([x], [J.T @ r])
        D2 = torch.diag((J * J).sum(0))
        lam = rule.damping
        torch.testing.assert_close((J.T @ J + lam * D2) @ u, J.T @ r)


def test_records(tmp_path):
    res = least_squares(beale, torch.tensor([1.0, 1.0], dtype=F64), record=tmp_path)
    (row,) = store.list_runs(tmp_path)
    run = store.open_run(tmp_path, row["id"])
    assert run.config["kind"] == "least_squares" and run.config["problem"] == "beale"
    assert run.result["nit"] == res.nit and run.result["loss"] == res.loss


# ----------------------------------------------------------------------- curve_fit


def _decay_data():
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 4, 50, dtype=F64)
    y = 2.5 * torch.exp(-1.3 * t) + 0.5 + 0.05 * torch.randn(50, generator=g, dtype=F64)
    sigma = 0.05 + 0.05 * torch.rand(50, generator=g, dtype=F64)
    return t, y, sigma


def decay(t, p):
    return p[0] * torch.exp(-p[1] * t) + p[2]


def _np_decay(t, a, b, c):
    return a * np.exp(-b * t) + c


def _np_decay_jac(t, a, b, c):
    e = np.exp(-b * t)
    return np.stack([e, -a * t * e, np.ones_like(t)], 1)


P0 = [1.0, 1.0, 0.0]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("absolute_sigma", [False, True])
def test_curve_fit_matches_scipy(weighted, absolute_sigma):
    t, y, sigma = _decay_data()
    s = sigma if weighted else None
    # the oracle with the exact Jacobian and tight tolerances (its default finite differences
    # carry ~1e-6 relative error into pcov)
    popt, pcov = so.curve_fit(_np_decay, t.numpy(), y.numpy(), p0=P0, jac=_np_decay_jac,
                              sigma=None if s is None else s.numpy(),
                              absolute_sigma=absolute_sigma, xtol=1e-15, ftol=1e-15, gtol=1e-15)
    p0 = torch.tensor(P0, dtype=F64)
    fit = curve_fit(decay, t, y, p0, sigma=s, absolute_sigma=absolute_sigma)
    np.testing.assert_allclose(fit.popt.numpy(), popt, rtol=1e-6)
    np.testing.assert_allclose(fit.pcov.numpy(), pcov, rtol=1e-6)
    torch.testing.assert_close(fit.perr, fit.pcov.diagonal().sqrt())
    assert fit.result.success and torch.equal(p0, torch.tensor(P0, dtype=F64))
    got_popt, got_pcov = fit  # unpacks like scipy's pair
    assert got_popt is fit.popt and got_pcov is fit.pcov


def test_curve_fit_takes_scipy_style_models():
    t, y, _ = _decay_data()

    def unpacked(x, a, b, c):
        return a * torch.exp(-b * x) + c

    p0 = torch.tensor(P0, dtype=F64)
    a, b = curve_fit(decay, t, y, p0), curve_fit(unpacked, t, y, p0)
    torch.testing.assert_close(a.popt, b.popt)
    assert isinstance(a, CurveFit) and "popt=" in repr(a)


def test_covariance_is_inf_where_undefined():
    J = torch.tensor([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]], dtype=F64)  # rank 1
    assert torch.isinf(covariance(J, 1.0)).all()
    square = torch.eye(2, dtype=F64)
    assert torch.isinf(covariance(square, 1.0)).all()  # m == n: no residual variance
    torch.testing.assert_close(covariance(square, 1.0, absolute_sigma=True), square)


# ----------------------------------------------------------------------- bad inputs

X2 = torch.tensor([1.0, 1.0], dtype=F64)
T3 = torch.tensor([0.0, 1.0, 2.0], dtype=F64)
Y3 = torch.tensor([1.0, 0.5, 0.2], dtype=F64)
PP = torch.tensor([1.0, 1.0], dtype=F64)


def _exp(t, p):
    return p[0] * torch.exp(-p[1] * t)


BAD_LSQ = [
    (dict(residuals=3, x0=X2), "residuals must be callable, got int"),
    (dict(residuals=beale, x0=torch.nn.Linear(2, 1)),
     "least_squares takes tensors as x0, not an nn.Module; pass its parameters as a dict of "
     "tensors, or train it with descend.fit"),
    (dict(residuals=beale, x0=X2, args=[1]), "args must be a tuple, got list"),
    (dict(residuals=lambda x: [x[0]], x0=X2),
     "residuals must return a torch.Tensor of residuals, got list; build them from x with "
     "torch operations"),
    (dict(residuals=lambda x: torch.ones(3), x0=X2),
     "the residuals returned by residuals do not depend on x; compute them from the x it "
     "receives, without .detach(), .item() or numpy"),
    (dict(residuals=lambda x: x[:0], x0=X2),
     "residuals returned no residuals (shape (0,)); return one residual per observation"),
    (dict(residuals=lambda x: torch.log(x - 2), x0=X2),
     "residuals at x0 has 2 non-finite residual(s), first at index 0; start from a point "
     "where every residual is finite"),
    (dict(residuals=beale, x0=torch.ones(2, dtype=torch.int64)),
     "x0 must be a floating-point tensor, got dtype torch.int64; convert it first, e.g. "
     "x0.float()"),
    (dict(residuals=beale, x0=X2, rule="newton"), "unknown rule 'newton'; known rules: "),
]


@pytest.mark.parametrize(("kwargs", "msg"), BAD_LSQ, ids=[m[:30] for _, m in BAD_LSQ])
def test_least_squares_bad_inputs(kwargs, msg):
    with pytest.raises(InputError, match="^" + re.escape(msg)):
        least_squares(kwargs.pop("residuals"), kwargs.pop("x0"), **kwargs)


BAD_FIT = [
    (dict(p0=PP[None]), "p0 must be a 1-D floating tensor of starting parameters, got (1, 2) "
     "torch.float64; e.g. torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)"),
    (dict(ydata=torch.tensor([1, 0, 0])), "ydata must be a floating tensor, got dtype "
     "torch.int64; convert it with torch.as_tensor(ydata, dtype=p0.dtype)"),
    (dict(xdata=T3[:2]), "xdata has shape (2,) but ydata has 3 values; give one x per "
     "observation: shape (3,) or (k, 3)"),
    (dict(xdata=T3[:1], ydata=Y3[:1]), "curve_fit needs at least as many observations as "
     "parameters, got 1 values in ydata for 2 parameters in p0; add data or fix some "
     "parameters"),
    (dict(ydata=torch.tensor([1.0, math.nan, 0.2], dtype=F64)),
     "ydata has non-finite values (nan or inf); drop those observations"),
    (dict(sigma=torch.ones(2, dtype=F64)), "sigma must hold one standard deviation per "
     "observation, shape (3,) like ydata, got (2,) (a covariance matrix is not supported)"),
    (dict(sigma=torch.eye(3, dtype=F64)), "sigma must hold one standard deviation per "
     "observation, shape (3,) like ydata, got (3, 3) (a covariance matrix is not supported)"),
    (dict(sigma=torch.tensor([1.0, 0.0, 1.0], dtype=F64)),
     "sigma must be finite and > 0 everywhere, got min 0; drop observations with no "
     "uncertainty"),
    (dict(sigma=-1.0), "sigma must be finite and > 0 everywhere, got min -1; drop observations "
     "with no uncertainty"),
    (dict(model=lambda t, p: p[0] * torch.ones(2, dtype=F64)),
     "model(xdata, p0) returned (2,), but ydata has shape (3,); the model must predict one "
     "value per observation"),
]


@pytest.mark.parametrize(("kwargs", "msg"), BAD_FIT, ids=[m[:30] for _, m in BAD_FIT])
def test_curve_fit_bad_inputs(kwargs, msg):
    args = {"model": _exp, "xdata": T3, "ydata": Y3, "p0": PP, **kwargs}
    with pytest.raises(InputError, match="^" + re.escape(msg)):
        curve_fit(args.pop("model"), args.pop("xdata"), args.pop("ydata"), args.pop("p0"),
                  **args)


@pytest.mark.parametrize(("kwargs", "msg"), [
    (dict(damping=-1.0), "damping must be a finite number >= 0, got -1.0"),
    (dict(jacobian="numeric"), "jacobian must be one of auto, rev, fwd, got 'numeric'"),
])
def test_lm_hyper_parameters_are_checked(kwargs, msg):
    with pytest.raises(InputError, match="^" + re.escape(msg)):
        LevenbergMarquardt(**kwargs)


def test_lm_needs_the_residuals():
    with pytest.raises(InputError, match=re.escape(
            "rule 'lm' needs the residuals, not only the loss; use "
            "descend.least_squares(residuals, x0) or descend.curve_fit")):
        descend.minimize(lambda x: (beale(x) ** 2).sum(), X2, rule=LevenbergMarquardt())


def test_gauss_newton_solve_is_the_minimum_norm_solution_every_time():
    # beale at its start: the first Jacobian column is zero (rank 1); LAPACK's gelsy returned 0
    # now and then here, which made Gauss-Newton stop at its start
    A = torch.tensor([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0]], dtype=F64)
    r = torch.tensor([1.5, 2.25, 2.625], dtype=F64)
    want = torch.linalg.pinv(A) @ r
    for _ in range(300):
        torch.testing.assert_close(solve_damped(A, r, 0.0, 1e-15), want)
    damped = solve_damped(A, r, 0.1, 1e-15)
    torch.testing.assert_close((A.T @ A + 0.1 * torch.eye(2, dtype=F64)) @ damped, A.T @ r)


# ------------------------------------------- the badly scaled least-squares problems of the set

BADLY_SCALED = [3, 4, 6, 8, 10, 12, 15, 16, 17, 19, 20]


@pytest.mark.parametrize("number", BADLY_SCALED)
def test_least_squares_reaches_the_optimum_of_the_mgh_problem_to_six_digits(number):
    import scipy.optimize

    from descend.mgh import MGH

    p = MGH[number - 1]
    res = descend.least_squares(p.residuals, p.x0.clone())
    oracle = scipy.optimize.least_squares(
        lambda x: p.residuals(torch.tensor(x)).numpy(), p.x0.numpy(), method="lm",
        xtol=1e-15, ftol=1e-15, gtol=1e-15)
    f, f_ref = 2 * res.loss, 2 * oracle.cost
    assert res.success, res.message
    if f_ref > 1e-20:
        assert abs(f - f_ref) <= 1e-6 * f_ref, (f, f_ref)
        assert abs(f - p.f_star) <= 1e-5 * p.f_star  # the paper's six digits
    else:
        assert f <= 1e-20
