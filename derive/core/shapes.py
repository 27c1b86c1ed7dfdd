"""Shape checks, one per kind of operation; the rule table registers each with its rule.

A check raises a :class:`~derive.errors.ShapeError` naming the operands and their shapes when a
node's arguments do not fit together; the graph runs the check of every node's rule as it is built.
"""

from __future__ import annotations

from itertools import pairwise

from sympy import Basic, MatrixExpr, expand

from ..errors import ShapeError
from .symbols import shape_text

__all__ = ["blocks_fit", "dims_differ", "equal_shapes", "inner_dims_match", "namesakes", "same", "square"]


def same(a, b) -> bool:
    """Two dimensions are equal (``N + 1`` and ``1 + N`` too)."""
    return a == b or expand(a - b) == 0


def dims_differ(a, b, what: str = "the inner dimensions") -> str:
    """Why two dimensions differ, in words: two symbols may share a name but not their assumptions."""
    if str(a) == str(b):
        def described(d):
            facts = ", ".join(f"{k}={v}" for k, v in sorted(d.assumptions0.items())
                              if k in ("integer", "positive", "nonnegative")) if d.is_Symbol else ""
            return facts or "no assumptions"
        return (f"{what} are two different symbols both named {a} ({described(a)} vs {described(b)}); "
                "declare each dimension once, e.g. Symbol('N', integer=True, positive=True), and reuse it")
    return f"{what} {a} and {b} differ"


def namesakes(a: Basic, b: Basic) -> str:
    """For two matrices whose shapes print alike but differ, ``": "`` and why (else ``""``): a shape
    error that reads "D x 1 but D x 1" says nothing."""
    sides = [dims_differ(x, y, f"their {side}") for side, x, y in zip(("rows", "columns"), a.shape, b.shape)
             if x != y and str(x) == str(y)]
    return ": " + "; ".join(sides) if sides else ""


def inner_dims_match(node: Basic) -> None:
    """A matrix product: each factor has as many columns as the next has rows."""
    matrices = [a for a in node.args if isinstance(a, MatrixExpr)]
    for left, right in pairwise(matrices):
        if not same(left.cols, right.rows):
            raise ShapeError(
                f"matrix product {node}: {left} is {shape_text(left)} and {right} is {shape_text(right)}; "
                f"{dims_differ(left.cols, right.rows)}")


def equal_shapes(what: str):
    """A sum or a Hadamard product (``what``): every argument has the first's shape."""
    def check(node: Basic) -> None:
        first = node.args[0]
        for other in node.args[1:]:
            if not (same(first.rows, other.rows) and same(first.cols, other.cols)):
                hint = " (a 1 x H bias is added to every row as 1 b, with OneMatrix(N, 1))" if 1 in other.shape else ""
                raise ShapeError(f"{what} {node}: {first} is {shape_text(first)} but {other} is "
                                 f"{shape_text(other)}{hint}")
    return check


def square(node: Basic) -> None:
    """An inverse, a determinant or a trace: the argument is square."""
    arg = node.args[0]
    if not same(arg.rows, arg.cols):
        raise ShapeError(f"{type(node).__name__} of {arg}, which is {shape_text(arg)}, not square")


def blocks_fit(node: Basic) -> None:
    """A block matrix: every block has its block row's height and its block column's width."""
    for r, row in enumerate(node.grid):
        for c, block in enumerate(row):
            if not (same(block.rows, node.row_sizes[r]) and same(block.cols, node.col_sizes[c])):
                raise ShapeError(f"block matrix {node}: block {block} is {shape_text(block)}, but its block row "
                                 f"has {node.row_sizes[r]} rows and its block column {node.col_sizes[c]} columns")
