"""The package as users get it: the wheel and the sdist, a clean install, a missing pyarrow.

The tests marked ``package`` build the distributions (or take them from ``$DESCEND_DIST``, the
folder ``make dist`` fills) and install the wheel, with no extras, into a fresh virtual
environment without the system's site-packages, then run the command line there. The clean
install takes a minute or two (creating the venv and installing torch from its local wheel);
``pytest -m "not package"`` leaves these out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The torch the Makefile installs: the CPU build on this machine's disk (an unpinned torch
# would download a multi-GB CUDA build).
TORCH = "torch==2.13.0"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, sdist): from ``$DESCEND_DIST`` when set (``make test``), else built here."""
    folder = os.environ.get("DESCEND_DIST")
    if folder:
        out = Path(folder).resolve()
    else:
        out = tmp_path_factory.mktemp("dist")
        subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                       check=True, capture_output=True)
    wheels = sorted(out.glob("descend-*.whl"))
    sdists = sorted(out.glob("descend-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, f"expected one wheel and one sdist in {out}"
    return wheels[0], sdists[0]


@pytest.mark.package
def test_wheel_holds_the_package_data(dist: tuple[Path, Path]) -> None:
    names = zipfile.ZipFile(dist[0]).namelist()
    for name in ("descend/report_page.html", "descend/py.typed", "descend/cli.py",
                 "descend/locale/ko/LC_MESSAGES/descend.mo"):
        assert name in names
    assert any(n.endswith("/licenses/LICENSE") for n in names)
    assert not any(n.startswith("tests/") for n in names)


@pytest.mark.package
def test_sdist_holds_everything_its_tests_import(dist: tuple[Path, Path]) -> None:
    with tarfile.open(dist[1]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    wanted = [p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").glob("*.py")]
    wanted += [p.relative_to(ROOT).as_posix() for p in (ROOT / "descend").iterdir()
               if p.suffix in (".py", ".html", ".typed")]
    wanted += ["pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "docs/design.md"]
    assert "tests/conftest.py" in wanted and "tests/steps_problems.py" in wanted
    missing = sorted(set(wanted) - names)
    assert not missing, f"the sdist lacks {missing}"


def _check(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    said = f"{' '.join(cmd)}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, said
    assert "Traceback" not in done.stdout + done.stderr, said
    return done


@pytest.mark.package
def test_clean_install_runs_fit_predict_evaluate_report(dist: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # No --system-site-packages: only what the wheel declares (and pip) is there.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_ = venv / "bin"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{bin_}{os.pathsep}{env.get('PATH', '')}"
    env["DESCEND_RUNS"] = str(tmp_path / "runs")
    pip = [str(bin_ / "python"), "-m", "pip", "install", "--quiet"]
    _check([*pip, TORCH], tmp_path, env)
    _check([*pip, str(dist[0])], tmp_path, env)  # no extras

    work = tmp_path / "work"
    work.mkdir()
    rows = ["x1,x2,y"] + [f"{i % 7},{(3 * i) % 5},{2 * (i % 7) - (3 * i) % 5 + 0.5}"
                          for i in range(40)]
    (work / "data.csv").write_text("\n".join(rows) + "\n")
    descend = str(bin_ / "descend")

    fit = _check([descend, "fit", "data.csv", "--target", "y", "--out", "model", "--quiet",
                  "--epochs", "5"], work, env)
    assert (work / "model" / "weights.pt").is_file()
    recorded = [line.split(" ", 1)[1] for line in fit.stdout.splitlines()
                if line.startswith("recorded ")]
    assert len(recorded) == 1, fit.stdout

    _check([descend, "predict", "model", "data.csv", "-o", "pred.csv"], work, env)
    pred = (work / "pred.csv").read_text().splitlines()
    assert len(pred) == 41 and "y_pred" in pred[0]

    evaluate = _check([descend, "evaluate", "model", "data.csv"], work, env)
    assert "rows 40" in evaluate.stdout

    _check([descend, "report", recorded[0], "-o", "report.html"], work, env)
    assert (work / "report.html").stat().st_size > 0


# A missing pyarrow, simulated in a fresh interpreter: None in sys.modules makes every
# `import pyarrow...` raise ImportError, as when it is not installed.
_WITHOUT_PYARROW = (
    "import sys; sys.modules['pyarrow'] = None\n"
    "from descend.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.mark.parametrize("command", ["fit", "predict", "evaluate"])
def test_missing_pyarrow_is_one_line_and_exit_2(command: str, tmp_path: Path) -> None:
    from descend.cli import main

    (tmp_path / "data.csv").write_text("x,y\n1,2\n2,4\n3,6.5\n4,8\n")
    if command != "fit":
        assert main(["fit", str(tmp_path / "data.csv"), "--target", "y", "--out",
                     str(tmp_path / "model"), "--quiet", "--no-record", "--epochs", "2"]) == 0
    args = {"fit": ["fit", "data.csv", "--target", "y", "--out", "m2", "--no-record"],
            "predict": ["predict", "model", "data.csv", "-o", "pred.csv"],
            "evaluate": ["evaluate", "model", "data.csv"]}[command]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    done = subprocess.run([sys.executable, "-c", _WITHOUT_PYARROW, *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"descend {command}: error: reading data files needs pyarrow: "
                     "pip install pyarrow"]
