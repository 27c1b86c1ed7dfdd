"""A matrix expression with its shared subexpressions named, so any printer prints each once.

A deep network's gradient is a DAG: ``sigmoid(Z_k)`` appears in the forward chain and again in every
derivative below it, so the printed tree of ``g[W1]`` grows with the square of the depth while the
DAG grows linearly. :func:`named` walks the DAG once, each node once, and replaces every matrix node
built from matrices and used more than once by a fresh ``MatrixSymbol`` with its definition; printing the
definitions and the result (with ``str``, :func:`derive.render.latex.latex` or the NumPy printer) costs
time linear in the DAG. Substituting the definitions back, last first, gives the expression again.
"""

from __future__ import annotations

from sympy import Basic, MatrixExpr, MatrixSymbol

from ..core.walk import post_order

__all__ = ["named"]


def named(expr: Basic, prefix: str = "S") -> tuple[list[tuple[MatrixSymbol, Basic]], Basic]:
    """(definitions, result): each definition (symbol, value) uses only symbols defined before it, and
    ``result`` only those; the names are ``prefix`` with a counter, skipping names ``expr`` uses."""
    order, uses = _dag(expr)
    taken = {s.name for s in expr.free_symbols if hasattr(s, "name")}
    rebuilt, definitions = {}, []
    for node in order:
        args = [rebuilt[a] for a in node.args]
        value = node if all(a is b for a, b in zip(args, node.args, strict=True)) else node.func(*args)
        if uses[node] > 1 and isinstance(node, MatrixExpr) and any(isinstance(a, MatrixExpr) for a in node.args):
            name = _fresh(prefix, len(definitions) + 1, taken)
            symbol = MatrixSymbol(name, *node.shape)
            definitions.append((symbol, value))
            value = symbol
        rebuilt[node] = value
    return definitions, rebuilt[expr]


def _dag(root: Basic) -> tuple[list[Basic], dict[Basic, int]]:
    """The nodes below root (itself included), children before parents, each once; and how many
    parents (counted with multiplicity) use each node."""
    # last argument first, as this walk always went: the order names the shared parts, and the
    # committed modules' names should not move
    order = post_order(root, lambda node: reversed(node.args))
    uses = {root: 1}
    for node in order:
        for arg in node.args:
            uses[arg] = uses.get(arg, 0) + 1
    return order, uses


def _fresh(prefix: str, counter: int, taken: set[str]) -> str:
    name = f"{prefix}{counter}"
    while name in taken:
        name = f"{prefix}_{name}"
    taken.add(name)
    return name
