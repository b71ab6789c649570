"""Batches for ``fit``: tensors, numpy arrays, DataFrames, Datasets, DataLoaders and CSV/Parquet
files turned into batch sources the loop draws from.

:class:`InMemory` serves mini-batches from tensors already in memory the way a hand-written loop
does: one ``randperm`` per epoch and one ``index_select`` gather per batch (a default
``DataLoader`` over a ``TensorDataset`` indexes sample by sample and is ~20x slower).
:class:`FromLoader` walks a user's ``DataLoader`` (or a ``Dataset`` wrapped in one). Batch ``k``
of a run is batch ``k % batches_per_epoch`` of epoch ``k // batches_per_epoch``.

:func:`prepare` takes data in any form :func:`descend.fit` accepts and returns the batch
sources, the model's sizes and the loss; tables (files and DataFrames) are read, checked and
encoded by :mod:`descend.tables` first.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .checks import check_huge, check_names, mostly_numbers
from .errors import InputError, InputTypeError, check_fraction
from .tables import Preprocessing, read_table, to_table
from .tasks import CLASSIFIER_LOSSES, check_task, choose_task

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "CLASSIFIER_LOSSES",
    "FromLoader",
    "InMemory",
    "Prepared",
    "as_tensor",
    "default_l2",
    "default_loss",
    "is_table",
    "prepare",
    "split_indices",
]


# --------------------------------------------------------------------------------------- batches


class InMemory:
    """Mini-batches of tensors held in memory (on any device).

    Each epoch draws one permutation (``randperm`` with a seeded generator) and batch ``j`` is
    the gather ``X[perm[j*b:(j+1)*b]]``; the last batch of an epoch may be smaller. Without
    shuffling a batch is a slice (a view, no copy). With one batch per epoch there is nothing to
    shuffle: a mean loss does not depend on the order of the rows.

    Args:
        X: inputs, one row per sample.
        Y: targets, one row per sample.
        batch_size: rows per batch.
        shuffle: draw a new order each epoch.
        seed: seed of the shuffling generator.
    """

    def __init__(self, X: Tensor, Y: Tensor, batch_size: int, *, shuffle: bool = True,
                 seed: int = 0) -> None:
        self.X, self.Y = X, Y
        self.n = len(X)
        self.batch_size = min(batch_size, self.n)
        self.batches_per_epoch = math.ceil(self.n / self.batch_size)
        self.shuffle = shuffle and self.batches_per_epoch > 1
        self.generator = torch.Generator().manual_seed(seed)
        self._perm: Tensor | None = None
        self._epoch = -1  # the epoch whose permutation _perm is

    def batch(self, k: int) -> tuple[Tensor, Tensor]:
        """Batch ``k`` of the run (``k = 0, 1, ...``); a new epoch draws its permutation, and
        asking again for a batch of the current epoch draws nothing."""
        j = k % self.batches_per_epoch
        b = self.batch_size
        if not self.shuffle:
            return self.X[j * b:(j + 1) * b], self.Y[j * b:(j + 1) * b]
        if self._perm is None or k // self.batches_per_epoch != self._epoch:
            self._perm = torch.randperm(self.n, generator=self.generator).to(self.X.device)
            self._epoch = k // self.batches_per_epoch
        idx = self._perm[j * b:(j + 1) * b]
        return self.X.index_select(0, idx), self.Y.index_select(0, idx)

    def sizes(self) -> list[int]:
        """Rows in each batch of an epoch."""
        b, n = self.batch_size, self.n
        return [min(b, n - j * b) for j in range(self.batches_per_epoch)]

    def chunks(self, size: int = 65536) -> Iterator[tuple[Tensor, Tensor]]:
        """All rows in order, in slices of at most ``size`` (for evaluation)."""
        for i in range(0, self.n, size):
            yield self.X[i:i + size], self.Y[i:i + size]

    def state_dict(self) -> dict[str, Any]:
        """The data order: the shuffling generator's state, the current epoch's permutation
        (``perm``, None before the first or without shuffling) and that epoch (``epoch``)."""
        return {"generator": self.generator.get_state(), "perm": self._perm,
                "epoch": self._epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the data order from :meth:`state_dict`."""
        self.generator.set_state(state["generator"])
        if "perm" in state:
            perm = state["perm"]
            self._perm = perm.to(self.X.device) if perm is not None else None
            self._epoch = state["epoch"]

    def __repr__(self) -> str:
        return (f"InMemory(n={self.n}, batch_size={self.batch_size}, "
                f"batches_per_epoch={self.batches_per_epoch}, shuffle={self.shuffle})")


class FromLoader:
    """Mini-batches from a ``DataLoader`` yielding ``(inputs, targets)`` pairs, moved to
    ``device``; a new pass over the loader starts every ``len(loader)`` batches."""

    def __init__(self, loader: Any, device: torch.device | None = None) -> None:
        try:
            self.batches_per_epoch = len(loader)
        except TypeError:
            raise InputTypeError(
                "the DataLoader must have a length (a map-style Dataset or an IterableDataset "
                "with __len__); pass tensors or a Dataset instead"
            ) from None
        if self.batches_per_epoch < 1:
            raise InputError("the DataLoader yields no batches; its dataset is empty")
        self.loader = loader
        self.device = device
        self._it: Iterator[Any] | None = None
        self._next = 0  # the index in the pass of the batch next() gives
        self._start: dict[str, Any] | None = None  # the random states where the pass began
        self._resumed = False
        self.n = len(loader.dataset) if hasattr(loader, "dataset") else -1

    def _pair(self, item: Any) -> tuple[Tensor, Tensor]:
        if not (isinstance(item, (tuple, list)) and len(item) == 2
                and all(isinstance(t, Tensor) for t in item)):
            raise InputTypeError(
                f"the DataLoader must yield (inputs, targets) pairs of tensors, got "
                f"{type(item).__name__}"
                + (f" of {len(item)} items" if isinstance(item, (tuple, list)) else "")
            )
        x, y = item
        if self.device is not None:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
        return x, y

    def batch(self, k: int) -> tuple[Tensor, Tensor]:
        """Batch ``k`` of the run. In a resumed run (:meth:`load_state_dict`) the current pass
        is begun again from the random states it began with (torch's and the loader
        generator's) and walked to batch ``k``."""
        j = k % self.batches_per_epoch
        if self._resumed and self._start is not None:
            item = self._replay(j)
        else:
            if j == 0 or self._it is None:
                self._begin()
            try:
                item = next(self._it)  # type: ignore[arg-type]
            except StopIteration:  # the loader was shorter than its len(): the next pass
                self._begin()
                item = next(self._it)  # type: ignore[arg-type]
        self._resumed = False
        self._next = j + 1
        return self._pair(item)

    def _begin(self) -> None:
        """A new pass over the loader; the random states it begins with are kept."""
        gen = getattr(self.loader, "generator", None)
        self._start = {"torch": torch.get_rng_state(),
                       "loader": gen.get_state() if gen is not None else None}
        self._it = iter(self.loader)

    def _replay(self, j: int) -> Any:
        """Batch ``j`` of the pass begun at ``_start``, walked to from its beginning."""
        assert self._start is not None
        gen = getattr(self.loader, "generator", None)
        now = torch.get_rng_state()
        torch.set_rng_state(self._start["torch"])
        if gen is not None and self._start["loader"] is not None:
            gen.set_state(self._start["loader"])
        self._it = iter(self.loader)
        for _ in range(j):
            next(self._it)
        item = next(self._it)
        torch.set_rng_state(now)
        return item

    def state_dict(self) -> dict[str, Any]:
        """The data order: the random states where the current pass began (``start``: torch's
        and the loader generator's) and the index of the next batch in it (``next``)."""
        return {"start": self._start, "next": self._next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the data order; the next :meth:`batch` walks the pass to its place."""
        self._start, self._next, self._it = state["start"], state["next"], None
        self._resumed = True

    def sizes(self) -> list[int]:
        """Rows per batch are not known ahead for a loader: equal weights."""
        return [1] * self.batches_per_epoch

    def chunks(self, size: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """One pass over the loader (for evaluation)."""
        for item in self.loader:
            yield self._pair(item)

    def __repr__(self) -> str:
        return f"FromLoader(batches_per_epoch={self.batches_per_epoch})"


def split_indices(n: int, val: float, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded random split of ``range(n)`` into (train, validation) index tensors, with
    ``round(n * val)`` (at least 1) validation rows."""
    n_val = max(1, round(n * val))
    if n - n_val < 1:
        raise InputError(
            f"val={val:g} leaves no training rows out of {n}; lower val or add rows"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


# ------------------------------------------------------------------------ any data -> batches


def is_table(data: Any) -> bool:
    """Whether ``data`` is a pandas DataFrame or a pyarrow Table (checked without importing
    either)."""
    mod = type(data).__module__.split(".")[0]
    return mod in ("pandas", "pyarrow") and hasattr(data, "columns")


def as_tensor(name: str, a: Any) -> Tensor:
    """``a`` (a tensor or a numpy array, shared without a copy; a read-only array, such as
    pandas' ``to_numpy()`` under copy-on-write, is copied: torch tensors are writable) as a
    tensor."""
    if isinstance(a, Tensor):
        return a
    if type(a).__module__.split(".")[0] == "numpy":
        return torch.from_numpy(a if a.flags.writeable else a.copy())
    raise InputTypeError(f"{name} must be a tensor or a numpy array, got {type(a).__name__}")


@dataclass
class Prepared:
    """Data made ready for the loop: batch sources, the preprocessing, the model's sizes and
    the loss name (None for a callable loss)."""

    train: InMemory | FromLoader
    val: InMemory | FromLoader | None
    prep: Preprocessing | None
    n_in: int
    n_out: int
    loss: str | None
    l2: float = 0.0


def default_loss(model: Any, loss: Any, classes: int,
                 task: str | None = None) -> str | None:
    """The loss name: ``loss`` as given (None for a callable), else for a classifier (the
    ``logistic`` model, or ``task`` ``"classification"``) ``bce`` with 2 classes and
    ``cross_entropy`` otherwise, else ``mse``."""
    if loss is not None:
        return loss if isinstance(loss, str) else None
    if model == "logistic" or task == "classification":
        return "bce" if classes == 2 else "cross_entropy"
    return "mse"


def default_l2(l2: float | None, model: Any, loss_name: str | None, n_train: int) -> float:
    """The L2 penalty: ``l2`` as given (checked), else ``1 / n_train`` for a classifier built
    from a spec (``logistic``, ``linear``, ``mlp:...`` with ``bce``/``cross_entropy``: with a
    mean loss this is scikit-learn's ``LogisticRegression(C=1)``), else 0."""
    if l2 is not None:
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not math.isfinite(l2) \
                or l2 < 0:
            raise InputError(f"l2 must be a finite number >= 0, got {l2!r}")
        return float(l2)
    spec = isinstance(model, str) and (model in ("linear", "logistic") or model == "mlp"
                                       or model.startswith("mlp:"))
    if spec and loss_name in CLASSIFIER_LOSSES and n_train > 0:
        return 1.0 / n_train
    return 0.0


def _tensor_pair(name: str, data: Any) -> tuple[Tensor, Tensor]:
    """``data`` as an ``(X, Y)`` pair of tensors with one target row per input row."""
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise InputTypeError(
            f"{name} must be (X, Y) tensors or arrays, a DataFrame, a Dataset, a DataLoader or "
            f"a CSV/Parquet path, got {type(data).__name__}"
        )
    X, Y = as_tensor(f"{name}[0]", data[0]), as_tensor(f"{name}[1]", data[1])
    if len(X) != len(Y):
        raise InputError(f"{name}: X has {len(X)} rows but Y has {len(Y)}; give one target row "
                         "per input row")
    if len(X) < 1:
        raise InputError(f"{name} has no rows")
    return X, Y


def prepare(model: Any, data: Any, val: Any, *, target: Any, features: Any, loss: Any,
            batch_size: int, standardize: bool | None, one_hot: bool, drop_missing: bool,
            drop_constant: bool, shuffle: bool, seed: int, dtype: torch.dtype,
            device: torch.device, task: str | None = None, l2: float | None = None,
            encoding: str | None = None) -> Prepared:
    """Turn ``data`` and ``val`` (any form :func:`descend.fit` takes) into batch sources.

    Tables are checked and encoded by :class:`~descend.tables.Preprocessing`, their task
    chosen by :func:`~descend.tasks.choose_task`; the validation split is drawn before
    standardisation, whose statistics come from the training rows only. In-memory data is moved
    to ``device`` once and served by :class:`InMemory`; a ``Dataset`` or ``DataLoader`` by
    :class:`FromLoader`. ``l2`` becomes :func:`default_l2`'s value.
    """
    from torch.utils.data import Dataset, TensorDataset

    check_task(task, model, loss)
    if l2 is not None:
        default_l2(l2, model, None, 0)  # checked before any work
    val_frac = None
    if isinstance(val, (int, float)) and not isinstance(val, bool):
        val_frac = check_fraction("val", val) or None
        val = None
    if isinstance(data, (str, Path)) or is_table(data):
        d = _prepare_table(
            model, data, val, val_frac, target=target, features=features, loss=loss,
            batch_size=batch_size, standardize=standardize, one_hot=one_hot,
            drop_missing=drop_missing, drop_constant=drop_constant, shuffle=shuffle, seed=seed,
            dtype=dtype, device=device, task=task, encoding=encoding)
    else:
        if isinstance(data, TensorDataset) and len(data.tensors) == 2:
            data = tuple(data.tensors)
        if isinstance(data, Dataset) or (hasattr(data, "__iter__")
                                         and hasattr(data, "dataset")):
            d = _prepare_loader(model, data, val, val_frac, loss=loss, batch_size=batch_size,
                                standardize=standardize, shuffle=shuffle, seed=seed,
                                device=device)
        else:
            if task == "classify" and loss is None and model != "logistic":
                loss = "cross_entropy"
            d = _prepare_tensors(model, data, val, val_frac, loss=loss, batch_size=batch_size,
                                 standardize=standardize, shuffle=shuffle, seed=seed,
                                 dtype=dtype, device=device)
    n_train = d.train.n if isinstance(d.train, InMemory) else 0
    d.l2 = default_l2(l2, model, d.loss, n_train)
    if d.prep is not None:
        d.prep.l2 = d.l2
    return d


def _in_memory(X: Tensor, Y: Tensor, Xv: Tensor | None, Yv: Tensor | None, *, batch_size: int,
               shuffle: bool, seed: int, device: torch.device) -> tuple[InMemory, InMemory | None]:
    """Training and (when there are validation rows) validation batches, moved to ``device``."""
    train = InMemory(X.to(device), Y.to(device), batch_size, shuffle=shuffle, seed=seed)
    if Xv is None or Yv is None:
        return train, None
    return train, InMemory(Xv.to(device), Yv.to(device), batch_size, shuffle=False)


def _read(data: Any, name: str, encoding: str | None = None,
          notes: list[str] | None = None) -> tuple[pa.Table, str]:
    """A path (read as CSV/Parquet, in ``encoding`` or the one detected, noted in ``notes``)
    or a DataFrame as a table, and its name in messages (the file's name, else ``name``)."""
    if isinstance(data, (str, Path)):
        return read_table(data, encoding=encoding, notes=notes), Path(data).name
    return to_table(data), name


def _prepare_table(model: Any, data: Any, val: Any, val_frac: float | None, *, target: Any,
                   features: Any, loss: Any, batch_size: int, standardize: bool | None,
                   one_hot: bool, drop_missing: bool, drop_constant: bool, shuffle: bool,
                   seed: int, dtype: torch.dtype, device: torch.device, task: str | None,
                   encoding: str | None) -> Prepared:
    """:func:`prepare` for a path, a DataFrame or a pyarrow Table: read it, choose the task,
    check and encode it, split off validation rows, then standardise with statistics of the
    training rows."""
    if target is None:
        raise InputError("give target=COLUMN(S) when data is a table or a file")
    targets = [target] if isinstance(target, str) else list(target)
    notes: list[str] = []
    table, name = _read(data, "the DataFrame", encoding, notes)
    check_names(table, name, targets, features)
    chosen = [c for c in table.column_names if c not in targets
              and (features is None or c in features)]
    mostly_numbers(table, name, chosen, "feature")  # a typo, not a column to one-hot encode
    if task != "classify" and loss not in CLASSIFIER_LOSSES and model != "logistic":
        mostly_numbers(table, name, [t for t in targets if t in table.column_names], "target")
    check_huge(table, name, [*chosen, *[t for t in targets if t in table.column_names]])
    task_name = choose_task(table, name, targets, model=model, loss=loss, task=task)
    classifier = task_name == "classification"
    prep, table = Preprocessing.fit(
        table, name, targets, features, task=task_name,
        one_hot=one_hot, drop_missing=drop_missing, drop_constant=drop_constant)
    prep.notes = notes + prep.notes
    X = prep.features_of(table, name, torch.float64)
    Y = prep.targets_of(table, name, torch.float64)
    loss_name = default_loss(model, loss, len(prep.classes), task_name)
    if loss_name == "bce" and len(prep.classes) != 2:
        raise InputError(
            f"--loss bce (loss='bce') needs a target of 2 classes; column {targets[0]!r} of "
            f"{name} holds {len(prep.classes)} distinct values: use --loss cross_entropy for "
            "more classes, or --loss mse for a quantity")
    if val_frac:
        tr, va = split_indices(len(X), val_frac, seed)
    else:
        tr, va = torch.arange(len(X)), None
    prep.fit_fill(X[tr])
    if standardize is not False:
        prep.fit_scaling(X[tr], Y[tr].double() if not classifier else None)
    X = prep.scale_x(X).to(dtype)
    if not classifier:
        Y = prep.scale_y(Y.double()).to(dtype)
    elif loss_name == "bce":
        Y = Y.to(dtype)[:, None]
    Xv: Tensor | None = None
    Yv: Tensor | None = None
    if va is not None:
        Xv, Yv = X[va], Y[va]
    elif val is not None:
        vtable, vname = _read(val, "the validation DataFrame", encoding, prep.notes)
        Xv = prep.features_of(vtable, vname).to(dtype)
        Yv = prep.targets_of(vtable, vname)
        if loss_name == "bce":
            Yv = Yv.to(dtype)[:, None]
        elif not classifier:
            Yv = Yv.to(dtype)
    X, Y = X[tr], Y[tr]
    n_out = 1 if loss_name == "bce" else prep.n_outputs
    train, vsrc = _in_memory(X, Y, Xv, Yv, batch_size=batch_size, shuffle=shuffle, seed=seed,
                             device=device)
    return Prepared(train, vsrc, prep, X.shape[1], n_out, loss_name)


def _prepare_loader(model: Any, data: Any, val: Any, val_frac: float | None, *, loss: Any,
                    batch_size: int, standardize: bool | None, shuffle: bool, seed: int,
                    device: torch.device) -> Prepared:
    """:func:`prepare` for a ``DataLoader`` or a (non-tensor) ``Dataset``: batches come from
    the loader, as they are (no split, no scaling, the model already built)."""
    from torch.utils.data import DataLoader, Dataset

    if val_frac:
        raise InputError("val as a fraction needs in-memory data (tensors, arrays, a "
                         "DataFrame or a file); pass a separate validation set instead")
    if standardize:
        raise InputError("standardize needs in-memory data; scale inside the Dataset")
    if isinstance(model, str):
        raise InputError(f"model {model!r} needs in-memory data to size it; pass an "
                         "nn.Module with a Dataset or DataLoader")

    def loader(ds: Any, shuffle_it: bool) -> FromLoader:
        return FromLoader(DataLoader(ds, batch_size=batch_size, shuffle=shuffle_it,
                                     generator=torch.Generator().manual_seed(seed)), device)

    train = loader(data, shuffle) if isinstance(data, Dataset) else FromLoader(data, device)
    vsrc: InMemory | FromLoader | None = None
    if val is not None:
        if isinstance(val, Dataset):
            vsrc = loader(val, False)
        elif hasattr(val, "dataset"):
            vsrc = FromLoader(val, device)
        else:
            Xv, Yv = _tensor_pair("val", val)
            vsrc = InMemory(Xv.to(device), Yv.to(device), batch_size, shuffle=False)
    return Prepared(train, vsrc, None, 0, 0, default_loss(model, loss, 0))


def _check_labels(Y: Tensor, loss_name: str | None) -> None:
    """Raise when ``Y`` cannot be the targets of ``loss_name``: class indices (whole numbers
    >= 0, one per row) for cross_entropy, 0/1 (or probabilities in [0, 1]) for bce; nothing is
    truncated or broadcast silently."""
    if loss_name not in CLASSIFIER_LOSSES or Y.is_complex():
        return
    Yd = Y.detach().double()
    if not bool(torch.isfinite(Yd).all()):
        raise InputError(f"targets of loss {loss_name} must be finite, got a non-finite value")
    if loss_name == "cross_entropy":
        if Y.dim() != 1:
            raise InputError(f"cross_entropy takes one class index per row (a 1-D target), got "
                             f"targets of shape {tuple(Y.shape)}")
        bad = (Yd != Yd.round()) | (Yd < 0)
        if bool(bad.any()):
            v = Yd[bad][0].item()
            raise InputError(f"cross_entropy takes class indices 0, 1, 2, ... as targets, got "
                             f"{v:g}; give whole-number labels (class probabilities are not "
                             "truncated to a class)")
    elif bool(((Yd < 0) | (Yd > 1)).any()):
        v = Yd[(Yd < 0) | (Yd > 1)][0].item()
        raise InputError(f"bce takes targets 0 or 1 (or probabilities in [0, 1]), got {v:g}; "
                         "use cross_entropy for class indices, or mse for a quantity")


def _cast(X: Tensor, Y: Tensor, model: Any, loss_name: str | None,
          dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Inputs as ``dtype`` (complex ones kept), targets as the loss wants them, and for a spec
    model one column per feature and per target."""
    X = X if X.is_complex() else X.to(dtype)
    _check_labels(Y, loss_name)
    if loss_name == "cross_entropy":
        Y = Y.long()
    elif Y.is_floating_point() or loss_name is not None:
        Y = Y.to(dtype)
    # A spec model maps rows to rows: one column per feature and one per target, so a 1-D
    # Y is not compared with (n, 1) outputs (mse would broadcast that to (n, n)).
    if isinstance(model, str):
        X = X[:, None] if X.dim() == 1 else X
        if loss_name != "cross_entropy" and Y.dim() == 1:
            Y = Y[:, None]
    return X, Y


def _prepare_tensors(model: Any, data: Any, val: Any, val_frac: float | None, *, loss: Any,
                     batch_size: int, standardize: bool | None, shuffle: bool, seed: int,
                     dtype: torch.dtype, device: torch.device) -> Prepared:
    """:func:`prepare` for ``(X, Y)`` tensors or numpy arrays."""
    loss_name = default_loss(model, loss, 0)
    X, Y = _cast(*_tensor_pair("data", data), model, loss_name, dtype)
    Xv: Tensor | None = None
    Yv: Tensor | None = None
    if val_frac:
        tr, va = split_indices(len(X), val_frac, seed)
        Xv, Yv = X[va], Y[va]
        X, Y = X[tr], Y[tr]
    elif val is not None:
        Xv, Yv = _cast(*_tensor_pair("val", val), model, loss_name, dtype)
    prep: Preprocessing | None = None
    if standardize:
        prep = Preprocessing(features=[f"x{i}" for i in range(X.shape[1])], targets=[])
        prep.fit_scaling(X.double(), None)
        X = prep.scale_x(X.double()).to(dtype)
        if Xv is not None:
            Xv = prep.scale_x(Xv.double()).to(dtype)
    n_in = X.shape[1] if X.dim() > 1 else 1
    n_out = Y.shape[1] if Y.dim() > 1 else 1
    if loss_name == "cross_entropy":
        n_out = int(Y.max()) + 1
    train, vsrc = _in_memory(X, Y, Xv, Yv, batch_size=batch_size, shuffle=shuffle, seed=seed,
                             device=device)
    return Prepared(train, vsrc, prep, n_in, n_out, loss_name)
