"""A GELU dense layer, gelu(X W + 1 b)."""

from sympy import MatrixSymbol

from ..core.activations import gelu
from .layer import LayerExample, N, row_bias


def gelu_dense() -> LayerExample:
    X, W, b = MatrixSymbol("X", N, 3), MatrixSymbol("W", 3, 4), MatrixSymbol("b", 1, 4)
    Z = X * W + row_bias(b)
    return LayerExample("layer_gelu_dense", "A GELU dense layer", "beyond the notes", gelu(Z), (X,), (W, b),
                        names={"Z": Z, "Y": gelu(Z)}, dims={N: 2})


EXAMPLES = [gelu_dense()]
