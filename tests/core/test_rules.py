"""Every rule in the table, checked against the explicit elementwise derivative.

Each row is a loss, the parameters to differentiate and concrete dims; adding an operation adds a
row. ``verify`` raises on any numeric mismatch; the row also says whether SymPy must prove the
equality exactly.
"""

import numpy as np
import pytest
from sympy import (
    BlockMatrix,
    Determinant,
    HadamardPower,
    HadamardProduct,
    Identity,
    Inverse,
    MatMul,
    Matrix,
    MatrixSymbol,
    OneMatrix,
    Rational,
    Symbol,
    Trace,
    cos,
    log,
    sin,
)

import derive
from derive import (
    bce,
    cross_entropy,
    elu,
    exp,
    gelu,
    leaky_relu,
    log_softmax,
    mse,
    relu,
    sigmoid,
    silu,
    softmax,
    softplus,
    tanh,
)
from derive.core.pairing import Pairing
from derive.core.rules import RULES, supported

from ..evaluator import evaluate
from .test_cookbook import assert_tidy

N, D, H = (Symbol(n, integer=True, positive=True) for n in ("N", "D", "H"))
X, W, V = MatrixSymbol("X", N, D), MatrixSymbol("W", D, H), MatrixSymbol("V", H, D)
b, Y, T = MatrixSymbol("b", 1, H), MatrixSymbol("Y", N, H), MatrixSymbol("T", N, D)
A, B = MatrixSymbol("A", D, D), MatrixSymbol("B", D, D)
x, y = MatrixSymbol("x", D, 1), MatrixSymbol("y", D, 1)
ones = OneMatrix(N, 1)
Z = X * W + ones * b
DIMS = {N: 2, D: 3, H: 2}


def sum_entries(M):
    return (OneMatrix(1, M.shape[0]) * M * OneMatrix(M.shape[1], 1))


# SymPy keeps blocks and explicit entries inside an explicit matrix, a leaf of derive's graph, folds
# Inverse(A)*Inverse(A) into A**-2 and writes the entry of a product as an index Sum: derive.canonical
# rewrites them; the truth (verify) expands them as SymPy defines them.
S = MatrixSymbol("S", D, D)
U = MatrixSymbol("U", D + H, H)
t, s2 = MatrixSymbol("t", 1, 1), MatrixSymbol("s", 2, 1)
X2, Y2, P2 = MatrixSymbol("X2", N, 2), MatrixSymbol("Y2", N, 2), MatrixSymbol("P2", 2, N)
w = MatrixSymbol("w", 1, H)
blocks = BlockMatrix([[X, X * S]])
rotation = Matrix([[cos(t[0, 0]), -sin(t[0, 0])], [sin(t[0, 0]), cos(t[0, 0])]])


CASES = [
    # id, loss, wrt
    ("matmul+bias, mse", mse(Z, Y), [W, b, X]),
    ("matmul, sum reduction, half", mse(X * W, Y, half=True, reduction="sum"), [W]),
    ("three factors", mse(X * W * V, T), [X, W, V]),
    ("tied weight W W^T", mse(X * W * W.T, T), [W]),
    ("transpose", mse((W * V).T, W * V), [W]),
    ("scalar times matrix", mse(3 * X * W / 2, Y), [W]),
    ("hadamard product", mse(HadamardProduct(X * W, X * W + ones * b), Y), [W, b]),
    ("hadamard power", mse(HadamardPower(X * W, 3), Y), [W]),
    ("relu", mse(relu(Z), Y), [W, b]),
    ("leaky_relu", mse(leaky_relu(Z, Rational(1, 10)), Y), [W, b]),
    ("elu", mse(elu(Z, 1), Y), [W, b]),
    ("sigmoid", mse(sigmoid(Z), Y), [W, b]),
    ("tanh", mse(tanh(Z), Y), [W, b]),
    ("gelu", mse(gelu(Z), Y), [W]),
    ("silu", mse(silu(Z), Y), [W]),
    ("softplus", mse(softplus(Z), Y), [W]),
    ("exp and log", mse(derive.log(exp(Z) + OneMatrix(N, H)), Y), [W]),
    ("nested activations", mse(sigmoid(tanh(relu(Z))), Y), [W, b]),
    ("softmax rows", mse(softmax(Z), Y), [W, b]),
    ("softmax columns", mse(softmax(Z, examples="columns"), Y), [W]),
    ("log_softmax", mse(log_softmax(Z), Y), [W]),
    ("cross_entropy rows", cross_entropy(Z, Y), [W, b]),
    ("cross_entropy columns", cross_entropy((X * W).T, Y.T, examples="columns"), [W]),
    ("bce of sigmoid", bce(sigmoid(Z), Y), [W, b]),
    ("bce target", bce(sigmoid(Z), Y), [Y]),
    ("residual", mse(relu(Z) + X * W, Y), [W]),
    ("trace", Trace(A * B), [A, B]),
    ("frobenius norm", Trace(X.T * X), [X]),
    ("quadratic form", Trace(x.T * A * x), [x, A]),
    ("1x1 loss", x.T * A * y, [x, A, y]),
    ("sum of entries", sum_entries(HadamardProduct(X, X)), [X]),
    ("inverse", Trace(Inverse(A) * B), [A, B]),
    ("determinant", Determinant(A), [A]),
    ("log determinant", log(Determinant(A)), [A]),
    ("matrix power", Trace(A ** 3), [A]),
    ("trace times loss", Trace(A) * mse(X * W, Y), [A, W]),
    ("identity shift", log(Determinant(A + Identity(D))), [A]),
    ("pairing <G, Y> of derive.vjp", Pairing(Y, relu(Z)), [W, b]),
    # blocks, slices, explicit matrices of parameters, negative powers, index sums
    ("block matrix tr(B^T B), B = [X, X S]", Trace(blocks.T * blocks) + Trace(S.T * S), [S, X]),
    ("features concatenated [X, tanh(X W)] U", mse(BlockMatrix([[X, tanh(X * W)]]) * U, Y), [W, U]),
    ("2 x 2 block grid", Trace(BlockMatrix([[A, B], [x * y.T, A * B]]).T * BlockMatrix([[A, B], [B, A]])), [A, B, x]),
    ("bias as a block of ones [X, 1] U", mse(BlockMatrix([[X, OneMatrix(N, 1)]]) * MatrixSymbol("U1", D + 1, H), Y),
     [MatrixSymbol("U1", D + 1, H)]),
    ("slice X[:, :2]", mse(X[:, :2] * MatrixSymbol("P", 2, H), Y), [X, MatrixSymbol("P", 2, H)]),
    ("slice of a product (X W)[:, :1]", mse(relu((X * W)[:, :1]), MatrixSymbol("y1", N, 1)), [W]),
    ("rotation built from a 1 x 1 angle", Trace((rotation * P2).T * (rotation * P2)) + mse((rotation * P2).T, X2), [t]),
    ("scaled identity [[s, 0], [0, s]]", mse(X2 * Matrix([[t[0, 0], 0], [0, t[0, 0]]]), Y2), [t]),
    ("entries of a 2 x 1 parameter", mse(X2 * Matrix([[s2[0, 0], 0], [0, s2[1, 0]]]), Y2), [s2]),
    ("index sum (x^T A x)[0, 0]", (x.T * A * x)[0, 0], [x, A]),
    ("index sum squared inside a loss", mse(X * W, Y) + (x.T * A * y)[0, 0] ** 2, [W, A, x]),
    # entries of activations and softmax at symbolic shapes: once written out by SymPy into an index
    # Sum inside a log, refused as an index sum the user never wrote
    ("entry of a softmax log(softmax(X W)[0, 1])", log(softmax(X * W)[0, 1]), [W]),
    ("entry of an activation sigmoid(X W)[1, 0]**2", sigmoid(X * W)[1, 0] ** 2 + log_softmax(X * W)[0, 0], [W]),
    # the declared power of a product's inverse, expanded by verify at D = 3: once over ten minutes
    ("negative power of a product (A B)**-2", Trace((A * B) ** -2), [A]),
    # cross-entropy for any target, and the declared form for targets summing to 1
    ("cross_entropy of 2Y", cross_entropy(Z, 2 * Y), [W, b]),
    ("cross_entropy of class-weighted targets Y (1 w)", cross_entropy(Z, HadamardProduct(Y, ones * w)), [W, b, w]),
    ("cross_entropy, gradient of the target", cross_entropy(Z, Y), [Y]),
    ("cross_entropy declared one-hot", cross_entropy(Z, Y, targets_sum_to_one=True), [W, b]),
    ("cross_entropy declared, columns", cross_entropy((X * W).T, Y.T, examples="columns", targets_sum_to_one=True),
     [W]),
    ("cross_entropy declared, a softmax target", cross_entropy(Z, softmax(X * MatrixSymbol("W2", D, H)),
                                                               targets_sum_to_one=True), [W, MatrixSymbol("W2", D, H)]),
]


@pytest.mark.parametrize("loss, wrt", [row[1:] for row in CASES], ids=[row[0] for row in CASES])
def test_closed_form_equals_elementwise_derivative(loss, wrt):
    g = derive.gradients(loss, wrt)
    for param in wrt:
        assert g[param].shape == param.shape
        assert_tidy(g[param], "closed form")
        assert_tidy(g.compact(param), "compact form")
    for check in g.verify(DIMS, points=2):
        assert check.max_relative_error < 1e-10


def test_matmul_rule_gives_the_textbook_forms():
    g = derive.gradients(mse(Z, Y), [W, b, X], names={"Z": Z})
    G = g.adjoint(W).func("Z", N, H)
    assert g.compact(W) == X.T * G
    assert g.compact(X) == G * W.T
    assert g.compact(b) == OneMatrix(1, N) * G


def test_elementwise_rule_is_a_hadamard_product_never_a_jacobian():
    g = derive.gradients(mse(relu(Z), Y), [W], names={"Z": Z, "H": relu(Z)})
    step = next(s for s in g.steps if s.rule == "elementwise function")
    assert step.diagonal
    assert isinstance(step.result, HadamardProduct)
    assert step.result.shape == (N, H)


def test_paths_add_up_for_a_node_used_twice():
    H1 = relu(Z)
    g = derive.gradients(mse(H1 + relu(H1 * MatrixSymbol("U", H, H)), Y), [W], names={"H1": H1})
    assert len(g.paths(H1)) == 2
    g.verify(DIMS, points=1)


def test_supported_lists_the_table_in_the_users_words():
    names = supported()
    assert "matrix product A*B (with scalar factors, c*A)" in names
    assert "block matrix BlockMatrix([[A, B], [C, D]])" in names and "transpose A.T" in names
    assert len(names) == len({rule.described for rule in RULES.values()})
    class_names = {"MatMul", "MatAdd", "Mul", "Add", "Pow", "Function", "Piecewise", "Elementwise", "MatrixElement"}
    assert not any(word in class_names for name in names for word in name.replace("(", " ").split())


def _softmax_rows(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


CROSS_ENTROPY_FORMS = [
    # id, targets_sum_to_one, dL/dZ of -1/N sum Y log softmax(Z), for targets whose rows do not sum to 1
    ("any target: softmax weighted by the target's sum", False,
     lambda z, y: (_softmax_rows(z) * y.sum(axis=1, keepdims=True) - y) / len(z)),
    ("declared: the familiar s (P - Y)", True, lambda z, y: (_softmax_rows(z) - y) / len(z)),
]


@pytest.mark.parametrize(("declared", "expected"), [row[1:] for row in CROSS_ENTROPY_FORMS],
                         ids=[row[0] for row in CROSS_ENTROPY_FORMS])
def test_cross_entropy_gradient_forms(declared, expected):
    g = derive.gradients(cross_entropy(X * W, Y, targets_sum_to_one=declared), [W], names={"Z": X * W})
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((4, 3)), rng.uniform(0, 2, size=(4, 3))
    got = evaluate(g.gradient_of("Z"), {"Z": z, "Y": y}, {N: 4, H: 3})
    assert np.allclose(got, expected(z, y), rtol=1e-12, atol=1e-14)


# --- regressions found in review: each was a wrong gradient or an unclear error ---------------------

n = Symbol("n", integer=True, positive=True)
Wn, Vn, An = (MatrixSymbol(s, n, n) for s in "WVA")
c = MatrixSymbol("c", 1, 1)

REGRESSIONS = [
    # products of scalar terms: SymPy re-sorts a rebuilt Mul, which once swapped the factors' gradients
    ("product of traces", Trace(Wn + Wn.T) * Trace(Wn.T), [Wn]),
    ("trace of activation times trace", Trace(sigmoid(Wn)) * Trace(An * Vn), [Wn, Vn]),
    ("product of losses", mse(X * W, Y) * mse(relu(X * W), Y), [W]),
    ("repeated scalar factor", Trace(MatMul(Trace(Wn), Trace(Wn), Vn)), [Wn, Vn]),
    ("loss is the parameter", c, [c]),
    ("softmax with axis -1", mse(softmax(X * W, -1), Y), [W]),
    ("gradient exactly zero", log_softmax(x.T * A * x), [A]),
    ("leaky_relu of a scalar", Trace(leaky_relu(Trace(A) * A)), [A]),
    ("transposed activation", mse(sigmoid(X * W).T, Y.T) + Trace(sigmoid(X * W).T * Y), [W]),
    # negative powers (n = 2: the explicit inverse's powers are large rational functions); once refused
    ("Inverse(A)*Inverse(A), folded into A**-2", Trace(Inverse(An) * Inverse(An) * Vn), [An, Vn]),
    ("negative power A**-3", Trace(An**-3), [An]),
    # an entry in the last row and column: the closed form's empty zero blocks once crashed verify (n = 2)
    ("a 1 x 1 Matrix([[...]]) as the loss (mutable: once refused)", Matrix([[sin(c[0, 0]) * Trace(Wn)]]), [c, Wn]),
    ("entry in the last row and column (A^T A)[1, 1]", (An.T * An)[1, 1], [An]),
    ("entry in the last row squared (W V)[1, 0]**2", (Wn * Vn)[1, 0] ** 2, [Wn, Vn]),
]


@pytest.mark.parametrize("loss, wrt", [row[1:] for row in REGRESSIONS], ids=[row[0] for row in REGRESSIONS])
def test_regressions_match_the_elementwise_derivative(loss, wrt):
    g = derive.gradients(loss, wrt)
    assert all(check.max_relative_error < 1e-10 for check in g.verify({**DIMS, n: 2}, points=2, symbolic=False))


BAD_NAMES = [
    ("name of a parameter", {"W": X * W}, "already the name"),
    ("one name twice", {X * W: "Q", X * W + ones * b: "Q"}, "names two different"),
    ("a leaf", {"one": OneMatrix(N, 1)}, "computed matrix expression"),
]


@pytest.mark.parametrize("names, message", [row[1:] for row in BAD_NAMES], ids=[row[0] for row in BAD_NAMES])
def test_names_that_would_collide_are_refused(names, message):
    with pytest.raises(derive.InvalidParameter, match=message):
        derive.gradients(mse(relu(X * W + ones * b), Y), [W, b], names=names)


def test_two_matrices_with_one_name_are_refused():
    with pytest.raises(derive.InvalidParameter, match="both named W"):
        derive.gradients(Trace(MatrixSymbol("W", D, H) * MatrixSymbol("W", H, D)), [W])


def test_piecewise_is_refused_with_a_hint():
    from sympy import Piecewise
    with pytest.raises(derive.UnsupportedOperation, match="relu"):
        derive.gradients(Piecewise((Trace(A), Trace(B) > 0), (0, True)), [A])


def test_verify_refuses_to_pass_when_nothing_could_be_compared():
    from sympy import sqrt
    g = derive.gradients(sqrt(-1 - Trace(A * A.T)), [A], check=False)  # the built-in check would refuse it too
    with pytest.raises(derive.GradientMismatch, match="nothing could be compared"):
        g.verify(DIMS, symbolic=False)


NAMED_SPELLINGS = [
    # id, the name's expression as the user wrote it (SymPy's spelling), loss using it, wrt
    ("a block matrix", BlockMatrix([[X, tanh(X * W)]]), lambda F: mse(F * U, Y), [W]),
    ("an explicit matrix of a parameter's entries", rotation, lambda R: mse(X2 * R, Y2), [t]),
]


@pytest.mark.parametrize(("named", "loss", "wrt"), [row[1:] for row in NAMED_SPELLINGS],
                         ids=[row[0] for row in NAMED_SPELLINGS])
def test_a_name_given_for_a_sympy_spelling_names_its_node(named, loss, wrt):
    g = derive.gradients(loss(named), wrt, names={"F": named})
    assert [f.symbol.name for f in g.forward if f.symbol.name == "F"] == ["F"]
    assert any(getattr(step.output, "name", None) == "F" for step in g.steps)  # the gradient flows through F
    assert g.verify(DIMS, points=1)[0].max_relative_error < 1e-10


def test_every_rule_in_the_table_has_a_row():
    """Each rule of the table is applied in some row of CASES (the rows above are the rule's test)."""
    applied = {step.rule for _, loss, wrt in CASES for step in derive.gradients(loss, wrt, check=False).steps}
    missing = sorted({rule.name for rule in RULES.values()} - applied)
    assert not missing, f"rules without a row in CASES: {missing}"
