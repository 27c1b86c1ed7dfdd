"""Hessian-vector products in generated code: the statements of a module's ``hvp`` and their check.

``to_numpy(g, name, hvp=True)`` (and ``to_torch`` / ``to_jax``) add ``hvp(params, batch, directions)``:
the forward pass (its cache), the upstream gradients the tangents read, then the derivation's tangent
(R-operator) steps and the HVP of each parameter, every one printed from what
:meth:`derive.core.derivation.Derivation.hvp` publishes (:class:`~derive.core.second_order.Hvp`), with
the module's own printer. Renderers never differentiate: nothing here makes a derivative.

Before such a module is returned its ``hvp`` is checked twice, at its example inputs and random
directions, in float64: against central differences of the module's own gradient along the directions,
and against mixed second differences of the declared loss evaluated by :mod:`derive.core.truth`, which
owes nothing to the rule table or the printers. A mismatch raises :class:`~derive.errors.CodegenError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sympy import Basic, MatrixSymbol

from ..core.algebra import substitute
from ..core.derivation import Derivation
from ..core.elementwise import Elementwise, derivative_order
from ..core.layer import Layer
from ..core.second_order import Hvp
from ..core.symbols import LossGradient
from ..core.truth import Program
from ..errors import CodegenError
from .statement import Statement

__all__ = ["HvpPlan", "check_against_gradient", "check_against_truth", "directions_of", "hvp_of", "plan_hvp",
           "refuse_layer", "verify_hvp"]

# The differences' steps (relative to the parameters' RMS), Richardson-extrapolated from h and h/2:
# truncation error O(h^4), rounding eps |f| / h^2 for the second differences.
GRADIENT_STEP = 1e-3
LOSS_STEP = 1e-3
GRADIENT_TOLERANCE = 1e-6   # the relative error against the module's own gradient's differences
LOSS_TOLERANCE = 1e-5       # ... and against the declared loss's second differences
SETTLED = 1e-3              # the estimates at h and h/2 disagreeing more: a kink crossed, another point
ROUNDING = 16               # the differences' rounding error, in units of eps |f| / h (or h^2)
ATTEMPTS = 8                # random points tried to compare at POINTS of them
POINTS = 2


@dataclass
class HvpPlan:
    """What a module's ``hvp`` lays out, printed: directions, then statements, then the results."""

    directions: list[tuple[str, str, str]]   # (param key, direction local, param local)
    statements: list                         # module.Statement: upstream gradients, tangents, results
    results: list[tuple[str, str]]           # (param key, local of its HVP)


def refuse_layer(g: Derivation, name: str) -> None:
    """A layer (derive.vjp) has no scalar loss whose Hessian an ``hvp`` would apply: say so."""
    if isinstance(g, Layer):
        raise CodegenError(f"{name} is a layer (derive.vjp): hvp=True needs a scalar loss (derive.gradients), "
                           "whose Hessian the products are of")


def directions_of(g: Derivation) -> dict[MatrixSymbol, MatrixSymbol]:
    """A direction V_P for every parameter P, named apart from the network's matrices."""
    taken = {m.name for m in g.inputs} | {f.symbol.name for f in g.forward}
    out = {}
    for p in g.params:
        name = next(n for n in (f"V_{p.name}", *(f"V_{p.name}_{k}" for k in range(2, 999))) if n not in taken)
        taken.add(name)
        out[p] = MatrixSymbol(name, *p.shape)
    return out


def hvp_of(g: Derivation, *, check: bool = False) -> Hvp:
    """The derivation's HVP along :func:`directions_of`, derived once per derivation (to_numpy,
    to_torch and to_jax share it; every HVP asked of ``g`` is one more for ``g.verify`` to check)."""
    wanted = directions_of(g)
    for earlier in g.hvps:
        if earlier.directions == wanted:
            return earlier
    return g.hvp(wanted, check=check)


def plan_hvp(g: Derivation, hvp: Hvp, printer, ids, assign: Callable, shape: Callable,
             identities: dict | None = None) -> HvpPlan:
    """The statements of ``hvp``: the upstream gradients it reads (loss side first), the tangent steps
    in their order, the HVP of each parameter; ``assign(target, expr, shape, printer, writable=)`` and
    ``shape(symbol, printer)`` are the module renderer's (:func:`derive.render.module._assign`), and
    ``identities`` the upstream gradients it writes into what reads them (an identity: no statement)."""
    position = {f.symbol.name: k for k, f in enumerate(g.forward)}
    symbols = {f.symbol.name: f.symbol for f in g.forward}
    identities = identities or {}
    steps = [substitute(s.definition, identities) for s in hvp.steps]
    forms = {param: substitute(form, identities) for param, form in hvp.compact.items()}
    upstream = _upstream_closure(g, [*steps, *forms.values()], position, identities)
    statements, named = _paired_slopes([*upstream.values(), *steps, *forms.values()], printer, ids, shape)
    for name in sorted(upstream, key=lambda n: -position[n]):
        statements.extend(assign(ids("adjoint", name), named(upstream[name]), shape(symbols[name], printer), printer))
    for step, definition in zip(hvp.steps, steps):
        statements.extend(assign(printer.doprint(step.symbol), named(definition), shape(step.of, printer), printer))
    results = []
    for param, form in forms.items():
        local = ids("hvp", param.name)
        statements.extend(assign(local, named(form), shape(param, printer), printer, writable=True))
        results.append((repr(param.name), local))
    directions = [(repr(p.name), printer.doprint(v), printer.doprint(p)) for p, v in hvp.directions.items()]
    return HvpPlan(directions, statements, results)


def _paired_slopes(forms: list[Basic], printer, ids, shape: Callable) -> tuple[list[Statement], Callable]:
    """One statement per activation whose f'(A) and f''(A) the forms both read, where the printer makes
    the pair in one call (``printer.slopes``: GELU's share the density and read Phi off the forward
    pass), and a function that writes the forms with the pair read by name. A tangent step reads f''
    beside f' for every activation on the path, and f' again in the upstream gradient: printed inline,
    GELU's erf and exp would be computed three times per layer."""
    by_argument: dict[tuple, dict[int, Basic]] = {}
    for form in forms:
        for node in sorted(form.atoms(Elementwise), key=str):
            if derivative_order(type(node)) in (1, 2):
                by_argument.setdefault((type(node).of, node.args), {})[derivative_order(type(node))] = node
    statements, mapping = [], {}
    for (function, _), orders in by_argument.items():
        code = printer.slopes(orders[1]) if len(orders) == 2 else None
        if code is None:
            continue
        argument = printer.doprint(orders[1].arg)
        names = [ids.fresh(f"{function.record.name}_{kind}_{argument}") for kind in ("prime", "prime2")]
        for order, name in zip((1, 2), names):
            ids.alias("value", name, name)
            mapping[orders[order]] = MatrixSymbol(name, *orders[order].shape)
        statements.append(Statement(", ".join(names), code, shape(orders[1], printer)))
    return statements, (lambda form: substitute(form, mapping)) if mapping else (lambda form: form)


def _upstream_closure(g: Derivation, reads: list[Basic], position: dict, identities: dict) -> dict[str, Basic]:
    """The named upstream gradients ``reads`` use, directly or through one another: name -> definition
    (``identities`` written into it)."""
    needed: dict[str, Basic] = {}
    pending = list(reads)
    while pending:
        for gradient in pending.pop().atoms(LossGradient):
            if gradient.name in position and gradient.name not in needed:
                needed[gradient.name] = substitute(g.gradient_of(gradient.name), identities)
                pending.append(needed[gradient.name])
    return needed


# --- verification ------------------------------------------------------------------------------

def verify_hvp(module, name: str, loss: Basic, *, seed: int = 0) -> float:
    """Check ``module.hvp`` (a loaded NumPy module) against its gradient's differences and against the
    declared loss's second differences; the worst relative error. Raises CodegenError on a mismatch."""
    truth = Program([loss], module.DEFAULT_DIMS)
    rng = np.random.default_rng(seed)
    compared, worst = 0, 0.0
    for _ in range(ATTEMPTS):
        params, batch = module.example_inputs(rng)
        directions = {key: rng.standard_normal(np.shape(value)) for key, value in params.items()}
        products = run_hvp(module, name, params, batch, directions)
        errors = [check_against_gradient(module.loss_and_grads, name, params, batch, directions, products),
                  check_against_truth(truth, name, params, batch, directions, products, rng)]
        if None in errors:
            continue   # a kink between the differences' points: another point
        compared, worst = compared + 1, max(worst, *errors)
        if compared == POINTS:
            return worst
    if compared:
        return worst
    raise CodegenError(f"the HVP of {name} could not be checked: the differences did not settle at any of "
                       f"{ATTEMPTS} random points (a kink at every one)")


def run_hvp(module, name: str, params: dict, batch: dict, directions: dict) -> dict:
    try:
        products = module.hvp(params, batch, directions)
    except Exception as error:
        raise CodegenError(f"the generated hvp of {name} fails on example inputs: {type(error).__name__}: "
                           f"{error}") from error
    if set(products) != set(params):
        raise CodegenError(f"the generated hvp of {name} returns {sorted(products)}, not the parameters "
                           f"{sorted(params)}")
    products = {key: np.asarray(value, dtype=float) for key, value in products.items()}
    for key, value in products.items():
        if value.shape != np.shape(params[key]):
            raise CodegenError(f"the generated hvp of {key} in {name} has shape {value.shape}, but {key} has "
                               f"shape {np.shape(params[key])}")
    return products


def check_against_gradient(loss_and_grads: Callable, name: str, params: dict, batch: dict, directions: dict,
                           products: dict) -> float | None:
    """(H V)_P against d/dt grad_P(params + t V) by central differences of the module's own gradient;
    the worst relative error, or None where the estimates at h and h/2 do not settle."""
    step = GRADIENT_STEP * max(1.0, _rms(params)) / _rms(directions)

    def moved_grads(t):
        moved = {k: v + t * directions[k] for k, v in params.items()}
        return {k: np.asarray(v, dtype=float) for k, v in loss_and_grads(moved, batch)[1].items()}

    estimates = []
    for h in (step, step / 2):
        up, down = moved_grads(h), moved_grads(-h)
        estimates.append({k: (up[k] - down[k]) / (2 * h) for k in params})
    magnitude = max(float(np.max(np.abs(v), initial=0)) for v in moved_grads(0).values())
    worst = 0.0
    for key, product in products.items():
        wide, narrow = estimates[0][key], estimates[1][key]
        numeric = (4 * narrow - wide) / 3
        scale = max(float(np.max(np.abs(numeric), initial=0)), float(np.max(np.abs(product), initial=0)), 1e-8)
        noise = ROUNDING * np.finfo(float).eps * magnitude / (step / 2)
        if float(np.max(np.abs(wide - narrow), initial=0)) > SETTLED * scale + noise:
            return None
        error = float(np.max(np.abs(numeric - product), initial=0))
        if not error <= GRADIENT_TOLERANCE * scale + noise:
            at = np.unravel_index(int(np.argmax(np.abs(numeric - product))), product.shape)
            raise CodegenError(
                f"the generated hvp of {key} in {name} disagrees with central differences of the module's own "
                f"gradient along the directions: entry {tuple(int(i) for i in at)} is {product[at]!r}, the "
                f"differences give {numeric[at]!r} (relative error {error / scale:.2e})")
        worst = max(worst, error / scale)
    return worst


def check_against_truth(truth: Program, name: str, params: dict, batch: dict, directions: dict, products: dict,
                        rng) -> float | None:
    """<U, (H V)_P> for a random U moving P alone, against mixed second differences of the declared loss
    (derive.core.truth's evaluation); the worst relative error, or None where they do not settle."""
    values = {**batch, **params}
    base = _loss(truth, values)
    worst = 0.0
    for key, product in products.items():
        u = {key: rng.standard_normal(product.shape)}
        predicted = float(np.vdot(u[key], product))
        estimate = _mixed_differences(truth, values, u, directions, base)
        if estimate is None:
            return None
        value, settle, noise = estimate
        scale = max(abs(value), abs(predicted))
        if scale <= noise:
            continue   # below what second differences resolve here (an HVP component that is 0)
        if settle > SETTLED * scale + noise:
            return None
        error = abs(value - predicted)
        if not error <= LOSS_TOLERANCE * scale + 4 * settle + noise:
            raise CodegenError(
                f"the generated hvp of {key} in {name} disagrees with the declared loss: along random U, V at "
                f"its example inputs <U, (H V)_{key}> is {predicted!r}, mixed second differences of the loss "
                f"(derive.truth's evaluation) give {value!r} (relative error {error / scale:.2e})")
        worst = max(worst, error / scale)
    return worst


def _mixed_differences(truth: Program, values: dict, first: dict, second: dict, base: float):
    """d^2/da db L(x + a U + b V) at 0, from central differences at h and h/2 extrapolated:
    (value, |D(h) - D(h/2)|, rounding error), or None where the loss is not finite."""
    norms = (_rms(first), _rms(second))
    h = LOSS_STEP * max(1.0, _rms({k: values[k] for k in {*first, *second}}))
    estimates, magnitude = [], abs(base)
    for step in (h, h / 2):
        total = 0.0
        for a, b in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            moved = dict(values)
            for directions, sign, norm in ((first, a, norms[0]), (second, b, norms[1])):
                for key, d in directions.items():
                    moved[key] = moved[key] + (sign * step / norm) * d
            value = _loss(truth, moved)
            if not math.isfinite(value):
                return None
            magnitude = max(magnitude, abs(value))
            total += a * b * value
        estimates.append(total / (4 * step * step))
    wide, narrow = estimates
    scale = norms[0] * norms[1]
    noise = ROUNDING * np.finfo(float).eps * magnitude / (h / 2) ** 2 * scale
    return (4 * narrow - wide) / 3 * scale, abs(wide - narrow) * scale, noise


def _loss(truth: Program, values: dict) -> float:
    value = np.asarray(truth.run(values)[0], dtype=float)
    return float(value.reshape(-1)[0]) if value.size == 1 else math.nan


def _rms(arrays: dict) -> float:
    entries = np.concatenate([np.ravel(np.asarray(a, dtype=float)) for a in arrays.values()])
    return float(np.sqrt(np.mean(entries ** 2))) or 1.0
