"""Every rule against the matching torch.optim optimizer: 50 steps, several parameter tensors."""

from __future__ import annotations

import functools

import pytest
import torch

import descend
from descend import rules
from descend.errors import InputError

torch.set_default_dtype(torch.float32)


def _problem():
    """A small least-squares-plus-penalty problem over three tensors of different shapes."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(20, 4, generator=g)
    y = torch.randn(20, 3, generator=g)
    start = {
        "W": torch.randn(4, 3, generator=g),
        "b": torch.randn(3, generator=g),
        "s": torch.randn((), generator=g),
    }

    def fn(p):
        pred = A @ p["W"] + p["b"]
        return ((pred - y) ** 2).mean() + 0.1 * (p["s"] - 1) ** 4 + 0.01 * (p["W"] ** 2).sum()

    return fn, start


# (descend rule, matching torch.optim factory, lr)
CASES = [
    (rules.GD(), functools.partial(torch.optim.SGD), 0.05),
    (rules.GD(weight_decay=0.1), functools.partial(torch.optim.SGD, weight_decay=0.1), 0.05),
    (rules.Momentum(), functools.partial(torch.optim.SGD, momentum=0.9), 0.02),
    (rules.Momentum(momentum=0.5, dampening=0.3),
     functools.partial(torch.optim.SGD, momentum=0.5, dampening=0.3), 0.02),
    (rules.Nesterov(), functools.partial(torch.optim.SGD, momentum=0.9, nesterov=True), 0.02),
    (rules.Adam(), functools.partial(torch.optim.Adam), 0.01),
    (rules.Adam(beta1=0.8, beta2=0.9, weight_decay=0.05),
     functools.partial(torch.optim.Adam, betas=(0.8, 0.9), weight_decay=0.05), 0.01),
    (rules.AdamW(), functools.partial(torch.optim.AdamW), 0.01),
    (rules.AdamW(weight_decay=0.3), functools.partial(torch.optim.AdamW, weight_decay=0.3), 0.01),
    (rules.RMSProp(), functools.partial(torch.optim.RMSprop), 0.01),
    (rules.RMSProp(momentum=0.5, centered=True),
     functools.partial(torch.optim.RMSprop, momentum=0.5, centered=True), 0.005),
    (rules.AdaGrad(), functools.partial(torch.optim.Adagrad), 0.1),
    (rules.AdaGrad(lr_decay=0.01, initial_accumulator_value=0.1),
     functools.partial(torch.optim.Adagrad, lr_decay=0.01, initial_accumulator_value=0.1), 0.1),
]


def _torch_iterates(factory, fn, start, lr, steps=50):
    params = {k: v.clone().requires_grad_(True) for k, v in start.items()}
    opt = factory(list(params.values()), lr=lr)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        fn(params).backward()
        opt.step()
        out.append({k: v.detach().clone() for k, v in params.items()})
    return out


def _descend_iterates(rule, fn, start, lr, steps=50):
    seen = []
    res = descend.minimize(fn, start, rule=rule, lr=lr, max_iter=steps,
                           observers=[lambda s: seen.append(s.params.build(s.values))])
    assert res.nit == steps
    return seen[1:], res


@pytest.mark.parametrize(("rule", "factory", "lr"), CASES, ids=lambda c: repr(c)[:40])
def test_rule_matches_torch_optim_for_50_steps(rule, factory, lr):
    fn, start = _problem()
    ours, _ = _descend_iterates(rule, fn, start, lr)
    theirs = _torch_iterates(factory, fn, start, lr)
    for k, (a, b) in enumerate(zip(ours, theirs), start=1):
        for name in start:
            torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6,
                                       msg=f"step {k}, {name}")


@pytest.mark.parametrize("name", sorted(rules.RULES))
def test_rule_names_resolve_to_their_class(name):
    assert isinstance(rules.make_rule(name), rules.RULES[name])
    assert rules.make_rule(name).name == name


@pytest.mark.parametrize(
    "factory",
    [torch.optim.SGD, functools.partial(torch.optim.SGD, momentum=0.9), torch.optim.Adam],
    ids=["SGD", "SGD-momentum", "Adam"],
)
def test_a_torch_optimizer_class_can_be_the_rule(factory):
    fn, start = _problem()
    before = {k: v.clone() for k, v in start.items()}
    ours, res = _descend_iterates(factory, fn, start, 0.01)
    theirs = _torch_iterates(factory, fn, start, 0.01)
    for a, b in zip(ours, theirs):
        for name in start:
            torch.testing.assert_close(a[name], b[name], rtol=1e-6, atol=1e-7)
    assert res.rule.startswith("torch.optim.")
    # the optimizer updates in place, yet x0 and the best point kept by reference are intact
    for name in start:
        assert torch.equal(start[name], before[name])
    best = res.history.loss.index(min(res.history.loss))
    for name in start:
        assert torch.equal(res.best_x[name], ours[best - 1][name] if best else before[name])
    assert res.best_loss == pytest.approx(fn(res.best_x).item(), rel=1e-6)


@pytest.mark.parametrize("name", sorted(rules.RULES))
def test_state_dict_resumes_a_rule_exactly(name):
    fn, start = _problem()
    rule = rules.make_rule(name)
    lr = 0.01
    values = [v.clone() for v in start.values()]
    rule.init(values)
    keys = list(start)

    def grads_at(vals):
        leaves = [v.clone().requires_grad_(True) for v in vals]
        loss = fn(dict(zip(keys, leaves)))
        return list(torch.autograd.grad(loss, leaves))

    for _ in range(10):
        values = rule.apply(values, rule.direction(values, grads_at(values)), lr)
    saved, at = rule.state_dict(), [v.clone() for v in values]
    for _ in range(10):
        values = rule.apply(values, rule.direction(values, grads_at(values)), lr)
    twin = rules.make_rule(name)
    twin.init(at)
    twin.load_state_dict(saved)
    again = at
    for _ in range(10):
        again = twin.apply(again, twin.direction(again, grads_at(again)), lr)
    for a, b in zip(values, again):
        assert torch.equal(a, b)


BAD = [
    (lambda: rules.Momentum(momentum=1.5), "momentum must lie in [0, 1), got 1.5"),
    (lambda: rules.Adam(beta2=-0.1), "beta2 must lie in [0, 1), got -0.1"),
    (lambda: rules.GD(weight_decay=-1), "weight_decay must be a finite number >= 0, got -1"),
    (lambda: rules.Nesterov(dampening=0.1),
     "nesterov needs dampening 0, got 0.1; use rule 'momentum'"),
    (lambda: rules.make_rule("sgdd"),
     "unknown rule 'sgdd'; known rules: adagrad, adam, adamw, bfgs, gd, lbfgs, momentum, "
     "nesterov, rmsprop"),
    (lambda: rules.make_rule(3), "rule must be a rule name, a descend Rule or a torch.optim."
     "Optimizer class, got 3"),
]


@pytest.mark.parametrize(("make", "msg"), BAD, ids=[m for _, m in BAD])
def test_bad_hyper_parameters_are_named(make, msg):
    with pytest.raises(InputError) as e:
        make()
    assert str(e.value) == msg
