"""derive.vjp: a layer's vector-Jacobian products, against the elementwise derivative of <G, Y> and
against torch autograd of independent re-implementations (tests/layer_references.py)."""

import numpy as np
import pytest
from sympy import Identity, Matrix, MatrixSymbol, Symbol, Trace, Transpose, exp, preorder_traversal

import derive
from derive import relu, sigmoid
from derive.examples import layers

from ..evaluator import evaluate
from ..layer_references import WRONG_SHAPES, draw, torch_reference

LAYERS = layers()
N = Symbol("N", integer=True, positive=True)
# sizes other than the layers' own dims (N = 2): a batch of 5, widths 3
SIZES = {"N": 5, "D": 3}
# the attention head's elementwise expansion takes minutes: its truth here is autograd (and the
# numeric check vjp runs before it returns)
ELEMENTWISE = [name for name in LAYERS if name != "layer_attention_head"]


@pytest.fixture(scope="module")
def derived():
    return {name: example.derive() for name, example in LAYERS.items()}


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_every_vjp_matches_the_elementwise_derivative(name, derived):
    checks = derived[name].verify(LAYERS[name].dims, points=2)
    assert [c.param for c in checks] == [*LAYERS[name].inputs, *LAYERS[name].params]
    assert all(c.symbolic and c.max_relative_error < 1e-10 for c in checks)


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_vjp_matches_torch_autograd_of_an_independent_layer(name, derived):
    torch = pytest.importorskip("torch")
    g = derived[name]
    values = draw([*g.arguments, g.upstream], SIZES, seed=1)
    dims = {d: SIZES[str(d)] for s in g.arguments for d in s.shape if not d.is_Integer}
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in values.items() if k != g.upstream.name}
    output = torch_reference(name)(**tensors)
    assert np.allclose(np.asarray(evaluate(g.output, values, dims)), output.detach().numpy(), rtol=1e-10, atol=1e-12)
    wrt = [p.name for p in g.params]
    expected = torch.autograd.grad(output, [tensors[k] for k in wrt], torch.tensor(values[g.upstream.name]))
    for param, truth in zip(g.params, expected):
        closed = np.asarray(evaluate(g[param], values, dims), dtype=float).reshape(truth.shape)
        assert np.allclose(closed, truth.numpy(), rtol=1e-9, atol=1e-11), param.name


@pytest.mark.parametrize("name", list(LAYERS))
def test_closed_forms_hold_no_made_up_trace(name, derived):
    g = derived[name]
    for param in g.params:
        nodes = list(preorder_traversal(g[param]))
        assert not any(isinstance(n, (Identity, Trace)) for n in nodes), param.name
        assert Transpose(g.upstream) not in nodes, param.name   # no G^T Y product
        assert g.upstream in g[param].atoms(MatrixSymbol)


def test_the_upstream_is_named_after_the_output():
    X, W = MatrixSymbol("X", N, 3), MatrixSymbol("W", 3, 2)
    assert derive.vjp(relu(X * W), [X], [W]).upstream.name == "dY"
    # a layer that already has a dY: the output is Y_2, its upstream dY_2
    assert derive.vjp(relu(X * MatrixSymbol("dY", 3, 2)), [X]).upstream.name == "dY_2"
    g = derive.vjp(relu(X * W), [X], [W], names={"H": relu(X * W)})
    assert (g.upstream.name, g.upstream.shape) == ("dH", (N, 2))
    assert g.upstream in g[W].atoms(MatrixSymbol) and MatrixSymbol("dY", N, 2) not in g[W].atoms(MatrixSymbol)


def test_a_layer_with_a_constant_leaves_it_undifferentiated():
    X, W, M = MatrixSymbol("X", N, 3), MatrixSymbol("W", 3, 2), MatrixSymbol("M", N, 2)
    g = derive.vjp(derive.core.algebra.hadamard(sigmoid(X * W), M), inputs=[X], params=[W])
    assert g.arguments == (X, M, W) and list(g.params) == [X, W]
    assert all(c.symbolic for c in g.verify({N: 2}))


def test_an_explicit_matrix_of_the_inputs_and_parameters_is_a_layer():
    torch = pytest.importorskip("torch")
    x, a = MatrixSymbol("x", 2, 1), MatrixSymbol("a", 1, 1)
    g = derive.vjp(Matrix([[a[0, 0] * x[0, 0], x[1, 0] ** 2], [exp(a[0, 0]), x[0, 0] * x[1, 0]]]), [x], [a])
    assert all(c.symbolic for c in g.verify({}))
    values = draw([x, a, g.upstream], {}, seed=3)
    tx, ta = (torch.tensor(values[k], requires_grad=True) for k in ("x", "a"))
    output = torch.stack([torch.stack([ta[0, 0] * tx[0, 0], tx[1, 0] ** 2]),
                          torch.stack([torch.exp(ta[0, 0]), tx[0, 0] * tx[1, 0]])])
    expected = torch.autograd.grad(output, [tx, ta], torch.tensor(values[g.upstream.name]))
    for param, truth in zip([x, a], expected):
        closed = np.asarray(evaluate(g[param], values, {}), dtype=float).reshape(truth.shape)
        assert np.allclose(closed, truth.numpy(), rtol=1e-10, atol=1e-12), param.name


def _x():
    return MatrixSymbol("X", N, 3)


W_ = MatrixSymbol("W", 3, 2)
V_ = MatrixSymbol("V", 3, 2)
D_H = MatrixSymbol("dH", 3, 2)   # a matrix with the name the upstream of an output named H would take

BAD_LAYERS = [
    # (output, inputs, params, names, error, words in the message)
    (lambda: Trace(_x().T * _x()), [], [], None, derive.InvalidLayerOutput, "not a matrix expression"),
    (lambda: 3, [], [], None, derive.InvalidLayerOutput, "not a matrix expression"),
    (lambda: _x(), [_x()], [], None, derive.InvalidLayerOutput, "not computed"),
    (lambda: Matrix([[1, 2]]), [], [], None, derive.InvalidLayerOutput, "not computed"),
    (lambda: relu(_x() * W_), [_x()], [W_, V_], None, derive.ParameterNotInLoss, "does not depend on V"),
    (lambda: relu(_x() * W_), [_x()], [_x(), W_], None, derive.InputIsParameter, "X is given both"),
    (lambda: relu(_x() * W_), [_x()], ["W"], None, derive.InvalidParameter, "MatrixSymbols"),
    (lambda: relu(_x() * D_H), [_x()], [], {"H": relu(_x() * D_H)}, derive.InvalidParameter, "named dH"),
]


@pytest.mark.parametrize("output, inputs, params, names, error, words", BAD_LAYERS)
def test_bad_layers_are_refused_in_words(output, inputs, params, names, error, words):
    with pytest.raises(error, match=words):
        derive.vjp(output(), inputs, params, names=names)


def test_the_numpy_module_of_a_layer_takes_the_upstream_gradient(derived):
    torch = pytest.importorskip("torch")
    from derive.render.module import load_module
    name = "layer_gelu_dense"
    g = derived[name]
    module = load_module(derive.to_numpy(g, name))
    assert module.ARGS == ("X", "W", "b") and module.UPSTREAM == "dY"
    values = draw([*g.arguments, g.upstream], SIZES, seed=2)
    args = [values[k] for k in module.ARGS]
    output, cache = module.forward(*args)
    grads = module.backward(cache, values["dY"])
    tensors = {k: torch.tensor(values[k], requires_grad=True) for k in module.ARGS}
    reference = torch_reference(name)(**tensors)
    expected = torch.autograd.grad(reference, list(tensors.values()), torch.tensor(values["dY"]))
    assert np.allclose(output, reference.detach().numpy(), rtol=1e-10)
    for grad, truth in zip(grads, expected):
        assert np.allclose(grad, truth.numpy(), rtol=1e-9, atol=1e-12)
    assert "dY" not in cache   # the upstream is handed to backward, never cached


@pytest.mark.parametrize("name, key, shape, message", WRONG_SHAPES)
def test_the_numpy_module_refuses_arguments_of_the_wrong_shape_by_name(name, key, shape, message, derived):
    from derive.render.module import load_module
    module = load_module(derive.to_numpy(derived[name], name))
    args, _ = module.example_inputs(np.random.default_rng(0), dims={"N": 5, "D": 3})
    with pytest.raises(ValueError) as caught:
        module.forward(*[np.zeros(shape) if k == key else a for k, a in zip(module.ARGS, args)])
    assert str(caught.value) == message
    assert module.forward(*args)[0].shape[0] == 5   # the right shapes, at another batch size, pass


def test_the_sheet_of_a_layer_pairs_the_output_with_its_upstream(derived):
    tex = derive.to_latex(derived["layer_gelu_dense"])
    assert r"\left\langle dY, Y \right\rangle" in tex


def test_gelu_dense_vjp_is_the_board_formula(derived):
    g = derived["layer_gelu_dense"]
    X, W = LAYERS["layer_gelu_dense"].inputs[0], LAYERS["layer_gelu_dense"].params[0]
    assert str(g.compact(W)) == "X.T*dL/dZ" and str(g.compact(X)) == "dL/dZ*W.T"
    assert str(g.gradient_of("Y")) == "dY"   # the pairing hands Y the upstream itself
    assert str(g[W]) == "X.T*(HadamardProduct(dY, gelu_prime(X*W + 1*b)))"
