"""What students write beyond the grammar's own notation: a formula wrapped in ``$...$`` (or
``\\(...\\)``, ``\\[...\\]``, ``$$...$$``), and ``\\sum_i`` over the batch rows. The parser
(:mod:`.grammar`) calls these; they read its tokens through its own methods.
"""

from __future__ import annotations

import re

from sympy import Integer, MatrixExpr

from .formula import Node, is_scalar, node

_WRAPPERS = (("$$", "$$"), ("$", "$"), (r"\(", r"\)"), (r"\[", r"\]"))


def unwrap(text: str) -> str:
    """A formula inside ``$...$``, ``$$...$$``, ``\\(...\\)`` or ``\\[...\\]``, with the wrapper blanked
    out (spaces keep every column where it was, so a caret still points at the text)."""
    body = text.strip()
    for opening, closing in _WRAPPERS:
        if len(body) >= len(opening) + len(closing) and body.startswith(opening) and body.endswith(closing):
            start = text.index(opening)
            end = text.rindex(closing)
            return (text[:start] + " " * len(opening) + text[start + len(opening):end]
                    + " " * len(closing) + text[end + len(closing):])
    return text


def read_sum(parser, token, binding: int) -> Node:
    """``\\sum_i G``, ``\\sum_{i=1}^{N} G``: the sum over the batch rows, ``1^T G``. Inside, ``p_i``
    is row i of p. The sum takes in what binds tighter than ``binding`` (products and Hadamard
    products, up to a + or -). A row under a transpose is read only in ``\\sum_i a_i^T b_i``, the
    sum of outer products, which is ``a^T b``; the bounds are 1 and the number of rows summed."""
    if not parser.is_op("_"):
        raise parser.error(r"write the sum over the rows as \sum_i (...) or \sum_{i=1}^N (...)", token)
    parser.advance()
    braced = parser.is_op("{")
    if braced:
        parser.advance()
    index = parser.advance()
    if index.kind != "name" or len(index.text) != 1:
        raise parser.error(r"expected the row index after \sum_, as in \sum_i", index)
    if index.text in parser.indices:   # the inner sum would hide the outer one's rows: N times the sum
        raise parser.error(f"{index.text} is already the index of a sum around this one; name this one's "
                           "row index otherwise", index)
    bounds = []
    if braced:
        if parser.is_op("="):
            parser.advance()
            bounds.append(("lower", _bound(parser)))
        parser.expect("}")
    if parser.is_op("^"):
        parser.advance()
        braced = parser.is_op("{")
        if braced:
            parser.advance()
        bounds.append(("upper", _bound(parser)))
        if braced:
            parser.expect("}")
    parser.indices.append(index.text)
    try:
        summand = parser.expression(binding)
    finally:
        parser.indices.pop()
    rows = _indexed(parser, summand, index.text)
    _check_bounds(parser, bounds, rows, index.text)
    if any(under_transpose for _, under_transpose in rows):
        if not _outer_products(parser, summand, index.text):
            raise parser.error(r"a row under a transpose in a sum: write \sum_i a_i^T b_i (that is a^T b) or a "
                               r"sum of rows, \sum_i (...)", token)
        return summand   # sum_i a_i^T b_i is a^T b, the product of the whole matrices
    return node("call", summand, value=(parser.functions["sum_rows"], False), pos=token.pos, text="sum_rows")


def _bound(parser):
    """A bound of a sum (1, N): a number or a known name; the token and its value."""
    bound = parser.advance()
    if bound.kind == "num":
        return bound, Integer(bound.text) if bound.text.isdigit() else None
    value = parser.scope.symbol(bound.text) if bound.kind == "name" else None
    if value is None:
        raise parser.error("a bound of the sum is a number or a size such as N", bound)
    return bound, value


def _indexed(parser, tree: Node, index: str, under_transpose: bool = False) -> list:
    """(the leaf, whether it is under a transpose) of each row ``p_i`` of the sum over ``index``."""
    if tree.kind == "leaf":
        written = re.fullmatch(rf"(.+)_(?:\{{{index}\}}|{index})", tree.text or "")
        if written and parser.scope.symbol(tree.text) is None and isinstance(tree.value, MatrixExpr):
            return [(tree, under_transpose)]
        return []
    return [found for a in tree.args for found in _indexed(parser, a, index, under_transpose or tree.kind == "T")]


def _check_bounds(parser, bounds, rows, index: str) -> None:
    """The sum runs over every row: from 1 to the number of rows of what it sums (not to 2, not from 2)."""
    sizes = {leaf.value.shape[0] for leaf, _ in rows}
    for which, (token, value) in bounds:
        if which == "lower" and value != 1:
            raise parser.error(f"the sum over the rows runs from {index}=1", token)
        if which == "upper" and (len(sizes) == 1 and value not in sizes or not sizes and value is not None
                                 and value.is_Integer):
            name = rows[0][0].text.rsplit("_", 1)[0] if rows else "the batch"
            size = next(iter(sizes)) if sizes else "the batch size"
            raise parser.error(f"the sum over the rows of {name} runs up to {size}", token)


def _outer_products(parser, summand: Node, index: str) -> bool:
    """Whether the summand is a_i^T b_i (with scalar factors): rows of a and b, no other transpose."""
    factors = [f for f in (summand.args if summand.kind == "prod" else (summand,)) if not is_scalar(f)]
    if len(factors) != 2 or factors[0].kind != "T":
        return False
    a, b = factors[0].args[0], factors[1]
    return all(_indexed(parser, f, index) and not any(t for _, t in _indexed(parser, f, index)) for f in (a, b))
