"""Result.explain() and descend demo --explain: the numbers in the words, for the notebook at
lr = 1 (converges in 19), 4.5 (one step), 9 (oscillates) and 10 (diverges)."""

from __future__ import annotations

import math

import pytest
import torch

import descend
from descend import problems, stops
from descend.cli import main
from descend.diagnose import Diagnosis
from descend.history import History
from descend.result import Result


def run_notebook(lr: float, seed: int = 0, rule: str = "gd", max_iter: int = 1000) -> Result:
    p = problems.notebook(seed)
    return descend.minimize(p.fn, p.x0, rule=rule, lr=lr, stop=stops.LossBelow(1e-5),
                            max_iter=max_iter)


def test_lr_1_explains_the_19_iterations_line_by_line():
    res = run_notebook(1.0)
    assert res.nit == 19
    lines = res.explain().splitlines()
    assert lines == [
        "Why it stopped: loss 7.0060e-06 is at or below the threshold 1e-05 [loss_below], "
        "after 19 iterations and 20 evaluations; a success.",
        "Observed rate: the loss changed by a factor 0.6049 per iteration (median of "
        "loss_(k+1) / loss_k).",
        "Local estimates at the start (quadratic model from 1 Hessian-vector product): top "
        "curvature L = 0.2222, bottom curvature mu = 0.2222, condition number 1; fixed steps "
        "are stable for 0 < lr < 2/L = 9.",
        "At lr = 1 the model predicts an error contraction of 0.7778 per step, a loss factor of "
        "0.6049 (observed 0.6049), and 19 iterations to the threshold 1e-05 (observed: 19 "
        "iterations).",
        "Faster: lr = 4.5 (= 1/L = 2/(L + mu): one step solves the model) would need 1 "
        "iteration to the threshold 1e-05 (predicted).",
        "lr >= 2/L = 9 does not converge: at 2/L the error oscillates, above it the loss grows.",
        "All curvature figures are local estimates at the start; exact for a quadratic such as "
        "the notebook's.",
    ]


@pytest.mark.parametrize(
    ("lr", "reason", "nit", "fragments"),
    [
        (4.5, "loss_below", 1, [
            "and 1 iteration to the threshold 1e-05 (observed: 1 iteration).",
            "Faster: nothing; lr = 4.5 (= 1/L = 2/(L + mu): one step solves the model) is "
            "already the fastest fixed step on this model.",
            "stable for 0 < lr < 2/L = 9.",
        ]),
        (9.0, "max_iter", 1000, [
            "[max_iter], after 1000 iterations",
            "Observed rate: the loss changed by a factor 1 per iteration",
            "lr = 9 sits on the bound 2/L = 9: the error flips sign each step without "
            "shrinking (contraction 1), so the loss stays where it is (predicted factor 1; "
            "observed 1); it never reaches a lower threshold.",
            "Faster: lr = 4.5 (= 1/L = 2/(L + mu): one step solves the model) would need 1 "
            "iteration to the threshold 1e-05 (predicted).",
        ]),
        (10.0, "diverged", 23, [
            "[diverged], after 23 iterations",
            "lr = 10 is above the divergence bound 2/L = 9: each step multiplies the error "
            "along the top curvature by |1 - lr L| = 1.222 and the loss by 1.494 (predicted; "
            "observed 1.494), so the run diverges.",
            "Faster: lr = 4.5 (= 1/L = 2/(L + mu): one step solves the model) would need 1 "
            "iteration to the threshold 1e-05 (predicted).",
            "lr >= 2/L = 9 does not converge",
        ]),
    ],
)
def test_other_steps_explained_with_their_numbers(lr, reason, nit, fragments):
    res = run_notebook(lr)
    assert (res.reason, res.nit) == (reason, nit)
    text = res.explain()
    for f in fragments:
        assert f in text


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_predicted_count_in_the_explanation_matches_the_run(seed):
    res = run_notebook(1.0, seed)
    d = res.diagnose()
    assert isinstance(d, Diagnosis)
    assert (d.lr, d.threshold) == (1.0, 1e-5)
    assert abs(d.iterations - res.nit) <= 1
    assert f"and {int(d.iterations)} iterations to the threshold 1e-05 (observed: {res.nit} " \
           f"iterations)." in res.explain()
    # the observed rate is the predicted loss factor (7/9)^2 = 0.6049
    assert res.rate() == pytest.approx((7 / 9) ** 2, rel=1e-3)


def test_other_rules_are_told_the_prediction_is_for_gd():
    text = run_notebook(1.0, rule="momentum").explain()
    assert "The predictions below are for plain gradient descent (rule 'gd'); this run used " \
           "'momentum', whose rate differs." in text


def test_a_schedule_gets_no_own_prediction_but_the_faster_step():
    p = problems.notebook(0)
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=lambda k: 1.0, stop=stops.LossBelow(1e-5))
    text = res.explain()
    assert "The step was not a fixed lr (schedule <lambda>), so there is no prediction" in text
    assert "Faster: lr = 4.5" in text


def test_a_nonconvex_start_predicts_no_count():
    p = problems.mlp_regression()
    res = descend.minimize(p.fn, p.x0, rule="gd", lr=0.5, max_iter=5)
    text = res.explain()
    assert "The model is not convex at the start (mu <= 0), so it predicts no iteration count" \
        in text
    assert "lr = 0.5 is below 2/L = 0.741: stable along the positive curvature" in text
    assert "Faster" not in text


def test_explain_leaves_the_result_alone_and_the_field_stays_out_of_repr_and_eq():
    res = run_notebook(1.0)
    x = res.x.clone()
    res.explain()
    assert torch.equal(res.x, x)
    assert "diagnose" not in repr(res)
    twin = Result(**{f: getattr(res, f) for f in res.__dataclass_fields__ if f != "diagnose"})
    assert twin == res and twin.diagnose is None


def test_a_hand_made_result_explains_without_a_diagnosis():
    h = History()
    h.append(0, 1.0, 1.0, math.nan, 0.0, 1)
    h.append(1, 0.5, 1.0, 1.0, 0.0, 2)
    res = Result(x=None, loss=0.5, best_x=None, best_loss=0.5, nit=1, nfev=2,
                 reason="max_iter", message="reached the iteration cap of 1 iterations",
                 success=False, history=h, seconds=0.0)
    assert res.explain().splitlines() == [
        "Why it stopped: reached the iteration cap of 1 iterations [max_iter], after 1 "
        "iteration and 2 evaluations; not a success.",
        "Observed rate: the loss changed by a factor 0.5 per iteration (median of "
        "loss_(k+1) / loss_k).",
        "No diagnosis: this result was not made by descend.minimize.",
    ]


@pytest.mark.parametrize(("lr", "fragment"), [
    ("1", "and 19 iterations to the threshold 1e-05 (observed: 19 iterations)."),
    ("10", "lr = 10 is above the divergence bound 2/L = 9"),
])
def test_demo_explain_prints_the_explanation_after_the_run(lr, fragment, capsys):
    assert main(["demo", "--quiet", "--explain", "--lr", lr, "--model-iters", "1"]) == 0
    out = capsys.readouterr().out
    x_line = next(i for i, line in enumerate(out.splitlines()) if line.startswith("x: stopped"))
    assert out.splitlines()[x_line + 2].startswith("Why it stopped:")
    assert fragment in out
    assert out.index("Why it stopped:") < out.index("model: stopped")


def test_demo_without_explain_prints_no_explanation(capsys):
    assert main(["demo", "--quiet", "--model-iters", "1"]) == 0
    assert "Why it stopped" not in capsys.readouterr().out


def test_diagnose_command_on_the_notebook(capsys):
    assert main(["diagnose", "--lr", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "problem notebook, 9 parameters, at its start x0"
    assert out[1].startswith("Diagnosis (local estimates at x0")
    assert "  predicted gd iterations to loss <= 1e-05 (assuming f* = 0): 19 at lr = 1, 1 at " \
           "the fastest lr" in out


def test_diagnose_command_on_a_named_problem_uses_its_threshold(capsys):
    assert main(["diagnose", "quadratic_k1e2", "--lr", "1"]) == 0
    out = capsys.readouterr().out
    assert "problem quadratic_k1e2, 100 parameters" in out
    assert "condition number ~ 100\n" in out
    assert ": 688 at lr = 1, 346 at the fastest lr" in out


@pytest.mark.parametrize(("argv", "line"), [
    (["diagnose", "nope"], "descend diagnose: error: unknown problem 'nope'; known problems: "
     "notebook, quadratic_k1, quadratic_k1e2, quadratic_k1e4, rosenbrock_2, rosenbrock_100, "
     "diabetes_lstsq, breast_cancer_logistic, mlp_regression"),
    (["diagnose", "--lr", "-1"], "descend diagnose: error: lr must be a finite number > 0, "
     "got -1.0"),
    (["diagnose", "--max-hvps", "0"], "descend diagnose: error: max_iter must be a whole "
     "number >= 1, got 0"),
])
def test_diagnose_command_bad_input_is_one_line(argv, line, capsys):
    assert main(argv) == 2
    cap = capsys.readouterr()
    assert cap.err == line + "\n" and cap.out == ""


def test_the_demo_records_the_diagnosis_for_the_report(tmp_path, capsys):
    from descend.store import list_runs, open_run

    assert main(["demo", "--quiet", "--runs", str(tmp_path)]) == 0
    capsys.readouterr()
    notebook_run = next(r for r in list_runs(tmp_path) if r["problem"] == "notebook")
    d = open_run(tmp_path, notebook_run["id"]).diagnostics
    assert d["stable steps 0 < lr < 2/L (local estimate)"] == "9"
    assert d["one-step lr 1/L (local estimate)"] == "4.5"
    assert d["predicted iterations to 1e-05 at lr=1 (local estimate)"] == "19"
