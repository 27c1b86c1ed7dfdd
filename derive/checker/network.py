"""The network as the checker sees it: the derivation of one parameter, every name a hand formula
may use and its definition, the dims to compare at, random points and the values there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property, lru_cache

import numpy as np
from sympy import (
    Basic,
    Dummy,
    ImmutableMatrix,
    Integer,
    MatrixSymbol,
    Symbol,
    ZeroMatrix,
    lambdify,
    primerange,
)
from sympy.matrices import MatrixBase
from sympy.matrices.expressions.matexpr import MatrixElement

from ..core.derivation import gradients
from ..core.dims import dimension_symbols, expansion_cost, fit_dims, normalize_dims, requirements
from ..core.graph import topological_order
from ..core.losses import Loss
from ..core.softmax import log_softmax, softmax
from ..core.symbols import Intermediate, LossGradient
from ..errors import DeriveError
from .formula import Node, Scope, from_sympy
from .meaning import ExplicitBackend, NumpyBackend, evaluate

SYMBOLIC_COST = 300       # scalar operations of the loss's expansion at the dims beyond which SymPy is not asked



# --- the network as the checker sees it ---------------------------------------------------------------

def choose_dims(loss: Basic, avoid: set = frozenset()) -> dict[Symbol, int]:
    """Distinct odd primes (3, 5, 7, 11 ...) for the dimensions, skipping the sizes fixed in the shapes.

    Every slice, block and entry of the network is non-empty and in range at them (:func:`fit_dims`).
    At sizes that are distinct odd primes no size is 1 or 2 or another's, and no product of powers of
    the sizes times a power of 2 equals another: a missing 1/N, 2/N or 1/(2 D), or N written for D,
    changes the value at these dims, as it does at every other. Sizes unlike the fixed ones and each
    other also make a missing transpose or a swapped product a shape error. ``avoid``: sizes not to
    use either (a second set of dims).
    """
    fixed = {int(d) for n in topological_order(loss) if isinstance(n, MatrixSymbol)
             for d in n.shape if getattr(d, "is_Integer", False)}

    def smallest_prime(symbol, least, taken):    # a slice X[:, 2:] makes D at least 3, and so on
        return next(p for p in primerange(max(least, 3), 10_000) if p not in fixed | set(avoid) | taken)

    return fit_dims(sorted(dimension_symbols(loss), key=str), requirements(loss), smallest_prime)


def hiding_sizes(dims: Mapping) -> list[str]:
    """The sizes among ``dims`` that can hide a constant factor (1, 2, or a size given twice)."""
    values = list(dims.values())
    return [f"{k}={v}" for k, v in sorted(dims.items(), key=lambda kv: str(kv[0]))
            if v in (1, 2) or values.count(v) > 1]


class NetworkView:
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
        self._explicit: dict[Node, ImmutableMatrix] = {}
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
                adjoint = LossGradient(f.symbol.name, *f.symbol.shape)
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
        gradients_ = {str(a.name): a for a in self.expansion if isinstance(a, LossGradient) and a != own}
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
            if not any(isinstance(a, (Intermediate, LossGradient)) for a in expr.atoms(MatrixSymbol)):
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
        ``opaque``: the kinds of names (Intermediate, LossGradient) kept as their entries (``h[0, 1]``)
        instead of expanded; ``backend.opened`` then maps each one's entries back to it."""
        tree = what if isinstance(what, Node) else self.tree(what)
        shared = backend is None and not opaque
        if shared and tree in self._explicit:
            return self._explicit[tree]
        if shared:   # one backend for every plain call: the named quantities are written out once per network
            backend = self._explicit_backend = getattr(self, "_explicit_backend", None) or ExplicitBackend(self)
        value = evaluate(tree, backend or ExplicitBackend(self, opaque))
        if not isinstance(value, MatrixBase):
            value = ImmutableMatrix([[value]])
        value = ImmutableMatrix(value.xreplace(self.constraints)) if self.constraints else ImmutableMatrix(value)
        if shared and tree == self.truth_tree:     # the derived gradient: the same for every hand formula
            self._explicit[tree] = value
        return value

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
    def sibling(self) -> NetworkView | None:
        """The same derivation at a second set of dims (other odd primes), None without dims."""
        if not self.dims:
            return None
        return NetworkView(self.loss, self.param, self.names, choose_dims(self.g.root, avoid=set(self.dims.values())))

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
            used = tuple(sorted(value.atoms(MatrixElement), key=str))
            out.append((where(element), [where(e) for e in used], _compiled(value, used)))
        return out


@lru_cache(maxsize=1024)
def _compiled(value: Basic, used: tuple) -> Callable:
    """``value`` as a float function of the entries ``used``: compiled once, not again by each check of
    the same network (lambdify takes milliseconds, a check draws a handful of points)."""
    plain = [Dummy() for _ in used]
    return lambdify(plain, value.xreplace(dict(zip(used, plain))))


def entries_of(point: dict, net: NetworkView) -> dict:
    """The point as ``{X[0, 1]: value}`` for every entry (what a report shows)."""
    return {element: float(point[name][i, j]) for name, i, j, element in net.elements}
