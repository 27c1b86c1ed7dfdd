"""The explicit expansion, SymPy's truth: a loss written out entry by entry at concrete dims,
differentiated entry by entry with ``sympy.diff``, and compared with an expanded closed form.

:func:`explicit` works bottom-up over the DAG, so each node is expanded once; SymPy's own spellings
of a declared loss (``BlockMatrix``, an explicit ``Matrix`` of parameters' entries, an index ``Sum``)
are expanded as SymPy defines them, never through their rewriting in :mod:`derive.core.canonical`.
:func:`elementwise_gradient` is the independent truth ``g.elementwise`` returns (SymPy's ``diff``, applied
once per shared node by :mod:`derive.core.diff`);
:func:`simplifies_to_zero` and :func:`numeric_mismatch` are how ``g.verify`` compares.
"""

from __future__ import annotations

import builtins
import keyword
from collections.abc import Mapping
from functools import lru_cache

import numpy as np
from sympy import (
    Add,
    Basic,
    BlockMatrix,
    Determinant,
    Function,
    HadamardPower,
    HadamardProduct,
    ImmutableMatrix,
    Integer,
    Inverse,
    MatAdd,
    MatMul,
    MatPow,
    Matrix,
    MatrixExpr,
    MatrixSymbol,
    S,
    Sum,
    Symbol,
    Trace,
    Transpose,
    ZeroMatrix,
    cancel,
    count_ops,
    cse,
    exp,
    expand,
    lambdify,
    numbered_symbols,
    simplify,
)
from sympy.matrices import MatrixBase
from sympy.matrices.expressions.matexpr import MatrixElement
from sympy.matrices.expressions.slice import MatrixSlice

from ..errors import GradientMismatch
from .canonical import Blocks, Entries
from .diff import Differentiable
from .identity import vanishes
from .losses import Loss
from .symbols import LEAVES
from .walk import post_order

__all__ = ["elementwise_gradient", "elementwise_hvp", "explicit", "numeric_mismatch", "simplifies_to_zero", "target_constraints", "variables"]

# Differences bigger than these many operations are left to the numeric check (cancel and
# simplify take minutes on the rational functions an explicit 3 x 3 inverse produces).
CANCEL_LIMIT = 2_000
SIMPLIFY_LIMIT = 200
# A difference bigger than this is not even expanded (the entries of a power of an explicit inverse
# of a 3 x 3 product have 10,000 operations and expand for over ten minutes); the numbers decide.
EXPAND_LIMIT = 5_000


def explicit(expr: Basic, values: dict | None = None) -> Basic:
    """``expr`` (dims already substituted) with every matrix written out entry by entry.

    Works bottom-up over the DAG, so each node is expanded once from its arguments' explicit values.
    Products and sums are multiplied out directly: SymPy's ``MatMul._entry`` builds a ``Sum`` and
    substitutes into it, which takes seconds on a small network. SymPy's own spellings of a declared
    loss (``BlockMatrix``, an explicit ``Matrix`` of parameters' entries, an index ``Sum``) are
    expanded as SymPy defines them, never through their rewriting in :mod:`derive.canonical`.
    """
    values = {} if values is None else values
    for node in _expansion_order(expr, values):
        if node not in values:
            values[node] = _explicit_node(node, values)
    return values[expr]


def _expansion_order(root: Basic, done: dict) -> list[Basic]:
    """Post-order over what the expansion reads: the blocks of a BlockMatrix, the entries of an
    explicit matrix, and nothing under an index Sum (expanded term by term when it is met)."""
    return post_order(root, _expansion_children, skip=done)


def _expansion_children(node: Basic):
    if isinstance(node, BlockMatrix):
        return node.blocks
    if isinstance(node, MatrixBase):
        return node if any(e.atoms(MatrixSymbol) for e in node) else ()
    if isinstance(node, (Sum, *LEAVES)):
        return ()
    return node.args


def _explicit_node(node: Basic, values: dict) -> Basic:
    if isinstance(node, MatrixBase):
        if any(e.atoms(MatrixSymbol) for e in node):
            return ImmutableMatrix(node.rows, node.cols, [values[e] for e in node])
        return ImmutableMatrix(node)
    if isinstance(node, ZeroMatrix):
        # SymPy writes a 0 x m ZeroMatrix out as 0 x 0 (the empty block below an entry in the last row)
        return ImmutableMatrix.zeros(*node.shape)
    if isinstance(node, LEAVES):
        return node.as_explicit() if isinstance(node, MatrixExpr) else node
    if isinstance(node, BlockMatrix):
        return _assembled([[values[b] for b in row] for row in node.blocks.tolist()])
    if isinstance(node, Sum):
        return _expanded_sum(node, values)
    args = [values[a] for a in node.args]
    direct = _DIRECT.get(type(node))
    if direct is not None:
        return direct(args)
    if isinstance(node, Blocks):
        columns = node.columns
        return _assembled([args[1 + k:1 + k + columns] for k in range(0, len(args) - 1, columns)])
    if isinstance(node, Entries):
        return ImmutableMatrix(len(args[1:]) // node.columns, node.columns, args[1:])
    if isinstance(node, MatrixSlice):
        (r0, r1, _), (c0, c1, _) = node.args[1], node.args[2]
        return ImmutableMatrix(args[0][int(r0):int(r1), int(c0):int(c1)])
    if isinstance(node, MatrixElement):
        return args[0][int(args[1]), int(args[2])]
    if isinstance(node, MatrixExpr):
        return ImmutableMatrix(node.func(*args).as_explicit())
    if isinstance(node, (Trace, Determinant, Loss)):
        return node.func(*args).doit()
    return node.func(*args)


def _assembled(grid: list[list]) -> ImmutableMatrix:
    return ImmutableMatrix(Matrix.vstack(*[Matrix.hstack(*row) for row in grid]))


def _expanded_sum(node: Sum, values: dict) -> Basic:
    """An index sum at concrete limits: its body with every index value put in, term by term."""
    assignments: list[dict] = [{}]
    for index, low, high in node.limits:
        assignments = [{**a, index: Integer(k)} for a in assignments for k in range(int(low), int(high) + 1)]
    total = S.Zero
    for assignment in assignments:
        total += explicit(node.function.xreplace(assignment), values)
    return total


def _product(args):
    result = args[0]
    for factor in args[1:]:
        both = isinstance(result, MatrixBase) and isinstance(factor, MatrixBase)
        result = _matrix_product(result, factor) if both else result * factor
    return ImmutableMatrix(result)


def _matrix_product(a: MatrixBase, b: MatrixBase) -> ImmutableMatrix:
    """``a b`` entry by entry, leaving out the products with a 0 in them (what a sparse matrix stores not).

    SymPy's own product (a DomainMatrix over EXRAW) first asks of every entry whether 0 times it is
    0, that is whether it is finite: on the tanh of a big expanded argument that assumption query
    runs for seconds (it reduces the argument's imaginary part modulo pi). An expansion has no
    infinite entries, so the zeros are left out by their form, as SymPy's sparse product does."""
    left, right = a.tolist(), b.tolist()
    columns = [[row[j] for row in right] for j in range(b.cols)]
    return ImmutableMatrix(a.rows, b.cols, [
        Add(*[x * y for x, y in zip(row, column) if x and y]) for row in left for column in columns])


def _hadamard(args):
    result = args[0]
    for factor in args[1:]:
        result = result.multiply_elementwise(factor)
    return ImmutableMatrix(result)


def _matrix_power(args):
    base, power = args
    if int(power) >= 0:
        return _product([base] * int(power)) if int(power) else ImmutableMatrix.eye(base.rows)
    # A**-k as the k-th power of the cofactor inverse: SymPy's own runs an elimination with
    # dotprodsimp, which takes minutes on the inverse of a 3 x 3 product
    return _product([_DIRECT[Inverse]([base])] * -int(power))


_DIRECT = {
    MatMul: _product,
    # repeated products: SymPy's own power simplifies every intermediate product (dotprodsimp)
    MatPow: _matrix_power,
    MatAdd: lambda args: ImmutableMatrix(sum(args[1:], args[0])),
    Transpose: lambda args: ImmutableMatrix(args[0].T),
    HadamardProduct: _hadamard,
    HadamardPower: lambda args: ImmutableMatrix(args[0].applyfunc(lambda e: e ** args[1])),
    # Cofactors, without the cancellations SymPy's elimination runs once per entry.
    Inverse: lambda args: ImmutableMatrix(args[0].adjugate(method="berkowitz") / args[0].det(method="berkowitz")),
    Determinant: lambda args: args[0].det(method="berkowitz"),
}


def simplifies_to_zero(difference: Basic) -> bool:
    """Cheap tests first: most differences vanish as rational functions of their unknowns and their
    function applications (:func:`derive.core.identity.vanishes`, exact, one pass over the DAG); the
    others on SymPy's expansion; costlier ones only for small terms."""
    if difference == 0 or vanishes(difference):
        return True
    if count_ops(difference) > EXPAND_LIMIT:
        return False
    expanded = expand(difference)
    if expanded == 0:
        return True
    size = count_ops(expanded)
    if size <= CANCEL_LIMIT and cancel(expanded) == 0:
        return True
    return size <= SIMPLIFY_LIMIT and simplify(expanded.rewrite(exp)) == 0


def _random_point(symbols, rng, square: set, positive: bool) -> dict:
    point = {}
    for s in symbols:
        low = 0.1 if positive else -1.0
        value = rng.uniform(low, 1.0)
        if isinstance(s, MatrixElement) and s.args[0] in square and s.args[1] == s.args[2]:
            value += float(s.args[0].shape[0])  # diagonally dominant: inverse and log-det are well defined
        point[s] = value
    return point


def numeric_mismatch(param, closed: ImmutableMatrix, truth: ImmutableMatrix, points: int, seed: int,
                     tolerance: float, square: set) -> float:
    """Largest relative error between two explicit matrices at random points; raises on a mismatch."""
    symbols = sorted(variables(closed) | variables(truth), key=str)
    f_closed, f_truth = _numeric_function(closed, symbols), _numeric_function(truth, symbols)
    rng = np.random.default_rng(seed)
    worst, compared = 0.0, 0
    for _ in range(points):
        for positive in (False, True):
            point = _random_point(symbols, rng, square, positive)
            with np.errstate(all="ignore"):
                c = np.asarray(f_closed(point), dtype=complex)
                t = np.asarray(f_truth(point), dtype=complex)
            if _real_and_finite(t):
                break
        else:
            continue
        compared += 1
        closed_ok = _real_and_finite(c)  # a closed form that is complex or infinite where the truth is not: wrong
        c, t = c.real, t.real
        # Gradients that are exactly 0 come out of the expansion as rounding noise (1e-16): measure
        # errors against a scale of at least 1e-3, so that noise is not a relative error of 1.
        scale = max(np.max(np.abs(t)), np.max(np.abs(np.nan_to_num(c))), 1e-3)
        error = float(np.max(np.abs(c - t)) / scale) if closed_ok else float("inf")
        if not error <= tolerance:
            r, q = np.unravel_index(int(np.argmax(np.abs(c - t))), t.shape)
            raise GradientMismatch(
                f"dL/d{param.name}[{r}, {q}]: closed form gives {float(c[r, q])!r} but the elementwise derivative "
                f"gives {float(t[r, q])!r} (relative error {error:.2e}) at {_describe(point)}")
        worst = max(worst, error)
    if compared == 0:
        raise GradientMismatch(
            f"dL/d{param.name}: the elementwise derivative is not real and finite at any of {2 * points} random "
            "points (a log or a power of a negative quantity?), so nothing could be compared")
    return worst


def _numeric_function(expr: Basic, symbols: list):
    """``expr`` compiled with lambdify, called with a point ``{entry X[i, j] or symbol: value}``.

    The matrices themselves are lambdify's arguments, their entries read off arrays, so nothing is
    substituted into the expression first: rebuilding a big expression costs more than compiling it
    (each Min in it compares its arguments again). Names lambdify could not take as they are (not an
    identifier, or one of NumPy's) get plain stand-ins for every entry instead."""
    matrices = sorted({s.args[0] for s in symbols if isinstance(s, MatrixElement)}, key=str)
    scalars = [s for s in symbols if not isinstance(s, MatrixElement)]
    names = [str(getattr(a, "name", "")) for a in [*matrices, *scalars]]
    functions = {type(n) for n in _nodes(expr) if isinstance(n, Function)}
    # derive's scalar functions by their NumPy implementations (_imp_), found here in one pass over
    # the DAG: lambdify's own search walks the tree
    modules = [{f.__name__: f._imp_ for f in functions if hasattr(f, "_imp_")}, "numpy"]
    called = {f.__name__ for f in functions} | _MODULES
    if all(isinstance(m, MatrixSymbol) for m in matrices) and all(_plain(n) and n not in called for n in names) \
            and len(set(names)) == len(names):
        # shared subexpressions computed once (printing the tree repeats them), named apart from the arguments
        function = lambdify([*matrices, *scalars], expr, modules, use_imps=False, dummify=False, cse=_shared)

        def call(point: dict):
            arrays = {m: np.zeros(tuple(int(d) for d in m.shape)) for m in matrices}
            for s, value in point.items():
                if isinstance(s, MatrixElement):
                    arrays[s.args[0]][int(s.args[1]), int(s.args[2])] = value
            return function(*arrays.values(), *(point[s] for s in scalars))
        return call
    # lambdify takes plain symbols: stand-ins for the matrix entries X[0, 1] ...
    # (Symbols with plain names: lambdify re-substitutes Dummy arguments into the whole expression.)
    plain = {s: Symbol(f"_v{k}") for k, s in enumerate(symbols)}
    function = lambdify(list(plain.values()), expr.xreplace(plain), modules, use_imps=False)
    return lambda point: function(*(point[s] for s in symbols))


def _shared(expr):
    # list=False: lambdify hands over the expression itself, and a list back would wrap the result
    return cse(expr, symbols=numbered_symbols("_s"), list=False)


def _plain(name: str) -> bool:
    """A name the generated function can use as an argument without shadowing what it calls."""
    return (name.isidentifier() and name.isascii() and not keyword.iskeyword(name) and not name.startswith("_")
            and not hasattr(np, name) and not hasattr(builtins, name))


# What lambdify's NumPy code refers to besides NumPy's functions and the expression's own functions.
_MODULES = {"scipy", "numpy", "math", "builtins", "range"}


def _real_and_finite(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all(np.abs(values.imag) <= 1e-12 * (1 + np.abs(values.real))))


def variables(expr: Basic) -> set:
    """The scalar unknowns of an explicit expression: matrix entries ``X[0, 1]`` and plain symbols."""
    return {n for n in _nodes(expr) if isinstance(n, MatrixElement)
            or (isinstance(n, Symbol) and not isinstance(n, MatrixExpr))}


def _nodes(expr: Basic) -> set:
    """Every node of ``expr`` once: a walk over the DAG (SymPy's ``atoms`` walks the tree, which repeats
    every shared subexpression, exponentially often in a deep expansion), not into matrix entries'
    indices."""
    seen: set = set()
    stack = list(expr) if isinstance(expr, MatrixBase) else [expr]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if not isinstance(node, MatrixElement):
            stack.extend(a for a in node.args if isinstance(a, Basic) and a not in seen)
    return seen


def _describe(point: dict) -> str:
    items = list(point.items())
    shown = ", ".join(f"{k}={v:.4g}" for k, v in items[:6])
    return shown + (f" and {len(items) - 6} more" if len(items) > 6 else "")


def elementwise_gradient(loss: Basic, param: MatrixSymbol, dims: Mapping) -> ImmutableMatrix:
    """The explicit matrix of dL/d(param_ij): ``loss`` as declared, written out into scalars at ``dims``
    and differentiated entry by entry with ``sympy.diff``."""
    return _elementwise_gradient(loss, param, tuple(sorted(((d, int(v)) for d, v in dims.items()), key=str)))


# The expansion and SymPy's differentiation take seconds on a 3-layer network; the same truth is
# asked for again (verify, then a renderer's or a test's own comparison), and the value is immutable.
@lru_cache(maxsize=64)
def _elementwise_gradient(loss: Basic, param: MatrixSymbol, dims: tuple) -> ImmutableMatrix:
    entries = param.subs(dict(dims)).as_explicit()
    scalar_loss = _scalar_loss(loss, dims)
    # sympy.diff entry by entry, each shared subexpression differentiated once (derive.core.diff)
    return ImmutableMatrix(entries.shape[0], entries.shape[1], lambda i, j: scalar_loss.derivative(entries[i, j]))


def elementwise_hvp(loss: Basic, directions: tuple, param: MatrixSymbol, dims: Mapping) -> ImmutableMatrix:
    """The explicit HVP's component for ``param``: d/d(param_ij) of sum_P <dL/dP, V_P>, with each dL/dP
    the elementwise gradient and ``directions`` the pairs (P, V_P), all written out at ``dims``."""
    key = tuple(sorted(((d, int(v)) for d, v in dims.items()), key=str))
    pairing = S.Zero
    for moving, direction in directions:
        gradient = _elementwise_gradient(loss, moving, key)
        pairing += sum((g * v for g, v in zip(gradient, direction.subs(dict(key)).as_explicit())), S.Zero)
    entries = param.subs(dict(key)).as_explicit()
    return ImmutableMatrix(entries.shape[0], entries.shape[1], lambda i, j: pairing.diff(entries[i, j]))


@lru_cache(maxsize=16)
def _scalar_loss(loss: Basic, dims: tuple) -> Differentiable:
    """The loss written out at ``dims``, once for all its parameters."""
    # xreplace, not subs: SymPy's subs leaves a dim unreplaced inside a nested index Sum
    scalar_loss = explicit(loss.xreplace({d: Integer(v) for d, v in dims}))
    return Differentiable(scalar_loss[0, 0] if isinstance(scalar_loss, MatrixBase) else scalar_loss)  # a 1 x 1 loss


def target_constraints(nodes, dims: Mapping) -> dict:
    """Substitutions that make the explicit targets of the losses among ``nodes`` valid (a declared
    cross-entropy's targets summing to 1): only a target made of free entries (Y, Y^T) can be
    constrained by substitution."""
    subs = {}
    for node in nodes:
        if isinstance(node, Loss):
            constraints = node.target_constraints(explicit(node.target.subs(dims)))
            subs.update({k: v for k, v in constraints.items() if isinstance(k, MatrixElement)})
    return subs
