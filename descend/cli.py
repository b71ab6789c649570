"""The command line: ``main(argv) -> exit code``.

Every user error becomes one line on standard error and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from .errors import InputError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def _demo(a: argparse.Namespace) -> int:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from .minimize import minimize
    from .observers import Printer
    from .problems import notebook
    from .steps import make_step
    from .stops import LossBelow, MaxIter

    # Check every option before printing anything.
    stop = LossBelow(a.threshold)
    make_step(a.lr)
    make_step(a.model_lr)
    MaxIter(a.max_iters)
    MaxIter(a.model_iters)

    # The notebook, first half: a 3x3 x pulled to the target by x <- x - lr * grad.
    p = notebook(a.seed)
    res = minimize(p.fn, p.x0, rule=a.rule, lr=a.lr, stop=stop, max_iter=a.max_iters,
                   verbose=not a.quiet)
    print(f"x: stopped after {res.nit} iterations, {res.message} [{res.reason}]")

    # The notebook, second half: nn.Linear(5, 3) with optim.SGD(model.parameters(), lr=0.001),
    # fitted to data from a hidden linear map plus noise.
    g = torch.Generator().manual_seed(a.seed)
    X = torch.randn(200, 5, generator=g)
    W, b = torch.randn(3, 5, generator=g), torch.randn(3, generator=g)
    Y = X @ W.T + b + 0.01 * torch.randn(200, 3, generator=g)
    torch.manual_seed(a.seed)
    model = nn.Linear(5, 3)
    every = max(1, a.model_iters // 10)
    if not a.quiet:
        print(f"\nnn.Linear(5, 3), rule gd (what optim.SGD does), lr={a.model_lr:g}: "
              f"fitting 200 rows of y = W x + b + noise")
    res2 = minimize(lambda m: F.mse_loss(m(X), Y), model, rule="gd", lr=a.model_lr,
                    stop=stop, max_iter=a.model_iters,
                    observers=[] if a.quiet else [Printer(every=every, show_x=False)])
    err = (model.weight.detach() - W).abs().max().item()
    print(f"model: stopped after {res2.nit} iterations, {res2.message} [{res2.reason}]; "
          f"loss {res2.history.loss[0]:.4e} -> {res2.loss:.4e}, max |W - W_true| = {err:.3f}")
    if res2.reason == "max_iter" and res2.history.loss[-2] > res2.loss:
        print("model: the loss was still falling at the cap: raise --model-lr (try 0.1) "
              "or --model-iters")
    return 0


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


def _fit(a: argparse.Namespace) -> int:
    from pathlib import Path

    from .fit import fit
    from .stops import Criterion, TimeLimit, TrainLossBelow

    out = Path(a.out)
    if out.exists() and not a.overwrite:  # refuse before any work
        raise InputError(f"{out} already exists; pass --overwrite to replace it")
    stop: list[Criterion] = []
    if a.loss_below is not None:
        stop.append(TrainLossBelow(a.loss_below))
    if a.time_limit is not None:
        stop.append(TimeLimit(a.time_limit))
    val = a.val_file if a.val_file is not None else (a.val or None)
    # the default patience watches the validation loss; without validation data it is off
    patience = a.patience if a.patience is not None else (10 if val is not None else None)
    patience = patience or None
    res = fit(
        a.model, a.file, target=_columns(a.target), features=_columns(a.features), val=val,
        loss=a.loss, rule=a.rule, lr=a.lr, batch_size=a.batch_size, epochs=a.epochs,
        stop=stop, max_iter=a.max_iter, patience=patience, standardize=not a.no_standardize,
        one_hot=a.one_hot, drop_missing=a.drop_missing, drop_constant=a.drop_constant,
        activation=a.activation, seed=a.seed, device=a.device, progress=not a.quiet,
    )
    prep = res.preprocessing
    assert prep is not None
    print(f"stopped after {res.epochs} epochs ({res.nit} iterations, {res.seconds:.1f} s): "
          f"{res.message} [{res.reason}]")
    if res.restored_best:
        print(f"restored the weights of the best epoch, {res.best_epoch}")
    print(f"train: {_fmt_scores(res.metrics, 'train_')}")
    if val is not None:
        print(f"val:   {_fmt_scores(res.metrics, 'val_')}")
    options = {
        "lr": a.lr, "batch_size": a.batch_size, "epochs": a.epochs, "val": a.val,
        "val_file": a.val_file, "patience": patience, "seed": a.seed,
        "standardize": not a.no_standardize, "one_hot": a.one_hot,
        "drop_missing": a.drop_missing, "drop_constant": a.drop_constant, "data": str(a.file),
    }
    res.save(out, overwrite=a.overwrite, options=options)
    print(f"saved the model to {out}")
    return 0


def _predict(a: argparse.Namespace) -> int:
    from pathlib import Path

    import pyarrow.csv as pacsv

    from .data import read_table
    from .models import load_model

    table = load_model(a.folder).predict_table(read_table(a.file), Path(a.file).name)
    if a.output in (None, "-"):
        pacsv.write_csv(table, sys.stdout.buffer)
        sys.stdout.flush()
    else:
        try:
            pacsv.write_csv(table, a.output)
        except OSError as e:
            raise InputError(f"cannot write {a.output}: {e.strerror or e}") from None
        print(f"wrote {table.num_rows} predictions to {a.output}", file=sys.stderr)
    return 0


def _evaluate(a: argparse.Namespace) -> int:
    from pathlib import Path

    from .data import read_table
    from .models import load_model

    table = read_table(a.file)
    scores = load_model(a.folder).evaluate_table(table, Path(a.file).name)
    print(f"rows {table.num_rows}")
    for k, v in scores.items():
        print(f"{k} {v:.6g}")
    return 0


def _parser() -> _Parser:
    p = _Parser(prog="descend", description="Gradient descent on PyTorch, from the notebook on.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="run the notebook: a 3x3 x pulled to a target, then "
                       "nn.Linear(5, 3) fitted with SGD",
                       description="Runs the gradient-descent notebook line for line.")
    d.add_argument("--lr", type=float, default=1.0, help="step size for x (default 1.0)")
    d.add_argument("--threshold", type=float, default=1e-5,
                   help="stop when the loss is at or below this (default 1e-5)")
    d.add_argument("--seed", type=int, default=0, help="torch.manual_seed before rand_like "
                   "(default 0)")
    d.add_argument("--rule", default="gd", help="update rule for x (default gd)")
    d.add_argument("--max-iters", type=int, default=1000,
                   help="iteration cap for x (default 1000)")
    d.add_argument("--model-lr", type=float, default=0.001,
                   help="step size for nn.Linear(5, 3) (default 0.001, as in the notebook)")
    d.add_argument("--model-iters", type=int, default=1000,
                   help="iteration cap for nn.Linear(5, 3) (default 1000)")
    d.add_argument("--quiet", action="store_true", help="print only the summaries")
    d.set_defaults(run=_demo)

    f = sub.add_parser(
        "fit", help="train a model on a CSV or Parquet file and save it",
        description="Trains a model on the rows of FILE (CSV or Parquet) by mini-batch gradient "
        "descent and saves it, with its preprocessing, to --out.")
    arg = f.add_argument
    arg("file", metavar="FILE", help="training data: a CSV or Parquet (.parquet, .pq) file")
    arg("--target", required=True, metavar="COLS", help="target column(s), comma-separated")
    arg("--features", metavar="COLS",
        help="feature columns, comma-separated (default: all others)")
    arg("--model", default="linear", metavar="SPEC",
        help="linear, logistic, mlp:64,64 (hidden widths) or pkg.module:Class (called as "
        "Class(in_features, out_features)) (default linear)")
    arg("--activation", default="relu", metavar="NAME",
        help="activation of mlp models: relu, tanh, gelu, sigmoid, silu (default relu)")
    arg("--loss", metavar="NAME", help="mse, mae, huber, bce or cross_entropy (default: mse; "
        "for logistic: bce with 2 classes, else cross_entropy)")
    arg("--rule", default="adam", metavar="NAME", help="update rule: gd (SGD), momentum, "
        "nesterov, adam, adamw, rmsprop, adagrad (default adam)")
    arg("--lr", type=float, default=0.01, metavar="X", help="step size (default 0.01)")
    arg("--batch-size", type=int, default=64, metavar="N", help="rows per batch (default 64)")
    arg("--epochs", type=int, default=100, metavar="N",
        help="most passes over the training rows (default 100)")
    arg("--val", type=float, default=0.2, metavar="F",
        help="fraction of rows held out for validation, 0 for none (default 0.2)")
    arg("--val-file", metavar="FILE", help="a separate validation file instead of --val")
    arg("--patience", type=int, default=None, metavar="N",
        help="stop when the validation loss has not improved for this many epochs and restore "
        "the best epoch's weights; 0 turns it off (default 10 with validation data, off "
        "without)")
    arg("--loss-below", type=float, metavar="X",
        help="stop at the end of an epoch whose mean training loss is at or below this")
    arg("--time-limit", type=float, metavar="S", help="stop after this many seconds")
    arg("--max-iter", type=int, metavar="N", help="stop after this many batches")
    arg("--seed", type=int, default=0, metavar="N",
        help="seeds the split, the shuffling and the initial weights (default 0)")
    arg("--one-hot", action="store_true",
        help="encode non-numeric feature columns as 0/1 columns")
    arg("--drop-missing", action="store_true",
        help="drop rows with missing values instead of refusing the file")
    arg("--drop-constant", action="store_true",
        help="drop constant feature columns instead of refusing the file")
    arg("--no-standardize", action="store_true",
        help="do not scale features (and regression targets) to mean 0, std 1")
    arg("--device", metavar="DEV", help="cpu, cuda, cuda:1, ... (default cpu)")
    arg("--out", required=True, metavar="DIR",
        help="folder to save the model in (must not exist)")
    arg("--overwrite", action="store_true", help="replace the --out folder if it exists")
    arg("--quiet", action="store_true", help="no progress display")
    f.set_defaults(run=_fit)

    pr = sub.add_parser("predict", help="predict with a saved model",
                        description="Writes the rows of FILE with one column <target>_pred per "
                        "target (classifiers add <target>_prob_<class> columns).")
    pr.add_argument("folder", metavar="DIR", help="a model folder written by descend fit --out")
    pr.add_argument("file", metavar="FILE",
                    help="rows to predict: a CSV or Parquet file with the feature columns")
    pr.add_argument("-o", "--output", metavar="OUT.csv",
                    help="CSV file to write (default: standard output)")
    pr.set_defaults(run=_predict)

    ev = sub.add_parser("evaluate", help="score a saved model on labelled rows",
                        description="Prints the loss and the metrics of a saved model on FILE, "
                        "which must hold the feature and target columns.")
    ev.add_argument("folder", metavar="DIR", help="a model folder written by descend fit --out")
    ev.add_argument("file", metavar="FILE", help="labelled rows: a CSV or Parquet file")
    ev.set_defaults(run=_evaluate)
    return p


def _version() -> str:
    from . import __version__

    return f"descend {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    try:
        a = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)

    try:
        return int(a.run(a))
    except InputError as e:
        print(f"descend {a.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `descend demo | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"descend {a.command}: interrupted", file=sys.stderr)
        return 130
