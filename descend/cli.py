"""The command line: ``main(argv) -> exit code``.

Every user error becomes one line on standard error and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .cli_models import evaluate_command, fit_command, predict_command
from .errors import InputError, check_seed
from .i18n import _, translate_tail
from .resume import add_resume_parser
from .runs import add_runs_parser, descending, records

if TYPE_CHECKING:
    from .store import Run

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        message = translate_tail(message)
        print(_("{prog}: error: {message}").format(prog=self.prog, message=message),
              file=sys.stderr)
        sys.exit(2)


def _env(a: argparse.Namespace, seed: int | None = None) -> dict[str, Any]:
    from .store import environment

    return environment(seed=seed, argv=["descend", *a.argv])


def _floats(text: str, option: str) -> list[float]:
    out = []
    for part in text.split(","):
        try:
            v = float(part)
        except ValueError:
            raise InputError(f"{option} takes numbers separated by commas, e.g. 0.1,1,4.5; "
                             f"got {part.strip()!r}") from None
        out.append(v)
    return out


def _names(text: str) -> list[str]:
    from .rules import make_rule

    out = [t.strip() for t in text.split(",")]
    for t in out:
        make_rule(t)  # an unknown name: the one message that lists the known rules
    return out


def _lr(text: str) -> float | str:
    """argparse type of ``--lr``: a number, or the name of a step-size strategy."""
    from .steps import STEPS

    try:
        return float(text)
    except ValueError:
        if text in STEPS:
            return text
        raise argparse.ArgumentTypeError(
            f"invalid lr {text!r}: give a number > 0 or one of {', '.join(STEPS)}"
        ) from None


def _batch_size(text: str) -> int | str | None:
    """argparse type of ``--batch-size``: a whole number >= 1, ``full`` (every row) or
    ``auto``."""
    if text == "full":
        return None
    if text == "auto":
        return "auto"
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(
            f"invalid batch size {text!r}: give a whole number >= 1, full for every row, or auto")
    return n


def _g(lr: float | str) -> str:
    return lr if isinstance(lr, str) else f"{lr:g}"


def _demo(a: argparse.Namespace) -> int:
    """``descend demo``; Ctrl-C ends the current run (and skips the rest), exit 130."""
    from .checkpoint import interrupted_by, signals

    with signals(sigterm=False):
        code = _demo_runs(a)
        sig = interrupted_by()
    return 128 + sig if sig is not None else code


def _demo_runs(a: argparse.Namespace) -> int:
    import contextlib
    import tempfile

    import torch

    from .minimize import minimize
    from .observers import Printer, Snapshots
    from .problems import notebook
    from .report import write_report
    from .result import record_result
    from .steps import make_step
    from .stops import LossBelow, MaxIter

    # The demo's tensors are tiny: extra intra-op threads only add synchronisation, and on a
    # busy machine they stall the run many times over (measured: 1.2 s vs 22 s under load).
    torch.set_num_threads(1)
    # Check every option before printing anything.
    check_seed("--seed", a.seed)
    lesson = None
    if a.problem is not None:
        from .lessons import get

        lesson = get(a.problem)
    lr = a.lr if a.lr is not None else (lesson.lr if lesson is not None else 1.0)
    threshold = a.threshold if a.threshold is not None else (
        lesson.threshold if lesson is not None else 1e-5)
    stop = None if threshold is None else LossBelow(threshold)
    make_step(lr)
    make_step(a.model_lr)
    MaxIter(a.max_iters)
    MaxIter(a.model_iters)
    lrs = _floats(a.sweep_lr, "--sweep-lr") if a.sweep_lr is not None else [lr]
    for v in lrs:
        make_step(v)
    rules = _names(a.sweep_rule) if a.sweep_rule is not None else [a.rule]
    sweep = a.sweep_lr is not None or a.sweep_rule is not None
    report = Path(a.report) if a.report else (Path("sweep.html") if sweep else None)
    if report is not None and not report.parent.is_dir():
        raise InputError(f"cannot write {report}: the folder {report.parent} does not exist")

    with contextlib.ExitStack() as stack:
        # --no-record still needs records for a report: they go to a folder deleted at the end
        root = (Path(stack.enter_context(tempfile.TemporaryDirectory())) if a.no_record
                else records(a))
        p = notebook(a.seed)
        fn, x0, target = p.fn, p.x0, p.target
        name = "notebook"
        if lesson is not None:
            fn, x0, target, name = lesson.fn, lesson.x0, lesson.target, lesson.name
            if not a.quiet:
                print(_("problem {name}: {about}").format(name=name, about=_(lesson.about)))
        if a.show_start and not sweep:
            _show_start(fn, x0, target)
        runs: list[Run] = []

        def one(rule: str, lr: float, verbose: bool) -> None:
            from .lessons import StepThrough, contour

            snaps = Snapshots()
            watch: list[Any] = [snaps]
            if verbose:  # the notebook's lines, then (--step) the wait for Enter
                watch += [Printer(), StepThrough()] if a.step else [Printer()]
            res = minimize(fn, x0, rule=rule, lr=lr, stop=stop, max_iter=a.max_iters,
                           observers=watch)
            label = f"{rule} lr={_g(lr)}"
            print((_("{label}: x: stopped after {nit} iterations, {message} [{reason}]") if sweep
                   else _("x: stopped after {nit} iterations, {message} [{reason}]")).format(
                       label=label, nit=res.nit, message=res.message, reason=res.reason))
            if a.explain:
                print("\n" + res.explain())
            summary = res.diagnose().summary() if res.diagnose is not None else None
            snap = snaps.data(target)
            if snap is not None:  # the loss around the path, for the report's contour view
                snap["contour"] = contour(fn, snap["values"], snap["shapes"][0], target)
            runs.append(record_result(root, res, snapshots=snap, target=target,
                                      diagnostics=summary,
                                      env=_env(a, a.seed), config={
                                          "kind": "demo", "problem": name, "label": label,
                                          "rule": rule, "lr": lr, "threshold": threshold,
                                          "max_iter": a.max_iters, "seed": a.seed}))

        recorded = runs
        if sweep:
            # every variant from the same start x0 (tensors are never mutated)
            for rule in rules:
                for v in lrs:
                    one(rule, v, verbose=False)
        else:
            one(a.rule, lr, verbose=not a.quiet)
            if lesson is None:  # the notebook's second half
                recorded = [*runs, _demo_model(a, stop, root)]
        if not a.no_record:  # after the summaries, which keep the notebook's order
            for r in recorded:
                print(_("recorded {path}").format(path=root / r.id))
        if report is not None:
            title = (_("The notebook: x pulled to the target by gradient descent")
                     if not sweep and lesson is None else
                     _("{problem}: x pulled to its minimum by gradient descent").format(
                         problem=name) if not sweep else
                     _("The notebook, {n} variants from the same start").format(n=len(runs))
                     if lesson is None else
                     _("{problem}, {n} variants from the same start").format(
                         problem=name, n=len(runs)))
            write_report(runs, report, title=title)
            print(_("report: {path}").format(path=report))
    return 0


def _show_start(fn: Any, x0: Any, target: Any) -> None:
    """``--show-start``: what the notebook shows before its loop (its cells ``target``, ``x``
    and ``loss``), each label marked with ``#`` so a diff against the notebook stays easy."""
    import torch

    print(_("# target (the values x should reach):"))
    print(target)
    print(_("# x, the start, before the first step:"))
    print(x0)
    with torch.no_grad():
        loss = float(fn(x0))
    print(_("# loss before the first step: {loss:.4e}").format(loss=loss))
    print()


def _demo_model(a: argparse.Namespace, stop: Any, root: Path) -> Run:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from .minimize import minimize
    from .observers import Printer, Snapshots
    from .result import record_result

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
        print("\n" + _("nn.Linear(5, 3), rule gd (what optim.SGD does), lr={lr}: fitting 200 "
                       "rows of y = W x + b + noise").format(lr=_g(a.model_lr)))
    snaps = Snapshots()
    res2 = minimize(lambda m: F.mse_loss(m(X), Y), model, rule="gd", lr=a.model_lr,
                    stop=stop, max_iter=a.model_iters,
                    observers=[snaps] if a.quiet else [Printer(every=every, show_x=False), snaps])
    err = (model.weight.detach() - W).abs().max().item()
    print(_("model: stopped after {nit} iterations, {message} [{reason}]; loss {first:.4e} -> "
            "{last:.4e}, max |W - W_true| = {err:.3f}").format(
                nit=res2.nit, message=res2.message, reason=res2.reason,
                first=res2.history.loss[0], last=res2.loss, err=err))
    if res2.reason == "max_iter" and res2.history.loss[-2] > res2.loss:
        print(_("model: the loss was still falling at the cap: raise --model-lr (try 0.1, or "
                "auto) or --model-iters"))
    run = record_result(root, res2, snapshots=snaps, target=torch.cat([W.reshape(-1), b]),
                        env=_env(a, a.seed), config={
                            "kind": "demo", "problem": "notebook-linear",
                            "label": f"nn.Linear(5, 3) gd lr={_g(a.model_lr)}", "rule": "gd",
                            "lr": a.model_lr, "threshold": a.threshold,
                            "max_iter": a.model_iters, "seed": a.seed})
    return run


def _completion(a: argparse.Namespace) -> int:
    try:
        import shtab
    except ImportError:
        raise InputError("shell completion needs shtab: pip install shtab") from None
    print(shtab.complete(_parser(), shell=a.shell).rstrip("\n"))
    return 0


def _report(a: argparse.Namespace) -> int:
    from .report import write_report
    from .store import open_run

    root = records(a)
    runs = [open_run(root, i) for i in a.runs_]
    path = write_report(runs, a.output, title=a.title)
    print(f"report: {path}")
    return 0


def _plot(a: argparse.Namespace) -> int:
    from .report import plot_runs
    from .store import open_run

    root = records(a)
    runs = [open_run(root, i) for i in a.runs_]
    cols = [c.strip() for c in a.columns.split(",") if c.strip()]
    path = plot_runs(runs, a.output, columns=cols)
    print(f"plot: {path}")
    return 0


def _diagnose(a: argparse.Namespace) -> int:
    import torch

    from . import problems
    from .diagnose import diagnose

    torch.set_num_threads(1)  # small problems: extra threads only add synchronisation
    check_seed("--seed", a.seed)
    p = problems.notebook(a.seed) if a.problem == "notebook" else problems.get(a.problem)
    threshold = p.threshold if a.threshold is None else a.threshold
    if threshold is not None and threshold <= p.f_star:
        raise InputError(f"--threshold must be above the problem's optimal loss {p.f_star:g} "
                         f"(a lower loss is never reached), got {threshold:g}")
    d = diagnose(p.fn, p.x0, a.lr, threshold=threshold, f_star=p.f_star, max_iter=a.max_hvps)
    print(_("problem {name}, {n} parameters, at its start x0").format(
        name=p.name, n=sum(t.numel() for t in _tensors(p.x0))))
    print(d)
    return 0


def _tensors(x: object) -> list:
    return list(x) if isinstance(x, (tuple, list)) else [x]


def _parser() -> _Parser:
    p = _Parser(prog="descend", description="Gradient descent on PyTorch, from the notebook on.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runs_help = "the records folder (default $DESCEND_RUNS or runs)"
    encoding_help = ("text encoding of a CSV file, e.g. utf-8, cp949, cp1252 (default: "
                     "detected: UTF-8, UTF-8 with a BOM, else CP949/EUC-KR with a note)")

    d = sub.add_parser("demo", help="run the notebook: a 3x3 x pulled to a target, then "
                       "nn.Linear(5, 3) fitted with SGD",
                       description="Runs the gradient-descent notebook line for line.")
    d.add_argument("--lr", type=_lr, default=None,
                   help="step size for x: a number or auto, armijo, wolfe, polyak, bb, adaptive "
                   "(default 1.0; with --problem, the problem's own)")
    d.add_argument("--threshold", type=float, default=None,
                   help="stop when the loss is at or below this (default 1e-5; with --problem, "
                   "the problem's own)")
    d.add_argument("--seed", type=int, default=0, help="torch.manual_seed before rand_like "
                   "(default 0)")
    d.add_argument("--rule", default="gd", help="update rule for x (default gd)")
    d.add_argument("--max-iters", type=int, default=1000,
                   help="iteration cap for x (default 1000)")
    d.add_argument("--model-lr", type=_lr, default=0.001,
                   help="step size for nn.Linear(5, 3) (default 0.001, as in the notebook)")
    d.add_argument("--model-iters", type=int, default=1000,
                   help="iteration cap for nn.Linear(5, 3) (default 1000)")
    d.add_argument("--quiet", action="store_true", help="print only the summaries")
    d.add_argument("--explain", action="store_true",
                   help="after the run for x, explain in plain words why it stopped, its rate "
                   "against the predicted one, and which lr would have been faster")
    d.add_argument("--report", metavar="FILE", help="write the HTML report of the run of x "
                   "(or of the sweep) to FILE")
    d.add_argument("--sweep-lr", metavar="LRS", help="run x once per step size, e.g. "
                   "0.1,1,4.5,9,10, all from the same start, into one comparison report")
    d.add_argument("--sweep-rule", metavar="RULES", help="run x once per rule, e.g. "
                   "gd,momentum,adam (with --sweep-lr: every pair); the report goes to --report "
                   "or sweep.html")
    d.add_argument("--runs", metavar="DIR", help=runs_help)
    d.add_argument("--no-record", action="store_true", help="write no run record")
    d.add_argument("--problem", metavar="NAME", help="a learner problem of two parameters "
                   "instead of the notebook: bowl (bowl:K for condition number K), rosenbrock, "
                   "saddle, linreg")
    d.add_argument("--show-start", action="store_true", help="first print the target, the "
                   "starting x and its loss, as the notebook's cells show them")
    d.add_argument("--step", action="store_true", help="wait for Enter after each iteration "
                   "(q then Enter runs to the end)")
    d.set_defaults(run=_demo)

    common = _Parser(add_help=False)
    common.add_argument("--runs", metavar="DIR", help=runs_help)
    add_runs_parser(sub, common)

    rep = sub.add_parser("report", parents=[common], help="one self-contained HTML report of "
                         "runs, overlaid", description="Writes one HTML file that works "
                         "offline: loss, gradient norm, step size, validation, stop reasons, "
                         "diagnostics, and a heatmap of small parameters walking the iterations.")
    rep.add_argument("runs_", nargs="+", metavar="RUN",
                     help="run ids (or unique prefixes) or run folders")
    rep.add_argument("-o", "--output", default="report.html", metavar="FILE",
                     help="where to write (default report.html)")
    rep.add_argument("--title", help="the page title (default from the runs)")
    rep.set_defaults(run=_report)

    pl = sub.add_parser("plot", parents=[common], help="PNG plot of runs' curves (matplotlib)",
                        description="Draws history columns of runs, overlaid, one panel per "
                        "column; loss and gradient norm on a log scale.")
    pl.add_argument("runs_", nargs="+", metavar="RUN",
                     help="run ids (or unique prefixes) or run folders")
    pl.add_argument("-o", "--output", default="loss.png", metavar="FILE",
                    help="where to write; the suffix picks the format (default loss.png)")
    pl.add_argument("--columns", default="loss", metavar="COLS",
                    help="history columns, comma-separated (default loss; e.g. loss,grad_norm,lr)")
    pl.set_defaults(run=_plot)

    g = sub.add_parser("diagnose", help="local curvature, safe step range and predicted "
                       "iterations for a named problem, from Hessian-vector products",
                       description="Estimates at the problem's start x0 (local estimates): top "
                       "and bottom curvature, condition number, the stable range 0 < lr < 2/L, "
                       "and, with --lr, the contraction per gd step and the predicted "
                       "iterations to the threshold.")
    g.add_argument("problem", nargs="?", default="notebook",
                   help="a problem of descend.problems (default notebook): "
                   "notebook, quadratic_k1, quadratic_k1e2, quadratic_k1e4, rosenbrock_2, "
                   "rosenbrock_100, diabetes_lstsq, breast_cancer_logistic, mlp_regression")
    g.add_argument("--lr", type=float, default=None, help="a gd step size to assess")
    g.add_argument("--threshold", type=float, default=None,
                   help="loss to predict the iterations to (default: the problem's own)")
    g.add_argument("--seed", type=int, default=0,
                   help="torch.manual_seed before the notebook's rand_like (default 0)")
    g.add_argument("--max-hvps", type=int, default=100,
                   help="at most this many Hessian-vector products (default 100)")
    g.set_defaults(run=_diagnose)

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
    arg("--rule", default=None, metavar="NAME", help="update rule: gd (SGD), momentum, "
        "nesterov, adam, adamw, rmsprop, adagrad, or the quasi-Newton lbfgs, bfgs (these need "
        "the full batch and always use the strong-Wolfe line search) (default: lbfgs on the "
        "full batch, adam on mini-batches)")
    arg("--lr", type=_lr, default=None, metavar="X",
        help="step size: a number or a strategy name such as auto, armijo or wolfe; a line "
        "search searches along each iteration's own batch (default: auto on the full batch, "
        "the rule's default on mini-batches)")
    arg("--batch-size", type=_batch_size, default="auto", metavar="N",
        help="rows per batch, full for every training row in one batch, or auto: the full "
        "batch when the training features hold at most 10,000,000 numbers, else 64 (default "
        "auto)")
    arg("--on-divergence", choices=("backtrack", "stop"), default=None,
        help="when the loss diverges or becomes non-finite: backtrack (return to the best "
        "point, halve the step, go on) or stop (default: backtrack with --lr auto, else stop)")
    arg("--epochs", type=int, default=None, metavar="N",
        help="most passes over the training rows (default: the full batch runs to convergence; "
        "automatic mini-batches stop early, within 1000 epochs; other runs 100)")
    arg("--val", type=float, default=0.0, metavar="F",
        help="fraction of rows held out at random for validation (validation curves, early "
        "stopping on the validation loss), 0 for none (default 0: every row trains)")
    arg("--val-file", metavar="FILE", help="a separate validation file instead of --val")
    arg("--patience", type=int, default=None, metavar="N",
        help="stop when the validation loss (the training loss without validation data) has "
        "not improved for this many epochs and restore the best epoch's weights; 0 turns it "
        "off (default: 10 with automatic mini-batches, off on the full batch, which runs to "
        "the optimum)")
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
        help="drop constant feature columns (default: keep them, with a note)")
    arg("--no-standardize", action="store_true",
        help="do not scale the numeric features (and regression targets) to mean 0, std 1 "
        "(one-hot columns are never scaled)")
    arg("--task", choices=("classify", "regress"), default=None,
        help="fit the target as class labels or as amounts; needed for a whole-number target "
        "with at most 20 distinct values and a linear or mlp model (default: from the target, "
        "model and loss)")
    arg("--l2", type=float, default=None, metavar="X",
        help="L2 penalty X * sum(w^2) / 2 on the weights (not the biases), added to the mean "
        "training loss (default 0; 1/n_train for classifiers, like scikit-learn's C=1)")
    arg("--encoding", metavar="NAME", help=encoding_help)
    arg("--device", metavar="DEV", help="cpu, cuda, cuda:1, ... (default cpu)")
    arg("--out", required=True, metavar="DIR",
        help="folder to save the model in (must not exist)")
    arg("--overwrite", action="store_true", help="replace the --out folder if it exists")
    arg("--quiet", action="store_true", help="no progress display")
    arg("--runs", metavar="DIR", help=runs_help)
    arg("--no-record", action="store_true", help="write no run record (and no checkpoints)")
    arg("--checkpoint-every", metavar="N", help="checkpoint the run into its run folder every "
        "N iterations (100) or seconds (30s, 5m), and at each epoch's end (default 30s); "
        "`descend resume RUN` continues a stopped run")
    arg("--nproc", type=int, metavar="N", help="train data-parallel in N local processes "
        "(torch.distributed's launcher, gloo on the CPU); on several machines run torchrun "
        "-m descend fit ... instead (see the README)")
    arg("--stream", action=argparse.BooleanOptionalAction, default=None,
        help="stream a Parquet file or folder by row groups instead of loading it (default: "
        "streamed when its columns as float64 exceed 2 GiB)")
    f.set_defaults(run=fit_command)
    add_resume_parser(sub, common, p)

    pr = sub.add_parser("predict", help="predict with a saved model",
                        description="Writes the rows of FILE with one column <target>_pred per "
                        "target (classifiers add <target>_prob_<class> columns).")
    pr.add_argument("folder", metavar="DIR", help="a model folder written by descend fit --out")
    pr.add_argument("file", metavar="FILE",
                    help="rows to predict: a CSV or Parquet file with the feature columns")
    pr.add_argument("-o", "--output", metavar="OUT",
                    help="file to write: Parquet for .parquet/.pq, else CSV; written to a "
                    "temporary file and renamed into place; an existing file needs --overwrite "
                    "(default: CSV on standard output)")
    pr.add_argument("--overwrite", action="store_true", help="replace the -o file if it exists")
    pr.add_argument("--missing", choices=("refuse", "drop", "impute"), default="refuse",
                    help="rows with an empty or NaN feature cell: refuse the file, drop those "
                    "rows, or impute (fill numeric features with the training means) "
                    "(default refuse)")
    pr.add_argument("--encoding", metavar="NAME", help=encoding_help)
    pr.add_argument("--trust-code", action="store_true",
                    help="allow a model folder whose config.json names a model class as "
                    "pkg.module:Class to import that module (which runs its code); only for "
                    "folders you trust (default: refused)")
    pr.set_defaults(run=predict_command)

    ev = sub.add_parser("evaluate", help="score a saved model on labelled rows",
                        description="Prints the loss and the metrics of a saved model on FILE, "
                        "which must hold the feature and target columns.")
    ev.add_argument("folder", metavar="DIR", help="a model folder written by descend fit --out")
    ev.add_argument("file", metavar="FILE", help="labelled rows: a CSV or Parquet file")
    ev.add_argument("--encoding", metavar="NAME", help=encoding_help)
    ev.add_argument("--trust-code", action="store_true",
                    help="allow a model folder whose config.json names a model class as "
                    "pkg.module:Class to import that module (which runs its code); only for "
                    "folders you trust (default: refused)")
    ev.set_defaults(run=evaluate_command)

    co = sub.add_parser("completion", help="print a shell completion script (bash, zsh, fish)",
                        description="Prints the completion script for SHELL, made from this "
                        "command line by shtab. bash: descend completion bash > "
                        "~/.local/share/bash-completion/completions/descend; zsh: descend "
                        "completion zsh > ~/.zfunc/_descend; fish: descend completion fish > "
                        "~/.config/fish/completions/descend.fish")
    co.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell")
    co.set_defaults(run=_completion)
    _path_hints(p)
    _languages(p)
    return p


def _languages(parser: argparse.ArgumentParser, top: bool = True) -> None:
    """``--lang`` on every command; every help and description in the current language."""
    if top or not any("--lang" in act.option_strings for act in parser._actions):
        parser.add_argument("--lang", choices=LANGS, default=None if top else argparse.SUPPRESS,
                            help="language of the messages: en or ko (default $DESCEND_LANG, "
                            "else the locale, else en)")
    if parser.description:
        parser.description = _(parser.description)
    for act in parser._actions:
        if act.help and act.help != argparse.SUPPRESS:
            act.help = _(act.help)
        if isinstance(act, argparse._SubParsersAction):
            for c in act._choices_actions:
                c.help = _(c.help) if c.help else c.help
            for sub in dict.fromkeys(act.choices.values()):
                _languages(sub, top=False)


# What shtab completes for an argument: its own FILE and DIRECTORY hints, written out here so
# that building the parser does not import shtab.
_FILE = {"bash": "_shtab_compgen_files", "zsh": "_files", "tcsh": "f",
         "fish": "(__fish_complete_path (commandline -ct))"}
_DIR = {"bash": "_shtab_compgen_dirs", "zsh": "_files -/", "tcsh": "d",
        "fish": "(__fish_complete_directories)"}


def _path_hints(parser: argparse.ArgumentParser) -> None:
    """Complete files for FILE arguments and folders for DIR (and RUN) ones, in every
    sub-command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                _path_hints(sub)
        elif action.metavar in ("FILE", "OUT.csv"):
            action.complete = _FILE  # type: ignore[attr-defined]
        elif action.metavar in ("DIR", "RUN"):
            action.complete = _DIR  # type: ignore[attr-defined]


def _version() -> str:
    from ._version import __version__

    return f"descend {__version__}"


LANGS = ("en", "ko")


def _lang_option(args: Sequence[str]) -> str | None:
    """The value of ``--lang`` in ``args`` (before parsing: the parser's own text depends on
    it); an unknown value is left to argparse to refuse."""
    for i, tok in enumerate(args):
        if tok == "--":
            break
        value = (args[i + 1] if tok == "--lang" and i + 1 < len(args)
                 else tok[7:] if tok.startswith("--lang=") else None)
        if value in LANGS:
            return value
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    The language: ``--lang``, else ``$DESCEND_LANG``, else the locale, else English
    (:func:`descend.i18n.choose`); put back as it was on return."""
    from . import i18n

    args = list(sys.argv[1:] if argv is None else argv)
    before = i18n.get_language()
    lang = i18n.choose(_lang_option(args))
    i18n.set_language(lang if lang in LANGS else "en")
    try:
        with i18n.argparse_language():
            return _main(args)
    finally:
        i18n.set_language(before)


def _main(args: list[str]) -> int:
    parser = _parser()
    try:
        a = parser.parse_args(descending(args))
    except SystemExit as e:
        return int(e.code or 0)
    a.argv = args
    try:
        return int(a.run(a))
    except InputError as e:
        from .distributed import is_main

        if is_main():  # under torchrun every rank has the same error: rank 0 says it
            print(_("descend {command}: error: {message}").format(command=a.command, message=e),
                  file=sys.stderr)
        return 2
    except RuntimeError as e:
        if type(e).__name__ != "PeerLost":  # descend.distributed's: a rank of the job died
            raise
        import os

        if not os.environ.get("DESCEND_NPROC"):  # under --nproc the launcher says which
            print(f"descend {a.command}: error: {e}", file=sys.stderr)
        # (a worker of --nproc then leaves by distributed.depart, without tearing down a group
        # whose peer is gone, where the backend's threads may abort the process)
        return 1
    except BrokenPipeError:  # e.g. `descend demo | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(_("descend {command}: interrupted").format(command=a.command), file=sys.stderr)
        return 130
