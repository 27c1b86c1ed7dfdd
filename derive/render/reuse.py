"""Matrix products computed once across a layer's statements: :func:`share_products`.

Each closed form of a layer's backward is printed on its own, with the cheapest association of its
own product chains, so two closed forms that meet in a product compute it twice: an attention head's
``dX`` and ``dWq`` both hold ``dS @ (X @ Wk)``, an N x N by N x k product. SymPy's ``cse`` cannot
see it (it treats a ``MatMul``'s arguments as a whole, and the association is the printer's), so
the shared products are found in the printed statements themselves, read with :mod:`ast`: a product
(``@``) written more than once over the same values is bound to a name, computed right before the
first statement that reads it, and read by name everywhere. The largest shared product is bound
first, so a product inside it is shared only if something else reads it too.

A product is the same value only between writes of the names it reads: a statement that rebinds or
updates a name in place (``dZ *= mask``, and an alias ``dZ = dH`` that an in-place update mutates
through) starts a new version of it, and products over different versions are not merged.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import replace

from .module import Statement

__all__ = ["share_products"]


def share_products(statements: list[Statement], shapes: Mapping[str, str],
                   fresh: Callable[[str], str]) -> list[Statement]:
    """``statements`` with every product they write more than once computed once, by name.

    ``shapes`` maps the code of each product the printer wrote to its shape, for the comment;
    ``fresh(base)`` returns an unused identifier made from ``base``.
    """
    shape_of = {_key(ast.parse(code, mode="eval").body): shape for code, shape in shapes.items()}
    lines = [_Line(s) for s in statements]
    while True:
        shared = _largest_shared(lines, shape_of)
        if shared is None:
            return [line.statement() for line in lines]
        occurrences, shape = shared
        first = min(k for k, _ in occurrences)
        node = occurrences[0][1]
        name = fresh(_name_of(node))
        readers = sorted({k for k, _ in occurrences})
        comment = f"{shape}, computed once for {len(occurrences)} uses"
        for k in readers:
            lines[k].replace({id(n) for j, n in occurrences if j == k}, name)
        lines.insert(first, _Line(Statement(name, ast.unparse(node), comment)))


class _Line:
    """A statement and its parsed code; the code is unparsed again only if a product in it was named."""

    def __init__(self, statement: Statement):
        self.original = statement
        self.tree = ast.parse(statement.code, mode="eval").body if statement.code else None
        self.changed = False

    def replace(self, nodes: set[int], name: str) -> None:
        self.tree = _Substitute(nodes, name).visit(self.tree)
        self.changed = True

    def statement(self) -> Statement:
        return replace(self.original, code=ast.unparse(self.tree)) if self.changed else self.original


class _Substitute(ast.NodeTransformer):
    def __init__(self, nodes: set[int], name: str):
        self.nodes, self.name = nodes, name

    def visit(self, node):
        if id(node) in self.nodes:
            return ast.Name(self.name, ast.Load())
        return super().visit(node)


def _largest_shared(lines: list[_Line], shape_of: Mapping[str, str]):
    """([(line index, node)], shape) of the largest product written twice over the same values."""
    seen: dict[tuple, list[tuple[int, ast.AST]]] = {}
    versions: dict[str, int] = {}
    aliases: dict[str, str] = {}
    owners = _owners(lines)
    for k, line in enumerate(lines):
        for node in ast.walk(line.tree) if line.tree is not None else ():
            if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult) and _key(node) in shape_of
                    and not (k in owners and node is line.tree)):
                reads = sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name)})
                seen.setdefault((_key(node), *((r, versions.get(r, 0)) for r in reads)), []).append((k, node))
        _write(line.original, line.tree, versions, aliases)
    repeated = [(len(ast.dump(nodes[0][1])), -nodes[0][0], nodes) for nodes in seen.values() if len(nodes) > 1]
    if not repeated:
        return None
    nodes = max(repeated, key=lambda r: r[:2])[2]
    return nodes, shape_of[_key(nodes[0][1])]


def _owners(lines: list[_Line]) -> set[int]:
    """The statements whose array a later statement updates in place before it is rebound
    (``dU = H.T @ dZ; ...; dU += b``): their product is theirs, never a shared array that the update
    would change under its other readers. Read by target, not by position: a shared product bound
    between the two lines must not make the first one look free."""
    owners, pending = set(), {}
    for k, line in enumerate(lines):
        target, op = line.original.target, line.original.op
        if not target:
            continue
        if op != "=" and target in pending:
            owners.add(pending.pop(target))
        elif op == "=":
            pending[target] = k
    return owners


def _write(statement: Statement, tree, versions: dict[str, int], aliases: dict[str, str]) -> None:
    """A new version of the name the statement writes (and of the array it aliases, when updated in place)."""
    target = statement.target
    if not target:
        return
    versions[target] = versions.get(target, 0) + 1
    if statement.op == "=":
        aliases.pop(target, None)
        if isinstance(tree, ast.Name):
            aliases[target] = tree.id   # dZ = dH: the same array, until one is rebound
    else:   # updated in place: so is every array it aliases, or that aliases it
        for name in {aliases.get(target), *(a for a, source in aliases.items() if source == target)} - {None}:
            versions[name] = versions.get(name, 0) + 1


def _key(node: ast.AST) -> str:
    return ast.dump(node, annotate_fields=False)


def _name_of(node: ast.AST) -> str:
    """A name that says what the product is: ``P.T @ dY`` is ``PT_dY``, ``dS @ (X @ Wk)`` ``dS_X_Wk``."""
    parts = []

    def walk(n):
        if isinstance(n, ast.BinOp):
            walk(n.left)
            walk(n.right)
        elif isinstance(n, ast.Attribute) and n.attr == "T" and isinstance(n.value, ast.Name):
            parts.append(n.value.id + "T")
        elif isinstance(n, ast.Name):
            parts.append(n.id)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            walk(n.func.value)   # dZ.sum(axis=1): named by dZ
    walk(node)
    return "_".join(parts) or "product"
