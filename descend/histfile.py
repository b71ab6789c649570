"""The history file of a run record: written as Parquet, read a few columns at a time, thinned
for charts; the ``history.csv`` of older records still read.

``history.parquet`` holds one row per iteration and one column per history column (int64 for
``iteration`` and ``nfev`` and other whole-number columns, float64 for the rest, written exactly:
a float read back is the same 64 bits; floats byte-stream-split and whole numbers delta-coded),
compressed with zstd: a million rows take well under 15 MB where CSV took 78. Parquet is
columnar, so a reader takes only the columns it draws (:func:`read_columns`), and
``descend runs show`` reads none: the record's ``result.json`` holds the history's summary
(:func:`summary`: rows, column names, first loss).

Charts thin long curves while reading (:func:`thin`): at most ``report.MAX_POINTS`` (2,000)
rows per run in the HTML report and ``report.PLOT_POINTS`` (4,000) in a plot, chosen evenly
over the run plus the rows a reader must see: the first, the last, the minimum and maximum of
every drawn column (the best loss, a spike) and the row where the run stopped. Exports (CSV,
TensorBoard, MLflow) and ``Run.history`` read every row.

pyarrow (a core dependency) is imported on first use, not with the package.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .errors import InputError

__all__ = ["CSV", "PARQUET", "copy_csv", "history_file", "read_columns",
           "read_history", "summary", "thin", "thinned", "write_csv", "write_parquet"]

PARQUET = "history.parquet"
#: The history file of records written before Parquet (still read).
CSV = "history.csv"
#: Rows per Parquet row group.
ROW_GROUP = 1 << 17
_INT_COLUMNS = ("iteration", "nfev")


def history_file(folder: str | os.PathLike[str]) -> Path:
    """The history file of the run folder ``folder``: ``history.parquet``, or ``history.csv``
    in a record written before Parquet."""
    folder = Path(folder)
    p = folder / PARQUET
    return p if p.exists() or not (folder / CSV).exists() else folder / CSV


# ---------------------------------------------------------------------------- writing


# pyarrow's conversions (pa.array, to_numpy) import pandas whenever it is installed (a second
# or more); numbers go through raw buffers instead, which never do.


def _arrow(values: Any) -> Any:
    """One column as a pyarrow array: numbers as int64 or float64 (nan kept as nan, the bits
    as they are); a column that is not all numbers as pyarrow takes it (text, nulls for None)
    or, failing that, as text."""
    import pyarrow as pa

    if hasattr(values, "numpy"):  # a history Column: its buffer, no copy
        values = values.numpy()
    arr = values if isinstance(values, np.ndarray) else np.asarray(values)
    if arr.ndim == 1 and arr.dtype.kind in "iuf":
        dtype = np.float64 if arr.dtype.kind == "f" else np.int64
        arr = np.ascontiguousarray(arr, dtype=dtype)
        return pa.Array.from_buffers(pa.float64() if dtype is np.float64 else pa.int64(),
                                     len(arr), [None, pa.py_buffer(arr)])
    values = values.tolist() if isinstance(values, np.ndarray) else list(values)
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values])


def write_parquet(path: str | os.PathLike[str], columns: Mapping[str, Any]) -> None:
    """Write ``columns`` (equal lengths: history columns, numpy arrays, lists) to ``path`` as
    Parquet, zstd-compressed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [str(k) for k in columns]
    table = pa.Table.from_arrays([_arrow(v) for v in columns.values()], names=names)
    # floats byte-stream-split (their exponents and mantissas compress apart), whole numbers
    # delta-coded (iteration and nfev shrink to almost nothing); dictionaries only for the rest
    encoding = {n: "BYTE_STREAM_SPLIT" if t == pa.float64() else "DELTA_BINARY_PACKED"
                for n, t in zip(names, table.schema.types) if t in (pa.float64(), pa.int64())}
    pq.write_table(table, path, compression="zstd", row_group_size=ROW_GROUP,
                   use_dictionary=[n for n in names if n not in encoding],
                   column_encoding=encoding)


def summary(columns: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """What ``descend runs show`` says of a history without reading it: ``rows``,
    ``columns`` (names in order) and ``first_loss`` (None without a loss or rows)."""
    rows = len(next(iter(columns.values()), ()))
    loss = columns.get("loss")
    first: Any = loss[0] if loss is not None and rows else None
    if hasattr(first, "item"):  # a numpy number
        first = first.item()
    return {"rows": rows, "columns": list(columns), "first_loss": first}


def write_csv(out: str | os.PathLike[str] | TextIO,
              columns: Mapping[str, Sequence[Any]]) -> None:
    """``columns`` as CSV to the path or text stream ``out``: a header, then one line per row;
    floats written with ``repr`` (exact, read back bit for bit; nan and inf readable)."""
    lists = [c.tolist() if hasattr(c, "tolist") else list(c) for c in columns.values()]
    with contextlib.ExitStack() as stack:
        fh = out if hasattr(out, "write") else stack.enter_context(open(out, "w", newline=""))
        w = csv.writer(fh)  # type: ignore[arg-type]
        w.writerow(columns)
        w.writerows([repr(v) if isinstance(v, float) else v for v in row] for row in zip(*lists))


def copy_csv(folder: str | os.PathLike[str], out: str | os.PathLike[str] | TextIO) -> None:
    """The history of the run folder ``folder`` as CSV (as :func:`write_csv` writes it) to the
    path or text stream ``out``, a row group at a time (an older record's CSV is copied)."""
    path = history_file(folder)
    with contextlib.ExitStack() as stack:
        fh = out if hasattr(out, "write") else stack.enter_context(open(out, "w", newline=""))
        if path.suffix == ".csv":
            with path.open(newline="") as src:
                shutil.copyfileobj(src, fh)  # type: ignore[arg-type]
            return
        w = csv.writer(fh)  # type: ignore[arg-type]
        with _parquet(path) as pf:
            w.writerow(pf.schema_arrow.names)
            for batch in pf.iter_batches(batch_size=ROW_GROUP):
                lists = [_to_list(c) for c in batch.columns]
                w.writerows([repr(v) if isinstance(v, float) else v for v in row]
                            for row in zip(*lists))


# ---------------------------------------------------------------------------- reading


def _parse(v: str) -> Any:
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def _read_csv(path: Path) -> dict[str, list[Any]]:
    """An older record's ``history.csv``: numbers parsed, ints kept in ``iteration`` and
    ``nfev`` only, other text as it was."""
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return {}
    header, body = rows[0], rows[1:]
    cols: dict[str, list[Any]] = {h: [] for h in header}
    for row in body:
        for h, v in zip(header, row):
            cols[h].append(_parse(v))
    for h in cols:
        if h not in _INT_COLUMNS:
            cols[h] = [float(v) if isinstance(v, int) else v for v in cols[h]]
    return cols


def _to_numpy(col: Any) -> np.ndarray | None:
    """A pyarrow column (array or chunked) of int64 or float64 without nulls as a numpy array
    read from its buffers; None for anything else."""
    import pyarrow as pa

    dtype = {pa.int64(): np.int64, pa.float64(): np.float64}.get(col.type)
    if dtype is None or col.null_count:
        return None
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    parts = [np.frombuffer(c.buffers()[1], dtype, count=len(c), offset=c.offset * 8)
             for c in chunks if len(c)]
    if not parts:
        return np.empty(0, dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _to_list(col: Any) -> list[Any]:
    """A pyarrow column as a list of Python values (through numpy when it is plain numbers)."""
    arr = _to_numpy(col)
    out: list[Any] = col.to_pylist() if arr is None else arr.tolist()
    return out


@contextlib.contextmanager
def _parquet(path: Path) -> Iterator[Any]:
    """The open ``pyarrow.parquet.ParquetFile``; a file that cannot be read (missing,
    truncated, not Parquet) is an :class:`~descend.errors.InputError` naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as f:
            yield f
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"cannot read the history {path}: {e}") from None


def _read_table(path: Path, names: Iterable[str] | None) -> Any:
    """The columns ``names`` that the file has (all when None), as a pyarrow table."""
    with _parquet(path) as f:
        have = f.schema_arrow.names
        return f.read(columns=None if names is None else
                      [n for n in dict.fromkeys(names) if n in have])


def read_history(folder: str | os.PathLike[str],
                 names: Iterable[str] | None = None) -> dict[str, list[Any]]:
    """The history of the run folder ``folder`` as lists by column (every column, or those in
    ``names`` that exist)."""
    path = history_file(folder)
    if path.suffix == ".csv":
        cols = _read_csv(path)
        return cols if names is None else {k: cols[k] for k in names if k in cols}
    table = _read_table(path, names)
    return {name: _to_list(table.column(name)) for name in table.column_names}


def read_columns(folder: str | os.PathLike[str],
                 names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Columns of the history of ``folder`` as numpy arrays, reading only those asked (every
    column when ``names`` is None; names missing from the history are left out). Numbers come
    back as int64 or float64 (a missing value as nan), anything else as an object array."""
    path = history_file(folder)
    if path.suffix == ".csv":
        return {k: _numeric(v) for k, v in read_history(folder, names).items()}
    table = _read_table(path, names)
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table.column(name)
        arr = _to_numpy(col)
        out[name] = _numeric(col.to_pylist()) if arr is None else arr
    return out


def _numeric(values: Sequence[Any]) -> np.ndarray:
    """``values`` as int64/float64 when all are numbers (None or text as nan when some are),
    else as an object array."""
    nums = [isinstance(v, (int, float)) and not isinstance(v, bool) for v in values]
    if all(nums):
        arr = np.asarray(values)
        return arr if arr.size else np.empty(0, np.float64)
    if any(nums):
        return np.array([float(v) if ok else math.nan for v, ok in zip(values, nums)])
    return np.array(values, dtype=object)


# ---------------------------------------------------------------------------- thinning


def thin(n: int, most: int, columns: Iterable[np.ndarray] = (),
         keep: Iterable[int] = ()) -> np.ndarray:
    """Indices (sorted, distinct) of ``min(n, most)`` of ``n`` rows for a chart: the first and
    the last row, the rows in ``keep`` (e.g. where the run stopped), the minimum and the
    maximum (over finite values) of each numeric array in ``columns``, and as many other rows
    as are left, spread evenly over the rest. All ``n`` rows when ``n <= most``."""
    if n <= most:
        return np.arange(n)
    special = {0, n - 1, *(int(k) % n for k in keep if -n <= int(k) < n)}
    for col in columns:
        if col.dtype.kind not in "iuf" or len(col) != n:
            continue
        ok = np.isfinite(col) if col.dtype.kind == "f" else np.ones(n, bool)
        if ok.any():
            special.add(int(np.argmin(np.where(ok, col, np.inf))))
            special.add(int(np.argmax(np.where(ok, col, -np.inf))))
    kept = np.asarray(sorted(special), np.int64)
    spread = most - len(kept)
    if spread <= 0:
        return kept
    rest = np.setdiff1d(np.arange(n), kept)  # len(rest) >= spread: the picks are distinct
    picks = rest[np.rint(np.linspace(0, len(rest) - 1, spread)).astype(np.int64)]
    return np.union1d(kept, picks)


def thinned(columns: Mapping[str, np.ndarray], most: int, draw: Sequence[str],
            keep: Iterable[int] = ()) -> dict[str, list[Any]]:
    """``columns`` cut to the rows :func:`thin` picks (minima and maxima of the ``draw``
    columns kept), as lists."""
    n = len(next(iter(columns.values()), ()))
    idx = thin(n, most, [columns[c] for c in draw if c in columns], keep)
    return {k: v[idx].tolist() for k, v in columns.items()}
