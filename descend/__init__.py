"""descend: gradient descent on PyTorch, from the notebook's loop to a tool.

    >>> import torch, torch.nn.functional as F, descend
    >>> from descend import stops
    >>> target = torch.tensor([[.1, .2, .3], [.4, .5, .6], [.7, .8, .9]])
    >>> res = descend.minimize(lambda x: F.mse_loss(x, target), torch.zeros(3, 3),
    ...                        rule="gd", lr=4.5, stop=stops.LossBelow(1e-5))
    >>> res.nit, res.reason
    (1, 'loss_below')
"""

from . import observers, rules, steps, stops
from .errors import InputError
from .history import History, Result
from .loop import DivergenceError
from .minimize import minimize

__version__ = "0.1.0"

__all__ = [
    "DivergenceError",
    "History",
    "InputError",
    "Result",
    "__version__",
    "minimize",
    "observers",
    "rules",
    "steps",
    "stops",
]
