"""The Moré-Garbow-Hillstrom set: descend's defaults against scipy's BFGS / L-BFGS-B and
torch's L-BFGS, from the standard starts, in float64.

Solvers (each given ``f`` and its autograd gradient):

* ``descend``: ``descend.minimize(p.fn, p.x0)`` with its defaults (``--max-iter`` if given);
* ``bfgs-tight``: ``scipy.optimize.minimize(method="BFGS", jac=True, options={"gtol": 1e-12})``,
  run to round-off;
* ``bfgs``: the same with scipy's default tolerances;
* ``l-bfgs-b``: ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)``, defaults;
* ``torch-lbfgs``: ``torch.optim.LBFGS(line_search_fn="strong_wolfe", max_iter=10000,
  tolerance_grad=1e-12, tolerance_change=0)``, one ``step`` (closure calls counted).

One row per problem: number, name, ``n``, ``f*``, then per solver the final ``f``, whether it is
solved (``f <= f* + 1e-5 max(|f*|, 1e-3)``, or as close to a local minimum the paper lists:
:meth:`descend.mgh.MGHProblem.solved`; ``y``/``-``)
and the number of evaluations of ``f`` and its gradient (``nfev``); descend's row also shows its
``reason`` and ``success``. Then one summary line per solver (problems solved out of those run,
total and median evaluations) and the ratio of descend's evaluations to ``bfgs-tight``'s on the
problems both solve (median and worst).

    python benchmarks/mgh.py [--problems 1,2,3] [--max-iter N]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import scipy.optimize
import torch

import descend
from descend.mgh import MGH, MGHProblem


class Run(NamedTuple):
    f: float
    nfev: int
    extra: str = ""


def _value_and_grad(p: MGHProblem) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        f = p.fn(t)
        (g,) = torch.autograd.grad(f, t)
        return float(f), g.numpy().copy()
    return fg


def run_descend(p: MGHProblem, max_iter: int | None) -> Run:
    kwargs: dict[str, Any] = {} if max_iter is None else {"max_iter": max_iter}
    res = descend.minimize(p.fn, p.x0.clone(), **kwargs)
    return Run(float(res.loss), res.nfev, f"{res.reason}/{'ok' if res.success else 'no'}")


def _scipy(method: str, options: dict[str, Any]) -> Callable[[MGHProblem, int | None], Run]:
    def run(p: MGHProblem, max_iter: int | None) -> Run:
        opts = dict(options)
        if max_iter is not None:
            opts["maxiter"] = max_iter
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = scipy.optimize.minimize(_value_and_grad(p), p.x0.numpy().copy(), jac=True,
                                          method=method, options=opts)
        return Run(float(res.fun), int(res.nfev))
    return run


def run_torch_lbfgs(p: MGHProblem, max_iter: int | None) -> Run:
    x = p.x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=max_iter or 10_000, tolerance_grad=1e-12,
                            tolerance_change=0.0, line_search_fn="strong_wolfe")
    calls = 0

    def closure() -> torch.Tensor:
        nonlocal calls
        calls += 1
        opt.zero_grad()
        loss = p.fn(x)
        loss.backward()
        return loss

    opt.step(closure)
    return Run(float(p.fn(x.detach())), calls)


SOLVERS: dict[str, Callable[[MGHProblem, int | None], Run]] = {
    "descend": run_descend,
    "bfgs-tight": _scipy("BFGS", {"gtol": 1e-12}),
    "bfgs": _scipy("BFGS", {}),
    "l-bfgs-b": _scipy("L-BFGS-B", {}),
    "torch-lbfgs": run_torch_lbfgs,
}


def _safe(solver: Callable[[MGHProblem, int | None], Run], p: MGHProblem,
          max_iter: int | None) -> Run:
    try:
        r = solver(p, max_iter)
    except Exception as e:  # a solver failing on one problem is a result, not a crash
        return Run(math.nan, 0, f"error: {type(e).__name__}")
    return r


def _solved(p: MGHProblem, f: float) -> bool:
    return p.solved(f)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default="", help="comma-separated numbers (default: all 35)")
    ap.add_argument("--max-iter", type=int, default=None,
                    help="iteration cap for every solver (default: each solver's own)")
    args = ap.parse_args(argv)
    chosen = [int(s) for s in args.problems.split(",") if s.strip()] or [p.number for p in MGH]
    problems = [MGH[k - 1] for k in chosen]

    names = list(SOLVERS)
    head = f"{'#':>2} {'problem':26s} {'n':>3} {'f*':>10}"
    for s in names:
        head += f" | {s:>11s} {'ok':>2} {'nfev':>5}"
    head += " | descend reason/success"
    print(head)
    print("-" * len(head))
    results: dict[str, dict[int, Run]] = {s: {} for s in names}
    t0 = time.perf_counter()
    for p in problems:
        row = f"{p.number:2d} {p.name:26s} {p.n:3d} {p.f_star:10.4g}"
        for s in names:
            r = _safe(SOLVERS[s], p, args.max_iter)
            results[s][p.number] = r
            row += f" | {r.f:11.4e} {'y' if _solved(p, r.f) else '-':>2} {r.nfev:5d}"
        row += f" | {results['descend'][p.number].extra}"
        print(row, flush=True)
    print("-" * len(head))
    for s in names:
        solved = [k for k, r in results[s].items() if _solved(MGH[k - 1], r.f)]
        evals = [r.nfev for r in results[s].values()]
        print(f"{s:12s} solved {len(solved):2d}/{len(problems)}  evaluations: total "
              f"{sum(evals):7d}, median {statistics.median(evals):7.1f}")
    both = [k for k in chosen if _solved(MGH[k - 1], results["descend"][k].f)
            and _solved(MGH[k - 1], results["bfgs-tight"][k].f)]
    if both:
        ratios = [results["descend"][k].nfev / max(1, results["bfgs-tight"][k].nfev)
                  for k in both]
        worst = max(zip(ratios, both))
        print(f"descend / bfgs-tight evaluations on the {len(both)} problems both solve: "
              f"median {statistics.median(ratios):.2f}, worst {worst[0]:.2f} "
              f"(problem {worst[1]}, {MGH[worst[1] - 1].name})")
    else:
        print("descend / bfgs-tight: no problem solved by both")
    print(f"wall time {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
