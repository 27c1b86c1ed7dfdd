"""Note 004: the 2-3-1 sigmoid network with J = 1/(2N) sum (t - z)^2; columns are examples."""

from sympy import MatrixSymbol, OneMatrix, Symbol

from ..core.activations import sigmoid
from ..core.losses import mse
from . import Example

N = Symbol("N", integer=True, positive=True)
X = MatrixSymbol("X", 2, N)
t = MatrixSymbol("t", 1, N)
W1 = MatrixSymbol("W1", 3, 2)
b1 = MatrixSymbol("b1", 3, 1)
W2 = MatrixSymbol("W2", 1, 3)
b2 = MatrixSymbol("b2", 1, 1)

u = W1 * X + b1 * OneMatrix(1, N)
h = sigmoid(u)
v = W2 * h + b2 * OneMatrix(1, N)
z = sigmoid(v)

EXAMPLES = [Example(
    name="seed_004_sigmoid_231",
    title="A 2-3-1 sigmoid network with half mean squared error",
    source="Backpropagation lecture notes",
    loss=mse(z, t, half=True, examples="columns"), wrt=(W1, b1, W2, b2),
    names={"u": u, "h": h, "v": v, "z": z},
    dims={N: 2}, convention="columns",
)]
