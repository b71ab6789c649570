"""``descend fit`` with default flags against scikit-learn's defaults on its bundled data sets.

Each data set is written to CSV and split once (seeded, 25% test, stratified for classes); the
command line trains on the training file with nothing but ``--target`` and ``--model`` (and
``--task classify`` for ``mlp:64`` on digits' whole-number labels, which it refuses to guess),
then the saved model is scored on the test file. scikit-learn's estimators with their defaults
get the same split: ``LinearRegression`` for regression, ``LogisticRegression()`` for the linear
classifiers, ``MLPClassifier(hidden_layer_sizes=(64,))`` for ``mlp:64``; both sides standardise
the features (descend by default; scikit-learn through ``StandardScaler`` in a pipeline, as its
documentation advises for these estimators).

For the linear and logistic rows the table also checks how close descend's training loss is to
the optimum of the same objective (least squares by ``numpy.linalg.lstsq``; for logistic
models, scikit-learn's ``LogisticRegression`` with the same penalty run to round-off): the
target is within 0.1%.

Run: ``.venv/bin/python benchmarks/tables.py`` (about a minute; ``--sets iris,wine`` for some).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _sets() -> dict[str, tuple[pd.DataFrame, str, str, str]]:
    """name -> (frame, target column, descend model spec, task)."""
    from sklearn import datasets

    out: dict[str, tuple[pd.DataFrame, str, str, str]] = {}
    d = datasets.load_diabetes(as_frame=True).frame
    out["diabetes"] = (d, "target", "linear", "regression")
    for name, loader in (("breast_cancer", datasets.load_breast_cancer),
                         ("iris", datasets.load_iris), ("wine", datasets.load_wine),
                         ("digits", datasets.load_digits)):
        frame = loader(as_frame=True).frame
        frame.columns = [str(c).replace(" ", "_").replace("(", "").replace(")", "")
                         .replace("/", "_") for c in frame.columns]
        out[name] = (frame, "target", "logistic", "classification")
    out["digits_mlp"] = (out["digits"][0], "target", "mlp:64", "classification")  # + --task
    lin = datasets.load_linnerud(as_frame=True)
    frame = pd.concat([lin.data, lin.target[["Weight"]]], axis=1)
    out["linnerud"] = (frame, "Weight", "linear", "regression")
    return out


def _split(frame: pd.DataFrame, target: str, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    strat = frame[target] if task == "classification" else None
    return train_test_split(frame, test_size=0.25, random_state=0, stratify=strat)


def _descend(train: pd.DataFrame, test: pd.DataFrame, target: str, spec: str,
             folder: Path) -> tuple[float, float, float, str, object]:
    """Train with the CLI's defaults; return (test score, training loss, seconds, method, the
    saved model)."""
    from descend.cli import main
    from descend.models import load_model
    from descend.tables import to_table

    train.to_csv(folder / "train.csv", index=False)
    out = folder / f"model-{spec.replace(':', '')}"
    t0 = time.perf_counter()
    buf = io.StringIO()
    # an mlp on whole-number labels is ambiguous (labels or amounts?): the one flag it needs
    task = ["--task", "classify"] if spec.startswith("mlp") else []
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["fit", str(folder / "train.csv"), "--target", target, "--model", spec,
                   *task, "--out", str(out), "--quiet", "--no-record", "--overwrite"])
    seconds = time.perf_counter() - t0
    if rc != 0:
        return math.nan, math.nan, seconds, f"exit {rc}", None
    method = next((ln[8:] for ln in buf.getvalue().splitlines() if ln.startswith("method: ")),
                  "")
    saved = load_model(out)
    scores = saved.evaluate_table(to_table(test), "test")
    train_scores = saved.evaluate_table(to_table(train), "train")
    score = scores.get("r2", scores.get("accuracy", math.nan))
    return score, train_scores["loss"], seconds, method, saved


def _sklearn(train: pd.DataFrame, test: pd.DataFrame, target: str, spec: str,
             task: str) -> tuple[float, float]:
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = train.drop(columns=[target]), train[target]
    Xt, yt = test.drop(columns=[target]), test[target]
    if task == "regression":
        est = LinearRegression()
    elif spec.startswith("mlp"):
        est = MLPClassifier(hidden_layer_sizes=(64,), random_state=0)
    else:
        est = LogisticRegression()
    model = make_pipeline(StandardScaler(), est)
    t0 = time.perf_counter()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's default iteration caps warn here
        model.fit(X, y)
    return float(model.score(Xt, yt)), time.perf_counter() - t0


def _least_squares_loss(train: pd.DataFrame, target: str) -> float:
    """The optimum of descend's training objective for a linear model: mean squared error on
    standardised features and target (descend standardises both for regression)."""
    X = train.drop(columns=[target]).to_numpy(float)
    y = train[target].to_numpy(float)
    sd = X.std(0)
    X = (X - X.mean(0)) / np.where(sd > 0, sd, 1.0)
    y = (y - y.mean()) / y.std()
    A = np.hstack([X, np.ones((len(X), 1))])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return float(np.mean((A @ coef - y) ** 2))


def _logistic_gap(saved: object, train: pd.DataFrame, target: str) -> str:
    """descend's penalised training objective against the optimum of the same objective:
    scikit-learn's ``LogisticRegression(C=1/(l2 n))`` (the same penalty) run to round-off on
    the same standardised features; mean log-loss + ``l2 |W|^2 / 2``."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    from descend.tables import to_table

    prep = saved.prep  # type: ignore[attr-defined]
    X = prep.features_of(to_table(train), "train", torch.float64).numpy()
    y = train[target].to_numpy()
    n = len(X)
    l2 = float(saved.config.get("l2", 1.0 / n))  # type: ignore[attr-defined]
    W = saved.model.weight.detach().double().numpy()  # type: ignore[attr-defined]
    ours = saved.evaluate_table(to_table(train), "train")["log_loss"] \
        + 0.5 * l2 * float((W ** 2).sum())  # type: ignore[attr-defined]
    ref = LogisticRegression(C=1.0 / (l2 * n), tol=1e-12, max_iter=100_000).fit(X, y)
    best = log_loss(y, ref.predict_proba(X)) + 0.5 * l2 * float((ref.coef_ ** 2).sum())
    return f"{(ours - best) / best:+.2e} (penalised log-loss)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", help="comma-separated names (default: all)")
    a = ap.parse_args(argv)
    sets = _sets()
    names = a.sets.split(",") if a.sets else list(sets)
    print(f"{'data set':14s} {'model':9s} {'descend':>8s} {'sklearn':>8s} {'diff':>7s} "
          f"{'descend s':>9s} {'sklearn s':>9s}  training loss vs optimum | descend's method")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            frame, target, spec, task = sets[name]
            train, test = _split(frame, target, task)
            score, loss, secs, method, saved = _descend(train, test, target, spec, Path(tmp))
            ref, ref_secs = _sklearn(train, test, target, spec, task)
            gap = ""
            if spec == "linear":
                opt = _least_squares_loss(train, target)
                gap = f"{(loss - opt) / opt:+.2e} (least squares)"
            elif spec == "logistic" and saved is not None:
                gap = _logistic_gap(saved, train, target)
            print(f"{name:14s} {spec:9s} {score:8.4f} {ref:8.4f} {score - ref:+7.4f} "
                  f"{secs:9.2f} {ref_secs:9.2f}  {gap or '-':>23s} | {method}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
