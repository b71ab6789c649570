"""Step-size strategies: their conditions hold at every accepted step (re-checked from the
recorded points, independently of the line search's own arithmetic), every strategy reaches the
optimum of quadratics and Rosenbrock, the dtype is kept, schedules and torch schedulers give
the steps they promise, and every bad input gets its message."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from steps_problems import NOTEBOOK_TARGET, Case, Flip, notebook, quadratic, rosenbrock

import descend
from descend import steps, stops
from descend.errors import InputError, InputTypeError
from descend.loop import LoopState
from descend.problems import PROBLEMS


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return sum(float((x * y).sum()) for x, y in zip(a, b))


class ConditionChecker:
    """An observer that re-derives each accepted step from the recorded points and checks the
    line-search conditions as inequalities: ``u = (x_{k-1} - x_k) / lr_k``,
    ``phi'(0) = -g_{k-1}.u``, ``phi'(lr) = -g_k.u``. ``memory > 1`` checks the non-monotone
    Armijo test against the largest of the last ``memory`` losses."""

    def __init__(self, c1: float, c2: float | None = None, memory: int = 1) -> None:
        self.c1, self.c2, self.memory = c1, c2, memory
        self.prev: tuple[list[torch.Tensor], list[torch.Tensor], float] | None = None
        self.losses: list[float] = []
        self.checked = 0
        self.violations: list[str] = []

    def __call__(self, s: LoopState) -> None:
        if self.prev is not None and math.isfinite(s.lr):
            xp, gp, _ = self.prev
            u = [(a - b) / s.lr for a, b in zip(xp, s.values)]
            d0, d = -_dot(gp, u), -_dot(s.grads, u)
            f_ref = max(self.losses[-self.memory:])
            slack = 1e-12 * max(abs(f_ref), 1e-30)
            if not s.loss <= f_ref + self.c1 * s.lr * d0 + slack:
                self.violations.append(f"armijo at {s.iteration}: {s.loss} > {f_ref} + "
                                       f"{self.c1} * {s.lr} * {d0}")
            if self.c2 is not None and not abs(d) <= self.c2 * abs(d0) * (1 + 1e-9):
                self.violations.append(f"curvature at {s.iteration}: |{d}| > {self.c2} |{d0}|")
            self.checked += 1
        self.prev = (s.values, s.grads, s.loss)
        self.losses.append(s.loss)


def _double_notebook() -> Case:
    c = notebook()
    t = NOTEBOOK_TARGET.double()
    return Case("notebook64", lambda x: F.mse_loss(x, t), c.x0.double(), t, 1e-12)


CONDITION_CASES = [_double_notebook, functools.partial(quadratic, 100.0), rosenbrock]
SEARCHES = [
    ("gd", lambda: steps.Armijo(), dict(c1=1e-4)),
    ("gd", lambda: steps.Armijo(10.0, c1=0.3, shrink=0.3), dict(c1=0.3)),
    ("gd", lambda: steps.StrongWolfe(), dict(c1=1e-4, c2=0.9)),
    ("gd", lambda: steps.StrongWolfe(c1=0.01, c2=0.1), dict(c1=0.01, c2=0.1)),
    ("lbfgs", lambda: steps.StrongWolfe(), dict(c1=1e-4, c2=0.9)),
    ("bfgs", lambda: steps.StrongWolfe(), dict(c1=1e-4, c2=0.9)),
    ("lbfgs", lambda: steps.StrongWolfe(c1=0.1, c2=0.5), dict(c1=0.1, c2=0.5)),
    ("gd", lambda: steps.Auto(), dict(c1=1e-4, memory=10)),
    ("momentum", lambda: steps.Armijo(), dict(c1=1e-4)),
    ("adam", lambda: steps.Auto(memory=1), dict(c1=1e-4)),
]


@pytest.mark.parametrize("make_case", CONDITION_CASES, ids=["notebook64", "quad_k100", "rosen2"])
@pytest.mark.parametrize(("rule", "make_step", "cond"), SEARCHES)
def test_line_search_conditions_hold_at_every_accepted_step(make_case, rule, make_step, cond):
    case = make_case()
    checker = ConditionChecker(**cond)
    res = descend.minimize(case.fn, case.x0, rule=rule, lr=make_step(),
                           stop=stops.LossBelow(case.threshold), max_iter=300,
                           observers=[checker])
    assert checker.violations == []
    assert checker.checked == res.nit > 0
    # the line search counted its trials: nfev grows by the trials of each step
    h = res.history
    trials = h.extra["ls_evals"]
    for k in range(1, len(h)):
        assert h.nfev[k] - h.nfev[k - 1] >= trials[k]
    assert res.nfev == h.nfev[-1]


# every strategy x every problem: the optimum is reached (gd direction; guard on)
STRATEGIES = {
    "armijo": steps.Armijo,
    "wolfe": steps.StrongWolfe,
    "polyak": steps.Polyak,
    "bb_long": lambda: steps.BarzilaiBorwein("long"),
    "bb_short": lambda: steps.BarzilaiBorwein("short"),
    "bb_alternate": lambda: steps.BarzilaiBorwein("alternate"),
    "adaptive": steps.AdaptiveGD,
    "auto": steps.Auto,
}
REACH_CASES = {
    "quad_k1": lambda: quadratic(1.0),
    "quad_k100": lambda: quadratic(100.0),
    "rosen2": lambda: rosenbrock(2),
}


@pytest.mark.parametrize("case_name", list(REACH_CASES))
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_strategy_reaches_the_optimum(strategy, case_name):
    case = REACH_CASES[case_name]()
    threshold = 1e-6 if case_name == "rosen2" else case.threshold
    res = descend.minimize(case.fn, case.x0, rule="gd", lr=STRATEGIES[strategy](),
                           stop=stops.LossBelow(threshold), max_iter=40_000,
                           on_divergence="backtrack")
    assert res.reason == "loss_below", res
    tol = 3e-3 if case_name == "rosen2" else 1e-4
    torch.testing.assert_close(res.x, case.x_star, atol=tol * 10, rtol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("lr", ["auto", "armijo", "wolfe", "polyak", "bb", "adaptive"])
@pytest.mark.parametrize("rule", ["gd", "lbfgs", "bfgs"])
def test_dtype_of_x0_is_kept(rule, lr, dtype):
    if rule != "gd" and lr != "auto":
        lr = 1.0  # quasi-Newton rules take a number as the first trial of their line search
    case = quadratic(10.0, dtype=dtype)
    seen: set[torch.dtype] = set()

    def watch(s: LoopState) -> None:
        seen.update(v.dtype for v in s.values)
        seen.update(g.dtype for g in s.grads)

    res = descend.minimize(case.fn, case.x0, rule=rule, lr=lr, max_iter=20, observers=[watch])
    assert res.x.dtype == dtype
    assert seen == {dtype}


def test_auto_needs_at_most_three_iterations_on_the_notebook():
    case = notebook()
    res = descend.minimize(case.fn, case.x0, rule="gd", stop=stops.LossBelow(1e-5))
    assert res.reason == "loss_below"
    assert res.nit <= 3
    assert res.step.startswith("auto")


def test_default_method_is_lbfgs_with_strong_wolfe_and_says_so():
    case = quadratic(100.0)
    res = descend.minimize(case.fn, case.x0, stop=stops.LossBelow(case.threshold))
    assert (res.rule, res.reason) == ("lbfgs", "loss_below")
    assert res.step.startswith("strong Wolfe")
    assert descend.minimize(case.fn, case.x0, rule="gd", max_iter=2).step.startswith("auto")
    assert descend.minimize(case.fn, case.x0, lr=0.01, max_iter=2).rule == "gd"


def test_gd_with_a_number_is_the_notebook_bit_for_bit():
    case = notebook()
    res = descend.minimize(case.fn, case.x0, rule="gd", lr=1.0, stop=stops.LossBelow(1e-5))
    x = case.x0.clone().requires_grad_(True)
    loss = F.mse_loss(x, NOTEBOOK_TARGET)
    n = 0
    while loss > 1e-5:
        n += 1
        loss.backward()
        x = (x - 1.0 * x.grad).detach().requires_grad_(True)
        loss = F.mse_loss(x, NOTEBOOK_TARGET)
    assert res.nit == n == 19
    assert torch.equal(res.x, x.detach())
    assert res.history.extra == {}  # nothing extra recorded on the notebook path


@pytest.mark.parametrize(("lr", "expected"), [
    (lambda k: 0.5 * 0.9 ** k, [0.5 * 0.9 ** k for k in range(6)]),
    (torch.optim.lr_scheduler.StepLR(torch.optim.SGD([torch.zeros(())], lr=0.4), 2, gamma=0.5),
     [0.4, 0.4, 0.2, 0.2, 0.1, 0.1]),
    (steps.TorchScheduler(lambda opt: torch.optim.lr_scheduler.StepLR(opt, 2, gamma=0.5),
                          lr=0.4), [0.4, 0.4, 0.2, 0.2, 0.1, 0.1]),
    (steps.TorchScheduler(functools.partial(torch.optim.lr_scheduler.ExponentialLR, gamma=0.5),
                          lr=1.0), [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125]),
])
def test_schedules_give_their_steps_and_reset_between_runs(lr, expected):
    case = quadratic(1.0)
    for _ in range(2):  # a second run starts the schedule again
        # a stop of its own: the default criteria would end the run at the optimum
        res = descend.minimize(case.fn, case.x0, rule="gd", lr=lr, stop=stops.MaxIter(6))
        assert res.history.lr[1:] == pytest.approx(expected, rel=1e-12)


def test_a_scheduler_instance_is_not_changed():
    opt = torch.optim.SGD([torch.zeros(())], lr=0.4)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
    case = quadratic(10.0)
    descend.minimize(case.fn, case.x0, rule="gd", lr=sched, max_iter=5)
    assert opt.param_groups[0]["lr"] == 0.4
    assert sched.last_epoch == 0


def test_plateau_scheduler_is_stepped_with_the_loss():
    case = quadratic(10.0)
    flat = lambda x: case.fn(x) * 0 + (x * 0).sum() + 1.0  # noqa: E731 - a constant loss
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        torch.optim.SGD([torch.zeros(())], lr=1.0), factor=0.5, patience=1)
    res = descend.minimize(flat, case.x0, rule="gd", lr=sched, stop=stops.MaxIter(6))
    oracle = torch.optim.lr_scheduler.ReduceLROnPlateau(
        torch.optim.SGD([torch.zeros(())], lr=1.0), factor=0.5, patience=1)
    expected = []
    for _ in range(6):  # torch's own semantics: step with the metric, then read the lr
        oracle.step(1.0)
        expected.append(oracle.optimizer.param_groups[0]["lr"])
    assert res.history.lr[1:] == expected
    assert expected[-1] < 1.0


@pytest.mark.parametrize(("kwargs", "exc", "msg"), [
    (dict(rule=torch.optim.SGD, lr="armijo"), InputError,
     "Armijo searches along the update, which rule 'torch.optim.SGD' cannot take (it updates "
     "in place); give it a number or a schedule as lr"),
    (dict(rule=torch.optim.SGD, lr="auto"), InputError,
     "Auto searches along the update, which rule 'torch.optim.SGD' cannot take (it updates "
     "in place); give it a number or a schedule as lr"),
    (dict(rule="lbfgs", lr="armijo"), InputError,
     "rule 'lbfgs' needs the strong-Wolfe line search (its curvature pairs need s.y > 0), got "
     "lr='Armijo backtracking (lr0=1, c1=0.0001, shrink=0.5)'; give lr as a number (the first "
     "trial step), 'auto' or steps.StrongWolfe(...)"),
    (dict(rule="gd", lr="fast"), InputError,
     "unknown lr 'fast'; known names: auto, armijo, wolfe, polyak, bb, adaptive, or a number"),
    (dict(rule="gd", lr=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2)),
     InputTypeError, "is a scheduler factory without a base lr; use "
     "steps.TorchScheduler(factory, lr=0.1)"),
    (dict(rule="gd", lr=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 2)), InputTypeError,
     "failed when called as a schedule k -> lr"),
    (dict(rule="gd", on_divergence="ignore"), InputError,
     "on_divergence must be one of backtrack, stop, raise, got 'ignore'"),
])
def test_bad_inputs_get_their_message(kwargs, exc, msg):
    case = quadratic(10.0)
    with pytest.raises(exc) as info:
        descend.minimize(case.fn, case.x0, max_iter=3, **kwargs)
    assert msg in str(info.value)


@pytest.mark.parametrize(("make", "msg"), [
    (lambda: steps.Armijo(c1=1.5), "c1 must lie in (0, 1), got 1.5"),
    (lambda: steps.Armijo(growth=0.5), "growth must be >= 1, got 0.5"),
    (lambda: steps.Armijo(shrink=1.0), "shrink must lie in (0, 1), got 1.0"),
    (lambda: steps.StrongWolfe(c1=0.5, c2=0.4), "StrongWolfe needs c1 < c2, got c1=0.5, c2=0.4"),
    (lambda: steps.StrongWolfe(max_evals=0), "max_evals must be a whole number >= 1, got 0"),
    (lambda: steps.BarzilaiBorwein("medium"),
     "variant must be one of long, short, alternate, got 'medium'"),
    (lambda: steps.Polyak(f_star=math.nan), "f_star must be a finite number, got nan"),
    (lambda: steps.TorchScheduler(torch.optim.lr_scheduler.StepLR, lr=None),
     "needs the base lr: steps.TorchScheduler(factory, lr=0.1)"),
    (lambda: steps.TorchScheduler(lambda opt: 0.1, lr=0.1),
     "returned float, not a torch.optim.lr_scheduler"),
])
def test_bad_strategy_arguments_get_their_message(make, msg):
    with pytest.raises(InputError) as info:
        make()
    assert msg in str(info.value)


def test_a_failed_line_search_stops_with_its_reason():
    # a gradient that points the wrong way: no step along -u decreases f
    def lying(x: torch.Tensor) -> torch.Tensor:
        return Flip.apply(x).sum()

    res = descend.minimize(lying, torch.ones(3, dtype=torch.float64), rule="gd", lr="armijo")
    assert res.reason == "step_failed"
    assert not res.success
    assert res.nit == 0
    assert torch.equal(res.x, torch.ones(3, dtype=torch.float64))


def _below(threshold: float) -> stops.Criterion:
    """Stop at ``loss <= threshold`` (thresholds of the problem set may be negative)."""
    def check(s: LoopState) -> None:
        if s.loss <= threshold:
            raise StopIteration
    return stops.Callback(check)


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_lr_auto_alone_reaches_every_problem_of_the_set(name):
    p = PROBLEMS[name]()
    res = descend.minimize(p.fn, p.x0, lr="auto", stop=_below(p.threshold))
    assert res.reason == "callback" and p.solved(res.loss), res
    assert res.history.extra["backtrack"].count(1) == 0
    assert (res.rule, res.step.split(" ")[0]) == ("lbfgs", "strong")


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_gd_with_auto_steps_reaches_every_problem_of_the_set(name):
    p = PROBLEMS[name]()
    res = descend.minimize(p.fn, p.x0, rule="gd", stop=_below(p.threshold))
    assert res.reason == "callback" and p.solved(res.loss), res
    assert res.history.extra["backtrack"].count(1) == 0


@pytest.mark.parametrize("make_case", [functools.partial(quadratic, 100.0), rosenbrock],
                         ids=["quad_k100", "rosen2"])
def test_the_default_method_ends_converged_to_working_precision(make_case):
    case = make_case()
    res = descend.minimize(case.fn, case.x0)
    assert (res.reason, res.success) == ("converged", True)
    h = res.history
    assert h.grad_norm[-1] <= math.sqrt(torch.finfo(torch.float64).eps) * h.grad_norm[0]
    torch.testing.assert_close(res.x, case.x_star, atol=1e-6, rtol=1e-6)
