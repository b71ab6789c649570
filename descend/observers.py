"""Observers: read-only watchers of a run. Each is called as ``observer(state)`` after every
record (row 0, the start, included) and, if it has one, ``observer.close()`` when the run ends.
Observers display; they never change a run. Any plain callable is an observer too.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any, TextIO

from .errors import InputError
from .history import History
from .i18n import N_

if TYPE_CHECKING:
    from torch import Tensor

    from .state import LoopState

__all__ = ["EpochProgress", "Epochs", "Printer", "Progress", "Snapshots"]


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


class Snapshots:
    """Copies of the parameters along a run, for the report's heatmap: the iterates ``x_k``
    (flattened, float32, on the CPU) when the parameters have at most ``max_elements`` elements;
    nothing otherwise. To bound memory on long runs it keeps every ``stride``-th iterate and
    doubles ``stride`` (dropping every other kept frame) whenever more than ``max_frames`` are
    held; the start and the latest iterate are always kept.

    Args:
        max_elements: record only parameters of at most this many elements in all.
        max_frames: the most frames held at once.
    """

    def __init__(self, max_elements: int = 4096, max_frames: int = 256) -> None:
        if max_frames < 2:
            raise InputError(f"max_frames must be >= 2, got {max_frames!r}")
        self.max_elements = max_elements
        self.max_frames = max_frames
        self.stride = 1
        self.iterations: list[int] = []
        self.frames: list[Any] = []
        self.shapes: list[list[int]] = []
        self.skipped = False
        # the latest iterate: (iteration, its tensors, their version counters) while the
        # loop replaces the tensors at each update; (iteration, a copy, None) once they are
        # seen changing in place (a torch.optim rule, an in-place update)
        self._last: tuple[int, Any, list[int] | None] | None = None
        self._eager = False

    @staticmethod
    def _flat(values: Sequence[Tensor]) -> Tensor:
        import torch

        return torch.cat([v.detach().reshape(-1).to("cpu", torch.float32) for v in values])

    @staticmethod
    def _versions(values: Sequence[Tensor]) -> list[int]:
        return [v._version for v in values]

    def __call__(self, s: LoopState) -> None:
        if self.skipped:
            return
        if not self.shapes:
            n = sum(v.numel() for v in s.values)
            if n > self.max_elements:
                self.skipped = True
                return
            self.shapes = [list(v.shape) for v in s.values]
        k, values = s.iteration, s.values
        last = self._last
        if (not self._eager and last is not None and last[2] is not None
                and self._versions(last[1]) != last[2]):
            self._eager = True  # the last iterate's tensors changed in place: copy from now on
        # the latest iterate is kept by reference (no copy per iteration) unless it may change
        self._last = (k, self._flat(values), None) if self._eager else \
            (k, values, self._versions(values))
        if k % self.stride:
            return
        self.iterations.append(k)
        self.frames.append(self._last[1] if self._eager else self._flat(values))
        if len(self.frames) > self.max_frames:
            self.stride *= 2
            keep = [i for i, it in enumerate(self.iterations) if it % self.stride == 0]
            self.iterations = [self.iterations[i] for i in keep]
            self.frames = [self.frames[i] for i in keep]

    def state_dict(self) -> dict[str, Any]:
        """The frames so far, for a checkpoint."""
        last = None
        if self._last is not None:  # the latest iterate as a copy
            k, v, versions = self._last
            last = [k, v if versions is None else self._flat(v)]
        return {"stride": self.stride, "iterations": self.iterations, "frames": self.frames,
                "shapes": self.shapes, "skipped": self.skipped, "last": last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave."""
        self.stride, self.skipped = state["stride"], state["skipped"]
        self.iterations, self.frames = list(state["iterations"]), list(state["frames"])
        self.shapes = state["shapes"]
        last = state["last"]
        self._last = (last[0], last[1], None) if last is not None else None

    def data(self, target: Any = None) -> dict[str, Any] | None:
        """The frames as plain data (None when nothing was recorded): ``iteration`` (list of
        ints), ``values`` (float32 tensor, one row per frame), ``shapes`` (of the parameter
        tensors) and ``target`` (flattened float32, or None)."""
        import torch

        if self.skipped or not self.frames or self._last is None:
            return None
        its, frames = list(self.iterations), list(self.frames)
        k, last, versions = self._last
        if k != its[-1] and versions is None:
            its.append(k)
            frames.append(last)
        elif k != its[-1] and versions == self._versions(last):  # unchanged since it was seen
            its.append(k)
            frames.append(self._flat(last))
        tgt = None
        if target is not None:
            tgt = torch.as_tensor(target).detach().reshape(-1).to("cpu", torch.float32).clone()
            if tgt.numel() != frames[0].numel():
                raise InputError(f"target has {tgt.numel()} elements but the parameters have "
                                 f"{frames[0].numel()}")
        return {"iteration": its, "values": torch.stack(frames), "shapes": self.shapes,
                "target": tgt}

    def __repr__(self) -> str:
        return (f"Snapshots(max_elements={self.max_elements}, max_frames={self.max_frames}, "
                f"frames={len(self.frames)})")


# ---------------------------------------------------------------------------- fit's epochs


class Epochs:
    """Observer of a ``fit`` run: at each epoch's end (iteration ``e * batches_per_epoch``) it
    records one row and keeps the best weights. Reading only: it never changes the run.

    Columns of :attr:`history` (a :class:`~descend.history.History`): ``iteration``, ``loss``
    (the mean training loss over the epoch's batches, weighted by batch rows), ``grad_norm`` and
    ``lr`` at the epoch's end, ``time``, ``nfev``; extra: ``epoch``, ``val_loss`` and
    ``val_<metric>`` per metric (nan without validation data).

    Attributes:
        count: epochs finished.
        monitor: ``"validation loss"`` or ``"training loss"``: what ``best`` is the best of.
        monitored: the monitored loss of the last finished epoch.
        train_loss: the mean training loss of the last finished epoch.
        val_loss: the validation loss of the last finished epoch.
        best, best_epoch, best_values: the lowest monitored loss, its epoch, its weights.
    """

    def __init__(self, batches_per_epoch: int, sizes: Sequence[int],
                 validate: Callable[[], dict[str, float]] | None,
                 metrics: Sequence[str]) -> None:
        self.batches_per_epoch = batches_per_epoch
        self.sizes = list(sizes)
        self.validate = validate
        self.metric_names = [f"val_{m}" for m in metrics] if validate else []
        self.history = History(extra=["epoch", "val_loss", *self.metric_names])
        self.count = 0
        # words for the early-stopping message (translated where it is filled in)
        self.monitor = N_("validation loss") if validate else N_("training loss")
        self.monitored = math.nan
        self.train_loss = math.nan
        self.val_loss = math.nan
        self.best = math.inf
        self.best_epoch = 0
        self.best_values: list[Tensor] = []

    def __call__(self, s: LoopState) -> None:
        k, nb = s.iteration, self.batches_per_epoch
        if k == 0 or k % nb:
            return
        losses = s.history.loss[k - nb:k]
        train = sum(a * w for a, w in zip(losses, self.sizes)) / sum(self.sizes)
        scores = self.validate() if self.validate is not None else {}
        self.count = k // nb
        self.train_loss = train
        self.val_loss = scores.get("loss", math.nan)
        self.monitored = self.val_loss if self.validate is not None else train
        self.history.append(k, train, s.grad_norm, s.lr, s.elapsed, s.nfev, epoch=self.count,
                            val_loss=self.val_loss,
                            **{name: scores.get(name[4:], math.nan) for name in self.metric_names})
        if self.monitored < self.best:
            self.best, self.best_epoch, self.best_values = self.monitored, self.count, s.values

    def state_dict(self) -> dict[str, Any]:
        """The epochs so far (counters, best weights, the per-epoch history), for a
        checkpoint."""
        from .checkpoint import columns

        return {"count": self.count, "monitored": self.monitored,
                "train_loss": self.train_loss, "val_loss": self.val_loss, "best": self.best,
                "best_epoch": self.best_epoch, "best_values": self.best_values,
                "history": columns(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave."""
        from .checkpoint import load_columns

        for k in ("count", "monitored", "train_loss", "val_loss", "best", "best_epoch",
                  "best_values"):
            setattr(self, k, state[k])
        load_columns(self.history, state["history"])

    def __repr__(self) -> str:
        return f"Epochs(count={self.count}, best_epoch={self.best_epoch}, best={self.best:.4e})"


class EpochProgress:
    """The progress display of ``fit``: epoch, training loss, validation loss, time left.

    On a terminal a live bar (tqdm) over epochs; otherwise one line per epoch, at most one
    every ``every`` seconds, and the last epoch always.
    """

    def __init__(self, epochs: Epochs, total: int | None, every: float = 1.0,
                 stream: TextIO | None = None) -> None:
        self.epochs = epochs
        self.total = total
        self.every = every
        self.stream = stream
        self._seen = 0
        self._last = -math.inf
        self._bar: Any = None
        self._pending = ""

    def _line(self, s: LoopState) -> str:
        e = self.epochs
        total = f"/{self.total}" if self.total else ""
        val = f"  val loss {e.val_loss:.4e}" if e.validate is not None else ""
        left = ""
        if self.total and e.count < self.total:  # at most: early stopping may end sooner
            rest = s.elapsed / e.count * (self.total - e.count)
            left = f"  ~{rest:.0f} s left" if rest >= 1 else "  <1 s left"
        return (f"epoch {e.count}{total}  loss {e.history.loss[-1]:.4e}{val}  "
                f"{s.elapsed:.1f} s{left}")

    def __call__(self, s: LoopState) -> None:
        e = self.epochs
        if e.count == self._seen:
            return
        self._seen = e.count
        out = self.stream or sys.stderr
        if out.isatty():
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=self.total, file=out, unit="epoch", dynamic_ncols=True)
            self._bar.n = e.count
            post = {"loss": f"{e.history.loss[-1]:.4e}"}
            if e.validate is not None:
                post["val"] = f"{e.val_loss:.4e}"
            self._bar.set_postfix(post, refresh=False)
            self._bar.update(0)
            return
        now = perf_counter()
        line = self._line(s)
        if now - self._last >= self.every:
            self._last = now
            self._pending = ""
            print(line, file=out, flush=True)
        else:
            self._pending = line

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._pending:
            print(self._pending, file=self.stream or sys.stderr, flush=True)
            self._pending = ""
