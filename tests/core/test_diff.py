"""derive.core.diff and the explicit product: faster spellings of SymPy's own work, compared with it.

The elementwise truth differentiates the explicit expansion with SymPy's rules once per node
(derive.core.diff) and multiplies explicit matrices entry by entry (derive.core.explicit); here both
are compared, as expressions (``==``, not merely equal values), with what they replace: ``sympy.diff``
of the same scalar, and SymPy's own matrix product, on the built-in networks, on drawn networks and
on the nodes SymPy differentiates by methods of their own.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, seed, settings
from sympy import (
    Abs,
    Float,
    Function,
    ImmutableMatrix,
    Integer,
    MatrixSymbol,
    Max,
    Min,
    Piecewise,
    Rational,
    Symbol,
    exp,
    log,
    sqrt,
    tanh,
)

import derive
from derive.core.activations import Elu, Gelu, Relu, Sigmoid
from derive.core.diff import Differentiable, derivatives
from derive.core.dims import normalize_dims
from derive.core.explicit import _matrix_product, _scalar_loss
from derive.core.identity import vanishes

from ..conftest import EXAMPLES
from ..networks import networks

A, B = MatrixSymbol("A", 2, 2), MatrixSymbol("B", 2, 2)
a, b, c, d = A[0, 0], A[0, 1], A[1, 0], A[1, 1]
t = Symbol("t")
f = Function("f")

# Each row: an expression whose derivative by every entry of A (and by t) is compared with sympy.diff.
EXPRESSIONS = [
    ("sum and product", a * b + 3 * a * c * d - d),
    ("powers", a ** 3 + a ** b + sqrt(a * a + 1) / (b + 2) + (a * c) ** Rational(-3, 2)),
    ("shared subexpression", tanh(a * b + c) * exp(a * b + c) + log(1 + (a * b + c) ** 2)),
    ("derive's activations", Sigmoid(a * b) * Gelu(b - c) + Elu(a, Rational(1, 2)) + Relu(c * d)),
    ("SymPy's own rules: Abs, Max, Min, Piecewise", Abs(a - b) + Max(a, c * d) * Min(b, 0)
     + Piecewise((a ** 2, a > 0), (b, True))),
    ("a function without a derivative", f(a * b) + f(c) * a),
    ("a symbol beside the entries", t * a ** 2 + exp(t * b)),
    ("a constant", Integer(7)),
]


@pytest.mark.parametrize("expr", [row[1] for row in EXPRESSIONS], ids=[row[0] for row in EXPRESSIONS])
def test_derivatives_are_sympys_diff(expr):
    unknowns = [a, b, c, d, t, B[0, 0]]
    assert derivatives(expr, unknowns) == [expr.diff(x) for x in unknowns]


def test_a_deep_shared_expression_is_differentiated_once_per_node():
    # h_k = sigmoid(h_{k-1} + a h_{k-1}): 2^40 paths from the top to b, 40 levels in the DAG (SymPy's
    # diff, evalf and subs walk the paths). Checked against the chain rule written by hand, exactly,
    # by derive.core.identity, which reads each sigmoid as an unknown and walks the DAG once.
    h, chain = b, Integer(1)
    for _ in range(40):
        inner = h + a * h
        chain = chain * (1 + a) * Sigmoid(inner) * (1 - Sigmoid(inner))
        h = Sigmoid(inner)
    assert vanishes(Differentiable(h).derivative(b) - chain)
    assert not vanishes(Differentiable(h).derivative(a) - chain)


def _scalar_losses(g, dims):
    bindings = normalize_dims(dims, g.root)
    key = tuple(sorted(((s, int(v)) for s, v in bindings.items()), key=str))
    return _scalar_loss(g.loss, key), [e for p in g.params for e in p.subs(bindings).as_explicit()]


# The built-in networks whose expansion SymPy's diff takes under a second or two at their dims.
SMALL = ["seed_000_bce", "seed_002_two_paths", "seed_003_mlp_column", "seed_004_sigmoid_231"]


@pytest.mark.parametrize("name", SMALL)
def test_the_elementwise_truth_of_built_in_networks_is_sympys_diff(name, derivations):
    loss, entries = _scalar_losses(derivations[name], EXAMPLES[name].dims)
    assert [loss.derivative(e) for e in entries] == [loss.expr.diff(e) for e in entries]


@seed(12)
@settings(max_examples=4, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(net=networks(most=2, widest=2, batch=2))
def test_the_elementwise_truth_of_drawn_networks_is_sympys_diff(net):
    namespace = net.build()
    g = derive.gradients(namespace["loss"], namespace["wrt"], names=namespace["names"], check=False)
    loss, entries = _scalar_losses(g, net.dims)
    assert [loss.derivative(e) for e in entries] == [loss.expr.diff(e) for e in entries]


PRODUCTS = [
    ("symbols", ImmutableMatrix(2, 3, lambda i, j: Symbol(f"x{i}{j}")), ImmutableMatrix(3, 2, lambda i, j: Symbol(f"y{i}{j}"))),
    ("zeros and a float 0", ImmutableMatrix([[0, a, Float(0.0)], [b, 0, 0]]), ImmutableMatrix([[c, 0], [0, 0], [d, 1]])),
    ("functions", ImmutableMatrix([[tanh(a + b), exp(c)]]), ImmutableMatrix([[tanh(a + b)], [Rational(1, 3) * d]])),
]


@pytest.mark.parametrize("left, right", [row[1:] for row in PRODUCTS], ids=[row[0] for row in PRODUCTS])
def test_the_explicit_product_is_sympys(left, right):
    assert _matrix_product(left, right) == ImmutableMatrix(left * right)
