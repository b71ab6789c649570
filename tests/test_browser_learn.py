"""The learners' report in the real headless Chromium: the Korean page (lang="ko", every Hangul
glyph drawn by a real font, no missing-glyph boxes) and the contour view (the path drawn on the
loss's contour lines, the slider moving the marker along it). Fails, never skips, without
/usr/bin/chromium (``make chromium`` installs it with a font that covers Hangul)."""

from __future__ import annotations

from typing import Any

import pytest
from test_browser import Page, browser  # noqa: F401 - the module's browser fixture

from descend import store
from descend.cli import main

# The screenshot of the Korean report, in test-artifacts/ (git-ignored) like the others.
SHOT = "report-ko.png"


@pytest.fixture(scope="module")
def learn_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("runs")
    ko = root.parent / "ko.html"
    assert main(["demo", "--quiet", "--lang", "ko", "--runs", str(root), "--model-iters", "10",
                 "--report", str(ko)]) == 0
    x_run = store.open_run(root, store.list_runs(root)[0]["id"])
    ros = root.parent / "rosenbrock.html"
    assert main(["demo", "--quiet", "--problem", "rosenbrock", "--max-iters", "300",
                 "--runs", str(root), "--report", str(ros)]) == 0
    ros_run = store.open_run(root, store.list_runs(root)[-1]["id"])
    sweep = root.parent / "sweep.html"
    assert main(["demo", "--quiet", "--runs", str(root), "--sweep-lr", "0.5,4.5,10",
                 "--report", str(sweep)]) == 0
    return {"ko": ko, "x": x_run, "rosenbrock": ros, "ros_run": ros_run, "sweep": sweep}


# Draws each character on a canvas in the page's own font; a character no font covers comes out
# as the same missing-glyph box as an unassigned code point (U+0378), so every Hangul character
# must differ from that box, from blank, and from each other.
GLYPHS = """chars => {
  const c = document.createElement("canvas"); c.width = 48; c.height = 48;
  const g = c.getContext("2d", {willReadFrequently: true});
  const font = "32px " + getComputedStyle(document.body).fontFamily;
  const draw = ch => {
    g.clearRect(0, 0, 48, 48); g.font = font; g.fillStyle = "#000"; g.fillText(ch, 4, 36);
    return Array.from(g.getImageData(0, 0, 48, 48).data).join(",");
  };
  const tofu = draw("\\u0378"), blank = draw(" ");
  const seen = chars.map(draw);
  return chars.map((ch, i) => ({ch, box: seen[i] === tofu, blank: seen[i] === blank,
    twin: seen.some((s, j) => j !== i && s === seen[i])}));
}"""


def test_korean_report_renders_with_lang_ko_and_real_hangul_glyphs(browser: Any,  # noqa: F811
                                                                   learn_reports: dict) -> None:
    pg = Page(browser, learn_reports["ko"])
    pg.page.wait_for_timeout(200)
    assert pg.errors == [] and pg.requests == [pg.url]
    assert pg.page.evaluate("document.documentElement.lang") == "ko"
    assert pg.page.title() == "노트북: 경사 하강법으로 x를 목표값으로 끌어당기기"
    assert pg.page.locator("#h-runs").inner_text() == "실행"
    assert pg.page.locator("#h-curves").inner_text() == "곡선"
    assert pg.page.locator("#chart-loss h3").inner_text() == "손실 (로그 눈금)"
    assert pg.page.locator("#paths h2").inner_text() == "손실 곡면 위의 경로"
    message = pg.page.locator("table.runs tr[data-run] .stop .msg").first.inner_text()
    assert message.startswith("손실 ") and "이(가) 임계값 1e-05 이하입니다" in message
    text = pg.page.locator("body").inner_text()
    hangul = sorted({ch for ch in text if "\uac00" <= ch <= "\ud7a3"})
    assert len(hangul) > 40
    drawn = pg.page.evaluate(GLYPHS, hangul)
    bad = [d["ch"] for d in drawn if d["box"] or d["blank"] or d["twin"]]
    assert not bad, f"Hangul drawn as missing-glyph boxes (no Korean font?): {bad}"
    pg.shot(SHOT)
    pg.page.close()


def _marker(pg: Page, section: str) -> tuple[float, float]:
    m = pg.page.locator(f"{section} circle.marker")
    return float(m.get_attribute("cx")), float(m.get_attribute("cy"))


def _route(pg: Page, section: str) -> list[tuple[float, float]]:
    pts = pg.page.locator(f"{section} polyline.route").get_attribute("points").split()
    return [(float(p.split(",")[0]), float(p.split(",")[1])) for p in pts]


def test_contour_view_draws_the_path_and_the_slider_moves_the_marker(
        browser: Any, learn_reports: dict) -> None:  # noqa: F811
    pg = Page(browser, learn_reports["rosenbrock"])
    assert pg.errors == []
    sec = "section.path"
    assert pg.page.locator(sec).count() == 1
    assert pg.page.locator(f"{sec} path.iso").count() >= 8  # contour lines drawn
    route = _route(pg, sec)
    frames = len(learn_reports["ros_run"].snapshots()["iteration"])
    assert len(route) == frames == int(pg.page.locator(f"{sec} polyline.route")
                                       .get_attribute("data-n"))
    box = pg.page.locator(f"{sec} svg.contour").bounding_box()
    assert box is not None and box["width"] > 250
    # the marker sits on the path's k-th point as the slider moves
    assert _marker(pg, sec) == pytest.approx(route[0], abs=0.06)
    slider = pg.page.locator(f"{sec} input.slider")
    slider.focus()
    for k in range(1, 6):
        pg.page.keyboard.press("ArrowRight")
        assert pg.page.locator(sec).get_attribute("data-frame") == str(k)
        assert _marker(pg, sec) == pytest.approx(route[k], abs=0.06)
    pg.page.keyboard.press("End")
    assert _marker(pg, sec) == pytest.approx(route[-1], abs=0.06)
    assert _marker(pg, sec) != pytest.approx(route[0], abs=1.0)
    # the heatmap's slider moves the same marker (one index, one iterate)
    heat = pg.page.locator(".heat input.slider")
    heat.focus()
    pg.page.keyboard.press("Home")
    for _ in range(2):
        pg.page.keyboard.press("ArrowRight")
    assert _marker(pg, sec) == pytest.approx(route[2], abs=0.06)
    pg.shot("report-contour.png")
    pg.page.close()


def test_sweep_shows_the_runs_paths_side_by_side(browser: Any,  # noqa: F811
                                                 learn_reports: dict) -> None:
    pg = Page(browser, learn_reports["sweep"])
    assert pg.errors == []
    sections = pg.page.locator("section.path")
    assert sections.count() == 3
    boxes = [sections.nth(i).bounding_box() for i in range(3)]
    assert all(b is not None for b in boxes)
    assert boxes[0]["y"] == boxes[1]["y"] and boxes[0]["x"] < boxes[1]["x"]  # side by side
    # lr = 4.5 solves the notebook in one step: two points; lr = 10 diverges over 23 steps
    assert int(sections.nth(1).locator("polyline.route").get_attribute("data-n")) == 2
    assert int(sections.nth(2).locator("polyline.route").get_attribute("data-n")) == 24
    pg.shot("report-sweep-paths.png")
    pg.page.close()

