"""The HTML report in a real headless Chromium (Debian's, driven by Playwright).

One browser for the module. Screenshots go to ``test-artifacts/`` (git-ignored). Without
``/usr/bin/chromium`` these tests FAIL, never skip: ``make chromium`` installs it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from descend import store
from descend.cli import main

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium; run "
                    "`make chromium` (apt-get install -y chromium)", pytrace=False)
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("runs")
    demo = root.parent / "demo.html"
    assert main(["demo", "--quiet", "--runs", str(root), "--model-iters", "10",
                 "--report", str(demo)]) == 0
    x_id = store.list_runs(root)[0]["id"]
    two = root.parent / "two.html"
    assert main(["demo", "--quiet", "--runs", str(root), "--sweep-lr", "1,10",
                 "--report", str(two)]) == 0
    ids = [r["id"] for r in store.list_runs(root)][-2:]
    fit = store.record_run(root, config={"label": "fit", "problem": "regression"},
                           history_columns={"iteration": [0, 1, 2, 3],
                                            "loss": [1.0, 0.5, 0.25, 0.2],
                                            "val_loss": [1.1, 0.6, 0.4, 0.45]},
                           result_summary={"loss": 0.2, "nit": 3, "reason": "max_iter"},
                           diagnostics={"L": 0.2222, "safe lr (2/L)": 9.0})
    val = root.parent / "val.html"
    assert main(["report", str(fit.path), "-o", str(val)]) == 0
    return {"root": root, "demo": demo, "x": store.open_run(root, x_id), "two": two,
            "two_ids": ids, "val": val}


class Page:
    """A page opened on a report, with every console message, page error and request kept."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.console: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.console.append((m.type, m.text)))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url, wait_until="load")

    def shot(self, name: str) -> Path:
        out = ARTIFACTS / name
        self.page.screenshot(path=str(out), full_page=True)
        assert out.stat().st_size > 10_000
        return out


def test_demo_report_loads_offline_without_errors(browser: Any, reports: dict) -> None:
    pg = Page(browser, reports["demo"])
    pg.page.wait_for_timeout(200)
    assert pg.errors == []
    assert [m for m in pg.console if m[0] in ("error", "warning")] == []
    assert pg.requests == [pg.url]  # only the file itself: nothing fetched
    assert pg.page.title() == "The notebook: x pulled to the target by gradient descent"
    assert pg.page.locator("table.runs tr[data-run] .badge").inner_text() == "loss_below"
    pg.shot("demo-report.png")
    pg.page.close()


def test_loss_chart_is_drawn_with_every_point(browser: Any, reports: dict) -> None:
    pg = Page(browser, reports["demo"])
    run = reports["x"]
    line = pg.page.locator("#chart-loss polyline.series")
    assert line.count() == 1
    points = line.get_attribute("points").split()
    assert len(points) == int(line.get_attribute("data-n")) == len(run.history["loss"]) == 20
    box = line.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 100
    # the loss falls by the same factor each step: equal drops on the log scale
    ys = [float(p.split(",")[1]) for p in points]
    drops = [b - a for a, b in itertools.pairwise(ys)]
    assert min(drops) > 0 and max(drops) - min(drops) < 0.2
    assert pg.page.locator("#chart-loss circle.pt").count() == 20
    for chart in ("grad_norm", "lr"):
        assert pg.page.locator(f"#chart-{chart} polyline.series").count() == 1
    pg.page.close()


def _cells(pg: Page, grid: str) -> list[float]:
    vals = pg.page.locator(f".heat .grid.{grid} .cell").evaluate_all(
        "cells => cells.map(c => c.getAttribute('data-v'))")
    return [float(v) for v in vals]


def test_slider_walks_the_heatmap_through_the_recorded_iterates(browser: Any,
                                                                 reports: dict) -> None:
    pg = Page(browser, reports["demo"])
    snap = reports["x"].snapshots()
    values, target = snap["values"], snap["target"]

    def close(got: list[float], want: Any) -> bool:
        return all(abs(a - b) <= 1e-4 * max(1.0, abs(b)) for a, b in zip(got, want.tolist()))

    heat = pg.page.locator(".heat")
    assert heat.get_attribute("data-iteration") == "0"
    assert close(_cells(pg, "gx"), values[0]) and close(_cells(pg, "gt"), target)
    slider = pg.page.locator(".heat input.slider")
    slider.focus()
    for _ in range(3):
        pg.page.keyboard.press("ArrowRight")
    assert heat.get_attribute("data-iteration") == "3"
    assert close(_cells(pg, "gx"), values[3])
    assert close(_cells(pg, "gd"), values[3] - target)
    assert not close(_cells(pg, "gx"), values[0])
    assert pg.page.locator(".heat figcaption").first.inner_text() == "x at iteration 3"
    # the text in the cells is the notebook's 4 decimals
    assert pg.page.locator(".heat .grid.gx .cell").first.inner_text() == \
        f"{values[3][0].item():.4f}"
    pg.page.keyboard.press("End")
    assert heat.get_attribute("data-iteration") == "19"
    assert close(_cells(pg, "gx"), values[19])
    assert close(_cells(pg, "gx"), reports["x"].params().reshape(-1))
    pg.shot("demo-report-slider-end.png")
    # play walks on by itself from the start; pause holds the frame
    pg.page.keyboard.press("Home")
    play = pg.page.locator(".heat button.play")
    play.click()
    assert play.inner_text() == "❚❚ Pause"
    pg.page.wait_for_function("+document.querySelector('.heat').dataset.iteration >= 2",
                              timeout=10_000)
    play.click()
    held = heat.get_attribute("data-iteration")
    pg.page.wait_for_timeout(900)
    assert heat.get_attribute("data-iteration") == held and play.inner_text() == "▶ Play"
    assert close(_cells(pg, "gx"), values[int(held)])
    assert pg.errors == []
    pg.page.close()


def test_two_run_comparison_shows_two_series(browser: Any, reports: dict) -> None:
    pg = Page(browser, reports["two"])
    ids = reports["two_ids"]
    lines = pg.page.locator("#chart-loss polyline.series")
    assert lines.count() == 2
    assert [lines.nth(i).get_attribute("data-run") for i in range(2)] == ids
    assert lines.nth(0).get_attribute("stroke") != lines.nth(1).get_attribute("stroke")
    assert [int(lines.nth(i).get_attribute("data-n")) for i in range(2)] == [20, 24]
    legend = pg.page.locator("#chart-loss .legend .item")
    assert legend.all_inner_texts() == ["gd lr=1", "gd lr=10"]
    assert pg.page.locator("table.runs .badge").all_inner_texts() == ["loss_below", "diverged"]
    assert pg.page.locator(".heat").count() == 2
    assert pg.errors == [] and pg.requests == [pg.url]
    pg.shot("two-runs.png")
    pg.page.close()


def test_validation_curves_and_diagnostics(browser: Any, reports: dict) -> None:
    pg = Page(browser, reports["val"])
    lines = pg.page.locator("#chart-val polyline.series")
    assert [lines.nth(i).get_attribute("data-key") for i in range(lines.count())] == [
        "loss", "val_loss"]
    assert [int(lines.nth(i).get_attribute("data-n")) for i in range(2)] == [4, 4]
    assert pg.page.locator("#chart-val .legend .item").all_inner_texts() == [
        "fit · loss", "fit · val_loss"]
    assert pg.page.locator("dl.diag dt").all_inner_texts() == ["L", "safe lr (2/L)"]
    assert pg.page.locator("dl.diag dd").all_inner_texts() == ["0.2222", "9"]
    assert pg.page.locator(".heat").count() == 0
    assert pg.errors == [] and pg.requests == [pg.url]
    pg.page.close()
