"""Named problems with known optima, for the demo, the tests, the benchmarks and teaching.

Each :class:`Problem` bundles ``fn``, a start ``x0``, the optimum ``x_star`` (when known) and the
optimal loss ``f_star``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["NOTEBOOK_TARGET", "Problem", "notebook", "notebook_target"]

#: The notebook's target: ``torch.FloatTensor`` of these rows.
NOTEBOOK_TARGET = ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6), (0.7, 0.8, 0.9))


def notebook_target() -> Tensor:
    """A fresh float32 copy of the notebook's 3x3 target."""
    return torch.tensor(NOTEBOOK_TARGET, dtype=torch.float32)


@dataclass
class Problem:
    """A minimisation problem with a known optimum.

    Attributes:
        name: short name.
        fn: the objective ``fn(x) -> scalar loss``.
        x0: the start.
        x_star: the minimiser, when known.
        f_star: the minimal loss.
        target: a tensor ``x`` should approach, for heatmaps (the notebook's target).
    """

    name: str
    fn: Callable[..., Tensor]
    x0: Any
    x_star: Any = None
    f_star: float = 0.0
    target: Tensor | None = None


def notebook(seed: int | None = 0) -> Problem:
    """The notebook: ``F.mse_loss(x, target)`` over a 3x3 ``x`` drawn by ``torch.rand_like``.

    The gradient is ``2 (x - t) / 9``, the Hessian ``(2/9) I``: each gd step multiplies the error
    by ``1 - 2 lr / 9``, so ``lr = 4.5`` converges in one step, ``lr = 9`` oscillates forever and
    ``lr > 9`` diverges. With ``seed`` the start is what ``torch.manual_seed(seed)`` then
    ``torch.rand_like(target)`` gives (the global generator is seeded, as in the notebook).
    """
    target = notebook_target()
    if seed is not None:
        torch.manual_seed(seed)
    x0 = torch.rand_like(target)

    def mse_to_target(x: Tensor) -> Tensor:
        return F.mse_loss(x, target)

    return Problem("notebook", mse_to_target, x0, x_star=target.clone(), f_star=0.0, target=target)
