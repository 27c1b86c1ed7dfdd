"""The LaTeX printer: SymPy's, subclassed for derive's notation.

One ``_print_<Class>`` method per node type, found by SymPy's dispatch on the class name. The
printer writes what the notes write on the board: ``\\frac{\\partial L}{\\partial Z_{1}}`` for an
upstream gradient, ``\\odot`` for the Hadamard product, ``\\sigma'(A)`` for a derivative applied
entry by entry (the activation's name comes from its record), and ``\\sum_{\\text{rows}} G`` for the
product ``1^T G`` that sums a broadcast bias's gradient over the batch. Integer matrix indices print
1-based, as in the notes (``x_{11}``), and sums over an index run from 1 accordingly.

User-chosen names pass through :func:`latex_name`: a name that is not a plain identifier is set as
escaped text, so no symbol name can break a sheet or inject TeX into it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import ClassVar

from sympy import (
    Basic,
    Identity,
    Integer,
    MatMul,
    MatrixExpr,
    MatrixSymbol,
    Mul,
    OneMatrix,
    Pow,
    S,
    Transpose,
    pi,
    sqrt,
)
from sympy import exp as sympy_exp
from sympy.printing.latex import LatexPrinter, tex_greek_dictionary
from sympy.printing.precedence import PRECEDENCE, precedence_traditional

from ..core.activations import NormalCdf
from ..core.elementwise import Elementwise, record_of, scalar_record
from ..core.symbols import LossGradient
from .text import negative_coefficient, product_precedence

__all__ = ["DeriveLatexPrinter", "latex", "latex_name", "latex_text"]


# A name SymPy may typeset itself (``W1`` -> ``W_{1}``, ``yhat`` -> ``\hat{y}``, ``Z_1`` -> ``Z_{1}``).
_PLAIN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)?")

_TEXT_ESCAPES = {
    "\\": r"\textbackslash{}", "_": r"\_", "#": r"\#", "%": r"\%", "&": r"\&", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "$": r"\$",
}


# Symbols people put in titles and names (``σ(X W) ⊙ M``) that pdflatex's text fonts lack: typeset in math.
_UNICODE_MATH = {
    "⊙": r"\odot", "⊘": r"\oslash", "⊗": r"\otimes", "∘": r"\circ", "×": r"\times", "·": r"\cdot",
    "−": "-", "±": r"\pm", "≤": r"\leq", "≥": r"\geq", "≠": r"\neq", "≈": r"\approx", "→": r"\to",
    "←": r"\leftarrow", "↦": r"\mapsto", "∂": r"\partial", "∇": r"\nabla", "∑": r"\sum", "∏": r"\prod",
    "∈": r"\in", "∞": r"\infty", "√": r"\surd", "′": r"\prime", "…": r"\ldots", "ᵀ": r"^{\top}",
    "⁻": "^{-}", "¹": "^{1}", "²": "^{2}", "³": "^{3}", "⁰": "^{0}", "ₙ": "_{n}", "ᵢ": "_{i}", "ⱼ": "_{j}",
}
# The last code point of Latin Extended-A: the letters pdflatex's T1 fonts and utf8 input know.
_T1_LETTERS_END = 0x17F


def _text_char(c: str) -> str:
    if c in _TEXT_ESCAPES:
        return _TEXT_ESCAPES[c]
    if c in _UNICODE_MATH:
        return rf"\ensuremath{{{_UNICODE_MATH[c]}}}"
    if ord(c) <= _T1_LETTERS_END:
        return c
    greek = _greek(c)
    # anything else would stop pdflatex ("Unicode character not set up"): its code point, visibly
    return rf"\ensuremath{{{greek}}}" if greek else rf"\textsf{{[U+{ord(c):04X}]}}"


def _greek(c: str) -> str | None:
    """A Greek letter's math command (σ -> \\sigma, Σ -> \\Sigma, ς -> \\varsigma), or None."""
    name = unicodedata.name(c, "")
    match = re.fullmatch(r"GREEK (SMALL|CAPITAL) LETTER (FINAL )?([A-Z]+)", name)
    if match is None or match[3].lower() not in _GREEK_LETTERS:
        return None
    letter = "varsigma" if match[2] else match[3].lower()
    letter = letter if match[1] == "SMALL" else letter.capitalize()
    return tex_greek_dictionary.get(letter, "\\" + letter)


# The letters of the Greek alphabet as Unicode names them (lamda) and sympy's tex_greek_dictionary reads.
_GREEK_LETTERS = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lamda",
                  "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega"}


def latex_text(text: str) -> str:
    """``text`` for text mode (titles, file names): every LaTeX special character escaped, math symbols
    and Greek letters typeset as math, any other character pdflatex cannot set shown as its code point."""
    return "".join(_text_char(c) for c in str(text))


def latex_name(name: str, printer: LatexPrinter | None = None) -> str:
    """A symbol name for math mode: SymPy's rendering when it is a plain identifier, else escaped text."""
    name = str(name)
    if _PLAIN_NAME.fullmatch(name):
        return (printer or DeriveLatexPrinter())._deal_with_super_sub(name)
    return rf"\text{{{latex_text(name)}}}"


# Scalar functions of derive's that are not an activation's own, met in explicit expansions.
_HELPER_FUNCTIONS = {NormalCdf: r"\Phi"}


class DeriveLatexPrinter(LatexPrinter):
    """SymPy's LaTeX printer with derive's notation for gradients, activations, losses and broadcasts.

    ``inline_gradients=True`` writes an entry of an upstream gradient as ``(\\partial L/\\partial z_{11})``
    instead of a fraction, which keeps written-out matrices legible.
    """

    _default_settings: ClassVar[dict] = {**LatexPrinter._default_settings, "inline_gradients": False}

    # --- names ----------------------------------------------------------------------------------

    def _print_Symbol(self, expr, style="plain"):
        if _PLAIN_NAME.fullmatch(expr.name):
            return super()._print_Symbol(expr, style)
        return latex_name(expr.name, self)

    def _print_MatrixSymbol(self, expr):
        return latex_name(expr.name, self)

    def _print_Intermediate(self, expr):
        return latex_name(expr.name, self)

    def _print_LossGradient(self, expr):
        return rf"\frac{{\partial L}}{{\partial {latex_name(expr.name, self)}}}"

    def _print_Tangent(self, expr):   # Pearlmutter's R{Z}: Z's directional derivative along the directions
        return rf"\mathcal{{R}}\{{{latex_name(expr.name, self)}\}}"

    def _print_GradientTangent(self, expr):
        return rf"\mathcal{{R}}\left\{{\frac{{\partial L}}{{\partial {latex_name(expr.name, self)}}}\right\}}"

    def _print_MatrixElement(self, expr):
        # Unambiguous subscripts: (w_1)_{ij}, (dL/dZ_1)_{1,2}, never w_{1ij} or Z_{112}.
        row, col = (self._print(index + 1 if isinstance(index, Integer) else index) for index in expr.indices)
        separator = "" if len(row) == 1 and len(col) == 1 else ","
        parent = expr.parent
        if isinstance(parent, LossGradient):
            name = latex_name(parent.name, self)
            if self._settings["inline_gradients"]:
                return rf"\left(\partial L/\partial {name}\right)_{{{row}{separator}{col}}}"
            return rf"\left(\frac{{\partial L}}{{\partial {name}}}\right)_{{{row}{separator}{col}}}"
        base = self.parenthesize(parent, PRECEDENCE["Atom"], strict=True)
        if "_" in base or "^" in base:
            base = rf"\left({base}\right)"
        return f"{{{base}}}_{{{row}{separator}{col}}}"

    # --- special matrices -----------------------------------------------------------------------

    def _print_OneMatrix(self, expr):
        return "1" if expr.shape == (1, 1) else r"\mathbf{1}"

    def _print_Identity(self, expr):
        return "1" if expr.shape == (1, 1) else r"I"

    def _print_Transpose(self, expr):
        base = self.parenthesize(expr.arg, PRECEDENCE["Pow"], strict=True)
        # a base that ends in a superscript, (A)^{-1} too, needs parentheses: no double superscript
        tail = base[base.rfind(r"\right)") + len(r"\right)"):] if r"\right)" in base else base
        if "^" in tail:
            base = rf"\left({base}\right)"
        return rf"{base}^{{\top}}"

    # --- products and sums ----------------------------------------------------------------------

    def _print_MatMul(self, expr):
        # An identity factor (I, I^T) multiplies by nothing: it is not printed.
        kept = [a for a in expr.args if not _is_identity(a)]
        if len(kept) < len(expr.args) and any(isinstance(a, MatrixExpr) for a in kept):
            return self._print(kept[0] if len(kept) == 1 else MatMul(*kept))
        # 1^T G (1 a row of ones) sums G over its rows, G 1 over its columns: the batch sum of a bias.
        args = [a for a in expr.args if isinstance(a, MatrixExpr)]
        scalars = [a for a in expr.args if not isinstance(a, MatrixExpr)]
        over = []
        if args and _is_ones_row(args[0]):
            over.append(r"\sum_{\text{rows}}")
            args = args[1:]
        if args and _is_ones_column(args[-1]):
            over.append(r"\sum_{\text{cols}}")
            args = args[:-1]
        if not over:
            return self._print_product(expr)
        inner = args[0] if len(args) == 1 else MatMul(*args)
        printed = self._print(inner)
        if not _is_atomic(inner):
            printed = rf"\left({printed}\right)"
        factor = Mul(*scalars)
        coeff = "" if factor == 1 else "-" if factor == -1 else self._print(factor) + " "
        if factor not in (1, -1) and precedence_traditional(factor) < PRECEDENCE["Mul"]:
            coeff = rf"\left({coeff.strip()}\right) "
        return coeff + " ".join(over) + " " + printed

    def _print_product(self, expr):
        # SymPy's _print_MatMul, with the sign read off the coefficient (derive.render.text)
        level = product_precedence(expr)

        def factor(arg):
            if isinstance(arg, Mul) and not isinstance(arg, MatMul):
                return self._print(arg)
            return self.parenthesize(arg, level, False)
        args = list(expr.args)
        if not negative_coefficient(expr):
            return " ".join(map(factor, args))
        args = args[1:] if args[0] == -1 else [-args[0], *args[1:]]
        return "- " + " ".join(map(factor, args))

    def parenthesize(self, item, level, is_neg=False, strict=False) -> str:
        if not isinstance(item, MatMul):
            return super().parenthesize(item, level, is_neg, strict)
        prec = product_precedence(item)
        if (is_neg and strict) or prec < level or (not strict and prec <= level):
            return self._add_parens(self._print(item))
        return self._print(item)

    def _print_MatAdd(self, expr):
        # Terms with a plus sign first, a broadcast bias 1 b last: X W + 1 b, 1 - p.
        terms = [self._print(term) for term in expr.args]
        terms.sort(key=lambda text: (text.startswith("-"), text.startswith(r"\mathbf{1} ")))
        out = terms[0]
        for text in terms[1:]:
            out += " - " + text[1:].lstrip() if text.startswith("-") else " + " + text
        return out

    def _print_Mul(self, expr):
        # e^{-x^2/2} / sqrt(2 pi), met in GELU's slope written out, is the normal density phi(x) the sheet defines
        found = _normal_density(expr)
        if found is None:
            return super()._print_Mul(expr)
        x, rest = found
        density = rf"\phi\left({self._print(x)}\right)"
        if rest == 1:
            return density
        return f"{self.parenthesize(rest, PRECEDENCE['Mul'])} {density}"

    def _print_HadamardProduct(self, expr):
        return r" \odot ".join(self.parenthesize(arg, PRECEDENCE["Pow"], strict=True) for arg in expr.args)

    def _print_HadamardPower(self, expr):
        base = self.parenthesize(expr.base, PRECEDENCE["Pow"], strict=True)
        if "^" in base:
            base = rf"\left({base}\right)"
        return rf"{base}^{{\circ {self._print(expr.exp)}}}"

    def _print_Sum(self, expr):
        # Indices print 1-based, so a sum from 0 to N - 1 runs from 1 to N.
        limits = "".join(rf"\sum_{{{self._print(k)}={self._print(low + 1)}}}^{{{self._print(high + 1)}}} "
                         for k, low, high in expr.limits)
        body = self._print(expr.function)
        if expr.function.is_Add:
            body = rf"\left({body}\right)"
        return limits + body

    def _print_KroneckerDelta(self, expr, exp=None):
        i, j = (self._print(a) for a in expr.args[:2])
        return rf"\delta_{{{i}{j}}}" if len(i) == len(j) == 1 else rf"\delta_{{{i},{j}}}"

    def _print_Heaviside(self, expr, exp=None):
        # H(0) = 0 for ReLU's derivative: the notes' indicator 1[x > 0] says exactly that.
        return rf"\mathbb{{1}}\left[{self._print(expr.args[0])} > 0\right]"

    def _print_Blocks(self, expr):
        rows = r" \\ ".join(" & ".join(self._print(block) for block in row) for row in expr.grid)
        return rf"\begin{{bmatrix}} {rows} \end{{bmatrix}}"

    def _print_Entries(self, expr):
        rows = r" \\ ".join(" & ".join(self._print(e) for e in row) for row in expr.rows_of_entries)
        return rf"\begin{{bmatrix}} {rows} \end{{bmatrix}}"

    def _print_MatrixSlice(self, expr):
        # 1-based and inclusive, like the entries: rows 0:N of Python are rows 1 to N on the board
        parent = self._print(expr.parent)
        if not (isinstance(expr.parent, MatrixSymbol) and not isinstance(expr.parent, LossGradient)):
            parent = rf"\left({parent}\right)"
        spans = [self._slice_span(span, size) for span, size in ((expr.rowslice, expr.parent.rows),
                                                                 (expr.colslice, expr.parent.cols))]
        return f"{{{parent}}}_{{{spans[0]},\\,{spans[1]}}}"

    def _slice_span(self, span, size) -> str:
        start, stop, _ = span
        if start == 0 and (stop - size) == 0:
            return ":"
        return f"{self._print(start + 1)}:{self._print(stop)}"

    # --- activations ----------------------------------------------------------------------------

    def _print(self, expr, **kwargs):
        # Each node is printed once per printer: a deep network's gradient is a DAG whose tree repeats
        # sigmoid(Z_k) in every derivative below it, so printing it node by node would cost its tree.
        if kwargs or not isinstance(expr, Basic):
            return self._print_node(expr, **kwargs)
        printed = self.__dict__.setdefault("_printed", {})
        if expr not in printed:
            printed[expr] = self._print_node(expr)
        return printed[expr]

    def _print_node(self, expr, **kwargs):
        # an activation prints by its record, even where SymPy has a printer of its name (log)
        if isinstance(expr, Elementwise):
            return self._print_Elementwise(expr)
        return super()._print(expr, **kwargs)

    def _print_Elementwise(self, expr):
        record, prime = record_of(type(expr))
        if prime and record.latex_prime:
            return record.latex_prime.replace("{a}", self._print(expr.arg))
        return rf"{self._function_name(expr)}\left({self._print(expr.arg)}\right)"

    def _function_name(self, expr) -> str:
        record, prime = record_of(type(expr))
        base = record.latex
        if expr.params:
            base += "_{{{}}}".format(", ".join(self._parameter(p) for p in expr.params))
        return base + ("'" if prime else "")

    def _print_Indicator(self, expr, exp=None):
        # relu'(x): 1 for x > 0, else 0, the notes' indicator (like Heaviside(x, 0))
        return rf"\mathbb{{1}}\left[{self._print(expr.args[0])} > 0\right]"

    def _print_Function(self, expr, exp=None):
        record = scalar_record(type(expr))
        name = record.latex if record is not None else _HELPER_FUNCTIONS.get(type(expr))
        if name is None:
            return super()._print_Function(expr, exp)
        x, *params = expr.args
        sub = "_{{{}}}".format(", ".join(self._parameter(p) for p in params)) if params else ""
        tex = rf"{name}{sub}\left({self._print(x)}\right)"
        return rf"{tex}^{{{exp}}}" if exp else tex

    def _parameter(self, value) -> str:
        # 0.1 reads better than 1/10 in a subscript
        if value.is_Rational and not value.is_Integer:
            return f"{float(value):g}"
        return self._print(value)

    def _print_softmax(self, expr):
        return rf"\operatorname{{softmax}}\left({self._print(expr.arg)}\right)"

    def _print_log_softmax(self, expr):
        return rf"\log\operatorname{{softmax}}\left({self._print(expr.arg)}\right)"

    # --- losses ---------------------------------------------------------------------------------

    def _print_Pairing(self, expr):
        return rf"\left\langle {self._print(expr.upstream)}, {self._print(expr.output)} \right\rangle"

    def _print_SquaredError(self, expr):
        difference = rf"\left({self._print(expr.prediction)} - {self._print(expr.target)}\right)_{{ij}}^{{2}}"
        return self._scaled_sum(expr.scale, difference)

    def _print_BinaryCrossEntropy(self, expr):
        p, y = (self._entry_text(m) for m in (expr.prediction, expr.target))
        body = rf"\left[{y} \log {p} + \left(1 - {y}\right) \log\left(1 - {p}\right)\right]"
        return self._scaled_sum(-expr.scale, body)

    def _print_SoftmaxCrossEntropy(self, expr):
        body = rf"{self._entry_text(expr.target)} \left(\log\operatorname{{softmax}}\left({self._print(expr.prediction)}\right)\right)_{{ij}}"
        return self._scaled_sum(-expr.scale, body)

    def _entry_text(self, matrix) -> str:
        printed = self._print(matrix)
        if not _is_atomic(matrix):
            printed = rf"\left({printed}\right)"
        return f"{{{printed}}}_{{ij}}"

    def _scaled_sum(self, scale: Basic, body: str) -> str:
        total = r"\sum_{i,j} " + body
        if scale == 1:
            return total
        if scale == -1:
            return "-" + total
        sign, magnitude = ("-", -scale) if scale.could_extract_minus_sign() else ("", scale)
        factor = self._print(magnitude)
        if precedence_traditional(magnitude) < PRECEDENCE["Mul"]:
            factor = rf"\left({factor}\right)"
        return f"{sign}{factor} {total}"


def _is_ones_row(expr) -> bool:
    return isinstance(expr, OneMatrix) and expr.rows == 1 and expr.cols != 1


def _is_ones_column(expr) -> bool:
    return isinstance(expr, OneMatrix) and expr.cols == 1 and expr.rows != 1


def _normal_density(expr):
    """(x, rest) when the product ``expr`` is rest * e^{-x^2/2} / sqrt(2 pi), else None."""
    for factor in expr.args:
        if isinstance(factor, sympy_exp):
            square = -2 * factor.args[0]
            if isinstance(square, Pow) and square.exp == 2:
                rest = expr * sqrt(2 * pi) / factor
                if not rest.has(pi, sympy_exp):
                    return square.base, rest
    return None


def _is_identity(expr) -> bool:
    return isinstance(expr, Identity) or isinstance(expr, Transpose) and isinstance(expr.arg, Identity)


def _is_atomic(expr) -> bool:
    return expr.is_Atom or isinstance(expr, MatrixSymbol)


def latex(expr, **settings) -> str:
    """``expr`` in derive's LaTeX notation (math mode, no delimiters)."""
    if expr is None:
        return "1"
    if expr == S.One or isinstance(expr, Identity) and expr.shape == (1, 1):
        return "1"
    return DeriveLatexPrinter(settings).doprint(expr)

