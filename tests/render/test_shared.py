"""Printing a deep gradient: the named form (derive/render/shared.py) is the expression again, the
printers (with derive's precedence of a product and each node printed once) still print what SymPy's
own would, and the printed forms of a 12-layer sigmoid MLP's gradient evaluate to derive's
independent numeric truth (derive/core/truth)."""

from __future__ import annotations

import numpy as np
import pytest
from sympy import HadamardProduct, MatAdd, MatMul, MatPow, MatrixSymbol, Rational, Transpose
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE_FUNCTIONS

from derive.bench.derivation import build_raw
from derive.core.derivation import gradients
from derive.core.truth import Program, evaluate
from derive.render.latex import DeriveLatexPrinter, latex
from derive.render.numpy import DeriveNumPyPrinter
from derive.render.shared import named

SIZES = {"N": 3, "H": 2}


def gradient(depth):
    loss, params = build_raw(depth)
    return gradients(loss, [params[0]])[params[0]]


def point(expr, seed=0):
    rng = np.random.default_rng(seed)
    size = {**SIZES, "1": 1}
    return {s.name: rng.standard_normal((size[str(s.rows)], size[str(s.cols)]))
            for s in sorted(expr.free_symbols, key=str) if isinstance(s, MatrixSymbol)}


@pytest.mark.parametrize("depth", [1, 2, 12])
def test_the_named_form_is_the_expression_again(depth):
    expr = gradient(depth)
    definitions, result = named(expr)
    defined = set()
    for symbol, value in definitions:
        assert not ({s for s in value.free_symbols if isinstance(s, MatrixSymbol)} - defined - expr.free_symbols)
        defined.add(symbol)
    assert len(definitions) == depth - 1  # sigmoid(Z_k), used by the next layer and by its derivative
    back = result
    for symbol, value in reversed(definitions):
        back = back.xreplace({symbol: value})
    assert back == expr
    values = point(expr)
    np.testing.assert_allclose(Program([result], SIZES, definitions).run(values)[0], evaluate(expr, values, SIZES),
                               rtol=1e-12)


A, B, C = (MatrixSymbol(name, 2, 2) for name in "ABC")
# Products with and without a leading minus sign, where their precedence decides the parentheses.
PRECEDENCE_CASES = [MatMul(-1, A, B), HadamardProduct(MatMul(-1, A, B), C), MatMul(C, MatMul(-2, A, B)),
                    Transpose(MatMul(-1, A, B)), MatPow(MatMul(-1, A), 2), HadamardProduct(MatMul(3, A, B), C),
                    MatAdd(C, MatMul(-1, A, B)), MatMul(Rational(-1, 2), A).T * B]


@pytest.mark.parametrize("expr", [*PRECEDENCE_CASES, *(gradient(depth) for depth in (2, 3, 4))],
                         ids=lambda expr: str(expr)[:32])
def test_str_and_latex_print_what_sympys_own_printers_print(expr, monkeypatch):
    ours_str, ours_latex = str(expr), latex(expr)
    monkeypatch.delitem(PRECEDENCE_FUNCTIONS, "MatMul")  # SymPy's own rule, with its doit
    monkeypatch.setattr(DeriveLatexPrinter, "_print_product", LatexPrinter._print_MatMul)
    monkeypatch.setattr(DeriveLatexPrinter, "_print", DeriveLatexPrinter._print_node)  # no memo either
    assert ours_str == str(expr)
    assert ours_latex == latex(expr)


def test_the_numpy_form_of_a_deep_gradient_is_its_value():
    expr = gradient(12)
    printer = DeriveNumPyPrinter()
    code = printer.doprint(expr)
    values = point(expr, seed=1)
    namespace = {"np": np, "N": SIZES["N"], **values}
    got = eval(code, namespace)  # derive's own printed code
    np.testing.assert_allclose(got, evaluate(expr, values, SIZES), rtol=1e-10)
