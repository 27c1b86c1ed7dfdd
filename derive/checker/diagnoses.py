"""The diagnoses: small generators of corrected formulas, tried in order (:data:`DIAGNOSES`).

Each proposes changed trees (a constant factor, a transpose, a swapped product ...); the first
proposal that equals the derived gradient, screened numerically at a few points and then confirmed
like the hand formula itself, names the slip. A constant factor is read at a second set of dims too,
so a correction is right at every size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from sympy import (
    Basic,
    Integer,
    MatrixExpr,
    MatrixSymbol,
    Mul,
    Rational,
    nsimplify,
)

from ..core.elementwise import Elementwise
from ..core.symbols import LossGradient
from ..errors import DeriveError
from .compare import _close, compare
from .formula import (
    HandShapeError,
    Node,
    from_sympy,
    function_of,
    is_scalar,
    leaf,
    node,
    replace_at,
    to_text,
    walk,
)
from .meaning import to_sympy
from .network import NetworkView
from .results import Diagnosis
from .tidy import tidy

SCREEN_POINTS = 3         # points at which a proposed correction is tried before it is confirmed
# operations in a formula past which no slip is looked for: every slip is tried on every part and each
# trial evaluates the whole formula, so the time grows as the square of its size (a hand gradient has
# tens of operations; 400 repeated factors took minutes)
DIAGNOSED_SIZE = 100



# --- the diagnoses: proposals of corrected formulas -----------------------------------------------------

@dataclass(frozen=True)
class Proposal:
    """A corrected formula; right if it equals ``against`` (the derived gradient when None)."""

    tree: Node
    message: str
    against: Basic | None = None
    corrected: Node | None = None      # the formula to suggest, when it is not ``tree``


def _matrix_nodes(tree: Node) -> Iterator[tuple[tuple, Node]]:
    """The parts of ``tree`` that are matrices: a slip is made on them, not on a factor such as 1/N."""
    for path, n in walk(tree):
        if not is_scalar(n):
            yield path, n




def propose_factor(tree: Node, net: NetworkView, screen) -> Iterator[Proposal]:
    """The hand result times a constant (2, 1/2, -1, 1/N, D/N ...) is right."""
    ratio = screen.ratio(tree)
    if ratio is None:
        return
    factor = _name_factor(ratio, tree, net)
    if factor is None or factor == 1:
        return
    scaled = node("prod", _factor_node(factor), tree) if factor != -1 else node("neg", tree)
    mean = next((d for d in net.dims if factor == 1 / d), None)
    why = f", the 1/{mean} of the mean" if mean is not None else ""
    yield Proposal(scaled, f"off by a constant factor{why}: {factor} times the hand result is right")


def _name_factor(ratio: float, tree: Node, net: NetworkView):
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


def _factors(net: NetworkView) -> list[tuple]:
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


def propose_other_gradient(tree: Node, net: NetworkView, screen) -> Iterator[Proposal]:
    """The hand formula is the gradient of another parameter or of a named quantity."""
    others = []
    if net.everything is not None:
        others += [(s.name, net.everything.compact(s)) for s in net.everything.params]
    others += [(str(a.name), a) for a in net.expansion if isinstance(a, LossGradient) and a != net.g.adjoint(net.param)]
    for name, gradient in others:
        yield Proposal(tree, f"this is the gradient of {name} (dL/d{name}), not of {net.param.name}", gradient)


def propose_batch_sum(tree: Node, net: NetworkView, screen) -> Iterator[Proposal]:
    """A bias's gradient without the sum over the batch (dL/dZ written for dL/db), perhaps without the
    1/N of the mean too: a bias is added to every example, so its gradient sums over them."""
    name = net.param.name
    def summed(part: Node, rows: bool) -> Node:
        return node("prod", node("ones", value=True), part) if rows else node("prod", part, node("ones", value=False))

    for rows in (True, False):
        message = (f"the sum over the batch is missing: {name} is added to every example (each of the "
                   f"{'rows' if rows else 'columns'}), so dL/d{name} sums over them: {to_text(tidy(summed(tree, rows)))}")
        yield Proposal(summed(tree, rows), message)
        for d in sorted(net.dims, key=str):
            mean = node("div", node("num", value=Integer(1), text="1"), leaf(d, str(d)))
            yield Proposal(summed(node("prod", mean, tree), rows),
                           f"{message}, and the 1/{d} of the mean is missing too")


def propose_pre_activation(tree: Node, net: NetworkView, screen) -> Iterator[Proposal]:
    """The hand formula is dL/dZ, the gradient of the quantity Z = A W + ... that the parameter
    enters, one step of the chain rule short of dL/dW."""
    derived = from_sympy(net.g.compact(net.param), net.scope)
    for forward in net.g.forward:
        if net.param not in forward.definition.atoms(MatrixSymbol):
            continue
        adjoint = LossGradient(forward.symbol.name, *forward.symbol.shape)
        if adjoint not in net.expansion:
            continue
        corrected = _substituted(derived, adjoint, tree)
        q = forward.symbol.name
        yield Proposal(tree, f"this is dL/d{q}, the gradient of {q} = {to_text(net.tree(forward.definition))}; "
                       f"dL/d{net.param.name} takes one more step of the chain rule, through {q}'s product with "
                       f"{net.param.name}: {to_text(derived)}", adjoint, corrected)


def _substituted(tree: Node, symbol: Basic, new: Node) -> Node:
    """``tree`` with every leaf ``symbol`` replaced by ``new``."""
    if tree.kind == "leaf" and tree.value == symbol:
        return new
    return node(tree.kind, *(_substituted(a, symbol, new) for a in tree.args), value=tree.value,
                pos=tree.pos, text=tree.text)


def propose_transpose(tree: Node, net: NetworkView, screen) -> Iterator[Proposal]:
    """A transpose missing or extra: on the whole formula or on one operand."""
    for path, n in _matrix_nodes(tree):
        if n.kind == "T":
            changed, what = n.args[0], f"{to_text(n)} should be {to_text(n.args[0])} (no transpose)"
        else:
            changed, what = node("T", n), f"{to_text(n)} should be transposed"
        if not path:
            what = "the whole formula should be transposed" if n.kind != "T" else what
        yield Proposal(replace_at(tree, path, changed), what)


def propose_product_order(tree: Node, net: NetworkView, screen) -> Iterator[Proposal]:
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


def propose_hadamard_order(tree: Node, net: NetworkView, screen) -> Iterator[Proposal]:
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


def propose_missing_derivative(tree: Node, net: NetworkView, screen) -> Iterator[Proposal]:
    """An activation's derivative f'(A) left out of the chain."""
    for forward in net.g.forward:
        definition = forward.definition
        if not isinstance(definition, Elementwise):
            continue
        cls = type(definition)
        function = function_of(cls)
        argument = from_sympy(definition.arg, net.scope)
        derivative = node("call", argument, *(_factor_node(p) for p in definition.params), value=(function, True))
        for part, rebuild in _spots(tree):
            yield Proposal(rebuild(node("had", part, derivative)),
                           f"the derivative {to_text(derivative)} of {forward.symbol.name} = "
                           f"{to_text(net.tree(definition))} is missing: multiply {_operand(part)} by it (⊙)")


def _operand(part: Node) -> str:
    text = to_text(part)
    return f"({text})" if part.kind in ("sum", "neg", "had") else text


def propose_repeated_factor(tree: Node, net: NetworkView, screen) -> Iterator[Proposal]:
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


def propose_wrong_symbol(tree: Node, net: NetworkView, screen) -> Iterator[Proposal]:
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
    "missing-batch-sum": propose_batch_sum,
    "pre-activation": propose_pre_activation,
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

    def __init__(self, net: NetworkView, points: list[dict]):
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


def diagnose(net: NetworkView, tree: Node, points: list[dict]) -> Diagnosis | None:
    if _size(tree) > DIAGNOSED_SIZE:
        return None
    screen = Screen(net, points[:SCREEN_POINTS])
    for kind, propose in DIAGNOSES.items():
        for proposal in propose(tree, net, screen):
            if screen.matches(proposal) and _confirmed(net, proposal, points):
                suggested = proposal.corrected or (proposal.tree if proposal.against is None else tree)
                corrected = to_text(tidy(suggested))
                return Diagnosis(kind, proposal.message, corrected)
    return None


def _size(tree: Node) -> int:
    """The number of operations and names in a tree."""
    count, stack = 0, [tree]
    while stack:
        count += 1
        stack.extend(stack.pop().args)
    return count


def _confirmed(net: NetworkView, proposal: Proposal, points: list[dict]) -> bool:
    """The proposal fits together symbolically and equals its target at every point."""
    try:
        to_sympy(proposal.tree, net.scope.softmax_axis)
    except (HandShapeError, DeriveError):
        return False
    against = net.truth_tree if proposal.against is None else net.tree(proposal.against)
    return compare(net, proposal.tree, against, points, symbolic=False).equal
