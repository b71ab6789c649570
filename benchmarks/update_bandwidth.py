"""Update bandwidth: milliseconds per iteration of gd, momentum and adam on one large float32
parameter, descend against the hand-written in-place loop and ``torch.optim`` (foreach and
fused), in one run.

Every variant minimises the same objective, the linear ``f(x) = t . x`` (the cheapest there
is: one read of ``x`` forward, one product backward, the same cost everywhere, so the update
shows), for a fixed number of iterations. The time per iteration is taken at steady state,
``(T(2 + iters) - T(2)) / iters``, so what runs once (the first touch of new buffers, the
result) is left out. The variants of a case are interleaved, and each repeat starts the round
at the next variant: at 1e8 the cost of the page faults on a fresh gradient (most of an
iteration) depends on where in the round a variant runs by more than the variants differ (up
to 1.5x on this VM), so with ``--repeats`` a multiple of the variant count each takes every
place alike. The table shows medians. descend
runs with ``stop=MaxIter(n)`` (its guards and its history still on: the loss and gradient norm
are computed and recorded every iteration). ``Adam(fused=True)`` is descend's adam through
torch's fused kernel (opt-in, as in ``torch.optim``). Targets: descend at most 1.05x the
in-place loop for gd and momentum, at most 1.05x fused ``torch.optim.Adam`` for adam. The
variant "in-place loop, reading |g|" is the hand loop plus the one read of the gradient that a
loop recording ``|g|`` cannot avoid: it shows how much of descend's gap that read is. The
variant "torch.optim.Adam(fused), keeping best" is fused Adam plus the copy of ``x`` a loop that
returns its best point must make before the in-place kernel writes over it (descend keeps its
best point, and ``Adam(fused=True)`` pays that copy).

Memory: a case holds about ten tensors of the parameter's size (400 MB each at 1e8); cases run
one after another and free their memory in between.

    python benchmarks/update_bandwidth.py [--sizes 1e7 1e8] [--iters 5] [--repeats 4]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable

import torch

import descend
from descend import stops

LR = {"gd": 0.1, "momentum": 0.01, "adam": 1e-3}
#: Iterations left out of the steady state: whatever the in-place path first touches (spare
#: buffers, where it needs them) is touched by iteration 2.
WARM = 2
MU = 0.9


def objective(t: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.dot(t, x)

    return f


def descend_run(rule: str, fused: bool = False) -> Callable[[torch.Tensor, torch.Tensor, int],
                                                            None]:
    def run(x0: torch.Tensor, t: torch.Tensor, n: int) -> None:
        the_rule = descend.rules.RULES[rule](fused=True) if fused else rule
        res = descend.minimize(objective(t), x0, rule=the_rule, lr=LR[rule],
                               stop=stops.MaxIter(n))
        assert res.nit == n, res

    return run


def inplace_loop(rule: str, norms: bool = False) -> Callable[[torch.Tensor, torch.Tensor, int],
                                                               None]:
    """The loop a user writes by hand: autograd.grad, then the update with in-place ops. With
    ``norms``, it also reads the gradient's norm each iteration (``sqrt(g . g)``, as descend
    does for its history and its criteria): the floor of a loop that records ``|g|``."""

    def run(x0: torch.Tensor, t: torch.Tensor, n: int) -> None:
        f, lr = objective(t), LR[rule]
        x = x0.clone().requires_grad_(True)
        buf: torch.Tensor | None = None
        for _ in range(n):
            loss = f(x)
            if not loss.item() < float("inf"):
                break
            (g,) = torch.autograd.grad(loss, x)
            if norms and not torch.vdot(g, g).sqrt().item() < float("inf"):
                break
            with torch.no_grad():
                if rule == "momentum":
                    buf = g if buf is None else buf.mul_(MU).add_(g)
                    x.sub_(buf, alpha=lr)
                else:
                    x.sub_(g, alpha=lr)

    return run


def optim_loop(rule: str, impl: str, best: bool = False) -> Callable[[torch.Tensor, torch.Tensor,
                                                                      int], None]:
    """``torch.optim.SGD`` / ``Adam`` with ``foreach=True`` or ``fused=True``. With ``best``,
    the loop also keeps its best point, as a user who wants it back must (a copy of ``x``
    into a buffer whenever the loss improves, before the step writes over ``x``): the floor of
    an in-place kernel that cannot write its result elsewhere, which fused Adam is."""

    def run(x0: torch.Tensor, t: torch.Tensor, n: int) -> None:
        f = objective(t)
        x = x0.clone().requires_grad_(True)
        kept, low = torch.empty_like(x0), float("inf")
        kw = {impl: True}
        if rule == "adam":
            opt: torch.optim.Optimizer = torch.optim.Adam([x], lr=LR[rule], **kw)
        else:
            opt = torch.optim.SGD([x], lr=LR[rule], momentum=MU if rule == "momentum" else 0,
                                  **kw)
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            loss = f(x)
            value = loss.item()
            if not value < float("inf"):
                break
            if best and value < low:
                low = value
                kept.copy_(x.detach())
            loss.backward()
            opt.step()

    return run


def variants(rule: str) -> dict[str, Callable[[torch.Tensor, torch.Tensor, int], None]]:
    out = {f"descend rule={rule!r}": descend_run(rule)}
    if rule == "adam":
        out["descend Adam(fused=True)"] = descend_run(rule, fused=True)
    if rule != "adam":
        out["in-place loop"] = inplace_loop(rule)
        out["in-place loop, reading |g|"] = inplace_loop(rule, norms=True)
    name = "Adam" if rule == "adam" else "SGD"
    out[f"torch.optim.{name}(foreach)"] = optim_loop(rule, "foreach")
    out[f"torch.optim.{name}(fused)"] = optim_loop(rule, "fused")
    if rule == "adam":
        out["torch.optim.Adam(fused), keeping best"] = optim_loop(rule, "fused", best=True)
    return out


BASELINE = {"gd": "in-place loop", "momentum": "in-place loop",
            "adam": "torch.optim.Adam(fused)"}


def case(rule: str, n: int, iters: int, repeats: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(n, generator=g)
    t = torch.randn(n, generator=g)
    vs = list(variants(rule).items())
    times: dict[str, list[float]] = {k: [] for k, _ in vs}
    for r in range(repeats):
        for name, f in vs[r % len(vs):] + vs[:r % len(vs)]:  # (each repeat starts elsewhere)
            took = []
            for n_it in (WARM, WARM + iters):
                start = time.perf_counter()
                f(x0, t, n_it)
                took.append(time.perf_counter() - start)
                gc.collect()
            times[name].append((took[1] - took[0]) / iters * 1e3)
    del x0, t
    gc.collect()
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e7, 1e8])
    ap.add_argument("--rules", nargs="+", default=["gd", "momentum", "adam"])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=4)
    a = ap.parse_args()
    print(f"ms per iteration, float32, {a.iters} iterations, median of {a.repeats} repeats "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"{'n':>6s} {'rule':9s} {'variant':40s} {'ms/iter':>9s} {'ratio':>7s}  baseline")
    for size in a.sizes:
        for rule in a.rules:
            med = case(rule, int(size), a.iters, a.repeats)
            base = med[BASELINE[rule]]
            for name, m in med.items():
                print(f"{size:6.0e} {rule:9s} {name:40s} {m:9.2f} {m / base:6.2f}x  "
                      f"{BASELINE[rule]}")


if __name__ == "__main__":
    main()
