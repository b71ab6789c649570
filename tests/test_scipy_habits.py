"""A scipy user's habits: the script below is scipy's own minimize tutorial with
``from scipy.optimize import minimize`` replaced by descend's, unchanged otherwise; the result
answers to OptimizeResult's names, and the optimum agrees with scipy's."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

import descend
from descend.errors import InputError

SCRIPT = '''
import numpy as np
from descend import minimize

def rosen(x):
    """The Rosenbrock function"""
    return sum(100.0*(x[1:]-x[:-1]**2.0)**2.0 + (1-x[:-1])**2.0)

x0 = np.array([1.3, 0.7, 0.8, 1.9, 1.2])
res = minimize(rosen, x0)
result = (res.x, res.fun, res.jac, res.status, res.nit, res.nfev, res.success, res.message,
          res["x"], res.get("fun"), "jac" in res)
'''


def test_a_scipy_users_script_runs_unchanged():
    scope: dict = {}
    exec(compile(SCRIPT, "scipy_user.py", "exec"), scope)
    x, fun, jac, status, nit, nfev, success, message, x_again, fun_again, has_jac = \
        scope["result"]
    assert isinstance(x, np.ndarray) and isinstance(jac, np.ndarray)
    assert x.dtype == np.float64 and x.shape == (5,)
    np.testing.assert_allclose(x, np.ones(5), atol=1e-8)
    def with_grad(z: np.ndarray) -> tuple[float, np.ndarray]:
        t = torch.tensor(z, requires_grad=True)
        v = scope["rosen"](t)
        (g,) = torch.autograd.grad(v, t)
        return float(v), g.numpy()

    oracle = scipy.optimize.minimize(with_grad, scope["x0"], jac=True, method="BFGS",
                                     options={"gtol": 1e-10})
    np.testing.assert_allclose(x, oracle.x, atol=1e-7)
    assert fun == pytest.approx(0.0, abs=1e-20) and np.abs(jac).max() < 1e-10
    assert (status, success) == (0, True) and nit > 0 and nfev >= nit
    assert isinstance(message, str) and message.startswith("converged")
    assert x_again is x and fun_again == fun and has_jac


def test_fun_keyword_and_integer_numpy_start():
    res = descend.minimize(fun=lambda x: ((x - 3) ** 2).sum(), x0=np.zeros(3, dtype=np.int64))
    assert isinstance(res.x, np.ndarray) and res.x.dtype == np.float64
    np.testing.assert_allclose(res.x, [3.0, 3.0, 3.0], atol=1e-8)
    tensor = descend.minimize(lambda x: ((x - 3) ** 2).sum(), torch.zeros(3))
    assert isinstance(tensor.x, torch.Tensor) and isinstance(tensor.jac, torch.Tensor)


@pytest.mark.parametrize(("reason_kwargs", "status"), [
    (dict(stop=descend.stops.MaxIter(2)), 1),
    (dict(rule="gd", lr=10.0, x0=torch.ones(3)), 2),
])
def test_status_codes_follow_scipys(reason_kwargs, status):
    kwargs = dict(x0=torch.full((3,), 5.0))
    kwargs.update(reason_kwargs)
    res = descend.minimize(lambda x: (x ** 2).sum() * 10, **kwargs)
    assert res.status == status and not res.success and res["status"] == status


def test_the_objective_given_twice_or_not_at_all_is_refused():
    with pytest.raises(InputError, match="give the objective once"):
        descend.minimize(lambda x: x.sum(), torch.ones(2), fun=lambda x: x.sum())
    with pytest.raises(InputError, match=r"minimize needs the objective: minimize\(fn, x0\)"):
        descend.minimize(x0=torch.ones(2))
    with pytest.raises(KeyError):
        descend.minimize(lambda x: (x ** 2).sum(), torch.ones(2))["nope"]
