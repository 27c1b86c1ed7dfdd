"""The hand-formula grammar: text (plain and LaTeX) to SymPy, errors with their column, and safety.

Each grammar row is checked against an expected SymPy expression by writing both out entry by entry
at concrete shapes, so a row holds whatever form SymPy chooses for the expression.
"""

import builtins
import re

import pytest
import sympy
from sympy import HadamardPower, HadamardProduct, MatrixSymbol, OneMatrix, Rational, Symbol
from sympy.parsing import sympy_parser

from derive.checker.formula import HandShapeError, Scope, from_sympy, to_text
from derive.checker.grammar import parse
from derive.checker.meaning import to_sympy
from derive.core.activations import relu, sigmoid
from derive.core.activations import tanh as tanh_
from derive.core.softmax import softmax
from derive.core.symbols import Intermediate, LossGradient
from derive.errors import ParseError

N = Symbol("N", integer=True, positive=True)
X = MatrixSymbol("X", 4, 2)
W1 = MatrixSymbol("W1", 2, 3)
G = MatrixSymbol("G", 4, 3)
Z = Intermediate("Z", 4, 3)
yhat = MatrixSymbol("yhat", 4, 1)
dZ = LossGradient("Z", 4, 3)
ONES_ROW, ONES_COL = OneMatrix(1, 4), OneMatrix(3, 1)


@pytest.fixture(scope="module")
def scope():
    return Scope({"N": N, "X": X, "W1": W1, "G": G, "Z": Z, "yhat": yhat}, {"Z": dZ})


def same(a, b) -> bool:
    """Equal entry by entry (N = 5), whatever the form."""
    a, b = (sympy.ImmutableMatrix(e.subs(N, 5).as_explicit()) for e in (a, b))
    return a.shape == b.shape and all(sympy.expand(x - y) == 0 for x, y in zip(a, b))


GRAMMAR = [
    ("X^T G", X.T * G),
    ("X.T @ G", X.T * G),
    ("Xᵀ G", X.T * G),
    ("X^{T} G", X.T * G),
    ("X^⊤ · G", X.T * G),
    ("(G^T X)^T", X.T * G),
    ("G ⊙ Z", HadamardProduct(G, Z)),
    ("G * Z", HadamardProduct(G, Z)),
    ("G ∘ Z", HadamardProduct(G, Z)),
    ("G ⊘ Z", HadamardProduct(G, HadamardPower(Z, -1))),
    ("G / Z", HadamardProduct(G, HadamardPower(Z, -1))),
    ("Z^2", HadamardPower(Z, 2)),
    ("2 G", 2 * G),
    ("2*G", 2 * G),
    ("G/N", G / N),
    ("1/N X^T G", X.T * G / N),
    ("2/N X^T G", 2 * X.T * G / N),
    ("X^T G / N", X.T * G / N),
    ("0.5 G", Rational(1, 2) * G),
    ("-X^T G", -X.T * G),
    ("G - Z", G - Z),
    ("-G + Z", Z - G),
    ("1 - Z", OneMatrix(4, 3) - Z),
    ("X W1 + G", X * W1 + G),
    ("X @ W1 ⊙ Z", HadamardProduct(X * W1, Z)),            # a product binds tighter than ⊙
    ("relu(Z)", relu(Z)),
    ("ReLU(Z)", relu(Z)),
    ("relu'(Z)", relu.prime()(Z)),
    ("sigmoid'(Z)", sigmoid.prime()(Z)),
    ("σ(Z) ⊙ (1 - σ(Z))", HadamardProduct(sigmoid(Z), OneMatrix(4, 3) - sigmoid(Z))),
    ("tanh(Z)", tanh_(Z)),
    ("softmax(Z)", softmax(Z, 1)),
    ("1[Z > 0]", relu.prime()(Z)),
    ("(Z > 0) * G", HadamardProduct(relu.prime()(Z), G)),
    ("G ⊙ 𝟙[X W1 > 0]", HadamardProduct(G, relu.prime()(X * W1))),
    ("sum_rows(G)", ONES_ROW * G),
    ("1^T G", ONES_ROW * G),
    ("G 1", G * ONES_COL),
    ("sum_cols(G)", G * ONES_COL),
    ("dL/dZ", dZ),
    ("∂L/∂Z", dZ),
    ("dJ/dZ", dZ),
    ("dZ", dZ),
    ("X^T dL/dZ", X.T * dZ),
    ("X^T (dZ ⊙ relu'(Z))", X.T * HadamardProduct(dZ, relu.prime()(Z))),
    ("W_1", W1),
    ("W^{(1)}", W1),
    ("W^(1)", W1),
    ("y_hat", yhat),
    ("(1/N)^T X^T G", X.T * G / N),          # a scalar is its own transpose
    ("N^T G", N * G),
]

LATEX = [
    (r"X^\top \frac{\partial L}{\partial Z}", X.T * dZ),
    (r"X^{\top} \frac{dL}{dZ}", X.T * dZ),
    (r"\mathbf{X}^T \left( G \odot \sigma'(Z) \right)", X.T * HadamardProduct(G, sigmoid.prime()(Z))),
    (r"\sigma'(Z) \odot \frac{\partial L}{\partial Z}", HadamardProduct(sigmoid.prime()(Z), dZ)),
    (r"\frac{1}{N} X^T G", X.T * G / N),
    (r"\frac{2}{N} \mathbf{X}^\top G", 2 * X.T * G / N),
    (r"G \circ \mathbb{1}[Z > 0]", HadamardProduct(G, relu.prime()(Z))),
    (r"\nabla_{Z} L", dZ),
    (r"\mathbf{1}^T G", ONES_ROW * G),
    (r"\mathbf{W}_1", W1),
    (r"\hat{y}", yhat),
    (r"X^T \cdot G", X.T * G),
    (r"\sum_i X_i^T G_i", X.T * G),                     # the sum over i of the outer products of rows i
    (r"\frac{1}{N} \sum_{i=1}^{4} X_{i}^T G_{i}", X.T * G / N),
    (r"\sum_{i=1}^{4} G_i", ONES_ROW * G),
]


@pytest.mark.parametrize(("text", "expected"), GRAMMAR + LATEX, ids=[t for t, _ in GRAMMAR + LATEX])
def test_grammar_row_means_its_expression(scope, text, expected):
    assert same(to_sympy(parse(text, scope)), expected)


@pytest.mark.parametrize("text", [t for t, _ in GRAMMAR])
def test_printed_formula_reads_back_the_same(scope, text):
    tree = parse(text, scope)
    assert same(to_sympy(parse(to_text(tree), scope)), to_sympy(tree))


def test_sympy_expressions_become_the_same_trees(scope):
    expr = X.T * HadamardProduct(dZ, relu.prime()(Z)) / N
    assert same(to_sympy(from_sympy(expr, scope)), expr)
    # a plain MatrixSymbol named like a quantity stands for that quantity
    assert to_sympy(from_sympy(MatrixSymbol("Z", 4, 3), scope)) == Z


# The checker prints derived gradients as text (to_text(from_sympy(...))): the text must read back.
PRINTED = [
    ("1 x 1 identity", sympy.Identity(1) + yhat.T * yhat),
    ("identity times a scalar", sympy.Identity(1) / N - yhat.T * yhat),
    ("scaled product", 2 * X.T * G / N),
    ("Hadamard with a derivative", HadamardProduct(dZ, relu.prime()(Z))),
]


@pytest.mark.parametrize("expr", [e for _, e in PRINTED], ids=[name for name, _ in PRINTED])
def test_a_sympy_form_prints_as_text_that_reads_back_the_same(scope, expr):
    text = to_text(from_sympy(expr, scope))
    assert same(to_sympy(parse(text, scope)), expr), text


ERRORS = [
    # text, column (1-based), what the message says
    ("X^T G)", 6, "unexpected ')'"),
    ("X^T (G", 7, "expected ')' but found the end"),
    ("foo(G)", 1, "unknown name 'foo'"),
    ("X^Q", 3, "after ^ write T"),
    ("relu'", 6, "expected '(' after relu"),
    ("relu", 1, "relu is a function"),
    ("dL/dQ", 1, "no gradient dL/dQ"),
    ("1[Z > 1]", 7, "compares with 0"),
    ("G; Z", 2, "unexpected character ';'"),
    ("", 1, "the formula is empty"),
    ("$X^T G", 1, "unexpected character '$'"),
    ("2^100000 G", 2, "an entrywise power is at most 64"),
    ("X = G", 3, "unexpected '='"),
    ("X'(G)", 2, "X'(...) is ambiguous"),
    (r"\sum G", 1, r"\sum_i (...)"),
    (r"\sum_{i=1}^{Q} G", 13, "a bound of the sum"),
    ("G +", 4, "the formula ends too early"),
    ("()", 2, "empty parentheses"),
    (r"\int G", 1, r"the LaTeX command \int is not part of this grammar"),
    ("softmax'(Z)", 1, "full Jacobian"),
    ("G.sum()", 2, "unexpected character '.'"),
    ("X^", 3, "after ^ write T"),
    (r"\frac{", 7, "the formula ends too early"),
]


@pytest.mark.parametrize(("text", "message"), [
    ("(" * 600 + "G" + ")" * 600, "nested too deeply"),
    ("G + " * 600 + "G", "at most 2000 are read"),
    ("G" + "^T" * 990, "nested too deeply"),            # postfix chains nest without the parser recursing
    ("G" + "'" * 1990, "nested too deeply"),
    ("(G" + "^2" * 600 + ")", "nested too deeply"),
])
def test_oversized_formula_is_a_parse_error(scope, text, message):
    with pytest.raises(ParseError, match=message):
        parse(text, scope)


@pytest.mark.parametrize(("text", "column", "message"), ERRORS, ids=[t or "empty" for t, _, _ in ERRORS])
def test_bad_formula_is_a_parse_error_with_a_caret_under_the_column(scope, text, column, message):
    with pytest.raises(ParseError) as raised:
        parse(text, scope)
    shown = str(raised.value)
    assert message in shown
    assert f"at column {column}" in shown
    caret_line = shown.splitlines()[-1]
    assert caret_line == "  " + " " * (column - 1) + "^"


def test_shapes_that_do_not_fit_name_both_operands(scope):
    with pytest.raises(HandShapeError, match=r"matrix product of X \(4 x 2\) and G \(4 x 3\)"):
        to_sympy(parse("X G", scope))
    with pytest.raises(HandShapeError, match=r"Hadamard product of .*X.*\(4 x 2\).*G \(4 x 3\)"):
        to_sympy(parse("X ⊙ G", scope))


ATTACKS = [
    "__import__('os').system('touch {marker}')",
    "().__class__.__bases__[0].__subclasses__()",
    "exec(\"open('{marker}', 'w')\")",
    "eval('1')",
    "lambda: open('{marker}', 'w')",
    "G.__class__",
    "open('{marker}', 'w')",
    "X^T G; import os",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_text_that_tries_to_run_code_is_rejected_and_runs_nothing(scope, attack, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    calls = []
    for name in ("eval", "exec", "compile", "__import__", "open"):
        original = getattr(builtins, name)
        monkeypatch.setattr(builtins, name, lambda *a, _o=original, _n=name, **k: (calls.append(_n), _o(*a, **k))[1])
    monkeypatch.setattr(sympy_parser, "parse_expr", lambda *a, **k: calls.append("parse_expr"))
    monkeypatch.setattr(sympy, "sympify", lambda *a, **k: calls.append("sympify"))
    with pytest.raises(ParseError) as raised:
        parse(attack.format(marker=marker), scope)
    monkeypatch.undo()
    assert not marker.exists()
    assert not [c for c in calls if c in ("eval", "exec", "compile", "parse_expr", "sympify")]
    assert re.search(r"at column \d+", str(raised.value))
