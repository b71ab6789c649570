"""The ``descend runs`` commands: list (as a table or JSON, filtered, sorted, cut), show,
compare, rm and export, and the records folder every command writes to.

They read run records only (``store``; ``export`` for the formats of other tools): none of them
imports torch, so they start in a fraction of ``import torch``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["FIELDS", "add_runs_parser", "descending", "records"]


def records(a: argparse.Namespace) -> Path:
    """The records folder of a command: its --runs, else $DESCEND_RUNS, else runs."""
    from .store import records_root

    return records_root(a.runs or True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4e}" if math.isfinite(v) and v != 0 and not 1e-3 <= abs(v) < 1e4 \
            else f"{v:.6g}"
    return str(v)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


#: ``--csv`` given without a folder
_ONE_FILE = ""
#: the fields of ``runs list`` (the index's columns), for --json, --filter and --sort
FIELDS = ("id", "created", "problem", "rule", "step", "nit", "loss", "reason", "success",
          "label")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _field_value(key: str, text: str) -> Any:
    """``text`` as a value of the field ``key``: whole numbers for nit, numbers for loss,
    true/false for success, text otherwise."""
    if key == "success":
        if text.lower() not in _TRUE + _FALSE:
            raise argparse.ArgumentTypeError(f"success takes true or false, got {text!r}")
        return text.lower() in _TRUE
    try:
        return int(text) if key == "nit" else float(text) if key == "loss" else text
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{key} takes {'a whole number' if key == 'nit' else 'a number'}, got {text!r}"
        ) from None


def _filter(text: str) -> tuple[str, Any]:
    """argparse type of ``--filter``: ``KEY=VALUE`` on a listed field."""
    key, eq, value = text.partition("=")
    key = key.strip()
    if not eq:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. reason=converged, got "
                                         f"{text!r}")
    if key not in FIELDS:
        raise argparse.ArgumentTypeError(f"unknown key {key!r}; keys: {', '.join(FIELDS)}")
    return key, _field_value(key, value)


def _sort_key(text: str) -> str:
    """argparse type of ``--sort``: a listed field, with ``-`` in front for descending."""
    if text.lstrip("-") not in FIELDS:
        raise argparse.ArgumentTypeError(f"unknown key {text.lstrip('-')!r}; keys: "
                                         f"{', '.join(FIELDS)} (prefix - for descending)")
    return text


def _count(text: str) -> int:
    """argparse type of ``--limit``: a whole number >= 0."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: give a whole number >= 0")
    return n


def _matches(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, float) and isinstance(value, (int, float)):
        return value == wanted or (math.isnan(wanted) and math.isnan(value))
    return bool(value == wanted)


def _select(rows: list[dict[str, Any]], a: argparse.Namespace) -> list[dict[str, Any]]:
    """``rows`` filtered (every --filter holds), sorted by --sort, cut to --limit."""
    rows = [r for r in rows if all(_matches(r[k], v) for k, v in a.filter)]
    if a.sort:
        key, desc = a.sort.lstrip("-"), a.sort.startswith("-")
        missing = [r for r in rows if r[key] is None or r[key] != r[key]]  # NaN: last
        present = [r for r in rows if not (r[key] is None or r[key] != r[key])]
        rows = sorted(present, key=lambda r: r[key], reverse=desc) + missing
    return rows if a.limit is None else rows[:a.limit]


def _json_row(r: dict[str, Any]) -> dict[str, Any]:
    # strict JSON has no NaN or infinity: a loss that is not finite is written as null
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in r.items()}


def _runs_list(a: argparse.Namespace) -> int:
    import json
    import sys

    from .store import list_runs

    root = records(a)
    notes: list[str] = []
    rows = _select(list_runs(root, notes=notes), a)
    for note in notes:
        print(f"descend runs: note: {note}", file=sys.stderr)
    if a.json:
        print(json.dumps([_json_row(r) for r in rows], indent=1))
        return 0
    if not rows:
        print(f"no runs in {root}" + (" match" if a.filter else ""))
        return 0
    out = [["id", "when (UTC)", "problem", "rule", "step", "iterations", "final loss", "reason"]]
    for r in rows:
        out.append([r["id"], r["created"].replace("T", " ").rstrip("Z")[:16], r["problem"],
                    r["rule"], r["step"], str(r["nit"]), _fmt(r["loss"]), r["reason"]])
    print(_table(out))
    return 0


def _runs_show(a: argparse.Namespace) -> int:
    from .store import open_run

    r = open_run(records(a), a.id)
    R, h = r.result, r.history_summary  # the summary in result.json: the history is not read
    first = h.get("first_loss")
    print(f"run {r.id}  ({r.path})")
    rows = [
        ["label", r.label],
        ["created", str(r.environment.get("created", ""))],
        ["problem", str(r.config.get("problem", ""))],
        ["stopped", f"{R.get('reason')} ({'success' if R.get('success') else 'no success'}): "
                    f"{R.get('message', '')}"],
        ["iterations", f"{R.get('nit')} ({R.get('nfev')} evaluations, "
                       f"{_fmt(R.get('seconds'))} s)"],
        ["loss", (f"{_fmt(first)} -> {_fmt(R.get('loss'))}" if h["rows"] and first is not None
                  else _fmt(R.get("loss"))) + f" (best {_fmt(R.get('best_loss'))})"],
        ["history", f"{h['rows']} rows: {', '.join(h['columns'])}"],
    ]
    rows += [[f"config.{k}", _fmt(v)] for k, v in r.config.items()]
    rows += [[f"env.{k}", " ".join(v) if isinstance(v, list) else _fmt(v)]
             for k, v in r.environment.items()]
    if r.diagnostics:
        rows += [[f"diagnostics.{k}", _fmt(v)] for k, v in r.diagnostics.items()]
    rows.append(["files", " ".join(sorted(p.name for p in r.path.iterdir()))])
    print(_table(rows))
    return 0


def _runs_compare(a: argparse.Namespace) -> int:
    from .store import open_run

    root = records(a)
    runs = [open_run(root, i) for i in a.ids]
    keys = ["label", "problem", "rule", "step", "nit", "nfev", "loss", "best_loss", "reason",
            "success", "seconds"]
    cfg_keys = [k for k in dict.fromkeys(k for r in runs for k in r.config)
                if k not in ("label", "problem", "rule", "step")]
    out = [["", *[r.id for r in runs]]]
    for k in keys:
        vals = [r.label if k == "label" else r.result.get(k, r.config.get(k, "")) for r in runs]
        out.append([k, *[_fmt(v) for v in vals]])
    for k in cfg_keys:
        out.append([f"config.{k}", *[_fmt(r.config.get(k, "")) for r in runs]])
    print(_table(out))
    return 0


def _runs_rm(a: argparse.Namespace) -> int:
    from .store import remove_run, run_path

    root = records(a)
    ids = [run_path(root, i).name for i in a.ids]  # all must exist before any is removed
    for i in dict.fromkeys(ids):
        print(f"removed {remove_run(root, i)}")
    return 0


def _runs_export(a: argparse.Namespace) -> int:
    from .errors import InputError
    from .export import check_format, export_csv, export_runs
    from .store import open_run

    root = records(a)
    if a.csv == _ONE_FILE:  # --csv without DIR: one run's history as one file
        if len(a.ids) != 1:
            raise InputError(f"--csv without a folder writes one run's history, got "
                             f"{len(a.ids)} runs; give one run, or a folder: --csv DIR")
        run = open_run(root, a.ids[0])
        if a.output in (None, "-"):
            export_csv(run, sys.stdout)
        else:
            path = export_csv(run, a.output, overwrite=a.overwrite)
            print(f"exported run {run.id} to {path} (csv)")
        return 0
    if a.output is not None:
        raise InputError("-o FILE goes with --csv alone (one run's history as one file); "
                         "--csv DIR and --to FORMAT DIR write a folder")
    to, folder = (a.to[0], a.to[1]) if a.to else ("csv", a.csv)
    check_format(to)  # before the runs are read: a missing library is the first thing said
    runs = [open_run(root, i) for i in a.ids]
    path = export_runs(runs, to, folder, overwrite=a.overwrite)
    print(f"exported {len(runs)} run{'s' if len(runs) != 1 else ''} to {path} ({to})")
    if to == "tensorboard":
        print(f"view: tensorboard --logdir {path}")
    elif to == "mlflow":
        print(f"view: MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri "
              f"{path.resolve().as_uri()}")
    return 0


def add_runs_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``descend runs ...`` to the sub-command parsers ``sub``; ``common`` holds --runs."""
    r = sub.add_parser("runs", help="list, show, compare, remove or export recorded runs",
                       description="The run records in the records folder.")
    rsub = r.add_subparsers(dest="action", required=True, metavar="ACTION")
    rl = rsub.add_parser("list", parents=[common], help="a table of the runs, oldest first",
                         description="The runs in the records folder, oldest first. Keys of "
                         f"--filter and --sort: {', '.join(FIELDS)}.")
    rl.add_argument("--json", action="store_true",
                    help="print one JSON array of the runs' fields instead of the table")
    rl.add_argument("--filter", type=_filter, action="append", default=[], metavar="KEY=VALUE",
                    help="only runs whose KEY equals VALUE, e.g. reason=converged or rule=lbfgs "
                    "(repeatable: all must hold)")
    rl.add_argument("--sort", type=_sort_key, metavar="KEY",
                    help="sort by KEY, e.g. loss; -KEY for descending, e.g. -nit")
    rl.add_argument("--limit", type=_count, metavar="N", help="at most N runs")
    rl.set_defaults(run=_runs_list)
    rs = rsub.add_parser("show", parents=[common], help="everything recorded about one run")
    rs.add_argument("id", metavar="ID", help="a run id, a unique prefix of one, or a run folder")
    rs.set_defaults(run=_runs_show)
    rc = rsub.add_parser("compare", parents=[common], help="runs side by side")
    rc.add_argument("ids", nargs="+", metavar="ID", help="run ids or unique prefixes of them")
    rc.set_defaults(run=_runs_compare)
    rr = rsub.add_parser("rm", parents=[common], help="remove runs (folder and index row)")
    rr.add_argument("ids", nargs="+", metavar="ID", help="run ids or unique prefixes of them")
    rr.set_defaults(run=_runs_rm)
    ex = rsub.add_parser("export", parents=[common], help="write runs for TensorBoard, MLflow "
                         "or as CSV", description="Writes runs into a new folder: TensorBoard "
                         "event files (every history column a scalar per iteration, the config "
                         "as hyper-parameters), a local MLflow tracking folder (params, metrics "
                         "by step, the final parameters as an artifact) or CSV histories.")
    ex.add_argument("ids", nargs="+", metavar="RUN", help="run ids (or unique prefixes) or run "
                    "folders")
    to = ex.add_mutually_exclusive_group(required=True)
    to.add_argument("--to", nargs=2, metavar=("FORMAT", "DIR"),
                    help="tensorboard DIR (needs descend[tensorboard]) or mlflow DIR (needs "
                    "descend[mlflow]) or csv DIR")
    to.add_argument("--csv", metavar="DIR", nargs="?", const=_ONE_FILE,
                    help="the histories as DIR/<run id>.csv; without DIR, one run's history "
                    "to standard output or to -o FILE")
    ex.add_argument("-o", "--output", metavar="FILE",
                    help="with --csv and no DIR: write the history to FILE")
    ex.add_argument("--overwrite", action="store_true", help="replace DIR (or FILE) if it "
                    "exists")
    ex.set_defaults(run=_runs_export)


def descending(argv: list[str]) -> list[str]:
    """``--sort -loss`` as ``--sort=-loss``: argparse would take ``-loss`` for an option."""
    out: list[str] = []
    for tok in argv:
        if out and out[-1] == "--sort" and tok[:1] == "-" and tok[:2] != "--":
            out[-1] = f"--sort={tok}"
        else:
            out.append(tok)
    return out
