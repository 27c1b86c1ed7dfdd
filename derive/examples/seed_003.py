"""Note 003: a 2-layer MLP on one column-vector example, ReLU, softmax cross-entropy.

a1 = W1 x + b1, h1 = relu(a1), s = W2 h1 + b2, p = softmax(s), L = -sum y log p.
"""

from sympy import MatrixSymbol, Symbol

from ..core.activations import relu
from ..core.losses import cross_entropy
from ..core.softmax import softmax
from . import Example

D, H, C = (Symbol(n, integer=True, positive=True) for n in ("D", "H", "C"))
x = MatrixSymbol("x", D, 1)
y = MatrixSymbol("y", C, 1)
W1 = MatrixSymbol("W1", H, D)
b1 = MatrixSymbol("b1", H, 1)
W2 = MatrixSymbol("W2", C, H)
b2 = MatrixSymbol("b2", C, 1)

a1 = W1 * x + b1
h1 = relu(a1)
s = W2 * h1 + b2

EXAMPLES = [Example(
    name="seed_003_mlp_column",
    title="A 2-layer MLP on a column vector with softmax cross-entropy",
    source="On backpropagation",
    loss=cross_entropy(s, y, examples="columns", targets_sum_to_one=True), wrt=(W1, b1, W2, b2),
    names={"a1": a1, "h1": h1, "s": s, "p": softmax(s, examples="columns")},
    dims={D: 2, H: 3, C: 3}, convention="columns",
)]
