"""Models back in Python: a saved folder loaded (``descend.load``, i.e. ``models.load_model``)
predicts what the ``FitResult`` that wrote it predicts, as numpy: labels in their own type for
classifiers, values in the targets' units for regressors; probabilities sum to 1 and agree with
the labels; ``evaluate`` reproduces the scores of training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import descend
from descend.cli import main
from descend.errors import InputError
from descend.models import Saved, load_model


def _iris(labels: str = "names") -> pd.DataFrame:
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True)
    df = data.frame.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    if labels == "names":
        df["target"] = data.target_names[data.target]
    elif labels == "ints":
        df["target"] = data.target * 10 + 1  # 1, 11, 21: labels that are not indices
    return df


def _regression(n: int = 100) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n) * 10 + 3})
    df["y"] = 2 * df["a"] - 0.3 * df["b"] + 0.01 * rng.normal(size=n)
    df["z"] = df["a"] - 1
    return df


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    df = _iris()
    res = descend.fit("logistic", df, target="target", rule="lbfgs", batch_size=None,
                      epochs=50)
    path = res.save(tmp_path_factory.mktemp("m") / "iris")
    return df, res, load_model(path)


def test_descend_fit_on_the_command_line_then_load_in_python(tmp_path, capsys):
    df = _iris()
    df.to_csv(tmp_path / "iris.csv", index=False)
    rc = main(["fit", str(tmp_path / "iris.csv"), "--target", "target", "--model", "logistic",
               "--epochs", "20", "--out", str(tmp_path / "m"), "--quiet", "--no-record"])
    capsys.readouterr()
    assert rc == 0
    m = load_model(tmp_path / "m")
    assert isinstance(m, Saved)
    assert m.task == "classification" and m.targets == ["target"]
    assert m.features == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert m.config["model"] == "logistic" and m.config["loss"] == "cross_entropy"
    assert list(m.classes_) == ["setosa", "versicolor", "virginica"]
    # the same labels as `descend predict` writes, from a DataFrame, a file and an array
    rc = main(["predict", str(tmp_path / "m"), str(tmp_path / "iris.csv"),
               "-o", str(tmp_path / "pred.csv")])
    assert rc == 0
    cli = pd.read_csv(tmp_path / "pred.csv")["target_pred"].to_numpy()
    pred = m.predict(df)
    assert np.array_equal(pred, cli.astype(str))
    assert np.array_equal(m.predict(tmp_path / "iris.csv"), pred)
    assert np.array_equal(m.predict(df[m.features].to_numpy()), pred)
    assert np.array_equal(m.predict(torch.tensor(df[m.features].to_numpy())), pred)


def test_load_predicts_what_the_fit_result_predicts(classifier):
    df, res, m = classifier
    assert np.array_equal(m.predict(df), res.predict(df))
    np.testing.assert_allclose(m.predict_proba(df), res.predict_proba(df), rtol=0, atol=1e-12)


def test_labels_come_back_in_their_own_type(tmp_path):
    df = _iris("ints")
    res = descend.fit("logistic", df, target="target", epochs=5)
    m = load_model(res.save(tmp_path / "m"))
    for pred in (m.predict(df), res.predict(df)):
        assert pred.dtype.kind == "i" and set(pred.tolist()) <= {1, 11, 21}
    assert m.classes_.dtype.kind == "i" and list(m.classes_) == [1, 11, 21]
    df = _iris("names")
    res = descend.fit("logistic", df, target="target", epochs=5)
    pred = load_model(res.save(tmp_path / "s")).predict(df)
    assert pred.dtype.kind == "U" and set(pred.tolist()) <= {"setosa", "versicolor", "virginica"}
    # two classes (bce, one logit): booleans stay booleans
    df = _regression()
    df["up"] = df["y"] > 0
    res = descend.fit("logistic", df.drop(columns=["y", "z"]), target="up", rule="lbfgs",
                      batch_size=None, epochs=30)
    assert res.loss_name == "bce"
    m = load_model(res.save(tmp_path / "b"))
    pred = m.predict(df)
    assert pred.dtype == np.bool_ and list(m.classes_) == [False, True]
    assert (pred == df["up"].to_numpy()).mean() > 0.9


def test_probabilities_sum_to_one_and_agree_with_the_labels(classifier):
    df, _, m = classifier
    prob = m.predict_proba(df)
    assert prob.shape == (150, 3) and prob.dtype == np.float64
    np.testing.assert_allclose(prob.sum(1), 1.0, rtol=0, atol=1e-12)
    assert np.array_equal(m.classes_[prob.argmax(1)], m.predict(df))
    assert (m.predict(df) == df["target"].to_numpy()).mean() > 0.95


def test_evaluate_reproduces_the_scores_of_training(classifier):
    df, res, m = classifier
    scores = m.evaluate(df)
    assert set(scores) == {"loss", "accuracy", "log_loss"}
    # no validation split: the training rows are every row of df
    assert scores["accuracy"] == pytest.approx(res.metrics["train_accuracy"])
    assert scores["loss"] == pytest.approx(res.metrics["train_loss"], rel=1e-5)
    assert scores["log_loss"] == pytest.approx(res.metrics["train_log_loss"], rel=1e-5)


def test_a_regressor_predicts_in_the_targets_units(tmp_path):
    df = _regression()
    one = descend.fit("linear", df.drop(columns="z"), target="y", rule="lbfgs",
                      batch_size=None)
    m = load_model(one.save(tmp_path / "one"))
    pred = m.predict(df)
    assert pred.shape == (100,) and np.array_equal(pred, one.predict(df))
    np.testing.assert_allclose(pred, df["y"], atol=0.05)  # in y's units, not standardised
    assert not hasattr(m, "classes_") and m.task == "regression"
    np.testing.assert_allclose(m.predict(df[["a", "b"]].to_numpy()), pred, rtol=1e-6)
    assert set(m.evaluate(df)) == {"loss", "mse", "rmse", "mae", "r2"}
    two = descend.fit("linear", df, target=["y", "z"], epochs=5)
    m2 = load_model(two.save(tmp_path / "two"))
    assert m2.predict(df).shape == (100, 2) and np.array_equal(m2.predict(df), two.predict(df))


def test_a_regressor_refuses_predict_proba(tmp_path):
    df = _regression()
    res = descend.fit("linear", df, target="y", epochs=2)
    m = load_model(res.save(tmp_path / "m"))
    msg = "predict_proba is for classifiers; this model is a regressor (loss mse): use predict"
    for obj in (m, res):
        with pytest.raises(InputError) as e:
            obj.predict_proba(df)
        assert str(e.value) == msg


def test_bad_inputs_are_named(classifier, tmp_path):
    df, _, m = classifier
    with pytest.raises(InputError) as e:
        m.predict(np.zeros((3, 2)))
    assert str(e.value) == ("data must be a 2-D array of 4 feature column(s) (sepal_length, "
                            "sepal_width, petal_length, petal_width), got shape (3, 2)")
    with pytest.raises(InputError) as e:
        m.predict(df.drop(columns="petal_width"))
    assert str(e.value).startswith("data lacks the feature column(s) petal_width")
    with pytest.raises(InputError) as e:
        m.evaluate(df[m.features].to_numpy())
    assert str(e.value) == ("evaluate needs a DataFrame, a pyarrow Table or a file holding the "
                            "target column(s) target, got ndarray")
    with pytest.raises(InputError) as e:
        load_model(tmp_path)
    assert "is not a saved descend model" in str(e.value)


def test_the_repr_says_what_the_model_is(classifier):
    _, _, m = classifier
    assert repr(m) == ("Saved('logistic', classifier of target (3 classes), 4 features, "
                       "loss cross_entropy)")


def test_a_fit_on_tensors_predicts_class_indices():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 3, generator=g)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 1).long()
    res = descend.fit("logistic", (X, y), loss="cross_entropy", epochs=20)
    pred, prob = res.predict(X), res.predict_proba(X)
    assert isinstance(pred, np.ndarray) and pred.dtype == np.int64
    assert np.array_equal(pred, prob.argmax(1))


def test_descend_load_is_the_loader():
    assert descend.load is load_model
