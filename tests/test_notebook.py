"""The notebook, exactly: descend's gd and `descend demo` against the seed's own loop."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import descend
from descend import stops
from descend.cli import main
from descend.problems import notebook


@pytest.mark.parametrize("seed", [0, 1, 2, 7, 42])
def test_gd_iterates_identical_to_the_notebook_loop(seed, nb_loop):
    _, iterates, losses = nb_loop(seed)
    p = notebook(seed)
    seen = []
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=1.0, stop=stops.LossBelow(1e-5),
                           observers=[lambda s: seen.append(s.values[0].clone())])
    assert res.nit == len(iterates)
    assert res.reason == "loss_below" and res.success
    # row 0 is the start; then one iterate per update, bit for bit
    assert len(seen) == len(iterates) + 1
    for k, (ours, theirs) in enumerate(zip(seen[1:], iterates), start=1):
        assert torch.equal(ours, theirs), f"iterate {k} differs"
    assert res.history.loss[1:] == losses
    assert torch.equal(res.x, iterates[-1])


@pytest.mark.parametrize("seed", [0, 3, 5])
def test_demo_prints_the_notebook_lines_exactly(seed, nb_loop, capsys):
    printed, iterates, _ = nb_loop(seed)
    assert main(["demo", "--seed", str(seed)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(printed)
    after = out[len(printed):].splitlines()
    assert after[0] == (f"x: stopped after {len(iterates)} iterations, loss "
                        f"{F_last(iterates):.4e} is at or below the threshold 1e-05 [loss_below]")


def F_last(iterates):
    target = torch.tensor([[.1, .2, .3], [.4, .5, .6], [.7, .8, .9]])
    return torch.nn.functional.mse_loss(iterates[-1], target).item()


def test_demo_quiet_prints_only_summaries(capsys):
    assert main(["demo", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("x: stopped after ")
    assert lines[1].startswith("model: stopped after 1000 iterations, reached the iteration cap")
    assert not any("-th Loss" in line for line in lines)


def test_demo_second_half_loss_falls_and_reports_reason(capsys):
    assert main(["demo", "--model-iters", "300"]) == 0
    out = capsys.readouterr().out
    model_part = out.split("nn.Linear(5, 3)")[1]
    losses = [float(line.split(": ")[1]) for line in model_part.splitlines()
              if "-th Loss" in line]
    assert len(losses) == 10
    assert all(b < a for a, b in itertools.pairwise(losses))
    assert "[max_iter]" in model_part


def test_lr_4_5_converges_in_one_step():
    p = notebook(0)
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=4.5, stop=stops.LossBelow(1e-5))
    assert (res.nit, res.reason, res.success) == (1, "loss_below", True)
    assert torch.allclose(res.x, p.target, atol=1e-6)


def test_lr_9_oscillates_forever_and_ends_unsuccessful():
    p = notebook(0)
    e0 = p.x0 - p.target
    seen = []
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=9.0, stop=stops.LossBelow(1e-5),
                           max_iter=100, observers=[lambda s: seen.append(s.values[0].clone())])
    assert (res.reason, res.success, res.nit) == ("max_iter", False, 100)
    for k, xk in enumerate(seen):
        assert torch.allclose(xk - p.target, (-1) ** k * e0, atol=1e-5)  # the error flips sign
    loss0 = res.history.loss[0]
    assert all(math.isclose(v, loss0, rel_tol=1e-4) for v in res.history.loss)


def test_lr_9_ends_on_no_progress_when_asked():
    p = notebook(0)
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=9.0,
                           stop=[stops.LossBelow(1e-5), stops.NoImprovement(10, rtol=1e-3)])
    assert (res.reason, res.success, res.nit) == ("no_improvement", False, 10)


def test_lr_10_diverges_early_with_a_finite_best_x_equal_to_the_start():
    p = notebook(0)
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=10.0, stop=stops.LossBelow(1e-5))
    assert res.reason == "diverged" and not res.success
    assert res.nit <= 50
    assert all(math.isfinite(v) for v in res.history.loss)
    assert torch.equal(res.best_x, p.x0)
    assert res.best_loss == res.history.loss[0]
    # loss grows by (1 - 20/9)^2 per step: the guard fires at the first k with growth > 1e4
    growth = (1 - 20 / 9) ** 2
    assert res.nit == math.floor(math.log(1e4) / math.log(growth)) + 1
