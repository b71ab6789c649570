"""Start-up: whole processes against `python -c "import torch"`, measured in the same run.

Each command runs as a fresh process, timed from spawn to exit, interleaved, median of repeats.
Targets: `descend demo --quiet` at most 1.25x the bare torch import (which dominates every short
run); `descend --help` and `descend runs list` (a records folder of 1,000 runs) at most 0.3x:
they need no tensors and import no torch.

    python benchmarks/startup.py [--repeats 9] [--runs 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE = 'python -c "import torch"'
TARGETS = {"descend demo --quiet": 1.25, "descend --help": 0.3, "descend runs list": 0.3}


def _make_runs(root: Path, n: int) -> None:
    """``n`` small run records, written with the store's own writer (no params: no torch)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from descend import store

    # throwaway records in a temporary folder: skip the fsyncs that make real records durable
    store._fsync_tree = store._fsync_dir = lambda path: None  # type: ignore[assignment]
    env = {"descend": "bench", "created": ""}
    for k in range(n):
        env["created"] = f"2026-01-01T00:{k // 60 % 60:02d}:{k % 60:02d}.{k:06d}Z"
        store.record_run(root, run_id=f"bench-{k:05d}", env=env,
                         config={"kind": "bench", "problem": "quadratic", "rule": "gd",
                                 "lr": 0.1},
                         history_columns={"iteration": [0, 1, 2], "loss": [1.0, 0.5, 0.25]},
                         result_summary={"loss": 0.25, "nit": 2, "reason": "max_iter",
                                         "success": False, "rule": "gd", "step": "lr=0.1"})
    store.list_runs(root)  # the index is warm, as after any command that recorded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--runs", type=int, default=1000, help="runs in the records folder")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        t = time.perf_counter()
        _make_runs(root, a.runs)
        print(f"{a.runs} runs recorded in {time.perf_counter() - t:.1f} s")
        descend = [sys.executable, "-m", "descend"]
        commands = {
            BASELINE: [sys.executable, "-c", "import torch"],
            'python -c "import descend"': [sys.executable, "-c", "import descend"],
            "descend --help": [*descend, "--help"],
            "descend runs list": [*descend, "runs", "list", "--runs", str(root)],
            "descend demo --quiet": [*descend, "demo", "--quiet", "--runs", str(root)],
        }
        env = {**os.environ, "DESCEND_RUNS": str(root)}
        times: dict[str, list[float]] = {k: [] for k in commands}
        for cmd in commands.values():  # warm the file cache
            subprocess.run(cmd, check=True, capture_output=True, env=env)
        for _ in range(a.repeats):
            for name, cmd in commands.items():
                t = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, env=env)
                times[name].append(time.perf_counter() - t)
    base = statistics.median(times[BASELINE])
    print(f"whole-process wall time, median of {a.repeats} repeats")
    print(f"{'command':30s} {'seconds':>8s} {'vs import torch':>16s} {'target':>8s}")
    for name, ts in times.items():
        m = statistics.median(ts)
        target = f"<= {TARGETS[name]:g}x" if name in TARGETS else ""
        print(f"{name:30s} {m:8.3f} {m / base:15.2f}x {target:>8s}")


if __name__ == "__main__":
    main()
