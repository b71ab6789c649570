"""Throughput of ``descend.fit`` against a hand-written PyTorch loop, measured in one run.

One epoch of ``nn.Linear(5, 3)`` and of a 5-64-3 ReLU MLP on N synthetic rows (default
1,000,000), batch 1024, plain SGD. The baseline is the loop a torch user writes: one
``randperm`` per epoch, gather each batch by index, ``zero_grad``, forward, backward,
``optim.SGD`` step. For reference, a default ``DataLoader`` over a ``TensorDataset`` (per-sample
indexing) is timed on a tenth of the rows. Each figure is the median of ``--repeats`` runs,
interleaved so that machine noise hits every variant alike.

    python benchmarks/fit_throughput.py [--rows 1000000] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import descend


def make_model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "linear":
        return nn.Linear(5, 3)
    return nn.Sequential(nn.Linear(5, 64), nn.ReLU(), nn.Linear(64, 3))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def hand_loop(model: nn.Module, X: torch.Tensor, Y: torch.Tensor, bs: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    n = len(X)
    sync(X.device)
    t = time.perf_counter()
    perm = torch.randperm(n).to(X.device)
    for i in range(0, n, bs):
        idx = perm[i:i + bs]
        xb, yb = X.index_select(0, idx), Y.index_select(0, idx)
        opt.zero_grad()
        loss = F.mse_loss(model(xb), yb)
        loss.backward()
        opt.step()
    sync(X.device)
    return n / (time.perf_counter() - t)


def dataloader_loop(model: nn.Module, X: torch.Tensor, Y: torch.Tensor, bs: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=bs,
                                         shuffle=True)
    sync(X.device)
    t = time.perf_counter()
    for xb, yb in loader:
        opt.zero_grad()
        F.mse_loss(model(xb), yb).backward()
        opt.step()
    sync(X.device)
    return len(X) / (time.perf_counter() - t)


def descend_fit(model: nn.Module, X: torch.Tensor, Y: torch.Tensor, bs: int) -> float:
    sync(X.device)
    t = time.perf_counter()
    res = descend.fit(model, (X, Y), loss="mse", rule="gd", lr=1e-3, batch_size=bs, epochs=1,
                      metrics=[])
    sync(X.device)
    seconds = time.perf_counter() - t
    assert res.epochs == 1 and res.reason == "max_epochs", res
    return len(X) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads (0: leave); 1 is steadier on a shared machine")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(a.rows, 5, generator=g)
    Y = X @ torch.randn(5, 3, generator=g) + 0.1 * torch.randn(a.rows, 3, generator=g)
    X, Y = X.to(dev), Y.to(dev)
    small = a.rows // 10
    print(f"rows {a.rows:,}, batch {a.batch_size}, device {dev}, threads "
          f"{torch.get_num_threads()}, median of {a.repeats} (samples/s, higher is better)")
    print(f"{'model':8} {'variant':28} {'samples/s':>12} {'vs hand loop':>13} "
          f"{'min-max (M)':>14}")
    for kind, target in (("linear", 0.10), ("mlp", 0.05)):
        times: dict[str, list[float]] = {"hand": [], "descend": [], "loader": []}
        for r in range(a.repeats + 1):  # the first round warms up and is dropped
            if r % 2:  # alternate the order so that drifting load hits both alike
                d = descend_fit(make_model(kind).to(dev), X, Y, a.batch_size)
                h = hand_loop(make_model(kind).to(dev), X, Y, a.batch_size)
            else:
                h = hand_loop(make_model(kind).to(dev), X, Y, a.batch_size)
                d = descend_fit(make_model(kind).to(dev), X, Y, a.batch_size)
            lo = dataloader_loop(make_model(kind).to(dev), X[:small], Y[:small], a.batch_size) \
                if r < 2 else None
            if r:
                times["hand"].append(h)
                times["descend"].append(d)
                if lo is not None:
                    times["loader"].append(lo)
        base = statistics.median(times["hand"])
        rows = (("hand loop (randperm + gather)", times["hand"]),
                ("descend.fit", times["descend"]),
                ("DataLoader(TensorDataset)*", times["loader"]))
        for label, ts in rows:
            med = statistics.median(ts)
            print(f"{kind:8} {label:28} {med / 1e6:10.3f} M {med / base:12.3f}x "
                  f"{min(ts) / 1e6:7.3f}-{max(ts) / 1e6:.3f}")
        over = 1 - statistics.median(times["descend"]) / base
        print(f"{kind:8} descend overhead {over:+.1%} (target <= {target:.0%})")
    print("* DataLoader timed on a tenth of the rows, one repeat")


if __name__ == "__main__":
    main()
