"""The grammar of hand-written gradients: text (plain or LaTeX) to a small tree, the tree to SymPy.

A hand formula arrives as text from a student or a test, so it is read by a tokenizer and a Pratt
parser of our own: nothing in the text is ever passed to ``eval``, ``exec``, ``sympify`` or
``parse_expr``, and anything outside the grammar is a :class:`~derive.errors.ParseError` that points
at the column. The grammar, loosest binding first:

=====================  ==========================================================================
``A + B``, ``A - B``   sum, difference (a scalar is added to every entry: ``1 - sigmoid(Z)``)
``A > 0``              an indicator ``1[A > 0]`` (also written ``1[A > 0]``, ``\\mathbb{1}[A > 0]``)
``A ⊙ B``, ``A * B``   Hadamard product (``∘``, ``\\odot``, ``\\circ``); times a scalar is scaling
``A ⊘ B``              Hadamard division
``A B``, ``A @ B``     matrix product (juxtaposition, ``@``, ``·``, ``\\cdot``, ``\\times``)
``A / c``              division (by a scalar, or entry by entry); binds tighter than products,
                       so ``2/N X^T G`` is ``(2/N) X^T G``
``-A``                 negation
``A^T``, ``A.T``       transpose (``A^\\top``, ``A^{T}``, ``Aᵀ``); ``A^2`` squares each entry
``f(A)``, ``f'(A)``    an activation or its derivative: relu, leaky_relu, elu, sigmoid (σ,
                       ``\\sigma``), tanh, exp, log, gelu, silu, softplus, softmax, log_softmax
``sum_rows(G)``        ``1^T G``, the sum over rows; ``sum_cols(G)`` is ``G 1``
``1^T``, ``G 1``       a ones vector whose length the neighbouring factor decides
``dL/dZ``              the derivation's own gradient of a named quantity (``∂L/∂Z``, ``dZ``,
                       ``\\frac{\\partial L}{\\partial Z}``, ``\\frac{dL}{dZ}``, ``\\nabla_Z L``)
names                  the network's symbols and named intermediates (``W_1``, ``W^{(1)}`` and
                       ``\\mathbf{W}_1`` all find ``W1``; ``\\hat{y}`` finds ``yhat``)
=====================  ==========================================================================

The tree (:class:`Node`) is what the checker rewrites to diagnose a slip; :func:`evaluate` gives it
a meaning through a backend, SymPy here and NumPy in the checker, so both read one definition.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from sympy import Basic, Integer, MatrixExpr, OneMatrix, Rational, S, expand

from .algebra import hadamard, hadamard_power, mat_add, mat_mul, transpose
from .errors import ParseError, ShapeError
from .functions import (
    Elementwise,
    elu,
    exp_,
    gelu,
    leaky_relu,
    log_,
    log_softmax,
    relu,
    sigmoid,
    silu,
    softmax,
    softplus,
    tanh_,
)

__all__ = [
    "FUNCTIONS",
    "HandShapeError",
    "Node",
    "Scope",
    "evaluate",
    "from_sympy",
    "leaf",
    "node",
    "parse",
    "replace_at",
    "to_sympy",
    "to_text",
    "walk",
]


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
    if name is not None and type(value).__name__ == "Adjoint":
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


FUNCTIONS: dict[str, Function] = {}
for _names, _cls in (
    (("relu", "ReLU", "Relu"), relu), (("leaky_relu", "LeakyReLU"), leaky_relu), (("elu", "ELU"), elu),
    (("sigmoid", "sigma", "σ", "sigm", "logistic"), sigmoid), (("tanh",), tanh_), (("exp",), exp_),
    (("log", "ln"), log_), (("gelu", "GELU"), gelu), (("silu", "SiLU", "swish"), silu),
    (("softplus",), softplus), (("softmax",), softmax), (("log_softmax",), log_softmax),
):
    for _n in _names:
        FUNCTIONS[_n] = Function(_names[0], cls=_cls)
FUNCTIONS["sum_rows"] = Function("sum_rows", reduce="rows")
FUNCTIONS["sum_cols"] = Function("sum_cols", reduce="cols")


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


def _split_into(name: str, known) -> list[str] | None:
    """``name`` as a run of known names, the fewest pieces first; None when there is none."""
    best: dict[int, list[str]] = {0: []}
    for end in range(1, len(name) + 1):
        options = [best[start] + [name[start:end]] for start in range(end) if start in best and known(name[start:end])]
        if options:
            best[end] = min(options, key=len)
    return best.get(len(name))


# --- tokens -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Token:
    kind: str      # name, num, grad, cmd, op, end
    text: str
    pos: int


_NAME = r"[A-Za-z\u0370-\u03ff][A-Za-z0-9\u0370-\u03ff]*(?:_(?:\{[A-Za-z0-9]+\}|[A-Za-z0-9]+))*"
_LAYER = r"(?:\^\{?\([0-9]+\)\}?)"         # W^{(2)}: a layer index, part of the name
_LOSS = r"(?:L|J|E|e|ℓ|l|\\ell)"
_TOKENS = [
    ("space", r"\s+|\\[,;!: ]|\\quad|\\qquad|\\left|\\right|\\big|\\Big"),
    ("grad", rf"[d∂]{_LOSS}\s*/\s*[d∂]\s*(?P<q>{_NAME}{_LAYER}?)"),
    ("transpose", r"\.T(?![A-Za-z0-9_])|ᵀ"),
    ("num", r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+"),
    ("name", rf"{_NAME}{_LAYER}?"),
    ("cmd", r"\\[A-Za-z]+"),
    ("op", r"[-+*/@^'(),\[\]{}>_⊙∘⊘·×−⊤𝟙]"),
]
_TOKEN_RE = re.compile("|".join(f"(?P<{kind}>{rx})" for kind, rx in _TOKENS))
_OP_ALIASES = {"−": "-", "∘": "⊙", "·": "@", "×": "@"}
_CMD_OPS = {r"\odot": "⊙", r"\circ": "⊙", r"\cdot": "@", r"\times": "@", r"\oslash": "⊘", r"\top": "⊤",
            r"\intercal": "⊤", r"\prime": "'", r"\ell": "ℓ", r"\sigma": "σ", r"\lbrack": "[", r"\rbrack": "]"}
_FONT_CMDS = {r"\mathbf", r"\boldsymbol", r"\bm", r"\mathrm", r"\mathit", r"\vec", r"\operatorname", r"\text",
              r"\mathsf"}


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens; an unknown character is a ParseError at its column."""
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise _error(text, pos, f"unexpected character {text[pos]!r}")
        kind = next(k for k, _ in _TOKENS if match.group(k) is not None)
        piece = match.group(0)
        if kind == "grad":
            tokens.append(Token("grad", match.group("q"), pos))
        elif kind == "cmd" and piece in _CMD_OPS:
            tokens.append(Token("op" if _CMD_OPS[piece] not in "σℓ" else "name", _CMD_OPS[piece], pos))
        elif kind == "op":
            tokens.append(Token("op", _OP_ALIASES.get(piece, piece), pos))
        elif kind != "space":
            tokens.append(Token(kind, piece, pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _error(text: str, pos: int, message: str) -> ParseError:
    caret = " " * pos + "^"
    return ParseError(f"{message} at column {pos + 1}\n  {text}\n  {caret}")


MAX_LENGTH = 2000   # characters: a hand formula is a line or two, not a program

# --- the parser ---------------------------------------------------------------------------------------

# Binding powers: the higher, the tighter.
_COMPARE, _SUM, _HADAMARD, _PRODUCT, _DIVIDE = 5, 10, 20, 30, 40
_INFIX = {">": _COMPARE, "+": _SUM, "-": _SUM, "⊙": _HADAMARD, "*": _HADAMARD, "⊘": _HADAMARD,
          "@": _PRODUCT, "/": _DIVIDE}
_STARTS = {"name", "num", "grad", "cmd"}


class Parser:
    """A Pratt parser over the tokens of one formula, resolving names in ``scope`` as it goes."""

    def __init__(self, text: str, scope: Scope):
        self.text, self.scope = text, scope
        self.tokens = tokenize(text)
        self.at = 0

    # token helpers
    @property
    def token(self) -> Token:
        return self.tokens[min(self.at, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.token
        self.at += 1
        return token

    def error(self, message: str, token: Token | None = None) -> ParseError:
        return _error(self.text, (token or self.token).pos, message)

    def expect(self, text: str) -> Token:
        if self.token.text != text or self.token.kind not in ("op",):
            found = f"{self.token.text!r}" if self.token.kind != "end" else "the end"
            raise self.error(f"expected {text!r} but found {found}")
        return self.advance()

    def is_op(self, *texts: str) -> bool:
        return self.token.kind == "op" and self.token.text in texts

    # grammar
    def parse(self) -> Node:
        if self.token.kind == "end":
            raise self.error("the formula is empty")
        tree = self.expression(0)
        if self.token.kind != "end":
            raise self.error(f"unexpected {self.token.text!r}")
        return tree

    def expression(self, min_bp: int) -> Node:
        left = self.prefix()
        while True:
            token = self.token
            if token.kind == "op" and token.text in _INFIX:
                bp = _INFIX[token.text]
                if bp <= min_bp:
                    break
                self.advance()
                right = self.expression(bp)
                left = self.infix(token, left, right)
            elif self._starts_operand() and _PRODUCT > min_bp:
                right = self.expression(_PRODUCT)
                left = node("prod", left, right, pos=left.pos)
            else:
                break
        return left

    def _starts_operand(self) -> bool:
        token = self.token
        return token.kind in _STARTS or (token.kind == "op" and token.text in ("(", "{", "𝟙"))

    def infix(self, token: Token, left: Node, right: Node) -> Node:
        op = token.text
        if op == "+":
            return node("sum", left, right, value=(1, 1), pos=left.pos)
        if op == "-":
            return node("sum", left, right, value=(1, -1), pos=left.pos)
        if op in ("⊙", "*"):
            return node("had", left, right, pos=left.pos)
        if op == "⊘":
            return node("had", left, node("pow", right, value=Integer(-1), pos=right.pos), pos=left.pos)
        if op == "@":
            return node("prod", left, right, pos=left.pos)
        if op == "/":
            return node("div", left, right, pos=left.pos)
        if op == ">":
            if not (right.kind == "num" and right.value == 0):
                raise _error(self.text, right.pos, "an indicator compares with 0 only, as in 1[Z > 0]")
            return _indicator(left, token.pos)
        raise self.error(f"unexpected {op!r}", token)  # pragma: no cover - _INFIX lists them all

    def prefix(self) -> Node:
        token = self.token
        if self.is_op("-"):
            self.advance()
            return node("neg", self.expression(_HADAMARD), pos=token.pos)
        if self.is_op("+"):
            self.advance()
            return self.expression(_HADAMARD)
        return self.postfix(self.primary())

    def postfix(self, operand: Node) -> Node:
        while True:
            token = self.token
            if token.kind == "transpose":
                self.advance()
                operand = self._transposed(operand, token)
            elif self.is_op("^"):
                self.advance()
                operand = self._power(operand, token)
            elif self.is_op("'"):
                raise self.error("a prime marks a function's derivative (relu'(Z)); write A^T for a transpose")
            else:
                return operand

    def _transposed(self, operand: Node, token: Token) -> Node:
        if operand.kind == "num" and operand.value == 1:
            return node("ones", value=True, pos=operand.pos, text="1^T")
        if operand.kind == "ones":
            return node("ones", value=not operand.value, pos=operand.pos)
        return node("T", operand, pos=operand.pos)

    def _power(self, operand: Node, caret: Token) -> Node:
        braced = self.is_op("{")
        if braced:
            self.advance()
        token = self.advance()
        if (token.kind == "name" and token.text == "T") or (token.kind == "op" and token.text == "⊤"):
            result = self._transposed(operand, token)
        elif token.kind == "num" or (token.kind == "op" and token.text == "-" and self.token.kind == "num"):
            sign = 1
            if token.text == "-":
                sign, token = -1, self.advance()
            exponent = sign * _number(token.text)
            result = node("pow", operand, value=exponent, pos=operand.pos, text="^")  # written, not a ⊘
        elif token.kind == "op" and token.text == "'":
            raise _error(self.text, token.pos, "a prime belongs right after a function name, as in sigmoid'(Z)")
        else:
            raise _error(self.text, token.pos, "after ^ write T (transpose) or a number (an entrywise power)")
        if braced:
            self.expect("}")
        return result

    def primary(self) -> Node:
        token = self.token
        if token.kind == "num":
            self.advance()
            if token.text == "1" and self.is_op("["):
                return self._indicator_brackets(token)
            return node("num", value=_number(token.text), pos=token.pos, text=token.text)
        if token.kind == "grad":
            self.advance()
            return self._gradient(token.text, token)
        if token.kind == "name":
            return self._name()
        if token.kind == "cmd":
            return self._command()
        if self.is_op("(", "{"):
            closing = ")" if token.text == "(" else "}"
            self.advance()
            if self.is_op(closing):
                raise self.error("empty parentheses")
            inner = self.expression(0)
            self.expect(closing)
            return inner
        if self.is_op("𝟙"):
            self.advance()
            return self._indicator_brackets(token)
        if token.kind == "end":
            raise self.error("the formula ends too early")
        raise self.error(f"unexpected {token.text!r}")

    def _indicator_brackets(self, token: Token) -> Node:
        if not self.is_op("["):
            raise self.error("an indicator is written 1[Z > 0]")
        self.advance()
        inner = self.expression(0)
        self.expect("]")
        if inner.kind != "call" or inner.text[:2] != "1[":
            raise _error(self.text, token.pos, "an indicator needs a comparison with 0 inside, as in 1[Z > 0]")
        return inner

    def _name(self) -> Node:
        token = self.advance()
        name = token.text
        if name in FUNCTIONS and (self.is_op("(", "'") or (self.is_op("{") and name == "σ")):
            return self._call(FUNCTIONS[name], token)
        found = self.scope.symbol(name)
        if found is not None:
            return leaf(found, name, token.pos)
        if name[0] == "d" and len(name) > 1 and self.scope.gradient(name[1:]) is not None:
            return self._gradient(name[1:], token)
        if name in FUNCTIONS:
            raise self.error(f"{name} is a function: write {name}(...)", token)
        raise self.error(f"unknown name {name!r}{self._split_hint(name)}; this network knows {self.scope.known()}",
                         token)

    def _split_hint(self, name: str) -> str:
        """'Xw' is read as one name, as 'W1' must be: when it is the network's names run together, say so."""
        parts = _split_into(name, lambda part: self.scope.symbol(part) is not None)
        if parts is None or len(parts) < 2:
            return ""
        return f" (for the product {' '.join(parts)}, put spaces between the factors)"

    def _gradient(self, quantity: str, token: Token) -> Node:
        found = self.scope.gradient(quantity)
        if found is None:
            known = ", ".join(sorted(self.scope.gradients))
            raise self.error(f"no gradient dL/d{quantity} in this derivation; named quantities: {known}", token)
        return leaf(found, f"dL/d{_name_of_gradient(found)}", token.pos)

    def _call(self, function: Function, token: Token) -> Node:
        prime = False
        if self.is_op("'"):
            self.advance()
            prime = True
        if function.reduce and prime:
            raise self.error(f"{function.name} has no derivative to take", token)
        if not self.is_op("(", "{"):
            raise self.error(f"expected '(' after {token.text}")
        closing = ")" if self.token.text == "(" else "}"
        self.advance()
        args = [self.expression(0)]
        while self.is_op(","):
            self.advance()
            args.append(self.expression(0))
        self.expect(closing)
        return _make_call(function, prime, args, token, self)

    def _command(self) -> Node:
        token = self.advance()
        cmd = token.text
        if cmd == r"\frac":
            return self._frac(token)
        if cmd in (r"\hat", r"\tilde", r"\bar"):
            name = self._braced_name() + {r"\hat": "hat", r"\tilde": "tilde", r"\bar": "bar"}[cmd]
            return self._resolve(name, token)
        if cmd in _FONT_CMDS:
            if self.is_op("{") and self.tokens[self.at + 1].text == "1" and self.tokens[self.at + 2].text == "}":
                self.at += 3
                return node("ones", value=False, pos=token.pos, text="1")
            name = self._braced_name()
            if name in FUNCTIONS and self.is_op("(", "'"):
                return self._call(FUNCTIONS[name], token)
            return self._resolve(name, token)
        if cmd == r"\mathbb":
            self.expect("{")
            inner = self.advance()
            self.expect("}")
            if inner.text not in ("1", "I"):
                raise self.error(r"\mathbb{1}[Z > 0] is the only \mathbb this grammar reads", token)
            return self._indicator_brackets(token)
        if cmd == r"\nabla":
            return self._nabla(token)
        if cmd == r"\partial":
            raise self.error(r"write a gradient as \frac{\partial L}{\partial Z}", token)
        raise self.error(f"the LaTeX command {cmd} is not part of this grammar", token)

    def _braced_name(self) -> str:
        braced = self.is_op("{")
        if braced:
            self.advance()
        token = self.advance()
        if token.kind == "cmd" and token.text in (r"\hat", r"\tilde", r"\bar"):
            name = self._braced_name() + token.text[1:]
        elif token.kind == "name":
            name = token.text
        else:
            raise _error(self.text, token.pos, "expected a name")
        if braced:
            self.expect("}")
        # a subscript after the font command: \mathbf{W}_1, \mathbf{W}_{1}
        if self.is_op("_"):
            self.advance()
            braced = self.is_op("{")
            if braced:
                self.advance()
            name += "_" + self.advance().text
            if braced:
                self.expect("}")
        return name

    def _resolve(self, name: str, token: Token) -> Node:
        found = self.scope.symbol(name)
        if found is None and name.startswith("d") and self.scope.gradient(name[1:]) is not None:
            return self._gradient(name[1:], token)
        if found is None:
            raise self.error(f"unknown name {name!r}; this network knows {self.scope.known()}", token)
        return leaf(found, name, token.pos)

    def _frac(self, token: Token) -> Node:
        start = self.at
        gradient = self._try_gradient_frac()
        if gradient is not None:
            quantity, where = gradient
            return self._gradient(quantity, where)
        self.at = start
        self.expect("{")
        numerator = self.expression(0)
        self.expect("}")
        self.expect("{")
        denominator = self.expression(0)
        self.expect("}")
        return node("div", numerator, denominator, pos=token.pos)

    def _try_gradient_frac(self):
        """``{\\partial L}{\\partial Z}`` or ``{dL}{dZ}``: the quantity's name, or None."""
        if not self.is_op("{"):
            return None
        self.advance()
        loss = self._differential()
        if loss is None or loss not in ("L", "J", "E", "e", "ℓ", "l") or not self.is_op("}"):
            return None
        self.advance()
        if not self.is_op("{"):
            return None
        self.advance()
        where = self.token
        quantity = self._differential()
        if quantity is None or not self.is_op("}"):
            return None
        self.advance()
        return quantity, where

    def _differential(self) -> str | None:
        """``\\partial Z``, ``dZ``, ``d Z``, ``d\\hat{y}``: the name after the d, or None."""
        token = self.token
        if token.kind == "cmd" and token.text == r"\partial" or token.kind == "name" and token.text == "d":
            self.advance()
        elif token.kind == "name" and token.text.startswith("d") and len(token.text) > 1:
            self.advance()
            return token.text[1:]
        else:
            return None
        token = self.token
        if token.kind == "name":
            self.advance()
            return token.text
        if token.kind == "cmd" and (token.text in _FONT_CMDS or token.text in (r"\hat", r"\tilde", r"\bar")):
            self.advance()
            suffix = {r"\hat": "hat", r"\tilde": "tilde", r"\bar": "bar"}.get(token.text, "")
            return self._braced_name() + suffix
        return None

    def _nabla(self, token: Token) -> Node:
        """``\\nabla_Z L`` or ``\\nabla_{Z} L``: the gradient of L with respect to Z."""
        self.expect("_")
        where = self.token
        quantity = self._braced_name()
        loss = self.advance()
        if loss.kind != "name" or loss.text not in ("L", "J", "E", "e", "ℓ", "l"):
            raise _error(self.text, loss.pos, "expected the loss (L, J, E or ℓ) after \\nabla_Z")
        return self._gradient(quantity, where)


def _number(text: str) -> Rational:
    """A numeral as an exact Rational, read by Python's Fraction (the text never reaches SymPy)."""
    value = Fraction(text)
    return Rational(value.numerator, value.denominator)


def _name_of_gradient(symbol: Basic) -> str:
    return str(getattr(symbol, "name", symbol))


def _indicator(argument: Node, pos: int) -> Node:
    text = f"1[{to_text(argument)} > 0]"
    return node("call", argument, value=(FUNCTIONS["relu"], True), pos=pos, text=text)


def _make_call(function: Function, prime: bool, args: list[Node], token: Token, parser: Parser) -> Node:
    if function.reduce:
        if len(args) != 1:
            raise parser.error(f"{function.name} takes one matrix", token)
        return node("call", args[0], value=(function, False), pos=token.pos, text=function.name)
    cls = function.cls
    expected = 1 + getattr(cls, "nparams", 0)
    if cls in (softmax, log_softmax):
        expected = 1
    if len(args) > expected or (len(args) < expected and cls not in (leaky_relu, elu)):
        raise parser.error(f"{function.name} takes {expected} argument(s), got {len(args)}", token)
    if prime and cls in (softmax, log_softmax):
        raise parser.error(f"{function.name}' is a full Jacobian, not an entrywise derivative; write the "
                           "gradient through it instead (for softmax cross-entropy: p - y)", token)
    return node("call", *args, value=(function, prime), pos=token.pos, text=function.name + ("'" if prime else ""))


def parse(text: str, scope: Scope) -> Node:
    """Read a hand formula; a ParseError (with a caret under the column) if it is not in the grammar."""
    if not isinstance(text, str):
        raise ParseError(f"a hand formula is text or a SymPy expression, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ParseError(f"the formula is {len(text)} characters long; at most {MAX_LENGTH} are read")
    try:
        return Parser(text, scope).parse()
    except RecursionError:
        raise ParseError("the formula is nested too deeply to read") from None


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


# --- meaning: one evaluator, two backends -----------------------------------------------------------

class SympyBackend:
    """Builds the SymPy matrix expression, checking every shape on the way (with the user's text)."""

    def __init__(self, softmax_axis: int = 1):
        self.softmax_axis = softmax_axis

    def is_matrix(self, value) -> bool:
        return isinstance(value, MatrixExpr)

    def shape(self, value):
        return value.shape if isinstance(value, MatrixExpr) else None

    def same(self, a, b) -> bool:
        return a == b or expand(a - b) == 0

    def leaf(self, value):
        return value

    def number(self, value):
        return value

    def ones(self, rows, cols):
        return OneMatrix(rows, cols)

    def matmul(self, a, b):
        return mat_mul(a, b)

    def hadamard(self, a, b):
        if not self.is_matrix(a) or not self.is_matrix(b):
            return mat_mul(a, b)
        return hadamard(a, b)

    def add(self, a, b):
        if self.is_matrix(a) != self.is_matrix(b):
            scalar, matrix = (a, b) if self.is_matrix(b) else (b, a)
            filled = mat_mul(scalar, OneMatrix(*matrix.shape))
            return mat_add(filled, matrix) if self.is_matrix(b) else mat_add(matrix, filled)
        return mat_add(a, b)

    def scale(self, c, a):
        return mat_mul(c, a)

    def divide(self, a, b):
        if not self.is_matrix(b):
            return mat_mul(S.One / b, a) if self.is_matrix(a) else a / b
        return self.hadamard(a, hadamard_power(b, -1)) if self.is_matrix(a) else mat_mul(a, hadamard_power(b, -1))

    def transpose(self, a):
        return transpose(a)

    def power(self, a, k):
        return hadamard_power(a, k) if self.is_matrix(a) else a ** k

    def apply(self, cls, prime: bool, args):
        if cls in (softmax, log_softmax):
            return cls(args[0], self.softmax_axis)
        value = cls(*args)  # fills in default parameters (leaky_relu's slope)
        return value.prime()(value.arg, *value.params) if prime else value


def to_sympy(tree: Node, softmax_axis: int = 1) -> Basic:
    """The SymPy expression of a hand formula; a HandShapeError names operands that do not fit."""
    return evaluate(tree, SympyBackend(softmax_axis))


def _describe(tree: Node, value, backend) -> str:
    shape = backend.shape(value)
    shown = f"{shape[0]} x {shape[1]}" if shape is not None else "a scalar"
    return f"{to_text(tree)} ({shown})"


def evaluate(tree: Node, backend) -> Any:
    """The value of ``tree`` under ``backend``; shapes are checked here, once for both backends."""
    kind = tree.kind
    if kind == "leaf":
        return backend.leaf(tree.value)
    if kind == "num":
        return backend.number(tree.value)
    if kind == "ones":
        raise HandShapeError(f"cannot tell the length of the ones vector {to_text(tree)}: write it next to a "
                             "matrix, as in 1^T G or G 1", tree)
    if kind == "neg":
        return backend.scale(Integer(-1), evaluate(tree.args[0], backend))
    if kind == "sum":
        return _sum(tree, backend)
    if kind == "prod":
        return _product(tree, backend)
    if kind == "had":
        return _hadamard(tree, backend)
    if kind == "div":
        return _divide(tree, backend)
    if kind == "T":
        value = evaluate(tree.args[0], backend)
        return backend.transpose(value) if backend.is_matrix(value) else value  # a scalar is its own transpose
    if kind == "pow":
        return backend.power(evaluate(tree.args[0], backend), tree.value)
    if kind == "call":
        return _call_value(tree, backend)
    raise ValueError(kind)  # pragma: no cover


def _sum(tree: Node, backend):
    total, first = None, None
    for term, sign in zip(tree.args, tree.value):
        value = evaluate(term, backend)
        if sign < 0:
            value = backend.scale(Integer(-1), value)
        if total is not None and backend.is_matrix(total) and backend.is_matrix(value):
            a, b = backend.shape(total), backend.shape(value)
            if not (backend.same(a[0], b[0]) and backend.same(a[1], b[1])):
                raise HandShapeError(f"sum of {_describe(first, total, backend)} and "
                                     f"{_describe(term, value, backend)}: the shapes differ", tree)
        total = value if total is None else backend.add(total, value)
        first = term if first is None else tree
    return total


def _is_ones(tree: Node) -> bool:
    return tree.kind == "ones" or (tree.kind == "T" and tree.args[0].kind == "ones")


def _product(tree: Node, backend):
    factors = list(tree.args)
    values: list[Any] = [None if _is_ones(f) else evaluate(f, backend) for f in factors]
    for k, f in enumerate(factors):
        left = values[k - 1] if k else None
        # a literal 1 right after a matrix is a ones column: dL/du 1 sums each row
        if f.kind == "num" and f.value == 1 and k and backend.is_matrix(left):
            values[k] = backend.ones(backend.shape(left)[1], 1)
        elif _is_ones(f):
            values[k] = _ones_value(f, factors, values, k, backend)
    result, shown = values[0], factors[0]
    for f, value in zip(factors[1:], values[1:]):
        if backend.is_matrix(result) and backend.is_matrix(value):
            inner_left, inner_right = backend.shape(result)[1], backend.shape(value)[0]
            if not backend.same(inner_left, inner_right):
                raise HandShapeError(
                    f"matrix product of {_describe(shown, result, backend)} and {_describe(f, value, backend)}: "
                    f"the inner dimensions {inner_left} and {inner_right} differ", tree)
            result = backend.matmul(result, value)
        elif backend.is_matrix(result):
            result = backend.scale(value, result)
        else:
            result = backend.scale(result, value) if backend.is_matrix(value) else result * value
        shown = node("prod", shown, f)
    return result


def _ones_value(f: Node, factors, values, k, backend):
    """The ones vector at factor ``k``: a row (1^T G) as long as the next matrix has rows, a column
    (G 1) as long as the previous matrix has columns. Scalars in between do not count."""
    row = (f.kind == "T") != bool(f.args[0].value if f.kind == "T" else f.value)
    others = range(k + 1, len(values)) if row else range(k - 1, -1, -1)
    neighbour = next((values[m] for m in others if backend.is_matrix(values[m])), None)
    if neighbour is None:
        where = "after" if row else "before"
        raise HandShapeError(f"cannot tell the length of {to_text(f)}: put a matrix right {where} it", f)
    return backend.ones(1, backend.shape(neighbour)[0]) if row else backend.ones(backend.shape(neighbour)[1], 1)


def _hadamard(tree: Node, backend):
    result, shown = None, None
    for f in tree.args:
        value = evaluate(f, backend)
        if result is None:
            result, shown = value, f
            continue
        if backend.is_matrix(result) and backend.is_matrix(value):
            a, b = backend.shape(result), backend.shape(value)
            if not (backend.same(a[0], b[0]) and backend.same(a[1], b[1])):
                raise HandShapeError(f"Hadamard product of {_describe(shown, result, backend)} and "
                                     f"{_describe(f, value, backend)}: the shapes differ", tree)
        result = backend.hadamard(result, value)
        shown = node("had", shown, f)
    return result


def _divide(tree: Node, backend):
    top, bottom = (evaluate(a, backend) for a in tree.args)
    if backend.is_matrix(top) and backend.is_matrix(bottom):
        a, b = backend.shape(top), backend.shape(bottom)
        if not (backend.same(a[0], b[0]) and backend.same(a[1], b[1])):
            raise HandShapeError(f"entrywise division of {_describe(tree.args[0], top, backend)} by "
                                 f"{_describe(tree.args[1], bottom, backend)}: the shapes differ", tree)
    return backend.divide(top, bottom)


def _call_value(tree: Node, backend):
    function, prime = tree.value
    args = [evaluate(a, backend) for a in tree.args]
    if not backend.is_matrix(args[0]):
        if function.reduce or function.cls in (softmax, log_softmax):
            raise HandShapeError(f"{to_text(tree)}: the argument of {function.name} must be a matrix", tree)
        # a function of a scalar (exp(0), log(N)) is a scalar: its value on the 1 x 1 matrix of it
        one_by_one = backend.scale(args[0], backend.ones(1, 1))
        return backend.apply(function.cls, prime, [one_by_one, *args[1:]])[0, 0]
    if function.reduce == "rows":
        return backend.matmul(backend.ones(1, backend.shape(args[0])[0]), args[0])
    if function.reduce == "cols":
        return backend.matmul(args[0], backend.ones(backend.shape(args[0])[1], 1))
    return backend.apply(function.cls, prime, args)



# --- SymPy expressions given directly -----------------------------------------------------------------

def from_sympy(expr: Basic, scope: Scope | None = None) -> Node:
    """The tree of a SymPy matrix expression, so that a SymPy hand formula is checked (and
    diagnosed) exactly like a text one. A plain MatrixSymbol named like a quantity of the network
    (``MatrixSymbol("h", N, 3)``) stands for that quantity."""
    from sympy import HadamardPower, HadamardProduct, Identity, MatAdd, MatMul, MatrixSymbol, Transpose
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
        function = next(f for f in FUNCTIONS.values() if f.cls is cls)
        params = [_scalar_node(p) for p in expr.params]
        return node("call", from_sympy(expr.arg, scope), *params, value=(function, cls is not type(expr)))
    if isinstance(expr, (softmax, log_softmax)):
        return node("call", from_sympy(expr.arg, scope), value=(FUNCTIONS[type(expr).__name__], False))
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
