"""descend.sklearn: the estimators pass scikit-learn's own estimator checks (none expected to
fail), work in a Pipeline, cross_val_score and GridSearchCV, and score as scikit-learn's linear
models do on the same folds of its bundled data (iris, diabetes)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

from descend.errors import InputError
from descend.sklearn import Classifier, Regressor

# ------------------------------------------------------------------- scikit-learn's own checks


# No check is expected to fail (so no `expected_failed_checks`, which scikit-learn < 1.6 lacks).
@parametrize_with_checks([Regressor(), Classifier()])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


# ------------------------------------------------------------- against scikit-learn's models


def test_classifier_scores_as_logistic_regression_on_iris_folds():
    # Classifier("linear") is multinomial logistic regression without a penalty, fitted to the
    # optimum by full-batch L-BFGS: on the same five folds its mean accuracy is within 0.02 of
    # LogisticRegression(C=inf) (the same model: folds may differ by one point of 30 where the
    # optimum is nearly flat), and not below scikit-learn's default, penalised model by more
    # than 0.02.
    X, y = load_iris(return_X_y=True)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    ours = cross_val_score(Classifier(), X, y, cv=cv).mean()
    unpenalised = cross_val_score(LogisticRegression(C=np.inf, max_iter=10_000), X, y,
                                  cv=cv).mean()
    default = cross_val_score(LogisticRegression(max_iter=1000), X, y, cv=cv).mean()
    assert abs(ours - unpenalised) <= 0.02
    assert ours >= default - 0.02
    assert ours > 0.95


def test_regressor_scores_as_linear_regression_on_diabetes_folds():
    # Regressor("linear") is least squares solved by L-BFGS to a stationary point: on each of
    # the same five folds its R² equals LinearRegression's (the closed form) within 1e-3, much
    # tighter than the 0.02 the two would need to count as the same model.
    X, y = load_diabetes(return_X_y=True)
    cv = KFold(5, shuffle=True, random_state=0)
    ours = cross_val_score(Regressor(), X, y, cv=cv)
    ref = cross_val_score(LinearRegression(), X, y, cv=cv)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3)
    reg, ls = Regressor().fit(X, y), LinearRegression().fit(X, y)
    assert reg.result_.success
    np.testing.assert_allclose(reg.predict(X), ls.predict(X), rtol=1e-5)


def test_in_a_pipeline_with_cross_val_score():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), Classifier(standardize=False))
    scores = cross_val_score(pipe, X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    assert scores.shape == (5,) and scores.mean() > 0.95
    Xd, yd = load_diabetes(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), Regressor()).fit(Xd, yd)
    assert pipe.score(Xd, yd) == pytest.approx(LinearRegression().fit(Xd, yd).score(Xd, yd),
                                               abs=1e-4)


def test_grid_search_over_descend_options():
    X, y = load_iris(return_X_y=True)
    grid = GridSearchCV(make_pipeline(StandardScaler(), Classifier()),
                        {"classifier__model": ["linear", "mlp:8"],
                         "classifier__standardize": [True, False]}, cv=3)
    grid.fit(X, y)
    assert set(grid.best_params_) == {"classifier__model", "classifier__standardize"}
    assert grid.best_score_ > 0.9 and grid.score(X, y) > 0.95
    Xd, yd = load_diabetes(return_X_y=True)
    grid = GridSearchCV(Regressor(), {"model": ["linear", "mlp:4"]}, cv=3).fit(Xd, yd)
    assert grid.best_params_ == {"model": "linear"}  # diabetes is nearly linear


# ------------------------------------------------------------------------- labels and shapes


@pytest.mark.parametrize("labels", [["setosa", "versicolor", "virginica"], [3, 7, 9],
                                    [-1.0, 0.0, 2.0]])
def test_labels_come_back_in_their_own_type(labels):
    X, y = load_iris(return_X_y=True)
    y = np.asarray(labels)[y]
    clf = Classifier().fit(X, y)
    assert np.array_equal(clf.classes_, np.asarray(labels))
    pred = clf.predict(X)
    assert pred.dtype == y.dtype and (pred == y).mean() > 0.95
    prob = clf.predict_proba(X)
    assert prob.shape == (150, 3)
    np.testing.assert_allclose(prob.sum(1), 1.0, rtol=0, atol=1e-12)
    assert np.array_equal(clf.classes_[prob.argmax(1)], pred)


def test_two_classes_use_one_logit():
    X, y = load_iris(return_X_y=True)
    yb = np.where(y == 0, "setosa", "other")
    clf = Classifier().fit(X, yb)
    assert clf.result_.loss_name == "bce" and clf.model_.out_features == 1
    assert list(clf.classes_) == ["other", "setosa"] and clf.predict_proba(X).shape == (150, 2)
    assert clf.score(X, yb) == 1.0
    ce = Classifier(loss="cross_entropy").fit(X, yb)
    assert ce.model_.out_features == 2 and ce.score(X, yb) == 1.0


def test_dataframes_give_feature_names_and_several_targets():
    data = load_diabetes(as_frame=True)
    X, y = data.data, data.target
    reg = Regressor().fit(X, y)
    assert list(reg.feature_names_in_) == list(X.columns) and reg.n_features_in_ == 10
    Y = pd.DataFrame({"y": y, "half": y / 2})
    two = Regressor().fit(X, Y)
    pred = two.predict(X)
    assert pred.shape == (442, 2)
    np.testing.assert_allclose(pred[:, 1], pred[:, 0] / 2, rtol=1e-4)
    assert Regressor().fit(X, y.to_numpy()[:, None]).predict(X).shape == (442, 1)
    assert reg.predict(X).shape == (442,)


def test_params_are_stored_unchanged_and_clone_safe():
    clf = Classifier("mlp:8", lr="auto", epochs=7, activation="tanh", seed=3)
    params = clf.get_params()
    assert params["model"] == "mlp:8" and params["lr"] == "auto" and params["epochs"] == 7
    assert params["rule"] == "lbfgs" and params["batch_size"] is None
    assert clone(clf).get_params() == params
    assert clf.set_params(epochs=9).epochs == 9
    X, y = load_iris(return_X_y=True)
    a, b = clone(clf).fit(X, y), clone(clf).fit(X, y)
    assert a.model_ is not b.model_
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))  # seeded
    back = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(back.predict_proba(X), a.predict_proba(X))


def _net(n_in: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, 8), nn.Tanh(), nn.Linear(8, n_out))


def test_a_module_factory_but_not_a_module():
    X, y = load_iris(return_X_y=True)
    clf = Classifier(_net).fit(X, y)
    assert isinstance(clf.model_, nn.Sequential) and clf.score(X, y) > 0.95
    assert next(clf.model_.parameters()).dtype == torch.float64
    with pytest.raises(InputError) as e:
        Classifier(nn.Linear(4, 3)).fit(X, y)
    assert str(e.value) == (
        "model must be a spec such as 'linear' or 'mlp:64', or a factory (in_features, "
        "out_features) -> nn.Module, not a module instance: scikit-learn's clone would share "
        "one module between fits")


def test_misuse_is_named():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(InputError) as e:
        Classifier(loss="mse").fit(X, y)
    assert str(e.value) == ("a classifier's loss is bce (2 classes) or cross_entropy, got 'mse'; "
                            "for a regression loss use descend.sklearn.Regressor")
    with pytest.raises(InputError) as e:
        Classifier(loss="bce").fit(X, y)
    assert str(e.value) == "loss 'bce' is for 2 classes; y holds 3: use cross_entropy"
    with pytest.raises(InputError) as e:
        Regressor(loss="cross_entropy").fit(X, y.astype(float))
    assert str(e.value).startswith("loss 'cross_entropy' is for classifiers")
    with pytest.raises(InputError) as e:
        Classifier().fit(X, np.zeros(150))
    assert str(e.value) == "a classifier needs at least 2 classes; y holds one class (0.0)"
    with pytest.raises(InputError) as e:
        Regressor(rule="lbfgs", batch_size=32).fit(X, y.astype(float))
    assert "lbfgs" in str(e.value)
    with pytest.raises(InputError, match=r"must be a finite number > 0, got -1\.0"):
        Regressor(lr=-1.0).fit(X, y.astype(float))


# ------------------------------------------------------------------------------------ README


def test_the_readme_examples_run_as_written(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    import descend
    from descend.models import load_model

    if not hasattr(descend, "load"):  # until descend/__init__.py exports it
        monkeypatch.setattr(descend, "load", load_model, raising=False)
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text[text.index("## Models back in Python and in scikit-learn"):]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)  # the first example saves runs/iris
    for code in blocks:
        namespace: dict = {}
        exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "runs" / "iris" / "weights.pt").is_file()
    assert namespace["reg"].score(namespace["X"], namespace["y"]) == pytest.approx(0.5177,
                                                                                  abs=1e-4)
