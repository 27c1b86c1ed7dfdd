"""Note 001: linear regression (one example, then a batch with MSE), two stacked linear layers,
and the same with a sigmoid between them. Rows are examples."""

from sympy import MatrixSymbol, OneMatrix, Symbol

from ..core.activations import sigmoid
from ..core.losses import mse
from . import Example

N = Symbol("N", integer=True, positive=True)

# A single example x (1 x 3): L = (y - yhat)^2.
x1 = MatrixSymbol("x", 1, 3)
w = MatrixSymbol("w", 3, 1)
b = MatrixSymbol("b", 1, 1)
y1 = MatrixSymbol("y", 1, 1)
yhat1 = x1 * w + b

# A batch X (N x 3): L = 1/N sum (y_i - yhat_i)^2.
X = MatrixSymbol("X", N, 3)
y = MatrixSymbol("y", N, 1)
yhat = X * w + OneMatrix(N, 1) * b

# Two stacked linear layers, X (N x 3) -> H (N x 2) -> yhat (N x 1), and with a sigmoid between.
W1 = MatrixSymbol("W1", 3, 2)
b1 = MatrixSymbol("b1", 1, 2)
W2 = MatrixSymbol("W2", 2, 1)
b2 = MatrixSymbol("b2", 1, 1)
H = X * W1 + OneMatrix(N, 1) * b1
yhat2 = H * W2 + OneMatrix(N, 1) * b2
Z1 = H
A1 = sigmoid(Z1)
yhat3 = A1 * W2 + OneMatrix(N, 1) * b2

EXAMPLES = [
    Example(name="seed_001_linreg_single", title="Linear regression on one example",
            source="Derivation of Backpropagation", loss=mse(yhat1, y1), wrt=(w, b),
            names={"yhat": yhat1}, dims={}),
    Example(name="seed_001_linreg_batch", title="Linear regression on a batch, mean squared error",
            source="Derivation of Backpropagation", loss=mse(yhat, y), wrt=(w, b),
            names={"yhat": yhat}, dims={N: 2}),
    Example(name="seed_001_two_linear", title="Two stacked linear layers",
            source="Derivation of Backpropagation", loss=mse(yhat2, y), wrt=(W1, b1, W2, b2),
            names={"H": H, "yhat": yhat2}, dims={N: 2}),
    Example(name="seed_001_sigmoid_between", title="Two linear layers with a sigmoid between them",
            source="Derivation of Backpropagation", loss=mse(yhat3, y), wrt=(W1, b1, W2, b2),
            names={"Z": Z1, "A": A1, "yhat": yhat3}, dims={N: 2}),
]
