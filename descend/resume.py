"""Resumable runs of the command line: a recorded ``descend fit`` starts its run folder before
the work, checkpoints into it, and ``descend resume RUN`` continues it.

A started run folder (``runs/<id>/``) holds ``command.json`` (the command's arguments and
working folder) and ``checkpoint/`` (:mod:`descend.checkpoint`); it is no run record until its
``result.json`` is written (:func:`descend.store.record_run` with ``started``), so listings do
not show it while it runs. An interrupted run (SIGINT, SIGTERM) is recorded with reason
``interrupted``; a killed one has no record yet. ``descend resume RUN`` runs the same command
again from the latest whole checkpoint, in the same folder, and completes the same record.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["add_resume_parser", "find_started", "start_run"]

COMMAND = "command.json"


def start_run(root: Path, argv: list[str]) -> Path:
    """Create the run folder of a command about to run (``command.json`` written whole); the
    checkpoints say how to resume it once the run starts (after every check)."""
    from .store import _new_id

    root.mkdir(parents=True, exist_ok=True)
    rid = _new_id()
    while (root / rid).exists():
        rid = _new_id()
    folder = root / rid
    folder.mkdir()
    tmp = folder / f".tmp-{COMMAND}-{secrets.token_hex(3)}"
    with open(tmp, "w") as fh:
        json.dump({"argv": list(argv), "cwd": os.getcwd()}, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / COMMAND)
    return folder


def find_started(root: Path, ref: str) -> Path:
    """The started run folder ``ref``: an id in ``root``, a unique prefix of one, or a path.

    Raises:
        InputError: no such run, an ambiguous prefix, or a run that was not started by a
            resumable command.
    """
    path = Path(ref)
    if not (path / COMMAND).is_file():
        path = root / ref
    if not (path / COMMAND).is_file():
        ids = sorted(p.name for p in root.glob(f"{ref}*") if (p / COMMAND).is_file()) \
            if root.is_dir() and "/" not in ref else []
        if len(ids) > 1:
            raise InputError(f"run id prefix {ref!r} is ambiguous: it matches {', '.join(ids)}; "
                             "give more of the id")
        if not ids:
            what = "no run" if not (root / ref).exists() else "not a resumable run (no " \
                f"{COMMAND}: only recorded `descend fit` runs resume)"
            raise InputError(f"{what} {ref!r} in {root} (`descend runs list --runs {root}` "
                             "shows the ids)")
        path = root / ids[0]
    return path


def _resume(a: argparse.Namespace) -> int:
    from .runs import records

    root = records(a)
    folder = find_started(root, a.ref)
    result = folder / "result.json"
    reason = "interrupted"
    if result.is_file():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            reason = json.loads(result.read_text()).get("reason")
    if reason != "interrupted":
        raise InputError(f"run {folder.name} finished ({reason}); nothing to resume")
    try:
        cmd = json.loads((folder / COMMAND).read_text())
        argv, cwd = [str(v) for v in cmd["argv"]], str(cmd["cwd"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{folder / COMMAND} is damaged; the run cannot be resumed") from None
    a2 = a.parser.parse_args(argv)
    a2.argv, a2.started = argv, folder.resolve()
    a2.runs = str(folder.parent.resolve())
    here = os.getcwd()
    if cwd != here and os.path.isdir(cwd):
        os.chdir(cwd)  # the command's relative paths are relative to where it ran
    try:
        return int(a2.run(a2))
    finally:
        os.chdir(here)


def add_resume_parser(sub: Any, common: argparse.ArgumentParser,
                      parser: argparse.ArgumentParser) -> None:
    """Add ``descend resume RUN`` to the sub-command parsers ``sub`` of ``parser`` (which
    parses the recorded command again)."""
    r = sub.add_parser("resume", parents=[common], help="continue an interrupted or killed run "
                       "from its latest checkpoint",
                       description="Runs a recorded `descend fit` again from the latest whole "
                       "checkpoint in its run folder, with the same arguments, in the folder "
                       "it ran in; the final weights are bitwise those of an uninterrupted "
                       "run, and the run's record is completed.")
    r.add_argument("ref", metavar="RUN", help="the run id (or a unique prefix of one, or the "
                   "run folder), as `descend fit` printed it")
    r.set_defaults(run=_resume, parser=parser)
