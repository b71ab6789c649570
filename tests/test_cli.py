"""The command line: exit codes and one-line errors, in-process via main(argv) and as a process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from descend.cli import main

BAD = [
    (["demo", "--lr", "-1"], "descend demo: error: lr must be a finite number > 0, got -1.0"),
    (["demo", "--lr", "0"], "descend demo: error: lr must be a finite number > 0, got 0.0"),
    (["demo", "--lr", "nan"], "descend demo: error: lr must be a finite number > 0, got nan"),
    (["demo", "--threshold=-1e-5"],
     "descend demo: error: threshold must be a finite number >= 0, got -1e-05"),
    (["demo", "--rule", "sgdd"],
     "descend demo: error: unknown rule 'sgdd'; known rules: adagrad, adam, adamw, bfgs, "
     "gd, lbfgs, momentum, nesterov, rmsprop"),
    (["demo", "--max-iters", "0"],
     "descend demo: error: max_iter must be a whole number >= 1, got 0"),
    (["demo", "--model-lr", "-0.1"],
     "descend demo: error: lr must be a finite number > 0, got -0.1"),
    (["demo", "--lr", "abc"], "descend demo: error: argument --lr: invalid lr 'abc': give a "
     "number > 0 or one of auto, armijo, wolfe, polyak, bb, adaptive"),
    (["demo", "--nope"], "descend: error: unrecognized arguments: --nope"),
    (["frobnicate"], "descend: error: argument COMMAND: invalid choice: 'frobnicate' (choose "
     "from 'demo', 'runs', 'report', 'plot', 'diagnose', 'fit', 'resume', 'predict', "
     "'evaluate', 'completion')"),
    ([], "descend: error: the following arguments are required: COMMAND"),
]


@pytest.mark.parametrize(("argv", "line"), BAD, ids=[" ".join(a) or "none" for a, _ in BAD])
def test_bad_input_is_one_line_on_stderr_with_status_2(argv, line, capsys):
    assert main(argv) == 2
    cap = capsys.readouterr()
    assert cap.err == line + "\n"
    assert cap.out == ""


def test_a_real_process_prints_no_traceback():
    p = subprocess.run([sys.executable, "-m", "descend", "demo", "--rule", "sgdd"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert p.stdout == ""


def test_version(capsys):
    assert main(["--version"]) == 0
    import descend

    assert capsys.readouterr().out == f"descend {descend.__version__}\n"


def test_lr_takes_a_strategy_name(capsys):
    assert main(["demo", "--lr", "auto", "--model-lr", "auto", "--quiet", "--no-record"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("x: stopped after 1 iterations, ")  # auto finds lr = 1/L = 4.5
    # the noise floor (~1e-4) lies above the threshold: auto converges to working precision
    assert lines[1].startswith("model: stopped after ") and "[roundoff]" in lines[1]
    assert lines[1].endswith("max |W - W_true| = 0.001")


def test_an_unknown_lr_name_lists_the_known_ones(capsys):
    assert main(["demo", "--lr", "fast"]) == 2
    assert capsys.readouterr().err == (
        "descend demo: error: argument --lr: invalid lr 'fast': give a number > 0 or one of "
        "auto, armijo, wolfe, polyak, bb, adaptive\n")
