"""Long runs stay light: the history's columns in memory (read like lists, stored as typed
arrays), the record's ``history.parquet`` (exact, read lazily, thinned for charts), the older
``history.csv`` records, and ``runs export --csv``."""

from __future__ import annotations

import copy
import csv
import json
import math
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import descend
from descend import histfile, report, store
from descend.cli import main
from descend.errors import InputError
from descend.history import CHUNK, History
from descend.observers import Snapshots
from descend.problems import notebook

ROOT = str(Path(__file__).resolve().parent.parent)


def _rows(n: int) -> list[tuple]:
    """Rows as the loop writes them, with an extra column appearing late and skipping rows."""
    out = []
    for k in range(n):
        extra = {"ls_evals": k % 3} if k >= 5 and k % 7 else {}
        out.append(((k, 1.0 / (k + 1), 2.0 ** -k, math.nan if k == 0 else 0.1, k * 1e-3, k + 1),
                    extra))
    return out


def _oracle(rows: list[tuple]) -> dict[str, list]:
    """The same rows kept as the old History did: plain lists, nan where a column is missing."""
    cols: dict[str, list] = {c: [] for c in History.COLUMNS}
    for r, extra in rows:
        for c, v in zip(History.COLUMNS, r):
            cols[c].append(v)
        n = len(cols["iteration"])
        for name, v in extra.items():
            cols.setdefault(name, [math.nan] * (n - 1)).append(v)
        for name in cols:
            if len(cols[name]) < n:
                cols[name].append(math.nan)
    return cols


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x == y or (x != x and y != y) for x, y in zip(a, b))


def _history(n: int) -> History:
    h = History()
    for r, extra in _rows(n):
        h.append(*r, **extra)
    return h


# ---------------------------------------------------------------------------- in memory


@pytest.mark.parametrize("n", [0, 1, 6, 2 * CHUNK + 5])
def test_columns_read_like_the_lists_they_replace(n: int) -> None:
    h, want = _history(n), _oracle(_rows(n))
    assert list(h.columns) == list(want) and len(h) == n
    for name, col in h.columns.items():
        assert _same(col.tolist(), want[name]) and _same(list(col), want[name]), name
        assert len(col) == n and _same(col[2:n - 1], want[name][2:n - 1])
    assert h.iteration == list(range(n)) and list(range(n)) == h.iteration
    assert h.loss == want["loss"] and h.loss != [*want["loss"], 0.0]
    if n:
        assert h.loss[-1] == want["loss"][-1] and h.iteration[0] == 0
        assert type(h.iteration[-1]) is int and type(h.loss[-1]) is float
        assert h.nfev.index(n) == n - 1 and h.iteration.count(0) == 1 and (n - 1) in h.iteration
        np.testing.assert_array_equal(np.asarray(h.loss), np.array(want["loss"]))
        assert h.loss == pytest.approx(want["loss"]) and h.tensor("loss").dtype == torch.float64
    if n > 7:
        assert h.extra["ls_evals"][:7] == pytest.approx([math.nan] * 5 + [2, 0], nan_ok=True)
    assert repr(h.loss) == repr(want["loss"])


def test_an_int_column_turns_float_when_a_float_arrives() -> None:
    h = History(extra=["epoch", "val_loss"])
    assert dict(h.extra) == {"epoch": [], "val_loss": []}
    h.append(0, 1.0, 1.0, math.nan, 0.0, 1, epoch=1, val_loss=2.0)
    assert type(h.extra["epoch"][0]) is int
    h.append(1, 1.0, 1.0, 0.1, 0.0, 2, val_loss=1.0)  # no epoch on this row: nan
    assert h.extra["epoch"] == pytest.approx([1.0, math.nan], nan_ok=True)
    assert h.extra["epoch"].numpy().dtype == np.float64


def test_extend_adds_chunks_equal_to_rows_appended_one_by_one() -> None:
    rows = _rows(3 * CHUNK // 2)
    want = _oracle(rows)
    h = History()
    h.extend({c: want[c][:5] for c in History.COLUMNS})  # lists (no ls_evals yet)
    h.extend({c: np.asarray(want[c][5:CHUNK]) for c in History.COLUMNS}  # numpy
             | {"ls_evals": np.asarray(want["ls_evals"][5:CHUNK])})
    for r, extra in rows[CHUNK:CHUNK + 3]:
        h.append(*r, **extra)
    h.extend({c: torch.from_numpy(np.asarray(want[c][CHUNK + 3:]))  # tensors
              for c in [*History.COLUMNS, "ls_evals"]})
    for name, col in h.columns.items():
        assert _same(col.tolist(), want[name]), name
    assert h.iteration.numpy().dtype == np.int64 and h.loss.numpy().dtype == np.float64


def test_extend_refuses_missing_or_uneven_columns() -> None:
    h = History()
    with pytest.raises(InputError) as e:
        h.extend({"iteration": [0], "loss": [1.0]})
    assert str(e.value) == ("History.extend needs every fixed column; missing ['grad_norm', 'lr', "
                            "'time', 'nfev']")
    cols = {c: [0.0] for c in History.COLUMNS} | {"iteration": [0, 1]}
    with pytest.raises(InputError) as e:
        h.extend(cols)
    assert str(e.value) == ("History.extend needs columns of one length, got {'iteration': 2, "
                            "'loss': 1, 'grad_norm': 1, 'lr': 1, 'time': 1, 'nfev': 1}")
    assert len(h) == 0


def test_extra_columns_are_written_only_through_the_history() -> None:
    h = _history(8)
    with pytest.raises(TypeError):
        h.extra["mine"] = [0.0] * 8  # type: ignore[index]
    assert not hasattr(h.loss, "append")  # a column grows with its history, never alone


def test_pickle_copy_and_state_dict_keep_every_row(tmp_path: Path) -> None:
    h = _history(CHUNK + 10)
    want = {k: v.tolist() for k, v in h.columns.items()}
    path = tmp_path / "h.pt"
    torch.save(h.state_dict(), path)
    loaded = History()
    loaded.load_state_dict(torch.load(path, weights_only=True))
    for other in (pickle.loads(pickle.dumps(h)), copy.deepcopy(h), loaded):
        assert list(other.columns) == list(want)
        for name, col in other.columns.items():
            assert _same(col.tolist(), want[name])
            assert col.numpy().dtype == h.columns[name].numpy().dtype
        other.append(CHUNK + 10, 0.5, 0.5, 0.1, 1.0, 99)  # still writable, its own rows
        assert len(other) == len(h) + 1 and other.nfev[-1] == 99
    assert len(h) == CHUNK + 10


def test_a_million_rows_take_eight_bytes_a_value() -> None:
    h = History()
    n = 1 << 20
    h.extend({c: np.zeros(n, np.int64 if c in ("iteration", "nfev") else np.float64)
              for c in History.COLUMNS})
    held = sum(c._buf.nbytes for c in h.columns.values())
    assert 48 * n <= held <= 2 * 48 * n  # the buffers (grown by doubling), no Python objects


@pytest.mark.parametrize("rule", ["gd", torch.optim.SGD])
def test_snapshots_copy_the_iterates_whether_the_rule_updates_in_place_or_not(rule) -> None:
    p = notebook(0)
    s = Snapshots(max_frames=8)
    descend.minimize(p.fn, p.x0, lr=0.5, rule=rule, max_iter=37, observers=[s])
    data = s.data()
    assert data is not None and data["iteration"][0] == 0 and data["iteration"][-1] == 37
    x, oracle = p.x0.clone(), {0: p.x0.clone()}
    for k in range(1, 38):  # the notebook's loop: the independent oracle of every iterate
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(F.mse_loss(x, p.target), x)
        x = (x - 0.5 * g).detach()
        oracle[k] = x
    for row, k in zip(data["values"], data["iteration"]):
        torch.testing.assert_close(row, oracle[k].reshape(-1), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- the record

SPECIAL = [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308,
           float.fromhex("0x1.fffffffffffffp-2"), 0.1]


def _record(root: Path, cols: dict, nit: int | None = None, **kw) -> store.Run:
    n = len(cols["iteration"])
    return store.record_run(root, config={"problem": "p"}, history_columns=cols,
                            result_summary={"loss": 0.5, "best_loss": 0.25, "reason": "max_iter",
                                            "nit": n - 1 if nit is None else nit, "rule": "gd",
                                            "step": "lr=1"},
                            env={"created": "2026-01-01T00:00:00.000000Z"}, **kw)


def test_parquet_round_trips_the_history_bit_for_bit(tmp_path: Path) -> None:
    p = notebook(0)
    res = descend.minimize(p.fn, p.x0, lr=4.5, max_iter=30, record=tmp_path)
    (row,) = store.list_runs(tmp_path)
    run = store.open_run(tmp_path, row["id"])
    assert (run.path / "history.parquet").is_file() and not (run.path / "history.csv").exists()
    arrays = run.history_arrays()
    for name, col in res.history.columns.items():
        want = col.numpy()
        assert arrays[name].dtype == want.dtype, name
        assert arrays[name].tobytes() == want.tobytes(), name  # float64 bits, nan included
        assert _same(run.history[name], col.tolist()), name
    h = History()
    h.extend({c: SPECIAL for c in History.FLOAT_COLUMNS} | {"iteration": range(9),
                                                            "nfev": [2**53 + 1] * 9})
    got = _record(tmp_path, h.columns).history_arrays()
    for name in History.COLUMNS:
        assert got[name].tobytes() == h.columns[name].numpy().tobytes(), name


def test_any_columns_round_trip(tmp_path: Path) -> None:
    cols = {"iteration": [0, 1, 2], "loss": [1, 2.5, math.nan], "note": ["a", None, "c"],
            "flag": [True, False, True]}
    run = _record(tmp_path, cols)
    assert run.history == cols | {"loss": [1.0, 2.5, run.history["loss"][2]]}
    assert math.isnan(run.history["loss"][2])


def test_runs_show_reads_the_summary_not_the_history(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    run = _record(tmp_path, {"iteration": list(range(5)), "loss": [4.0, 3, 2, 1, 0.5],
                             "grad_norm": [1.0] * 5})
    assert json.loads((run.path / "result.json").read_text())["history"] == {
        "rows": 5, "columns": ["iteration", "loss", "grad_norm"], "first_loss": 4.0}
    (run.path / "history.parquet").write_bytes(b"not parquet at all")
    assert main(["runs", "show", run.id, "--runs", str(tmp_path)]) == 0
    shown = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines()[1:])
    assert shown["loss"] == "4 -> 0.5 (best 0.25)"
    assert shown["history"] == "5 rows: iteration, loss, grad_norm"
    # what does read the history says, in one line, that it cannot
    assert main(["report", run.id, "--runs", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"descend report: error: cannot read the history "
                          f"{run.path / 'history.parquet'}: ") and err.count("\n") == 1


def test_runs_show_imports_neither_tensors_nor_arrays(tmp_path: Path) -> None:
    run = _record(tmp_path, {"iteration": [0, 1], "loss": [1.0, 0.5]})
    code = ("import sys, descend.cli; rc = descend.cli.main(sys.argv[1:]); "
            "print(sorted(m for m in ('torch', 'numpy', 'pyarrow', 'pandas') if m in sys.modules),"
            " rc)")
    p = subprocess.run([sys.executable, "-c", code, "runs", "show", run.id, "--runs",
                        str(tmp_path)], capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": ROOT, "PATH": ""})
    assert p.stderr == "" and p.stdout.splitlines()[-1] == "[] 0"


def test_recording_and_reading_never_import_pandas(tmp_path: Path) -> None:
    code = "\n".join([
        "import sys, descend", "from descend import store",
        "from descend.problems import notebook", "p = notebook(0)",
        "res = descend.minimize(p.fn, p.x0, lr=1.0, max_iter=5, record=sys.argv[1])",
        "run = store.open_run(sys.argv[1], store.list_runs(sys.argv[1])[0]['id'])",
        "run.history; run.read_history(['loss'], max_points=3); run.history_arrays()",
        "print('pandas' in sys.modules)"])
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                       text=True, timeout=300, env={"PYTHONPATH": ROOT, "PATH": ""})
    assert p.stderr == "" and p.stdout.splitlines()[-1] == "False"


# ---------------------------------------------------------------------------- thinning


def test_thin_keeps_first_last_extremes_and_the_stop() -> None:
    n = 100_000
    loss = np.linspace(2.0, 1.0, n)
    loss[777], loss[5000], loss[6000] = -1.0, 9.0, math.nan  # min, max, a nan ignored
    idx = histfile.thin(n, 500, [loss, np.arange(n)], keep=[99_990])
    assert len(idx) == 500 and np.all(np.diff(idx) > 0)
    assert {0, 777, 5000, 99_990, n - 1} <= set(idx.tolist())
    gaps = np.diff(idx)
    assert gaps.max() <= 2 * n / 500  # the rest spread evenly
    np.testing.assert_array_equal(histfile.thin(400, 500, [loss[:400]]), np.arange(400))


def test_charts_read_thinned_columns_and_keep_what_matters(tmp_path: Path) -> None:
    n = 60_000
    loss = 1.0 / np.arange(1, n + 1)
    loss[31_337] = 1e-9  # the best point, between the evenly spread rows
    loss[-1] = math.nan  # the run ended on a non-finite loss: it stopped at row n - 2's point
    run = _record(tmp_path, {"iteration": np.arange(n), "loss": loss,
                             "grad_norm": np.full(n, 0.5), "val_loss": loss * 2},
                  nit=n - 2)
    got = run.read_history(["loss"], max_points=1000)
    assert list(got) == ["iteration", "loss"] and len(got["iteration"]) == 1000
    assert {0, 31_337, n - 2, n - 1} <= set(got["iteration"])
    assert got["loss"][got["iteration"].index(31_337)] == 1e-9
    out = tmp_path / "r.html"
    assert main(["report", run.id, "--runs", str(tmp_path), "-o", str(out)]) == 0
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', out.read_text(),
                  re.S)
    assert m is not None
    (r,) = json.loads(m.group(1))["runs"]
    assert r["rows"] == n and len(r["series"]["loss"]) == report.MAX_POINTS
    assert r["series"]["iteration"][0] == 0 and r["series"]["iteration"][-1] == n - 1
    assert 1e-9 in r["series"]["loss"] and len(r["series"]["val_loss"]) == report.MAX_POINTS


def test_plots_draw_at_most_plot_points(tmp_path: Path) -> None:
    h = History()
    n = 3 * report.PLOT_POINTS
    h.extend({"iteration": np.arange(n), "loss": np.exp(-np.arange(n) / n), "grad_norm": np.ones(n),
              "lr": np.ones(n), "time": np.zeros(n), "nfev": np.arange(n)})
    line = h.plot().get_lines()[0]
    xs = list(line.get_xdata())
    assert len(xs) == report.PLOT_POINTS and xs[0] == 0 and xs[-1] == n - 1


# ---------------------------------------------------------------------------- older records


def _old_record(root: Path, rid: str, cols: dict) -> Path:
    """A run folder as descend wrote them before Parquet: history.csv (floats by repr) and a
    result.json without the history's summary."""
    folder = root / rid
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"problem": "old", "rule": "gd"}))
    (folder / "environment.json").write_text(json.dumps({"created": "2025-06-01T00:00:00Z"}))
    with (folder / "history.csv").open("w", newline="") as fh:  # the old writer, as it was
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerows([repr(v) if isinstance(v, float) else v for v in row]
                    for row in zip(*cols.values()))
    (folder / "result.json").write_text(json.dumps(
        {"loss": 0.125, "best_loss": 0.125, "nit": len(cols["loss"]) - 1, "nfev": 9,
         "reason": "max_iter", "message": "m", "success": False, "rule": "gd", "step": "lr=1"}))
    return folder


def test_records_written_before_parquet_still_open(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    n = 3000
    cols = {"iteration": list(range(n)), "loss": [1.0 / (k + 1) for k in range(n)],
            "grad_norm": [0.1 * k for k in range(n)], "nfev": list(range(1, n + 1))}
    folder = _old_record(tmp_path, "20250601-000000-0ld0", cols)
    (row,) = store.list_runs(tmp_path)
    assert row["id"] == folder.name and row["nit"] == n - 1
    run = store.open_run(tmp_path, "2025")
    assert run.history == cols and run.history_summary == {
        "rows": n, "columns": list(cols), "first_loss": 1.0}
    thin = run.read_history(["loss"], max_points=100)
    assert len(thin["loss"]) == 100 and thin["iteration"][-1] == n - 1
    assert run.history_arrays(["nfev"])["nfev"].tolist() == cols["nfev"]
    assert main(["runs", "show", "2025", "--runs", str(tmp_path)]) == 0
    shown = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines()[1:])
    assert shown["history"] == "3000 rows: iteration, loss, grad_norm, nfev"
    assert shown["loss"] == "1 -> 0.125 (best 0.125)"
    for argv in (["report", "2025", "-o", str(tmp_path / "r.html")],
                 ["plot", "2025", "-o", str(tmp_path / "p.png"), "--columns", "loss,grad_norm"],
                 ["runs", "export", "2025", "--csv", "-o", str(tmp_path / "h.csv")]):
        assert main([*argv, "--runs", str(tmp_path)]) == 0, argv
    capsys.readouterr()
    assert (tmp_path / "h.csv").read_bytes() == (folder / "history.csv").read_bytes()


# ---------------------------------------------------------------------------- export


def test_runs_export_csv_equals_the_history(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p = notebook(0)
    res = descend.minimize(p.fn, p.x0, lr=4.5, max_iter=40, record=tmp_path)
    rid = store.list_runs(tmp_path)[0]["id"]
    assert main(["runs", "export", rid, "--csv", "--runs", str(tmp_path)]) == 0  # stdout
    text = capsys.readouterr().out
    out = tmp_path / "h.csv"
    assert main(["runs", "export", rid, "--csv", "-o", str(out), "--runs", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"exported run {rid} to {out} (csv)\n"
    assert out.read_bytes().decode() == text
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == list(res.history.columns) and len(rows) == len(res.history) + 1
    for j, (name, col) in enumerate(res.history.columns.items()):
        got = np.array([float(r[j]) for r in rows[1:]])
        assert got.tobytes() == np.asarray(col, dtype=np.float64).tobytes(), name  # exact
    res.history.to_csv(tmp_path / "api.csv")
    assert (tmp_path / "api.csv").read_bytes().decode() == text  # the API writes the same


@pytest.mark.parametrize(("argv", "msg"), [
    (["A", "B", "--csv"], "--csv without a folder writes one run's history, got 2 runs; give one "
                          "run, or a folder: --csv DIR"),
    (["A", "--csv", "{tmp}/d", "-o", "{tmp}/f.csv"],
     "-o FILE goes with --csv alone (one run's history as one file); --csv DIR and --to FORMAT "
     "DIR write a folder"),
    (["A", "--csv", "-o", "{tmp}/exists.csv"],
     "{tmp}/exists.csv already exists; pass --overwrite to replace it"),
    (["A", "--csv", "-o", "{tmp}/no/f.csv"],
     "cannot write {tmp}/no/f.csv: the folder {tmp}/no does not exist"),
])
def test_runs_export_csv_refuses_bad_targets(tmp_path: Path, capsys: pytest.CaptureFixture,
                                             argv: list[str], msg: str) -> None:
    for rid in ("A", "B"):
        _record(tmp_path / "runs", {"iteration": [0, 1], "loss": [1.0, 0.5]}, run_id=rid)
    (tmp_path / "exists.csv").write_text("keep me")
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(["runs", "export", *argv, "--runs", str(tmp_path / "runs")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"descend runs: error: {msg.format(tmp=tmp_path)}\n"
    assert (tmp_path / "exists.csv").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.csv", "runs"]
