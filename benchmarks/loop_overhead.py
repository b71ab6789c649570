"""Loop overhead on the notebook problem: microseconds per iteration, no observers.

Compares, in one run (median of repeats, interleaved so load on this shared machine hits all
alike): the notebook's loop as written (prints removed), a hand-written in-place loop
(``torch.autograd.grad`` then ``x.sub_(g, alpha=lr)`` under ``no_grad``), ``torch.optim.SGD`` in
a loop, ``descend.minimize(rule="gd")`` and the same with ``compile=True`` (at steady state: the
compilation happens in the warm-up and its time is printed apart; the run takes
:mod:`descend.chunks`' compiled iterations), and the whole solve written by hand as one
``torch.while_loop`` through ``torch.compile`` (the floor: no history, no criteria). Every
variant stops on ``loss > threshold`` or the iteration count, like the notebook. Targets:
minimize at most 1.2x the in-place loop; the compiled path at most 12 us per iteration.

    python benchmarks/loop_overhead.py [--iters 2000] [--repeats 9]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import descend
from descend import stops

TARGET = torch.FloatTensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]])
LR, THRESHOLD = 0.01, 0.0  # a small lr keeps the loss far from 0 for the whole run


def notebook_loop(x0: torch.Tensor, n: int) -> None:
    x = x0.clone()
    x.requires_grad = True
    loss = F.mse_loss(x, TARGET)
    iter_cnt = 0
    while loss > THRESHOLD and iter_cnt < n:
        iter_cnt += 1
        loss.backward()
        x = x - LR * x.grad
        x.detach_()
        x.requires_grad_(True)
        loss = F.mse_loss(x, TARGET)


def inplace_loop(x0: torch.Tensor, n: int) -> None:
    x = x0.clone().requires_grad_(True)
    for _ in range(n):
        loss = F.mse_loss(x, TARGET)
        if loss.item() <= THRESHOLD:
            break
        (g,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x.sub_(g, alpha=LR)


def optim_sgd_loop(x0: torch.Tensor, n: int) -> None:
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.SGD([x], lr=LR)
    for _ in range(n):
        opt.zero_grad()
        loss = F.mse_loss(x, TARGET)
        if loss.item() <= THRESHOLD:
            break
        loss.backward()
        opt.step()


def descend_gd(x0: torch.Tensor, n: int) -> None:
    res = descend.minimize(lambda x: F.mse_loss(x, TARGET), x0, rule="gd", lr=LR,
                           stop=stops.LossBelow(THRESHOLD), max_iter=n)
    assert res.nit == n, res


def _while_loop_solve(x0: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from torch._higher_order_ops.while_loop import while_loop

    value_and_grad = torch.func.grad_and_value(lambda x: F.mse_loss(x, TARGET))

    def cond(i: torch.Tensor, x: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        return (loss > THRESHOLD) & (i < n)

    def body(i: torch.Tensor, x: torch.Tensor, loss: torch.Tensor) -> tuple[torch.Tensor, ...]:
        g, _ = value_and_grad(x)
        x = x - LR * g
        return i + 1, x, F.mse_loss(x, TARGET)

    i, x, _ = while_loop(cond, body, (torch.zeros((), dtype=torch.long), x0,
                                      F.mse_loss(x0, TARGET)))
    return i, x


_WHILE_LOOP = torch.compile(_while_loop_solve, fullgraph=True, dynamic=False)


def while_loop_compiled(x0: torch.Tensor, n: int) -> None:
    """The whole solve as one ``torch.while_loop`` through ``torch.compile``, by hand: no
    history, no criteria but the notebook's test, nothing read until the end."""
    i, _ = _WHILE_LOOP(x0, torch.tensor(n))
    assert int(i) == n


COMPILE_SECONDS: list[float] = []


def descend_gd_compiled(x0: torch.Tensor, n: int) -> None:
    res = descend.minimize(lambda x: F.mse_loss(x, TARGET), x0, rule="gd", lr=LR,
                           stop=stops.LossBelow(THRESHOLD), max_iter=n, compile=True)
    assert res.nit == n, res
    COMPILE_SECONDS.append(res.compile_seconds)


VARIANTS = {
    "notebook loop (prints removed)": notebook_loop,
    "in-place loop (autograd.grad + sub_)": inplace_loop,
    "torch.optim.SGD loop": optim_sgd_loop,
    "descend.minimize(rule='gd')": descend_gd,
    "descend.minimize(rule='gd', compile=True)": descend_gd_compiled,
    "hand-compiled torch.while_loop solve": while_loop_compiled,
}
BASELINE = "in-place loop (autograd.grad + sub_)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args()
    torch.manual_seed(0)
    x0 = torch.rand(3, 3)
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for f in VARIANTS.values():  # warm-up
        f(x0, 200)
    for _ in range(a.repeats):
        for name, f in VARIANTS.items():
            t = time.perf_counter()
            f(x0, a.iters)
            times[name].append((time.perf_counter() - t) / a.iters * 1e6)
    base = statistics.median(times[BASELINE])
    print(f"notebook problem, {a.iters} iterations, median of {a.repeats} repeats "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"{'variant':44s} {'us/iter':>9s} {'vs in-place':>12s}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:44s} {m:9.1f} {m / base:11.2f}x")
    print(f"compile=True: the first run compiled in {COMPILE_SECONDS[0]:.1f} s; later runs "
          f"reuse it (first evaluation {statistics.median(COMPILE_SECONDS[1:]) * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
