"""The checker for hand derivations: is a hand gradient right, and if not, where and what slip.

``check(hand, loss, wrt)`` derives dL/d(wrt) with :func:`derive.gradients`, reads the hand formula
(text in the grammar of :mod:`derive.parse`, or a SymPy matrix expression) and compares the two at
concrete dims that cannot hide a constant factor (distinct odd primes, :func:`choose_dims`):
symbolically where SymPy can (each entry's difference expands to 0) and numerically at random
points always. Every hand formula gets a verdict; only bad input raises (a ParseError or another
DeriveError). A wrong hand formula gets

* its shape problem (both shapes, or the operands inside it that do not fit), or the first entry
  that differs, both entries written out, and a numeric counterexample (the point, both values);
* a diagnosis when a simple change makes it right. The changes are a table (:data:`DIAGNOSES`) of
  small generators, each proposing corrected formulas; the first proposal that equals the derived
  gradient (screened numerically, then confirmed like the hand formula itself) names the slip.
  A constant factor is read at a second set of dims too, so a correction is right at every size.

Nothing here differentiates: the derivation is the truth, read through its public API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sympy import (
    Basic,
    MatrixExpr,
    MatrixSymbol,
    Symbol,
    expand,
)

from ..core.canonical import canonical
from ..core.graph import topological_order
from ..core.symbols import LossGradient
from ..errors import DeriveError, ParseError
from .compare import compare
from .diagnoses import SCREEN_POINTS, diagnose
from .formula import HandShapeError, Node, from_sympy, to_text, walk
from .grammar import parse
from .meaning import to_sympy
from .network import NetworkView
from .results import CheckResult

# --- check --------------------------------------------------------------------------------------------

def parameter(loss: Basic, wrt) -> MatrixSymbol:
    """The matrix ``wrt`` (a MatrixSymbol, or the name of one of the loss's matrices) to differentiate by."""
    if isinstance(wrt, MatrixSymbol):
        return wrt
    matrices = {s.name: s for s in topological_order(canonical(loss)) if type(s) is MatrixSymbol}
    if isinstance(wrt, str) and wrt in matrices:
        return matrices[wrt]
    raise DeriveError(f"wrt must be one of the loss's matrices ({', '.join(sorted(matrices))}), got {wrt!r}")


def _hand_tree(hand, net: NetworkView) -> Node:
    if isinstance(hand, str):
        return parse(hand, net.scope)
    if isinstance(hand, Basic):
        return from_sympy(_in_network_symbols(hand, net), net.scope)
    raise ParseError(f"a hand formula is text or a SymPy matrix expression, not a {type(hand).__name__}")


def _in_network_symbols(hand: Basic, net: NetworkView) -> Basic:
    """A SymPy hand formula in the network's own symbols: a plain MatrixSymbol named like a quantity
    (``MatrixSymbol("h", N, 3)``) stands for it, also inside a part kept whole (``det(h^T h)``), and
    a Symbol named like a dimension for the dimension. Any other symbol is refused, like an unknown
    name in a text."""
    known = set(net.scope.symbols.values()) | set(net.scope.gradients.values())
    renamed = {}
    for s in sorted(hand.free_symbols, key=str):
        if s in known:
            continue
        found = net.scope.symbol(str(s.name)) if type(s) in (MatrixSymbol, Symbol) else None
        matrix = isinstance(s, MatrixExpr)
        if found is not None and isinstance(found, MatrixExpr) == matrix and (not matrix or found.shape == s.shape):
            renamed[s] = found
            continue
        what = f"{s.name} ({s.shape[0]} x {s.shape[1]})" if matrix else str(s)
        if found is not None and matrix and isinstance(found, MatrixExpr):
            what += f", but the network's {found.name} is {found.shape[0]} x {found.shape[1]}"
        raise ParseError(f"the hand formula uses {what}: not a symbol of this network, which knows "
                         f"{net.scope.known()}")
    return hand.xreplace(renamed)


def check(hand, loss: Basic, wrt, *, names: Mapping | None = None, dims: Mapping | None = None,
          points: int = 5, seed: int = 0, view: NetworkView | None = None) -> CheckResult:
    """Compare a hand gradient of ``loss`` with respect to ``wrt`` with the derived one.

    ``hand`` is text in the grammar of :mod:`derive.parse` (plain or LaTeX) or a SymPy matrix
    expression; it may use the network's symbols, the derivation's named intermediates (``names``
    as for :func:`derive.gradients`) and their gradients (``dL/dZ``). ``dims`` are the concrete
    sizes to compare at (by default distinct odd primes, :func:`choose_dims`; the report warns of
    given sizes that can hide a factor). A text that is not in the grammar raises
    :class:`~derive.errors.ParseError`, a SymPy formula with a symbol the network does not have too;
    a wrong formula does not raise, its result says why. ``view``: this loss and parameter's
    :class:`NetworkView` made before, at these names and dims (grading reuses one per question).
    """
    param = parameter(loss, wrt)
    net = view if view is not None else NetworkView(loss, param, names, dims)
    tree = _hand_tree(hand, net)
    sample = net.points(max(points, SCREEN_POINTS), seed)
    base = {"param": param, "hand": to_text(tree), "derived": to_text(from_sympy(net.g.compact(param), net.scope)),
                "dims": dict(net.dims), "points": len(sample), "definitions": _definitions(net, tree)}
    try:
        value = to_sympy(tree, net.scope.softmax_axis)
        problem = _shape_problem(value, param)
    except HandShapeError as error:
        problem = str(error)
    if problem is not None:
        return _notify(CheckResult(False, method="symbolic", shape_problem=problem,
                                   diagnosis=diagnose(net, tree, sample), **base))
    comparison = compare(net, tree, net.truth_tree, sample)
    if comparison.equal and dims is None and net.sibling is not None:
        # Equal at one set of sizes can be their luck (2/5 X^T r is 2/N X^T r at N = 5, D - 1 is 2 at
        # D = 3): a formula is right when it is right at a second set of sizes too.
        second, points_there = net.sibling, net.sibling.points(max(points, SCREEN_POINTS), seed + 1)
        there = compare(second, tree, second.truth_tree, points_there, symbolic=False)
        if not there.equal:
            return _notify(CheckResult(False, method=there.method, counterexample=there.counterexample,
                                       diagnosis=diagnose(second, tree, points_there), equal_only_at=dict(net.dims),
                                       **{**base, "dims": dict(second.dims)}))
    diagnosis = None if comparison.equal else diagnose(net, tree, sample)
    notes = () if comparison.equal else _entrywise_inverses(tree, net.scope.softmax_axis)
    return _notify(CheckResult(comparison.equal, method=comparison.method,
                               counterexample=comparison.counterexample, diagnosis=diagnosis, notes=notes, **base))


def _entrywise_inverses(tree: Node, axis: int) -> tuple[str, ...]:
    """A written negative power of a square matrix, A^-1, is read entry by entry, as A^2 is; the hand
    most likely meant the inverse, which the grammar does not have: say so rather than only 'wrong'."""
    notes = []
    for _, n in walk(tree):
        if n.kind == "pow" and n.text == "^" and n.value < 0:
            shape = getattr(to_sympy(n.args[0], axis), "shape", (1, 1))
            if shape != (1, 1) and expand(shape[0] - shape[1]) == 0:
                notes.append(f"{to_text(n)} is read entry by entry (1 ⊘ {to_text(n.args[0])}), as A^2 squares each "
                             "entry; the grammar has no matrix inverse: give the hand formula as a SymPy "
                             "expression for that (Inverse(A).T)")
    return tuple(dict.fromkeys(notes))


def _shape_problem(value: Basic, param: MatrixSymbol) -> str | None:
    shape = value.shape if isinstance(value, MatrixExpr) else (1, 1)
    if all(expand(a - b) == 0 for a, b in zip(shape, param.shape)):
        return None
    hint = ""
    if all(expand(a - b) == 0 for a, b in zip(reversed(shape), param.shape)):
        hint = "; its transpose has the right shape (a transpose missing?)"
    return (f"the hand formula is {shape[0]} x {shape[1]} but dL/d{param.name} must have the shape of "
            f"{param.name}, {param.shape[0]} x {param.shape[1]}{hint}")


def _definitions(net: NetworkView, tree: Node) -> tuple:
    """The gradients named in the hand or derived formula, and those they name, written out."""
    pending = [n.value for _, n in walk(tree) if n.kind == "leaf" and isinstance(n.value, LossGradient)]
    pending += sorted(net.g.compact(net.param).atoms(LossGradient), key=str)
    seen, out = {net.g.adjoint(net.param)}, []
    while pending:
        adjoint = pending.pop(0)
        if adjoint in seen or adjoint not in net.expansion:
            continue
        seen.add(adjoint)
        definition = net.expansion[adjoint]
        out.append((f"dL/d{adjoint.name}", to_text(net.tree(definition))))
        pending += sorted(definition.atoms(LossGradient), key=str)
    return tuple(out)


# Listeners are told of every failed check (the pytest plugin shows their reports on failure).
_listeners: list[Callable[[CheckResult], Any]] = []


@contextmanager
def recording_failures() -> Iterator[list[CheckResult]]:
    """Collect every failed check made inside the ``with`` block (the pytest plugin's hook)."""
    failed: list[CheckResult] = []
    _listeners.append(failed.append)
    try:
        yield failed
    finally:
        _listeners.remove(failed.append)


def _notify(result: CheckResult) -> CheckResult:
    if not result.ok:
        for listener in _listeners:
            listener(result)
    return result
