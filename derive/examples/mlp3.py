"""Beyond the notes: a 3-layer MLP (softmax cross-entropy), one variant for each activation in note
003's list: ReLU, leaky ReLU (0.1), ELU (1), sigmoid, GELU, SiLU and tanh. Rows are examples
(``X W + 1 b``); each also has a column-vector variant (``W X + b 1^T``) for ``--convention columns``."""

from sympy import MatrixSymbol, OneMatrix, Rational, Symbol

from ..core.activations import elu, gelu, leaky_relu, relu, sigmoid, silu
from ..core.activations import tanh as tanh_
from ..core.losses import cross_entropy
from ..core.softmax import softmax
from . import Example

N, D, H, C = (Symbol(n, integer=True, positive=True) for n in ("N", "D", "H", "C"))
DIMS = {N: 2, D: 2, H: 2, C: 2}

ACTIVATIONS = {
    "relu": relu,
    "leaky_relu": lambda a: leaky_relu(a, Rational(1, 10)),
    "elu": lambda a: elu(a, 1),
    "sigmoid": sigmoid,
    "gelu": gelu,
    "silu": silu,
    "tanh": tanh_,
}


class Layers:
    """The symbols of a network D -> H -> H -> C and its affine map, in either convention."""

    def __init__(self, convention: str):
        self.convention = convention
        rows = convention == "rows"
        self.X = MatrixSymbol("X", *((N, D) if rows else (D, N)))
        self.Y = MatrixSymbol("Y", *((N, C) if rows else (C, N)))
        sizes = ((D, H), (H, H), (H, C))
        self.W = [MatrixSymbol(f"W{k}", *(m if rows else m[::-1])) for k, m in enumerate(sizes, 1)]
        self.b = [MatrixSymbol(f"b{k}", *((1, m[1]) if rows else (m[1], 1))) for k, m in enumerate(sizes, 1)]

    def affine(self, k: int, A):
        """Layer k's ``A W_k + 1 b_k`` (rows) or ``W_k A + b_k 1^T`` (columns)."""
        W, b = self.W[k - 1], self.b[k - 1]
        if self.convention == "rows":
            return A * W + OneMatrix(N, 1) * b
        return W * A + b * OneMatrix(1, N)

    def head(self, S):
        """The loss on logits S and the softmax probabilities, normalised over each example."""
        return cross_entropy(S, self.Y, examples=self.convention, targets_sum_to_one=True), softmax(S, examples=self.convention)

    def params(self):
        return tuple(p for pair in zip(self.W, self.b) for p in pair)


def mlp3(name: str, convention: str = "rows") -> Example:
    net, activation = Layers(convention), ACTIVATIONS[name]
    Z1 = net.affine(1, net.X)
    H1 = activation(Z1)
    Z2 = net.affine(2, H1)
    H2 = activation(Z2)
    S = net.affine(3, H2)
    loss, P = net.head(S)
    suffix = "" if convention == "rows" else "_columns"
    return Example(
        name=f"mlp3_{name}{suffix}", title=f"A 3-layer MLP with {name} and softmax cross-entropy",
        source="", loss=loss, wrt=net.params(),
        names={"Z1": Z1, "H1": H1, "Z2": Z2, "H2": H2, "S": S, "P": P},
        dims=DIMS, convention=convention,
        variants={"columns": lambda: mlp3(name, "columns")} if convention == "rows" else {})


EXAMPLES = [mlp3(name) for name in ACTIVATIONS]
