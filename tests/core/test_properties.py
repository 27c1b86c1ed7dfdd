"""Property tests: for random networks, every independent answer agrees for every parameter.

For each drawn network (tests/networks.py) ``derive.gradients`` runs with its built-in numeric check,
and the closed form ``g[W]``, evaluated numerically, must equal
* PyTorch autograd of the same SymPy loss evaluated with torch ops (tests/evaluator.py),
* the generated NumPy module (``derive.render.module.to_numpy``), loss and gradients, in float64 (and in
  float32 it stays float32),
* central finite differences of the loss evaluated with NumPy,
* and, on smaller networks whose explicit expansion is quick, the explicit elementwise derivative
  ``g.elementwise(W, dims)`` (the loss expanded into scalars and differentiated by SymPy).

Most networks use at least one of the spellings SymPy hides from a graph walk (blocks, explicit
matrices of parameter entries, 1 x 1 parameters as scalars, ones-matrix reductions, cross-entropy
targets not summing to 1, negative powers, index sums): hypothesis's statistics count them as
"uses a new shape" (``--hypothesis-show-statistics``), and a test asserts their share of the draws.

How many networks are drawn is the hypothesis profile's business (tests/conftest.py): ``ci`` (the
default) 500 against autograd (of which at least 300 use a new shape) and 20 against the elementwise
derivative, ``HYPOTHESIS_PROFILE=long`` 10000 and 400. A failure shrinks to a minimal network and prints
its declaration, a network file that ``derive sheet`` accepts (tested on a sample of networks).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, note, settings
from sympy import cse, lambdify, numbered_symbols
from sympy.matrices.expressions.matexpr import MatrixElement

import derive
from derive.core.explicit import variables
from derive.errors import CodegenError
from derive.render.module import load_module, to_numpy
from derive.render.text import text

from ..evaluator import central_differences, evaluate, numpy_walk, torch_gradients
from ..networks import networks

# How many networks the test against autograd draws: half the profile's count (a drawn network with the
# new shapes costs about twice an old one). At least this share of them uses one of the new shapes
# (blocks, entries, scalars ...): at the ci profile's 500 networks, 300 of them.
DRAWN = max(10, settings().max_examples // 2)
NEW_SHAPES_SHARE = 0.6

# Relative tolerances: autograd and the elementwise truth are exact up to rounding; central
# differences with a step of 1e-6 carry about 1e-9 of the loss's size in rounding error.
EXACT = 1e-8
DIFFERENCES = 1e-5
# Finite differences are meaningless across a kink (relu, leaky_relu, elu at 0): closer than this
# the comparison is skipped for that network (autograd and the elementwise truth still apply).
KINK_MARGIN = 1e-4


def derive_network(net):
    note(f"network declaration:{net!r}")
    for feature in net.features():
        event(feature)
    namespace = net.build()
    g = derive.gradients(namespace["loss"], namespace["wrt"], names=namespace["names"])
    dims = {namespace["N"]: net.n, namespace["D"]: net.d}
    return namespace, g, dims, net.values(namespace)


def assert_agree(what: str, param: str, got, want, tolerance: float, scale: float = 1.0) -> None:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape, f"dL/d{param}: {what} has shape {got.shape}, the closed form {want.shape}"
    size = max(scale, float(np.max(np.abs(want))), float(np.max(np.abs(got))), 1.0)
    error = float(np.max(np.abs(got - want))) / size
    assert error <= tolerance, (
        f"dL/d{param}: the closed form and {what} differ (relative error {error:.2e}):\n"
        f"closed form\n{want}\n{what}\n{got}")


def closed_values(g, values, dims) -> dict:
    return {p.name: np.asarray(evaluate(g[p], values, dims), dtype=float) for p in g.params}


@settings(max_examples=DRAWN)
@given(net=networks())
def test_closed_form_equals_autograd_and_finite_differences(net):
    pytest.importorskip("torch", reason="torch is one of the independent truths")
    namespace, g, dims, values = derive_network(net)
    loss = namespace["loss"]
    closed = closed_values(g, values, dims)
    walk = numpy_walk(loss, values, dims)
    loss_value = float(walk.memo[loss])
    assert np.isfinite(loss_value)

    torch_loss, autograd = torch_gradients(loss, values, dims, list(closed))
    assert abs(torch_loss - loss_value) <= EXACT * max(1.0, abs(loss_value))
    for name, value in closed.items():
        assert_agree("PyTorch autograd", name, autograd[name], value, EXACT)

    check_generated_code(g, values, closed, loss_value)

    if walk.kink_margin < KINK_MARGIN:
        event("finite differences skipped: a kinked activation's argument is near 0")
        return
    for name, value in closed.items():
        numeric = central_differences(loss, values, dims, name)
        assert_agree("central differences", name, numeric, value, DIFFERENCES, scale=abs(loss_value))


def check_generated_code(g, values: dict, closed: dict, loss_value: float) -> None:
    # to_numpy checks its module against finite differences and refuses one that disagrees: a refusal
    # is the promise kept (never wrong code handed out), counted here; code it hands out must be exact.
    try:
        source = to_numpy(g, "drawn")
    except CodegenError:
        event("generated code refused by to_numpy's own check")
        return
    generated = load_module(source)
    params = {name: values[name] for name in closed}
    batch = {name: value for name, value in values.items() if name not in params}
    generated_loss, generated_grads = generated.loss_and_grads(params, batch)
    assert abs(float(generated_loss) - loss_value) <= EXACT * max(1.0, abs(loss_value))
    for name, value in closed.items():
        assert_agree("the generated NumPy code", name, generated_grads[name], value, EXACT)
    # float32 in, float32 out: no constant (I, 1) promotes a gradient to float64 or to integers
    with np.errstate(all="ignore"):  # the values may overflow in float32; only the dtype is asserted
        _, grads32 = generated.loss_and_grads({k: v.astype(np.float32) for k, v in params.items()},
                                              {k: v.astype(np.float32) for k, v in batch.items()})
    assert {k: np.asarray(v).dtype for k, v in grads32.items()} == {k: np.dtype(np.float32) for k in params}


def elementwise_values(truth, values: dict) -> np.ndarray:
    """An explicit matrix of scalar expressions in entries ``X[i, j]``, evaluated at ``values``."""
    # the matrices are lambdify's arguments: substituting stand-ins for their entries first would
    # rebuild the whole expression (each Min in it comparing its arguments again), which takes longer
    entries = sorted(variables(truth), key=str)
    assert all(isinstance(e, MatrixElement) for e in entries), entries
    matrices = sorted({e.args[0] for e in entries}, key=str)
    f = lambdify(matrices, truth, modules=["numpy", "scipy"], dummify=False,
                 cse=lambda expr: cse(expr, symbols=numbered_symbols("_s"), list=False))   # shared parts printed once
    return np.asarray(f(*(values[m.name] for m in matrices)), dtype=float)


# The explicit expansion grows fast with width and depth (a 3 x 3 symbolic inverse alone takes
# seconds, a block or an explicit matrix of entries tens of seconds), so this truth is drawn on
# networks of up to 3 layers, 2 wide, with N and D up to 2, and fewer of them.
@settings(max_examples=max(10, settings().max_examples // 50))
@given(net=networks(most=3, widest=2, batch=2))
def test_closed_form_equals_the_elementwise_derivative(net):
    _, g, dims, values = derive_network(net)
    closed = closed_values(g, values, dims)
    for p in g.params:
        truth = elementwise_values(g.elementwise(p, net.dims), values)
        assert_agree("the elementwise derivative", p.name, truth, closed[p.name], EXACT)


def test_most_drawn_networks_use_the_new_shapes():
    drawn = []

    @settings(database=None, max_examples=DRAWN)
    @given(net=networks())
    def draw(net):
        drawn.append(bool(net.new_shapes()))

    draw()
    assert len(drawn) >= DRAWN
    assert sum(drawn) >= NEW_SHAPES_SHARE * len(drawn), f"{sum(drawn)} of {len(drawn)} drawn networks use a new shape"


# A failure prints the network's declaration: it must be a network file derive sheet accepts, whose
# loss and parameters are the drawn network's (the sheet writes its gradients out at the file's dims).
@settings(max_examples=max(5, settings().max_examples // 100))
@given(net=networks(most=3, widest=2, batch=2))
def test_the_printed_network_is_a_network_file_derive_sheet_accepts(net, tmp_path_factory):
    from derive import cli
    from derive.examples.files import load_network_file
    note(f"network declaration:{net!r}")
    folder = tmp_path_factory.mktemp("drawn")
    path = folder / "drawn.py"
    path.write_text(repr(net).lstrip("\n"))
    assert cli.main(["sheet", str(path), "--output-dir", str(folder)]) == 0
    assert (folder / "drawn.tex").read_text().startswith("% Generated by derive")
    namespace, loaded = net.build(), load_network_file(path)
    # as text: an index sum's dummy indices are new symbols at each run
    assert text(loaded.loss) == text(namespace["loss"]) and list(loaded.wrt) == namespace["wrt"]
    assert {str(k): v for k, v in loaded.dims.items()} == net.dims
