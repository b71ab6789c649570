"""See a run: one self-contained HTML report, PNG plots, and the notebook's inline summary.

:func:`write_report` renders recorded runs (:class:`~descend.store.Run`) into ONE HTML file that
works offline: the data is embedded as JSON and drawn by a few lines of inline JavaScript into
SVG (the page is ``report_page.html`` beside this module); nothing is fetched (no CDN, no
fonts, no images). It shows, for every run overlaid with a
legend: the loss on a log scale, the gradient norm, the step size, validation curves when the
history has ``val_*`` columns; a table with each run's stop reason and message; the diagnostics
when recorded; and, for runs whose parameters have at most 4,096 elements, a heatmap of the
iterate beside the target and their difference, with a slider and a play button that walk the
iterations (the notebook's ``x`` approaching ``target``); and, for runs recorded with a loss grid
(``descend demo``: :func:`descend.lessons.contour`), the path on the loss's contour lines, over
the two parameters or the two leading directions of the path, with a slider moving a marker
along it (a sweep's runs side by side). The page's words follow :func:`descend.set_language`.

:func:`plot_runs` and :func:`plot_history` draw the same curves with matplotlib (an optional
dependency: ``pip install 'descend[plot]'``), and :func:`result_html` is what a
:class:`~descend.result.Result` shows in Jupyter.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError
from .i18n import N_, _, get_language, translate

if TYPE_CHECKING:
    from .store import Run

__all__ = ["PALETTE", "plot_history", "plot_runs", "render_report", "result_html",
           "write_report"]

#: Colours of the overlaid runs, in order (colour-blind-safe, Okabe-Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#F0E442")
#: Curves are thinned to at most this many points per run in the HTML (a chart cannot show more),
#: while reading (:func:`descend.histfile.thin`: first, last, minima, maxima and the stop kept).
MAX_POINTS = 2000
#: The same for a plot (PNG or matplotlib axes).
PLOT_POINTS = 4000
#: The same for the loss curve a result shows in Jupyter.
INLINE_POINTS = 1000
#: The heatmap embeds at most this many numbers per run (frames x elements), keeping files small.
MAX_HEAT_NUMBERS = 200_000
#: Parameters with more elements than this get no heatmap.
MAX_HEAT_ELEMENTS = 4096
#: The history columns drawn, with their titles and captions (validation columns are found by
#: their ``val_`` prefix).
CHARTS = (
    ("loss", N_("Loss (log scale)"),
     N_("A straight line down means each step multiplies the loss by the same factor.")),
    ("grad_norm", N_("Gradient norm (log scale)"),
     N_("How steep the loss is at x; it shrinks to zero at a minimum.")),
    ("lr", N_("Step size"), N_("The step size taken to reach each iterate.")),
)
#: The page's own words (report_page.html asks for them by their English text; ``{name}``
#: fields are filled in by the page).
PAGE_TEXT = (
    N_("One run: how the loss fell, why it stopped, and (when small) how x moved."),
    N_("{n} runs from their records, overlaid: the colour in the table is the colour of the run "
       "in every chart."),
    N_("Runs"), N_("Curves"), N_("Parameters"), N_("Details"), N_("Diagnostics"), N_("Config"),
    N_("Environment"), N_("run"), N_("rule"), N_("step"), N_("iterations"), N_("final loss"),
    N_("best loss"), N_("stopped"), N_("time"), N_("iteration"), N_("iteration (log scale)"),
    N_("log scale for the iterations (runs of very different lengths)"),
    N_("Validation (log scale)"),
    N_("Training loss (solid) against the validation columns (dashed)."),
    N_("▶ Play"), N_("❚❚ Pause"), N_("{label}: x walking to the target"),
    N_("{label}: the parameters along the run"), N_("x"), N_("target"), N_("x − target"),
    N_("x at iteration {k}"), N_("iteration {k} of {n} · loss {loss}"),
    N_("colours: x and target on one scale from {lo} (dark) to {hi} (yellow)"),
    N_("; x − target from −{d} (blue) through 0 (white) to +{d} (red)"),
    N_("; {kept} of {rows} iterates kept"),
    N_("Paths on the loss surface"),
    N_("The loss over the two parameters as contour lines, the path of x and, at the slider, "
       "its iterate."),
    N_("The loss on the plane of the path's two leading directions, through its last iterate, "
       "as contour lines, the path of x projected on it and, at the slider, its iterate."),
    N_("direction 1"), N_("direction 2"), N_("start"), N_("the target"),
)
#: The labels of :meth:`descend.diagnose.Diagnosis.summary` (recorded in English), translated
#: when the page is not (numbered fields: the numbers in the recorded label).
DIAGNOSIS_LABELS = (
    N_("loss at the start"), N_("gradient norm at the start"),
    N_("top curvature L (local estimate)"), N_("bottom curvature mu (local estimate)"),
    N_("condition number (local estimate)"), N_("stable steps 0 < lr < 2/L (local estimate)"),
    N_("one-step lr 1/L (local estimate)"), N_("fastest fixed lr (local estimate)"),
    N_("error contraction per step at lr={0} (local estimate)"),
    N_("predicted iterations to {0} at lr={1} (local estimate)"),
    N_("Hessian-vector products"), N_("never"),
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
    hist = run.history_arrays(["iteration", "loss"])  # two columns read, not the history
    it, loss = hist.get("iteration", np.empty(0)), hist.get("loss", np.empty(0))
    at = np.isin(it, [its[i] for i in keep])
    loss_at = dict(zip(it[at].tolist(), loss[at].tolist()))  # a repeated iteration: its last row
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


def _contour(run: Run) -> dict[str, Any] | None:
    """The contour view's data: the loss grid recorded with the run (``contour`` in its
    snapshots, see :func:`descend.lessons.contour`) and the path, projected on its plane (the
    frames the heatmap keeps, so one slider index means the same iterate in both)."""
    snap = run.snapshots()
    grid = None if snap is None else snap.get("contour")
    if snap is None or grid is None:
        return None
    values = snap["values"]
    keep = _thin(len(snap["iteration"]), max(2, MAX_HEAT_NUMBERS // max(int(values.shape[1]), 1)))
    origin, dirs = grid["origin"].double(), grid["dirs"].double()
    path = ((values[keep].double() - origin) @ dirs.T).tolist()
    target = snap.get("target")
    hist = run.history_arrays(["iteration", "loss"])  # two columns read, not the history
    it, loss = hist.get("iteration", np.empty(0)), hist.get("loss", np.empty(0))
    at = np.isin(it, [snap["iteration"][i] for i in keep])
    loss_at = dict(zip(it[at].tolist(), loss[at].tolist()))
    return {
        "kind": grid["kind"],
        "a": [_num(v, 5) for v in grid["a"]],
        "b": [_num(v, 5) for v in grid["b"]],
        "z": [[_num(v, 4) for v in row] for row in grid["loss"].tolist()],
        "path": [[_num(u, 5), _num(v, 5)] for u, v in path],
        "iterations": [snap["iteration"][i] for i in keep],
        "loss": [_num(loss_at.get(snap["iteration"][i])) for i in keep],
        "target": None if target is None else
        [_num(v, 5) for v in ((target.double() - origin) @ dirs.T).tolist()],
    }


def _run_data(run: Run, color: str) -> dict[str, Any]:
    summary = run.history_summary
    names = summary["columns"]
    keys = [k for k, _, _ in CHARTS] + sorted(k for k in names if k.startswith("val_"))
    h = run.read_history([k for k in keys if k in names], max_points=MAX_POINTS)
    series = {"iteration": h.get("iteration", [])}
    for k in keys:
        if k in h:
            series[k] = [_num(v) for v in h[k]]
    return {
        "id": run.id,
        "label": run.label,
        "color": color,
        "result": run.result,
        "config": run.config,
        "env": {k: run.environment.get(k) for k in
                ("created", "descend", "torch", "python", "device", "seed", "argv")},
        "diagnostics": _translated(run.diagnostics),
        "rows": summary["rows"],
        "series": series,
        "heat": _heat(run),
        "contour": _contour(run),
    }


def _translated(diagnostics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The recorded diagnostics with their labels (and words) in the report's language."""
    if diagnostics is None or get_language() == "en":
        return diagnostics
    return {translate(k): translate(v) if isinstance(v, str) else v
            for k, v in diagnostics.items()}


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
    """The report for ``runs`` (overlaid in the order given) as one HTML string, in the
    language of :func:`descend.i18n.set_language` (``<html lang=...>``)."""
    if not runs:
        raise InputError("a report needs at least one run")
    title = title or (_("Run {id}").format(id=runs[0].id) if len(runs) == 1 else
                      _("{n} runs compared").format(n=len(runs)))
    lang = get_language()
    data = {
        "title": title,
        "charts": [{"key": k, "title": _(t), "caption": _(c)} for k, t, c in CHARTS],
        "runs": [_run_data(r, PALETTE[i % len(PALETTE)]) for i, r in enumerate(runs)],
        # the page's words in the report's language (English: the page's own)
        "text": {} if lang == "en" else {t: _(t) for t in PAGE_TEXT},
    }
    payload = json.dumps(_safe(data), separators=(",", ":"), allow_nan=False)
    # inside <script> only "</" and "<!--" could end or confuse the element
    payload = payload.replace("<", "\\u003c")
    # the page (HTML, CSS and the drawing script) lives beside this module: report_page.html
    page = resources.files("descend").joinpath("report_page.html").read_text(encoding="utf-8")
    return (page.replace("__LANG__", lang).replace("__TITLE__", html.escape(title))
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
    from .store import atomic_file

    with atomic_file(path) as tmp:  # the old report stays whole until the new one is
        tmp.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- Jupyter


def _svg_curve(values: Sequence[float], width: int = 320, height: int = 90,
               xs: Sequence[int] | None = None) -> str:
    """A small inline SVG of ``values`` (at positions ``xs``, default 0, 1, ...) on a log scale
    (non-positive values left out)."""
    pts = [(i, math.log10(v)) for i, v in zip(range(len(values)) if xs is None else xs, values)
           if math.isfinite(v) and v > 0]
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


def result_html(result: Any) -> str:
    """A :class:`~descend.result.Result` as a small HTML table plus its loss curve, for
    Jupyter (``Result._repr_html_``)."""
    ok = "#1a7f37" if result.success else "#b42318"
    rows = [("stopped", f'<b style="color:{ok}">{html.escape(result.reason)}</b>: '
             f"{html.escape(result.message)}"),
            ("iterations", f"{result.nit} ({result.nfev} evaluations, {result.seconds:.3g} s)"),
            ("loss", f"{result.loss:.4e} (best {result.best_loss:.4e})"),
            ("rule, step", html.escape(f"{result.rule}, {result.step}"))]
    body = "".join(f'<tr><th style="text-align:left;padding-right:1em">{k}</th><td '
                   f'style="text-align:left">{v}</td></tr>' for k, v in rows)
    from .histfile import thinned

    curve = thinned({"i": np.arange(len(result.history)), "loss": np.asarray(result.history.loss,
                                                                            dtype=float)},
                    INLINE_POINTS, ["loss"])
    return (f'<div class="descend-result"><table>{body}</table>'
            f"{_svg_curve(curve['loss'], xs=curve['i'])}</div>")


# ---------------------------------------------------------------------------- PNG plots


def _matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise InputError("plots need matplotlib: pip install 'descend[plot]'") from e


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


def plot_history(history: Any, columns: Sequence[str] = ("loss",), ax: Any = None) -> Any:
    """Draw ``columns`` of ``history`` against the iteration (loss and gradient norm on a log
    scale) on ``ax`` (a new figure when None); return the axes. A history longer than
    :data:`PLOT_POINTS` rows is thinned to that many (:func:`descend.histfile.thin`)."""
    _matplotlib()
    from .histfile import thinned

    have = history.columns
    for c in columns:
        if c not in have:
            raise InputError(f"no column {c!r} in the history; it has {list(have)}")
    names = [k for k in dict.fromkeys(["iteration", *columns]) if k in have]
    cols = thinned({k: np.asarray(have[k]) for k in names}, PLOT_POINTS, list(columns))
    if ax is None:  # pyplot's figure, in whatever backend the user has (never switched here)
        import matplotlib.pyplot as plt

        _fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    for c in columns:
        _draw(ax, cols, c, c, None)
    if len(columns) > 1:
        ax.legend()
    return ax


def plot_runs(runs: Sequence[Run], path: str | os.PathLike[str],
              columns: Sequence[str] = ("loss",), dpi: int = 120) -> Path:
    """Draw ``columns`` of every run (one panel per column, runs overlaid with a legend) into a
    PNG (or any format matplotlib knows by the suffix of ``path``); return the path. Only those
    columns are read, thinned to :data:`PLOT_POINTS` rows a run
    (:meth:`descend.store.Run.read_history`).

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
            names = r.history_summary["columns"]
            if c not in names:
                raise InputError(f"no column {c!r} in run {r.id}; it has {list(names)}")
    _matplotlib()
    curves = [r.read_history(columns, max_points=PLOT_POINTS) for r in runs]  # thinned
    from matplotlib.figure import Figure  # a figure for a file: no pyplot, no backend change

    fig = Figure(figsize=(6.4, 2.9 * len(columns)), layout="constrained")
    axes = fig.subplots(len(columns), 1, squeeze=False)
    for ax, c in zip(axes[:, 0], columns):
        for i, r in enumerate(runs):
            _draw(ax, curves[i], c, r.label if len(runs) > 1 else r.id,
                  PALETTE[i % len(PALETTE)])
        ax.legend(fontsize=8)
    from .store import atomic_file

    with atomic_file(path) as tmp:  # the format from path's suffix, which tmp keeps
        fig.savefig(tmp, dpi=dpi, format=path.suffix[1:].lower() or "png")
    return path
