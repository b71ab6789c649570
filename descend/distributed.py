"""Data-parallel ``fit`` across processes: under ``torchrun`` or ``descend fit --nproc N``.

One run, several processes (*ranks*), each holding the same model and optimiser state. Every
iteration each rank evaluates the loss on its share of the iteration's *global* batch; the
gradients are averaged by :class:`~torch.nn.parallel.DistributedDataParallel` and the loss is
all-reduced, so every rank sees the same ``(loss, grads)``, takes the same step (line-search
trials included) and asks the same stopping criteria about the same numbers: all ranks stop at
the same iteration with the same reason. Rank ``r`` of ``W`` weights its mean loss over its
``n_r`` rows of a batch of ``n`` rows by ``c_r = n_r W / n``; DDP's average of the gradients is
then

    (1/W) sum_r c_r grad mean_r = sum_r (1/n) grad sum_{i in rows_r} l_i = grad mean_batch,

the gradient of the whole batch's mean loss (an L2 penalty, weighted the same way, sums back to
itself), and the loss all-reduced as ``sum_r c_r loss_r / W`` is the batch's mean loss. So a
2-process run with global batch ``b`` takes the steps of the 1-process run with batch ``b``, up
to the order of floating-point sums.

The parts, each small:

* :class:`World`, :func:`joined`: the process group from the environment torchrun sets
  (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``): gloo on the CPU, nccl on CUDA;
  created by the first ``fit`` of the process and destroyed when the process exits, normally
  or by an error (one the caller created is left alone).
* :class:`Shard`: rank ``r``'s share of each batch of in-memory data. Global batch ``j`` is the
  batch ``j`` of the 1-process run (the same seeded permutation, drawn on every rank); rank
  ``r`` takes its positions ``r, r + W, ...`` (as ``DistributedSampler``). On the full batch a
  rank evaluates its fixed rows ``r::W``. Its :meth:`Shard.state_dict` is the data position.
* :class:`DistributedObjective`: the model's loss on the rank's share, the model in DDP.
* :func:`agree`: errors up front: one rank's bad input stops every rank with the same one-line
  error. :class:`Agreed` makes criteria that read the clock or call the user (``TimeLimit``,
  ``Callback``) decide once for all ranks.
* :func:`launch`: ``descend fit --nproc N``: N local processes through torch's own elastic
  launcher (what ``torchrun`` runs), with ``OMP_NUM_THREADS`` = cores / N.

Records, reports and ``--out`` are written by rank 0 only (:func:`is_main`).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from .data import InMemory
from .errors import InputError
from .objective import MiniBatchObjective, Params
from .stops import AllOf, AnyOf, Callback, Criterion, TimeLimit

__all__ = [
    "Agreed",
    "DistributedObjective",
    "PeerLost",
    "Shard",
    "World",
    "agree",
    "cause",
    "current",
    "depart",
    "is_main",
    "joined",
    "launch",
    "launched",
]

T = TypeVar("T")

#: How long a collective waits for a rank that stopped answering before the run fails (a rank
#: that died closes its sockets, and gloo fails at once; this bounds a hung one).
TIMEOUT = datetime.timedelta(minutes=10)


#: Set in the workers ``descend fit --nproc`` starts: the launcher reports a lost rank.
LAUNCHED_BY = "DESCEND_NPROC"


class PeerLost(RuntimeError):
    """Another rank of the job stopped (killed, crashed) while this one waited for it."""


@dataclass
class World:
    """This process's place in the job.

    Attributes:
        rank: this process's rank (0: the one that writes).
        size: the number of processes (1: no process group, a plain run).
        backend: ``"gloo"`` or ``"nccl"`` ("" for a plain run).
        owned: whether ``fit`` created the process group (destroyed at the process's exit;
            a group the caller created is left alone).
        local_rank: the rank on this machine (picks the CUDA device).
    """

    rank: int = 0
    size: int = 1
    backend: str = ""
    owned: bool = False
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """Whether more than one process takes part."""
        return self.size > 1

    @property
    def main(self) -> bool:
        """Whether this process writes records, reports and the model (rank 0)."""
        return self.rank == 0

    def device(self, dev: torch.device) -> torch.device:
        """``cuda`` without an index becomes this rank's GPU, ``cuda:LOCAL_RANK``."""
        if self.active and dev.type == "cuda" and dev.index is None:
            return torch.device("cuda", self.local_rank)
        return dev

    def same(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (a broadcast of a small picklable object)."""
        if not self.active:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any rank (an all-reduce of one number): a signal that
        reached one rank stops them all at the same iteration."""
        if not self.active:
            return flag
        import torch.distributed as dist

        t = torch.tensor([float(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def sum_(self, t: Tensor) -> Tensor:
        """``t`` summed over the ranks, in place (returned)."""
        if self.active:
            import torch.distributed as dist

            dist.all_reduce(t)
        return t


_CURRENT: list[World] = [World()]


def launched() -> bool:
    """Whether this process is one of several started by torchrun (``WORLD_SIZE`` > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def is_main() -> bool:
    """Whether this process is rank 0 (or not part of a distributed job): the one that
    writes and prints. Read from the environment torchrun sets, so it holds before and after
    the process group exists."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    except (ImportError, RuntimeError):
        pass
    return os.environ.get("RANK", "0") == "0"


def current() -> World:
    """The world of the ``fit`` call running now (a plain one outside :func:`joined`)."""
    return _CURRENT[-1]


@contextlib.contextmanager
def _session(device: Any) -> Iterator[World]:
    """The job's process group for one ``fit`` call: joined (created from the environment
    on the first call), or a plain world outside a job."""
    import torch.distributed as dist

    if not dist.is_available() or not (dist.is_initialized() or launched()):
        _CURRENT.append(World())
        try:
            yield _CURRENT[-1]
        finally:
            _CURRENT.pop()
        return
    cuda = device is not None and torch.device(device).type == "cuda"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if cuda else "gloo"
        if cuda:
            torch.cuda.set_device(local)
        try:
            dist.init_process_group(backend=backend, timeout=TIMEOUT)
        except (RuntimeError, ValueError) as e:  # rendezvous failed: a one-line message
            raise InputError(f"cannot join the torchrun job (rank {os.environ.get('RANK')} of "
                             f"{os.environ.get('WORLD_SIZE')} at {os.environ.get('MASTER_ADDR')}"
                             f":{os.environ.get('MASTER_PORT')}): "
                             f"{str(e).strip().splitlines()[0]}") from None
        atexit.register(_leave)
        _OWNED.append(True)
    world = World(dist.get_rank(), dist.get_world_size(), str(dist.get_backend()),
                  bool(_OWNED), local)
    _CURRENT.append(world)
    try:
        yield world
    finally:
        _CURRENT.pop()


_OWNED: list[bool] = []


def _leave() -> None:
    """Destroy the process group ``fit`` created, at the process's exit (normal or by an
    exception). One group serves every ``fit`` call of the process: torchrun's store keeps the
    keys of a destroyed group, so a second group on it could wait forever."""
    import torch.distributed as dist

    if _OWNED and dist.is_initialized():
        with contextlib.suppress(Exception):  # a lost peer must not mask the error
            dist.destroy_process_group()
    _OWNED.clear()


def depart(code: int) -> None:
    """End a worker of ``descend ... --nproc N`` (:func:`launch`) that joined the job's group:
    flush and leave at once with ``os._exit(code)``, skipping the group's teardown and the
    interpreter's. Everything the command writes is written (atomically) before it returns, and
    a rank that returns is done with every collective; what teardown would add is only its
    risk: gloo's could abort a rank whose run had succeeded (SIGABRT, "terminate called without
    an active exception"), about one run in a hundred on two loaded cores, and the launcher
    then failed the job. Anywhere else (a plain process, the user's own ``torchrun``, a group
    the caller made) it returns, and the process exits as usual."""
    import torch.distributed as dist

    if os.environ.get(LAUNCHED_BY) and _OWNED and dist.is_available() and dist.is_initialized():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


F = TypeVar("F", bound=Callable[..., Any])


def joined(fn: F) -> F:
    """Decorator of ``fit``: run it inside the job's process group when launched by torchrun
    (created from the environment and destroyed on return or error), else as it is; a lost
    peer's backend error becomes :class:`PeerLost`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _session(kwargs.get("device")) as world:
            if not world.active:
                return fn(*args, **kwargs)
            try:
                return fn(*args, **kwargs)
            except (InputError, KeyboardInterrupt):
                raise
            except RuntimeError as e:
                if _lost(e):
                    raise PeerLost(f"rank {world.rank}: another process of the job stopped "
                                   "while this one waited for it; the job is over (the "
                                   "launcher's report names the rank that failed)") from e
                raise

    return wrapper  # type: ignore[return-value]


def cause(codes: dict[int, int]) -> tuple[int, int]:
    """The failed rank to name, and its exit code (negative: the signal), from every rank's:
    a signal other than the launcher's SIGTERM, or an exit other than a survivor's (1: it lost
    its peer), first; an abort after them (a survivor's backend may abort once its peer is
    gone); then a survivor's exit, then SIGTERM; the lowest rank among equals."""
    return min(codes.items(), key=lambda rc: (rc[1] == -signal.SIGTERM, rc[1] in (0, 1),
                                              rc[1] == -signal.SIGABRT, rc[0]))


def _lost(e: BaseException) -> bool:
    """Whether ``e`` is a collective that failed because a peer went away."""
    import torch.distributed as dist

    kinds = tuple(k for k in (getattr(dist, "DistError", None),) if k is not None)
    words = ("connection closed", "connection reset", "broken pipe", "timed out", "gloo",
             "nccl", "peer")
    return isinstance(e, kinds) or any(w in str(e).lower() for w in words)


def agree(world: World, work: Callable[[], T]) -> T:
    """Run ``work`` on every rank; when it raises :class:`InputError` on any rank, raise the
    same one-line error on every rank (the lowest failing rank's message; ``rank r:`` in front
    when rank 0 did not fail), so a bad shard or a missing file on one machine stops the whole
    job up front instead of leaving the others waiting in a collective."""
    if not world.active:
        return work()
    import torch.distributed as dist

    result: Any = None
    error: str | None = None
    try:
        result = work()
    except InputError as e:
        error = str(e)
    errors: list[str | None] = [None] * world.size
    dist.all_gather_object(errors, error)
    failed = [(r, m) for r, m in enumerate(errors) if m is not None]
    if failed:
        r, m = failed[0]
        raise InputError(m if r == 0 else f"rank {r}: {m}")
    return result


class Agreed(Criterion):
    """A criterion whose answer may differ between ranks (it reads the clock or calls the
    user), asked on every rank and fired on all of them when it fires on any (one all-reduce
    of a flag per ask). Reports as the criterion it wraps."""

    def __init__(self, inner: Criterion, world: World) -> None:
        self._inner = inner
        self._world = world

    @property
    def reason(self) -> str:  # type: ignore[override]
        return self._inner.reason

    def reset(self) -> None:
        self._inner.reset()

    def __call__(self, s: Any) -> bool:
        flag = torch.tensor([1.0 if self._inner(s) else 0.0])
        import torch.distributed as dist

        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def resolve(self, s: Any) -> Criterion:
        return self._inner.resolve(s)

    def __repr__(self) -> str:
        return repr(self._inner)


#: Criteria whose answer can differ between ranks: wrapped in :class:`Agreed`. Every other
#: criterion of :mod:`descend.stops` reads only the loss, gradients, steps and epoch record,
#: which are the same on every rank.
LOCAL_CRITERIA = (TimeLimit, Callback, AnyOf, AllOf)


def agreed(criteria: list[Criterion], world: World) -> list[Criterion]:
    """``criteria`` with those that may differ between ranks (:data:`LOCAL_CRITERIA`, and
    criteria defined outside descend) wrapped in :class:`Agreed`."""
    if not world.active:
        return criteria
    return [Agreed(c, world) if isinstance(c, LOCAL_CRITERIA)
            or not type(c).__module__.startswith("descend.") else c for c in criteria]


# ------------------------------------------------------------------------------------ batches


class Shard(InMemory):
    """Rank ``rank`` of ``world``'s share of an :class:`~descend.data.InMemory` source.

    Every rank holds the rows (in-memory data fits) and draws the same seeded permutation, so
    global batch ``j`` of epoch ``e`` is exactly the 1-process run's batch ``j``; this rank
    evaluates its positions ``rank::world`` of it. With one batch per epoch (the full batch)
    its rows ``rank::world`` are gathered once. :attr:`weight` is ``c_r = n_r W / n`` of the
    last batch (see the module docstring).
    """

    def __init__(self, src: InMemory, rank: int, world: int) -> None:
        super().__init__(src.X, src.Y, src.batch_size, shuffle=src.shuffle)
        self.generator = src.generator  # the same seeded draws as the 1-process run
        self.rank, self.world = rank, world
        self.weight = 1.0
        self._mine: tuple[Tensor, Tensor] | None = None
        if self.batches_per_epoch == 1:
            idx = torch.arange(rank, self.n, world, device=self.X.device)
            self._mine = (self.X.index_select(0, idx), self.Y.index_select(0, idx))
            self.weight = len(idx) * world / self.n

    def batch(self, k: int) -> tuple[Tensor, Tensor]:
        """This rank's rows of global batch ``k``."""
        if self._mine is not None:
            return self._mine
        j = k % self.batches_per_epoch
        b = self.batch_size
        if self.shuffle:
            if j == 0 or self._perm is None:
                self._perm = torch.randperm(self.n, generator=self.generator).to(self.X.device)
            idx = self._perm[j * b:(j + 1) * b]
        else:
            idx = torch.arange(j * b, min(self.n, (j + 1) * b), device=self.X.device)
        mine = idx[self.rank::self.world]
        self.weight = len(mine) * self.world / len(idx)
        return self.X.index_select(0, mine), self.Y.index_select(0, mine)

    def state_dict(self) -> dict[str, Any]:
        """The data position, with the loop's batch index ``k`` (the objective's ``draws``):
        the shuffling generator after the current epoch's draw, that epoch's permutation
        (None before the first draw), and this rank's share (``rank`` of ``world``). The
        permutation is the same on every rank, so a restart with another world size reshards
        exactly: each rank takes its new positions of the same global batches."""
        return {"generator": self.generator.get_state(), "perm": self._perm,
                "rank": self.rank, "world": self.world}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (of any rank, any world size)."""
        self.generator.set_state(state["generator"])
        perm = state.get("perm")
        self._perm = perm.to(self.X.device) if perm is not None else None

    def __repr__(self) -> str:
        return (f"Shard(rank={self.rank}, world={self.world}, n={self.n}, "
                f"batch_size={self.batch_size}, batches_per_epoch={self.batches_per_epoch})")


def shard(train: Any, world: World) -> Any:
    """``train`` as this rank's share: an :class:`InMemory` source becomes a :class:`Shard`;
    a streamed one (:mod:`descend.stream`) is already sharded by row groups.

    Raises:
        InputError: a ``Dataset``/``DataLoader``, which this rank cannot split by itself.
    """
    if not world.active or getattr(train, "sharded", False):
        return train
    if isinstance(train, InMemory):
        return Shard(train, world.rank, world.size)
    raise InputError("fit under torchrun needs in-memory data (tensors, arrays, a table, a "
                     "CSV/Parquet file) or a Parquet dataset to shard; for a DataLoader, give "
                     "each rank its own loader with a DistributedSampler and run it yourself")


class DistributedObjective(MiniBatchObjective):
    """The model's loss on this rank's share of the batch, weighted by ``c_r`` (the source's
    ``weight``), in ``DistributedDataParallel``: a backward pass averages the gradients over
    the ranks; the loss is all-reduced. Every rank returns the same ``(loss, grads)``: the whole
    batch's mean loss and its gradient."""

    def __init__(self, model: nn.Module, params: Params, loss_fn: Callable[..., Tensor],
                 batches: Any, world: World) -> None:
        from torch.nn.parallel import DistributedDataParallel

        super().__init__(model, params, loss_fn, batches)
        self.world = world
        dev = params.values[0].device
        self.ddp = DistributedDataParallel(
            model, device_ids=[dev] if dev.type == "cuda" else None)
        self._unchecked = True

    def __call__(self) -> tuple[Tensor, list[Tensor]]:
        import torch.distributed as dist

        self.nfev += 1
        self.ngev += 1
        leaves = self.params.leaves
        for p in leaves:
            p.grad = None
        assert self._xb is not None and self._yb is not None
        out = self.ddp(self._xb)
        weight = float(getattr(self.batches, "weight", 1.0))
        # no rows of this batch here: nothing to add, but DDP needs every rank's pass
        local = self.loss_fn(out, self._yb) * weight if len(self._xb) else out.sum() * 0.0
        if self._unchecked:
            self._check(local)
            self._unchecked = False
        loss = local.detach().to(torch.float64) / self.world.size
        summed = dist.all_reduce(loss, async_op=True)  # while the backward pass runs
        local.backward()
        grads = [torch.zeros_like(v) if p.grad is None else p.grad
                 for p, v in zip(leaves, self.params.values)]
        for p in leaves:
            p.grad = None
        if summed is not None:
            summed.wait()
        return loss, grads

    def __repr__(self) -> str:
        return (f"DistributedObjective(rank={self.world.rank}, world={self.world.size}, "
                f"draws={self.draws}, nfev={self.nfev})")


def objective(model: nn.Module, params: Params, loss_fn: Callable[..., Tensor], batches: Any,
              world: World) -> MiniBatchObjective:
    """``fit``'s objective: a :class:`DistributedObjective` on several ranks, else the plain
    :class:`~descend.objective.MiniBatchObjective`."""
    if world.active:
        return DistributedObjective(model, params, loss_fn, batches, world)
    return MiniBatchObjective(model, params, loss_fn, batches)


# ------------------------------------------------------------------------------- --nproc N


#: The environment variable that gives the ranks of ``--nproc`` their run folder.
STARTED = "DESCEND_STARTED_RUN"


def launch(nproc: int, argv: list[str], started: Any = None) -> int:
    """``descend ARGV`` in ``nproc`` local processes through torch's elastic launcher (the API
    ``torchrun`` is built on: rendezvous on a free loopback port, one worker per rank, the
    others stopped when one fails). Each worker gets ``OMP_NUM_THREADS`` = cores / ``nproc``
    (at least 1) unless it is set. Returns the exit status: 0, 2 when a rank refused its input
    (it printed the one-line error), else 1 after one line naming the rank that failed.

    ``started``: the run folder the ranks record and checkpoint into (passed to them as
    :data:`STARTED`); when one fails, the line says whether a checkpoint there lets
    ``descend resume`` continue the run."""
    import logging
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise InputError(f"--nproc must be at least 1, got {nproc}")
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    os.environ[LAUNCHED_BY] = "1"  # a worker whose peer died leaves the report to us
    if started is not None:
        os.environ[STARTED] = str(started)
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=uuid.uuid4().hex,
        rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0,
        monitor_interval=0.1, start_method="spawn")
    try:
        elastic_launch(config, sys.executable)("-m", "descend", *argv)
    except ChildFailedError as e:
        codes = {r: f.exitcode for r, f in e.failures.items()}
        if codes and all(c == 2 for c in codes.values()):
            return 2  # a refused input: rank 0 printed the one-line error
        r, c = cause(codes)
        how = (f"was killed by signal {-c} ({signal.Signals(-c).name})" if c < 0
               else f"exited with status {c}")
        kept = started is not None and any(
            (Path(started) / "checkpoint" / n).is_file() for n in ("latest.pt", "previous.pt"))
        after = (f"its last checkpoint is kept: `descend resume {Path(started).name}` continues "
                 "the run") if kept else "nothing was saved"
        print(f"descend {argv[0]}: error: rank {r} of {nproc} {how}; the launcher stopped the "
              f"other ranks, {after}", file=sys.stderr)
        return 1
    return 0
