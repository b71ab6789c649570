"""The HTML report (content, self-containment, size), PNG plots, Jupyter's view, sweeps."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

import descend
from descend import report, store
from descend.cli import main
from descend.errors import InputError
from descend.observers import Snapshots
from descend.problems import notebook
from descend.result import record_result
from descend.stops import LossBelow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    assert m is not None
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = root.parent / "demo.html"
    assert main(["demo", "--quiet", "--runs", str(root), "--model-iters", "10",
                 "--report", str(out)]) == 0
    return root, out


def test_demo_report_is_small_and_self_contained(demo: tuple[Path, Path]) -> None:
    _, out = demo
    page = out.read_text()
    assert out.stat().st_size < 100_000  # well under 1 MB
    # nothing to fetch: no external URL but the SVG namespace name, no src/href/link/import
    assert set(re.findall(r"https?://[^\s\"'`)]+", page)) == {"http://www.w3.org/2000/svg"}
    for pattern in (r"\bsrc\s*=", r"\bhref\s*=", r"<link\b", r"@import", r"url\(", r"fetch\(",
                    r"XMLHttpRequest", r"<iframe"):
        assert re.search(pattern, page) is None, pattern


def test_demo_report_embeds_the_recorded_run(demo: tuple[Path, Path]) -> None:
    root, out = demo
    d = _data(out.read_text())
    (r,) = d["runs"]
    run = store.open_run(root, r["id"])
    assert d["title"] == "The notebook: x pulled to the target by gradient descent"
    assert r["series"]["iteration"] == run.history["iteration"] == list(range(20))
    assert r["series"]["loss"] == [float(f"{v:.6g}") for v in run.history["loss"]]
    assert r["series"]["lr"][0] is None and r["series"]["lr"][1:] == [1.0] * 19
    assert r["result"]["reason"] == "loss_below" and r["label"] == "gd lr=1"
    h, snap = r["heat"], run.snapshots()
    assert snap is not None
    assert (h["rows"], h["cols"]) == (3, 3) and h["iterations"] == snap["iteration"]
    assert h["target"] == [float(f"{v:.5g}") for v in descend.problems.notebook_target().flatten()]
    for frame, row in zip(h["frames"], snap["values"]):
        assert frame == [float(f"{v:.5g}") for v in row.tolist()]


def test_sweep_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sweep.html"
    assert main(["demo", "--runs", str(tmp_path / "runs"), "--sweep-lr", "0.1,1,4.5,9,10",
                 "--report", str(out)]) == 0
    text = capsys.readouterr().out
    d = _data(out.read_text())
    assert out.stat().st_size < 1_000_000
    got = [(r["label"], r["result"]["reason"], r["result"]["nit"]) for r in d["runs"]]
    # the notebook's facts for n = 9: 2/L = 9, one-step optimum at 4.5, divergence past 9
    assert got == [("gd lr=0.1", "loss_below", 205), ("gd lr=1", "loss_below", 19),
                   ("gd lr=4.5", "loss_below", 1), ("gd lr=9", "max_iter", 1000),
                   ("gd lr=10", "diverged", 23)]
    # all from the same start
    starts = {tuple(r["heat"]["frames"][0]) for r in d["runs"]}
    assert len(starts) == 1
    assert "gd lr=10: x: stopped after 23 iterations, diverged" in text
    assert len(store.list_runs(tmp_path / "runs")) == 5
    # lr = 9 oscillates: x - target flips sign every step, its size unchanged
    r9 = d["runs"][3]["heat"]
    t = r9["target"]
    e0 = [a - b for a, b in zip(r9["frames"][0], t)]
    e1 = [a - b for a, b in zip(r9["frames"][-1], t)]
    assert all(math.isclose(a, b if r9["iterations"][-1] % 2 == 0 else -b, abs_tol=1e-3)
               for a, b in zip(e1, e0))


def test_sweep_rule_default_report_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--no-record", "--sweep-rule", "gd,momentum,adam"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "report: sweep.html"
    d = _data((tmp_path / "sweep.html").read_text())
    assert [r["label"] for r in d["runs"]] == ["gd lr=1", "momentum lr=1", "adam lr=1"]
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.html"]  # no records left behind


def test_report_cli_overlays_runs_and_thins_long_histories(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    p = notebook(0)
    res_long = descend.minimize(p.fn, p.x0, lr=0.001, max_iter=5000, record=tmp_path)
    descend.minimize(p.fn, p.x0, lr=1.0, stop=LossBelow(1e-5), record=tmp_path)
    ids = [r["id"] for r in store.list_runs(tmp_path)]
    out = tmp_path / "two.html"
    assert main(["report", *ids, "--runs", str(tmp_path), "-o", str(out), "--title", "T"]) == 0
    assert capsys.readouterr().out == f"report: {out}\n"
    d = _data(out.read_text())
    assert d["title"] == "T" and [r["id"] for r in d["runs"]] == ids
    assert [r["color"] for r in d["runs"]] == list(report.PALETTE[:2])
    long = d["runs"][0]
    assert long["rows"] == res_long.nit + 1 == 5001
    assert len(long["series"]["loss"]) == report.MAX_POINTS
    assert long["series"]["iteration"][0] == 0 and long["series"]["iteration"][-1] == 5000
    assert len(long["heat"]["frames"]) <= 257 and long["heat"]["iterations"][-1] == 5000
    # a run folder path works as well as an id
    assert main(["report", str(tmp_path / ids[1]), "-o", str(tmp_path / "one.html")]) == 0


@pytest.mark.parametrize(("n", "shapes", "layout"), [
    (9, [[3, 3]], (3, 3)),
    (6, [[6]], (1, 6)),
    (18, [[3, 5], [3]], (4, 5)),
    (4096, [[64, 64]], (64, 64)),
    (4096, [[4096]], (64, 64)),
    (300, [[2, 150]], (17, 18)),
])
def test_heatmap_layout(n: int, shapes: list, layout: tuple[int, int]) -> None:
    rows, cols = report._layout(n, shapes)
    assert (rows, cols) == layout and rows * cols >= n


def test_heatmap_numbers_are_bounded(tmp_path: Path) -> None:
    s = Snapshots()
    res = descend.minimize(lambda x: (x**2).sum(), torch.ones(64, 64), lr=0.01, max_iter=300,
                           observers=[s])
    run = record_result(tmp_path, res, snapshots=s)
    h = _data(report.render_report([run]))["runs"][0]["heat"]
    assert len(h["frames"]) * 4096 <= report.MAX_HEAT_NUMBERS
    assert h["iterations"][0] == 0 and h["iterations"][-1] == 300 and h["target"] is None


def test_render_report_needs_runs() -> None:
    with pytest.raises(InputError) as e:
        report.render_report([])
    assert str(e.value) == "a report needs at least one run"


def test_validation_columns_and_diagnostics_reach_the_page(tmp_path: Path) -> None:
    run = store.record_run(tmp_path, config={"label": "fit"},
                           history_columns={"iteration": [0, 1, 2], "loss": [1.0, 0.5, 0.25],
                                            "val_loss": [1.2, 0.7, 0.4]},
                           result_summary={"loss": 0.25, "nit": 2, "reason": "max_iter"},
                           diagnostics={"L": 0.2222, "safe_lr": 9.0})
    d = _data(report.render_report([run]))["runs"][0]
    assert d["series"]["val_loss"] == [1.2, 0.7, 0.4] and d["heat"] is None
    assert d["diagnostics"] == {"L": 0.2222, "safe_lr": 9.0}


def test_result_html_for_jupyter() -> None:
    p = notebook(0)
    res = descend.minimize(p.fn, p.x0, lr=1.0, stop=LossBelow(1e-5))
    page = res._repr_html_()
    assert "loss_below" in page and res.message in page and "19 (20 evaluations" in page
    (pts,) = re.findall(r'<polyline[^>]*points="([^"]+)"', page)
    assert len(pts.split()) == len(res.history) == 20


@pytest.mark.parametrize("columns", [("loss",), ("loss", "grad_norm", "lr")])
def test_plot_cli_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture,
                             columns: tuple[str, ...]) -> None:
    import matplotlib.image

    p = notebook(0)
    for lr in (1.0, 4.5):
        descend.minimize(p.fn, p.x0, lr=lr, stop=LossBelow(1e-5), record=tmp_path)
    ids = [r["id"] for r in store.list_runs(tmp_path)]
    out = tmp_path / "loss.png"
    assert main(["plot", *ids, "--runs", str(tmp_path), "-o", str(out),
                 "--columns", ",".join(columns)]) == 0
    assert capsys.readouterr().out == f"plot: {out}\n"
    assert out.read_bytes()[:8] == PNG_MAGIC
    img = matplotlib.image.imread(out)
    assert img.shape[1] == round(6.4 * 120) and img.shape[0] == round(2.9 * 120 * len(columns))


def test_plot_cli_unknown_column(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p = notebook(0)
    descend.minimize(p.fn, p.x0, lr=1.0, max_iter=2, record=tmp_path)
    (rid,) = [r["id"] for r in store.list_runs(tmp_path)]
    assert main(["plot", rid, "--runs", str(tmp_path), "--columns", "los",
                 "-o", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err == (
        f"descend plot: error: no column 'los' in run {rid}; it has ['iteration', 'loss', "
        "'grad_norm', 'lr', 'time', 'nfev']\n")
    assert main(["plot", rid, "--runs", str(tmp_path), "-o", str(tmp_path / "no/x.png")]) == 2
    assert capsys.readouterr().err == (f"descend plot: error: cannot write {tmp_path}/no/x.png: "
                                       f"the folder {tmp_path}/no does not exist\n")


def test_history_plot_draws_the_history() -> None:
    p = notebook(0)
    res = descend.minimize(p.fn, p.x0, lr=1.0, stop=LossBelow(1e-5))
    ax = res.history.plot()
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == res.history.iteration
    assert list(line.get_ydata()) == res.history.loss
    assert ax.get_yscale() == "log"
    ax2 = res.history.plot(["grad_norm", "lr"])
    assert [ln.get_label() for ln in ax2.get_lines()] == ["grad_norm", "lr"]
    with pytest.raises(InputError) as e:
        res.history.plot(["nope"])
    assert str(e.value) == ("no column 'nope' in the history; it has ['iteration', 'loss', "
                            "'grad_norm', 'lr', 'time', 'nfev']")
    import matplotlib.pyplot as plt

    plt.close("all")
