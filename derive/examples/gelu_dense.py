"""A GELU dense layer, gelu(X W + 1 b)."""

from sympy import MatrixSymbol

from ..core.activations import gelu
from .layer import LayerExample, N, row_bias


def gelu_dense(d: int = 3, h: int = 4) -> LayerExample:
    """``d`` inputs, ``h`` outputs (the bench builds it at 1024 x 1024)."""
    X, W, b = MatrixSymbol("X", N, d), MatrixSymbol("W", d, h), MatrixSymbol("b", 1, h)
    Z = X * W + row_bias(b)
    return LayerExample("layer_gelu_dense", "A GELU dense layer", "beyond the notes", gelu(Z), (X,), (W, b),
                        names={"Z": Z, "Y": gelu(Z)}, dims={N: 2})


EXAMPLES = [gelu_dense()]
