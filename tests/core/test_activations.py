"""The activations: each scalar function's derivative, reference formula (what lambdify and the truth
evaluate) and elementary rewrite agree, and one record is all a new activation takes."""

import numpy as np
import pytest
from sympy import Heaviside, Rational, Symbol, diff, exp, lambdify, tanh

from derive.core.activations import Elu, Gelu, Indicator, LeakyRelu, NormalCdf, Relu, Sigmoid, Silu, Softplus

x = Symbol("x", real=True)

SCALARS = [
    ("relu", Relu(x)),
    ("leaky_relu", LeakyRelu(x, Rational(1, 10))),
    ("elu", Elu(x, 1)),
    ("sigmoid", Sigmoid(x)),
    ("normal_cdf", NormalCdf(x)),
    ("gelu", Gelu(x)),
    ("silu", Silu(x)),
    ("softplus", Softplus(x)),
]
POINTS = [-2.5, -0.7, -0.1, 0.3, 1.1, 3.0]


@pytest.mark.parametrize("name, f", SCALARS, ids=[row[0] for row in SCALARS])
def test_derivative_matches_the_elementary_definition(name, f):
    ours = lambdify(x, diff(f, x), "numpy")
    truth = lambdify(x, diff(f.rewrite(exp), x), "numpy")
    for point in POINTS:
        assert ours(point) == pytest.approx(float(truth(point)), rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("name, f", SCALARS, ids=[row[0] for row in SCALARS])
def test_numpy_code_matches_the_elementary_definition(name, f):
    ours = lambdify(x, f, "numpy")
    for point in POINTS:
        assert ours(np.float64(point)) == pytest.approx(float(f.rewrite(exp).subs(x, point).evalf()), rel=1e-12)


@pytest.mark.parametrize("name, f", SCALARS, ids=[row[0] for row in SCALARS])
def test_derivative_matches_finite_differences(name, f):
    value, slope = lambdify(x, f, "numpy"), lambdify(x, diff(f, x), "numpy")
    h = 1e-6
    for point in POINTS:
        assert slope(point) == pytest.approx((value(point + h) - value(point - h)) / (2 * h), rel=1e-6, abs=1e-8)


def test_relu_derivative_at_zero_is_zero_as_in_pytorch():
    assert diff(Relu(x), x) == Indicator(x)
    assert diff(Relu(x), x).subs(x, 0) == 0
    assert diff(Relu(x), x).rewrite(Heaviside) == Heaviside(x, 0)
    assert lambdify(x, diff(Relu(x), x), "numpy")(np.array([-1.0, 0.0, 2.0])).tolist() == [0.0, 0.0, 1.0]


def test_numbers_evaluate():
    assert float(Sigmoid(2).evalf()) == pytest.approx(1 / (1 + np.exp(-2)))
    assert Relu(-3) == 0 and Relu(5) == 5
    assert float(tanh(0.5)) == pytest.approx(np.tanh(0.5))


# --- found by the property tests (tests/test_properties.py) -----------------------------------------

y = Symbol("y", real=True)


@pytest.mark.parametrize("name, f", SCALARS, ids=[row[0] for row in SCALARS])
def test_numpy_code_of_a_sum_argument_matches_evalf(name, f):
    """The argument of an activation is usually a sum (x W + b): its NumPy code must keep it whole
    (LeakyRelu's once printed alpha*x - y for LeakyRelu(x - y))."""
    g = f.subs(x, x - y)
    numeric = lambdify((x, y), g, modules=["numpy", "scipy"])
    for point in POINTS:
        truth = float(g.subs({x: point, y: 0.5}).evalf(30))
        assert float(numeric(point, 0.5)) == pytest.approx(truth, rel=1e-12, abs=1e-14)


# --- one record is all an activation takes ------------------------------------------------------------

@pytest.fixture
def cubic(monkeypatch):
    """A toy activation x^3/3 + x, registered in one record for this test only."""
    from derive.core import elementwise
    monkeypatch.setattr(elementwise, "_REGISTRY", dict(elementwise._REGISTRY))
    monkeypatch.setattr(elementwise, "_CLASSES", dict(elementwise._CLASSES))
    return elementwise.activation(elementwise.Activation(
        "cubic", lambda x: x**3 / 3 + x, r"\operatorname{cubic}", aliases=("Cubic",),
        numpy="({a} ** 3 / 3 + {a})", numpy_prime="({a} ** 2 + 1)"))


def test_a_toy_activation_in_one_record_is_derived_printed_parsed_and_evaluated(cubic):
    from sympy import MatrixSymbol

    import derive
    from derive.core import truth
    from derive.render.latex import latex

    N = Symbol("N", integer=True, positive=True)
    X, W, Y = MatrixSymbol("X", N, 2), MatrixSymbol("W", 2, 3), MatrixSymbol("Y", N, 3)
    loss = derive.mse(cubic(X * W), Y)
    g = derive.gradients(loss, [W], names={"Z": X * W})        # the built-in numeric check passes
    assert all(c.max_relative_error < 1e-10 for c in g.verify({N: 2}, points=2))
    assert latex(cubic(X * W)) == r"\operatorname{cubic}\left(X W\right)"
    assert r"\operatorname{cubic}'\left(Z\right)" in latex(g.gradient_of("Z"))
    source = derive.to_numpy(g, "cubic")                       # verified against differences and the truth
    assert "** 2 + 1" in source
    assert derive.check("2/N X^T ((Cubic(Z) - Y) ⊙ cubic'(Z))", loss, W, names={"Z": X * W})
    assert not derive.check("2/N X^T (Cubic(Z) - Y)", loss, W, names={"Z": X * W})
    a = np.array([[-1.5, 0.5], [2.0, 0.0]])
    np.testing.assert_allclose(truth.evaluate(cubic(MatrixSymbol("A", 2, 2)), {"A": a}), a**3 / 3 + a, rtol=1e-15)
    assert "cubic(A)" in " ".join(derive.supported())
