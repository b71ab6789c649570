"""The objective: ``fn(x, *args) -> scalar loss``, its value and gradient by autograd.

Two small objects:

* :class:`Params` holds what is being minimised: a tensor, a tuple/list/dict of tensors, or an
  ``nn.Module``. It owns one fixed *leaf* tensor per parameter (``requires_grad=True``) and the
  structure ``fn`` receives, built once. An update never writes into a leaf's storage: it computes
  new values elsewhere (new tensors, or storage the run owns that nothing holds: the gradient
  just used, :class:`~descend.state.Spare` buffers) and points the leaf at them
  (``leaf.data = new``). So the previous and the best iterates are kept for free, by
  reference, and ``x0`` is never mutated (a large tensor of it is even read where it is).
  For a module the leaves are its own parameters, so the module is trained in place, as torch
  users expect.
* :class:`Objective` evaluates ``f(x)`` and ``grad f(x)`` at the current values, counts the
  evaluations, and checks ``fn``'s contract on the first call (scalar, floating point, depends on
  ``x``), raising an :class:`~descend.errors.InputError` that names the value and the fix.
  :class:`MiniBatchObjective` is ``fit``'s: a model's loss on this iteration's mini-batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from time import perf_counter
from typing import Any

import torch
from torch import Tensor, nn

from .errors import InputError, InputTypeError

__all__ = ["MiniBatchObjective", "Objective", "Params"]

#: Autograd's engine. ``torch.autograd.grad`` validates its arguments in Python and then calls
#: ``run_backward``; those checks cost more than the backward pass itself on small problems
#: (measured: 49.6 us vs 31.2 us per notebook iteration), so after the first, fully checked
#: evaluation the objective calls the engine directly. Without it (a future torch), every
#: evaluation takes the checked path.
_ENGINE: Any = getattr(
    getattr(getattr(torch.autograd, "variable", None), "Variable", None), "_execution_engine", None
)


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ("," if t.dim() == 1 else "") + ")"


def _check_leaf(name: str, t: Any) -> Tensor:
    if not isinstance(t, Tensor):
        raise InputTypeError(
            f"{name} must be a torch.Tensor, got {type(t).__name__}; wrap it with torch.tensor(...)"
        )
    if not (t.is_floating_point() or t.is_complex()):
        raise InputTypeError(
            f"{name} must be a floating-point tensor, got dtype {t.dtype}; "
            f"convert it first, e.g. {name}.float()"
        )
    if t.numel() == 0:
        raise InputError(f"{name} must have at least one element, got shape {_shape(t)}")
    return t


#: From this many elements on, a tensor of ``x0`` is read where it is instead of copied (see
#: :class:`Params`).
SHARED_NUMEL = 1 << 16


class Params:
    """The parameters being minimised, as fixed leaf tensors plus the structure ``fn`` sees.

    Attributes:
        kind: ``"tensor"``, ``"tuple"``, ``"list"``, ``"dict"`` or ``"module"``.
        names: one name per leaf (``"x"``, ``"0"``, dict keys, or module parameter names).
        leaves: the leaf tensors autograd differentiates with respect to.
        values: the current values, detached; replaced (never written into) by :meth:`set`.
            At the start, copies of ``x0``'s tensors, or the large ones themselves
            (:data:`SHARED_NUMEL` elements and up, read where they are).
        given: ``x0``'s tensors, detached (empty for a module).
        structure: what ``fn`` receives: the leaves arranged like ``x0`` (or the module).
    """

    def __init__(self, x0: Any) -> None:
        self.module: nn.Module | None = None
        if isinstance(x0, nn.Module):
            named = [(n, p) for n, p in x0.named_parameters() if p.requires_grad]
            if not named:
                raise InputError(
                    f"x0 is a {type(x0).__name__} with no trainable parameters; "
                    "give it parameters with requires_grad=True"
                )
            for n, p in named:
                _check_leaf(f"parameter {n!r}", p)
            self.kind = "module"
            self.module = x0
            self.names = [n for n, _ in named]
            self.leaves: list[Tensor] = [p for _, p in named]
            self.values: list[Tensor] = [p.detach() for p in self.leaves]
            self.given: list[Tensor] = []
            self.structure: Any = x0
            return
        if isinstance(x0, Tensor):
            self.kind, self.names, items = "tensor", ["x"], [x0]
        elif isinstance(x0, Mapping):
            self.kind, self.names, items = "dict", [str(k) for k in x0], list(x0.values())
            self._keys = list(x0)
        elif isinstance(x0, (tuple, list)):
            self.kind = "tuple" if isinstance(x0, tuple) else "list"
            self.names, items = [str(i) for i in range(len(x0))], list(x0)
        else:
            raise InputTypeError(
                f"x0 must be a tensor, a tuple/list/dict of tensors or an nn.Module, "
                f"got {type(x0).__name__}"
            )
        if not items:
            raise InputError(f"x0 must hold at least one tensor, got an empty {self.kind}")
        for n, t in zip(self.names, items):
            _check_leaf("x0" if self.kind == "tensor" else f"x0[{n!r}]", t)
        # x0 is never mutated: nothing writes into the current point (an update writes new
        # tensors, or storage the run owns). A small tensor is copied; a large one is read where
        # it is (one parameter-sized buffer less held for the whole run), and what a result
        # would still share with it is copied then (:meth:`own`).
        self.given = [t.detach() for t in items]
        self.values = [t if t.numel() >= SHARED_NUMEL else t.clone() for t in self.given]
        self.leaves = [v.detach().requires_grad_(True) for v in self.values]
        self.structure = self.build(self.leaves)

    def own(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """``tensors`` with a copy of each that shares the caller's storage (a large tensor of
        ``x0``, read where it is), so a result never aliases what the caller passed."""
        given = {t.untyped_storage().data_ptr() for t in self.given if t.numel()}
        return [t.clone() if t.numel() and t.untyped_storage().data_ptr() in given else t
                for t in tensors]

    def build(self, tensors: Sequence[Tensor]) -> Any:
        """Arrange ``tensors`` (one per leaf) in the structure of ``x0``."""
        if self.kind == "tensor":
            return tensors[0]
        if self.kind == "tuple":
            return tuple(tensors)
        if self.kind == "list":
            return list(tensors)
        if self.kind == "dict":
            return dict(zip(self._keys, tensors))
        return dict(zip(self.names, tensors))  # module: a {name: tensor} dict

    def set(self, values: list[Tensor]) -> None:
        """Make ``values`` the current point: each leaf now points at the new storage."""
        for leaf, v in zip(self.leaves, values):
            leaf.data = v
        self.values = values

    def numel(self) -> int:
        """Total number of scalar parameters."""
        return sum(v.numel() for v in self.values)

    def __repr__(self) -> str:
        return f"Params(kind={self.kind!r}, names={self.names!r}, numel={self.numel()})"


class Objective:
    """``f(x) = fn(x, *args)`` with its gradient by reverse-mode autograd.

    Calling the objective evaluates ``f`` and ``grad f`` at ``params.values``. The first call
    checks the contract of ``fn``; later calls take the fast path.

    With ``compile=True`` the loss and its gradient go through ``torch.compile`` (forward and
    backward compiled together by AOTAutograd; the first evaluation compiles, and its time is
    kept in ``compile_seconds``). Evaluations without a gradient (:meth:`LoopState.loss_at
    <descend.state.LoopState.loss_at>`) call ``fn`` as given.

    Attributes:
        nfev: number of evaluations of ``f`` so far (with or without a gradient).
        ngev: number of gradient evaluations so far.
        compile_seconds: wall time of the first evaluation with ``compile=True``, compilation
            included (0.0 without).
    """

    def __init__(self, fn: Callable[..., Tensor], params: Params, args: tuple = (),
                 compile: bool = False) -> None:
        if not callable(fn):
            raise InputTypeError(f"fn must be callable, got {type(fn).__name__}")
        if not isinstance(args, tuple):
            raise InputTypeError(f"args must be a tuple, got {type(args).__name__}")
        if not isinstance(compile, bool):
            raise InputTypeError(f"compile must be True or False, got {compile!r}")
        self.fn = fn
        self._eval: Callable[..., Tensor] = torch.compile(fn, dynamic=False) if compile else fn
        self.compile = compile
        self.compile_seconds = 0.0
        self.params = params
        self.args = args
        self.nfev = 0
        self.ngev = 0
        self._checked = False
        self._allow_unused = params.kind == "module"
        self._leaves: tuple[Tensor, ...] = ()
        self._seed: tuple[Tensor, ...] = ()

    def compiled(self, on: bool) -> None:
        """Evaluate ``fn`` through ``torch.compile`` (``on``) or as given: the
        :mod:`descend.chunks` path compiles ``fn`` inside its iterations and evaluates the
        start as given, and goes back to compiling ``fn`` alone if those cannot compile."""
        self._eval = torch.compile(self.fn, dynamic=False) if on else self.fn
        self.compile = on

    def _check(self, loss: Any) -> None:
        if not isinstance(loss, Tensor):
            raise InputTypeError(
                f"fn must return a scalar torch.Tensor, got {type(loss).__name__}; "
                "build the loss from x with torch operations"
            )
        if loss.numel() != 1:
            raise InputError(
                f"fn must return a scalar loss, got a tensor of shape {_shape(loss)}; "
                "reduce it, e.g. with .mean() or .sum()"
            )
        if not loss.is_floating_point():
            raise InputTypeError(f"fn must return a floating-point loss, got dtype {loss.dtype}")
        if not loss.requires_grad:
            raise InputError(
                "the loss returned by fn does not depend on x (it has no gradient); "
                "compute it from the x that fn receives, without .detach(), .item() or numpy"
            )

    def _first_call(self) -> Any:
        """``fn`` at the start; a torch error raised there (shapes, dtypes, devices that do not
        fit ``x0``) is misuse, named as an :class:`InputError` before any iteration."""
        try:
            return self._eval(self.params.structure, *self.args)
        except InputError:
            raise
        except (RuntimeError, TypeError, IndexError, ValueError) as e:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            shapes = ", ".join(f"{_shape(v)} {str(v.dtype).replace('torch.', '')}"
                               for v in self.params.values[:4])
            raise InputError(
                f"fn failed at the start x0 (shapes {shapes}) with {type(e).__name__}: "
                f"{(lines[0] if lines else '')[:200]}; check that fn works on x0's shapes, "
                "dtype and device") from e

    def __call__(self) -> tuple[Tensor, list[Tensor]]:
        """Return ``(loss, grads)`` at the current point.

        ``loss`` is the tensor ``fn`` returned (read it with ``.item()``; it is not detached, to
        save an operation on the hot path, so never call ``backward`` on it).
        """
        self.nfev += 1
        self.ngev += 1
        if self.compile and not self._checked:
            t0 = perf_counter()
            try:
                return self._first()
            finally:
                self.compile_seconds = perf_counter() - t0
        if not self._checked:
            loss = self._first_call()
        else:
            loss = self._eval(self.params.structure, *self.args)
        if self._checked:  # the fast path: straight into autograd's engine
            grads = _ENGINE.run_backward(  # (outputs, seeds, keep_graph, create_graph, inputs,
                (loss,), self._seed, False, False, self._leaves, True, False,  # allow_unused,
            )  # accumulate_grad): what torch.autograd.grad calls after its Python checks
            if self._allow_unused:
                return loss, [torch.zeros_like(v) if g is None else g
                              for g, v in zip(grads, self.params.values)]
            return loss, list(grads)
        return self._first(loss)

    def _first(self, loss: Any = None) -> tuple[Tensor, list[Tensor]]:
        """The first, fully checked evaluation (``loss``: ``fn`` already evaluated)."""
        if loss is None:
            loss = self._first_call()
        self._check(loss)
        grads = torch.autograd.grad(loss.reshape(()), self.params.leaves, allow_unused=True)
        unused = [n for n, g in zip(self.params.names, grads) if g is None]
        if len(unused) == len(grads):
            raise InputError(
                "the loss returned by fn does not depend on x (no gradient reaches it); "
                "compute it from the x that fn receives"
            )
        self._allow_unused = bool(unused)
        self._leaves = tuple(self.params.leaves)
        self._seed = (torch.ones_like(loss),)  # d loss / d loss, the seed of every backward
        self._checked = _ENGINE is not None  # else every call takes this checked path
        return loss.detach(), [
            torch.zeros_like(v) if g is None else g for g, v in zip(grads, self.params.values)
        ]

    def draw(self) -> bool:
        """Move to the next iteration's data; True when the function changed (a new batch).
        A plain objective is the same function every iteration."""
        return False

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", type(self.fn).__name__)
        return f"Objective(fn={name}, nfev={self.nfev}, ngev={self.ngev})"


class MiniBatchObjective(Objective):
    """The training loss of a model on one mini-batch: ``f_k(w) = loss(model(X_k), Y_k)``.

    :meth:`draw` (the loop's ``# evaluate`` phase, once per iteration) moves to batch ``k``;
    every evaluation until the next draw, line-search trials included, sees that batch. With one
    batch per epoch (the full batch) the first draw is the only one: the objective is then
    deterministic, so a line search's accepted trial is reused as the next evaluation.

    Attributes:
        batches_per_epoch: batches in one pass over the training data.
        draws: batches drawn so far.
        epochs: the epoch record criteria read (set by ``fit``).
    """

    def __init__(self, model: nn.Module, params: Params, loss_fn: Callable[..., Tensor],
                 batches: Any) -> None:
        super().__init__(self._batch_loss, params)
        self.model = model
        self.loss_fn = loss_fn
        self.batches = batches
        self.batches_per_epoch: int = batches.batches_per_epoch
        self.draws = 0
        self.epochs: Any = None
        self._xb: Tensor | None = None
        self._yb: Tensor | None = None

    def draw(self) -> bool:
        if self.draws and self.batches_per_epoch == 1:
            return False
        self._xb, self._yb = self.batches.batch(self.draws)
        self.draws += 1
        return True

    def _batch_loss(self, model: nn.Module) -> Tensor:
        """``fn`` of this objective: the loss of the model on the current batch."""
        return self.loss_fn(self.model(self._xb), self._yb)

    def __repr__(self) -> str:
        return (f"MiniBatchObjective(batches_per_epoch={self.batches_per_epoch}, "
                f"draws={self.draws}, nfev={self.nfev})")
