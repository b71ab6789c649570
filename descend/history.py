"""What a run leaves behind row by row: :class:`History` (one row per iteration).

Row 0 is the starting point; row ``k`` is the point after ``k`` updates, so a run of ``nit``
iterations has ``nit + 1`` rows and ``history.loss[-1] == result.loss`` unless the run ended on a
non-finite loss (then the last row holds that loss and ``result`` the last finite point).

The columns are kept compact, whatever the length of the run: each :class:`Column` is a typed
numpy buffer (8 bytes a value, grown by doubling) plus a short tail of the values appended since
the last flush. Appending a row is six list appends; every :data:`CHUNK` rows the tails are
moved into the buffers in one conversion each. A million rows take 48 MB, not the ~200 MB of
Python lists of floats. A run record stores the same columns as Parquet
(:mod:`descend.histfile`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .errors import InputError

if TYPE_CHECKING:
    import pandas

__all__ = ["CHUNK", "Column", "History"]

#: Rows appended as Python values before they are moved into the column buffers in one step.
CHUNK = 4096


class Column(Sequence[Any]):
    """One history column: read like a list, stored as a typed numpy array.

    ``c[k]`` is a Python number, ``c[a:b]`` a list, ``len(c)``, iteration, ``in``, ``index``
    and ``count`` work as on a list, and ``c == [...]`` compares the values with a list (or
    another column). ``np.asarray(c)`` (and ``numpy.testing``, ``pytest.approx``) get a new
    array; :meth:`numpy` is a read-only view without a copy and :meth:`tolist` a list.

    The values are int64 while every value is a whole number (``iteration``, ``nfev``, an
    ``epoch`` column) and float64 from the first value that is not (a column of ints that
    meets a nan or a float turns into float64, exactly as a list would hold both).

    A column is written only through its :class:`History` (``History.append``/``extend``),
    which keeps the columns the same length.
    """

    __slots__ = ("_buf", "_n", "_tail")
    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __init__(self, values: Any = (), *, floats: bool = False) -> None:
        floats = floats or (isinstance(values, np.ndarray) and values.dtype.kind == "f")
        self._buf: np.ndarray = np.empty(0, np.float64 if floats else np.int64)
        self._n = 0
        self._tail: list[Any] = []
        if len(values):
            self._add_many(values)

    # -------------------------------------------------------------------- writing

    def _add(self, value: Any) -> None:
        """Add one value at the end."""
        tail = self._tail
        tail.append(value)
        if len(tail) >= CHUNK:
            self._flush()

    def _add_many(self, values: Any) -> None:
        """Add many values at the end (a sequence, a numpy array or a CPU or GPU tensor)."""
        if not len(values):
            return
        self._flush()
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        elif not isinstance(values, np.ndarray):
            values = list(values)
        self._put(self._convert(values))

    def _convert(self, values: Any) -> np.ndarray:
        """``values`` as an int64 or float64 array (float64 when this column already is)."""
        if self._buf.dtype == np.float64:
            if isinstance(values, np.ndarray):
                return values.astype(np.float64, copy=False)
            return np.fromiter(values, np.float64, len(values))
        arr = np.asarray(values)
        if arr.dtype.kind in "biu":
            return arr.astype(np.int64, copy=False)
        if arr.dtype.kind == "f":
            return arr.astype(np.float64, copy=False)
        # None, strings or objects: the error names what could not be converted
        return np.fromiter(values, np.float64, len(values))

    def _put(self, arr: np.ndarray) -> None:
        """Write ``arr`` after the ``_n`` values in the buffer (grown by doubling; int64 turns
        into float64 when ``arr`` holds floats)."""
        if arr.ndim != 1:
            raise InputError(f"a history column takes one value per row, got an array of shape "
                             f"{tuple(arr.shape)}")
        buf, n = self._buf, self._n
        if arr.dtype == np.float64 and buf.dtype != np.float64:
            buf = buf.astype(np.float64)
        end = n + len(arr)
        if end > len(buf):
            grown = np.empty(max(end, 2 * len(buf), CHUNK), buf.dtype)
            grown[:n] = buf[:n]
            buf = grown
        buf[n:end] = arr
        self._buf, self._n = buf, end

    def _flush(self) -> None:
        """Move the tail of Python values into the buffer."""
        tail = self._tail
        if tail:
            self._put(self._convert(tail))
            tail.clear()

    # -------------------------------------------------------------------- reading

    def numpy(self) -> np.ndarray:
        """The values as a read-only numpy array (a view, no copy: valid until the next
        append)."""
        self._flush()
        view = self._buf[:self._n]
        view.flags.writeable = False
        return view

    def tolist(self) -> list[Any]:
        """The values as a list of Python numbers (nan as ``math.nan``)."""
        return _pylist(self.numpy())

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            return self.numpy() if dtype is None else self.numpy().astype(dtype, copy=False)
        return np.array(self.numpy(), dtype=dtype)

    def __len__(self) -> int:
        return self._n + len(self._tail)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return _pylist(self.numpy()[i])
        v = self.numpy()[i].item()
        return math.nan if v != v else v

    def __iter__(self) -> Iterator[Any]:
        return iter(self.tolist())

    def __reversed__(self) -> Iterator[Any]:
        return reversed(self.tolist())

    def __contains__(self, value: object) -> bool:
        return value in self.tolist()

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        """The first position of ``value`` (as ``list.index``)."""
        return self.tolist().index(value, start, len(self) if stop is None else stop)

    def count(self, value: Any) -> int:
        """How many values equal ``value`` (as ``list.count``)."""
        return self.tolist().count(value)

    def __eq__(self, other: object) -> Any:
        if isinstance(other, Column):
            other = other.tolist()
        return self.tolist() == other

    def __ne__(self, other: object) -> Any:
        if isinstance(other, Column):
            other = other.tolist()
        return self.tolist() != other

    def __add__(self, other: Any) -> list[Any]:
        return self.tolist() + list(other)

    def __repr__(self) -> str:
        return repr(self.tolist())

    def __reduce__(self) -> tuple[Any, ...]:
        # pickles as its values, not its spare capacity
        arr = self.numpy()
        return (Column, (arr.copy(),), None)

    def __copy__(self) -> Column:
        return Column(self.numpy().copy())

    def __deepcopy__(self, memo: Any) -> Column:
        return self.__copy__()


def _pylist(arr: np.ndarray) -> list[Any]:
    """``arr.tolist()`` with every nan the one ``math.nan`` object, as the lists of the loop
    held it: rows compare equal (``(0, nan) == (0, nan)``) the way they did."""
    out: list[Any] = arr.tolist()
    if arr.dtype.kind == "f":
        for i in np.flatnonzero(np.isnan(arr)).tolist():
            out[i] = math.nan
    return out


def _column(values: Any, name: str) -> Column:
    if isinstance(values, Column):
        return values
    return Column(values, floats=name in History.FLOAT_COLUMNS)


class History:
    """Columnar per-iteration record. Every column is a :class:`Column` (read like a list) of
    the same length.

    Columns:
        iteration: 0 for the start, then 1, 2, ...
        loss: ``f(x_k)``.
        grad_norm: Euclidean norm of ``grad f(x_k)`` over all tensors.
        lr: the step size that led to ``x_k`` (nan on row 0).
        time: seconds since the run started, when row ``k`` was recorded.
        nfev: objective evaluations spent so far (line searches count theirs here).
    Extra columns (``extra``, a dict of columns by name) may be added by step-size strategies
    or ``fit``, one value per row (nan on the rows before a column first appears).

    Args:
        extra: names of extra columns present from the start (empty until rows come).
    """

    COLUMNS = ("iteration", "loss", "grad_norm", "lr", "time", "nfev")
    #: The fixed columns stored as float64 from the start (the others start as int64).
    FLOAT_COLUMNS = ("loss", "grad_norm", "lr", "time")

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.iteration = Column()
        self.loss = Column(floats=True)
        self.grad_norm = Column(floats=True)
        self.lr = Column(floats=True)
        self.time = Column(floats=True)
        self.nfev = Column()
        self._extra: dict[str, Column] = {name: Column() for name in extra}
        self._bind()

    def _bind(self) -> None:
        # the tails' appends, fetched once: append() is six list appends
        self._appends = tuple(getattr(self, c)._tail.append for c in self.COLUMNS)

    @property
    def extra(self) -> Mapping[str, Column]:
        """The extra columns by name, read-only (rows are added by :meth:`append` and
        :meth:`extend`; assigning a dict of sequences replaces the extra columns)."""
        return MappingProxyType(self._extra)

    @extra.setter
    def extra(self, columns: Mapping[str, Any]) -> None:
        self._extra = {str(k): _column(v, str(k)) for k, v in columns.items()}

    # -------------------------------------------------------------------- writing

    def append(self, iteration: int, loss: float, grad_norm: float, lr: float, time: float,
               nfev: int, **extra: float) -> None:
        """Add one row; ``extra`` gives this row's extra columns by name (a name seen for the
        first time becomes a column, nan on the rows before; a column not given gets nan)."""
        a, b, c, d, e, f = self._appends
        a(iteration)
        b(loss)
        c(grad_norm)
        d(lr)
        e(time)
        f(nfev)
        if extra or self._extra:
            self._append_extra(extra)
        if len(self.iteration._tail) >= CHUNK:
            for col in self.COLUMNS:
                getattr(self, col)._flush()

    def _append_extra(self, extra: Mapping[str, Any]) -> None:
        rows = len(self.iteration)
        cols = self._extra
        for name, v in extra.items():
            col = cols.get(name)
            if col is None:
                col = cols[name] = Column(np.full(rows - 1, math.nan))
            col._add(v)
        for col in cols.values():
            if len(col) < rows:
                col._add(math.nan)

    def extend(self, columns: Mapping[str, Any]) -> None:
        """Add a chunk of rows: ``columns`` maps every fixed column (and any extra one) to
        values of the same length (sequences, numpy arrays or tensors). Extra columns missing
        from ``columns`` get nan on these rows; a new one gets nan on the rows before.

        Raises:
            InputError: when a fixed column is missing or the lengths differ.
        """
        missing = [c for c in self.COLUMNS if c not in columns]
        if missing:
            raise InputError(f"History.extend needs every fixed column; missing {missing}")
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) > 1:
            raise InputError(f"History.extend needs columns of one length, got {lengths}")
        k, rows = lengths["iteration"], len(self)
        for c in self.COLUMNS:
            getattr(self, c)._add_many(columns[c])
        for name, values in columns.items():
            if name in self.COLUMNS:
                continue
            if name not in self._extra:
                self._extra[name] = Column(np.full(rows, math.nan))
            self._extra[name]._add_many(values)
        for col in self._extra.values():
            if len(col) < rows + k:
                col._add_many(np.full(rows + k - len(col), math.nan))

    # -------------------------------------------------------------------- reading

    def __len__(self) -> int:
        return len(self.iteration)

    @property
    def columns(self) -> dict[str, Column]:
        """All columns by name, the fixed ones first."""
        out: dict[str, Column] = {c: getattr(self, c) for c in self.COLUMNS}
        out.update(self._extra)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """All columns as read-only numpy arrays (views, no copy), the fixed ones first."""
        return {name: col.numpy() if isinstance(col, Column) else np.asarray(col)
                for name, col in self.columns.items()}

    def tensor(self, column: str) -> torch.Tensor:
        """One column as a float64 tensor."""
        return torch.tensor(np.asarray(self.columns[column], dtype=np.float64))

    def to_pandas(self) -> pandas.DataFrame:
        """The history as a ``pandas.DataFrame`` (needs pandas installed)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("History.to_pandas needs pandas: pip install pandas") from e
        return pd.DataFrame({k: np.array(v) for k, v in self.arrays().items()})

    def to_csv(self, path: str | Path) -> Path:
        """Write the history as CSV (header row, then one row per iteration, floats exact);
        return the path."""
        path = Path(path)
        cols = self.columns
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            w.writerows(zip(*(c.tolist() for c in cols.values())))
        return path

    def plot(self, columns: Sequence[str] = ("loss",), ax: Any = None) -> Any:
        """Draw ``columns`` against the iteration with matplotlib (loss and gradient norm on a
        log scale) on ``ax`` (a new figure when None); return the axes. A long history is
        thinned to a few thousand points per curve (:func:`descend.histfile.thin`). Needs
        ``pip install 'descend[plot]'``."""
        from .report import plot_history

        return plot_history(self, columns, ax)

    # -------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """The columns as plain tensors, ``{"columns": {name: 1-D int64 or float64 tensor}}``,
        for a checkpoint (``torch.save``, loadable with ``weights_only=True``)."""
        return {"columns": {k: torch.from_numpy(v.copy()) for k, v in self.arrays().items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the rows with those of :meth:`state_dict`."""
        cols = dict(state["columns"])
        fresh = History()
        fresh.extend({k: cols[k] for k in self.COLUMNS} | {
            k: v for k, v in cols.items() if k not in self.COLUMNS})
        self.__dict__.update(fresh.__dict__)
        self._bind()

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> History:
        """A history holding ``columns`` (every fixed column, plus any extra one)."""
        h = cls()
        h.extend(columns)
        return h

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_appends"]  # bound methods of the tails: rebuilt on load
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._bind()

    def __repr__(self) -> str:
        if not len(self):
            return "History(rows=0)"
        return (
            f"History(rows={len(self)}, loss {self.loss[0]:.4e} -> {self.loss[-1]:.4e}, "
            f"columns={list(self.columns)})"
        )
