"""The hand-derivation checker: the notes' correct results pass, realistic slips fail with the right
diagnosis, and what a report shows (entries, counterexample, correction) is itself re-checked
against an independent truth: the elementwise derivative of the loss (``g.elementwise``)."""

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sympy import Determinant, Inverse, MatrixSymbol, Symbol, Trace, isprime, lambdify, log

import derive
from derive.checker.diagnoses import DIAGNOSES
from derive.checker.grammar import parse
from derive.checker.network import NetworkView, choose_dims
from derive.cli import run_check
from derive.errors import ParseError
from derive.examples import catalogue, get
from derive.testing import assert_gradient

ROOT = Path(__file__).resolve().parents[2]


def check_example(name: str, wrt: str, hand, **options):
    example = get(name)
    return derive.check(hand, example.loss, wrt, names=example.names, **options)


# The notes' own results, as a student would write them (plain text and LaTeX).
RIGHT = [
    # note 000: p = sigmoid(relu(X w1) w2 + 1 b), mean BCE; appendix dL/dW = X^T dL/dY
    ("seed_000_bce", "w2", "h^T (p - y)/N"),
    ("seed_000_bce", "w2", "1/N h^T (p - y)"),
    ("seed_000_bce", "w2", "h^T dL/dz"),
    ("seed_000_bce", "b", "1^T (p - y)/N"),
    ("seed_000_bce", "b", "sum_rows(p - y)/N"),
    ("seed_000_bce", "w1", "X^T ((p - y)/N w2^T ⊙ 1[X w1 > 0])"),
    ("seed_000_bce", "w1", "X^T (dL/dz w2^T ⊙ relu'(a))"),
    ("seed_000_bce", "w1", r"X^\top \frac{\partial L}{\partial a}"),
    # note 001: linear regression, one example and a batch; stacked layers; sigmoid between
    ("seed_001_linreg_single", "w", "x^T dL/dyhat"),
    ("seed_001_linreg_single", "w", "-2 x^T (y - yhat)"),
    ("seed_001_linreg_single", "b", "dL/dyhat"),
    ("seed_001_linreg_single", "b", "-2(y - yhat)"),
    ("seed_001_linreg_batch", "w", "X^T dL/dyhat"),
    ("seed_001_linreg_batch", "w", "-2/N X^T (y - yhat)"),
    ("seed_001_linreg_batch", "b", "sum_rows(dL/dyhat)"),
    ("seed_001_two_linear", "W2", "H^T dL/dyhat"),
    ("seed_001_two_linear", "b2", "1^T dL/dyhat"),
    ("seed_001_two_linear", "W1", "X^T dL/dyhat W2^T"),
    ("seed_001_two_linear", "b1", "sum_rows(dL/dyhat W2^T)"),
    ("seed_001_sigmoid_between", "W2", "A^T dL/dyhat"),
    ("seed_001_sigmoid_between", "b2", "sum_rows(dL/dyhat)"),
    ("seed_001_sigmoid_between", "W1", "X^T (dL/dyhat W2^T ⊙ sigmoid(Z) ⊙ (1 - sigmoid(Z)))"),
    ("seed_001_sigmoid_between", "b1", r"\mathbf{1}^\top (\frac{dL}{d\hat{y}} W_2^T \odot A \odot (1 - A))"),
    # note 002: the sigmoid neuron and two paths that add up
    ("seed_002_neuron", "w0", "sigmoid'(s) x0"),
    ("seed_002_neuron", "x0", "w0 f ⊙ (1 - f)"),
    ("seed_002_neuron", "w2", r"\sigma'(s)"),
    ("seed_002_two_paths", "x", "sigmoid'(q) y + 1"),
    ("seed_002_two_paths", "y", "x sigmoid'(q)"),
    # note 003: ds = p - y, dW2 = ds h1^T, dh1 = W2^T ds, da1 = dh1 ⊙ 1[a1 > 0], dW1 = da1 x^T
    ("seed_003_mlp_column", "W2", "ds h1^T"),
    ("seed_003_mlp_column", "W2", "(p - y) h1^T"),
    ("seed_003_mlp_column", "b2", "ds"),
    ("seed_003_mlp_column", "W1", "da1 x^T"),
    ("seed_003_mlp_column", "W1", "(W2^T ds ⊙ 1[a1 > 0]) x^T"),
    ("seed_003_mlp_column", "b1", "dh1 ⊙ 1[a1 > 0]"),
    # note 004: g <- g ⊙ f'(a), dW = g h^T, g <- W^T g (Algorithm 6.4), columns are examples
    ("seed_004_sigmoid_231", "W2", "dL/dv h^T"),
    ("seed_004_sigmoid_231", "W2", "((z - t)/N ⊙ z ⊙ (1 - z)) h^T"),
    ("seed_004_sigmoid_231", "b2", "dL/dv 1"),
    ("seed_004_sigmoid_231", "W1", "(W2^T dL/dv ⊙ sigmoid'(u)) X^T"),
    ("seed_004_sigmoid_231", "b1", "sum_cols(dL/du)"),
    # beyond the notes
    ("mlp3_tanh", "W1", "X^T ((dL/dZ2 W2^T) ⊙ (1 - H1^2))"),
    ("residual_block", "W1", "X^T ((dL/dH2 + dL/dZ2 W2^T) ⊙ relu'(Z1))"),
]


def ids(rows):
    return [f"{row[0]}:{row[1]}:{row[2]}" for row in rows]


@pytest.mark.parametrize(("example", "wrt", "hand"), RIGHT, ids=ids(RIGHT))
def test_the_notes_right_results_pass(example, wrt, hand):
    result = check_example(example, wrt, hand)
    assert result, result.report()
    assert result.method == ("numeric" if example.startswith(("mlp3", "residual")) else "symbolic")
    assert result.report().startswith(f"dL/d{wrt}: right")


SOME_RIGHT = [row for row in RIGHT if row[0].startswith("seed")][::3]


@pytest.mark.parametrize(("example", "wrt", "hand"), SOME_RIGHT, ids=ids(SOME_RIGHT))
def test_a_passing_hand_formula_equals_the_elementwise_truth(example, wrt, hand):
    """Independent of the deriver's closed form: the hand formula's entries against d(loss)/d(entry)."""
    ex = get(example)
    net = NetworkView(ex.loss, next(p for p in ex.wrt if p.name == wrt), ex.names, None)
    truth = net.g.elementwise(wrt, net.dims).xreplace(net.constraints)
    point = net.points(1, seed=3)[0]
    entries = {k: v for k, v in _entries(net, point).items()}
    expected = np.array(lambdify([], truth.xreplace(entries), "numpy")(), dtype=float)
    assert np.allclose(net.numeric(parse(hand, net.scope), point), expected, rtol=1e-9, atol=1e-12)


def _entries(net, point):
    from derive.checker.network import entries_of
    return entries_of(point, net)


# Realistic slips, one or more per diagnosis; the notes' own slips among them.
WRONG = [
    # a factor: the 1/N of the mean, the 2 of the square, a sign
    ("seed_000_bce", "w2", "h^T (p - y)", "factor"),
    ("seed_001_linreg_batch", "w", "X^T (yhat - y)", "factor"),
    ("seed_001_linreg_batch", "w", "2/N X^T (y - yhat)", "factor"),
    ("seed_004_sigmoid_231", "W2", "((z - t)/(2 N) ⊙ z ⊙ (1 - z)) h^T", "factor"),
    # a transpose, of the whole result or of one operand
    ("seed_000_bce", "w2", "(p - y)^T h / N", "transpose"),
    ("seed_003_mlp_column", "W2", "h1 ds^T", "transpose"),
    ("seed_000_bce", "w1", "X dL/da", "transpose"),
    # a product in the wrong order (note 003 in row-vector habits)
    ("seed_003_mlp_column", "W1", "x^T da1", "product-order"),
    ("seed_003_mlp_column", "W2", "h1^T ds", "product-order"),
    # an activation's derivative left out (note 001's two-linear formula reused with a sigmoid)
    ("seed_000_bce", "w1", "X^T (dL/dz w2^T)", "missing-derivative"),
    ("seed_001_sigmoid_between", "W1", "X^T dL/dyhat W2^T", "missing-derivative"),
    # note 004: sigma'(a2) (1 - sigma(a2)), a factor of the derivative written twice
    ("seed_004_sigmoid_231", "W2", "((z - t)/N ⊙ sigmoid'(v) ⊙ (1 - z)) h^T", "derivative-twice"),
    ("seed_004_sigmoid_231", "W1", "(W2^T dL/dv ⊙ sigmoid'(u) ⊙ sigmoid'(u)) X^T", "derivative-twice"),
    # note 001: X^T dL/dyhat w2^T (sigma(h)(1 - sigma(h))), the Hadamard product after X^T
    ("seed_001_sigmoid_between", "W1", "X^T dL/dyhat W2^T ⊙ sigmoid'(Z)", "hadamard-order"),
    # note 001: "dL/db2 = sum dL/dyhat w2^T sigma'(h)" is the gradient of b1
    ("seed_001_sigmoid_between", "b2", "sum_rows(dL/dyhat W2^T ⊙ sigmoid'(Z))", "other-parameter"),
    # the gradient of the pre-activation a = X w1 for the weight's; a bias's without the batch sum
    ("seed_000_bce", "w1", "dL/da", "pre-activation"),
    ("seed_000_bce", "b", "(p - y)/N", "missing-batch-sum"),
    ("seed_001_two_linear", "b1", "dL/dyhat W2^T", "missing-batch-sum"),
    # note 001: dy/dH with w^(1) entries where w^(2) belongs
    ("seed_001_two_linear", "W1", "X^T dL/dyhat W1^T", "wrong-symbol"),
]


def test_every_diagnosis_kind_has_a_wrong_example():
    assert {row[3] for row in WRONG} == set(DIAGNOSES)


@pytest.mark.parametrize(("example", "wrt", "hand", "kind"), WRONG, ids=ids(WRONG))
def test_a_slip_fails_with_its_diagnosis(example, wrt, hand, kind):
    result = check_example(example, wrt, hand)
    assert not result
    assert result.diagnosis is not None, result.report()
    assert result.diagnosis.kind == kind, result.report()
    assert f"diagnosis ({kind})" in result.report()


@pytest.mark.parametrize(("example", "wrt", "hand", "kind"), [r for r in WRONG if r[3] != "other-parameter"],
                         ids=ids([r for r in WRONG if r[3] != "other-parameter"]))
def test_the_correction_a_diagnosis_proposes_is_right(example, wrt, hand, kind):
    corrected = check_example(example, wrt, hand).diagnosis.corrected
    assert corrected != hand
    assert check_example(example, wrt, corrected), corrected


def test_a_wrong_entry_comes_with_a_counterexample_that_holds():
    result = check_example("seed_000_bce", "w2", "h^T (p - y) + 1")
    assert not result and result.diagnosis is None
    c = result.counterexample
    assert c.hand_value != pytest.approx(c.derived_value)
    # both printed entries give the printed values at the printed point
    assert float(c.hand_entry.xreplace(c.point)) == pytest.approx(c.hand_value, rel=1e-9)
    assert float(c.derived_entry.xreplace(c.point)) == pytest.approx(c.derived_value, rel=1e-9)
    # and the derived entry is the elementwise truth
    example = get("seed_000_bce")
    truth = derive.gradients(example.loss, example.wrt).elementwise("w2", result.dims)
    assert float(truth[c.entry].xreplace(c.point)) == pytest.approx(c.derived_value, rel=1e-9)
    report = result.report()
    assert f"first in entry [{c.entry[0] + 1}, {c.entry[1] + 1}]" in report     # numbered from 1, as on the sheets
    assert "counterexample: at h[1, 1] = " in report           # named quantities, readable
    # the readable entries give the same values at the named quantities' values
    assert float(c.named_hand_entry.xreplace(c.named_point)) == pytest.approx(c.hand_value, rel=1e-9)
    assert float(c.named_derived_entry.xreplace(c.named_point)) == pytest.approx(c.derived_value, rel=1e-9)
    assert "no simple slip explains the difference" in report


def test_a_shape_mismatch_shows_both_shapes_and_the_likely_cause():
    result = check_example("seed_003_mlp_column", "W2", "h1 (p - y)^T")
    assert not result
    assert result.shape_problem == ("the hand formula is H x C but dL/dW2 must have the shape of W2, C x H; "
                                    "its transpose has the right shape (a transpose missing?)")
    assert result.diagnosis.kind == "transpose"


def test_sympy_expressions_are_checked_like_text():
    from derive.examples.seed_000 import N, y
    example = get("seed_000_bce")
    h, p = MatrixSymbol("h", N, 3), MatrixSymbol("p", N, 1)    # plain symbols named like the quantities
    assert derive.check(example.derive().compact("w1"), example.loss, "w1", names=example.names)
    right = derive.check(h.T * (p - y) / N, example.loss, "w2", names=example.names)
    assert right, right.report()
    wrong = derive.check(h.T * (p - y), example.loss, "w2", names=example.names)
    assert not wrong and wrong.diagnosis.kind == "factor"
    assert wrong.hand == "h^T (p - y)" and wrong.diagnosis.corrected == "1/N h^T (p - y)"


def test_given_dims_are_used():
    result = check_example("seed_000_bce", "w2", "h^T (p - y)/N", dims={"N": 3})
    assert result and result.dims == {next(iter(result.dims)): 3}


def test_the_gradient_asked_for_cannot_be_named_in_its_own_answer():
    with pytest.raises(ParseError, match="no gradient dL/dw2"):
        check_example("seed_000_bce", "w2", "dL/dw2")


def test_a_formula_outside_the_grammar_raises_parse_error():
    with pytest.raises(ParseError, match="unknown name 'q'"):
        check_example("seed_000_bce", "w2", "q^T (p - y)")


# --- every hand answer gets a verdict, checked against the independent truth (tests/hand_truth.py) ---

N_, D_, H_ = (Symbol(n, integer=True, positive=True) for n in ("N", "D", "H"))
X3, y_, w3 = MatrixSymbol("X", N_, 3), MatrixSymbol("y", N_, 1), MatrixSymbol("w", 3, 1)
XD, wD = MatrixSymbol("X", N_, D_), MatrixSymbol("w", D_, 1)
SQ, A_, x_ = MatrixSymbol("X", D_, D_), MatrixSymbol("A", D_, D_), MatrixSymbol("x", D_, 1)
W_ = MatrixSymbol("W", D_, H_)
TIED = XD * W_ * W_.T - XD

# Losses beyond the built-in networks: (loss, parameter, names).
CASES = {
    "mean square, X N x 3": (Trace((X3 * w3 - y_).T * (X3 * w3 - y_)) / N_, w3, {}),
    "mean square, X N x D": (Trace((XD * wD - y_).T * (XD * wD - y_)) / N_, wD, {}),
    "square over D": (Trace((XD * wD - y_).T * (XD * wD - y_)) / D_, wD, {}),
    "det": (Determinant(SQ), SQ, {}),
    "log det": (log(Determinant(SQ)), SQ, {}),
    "quadratic form": (Trace(x_.T * A_ * x_), x_, {}),
    "tied weights": (Trace(TIED.T * TIED), W_, {}),
    "tied weights, R named": (Trace(TIED.T * TIED), W_, {"R": TIED}),
    "cross-entropy, any target": (derive.cross_entropy(XD * W_, MatrixSymbol("Y", N_, H_)), W_,
                                  {"Z": XD * W_, "P": derive.softmax(XD * W_)}),
    "slice X[:, 4:7]": (Trace((XD[:, 4:7] * w3 - y_).T * (XD[:, 4:7] * w3 - y_)) / N_, w3, {"S": XD[:, 4:7]}),
}


def case(name: str, wrt: str | None = None):
    """(loss, parameter, names) of a case above or of a built-in network."""
    if name in CASES:
        return CASES[name]
    example = get(name)
    return example.loss, next(p for p in example.wrt if p.name == wrt), example.names


def _networks():
    for name, example in catalogue().items():
        yield get(name)
        yield from (get(name, convention) for convention in example.variants)


@pytest.mark.parametrize("loss", [e.loss for e in _networks()] + [CASES[k][0] for k in CASES],
                         ids=[e.name for e in _networks()] + list(CASES))
def test_default_dims_are_distinct_odd_primes_unlike_the_fixed_sizes(loss):
    dims = choose_dims(loss)
    fixed = {int(d) for s in loss.atoms(MatrixSymbol) for d in s.shape if d.is_Integer}
    assert set(dims) == {d for s in loss.atoms(MatrixSymbol) for d in s.shape if not d.is_Integer}
    assert len(set(dims.values())) == len(dims)       # no size is another's
    assert not set(dims.values()) & fixed
    assert all(v > 2 and isprime(v) for v in dims.values()), dims   # odd primes: no 1, 2 or 2 x another


_TRUTHS: dict = {}


def independent_verdict(name: str, wrt: str | None, hand) -> str:
    pytest.importorskip("torch", reason="autograd gives the independent truth's gradients")
    from ..hand_truth import HandTruth
    if (name, wrt) not in _TRUTHS:
        loss, param, names = case(name, wrt)
        _TRUTHS[name, wrt] = HandTruth(loss, param, names)
    return _TRUTHS[name, wrt].verdict(hand)


def assert_verdict_is_the_truth(name: str, wrt: str | None, hand, **options):
    """The checker's verdict (a CheckResult, never an exception) is the independent one, the report
    names the dims it used, and a correction it offers is right by the independent truth too."""
    loss, param, names = case(name, wrt)
    result = derive.check(hand, loss, param, names=names, **options)
    assert isinstance(result, derive.CheckResult)
    assert bool(result) == (independent_verdict(name, wrt, hand) == "right"), result.report()
    report = result.report()
    assert all(f"{d}={v}" in report for d, v in result.dims.items()), report
    if isinstance(hand, str) and result.diagnosis is not None and result.diagnosis.kind != "other-parameter":
        assert independent_verdict(name, wrt, result.diagnosis.corrected) == "right", report
    return result


# Item 1: at N = 2, 2/N is 1 and X^T (X w - y) passed for the gradient of Trace(r^T r)/N; at N = D a
# formula with N in place of D passes; at N = 4, 1/2 passes for 2/N.
HIDDEN_FACTORS = [
    ("mean square, X N x 3", None, "X^T (X w - y)", False),
    ("mean square, X N x 3", None, "2/N X^T (X w - y)", True),
    ("mean square, X N x 3", None, "2 X^T (X w - y)", False),
    ("mean square, X N x 3", None, "1/N X^T (X w - y)", False),
    ("mean square, X N x 3", None, "1/2 X^T (X w - y)", False),
    ("mean square, X N x D", None, "2/N X^T (X w - y)", True),
    ("mean square, X N x D", None, "2/D X^T (X w - y)", False),
    ("square over D", None, "2/D X^T (X w - y)", True),
    ("square over D", None, "2/N X^T (X w - y)", False),
    ("seed_001_linreg_batch", "w", "X^T (yhat - y)", False),
    ("seed_004_sigmoid_231", "W2", "((z - t) ⊙ z ⊙ (1 - z)) h^T / 2", False),
    ("seed_004_sigmoid_231", "W2", "((z - t)/N ⊙ z ⊙ (1 - z)) h^T", True),
    # right at the checker's own dims only (N = 5, D = 3): once passed, the second set of dims refuses them
    ("mean square, X N x 3", None, "2/5 X^T (X w - y)", False),
    ("mean square, X N x D", None, "(D - 1)/N X^T (X w - y)", False),
    ("mean square, X N x D", None, "2/N X^T (X w - y) (N - 4)", False),
    # the slice X[:, 4:7] needs D >= 7: the primes skip 5 for D (the slice would end past X's columns)
    ("slice X[:, 4:7]", None, "2/N S^T (S w - y)", True),
    ("slice X[:, 4:7]", None, "S^T (S w - y)", False),
    ("slice X[:, 4:7]", None, "2/D S^T (S w - y)", False),
]


@pytest.mark.parametrize(("name", "wrt", "hand", "right"), HIDDEN_FACTORS, ids=ids(HIDDEN_FACTORS))
def test_no_default_dimension_hides_a_constant_factor(name, wrt, hand, right):
    result = assert_verdict_is_the_truth(name, wrt, hand)
    assert bool(result) is right
    assert "note:" not in result.report()      # the default dims warn of nothing


def test_a_formula_right_at_the_checkers_dims_only_is_wrong_and_the_report_says_where():
    result = assert_verdict_is_the_truth("mean square, X N x 3", None, "2/5 X^T (X w - y)")
    assert not result and result.equal_only_at == {N_: 5} and result.dims[N_] != 5
    assert "equal at N=5 only" in result.report() and result.counterexample is not None


@pytest.mark.parametrize(("dims", "hidden"), [({"N": 2}, True), ({"N": 4}, False), ({"N": 3}, False)])
def test_dims_that_can_hide_a_factor_are_named_in_the_report(dims, hidden):
    loss, param, _ = case("mean square, X N x 3")
    result = derive.check("X^T (X w - y)", loss, param, dims=dims)
    assert bool(result) is hidden             # at N = 2 the wrong answer passes: the note says why
    assert ("note: at N=2 a constant factor can pass unseen" in result.report()) is hidden
    assert independent_verdict("mean square, X N x 3", None, "X^T (X w - y)") == "wrong"


# Item 2: a wrong answer starting with a scalar factor crashed the diagnosis ('float' has no .T).
SCALAR_PREFIXED = [
    ("mlp3_relu", "W3", "1/N X^T (S - Y)"),
    ("mlp3_relu", "W3", "1/N H2^T (S - Y)"),
    ("mlp3_relu", "W3", "1/N H2^T (P - Y)"),
    ("seed_000_bce", "w2", r"\frac{1}{N} h^T (z - y)"),
    ("seed_000_bce", "w2", "1/N h (p - y)"),
    ("seed_000_bce", "w2", "1/N h^T (p - y)"),
    ("seed_000_bce", "w1", "1/N X^T (p - y) w2^T"),
    ("seed_001_linreg_batch", "w", "2/N X (yhat - y)"),
    ("seed_003_mlp_column", "W2", r"\frac{1}{2} (p - y)^T h1"),
    ("seed_004_sigmoid_231", "W1", r"\frac{1}{2N} (W2^T dL/dv ⊙ sigmoid'(u)) X"),
    ("residual_block", "W2", "-1/N H1 dL/dZ2"),
    ("mlp3_tanh", "W2", "(2/N) H1^T dL/dZ2"),
]


@pytest.mark.parametrize(("name", "wrt", "hand"), SCALAR_PREFIXED, ids=ids(SCALAR_PREFIXED))
def test_a_scalar_prefixed_answer_gets_a_verdict(name, wrt, hand):
    assert_verdict_is_the_truth(name, wrt, hand)
    code, text = run_check(name, wrt, hand)          # derive check: 0 or 1 with the report, never a crash
    assert code == (0 if independent_verdict(name, wrt, hand) == "right" else 1)
    assert text.startswith(f"dL/d{wrt}: ")


# Formulas at the edges: a division by 0 (inf equalled inf and passed), zero, a double sign.
EDGES = [
    ("seed_000_bce", "w2", "h^T (p - y) ⊘ 0"),
    ("seed_000_bce", "w2", "h^T (p - y)/0"),
    ("seed_000_bce", "w2", "h^T ((p - y) ⊘ (p - p))"),
    ("seed_000_bce", "w2", "h^T log(0 (p - y))"),
    ("seed_000_bce", "w2", "0 w2"),
    ("seed_000_bce", "w2", "w2 - w2"),
    ("seed_000_bce", "w2", "- - h^T (p - y)/N"),
    ("seed_000_bce", "w2", "(1/N)^T h^T (p - y)"),
    ("log det", None, "(X^{-1})^T"),       # an entrywise power by the grammar, though meant as the inverse
    # functions of scalars: once 'WRONG' with "the argument of exp must be a matrix"
    ("mean square, X N x D", None, "exp(0) 2/N X^T (X w - y)"),
    ("mean square, X N x D", None, "log(exp(2))/N X^T (X w - y)"),
    ("mean square, X N x D", None, "log(N)/N X^T (X w - y)"),
]


@pytest.mark.parametrize(("name", "wrt", "hand"), EDGES, ids=ids(EDGES))
def test_a_formula_at_the_edges_gets_a_verdict(name, wrt, hand):
    assert_verdict_is_the_truth(name, wrt, hand)


# Long formulas within the grammar's 2000 characters: every slip tried on every part of them took
# minutes (the diagnosis is quadratic in the formula's size); past a size the verdict comes alone
LONG = [
    ("seed_000_bce", "w2", "h^T (p - y) " + "1/N " * 400),
    ("seed_000_bce", "w2", "X^T X " * 200 + "w1 w2 0/N"),
    ("seed_000_bce", "w2", "h^T (p - y)/N" + " + 0 h^T p" * 100),
]


@pytest.mark.parametrize(("name", "wrt", "hand"), LONG, ids=[hand[:20] for _, _, hand in LONG])
def test_a_long_formula_gets_its_verdict_in_seconds(name, wrt, hand):
    start = time.process_time()
    assert_verdict_is_the_truth(name, wrt, hand)
    assert time.process_time() - start < 20


# The derived form a report shows, its named gradients written in, read back by the grammar: it must be
# the derived gradient, or a student who copies it is told it is wrong.
DERIVED_READ_BACK = [
    ("seed_000_bce", "w1"),
    ("seed_002_two_paths", "x"),
    ("seed_003_mlp_column", "W1"),
    pytest.param("tied weights, R named", None, marks=pytest.mark.xfail(
        strict=True, reason="the gradient of the trace's argument is shown as 'dL/dZ_1 = I': the grammar has no I")),
    pytest.param("cross-entropy, any target", None, marks=pytest.mark.xfail(
        strict=True, reason="the ones-matrix 1 1^T of softmax(Z) ⊙ (Y 1 1^T) prints as '1', which the grammar "
                            "reads as a ones column (P ⊙ Y 1: a shape error), and '1 1^T' has no length it can read")),
]


@pytest.mark.parametrize(("name", "wrt"), DERIVED_READ_BACK)
def test_the_derived_form_a_report_shows_reads_back_as_right(name, wrt):
    loss, param, names = case(name, wrt)
    shown = derive.check("0", loss, param, names=names)
    text = shown.derived
    for _ in shown.definitions:   # a definition may use another gradient: write them in until none is left
        for left, right in shown.definitions:
            text = re.sub(re.escape(left) + r"(?!\w)", lambda _, written=f"({right})": written, text)
    assert "dL/d" not in text and derive.check(text, loss, param, names=names), text


def test_a_negative_power_of_a_square_matrix_is_read_entry_by_entry_and_the_report_says_so():
    result = assert_verdict_is_the_truth("log det", None, "(X^{-1})^T")
    assert "X^-1 is read entry by entry (1 ⊘ X)" in result.report() and "no matrix inverse" in result.report()
    assert not assert_verdict_is_the_truth("log det", None, "X^T").notes    # a transpose alone is no power


# A SymPy hand may use the network's symbols, by object or by name; any other symbol is bad input.
_y = MatrixSymbol("y", N_, 1)
FOREIGN_SYMBOLS = [
    ("a matrix the network lacks", MatrixSymbol("Q", 3, 1), "the hand formula uses Q (3 x 1)"),
    ("a scalar the network lacks", Symbol("x") * MatrixSymbol("w2", 3, 1), "the hand formula uses x"),
    ("a quantity of another shape", MatrixSymbol("h", N_, 2).T * (MatrixSymbol("p", N_, 1) - _y),
     "h (N x 2), but the network's h is N x 3"),
]


@pytest.mark.parametrize(("hand", "message"), [r[1:] for r in FOREIGN_SYMBOLS], ids=[r[0] for r in FOREIGN_SYMBOLS])
def test_a_sympy_answer_with_a_foreign_symbol_is_bad_input(hand, message):
    with pytest.raises(ParseError, match=re.escape(message)):
        check_example("seed_000_bce", "w2", hand)


def test_a_sympy_answer_may_name_the_dims_and_quantities_by_name():
    N, h, p = Symbol("N"), MatrixSymbol("h", N_, 3), MatrixSymbol("p", N_, 1)   # N without assumptions
    assert check_example("seed_000_bce", "w2", h.T * (p - _y) / N)
    assert independent_verdict("seed_000_bce", "w2", "h^T (p - y)/N") == "right"


# Item 3: a SymPy hand with a scalar of matrices (det(X) in det(X) X^-T) raised TypeError.
SYMPY_SCALARS = [
    ("det", Determinant(SQ) * Inverse(SQ).T),
    ("det", Determinant(SQ) * Inverse(SQ)),
    ("det", 2 * Determinant(SQ) * Inverse(SQ).T),
    ("det", Determinant(SQ) ** 2 * Inverse(SQ).T),
    ("log det", Inverse(SQ).T),
    ("log det", Determinant(SQ) * Inverse(SQ).T),
    ("quadratic form", (A_ + A_.T) * x_),
    ("quadratic form", Trace(A_) * x_),
    ("quadratic form", 2 * A_ * x_),
    ("mean square, X N x 3", 2 * X3.T * (X3 * w3 - y_) / N_),
    ("mean square, X N x 3", Trace(X3.T * X3) * X3.T * (X3 * w3 - y_) / N_),
]


@pytest.mark.parametrize(("name", "hand"), SYMPY_SCALARS, ids=[f"{n}:{h}" for n, h in SYMPY_SCALARS])
def test_a_sympy_answer_with_a_scalar_factor_gets_a_verdict(name, hand):
    assert_verdict_is_the_truth(name, None, hand)


# Item 4: the checker's second derivation named its own U_1 and every wrong answer raised.
TIED_WEIGHTS = [
    ("tied weights", "2 X^T (X W W^T - X) W + 2 (X W W^T - X)^T X W"),
    ("tied weights", "2 X^T (X W W^T - X) W"),
    ("tied weights", "2 (X W W^T - X)^T X W"),
    ("tied weights", "4 X^T (X W W^T - X) W"),
    ("tied weights", "X^T (X W W^T - X) W + (X W W^T - X)^T X W"),
    ("tied weights", "2 X^T (X W W^T - X) W^T"),
    ("tied weights", "2 (X^T (X W W^T - X) W + (X W W^T - X)^T X W)^T"),
    ("tied weights, R named", "2 X^T R W + 2 R^T X W"),
    ("tied weights, R named", "X^T dL/dR W + dL/dR^T X W"),
    ("tied weights, R named", "2 R^T X W"),
    ("tied weights, R named", "X^T dL/dR W"),
]


@pytest.mark.parametrize(("name", "hand"), TIED_WEIGHTS, ids=[f"{n}:{h}" for n, h in TIED_WEIGHTS])
def test_a_tied_weight_answer_gets_a_verdict(name, hand):
    assert_verdict_is_the_truth(name, None, hand)


@pytest.mark.parametrize("scale", [1, 2])
def test_the_derived_tied_weight_gradient_checks_as_a_sympy_answer(scale):
    loss, param, _ = case("tied weights")
    closed = derive.gradients(loss, [param])[param]      # in the network's own symbols
    assert_verdict_is_the_truth("tied weights", None, scale * closed)


# --- the command's part --------------------------------------------------------------------------------

@pytest.mark.parametrize(("hand", "wrt", "code", "shown"), [
    ("h^T (p - y)/N", "w2", 0, "dL/dw2: right"),
    ("h^T (p - y)", "w2", 1, "diagnosis (factor)"),
    ("h^T (p - y", "w2", 2, "derive: expected ')'"),
    ("h^T (p - y)/N", "W9", 2, "derive: wrt must be one of the loss's matrices (X, b, w1, w2, y), got 'W9'"),
])
def test_run_check_exit_codes(hand, wrt, code, shown):
    exit_code, text = run_check("seed_000_bce", wrt, hand)
    assert exit_code == code
    assert shown in text


def test_run_check_takes_the_commands_loaded_network_and_dims():
    from derive.cli import load_network
    code, text = run_check(load_network("seed_003_mlp_column"), "W1", "2 da1 x^T", dims={"D": 2, "H": 3, "C": 4})
    assert code == 1 and "diagnosis (factor)" in text and "differs at C=4, D=2, H=3" in text


def test_run_check_on_an_unknown_network_is_bad_input():
    code, text = run_check("no_such_net", "W1", "X")
    assert code == 2 and "no built-in example named 'no_such_net'" in text


# --- pytest integration --------------------------------------------------------------------------------

def test_assert_gradient_raises_with_the_report():
    example = get("seed_003_mlp_column")
    with pytest.raises(AssertionError) as raised:
        assert_gradient("x^T da1", example.loss, "W1", names=example.names)
    assert str(raised.value) == check_example("seed_003_mlp_column", "W1", "x^T da1").report()
    assert assert_gradient("da1 x^T", example.loss, "W1", names=example.names)


def test_the_plugin_is_registered_as_a_pytest11_entry_point():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["pytest11"] == {"derive": "derive.pytest_plugin"}


FAILING_TESTS = '''
import derive
from derive.examples import get

EXAMPLE = get("seed_001_sigmoid_between")


def test_bare_assert():
    assert derive.check("X^T dL/dyhat W2^T ⊙ sigmoid'(Z)", EXAMPLE.loss, "W1", names=EXAMPLE.names)


def test_fixture(assert_gradient):
    assert_gradient("sum_rows(dL/dyhat W2^T ⊙ sigmoid'(Z))", EXAMPLE.loss, "b2", names=EXAMPLE.names)


def test_compare():
    result = derive.check("h^T (p - y)", get("seed_000_bce").loss, "w2", names=get("seed_000_bce").names)
    assert result == True  # noqa: E712


def test_passes(assert_gradient):
    assert_gradient("A^T dL/dyhat", EXAMPLE.loss, "W2", names=EXAMPLE.names)
'''


def test_a_failing_pytest_run_shows_the_report(tmp_path):
    (tmp_path / "test_student.py").write_text(textwrap.dedent(FAILING_TESTS))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "derive.pytest_plugin", "-q", "-p", "no:cacheprovider",
                          str(tmp_path / "test_student.py")], check=False, capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert "3 failed, 1 passed" in out
    assert out.count("- derive check -") == 2     # sections for the bare assert and the comparison
    assert "diagnosis (factor): off by a constant factor, the 1/N of the mean: 1/N times the hand result is right" in out
    assert "diagnosis (hadamard-order)" in out
    assert "diagnosis (other-parameter): this is the gradient of b1 (dL/db1), not of b2" in out


# --- properties: any simple slip made on any right result is found ----------------------------------------

BATCHED = [row for row in RIGHT if row[0] in ("seed_000_bce", "seed_001_linreg_batch", "seed_004_sigmoid_231")]
NOT_SQUARE = [row for row in RIGHT if row[0].startswith("seed")
              and len({int(d) if d.is_Integer else str(d)
                       for d in next(p for p in get(row[0]).wrt if p.name == row[1]).shape}) == 2]


@settings(max_examples=15, deadline=None)
@given(factor=st.sampled_from(["2", "1/2", "-1", "N", "1/N", "2/N", "-2", "3"]), row=st.sampled_from(BATCHED))
def test_a_constant_factor_on_a_right_result_is_named_and_undone(factor, row):
    example, wrt, hand = row
    result = check_example(example, wrt, f"{factor} ({hand})", points=2)
    assert not result and result.diagnosis.kind == "factor", result.report()
    assert check_example(example, wrt, result.diagnosis.corrected, points=2)


@settings(max_examples=15, deadline=None)
@given(row=st.sampled_from(NOT_SQUARE))
def test_a_transposed_right_result_is_diagnosed_as_a_transpose(row):
    example, wrt, hand = row
    result = check_example(example, wrt, f"({hand})^T", points=2)
    assert not result and result.diagnosis.kind == "transpose", result.report()
    assert "its transpose has the right shape" in result.shape_problem
