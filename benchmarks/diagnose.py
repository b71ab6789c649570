"""diagnose on every problem of the set: accuracy against the dense Hessian, cost, and the
notebook's predicted iteration counts against observed ones.

Table 1, per problem at its start x0: L and mu from diagnose against numpy.linalg.eigvalsh of
the dense Hessian (relative errors), Hessian-vector products spent, and diagnose's wall time as a
ratio to one value+gradient evaluation (median of repeats, both measured here).
Table 2, the notebook at several fixed lr: predicted gd iterations to loss <= 1e-5 minus the
iterations minimize observes, over many seeds.

    python benchmarks/diagnose.py [--repeats 5] [--seeds 100]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import numpy as np
import torch

import descend
from descend import problems, stops


def dense_spectrum(p: problems.Problem) -> np.ndarray:
    x0 = p.x0 if isinstance(p.x0, tuple) else (p.x0,)
    shapes, sizes = [t.shape for t in x0], [t.numel() for t in x0]

    def flat_fn(v: torch.Tensor) -> torch.Tensor:
        parts = tuple(q.reshape(s) for q, s in zip(torch.split(v, sizes), shapes))
        return p.fn(parts if isinstance(p.x0, tuple) else parts[0])

    hess = torch.autograd.functional.hessian(flat_fn, torch.cat([t.reshape(-1) for t in x0]))
    return np.linalg.eigvalsh(hess.double().numpy())


def median_seconds(f, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=100)
    a = ap.parse_args()
    torch.set_num_threads(1)

    print(f"{'problem':<24} {'n':>5} {'L':>10} {'rel.err L':>10} {'mu':>11} {'rel.err mu':>10} "
          f"{'hvps':>5} {'diagnose / 1 f+grad':>20}")
    for name in problems.PROBLEMS:
        p = problems.get(name)
        eig = dense_spectrum(p)
        d = descend.diagnose(p.fn, p.x0)
        leaves = [t.clone().requires_grad_(True)
                  for t in (p.x0 if isinstance(p.x0, tuple) else (p.x0,))]
        arg = tuple(leaves) if isinstance(p.x0, tuple) else leaves[0]

        def grad_eval(arg=arg, leaves=leaves, p=p) -> None:
            torch.autograd.grad(p.fn(arg), leaves)

        base = median_seconds(grad_eval, a.repeats)
        diag = median_seconds(lambda p=p: descend.diagnose(p.fn, p.x0), a.repeats)
        n = sum(t.numel() for t in leaves)
        print(f"{name:<24} {n:>5} {d.L:>10.4g} {abs(d.L / eig[-1] - 1):>10.1e} {d.mu:>11.4g} "
              f"{abs(d.mu / eig[0] - 1):>10.1e} {d.hvps:>5} {diag / base:>19.0f}x")

    print(f"\nnotebook: predicted minus observed gd iterations to loss <= 1e-5, {a.seeds} seeds")
    print(f"{'lr':>5} {'2/L':>6} {'observed (min-max)':>19}  predicted - observed: count")
    for lr in (0.5, 1.0, 2.0, 4.5, 8.0):
        diffs: collections.Counter[int] = collections.Counter()
        seen = []
        for seed in range(a.seeds):
            p = problems.notebook(seed)
            d = descend.diagnose(p.fn, p.x0, lr=lr, threshold=1e-5)
            res = descend.minimize(p.fn, p.x0, rule="gd", lr=lr, stop=stops.LossBelow(1e-5))
            diffs[int(d.iterations) - res.nit] += 1
            seen.append(res.nit)
        counts = ", ".join(f"{k:+d}: {v}" for k, v in sorted(diffs.items()))
        print(f"{lr:>5g} {d.lr_max:>6.4g} {f'{min(seen)}-{max(seen)}':>19}  {counts}")


if __name__ == "__main__":
    main()
