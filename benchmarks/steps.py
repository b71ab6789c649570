"""Step sizes and quasi-Newton rules on the problem set: iterations, function+gradient
evaluations and wall time to reach each problem's threshold, against tuned fixed-lr gd.

Lines, for every problem of :data:`descend.problems.PROBLEMS`:

* ``gd tuned``: plain gd with the best fixed lr of a grid (1-3-10 steps from 1e-4 to 30; the
  one needing the fewest evaluations within ``--cap``, or, when none reaches the threshold, the
  one with the lowest final loss, then run up to ``--tuned-cap`` iterations); the baseline of
  the ratio columns;
* ``gd lr=1``: the notebook's lr;
* ``gd + armijo | wolfe | polyak (f* known) | bb | adaptive | auto``: descend's strategies;
* ``lbfgs``, ``bfgs``: descend's quasi-Newton rules (``minimize(fn, x0)`` and
  ``minimize(fn, x0, lr="auto")`` are ``lbfgs``);
* ``adam lr=1e-3``: Adam at its default lr;
* ``torch LBFGS``: ``torch.optim.LBFGS(line_search_fn="strong_wolfe")``, closure calls counted;
* ``scipy L-BFGS-B``: ``scipy.optimize.minimize(method="L-BFGS-B")`` with torch gradients.

Every run stops at the threshold or at the cap (``--cap`` iterations; "not reached" then).
Evaluations count value+gradient evaluations (line-search trials included). Time: median of
``--repeats`` runs (one run when it is capped or takes over 2 s). Ratios: evaluations and
time over the tuned-gd line of the same problem ("<" when tuned gd did not reach the threshold
even with the long cap: the true ratio is below that bound).

    python benchmarks/steps.py [--cap 5000] [--repeats 3] [--problems notebook,rosenbrock_2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.optimize
import torch

import descend
from descend import steps, stops
from descend.problems import PROBLEMS, Problem

GRID = [m * 10.0**e for e in range(-4, 2) for m in (1, 3)]


class Reached(Exception):
    """Raised inside a closure once the loss is at the threshold (stops foreign optimisers)."""


def below(threshold: float) -> stops.Criterion:
    def check(s: Any) -> None:
        if s.loss <= threshold:
            raise StopIteration

    return stops.Callback(check)


Outcome = tuple[bool, int, int]  # reached, iterations, evaluations


def run_descend(p: Problem, cap: int, **kw: Any) -> Outcome:
    res = descend.minimize(p.fn, p.x0, stop=below(p.threshold), max_iter=cap, **kw)
    return res.reason == "callback", res.nit, res.nfev


def _leaves(p: Problem) -> list[torch.Tensor]:
    xs = list(p.x0) if isinstance(p.x0, (tuple, list)) else [p.x0]
    return [x.detach().clone().requires_grad_(True) for x in xs]


def _call(p: Problem, leaves: list[torch.Tensor]) -> torch.Tensor:
    return p.fn(tuple(leaves) if isinstance(p.x0, tuple) else leaves[0])


def run_torch_lbfgs(p: Problem, cap: int) -> Outcome:
    leaves = _leaves(p)
    opt = torch.optim.LBFGS(leaves, lr=1, max_iter=cap, max_eval=cap * 5 // 4,
                            tolerance_grad=0.0, tolerance_change=0.0,
                            line_search_fn="strong_wolfe")
    evals = 0

    def closure() -> torch.Tensor:
        nonlocal evals
        opt.zero_grad()
        loss = _call(p, leaves)
        loss.backward()
        evals += 1
        if loss.item() <= p.threshold:
            raise Reached
        return loss

    try:
        opt.step(closure)
    except Reached:
        it = opt.state[opt._params[0]].get("n_iter", 0)
        return True, it, evals
    return False, opt.state[opt._params[0]].get("n_iter", 0), evals


def run_scipy(p: Problem, cap: int) -> Outcome:
    leaves = _leaves(p)
    shapes = [t.shape for t in leaves]
    sizes = [t.numel() for t in leaves]
    dtype = leaves[0].dtype
    evals = 0

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal evals
        flat = torch.tensor(z, dtype=dtype)
        xs = [c.reshape(s).requires_grad_(True) for c, s in zip(flat.split(sizes), shapes)]
        loss = _call(p, xs)
        grads = torch.autograd.grad(loss, xs)
        evals += 1
        if loss.item() <= p.threshold:
            raise Reached
        return loss.item(), torch.cat([g.reshape(-1) for g in grads]).double().numpy()

    z0 = torch.cat([t.detach().reshape(-1) for t in leaves]).double().numpy()
    nit = 0

    def count(_: Any) -> None:
        nonlocal nit
        nit += 1

    try:
        scipy.optimize.minimize(fun, z0, jac=True, method="L-BFGS-B", callback=count,
                                options=dict(maxiter=cap, maxfun=cap * 5 // 4, ftol=0.0,
                                             gtol=0.0))
    except Reached:
        return True, nit + 1, evals
    return False, nit, evals


def tuned_gd(p: Problem, cap: int) -> float:
    """The grid's best lr: the fewest evaluations to the threshold, or, when none reaches it
    within ``cap``, the lowest final loss (then run with the long cap)."""
    reached: list[tuple[int, float]] = []
    final: list[tuple[float, float]] = []
    for lr in GRID:
        res = descend.minimize(p.fn, p.x0, rule="gd", lr=lr, stop=below(p.threshold),
                               max_iter=cap)
        if res.reason == "callback":
            reached.append((res.nfev, lr))
        elif math.isfinite(res.loss) and res.reason == "max_iter":
            final.append((res.loss, lr))
    if reached:
        return min(reached)[1]
    return min(final)[1] if final else math.nan


def methods(p: Problem) -> dict[str, Callable[[Problem, int], Outcome]]:
    def d(**kw: Any) -> Callable[[Problem, int], Outcome]:
        return lambda q, cap: run_descend(q, cap, **kw)

    return {
        "gd lr=1 (notebook)": d(rule="gd", lr=1.0),
        "gd + armijo": d(rule="gd", lr="armijo"),
        "gd + wolfe": d(rule="gd", lr="wolfe"),
        "gd + polyak (f* known)": d(rule="gd", lr=steps.Polyak(f_star=p.f_star)),
        "gd + bb": d(rule="gd", lr="bb"),
        "gd + adaptive": d(rule="gd", lr="adaptive"),
        "gd + auto": d(rule="gd", lr="auto"),
        "lbfgs (default; auto)": d(lr="auto"),
        "bfgs": d(rule="bfgs"),
        "adam lr=1e-3": d(rule="adam", lr=1e-3),
        "torch LBFGS": run_torch_lbfgs,
        "scipy L-BFGS-B": run_scipy,
    }


def timed(fn: Callable[[], Outcome], repeats: int) -> tuple[Outcome, float]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        if not out[0] or times[-1] > 2.0:  # capped or long runs: one is enough
            break
    assert out is not None
    return out, statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cap", type=int, default=5000, help="iteration cap per run")
    ap.add_argument("--tuned-cap", type=int, default=50_000,
                    help="iteration cap for tuned gd when the grid (at --cap) reaches nothing")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats (median)")
    ap.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated names")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"cap {a.cap} iterations; time: median of {a.repeats}; ratios vs gd tuned "
          f"(evaluations, time)\n")
    head = (f"{'problem':24s} {'method':24s} {'reached':>8s} {'iters':>6s} {'evals':>6s} "
            f"{'ms':>8s} {'evals/tuned':>11s} {'time/tuned':>10s}")
    print(head)
    print("-" * len(head))
    for name in a.problems.split(","):
        p = PROBLEMS[name]()
        lr = tuned_gd(p, a.cap)
        rows: list[tuple[str, Outcome, float]] = []
        tuned_label = f"gd tuned lr={lr:g}" if math.isfinite(lr) else "gd tuned (none)"
        if math.isfinite(lr):
            out, t = timed(lambda lr=lr, p=p: run_descend(p, a.tuned_cap, rule="gd", lr=lr),
                           a.repeats)
        else:
            out, t = (False, a.cap, a.cap + 1), math.nan
        rows.append((tuned_label, out, t))
        base_ok, base_evals, base_t = out[0], out[2], t
        for label, fn in methods(p).items():
            o, tt = timed(lambda fn=fn, p=p: fn(p, a.cap), a.repeats)
            rows.append((label, o, tt))
        for label, (ok, nit, nfev), t in rows:
            if ok and base_ok:
                ratio_e, ratio_t = f"{nfev / base_evals:11.2f}", f"{t / base_t:10.2f}"
            elif ok:  # tuned gd did not reach: the ratio is below this bound
                ratio_e = f"<{nfev / base_evals:10.3f}"
                ratio_t = "-".rjust(10)
            else:
                ratio_e, ratio_t = "-".rjust(11), "-".rjust(10)
            reached = "yes" if ok else "NOT"
            ms = f"{t * 1e3:8.1f}" if ok else "-".rjust(8)
            print(f"{name:24s} {label:24s} {reached:>8s} {nit:6d} {nfev:6d} {ms} {ratio_e} "
                  f"{ratio_t}", flush=True)
        print()


if __name__ == "__main__":
    main()
