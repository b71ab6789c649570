"""For learners: the two-parameter problems, --show-start, --step, and the contour data the
report draws (the loss around the path, the path projected on its plane)."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from cli_run import run

import descend
from descend import lessons, stops, store
from descend.errors import InputError
from descend.problems import notebook
from descend.report import _contour, _heat


@pytest.mark.parametrize("name", ["bowl", "bowl:100", "saddle", "linreg"])
def test_each_learner_problem_reaches_its_minimum_at_its_own_lr(name):
    p = lessons.get(name)
    stop = None if p.threshold is None else stops.LossBelow(p.threshold)
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=p.lr, stop=stop, max_iter=5000)
    assert res.success, res.message
    # loss <= 1e-5 puts x within sqrt(2e-5) = 0.0045 of the minimum on the bowl
    assert torch.allclose(res.x, p.target, atol=1e-2), (res.x, p.target)


def test_the_targets_are_minima_and_the_bowl_has_its_condition_number():
    for name in ("bowl", "bowl:100", "rosenbrock", "saddle", "linreg"):
        p = lessons.get(name)
        x = p.target.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(p.fn(x), x)
        assert g.abs().max() < 1e-4, (name, g)
    d = descend.diagnose(lessons.get("bowl:100").fn, torch.tensor([2.0, 1.0]))
    assert d.condition == pytest.approx(100, rel=1e-5)
    # linreg's target is the least-squares line (w, b) of its points, near y = 1.5 x + 0.5
    w, b = lessons.get("linreg").target.tolist()
    assert abs(w - 1.5) < 0.2 and abs(b - 0.5) < 0.3


def test_rosenbrock_at_its_lr_goes_down_the_valley_slowly():
    p = lessons.get("rosenbrock")
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=p.lr, stop=stops.LossBelow(1e-5),
                           max_iter=1000)
    assert res.reason == "max_iter" and res.loss < 0.1 * p.fn(p.x0).item()


def test_the_saddle_run_escapes_the_saddle():
    p = lessons.get("saddle")
    seen = []
    descend.minimize(p.fn, p.x0, rule="gd", lr=p.lr, stop=stops.LossBelow(1e-5),
                     observers=[lambda s: seen.append(s.values[0].clone())])
    near = min(range(len(seen)), key=lambda k: float(seen[k].norm()))
    assert float(seen[near].norm()) < 0.1 and seen[-1][1] > 0.99  # passed by (0, 0), then left


@pytest.mark.parametrize(("name", "line"), [
    ("nope", "unknown problem 'nope'; learner problems: bowl (or bowl:K), rosenbrock, saddle, "
             "linreg"),
    ("bowl:0.5", "bowl:K takes a condition number K >= 1, e.g. bowl:100; got '0.5'"),
    ("bowl:x", "bowl:K takes a condition number K >= 1, e.g. bowl:100; got 'x'"),
    ("saddle:3", "unknown problem 'saddle:3'; learner problems: bowl (or bowl:K), rosenbrock, "
                 "saddle, linreg"),
])
def test_unknown_problems_are_refused(name, line, capsys):
    with pytest.raises(InputError) as e:
        lessons.get(name)
    assert str(e.value) == line
    rc, out, err = run(["demo", "--problem", name], capsys)
    assert (rc, out, err) == (2, "", f"descend demo: error: {line}\n")


def test_demo_problem_prints_it_and_runs_x_only(capsys):
    rc, out, _ = run(["demo", "--problem", "bowl", "--quiet", "--no-record", "--explain"],
                     capsys)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("x: stopped after ") and lines[0].endswith("[loss_below]")
    assert "Why it stopped:" in out and "model:" not in out
    rc, out, _ = run(["demo", "--problem", "linreg", "--no-record", "--max-iters", "3"], capsys)
    assert out.startswith("problem linreg: a line y = w x + b fitted to 30 noisy points")
    assert "3-th Loss: " in out and "[max_iter]" in out


def test_show_start_prints_target_start_and_loss_then_the_notebook_lines(nb_loop, capsys):
    printed, _, _ = nb_loop(0)
    rc, plain, _ = run(["demo", "--no-record", "--model-iters", "5"], capsys)
    rc2, shown, _ = run(["demo", "--no-record", "--model-iters", "5", "--show-start"], capsys)
    assert rc == rc2 == 0 and plain.startswith(printed)
    p = notebook(0)
    start = (f"# target (the values x should reach):\n{p.target}\n"
             f"# x, the start, before the first step:\n{p.x0}\n"
             f"# loss before the first step: {F.mse_loss(p.x0, p.target).item():.4e}\n\n")
    assert shown == start + plain  # the notebook's lines follow, byte for byte


def test_step_waits_for_enter_after_each_iteration(monkeypatch, capsys):
    rc, plain, _ = run(["demo", "--no-record", "--model-iters", "5"], capsys)
    monkeypatch.setattr("sys.stdin", io.StringIO("\n\nq\n"))
    rc2, out, err = run(["demo", "--no-record", "--model-iters", "5", "--step"], capsys)
    assert rc == rc2 == 0 and out == plain
    prompts = err.count("Enter: the next step")
    assert prompts == 3 and err.startswith("[iteration 1] Enter: the next step, q then Enter: "
                                           "run to the end ")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no input at all: runs to the end
    rc3, out3, err3 = run(["demo", "--no-record", "--model-iters", "5", "--step"], capsys)
    assert rc3 == 0 and out3 == plain and err3.count("Enter: the next step") == 1


def test_contour_on_two_parameters_is_the_loss_over_the_parameters():
    p = lessons.get("rosenbrock")
    path = torch.stack([p.x0, torch.tensor([-1.0, 1.0]), torch.tensor([0.0, 0.2])])
    c = lessons.contour(p.fn, path, [2], p.target, grid=9)
    assert c["kind"] == "params" and torch.equal(c["dirs"], torch.eye(2))
    a, b = c["a"], c["b"]
    assert a[0] < -1.2 and a[-1] > 1.0 and b[0] < 0.2 and b[-1] > 1.0  # path and target framed
    for j in (0, 4, 8):
        for i in (0, 3, 8):
            want = p.fn(torch.tensor([a[i], b[j]])).item()
            assert c["loss"][j, i].item() == pytest.approx(want, rel=1e-5)


def test_contour_on_many_parameters_lies_in_the_plane_of_the_path_and_target():
    p = notebook(0)
    e0 = p.x0 - p.target
    path = torch.stack([(p.target + (1 - 2 / 9) ** k * e0).reshape(-1) for k in range(6)])
    c = lessons.contour(p.fn, path, [3, 3], p.target, grid=11)
    dirs, origin = c["dirs"].double(), c["origin"].double()
    assert c["kind"] == "path"
    assert torch.allclose(dirs @ dirs.T, torch.eye(2, dtype=torch.float64), atol=1e-6)
    # gd on the notebook moves along e0: the first direction, up to sign
    assert abs(float(dirs[0] @ e0.reshape(-1).double())) == pytest.approx(
        float(e0.norm()), rel=1e-4)
    # the loss at a grid point is fn at origin + a d1 + b d2
    i, j = 3, 7
    x = (origin + c["a"][i] * dirs[0] + c["b"][j] * dirs[1]).float().reshape(3, 3)
    assert c["loss"][j, i].item() == pytest.approx(p.fn(x).item(), rel=1e-4)


def test_the_recorded_run_carries_the_contour_and_the_report_projects_the_path(tmp_path, capsys):
    root = tmp_path / "runs"
    assert run(["demo", "--quiet", "--runs", root, "--model-iters", "5"], capsys)[0] == 0
    x_run = store.open_run(root, store.list_runs(root)[0]["id"])
    data, heat = _contour(x_run), _heat(x_run)
    assert data is not None and heat is not None
    assert data["iterations"] == heat["iterations"]  # one slider index, one iterate
    assert len(data["z"]) == len(data["b"]) == lessons.GRID and len(data["z"][0]) == len(data["a"])
    # the last iterate is the plane's origin: projected to (0, 0)
    assert data["path"][-1] == [0.0, 0.0]
    # the start lies inside the drawn grid, and the distance along the path matches x's
    u, v = data["path"][0]
    assert data["a"][0] < u < data["a"][-1] and data["b"][0] < v < data["b"][-1]
    snap = x_run.snapshots()
    moved = float((snap["values"][0] - snap["values"][-1]).norm())
    assert math.hypot(u, v) == pytest.approx(moved, rel=1e-3)
    model_run = store.open_run(root, store.list_runs(root)[1]["id"])
    assert _contour(model_run) is None  # nn.Linear's run: no loss grid recorded
