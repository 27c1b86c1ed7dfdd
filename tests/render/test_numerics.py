"""Numerics of the generated code: huge logits, float32, determinism.

The truth here is PyTorch's own stable losses on the logits (``binary_cross_entropy_with_logits``,
``cross_entropy``) and autograd, computed from the logits the network produces, in the same dtype.
"""

from __future__ import annotations

import numpy as np
import pytest
from sympy import MatrixSymbol, OneMatrix, Symbol

import derive
from derive.render import module as codegen

N = Symbol("N", integer=True, positive=True)
SIZES = {"N": 4, "D": 3, "C": 3}


def network(loss: str, rows: bool):
    """One dense layer to logits, then bce on their sigmoid or softmax cross-entropy."""
    examples = "rows" if rows else "columns"
    X = MatrixSymbol("X", N, 3) if rows else MatrixSymbol("X", 3, N)
    W = MatrixSymbol("W", 3, 3)
    b = MatrixSymbol("b", 1, 3) if rows else MatrixSymbol("b", 3, 1)
    Y = MatrixSymbol("Y", N, 3) if rows else MatrixSymbol("Y", 3, N)
    Z = X * W + OneMatrix(N, 1) * b if rows else W * X + b * OneMatrix(1, N)
    if loss == "bce":
        return derive.bce(derive.sigmoid(Z), Y, examples=examples), [W, b]
    return derive.cross_entropy(Z, Y, examples=examples), [W, b]


CASES = [(loss, rows, dtype) for loss in ("bce", "cross_entropy") for rows in (True, False)
         for dtype in (np.float64, np.float32)]
IDS = [f"{loss}-{'rows' if rows else 'columns'}-{np.dtype(dtype).name}" for loss, rows, dtype in CASES]


def huge_inputs(loss: str, rows: bool, dtype, scale: float):
    """Inputs whose logits reach about ``scale`` in magnitude, with valid targets."""
    rng = np.random.default_rng(7)
    x = rng.choice([-1.0, 1.0], size=(4, 3))
    w = rng.uniform(-1, 1, size=(3, 3)) * scale
    b = rng.uniform(-1, 1, size=(1, 3))
    if loss == "bce":
        y = rng.uniform(0, 1, size=(4, 3))
    else:
        y = np.eye(3)[rng.integers(0, 3, size=4)]
    if not rows:
        x, w, b, y = x.T, w.T, b.T, y.T
    cast = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in {"X": x, "W": w, "b": b, "Y": y}.items()}
    return {"W": cast["W"], "b": cast["b"]}, {"X": cast["X"], "Y": cast["Y"]}


def torch_truth(loss: str, rows: bool, params: dict, batch: dict):
    torch = pytest.importorskip("torch", reason="PyTorch's stable losses are the truth here")
    F = torch.nn.functional
    t = {k: torch.tensor(v, requires_grad=k in params) for k, v in {**params, **batch}.items()}
    z = t["X"] @ t["W"] + t["b"] if rows else t["W"] @ t["X"] + t["b"]
    if not rows:
        z, y = z.T, t["Y"].T
    else:
        y = t["Y"]
    n = z.shape[0]
    if loss == "bce":
        value = F.binary_cross_entropy_with_logits(z, y, reduction="sum") / n
    else:
        value = F.cross_entropy(z, y.argmax(dim=1), reduction="sum") / n
    grads = torch.autograd.grad(value, [t["W"], t["b"]])
    return value.detach().numpy(), {"W": grads[0].numpy(), "b": grads[1].numpy()}, float(z.detach().abs().max())


@pytest.fixture(scope="module")
def modules():
    out = {}
    for loss in ("bce", "cross_entropy"):
        for rows in (True, False):
            expr, wrt = network(loss, rows)
            out[loss, rows] = codegen.load_module(derive.to_numpy(derive.gradients(expr, wrt), f"{loss}_{rows}"))
    return out


@pytest.mark.parametrize(("loss", "rows", "dtype"), CASES, ids=IDS)
def test_logits_of_1e4_match_pytorchs_stable_losses(modules, loss, rows, dtype):
    params, batch = huge_inputs(loss, rows, dtype, scale=1e4)
    got_loss, got = modules[loss, rows].loss_and_grads(params, batch)
    want_loss, want, largest = torch_truth(loss, rows, params, batch)
    assert largest >= 1e3, "the logits are not huge: the test would not test anything"
    assert np.isfinite(got_loss) and all(np.all(np.isfinite(g)) for g in got.values())
    rtol = 1e-4 if dtype == np.float32 else 1e-9
    assert float(got_loss) == pytest.approx(float(want_loss), rel=rtol)
    for name in params:
        scale = max(float(np.max(np.abs(want[name]))), 1.0)
        assert float(np.max(np.abs(got[name] - want[name]))) <= rtol * scale, name


@pytest.mark.parametrize(("loss", "rows", "dtype"), CASES, ids=IDS)
def test_dtype_is_kept_and_results_are_deterministic(modules, loss, rows, dtype):
    params, batch = huge_inputs(loss, rows, dtype, scale=1.0)
    first_loss, first = modules[loss, rows].loss_and_grads(params, batch)
    second_loss, second = modules[loss, rows].loss_and_grads({k: v.copy() for k, v in params.items()},
                                                             {k: v.copy() for k, v in batch.items()})
    assert np.asarray(first_loss).dtype == dtype
    assert {k: v.dtype for k, v in first.items()} == {k: np.dtype(dtype) for k in params}
    assert np.asarray(first_loss).tobytes() == np.asarray(second_loss).tobytes()
    assert all(first[k].tobytes() == second[k].tobytes() for k in params)


# --- the GELU helpers: exact erf GELU from Cephes' rational fits (float64, float32), in blocks --------

@pytest.fixture(scope="module")
def gelu_module():
    from derive.examples import get
    return codegen.load_module(codegen.to_numpy(get("mlp3_gelu").derive(), "mlp3_gelu"), "mlp3_gelu")


GELU_POINTS = np.concatenate([np.linspace(-12, 12, 24_001), [-40.0, -0.0, 0.0, 1e-30, 40.0]])


def gelu_truth(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GELU and its derivative in float64 from SciPy's normal distribution function."""
    from scipy.special import ndtr
    cdf = ndtr(x)
    return x * cdf, cdf + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)


@pytest.mark.parametrize(("dtype", "atol", "cdf_rtol"), [(np.float64, 1e-15, 2.5e-15), (np.float32, 1e-6, 1e-6)],
                         ids=["float64", "float32"])
@pytest.mark.parametrize(("threads", "block"), [(1, 1 << 16), (2, 7), (1, 100)], ids=["whole", "threads", "blocks"])
def test_gelu_helpers_match_the_exact_gelu(gelu_module, monkeypatch, dtype, atol, cdf_rtol, threads, block):
    monkeypatch.setattr(gelu_module, "THREADS", threads)
    monkeypatch.setattr(gelu_module, "BLOCK", block)
    x = GELU_POINTS.astype(dtype).reshape(-1, 1)  # 2-D and contiguous, as activations are
    value, slope = gelu_truth(x.astype(np.float64))
    got_value, got_slope = gelu_module.gelu(x), gelu_module.gelu_prime(x)
    assert got_value.dtype == dtype and got_slope.dtype == dtype
    np.testing.assert_allclose(got_value, value, rtol=cdf_rtol, atol=atol)
    np.testing.assert_allclose(got_slope, slope, rtol=cdf_rtol, atol=atol)
    cdf = gelu_module.ndtr(x, np.empty_like(x))
    lower = x < -1  # the lower tail keeps its relative accuracy: 1 - (1 - q) would lose it
    from .erf_truth import truth  # SciPy's ndtr is off by up to 2000 ulp there
    np.testing.assert_allclose(cdf[lower], truth("ndtr", x[lower]), rtol=cdf_rtol, atol=1e-37)
    upstream = np.linspace(-1, 1, x.size, dtype=dtype).reshape(x.shape)
    times = gelu_module.gelu_prime(x, times=upstream.copy())
    np.testing.assert_allclose(times, upstream * got_slope, rtol=4 * np.finfo(dtype).eps, atol=1e-37)
    # the backward's form: Phi(x) read off the forward's gelu(x) as gelu(x) / x, exact near and at 0
    of_value = gelu_module.gelu_prime(x, times=upstream.copy(), value=got_value)
    np.testing.assert_allclose(of_value, upstream * slope, rtol=cdf_rtol, atol=atol)
    assert np.all(np.isfinite(of_value))


def test_gelu_helpers_take_strided_arrays_whole(gelu_module, monkeypatch):
    monkeypatch.setattr(gelu_module, "BLOCK", 5)
    x = np.random.default_rng(3).standard_normal((40, 30))
    value, slope = gelu_truth(x.T)
    np.testing.assert_allclose(gelu_module.gelu(x.T), value, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(gelu_module.gelu_prime(x.T), slope, rtol=1e-14, atol=1e-15)
    upstream = np.ones((30, 40))
    np.testing.assert_allclose(gelu_module.gelu_prime(x.T, times=upstream), slope, rtol=1e-14, atol=1e-15)
    upstream = np.ones((30, 40))
    got = gelu_module.gelu_prime(x.T, times=upstream, value=gelu_module.gelu(x.T))
    np.testing.assert_allclose(got, slope, rtol=1e-14, atol=1e-15)


def test_float32_gelu_is_as_close_to_the_truth_as_pytorchs(gelu_module):
    torch = pytest.importorskip("torch", reason="PyTorch's GELU is the comparison")
    F = torch.nn.functional
    x = GELU_POINTS[np.abs(GELU_POINTS) <= 12].astype(np.float32).reshape(-1, 1)
    value, slope = gelu_truth(x.astype(np.float64))
    ours = np.max(np.abs(gelu_module.gelu(x) - value))
    theirs = np.max(np.abs(F.gelu(torch.from_numpy(x)).double().numpy() - value))
    assert ours <= max(theirs, 1e-6), (ours, theirs)
    ours_slope = np.max(np.abs(gelu_module.gelu_prime(x) - slope))
    grad_out = torch.ones(x.shape)
    theirs_slope = np.max(np.abs(torch.ops.aten.gelu_backward(grad_out, torch.from_numpy(x)).double().numpy() - slope))
    assert ours_slope <= max(theirs_slope, 1e-6), (ours_slope, theirs_slope)


def _gelu_in_child(module, x, queue):
    queue.put(module.gelu(x))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="fork is POSIX")
# JAX, once another test imported it, warns at any fork; the child here runs NumPy only
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")
def test_gelu_in_a_forked_child_makes_its_own_threads(gelu_module, monkeypatch):
    import multiprocessing
    monkeypatch.setattr(gelu_module, "THREADS", 2)
    monkeypatch.setattr(gelu_module, "BLOCK", 64)
    x = np.linspace(-4, 4, 4096).reshape(64, 64)
    expected = gelu_module.gelu(x)  # the parent's pool exists now; a child inherits it without its threads
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_gelu_in_child, args=(gelu_module, x, queue))
    child.start()
    try:
        result = queue.get(timeout=60)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    np.testing.assert_array_equal(result, expected)
