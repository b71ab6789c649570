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

    # The demo's tensors are tiny: extra intra-op threads only add synchronisation, and on a
    # busy machine they stall the run many times over (measured: 1.2 s vs 22 s under load).
    torch.set_num_threads(1)
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
