"""The model commands of the command line: ``descend fit``, ``predict`` and ``evaluate``
(:mod:`descend.cli` parses the arguments and turns errors into one line).

``descend fit`` records its run: the run folder is started before the work (so that
``descend resume`` can continue it), checkpoints go into it, and SIGINT/SIGTERM stop the run
after the iteration with the work kept (exit 130/143).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .errors import InputError
from .i18n import _, translate
from .runs import records

__all__ = ["evaluate_command", "fit_command", "predict_command"]


def _columns(text: str | None) -> list[str] | None:
    if text is None:
        return None
    cols = [c.strip() for c in text.split(",") if c.strip()]
    if not cols:
        raise InputError(f"expected comma-separated column names, got {text!r}")
    return cols


def _fmt_scores(scores: dict[str, float], prefix: str) -> str:
    return "  ".join(f"{k[len(prefix):]} {v:.6g}" for k, v in scores.items()
                     if k.startswith(prefix))


def fit_command(a: argparse.Namespace) -> int:
    """``descend fit``; SIGINT/SIGTERM stop it after the iteration, keeping the work, exit
    130/143."""
    from .checkpoint import interrupted_by, signals

    with signals():
        code = _fit_run(a)
        sig = interrupted_by()
    return 128 + sig if sig is not None else code


def _ours(out: Path, folder: Path | None) -> bool:
    """Whether the model folder ``out`` was saved by the started run ``folder`` (resumed)."""
    import json

    try:
        return folder is not None and json.loads(
            (out / "config.json").read_text()).get("run") == folder.name
    except (OSError, ValueError, AttributeError):
        return False


def _fit_run(a: argparse.Namespace) -> int:
    import os
    import shutil
    from pathlib import Path

    from .checkpoint import LATEST, PREVIOUS, parse_every
    from .distributed import STARTED, is_main, launch
    from .fit import fit
    from .resume import start_run
    from .stops import Criterion, TimeLimit, TrainLossBelow

    out = Path(a.out)
    folder: Path | None = getattr(a, "started", None)  # set by `descend resume`
    if folder is None and os.environ.get(STARTED):  # a rank of `--nproc`: its run folder
        folder = Path(os.environ[STARTED])
    if out.exists() and not out.is_dir():  # refuse before any work
        raise InputError(f"--out {out} is a file; give a folder to save the model in")
    ours = out.exists() and _ours(out, folder)
    if out.exists() and not a.overwrite and not ours:
        raise InputError(f"{out} already exists; pass --overwrite to replace it")
    if a.checkpoint_every is not None:
        if a.no_record:
            raise InputError("--checkpoint-every needs the run record (checkpoints go into the "
                             "run folder); drop --no-record")
        parse_every(a.checkpoint_every, "--checkpoint-every")
    if a.nproc is not None:  # N local processes through torch's launcher, each running this
        argv = list(a.argv)
        i = argv.index("--nproc") if "--nproc" in argv else -1
        argv = argv[:i] + argv[i + 2:] if i >= 0 else [x for x in argv
                                                       if not x.startswith("--nproc=")]
        fresh = folder is None and not a.no_record
        if fresh:  # the run folder first, so that `descend resume` restarts the N processes
            folder = start_run(records(a), list(a.argv))
        code = launch(a.nproc, argv, started=folder)
        if fresh and code == 2 and folder is not None:
            shutil.rmtree(folder, ignore_errors=True)  # refused before it started
        return code
    stop: list[Criterion] = []
    if a.loss_below is not None:
        stop.append(TrainLossBelow(a.loss_below))
    if a.time_limit is not None:
        stop.append(TimeLimit(a.time_limit))
    val = a.val_file if a.val_file is not None else (a.val or None)
    patience = a.patience  # None: fit's automatic method decides; 0: off
    root = None if a.no_record or not is_main() else records(a)
    resume, fresh = None, False
    if root is not None and folder is None:
        folder, fresh = start_run(root, list(a.argv)), True
    elif folder is not None and any((folder / "checkpoint" / n).exists()
                                    for n in (LATEST, PREVIOUS)):
        resume = folder / "checkpoint"
    try:
        res = _fit_call(a, fit, val, stop, patience, folder, resume)
    except InputError:
        if fresh and folder is not None:
            shutil.rmtree(folder, ignore_errors=True)  # it did not start: leave nothing
        raise
    if not is_main():  # under torchrun rank 0 prints, saves and records
        return 0
    interrupted = res.reason == "interrupted"
    prep = res.preprocessing
    assert prep is not None
    _notes("fit", prep.notes)
    print(_("method: {method}").format(method=res.method))
    print(_("stopped after {epochs} epochs ({nit} iterations, {seconds:.1f} s): {message} "
            "[{reason}]").format(epochs=res.epochs, nit=res.nit, seconds=res.seconds,
                                 message=res.message, reason=res.reason))
    if interrupted:
        print(_("interrupted: saving the weights of the best epoch so far, {epoch}").format(
              epoch=res.best_epoch) if res.restored_best or res.best_epoch else
              _("interrupted before an epoch ended: saving the weights of iteration "
                "{nit}").format(nit=res.nit))
    elif res.restored_best:
        print(_("restored the weights of the best epoch, {epoch}").format(epoch=res.best_epoch))
    print(_("task: {task}, loss {loss}, l2 penalty {l2:.4g}").format(
        task=prep.task, loss=res.loss_name, l2=prep.l2))
    print(_("train: {scores}").format(scores=_fmt_scores(res.metrics, "train_")))
    if val is not None:
        print(_("val:   {scores}").format(scores=_fmt_scores(res.metrics, "val_")))
    options = {
        "lr": a.lr, "batch_size": a.batch_size or "full", "epochs": a.epochs, "val": a.val,
        "val_file": a.val_file, "patience": patience, "seed": a.seed,
        "standardize": not a.no_standardize, "one_hot": a.one_hot,
        "drop_missing": a.drop_missing, "drop_constant": a.drop_constant, "data": str(a.file),
        "task": prep.task, "l2": prep.l2, "encoding": a.encoding,
    }
    if folder is not None:
        options["run"] = folder.name
    res.save(out, overwrite=a.overwrite or ours, options=options)
    print(_("saved the model to {out}").format(out=out))
    if root is not None:
        from .fit import record_fit

        assert folder is not None
        run = record_fit(root, res, config={
            "kind": "fit", "problem": Path(a.file).name, "model": a.model, **options},
            run_id=folder.name, started=True)
        print(_("recorded {folder}").format(folder=root / run.id))
    return 0


def _fit_call(a: argparse.Namespace, fit: Any, val: Any, stop: list[Any], patience: Any,
              folder: Path | None, resume: Path | None) -> Any:
    return fit(
        a.model, a.file, target=_columns(a.target), features=_columns(a.features), val=val,
        loss=a.loss, rule=a.rule, lr=a.lr, batch_size=a.batch_size, epochs=a.epochs,
        stop=stop or None, max_iter=a.max_iter, patience=patience,
        standardize=not a.no_standardize,
        one_hot=a.one_hot, drop_missing=a.drop_missing, drop_constant=a.drop_constant,
        activation=a.activation, seed=a.seed, device=a.device, progress=not a.quiet,
        on_divergence=a.on_divergence, task=a.task, l2=a.l2, encoding=a.encoding,
        stream=a.stream, checkpoint=folder / "checkpoint" if folder is not None else None,
        checkpoint_every=a.checkpoint_every, resume=resume,
    )


def _notes(command: str, notes: list[str]) -> None:
    for note in notes:
        print(_("descend {command}: note: {note}").format(command=command, note=translate(note)),
              file=sys.stderr)


def predict_command(a: argparse.Namespace) -> int:
    from pathlib import Path

    from .models import load_model
    from .tables import read_table, write_table

    out = None if a.output in (None, "-") else Path(a.output)
    if out is not None:  # refuse before any work
        if out.is_dir():
            raise InputError(f"-o {out} is a folder; give a file name ending in .csv or "
                             ".parquet")
        if out.exists() and not a.overwrite:
            raise InputError(f"{out} already exists; pass --overwrite to replace it")
        if not out.parent.is_dir():
            raise InputError(f"cannot write {out}: the folder {out.parent} does not exist")
    saved = load_model(a.folder, trust_code=a.trust_code)
    notes: list[str] = []
    table = read_table(a.file, encoding=a.encoding, notes=notes)
    table = saved.predict_table(table, Path(a.file).name, missing=a.missing, notes=notes)
    _notes("predict", notes)
    import pyarrow.csv as pacsv  # after read_table, which says in one line when pyarrow is missing
    if out is None:
        pacsv.write_csv(table, sys.stdout.buffer)
        sys.stdout.flush()
    else:
        write_table(table, out, overwrite=a.overwrite)
        print(_("wrote {rows} predictions to {out}").format(rows=table.num_rows, out=out),
              file=sys.stderr)
    return 0


def evaluate_command(a: argparse.Namespace) -> int:
    from pathlib import Path

    from .models import load_model
    from .tables import read_table

    saved = load_model(a.folder, trust_code=a.trust_code)  # the model first, as predict
    notes: list[str] = []
    table = read_table(a.file, encoding=a.encoding, notes=notes)
    _notes("evaluate", notes)
    scores = saved.evaluate_table(table, Path(a.file).name)
    print(f"rows {table.num_rows}")
    for k, v in scores.items():
        print(f"{k} {v:.6g}")
    return 0
