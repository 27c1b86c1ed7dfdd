"""A residual MLP block X + relu(X W1 + 1 b1) W2 + 1 b2."""

from sympy import MatrixSymbol

from ..core.activations import relu
from .layer import D, LayerExample, N, row_bias


def residual_mlp(h: int = 5) -> LayerExample:
    """``h`` hidden units; the width D stays symbolic."""
    X = MatrixSymbol("X", N, D)
    W1, b1 = MatrixSymbol("W1", D, h), MatrixSymbol("b1", 1, h)
    W2, b2 = MatrixSymbol("W2", h, D), MatrixSymbol("b2", 1, D)
    Z = X * W1 + row_bias(b1)
    H = relu(Z)
    Y = X + H * W2 + row_bias(b2)
    return LayerExample("layer_residual_mlp", "A residual MLP block X + relu(X W1 + 1 b1) W2 + 1 b2", "beyond the notes",
                        Y, (X,), (W1, b1, W2, b2), names={"Z": Z, "H": H, "Y": Y}, dims={N: 2, D: 3})


EXAMPLES = [residual_mlp()]
