"""First-order identities of the Matrix Cookbook (Petersen and Pedersen, 2012), derived by derive.

Each row is a loss, the matrix it is differentiated by and the Cookbook's answer (its equation
number in the id). The derived closed form must equal that answer (both evaluated independently by
tests/evaluator.py at random points) and the elementwise truth (``g.verify``), and every form derive
returns must be tidy, as on the board: no identity factor, no transposed identity, no term twice.
Most identities come twice, written as a trace or 1 x 1 product and as the entry ``(...)[0, 0]``,
which SymPy expands into an index sum as it is built.
"""

from __future__ import annotations

import numpy as np
import pytest
from sympy import (
    Determinant,
    HadamardProduct,
    Identity,
    Inverse,
    MatAdd,
    MatMul,
    MatrixExpr,
    MatrixSymbol,
    OneMatrix,
    Symbol,
    Trace,
    Transpose,
    log,
    preorder_traversal,
)

import derive

from ..evaluator import evaluate

n, m = Symbol("n", integer=True, positive=True), Symbol("m", integer=True, positive=True)
X, A, B, C = (MatrixSymbol(s, n, n) for s in "XABC")
a, b, c, x = (MatrixSymbol(s, n, 1) for s in "abcx")
Am, Dm = MatrixSymbol("A", m, n), MatrixSymbol("D", m, n)
bm, em, Cm = MatrixSymbol("b", m, 1), MatrixSymbol("e", m, 1), MatrixSymbol("C", m, m)
DIMS = {n: 3, m: 2}


def entry(expr):
    """``expr[0, 0]``: with symbolic dims SymPy writes it as an index Sum."""
    return expr[0, 0]


ones_n = OneMatrix(n, 1)
residual = Am * x - bm

COOKBOOK = [
    # id (Cookbook equation), loss, wrt, the Cookbook's answer
    ("(69) a^T X b", a.T * X * b, X, a * b.T),
    ("(69) (a^T X b)[0, 0]", entry(a.T * X * b), X, a * b.T),
    ("(70) a^T X^T b", a.T * X.T * b, X, b * a.T),
    ("(70) (a^T X^T b)[0, 0]", entry(a.T * X.T * b), X, b * a.T),
    ("(69) (x^T a)[0, 0]", entry(x.T * a), x, a),
    ("(100) tr(AX)", Trace(A * X), X, A.T),
    ("(100) tr(XA)", Trace(X * A), X, A.T),
    ("(101) tr(A X^T)", Trace(A * X.T), X, A),
    ("(102) tr(AXB)", Trace(A * X * B), X, A.T * B.T),
    ("(103) tr(A X^T B)", Trace(A * X.T * B), X, B * A),
    ("(106) tr(X^2)", Trace(X * X), X, 2 * X.T),
    ("(108) tr(X^T A X)", Trace(X.T * A * X), X, A * X + A.T * X),
    ("(116) tr(X A X^T)", Trace(X * A * X.T), X, X * A.T + X * A),
    ("(117) tr(B^T X^T C X B)", Trace(B.T * X.T * C * X * B), X, C.T * X * B * B.T + C * X * B * B.T),
    ("(121) tr(X^3)", Trace(X**3), X, 3 * (X * X).T),
    ("(49) det(X)", Determinant(X), X, Determinant(X) * Inverse(X).T),
    ("(57) log det(X)", log(Determinant(X)), X, Inverse(X).T),
    ("(124) tr(X^-1 A)", Trace(Inverse(X) * A), X, -(Inverse(X) * A * Inverse(X)).T),
    ("(61) a^T X^-1 b", a.T * Inverse(X) * b, X, -Inverse(X).T * a * b.T * Inverse(X).T),
    ("(103) ||X||_F^2 = tr(X^T X)", Trace(X.T * X), X, 2 * X),
    ("(103) ||X||_F^2 = 1^T (X o X) 1", ones_n.T * HadamardProduct(X, X) * ones_n, X, 2 * X),
    ("(81) x^T A x", x.T * A * x, x, (A + A.T) * x),
    ("(81) (x^T A x)[0, 0]", entry(x.T * A * x), x, (A + A.T) * x),
    ("(77) b^T X^T X c", b.T * X.T * X * c, X, X * (b * c.T + c * b.T)),
    ("(77) (b^T X^T X c)[0, 0]", entry(b.T * X.T * X * c), X, X * (b * c.T + c * b.T)),
    ("(83) (Ax + b)^T C (Dx + e)", (Am * x + bm).T * Cm * (Dm * x + em), x,
     Am.T * Cm * (Dm * x + em) + Dm.T * Cm.T * (Am * x + bm)),
    ("(84) ||Ax - b||^2", residual.T * residual, x, 2 * Am.T * residual),
    ("(84) ||Ax - b||^2 = tr((Ax - b)(Ax - b)^T)", Trace(residual * residual.T), x, 2 * Am.T * residual),
    ("(84) (||Ax - b||^2)[0, 0]", entry(residual.T * residual), x, 2 * Am.T * residual),
    ("(x^T x)[0, 0]", entry(x.T * x), x, 2 * x),
    ("sum(A o X) = (1^T (A o X) 1)[0, 0]", entry(ones_n.T * HadamardProduct(A, X) * ones_n), X, A),
]


def matrix_factors(product: MatMul) -> list:
    return [arg for arg in product.args if isinstance(arg, MatrixExpr)]


def assert_tidy(expr, what: str) -> None:
    """No identity among a product's factors, no transposed identity, no matrix term twice in a sum."""
    for node in preorder_traversal(expr):
        assert not (isinstance(node, Transpose) and isinstance(node.arg, Identity)), f"{what}: {node} in {expr}"
        if isinstance(node, MatMul):
            factors = matrix_factors(node)
            assert len(factors) < 2 or not any(isinstance(f, Identity) for f in factors), f"{what}: {node} in {expr}"
        if isinstance(node, MatAdd):
            parts = [MatMul(*matrix_factors(t)) if isinstance(t, MatMul) else t for t in node.args]
            assert len(set(parts)) == len(parts), f"{what}: a repeated term in {node}"


def random_values(loss, rng) -> dict:
    """Every matrix of the loss filled; square ones diagonally dominant, so inverses and logs exist."""
    values = {}
    for symbol in {s for s in preorder_traversal(loss) if isinstance(s, MatrixSymbol)}:
        rows, cols = (int(d.subs(DIMS)) for d in symbol.shape)
        value = rng.uniform(-1.0, 1.0, size=(rows, cols))
        if rows == cols and rows > 1:
            value += rows * np.eye(rows)
        values[symbol.name] = value
    return values


@pytest.mark.parametrize(("loss", "wrt", "answer"), [row[1:] for row in COOKBOOK], ids=[row[0] for row in COOKBOOK])
def test_cookbook_identity(loss, wrt, answer):
    g = derive.gradients(loss, [wrt])
    rng = np.random.default_rng(0)
    for _ in range(3):
        values = random_values(loss, rng)
        closed = np.asarray(evaluate(g[wrt], values, DIMS), dtype=float)
        expected = np.asarray(evaluate(answer, values, DIMS), dtype=float)
        assert closed.shape == expected.shape
        assert np.allclose(closed, expected, rtol=1e-10, atol=1e-12), f"{g[wrt]} is not the Cookbook's {answer}"
    assert g.verify(DIMS, points=2)[0].max_relative_error < 1e-10
    assert_tidy(g[wrt], "closed form")
    assert_tidy(g.compact(wrt), "compact form")
    for step in g.steps:
        assert_tidy(step.result, f"step {step.rule}")


def test_cookbook_table_is_the_promised_size():
    assert len(COOKBOOK) >= 22


UNTIDY = [
    ("identity factor", MatMul(A, Identity(n))),
    ("transposed identity", MatAdd(A, Transpose(Identity(n)))),
    ("repeated term", MatAdd(MatMul(A, X), MatMul(2, A, X))),
]


@pytest.mark.parametrize("expr", [row[1] for row in UNTIDY], ids=[row[0] for row in UNTIDY])
def test_the_tidiness_check_can_fail(expr):
    with pytest.raises(AssertionError):
        assert_tidy(expr, "untidy")
