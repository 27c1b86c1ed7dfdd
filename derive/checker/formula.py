"""The tree of a hand formula, the functions and names a formula may use, the tree printed back
as text, and the tree of a SymPy expression.

A hand formula, read by :mod:`.grammar` or given as SymPy (:func:`from_sympy`), is a small tree of
:class:`Node`; the checker rewrites trees to diagnose a slip and prints them back with
:func:`to_text`. :mod:`.meaning` gives a tree its value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sympy import (
    Basic,
    Identity,
    MatrixExpr,
    MatrixSymbol,
    OneMatrix,
    S,
)

from ..core.elementwise import Elementwise, activations
from ..core.softmax import log_softmax, softmax
from ..errors import ShapeError


class HandShapeError(ShapeError):
    """Operands of a hand formula that do not fit together (names both and their shapes)."""

    def __init__(self, message: str, node: Node | None = None):
        super().__init__(message)
        self.node = node


# --- the tree ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Node:
    """One operation of a hand formula. ``kind`` is one of KINDS; ``value`` depends on it:
    leaf: the SymPy object; num: a Rational; pow: the exponent; call: the Function entry;
    sum: the sign (+1/-1) of each term. ``pos`` is the column in the text it came from."""

    kind: str
    args: tuple = ()
    value: Any = None
    pos: int = field(default=0, compare=False)
    text: str = field(default="", compare=False)


KINDS = ("leaf", "num", "ones", "neg", "sum", "prod", "had", "div", "T", "pow", "call")


def node(kind: str, *args: Node, value=None, pos: int = 0, text: str = "") -> Node:
    """A node, with sums, products and Hadamard products flattened one level."""
    if kind in ("prod", "had"):
        flat = []
        for a in args:
            flat.extend(a.args if a.kind == kind else (a,))
        args = tuple(flat)
    if kind == "sum":
        signs, flat = [], []
        for a, s in zip(args, value):
            inner = zip(a.args, a.value) if a.kind == "sum" else [(a, 1)]
            for term, sign in inner:
                flat.append(term)
                signs.append(sign * s)
        args, value = tuple(flat), tuple(signs)
    return Node(kind, tuple(args), value, pos, text)


def leaf(value: Basic, text: str | None = None, pos: int = 0) -> Node:
    return Node("leaf", (), value, pos, text if text is not None else _name_of(value))


def _name_of(value: Basic) -> str:
    name = getattr(value, "name", None)
    if name is not None and type(value).__name__ == "LossGradient":
        return f"dL/d{name}"
    return str(name) if name is not None else str(value)


def walk(tree: Node, path: tuple = ()) -> Iterator[tuple[tuple, Node]]:
    """Every node with its path (the argument indices leading to it), parents first."""
    yield path, tree
    for k, child in enumerate(tree.args):
        yield from walk(child, path + (k,))


def replace_at(tree: Node, path: tuple, new: Node) -> Node:
    """``tree`` with the node at ``path`` replaced by ``new`` (flattening where it lands)."""
    if not path:
        return new
    args = list(tree.args)
    args[path[0]] = replace_at(args[path[0]], path[1:], new)
    return node(tree.kind, *args, value=tree.value, pos=tree.pos, text=tree.text)


# --- functions people write -------------------------------------------------------------------------

@dataclass(frozen=True)
class Function:
    """A function name of the grammar: an activation class, or a reduction built from ones."""

    name: str
    cls: type | None = None        # an Elementwise class, softmax or log_softmax
    reduce: str | None = None      # "rows" (1^T G) or "cols" (G 1)


def functions() -> dict[str, Function]:
    """Every function name of the grammar: each activation's names (its record's), softmax, log_softmax
    and the two sums. Read from the activation records at each call, so a new record is a new name."""
    table: dict[str, Function] = {}
    for name, cls in activations().items():
        for alias in cls.record.names:
            table.setdefault(alias, Function(name, cls=cls))
    for cls in (softmax, log_softmax):
        table[cls.__name__] = Function(cls.__name__, cls=cls)
    table["sum_rows"] = Function("sum_rows", reduce="rows")
    table["sum_cols"] = Function("sum_cols", reduce="cols")
    return table


def function_of(cls: type) -> Function:
    """The grammar's function for an activation's (or softmax's) class."""
    return next(f for f in functions().values() if f.cls is cls)


def is_scalar(n: Node) -> bool:
    """Whether a tree is a scalar (a number, a dimension, a factor such as 1/N) rather than a matrix."""
    if n.kind == "num":
        return True
    if n.kind == "leaf":
        return not isinstance(n.value, MatrixExpr)
    if n.kind == "call":  # an activation of a scalar, exp(0), is a scalar; a reduction or softmax of one is refused
        function = n.value[0]
        return not function.reduce and function.cls not in (softmax, log_softmax) and is_scalar(n.args[0])
    return n.kind != "ones" and all(is_scalar(a) for a in n.args)


# --- the names a formula may use ----------------------------------------------------------------------

def _canonical(name: str) -> str:
    return re.sub(r"[_{}()^]", "", name)


@dataclass
class Scope:
    """What a hand formula may name: symbols (matrices and dimensions) and gradients of quantities.

    ``symbols`` maps a name to its SymPy object; ``gradients`` a quantity's name to the symbol that
    stands for dL/d(quantity). Lookups also try the name without underscores and braces, so
    ``W_1`` finds ``W1`` and ``Z1`` finds ``Z_1`` when that is unambiguous.
    """

    symbols: dict[str, Basic]
    gradients: dict[str, Basic] = field(default_factory=dict)
    softmax_axis: int = 1

    def _find(self, table: dict, name: str):
        if name in table:
            return table[name]
        matches = [v for k, v in table.items() if _canonical(k) == _canonical(name)]
        return matches[0] if len(matches) == 1 else None

    def symbol(self, name: str):
        return self._find(self.symbols, name)

    def gradient(self, name: str):
        return self._find(self.gradients, name)

    def known(self) -> str:
        names = sorted(self.symbols, key=str) + [f"dL/d{q}" for q in sorted(self.gradients)]
        return ", ".join(names)


# --- printing a tree back as text -------------------------------------------------------------------

_PRECEDENCE = {"sum": 1, "had": 2, "neg": 2, "prod": 3, "div": 4, "T": 5, "pow": 5}


def to_text(tree: Node) -> str:
    """The formula in the grammar's own notation (what the checker shows as a correction)."""
    kind = tree.kind
    if kind in ("leaf", "num"):
        return tree.text or str(tree.value)
    if kind == "ones":
        return "1^T" if tree.value else "1"
    if kind == "call":
        function, prime = tree.value
        if tree.text.startswith("1["):
            return f"1[{to_text(tree.args[0])} > 0]"
        inner = ", ".join(to_text(a) for a in tree.args)
        return f"{function.name}{chr(39) if prime else ''}({inner})"
    if kind == "sum":
        parts = []
        for k, (term, sign) in enumerate(zip(tree.args, tree.value)):
            text = _child(term, 1, tight=sign < 0)
            parts.append(text if k == 0 and sign > 0 else (f"- {text}" if k else f"-{text}") if sign < 0 else f"+ {text}")
        return " ".join(parts)
    if kind == "neg":
        return "-" + _child(tree.args[0], 3)
    if kind == "prod":
        return " ".join(_child(a, 3, tight=True) for a in tree.args)
    if kind == "had":
        return " ⊙ ".join(_child(a, 2, tight=True) for a in tree.args)
    if kind == "div":
        return f"{_child(tree.args[0], 4)}/{_child(tree.args[1], 5)}"
    if kind == "T":
        return _child(tree.args[0], 5) + "^T"
    if kind == "pow":
        return f"{_child(tree.args[0], 5)}^{tree.value}"
    raise ValueError(kind)  # pragma: no cover


def _child(tree: Node, level: int, tight: bool = False) -> str:
    text = to_text(tree)
    mine = _PRECEDENCE.get(tree.kind, 6)
    if tree.kind == "leaf" and tight and " " in text.strip():
        return f"({text})"
    if mine < level or (tight and mine == level and tree.kind in ("had", "sum")):
        return f"({text})"
    return text


# --- SymPy expressions given directly -----------------------------------------------------------------

def from_sympy(expr: Basic, scope: Scope | None = None) -> Node:
    """The tree of a SymPy matrix expression, so that a SymPy hand formula is checked (and
    diagnosed) exactly like a text one. A plain MatrixSymbol named like a quantity of the network
    (``MatrixSymbol("h", N, 3)``) stands for that quantity."""
    from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, Transpose
    from sympy.core.numbers import Number

    if isinstance(expr, MatrixSymbol):
        found = scope.symbol(str(expr.name)) if scope is not None and type(expr) is MatrixSymbol else None
        return leaf(found if found is not None and found.shape == expr.shape else expr)
    if isinstance(expr, Transpose):
        return node("T", from_sympy(expr.arg, scope))
    if isinstance(expr, MatMul):
        scalars = [a for a in expr.args if not isinstance(a, MatrixExpr)]
        factors = [a for a in expr.args if isinstance(a, MatrixExpr)]
        matrices = [_ones_or_tree(a, k, len(factors), scope) for k, a in enumerate(factors)]
        coeff = S.One
        for c in scalars:
            coeff *= c
        body = matrices[0] if len(matrices) == 1 else node("prod", *matrices)
        if coeff == -1:
            return node("neg", body)
        return body if coeff == 1 else node("prod", _scalar_node(coeff), body)
    if isinstance(expr, MatAdd):
        terms, signs = [], []
        for term in expr.args:
            t = from_sympy(term, scope)
            negative = t.kind == "neg"
            terms.append(t.args[0] if negative else t)
            signs.append(-1 if negative else 1)
        order = sorted(range(len(terms)), key=lambda k: signs[k] < 0)  # p - y rather than -y + p
        return node("sum", *(terms[k] for k in order), value=tuple(signs[k] for k in order))
    if isinstance(expr, HadamardProduct):
        return node("had", *(from_sympy(a, scope) for a in expr.args))
    if isinstance(expr, HadamardPower):
        return node("pow", from_sympy(expr.args[0], scope), value=expr.args[1])
    if isinstance(expr, Elementwise):
        cls = getattr(type(expr), "of", type(expr))
        function = function_of(cls)
        params = [_scalar_node(p) for p in expr.params]
        return node("call", from_sympy(expr.arg, scope), *params, value=(function, cls is not type(expr)))
    if isinstance(expr, (softmax, log_softmax)):
        return node("call", from_sympy(expr.arg, scope), value=(function_of(type(expr)), False))
    if isinstance(expr, Number):
        return node("num", value=expr, text=str(expr))
    if isinstance(expr, Identity) and expr.shape == (1, 1):
        return leaf(expr, "1")  # the grammar's 1: added to or multiplied with a 1 x 1 matrix, the same
    return leaf(expr)  # anything else (a ones-matrix, an identity, a scalar) stands for itself


def _ones_or_tree(factor: Basic, k: int, count: int, scope: Scope | None) -> Node:
    """A ones vector inside a product prints as 1^T or 1 where a neighbour tells its length
    (``1^T G``, ``G 1``); a broadcast ``1 b`` keeps its own length."""
    if isinstance(factor, OneMatrix) and factor.shape != (1, 1):
        if factor.rows == 1 and k + 1 < count:
            return node("ones", value=True)
        if factor.cols == 1 and k > 0:
            return node("ones", value=False)
        return leaf(factor, "1")
    return from_sympy(factor, scope)


def _scalar_node(value: Basic) -> Node:
    from sympy.core.numbers import Number
    return node("num", value=value, text=str(value)) if isinstance(value, Number) else leaf(value, str(value))
