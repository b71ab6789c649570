"""Badly scaled curve fits from the NIST StRD nonlinear regression set, from their usual
starting values: the defaults of ``minimize`` and ``least_squares`` reach the certified residual
sum of squares to 6 digits, with a success reason; in float32 a failure says so and warns.

Data, starts and certified values are NIST's (https://www.itl.nist.gov/div898/strd/nls/),
as published in the dataset files BoxBOD.dat, Misra1a.dat and Rat43.dat.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import descend

T = torch.float64

NIST = {
    "BoxBOD": (lambda b, x: b[0] * (1 - torch.exp(-b[1] * x)),
               [[1.0, 1.0], [100.0, 0.75]], 1.1680088766e03,
               [(109, 1), (149, 2), (149, 3), (191, 5), (213, 7), (224, 10)]),
    "Misra1a": (lambda b, x: b[0] * (1 - torch.exp(-b[1] * x)),
                [[500.0, 1e-4], [250.0, 5e-4]], 1.2455138894e-01,
                [(10.07, 77.6), (14.73, 114.9), (17.94, 141.1), (23.93, 190.8),
                 (29.61, 239.9), (35.18, 289.0), (40.02, 332.8), (44.82, 378.4),
                 (50.76, 434.8), (55.05, 477.3), (61.01, 536.8), (66.40, 593.1),
                 (75.47, 689.1), (81.78, 760.0)]),
    "Rat43": (lambda b, x: b[0] / (1 + torch.exp(b[1] - b[2] * x)) ** (1 / b[3]),
              [[100.0, 10.0, 1.0, 1.0], [700.0, 5.0, 0.75, 1.3]], 8.7864049080e03,
              [(16.08, 1), (33.83, 2), (65.80, 3), (97.20, 4), (191.55, 5), (326.20, 6),
               (386.87, 7), (520.53, 8), (590.03, 9), (651.92, 10), (724.93, 11),
               (699.56, 12), (689.96, 13), (637.56, 14), (717.41, 15)]),
}
CASES = [(name, k) for name in NIST for k in (0, 1)]


def _problem(name: str) -> tuple:
    model, starts, rss, data = NIST[name]
    y = torch.tensor([d[0] for d in data], dtype=T)
    x = torch.tensor([d[1] for d in data], dtype=T)
    return model, starts, rss, x, y


@pytest.mark.parametrize(("name", "start"), CASES, ids=[f"{n}-start{k + 1}" for n, k in CASES])
def test_the_defaults_reach_the_certified_sum_of_squares(name, start):
    model, starts, rss, x, y = _problem(name)
    x0 = torch.tensor(starts[start], dtype=T)
    res = descend.minimize(lambda b: ((model(b, x) - y) ** 2).sum(), x0)
    assert res.success and res.reason in ("converged", "roundoff"), res.message
    assert abs(res.loss - rss) <= 1e-6 * rss
    lsq = descend.least_squares(lambda b: model(b, x) - y, x0)
    assert lsq.success, lsq.message
    assert abs(2 * lsq.loss - rss) <= 1e-6 * rss


def test_without_the_scaling_a_saturated_fit_is_no_success():
    # BoxBOD from start 2 without lbfgs's scaling: b2 runs off to ~24, the exponential
    # saturates, and the point is a slope that flattens out, not a minimum
    model, starts, rss, x, y = _problem("BoxBOD")
    res = descend.minimize(lambda b: ((model(b, x) - y) ** 2).sum(),
                           torch.tensor(starts[1], dtype=T),
                           rule=descend.rules.LBFGS(scale=False))
    assert (res.reason, res.success) == ("plateau", False)
    assert res.loss > 8 * rss
    assert "x is no minimum" in res.message and "the loss still falls" in res.message


def test_a_failed_unscaled_run_restarts_once_under_the_scaling():
    model, starts, rss, x, y = _problem("BoxBOD")
    res = descend.minimize(lambda b: ((model(b, x) - y) ** 2).sum(),
                           torch.tensor(starts[1], dtype=T))
    rows = res.history.extra["rescaled"]
    assert rows.count(1) == 1 and res.success
    k = rows.index(1)
    assert res.history.loss[k] == res.history.loss[0]  # back at the start
    assert res.history.iteration[k] == res.history.iteration[k - 1]  # not an iteration
    assert abs(res.loss - rss) <= 1e-6 * rss


def test_a_float32_failure_says_what_to_try_and_warns():
    model, starts, rss, x, y = _problem("Misra1a")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        res = descend.minimize(lambda b: ((model(b, x.float()) - y.float()) ** 2).sum(),
                               torch.tensor(starts[0]))
    if res.success:  # float32 happened to resolve it: then the point is the optimum
        assert abs(res.loss - rss) <= 1e-3 * rss
        assert not seen
    else:
        assert "try float64 (x0.double())" in res.message
        assert any(issubclass(w.category, RuntimeWarning) and "try float64" in str(w.message)
                   for w in seen)
