"""``fit`` across processes: torchrun and ``descend fit --nproc`` on the loopback address with
gloo, against the same fit in one process.

Why the runs must agree: rank ``r`` of 2 evaluates positions ``r::2`` of the 1-process run's
batch ``j`` (the same seeded permutation on every rank) and weights its mean loss by
``n_r * 2 / n``, so DDP's average of the two gradients is the gradient of the whole batch's mean
loss: the same number up to the order of the floating-point sums. The tolerances below bound
that rounding: float32 mini-batches (eps 1.2e-7) through 48 Adam steps, whose update m/sqrt(v)
does not grow a relative error, so |dw| stays near 1e-7 (3e-8 measured): 1e-5 is two orders
above it and far below any real difference (one step moves weights by lr = 1e-2). The
full-batch L-BFGS run is float64 (eps 2.2e-16) to a stationary point: 2e-12 measured, 1e-8
allowed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import descend
from descend import distributed
from descend.data import InMemory
from descend.distributed import Shard

ROOT = Path(__file__).resolve().parents[1]

DATA = """
import torch
import descend.stops
g = torch.Generator().manual_seed(1)
X = torch.randn(1000, 5, generator=g)
Y = X @ torch.arange(1.0, 6.0)[:, None] + 0.1 * torch.randn(1000, 1, generator=g)
MINI = dict(batch_size=63, epochs=3, rule="adam", lr=0.01, seed=3)
# the full batch stops on the gradient's size, long before round-off decides the last steps
FULL = dict(batch_size=None, seed=3, stop=descend.stops.GradNormBelow(1e-2), max_iter=2000)
"""

SCRIPT = DATA + """
import json, os, sys
import pandas as pd
import descend
from descend.errors import InputError

out = sys.argv[1]
rank = os.environ["RANK"]
report = {}
for name, kw in (("mini", MINI), ("full", FULL)):
    res = descend.fit("mlp:8", (X, Y), record=f"{out}/{name}_runs", **kw)
    torch.save([p.detach() for p in res.model.parameters()], f"{out}/{name}_{rank}.pt")
    report[name] = [res.reason, res.nit, res.loss]
frame = pd.DataFrame({"a": X[:, 0].numpy(), "y": Y[:, 0].numpy()})
# streamed: each rank takes its share of the 10 row groups of rows.parquet
res = descend.fit("linear", f"{out}/rows.parquet", target="y", stream=True, batch_size=100,
                  epochs=2, rule="adam", lr=0.05)
report["stream"] = [res.reason, res.nit, res.loss, res.method]
try:  # rank 1's table lacks the target: every rank must stop with the same error
    descend.fit("linear", frame if rank == "0" else frame.drop(columns="y"), target="y")
except InputError as e:
    report["error"] = str(e)
with open(f"{out}/report_{rank}.json", "w") as f:
    json.dump(report, f)
"""

KILLER = """
import os, signal
from torch import nn

class Net(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.lin = nn.Linear(n_in, n_out)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        mark = os.environ.get("KILL_MARK", "")
        at = int(os.environ.get("KILL_AT", "30"))
        if self.calls == at and os.environ.get("RANK") == "1" and not os.path.exists(mark):
            if mark:
                open(mark, "w").close()  # once: the resumed run lives
            os.kill(os.getpid(), signal.SIGKILL)  # rank 1 dies mid-run, without a word
        return self.lin(x)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(tmp)])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _one_process() -> dict[str, tuple[descend.FitResult, list[torch.Tensor]]]:
    ns: dict = {}
    exec(DATA, ns)
    out = {}
    for name in ("mini", "full"):
        res = descend.fit("mlp:8", (ns["X"], ns["Y"]), **ns[name.upper()])
        out[name] = (res, [p.detach() for p in res.model.parameters()])
    return out


def test_shards_of_a_batch_are_the_one_process_batch() -> None:
    X, Y = torch.arange(100.0)[:, None], torch.arange(100.0)
    one = InMemory(X, Y, 7, seed=4)
    ranks = [Shard(InMemory(X, Y, 7, seed=4), r, 3) for r in range(3)]
    for k in range(40):  # 15 batches per epoch: across epochs and the short last batch
        xb, _ = one.batch(k)
        parts = [s.batch(k) for s in ranks]
        assert sorted(torch.cat([p[0] for p in parts]).flatten().tolist()) == \
            sorted(xb.flatten().tolist())
        for s, (xr, _) in zip(ranks, parts):  # c_r = n_r W / n: DDP's mean of the ranks'
            assert s.weight == len(xr) * 3 / len(xb)  # weighted means is the batch's mean
    # the data position resumes on another world size: rank 0 of 2 after batch 20 of rank 1
    # of 3 takes its positions of the same next batch
    two = Shard(InMemory(X, Y, 7, seed=4), 0, 2)
    two.load_state_dict(ranks[1].state_dict())
    assert torch.equal(two.batch(40)[0], one.batch(40)[0][0::2])


def test_torchrun_two_processes_match_one(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(SCRIPT)
    ns: dict = {}
    exec(DATA, ns)
    frame = pd.DataFrame({"a": ns["X"][:, 0].numpy(), "y": ns["Y"][:, 0].numpy()})
    frame.to_parquet(tmp_path / "rows.parquet", row_group_size=100)
    p = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
         str(tmp_path / "job.py"), str(tmp_path)],
        capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    reports = [json.loads((tmp_path / f"report_{r}.json").read_text()) for r in "01"]
    reference = _one_process()
    for name, tol in (("mini", 1e-5), ("full", 1e-8)):
        res, weights = reference[name]
        # every rank stops at the same iteration with the same reason, the 1-process ones
        for rep in reports:
            assert rep[name][:2] == [res.reason, res.nit]
            assert rep[name][2] == pytest.approx(res.loss, rel=1e-5)
        assert reports[0][name] == reports[1][name]
        w0, w1 = (torch.load(tmp_path / f"{name}_{r}.pt") for r in "01")
        for a, b, c in zip(w0, w1, weights):
            assert torch.equal(a, b)  # the ranks hold the very same weights
            assert (a - c).abs().max().item() < tol
        # only rank 0 wrote: one run record
        runs = [d for d in (tmp_path / f"{name}_runs").iterdir() if d.is_dir()]
        assert len(runs) == 1
    assert reference["mini"][0].reason == "max_epochs" and reference["mini"][0].nit == 48
    assert reference["full"][0].method.startswith("lbfgs with strong Wolfe line search")
    assert reference["full"][0].reason == "grad_small"
    # a streamed fit: the same stop on both ranks, 10 global batches of 100 rows an epoch
    assert reports[0]["stream"] == reports[1]["stream"]
    assert reports[0]["stream"][:2] == ["max_epochs", 20]
    assert "streamed from 10 row groups" in reports[0]["stream"][3]
    # one rank's bad input stops every rank with the same one-line error
    assert reports[0]["error"] == reports[1]["error"]
    assert reports[0]["error"].startswith("rank 1: target column 'y' is not in the DataFrame")
    assert "\n" not in reports[0]["error"]


def _csv(tmp: Path) -> Path:
    ns: dict = {}
    exec(DATA, ns)
    path = tmp / "rows.csv"
    X, Y = ns["X"], ns["Y"]
    lines = ["a,b,c,d,e,y"] + [",".join(f"{v:.6f}" for v in [*x.tolist(), y.item()])
                                for x, y in zip(X, Y)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_nproc_writes_once_and_reports_a_killed_rank(tmp_path: Path) -> None:
    data = _csv(tmp_path)
    (tmp_path / "killer.py").write_text(KILLER)
    base = [sys.executable, "-m", "descend", "fit", str(data), "--target", "y", "--nproc", "2",
            "--batch-size", "64", "--quiet", "--runs", str(tmp_path / "runs")]
    ok = subprocess.run([*base, "--epochs", "2", "--out", str(tmp_path / "model")],
                        capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert ok.stdout.count("saved the model to") == 1  # rank 0 prints, saves and records
    assert "shared by 2 processes (gloo)" in ok.stdout
    assert "stopped after 2 epochs (32 iterations" in ok.stdout
    assert (tmp_path / "model" / "weights.pt").is_file()
    assert len([d for d in (tmp_path / "runs").iterdir() if d.is_dir()]) == 1
    killed = subprocess.run([*base, "--epochs", "50", "--model", "killer:Net", "--out",
                             str(tmp_path / "never"), "--no-record"],
                            capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert killed.returncode == 1
    assert killed.stderr.strip().splitlines() == [
        "descend fit: error: rank 1 of 2 was killed by signal 9 (SIGKILL); the launcher "
        "stopped the other ranks, nothing was saved"]
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(("batch", "kill_at", "every"), [
    (["--batch-size", "64", "--epochs", "3"], "30", "4"),  # mini-batches (DDP)
    (["--batch-size", "full"], "12", "2"),  # the sharded full batch: L-BFGS, strong Wolfe
])
def test_nproc_run_killed_mid_run_resumes_from_its_last_checkpoint(
        tmp_path: Path, batch: list[str], kill_at: str, every: str) -> None:
    """Issue 13, item 5: rank 1 is SIGKILLed mid-run; rank 0's checkpoints survive, the error
    line names `descend resume`, and resuming with the same world size (every rank reads the
    checkpoint, rank 0 writes) ends with the weights of the uninterrupted 2-process run,
    bitwise (the same ranks sum the same shares in the same order). On mini-batches and on the
    sharded full batch, whose L-BFGS pairs and line search resume from the checkpoint too."""
    data = _csv(tmp_path)
    (tmp_path / "killer.py").write_text(KILLER)
    env = {**_env(tmp_path), "KILL_AT": kill_at}
    base = [sys.executable, "-m", "descend", "fit", str(data), "--target", "y", "--nproc", "2",
            *batch, "--quiet", "--model", "killer:Net",
            "--runs", str(tmp_path / "runs"), "--checkpoint-every", every]
    mark = tmp_path / "killed-once"
    (tmp_path / "ref-mark").write_text("")  # exists: the reference run is not killed
    ref = subprocess.run([*base, "--out", str(tmp_path / "ref")], capture_output=True,
                         text=True, env={**env, "KILL_MARK": str(tmp_path / "ref-mark")},
                         timeout=300)
    assert ref.returncode == 0, ref.stderr[-3000:]
    killed = subprocess.run([*base, "--out", str(tmp_path / "model")], capture_output=True,
                            text=True, env={**env, "KILL_MARK": str(mark)}, timeout=300)
    assert killed.returncode == 1 and mark.exists()
    last = killed.stderr.strip().splitlines()[-1]
    rid = last.rsplit("`descend resume ", 1)[-1].split("`")[0]
    assert last == ("descend fit: error: rank 1 of 2 was killed by signal 9 (SIGKILL); the "
                    "launcher stopped the other ranks, its last checkpoint is kept: "
                    f"`descend resume {rid}` continues the run")
    assert not (tmp_path / "model").exists()
    again = subprocess.run([sys.executable, "-m", "descend", "resume", rid, "--runs",
                            str(tmp_path / "runs")], capture_output=True, text=True,
                           env={**env, "KILL_MARK": str(mark)}, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stderr
    want = torch.load(tmp_path / "ref" / "weights.pt", weights_only=True)
    got = torch.load(tmp_path / "model" / "weights.pt", weights_only=True)
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)


@pytest.mark.parametrize(("codes", "expected"), [
    ({0: -6, 1: -9}, (1, -9)),  # a survivor's gloo aborted after rank 1 was killed
    ({0: 1, 1: -9}, (1, -9)),  # the survivor exited 1 (it lost its peer)
    ({0: -15, 1: 3}, (1, 3)),  # the launcher's SIGTERM is never the cause
    ({0: -6, 1: 1}, (0, -6)),  # an abort before a survivor's exit
    ({0: 1, 1: 1}, (0, 1)),  # among equals, the lowest rank
    ({0: -15, 1: -15, 2: -11}, (2, -11)),
])
def test_the_launcher_names_the_rank_that_caused_the_failure(codes, expected):
    assert distributed.cause(codes) == expected


DEPART = """
import os, sys
import torch.distributed as dist
from descend import distributed
distributed.depart(3)  # no group yet: returns
print("returned", flush=True)
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:{port}", rank=0, world_size=1)
distributed._OWNED.append(True)  # as fit's own group
if os.environ.get("OWN_ONLY"):
    distributed._OWNED.clear()  # a group the caller made: returns
    distributed.depart(3)
    print("caller's group: returned")
    sys.exit(0)
print("unflushed line", end="")
distributed.depart(5)
print("never")
"""


@pytest.mark.parametrize(("env", "code", "out"), [
    ({}, 0, ["returned", "unflushed linenever"]),  # not under --nproc: an ordinary exit
    ({"DESCEND_NPROC": "1"}, 5, ["returned", "unflushed line"]),  # out at once, flushed
    ({"DESCEND_NPROC": "1", "OWN_ONLY": "1"}, 0, ["returned", "caller's group: returned"]),
])
def test_a_nproc_worker_departs_without_teardown_and_nothing_else_does(tmp_path, env, code, out):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {k: v for k, v in _env(tmp_path).items() if k != "DESCEND_NPROC"}
    r = subprocess.run([sys.executable, "-c", DEPART.format(port=port)], capture_output=True,
                       text=True, env={**base, **env}, timeout=120)
    assert (r.returncode, r.stdout.splitlines()) == (code, out), r.stderr[-2000:]
