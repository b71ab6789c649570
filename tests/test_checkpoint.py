"""Checkpoints and exact resume (descend.checkpoint): a run stopped anywhere and resumed from
its checkpoint ends bitwise where the uninterrupted run ends; the files are whole or refused."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

import descend
from descend import checkpoint
from descend.errors import InputError


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


X0 = torch.tensor([-1.2, 1.0] * 4, dtype=torch.float64)


class Crash(Exception):
    """Stands for a crash after iteration ``k``: the run dies without a word."""


def crash_at(k: int):
    def cb(s):
        if s.iteration == k:
            raise Crash
    return cb


MINIMIZE = [  # rule, lr, max_iter, crash after, checkpoint every
    ("gd", 1e-4, 300, 137, 10),
    ("momentum", 1e-4, 300, 151, 7),
    ("adam", 1e-2, 300, 203, 9),
    ("lbfgs", None, 400, 23, 4),
]


@pytest.mark.parametrize(("rule", "lr", "max_iter", "k", "every"), MINIMIZE)
def test_minimize_resume_is_bitwise_exact(tmp_path, rule, lr, max_iter, k, every):
    full = descend.minimize(rosenbrock, X0, rule=rule, lr=lr, max_iter=max_iter)
    assert full.nit > k  # the crash happens mid-run
    with pytest.raises(Crash):
        descend.minimize(rosenbrock, X0, rule=rule, lr=lr, max_iter=max_iter,
                         checkpoint=tmp_path, checkpoint_every=every, callback=crash_at(k))
    saved = torch.load(tmp_path / "latest.pt", weights_only=True)  # plain data only
    assert saved["format"] == "descend-checkpoint"
    body, _ = checkpoint.load(tmp_path)
    assert body["iteration"] == k // every * every  # the last one before the crash
    res = descend.minimize(rosenbrock, X0, rule=rule, lr=lr, max_iter=max_iter, resume=tmp_path)
    assert torch.equal(res.x, full.x)
    assert (res.nit, res.reason, res.nfev) == (full.nit, full.reason, full.nfev)
    assert res.history.loss == full.history.loss
    assert res.history.lr[1:] == full.history.lr[1:]


def data(n: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    X = torch.randn(n, 4, generator=g)
    return X, X @ torch.randn(4, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)


FIT = [  # fit options, crash after (mid-epoch for mini-batches), checkpoint every
    (dict(rule="adam", batch_size=32, epochs=4, val=0.2, patience=3), 21, 5),
    (dict(rule="momentum", lr=0.01, batch_size=50, epochs=3, lr_sched=None), 13, 100),
    (dict(rule="lbfgs", batch_size=None, max_iter=40), 17, 6),
]


@pytest.mark.parametrize(("opts", "k", "every"), FIT)
def test_fit_resume_is_bitwise_exact(tmp_path, opts, k, every):
    opts = {key: v for key, v in opts.items() if key != "lr_sched"}
    full = descend.fit("mlp:8", data(), seed=1, **opts)
    with pytest.raises(Crash):
        descend.fit("mlp:8", data(), seed=1, checkpoint=tmp_path, checkpoint_every=every,
                    callback=crash_at(k), **opts)
    res = descend.fit("mlp:8", data(), seed=1, resume=tmp_path, **opts)
    for a, b in zip(full.model.parameters(), res.model.parameters()):
        assert torch.equal(a, b)
    assert (res.nit, res.reason, res.epochs, res.best_epoch) == \
        (full.nit, full.reason, full.epochs, full.best_epoch)
    assert res.epoch_history.loss == full.epoch_history.loss


def test_the_data_position_is_a_documented_dict(tmp_path):
    descend.fit("linear", data(), seed=0, rule="adam", batch_size=64, max_iter=7,
                checkpoint=tmp_path, checkpoint_every=1)
    body, _ = checkpoint.load(tmp_path)
    d = body["data"]
    assert (d["draws"], d["epoch"], d["batch"], d["batches_per_epoch"]) == (8, 1, 2, 5)
    assert set(d["source"]) == {"generator", "perm", "epoch"}
    assert d["source"]["epoch"] == 1 and d["source"]["perm"].shape == (300,)


def _checkpointed(tmp_path: Path, k: int = 20) -> None:
    with pytest.raises(Crash):
        descend.minimize(rosenbrock, X0, rule="adam", lr=1e-2, max_iter=100,
                         checkpoint=tmp_path, checkpoint_every=5, callback=crash_at(k))


def test_a_damaged_latest_falls_back_to_the_previous(tmp_path, capsys):
    full = descend.minimize(rosenbrock, X0, rule="adam", lr=1e-2, max_iter=100)
    _checkpointed(tmp_path)
    latest = tmp_path / "latest.pt"
    raw = latest.read_bytes()
    latest.write_bytes(raw[: len(raw) // 2])  # torn
    res = descend.minimize(rosenbrock, X0, rule="adam", lr=1e-2, max_iter=100,
                           resume=tmp_path)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("descend: note: latest.pt: not a readable checkpoint")
    assert "resuming from the previous checkpoint" in err and "(iteration 15)" in err
    assert torch.equal(res.x, full.x)


def test_a_flipped_byte_is_caught_by_the_checksum(tmp_path):
    _checkpointed(tmp_path)
    body = torch.load(tmp_path / "latest.pt", weights_only=True)
    body["body"][len(body["body"]) // 2] ^= 1
    torch.save(body, tmp_path / "latest.pt")
    (tmp_path / "previous.pt").unlink()
    with pytest.raises(InputError, match=r"^no whole checkpoint in .*: latest\.pt: its "
                       r"checksum does not match \(damaged\); previous\.pt is missing$"):
        descend.minimize(rosenbrock, X0, rule="adam", lr=1e-2, max_iter=100, resume=tmp_path)


def test_a_kill_between_the_renames_leaves_the_previous(tmp_path, monkeypatch):
    _checkpointed(tmp_path, 12)  # checkpoints at 5 and 10
    real = os.replace
    calls = []

    def replace(src, dst):
        calls.append(Path(dst).name)
        if Path(dst).name == "latest.pt":
            raise Crash  # latest.pt already renamed to previous.pt: only previous is there
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Crash):
        descend.minimize(rosenbrock, X0, rule="adam", lr=1e-2, max_iter=100,
                         checkpoint=tmp_path, checkpoint_every=5)
    monkeypatch.setattr(os, "replace", real)
    assert calls == ["previous.pt", "latest.pt"]
    assert not (tmp_path / "latest.pt").exists()
    assert not list(tmp_path.glob(".tmp-*"))
    body, path = checkpoint.load(tmp_path)
    assert (path.name, body["iteration"]) == ("previous.pt", 10)


MISMATCH = [
    (dict(x0=torch.zeros(8, dtype=torch.float32)), "the parameters differ"),
    (dict(x0=torch.zeros(6, dtype=torch.float64)), "the parameters differ"),
    (dict(rule="gd", lr=1e-3), "the method differs"),
    (dict(fn=lambda x: (x ** 2).sum()), "the objective differs"),
]


@pytest.mark.parametrize(("change", "words"), MISMATCH)
def test_resume_refuses_another_run(tmp_path, change, words):
    _checkpointed(tmp_path)
    kw = dict(fn=rosenbrock, x0=X0, rule="adam", lr=1e-2)
    kw.update(change)
    with pytest.raises(InputError, match=rf"^cannot resume from .*latest\.pt: {words} "):
        descend.minimize(kw.pop("fn"), kw.pop("x0"), max_iter=100, resume=tmp_path, **kw)


def test_resume_refuses_other_data(tmp_path):
    X, Y = data()
    with pytest.raises(Crash):
        descend.fit("linear", (X, Y), rule="adam", batch_size=32, epochs=2,
                    checkpoint=tmp_path, checkpoint_every=3, callback=crash_at(5))
    with pytest.raises(InputError, match=r"^cannot resume from .*: the data differ \(sha256 "):
        descend.fit("linear", (X, Y + 1), rule="adam", batch_size=32, epochs=2,
                    resume=tmp_path)


def test_resume_refuses_a_changed_data_file(tmp_path, table):
    opts = dict(target="y", rule="adam", batch_size=50, epochs=2, checkpoint_every=2)
    with pytest.raises(Crash):
        descend.fit("linear", table, checkpoint=tmp_path / "ck", callback=crash_at(3), **opts)
    with table.open("a") as fh:
        fh.write("0,0,0,0,0\n")
    with pytest.raises(InputError, match=r"^cannot resume from .*latest\.pt: the data differ "
                       r"\(sha256 [0-9a-f]{12} in the checkpoint, sha256 [0-9a-f]{12} now\)"):
        descend.fit("linear", table, resume=tmp_path / "ck", **opts)


BAD = [
    (dict(checkpoint_every=10), "checkpoint_every needs checkpoint=PATH"),
    (dict(checkpoint="FILE"), "checkpoint must name a folder, but"),
    (dict(checkpoint="DIR", checkpoint_every=0), "checkpoint_every must be >= 1 iteration"),
    (dict(checkpoint="DIR", checkpoint_every="soon"),
     "checkpoint_every must be a number of iterations (100) or of seconds"),
    (dict(resume="FILE"), "resume needs a checkpoint folder, but"),
    (dict(resume="MISSING"), "no checkpoint folder"),
    (dict(resume="DIR"), "no whole checkpoint in"),
]


@pytest.mark.parametrize(("kw", "words"), BAD)
def test_bad_checkpoint_arguments_are_refused_up_front(tmp_path, kw, words):
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "DIR").mkdir()
    kw = {k: str(tmp_path / v) if v in ("FILE", "DIR", "MISSING") else v
          for k, v in kw.items()}
    calls = []

    def f(x):
        calls.append(1)
        return rosenbrock(x)

    with pytest.raises(InputError) as e:
        descend.minimize(f, X0, rule="adam", lr=1e-2, max_iter=5, **kw)
    assert str(e.value).startswith(words)
    assert not calls  # before any work


def test_sigint_stops_after_the_iteration_and_keeps_a_checkpoint(tmp_path):
    full = descend.minimize(rosenbrock, X0, rule="lbfgs", max_iter=400)

    def ctrl_c(s):
        if s.iteration == 9:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    res = descend.minimize(rosenbrock, X0, rule="lbfgs", max_iter=400, callback=ctrl_c,
                           checkpoint=tmp_path, checkpoint_every=1000)
    assert signal.getsignal(signal.SIGINT) is before  # restored
    # the callback runs at iteration 9's stop check: that iteration is finished, then it stops
    assert (res.reason, res.success, res.nit) == ("interrupted", False, 10)
    assert res.message == (f"interrupted by SIGINT after iteration 10 (loss {res.loss:.4e}); "
                           f"resume with resume={str(tmp_path)!r}")
    assert checkpoint.load(tmp_path)[0]["iteration"] == 10
    again = descend.minimize(rosenbrock, X0, rule="lbfgs", max_iter=400, resume=tmp_path)
    assert torch.equal(again.x, full.x) and again.nit == full.nit


def test_sigint_without_a_checkpoint_says_how_to_keep_one():
    def ctrl_c(s):
        if s.iteration == 3:
            os.kill(os.getpid(), signal.SIGINT)

    res = descend.minimize(rosenbrock, X0, rule="adam", lr=1e-2, max_iter=50, callback=ctrl_c)
    assert (res.reason, res.nit) == ("interrupted", 4)
    assert res.message.endswith("pass checkpoint=PATH to keep the state of an interrupted run")


# ------------------------------------------------------------------------ the command line


@pytest.fixture
def table(tmp_path):
    X, Y = data(200)
    rows = ["a,b,c,d,y"] + [",".join(repr(v) for v in r) for r in torch.cat([X, Y], 1).tolist()]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "d.csv"


def _cli(argv, capsys):
    from descend.cli import main

    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


CLI_BAD = [
    (["--no-record", "--checkpoint-every", "5"],
     "descend fit: error: --checkpoint-every needs the run record (checkpoints go into the "
     "run folder); drop --no-record"),
    (["--checkpoint-every", "soon"],
     "descend fit: error: --checkpoint-every must be a number of iterations (100) or of "
     "seconds (30s, 5m, 1h), got 'soon'"),
    (["--features", "nope"], "descend fit: error: "),
]


@pytest.mark.parametrize(("extra", "first"), CLI_BAD)
def test_cli_checkpoint_options_are_checked_and_leave_nothing(tmp_path, table, capsys, extra,
                                                               first):
    runs = tmp_path / "R"
    rc, _, err = _cli(["fit", table, "--target", "y", "--out", tmp_path / "M", "--runs", runs,
                       "--quiet", *extra], capsys)
    assert rc == 2
    assert err.splitlines()[-1].startswith(first) and "Traceback" not in err
    assert not (tmp_path / "M").exists()
    assert not runs.exists() or not [p for p in runs.iterdir() if p.is_dir()]


def test_cli_resume_refuses_unknown_and_finished_runs(tmp_path, table, capsys):
    runs = tmp_path / "R"
    rc, _, err = _cli(["resume", "nope", "--runs", runs], capsys)
    assert (rc, err) == (2, f"descend resume: error: no run 'nope' in {runs} (`descend runs "
                            f"list --runs {runs}` shows the ids)\n")
    rc, out, err = _cli(["fit", table, "--target", "y", "--out", tmp_path / "M", "--runs", runs,
                         "--quiet", "--batch-size", "50", "--epochs", "2", "--rule", "adam",
                         "--checkpoint-every", "3"], capsys)
    assert rc == 0 and "stopped after 2 epochs (8 iterations" in out
    (rid,) = [p.name for p in runs.iterdir() if p.is_dir()]
    assert err == (f"descend: note: run {rid}: checkpoints in {runs / rid / 'checkpoint'}; if "
                   f"it stops, `descend resume {rid}` continues it\n")
    assert checkpoint.load(runs / rid / "checkpoint")[0]["iteration"] == 8  # the last epoch end
    rc, _, err = _cli(["resume", rid[:-2], "--runs", runs], capsys)
    assert (rc, err) == (2, f"descend resume: error: run {rid} finished (max_epochs); nothing "
                            "to resume\n")


@pytest.mark.parametrize("k", [9, 10, 13])  # mid-pass, at a pass's first batch, mid-pass
def test_fit_on_a_dataloader_resumes_exactly(tmp_path, k):
    from torch.utils.data import DataLoader, TensorDataset

    X, Y = data(100)

    def run(**kw):
        torch.manual_seed(5)
        net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
        loader = DataLoader(TensorDataset(X, Y), batch_size=20, shuffle=True)  # global RNG
        return descend.fit(net, loader, rule="adam", epochs=4, **kw)

    full = run()
    with pytest.raises(Crash):
        run(checkpoint=tmp_path, checkpoint_every=3, callback=crash_at(k))
    torch.manual_seed(123)  # the resumed process's generator is elsewhere
    res = run(resume=tmp_path)
    for a, b in zip(full.model.parameters(), res.model.parameters()):
        assert torch.equal(a, b)
    assert res.history.loss[1:] == full.history.loss[1:]
