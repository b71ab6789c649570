"""What a run leaves behind: :class:`History` (one row per iteration) and :class:`Result`.

Row 0 is the starting point; row ``k`` is the point after ``k`` updates, so a run of ``nit``
iterations has ``nit + 1`` rows and ``history.loss[-1] == result.loss`` unless the run ended on a
non-finite loss (then the last row holds that loss and ``result`` the last finite point).
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import pandas

    from .diagnose import Diagnosis

__all__ = ["History", "Result"]


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


@dataclass(frozen=True)
class Result:
    """The outcome of a run. Fields, one by one:

    Attributes:
        x: the final point, in the structure of ``x0`` (for an ``nn.Module``: the module, which
            holds the final parameters). After a non-finite loss: the last finite iterate.
        loss: ``f(x)``.
        best_x: the point with the lowest loss seen (a ``{name: tensor}`` dict for a module).
        best_loss: ``f(best_x)``.
        nit: number of iterations (updates of ``x``).
        nfev: number of objective evaluations (line-search trials included).
        reason: why the run stopped: a key of :data:`descend.stops.REASONS`.
        message: that reason in words, with the numbers.
        success: whether the reason counts as convergence (see :data:`descend.stops.REASONS`).
        history: the per-iteration :class:`History`.
        seconds: wall-clock time of the run.
        rule: the update rule's name.
        step: the step-size strategy, in words.
        diagnose: a zero-argument function returning the :class:`~descend.diagnose.Diagnosis`
            at the start, with the run's fixed lr and loss threshold (local estimates from
            Hessian-vector products, computed only when called); ``None`` when the result was
            not made by :func:`descend.minimize`.
    """

    x: Any
    loss: float
    best_x: Any
    best_loss: float
    nit: int
    nfev: int
    reason: str
    message: str
    success: bool
    history: History = field(repr=False)
    seconds: float
    rule: str = "gd"
    step: str = ""
    diagnose: Callable[[], Diagnosis] | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        ok = "success" if self.success else "no success"
        return (
            f"Result({ok}: {self.reason}, nit={self.nit}, loss={self.loss:.4e}, "
            f"best_loss={self.best_loss:.4e}, rule={self.rule!r}, step={self.step!r}, "
            f"seconds={self.seconds:.3g})"
        )

    def _repr_html_(self) -> str:
        """Jupyter's view: the stop reason, the numbers and a small loss curve."""
        from .report import result_html

        return result_html(self)

    @property
    def ok(self) -> bool:
        """Alias of ``success``."""
        return self.success

    def rate(self) -> float:
        """Observed linear rate: the median ratio ``loss_{k+1} / loss_k`` over the run (nan when
        there are fewer than two positive, finite losses)."""
        losses = [v for v in self.history.loss if math.isfinite(v) and v > 0]
        ratios = sorted(b / a for a, b in itertools.pairwise(losses))
        return ratios[len(ratios) // 2] if ratios else math.nan

    def explain(self) -> str:
        """Why the run stopped, the observed linear rate against the one the local quadratic
        model predicts, and which fixed step would have been faster, in plain words (print it:
        ``print(result.explain())``). The curvature figures come from :attr:`diagnose`."""
        from .diagnose import explain

        return explain(self)
