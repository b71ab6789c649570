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

from . import distributed
from .checkpoint import Checkpoints, check_args, fingerprint
from .data import CLASSIFIER_LOSSES, InMemory, prepare
from .errors import InputError, InputTypeError, check_count, check_seed
from .history import History
from .loop import Observer, assemble, run
from .models import (
    DEFAULT_METRICS,
    LOSSES,
    METRICS,
    Head,
    Predictor,
    build_model,
    evaluate,
    penalized,
)
from .objective import Params
from .observers import EpochProgress, Epochs
from .result import Result, outcome
from .rules import Rule
from .steps import Step
from .stops import DEFAULT_MAX_ITER, Criterion, EarlyStopping
from .stream import loaded, prepare_stream, wanted
from .tables import Preprocessing

if TYPE_CHECKING:
    import numpy as np

if TYPE_CHECKING:  # names in the inherited Result fields, for the API reference (pdoc)
    from .diagnose import Diagnosis  # noqa: F401

__all__ = ["FitResult", "fit", "record_fit"]

#: ``batch_size=None``: one batch holding every training row.
FULL_BATCH = 2**62
#: ``batch_size="auto"``: the full batch when the training features hold at most this many
#: numbers (rows x columns; 80 MB in float64), else mini-batches of :data:`AUTO_BATCH` rows.
FULL_BATCH_NUMBERS = 10_000_000
AUTO_BATCH = 64
#: The automatic mini-batch method stops early on the monitored loss after this many epochs
#: without improvement, within at most :data:`AUTO_EPOCHS` epochs.
AUTO_PATIENCE = 10
AUTO_EPOCHS = 1000


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
        method: the method in words, and why it was chosen: the rule, the step size, the
            batches and how the run stops.
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
    method: str = ""

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
            "dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
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

    def predict(self, data: Any) -> np.ndarray:
        """Predictions for new inputs, as a numpy array: a tensor or array of raw features, or
        (for a model fitted on a table) a DataFrame, a pyarrow Table or a CSV/Parquet path.
        Classifier: the predicted labels (as in the table: strings, ints, ...; class indices
        for a model fitted on tensors); regressor: values in the targets' units, 1-D for one
        target, 2-D for several. The same as ``descend.load(folder).predict`` after
        :meth:`save`.

        Raises:
            InputError: a table for a model fitted on tensors, or bad inputs.
        """
        return Predictor(self.model, self.loss_name, self.preprocessing).predict(data)

    def predict_proba(self, data: Any) -> np.ndarray:
        """A classifier's class probabilities for new inputs (as :meth:`predict` takes them),
        as a numpy array with one column per class, in the order of the class labels.

        Raises:
            InputError: the model is a regressor, or bad inputs.
        """
        return Predictor(self.model, self.loss_name, self.preprocessing).predict_proba(data)


def _device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}; use cpu, cuda, cuda:1, mps, ...") from None
    if dev.type == "meta":
        raise InputError(f"device {device!r} holds no data (shapes only); use cpu or cuda")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {device!r} is not available here "
                         "(torch.backends.mps.is_available() is False); use cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {device!r} is not supported; use cpu, cuda, cuda:1 or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} is not available here (torch.cuda.is_available() "
                         "is False); use cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device {device!r} does not exist: {torch.cuda.device_count()} "
                         "CUDA device(s) are visible")
    return dev


@distributed.joined
def fit(
    model: nn.Module | str,
    data: Any,
    *,
    target: str | Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    val: float | Any = None,
    loss: str | Callable[[Tensor, Tensor], Tensor] | None = None,
    metrics: Sequence[str | Callable[[Tensor, Tensor], float]] | None = None,
    rule: str | Rule | Any = None,
    lr: float | str | Step | Callable[[int], float] | None = None,
    batch_size: int | str | None = "auto",
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
    task: str | None = None,
    l2: float | None = None,
    encoding: str | None = None,
    stream: bool | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int | str | None = None,
    resume: str | os.PathLike[str] | None = None,
) -> FitResult:
    """Train ``model`` on ``data`` by mini-batch gradient descent, on the loop of ``minimize``.

    Iteration ``k`` evaluates the loss and gradient on batch ``k`` and moves the weights
    ``w <- w - lr_k * u_k`` with the rule's update ``u`` (``u = g`` for ``"gd"``, i.e. SGD).

    Args:
        model: an ``nn.Module`` (trained in place), or a spec sized from the data:
            ``"linear"``, ``"logistic"`` (classifier: binary with ``bce``, multi-class with
            ``cross_entropy``), ``"mlp:64,64"``, or ``"pkg.mod:Class"``.
        data: ``(X, Y)`` tensors or numpy arrays, a pandas DataFrame (or pyarrow Table), a torch
            ``Dataset`` or ``DataLoader`` yielding ``(x, y)``, a CSV/Parquet path, or a Parquet
            folder or ``pyarrow.dataset.Dataset`` (streamed when large: see ``stream``).
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
        batch_size: ``"auto"`` (default): the full batch when the training features hold at
            most :data:`FULL_BATCH_NUMBERS` numbers, else mini-batches of :data:`AUTO_BATCH`
            rows; a number of rows; None (or a batch >= the row count): the full batch. On the
            full batch the objective is the whole training loss, every rule (quasi-Newton
            included) runs as in :func:`descend.minimize`, and a spec model trains in float64,
            as scikit-learn does (mini-batches: float32). ``result.method`` says which.
        epochs: passes over the training data (:class:`~descend.stops.MaxEpochs`). Default: the
            full batch (``batch_size="auto"`` or None) runs to convergence; automatic
            mini-batches stop early (:data:`AUTO_PATIENCE`) within :data:`AUTO_EPOCHS`; other
            runs stop after 100 epochs when neither ``stop`` nor ``max_iter`` bounds them.
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
        task: ``"classify"`` or ``"regress"``: how to fit a table's target when its values
            alone do not say (whole numbers with few distinct values); see
            :func:`descend.tasks.choose_task`. Default: decided by the target, model and loss.
        l2: L2 penalty ``l2 * sum(w**2) / 2`` on the weights (not the biases), added to the
            training loss; validation and final scores report the loss without it. Default: 0,
            and ``1 / n_train`` for classifiers built from a spec (scikit-learn's ``C=1``).
        encoding: the text encoding of a CSV file (default: detected; UTF-8 or CP949).
        stream: stream a Parquet file, folder or ``pyarrow.dataset.Dataset`` by row groups
            instead of loading it (:mod:`descend.stream`). Default: streamed when its columns
            as float64 exceed :data:`~descend.stream.STREAM_BYTES`; False always loads it.
        checkpoint: a folder to write checkpoints into (:mod:`descend.checkpoint`): every
            ``checkpoint_every`` (iterations, or seconds as ``"30s"``; default ``"30s"``), at
            the end of each epoch of mini-batches, and when SIGINT or SIGTERM stops the run
            (reason ``"interrupted"``; the model then holds the best epoch's weights so far).
        checkpoint_every: see ``checkpoint``.
        resume: a checkpoint folder to continue from, mid-epoch included (checkpoints go on
            into it unless ``checkpoint`` names another); the other arguments and the data must
            be those of the checkpointed run (the data's sha256 is compared). The result is
            bitwise that of the uninterrupted run (same threads and device).

    Returns:
        A :class:`FitResult`.

    Raises:
        InputError: on misuse or bad data, before any training, in one line naming the fix.
    """
    if batch_size != "auto" and batch_size is not None:
        check_count("batch_size", batch_size)
    if epochs is not None:
        check_count("epochs", epochs)
    if patience is not None:
        check_count("patience", patience, minimum=0)
    check_seed("seed", seed)
    _check_loss_and_metrics(model, loss, metrics)
    checkpoints = check_args(checkpoint, checkpoint_every, resume)  # before any work
    dev, dtype = _placement(model, device)
    world = distributed.current()  # several processes under torchrun: see descend.distributed
    dev = world.device(dev)
    streaming = wanted(data, stream)
    data = data if streaming else loaded(data)
    if isinstance(model, str) and batch_size in ("auto", None) and not streaming:
        dtype = torch.float64  # the full batch to the optimum, as scikit-learn computes it
    root = None
    if record is not None and record is not False and world.main:
        from .store import records_root

        root = records_root(record)  # checked before any work

    d = distributed.agree(world, lambda: (
        prepare_stream if streaming else prepare)(
        model, data, val, target=target, features=features, loss=loss,
        batch_size=batch_size if isinstance(batch_size, int) else
        AUTO_BATCH if streaming and batch_size == "auto" else FULL_BATCH,
        standardize=standardize, one_hot=one_hot, drop_missing=drop_missing,
        drop_constant=drop_constant, shuffle=shuffle, seed=seed, dtype=dtype, device=dev,
        task=task, l2=l2, encoding=encoding,
        **({"rank": world.rank, "world": world.size} if streaming else {})))
    batching, dtype = _batching(d, batch_size, shuffle, seed, dtype)
    d.train = distributed.shard(d.train, world)
    if world.active:
        batching += f", shared by {world.size} processes ({world.backend})"
    if isinstance(model, str):
        with torch.random.fork_rng(devices=[]):  # seed the weights, not the caller's generator
            torch.manual_seed(seed)
            net = build_model(model, d.n_in, d.n_out, activation).to(dev, dtype)
    else:
        net = model
    _check_outputs(net, d.train, d.loss)
    net.train()
    loss_fn: Callable[..., Tensor] = LOSSES[d.loss] if d.loss is not None else loss  # type: ignore[assignment]
    loss_fn = penalized(loss_fn, net, d.l2)
    head = Head(d.loss, d.prep)
    metric_list = _metric_list(metrics, head, d.loss)

    params = Params(net)
    val_src = d.val

    def validate() -> dict[str, float]:
        assert val_src is not None
        # rank 0 scores, every rank reads the same numbers (and so stops alike)
        return world.same(evaluate(net, val_src, loss_fn, head, metric_list)
                          if world.main else {})

    names = [m if isinstance(m, str) else getattr(m, "__name__", "metric") for m in metric_list]
    bpe = d.train.batches_per_epoch
    log = Epochs(bpe, d.train.sizes(), validate if val_src is not None else None, names)
    objective = distributed.objective(net, params, loss_fn, d.train, world)
    objective.epochs = log
    unbounded = stop is None and max_iter is None and epochs is None
    stopping = ""
    if batch_size == "auto" and unbounded and bpe > 1 and patience is None:
        # automatic mini-batches: stop on the monitored loss
        patience, epochs = AUTO_PATIENCE, AUTO_EPOCHS
        stopping = (f"stops when the {log.monitor} has not improved for {patience} epochs "
                    f"(at most {epochs})")
    elif batch_size in ("auto", None) and unbounded and bpe == 1:
        # the full batch, chosen or asked for: to convergence, as minimize
        max_iter = DEFAULT_MAX_ITER
        stopping = "runs to convergence"
    parts = assemble(
        params, rule=rule, lr=lr, stop=stop, max_iter=max_iter, callback=callback,
        observers=[log, *observers], on_divergence=on_divergence,
        progress=(lambda total: EpochProgress(log, total)) if progress and world.main
        else False,
        counts_epochs=True,
        minibatch=None if bpe == 1 else f"{batching} splits the training rows into {bpe} "
                                        "mini-batches",
        epochs=epochs, patience=patience or None, validation=val_src is not None)
    parts.criteria = distributed.agreed(parts.criteria, world)
    method = f"{parts.rule.name} with {parts.step.describe()} on {batching}" + (
        f"; {stopping}" if stopping else "")
    if checkpoints or world.active:  # several ranks: every rank resumes, rank 0 writes
        trained = data if isinstance(data, (str, os.PathLike)) else \
            [d.train.X, d.train.Y] if isinstance(d.train, InMemory) else ()
        parts.checkpoints = Checkpoints(
            parts, fingerprint(parts, params, type(net), trained) if checkpoints else {},
            folder=(checkpoint if checkpoint is not None else resume) if world.main else None,
            every=checkpoint_every, resume=resume, epochs=bpe if bpe > 1 else None,
            agree=world.any if world.active else None)

    t0 = perf_counter()
    s, fired = run(objective, parts)
    seconds = perf_counter() - t0

    restored = False
    early = [c for c in parts.criteria if isinstance(c, EarlyStopping)]
    if early and early[0].restore_best and log.best_values and s.values is not log.best_values:
        params.set(log.best_values)
        restored = True
    elif fired.reason == "interrupted" and log.best_values and s.values is not log.best_values:
        params.set(log.best_values)  # the best weights so far (the checkpoint has the last)
        restored = True
    final: dict[str, float] = {}
    if metric_list and world.main:  # metrics=[] skips the final passes over the data
        train_eval = InMemory(d.train.X, d.train.Y, 65536, shuffle=False) \
            if isinstance(d.train, InMemory) else d.train
        final.update({f"train_{k}": v for k, v in
                      evaluate(net, train_eval, loss_fn, head,
                               getattr(train_eval, "eval_metrics", metric_list)).items()})
        if val_src is not None:
            final.update({f"val_{k}": v for k, v in
                          evaluate(net, val_src, loss_fn, head, metric_list).items()})
    final = world.same(final)  # rank 0's scores, on every rank
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
        method=method,
    )
    if root is not None:
        record_fit(root, res, config={
            "kind": "fit", "problem": str(data) if isinstance(data, (str, os.PathLike))
            else type(data).__name__, "model": model if isinstance(model, str)
            else type(model).__name__, "lr": parts.lr, "batch_size": batch_size,
            "epochs": epochs, "seed": seed, "stop": [repr(c) for c in parts.criteria],
            "method": method})
    return res


def _batching(d: Any, batch_size: int | str | None, shuffle: bool, seed: int,
              dtype: torch.dtype) -> tuple[str, torch.dtype]:
    """Settle ``batch_size="auto"`` on the prepared data (the full batch when the training
    features hold at most :data:`FULL_BATCH_NUMBERS` numbers, else mini-batches of
    :data:`AUTO_BATCH` rows, in float32 for a spec model); say in words what the batches are and
    why. Returns that and the dtype to train in."""
    train = d.train
    if not isinstance(train, InMemory):
        return getattr(train, "describe", "the loader's batches"), dtype
    rows = len(train.X)
    cols = train.X.shape[1] if train.X.dim() > 1 else 1
    if batch_size == "auto":
        if rows * cols > FULL_BATCH_NUMBERS:
            low = torch.float32 if dtype == torch.float64 else dtype

            def cast(t: Tensor) -> Tensor:
                return t.to(low) if t.is_floating_point() else t

            d.train = InMemory(cast(train.X), cast(train.Y), AUTO_BATCH, shuffle=shuffle,
                               seed=seed)
            if isinstance(d.val, InMemory):
                d.val = InMemory(cast(d.val.X), cast(d.val.Y), d.val.batch_size, shuffle=False)
            return (f"mini-batches of {AUTO_BATCH} rows (the {rows} x {cols} training features "
                    f"exceed {FULL_BATCH_NUMBERS:,} numbers)"), low
        return f"the full batch ({rows} rows x {cols} features fit in memory)", dtype
    if train.batches_per_epoch == 1:
        return f"the full batch ({rows} rows)", dtype
    return f"batch_size={batch_size}", dtype


def _check_outputs(net: nn.Module, train: Any, loss: str | None) -> None:
    """Run the model on two training rows (eval mode, no gradients) and raise when its outputs
    do not fit the targets under the named loss: the shapes must match (mse, mae, huber, bce:
    no silent broadcasting of (n,) targets against (n, 1) outputs), and cross_entropy's class
    indices must be below the number of outputs."""
    if loss is None or not isinstance(train, InMemory) or len(train.X) == 0:
        return
    xb, yb = train.X[:2], train.Y[:2]
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(xb)
    except (RuntimeError, TypeError, ValueError, IndexError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"the model cannot take the inputs (rows of shape "
                         f"{tuple(xb.shape[1:])}, {xb.dtype}): {first}") from None
    finally:
        net.train(was)
    if not isinstance(out, Tensor):
        raise InputError(f"the model must return a tensor, got {type(out).__name__}")
    if loss == "cross_entropy":
        top = int(train.Y.max()) if train.Y.numel() else 0
        if out.dim() != 2 or out.shape[1] <= top:
            raise InputError(
                f"cross_entropy needs one output per class: the targets hold class index {top} "
                f"but the model's outputs have shape {tuple(out.shape)} for 2 rows; give the "
                f"model {top + 1} outputs")
        return
    if out.shape != yb.shape:
        fix = (" (Y.reshape(-1, 1) for one target)" if yb.dim() == 1 and out.dim() == 2
               and out.shape[1] == 1 else "")
        raise InputError(
            f"loss {loss}: the model's outputs have shape {tuple(out.shape)} for 2 rows but the "
            f"targets {tuple(yb.shape)}; they would be broadcast, not compared row by row: give "
            f"targets of shape (n, {', '.join(map(str, out.shape[1:]))}){fix} or a model "
            "with one output per target column")


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
               config: dict[str, Any] | None = None, run_id: str | None = None,
               started: bool = False) -> Any:
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
    return record_result(root, res, config=config, extra_columns=extra, run_id=run_id,
                         started=started)
