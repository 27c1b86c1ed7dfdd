"""A gated unit sigmoid(X Wg + 1 bg) ⊙ tanh(X Wv + 1 bv)."""

from sympy import HadamardProduct, MatrixSymbol

from ..core.activations import sigmoid, tanh
from .layer import LayerExample, N, row_bias


def gated_unit(d: int = 3, h: int = 4) -> LayerExample:
    X = MatrixSymbol("X", N, d)
    Wg, bg = MatrixSymbol("Wg", d, h), MatrixSymbol("bg", 1, h)
    Wv, bv = MatrixSymbol("Wv", d, h), MatrixSymbol("bv", 1, h)
    Zg, Zv = X * Wg + row_bias(bg), X * Wv + row_bias(bv)
    Y = HadamardProduct(sigmoid(Zg), tanh(Zv))
    return LayerExample("layer_gated_unit", "A gated unit, sigmoid(X Wg + 1 bg) times tanh(X Wv + 1 bv) entry by entry", "beyond the notes",
                        Y, (X,), (Wg, bg, Wv, bv), names={"Zg": Zg, "Zv": Zv, "G": sigmoid(Zg), "T": tanh(Zv), "Y": Y},
                        dims={N: 2})


EXAMPLES = [gated_unit()]
