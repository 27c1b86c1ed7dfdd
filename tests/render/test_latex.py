"""derive's LaTeX notation: one row per node type, and names that cannot break or inject into a sheet."""

import pytest
from sympy import (
    HadamardPower,
    HadamardProduct,
    Identity,
    Inverse,
    MatMul,
    Matrix,
    MatrixSymbol,
    OneMatrix,
    Rational,
    Sum,
    Symbol,
    Trace,
    Transpose,
    exp,
    pi,
    sqrt,
)
from sympy.matrices.expressions.slice import MatrixSlice

from derive.core.activations import elu, leaky_relu, relu, sigmoid
from derive.core.activations import tanh as tanh_
from derive.core.canonical import Blocks, Entries
from derive.core.losses import bce, mse
from derive.core.softmax import softmax
from derive.core.symbols import Intermediate, LossGradient
from derive.render.latex import latex, latex_name, latex_text
from derive.render.text import text

N, H = Symbol("N", integer=True, positive=True), Symbol("H", integer=True, positive=True)
A, B = MatrixSymbol("A", N, H), MatrixSymbol("B", N, H)
G = MatrixSymbol("G", N, H)
k = Symbol("k", integer=True)

NOTATION = [
    ("adjoint", LossGradient("Z_1", N, H), r"\frac{\partial L}{\partial Z_{1}}"),
    ("adjoint of a hatted name", LossGradient("yhat", N, 1), r"\frac{\partial L}{\partial \hat{y}}"),
    ("intermediate", Intermediate("Z_1", N, H), "Z_{1}"),
    ("relu", relu(A), r"\operatorname{relu}\left(A\right)"),
    ("sigmoid", sigmoid(A), r"\sigma\left(A\right)"),
    ("tanh", tanh_(A), r"\tanh\left(A\right)"),
    ("sigmoid prime", sigmoid.prime()(A), r"\sigma'\left(A\right)"),
    ("leaky relu shows its slope", leaky_relu(A, Rational(1, 10)), r"\operatorname{leaky}_{0.1}\left(A\right)"),
    ("elu prime keeps alpha", elu.prime()(A, 1), r"\operatorname{elu}_{1}'\left(A\right)"),
    ("softmax", softmax(A), r"\operatorname{softmax}\left(A\right)"),
    ("hadamard product", HadamardProduct(A, B), r"A \odot B"),
    ("hadamard power", HadamardPower(A, 2), r"A^{\circ 2}"),
    ("one minus", OneMatrix(N, H) - A, r"\mathbf{1} - A"),
    ("ones column", OneMatrix(N, 1), r"\mathbf{1}"),
    ("1^T G sums the rows", OneMatrix(1, N) * G, r"\sum_{\text{rows}} G"),
    ("G 1 sums the columns", G * OneMatrix(H, 1), r"\sum_{\text{cols}} G"),
    ("1^T G with an adjoint", OneMatrix(1, N) * LossGradient("Z", N, H), r"\sum_{\text{rows}} \frac{\partial L}{\partial Z}"),
    ("identity of size 1", Identity(1), "1"),
    ("ones of size 1 x 1", OneMatrix(1, 1), "1"),
    ("transpose", Transpose(A), r"A^{\top}"),
    ("transpose of a product", Transpose(A * Transpose(B)), r"\left(A B^{\top}\right)^{\top}"),
    # found in review: the sheet of Trace((A B)**-2) printed (A B)^{-1}^{\top}, which TeX refuses
    ("transpose of a product's inverse", Transpose(Inverse(A * Transpose(B))),
     r"\left(\left(A B^{\top}\right)^{-1}\right)^{\top}"),
    ("entries are 1-based", A[0, 1], "{A}_{12}"),
    ("symbolic entries", A[k, 1], "{A}_{k2}"),
    ("long indices get a comma", A[k + 1, 1], "{A}_{k + 1,2}"),
    ("adjoint entry", LossGradient("Z", N, H)[0, 0], r"\left(\frac{\partial L}{\partial Z}\right)_{11}"),
    ("adjoint entry of a subscripted name", LossGradient("Z_1", N, H)[0, 1],
     r"\left(\frac{\partial L}{\partial Z_{1}}\right)_{12}"),
    ("entry of a subscripted name", MatrixSymbol("w_1", 2, 3)[0, 1], r"{\left(w_{1}\right)}_{12}"),
    ("entry of a numbered name", MatrixSymbol("W2", 2, 3)[k, 1], r"{\left(W_{2}\right)}_{k2}"),
    ("an identity factor is not printed", MatMul(Transpose(Identity(N)), A, Identity(H)), "A"),
    ("nor a transposed one", MatMul(A, Transpose(B), Transpose(Identity(N))), r"A B^{\top}"),
    ("a transposed inverse", Transpose(Inverse(A * Transpose(A))), r"\left(\left(A A^{\top}\right)^{-1}\right)^{\top}"),
    ("relu prime is the indicator", relu.prime()(A), r"\mathbb{1}\left[A > 0\right]"),
    ("the normal density is phi", sqrt(2) * k * exp(-k**2 / 2) / (2 * sqrt(pi)), r"k \phi\left(k\right)"),
    ("phi alone", exp(-k**2 / 2) / sqrt(2 * pi), r"\phi\left(k\right)"),
    ("another exponential is not phi", exp(-k**2) / sqrt(pi), r"\frac{e^{- k^{2}}}{\sqrt{\pi}}"),
    ("sums run from 1", Sum(A[k, 0], (k, 0, N - 1)), r"\sum_{k=1}^{N} {A}_{k1}"),
    ("mean squared error", mse(A, B), r"\frac{1}{N} \sum_{i,j} \left(A - B\right)_{ij}^{2}"),
    ("block matrix", Blocks(2, A, B, B, A), r"\begin{bmatrix} A & B \\ B & A \end{bmatrix}"),
    ("explicit matrix", Entries(2, A[0, 0], 0, 0, A[1, 1]), r"\begin{bmatrix} {A}_{11} & 0 \\ 0 & {A}_{22} \end{bmatrix}"),
    ("slices are 1-based and inclusive", MatrixSlice(G, (0, N), (1, H)), r"{G}_{:,\,2:H}"),
    ("slice of a gradient", MatrixSlice(LossGradient("Z", N, H), (1, 2), (0, H)),
     r"{\left(\frac{\partial L}{\partial Z}\right)}_{2:2,\,:}"),
    ("binary cross-entropy", bce(A, B),
     r"-\frac{1}{N} \sum_{i,j} \left[{B}_{ij} \log {A}_{ij} + \left(1 - {B}_{ij}\right) \log\left(1 - {A}_{ij}\right)\right]"),
]


@pytest.mark.parametrize(("expr", "expected"), [row[1:] for row in NOTATION], ids=[row[0] for row in NOTATION])
def test_notation(expr, expected):
    assert latex(expr) == expected


SPECIAL_NAMES = [
    ("x_1#%", r"\text{x\_1\#\%}"),
    ("\\input{/etc/passwd}", r"\text{\textbackslash{}input\{/etc/passwd\}}"),
    ("a&b~c^d$", r"\text{a\&b\textasciitilde{}c\textasciicircum{}d\$}"),
]


@pytest.mark.parametrize(("name", "expected"), SPECIAL_NAMES)
def test_special_names_are_escaped_text(name, expected):
    assert latex_name(name) == expected
    assert latex(MatrixSymbol(name, 2, 2)) == expected
    assert latex(LossGradient(name, 2, 2)) == rf"\frac{{\partial L}}{{\partial {expected}}}"


def test_plain_names_keep_sympy_typesetting():
    assert [latex_name(n) for n in ("W1", "Z_1", "yhat", "alpha")] == ["W_{1}", "Z_{1}", r"\hat{y}", r"\alpha"]


def test_text_escape_covers_every_special_character():
    escaped = latex_text("\\_#%&{}~^$")
    # after escaping, no special character is left bare
    stripped = (escaped.replace(r"\textbackslash{}", "").replace(r"\textasciitilde{}", "")
                .replace(r"\textasciicircum{}", ""))
    for special in "_#%&{}$":
        assert stripped.count(special) == stripped.count("\\" + special)


def test_inline_gradients_for_written_out_matrices():
    entry = LossGradient("yhat", N, 1)[1, 0]
    assert latex(entry, inline_gradients=True) == r"\left(\partial L/\partial \hat{y}\right)_{21}"
    assert latex(entry) == r"\left(\frac{\partial L}{\partial \hat{y}}\right)_{21}"


# SymPy's printers read a product's sign with could_extract_minus_sign, which negates it: for a MatMul a
# deep doit of its subtree, again at every level of the printed tree (a drawn 4-layer network's loss
# took 12 s as text, its sheet over 5 minutes). derive's printers read the sign off the coefficient and
# print what SymPy prints: id, expression, LaTeX, SymPy's str
t = MatrixSymbol("t", 1, 1)
PRODUCTS = [
    ("negative coefficient", -2 * A * B.T, r"- 2 A B^{\top}", "-2*A*B.T"),
    ("minus a product", -(A * B.T), r"- A B^{\top}", "-A*B.T"),
    ("rational coefficient", Rational(1, 2) * A * B.T, r"\left(\frac{1}{2}\right) A B^{\top}", "(1/2)*A*B.T"),
    ("difference of products", A * B.T - 2 * B * A.T, r"A B^{\top} - 2 B A^{\top}", "A*B.T - 2*B*A.T"),
    ("product of a sum", (A + B) * G.T, r"\left(A + B\right) G^{\top}", "(A + B)*G.T"),
    ("product of a negated sum", -(A + B) * G.T, r"\left(- A - B\right) G^{\top}", "(-A - B)*G.T"),
    ("a negated factor", A * (-B.T * G), r"- A B^{\top} G", "-A*B.T*G"),
    ("a scalar entry as coefficient", t[0, 0] * A * B.T, r"{t}_{11} A B^{\top}", "t[0, 0]*A*B.T"),
    ("divided by a negated entry", -A * B.T * (1 / t[0, 0]), r"- \frac{1}{{t}_{11}} A B^{\top}", "(-1/t[0, 0])*A*B.T"),
    ("a trace as coefficient", Trace(-3 * A * B.T) * A, r"- 3 \operatorname{tr}\left(A B^{\top} \right) A",
     "(-3*Trace(A*B.T))*A"),
    ("inside a Hadamard product", HadamardProduct(-2 * A * B.T, G * G.T),
     r"\left(- 2 A B^{\top}\right) \odot \left(G G^{\top}\right)", "HadamardProduct(-2*A*B.T, G*G.T)"),
    ("inside an activation", relu(-A * B.T), r"\operatorname{relu}\left(- A B^{\top}\right)", "relu(-A*B.T)"),
    ("an explicit matrix times a matrix", Matrix([[t[0, 0], 0], [0, -t[0, 0]]]) * MatrixSymbol("P", 2, N),
     r"\left[\begin{matrix}{t}_{11} & 0\\0 & - {t}_{11}\end{matrix}\right] P",
     "Matrix([\n[t[0, 0],        0],\n[      0, -t[0, 0]]])*P"),
]


@pytest.mark.parametrize(("expr", "expected_latex", "expected_text"), [row[1:] for row in PRODUCTS],
                         ids=[row[0] for row in PRODUCTS])
def test_products_print_as_sympy_prints_them_without_negating_them(monkeypatch, expr, expected_latex, expected_text):
    assert str(expr) == expected_text   # SymPy's own printer, before it is barred from negating

    def negated(self):
        raise AssertionError(f"the printer negated the product {self.args}")

    monkeypatch.setattr(MatMul, "could_extract_minus_sign", negated)
    assert latex(expr) == expected_latex
    assert text(expr) == expected_text
