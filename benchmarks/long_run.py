"""Long runs stay light: a 1e6-iteration run, its record, and the commands that read it.

One run of the notebook problem (gd, a small ``lr``, ``stop=MaxIter(n)``: no criterion fires
before the cap), timed three ways, interleaved, median of repeats:

- ``no history``: ``History.append`` replaced by a no-op and no record: the loop alone;
- ``in memory``: the history recorded in memory (the default), no record;
- ``recorded``: the same with ``record=DIR`` (``history.parquet`` and the rest written).

Then, on the recorded run, whole processes against ``descend --version`` (fresh processes,
interleaved, median of repeats): ``descend runs show``, ``descend report``, ``descend plot``
and ``descend runs export --csv``, with each one's peak memory (max RSS), and the record's size.
Targets: recorded at most 1.1x no history; ``runs show`` at most 1.5x ``descend --version``;
the record at most 15 MB.

    python benchmarks/long_run.py [--iters 1000000] [--repeats 3] [--cli-repeats 7]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import descend
from descend.history import History
from descend.problems import notebook
from descend.stops import MaxIter

LR = 1e-5  # the loss falls slowly and stays far from 0 for the whole run


def _folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _run(n: int, record: Path | None, history: bool) -> float:
    p = notebook(0)
    real = History.append
    if not history:
        History.append = lambda self, *a, **k: None  # type: ignore[method-assign]
    try:
        t = time.perf_counter()
        res = descend.minimize(p.fn, p.x0, lr=LR, stop=MaxIter(n), record=record or None)
        seconds = time.perf_counter() - t
    finally:
        History.append = real  # type: ignore[method-assign]
    assert res.nit == n and res.reason == "max_iter", (res.nit, res.reason)
    return seconds


def _process(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak memory (MB) of one fresh process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, _, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    proc.returncode = 0
    if proc.stderr is not None:
        err = proc.stderr.read()
        proc.stderr.close()
        if err:
            raise RuntimeError(f"{cmd} wrote to stderr: {err.decode()[-500:]}")
    return seconds, usage.ru_maxrss / 1024  # Linux: kilobytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=float, default=1e6)
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each run")
    ap.add_argument("--cli-repeats", type=int, default=7, help="repeats of each command")
    a = ap.parse_args()
    n = int(a.iters)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        runs: dict[str, list[float]] = {"no history": [], "in memory": [], "recorded": []}
        for k in range(a.repeats):
            runs["no history"].append(_run(n, None, history=False))
            runs["in memory"].append(_run(n, None, history=True))
            runs["recorded"].append(_run(n, root / f"r{k}", history=True))
        run_dir = next(p for p in (root / "r0").iterdir() if p.is_dir())
        size = _folder_mb(run_dir)
        hist_mb = (run_dir / "history.parquet").stat().st_size / 1e6
        me = [sys.executable, "-m", "descend"]
        out = Path(tmp)
        commands = {
            "descend --version": [*me, "--version"],
            "descend runs show": [*me, "runs", "show", str(run_dir)],
            "descend report": [*me, "report", str(run_dir), "-o", str(out / "r.html")],
            "descend plot": [*me, "plot", str(run_dir), "-o", str(out / "p.png")],
            "descend runs export --csv": [*me, "runs", "export", str(run_dir), "--csv", "-o",
                                          str(out / "h.csv"), "--overwrite"],
        }
        env = {**os.environ, "MPLBACKEND": "Agg"}
        wall: dict[str, list[float]] = {k: [] for k in commands}
        rss: dict[str, float] = {}
        for cmd in commands.values():  # warm the file cache
            subprocess.run(cmd, check=True, capture_output=True, env=env)
        for _ in range(a.cli_repeats):
            for name, cmd in commands.items():
                s, mb = _process(cmd, env)
                wall[name].append(s)
                rss[name] = max(rss.get(name, 0.0), mb)
        csv_mb = (out / "h.csv").stat().st_size / 1e6
    base = statistics.median(runs["no history"])
    print(f"{n:,} iterations of gd on the notebook problem, median of {a.repeats} runs")
    print(f"{'run':28s} {'seconds':>9s} {'vs no history':>14s} {'target':>9s}")
    for name, ts in runs.items():
        m = statistics.median(ts)
        target = "<= 1.1x" if name == "recorded" else ""
        print(f"{name:28s} {m:9.2f} {m / base:13.3f}x {target:>9s}")
    rec = statistics.median(runs["recorded"]) - statistics.median(runs["in memory"])
    print(f"writing the record: {rec:+.2f} s; record {size:.2f} MB (history.parquet "
          f"{hist_mb:.2f} MB, as CSV {csv_mb:.1f} MB); target <= 15 MB")
    print()
    vbase = statistics.median(wall["descend --version"])
    print(f"whole processes on that record, median of {a.cli_repeats}")
    print(f"{'command':28s} {'seconds':>9s} {'vs --version':>14s} {'max RSS MB':>11s} "
          f"{'target':>9s}")
    for name, ts in wall.items():
        m = statistics.median(ts)
        target = "<= 1.5x" if name == "descend runs show" else ""
        print(f"{name:28s} {m:9.3f} {m / vbase:13.2f}x {rss[name]:11.0f} {target:>9s}")
    print(f"(this process: max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          f" MB)")


if __name__ == "__main__":
    main()
