"""Named problems with known optima, for the demo, the tests, the benchmarks and teaching.

Each :class:`Problem` bundles ``fn``, a start ``x0``, the optimum ``x_star`` (when known), the
optimal loss ``f_star`` and the ``threshold`` at which a run counts as having solved it.
:data:`PROBLEMS` maps a name to a zero-argument function that builds the problem; :func:`get`
looks a name up.

=========================  ======  ===========================================  ===============
name                       size    optimum                                      threshold
=========================  ======  ===========================================  ===============
notebook                   9       ``x* = target``, ``f* = 0``                  ``1e-5``
quadratic_k1               100     ``x*`` given, ``f* = 0``                     ``1e-6 f(x0)``
quadratic_k1e2             100     (condition number 1e2)                       same rule
quadratic_k1e4             100     (condition number 1e4)                       same rule
rosenbrock_2               2       ``x* = (1, 1)``, ``f* = 0``                  ``1e-10``
rosenbrock_100             100     ``x* = ones``, ``f* = 0``                    ``1e-10``
diabetes_lstsq             11      ``numpy.linalg.lstsq``                       ``f* + 1e-6|f*|``
breast_cancer_logistic     31      a tight L-BFGS run (gradient norm < 1e-12)   ``f* + 1e-6|f*|``
mlp_regression             17      no ``x*``; the floor of a long run           ``1.05 f*``
=========================  ======  ===========================================  ===============

The 35 Moré-Garbow-Hillstrom problems (:mod:`descend.mgh`) are built by :func:`mgh` from a
number or a name (:data:`MGH_NAMES`), with their standard starts, sizes and the paper's ``f*``;
they are solved at ``f* + 1e-5 max(|f*|, 1e-3)`` (:attr:`descend.mgh.MGHProblem.threshold`).

Everything except the notebook is float64, so a threshold at a relative gap of ``1e-6`` is far
above round-off. The two scikit-learn problems need scikit-learn (``pip install
'descend[problems]'``; not a runtime dependency); it is imported when the problem is built.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import InputError
from .mgh import MGH as _MGH
from .mgh import get as _mgh_get

__all__ = [
    "MGH_NAMES",
    "MLP_FLOOR",
    "NOTEBOOK_TARGET",
    "PROBLEMS",
    "Problem",
    "breast_cancer_logistic",
    "diabetes_lstsq",
    "get",
    "mgh",
    "mlp_regression",
    "notebook",
    "notebook_target",
    "quadratic",
    "quadratic_spectrum",
    "rosenbrock",
]

#: The notebook's target: ``torch.FloatTensor`` of these rows.
NOTEBOOK_TARGET = ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6), (0.7, 0.8, 0.9))

#: Relative gap to ``f_star`` at which a problem with ``f_star != 0`` counts as solved.
RELATIVE_GAP = 1e-6


def notebook_target() -> Tensor:
    """A fresh float32 copy of the notebook's 3x3 target."""
    return torch.tensor(NOTEBOOK_TARGET, dtype=torch.float32)


@dataclass
class Problem:
    """A minimisation problem with a known optimum.

    Attributes:
        name: short name (the key in :data:`PROBLEMS`).
        fn: the objective ``fn(x) -> scalar loss``.
        x0: the start (a tensor, or a tuple of tensors for ``mlp_regression``).
        x_star: the minimiser, when known (``None`` for ``mlp_regression``).
        f_star: the minimal loss (for ``mlp_regression``: the floor of a long run).
        target: a tensor ``x`` should approach, for heatmaps (the notebook's target).
        threshold: the loss at or below which the problem counts as solved: ``f_star`` plus a
            relative gap of ``1e-6`` where ``f_star != 0``, else an absolute level stated by the
            problem (``None`` when not stated).
    """

    name: str
    fn: Callable[..., Tensor]
    x0: Any
    x_star: Any = None
    f_star: float = 0.0
    target: Tensor | None = None
    threshold: float | None = None

    def solved(self, loss: float) -> bool:
        """Whether ``loss`` is at or below :attr:`threshold`."""
        if self.threshold is None:
            raise InputError(f"problem {self.name!r} states no threshold; set Problem.threshold")
        return loss <= self.threshold


def _relative_threshold(f_star: float) -> float:
    return f_star + RELATIVE_GAP * abs(f_star)


def notebook(seed: int | None = 0) -> Problem:
    """The notebook: ``F.mse_loss(x, target)`` over a 3x3 ``x`` drawn by ``torch.rand_like``.

    The gradient is ``2 (x - t) / 9``, the Hessian ``(2/9) I``: each gd step multiplies the error
    by ``1 - 2 lr / 9``, so ``lr = 4.5`` converges in one step, ``lr = 9`` oscillates forever and
    ``lr > 9`` diverges. With ``seed`` the start is what ``torch.manual_seed(seed)`` then
    ``torch.rand_like(target)`` gives (the global generator is seeded, as in the notebook).
    Solved at the notebook's threshold, a loss of ``1e-5``.
    """
    target = notebook_target()
    if seed is not None:
        torch.manual_seed(seed)
    x0 = torch.rand_like(target)

    def mse_to_target(x: Tensor) -> Tensor:
        return F.mse_loss(x, target)

    return Problem("notebook", mse_to_target, x0, x_star=target.clone(), f_star=0.0,
                   target=target, threshold=1e-5)


def quadratic_spectrum(cond: float, n: int = 100) -> Tensor:
    """The eigenvalues of :func:`quadratic`'s ``A``, descending: ``lambda_i = cond^(-i/(n-1))``.

    Log-spaced from ``L = 1`` down to ``mu = 1/cond`` (all ones when ``cond == 1``), float64.
    """
    if n == 1:
        return torch.ones(1, dtype=torch.float64)
    i = torch.arange(n, dtype=torch.float64)
    return torch.tensor(float(cond), dtype=torch.float64) ** (-i / (n - 1))


def quadratic(cond: float, n: int = 100, seed: int = 0) -> Problem:
    """``f(x) = (x - x*)'A (x - x*) / 2`` with ``A = Q diag(lambda) Q'`` of condition number
    ``cond``.

    ``Q`` is a random orthogonal basis (the QR factor of a Gaussian matrix drawn from ``seed``),
    ``lambda`` is :func:`quadratic_spectrum` (``L = 1``, ``mu = 1/cond``), ``x*`` is a Gaussian
    vector from the same seed. The gradient is ``A x - b`` with ``b = A x*`` and ``f* = 0``
    exactly (so every loss threshold is >= 0, as :class:`~descend.stops.LossBelow` requires).
    The start is ``x0 = 0``; solved at a gap of ``1e-6`` relative to the starting gap
    ``f(x0) = x*'A x* / 2``. Gradient descent with ``lr = 1/L = 1`` contracts the error along
    eigenvector ``i`` by ``1 - lambda_i`` per step.
    """
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))  # the Haar-distributed orthogonal factor
    lam = quadratic_spectrum(cond, n)
    a = (q * lam) @ q.T
    a = (a + a.T) / 2
    x_star = torch.randn(n, generator=g, dtype=torch.float64)

    def quadratic_form(x: Tensor) -> Tensor:
        e = x - x_star
        return 0.5 * e @ (a @ e)

    x0 = torch.zeros(n, dtype=torch.float64)
    name = f"quadratic_k{_cond_name(cond)}"
    return Problem(name, quadratic_form, x0, x_star=x_star, f_star=0.0,
                   threshold=RELATIVE_GAP * float(quadratic_form(x0)))


def _cond_name(cond: float) -> str:
    if cond == 1:
        return "1"
    e = math.log10(cond)
    return f"1e{round(e)}" if abs(e - round(e)) < 1e-12 else f"{cond:g}"


def rosenbrock(n: int = 2) -> Problem:
    """The chained Rosenbrock function (``scipy.optimize.rosen``) in ``n >= 2`` dimensions:

    .. math:: f(x) = \\sum_{i=1}^{n-1} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2

    Global minimum ``x* = (1, ..., 1)``, ``f* = 0``; the start is ``(-1.2, 1)`` repeated
    (``-1.2`` first when ``n`` is odd). For ``4 <= n`` there is also a local minimum near
    ``(-1, 1, ..., 1)`` with ``f ~ 3.99``, a trap for some methods. Solved at ``f <= 1e-10``
    (an absolute level, as ``f* = 0``), float64.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise InputError(f"rosenbrock needs n >= 2 dimensions, got {n!r}")
    x0 = torch.tensor([-1.2, 1.0], dtype=torch.float64).repeat((n + 1) // 2)[:n].clone()

    def rosen(x: Tensor) -> Tensor:
        return (100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2).sum()

    return Problem(f"rosenbrock_{n}", rosen, x0, x_star=torch.ones(n, dtype=torch.float64),
                   f_star=0.0, threshold=1e-10)


def _standardise(x: Tensor) -> Tensor:
    return (x - x.mean(0)) / x.std(0, unbiased=False)


def _sklearn_datasets() -> Any:
    try:
        from sklearn import datasets
    except ImportError as e:
        raise InputError("this problem needs scikit-learn: pip install 'descend[problems]'") from e
    return datasets


@functools.lru_cache(maxsize=1)
def _diabetes() -> tuple[Tensor, Tensor, Tensor]:
    import numpy as np

    data = _sklearn_datasets().load_diabetes()
    x = _standardise(torch.tensor(data.data, dtype=torch.float64))
    design = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)
    y = torch.tensor(data.target, dtype=torch.float64)
    w_star = np.linalg.lstsq(design.numpy(), y.numpy(), rcond=None)[0]
    return design, y, torch.tensor(w_star, dtype=torch.float64)


def diabetes_lstsq() -> Problem:
    """Least squares on scikit-learn's diabetes data (442 rows, 10 standardised features).

    ``f(w) = mean((X w - y)^2)`` with ``X`` the standardised features plus a column of ones
    (``w[-1]`` is the intercept) and ``y`` the raw disease-progression target. ``w*`` comes from
    ``numpy.linalg.lstsq``; start ``w = 0``; solved at a relative gap of ``1e-6``. Needs
    scikit-learn.
    """
    design, y, w_star = _diabetes()

    def mean_squared_error(w: Tensor) -> Tensor:
        return ((design @ w - y) ** 2).mean()

    f_star = float(mean_squared_error(w_star))
    return Problem("diabetes_lstsq", mean_squared_error, torch.zeros(len(w_star),
                   dtype=torch.float64), x_star=w_star, f_star=f_star,
                   threshold=_relative_threshold(f_star))


#: The L2 weight of :func:`breast_cancer_logistic` (the intercept is not penalised).
LOGISTIC_L2 = 1e-3


def _logistic_loss(x: Tensor, y: Tensor, w: Tensor) -> Tensor:
    # softplus(z) - y z is the binary cross-entropy of sigmoid(z), stable for any z.
    z = x @ w[:-1] + w[-1]
    return (F.softplus(z) - y * z).mean() + 0.5 * LOGISTIC_L2 * (w[:-1] @ w[:-1])


@functools.lru_cache(maxsize=1)
def _breast_cancer() -> tuple[Tensor, Tensor, Tensor]:
    data = _sklearn_datasets().load_breast_cancer()
    x = _standardise(torch.tensor(data.data, dtype=torch.float64))
    y = torch.tensor(data.target, dtype=torch.float64)
    # The optimum: a tight L-BFGS run, computed once per process. The loss is strictly convex
    # (L2 on the weights, mixed labels for the intercept), so the minimiser is unique.
    w = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1, max_iter=2000, history_size=50, tolerance_grad=1e-13,
                            tolerance_change=0.0, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = _logistic_loss(x, y, w)
        loss.backward()
        return loss

    opt.step(closure)
    # The line search stalls near a gradient norm of 1e-9, where f no longer resolves the
    # decrease; two Newton steps (a 31x31 system) finish the job to round-off.
    w = w.detach()
    for _ in range(2):
        hess = torch.autograd.functional.hessian(lambda v: _logistic_loss(x, y, v), w)
        grad = torch.autograd.functional.jacobian(lambda v: _logistic_loss(x, y, v), w)
        w = w - torch.linalg.solve(hess, grad)
    return x, y, w


def breast_cancer_logistic() -> Problem:
    """L2-regularised logistic regression on scikit-learn's breast-cancer data.

    569 rows, 30 standardised features, labels ``y`` in {0, 1}; ``w[-1]`` is the intercept:

    .. math:: f(w) = \\frac1n \\sum_i \\log(1 + e^{z_i}) - y_i z_i + \\frac{\\lambda}{2}
              \\|w_{:30}\\|^2, \\quad z = X w_{:30} + w_{30}, \\quad \\lambda = 10^{-3}

    (scikit-learn's ``LogisticRegression(C=1/(n lambda))``). ``w*`` comes from a tight L-BFGS
    run (gradient norm below ``1e-10``), computed the first time the problem is built and
    cached; start ``w = 0``; solved at a relative gap of ``1e-6``. Needs scikit-learn.
    """
    x, y, w_star = _breast_cancer()

    def logistic(w: Tensor) -> Tensor:
        return _logistic_loss(x, y, w)

    f_star = float(logistic(w_star))
    return Problem("breast_cancer_logistic", logistic, torch.zeros(len(w_star),
                   dtype=torch.float64), x_star=w_star, f_star=f_star,
                   threshold=_relative_threshold(f_star))


#: The loss floor of :func:`mlp_regression`: the lowest loss of a long run from its ``x0``,
#: found once by ``python -m descend.problems``: ``torch.optim.LBFGS`` with a strong-Wolfe line
#: search, float64, allowed 20,000 iterations, stalls after 895 at a gradient norm of 5.8e-10;
#: it passes ``1.05 * MLP_FLOOR`` after 48 evaluations and ``1.01 *`` after 189. Other starts
#: reach other local minima within a few per cent of it (the noise variance is 0.01).
MLP_FLOOR = 0.01028424009013863

#: ``mlp_regression`` counts as solved at ``MLP_FLOOR * (1 + MLP_TOLERANCE)``: 5 % lies past
#: the plateaus, among the local minima other starts reach, and within reach of first-order
#: methods (measured from x0: gd at lr 0.3 after 1,864 iterations, Adam at lr 0.01 after 588;
#: at 1 % gd needs over 30,000 and Adam at lr 0.01 stalls 2.8 % above the floor).
MLP_TOLERANCE = 0.05


def _mlp_net(p: tuple[Tensor, ...], x: Tensor) -> Tensor:
    w1, b1, w2, b2 = p
    return torch.tanh(x @ w1.T + b1) @ w2 + b2


def _mlp_init(hidden: int, inputs: int, seed: int, scale: float = 1.0) -> tuple[Tensor, ...]:
    # torch.nn.Linear's default: uniform on +-1/sqrt(fan_in), from a fixed generator.
    g = torch.Generator().manual_seed(seed)

    def uniform(*shape: int, fan_in: int) -> Tensor:
        u = torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1
        return scale * u / math.sqrt(fan_in)

    return (uniform(hidden, inputs, fan_in=inputs), uniform(hidden, fan_in=inputs),
            uniform(hidden, fan_in=hidden), uniform(1, fan_in=hidden))


@functools.lru_cache(maxsize=1)
def _mlp_data() -> tuple[Tensor, Tensor]:
    # A teacher-student set-up: y is a random 2-4-1 tanh network (weights scaled up so the
    # function bends) plus Gaussian noise of standard deviation 0.1, so the floor is near 0.01.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 2, generator=g, dtype=torch.float64)
    teacher = _mlp_init(4, 2, seed=100, scale=3.0)
    y = _mlp_net(teacher, x) + 0.1 * torch.randn(256, generator=g, dtype=torch.float64)
    return x, y


def mlp_regression() -> Problem:
    """A 2-4-1 tanh MLP fitted by mean squared error to 256 fixed synthetic points.

    The parameters are a tuple ``(W1 (4, 2), b1 (4,), w2 (4,), b2 (1,))`` (17 numbers), float64,
    started at ``torch.nn.Linear``'s default initialisation from a fixed seed. The data are a
    random 2-4-1 "teacher" network plus noise of variance 0.01. Non-convex: there is no known
    ``x*``; ``f_star`` is :data:`MLP_FLOOR`, the floor of a long run, and the problem counts as
    solved within :data:`MLP_TOLERANCE` (5 %) of it.
    """
    x, y = _mlp_data()

    def mlp_mse(p: tuple[Tensor, ...]) -> Tensor:
        return ((_mlp_net(p, x) - y) ** 2).mean()

    return Problem("mlp_regression", mlp_mse, _mlp_init(4, 2, seed=1), x_star=None,
                   f_star=MLP_FLOOR, threshold=MLP_FLOOR * (1 + MLP_TOLERANCE))


#: name -> zero-argument function that builds the problem.
PROBLEMS: dict[str, Callable[[], Problem]] = {
    "notebook": notebook,
    "quadratic_k1": functools.partial(quadratic, 1.0),
    "quadratic_k1e2": functools.partial(quadratic, 1e2),
    "quadratic_k1e4": functools.partial(quadratic, 1e4),
    "rosenbrock_2": functools.partial(rosenbrock, 2),
    "rosenbrock_100": functools.partial(rosenbrock, 100),
    "diabetes_lstsq": diabetes_lstsq,
    "breast_cancer_logistic": breast_cancer_logistic,
    "mlp_regression": mlp_regression,
}


def get(name: str) -> Problem:
    """Build the problem called ``name`` (a key of :data:`PROBLEMS`).

    Raises:
        InputError: for an unknown name, listing the known ones.
    """
    try:
        make = PROBLEMS[name]
    except (KeyError, TypeError):
        raise InputError(
            f"unknown problem {name!r}; known problems: {', '.join(PROBLEMS)}"
        ) from None
    return make()


#: The names of the 35 Moré-Garbow-Hillstrom problems, in the paper's order (``mgh(k)`` is
#: ``mgh(MGH_NAMES[k - 1])``).
MGH_NAMES: tuple[str, ...] = tuple(p.name for p in _MGH)


def mgh(name_or_number: str | int) -> Problem:
    """Build Moré-Garbow-Hillstrom problem ``name_or_number`` (1-35, or a name of
    :data:`MGH_NAMES`) as a :class:`Problem`.

    ``fn`` is the sum of squares of the residuals, ``x0`` a fresh copy of the standard start
    (float64), ``f_star`` the paper's optimal value, ``x_star`` a minimiser where one is known in
    closed form, and ``threshold`` is ``f* + 1e-5 max(|f*|, 1e-3)`` (see :mod:`descend.mgh`).
    The problem's name is ``mgh<number>_<name>``, e.g. ``mgh01_rosenbrock``.

    Raises:
        InputError: for an unknown name or a number outside 1-35.
    """
    p = _mgh_get(name_or_number)
    x_star = None if p.x_star is None else p.x_star.clone()
    return Problem(f"mgh{p.number:02d}_{p.name}", p.fn, p.x0.clone(), x_star=x_star,
                   f_star=p.f_star, threshold=p.threshold)


def _mlp_floor(iterations: int = 20_000) -> tuple[float, float]:
    """Run ``torch.optim.LBFGS`` for ``iterations`` from ``mlp_regression``'s start; return the
    final loss and gradient norm (what :data:`MLP_FLOOR` states)."""
    p = mlp_regression()
    params = [t.clone().requires_grad_(True) for t in p.x0]
    opt = torch.optim.LBFGS(params, lr=1, max_iter=iterations, history_size=50,
                            tolerance_grad=0.0, tolerance_change=0.0,
                            line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = p.fn(tuple(params))
        loss.backward()
        return loss

    opt.step(closure)
    loss = p.fn(tuple(params))
    grads = torch.autograd.grad(loss, params)
    return float(loss.detach()), float(torch.cat([g.reshape(-1) for g in grads]).norm())


if __name__ == "__main__":  # python -m descend.problems: recompute MLP_FLOOR
    floor, gnorm = _mlp_floor()
    print(f"MLP_FLOOR = {floor!r}  # gradient norm {gnorm:.3e}")
