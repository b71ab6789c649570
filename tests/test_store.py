"""Run records: folders, the SQLite index, atomic writes, never overwriting, and the runs CLI."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import descend
from descend import atomic, store
from descend.cli import main
from descend.errors import InputError
from descend.observers import Snapshots
from descend.problems import notebook
from descend.stops import LossBelow

FILES = {"config.json", "environment.json", "history.parquet", "params.pt", "result.json",
         "snapshots.pt"}


def _index_ids(root: Path) -> set[str]:
    with sqlite3.connect(root / store.INDEX) as db:
        return {r[0] for r in db.execute("SELECT id FROM runs")}


def _folder_ids(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}


def _digest(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def _summary(loss: float = 0.5, nit: int = 2) -> dict:
    return {"loss": loss, "nit": nit, "reason": "max_iter", "success": False, "rule": "gd",
            "step": "lr=1"}


def _cols(n: int = 3) -> dict:
    return {"iteration": list(range(n)), "loss": [1.0 / (k + 1) for k in range(n)]}


def _hand_gd(x0: torch.Tensor, target: torch.Tensor, lr: float, n: int) -> list[torch.Tensor]:
    """The notebook's loop written out: the oracle for the recorded iterates."""
    xs, x = [x0.clone()], x0.clone()
    for _ in range(n):
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(F.mse_loss(x, target), x)
        x = (x - lr * g).detach()
        xs.append(x)
    return xs


@pytest.mark.parametrize("lr", [1.0, 4.5, 10.0])
def test_minimize_record_round_trips(tmp_path: Path, lr: float) -> None:
    p = notebook(0)
    res = descend.minimize(p.fn, p.x0, lr=lr, stop=LossBelow(1e-5), record=tmp_path)
    (row,) = store.list_runs(tmp_path)
    run = store.open_run(tmp_path, row["id"])
    assert {f.name for f in run.path.iterdir()} == FILES
    # the history is kept bit for bit
    for name, col in res.history.columns.items():
        got = run.history[name]
        assert len(got) == len(col)
        assert all(a == b or (a != a and b != b) for a, b in zip(got, col)), name
    assert run.result["nit"] == res.nit and run.result["reason"] == res.reason
    assert run.result["loss"] == res.loss and run.result["success"] == res.success
    assert row["nit"] == res.nit and row["reason"] == res.reason and row["loss"] == res.loss
    assert torch.equal(run.params(), res.x)
    assert run.config["kind"] == "minimize" and run.config["problem"] == "mse_to_target"
    assert run.environment["torch"] == torch.__version__
    # the snapshots are the hand-written loop's iterates
    snap = run.snapshots()
    assert snap is not None and snap["shapes"] == [[3, 3]]
    assert snap["iteration"] == list(range(res.nit + 1))
    oracle = _hand_gd(p.x0, p.target, lr, res.nit)
    for k in snap["iteration"]:
        torch.testing.assert_close(snap["values"][k], oracle[k].reshape(-1), rtol=1e-5,
                                   atol=1e-6)


def test_index_and_folders_agree_after_create_list_remove(tmp_path: Path) -> None:
    ids = [store.record_run(tmp_path, config={"problem": f"p{i}"}, history_columns=_cols(),
                            result_summary=_summary(nit=i)).id for i in range(4)]
    assert _index_ids(tmp_path) == _folder_ids(tmp_path) == set(ids)
    assert [r["id"] for r in store.list_runs(tmp_path)] == ids  # oldest first
    store.remove_run(tmp_path, ids[1])
    assert _index_ids(tmp_path) == _folder_ids(tmp_path) == {ids[0], ids[2], ids[3]}
    assert [r["id"] for r in store.list_runs(tmp_path)] == [ids[0], ids[2], ids[3]]
    # a folder removed by hand, or a row lost, heals at the next listing
    (tmp_path / ids[2] / "result.json").unlink()
    with sqlite3.connect(tmp_path / store.INDEX) as db:
        db.execute("DELETE FROM runs WHERE id = ?", (ids[3],))
    assert [r["id"] for r in store.list_runs(tmp_path)] == [ids[0], ids[3]]
    assert _index_ids(tmp_path) == {ids[0], ids[3]}
    assert not list(tmp_path.glob(".trash-*"))


def test_existing_run_is_never_overwritten(tmp_path: Path) -> None:
    first = store.record_run(tmp_path, config={"a": 1}, history_columns=_cols(),
                             result_summary=_summary(), run_id="mine")
    before = _digest(first.path)
    with pytest.raises(InputError) as e:
        store.record_run(tmp_path, config={"a": 2}, history_columns=_cols(5),
                         result_summary=_summary(loss=9.0), run_id="mine")
    assert str(e.value) == (f"run 'mine' already exists in {tmp_path}; records are never "
                            "overwritten: pick another id or remove it with "
                            "`descend runs rm mine`")
    assert _digest(first.path) == before
    assert _index_ids(tmp_path) == {"mine"} and not list(tmp_path.glob(".tmp-*"))


# (the write step, the call after which the crash comes): after config.json and
# environment.json, after history.parquet, after params.pt, just before the rename; last, after
# result.json (the fourth JSON file with diagnostics) but before the folder is synced
@pytest.mark.parametrize(("step", "at"), [("_write_json", 2), ("_write_history", 1),
                                          ("_write_torch", 1), ("_fsync_dir", 1),
                                          ("_write_json", 4)])
def test_exception_between_steps_leaves_nothing_visible(tmp_path: Path, step: str, at: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    keep = store.record_run(tmp_path, config={}, history_columns=_cols(),
                            result_summary=_summary(), run_id="kept")
    mod = atomic if step == "_fsync_dir" else store  # the folder is synced by the writer
    real = getattr(mod, step)
    calls = []

    def crash_after(*args: object) -> None:  # the real write, then a crash after it
        real(*args)
        calls.append(args)
        if len(calls) == at:
            raise KeyboardInterrupt("interrupted while writing")

    monkeypatch.setattr(mod, step, crash_after)
    with pytest.raises(KeyboardInterrupt):
        store.record_run(tmp_path, config={}, history_columns=_cols(),
                         result_summary=_summary(), params=torch.zeros(3),
                         diagnostics={"L": 0.2}, run_id="torn")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["kept"]
    assert [r["id"] for r in store.list_runs(tmp_path)] == [keep.id]
    assert _index_ids(tmp_path) == {"kept"}


def test_atomic_folder_fsyncs_every_file_then_renames(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name the fsynced files")
    monkeypatch.setattr(os, "fsync", fsync)
    final = tmp_path / "out" / "m"
    with store.atomic_folder(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".tmp-m-")
        (tmp / "a.json").write_text("{}")
        (tmp / "b.csv").write_text("x\n")
        assert not final.exists()
    assert sorted(synced[:2]) == ["a.json", "b.csv"]  # the files, then the folder, then the parent
    assert synced[2].startswith(".tmp-m-") and synced[3] == "out" and len(synced) == 4
    assert sorted(os.listdir(final)) == ["a.json", "b.csv"]
    assert os.listdir(final.parent) == ["m"]


def test_atomic_folder_leaves_nothing_when_the_body_fails(tmp_path: Path) -> None:
    final = tmp_path / "m"
    with pytest.raises(KeyboardInterrupt), store.atomic_folder(final) as tmp:
        (tmp / "a.json").write_text("{}")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(FileExistsError), store.atomic_folder(final) as tmp:
        (tmp / "new.txt").write_text("new")
    assert os.listdir(tmp_path) == ["m"] and os.listdir(final) == ["old.txt"]


def test_atomic_folder_overwrite_replaces_or_restores(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    final = tmp_path / "m"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with store.atomic_folder(final, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert os.listdir(tmp_path) == ["m"] and os.listdir(final) == ["new.txt"]

    real = os.rename

    def rename(src: str | Path, dst: str | Path) -> None:
        if Path(src).name.startswith(".tmp-"):  # the new folder cannot be moved in
            raise OSError("disk gone")
        real(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="disk gone"), \
            store.atomic_folder(final, overwrite=True) as tmp:
        (tmp / "newer.txt").write_text("newer")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["m"] and os.listdir(final) == ["new.txt"]


_KILLED_WRITER = """
import sys, time
from pathlib import Path
import torch
from descend import store
real = store._write_torch
def slow(path, obj):
    real(path, obj)
    Path(sys.argv[2]).write_text("writing")  # tell the parent we are mid-write
    time.sleep(60)
store._write_torch = slow
store.record_run(sys.argv[1], config={}, history_columns={"iteration": [0], "loss": [1.0]},
                 result_summary={"loss": 1.0, "nit": 0, "reason": "max_iter"},
                 params=torch.zeros(4), run_id="killed")
"""


def test_killed_writer_leaves_no_half_record(tmp_path: Path) -> None:
    root, marker = tmp_path / "runs", tmp_path / "marker"
    store.record_run(root, config={}, history_columns=_cols(), result_summary=_summary(),
                     run_id="before")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(root), str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "the writer ended before it was killed"
            assert time.monotonic() < deadline, "the writer never reached the write"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(list(root.glob(".tmp-killed-*"))) == 1  # the torn write is hidden ...
    assert not (root / "killed").exists()
    assert [r["id"] for r in store.list_runs(root)] == ["before"]
    assert not list(root.glob(".tmp-*"))  # ... and swept once its writer is gone
    assert _index_ids(root) == _folder_ids(root) == {"before"}


def test_crash_between_rename_and_index_heals(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def no_index(root: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "_index", no_index)
    with pytest.raises(OSError):
        store.record_run(tmp_path, config={"problem": "p"}, history_columns=_cols(),
                         result_summary=_summary(), run_id="whole")
    monkeypatch.undo()
    # the folder is whole (it was renamed into place); the next listing indexes it
    assert [(r["id"], r["problem"]) for r in store.list_runs(tmp_path)] == [("whole", "p")]
    assert _index_ids(tmp_path) == {"whole"}


@pytest.mark.parametrize(("kwargs", "msg"), [
    ({"run_id": ".hidden"}, "run id must be 1-100 letters, digits, '.', '_' or '-' and start "
                            "with a letter or digit, got '.hidden'"),
    ({"run_id": "a/b"}, "run id must be 1-100 letters, digits, '.', '_' or '-' and start "
                        "with a letter or digit, got 'a/b'"),
    ({"history_columns": {"iteration": [0, 1], "loss": [1.0]}},
     "history columns must have the same length, got {'iteration': 2, 'loss': 1}"),
    ({"history_columns": {}},
     "history_columns is empty; give at least an iteration and a loss column"),
    ({"result_summary": {"loss": 1.0}},
     "result_summary needs a 'nit' entry, got keys ['loss']"),
])
def test_bad_records_are_refused(tmp_path: Path, kwargs: dict, msg: str) -> None:
    args = {"config": {}, "history_columns": _cols(), "result_summary": _summary()}
    args.update(kwargs)
    with pytest.raises(InputError) as e:
        store.record_run(tmp_path, **args)
    assert str(e.value) == msg
    assert not any(tmp_path.iterdir()) or store.list_runs(tmp_path) == []


def test_unknown_run(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        store.remove_run(tmp_path, "nope")
    assert str(e.value) == f"no run 'nope' in {tmp_path} (`descend runs list --runs " \
                           f"{tmp_path}` shows the ids)"


def test_records_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DESCEND_RUNS", raising=False)
    assert store.records_root(True) == Path("runs")
    monkeypatch.setenv("DESCEND_RUNS", str(tmp_path))
    assert store.records_root(True) == tmp_path
    assert store.records_root("elsewhere") == Path("elsewhere")
    with pytest.raises(InputError) as e:
        store.records_root(3)  # type: ignore[arg-type]
    assert str(e.value) == "record must be True or a folder path, got 3"
    with pytest.raises(InputError) as e2:
        descend.minimize(lambda x: (x**2).sum(), torch.ones(2), record=3)  # type: ignore[arg-type]
    assert str(e2.value) == "record must be True or a folder path, got 3"


def test_module_run_saves_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    X, Y = torch.randn(8, 2), torch.randn(8, 1)
    res = descend.minimize(lambda m: F.mse_loss(m(X), Y), model, lr=0.1, max_iter=5,
                           record=tmp_path)
    run = store.open_run(tmp_path, store.list_runs(tmp_path)[0]["id"])
    sd = run.params()
    assert set(sd) == {"weight", "bias"} and torch.equal(sd["weight"], model.weight.detach())
    snap = run.snapshots()
    assert snap is not None and snap["shapes"] == [[1, 2], [1]]
    assert snap["values"].shape == (res.nit + 1, 3)
    torch.testing.assert_close(snap["values"][-1],
                               torch.cat([model.weight.detach().reshape(-1), model.bias.detach()]))


@pytest.mark.parametrize(("n_iter", "max_frames"), [(100, 8), (37, 4), (5, 16)])
def test_snapshots_thin_but_keep_start_and_end(n_iter: int, max_frames: int) -> None:
    p = notebook(0)
    s = Snapshots(max_frames=max_frames)
    descend.minimize(p.fn, p.x0, lr=0.01, max_iter=n_iter, observers=[s])
    data = s.data()
    assert data is not None
    its = data["iteration"]
    assert its[0] == 0 and its[-1] == n_iter and len(its) <= max_frames + 1
    assert its == sorted(set(its))
    assert all(k % s.stride == 0 for k in its[:-1])
    oracle = _hand_gd(p.x0, p.target, 0.01, n_iter)
    for row, k in zip(data["values"], its):
        torch.testing.assert_close(row, oracle[k].reshape(-1), rtol=1e-5, atol=1e-6)


def test_snapshots_skip_large_parameters() -> None:
    s = Snapshots(max_elements=4096)
    descend.minimize(lambda x: (x**2).sum(), torch.ones(4097), lr=0.1, max_iter=2, observers=[s])
    assert s.data() is None and s.skipped
    s2 = Snapshots(max_elements=4096)
    descend.minimize(lambda x: (x**2).sum(), torch.ones(64, 64), lr=0.1, max_iter=2,
                     observers=[s2])
    d = s2.data()
    assert d is not None and d["values"].shape == (3, 4096)


# ---------------------------------------------------------------------------- the runs CLI


def _demo_runs(root: Path, *extra: str) -> list[str]:
    assert main(["demo", "--quiet", "--runs", str(root), "--model-iters", "20", *extra]) == 0
    return [r["id"] for r in store.list_runs(root)]


def test_runs_cli_list_show_compare_rm(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ids = _demo_runs(tmp_path)
    out = capsys.readouterr().out
    assert f"recorded {tmp_path / ids[0]}" in out and f"recorded {tmp_path / ids[1]}" in out
    assert main(["runs", "list", "--runs", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "when", "(UTC)", "problem", "rule", "step", "iterations",
                                "final", "loss", "reason"]
    assert lines[1].split()[0] == ids[0] and lines[1].split()[3:] == [
        "notebook", "gd", "lr=1", "19", "7.0060e-06", "loss_below"]
    model_loss = store.open_run(tmp_path, ids[1]).result["loss"]
    assert 1e-3 < model_loss < 1e4  # so the table writes it with %.6g
    assert lines[2].split()[3:] == ["notebook-linear", "gd", "lr=0.001", "20",
                                    f"{model_loss:.6g}", "max_iter"]
    assert main(["runs", "show", ids[0], "--runs", str(tmp_path)]) == 0
    show = capsys.readouterr().out
    rows = {ln.split("  ", 1)[0]: ln.split("  ", 1)[1].strip() for ln in show.splitlines()
            if "  " in ln}
    assert rows["stopped"] == ("loss_below (success): loss 7.0060e-06 is at or below the "
                               "threshold 1e-05")
    assert rows["env.argv"].startswith("descend demo --quiet --runs")
    assert rows["diagnostics.stable steps 0 < lr < 2/L (local estimate)"] == "9"
    assert main(["runs", "compare", *ids, "--runs", str(tmp_path)]) == 0
    cmp_lines = capsys.readouterr().out.splitlines()
    assert cmp_lines[0].split() == ids
    assert [ln.split()[:3] for ln in cmp_lines if ln.startswith("reason")] == [
        ["reason", "loss_below", "max_iter"]]
    assert main(["runs", "rm", ids[1], "--runs", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"removed {ids[1]}\n"
    assert _index_ids(tmp_path) == _folder_ids(tmp_path) == {ids[0]}
    store.remove_run(tmp_path, ids[0])
    assert main(["runs", "list", "--runs", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"no runs in {tmp_path}\n"


def test_demo_no_record_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quiet", "--no-record", "--model-iters", "5"]) == 0
    assert "recorded" not in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


NO_RUN = "no run 'nope' in {root} (`descend runs list --runs {root}` shows the ids)"


@pytest.mark.parametrize(("argv", "msg"), [
    (["runs", "show", "nope"], "descend runs: error: " + NO_RUN),
    (["runs", "rm", "nope"], "descend runs: error: " + NO_RUN),
    (["runs", "compare", "nope"], "descend runs: error: " + NO_RUN),
    (["report", "nope"], "descend report: error: " + NO_RUN),
    (["plot", "nope"], "descend plot: error: " + NO_RUN),
    (["report", "missing/folder"], "descend report: error: no run at 'missing/folder': a run "
                                   "folder holds result.json (`descend runs list --runs {root}` "
                                   "shows the ids in {root})"),
    (["runs"], "descend runs: error: the following arguments are required: ACTION"),
    (["demo", "--sweep-lr", "0.1,x"], "descend demo: error: --sweep-lr takes numbers separated "
                                      "by commas, e.g. 0.1,1,4.5; got 'x'"),
    (["demo", "--sweep-lr", "1,-2"], "descend demo: error: lr must be a finite number > 0, "
                                     "got -2.0"),
    (["demo", "--sweep-rule", "gd,newton"], "descend demo: error: unknown rule 'newton'; known "
                                            "rules: adagrad, adam, adamw, bfgs, gd, lbfgs, "
                                            "momentum, nesterov, rmsprop"),
    (["demo", "--report", "no/such/dir/r.html"], "descend demo: error: cannot write "
                                                 "no/such/dir/r.html: the folder no/such/dir "
                                                 "does not exist"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture,
                                        argv: list[str], msg: str) -> None:
    root = tmp_path / "runs"
    assert main([*argv, "--runs", str(root)] if argv != ["runs"] else argv) == 2
    out, err = capsys.readouterr()
    assert err == msg.format(root=root) + "\n" and out == ""


def test_history_exports_as_plain_csv(tmp_path: Path) -> None:
    run = store.record_run(tmp_path, config={"obj": LossBelow(1e-3)},
                           history_columns={"iteration": [0, 1], "loss": [1.0, float("nan")],
                                            "val_loss": [2.0, 0.5]},
                           result_summary=_summary())
    out = tmp_path / "h.csv"
    assert main(["runs", "export", run.id, "--csv", "-o", str(out), "--runs", str(tmp_path)]) == 0
    text = out.read_text().splitlines()
    assert text == ["iteration,loss,val_loss", "0,1.0,2.0", "1,nan,0.5"]
    assert json.loads((run.path / "config.json").read_text()) == {"obj": repr(LossBelow(1e-3))}


@pytest.mark.parametrize(("x", "device"), [
    (torch.zeros(2), "cpu"),
    (torch.zeros(2, device="meta"), "meta"),
    ({"w": (1, torch.zeros(1, device="meta"))}, "meta"),
    ((1, "a"), "cpu"),
])
def test_environment_names_the_device_of_the_parameters(x: object, device: str) -> None:
    assert store.device_of(x) == device
