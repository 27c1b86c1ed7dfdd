"""A gated unit sigmoid(X Wg + 1 bg) ⊙ tanh(X Wv + 1 bv)."""

from sympy import HadamardProduct, MatrixSymbol

from ..core.activations import sigmoid, tanh
from .layer import LayerExample, N, row_bias


def gated_unit() -> LayerExample:
    X = MatrixSymbol("X", N, 3)
    Wg, bg, Wv, bv = MatrixSymbol("Wg", 3, 4), MatrixSymbol("bg", 1, 4), MatrixSymbol("Wv", 3, 4), MatrixSymbol("bv", 1, 4)
    Zg, Zv = X * Wg + row_bias(bg), X * Wv + row_bias(bv)
    Y = HadamardProduct(sigmoid(Zg), tanh(Zv))
    return LayerExample("layer_gated_unit", "A gated unit, sigmoid(X Wg + 1 bg) times tanh(X Wv + 1 bv) entry by entry", "beyond the notes",
                        Y, (X,), (Wg, bg, Wv, bv), names={"Zg": Zg, "Zv": Zv, "G": sigmoid(Zg), "T": tanh(Zv), "Y": Y},
                        dims={N: 2})


EXAMPLES = [gated_unit()]
