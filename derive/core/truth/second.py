"""The check every Hessian-vector product passes: <U, H V> against mixed second differences of the
declared loss, at random points of its domain, both sides evaluated by :mod:`.evaluate`.

The loss is evaluated as declared, never through the rule table's gradients, so an HVP is not checked
against the first-order rules it was made from: (L(x + aU + bV), a, b = +-h) combined into
d^2 L / da db = <U, H V>, at h and h/2 with Richardson's extrapolation. One round per parameter P,
with U moving P alone, names the parameter whose HVP is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from sympy import Basic, MatrixSymbol

from ...errors import DeriveError, GradientMismatch, UnsupportedOperation
from .domain import NORMAL, Draw, canonical_dims, domain, sample
from .evaluate import Program
from .numeric import ATTEMPTS, ROUNDING, NumericCheck, _closed_values, _dims_text, _scalar_loss

__all__ = ["check_hvp"]

STEP = 1e-3        # the second differences' step, relative to the parameters' size (rounding grows as 1/h^2)
TOLERANCE = 1e-5   # on |differences - closed form| / scale
SETTLED = 1e-3     # D(h) and D(h/2) disagreeing by more: a kink crossed, draw another point


def check_hvp(loss: Basic, params: Sequence[MatrixSymbol], directions: Mapping[MatrixSymbol, MatrixSymbol],
              closed: Mapping[MatrixSymbol, Basic], bindings: Sequence[tuple[Basic, Basic]] = (), *,
              seed: int = 0) -> NumericCheck:
    """Check ``closed[P]`` (the HVP's component for P, in the directions' symbols) for every parameter."""
    dims = canonical_dims(loss, *params)
    draws = domain(loss)
    draws.update({p: Draw(NORMAL) for p in params if p not in draws})
    try:
        loss_program = Program([loss], dims)
        closed_program = Program([closed[p] for p in params], dims, bindings)
    except UnsupportedOperation as error:
        raise UnsupportedOperation(f"{error}; the numeric check of the HVP needs it (pass check=False to skip "
                                   "the check)") from error
    rng = np.random.default_rng(seed)
    compared, worst, unresolved = 0, 0.0, set(params)
    for attempt in range(1, ATTEMPTS + 1):
        values = sample(draws, dims, rng)
        base = _scalar_loss(loss_program.run(values)[0])
        if not math.isfinite(base):
            continue
        moving = _draw_directions(directions, loss_program, rng)
        point = dict(values, **{directions[p].name: v for p, v in moving.items()})
        hvps = _closed_values(closed_program.run(point), params, loss_program)
        if not all(np.all(np.isfinite(h)) for h in hvps.values()):
            continue
        outcome = _compare(loss_program, values, moving, hvps, base, rng, dims)
        if outcome is None:
            continue
        compared += 1
        error, resolved = outcome
        worst = max(worst, error)
        unresolved -= resolved
        if compared == 2:
            return NumericCheck(dims, attempt, len(params) * compared, worst,
                                tuple(p.name for p in params if p in unresolved))
    if compared:
        return NumericCheck(dims, ATTEMPTS, len(params) * compared, worst,
                            tuple(p.name for p in params if p in unresolved))
    raise DeriveError(f"the second differences of the loss {loss} did not settle at any of {ATTEMPTS} random points "
                      f"({_dims_text(dims)}), or the loss or the HVP was not finite there: a kink at every point, "
                      "or a loss too steep to difference; pass check=False to skip the numeric check")


def _draw_directions(directions, program, rng) -> dict:
    """A value for each direction symbol, drawn once: parameters given one direction move together
    (the closed form reads one V for them all)."""
    drawn: dict = {}
    for param, direction in directions.items():
        if direction not in drawn:
            drawn[direction] = rng.standard_normal(program.shape(param))
    return {param: drawn[direction] for param, direction in directions.items()}


def _compare(program, values, moving, hvps, base, rng, dims):
    """One round per parameter at one point: (worst relative error, the parameters resolved), or None
    where the differences cross a kink and another point must be drawn."""
    worst, resolved = 0.0, set()
    for param, hvp in hvps.items():
        u = rng.standard_normal(hvp.shape)
        diff = _mixed_differences(program, values, {param: u}, moving, base)
        if diff is None:
            return None
        value, settle, noise = diff
        predicted = float(np.vdot(u, hvp))
        scale = max(abs(value), abs(predicted))
        if scale <= noise:
            continue   # below what second differences resolve here (an HVP that is 0, say)
        if settle > SETTLED * scale + noise:
            return None
        error = abs(value - predicted)
        if error > TOLERANCE * scale + 4 * settle + noise:
            raise GradientMismatch(
                f"the HVP's component for {param.name} is wrong: along random directions U, V at a random point of "
                f"the loss's domain ({_dims_text(dims)}), the closed form gives <U, (H V)_{param.name}> = {predicted!r} "
                f"but mixed second differences of the loss give {value!r} (relative error {error / scale:.2e}); "
                "derive produced a wrong HVP, please report this")
        worst = max(worst, error / scale)
        resolved.add(param)
    return worst, resolved


def _mixed_differences(program, values, first: dict, second: dict, base: float):
    """d^2/da db L(x + a U + b V) at 0 by central differences at h and h/2 (each direction at RMS 1),
    extrapolated: (value, |D(h) - D(h/2)|, the rounding error), or None where the loss is not finite."""
    norms = [_rms(d) for d in (first, second)]
    size = np.concatenate([np.ravel(values[p.name]) for p in {**first, **second}])
    h = STEP * max(1.0, float(np.sqrt(np.mean(size ** 2))))
    estimates, magnitude = [], abs(base)
    for step in (h, h / 2):
        total = 0.0
        for a, b in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            moved = dict(values)
            for directions, sign, norm in ((first, a, norms[0]), (second, b, norms[1])):
                for p, d in directions.items():
                    moved[p.name] = moved[p.name] + (sign * step / norm) * d
            value = _scalar_loss(program.run(moved)[0])
            if not math.isfinite(value):
                return None
            magnitude = max(magnitude, abs(value))
            total += a * b * value
        estimates.append(total / (4 * step * step))
    wide, narrow = estimates
    scale = norms[0] * norms[1]
    noise = ROUNDING * np.finfo(float).eps * magnitude / (h / 2) ** 2 * scale
    return (4 * narrow - wide) / 3 * scale, abs(wide - narrow) * scale, noise


def _rms(directions: dict) -> float:
    entries = np.concatenate([np.ravel(d) for d in directions.values()])
    return float(np.sqrt(np.mean(entries ** 2))) or 1.0
