"""The result of differentiating a loss: closed forms, steps, index forms, explicit truth, ``verify``.

``gradients(loss, wrt)`` builds the graph, runs the reverse sweep and returns a :class:`Derivation`.
Renderers and the checker read a derivation and nothing else. Two forms of every gradient exist:

* compact (``g.compact(W)``): in the names of intermediate quantities and upstream gradients,
  ``X^T dL/dZ_1``, the form of the derivation sheet;
* closed (``g[W]``): in the network's own symbols only, so that ``subs(dims).as_explicit()`` and
  ``lambdify`` work on it with plain SymPy.

``g.elementwise(W, dims)`` is the independent truth: the loss expanded into scalars at concrete
dims and differentiated entry by entry with ``sympy.diff``; ``g.verify(dims)`` compares the two.

Before ``gradients`` returns, every closed form is also checked numerically (``check=True``, the
default): at random points of the loss's domain its directional derivatives are compared with
central differences of the declared loss, both evaluated by :mod:`derive.truth`, which owes nothing
to the rules or the printers (``g.check_numerically()``; its result is ``g.numeric_check``).
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from sympy import (
    Basic,
    BlockMatrix,
    Determinant,
    Dummy,
    Eq,
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
    exp,
    expand,
    lambdify,
    simplify,
    sympify,
)
from sympy.matrices import MatrixBase
from sympy.matrices.expressions.matexpr import MatrixElement
from sympy.matrices.expressions.slice import MatrixSlice

from .algebra import entry, hadamard, mat_add, mat_mul, submatrix, transpose
from .canonical import Blocks, Entries, canonical
from .errors import DimsError, ExpansionTooLarge, GradientMismatch, InvalidParameter, ParameterNotInLoss
from .functions import Loss
from .graph import (
    LEAVES,
    Adjoint,
    Graph,
    Intermediate,
    Step,
    check_scalar,
    choose_names,
    reverse_sweep,
    topological_order,
)
from .truth import NumericCheck, check_gradients

__all__ = ["Derivation", "Forward", "Verification", "explicit", "gradients", "normalize_dims"]

# The explicit expansion is refused above this many scalar multiply-adds, or this many times the
# number of entries to differentiate (a 3-layer MLP at dims 2 is about 1,200 and takes seconds).
EXPANSION_LIMIT = 20_000
DIFFERENTIATION_LIMIT = 20_000
# Differences bigger than these many operations are left to the numeric check (cancel and
# simplify take minutes on the rational functions an explicit 3 x 3 inverse produces).
CANCEL_LIMIT = 2_000
SIMPLIFY_LIMIT = 200
# A difference bigger than this is not even expanded (the entries of a power of an explicit inverse
# of a 3 x 3 product have 10,000 operations and expand for over ten minutes); the numbers decide.
EXPAND_LIMIT = 5_000


@dataclass(frozen=True)
class Forward:
    """A named intermediate quantity of the forward pass."""

    symbol: Intermediate
    definition: Basic   # in terms of earlier names
    expression: Basic   # in terms of the network's symbols
    shape: tuple


@dataclass(frozen=True)
class Verification:
    """What :meth:`Derivation.verify` established for one parameter."""

    param: MatrixSymbol
    symbolic: bool          # SymPy simplified every entry's difference to 0
    max_relative_error: float
    points: int


def gradients(loss: Basic, wrt: Iterable[MatrixSymbol] | MatrixSymbol, *,
              names: Mapping | None = None, allow_unused: bool = False, check: bool = True) -> Derivation:
    """Differentiate the scalar ``loss`` with respect to each MatrixSymbol in ``wrt``.

    ``names`` maps a name to an intermediate expression (``{"Z": X*W + b1}``) to use instead of an
    automatic one (``Z_1``, ``H_1``). A parameter that the loss does not use is an error unless
    ``allow_unused`` is true, when its gradient is a zero matrix. With ``check`` (the default) every
    closed form is compared with central differences of the loss at random points before it is
    returned (:meth:`Derivation.check_numerically`): a mismatch raises GradientMismatch.
    """
    loss = ImmutableMatrix(loss) if isinstance(loss, MatrixBase) else loss  # Matrix([[...]]) is mutable
    check_scalar(loss)
    params = _check_params(loss, wrt)
    memo: dict = {}
    root = canonical(loss, memo)  # blocks, explicit matrices, index sums in derive's nodes (derive.canonical)
    graph = Graph.build(root, set(params))
    unused = [p for p in params if p not in graph.depends]
    if unused and not allow_unused:
        raise ParameterNotInLoss(
            f"the loss does not depend on {', '.join(p.name for p in unused)}; pass allow_unused=True to get "
            "a zero gradient for it")
    g = Derivation(loss, tuple(params), graph, _named_nodes(names or {}, graph, memo))
    if check:
        g.check_numerically()
    return g


def _check_params(loss: Basic, wrt) -> list[MatrixSymbol]:
    params = [wrt] if isinstance(wrt, Basic) else list(wrt)
    if not params:
        raise InvalidParameter("wrt is empty: name at least one MatrixSymbol to differentiate with respect to")
    for p in params:
        if not isinstance(p, MatrixSymbol):
            raise InvalidParameter(
                f"wrt must hold MatrixSymbols; {p!r} is a {type(p).__name__} (write a scalar parameter as a "
                "1 x 1 MatrixSymbol)")
    counts = Counter(p.name for p in params)
    duplicated = sorted(name for name, count in counts.items() if count > 1)
    if duplicated:
        raise InvalidParameter(f"wrt names {', '.join(duplicated)} more than once")
    return params


def _named_nodes(names: Mapping, graph: Graph, memo: dict) -> dict[Basic, str]:
    """Normalise ``{name: expr}`` (or ``{expr: name}``) to ``{expr: name}``, each expression written as
    the graph's node is (the canonical form, with the loss's memo)."""
    matrices = {node for node in graph.order if isinstance(node, MatrixSymbol)}
    taken = {node.name for node in matrices}
    pairs: dict[Basic, str] = {}
    for key, value in names.items():
        name, expr = (key, value) if isinstance(key, str) else (value, key)
        name = str(name)
        expr = ImmutableMatrix(expr) if isinstance(expr, MatrixBase) else expr  # Matrix(...) is mutable
        expr = canonical(expr, memo) if isinstance(expr, Basic) else expr
        if not isinstance(expr, MatrixExpr) or isinstance(expr, LEAVES):
            raise InvalidParameter(f"names: {name!r} must name a computed matrix expression of the network, "
                                   f"not {expr!r}")
        if name in taken:
            raise InvalidParameter(f"names: {name!r} is already the name of a matrix of the network")
        foreign = sorted(m.name for m in expr.atoms(MatrixSymbol) - matrices)
        if foreign:
            # the generated code would compute it from a matrix it is never given
            raise InvalidParameter(f"names: {name!r} names {expr}, which uses {', '.join(foreign)}: not a matrix "
                                   "of the loss")
        if name in pairs.values():
            raise InvalidParameter(f"names: {name!r} names two different expressions")
        if expr in pairs:
            raise InvalidParameter(f"names: {expr} is named twice, {pairs[expr]!r} and {name!r}")
        pairs[expr] = name
    return pairs


class Derivation:
    """Everything derive knows about the gradients of one loss. Build it with :func:`gradients`."""

    def __init__(self, loss, params, graph: Graph, given_names: dict[Basic, str]):
        self.loss = loss        # as declared: the truth (elementwise, verify) expands this
        self.root = graph.root  # the same loss in derive's nodes (derive.canonical): what renderers read
        self.params = params
        self._by_name = {p.name: p for p in params}
        self.graph = graph
        names = choose_names(graph, given_names)
        self.names = names
        self._sweep = reverse_sweep(graph, names, list(params))
        self._aliases = self._display_aliases(given_names)
        self.steps: tuple[Step, ...] = tuple(self._named_step(s) for s in self._sweep.steps)
        self._closed: dict[Basic, Basic] | None = None
        self.forward: tuple[Forward, ...] = self._forward()
        self.numeric_check: NumericCheck | None = None

    # --- construction helpers -------------------------------------------------------------------

    def _display_aliases(self, given: dict[Basic, str]) -> dict[Basic, Intermediate]:
        """Names for expressions that are not nodes (``p`` for softmax(s)), in compact terms."""
        to_refs = {node: ref for node, ref in self._sweep.refs.items() if node in self.names}
        return {expr.xreplace(to_refs): Intermediate(name, *expr.shape)
                for expr, name in given.items() if expr not in self.graph.depends}

    def _named_step(self, step: Step) -> Step:
        if not self._aliases:
            return step
        rename = (lambda e: e.xreplace(self._aliases) if isinstance(e, Basic) else e)
        return Step(*(rename(getattr(step, f)) for f in Step.__dataclass_fields__))

    def _forward(self) -> tuple[Forward, ...]:
        out = []
        for node in self.graph.order:
            if node in self.names:
                symbol = self._sweep.refs[node]
                out.append(Forward(symbol, self._sweep.definitions[node], node, node.shape))
        for compact, symbol in self._aliases.items():
            out.append(Forward(symbol, compact, self._expand_names(compact), compact.shape))
        return tuple(out)

    def _expand_names(self, expr: Basic) -> Basic:
        return substitute(expr, self._closed_map())

    def _closed_map(self) -> dict[Basic, Basic]:
        """Every name (quantity or gradient) mapped to its expression in the network's symbols."""
        if self._closed is None:
            mapping: dict[Basic, Basic] = {self._sweep.refs[n]: n for n in self.names if n in self._sweep.refs}
            for compact, symbol in self._aliases.items():
                mapping[symbol] = substitute(compact, mapping)
            for node, ref in self._sweep.adjoint_refs.items():
                if isinstance(ref, Adjoint):
                    mapping[ref] = substitute(self._total(node), mapping)
            self._closed = mapping
        return self._closed

    def _total(self, node: Basic) -> Basic:
        from .algebra import mat_add
        return mat_add(*(step.result for step in self._sweep.contributions[node]))

    # --- the public contract --------------------------------------------------------------------

    def _param(self, param) -> MatrixSymbol:
        found = self._by_name.get(param.name if isinstance(param, MatrixSymbol) else param)
        if found is not None and (found == param or not isinstance(param, MatrixSymbol)):
            return found
        raise KeyError(f"{param} is not one of the parameters {', '.join(p.name for p in self.params)}")

    def __getitem__(self, param) -> Basic:
        """The closed-form gradient of the loss with respect to ``param``, in the network's symbols."""
        param = self._param(param)
        if param not in self.graph.depends:
            return ZeroMatrix(*param.shape)
        return substitute(self.compact(param, aliases=False), self._closed_map())

    def compact(self, param, aliases: bool = True) -> Basic:
        """The gradient written with names of intermediates and upstream gradients (``X^T dL/dZ``)."""
        param = self._param(param)
        if param not in self.graph.depends:
            return ZeroMatrix(*param.shape)
        total = self._total(param)
        return total.xreplace(self._aliases) if aliases and self._aliases else total

    def adjoint(self, param) -> Adjoint:
        """The symbol dL/dW used for ``param`` in steps and index forms."""
        param = self._param(param)
        return Adjoint(param.name, *param.shape)

    def gradient_of(self, symbol: Basic) -> Basic:
        """Compact total gradient of a named quantity or a parameter, or its name (sum over its paths)."""
        for node, ref in self._sweep.refs.items():
            if ref == symbol or node == symbol or (isinstance(symbol, str) and getattr(ref, "name", None) == symbol
                                                    and isinstance(ref, (Intermediate, MatrixSymbol))):
                if node not in self._sweep.contributions:
                    raise KeyError(f"{symbol} lies on no path from the loss to the parameters "
                                   f"{', '.join(p.name for p in self.params)}, so this derivation has no gradient for it")
                total = self._total(node)
                return total.xreplace(self._aliases) if self._aliases else total
        raise KeyError(f"{symbol} is neither a named quantity nor a parameter of this derivation")

    def paths(self, target: Basic) -> tuple[Step, ...]:
        """The steps that contribute to ``target``'s gradient (more than one: the paths add up)."""
        ref = self._sweep.refs.get(target, target)
        return tuple(step for step in self.steps if step.target == ref)

    def __iter__(self):
        return iter(self.params)

    def __len__(self):
        return len(self.params)

    def __repr__(self):
        lines = [f"Derivation of {self.loss}"]
        lines += [f"  dL/d{p.name} = {self.compact(p)}" for p in self.params]
        return "\n".join(lines)

    def _repr_latex_(self):
        from .render import sheet_summary_latex
        return sheet_summary_latex(self)

    def check_numerically(self, *, seed: int = 0) -> NumericCheck:
        """Compare every closed form with central differences of the loss along random directions.

        Both sides are evaluated by :mod:`derive.truth`: the loss as declared, the gradients from their
        compact forms with each named intermediate and upstream gradient evaluated once. A mismatch
        raises :class:`GradientMismatch` naming the parameter and both directional derivatives.
        """
        sweep = self._sweep
        forward = [(sweep.refs[node], definition) for node, definition in sweep.definitions.items()]
        upstream = [(ref, self._total(node)) for node, ref in sweep.adjoint_refs.items()
                    if isinstance(ref, Adjoint) and not isinstance(node, LEAVES)]
        closed = {p: self.compact(p, aliases=False) for p in self.params}
        self.numeric_check = check_gradients(self.loss, self.params, closed, forward + upstream, seed=seed)
        return self.numeric_check

    # --- index forms ----------------------------------------------------------------------------

    def index_form(self, what) -> Eq:
        """The entry-by-entry statement ``dL/dW_ij = sum_k ...`` of a gradient or of one Step."""
        if isinstance(what, Step):
            label = what.target if isinstance(what.target, MatrixSymbol) else Intermediate(str(what.target), *what.shape)
            lhs_matrix, rhs_matrix = Adjoint(str(label.name), *what.shape), what.result
        else:
            param = self._param(what) if not isinstance(what, Intermediate) else what
            lhs_matrix = Adjoint(param.name, *param.shape)
            rhs_matrix = self.compact(param) if param in self.params else self.gradient_of(param)
        return index_statement(lhs_matrix, rhs_matrix)

    # --- the independent truth ------------------------------------------------------------------

    def elementwise(self, param, dims: Mapping) -> ImmutableMatrix:
        """The explicit matrix of dL/d(param_ij), from the loss expanded into scalars at ``dims``."""
        param = self._param(param)
        dims = normalize_dims(dims, self.root)
        rows, cols = param.subs(dims).shape
        # counted from the shape: writing out a huge parameter would itself take the time refused here
        check_expansion_size(self.root, dims, int(rows * cols))
        entries = param.subs(dims).as_explicit()
        # xreplace, not subs: SymPy's subs leaves a dim unreplaced inside a nested index Sum
        scalar_loss = explicit(self.loss.xreplace({d: Integer(v) for d, v in dims.items()}))
        if isinstance(scalar_loss, MatrixBase):
            scalar_loss = scalar_loss[0, 0]  # a 1 x 1 loss
        return ImmutableMatrix(entries.shape[0], entries.shape[1],
                               lambda i, j: scalar_loss.diff(entries[i, j]))

    def explicit_gradient(self, param, dims: Mapping) -> ImmutableMatrix:
        """The closed form ``g[param]`` expanded into an explicit matrix at ``dims``."""
        dims = normalize_dims(dims, self.root)
        check_expansion_size(self.root, dims)
        return explicit(self[param].subs(dims))

    def verify(self, dims: Mapping, *, points: int = 3, seed: int = 0, symbolic: bool = True,
               tolerance: float = 1e-10) -> tuple[Verification, ...]:
        """Check every closed form against the elementwise truth at ``dims``.

        Exactly where SymPy simplifies the difference to 0 (``symbolic``), numerically always at
        ``points`` random float64 points (relative error under ``tolerance``). A mismatch raises
        :class:`GradientMismatch` naming the parameter, the entry and both values.
        """
        dims = normalize_dims(dims, self.root)
        constraints = self._target_constraints(dims)
        return tuple(self._verify_one(p, dims, constraints, points, seed, symbolic, tolerance) for p in self.params)

    def _target_constraints(self, dims) -> dict:
        subs = {}
        for node in self.graph.order:
            if isinstance(node, Loss):
                constraints = node.target_constraints(explicit(node.target.subs(dims)))
                # Only a target made of free entries (Y, Y^T) can be constrained by substitution.
                subs.update({k: v for k, v in constraints.items() if isinstance(k, MatrixElement)})
        return subs

    def _verify_one(self, param, dims, constraints, points, seed, symbolic, tolerance) -> Verification:
        closed = self.explicit_gradient(param, dims).xreplace(constraints)
        truth = self.elementwise(param, dims).xreplace(constraints)
        exact = symbolic and all(simplifies_to_zero(c - t) for c, t in zip(closed, truth))
        error = numeric_mismatch(param, closed, truth, points, seed, tolerance, self._square_symbols(dims))
        return Verification(param, exact, error, points)

    def _square_symbols(self, dims) -> set:
        return {s.subs(dims) for s in self.graph.order
                if isinstance(s, MatrixSymbol) and s.shape[0] == s.shape[1] and s.shape != (1, 1)}


# --- helpers shared with the renderers and the checker --------------------------------------------

# Closed forms are rebuilt with derive's constructors: they keep the result tidy (no identity
# factors, repeated terms collected, slices of blocks picked) and skip SymPy's argument validation,
# which asks each argument for its shape and so recurses down the whole adjoint chain: expanding
# the closed forms stays linear in depth.
_TIDY = {
    MatMul: mat_mul,
    MatAdd: mat_add,
    HadamardProduct: hadamard,
    HadamardPower: lambda base, power: Basic.__new__(HadamardPower, base, power),
    Transpose: lambda arg: transpose(arg, deep=False),
    MatrixElement: entry,
    MatrixSlice: lambda parent, rows, cols: (submatrix(parent, rows[:2], cols[:2]) if rows[2] == cols[2] == 1
                                             else MatrixSlice(parent, rows, cols)),
}


def substitute(expr: Basic, mapping: dict) -> Basic:
    """``expr.xreplace(mapping)``, rebuilt tidy, for expressions whose arguments are already valid."""
    memo: dict[Basic, Basic] = {}

    def walk(node: Basic) -> Basic:
        if node in mapping:
            return mapping[node]
        if node in memo:
            return memo[node]
        if isinstance(node, LEAVES) or not node.args:
            return node
        args = tuple(walk(a) for a in node.args)
        if all(new is old for new, old in zip(args, node.args)):
            rebuilt = node
        else:
            build = _TIDY.get(type(node))
            rebuilt = build(*args) if build is not None else node.func(*args)
        memo[node] = rebuilt
        return rebuilt

    return walk(expr)


def index_statement(lhs_matrix: MatrixExpr, rhs_matrix: Basic) -> Eq:
    """``lhs_ij = rhs_ij`` with SymPy's own entry expansion and readable summation indices."""
    i, j = Symbol("i", integer=True), Symbol("j", integer=True)
    rhs = rhs_matrix[i, j] if isinstance(rhs_matrix, MatrixExpr) else rhs_matrix
    dummies = sorted(rhs.atoms(Dummy), key=str)
    taken = {str(s) for s in rhs.free_symbols}
    letters = (c for c in "klmnpqrstuvabcdefgh" if c not in taken)
    rhs = rhs.xreplace({d: Symbol(next(letters), integer=True) for d in dummies})
    return Eq(lhs_matrix[i, j], rhs, evaluate=False)


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
    order: list[Basic] = []
    seen: set[Basic] = set()
    stack: list[tuple[Basic, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node in seen or node in done:
            continue
        seen.add(node)
        stack.append((node, True))
        if isinstance(node, BlockMatrix):
            children = list(node.blocks)
        elif isinstance(node, MatrixBase):
            children = list(node) if any(e.atoms(MatrixSymbol) for e in node) else []
        elif isinstance(node, (Sum, *LEAVES)):
            children = []
        else:
            children = node.args
        stack.extend((child, False) for child in reversed(children) if child not in seen)
    return order


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
        result = result * factor
    return ImmutableMatrix(result)


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
    """Cheap tests first: most differences vanish on expansion; costlier ones only for small terms."""
    if difference == 0:
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
    # lambdify takes plain symbols: stand-ins for the matrix entries X[0, 1] ...
    # (Symbols with plain names: lambdify re-substitutes Dummy arguments into the whole expression.)
    plain = {s: Symbol(f"_v{k}") for k, s in enumerate(symbols)}
    f_closed = lambdify(list(plain.values()), closed.xreplace(plain), "numpy")
    f_truth = lambdify(list(plain.values()), truth.xreplace(plain), "numpy")
    rng = np.random.default_rng(seed)
    worst, compared = 0.0, 0
    for _ in range(points):
        for positive in (False, True):
            point = _random_point(symbols, rng, square, positive)
            values = [point[s] for s in symbols]
            with np.errstate(all="ignore"):
                c = np.asarray(f_closed(*values), dtype=complex)
                t = np.asarray(f_truth(*values), dtype=complex)
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


def _real_and_finite(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all(np.abs(values.imag) <= 1e-12 * (1 + np.abs(values.real))))


def variables(expr: Basic) -> set:
    """The scalar unknowns of an explicit expression: matrix entries ``X[0, 1]`` and plain symbols."""
    return expr.atoms(MatrixElement) | {s for s in expr.free_symbols if not isinstance(s, MatrixExpr)}


def _describe(point: dict) -> str:
    items = list(point.items())
    shown = ", ".join(f"{k}={v:.4g}" for k, v in items[:6])
    return shown + (f" and {len(items) - 6} more" if len(items) > 6 else "")


