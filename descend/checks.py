"""Checks of a table's header and cells that run before any column is selected or encoded:
repeated column names, a typo in a numeric column, values too large to square.

Each raises an :class:`~descend.errors.InputError` in one line naming the column (and the row)
and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .tables import _kind, _repeated, check_header

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["HUGE", "check_huge", "check_names", "mostly_numbers"]


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def check_names(table: pa.Table, name: str, target: Sequence[str],
                features: Sequence[str] | None) -> None:
    """Raise when the header of ``table`` names a column twice, or ``target``/``features``
    name one twice (before anything selects columns by name).

    Raises:
        InputError: naming the repeated column and the fix.
    """
    check_header(table, name)
    dup = _repeated(target)
    if dup is not None:
        raise InputError(f"target column {dup!r} is named {list(target).count(dup)} times in "
                         f"--target (target=); name each column once")
    dup = _repeated(list(features or ()))
    if dup is not None:
        raise InputError(f"feature column {dup!r} is named {list(features or ()).count(dup)} "
                         f"times in --features (features=); name each column once")


def mostly_numbers(table: pa.Table, name: str, columns: Sequence[str], what: str) -> None:
    """Raise naming the column and row when a text column holds numbers in all but a few
    cells: a typo in a numeric column (e.g. ``0.3o``), not categories to one-hot encode."""
    import pyarrow.compute as pc

    for c in columns:
        col = table.column(c)
        if _kind(col.type) != "text":
            continue
        values = col.to_pylist()
        bad = []
        for i, v in enumerate(values):
            if v is None:
                continue
            try:
                float(str(v))
            except ValueError:
                bad.append(i)
                if len(bad) > 3:
                    break
        cells = len(values) - int(pc.sum(pc.is_null(col)).as_py() or 0)
        if bad and len(bad) <= 3 and cells - len(bad) >= max(2, cells // 2):
            i = bad[0]
            raise InputError(
                f"{what} column {c!r} of {name} holds numbers except {values[i]!r} in data row "
                f"{i + 1} (line {i + 2} of a CSV file); correct that cell (or remove the row)")


#: Largest magnitude a numeric cell may hold: past it, squares (variances, the squared error)
#: overflow float64.
HUGE = 1e150


def check_huge(table: pa.Table, name: str, columns: Sequence[str]) -> None:
    """Raise when a numeric column holds a value beyond :data:`HUGE` in magnitude, naming the
    column, the row and the fix (the losses and the scaling would overflow to inf or NaN)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    for c in columns:
        col = table.column(c)
        if _kind(col.type) != "number":
            continue
        a = np.abs(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False))
        a[~np.isfinite(a)] = 0.0  # NaN and inf have their own messages
        if a.size and a.max() > HUGE:
            i = int(a.argmax())
            raise InputError(
                f"column {c!r} of {name} holds {_fmt(col[i].as_py())} (data row {i + 1}); past "
                f"{HUGE:g} in magnitude squares overflow float64: divide the column by a power "
                "of ten first")
