"""Concrete dims: checking them (:func:`normalize_dims`), the dimension symbols of an expression, and
what an explicit expansion at some dims would cost, so that one that would take minutes is refused
before it starts.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

from sympy import (
    Basic,
    Determinant,
    Integer,
    Inverse,
    MatMul,
    MatrixExpr,
    Symbol,
    sympify,
)

from ..errors import DimsError, ExpansionTooLarge
from .graph import topological_order
from .losses import Loss
from .symbols import LEAVES

__all__ = ["check_expansion_size", "dimension_symbols", "expansion_cost", "normalize_dims"]

# The explicit expansion is refused above this many scalar multiply-adds, or this many times the
# number of entries to differentiate (a 3-layer MLP at dims 2 is about 1,200 and takes seconds).
EXPANSION_LIMIT = 20_000
DIFFERENTIATION_LIMIT = 20_000


def normalize_dims(dims: Mapping, expr: Basic) -> dict[Symbol, int]:
    """``{N: 2, "D": 3}`` -> ``{N: 2, D: 3}``, checked: positive integers, every dimension given."""
    needed = dimension_symbols(expr)
    by_name = {str(s): s for s in needed}
    out: dict[Symbol, int] = {}
    for key, value in dict(dims).items():
        symbol = by_name.get(str(key))
        if symbol is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (numbers.Integral, Integer)) or int(value) < 1:
            raise DimsError(f"dimension {key} must be a positive integer, got {value!r}")
        if out.get(symbol, int(value)) != int(value):  # {N: 2, "N": 3}: which one was meant?
            raise DimsError(f"dimension {key} is given twice, as {out[symbol]} and {int(value)}")
        out[symbol] = int(value)
    missing = sorted(str(s) for s in needed if s not in out)
    if missing:
        raise DimsError(f"concrete dims are missing for {', '.join(missing)}")
    return out


def dimension_symbols(expr: Basic) -> set[Symbol]:
    """The symbols that appear in the shapes of the matrices in ``expr``."""
    found = set()
    for node in topological_order(expr):
        if isinstance(node, MatrixExpr) and isinstance(node, LEAVES):
            for d in node.shape:
                found |= sympify(d).free_symbols
        elif isinstance(node, Loss):
            found |= node.scale.free_symbols
    return found


def expansion_cost(expr: Basic, dims: Mapping) -> int:
    """Scalar multiply-adds the explicit expansion takes (products count their inner dimension)."""
    cost = 0
    for node in topological_order(expr):
        if not isinstance(node, MatrixExpr) or isinstance(node, LEAVES):
            continue
        rows, cols = (int(sympify(d).subs(dims)) for d in node.shape)
        inner = 1
        if isinstance(node, MatMul):
            inner = max((int(sympify(a.cols).subs(dims)) for a in node.args if isinstance(a, MatrixExpr)), default=1)
        elif isinstance(node, (Inverse, Determinant)):
            inner = math.factorial(min(rows, 10))
        cost += rows * cols * inner
    return cost


def check_expansion_size(expr: Basic, dims: Mapping, entries: int = 1) -> None:
    """Refuse, before starting, an expansion that would take minutes: say how big it would be."""
    cost = expansion_cost(expr, dims)
    if cost > EXPANSION_LIMIT or cost * entries > DIFFERENTIATION_LIMIT:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(dims.items(), key=lambda kv: str(kv[0])))
        raise ExpansionTooLarge(
            f"expanding at {shown} takes about {cost:,} scalar operations, differentiated for {entries:,} "
            f"entries ({cost * entries:,} in all; the limit is {DIFFERENTIATION_LIMIT:,}); use smaller dims, "
            "for example 2 or 3 for each")
