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
import sys as _sys
import types as _types
import typing as _typing
from typing import Any as _Any

from ._version import __version__
from .errors import InputError

if _typing.TYPE_CHECKING:  # what type checkers and IDEs see; at run time every name comes lazily
    from . import checkpoint, observers, problems, report, rules, sklearn, steps, stops, store
    from .batched_result import BatchedResult
    from .diagnose import Diagnosis, diagnose
    from .fit import FitResult, fit
    from .history import History
    from .i18n import set_language
    from .loop import DivergenceError
    from .lsq import CurveFit, LeastSquaresResult, curve_fit, least_squares
    from .minimize import minimize
    from .models import load_model as load
    from .result import Result

__all__ = [
    "BatchedResult",
    "CurveFit",
    "Diagnosis",
    "DivergenceError",
    "FitResult",
    "History",
    "InputError",
    "LeastSquaresResult",
    "Result",
    "__version__",
    "checkpoint",
    "curve_fit",
    "diagnose",
    "fit",
    "least_squares",
    "load",
    "minimize",
    "observers",
    "problems",
    "report",
    "rules",
    "set_language",
    "sklearn",
    "steps",
    "stops",
    "store",
]

# Every public name that needs torch is imported on first use (PEP 562), so that commands that
# need no tensors (`descend --help`, `descend runs list`) start without paying `import torch`.
# name -> (module, attribute); attribute None: the name is the module itself.
_FROM: dict[str, tuple[str, str | None]] = {
    "BatchedResult": ("batched_result", "BatchedResult"),
    "CurveFit": ("lsq", "CurveFit"),
    "Diagnosis": ("diagnose", "Diagnosis"),
    "DivergenceError": ("loop", "DivergenceError"),
    "FitResult": ("fit", "FitResult"),
    "History": ("history", "History"),
    "LeastSquaresResult": ("lsq", "LeastSquaresResult"),
    "Result": ("result", "Result"),
    "curve_fit": ("lsq", "curve_fit"),
    "diagnose": ("diagnose", "diagnose"),
    "fit": ("fit", "fit"),
    "least_squares": ("lsq", "least_squares"),
    "load": ("models", "load_model"),
    "minimize": ("minimize", "minimize"),
    "set_language": ("i18n", "set_language"),
    **{m: (m, None) for m in ("checkpoint", "observers", "problems", "report", "rules",
                              "sklearn", "steps", "stops", "store")},
}
_LAZY = frozenset(_FROM)
# Functions that share their name with their module (`fit` in `fit.py`): importing the module
# binds the module on the package; the package keeps the function instead.
_SHADOWED = frozenset(n for n, (m, attr) in _FROM.items() if attr == m)


def __getattr__(name: str) -> _Any:
    where = _FROM.get(name)
    if where is None:
        raise AttributeError(f"module 'descend' has no attribute {name!r}")
    module = _importlib.import_module(f".{where[0]}", __name__)
    value = module if where[1] is None else getattr(module, where[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)


class _Package(_types.ModuleType):
    def __setattr__(self, name: str, value: _Any) -> None:
        if name in _SHADOWED and isinstance(value, _types.ModuleType):
            value = getattr(value, name)  # `import descend.fit` leaves descend.fit the function
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
