"""What a run leaves behind row by row: :class:`History` (one row per iteration).

Row 0 is the starting point; row ``k`` is the point after ``k`` updates, so a run of ``nit``
iterations has ``nit + 1`` rows and ``history.loss[-1] == result.loss`` unless the run ended on a
non-finite loss (then the last row holds that loss and ``result`` the last finite point).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import pandas

__all__ = ["History"]


class History:
    """Columnar per-iteration record. Every column is a list of the same length.

    Columns:
        iteration: 0 for the start, then 1, 2, ...
        loss: ``f(x_k)``.
        grad_norm: Euclidean norm of ``grad f(x_k)`` over all tensors.
        lr: the step size that led to ``x_k`` (nan on row 0).
        time: seconds since the run started, when row ``k`` was recorded.
        nfev: objective evaluations spent so far (line searches count theirs here).
    Extra columns (``extra``) may be added by step-size strategies or ``fit``, one value per row.
    """

    COLUMNS = ("iteration", "loss", "grad_norm", "lr", "time", "nfev")

    def __init__(self) -> None:
        self.iteration: list[int] = []
        self.loss: list[float] = []
        self.grad_norm: list[float] = []
        self.lr: list[float] = []
        self.time: list[float] = []
        self.nfev: list[int] = []
        self.extra: dict[str, list[Any]] = {}

    def append(self, it: int, loss: float, gnorm: float, lr: float, t: float, nfev: int) -> None:
        """Add one row."""
        self.iteration.append(it)
        self.loss.append(loss)
        self.grad_norm.append(gnorm)
        self.lr.append(lr)
        self.time.append(t)
        self.nfev.append(nfev)

    def __len__(self) -> int:
        return len(self.iteration)

    @property
    def columns(self) -> dict[str, list[Any]]:
        """All columns by name, the fixed ones first."""
        out: dict[str, list[Any]] = {c: getattr(self, c) for c in self.COLUMNS}
        out.update(self.extra)
        return out

    def tensor(self, column: str) -> torch.Tensor:
        """One column as a float64 tensor."""
        return torch.tensor(self.columns[column], dtype=torch.float64)

    def to_pandas(self) -> pandas.DataFrame:
        """The history as a ``pandas.DataFrame`` (needs pandas installed)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("History.to_pandas needs pandas: pip install pandas") from e
        return pd.DataFrame(self.columns)

    def to_csv(self, path: str | Path) -> Path:
        """Write the history as CSV (header row, then one row per iteration); return the path."""
        path = Path(path)
        cols = self.columns
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            w.writerows(zip(*cols.values()))
        return path

    def plot(self, columns: Sequence[str] = ("loss",), ax: Any = None) -> Any:
        """Draw ``columns`` against the iteration with matplotlib (loss and gradient norm on a
        log scale) on ``ax`` (a new figure when None); return the axes. Needs
        ``pip install 'descend[plot]'``."""
        from .report import plot_history

        return plot_history(self, columns, ax)

    def __repr__(self) -> str:
        if not self.loss:
            return "History(rows=0)"
        return (
            f"History(rows={len(self)}, loss {self.loss[0]:.4e} -> {self.loss[-1]:.4e}, "
            f"columns={list(self.columns)})"
        )
