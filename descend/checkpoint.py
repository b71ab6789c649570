"""Checkpoints: all a run needs to continue exactly, written crash-safe; and the signals that
stop a run cleanly.

A checkpoint is taken at the top of the loop (:func:`descend.loop.run`), after an iteration's
row was recorded and the observers saw it, before the criteria are asked: the one point where
the run's whole state is settled. It holds (``Checkpoint`` keys):

* ``format``: ``"descend-checkpoint"``, and ``version`` (:data:`VERSION`);
* ``fingerprint``: what the run is: code version, method, parameter names/shapes/dtypes, the
  objective's qualified name, the data's sha256 (see :func:`fingerprint`);
* ``iteration``: updates of ``x`` so far;
* ``params``: the current point (one tensor per parameter);
* ``loop``: the :class:`~descend.state.LoopState` fields: losses, the best and start points,
  the last finite point, counters, elapsed time;
* ``history``: the history so far, ``{column: tensor or list}`` (see :func:`columns`);
* ``rule``: the rule's ``state_dict()`` and its ``scale`` (L-BFGS' rescale toggles it);
* ``step``: the step size's ``state_dict()``;
* ``criteria``: each criterion's state, in the run's order, with its type;
* ``observers``: ``{index: state}`` of the observers that have ``state_dict`` (fit's epochs);
* ``objective``: evaluation counters;
* ``data``: the data position, or None for a fixed objective (see below);
* ``rng``: torch's CPU (and CUDA) generator states and Python's ``random`` state.

The data position (``data``) is a plain dict: ``draws`` (batches drawn so far; the current batch
is batch ``draws - 1``), ``epoch`` and ``batch`` (that batch's epoch and index in it, 0-based),
``batches_per_epoch``, and ``source``: the batch source's own ``state_dict()``
(:class:`~descend.data.InMemory`: its shuffling generator, the epoch's permutation and that
epoch's number). A batch source that wants exact resume gives ``state_dict`` /
``load_state_dict`` and serves ``batch(k)`` again for the current ``k`` without drawing anew.

The file is ``torch.save`` of plain tensors, numbers, strings, lists, tuples and dicts, so
``torch.load(path, weights_only=True)`` reads it: ``{"format", "version", "sha256", "body"}``
where ``body`` is the checkpoint itself saved by ``torch.save`` as bytes (a uint8 tensor) and
``sha256`` its checksum, checked on load. A checkpoint folder holds ``latest.pt`` and
``previous.pt``. A write goes to a temporary file (flushed, fsynced), then ``latest.pt`` becomes
``previous.pt`` and the temporary file ``latest.pt`` (two renames), and the folder is fsynced:
at every moment one whole checkpoint is there. :func:`load` falls back to ``previous.pt`` with a
one-line note when ``latest.pt`` is missing or damaged.

Signals: while a run is going (in the main thread), SIGINT (and SIGTERM, when asked) set a flag;
the loop finishes the current iteration, writes a checkpoint and stops with reason
``interrupted`` (a failure). A second signal acts at once: SIGINT raises ``KeyboardInterrupt``,
SIGTERM its default action. The previous handlers are restored when the outermost run ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .atomic import _fsync_dir
from .errors import InputError
from .i18n import N_

if TYPE_CHECKING:
    from .state import LoopState

Parts = Any  # descend.loop.Parts (the loop imports this module)

__all__ = [
    "FORMAT",
    "VERSION",
    "Checkpoints",
    "check_args",
    "fingerprint",
    "interrupted_by",
    "load",
    "parse_every",
    "save",
    "sha256_file",
    "signals",
]

FORMAT = "descend-checkpoint"
VERSION = 1
LATEST, PREVIOUS = "latest.pt", "previous.pt"
#: In a run folder of the command line: the command to run again on ``descend resume``.
COMMAND = "command.json"
#: ``checkpoint_every`` when a checkpoint is asked for without it: every 30 seconds (and at the
#: end of each epoch in ``fit``).
DEFAULT_EVERY = "30s"
#: With ``checkpoint_every`` in seconds (the default), an epoch's end writes a checkpoint only
#: when the last one is at least this many seconds old: a write costs tens of milliseconds (two
#: fsyncs), which thousands of short epochs would otherwise pay each.
EPOCH_GAP = 2.0

# --------------------------------------------------------------------------------- signals

_lock = threading.Lock()
_depth = 0
_signum: int | None = None
_previous: dict[int, Any] = {}


def _handler(signum: int, frame: Any) -> None:
    global _signum
    if _signum is not None:  # the second signal: at once
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _signum = signum


def interrupted_by() -> int | None:
    """The signal that asked the current run(s) to stop, or None."""
    return _signum


@contextlib.contextmanager
def signals(sigterm: bool = True) -> Iterator[None]:
    """While inside, SIGINT (and SIGTERM with ``sigterm``) ask the running loop to stop after
    the current iteration (:func:`interrupted_by` says which); a second signal acts at once.
    Nested uses share one flag; the outermost restores the previous handlers (and clears the
    flag) on exit. Outside the main thread it does nothing."""
    global _depth, _signum
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _lock:
        if _depth == 0:
            _signum = None
            wanted = [signal.SIGINT] + ([signal.SIGTERM] if sigterm else [])
            for sig in wanted:
                _previous[sig] = signal.signal(sig, _handler)
        elif sigterm and signal.SIGTERM not in _previous:
            _previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, _handler)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for num, old in _previous.items():
                    signal.signal(num, old if old is not None else signal.SIG_DFL)
                _previous.clear()
                _signum = None


# ------------------------------------------------------------------ packing (plain data only)


def _pack(v: Any, memo: dict[int, Any]) -> Any:
    """``v`` as data ``torch.load(weights_only=True)`` reads: tensors, numbers, strings, None,
    lists, tuples, str-keyed dicts; a deque becomes ``{"__deque__": items, "maxlen": n}``.
    Shared lists and tensors stay shared (``memo`` maps ``id`` to the object, kept alive, and
    its packed form). Raises TypeError on anything else."""
    if v is None or isinstance(v, (bool, int, float, str, bytes, torch.dtype)):
        return v
    key = id(v)
    if key in memo:
        return memo[key][1]
    out: Any
    if isinstance(v, Tensor):
        out = v.detach()
    elif isinstance(v, list):
        out = []
        memo[key] = (v, out)
        out.extend(_pack(x, memo) for x in v)
        return out
    elif isinstance(v, tuple):
        out = tuple(_pack(x, memo) for x in v)
    elif isinstance(v, deque):
        out = {"__deque__": [_pack(x, memo) for x in v], "maxlen": v.maxlen}
    elif isinstance(v, dict):
        out = {str(k): _pack(x, memo) for k, x in v.items()}
    else:
        raise TypeError(f"cannot checkpoint a {type(v).__name__}")
    memo[key] = (v, out)
    return out


def _unpack(v: Any, memo: dict[int, Any] | None = None) -> Any:
    """The inverse of :func:`_pack`; lists shared in ``v`` stay shared."""
    memo = {} if memo is None else memo
    if id(v) in memo:
        return memo[id(v)]
    out: Any
    if isinstance(v, dict):
        if "__deque__" in v:
            out = deque((_unpack(x, memo) for x in v["__deque__"]), maxlen=v["maxlen"])
        else:
            out = {k: _unpack(x, memo) for k, x in v.items()}
    elif isinstance(v, list):
        out = memo[id(v)] = []
        out.extend(_unpack(x, memo) for x in v)
        return out
    elif isinstance(v, tuple):
        out = tuple(_unpack(x, memo) for x in v)
    else:
        return v
    memo[id(v)] = out
    return out


def _plain_vars(obj: Any, memo: dict[int, Any]) -> dict[str, Any]:
    """The attributes of ``obj`` that pack (callables and other objects left out)."""
    out = {}
    for k, v in vars(obj).items():
        if callable(v) and not isinstance(v, Tensor):
            continue
        try:
            out[k] = _pack(v, memo)
        except TypeError:
            continue
    return out


def _pack_lenient(state: dict[str, Any], memo: dict[int, Any]) -> dict[str, Any]:
    """The entries of ``state`` that pack (a step size's scheduler object, say, left out)."""
    out = {}
    for k, v in state.items():
        try:
            out[str(k)] = _pack(v, memo)
        except TypeError:
            continue
    return out


def _criterion_state(c: Any, memo: dict[int, Any]) -> dict[str, Any]:
    state = _plain_vars(c, memo)
    state["__type__"] = type(c).__name__
    members = getattr(c, "members", None)
    if members:
        state["members"] = [_criterion_state(m, memo) for m in members]
    return state


def _load_criterion(c: Any, state: dict[str, Any]) -> None:
    state = dict(state)
    state.pop("__type__", None)
    members = state.pop("members", None)
    vars(c).update(state)
    for m, ms in zip(getattr(c, "members", ()), members or ()):
        _load_criterion(m, ms)


def columns(h: Any) -> dict[str, Any]:
    """A :class:`~descend.history.History`'s columns for a checkpoint: int64 and float64
    tensors (:meth:`~descend.history.History.state_dict`; floats bit for bit)."""
    out: dict[str, Any] = h.state_dict()["columns"]
    return out


def load_columns(h: Any, cols: dict[str, Any]) -> None:
    """Put the columns :func:`columns` gave back into the history ``h``."""
    h.load_state_dict({"columns": cols})


# ---------------------------------------------------------------------------------- files


def _encode(body: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(body, buf)
    raw = buf.getvalue()
    outer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION,
                "sha256": hashlib.sha256(raw).hexdigest(),
                "body": torch.frombuffer(bytearray(raw), dtype=torch.uint8)}, outer)
    return outer.getvalue()


def _decode(path: Path) -> dict[str, Any]:
    """The checkpoint in ``path``; ValueError naming the damage."""
    try:
        outer = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: torch's own message, one line
        raise ValueError(f"not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise ValueError("not a descend checkpoint")
    if outer.get("version") != VERSION:
        raise ValueError(f"checkpoint format version {outer.get('version')!r}, this descend "
                         f"reads {VERSION}")
    raw = outer["body"].numpy().tobytes()
    if hashlib.sha256(raw).hexdigest() != outer.get("sha256"):
        raise ValueError("its checksum does not match (damaged)")
    body = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    out: dict[str, Any] = _unpack(body)
    return out


def _sweep(folder: Path) -> None:
    """Remove temporary files of writers that are gone."""
    for p in folder.glob(".tmp-*.pt"):
        m = re.match(r"^\.tmp-(\d+)-", p.name)
        if m is None:
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        with contextlib.suppress(OSError):
            p.unlink()


def save(folder: str | os.PathLike[str], body: dict[str, Any]) -> Path:
    """Write ``body`` as the latest checkpoint in ``folder``, crash-safe (see the module
    docstring); returns the path of ``latest.pt``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = _encode(body)
    tmp = folder / f".tmp-{os.getpid()}-{time.monotonic_ns()}.pt"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        latest = folder / LATEST
        if latest.exists():
            os.replace(latest, folder / PREVIOUS)
        os.replace(tmp, latest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(folder)
    return latest


def load(folder: str | os.PathLike[str]) -> tuple[dict[str, Any], Path]:
    """The newest whole checkpoint in ``folder`` (``latest.pt``, else ``previous.pt`` with a
    one-line note on standard error) and its path.

    Raises:
        InputError: no checkpoint, or none that is whole.
    """
    folder = Path(folder)
    if folder.is_file():
        raise InputError(f"resume needs a checkpoint folder, but {folder} is a file; give the "
                         "folder the run checkpointed into (it holds latest.pt)")
    if not folder.is_dir():
        raise InputError(f"no checkpoint folder {folder}; give the folder a run with "
                         "checkpoint=PATH wrote")
    problems = []
    for i, name in enumerate((LATEST, PREVIOUS)):
        path = folder / name
        if not path.exists():
            problems.append(f"{name} is missing")
            continue
        try:
            body = _decode(path)
        except ValueError as e:
            problems.append(f"{name}: {e}")
            continue
        if i:
            print(f"descend: note: {problems[0]}; resuming from the previous checkpoint, "
                  f"{path} (iteration {body.get('iteration')})", file=sys.stderr)
        return body, path
    raise InputError(f"no whole checkpoint in {folder}: {'; '.join(problems)}")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256_tensors(ts: list[Tensor]) -> str:
    h = hashlib.sha256()
    for t in ts:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def fingerprint(parts: Parts, params: Any, fn: Any, data: Any = ()) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the descend version, the method (rule and
    step), the parameters' names, shapes and dtypes, the objective's qualified name, and the
    data: a file's sha256 (``data`` a path) or the sha256 of the tensors in ``data``."""
    from ._version import __version__

    if isinstance(data, (str, os.PathLike)):
        digest = sha256_file(data)
    else:
        found = [t for t in (data if isinstance(data, (list, tuple)) else [data])
                 if isinstance(t, Tensor)]
        digest = _sha256_tensors(found) if found else ""
    name = getattr(fn, "__qualname__", type(fn).__qualname__)
    return {
        "version": __version__,
        "method": f"{getattr(parts.rule, 'label', parts.rule.name)}, "
                  f"{parts.step.describe()}",
        "parameters": [f"{n}: {tuple(v.shape)} {str(v.dtype).replace('torch.', '')}"
                       for n, v in zip(params.names, params.values)],
        "objective": f"{getattr(fn, '__module__', '')}.{name}",
        "data": digest,
    }


_WHAT = {"version": "the descend version differs", "method": "the method differs",
         "parameters": "the parameters differ", "objective": "the objective differs",
         "data": "the data differ"}


def _check_fingerprint(saved: dict[str, Any], now: dict[str, Any], path: Path) -> None:
    for key, what in _WHAT.items():
        if saved.get(key) != now.get(key):
            a, b = saved.get(key), now.get(key)
            if key == "data":
                a, b = f"sha256 {str(a)[:12]}", f"sha256 {str(b)[:12]}"
            raise InputError(f"cannot resume from {path}: {what} ({a} in the "
                             f"checkpoint, {b} now); resume with the same code, problem and "
                             "data, or start afresh without resume")


# ------------------------------------------------------------------------------- the hook


def parse_every(every: Any, name: str = "checkpoint_every") -> tuple[int | None, float | None]:
    """``checkpoint_every`` as ``(iterations, seconds)``: an int (iterations), a string
    ``"100"`` or ``"30s"`` (``"2m"``, ``"1h"`` too), or None (:data:`DEFAULT_EVERY`).

    Raises:
        InputError: anything else.
    """
    if every is None:
        every = DEFAULT_EVERY
    if isinstance(every, int) and not isinstance(every, bool):
        if every < 1:
            raise InputError(f"{name} must be >= 1 iteration, got {every!r}")
        return every, None
    if isinstance(every, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", every)
        if m:
            n, unit = float(m.group(1)), m.group(2)
            if not unit and n == int(n) and n >= 1:
                return int(n), None
            if unit and n > 0:
                return None, n * {"s": 1, "m": 60, "h": 3600}[unit]
    raise InputError(f"{name} must be a number of iterations (100) or of seconds (30s, 5m, "
                     f"1h), got {every!r}")


def check_args(checkpoint: Any, every: Any, resume: Any) -> bool:
    """Check a front end's ``checkpoint``, ``checkpoint_every`` and ``resume`` before any work;
    True when the run checkpoints or resumes.

    Raises:
        InputError: ``checkpoint_every`` without a folder or malformed, a folder that is a file,
            a ``resume`` folder that is missing or a file.
    """
    if checkpoint is None and resume is None:
        if every is not None:
            raise InputError("checkpoint_every needs checkpoint=PATH (the folder to write "
                             "checkpoints into)")
        return False
    if resume is not None:
        path = Path(resume)
        if path.is_file():
            raise InputError(f"resume needs a checkpoint folder, but {path} is a file; give the "
                             "folder the run checkpointed into (it holds latest.pt)")
        if not path.is_dir():
            raise InputError(f"no checkpoint folder {path}; give the folder a run with "
                             "checkpoint=PATH wrote")
    folder = Path(checkpoint if checkpoint is not None else resume)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"checkpoint must name a folder, but {folder} is a file; give a new "
                         "or existing folder")
    parse_every(every)
    return True


class Checkpoints:
    """The loop's hook for checkpoints and signals (:attr:`descend.loop.Parts.checkpoints`).

    ``at_top(s)`` is called at the top of every loop iteration: it writes a checkpoint into
    ``folder`` when one is due (every ``every`` iterations or seconds, at the end of each
    epoch when ``epochs``) and returns True when a signal asked the run to stop (after writing
    one). ``restore(s)`` starts the run from the checkpoint given as ``resume``.

    Args:
        parts: the run's parts (rule, step, criteria, observers).
        fingerprint: what the run is (:func:`fingerprint`).
        folder: where to write checkpoints, or None for none.
        every: ``checkpoint_every`` (see :func:`parse_every`).
        resume: a checkpoint folder to start from, or None.
        epochs: batches per epoch, to checkpoint at each epoch's end (``fit``; when the last
            checkpoint is at least :data:`EPOCH_GAP` seconds old when ``every`` is in seconds), or
            None.
        hint: how to resume, for the ``interrupted`` message.
        agree: under torchrun, ``World.any``: a signal that reached any rank stops every rank
            at the same iteration (only rank 0 is given a ``folder`` to write into; every rank
            reads ``resume``).
    """

    def __init__(self, parts: Parts, fingerprint: dict[str, Any], *,
                 folder: str | os.PathLike[str] | None = None, every: Any = None,
                 resume: str | os.PathLike[str] | None = None, epochs: int | None = None,
                 hint: str = "", agree: Callable[[bool], bool] | None = None) -> None:
        self.parts = parts
        self.fingerprint = fingerprint
        self.body: dict[str, Any] | None = None
        self.resumed_from: Path | None = None
        if resume is not None:
            self.body, self.resumed_from = load(resume)
            _check_fingerprint(self.body.get("fingerprint", {}), fingerprint,
                               self.resumed_from)
        self.folder = Path(folder) if folder is not None else None
        if self.folder is not None and self.folder.exists() and not self.folder.is_dir():
            raise InputError(f"checkpoint must name a folder, but {self.folder} is a file; "
                             "give a new or existing folder")
        self.iterations, self.seconds = parse_every(every)
        self.epochs = epochs
        if self.folder is not None and (self.folder.parent / COMMAND).is_file():
            rid = self.folder.parent.name  # a run of the command line: say how to resume it
            start = (f"resumed from {self.resumed_from} (iteration {self.body['iteration']}); "
                     if self.body is not None and self.resumed_from is not None else "")
            print(f"descend: note: run {rid}: {start}checkpoints in {self.folder}; if it "
                  f"stops, `descend resume {rid}` continues it", file=sys.stderr)
        self.hint = hint
        self.agree = agree
        self.saved_iter = -1
        self.saved_at = time.monotonic()
        self.written = 0

    # -- writing

    def at_top(self, s: LoopState) -> bool:
        """Checkpoint when due; True when a signal asks the run to stop."""
        stop = _signum is not None
        if self.agree is not None:
            stop = self.agree(stop)
        if self.folder is not None and s.iteration != self.saved_iter and (
                stop or self._due(s)):
            self.write(s)
        return stop

    def _due(self, s: LoopState) -> bool:
        k = s.iteration
        if self.iterations is not None and k - max(self.saved_iter, 0) >= self.iterations:
            return True
        if self.epochs and k and k % self.epochs == 0 and (
                self.seconds is None or time.monotonic() - self.saved_at >= EPOCH_GAP):
            return True
        return self.seconds is not None and time.monotonic() - self.saved_at >= self.seconds

    def write(self, s: LoopState) -> Path:
        """Write the checkpoint of ``s`` now."""
        assert self.folder is not None
        with contextlib.suppress(OSError):
            _sweep(self.folder)
        path = save(self.folder, self.state(s))
        self.saved_iter, self.saved_at = s.iteration, time.monotonic()
        self.written += 1
        return path

    def state(self, s: LoopState) -> dict[str, Any]:
        """The checkpoint of ``s`` (see the module docstring)."""
        parts, obj = self.parts, s.objective
        memo: dict[int, Any] = {}
        loop = {k: _pack(getattr(s, k), memo) for k in _LOOP_FIELDS}
        h = s.history
        rule: Any = parts.rule
        observers = {}
        for i, o in enumerate(parts.observers):
            if hasattr(o, "state_dict"):
                observers[str(i)] = _pack_lenient(o.state_dict(), memo)
        data = None
        batches = getattr(obj, "batches", None)
        if batches is not None:
            bpe = obj.batches_per_epoch  # type: ignore[attr-defined]
            draws = obj.draws  # type: ignore[attr-defined]
            data = {"draws": draws, "epoch": (draws - 1) // bpe, "batch": (draws - 1) % bpe,
                    "batches_per_epoch": bpe,
                    "source": _pack(batches.state_dict(), memo)
                    if hasattr(batches, "state_dict") else None}
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": FORMAT, "version": VERSION, "fingerprint": self.fingerprint,
            "iteration": s.iteration,
            "params": _pack(s.values, memo),
            "loop": loop,
            "history": columns(h),
            "rule": {"state": _pack(rule.state_dict(), memo),
                     "scale": getattr(rule, "scale", None)},
            "step": _pack_lenient(parts.step.state_dict(), memo),
            "criteria": [_criterion_state(c, memo) for c in parts.criteria],
            "observers": observers,
            "objective": {"nfev": obj.nfev, "ngev": obj.ngev},
            "data": data,
            "rng": rng,
        }

    # -- reading

    def restore(self, s: LoopState) -> bool:
        """Put the run in the state of the checkpoint given as ``resume``; False without one."""
        body = self.body
        if body is None:
            return False
        parts, obj, params = self.parts, s.objective, s.objective.params
        dev = params.values[0].device
        body = _to_device(body, dev)
        params.set(body["params"])
        rule: Any = parts.rule
        if body["rule"]["scale"] is not None and hasattr(rule, "scale"):
            rule.scale = body["rule"]["scale"]
        rule.init(params.values)
        rule.load_state_dict(body["rule"]["state"])
        parts.step.reset()
        parts.step.load_state_dict(body["step"])
        saved = list(body["criteria"])
        for c in parts.criteria:  # by type, in order (a callback may be given or not)
            i = next((i for i, cs in enumerate(saved)
                      if cs.get("__type__") == type(c).__name__), None)
            if i is not None:
                _load_criterion(c, saved.pop(i))
        for i, o in enumerate(parts.observers):
            st = body["observers"].get(str(i))
            if st is not None and hasattr(o, "load_state_dict"):
                o.load_state_dict(st)
        for k, v in body["loop"].items():
            setattr(s, k, v)
        s.start = time.perf_counter() - s.elapsed
        h = s.history
        load_columns(h, body["history"])
        obj.nfev, obj.ngev = body["objective"]["nfev"], body["objective"]["ngev"]
        data = body["data"]
        if data is not None:
            batches = obj.batches  # type: ignore[attr-defined]
            if data["source"] is not None and hasattr(batches, "load_state_dict"):
                batches.load_state_dict(data["source"])
            obj.draws = data["draws"]  # type: ignore[attr-defined]
            obj._xb, obj._yb = batches.batch(data["draws"] - 1)  # type: ignore[attr-defined]
        rng = body["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.saved_iter = s.iteration
        return True

    def message_hint(self) -> str:
        """How to continue, for the ``interrupted`` message."""
        if self.hint:
            return self.hint
        if self.folder is not None:
            if (self.folder.parent / COMMAND).is_file():  # a recorded CLI run's folder
                return N_("resume with `descend resume {0}`").format(self.folder.parent.name)
            return N_("resume with resume={0}").format(repr(str(self.folder)))
        return N_("pass checkpoint=PATH to keep the state of an interrupted run")


#: The :class:`~descend.state.LoopState` fields a checkpoint holds.
_LOOP_FIELDS = ("iteration", "loss", "grad_norm", "lr", "nfev", "loss0", "best_loss",
                "best_iter", "best_values", "best_grads", "finite_loss", "finite_values",
                "elapsed", "values", "start_values", "start_grads", "grads", "info",
                "backtracks")


def _to_device(v: Any, dev: torch.device) -> Any:
    """Tensors of ``v`` moved to ``dev``, keeping shared ones shared (random states stay)."""
    memo: dict[int, Any] = {}

    def go(x: Any, key: str = "") -> Any:
        if key == "rng":
            return x
        if id(x) in memo:
            return memo[id(x)]
        if isinstance(x, Tensor):
            out: Any = x.to(dev) if x.dtype != torch.uint8 or key != "generator" else x
        elif isinstance(x, dict):
            out = {k: go(y, k if k in ("rng", "generator") else key) for k, y in x.items()}
        elif isinstance(x, list):
            out = memo[id(x)] = []
            out.extend(go(y, key) for y in x)
            return out
        elif isinstance(x, tuple):
            out = tuple(go(y, key) for y in x)
        else:
            return x
        memo[id(x)] = out
        return out

    if dev.type == "cpu":
        return v
    return go(v)

