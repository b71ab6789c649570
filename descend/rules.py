"""Update rules: how the gradient and the rule's state become a step.

Every rule turns the gradient ``g_k`` into an *update vector* ``u_k`` and the loop moves

    x_{k+1} = x_k - lr_k * u_k

so ``u = g`` for the notebook's plain gradient descent and ``-u`` is the search direction a line
search walks along. Each rule is a small dataclass: hyper-parameters as fields (validated in
``__post_init__``, naming the bad value), state in ``self.state`` (plain tensors and numbers),
``init(values)`` to (re)start, ``direction(values, grads)`` to compute ``u``,
``apply(values, u, lr, out)`` to take the step (out of place, or into the spare storage ``out``
the loop hands it), and ``state_dict`` /
``load_state_dict`` for checkpoints. All work on lists of tensors with ``torch._foreach_*``
kernels, the same fast path ``torch.optim`` takes, and are tested iterate-for-iterate against
``torch.optim``. The element-wise rules keep their per-step intermediates in workspaces
(``_ws``, reused every step, never checkpointed), so a step allocates nothing.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import Tensor

from .errors import InputError, InputTypeError, check_fraction, check_positive

__all__ = [
    "BFGS",
    "GD",
    "LBFGS",
    "RULES",
    "AdaGrad",
    "Adam",
    "AdamW",
    "Momentum",
    "Nesterov",
    "RMSProp",
    "Rule",
    "TorchOptimizer",
    "make_rule",
]


_aten = torch.ops.aten


def _add_weight_decay(rule: Rule, grads: list[Tensor], values: list[Tensor],
                      wd: float) -> list[Tensor]:
    """``g + wd * x`` into a workspace (``g`` itself when ``wd`` is 0)."""
    if not wd:
        return grads
    out = rule._work("wd", grads)
    _aten._foreach_add.List_out(grads, values, alpha=wd, out=out)
    return out


@dataclass
class Rule:
    """Base of all update rules. Subclasses set ``name`` and ``default_lr`` and implement
    :meth:`direction`.

    Attributes:
        state: the rule's state (buffers and the step count), plain data for checkpoints.
    """

    name: ClassVar[str] = "rule"
    default_lr: ClassVar[float] = 1e-3
    #: True when ``apply`` is ``x - lr * u`` for any lr (line searches need it).
    scalable: ClassVar[bool] = True
    #: True when ``u`` is Newton-scaled (lr = 1 is the natural step): such rules are always
    #: paired with the strong-Wolfe line search (see :func:`descend.steps.make_step`).
    newton_scaled: ClassVar[bool] = False
    state: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _ws: dict[str, list[Tensor]] = field(default_factory=dict, init=False, repr=False,
                                         compare=False)

    def _work(self, key: str, like: list[Tensor]) -> list[Tensor]:
        """A workspace shaped like ``like``, reused from step to step (the same values as a fresh
        result: only where it is written changes)."""
        ws = self._ws.get(key)
        if ws is None or len(ws) != len(like) or any(
                w.shape != t.shape or w.dtype != t.dtype or w.device != t.device
                for w, t in zip(ws, like)):
            ws = self._ws[key] = [torch.empty_like(t) for t in like]
        return ws

    def init(self, values: list[Tensor]) -> None:
        """Reset the state for parameters shaped like ``values``."""
        self.state = {"step": 0}

    def direction(self, values: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        """Advance the state by one step and return the update vector ``u`` (one per tensor).

        ``u`` may share storage with the state or with ``grads``: read it, never write into it.
        """
        raise NotImplementedError

    def apply(self, values: list[Tensor], u: list[Tensor], lr: float,
              out: list[Tensor] | None = None) -> list[Tensor]:
        """Return the new values ``x - lr * u``: written into ``out`` (storage shaped like
        ``values`` that the run owns: a spare, or the gradient just used, which may be ``u``
        itself; never ``values``) when given, else into new tensors. Both give the same numbers
        (the same element-wise kernels)."""
        if out is not None:
            if len(values) == 1:
                torch.add(values[0], u[0], alpha=-lr, out=out[0])
            else:
                _aten._foreach_add.List_out(values, u, alpha=-lr, out=out)
            return out
        if len(values) == 1:
            return [torch.add(values[0], u[0], alpha=-lr)]
        return list(torch._foreach_add(values, u, alpha=-lr))

    def state_dict(self) -> dict[str, Any]:
        """The state as plain data (tensors cloned)."""
        return copy.deepcopy(self.state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`."""
        self.state = copy.deepcopy(state)

    def hyper(self) -> dict[str, Any]:
        """The hyper-parameters, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}


@dataclass
class GD(Rule):
    """Plain gradient descent, the notebook's rule: ``u = g + wd * x``.

    ``x <- x - lr * grad``, exactly as ``torch.optim.SGD`` without momentum.
    """

    name: ClassVar[str] = "gd"
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        check_positive("weight_decay", self.weight_decay, allow_zero=True)

    def direction(self, values: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        self.state["step"] += 1
        return _add_weight_decay(self, grads, values, self.weight_decay)


@dataclass
class Momentum(GD):
    """Heavy-ball momentum, as ``torch.optim.SGD(momentum=mu, dampening=tau)``.

    ``b_1 = g_1``, ``b_k = mu * b_{k-1} + (1 - tau) * g_k``, ``u = b_k``.

    References:
        Polyak, "Some methods of speeding up the convergence of iteration methods", 1964.
    """

    name: ClassVar[str] = "momentum"
    momentum: float = 0.9
    dampening: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fraction("momentum", self.momentum)
        check_fraction("dampening", self.dampening)

    def _buffer(self, grads: list[Tensor]) -> list[Tensor]:
        buf = self.state.get("buf")
        if buf is None:
            buf = [g.clone() for g in grads]
            self.state["buf"] = buf
        else:
            torch._foreach_mul_(buf, self.momentum)
            torch._foreach_add_(buf, grads, alpha=1 - self.dampening)
        return buf

    def direction(self, values: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        return self._buffer(super().direction(values, grads))


@dataclass
class Nesterov(Momentum):
    """Nesterov momentum, as ``torch.optim.SGD(momentum=mu, nesterov=True)``.

    ``b_k = mu * b_{k-1} + g_k``, ``u = g_k + mu * b_k``.

    References:
        Nesterov, "A method of solving a convex programming problem with convergence rate
        O(1/k^2)", 1983; Sutskever et al., "On the importance of initialization and momentum in
        deep learning", 2013.
    """

    name: ClassVar[str] = "nesterov"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dampening:
            raise InputError(
                f"nesterov needs dampening 0, got {self.dampening!r}; use rule 'momentum'"
            )

    def direction(self, values: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        g = GD.direction(self, values, grads)
        u = self._work("u", g)
        _aten._foreach_add.List_out(g, self._buffer(g), alpha=self.momentum, out=u)
        return u


@dataclass
class Adam(Rule):
    """Adam, as ``torch.optim.Adam`` (L2 weight decay added to the gradient).

    ``m_k = b1 m + (1-b1) g``, ``v_k = b2 v + (1-b2) g^2``,
    ``u = m_k / (1-b1^k) / (sqrt(v_k / (1-b2^k)) + eps)``.

    References:
        Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """

    name: ClassVar[str] = "adam"
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    fused: bool = False

    def __post_init__(self) -> None:
        check_fraction("beta1", self.beta1)
        check_fraction("beta2", self.beta2)
        check_positive("eps", self.eps, allow_zero=True)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        if not isinstance(self.fused, bool):
            raise InputTypeError(f"fused must be True or False, got {self.fused!r}")

    def init(self, values: list[Tensor]) -> None:
        self.state = {
            "step": 0,
            "m": [torch.zeros_like(v) for v in values],
            "v": [torch.zeros_like(v) for v in values],
        }

    def _adam(self, grads: list[Tensor]) -> list[Tensor]:
        s = self.state
        s["step"] += 1
        k = s["step"]
        torch._foreach_lerp_(s["m"], grads, 1 - self.beta1)
        torch._foreach_mul_(s["v"], self.beta2)
        torch._foreach_addcmul_(s["v"], grads, grads, value=1 - self.beta2)
        bc1 = 1 - self.beta1**k
        bc2_sqrt = math.sqrt(1 - self.beta2**k)
        u = self._work("u", grads)
        _aten._foreach_sqrt.out(s["v"], out=u)  # the denominator, then u in the same storage
        torch._foreach_div_(u, bc2_sqrt)
        torch._foreach_add_(u, self.eps)
        _aten._foreach_div.List_out(s["m"], u, out=u)
        torch._foreach_div_(u, bc1)
        return u

    def direction(self, values: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        return self._adam(_add_weight_decay(self, grads, values, self.weight_decay))

    #: torch's fused kernel for this rule (L2 decay; AdamW: decoupled).
    _fused_op: ClassVar[str] = "_fused_adam_"

    def fused_step(self, values: list[Tensor], grads: list[Tensor], lr: float,
                   out: list[Tensor] | None) -> list[Tensor] | None:
        """With ``fused=True`` and a fixed or scheduled step, :meth:`direction` and
        :meth:`apply` as one kernel: the state advanced and ``x - lr * u`` written into ``out``
        (the in-place path's spare storage; None: new tensors), through torch's fused Adam
        (``torch._fused_adam_``, what ``torch.optim.Adam(fused=True)`` runs; AdamW's through
        ``_fused_adamw_``): ``x`` copied into ``out``, then one pass reads ``x, g, m, v`` and
        writes ``x, m, v``, where the element-wise path makes about 20 passes. The numbers are
        the fused optimizer's to the bit, and the element-wise path's to rounding only (which
        is why it is asked for, as in ``torch.optim``). None (nothing done) where torch has no
        such kernel (a dtype or device it does not take)."""
        v0 = values[0]
        if not v0.is_floating_point() or v0.device.type not in ("cpu", "cuda"):
            return None
        s = self.state
        s["step"] += 1
        out = out if out is not None else [torch.empty_like(v) for v in values]
        torch._foreach_copy_(out, values)
        steps = [torch.tensor(float(s["step"]), device=v.device) for v in values]
        getattr(torch, self._fused_op)(
            out, list(grads), s["m"], s["v"], [], steps, lr=lr, beta1=self.beta1,
            beta2=self.beta2, weight_decay=self.weight_decay, eps=self.eps, amsgrad=False,
            maximize=False)
        return out


@dataclass
class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: Adam plus decoupled weight decay,
    ``u = adam(g) + wd * x`` (so ``x <- x (1 - lr wd) - lr adam(g)``).

    References:
        Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """

    name: ClassVar[str] = "adamw"
    weight_decay: float = 1e-2
    _fused_op: ClassVar[str] = "_fused_adamw_"

    def direction(self, values: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        u = self._adam(grads)
        if self.weight_decay:
            torch._foreach_add_(u, values, alpha=self.weight_decay)
        return u


@dataclass
class RMSProp(Rule):
    """RMSprop, as ``torch.optim.RMSprop``.

    ``s = a s + (1-a) g^2`` (centred: minus the squared running mean of ``g``),
    ``u = g / (sqrt(s) + eps)``; with momentum ``b = mu b + g / (sqrt(s) + eps)``, ``u = b``.

    References:
        Tieleman & Hinton, Lecture 6.5 of "Neural Networks for Machine Learning", 2012.
    """

    name: ClassVar[str] = "rmsprop"
    default_lr: ClassVar[float] = 1e-2
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    centered: bool = False
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        check_fraction("alpha", self.alpha)
        check_positive("eps", self.eps, allow_zero=True)
        check_fraction("momentum", self.momentum)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)

    def init(self, values: list[Tensor]) -> None:
        self.state = {"step": 0, "sq": [torch.zeros_like(v) for v in values]}
        if self.centered:
            self.state["mean"] = [torch.zeros_like(v) for v in values]
        if self.momentum:
            self.state["buf"] = [torch.zeros_like(v) for v in values]

    def direction(self, values: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        s = self.state
        s["step"] += 1
        g = _add_weight_decay(self, grads, values, self.weight_decay)
        torch._foreach_mul_(s["sq"], self.alpha)
        torch._foreach_addcmul_(s["sq"], g, g, value=1 - self.alpha)
        avg = self._work("avg", g)
        if self.centered:
            torch._foreach_lerp_(s["mean"], g, 1 - self.alpha)
            _aten._foreach_addcmul.Scalar_out(s["sq"], s["mean"], s["mean"], value=-1, out=avg)
            torch._foreach_sqrt_(avg)
        else:
            _aten._foreach_sqrt.out(s["sq"], out=avg)
        torch._foreach_add_(avg, self.eps)
        if self.momentum:
            torch._foreach_mul_(s["buf"], self.momentum)
            torch._foreach_addcdiv_(s["buf"], g, avg)
            return s["buf"]
        _aten._foreach_div.List_out(g, avg, out=avg)
        return avg


@dataclass
class AdaGrad(Rule):
    """AdaGrad, as ``torch.optim.Adagrad``.

    ``s = s + g^2``, ``u = g / (sqrt(s) + eps) / (1 + (k-1) decay)``.

    References:
        Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and Stochastic
        Optimization", JMLR 2011.
    """

    name: ClassVar[str] = "adagrad"
    default_lr: ClassVar[float] = 1e-2
    lr_decay: float = 0.0
    eps: float = 1e-10
    initial_accumulator_value: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        check_positive("lr_decay", self.lr_decay, allow_zero=True)
        check_positive("eps", self.eps, allow_zero=True)
        check_positive("initial_accumulator_value", self.initial_accumulator_value,
                       allow_zero=True)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)

    def init(self, values: list[Tensor]) -> None:
        a = self.initial_accumulator_value
        self.state = {"step": 0, "sum": [torch.full_like(v, a) for v in values]}

    def direction(self, values: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        s = self.state
        s["step"] += 1
        g = _add_weight_decay(self, grads, values, self.weight_decay)
        torch._foreach_addcmul_(s["sum"], g, g, value=1)
        u = self._work("u", g)
        _aten._foreach_sqrt.out(s["sum"], out=u)  # the std, then u in the same storage
        torch._foreach_add_(u, self.eps)
        _aten._foreach_div.List_out(g, u, out=u)
        if self.lr_decay:
            torch._foreach_div_(u, 1 + (s["step"] - 1) * self.lr_decay)
        return u


def _flat(ts: list[Tensor]) -> Tensor:
    """All tensors as one flat vector (a view for a single tensor; never written into)."""
    if len(ts) == 1:
        return ts[0].reshape(-1)
    return torch.cat([t.reshape(-1) for t in ts])


def _unflat(v: Tensor, like: list[Tensor]) -> list[Tensor]:
    if len(like) == 1:
        return [v.reshape(like[0].shape).to(like[0].dtype)]
    out, i = [], 0
    for t in like:
        n = t.numel()
        out.append(v[i:i + n].reshape(t.shape).to(t.dtype))
        i += n
    return out


def _magnitudes(values: list[Tensor]) -> Tensor:
    """The diagonal scaling of the quasi-Newton rules: ``d_i = |x_i|`` at the (re)start, the
    tensor's RMS where ``x_i = 0``, 1 where all of it is 0 (flat, in the parameters' dtype)."""
    parts = []
    for v in values:
        a = v.detach().abs().reshape(-1)
        rms = float(torch.linalg.vector_norm(a)) / math.sqrt(max(a.numel(), 1))
        parts.append(torch.where(a > 0, a, torch.full_like(a, rms if rms > 0 else 1.0)))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _check_real(name: str, values: list[Tensor]) -> None:
    if any(v.is_complex() for v in values):
        raise InputError(f"rule {name!r} needs real parameters, got a complex tensor; "
                         "split it into real and imaginary parts")


@dataclass
class LBFGS(Rule):
    """Limited-memory BFGS: ``u = H_k g`` by the two-loop recursion over the last
    ``history_size`` curvature pairs ``s_i = x_{i+1} - x_i``, ``y_i = g_{i+1} - g_i``, with
    ``H_0 = (s.y / y.y) I`` from the newest pair. With no pair yet (the first step, or after a
    restart) ``u = g / |g|``, so the line search's unit first trial is a unit-length move (as in
    L-BFGS-B). A pair is skipped when ``s.y <= eps * |s| |y|`` (the curvature is not safely
    positive; a relative test, so it does not depend on the scale of ``f`` or ``x``); the strong
    Wolfe line search it is always paired with makes this rare. The pairs live in
    ``state`` (flattened, in the parameters' dtype) and are checkpointed by ``state_dict``.

    With ``scale=True`` the rule works in the coordinates ``z = x / D``, ``D_i = |x_i|`` at the
    (re)start (the tensor's RMS where ``x_i = 0``): the pairs, ``H_0`` and the first move
    ``D^2 g / |D g|`` are in ``z``, so the iterates do not depend on the units of each parameter,
    and a badly scaled curve fit (parameters of sizes 1e-2 and 1e3, say) is solved from its usual
    start without rescaling by hand. A restart takes ``D`` afresh from the current point. With
    ``scale=None`` (the default) the rule starts unscaled (a random start's magnitudes are no
    sizes), and the loop turns the scaling on once, restarting from the best point, when the
    run would end in a failure (:func:`descend.loop.run`'s ``# rescale?``); ``False`` never.

    Pick it for smooth deterministic problems of any size: it is the default of ``minimize``.

    References:
        Nocedal, "Updating quasi-Newton matrices with limited storage", Math. Comp. 35, 1980;
        Liu & Nocedal, "On the limited memory BFGS method for large scale optimization",
        Math. Prog. 45, 1989; Nocedal & Wright, Numerical Optimization, Alg. 7.4-7.5.
    """

    name: ClassVar[str] = "lbfgs"
    default_lr: ClassVar[float] = 1.0
    newton_scaled: ClassVar[bool] = True
    history_size: int = 10
    eps: float = 1e-10
    scale: bool | None = None

    def __post_init__(self) -> None:
        if (isinstance(self.history_size, bool) or not isinstance(self.history_size, int)
                or self.history_size < 1):
            raise InputError(f"history_size must be a whole number >= 1, got {self.history_size!r}")
        check_positive("eps", self.eps, allow_zero=True)

    def init(self, values: list[Tensor]) -> None:
        _check_real(self.name, values)
        self.state = {"step": 0, "s": [], "y": [], "rho": [], "x": None, "g": None,
                      "skipped": 0, "d": _magnitudes(values) if self.scale else None}

    def _update(self, x: Tensor, g: Tensor) -> tuple[Tensor, Tensor, float] | None:
        """The new pair ``(s, y, s.y)`` if it passes the curvature test, else ``None``."""
        st = self.state
        x_prev, g_prev = st["x"], st["g"]
        st["x"], st["g"] = x, g
        if x_prev is None:
            return None
        s, y = x - x_prev, g - g_prev
        sy = torch.dot(s, y).item()
        norms = torch.linalg.vector_norm(s).item() * torch.linalg.vector_norm(y).item()
        if not sy > self.eps * norms:
            st["skipped"] += 1
            return None
        return s, y, sy

    def direction(self, values: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        self.state["step"] += 1
        d = self.state.get("d")
        x, g = _flat(values), _flat(grads)
        if d is not None:  # work in z = x / d, where the coordinates have similar sizes
            x, g = x / d, g * d
        pair = self._update(x, g)
        if pair is not None:
            self._remember(*pair)
        if not self._has_curvature():  # first step or after a restart: a unit-length move
            gn = torch.linalg.vector_norm(g)
            u = g / gn if gn > 0 else g
        else:
            u = self._inverse_hessian_times(g)
        return _unflat(u * d if d is not None else u, values)

    def _remember(self, s: Tensor, y: Tensor, sy: float) -> None:
        st = self.state
        st["s"].append(s)
        st["y"].append(y)
        st["rho"].append(1.0 / sy)
        if len(st["s"]) > self.history_size:
            for k in ("s", "y", "rho"):
                st[k].pop(0)

    def _has_curvature(self) -> bool:
        return bool(self.state["s"])

    def _inverse_hessian_times(self, g: Tensor) -> Tensor:
        """``H_k g`` by the two-loop recursion (N&W Alg. 7.4)."""
        st = self.state
        q = g.clone()
        alphas = []
        for s, y, rho in zip(reversed(st["s"]), reversed(st["y"]), reversed(st["rho"])):
            a = rho * torch.dot(s, q)
            q.sub_(y * a)
            alphas.append(a)
        s, y = st["s"][-1], st["y"][-1]
        q.mul_(torch.dot(s, y) / torch.dot(y, y))
        for s, y, rho, a in zip(st["s"], st["y"], st["rho"], reversed(alphas)):
            b = rho * torch.dot(y, q)
            q.add_(s * (a - b))
        return q


#: Above this many parameters ``bfgs`` refuses (its matrix has n^2 entries); use ``lbfgs``.
BFGS_MAX_NUMEL = 10_000


@dataclass
class BFGS(LBFGS):
    """BFGS with a dense inverse-Hessian approximation ``H`` on the flattened parameters::

        H+ = (I - rho s y^T) H (I - rho y s^T) + rho s s^T,   rho = 1 / s.y,   u = H g

    ``H`` starts as ``(s.y / y.y) I`` at the first pair (N&W eq. 6.20); before it, and after a
    restart, ``u = g / |g|``. Pairs with ``s.y <= eps |s| |y|`` are skipped. O(n^2) memory and
    work per step: for small problems (at most :data:`BFGS_MAX_NUMEL` parameters), where it
    needs slightly fewer evaluations than ``lbfgs``.

    References:
        Nocedal & Wright, Numerical Optimization, 2nd ed., Alg. 6.1 and eq. 6.17.
    """

    name: ClassVar[str] = "bfgs"

    def init(self, values: list[Tensor]) -> None:
        _check_real(self.name, values)
        n = sum(v.numel() for v in values)
        if n > BFGS_MAX_NUMEL:
            raise InputError(
                f"rule 'bfgs' keeps an n x n matrix; n = {n} parameters is above "
                f"{BFGS_MAX_NUMEL}: use rule='lbfgs'"
            )
        self.state = {"step": 0, "H": None, "x": None, "g": None, "skipped": 0,
                      "d": _magnitudes(values) if self.scale else None}

    def _remember(self, s: Tensor, y: Tensor, sy: float) -> None:
        rho = 1.0 / sy
        H = self.state["H"]
        if H is None:
            gamma = sy / torch.dot(y, y).item()
            H = torch.eye(s.numel(), dtype=s.dtype, device=s.device) * gamma
        Hy = H @ y
        yHy = torch.dot(y, Hy).item()
        self.state["H"] = (H - rho * (torch.outer(Hy, s) + torch.outer(s, Hy))
                           + (rho * rho * yHy + rho) * torch.outer(s, s))

    def _has_curvature(self) -> bool:
        return self.state["H"] is not None

    def _inverse_hessian_times(self, g: Tensor) -> Tensor:
        return self.state["H"] @ g


@dataclass
class TorchOptimizer(Rule):
    """Any ``torch.optim.Optimizer`` used as the rule: ``rule=torch.optim.SGD`` or
    ``rule=functools.partial(torch.optim.SGD, momentum=0.9)``.

    The loop's step size is written into every param group's ``lr`` before each step. The
    optimizer updates in place, so its parameters are first given fresh storage (the previous
    and best iterates the loop keeps by reference stay intact). Line searches cannot steer it.
    """

    name: ClassVar[str] = "torch.optim"
    scalable: ClassVar[bool] = False
    factory: Callable[..., torch.optim.Optimizer] | None = None
    leaves: list[Tensor] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.optimizer: torch.optim.Optimizer | None = None

    @property
    def label(self) -> str:
        f = self.factory
        if isinstance(f, functools.partial):
            f = f.func
        return f"torch.optim.{getattr(f, '__name__', type(f).__name__)}"

    def init(self, values: list[Tensor]) -> None:
        assert self.factory is not None
        self.state = {"step": 0}
        self.optimizer = self.factory(self.leaves, lr=1.0)
        if isinstance(self.optimizer, torch.optim.LBFGS):
            raise InputError("torch.optim.LBFGS needs a closure; use rule='lbfgs' instead")

    def direction(self, values: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        # The optimizer keeps its own state; it is handed the raw gradient in ``apply``.
        return grads

    def apply(self, values: list[Tensor], u: list[Tensor], lr: float,
              out: list[Tensor] | None = None) -> list[Tensor]:
        assert self.optimizer is not None
        self.state["step"] += 1
        for leaf, v, g in zip(self.leaves, values, u):
            leaf.data = v.clone()
            leaf.grad = g
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        new = [leaf.detach() for leaf in self.leaves]
        for leaf in self.leaves:
            leaf.grad = None
        return new

    def state_dict(self) -> dict[str, Any]:
        assert self.optimizer is not None
        return {"step": self.state["step"], "optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.optimizer is not None
        self.state = {"step": state["step"]}
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))


#: The rules by name; the one place names are resolved.
RULES: dict[str, type[Rule]] = {
    r.name: r for r in (GD, Momentum, Nesterov, Adam, AdamW, RMSProp, AdaGrad, LBFGS, BFGS)
}


def _is_optimizer_factory(rule: Any) -> bool:
    f = rule.func if isinstance(rule, functools.partial) else rule
    return isinstance(f, type) and issubclass(f, torch.optim.Optimizer)


def make_rule(rule: str | Rule | Any) -> Rule:
    """Resolve ``rule`` (a name from :data:`RULES`, a :class:`Rule`, or a ``torch.optim``
    optimizer class / ``functools.partial`` of one) to a fresh :class:`Rule`."""
    if isinstance(rule, Rule):
        return copy.deepcopy(rule)
    if isinstance(rule, str):
        cls = RULES.get(rule)
        if cls is None:
            known = ", ".join(sorted(RULES))
            raise InputError(f"unknown rule {rule!r}; known rules: {known}")
        return cls()
    if _is_optimizer_factory(rule):
        return TorchOptimizer(factory=rule)
    raise InputTypeError(
        f"rule must be a rule name, a descend Rule or a torch.optim.Optimizer class, got {rule!r}"
    )
