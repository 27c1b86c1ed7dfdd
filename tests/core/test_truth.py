"""derive.truth: the evaluator against SymPy's own expansion, the domain sampler, the built-in check.

The evaluator is compared with the expression written out entry by entry by SymPy and evaluated by
SymPy (``evalf``), no code printer in between. The check is shown to catch a wrong rule (a row per
kind of mistake, each a rule of the table replaced by a wrong one) and to pass on every built-in
example; the generated code's forward is compared with the same truth.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sympy import (
    Abs,
    Adjoint,
    BlockMatrix,
    Determinant,
    HadamardPower,
    HadamardProduct,
    Heaviside,
    Identity,
    ImmutableMatrix,
    Integer,
    Inverse,
    KroneckerProduct,
    MatAdd,
    MatMul,
    MatrixExpr,
    MatrixSymbol,
    Max,
    Min,
    OneMatrix,
    Piecewise,
    Rational,
    Sum,
    Symbol,
    Trace,
    ZeroMatrix,
    acos,
    asin,
    atan,
    cos,
    cosh,
    erf,
    erfc,
    gamma,
    log,
    sign,
    sin,
    sinh,
    sqrt,
    tan,
    tanh,
)
from sympy.matrices.expressions.matexpr import MatrixElement

import derive
from derive.core import truth
from derive.core.algebra import mat_mul
from derive.core.explicit import explicit
from derive.core.losses import SoftmaxCrossEntropy
from derive.core.rules import RULES, Pullback
from derive.core.truth import numeric
from derive.errors import CodegenError, DeriveError, GradientMismatch
from derive.examples import catalogue
from derive.render import module as codegen

from ..evaluator import evaluate, torch_gradients

N, D = Symbol("N", integer=True, positive=True), Symbol("D", integer=True, positive=True)
X, W, V = MatrixSymbol("X", N, D), MatrixSymbol("W", D, 2), MatrixSymbol("V", N, 2)
A, B = MatrixSymbol("A", D, D), MatrixSymbol("B", D, D)
P, Y, b = MatrixSymbol("P", N, 2), MatrixSymbol("Y", N, 2), MatrixSymbol("b", 1, 2)
x = MatrixSymbol("x", D, 1)
Z = X * W + OneMatrix(N, 1) * b
DIMS = {N: 2, D: 3}
i = Symbol("i", integer=True)


def sum_entries(M):
    return OneMatrix(1, M.shape[0]) * M * OneMatrix(M.shape[1], 1)


ACTIVATIONS = [derive.relu, derive.sigmoid, derive.tanh, derive.gelu, derive.silu, derive.softplus, derive.exp,
               lambda m: derive.leaky_relu(m, Rational(1, 10)), lambda m: derive.elu(m, 2)]

# id, expression: every node type the evaluator knows, and some it only knows through SymPy's expansion
EXPRESSIONS = [
    ("matmul with scalars", 3 * X * W / 2),
    ("sum and bias", Z),
    ("transpose", (X * W).T),
    ("hadamard product", HadamardProduct(X * W, V)),
    ("hadamard power", HadamardPower(X * W, 3)),
    ("hadamard root", HadamardPower(HadamardProduct(V, V) + OneMatrix(N, 2), Rational(1, 2))),
    ("matrix power", A ** 3),
    ("inverse", Inverse(A + 3 * Identity(D))),
    ("determinant", Determinant(A)),
    ("log determinant", log(Determinant(A * A.T + Identity(D)))),
    ("trace", Trace(A * B)),
    ("entry of a 1 x 1", (x.T * A * x)[0, 0]),
    ("identity, ones and zeros", A + Identity(D) + OneMatrix(D, D) + ZeroMatrix(D, D)),
    ("explicit matrix", ImmutableMatrix([[1, 2], [3, -4]]) * (X * W).T * OneMatrix(N, 1)),
    ("explicit matrix of entries", ImmutableMatrix([[A[0, 1] * B[1, 0], sin(A[2, 2])]])),
    ("block matrix", BlockMatrix([[A, B], [B.T, Identity(D)]])),
    ("scalar add, mul, pow", Trace(A) ** 2 + 3 * Trace(B) - Trace(A * B) / 2),
    ("scalar functions", sin(Trace(A)) + cos(Trace(B)) + tanh(Trace(A)) + Abs(Trace(B)) + sqrt(1 + Trace(A.T * A))),
    ("more scalar functions", erf(Trace(A) / 3) + erfc(Trace(B)) + Heaviside(Trace(A) + 5) + Min(Trace(A), Trace(B))
     + Max(Trace(A), 0) + sign(Trace(B) - 9) + tan(Trace(A) / 10) + sinh(Trace(B)) + cosh(Trace(A)) + atan(Trace(B))
     + asin(Trace(A) / 10) + acos(Trace(B) / 10)),
    ("a function without a NumPy form (SymPy's evalf)", gamma(2 + Trace(A.T * A))),
    ("piecewise", Piecewise((Trace(A), Trace(A) > 0), (-Trace(B), Trace(B) <= 1), (1, True))),
    ("conjugate transpose", Adjoint(A) * B),
    *[(f"activation {k}", f(Z)) for k, f in enumerate(ACTIVATIONS)],
    *[(f"derivative of activation {k}", type(f(Z)).prime()(*f(Z).args)) for k, f in enumerate(ACTIVATIONS)],
    ("derive's log", derive.log(HadamardProduct(V, V) + OneMatrix(N, 2))),
    ("softmax rows", derive.softmax(Z)),
    ("softmax columns", derive.softmax(Z, examples="columns")),
    ("log-softmax", derive.log_softmax(Z)),
    ("squared error", derive.mse(Z, V, half=True)),
    ("binary cross-entropy", derive.bce(derive.sigmoid(Z), derive.sigmoid(V))),
    ("softmax cross-entropy", derive.cross_entropy(Z, derive.softmax(V))),
    # no handler of its own: written out by SymPy at the dims, then evaluated entry by entry
    ("matrix slice", X[0:1, :] * W),
    ("index sum", Sum(X[i, 0] * V[i, 1], (i, 0, N - 1))),
    ("kronecker product", KroneckerProduct(A, x)),
]


def random_values(expr, rng) -> dict:
    return {s.name: rng.uniform(-1, 1, size=tuple(int(d.subs(DIMS)) for d in s.shape))
            for s in expr.atoms(MatrixSymbol)}


def sympy_value(expr, values: dict) -> np.ndarray:
    """``expr`` written out by SymPy at DIMS and evaluated by SymPy: no printer, no lambdify."""
    concrete = expr.subs(DIMS)
    try:
        expanded = explicit(concrete)
    except Exception:  # noqa: BLE001 - nodes that derive's expansion does not know: SymPy's own
        expanded = concrete.as_explicit() if isinstance(concrete, MatrixExpr) else concrete.doit()
    if isinstance(expanded, MatrixExpr) and not hasattr(expanded, "tolist"):
        expanded = expanded.as_explicit()
    if hasattr(expanded, "doit"):
        expanded = expanded.doit()
    numbers = {}
    for s in concrete.atoms(MatrixSymbol):
        for index in np.ndindex(values[s.name].shape):
            numbers[MatrixElement(s, *index)] = float(values[s.name][index])
    return np.array(expanded.xreplace(numbers).evalf(), dtype=float)


@pytest.mark.parametrize("expr", [row[1] for row in EXPRESSIONS], ids=[row[0] for row in EXPRESSIONS])
def test_evaluator_matches_sympys_own_expansion(expr):
    values = random_values(expr, np.random.default_rng(0))
    got = np.asarray(truth.evaluate(expr, values, DIMS), dtype=float)
    want = sympy_value(expr, values)
    assert got.shape == want.shape or got.size == want.size == 1
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-10, atol=1e-12)


def test_evaluator_visits_each_shared_node_once():
    H = MatrixSymbol("H", 3, 3)
    U = MatrixSymbol("U", 3, 3)
    node = H
    for _ in range(60):  # a tree of 2^60 leaves, a DAG of 120 nodes
        node = MatAdd(node, MatMul(node, U))
    program = truth.Program([Trace(node)], {})
    assert len(program.steps) <= 2 * 60 + 1
    rng = np.random.default_rng(0)
    h, u = rng.uniform(-1, 1, (3, 3)), rng.uniform(-1, 1, (3, 3)) / 10
    expected = h
    for _ in range(60):
        expected = expected + expected @ u
    assert program.run({"H": h, "U": u})[0] == pytest.approx(np.trace(expected), rel=1e-12)


def test_evaluator_refuses_missing_and_misshapen_values():
    with pytest.raises(derive.DeriveError, match="no value for the matrix W"):
        truth.evaluate(X * W, {"X": np.zeros((2, 3))}, DIMS)
    with pytest.raises(derive.ShapeError, match="X"):
        truth.evaluate(X * W, {"X": np.zeros((3, 2)), "W": np.zeros((3, 2))}, DIMS)


# --- the domain ------------------------------------------------------------------------------------

def _invertible(a):
    return np.linalg.det(a) > 0 and np.linalg.cond(a) < 3


def _probabilities(a):
    return np.all((a > 0) & (a < 1))


def _rows_on_simplex(a):
    return np.all(a > 0) and np.allclose(a.sum(axis=1), 1)


# id, loss, symbol, the kind it must be drawn from, what its values satisfy
_t = MatrixSymbol("t", 1, 1)
DOMAINS = [
    ("log det", log(Determinant(A)), A, "invertible", _invertible),
    ("inverse", Trace(Inverse(A) * B), A, "invertible", _invertible),
    ("no constraint beside an inverse", Trace(Inverse(A) * B), B, "normal", lambda a: np.any(a < 0)),
    ("matrix power", Trace(A ** 3), A, "invertible", _invertible),
    ("whitening", Trace(Inverse(Identity(D) + A.T * A)), A, "invertible", _invertible),
    ("log det of a positive matrix", log(Determinant(A)) + Trace(derive.log(A)), A, "invertible positive",
     lambda a: _invertible(a) and np.all(a > 0)),
    ("bce prediction", derive.bce(P, Y), P, "probability", _probabilities),
    ("bce target", derive.bce(derive.sigmoid(Z), Y), Y, "probability", _probabilities),
    ("bce logits unconstrained", derive.bce(derive.sigmoid(Z), Y), W, "normal", lambda a: np.any(a < 0)),
    ("cross-entropy target, declared", derive.cross_entropy(Z, Y, targets_sum_to_one=True), Y, "simplex",
     _rows_on_simplex),
    ("cross-entropy, columns, declared", derive.cross_entropy(Z.T, Y.T, examples="columns", targets_sum_to_one=True),
     Y, "simplex", _rows_on_simplex),
    ("cross-entropy, targets need not sum to 1", derive.cross_entropy(Z, Y), Y,
     "nonnegative", lambda a: np.all(a >= 0) and not np.allclose(a.sum(axis=1), 1)),
    ("elementwise log", derive.mse(derive.log(P), Y), P, "positive", lambda a: np.all(a > 0)),
    ("root", sum_entries(HadamardPower(P, Rational(1, 2))), P, "positive", lambda a: np.all(a > 0)),
    ("log of a trace", log(Trace(A.T * B)), B, "positive", lambda a: np.all(a > 0)),
    ("a learnable exponent of a probability", derive.bce(HadamardPower(derive.sigmoid(Z), _t[0, 0]), Y), _t,
     "positive", lambda a: np.all(a > 0)),
    ("relu under a log stays unconstrained", log(sum_entries(derive.exp(derive.relu(X * W)))), W, "normal",
     lambda a: np.any(a < 0)),
]


@pytest.mark.parametrize("loss, symbol, kind, valid", [row[1:] for row in DOMAINS], ids=[row[0] for row in DOMAINS])
def test_domain_draws_valid_values(loss, symbol, kind, valid):
    draws = truth.domain(loss)
    assert draws[symbol].kind == kind
    rng = np.random.default_rng(1)
    for _ in range(20):
        assert valid(truth.sample(draws, {N: 4, D: 3}, rng)[symbol.name])


def test_canonical_dims_are_small_and_distinct():
    H = Symbol("H", integer=True, positive=True)
    dims = truth.canonical_dims(derive.mse(X * MatrixSymbol("U", D, H), MatrixSymbol("T", N, H)))
    assert sorted(dims.values()) == [2, 3, 4] and len(set(dims.values())) == 3


# --- the built-in check ----------------------------------------------------------------------------

def _doubled(apply):
    def wrong(node, out, upstream):
        return [None if r is None else mat_mul(Integer(2), r.result if isinstance(r, Pullback) else r)
                for r in apply(node, out, upstream)]
    return wrong


def _determinant_without_transpose(node, out, upstream):
    return [mat_mul(upstream, out, Inverse(node.arg))]


def _power_without_exponent(node, out, upstream):
    base, power = node.args
    return [HadamardProduct(upstream, HadamardPower(base, power - 1)), None]


def _cross_entropy_without_scale(node, out, upstream):
    logits, target, _, axis, *_ = node.args
    wrong = mat_mul(upstream, MatAdd(derive.softmax(logits, axis), mat_mul(Integer(-1), target)))
    return [wrong] + [None] * (len(node.args) - 1)


T = MatrixSymbol("T", N, D)

# id, the rule replaced, the wrong rule, loss, wrt, the parameter that must be named
WRONG_RULES = [
    ("matrix product twice too big", MatMul, lambda rule: _doubled(rule.apply),
     derive.mse(derive.sigmoid(X * W), V) + derive.mse(derive.tanh(T), X), [W, T], "W"),
    ("determinant without the transpose", Determinant, lambda rule: _determinant_without_transpose,
     log(Determinant(A)), [A], "A"),
    ("hadamard power without its exponent", HadamardPower, lambda rule: _power_without_exponent,
     derive.mse(HadamardPower(X * W, 3), V), [W], "W"),
    ("cross-entropy without 1/N", SoftmaxCrossEntropy, lambda rule: _cross_entropy_without_scale,
     derive.cross_entropy(Z, Y) + Trace(A.T * A), [A, W, b], "W"),
]


@pytest.mark.parametrize("cls, wrong, loss, wrt, culprit", [row[1:] for row in WRONG_RULES],
                         ids=[row[0] for row in WRONG_RULES])
def test_a_wrong_rule_is_caught_and_the_parameter_named(monkeypatch, cls, wrong, loss, wrt, culprit):
    monkeypatch.setitem(RULES, cls, dataclasses.replace(RULES[cls], apply=wrong(RULES[cls])))
    with pytest.raises(GradientMismatch, match=rf"dL/d{culprit} is wrong: .* closed form gives .* differences of "
                                               r"the loss give"):
        derive.gradients(loss, wrt)
    g = derive.gradients(loss, wrt, check=False)   # the wrong form, handed out only on request
    assert g.numeric_check is None


@pytest.mark.parametrize("name", list(catalogue()))
def test_every_built_in_example_passes_the_check(name, derivations):
    check = derivations[name].numeric_check
    assert check is not None and check.relative_error < 1e-6
    assert check.unresolved == ()
    assert len(set(check.dims.values())) == len(check.dims)


# Right closed forms the check once refused (found by the property tests): id, loss, wrt
CHECK_PASSES = [
    # BCE from the probabilities rounds 1 - p of a saturated sigmoid: the differences lost the example's
    # gradient p - y (a GradientMismatch at 30, "did not settle" at 15); evaluated from the logits now
    ("bce of a saturated sigmoid", derive.bce(derive.sigmoid(X * W + 30 * OneMatrix(N, 2)), Y), [W]),
    ("bce of a sigmoid near saturation", derive.bce(derive.sigmoid(X * W + 15 * OneMatrix(N, 2)), Y), [W]),
]


@pytest.mark.parametrize("loss, wrt", [row[1:] for row in CHECK_PASSES], ids=[row[0] for row in CHECK_PASSES])
def test_the_check_passes_right_closed_forms(loss, wrt):
    pytest.importorskip("torch", reason="autograd is the truth here")
    g = derive.gradients(loss, wrt)
    assert g.numeric_check.relative_error < 1e-6 and g.numeric_check.unresolved == ()
    rng = np.random.default_rng(0)
    values = {s.name: rng.standard_normal(tuple(int(d.subs(DIMS)) for d in s.shape)) for s in loss.atoms(MatrixSymbol)}
    values["Y"] = rng.uniform(0.05, 0.95, size=values["Y"].shape)
    _, autograd = torch_gradients(loss, values, DIMS, [p.name for p in wrt])   # from the logits, in torch
    for p in wrt:
        np.testing.assert_allclose(evaluate(g[p], values, DIMS), autograd[p.name], rtol=1e-10, atol=1e-14)


def test_a_loss_with_no_finite_point_says_so_and_how_to_skip():
    with pytest.raises(DeriveError, match="not finite at any .* check=False"):
        derive.gradients(sqrt(-1 - Trace(A * A.T)), [A])
    assert derive.gradients(sqrt(-1 - Trace(A * A.T)), [A], check=False).numeric_check is None


def test_differences_across_a_kink_do_not_settle():
    program = truth.Program([Abs(Trace(A))], DIMS)
    direction = {A: np.eye(3)}
    at_kink = {"A": np.diag([1.0, -0.5, -0.5])}
    smooth = {"A": np.diag([1.0, 0.5, -0.5])}
    for values, settled in ((at_kink, False), (smooth, True)):
        base = float(program.run(values)[0])
        diff = numeric._differences(program, values, direction, base)
        assert numeric._settled(diff, max(abs(diff.value), 1.0)) is settled


def test_a_gradient_exactly_zero_at_the_first_point_is_looked_at_again(monkeypatch):
    real_sample, drawn = truth.sample, []

    def dead_first(draws, dims, rng):
        values = real_sample(draws, dims, rng)
        if not drawn:  # every ReLU off: the gradients are exactly 0 there, and so are the differences
            values["X"], values["W"] = np.abs(values["X"]), -np.abs(values["W"])
        drawn.append(values)
        return values

    monkeypatch.setattr(numeric, "sample", dead_first)
    H = MatrixSymbol("H", 2, 1)
    g = derive.gradients(derive.mse(derive.relu(X * W) * H, MatrixSymbol("y", N, 1)), [W, H])
    assert g.numeric_check.points == 2 and g.numeric_check.unresolved == ()


# --- the generated code's forward against the same truth -------------------------------------------

def test_to_numpy_catches_a_wrong_forward_with_a_consistent_backward(monkeypatch):
    # exp's derivative is its cached output, so a forward printed as 2 exp(Z) gets a backward that
    # matches it: finite differences of the module pass, only the independent loss value does not
    monkeypatch.setattr(derive.exp, "record", dataclasses.replace(derive.exp.record, numpy="(2 * np.exp({a}))"))
    g = derive.gradients(derive.mse(derive.exp(X * W), V), [W])
    source = derive.to_numpy(g, "broken exp", verify=False)
    assert "2 * np.exp" in source
    assert codegen.verify_module(source, "broken exp") < 1e-6
    with pytest.raises(CodegenError, match=r"forward of broken exp gives the loss .* \(derive\.truth\) gives"):
        derive.to_numpy(g, "broken exp")


def test_to_numpy_of_a_log_determinant_works_and_matches_autograd():
    pytest.importorskip("torch", reason="autograd is the truth here")
    loss = log(Determinant(A))
    g = derive.gradients(loss, [A])
    module = codegen.load_module(derive.to_numpy(g, "log det"))
    for seed in range(5):
        params, batch = module.example_inputs(np.random.default_rng(seed))
        assert _invertible(params["A"])
        value, grads = module.loss_and_grads(params, batch)
        torch_value, torch_grads = torch_gradients(loss, params, {D: params["A"].shape[0]}, ["A"])
        assert value == pytest.approx(torch_value, rel=1e-12)
        np.testing.assert_allclose(grads["A"], torch_grads["A"], rtol=1e-10)


CHECKS = {"invertible": _invertible, "invertible positive": lambda a: _invertible(a) and np.all(a > 0),
          "probability": _probabilities, "positive": lambda a: np.all(a > 0), "nonnegative": lambda a: np.all(a >= 0),
          "normal": lambda a: True}

GENERATED = [(name, example.loss, example.wrt) for name, example in catalogue().items()] + [
    ("log det", log(Determinant(A)), [A]),
    ("bce of a leaf", derive.bce(P, Y), [P]),
    ("cross-entropy, columns", derive.cross_entropy(Z.T, Y.T, examples="columns"), [W, b]),
]


@pytest.mark.parametrize("loss, wrt", [row[1:] for row in GENERATED], ids=[row[0] for row in GENERATED])
def test_example_inputs_lie_in_the_domain_and_say_how_they_were_drawn(loss, wrt):
    source = derive.to_numpy(derive.gradients(loss, wrt), "domain")
    module = codegen.load_module(source)
    params, batch = module.example_inputs(np.random.default_rng(0))
    draws = {s.name: draw for s, draw in truth.domain(loss).items()}
    for name, value in {**params, **batch}.items():
        draw = draws[name]
        if draw.kind == "simplex":
            assert np.all(np.isin(value, (0.0, 1.0))) and np.allclose(value.sum(axis=draw.axis), 1)
        else:
            assert CHECKS[draw.kind](value), name
    comments = [line.split("#", 1)[1] for line in source.split("def example_inputs")[1].split("return")[0].splitlines()
                if line.strip().startswith("'")]
    assert comments and all(any(word in c for word in ("normal", "one-hot", "I + E", "probabilities", "positive",
                                                       "non-negative")) for c in comments)
