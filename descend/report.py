"""See a run: one self-contained HTML report, PNG plots, and the notebook's inline summary.

:func:`write_report` renders recorded runs (:class:`~descend.store.Run`) into ONE HTML file that
works offline: the data is embedded as JSON and drawn by a few lines of inline JavaScript into
SVG; nothing is fetched (no CDN, no fonts, no images). It shows, for every run overlaid with a
legend: the loss on a log scale, the gradient norm, the step size, validation curves when the
history has ``val_*`` columns; a table with each run's stop reason and message; the diagnostics
when recorded; and, for runs whose parameters have at most 4,096 elements, a heatmap of the
iterate beside the target and their difference, with a slider and a play button that walk the
iterations (the notebook's ``x`` approaching ``target``).

:func:`plot_runs` and :func:`plot_history` draw the same curves with matplotlib (an optional
dependency: ``pip install 'descend[plot]'``), and :func:`result_html` is what a
:class:`~descend.history.Result` shows in Jupyter.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:
    from .history import History, Result
    from .store import Run

__all__ = ["PALETTE", "plot_history", "plot_runs", "render_report", "result_html",
           "write_report"]

#: Colours of the overlaid runs, in order (colour-blind-safe, Okabe-Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#F0E442")
#: Curves are thinned to at most this many points per run in the HTML (a chart cannot show more).
MAX_POINTS = 2000
#: The heatmap embeds at most this many numbers per run (frames x elements), keeping files small.
MAX_HEAT_NUMBERS = 200_000
#: Parameters with more elements than this get no heatmap.
MAX_HEAT_ELEMENTS = 4096
#: The history columns drawn, with their titles and captions (validation columns are found by
#: their ``val_`` prefix).
CHARTS = (
    ("loss", "Loss (log scale)",
     "A straight line down means each step multiplies the loss by the same factor."),
    ("grad_norm", "Gradient norm (log scale)",
     "How steep the loss is at x; it shrinks to zero at a minimum."),
    ("lr", "Step size", "The step size taken to reach each iterate."),
)


def _num(v: Any, digits: int = 6) -> float | None:
    """A JSON-safe number: None for nan/inf/non-numbers, else ``digits`` significant digits."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    if not math.isfinite(f):
        return None
    return float(f"{f:.{digits}g}")


def _thin(n: int, most: int) -> list[int]:
    """Indices of at most ``most`` rows spread evenly over ``n``, first and last included."""
    if n <= most:
        return list(range(n))
    step = (n - 1) / (most - 1)
    return sorted({round(i * step) for i in range(most)})


def _layout(n: int, shapes: Sequence[Sequence[int]]) -> tuple[int, int]:
    """Rows and columns of the heatmap: a single matrix keeps its shape (a vector lies in one
    row when short), anything else is wrapped into a near-square grid."""
    if len(shapes) == 1 and len(shapes[0]) == 2 and shapes[0][1] <= 128:
        return int(shapes[0][0]), int(shapes[0][1])
    if n <= 16:
        return 1, n
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _heat(run: Run) -> dict[str, Any] | None:
    snap = run.snapshots()
    if snap is None:
        return None
    values = snap["values"]
    n = int(values.shape[1])
    if n > MAX_HEAT_ELEMENTS:
        return None
    its: list[int] = list(snap["iteration"])
    keep = _thin(len(its), max(2, MAX_HEAT_NUMBERS // max(n, 1)))
    loss_at = dict(zip(run.history.get("iteration", []), run.history.get("loss", [])))
    rows, cols = _layout(n, snap["shapes"])
    target = snap.get("target")
    return {
        "rows": rows,
        "cols": cols,
        "iterations": [its[i] for i in keep],
        "loss": [_num(loss_at.get(its[i])) for i in keep],
        "frames": [[_num(v, 5) for v in values[i].tolist()] for i in keep],
        "target": None if target is None else [_num(v, 5) for v in target.tolist()],
    }


def _run_data(run: Run, color: str) -> dict[str, Any]:
    h = run.history
    n = len(h.get("iteration", []))
    idx = _thin(n, MAX_POINTS)
    keys = [k for k, _, _ in CHARTS] + sorted(k for k in h if k.startswith("val_"))
    series = {"iteration": [h["iteration"][i] for i in idx]}
    for k in keys:
        if k in h:
            series[k] = [_num(h[k][i]) for i in idx]
    return {
        "id": run.id,
        "label": run.label,
        "color": color,
        "result": run.result,
        "config": run.config,
        "env": {k: run.environment.get(k) for k in
                ("created", "descend", "torch", "python", "device", "seed", "argv")},
        "diagnostics": run.diagnostics,
        "rows": n,
        "series": series,
        "heat": _heat(run),
    }


def _safe(obj: Any) -> Any:
    """JSON-safe copy: nan and inf become None (JSON has no such numbers)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_safe(v) for v in obj]
    return obj


def render_report(runs: Sequence[Run], title: str | None = None) -> str:
    """The report for ``runs`` (overlaid in the order given) as one HTML string."""
    if not runs:
        raise InputError("a report needs at least one run")
    title = title or ("Run " + runs[0].id if len(runs) == 1 else f"{len(runs)} runs compared")
    data = {
        "title": title,
        "charts": [{"key": k, "title": t, "caption": c} for k, t, c in CHARTS],
        "runs": [_run_data(r, PALETTE[i % len(PALETTE)]) for i, r in enumerate(runs)],
    }
    payload = json.dumps(_safe(data), separators=(",", ":"), allow_nan=False)
    # inside <script> only "</" and "<!--" could end or confuse the element
    payload = payload.replace("<", "\\u003c")
    return (_TEMPLATE.replace("__TITLE__", html.escape(title))
            .replace("__DATA__", payload))


def write_report(runs: Sequence[Run], path: str | os.PathLike[str],
                 title: str | None = None) -> Path:
    """Write the HTML report of ``runs`` to ``path`` (one self-contained file); return the path.

    Raises:
        InputError: when there is no run or the folder of ``path`` does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: the folder {path.parent} does not exist")
    text = render_report(runs, title)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------- Jupyter


def _svg_curve(values: Sequence[float], width: int = 320, height: int = 90) -> str:
    """A small inline SVG of ``values`` on a log scale (non-positive values left out)."""
    pts = [(i, math.log10(v)) for i, v in enumerate(values) if math.isfinite(v) and v > 0]
    if len(pts) < 2:
        return ""
    lo, hi = min(p[1] for p in pts), max(p[1] for p in pts)
    span_y, span_x = (hi - lo) or 1.0, (pts[-1][0] or 1)
    xy = " ".join(f"{4 + (width - 8) * i / span_x:.1f},{4 + (height - 8) * (hi - y) / span_y:.1f}"
                  for i, y in pts)
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="loss, log scale">'
            f'<rect width="100%" height="100%" fill="#fafafa" stroke="#ddd"/>'
            f'<polyline fill="none" stroke="{PALETTE[0]}" stroke-width="1.5" points="{xy}"/>'
            f'<text x="{width - 6}" y="14" font-size="10" text-anchor="end" fill="#555">'
            f'loss 1e{hi:.1f} to 1e{lo:.1f}</text></svg>')


def result_html(result: Result) -> str:
    """A :class:`~descend.history.Result` as a small HTML table plus its loss curve, for
    Jupyter (``Result._repr_html_``)."""
    ok = "#1a7f37" if result.success else "#b42318"
    rows = [("stopped", f'<b style="color:{ok}">{html.escape(result.reason)}</b>: '
             f"{html.escape(result.message)}"),
            ("iterations", f"{result.nit} ({result.nfev} evaluations, {result.seconds:.3g} s)"),
            ("loss", f"{result.loss:.4e} (best {result.best_loss:.4e})"),
            ("rule, step", html.escape(f"{result.rule}, {result.step}"))]
    body = "".join(f'<tr><th style="text-align:left;padding-right:1em">{k}</th><td '
                   f'style="text-align:left">{v}</td></tr>' for k, v in rows)
    return (f'<div class="descend-result"><table>{body}</table>'
            f"{_svg_curve(result.history.loss)}</div>")


# ---------------------------------------------------------------------------- PNG plots


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as e:
        raise InputError("plots need matplotlib: pip install 'descend[plot]'") from e
    matplotlib.use("Agg", force=False)  # files, not windows; a notebook keeps its own backend
    import matplotlib.pyplot as plt

    return plt


_LOG_COLUMNS = ("loss", "grad_norm")


def _draw(ax: Any, columns: dict[str, list[Any]], column: str, label: str,
          color: str | None) -> None:
    xs = columns.get("iteration", list(range(len(columns[column]))))
    ys = [v if isinstance(v, (int, float)) and math.isfinite(v) else math.nan
          for v in columns[column]]
    ax.plot(xs, ys, label=label, color=color, marker="o" if len(ys) <= 60 else None,
            markersize=3, linewidth=1.5)
    if column in _LOG_COLUMNS or column.startswith("val_"):
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel(column)
    ax.grid(True, which="major", alpha=0.3)


def plot_history(history: History, columns: Sequence[str] = ("loss",), ax: Any = None) -> Any:
    """Draw ``columns`` of ``history`` against the iteration (loss and gradient norm on a log
    scale) on ``ax`` (a new figure when None); return the axes."""
    plt = _pyplot()
    cols = history.columns
    for c in columns:
        if c not in cols:
            raise InputError(f"no column {c!r} in the history; it has {list(cols)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    for c in columns:
        _draw(ax, cols, c, c, None)
    if len(columns) > 1:
        ax.legend()
    return ax


def plot_runs(runs: Sequence[Run], path: str | os.PathLike[str],
              columns: Sequence[str] = ("loss",), dpi: int = 120) -> Path:
    """Draw ``columns`` of every run (one panel per column, runs overlaid with a legend) into a
    PNG (or any format matplotlib knows by the suffix of ``path``); return the path.

    Raises:
        InputError: on an unknown column, a missing folder, or without matplotlib.
    """
    path = Path(path)
    if not runs:
        raise InputError("a plot needs at least one run")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: the folder {path.parent} does not exist")
    for c in columns:
        for r in runs:
            if c not in r.history:
                raise InputError(f"no column {c!r} in run {r.id}; it has {list(r.history)}")
    plt = _pyplot()
    fig, axes = plt.subplots(len(columns), 1, figsize=(6.4, 2.9 * len(columns)),
                             layout="constrained", squeeze=False)
    for ax, c in zip(axes[:, 0], columns):
        for i, r in enumerate(runs):
            _draw(ax, r.history, c, r.label if len(runs) > 1 else r.id,
                  PALETTE[i % len(PALETTE)])
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------- the page

_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2328;
background:#fff}
main{max-width:1180px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:22px;margin:4px 0 2px}h2{font-size:17px;margin:22px 0 8px}
h3{font-size:15px;margin:12px 0 6px}
.sub{color:#59636e;margin:0 0 10px}
table.runs{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
table.runs th,table.runs td{border-bottom:1px solid #e5e7eb;padding:4px 8px;text-align:left;
vertical-align:top}
.sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;
vertical-align:-1px}
.badge{display:inline-block;padding:0 6px;border-radius:9px;font-size:12px;font-weight:600}
.ok{background:#dafbe1;color:#1a7f37}.bad{background:#ffebe9;color:#b42318}
.msg{color:#59636e;font-size:12.5px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(360px,1fr));gap:14px}
.chart{border:1px solid #e5e7eb;border-radius:6px;padding:8px 10px}
.chart h3{margin:0}.chart .cap{color:#59636e;font-size:12px;margin:0 0 4px}
.chart svg{width:100%;height:auto;display:block}
.axis{stroke:#8c959f;stroke-width:1}.gridl{stroke:#eaeef2;stroke-width:1}
.tick{fill:#59636e;font-size:12px}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;margin-top:4px}
.heat{border:1px solid #e5e7eb;border-radius:6px;padding:10px 12px;margin:10px 0}
.controls{display:flex;align-items:center;gap:10px;flex-wrap:wrap;margin:4px 0 10px}
.controls input[type=range]{flex:1;min-width:200px}
.controls button{font:inherit;padding:3px 12px;border:1px solid #8c959f;border-radius:5px;
background:#f6f8fa;cursor:pointer;min-width:76px}
.flabel{font-variant-numeric:tabular-nums;min-width:250px}
.grids{display:flex;flex-wrap:wrap;gap:18px}
figure{margin:0}figcaption{font-size:12.5px;color:#59636e;margin-bottom:4px}
.grid{display:grid;gap:2px}
.cell{display:flex;align-items:center;justify-content:center;font-size:11px;
font-variant-numeric:tabular-nums;border-radius:2px}
details{margin:6px 0}summary{cursor:pointer;color:#0969da}
pre{background:#f6f8fa;padding:8px;border-radius:6px;overflow:auto;font-size:12px}
dl.diag{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:4px 0}
dl.diag dt{color:#59636e}dl.diag dd{margin:0}
</style></head>
<body><main>
<h1 id="title"></h1><p class="sub" id="subtitle"></p>
<h2>Runs</h2><table class="runs" id="runs"></table>
<h2>Curves</h2><div class="charts" id="charts"></div>
<div id="heats"></div>
<div id="details"></div>
</main>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const NS = "http://www.w3.org/2000/svg";
const el = (tag, attrs, text) => {
  const e = tag.startsWith("svg:") ? document.createElementNS(NS, tag.slice(4))
                                   : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};
const fmt = v => v === null || v === undefined ? "–"
  : (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e4) ? v.toExponential(3)
  : String(+v.toPrecision(5)));

document.getElementById("title").textContent = D.title;
document.getElementById("subtitle").textContent = D.runs.length === 1
  ? "One run: how the loss fell, why it stopped, and (when small) how x moved."
  : D.runs.length + " runs from their records, overlaid: the colour in the table is the colour" +
    " of the run in every chart.";

// ---- the table of runs: what was asked, what happened, why it stopped
(function table() {
  const t = document.getElementById("runs");
  const head = ["run", "rule", "step", "iterations", "final loss", "best loss", "stopped", "time"];
  const tr = el("tr");
  head.forEach(h => tr.appendChild(el("th", {}, h)));
  t.appendChild(tr);
  for (const r of D.runs) {
    const row = el("tr", {"data-run": r.id});
    const c0 = el("td");
    c0.appendChild(el("span", {class: "sw", style: "background:" + r.color}));
    c0.appendChild(el("b", {}, r.label));
    c0.appendChild(el("div", {class: "msg"}, r.id));
    row.appendChild(c0);
    const R = r.result;
    [R.rule, R.step, R.nit, fmt(R.loss), fmt(R.best_loss)].forEach(v =>
      row.appendChild(el("td", {}, String(v))));
    const c7 = el("td", {class: "stop"});
    c7.appendChild(el("span", {class: "badge " + (R.success ? "ok" : "bad")}, R.reason));
    c7.appendChild(el("div", {class: "msg"}, R.message || ""));
    row.appendChild(c7);
    row.appendChild(el("td", {}, R.seconds === null || R.seconds === undefined ? "–"
                                  : R.seconds.toPrecision(3) + " s"));
    t.appendChild(row);
  }
})();

// ---- charts: every run overlaid, drawn into SVG
function ticksLinear(lo, hi, n) {
  if (hi === lo) { hi = lo + 1; }
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}
const charts = {};
function drawChart(spec) {
  const keys = spec.keys, W = 440, H = 240, L = 52, R = 10, T = 10, B = 34;
  const pts = [];  // [run, key, [[x, y]...]]
  let xlo = Infinity, xhi = -Infinity, ylo = Infinity, yhi = -Infinity;
  for (const r of D.runs) for (const k of keys) {
    const ys = r.series[k];
    if (!ys) continue;
    const p = [];
    r.series.iteration.forEach((x, i) => {
      const y = ys[i];
      if (y === null || (spec.log && !(y > 0))) return;
      p.push([x, y]);
    });
    if (!p.length) continue;
    pts.push([r, k, p]);
    for (const [x, y] of p) {
      xlo = Math.min(xlo, x); xhi = Math.max(xhi, x); ylo = Math.min(ylo, y); yhi = Math.max(yhi, y);
    }
  }
  if (!pts.length) return null;
  const box = el("div", {class: "chart", id: "chart-" + spec.id});
  box.appendChild(el("h3", {}, spec.title));
  box.appendChild(el("p", {class: "cap"}, spec.caption));
  const svg = el("svg:svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": spec.title});
  const f = v => spec.log ? Math.log10(v) : v;
  let a = f(ylo), b = f(yhi);
  if (spec.log) { a = Math.floor(a); b = Math.ceil(b); if (a === b) b = a + 1; }
  else {
    if (ylo === yhi) { const w = Math.abs(ylo) / 2 || 1; a = ylo - w; b = yhi + w; }  // flat: centred
    const t = ticksLinear(a, b, 4); a = Math.min(a, t[0]); b = Math.max(b, t[t.length - 1]);
  }
  if (xhi === xlo) xhi = xlo + 1;
  const sx = x => L + (W - L - R) * (x - xlo) / (xhi - xlo);
  const sy = y => T + (H - T - B) * (b - f(y)) / (b - a);
  const yt = [];
  if (spec.log) { const st = Math.max(1, Math.ceil((b - a) / 8)); for (let e = a; e <= b; e += st) yt.push(Math.pow(10, e)); }
  else ticksLinear(a, b, 4).forEach(v => yt.push(v));
  for (const v of yt) {
    const y = sy(v);
    svg.appendChild(el("svg:line", {class: "gridl", x1: L, x2: W - R, y1: y, y2: y}));
    svg.appendChild(el("svg:text", {class: "tick", x: L - 6, y: y + 4, "text-anchor": "end"},
      spec.log ? "1e" + Math.round(Math.log10(v)) : fmt(v)));
  }
  for (const v of ticksLinear(xlo, xhi, 6).filter(v => Number.isInteger(v))) {
    svg.appendChild(el("svg:text", {class: "tick", x: sx(v), y: H - B + 16, "text-anchor": "middle"}, String(v)));
  }
  svg.appendChild(el("svg:line", {class: "axis", x1: L, x2: L, y1: T, y2: H - B}));
  svg.appendChild(el("svg:line", {class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B}));
  svg.appendChild(el("svg:text", {class: "tick", x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle"}, "iteration"));
  const legend = el("div", {class: "legend"});
  for (const [r, k, p] of pts) {
    const dash = k.startsWith("val_") && keys.length > 1 && k !== keys[0] ? "5 3" : "";
    const line = el("svg:polyline", {class: "series", "data-run": r.id, "data-key": k,
      "data-n": p.length, fill: "none", stroke: r.color, "stroke-width": 1.8,
      "stroke-dasharray": dash, points: p.map(([x, y]) => sx(x).toFixed(1) + "," + sy(y).toFixed(1)).join(" ")});
    line.appendChild(el("svg:title", {}, r.label + (keys.length > 1 ? " " + k : "")));
    svg.appendChild(line);
    if (p.length <= 60) for (const [x, y] of p) {
      const c = el("svg:circle", {class: "pt", cx: sx(x).toFixed(1), cy: sy(y).toFixed(1), r: 2.6, fill: r.color});
      c.appendChild(el("svg:title", {}, `${r.label}: iteration ${x}, ${k} ${fmt(y)}`));
      svg.appendChild(c);
    }
    const item = el("span", {class: "item", "data-run": r.id});
    item.appendChild(el("span", {class: "sw", style: "background:" + r.color}));
    item.appendChild(document.createTextNode(r.label + (keys.length > 1 ? " · " + k : "")));
    legend.appendChild(item);
  }
  box.appendChild(svg);
  box.appendChild(legend);
  charts[spec.id] = {svg, sx, sy, log: spec.log};
  return box;
}
(function allCharts() {
  const host = document.getElementById("charts");
  for (const c of D.charts) {
    let log = c.key !== "lr";
    if (c.key === "lr") {  // a log scale only when the step size spans decades
      const v = D.runs.flatMap(r => (r.series.lr || []).filter(x => x !== null && x > 0));
      log = v.length > 0 && Math.max(...v) / Math.min(...v) > 100;
    }
    const box = drawChart({id: c.key, keys: [c.key], title: c.title, caption: c.caption, log});
    if (box) host.appendChild(box);
  }
  const vk = [...new Set(D.runs.flatMap(r => Object.keys(r.series).filter(k => k.startsWith("val_"))))];
  if (vk.length) {
    const box = drawChart({id: "val", keys: ["loss", ...vk], title: "Validation (log scale)",
      caption: "Training loss (solid) against the validation columns (dashed).", log: true});
    if (box) host.appendChild(box);
  }
})();

// ---- heatmaps: x beside the target, walked by a slider
const STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function seq(t) {
  t = Math.min(1, Math.max(0, t)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(t)), u = t - i;
  return STOPS[i].map((c, j) => Math.round(c + u * (STOPS[i + 1][j] - c)));
}
function div(t) {  // -1..1: blue, white, red
  t = Math.max(-1, Math.min(1, t));
  const w = [247, 247, 247], e = t < 0 ? [33, 102, 172] : [178, 24, 43], u = Math.abs(t);
  return w.map((c, j) => Math.round(c + u * (e[j] - c)));
}
const rgb = c => `rgb(${c[0]},${c[1]},${c[2]})`;
const ink = c => (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) > 140 ? "#111" : "#fff";
function makeGrid(h, size) {
  const g = el("div", {class: "grid", style: `grid-template-columns:repeat(${h.cols},${size}px)`});
  const n = h.frames[0].length;
  for (let i = 0; i < n; i++) g.appendChild(el("div", {class: "cell", style: `width:${size}px;height:${size}px`, "data-i": i}));
  return g;
}
function paint(grid, values, color, showText) {
  const cells = grid.children;
  for (let i = 0; i < cells.length; i++) {
    const v = values[i], c = color(v);
    cells[i].style.background = rgb(c);
    cells[i].setAttribute("data-v", v === null ? "" : String(v));
    cells[i].title = v === null ? "nan" : String(v);
    if (showText) { cells[i].style.color = ink(c); cells[i].textContent = v === null ? "nan" : v.toFixed(4); }
  }
}
(function heats() {
  const host = document.getElementById("heats");
  const withHeat = D.runs.filter(r => r.heat);
  if (!withHeat.length) return;
  host.appendChild(el("h2", {}, "Parameters"));
  for (const r of withHeat) {
    const h = r.heat, n = h.frames[0].length, F = h.frames.length;
    const all = h.frames.flat().concat(h.target || []).filter(v => v !== null);
    let lo = Math.min(...all), hi = Math.max(...all);
    if (hi === lo) { hi = lo + 1; }
    const dmax = h.target ? Math.max(1e-12, ...h.frames.flatMap(f => f.map((v, i) => v === null || h.target[i] === null ? 0 : Math.abs(v - h.target[i])))) : 1;
    const size = Math.max(6, Math.min(64, Math.floor(420 / h.cols)));
    const text = n <= 100 && size >= 40;
    const box = el("section", {class: "heat", "data-run": r.id});
    const t = el("h3");
    t.appendChild(el("span", {class: "sw", style: "background:" + r.color}));
    t.appendChild(document.createTextNode(r.label + (h.target ? ": x walking to the target" : ": the parameters along the run")));
    box.appendChild(t);
    const ctl = el("div", {class: "controls"});
    const play = el("button", {type: "button", class: "play", "aria-label": "play"}, "▶ Play");
    const slider = el("input", {type: "range", class: "slider", min: 0, max: F - 1, step: 1, value: 0, "aria-label": "iteration"});
    const lab = el("span", {class: "flabel"});
    ctl.append(play, slider, lab);
    box.appendChild(ctl);
    const grids = el("div", {class: "grids"});
    const mk = (cap, cls) => { const f = el("figure", {class: cls}); const c = el("figcaption", {}, cap); const g = makeGrid(h, size); g.classList.add(cls); f.append(c, g); grids.appendChild(f); return [g, c]; };
    const [gx, capx] = mk("x", "gx");
    let gt = null, gd = null;
    if (h.target) { [gt] = mk("target", "gt"); [gd] = mk("x − target", "gd"); }
    box.appendChild(grids);
    const sc = el("p", {class: "msg"}, `colours: x and target on one scale from ${fmt(lo)} (dark) to ${fmt(hi)} (yellow)` +
      (h.target ? `; x − target from −${fmt(dmax)} (blue) through 0 (white) to +${fmt(dmax)} (red)` : "") +
      (F < r.rows ? `; ${F} of ${r.rows} iterates kept` : ""));
    box.appendChild(sc);
    host.appendChild(box);
    const cs = v => v === null ? [200, 200, 200] : seq((v - lo) / (hi - lo));
    if (gt) paint(gt, h.target, cs, text);
    const show = k => {
      const f = h.frames[k];
      paint(gx, f, cs, text);
      if (gd) paint(gd, f.map((v, i) => v === null || h.target[i] === null ? null : +(v - h.target[i]).toPrecision(5)), v => v === null ? [200, 200, 200] : div(v / dmax), text);
      capx.textContent = "x at iteration " + h.iterations[k];
      lab.textContent = `iteration ${h.iterations[k]} of ${h.iterations[F - 1]} · loss ${fmt(h.loss[k])}`;
      box.setAttribute("data-frame", k);
      box.setAttribute("data-iteration", h.iterations[k]);
      cursor(r, h.iterations[k], h.loss[k]);
    };
    slider.addEventListener("input", () => show(+slider.value));
    let timer = null;
    const stop = () => { clearInterval(timer); timer = null; play.textContent = "▶ Play"; };
    play.addEventListener("click", () => {
      if (timer) { stop(); return; }
      if (+slider.value >= F - 1) slider.value = 0;
      play.textContent = "❚❚ Pause";
      timer = setInterval(() => {
        if (+slider.value >= F - 1) { stop(); return; }
        slider.value = +slider.value + 1; show(+slider.value);
      }, Math.max(40, Math.min(400, 8000 / F)));
    });
    show(0);
  }
})();
function cursor(r, it, loss) {  // the slider's iterate marked on the loss chart
  const c = charts.loss;
  if (!c) return;
  let m = c.svg.querySelector(`circle.cursor[data-run="${r.id}"]`);
  if (!m) { m = el("svg:circle", {class: "cursor", "data-run": r.id, r: 6, fill: "none", stroke: r.color, "stroke-width": 2.5}); c.svg.appendChild(m); }
  if (loss === null || !(loss > 0)) { m.setAttribute("visibility", "hidden"); return; }
  m.setAttribute("visibility", "visible");
  m.setAttribute("cx", c.sx(it).toFixed(1)); m.setAttribute("cy", c.sy(loss).toFixed(1));
}

// ---- details: diagnostics, config, environment
(function details() {
  const host = document.getElementById("details");
  host.appendChild(el("h2", {}, "Details"));
  for (const r of D.runs) {
    const d = el("details", r.diagnostics ? {open: ""} : {});
    d.appendChild(el("summary", {}, r.label + " · " + r.id));
    if (r.diagnostics) {
      d.appendChild(el("h3", {}, "Diagnostics"));
      const dl = el("dl", {class: "diag"});
      for (const [k, v] of Object.entries(r.diagnostics)) {
        dl.appendChild(el("dt", {}, k));
        dl.appendChild(el("dd", {}, typeof v === "number" ? fmt(v) : (typeof v === "string" ? v : JSON.stringify(v))));
      }
      d.appendChild(dl);
    }
    d.appendChild(el("h3", {}, "Config"));
    d.appendChild(el("pre", {}, JSON.stringify(r.config, null, 1)));
    d.appendChild(el("h3", {}, "Environment"));
    d.appendChild(el("pre", {}, JSON.stringify(r.env, null, 1)));
    host.appendChild(d);
  }
})();
</script></body></html>
"""
