"""minimize over every kind of x0, its Result and History, and its errors."""

from __future__ import annotations

import csv
import math

import pytest
import torch
import torch.nn.functional as F

import descend
from descend import stops
from descend.errors import InputError

TARGET = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]])


def test_a_tensor_x0_is_never_mutated_and_reaches_the_target():
    x0 = torch.rand(3, 3)
    before = x0.clone()
    res = descend.minimize(lambda x: F.mse_loss(x, TARGET), x0, rule="gd", lr=4.0,
                           stop=stops.LossBelow(1e-12))
    assert torch.equal(x0, before) and not x0.requires_grad
    assert res.success and torch.allclose(res.x, TARGET, atol=1e-5)
    assert not res.x.requires_grad and res.x.data_ptr() != x0.data_ptr()


@pytest.mark.parametrize("kind", ["tuple", "list", "dict"])
def test_structures_come_back_in_the_structure_given(kind):
    a, b = torch.zeros(2), torch.ones(3)
    x0 = {"tuple": (a, b), "list": [a, b], "dict": {"a": a, "b": b}}[kind]

    def fn(p):
        pa, pb = (p["a"], p["b"]) if kind == "dict" else p
        return ((pa - 1) ** 2).sum() + ((pb + 2) ** 2).sum()

    res = descend.minimize(fn, x0, rule="gd", lr=0.5, stop=stops.LossBelow(0.0))
    assert type(res.x) is type(x0) and type(res.best_x) is type(x0)
    xa, xb = (res.x["a"], res.x["b"]) if kind == "dict" else res.x
    assert torch.equal(xa, torch.ones(2)) and torch.equal(xb, -2 * torch.ones(3))
    assert res.nit == 1  # lr 0.5 is 1/L for this quadratic
    assert torch.equal(a, torch.zeros(2)) and torch.equal(b, torch.ones(3))


def test_args_are_passed_to_fn():
    res = descend.minimize(lambda x, t: ((x - t) ** 2).sum(), torch.zeros(2),
                           args=(torch.tensor([3.0, -1.0]),), rule="gd", lr=0.5)
    assert torch.equal(res.x, torch.tensor([3.0, -1.0]))


def test_a_module_is_trained_in_place_like_the_notebook_linear_model():
    torch.manual_seed(0)
    X = torch.randn(64, 5)
    W, b = torch.randn(3, 5), torch.randn(3)
    Y = X @ W.T + b
    model = torch.nn.Linear(5, 3)
    weight = model.weight
    res = descend.minimize(lambda m: F.mse_loss(m(X), Y), model, rule="momentum", lr=0.1,
                           stop=stops.LossBelow(1e-10), max_iter=5000)
    assert res.success and res.x is model and model.weight is weight
    assert torch.allclose(model.weight, W, atol=1e-4) and torch.allclose(model.bias, b, atol=1e-4)
    assert set(res.best_x) == {"weight", "bias"}


def test_frozen_module_parameters_are_left_alone():
    model = torch.nn.Linear(2, 1)
    model.bias.requires_grad_(False)
    bias = model.bias.detach().clone()
    descend.minimize(lambda m: (m.weight ** 2).sum() + m.bias.sum(), model, rule="gd", lr=0.1,
                     max_iter=5)
    assert torch.equal(model.bias, bias)


def test_float64_stays_float64():
    x0 = torch.ones(4, dtype=torch.float64)
    res = descend.minimize(lambda x: (x**2).sum(), x0, rule="gd", lr=0.1, max_iter=3)
    assert res.x.dtype == torch.float64


def test_history_has_one_row_per_iteration_plus_the_start(tmp_path):
    x0 = torch.ones(3)
    res = descend.minimize(lambda x: (x**2).sum(), x0, rule="gd", lr=0.25, max_iter=6)
    h = res.history
    assert len(h) == res.nit + 1 == 7
    assert h.iteration == list(range(7))
    assert h.loss == pytest.approx([3 * 0.25**k for k in range(7)])  # x halves each step
    assert h.grad_norm == pytest.approx([2 * math.sqrt(3) * 0.5**k for k in range(7)])
    assert math.isnan(h.lr[0]) and h.lr[1:] == [0.25] * 6
    assert h.nfev == list(range(1, 8))
    assert h.time == sorted(h.time)
    assert res.loss == h.loss[-1] and res.nfev == 7
    assert torch.equal(h.tensor("loss"), torch.tensor(h.loss, dtype=torch.float64))
    path = h.to_csv(tmp_path / "h.csv")
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["iteration", "loss", "grad_norm", "lr", "time", "nfev"]
    assert len(rows) == 8 and float(rows[3][1]) == pytest.approx(h.loss[2])
    df = h.to_pandas()
    assert list(df.columns) == rows[0] and df["loss"].tolist() == h.loss


def test_result_fields_and_repr():
    res = descend.minimize(lambda x: (x**2).sum(), torch.ones(2), rule="adam", lr=0.1,
                           max_iter=5)
    assert (res.rule, res.step, res.nit, res.reason) == ("adam", "lr=0.1", 5, "max_iter")
    assert res.seconds > 0 and res.best_loss == min(res.history.loss)
    assert repr(res).startswith("Result(no success: max_iter, nit=5, loss=")
    with pytest.raises(AttributeError):
        res.loss = 0.0  # type: ignore[misc]


def test_a_schedule_gives_the_step_at_each_iteration():
    res = descend.minimize(lambda x: (x**2).sum(), torch.ones(1), rule="gd",
                           lr=lambda k: 0.1 / (k + 1), max_iter=4)
    assert res.history.lr[1:] == pytest.approx([0.1, 0.05, 0.1 / 3, 0.025])


def test_observers_see_every_row_and_printer_writes_the_notebook_lines(capsys):
    rows = []
    descend.minimize(lambda x: (x**2).sum(), torch.ones(1), rule="gd", lr=0.25, max_iter=3,
                     observers=[lambda s: rows.append((s.iteration, s.loss))], verbose=True)
    assert rows == [(0, 1.0), (1, 0.25), (2, 0.0625), (3, 0.015625)]
    out = capsys.readouterr().out
    assert out == ("1-th Loss: 2.5000e-01\ntensor([0.5000], requires_grad=True) \n\n"
                   "2-th Loss: 6.2500e-02\ntensor([0.2500], requires_grad=True) \n\n"
                   "3-th Loss: 1.5625e-02\ntensor([0.1250], requires_grad=True) \n\n")


def test_progress_writes_lines_when_not_a_terminal(capsys):
    descend.minimize(lambda x: (x**2).sum(), torch.ones(1), rule="gd", lr=0.25, max_iter=3,
                     progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("iteration 0  loss 1.0000e+00")
    assert err[-1].startswith("iteration 3  loss 1.5625e-02")


BAD = [
    (lambda: descend.minimize(lambda x: x * 2, torch.ones(3)),
     "fn must return a scalar loss, got a tensor of shape (3,); reduce it, e.g. with .mean() "
     "or .sum()"),
    (lambda: descend.minimize(lambda x: (x**2).sum(), torch.ones(3, dtype=torch.int64)),
     "x0 must be a floating-point tensor, got dtype torch.int64; convert it first, e.g. "
     "x0.float()"),
    (lambda: descend.minimize(lambda x: torch.tensor(1.0), torch.ones(3)),
     "the loss returned by fn does not depend on x (it has no gradient); compute it from the x "
     "that fn receives, without .detach(), .item() or numpy"),
    (lambda: descend.minimize(lambda x: (x**2).sum(), torch.ones(3), lr=0),
     "lr must be a finite number > 0, got 0"),
    (lambda: descend.minimize(lambda x: (x**2).sum(), torch.ones(3), lr=-1.0),
     "lr must be a finite number > 0, got -1.0"),
    (lambda: descend.minimize(lambda x: (x**2).sum(), torch.ones(3), lr=float("nan")),
     "lr must be a finite number > 0, got nan"),
    (lambda: descend.minimize(lambda x: (x**2).sum(), torch.ones(3),
                              stop=stops.LossBelow(-1.0)),
     "threshold must be a finite number >= 0, got -1.0"),
    (lambda: descend.minimize(lambda x: (x**2).sum(), torch.ones(3), rule="newton"),
     "unknown rule 'newton'; known rules: adagrad, adam, adamw, bfgs, gd, lbfgs, "
     "momentum, nesterov, rmsprop"),
    (lambda: descend.minimize(lambda x: (x**2).sum(), [1.0, 2.0]),
     "x0['0'] must be a torch.Tensor, got float; wrap it with torch.tensor(...)"),
    (lambda: descend.minimize(lambda x: (x**2).sum(), "abc"),
     "x0 must be a tensor, a tuple/list/dict of tensors or an nn.Module, got str"),
    (lambda: descend.minimize(lambda x: (x**2).sum(), torch.ones(0)),
     "x0 must have at least one element, got shape (0,)"),
    (lambda: descend.minimize(lambda x: "loss", torch.ones(3)),
     "fn must return a scalar torch.Tensor, got str; build the loss from x with torch "
     "operations"),
    (lambda: descend.minimize(lambda x: (x**2).sum(), torch.ones(3), max_iter=0),
     "max_iter must be a whole number >= 1, got 0"),
]


@pytest.mark.parametrize(("call", "msg"), BAD, ids=[m[:50] for _, m in BAD])
def test_misuse_raises_a_clear_error_naming_the_value(call, msg):
    with pytest.raises(InputError) as e:
        call()
    assert str(e.value) == msg


def test_without_autograds_engine_every_evaluation_takes_the_checked_path(monkeypatch):
    import descend.objective as objective

    target = torch.tensor([1.0, -2.0])
    f = lambda x: ((x - target) ** 2).sum()  # noqa: E731
    fast = descend.minimize(f, torch.zeros(2), rule="momentum", lr=0.1, max_iter=30)
    monkeypatch.setattr(objective, "_ENGINE", None)
    checked = descend.minimize(f, torch.zeros(2), rule="momentum", lr=0.1, max_iter=30)
    assert torch.equal(fast.x, checked.x)
    assert fast.history.loss == checked.history.loss


def _read_all(fd, quiet=0.5):
    """Everything a pty has buffered: a pty hands its output over in pieces, so one
    ``os.read`` may return only the first of them; read until ``quiet`` seconds pass
    with nothing more."""
    import os
    import select

    chunks = []
    while select.select([fd], [], [], quiet)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the slave end closed (Linux reports EIO)
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_progress_draws_a_live_bar_on_a_terminal():
    import fcntl
    import os
    import pty
    import struct
    import termios

    from descend.observers import Progress

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    with os.fdopen(slave, "w") as term:
        assert term.isatty()
        descend.minimize(lambda x: (x**2).sum(), torch.ones(1), rule="gd", lr=0.25, max_iter=3,
                         observers=[Progress(total=3, stream=term)])
        term.flush()
        drawn = _read_all(master)
    os.close(master)
    assert "\r" in drawn and "3/3" in drawn and "loss=1.5625e-02" in drawn
