"""The fast command line: commands that need no tensors import no torch; runs list's --json,
--filter, --sort and --limit; unique id prefixes; shell completion."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from descend import store
from descend.cli import main

ROOT = str(Path(__file__).resolve().parent.parent)
RUNS = [  # id, rule, reason, loss, nit, problem
    ("20260101-000000-aaaa", "gd", "converged", 0.5, 10, "quadratic"),
    ("20260102-000000-aabb", "lbfgs", "converged", 1e-9, 3, "rosenbrock"),
    ("20260103-000000-bbbb", "gd", "diverged", math.inf, 7, "quadratic"),
    ("20260104-000000-cccc", "adam", "max_iter", 0.25, 100, "rosenbrock"),
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for k, (rid, rule, reason, loss, nit, problem) in enumerate(RUNS):
        store.record_run(
            tmp_path / "runs", run_id=rid,
            config={"kind": "minimize", "problem": problem, "rule": rule, "lr": 0.1 * (k + 1)},
            history_columns={"iteration": [0, 1, 2], "loss": [2.0, 1.0, loss],
                             "grad_norm": [1.0, 0.5, 0.25]},
            result_summary={"loss": loss, "nit": nit, "reason": reason,
                            "success": reason == "converged", "rule": rule, "step": "lr=0.1"},
            env={"created": f"2026-01-0{k + 1}T00:00:00.000000Z"})
    return tmp_path / "runs"


def _ids(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines()[1:]]


# ---------------------------------------------------------------------------- no torch

NO_TENSORS = [
    ["--help"], ["--version"], ["runs", "--help"], ["runs", "list"], ["runs", "list", "--json"],
    ["runs", "show", "20260102"], ["runs", "compare", "20260101", "20260104"],
    ["runs", "rm", "20260103"], ["runs", "export", "20260104", "--csv", "{tmp}/csv"],
    ["completion", "bash"], ["completion", "zsh"], ["completion", "fish"],
    *[[cmd, "--help"] for cmd in ("demo", "report", "plot", "diagnose", "fit", "predict",
                                  "evaluate", "completion")],
    *[["runs", act, "--help"] for act in ("list", "show", "compare", "rm", "export")],
]


@pytest.mark.parametrize("argv", NO_TENSORS, ids=" ".join)
def test_commands_that_need_no_tensors_do_not_import_torch(root: Path, argv: list[str]) -> None:
    argv = [a.format(tmp=root.parent) for a in argv]
    if argv[0] == "runs" and "--help" not in argv:
        argv = [*argv, "--runs", str(root)]
    code = ("import sys, descend.cli; rc = descend.cli.main(sys.argv[1:]); "
            "print('torch imported:', 'torch' in sys.modules, rc)")
    p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                       timeout=120, cwd=root.parent, env={"PYTHONPATH": ROOT, "PATH": ""})
    assert p.stderr == ""
    assert p.stdout.splitlines()[-1] == "torch imported: False 0"


def test_the_console_entry_point_imports_no_torch_for_help() -> None:
    code = "import sys, descend.cli; sys.argv = ['descend', '--help']; descend.cli.main()"
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                       text=True, timeout=120, env={"PYTHONPATH": ROOT, "PATH": ""})
    assert p.returncode == 0 and "usage: descend" in p.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines()}
    assert "descend.cli" in imported and "torch" not in imported


# ---------------------------------------------------------------------------- runs list


def test_runs_list_json_gives_the_summary_fields(root: Path, capsys) -> None:
    assert main(["runs", "list", "--json", "--runs", str(root)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [r[0] for r in RUNS]
    assert set(rows[0]) == {"id", "created", "problem", "rule", "step", "nit", "loss", "reason",
                            "success", "label"}
    assert rows[1]["loss"] == 1e-9 and rows[1]["success"] is True and rows[3]["nit"] == 100
    assert rows[2]["loss"] is None  # strict JSON: an infinite loss is null


@pytest.mark.parametrize(("flags", "ids"), [
    (["--filter", "reason=converged"], [0, 1]),
    (["--filter", "rule=gd"], [0, 2]),
    (["--filter", "rule=gd", "--filter", "reason=converged"], [0]),
    (["--filter", "success=false"], [2, 3]),
    (["--filter", "nit=3"], [1]),
    (["--filter", "loss=0.25"], [3]),
    (["--filter", "problem=nope"], []),
    (["--sort", "loss"], [1, 3, 0, 2]),
    (["--sort", "-loss"], [2, 0, 3, 1]),  # an infinite loss is a number: first, descending
    (["--sort=-nit"], [3, 0, 2, 1]),
    (["--sort", "-nit", "--limit", "2"], [3, 0]),
    (["--limit", "0"], []),
    (["--filter", "problem=rosenbrock", "--sort", "nit", "--limit", "1"], [1]),
])
def test_runs_list_filters_sorts_and_limits(root: Path, capsys, flags: list[str],
                                            ids: list[int]) -> None:
    assert main(["runs", "list", "--runs", str(root), *flags]) == 0
    out = capsys.readouterr().out
    assert (_ids(out) if ids else []) == [RUNS[i][0] for i in ids]
    assert main(["runs", "list", "--json", "--runs", str(root), *flags]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [RUNS[i][0] for i in ids]


KEYS = "id, created, problem, rule, step, nit, loss, reason, success, label"


@pytest.mark.parametrize(("flags", "err"), [
    (["--filter", "colour=red"], f"argument --filter: unknown key 'colour'; keys: {KEYS}"),
    (["--filter", "reason"], "argument --filter: expected KEY=VALUE, e.g. reason=converged, "
                             "got 'reason'"),
    (["--filter", "nit=many"], "argument --filter: nit takes a whole number, got 'many'"),
    (["--filter", "success=maybe"], "argument --filter: success takes true or false, got "
                                    "'maybe'"),
    (["--sort", "-colour"], f"argument --sort: unknown key 'colour'; keys: {KEYS} (prefix - "
                            "for descending)"),
    (["--limit", "-1"], "argument --limit: invalid count '-1': give a whole number >= 0"),
])
def test_runs_list_bad_flags_are_one_line_exit_2(root: Path, capsys, flags: list[str],
                                                 err: str) -> None:
    assert main(["runs", "list", "--runs", str(root), *flags]) == 2
    out, got = capsys.readouterr()
    assert got == f"descend runs list: error: {err}\n" and out == ""


# ---------------------------------------------------------------------------- id prefixes


def test_a_unique_prefix_is_a_run_id_everywhere(root: Path, tmp_path: Path, capsys) -> None:
    r = ["--runs", str(root)]
    assert main(["runs", "show", "20260102", *r]) == 0
    assert capsys.readouterr().out.startswith(f"run {RUNS[1][0]}  ")
    assert main(["runs", "compare", "20260101", "20260104", *r]) == 0
    assert capsys.readouterr().out.split("\n")[0].split() == [RUNS[0][0], RUNS[3][0]]
    assert main(["report", "20260103", "-o", str(tmp_path / "r.html"), *r]) == 0
    assert (tmp_path / "r.html").is_file()
    assert main(["runs", "export", "20260104", "--csv", str(tmp_path / "csv"), *r]) == 0
    assert [p.name for p in (tmp_path / "csv").iterdir()] == [f"{RUNS[3][0]}.csv"]
    capsys.readouterr()
    assert main(["runs", "rm", "20260103-", *r]) == 0
    assert capsys.readouterr().out == f"removed {RUNS[2][0]}\n"
    assert [row["id"] for row in store.list_runs(root)] == [RUNS[i][0] for i in (0, 1, 3)]


@pytest.mark.parametrize("argv", [["runs", "show"], ["runs", "rm"], ["runs", "compare"],
                                  ["report"], ["plot"], ["runs", "export", "--csv", "out"]])
def test_an_ambiguous_prefix_lists_the_candidates(root: Path, capsys, argv: list[str]) -> None:
    n = 2 if argv[0] == "runs" else 1
    assert main([*argv[:n], "2026010", *argv[n:], "--runs", str(root)]) == 2
    out, err = capsys.readouterr()
    assert err == (f"descend {argv[0]}: error: run id prefix '2026010' is ambiguous: it matches "
                   f"4 runs in {root}: {', '.join(r[0] for r in RUNS)}; give more of the id\n")
    assert out == ""
    assert len(store.list_runs(root)) == 4  # rm removed nothing
    assert not (root.parent / "out").exists()


def test_rm_checks_every_id_before_removing_any(root: Path, capsys) -> None:
    assert main(["runs", "rm", RUNS[0][0], "20260104", "nope", "--runs", str(root)]) == 2
    assert capsys.readouterr().err == (f"descend runs: error: no run 'nope' in {root} "
                                       f"(`descend runs list --runs {root}` shows the ids)\n")
    assert len(store.list_runs(root)) == 4


# ---------------------------------------------------------------------------- completion


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_know_every_command_and_option(shell: str, capsys) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    for word in ("demo", "runs", "export", "completion", "--filter", "--sort", "--overwrite",
                 "--model-lr"):
        assert (word if shell != "fish" or word[0] != "-" else f"-l {word[2:]}") in script, word
    if shell == "bash":
        assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    elif shutil.which(shell):
        assert subprocess.run([shell, "-n"], input=script, text=True).returncode == 0


def test_completion_of_an_unknown_shell_is_one_line(capsys) -> None:
    assert main(["completion", "tcsh"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
