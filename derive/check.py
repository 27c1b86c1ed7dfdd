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
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
from sympy import (
    Basic,
    Dummy,
    Identity,
    ImmutableMatrix,
    Integer,
    MatrixExpr,
    MatrixSymbol,
    Mul,
    OneMatrix,
    Rational,
    Symbol,
    ZeroMatrix,
    count_ops,
    expand,
    lambdify,
    nsimplify,
    primerange,
)
from sympy import (
    exp as sp_exp,
)
from sympy import (
    log as sp_log,
)
from sympy.matrices import MatrixBase
from sympy.matrices.expressions.matexpr import MatrixElement

from .canonical import canonical
from .derivation import (
    dimension_symbols,
    expansion_cost,
    explicit,
    gradients,
    normalize_dims,
    simplifies_to_zero,
    variables,
)
from .errors import DeriveError, ParseError
from .functions import Elementwise, Loss, log_softmax, softmax
from .graph import Adjoint, Intermediate, topological_order
from .parse import (
    HandShapeError,
    Node,
    Scope,
    evaluate,
    from_sympy,
    leaf,
    node,
    parse,
    replace_at,
    to_sympy,
    to_text,
    walk,
)

__all__ = ["DIAGNOSES", "CheckResult", "Counterexample", "Diagnosis", "check", "choose_dims", "recording_failures", "run_check"]

TOLERANCE = 1e-9          # relative error under which two numeric gradients are equal
SCREEN_POINTS = 3         # points at which a proposed correction is tried before it is confirmed
SHOWN_CHARS = 400         # longer symbolic entries are cut in the report
SYMBOLIC_LIMIT = 1500     # operations in one explicit entry of a named quantity beyond which SymPy is not asked
SYMBOLIC_COST = 300       # scalar operations of the loss's expansion at the dims beyond which SymPy is not asked


# --- results ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Diagnosis:
    """A slip: its kind (a key of :data:`DIAGNOSES`), what it is, and the formula that is right."""

    kind: str
    message: str
    corrected: str


@dataclass(frozen=True)
class Counterexample:
    """The first differing entry at concrete dims: both entries and both values at one point."""

    entry: tuple[int, int]
    hand_entry: Basic           # in the network's own symbols
    derived_entry: Basic
    point: dict                 # the entries of the network's matrices used by the two entries
    hand_value: float
    derived_value: float
    named_hand_entry: Basic = None      # the same entries with named quantities kept (h[0, 1]): readable
    named_derived_entry: Basic = None
    named_point: dict = field(default_factory=dict)   # the values of what the named entries use


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check` found. Truthy exactly when the hand gradient equals the derived one."""

    ok: bool
    param: MatrixSymbol
    hand: str                          # the hand formula, in the grammar's notation
    derived: str                       # the derived gradient, compact (``X^T dL/dZ``)
    dims: dict
    method: str                        # "symbolic" or "numeric": how equality (or not) was decided
    points: int
    shape_problem: str | None = None
    counterexample: Counterexample | None = None
    diagnosis: Diagnosis | None = None
    definitions: tuple = field(default=())   # (name, formula) of the gradients the hand or derived use
    equal_only_at: dict | None = None        # the first dims, where a formula wrong at ``dims`` happened to agree
    notes: tuple = field(default=())         # how the grammar read a part the hand may have meant otherwise

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        verdict = "right" if self.ok else (f"wrong: {self.diagnosis.kind}" if self.diagnosis else "wrong")
        return f"<CheckResult dL/d{self.param.name} {verdict}>"

    def report(self) -> str:
        """The readable verdict (what an autograder shows a student)."""
        return _report(self)

    __str__ = report


# --- the network as the checker sees it ---------------------------------------------------------------

def choose_dims(loss: Basic, avoid: set = frozenset()) -> dict[Symbol, int]:
    """Distinct odd primes (3, 5, 7, 11 ...) for the dimensions, skipping the sizes fixed in the shapes.

    At sizes that are distinct odd primes no size is 1 or 2 or another's, and no product of powers of
    the sizes times a power of 2 equals another: a missing 1/N, 2/N or 1/(2 D), or N written for D,
    changes the value at these dims, as it does at every other. Sizes unlike the fixed ones and each
    other also make a missing transpose or a swapped product a shape error. ``avoid``: sizes not to
    use either (a second set of dims).
    """
    fixed = {int(d) for n in topological_order(loss) if isinstance(n, MatrixSymbol)
             for d in n.shape if getattr(d, "is_Integer", False)}
    sizes = (p for p in primerange(3, 10_000) if p not in fixed | set(avoid))
    return {s: next(sizes) for s in sorted(dimension_symbols(loss), key=str)}


def hiding_sizes(dims: Mapping) -> list[str]:
    """The sizes among ``dims`` that can hide a constant factor (1, 2, or a size given twice)."""
    values = list(dims.values())
    return [f"{k}={v}" for k, v in sorted(dims.items(), key=lambda kv: str(kv[0]))
            if v in (1, 2) or values.count(v) > 1]


class Network:
    """The derivation of one parameter, with everything a hand formula may name and their values.

    Values come from evaluating trees (:func:`derive.parse.evaluate`) bottom-up: a named quantity
    or gradient is its compact definition evaluated in turn, so no closed form is ever expanded
    through SymPy's summations. :class:`NumpyBackend` gives numbers at a point,
    :class:`ExplicitBackend` explicit SymPy matrices at the dims.
    """

    def __init__(self, loss: Basic, param: MatrixSymbol, names: Mapping | None, dims: Mapping | None):
        self.loss, self.param, self.names = loss, param, names
        self.g = gradients(loss, [param], names=names)
        root = self.g.root  # the loss in derive's nodes: blocks and explicit matrices show their symbols
        self.dims = choose_dims(root) if dims is None else normalize_dims(dims, root)
        self.leaves = sorted({n for n in topological_order(root) if type(n) is MatrixSymbol}, key=lambda s: s.name)
        self.expansion = self._expansion()
        self.scope = self._scope()
        self.constraints = self._constraints()
        # at larger dims the written-out entries take SymPy minutes: equality is left to the numbers
        self.symbolic = expansion_cost(root, self.dims) <= SYMBOLIC_COST
        self._trees: dict[Basic, Node] = {}
        self._backends: dict[int, tuple[dict, NumpyBackend]] = {}

    def _expansion(self) -> dict[Basic, Basic]:
        """Each name's compact definition: quantities, and the gradients of both derivations (the
        other one, of every other matrix, is what 'the gradient of another parameter' is read from)."""
        mapping: dict[Basic, Basic] = {}
        for derivation in (self.g, self.everything):
            if derivation is None:
                continue
            for f in derivation.forward:  # a name both use is one quantity (everything takes g's names)
                mapping.setdefault(f.symbol, f.definition)
            for f in derivation.forward:
                adjoint = Adjoint(f.symbol.name, *f.symbol.shape)
                if adjoint in mapping:
                    continue
                try:
                    total = derivation.gradient_of(f.symbol)
                except KeyError:
                    continue  # a display alias (p for softmax(s)) has no gradient of its own
                if not (total == 0 or isinstance(total, ZeroMatrix)):  # 0: this sweep did not reach it
                    mapping[adjoint] = total
            for param in derivation.params:
                mapping.setdefault(derivation.adjoint(param), derivation.compact(param))
        return mapping

    def _scope(self) -> Scope:
        symbols: dict[str, Basic] = {str(s): s for s in dimension_symbols(self.g.root)}
        symbols.update({s.name: s for s in self.leaves})
        symbols.update({f.symbol.name: f.symbol for f in self.g.forward})
        # dL/dW itself is not a hand answer for W: a formula may name every other gradient
        own = self.g.adjoint(self.param)
        gradients_ = {str(a.name): a for a in self.expansion if isinstance(a, Adjoint) and a != own}
        axis = next((n.axis for n in topological_order(self.g.root) if isinstance(n, (softmax, log_softmax))), None)
        if axis is None:
            axis = next((int(n.args[3]) for n in topological_order(self.g.root)
                         if isinstance(n, Loss) and len(n.args) > 3), 1)
        return Scope(symbols, gradients_, axis)

    def _constraints(self) -> dict:
        subs = {}
        for n in topological_order(self.g.root):
            if isinstance(n, Loss) and isinstance(n.target, MatrixSymbol):
                subs.update(n.target_constraints(n.target.subs(self.dims).as_explicit()))
        return subs

    def expand_closed(self, expr: Basic) -> Basic:
        """``expr`` with every named quantity and gradient written in the network's own symbols."""
        for _ in range(100):
            if not any(isinstance(a, (Intermediate, Adjoint)) for a in expr.atoms(MatrixSymbol)):
                return expr
            expr = expr.xreplace(self.expansion)
        raise DeriveError(f"could not expand the names in {expr}")  # pragma: no cover - names are acyclic

    def tree(self, expr: Basic) -> Node:
        """The tree of a SymPy expression of the derivation (cached)."""
        if expr not in self._trees:
            self._trees[expr] = from_sympy(expr, self.scope)
        return self._trees[expr]

    def explicit(self, what, opaque: tuple = (), backend: ExplicitBackend | None = None) -> ImmutableMatrix:
        """The explicit matrix of a tree or SymPy expression at the dims, target constraints applied.
        ``opaque``: the kinds of names (Intermediate, Adjoint) kept as their entries (``h[0, 1]``)
        instead of expanded; ``backend.opened`` then maps each one's entries back to it."""
        tree = what if isinstance(what, Node) else self.tree(what)
        value = evaluate(tree, backend or ExplicitBackend(self, opaque))
        if not isinstance(value, MatrixBase):
            value = ImmutableMatrix([[value]])
        return ImmutableMatrix(value.xreplace(self.constraints)) if self.constraints else ImmutableMatrix(value)

    def numeric(self, what, point: dict) -> np.ndarray:
        tree = what if isinstance(what, Node) else self.tree(what)
        # one backend per point: the named quantities' values are computed once for every proposal
        cached = self._backends.get(id(point))
        if cached is None or cached[0] is not point:
            cached = self._backends[id(point)] = (point, NumpyBackend(self, point))
        with np.errstate(all="ignore"):   # an inf or nan (a division by 0) is a wrong value, not a warning
            value = evaluate(tree, cached[1])
        return value if isinstance(value, np.ndarray) else np.full((1, 1), float(value))

    @cached_property
    def truth_tree(self) -> Node:
        return self.tree(self.g.compact(self.param))

    @cached_property
    def elements(self) -> list[tuple]:
        """(name, i, j, the entry X[i, j]) of every matrix of the loss at the dims (SymPy is slow to index)."""
        out = []
        for s in self.leaves:
            concrete = s.subs(self.dims)
            rows, cols = (int(d) for d in concrete.shape)
            out += [(s.name, i, j, MatrixElement(concrete, Integer(i), Integer(j))) for i in range(rows) for j in range(cols)]
        return out

    @cached_property
    def sibling(self) -> Network | None:
        """The same derivation at a second set of dims (other odd primes), None without dims."""
        if not self.dims:
            return None
        return Network(self.loss, self.param, self.names, choose_dims(self.g.root, avoid=set(self.dims.values())))

    @cached_property
    def everything(self):
        """Gradients of every other matrix of the loss (for 'this is another parameter's gradient').

        It is given every name the first derivation chose: left to itself it would number its own
        quantities (U_1 for another quantity used twice) and one name would mean two things."""
        others = [s for s in self.leaves if s != self.param]
        if not others:
            return None
        names = {str(k) if isinstance(k, str) else str(v): v if isinstance(k, str) else k
                 for k, v in (self.names or {}).items()}
        names.update({name: quantity for quantity, name in self.g.names.items()})
        return gradients(self.loss, others, names=names, allow_unused=True)

    def points(self, count: int, seed: int) -> list[dict]:
        """Random points: every matrix of the loss filled, targets meeting their constraints."""
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(count):
            for positive in (False, True):
                point = self._random_point(rng, positive)
                with np.errstate(all="ignore"):
                    if np.all(np.isfinite(self.numeric(self.truth_tree, point))):
                        break
            out.append(point)
        return out

    def _random_point(self, rng, positive: bool) -> dict:
        point = {name: rng.uniform(0.1 if positive else -1.0, 1.0, size=shape) for name, shape in self.shapes}
        for (name, i, j), used, value in self._constraint_functions:
            point[name][i, j] = value(*(point[n][a, b] for n, a, b in used))
        return point

    @cached_property
    def shapes(self) -> list[tuple[str, tuple[int, int]]]:
        return [(s.name, tuple(int(d.subs(self.dims)) for d in s.shape)) for s in self.leaves]

    @cached_property
    def _constraint_functions(self) -> list[tuple]:
        """Each target constraint as (the entry it sets, the entries it reads, a float function)."""
        def where(element):
            return element.args[0].name, int(element.args[1]), int(element.args[2])
        out = []
        for element, value in self.constraints.items():
            used = sorted(value.atoms(MatrixElement), key=str)
            plain = [Dummy() for _ in used]
            out.append((where(element), [where(e) for e in used], lambdify(plain, value.xreplace(dict(zip(used, plain))))))
        return out


def entries_of(point: dict, net: Network) -> dict:
    """The point as ``{X[0, 1]: value}`` for every entry (what a report shows)."""
    return {element: float(point[name][i, j]) for name, i, j, element in net.elements}


# --- backends that give a tree its value --------------------------------------------------------------

class _Values:
    """What the NumPy and the explicit backend share: how names of the network get their values."""

    def __init__(self, net: Network):
        self.net = net
        self.memo: dict[Basic, Any] = {}

    def leaf(self, value: Basic):
        if value in self.memo:
            return self.memo[value]
        if isinstance(value, (Intermediate, Adjoint)) and value in self.net.expansion:
            result = evaluate(self.net.tree(self.net.expansion[value]), self)
        elif type(value) is MatrixSymbol:
            result = self.symbol(value)
        elif isinstance(value, (OneMatrix, Identity, ZeroMatrix)):
            result = self.constant(value.subs(self.net.dims).as_explicit())
        elif not isinstance(value, MatrixExpr) and not value.atoms(MatrixSymbol):
            result = self.scalar(value.subs(self.net.dims))
        else:  # a matrix expression or a scalar of matrices (det(X) in det(X) X^-T): written out
            result = self.other(value)
        self.memo[value] = result
        return result

    def number(self, value):
        return value

    def same(self, a, b) -> bool:
        return a == b


class NumpyBackend(_Values):
    """A tree's value at one point, in floats (fast: proposals are screened with it)."""

    def __init__(self, net: Network, point: dict):
        super().__init__(net)
        self.point = point

    def symbol(self, value):
        return self.point[value.name]

    def constant(self, matrix):
        return np.array(matrix.tolist(), dtype=float)

    def scalar(self, value):
        return float(value)

    def other(self, value):
        # the network's matrices as numbers before writing out: an inverse or determinant of numbers is
        # quick where the same of symbolic entries is not
        numbers = {s.subs(self.net.dims): ImmutableMatrix(self.point[s.name]) for s in self.net.leaves}
        written = explicit(self.net.expand_closed(value).subs(self.net.dims).xreplace(numbers))
        if not isinstance(written, MatrixBase):
            return float(written)
        return np.array(ImmutableMatrix(written).tolist(), dtype=float)

    def number(self, value):
        return float(value)

    def is_matrix(self, value) -> bool:
        return isinstance(value, np.ndarray)

    def shape(self, value):
        return value.shape if isinstance(value, np.ndarray) else None

    def ones(self, rows, cols):
        return np.ones((int(rows), int(cols)))

    def matmul(self, a, b):
        return a @ b

    def hadamard(self, a, b):
        return a * b

    def add(self, a, b):
        return a + b

    def scale(self, c, a):
        return float(c) * a

    def divide(self, a, b):
        with np.errstate(all="ignore"):
            return a / b

    def transpose(self, a):
        return a.T

    def power(self, a, k):
        with np.errstate(all="ignore"):
            return np.power(a, float(k))

    def apply(self, cls, prime: bool, args):
        axis = self.net.scope.softmax_axis
        if cls in (softmax, log_softmax):
            z = args[0] - args[0].max(axis=axis, keepdims=True)
            log_p = z - np.log(np.exp(z).sum(axis=axis, keepdims=True))
            return np.exp(log_p) if cls is softmax else log_p
        params = tuple(_exact(p) for p in args[1:])
        with np.errstate(all="ignore"):
            return np.asarray(_scalar_function(cls, prime, params)(args[0]), dtype=float) * np.ones_like(args[0])


class SymbolicTooLarge(Exception):
    """The explicit entries grow past :data:`SYMBOLIC_LIMIT`: equality is left to the numbers."""


class ExplicitBackend(_Values):
    """A tree's value as an explicit SymPy matrix at the dims (for the symbolic comparison)."""

    def __init__(self, net: Network, opaque: tuple = ()):
        super().__init__(net)
        self.opaque = opaque
        self.opened: dict[Basic, Basic] = {}     # a kept name at the dims -> the name

    def leaf(self, value: Basic):
        if isinstance(value, self.opaque) and value in self.net.expansion:
            concrete = value.subs(self.net.dims)
            self.opened[concrete] = value
            return concrete.as_explicit()
        result = super().leaf(value)
        named = isinstance(value, (Intermediate, Adjoint)) and isinstance(result, MatrixBase)
        if named and max((count_ops(e) for e in result), default=0) > SYMBOLIC_LIMIT:
            raise SymbolicTooLarge(value)
        return result

    def symbol(self, value):
        return value.subs(self.net.dims).as_explicit()

    def constant(self, matrix):
        return ImmutableMatrix(matrix)

    def scalar(self, value):
        return value

    def other(self, value):
        written = explicit(self.net.expand_closed(value).subs(self.net.dims))
        return ImmutableMatrix(written) if isinstance(written, MatrixBase) else written

    def is_matrix(self, value) -> bool:
        return isinstance(value, MatrixBase)

    def shape(self, value):
        return value.shape if isinstance(value, MatrixBase) else None

    def ones(self, rows, cols):
        return ImmutableMatrix.ones(int(rows), int(cols))

    def matmul(self, a, b):
        return ImmutableMatrix(a * b)

    def hadamard(self, a, b):
        if not (self.is_matrix(a) and self.is_matrix(b)):
            return a * b
        return ImmutableMatrix(a.multiply_elementwise(b))

    def add(self, a, b):
        if self.is_matrix(a) != self.is_matrix(b):
            scalar, matrix = (a, b) if self.is_matrix(b) else (b, a)
            return ImmutableMatrix(matrix.applyfunc(lambda e: e + scalar))
        return a + b

    def scale(self, c, a):
        return c * a

    def divide(self, a, b):
        if not self.is_matrix(b):
            return a / b
        inverse = b.applyfunc(lambda e: 1 / e)
        return self.hadamard(a, inverse) if self.is_matrix(a) else a * inverse

    def transpose(self, a):
        return a.T

    def power(self, a, k):
        return a.applyfunc(lambda e: e ** k) if self.is_matrix(a) else a ** k

    def apply(self, cls, prime: bool, args):
        if cls in (softmax, log_softmax):
            return _explicit_softmax(args[0], self.net.scope.softmax_axis, log=cls is log_softmax)
        value = cls(*args)
        if prime:
            value = value.prime()(value.arg, *value.params)
        return ImmutableMatrix(value.as_explicit())


def _explicit_softmax(z: ImmutableMatrix, axis: int, log: bool) -> ImmutableMatrix:
    """Softmax over ``axis`` entry by entry (SymPy's summation is far slower for a handful of terms)."""
    rows, cols = z.shape

    def normalizer(i, j):
        terms = [z[i, k] for k in range(cols)] if axis == 1 else [z[k, j] for k in range(rows)]
        return sp_log(sum(sp_exp(t) for t in terms))
    if log:
        return ImmutableMatrix(rows, cols, lambda i, j: z[i, j] - normalizer(i, j))
    return ImmutableMatrix(rows, cols, lambda i, j: sp_exp(z[i, j] - normalizer(i, j)))


_SCALAR_FUNCTIONS: dict = {}


@lru_cache(maxsize=256)
def _exact(value: float) -> Basic:
    """An activation's parameter (leaky_relu's 0.1) back as the exact number it was written as."""
    return nsimplify(value)


def _scalar_function(cls, prime: bool, params: tuple) -> Callable:
    key = (cls, prime, params)
    if key not in _SCALAR_FUNCTIONS:
        cell = MatrixSymbol("_a", 1, 1)
        value = cls(cell, *params)
        if prime:
            value = value.prime()(value.arg, *value.params)
        x = Dummy("x")
        _SCALAR_FUNCTIONS[key] = lambdify(x, value._entry(0, 0).xreplace({cell[0, 0]: x}), "numpy")
    return _SCALAR_FUNCTIONS[key]


# --- comparing two explicit matrices ----------------------------------------------------------------

@dataclass
class Comparison:
    equal: bool
    method: str
    counterexample: Counterexample | None = None


def _close(value: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Entry by entry: equal up to TOLERANCE of the larger entries; inf or nan (a division by 0) equals nothing."""
    finite = np.isfinite(value) & np.isfinite(target)
    scale = max(float(np.max(np.abs(np.where(finite, target, 0.0)))),
                float(np.max(np.abs(np.where(finite, value, 0.0)))), 1e-30)
    with np.errstate(invalid="ignore"):
        return finite & (np.abs(value - target) <= TOLERANCE * scale)


def compare(net: Network, hand: Node, against: Node, points: list[dict], symbolic: bool = True) -> Comparison:
    """Numerically at every point (always); symbolically too when the numbers agree."""
    for point in points:
        h, d = net.numeric(hand, point), net.numeric(against, point)
        if h.shape != d.shape:
            return Comparison(False, "numeric")
        wrong = ~_close(h, d)
        if wrong.any():
            i, j = (int(k) for k in np.argwhere(wrong)[0])
            return Comparison(False, "numeric", _counterexample(net, hand, against, point, (i, j), h, d))
    if not symbolic or not net.symbolic:
        return Comparison(True, "numeric")
    try:
        exact = all(simplifies_to_zero(a - b) for a, b in zip(net.explicit(hand), net.explicit(against)))
    except SymbolicTooLarge:
        return Comparison(True, "numeric")
    return Comparison(True, "symbolic" if exact else "numeric")


def _counterexample(net, hand, against, point, entry, h, d) -> Counterexample:
    i, j = entry
    too_large = Symbol(f"(too large to show: the loss written out at these dims takes over {SYMBOLIC_COST} "
                       "operations)")
    try:
        hand_entry, derived_entry = ((net.explicit(hand)[i, j], net.explicit(against)[i, j]) if net.symbolic
                                     else (too_large, too_large))
    except SymbolicTooLarge as error:
        hand_entry = derived_entry = Symbol(f"(too large to show: {error.args[0]} alone has entries of over "
                                            f"{SYMBOLIC_LIMIT} operations at these dims)")
    # the readable entries keep named quantities, and on a large network named gradients too
    opened = ExplicitBackend(net, (Intermediate,) if net.symbolic else (Intermediate, Adjoint))
    named_hand, named_derived = (_entry(t, i, j, opened).xreplace(net.constraints) for t in (hand, against))
    entries = entries_of(point, net)
    used = variables(hand_entry) | variables(derived_entry)
    shown = {k: v for k, v in entries.items() if k in used} or entries
    values = NumpyBackend(net, point)
    named_used = sorted(variables(named_hand) | variables(named_derived), key=str)
    named_point = {e: float(values.leaf(opened.opened[e.args[0]])[int(e.args[1]), int(e.args[2])])
                   if e.args[0] in opened.opened else entries.get(e, float("nan")) for e in named_used}
    return Counterexample(entry, hand_entry, derived_entry, shown, float(h[i, j]), float(d[i, j]),
                          named_hand, named_derived, named_point)


def _entry(tree: Node, i: int, j: int, backend: ExplicitBackend) -> Basic:
    """Entry (i, j) of a tree's explicit value (a report shows one entry)."""
    value = _part(tree, [i], [j], backend)
    return value[0, 0] if isinstance(value, MatrixBase) else value


def _part(tree: Node, rows: list | None, cols: list | None, backend: ExplicitBackend):
    """The rows and columns (None: all) of a tree's explicit value. Through transposes, sums,
    Hadamard products, products, divisions by a scalar, powers and activations only the entries
    asked for are written out: SymPy spends its time multiplying whole matrices of long entries."""
    kind = tree.kind
    if _scalar(tree):
        return evaluate(tree, backend)
    if kind == "T":
        return _part(tree.args[0], cols, rows, backend).T
    if kind == "neg":
        return -_part(tree.args[0], rows, cols, backend)
    if kind == "pow":
        return backend.power(_part(tree.args[0], rows, cols, backend), tree.value)
    if kind == "div" and _scalar(tree.args[1]):
        return backend.divide(_part(tree.args[0], rows, cols, backend), evaluate(tree.args[1], backend))
    if kind in ("sum", "had"):
        combine = backend.add if kind == "sum" else backend.hadamard
        signs = tree.value if kind == "sum" else [1] * len(tree.args)
        total = None
        for term, sign in zip(tree.args, signs):
            value = backend.scale(Integer(sign), _part(term, rows, cols, backend))
            total = value if total is None else combine(total, value)
        return total
    if kind == "call" and tree.value[0].cls is not None and tree.value[0].cls not in (softmax, log_softmax):
        function, prime = tree.value
        params = [evaluate(a, backend) for a in tree.args[1:]]
        return backend.apply(function.cls, prime, [_part(tree.args[0], rows, cols, backend), *params])
    ones = any(a.kind == "ones" or a.kind == "T" and a.args[0].kind == "ones" or a.kind == "num" and a.value == 1
               for a in tree.args)   # a ones vector takes its length from its neighbour: written out whole
    if kind == "prod" and not ones:
        scalar = Mul(*(evaluate(a, backend) for a in tree.args if _scalar(a)))
        matrices = [a for a in tree.args if not _scalar(a)]
        if len(matrices) == 1:
            return backend.scale(scalar, _part(matrices[0], rows, cols, backend))
        product = _part(matrices[0], rows, None, backend)
        for middle in matrices[1:-1]:
            product = backend.matmul(product, evaluate(middle, backend))
        return backend.scale(scalar, backend.matmul(product, _part(matrices[-1], None, cols, backend)))
    value = evaluate(tree, backend)
    if not isinstance(value, MatrixBase):
        return value
    return value.extract(list(range(value.rows)) if rows is None else rows,
                         list(range(value.cols)) if cols is None else cols)


# --- the diagnoses: proposals of corrected formulas -----------------------------------------------------

@dataclass(frozen=True)
class Proposal:
    """A corrected formula; right if it equals ``against`` (the derived gradient when None)."""

    tree: Node
    message: str
    against: Basic | None = None


def _matrix_nodes(tree: Node) -> Iterator[tuple[tuple, Node]]:
    """The parts of ``tree`` that are matrices: a slip is made on them, not on a factor such as 1/N."""
    for path, n in walk(tree):
        if not _scalar(n):
            yield path, n


def _scalar(n: Node) -> bool:
    if n.kind == "num":
        return True
    if n.kind == "leaf":
        return not isinstance(n.value, MatrixExpr)
    if n.kind == "call":  # an activation of a scalar, exp(0), is a scalar; a reduction or softmax of one is refused
        function = n.value[0]
        return not function.reduce and function.cls not in (softmax, log_softmax) and _scalar(n.args[0])
    return n.kind != "ones" and all(_scalar(a) for a in n.args)


def propose_factor(tree: Node, net: Network, screen) -> Iterator[Proposal]:
    """The hand result times a constant (2, 1/2, -1, 1/N, D/N ...) is right."""
    ratio = screen.ratio(tree)
    if ratio is None:
        return
    factor = _name_factor(ratio, tree, net)
    if factor is None or factor == 1:
        return
    scaled = node("prod", _factor_node(factor), tree) if factor != -1 else node("neg", tree)
    yield Proposal(scaled, f"off by a constant factor: {factor} times the hand result is right")


def _name_factor(ratio: float, tree: Node, net: Network):
    """The factor, in the dims, that the ratio is. One ratio at one set of dims can be several
    (4/5 at N=5 is 4/N or 4/5), so the ratio is read again at a second set of dims: a correction
    right at the checker's dims only is never offered."""
    candidates = [f for f in _factors(net) if _is(f, net.dims, ratio)]
    if net.sibling is not None and candidates:
        second = Screen(net.sibling, net.sibling.points(SCREEN_POINTS, seed=1)).ratio(tree)
        candidates = [f for f in candidates if second is not None and _is(f, net.sibling.dims, second)]
    if candidates:
        sign, constant, powers = candidates[0]
        return sign * constant * Mul(*(d ** e for d, e in powers))
    simple = nsimplify(ratio, rational=True, tolerance=1e-10)
    if simple.q > 12 or abs(simple.p) > 24:
        return None
    if net.sibling is not None:   # a plain number only when it is the ratio at both dims
        second = Screen(net.sibling, net.sibling.points(SCREEN_POINTS, seed=1)).ratio(tree)
        if second is None or not _is(simple, {}, second):
            return None
    return simple


def _is(factor, dims: dict, ratio: float) -> bool:
    """Whether a factor (a number, or (sign, constant, ((dim, power), ...))) is ``ratio`` at ``dims``."""
    if isinstance(factor, tuple):
        sign, constant, powers = factor
        value = sign * float(constant) * float(np.prod([float(dims[d]) ** e for d, e in powers]))
    else:
        value = float(factor.subs(dims))
    return abs(value - ratio) <= 1e-9 * max(1.0, abs(ratio))


def _factors(net: Network) -> list[tuple]:
    """Constant factors a slip leaves out, simplest first: a small power of 2 times a product of at
    most two dims to the power -2 to 2 (1/N, 2/N, 1/(2N), N/D ...), each with either sign."""
    dims = sorted(net.dims, key=str)
    monomials = [(0, ())]
    for k, d in enumerate(dims):
        for e in (-1, 1, -2, 2):
            monomials.append((abs(e), ((d, e),)))
            for other in dims[k + 1:]:
                monomials += [(abs(e) + abs(f) + 1, ((d, e), (other, f))) for f in (-1, 1, -2, 2)]
    constants = [Integer(1), Integer(2), Rational(1, 2), Integer(4), Rational(1, 4)]
    ordered = sorted(((size, c, m) for size, m in monomials for c in range(len(constants))), key=lambda t: t[:2])
    return [(sign, constants[c], m) for _, c, m in ordered for sign in (1, -1)]


def _factor_node(factor: Basic) -> Node:
    from sympy.core.numbers import Number
    return node("num", value=factor, text=str(factor)) if isinstance(factor, Number) else leaf(factor, str(factor))


def propose_other_gradient(tree: Node, net: Network, screen) -> Iterator[Proposal]:
    """The hand formula is the gradient of another parameter or of a named quantity."""
    others = []
    if net.everything is not None:
        others += [(s.name, net.everything.compact(s)) for s in net.everything.params]
    others += [(str(a.name), a) for a in net.expansion if isinstance(a, Adjoint) and a != net.g.adjoint(net.param)]
    for name, gradient in others:
        yield Proposal(tree, f"this is the gradient of {name} (dL/d{name}), not of {net.param.name}", gradient)


def propose_transpose(tree: Node, net: Network, screen) -> Iterator[Proposal]:
    """A transpose missing or extra: on the whole formula or on one operand."""
    for path, n in _matrix_nodes(tree):
        if n.kind == "T":
            changed, what = n.args[0], f"{to_text(n)} should be {to_text(n.args[0])} (no transpose)"
        else:
            changed, what = node("T", n), f"{to_text(n)} should be transposed"
        if not path:
            what = "the whole formula should be transposed" if n.kind != "T" else what
        yield Proposal(replace_at(tree, path, changed), what)


def propose_product_order(tree: Node, net: Network, screen) -> Iterator[Proposal]:
    """Two factors of a matrix product in the wrong order (or the whole product reversed)."""
    for path, n in walk(tree):
        if n.kind != "prod":
            continue
        factors = list(n.args)
        for k in range(len(factors) - 1):
            swapped = factors[:k] + [factors[k + 1], factors[k]] + factors[k + 2:]
            yield Proposal(replace_at(tree, path, node("prod", *swapped)),
                           f"the factors {to_text(factors[k])} and {to_text(factors[k + 1])} are in the wrong order")
        if len(factors) > 2:
            yield Proposal(replace_at(tree, path, node("prod", *reversed(factors))),
                           f"the product {to_text(n)} is written in reverse order")


def propose_hadamard_order(tree: Node, net: Network, screen) -> Iterator[Proposal]:
    """A Hadamard product applied after a matrix product that it belongs inside (or the reverse)."""
    for path, n in walk(tree):
        if n.kind == "had":
            for k, factor in enumerate(n.args):
                if factor.kind != "prod":
                    continue
                rest = n.args[:k] + n.args[k + 1:]
                factors = list(factor.args)
                for split in range(1, len(factors)):
                    head, tail = factors[:split], factors[split:]
                    inside_right = node("prod", *head, node("had", _chain(tail), *rest))
                    inside_left = node("prod", node("had", _chain(head), *rest), *tail)
                    outside = " ⊙ ".join(to_text(r) for r in rest)
                    yield Proposal(replace_at(tree, path, inside_right),
                                   f"⊙ {outside} is applied after the matrix product by {_text_of(head)} "
                                   "instead of before it")
                    yield Proposal(replace_at(tree, path, inside_left),
                                   f"⊙ {outside} is applied after the matrix product by {_text_of(tail)} "
                                   "instead of before it")
        if n.kind == "prod":
            for k, factor in enumerate(n.args):
                if factor.kind != "had":
                    continue
                for m, inner in enumerate(factor.args):
                    rest = factor.args[:m] + factor.args[m + 1:]
                    product = node("prod", *n.args[:k], inner, *n.args[k + 1:])
                    yield Proposal(replace_at(tree, path, node("had", product, *rest)),
                                   f"⊙ {' ⊙ '.join(to_text(r) for r in rest)} is applied before the matrix "
                                   "product instead of after it")


def _chain(factors: list[Node]) -> Node:
    return factors[0] if len(factors) == 1 else node("prod", *factors)


def _text_of(factors: list[Node]) -> str:
    return to_text(_chain(factors))


def _spots(tree: Node) -> Iterator[tuple[Node, Callable[[Node], Node]]]:
    """Every matrix part of ``tree`` with a function putting something in its place: each node, and
    each run of neighbouring factors of a product (``dL/dz w2^T`` inside ``X^T dL/dz w2^T``)."""
    for path, n in _matrix_nodes(tree):
        yield n, (lambda new, path=path: replace_at(tree, path, new))
        if n.kind != "prod":
            continue
        factors = list(n.args)
        for start in range(len(factors)):
            for stop in range(start + 2, len(factors) + 1):
                if stop - start == len(factors):
                    continue
                run = node("prod", *factors[start:stop])

                def rebuild(new, path=path, start=start, stop=stop, factors=factors):
                    return replace_at(tree, path, node("prod", *factors[:start], new, *factors[stop:]))
                yield run, rebuild


def propose_missing_derivative(tree: Node, net: Network, screen) -> Iterator[Proposal]:
    """An activation's derivative f'(A) left out of the chain."""
    from .parse import FUNCTIONS
    for forward in net.g.forward:
        definition = forward.definition
        if not isinstance(definition, Elementwise):
            continue
        cls = type(definition)
        function = next(f for f in FUNCTIONS.values() if f.cls is cls)
        argument = from_sympy(definition.arg, net.scope)
        derivative = node("call", argument, *(_factor_node(p) for p in definition.params), value=(function, True))
        for part, rebuild in _spots(tree):
            yield Proposal(rebuild(node("had", part, derivative)),
                           f"the derivative {to_text(derivative)} of {forward.symbol.name} = "
                           f"{to_text(net.tree(definition))} is missing: multiply {_operand(part)} by it (⊙)")


def _operand(part: Node) -> str:
    text = to_text(part)
    return f"({text})" if part.kind in ("sum", "neg", "had") else text


def propose_repeated_factor(tree: Node, net: Network, screen) -> Iterator[Proposal]:
    """A factor of a Hadamard product written twice (an activation's derivative applied twice)."""
    for path, n in walk(tree):
        if n.kind != "had":
            continue
        for k, factor in enumerate(n.args):
            rest = n.args[:k] + n.args[k + 1:]
            shorter = rest[0] if len(rest) == 1 else node("had", *rest)
            derivative = any(a.kind == "call" and a.value[1] for a in n.args)
            what = ("the activation's derivative is applied twice" if derivative else "a factor is written twice")
            yield Proposal(replace_at(tree, path, shorter), f"{what}: drop ⊙ {_operand(factor)}")


def propose_wrong_symbol(tree: Node, net: Network, screen) -> Iterator[Proposal]:
    """A symbol where another of the network belongs (W1 written for W2)."""
    candidates = [s for s in net.scope.symbols.values() if isinstance(s, MatrixExpr)]
    for path, n in walk(tree):
        if n.kind != "leaf" or not isinstance(n.value, MatrixSymbol):
            continue
        for other in candidates:
            if other != n.value:
                yield Proposal(replace_at(tree, path, leaf(other)),
                               f"{to_text(n)} is written where {other.name} belongs (a label on the wrong parameter)")


# The diagnoses, tried in this order; the first confirmed proposal names the slip.
DIAGNOSES: dict[str, Callable] = {
    "factor": propose_factor,
    "other-parameter": propose_other_gradient,
    "transpose": propose_transpose,
    "product-order": propose_product_order,
    "hadamard-order": propose_hadamard_order,
    "missing-derivative": propose_missing_derivative,
    "derivative-twice": propose_repeated_factor,
    "wrong-symbol": propose_wrong_symbol,
}


class Screen:
    """Fast numeric trial of proposals at a few points."""

    def __init__(self, net: Network, points: list[dict]):
        self.net, self.points = net, points
        self.truth = [net.numeric(net.truth_tree, p) for p in points]

    def values(self, tree: Node) -> list[np.ndarray] | None:
        try:
            return [self.net.numeric(tree, p) for p in self.points]
        except (HandShapeError, ZeroDivisionError):  # a proposal that does not fit together; others are bugs
            return None

    def against(self, gradient: Basic | None) -> list[np.ndarray]:
        if gradient is None:
            return self.truth
        return [self.net.numeric(gradient, p) for p in self.points]

    def matches(self, proposal: Proposal) -> bool:
        values = self.values(proposal.tree)
        if values is None:
            return False
        for v, t in zip(values, self.against(proposal.against)):
            if v.shape != t.shape or not np.all(np.isfinite(v)) or not _close(v, t).all():
                return False
        return True

    def ratio(self, tree: Node) -> float | None:
        values = self.values(tree)
        if values is None:
            return None
        ratios = []
        for v, t in zip(values, self.truth):
            if v.shape != t.shape:
                return None
            big = np.abs(v) > 1e-12
            if np.any(np.abs(t[~big]) > 1e-12):
                return None
            ratios.extend((t[big] / v[big]).ravel())
        if not ratios:   # zero everywhere (every ReLU off): no ratio to read
            return None
        ratios = np.array(ratios)
        if np.max(np.abs(ratios - ratios[0])) > 1e-8 * max(1.0, abs(ratios[0])):
            return None
        return float(ratios[0])


def diagnose(net: Network, tree: Node, points: list[dict]) -> Diagnosis | None:
    screen = Screen(net, points[:SCREEN_POINTS])
    for kind, propose in DIAGNOSES.items():
        for proposal in propose(tree, net, screen):
            if screen.matches(proposal) and _confirmed(net, proposal, points):
                corrected = to_text(proposal.tree) if proposal.against is None else to_text(tree)
                return Diagnosis(kind, proposal.message, corrected)
    return None


def _confirmed(net: Network, proposal: Proposal, points: list[dict]) -> bool:
    """The proposal fits together symbolically and equals its target at every point."""
    try:
        to_sympy(proposal.tree, net.scope.softmax_axis)
    except (HandShapeError, DeriveError):
        return False
    against = net.truth_tree if proposal.against is None else net.tree(proposal.against)
    return compare(net, proposal.tree, against, points, symbolic=False).equal


# --- check --------------------------------------------------------------------------------------------

def _param(loss: Basic, wrt) -> MatrixSymbol:
    if isinstance(wrt, MatrixSymbol):
        return wrt
    matrices = {s.name: s for s in topological_order(canonical(loss)) if type(s) is MatrixSymbol}
    if isinstance(wrt, str) and wrt in matrices:
        return matrices[wrt]
    raise DeriveError(f"wrt must be one of the loss's matrices ({', '.join(sorted(matrices))}), got {wrt!r}")


def _hand_tree(hand, net: Network) -> Node:
    if isinstance(hand, str):
        return parse(hand, net.scope)
    if isinstance(hand, Basic):
        return from_sympy(_in_network_symbols(hand, net), net.scope)
    raise ParseError(f"a hand formula is text or a SymPy matrix expression, not a {type(hand).__name__}")


def _in_network_symbols(hand: Basic, net: Network) -> Basic:
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
          points: int = 5, seed: int = 0) -> CheckResult:
    """Compare a hand gradient of ``loss`` with respect to ``wrt`` with the derived one.

    ``hand`` is text in the grammar of :mod:`derive.parse` (plain or LaTeX) or a SymPy matrix
    expression; it may use the network's symbols, the derivation's named intermediates (``names``
    as for :func:`derive.gradients`) and their gradients (``dL/dZ``). ``dims`` are the concrete
    sizes to compare at (by default distinct odd primes, :func:`choose_dims`; the report warns of
    given sizes that can hide a factor). A text that is not in the grammar raises
    :class:`~derive.errors.ParseError`, a SymPy formula with a symbol the network does not have too;
    a wrong formula does not raise, its result says why.
    """
    param = _param(loss, wrt)
    net = Network(loss, param, names, dims)
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


def _definitions(net: Network, tree: Node) -> tuple:
    """The gradients named in the hand or derived formula, and those they name, written out."""
    pending = [n.value for _, n in walk(tree) if n.kind == "leaf" and isinstance(n.value, Adjoint)]
    pending += sorted(net.g.compact(net.param).atoms(Adjoint), key=str)
    seen, out = {net.g.adjoint(net.param)}, []
    while pending:
        adjoint = pending.pop(0)
        if adjoint in seen or adjoint not in net.expansion:
            continue
        seen.add(adjoint)
        definition = net.expansion[adjoint]
        out.append((f"dL/d{adjoint.name}", to_text(net.tree(definition))))
        pending += sorted(definition.atoms(Adjoint), key=str)
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


# --- the report ---------------------------------------------------------------------------------------

def _cut(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + " ..."


def _dims_text(dims: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(dims.items(), key=lambda kv: str(kv[0]))) or "the given sizes"


def _values_text(values: dict, shown: int = 8) -> str:
    text = ", ".join(f"{k} = {v:.4g}" for k, v in list(values.items())[:shown])
    return text + (f" and {len(values) - shown} more" if len(values) > shown else "")


def _report(r: CheckResult) -> str:
    name = f"dL/d{r.param.name}"
    verdict = "right" if r.ok else "WRONG"
    lines = [f"{name}: {verdict}", f"  hand:     {r.hand}", f"  derived:  {r.derived}"]
    lines += [f"    where {left} = {right}" for left, right in r.definitions]
    if r.ok:
        how = ("symbolically (every entry's difference expands to 0) and numerically"
               if r.method == "symbolic" else "numerically (SymPy could not reduce the difference to 0)")
        lines.append(f"  equal at {_dims_text(r.dims)}, shown {how} at {r.points} random points")
        return "\n".join(lines + _caution(r.dims))
    if r.equal_only_at:
        lines.append(f"  equal at {_dims_text(r.equal_only_at)} only: there the sizes make it agree, "
                     f"at {_dims_text(r.dims)} it differs")
    if r.shape_problem:
        lines.append(f"  shape:    {r.shape_problem}")
        lines.append(f"  corrections tried at {_dims_text(r.dims)}")
    if r.counterexample is not None:
        c = r.counterexample
        lines.append(f"  differs at {_dims_text(r.dims)}, first in entry [{c.entry[0]}, {c.entry[1]}]:")
        lines.append(f"    hand:     {_cut(str(c.named_hand_entry))}")
        lines.append(f"    derived:  {_cut(str(c.named_derived_entry))}")
        lines.append(f"  counterexample: at {_values_text(c.named_point)}")
        if set(c.named_point) != set(c.point):
            lines.append(f"    (the network's inputs there: {_values_text(c.point)})")
        lines.append(f"    the hand entry is {c.hand_value:.6g}, the derived one {c.derived_value:.6g}")
        lines.append(f"  decided numerically, at {r.points} random points")
    if r.diagnosis is not None:
        d = r.diagnosis
        lines.append(f"  diagnosis ({d.kind}): {d.message}")
        if d.corrected != r.hand:
            lines.append(f"    right:  {d.corrected}")
    else:
        lines.append("  diagnosis: no simple slip explains the difference")
    lines += [f"  note: {note}" for note in r.notes]
    return "\n".join(lines + _caution(r.dims))


def _caution(dims: dict) -> list[str]:
    hiding = hiding_sizes(dims)
    if not hiding:
        return []
    note = (f"  note: at {', '.join(hiding)} a constant factor can pass unseen (2/N is 1 at N=2, N/D is 1 at "
            "N=D); the default dims, distinct odd primes, cannot hide one")
    return [note]


# --- the command line's part --------------------------------------------------------------------------

def run_check(network, wrt_name: str, hand_text: str, dims: Mapping | None = None) -> tuple[int, str]:
    """``derive check NET --wrt W --hand "..."``: (exit code, text). 0 right, 1 wrong, 2 bad input.

    ``network`` is a built-in example's name, or anything with ``name``, ``loss``, ``wrt`` and
    ``names`` (an :class:`~derive.examples.Example`, the command's loaded network file).
    """
    from .examples import get
    try:
        example = get(network) if isinstance(network, str) else network
        params = {p.name: p for p in example.wrt}
        if wrt_name not in params:
            return 2, f"error: {example.name} has no parameter {wrt_name!r}; its parameters: {', '.join(params)}"
        result = check(hand_text, example.loss, params[wrt_name], names=example.names, dims=dims or None)
    except DeriveError as error:
        return 2, f"error: {error}"
    return (0 if result else 1), result.report()
