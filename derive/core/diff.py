"""SymPy's ``diff`` of one expanded scalar by many unknowns, each node of its DAG differentiated once.

``expr.diff(x)`` recurses over ``expr`` as a tree. An explicit expansion is a DAG that shares almost
everything (each entry of a layer appears in every entry of the next), so SymPy differentiates a
shared subexpression once per path to it, and at every level of the recursion walks the whole
subexpression twice more (its free symbols, then a replace that makes derivatives canonical): seconds
to minutes on a 3-layer network at N = 2. :func:`derivatives` applies SymPy's own rules, the same
formulas in the same order (``Add``, ``Mul`` and ``Pow``'s ``_eval_derivative``, a function's chain
rule through its ``fdiff``), once per node and unknown, and hands any other node (``Piecewise``,
``Abs``, ``Max`` ...) to SymPy's ``diff`` whole. The result is the expression ``diff`` returns, not
merely an equal one (tests/core/test_diff.py compares them with ``==``), but for one shortcut: a
function's argument whose derivative is 0 is recognised by its form, not by an assumption query. It
knows nothing of derive's rules: this is SymPy differentiating the expansion, without repeated work.
"""

from __future__ import annotations

from functools import reduce

from sympy import Add, Basic, Function, Mul, Pow, S, log
from sympy.core.function import ArgumentIndexError
from sympy.matrices.expressions.matexpr import MatrixElement

from .walk import post_order

__all__ = ["Differentiable", "derivatives"]


class Differentiable:
    """An expression ready to be differentiated: its nodes in post-order (not below a node SymPy
    differentiates whole) and, for each, the matrix entries in it (by any other entry its derivative
    is 0, as SymPy's comes out: KroneckerDelta(i, k) = 0 for distinct integers), or for a node SymPy
    differentiates whole, the matrices in it."""

    def __init__(self, expr: Basic):
        self.expr = expr
        self.order = _post_order(expr)
        self.entries: dict[Basic, frozenset] = {}
        for node in self.order:
            if isinstance(node, MatrixElement):
                self.entries[node] = frozenset((node,))
            elif _has_rule(node):
                self.entries[node] = frozenset().union(*(self.entries[a] for a in node.args))
            else:
                # SymPy's quick exit reads free_symbols, which name the matrix, not the entry: by any
                # entry of a matrix in it, such a node is differentiated by SymPy (Abs gives a 0 of its own)
                self.entries[node] = _matrices_in(node)

    def derivative(self, unknown: Basic) -> Basic:
        """``self.expr.diff(unknown)``, each node differentiated once."""
        if not isinstance(unknown, MatrixElement):
            return self.expr.diff(unknown)   # SymPy's Mul differentiates by a Symbol another way
        done: dict[Basic, Basic] = {}
        matrix = unknown.parent
        for node in self.order:
            entries = self.entries[node]
            if unknown in entries or matrix in entries:
                done[node] = _derivative(node, unknown, done)
        return done.get(self.expr, S.Zero)


def derivatives(expr: Basic, unknowns) -> list[Basic]:
    """``[expr.diff(x) for x in unknowns]``, the DAG walked once per unknown."""
    differentiable = Differentiable(expr)
    return [differentiable.derivative(u) for u in unknowns]


def _post_order(root: Basic) -> list[Basic]:
    """Every node of ``root`` once, arguments before the node; a matrix entry and a node SymPy
    differentiates whole are leaves."""
    return post_order(root, lambda node: node.args if _has_rule(node) else ())


def _matrices_in(root: Basic) -> frozenset:
    """The matrices whose entries are anywhere in ``root``, each shared node visited once."""
    matrices, seen, stack = set(), set(), [root]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if isinstance(node, MatrixElement):
            matrices.add(node.parent)
        else:
            stack.extend(node.args)
    return frozenset(matrices)


def _derivative(node: Basic, x: Basic, done: dict) -> Basic:
    """d node / d x from its arguments' derivatives in ``done`` (absent: SymPy's quick exit, 0)."""
    if isinstance(node, MatrixElement):
        return S.One   # it depends on x, so it is x: KroneckerDelta(i, i) KroneckerDelta(j, j) in SymPy
    rule = _rule(node)
    derivative = None if rule is None else rule(node, lambda a: done.get(a, S.Zero))
    return node.diff(x) if derivative is None else derivative


# The rules below are SymPy 1.14's own _eval_derivative, written with d(a) for a.diff(s).

def _add(node, d):
    return Add(*[d(a) for a in node.args])


def _mul(node, d):
    args = list(node.args)
    terms = []
    for i in range(len(args)):
        da = d(args[i])
        if da:
            terms.append(reduce(lambda x, y: x * y, (args[:i] + [da] + args[i + 1:]), S.One))
    return Add.fromiter(terms)


def _pow(node, d):
    dbase, dexp = d(node.base), d(node.exp)
    return node * (dexp * log(node.base) + dbase * node.exp / node.base)


def _function(node, d):
    terms = []
    for i, a in enumerate(node.args, start=1):
        da = d(a)
        # SymPy asks da.is_zero, an assumption query that can run for seconds on a big da (a tanh in
        # it reduces its argument's imaginary part modulo pi); a term of a da proved 0 but not
        # structurally 0 would be kept here, an equal value: none turned up in the tests' networks
        if da == 0:
            continue
        try:
            df = node.fdiff(i)
        except ArgumentIndexError:
            return None   # SymPy's fallback is an unevaluated Derivative, which its diff rewrites: its call
        terms.append(df * da)
    return Add(*terms)


_RULES = {Add: _add, Mul: _mul, Pow: _pow}


def _rule(node: Basic):
    rule = _RULES.get(type(node))
    if rule is None and isinstance(node, Function) and _chain_rule_applies(type(node)):
        return _function
    return rule


def _has_rule(node: Basic) -> bool:
    return not isinstance(node, MatrixElement) and _rule(node) is not None


def _chain_rule_applies(cls: type) -> bool:
    """A function SymPy differentiates by the chain rule through its own ``fdiff`` (exp, tanh, derive's
    activations), not by a method of its own (Abs, Max, Piecewise), nor into an unevaluated Derivative
    that SymPy would then rewrite."""
    return cls._eval_derivative is Function._eval_derivative and cls.fdiff is not Function.fdiff
