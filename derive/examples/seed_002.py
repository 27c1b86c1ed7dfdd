"""Note 002: the sigmoid neuron f = sigmoid(w0 x0 + w1 x1 + w2) worked with numbers, and a graph in
which one input reaches the output along two paths. Scalars are 1 x 1 matrices."""

from sympy import MatrixSymbol

from ..core.activations import sigmoid
from . import Example

w0, x0, w1, x1, w2 = (MatrixSymbol(n, 1, 1) for n in ("w0", "x0", "w1", "x1", "w2"))
dot = w0 * x0 + w1 * x1 + w2
f = sigmoid(dot)

# x reaches the output through the product and directly: df/dx = y sigma'(x y) + 1.
x, y = MatrixSymbol("x", 1, 1), MatrixSymbol("y", 1, 1)
q = x * y
f2 = sigmoid(q) + x

EXAMPLES = [
    Example(name="seed_002_neuron", title="A sigmoid neuron, with numbers",
            source="Backpropagation", loss=f, wrt=(w0, x0, w1, x1, w2),
            names={"s": dot, "f": f}, dims={},
            values={w0: 2, x0: -1, w1: -3, x1: -2, w2: -3}),
    Example(name="seed_002_two_paths", title="Two paths from one input add up",
            source="Backpropagation", loss=f2, wrt=(x, y),
            names={"q": q, "g": sigmoid(q)}, dims={}, values={x: 3, y: -4}),
]
