"""Line searches as pure functions of a scalar ``phi``, in the style of ``scipy.optimize``.

Each search is given ``phi(alpha) -> (phi(alpha), phi'(alpha))`` along a fixed direction, the
values at 0 (``f0 = phi(0)``, ``d0 = phi'(0) < 0``), a first trial and its constants, and returns
an ``alpha`` whose condition it has verified, or ``None``. They know nothing of tensors, rules or
the loop: the caller (:mod:`descend.steps`) builds ``phi`` over the loop's
:class:`~descend.state.Line`, which evaluates ``f(x - alpha u)`` on this iteration's batch.

A non-finite value is passed in as ``+inf`` (so a bad trial fails every test). A trial below
``alpha_min`` (where ``x - alpha u == x`` in floating point) ends a search with ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator

__all__ = ["Phi", "Trials", "armijo_backtracking", "armijo_trials", "cubic_min", "drive",
           "nonmonotone_armijo", "strong_wolfe", "strong_wolfe_trials"]

#: ``phi(alpha) -> (phi(alpha), phi'(alpha))``, both ``+inf`` where not finite.
Phi = Callable[[float], tuple[float, float]]
#: A search written as a generator: it yields each trial ``alpha``, is sent back
#: ``(phi(alpha), phi'(alpha))``, and returns the accepted ``alpha`` or ``None``. The batched
#: loop (:mod:`descend.batched`) drives one per problem, evaluating the trials of every problem
#: in one call of the objective; :func:`drive` runs one over a ``phi``.
Trials = Generator[float, tuple[float, float], float | None]


def drive(search: Trials, phi: Phi) -> float | None:
    """Run a generator search over ``phi``: what the search returns."""
    try:
        alpha = next(search)
        while True:
            alpha = search.send(phi(alpha))
    except StopIteration as done:
        return done.value


def armijo_backtracking(phi: Phi, f0: float, d0: float, alpha: float, *, c1: float,
                        shrink: float, max_evals: int, alpha_min: float) -> float | None:
    """Backtracking to sufficient decrease: the first of ``alpha, shrink alpha, shrink^2 alpha,
    ...`` with ``phi(alpha) <= f0 + c1 alpha d0`` (Nocedal & Wright Alg. 3.1)."""
    return drive(armijo_trials(f0, d0, alpha, c1=c1, shrink=shrink, max_evals=max_evals,
                               alpha_min=alpha_min), phi)


def armijo_trials(f0: float, d0: float, alpha: float, *, c1: float, shrink: float,
                  max_evals: int, alpha_min: float) -> Trials:
    """:func:`armijo_backtracking` as a generator of trials (see :data:`Trials`)."""
    for _ in range(max_evals):
        if alpha < alpha_min:
            return None
        f, _d = yield alpha
        if f <= f0 + c1 * alpha * d0:
            return alpha
        alpha *= shrink
    return None


def nonmonotone_armijo(phi: Phi, f0: float, d0: float, alpha: float, *, f_ref: float,
                       c1: float, max_evals: int, alpha_min: float) -> float | None:
    """Non-monotone Armijo (Grippo-Lampariello-Lucidi): accept ``phi(alpha) <= f_ref + c1 alpha
    d0`` with ``f_ref >= f0`` the largest recent loss; a rejected trial is replaced by the
    minimiser of the quadratic through ``phi(0), phi'(0), phi(alpha)``, kept in
    ``[0.1, 0.5] alpha``."""
    for _ in range(max_evals):
        if alpha < alpha_min:
            return None
        f, _d = phi(alpha)
        if f <= f_ref + c1 * alpha * d0:
            return alpha
        den = 2 * (f - f0 - d0 * alpha)
        a_q = -d0 * alpha * alpha / den if den > 0 and math.isfinite(den) else 0.1 * alpha
        alpha = min(max(a_q, 0.1 * alpha), 0.5 * alpha)
    return None


def cubic_min(a: float, fa: float, da: float, b: float, fb: float, db: float,
              lo: float, hi: float) -> float:
    """Minimiser of the cubic through ``(a, fa, da)`` and ``(b, fb, db)``, clamped to
    ``[lo, hi]``; the midpoint when the cubic has no minimiser or a value is not finite
    (Nocedal & Wright eq. 3.59)."""
    if a == b or not all(math.isfinite(v) for v in (fa, da, fb, db)):
        return (lo + hi) / 2
    d1 = da + db - 3 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    if disc < 0:
        return (lo + hi) / 2
    d2 = math.copysign(math.sqrt(disc), b - a)
    den = db - da + 2 * d2
    if den == 0:
        return (lo + hi) / 2
    t = b - (b - a) * (db + d2 - d1) / den
    if not math.isfinite(t):
        return (lo + hi) / 2
    return min(max(t, lo), hi)


def strong_wolfe(phi: Phi, f0: float, d0: float, alpha: float, *, c1: float, c2: float,
                 max_evals: int, alpha_min: float) -> float | None:
    """A step satisfying the strong Wolfe conditions::

        phi(alpha) <= f0 + c1 alpha d0        |phi'(alpha)| <= c2 |d0|

    Bracketing then zoom with safeguarded cubic interpolation (Nocedal & Wright Alg. 3.5 and
    3.6, the structure of ``torch.optim.LBFGS``'s ``strong_wolfe``); a step is returned only when
    both conditions hold.
    """
    return drive(strong_wolfe_trials(f0, d0, alpha, c1=c1, c2=c2, max_evals=max_evals,
                                     alpha_min=alpha_min), phi)


def strong_wolfe_trials(f0: float, d0: float, alpha: float, *, c1: float, c2: float,
                        max_evals: int, alpha_min: float) -> Trials:
    """:func:`strong_wolfe` as a generator of trials (see :data:`Trials`)."""
    evals = 0

    def wolfe(a: float, f: float, d: float) -> bool:
        return f <= f0 + c1 * a * d0 and abs(d) <= -c2 * d0

    # bracketing (Alg. 3.5)
    a_prev, f_prev, d_prev = 0.0, f0, d0
    a = alpha
    f, d = yield a
    evals += 1
    while True:
        if f > f0 + c1 * a * d0 or (evals > 1 and f >= f_prev):
            lo, hi = (a_prev, f_prev, d_prev), (a, f, d)
            break
        if abs(d) <= -c2 * d0:
            return a if wolfe(a, f, d) else None
        if d >= 0:
            lo, hi = (a, f, d), (a_prev, f_prev, d_prev)
            break
        if evals >= max_evals:
            return None
        # extrapolate: the cubic's minimiser, between 1.01 a and 10 a
        a_new = cubic_min(a_prev, f_prev, d_prev, a, f, d, a + 0.01 * (a - a_prev), 10 * a)
        a_prev, f_prev, d_prev = a, f, d
        a = a_new
        f, d = yield a
        evals += 1
    # zoom (Alg. 3.6): lo holds the lowest f that satisfies sufficient decrease
    insufficient = False
    while evals < max_evals:
        (al, fl, dl), (ah, fh, dh) = lo, hi
        width = abs(ah - al)
        if width < alpha_min:  # the bracket is below round-off
            return None
        left, right = min(al, ah), max(al, ah)
        a = cubic_min(al, fl, dl, ah, fh, dh, left, right)
        # keep trials away from the ends, or the bracket shrinks too slowly
        margin = 0.1 * width
        if min(right - a, a - left) < margin:
            if insufficient or a >= right or a <= left:
                a = right - margin if abs(a - right) < abs(a - left) else left + margin
                insufficient = False
            else:
                insufficient = True
        else:
            insufficient = False
        f, d = yield a
        evals += 1
        if f > f0 + c1 * a * d0 or f >= fl:
            hi = (a, f, d)
        else:
            if abs(d) <= -c2 * d0:
                return a if wolfe(a, f, d) else None
            if d * (ah - al) >= 0:
                hi = lo
            lo = (a, f, d)
    return None
