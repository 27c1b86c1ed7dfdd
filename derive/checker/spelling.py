"""What students write beyond the grammar's own notation: a formula wrapped in ``$...$`` (or
``\\(...\\)``, ``\\[...\\]``, ``$$...$$``), and ``\\sum_i`` over the batch rows. The parser
(:mod:`.grammar`) calls these; they read its tokens through its own methods.
"""

from __future__ import annotations

from .formula import Node, node

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
    products, up to a + or -)."""
    if not parser.is_op("_"):
        raise parser.error(r"write the sum over the rows as \sum_i (...) or \sum_{i=1}^N (...)", token)
    parser.advance()
    braced = parser.is_op("{")
    if braced:
        parser.advance()
    index = parser.advance()
    if index.kind != "name" or len(index.text) != 1:
        raise parser.error(r"expected the row index after \sum_, as in \sum_i", index)
    if braced:
        if parser.is_op("="):
            parser.advance()
            _bound(parser)
        parser.expect("}")
    if parser.is_op("^"):
        parser.advance()
        braced = parser.is_op("{")
        if braced:
            parser.advance()
        _bound(parser)
        if braced:
            parser.expect("}")
    parser.indices.append(index.text)
    try:
        summand = parser.expression(binding)
    finally:
        parser.indices.pop()
    return node("call", summand, value=(parser.functions["sum_rows"], False), pos=token.pos, text="sum_rows")


def _bound(parser) -> None:
    """A bound of a sum (1, N): read and checked to be a number or a known name, not used."""
    bound = parser.advance()
    if not (bound.kind == "num" or (bound.kind == "name" and parser.scope.symbol(bound.text) is not None)):
        raise parser.error("a bound of the sum is a number or a size such as N", bound)
