"""Run records out to other tools: TensorBoard event files, a local MLflow tracking folder, CSV.

    descend runs export RUN... --to tensorboard DIR   # DIR/<run id>/events.out.tfevents.*
    descend runs export RUN... --to mlflow DIR        # file: tracking folder, experiment "descend"
    descend runs export RUN... --csv DIR              # DIR/<run id>.csv, the history
    descend runs export RUN --csv [-o FILE]           # one run's history to FILE (or stdout)

Every history column (but ``iteration``, which is the step) becomes a scalar or metric per
iteration; the config becomes hyper-parameters (TensorBoard) or params (MLflow); MLflow also
gets the final parameters (``params.pt``) as an artifact. Each library is an optional extra,
imported only here: ``pip install 'descend[tensorboard]'`` or ``'descend[mlflow]'``.

The target folder is written whole or not at all (:func:`~descend.store.atomic_folder`); an
existing one is refused unless ``overwrite`` is true, and then replaced in one rename.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import secrets
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from .errors import InputError
from .histfile import copy_csv
from .store import Run, atomic_folder

__all__ = ["FORMATS", "check_format", "export_csv", "export_runs"]

#: format -> (the module it needs, the extra that installs it); csv needs nothing
FORMATS: dict[str, tuple[str | None, str | None]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "mlflow": ("mlflow", "mlflow"),
    "csv": (None, None),
}
EXPERIMENT = "descend"
_MLFLOW_PARAM_MAX = 6000  # MLflow's limit on a param value's length
_MLFLOW_BATCH = 1000  # MLflow's limit on metrics per log_batch


def check_format(to: str) -> None:
    """Raise :class:`InputError` unless ``to`` is a known format whose library is installed."""
    if to not in FORMATS:
        raise InputError(f"unknown export format {to!r}; known formats: {', '.join(FORMATS)}")
    module, extra = FORMATS[to]
    if module is not None and importlib.util.find_spec(module) is None:
        raise InputError(f"exporting to {to} needs the {module} package: "
                         f"pip install 'descend[{extra}]'")


def export_runs(runs: Sequence[Run], to: str, folder: str | os.PathLike[str], *,
                overwrite: bool = False) -> Path:
    """Write ``runs`` into ``folder`` in the format ``to`` (tensorboard, mlflow or csv).

    Args:
        runs: the runs, as :func:`descend.store.open_run` reads them.
        to: ``"tensorboard"``, ``"mlflow"`` or ``"csv"``.
        folder: the folder to create (a TensorBoard log folder, an MLflow tracking folder, or a
            folder of CSV files).
        overwrite: replace ``folder`` if it exists (atomically).

    Returns:
        The folder written.

    Raises:
        InputError: on an unknown format, a missing library, no runs, two runs with the same
            id, or an existing ``folder`` without ``overwrite``; checked before anything is
            written.
    """
    check_format(to)
    final = Path(folder)
    if not runs:
        raise InputError("no runs to export")
    ids = [r.id for r in runs]
    if len(set(ids)) < len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise InputError(f"run {dup[0]!r} is given twice; each run is exported once")
    if final.exists() and not overwrite:
        raise InputError(f"{final} already exists; pass --overwrite to replace it")
    if final.exists() and not final.is_dir():
        raise InputError(f"{final} is a file, not a folder; export into a folder")
    writer = {"tensorboard": _tensorboard, "mlflow": _mlflow, "csv": _csv}[to]
    with atomic_folder(final, overwrite=overwrite) as tmp:
        writer(runs, tmp, final)
    return final


def export_csv(run: Run, out: str | os.PathLike[str] | TextIO, *,
               overwrite: bool = False) -> Path | None:
    """Write the history of ``run`` as one CSV file (header, one line per row, floats exact)
    to the path ``out`` (replaced atomically; refused when it exists unless ``overwrite``) or
    to the text stream ``out``. Returns the path, or None for a stream.

    Raises:
        InputError: when ``out`` exists without ``overwrite``, is a folder, or its folder is
            missing; checked before anything is written.
    """
    if not isinstance(out, (str, os.PathLike)):
        copy_csv(run.path, out)
        return None
    path = Path(out)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name, e.g. {path / (run.id + '.csv')}")
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists; pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: the folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(3)}.tmp")
    try:
        copy_csv(run.path, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------------------- what to write


def _steps(run: Run) -> list[int]:
    h = run.history
    n = len(next(iter(h.values()), []))
    its = h.get("iteration")
    return [int(v) for v in its] if its is not None else list(range(n))


def _series(run: Run) -> dict[str, list[float | None]]:
    """The numeric history columns but ``iteration``: a float per row, None where a value is
    not a number (an empty cell)."""
    out: dict[str, list[float | None]] = {}
    for name, col in run.history.items():
        if name == "iteration":
            continue
        vals = [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
                for v in col]
        if any(v is not None for v in vals):
            out[name] = vals
    return out


def _start(run: Run) -> float:
    """The run's start as seconds since the epoch (its recorded creation time)."""
    created = str(run.environment.get("created", ""))
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    return (run.path / "result.json").stat().st_mtime


def _times(run: Run) -> list[float]:
    """Wall time of each history row: the start plus the ``time`` column when there is one."""
    t0, steps = _start(run), _steps(run)
    col = run.history.get("time")
    if col is None:
        return [t0] * len(steps)
    return [t0 + (float(v) if isinstance(v, (int, float)) and math.isfinite(v) else 0.0)
            for v in col]


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config as flat ``key: bool | int | float | str`` pairs (nested keys joined by '.')."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        elif v is None or isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


def _hparams(run: Run) -> dict[str, Any]:
    out = _flat(run.config)
    out.setdefault("rule", run.result.get("rule", ""))
    out.setdefault("step", run.result.get("step", ""))
    return out


# ---------------------------------------------------------------------------- the writers


def _csv(runs: Sequence[Run], tmp: Path, final: Path) -> None:
    for r in runs:
        copy_csv(r.path, tmp / f"{r.id}.csv")


def _tensorboard(runs: Sequence[Run], tmp: Path, final: Path) -> None:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    def event(summary: Any, step: int, wall_time: float) -> Any:
        return event_pb2.Event(wall_time=wall_time, step=step, summary=summary)

    metrics = sorted({name for r in runs for name in _series(r)})
    for r in runs:
        writer = EventFileWriter(str(tmp / r.id), max_queue_size=1000, flush_secs=3600)
        try:
            t0, params = _start(r), _hparams(r)
            config = hp.hparams_config_pb([hp.HParam(k) for k in params],
                                          [hp.Metric(m) for m in metrics],
                                          time_created_secs=t0)
            writer.add_event(event(config, 0, t0))
            writer.add_event(event(hp.hparams_pb(params, trial_id=r.id, start_time_secs=t0),
                                   0, t0))
            series, steps, times = _series(r), _steps(r), _times(r)
            for i, (step, wall) in enumerate(zip(steps, times)):
                values = [summary_pb2.Summary.Value(tag=name, simple_value=col[i])
                          for name, col in series.items() if col[i] is not None]
                if values:
                    writer.add_event(event(summary_pb2.Summary(value=values), step, wall))
        finally:
            writer.close()


@contextlib.contextmanager
def _file_store_allowed() -> Iterator[None]:
    """Recent MLflow refuses a ``file:`` store unless ``MLFLOW_ALLOW_FILE_STORE`` is set: set
    it while we write, and put the environment back as it was."""
    old = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = old


def _mlflow(runs: Sequence[Run], tmp: Path, final: Path) -> None:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    with _file_store_allowed():
        client = MlflowClient(tracking_uri=tmp.resolve().as_uri())
        exp = client.create_experiment(EXPERIMENT)
        for r in runs:
            t0 = _start(r)
            tags = {"mlflow.runName": r.id, "descend.run_id": r.id,
                    "descend.reason": str(r.result.get("reason", "")),
                    "descend.success": str(bool(r.result.get("success", False))).lower()}
            run = client.create_run(exp, start_time=int(t0 * 1000), tags=tags, run_name=r.id)
            rid = run.info.run_id
            params = [Param(k, str(v)[:_MLFLOW_PARAM_MAX]) for k, v in _hparams(r).items()]
            metrics = [Metric(name, v, int(wall * 1000), step)
                       for name, col in _series(r).items()
                       for v, step, wall in zip(col, _steps(r), _times(r)) if v is not None]
            for i in range(0, max(len(params), 1), 100):  # MLflow takes 100 params a batch
                client.log_batch(rid, params=params[i:i + 100])
            for i in range(0, len(metrics), _MLFLOW_BATCH):
                client.log_batch(rid, metrics=metrics[i:i + _MLFLOW_BATCH])
            client.log_batch(rid, tags=[RunTag("descend.label", r.label)])
            if (r.path / "params.pt").is_file():
                client.log_artifact(rid, str(r.path / "params.pt"))
            seconds = r.result.get("seconds")
            end = t0 + (seconds if isinstance(seconds, (int, float)) else 0.0)
            client.set_terminated(rid, "FINISHED", end_time=int(end * 1000))
    # The store writes absolute artifact locations: point them at the folder's final place.
    old, new = tmp.resolve().as_uri(), final.resolve().as_uri()
    for meta in tmp.rglob("meta.yaml"):
        text = meta.read_text()
        if old in text:
            meta.write_text(text.replace(old, new))
