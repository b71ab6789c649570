"""Quasi-Newton rules ``lbfgs`` and ``bfgs``: against torch.optim.LBFGS(strong_wolfe) and
scipy's L-BFGS-B (same optimum, comparable evaluations), their pair bookkeeping, dtype, and a
state_dict round trip that resumes identically."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.optimize
import torch
from steps_problems import Case, quadratic, rosenbrock

import descend
from descend import rules, steps, stops
from descend.errors import InputError
from descend.loop import LoopState
from descend.state import Line

CASES = {
    "quad_k1e3": functools.partial(quadratic, 1e3, 50),
    "rosen2": functools.partial(rosenbrock, 2),
    "rosen20": functools.partial(rosenbrock, 20),
}


def _torch_lbfgs(case: Case) -> tuple[torch.Tensor, int]:
    """torch.optim.LBFGS with the strong-Wolfe search: the point and the evaluations (closure
    calls) it needed to reach the case's threshold."""
    x = case.x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=500, max_eval=1000, history_size=10,
                            tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")
    losses: list[float] = []

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = case.fn(x)
        loss.backward()
        losses.append(loss.item())
        return loss

    opt.step(closure)
    reached = next(i + 1 for i, v in enumerate(losses) if v <= case.threshold)
    return x.detach(), reached


def _scipy_lbfgsb(case: Case) -> tuple[np.ndarray, int]:
    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        x = torch.tensor(z, dtype=torch.float64, requires_grad=True)
        loss = case.fn(x)
        (g,) = torch.autograd.grad(loss, x)
        return loss.item(), g.numpy()

    res = scipy.optimize.minimize(fun, case.x0.numpy(), jac=True, method="L-BFGS-B",
                                  options=dict(maxiter=10000, ftol=1e-16, gtol=1e-12))
    return res.x, res.nfev


@pytest.mark.parametrize("case_name", list(CASES))
@pytest.mark.parametrize("rule", ["lbfgs", "bfgs"])
def test_agrees_with_torch_lbfgs_and_scipy(rule, case_name):
    case = CASES[case_name]()
    res = descend.minimize(case.fn, case.x0, rule=rule, stop=stops.GradNormBelow(1e-8))
    assert res.reason == "grad_small"
    x_torch, evals_torch = _torch_lbfgs(case)
    x_scipy, _ = _scipy_lbfgsb(case)
    torch.testing.assert_close(res.x, x_torch, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.x, torch.from_numpy(x_scipy), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.x, case.x_star, atol=1e-6, rtol=1e-6)
    # comparable work to the threshold: within 1.5x of torch's implementation either way
    h = res.history
    evals = next(n for n, v in zip(h.nfev, h.loss) if v <= case.threshold)
    assert evals <= 1.5 * evals_torch + 2, (evals, evals_torch)
    assert evals_torch <= 1.5 * evals + 2, (evals, evals_torch)


def test_bfgs_needs_no_more_evaluations_than_plain_gd_with_the_same_search():
    case = quadratic(1e3, 50)
    stop = stops.LossBelow(case.threshold)
    qn = descend.minimize(case.fn, case.x0, rule="bfgs", stop=stop)
    assert qn.reason == "loss_below"
    gd = descend.minimize(case.fn, case.x0, rule="gd", lr="wolfe",
                          stop=[stop, stops.MaxEvals(3 * qn.nfev)])
    assert gd.reason == "max_evals"  # three times the budget is not enough for gd


def _points(case: Case, n: int) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]]:
    seen: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []

    def grab(s: LoopState) -> None:
        seen.append((s.values, s.grads))

    descend.minimize(case.fn, case.x0, rule="lbfgs", max_iter=n, observers=[grab])
    return seen


@pytest.mark.parametrize("cls", [rules.LBFGS, rules.BFGS])
def test_state_dict_round_trip_resumes_identically(cls):
    points = _points(rosenbrock(20), 25)
    a = cls(history_size=5) if cls is rules.LBFGS else cls()
    a.init(points[0][0])
    for v, g in points[:12]:
        a.direction(v, g)
    saved = a.state_dict()
    b = cls(history_size=5) if cls is rules.LBFGS else cls()
    b.init(points[0][0])
    b.load_state_dict(saved)
    first = None
    for v, g in points[12:]:
        ua, ub = a.direction(v, g), b.direction(v, g)
        first = first or ub
        assert all(torch.equal(x, y) for x, y in zip(ua, ub))
    # the saved state is a copy: running on did not change it
    c = cls(history_size=5) if cls is rules.LBFGS else cls()
    c.init(points[0][0])
    c.load_state_dict(saved)
    assert all(torch.equal(x, y) for x, y in zip(c.direction(*points[12]), first))


def test_a_whole_run_resumes_identically_from_rule_and_step_state():
    case = rosenbrock(20)
    full = _points(case, 30)
    # run 10 iterations, snapshot the rule and the line search, then drive the rest by hand
    snap: dict[str, object] = {}

    def grab(s: LoopState) -> None:
        if s.iteration == 10:
            snap["rule"], snap["step"] = s.rule.state_dict(), s.step.state_dict()

    descend.minimize(case.fn, case.x0, rule="lbfgs", max_iter=10, observers=[grab])
    rule, step = rules.LBFGS(), steps.StrongWolfe()
    rule.init(full[10][0])
    rule.load_state_dict(snap["rule"])
    step.reset()
    step.load_state_dict(snap["step"])
    from descend.objective import Objective, Params
    params = Params(case.x0)
    params.set(full[10][0])
    s = LoopState(Objective(case.fn, params), rule, step)
    s.values, s.grads = full[10]
    s.loss = case.fn(full[10][0][0]).item()
    for k in range(11, 31):
        u = rule.direction(s.values, s.grads)
        line = Line(s, u)
        alpha = step(s, u, line)
        assert alpha is not None
        new, known = line.accept(alpha)
        assert known is not None  # the accepted point was a trial: its loss and gradient kept
        loss_t, grads = known
        params.set(new)
        s.values, s.grads, s.loss = new, grads, loss_t.item()
        assert torch.equal(new[0], full[k][0][0]), k


def test_a_pair_without_positive_curvature_is_skipped():
    r = rules.LBFGS()
    x0, g0 = [torch.zeros(3, dtype=torch.float64)], [torch.ones(3, dtype=torch.float64)]
    r.init(x0)
    r.direction(x0, g0)
    x1 = [torch.full((3,), 0.5, dtype=torch.float64)]
    g1 = [torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64)]  # s.y = -0.25 < 0
    u = r.direction(x1, g1)
    assert r.state["skipped"] == 1 and r.state["s"] == []
    torch.testing.assert_close(u[0], g1[0] / g1[0].norm())


def test_lbfgs_with_a_number_uses_it_as_the_first_trial():
    # f = |x|^2 / 2 from |x0| = 200: the first direction is g/|g|, and a unit-length move of
    # 150 satisfies both Wolfe conditions, so the first trial is accepted as given
    res = descend.minimize(lambda x: 0.5 * (x ** 2).sum(), torch.full((4,), 100.0),
                           rule="lbfgs", lr=150.0, max_iter=1)
    assert res.step == "strong Wolfe line search (lr0=150, c1=0.0001, c2=0.9)"
    assert res.history.lr[1] == 150.0
    assert res.history.extra["ls_evals"][1] == 1


@pytest.mark.parametrize("rule", [rules.LBFGS, rules.BFGS])
def test_quasi_newton_steps_do_not_depend_on_the_units_of_x(rule):
    # the same problem in x and in x' = c * x (c per coordinate): with scale=True the rules take
    # the same iterates, up to the units, and the same number of evaluations
    c = torch.tensor([1e-3, 1.0, 1e4], dtype=torch.float64)
    t = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    A = torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]], dtype=torch.float64)

    def f(x: torch.Tensor) -> torch.Tensor:
        e = x - t
        return 0.5 * e @ A @ e + (e ** 4).sum()

    x0 = torch.tensor([5.0, 4.0, -3.0], dtype=torch.float64)
    a = descend.minimize(f, x0, rule=rule(scale=True), stop=stops.GradNormBelow(1e-10))
    b = descend.minimize(lambda z: f(z / c), x0 * c, rule=rule(scale=True),
                         stop=stops.GradNormBelow(1e-10))
    unscaled = descend.minimize(lambda z: f(z / c), x0 * c, rule=rule(scale=False),
                                stop=stops.GradNormBelow(1e-10), max_iter=200)
    torch.testing.assert_close(b.x / c, a.x, rtol=1e-8, atol=1e-8)
    assert abs(a.nfev - b.nfev) <= 2
    assert unscaled.nfev > 2 * b.nfev  # without the scaling the units cost evaluations


def test_multi_tensor_parameters_are_flattened_and_rebuilt():
    case = quadratic(100.0, 10)

    def split(p: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return case.fn(torch.cat([p[0].reshape(-1), p[1]]))

    x0 = (torch.zeros(2, 3, dtype=torch.float64), torch.zeros(4, dtype=torch.float64))
    res = descend.minimize(split, x0, stop=stops.LossBelow(case.threshold))
    assert res.reason == "loss_below"
    assert res.x[0].shape == (2, 3) and res.x[1].shape == (4,)
    torch.testing.assert_close(torch.cat([res.x[0].reshape(-1), res.x[1]]), case.x_star,
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("make", "msg"), [
    (lambda: rules.LBFGS(history_size=0), "history_size must be a whole number >= 1, got 0"),
    (lambda: descend.minimize(lambda x: (x ** 2).sum(), torch.zeros(10_001), rule="bfgs"),
     "rule 'bfgs' keeps an n x n matrix; n = 10001 parameters is above 10000: use "
     "rule='lbfgs'"),
    (lambda: descend.minimize(lambda x: (x.abs() ** 2).sum(), torch.zeros(3, dtype=torch.cfloat),
                              rule="lbfgs"),
     "rule 'lbfgs' needs real parameters, got a complex tensor"),
    (lambda: descend.minimize(lambda x: (x ** 2).sum(), torch.ones(3), rule="lbfgs",
                              lr=lambda k: 0.1),
     "rule 'lbfgs' needs the strong-Wolfe line search"),
])
def test_bad_quasi_newton_inputs(make, msg):
    with pytest.raises(InputError) as info:
        make()
    assert msg in str(info.value)
