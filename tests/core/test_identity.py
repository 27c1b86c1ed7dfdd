"""The exact zero test by evaluation modulo a prime (derive/core/identity.py), against expressions
whose zero-ness is known: identities of polynomials and rational functions, differences that do not
vanish, and identities that need a relation between functions (left to SymPy's expansion)."""

import pytest
from sympy import MatrixSymbol, Rational, Symbol, exp, sin, sqrt

from derive.core.activations import Sigmoid
from derive.core.explicit import simplifies_to_zero
from derive.core.identity import vanishes

x, y, z = (Symbol(s) for s in "xyz")
A = MatrixSymbol("A", 2, 2)

ROWS = [
    # id, expression, what vanishes says, whether it is zero (what simplifies_to_zero must say)
    ("square of a sum", (x + y) ** 2 - x**2 - 2 * x * y - y**2, True, True),
    ("rational function", 1 / (x - 1) - 1 / (x + 1) - 2 / (x**2 - 1), True, True),
    ("matrix entries", (A[0, 0] + A[1, 1]) * A[0, 1] - A[0, 0] * A[0, 1] - A[1, 1] * A[0, 1], True, True),
    ("a function as an unknown", Sigmoid(x + y) * (1 - Sigmoid(x + y)) - Sigmoid(x + y) + Sigmoid(x + y) ** 2,
     True, True),
    ("a constant factor off", 2 * x * y - x * y, False, False),
    ("a transpose: other entries", A[0, 1] * x - A[1, 0] * x, False, False),
    ("a wrong sign inside a function", sin(x - y) - sin(y - x), False, False),
    ("a third off", Rational(1, 3) * x - Rational(1, 2) * x, False, False),
    # zero only through a relation between unknowns: not seen here, found by SymPy's expansion
    ("needs sqrt(2)^2 = 2", sqrt(2) * (x + sqrt(2)) - sqrt(2) * x - 2, False, True),
    ("needs exp(a + b) = exp(a) exp(b)", exp(x + y) - exp(x) * exp(y), False, True),
]


@pytest.mark.parametrize(("expr", "vanishing", "zero"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_vanishes_exactly_when_zero_as_a_function_of_free_unknowns(expr, vanishing, zero):
    assert vanishes(expr) is vanishing
    assert simplifies_to_zero(expr) is zero


def test_a_float_is_not_read():
    assert vanishes(0.5 * x - y) is None
