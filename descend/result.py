"""What a run returns: :class:`Result`, plain data with documented fields.

A ``Result`` pickles (send it to another process, cache it, store it): it holds tensors, a
:class:`~descend.history.History` of plain lists, and the start's diagnosis as a
:class:`StartDiagnosis`, which keeps the objective only in memory. Pickling drops the objective
(a closure cannot be pickled) and keeps a diagnosis already computed; asking for one afterwards
says so in one line.

Also here: :func:`outcome` (the fields every front end fills alike from the loop's final state),
:func:`explain` (why the run stopped, in words), and :func:`record_result` (a run record from a
result).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from torch import Tensor

from .diagnose import UNIT_TOL, Diagnosis, diagnose_at
from .errors import InputError
from .history import History
from .i18n import _
from .objective import Params
from .stops import Criterion, LossBelow, message, succeeded

if TYPE_CHECKING:
    from .observers import Snapshots
    from .state import LoopState
    from .store import Run

__all__ = ["STATUS", "NoObjectiveError", "Result", "StartDiagnosis", "explain", "outcome",
           "record_result", "status_of"]


#: scipy-style ``status`` codes, by reason: 0 success; 1 a cap; 2 a divergence guard; 3 any
#: other failure.
STATUS = {
    "success": 0,
    "max_iter": 1, "max_evals": 1, "time_limit": 1, "max_epochs": 1,
    "diverged": 2, "nonfinite": 2,
}


def status_of(reason: str, success: bool) -> int:
    """The scipy-style termination code of a run that stopped with ``reason``."""
    return 0 if success else STATUS.get(reason, 3)


class NoObjectiveError(InputError):
    """The start's diagnosis was asked of an unpickled :class:`Result` that never computed it."""


class StartDiagnosis:
    """The diagnosis of a run's start, computed on first call and then kept.

    It keeps the objective (``fn``, the parameters, ``args``) and the starting values by
    reference (updates never write into them) and diagnoses there with the run's fixed step
    (``lr=None`` for any other strategy) and loss threshold. Pickling keeps ``lr``, ``threshold``
    and a diagnosis already computed, and drops the objective.
    """

    def __init__(self, fn: Callable[..., Tensor] | None, params: Params | None,
                 args: tuple, lr: float | None, threshold: float | None) -> None:
        self.fn, self.params, self.args = fn, params, args
        self.start = list(params.values) if params is not None else []
        self.lr, self.threshold = lr, threshold
        self.diagnosis: Diagnosis | None = None

    def __call__(self) -> Diagnosis:
        if self.diagnosis is None:
            if self.fn is None or self.params is None:
                raise NoObjectiveError(
                    "the start's diagnosis was not computed before this Result was pickled, and "
                    "a pickle keeps no objective; call res.diagnose() before pickling, or "
                    "descend.diagnose(fn, x0, lr=...) on the objective"
                )
            self.diagnosis = diagnose_at(self.fn, self.params, self.start, self.args, self.lr,
                                         self.threshold, 0.0, 100, 1e-4, 0)
        return self.diagnosis

    def __getstate__(self) -> dict[str, Any]:
        return {"fn": None, "params": None, "args": (), "start": [], "lr": self.lr,
                "threshold": self.threshold, "diagnosis": self.diagnosis}

    def __repr__(self) -> str:
        done = "computed" if self.diagnosis is not None else "not computed"
        return f"StartDiagnosis(lr={self.lr!r}, threshold={self.threshold!r}, {done})"


def start_diagnosis(fn: Callable[..., Tensor], params: Params, args: tuple, lr: float | None,
                    criteria: Sequence[Criterion]) -> StartDiagnosis:
    """The :class:`StartDiagnosis` of a ``minimize`` run: ``lr`` when the step is a fixed
    number, the threshold of its :class:`~descend.stops.LossBelow` criterion, if any."""
    threshold = next((c.threshold for c in criteria if isinstance(c, LossBelow)), None)
    return StartDiagnosis(fn, params, args, lr, threshold)


@dataclass(frozen=True)
class Result:
    """The outcome of a run. Fields, one by one:

    Attributes:
        x: the final point, in the structure of ``x0`` (for an ``nn.Module``: the module, which
            holds the final parameters; a numpy array for a numpy ``x0``). After a non-finite
            loss: the last finite iterate.
        loss: ``f(x)``.
        best_x: the point with the lowest loss seen (a ``{name: tensor}`` dict for a module).
        best_loss: ``f(best_x)``.
        nit: number of iterations (updates of ``x``).
        nfev: number of objective evaluations (line-search trials included).
        reason: why the run stopped: a key of :data:`descend.stops.REASONS`.
        message: that reason in words, with the numbers.
        success: whether the reason counts as convergence (see :data:`descend.stops.REASONS`).
        history: the per-iteration :class:`History`.
        seconds: wall-clock time of the run.
        rule: the update rule's name.
        step: the step-size strategy, in words.
        diagnose: a zero-argument callable returning the :class:`~descend.diagnose.Diagnosis`
            at the start, with the run's fixed lr and loss threshold (local estimates from
            Hessian-vector products, computed on the first call and kept); ``None`` when the
            result was not made by :func:`descend.minimize`.
        jac: the gradient at ``x``, in the structure of ``x0`` (scipy's name).
        compile_seconds: with ``compile=True``, the wall time of the first evaluation, where
            ``torch.compile`` compiled the objective (part of ``seconds``); 0.0 otherwise.

    scipy's names work as well: ``res.fun`` (``loss``), ``res.jac``, ``res.nit``, ``res.nfev``,
    ``res.status`` (:data:`STATUS`), ``res.message``, ``res.success``, and mapping access
    ``res["x"]``, ``"fun" in res``, ``res.keys()``, as with ``scipy.optimize.OptimizeResult``.
    """

    x: Any
    loss: float
    best_x: Any
    best_loss: float
    nit: int
    nfev: int
    reason: str
    message: str
    success: bool
    history: History = field(repr=False)
    seconds: float
    rule: str = "gd"
    step: str = ""
    diagnose: Callable[[], Diagnosis] | None = field(default=None, repr=False, compare=False)
    jac: Any = field(default=None, repr=False, compare=False)
    compile_seconds: float = field(default=0.0, repr=False, compare=False)

    # ---- scipy.optimize.OptimizeResult's names, for scipy users (see :data:`STATUS`)

    @property
    def fun(self) -> float:
        """scipy's name for :attr:`loss`."""
        return self.loss

    @property
    def status(self) -> int:
        """scipy-style termination code: 0 success, 1 a cap (iterations, evaluations, time,
        epochs), 2 a divergence guard, 3 any other failure (see :data:`STATUS`)."""
        return status_of(self.reason, self.success)

    def keys(self) -> list[str]:
        """The fields, and scipy's names, that ``res[name]`` answers (as ``OptimizeResult``)."""
        names = [f.name for f in fields(self)]
        return names + [n for n in ("fun", "status") if n not in names]

    def __getitem__(self, name: str) -> Any:
        if name not in self.keys():
            raise KeyError(name)
        return getattr(self, name)

    def __contains__(self, name: object) -> bool:
        return name in self.keys()

    def get(self, name: str, default: Any = None) -> Any:
        """``res[name]``, or ``default`` when the result has no such field."""
        return getattr(self, name) if name in self.keys() else default

    def __repr__(self) -> str:
        ok = "success" if self.success else "no success"
        return (
            f"Result({ok}: {self.reason}, nit={self.nit}, loss={self.loss:.4e}, "
            f"best_loss={self.best_loss:.4e}, rule={self.rule!r}, step={self.step!r}, "
            f"seconds={self.seconds:.3g})"
        )

    def _repr_html_(self) -> str:
        """Jupyter's view: the stop reason, the numbers and a small loss curve."""
        from .report import result_html

        return result_html(self)

    @property
    def ok(self) -> bool:
        """Alias of ``success``."""
        return self.success

    def rate(self) -> float:
        """Observed linear rate: the median ratio ``loss_{k+1} / loss_k`` over the run's
        iterations (the guard's rollback rows left out; nan when there are fewer than two
        positive, finite losses)."""
        back = self.history.extra.get("backtrack", ())
        losses = [v for k, v in enumerate(self.history.loss)
                  if math.isfinite(v) and v > 0 and not (k < len(back) and back[k] == 1)]
        ratios = sorted(b / a for a, b in itertools.pairwise(losses))
        return ratios[len(ratios) // 2] if ratios else math.nan

    def explain(self) -> str:
        """Why the run stopped, the observed linear rate against the one the local quadratic
        model predicts, and which fixed step would have been faster, in plain words (print it:
        ``print(result.explain())``). The curvature figures come from :attr:`diagnose`."""
        return explain(self)


def outcome(s: LoopState, fired: Criterion, seconds: float, step: str) -> dict[str, Any]:
    """The fields of a :class:`Result` that every front end fills alike, from the final state,
    the criterion that fired and the step-size strategy in words."""
    params = s.params
    return {
        "x": params.structure if params.kind == "module" else params.build(
            params.own(params.values)),
        "loss": s.finite_loss if s.finite_values else s.loss,
        "best_x": params.build(params.own(s.best_values or params.values)),
        "best_loss": s.best_loss,
        "nit": s.iteration,
        "nfev": s.objective.nfev,
        "reason": fired.reason,
        "message": message(fired, s),
        "success": succeeded(fired),
        "history": s.history,
        "seconds": seconds,
        "rule": getattr(s.rule, "label", s.rule.name),
        "step": step,
        "jac": params.build(s.grads) if s.grads else None,
    }


def record_result(
    root: str | os.PathLike[str],
    result: Result,
    *,
    config: Mapping[str, Any] | None = None,
    snapshots: Snapshots | Mapping[str, Any] | None = None,
    target: Tensor | None = None,
    diagnostics: Mapping[str, Any] | None = None,
    extra_columns: Mapping[str, Sequence[Any]] | None = None,
    env: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    started: bool = False,
) -> Run:
    """Record a :class:`Result` (:mod:`descend.store`): its history, summary and final ``x``.

    Args:
        root: the records folder.
        result: what ``minimize`` (or ``fit``) returned.
        config: what was asked; ``rule`` and ``step`` default to the result's.
        snapshots: a :class:`~descend.observers.Snapshots` observer that watched the run (or its
            ``data()``); nothing is saved when it recorded no frames.
        target: what ``x`` should approach, drawn beside the heatmap (same number of elements).
        diagnostics: what ``diagnose`` found.
        extra_columns: more history columns (one value per row), e.g. validation losses.
        env: the environment; default :func:`descend.store.environment` now.
        run_id: the id; default a fresh one.
        started: complete the run ``run_id`` the command line started (see
            :func:`descend.store.record_run`).
    """
    from torch import nn

    from .store import RESULT_FIELDS, device_of, environment, record_run

    cfg: dict[str, Any] = {"rule": result.rule, "step": result.step}
    cfg.update(config or {})
    summary = {k: getattr(result, k) for k in RESULT_FIELDS}
    cols: dict[str, Sequence[Any]] = dict(result.history.columns)
    cols.update(extra_columns or {})
    x = result.x.state_dict() if isinstance(result.x, nn.Module) else result.x
    if env is None:
        env = environment(device=device_of(x))
    snap: Mapping[str, Any] | None
    snap = snapshots.data(target) if hasattr(snapshots, "data") else snapshots  # type: ignore[union-attr]
    if snap is not None and not snap.get("iteration"):
        snap = None
    return record_run(root, config=cfg, history_columns=cols, result_summary=summary,
                      params=x, snapshots=snap, diagnostics=diagnostics, env=env, run_id=run_id,
                      started=started)


# ---------------------------------------------------------------------------- explain


def _f(v: float) -> str:
    return f"{v:.4g}"


def _obs(rate: float) -> str:
    return _f(rate) if math.isfinite(rate) else _("n/a")


def _n(k: float) -> str:
    """``k`` iterations in words (one sentence each way, so each language says it its way)."""
    return _("1 iteration") if k == 1 else _("{k} iterations").format(k=int(k))


def _iters(k: float | None) -> str:
    if k is None:
        return _("n/a")
    if math.isinf(k):
        return _("never")
    return _n(k)


def explain(result: Result) -> str:
    """Why a run stopped, its observed rate against the local model's, and which fixed step
    would have been faster, in plain words (the text of :meth:`Result.explain`), in the language
    of :func:`descend.i18n.set_language`."""
    its = _n(result.nit)
    why = (_("Why it stopped: {message} [{reason}], after {its} and {nfev} evaluations; a "
             "success.") if result.success else
           _("Why it stopped: {message} [{reason}], after {its} and {nfev} evaluations; not a "
             "success."))
    lines = [why.format(message=result.message, reason=result.reason, its=its, nfev=result.nfev)]
    rate = result.rate()
    lines.append(
        _("Observed rate: the loss changed by a factor {rate} per iteration (median of "
          "loss_(k+1) / loss_k).").format(rate=_f(rate))
        if math.isfinite(rate) else _("Observed rate: n/a (fewer than two positive losses)."))
    if result.diagnose is None:
        lines.append(_("No diagnosis: this result was not made by descend.minimize."))
        return "\n".join(lines)
    try:
        d = result.diagnose()
    except NoObjectiveError as e:  # unpickled before the diagnosis was computed
        lines.append(_("No diagnosis: {error}").format(error=e))
        return "\n".join(lines)
    except RuntimeError as e:  # e.g. fn is not twice differentiable
        lines.append(_("No diagnosis: the Hessian-vector products failed ({error}).").format(
            error=e))
        return "\n".join(lines)
    hvps = (_("Local estimates at the start (quadratic model from 1 Hessian-vector product): "
              "top curvature L = {L}, bottom curvature mu = {mu}, condition number {condition}; "
              "fixed steps are stable for 0 < lr < 2/L = {lr_max}.") if d.hvps == 1 else
            _("Local estimates at the start (quadratic model from {hvps} Hessian-vector "
              "products): top curvature L = {L}, bottom curvature mu = {mu}, condition number "
              "{condition}; fixed steps are stable for 0 < lr < 2/L = {lr_max}."))
    lines.append(hvps.format(hvps=d.hvps, L=_f(d.L), mu=_f(d.mu), condition=_f(d.condition),
                             lr_max=_f(d.lr_max)))
    if not d.convex:
        lines.append(_("The model is not convex at the start (mu <= 0), so it predicts no "
                       "iteration count; steps below 2/L are stable along positive curvature."))
    if result.rule != "gd":
        lines.append(_("The predictions below are for plain gradient descent (rule 'gd'); this "
                       "run used {rule!r}, whose rate differs.").format(rule=result.rule))
    target = "" if d.threshold is None else _(" to the threshold {threshold:g}").format(
        threshold=d.threshold)
    if d.lr is None or d.contraction is None:
        lines.append(_("The step was not a fixed lr ({step}), so there is no prediction for "
                       "this run's own step.").format(step=result.step))
    elif d.lr > d.lr_max * (1 + UNIT_TOL):
        grow = abs(1 - d.lr * d.L)
        lines.append(_(
            "lr = {lr:g} is above the divergence bound 2/L = {lr_max}: each step multiplies the "
            "error along the top curvature by |1 - lr L| = {grow} and the loss by {loss_grow} "
            "(predicted; observed {observed}), so the run diverges.").format(
                lr=d.lr, lr_max=_f(d.lr_max), grow=_f(grow), loss_grow=_f(grow ** 2),
                observed=_obs(rate)))
    elif not d.convex:
        lines.append(_("lr = {lr:g} is below 2/L = {lr_max}: stable along the positive "
                       "curvature of the model.").format(lr=d.lr, lr_max=_f(d.lr_max)))
    elif d.contraction >= 1.0:
        lines.append(_(
            "lr = {lr:g} sits on the bound 2/L = {lr_max}: the error flips sign each step "
            "without shrinking (contraction 1), so the loss stays where it is (predicted factor "
            "1; observed {observed}); it never reaches a lower threshold.").format(
                lr=d.lr, lr_max=_f(d.lr_max), observed=_obs(rate)))
    else:
        fields = {"lr": d.lr, "contraction": _f(d.contraction),
                  "factor": _f(d.contraction ** 2), "observed": _obs(rate),
                  "iterations": _iters(d.iterations), "target": target, "its": its,
                  "reason": result.reason}
        if d.iterations is None:
            text = _("At lr = {lr:g} the model predicts an error contraction of {contraction} "
                     "per step, a loss factor of {factor} (observed {observed}).")
        elif result.reason == "loss_below":
            text = _("At lr = {lr:g} the model predicts an error contraction of {contraction} "
                     "per step, a loss factor of {factor} (observed {observed}), and "
                     "{iterations}{target} (observed: {its}).")
        else:
            text = _("At lr = {lr:g} the model predicts an error contraction of {contraction} "
                     "per step, a loss factor of {factor} (observed {observed}), and "
                     "{iterations}{target} (the run stopped by {reason} after {its}).")
        lines.append(text.format(**fields))
    if d.convex:
        one_step = abs(d.lr_fastest - d.lr_one_step) <= 1e-6 * d.lr_one_step
        fastest = (_("lr = {lr} (= 1/L = 2/(L + mu): one step solves the model)").format(
                       lr=_f(d.lr_fastest)) if one_step else
                   _("lr = {lr} (= 2/(L + mu), contraction {contraction} per step)").format(
                       lr=_f(d.lr_fastest), contraction=_f(d.contraction_fastest)))
        if d.lr is not None and abs(d.lr - d.lr_fastest) <= 1e-3 * d.lr_fastest:
            lines.append(_("Faster: nothing; {fastest} is already the fastest fixed step on "
                           "this model.").format(fastest=fastest))
        elif d.iterations_fastest is not None:
            lines.append(_("Faster: {fastest} would need {iterations}{target} "
                           "(predicted).").format(fastest=fastest, target=target,
                                                  iterations=_iters(d.iterations_fastest)))
        else:
            lines.append(_("Fastest fixed step on this model: {fastest}.").format(
                fastest=fastest))
        if not one_step:
            lines.append(_("lr = 1/L = {lr} removes the top-curvature part of the error in one "
                           "step.").format(lr=_f(d.lr_one_step)))
    lines.append(_("lr >= 2/L = {lr_max} does not converge: at 2/L the error oscillates, above "
                   "it the loss grows.").format(lr_max=_f(d.lr_max)))
    lines.append(_("All curvature figures are local estimates at the start; exact for a "
                   "quadratic such as the notebook's."))
    return "\n".join(lines)
    try:
        d = result.diagnose()
    except NoObjectiveError as e:  # unpickled before the diagnosis was computed
        lines.append(f"No diagnosis: {e}")
        return "\n".join(lines)
    except RuntimeError as e:  # e.g. fn is not twice differentiable
        lines.append(f"No diagnosis: the Hessian-vector products failed ({e}).")
        return "\n".join(lines)
    lines.append(
        f"Local estimates at the start (quadratic model from {d.hvps} Hessian-vector "
        f"product{'' if d.hvps == 1 else 's'}): top curvature L = {_f(d.L)}, bottom curvature "
        f"mu = {_f(d.mu)}, condition number {_f(d.condition)}; fixed steps are stable for "
        f"0 < lr < 2/L = {_f(d.lr_max)}."
    )
    if not d.convex:
        lines.append("The model is not convex at the start (mu <= 0), so it predicts no "
                     "iteration count; steps below 2/L are stable along positive curvature.")
    if result.rule != "gd":
        lines.append(f"The predictions below are for plain gradient descent (rule 'gd'); this "
                     f"run used {result.rule!r}, whose rate differs.")
    target = "" if d.threshold is None else f" to the threshold {d.threshold:g}"
    if d.lr is None or d.contraction is None:
        lines.append(f"The step was not a fixed lr ({result.step}), so there is no prediction "
                     "for this run's own step.")
    elif d.lr > d.lr_max * (1 + UNIT_TOL):
        grow = abs(1 - d.lr * d.L)
        lines.append(
            f"lr = {d.lr:g} is above the divergence bound 2/L = {_f(d.lr_max)}: each step "
            f"multiplies the error along the top curvature by |1 - lr L| = {_f(grow)} and the "
            f"loss by {_f(grow ** 2)} (predicted; observed {_obs(rate)}), so the run diverges."
        )
    elif not d.convex:
        lines.append(f"lr = {d.lr:g} is below 2/L = {_f(d.lr_max)}: stable along the positive "
                     "curvature of the model.")
    elif d.contraction >= 1.0:
        lines.append(
            f"lr = {d.lr:g} sits on the bound 2/L = {_f(d.lr_max)}: the error flips sign each "
            f"step without shrinking (contraction 1), so the loss stays where it is "
            f"(predicted factor 1; observed {_obs(rate)}); it never reaches a lower threshold."
        )
    else:
        predicted = ""
        if d.iterations is not None:
            seen = (f"observed: {its}" if result.reason == "loss_below" else
                    f"the run stopped by {result.reason} after {its}")
            predicted = f", and {_iters(d.iterations)}{target} ({seen})"
        lines.append(
            f"At lr = {d.lr:g} the model predicts an error contraction of "
            f"{_f(d.contraction)} per step, a loss factor of {_f(d.contraction ** 2)} "
            f"(observed {_obs(rate)}){predicted}."
        )
    if d.convex:
        one_step = abs(d.lr_fastest - d.lr_one_step) <= 1e-6 * d.lr_one_step
        fastest = (f"lr = {_f(d.lr_fastest)} (= 1/L = 2/(L + mu): one step solves the model)"
                   if one_step else
                   f"lr = {_f(d.lr_fastest)} (= 2/(L + mu), contraction "
                   f"{_f(d.contraction_fastest)} per step)")
        if d.lr is not None and abs(d.lr - d.lr_fastest) <= 1e-3 * d.lr_fastest:
            lines.append(f"Faster: nothing; {fastest} is already the fastest fixed step on "
                         "this model.")
        elif d.iterations_fastest is not None:
            lines.append(f"Faster: {fastest} would need {_iters(d.iterations_fastest)}"
                         f"{target} (predicted).")
        else:
            lines.append(f"Fastest fixed step on this model: {fastest}.")
        if not one_step:
            lines.append(f"lr = 1/L = {_f(d.lr_one_step)} removes the top-curvature part of "
                         "the error in one step.")
    lines.append(f"lr >= 2/L = {_f(d.lr_max)} does not converge: at 2/L the error oscillates, "
                 "above it the loss grows.")
    lines.append("All curvature figures are local estimates at the start; exact for a "
                 "quadratic such as the notebook's.")
    return "\n".join(lines)
