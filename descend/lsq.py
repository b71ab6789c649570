"""Least squares: ``least_squares(residuals, x0)`` and ``curve_fit(model, xdata, ydata, p0)``.

Both minimise the cost

    f(x) = 1/2 ||r(x)||^2 = 1/2 sum_i r_i(x)^2

(scipy's ``cost``; ``result.loss`` is this value, so ``2 * result.loss`` is the sum of squares)
through the one loop (:func:`descend.loop.assemble` then :func:`descend.loop.run`): the loop
evaluates ``f`` and ``grad f = J^T r`` by autograd, the rule turns them into an update vector, the
strong-Wolfe line search picks the length. What is special here is only the rule:
:class:`LevenbergMarquardt` (the default) and :class:`GaussNewton` compute the Jacobian ``J`` of
the residuals and return the solution of the damped normal equations, so the unit step is the
Levenberg-Marquardt (or Gauss-Newton) step. Any other rule (``rule="lbfgs"``) minimises the same
cost as a plain smooth function.
"""

from __future__ import annotations

import inspect
import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any, ClassVar, Literal, overload

import torch
from torch import Tensor, nn

from .errors import InputError, InputTypeError, check_positive
from .loop import Observer, assemble, run
from .objective import Objective, Params
from .result import Result, outcome, start_diagnosis
from .rules import Rule
from .steps import Step
from .stops import Criterion

if TYPE_CHECKING:  # names in the inherited Result fields, for the API reference (pdoc)
    from .batched import BatchedResult
    from .diagnose import Diagnosis  # noqa: F401
    from .history import History  # noqa: F401

__all__ = [
    "JACOBIAN_MODES",
    "LSQ_RULES",
    "CurveFit",
    "GaussNewton",
    "LeastSquaresResult",
    "LevenbergMarquardt",
    "covariance",
    "curve_fit",
    "jacobian",
    "least_squares",
    "solve_damped",
]

#: How the rules compute the Jacobian: reverse mode (one pass per residual), forward mode (one
#: pass per parameter), or the cheaper of the two for the problem's shape.
JACOBIAN_MODES = ("auto", "rev", "fwd")

#: A residual function on the flat parameter vector: ``z -> r(z)`` (1-D).
FlatResiduals = Callable[[Tensor], Tensor]


def _flat(ts: Sequence[Tensor]) -> Tensor:
    if len(ts) == 1:
        return ts[0].reshape(-1)
    return torch.cat([t.reshape(-1) for t in ts])


def _unflat(v: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    out, i = [], 0
    for t in like:
        n = t.numel()
        out.append(v[i:i + n].reshape(t.shape))
        i += n
    return out


def jacobian(fun: FlatResiduals, z: Tensor, mode: str = "auto") -> tuple[Tensor, Tensor]:
    """The residuals ``r(z)`` and their Jacobian ``J = dr/dz`` (shape ``(m, n)``) at ``z``.

    ``torch.func.jacrev`` (vmapped reverse mode: m vector-Jacobian products) or ``jacfwd``
    (n Jacobian-vector products; ``"auto"`` picks it when ``m > n``). A function the ``torch.func``
    transforms cannot trace (``.item()``, in-place writes into captured tensors, ...) falls back
    to ``torch.autograd.functional.jacobian``, one backward pass per residual.
    """
    z = z.detach()

    def with_aux(w: Tensor) -> tuple[Tensor, Tensor]:
        r = fun(w)
        return r, r.detach()

    if mode == "auto":
        m = getattr(fun, "m", None) or fun(z).numel()
        mode = "fwd" if m > z.numel() else "rev"
    transform = torch.func.jacfwd if mode == "fwd" else torch.func.jacrev
    try:
        with warnings.catch_warnings():
            # forward mode loads torch's jit decompositions once, with a warning not ours
            warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated",
                                    DeprecationWarning)
            J, r = transform(with_aux, has_aux=True)(z)
    except (RuntimeError, NotImplementedError, TypeError):
        r = fun(z).detach()
        J = torch.autograd.functional.jacobian(fun, z)
    return r, J.reshape(r.numel(), z.numel()).detach()


def solve_damped(A: Tensor, r: Tensor, lam: float, rcond: float) -> Tensor:
    """The ``v`` minimising ``||A v - r||^2 + lam ||v||^2``, i.e. solving
    ``(A^T A + lam I) v = A^T r``, as the least-squares solution of the augmented system::

        [ A           ]       [ r ]
        [ sqrt(lam) I ]  v =  [ 0 ]

    by an orthogonal factorisation (never forming ``A^T A``, whose condition number is the
    square of ``A``'s): Householder QR (LAPACK ``gels``) when ``lam > 0``, which makes the
    system full rank. For ``lam = 0`` the minimum-norm solution of a possibly rank-deficient
    ``A``, singular values below ``rcond * s_max`` cut: LAPACK ``gelsd`` (SVD) on CPU, the
    pseudo-inverse elsewhere. (Not ``gelsy``, torch's CPU default: in torch 2.13 it returns 0
    now and then for a rank-deficient ``A``.)
    """
    n = A.shape[1]
    if lam > 0:
        A = torch.cat([A, math.sqrt(lam) * torch.eye(n, dtype=A.dtype, device=A.device)])
        r = torch.cat([r, r.new_zeros(n)])
        return torch.linalg.lstsq(A, r[:, None], driver="gels").solution[:, 0]
    if A.device.type == "cpu":
        return torch.linalg.lstsq(A, r[:, None], rcond=rcond, driver="gelsd").solution[:, 0]
    return torch.linalg.pinv(A, rtol=rcond) @ r


@dataclass
class LevenbergMarquardt(Rule):
    """Levenberg-Marquardt with Moré's scaling and Nielsen's damping, as a descend rule.

    At the current point the rule computes the residuals ``r`` and their Jacobian ``J`` (m x n,
    all parameters flattened) and returns the update vector ``u`` solving::

        (J^T J + lam D^2) u = J^T r

    so ``x - 1 * u`` is the Levenberg-Marquardt step (the minimiser of the linear model
    ``1/2 ||r - J u||^2 + lam/2 ||D u||^2``) and ``J^T r = grad f`` makes ``-u`` a descent
    direction for every ``lam >= 0``. ``D = diag(d_j)`` holds the Jacobian's column norms,
    each the running maximum over the run (Moré 1978, eq. 6.3): in the scaled variables
    ``v = D u`` the problem does not depend on the units of the parameters, which is what solves
    badly scaled problems such as Meyer's. The system is solved through the SVD of the scaled
    Jacobian ``A = J D^{-1}``: ``u = D^{-1} v`` with ``v`` the least-squares solution of
    ``[A; sqrt(lam) I] v = [r; 0]`` (:func:`solve_damped`, an orthogonal factorisation that
    never squares the condition number). For ``lam = 0`` it is the minimum-norm Gauss-Newton
    step when ``J`` is rank-deficient (ranks below ``rcond`` cut).

    The damping adapts between iterations from what the rule sees: at its next call it infers
    the step actually taken, ``x_new = x - alpha u``, and compares the actual reduction of the
    cost with the one its linear model predicted for that step::

        pred = alpha g.u - alpha^2 / 2 ||J u||^2,    rho = (f(x) - f(x_new)) / pred

    A step the line search had to shorten (``alpha < 1``) or a non-positive ``rho`` means the
    model was trusted too far: ``lam <- lam * nu``, ``nu <- 2 nu``. Otherwise (Nielsen 1999)
    ``lam <- lam * max(1/3, 1 - (2 rho - 1)^3)``, ``nu <- 2``: a model that predicted well
    (rho near 1) lowers ``lam`` threefold, towards Gauss-Newton and its fast local convergence.
    ``lam`` starts at ``damping`` (relative to ``D^2``, the scaled ``J^T J``'s diagonal, so 1e-3
    is Nielsen's ``tau``) and stays in [1e-16, 1e16].

    The rule is ``newton_scaled``: :func:`descend.loop.assemble` pairs it with the strong-Wolfe
    line search starting at the unit step, which globalises it (Nocedal & Wright, ch. 10.3).
    It needs the residual function, which :func:`least_squares` binds (:meth:`bind`) before the
    run; the state (``lam``, ``nu``, ``D``, the last point and step, ``njev``) is plain data.

    Args:
        damping: the starting ``lam`` (>= 0).
        jacobian: ``"auto"``, ``"rev"`` or ``"fwd"`` (see :func:`jacobian`).
        rcond: relative cut-off for small singular values; default ``eps * max(m, n)``.

    References:
        Moré, "The Levenberg-Marquardt algorithm: implementation and theory", Numerical
        Analysis, LNM 630, 1978; Nielsen, "Damping parameter in Marquardt's method", IMM-REP
        1999-05, DTU, 1999; Madsen, Nielsen & Tingleff, "Methods for non-linear least squares
        problems", 2004, sec. 3.2; Nocedal & Wright, Numerical Optimization, 2nd ed., ch. 10.
    """

    name: ClassVar[str] = "lm"
    default_lr: ClassVar[float] = 1.0
    newton_scaled: ClassVar[bool] = True
    scalable: ClassVar[bool] = True
    #: Whether ``lam`` adapts (False: Gauss-Newton, ``lam = 0`` throughout).
    adaptive: ClassVar[bool] = True
    LAM_MIN: ClassVar[float] = 1e-16
    LAM_MAX: ClassVar[float] = 1e16

    damping: float = 1e-3
    jacobian: str = "auto"
    rcond: float | None = None

    def __post_init__(self) -> None:
        self.fun: FlatResiduals | None = None
        check_positive("damping", self.damping, allow_zero=True)
        if self.jacobian not in JACOBIAN_MODES:
            raise InputError(f"jacobian must be one of {', '.join(JACOBIAN_MODES)}, "
                             f"got {self.jacobian!r}")
        if self.rcond is not None:
            check_positive("rcond", self.rcond, allow_zero=True)

    def bind(self, fun: FlatResiduals) -> None:
        """Give the rule the residuals as a function of the flat parameter vector."""
        self.fun = fun

    def init(self, values: list[Tensor]) -> None:
        if self.fun is None:
            raise InputError(f"rule {self.name!r} needs the residuals, not only the loss; "
                             "use descend.least_squares(residuals, x0) or descend.curve_fit")
        if any(v.is_complex() for v in values):
            raise InputError(f"rule {self.name!r} needs real parameters, got a complex tensor")
        self.state = {"step": 0, "lam": float(self.damping), "nu": 2.0, "D": None, "x": None,
                      "u": None, "cost": math.nan, "gu": math.nan, "Ju2": math.nan,
                      "rho": math.nan, "alpha": math.nan, "njev": self.state.get("njev", 0)}

    def _adapt(self, x: Tensor, cost: float) -> None:
        """Nielsen's update of ``lam`` from the gain ratio of the step just taken."""
        st = self.state
        u = st["u"]
        uu = torch.dot(u, u).item()
        alpha = -torch.dot(x - st["x"], u).item() / uu if uu > 0 else 0.0
        pred = alpha * st["gu"] - 0.5 * alpha * alpha * st["Ju2"]
        actual = st["cost"] - cost
        rho = actual / pred if pred > 0 else -math.inf
        st["rho"], st["alpha"] = rho, alpha
        if not self.adaptive:
            return
        if alpha < 1 - 1e-3 or not rho > 0:
            st["lam"] *= st["nu"]
            st["nu"] *= 2
        else:
            st["lam"] *= max(1 / 3, 1 - (2 * rho - 1) ** 3)
            st["nu"] = 2.0
        st["lam"] = min(max(st["lam"], self.LAM_MIN), self.LAM_MAX)

    def direction(self, values: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        assert self.fun is not None  # init checked it
        st = self.state
        st["step"] += 1
        x = _flat(values).detach()
        r, J = jacobian(self.fun, x, self.jacobian)
        st["njev"] += 1
        cost = 0.5 * torch.dot(r, r).item()
        if st["x"] is not None:
            self._adapt(x, cost)
        # Moré's scaling: column norms, a running maximum (1 where a column was always zero)
        cols = torch.linalg.vector_norm(J, dim=0)
        D = cols if st["D"] is None else torch.maximum(st["D"], cols)
        st["D"] = D
        d = torch.where(D > 0, D, torch.ones_like(D))
        rcond = self.rcond
        if rcond is None:
            rcond = torch.finfo(J.dtype).eps * max(J.shape)
        lam = st["lam"] if self.adaptive else 0.0
        u = solve_damped(J / d, r, lam, rcond) / d
        Ju = J @ u
        st["x"], st["u"], st["cost"] = x, u, cost
        st["gu"] = torch.dot(J.mT @ r, u).item()
        st["Ju2"] = torch.dot(Ju, Ju).item()
        return _unflat(u, values)

    def state_dict(self) -> dict[str, Any]:
        return {k: (v.clone() if isinstance(v, Tensor) else v) for k, v in self.state.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = {k: (v.clone() if isinstance(v, Tensor) else v) for k, v in state.items()}


@dataclass
class GaussNewton(LevenbergMarquardt):
    """Gauss-Newton: ``u`` solves ``J^T J u = J^T r`` (``lam = 0``), the minimiser of the linear
    model ``1/2 ||r - J u||^2``. Where ``J^T J`` is singular the minimum-norm solution (in
    Moré's scaled variables) is taken, through the SVD with singular values below
    ``rcond * s_max`` cut, so ``-u`` stays a descent direction; the strong-Wolfe line search
    globalises it (damped Gauss-Newton, Nocedal & Wright sec. 10.3). Fast on small-residual
    problems; prefer :class:`LevenbergMarquardt` when ``J`` is nearly rank-deficient.

    References:
        Nocedal & Wright, Numerical Optimization, 2nd ed., sec. 10.3.
    """

    name: ClassVar[str] = "gauss-newton"
    adaptive: ClassVar[bool] = False
    damping: float = 0.0


#: The least-squares rules by name (any other name goes to :data:`descend.rules.RULES`).
LSQ_RULES: dict[str, type[LevenbergMarquardt]] = {
    "lm": LevenbergMarquardt, "gauss-newton": GaussNewton,
}


@dataclass(frozen=True, repr=False)
class LeastSquaresResult(Result):
    """A :class:`~descend.result.Result` with what scipy users look for in a least-squares fit.

    ``loss`` is the cost ``1/2 ||r(x)||^2`` (scipy's ``cost``); ``nfev`` counts evaluations of
    the cost and its gradient (each one residual evaluation and one backward pass).

    Attributes:
        fun: the residuals at ``x`` (1-D).
        jac: their Jacobian at ``x``, shape ``(m, n)`` over all parameters flattened.
        njev: Jacobian evaluations (the rule's, one per iteration, and the final one).
    """

    fun: Tensor | None = field(default=None, repr=False)  # type: ignore[assignment]
    jac: Tensor | None = field(default=None, repr=False)
    njev: int = 0

    @property
    def cost(self) -> float:
        """``1/2 ||r(x)||^2``, the same as ``loss``."""
        return self.loss


def _check_residuals(residuals: Callable[..., Tensor], params: Params, args: tuple,
                     what: str = "residuals") -> int:
    """Evaluate ``residuals`` once at the start and check its contract; return ``m``."""
    r = residuals(params.structure, *args)
    if not isinstance(r, Tensor):
        raise InputTypeError(f"{what} must return a torch.Tensor of residuals, got "
                             f"{type(r).__name__}; build them from x with torch operations")
    if not r.is_floating_point():
        raise InputTypeError(f"{what} must return floating-point residuals, got dtype {r.dtype}")
    if r.numel() == 0:
        raise InputError(f"{what} returned no residuals (shape {tuple(r.shape)}); "
                         "return one residual per observation")
    if not r.requires_grad:
        raise InputError(f"the residuals returned by {what} do not depend on x; compute them "
                         "from the x it receives, without .detach(), .item() or numpy")
    bad = (~torch.isfinite(r.detach().reshape(-1))).nonzero().reshape(-1)
    if bad.numel():
        raise InputError(f"{what} at x0 has {bad.numel()} non-finite residual(s), first at "
                         f"index {bad[0].item()}; start from a point where every residual is "
                         "finite")
    return r.numel()


def _flat_residuals(residuals: Callable[..., Tensor], params: Params,
                    args: tuple) -> FlatResiduals:
    """``z -> residuals(x(z), *args).reshape(-1)`` on the flat parameter vector ``z``."""
    like = params.values

    def fun(z: Tensor) -> Tensor:
        return residuals(params.build(_unflat(z, like)), *args).reshape(-1)

    return fun


@overload
def least_squares(
    residuals: Callable[..., Tensor],
    x0: Any,
    *,
    args: tuple = ...,
    rule: str | Rule | Any | None = ...,
    lr: float | str | Step | Any | None = ...,
    stop: Criterion | Iterable[Criterion] | None = ...,
    max_iter: int | None = ...,
    callback: Callable[[Any], Any] | None = ...,
    observers: Sequence[Observer] = ...,
    verbose: bool = ...,
    progress: bool = ...,
    record: str | os.PathLike[str] | bool | None = ...,
    on_divergence: str | None = ...,
    batched: Literal[False] = ...,
) -> LeastSquaresResult: ...


@overload
def least_squares(
    residuals: Callable[..., Tensor],
    x0: Any,
    *,
    args: tuple = ...,
    rule: str | Rule | Any | None = ...,
    lr: float | str | Step | Any | None = ...,
    stop: Criterion | Iterable[Criterion] | None = ...,
    max_iter: int | None = ...,
    callback: Callable[[Any], Any] | None = ...,
    observers: Sequence[Observer] = ...,
    verbose: bool = ...,
    progress: bool = ...,
    record: str | os.PathLike[str] | bool | None = ...,
    on_divergence: str | None = ...,
    batched: Literal[True],
) -> BatchedResult: ...


def least_squares(
    residuals: Callable[..., Tensor],
    x0: Any,
    *,
    args: tuple = (),
    rule: str | Rule | Any | None = None,
    lr: float | str | Step | Any | None = None,
    stop: Criterion | Iterable[Criterion] | None = None,
    max_iter: int | None = None,
    callback: Callable[[Any], Any] | None = None,
    observers: Sequence[Observer] = (),
    verbose: bool = False,
    progress: bool = False,
    record: str | os.PathLike[str] | bool | None = None,
    on_divergence: str | None = None,
    batched: bool = False,
) -> LeastSquaresResult | BatchedResult:
    """Minimise ``f(x) = 1/2 ||r(x)||^2`` with ``r = residuals(x, *args)`` from ``x0``.

    By default the rule is :class:`LevenbergMarquardt` (``rule="lm"``): each iteration solves
    ``(J^T J + lam D^2) u = J^T r`` and the strong-Wolfe line search, starting at the unit step,
    chooses ``alpha`` in ``x <- x - alpha u``; ``lam`` adapts from the gain ratio (Nielsen).
    ``rule="gauss-newton"`` is the undamped step; any rule of :func:`descend.minimize`
    (``"lbfgs"``, ...) minimises the same cost from its gradient alone. Same loop, stops,
    observers, records and divergence guard as :func:`descend.minimize`; unless ``stop`` says
    otherwise the run ends when no step along ``u`` lowers the cost beyond round-off (reason
    ``"roundoff"``, a success when the gradient has also fallen below ``sqrt(eps)`` of its
    start) or at the iteration cap.

    Migrating from scipy: ``scipy.optimize.least_squares(fun, x0, method="lm")`` becomes
    ``descend.least_squares(fun, torch.tensor(x0))``; ``res.x``, ``res.cost`` (= ``res.loss``),
    ``res.fun``, ``res.jac``, ``res.nfev``, ``res.njev`` and ``res.success`` read the same.

    Args:
        residuals: ``residuals(x, *args)`` returns the residuals as a floating tensor of any shape
            (flattened to ``m`` values) built from ``x`` with torch operations.
        x0: the start: a floating tensor of any shape, or a tuple/list/dict of them (then
            ``residuals`` receives the same structure). Never mutated.
        args: extra positional arguments for ``residuals``.
        rule: ``"lm"`` (default), ``"gauss-newton"``, a :class:`LevenbergMarquardt` with its
            settings, or any rule :func:`descend.minimize` takes.
        lr, stop, max_iter, callback, observers, verbose, progress, record, on_divergence: as in
            :func:`descend.minimize`.
        batched: fit many independent problems at once (:mod:`descend.batched_lsq`): ``x0`` and
            the tensors in ``args`` have the problem dimension ``K`` first, ``residuals``
            returns one row of residuals per problem; the default rule is then ``lbfgs`` with
            the strong-Wolfe search per problem, and the result a
            :class:`~descend.batched.BatchedResult`.

    Returns:
        A :class:`LeastSquaresResult`; ``loss`` is ``1/2 ||r||^2`` (scipy's ``cost``).

    Raises:
        InputError: before any work, on a bad ``x0``, ``args`` or rule, or residuals that are
            not a floating tensor, do not depend on ``x`` or are not finite at ``x0``.
    """
    if not callable(residuals):
        raise InputTypeError(f"residuals must be callable, got {type(residuals).__name__}")
    if isinstance(x0, nn.Module):
        raise InputTypeError("least_squares takes tensors as x0, not an nn.Module; pass its "
                             "parameters as a dict of tensors, or train it with descend.fit")
    if not isinstance(args, tuple):
        raise InputTypeError(f"args must be a tuple, got {type(args).__name__}")
    if batched:
        from .batched_lsq import batched_least_squares

        return batched_least_squares(residuals, x0, args, rule=rule, lr=lr, stop=stop,
                                     max_iter=max_iter, on_divergence=on_divergence, refused={
                                         "callback": callback, "observers": observers,
                                         "verbose": verbose, "progress": progress,
                                         "record": record})
    params = Params(x0)
    if any(v.is_complex() for v in params.values):
        raise InputError("least_squares needs real parameters, got a complex tensor; split it "
                         "into real and imaginary parts")
    m = _check_residuals(residuals, params, args)
    if rule is None or (isinstance(rule, str) and rule in LSQ_RULES):
        rule = LSQ_RULES[rule or "lm"]()

    def cost(x: Any, *a: Any) -> Tensor:
        r = residuals(x, *a)
        return 0.5 * (r * r).sum()

    cost.__name__ = getattr(residuals, "__name__", "residuals")
    objective = Objective(cost, params, args)
    parts = assemble(params, rule=rule, lr=lr, stop=stop, max_iter=max_iter, callback=callback,
                     observers=observers, progress=progress, verbose=verbose,
                     on_divergence=on_divergence)
    fun = _flat_residuals(residuals, params, args)
    fun.m = m  # type: ignore[attr-defined]  # lets "auto" pick jacfwd/jacrev without a call
    lsq_rule = parts.rule if isinstance(parts.rule, LevenbergMarquardt) else None
    if lsq_rule is not None:
        lsq_rule.bind(fun)
    start = start_diagnosis(cost, params, args, None, parts.criteria)
    snaps = None
    if record is not None and record is not False:
        from .observers import Snapshots
        from .store import records_root

        root = records_root(record)
        parts.observers.append(snaps := Snapshots())

    t0 = perf_counter()
    s, fired = run(objective, parts)
    seconds = perf_counter() - t0

    fields = outcome(s, fired, seconds, parts.step.describe())
    xf = [t.detach() for t in (s.finite_values or params.values)]
    r, J = jacobian(fun, _flat(xf), lsq_rule.jacobian if lsq_rule else "auto")
    njev = (lsq_rule.state.get("njev", 0) if lsq_rule else 0) + 1
    fields["jac"] = J  # scipy's least_squares: jac is the Jacobian of the residuals
    res = LeastSquaresResult(**fields, diagnose=start, fun=r, njev=njev)
    if snaps is not None:
        from .result import record_result

        record_result(root, res, snapshots=snaps, config={
            "kind": "least_squares", "problem": cost.__name__, "lr": parts.lr,
            "stop": [repr(c) for c in parts.criteria], "max_iter": max_iter})
    return res


@dataclass(frozen=True)
class CurveFit:
    """What :func:`curve_fit` returns. Unpacks like scipy's pair: ``popt, pcov = curve_fit(...)``.

    Attributes:
        popt: the fitted parameters (1-D, like ``p0``).
        pcov: their estimated covariance, ``s^2 (J^T J)^{-1}`` (``s^2 = 1`` with
            ``absolute_sigma=True``); all ``inf`` where it is undefined.
        perr: one standard deviation per parameter, ``sqrt(diag(pcov))``.
        result: the :class:`LeastSquaresResult` of the run (reason, history, ``nfev``, ``jac``);
            with ``batched=True`` the :class:`~descend.batched.BatchedResult` of the ``K`` fits
            (and ``popt``, ``pcov``, ``perr`` have the leading ``K``).
    """

    popt: Tensor
    pcov: Tensor
    perr: Tensor
    result: LeastSquaresResult = field(repr=False)

    def __iter__(self) -> Any:
        return iter((self.popt, self.pcov))

    def __repr__(self) -> str:
        if isinstance(self.result.success, Tensor):  # K fits (batched=True)
            return f"CurveFit(K={self.popt.shape[0]} fits: {self.result!r})"
        ok = "success" if self.result.success else "no success"
        return (f"CurveFit({ok}: {self.result.reason}, popt={self.popt.tolist()}, "
                f"perr={self.perr.tolist()})")


def covariance(J: Tensor, cost: float, absolute_sigma: bool = False) -> Tensor:
    """The parameters' covariance from the Jacobian ``J`` (m x n) of the weighted residuals at
    the optimum, as scipy's ``curve_fit`` computes it.

    ``(J^T J)^{-1} = V diag(1 / s_i^2) V^T`` from the SVD ``J = U S V^T`` (never forming
    ``J^T J``); with ``absolute_sigma=False`` it is scaled by the residual variance
    ``s^2 = 2 cost / (m - n) = ||r||^2 / (m - n)``. Undefined (all ``inf``) when ``J`` has rank
    below ``n`` (singular values below ``eps * max(m, n) * s_max``: some combination of
    parameters is not determined by the data) or, for ``s^2``, when ``m == n``.
    """
    m, n = J.shape
    _, S, Vh = torch.linalg.svd(J, full_matrices=False)
    tol = torch.finfo(J.dtype).eps * max(m, n) * S[0]
    keep = torch.gt(S, tol)
    if int(keep.sum()) < n or (not absolute_sigma and m <= n):
        return torch.full((n, n), math.inf, dtype=J.dtype, device=J.device)
    pcov = (Vh.mT / (S * S)) @ Vh
    return pcov if absolute_sigma else pcov * (2 * cost / (m - n))


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(k) for k in t.shape) + ("," if t.dim() == 1 else "") + ")"


def _unpacks(model: Callable[..., Tensor], n: int) -> bool:
    """Whether ``model`` is written scipy's way, ``model(x, p1, ..., pn)`` with ``n >= 2``."""
    if n < 2:
        return False
    try:
        sig = inspect.signature(model)
    except (TypeError, ValueError):
        return False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    pos = [q for q in sig.parameters.values() if q.kind in kinds]
    return len(pos) == n + 1


def _check_data(xdata: Any, ydata: Any, p0: Any, sigma: Any) -> tuple[Tensor, Tensor | None]:
    """The checks of :func:`curve_fit`'s data, up front; returns ``(ydata, sigma)``."""
    if not isinstance(p0, Tensor) or not p0.is_floating_point() or p0.dim() != 1:
        what = _shape(p0) + f" {p0.dtype}" if isinstance(p0, Tensor) else type(p0).__name__
        raise InputError(f"p0 must be a 1-D floating tensor of starting parameters, got {what}; "
                         "e.g. torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)")
    if not isinstance(ydata, Tensor) or not ydata.is_floating_point():
        what = f"dtype {ydata.dtype}" if isinstance(ydata, Tensor) else type(ydata).__name__
        raise InputTypeError(f"ydata must be a floating tensor, got {what}; convert it with "
                             "torch.as_tensor(ydata, dtype=p0.dtype)")
    m, n = ydata.numel(), p0.numel()
    if isinstance(xdata, Tensor) and ydata.dim() == 1 and xdata.dim() >= 1 \
            and m not in (xdata.shape[0], xdata.shape[-1]):
        raise InputError(f"xdata has shape {_shape(xdata)} but ydata has {m} values; give one "
                         f"x per observation: shape ({m},) or (k, {m})")
    if not torch.isfinite(ydata).all():
        raise InputError("ydata has non-finite values (nan or inf); drop those observations")
    if m < n:
        raise InputError(f"curve_fit needs at least as many observations as parameters, got "
                         f"{m} values in ydata for {n} parameters in p0; add data or fix some "
                         "parameters")
    if sigma is None:
        return ydata, None
    if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
        sigma = torch.full_like(ydata, float(sigma))
    if not isinstance(sigma, Tensor) or sigma.shape != ydata.shape:
        what = _shape(sigma) if isinstance(sigma, Tensor) else type(sigma).__name__
        raise InputError(f"sigma must hold one standard deviation per observation, shape "
                         f"{_shape(ydata)} like ydata, got {what} (a covariance matrix is not "
                         "supported)")
    if not (torch.isfinite(sigma).all() and (sigma > 0).all()):
        raise InputError("sigma must be finite and > 0 everywhere, got "
                         f"min {sigma.min().item():g}; drop observations with no uncertainty")
    return ydata, sigma.to(ydata.dtype)


def curve_fit(
    model: Callable[..., Tensor],
    xdata: Any,
    ydata: Tensor,
    p0: Tensor,
    *,
    sigma: Tensor | float | None = None,
    absolute_sigma: bool = False,
    rule: str | Rule | Any | None = None,
    lr: float | str | Step | Any | None = None,
    stop: Criterion | Iterable[Criterion] | None = None,
    max_iter: int | None = None,
    callback: Callable[[Any], Any] | None = None,
    observers: Sequence[Observer] = (),
    verbose: bool = False,
    progress: bool = False,
    record: str | os.PathLike[str] | bool | None = None,
    on_divergence: str | None = None,
    batched: bool = False,
) -> CurveFit:
    """Fit ``ydata ~ model(xdata, p)`` by least squares, as ``scipy.optimize.curve_fit`` does.

    Minimises ``1/2 sum_i ((model(xdata, p)_i - ydata_i) / sigma_i)^2`` with
    :func:`least_squares` (Levenberg-Marquardt by default) and estimates the covariance of the
    parameters at the optimum from the Jacobian ``J`` of the weighted residuals::

        pcov = s^2 (J^T J)^{-1},   s^2 = ||r||^2 / (m - n)   (absolute_sigma=False)
        pcov = (J^T J)^{-1}                                   (absolute_sigma=True)

    With ``absolute_sigma=False`` only the relative sizes of ``sigma`` matter (the residual
    variance rescales them); with ``True`` they are taken as the data's true standard deviations.

    Migrating from scipy: ``scipy.optimize.curve_fit(f, xdata, ydata, p0)`` becomes
    ``descend.curve_fit(f, xdata, ydata, p0)`` with tensors; ``popt, pcov = ...`` unpacks the
    same. descend calls ``model(xdata, p)`` with the parameters as **one** 1-D tensor ``p``
    (index it: ``p[0] * torch.exp(-p[1] * x)``); a model written scipy's way,
    ``f(x, a, b, c)`` with exactly ``len(p0) + 1`` positional parameters (``len(p0) >= 2``), is
    called as ``f(xdata, *p)``. The model must use torch operations.

    Args:
        model: ``model(xdata, p) -> predictions`` shaped like ``ydata``.
        xdata: the independent variable, passed to ``model`` as is (a tensor of shape ``(m,)``
            or ``(k, m)``, or anything the model reads).
        ydata: the ``m`` observations (floating tensor).
        p0: the starting parameters (1-D floating tensor; not mutated).
        sigma: the observations' standard deviations (shaped like ``ydata``, or one number),
            all finite and > 0; default 1.
        absolute_sigma: whether ``sigma`` is absolute (see above).
        rule, lr, stop, max_iter, callback, observers, verbose, progress, record,
            on_divergence: as in :func:`least_squares`.
        batched: fit ``K`` data sets at once: ``xdata``, ``ydata`` (and a tensor ``sigma``)
            of shape ``(K, m)``, ``p0`` of shape ``(K, n)``; a model written scipy's way gets
            each parameter as a ``(w, 1)`` column, a model ``f(x, p)`` gets ``p`` as
            ``(w, n)``. ``popt``, ``pcov``, ``perr`` then have the leading ``K`` and ``result``
            is a :class:`~descend.batched.BatchedResult`
            (:func:`descend.batched_lsq.batched_curve_fit`).

    Returns:
        A :class:`CurveFit` with ``popt``, ``pcov``, ``perr`` and the run's ``result``.

    Raises:
        InputError: before any work, on a bad ``p0``, ``ydata``, ``sigma``, mismatched
            ``xdata``/``ydata`` or model output, or fewer observations than parameters.
    """
    if not callable(model):
        raise InputTypeError(f"model must be callable, got {type(model).__name__}")
    if batched:
        from .batched_lsq import batched_curve_fit

        n = p0.shape[-1] if isinstance(p0, Tensor) and p0.dim() else 0
        popt, pcov, perr, batch = batched_curve_fit(
            model, xdata, ydata, p0, sigma, absolute_sigma, _unpacks(model, n), rule=rule,
            lr=lr, stop=stop, max_iter=max_iter, on_divergence=on_divergence,
            callback=callback, observers=observers, verbose=verbose, progress=progress,
            record=record)
        return CurveFit(popt, pcov, perr, batch)  # type: ignore[arg-type]  # a batch's result
    ydata, sigma_t = _check_data(xdata, ydata, p0, sigma)
    n = p0.numel()
    call = (lambda x, p: model(x, *p)) if _unpacks(model, n) else model
    with torch.no_grad():
        pred = call(xdata, p0)
    if not isinstance(pred, Tensor) or pred.shape != ydata.shape:
        what = _shape(pred) if isinstance(pred, Tensor) else type(pred).__name__
        raise InputError(f"model(xdata, p0) returned {what}, but ydata has shape "
                         f"{_shape(ydata)}; the model must predict one value per observation")

    def residuals(p: Tensor) -> Tensor:
        r = call(xdata, p) - ydata
        return r if sigma_t is None else r / sigma_t

    residuals.__name__ = getattr(model, "__name__", type(model).__name__)
    res = least_squares(residuals, p0, rule=rule, lr=lr, stop=stop, max_iter=max_iter,
                        callback=callback, observers=observers, verbose=verbose,
                        progress=progress, record=record, on_divergence=on_divergence)
    assert res.jac is not None
    pcov = covariance(res.jac, res.loss, absolute_sigma)
    return CurveFit(popt=res.x.detach().clone(), pcov=pcov, perr=pcov.diagonal().sqrt(),
                    result=res)
