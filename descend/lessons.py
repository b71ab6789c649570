"""For learners: small two-parameter problems a course uses, stepping through a run, and the
loss surface around a run's path (the report's contour view).

* :func:`get` (``descend demo --problem NAME``): ``bowl`` (``bowl:K``: the quadratic
  ``f(x) = (x_0^2 + K x_1^2) / 2``, condition number ``K``, default 10), ``rosenbrock``
  (``(1 - x_0)^2 + 100 (x_1 - x_0^2)^2``, the curved valley), ``saddle``
  (``x_0^2 + (x_1^2 - 1)^2 / 4``: a saddle at the origin between minima at ``(0, +-1)``) and
  ``linreg`` (a line ``y = w x + b`` fitted to 30 noisy points by mean squared error).
* :class:`StepThrough`: waits for Enter after each printed iteration (``--step``).
* :func:`contour`: the loss on a grid over the plane of a run's path: for two parameters the
  parameters themselves, else the two leading directions of the path (the right singular
  vectors of the iterates minus the last one; a path along a line gets a second direction at
  random, orthogonal to the first, seeded) through the last iterate.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import torch
from torch import Tensor

from .errors import InputError
from .i18n import N_, _

__all__ = ["LESSONS", "Lesson", "StepThrough", "contour", "get"]


@dataclass(frozen=True)
class Lesson:
    """A learner problem: ``fn(x)`` of a tensor ``x`` of two parameters, its start ``x0``, its
    minimiser ``target`` (where the start leads), a step size ``lr`` that converges, and the
    ``threshold`` the demo stops at (None: minimize's default stopping, for a loss whose
    minimum is not 0)."""

    name: str
    about: str
    fn: Callable[[Tensor], Tensor]
    x0: Tensor
    target: Tensor
    lr: float
    threshold: float | None


def _bowl(k: float) -> Lesson:
    scale = torch.tensor([1.0, k])
    return Lesson(f"bowl:{k:g}", N_("a quadratic bowl (x0^2 + K x1^2) / 2 with condition "
                                    "number K: steps near 2/K zig-zag across the narrow way"),
                  lambda x: 0.5 * (scale * x * x).sum(), torch.tensor([2.0, 1.0]),
                  torch.zeros(2), 1.8 / k, 1e-5)


def _rosenbrock() -> Lesson:
    return Lesson("rosenbrock", N_("Rosenbrock's valley (1 - x0)^2 + 100 (x1 - x0^2)^2: the "
                                   "valley floor is found at once, its bottom (1, 1) slowly"),
                  lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2,
                  torch.tensor([-1.2, 1.0]), torch.ones(2), 1e-3, 1e-5)


def _saddle() -> Lesson:
    return Lesson("saddle", N_("a saddle at (0, 0) between two minima (0, +-1) of x0^2 + "
                               "(x1^2 - 1)^2 / 4: the run slows down near the saddle, then "
                               "escapes"),
                  lambda x: x[0] ** 2 + (x[1] ** 2 - 1) ** 2 / 4, torch.tensor([1.5, 0.01]),
                  torch.tensor([0.0, 1.0]), 0.1, 1e-5)


def _linreg() -> Lesson:
    g = torch.Generator().manual_seed(0)
    xs = torch.linspace(0, 3, 30)
    ys = 1.5 * xs + 0.5 + 0.2 * torch.randn(30, generator=g)
    a = torch.stack([xs, torch.ones(30)], 1).double()
    best = torch.linalg.lstsq(a, ys.double().unsqueeze(1)).solution.squeeze(1).float()
    return Lesson("linreg", N_("a line y = w x + b fitted to 30 noisy points by mean squared "
                               "error; x = (w, b)"),
                  lambda x: ((x[0] * xs + x[1] - ys) ** 2).mean(), torch.zeros(2), best, 0.1,
                  None)


#: name -> how it is made (``bowl`` also takes ``bowl:K``).
LESSONS: dict[str, Callable[[], Lesson]] = {
    "bowl": lambda: _bowl(10.0), "rosenbrock": _rosenbrock, "saddle": _saddle,
    "linreg": _linreg,
}


def get(name: str) -> Lesson:
    """The learner problem ``name`` (``bowl``, ``bowl:K``, ``rosenbrock``, ``saddle``,
    ``linreg``)."""
    base, _sep, arg = name.partition(":")
    if base == "bowl" and arg:
        try:
            k = float(arg)
        except ValueError:
            k = math.nan
        if not (math.isfinite(k) and k >= 1):
            raise InputError(f"bowl:K takes a condition number K >= 1, e.g. bowl:100; got {arg!r}")
        return _bowl(k)
    if base not in LESSONS or arg:
        raise InputError(f"unknown problem {name!r}; learner problems: bowl (or bowl:K), "
                         "rosenbrock, saddle, linreg")
    return LESSONS[base]()


class StepThrough:
    """An observer that waits for Enter after each iteration (``--step``): ``q`` and Enter, or
    the end of the input (or none to read), runs on to the end without waiting. The prompt goes
    to standard error, so standard output keeps the notebook's lines."""

    def __init__(self, stream: TextIO | None = None, prompt: TextIO | None = None) -> None:
        self.stream = stream
        self.prompt = prompt
        self.waiting = True

    def __call__(self, s: Any) -> None:
        if not self.waiting or s.iteration == 0:
            return
        sys.stdout.flush()
        out = self.prompt or sys.stderr
        out.write(_("[iteration {k}] Enter: the next step, q then Enter: run to the end ").format(
            k=s.iteration))
        out.flush()
        try:
            line = (self.stream or sys.stdin).readline()
        except (OSError, ValueError):  # no input to read (closed, or captured as under pytest)
            line = ""
        if not line or line.strip().lower() == "q":
            self.waiting = False
            if not line:
                out.write("\n")


#: Grid points per side of :func:`contour` (41 x 41 loss values per run).
GRID = 41


def _plane(values: Tensor, include: Tensor | None) -> tuple[Tensor, Tensor, str]:
    """Origin, two orthonormal directions (rows) and the plane's kind for iterates ``values``
    (one flattened iterate per row) and the point ``include`` (the target: in the plane)."""
    n = values.shape[1]
    if n == 2:
        return torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64), "params"
    origin = values[-1].double()
    rows = values.double() if include is None else torch.cat([values.double(), include.double()])
    moves = rows - origin
    _u, sv, vh = torch.linalg.svd(moves, full_matrices=False)
    # a direction counts when it is more than round-off of the values' size
    floor = 1e-5 * float(torch.linalg.vector_norm(rows, dim=1).max()) + 1e-30
    dirs = [vh[i] for i in range(min(2, vh.shape[0])) if sv[i] > floor]
    g = torch.Generator().manual_seed(0)
    while len(dirs) < 2:  # a path along a line (or none): a seeded random direction beside it
        r = torch.randn(n, generator=g, dtype=torch.float64)
        for d in dirs:
            r = r - (r @ d) * d
        dirs.append(r / torch.linalg.vector_norm(r))
    return origin, torch.stack(dirs), "path"


def contour(fn: Callable[[Tensor], Tensor], values: Tensor, shape: Sequence[int],
            include: Tensor | None = None, grid: int = GRID) -> dict[str, Any]:
    """The loss ``fn`` on a ``grid x grid`` lattice over the plane of the path ``values``
    (iterates, one flattened per row, of one tensor of ``shape``), framing the path and the
    point ``include`` (e.g. the target) with a margin. Returns plain data for the run record:
    ``origin``, ``dirs`` (2 x n), ``kind`` (``"params"``: the two parameters; ``"path"``: the
    path's two leading directions), the axes ``a`` and ``b`` and ``loss`` (``b`` rows by ``a``
    columns; nan where the loss is not finite)."""
    values = values.detach().reshape(values.shape[0], -1).to("cpu")
    finite = values[torch.isfinite(values).all(1)]
    if finite.shape[0] == 0:
        raise InputError("the path has no finite iterate to draw")
    inc = None if include is None else include.detach().reshape(1, -1).to("cpu", torch.float64)
    origin, dirs, kind = _plane(finite, inc)
    pts = (finite.double() - origin) @ dirs.T
    if inc is not None:
        pts = torch.cat([pts, (inc - origin) @ dirs.T])
    lo, hi = pts.min(0).values, pts.max(0).values
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    half = torch.maximum(half * 1.25, half.max() * 0.5 + 1e-6)
    a = torch.linspace(float(mid[0] - half[0]), float(mid[0] + half[0]), grid,
                       dtype=torch.float64)
    b = torch.linspace(float(mid[1] - half[1]), float(mid[1] + half[1]), grid,
                       dtype=torch.float64)
    loss = torch.empty(grid, grid, dtype=torch.float64)
    dtype = values.dtype
    with torch.no_grad():
        for j in range(grid):
            for i in range(grid):
                x = (origin + a[i] * dirs[0] + b[j] * dirs[1]).to(dtype).reshape(tuple(shape))
                loss[j, i] = float(fn(x))
    return {"origin": origin.float(), "dirs": dirs.float(), "kind": kind,
            "a": a.tolist(), "b": b.tolist(), "loss": loss.float()}
