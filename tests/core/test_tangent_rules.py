"""The rule table's tangent (jvp) rules, one row per registered operation.

For each row, a node of that operation on matrices of concrete shapes:
* its tangent (``derive.core.second_order.tangent``) equals central differences of the node's value along
  random directions of its leaves, both evaluated by ``derive.core.truth`` (which reads no rule);
* every expression its pullback emits (``rule.apply`` with a symbolic upstream G) can be differentiated
  again by the table, and that tangent too equals central differences of the expression's value:
  what the second-order pass relies on, a rule's output built of operations that have rules.
A coverage test asserts that every registered rule has a tangent rule and a row here.
"""

from __future__ import annotations

import numpy as np
import pytest
from sympy import (
    Determinant,
    HadamardPower,
    HadamardProduct,
    Inverse,
    MatAdd,
    MatMul,
    MatPow,
    MatrixExpr,
    MatrixSymbol,
    Symbol,
    Trace,
    Transpose,
    ZeroMatrix,
    sin,
)
from sympy.matrices.expressions.matexpr import MatrixElement
from sympy.matrices.expressions.slice import MatrixSlice

from derive.core.activations import LeakyRelu, Relu
from derive.core.canonical import Blocks, Entries
from derive.core.elementwise import Elementwise, activations
from derive.core.losses import bce, cross_entropy, mse
from derive.core.pairing import Pairing
from derive.core.rules import RULES, Pullback, rule_for
from derive.core.second_order import tangent
from derive.core.softmax import log_softmax, softmax
from derive.core.truth import evaluate

A, B = MatrixSymbol("A", 3, 3), MatrixSymbol("B", 3, 3)          # A near the identity: inverse, det
P, T = MatrixSymbol("P", 3, 3), MatrixSymbol("T", 3, 3)          # entries in (0.2, 0.8): probabilities
x = MatrixSymbol("x", 3, 1)
LEAVES = (A, B, P, T, x)
a00, b11 = MatrixElement(A, 0, 0), MatrixElement(B, 1, 1)

# (id, node). An activation f appears as f(A) and as its derivative f'(A) (log and its f' on P).
NODES = [
    ("matmul", MatMul(A, B, x)),
    ("matmul with a moving scalar", MatMul(Trace(B), A, x)),
    ("sum", MatAdd(A, Transpose(B))),
    ("scalar sum", Trace(A) + Trace(B * B)),
    ("transpose", Transpose(A * B)),
    ("Hadamard", HadamardProduct(A, B, P)),
    ("Hadamard power", HadamardPower(P, 3)),
    ("Hadamard power, moving exponent", HadamardPower(P, Trace(B))),
    ("matrix power", MatPow(A, 3)),
    ("inverse", Inverse(A)),
    ("trace", Trace(A * B)),
    ("determinant", Determinant(A)),
    ("entry", MatrixElement(A * B, 0, 1)),
    ("blocks", Blocks(2, A, x, B, x)),
    ("slice", MatrixSlice(A * B, (0, 2, 1), (1, 3, 1))),
    ("explicit", Entries(2, a00 * b11, sin(MatrixElement(A, 0, 1)), b11 ** 2, a00)),
    ("scalar product", a00 * b11 * MatrixElement(B, 0, 2)),
    ("scalar power", MatrixElement(P, 0, 0) ** MatrixElement(B, 0, 1)),
    ("scalar function", sin(a00 * b11)),
    ("softmax rows", softmax(A * B, 1)),
    ("softmax columns", softmax(A * B, 0)),
    ("log-softmax rows", log_softmax(A * B, 1)),
    ("log-softmax columns", log_softmax(A * B, 0)),
    ("pairing", Pairing(B, A * A)),
    ("squared error", mse(A * B, T)),
    ("binary cross-entropy", bce(P, T)),
    ("softmax cross-entropy", cross_entropy(A * B, T)),
]
for _name, _cls in activations().items():
    _argument = P if _name == "log" else A * B
    NODES += [(_name, _cls(_argument)), (f"{_name}'", _cls.prime()(_argument))]

STEP = 1e-6
TOLERANCE = 1e-6


def values(rng, upstream: tuple) -> dict:
    return {"A": np.eye(3) + rng.uniform(-0.3, 0.3, (3, 3)), "B": rng.uniform(-1, 1, (3, 3)),
            "P": rng.uniform(0.2, 0.8, (3, 3)), "T": rng.uniform(0.1, 0.9, (3, 3)), "x": rng.uniform(-1, 1, (3, 1)),
            "G": rng.uniform(-1, 1, upstream), "g": 0.7}


def assert_tangent_is_the_derivative(expr, upstream=None, seed: int = 0) -> None:
    """tangent(expr) along random directions of every leaf (and of the upstream) against central differences."""
    rng = np.random.default_rng(seed)
    at = values(rng, tuple(int(d) for d in upstream.shape) if isinstance(upstream, MatrixSymbol) else (1, 1))
    leaves = [m for m in LEAVES if m in expr.atoms(MatrixSymbol)]
    if upstream is not None and upstream in expr.free_symbols | expr.atoms(MatrixSymbol):
        leaves.append(upstream)
    moves = {m: MatrixSymbol(f"d{m.name}", *m.shape) if isinstance(m, MatrixSymbol) else Symbol(f"d{m.name}")
             for m in leaves}
    along = {str(d): rng.standard_normal(tuple(int(s) for s in m.shape)) if isinstance(m, MatrixSymbol) else 0.3
             for m, d in moves.items()}
    moved = tangent(expr, expr, moves)
    differences = (_value(expr, _shifted(at, moves, along, STEP)) - _value(expr, _shifted(at, moves, along, -STEP))) / (2 * STEP)
    if moved is None:   # the table says it does not move: the differences must agree
        assert np.max(np.abs(differences)) <= TOLERANCE, f"{expr} moves by {differences}, its tangent says 0"
        return
    got = _value(moved, {**at, **along})
    scale = max(1.0, float(np.max(np.abs(differences))))
    assert np.max(np.abs(got - differences)) <= TOLERANCE * scale, (
        f"tangent of {expr}:\n{moved}\ngives\n{got}\ncentral differences give\n{differences}")


def _shifted(at: dict, moves: dict, along: dict, t: float) -> dict:
    shifted = dict(at)
    for m, d in moves.items():
        shifted[str(m)] = at[str(m)] + t * along[str(d)]
    return shifted


def _value(expr, at: dict) -> np.ndarray:
    return np.asarray(evaluate(expr, at), dtype=float)


@pytest.mark.parametrize("node", [n for _, n in NODES], ids=[i for i, _ in NODES])
def test_the_tangent_rule_is_the_directional_derivative(node):
    assert_tangent_is_the_derivative(node)


@pytest.mark.parametrize("node", [n for _, n in NODES], ids=[i for i, _ in NODES])
def test_what_the_pullback_emits_can_be_differentiated_again(node):
    upstream = MatrixSymbol("G", *node.shape) if isinstance(node, MatrixExpr) else Symbol("g")
    emitted = [g.result if isinstance(g, Pullback) else g for g in rule_for(node).apply(node, node, upstream)]
    emitted = [e for e in emitted if e is not None]
    assert emitted, f"the pullback of {node} emitted nothing"
    for k, expr in enumerate(emitted):
        assert_tangent_is_the_derivative(expr, upstream, seed=k)


def test_every_registered_rule_has_a_tangent_rule_and_a_row_here():
    missing = sorted(cls.__name__ for cls, rule in RULES.items() if rule.tangent is None)
    assert not missing, f"rules without a tangent rule: {missing}"
    covered = {cls for _, node in NODES for cls in type(node).__mro__ if cls in RULES}
    assert set(RULES) <= covered, f"rules without a row: {sorted(c.__name__ for c in set(RULES) - covered)}"
    assert {name for name, _ in NODES} >= set(activations()), "every activation has a row"


@pytest.mark.parametrize("name", ["relu", "leaky_relu"])
def test_relu_and_leaky_relus_second_derivative_is_zero_almost_everywhere(name):
    cls = activations()[name]
    first = cls(A).derivative(cls(A))
    assert isinstance(first.derivative(first), ZeroMatrix)
    # against SymPy's own derivative of the scalar, away from the kink
    scalar = {"relu": Relu, "leaky_relu": LeakyRelu}[name]
    z = Symbol("z")
    slope = scalar(z).diff(z) if name == "relu" else scalar(z, 0.1).diff(z)
    assert all(slope.diff(z).subs(z, v) == 0 for v in (-1.5, 0.5, 2))


def test_second_derivative_classes_say_their_order():
    from derive.core.activations import gelu
    from derive.core.elementwise import derivative_order
    second = gelu.prime().prime()
    assert derivative_order(gelu) == 0 and derivative_order(gelu.prime()) == 1 and derivative_order(second) == 2
    assert issubclass(second, Elementwise) and second.of is gelu
