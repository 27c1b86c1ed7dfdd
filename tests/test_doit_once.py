"""tests/doit_once.py: a declaration run with doit once per expression object defines the same
expressions as run plainly, and SymPy's classes are left as they were."""

import re

from hypothesis import given, settings
from sympy import BlockMatrix, MatMul, Matrix, MatrixSymbol, Symbol, srepr

from .doit_once import _classes_defining_doit, doit_once
from .networks import networks


def written(expr) -> str:
    """``srepr(expr)`` with each index sum's dummies numbered by first appearance (a run makes new ones)."""
    numbers: dict = {}
    return re.sub(r"dummy_index=(\d+)", lambda m: f"dummy_index=#{numbers.setdefault(m[1], len(numbers))}",
                  srepr(expr))


# Small networks (3 layers at most): the plain run of a deep one takes up to a minute, which is the point.
@settings(max_examples=12)
@given(net=networks(most=3, widest=2, batch=2))
def test_a_drawn_declaration_defines_the_same_expressions(net):
    remembered, plain = net.build(), net.build_plainly()
    for key in ("loss", "wrt", "names", "dims"):
        assert written(remembered[key]) == written(plain[key]), key


def test_an_expression_is_done_once_a_mutable_matrix_each_time_and_the_classes_are_restored():
    N = Symbol("N", integer=True, positive=True)
    X, C, W = MatrixSymbol("X", N, 2), MatrixSymbol("C", 2, 2), MatrixSymbol("W", 4, 1)
    before = {cls: cls.__dict__["doit"] for cls in _classes_defining_doit()}
    product = MatMul(BlockMatrix([[X, X * C]]), W)
    mutable = Matrix([[1]])
    with doit_once():
        assert product.doit() is product.doit()
        assert mutable.doit() == Matrix([[1]])
        mutable[0, 0] = 2
        assert mutable.doit() == Matrix([[2]])
    assert {cls: cls.__dict__["doit"] for cls in _classes_defining_doit()} == before
    assert product.doit() is not product.doit()   # outside, SymPy builds it anew each time
