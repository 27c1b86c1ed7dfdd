"""A corrected formula tidied into what a student would write: the scalar factors of a product in
one fraction in front (``2/N X^T G``, never ``2 1/N X^T G``), a transpose of a product pushed onto its
factors (``X^T G`` for ``(G^T X)^T``), two transposes or two minus signs cancelled.

Only rewrites that keep the value: every one is an identity of matrix algebra, and the checker's
tests confirm each tidied correction against the independent truth.
"""

from __future__ import annotations

from sympy import Integer, Mul, Pow, Rational, Symbol, fraction

from .formula import Node, is_scalar, leaf, node
from .meaning import to_sympy


def tidy(tree: Node) -> Node:
    """``tree`` with its scalars gathered and its transposes pushed inwards (the same value)."""
    args = tuple(tidy(a) for a in tree.args)
    tree = node(tree.kind, *args, value=tree.value, pos=tree.pos, text=tree.text)
    if tree.kind == "T":
        return _transposed(tree.args[0])
    if tree.kind == "neg" and tree.args[0].kind == "neg":
        return tree.args[0].args[0]
    if tree.kind == "prod":
        return _gathered(tree)
    return tree


def _ones(n: Node) -> bool:
    """The grammar's 1 in a product is a ones vector as long as its neighbour needs (``G 1``)."""
    return n.kind == "num" and n.value == 1


def _transposed(inner: Node) -> Node:
    if _ones(inner):
        return node("ones", value=True, pos=inner.pos)
    if is_scalar(inner):
        return inner                                    # a scalar is its own transpose
    if inner.kind == "T":
        return inner.args[0]
    if inner.kind == "ones":
        return node("ones", value=not inner.value, pos=inner.pos)
    if inner.kind == "neg":
        return node("neg", _transposed(inner.args[0]), pos=inner.pos)
    if inner.kind == "prod":                            # (A B)^T = B^T A^T
        return _gathered(node("prod", *(_transposed(a) for a in reversed(inner.args)), pos=inner.pos))
    return node("T", inner, pos=inner.pos)


def _gathered(product: Node) -> Node:
    """A product with its scalar factors multiplied into one coefficient written in front."""
    scalars = [a for a in product.args if is_scalar(a) and not _ones(a)]
    matrices = [a for a in product.args if not is_scalar(a) or _ones(a)]
    if not matrices or (len(scalars) <= 1 and (not scalars or product.args[0] is scalars[0])):
        return product
    coefficient = Mul(*(to_sympy(a) for a in scalars))
    body = matrices[0] if len(matrices) == 1 else node("prod", *matrices, pos=product.pos)
    if coefficient == 1:
        return body
    if coefficient == -1:
        return node("neg", body, pos=product.pos)
    return node("prod", coefficient_node(coefficient), body, pos=product.pos)


def coefficient_node(value) -> Node:
    """A scalar such as 2/N, -1/(2 N) or N/D as the grammar writes it."""
    numerator, denominator = fraction(value)
    top, bottom = _monomial(numerator), _monomial(denominator)
    return top if denominator == 1 else node("div", top, bottom)


def _monomial(value) -> Node:
    factors = Mul.make_args(value)
    parts = []
    for f in factors:
        if f.is_Integer or isinstance(f, Rational):
            parts.append(node("num", value=Integer(f) if f.is_Integer else f, text=str(f)))
        elif isinstance(f, Symbol):
            parts.append(leaf(f, str(f)))
        elif isinstance(f, Pow) and isinstance(f.base, Symbol) and f.exp.is_Integer:
            parts.append(node("pow", leaf(f.base, str(f.base)), value=f.exp))
        else:
            parts.append(leaf(f, f"({f})"))
    if len(parts) == 1:
        return parts[0]
    return node("prod", *parts)
