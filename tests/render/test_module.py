"""Generated NumPy code against independent truths: PyTorch autograd on the same loss, the explicit
elementwise derivative, central finite differences; plus stability, dtype and structural promises."""

from __future__ import annotations

import ast
import dataclasses
import functools
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sympy import (
    Add,
    BlockMatrix,
    Determinant,
    HadamardPower,
    HadamardProduct,
    Identity,
    Integer,
    Inverse,
    MatAdd,
    MatMul,
    Matrix,
    MatrixExpr,
    MatrixSymbol,
    OneMatrix,
    Rational,
    Symbol,
    Trace,
    Transpose,
    cos,
    exp,
    log,
    sin,
)
from sympy.matrices.expressions.matexpr import MatrixElement

import derive
from derive.core.activations import sigmoid
from derive.core.graph import topological_order
from derive.core.losses import BinaryCrossEntropy, Loss, SoftmaxCrossEntropy
from derive.errors import CodegenError
from derive.examples import catalogue
from derive.render import module as codegen
from derive.render import runtime
from derive.render.numpy import DeriveNumPyPrinter

from ..evaluator import evaluate, torch_gradients, torch_loss_and_grads

EXAMPLES = catalogue()
NAMES = list(EXAMPLES)
MLP3 = [n for n in NAMES if n.startswith("mlp3_")]


@functools.cache
def generated(name: str):
    """(example, derivation, source, module) for a built-in example, generated (and verified) once."""
    example = EXAMPLES[name]
    g = example.derive()
    source = derive.to_numpy(g, name)
    return example, g, source, codegen.load_module(source, name)


def dims_of(g, arrays: dict) -> dict:
    """The dimension symbols' sizes, read off the arrays."""
    dims = {}
    for node in topological_order(g.root):
        if isinstance(node, MatrixSymbol) and node.name in arrays:
            for dim, size in zip(node.shape, arrays[node.name].shape):
                if isinstance(dim, Symbol):
                    dims[dim] = size
    return dims


def inputs(module, seed=0, dims=None):
    return module.example_inputs(np.random.default_rng(seed), dims)


def assert_close(actual, expected, rtol=1e-9, what="", floor=1e-12):
    """Relative error under ``rtol``; ``floor``: the least scale (a gradient exactly 0 is compared at
    the size of the others)."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(np.max(np.abs(expected), initial=0.0), floor)
    error = np.max(np.abs(actual - expected), initial=0.0) / scale
    assert error < rtol, f"{what}: relative error {error:.2e}\n{actual}\nvs\n{expected}"


# --- the independent truths ----------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_matches_torch_autograd(name):
    pytest.importorskip("torch", reason="torch autograd is the oracle here")
    _, g, _, module = generated(name)
    for seed in (0, 1):
        params, batch = inputs(module, seed)
        loss, grads = module.loss_and_grads(params, batch)
        torch_loss, torch_grads = torch_loss_and_grads(g.loss, params, batch, dims_of(g, {**params, **batch}))
        assert_close(loss, torch_loss, what=f"{name} loss")
        for key in params:
            assert_close(grads[key], torch_grads[key], what=f"{name} dL/d{key}")


# GELU's helpers work in blocks on threads once an activation has more than BLOCK entries: the whole
# step, blocked, threaded and at full size, against autograd.
@pytest.mark.parametrize(("block", "threads", "dims", "dtype", "rtol"), [
    (7, 1, {"N": 33}, np.float64, 1e-9),
    (7, 2, {"N": 33}, np.float64, 1e-9),
    (None, 2, {"N": 1100, "H": 64}, np.float64, 1e-9),   # 70400 entries: over the default BLOCK
    (None, 2, {"N": 1100, "H": 64}, np.float32, 1e-4),
], ids=["blocks", "blocks-threads", "default-block-threads", "default-block-threads-float32"])
def test_blocked_threaded_gelu_step_matches_autograd(block, threads, dims, dtype, rtol):
    pytest.importorskip("torch", reason="torch autograd is the oracle here")
    _, g, source, _ = generated("mlp3_gelu")
    module = codegen.load_module(source, "blocked")
    module.BLOCK = block or module.BLOCK
    module.THREADS = threads
    params, batch = inputs(module, 3, dims)
    assert params["W2"].shape[0] * batch["X"].shape[0] > module.BLOCK
    cast = {k: v.astype(dtype) for k, v in params.items()}
    loss, grads = module.loss_and_grads(cast, {k: v.astype(dtype) for k, v in batch.items()})
    torch_loss, torch_grads = torch_loss_and_grads(g.loss, params, batch, dims_of(g, {**params, **batch}))
    assert_close(loss, torch_loss, rtol, what="blocked GELU loss")
    for key in params:
        assert grads[key].dtype == dtype
        assert_close(grads[key], torch_grads[key], rtol, what=f"blocked GELU dL/d{key}")


# The explicit expansion of a 3-layer network takes seconds per example: the notes' networks, one
# smooth and two piecewise activations and the two-path block cover every printed form between them.
ELEMENTWISE = [n for n in NAMES if not n.startswith("mlp3_")] + ["mlp3_relu", "mlp3_leaky_relu", "mlp3_gelu"]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_matches_elementwise_truth(name):
    example, g, _, module = generated(name)
    dims = {str(k): v for k, v in example.dims.items()}
    params, batch = inputs(module, seed=3, dims=dims)
    _, grads = module.loss_and_grads(params, batch)
    arrays = {**params, **batch}
    dims = dims_of(g, arrays)
    values = {}
    for node in topological_order(g.loss):
        if isinstance(node, MatrixSymbol) and node.name in arrays:
            explicit = node.subs(dims).as_explicit()
            for index in np.ndindex(arrays[node.name].shape):
                values[explicit[index]] = float(arrays[node.name][index])
    for param in g.params:
        # substituted and evaluated by SymPy itself: no code printer stands between truth and test
        expected = np.array(g.elementwise(param, dims).xreplace(values).evalf(), dtype=float)
        assert_close(grads[param.name], expected, what=f"{name} dL/d{param.name}")


@pytest.mark.parametrize("name", NAMES)
def test_generated_file_checks_itself_against_finite_differences(name, tmp_path):
    _, _, source, _ = generated(name)
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    run = subprocess.run([sys.executable, str(path)], check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "largest relative error" in run.stdout
    assert codegen.verify_module(source, name, points=1, seed=5) < 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_generated_file_passes_ruff(name, tmp_path):
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    _, _, source, _ = generated(name)
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    run = subprocess.run([ruff, "check", "--isolated", "--line-length", "200", str(path)],
                         check=False, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def test_first_line_says_generated():
    _, _, source, _ = generated("mlp3_relu")
    assert source.splitlines()[0].startswith("# Generated by derive")


# --- dtype and stability ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_float32_in_float32_out(name):
    _, _, _, module = generated(name)
    params, batch = inputs(module)
    params32 = {k: v.astype(np.float32) for k, v in params.items()}
    batch32 = {k: v.astype(np.float32) for k, v in batch.items()}
    loss, grads = module.loss_and_grads(params32, batch32)
    assert np.asarray(loss).dtype == np.float32
    assert {k: g.dtype for k, g in grads.items()} == {k: np.dtype(np.float32) for k in params}
    _, grads64 = module.loss_and_grads(params, batch)
    for key in params:
        assert_close(grads[key], grads64[key], rtol=1e-3, what=f"{name} float32 dL/d{key}")


def _logit_losses(g):
    return [n for n in topological_order(g.loss) if isinstance(n, (SoftmaxCrossEntropy, BinaryCrossEntropy))]


STABLE = [n for n in NAMES if _logit_losses(EXAMPLES[n].derive())]


@pytest.mark.parametrize("name", STABLE)
def test_huge_logits_give_finite_loss_and_gradients(name):
    pytest.importorskip("torch", reason="torch autograd is the oracle here")
    _, g, _, module = generated(name)
    (loss_node,) = _logit_losses(g)
    logits_expr = loss_node.prediction.arg if isinstance(loss_node.prediction, sigmoid) else loss_node.prediction
    params, batch = inputs(module)
    arrays = {**params, **batch}
    dims = dims_of(g, arrays)
    for factor in (1, 10, 100, 1000, 10_000):  # scale the parameters until the logits are huge
        scaled = {k: v * factor for k, v in params.items()}
        logits = np.asarray(evaluate(logits_expr, {**scaled, **batch}, dims))
        if float(np.abs(logits).max()) >= 1e4:
            break
    assert float(np.abs(logits).max()) >= 1e4
    loss, grads = module.loss_and_grads(scaled, batch)
    assert np.isfinite(loss) and all(np.all(np.isfinite(v)) for v in grads.values())
    torch_loss, torch_grads = torch_loss_and_grads(g.loss, scaled, batch, dims)
    assert_close(loss, torch_loss, rtol=1e-7, what=f"{name} loss at logits ~1e4")
    for key in params:
        assert_close(grads[key], torch_grads[key], rtol=1e-6, what=f"{name} dL/d{key} at logits ~1e4")


# --- structure: closed forms, no Jacobians, no recomputation -----------------------------------------

def _function(source: str, name: str) -> ast.FunctionDef:
    return next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == name)


def _matmuls(node) -> int:
    return sum(isinstance(n, ast.BinOp) and isinstance(n.op, ast.MatMult) for n in ast.walk(node))


@pytest.mark.parametrize("name", MLP3)
def test_three_products_per_dense_layer_minus_the_unused_input_gradient(name):
    _, _, source, _ = generated(name)
    layers = 3
    forward, backward = _matmuls(_function(source, "forward")), _matmuls(_function(source, "backward"))
    assert forward == layers
    assert backward == 2 * layers - 1  # X.T @ G and G @ W.T per layer, no dL/dX
    assert forward + backward == 3 * layers - 1


@pytest.mark.parametrize("name", NAMES)
def test_no_jacobian_no_ones_matrix_no_recomputed_activation(name):
    _, _, source, _ = generated(name)
    body = ast.unparse(_function(source, "forward")) + ast.unparse(_function(source, "backward"))
    for banned in ("np.diag", "np.ones", "np.eye", "np.kron", "np.outer"):
        assert banned not in body
    backward = _function(source, "backward")
    backward_text = ast.unparse(backward)
    for statement in _function(source, "forward").body:
        if isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Call):
            # an activation computed forward is read from the cache, never computed again
            assert ast.unparse(statement.value) not in backward_text


class _RecordProducts(ast.NodeTransformer):
    def visit_BinOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.MatMult):
            return ast.Call(ast.Name("_recorded_matmul", ast.Load()), [node.left, node.right], [])
        return node


@pytest.mark.parametrize("name", NAMES)
def test_no_batch_by_batch_intermediate(name):
    example, _, source, _ = generated(name)
    tree = ast.fix_missing_locations(_RecordProducts().visit(ast.parse(source)))
    shapes = []

    def recorded(a, b):
        result = a @ b
        shapes.append(np.shape(result))
        return result

    namespace = {"_recorded_matmul": recorded, "__name__": "recorded"}
    exec(compile(tree, name, "exec"), namespace)  # noqa: S102 - our own generated code
    batch_dims = {str(d) for d in example.dims} & {"N"}
    dims = {"N": 11} if batch_dims else {}
    params, batch = namespace["example_inputs"](np.random.default_rng(0), dims)
    namespace["loss_and_grads"](params, batch)
    if batch_dims:
        assert (11, 11) not in shapes, shapes


def test_matrix_chain_takes_the_cheaper_association():
    N, D, H = (Symbol(s, integer=True, positive=True) for s in "NDH")
    X, W, v = MatrixSymbol("X", N, D), MatrixSymbol("W", D, H), MatrixSymbol("v", H, 1)
    printer = DeriveNumPyPrinter()
    assert printer.doprint(X * W * v) == "X @ (W @ v)"
    u = MatrixSymbol("u", 1, N)
    assert printer.doprint(u * X * W) == "(u @ X) @ W"


def test_sums_over_rows_and_columns_never_build_ones():
    N, H = (Symbol(s, integer=True, positive=True) for s in "NH")
    G = MatrixSymbol("G", N, H)
    printer = DeriveNumPyPrinter()
    assert printer.doprint(OneMatrix(1, N) * G) == "G.sum(axis=0, keepdims=True)"
    assert printer.doprint(G * OneMatrix(H, 1)) == "G.sum(axis=1, keepdims=True)"


_Nd, _Cd, _Dd = (Symbol(s, integer=True, positive=True) for s in "NCD")
_row, _row2, _col = MatrixSymbol("p", 1, _Cd), MatrixSymbol("s", 1, _Cd), MatrixSymbol("c", _Cd, 1)
_A, _G, _scale = MatrixSymbol("A", _Nd, _Dd), MatrixSymbol("G", _Dd, _Dd), MatrixSymbol("t", 1, 1)
_M = MatrixSymbol("M", _Nd, _Cd)
_bcast = OneMatrix(_Nd, 1) * _row + OneMatrix(_Nd, 1) * _row2          # N x C, printed as one row
_spread = _M * OneMatrix(_Cd, 1) * OneMatrix(1, _Cd)                    # N x C, printed as one column

# Expressions whose printed arrays leave axes to broadcasting, in each kind of consumer.
LAYOUT_EXPRESSIONS = [
    ("sum of broadcast rows", _bcast),
    ("broadcast columns", _col * OneMatrix(1, _Nd) + _col * OneMatrix(1, _Nd)),
    ("row sums spread", _spread),
    ("ones times ones", OneMatrix(1, _Nd) * OneMatrix(_Nd, _Cd)),
    ("column sum of a broadcast", OneMatrix(1, _Nd) * _bcast),
    ("batch mean spread", OneMatrix(_Nd, _Nd) * _M / _Nd),
    ("broadcast inner axis on both sides", _bcast.T * _bcast),
    ("broadcast inner axis on the right", _A.T * _bcast),
    ("broadcast inner axis on the left", _bcast.T * _A),
    ("spread inner axis", _spread * _col),
    ("transpose of a broadcast", _bcast.T),
    ("activation of a broadcast", derive.tanh(_bcast)),
    ("power of a broadcast", HadamardPower(_bcast, 2)),
    ("hadamard with a broadcast", HadamardProduct(_bcast, _spread)),
    ("softmax along a spread axis", derive.softmax(_spread)),
    ("entries of broadcasts", MatMul(Add(MatrixElement(_bcast, 3, 2), MatrixElement(_spread, 2, 3), evaluate=False),
                                     OneMatrix(1, 1))),
    ("1 x 1 scalar times ones", _scale[0, 0] * OneMatrix(_Nd, _Cd)),
    ("1 x 1 scalar times the 1 x 1 identity", _scale[0, 0] * Identity(1)),
    ("identity mask", HadamardProduct(_G, Identity(_Dd))),
    ("inverse with a scalar ridge", Inverse(_G * _G.T + _scale[0, 0] * Identity(_Dd))),
    ("trace of a broadcast product", Trace(_bcast.T * _bcast)),
    ("sum of broadcast entries", Trace(OneMatrix(1, _Nd) * derive.tanh(_bcast) * OneMatrix(_Cd, 1))),
    ("squared error of a broadcast", derive.mse(_bcast, _M)),
    ("cross-entropy of a spread", derive.cross_entropy(_spread, _M)),
]


@pytest.mark.parametrize(("name", "expr"), LAYOUT_EXPRESSIONS, ids=[row[0] for row in LAYOUT_EXPRESSIONS])
def test_printed_array_has_the_layout_the_printer_records(name, expr):
    _check_printed(expr)


def _check_printed(expr, seed: int = 0):
    """The raw printed array has the shape its Layout says and broadcasts to the value; the value at
    the declared shape (``full``) equals the test evaluator's, which builds every ones-matrix."""
    sizes = {_Nd: 5, _Cd: 4, _Dd: 3}
    rng = np.random.default_rng(seed)
    values = {m.name: rng.standard_normal(tuple(int(d.xreplace(sizes)) for d in m.shape))
              for m in expr.atoms(MatrixSymbol)}
    truth = np.asarray(evaluate(expr, values, sizes))
    printer = DeriveNumPyPrinter()
    raw, declared = printer.doprint(expr), printer.full(expr)
    namespace = {"np": np, **values, **{str(d): v for d, v in sizes.items()}}
    for helper in sorted(printer.helpers & set(runtime.HELPERS)):
        exec(runtime.source(helper), namespace)  # noqa: S102 - derive's own helpers
    raw_value, value = (eval(code, namespace) for code in (raw, declared))
    assert np.shape(value) == truth.shape, f"{declared} has shape {np.shape(value)}, declared {truth.shape}"
    assert np.allclose(value, truth, rtol=1e-10, atol=1e-10), declared
    if isinstance(expr, MatrixExpr):
        layout = printer.layout(expr)
        expected = () if layout.scalar else (1 if layout.rows else truth.shape[0], 1 if layout.cols else truth.shape[1])
        assert np.shape(raw_value) == expected, f"{raw}: shape {np.shape(raw_value)}, its layout says {expected}"
        assert np.allclose(np.broadcast_to(raw_value, truth.shape), truth, rtol=1e-10, atol=1e-10), raw


# Random N x C expressions mixing full arrays with broadcast rows, columns and scalars, under
# elementwise operations, products on either side and ones-matrix sums, then a consumer.
_Md, _K, _B = MatrixSymbol("Mb", _Nd, _Cd), MatrixSymbol("K", _Cd, _Cd), MatrixSymbol("B", _Nd, _Nd)
_LAYOUT_LEAVES = st.sampled_from([
    _M, _Md, _bcast, OneMatrix(_Nd, 1) * _row, MatrixSymbol("q", _Nd, 1) * OneMatrix(1, _Cd), _spread,
    OneMatrix(_Nd, _Nd) * _M, _scale[0, 0] * OneMatrix(_Nd, _Cd), OneMatrix(_Nd, _Cd)])


def _layout_nodes(children):
    return st.one_of(
        st.tuples(children, children).map(lambda ab: MatAdd(*ab)),
        st.tuples(children, children).map(lambda ab: HadamardProduct(*ab)),
        children.map(derive.tanh),
        children.map(lambda a: HadamardPower(a, 2)),
        children.map(lambda a: MatMul(a, _K)),
        children.map(lambda a: MatMul(_B, a)),
        children.map(lambda a: MatMul(OneMatrix(_Nd, _Nd), a)),
        children.map(lambda a: MatMul(a, OneMatrix(_Cd, 1), OneMatrix(1, _Cd))),
        children.map(lambda a: Transpose(MatMul(_K, Transpose(a)))))


def _entries(matrix):
    """The sum of a matrix's entries, 1^T A 1, as a scalar."""
    return Trace(OneMatrix(1, matrix.rows) * matrix * OneMatrix(matrix.cols, 1))


_CONSUMERS = st.sampled_from([
    lambda e: e, lambda e: Trace(e.T * e), lambda e: derive.mse(e, _Md), _entries,
    lambda e: derive.cross_entropy(e, _Md), lambda e: MatMul(MatrixElement(e, 4, 3), OneMatrix(1, 1))])


@given(expr=st.recursive(_LAYOUT_LEAVES, _layout_nodes, max_leaves=6), consumer=_CONSUMERS,
       seed=st.integers(0, 2**16))
def test_random_broadcasts_print_at_their_declared_value(expr, consumer, seed):
    _check_printed(consumer(expr), seed)


# --- names and failures ----------------------------------------------------------------------------

def test_unsafe_names_are_mangled_and_never_executed():
    N = Symbol("N", integer=True, positive=True)
    X = MatrixSymbol("x; import os", N, 2)
    W = MatrixSymbol("class", 2, 3)
    b = MatrixSymbol("__import__", 1, 3)
    Y = MatrixSymbol("Y\nimport os", N, 3)
    loss = derive.cross_entropy(derive.relu(X * W + OneMatrix(N, 1) * b), Y)
    source = derive.to_numpy(derive.gradients(loss, [W, b]), "unsafe\nnames")
    tree = ast.parse(source)
    imports = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert imports == ["import numpy as np"]
    module = codegen.load_module(source)
    params, batch = module.example_inputs(np.random.default_rng(0))
    assert set(params) == {"class", "__import__"} and set(batch) == {"x; import os", "Y\nimport os"}


def test_wrong_generated_code_raises_codegen_error(monkeypatch):
    monkeypatch.setattr(derive.relu, "record", dataclasses.replace(
        derive.relu.record, numpy_prime="({a} < 0).astype({a}.dtype)", numpy_in_place=("*=", "{a} < 0", None)))
    monkeypatch.setattr(DeriveNumPyPrinter, "_print_HadamardProduct",
                        lambda self, e: " * ".join(self._wrap(a) for a in e.args))
    with pytest.raises(CodegenError, match="finite differences"):
        derive.to_numpy(EXAMPLES["mlp3_relu"].derive(), "broken")


def test_to_numpy_refuses_what_is_not_a_derivation():
    with pytest.raises(CodegenError, match="Derivation"):
        derive.to_numpy("not a derivation", "x")


def test_losses_covered_by_examples():
    kinds = {type(n) for name in NAMES for n in topological_order(EXAMPLES[name].loss) if isinstance(n, Loss)}
    assert {SoftmaxCrossEntropy, BinaryCrossEntropy} <= kinds


def test_a_dimension_and_a_matrix_may_share_a_name():
    N = Symbol("N", integer=True, positive=True)
    X, W, Y = MatrixSymbol("N", N, 2), MatrixSymbol("W", 2, 1), MatrixSymbol("Y", N, 1)
    source = derive.to_numpy(derive.gradients(derive.mse(X * W, Y), [W]), "shared name")
    module = codegen.load_module(source)
    params, batch = module.example_inputs(np.random.default_rng(0))
    _, grads = module.loss_and_grads(params, batch)
    n = batch["N"].shape[0]
    expected = 2 / n * batch["N"].T @ (batch["N"] @ params["W"] - batch["Y"])
    assert_close(grads["W"], expected, what="dL/dW with a matrix named N")


# --- found by the property tests (tests/test_properties.py) -----------------------------------------

_N = Symbol("N", integer=True, positive=True)
_W, _w = MatrixSymbol("W", 2, 3), MatrixSymbol("w", 1, 1)
_X, _Y = MatrixSymbol("X", _N, 1), MatrixSymbol("Y", _N, 1)

@pytest.mark.parametrize(("loss", "wrt"), [
    (derive.mse(_X * _w, _Y) + Rational(1, 10) * Trace(_W.T * _W), [_w, _W]),   # weight decay with a factor
    (Trace(_W.T * _W) + Trace(_W.T * _W), [_W]),                                 # the same term twice
    (derive.mse(_X * _w, _Y) + Trace(_w.T * _w), [_w],),                           # trace of a 1 x 1 matrix
], ids=["decay times 1/10", "decay twice", "trace of 1 x 1"])
def test_scaled_identity_adjoint(loss, wrt):
    g = derive.gradients(loss, wrt)
    module = codegen.load_module(codegen.to_numpy(g, "decay", verify=False))
    rng = np.random.default_rng(0)
    values = {s.name: rng.uniform(-1, 1, size=tuple(int(d.subs({_N: 3})) for d in s.shape))
              for s in loss.atoms(MatrixSymbol)}
    params = {p.name: values[p.name] for p in wrt}
    _, grads = module.loss_and_grads(params, {k: v for k, v in values.items() if k not in params})
    for p in wrt:
        closed = evaluate(g[p], values, {_N: 3})
        assert np.allclose(grads[p.name], closed, rtol=1e-10, atol=1e-12), p.name


# Drawn by the property tests: the generated code's dL/dW3 differs from the closed form (which agrees
# with autograd and finite differences) by 4e-2 relative. Not yet reduced further: without the two
# W3 terms, or without the whitening inverses, it passes.
WRONG_W3 = '''
from sympy import Determinant, Identity, Inverse, MatrixSymbol, OneMatrix, Rational, Symbol, Trace, log
from derive import mse
N = Symbol("N", integer=True, positive=True)
D = Symbol("D", integer=True, positive=True)
X = MatrixSymbol("X", D, N)
S1, W1 = MatrixSymbol("S1", D, D), MatrixSymbol("W1", 1, D)
H1 = W1*Inverse(Identity(D) + S1.T*S1)*X
S2, W2, b2 = MatrixSymbol("S2", 1, 1), MatrixSymbol("W2", 2, 1), MatrixSymbol("b2", 2, 1)
H2 = W2*Inverse(Identity(1) + S2.T*S2)*H1 + b2*OneMatrix(1, N)
S3, W3, b3 = MatrixSymbol("S3", 2, 2), MatrixSymbol("W3", 1, 2), MatrixSymbol("b3", 1, 1)
H3 = W3*Inverse(Identity(2) + S3.T*S3)*H2 + b3*OneMatrix(1, N)
Y = MatrixSymbol("Y", 1, N)
loss = mse(H3, Y, examples="columns") + Rational(1, 10)*Trace(W3.T*W3) + log(Determinant(Identity(2) + W3.T*W3))
wrt = [X, S1, W1, S2, W2, b2, S3, W3, b3]
'''


def test_drawn_network_with_whitening_and_a_log_determinant():
    namespace: dict = {}
    exec(WRONG_W3, namespace)  # noqa: S102 - our own declaration
    g = derive.gradients(namespace["loss"], namespace["wrt"])
    module = codegen.load_module(codegen.to_numpy(g, "drawn", verify=False))
    rng = np.random.default_rng(0)
    dims = {namespace["N"]: 1, namespace["D"]: 1}
    values = {s.name: rng.uniform(-1, 1, size=tuple(int(d.subs(dims)) for d in s.shape))
              for s in namespace["loss"].atoms(MatrixSymbol)}
    params = {p.name: values[p.name] for p in g.params}
    _, grads = module.loss_and_grads(params, {k: v for k, v in values.items() if k not in params})
    for p in g.params:
        closed = evaluate(g[p], values, dims)
        assert np.allclose(grads[p.name], closed, rtol=1e-9, atol=1e-12), p.name


# --- shapes: broadcast rows, 1 x 1 scalars, ones-matrix reductions (issue 11) ------------------------
# Each row is a network whose generated module is compared, loss and every gradient, with PyTorch
# autograd of the declared loss evaluated by tests/evaluator.py (no derive printer involved), at the
# module's default sizes and at another batch size. A printed broadcast that lost its count, a 1 x 1
# parameter's gradient returned as a 0-d value or a ones-matrix product printed as a matmul fails here.

_C, _D, _H = (Symbol(s, integer=True, positive=True) for s in "CDH")
_p, _s, _r = (MatrixSymbol(n, 1, _C) for n in "psr")
_t, _lam = MatrixSymbol("t", 1, 1), MatrixSymbol("lam", 1, 1)
_XD, _WD = MatrixSymbol("X", _N, _D), MatrixSymbol("W", _D, _C)
_T, _YC = MatrixSymbol("T", _N, _C), MatrixSymbol("Y", _N, _C)
_W1, _W2, _b2 = MatrixSymbol("W1", _D, _H), MatrixSymbol("W2", _H, _C), MatrixSymbol("b2", 1, _C)


def _rows_of(*rows):
    """1 r1 + 1 r2 + ...: rows broadcast over the batch and summed (N x C, printed as one row)."""
    return MatAdd(*(OneMatrix(_N, 1) * row for row in rows))


def _batchnorm_network():
    gamma, beta = MatrixSymbol("gamma", 1, _H), MatrixSymbol("beta", 1, _H)
    Z = _XD * _W1
    centred = Z - OneMatrix(_N, _N) * Z / _N
    variance = OneMatrix(_N, _N) * HadamardPower(centred, 2) / _N
    normalised = HadamardProduct(centred, HadamardPower(variance + Rational(1, 100) * OneMatrix(_N, _H), Rational(-1, 2)))
    scaled = HadamardProduct(normalised, OneMatrix(_N, 1) * gamma) + OneMatrix(_N, 1) * beta
    return derive.mse(scaled * _W2 + OneMatrix(_N, 1) * _b2, _YC), [_W1, gamma, beta, _W2, _b2]


def _gp_noise_network():
    A, y, log_noise = MatrixSymbol("A", _N, _D), MatrixSymbol("y", _N, 1), MatrixSymbol("s", 1, 1)
    K = A * A.T + exp(log_noise[0, 0]) * Identity(_N)
    return Trace(y.T * Inverse(K) * y) + log(Determinant(K)), [log_noise]


def _ridge_network():
    y = MatrixSymbol("y", _N, 1)
    w = Inverse(_XD.T * _XD + _lam[0, 0] * Identity(_D)) * _XD.T * y
    return derive.mse(_XD * w, y), [_lam]


_pc, _sc = MatrixSymbol("p", _C, 1), MatrixSymbol("s", _C, 1)
_columns = _pc * OneMatrix(1, _N) + _sc * OneMatrix(1, _N)
_exp_logits = derive.exp(_XD * _WD)
_V = MatrixSymbol("V", _C, _H)

# (id, loss, wrt, item of issue 11, inputs drawn from a domain: name -> "one-hot" or "positive")
SHAPE_NETWORKS = [
    ("broadcast 2 rows, mse", derive.mse(_rows_of(_p, _s), _T), [_p, _s], 1, {}),
    ("broadcast 2 rows, trace", Trace(_rows_of(_p, _s).T * _rows_of(_p, _s)) + derive.mse(_XD * _WD, _YC),
     [_p, _s, _WD], 1, {}),
    ("broadcast 3 rows, sum of entries", _entries(_rows_of(_p, _s, _r)) + derive.mse(_XD * _WD, _YC),
     [_p, _s, _r, _WD], 1, {}),
    ("broadcast 2 columns b 1^T", Trace(_columns * _columns.T) + derive.mse(_columns, MatrixSymbol("T", _C, _N),
                                                                          examples="columns"),
     [_pc, _sc], 1, {}),
    ("broadcast under tanh, summed", _entries(derive.tanh(_rows_of(_p, _s))) + derive.mse(_XD * _WD, _YC),
     [_p, _s, _WD], 1, {}),
    ("broadcast times a matrix", derive.mse(_rows_of(_p, _s) * _V, MatrixSymbol("T", _N, _H)), [_p, _s, _V], 1, {}),
    ("a matrix times a broadcast", Trace(MatrixSymbol("A", _C, _N) * _rows_of(_p, _s)) + derive.mse(_XD * _WD, _YC),
     [_p, _s, _WD], 1, {}),
    ("temperature Z / t", derive.cross_entropy(_XD * _WD * (1 / _t[0, 0]), _YC), [_WD, _t], 2,
     {"Y": "one-hot", "t": "positive"}),
    ("temperature t Z", derive.cross_entropy(_t[0, 0] * (_XD * _WD), _YC), [_WD, _t], 2, {"Y": "one-hot"}),
    ("learnable exponent", derive.mse(HadamardPower(sigmoid(_XD * _WD), _t[0, 0]), _YC), [_WD, _t], 2, {}),
    ("ridge lambda", *_ridge_network(), 2, {"lam": "positive"}),
    ("GP noise log-scale", *_gp_noise_network(), 2, {}),
    ("batch norm, batch statistics", *_batchnorm_network(), 3, {}),
    ("mean pooling", derive.mse(OneMatrix(1, _N) * derive.relu(_XD * _W1) / _N * _W2, MatrixSymbol("P", 1, _C)),
     [_W1, _W2], 3, {}),
    ("mean pooling spread over the batch", derive.mse(OneMatrix(_N, 1) * (OneMatrix(1, _N) * derive.relu(_XD * _W1) / _N) * _W2,
                                                     _YC), [_W1, _W2], 3, {}),
    ("row sums spread", derive.mse(_XD * _WD * OneMatrix(_C, 1) * OneMatrix(1, _C), _YC), [_WD], 3, {}),
    ("normalised by row sums", derive.mse(HadamardProduct(_exp_logits, HadamardPower(
        _exp_logits * OneMatrix(_C, 1) * OneMatrix(1, _C), -1)), _YC), [_WD], 3, {}),
]
SHAPE_IDS = [row[0] for row in SHAPE_NETWORKS]
ONES_REDUCTIONS = [row for row in SHAPE_NETWORKS if row[3] == 3]


@functools.cache
def shape_module(name: str):
    """(loss, wrt, domain, source, module) of a SHAPE_NETWORKS row, generated (and verified) once."""
    _, loss, wrt, _, domain = next(row for row in SHAPE_NETWORKS if row[0] == name)
    source = derive.to_numpy(derive.gradients(loss, wrt), name)
    return loss, wrt, domain, source, codegen.load_module(source, name)


def _draw(loss, domain: dict, sizes: dict, seed: int) -> dict:
    """Random float64 values for every matrix of the loss, by name, drawn here (not by the module)."""
    rng = np.random.default_rng(seed)
    values = {}
    for symbol in sorted(loss.atoms(MatrixSymbol), key=lambda s: s.name):
        shape = tuple(int(d.xreplace(sizes)) for d in symbol.shape)
        kind = domain.get(symbol.name)
        if kind == "one-hot":
            values[symbol.name] = np.eye(shape[1])[rng.integers(0, shape[1], size=shape[0])]
        elif kind == "positive":
            values[symbol.name] = rng.uniform(0.5, 2.0, size=shape)
        else:
            values[symbol.name] = rng.standard_normal(shape)
    return values


def _sizes(default_dims: dict, loss, batch: int | None = None) -> dict:
    """The dimension symbols' sizes: the module's defaults, and ``batch`` examples if given."""
    symbols = {str(d): d for m in loss.atoms(MatrixSymbol) for d in m.shape if isinstance(d, Symbol)}
    sizes = {symbols[k]: v for k, v in default_dims.items() if k in symbols}
    if batch is not None:
        sizes[_N] = batch
    return sizes


@pytest.mark.parametrize("batch", [None, 9], ids=["default sizes", "batch of 9"])
@pytest.mark.parametrize("name", SHAPE_IDS)
def test_shapes_match_torch_autograd(name, batch):
    pytest.importorskip("torch", reason="torch autograd is the oracle here")
    loss, wrt, domain, _, module = shape_module(name)
    sizes = _sizes(module.DEFAULT_DIMS, loss, batch)
    assert batch is None or sizes[_N] != module.DEFAULT_DIMS["N"]
    for seed in (0, 1):
        values = _draw(loss, domain, sizes, seed)
        params = {p.name: values[p.name] for p in wrt}
        got_loss, grads = module.loss_and_grads(params, {k: v for k, v in values.items() if k not in params})
        torch_loss, torch_grads = torch_gradients(loss, values, sizes, list(params))
        assert_close(got_loss, torch_loss, what=f"{name} loss")
        for key, value in params.items():
            assert np.shape(grads[key]) == value.shape, f"dL/d{key} has shape {np.shape(grads[key])}"
            assert grads[key].flags.writeable, f"dL/d{key} is a read-only view"
            assert_close(grads[key], torch_grads[key], what=f"{name} dL/d{key}")


@pytest.mark.parametrize("name", SHAPE_IDS)
def test_shapes_float32_in_float32_out(name):
    loss, wrt, domain, _, module = shape_module(name)
    values = _draw(loss, domain, _sizes(module.DEFAULT_DIMS, loss), seed=2)
    params = {p.name: values[p.name] for p in wrt}
    batch = {k: v for k, v in values.items() if k not in params}
    loss32, grads32 = module.loss_and_grads({k: v.astype(np.float32) for k, v in params.items()},
                                            {k: v.astype(np.float32) for k, v in batch.items()})
    _, grads64 = module.loss_and_grads(params, batch)
    assert np.asarray(loss32).dtype == np.float32
    for key, value in params.items():
        assert (grads32[key].shape, grads32[key].dtype) == (value.shape, np.float32), key
        assert_close(grads32[key], grads64[key], rtol=1e-3, what=f"{name} float32 dL/d{key}")


class _RecordArrays(ast.NodeTransformer):
    """Wraps every computed value (operations, calls, attributes and subscripts read) in _recorded()."""

    def _wrap(self, node):
        self.generic_visit(node)
        return ast.Call(ast.Name("_recorded", ast.Load()), [node], [])

    visit_BinOp = visit_UnaryOp = visit_Call = _wrap

    def visit_Attribute(self, node):
        return self._wrap(node) if isinstance(node.ctx, ast.Load) else self.generic_visit(node)

    visit_Subscript = visit_Attribute


@pytest.mark.parametrize("name", [row[0] for row in ONES_REDUCTIONS])
def test_ones_reductions_build_no_ones_and_no_batch_by_batch_array(name):
    loss, wrt, domain, source, _ = shape_module(name)
    g = derive.gradients(loss, wrt)
    declared = {m.shape for m in topological_order(loss) if isinstance(m, MatrixExpr) and not isinstance(m, OneMatrix)}
    ones = {m.shape for e in [loss, *(g.compact(p) for p in wrt)] for m in e.atoms(OneMatrix)
            if m.shape not in declared}
    assert ones, "the network has no ones-matrix reduction to check"
    body = ast.unparse(_function(source, "forward")) + ast.unparse(_function(source, "backward"))
    assert "np.ones" not in body
    for rows, cols in ones:
        assert f"({rows}, {cols})" not in body, f"a {rows} x {cols} array of ones is made"
    shapes = []

    def recorded(value):
        if isinstance(value, np.ndarray):
            shapes.append(value.shape)
        return value

    tree = ast.fix_missing_locations(_RecordArrays().visit(ast.parse(source)))
    namespace = {"_recorded": recorded, "__name__": "recorded"}
    exec(compile(tree, name, "exec"), namespace)  # noqa: S102 - our own generated code
    sizes = {**_sizes(namespace["DEFAULT_DIMS"], loss), _N: 11}
    values = _draw(loss, domain, sizes, seed=0)
    params = {p.name: values[p.name] for p in wrt}
    shapes.clear()
    namespace["loss_and_grads"](params, {k: v for k, v in values.items() if k not in params})
    banned = {tuple(int(d.xreplace(sizes)) for d in shape) for shape in ones}
    banned -= {tuple(int(d.xreplace(sizes)) for d in shape) for shape in declared}
    assert banned and not banned & set(shapes), sorted(banned & set(shapes))

# --- networks whose structure SymPy hides: blocks, explicit matrices, negative powers, index sums ----

_D, _H = Symbol("D", integer=True, positive=True), Symbol("H", integer=True, positive=True)
_XD, _S, _V = MatrixSymbol("X", _N, _D), MatrixSymbol("S", _D, _D), MatrixSymbol("V", _D + _H, 1)
_WH, _YH = MatrixSymbol("W", _D, _H), MatrixSymbol("Y", _N, _H)
_A, _x = MatrixSymbol("A", _D, _D), MatrixSymbol("x", _D, 1)
_YC, _c = MatrixSymbol("Y", _H, _N), MatrixSymbol("c", 1, _H)   # targets with examples in columns, class weights
_t, _s, _P, _Q = MatrixSymbol("t", 1, 1), MatrixSymbol("s", 2, 1), MatrixSymbol("P", 2, _N), MatrixSymbol("Q", 2, _N)
_rotation = Matrix([[cos(_t[0, 0]), -sin(_t[0, 0])], [sin(_t[0, 0]), cos(_t[0, 0])]])
_blocks = BlockMatrix([[_XD, _XD * _S]])
_bH = MatrixSymbol("b", 1, _H)
_biased = _XD * _WH + OneMatrix(_N, 1) * _bH
_centred = _biased - OneMatrix(_N, _N) * _biased / _N   # the bias's gradient is exactly 0

STRUCTURED = [
    # id, loss, wrt
    ("block matrix", Trace(_blocks.T * _blocks) + Trace(_S.T * _S), [_S]),
    ("features concatenated", derive.mse(BlockMatrix([[_XD, derive.tanh(_XD * _WH)]]) * _V, _Y), [_WH, _V]),
    ("slice", derive.mse(derive.relu(_XD * _WH)[:, :1], _Y), [_WH]),
    ("rotation", derive.mse((_rotation * _P).T, _Q.T), [_t]),
    ("entries of a 2 x 1 parameter", derive.mse(Matrix([[_s[0, 0], 0], [0, _s[1, 0]]]) * _P, _Q, examples="columns"),
     [_s]),
    ("negative power", Trace(Inverse(_A) * Inverse(_A)) + Trace(_A**-3), [_A]),
    ("index sum", (_x.T * _A * _x)[0, 0] + derive.mse(_XD * _x, _Y), [_A, _x]),
    ("cross-entropy of 2Y", derive.cross_entropy(_XD * _WH, 2 * _YH), [_WH]),
    ("cross-entropy of weighted targets", derive.cross_entropy(_XD * _WH, HadamardProduct(_YH, OneMatrix(_N, 1) * _c)),
     [_WH]),
    ("cross-entropy, any target, columns", derive.cross_entropy(_WH.T * _XD.T, _YC, examples="columns"), [_WH]),
    ("cross-entropy declared", derive.cross_entropy(_XD * _WH, _YH, targets_sum_to_one=True), [_WH]),
    # found in review: a right module was refused (its differences round to 1e-3 at a loss of 1e8)
    ("a loss of 1e8", Trace(_S.T * _S) + Integer(10) ** 8, [_S]),
    ("entry of a softmax", derive.log(derive.softmax(_XD * _WH)[0, 1]) + derive.mse(_XD * _WH, _YH), [_WH]),
    # to_numpy's own check once refused these: rounding in the differences (1e-10) against a zero gradient
    ("a bias before a batch centring, mse", derive.mse(_centred, _YH, reduction="sum"), [_WH, _bH]),
    ("a bias before a batch centring, cross-entropy", derive.cross_entropy(_centred, _YH, reduction="sum"),
     [_WH, _bH]),
]


@pytest.mark.parametrize(("loss", "wrt"), [row[1:] for row in STRUCTURED], ids=[row[0] for row in STRUCTURED])
def test_structured_networks_match_autograd_of_the_declared_loss(loss, wrt):
    pytest.importorskip("torch", reason="torch autograd is the oracle here")
    g = derive.gradients(loss, wrt)
    source = derive.to_numpy(g, "structured")  # checked against finite differences before it is returned
    module = codegen.load_module(source)
    params, batch = inputs(module, seed=2)
    if any(isinstance(n, SoftmaxCrossEntropy) and not n.targets_sum_to_one for n in topological_order(g.root)):
        assert not np.allclose(batch["Y"].sum(axis=1), 1) and not np.allclose(batch["Y"].sum(axis=0), 1)
    loss_value, grads = module.loss_and_grads(params, batch)
    arrays = {**params, **batch}
    # autograd of the loss as declared, SymPy's BlockMatrix, Matrix and Sum evaluated by the test evaluator
    torch_loss, torch_grads = torch_gradients(loss, arrays, dims_of(g, arrays), list(params))
    assert_close(loss_value, torch_loss, what="loss")
    largest = max(float(np.max(np.abs(g))) for g in torch_grads.values())
    for key in params:
        assert_close(grads[key], torch_grads[key], what=f"dL/d{key}", floor=largest)


def _declared(examples: str):
    if examples == "rows":
        return derive.cross_entropy(_XD * _WH, _YH, targets_sum_to_one=True)
    return derive.cross_entropy(_WH.T * _XD.T, _YC, targets_sum_to_one=True, examples="columns")


BAD_TARGETS = [
    # id, examples, change to the one-hot targets (examples in rows of Y), message
    ("an example summing to 2", "rows", lambda y: y.__setitem__((1, 0), y[1, 0] + 1), "example 1 sums to 2.0"),
    ("weighted targets", "rows", lambda y: y.__imul__(np.arange(1, y.shape[1] + 1)), "example 0 sums to"),
    ("a NaN", "rows", lambda y: y.__setitem__((2, 1), np.nan), "example 2 sums to nan"),
    ("columns: an example summing to 0", "columns", lambda y: y.__setitem__(3, 0.0), "example 3 sums to 0.0"),
]


@pytest.mark.parametrize(("examples", "change", "message"), [row[1:] for row in BAD_TARGETS],
                         ids=[row[0] for row in BAD_TARGETS])
def test_declared_cross_entropy_refuses_targets_that_do_not_sum_to_one(examples, change, message):
    module = codegen.load_module(derive.to_numpy(derive.gradients(_declared(examples), [_WH]), "declared"))
    params, batch = inputs(module, seed=1)
    key = "Y"
    one_hot = batch[key] if examples == "rows" else batch[key].T
    assert np.allclose(one_hot.sum(axis=1), 1)  # example_inputs draws valid targets
    module.loss_and_grads(params, batch)
    rows = one_hot.copy()
    change(rows)
    batch[key] = rows if examples == "rows" else rows.T
    with pytest.raises(ValueError, match=f"the targets Y must sum to 1 for each example .*{message}"):
        module.loss_and_grads(params, batch)
