"""Beyond the notes: a 3-layer MLP (rows as examples, softmax cross-entropy), one variant for each
activation in note 003's list: ReLU, leaky ReLU (0.1), ELU (1), sigmoid, GELU, SiLU and tanh."""

from sympy import MatrixSymbol, OneMatrix, Rational, Symbol

from ..functions import cross_entropy, elu, gelu, leaky_relu, relu, sigmoid, silu, softmax, tanh_
from . import Example

N, D, H, C = (Symbol(n, integer=True, positive=True) for n in ("N", "D", "H", "C"))
X = MatrixSymbol("X", N, D)
Y = MatrixSymbol("Y", N, C)
W1, W2, W3 = MatrixSymbol("W1", D, H), MatrixSymbol("W2", H, H), MatrixSymbol("W3", H, C)
b1, b2, b3 = MatrixSymbol("b1", 1, H), MatrixSymbol("b2", 1, H), MatrixSymbol("b3", 1, C)
ones = OneMatrix(N, 1)

ACTIVATIONS = {
    "relu": relu,
    "leaky_relu": lambda a: leaky_relu(a, Rational(1, 10)),
    "elu": lambda a: elu(a, 1),
    "sigmoid": sigmoid,
    "gelu": gelu,
    "silu": silu,
    "tanh": tanh_,
}


def mlp3(name: str, activation) -> Example:
    Z1 = X * W1 + ones * b1
    H1 = activation(Z1)
    Z2 = H1 * W2 + ones * b2
    H2 = activation(Z2)
    S = H2 * W3 + ones * b3
    return Example(
        name=f"mlp3_{name}", title=f"A 3-layer MLP with {name} and softmax cross-entropy",
        source="beyond the notes", loss=cross_entropy(S, Y), wrt=(W1, b1, W2, b2, W3, b3),
        names={"Z1": Z1, "H1": H1, "Z2": Z2, "H2": H2, "S": S, "P": softmax(S)},
        dims={N: 2, D: 2, H: 2, C: 2})


EXAMPLES = [mlp3(name, activation) for name, activation in ACTIVATIONS.items()]
