"""The built-in examples reproduce their notes' results, and every gradient matches the truth."""

import pytest
from sympy import Float, MatMul, MatrixSymbol, OneMatrix, Rational, Symbol, expand

from derive.core.symbols import Intermediate, LossGradient
from derive.examples import catalogue, get

from ..conftest import EXAMPLES


def same(a, b, dims):
    """Two matrix expressions are equal entry by entry at concrete dims (after expansion)."""
    left, right = a.subs(dims).as_explicit(), b.subs(dims).as_explicit()
    return left.shape == right.shape and all(expand(x - y) == 0 for x, y in zip(left, right))


def named(g, name):
    return next(f.symbol for f in g.forward if str(f.symbol.name) == name)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_every_gradient_matches_the_elementwise_derivative(name, derivations):
    example = EXAMPLES[name]
    checks = derivations[name].verify(example.dims, points=2)
    assert [c.param for c in checks] == list(example.wrt)
    assert all(c.max_relative_error < 1e-10 for c in checks)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_gradients_have_their_parameters_shapes(name, derivations):
    g = derivations[name]
    for param in EXAMPLES[name].wrt:
        assert g[param].shape == param.shape
        assert g.compact(param).shape == param.shape


def test_note_000_gives_p_minus_y_over_n_for_the_logit(derivations):
    g = derivations["seed_000_bce"]
    N = Symbol("N", integer=True, positive=True)
    p, z = named(g, "p"), named(g, "z")
    y = MatrixSymbol("y", N, 1)
    assert same(g.gradient_of(z), MatMul(1 / N, p - y), {N: 3})
    h = named(g, "h")
    assert g.compact(MatrixSymbol("w2", 3, 1)) == h.T * LossGradient("z", N, 1)
    assert g.compact(MatrixSymbol("b", 1, 1)) == OneMatrix(1, N) * LossGradient("z", N, 1)


def test_note_001_batch_of_two_gives_the_notes_explicit_entries():
    example = get("seed_001_linreg_batch")
    g = example.derive()
    X, y = MatrixSymbol("X", 2, 3), MatrixSymbol("y", 2, 1)
    w, b = MatrixSymbol("w", 3, 1), MatrixSymbol("b", 1, 1)
    yhat = [sum(X[i, k] * w[k, 0] for k in range(3)) + b[0, 0] for i in range(2)]
    explicit = g.elementwise(w, example.dims)
    for k in range(3):
        expected = -(y[0, 0] - yhat[0]) * X[0, k] - (y[1, 0] - yhat[1]) * X[1, k]
        assert expand(explicit[k, 0] - expected) == 0
    assert expand(g.elementwise(b, example.dims)[0, 0] + (y[0, 0] - yhat[0]) + (y[1, 0] - yhat[1])) == 0


def test_note_001_single_example_gives_x_transpose_times_upstream(derivations):
    g = derivations["seed_001_linreg_single"]
    x, yhat = MatrixSymbol("x", 1, 3), named(g, "yhat")
    assert g.compact(MatrixSymbol("w", 3, 1)) == x.T * LossGradient("yhat", 1, 1)
    assert same(g.gradient_of(yhat), 2 * (yhat - MatrixSymbol("y", 1, 1)), {})


NEURON = {"w0": -0.20, "x0": 0.39, "w1": -0.39, "x1": -0.59, "w2": 0.20}


def at_values(expr, values):
    """A 1 x 1 expression evaluated with 1 x 1 symbols set to the worked example's numbers."""
    return float(expr.as_explicit()[0, 0].xreplace({s[0, 0]: v for s, v in values.items()}))


@pytest.mark.parametrize("param, expected", NEURON.items())
def test_note_002_sigmoid_neuron_numbers(param, expected, derivations):
    example = EXAMPLES["seed_002_neuron"]
    g = derivations["seed_002_neuron"]
    assert round(at_values(g[MatrixSymbol(param, 1, 1)], example.values), 2) == expected
    assert round(at_values(example.loss, example.values), 2) == 0.73


def test_note_002_two_paths_add_up(derivations):
    g = derivations["seed_002_two_paths"]
    x = MatrixSymbol("x", 1, 1)
    assert len(g.paths(x)) == 2
    value = at_values(g[x], EXAMPLES["seed_002_two_paths"].values)
    s = 1 / (1 + 2.718281828459045 ** 12)  # sigma(x y) at x = 3, y = -4
    assert value == pytest.approx(-4 * s * (1 - s) + 1, rel=1e-12)


def test_note_003_column_mlp(derivations):
    g = derivations["seed_003_mlp_column"]
    D, H, C = (Symbol(n, integer=True, positive=True) for n in ("D", "H", "C"))
    s, p, h1 = named(g, "s"), named(g, "p"), named(g, "h1")
    assert same(g.gradient_of(s), p - MatrixSymbol("y", C, 1), {C: 3})
    assert g.compact(MatrixSymbol("W2", C, H)) == LossGradient("s", C, 1) * h1.T
    assert g.compact(MatrixSymbol("W1", H, D)) == LossGradient("a1", H, 1) * MatrixSymbol("x", D, 1).T
    assert same(g.gradient_of(h1), MatrixSymbol("W2", C, H).T * LossGradient("s", C, 1), {C: 3, H: 2})


def test_note_004_half_mse_through_sigmoids(derivations):
    g = derivations["seed_004_sigmoid_231"]
    N = Symbol("N", integer=True, positive=True)
    z, h = named(g, "z"), named(g, "h")
    t = MatrixSymbol("t", 1, N)
    assert same(g.gradient_of(z), MatMul(1 / N, z - t), {N: 2})
    assert g.compact(MatrixSymbol("W2", 1, 3)) == LossGradient("v", 1, N) * h.T
    assert g.compact(MatrixSymbol("b1", 3, 1)) == LossGradient("u", 3, N) * OneMatrix(N, 1)


def test_residual_block_sums_both_paths(derivations):
    g = derivations["residual_block"]
    h1 = named(g, "H1")
    assert len(g.paths(h1)) == 2


def test_catalogue_is_complete():
    names = set(catalogue())
    assert {"seed_000_bce", "seed_001_linreg_batch", "seed_002_neuron", "seed_003_mlp_column",
            "seed_004_sigmoid_231", "residual_block"} <= names
    assert {f"mlp3_{a}" for a in ("relu", "leaky_relu", "elu", "sigmoid", "gelu", "silu", "tanh")} <= names
    assert isinstance(Rational(1, 2), Rational) and Float(0.5) == 0.5 and Intermediate


VARIANTS = [(name, convention) for name, e in EXAMPLES.items() for convention in e.variants]


@pytest.mark.parametrize("name, convention", VARIANTS, ids=[f"{n}-{c}" for n, c in VARIANTS])
def test_other_convention_matches_the_elementwise_derivative(name, convention):
    example = get(name, convention)
    assert example.convention == convention and example.name.endswith(f"_{convention}")
    checks = example.derive().verify(example.dims, points=1, symbolic=False)
    assert all(c.max_relative_error < 1e-10 for c in checks)


def test_asking_for_a_convention_an_example_lacks_names_the_ones_that_have_it():
    from derive.errors import DeriveError
    with pytest.raises(DeriveError, match="mlp3_relu"):
        get("seed_000_bce", "columns")
