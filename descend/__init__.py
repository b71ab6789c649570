"""descend: gradient descent on PyTorch, from the notebook's loop to a tool.

    >>> import torch, torch.nn.functional as F, descend
    >>> from descend import stops
    >>> target = torch.tensor([[.1, .2, .3], [.4, .5, .6], [.7, .8, .9]])
    >>> res = descend.minimize(lambda x: F.mse_loss(x, target), torch.zeros(3, 3),
    ...                        rule="gd", lr=4.5, stop=stops.LossBelow(1e-5))
    >>> res.nit, res.reason
    (1, 'loss_below')
"""

import importlib as _importlib
from typing import Any as _Any

from . import observers, rules, steps, stops
from ._version import __version__
from .diagnose import Diagnosis, diagnose
from .errors import InputError
from .fit import FitResult, fit  # eager: the function `fit` shares its name with its module
from .history import History
from .loop import DivergenceError
from .lsq import CurveFit, LeastSquaresResult, curve_fit, least_squares
from .minimize import minimize
from .result import Result

__all__ = [
    "CurveFit",
    "Diagnosis",
    "DivergenceError",
    "FitResult",
    "History",
    "InputError",
    "LeastSquaresResult",
    "Result",
    "__version__",
    "curve_fit",
    "diagnose",
    "fit",
    "least_squares",
    "minimize",
    "observers",
    "problems",
    "report",
    "rules",
    "steps",
    "stops",
    "store",
]

# Modules that only some runs need are imported on first use, to keep `import descend` (and the
# start-up of every short run) at the cost of `import torch`.
_LAZY = {"problems", "report", "store"}


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        module = _importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'descend' has no attribute {name!r}")
