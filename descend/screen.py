"""The rows no stopping criterion can fire on, found at once: the chunked reads' fast path.

When rows are read in chunks (``read_every``, or ``compile=True``'s compiled iterations in
:mod:`descend.chunks`), the loop asks the criteria about every row, one at a time: a few
microseconds of Python per row, more than a compiled iteration costs. :func:`quiet` tells how
many leading rows of a chunk none of the run's criteria fires on, by the criteria's own tests
written over the rows' numbers; :meth:`LoopState.read <descend.state.LoopState.read>` takes those
rows in one go (the history as one chunk) and asks row by row only from the first row where a
criterion may fire. A run with a criterion that has no screen here (one that keeps state from row
to row, such as :class:`~descend.stops.Stalled`, or a callback), or with observers (they see every
row), is read row by row as before. The result is the same either way: these screens are exact,
the same comparisons on the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from .state import Rows
from .stops import Diverged, GradNormBelow, LossBelow, MaxEvals, MaxIter, NonFinite

__all__ = ["SCREENS", "quiet"]


def _first(flags: Any) -> int:
    """The index of the first true flag (-1 when none is)."""
    for j, hit in enumerate(flags):
        if hit:
            return j
    return -1


def _nonfinite(c: NonFinite, r: Rows) -> Any:
    return (not (math.isfinite(f) and math.isfinite(g)) for f, g in zip(r.loss, r.grad_norm))


def _diverged(c: Diverged, r: Rows) -> Any:
    f0 = r.loss0
    return (math.isfinite(b) and f - b > c.factor * max(abs(b), abs(f0), f0 - b)
            for f, b in zip(r.loss, r.best))


#: The criteria with a screen: ``(criterion, rows) -> flags``, a flag per row (True: it fires
#: there), the same test as the criterion's ``__call__``; by exact type.
SCREENS: dict[type, Callable[[Any, Rows], Any]] = {
    NonFinite: _nonfinite,
    Diverged: _diverged,
    LossBelow: lambda c, r: (f <= c.threshold for f in r.loss),
    GradNormBelow: lambda c, r: (g <= c.tol for g in r.grad_norm),
    MaxIter: lambda c, r: (k >= c.n for k in r.iteration),
    MaxEvals: lambda c, r: (e >= c.n for e in r.nfev),
}


def quiet(criteria: Sequence[Any], rows: Rows) -> int:
    """How many leading rows none of ``criteria`` fires on (0 when one has no screen)."""
    q = len(rows.loss)
    for c in criteria:
        screen = SCREENS.get(type(c))
        if screen is None:
            return 0
        j = _first(screen(c, rows))
        if j >= 0:
            q = min(q, j)
        if q == 0:
            return 0
    return q
