"""One post-order walk of an expression DAG, shared by every pass that visits each node once.

Iterative, because a deep network's expression overflows Python's recursion, and each shared node is
visited once (a SymPy tree walk visits it once per path to it). What counts as a node's children is the
caller's: the graph stops at its leaves, the explicit expansion reads a BlockMatrix's blocks and an
explicit matrix's entries, SymPy's diff stops at a node it differentiates whole.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable

from sympy import Basic

__all__ = ["post_order"]


def _args(node: Basic) -> Iterable[Basic]:
    return node.args


def post_order(root: Basic, children: Callable[[Basic], Iterable[Basic]] = _args,
               skip: Container = ()) -> list[Basic]:
    """Every node reachable from ``root`` through ``children`` once, each after its children; a node
    in ``skip`` (already computed by the caller) is neither listed nor entered."""
    order: list[Basic] = []
    seen: set[Basic] = set()
    stack: list[tuple[Basic, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node in seen or node in skip:
            continue
        seen.add(node)
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(tuple(children(node))) if child not in seen)
    return order
