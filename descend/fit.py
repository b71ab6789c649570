"""``fit(model, data, ...)``: train a torch model on data with the one loop of ``minimize``.

There is no second loop. ``fit`` builds a :class:`MiniBatchObjective`, an ``Objective`` whose
every evaluation draws the next mini-batch, and hands it to :func:`descend.loop.run` with the
rule, the step size and the criteria. Evaluation ``k`` uses batch ``k``, so iteration ``k`` is
one step on one batch, exactly the hand-written loop::

    for epoch in range(epochs):
        perm = torch.randperm(n)
        for j in range(batches):
            xb, yb = X[perm[j*b:(j+1)*b]], Y[...]          # evaluate: draw batch k
            loss = loss_fn(model(xb), yb); grads = ...     #           loss and gradient
            x <- x - lr * u(grads)                         # direction, step, update

Epochs are counted on the iteration number: epoch ``e`` ends at iteration
``e * batches_per_epoch``. The :class:`Epochs` observer records each finished epoch (training
loss as the mean of its batch losses, validation loss and metrics at the epoch's final weights)
and the best weights; :class:`~descend.stops.MaxEpochs`, :class:`~descend.stops.ValLossBelow`
and :class:`~descend.stops.EarlyStopping` read that record.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any, TextIO

import torch
from torch import Tensor, nn

from .data import CLASSIFIER_LOSSES, FromLoader, InMemory, as_tensor, is_table, prepare
from .errors import InputError, InputTypeError
from .history import History, Result
from .loop import LoopState, Observer, outcome, run
from .models import DEFAULT_METRICS, LOSSES, METRICS, Head, build_model, evaluate
from .objective import Objective, Params
from .rules import Rule, TorchOptimizer, make_rule
from .steps import Step, make_step
from .stops import (
    Callback,
    Criterion,
    EarlyStopping,
    MaxEpochs,
    MaxIter,
    ValLossBelow,
    criteria_list,
)
from .tables import Preprocessing, read_table, to_table

__all__ = ["EpochProgress", "Epochs", "FitResult", "MiniBatchObjective", "fit"]

class MiniBatchObjective(Objective):
    """The training loss on one mini-batch; each evaluation draws the next batch.

    ``objective()`` (value and gradient, once per iteration) moves to batch ``k + 1``;
    ``objective.value()`` (a line search's trial) stays on the current batch, so a search
    compares points on the same data.

    Attributes:
        batches_per_epoch: batches in one pass over the training data.
        draws: batches drawn so far.
        epochs: the :class:`Epochs` record criteria read.
    """

    def __init__(self, model: nn.Module, params: Params, loss_fn: Callable[..., Tensor],
                 batches: InMemory | FromLoader) -> None:
        super().__init__(self._batch_loss, params)
        self.model = model
        self.loss_fn = loss_fn
        self.batches = batches
        self.batches_per_epoch = batches.batches_per_epoch
        self.draws = 0
        self.epochs: Epochs | None = None
        self._xb: Tensor | None = None
        self._yb: Tensor | None = None

    def __call__(self) -> tuple[Tensor, list[Tensor]]:
        self._xb, self._yb = self.batches.batch(self.draws)
        self.draws += 1
        return super().__call__()

    def _batch_loss(self, model: nn.Module) -> Tensor:
        """``fn`` of this objective: the loss of the model on the current batch."""
        return self.loss_fn(self.model(self._xb), self._yb)

    def __repr__(self) -> str:
        return (f"MiniBatchObjective(batches_per_epoch={self.batches_per_epoch}, "
                f"draws={self.draws}, nfev={self.nfev})")


class Epochs:
    """Observer of a ``fit`` run: at each epoch's end (iteration ``e * batches_per_epoch``) it
    records one row and keeps the best weights. Reading only: it never changes the run.

    Columns of :attr:`history` (a :class:`~descend.history.History`): ``iteration``, ``loss``
    (the mean training loss over the epoch's batches, weighted by batch rows), ``grad_norm`` and
    ``lr`` at the epoch's end, ``time``, ``nfev``; extra: ``epoch``, ``val_loss`` and
    ``val_<metric>`` per metric (nan without validation data).

    Attributes:
        count: epochs finished.
        monitor: ``"validation loss"`` or ``"training loss"``: what ``best`` is the best of.
        monitored: the monitored loss of the last finished epoch.
        train_loss: the mean training loss of the last finished epoch.
        val_loss: the validation loss of the last finished epoch.
        best, best_epoch, best_values: the lowest monitored loss, its epoch, its weights.
    """

    def __init__(self, batches_per_epoch: int, sizes: Sequence[int],
                 validate: Callable[[], dict[str, float]] | None,
                 metrics: Sequence[str]) -> None:
        self.batches_per_epoch = batches_per_epoch
        self.sizes = list(sizes)
        self.validate = validate
        self.history = History()
        self.history.extra = {"epoch": [], "val_loss": []}
        self.metric_names = [f"val_{m}" for m in metrics] if validate else []
        for m in self.metric_names:
            self.history.extra[m] = []
        self.count = 0
        self.monitor = "validation loss" if validate else "training loss"
        self.monitored = math.nan
        self.train_loss = math.nan
        self.val_loss = math.nan
        self.best = math.inf
        self.best_epoch = 0
        self.best_values: list[Tensor] = []

    def __call__(self, s: LoopState) -> None:
        k, nb = s.iteration, self.batches_per_epoch
        if k == 0 or k % nb:
            return
        losses = s.history.loss[k - nb:k]
        train = sum(a * w for a, w in zip(losses, self.sizes)) / sum(self.sizes)
        scores = self.validate() if self.validate is not None else {}
        self.count = k // nb
        self.train_loss = train
        self.val_loss = scores.get("loss", math.nan)
        self.monitored = self.val_loss if self.validate is not None else train
        h = self.history
        h.append(k, train, s.grad_norm, s.lr, s.elapsed, s.nfev)
        h.extra["epoch"].append(self.count)
        h.extra["val_loss"].append(self.val_loss)
        for name in self.metric_names:
            h.extra[name].append(scores.get(name[4:], math.nan))
        if self.monitored < self.best:
            self.best, self.best_epoch, self.best_values = self.monitored, self.count, s.values

    def __repr__(self) -> str:
        return f"Epochs(count={self.count}, best_epoch={self.best_epoch}, best={self.best:.4e})"


class EpochProgress:
    """The progress display of ``fit``: epoch, training loss, validation loss, time left.

    On a terminal a live bar (tqdm) over epochs; otherwise one line per epoch, at most one
    every ``every`` seconds, and the last epoch always.
    """

    def __init__(self, epochs: Epochs, total: int | None, every: float = 1.0,
                 stream: TextIO | None = None) -> None:
        self.epochs = epochs
        self.total = total
        self.every = every
        self.stream = stream
        self._seen = 0
        self._last = -math.inf
        self._bar: Any = None
        self._pending = ""

    def _line(self, s: LoopState) -> str:
        e = self.epochs
        total = f"/{self.total}" if self.total else ""
        val = f"  val loss {e.val_loss:.4e}" if e.validate is not None else ""
        left = ""
        if self.total and e.count < self.total:  # at most: early stopping may end sooner
            rest = s.elapsed / e.count * (self.total - e.count)
            left = f"  ~{rest:.0f} s left" if rest >= 1 else "  <1 s left"
        return (f"epoch {e.count}{total}  loss {e.history.loss[-1]:.4e}{val}  "
                f"{s.elapsed:.1f} s{left}")

    def __call__(self, s: LoopState) -> None:
        e = self.epochs
        if e.count == self._seen:
            return
        self._seen = e.count
        out = self.stream or sys.stderr
        if out.isatty():
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=self.total, file=out, unit="epoch", dynamic_ncols=True)
            self._bar.n = e.count
            post = {"loss": f"{e.history.loss[-1]:.4e}"}
            if e.validate is not None:
                post["val"] = f"{e.val_loss:.4e}"
            self._bar.set_postfix(post, refresh=False)
            self._bar.update(0)
            return
        now = perf_counter()
        line = self._line(s)
        if now - self._last >= self.every:
            self._last = now
            self._pending = ""
            print(line, file=out, flush=True)
        else:
            self._pending = line

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._pending:
            print(self._pending, file=self.stream or sys.stderr, flush=True)
            self._pending = ""


@dataclass(frozen=True)
class FitResult(Result):
    """The outcome of :func:`fit`: every field of :class:`~descend.history.Result` (``x`` is the
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
        from . import __version__
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


def _check_count(name: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"{name} must be a whole number >= 1, got {n!r}")
    return n


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
    lr: float | Step | Callable[[int], float] | None = 1e-2,
    batch_size: int = 64,
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
        rule: the update rule (see :func:`descend.minimize`); ``"gd"`` is plain SGD.
        lr: the step size (a number, a callable ``k -> lr``, or a :mod:`descend.steps` strategy);
            None: the rule's default.
        batch_size: rows per mini-batch (a batch >= the row count is full-batch descent).
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
        seed: seeds the shuffling, the validation split and a spec model's initial weights.
        device: where to train (``"cpu"``, ``"cuda"``, ...); default: the model's device.
        callback: called with the loop state each iteration; ``StopIteration`` stops the run.
        observers: read-only callables called with the loop state after each iteration.
        progress: show epoch, loss, validation loss and time left on standard error.
        record: write a run record (:mod:`descend.store`) into this records folder, or into
            the default one (``$DESCEND_RUNS`` or ``runs``) for ``True``; validation curves
            appear as ``val_*`` columns on each epoch's last iteration.

    Returns:
        A :class:`FitResult`.

    Raises:
        InputError: on misuse or bad data, before any training, in one line naming the fix.
    """
    _check_count("batch_size", batch_size)
    if epochs is not None:
        _check_count("epochs", epochs)
    if patience is not None:
        _check_count("patience", patience)
    if isinstance(loss, str) and loss not in LOSSES:
        raise InputError(f"unknown loss {loss!r}; known losses: {', '.join(LOSSES)}")
    if loss is not None and not isinstance(loss, str) and not callable(loss):
        raise InputTypeError(f"loss must be a name or a callable, got {loss!r}")
    for m in metrics or ():
        if not callable(m) and m not in METRICS:
            raise InputError(f"unknown metric {m!r}; known metrics: {', '.join(METRICS)}")
    given_dev = _device(device) if device is not None else None
    if isinstance(model, str):
        if model == "logistic" and isinstance(loss, str) and loss not in CLASSIFIER_LOSSES:
            raise InputError(f"model 'logistic' is a classifier; its loss is bce or "
                             f"cross_entropy, got {loss!r}")
        dev = given_dev or torch.device("cpu")
        dtype = torch.float32
    elif isinstance(model, nn.Module):
        p0 = next(model.parameters(), None)
        dev = given_dev or (p0.device if p0 is not None else torch.device("cpu"))
        dtype = p0.dtype if p0 is not None and p0.is_floating_point() else torch.float32
        model.to(dev)
    else:
        raise InputTypeError(f"model must be an nn.Module or a spec like 'linear', "
                             f"got {type(model).__name__}")
    the_rule = make_rule(rule)
    step = make_step(type(the_rule).default_lr if lr is None else lr)

    d = prepare(model, data, val, target=target, features=features, loss=loss,
                 batch_size=batch_size, standardize=standardize, one_hot=one_hot,
                 drop_missing=drop_missing, drop_constant=drop_constant, shuffle=shuffle,
                 seed=seed, dtype=dtype, device=dev)
    if isinstance(model, str):
        torch.manual_seed(seed)
        net = build_model(model, d.n_in, d.n_out, activation).to(dev)
    else:
        net = model
    net.train()
    loss_fn: Callable[..., Tensor] = LOSSES[d.loss] if d.loss is not None else loss  # type: ignore[assignment]
    head = Head(d.loss, d.prep)
    if metrics is None:
        metric_list: list[str | Callable[..., float]] = (
            list(DEFAULT_METRICS[head.task]) if d.loss is not None else [])
    else:
        metric_list = list(metrics)
        for m in metric_list:
            if isinstance(m, str) and METRICS[m][0] != head.task:
                raise InputError(f"metric {m!r} is for {METRICS[m][0]}; this is a "
                                 f"{head.task} (loss {d.loss})")

    params = Params(net)
    objective = MiniBatchObjective(net, params, loss_fn, d.train)
    if isinstance(the_rule, TorchOptimizer):
        the_rule.leaves = params.leaves

    val_src = d.val

    def validate() -> dict[str, float]:
        assert val_src is not None
        return evaluate(net, val_src, loss_fn, head, metric_list)

    names = [m if isinstance(m, str) else getattr(m, "__name__", "metric") for m in metric_list]
    log = Epochs(d.train.batches_per_epoch, d.train.sizes(),
                 validate if val_src is not None else None, names)
    objective.epochs = log

    given: list[Any] = (
        [] if stop is None else [stop] if isinstance(stop, Criterion)
        else list(stop) if isinstance(stop, (list, tuple)) else [stop]
    )  # criteria_list below checks each one
    if any(isinstance(c, ValLossBelow) for c in given) and val_src is None:
        raise InputError("ValLossBelow needs validation data: pass val=0.2 or a validation set")
    if patience is not None:
        given.append(EarlyStopping(patience))
    caps = [c for c in given if isinstance(c, MaxEpochs)]
    if epochs is not None:
        given.append(MaxEpochs(epochs))
    elif not caps and max_iter is None and not any(isinstance(c, MaxIter) for c in given):
        given.append(MaxEpochs(100))
    n_epochs = min((c.n for c in given if isinstance(c, MaxEpochs)), default=None)
    cap = max_iter
    if cap is None and n_epochs is not None:  # replaces the loop's default iteration cap
        cap = n_epochs * d.train.batches_per_epoch
    criteria = criteria_list(given, cap)
    if callback is not None:
        criteria.insert(len(criteria) - 1, Callback(callback))
    obs: list[Observer] = [log, *observers]
    if progress:
        obs.append(EpochProgress(log, n_epochs))

    root = None
    if record is not None and record is not False:
        from .store import records_root

        root = records_root(record)  # checked before any work
    t0 = perf_counter()
    s, fired = run(objective, the_rule, step, criteria, obs)
    seconds = perf_counter() - t0

    restored = False
    early = [c for c in criteria if isinstance(c, EarlyStopping)]
    if early and early[0].restore_best and log.best_values and s.values is not log.best_values:
        params.set(log.best_values)
        restored = True
    final = {}
    if metric_list:  # metrics=[] skips the final passes over the data
        train_eval = InMemory(d.train.X, d.train.Y, batch_size, shuffle=False) \
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
        **outcome(s, fired, seconds),
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
            else type(model).__name__, "lr": lr, "batch_size": batch_size, "epochs": epochs,
            "seed": seed, "stop": [repr(c) for c in criteria]})
    return res


def record_fit(root: str | os.PathLike[str], res: FitResult, *,
               config: dict[str, Any] | None = None) -> Any:
    """Write a run record (:mod:`descend.store`) of a fit: the per-iteration history, with the
    per-epoch validation columns (``val_*``) placed on each epoch's last iteration (nan
    elsewhere), the summary and the final weights. Returns the :class:`~descend.store.Run`."""
    from .store import record_result

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
