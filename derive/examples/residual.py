"""Beyond the notes: a residual block, H2 = H1 + relu(H1 W2 + 1 b2), so H1 reaches the loss along
two paths whose gradients add up; softmax cross-entropy on top. Also in the column convention."""

from ..core.activations import relu
from . import Example
from .mlp3 import DIMS, Layers


def residual(convention: str = "rows") -> Example:
    net = Layers(convention)
    Z1 = net.affine(1, net.X)
    H1 = relu(Z1)
    Z2 = net.affine(2, H1)
    H2 = H1 + relu(Z2)
    S = net.affine(3, H2)
    loss, P = net.head(S)
    return Example(
        name="residual_block" + ("" if convention == "rows" else "_columns"),
        title="A residual block: two paths add up", source="", loss=loss, wrt=net.params(),
        names={"Z1": Z1, "H1": H1, "Z2": Z2, "R": relu(Z2), "H2": H2, "S": S, "P": P},
        dims=DIMS, convention=convention,
        variants={"columns": lambda: residual("columns")} if convention == "rows" else {})


EXAMPLES = [residual()]
