"""The one exception type for misuse, so callers (and the CLI) can tell it from a bug.

Not converging is never an error: it is a :class:`~descend.result.Result` with a reason.
An ``InputError`` is raised up front, before any work, and its message names the bad value,
the rule it broke and the fix, e.g. ``lr must be > 0, got -1.0``.
"""

from __future__ import annotations

from collections.abc import Callable

#: Set by :func:`descend.i18n.set_language` to its ``translate`` (None in English): errors stay
#: a leaf, imported by everything and importing nothing.
translation: Callable[[str], str] | None = None


class InputError(ValueError):
    """A bad argument, option or input file. Subclasses ``ValueError``.

    The message is made in English; ``str(e)`` gives it in the language chosen with
    :func:`descend.set_language` (English unless asked; :func:`descend.i18n.translate`)."""

    def __str__(self) -> str:
        text = super().__str__()
        return text if translation is None else translation(text)


class InputTypeError(InputError, TypeError):
    """A bad argument of the wrong type. Subclasses both ``ValueError`` and ``TypeError``."""


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Return ``float(value)`` or raise naming ``name`` when it is not a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputTypeError(f"{name} must be a number, got {value!r}")
    v = float(value)
    ok = v >= 0 if allow_zero else v > 0
    if not ok or v != v or v == float("inf"):
        rule = ">= 0" if allow_zero else "> 0"
        raise InputError(f"{name} must be a finite number {rule}, got {value!r}")
    return v


def check_fraction(name: str, value: float, *, low_open: bool = False) -> float:
    """Return ``float(value)`` or raise when it is not in [0, 1) (or (0, 1) with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputTypeError(f"{name} must be a number, got {value!r}")
    v = float(value)
    ok = (0 < v < 1) if low_open else (0 <= v < 1)
    if not ok:
        rng = "(0, 1)" if low_open else "[0, 1)"
        raise InputError(f"{name} must lie in {rng}, got {value!r}")
    return v


def check_count(name: str, value: object, *, minimum: int = 1) -> int:
    """Return ``value`` or raise naming ``name`` when it is not a whole number ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


#: The seeds accepted: whole numbers from 0 to 2**64 - 1 (``torch.manual_seed`` takes no more
#: than 64 bits).
SEED_RANGE = (0, 2**64 - 1)


def check_seed(name: str, value: object) -> int:
    """Return ``value`` or raise naming ``name`` when it is not a whole number in
    :data:`SEED_RANGE` (past 64 bits torch cannot take it)."""
    if isinstance(value, bool) or not isinstance(value, int) \
            or not SEED_RANGE[0] <= value <= SEED_RANGE[1]:
        shown = repr(value) if len(repr(value)) <= 30 else repr(value)[:27] + "..."
        raise InputError(f"{name} must be a whole number from 0 to 2**64 - 1 (64 bits), got "
                         f"{shown}")
    return value
