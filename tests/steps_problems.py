"""Small problems with closed-form optima for the step-size, quasi-Newton and guard tests
(independent of ``descend.problems``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

NOTEBOOK_TARGET = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]])


@dataclass
class Case:
    name: str
    fn: Callable[[Tensor], Tensor]
    x0: Tensor
    x_star: Tensor
    threshold: float  # f* = 0 for every case


def notebook() -> Case:
    torch.manual_seed(0)
    x0 = torch.rand(3, 3)
    return Case("notebook", lambda x: F.mse_loss(x, NOTEBOOK_TARGET), x0,
                NOTEBOOK_TARGET.clone(), 1e-5)


def quadratic(cond: float, n: int = 20, dtype: torch.dtype = torch.float64) -> Case:
    """``f(x) = 1/2 (x - x*)^T A (x - x*)``, eigenvalues log-spaced in [1, cond], f* = 0."""
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    a = (q * torch.logspace(0, torch.log10(torch.tensor(cond)).item(), n,
                            dtype=torch.float64)) @ q.T
    a = a.to(dtype)
    x_star = torch.randn(n, generator=g, dtype=torch.float64).to(dtype)

    def quad(x: Tensor) -> Tensor:
        e = x - x_star
        return 0.5 * e @ (a @ e)

    return Case(f"quadratic_k{cond:g}", quad, torch.zeros(n, dtype=dtype), x_star,
                1e-10 * float(quad(torch.zeros(n, dtype=dtype))))


def rosenbrock(n: int = 2, dtype: torch.dtype = torch.float64) -> Case:
    def rosen(x: Tensor) -> Tensor:
        return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()

    x0 = torch.tensor([-1.2, 1.0] * (n // 2), dtype=dtype)
    return Case(f"rosenbrock_{n}", rosen, x0, torch.ones(n, dtype=dtype), 1e-10)


class Flip(torch.autograd.Function):
    """``f(x) = x^2`` whose backward claims the gradient is ``-4x``: a gradient that does not
    match its loss, so no step along ``-u`` decreases ``f``."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return -4 * x * g
