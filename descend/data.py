"""Data for ``fit``: tensors, numpy arrays, DataFrames, Datasets, DataLoaders and CSV/Parquet files
turned into tensors, batches and a saved preprocessing.

Two halves:

* **Batches.** :class:`InMemory` serves mini-batches from tensors already in memory the way a
  hand-written loop does: one ``randperm`` per epoch and one ``index_select`` gather per batch
  (a default ``DataLoader`` over a ``TensorDataset`` indexes sample by sample and is ~20x
  slower). :class:`FromLoader` walks a user's ``DataLoader`` (or a ``Dataset`` wrapped in one).
  Batch ``k`` of a run is batch ``k % batches_per_epoch`` of epoch ``k // batches_per_epoch``.
* **Tables.** :func:`read_table` reads CSV or Parquet with pyarrow (imported only here), and
  :class:`Preprocessing` turns a table into a float feature matrix and targets: it checks the
  data and explains every problem in one line (empty file, header only, missing target column,
  non-numeric columns, missing or infinite values, a single row, constant columns, unseen labels),
  one-hot encodes categorical columns when asked, standardises features (and regression targets)
  with statistics fitted on the training split only, and saves all of that as plain JSON data so
  ``predict`` can apply it in a fresh process.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .errors import InputError, InputTypeError, check_fraction

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

__all__ = [
    "CLASSIFIER_LOSSES",
    "FromLoader",
    "InMemory",
    "Prepared",
    "Preprocessing",
    "as_tensor",
    "default_loss",
    "is_table",
    "prepare",
    "read_table",
    "split_indices",
    "to_table",
]

#: Losses that make the task a classification (their targets are class labels).
CLASSIFIER_LOSSES = ("bce", "cross_entropy")

#: Extensions read as Parquet; anything else is read as CSV.
PARQUET_SUFFIXES = (".parquet", ".pq")


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

    def batch(self, k: int) -> tuple[Tensor, Tensor]:
        """Batch ``k`` of the run (``k = 0, 1, ...``)."""
        j = k % self.batches_per_epoch
        b = self.batch_size
        if not self.shuffle:
            return self.X[j * b:(j + 1) * b], self.Y[j * b:(j + 1) * b]
        if j == 0 or self._perm is None:
            self._perm = torch.randperm(self.n, generator=self.generator).to(self.X.device)
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
        """The shuffling generator's state."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the shuffling generator."""
        self.generator.set_state(state["generator"])

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
        """Batch ``k`` of the run."""
        if k % self.batches_per_epoch == 0 or self._it is None:
            self._it = iter(self.loader)
        try:
            return self._pair(next(self._it))
        except StopIteration:  # the loader was shorter than its len(): start the next pass
            self._it = iter(self.loader)
            return self._pair(next(self._it))

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


# ----------------------------------------------------------------------------------------- tables


def _import_pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as e:  # pragma: no cover - pyarrow is a dependency
        raise InputError("reading data files needs pyarrow: pip install pyarrow") from e
    return pyarrow


def read_table(path: str | Path) -> pa.Table:
    """Read a CSV or Parquet file (by extension) into a ``pyarrow.Table``.

    Empty cells and ``NaN``/``NA``/``null`` are read as missing values, in text columns too.

    Raises:
        InputError: the file does not exist, is empty, has only a header, or cannot be parsed.
    """
    pa = _import_pyarrow()
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    p = Path(path)
    name = p.name
    if not p.is_file():
        raise InputError(f"{path} does not exist" if not p.exists() else f"{path} is not a file")
    if p.stat().st_size == 0 or (p.suffix not in PARQUET_SUFFIXES
                                 and not p.read_bytes()[:65536].strip()):
        raise InputError(f"{name} is empty: no header and no rows")
    try:
        if p.suffix.lower() in PARQUET_SUFFIXES:
            table = pq.read_table(p)
        else:
            table = pacsv.read_csv(
                p, convert_options=pacsv.ConvertOptions(strings_can_be_null=True)
            )
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot read {name}: {first}") from None
    if table.num_rows == 0:
        raise InputError(f"{name} has a header but no data rows")
    return table


def to_table(df: Any) -> pa.Table:
    """A pandas DataFrame (or a pyarrow Table) as a ``pyarrow.Table``."""
    pa = _import_pyarrow()
    if isinstance(df, pa.Table):
        return df
    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InputError(f"cannot convert the DataFrame: {str(e).splitlines()[0]}") from None


def _kind(typ: Any) -> str:
    """'number' for numbers and booleans, 'missing' for an all-null column, else 'text'."""
    import pyarrow.types as pt

    if pt.is_integer(typ) or pt.is_floating(typ) or pt.is_boolean(typ) or pt.is_decimal(typ):
        return "number"
    if pt.is_null(typ):
        return "missing"
    if pt.is_dictionary(typ):
        return _kind(typ.value_type) if _kind(typ.value_type) == "number" else "text"
    return "text"


def _floating(typ: Any) -> bool:
    import pyarrow.types as pt

    return bool(pt.is_floating(typ))


def _numbers(col: Any) -> np.ndarray:
    """A numeric pyarrow column as float64 numpy (nulls as nan)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _counts(items: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in items.items())


@dataclass
class Preprocessing:
    """Columns in, tensors out: how a table becomes features and targets, as plain data.

    Built by :meth:`fit` (and :meth:`fit_scaling`) on a training table and saved with the
    model; :meth:`features_of` and :meth:`targets_of` apply it to any table with the same
    columns.

    Attributes:
        features: the input columns, in order.
        targets: the target columns.
        task: ``"regression"`` or ``"classification"``.
        categories: one-hot encoded columns and their values seen in training.
        classes: the class labels seen in training (classification).
        x_mean, x_std: per encoded feature, fitted on the training rows (empty: no scaling).
        y_mean, y_std: per target, for regression targets (empty: no scaling).
    """

    features: list[str]
    targets: list[str]
    task: str = "regression"
    categories: dict[str, list[Any]] = field(default_factory=dict)
    classes: list[Any] = field(default_factory=list)
    x_mean: list[float] = field(default_factory=list)
    x_std: list[float] = field(default_factory=list)
    y_mean: list[float] = field(default_factory=list)
    y_std: list[float] = field(default_factory=list)

    # -------------------------------------------------------------------------------- building

    @classmethod
    def fit(
        cls,
        table: pa.Table,
        name: str,
        target: Sequence[str],
        features: Sequence[str] | None = None,
        *,
        task: str = "regression",
        one_hot: bool = False,
        drop_missing: bool = False,
        drop_constant: bool = False,
    ) -> tuple[Preprocessing, pa.Table]:
        """Check ``table`` (read from ``name``) and build the preprocessing (without scaling;
        see :meth:`fit_scaling`). Returns it and the table left after dropping rows/columns.

        Raises:
            InputError: one line naming the problem, the columns and the fix.
        """
        cols = list(table.column_names)
        target = list(target)
        if not target:
            raise InputError("give at least one target column")
        for t in target:
            if t not in cols:
                raise InputError(
                    f"target column {t!r} is not in {name}; its columns are: {', '.join(cols)}"
                )
        if features is None:
            feats = [c for c in cols if c not in target]
        else:
            feats = list(features)
            for f in feats:
                if f not in cols:
                    raise InputError(
                        f"feature column {f!r} is not in {name}; its columns are: "
                        f"{', '.join(cols)}"
                    )
                if f in target:
                    raise InputError(f"column {f!r} cannot be both a feature and a target")
        if not feats:
            raise InputError(f"{name} has no feature columns besides the target(s)")
        if task == "classification" and len(target) > 1:
            raise InputError(
                f"a classifier predicts one target column, got {len(target)}: "
                f"{', '.join(target)}"
            )
        table = table.select(feats + target)

        text = [c for c in feats if _kind(table.column(c).type) == "text"]
        if text and not one_hot:
            raise InputError(
                f"non-numeric feature column(s) in {name}: {', '.join(text)}; pass --one-hot "
                "(one_hot=True) to encode them as 0/1 columns, or leave them out with --features"
            )
        if task == "regression":
            bad = [t for t in target if _kind(table.column(t).type) == "text"]
            if bad:
                raise InputError(
                    f"target column {bad[0]!r} of {name} is not numeric; for class labels use "
                    "--model logistic or --loss cross_entropy"
                )

        table = _check_missing(table, name, drop_missing)
        _check_infinite(table, name, [c for c in feats + target if c not in text])
        if table.num_rows < 2:
            raise InputError(
                f"{name} has only {table.num_rows} data row; fitting needs at least 2"
            )

        constant = {}
        for c in feats:
            uniq = table.column(c).unique()
            if len(uniq) == 1:
                constant[c] = uniq[0].as_py()
        if constant and not drop_constant:
            which = ", ".join(f"{c} (always {_fmt(v)})" for c, v in constant.items())
            raise InputError(
                f"constant feature column(s) in {name}: {which}; they carry no information: "
                "leave them out with --features or pass --drop-constant (drop_constant=True)"
            )
        feats = [c for c in feats if c not in constant]
        if not feats:
            raise InputError(f"{name} has no feature columns left after dropping constant ones")

        prep = cls(features=feats, targets=target, task=task)
        for c in text:
            if c in feats:
                prep.categories[c] = sorted(v for v in table.column(c).unique().to_pylist())
        if task == "classification":
            labels = table.column(target[0]).unique().to_pylist()
            prep.classes = sorted(labels, key=lambda v: (str(type(v)), v))
            if len(prep.classes) < 2:
                raise InputError(
                    f"target column {target[0]!r} of {name} holds only one class "
                    f"({_fmt(prep.classes[0])}); a classifier needs at least 2"
                )
        return prep, table

    @property
    def encoded_features(self) -> list[str]:
        """Names of the encoded feature columns (``col=value`` for one-hot columns)."""
        out: list[str] = []
        for c in self.features:
            if c in self.categories:
                out.extend(f"{c}={v}" for v in self.categories[c])
            else:
                out.append(c)
        return out

    @property
    def n_outputs(self) -> int:
        """Model outputs: one per regression target; one logit per class (one for 2 classes
        with ``bce``) is decided by the loss, so this is the class count for classifiers."""
        return len(self.classes) if self.task == "classification" else len(self.targets)

    def fit_scaling(self, X: Tensor, Y: Tensor | None) -> None:
        """Fit standardisation on training rows ``X`` (and regression targets ``Y``).

        ``x' = (x - mean) / std``; a column with ``std = 0`` on these rows keeps ``std = 1``.
        One-hot columns are scaled too: the model sees zero-mean inputs throughout.
        """
        mean = X.double().mean(0)
        std = X.double().std(0, correction=0)
        std[std == 0] = 1.0
        self.x_mean, self.x_std = mean.tolist(), std.tolist()
        if Y is not None and self.task == "regression":
            ym = Y.double().mean(0)
            ys = Y.double().std(0, correction=0)
            ys[ys == 0] = 1.0
            self.y_mean, self.y_std = ym.tolist(), ys.tolist()

    # ------------------------------------------------------------------------------- applying

    def features_of(self, table: pa.Table, name: str,
                    dtype: torch.dtype = torch.float32) -> Tensor:
        """The (scaled) feature matrix of ``table``, computed in float64, returned as ``dtype``.

        Raises:
            InputError: a feature column is missing, or holds missing, infinite or unseen values.
        """
        import numpy as np

        cols = table.column_names
        lacking = [c for c in self.features if c not in cols]
        if lacking:
            raise InputError(
                f"{name} lacks the feature column(s) {', '.join(lacking)} the model was trained "
                f"on; its columns are: {', '.join(cols)}"
            )
        table = table.select(self.features)
        _check_missing(table, name, drop=None)
        _check_infinite(table, name, [c for c in self.features if c not in self.categories])
        parts = []
        for c in self.features:
            col = table.column(c)
            if c in self.categories:
                known = self.categories[c]
                codes = _codes(col, known, f"value {{}} in column {c!r} of {name} was never "
                               f"seen in training; known values: {{}}")
                onehot = np.zeros((len(codes), len(known)))
                onehot[np.arange(len(codes)), codes] = 1.0
                parts.append(onehot)
            else:
                if _kind(col.type) != "number":
                    raise InputError(f"column {c!r} of {name} is not numeric")
                parts.append(_numbers(col)[:, None])
        return self.scale_x(torch.from_numpy(np.concatenate(parts, axis=1))).to(dtype)

    def targets_of(self, table: pa.Table, name: str,
                   dtype: torch.dtype = torch.float32) -> Tensor:
        """Targets as the loss wants them: class indices (int64) for classifiers, else the
        (scaled) values as ``dtype``, one column per target.

        Raises:
            InputError: a target column is missing, or holds a label never seen in training.
        """
        cols = table.column_names
        for t in self.targets:
            if t not in cols:
                raise InputError(
                    f"target column {t!r} is not in {name}; its columns are: {', '.join(cols)}"
                )
        _check_missing(table.select(self.targets), name, drop=None)
        if self.task == "classification":
            t = self.targets[0]
            codes = _codes(table.column(t), self.classes, f"class label {{}} in column {t!r} of "
                           f"{name} was never seen in training; known labels: {{}}")
            return torch.from_numpy(codes.astype("int64"))
        import numpy as np

        _check_infinite(table, name, self.targets)

        Y = torch.from_numpy(np.stack([_numbers(table.column(t)) for t in self.targets], 1))
        return self.scale_y(Y).to(dtype)

    def scale_x(self, X: Tensor) -> Tensor:
        """Features in the model's (standardised) units."""
        if not self.x_mean:
            return X
        return (X - torch.tensor(self.x_mean, dtype=X.dtype, device=X.device)) / torch.tensor(
            self.x_std, dtype=X.dtype, device=X.device)

    def scale_y(self, Y: Tensor) -> Tensor:
        """Regression targets in the model's (standardised) units."""
        if not self.y_mean:
            return Y
        return (Y - torch.tensor(self.y_mean, dtype=Y.dtype, device=Y.device)) / torch.tensor(
            self.y_std, dtype=Y.dtype, device=Y.device)

    def unscale_y(self, Y: Tensor) -> Tensor:
        """Model outputs back in the targets' units."""
        if not self.y_mean:
            return Y
        return Y * torch.tensor(self.y_std, dtype=Y.dtype, device=Y.device) + torch.tensor(
            self.y_mean, dtype=Y.dtype, device=Y.device)

    def state_dict(self) -> dict[str, Any]:
        """Everything as JSON-able data."""
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Preprocessing:
        """Rebuild from :meth:`state_dict`."""
        return cls(**state)


def _check_missing(table: pa.Table, name: str, drop: bool | None) -> pa.Table:
    """Count missing cells (null or NaN) per column; drop those rows or raise. ``drop=None``:
    dropping is not an option here (predict time)."""
    import pyarrow.compute as pc

    counts = {}
    for c in table.column_names:
        col = table.column(c)
        n = col.null_count
        if _floating(col.type):
            n += int(pc.sum(pc.is_nan(col)).as_py() or 0)
        if n:
            counts[c] = n
    if not counts:
        return table
    if not drop:
        fix = ("fill or remove those cells" if drop is None else
               "pass --drop-missing (drop_missing=True) to drop those rows")
        raise InputError(
            f"missing values (empty or NaN cells) in {name}: {_counts(counts)}; {fix}"
        )
    keep = None
    for c in counts:
        col = table.column(c)
        ok = pc.is_valid(col)
        if _floating(col.type):
            ok = pc.and_(ok, pc.invert(pc.is_nan(col)))
        keep = ok if keep is None else pc.and_(keep, ok)
    table = table.filter(pc.fill_null(keep, False))
    if table.num_rows == 0:
        raise InputError(f"every row of {name} has a missing value; nothing is left to fit")
    return table


def _codes(col: Any, known: list[Any], template: str) -> np.ndarray:
    """Index of each value of ``col`` in ``known`` (vectorised); raise ``template`` filled with
    the first unseen value and the known ones when a value is not there."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        idx = pc.index_in(col, value_set=pa.array(known, type=col.type))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError):
        # types differ (e.g. numbers in training, text here): compare as text
        idx = pc.index_in(pc.cast(col, pa.string()),
                          value_set=pa.array([str(v) for v in known], type=pa.string()))
    if idx.null_count:
        first = pc.filter(col, pc.is_null(idx))[0].as_py()
        raise InputError(template.format(repr(_fmt(first)), ", ".join(_fmt(v) for v in known)))
    return idx.to_numpy(zero_copy_only=False)


def _check_infinite(table: pa.Table, name: str, columns: Sequence[str]) -> None:
    import numpy as np

    counts = {}
    for c in columns:
        col = table.column(c)
        if _kind(col.type) != "number":
            continue
        n = int(np.isinf(_numbers(col)).sum())
        if n:
            counts[c] = n
    if counts:
        raise InputError(
            f"infinite values in {name}: {_counts(counts)}; replace or remove those cells"
        )


# ------------------------------------------------------------------------ any data -> batches


def is_table(data: Any) -> bool:
    """Whether ``data`` is a pandas DataFrame or a pyarrow Table (checked without importing
    either)."""
    mod = type(data).__module__.split(".")[0]
    return mod in ("pandas", "pyarrow") and hasattr(data, "columns")


def as_tensor(name: str, a: Any) -> Tensor:
    """``a`` (a tensor or a numpy array, shared without a copy) as a tensor."""
    if isinstance(a, Tensor):
        return a
    if type(a).__module__.split(".")[0] == "numpy":
        return torch.from_numpy(a)
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


def default_loss(model: Any, loss: Any, classes: int) -> str | None:
    if loss is not None:
        return loss if isinstance(loss, str) else None
    if model == "logistic":
        return "bce" if classes == 2 else "cross_entropy"
    return "mse"


def _tensor_pair(name: str, data: Any) -> tuple[Tensor, Tensor]:
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
             device: torch.device) -> Prepared:
    """Turn ``data`` and ``val`` (any form :func:`descend.fit` takes) into batch sources.

    Tables are checked and encoded by :class:`Preprocessing`; the validation split is drawn
    before standardisation, whose statistics come from the training rows only. In-memory data
    is moved to ``device`` once and served by :class:`InMemory`; a ``Dataset`` or
    ``DataLoader`` by :class:`FromLoader`.
    """
    from torch.utils.data import DataLoader, Dataset, TensorDataset

    classifier = model == "logistic" or loss in CLASSIFIER_LOSSES
    val_frac = None
    if isinstance(val, (int, float)) and not isinstance(val, bool):
        val_frac = check_fraction("val", val) or None
        val = None

    def loader(ds: Any, shuffle_it: bool) -> FromLoader:
        return FromLoader(DataLoader(ds, batch_size=batch_size, shuffle=shuffle_it,
                                     generator=torch.Generator().manual_seed(seed)), device)

    # ---- tables: a path, a DataFrame, a pyarrow Table
    if isinstance(data, (str, Path)) or is_table(data):
        if target is None:
            raise InputError("give target=COLUMN(S) when data is a table or a file")
        targets = [target] if isinstance(target, str) else list(target)
        name = Path(data).name if isinstance(data, (str, Path)) else "the DataFrame"
        table = read_table(data) if isinstance(data, (str, Path)) else to_table(data)
        prep, table = Preprocessing.fit(
            table, name, targets, features, task="classification" if classifier else "regression",
            one_hot=one_hot, drop_missing=drop_missing, drop_constant=drop_constant)
        X = prep.features_of(table, name, torch.float64)
        Y = prep.targets_of(table, name, torch.float64)
        loss_name = default_loss(model, loss, len(prep.classes))
        if val_frac:
            tr, va = split_indices(len(X), val_frac, seed)
        else:
            tr, va = torch.arange(len(X)), None
        if standardize is not False:
            prep.fit_scaling(X[tr], Y[tr].double() if not classifier else None)
        X = prep.scale_x(X)
        if not classifier:
            Y = prep.scale_y(Y.double()).to(dtype)
        elif loss_name == "bce":
            Y = Y.to(dtype)[:, None]
        X = X.to(dtype)
        Xv = Yv = None
        if va is not None:
            Xv, Yv = X[va], Y[va]
        elif val is not None:
            vtable = read_table(val) if isinstance(val, (str, Path)) else to_table(val)
            vname = Path(val).name if isinstance(val, (str, Path)) else "the validation DataFrame"
            Xv = prep.features_of(vtable, vname).to(dtype)
            Yv = prep.targets_of(vtable, vname)
            if loss_name == "bce":
                Yv = Yv.to(dtype)[:, None]
            elif not classifier:
                Yv = Yv.to(dtype)
        X, Y = X[tr], Y[tr]
        n_out = 1 if loss_name == "bce" else prep.n_outputs
        train = InMemory(X.to(device), Y.to(device), batch_size, shuffle=shuffle, seed=seed)
        vtab = None
        if Xv is not None and Yv is not None:
            vtab = InMemory(Xv.to(device), Yv.to(device), batch_size, shuffle=False)
        return Prepared(train, vtab, prep, X.shape[1], n_out, loss_name)

    # ---- a DataLoader or a (non-tensor) Dataset: batches come from the loader
    if isinstance(data, TensorDataset) and len(data.tensors) == 2:
        data = tuple(data.tensors)
    if isinstance(data, Dataset) or (hasattr(data, "__iter__") and hasattr(data, "dataset")):
        if val_frac:
            raise InputError("val as a fraction needs in-memory data (tensors, arrays, a "
                             "DataFrame or a file); pass a separate validation set instead")
        if standardize:
            raise InputError("standardize needs in-memory data; scale inside the Dataset")
        if isinstance(model, str):
            raise InputError(f"model {model!r} needs in-memory data to size it; pass an "
                             "nn.Module with a Dataset or DataLoader")
        train_src = loader(data, shuffle) if isinstance(data, Dataset) else FromLoader(data,
                                                                                       device)
        vload: InMemory | FromLoader | None = None
        if val is not None:
            if isinstance(val, Dataset):
                vload = loader(val, False)
            elif hasattr(val, "dataset"):
                vload = FromLoader(val, device)
            else:
                Xv, Yv = _tensor_pair("val", val)
                vload = InMemory(Xv.to(device), Yv.to(device), batch_size, shuffle=False)
        return Prepared(train_src, vload, None, 0, 0, default_loss(model, loss, 0))

    # ---- tensors or numpy arrays
    X, Y = _tensor_pair("data", data)
    loss_name = default_loss(model, loss, 0)

    def cast(X: Tensor, Y: Tensor) -> tuple[Tensor, Tensor]:
        X = X if X.is_complex() else X.to(dtype)
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

    X, Y = cast(X, Y)
    tprep: Preprocessing | None = None
    if val_frac:
        tr, va = split_indices(len(X), val_frac, seed)
        Xv, Yv = X[va], Y[va]
        X, Y = X[tr], Y[tr]
    elif val is not None:
        Xv, Yv = cast(*_tensor_pair("val", val))
    else:
        Xv = Yv = None
    if standardize:
        tprep = Preprocessing(features=[f"x{i}" for i in range(X.shape[1])], targets=[])
        tprep.fit_scaling(X.double(), None)
        X = tprep.scale_x(X.double()).to(dtype)
        if Xv is not None:
            Xv = tprep.scale_x(Xv.double()).to(dtype)
    n_in = X.shape[1] if X.dim() > 1 else 1
    n_out = Y.shape[1] if Y.dim() > 1 else 1
    if loss_name == "cross_entropy":
        n_out = int(Y.max()) + 1
    train = InMemory(X.to(device), Y.to(device), batch_size, shuffle=shuffle, seed=seed)
    vsrc: InMemory | None = None
    if Xv is not None and Yv is not None:
        vsrc = InMemory(Xv.to(device), Yv.to(device), batch_size, shuffle=False)
    return Prepared(train, vsrc, tprep, n_in, n_out, loss_name)


