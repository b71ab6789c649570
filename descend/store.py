"""Run records: one folder per run on disk plus an SQLite index (stdlib ``sqlite3``).

A records folder (``runs/`` by default, or ``$DESCEND_RUNS``) holds one sub-folder per run and
``index.sqlite``::

    runs/
      index.sqlite               id, created, problem, rule, step, nit, loss, reason, success, label
      20261127-061200-3fa2/
        config.json        what was asked: problem, rule, lr, step, stop, max_iter, ...
        environment.json   python, torch, descend versions, platform, device, seed, argv, time
        history.parquet    one row per iteration: iteration, loss, grad_norm, lr, time, nfev, ...
                           (zstd; ``history.csv`` in records written before Parquet)
        params.pt          the final parameters (a module's state_dict), ``torch.save``
        result.json        the result summary: loss, best_loss, nit, nfev, reason, message, ...,
                           and ``history``: the history's rows, column names and first loss
        snapshots.pt       optional: parameter iterates (<= 4,096 elements) and the target
        diagnostics.json   optional: what ``diagnose`` found, shown by the report

Writes are atomic (:func:`atomic_folder`, which ``save_model`` uses too): a run is written
into a hidden ``.tmp-*`` folder, each file and the folder fsynced, and the folder is renamed to
its id in one step, so a run interrupted while writing leaves no half-written record visible
(only a hidden temporary folder, swept by the next listing once its writer is gone). An
existing run id is never overwritten. The folders are the truth and the index a cache:
:func:`list_runs` first reconciles the index with the folders (a crash between the rename and
the index insert, or a folder removed by hand, heals there).

The history is read only when asked for (:attr:`Run.history`, :meth:`Run.read_history`):
opening a run reads its JSON files, and ``descend runs show`` never touches the history file
(:mod:`descend.histfile` has the format and the thinning of long curves for charts).

The writer is generic: :func:`record_run` takes plain columns and dicts, so ``minimize``,
``fit`` (with its per-epoch and validation columns) and the CLI all record through it;
:func:`descend.result.record_result` is the short way from a :class:`~descend.result.Result`.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import math
import os
import re
import secrets
import shutil
import sqlite3
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import _fsync_dir, _fsync_tree, _writer_gone, atomic_file, atomic_folder, recover
from .errors import InputError

__all__ = [
    "DEFAULT_ROOT",
    "Run",
    "atomic_file",
    "atomic_folder",
    "device_of",
    "environment",
    "list_runs",
    "load_weights",
    "open_run",
    "record_run",
    "records_root",
    "recover",
    "remove_run",
    "run_path",
]

#: The records folder when none is given (relative to the working directory);
#: the environment variable ``DESCEND_RUNS`` overrides it.
DEFAULT_ROOT = "runs"
INDEX = "index.sqlite"
RESULT_FIELDS = ("loss", "best_loss", "nit", "nfev", "reason", "message", "success", "seconds",
                 "rule", "step")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: The index's columns, in order.
FIELDS_INDEX = ("id", "created", "problem", "rule", "step", "nit", "loss", "reason", "success",
                "label")
_SCHEMA = """CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, created TEXT, problem TEXT, rule TEXT, step TEXT, nit INTEGER,
    loss REAL, reason TEXT, success INTEGER, label TEXT)"""


def records_root(record: str | os.PathLike[str] | bool | None = True) -> Path:
    """The records folder for ``record``: a path as given, or for ``True``/``None`` the default
    (``$DESCEND_RUNS`` or ``runs``)."""
    if record is True or record is None:
        return _folder(Path(os.environ.get("DESCEND_RUNS") or DEFAULT_ROOT))
    if record is False:
        raise InputError("record=False records nothing; pass True or a folder")
    if not isinstance(record, (str, os.PathLike)):
        raise InputError(f"record must be True or a folder path, got {record!r}")
    return _folder(Path(record))


def _folder(root: Path) -> Path:
    if root.exists() and not root.is_dir():
        raise InputError(f"the records folder {root} is a file; give a folder with --runs DIR "
                         "(record=DIR)")
    return root


@dataclass
class Run:
    """One recorded run, read back from its folder.

    Attributes:
        id: the run id (the folder's name).
        path: the run folder.
        config: what was asked (``config.json``).
        environment: versions, device, seed, command line, time (``environment.json``).
        result: the result summary (``result.json``).
        diagnostics: what ``diagnose`` found, or None.
        history: every history column by name, as lists (``history.parquet``, or
            ``history.csv`` in an older record), read on first use; charts read a few
            thinned columns instead (:meth:`read_history`).
    """

    id: str
    path: Path
    config: dict[str, Any]
    environment: dict[str, Any]
    result: dict[str, Any]
    diagnostics: dict[str, Any] | None = field(default=None, repr=False)

    @functools.cached_property
    def history(self) -> dict[str, list[Any]]:
        """Every history column by name, as lists (read on first use)."""
        from .histfile import read_history

        return read_history(self.path)

    @property
    def history_summary(self) -> dict[str, Any]:
        """``{"rows", "columns", "first_loss"}`` of the history, from ``result.json`` (an
        older record without it: from its history file)."""
        s = self.result.get("history")
        if isinstance(s, dict) and {"rows", "columns"} <= s.keys():
            return s
        from .histfile import summary

        return summary(self.history)

    def read_history(self, columns: Iterable[str] | None = None,
                     max_points: int | None = None) -> dict[str, list[Any]]:
        """History columns as lists: every column, or ``iteration`` and those of ``columns``
        the history has (only those are read). With ``max_points``, at most that many rows,
        picked by :func:`descend.histfile.thin`: the first, the last, the row where the run
        stopped (its ``nit``), the minimum and maximum of each column asked, and rows spread
        evenly between."""
        from .histfile import read_columns, read_history, thinned

        names = None if columns is None else ["iteration", *columns]
        if max_points is None:
            return read_history(self.path, names)
        cols = read_columns(self.path, names)
        keep: list[int] = []
        it, nit = cols.get("iteration"), self.result.get("nit")
        if it is not None and isinstance(nit, int) and it.dtype.kind in "iuf":
            keep = [int(i) for i in (it == nit).nonzero()[0][-1:]]
        draw = [c for c in (cols if columns is None else columns) if c != "iteration"]
        return thinned(cols, max_points, draw, keep)

    def history_arrays(self, columns: Iterable[str] | None = None) -> dict[str, Any]:
        """History columns as numpy arrays (every column, or those of ``columns`` the history
        has; only those are read)."""
        from .histfile import read_columns

        return read_columns(self.path, columns)

    @property
    def label(self) -> str:
        """A short name for legends: the config's ``label``, else rule and step."""
        lab = self.config.get("label")
        if lab:
            return str(lab)
        return f"{self.result.get('rule', '?')} {self.result.get('step', '')}".strip()

    def params(self) -> Any:
        """The final parameters as saved (tensors in ``x0``'s structure, or a state_dict)."""
        return load_weights(self.path / "params.pt", f"the parameters of run {self.id}",
                            map_location=None)

    def snapshots(self) -> dict[str, Any] | None:
        """The recorded iterates, or None: ``{"iteration": [k...], "values": Tensor[F, n],
        "shapes": [[...]...], "target": Tensor[n] | None}``."""
        p = self.path / "snapshots.pt"
        if not p.exists():
            return None
        out: dict[str, Any] = load_weights(p, f"the snapshots of run {self.id}",
                                              map_location=None)
        return out


# ---------------------------------------------------------------------------- writing


def environment(*, seed: int | None = None, device: str | None = None,
                argv: Sequence[str] | None = None) -> dict[str, Any]:
    """What a run ran on: versions, platform, device, seed, command line and UTC time."""
    import platform
    from datetime import datetime, timezone

    import torch

    from ._version import __version__

    env: dict[str, Any] = {
        "descend": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": device or "cpu",
        "threads": torch.get_num_threads(),
        "seed": seed,
        "argv": list(sys.argv if argv is None else argv),
        # microseconds, so runs of the same second list in the order they were made
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    if device and device.startswith("cuda") and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return env


def _jsonable(v: Any, default: Callable[[Any], Any] = repr) -> Any:
    """Plain JSON data: numbers, strings, lists and dicts pass, a one-element tensor becomes its
    number; anything else becomes ``default(v)``."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x, default) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x, default) for x in v]
    item = getattr(v, "item", None)
    if callable(item) and getattr(v, "numel", lambda: 2)() == 1:
        return _jsonable(item(), default)
    return default(v)


def device_of(x: Any) -> str:
    """The device of the first tensor in ``x`` (a tensor, or a tuple/list/dict of them)."""
    import torch

    stack = [x]
    while stack:
        v = stack.pop(0)
        if isinstance(v, torch.Tensor):
            return str(v.device)
        if isinstance(v, Mapping):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return "cpu"


def _write_json(path: Path, obj: Any, *, default: Callable[[Any], Any] = repr) -> None:
    """``obj`` as indented JSON; ``default`` turns a value JSON lacks into one it has (repr: a
    config may hold a criterion or a rule object)."""
    path.write_text(json.dumps(_jsonable(obj, default), indent=2, sort_keys=False) + "\n")


def _write_history(path: Path, columns: Mapping[str, Sequence[Any]]) -> None:
    from .histfile import write_parquet

    write_parquet(path, columns)


def _write_torch(path: Path, obj: Any) -> None:
    import torch

    torch.save(obj, path)


def _new_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + os.urandom(2).hex()


def _check_columns(columns: Mapping[str, Sequence[Any]]) -> dict[str, Sequence[Any]]:
    # sized columns (lists, history columns, numpy arrays) are taken as they are: no copy
    cols = {str(k): v if hasattr(v, "__len__") else list(v) for k, v in columns.items()}
    if not cols:
        raise InputError("history_columns is empty; give at least an iteration and a loss column")
    lengths = {k: len(v) for k, v in cols.items()}
    if len(set(lengths.values())) > 1:
        raise InputError(f"history columns must have the same length, got {lengths}")
    return cols


def record_run(
    root: str | os.PathLike[str],
    *,
    config: Mapping[str, Any],
    history_columns: Mapping[str, Sequence[Any]],
    result_summary: Mapping[str, Any],
    params: Any = None,
    snapshots: Mapping[str, Any] | None = None,
    diagnostics: Mapping[str, Any] | None = None,
    env: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    started: bool = False,
) -> Run:
    """Write one run folder atomically under ``root`` and add it to the index.

    With ``started``, the folder ``root/run_id`` may already exist as a run the command line
    started before its work (it holds ``command.json`` and checkpoints, :mod:`descend.resume`):
    its record is written into it (or replaces the record of an interrupted run), file by file,
    each in one rename, ``result.json`` removed first and written last, so the folder is never
    seen as a run with a half-written record.

    Args:
        root: the records folder (created when missing).
        config: what was asked (problem, rule, lr, stop, ...); objects are stored as their repr.
            A ``label`` key names the run in legends; ``problem`` names it in listings.
        history_columns: columns of equal length, e.g. ``History.columns`` plus per-epoch or
            validation columns (names starting with ``val_`` are drawn as validation curves);
            written as ``history.parquet`` (:mod:`descend.histfile`).
        result_summary: at least ``loss``, ``nit`` and ``reason``; see ``RESULT_FIELDS``.
        params: the final parameters (tensors or a state_dict), saved with ``torch.save``.
        snapshots: iterates for the heatmap, as :meth:`descend.observers.Snapshots.data` gives.
        diagnostics: what ``diagnose`` found (plain data), shown by the report.
        env: the environment; default :func:`environment` now.
        run_id: the id; default ``YYYYmmdd-HHMMSS-xxxx`` (UTC time and 4 random hex digits).
        started: complete the started run ``run_id`` (see above).

    Returns:
        The :class:`Run` as written.

    Raises:
        InputError: on a malformed id or columns, or when ``run_id`` already exists in ``root``
            (an existing run is never overwritten).
    """
    root = Path(root)
    cols = _check_columns(history_columns)
    for key in ("loss", "nit", "reason"):
        if key not in result_summary:
            raise InputError(f"result_summary needs a {key!r} entry, got keys "
                             f"{sorted(result_summary)}")
    if run_id is not None and not _ID.match(run_id):
        raise InputError(f"run id must be 1-100 letters, digits, '.', '_' or '-' and start with "
                         f"a letter or digit, got {run_id!r}")
    root.mkdir(parents=True, exist_ok=True)
    rid = run_id or _new_id()
    while run_id is None and (root / rid).exists():
        rid = _new_id()
    final = root / rid
    from .histfile import summary

    result_d = {**result_summary, "history": summary(cols)}  # what `runs show` prints
    if started and (final / "command.json").is_file():
        return _complete(root, final, config, env, cols, params, snapshots, diagnostics,
                         result_d)
    if final.exists():
        raise InputError(f"run {rid!r} already exists in {root}; records are never "
                         f"overwritten: pick another id or remove it with "
                         f"`descend runs rm {rid}`")
    env_d = dict(env) if env is not None else environment()
    try:
        with atomic_folder(final) as tmp:
            _write_record(tmp, config, env_d, cols, params, snapshots, diagnostics, result_d)
    except FileExistsError:  # taken while we wrote: keep the other run, never overwrite
        raise InputError(f"run {rid!r} already exists in {root}; records are never "
                         f"overwritten") from None
    return _indexed(root, rid)


def _write_record(tmp: Path, config: Any, env: Any, cols: Any, params: Any, snapshots: Any,
                  diagnostics: Any, summary: Any) -> None:
    """The record's files into the folder ``tmp``; ``result.json`` last: a folder without it
    is never taken for a run."""
    _write_json(tmp / "config.json", config)
    _write_json(tmp / "environment.json", env)
    _write_history(tmp / "history.parquet", cols)
    if params is not None:
        _write_torch(tmp / "params.pt", params)
    if snapshots is not None:
        _write_torch(tmp / "snapshots.pt", dict(snapshots))
    if diagnostics is not None:
        _write_json(tmp / "diagnostics.json", diagnostics)
    _write_json(tmp / "result.json", summary)


def _indexed(root: Path, rid: str) -> Run:
    """The run ``rid`` just written, entered in the index. The folder is the record: a locked
    or damaged index heals at the next listing."""
    run = open_run(root, rid)
    with contextlib.suppress(sqlite3.Error), _index(root) as db:
        db.execute("DELETE FROM runs WHERE id = ?", (rid,))  # a stale row of a removed folder
        db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?)", _row(run))
    return run


def _complete(root: Path, final: Path, config: Any, env: Any, cols: Any, params: Any,
              snapshots: Any, diagnostics: Any, summary: Any) -> Run:
    """Write the record into the started run folder ``final`` (see :func:`record_run`)."""
    for old in final.glob(".tmp-record-*"):  # of an earlier writer, killed
        if old.is_dir() and _writer_gone(old.name, ".tmp-record-"):
            shutil.rmtree(old, ignore_errors=True)
    tmp = final / f".tmp-record-{os.getpid()}-{secrets.token_hex(3)}"
    tmp.mkdir()
    try:
        _write_record(tmp, config, dict(env) if env is not None else environment(), cols,
                      params, snapshots, diagnostics, summary)
        _fsync_tree(tmp)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(final / "result.json")  # no longer a run until the new record is whole
        _fsync_dir(final)
        names = sorted(p.name for p in tmp.iterdir() if p.name != "result.json")
        for name in [*names, "result.json"]:
            os.replace(tmp / name, final / name)
        _fsync_dir(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _indexed(root, final.name)


# ---------------------------------------------------------------------------- reading


def load_weights(path: Path, what: str, *, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never
    pickled code. A damaged, empty or crafted file is an :class:`InputError` in one line."""
    import pickle

    import torch

    try:
        with warnings.catch_warnings():  # a crafted file's pickle protocol warns: one line only
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError, KeyError,
            AttributeError, ImportError, IndexError, TypeError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = ("it is empty" if path.is_file() and path.stat().st_size == 0 else
               "it holds something besides tensors (a crafted or foreign pickle), refused by "
               "torch.load(weights_only=True)" if "Weights only load failed" in str(e) else
               (lines[0] if lines else type(e).__name__))
        raise InputError(f"cannot load {what}: {path.name} is damaged or not a descend file "
                         f"({why[:200]})") from None


def _read_json(path: Path) -> Any:
    with path.open() as fh:
        return json.load(fh)


def run_path(root: str | os.PathLike[str], ref: str | os.PathLike[str]) -> Path:
    """The folder of the run ``ref``: a run id in ``root``, any unique prefix of one, or the
    path of a run folder.

    Raises:
        InputError: when there is no such run, or when a prefix matches several runs (the
            message lists them).
    """
    root = Path(root)
    ref_s = os.fspath(ref)
    if _ID.match(ref_s) and _is_run(root / ref_s):
        return root / ref_s
    if _ID.match(ref_s) and not Path(ref_s).exists():
        ids = sorted(p.name for p in root.glob(f"{glob.escape(ref_s)}*") if _is_run(p)) \
            if root.is_dir() else []
        if len(ids) == 1:
            return root / ids[0]
        if ids:
            shown = ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "")
            raise InputError(f"run id prefix {ref_s!r} is ambiguous: it matches {len(ids)} runs "
                             f"in {root}: {shown}; give more of the id")
        raise InputError(f"no run {ref_s!r} in {root} (`descend runs list --runs {root}` "
                         f"shows the ids)")
    path = Path(ref_s)
    if not (path / "result.json").is_file():
        raise InputError(f"no run at {ref_s!r}: a run folder holds result.json (`descend runs "
                         f"list --runs {root}` shows the ids in {root})")
    return path


def open_run(root: str | os.PathLike[str], ref: str | os.PathLike[str]) -> Run:
    """Read a run: ``ref`` is a run id in ``root``, any unique prefix of one, or the path of a
    run folder. Its history is read later, when asked for.

    Raises:
        InputError: when there is no such run, or when a prefix matches several runs.
    """
    path = run_path(root, ref)
    diag = path / "diagnostics.json"
    try:
        run = Run(
            id=path.name,
            path=path,
            config=_read_dict(path / "config.json"),
            environment=_read_dict(path / "environment.json"),
            result=_read_dict(path / "result.json"),
            diagnostics=_read_dict(diag) if diag.exists() else None,
        )
    except (OSError, ValueError) as e:
        raise InputError(f"run {path.name} is damaged: {_why(e)}; `descend runs rm "
                         f"{path.name}` removes it") from None
    return run


def _read_dict(path: Path) -> dict[str, Any]:
    try:
        out = _read_json(path)
    except ValueError as e:
        raise ValueError(f"{path.name} is not valid JSON ({e})") from None
    if not isinstance(out, dict):
        raise ValueError(f"{path.name} holds no JSON object")
    return out


def _why(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError):
        return f"{Path(e.filename or '?').name} is missing"
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:200]


# ---------------------------------------------------------------------------- the index


#: Seconds to wait for a lock on the index before reading the run folders instead.
INDEX_TIMEOUT = 2.0


@contextlib.contextmanager
def _index(root: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(root / INDEX, timeout=INDEX_TIMEOUT)
    try:
        with db:  # one transaction: committed on success, rolled back on error
            db.execute(_SCHEMA)
            yield db
    finally:
        db.close()


def _row(run: Run) -> tuple[Any, ...]:
    r, c = run.result, run.config
    loss = r.get("loss")
    return (run.id, run.environment.get("created", ""), str(c.get("problem", "")),
            str(r.get("rule", c.get("rule", ""))), str(r.get("step", c.get("step", ""))),
            int(r.get("nit", 0)), float(loss) if isinstance(loss, (int, float)) else math.nan,
            str(r.get("reason", "")), int(bool(r.get("success", False))), run.label)


def _is_run(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".") and (path / "result.json").is_file()


def _sweep_tmp(root: Path) -> None:
    """Remove hidden temporary folders (``.tmp-ID-PID-XXXXXX``) and trash
    (``.trash-ID-PID-XXXXXX``) whose writer process is gone, in a records folder only (one
    holding ``index.sqlite``): nothing of another form, and nothing in another folder."""
    if not (root / INDEX).is_file():
        return
    for prefix in (".tmp-", ".trash-"):
        for p in root.glob(f"{prefix}*"):
            if p.is_dir() and _writer_gone(p.name, prefix):
                shutil.rmtree(p, ignore_errors=True)


def _readable(path: Path) -> bool:
    """Whether the run folder's result.json still reads as a JSON object (a cheap check of an
    indexed run: a damaged one is listed as damaged, not from its stale index row)."""
    try:
        _read_dict(path / "result.json")
    except (OSError, ValueError):
        return False
    return True


def _damaged_row(rid: str, why: str) -> dict[str, Any]:
    return {"id": rid, "created": "", "problem": "", "rule": "", "step": "", "nit": 0,
            "loss": math.nan, "reason": "damaged", "success": False, "label": why}


def _rows_of_folders(root: Path, folders: set[str]) -> tuple[list[tuple[Any, ...]],
                                                              list[dict[str, Any]]]:
    """Index rows read from the run folders, and rows for the damaged ones."""
    rows, damaged = [], []
    for rid in sorted(folders):
        try:
            rows.append(_row(open_run(root, rid)))
        except (OSError, ValueError, TypeError) as e:  # InputError is a ValueError
            damaged.append(_damaged_row(rid, str(e)))
    return rows, damaged


def _rebuild_index(root: Path, rows: list[tuple[Any, ...]]) -> None:
    """Write a new index from ``rows`` into a temporary file and rename it over the old one."""
    tmp = root / f".{INDEX}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        db = sqlite3.connect(tmp)
        try:
            with db:
                db.execute(_SCHEMA)
                db.executemany("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        finally:
            db.close()
        os.replace(tmp, root / INDEX)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def list_runs(root: str | os.PathLike[str], *,
              notes: list[str] | None = None) -> list[dict[str, Any]]:
    """The runs in ``root``, oldest first, as index rows (dicts with the keys ``id``,
    ``created``, ``problem``, ``rule``, ``step``, ``nit``, ``loss``, ``reason``, ``success``,
    ``label``). The index is first reconciled with the folders.

    The folders are the truth: a run folder that cannot be read is listed with reason
    ``damaged`` (its label says why), the others as usual; a damaged index is rebuilt from the
    folders, and a locked one (held longer than :data:`INDEX_TIMEOUT` seconds) is bypassed by
    reading the folders; either way a one-line note is appended to ``notes``.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    _sweep_tmp(root)
    folders = {p.name for p in root.iterdir() if _is_run(p)}
    if not folders and not (root / INDEX).exists():
        return []  # not a records folder: nothing is created in it
    damaged: list[dict[str, Any]] = []
    try:
        with _index(root) as db:
            indexed = {r[0] for r in db.execute("SELECT id FROM runs")}
            broken = {rid for rid in indexed & folders if not _readable(root / rid)}
            for rid in (indexed - folders) | broken:
                db.execute("DELETE FROM runs WHERE id = ?", (rid,))
            new, damaged = _rows_of_folders(root, (folders - indexed) | broken)
            db.executemany("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?)", new)
            cur = db.execute("SELECT * FROM runs ORDER BY created, id")
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
    except sqlite3.Error as e:
        fresh, damaged = _rows_of_folders(root, folders)
        locked = isinstance(e, sqlite3.OperationalError) and "locked" in str(e)
        if locked:
            note = (f"the index {root / INDEX} is locked by another process; listed the runs "
                    "from their folders")
        else:
            _rebuild_index(root, fresh)
            note = (f"the index {root / INDEX} was damaged ({_why(e)}); rebuilt it from the "
                    f"{len(fresh)} run folders")
        if notes is not None:
            notes.append(note)
        names = list(FIELDS_INDEX)
        rows = [dict(zip(names, r)) for r in fresh]
    for r in rows:
        r["success"] = bool(r["success"])
    if damaged and notes is not None:
        notes.append(f"{len(damaged)} run folder(s) in {root} are damaged: "
                     f"{', '.join(d['id'] for d in damaged[:5])}; `descend runs show ID` says "
                     "why, `descend runs rm ID` removes one")
    return sorted(rows + damaged, key=lambda r: (r["created"], r["id"]))


def remove_run(root: str | os.PathLike[str], run_id: str) -> str:
    """Remove a run (``run_id``: its id or any unique prefix of one): its folder disappears in
    one rename, then its index row and files go. Returns the removed run's id.

    Raises:
        InputError: when there is no such run, or when a prefix matches several runs.
    """
    root = Path(root)
    if not _ID.match(run_id):
        raise InputError(f"no run {run_id!r} in {root} (`descend runs list --runs {root}` "
                         f"shows the ids)")
    path = run_path(root, run_id)
    if path.parent != root:  # a folder path that happens to look like an id
        raise InputError(f"no run {run_id!r} in {root} (`descend runs list --runs {root}` "
                         f"shows the ids)")
    rid = path.name
    trash = root / f".trash-{rid}-{os.getpid()}-{secrets.token_hex(3)}"
    os.rename(root / rid, trash)
    with contextlib.suppress(sqlite3.Error), _index(root) as db:  # else healed when listed
        db.execute("DELETE FROM runs WHERE id = ?", (rid,))
    shutil.rmtree(trash, ignore_errors=True)
    return rid
