"""Tables for ``fit`` and ``predict``: CSV/Parquet files and DataFrames read, checked and turned
into a float feature matrix and targets by a preprocessing saved as plain data.

* **Reading and writing.** :func:`read_table` reads CSV or Parquet (by extension) with pyarrow,
  imported only here, in the encoding given or the one it detects (UTF-8, UTF-8 with a BOM,
  CP949/EUC-KR); :func:`to_table` takes a pandas DataFrame or a pyarrow Table. Both leave out a
  pandas index stored as columns. :func:`write_table` writes CSV or Parquet (by the suffix)
  atomically.
* **Checks with one-line fixes.** Every problem is explained in one line naming the file, the
  columns and the fix: empty file, header only, missing target column, non-numeric columns,
  missing or infinite values, a single row, constant columns, unseen labels.
* **Preprocessing as data.** :class:`Preprocessing` one-hot encodes categorical columns when
  asked, standardises features (and regression targets) with statistics fitted on the training
  split only, and saves all of that as plain JSON data so ``predict`` can apply it in a fresh
  process.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .atomic import atomic_file
from .errors import InputError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

__all__ = [
    "PARQUET_SUFFIXES",
    "Preprocessing",
    "check_header",
    "read_table",
    "to_table",
    "write_table",
]

#: Extensions read as Parquet; anything else is read as CSV.
PARQUET_SUFFIXES = (".parquet", ".pq")


# ---------------------------------------------------------------------------------------- reading


def _import_pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as e:  # pragma: no cover - pyarrow is a dependency
        raise InputError("reading data files needs pyarrow: pip install pyarrow") from e
    return pyarrow


def _csv_source(p: Path, encoding: str | None, notes: list[str] | None) -> Any:
    """What pyarrow reads the CSV file ``p`` from: the path itself for UTF-8 text (a BOM is
    skipped by the reader), else the text decoded here, in Python, and handed over as UTF-8
    bytes. pyarrow would decode other encodings on its reader's thread through Python's codecs,
    which need the GIL, and pyarrow 14 can then hang for good when the parse fails (the
    reader, torn down under the GIL, waits for that thread).

    The encoding is ``encoding`` when given (checked), else UTF-8 when the bytes decode as
    UTF-8, else CP949 (which covers EUC-KR, the encoding of Korean Excel's CSV export) when they
    decode as that; a note says so.

    Raises:
        InputError: an unknown encoding name, or bytes that are neither UTF-8 nor CP949.
        UnicodeDecodeError: bytes that are not in the ``encoding`` given.
    """
    import codecs

    import pyarrow as pa

    if encoding is not None:
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise InputError(f"unknown encoding {encoding!r}; use a Python codec name such as "
                             "utf-8, cp949, euc-kr, cp1252, latin-1") from None
        if name == "utf-8":
            return p
        return pa.BufferReader(p.read_bytes().decode(name).encode("utf-8"))
    raw = p.read_bytes()
    try:
        raw.decode("utf-8")
        return p
    except UnicodeDecodeError as e:
        bad = e.start
    try:
        text = raw.decode("cp949")
    except UnicodeDecodeError:
        raise InputError(
            f"cannot read {p.name}: it is not UTF-8 text (byte 0x{raw[bad]:02x} at offset "
            f"{bad}); pass --encoding NAME (encoding=NAME), e.g. cp1252 or latin-1"
        ) from None
    if notes is not None:
        notes.append(f"{p.name} is not UTF-8; read it as cp949 (CP949/EUC-KR, Korean Excel's "
                     "CSV export); pass --encoding NAME if that is wrong")
    return pa.BufferReader(text.encode("utf-8"))


def _without_pandas_index(table: pa.Table) -> pa.Table:
    """``table`` less the columns pandas stored its index in (``__index_level_0__``, or a named
    index), as listed under ``index_columns`` in the schema's ``b'pandas'`` metadata."""
    import json

    meta = (table.schema.metadata or {}).get(b"pandas")
    if not meta:
        return table
    try:
        index = json.loads(meta).get("index_columns", [])
    except (ValueError, AttributeError):
        return table
    drop = [c for c in index if isinstance(c, str) and c in table.column_names]
    return table.drop_columns(drop) if drop else table


#: CSV files larger than this are parsed by pyarrow's thread pool; smaller ones in the caller's
#: thread (faster for small files, and no pool to start).
THREADED_CSV_BYTES = 1 << 22


def read_table(path: str | Path, *, encoding: str | None = None,
               notes: list[str] | None = None) -> pa.Table:
    """Read a CSV or Parquet file (by extension) into a ``pyarrow.Table``.

    Empty cells and ``NaN``/``NA``/``null`` are read as missing values, in text columns too.
    A CSV file is read in ``encoding``, or in the one detected (UTF-8, UTF-8 with a BOM, else
    CP949/EUC-KR, with a line appended to ``notes``). The columns a pandas index was stored in
    are left out.

    Raises:
        InputError: the file does not exist, is empty, has only a header, or cannot be parsed
            or decoded.
    """
    pa = _import_pyarrow()
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    p = Path(path)
    name = p.name
    if not p.is_file():
        raise InputError(f"{path} does not exist" if not p.exists() else f"{path} is not a file")
    parquet = p.suffix.lower() in PARQUET_SUFFIXES
    if p.stat().st_size == 0 or (not parquet and not p.read_bytes()[:65536].strip()):
        raise InputError(f"{name} is empty: no header and no rows")
    try:
        if parquet:
            table = pq.read_table(p)
        else:
            table = pacsv.read_csv(  # small files in this thread: no pool to start (and
                _csv_source(p, encoding, notes),  # pyarrow 14's pool hung once on 8 bytes)
                read_options=pacsv.ReadOptions(use_threads=p.stat().st_size > THREADED_CSV_BYTES),
                convert_options=pacsv.ConvertOptions(strings_can_be_null=True)
            )
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = re.sub(r"^(CSV parse error: )Row #\d+: ", r"\1", first)  # as the threaded
        raise InputError(f"cannot read {name}: {first}") from None  # reader says it
    except UnicodeDecodeError as e:
        raise InputError(f"cannot read {name} as {e.encoding}: {e.reason} at byte {e.start}; "
                         "pass --encoding NAME (encoding=NAME)") from None
    if table.num_rows == 0:
        raise InputError(f"{name} has a header but no data rows")
    return _without_pandas_index(table)


def to_table(df: Any) -> pa.Table:
    """A pandas DataFrame (or a pyarrow Table) as a ``pyarrow.Table``, without the index."""
    pa = _import_pyarrow()
    if isinstance(df, pa.Table):
        return _without_pandas_index(df)
    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InputError(f"cannot convert the DataFrame: {str(e).splitlines()[0]}") from None


def write_table(table: pa.Table, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``table`` as Parquet (suffix ``.parquet``/``.pq``) or CSV (any other suffix),
    atomically (:func:`descend.atomic.atomic_file`): into a temporary file in the same folder,
    fsynced, then renamed over ``path``.

    Raises:
        InputError: ``path`` exists and ``overwrite`` is false, is a folder, or cannot be
            written.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p} is a folder; give a file name ending in .csv or .parquet")
    if p.exists() and not overwrite:
        raise InputError(f"{p} already exists; pass --overwrite to replace it")
    try:
        with atomic_file(p) as tmp:  # an error or Ctrl-C mid-write: the old file stays, whole
            if p.suffix.lower() in PARQUET_SUFFIXES:
                pq.write_table(table, tmp)
            else:
                pacsv.write_csv(table, tmp)
    except OSError as e:
        raise InputError(f"cannot write {p}: {e.strerror or e}") from None
    return p


# ---------------------------------------------------------------------------------------- columns


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


def _repeated(names: Sequence[str]) -> str | None:
    """The first name that appears more than once in ``names``, or None."""
    seen: set[str] = set()
    for n in names:
        if n in seen:
            return n
        seen.add(n)
    return None


def check_header(table: pa.Table, name: str) -> None:
    """Raise when the header of ``table`` (read from ``name``) names a column twice: a column
    is then ambiguous by name, in training and in prediction alike."""
    cols = list(table.column_names)
    dup = _repeated(cols)
    if dup is not None:
        shown = repr(dup) if dup else "with an empty name"
        raise InputError(f"column {shown} appears {cols.count(dup)} times in the header of "
                         f"{name}; give each column its own name")


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


# ---------------------------------------------------------------------------------- preprocessing


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
        x_mean, x_std: per encoded feature, fitted on the training rows (empty: no scaling);
            one-hot columns keep mean 0, std 1 (they are not scaled).
        y_mean, y_std: per target, for regression targets (empty: no scaling).
        fill: per numeric feature, its mean over the training rows, in the column's units
            (what ``predict --missing impute`` fills empty cells with; empty in folders saved
            before it was kept).
        notes: one-line notes about the data (constant columns kept or dropped, the
            encoding read), printed by ``descend fit``.
        l2: the L2 penalty the model was trained with (recorded; predictions ignore it).
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
    fill: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    l2: float = 0.0

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
        target = list(target)
        feats = _chosen_features(table, name, target, features)
        if task == "classification" and len(target) > 1:
            raise InputError(
                f"a classifier predicts one target column, got {len(target)}: "
                f"{', '.join(target)}"
            )
        table = table.select(feats + target)
        text = _text_columns(table, name, feats, target, task=task, one_hot=one_hot)
        table = _check_missing(table, name, drop_missing)
        _check_infinite(table, name, [c for c in feats + target if c not in text])
        if table.num_rows < 2:
            raise InputError(
                f"{name} has only {table.num_rows} data row; fitting needs at least 2"
            )
        feats, note = _without_constant(table, name, feats, drop=drop_constant)
        prep = cls(features=feats, targets=target, task=task, notes=[note] if note else [])
        prep.categories = {c: sorted(table.column(c).unique().to_pylist())
                           for c in text if c in feats}
        if task == "classification":
            prep.classes = _classes(table, name, target[0])
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

        ``x' = (x - mean) / std``; a column with ``std = 0`` on these rows (a constant one)
        keeps ``std = 1``. Only the numeric input columns are scaled: one-hot columns stay 0/1
        (mean 0, std 1), so a categorical column with many levels does not get huge inputs
        for its rare levels.
        """
        mean = X.double().mean(0)
        std = X.double().std(0, correction=0)
        std[std == 0] = 1.0
        onehot = torch.tensor(self._one_hot_mask(), dtype=torch.bool)
        if len(onehot) == len(mean):
            mean[onehot] = 0.0
            std[onehot] = 1.0
        self.x_mean, self.x_std = mean.tolist(), std.tolist()
        if Y is not None and self.task == "regression":
            ym = Y.double().mean(0)
            ys = Y.double().std(0, correction=0)
            ys[ys == 0] = 1.0
            self.y_mean, self.y_std = ym.tolist(), ys.tolist()

    def _one_hot_mask(self) -> list[bool]:
        """Per encoded feature: whether it is a one-hot column."""
        return [m for c in self.features
                for m in ([True] * len(self.categories[c]) if c in self.categories else [False])]

    def fit_fill(self, X: Tensor) -> None:
        """Keep the mean of each numeric feature over the training rows ``X`` (unscaled
        encoded features), for ``predict --missing impute``."""
        numeric = [i for i, m in enumerate(self._one_hot_mask()) if not m]
        names = [c for c in self.features if c not in self.categories]
        means = X.double()[:, numeric].mean(0).tolist() if numeric else []
        self.fill = dict(zip(names, means))

    def handle_missing(self, table: pa.Table, name: str,
                       how: str = "refuse") -> tuple[pa.Table, pa.Table, str | None]:
        """Rows of ``table`` with a missing (empty or NaN) feature cell: refused (``how =
        "refuse"``), dropped (``"drop"``) or filled with the training means (``"impute"``,
        numeric features only). Returns the rows kept as they were, the same rows with cells
        filled (what the model sees), and a one-line note (None when nothing was missing).

        Raises:
            InputError: ``how`` is unknown; there are missing cells and ``how`` is refuse;
                impute is asked for a categorical column or with a model saved without the
                training means; every row has a missing cell.
        """
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        if how not in ("refuse", "drop", "impute"):
            raise InputError(f"missing must be refuse, drop or impute, got {how!r}")
        cols = [c for c in self.features if c in table.column_names]
        bad = np.zeros(table.num_rows, dtype=bool)
        counts = {}
        for c in cols:
            col = table.column(c)
            miss = ~pc.fill_null(pc.is_valid(col), False).to_numpy(zero_copy_only=False)
            if _floating(col.type):
                miss |= np.isnan(_numbers(col))
            if miss.any():
                counts[c] = int(miss.sum())
                bad |= miss
        if not counts:
            return table, table, None
        rows = (np.flatnonzero(bad) + 1).tolist()
        shown = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
        where = f"{len(rows)} row(s) (data rows {shown})"
        if how == "refuse":
            raise InputError(
                f"missing values (empty or NaN cells) in {name}: {where}; {_counts(counts)}; "
                "pass --missing drop (missing='drop') to skip those rows or --missing impute "
                "to fill numeric features with the training means"
            )
        if how == "drop":
            if len(rows) == table.num_rows:
                raise InputError(f"every row of {name} has a missing value; nothing is left "
                                 "to predict")
            kept = table.filter(pa.array(~bad))
            return kept, kept, f"dropped {where} of {name} with missing values"
        text = [c for c in counts if c in self.categories]
        if text:
            raise InputError(
                f"--missing impute fills numeric features only; column {text[0]!r} of {name} "
                "is categorical: pass --missing drop"
            )
        if not self.fill:
            raise InputError(
                "this model was saved without the training means (by an older descend); "
                "--missing impute needs them: fit it again, or pass --missing drop"
            )
        filled = table
        for c in counts:
            values = _numbers(table.column(c))
            values[np.isnan(values)] = self.fill[c]
            filled = filled.set_column(filled.column_names.index(c), c, pa.array(values))
        return table, filled, (f"filled {sum(counts.values())} missing cell(s) in {where} of "
                               f"{name} with the training means")

    # ------------------------------------------------------------------------------- applying

    def check_columns(self, table: pa.Table, name: str) -> None:
        """Raise when ``table`` names a column twice or lacks a feature column."""
        check_header(table, name)
        cols = table.column_names
        lacking = [c for c in self.features if c not in cols]
        if lacking:
            raise InputError(
                f"{name} lacks the feature column(s) {', '.join(lacking)} the model was trained "
                f"on; its columns are: {', '.join(cols)}"
            )

    def features_of(self, table: pa.Table, name: str,
                    dtype: torch.dtype = torch.float32) -> Tensor:
        """The (scaled) feature matrix of ``table``, computed in float64, returned as ``dtype``.

        Raises:
            InputError: a feature column is missing, or holds missing, infinite or unseen values.
        """
        import numpy as np

        self.check_columns(table, name)
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
        check_header(table, name)
        _check_missing(table.select(self.targets), name, drop=None)
        if self.task == "classification":
            t = self.targets[0]
            codes = _codes(table.column(t), self.classes, f"class label {{}} in column {t!r} of "
                           f"{name} was never seen in training; known labels: {{}}")
            return torch.from_numpy(codes.astype("int64"))
        import numpy as np

        for t in self.targets:
            if _kind(table.column(t).type) != "number":
                raise InputError(
                    f"target column {t!r} of {name} holds text, not numbers, and the model is "
                    f"a regression: give numbers in {t!r}, or use descend predict for rows "
                    "without targets")
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


# ----------------------------------------------------------------------------------------- checks


def _chosen_features(table: pa.Table, name: str, target: list[str],
                     features: Sequence[str] | None) -> list[str]:
    """The feature columns: ``features`` as given, else every column but the targets.

    Raises:
        InputError: no target, or a target or feature column is not in the table, or a column
            is both, or no feature is left.
    """
    cols = list(table.column_names)
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
                    f"feature column {f!r} is not in {name}; its columns are: {', '.join(cols)}"
                )
            if f in target:
                raise InputError(f"column {f!r} cannot be both a feature and a target")
    if not feats:
        raise InputError(f"{name} has no feature columns besides the target(s)")
    return feats


def _text_columns(table: pa.Table, name: str, feats: list[str], target: list[str], *,
                  task: str, one_hot: bool) -> list[str]:
    """The non-numeric feature columns (to one-hot encode).

    Raises:
        InputError: there are some and ``one_hot`` is off, or a regression target is not
            numeric.
    """
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
                f"target column {bad[0]!r} of {name} is not numeric; a regression needs "
                "numbers (class labels: one target column, --task classify)"
            )
    return text


def _without_constant(table: pa.Table, name: str, feats: list[str], *,
                      drop: bool) -> tuple[list[str], str | None]:
    """``feats`` less the columns holding one value throughout when ``drop``, else all of them
    (a constant column gets scale 1 under standardisation); and a one-line note naming them.

    Raises:
        InputError: ``drop`` leaves no feature column.
    """
    constant = {}
    for c in feats:
        uniq = table.column(c).unique()
        if len(uniq) == 1:
            constant[c] = uniq[0].as_py()
    if not constant:
        return feats, None
    shown = list(constant.items())[:5]
    which = ", ".join(f"{c} (always {_fmt(v)})" for c, v in shown)
    if len(constant) > len(shown):
        which += f" and {len(constant) - len(shown)} more"
    if not drop:
        return feats, (f"kept {len(constant)} constant feature column(s) of {name}: {which}; "
                       "they carry no information (--drop-constant drops them)")
    feats = [c for c in feats if c not in constant]
    if not feats:
        raise InputError(f"{name} has no feature columns left after dropping constant ones")
    return feats, f"dropped {len(constant)} constant feature column(s) of {name}: {which}"


def _classes(table: pa.Table, name: str, target: str) -> list[Any]:
    """The class labels in column ``target``, sorted (by type, then value).

    Raises:
        InputError: there is only one.
    """
    labels = table.column(target).unique().to_pylist()
    classes = sorted(labels, key=lambda v: (str(type(v)), v))
    if len(classes) < 2:
        raise InputError(
            f"target column {target!r} of {name} holds only one class "
            f"({_fmt(classes[0])}); a classifier needs at least 2"
        )
    return classes


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
    """Raise when the numeric ``columns`` hold infinite values, counted per column."""
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

