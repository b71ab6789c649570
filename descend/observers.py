"""Observers: read-only watchers of a run. Each is called as ``observer(state)`` after every
record (row 0, the start, included) and, if it has one, ``observer.close()`` when the run ends.
Observers display; they never change a run. Any plain callable is an observer too.
"""

from __future__ import annotations

import sys
from time import perf_counter
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .loop import LoopState

__all__ = ["Printer", "Progress"]


class Printer:
    """The notebook's printout: ``'%d-th Loss: %.4e' % (iteration, loss)`` then ``print(x, '\\n')``.

    Args:
        every: print every ``every``-th iteration.
        show_x: print the parameters after the loss line, as the notebook does.
        stream: where to print (standard output by default).
    """

    def __init__(self, every: int = 1, show_x: bool = True, stream: TextIO | None = None) -> None:
        self.every = every
        self.show_x = show_x
        self.stream = stream

    def __call__(self, s: LoopState) -> None:
        k = s.iteration
        if k == 0 or k % self.every:
            return
        out = self.stream or sys.stdout
        print("%d-th Loss: %.4e" % (k, s.loss), file=out)  # noqa: UP031 - the notebook's format
        if self.show_x:
            print(s.x, "\n", file=out)

    def __repr__(self) -> str:
        return f"Printer(every={self.every}, show_x={self.show_x})"


class Progress:
    """A progress display for long runs: a live bar (tqdm) on a terminal; when the output is not
    a terminal (a log file, CI), one plain line every ``every`` seconds and one at the end.

    Args:
        total: the iteration cap, for the bar's length (optional).
        every: seconds between lines when the output is not a terminal.
        stream: where to write (standard error by default).
    """

    def __init__(self, total: int | None = None, every: float = 5.0,
                 stream: TextIO | None = None) -> None:
        self.total = total
        self.every = every
        self.stream = stream
        self._bar: Any = None
        self._last = -1.0
        self._state: LoopState | None = None

    def _line(self, s: LoopState) -> str:
        return (f"iteration {s.iteration}  loss {s.loss:.4e}  grad norm {s.grad_norm:.3e}  "
                f"{s.elapsed:.1f} s")

    def __call__(self, s: LoopState) -> None:
        out = self.stream or sys.stderr
        self._state = s
        if out.isatty():
            if self._bar is None:
                from tqdm import tqdm  # imported only when a bar is shown

                self._bar = tqdm(total=self.total, file=out, unit="it", dynamic_ncols=True)
            self._bar.n = s.iteration
            self._bar.set_postfix(loss=f"{s.loss:.4e}", refresh=False)
            self._bar.update(0)
            return
        now = perf_counter()
        if self._last < 0 or now - self._last >= self.every:
            self._last = now
            print(self._line(s), file=out, flush=True)

    def close(self) -> None:
        """End the display: close the bar, or write the final line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._state is not None:
            print(self._line(self._state), file=self.stream or sys.stderr, flush=True)

    def __repr__(self) -> str:
        return f"Progress(total={self.total}, every={self.every})"
