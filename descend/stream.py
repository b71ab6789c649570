"""Data larger than memory: ``fit`` on a Parquet file or folder, streamed by row groups.

The rule (:func:`wanted`): a Parquet file, a folder of Parquet files or a
``pyarrow.dataset.Dataset`` is streamed when its columns as float64 (rows x columns x 8 bytes,
read from the file metadata, nothing loaded) exceed :data:`STREAM_BYTES`, or when asked
(``stream=True``, ``--stream``); ``stream=False`` (``--no-stream``) always loads it. Everything
else, and Parquet data under the bound, takes the in-memory path.

A stream is prepared in two passes and then trained on in a third, never holding the table:

1. **The sample.** The columns, the task, the class labels, the one-hot categories and the
   checks of :class:`~descend.tables.Preprocessing` come from the first :data:`SAMPLE_ROWS`
   rows (a label or category that first appears later is refused when it is read, naming it).
2. **One streaming pass** over every row group: the means and standard deviations for
   standardisation (float64 sums of deviations from the sample's means, so the variance is
   computed without cancellation), and the row count.
3. **Training batches** (:class:`Stream`): each epoch the row groups are put in a seeded random
   order and rank ``r`` of ``W`` takes groups ``r, r + W, ...`` of it; its groups are read into
   a bounded buffer (at least :data:`BUFFER_ROWS` rows: whole row groups, so memory is bounded
   by about ``BUFFER_ROWS`` + one row group), shuffled there, and served as mini-batches; the
   rows left over go into the next buffer. The epoch has ``ceil(rows / batch)`` global batches,
   as in memory; a rank that runs out of its groups starts its next epoch's share.

Peak memory is the buffer, the model and pyarrow's read of one row group, whatever the file's
size; the final training scores of a stream are its loss only (the other metrics would keep
every prediction).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from .data import InMemory, Prepared, default_l2, default_loss
from .errors import InputError, InputTypeError
from .tables import PARQUET_SUFFIXES, Preprocessing, read_table, to_table
from .tasks import check_task, choose_task

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["BUFFER_ROWS", "SAMPLE_ROWS", "STREAM_BYTES", "Stream", "loaded", "prepare_stream",
           "wanted"]

#: Parquet data whose columns as float64 exceed this many bytes is streamed (2 GiB).
STREAM_BYTES = 2**31
#: Rows read first, for the columns, task, classes and categories.
SAMPLE_ROWS = 100_000
#: Rows a training buffer holds at least (whole row groups), shuffled together.
BUFFER_ROWS = 262_144


def _dataset(data: Any) -> Any:
    """``data`` as a ``pyarrow.dataset.Dataset`` when it is Parquet (a file, a folder, a
    dataset), else None."""
    import pyarrow.dataset as ds

    if isinstance(data, ds.Dataset):
        return data
    if not isinstance(data, (str, Path)):
        return None
    p = Path(data)
    if p.is_dir() and not any(f.suffix.lower() in PARQUET_SUFFIXES for f in p.rglob("*")):
        return None  # a folder without Parquet files is no dataset (the reader says so)
    if p.is_dir() or (p.is_file() and p.suffix.lower() in PARQUET_SUFFIXES):
        try:
            return ds.dataset(p, format="parquet")
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"cannot read {p.name} as Parquet: {first}") from None
    return None


def wanted(data: Any, stream: bool | None) -> bool:
    """Whether ``fit`` streams ``data``: ``stream`` when given (True needs Parquet), else
    whether it is Parquet holding more than :data:`STREAM_BYTES` as float64.

    Raises:
        InputError: ``stream=True`` for data that is not Parquet.
    """
    if stream is False or not (stream or isinstance(data, (str, Path))
                               or type(data).__module__.startswith("pyarrow")):
        return False
    try:
        import pyarrow.dataset  # noqa: F401
    except ImportError:
        if stream:
            raise InputError("streaming needs pyarrow: pip install pyarrow") from None
        return False
    d = _dataset(data)
    if d is None:
        if stream:
            raise InputError("stream=True (--stream) needs a Parquet file, a folder of Parquet "
                             f"files or a pyarrow dataset, got {_name(data)}")
        return False
    if stream:
        return True
    return d.count_rows() * len(d.schema.names) * 8 > STREAM_BYTES


def loaded(data: Any) -> Any:
    """``data`` for the in-memory path: a Parquet folder or a ``pyarrow.dataset.Dataset``
    read into a table; anything else as it is."""
    if not ((isinstance(data, (str, Path)) and Path(data).is_dir())
            or type(data).__module__.startswith("pyarrow")):
        return data
    d = _dataset(data)
    return d.to_table() if d is not None else data


def _name(data: Any) -> str:
    return Path(data).name if isinstance(data, (str, Path)) else type(data).__name__


def _groups(dataset: Any) -> list[tuple[Any, int]]:
    """Every row group of ``dataset`` as ``(fragment, rows)``, in file order."""
    out = []
    for frag in dataset.get_fragments():
        for g in frag.split_by_row_group():
            g.ensure_complete_metadata()
            rows = sum(rg.num_rows for rg in g.row_groups)
            if rows:
                out.append((g, rows))
    return out


class Stream:
    """Mini-batches streamed from row groups: this rank's share, through a bounded shuffled
    buffer (see the module docstring).

    Attributes:
        n: rows in the dataset (all ranks).
        batch_size: rows of a global batch; this rank's batches hold :attr:`local_batch`.
        batches_per_epoch: ``ceil(n / batch_size)``.
        weight: ``c_r = local_batch * world / batch_size`` (see :mod:`descend.distributed`).
        sharded: True: ``fit`` does not split it further.
        eval_metrics: the metrics of the final scores: none (the loss only; constant memory).
    """

    sharded: ClassVar[bool] = True
    eval_metrics: ClassVar[tuple[Any, ...]] = ()

    def __init__(self, groups: list[tuple[Any, int]], convert: Any, batch_size: int, *,
                 shuffle: bool = True, seed: int = 0, rank: int = 0, world: int = 1,
                 buffer_rows: int = BUFFER_ROWS) -> None:
        self.groups = groups
        self.convert = convert
        self.n = sum(r for _, r in groups)
        self.batch_size = min(batch_size, self.n)
        self.batches_per_epoch = math.ceil(self.n / self.batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world = rank, world
        self.local_batch = max(1, self.batch_size // world + (rank < self.batch_size % world))
        self.weight = self.local_batch * world / self.batch_size
        self.buffer_rows = max(buffer_rows, self.local_batch)
        self.generator = torch.Generator().manual_seed(seed + 7919 * rank)
        self.epoch = 0
        self.next_group = 0
        self._it: Iterator[tuple[Tensor, Tensor]] | None = None

    @property
    def describe(self) -> str:
        """The batches in words, for ``result.method``."""
        return (f"batch_size={self.batch_size} streamed from {len(self.groups)} row groups "
                f"({self.n} rows; a shuffled buffer of >= {self.buffer_rows} rows)")

    def _order(self, epoch: int) -> list[int]:
        """This rank's row groups in epoch ``epoch``: its share of a seeded order."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(len(self.groups), generator=g).tolist()
        else:
            order = list(range(len(self.groups)))
        mine = order[self.rank::self.world]
        return mine or order[:1]  # more ranks than groups: share one

    def _batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        X: Tensor | None = None
        Y: Tensor | None = None
        b = self.local_batch
        while True:
            order = self._order(self.epoch)
            while self.next_group < len(order):
                xs = [X] if X is not None else []
                ys = [Y] if Y is not None else []
                rows = len(X) if X is not None else 0
                while rows < self.buffer_rows and self.next_group < len(order):
                    x, y = self.convert(self.groups[order[self.next_group]][0])
                    self.next_group += 1
                    xs.append(x)
                    ys.append(y)
                    rows += len(x)
                X, Y = torch.cat(xs), torch.cat(ys)
                if self.shuffle:
                    perm = torch.randperm(len(X), generator=self.generator)
                    X, Y = X[perm], Y[perm]
                full = len(X) // b * b
                for i in range(0, full, b):
                    yield X[i:i + b], Y[i:i + b]
                X, Y = X[full:], Y[full:]  # carried into the next buffer
            self.epoch += 1
            self.next_group = 0

    def batch(self, k: int) -> tuple[Tensor, Tensor]:
        """This rank's next mini-batch (batch ``k`` of the run: drawn in order)."""
        if self._it is None:
            self._it = self._batches()
        return next(self._it)

    def sizes(self) -> list[int]:
        """Every batch holds ``batch_size`` rows: equal weights."""
        return [1] * self.batches_per_epoch

    def chunks(self, size: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Every row group in file order (for evaluation; all ranks see all rows)."""
        for frag, _ in self.groups:
            yield self.convert(frag)

    def state_dict(self) -> dict[str, Any]:
        """The data position: the epoch, this rank's next row group in the epoch's order
        (:meth:`_order`), the buffer's shuffling generator and the share (``rank`` of
        ``world``). Resuming from it re-reads the buffer's group; rows of a partly served
        buffer are served again."""
        return {"epoch": self.epoch, "next_group": self.next_group,
                "generator": self.generator.get_state(), "rank": self.rank,
                "world": self.world}

    def __repr__(self) -> str:
        return (f"Stream(n={self.n}, groups={len(self.groups)}, batch_size={self.batch_size}, "
                f"rank={self.rank}, world={self.world})")


def _statistics(groups: list[tuple[Any, int]], prep: Preprocessing, columns: list[str],
                name: str, drop_missing: bool, sample: Tensor,
                ysample: Tensor | None) -> None:
    """One pass over every row group: set ``prep``'s scaling (as
    :meth:`~descend.tables.Preprocessing.fit_scaling` does on a table) and fill values."""
    shift = sample.mean(0)
    yshift = ysample.mean(0) if ysample is not None else None
    s1 = torch.zeros_like(shift)
    s2 = torch.zeros_like(shift)
    t1 = torch.zeros_like(yshift) if yshift is not None else None
    t2 = torch.zeros_like(yshift) if yshift is not None else None
    n = 0
    for frag, _ in groups:
        table = _read(frag, columns, drop_missing)
        dx = prep.features_of(table, name, torch.float64) - shift
        s1 += dx.sum(0)
        s2 += (dx * dx).sum(0)
        if t1 is not None and t2 is not None and yshift is not None:
            dy = prep.targets_of(table, name, torch.float64) - yshift
            t1 += dy.sum(0)
            t2 += (dy * dy).sum(0)
        n += len(dx)
    mean = shift + s1 / n
    std = (s2 / n - (s1 / n) ** 2).clamp_min(0).sqrt()
    std[std == 0] = 1.0
    onehot = torch.tensor(prep._one_hot_mask(), dtype=torch.bool)
    if len(onehot) == len(mean):
        mean[onehot] = 0.0
        std[onehot] = 1.0
    numeric = [i for i, m in enumerate(prep._one_hot_mask()) if not m]
    prep.fill = dict(zip([c for c in prep.features if c not in prep.categories],
                         mean[numeric].tolist()))
    prep.x_mean, prep.x_std = mean.tolist(), std.tolist()
    if t1 is not None and t2 is not None and yshift is not None:
        ym = yshift + t1 / n
        ys = (t2 / n - (t1 / n) ** 2).clamp_min(0).sqrt()
        ys[ys == 0] = 1.0
        prep.y_mean, prep.y_std = ym.tolist(), ys.tolist()


def _sample(groups: list[tuple[Any, int]]) -> pa.Table:
    """The first :data:`SAMPLE_ROWS` rows, read group by group (``Dataset.head`` reads
    ahead several groups at once)."""
    import pyarrow as pa

    parts, rows = [], 0
    for frag, n in groups:
        parts.append(frag.to_table())
        rows += n
        if rows >= SAMPLE_ROWS:
            break
    return pa.concat_tables(parts).slice(0, SAMPLE_ROWS)


def _read(frag: Any, columns: list[str], drop_missing: bool) -> pa.Table:
    table = frag.to_table(columns=columns)
    return table.drop_null() if drop_missing else table


def prepare_stream(model: Any, data: Any, val: Any, *, target: Any, features: Any, loss: Any,
                   batch_size: int, standardize: bool | None, one_hot: bool,
                   drop_missing: bool, drop_constant: bool, shuffle: bool, seed: int,
                   dtype: torch.dtype, device: torch.device, task: str | None = None,
                   l2: float | None = None, encoding: str | None = None, rank: int = 0,
                   world: int = 1) -> Prepared:
    """:func:`descend.data.prepare` for Parquet data streamed by row groups (see the module
    docstring); ``rank`` of ``world`` takes its share of the row groups.

    Raises:
        InputError: as ``prepare``, or a validation fraction (pass a validation file), or the
            full batch (streaming trains on mini-batches).
    """
    check_task(task, model, loss)
    dataset = _dataset(data)
    if dataset is None:
        raise InputTypeError(f"streaming needs Parquet data, got {_name(data)}")
    name = _name(data) if isinstance(data, (str, Path)) else "the dataset"
    if target is None:
        raise InputError("give target=COLUMN(S) when data is a table or a file")
    if isinstance(val, (int, float)) and not isinstance(val, bool):
        if val:
            raise InputError("val as a fraction needs in-memory data; a streamed dataset "
                             "takes a separate validation file (val=PATH, --val-file)")
        val = None
    if batch_size >= 2**62:
        raise InputError("a streamed dataset trains on mini-batches, not the full batch; pass "
                         "batch_size=N (--batch-size N), or stream=False to load it")
    targets = [target] if isinstance(target, str) else list(target)
    groups = _groups(dataset)
    if not groups:
        raise InputError(f"{name} has no data rows")
    sample = _sample(groups)
    task_name = choose_task(sample, name, targets, model=model, loss=loss, task=task)
    classifier = task_name == "classification"
    prep, sample = Preprocessing.fit(sample, name, targets, features, task=task_name,
                                     one_hot=one_hot, drop_missing=drop_missing,
                                     drop_constant=drop_constant)
    prep.notes.append(f"streamed {dataset.count_rows()} rows from {len(groups)} row groups; "
                      f"columns, task and classes read from the first {SAMPLE_ROWS} rows")
    columns = prep.features + prep.targets
    loss_name = default_loss(model, loss, len(prep.classes), task_name)
    if standardize is not False:
        Xs = prep.features_of(sample, name, torch.float64)
        Ys = None if classifier else prep.targets_of(sample, name, torch.float64)
        _statistics(groups, prep, columns, name, drop_missing, Xs, Ys)

    def convert(frag: Any) -> tuple[Tensor, Tensor]:
        table = _read(frag, columns, drop_missing)
        X = prep.features_of(table, name, torch.float64).to(dtype)
        Y = prep.targets_of(table, name, torch.float64)
        if loss_name == "bce":
            Y = Y.to(dtype)[:, None]
        elif not classifier:
            Y = Y.to(dtype)
        return X.to(device), Y.to(device)

    train = Stream(groups, convert, batch_size, shuffle=shuffle, seed=seed, rank=rank,
                   world=world)
    vsrc = None
    if val is not None:
        vtable = read_table(val, encoding=encoding) if isinstance(val, (str, Path)) \
            else to_table(val)
        Xv = prep.features_of(vtable, "the validation data").to(dtype)
        Yv = prep.targets_of(vtable, "the validation data")
        Yv = Yv.to(dtype)[:, None] if loss_name == "bce" else (Yv if classifier
                                                                 else Yv.to(dtype))
        vsrc = InMemory(Xv.to(device), Yv.to(device), batch_size, shuffle=False)
    n_out = 1 if loss_name == "bce" else prep.n_outputs
    d = Prepared(train, vsrc, prep, len(prep.encoded_features), n_out,  # type: ignore[arg-type]
                 loss_name)
    d.l2 = default_l2(l2, model, loss_name, train.n)
    prep.l2 = d.l2
    return d
