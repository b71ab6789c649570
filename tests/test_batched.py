"""minimize(..., batched=True): K problems at once, each as if solved alone."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import descend
from descend import stops
from descend.batched import COMPACT_BELOW, BatchedResult
from descend.errors import InputError

K = 1000
EPS32 = torch.finfo(torch.float32).eps


def notebook_batch(k: int = K, seed: int = 0, dtype: torch.dtype = torch.float32):
    """k notebook problems: random targets and random starts, as the notebook draws them."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(k, 3, 3, generator=g, dtype=dtype),
            torch.rand(k, 3, 3, generator=g, dtype=dtype))


def mse(x, t):
    return ((x - t) ** 2).mean(dim=(1, 2))


def weighted(x, t, w):
    return w * ((x - t) ** 2).mean(dim=(1, 2))


def masked_oracle(X0, T, W, lr, threshold, cap):
    """An independent hand-written batched notebook loop with a mask: nit per problem."""
    x, nit = X0.clone(), torch.zeros(len(X0), dtype=torch.long)
    for _ in range(cap):
        x.requires_grad_(True)
        loss = weighted(x, T, W)
        (g,) = torch.autograd.grad(loss.sum(), x)
        active = loss.detach() > threshold
        if not active.any():
            break
        nit += active
        x = (x - lr * g * active[:, None, None]).detach()
    return nit


def test_1000_notebook_problems_stop_where_each_stops_alone():
    T, X0 = notebook_batch()
    res = descend.minimize(mse, X0, args=(T,), rule="gd", lr=1.0,
                           stop=stops.LossBelow(1e-5), batched=True)
    assert isinstance(res, BatchedResult) and len(res) == K
    assert res.reason == ["loss_below"] * K and bool(res.success.all())
    # every problem's iteration count, against an independent masked loop
    oracle = masked_oracle(X0, T, torch.ones(K), 1.0, 1e-5, 100)
    assert torch.equal(res.nit, oracle)
    assert int(res.nit.min()) < int(res.nit.max())  # they do stop at different iterations
    # against descend.minimize on each problem alone: every 4th problem (250 single solves take
    # about a second here; all 1,000 take 3 s, too slow for one test of a fast suite)
    for i in range(0, K, 4):
        alone = descend.minimize(lambda x, t=T[i]: F.mse_loss(x, t), X0[i], rule="gd", lr=1.0,
                                 stop=stops.LossBelow(1e-5))
        assert res.nit[i] == alone.nit and res[i].reason == alone.reason
        # The batch reduces each problem's 9 squares in its own row; on this torch that is the
        # same float32 sum as F.mse_loss (observed bit for bit on all 1,000). A different
        # reduction order may change the last bit of a loss, and through the gradient 2(x-t)/9
        # the last bit of an iterate: 2 float32 ulps relative, nothing more.
        torch.testing.assert_close(res.x[i], alone.x, rtol=2 * EPS32, atol=0)
        assert res[i].loss == pytest.approx(alone.loss, rel=4 * EPS32)


def test_problem_i_is_an_ordinary_result_with_its_own_history():
    T, X0 = notebook_batch(50, seed=3)
    res = descend.minimize(mse, X0, args=(T,), rule="gd", lr=1.0,
                           stop=stops.LossBelow(1e-5), batched=True)
    i = 17
    alone = descend.minimize(lambda x: F.mse_loss(x, T[i]), X0[i], rule="gd", lr=1.0,
                             stop=stops.LossBelow(1e-5))
    r = res[i]
    assert isinstance(r, descend.Result)
    assert (r.nit, r.reason, r.message) == (alone.nit, alone.reason, alone.message)
    assert r.history.iteration == alone.history.iteration
    assert r.history.loss == alone.history.loss
    assert r.history.nfev == alone.history.nfev
    assert torch.equal(r.best_x, alone.best_x) and r.best_loss == alone.best_loss
    assert torch.equal(res[-1].x, res.x[49])
    assert res.status.tolist() == [0] * 50 and res.fun is res.loss
    with pytest.raises(IndexError, match=r"problem index must be an int in \[-50, 50\)"):
        res[50]


def test_problems_of_different_difficulty_stop_at_their_own_iteration_and_reason():
    # loss weights 1, 0.5, 0.02: each slows gd (the step contracts the error by 1 - 2w/9);
    # the hardest need about 600 iterations and hit the cap of 60
    T, X0 = notebook_batch(300, seed=1)
    W = torch.tensor([1.0, 0.5, 0.02]).repeat(100)
    res = descend.minimize(weighted, X0, args=(T, W), rule="gd", lr=1.0,
                           stop=stops.LossBelow(1e-5), max_iter=60, batched=True)
    assert set(res.reason) == {"loss_below", "max_iter"}
    capped = [i for i, r in enumerate(res.reason) if r == "max_iter"]
    assert capped and all(W[i] == 0.02 for i in capped)
    assert (res.nit[torch.tensor(capped)] == 60).all()
    assert torch.equal(res.nit, masked_oracle(X0, T, W, 1.0, 1e-5, 60))
    for i in (0, 1, 2, 3, 4, 5):
        w = float(W[i])
        alone = descend.minimize(lambda x, t=T[i], w=w: w * F.mse_loss(x, t), X0[i], rule="gd",
                                 lr=1.0, stop=stops.LossBelow(1e-5), max_iter=60)
        assert (res.nit[i], res[i].reason) == (alone.nit, alone.reason)
        torch.testing.assert_close(res.x[i], alone.x, rtol=2 * EPS32, atol=0)


def test_one_diverging_and_one_nonfinite_problem_do_not_disturb_the_others():
    T, X0 = notebook_batch(300, seed=2, dtype=torch.float64)
    W = torch.ones(300, dtype=torch.float64)
    calm = descend.minimize(weighted, X0, args=(T, W), rule="gd", lr=1.0,
                            stop=stops.LossBelow(1e-10), batched=True)
    W[5] = 30.0  # lr 1 is far above 2/L = 9/60 for this one: it diverges
    W[7] = math.nan  # and this one is nan from the start
    res = descend.minimize(weighted, X0, args=(T, W), rule="gd", lr=1.0,
                           stop=stops.LossBelow(1e-10), batched=True)
    assert res.reason[5] == "diverged" and res.reason[7] == "nonfinite"
    assert res[5].message.startswith("diverged: the loss ")
    assert res.nit[7] == 0 and torch.equal(res.x[7], X0[7])  # x0 is its last finite point
    others = torch.tensor([i for i in range(300) if i not in (5, 7)])
    assert torch.equal(res.nit[others], calm.nit[others])
    assert torch.equal(res.x[others], calm.x[others])  # bit for bit: they never met
    assert res.reason.count("loss_below") == 298


def test_default_method_is_per_problem_lbfgs_with_strong_wolfe_as_alone():
    T, X0 = notebook_batch(60, seed=4, dtype=torch.float64)
    S = torch.linspace(0.2, 5.0, 60, dtype=torch.float64)  # different curvatures

    def rosen_ish(x, t, s):  # a quartic valley per problem, not a quadratic
        d = x - t
        return s * (d ** 2).sum(dim=(1, 2)) + ((d ** 2).sum(dim=(1, 2)) ** 2)

    res = descend.minimize(rosen_ish, X0, args=(T, S), batched=True)
    assert res.rule == "lbfgs" and res.step.startswith("strong Wolfe")
    for i in range(0, 60, 6):
        alone = descend.minimize(
            lambda x, t=T[i], s=S[i]: s * ((x - t) ** 2).sum() + ((x - t) ** 2).sum() ** 2,
            X0[i])
        assert (res.nit[i], res[i].reason) == (alone.nit, alone.reason)
        # the batch's dot products sum each row itself (torch.dot alone): the last bits of the
        # curvature pairs may differ, so the iterates agree to round-off of a converged point
        torch.testing.assert_close(res.x[i], alone.x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kw", [
    {"rule": "gd", "lr": "armijo"},
    {"rule": "momentum", "lr": 0.3},
    {"rule": "adam", "lr": 0.05},
    {"rule": "gd", "lr": lambda k: 1.5 / (1 + 0.1 * k)},
])
def test_other_rules_and_step_sizes_match_alone(kw):
    T, X0 = notebook_batch(40, seed=5, dtype=torch.float64)
    res = descend.minimize(mse, X0, args=(T,), max_iter=300, batched=True, **kw)
    for i in range(0, 40, 8):
        alone = descend.minimize(lambda x, t=T[i]: F.mse_loss(x, t), X0[i], max_iter=300, **kw)
        assert (res.nit[i], res[i].reason) == (alone.nit, alone.reason)
        torch.testing.assert_close(res.x[i], alone.x, rtol=0, atol=1e-12)


def test_finished_problems_are_compacted_away_and_results_keep_their_order():
    T, X0 = notebook_batch(200, seed=6)
    W = torch.where(torch.arange(200) % 2 == 0, 1.0, 0.05)  # the odd half needs ~10x longer
    seen = []

    def counting(x, t, w):
        seen.append(len(x))
        return weighted(x, t, w)

    res = descend.minimize(counting, X0, args=(T, W), rule="gd", lr=1.0,
                           stop=stops.LossBelow(1e-5), batched=True)
    assert max(seen) == 200 and min(seen) <= 100 * (1 + COMPACT_BELOW)  # the evens left
    assert sum(seen) < 0.7 * 200 * (int(res.nit.max()) + 1)
    assert torch.equal(res.nit, masked_oracle(X0, T, W, 1.0, 1e-5, 1000))


def test_dict_x0_and_a_shared_non_tensor_arg():
    T, X0 = notebook_batch(20, seed=7, dtype=torch.float64)
    x0 = {"a": X0[:, 0], "b": X0[:, 1:]}

    def fn(p, t, scale):
        return scale * (((p["a"] - t[:, 0]) ** 2).sum(1) + ((p["b"] - t[:, 1:]) ** 2).sum((1, 2)))

    res = descend.minimize(fn, x0, args=(T, 2.0), batched=True)
    assert set(res.x) == {"a", "b"} and res.x["b"].shape == (20, 2, 3)
    torch.testing.assert_close(res.x["b"], T[:, 1:], rtol=0, atol=1e-8)
    assert res[3].x["a"].shape == (3,)


def test_bad_inputs_are_refused_up_front_with_the_fix():
    T, X0 = notebook_batch(10)
    with pytest.raises(InputError, match=r"^with batched=True, fn must return one loss per "
                       r"problem, shape \(10,\), got shape \(\); reduce over every dimension "
                       r"but the first, e.g\. \(\(x - t\) \*\* 2\)\.mean\(dim=\(1, 2\)\) "
                       r"rather than F\.mse_loss\(x, t\)$"):
        descend.minimize(lambda x, t: F.mse_loss(x, t), X0, args=(T,), batched=True)
    with pytest.raises(InputError, match=r"^with batched=True, every tensor in x0 and args has "
                       r"the problem dimension K first: x0 has K = 10, but args\[0\] has shape "
                       r"\(3, 3\); stack its values per problem along dimension 0 \(a value "
                       r"shared by all problems: \.expand\(10, \.\.\.\)\)$"):
        descend.minimize(mse, X0, args=(T[0],), batched=True)
    with pytest.raises(InputError, match=r"with batched=True, rule 'bfgs' .* cannot run per "
                       r"problem; supported: rules gd, momentum, nesterov"):
        descend.minimize(mse, X0, args=(T,), rule="bfgs", batched=True)
    with pytest.raises(InputError, match=r"rule 'gd' with lr='auto .* cannot run per problem"):
        descend.minimize(mse, X0, args=(T,), rule="gd", batched=True)
    with pytest.raises(InputError, match=r"^with batched=True, stop may hold only NonFinite, "
                       r"Diverged, LossBelow, GradNormBelow, MaxIter, Stationary, Stalled; got "
                       r"TimeLimit\(seconds=1\.0\)"):
        descend.minimize(mse, X0, args=(T,), stop=stops.TimeLimit(1), batched=True)
    with pytest.raises(InputError, match=r"^with batched=True, callback= is not supported"):
        descend.minimize(mse, X0, args=(T,), callback=print, batched=True)
    with pytest.raises(InputError, match=r"^with batched=True, on_divergence must be 'stop'"):
        descend.minimize(mse, X0, args=(T,), on_divergence="backtrack", batched=True)


def decays(k: int = 30, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.linspace(0, 4, 30, dtype=torch.float64).expand(k, 30)
    a = 1 + torch.rand(k, 1, generator=g, dtype=torch.float64)
    b = 0.5 + torch.rand(k, 1, generator=g, dtype=torch.float64)
    y = a * torch.exp(-b * x) + 0.01 * torch.randn(k, 30, generator=g, dtype=torch.float64)
    return x, y, torch.ones(k, 2, dtype=torch.float64)


def test_batched_least_squares_is_each_problem_solved_alone_by_lbfgs():
    x, y, p0 = decays()
    res = descend.least_squares(lambda p, x, y: p[:, :1] * torch.exp(-p[:, 1:] * x) - y, p0,
                                args=(x, y), batched=True)
    assert res.rule == "lbfgs"
    for i in range(0, 30, 6):
        alone = descend.least_squares(lambda p, i=i: p[0] * torch.exp(-p[1] * x[i]) - y[i],
                                      p0[i], rule="lbfgs")
        assert (res.nit[i], res[i].reason) == (alone.nit, alone.reason)
        assert res[i].loss == pytest.approx(alone.loss, rel=1e-12)  # loss is 1/2 |r|^2
        torch.testing.assert_close(res.x[i], alone.x, rtol=0, atol=1e-9)
    with pytest.raises(InputError, match=r"^with batched=True, rule 'lm' cannot run per "
                       r"problem \(its damped solves are per run\)"):
        descend.least_squares(lambda p, x, y: p[:, :1] * x - y, p0, args=(x, y), rule="lm",
                              batched=True)


def test_batched_curve_fit_gives_each_fit_its_parameters_and_covariance():
    x, y, p0 = decays()

    def model(x, a, b):  # scipy's way: each parameter a (w, 1) column in the batch
        return a * torch.exp(-b * x)

    fit = descend.curve_fit(model, x, y, p0, batched=True)
    assert fit.popt.shape == (30, 2) and fit.pcov.shape == (30, 2, 2)
    assert bool(fit.result.success.all())
    for i in range(0, 30, 6):
        alone = descend.curve_fit(model, x[i], y[i], p0[i])  # Levenberg-Marquardt alone
        # two methods, one optimum: equal to the optimum's round-off (cost ~1e-3, |p| ~ 1)
        torch.testing.assert_close(fit.popt[i], alone.popt, rtol=1e-6, atol=0)
        torch.testing.assert_close(fit.pcov[i], alone.pcov, rtol=1e-5, atol=0)
