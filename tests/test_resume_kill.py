"""The kill test of issue 11: ``descend fit`` SIGKILLed at seeded random moments (during a
step, inside a checkpoint write, between its renames, while the run record is written, while
``--overwrite`` replaces ``--out``) and resumed each time ends bitwise where the uninterrupted
run ends; so do ``minimize`` with adam and with L-BFGS (rule state included). SIGINT exits 130
with reason ``interrupted`` and a resumable checkpoint; SIGTERM 143; a second Ctrl-C at once.

The kills are real (``SIGKILL``, no handler runs): tests/kill_driver.py imports descend once and
runs every attempt in a forked child; this module runs the driver once and reads its summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).with_name("kill_driver.py")


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("kills")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(DRIVER.parent.parent),
                                          os.environ.get("PYTHONPATH", "")])}
    env.pop("DESCEND_RUNS", None)
    proc = subprocess.run([sys.executable, str(DRIVER), str(work), "11"], env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_fit_killed_ten_times_ends_bitwise_equal(summary):
    fit = summary["fit"]
    assert (fit["old"], fit["base"], fit["final"]) == ("0", "0", "0")
    kinds = [t["kill"][0] for t in fit["trail"]]
    assert len(kinds) == 10 and {"step", "time", "ckpt-fsync", "ckpt-rename", "out",
                                 "record"} <= set(kinds)
    assert [t["status"] for t in fit["trail"]] == ["SIGKILL"] * 10  # each kill happened
    assert all(t["runs"] == 0 for t in fit["trail"])  # no half-written run ever visible
    assert fit["trail"][-1]["checkpoint"] == 1500  # the loop had finished: only the end redone
    assert fit["equal"]  # the final --out weights, torch.equal to the uninterrupted run
    assert fit["runs"] == [[fit["rid"], "max_epochs", 1500]]  # the one record, completed
    assert fit["leftovers"] == []


@pytest.mark.parametrize("rule", ["adam", "lbfgs"])
def test_minimize_killed_and_resumed_ends_bitwise_equal(summary, rule):
    got = summary[rule]
    assert got["trail"] == ["SIGKILL"] * 5
    assert got["final"] == "0"
    assert got["equal"]
    assert got["nit"][0] == got["nit"][1] and got["reason"][0] == got["reason"][1]


def test_sigint_exits_130_records_interrupted_and_resumes(summary):
    fit = summary["fit"]
    assert fit["sigint"] == "130"
    rec = fit["sigint_record"]
    assert (rec["reason"], rec["success"], rec["nit"]) == ("interrupted", False, 99)
    assert rec["message"].startswith("interrupted by SIGINT after iteration 99 (loss ")
    assert rec["message"].endswith("; resume with `descend resume "
                                   + rec["message"].rsplit(" ", 1)[-1])
    assert fit["sigint_model"]  # --out saved with the weights so far
    assert fit["sigint_resume"] == "0" and fit["sigint_equal"]
    assert fit["sigint_final"] == "max_epochs"  # the same record, completed by the resume


def test_sigterm_exits_143_and_a_second_ctrl_c_exits_at_once(summary):
    fit = summary["fit"]
    assert (fit["sigterm"], fit["sigterm_reason"]) == ("143", "interrupted")
    assert fit["sigint2"] == "130"
    assert not fit["sigint2_record"]  # no record: it stopped at once
    assert fit["sigint2_checkpoint"] == 40  # the last whole checkpoint is there
