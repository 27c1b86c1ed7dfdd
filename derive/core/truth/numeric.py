"""The check every closed form of ``gradients`` passes: directional derivatives against central
differences of the declared loss, at random points of its domain, both sides evaluated by
:mod:`.evaluate`. A mismatch raises :class:`~derive.errors.GradientMismatch` naming the parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sympy import (
    Basic,
    MatrixSymbol,
)

from ...errors import (
    DeriveError,
    GradientMismatch,
    UnsupportedOperation,
)
from .domain import NORMAL, Draw, canonical_dims, domain, sample
from .evaluate import Program, Value

__all__ = ["NumericCheck", "check_gradients"]


ATTEMPTS = 8          # random points tried before giving up (a loss not finite, a kink, a closed form not finite)
STEP = 1e-5           # the differences' step, relative to the parameters' size
TOLERANCE = 1e-6      # on |differences - closed form| / scale: a wrong factor (2, 1/N, -1) is off by 1/3 or more
SETTLED = 1e-5        # two step sizes, or the bend at h and at h/2, disagreeing by more: a kink, draw again
COVERED = 1e-3        # a parameter whose term is smaller than this share of the sum gets a round of its own
ROUNDING = 16         # the rounding error of differences, in units of eps |L| / h (about 10 times what it is)
MAX_ROUNDS = 12


@dataclass(frozen=True)
class NumericCheck:
    """What the built-in check established: where, and how closely the closed forms agreed."""

    dims: dict
    points: int              # random points drawn (one or two were compared; the others were not usable)
    rounds: int              # joint directions compared
    relative_error: float    # the largest |differences - closed form| / scale over those rounds
    unresolved: tuple        # parameters whose directional derivative lies below what differences resolve


@dataclass(frozen=True)
class _Differences:
    value: float       # Richardson's combination of the central differences at h and h/2
    settle: float      # |D(h) - D(h/2)|: a kink crossed, or rounding
    bend: float        # |A(h/2) - A(h)/2| (A: the second difference): a kink at the point itself
    noise: float       # the rounding error the differences carry


def check_gradients(loss: Basic, params: Sequence[MatrixSymbol], closed: Mapping[MatrixSymbol, Basic],
                    bindings: Sequence[tuple[Basic, Basic]] = (), *, seed: int = 0) -> NumericCheck:
    """Check each closed form ``closed[P]`` against central differences of ``loss`` along random directions.

    The loss is evaluated as declared; the closed forms with their named intermediates and upstream
    gradients (``bindings``) each evaluated once. One joint direction over all parameters is compared
    with the sum of the closed forms' terms <dL/dP, V_P>; parameters whose term is too small to show
    in that sum get rounds of their own, and on a mismatch one direction per parameter names it.
    """
    dims = canonical_dims(loss, *params)
    draws = domain(loss)
    # a parameter the loss does not use (allow_unused) moves too: its differences must come out 0
    draws.update({p: Draw(NORMAL) for p in params if p not in draws})
    try:
        loss_program = Program([loss], dims)
        closed_program = Program([closed[p] for p in params], dims, bindings)
    except UnsupportedOperation as error:
        raise UnsupportedOperation(f"{error}; the numeric check of the gradients needs it (pass check=False to "
                                   "skip the check)") from error
    rng = np.random.default_rng(seed)
    finite_loss = closed_not_finite = compared = 0
    pending, rounds, worst = set(params), 0, 0.0
    for attempt in range(1, ATTEMPTS + 1):
        values = sample(draws, dims, rng)
        base = _scalar_loss(loss_program.run(values)[0])
        if not math.isfinite(base):
            continue
        finite_loss += 1
        grads = _closed_values(closed_program.run(values), params, loss_program)
        if not all(np.all(np.isfinite(g)) for g in grads.values()):
            closed_not_finite += 1
            continue
        directions = {p: rng.standard_normal(g.shape) for p, g in grads.items()}
        outcome = _compare(loss_program, values, grads, directions, base, dims)
        if outcome is None:
            continue
        compared += 1
        point_rounds, error, unresolved = outcome
        rounds, worst = rounds + point_rounds, max(worst, error)
        pending &= set(unresolved)
        # A gradient exactly zero here (every ReLU of a layer off) says little: look at one more point
        # for it. One merely too small to difference stays unresolved: another point would not help.
        if compared == 2 or all(np.any(grads[p]) for p in pending):
            return NumericCheck(dims, attempt, rounds, worst, tuple(p.name for p in params if p in pending))
    if compared:
        return NumericCheck(dims, ATTEMPTS, rounds, worst, tuple(p.name for p in params if p in pending))
    shown = _dims_text(dims)
    if finite_loss == 0:
        raise DeriveError(f"the loss {loss} is not finite at any of {ATTEMPTS} random points of its domain "
                          f"({shown}), so its gradients cannot be checked numerically; pass check=False to skip "
                          "the check")
    if closed_not_finite == finite_loss:
        raise GradientMismatch(f"the closed-form gradients are not finite at any of the {finite_loss} random points "
                               f"({shown}) where the loss is finite: derive produced a wrong gradient, please "
                               "report this")
    raise DeriveError(f"the central differences of the loss {loss} did not settle at any of {ATTEMPTS} random points "
                      f"({shown}): a kink at every point, or a loss too steep to difference; pass check=False "
                      "to skip the numeric check")


def _scalar_loss(value: Value) -> float:
    return float(np.asarray(value, dtype=float).reshape(-1)[0]) if np.size(value) == 1 else math.nan


def _closed_values(values: list, params: Sequence[MatrixSymbol], program: Program) -> dict:
    grads = {}
    for param, value in zip(params, values):
        shape = program.shape(param)
        value = np.asarray(value, dtype=float)
        if value.shape != shape:
            if value.ndim:
                raise GradientMismatch(f"the closed form of dL/d{param.name} evaluates to a {value.shape} array, "
                                       f"but {param.name} is {shape[0]} x {shape[1]}")
            value = np.full(shape, float(value))
        grads[param] = value
    return grads


def _compare(program, values, grads, directions, base, dims):
    """Rounds of joint directions at one point: (rounds, worst relative error, unresolved), or None
    where the differences do not settle (a kink) and another point must be drawn."""
    terms = {p: float(np.vdot(grads[p], directions[p])) for p in grads}
    remaining, rounds, worst = list(grads), 0, 0.0
    while remaining and rounds < MAX_ROUNDS:
        rounds += 1
        diff = _differences(program, values, {p: directions[p] for p in remaining}, base)
        if diff is None:
            return None
        predicted = math.fsum(terms[p] for p in remaining)
        scale = max(abs(diff.value), math.fsum(abs(terms[p]) for p in remaining))
        if scale <= diff.noise:
            break   # what is left is below what differences resolve
        if not _settled(diff, scale):
            return None
        error = abs(diff.value - predicted)
        if error > _allowed(diff, scale):
            raise _mismatch(program, values, remaining, directions, terms, base, diff.value, predicted, dims)
        worst = max(worst, error / scale)
        covered = [p for p in remaining if abs(terms[p]) >= COVERED * scale]
        if not covered:
            break
        remaining = [p for p in remaining if p not in covered]
    return rounds, worst, remaining


def _settled(diff: _Differences, scale: float) -> bool:
    return bool(diff.settle <= SETTLED * scale + diff.noise and diff.bend <= SETTLED * scale + 4 * diff.noise)


def _allowed(diff: _Differences, scale: float) -> float:
    return TOLERANCE * scale + 4 * diff.settle + diff.noise


def _differences(program: Program, values: dict, directions: dict, base: float) -> _Differences | None:
    """Central differences of the loss along ``directions`` (normalised to RMS 1) at h and h/2."""
    entries = np.concatenate([d.ravel() for d in directions.values()])
    norm = float(np.sqrt(np.mean(entries ** 2))) or 1.0
    size = np.concatenate([np.ravel(values[p.name]) for p in directions])
    h = STEP * max(1.0, float(np.sqrt(np.mean(size ** 2))))
    at = {}
    for t in (h, -h, h / 2, -h / 2):
        moved = dict(values)
        for p, d in directions.items():
            moved[p.name] = values[p.name] + (t / norm) * d
        at[t] = _scalar_loss(program.run(moved)[0])
    if not all(math.isfinite(v) for v in at.values()):
        return None
    wide, narrow = (at[h] - at[-h]) / (2 * h), (at[h / 2] - at[-h / 2]) / h
    bend_wide = (at[h] - 2 * base + at[-h]) / h
    bend_narrow = (at[h / 2] - 2 * base + at[-h / 2]) / (h / 2)
    magnitude = max(abs(base), *(abs(v) for v in at.values()))
    return _Differences(value=(4 * narrow - wide) / 3 * norm, settle=abs(wide - narrow) * norm,
                        bend=abs(bend_narrow - bend_wide / 2) * norm,
                        noise=ROUNDING * np.finfo(float).eps * magnitude / h * norm)


def _mismatch(program, values, remaining, directions, terms, base, differences, predicted, dims) -> GradientMismatch:
    """The error for a failed round, naming the parameter that fails on its own direction."""
    where = f"at a random point of the loss's domain ({_dims_text(dims)})"
    worst = None
    for p in remaining:
        diff = _differences(program, values, {p: directions[p]}, base)
        if diff is None:
            continue
        scale = max(abs(diff.value), abs(terms[p]))
        error = abs(diff.value - terms[p])
        if error > _allowed(diff, scale) and (worst is None or error / scale > worst[0]):
            worst = (error / scale, p, diff.value)
    if worst is not None:
        error, p, numeric = worst
        return GradientMismatch(
            f"dL/d{p.name} is wrong: along a random direction V {where}, the closed form gives <dL/d{p.name}, V> = "
            f"{terms[p]!r} but central differences of the loss give {numeric!r} (relative error {error:.2e}); "
            "derive produced a wrong gradient, please report this")
    names = ", ".join(p.name for p in remaining)
    return GradientMismatch(
        f"the gradients of {names} are wrong together: along a random direction {where}, the closed forms give "
        f"{predicted!r} but central differences of the loss give {differences!r}; derive produced a wrong "
        "gradient, please report this")


def _dims_text(dims: Mapping) -> str:
    return "dims " + ", ".join(f"{k}={v}" for k, v in dims.items()) if dims else "no dims"
