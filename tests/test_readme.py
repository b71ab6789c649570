"""Every code block of the README runs, so the README stays true.

* ``python`` blocks run in order, in one namespace, in a temporary folder, after the fixtures
  below define what the README leaves to the reader (``f``, ``x0``, ``X``, ``Y``, ``X_new``,
  ``tdata``, ``ydata``, ``sig``, ``steps``, a ``data.csv`` with a ``label`` column).
* Command blocks: every ``descend ...`` line runs in-process (``descend.cli.main``) in a folder
  holding ``data.csv``, ``new.csv``, ``test.csv`` and ``labelled.csv``, and must exit 0. A line
  with placeholders (``RUN``, ``ID``, ``DIR``, ...) is a synopsis: its command's ``--help`` must
  work. A shell redirection (``> file``) or pipe is dropped and the command's output checked
  non-empty. A block that starts with ``$ descend ...`` is a transcript: the command's output
  must contain its lines (``...`` stands for any text).
* ``.venv/bin/python benchmarks/X.py`` lines name scripts that must exist. ``make demo`` and
  ``make test`` are what CI itself runs, so they are not run again from inside the suite.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import descend
from descend.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PLACEHOLDER = re.compile(r"\b(RUN|ID|DIR|FILE|TEXT|COLS?|SPEC|NAME|LRS|RULES|SHELL)\b|\[")


def _blocks() -> list[tuple[str, int, list[str]]]:
    """(language, first line number, lines) of every fenced block."""
    out: list[tuple[str, int, list[str]]] = []
    current: tuple[str, int, list[str]] | None = None
    for n, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            if current is None:
                current = (line[3:].strip(), n + 1, [])
            else:
                out.append(current)
                current = None
        elif current is not None:
            current[2].append(line)
    assert current is None, "an unclosed code block in the README"
    return out


BLOCKS = _blocks()
PYTHON = [b for b in BLOCKS if b[0] == "python"]
COMMANDS = [b for b in BLOCKS if b[0] in ("", "bash", "sh", "console")]


def test_the_readme_has_code_blocks_of_every_kind():
    assert len(PYTHON) >= 5 and len(COMMANDS) >= 10
    assert {lang for lang, _, _ in BLOCKS} <= {"python", "", "bash", "text"}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DESCEND_RUNS", str(tmp_path / "runs"))
    g = np.random.default_rng(0)
    n = 120
    x1, x2 = g.normal(size=n), g.normal(size=n)
    frame = pd.DataFrame({"x1": x1, "x2": x2, "y": 2 * x1 - x2 + 0.1 * g.normal(size=n)})
    frame["price"] = 3 * x1 + x2 + 0.1 * g.normal(size=n)
    frame["label"] = (x1 + x2 > 0).astype(int)  # class labels 0/1
    frame.to_csv(tmp_path / "data.csv", index=False)
    for name in ("new.csv", "test.csv", "labelled.csv"):
        frame.iloc[:30].to_csv(tmp_path / name, index=False)
    return tmp_path


def _fixtures() -> dict:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(256, 5, generator=g)
    Y = X @ torch.randn(5, 3, generator=g) + 0.01 * torch.randn(256, 3, generator=g)
    tdata = torch.linspace(0, 4, 50, dtype=torch.float64)
    ydata = 2.5 * torch.exp(-1.3 * tdata) + 0.5 + 0.01 * torch.randn(50, generator=g,
                                                                        dtype=torch.float64)
    return {
        "descend": descend, "torch": torch, "steps": descend.steps, "stops": descend.stops,
        "f": lambda x: ((x - 1) ** 2).sum() + (x[0] - x[1]) ** 2,
        "x0": torch.zeros(4, dtype=torch.float64),
        "X": X, "Y": Y, "X_new": X[:5],
        "tdata": tdata, "ydata": ydata, "sig": torch.full((50,), 0.01, dtype=torch.float64),
    }


def test_every_python_block_runs_in_order(workdir):
    import matplotlib

    matplotlib.use("Agg")  # the test's choice: History.plot() never switches the backend itself
    scope = _fixtures()
    for _, line, body in PYTHON:
        source = "\n".join(body)
        try:
            exec(compile(source, f"README.md:{line}", "exec"), scope)
        except Exception as e:  # name the block that failed
            raise AssertionError(f"README.md block at line {line}: {type(e).__name__}: {e}") \
                from e


def _run(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # --help
            rc = int(e.code or 0)
    return rc, out.getvalue() + err.getvalue()


def _command_lines() -> list[tuple[int, str]]:
    lines = []
    for _, start, body in COMMANDS:
        if body and body[0].startswith("$ "):
            continue  # transcripts: test_transcripts
        for k, text in enumerate(body):
            command = text.split("  #", 1)[0].split(" # ", 1)[0].strip()
            if command.startswith("descend "):
                lines.append((start + k, command))
    return lines


@pytest.mark.parametrize(("line", "command"), _command_lines(),
                         ids=[f"line{n}" for n, _ in _command_lines()])
def test_every_command_line_runs(workdir, line, command):
    if PLACEHOLDER.search(command.replace("--runs DIR", "")):  # a synopsis
        words = command.split()
        sub = [w for w in words[1:3] if w.isalpha() and w.islower()]
        rc, out = _run([*sub, "--help"])
        assert rc == 0 and "usage: descend" in out, (line, out)
        return
    piped = "|" in command or ">" in command
    argv = shlex.split(re.split(r"\s[|>]\s?", command)[0])[1:]
    if argv[:1] in (["predict"], ["evaluate"]):  # they need the model that fit saves first
        _run(["fit", "data.csv", "--target", "y", "--features", "x1,x2", "--model", "linear",
              "--out", argv[1], "--quiet"])
    if argv[:2] == ["runs", "list"]:
        _run(["demo", "--quiet", "--model-iters", "1"])  # something to list
    rc, out = _run(argv)
    assert rc == 0, f"README.md:{line}: {command!r} exited {rc}: {out[-500:]}"
    if piped:
        assert out.strip(), (line, command)


def test_transcripts_match_what_the_commands_print(workdir):
    shown = [(start, body) for _, start, body in COMMANDS if body and body[0].startswith("$ ")]
    assert shown
    for start, body in shown:
        rc, out = _run(shlex.split(body[0][2:])[1:])
        assert rc == 0, (start, out)
        printed = out.splitlines()
        for expected in body[1:]:
            if not expected.strip():
                continue
            pattern = "^" + ".*".join(re.escape(p) for p in expected.split("...")) + "$"
            assert any(re.match(pattern, p) for p in printed), \
                f"README.md:{start}: no printed line matches {expected!r}"


def test_benchmark_lines_name_scripts_that_exist():
    named = {m for _, _, body in COMMANDS for text in body
             for m in re.findall(r"\.venv/bin/python (benchmarks/\S+\.py)", text)}
    assert len(named) >= 5
    assert all((ROOT / m).is_file() for m in named), named
