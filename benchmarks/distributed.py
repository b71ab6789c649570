"""Data-parallel and streamed ``fit``: samples per second, measured in one run.

* **1 vs 2 processes**: one epoch of the ``fit_throughput`` MLP (5-64-3 ReLU, plain SGD, batch
  1024) on N synthetic rows (default 200,000), in this process (1 thread, and all cores) and
  under ``torchrun --nproc-per-node 2`` (gloo on the loopback address, 1 thread per rank).
  Samples per second are rows over the loop's time (``result.seconds``; the slowest rank's).
* **Communication share of a step**: in the 2-process job, the time of the collectives one
  step makes (DDP's all-reduce of the 579 gradients and the loss's all-reduce), timed alone
  200 times, over the time of a step.
* **Streamed vs in memory**: ``fit("mlp:64", file.parquet)`` on the same rows (5 features, one
  target, batch 1024, one epoch), with ``stream=True`` and ``stream=False``: samples per second
  of the loop, and of the whole call (reading and preprocessing included).

Each figure is the median of ``--repeats`` runs.

    python benchmarks/distributed.py [--rows 200000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import descend

ROOT = Path(__file__).resolve().parents[1]


def data(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(rows, 5, generator=g)
    return X, X @ torch.randn(5, 3, generator=g) + 0.1 * torch.randn(rows, 3, generator=g)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 64), nn.ReLU(), nn.Linear(64, 3))


def one_epoch(rows: int) -> tuple[float, int]:
    X, Y = data(rows)
    res = descend.fit(mlp(), (X, Y), loss="mse", rule="gd", lr=1e-3, batch_size=1024, epochs=1,
                      metrics=[])
    assert res.reason == "max_epochs", res
    return res.seconds, res.nit


def worker(rows: int, repeats: int, out: str) -> None:
    """One rank of the 2-process job: the epochs, then the collectives of one step alone."""
    import torch.distributed as dist

    seconds = [one_epoch(rows) for _ in range(repeats)]
    nit = seconds[0][1]
    grads = torch.zeros(sum(p.numel() for p in mlp().parameters()))
    loss = torch.zeros((), dtype=torch.float64)
    for _ in range(20):
        dist.all_reduce(grads)
    t = time.perf_counter()
    for _ in range(200):
        dist.all_reduce(grads)
        dist.all_reduce(loss)
    comm = (time.perf_counter() - t) / 200
    Path(out, f"rank{dist.get_rank()}.json").write_text(json.dumps(
        {"seconds": [s for s, _ in seconds], "nit": nit, "comm": comm}))


def two_processes(rows: int, repeats: int) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, OMP_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--master-addr", "127.0.0.1", "--master-port", str(port), __file__,
                        "--worker", tmp, "--rows", str(rows), "--repeats", str(repeats)],
                       check=True, env=env, capture_output=True)
        ranks = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(2)]
    slowest = [max(a, b) for a, b in zip(ranks[0]["seconds"], ranks[1]["seconds"])]
    step = statistics.median(slowest) / ranks[0]["nit"]
    return {"rate": rows / statistics.median(slowest), "step": step,
            "comm": statistics.median([r["comm"] for r in ranks])}


def streamed(rows: int, repeats: int) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    X, Y = data(rows)
    out: dict[str, list[float]] = {"stream": [], "memory": [], "stream_call": [],
                                   "memory_call": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "rows.parquet")
        cols = {f"x{i}": X[:, i].double().numpy() for i in range(5)}
        pq.write_table(pa.table({**cols, "y": Y[:, 0].double().numpy()}), path,
                       row_group_size=65536)
        for _ in range(repeats):
            for stream in (True, False):
                name = "stream" if stream else "memory"
                t = time.perf_counter()
                res = descend.fit("mlp:64", path, target="y", rule="gd", lr=1e-3,
                                  batch_size=1024, epochs=1, metrics=[], stream=stream)
                out[f"{name}_call"].append(rows / (time.perf_counter() - t))
                out[name].append(rows / res.seconds)
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--worker", metavar="DIR", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        torch.set_num_threads(1)
        worker(a.rows, a.repeats, a.worker)
        return
    cores = os.cpu_count() or 1
    torch.set_num_threads(1)
    one = [one_epoch(a.rows)[0] for _ in range(a.repeats)]
    torch.set_num_threads(cores)
    all_cores = [one_epoch(a.rows)[0] for _ in range(a.repeats)]
    torch.set_num_threads(1)
    two = two_processes(a.rows, a.repeats)
    st = streamed(a.rows, a.repeats)
    base = a.rows / statistics.median(one)
    print(f"# descend.fit data-parallel and streamed: {a.rows} rows, MLP 5-64-3, SGD, batch "
          f"1024, one epoch, median of {a.repeats}; {cores} cores, torch {torch.__version__}")
    print("| run | samples/s | vs 1 process |")
    print("|---|---:|---:|")
    print(f"| 1 process, 1 thread | {base:,.0f} | 1.00x |")
    rate = a.rows / statistics.median(all_cores)
    print(f"| 1 process, {cores} threads | {rate:,.0f} | {rate / base:.2f}x |")
    print(f"| 2 processes (torchrun, gloo), 1 thread each | {two['rate']:,.0f} | "
          f"{two['rate'] / base:.2f}x |")
    print(f"| streamed from Parquet, loop (1 process, MLP 5-64-1) | {st['stream']:,.0f} | "
          f"{st['stream'] / st['memory']:.2f}x of in memory |")
    print(f"| in memory from Parquet, loop (1 process, MLP 5-64-1) | {st['memory']:,.0f} | |")
    print(f"| streamed, whole call (reading, statistics) | {st['stream_call']:,.0f} | "
          f"{st['stream_call'] / st['memory_call']:.2f}x of in memory |")
    print(f"| in memory, whole call (reading, preprocessing) | {st['memory_call']:,.0f} | |")
    print(f"\ncommunication per step (2 processes): {two['comm'] * 1e6:.0f} us of a "
          f"{two['step'] * 1e6:.0f} us step = {two['comm'] / two['step']:.0%}")


if __name__ == "__main__":
    main()
