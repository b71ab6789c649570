"""``descend runs export``: TensorBoard, MLflow and CSV, each read back with its own library."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import pytest
import torch

import descend
from descend import export, store
from descend.cli import main
from descend.problems import notebook
from descend.stops import LossBelow


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, list[store.Run]]:
    """Two real runs of the notebook (with params.pt) and one hand-made with a NaN loss."""
    root = tmp_path / "runs"
    p = notebook(0)
    for lr in (1.0, 4.5):
        descend.minimize(p.fn, p.x0, lr=lr, stop=LossBelow(1e-5), record=root)
    store.record_run(root, run_id="odd-one", config={"problem": "p", "rule": "gd", "lr": 0.1,
                                                     "stop": [1, 2], "nested": {"a": None}},
                     history_columns={"iteration": [0, 5, 10], "loss": [1.0, math.nan, 0.5],
                                      "val_loss": [2.0, 1.5, 1.25]},
                     result_summary={"loss": 0.5, "nit": 10, "reason": "max_iter"},
                     env={"created": "2026-01-01T00:00:00.000000Z"})
    return root, [store.open_run(root, r["id"]) for r in store.list_runs(root)]


def _same(a: float, b: float, rel: float = 0.0) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=rel, abs=0)


def _numeric(run: store.Run) -> dict[str, list[float]]:
    return {k: [float(v) for v in col] for k, col in run.history.items() if k != "iteration"}


def test_tensorboard_event_files_hold_every_scalar_step(runs, tmp_path: Path, capsys) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, rs = runs
    out = tmp_path / "tb"
    assert main(["runs", "export", *[r.id for r in rs], "--to", "tensorboard", str(out),
                 "--runs", str(root)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"exported 3 runs to {out} (tensorboard)"
    assert sorted(p.name for p in out.iterdir()) == sorted(r.id for r in rs)
    for r in rs:
        acc = EventAccumulator(str(out / r.id), size_guidance={"scalars": 0})
        acc.Reload()
        assert set(acc.Tags()["scalars"]) == set(_numeric(r))
        steps = [int(v) for v in r.history["iteration"]]
        for name, col in _numeric(r).items():
            events = acc.Scalars(name)
            assert [e.step for e in events] == steps, name
            assert all(_same(e.value, v, rel=1e-6) for e, v in zip(events, col)), name  # float32
        # the config as hyper-parameters: the hparams plugin's session-start record
        content = acc.PluginTagToContent("hparams")
        assert "_hparams_/session_start_info" in content
        from tensorboard.plugins.hparams import plugin_data_pb2

        data = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/session_start_info"])
        hp = data.session_start_info.hparams
        assert hp["lr"].number_value == r.config["lr"]
        assert hp["rule"].string_value == r.config["rule"]


def test_mlflow_tracking_folder_is_found_by_search_runs(runs, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    root, rs = runs
    out = tmp_path / "ml"
    assert main(["runs", "export", *[r.id for r in rs], "--to", "mlflow", str(out),
                 "--runs", str(root)]) == 0
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # recent MLflow asks for it
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(out.resolve().as_uri())
    try:
        exp = mlflow.get_experiment_by_name(export.EXPERIMENT)
        df = mlflow.search_runs(experiment_ids=[exp.experiment_id])
        assert sorted(df["tags.mlflow.runName"]) == sorted(r.id for r in rs)
        client = MlflowClient()
        for r in rs:
            row = df[df["tags.descend.run_id"] == r.id].iloc[0]
            assert float(row["params.lr"]) == r.config["lr"]
            assert row["tags.descend.reason"] == r.result["reason"]
            for name, col in _numeric(r).items():
                hist = sorted(client.get_metric_history(row["run_id"], name),
                              key=lambda m: m.step)
                assert [m.step for m in hist] == [int(v) for v in r.history["iteration"]]
                assert all(_same(m.value, v) for m, v in zip(hist, col)), name
            arts = [a.path for a in client.list_artifacts(row["run_id"])]
            if (r.path / "params.pt").exists():
                assert arts == ["params.pt"]
                got = client.download_artifacts(row["run_id"], "params.pt", str(tmp_path))
                assert torch.equal(torch.load(got, weights_only=True), r.params())
            else:
                assert arts == []
    finally:
        mlflow.set_tracking_uri(previous)


def test_csv_reads_back_equal_to_the_history(runs, tmp_path: Path) -> None:
    root, rs = runs
    assert main(["runs", "export", *[r.id[:19] if r.id != "odd-one" else "odd" for r in rs],
                 "--csv", str(tmp_path / "csv"), "--runs", str(root)]) == 0
    for r in rs:
        with (tmp_path / "csv" / f"{r.id}.csv").open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert list(rows[0]) == list(r.history)
        for name, col in r.history.items():
            assert all(_same(float(row[name]), float(v)) for row, v in zip(rows, col))
            assert len(rows) == len(col)


def test_an_existing_target_is_refused_then_replaced_with_overwrite(runs, tmp_path: Path,
                                                                     capsys) -> None:
    root, rs = runs
    out = tmp_path / "csv"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    argv = ["runs", "export", rs[0].id, "--csv", str(out), "--runs", str(root)]
    assert main(argv) == 2
    assert capsys.readouterr().err == (f"descend runs: error: {out} already exists; pass "
                                       f"--overwrite to replace it\n")
    assert (out / "mine.txt").read_text() == "keep me"
    assert main([*argv, "--overwrite"]) == 0
    assert [p.name for p in out.iterdir()] == [f"{rs[0].id}.csv"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(("to", "module", "extra"), [("tensorboard", "tensorboard",
                                                      "tensorboard"),
                                                     ("mlflow", "mlflow", "mlflow")])
def test_a_missing_library_names_the_pip_install(runs, tmp_path: Path, capsys,
                                                 monkeypatch: pytest.MonkeyPatch, to: str,
                                                 module: str, extra: str) -> None:
    root, _ = runs
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == module else real(name, *a))
    assert main(["runs", "export", "nope", "--to", to, str(tmp_path / "x"),
                 "--runs", str(root)]) == 2
    assert capsys.readouterr().err == (f"descend runs: error: exporting to {to} needs the "
                                       f"{module} package: pip install 'descend[{extra}]'\n")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("argv", "err"), [
    (["--to", "wandb", "x"], "unknown export format 'wandb'; known formats: tensorboard, "
                             "mlflow, csv"),
    (["--csv", "x", "--to", "mlflow", "y"], "argument --to: not allowed with argument --csv"),
    ([], "one of the arguments --to --csv is required"),
])
def test_bad_export_options_are_one_line(runs, tmp_path: Path, capsys, argv: list[str],
                                         err: str) -> None:
    root, rs = runs
    assert main(["runs", "export", rs[0].id, *argv, "--runs", str(root)]) == 2
    got = capsys.readouterr().err
    assert got.count("\n") == 1 and got.rstrip("\n").endswith(err)


def test_a_run_given_twice_is_refused(runs, tmp_path: Path, capsys) -> None:
    root, rs = runs
    assert main(["runs", "export", rs[0].id, rs[0].id[:19], "--csv", str(tmp_path / "c"),
                 "--runs", str(root)]) == 2
    assert capsys.readouterr().err == (f"descend runs: error: run {rs[0].id!r} is given twice; "
                                       f"each run is exported once\n")
