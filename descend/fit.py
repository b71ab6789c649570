"""``fit(model, data, ...)``: train a torch model on data with the one loop of ``minimize``.

There is no second loop and no second assembly. ``fit`` turns the data into batch sources
(:mod:`descend.data`), builds a :class:`~descend.objective.MiniBatchObjective` whose batch is
drawn once per iteration, asks :func:`descend.loop.assemble` for the run's parts (the same policy
as ``minimize``: names, the strong-Wolfe search for quasi-Newton rules, checks, the divergence
guard) and runs :func:`descend.loop.run`. Iteration ``k`` is one step on batch ``k``, exactly
the hand-written loop::

    for epoch in range(epochs):
        perm = torch.randperm(n)
        for j in range(batches):
            xb, yb = X[perm[j*b:(j+1)*b]], Y[...]          # evaluate: draw batch k
            loss = loss_fn(model(xb), yb); grads = ...     #           loss and gradient
            x <- x - lr * u(grads)                         # direction, step, update

A line search (``lr="armijo"``, ``"wolfe"``, ``"auto"``) searches along the batch of its
iteration: every trial and the accepted point are evaluated on that batch (a stochastic line
search). With ``batch_size=None`` (or one at least the row count) the objective is the full
training loss, and quasi-Newton rules (``lbfgs``, ``bfgs``) run to the optimum as they do in
``minimize``; on smaller mini-batches they are refused up front.

Epochs are counted on the iteration number: epoch ``e`` ends at iteration
``e * batches_per_epoch``. The :class:`~descend.observers.Epochs` observer records each finished
epoch (training loss as the mean of its batch losses, validation loss and metrics at the
epoch's final weights) and the best weights; :class:`~descend.stops.MaxEpochs`,
:class:`~descend.stops.ValLossBelow` and :class:`~descend.stops.EarlyStopping` read that record.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .data import CLASSIFIER_LOSSES, InMemory, as_tensor, is_table, prepare
from .errors import InputError, InputTypeError, check_count
from .history import History
from .loop import Observer, assemble, run
from .models import DEFAULT_METRICS, LOSSES, METRICS, Head, build_model, evaluate
from .objective import MiniBatchObjective, Params
from .observers import EpochProgress, Epochs
from .result import Result, outcome
from .rules import Rule
from .steps import Step
from .stops import Criterion, EarlyStopping
from .tables import Preprocessing, read_table, to_table

if TYPE_CHECKING:  # names in the inherited Result fields, for the API reference (pdoc)
    from .diagnose import Diagnosis  # noqa: F401

__all__ = ["FitResult", "fit", "record_fit"]

#: ``batch_size=None``: one batch holding every training row.
FULL_BATCH = 2**62


@dataclass(frozen=True)
class FitResult(Result):
    """The outcome of :func:`fit`: every field of :class:`~descend.result.Result` (``x`` is the
    model, ``history`` holds one row per iteration: the loss of each mini-batch) plus:

    Attributes:
        model: the trained model (trained in place; the same object as ``x``).
        epochs: epochs finished.
        epoch_history: one row per epoch (see :class:`Epochs`): training and validation loss.
        best_epoch: the epoch with the lowest validation loss (training loss without
            validation data); 0 when no epoch finished.
        best_val_loss: that epoch's validation loss (nan without validation data).
        restored_best: whether the model was set back to the weights of ``best_epoch``.
        metrics: final scores at the returned weights: ``train_<name>`` and ``val_<name>``.
        preprocessing: the fitted column handling and standardisation (None when none was
            applied); apply it to new data with :meth:`predict`.
        loss_name: the loss's name (or the callable's ``__name__``).
        spec: the model spec when ``fit`` built the model (``"linear"``, ``"mlp:64"``, ...).
        activation: the activation of an ``mlp`` spec.
    """

    model: Any = None
    epochs: int = 0
    epoch_history: History = field(default_factory=History, repr=False)
    best_epoch: int = 0
    best_val_loss: float = math.nan
    restored_best: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    preprocessing: Preprocessing | None = field(default=None, repr=False)
    loss_name: str = ""
    spec: str = ""
    activation: str = "relu"

    def __repr__(self) -> str:
        ok = "success" if self.success else "no success"
        return (f"FitResult({ok}: {self.reason}, epochs={self.epochs}, nit={self.nit}, "
                f"loss={self.loss:.4e}, best_epoch={self.best_epoch}, "
                f"best_val_loss={self.best_val_loss:.4e}, seconds={self.seconds:.3g})")

    def save(self, out: str | Path, *, overwrite: bool = False,
             options: dict[str, Any] | None = None) -> Path:
        """Write the model folder ``out`` (weights, config, preprocessing, metrics, epoch
        history: see :mod:`descend.models`) for ``descend predict``/``evaluate``; ``options``
        are recorded in ``config.json``. Needs a model ``fit`` built from a spec, on a table.

        Raises:
            InputError: the model cannot be rebuilt from data, or ``out`` exists (without
                ``overwrite``) or cannot be written.
        """
        from ._version import __version__
        from .models import save_model

        prep = self.preprocessing
        if not self.spec or prep is None or not prep.targets:
            raise InputError("save needs a model fit built from a spec ('linear', 'mlp:64', ...) "
                             "on a table; for your own module use torch.save(model.state_dict())")
        if self.loss_name not in LOSSES:
            raise InputError(f"save needs a named loss ({', '.join(LOSSES)}), got the callable "
                             f"{self.loss_name!r}")
        last = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
        config = {
            "model": self.spec, "activation": self.activation,
            "in_features": len(prep.encoded_features),
            "out_features": int(last[-1].out_features) if last else 0,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "loss": self.loss_name, "task": prep.task, "rule": self.rule, "step": self.step,
            **(options or {}),
            "reason": self.reason, "message": self.message, "epochs_run": self.epochs,
            "iterations": self.nit, "best_epoch": self.best_epoch,
            "restored_best": self.restored_best, "seconds": self.seconds,
            "descend_version": __version__,
        }
        try:
            return save_model(out, self.model, config, prep, self.metrics, self.epoch_history,
                              overwrite=overwrite)
        except OSError as e:
            raise InputError(f"cannot save the model to {out}: {e.strerror or e}") from None

    def predict(self, data: Any) -> Tensor:
        """Predictions for new inputs: a tensor or array of raw features, or (for a model fitted
        on a table) a DataFrame or a file path. Regression: values in the targets' units;
        classification: probabilities, one column per class."""
        prep = self.preprocessing
        device = next(self.model.parameters()).device
        if isinstance(data, (str, Path)) or is_table(data):
            if prep is None or not prep.targets:
                raise InputError("predict on a table needs a model fitted on a table; pass "
                                 "a tensor or an array of features")
            table = read_table(data) if isinstance(data, (str, Path)) else to_table(data)
            X = prep.features_of(table, str(data) if isinstance(data, (str, Path)) else "data")
        else:
            X = as_tensor("data", data)
            if prep is not None:
                X = prep.scale_x(X.double())
        dtype = next(self.model.parameters()).dtype
        head = Head(self.loss_name, prep)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model(X.to(device=device, dtype=dtype))
        finally:
            self.model.train(was_training)
        return head.predictions(out)


def _device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}; use cpu, cuda, cuda:1, mps, ...") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} is not available here (torch.cuda.is_available() "
                         "is False); use cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device {device!r} does not exist: {torch.cuda.device_count()} "
                         "CUDA device(s) are visible")
    return dev


def fit(
    model: nn.Module | str,
    data: Any,
    *,
    target: str | Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    val: float | Any = None,
    loss: str | Callable[[Tensor, Tensor], Tensor] | None = None,
    metrics: Sequence[str | Callable[[Tensor, Tensor], float]] | None = None,
    rule: str | Rule | Any = "adam",
    lr: float | str | Step | Callable[[int], float] | None = 1e-2,
    batch_size: int | None = 64,
    epochs: int | None = None,
    stop: Criterion | Iterable[Criterion] | None = None,
    max_iter: int | None = None,
    patience: int | None = None,
    standardize: bool | None = None,
    one_hot: bool = False,
    drop_missing: bool = False,
    drop_constant: bool = False,
    activation: str = "relu",
    shuffle: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    callback: Callable[[Any], Any] | None = None,
    observers: Sequence[Observer] = (),
    progress: bool = False,
    record: str | os.PathLike[str] | bool | None = None,
    on_divergence: str | None = None,
) -> FitResult:
    """Train ``model`` on ``data`` by mini-batch gradient descent, on the loop of ``minimize``.

    Iteration ``k`` evaluates the loss and gradient on batch ``k`` and moves the weights
    ``w <- w - lr_k * u_k`` with the rule's update ``u`` (``u = g`` for ``"gd"``, i.e. SGD).

    Args:
        model: an ``nn.Module`` (trained in place), or a spec sized from the data:
            ``"linear"``, ``"logistic"`` (classifier: binary with ``bce``, multi-class with
            ``cross_entropy``), ``"mlp:64,64"``, or ``"pkg.mod:Class"``.
        data: ``(X, Y)`` tensors or numpy arrays, a pandas DataFrame (or pyarrow Table), a torch
            ``Dataset`` or ``DataLoader`` yielding ``(x, y)``, or a CSV/Parquet path.
        target: the target column(s) of a table.
        features: the feature columns of a table (default: all other columns).
        val: validation data: a fraction of the rows held out at random (seeded), or a
            separate set in the same form as ``data``. None: no validation.
        loss: ``"mse"``, ``"mae"``, ``"huber"``, ``"bce"``, ``"cross_entropy"`` or a callable
            ``(outputs, targets) -> scalar``. Default: ``"mse"``; for ``"logistic"``: ``"bce"``
            with two classes, else ``"cross_entropy"``.
        metrics: names from :data:`METRICS` or callables ``(pred, y) -> float``; default: mse,
            rmse, mae, r2 (regression) or accuracy, log_loss (classification).
        rule: the update rule (see :func:`descend.minimize`); ``"gd"`` is plain SGD;
            ``"lbfgs"``/``"bfgs"`` need the full batch (``batch_size=None``).
        lr: the step size (a number, a name such as ``"auto"``/``"armijo"``/``"wolfe"``, a
            callable ``k -> lr``, or a :mod:`descend.steps` strategy); a line search searches
            along the batch of its iteration. None: ``"auto"`` on the full batch, else the
            rule's default lr. Resolved by :func:`descend.loop.assemble`, as in ``minimize``.
        batch_size: rows per mini-batch; None (or a batch >= the row count) is the full batch:
            the objective is then the whole training loss, and every rule, quasi-Newton
            included, runs as in :func:`descend.minimize`.
        epochs: passes over the training data (:class:`~descend.stops.MaxEpochs`); default 100
            when neither ``stop`` nor ``max_iter`` bounds the run.
        stop: extra criteria from :mod:`descend.stops` (LossBelow, ValLossBelow, TimeLimit, ...).
        max_iter: an iteration (batch) cap.
        patience: early stopping: stop when the validation loss (the epoch's training loss
            without ``val``) has not improved for ``patience`` epochs, and restore the weights of
            the best epoch (:class:`~descend.stops.EarlyStopping`).
        standardize: scale features to mean 0, std 1 (and regression targets of a table),
            with statistics of the training rows only; kept in ``result.preprocessing``.
            Default: True for tables, False for tensors.
        one_hot: encode non-numeric feature columns of a table as 0/1 columns.
        drop_missing: drop rows of a table with missing values instead of refusing them.
        drop_constant: drop constant feature columns instead of refusing them.
        activation: the activation of ``"mlp:..."`` models (relu, tanh, gelu, sigmoid, silu).
        shuffle: draw a new row order each epoch (one ``randperm``, seeded by ``seed``).
        seed: seeds the shuffling, the validation split and a spec model's initial weights
            (with a private generator: torch's global one is left as it was).
        device: where to train (``"cpu"``, ``"cuda"``, ...); default: the model's device.
        callback: called with the loop state each iteration; ``StopIteration`` stops the run.
        observers: read-only callables called with the loop state after each iteration.
        progress: show epoch, loss, validation loss and time left on standard error.
        on_divergence: what the divergence guards do (``"backtrack"``, ``"stop"``,
            ``"raise"``; see :func:`descend.minimize`); default ``"backtrack"`` when the step
            was chosen for you (``lr=None`` or ``"auto"``), else ``"stop"``.
        record: write a run record (:mod:`descend.store`) into this records folder, or into
            the default one (``$DESCEND_RUNS`` or ``runs``) for ``True``; validation curves
            appear as ``val_*`` columns on each epoch's last iteration.

    Returns:
        A :class:`FitResult`.

    Raises:
        InputError: on misuse or bad data, before any training, in one line naming the fix.
    """
    if batch_size is not None:
        check_count("batch_size", batch_size)
    for n, v in (("epochs", epochs), ("patience", patience)):
        if v is not None:
            check_count(n, v)
    _check_loss_and_metrics(model, loss, metrics)
    dev, dtype = _placement(model, device)
    root = None
    if record is not None and record is not False:
        from .store import records_root

        root = records_root(record)  # checked before any work

    d = prepare(model, data, val, target=target, features=features, loss=loss,
                batch_size=FULL_BATCH if batch_size is None else batch_size,
                standardize=standardize, one_hot=one_hot, drop_missing=drop_missing,
                drop_constant=drop_constant, shuffle=shuffle, seed=seed, dtype=dtype, device=dev)
    if isinstance(model, str):
        with torch.random.fork_rng(devices=[]):  # seed the weights, not the caller's generator
            torch.manual_seed(seed)
            net = build_model(model, d.n_in, d.n_out, activation).to(dev)
    else:
        net = model
    net.train()
    loss_fn: Callable[..., Tensor] = LOSSES[d.loss] if d.loss is not None else loss  # type: ignore[assignment]
    head = Head(d.loss, d.prep)
    metric_list = _metric_list(metrics, head, d.loss)

    params = Params(net)
    objective = MiniBatchObjective(net, params, loss_fn, d.train)
    val_src = d.val

    def validate() -> dict[str, float]:
        assert val_src is not None
        return evaluate(net, val_src, loss_fn, head, metric_list)

    names = [m if isinstance(m, str) else getattr(m, "__name__", "metric") for m in metric_list]
    bpe = d.train.batches_per_epoch
    log = Epochs(bpe, d.train.sizes(), validate if val_src is not None else None, names)
    objective.epochs = log
    parts = assemble(
        params, rule=rule, lr=lr, stop=stop, max_iter=max_iter, callback=callback,
        observers=[log, *observers], on_divergence=on_divergence,
        progress=(lambda total: EpochProgress(log, total)) if progress else False,
        counts_epochs=True,
        minibatch=None if bpe == 1 else (f"batch_size={batch_size} splits the training rows "
                                         f"into {bpe} mini-batches"),
        epochs=epochs, patience=patience, validation=val_src is not None)

    t0 = perf_counter()
    s, fired = run(objective, parts)
    seconds = perf_counter() - t0

    restored = False
    early = [c for c in parts.criteria if isinstance(c, EarlyStopping)]
    if early and early[0].restore_best and log.best_values and s.values is not log.best_values:
        params.set(log.best_values)
        restored = True
    final = {}
    if metric_list:  # metrics=[] skips the final passes over the data
        train_eval = InMemory(d.train.X, d.train.Y, FULL_BATCH if batch_size is None
                              else batch_size, shuffle=False) \
            if isinstance(d.train, InMemory) else d.train
        final.update({f"train_{k}": v for k, v in
                      evaluate(net, train_eval, loss_fn, head, metric_list).items()})
        if val_src is not None:
            final.update({f"val_{k}": v for k, v in
                          evaluate(net, val_src, loss_fn, head, metric_list).items()})
    best_val = math.nan
    if val_src is not None and log.best_epoch:
        best_val = log.history.extra["val_loss"][log.best_epoch - 1]
    res = FitResult(
        **outcome(s, fired, seconds, parts.step.describe()),
        model=net,
        epochs=log.count,
        epoch_history=log.history,
        best_epoch=log.best_epoch,
        best_val_loss=best_val,
        restored_best=restored,
        metrics=final,
        preprocessing=d.prep,
        loss_name=d.loss if d.loss is not None else getattr(loss, "__name__", "loss"),
        spec=model if isinstance(model, str) else "",
        activation=activation,
    )
    if root is not None:
        record_fit(root, res, config={
            "kind": "fit", "problem": str(data) if isinstance(data, (str, os.PathLike))
            else type(data).__name__, "model": model if isinstance(model, str)
            else type(model).__name__, "lr": parts.lr, "batch_size": batch_size,
            "epochs": epochs, "seed": seed, "stop": [repr(c) for c in parts.criteria]})
    return res


def _check_loss_and_metrics(model: Any, loss: Any, metrics: Any) -> None:
    if isinstance(loss, str) and loss not in LOSSES:
        raise InputError(f"unknown loss {loss!r}; known losses: {', '.join(LOSSES)}")
    if loss is not None and not isinstance(loss, str) and not callable(loss):
        raise InputTypeError(f"loss must be a name or a callable, got {loss!r}")
    for m in metrics or ():
        if not callable(m) and m not in METRICS:
            raise InputError(f"unknown metric {m!r}; known metrics: {', '.join(METRICS)}")
    if model == "logistic" and isinstance(loss, str) and loss not in CLASSIFIER_LOSSES:
        raise InputError(f"model 'logistic' is a classifier; its loss is bce or "
                         f"cross_entropy, got {loss!r}")


def _placement(model: Any, device: Any) -> tuple[torch.device, torch.dtype]:
    """Where to train and in which dtype: the given device, else the model's (cpu for a spec);
    the model's floating dtype (float32 for a spec). A module is moved to the device."""
    given = _device(device) if device is not None else None
    if isinstance(model, str):
        return given or torch.device("cpu"), torch.float32
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be an nn.Module or a spec like 'linear', "
                             f"got {type(model).__name__}")
    p0 = next(model.parameters(), None)
    dev = given or (p0.device if p0 is not None else torch.device("cpu"))
    model.to(dev)
    return dev, p0.dtype if p0 is not None and p0.is_floating_point() else torch.float32


def _metric_list(metrics: Any, head: Head, loss_name: str | None) -> list[Any]:
    """The metrics to report: the task's defaults, or the given ones checked against the task."""
    if metrics is None:
        return list(DEFAULT_METRICS[head.task]) if loss_name is not None else []
    out = list(metrics)
    for m in out:
        if isinstance(m, str) and METRICS[m][0] != head.task:
            raise InputError(f"metric {m!r} is for {METRICS[m][0]}; this is a "
                             f"{head.task} (loss {loss_name})")
    return out


def record_fit(root: str | os.PathLike[str], res: FitResult, *,
               config: dict[str, Any] | None = None) -> Any:
    """Write a run record (:mod:`descend.store`) of a fit: the per-iteration history, with the
    per-epoch validation columns (``val_*``) placed on each epoch's last iteration (nan
    elsewhere), the summary and the final weights. Returns the :class:`~descend.store.Run`."""
    from .result import record_result

    rows = len(res.history)
    extra: dict[str, list[float]] = {}
    eh = res.epoch_history
    for name, column in eh.extra.items():
        if not name.startswith("val_"):
            continue
        values = [math.nan] * rows
        for it, v in zip(eh.iteration, column):
            if 0 <= it < rows:
                values[it] = v
        extra[name] = values
    return record_result(root, res, config=config, extra_columns=extra)
