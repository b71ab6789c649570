"""The batched loop's fast paths give the numbers of the plain ones: the backward pass straight
to the autograd engine against ``torch.autograd.grad``, and the per-iteration screen (one read,
in the losses' dtype) against hand-written loops that test every criterion in float64."""

from __future__ import annotations

import math

import pytest
import torch

import descend
from descend import batched_parts, stops


def weighted(x, t, w):
    return w * ((x - t) ** 2).mean(dim=(1, 2))


def problems(k: int, seed: int, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    T = torch.rand(k, 3, 3, generator=g, dtype=dtype)
    X0 = torch.rand(k, 3, 3, generator=g, dtype=dtype)
    W = torch.where(torch.rand(k, generator=g) < 0.3, 0.08, 1.0).to(dtype)
    return X0, T, W


def float64_oracle(fn, X0, args, lr, threshold, cap):
    """gd with a mask, every test in float64: the iteration each problem first has
    ``float64(loss) <= threshold`` (``cap`` if never), and its final point."""
    x = X0.clone()
    nit = torch.full((len(x),), cap, dtype=torch.long)
    done = torch.zeros(len(x), dtype=torch.bool)
    final = x.clone()
    for k in range(cap + 1):
        x.requires_grad_(True)
        loss = fn(x, *args)
        (g,) = torch.autograd.grad(loss.sum(), x)
        x = x.detach()
        now = (loss.detach().double() <= threshold) & ~done
        nit[now] = k
        final[now] = x[now]
        done |= now
        if bool(done.all()) or k == cap:
            final[~done] = x[~done]
            return nit, final
        x = x - lr * g


def result_fields(res):
    hist = [(h.iteration, h.loss, h.grad_norm, h.lr, h.nfev)
            for h in (res[i].history for i in range(len(res)))]
    return (res.x, res.best_x, res.jac, res.loss, res.best_loss, res.grad_norm, res.nit,
            res.nfev, res.reason_code, res.message, hist)


def assert_same(a, b):
    for u, v in zip(result_fields(a), result_fields(b)):
        if isinstance(u, dict):
            assert u.keys() == v.keys() and all(torch.equal(u[k], v[k]) for k in u)
        elif isinstance(u, torch.Tensor):
            assert torch.equal(u, v)
        else:
            assert u == v


@pytest.mark.parametrize("how", ["gd", "lbfgs"])
def test_the_engine_call_gives_what_autograd_grad_gives(monkeypatch, how):
    X0, T, W = problems(60, seed=1, dtype=torch.float64)
    kw = {"rule": "gd", "lr": 1.0, "max_iter": 200} if how == "gd" else {}

    def solve():
        return descend.minimize(weighted, X0, args=(T, W), batched=True, **kw)

    def solve_dict():
        return descend.minimize(lambda p, t, w: weighted(torch.cat([p["a"], p["b"]], 1), t, w),
                                {"a": X0[:, :1], "b": X0[:, 1:]}, args=(T, W), batched=True,
                                **kw)

    fast, fast_dict = solve(), solve_dict()
    monkeypatch.setattr(batched_parts, "_run_backward", None)  # torch.autograd.grad(loss.sum())
    assert_same(fast, solve())
    assert_same(fast_dict, solve_dict())


def test_a_threshold_met_exactly_or_between_float32_values_stops_where_float64_says():
    # thresholds at a float32 loss of the run, and just above and below it in float64 (between
    # two float32 values): the screen rounds them to float32, the stop is tested in float64
    X0, T, W = problems(40, seed=2)
    probe = descend.minimize(weighted, X0, args=(T, W), rule="gd", lr=1.0, max_iter=30,
                             stop=stops.LossBelow(0.0), batched=True)
    f = probe[5].history.loss[12]  # a float32 value, exactly
    for threshold in (f, f * (1 + 2 ** -30), f * (1 - 2 ** -30)):
        res = descend.minimize(weighted, X0, args=(T, W), rule="gd", lr=1.0, max_iter=60,
                               stop=stops.LossBelow(threshold), batched=True)
        nit, final = float64_oracle(weighted, X0, (T, W), 1.0, threshold, 60)
        assert torch.equal(res.nit, nit)
        assert torch.equal(res.x, final)
        assert int(res.nit[5]) == (12 if threshold >= f else 13)


def test_losses_whose_float32_sum_overflows_stop_as_in_float64():
    # losses near 1e37: their sum over the batch is inf in float32 (the screen cannot tell),
    # and every test falls back to float64 without a spurious stop
    g = torch.Generator().manual_seed(3)
    X0, T = torch.rand(200, 3, 3, generator=g), torch.rand(200, 3, 3, generator=g)
    assert math.isinf(float((1e37 * T[:, 0, 0]).sum()))

    def big(x, t):
        return ((x - t) ** 2).sum(dim=(1, 2)) * 1e18 + 1e37 * t[:, 0, 0]

    res = descend.minimize(big, X0, args=(T,), rule="gd", lr=1e-19, max_iter=50,
                           stop=stops.LossBelow(3e36), batched=True)
    nit, final = float64_oracle(big, X0, (T,), 1e-19, 3e36, 50)
    assert set(res.reason) == {"loss_below", "max_iter"}
    assert torch.equal(res.nit, nit) and torch.equal(res.x, final)


def test_a_finished_problem_going_nan_in_the_working_set_disturbs_no_one():
    # problem 0 stops (loss <= 1.5) at iteration 1 and stays in the working set (no
    # compaction: 9 of 10 still run); its next iterate is log's pole, so its loss and gradient
    # turn nan there while the others run on, as if it had never been in the batch
    def cliff(x, t, w, c):
        return w * (x - t) ** 2 + 0.0 * torch.log(c - x)

    x0 = torch.zeros(10, dtype=torch.float64)
    t = torch.tensor([2.0] + [5.0 + 0.1 * i for i in range(9)], dtype=torch.float64)
    w = torch.tensor([1.0] + [0.1] * 9, dtype=torch.float64)
    c = torch.tensor([1.5] + [10.0] * 9, dtype=torch.float64)
    kw = {"rule": "gd", "lr": 0.25, "stop": stops.LossBelow(1.5)}
    res = descend.minimize(cliff, x0, args=(t, w, c), batched=True, **kw)
    calm = descend.minimize(cliff, x0[1:], args=(t[1:], w[1:], c[1:]), batched=True, **kw)
    assert (res.reason[0], int(res.nit[0]), float(res.x[0])) == ("loss_below", 1, 1.0)
    assert math.isnan(float(cliff(torch.tensor([1.5]), 2.0, 1.0, 1.5)))
    assert torch.equal(res.nit[1:], calm.nit) and torch.equal(res.x[1:], calm.x)
    assert res.reason[1:] == calm.reason == ["loss_below"] * 9 and int(calm.nit.min()) > 2
