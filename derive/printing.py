"""SymPy printer subclasses for derive's notation.

One ``_print_<Class>`` method per node type, found by SymPy's dispatch on the class name. The LaTeX
printer writes what the notes write on the board: ``\\frac{\\partial L}{\\partial Z_{1}}`` for an
upstream gradient, ``\\odot`` for the Hadamard product, ``\\sigma'(A)`` for a derivative applied
entry by entry, and ``\\sum_{\\text{rows}} G`` for the product ``1^T G`` that sums a broadcast bias's
gradient over the batch. Integer matrix indices print 1-based, as in the notes (``x_{11}``), and
sums over an index run from 1 accordingly.

User-chosen names pass through :func:`latex_name`: a name that is not a plain identifier is set as
escaped text, so no symbol name can break a sheet or inject TeX into it.

The NumPy printer (second section) writes the code of :func:`derive.codegen.to_numpy`: ``@`` and
``.T``, ``1^T G`` as a column sum, stable activations and losses, and user names mangled into safe
Python identifiers. It tracks the shape of every array it prints (a :class:`Layout`): a broadcast
``1 b`` prints as the row ``b``, and only the operations that broadcast it back (a sum, a Hadamard
product, a product's outer side) receive it so; everything else receives its declared shape.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from sympy import (
    Basic,
    Expr,
    HadamardPower,
    HadamardProduct,
    Identity,
    Integer,
    MatAdd,
    MatMul,
    MatrixExpr,
    MatrixSymbol,
    Mul,
    OneMatrix,
    Rational,
    S,
    Symbol,
    Transpose,
    ZeroMatrix,
)
from sympy.matrices.expressions.matexpr import MatrixElement
from sympy.matrices.expressions.slice import MatrixSlice
from sympy.printing.latex import LatexPrinter
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import PRECEDENCE, precedence, precedence_traditional
from sympy.printing.str import StrPrinter

from . import functions as fn
from .canonical import Blocks, Entries
from .functions import (
    BinaryCrossEntropy,
    Elementwise,
    SoftmaxCrossEntropy,
    SquaredError,
    log_softmax,
    relu,
    sigmoid,
    softmax,
)
from .graph import Adjoint

__all__ = [
    "NUMPY_HELPERS", "DeriveLatexPrinter", "DeriveNumPyPrinter", "DeriveStrPrinter", "Identifiers", "Layout", "latex",
    "latex_name", "latex_text", "safe_comment", "text",
]


# =================================================================================================
# Products: their sign and precedence read off the coefficient
# =================================================================================================
#
# SymPy's printers ask a product ``could_extract_minus_sign`` (for its sign and its precedence), which
# negates it, and negating a MatMul is a deep ``doit`` of its whole subtree; the printers ask again at
# every level of the printed tree, so a deep network's loss or closed form took seconds to print as
# text and minutes as LaTeX. A matrix product's sign is its leading numeric coefficient's.

def _negative_coefficient(product: MatMul) -> bool:
    first = product.args[0]
    return bool(first.is_Number and first.is_extended_negative)


def _precedence(item, of=precedence_traditional) -> int:
    if isinstance(item, MatMul):
        return PRECEDENCE["Add"] if _negative_coefficient(item) else PRECEDENCE["Mul"]
    return of(item)


class DeriveStrPrinter(StrPrinter):
    """SymPy's ``str``, with a matrix product's sign and precedence read off its coefficient."""

    def parenthesize(self, item, level, strict=False):
        prec = _precedence(item, precedence)
        if prec < level or (not strict and prec <= level):
            return f"({self._print(item)})"
        return self._print(item)

    def _print_Add(self, expr, order=None):
        # SymPy's (a MatAdd prints here too), with each term's precedence from _precedence
        level, out = _precedence(expr, precedence), []
        for term in self._as_ordered_terms(expr, order=order):
            printed = self._print(term)
            sign = "-" if printed.startswith("-") and not term.is_Add else "+"
            printed = printed[1:] if sign == "-" else printed
            if _precedence(term, precedence) < level or term.is_Add:
                printed = f"({printed})"
            out.extend([sign, printed])
        return ("" if out[0] == "+" else "-") + " ".join(out[1:])

    def _print_MatMul(self, expr):
        args = list(expr.args)
        sign = ""
        if _negative_coefficient(expr):
            sign, args[0] = "-", -args[0]
            if args[0] == 1:
                args = args[1:]
        level = PRECEDENCE["Mul"]
        return sign + "*".join(self.parenthesize(arg, level) for arg in args)


def text(expr) -> str:
    """``str(expr)``, in the time its size takes (see :class:`DeriveStrPrinter`)."""
    return DeriveStrPrinter().doprint(expr)


# =================================================================================================
# LaTeX
# =================================================================================================

# A name SymPy may typeset itself (``W1`` -> ``W_{1}``, ``yhat`` -> ``\hat{y}``, ``Z_1`` -> ``Z_{1}``).
_PLAIN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)?")

_TEXT_ESCAPES = {
    "\\": r"\textbackslash{}", "_": r"\_", "#": r"\#", "%": r"\%", "&": r"\&", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "$": r"\$",
}


def latex_text(text: str) -> str:
    """``text`` with every LaTeX special character escaped, for text mode (titles, file names)."""
    return "".join(_TEXT_ESCAPES.get(c, c) for c in str(text))


def latex_name(name: str, printer: LatexPrinter | None = None) -> str:
    """A symbol name for math mode: SymPy's rendering when it is a plain identifier, else escaped text."""
    name = str(name)
    if _PLAIN_NAME.fullmatch(name):
        return (printer or DeriveLatexPrinter())._deal_with_super_sub(name)
    return rf"\text{{{latex_text(name)}}}"


# Elementwise functions: how the function itself is written; its parameters go in a subscript.
_FUNCTION_NAMES = {
    "relu": r"\operatorname{relu}", "leaky_relu": r"\operatorname{leaky}", "elu": r"\operatorname{elu}",
    "sigmoid": r"\sigma", "gelu": r"\operatorname{GELU}", "silu": r"\operatorname{SiLU}",
    "softplus": r"\operatorname{softplus}", "tanh": r"\tanh", "exp": r"\exp", "log": r"\log",
    # the scalar functions of derive.functions, met in explicit expansions
    "Relu": r"\operatorname{relu}", "LeakyRelu": r"\operatorname{leaky}", "Elu": r"\operatorname{elu}",
    "Sigmoid": r"\sigma", "Gelu": r"\operatorname{GELU}", "Silu": r"\operatorname{SiLU}",
    "Softplus": r"\operatorname{softplus}", "NormalCdf": r"\Phi",
}


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

    def _print_Adjoint(self, expr):
        if not isinstance(expr, Adjoint):  # SymPy's own conjugate transpose has the same class name
            return super()._print_Adjoint(expr)
        return rf"\frac{{\partial L}}{{\partial {latex_name(expr.name, self)}}}"

    def _print_MatrixElement(self, expr):
        row, col = (self._print(index + 1 if isinstance(index, Integer) else index) for index in expr.indices)
        separator = "" if len(row) == 1 and len(col) == 1 else ","
        parent = expr.parent
        if isinstance(parent, Adjoint):
            entry = f"{{{latex_name(parent.name, self)}}}_{{{row}{separator}{col}}}"
            if self._settings["inline_gradients"]:
                return rf"\left(\partial L/\partial {entry}\right)"
            return rf"\frac{{\partial L}}{{\partial {entry}}}"
        base = self.parenthesize(parent, PRECEDENCE["Atom"], strict=True)
        return f"{{{base}}}_{{{row}{separator}{col}}}"

    # --- special matrices -----------------------------------------------------------------------

    def _print_OneMatrix(self, expr):
        return "1" if expr.shape == (1, 1) else r"\mathbf{1}"

    def _print_Identity(self, expr):
        return "1" if expr.shape == (1, 1) else r"I"

    def _print_Transpose(self, expr):
        base = self.parenthesize(expr.arg, PRECEDENCE["Pow"], strict=True)
        # a base with its own superscript (A^{-1}, and (A B)^{-1}, which starts with a parenthesis
        # too) is wrapped: TeX refuses a double superscript
        if "^" in base and not (base.startswith(r"\left(") and base.endswith(r"\right)")):
            base = rf"\left({base}\right)"
        return rf"{base}^{{\top}}"

    # --- products and sums ----------------------------------------------------------------------

    def _print_MatMul(self, expr):
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
        # SymPy's _print_MatMul, with the sign read off the coefficient
        level = _precedence(expr)

        def factor(arg):
            if isinstance(arg, Mul) and not isinstance(arg, MatMul):
                return self._print(arg)
            return self.parenthesize(arg, level, False)
        args = list(expr.args)
        if not _negative_coefficient(expr):
            return " ".join(map(factor, args))
        args = args[1:] if args[0] == -1 else [-args[0], *args[1:]]
        return "- " + " ".join(map(factor, args))

    def parenthesize(self, item, level, is_neg=False, strict=False) -> str:
        if not isinstance(item, MatMul):
            return super().parenthesize(item, level, is_neg, strict)
        prec = _precedence(item)
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
        # H(0) = 0 for ReLU's derivative: an Iverson bracket says exactly that.
        return rf"\left[{self._print(expr.args[0])} > 0\right]"

    def _print_Blocks(self, expr):
        rows = r" \\ ".join(" & ".join(self._print(block) for block in row) for row in expr.grid)
        return rf"\begin{{bmatrix}} {rows} \end{{bmatrix}}"

    def _print_Entries(self, expr):
        rows = r" \\ ".join(" & ".join(self._print(e) for e in row) for row in expr.rows_of_entries)
        return rf"\begin{{bmatrix}} {rows} \end{{bmatrix}}"

    def _print_MatrixSlice(self, expr):
        # 1-based and inclusive, like the entries: rows 0:N of Python are rows 1 to N on the board
        parent = self._print(expr.parent)
        if not (isinstance(expr.parent, MatrixSymbol) and not isinstance(expr.parent, Adjoint)):
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

    def _print_Elementwise(self, expr):
        return rf"{self._function_name(expr)}\left({self._print(expr.arg)}\right)"

    def _function_name(self, expr) -> str:
        cls = type(expr)
        original = getattr(cls, "of", None)
        base = _FUNCTION_NAMES.get((original or cls).__name__, rf"\operatorname{{{latex_text((original or cls).__name__)}}}")
        params = getattr(expr, "params", ())
        if params:
            base += "_{{{}}}".format(", ".join(self._parameter(p) for p in params))
        return base + ("'" if original is not None else "")

    def _print_Function(self, expr, exp=None):
        name = _FUNCTION_NAMES.get(type(expr).__name__)
        if name is None or type(expr).__module__ != fn.__name__:
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


def _is_atomic(expr) -> bool:
    return expr.is_Atom or isinstance(expr, MatrixSymbol)


def latex(expr, **settings) -> str:
    """``expr`` in derive's LaTeX notation (math mode, no delimiters)."""
    if expr is None:
        return "1"
    if expr == S.One or isinstance(expr, Identity) and expr.shape == (1, 1):
        return "1"
    return DeriveLatexPrinter(settings).doprint(expr)


# =================================================================================================
# NumPy: the printer behind derive.codegen.to_numpy
# =================================================================================================
#
# Expressions come from a Derivation in compact form: Intermediate symbols (Z_1) are cached forward
# values, Adjoint symbols (dL/dZ_1) are upstream gradients computed earlier in the backward pass.
# The printer never differentiates; it only chooses a cheap, numerically stable NumPy spelling.

# Names the generated module defines or imports itself; a user's symbol never takes one of them.
RESERVED = {
    "np", "scipy", "params", "batch", "cache", "loss", "grads", "rng", "dims", "forward", "backward",
    "loss_and_grads", "example_inputs", "check_gradients", "softmax", "log_softmax",
    "binary_cross_entropy", "dtype", "ndtr", "blockwise", "THREADS", "BLOCK", "ThreadPoolExecutor", "os",
    "silu_prime", "gelu", "gelu_prime", "PARAMS", "BATCH", "SHAPES", "DEFAULT_DIMS", "main", "check_targets",
}

_UNSAFE = re.compile(r"[^0-9A-Za-z_]")


def _clean(name: str) -> str | None:
    """``name`` itself when it is a plain, harmless Python identifier; None when it must be mangled."""
    if (name.isascii() and name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")
            and name not in RESERVED and not hasattr(builtins, name)):
        return name
    return None


def safe_comment(text: str) -> str:
    """``text`` reduced to one line of printable ASCII, so it cannot leave a comment in generated code."""
    return "".join(c if " " <= c <= "~" else "?" for c in str(text))


class Identifiers:
    """Python identifiers for the user's names: ``Z_1`` stays ``Z_1``, ``dL/dZ_1`` becomes ``dZ_1``.

    Names that are not identifiers, are keywords or builtins, or start with an underscore
    (``x; import os``, ``class``, ``__import__``) are mangled (``v_x__import_os``); every name gets
    one identifier and no two names share one.
    """

    def __init__(self):
        self._by_key: dict[tuple[str, str], str] = {}
        self._taken: set[str] = set(RESERVED)

    def __call__(self, kind: str, name: str) -> str:
        key = (kind, str(name))
        if key not in self._by_key:
            self._by_key[key] = self._fresh(kind, str(name))
        return self._by_key[key]

    def _fresh(self, kind: str, name: str) -> str:
        base = _clean(name) or "v_" + _UNSAFE.sub("_", name).strip("_")
        if kind == "adjoint":
            base = "d" + (_clean(name) or _UNSAFE.sub("_", name).strip("_") or "v")
        candidate, k = base, 1
        while candidate in self._taken or keyword.iskeyword(candidate) or hasattr(builtins, candidate):
            k += 1
            candidate = f"{base}_{k}"
        self._taken.add(candidate)
        return candidate


# Module-level helpers the generated code calls; only those used are written into the module.
NUMPY_HELPERS = {
    "softmax": '''def softmax(z, axis):
    """exp(z) normalised along axis, with the maximum subtracted first (no overflow)."""
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)''',
    "log_softmax": '''def log_softmax(z, axis):
    """z - log sum exp z along axis, with the maximum subtracted first (finite for huge logits)."""
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))''',
    "silu_prime": '''def silu_prime(a):
    """The derivative of a sigmoid(a): s (1 + a (1 - s)) with s = sigmoid(a) (tanh form, no overflow)."""
    s = 0.5 + 0.5 * np.tanh(0.5 * a)
    return s * (1 + a * (1 - s))''',
    "blockwise": '''def blockwise(kernel, out, *arrays):
    """kernel(out, *arrays) block by block, BLOCK entries at a time, in THREADS threads: a block and its
    temporaries stay in the CPU cache, and NumPy releases the GIL inside ufuncs, so a chain of ufuncs
    runs near the speed of one fused kernel. Whole arrays unless all are C-contiguous of one shape."""
    arrays = (out, *arrays)
    if out.size <= BLOCK or not all(a.shape == out.shape and a.flags.c_contiguous for a in arrays):
        kernel(*arrays)
        return out
    flat = [a.reshape(-1) for a in arrays]  # views, so the kernel writes into out
    starts = range(0, out.size, BLOCK)

    def run(start):
        kernel(*(a[start:start + BLOCK] for a in flat))
    if THREADS > 1:
        list(_pool().map(run, starts))
    else:
        for start in starts:
            run(start)
    return out


def _pool():
    """This process's pool of THREADS threads: a forked child has none of its parent's threads, and a
    pool of another size is shut down (its threads end)."""
    key = (os.getpid(), THREADS)
    pool = _pools.get(key)
    if pool is None:
        for other in [k for k in _pools if k != key]:
            _pools.pop(other).shutdown(wait=False)
        pool = _pools.setdefault(key, ThreadPoolExecutor(THREADS))  # atomic: one pool wins a race
    return pool''',
    "ndtr": '''def ndtr(x, out):
    """Phi(x), the standard normal distribution function, into out: SciPy's in float64; in float32 the
    Chebyshev fit of erfc of Numerical Recipes (relative error 1.2e-7 before rounding; in float32 under
    1e-5 down to x = -12, as x^2 / 2 is rounded in exp(-x^2 / 2))."""
    if out.dtype != np.float32:
        out[...] = scipy.special.ndtr(x)
        return out
    a = np.abs(x, dtype=np.float32)
    t = a * 0.3535533905932738  # |x| / sqrt 2 / 2
    t += 1
    np.reciprocal(t, out=t)
    np.multiply(t, 0.17087277, out=out)
    for coefficient in (-0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418,
                        0.37409196, 1.00002368):
        out += coefficient
        out *= t
    out -= 1.26551223
    np.square(a, out=a)
    a *= 0.5  # exact: x^2 / 2 rounded once
    out -= a
    np.exp(out, out=out)
    out *= t
    out *= 0.5  # q = Phi(-|x|) = erfc(|x| / sqrt 2) / 2
    np.greater_equal(x, 0, out=a)  # Phi(x) = q + [x >= 0] (1 - 2 q): q itself, exact, for x < 0
    np.multiply(out, -2, out=t)
    t += 1
    t *= a
    out += t
    return out''',
    "gelu": '''def gelu(z):
    """z Phi(z), Phi the standard normal distribution function (the exact GELU), block by block."""
    return blockwise(_gelu_block, np.empty_like(z, dtype=np.result_type(z, np.float32)), z)


def _gelu_block(out, z):
    ndtr(z, out)
    out *= z''',
    "gelu_prime": '''def gelu_prime(z, times=None, value=None):
    """Phi(z) + z phi(z), phi the standard normal density: the derivative of z Phi(z), block by block;
    with times, the product times * gelu_prime(z) is made in times itself; with value = gelu(z) from
    the forward pass, Phi(z) is value / z (no erf computed again)."""
    if times is None:
        return blockwise(_gelu_prime_block, np.empty_like(z, dtype=np.result_type(z, np.float32)), z)
    if value is None:
        return blockwise(_times_gelu_prime_block, times, z)
    return blockwise(_times_gelu_prime_of_value_block, times, z, value)


def _gelu_prime_block(out, z):
    ndtr(z, out)
    out += _z_density(z)


def _times_gelu_prime_block(times, z):
    slope = np.empty_like(times)
    _gelu_prime_block(slope, z)
    times *= slope


def _times_gelu_prime_of_value_block(times, z, value):
    with np.errstate(divide="ignore", invalid="ignore"):
        cdf = value / z
    # within 2**-20 of 0, value / z loses digits (0 / 0 at 0): there Phi(z) = 1/2 + z phi(0) to rounding
    slope = np.where(np.abs(z) < 2.0 ** -20, 0.5 + 0.3989422804014327 * z, cdf)
    slope += _z_density(z)
    times *= slope


def _z_density(z):
    """z phi(z), phi the standard normal density."""
    density = np.square(z)
    density *= -0.5
    np.exp(density, out=density)
    density *= z
    density *= 0.3989422804014327
    return density''',
    "binary_cross_entropy": '''def binary_cross_entropy(p, y):
    """Entries of -(y log p + (1 - y) log(1 - p)), p clipped away from 0 and 1 (finite log)."""
    eps = np.finfo(p.dtype).eps
    p = np.clip(p, eps, 1 - eps)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))''',
    "check_targets": '''def check_targets(y, axis, name):
    """Refuse targets y unless each example's target (summed along axis) is 1, as the cross-entropy was
    declared with targets_sum_to_one=True: its gradient softmax(z) - y holds only then."""
    sums = np.sum(y, axis=axis)
    tolerance = np.sqrt(np.finfo(np.result_type(y, np.float32)).eps)
    bad = np.flatnonzero(~(np.abs(sums - 1) <= tolerance))
    if bad.size:
        k = int(bad[0])
        raise ValueError(f"the targets {name} must sum to 1 for each example (the cross-entropy was declared "
                         f"with targets_sum_to_one=True), but example {k} sums to {float(sums[k])!r}")''',
}

# What a helper calls in turn ("scipy": the module imports scipy.special; "threads": it imports
# ThreadPoolExecutor and sets THREADS and BLOCK).
HELPER_NEEDS = {"gelu": ("ndtr", "blockwise"), "gelu_prime": ("ndtr", "blockwise"), "ndtr": ("scipy",),
                "blockwise": ("threads",)}


def helper_closure(names) -> set[str]:
    """``names`` and every helper (or import) they need, directly or through another helper."""
    found, pending = set(), list(names)
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(HELPER_NEEDS.get(name, ()))
    return found

# G * f'(A) made in G's own array with no temporary f'(A) of G's dtype: (operator, code, code when
# the forward pass has f(A) cached as {value}), {target} G's name. A boolean mask multiplies in place
# and keeps G's dtype; GELU's slope reads Phi(A) off the cached A Phi(A) instead of computing erf again.
TIMES_IN_PLACE_FORMS = {
    "relu_prime": ("*=", "{a} > 0", None),
    "gelu_prime": ("=", "gelu_prime({a}, times={target})", "gelu_prime({a}, times={target}, value={value})"),
}

# f(A) and f'(A) for the elementwise functions, as format strings of the argument {a} and the
# parameter {p0}. Each keeps the argument's dtype (Python floats do not promote float32 arrays).
ELEMENTWISE_FORMS = {
    "relu": "np.maximum({a}, 0)",
    "relu_prime": "({a} > 0).astype({a}.dtype)",
    "leaky_relu": "np.where({a} > 0, {a}, {p0} * {a})",
    "leaky_relu_prime": "np.where({a} > 0, 1.0, {p0}).astype({a}.dtype)",
    "elu": "np.where({a} > 0, {a}, {p0} * np.expm1(np.minimum({a}, 0)))",
    "elu_prime": "np.where({a} > 0, 1, {p0} * np.exp(np.minimum({a}, 0)))",
    "sigmoid": "(0.5 + 0.5 * np.tanh(0.5 * {a}))",
    "sigmoid_prime": "(0.25 - 0.25 * np.tanh(0.5 * {a}) ** 2)",
    "gelu": "gelu({a})",
    "gelu_prime": "gelu_prime({a})",
    "silu": "({a} * (0.5 + 0.5 * np.tanh(0.5 * {a})))",
    "silu_prime": "silu_prime({a})",
    "softplus": "np.logaddexp(0, {a})",
    "softplus_prime": "(0.5 + 0.5 * np.tanh(0.5 * {a}))",
    "tanh": "np.tanh({a})",
    "tanh_prime": "(1 - np.tanh({a}) ** 2)",
    "exp": "np.exp({a})",
    "exp_prime": "np.exp({a})",
    "log": "np.log({a})",
    "log_prime": "(1 / {a})",
}

# Cost of a matrix product in the association search when a dimension is a symbol (N, H ...).
_SYMBOLIC_DIM = 1000


def _size(dim) -> int:
    try:
        return int(dim)
    except TypeError:
        return _SYMBOLIC_DIM


@dataclass(frozen=True)
class Layout:
    """How a printed array's shape differs from its matrix's declared shape.

    ``rows``: the array has one row standing for all of them (every row equal), so it broadcasts
    along the rows; ``cols`` likewise; ``scalar``: it is a 0-d value (a number, ``t[0, 0]``) standing
    for a matrix with every entry equal. An axis declared of size 1 is never flagged.
    """

    rows: bool = False
    cols: bool = False
    scalar: bool = False

    @classmethod
    def of(cls, shape, rows: bool = False, cols: bool = False, scalar: bool = False) -> Layout:
        return cls(bool((rows or scalar) and shape[0] != 1), bool((cols or scalar) and shape[1] != 1), scalar)

    @property
    def full(self) -> bool:
        """The array has the declared shape."""
        return not (self.rows or self.cols or self.scalar)

    def transposed(self) -> Layout:
        return Layout(self.cols, self.rows, self.scalar)


FULL = Layout()


def _combined(layouts) -> Layout:
    """The layout of an elementwise combination (a sum, a Hadamard product) of equally declared arrays."""
    layouts = list(layouts)
    return Layout(all(lay.rows for lay in layouts), all(lay.cols for lay in layouts),
                  all(lay.scalar for lay in layouts))


class _Operand:
    """A printed factor of a matrix chain: its declared shape, its layout, whether it is a ones-matrix."""

    def __init__(self, code: str, rows, cols, layout: Layout = FULL, ones: bool = False, atomic: bool = True):
        self.code, self.rows, self.cols, self.layout, self.ones, self.atomic = code, rows, cols, layout, ones, atomic

    def wrapped(self) -> str:
        return self.code if self.atomic else f"({self.code})"


class DeriveNumPyPrinter(NumPyPrinter):
    """NumPy code for derive's expressions: ``@``, ``.T``, column sums, stable activations and losses.

    ``identifiers`` gives Python names for symbols (see :class:`Identifiers`); ``definitions`` maps
    a named quantity to its definition, so a binary cross-entropy on ``p = sigmoid(z)`` can be
    computed from the logits ``z``. ``helpers`` collects the NUMPY_HELPERS the printed code calls.

    Every printed matrix has a :class:`Layout` (:meth:`layout`): a ones-matrix product ``1 b`` prints
    as the row ``b``, a sum of such rows stays a row, a 1 x 1 identity or ``t[0, 0] I_1`` prints as a
    scalar. Only the node types in ``_READS_LAYOUTS`` receive such arrays and account for them (a
    product whose shared axis is broadcast multiplies by a sum instead); every other node (trace,
    inverse, softmax, losses, SymPy's own printers) receives its operands at their declared shapes,
    and :meth:`full` gives a statement's value at its declared shape.
    """

    # Nodes whose printers read their operands' layouts: elementwise combinations broadcast, a
    # product handles a broadcast factor, an entry is read off a broadcast array.
    _READS_LAYOUTS = (MatMul, MatAdd, Transpose, HadamardProduct, HadamardPower, MatrixElement, Elementwise)

    def __init__(self, identifiers: Identifiers | None = None, definitions: Mapping | None = None, settings=None,
                 dtype: str | None = None):
        super().__init__(settings or {})
        self.identifiers = identifiers or Identifiers()
        self.definitions = dict(definitions or {})
        self.helpers: set[str] = set()
        self._placeholders: dict[Symbol, str] = {}
        # the name of a variable holding the parameters' dtype: constant matrices (I) take it, so that
        # float32 stays float32 through the products they enter; None: NumPy's default, float64
        self.dtype = dtype
        self.uses_dtype = False
        self._layouts: dict[Basic, Layout] = {}   # the printed matrices that are not at their declared shape
        self._readers: list[bool] = []            # whether each node being printed reads its operands' layouts

    # --- layouts -----------------------------------------------------------------------------

    def _print(self, expr, **kwargs):
        if isinstance(expr, Expr) and not isinstance(expr, (MatrixExpr, Rational)) and expr.is_number:
            value = complex(expr)
            if value.imag == 0:
                return repr(value.real)  # a Python float: never promotes a float32 array
        parent_reads_layouts = self._readers[-1] if self._readers else True
        self._readers.append(isinstance(expr, self._READS_LAYOUTS))
        try:
            # an activation prints by its record even where SymPy has a printer of that name (tanh, exp)
            code = self._print_Elementwise(expr) if isinstance(expr, Elementwise) else super()._print(expr, **kwargs)
        finally:
            self._readers.pop()
        if not parent_reads_layouts and isinstance(expr, MatrixExpr) and not self.layout(expr).full:
            return self._broadcast(expr, code)
        return code

    def layout(self, expr) -> Layout:
        """The layout of the array this printer printed for ``expr`` (declared, if not printed yet)."""
        return self._layouts.get(expr, FULL)

    def layout_of(self, expr) -> Layout:
        """The layout of the array printed for ``expr``, printing it."""
        self._print(expr)
        return self.layout(expr)

    def _laid_out(self, expr, code: str, layout: Layout) -> str:
        if layout.full:
            self._layouts.pop(expr, None)
        else:
            self._layouts[expr] = layout
        return code

    def full(self, expr, writable: bool = False) -> str:
        """The code of ``expr`` as an array of its declared shape (the value of a statement); with
        ``writable``, never a read-only view (a gradient handed to the caller)."""
        code = self._print(expr)
        if not isinstance(expr, MatrixExpr) or self.layout(expr).full:
            return code
        if writable and not self.layout(expr).scalar:
            return f"{self._broadcast(expr, code)}.copy()"
        return self._broadcast(expr, code)

    def _broadcast(self, expr, code: str) -> str:
        """``code``, printed with a smaller layout, as an array of ``expr``'s declared shape: a view of
        the row (or column) repeated, or for a 0-d value a new array of it."""
        shape = f"({self._print(expr.rows)}, {self._print(expr.cols)})"
        if not self.layout(expr).scalar:
            return f"np.broadcast_to({code}, {shape})"
        if expr.atoms(MatrixSymbol) or self.dtype is None:
            return f"np.full({shape}, {code})"  # the dtype of the value
        # a constant (a Python number): made in the parameters' dtype, so a constant gradient keeps float32
        self.uses_dtype = True
        return f"np.full({shape}, {code}, dtype={self.dtype})"

    # --- names and numbers -------------------------------------------------------------------

    def _module_format(self, fqn, register=True):
        if fqn.startswith("numpy."):
            return "np." + fqn[len("numpy."):]
        if fqn.startswith("scipy.special."):
            self.helpers.add("scipy")
        return fqn

    def _print_Pow(self, expr, rational=False):
        base, power = expr.args
        if isinstance(expr.base, MatrixExpr) or not power.is_Integer:
            return super()._print_Pow(expr, rational)
        if power == -1:
            return f"1/{self._scalar(base)}"
        return f"{self._scalar(base)}**{self._scalar(power)}"

    def _print_Symbol(self, expr):
        if expr in self._placeholders:
            return self._placeholders[expr]
        return self.identifiers("dim", expr.name)

    def _print_MatrixSymbol(self, expr):
        return self.identifiers("value", expr.name)

    def _print_Intermediate(self, expr):
        return self.identifiers("value", expr.name)

    def _print_Adjoint(self, expr):
        return self.identifiers("adjoint", expr.name)

    def _print_Identity(self, expr):
        if expr.rows == 1:
            # a 1 x 1 factor multiplies by broadcasting (see _pair); a scalar of the parameters' dtype
            if self.dtype is None:
                return self._laid_out(expr, "1", Layout(scalar=True))
            self.uses_dtype = True
            return self._laid_out(expr, f"{self.dtype}.type(1)", Layout(scalar=True))
        return self._eye(expr.rows)

    def _eye(self, size) -> str:
        if self.dtype is None:
            return f"np.eye({self._print(size)})"
        self.uses_dtype = True
        return f"np.eye({self._print(size)}, dtype={self.dtype})"

    def _print_OneMatrix(self, expr):
        # stands in a sum or Hadamard product, where it broadcasts
        return self._laid_out(expr, "1", Layout.of(expr.shape, scalar=True))

    def _print_ZeroMatrix(self, expr):
        return self._laid_out(expr, "0", Layout.of(expr.shape, scalar=True))

    # --- linear algebra ----------------------------------------------------------------------

    def _atomic(self, expr) -> bool:
        # names, numbers and function calls need no parentheses around them
        if isinstance(expr, Transpose):
            return self._atomic(expr.arg)
        return isinstance(expr, (MatrixSymbol, OneMatrix, Identity, ZeroMatrix, Symbol, Integer, Elementwise,
                                 softmax, log_softmax, Blocks, Entries, MatrixSlice))

    def _wrap(self, expr) -> str:
        code = self._print(expr)
        return code if self._atomic(expr) else f"({code})"

    def _print_Transpose(self, expr):
        code, layout = self._print(expr.arg), self.layout(expr.arg)
        if expr.shape == (1, 1) or layout.scalar:
            # itself; and the 1 x 1 identity prints as 1, which has no .T
            return self._laid_out(expr, code, layout.transposed())
        wrapped = code if self._atomic(expr.arg) else f"({code})"
        return self._laid_out(expr, f"{wrapped}.T", layout.transposed())

    def _print_MatAdd(self, expr):
        parts, layouts = [], []
        # broadcast terms (a bias 1 b) last: the sum then starts from a full-size array
        # and subtracted terms after added ones: 1 - f rather than -f + 1
        for term in sorted(expr.args, key=lambda t: (_is_broadcast(t) and not isinstance(t, OneMatrix),
                                                      _split_coeff(t)[0] == -1)):
            coeff, rest = _split_coeff(term)
            if coeff == -1:
                parts.append(("-", self._print_term(rest)))
                layouts.append(self.layout(rest))
            else:
                parts.append(("+", self._print_term(term)))
                layouts.append(self.layout(term))
        first_sign, first = parts[0]
        code = ("-" if first_sign == "-" else "") + first
        for sign, part in parts[1:]:
            code += f" {sign} {part}"
        return self._laid_out(expr, code, _combined(layouts))

    def _print_term(self, term) -> str:
        return self._wrap(term) if isinstance(term, MatAdd) else self._print(term)

    def _print_MatMul(self, expr):
        coeff, _ = _split_coeff(expr)
        matrices = [a for a in expr.args if isinstance(a, MatrixExpr) and not isinstance(a, Identity)]
        if not matrices:
            # c I: the gradient of a trace's argument; it stays a matrix, for the products it enters
            identity = next((a for a in expr.args if isinstance(a, Identity)), None)
            if identity is None:
                return self._print(coeff) if coeff != 1 else "1"
            eye = self._print(identity)
            code = eye if coeff == 1 else f"{self._scalar(coeff)} * {eye}"
            return self._laid_out(expr, code, self.layout(identity))
        product = self._chain([self._operand(m) for m in matrices])
        if coeff == 1:
            code = product.code
        elif coeff == -1:
            code = f"-{product.wrapped()}"
        else:
            code = f"{self._scalar(coeff)} * {product.wrapped()}"
        return self._laid_out(expr, code, product.layout)

    def _scalar(self, coeff) -> str:
        code = self._print(coeff)
        return code if re.fullmatch(r"[\w.]+", code) else f"({code})"

    def _operand(self, matrix) -> _Operand:
        code = self._print(matrix)
        return _Operand(code, matrix.rows, matrix.cols, self.layout(matrix), isinstance(matrix, OneMatrix),
                        self._atomic(matrix))

    def _chain(self, operands: list[_Operand]) -> _Operand:
        """The cheapest association of a product chain (dynamic programming over split points)."""
        n = len(operands)
        best: dict[tuple[int, int], tuple[int, _Operand]] = {(i, i): (0, operands[i]) for i in range(n)}
        for length in range(2, n + 1):
            for i in range(n - length + 1):
                j = i + length - 1
                options = []
                for k in range(i, j):
                    (cost_l, left), (cost_r, right) = best[(i, k)], best[(k + 1, j)]
                    cost, joined = self._pair(left, right)
                    options.append((cost_l + cost_r + cost, k, joined))
                cost, _, joined = min(options, key=lambda o: (o[0], o[1]))
                best[(i, j)] = (cost, joined)
        return best[(0, n - 1)][1]

    def _pair(self, left: _Operand, right: _Operand) -> tuple[int, _Operand]:
        """One product, with ones-matrices read as sums (1^T G sums G's rows, G 1 its columns) and
        broadcast factors read as what they stand for (the rows of a row-broadcast G are all equal,
        so 1^T G is its row times their count)."""
        rows, cols, inner = left.rows, right.cols, left.cols
        if left.ones and right.ones:
            return 0, _Operand(self._scalar(inner), rows, cols, Layout.of((rows, cols), scalar=True))
        if left.ones:
            # 1_(m x n) G: every row of the result is the column sum of G (broadcast when m > 1)
            code, layout, atomic = self._sum_rows(right)
            return (_size(right.rows) * _size(right.cols),
                    _Operand(code, rows, cols, Layout.of((rows, cols), True, layout.cols, layout.scalar), atomic=atomic))
        if right.ones:
            code, layout, atomic = self._sum_cols(left)
            return (_size(left.rows) * _size(left.cols),
                    _Operand(code, rows, cols, Layout.of((rows, cols), layout.rows, True, layout.scalar), atomic=atomic))
        cost = _size(left.rows) * _size(left.cols) * _size(right.cols)
        outer = (left.layout.rows, right.layout.cols)
        if inner == 1 and ((left.rows, left.cols) == (1, 1) or (right.rows, right.cols) == (1, 1)
                           or left.layout.scalar or right.layout.scalar):
            # a product with a 1 x 1 factor (or a 0-d one) is a broadcast product, and takes the 1 x 1
            # identity printed as 1
            layout = Layout.of((rows, cols), *outer, left.layout.scalar and right.layout.scalar)
            return cost, _Operand(f"{left.wrapped()} * {right.wrapped()}", rows, cols, layout, atomic=False)
        if inner != 1 and left.layout.cols and right.layout.rows:
            # every entry of each row of left is equal, and of each column of right: inner terms alike
            layout = Layout.of((rows, cols), *outer, left.layout.scalar and right.layout.scalar)
            code = f"{self._scalar(inner)} * {left.wrapped()} * {right.wrapped()}"
            return cost, _Operand(code, rows, cols, layout, atomic=False)
        if inner != 1 and left.layout.cols:
            # L 1 l^T-like: each row of left is one value, times the column sums of right
            code = f"{left.wrapped()} * {right.wrapped()}.sum(axis=0, keepdims=True)"
            return cost, _Operand(code, rows, cols, Layout.of((rows, cols), *outer), atomic=False)
        if inner != 1 and right.layout.rows:
            code = f"{left.wrapped()}.sum(axis=1, keepdims=True) * {right.wrapped()}"
            return cost, _Operand(code, rows, cols, Layout.of((rows, cols), *outer), atomic=False)
        return cost, _Operand(f"{left.wrapped()} @ {right.wrapped()}", rows, cols, Layout.of((rows, cols), *outer),
                              atomic=False)

    def _sum_rows(self, operand: _Operand) -> tuple[str, Layout, bool]:
        """The column sums of ``operand`` as a row: (code, its layout, atomic)."""
        if operand.rows == 1:
            return operand.code, operand.layout, operand.atomic
        if operand.layout.rows:
            # its rows are all equal: their sum is the one row times their number
            return f"{self._scalar(operand.rows)} * {operand.wrapped()}", operand.layout, False
        return f"{operand.wrapped()}.sum(axis=0, keepdims=True)", operand.layout, False

    def _sum_cols(self, operand: _Operand) -> tuple[str, Layout, bool]:
        """The row sums of ``operand`` as a column: (code, its layout, atomic)."""
        if operand.cols == 1:
            return operand.code, operand.layout, operand.atomic
        if operand.layout.cols:
            return f"{self._scalar(operand.cols)} * {operand.wrapped()}", operand.layout, False
        return f"{operand.wrapped()}.sum(axis=1, keepdims=True)", operand.layout, False

    def _print_HadamardProduct(self, expr):
        factors, layouts = [], []
        # ones (and the 1 x 1 identity) are the unit of the Hadamard product; a larger I is a mask
        args = [a for a in expr.args if not isinstance(a, OneMatrix) and not (isinstance(a, Identity) and a.rows == 1)]
        for arg in args or [expr.args[0]]:
            if isinstance(arg, relu.prime()) and self._atomic(arg.arg):
                factors.append(f"({self._print(arg.arg)} > 0)")  # a boolean mask multiplies in one pass
                layouts.append(self.layout(arg.arg))
            else:
                factors.append(self._wrap(arg))
                layouts.append(self.layout(arg))
        return self._laid_out(expr, " * ".join(factors), _combined(layouts))

    def _print_HadamardPower(self, expr):
        base, power = expr.args
        if power == -1:
            code = f"1 / {self._wrap(base)}"
        else:
            code = f"{self._wrap(base)} ** {self._scalar(power)}"
        return self._laid_out(expr, code, self.layout(base))

    def _print_MatrixElement(self, expr):
        matrix, i, j = expr.args
        code, layout = self._wrap(matrix), self.layout(matrix)
        if layout.scalar:
            return code  # every entry is the value itself
        # along a broadcast axis every index reads the one row (or column) printed
        return f"{code}[{self._print(S.Zero if layout.rows else i)}, {self._print(S.Zero if layout.cols else j)}]"

    def _print_MatrixSlice(self, expr):
        parent, rows, cols = expr.args
        return f"{self._wrap(parent)}[{self._span(rows)}, {self._span(cols)}]"

    def _span(self, span) -> str:
        start, stop, _ = span
        return f"{'' if start == 0 else self._print(start)}:{self._print(stop)}"

    def _print_Blocks(self, expr):
        rows = ", ".join("[" + ", ".join(self._block(b) for b in row) + "]" for row in expr.grid)
        return f"np.block([{rows}])"

    def _block(self, block) -> str:
        """A block as a full 2-d array: np.block cannot broadcast, and constants print as scalars elsewhere."""
        shape = f"({self._print(block.rows)}, {self._print(block.cols)})"
        if isinstance(block, (OneMatrix, ZeroMatrix)):
            return f"np.{'ones' if isinstance(block, OneMatrix) else 'zeros'}({shape}{self._dtype_argument()})"
        if isinstance(block, Identity):
            return self._eye(block.rows)
        if isinstance(block, MatrixSymbol):
            return self._print(block)
        return f"np.broadcast_to({self._print(block)}, {shape})"

    def _dtype_argument(self) -> str:
        if self.dtype is None:
            return ""
        self.uses_dtype = True
        return f", dtype={self.dtype}"

    def _print_Entries(self, expr):
        rows = ", ".join("[" + ", ".join(self._print(e) for e in row) + "]" for row in expr.rows_of_entries)
        return f"np.array([{rows}]{self._dtype_argument() or ', dtype=float'})"

    def _print_Trace(self, expr):
        return f"np.trace({self._print(expr.arg)})"

    def _print_Determinant(self, expr):
        return f"np.linalg.det({self._print(expr.arg)})"

    def _print_Inverse(self, expr):
        return f"np.linalg.inv({self._print(expr.arg)})"

    # --- elementwise functions, softmax --------------------------------------------------------

    def _print_Elementwise(self, expr):
        # f of a broadcast row is the broadcast row of f: the layout passes through
        name = type(expr).__name__
        form = ELEMENTWISE_FORMS.get(name)
        argument, layout = self._argument(expr.arg)
        if form is None:
            return self._laid_out(expr, self._generic_elementwise(expr, argument), layout)
        self._use_helpers(form)
        params = {f"p{k}": self._scalar(p) for k, p in enumerate(expr.params)}
        # arguments are names in practice (the deriver names every activation's input)
        return self._laid_out(expr, form.format(a=argument, **params), layout)

    def _argument(self, arg) -> tuple[str, Layout]:
        """An elementwise function's argument and its layout; an array (the forms read its dtype), so
        a 0-d value is made the array it stands for."""
        code = self._wrap(arg)
        if self.layout(arg).scalar:
            return self.full(arg), FULL
        return code, self.layout(arg)

    def times_in_place(self, target: str, factor) -> tuple[str, str] | None:
        """(operator, code) that multiply the array ``target`` by ``factor`` in place with no temporary
        of its size and dtype (``dZ *= Z > 0``, ``dZ = gelu_prime(Z, times=dZ)``); None if none can."""
        forms = TIMES_IN_PLACE_FORMS.get(type(factor).__name__)
        if forms is None or not self._atomic(factor.arg) or not self.layout_of(factor.arg).full:
            return None
        op, form, with_value = forms
        value = self._cached_value(factor) if with_value else None
        form = form if value is None else with_value
        self._use_helpers(form)
        return op, form.format(a=self._print(factor.arg), target=target, value=value)

    def _cached_value(self, prime) -> str | None:
        """The name of the forward quantity defined as f(A), for the derivative f'(A), if there is one."""
        for symbol, definition in self.definitions.items():
            if (type(definition) is prime.of and definition.arg == prime.arg
                    and definition.params == prime.params):
                return self._print(symbol)
        return None

    def _use_helpers(self, form: str) -> None:
        calls = [h for h in re.findall(r"(?<![\w.])(\w+)\(", form) if h in NUMPY_HELPERS]
        self.helpers.update(helper_closure(calls))
        if "scipy." in form:
            self.helpers.add("scipy")

    def _generic_elementwise(self, expr, argument: str):
        """f(A) for an elementwise function without a hand-written form: the scalar f, printed."""
        placeholder = Symbol("a")
        body = expr.scalar(placeholder, *expr.params)
        self._placeholders[placeholder] = argument
        try:
            return f"({self._print(body)})"
        finally:
            del self._placeholders[placeholder]

    def _print_softmax(self, expr):
        self.helpers.add("softmax")
        return f"softmax({self._print(expr.arg)}, axis={expr.axis})"

    def _print_log_softmax(self, expr):
        self.helpers.add("log_softmax")
        return f"log_softmax({self._print(expr.arg)}, axis={expr.axis})"

    # --- losses --------------------------------------------------------------------------------

    def _print_SquaredError(self, expr: SquaredError):
        residual = f"{self._wrap(expr.prediction)} - {self._wrap(expr.target)}"
        return f"{self._scalar(expr.scale)} * np.sum(({residual}) ** 2)"

    def _print_BinaryCrossEntropy(self, expr: BinaryCrossEntropy):
        logits = self._logits_of(expr.prediction)
        y = self._wrap(expr.target)
        if logits is not None:
            # -(y log s(z) + (1 - y) log(1 - s(z))) = softplus(z) - y z: finite for any logits
            z = self._wrap(logits)
            return f"{self._scalar(expr.scale)} * np.sum(np.logaddexp(0, {z}) - {y} * {z})"
        self.helpers.add("binary_cross_entropy")
        return f"{self._scalar(expr.scale)} * np.sum(binary_cross_entropy({self._print(expr.prediction)}, {y}))"

    def _logits_of(self, prediction) -> Basic | None:
        definition = self.definitions.get(prediction, prediction)
        return definition.arg if isinstance(definition, sigmoid) else None

    def target_check(self, expr: SoftmaxCrossEntropy) -> str:
        """The statement refusing targets that break the declaration targets_sum_to_one=True."""
        self.helpers.add("check_targets")
        return f"check_targets({self._print(expr.target)}, axis={expr.axis}, name={str(expr.target)!r})"

    def _print_SoftmaxCrossEntropy(self, expr: SoftmaxCrossEntropy):
        self.helpers.add("log_softmax")
        log_p = f"log_softmax({self._print(expr.prediction)}, axis={expr.axis})"
        scale = "" if expr.scale == 1 else f"{self._scalar(expr.scale)} * "
        return f"-{scale}np.sum({self._wrap(expr.target)} * {log_p})"


def _is_broadcast(expr) -> bool:
    """A product that starts with a ones-column or ends with a ones-row: printed as a row or column."""
    _, rest = _split_coeff(expr)
    if not isinstance(rest, MatMul):
        return isinstance(rest, OneMatrix)
    matrices = [a for a in rest.args if isinstance(a, MatrixExpr)]
    return (isinstance(matrices[0], OneMatrix) and matrices[0].rows != 1) or (
        isinstance(matrices[-1], OneMatrix) and matrices[-1].cols != 1)


def _split_coeff(expr):
    """``c * M`` -> (c, M) for a MatMul with a scalar factor; (1, expr) otherwise."""
    if isinstance(expr, MatMul):
        scalars = [a for a in expr.args if not isinstance(a, MatrixExpr)]
        if scalars:
            coeff = 1
            for s in scalars:
                coeff *= s
            matrices = [a for a in expr.args if isinstance(a, MatrixExpr)]
            rest = matrices[0] if len(matrices) == 1 else MatMul(*matrices)
            return coeff, rest
    return 1, expr

