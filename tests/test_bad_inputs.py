"""Every bad input answered: a table of bad command lines across every command, each refused in
one line on standard error naming the value and the fix, exit status 2, no traceback, and no
file that existed changed (hashed before and after); the damaged-records cases; a model folder
that names code is refused without --trust-code, and its code does not run."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from cli_run import run

from descend import store
from descend.cli import main

# ------------------------------------------------------------------------------- the workspace


def _write_workspace(ws: Path) -> None:
    rnd = random.Random(0)
    rows = []
    for _ in range(40):
        a, b = rnd.random(), rnd.random()
        rows.append((a, b, 2 * a - b + 0.1 * rnd.random(), int(a + 0.2 * b > 0.6)))
    (ws / "d.csv").write_text("x1,x2,y,c\n" + "".join(f"{a},{b},{y},{c}\n"
                                                      for a, b, y, c in rows))
    lines = (ws / "d.csv").read_text().splitlines()
    typo = [*lines]
    typo[5] = "0.3o" + typo[5][typo[5].index(","):]  # data row 5: x1 mistyped
    (ws / "typo.csv").write_text("\n".join(typo) + "\n")
    typot = [*lines]
    cells = typot[7].split(",")
    cells[2] = "1..5"  # data row 7: y mistyped
    typot[7] = ",".join(cells)
    (ws / "typot.csv").write_text("\n".join(typot) + "\n")
    (ws / "dup.csv").write_text("x1,x1,y\n1,2,3.5\n4,5,6.5\n7,8,9.25\n")
    (ws / "ytext.csv").write_text("x1,x2,y\n0.1,0.2,a\n0.3,0.4,b\n")
    (ws / "yempty.csv").write_text("x1,x2,y\n0.1,0.2,\n0.3,0.4,\n0.5,0.1,\n")
    (ws / "bad.csv").write_bytes(b"x\xff1,y\n1,2\n3,4\n")  # neither UTF-8 nor CP949
    (ws / "empty.csv").write_text("")
    (ws / "header.csv").write_text("x1,x2,y\n")
    (ws / "one.csv").write_text("x1,x2,y\n1,2,3.5\n")
    (ws / "text.csv").write_text("color,y\nred,1.5\nblue,2.5\nred,3.5\ngreen,4.25\n")
    (ws / "miss.csv").write_text("x1,x2,y\n1,,3.5\n4,5,6.5\n7,8,9.25\n")
    (ws / "inf.csv").write_text("x1,x2,y\n1,inf,3.5\n4,5,6.5\n7,8,9.25\n")
    (ws / "ints.csv").write_text("x1,k\n1.5,0\n2.5,1\n3.5,2\n4.5,1\n")
    (ws / "ones.csv").write_text("x1,k\n1.5,1\n2.5,1\n3.5,1\n")
    (ws / "const.csv").write_text("x1,x2,y\n1,2,3.5\n1,2,6.5\n1,2,9.25\n")
    (ws / "big.csv").write_text("x,y\n" + "".join(f"{i},{1e300 * (1 + i / 50)}\n"
                                                  for i in range(20)))
    (ws / "nox2.csv").write_text("x1,y\n0.5,1\n0.25,2\n")
    (ws / "noy.csv").write_text("x1,x2\n0.5,1\n0.25,2\n")
    (ws / "label3.csv").write_text("x1,x2,c\n0.5,1,3\n0.25,2,0\n")
    (ws / "afile").write_text("a file, not a folder\n")
    (ws / "afolder").mkdir()
    (ws / "old.csv").write_text("a,b\n1,2\n")
    assert main(["fit", str(ws / "d.csv"), "--target", "y", "--features", "x1,x2", "--out",
                 str(ws / "m"), "--quiet", "--no-record"]) == 0
    assert main(["fit", str(ws / "d.csv"), "--target", "c", "--features", "x1,x2", "--model",
                 "logistic", "--out", str(ws / "mc"), "--quiet", "--no-record"]) == 0
    for name in ("mw0", "mwbad", "mc0", "mcbad", "mprep", "mevil", "mpkl"):
        shutil.copytree(ws / "m", ws / name)
    (ws / "mw0" / "weights.pt").write_bytes(b"")
    (ws / "mwbad" / "weights.pt").write_bytes(b"PK\x03\x04 not a zip at all")
    (ws / "mc0" / "config.json").write_text("")
    (ws / "mcbad" / "config.json").write_text('{"format": ')
    (ws / "mprep" / "preprocessing.json").write_text("[1, 2")
    config = json.loads((ws / "mevil" / "config.json").read_text())
    config["model"] = "evilmod:Evil"
    (ws / "mevil" / "config.json").write_text(json.dumps(config))
    (ws / "evilmod.py").write_text(
        "from pathlib import Path\nPath('PWNED').write_text('ran')\n"
        "import torch\nclass Evil(torch.nn.Linear):\n    pass\n")
    (ws / "mpkl" / "weights.pt").write_bytes(pickle.dumps(_Crafted()))
    root = ws / "R"
    for rid in ("good", "bad"):
        store.record_run(root, config={"problem": "p"}, run_id=rid,
                         history_columns={"iteration": [0, 1], "loss": [2.0, 1.0]},
                         result_summary={"loss": 1.0, "nit": 1, "reason": "max_iter"})
    (root / "bad" / "result.json").write_text('{"loss": 1.0, "nit"')


class _Crafted:
    """A pickle that would run a shell command when loaded without weights_only."""

    def __reduce__(self):
        return (os.system, ("touch PWNED2",))


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bad-inputs")
    old = os.getcwd()
    os.chdir(path)
    try:
        _write_workspace(path)
    finally:
        os.chdir(old)
    return path


def _hashes(folder: Path) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            p = Path(dirpath) / name
            if "__pycache__" in p.parts:
                continue
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ------------------------------------------------------------------------------- the table

FIT = ["fit", "d.csv", "--target", "y", "--out", "o", "--quiet", "--no-record"]

# (argv, the first words of the message after "descend COMMAND: error: ")
CASES: list[tuple[list[str], str]] = [
    # fit: the data file
    (["fit", "nope.csv", "--target", "y", "--out", "o"], "nope.csv does not exist"),
    (["fit", "empty.csv", "--target", "y", "--out", "o"], "empty.csv is empty"),
    (["fit", "header.csv", "--target", "y", "--out", "o"],
     "header.csv has a header but no data rows"),
    (["fit", "afolder", "--target", "y", "--out", "o"], "afolder is not a file"),
    (["fit", "bad.csv", "--target", "y", "--out", "o"],
     "cannot read bad.csv: it is not UTF-8 text (byte 0xff at offset 1); pass --encoding NAME"),
    (["fit", "dup.csv", "--target", "y", "--out", "o"],
     "column 'x1' appears 2 times in the header of dup.csv"),
    (["fit", "one.csv", "--target", "y", "--out", "o"], "one.csv has only 1 data row"),
    (["fit", "yempty.csv", "--target", "y", "--out", "o"],
     "target column 'y' of yempty.csv is empty: every cell is missing; fill it, or pick "
     "another --target"),
    (["fit", "typo.csv", "--target", "y", "--out", "o"],
     "feature column 'x1' of typo.csv holds numbers except '0.3o' in data row 5"),
    (["fit", "typot.csv", "--target", "y", "--out", "o"],
     "target column 'y' of typot.csv holds numbers except '1..5' in data row 7"),
    (["fit", "text.csv", "--target", "y", "--out", "o"],
     "non-numeric feature column(s) in text.csv: color; pass --one-hot"),
    (["fit", "miss.csv", "--target", "y", "--out", "o"],
     "missing values (empty or NaN cells) in miss.csv: x2: 1; pass --drop-missing"),
    (["fit", "inf.csv", "--target", "y", "--out", "o"], "infinite values in inf.csv: x2: 1"),
    (["fit", "big.csv", "--target", "y", "--out", "o"],
     "column 'y' of big.csv holds 1.38e+300 (data row 20); past 1e+150"),
    (["fit", "ints.csv", "--target", "k", "--out", "o"],
     "target column 'k' of ints.csv holds 3 distinct whole numbers: class labels or amounts?"),
    (["fit", "ones.csv", "--target", "k", "--task", "classify", "--out", "o"],
     "target column 'k' of ones.csv holds only one class"),
    (["fit", "const.csv", "--target", "y", "--drop-constant", "--out", "o"],
     "const.csv has no feature columns left after dropping constant ones"),
    # fit: columns
    ([*FIT[:3], "y,y", *FIT[4:]], "target column 'y' is named 2 times in --target"),
    ([*FIT, "--features", "x1,x1"], "feature column 'x1' is named 2 times in --features"),
    ([*FIT[:3], "nope", *FIT[4:]], "target column 'nope' is not in d.csv"),
    ([*FIT, "--features", "x1,nope"], "feature column 'nope' is not in d.csv"),
    ([*FIT, "--features", "x1,y"], "column 'y' cannot be both a feature and a target"),
    ([*FIT[:3], ",", *FIT[4:]], "expected comma-separated column names"),
    # fit: model, loss, task
    ([*FIT, "--model", "logistic"],
     "target column 'y' of d.csv holds 40 distinct numbers, a quantity, not class labels"),
    ([*FIT, "--loss", "bce"], "--loss bce (loss='bce') needs a target of 2 classes"),
    ([*FIT, "--loss", "bce", "--batch-size", "8"],
     "--loss bce (loss='bce') needs a target of 2 classes"),
    ([*FIT, "--loss", "foo"], "unknown loss 'foo'"),
    ([*FIT, "--model", "logistic", "--loss", "mse"], "model 'logistic' is a classifier"),
    ([*FIT, "--model", "logistic", "--task", "regress"],
     "--task regress (task='regress') contradicts"),
    ([*FIT, "--task", "classify", "--loss", "mse"],
     "--task classify (task='classify') contradicts --loss mse"),
    ([*FIT, "--model", "foo"], "unknown model 'foo'"),
    ([*FIT, "--model", "mlp:a"], "mlp widths must be whole numbers"),
    ([*FIT, "--model", "mlp:0"], "mlp widths must be >= 1"),
    ([*FIT, "--model", "mlp:4", "--activation", "foo"], "unknown activation 'foo'"),
    ([*FIT, "--model", "nomod_xyz:Net"], "cannot import 'nomod_xyz'"),
    # fit: options
    ([*FIT, "--device", "mps"], "device 'mps' is not available here"),
    ([*FIT, "--device", "meta"], "device 'meta' holds no data"),
    ([*FIT, "--device", "cuda:99"], "device 'cuda:99'"),
    ([*FIT, "--device", "banana"], "unknown device 'banana'"),
    ([*FIT, "--seed", "99999999999999999999999"],
     "seed must be a whole number from 0 to 2**64 - 1"),
    ([*FIT, "--seed", str(2**64)], "seed must be a whole number from 0 to 2**64 - 1"),
    ([*FIT, "--seed", "-1"], "seed must be a whole number from 0 to 2**64 - 1"),
    ([*FIT, "--seed", "abc"], "argument --seed: invalid int value"),
    ([*FIT[:-1], "--runs", "afile"], "the records folder afile is a file"),
    ([*FIT[:5], "afile", *FIT[6:]], "--out afile is a file"),
    ([*FIT[:5], "m", *FIT[6:]], "m already exists; pass --overwrite"),
    ([*FIT, "--val", "1.5"], "val must lie in [0, 1)"),
    ([*FIT, "--val", "-0.1"], "val must lie in [0, 1)"),
    ([*FIT, "--val-file", "nope.csv"], "nope.csv does not exist"),
    ([*FIT, "--epochs", "0"], "epochs must be a whole number >= 1"),
    ([*FIT, "--patience", "-1"], "patience must be a whole number >= 0"),
    ([*FIT, "--batch-size", "0"], "argument --batch-size: invalid batch size '0'"),
    ([*FIT, "--batch-size", "x"], "argument --batch-size: invalid batch size 'x'"),
    ([*FIT, "--lr", "foo"], "argument --lr: invalid lr 'foo'"),
    ([*FIT, "--lr", "-1"], "lr must be a finite number > 0"),
    ([*FIT, "--rule", "foo"], "unknown rule 'foo'"),
    ([*FIT, "--rule", "lbfgs", "--batch-size", "8"], "rule 'lbfgs' needs the full batch"),
    ([*FIT, "--l2", "-1"], "l2 must be a finite number >= 0"),
    ([*FIT, "--encoding", "foo"], "unknown encoding 'foo'"),
    ([*FIT, "--loss-below", "-1"], "threshold must be a finite number >= 0"),
    ([*FIT, "--max-iter", "0"], "max_iter must be a whole number >= 1"),
    ([*FIT, "--on-divergence", "foo"], "argument --on-divergence: invalid choice: 'foo'"),
    ([*FIT, "--task", "foo"], "argument --task: invalid choice: 'foo'"),
    (["fit", "d.csv", "--out", "o"], "the following arguments are required: --target"),
    # predict: the model folder, untrusted
    (["predict", "nomodel", "d.csv"], "nomodel is not a saved descend model"),
    (["predict", "afolder", "d.csv"], "afolder is not a saved descend model"),
    (["predict", "mw0", "d.csv"],
     "cannot load the model in mw0: weights.pt is damaged or not a descend file (it is empty)"),
    (["predict", "mwbad", "d.csv"],
     "cannot load the model in mwbad: weights.pt is damaged or not a descend file"),
    (["predict", "mpkl", "d.csv"],
     "cannot load the model in mpkl: weights.pt is damaged or not a descend file (it holds "
     "something besides tensors"),
    (["predict", "mc0", "d.csv"], "cannot load the model in mc0: config.json is damaged"),
    (["predict", "mcbad", "d.csv"], "cannot load the model in mcbad: config.json is damaged"),
    (["predict", "mprep", "d.csv"],
     "cannot load the model in mprep: preprocessing.json is damaged"),
    (["predict", "mevil", "d.csv"],
     "mevil names the model class 'evilmod:Evil': loading it would import and run the module "
     "'evilmod'; pass --trust-code"),
    # predict: the rows and the output
    (["predict", "m", "nope.csv"], "nope.csv does not exist"),
    (["predict", "m", "bad.csv"], "cannot read bad.csv: it is not UTF-8 text"),
    (["predict", "m", "empty.csv"], "empty.csv is empty"),
    (["predict", "m", "nox2.csv"],
     "nox2.csv lacks the feature column(s) x2 the model was trained on"),
    (["predict", "m", "miss.csv"], "missing values (empty or NaN cells) in miss.csv"),
    (["predict", "m", "dup.csv"], "column 'x1' appears 2 times in the header of dup.csv"),
    (["predict", "m", "dup.csv", "--missing", "impute"],
     "column 'x1' appears 2 times in the header of dup.csv"),
    (["predict", "m", "d.csv", "-o", "afolder"], "-o afolder is a folder"),
    (["predict", "m", "d.csv", "-o", "afolder", "--overwrite"], "-o afolder is a folder"),
    (["predict", "m", "d.csv", "-o", "old.csv"], "old.csv already exists; pass --overwrite"),
    (["predict", "m", "d.csv", "-o", "nodir/p.csv"],
     "cannot write nodir/p.csv: the folder nodir does not exist"),
    (["predict", "m", "d.csv", "--missing", "foo"], "argument --missing: invalid choice"),
    # evaluate
    (["evaluate", "mw0", "d.csv"], "cannot load the model in mw0: weights.pt is damaged"),
    (["evaluate", "mpkl", "d.csv"], "cannot load the model in mpkl: weights.pt is damaged"),
    (["evaluate", "mcbad", "d.csv"], "cannot load the model in mcbad: config.json is damaged"),
    (["evaluate", "mevil", "d.csv"], "mevil names the model class 'evilmod:Evil'"),
    (["evaluate", "m", "nope.csv"], "nope.csv does not exist"),
    (["evaluate", "m", "noy.csv"], "target column"),
    (["evaluate", "m", "dup.csv"], "column 'x1' appears 2 times in the header of dup.csv"),
    (["evaluate", "m", "ytext.csv"],
     "target column 'y' of ytext.csv holds text, not numbers, and the model is a regression: "
     "give numbers in 'y', or use descend predict for rows without targets"),
    (["evaluate", "mc", "label3.csv"],
     "class label '3' in column 'c' of label3.csv was never seen in training"),
    # demo
    (["demo", "--seed", "99999999999999999999999"],
     "--seed must be a whole number from 0 to 2**64 - 1"),
    (["demo", "--sweep-lr", ""], "--sweep-lr takes numbers separated by commas"),
    (["demo", "--sweep-lr", "0.1,b"], "--sweep-lr takes numbers separated by commas"),
    (["demo", "--sweep-lr", "-1"], "lr must be a finite number > 0"),
    (["demo", "--sweep-rule", ""], "unknown rule ''"),
    (["demo", "--sweep-rule", "gd,foo"], "unknown rule 'foo'"),
    (["demo", "--lr", "-1"], "lr must be a finite number > 0"),
    (["demo", "--threshold", "-1"], "threshold must be a finite number >= 0"),
    (["demo", "--max-iters", "0"], "max_iter must be a whole number >= 1"),
    (["demo", "--report", "nodir/r.html"],
     "cannot write nodir/r.html: the folder nodir does not exist"),
    (["demo", "--runs", "afile"], "the records folder afile is a file"),
    # diagnose
    (["diagnose", "--seed", "99999999999999999999999"],
     "--seed must be a whole number from 0 to 2**64 - 1"),
    (["diagnose", "--threshold=-1"], "--threshold must be above the problem's optimal loss 0"),
    (["diagnose", "nope"], "unknown problem 'nope'"),
    (["diagnose", "--lr", "-1"], "lr must be a finite number > 0"),
    (["diagnose", "--max-hvps", "0"], "max_iter must be a whole number >= 1"),
    # runs, report, plot
    (["runs", "show", "nope", "--runs", "R"], "no run 'nope' in R"),
    (["runs", "show", "bad", "--runs", "R"],
     "run bad is damaged: result.json is not valid JSON"),
    (["runs", "rm", "nope", "--runs", "R"], "no run 'nope' in R"),
    (["runs", "compare", "good", "nope", "--runs", "R"], "no run 'nope' in R"),
    (["runs", "list", "--runs", "afile"], "the records folder afile is a file"),
    (["runs", "list", "--filter", "foo", "--runs", "R"], "argument --filter: expected KEY=VALUE"),
    (["runs", "list", "--sort", "foo", "--runs", "R"], "argument --sort: unknown key 'foo'"),
    (["runs", "export", "good", "--to", "foo", "D", "--runs", "R"],
     "unknown export format 'foo'"),
    (["report", "nope", "--runs", "R"], "no run 'nope' in R"),
    (["plot", "nope", "--runs", "R"], "no run 'nope' in R"),
]


@pytest.mark.parametrize(("argv", "first"), CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(ws, monkeypatch, capsys, argv, first):
    monkeypatch.chdir(ws)
    before = _hashes(ws)
    rc, _, err = run(argv, capsys)
    assert rc == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    head, _, message = lines[0].partition(": error: ")
    # the command, or for an option argparse refuses, the sub-command (`descend runs list`)
    assert head in (f"descend {argv[0]}", f"descend {' '.join(argv[:2])}"), lines[0]
    assert message.startswith(first), lines[0]
    assert _hashes(ws) == before  # nothing changed, nothing added
    assert not (ws / "PWNED").exists() and not (ws / "PWNED2").exists()


def test_the_table_covers_every_command_and_80_inputs() -> None:
    assert len(CASES) >= 80
    assert {a[0] for a, _ in CASES} >= {"fit", "predict", "evaluate", "demo", "diagnose",
                                        "runs", "report", "plot"}


# ------------------------------------------------------------------------------- untrusted code


def test_model_naming_a_module_runs_only_with_trust_code(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.csv").write_text("x1,y\n" + "".join(f"{i / 10},{i / 5 + 1}\n"
                                                       for i in range(12)))
    (tmp_path / "netmod.py").write_text(
        "from pathlib import Path\nimport torch\n"
        "Path('IMPORTED').write_text(str(int(Path('IMPORTED').exists())))\n"
        "class Net(torch.nn.Linear):\n    pass\n")
    rc, _, err = run(["fit", "d.csv", "--target", "y", "--model", "netmod:Net", "--out", "m",
                      "--quiet", "--no-record"], capsys)
    assert rc == 0, err
    (tmp_path / "IMPORTED").unlink()  # fitting imported it, as asked on the command line
    import sys

    sys.modules.pop("netmod", None)
    for cmd in (["predict", "m", "d.csv"], ["evaluate", "m", "d.csv"]):
        rc, out, err = run(cmd, capsys)
        assert rc == 2 and out == ""
        assert err == (f"descend {cmd[0]}: error: m names the model class 'netmod:Net': loading "
                       "it would import and run the module 'netmod'; pass --trust-code "
                       "(trust_code=True) only if you trust where the folder came from\n")
        assert not (tmp_path / "IMPORTED").exists()  # the module's code did not run
        assert "netmod" not in sys.modules
    from descend import load

    with pytest.raises(ValueError, match="pass --trust-code"):
        load(tmp_path / "m")
    assert not (tmp_path / "IMPORTED").exists()
    rc, out, err = run(["evaluate", "m", "d.csv", "--trust-code"], capsys)
    assert rc == 0 and out.startswith("rows 12"), err
    assert (tmp_path / "IMPORTED").exists()
    sys.modules.pop("netmod", None)
    assert load(tmp_path / "m", trust_code=True).predict(tmp_path / "d.csv").shape == (12,)


# ------------------------------------------------------------------------------- damaged records


def test_a_damaged_run_is_listed_as_damaged_and_the_others_as_usual(ws, tmp_path, capsys):
    root = tmp_path / "R"
    shutil.copytree(ws / "R", root)
    rc, out, err = run(["runs", "list", "--runs", root], capsys)
    assert rc == 0
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines()[1:]}
    assert rows["bad"][-1] == "damaged" and rows["good"][-1] == "max_iter"
    assert err == (f"descend runs: note: 1 run folder(s) in {root} are damaged: bad; `descend "
                   "runs show ID` says why, `descend runs rm ID` removes one\n")
    rc, out, _ = run(["runs", "rm", "bad", "--runs", root], capsys)
    assert rc == 0 and out == "removed bad\n"
    assert [r["id"] for r in store.list_runs(root)] == ["good"]


def test_a_damaged_index_is_rebuilt_from_the_folders(ws, tmp_path, capsys):
    root = tmp_path / "R"
    shutil.copytree(ws / "R", root)
    (root / "index.sqlite").write_bytes(b"not a database, but long enough to look like one" * 4)
    rc, out, err = run(["runs", "list", "--runs", root, "--json"], capsys)
    assert rc == 0
    assert [(r["id"], r["reason"]) for r in json.loads(out)] == [("bad", "damaged"),
                                                                  ("good", "max_iter")]
    assert err.splitlines()[0] == (f"descend runs: note: the index {root / 'index.sqlite'} was "
                                   "damaged (file is not a database); rebuilt it from the 1 run "
                                   "folders")
    with sqlite3.connect(root / "index.sqlite") as db:  # a good index again
        assert [r[0] for r in db.execute("SELECT id FROM runs")] == ["good"]


def test_a_locked_index_is_read_around_without_waiting(ws, tmp_path, capsys):
    root = tmp_path / "R"
    shutil.copytree(ws / "R", root)
    db = sqlite3.connect(root / "index.sqlite")
    try:
        db.execute("BEGIN EXCLUSIVE")
        t0 = time.monotonic()
        rc, out, err = run(["runs", "list", "--runs", root], capsys)
        seconds = time.monotonic() - t0
    finally:
        db.close()
    assert rc == 0 and seconds < store.INDEX_TIMEOUT + 5
    assert [ln.split()[0] for ln in out.splitlines()[1:]] == ["bad", "good"]
    assert err.splitlines()[0] == (f"descend runs: note: the index {root / 'index.sqlite'} is "
                                   "locked by another process; listed the runs from their "
                                   "folders")


def test_runs_list_deletes_nothing_it_did_not_create(tmp_path, capsys):
    theirs = [tmp_path / ".trash-photos", tmp_path / ".tmp-notes", tmp_path / ".trash-x-1-abcdef"]
    for p in theirs:
        p.mkdir()
        (p / "keep.txt").write_text("mine")
    rc, out, _ = run(["runs", "list", "--runs", tmp_path], capsys)
    assert rc == 0 and out == f"no runs in {tmp_path}\n"
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in theirs)  # nor an index added


# ------------------------------------------------------------------------------- outputs


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_predict_o_keeps_the_old_file_whole_when_the_write_fails(ws, tmp_path, monkeypatch,
                                                                  capsys):
    import pyarrow.csv as pacsv

    monkeypatch.chdir(tmp_path)
    old = tmp_path / "p.csv"
    old.write_text("old,predictions\n1,2\n")
    stale = tmp_path / f".p.csv.tmp-{_dead_pid()}"  # left by a killed writer
    stale.write_text("half")
    theirs = tmp_path / ".p.csv.tmp-notes"  # not descend's form: kept
    theirs.write_text("mine")
    real = pacsv.write_csv

    def torn(table, where, *args, **kwargs):
        Path(where).write_text("x1,x2,y,y_pred\n0.1,")  # a truncated file, then the kill
        raise KeyboardInterrupt

    monkeypatch.setattr(pacsv, "write_csv", torn)
    rc, _, err = run(["predict", ws / "m", ws / "d.csv", "-o", old, "--overwrite"], capsys)
    assert rc == 130 and err == "descend predict: interrupted\n"
    assert old.read_text() == "old,predictions\n1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".p.csv.tmp-notes", "p.csv"]
    monkeypatch.setattr(pacsv, "write_csv", real)
    rc, _, _ = run(["predict", ws / "m", ws / "d.csv", "-o", old, "--overwrite"], capsys)
    assert rc == 0 and old.read_text().splitlines()[0] == '"x1","x2","y","c","y_pred"'
    assert theirs.read_text() == "mine"


def test_a_kill_between_the_renames_of_overwrite_leaves_the_old_model_restorable(ws, tmp_path,
                                                                                  capsys):
    from descend import load

    pid = _dead_pid()
    # killed after `m` was renamed aside and before the new folder was renamed in
    shutil.copytree(ws / "m", tmp_path / f".old-m-{pid}-abcdef")
    (tmp_path / f".tmp-m-{pid}-123456").mkdir()  # the new one, half written
    (tmp_path / ".old-m-mine").mkdir()  # not descend's form: kept
    store.recover(tmp_path / "m")
    assert sorted(os.listdir(tmp_path)) == [".old-m-mine", "m"]
    assert load(tmp_path / "m").predict(ws / "d.csv").shape == (40,)
    # killed after both renames, before the old folder was deleted: the old copy goes
    shutil.copytree(ws / "m", tmp_path / f".old-m-{pid}-fedcba")
    rc, _, err = run(["fit", ws / "d.csv", "--target", "y", "--features", "x1", "--out",
                      tmp_path / "m", "--overwrite", "--quiet", "--no-record"], capsys)
    assert rc == 0, err
    assert sorted(os.listdir(tmp_path)) == [".old-m-mine", "m"]
    assert load(tmp_path / "m").features == ["x1"]


def test_an_error_while_overwriting_keeps_the_old_model(ws, tmp_path, monkeypatch, capsys):
    from descend import load, models

    shutil.copytree(ws / "m", tmp_path / "m")
    before = _hashes(tmp_path / "m")

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(models, "_write_json", broken)
    rc, _, err = run(["fit", ws / "d.csv", "--target", "y", "--out", tmp_path / "m",
                      "--overwrite", "--quiet", "--no-record"], capsys)
    assert rc == 2
    assert err.splitlines()[-1] == (f"descend fit: error: cannot save the model to "
                                    f"{tmp_path / 'm'}: No space left on device")
    assert _hashes(tmp_path / "m") == before and os.listdir(tmp_path) == ["m"]
    assert load(tmp_path / "m").features == ["x1", "x2"]


# ------------------------------------------------------------------------------- the Python API


def _api_cases():
    import torch

    from descend import fit, minimize

    g = torch.Generator().manual_seed(0)
    X = torch.randn(100, 3, generator=g)
    y = X @ torch.tensor([1.0, 2.0, 3.0])
    A = torch.randn(4, 4, generator=g)
    return [
        (lambda: fit(torch.nn.Linear(3, 1), (X, y), loss="mse", max_iter=5),
         "loss mse: the model's outputs have shape (2, 1) for 2 rows but the targets (2,); "
         "they would be broadcast"),
        (lambda: fit(torch.nn.Linear(3, 1), (X, torch.randn(100, 2, generator=g)), loss="mse",
                     max_iter=5),
         "loss mse: the model's outputs have shape (2, 1) for 2 rows but the targets (2, 2)"),
        (lambda: fit(torch.nn.Linear(3, 2), (X, torch.full((100,), 0.5)),
                     loss="cross_entropy", max_iter=5),
         "cross_entropy takes class indices 0, 1, 2, ... as targets, got 0.5"),
        (lambda: fit(torch.nn.Linear(3, 2), (X, torch.randint(0, 5, (100,), generator=g)),
                     loss="cross_entropy", max_iter=5),
         "cross_entropy needs one output per class: the targets hold class index 4"),
        (lambda: fit(torch.nn.Linear(3, 1), (X, 2 * torch.ones(100, 1)), loss="bce",
                     max_iter=5), "bce takes targets 0 or 1"),
        (lambda: fit(torch.nn.Linear(4, 1), (X, y[:, None]), max_iter=5),
         "the model cannot take the inputs (rows of shape (3,), torch.float32)"),
        (lambda: fit(torch.nn.LSTM(3, 1), (X, y[:, None]), max_iter=5),
         "the model must return a tensor, got tuple"),
        (lambda: fit("linear", (X, y), seed=2**64, max_iter=5),
         "seed must be a whole number from 0 to 2**64 - 1"),
        (lambda: fit("linear", (X, y), device="meta", max_iter=5), "device 'meta' holds no data"),
        (lambda: fit("linear", (X, y), record=Path(__file__), max_iter=5),
         "the records folder"),
        (lambda: minimize(lambda x: (A @ x).sum(), torch.zeros(3)),
         "fn failed at the start x0 (shapes (3,) float32) with RuntimeError: size mismatch"),
        (lambda: minimize(lambda x: x.view(7).sum(), torch.zeros(3)),
         "fn failed at the start x0 (shapes (3,) float32) with RuntimeError: shape '[7]'"),
    ]


def test_python_api_misuse_is_an_input_error_before_any_iteration():
    from descend.errors import InputError

    cases = _api_cases()
    for call, first in cases:
        with pytest.raises(InputError) as e:
            call()
        assert str(e.value).startswith(first), str(e.value)
        assert "\n" not in str(e.value)


def test_no_success_on_a_plateau_or_with_never_finite_validation_losses():
    import torch

    from descend import fit, minimize
    from descend.stops import GradNormBelow

    # gd with a too-long step jumps from near the minimum onto the flat rim, 6x the start
    res = minimize(lambda x: 12 - 11.5 * torch.exp(-(x ** 2).sum()), torch.tensor([0.2]),
                   rule="gd", lr=30.0, stop=GradNormBelow(1e-3), max_iter=100)
    assert res.loss > 6 * res.history.loss[0]
    assert (res.reason, res.success) == ("plateau", False)
    # the same criterion at a minimum is a success
    res = minimize(lambda x: 12 - 11.5 * torch.exp(-(x ** 2).sum()), torch.tensor([0.2]),
                   rule="gd", lr=0.05, stop=GradNormBelow(1e-3), max_iter=1000)
    assert (res.reason, res.success) == ("grad_small", True)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 3, generator=g)
    Y = X.sum(1, keepdim=True)
    res = fit(torch.nn.Linear(3, 1), (X, Y), val=(X, torch.full((60, 1), float("nan"))),
              loss="mse", patience=2, epochs=20, batch_size=10)
    assert (res.reason, res.success) == ("monitor_nonfinite", False)
    assert res.message == ("early stopping: the validation loss was never a finite number in 2 "
                           "epochs (NaN or inf): check the validation rows and the loss")


def test_report_and_plot_replace_their_file_whole_and_clean_leftovers(ws, tmp_path,
                                                                      monkeypatch, capsys):
    from descend import report

    monkeypatch.chdir(tmp_path)
    stale = tmp_path / f".r.html.tmp-{_dead_pid()}.html"  # left by a killed writer
    stale.write_text("<html")
    (tmp_path / "r.html").write_text("the old report")

    real_render, real_write = report.render_report, Path.write_text
    monkeypatch.setattr(report, "render_report", lambda runs, title: "<html>half")

    def torn(self, text, *args, **kwargs):
        real_write(self, text[:5], *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", torn)
    rc, _, _ = run(["report", "good", "--runs", ws / "R", "-o", "r.html"], capsys)
    monkeypatch.setattr(Path, "write_text", real_write)
    monkeypatch.setattr(report, "render_report", real_render)
    assert rc == 130 and (tmp_path / "r.html").read_text() == "the old report"
    assert sorted(os.listdir(tmp_path)) == ["r.html"]  # the stale and the torn temporaries gone
    rc, _, _ = run(["report", "good", "--runs", ws / "R", "-o", "r.html"], capsys)
    assert rc == 0 and (tmp_path / "r.html").read_text().startswith("<!")
    rc, _, err = run(["plot", "good", "--runs", ws / "R", "-o", "p.png"], capsys)
    assert rc == 0, err
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(os.listdir(tmp_path)) == ["p.png", "r.html"]
