"""The task a table's target is fitted as, classification or regression, decided in one place
(:func:`choose_task`) from the target's type and values, the model, the loss and ``task=``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["CLASSIFIER_LOSSES", "LABEL_LEVELS", "TASKS", "check_task", "choose_task"]

#: Losses that make the task a classification (their targets are class labels).
CLASSIFIER_LOSSES = ("bce", "cross_entropy")

#: ``task=`` values and the task each names.
TASKS = {"classify": "classification", "regress": "regression"}

#: An integer target with at most this many distinct values looks like class labels.
LABEL_LEVELS = 20


def check_task(task: str | None, model: Any, loss: Any) -> None:
    """Refuse a ``task`` that is not a name of :data:`TASKS` or that contradicts the model or
    the loss."""
    if task is None:
        return
    if task not in TASKS:
        raise InputError(f"task must be 'classify' or 'regress', got {task!r}")
    if task == "regress" and (model == "logistic" or loss in CLASSIFIER_LOSSES):
        what = "--model logistic" if model == "logistic" else f"--loss {loss}"
        raise InputError(f"--task regress (task='regress') contradicts {what}, a classifier; "
                         "use --model linear or mlp:64 with --loss mse, mae or huber")
    if task == "classify" and isinstance(loss, str) and loss not in CLASSIFIER_LOSSES:
        raise InputError(f"--task classify (task='classify') contradicts --loss {loss}, a "
                         "regression loss; use --loss bce or cross_entropy, or leave --loss out")


def choose_task(table: pa.Table, name: str, target: Sequence[str], *, model: Any, loss: Any,
                task: str | None) -> str:
    """``"classification"`` or ``"regression"`` for ``target`` of ``table``, by one rule:

    * ``task`` (``"classify"``/``"regress"``), a classifier loss (``bce``,
      ``cross_entropy``) or the ``logistic`` model decide it;
    * otherwise a text, boolean or categorical target is a classification, a float target a
      regression (also with an explicit regression loss);
    * an integer target is a regression when it has more than :data:`LABEL_LEVELS` distinct
      values; with fewer it looks like class labels and is refused as ambiguous, naming
      ``--task``.

    Raises:
        InputError: ``task`` is unknown or contradicts the model or loss; ``logistic`` on a
            float target with more than :data:`LABEL_LEVELS` distinct values (a quantity);
            an ambiguous integer target; a regression loss on a text target.
    """
    import pyarrow.compute as pc
    import pyarrow.types as pt

    check_task(task, model, loss)
    if task is not None:
        return TASKS[task]
    if loss in CLASSIFIER_LOSSES:
        return "classification"
    cols = table.column_names
    for t in target:
        if t not in cols:
            raise InputError(
                f"target column {t!r} is not in {name}; its columns are: {', '.join(cols)}"
            )
    col = table.column(target[0])
    typ = col.type.value_type if pt.is_dictionary(col.type) else col.type
    if pt.is_null(typ):
        raise InputError(f"target column {target[0]!r} of {name} is empty: every cell is "
                         "missing; fill it, or pick another --target")
    kind = ("float" if pt.is_floating(typ) or pt.is_decimal(typ) else
            "integer" if pt.is_integer(typ) else "labels")
    if pt.is_dictionary(col.type):
        kind = "labels"
    levels = int(pc.count_distinct(col).as_py() or 0)
    if model == "logistic":
        if kind == "float" and levels > LABEL_LEVELS:
            raise InputError(
                f"target column {target[0]!r} of {name} holds {levels} distinct numbers, a "
                "quantity, not class labels; --model logistic is a classifier: use --model "
                "linear (or mlp:64) for a regression"
            )
        return "classification"
    explicit = isinstance(loss, str)  # a regression loss, named
    if kind == "labels" and len(target) == 1:
        if explicit:
            raise InputError(
                f"target column {target[0]!r} of {name} is not numeric; --loss {loss} is a "
                "regression loss: leave --loss out, or pass --loss cross_entropy, for a "
                "classifier"
            )
        return "classification"
    if kind == "integer" and len(target) == 1 and not explicit and levels <= LABEL_LEVELS:
        raise InputError(
            f"target column {target[0]!r} of {name} holds {levels} distinct whole numbers: "
            "class labels or amounts? pass --task classify (task='classify') for a classifier "
            "or --task regress (task='regress') for a regression"
        )
    return "regression"
