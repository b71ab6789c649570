"""Start-up: `descend demo --quiet` as a whole process against `python -c "import torch"`.

Each command runs as a fresh process, timed from spawn to exit, interleaved, median of repeats.
Target: the demo at most 1.25x the bare torch import (which dominates every short run).

    python benchmarks/startup.py [--repeats 9]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
    'python -c "import descend"': [sys.executable, "-c", "import descend"],
    "descend demo --quiet": [sys.executable, "-m", "descend", "demo", "--quiet"],
}
BASELINE = 'python -c "import torch"'


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args()
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for cmd in COMMANDS.values():  # warm the file cache
        subprocess.run(cmd, check=True, capture_output=True)
    for _ in range(a.repeats):
        for name, cmd in COMMANDS.items():
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[name].append(time.perf_counter() - t)
    base = statistics.median(times[BASELINE])
    print(f"whole-process wall time, median of {a.repeats} repeats")
    print(f"{'command':30s} {'seconds':>8s} {'vs import torch':>16s}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:30s} {m:8.3f} {m / base:15.2f}x")


if __name__ == "__main__":
    main()
