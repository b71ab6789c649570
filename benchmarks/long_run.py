"""Long runs stay light: a 1e6-iteration run, its record, and the commands that read it.

One run of the notebook problem (gd, a small ``lr``, ``stop=MaxIter(n)``: no criterion fires
before the cap), timed three ways, interleaved, median of repeats:

- ``no history``: ``History.append`` replaced by one that only counts the row (the loop
  reads the history's length) and no record: the loop alone;
- ``in memory``: the history recorded in memory (the default), no record;
- ``recorded``: the same with ``record=DIR`` (``history.parquet`` and the rest written).

On a shared machine the difference between two long runs is mostly noise, so the parts of
recording are also timed alone (CPU time of ``n`` row appends, ``n`` snapshot calls, writing
the record) and added to the run without history.

Then, on the recorded run, whole processes against ``descend --version`` (fresh processes,
interleaved, median of repeats): ``descend runs show``, ``descend report``, ``descend plot``
and ``descend runs export --csv``, with each one's peak memory (max RSS), and the record's size.
Targets: recorded at most 1.1x no history; ``runs show`` at most 1.5x ``descend --version``;
the record at most 15 MB. Wall and CPU time are both shown: on a shared machine CPU time is the
steadier measure of what a run costs.

    python benchmarks/long_run.py [--iters 1000000] [--repeats 3] [--cli-repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import descend
from descend.history import History
from descend.observers import Snapshots
from descend.problems import notebook
from descend.stops import MaxIter
from descend.store import record_run

LR = 1e-5  # the loss falls slowly and stays far from 0 for the whole run


def _folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _run(n: int, record: Path | None, history: bool) -> tuple[float, float]:
    """Wall and CPU seconds of one run (CPU time: what the run itself spent, whatever else the
    machine is doing)."""
    p = notebook(0)
    real = History.append
    if not history:
        # (rows counted, nothing else kept: the loop reads the history's length)
        History.append = (  # type: ignore[method-assign]
            lambda self, iteration, *a, **k: self.iteration._tail.append(iteration))
    try:
        t, c = time.perf_counter(), time.process_time()
        res = descend.minimize(p.fn, p.x0, lr=LR, stop=MaxIter(n), record=record or None)
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
    finally:
        History.append = real  # type: ignore[method-assign]
    assert res.nit == n and res.reason == "max_iter", (res.nit, res.reason)
    return seconds, cpu


# Times one command from a small launcher process: a child's peak memory (ru_maxrss) starts
# from its parent's at exec on Linux, so the launcher, not this 300 MB process, is the parent.
LAUNCHER = """
import json, os, sys, time
err = sys.argv[1]
actions = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
           (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)]
t = time.perf_counter()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ, file_actions=actions)
_, status, u = os.wait4(pid, 0)
print(json.dumps([status, time.perf_counter() - t, u.ru_utime + u.ru_stime, u.ru_maxrss]))
"""


def _parts(n: int, root: Path) -> dict[str, float]:
    """CPU seconds of each part of recording ``n`` rows, timed alone: the history's row appends,
    the heatmap's snapshots, and writing the record (the history as Parquet)."""
    p = notebook(0)
    states: list[Any] = []
    descend.minimize(p.fn, p.x0, lr=LR, max_iter=1, observers=[states.append])
    s = states[-1]
    h = History()
    c = time.process_time()
    for k in range(n):
        h.append(k, 0.5 / (k + 1), 0.25, LR, k * 6e-5, k + 1)
    out = {"History.append": time.process_time() - c}
    snap = Snapshots()
    c = time.process_time()
    for k in range(n):
        s.iteration = k
        snap(s)
    out["Snapshots"] = time.process_time() - c
    c = time.process_time()
    record_run(root, config={}, history_columns=h.columns, params=p.x0, snapshots=snap.data(),
               result_summary={"loss": 0.5, "nit": n - 1, "reason": "max_iter"})
    out["writing the record"] = time.process_time() - c
    return out


def _process(cmd: list[str], env: dict[str, str], err: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak memory (MB) of one fresh process."""
    p = subprocess.run([sys.executable, "-c", LAUNCHER, str(err), *cmd], env=env, check=True,
                       capture_output=True, text=True)
    status, seconds, cpu, kb = json.loads(p.stdout)
    if status or err.read_text():
        raise RuntimeError(f"{cmd} failed: {err.read_text()[-500:]}")
    return seconds, cpu, kb / 1024  # Linux: kilobytes


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
        runs: dict[str, list[tuple[float, float]]] = {"no history": [], "in memory": [],
                                                      "recorded": []}
        _run(1000, root / "warm", history=True)  # imports and first-call costs, not timed
        for k in range(a.repeats):
            runs["no history"].append(_run(n, None, history=False))
            runs["in memory"].append(_run(n, None, history=True))
            runs["recorded"].append(_run(n, root / f"r{k}", history=True))
        parts = _parts(n, root / "parts")
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
        cpu: dict[str, list[float]] = {k: [] for k in commands}
        rss: dict[str, float] = {}
        for cmd in commands.values():  # warm the file cache
            subprocess.run(cmd, check=True, capture_output=True, env=env)
        for _ in range(a.cli_repeats):
            for name, cmd in commands.items():
                s, c, mb = _process(cmd, env, out / "stderr.txt")
                wall[name].append(s)
                cpu[name].append(c)
                rss[name] = max(rss.get(name, 0.0), mb)
        csv_mb = (out / "h.csv").stat().st_size / 1e6
    med = {name: (statistics.median(w for w, _ in ts), statistics.median(c for _, c in ts))
           for name, ts in runs.items()}
    bw, bc = med["no history"]
    print(f"{n:,} iterations of gd on the notebook problem, median of {a.repeats} runs "
          f"(wall and CPU seconds)")
    print(f"{'run':28s} {'wall s':>8s} {'vs no history':>14s} {'CPU s':>8s} "
          f"{'vs no history':>14s} {'target':>8s}")
    for name, (w, c) in med.items():
        target = "<= 1.1x" if name == "recorded" else ""
        print(f"{name:28s} {w:8.2f} {w / bw:13.3f}x {c:8.2f} {c / bc:13.3f}x {target:>8s}")
    print(f"the parts of recording, CPU seconds for {n:,} rows, each timed alone:")
    for name, c in parts.items():
        print(f"  {name:26s} {c:8.2f} s  {c / n * 1e6:6.2f} us a row  {c / bc:6.3f} of the run")
    print(f"  {'recorded, from its parts':26s} {(bc + sum(parts.values())) / bc:8.3f}x the run "
          f"without history (target <= 1.1x)")
    print(f"record {size:.2f} MB (history.parquet {hist_mb:.2f} MB; the same history as CSV "
          f"{csv_mb:.1f} MB); target <= 15 MB")
    print()
    vw = statistics.median(wall["descend --version"])
    vc = statistics.median(cpu["descend --version"])
    print(f"whole processes on that record, median of {a.cli_repeats}")
    print(f"{'command':28s} {'wall s':>8s} {'vs --version':>13s} {'CPU s':>8s} "
          f"{'vs --version':>13s} {'max RSS MB':>11s} {'target':>8s}")
    for name in commands:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        target = "<= 1.5x" if name == "descend runs show" else ""
        print(f"{name:28s} {w:8.3f} {w / vw:12.2f}x {c:8.3f} {c / vc:12.2f}x "
              f"{rss[name]:11.0f} {target:>8s}")
    print(f"(this process: max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          f" MB)")


if __name__ == "__main__":
    main()
