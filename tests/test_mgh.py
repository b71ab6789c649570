"""The Moré-Garbow-Hillstrom set (:mod:`descend.mgh`) against independent implementations.

``REFERENCE_F0`` holds ``f(x0)`` at each standard start, computed from literal transcriptions
(a scratch script, not kept) of three independent public implementations:

* MINPACK-1's least-squares test functions ``ssqfcn`` and starts ``initpt`` (Garbow, Hillstrom,
  Moré, Argonne 1980), as in ``fortran-lang/minpack``, file ``test/test_lmder.f90``: problems
  1, 2, 6, 7, 8, 10, 12, 13, 15, 16, 17, 19, 20, 27, 32, 33, 34, 35;
* MINPACK-1's nonlinear-equation test functions ``vecfcn`` (the ``hybrd`` driver's, same
  authors): problems 3, 26, 28, 29, 30, 31, and 25 (``vecfcn`` holds the half gradient of the
  variably dimensioned function, checked against autograd below);
* the R package ``jlmelville/funconstrain`` (``R/04_brown_bs.R``, ``R/05_beale.R``,
  ``R/09_gauss.R``, ``R/11_gulf.R``, ``R/14_wood.R``, ``R/18_biggs_exp6.R``,
  ``R/21_ex_rosen.R``, ``R/22_ex_powell.R``, ``R/23_penalty_1.R``, ``R/24_penalty_2.R``):
  problems 4, 5, 9, 11, 14, 18, 21, 22, 23, 24.

All agree with descend's residuals to round-off (relative 1e-13 or better), at descend's sizes.
funconstrain starts Brown-Dennis (16) at ``x4 = +1``; MINPACK's ``initpt`` and the paper use
``x4 = -1``, as descend does.
"""

from __future__ import annotations

import math

import pytest
import torch

from descend import mgh as M
from descend import problems
from descend.errors import InputError

REFERENCE_F0 = {
    1: 24.2,
    2: 400.5,
    3: 1.1352617173483783,
    4: 999998000003.0,
    5: 14.203125,
    6: 4171.306161960492,
    7: 2500.0,
    8: 41.68169586167801,
    9: 3.888106991166885e-06,
    10: 1693607809.4361455,
    11: 12.11070582556949,
    12: 1031.1538106093983,
    13: 215.0,
    14: 19192.0,
    15: 0.00531317227210854,
    16: 7926693.336997433,
    17: 0.8790262935446401,
    18: 0.7790700756559702,
    19: 2.0934195142120644,
    20: 30.0,
    21: 121.0,
    22: 645.0,
    23: 148032.56535,
    24: 162.65277656596712,
    25: 2198551.1625,
    26: 0.007075759466222607,
    27: 273.2480478286743,
    28: 0.000788519101264823,
    29: 0.06341684157945265,
    30: 21.0,
    31: 360.0,
    32: 25.0,
    33: 84985.0,
    34: 15886.0,
    35: 0.03861769828593027,
}

NUMBERS = [p.number for p in M.MGH]


def test_there_are_35_problems_numbered_1_to_35_with_distinct_names():
    assert len(M.MGH) == 35
    assert list(range(1, 36)) == NUMBERS
    assert len({p.name for p in M.MGH}) == 35
    assert tuple(p.name for p in M.MGH) == problems.MGH_NAMES


@pytest.mark.parametrize("number", NUMBERS)
def test_f_at_the_start_matches_the_independent_implementation(number):
    p = M.get(number)
    assert p.x0.dtype == torch.float64 and p.x0.shape == (p.n,)
    r = p.residuals(p.x0)
    assert r.shape == (p.m,) and r.dtype == torch.float64
    assert float(p.fn(p.x0)) == pytest.approx(REFERENCE_F0[number], rel=1e-12)


@pytest.mark.parametrize("number", [p.number for p in M.MGH if p.x_star is not None])
def test_f_at_the_known_minimiser_is_f_star(number):
    p = M.get(number)
    assert float(p.fn(p.x_star)) == pytest.approx(p.f_star, rel=1e-12, abs=1e-20)


def _central_difference(fn, x: torch.Tensor) -> torch.Tensor:
    g = torch.empty_like(x)
    for i in range(len(x)):
        h = 1e-6 * max(1.0, abs(float(x[i])))
        e = torch.zeros_like(x)
        e[i] = h
        g[i] = (fn(x + e) - fn(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("number", NUMBERS)
def test_autograd_matches_a_central_difference_at_the_start(number):
    p = M.get(number)
    x = p.x0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(p.fn(x), x)
    fd = _central_difference(p.fn, p.x0)
    # round-off in the difference: eps |f| / h, relative to the gradient's size
    slack = 1e-5 * float(g.norm()) + 1e-9 * max(1.0, float(p.fn(p.x0)))
    assert float((g - fd).norm()) <= slack


def test_variably_dimensioned_gradient_is_twice_minpacks_vecfcn():
    # MINPACK's vecfcn problem 12 is the half gradient: x_k - 1 + k s (1 + 2 s^2).
    p = M.get("variably_dimensioned")
    x = p.x0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(p.fn(x), x)
    k = torch.arange(1, p.n + 1, dtype=torch.float64)
    s = (k * (p.x0 - 1)).sum()
    assert torch.allclose(g / 2, p.x0 - 1 + k * s * (1 + 2 * s ** 2), rtol=1e-13)


@pytest.mark.parametrize("number", NUMBERS)
def test_float32_gives_the_same_value_to_single_precision(number):
    p = M.get(number)
    f32 = p.fn(p.x0.float())
    assert f32.dtype == torch.float32
    assert float(f32) == pytest.approx(float(p.fn(p.x0)), rel=1e-4, abs=1e-7)


def test_the_threshold_rule():
    for p in M.MGH:
        assert p.threshold == p.f_star + 1e-5 * max(abs(p.f_star), 1e-3)
    assert M.get("rosenbrock").threshold == pytest.approx(1e-8)
    assert M.get("meyer").threshold == pytest.approx(87.9458 * (1 + 1e-5))


def test_notes_name_the_local_minima_a_run_may_end_at():
    for name, value in [("freudenstein_roth", "48.9842"), ("biggs_exp6", "5.65565e-3"),
                        ("trigonometric", "2.79506e-5"), ("brown_almost_linear", "f = 1")]:
        assert value in M.get(name).note


def test_problems_mgh_builds_a_problem_by_number_or_name():
    p = problems.mgh(1)
    assert p.name == "mgh01_rosenbrock"
    assert p.solved(0.0) and not p.solved(1e-6)
    q = problems.mgh("meyer")
    assert q.name == "mgh10_meyer" and q.f_star == 87.9458
    assert q.threshold == M.get(10).threshold
    assert torch.equal(q.x0, M.get(10).x0)
    q.x0.add_(1.0)  # a fresh copy: the table's start is untouched
    assert float(M.get(10).x0[0]) == 0.02
    assert float(q.fn(M.get(10).x0)) == pytest.approx(REFERENCE_F0[10], rel=1e-12)


@pytest.mark.parametrize("bad", [0, 36, -1, "nope", True])
def test_unknown_problems_raise_input_error(bad):
    with pytest.raises(InputError):
        problems.mgh(bad)


def test_sizes_of_the_free_size_problems():
    sizes = {p.name: (p.n, p.m) for p in M.MGH}
    assert sizes["extended_rosenbrock"] == (10, 10)
    assert sizes["extended_powell"] == (12, 12)
    assert sizes["penalty_1"] == (10, 11) and sizes["penalty_2"] == (10, 20)
    assert sizes["linear_full_rank"] == (5, 10) and sizes["chebyquad"] == (8, 8)
    assert sizes["watson"] == (6, 31) and sizes["gulf"] == (3, 99)
    assert math.isclose(M.get("linear_rank_1").f_star, 10 * 9 / 42)
