"""Beyond the notes: a residual block, H2 = H1 + relu(H1 W2 + 1 b2), so H1 reaches the loss along
two paths whose gradients add up; softmax cross-entropy on top."""

from ..functions import cross_entropy, relu, softmax
from . import Example
from .mlp3 import W1, W2, W3, C, D, H, N, X, Y, b1, b2, b3, ones

Z1 = X * W1 + ones * b1
H1 = relu(Z1)
Z2 = H1 * W2 + ones * b2
H2 = H1 + relu(Z2)
S = H2 * W3 + ones * b3

EXAMPLES = [Example(
    name="residual_block", title="A residual block: two paths add up",
    source="beyond the notes", loss=cross_entropy(S, Y), wrt=(W1, b1, W2, b2, W3, b3),
    names={"Z1": Z1, "H1": H1, "Z2": Z2, "R": relu(Z2), "H2": H2, "S": S, "P": softmax(S)},
    dims={N: 2, D: 2, H: 2, C: 2},
)]
