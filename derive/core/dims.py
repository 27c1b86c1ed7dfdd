"""Concrete dims: checking them (:func:`normalize_dims`), the dimension symbols of an expression, the
sizes a network's slices, blocks and entries need (:func:`requirements`, :func:`fit_dims`), and what an
explicit expansion at some dims would cost, so that one that would take minutes is refused before it
starts.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sympy import (
    Basic,
    Determinant,
    Integer,
    Inverse,
    MatMul,
    MatrixExpr,
    Symbol,
    diff,
    sympify,
)
from sympy.matrices.expressions.matexpr import MatrixElement
from sympy.matrices.expressions.slice import MatrixSlice

from ..errors import DimsError, ExpansionTooLarge
from .graph import topological_order
from .losses import Loss
from .symbols import LEAVES

__all__ = ["Requirement", "check_expansion_size", "check_fit", "dimension_symbols", "expansion_cost", "fit_dims",
           "node_requirements", "normalize_dims", "requirements", "size_value"]

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
        value = size_value(key, value)
        if out.get(symbol, value) != value:  # {N: 2, "N": 3}: which one was meant?
            raise DimsError(f"dimension {key} is given twice, as {out[symbol]} and {value}")
        out[symbol] = value
    missing = sorted(str(s) for s in needed if s not in out)
    if missing:
        raise DimsError(f"concrete dims are missing for {', '.join(missing)}")
    check_fit(requirements(expr), out)
    return out


def size_value(key, value) -> int:
    """A given size as an int, refused unless it is a positive integer (2.5, "3" and True are not)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, Integer)) or int(value) < 1:
        raise DimsError(f"dimension {key} must be a positive integer, got {value!r}")
    return int(value)


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


# --- the sizes a network needs: every slice, block and entry non-empty and in range -----------------

# Rounds of fit_dims before it gives up (each raises one lower bound as far as one requirement needs;
# requirements that contradict each other, D > N and N > D, raise them one by one for ever).
FIT_ROUNDS = 64


@dataclass(frozen=True)
class Requirement:
    """``amount >= least`` at the dims, else ``node`` is empty (``kind`` "size") or out of range
    ("start", "end", "entry") along ``axis`` (0: rows, 1: columns) at ``bound``."""
    amount: Basic
    least: int
    kind: str
    axis: int
    node: Basic = field(compare=False)
    bound: Basic = field(default=None, compare=False)

    def unmet(self, dims: Mapping) -> bool:
        value = self.at(dims)
        return bool(value.is_Number and value < self.least)

    def at(self, dims: Mapping) -> Basic:
        return sympify(self.amount).xreplace({s: Integer(v) for s, v in dims.items() if isinstance(s, Basic)})

    def message(self, dims: Mapping) -> str:
        used = ", ".join(f"{s}={dims[s]}" for s in sorted(self.amount.free_symbols, key=str) if s in dims)
        return f"{self.what()}: {self.amount} = {self.at(dims)} at {used}, it must be at least {self.least}"

    def what(self) -> str:
        """Printed only for the message: printing every node of a deep network took longer than deriving it."""
        axis = ("row", "column")[self.axis]
        if self.kind == "size":
            named = f"the slice {self.node}" if isinstance(self.node, MatrixSlice) else str(self.node)
            return f"{named} has {self.amount} {axis}s"
        parent = self.node.args[0]
        if self.kind == "start":
            return f"the slice {self.node} starts at {axis} {self.bound}"
        if self.kind == "end":
            return f"the slice {self.node} ends at {axis} {self.bound}, beyond the {parent.shape[self.axis]} {axis}s of {parent}"
        return f"the entry {self.node} needs {axis} {self.bound} of {parent}'s {parent.shape[self.axis]}"


def requirements(*exprs: Basic, every_matrix: bool = True) -> list[Requirement]:
    """What the dims must satisfy for every matrix of ``exprs`` to exist: each at least 1 x 1 (a slice
    ``X[:, 2:]`` has ``D - 2`` columns), each slice inside its matrix, each entry's position inside.
    ``every_matrix=False``: slices and entries only (a closed form's zero block may be empty, as
    ``0_{N x (D - 7)}`` beside the gradient of ``X[:, 4:7]`` at D = 7)."""
    found: dict[tuple, Requirement] = {}
    for expr in exprs:
        for node in topological_order(expr):
            for need in node_requirements(node, every_matrix):
                found.setdefault((need.amount, need.least), need)
    return list(found.values())


def node_requirements(node: Basic, every_matrix: bool = True) -> list[Requirement]:
    """One node's requirements (its own size, and a slice's or an entry's bounds); see requirements."""
    # a fixed size is SymPy's to check, at construction
    return [n for n in _node_requirements(node, every_matrix) if n.amount.free_symbols]


def _node_requirements(node: Basic, every_matrix: bool) -> Iterable[Requirement]:
    if isinstance(node, MatrixElement) and all(getattr(i, "is_Integer", False) for i in node.args[1:]):
        parent = node.args[0]    # an entry is a scalar, not a MatrixExpr
        for axis, index in enumerate(node.args[1:]):
            yield Requirement(sympify(parent.shape[axis] - index), 1, "entry", axis, node, index)
    if not isinstance(node, MatrixExpr):
        return
    if every_matrix or isinstance(node, MatrixSlice):   # SymPy cannot write out an empty slice
        yield from (Requirement(sympify(size), 1, "size", axis, node) for axis, size in enumerate(node.shape))
    if isinstance(node, MatrixSlice):
        parent = node.args[0]
        for axis, (start, stop, _) in enumerate(node.args[1:]):
            yield Requirement(sympify(start), 0, "start", axis, node, start)
            yield Requirement(sympify(parent.shape[axis] - stop), 0, "end", axis, node, stop)


def check_fit(needs: Sequence[Requirement], dims: Mapping) -> None:
    """Refuse dims at which a slice, block or entry of the network is empty or out of range."""
    for need in needs:
        if need.unmet(dims):
            raise DimsError(f"the dims make a matrix of the network empty or out of range: {need.message(dims)}")


def fit_dims(symbols: Sequence[Symbol], needs: Sequence[Requirement], choose: Callable[[Symbol, int, set], int],
             given: Mapping | None = None) -> dict[Symbol, int]:
    """The sizes ``choose(symbol, least, taken)`` picks for ``symbols`` (in order, ``taken`` the sizes
    already picked), each lower bound raised until every requirement holds; ``given`` sizes stay."""
    given = dict(given or {})
    check_fit([n for n in needs if n.amount.free_symbols <= given.keys()], given)   # the user's own dims
    least = {s: 1 for s in symbols if s not in given}
    for _ in range(FIT_ROUNDS):
        dims = dict(given)
        for s in symbols:
            if s not in given:
                dims[s] = choose(s, least[s], set(dims.values()))
        need = next((n for n in needs if n.unmet(dims)), None)
        if need is None:
            return dims
        growing = [s for s in sorted(need.amount.free_symbols & set(least), key=str)
                   if diff(need.amount, s).xreplace(dims).is_positive]
        if not growing:
            raise DimsError(f"no sizes make every matrix of the network non-empty and in range: {need.message(dims)}")
        grown, slope = growing[0], diff(need.amount, growing[0]).xreplace(dims)
        least[grown] = dims[grown] + max(1, math.ceil((need.least - need.at(dims)) / slope))   # X[:, 100:]: at once
    raise DimsError(f"no sizes found in {FIT_ROUNDS} rounds make every matrix of the network non-empty and in "
                    f"range: {need.message(dims)}")
