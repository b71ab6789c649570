"""`descend fit`, `descend predict` and `descend evaluate`, in-process through main(argv), against
scikit-learn and closed forms; one fresh process for predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_run import run, scores

from descend.errors import InputError
from descend.models import build_model

# ------------------------------------------------------------------------ external references


def test_diabetes_linear_reaches_the_least_squares_mse(tmp_path, capsys):
    from sklearn.datasets import load_diabetes

    df = load_diabetes(as_frame=True).frame
    df.to_csv(tmp_path / "diabetes.csv", index=False)
    X, y = df.drop(columns="target").to_numpy(), df["target"].to_numpy()
    A = np.c_[X, np.ones(len(X))]
    w, *_ = np.linalg.lstsq(A, y, rcond=None)
    mse_ls = float(((A @ w - y) ** 2).mean())

    rc, out, _ = run(["fit", tmp_path / "diabetes.csv", "--target", "target", "--model",
                      "linear", "--val", "0", "--batch-size", "512", "--epochs", "1000",
                      "--out", tmp_path / "m", "--quiet"], capsys)
    assert rc == 0
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert abs(metrics["train_mse"] / mse_ls - 1) < 1e-3
    assert out.splitlines()[-2] == f"saved the model to {tmp_path / 'm'}"
    assert out.splitlines()[-1].startswith("recorded ")
    # evaluate on the same rows reports the same mse
    rc, out, _ = run(["evaluate", tmp_path / "m", tmp_path / "diabetes.csv"], capsys)
    assert rc == 0 and abs(scores(out)["mse"] / mse_ls - 1) < 1e-3


def test_breast_cancer_logistic_matches_sklearn_accuracy(tmp_path, capsys):
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    df = load_breast_cancer(as_frame=True).frame
    train, test = train_test_split(df, test_size=0.25, random_state=0, stratify=df["target"])
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    sk = make_pipeline(StandardScaler(), LogisticRegression(max_iter=10_000))
    sk.fit(train.drop(columns="target"), train["target"])
    sk_acc = sk.score(test.drop(columns="target"), test["target"])

    rc, _, _ = run(["fit", tmp_path / "train.csv", "--target", "target", "--model", "logistic",
                    "--val", "0", "--out", tmp_path / "m", "--quiet"], capsys)
    assert rc == 0
    rc, out, _ = run(["evaluate", tmp_path / "m", tmp_path / "test.csv"], capsys)
    assert rc == 0
    acc = scores(out)["accuracy"]
    assert abs(acc - sk_acc) <= 0.01, (acc, sk_acc)


# -------------------------------------------------------------------------------- bad files

GOOD = "a,b,y\n1,2,1.5\n2,1,2.5\n3,5,0.5\n4,3,1.0\n5,4,2.0\n6,0,3.0\n"
CLASSES = "a,b,y\n1,2,x\n2,1,z\n3,5,x\n4,3,z\n5,4,x\n6,0,z\n"
COLORS = "a,color,y\n1,red,1\n2,blue,2\n3,red,3\n4,blue,1\n"


@pytest.mark.parametrize(
    ("content", "args", "msg"),
    [
        ("", [], "data.csv is empty: no header and no rows"),
        ("a,b,y\n", [], "data.csv has a header but no data rows"),
        ("a,b\n1,2\n3,4\n", [], "target column 'y' is not in data.csv; its columns are: a, b"),
        ("a,b,y\n1,2,1\n3,4,2\n", ["--features", "a,c"],
         "feature column 'c' is not in data.csv; its columns are: a, b, y"),
        ("a,color,y\n1,red,1\n2,blue,2\n3,red,3\n", [],
         "non-numeric feature column(s) in data.csv: color; pass --one-hot (one_hot=True) to "
         "encode them as 0/1 columns, or leave them out with --features"),
        ("a,b,y\n1,,1\n2,3,\n,4,2\n5,,3\n", [],
         "missing values (empty or NaN cells) in data.csv: a: 1, b: 2, y: 1; pass "
         "--drop-missing (drop_missing=True) to drop those rows"),
        ("a,b,y\n1,nan,1\n2,NaN,2\n3,4,3\n", [],
         "missing values (empty or NaN cells) in data.csv: b: 2; pass --drop-missing "
         "(drop_missing=True) to drop those rows"),
        ("a,b,y\n1,inf,1\n2,3,2\n3,-inf,1\n", [],
         "infinite values in data.csv: b: 2; replace or remove those cells"),
        ("a,b,y\n1,2,3\n", [], "data.csv has only 1 data row; fitting needs at least 2"),
        ("a,b,y\n1,,3\n2,3,\n", ["--drop-missing"],
         "every row of data.csv has a missing value; nothing is left to fit"),
        ("a,b,y\n1,2,x\n2,3,z\n", [], "target column 'y' of data.csv is not numeric; a "
         "regression needs numbers (class labels: one target column, --task classify)"),
        ("a,b,y\n1,2,x\n2,3,x\n", ["--model", "logistic"],
         "target column 'y' of data.csv holds only one class (x); a classifier needs at "
         "least 2"),
        ("a,b\n1,2,3\n", [], "cannot read data.csv: CSV parse error: Expected 2 columns, got 3: "
         "1,2,3"),
        (GOOD, ["--model", "cubic"],
         "unknown model 'cubic'; use linear, logistic, mlp:64,64 or pkg.module:Class"),
        (GOOD, ["--model", "mlp:a"], "mlp widths must be whole numbers like mlp:64,64, got "
         "'mlp:a'"),
        (GOOD, ["--model", "mlp:8", "--activation", "cube"],
         "unknown activation 'cube'; known: gelu, relu, sigmoid, silu, tanh"),
        (GOOD, ["--loss", "l3"],
         "unknown loss 'l3'; known losses: mse, mae, huber, bce, cross_entropy"),
        (GOOD, ["--lr", "-1"], "lr must be a finite number > 0, got -1.0"),
        (GOOD, ["--val", "0.95"], "val=0.95 leaves no training rows out of 6; lower val or add "
         "rows"),
        (GOOD, ["--model", "nosuchpkg_xyz:Net"],
         "cannot import 'nosuchpkg_xyz' for model 'nosuchpkg_xyz:Net': No module named "
         "'nosuchpkg_xyz'"),
    ],
    ids=["empty", "header-only", "no-target", "no-feature", "non-numeric", "missing", "nan",
         "inf", "one-row", "all-missing", "text-target", "one-class", "malformed",
         "model", "mlp-widths", "activation", "loss", "lr", "val", "import"],
)
def test_bad_data_files_get_one_line_and_status_2(tmp_path, capsys, content, args, msg):
    (tmp_path / "data.csv").write_text(content)
    if "--model" not in args and "--loss" not in args:
        args = [*args, "--task", "regress"]  # whole-number targets: say which task
    rc, out, err = run(["fit", tmp_path / "data.csv", "--target", "y", "--out",
                        tmp_path / "m", "--quiet", *args], capsys)
    assert (rc, err) == (2, f"descend fit: error: {msg}\n")
    assert out == "" and not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("train", "args", "command", "new", "msg"),
    [
        (CLASSES, ["--model", "logistic"], "evaluate", "a,b,y\n1,2,x\n2,2,w\n",
         "class label 'w' in column 'y' of new.csv was never seen in training; known labels: "
         "x, z"),
        (GOOD, [], "predict", "a,y\n1,2\n", "new.csv lacks the feature column(s) b the model "
         "was trained on; its columns are: a, y"),
        (GOOD, [], "evaluate", "a,b\n1,2\n", "target column 'y' is not in new.csv; its columns "
         "are: a, b"),
        (COLORS, ["--one-hot", "--task", "regress"], "predict", "a,color\n1,green\n",
         "value 'green' in column 'color' of new.csv was never seen in training; known "
         "values: blue, red"),
        (GOOD, [], "predict", "a,b\n1,\n", "missing values (empty or NaN cells) in new.csv: "
         "1 row(s) (data rows 1); b: 1; pass --missing drop (missing='drop') to skip those "
         "rows or --missing impute to fill numeric features with the training means"),
        (GOOD, [], "evaluate", "a,b,y\n1,2,inf\n", "infinite values in new.csv: y: 1; replace "
         "or remove those cells"),
        (GOOD, [], "predict", "", "new.csv is empty: no header and no rows"),
    ],
    ids=["unseen-label", "missing-column", "evaluate-no-target", "unseen-category",
         "predict-missing", "evaluate-inf", "predict-empty"],
)
def test_bad_files_at_predict_time(tmp_path, capsys, train, args, command, new, msg):
    (tmp_path / "train.csv").write_text(train)
    rc, _, _ = run(["fit", tmp_path / "train.csv", "--target", "y", "--val", "0", "--epochs",
                    "2", "--out", tmp_path / "m", "--quiet", *args], capsys)
    assert rc == 0
    (tmp_path / "new.csv").write_text(new)
    rc, out, err = run([command, tmp_path / "m", tmp_path / "new.csv"], capsys)
    assert (rc, out, err) == (2, "", f"descend {command}: error: {msg}\n")


def test_predict_from_a_folder_that_is_not_a_model(tmp_path, capsys):
    (tmp_path / "new.csv").write_text(GOOD)
    rc, _, err = run(["predict", tmp_path, tmp_path / "new.csv"], capsys)
    assert rc == 2 and err == (f"descend predict: error: {tmp_path} is not a saved descend model "
                               "(no config.json/weights.pt); create one with descend fit ... "
                               "--out DIR\n")


def test_drop_options_fit(tmp_path, capsys):
    (tmp_path / "d.csv").write_text("a,b,c,y\n1,,7,1\n2,3,7,2\n4,5,7,1\n6,1,7,3\n5,2,7,2\n")
    rc, _, _ = run(["fit", tmp_path / "d.csv", "--target", "y", "--drop-missing",
                    "--drop-constant", "--task", "regress", "--val", "0", "--epochs", "2",
                    "--out", tmp_path / "m",
                    "--quiet"], capsys)
    assert rc == 0
    prep = json.loads((tmp_path / "m" / "preprocessing.json").read_text())
    assert prep["features"] == ["a", "b"] and prep["targets"] == ["y"]


# ----------------------------------------------------------------------------- saved models


def _regression_file(path: Path, n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n) * 10 + 3,
                       "c": rng.integers(0, 5, size=n)})
    df["y"] = 2 * df["a"] - 0.3 * df["b"] + df["c"] + 0.01 * rng.normal(size=n)
    df["z"] = df["a"] + 1
    df.to_csv(path, index=False)
    return df


def test_predict_in_a_fresh_process(tmp_path, capsys):
    df = _regression_file(tmp_path / "d.csv")
    rc, out, err = run(["fit", tmp_path / "d.csv", "--val", "0.2",
                        "--target", "y,z", "--model", "mlp:16",
                        "--activation", "tanh", "--epochs", "30", "--out", tmp_path / "m"],
                       capsys)
    assert rc == 0
    note, first = err.splitlines()[:2]  # the run's checkpoints, then the progress
    assert note.startswith("descend: note: run ") and first.startswith("epoch 1/30  loss ")
    assert "val loss" in err and "left" in err
    saved = sorted(os.listdir(tmp_path / "m"))
    assert saved == ["config.json", "epochs.csv", "metrics.json", "preprocessing.json",
                     "weights.pt"]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (config["model"], config["in_features"], config["out_features"]) == ("mlp:16", 3, 2)
    assert err.splitlines()[-1].startswith(f"epoch {config['epochs_run']}/30  loss ")
    # the weights file holds tensors only
    import torch

    state = torch.load(tmp_path / "m" / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())

    new = df.drop(columns=["y", "z"]).head(20)
    new.to_csv(tmp_path / "new.csv", index=False)
    proc = subprocess.run(
        [sys.executable, "-m", "descend", "predict", str(tmp_path / "m"), str(tmp_path / "new.csv"),
         "-o", str(tmp_path / "pred.csv")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns) == ["a", "b", "c", "y_pred", "z_pred"]
    pd.testing.assert_frame_equal(pred[["a", "b", "c"]], new.reset_index(drop=True))
    # the same numbers as in this process, and close to the truth
    rc, out, _ = run(["predict", tmp_path / "m", tmp_path / "new.csv"], capsys)
    from io import StringIO

    here = pd.read_csv(StringIO(out))
    np.testing.assert_allclose(pred["y_pred"], here["y_pred"], rtol=1e-6)
    truth = df.head(20)
    assert np.abs(pred["z_pred"] - truth["z"]).max() < 0.3


def test_classifier_predictions_and_probabilities(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 2))
    labels = np.array(["cat", "dog", "eel"])[(X @ rng.normal(size=(2, 3))).argmax(1)]
    df = pd.DataFrame({"u": X[:, 0], "v": X[:, 1], "kind": labels})
    df.to_csv(tmp_path / "d.csv", index=False)
    rc, out, _ = run(["fit", tmp_path / "d.csv", "--val", "0.2",
                        "--target", "kind", "--model", "logistic",
                      "--lr", "0.1", "--epochs", "60", "--out", tmp_path / "m", "--quiet"],
                     capsys)
    assert rc == 0 and "val:   loss" in out and "accuracy" in out
    rc, _, _ = run(["predict", tmp_path / "m", tmp_path / "d.csv", "-o", tmp_path / "p.csv"],
                   capsys)
    assert rc == 0
    p = pd.read_csv(tmp_path / "p.csv")
    probs = ["kind_prob_cat", "kind_prob_dog", "kind_prob_eel"]
    assert list(p.columns) == ["u", "v", "kind", "kind_pred", *probs]
    np.testing.assert_allclose(p[probs].sum(axis=1), 1.0, rtol=1e-9)
    assert (p["kind_pred"] == np.array(["cat", "dog", "eel"])[p[probs].to_numpy().argmax(1)]
            ).all()
    assert (p["kind_pred"] == p["kind"]).mean() > 0.9


def test_one_hot_columns_and_a_user_module(tmp_path, capsys, monkeypatch):
    (tmp_path / "mynet.py").write_text(
        "from torch import nn\n\n\nclass Net(nn.Sequential):\n"
        "    def __init__(self, n_in, n_out):\n"
        "        super().__init__(nn.Linear(n_in, 8), nn.ReLU(), nn.Linear(8, n_out))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "d.csv").write_text(COLORS * 1 + "5,red,2\n6,blue,3\n")
    rc, _, err = run(["fit", "d.csv", "--target", "y", "--one-hot", "--model", "mynet:Net",
                      "--task", "regress", "--val", "0", "--epochs", "3", "--out", "m",
                      "--quiet"], capsys)
    assert rc == 0, err
    prep = json.loads((tmp_path / "m" / "preprocessing.json").read_text())
    assert prep["categories"] == {"color": ["blue", "red"]}
    rc, out, err = run(["predict", "m", "d.csv", "--trust-code"], capsys)  # it names mynet
    assert rc == 0, err
    assert out.splitlines()[0] == '"a","color","y","y_pred"'


def test_a_user_module_spec_leaves_sys_path_as_it_was(tmp_path, monkeypatch):
    (tmp_path / "pathnet.py").write_text(
        "from torch import nn\n\n\nclass Net(nn.Linear):\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "pathnet", raising=False)
    before = list(sys.path)
    assert str(tmp_path) not in before
    model = build_model("pathnet:Net", 3, 2)
    assert (model.in_features, model.out_features) == (3, 2)
    assert sys.path == before
    sys.modules.pop("pathnet", None)
    with pytest.raises(InputError, match=r"has no nn\.Module subclass 'Nope'"):
        build_model("pathnet:Nope", 3, 2)
    assert sys.path == before
    with pytest.raises(InputError, match="cannot import 'nothere'"):
        build_model("nothere:Net", 3, 2)
    assert sys.path == before


def test_out_is_refused_unless_overwrite_then_replaced(tmp_path, capsys):
    _regression_file(tmp_path / "d.csv", n=40)
    out_dir = tmp_path / "runs" / "m"
    out_dir.mkdir(parents=True)
    (out_dir / "old.txt").write_text("keep me")
    argv = ["fit", tmp_path / "d.csv", "--target", "y", "--epochs", "2", "--out", out_dir,
            "--quiet"]
    rc, out, err = run(argv, capsys)
    assert (rc, out) == (2, "")
    assert err == f"descend fit: error: {out_dir} already exists; pass --overwrite to replace it\n"
    assert (out_dir / "old.txt").read_text() == "keep me"
    rc, out, err = run([*argv, "--overwrite"], capsys)
    assert rc == 0, err
    assert sorted(os.listdir(out_dir)) == ["config.json", "epochs.csv", "metrics.json",
                                           "preprocessing.json", "weights.pt"]
    assert os.listdir(tmp_path / "runs") == ["m"]  # no temporary folders left behind


def test_fit_summary_and_early_stopping(tmp_path, capsys):
    _regression_file(tmp_path / "d.csv", n=200)
    rc, out, _ = run(["fit", tmp_path / "d.csv", "--val", "0.2",
                        "--target", "y", "--features", "a,b,c",
                      "--patience", "2", "--rule", "adam", "--lr", "0.05", "--batch-size", "64",
                      "--epochs", "300", "--out", tmp_path / "m", "--quiet"], capsys)
    assert rc == 0
    lines = out.splitlines()
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert lines[0] == "method: adam with lr=0.05 on batch_size=64"
    assert lines[1].startswith(f"stopped after {config['epochs_run']} epochs")
    assert config["reason"] == "early_stopping"
    assert lines[1].endswith(" in 2 epochs; best "
                             f"{config_best(tmp_path):.4e} at epoch {config['best_epoch']} "
                             "[early_stopping]")
    assert lines[2] == f"restored the weights of the best epoch, {config['best_epoch']}"
    assert lines[3] == "task: regression, loss mse, l2 penalty 0"
    assert lines[-4].startswith("train: loss ") and lines[-3].startswith("val:   loss ")
    assert lines[-2] == f"saved the model to {tmp_path / 'm'}"
    epochs = pd.read_csv(tmp_path / "m" / "epochs.csv")
    assert len(epochs) == config["epochs_run"] == config["best_epoch"] + 2
    assert list(epochs.columns) == ["iteration", "loss", "grad_norm", "lr", "time", "nfev",
                                    "epoch", "val_loss", "val_mse", "val_rmse", "val_mae",
                                    "val_r2"]
    # the saved metrics are those of the restored (best) weights
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["val_loss"] == pytest.approx(epochs["val_loss"].min(), rel=1e-6)
    assert epochs["val_loss"].idxmin() + 1 == config["best_epoch"]


def config_best(tmp_path: Path) -> float:
    return float(pd.read_csv(tmp_path / "m" / "epochs.csv")["val_loss"].min())


def test_parquet_training_file_with_a_separate_validation_file(tmp_path, capsys):
    df = _regression_file(tmp_path / "d.csv", n=100)
    df.head(80).to_parquet(tmp_path / "train.parquet")
    df.tail(20).to_csv(tmp_path / "val.csv", index=False)
    rc, out, _ = run(["fit", tmp_path / "train.parquet", "--target", "y", "--features",
                      "a,b,c", "--val-file", tmp_path / "val.csv", "--patience", "0",
                      "--epochs", "5", "--batch-size", "16", "--out", tmp_path / "m", "--quiet"],
                     capsys)
    assert rc == 0
    assert out.splitlines()[1] == ("stopped after 5 epochs (25 iterations, "
                                   f"{out.split('iterations, ')[1].split(' s)')[0]} s): "
                                   "completed 5 epochs [max_epochs]")
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    # the validation scores are those of the 20 rows of val.csv
    rc, ev, _ = run(["evaluate", tmp_path / "m", tmp_path / "val.csv"], capsys)
    assert rc == 0
    got = scores(ev)
    assert got["rows"] == 20
    assert got["mse"] == pytest.approx(metrics["val_mse"], rel=1e-5)
    assert got["loss"] == pytest.approx(metrics["val_loss"], rel=1e-5)


@pytest.mark.parametrize(
    ("argv", "msg"),
    [
        (["fit", "x.csv"], "descend fit: error: the following arguments are required: --target, "
         "--out"),
        (["fit", "x.csv", "--target", "y", "--out", "o", "--epochs", "abc"],
         "descend fit: error: argument --epochs: invalid int value: 'abc'"),
        (["fit", "x.csv", "--target", "y", "--out", "o", "--epochs", "0"],
         "descend fit: error: epochs must be a whole number >= 1, got 0"),
        (["predict", "m"], "descend predict: error: the following arguments are required: FILE"),
    ],
)
def test_usage_errors_are_one_line(argv, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text(GOOD)
    rc, out, err = run(argv, capsys)
    assert (rc, out, err) == (2, "", msg + "\n")
