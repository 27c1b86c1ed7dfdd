"""The result of differentiating a loss: ``gradients`` and the :class:`Derivation` value.

``gradients(loss, wrt)`` builds the graph, names its quantities, runs the reverse sweep and returns
a :class:`Derivation`. Renderers and the checker read a derivation and nothing else, so it
publishes what they need: the forward quantities (``g.forward``), the steps (``g.steps``, with
``g.rule_of(step)``), every named intermediate and upstream gradient with its definition in the
order they can be evaluated (``g.bindings``) and in the network's own symbols (``g.closed_names``),
the network's matrices in order of use (``g.inputs``), the loss on its arguments' names
(``g.root_compact``), the upstream gradients each parameter's gradient needs
(``g.upstream_gradients``) and what each edge of the graph contributes (``g.edge_steps``).

Two forms of every gradient exist:

* compact (``g.compact(W)``): in the names of intermediate quantities and upstream gradients,
  ``X^T dL/dZ_1``, the form of the derivation sheet;
* closed (``g[W]``): in the network's own symbols only, so that ``subs(dims).as_explicit()`` and
  ``lambdify`` work on it with plain SymPy.

Second order: ``g.hvp({W: V})`` is the Hessian of the loss applied to a direction, by the tangent
(R-operator) pass of :mod:`.second_order` over ``g.bindings``, and ``g.hessian(w)`` a vector parameter's
Hessian read off it (:mod:`.hessian`); both are checked numerically like the gradients.

``g.elementwise(W, dims)`` is the independent truth: the loss expanded into scalars at concrete
dims and differentiated entry by entry with ``sympy.diff`` (:mod:`.explicit`); ``g.verify(dims)``
compares the two. Before ``gradients`` returns, every closed form is also checked numerically
(``check=True``, the default): at random points of the loss's domain its directional derivatives
are compared with central differences of the declared loss, both evaluated by :mod:`.truth`, which
owes nothing to the rules or the printers (``g.check_numerically()``; its result is
``g.numeric_check``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from sympy import Basic, Dummy, Eq, ImmutableMatrix, MatrixExpr, MatrixSymbol, Symbol, ZeroMatrix
from sympy.matrices import MatrixBase

from ..errors import InvalidParameter, ParameterNotInLoss, ShapeError
from .algebra import mat_add, mat_mul, substitute
from .canonical import canonical
from .dims import check_expansion_size, normalize_dims
from .explicit import (
    elementwise_gradient,
    elementwise_hvp,
    explicit,
    numeric_mismatch,
    simplifies_to_zero,
    target_constraints,
)
from .graph import Graph, Step, check_scalar, reverse_sweep, topological_order
from .hessian import read_off
from .naming import choose_names
from .rules import Rule
from .second_order import Hvp, check_directions, tangent_pass
from .shapes import namesakes
from .symbols import LEAVES, Intermediate, LossGradient, shape_text
from .truth import NumericCheck, check_gradients
from .truth.second import check_hvp

__all__ = ["Derivation", "Forward", "Verification", "gradients", "index_statement", "set_latex_display"]

# The notebook display (``_repr_latex_``) is the LaTeX renderer's: it registers itself here when it
# loads (derive.render.sheet), so that the derivation never formats text and never imports a renderer.
_latex_display: list[Callable] = []


def set_latex_display(display: Callable[[Derivation], str]) -> None:
    """Make ``display(g)`` what a notebook shows for a derivation ``g``."""
    _latex_display[:] = [display]


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
    order: int = 1          # 1: the gradient dL/d(param); 2: the HVP's component for param


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
        self.root = graph.root  # the same loss in derive's nodes (derive.core.canonical): what renderers read
        self.params = params
        self._by_name = {p.name: p for p in params}
        self.graph = graph
        self.names = choose_names(graph, given_names)
        self._sweep = reverse_sweep(graph, self.names, list(params))
        self._aliases = self._display_aliases(given_names)
        self.steps: tuple[Step, ...] = tuple(self._named_step(s) for s in self._sweep.steps)
        self._rules = dict(zip(self.steps, self._sweep.rules))
        self.forward: tuple[Forward, ...] = self._forward()
        self.root_compact: Basic = self._sweep.refs[graph.root]   # the loss's name, or the loss on its arguments' names
        self.numeric_check: NumericCheck | None = None
        self.hvp_check: NumericCheck | None = None   # the last HVP's numeric check (hvp, check=True)
        self.hvps: list[Hvp] = []                    # every HVP asked of this derivation: verify checks them

    # --- construction helpers -------------------------------------------------------------------

    def _display_aliases(self, given: dict[Basic, str]) -> dict[Basic, Intermediate]:
        """Names for expressions that are not nodes (``p`` for softmax(s)), in compact terms."""
        to_refs = {node: ref for node, ref in self._sweep.refs.items() if node in self.names}
        return {expr.xreplace(to_refs): Intermediate(name, *expr.shape)
                for expr, name in given.items() if expr not in self.graph.depends}

    def _aliased(self, expr: Basic) -> Basic:
        return expr.xreplace(self._aliases) if self._aliases and isinstance(expr, Basic) else expr

    def _named_step(self, step: Step) -> Step:
        if not self._aliases:
            return step
        return Step(*(self._aliased(getattr(step, f)) for f in Step.__dataclass_fields__))

    def _forward(self) -> tuple[Forward, ...]:
        out = []
        for node in self.graph.order:
            if node in self.names:
                symbol = self._sweep.refs[node]
                out.append(Forward(symbol, self._sweep.definitions[node], node, node.shape))
        for compact, symbol in self._aliases.items():
            out.append(Forward(symbol, compact, substitute(compact, self.closed_names), compact.shape))
        return tuple(out)

    def _total(self, node: Basic) -> Basic:
        return mat_add(*(step.result for step in self._sweep.contributions[node]))

    # --- what renderers, the checker and the truth read -------------------------------------------

    @cached_property
    def closed_names(self) -> dict[Basic, Basic]:
        """Every name (quantity, display name, upstream gradient) mapped to its expression in the
        network's own symbols."""
        mapping: dict[Basic, Basic] = {self._sweep.refs[n]: n for n in self.names if n in self._sweep.refs}
        for compact, symbol in self._aliases.items():
            mapping[symbol] = substitute(compact, mapping)
        for node, ref in self._sweep.adjoint_refs.items():
            if isinstance(ref, LossGradient):
                mapping[ref] = substitute(self._total(node), mapping)
        return mapping

    @cached_property
    def bindings(self) -> tuple[tuple[Basic, Basic], ...]:
        """(name, compact definition) of every named quantity, display name and named upstream
        gradient, in an order where each definition uses only earlier names (what
        :class:`~derive.core.truth.Program` evaluates once per point)."""
        forward = [(f.symbol, f.definition) for f in self.forward]
        upstream = [(ref, self._aliased(self._total(node))) for node, ref in self._sweep.adjoint_refs.items()
                    if isinstance(ref, LossGradient) and not isinstance(node, LEAVES)]
        return tuple(forward + upstream)

    @cached_property
    def inputs(self) -> tuple[MatrixSymbol, ...]:
        """The network's own matrices (inputs, targets, parameters) in order of first use in the forward
        pass; a parameter the loss does not use comes last."""
        found: list[MatrixSymbol] = []
        for expr in [f.definition for f in self.forward] + [self.root_compact]:
            for atom in topological_order(expr):
                if type(atom) is MatrixSymbol and atom not in found:
                    found.append(atom)
        return tuple(found + [p for p in self.params if p not in found])

    def rule_of(self, step: Step) -> Rule:
        """The rule that ``step`` applied (its formula, for a sheet: ``rule_of(step).formula_of(step.node)``)."""
        return self._rules[step]

    def upstream_gradients(self, param) -> tuple[LossGradient, ...]:
        """The named upstream gradients ``param``'s compact gradient reads, directly or through one
        another, loss side first (each depends only on those before it)."""
        position = {f.symbol.name: k for k, f in enumerate(self.forward)}
        needed: dict[str, LossGradient] = {}
        pending = [self.compact(param)]
        while pending:
            for gradient in pending.pop().atoms(LossGradient):
                if gradient.name in position and gradient.name not in needed:
                    needed[gradient.name] = gradient
                    pending.append(self.gradient_of(gradient.name))
        return tuple(sorted(needed.values(), key=lambda s: -position[s.name]))

    def edge_steps(self, source: Basic, quantity: Basic | None) -> tuple[Step, ...]:
        """The steps through which ``source`` (a matrix or a named quantity) receives its gradient from
        inside the definition of ``quantity`` (a forward quantity's symbol, or None for the loss
        itself when it has no name): what the edge from ``source`` to ``quantity`` carries."""
        owner = self._owners
        ref = self._sweep.refs.get(source, source)
        return tuple(step for step, node in zip(self.steps, self._sweep.nodes)
                     if step.target == ref and owner.get(node) == quantity)

    @cached_property
    def _owners(self) -> dict[Basic, Basic | None]:
        """Each node that a rule was applied to -> the named quantity whose definition it is part of
        (None: the loss, unnamed). A node left unnamed has at most one consumer (derive.core.naming)."""
        owners: dict[Basic, Basic | None] = {}
        for node in reversed(self.graph.order):
            ref = self._sweep.refs[node]
            if isinstance(ref, Intermediate):
                owners[node] = ref
            else:
                users = self.graph.consumers.get(node, [])
                owners[node] = owners.get(users[0]) if users else None
        return owners

    # --- the public contract --------------------------------------------------------------------

    def _param(self, param) -> MatrixSymbol:
        found = self._by_name.get(param.name if isinstance(param, MatrixSymbol) else param)
        if found is not None and (found == param or not isinstance(param, MatrixSymbol)):
            return found
        if found is not None:   # "x is not one of the parameters x" would say nothing
            raise KeyError(f"{param} ({shape_text(param)}) is not the parameter {found.name} ({shape_text(found)}) of "
                           f"this derivation, a different matrix of its name{namesakes(param, found)}; pass the "
                           "parameter itself or its name")
        raise KeyError(f"{param} is not one of the parameters {', '.join(p.name for p in self.params)}")

    def __getitem__(self, param) -> Basic:
        """The closed-form gradient of the loss with respect to ``param``, in the network's symbols."""
        param = self._param(param)
        if param not in self.graph.depends:
            return ZeroMatrix(*param.shape)
        return substitute(self.compact(param, aliases=False), self.closed_names)

    def compact(self, param, aliases: bool = True) -> Basic:
        """The gradient written with names of intermediates and upstream gradients (``X^T dL/dZ``)."""
        param = self._param(param)
        if param not in self.graph.depends:
            return ZeroMatrix(*param.shape)
        total = self._total(param)
        return self._aliased(total) if aliases else total

    def adjoint(self, param) -> LossGradient:
        """The symbol dL/dW used for ``param`` in steps and index forms."""
        param = self._param(param)
        return LossGradient(param.name, *param.shape)

    def gradient_of(self, symbol: Basic) -> Basic:
        """Compact total gradient of a named quantity or a parameter, or its name (sum over its paths)."""
        for node, ref in self._sweep.refs.items():
            if ref == symbol or node == symbol or (isinstance(symbol, str) and getattr(ref, "name", None) == symbol
                                                    and isinstance(ref, (Intermediate, MatrixSymbol))):
                if node not in self._sweep.contributions:
                    raise KeyError(f"{symbol} lies on no path from the loss to the parameters "
                                   f"{', '.join(p.name for p in self.params)}, so this derivation has no gradient for it")
                return self._aliased(self._total(node))
        raise KeyError(f"{symbol} is neither a named quantity nor a parameter of this derivation")

    def paths(self, target: Basic) -> tuple[Step, ...]:
        """The steps that contribute to ``target``'s gradient (more than one: the paths add up)."""
        ref = self._sweep.refs.get(target, target)
        return tuple(step for step in self.steps if step.target == ref)

    def sums_over_paths(self) -> tuple[tuple[Basic, tuple[Step, ...], Basic], ...]:
        """(target, its steps, their total) for every quantity or parameter whose gradient is a sum over
        several paths, in the order the sweep reached them."""
        out, seen = [], set()
        for step in self.steps:
            if step.target in seen:
                continue
            seen.add(step.target)
            paths = self.paths(step.target)
            if len(paths) > 1:
                total = self.compact(step.target) if step.target in self.params else self.gradient_of(step.target)
                out.append((step.target, paths, total))
        return tuple(out)

    def __iter__(self):
        return iter(self.params)

    def __len__(self):
        return len(self.params)

    def __repr__(self):
        lines = [f"Derivation of {self.loss}"]
        lines += [f"  dL/d{p.name} = {self.compact(p)}" for p in self.params]
        return "\n".join(lines)

    def _repr_latex_(self):
        return _latex_display[0](self) if _latex_display else None

    def check_numerically(self, *, seed: int = 0) -> NumericCheck:
        """Compare every closed form with central differences of the loss along random directions.

        Both sides are evaluated by :mod:`derive.core.truth`: the loss as declared, the gradients from
        their compact forms with each binding (named intermediate, upstream gradient) evaluated once.
        A mismatch raises :class:`GradientMismatch` naming the parameter and both directional derivatives.
        """
        closed = {p: self.compact(p) for p in self.params}
        self.numeric_check = check_gradients(self.loss, self.params, closed, self.bindings, seed=seed)
        return self.numeric_check

    # --- second order ---------------------------------------------------------------------------

    def hvp(self, directions: Mapping, *, check: bool = True, seed: int = 0) -> Hvp:
        """The Hessian of the loss in all the parameters jointly, applied to ``directions`` (param ->
        a MatrixSymbol of its shape; a parameter left out has direction 0): ``{param: closed form}``.

        Forward over reverse (:mod:`.second_order`): the tangent rules applied to every binding, so the
        value also publishes the tangent steps (``.steps``, ``.bindings``, ``.compact``) for renderers.
        With ``check`` the closed forms are compared with mixed second differences of the loss
        (:func:`derive.core.truth.second.check_hvp`) before they are returned.
        """
        moving = check_directions(directions, self._param, self._taken_names)
        gradients = {p: (self.compact(p) if p in self.graph.depends else None) for p in self.params}
        result = tangent_pass(self.bindings, gradients, self.closed_names, moving)
        self.hvps.append(result)
        if check and moving:   # with no direction every component is a zero matrix: nothing to difference
            self.hvp_check = check_hvp(self.loss, self.params, moving, result.compact,
                                       self.bindings + result.bindings, seed=seed)
        return result

    @cached_property
    def _taken_names(self) -> set[str]:
        """Names a direction may not take: the network's matrices and the derivation's named quantities
        (``Z_1``, whose tangent R{Z_1} and gradient dL/dZ_1 the steps and generated code name after it)."""
        return ({m.name for m in self.graph.order if isinstance(m, MatrixSymbol)} | {p.name for p in self.params}
                | {symbol.name for symbol, _ in self.bindings})

    def _direction_for(self, param) -> MatrixSymbol:
        """A direction for ``param`` named apart from the derivation's names: V_W (or V_W_0 ...)."""
        name = next(n for n in (f"V_{param.name}", *(f"V_{param.name}_{k}" for k in range(99)))
                    if n not in self._taken_names)
        return MatrixSymbol(name, *param.shape)

    def hessian(self, param, *, check: bool = True) -> Basic:
        """The n x n closed form of d^2 L / dx dx^T for a vector parameter x (n x 1 or 1 x n), read off
        the HVP (:mod:`.hessian`); for a matrix parameter, use :meth:`hvp`."""
        param = self._param(param)
        if 1 not in param.shape:
            raise ShapeError(f"hessian: {param.name} is a {param.shape[0]} x {param.shape[1]} matrix; its Hessian would "
                             f"be a 4-index tensor. Use g.hvp({{{param.name}: V}}) with V a {param.shape[0]} x "
                             f"{param.shape[1]} MatrixSymbol for its product with a direction")
        direction = self._direction_for(param)
        hessian = read_off(self.hvp({param: direction}, check=check)[param], direction)
        if check:   # the matrix read off, against the loss's second differences in its own right
            product = mat_mul(hessian, direction) if param.shape[1] == 1 else mat_mul(direction, hessian)
            check_hvp(self.loss, (param,), {param: direction}, {param: product})
        return hessian

    # --- index forms ----------------------------------------------------------------------------

    def index_form(self, what) -> Eq:
        """The entry-by-entry statement ``dL/dW_ij = sum_k ...`` of a gradient or of one Step."""
        if isinstance(what, Step):
            label = what.target if isinstance(what.target, MatrixSymbol) else Intermediate(str(what.target), *what.shape)
            lhs_matrix, rhs_matrix = LossGradient(str(label.name), *what.shape), what.result
        else:
            param = self._param(what) if not isinstance(what, Intermediate) else what
            lhs_matrix = LossGradient(param.name, *param.shape)
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
        return elementwise_gradient(self.loss, param, dims)

    def explicit_gradient(self, param, dims: Mapping) -> ImmutableMatrix:
        """The closed form ``g[param]`` expanded into an explicit matrix at ``dims``."""
        dims = normalize_dims(dims, self.root)
        check_expansion_size(self.root, dims)
        return explicit(self[param].subs(dims))

    def verify(self, dims: Mapping, *, points: int = 3, seed: int = 0, symbolic: bool = True,
               tolerance: float = 1e-10, hvp: bool = False) -> tuple[Verification, ...]:
        """Check every closed form against the elementwise truth at ``dims``.

        Exactly where SymPy simplifies the difference to 0 (``symbolic``), numerically always at
        ``points`` random float64 points (relative error under ``tolerance``). A mismatch raises
        :class:`GradientMismatch` naming the parameter, the entry and both values. Every HVP asked of
        this derivation (and with ``hvp`` one along a direction ``V_P`` for every parameter) is checked
        too, against d/d(param) of sum_P <elementwise dL/dP, V_P> (Verifications of ``order`` 2).
        """
        dims = normalize_dims(dims, self.root)
        constraints = target_constraints(self.graph.order, dims)
        first = [self._verify_one(p, dims, constraints, points, seed, symbolic, tolerance) for p in self.params]
        if hvp:
            self.hvp(self._fresh_directions(), check=False)
        second = [self._verify_hvp(h, p, dims, constraints, points, seed, symbolic, tolerance)
                  for h in self.hvps for p in self.params]
        return tuple(first + second)

    def _fresh_directions(self) -> dict:
        return {p: self._direction_for(p) for p in self.params}

    def _verify_hvp(self, hvp: Hvp, param, dims, constraints, points, seed, symbolic, tolerance) -> Verification:
        check_expansion_size(self.root, dims)
        closed = explicit(hvp[param].subs(dims)).xreplace(constraints)
        truth = elementwise_hvp(self.loss, tuple(hvp.directions.items()), param, dims).xreplace(constraints)
        exact = symbolic and all(simplifies_to_zero(c - t) for c, t in zip(closed, truth))
        error = numeric_mismatch(param, closed, truth, points, seed, tolerance, self._square_symbols(dims))
        return Verification(param, exact, error, points, order=2)

    def _verify_one(self, param, dims, constraints, points, seed, symbolic, tolerance) -> Verification:
        closed = self.explicit_gradient(param, dims).xreplace(constraints)
        truth = self.elementwise(param, dims).xreplace(constraints)
        exact = symbolic and all(simplifies_to_zero(c - t) for c, t in zip(closed, truth))
        error = numeric_mismatch(param, closed, truth, points, seed, tolerance, self._square_symbols(dims))
        return Verification(param, exact, error, points)

    def _square_symbols(self, dims) -> set:
        return {s.subs(dims) for s in self.graph.order
                if isinstance(s, MatrixSymbol) and s.shape[0] == s.shape[1] and s.shape != (1, 1)}


def index_statement(lhs_matrix: MatrixExpr, rhs_matrix: Basic) -> Eq:
    """``lhs_ij = rhs_ij`` with SymPy's own entry expansion and readable summation indices."""
    i, j = Symbol("i", integer=True), Symbol("j", integer=True)
    rhs = rhs_matrix[i, j] if isinstance(rhs_matrix, MatrixExpr) else rhs_matrix
    dummies = sorted(rhs.atoms(Dummy), key=str)
    taken = {str(s) for s in rhs.free_symbols}
    letters = (c for c in "klmnpqrstuvabcdefgh" if c not in taken)
    rhs = rhs.xreplace({d: Symbol(next(letters), integer=True) for d in dummies})
    return Eq(lhs_matrix[i, j], rhs, evaluate=False)
