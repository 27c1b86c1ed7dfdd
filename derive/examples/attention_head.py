"""One attention head softmax(Q K^T / sqrt(4)) V with Q, K, V = X Wq, X Wk, X Wv."""

import math

from sympy import MatrixSymbol

from ..core.softmax import softmax
from ..errors import InvalidArgument
from .layer import LayerExample, N


def attention_head(d: int = 3, k: int = 4) -> LayerExample:
    """``d`` features, keys ``k`` wide (a square: the scale 1/sqrt(k) stays rational)."""
    if math.isqrt(k) ** 2 != k:
        raise InvalidArgument(f"attention_head: the key width {k} is not a square")
    X = MatrixSymbol("X", N, d)
    Wq, Wk, Wv = (MatrixSymbol(name, d, k) for name in ("Wq", "Wk", "Wv"))
    Q, K, V = X * Wq, X * Wk, X * Wv
    S = Q * K.T / math.isqrt(k)                                # / sqrt(k), the key width
    P = softmax(S)
    Y = P * V
    return LayerExample("layer_attention_head", f"One attention head softmax(Q K^T / {math.isqrt(k)}) V", "beyond the notes", Y,
                        (X,), (Wq, Wk, Wv), names={"Q": Q, "K": K, "V": V, "S": S, "P": P, "Y": Y}, dims={N: 2})


EXAMPLES = [attention_head()]
