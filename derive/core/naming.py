"""Names for the intermediate quantities a reader needs to see: the caller's, then ``Z_k``/``H_k``/``U_k``.

A node worth naming is the output of a nonlinear operation (``H``), the input of one (``Z``), or a
linear combination used more than once (``U``); linear bookkeeping (products, sums, transposes, as
their rules say) stays inline. Every rule then works on nodes whose arguments are names, so results
read ``X^T dL/dZ_1`` rather than an expanded tree.
"""

from __future__ import annotations

from collections import defaultdict

from sympy import Basic, MatrixExpr, MatrixSymbol

from .graph import Graph
from .rules import find_rule
from .symbols import LEAVES

__all__ = ["choose_names"]


def _linear(node: Basic) -> bool:
    rule = find_rule(node)
    return rule is not None and rule.linear


def _named_kind(node: Basic, graph: Graph) -> str | None:
    """Prefix of an automatic name for ``node``, or None when it stays inline."""
    if isinstance(node, LEAVES) or not isinstance(node, MatrixExpr) or not graph.depends[node]:
        return None
    if not _linear(node):
        return "H"
    users = graph.consumers.get(node, [])
    if any(not _linear(user) for user in users):
        return "Z"
    if len(users) > 1:
        return "U"
    return None


def choose_names(graph: Graph, given: dict[Basic, str]) -> dict[Basic, str]:
    """A name for every node worth naming: the caller's first, then ``Z_k``/``H_k``/``U_k``."""
    taken = {str(s.name) for s in graph.order if isinstance(s, MatrixSymbol)} | set(given.values())
    names = {node: name for node, name in given.items() if node in graph.depends}
    counters: dict[str, int] = defaultdict(int)
    for node in graph.order:
        prefix = None if node in names else _named_kind(node, graph)
        if prefix is None:
            continue
        while True:
            counters[prefix] += 1
            candidate = f"{prefix}_{counters[prefix]}"
            if candidate not in taken:
                break
        names[node] = candidate
        taken.add(candidate)
    return names
