"""One attention head softmax(Q K^T / sqrt(4)) V with Q, K, V = X Wq, X Wk, X Wv."""

from sympy import MatrixSymbol

from ..core.softmax import softmax
from .layer import LayerExample, N


def attention_head() -> LayerExample:
    X = MatrixSymbol("X", N, 3)
    Wq, Wk, Wv = (MatrixSymbol(name, 3, 4) for name in ("Wq", "Wk", "Wv"))
    Q, K, V = X * Wq, X * Wk, X * Wv
    S = Q * K.T / 2                                            # / sqrt(4), the key width
    P = softmax(S)
    Y = P * V
    return LayerExample("layer_attention_head", "One attention head softmax(Q K^T / 2) V", "beyond the notes", Y,
                        (X,), (Wq, Wk, Wv), names={"Q": Q, "K": K, "V": V, "S": S, "P": P, "Y": Y}, dims={N: 2})


EXAMPLES = [attention_head()]
