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

LaTeX as students write it is read too: ``$...$`` and ``\\(...\\)`` wrappers, ``[...]``, ``\\{...\\}``,
``\\left(`` and ``\\bigl(`` brackets, every function as a command (``\\tanh``, ``\\ln p``), accents and
bold on names, ``^{\\mathsf{T}}``, ``'`` as a transpose after anything but a function's name,
``\\tfrac``, ``\\dfrac`` and ``\\sum_i`` over the batch rows (``p_i`` inside it is row i of p).
README's "Spellings students write" lists every spelling; each is a row of tests/checker/test_spellings.py.

The tree (:class:`Node`) is what the checker rewrites to diagnose a slip; :func:`evaluate` gives it
a meaning through a backend, SymPy here and NumPy in the checker, so both read one definition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from sympy import (
    Basic,
    Integer,
    Rational,
)

from ..core.activations import relu
from ..core.elementwise import Elementwise
from ..core.softmax import log_softmax, softmax
from ..errors import ParseError
from .formula import Function, Node, Scope, function_of, functions, leaf, node, to_text
from .spelling import read_sum, unwrap


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
    ("space", r"\s+|\\[,;!: ]|\\(?:left|right)\.|\\(?:quad|qquad|displaystyle|left|right|[bB]igg?[lr]?)(?![A-Za-z])"),
    ("grad", rf"[d∂]{_LOSS}\s*/\s*[d∂]\s*(?P<q>{_NAME}{_LAYER}?)"),
    ("transpose", r"\.T(?![A-Za-z0-9_])|ᵀ"),
    ("num", r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+"),
    ("name", rf"{_NAME}{_LAYER}?"),
    ("cmd", r"\\[A-Za-z]+"),
    ("op", r"\\[{}]|[-+*/@^'(),\[\]{}>=_⊙∘⊘·×−⊤𝟙′∑∇]"),
]
_TOKEN_RE = re.compile("|".join(f"(?P<{kind}>{rx})" for kind, rx in _TOKENS))
_OP_ALIASES = {"−": "-", "∘": "⊙", "·": "@", "×": "@", "′": "'"}
_UNICODE_CMDS = {"∑": r"\sum", "∇": r"\nabla"}
_GROUPS = {"(": ")", "{": "}", "[": "]", r"\{": r"\}"}    # brackets of every kind group alike
_CMD_OPS = {r"\odot": "⊙", r"\circ": "⊙", r"\cdot": "@", r"\times": "@", r"\oslash": "⊘", r"\top": "⊤",
            r"\intercal": "⊤", r"\prime": "'", r"\ell": "ℓ", r"\sigma": "σ", r"\lbrack": "[", r"\rbrack": "]"}
_FONT_CMDS = {r"\mathbf", r"\boldsymbol", r"\bm", r"\mathrm", r"\mathit", r"\vec", r"\operatorname", r"\text",
              r"\mathsf", r"\rm", r"\bf", r"\textrm", r"\mathbfit"}
_ACCENTS = {r"\hat": "hat", r"\tilde": "tilde", r"\bar": "bar"}       # \hat{y} is the name yhat
_FRACS = {r"\frac", r"\tfrac", r"\dfrac"}


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
        elif kind == "op" and piece in _UNICODE_CMDS:
            tokens.append(Token("cmd", _UNICODE_CMDS[piece], pos))
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
MAX_DEPTH = 200    # nested operations: the checker's walks over the tree recurse, a few frames a level
MAX_EXPONENT = 64   # A^k: a gradient has small powers; 2^100000 is a number too large to print

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
        self.tokens = tokenize(unwrap(text))
        self.indices: list[str] = []     # the row indices of the \sum_i around the current point
        self.functions = functions()
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
        return token.kind in _STARTS or (token.kind == "op" and (token.text in _GROUPS or token.text == "𝟙"))

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
                if operand.kind == "pow" and abs(operand.value) > MAX_EXPONENT:
                    raise self.error(f"an entrywise power is at most {MAX_EXPONENT} in size", token)
            elif self.is_op("'"):       # after anything but a function's name (relu'(Z)), a transpose
                after = self.tokens[self.at + 1]   # f'(s) reads as a derivative too: refused, h' (s) is not
                if operand.kind == "leaf" and after.kind == "op" and after.text == "(" and after.pos == token.pos + 1:
                    raise self.error(f"{operand.text}'(...) is ambiguous: write {operand.text}^T (...) for a transpose, "
                                     "or the function's name for a derivative (sigmoid'(s))")
                self.advance()
                operand = self._transposed(operand, token)
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
        if token.kind == "cmd" and token.text in _FONT_CMDS:   # ^{\mathsf{T}}, ^{\rm T}
            self.at -= 1
            where = self.token
            token = Token("name", self._braced_name(), where.pos)
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
        if self.is_op(*_GROUPS):
            closing = _GROUPS[token.text]
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
        if name in self.functions and (self.is_op("(", "'") or (self.is_op("{") and name == "σ")):
            return self._call(self.functions[name], token)
        found = self.lookup(name)
        if found is not None:
            return leaf(found, name, token.pos)
        if name[0] == "d" and len(name) > 1 and self.scope.gradient(name[1:]) is not None:
            return self._gradient(name[1:], token)
        if name in self.functions:
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
        if not self.is_op(*_GROUPS):
            if token.kind == "cmd":     # \log \sigma(Z), \exp Z: a command applies to the next factor
                return _make_call(function, prime, [self.postfix(self.primary())], token, self)
            raise self.error(f"expected '(' after {token.text}")
        closing = _GROUPS[self.token.text]
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
        if cmd in _FRACS:
            return self._frac(token)
        if cmd in _ACCENTS:
            self.at -= 1
            return self._resolve(self._braced_name(), token)
        if cmd == r"\sum":
            return read_sum(self, token, _SUM)
        if cmd[1:] in self.functions:       # \tanh(Z), \exp(Z), \log(Z), \ln Z
            return self._call(self.functions[cmd[1:]], token)
        if cmd in _FONT_CMDS:
            if self.is_op("{") and self.tokens[self.at + 1].text == "1" and self.tokens[self.at + 2].text == "}":
                self.at += 3
                return node("ones", value=False, pos=token.pos, text="1")
            name = self._braced_name()
            if name in self.functions and self.is_op("(", "'"):
                return self._call(self.functions[name], token)
            return self._resolve(name, token)
        if cmd == r"\mathbb":
            self.expect("{")
            inner = self.advance()
            self.expect("}")
            if inner.text not in ("1", "I"):
                raise self.error(r"\mathbb{1}[Z > 0] is the only \mathbb this grammar reads", token)
            if not self.is_op("["):      # \mathbb{1}^T G: the ones vector
                return node("ones", value=False, pos=token.pos, text="1")
            return self._indicator_brackets(token)
        if cmd == r"\nabla":
            return self._nabla(token)
        if cmd == r"\partial":
            return self._partial_over_partial(token)
        raise self.error(f"the LaTeX command {cmd} is not part of this grammar", token)

    def _braced_name(self) -> str:
        braced = self.is_op("{")
        if braced:
            self.advance()
        token = self.advance()
        if token.kind == "cmd" and token.text in _ACCENTS:        # \hat{\mathbf{y}}
            name = self._braced_name() + _ACCENTS[token.text]
        elif token.kind == "cmd" and token.text in _FONT_CMDS:    # \mathbf{\hat{y}}
            name = self._braced_name()
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

    def lookup(self, name: str):
        """The symbol ``name`` stands for; inside ``\\sum_i`` also ``p_i`` for p, row i of p."""
        found = self.scope.symbol(name)
        for index in self.indices:
            match = re.fullmatch(rf"(.+)_(?:\{{{index}\}}|{index})", name)
            if found is None and match:
                found = self.scope.symbol(match.group(1))
        return found

    def _resolve(self, name: str, token: Token) -> Node:
        found = self.lookup(name)
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

    def _partial_over_partial(self, token: Token) -> Node:
        """``\\partial L / \\partial Z``: the gradient of L with respect to Z, as ``∂L/∂Z``."""
        loss = self.advance()
        if loss.kind != "name" or loss.text not in ("L", "J", "E", "e", "ℓ", "l") or not self.is_op("/"):
            raise self.error(r"write a gradient as \frac{\partial L}{\partial Z} or \partial L / \partial Z", token)
        self.advance()
        where = self.token
        if not (where.kind == "cmd" and where.text == r"\partial"):
            raise self.error(r"write a gradient as \partial L / \partial Z", where)
        quantity = self._differential()
        if quantity is None:
            raise self.error(r"expected the quantity after \partial, as in \partial L / \partial Z", self.token)
        return self._gradient(quantity, where)

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
    return node("call", argument, value=(function_of(relu), True), pos=pos, text=text)


def _make_call(function: Function, prime: bool, args: list[Node], token: Token, parser: Parser) -> Node:
    if function.reduce:
        if len(args) != 1:
            raise parser.error(f"{function.name} takes one matrix", token)
        return node("call", args[0], value=(function, False), pos=token.pos, text=function.name)
    cls = function.cls
    activation = isinstance(cls, type) and issubclass(cls, Elementwise)
    expected = 1 + (len(cls.record.params) if activation else 0)
    if cls in (softmax, log_softmax):
        expected = 1
    if len(args) > expected or (len(args) < expected and not activation):
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
        tree = Parser(text, scope).parse()
    except RecursionError:
        raise ParseError("the formula is nested too deeply to read") from None
    if _depth(tree) > MAX_DEPTH:   # a postfix chain (G^T^T..., G^2^2...) nests without the parser recursing
        raise ParseError("the formula is nested too deeply to read")
    return tree


def _depth(tree: Node) -> int:
    """The depth of a tree, walked without recursion (the tree may be deeper than Python recurses)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        n, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((a, depth + 1) for a in n.args)
    return deepest
