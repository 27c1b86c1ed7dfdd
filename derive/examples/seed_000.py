"""Note 000: p = sigmoid(relu(X w1) w2 + 1 b) with mean binary cross-entropy, rows as examples."""

from sympy import MatrixSymbol, OneMatrix, Symbol

from ..core.activations import relu, sigmoid
from ..core.losses import bce
from . import Example

N = Symbol("N", integer=True, positive=True)
X = MatrixSymbol("X", N, 2)
y = MatrixSymbol("y", N, 1)
w1 = MatrixSymbol("w1", 2, 3)
w2 = MatrixSymbol("w2", 3, 1)
b = MatrixSymbol("b", 1, 1)

h = relu(X * w1)
z = h * w2 + OneMatrix(N, 1) * b
p = sigmoid(z)

EXAMPLES = [Example(
    name="seed_000_bce",
    title="A 2-3-1 classifier with ReLU, sigmoid and binary cross-entropy",
    source="An Exercise in Backpropagation",
    loss=bce(p, y), wrt=(w1, w2, b),
    names={"a": X * w1, "h": h, "z": z, "p": p},
    dims={N: 2},
)]
