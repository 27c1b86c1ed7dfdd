"""derive's LaTeX notation: one row per node type, and names that cannot break or inject into a sheet."""

import pytest
from sympy import (
    HadamardPower,
    HadamardProduct,
    Identity,
    Inverse,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    Rational,
    Sum,
    Symbol,
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
