"""descend.fit against independent oracles: hand-written torch loops, closed forms, sklearn."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import descend
from descend import stops
from descend.data import split_indices
from descend.errors import InputError
from descend.fit import EpochProgress, FitResult
from descend.models import METRICS
from descend.tables import to_table


def linear_data(n: int = 200, seed: int = 0, noise: float = 0.01):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 5, generator=g)
    W, b = torch.randn(3, 5, generator=g), torch.randn(3, generator=g)
    return X, X @ W.T + b + noise * torch.randn(n, 3, generator=g), W, b


def linear_model(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(5, 3)


# ------------------------------------------------------------------------------- the notebook


def test_notebook_linear_recovers_the_map():
    """The notebook's nn.Linear(5, 3) with SGD lr 0.001 recovers W and b of y = W x + b + noise.

    The Hessian of the mean squared error in each row of W is (2/3) E[x x^T] (eigenvalues
    >= ~0.5 for 400 standard-normal rows), so plain SGD shrinks the error by at least
    (1 - 0.001 * 0.5) per step: 12,000 steps take an O(1) error below 0.003; the noise
    (0.01 / sqrt(400)) adds far less. Stated tolerance: 0.01 per entry.
    """
    X, Y, W, b = linear_data(n=400)
    model = linear_model()
    res = descend.fit(model, (X, Y), rule="gd", lr=0.001, batch_size=4, epochs=120)
    assert res.reason == "max_epochs" and res.epochs == 120 and res.nit == 120 * 100
    assert (model.weight.detach() - W).abs().max() < 0.01
    assert (model.bias.detach() - b).abs().max() < 0.01
    assert res.model is model and res.x is model


def hand_loop(model, X, Y, opt, batch_size, epochs, seed=0):
    """What a torch user writes: one randperm per epoch (seeded generator), gather, step."""
    g = torch.Generator().manual_seed(seed)
    losses = []
    n = len(X)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            loss = F.mse_loss(model(X[idx]), Y[idx])
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


@pytest.mark.parametrize(
    ("rule", "make_opt"),
    [
        ("gd", lambda p: torch.optim.SGD(p, lr=0.01)),
        (descend.rules.Momentum(momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.01,
                                                                         momentum=0.9)),
        ("adam", lambda p: torch.optim.Adam(p, lr=0.01)),
    ],
    ids=["gd", "momentum", "adam"],
)
def test_iterates_match_a_hand_written_loop(rule, make_opt):
    X, Y, _, _ = linear_data(n=100)
    ref = linear_model()
    ref_losses = hand_loop(ref, X, Y, make_opt(ref.parameters()), batch_size=16, epochs=3)
    model = linear_model()
    res = descend.fit(model, (X, Y), rule=rule, lr=0.01, batch_size=16, epochs=3)
    assert res.nit == len(ref_losses) == 3 * 7
    # row k of the history is the loss of batch k at x_k, before its update
    np.testing.assert_allclose(res.history.loss[:-1], ref_losses, rtol=1e-5)
    torch.testing.assert_close(model.weight, ref.weight, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.bias, ref.bias, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------- epochs and history


def test_epoch_rows_are_keyed_on_the_iteration_count():
    X, Y, _, _ = linear_data(n=50)
    res = descend.fit(linear_model(), (X, Y), rule="gd", lr=0.01, batch_size=16, epochs=4,
                      val=(X[:10], Y[:10]))
    nb = 4  # ceil(50 / 16): batches of 16, 16, 16, 2
    eh = res.epoch_history
    assert eh.iteration == [nb, 2 * nb, 3 * nb, 4 * nb]
    assert eh.extra["epoch"] == [1, 2, 3, 4]
    for e in range(4):
        rows = res.history.loss[e * nb:(e + 1) * nb]
        want = (16 * rows[0] + 16 * rows[1] + 16 * rows[2] + 2 * rows[3]) / 50
        assert eh.loss[e] == pytest.approx(want, rel=1e-12)
    # each epoch's validation loss is the loss of the model at that epoch's final weights
    assert len(eh.extra["val_loss"]) == 4 and len(eh.extra["val_r2"]) == 4
    final = F.mse_loss(res.model(X[:10]), Y[:10]).item()
    assert eh.extra["val_loss"][-1] == pytest.approx(final, rel=1e-5)
    assert res.metrics["val_loss"] == pytest.approx(final, rel=1e-5)


def test_early_stopping_restores_the_best_epoch():
    # Train on y = x @ (2, 0), validate on y = x @ (1, 1): full-batch descent from 0 walks
    # straight to (2, 0); the validation loss falls until (1, 0), then rises.
    g = torch.Generator().manual_seed(0)
    X = torch.randn(400, 2, generator=g)
    Xv = torch.randn(400, 2, generator=g)
    Y, Yv = X @ torch.tensor([[2.0], [0.0]]), Xv @ torch.tensor([[1.0], [1.0]])
    model = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(model.weight)
    snapshots = []
    res = descend.fit(model, (X, Y), val=(Xv, Yv), rule="gd", lr=0.05, batch_size=400,
                      epochs=200, patience=5,
                      callback=lambda s: snapshots.append(model.weight.detach().clone()))
    val = res.epoch_history.extra["val_loss"]
    best = int(np.argmin(val)) + 1
    assert res.reason == "early_stopping" and res.success
    assert res.epochs == best + 5 and res.best_epoch == best and res.restored_best
    assert res.best_val_loss == val[best - 1]
    # snapshots[k] holds the weights at iteration k (one batch per epoch)
    torch.testing.assert_close(model.weight.detach(), snapshots[best])
    assert res.message == (f"the validation loss has not improved by 0 in 5 epochs; best "
                           f"{val[best - 1]:.4e} at epoch {best}")


@pytest.mark.parametrize(
    ("criterion", "column"),
    [(stops.ValLossBelow(0.05), "val_loss"), (stops.TrainLossBelow(0.05), "loss")],
    ids=["val", "train"],
)
def test_epoch_loss_thresholds_fire_at_the_first_epoch_under_them(criterion, column):
    X, Y, _, _ = linear_data(n=200)
    res = descend.fit(linear_model(), (X, Y), val=0.25, rule="adam", lr=0.05, batch_size=32,
                      epochs=500, stop=criterion)
    eh = res.epoch_history
    losses = eh.loss if column == "loss" else eh.extra[column]
    assert res.reason == criterion.reason and res.success
    assert losses[-1] <= 0.05 < min(losses[:-1])
    assert res.message.endswith(f"{losses[-1]:.4e} is at or below the threshold 0.05")


def test_max_iter_and_time_limit_bound_a_fit():
    X, Y, _, _ = linear_data(n=64)
    res = descend.fit(linear_model(), (X, Y), batch_size=8, max_iter=13)
    assert (res.reason, res.nit, res.epochs) == ("max_iter", 13, 1)
    res = descend.fit(linear_model(), (X, Y), batch_size=8, epochs=10 ** 6,
                      stop=stops.TimeLimit(0.2))
    assert res.reason == "time_limit" and res.seconds < 5


def test_default_bound_is_100_epochs():
    # mini-batches the caller chose, nothing else bounding the run: 100 epochs
    X, Y, _, _ = linear_data(n=20)
    res = descend.fit(linear_model(), (X, Y), batch_size=5, rule="adam", lr=1e-3)
    assert (res.reason, res.epochs, res.nit) == ("max_epochs", 100, 400)
    assert isinstance(res, FitResult) and isinstance(res, descend.Result)


def test_the_automatic_method_says_what_it_chose_and_why():
    X, Y, _, _ = linear_data(n=20)
    full = descend.fit(linear_model(), (X, Y))
    assert full.method == ("lbfgs with strong Wolfe line search (lr0=1, c1=0.0001, c2=0.9) on "
                           "the full batch (20 rows x 5 features fit in memory); runs to "
                           "convergence")
    assert full.success and full.reason in ("converged", "roundoff")
    big = torch.randn(2_300_000, 5), torch.randn(2_300_000, 1)  # 0.9 x 11.5e6 numbers > 1e7
    mini = descend.fit("linear", big, val=0.1, max_iter=3)
    assert mini.method.startswith("adam with lr=0.001 on mini-batches of 64 rows (the ")
    auto = descend.fit("linear", (big[0][:100], big[1][:100]), batch_size=10, metrics=[])
    assert auto.method == "adam with lr=0.001 on batch_size=10" and auto.reason == "max_epochs"


# ------------------------------------------------------------------------------- data forms


class PairDataset(Dataset):
    def __init__(self, X, Y):
        self.X, self.Y = X, Y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], self.Y[i]


def _frame(X, Y):
    import pandas as pd

    df = pd.DataFrame(X.double().numpy(), columns=[f"x{i}" for i in range(5)])
    for j in range(Y.shape[1]):
        df[f"y{j}"] = Y[:, j].double().numpy()
    return df


@pytest.mark.parametrize("form", ["numpy", "tensor_dataset", "dataframe", "csv", "parquet"])
def test_every_in_memory_form_gives_the_tensor_fit(form, tmp_path):
    X, Y, _, _ = linear_data(n=60)
    X, Y = X.double().float(), Y.double().float()
    kw = dict(rule="gd", lr=0.05, batch_size=16, epochs=3, metrics=[])
    ref = descend.fit(linear_model(), (X, Y), **kw)
    targets = ["y0", "y1", "y2"]
    if form == "numpy":
        data, extra = (X.numpy(), Y.numpy()), {}
    elif form == "tensor_dataset":
        data, extra = TensorDataset(X, Y), {}
    else:
        data, extra = _frame(X, Y), {"target": targets, "standardize": False}
        if form == "csv":
            data.to_csv(tmp_path / "d.csv", index=False, float_format="%.17g")
            data = tmp_path / "d.csv"
        elif form == "parquet":
            data.to_parquet(tmp_path / "d.parquet")
            data = str(tmp_path / "d.parquet")
    model = linear_model()
    res = descend.fit(model, data, **kw, **extra)
    np.testing.assert_allclose(res.history.loss, ref.history.loss, rtol=1e-6)
    torch.testing.assert_close(model.weight, ref.model.weight)


@pytest.mark.parametrize("form", ["dataloader", "dataset"])
def test_loaders_walk_their_batches(form):
    X, Y, _, _ = linear_data(n=60)
    kw = dict(rule="gd", lr=0.05, batch_size=16, epochs=3, shuffle=False, metrics=[])
    ref = descend.fit(linear_model(), (X, Y), **kw)
    ds = PairDataset(X, Y)
    data = DataLoader(ds, batch_size=16) if form == "dataloader" else ds
    model = linear_model()
    res = descend.fit(model, data, val=(X[:8], Y[:8]), **kw)
    assert res.nit == ref.nit == 12 and res.epochs == 3
    np.testing.assert_allclose(res.history.loss, ref.history.loss, rtol=1e-6)
    torch.testing.assert_close(model.weight, ref.model.weight)


def test_standardisation_is_fitted_on_the_training_rows_only():
    X, Y, _, _ = linear_data(n=80)
    X = X * torch.tensor([1.0, 10.0, 100.0, 0.1, 1.0]) + 5
    df = _frame(X, Y)
    res = descend.fit("linear", df, target=["y0", "y1", "y2"], val=0.25, epochs=2, seed=3)
    tr, _ = split_indices(80, 0.25, 3)
    prep = res.preprocessing
    assert prep is not None
    np.testing.assert_allclose(prep.x_mean, X[tr].double().mean(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(prep.x_std, X[tr].double().std(0, correction=0).numpy(),
                               rtol=1e-6)
    assert not np.allclose(prep.x_mean, X.double().mean(0).numpy(), rtol=1e-6)
    # predict applies the same scaling and un-scales the targets
    scaled = (X.double() - torch.tensor(prep.x_mean)) / torch.tensor(prep.x_std)
    with torch.no_grad():
        raw = res.model(scaled.to(res.model.weight.dtype)).double()
    want = raw * torch.tensor(prep.y_std) + torch.tensor(prep.y_mean)
    np.testing.assert_allclose(res.predict(df), want.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(res.predict(X.numpy()), want.numpy(), rtol=1e-5, atol=1e-5)


def test_standardize_on_tensors_scales_inputs_and_predict_applies_it():
    X, Y, _, _ = linear_data(n=80)
    X = X * 50 + 20
    res = descend.fit(linear_model(), (X, Y), standardize=True, epochs=2)
    m, s = X.double().mean(0), X.double().std(0, correction=0)
    with torch.no_grad():
        want = res.model(((X.double() - m) / s).float()).double()
    np.testing.assert_allclose(res.predict(X), want.numpy(), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------- metrics and losses


def test_metrics_agree_with_sklearn():
    from sklearn import metrics as skm

    g = torch.Generator().manual_seed(1)
    y, p = torch.randn(50, 2, generator=g).double(), torch.randn(50, 2, generator=g).double()
    assert METRICS["mse"][1](p, y) == pytest.approx(skm.mean_squared_error(y, p))
    assert METRICS["rmse"][1](p, y) == pytest.approx(math.sqrt(skm.mean_squared_error(y, p)))
    assert METRICS["mae"][1](p, y) == pytest.approx(skm.mean_absolute_error(y, p))
    assert METRICS["r2"][1](p, y) == pytest.approx(skm.r2_score(y, p))
    prob = torch.softmax(torch.randn(50, 3, generator=g).double(), 1)
    lab = torch.randint(0, 3, (50,), generator=g)
    assert METRICS["accuracy"][1](prob, lab) == pytest.approx(
        skm.accuracy_score(lab, prob.argmax(1)))
    assert METRICS["log_loss"][1](prob, lab) == pytest.approx(
        skm.log_loss(lab, prob, labels=[0, 1, 2]))


def test_cross_entropy_classifier_on_tensors():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(300, 4, generator=g)
    y = (X @ torch.randn(4, 3, generator=g)).argmax(1)  # 3 linearly separable classes
    res = descend.fit("logistic", (X, y), loss="cross_entropy", rule="adam", lr=0.1, epochs=40,
                      val=0.2, batch_size=64)
    assert res.metrics["train_accuracy"] > 0.95 and res.metrics["val_accuracy"] > 0.9
    prob = res.predict_proba(X)
    assert prob.shape == (300, 3)
    np.testing.assert_allclose(prob.sum(1), np.ones(300))
    labels = res.predict(X)  # class indices on tensors
    assert labels.dtype == np.int64 and np.array_equal(labels, prob.argmax(1))


def test_a_callable_loss_and_metric():
    X, Y, _, _ = linear_data(n=64)

    def rmse(p, y):
        return float(((p - y) ** 2).mean().sqrt())

    res = descend.fit(linear_model(), (X, Y), loss=lambda o, t: ((o - t) ** 2).sum(1).mean(),
                      metrics=[rmse], rule="gd", lr=0.1, epochs=100, val=0.25)
    assert res.metrics["train_rmse"] < 0.1 and "val_rmse" in res.metrics


# -------------------------------------------------------------------------------- progress


def test_progress_shows_epoch_loss_val_loss_and_time_left():
    X, Y, _, _ = linear_data(n=40)
    out = io.StringIO()
    prog: list[EpochProgress] = []

    class Capture:  # builds the display once the run's epoch record exists
        def __call__(self, s):
            if not prog:
                prog.append(EpochProgress(s.objective.epochs, 3, every=0, stream=out))
            prog[0](s)

        def close(self):
            prog[0].close()

    descend.fit(linear_model(), (X, Y), val=0.25, epochs=3, batch_size=10, observers=[Capture()])
    lines = out.getvalue().splitlines()
    assert [ln.split("  ")[0] for ln in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all(" loss " in ln and "val loss " in ln for ln in lines)
    assert [ln.endswith(" left") for ln in lines] == [True, True, False]


# ---------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"batch_size": 0}, "batch_size must be a whole number >= 1, got 0"),
        ({"epochs": 1.5}, "epochs must be a whole number >= 1, got 1.5"),
        ({"loss": "l3"}, "unknown loss 'l3'; known losses: mse, mae, huber, bce, cross_entropy"),
        ({"metrics": ["f1"]},
         "unknown metric 'f1'; known metrics: mse, rmse, mae, r2, accuracy, log_loss"),
        ({"metrics": ["accuracy"]},
         "metric 'accuracy' is for classification; this is a regression (loss mse)"),
        ({"stop": stops.ValLossBelow(0.1)},
         "ValLossBelow needs validation data: pass val=0.2 or a validation set"),
        ({"val": 1.5}, "val must lie in [0, 1), got 1.5"),
        ({"rule": "sgdx"},
         "unknown rule 'sgdx'; known rules: adagrad, adam, adamw, bfgs, gd, lbfgs, momentum, "
         "nesterov, rmsprop"),
        ({"device": "gpu"}, "unknown device 'gpu'; use cpu, cuda, cuda:1, mps, ..."),
        ({"stop": [print]},
         "stop must hold stopping criteria from descend.stops, got <built-in function print>; "
         "wrap a function with stops.Callback(fn)"),
    ],
)
def test_bad_arguments_are_refused_up_front(kwargs, msg):
    X, Y, _, _ = linear_data(n=20)
    model = linear_model()
    before = model.weight.detach().clone()
    with pytest.raises(InputError) as e:
        descend.fit(model, (X, Y), **kwargs)
    assert str(e.value) == msg
    torch.testing.assert_close(model.weight.detach(), before)


@pytest.mark.parametrize(
    ("model", "data", "kwargs", "msg"),
    [
        ("linear", (torch.zeros(3, 2), torch.zeros(4, 1)), {},
         "data: X has 3 rows but Y has 4; give one target row per input row"),
        ("linear", [1, 2, 3], {},
         "data must be (X, Y) tensors or arrays, a DataFrame, a Dataset, a DataLoader or a "
         "CSV/Parquet path, got list"),
        (nn.Linear(2, 1), DataLoader(TensorDataset(torch.zeros(4, 2), torch.zeros(4, 1))),
         {"val": 0.2}, "val as a fraction needs in-memory data (tensors, arrays, a DataFrame "
         "or a file); pass a separate validation set instead"),
        ("cubic", (torch.zeros(4, 2), torch.zeros(4, 1)), {},
         "unknown model 'cubic'; use linear, logistic, mlp:64,64 or pkg.module:Class"),
        ("logistic", (torch.zeros(4, 2), torch.zeros(4, 1)), {"loss": "mse"},
         "model 'logistic' is a classifier; its loss is bce or cross_entropy, got 'mse'"),
    ],
)
def test_bad_data_and_models_are_refused(model, data, kwargs, msg):
    with pytest.raises(InputError) as e:
        descend.fit(model, data, **kwargs)
    assert str(e.value) == msg


def test_epoch_criteria_outside_fit_say_so():
    res_msg = "MaxEpochs counts epochs; it works only in descend.fit"
    with pytest.raises(InputError) as e:
        descend.minimize(lambda x: (x ** 2).sum(), torch.ones(2), stop=stops.MaxEpochs(2))
    assert str(e.value) == res_msg


def test_device_cpu_by_name():
    X, Y, _, _ = linear_data(n=32)
    res = descend.fit(linear_model(), (X, Y), device="cpu", epochs=2)
    assert next(res.model.parameters()).device.type == "cpu" and res.epochs == 2


def test_a_spec_model_takes_1d_inputs_and_targets():
    x = torch.linspace(-1, 1, 50)
    res = descend.fit("linear", (x, 3 * x - 1), rule="gd", lr=0.5, batch_size=50, epochs=300)
    w, b = res.model.weight.item(), res.model.bias.item()
    assert w == pytest.approx(3, abs=1e-3) and b == pytest.approx(-1, abs=1e-3)
    res = descend.fit("logistic", (x, (x > 0).float()), loss="bce", epochs=5)
    assert res.predict_proba(x[:, None]).shape == (50, 2)
    assert set(res.predict(x[:, None]).tolist()) <= {0, 1}


def test_save_from_python_and_load_back(tmp_path):
    from descend.models import load_model

    X, Y, _, _ = linear_data(n=60)
    df = _frame(X, Y)
    res = descend.fit("mlp:8", df, target=["y0", "y1"], activation="tanh", epochs=3, val=0.2)
    path = res.save(tmp_path / "m")
    saved = load_model(path)
    assert saved.config["model"] == "mlp:8" and saved.config["activation"] == "tanh"
    assert saved.config["in_features"] == 6 and saved.config["out_features"] == 2
    assert saved.prep == res.preprocessing and saved.metrics == res.metrics
    feats = saved.prep.features_of(to_table(df), "df", torch.float64)
    np.testing.assert_allclose(saved.prep.unscale_y(saved.outputs(feats).double()).numpy(),
                               res.predict(df))
    with pytest.raises(InputError) as e:
        res.save(tmp_path / "m")
    assert str(e.value) == f"{tmp_path / 'm'} already exists; pass --overwrite (overwrite=True) " \
        "to replace it"
    own = descend.fit(linear_model(), (X, Y), epochs=1)
    with pytest.raises(InputError) as e:
        own.save(tmp_path / "o")
    assert str(e.value) == ("save needs a model fit built from a spec ('linear', 'mlp:64', ...) "
                            "on a table; for your own module use torch.save(model.state_dict())")


@pytest.mark.parametrize("restore", [True, False])
def test_early_stopping_without_validation_watches_the_training_loss(restore):
    # Plain SGD with a step far too long for batch 1 makes the epoch loss stall and wander.
    X, Y, _, _ = linear_data(n=32, noise=1.0)
    model = linear_model()
    res = descend.fit(model, (X, Y), rule="gd", lr=0.3, batch_size=1, epochs=300,
                      stop=stops.EarlyStopping(patience=3, restore_best=restore))
    losses = res.epoch_history.loss
    best = int(np.argmin(losses)) + 1
    assert res.reason == "early_stopping" and res.epochs == best + 3 < 300
    assert res.message.startswith("the training loss has not improved by 0 in 3 epochs")
    assert res.best_epoch == best and math.isnan(res.best_val_loss)
    assert res.restored_best is restore


def test_a_recorded_fit_carries_its_validation_curve_on_epoch_ends(tmp_path):
    from descend.store import list_runs, open_run

    g = torch.Generator().manual_seed(0)
    X = torch.randn(120, 3, generator=g)
    Y = X @ torch.tensor([[1.0], [-2.0], [0.5]])
    res = descend.fit(nn.Linear(3, 1), (X, Y), val=0.25, rule="gd", lr=0.1, batch_size=30,
                      epochs=4, metrics=[], record=tmp_path)
    (row,) = list_runs(tmp_path)
    run = open_run(tmp_path, row["id"])
    assert run.history["loss"] == pytest.approx(res.history.loss)
    ends = res.epoch_history.iteration
    assert ends == [3, 6, 9, 12]  # 90 training rows in batches of 30: 3 per epoch
    val = run.history["val_loss"]
    assert [val[i] for i in ends] == pytest.approx(res.epoch_history.extra["val_loss"])
    assert all(math.isnan(v) for i, v in enumerate(val) if i not in ends)
    assert run.result["reason"] == res.reason == "max_epochs"
