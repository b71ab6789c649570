"""The Moré–Garbow–Hillstrom test set: 35 unconstrained least-squares problems.

Every problem is a sum of squares ``f(x) = sum_i r_i(x)^2`` of ``m`` residuals in ``n``
variables. Each residual function below takes a 1-D tensor ``x`` (float64 or float32) and returns
the ``m`` residuals, written with torch operations so autograd differentiates them; constants are
made in ``x``'s dtype and on its device. The formulas carry the paper's problem numbers.
:data:`MGH` lists the 35 :class:`MGHProblem` records in the paper's order, each with its standard
start ``x0`` (float64), its sizes and the optimal value ``f_star`` the paper states.

Sizes. Problems 1-20 have the paper's fixed sizes, where the paper leaves ``m`` free the one its
tables and MINPACK's test drivers use (Jennrich-Sampson ``m = 10``, Gulf ``m = 99``, Box
``m = 10``, Brown-Dennis ``m = 20``, Biggs ``m = 13``) and Watson ``n = 6``. The problems of
free size (21-35) use ``n = 10`` (Extended Powell ``n = 12``, the nearest multiple of 4; the
linear functions ``n = 5, m = 10`` as in MINPACK; Chebyquad ``n = m = 8``), the sizes of the
paper's tables of ``f*`` values.

Solved. A run counts as having solved a problem when ``f <= f* + 1e-5 max(|f*|, 1e-3)``
(:attr:`MGHProblem.threshold`): a relative gap of ``1e-5`` because the paper prints ``f*`` to six
significant digits (so the true minimum may lie up to ``5e-6`` relative above it), and an
absolute level of ``1e-8`` where ``f* <= 1e-3`` (``f* = 0``: residuals of order ``1e-4``).

Where the paper names other local minima (or a bound at infinity), :attr:`MGHProblem.note` says
so: from the standard start a method may end there (Freudenstein-Roth, Biggs, Trigonometric,
Brown almost-linear), and then it has not solved the problem.

References:
    J. J. Moré, B. S. Garbow and K. E. Hillstrom, "Testing Unconstrained Optimization Software",
    ACM Transactions on Mathematical Software 7(1), 1981, pp. 17-41.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import InputError

__all__ = ["MGH", "MGHProblem", "get"]

#: Relative gap to ``f_star`` (and absolute level over ``1e-3``) at which a problem is solved.
RELATIVE_GAP = 1e-5
#: ``|f*|`` below which the gap is absolute: ``RELATIVE_GAP * ABSOLUTE_FLOOR = 1e-8``.
ABSOLUTE_FLOOR = 1e-3


@dataclass(frozen=True, eq=False)
class MGHProblem:
    """One problem of the set.

    Attributes:
        number: the paper's problem number, 1 to 35.
        name: a short snake_case name (the key :func:`descend.problems.mgh` also accepts).
        n: the number of variables.
        m: the number of residuals.
        residuals: ``residuals(x) -> Tensor`` of shape ``(m,)`` for ``x`` of shape ``(n,)``.
        x0: the standard start, float64 (copy it before changing it).
        f_star: the optimal value the paper states (rounded there to six digits).
        x_star: a minimiser, float64, where one is known in closed form; else ``None``.
        note: other local minima, bounds at infinity or choices of size, in words.
        local_minima: the values of the other local minima the paper lists (a run that ends at
            one of them has found a minimum, though not the global one).
    """

    number: int
    name: str
    n: int
    m: int
    residuals: Callable[[Tensor], Tensor]
    x0: Tensor
    f_star: float
    x_star: Tensor | None = None
    note: str = ""
    local_minima: tuple[float, ...] = ()

    def fn(self, x: Tensor) -> Tensor:
        """The objective ``f(x) = sum_i r_i(x)^2`` (a 0-d tensor)."""
        return (self.residuals(x) ** 2).sum()

    @property
    def threshold(self) -> float:
        """``f* + 1e-5 max(|f*|, 1e-3)``: the loss at or below which the problem is solved."""
        return self.f_star + RELATIVE_GAP * max(abs(self.f_star), ABSOLUTE_FLOOR)

    def solved(self, f: float) -> bool:
        """Whether ``f`` is at a minimum the paper lists: within the :attr:`threshold` gap of
        ``f*`` or of one of :attr:`local_minima`."""
        return any(math.isfinite(f) and abs(f - v) <= RELATIVE_GAP * max(abs(v), ABSOLUTE_FLOOR)
                   for v in (self.f_star, *self.local_minima)) or f <= self.threshold

    def __repr__(self) -> str:
        return (f"MGHProblem({self.number}, {self.name!r}, n={self.n}, m={self.m}, "
                f"f_star={self.f_star!r})")


def _const(values: object, x: Tensor) -> Tensor:
    return torch.as_tensor(values, dtype=x.dtype, device=x.device)


def _index(m: int, x: Tensor) -> Tensor:
    """``(1, 2, ..., m)`` in ``x``'s dtype."""
    return torch.arange(1, m + 1, dtype=x.dtype, device=x.device)


# ---- 1-20: fixed sizes -----------------------------------------------------------------------

def rosenbrock(x: Tensor) -> Tensor:
    """(1) ``r1 = 10 (x2 - x1^2)``, ``r2 = 1 - x1``."""
    return torch.stack([10 * (x[1] - x[0] ** 2), 1 - x[0]])


def freudenstein_roth(x: Tensor) -> Tensor:
    """(2) ``r1 = -13 + x1 + ((5 - x2) x2 - 2) x2``, ``r2 = -29 + x1 + ((x2 + 1) x2 - 14) x2``."""
    return torch.stack([-13 + x[0] + ((5 - x[1]) * x[1] - 2) * x[1],
                        -29 + x[0] + ((x[1] + 1) * x[1] - 14) * x[1]])


def powell_badly_scaled(x: Tensor) -> Tensor:
    """(3) ``r1 = 1e4 x1 x2 - 1``, ``r2 = exp(-x1) + exp(-x2) - 1.0001``."""
    return torch.stack([1e4 * x[0] * x[1] - 1, torch.exp(-x[0]) + torch.exp(-x[1]) - 1.0001])


def brown_badly_scaled(x: Tensor) -> Tensor:
    """(4) ``r1 = x1 - 1e6``, ``r2 = x2 - 2e-6``, ``r3 = x1 x2 - 2``."""
    return torch.stack([x[0] - 1e6, x[1] - 2e-6, x[0] * x[1] - 2])


def beale(x: Tensor) -> Tensor:
    """(5) ``r_i = y_i - x1 (1 - x2^i)``, ``y = (1.5, 2.25, 2.625)``, ``i = 1..3``."""
    i = _index(3, x)
    return _const([1.5, 2.25, 2.625], x) - x[0] * (1 - x[1] ** i)


def jennrich_sampson(x: Tensor) -> Tensor:
    """(6) ``r_i = 2 + 2i - (exp(i x1) + exp(i x2))``, ``i = 1..10``."""
    i = _index(10, x)
    return 2 + 2 * i - (torch.exp(i * x[0]) + torch.exp(i * x[1]))


def helical_valley(x: Tensor) -> Tensor:
    """(7) ``r1 = 10 (x3 - 10 theta(x1, x2))``, ``r2 = 10 (sqrt(x1^2 + x2^2) - 1)``, ``r3 = x3``.

    ``2 pi theta = arctan(x2 / x1)`` for ``x1 > 0``, plus ``pi`` for ``x1 < 0``, and
    ``theta = sign(x2) / 4`` at ``x1 = 0``: ``atan2(x2, x1) / (2 pi)``, plus 1 where both are
    negative.
    """
    theta = torch.atan2(x[1], x[0]) / (2 * math.pi)
    theta = theta + ((x[0] < 0) & (x[1] < 0)).to(x.dtype)
    return torch.stack([10 * (x[2] - 10 * theta),
                        10 * (torch.sqrt(x[0] ** 2 + x[1] ** 2) - 1), x[2]])


_BARD_Y = (0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96, 1.34, 2.10,
           4.39)


def bard(x: Tensor) -> Tensor:
    """(8) ``r_i = y_i - (x1 + u_i / (v_i x2 + w_i x3))``, ``u = i``, ``v = 16 - i``,
    ``w = min(u, v)``, ``i = 1..15``."""
    u = _index(15, x)
    v = 16 - u
    w = torch.minimum(u, v)
    return _const(_BARD_Y, x) - (x[0] + u / (v * x[1] + w * x[2]))


_GAUSSIAN_Y = (0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989, 0.3521, 0.2420,
               0.1295, 0.0540, 0.0175, 0.0044, 0.0009)


def gaussian(x: Tensor) -> Tensor:
    """(9) ``r_i = x1 exp(-x2 (t_i - x3)^2 / 2) - y_i``, ``t_i = (8 - i) / 2``, ``i = 1..15``."""
    t = (8 - _index(15, x)) / 2
    return x[0] * torch.exp(-x[1] * (t - x[2]) ** 2 / 2) - _const(_GAUSSIAN_Y, x)


_MEYER_Y = (34780, 28610, 23650, 19630, 16370, 13720, 11540, 9744, 8261, 7030, 6005, 5147, 4427,
            3820, 3307, 2872)


def meyer(x: Tensor) -> Tensor:
    """(10) ``r_i = x1 exp(x2 / (t_i + x3)) - y_i``, ``t_i = 45 + 5i``, ``i = 1..16``."""
    t = 45 + 5 * _index(16, x)
    return x[0] * torch.exp(x[1] / (t + x[2])) - _const(_MEYER_Y, x)


def gulf(x: Tensor) -> Tensor:
    """(11) ``r_i = exp(-|y_i - x2|^x3 / x1) - t_i``, ``t_i = i / 100``,
    ``y_i = 25 + (-50 ln t_i)^(2/3)``, ``i = 1..99``.

    The paper prints ``|y_i m_i x2|``; the ``m_i`` is a misprinted minus sign (the authors'
    Algorithm 566 code subtracts).
    """
    t = _index(99, x) / 100
    y = 25 + (-50 * torch.log(t)) ** (2 / 3)
    return torch.exp(-torch.abs(y - x[1]) ** x[2] / x[0]) - t


def box_3d(x: Tensor) -> Tensor:
    """(12) ``r_i = exp(-t_i x1) - exp(-t_i x2) - x3 (exp(-t_i) - exp(-10 t_i))``,
    ``t_i = i / 10``, ``i = 1..10``."""
    t = _index(10, x) / 10
    return (torch.exp(-t * x[0]) - torch.exp(-t * x[1])
            - x[2] * (torch.exp(-t) - torch.exp(-10 * t)))


def powell_singular(x: Tensor) -> Tensor:
    """(13) ``r1 = x1 + 10 x2``, ``r2 = sqrt(5) (x3 - x4)``, ``r3 = (x2 - 2 x3)^2``,
    ``r4 = sqrt(10) (x1 - x4)^2``."""
    return torch.stack([x[0] + 10 * x[1], math.sqrt(5) * (x[2] - x[3]),
                        (x[1] - 2 * x[2]) ** 2, math.sqrt(10) * (x[0] - x[3]) ** 2])


def wood(x: Tensor) -> Tensor:
    """(14) ``r1 = 10 (x2 - x1^2)``, ``r2 = 1 - x1``, ``r3 = sqrt(90) (x4 - x3^2)``,
    ``r4 = 1 - x3``, ``r5 = sqrt(10) (x2 + x4 - 2)``, ``r6 = (x2 - x4) / sqrt(10)``."""
    return torch.stack([10 * (x[1] - x[0] ** 2), 1 - x[0], math.sqrt(90) * (x[3] - x[2] ** 2),
                        1 - x[2], math.sqrt(10) * (x[1] + x[3] - 2),
                        (x[1] - x[3]) / math.sqrt(10)])


_KOWALIK_Y = (0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323, 0.0235,
              0.0246)
_KOWALIK_U = (4, 2, 1, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625)


def kowalik_osborne(x: Tensor) -> Tensor:
    """(15) ``r_i = y_i - x1 (u_i^2 + u_i x2) / (u_i^2 + u_i x3 + x4)``, ``i = 1..11``."""
    u = _const(_KOWALIK_U, x)
    return _const(_KOWALIK_Y, x) - x[0] * (u ** 2 + u * x[1]) / (u ** 2 + u * x[2] + x[3])


def brown_dennis(x: Tensor) -> Tensor:
    """(16) ``r_i = (x1 + t_i x2 - exp(t_i))^2 + (x3 + x4 sin(t_i) - cos(t_i))^2``,
    ``t_i = i / 5``, ``i = 1..20``."""
    t = _index(20, x) / 5
    return ((x[0] + t * x[1] - torch.exp(t)) ** 2
            + (x[2] + x[3] * torch.sin(t) - torch.cos(t)) ** 2)


_OSBORNE1_Y = (0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784, 0.751,
               0.718, 0.685, 0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522, 0.506, 0.490,
               0.478, 0.467, 0.457, 0.448, 0.438, 0.431, 0.424, 0.420, 0.414, 0.411, 0.406)


def osborne_1(x: Tensor) -> Tensor:
    """(17) ``r_i = y_i - (x1 + x2 exp(-t_i x4) + x3 exp(-t_i x5))``, ``t_i = 10 (i - 1)``,
    ``i = 1..33``."""
    t = 10 * (_index(33, x) - 1)
    return _const(_OSBORNE1_Y, x) - (x[0] + x[1] * torch.exp(-t * x[3])
                                     + x[2] * torch.exp(-t * x[4]))


def biggs_exp6(x: Tensor) -> Tensor:
    """(18) ``r_i = x3 exp(-t_i x1) - x4 exp(-t_i x2) + x6 exp(-t_i x5) - y_i``, ``t_i = i / 10``,
    ``y_i = exp(-t_i) - 5 exp(-10 t_i) + 3 exp(-4 t_i)``, ``i = 1..13``."""
    t = _index(13, x) / 10
    y = torch.exp(-t) - 5 * torch.exp(-10 * t) + 3 * torch.exp(-4 * t)
    return (x[2] * torch.exp(-t * x[0]) - x[3] * torch.exp(-t * x[1])
            + x[5] * torch.exp(-t * x[4]) - y)


_OSBORNE2_Y = (1.366, 1.191, 1.112, 1.013, 0.991, 0.885, 0.831, 0.847, 0.786, 0.725, 0.746,
               0.679, 0.608, 0.655, 0.616, 0.606, 0.602, 0.626, 0.651, 0.724, 0.649, 0.649,
               0.694, 0.644, 0.624, 0.661, 0.612, 0.558, 0.533, 0.495, 0.500, 0.423, 0.395,
               0.375, 0.372, 0.391, 0.396, 0.405, 0.428, 0.429, 0.523, 0.562, 0.607, 0.653,
               0.672, 0.708, 0.633, 0.668, 0.645, 0.632, 0.591, 0.559, 0.597, 0.625, 0.739,
               0.710, 0.729, 0.720, 0.636, 0.581, 0.428, 0.292, 0.162, 0.098, 0.054)


def osborne_2(x: Tensor) -> Tensor:
    """(19) ``r_i = y_i - (x1 exp(-t_i x5) + x2 exp(-(t_i - x9)^2 x6)
    + x3 exp(-(t_i - x10)^2 x7) + x4 exp(-(t_i - x11)^2 x8))``, ``t_i = (i - 1) / 10``,
    ``i = 1..65``."""
    t = (_index(65, x) - 1) / 10
    model = (x[0] * torch.exp(-t * x[4]) + x[1] * torch.exp(-(t - x[8]) ** 2 * x[5])
             + x[2] * torch.exp(-(t - x[9]) ** 2 * x[6])
             + x[3] * torch.exp(-(t - x[10]) ** 2 * x[7]))
    return _const(_OSBORNE2_Y, x) - model


def watson(x: Tensor) -> Tensor:
    """(20) ``r_i = sum_{j=2}^n (j-1) x_j t_i^(j-2) - (sum_{j=1}^n x_j t_i^(j-1))^2 - 1`` with
    ``t_i = i / 29`` for ``i = 1..29``; ``r30 = x1``, ``r31 = x2 - x1^2 - 1``."""
    n = x.shape[0]
    t = _index(29, x) / 29
    j = torch.arange(n, dtype=x.dtype, device=x.device)  # j - 1
    powers = t[:, None] ** j  # t_i^(j-1)
    a = (powers[:, :-1] * (j[1:] * x[1:])).sum(1)
    b = powers @ x
    return torch.cat([a - b ** 2 - 1, torch.stack([x[0], x[1] - x[0] ** 2 - 1])])


# ---- 21-35: free sizes -----------------------------------------------------------------------

def extended_rosenbrock(x: Tensor) -> Tensor:
    """(21) ``r_{2i-1} = 10 (x_{2i} - x_{2i-1}^2)``, ``r_{2i} = 1 - x_{2i-1}``, ``n`` even."""
    odd, even = x[0::2], x[1::2]
    return torch.stack([10 * (even - odd ** 2), 1 - odd], 1).reshape(-1)


def extended_powell(x: Tensor) -> Tensor:
    """(22) Powell singular (13) on each block of four: ``r_{4i-3} = x_{4i-3} + 10 x_{4i-2}``,
    ``r_{4i-2} = sqrt(5) (x_{4i-1} - x_{4i})``, ``r_{4i-1} = (x_{4i-2} - 2 x_{4i-1})^2``,
    ``r_{4i} = sqrt(10) (x_{4i-3} - x_{4i})^2``, ``n`` a multiple of 4."""
    a, b, c, d = x[0::4], x[1::4], x[2::4], x[3::4]
    return torch.stack([a + 10 * b, math.sqrt(5) * (c - d), (b - 2 * c) ** 2,
                        math.sqrt(10) * (a - d) ** 2], 1).reshape(-1)


def penalty_1(x: Tensor) -> Tensor:
    """(23) ``r_i = sqrt(1e-5) (x_i - 1)`` for ``i = 1..n``; ``r_{n+1} = sum_j x_j^2 - 1/4``."""
    return torch.cat([math.sqrt(1e-5) * (x - 1), ((x ** 2).sum() - 0.25).reshape(1)])


def penalty_2(x: Tensor) -> Tensor:
    """(24) ``r1 = x1 - 0.2``; for ``i = 2..n``:
    ``r_i = sqrt(a) (exp(x_i / 10) + exp(x_{i-1} / 10) - y_i)``,
    ``y_i = exp(i / 10) + exp((i - 1) / 10)``, and
    ``r_{n+i-1} = sqrt(a) (exp(x_i / 10) - exp(-1/10))``;
    ``r_{2n} = sum_j (n - j + 1) x_j^2 - 1``; ``a = 1e-5``."""
    n = x.shape[0]
    s = math.sqrt(1e-5)
    i = _index(n, x)[1:]
    e = torch.exp(x / 10)
    y = torch.exp(i / 10) + torch.exp((i - 1) / 10)
    weights = n - _index(n, x) + 1
    return torch.cat([(x[0] - 0.2).reshape(1), s * (e[1:] + e[:-1] - y),
                      s * (e[1:] - math.exp(-0.1)),
                      ((weights * x ** 2).sum() - 1).reshape(1)])


def variably_dimensioned(x: Tensor) -> Tensor:
    """(25) ``r_i = x_i - 1`` for ``i = 1..n``; ``r_{n+1} = s``, ``r_{n+2} = s^2`` with
    ``s = sum_j j (x_j - 1)``."""
    s = (_index(x.shape[0], x) * (x - 1)).sum()
    return torch.cat([x - 1, torch.stack([s, s ** 2])])


def trigonometric(x: Tensor) -> Tensor:
    """(26) ``r_i = n - sum_j cos(x_j) + i (1 - cos(x_i)) - sin(x_i)``, ``i = 1..n``."""
    n = x.shape[0]
    c = torch.cos(x)
    return n - c.sum() + _index(n, x) * (1 - c) - torch.sin(x)


def brown_almost_linear(x: Tensor) -> Tensor:
    """(27) ``r_i = x_i + sum_j x_j - (n + 1)`` for ``i = 1..n-1``; ``r_n = prod_j x_j - 1``."""
    n = x.shape[0]
    return torch.cat([x[:-1] + x.sum() - (n + 1), (x.prod() - 1).reshape(1)])


def _grid(x: Tensor) -> tuple[float, Tensor]:
    h = 1 / (x.shape[0] + 1)
    return h, _index(x.shape[0], x) * h


def discrete_boundary_value(x: Tensor) -> Tensor:
    """(28) ``r_i = 2 x_i - x_{i-1} - x_{i+1} + h^2 (x_i + t_i + 1)^3 / 2``, ``h = 1/(n+1)``,
    ``t_i = i h``, ``x_0 = x_{n+1} = 0``."""
    h, t = _grid(x)
    zero = x.new_zeros(1)
    left = torch.cat([zero, x[:-1]])
    right = torch.cat([x[1:], zero])
    return 2 * x - left - right + h ** 2 * (x + t + 1) ** 3 / 2


def discrete_integral_equation(x: Tensor) -> Tensor:
    """(29) ``r_i = x_i + h ((1 - t_i) sum_{j<=i} t_j q_j + t_i sum_{j>i} (1 - t_j) q_j) / 2``,
    ``q_j = (x_j + t_j + 1)^3``, ``h = 1/(n+1)``, ``t_i = i h``."""
    h, t = _grid(x)
    q = (x + t + 1) ** 3
    lower = torch.cumsum(t * q, 0)  # sum_{j <= i}
    tail = (1 - t) * q
    upper = tail.sum() - torch.cumsum(tail, 0)  # sum_{j > i}
    return x + h * ((1 - t) * lower + t * upper) / 2


def broyden_tridiagonal(x: Tensor) -> Tensor:
    """(30) ``r_i = (3 - 2 x_i) x_i - x_{i-1} - 2 x_{i+1} + 1``, ``x_0 = x_{n+1} = 0``."""
    zero = x.new_zeros(1)
    left = torch.cat([zero, x[:-1]])
    right = torch.cat([x[1:], zero])
    return (3 - 2 * x) * x - left - 2 * right + 1


def broyden_banded(x: Tensor) -> Tensor:
    """(31) ``r_i = x_i (2 + 5 x_i^2) + 1 - sum_{j in J_i} x_j (1 + x_j)``,
    ``J_i = {j != i : max(1, i - 5) <= j <= min(n, i + 1)}``."""
    n = x.shape[0]
    k = torch.arange(n, device=x.device)
    offset = k[None, :] - k[:, None]  # j - i
    band = ((offset >= -5) & (offset <= 1) & (offset != 0)).to(x.dtype)
    return x * (2 + 5 * x ** 2) + 1 - band @ (x * (1 + x))


def _linear_full_rank(m: int) -> Callable[[Tensor], Tensor]:
    def linear_full_rank(x: Tensor) -> Tensor:
        """(32) ``r_i = x_i - 2 S / m - 1`` for ``i = 1..n``, ``r_i = -2 S / m - 1`` for
        ``i = n+1..m``, ``S = sum_j x_j``."""
        c = 2 * x.sum() / m + 1
        return torch.cat([x - c, -c.expand(m - x.shape[0])])
    return linear_full_rank


def _linear_rank_1(m: int) -> Callable[[Tensor], Tensor]:
    def linear_rank_1(x: Tensor) -> Tensor:
        """(33) ``r_i = i sum_j j x_j - 1``, ``i = 1..m``."""
        s = (_index(x.shape[0], x) * x).sum()
        return _index(m, x) * s - 1
    return linear_rank_1


def _linear_rank_1_zero(m: int) -> Callable[[Tensor], Tensor]:
    def linear_rank_1_zero_columns(x: Tensor) -> Tensor:
        """(34) ``r_1 = r_m = -1``; ``r_i = (i - 1) sum_{j=2}^{n-1} j x_j - 1`` for
        ``i = 2..m-1``."""
        n = x.shape[0]
        s = (_index(n, x)[1:-1] * x[1:-1]).sum()
        coef = _index(m, x) - 1
        coef = torch.cat([x.new_zeros(1), coef[1:-1], x.new_zeros(1)])
        return coef * s - 1
    return linear_rank_1_zero_columns


def chebyquad(x: Tensor) -> Tensor:
    """(35) ``r_i = (1/n) sum_j T_i(2 x_j - 1) - c_i``, ``i = 1..n`` (``m = n``), ``T_i`` the
    Chebyshev polynomials; ``c_i = int_0^1 T_i(2u - 1) du``: ``-1 / (i^2 - 1)`` for even ``i``,
    0 for odd."""
    n = x.shape[0]
    u = 2 * x - 1
    prev, cur = torch.ones_like(u), u
    rows = [cur.mean()]
    for _ in range(2, n + 1):
        prev, cur = cur, 2 * u * cur - prev
        rows.append(cur.mean())
    c = [-1 / (i * i - 1) if i % 2 == 0 else 0.0 for i in range(1, n + 1)]
    return torch.stack(rows) - _const(c, x)


# ---- the table -------------------------------------------------------------------------------

def _t(values: object) -> Tensor:
    return torch.as_tensor(values, dtype=torch.float64)


def _make() -> list[MGHProblem]:
    n = 10
    grid = torch.arange(1, n + 1, dtype=torch.float64) / (n + 1)
    boundary_x0 = grid * (grid - 1)
    lin_n, lin_m = 5, 10
    cheb_n = 8
    p = MGHProblem
    return [
        p(1, "rosenbrock", 2, 2, rosenbrock, _t([-1.2, 1.0]), 0.0, _t([1.0, 1.0])),
        p(2, "freudenstein_roth", 2, 2, freudenstein_roth, _t([0.5, -2.0]), 0.0, _t([5.0, 4.0]),
          note="local minimum f = 48.9842 at (11.41..., -0.8968...)", local_minima=(48.9842,)),
        p(3, "powell_badly_scaled", 2, 2, powell_badly_scaled, _t([0.0, 1.0]), 0.0,
          note="x* = (1.098...e-5, 9.106...)"),
        p(4, "brown_badly_scaled", 2, 3, brown_badly_scaled, _t([1.0, 1.0]), 0.0,
          _t([1e6, 2e-6])),
        p(5, "beale", 2, 3, beale, _t([1.0, 1.0]), 0.0, _t([3.0, 0.5])),
        p(6, "jennrich_sampson", 2, 10, jennrich_sampson, _t([0.3, 0.4]), 124.362,
          note="m = 10; x* = (0.2578, 0.2578)"),
        p(7, "helical_valley", 3, 3, helical_valley, _t([-1.0, 0.0, 0.0]), 0.0,
          _t([1.0, 0.0, 0.0])),
        p(8, "bard", 3, 15, bard, _t([1.0, 1.0, 1.0]), 8.21487e-3,
          note="also f = 17.4286 at (0.8406, -inf, -inf)"),
        p(9, "gaussian", 3, 15, gaussian, _t([0.4, 1.0, 0.0]), 1.12793e-8),
        p(10, "meyer", 3, 16, meyer, _t([0.02, 4000.0, 250.0]), 87.9458),
        p(11, "gulf", 3, 99, gulf, _t([5.0, 2.5, 0.15]), 0.0, _t([50.0, 25.0, 1.5]),
          note="m = 99 (the paper allows 3 <= m <= 100)"),
        p(12, "box_3d", 3, 10, box_3d, _t([0.0, 10.0, 20.0]), 0.0, _t([1.0, 10.0, 1.0]),
          note="m = 10; also f = 0 at (10, 1, -1) and wherever x1 = x2, x3 = 0"),
        p(13, "powell_singular", 4, 4, powell_singular, _t([3.0, -1.0, 0.0, 1.0]), 0.0,
          _t([0.0] * 4), note="singular Hessian at x*"),
        p(14, "wood", 4, 6, wood, _t([-3.0, -1.0, -3.0, -1.0]), 0.0, _t([1.0] * 4)),
        p(15, "kowalik_osborne", 4, 11, kowalik_osborne, _t([0.25, 0.39, 0.415, 0.39]),
          3.07505e-4, note="also f = 1.02734e-3 at (+inf, -14.07..., -inf, -inf)"),
        p(16, "brown_dennis", 4, 20, brown_dennis, _t([25.0, 5.0, -5.0, -1.0]), 85822.2,
          note="m = 20"),
        p(17, "osborne_1", 5, 33, osborne_1, _t([0.5, 1.5, -1.0, 0.01, 0.02]), 5.46489e-5),
        p(18, "biggs_exp6", 6, 13, biggs_exp6, _t([1.0, 2.0, 1.0, 1.0, 1.0, 1.0]), 0.0,
          _t([1.0, 10.0, 1.0, 5.0, 4.0, 3.0]),
          note="m = 13; also f = 5.65565e-3 at a local minimum", local_minima=(5.65565e-3,)),
        p(19, "osborne_2", 11, 65, osborne_2,
          _t([1.3, 0.65, 0.65, 0.7, 0.6, 3.0, 5.0, 7.0, 2.0, 4.5, 5.5]), 4.01377e-2),
        p(20, "watson", 6, 31, watson, _t([0.0] * 6), 2.28767e-3,
          note="n = 6 (the paper: 2 <= n <= 31; f* = 1.39976e-6 for n = 9)"),
        p(21, "extended_rosenbrock", n, n, extended_rosenbrock, _t([-1.2, 1.0] * (n // 2)), 0.0,
          _t([1.0] * n), note="n = 10"),
        p(22, "extended_powell", 12, 12, extended_powell, _t([3.0, -1.0, 0.0, 1.0] * 3), 0.0,
          _t([0.0] * 12), note="n = 12; singular Hessian at x*"),
        p(23, "penalty_1", n, n + 1, penalty_1, torch.arange(1, n + 1, dtype=torch.float64),
          7.08765e-5, note="n = 10 (f* = 2.24997e-5 for n = 4)"),
        p(24, "penalty_2", n, 2 * n, penalty_2, _t([0.5] * n), 2.93660e-4,
          note="n = 10 (f* = 9.37629e-6 for n = 4)"),
        p(25, "variably_dimensioned", n, n + 2, variably_dimensioned,
          1 - torch.arange(1, n + 1, dtype=torch.float64) / n, 0.0, _t([1.0] * n),
          note="n = 10"),
        p(26, "trigonometric", n, n, trigonometric, _t([1 / n] * n), 0.0,
          note="n = 10; from x0 methods often stop at a local minimum f = 2.79506e-5",
          local_minima=(2.79506e-5,)),
        p(27, "brown_almost_linear", n, n, brown_almost_linear, _t([0.5] * n), 0.0,
          _t([1.0] * n), note="n = 10; also f = 1 at (0, ..., 0, n + 1)"),
        p(28, "discrete_boundary_value", n, n, discrete_boundary_value, boundary_x0.clone(), 0.0,
          note="n = 10"),
        p(29, "discrete_integral_equation", n, n, discrete_integral_equation,
          boundary_x0.clone(), 0.0, note="n = 10"),
        p(30, "broyden_tridiagonal", n, n, broyden_tridiagonal, _t([-1.0] * n), 0.0,
          note="n = 10"),
        p(31, "broyden_banded", n, n, broyden_banded, _t([-1.0] * n), 0.0, note="n = 10"),
        p(32, "linear_full_rank", lin_n, lin_m, _linear_full_rank(lin_m), _t([1.0] * lin_n),
          float(lin_m - lin_n), _t([-1.0] * lin_n), note="n = 5, m = 10; f* = m - n"),
        p(33, "linear_rank_1", lin_n, lin_m, _linear_rank_1(lin_m), _t([1.0] * lin_n),
          lin_m * (lin_m - 1) / (2 * (2 * lin_m + 1)),
          _t([3 / (2 * lin_m + 1)] + [0.0] * (lin_n - 1)),
          note="n = 5, m = 10; f* = m (m - 1) / (2 (2m + 1)) wherever sum_j j x_j = "
               "3 / (2m + 1)"),
        p(34, "linear_rank_1_zero_columns", lin_n, lin_m, _linear_rank_1_zero(lin_m),
          _t([1.0] * lin_n), (lin_m ** 2 + 3 * lin_m - 6) / (2 * (2 * lin_m - 3)),
          _t([0.0, 3 / (2 * (2 * lin_m - 3))] + [0.0] * (lin_n - 2)),
          note="n = 5, m = 10; f* = (m^2 + 3m - 6) / (2 (2m - 3)) wherever "
               "sum_{j=2}^{n-1} j x_j = 3 / (2m - 3)"),
        p(35, "chebyquad", cheb_n, cheb_n, chebyquad,
          torch.arange(1, cheb_n + 1, dtype=torch.float64) / (cheb_n + 1), 3.51687e-3,
          note="n = m = 8 (f* = 0 for n = 1..7 and 9, 6.50395e-3 for n = 10)"),
    ]


#: The 35 problems, in the paper's order (``MGH[k - 1].number == k``).
MGH: tuple[MGHProblem, ...] = tuple(_make())


def get(name_or_number: str | int) -> MGHProblem:
    """The problem with this number (1-35) or name.

    Raises:
        InputError: for an unknown name or a number outside 1-35.
    """
    if isinstance(name_or_number, int) and not isinstance(name_or_number, bool):
        if 1 <= name_or_number <= len(MGH):
            return MGH[name_or_number - 1]
        raise InputError(f"MGH problems are numbered 1 to {len(MGH)}, got {name_or_number}")
    for p in MGH:
        if p.name == name_or_number:
            return p
    raise InputError(f"unknown MGH problem {name_or_number!r}; known: "
                     f"{', '.join(p.name for p in MGH)}")
