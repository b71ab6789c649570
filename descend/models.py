"""Models named on the command line, losses and metrics, and the saved model folder.

Specs: ``linear`` (``nn.Linear``), ``logistic`` (``nn.Linear`` read as logits: one for two
classes with ``bce``, one per class with ``cross_entropy``), ``mlp:64,64`` (hidden widths, with
an activation), or ``pkg.mod:Class`` (a user's ``nn.Module``, constructed as
``Class(in_features, out_features)``).

A saved folder holds, as plain data only (no pickled code)::

    weights.pt          the state_dict, written by torch.save, read with weights_only=True
    config.json         model spec, sizes, loss, training options, stop reason
    preprocessing.json  feature/target columns, one-hot categories, class labels, scaling
    metrics.json        final metrics on the training and validation rows
    epochs.csv          the per-epoch history

It is written by :func:`descend.store.atomic_folder`: into a temporary sibling folder, fsynced
and renamed into place, so a reader never sees a half-written model; replacing an existing
folder (``overwrite``) renames the old one aside first and deletes it only after the new one is
in place.

:func:`load_model` (``descend.load``) reads it back as a :class:`Saved` model with ``predict``,
``predict_proba`` and ``evaluate``; :class:`Predictor` is the one path from raw inputs to
predictions, shared with :meth:`descend.FitResult.predict`.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import CLASSIFIER_LOSSES, FromLoader, InMemory, as_tensor, is_table
from .errors import InputError
from .history import History
from .store import _write_json, _write_torch, atomic_folder, load_weights
from .tables import Preprocessing, read_table, to_table

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_METRICS",
    "LOSSES",
    "METRICS",
    "Head",
    "Predictor",
    "Saved",
    "build_model",
    "evaluate",
    "load_model",
    "penalized",
    "save_model",
]

#: Losses by name: ``fn(outputs, targets) -> scalar``. ``bce`` takes logits (one column, targets
#: 0/1), ``cross_entropy`` takes one logit per class and class indices.
LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": F.mse_loss,
    "mae": F.l1_loss,
    "huber": F.huber_loss,
    "bce": F.binary_cross_entropy_with_logits,
    "cross_entropy": F.cross_entropy,
}


class Penalized:
    """A loss with an L2 penalty on the weights: ``loss(out, y) + l2 * sum(w**2) / 2``, the
    sum over every parameter with two or more dimensions (weight matrices and kernels; biases
    and norm scales are not penalised), read at each call (the loop moves them in place).

    With a mean loss over ``n`` rows, ``l2 = 1/n`` is scikit-learn's ``LogisticRegression(C=1)``
    (which minimises ``sum(log_loss) + ||w||**2 / (2 C)``) divided by ``n``.

    Attributes:
        base: the loss without the penalty (what validation and the final scores report).
        l2: the penalty's factor.
    """

    def __init__(self, base: Callable[[Tensor, Tensor], Tensor], model: nn.Module,
                 l2: float) -> None:
        self.base = base
        self.l2 = l2
        self.weights = [p for p in model.parameters() if p.dim() >= 2]
        self.__name__ = getattr(base, "__name__", "loss")

    def penalty(self) -> Tensor:
        """``l2 * sum(w**2) / 2`` at the current weights."""
        return 0.5 * self.l2 * sum((w * w).sum() for w in self.weights)  # type: ignore[return-value]

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        return self.base(out, y) + self.penalty()

    def __repr__(self) -> str:
        return f"Penalized({self.__name__}, l2={self.l2:g})"


def penalized(loss_fn: Callable[..., Tensor], model: nn.Module,
              l2: float) -> Callable[..., Tensor]:
    """``loss_fn`` with the L2 penalty of :class:`Penalized` (``loss_fn`` itself when
    ``l2 = 0``): the training loss ``fit``'s one loop minimises."""
    return Penalized(loss_fn, model, l2) if l2 else loss_fn



def _mse(p: Tensor, y: Tensor) -> float:
    return float(((p - y) ** 2).mean())


def _r2(p: Tensor, y: Tensor) -> float:
    ss_res = ((y - p) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    return float((1 - ss_res / ss_tot).mean())


def _log_loss(prob: Tensor, y: Tensor) -> float:
    return float(-prob[torch.arange(len(y), device=y.device), y].clamp_min(1e-15).log().mean())


#: Metrics by name: (task, ``fn(pred, y) -> float``). Regression: predictions and targets in the
#: targets' units. Classification: class probabilities ``(n, classes)`` and class indices.
METRICS: dict[str, tuple[str, Callable[[Tensor, Tensor], float]]] = {
    "mse": ("regression", _mse),
    "rmse": ("regression", lambda p, y: math.sqrt(_mse(p, y))),
    "mae": ("regression", lambda p, y: float((p - y).abs().mean())),
    "r2": ("regression", _r2),
    "accuracy": ("classification", lambda p, y: float((p.argmax(1) == y).double().mean())),
    "log_loss": ("classification", _log_loss),
}

DEFAULT_METRICS = {"regression": ("mse", "rmse", "mae", "r2"),
                   "classification": ("accuracy", "log_loss")}


class Head:
    """How outputs and targets become predictions for metrics, by loss and preprocessing."""

    def __init__(self, loss: str | None, prep: Preprocessing | None) -> None:
        self.loss = loss
        self.prep = prep
        self.task = "classification" if loss in CLASSIFIER_LOSSES else "regression"

    def predictions(self, out: Tensor) -> Tensor:
        """Regression: values in target units; classification: probabilities per class."""
        if self.loss == "bce":
            p = torch.sigmoid(out.reshape(-1, 1).double())
            return torch.cat([1 - p, p], 1)
        if self.loss == "cross_entropy":
            return torch.softmax(out.double(), 1)
        out = out.double()
        return self.prep.unscale_y(out) if self.prep is not None else out

    def labels(self, prob: Tensor) -> np.ndarray:
        """The most probable class of each row of ``prob``: the class labels seen in training
        (their own type: strings, ints, ...), or class indices when there are none (tensors)."""
        import numpy as np

        idx = prob.argmax(1).cpu().numpy()
        classes = self.prep.classes if self.prep is not None else []
        return np.asarray(classes)[idx] if classes else idx

    def truth(self, y: Tensor, out: Tensor) -> Tensor:
        if self.loss == "bce":
            return y.reshape(-1).round().long()
        if self.loss == "cross_entropy":
            return y.long()
        y = y.double().reshape(out.shape) if y.numel() == out.numel() else y.double()
        return self.prep.unscale_y(y) if self.prep is not None else y


def evaluate(model: nn.Module, source: InMemory | FromLoader, loss_fn: Callable[..., Tensor],
             head: Head, metrics: Sequence[str | Callable[..., float]]) -> dict[str, float]:
    """The loss (in the model's units, without an L2 penalty) and the metrics over all of
    ``source``, in eval mode.

    For a classifier (``bce``/``cross_entropy``) the loss is computed from the logits in
    float64, so ``loss`` and ``log_loss`` are the same number: the mean negative natural log of
    the probability of the true class, unclipped.
    """
    loss_fn = getattr(loss_fn, "base", loss_fn)
    if head.task == "classification" and head.loss in CLASSIFIER_LOSSES:
        loss_fn = _float64(loss_fn)
    was_training = model.training
    model.eval()
    total = None
    rows = 0
    outs, ys = [], []
    try:
        with torch.no_grad():
            for xb, yb in source.chunks():
                out = model(xb)
                part = loss_fn(out, yb) * len(xb)
                total = part if total is None else total + part
                rows += len(xb)
                if metrics:
                    outs.append(out)
                    ys.append(yb)
    finally:
        model.train(was_training)
    scores = {"loss": float(total) / rows if total is not None else math.nan}
    if metrics:
        out = torch.cat(outs)
        pred, y = head.predictions(out), head.truth(torch.cat(ys), out)
        for m in metrics:
            if callable(m):
                scores[getattr(m, "__name__", "metric")] = float(m(pred, y))
            elif m == "log_loss" and head.loss in CLASSIFIER_LOSSES:
                scores[m] = scores["loss"]  # the same quantity, unclipped
            else:
                scores[m] = METRICS[m][1](pred, y)
    return scores


def _float64(loss_fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``loss_fn`` evaluated on float64 logits (and float targets, for ``bce``)."""

    def loss64(out: Tensor, y: Tensor) -> Tensor:
        return loss_fn(out.double(), y if not y.is_floating_point() else y.double())

    return loss64



class Predictor:
    """Predictions of a trained model from raw inputs: the one path behind
    :meth:`descend.FitResult.predict` and a loaded model's :meth:`Saved.predict`.

    Args:
        model: the trained module (any device and dtype; run in eval mode, without gradients).
        loss: the loss's name (decides the task: ``bce``/``cross_entropy`` make a classifier).
        prep: the preprocessing applied in training (None: inputs go in as given).
    """

    def __init__(self, model: nn.Module, loss: str | None, prep: Preprocessing | None) -> None:
        self.model = model
        self.head = Head(loss, prep)
        self.prep = prep

    def inputs(self, data: Any) -> Tensor:
        """``data`` as the model's inputs, scaled as in training, in float64.

        ``data``: a pandas DataFrame, a pyarrow Table or a CSV/Parquet path (for a model
        fitted on a table), or a tensor / numpy array of raw features (the encoded features,
        in the training order: ``prep.encoded_features``).

        Raises:
            InputError: a table for a model fitted on tensors, a missing column, a wrong
                number of features, or bad values (see :meth:`Preprocessing.features_of`).
        """
        prep = self.prep
        if isinstance(data, (str, Path)) or is_table(data):
            if prep is None or not prep.targets:
                raise InputError("predict on a table needs a model fitted on a table; pass "
                                 "a tensor or an array of features")
            if isinstance(data, (str, Path)):
                return prep.features_of(read_table(data), Path(data).name, torch.float64)
            return prep.features_of(to_table(data), "data", torch.float64)
        X = as_tensor("data", data)
        if prep is None:
            return X
        n = len(prep.encoded_features)
        if X.dim() == 1 and n == 1:
            X = X[:, None]
        if X.dim() != 2 or X.shape[1] != n:
            raise InputError(
                f"data must be a 2-D array of {n} feature column(s) "
                f"({', '.join(prep.encoded_features)}), got shape {tuple(X.shape)}")
        return prep.scale_x(X.double())

    def outputs(self, data: Any) -> Tensor:
        """Regression: values in the targets' units; classification: class probabilities
        (float64, one column per class)."""
        X = self.inputs(data)
        p0 = next(self.model.parameters(), None)
        if p0 is not None and not X.is_complex():
            X = X.to(device=p0.device, dtype=p0.dtype)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = torch.cat([self.model(X[i:i + 65536]) for i in range(0, len(X), 65536)])
        finally:
            self.model.train(was_training)
        return self.head.predictions(out)

    def predict(self, data: Any) -> np.ndarray:
        """Classifier: the predicted labels (as in training: strings, ints, ...; class indices
        for a model fitted on tensors). Regressor: the values in the targets' units, 1-D for
        one target, 2-D for several."""
        out = self.outputs(data)
        if self.head.task == "classification":
            return self.head.labels(out)
        if out.dim() == 2 and out.shape[1] == 1:
            out = out[:, 0]
        return out.cpu().numpy()

    def predict_proba(self, data: Any) -> np.ndarray:
        """Class probabilities, one column per class (in the order of the class labels).

        Raises:
            InputError: the model is a regressor.
        """
        if self.head.task != "classification":
            raise InputError(f"predict_proba is for classifiers; this model is a regressor "
                             f"(loss {self.head.loss}): use predict")
        return self.outputs(data).cpu().numpy()


#: Activations for ``mlp:...`` by name.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "silu": nn.SiLU,
}

FORMAT = "descend-model/1"


def _user_class(spec: str) -> type[nn.Module]:
    """The ``nn.Module`` subclass ``pkg.mod:Class`` names, imported with the working directory
    on ``sys.path`` (as ``python -m`` has it: modules beside the data are found); ``sys.path``
    is restored afterwards."""
    mod_name, _, cls_name = spec.partition(":")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise InputError(f"cannot import {mod_name!r} for model {spec!r}: {e}") from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    cls = getattr(mod, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise InputError(f"model {spec!r}: {mod_name} has no nn.Module subclass {cls_name!r}")
    return cls


def build_model(spec: str, n_in: int, n_out: int, activation: str = "relu") -> nn.Module:
    """The model ``spec`` names, for ``n_in`` inputs and ``n_out`` outputs.

    Raises:
        InputError: an unknown spec or activation, or a bad width.
    """
    if spec in ("linear", "logistic"):
        return nn.Linear(n_in, n_out)
    if spec == "mlp" or spec.startswith("mlp:"):
        act = ACTIVATIONS.get(activation)
        if act is None:
            raise InputError(f"unknown activation {activation!r}; known: "
                             f"{', '.join(sorted(ACTIVATIONS))}")
        text = spec[4:] or "64"
        try:
            widths = [int(w) for w in text.split(",")]
        except ValueError:
            raise InputError(f"mlp widths must be whole numbers like mlp:64,64, got {spec!r}")\
                from None
        if any(w < 1 for w in widths):
            raise InputError(f"mlp widths must be >= 1, got {spec!r}")
        layers: list[nn.Module] = []
        for w in widths:
            layers += [nn.Linear(n_in, w), act()]
            n_in = w
        layers.append(nn.Linear(n_in, n_out))
        return nn.Sequential(*layers)
    if ":" in spec and not spec.startswith(":"):
        try:
            return _user_class(spec)(n_in, n_out)
        except TypeError as e:
            raise InputError(f"model {spec!r} must accept (in_features, out_features): {e}")\
                from None
    raise InputError(
        f"unknown model {spec!r}; use linear, logistic, mlp:64,64 or pkg.module:Class"
    )


def save_model(out: str | Path, model: nn.Module, config: dict[str, Any],
               prep: Preprocessing, metrics: dict[str, Any], epochs: History,
               *, overwrite: bool = False) -> Path:
    """Write the model folder ``out`` (see the module docstring); return its path.

    Raises:
        InputError: ``out`` exists and ``overwrite`` is false, or is a file.
        OSError: the folder cannot be written.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; pass --overwrite (overwrite=True) to replace it")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder")
    with atomic_folder(out, overwrite=overwrite) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        _write_torch(tmp / "weights.pt", state)
        _write_json(tmp / "config.json", {"format": FORMAT, **config}, default=str)
        _write_json(tmp / "preprocessing.json", prep.state_dict(), default=str)
        _write_json(tmp / "metrics.json", metrics, default=str)
        epochs.to_csv(tmp / "epochs.csv")
    return out


@dataclass(repr=False)
class Saved:
    """A model folder loaded back (:func:`load_model`, ``descend.load``): the model (in eval
    mode), its config and preprocessing, with ``predict``, ``predict_proba`` and ``evaluate``.

    Attributes:
        model: the ``nn.Module``, rebuilt from its spec, with the saved weights.
        config: ``config.json``: model spec and sizes, loss, training options, stop reason.
        prep: the :class:`~descend.tables.Preprocessing` applied to inputs.
        metrics: the final ``train_*`` / ``val_*`` scores of training.
    """

    model: nn.Module
    config: dict[str, Any]
    prep: Preprocessing
    metrics: dict[str, Any]

    def __repr__(self) -> str:
        what = (f"classifier of {self.targets[0]} ({len(self.prep.classes)} classes)"
                if self.task == "classification" else f"regressor of {', '.join(self.targets)}")
        return (f"Saved({self.config.get('model')!r}, {what}, "
                f"{len(self.features)} features, loss {self.config.get('loss')})")

    @property
    def features(self) -> list[str]:
        """The feature columns, in the training order."""
        return list(self.prep.features)

    @property
    def targets(self) -> list[str]:
        """The target column(s)."""
        return list(self.prep.targets)

    @property
    def task(self) -> str:
        """``"classification"`` or ``"regression"``."""
        return self.prep.task

    @property
    def classes_(self) -> np.ndarray:
        """A classifier's class labels, in the order of ``predict_proba``'s columns (no such
        attribute on a regressor)."""
        import numpy as np

        if self.task != "classification":
            raise AttributeError("a regressor has no classes_")
        return np.asarray(self.prep.classes)

    def _predictor(self) -> Predictor:
        return Predictor(self.model, self.config.get("loss"), self.prep)

    def predict(self, data: Any) -> np.ndarray:
        """Predictions for ``data``: a DataFrame, a pyarrow Table, a CSV/Parquet path, or a
        2-D array/tensor of raw features in the order of ``prep.encoded_features``.
        Classifier: the labels (in their training type); regressor: values in the targets'
        units, 1-D for one target, 2-D for several (see :class:`Predictor`).

        Raises:
            InputError: a missing feature column, unseen values, a wrong shape.
        """
        return self._predictor().predict(data)

    def predict_proba(self, data: Any) -> np.ndarray:
        """Class probabilities, one column per class in ``classes_`` order.

        Raises:
            InputError: the model is a regressor, or as :meth:`predict`.
        """
        return self._predictor().predict_proba(data)

    def evaluate(self, data: Any) -> dict[str, float]:
        """The loss and the task's default metrics on labelled data: a DataFrame, a pyarrow
        Table or a CSV/Parquet path holding the feature and target columns.

        Raises:
            InputError: ``data`` is not a table, or as :meth:`evaluate_table`.
        """
        if isinstance(data, (str, Path)):
            return self.evaluate_table(read_table(data), Path(data).name)
        if not is_table(data):
            raise InputError(f"evaluate needs a DataFrame, a pyarrow Table or a file holding "
                             f"the target column(s) {', '.join(self.targets)}, got "
                             f"{type(data).__name__}")
        return self.evaluate_table(to_table(data), "data")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the model was trained (and runs) in."""
        return next(self.model.parameters()).dtype

    def outputs(self, X: Tensor) -> Tensor:
        """Model outputs for scaled features ``X``, without gradients, in chunks."""
        X = X.to(self.dtype)
        with torch.no_grad():
            return torch.cat([self.model(X[i:i + 65536]) for i in range(0, len(X), 65536)])

    def predict_table(self, table: pa.Table, name: str, *, missing: str = "refuse",
                      notes: list[str] | None = None) -> pa.Table:
        """``table`` with one ``<target>_pred`` column per target; a classifier's holds the
        label and ``<target>_prob_<class>`` columns follow, one per class.

        Rows with a missing feature cell are refused (``missing="refuse"``), left out
        (``"drop"``) or predicted from the training means of those features (``"impute"``;
        the cells stay empty in the output); a line saying so goes to ``notes``.

        Raises:
            InputError: ``table`` (read from ``name``) lacks a feature column or holds missing
                (with ``refuse``), infinite or unseen values.
        """
        import pyarrow as pa

        prep = self.prep
        prep.check_columns(table, name)  # the columns, before looking at cells
        table, filled, note = prep.handle_missing(table, name, missing)
        if note is not None and notes is not None:
            notes.append(note)
        X = prep.features_of(filled, name, torch.float64)
        pred = Head(self.config.get("loss"), prep).predictions(self.outputs(X))
        if prep.task == "classification":
            t = prep.targets[0]
            labels = [prep.classes[i] for i in pred.argmax(1).tolist()]
            table = table.append_column(f"{t}_pred", pa.array(labels))
            for j, c in enumerate(prep.classes):
                table = table.append_column(f"{t}_prob_{c}", pa.array(pred[:, j].numpy()))
            return table
        for j, t in enumerate(prep.targets):
            table = table.append_column(f"{t}_pred", pa.array(pred[:, j].numpy()))
        return table

    def evaluate_table(self, table: pa.Table, name: str) -> dict[str, float]:
        """The loss and the default metrics of the task on labelled rows.

        Raises:
            InputError: as :meth:`predict_table`, or a target column is missing or holds a
                class label never seen in training.
        """
        X = self.prep.features_of(table, name, torch.float64).to(self.dtype)
        Y = self.prep.targets_of(table, name)
        loss = self.config["loss"]
        if loss == "bce":
            Y = Y.to(self.dtype)[:, None]
        elif Y.is_floating_point():
            Y = Y.to(self.dtype)
        head = Head(loss, self.prep)
        return evaluate(self.model, InMemory(X, Y, 65536, shuffle=False), LOSSES[loss], head,
                        list(DEFAULT_METRICS[head.task]))


def is_code(spec: object) -> bool:
    """Whether the model spec ``spec`` names code to import (``pkg.mod:Class``)."""
    return (isinstance(spec, str) and ":" in spec and not spec.startswith(":")
            and not spec.startswith("mlp:"))


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path.name} is damaged (not JSON: {e})") from None


def load_model(folder: str | Path, *, trust_code: bool = False) -> Saved:
    """Load a folder written by :func:`save_model`.

    A folder is data, not code: ``weights.pt`` is read with ``torch.load(weights_only=True)``
    (tensors only), and a model class named in ``config.json`` as ``pkg.mod:Class`` is
    imported (which runs that module's code) only with ``trust_code=True``.

    Args:
        folder: the model folder.
        trust_code: allow importing the module a ``pkg.mod:Class`` model names
            (``--trust-code``). Only for folders whose source you trust.

    Raises:
        InputError: the folder is missing, damaged or not a descend model folder, or names a
            module to import without ``trust_code``.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / "weights.pt").is_file():
        raise InputError(f"{folder} is not a saved descend model (no config.json/weights.pt); "
                         "create one with descend fit ... --out DIR")
    try:
        config = _json(folder / "config.json")
        if not isinstance(config, dict):
            raise ValueError("config.json is not a JSON object")
        spec = config.get("model")
        if is_code(spec) and not trust_code:
            raise InputError(
                f"{folder} names the model class {spec!r}: loading it would import and run the "
                f"module {str(spec).partition(':')[0]!r}; pass --trust-code (trust_code=True) "
                "only if you trust where the folder came from")
        prep = Preprocessing.from_state_dict(_json(folder / "preprocessing.json"))
        metrics_path = folder / "metrics.json"
        metrics = _json(metrics_path) if metrics_path.is_file() else {}
        if config.get("format") != FORMAT:
            raise ValueError(f"unknown format {config.get('format')!r}")
        model = build_model(config["model"], config["in_features"], config["out_features"],
                            config.get("activation", "relu"))
        model.to(getattr(torch, config.get("dtype", "float32")))  # as trained (float64: full batch)
        state = load_weights(folder / "weights.pt", f"the model in {folder}")
        model.load_state_dict(state)
    except InputError:
        raise
    except (ValueError, KeyError, TypeError, RuntimeError, OSError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot load the model in {folder}: {first[:300]}") from None
    model.eval()
    return Saved(model=model, config=config, prep=prep, metrics=metrics)
