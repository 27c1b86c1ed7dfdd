"""The built-in layers: each a matrix output of inputs and parameters, derived with ``derive.vjp``.

A GELU dense layer, layer norm with gain and bias, one attention head, a gated unit and a residual
MLP block; rows are examples. They are found with ``derive.examples.layers()`` (and ``get``), apart
from the networks' ``catalogue()``, whose examples are losses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sympy import HadamardPower, HadamardProduct, MatrixExpr, MatrixSymbol, OneMatrix, Rational, Symbol

from ..core.activations import gelu, relu, sigmoid, tanh
from ..core.layer import Layer, vjp
from ..core.softmax import softmax

N = Symbol("N", integer=True, positive=True)   # the batch stays symbolic
D = Symbol("D", integer=True, positive=True)   # the width of layer norm and of the residual block
EPSILON = Rational(1, 100000)                  # layer norm's epsilon, as torch's default


@dataclass(frozen=True)
class LayerExample:
    """A layer: its output, the inputs and parameters to differentiate, and how to present it."""

    name: str
    title: str
    source: str
    output: MatrixExpr
    inputs: tuple[MatrixSymbol, ...]
    params: tuple[MatrixSymbol, ...]
    names: Mapping = field(default_factory=dict)
    dims: Mapping = field(default_factory=dict)
    values: Mapping = field(default_factory=dict)
    convention: str = "rows"
    variants: Mapping = field(default_factory=dict)

    def derive(self) -> Layer:
        return vjp(self.output, self.inputs, self.params, names=self.names)


def _row_bias(b: MatrixSymbol) -> MatrixExpr:
    return OneMatrix(N, 1) * b


def gelu_dense() -> LayerExample:
    X, W, b = MatrixSymbol("X", N, 3), MatrixSymbol("W", 3, 4), MatrixSymbol("b", 1, 4)
    Z = X * W + _row_bias(b)
    return LayerExample("layer_gelu_dense", "A GELU dense layer", "beyond the notes", gelu(Z), (X,), (W, b),
                        names={"Z": Z, "Y": gelu(Z)}, dims={N: 2})


def layer_norm() -> LayerExample:
    X, gamma, beta = MatrixSymbol("X", N, D), MatrixSymbol("gamma", 1, D), MatrixSymbol("beta", 1, D)
    mean_rows = OneMatrix(D, 1) * OneMatrix(1, D) / D          # X M: each row's mean, spread over the row
    C = X - X * mean_rows
    R = HadamardPower(HadamardPower(C, 2) * mean_rows + EPSILON * OneMatrix(N, D), Rational(-1, 2))
    Y = HadamardProduct(C, R, _row_bias(gamma)) + _row_bias(beta)
    return LayerExample("layer_norm", "Layer norm with gain gamma and bias beta", "beyond the notes", Y, (X,),
                        (gamma, beta), names={"C": C, "R": R, "Y": Y}, dims={N: 2, D: 3})


def attention_head() -> LayerExample:
    X = MatrixSymbol("X", N, 3)
    Wq, Wk, Wv = (MatrixSymbol(name, 3, 4) for name in ("Wq", "Wk", "Wv"))
    Q, K, V = X * Wq, X * Wk, X * Wv
    S = Q * K.T / 2                                            # / sqrt(4), the key width
    P = softmax(S)
    Y = P * V
    return LayerExample("layer_attention_head", "One attention head softmax(Q K^T / 2) V", "beyond the notes", Y,
                        (X,), (Wq, Wk, Wv), names={"Q": Q, "K": K, "V": V, "S": S, "P": P, "Y": Y}, dims={N: 2})


def gated_unit() -> LayerExample:
    X = MatrixSymbol("X", N, 3)
    Wg, bg, Wv, bv = MatrixSymbol("Wg", 3, 4), MatrixSymbol("bg", 1, 4), MatrixSymbol("Wv", 3, 4), MatrixSymbol("bv", 1, 4)
    Zg, Zv = X * Wg + _row_bias(bg), X * Wv + _row_bias(bv)
    Y = HadamardProduct(sigmoid(Zg), tanh(Zv))
    return LayerExample("layer_gated_unit", "A gated unit sigmoid(X Wg + 1 bg) ⊙ tanh(X Wv + 1 bv)", "beyond the notes",
                        Y, (X,), (Wg, bg, Wv, bv), names={"Zg": Zg, "Zv": Zv, "G": sigmoid(Zg), "T": tanh(Zv), "Y": Y},
                        dims={N: 2})


def residual_mlp() -> LayerExample:
    X = MatrixSymbol("X", N, D)
    W1, b1, W2, b2 = MatrixSymbol("W1", D, 5), MatrixSymbol("b1", 1, 5), MatrixSymbol("W2", 5, D), MatrixSymbol("b2", 1, D)
    Z = X * W1 + _row_bias(b1)
    H = relu(Z)
    Y = X + H * W2 + _row_bias(b2)
    return LayerExample("layer_residual_mlp", "A residual MLP block X + relu(X W1 + 1 b1) W2 + 1 b2", "beyond the notes",
                        Y, (X,), (W1, b1, W2, b2), names={"Z": Z, "H": H, "Y": Y}, dims={N: 2, D: 3})


EXAMPLES = [gelu_dense(), layer_norm(), attention_head(), gated_unit(), residual_mlp()]
