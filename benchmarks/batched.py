"""Many notebook problems at once: ``minimize(..., batched=True)`` against three baselines.

K notebook-sized problems (a 3x3 ``x`` pulled to its own random target by gd, ``lr = 1``, until
``loss <= 1e-5``), in one run, microseconds per problem (median of repeats, interleaved):

* (a) the notebook's loop, one problem after another (over a sample of problems);
* (b) a hand-written batched autograd loop with a mask: every problem evaluated every iteration,
  the finished ones no longer moved, until all are done;
* (c) ``torch.func.vmap(grad_and_value(f))`` in lockstep until the slowest problem is done;
* ``descend.minimize(fn, X0, args=(T, W), rule="gd", lr=1.0, stop=LossBelow(1e-5),
  batched=True)``;
* ``no hist``: descend with ``BatchedHistory.add`` replaced by a no-op, for analysis only (what
  keeping every problem's loss and gradient norm per iteration costs: at K = 1e5 those rows are
  about 18 MB of fresh memory a run, which (b) does not keep);
* ``compiled``: descend with ``compile=True`` (:mod:`descend.batched_chunks`: 32 iterations of
  the working set a compiled call), at steady state: the first run of each case compiles (its
  wall time is the ``compile s`` column, paid once a process and objective), the timed runs
  find the graphs;
* the floor of any eager batched loop: only ``fn`` and its gradient, on exactly the problems
  still running at each iteration (as if compacted every iteration for free), no update, no
  test. Where the floor is above half of (b), no loop that evaluates ``fn`` op by op can be 2x
  faster than (b); only compiling could (the ``compiled`` column).

Two mixes: ``same`` (every problem's loss is the notebook's MSE) and ``spread`` (10% of the
problems have their loss weighted by 0.08, so they need about 10x the iterations of the rest).
Targets: at K = 1e5 on ``same``, descend at most 1.2x (b) per problem; on ``spread``, at least
2x faster than (b) and (c).

At K = 1e5 an iteration is mostly memory traffic, and on a VM the page faults of glibc's heap
(trimmed and grown again as large temporaries come and go) move every variant by up to 1.5x
from run to run, depending on what ran before; for a comparison without that noise, fix the
heap::

    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=2000000000:glibc.malloc.trim_threshold=4000000000 \
        python benchmarks/batched.py

    python benchmarks/batched.py [--sizes 1000,10000,100000] [--repeats 5] [--sample 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

import descend
from descend import stops
from descend.batched_result import BatchedHistory

LR, THRESHOLD = 1.0, 1e-5
HARD_WEIGHT, HARD_FRACTION = 0.08, 0.1


def problems(K: int, mix: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Starts, targets and loss weights of K problems."""
    g = torch.Generator().manual_seed(seed)
    T = torch.rand(K, 3, 3, generator=g)
    X0 = torch.rand(K, 3, 3, generator=g)
    W = torch.ones(K)
    if mix == "spread":
        W[torch.rand(K, generator=g) < HARD_FRACTION] = HARD_WEIGHT
    return X0, T, W


def losses(x: torch.Tensor, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return w * ((x - t) ** 2).mean(dim=(1, 2))


def notebook_one(x0: torch.Tensor, t: torch.Tensor, w: float) -> int:
    x = x0.clone()
    x.requires_grad = True
    loss = w * F.mse_loss(x, t)
    it = 0
    while loss > THRESHOLD:
        it += 1
        loss.backward()
        x = x - LR * x.grad
        x.detach_()
        x.requires_grad_(True)
        loss = w * F.mse_loss(x, t)
    return it


def masked_loop(X0: torch.Tensor, T: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    x = X0.clone()
    nit = torch.zeros(len(x), dtype=torch.long)
    while True:
        x.requires_grad_(True)
        loss = losses(x, T, W)
        (g,) = torch.autograd.grad(loss.sum(), x)
        active = loss.detach() > THRESHOLD
        if not bool(active.any()):
            return nit
        nit += active
        x = (x - LR * g * active[:, None, None]).detach()


def vmap_lockstep(X0: torch.Tensor, T: torch.Tensor, W: torch.Tensor) -> int:
    def f(x: torch.Tensor, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return w * ((x - t) ** 2).mean()

    step = torch.func.vmap(torch.func.grad_and_value(f))
    x, it = X0.clone(), 0
    while True:
        g, loss = step(x, T, W)
        if bool((loss <= THRESHOLD).all()):
            return it
        x = x - LR * g
        it += 1


def floor(X0: torch.Tensor, T: torch.Tensor, W: torch.Tensor,
          nit: torch.Tensor) -> Callable[[], None]:
    """fn and its gradient at iteration k on the problems with ``nit >= k`` (every problem is
    evaluated at its start and after each of its ``nit`` steps), rows sorted beforehand so that
    the running ones are a leading slice (a view: no gather)."""
    order = torch.argsort(nit, descending=True, stable=True)
    X, T, W = X0[order].clone(), T[order].clone(), W[order].clone()
    counts = [int(c) for c in (nit[None, :] >= torch.arange(int(nit.max()) + 1)[:, None]).sum(1)]

    def run() -> None:
        for c in counts:
            x = X[:c].detach().requires_grad_(True)
            torch.autograd.grad(losses(x, T[:c], W[:c]).sum(), x)

    return run


def batched(X0: torch.Tensor, T: torch.Tensor, W: torch.Tensor) -> descend.batched.BatchedResult:
    return descend.minimize(losses, X0, args=(T, W), rule="gd", lr=LR,
                            stop=stops.LossBelow(THRESHOLD), batched=True)


def compiled(X0: torch.Tensor, T: torch.Tensor,
             W: torch.Tensor) -> descend.batched.BatchedResult:
    return descend.minimize(losses, X0, args=(T, W), rule="gd", lr=LR,
                            stop=stops.LossBelow(THRESHOLD), batched=True, compile=True)


def without_history(X0: torch.Tensor, T: torch.Tensor, W: torch.Tensor) -> None:
    add = BatchedHistory.add
    BatchedHistory.add = lambda self, *a: None  # type: ignore[method-assign]
    try:
        batched(X0, T, W)
    finally:
        BatchedHistory.add = add  # type: ignore[method-assign]


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sample", type=int, default=20, help="problems timed for (a)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; us per problem, "
          f"median of {a.repeats}")
    print(f"{'mix':7s} {'K':>7s} {'nit':>9s} {'(a) loop':>9s} {'(b) mask':>9s} "
          f"{'(c) vmap':>9s} {'descend':>9s} {'/(b)':>6s} {'/(c)':>6s} {'no hist':>9s} "
          f"{'/(b)':>6s} {'floor':>9s} {'floor/(b)':>9s} {'compiled':>9s} {'/(b)':>6s} "
          f"{'/(c)':>6s} {'compile s':>9s}")
    for mix in ("same", "spread"):
        for K in (int(float(s)) for s in a.sizes.split(",")):
            X0, T, W = problems(K, mix)
            res = batched(X0, T, W)
            nit = masked_loop(X0, T, W)
            assert torch.equal(res.nit, nit), "descend and the masked loop disagree on nit"
            first = compiled(X0, T, W)  # (compiles)
            assert torch.equal(first.nit, nit), "compiled descend disagrees on nit"
            times: dict[str, list[float]] = {k: [] for k in ("a", "b", "c", "d", "e", "h", "k")}
            sample = range(0, K, max(K // a.sample, 1))
            bare = floor(X0, T, W, nit)
            for _ in range(a.repeats):
                times["a"].append(sum(timed(partial(notebook_one, X0[i], T[i], float(W[i])))
                                      for i in sample) / len(sample))
                times["b"].append(timed(partial(masked_loop, X0, T, W)) / K)
                times["c"].append(timed(partial(vmap_lockstep, X0, T, W)) / K)
                times["d"].append(timed(partial(batched, X0, T, W)) / K)
                times["e"].append(timed(bare) / K)
                times["h"].append(timed(partial(without_history, X0, T, W)) / K)
                times["k"].append(timed(partial(compiled, X0, T, W)) / K)
            m = {k: statistics.median(v) * 1e6 for k, v in times.items()}
            print(f"{mix:7s} {K:7d} {int(nit.min()):>4d}-{int(nit.max()):<4d} {m['a']:9.2f} "
                  f"{m['b']:9.3f} {m['c']:9.3f} {m['d']:9.3f} {m['d'] / m['b']:6.2f} "
                  f"{m['d'] / m['c']:6.2f} {m['h']:9.3f} {m['h'] / m['b']:6.2f} {m['e']:9.3f} "
                  f"{m['e'] / m['b']:9.2f} {m['k']:9.3f} {m['k'] / m['b']:6.2f} "
                  f"{m['k'] / m['c']:6.2f} {first.compile_seconds:9.1f}", flush=True)


if __name__ == "__main__":
    main()
