"""Issue 10, part 2: the traps a new user met fitting scikit-learn's bundled data written to
CSV/Parquet, each reproduced through ``descend.cli.main`` (in-process) and checked fixed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from cli_run import run, scores

import descend


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    return load_digits(as_frame=True).frame


# ------------------------------------------------------------- 1, 2: the task, constant columns


def test_integer_labels_with_mlp_name_the_task_flag_then_classify(tmp_path, capsys, digits):
    digits.to_csv(tmp_path / "digits.csv", index=False)
    base = ["fit", tmp_path / "digits.csv", "--target", "target", "--model", "mlp:64",
            "--val", "0.2", "--quiet", "--no-record"]
    rc, out, err = run([*base, "--out", tmp_path / "m"], capsys)
    assert (rc, out) == (2, "") and err == (
        "descend fit: error: target column 'target' of digits.csv holds 10 distinct whole "
        "numbers: class labels or amounts? pass --task classify (task='classify') for a "
        "classifier or --task regress (task='regress') for a regression\n")
    assert not (tmp_path / "m").exists()

    rc, out, err = run([*base, "--task", "classify", "--epochs", "15", "--out", tmp_path / "m"],
                       capsys)
    assert rc == 0, err
    # digits has constant pixel columns: kept, with a note, and no NaN from zero spread
    constant = [c for c in digits.columns if digits[c].nunique() == 1]
    assert constant
    notes = [ln for ln in err.splitlines() if ln.startswith("descend fit: note: ")]
    assert notes == [f"descend fit: note: kept {len(constant)} constant feature column(s) of "
                     f"digits.csv: {constant[0]} (always 0)" + notes[0].split("(always 0)", 1)[1]]
    l2 = 1 / round(len(digits) * 0.8)
    assert f"task: classification, loss cross_entropy, l2 penalty {l2:.4g}" in out
    val = {k: float(v) for k, v in (p.split() for p in
                                    out.split("val:   ")[1].splitlines()[0].split("  "))}
    assert val["accuracy"] > 0.95  # as a regression (the trap) it had r2 0.80
    prep = json.loads((tmp_path / "m" / "preprocessing.json").read_text())
    assert prep["task"] == "classification" and set(constant) <= set(prep["features"])
    assert all(np.isfinite(prep["x_mean"])) and all(s > 0 for s in prep["x_std"])

    rc, _, err = run([*base, "--task", "classify", "--epochs", "1", "--drop-constant",
                      "--out", tmp_path / "m2"], capsys)
    assert rc == 0, err
    assert f"descend fit: note: dropped {len(constant)} constant feature column(s)" in err
    prep = json.loads((tmp_path / "m2" / "preprocessing.json").read_text())
    assert not set(constant) & set(prep["features"])


def test_logistic_on_a_quantity_is_refused_and_labels_follow_their_type(tmp_path, capsys):
    from sklearn.datasets import load_diabetes

    df = load_diabetes(as_frame=True).frame
    df.to_csv(tmp_path / "diabetes.csv", index=False)
    rc, out, err = run(["fit", tmp_path / "diabetes.csv", "--target", "target", "--model",
                        "logistic", "--out", tmp_path / "m", "--quiet"], capsys)
    levels = df["target"].nunique()
    assert (rc, out) == (2, "") and err == (
        f"descend fit: error: target column 'target' of diabetes.csv holds {levels} distinct "
        "numbers, a quantity, not class labels; --model logistic is a classifier: use --model "
        "linear (or mlp:64) for a regression\n")
    # text labels with the default linear model: a classifier, without any flag
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    pd.DataFrame({"x": x, "kind": np.where(x > 0, "up", "down")}).to_csv(
        tmp_path / "k.csv", index=False)
    res = descend.fit("linear", tmp_path / "k.csv", target="kind", epochs=30, val=None)
    assert res.preprocessing.task == "classification" and res.loss_name == "bce"
    assert res.metrics["train_accuracy"] > 0.95
    # the task named
    res = descend.fit("linear", tmp_path / "k.csv", target="kind", task="classify", epochs=1)
    assert res.preprocessing.task == "classification"
    with pytest.raises(descend.InputError, match=r"^--task regress"):
        descend.fit("logistic", tmp_path / "k.csv", target="kind", task="regress")


# ------------------------------------------------------------------- 3: one-hot not standardised


def test_one_hot_columns_are_not_standardised(tmp_path, capsys):
    rng = np.random.default_rng(1)
    n, levels = 600, 60
    cat = rng.integers(0, levels, size=n)
    effect = rng.normal(size=levels) * 3
    x = rng.normal(size=n)
    df = pd.DataFrame({"x": x, "shop": [f"s{c}" for c in cat],
                       "y": 2 * x + effect[cat] + 0.1 * rng.normal(size=n)})
    df.to_csv(tmp_path / "shops.csv", index=False)
    r2 = {}
    for extra in ([], ["--no-standardize"]):
        out_dir = tmp_path / f"m{len(extra)}"
        rc, out, err = run(["fit", tmp_path / "shops.csv", "--target", "y", "--one-hot",
                            "--epochs", "200", "--rule", "adam", "--lr", "0.05",
                            "--batch-size", "64", "--val", "0.2", "--out", out_dir, "--quiet",
                            "--no-record", *extra], capsys)
        assert rc == 0, err
        r2[len(extra)] = float(out.split("val:   ")[1].split(" r2 ")[1].split()[0])
    assert r2[0] > 0.9 and r2[1] > 0.9  # scaling one-hot columns gave r2 -39
    prep = json.loads((tmp_path / "m0" / "preprocessing.json").read_text())
    assert prep["x_mean"][1:] == [0.0] * len(prep["categories"]["shop"])
    assert prep["x_std"][1:] == [1.0] * len(prep["categories"]["shop"])


# ------------------------------------------------------------------- 4: pandas index columns


def test_a_pandas_index_is_not_a_feature(tmp_path, capsys):
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"a": rng.normal(size=50), "b": rng.normal(size=50)})
    df["y"] = df["a"] - df["b"]
    df = df.sample(frac=1, random_state=0)  # a shuffled, non-default index
    df.to_parquet(tmp_path / "d.parquet")
    assert "__index_level_0__" in pq.read_table(tmp_path / "d.parquet").column_names
    rc, _, err = run(["fit", tmp_path / "d.parquet", "--target", "y", "--epochs", "1",
                      "--out", tmp_path / "m", "--quiet", "--no-record"], capsys)
    assert rc == 0, err
    prep = json.loads((tmp_path / "m" / "preprocessing.json").read_text())
    assert prep["features"] == ["a", "b"]
    import pyarrow as pa

    for data, want in ((df, ["a", "b"]), (pa.Table.from_pandas(df), ["a", "b"]),
                       (df.set_index("a"), ["b"])):
        res = descend.fit("linear", data, target="y", epochs=1)
        assert res.preprocessing.features == want


# ---------------------------------------------------------------------------- 5: encodings


def test_korean_excel_csv_is_read_as_cp949_with_a_note(tmp_path, capsys):
    rng = np.random.default_rng(3)
    n = 40
    df = pd.DataFrame({"면적": rng.normal(size=n), "지역": rng.choice(["서울", "부산"], n)})
    df["가격"] = 3 * df["면적"] + (df["지역"] == "서울") * 2.0
    df.to_csv(tmp_path / "집값.csv", index=False, encoding="cp949")
    base = ["fit", tmp_path / "집값.csv", "--target", "가격", "--one-hot", "--epochs", "2",
            "--quiet", "--no-record"]
    rc, out, err = run([*base, "--out", tmp_path / "m"], capsys)
    assert rc == 0, err
    assert err.splitlines()[0] == ("descend fit: note: 집값.csv is not UTF-8; read it as cp949 "
                                   "(CP949/EUC-KR, Korean Excel's CSV export); pass --encoding "
                                   "NAME if that is wrong")
    prep = json.loads((tmp_path / "m" / "preprocessing.json").read_text())
    assert prep["categories"] == {"지역": ["부산", "서울"]}
    rc, _, err = run([*base, "--encoding", "euc-kr", "--out", tmp_path / "m2"], capsys)
    assert rc == 0 and "note" not in err
    rc, out, err = run([*base, "--encoding", "klingon", "--out", tmp_path / "m3"], capsys)
    assert (rc, out) == (2, "") and err.startswith("descend fit: error: unknown encoding "
                                                   "'klingon'; use a Python codec name")
    # UTF-8 with a BOM (Excel's "CSV UTF-8"): read as UTF-8, the BOM not in the first name
    df.to_csv(tmp_path / "bom.csv", index=False, encoding="utf-8-sig")
    rc, out, err = run(["predict", tmp_path / "m", tmp_path / "bom.csv"], capsys)
    assert rc == 0 and err == "" and out.splitlines()[0].startswith('"면적","지역","가격"')
    rc, out, err = run(["evaluate", tmp_path / "m", tmp_path / "집값.csv"], capsys)
    assert rc == 0 and err.startswith("descend evaluate: note: 집값.csv is not UTF-8")
    (tmp_path / "bad.csv").write_bytes(b"a,y\n\xff\xfe\xff,1\n")
    rc, out, err = run(["predict", tmp_path / "m", tmp_path / "bad.csv"], capsys)
    assert (rc, out) == (2, "") and err.startswith(
        "descend predict: error: cannot read bad.csv: it is not UTF-8 text")


# ------------------------------------------------------------ 6, 7: predict's output and gaps


@pytest.fixture
def model(tmp_path, capsys):
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"a": rng.normal(size=80), "b": rng.normal(size=80)})
    df["y"] = df["a"] + 2 * df["b"]
    df.to_csv(tmp_path / "train.csv", index=False)
    rc, _, err = run(["fit", tmp_path / "train.csv", "--target", "y", "--epochs", "30",
                      "--out", tmp_path / "m", "--quiet", "--no-record"], capsys)
    assert rc == 0, err
    return tmp_path / "m", df


def test_predict_writes_the_format_the_suffix_names_and_overwrites_only_when_told(
        tmp_path, capsys, model):
    folder, df = model
    df.head(10).to_csv(tmp_path / "new.csv", index=False)
    rc, _, err = run(["predict", folder, tmp_path / "new.csv", "-o", tmp_path / "p.parquet"],
                     capsys)
    assert rc == 0 and err == f"wrote 10 predictions to {tmp_path / 'p.parquet'}\n"
    table = pq.read_table(tmp_path / "p.parquet")  # Parquet, not CSV text
    assert table.column_names == ["a", "b", "y", "y_pred"]
    rc, out, err = run(["predict", folder, tmp_path / "new.csv", "-o", tmp_path / "p.parquet"],
                       capsys)
    assert (rc, out) == (2, "") and err == (f"descend predict: error: {tmp_path / 'p.parquet'} "
                                            "already exists; pass --overwrite to replace it\n")
    df.head(3).to_csv(tmp_path / "new.csv", index=False)
    rc, _, _ = run(["predict", folder, tmp_path / "new.csv", "-o", tmp_path / "p.parquet",
                    "--overwrite"], capsys)
    assert rc == 0 and pq.read_table(tmp_path / "p.parquet").num_rows == 3
    rc, _, _ = run(["predict", folder, tmp_path / "new.csv", "-o", tmp_path / "p.csv"], capsys)
    assert rc == 0 and list(pd.read_csv(tmp_path / "p.csv").columns)[-1] == "y_pred"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files


def test_predict_missing_refuse_drop_impute(tmp_path, capsys, model):
    folder, df = model
    new = df.head(8).copy()
    new.loc[[1, 5], "a"] = np.nan
    new.to_csv(tmp_path / "new.csv", index=False)
    rc, out, err = run(["predict", folder, tmp_path / "new.csv"], capsys)
    assert (rc, out) == (2, "") and err == (
        "descend predict: error: missing values (empty or NaN cells) in new.csv: 2 row(s) "
        "(data rows 2, 6); a: 2; pass --missing drop (missing='drop') to skip those rows or "
        "--missing impute to fill numeric features with the training means\n")
    rc, out, err = run(["predict", folder, tmp_path / "new.csv", "--missing", "drop"], capsys)
    assert rc == 0 and err == ("descend predict: note: dropped 2 row(s) (data rows 2, 6) of "
                               "new.csv with missing values\n")
    assert len(pd.read_csv(pd.io.common.StringIO(out))) == 6
    rc, out, err = run(["predict", folder, tmp_path / "new.csv", "--missing", "impute"], capsys)
    assert rc == 0 and err.startswith("descend predict: note: filled 2 missing cell(s)")
    p = pd.read_csv(pd.io.common.StringIO(out))
    assert len(p) == 8 and p["a"].isna().sum() == 2 and p["y_pred"].notna().all()
    prep = json.loads((folder / "preprocessing.json").read_text())
    assert prep["fill"]["a"] == pytest.approx(df["a"].iloc[:80].mean(), abs=0.5)
    del prep["fill"]  # a folder saved before the means were kept
    (folder / "preprocessing.json").write_text(json.dumps(prep))
    rc, out, err = run(["predict", folder, tmp_path / "new.csv", "--missing", "impute"], capsys)
    assert (rc, out) == (2, "") and err.startswith(
        "descend predict: error: this model was saved without the training means")


# ------------------------------------------------------------------------- 8: the L2 penalty


def test_logistic_default_l2_is_sklearns_c1_and_evaluate_loss_is_log_loss(tmp_path, capsys):
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    df = load_breast_cancer(as_frame=True).frame
    res = descend.fit("logistic", df, target="target", rule="lbfgs", batch_size=None,
                      lr=None, max_iter=500, val=None)
    prep = res.preprocessing
    assert prep.l2 == pytest.approx(1 / len(df))
    X = (df.drop(columns="target").to_numpy() - prep.x_mean) / prep.x_std
    sk = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000).fit(X, df["target"])
    w = res.model.weight.detach().double().numpy().ravel()
    np.testing.assert_allclose(w, sk.coef_.ravel(), atol=5e-3)  # float32

    with pytest.raises(descend.InputError, match=r"^l2 must be a finite number >= 0, got -1"):
        descend.fit("logistic", df, target="target", l2=-1)
    # an over-confident model: evaluate's loss is the same number as log_loss
    df.to_csv(tmp_path / "bc.csv", index=False)
    rc, out, err = run(["fit", tmp_path / "bc.csv", "--target", "target", "--model",
                        "logistic", "--l2", "0", "--lr", "1", "--epochs", "60", "--patience",
                        "0", "--out", tmp_path / "m", "--quiet", "--no-record"], capsys)
    assert rc == 0, err
    assert "l2 penalty 0\n" in out
    assert json.loads((tmp_path / "m" / "config.json").read_text())["l2"] == 0
    rc, out, err = run(["evaluate", tmp_path / "m", tmp_path / "bc.csv"], capsys)
    s = scores(out)
    assert rc == 0 and s["loss"] == s["log_loss"]
    assert list(s) == ["rows", "loss", "accuracy", "log_loss"]


def test_the_penalty_runs_through_the_loop_on_the_weights_only():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 3, generator=g)
    Y = X @ torch.tensor([[1.0], [-2.0], [0.5]]) + 3.0
    model = torch.nn.Linear(3, 1)
    res = descend.fit(model, (X, Y), l2=1.0, rule="lbfgs", batch_size=None, lr=None,
                      max_iter=200)
    # the minimiser of mean((Xw + b - y)^2) + |w|^2 / 2: the normal equations
    A = torch.cat([X, torch.ones(50, 1)], 1).double()
    reg = torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64)) * 50 / 2
    sol = torch.linalg.solve(A.T @ A + reg, A.T @ Y.double())
    torch.testing.assert_close(torch.cat([model.weight.detach().ravel(), model.bias.detach()]),
                               sol.ravel().float(), atol=1e-4, rtol=1e-4)
    # the final training loss is reported without the penalty
    with torch.no_grad():
        mse = float(torch.nn.functional.mse_loss(model(X), Y))
    assert res.metrics["train_loss"] == pytest.approx(mse, rel=1e-5)
