"""The expression DAG of a loss and the reverse sweep over it.

SymPy already shares equal subexpressions (equal trees hash equal), so a tied weight or a residual
input is one node with several consumers. The sweep visits nodes in reverse topological order and
adds each node's contribution to each argument's list (micrograd's ``+=``), so a node used on
several paths gets the sum of its paths.

Intermediate quantities that the reader needs to see get names (``Z_1``, ``H_1`` or the caller's):
every rule works on nodes whose arguments are those names, so results read ``X^T dL/dZ_1`` rather
than an expanded tree, and the expanded form is one ``xreplace`` away.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sympy import Basic, Expr, Identity, Integer, MatrixExpr, MatrixSymbol, S, preorder_traversal
from sympy.core.operations import AssocOp

from ..errors import DeriveError, InvalidParameter, NonScalarLoss, UnsupportedOperation
from .algebra import mat_add
from .rules import LOSS_ITSELF, Pullback, Rule, find_rule, rule_for
from .symbols import LEAVES, Intermediate, LossGradient, shape_text
from .walk import post_order

__all__ = ["Graph", "Step", "Sweep", "check_scalar", "reverse_sweep", "topological_order", "tree_size"]


def topological_order(root: Basic) -> list[Basic]:
    """Every node below ``root`` once, each after all of its arguments; the graph's leaves are not entered."""
    return post_order(root, lambda node: () if isinstance(node, LEAVES) else node.args)


@dataclass
class Graph:
    """The loss's nodes in topological order, who consumes whom, and what depends on the parameters."""

    root: Basic
    order: list[Basic]
    consumers: dict[Basic, list[Basic]]
    depends: dict[Basic, bool]

    @classmethod
    def build(cls, root: Basic, params: set[Basic]) -> Graph:
        order = topological_order(root)
        consumers: dict[Basic, list[Basic]] = defaultdict(list)
        depends: dict[Basic, bool] = {}
        _check_symbol_names(order)
        for node in order:
            leaf = isinstance(node, LEAVES)
            if not leaf:
                rule = find_rule(node)
                if rule is not None and rule.shapes is not None:
                    rule.shapes(node)   # the operation's own check, registered with its rule
                for arg in node.args:
                    consumers[arg].append(node)
            depends[node] = node in params or (not leaf and any(depends[a] for a in node.args))
        return cls(root, order, consumers, depends)


def _check_symbol_names(order: list[Basic]) -> None:
    """Two different MatrixSymbols with one name would be mixed up by everything that goes by name."""
    by_name: dict[str, MatrixSymbol] = {}
    for node in order:
        if isinstance(node, MatrixSymbol):
            other = by_name.setdefault(node.name, node)
            if other != node:
                raise InvalidParameter(f"two different matrices are both named {node.name}: {shape_text(other)} "
                                       f"and {shape_text(node)}; give each its own name")


def check_scalar(loss: Basic) -> None:
    if isinstance(loss, MatrixExpr):
        if loss.shape != (1, 1):
            raise NonScalarLoss(
                f"the loss {loss} is a {shape_text(loss)} matrix, not a scalar; reduce it first, for example "
                "with mse(...), a sum of entries 1^T A 1, or Trace(...)")
    elif not isinstance(loss, Expr):
        raise NonScalarLoss(f"the loss {loss!r} is a {type(loss).__name__}, not a SymPy scalar expression")


# --- the reverse sweep ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One application of a local rule: from ``node``'s gradient to its argument ``target``'s."""

    node: Basic          # the consumer, its arguments written with names (``relu(Z_1)``)
    output: Basic        # its name, or the compact node when it has none
    target: Basic        # the argument differentiated towards, by name
    shape: tuple         # the target's shape
    rule: str            # the rule's name (Derivation.rule_of(step) gives the rule itself)
    diagonal: bool       # the local Jacobian is diagonal: applied as a Hadamard product, never built
    upstream: Basic      # dL/d(node)
    local: Basic | None  # the local factor (None: identity, or no single factor)
    result: Basic        # this path's contribution to dL/d(target)


@dataclass
class Sweep:
    """What the reverse sweep produced, in terms of names (compact)."""

    refs: dict[Basic, Basic]                  # node -> its name, or its compact definition
    definitions: dict[Basic, Basic]           # named node -> compact definition
    steps: list[Step] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)          # the rule each step applied
    nodes: list[Basic] = field(default_factory=list)         # the node each step applied it to
    contributions: dict[Basic, list[Step]] = field(default_factory=lambda: defaultdict(list))
    adjoint_refs: dict[Basic, Basic] = field(default_factory=dict)   # node -> LossGradient symbol or inline sum


def compact_forms(graph: Graph, names: dict[Basic, str]) -> tuple[dict, dict]:
    """Each node rebuilt on its arguments' names; named nodes then stand for themselves by name."""
    refs: dict[Basic, Basic] = {}
    definitions: dict[Basic, Basic] = {}
    for node in graph.order:
        if isinstance(node, LEAVES):
            refs[node] = node
            continue
        args = [refs[a] for a in node.args]
        compact = node if all(r is a for r, a in zip(args, node.args)) else _rebuild(node, args)
        if node in names:
            definitions[node] = compact
            refs[node] = Intermediate(names[node], *node.shape)
        else:
            refs[node] = compact
    return refs, definitions


def _rebuild(node: Basic, args: list) -> Basic:
    """``node`` on new arguments, in the same order: rules pair their results with ``node.args``,
    so a sum or product that re-sorted its arguments would hand each one another's gradient."""
    if isinstance(node, AssocOp):
        return node.func(*args, evaluate=False)
    return node.func(*args)


def reverse_sweep(graph: Graph, names: dict[Basic, str], params: list[Basic]) -> Sweep:
    """Apply one rule per node from the loss back to the parameters, summing over paths."""
    refs, definitions = compact_forms(graph, names)
    sweep = Sweep(refs, definitions)
    seed = Identity(1) if isinstance(graph.root, MatrixExpr) else S.One
    param_set = set(params)
    if graph.root in param_set:  # the loss is a (1 x 1) parameter itself: dL/dL = 1
        root = graph.root
        _record(sweep, root, root, Step(root, root, root, root.shape, LOSS_ITSELF.name, False, seed, None, seed),
                LOSS_ITSELF)
    for node in reversed(graph.order):
        if node is graph.root:
            upstream = seed
        elif node in sweep.contributions:
            upstream = _adjoint_ref(node, sweep, names, param_set)
        else:
            continue
        if isinstance(node, LEAVES):
            continue
        _apply_rule(node, upstream, graph, sweep)
    return sweep


def _adjoint_ref(node, sweep: Sweep, names, params) -> Basic:
    total = mat_add(*(step.result for step in sweep.contributions[node]))
    ref = LossGradient(names[node], *node.shape) if node in names else total
    if node in params:
        ref = LossGradient(node.name, *node.shape)
    sweep.adjoint_refs[node] = ref
    return ref


def _fused(rule, compact, out, upstream, sweep: Sweep, node, grads):
    """Substitute the upstream gradient into a Hadamard rule where factors then cancel.

    This is how ``dL/dp ⊙ p ⊙ (1 - p)`` with ``dL/dp = (p - y) ⊘ (N p ⊙ (1 - p))`` becomes
    ``(p - y) / N``: the fused sigmoid and cross-entropy gradient, found by algebra, not by a pattern.
    """
    total = mat_add(*(step.result for step in sweep.contributions[node]))
    fused = rule.apply(compact, out, total)
    size = tree_size(total)
    return [f if g is not None and _result(f) is not None and tree_size(_result(f)) <= size else g
            for f, g in zip(fused, grads)]


def tree_size(expr: Basic) -> int:
    """Number of nodes in ``expr`` read as a tree: a measure of how much a reader has to read."""
    return sum(1 for _ in preorder_traversal(expr))


def _result(grad):
    return grad.result if isinstance(grad, Pullback) else grad


def _apply_rule(node, upstream, graph: Graph, sweep: Sweep) -> None:
    rule = rule_for(node)
    compact = sweep.definitions.get(node, sweep.refs[node])
    if compact.args != tuple(sweep.refs[a] for a in node.args):
        raise DeriveError(f"internal error: {type(node).__name__} reordered its arguments when rebuilt "
                          f"({node.args} became {compact.args}); please report this")
    grads = rule.apply(compact, sweep.refs[node], upstream)
    if rule.diagonal and isinstance(upstream, LossGradient):
        grads = _fused(rule, compact, sweep.refs[node], upstream, sweep, node, grads)
    for arg, grad in zip(node.args, grads):
        if not graph.depends[arg]:
            continue
        if grad is None:
            raise UnsupportedOperation(
                f"{type(node).__name__} in {node} has no gradient rule for its argument {arg}, which depends "
                "on a parameter")
        result, local = grad if isinstance(grad, Pullback) else (grad, None)
        step = Step(compact, sweep.refs[node], sweep.refs[arg], getattr(arg, "shape", (Integer(1), Integer(1))),
                    rule.name, rule.diagonal, upstream, local, result)
        _record(sweep, node, arg, step, rule)


def _record(sweep: Sweep, node: Basic, arg: Basic, step: Step, rule: Rule) -> None:
    """One step of the sweep: ``rule`` applied to ``node``, its contribution to ``arg``'s gradient."""
    sweep.steps.append(step)
    sweep.rules.append(rule)
    sweep.nodes.append(node)
    sweep.contributions[arg].append(step)
