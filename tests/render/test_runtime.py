"""The generated modules' helpers (derive/render/runtime.py), called directly, against independent
truths: SciPy's special functions, the textbook formulas and central differences; and the source a
generated module copies is the very code tested here."""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.special
from scipy import special

from derive.render import runtime

RNG = np.random.default_rng(7)
Z = RNG.standard_normal((6, 5)) * 3


def test_softmax_and_log_softmax_are_the_normalised_exponentials():
    for axis in (0, 1):
        expected = np.exp(Z) / np.exp(Z).sum(axis=axis, keepdims=True)
        np.testing.assert_allclose(runtime.softmax(Z, axis), expected, rtol=1e-14)
        np.testing.assert_allclose(runtime.log_softmax(Z, axis), np.log(expected), rtol=1e-12, atol=1e-14)
    huge = np.array([[1e4, 0.0, -1e4]])
    assert np.all(np.isfinite(runtime.log_softmax(huge, 1))) and runtime.softmax(huge, 1)[0, 0] == 1.0


def test_binary_cross_entropy_is_finite_at_saturated_probabilities():
    p, y = np.array([[0.2, 0.7, 0.0, 1.0]]), np.array([[0.0, 1.0, 1.0, 0.0]])
    got = runtime.binary_cross_entropy(p, y)
    inside, target = p[:, :2], y[:, :2]
    np.testing.assert_allclose(got[:, :2], -(target * np.log(inside) + (1 - target) * np.log(1 - inside)), rtol=1e-14)
    assert np.all(np.isfinite(got)) and got[0, 2] > 30 and got[0, 3] > 30


def test_check_targets_names_the_first_example_that_does_not_sum_to_one():
    runtime.check_targets(np.eye(3), axis=1, name="Y")
    with pytest.raises(ValueError, match=r"targets Y must sum to 1 .* example 1 sums to 0\.5"):
        runtime.check_targets(np.array([[1.0, 0.0], [0.25, 0.25]]), axis=1, name="Y")


def test_silu_slope_is_the_derivative_of_silu():
    h = 1e-6
    silu = (lambda a: a * special.expit(a))
    np.testing.assert_allclose(runtime.silu_prime(Z), (silu(Z + h) - silu(Z - h)) / (2 * h), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("block, threads", [(7, 1), (7, 3), (1 << 16, 1)])
def test_blocked_gelu_and_its_slope_in_threads(monkeypatch, block, threads):
    monkeypatch.setattr(runtime, "BLOCK", block)
    monkeypatch.setattr(runtime, "THREADS", threads)
    z = np.ascontiguousarray(Z)
    value = z * special.ndtr(z)
    slope = special.ndtr(z) + z * np.exp(-z**2 / 2) / np.sqrt(2 * np.pi)
    np.testing.assert_allclose(runtime.gelu(z), value, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(runtime.gelu_prime(z), slope, rtol=1e-14)
    times = np.full_like(z, 2.0)
    np.testing.assert_allclose(runtime.gelu_prime(z, times=times), 2 * slope, rtol=1e-14)
    times = np.full_like(z, 2.0)
    np.testing.assert_allclose(runtime.gelu_prime(z, times=times, value=value), 2 * slope, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", list(runtime.HELPERS))
def test_the_copied_source_defines_the_helper_itself(name):
    namespace = {"np": np, "scipy": scipy, "os": os, "ThreadPoolExecutor": ThreadPoolExecutor,
                 "THREADS": 1, "BLOCK": 1 << 16, "_pools": {}}   # what a generated module's header sets
    for needed in sorted(runtime.closure([name]) & set(runtime.HELPERS)):
        exec(runtime.source(needed), namespace)  # noqa: S102 - derive's own helpers, as a module holds them
    assert namespace[name].__doc__ == getattr(runtime, name).__doc__
    assert runtime.source(name).startswith((f"def {name}(", f"class {name}:"))  # Workspace: a class


@pytest.mark.parametrize("block, threads", [(7, 1), (7, 3), (1 << 16, 1)])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-6)])
def test_gelu_slopes_are_the_first_and_second_derivatives_in_one_pass(monkeypatch, block, threads, dtype, rtol):
    monkeypatch.setattr(runtime, "BLOCK", block)
    monkeypatch.setattr(runtime, "THREADS", threads)
    z = np.concatenate([Z.ravel(), [0.0, 1e-9, -1e-7, 2.0 ** -21]]).reshape(2, -1).astype(dtype)
    wide = z.astype(np.float64)
    density = np.exp(-wide**2 / 2) / np.sqrt(2 * np.pi)
    first, second = special.ndtr(wide) + wide * density, density * (2 - wide**2)   # SciPy's Phi, the textbook f''
    for value in (None, runtime.gelu(z)):
        got_first, got_second = runtime.gelu_slopes(z, value=value)
        assert got_first.dtype == got_second.dtype == dtype
        np.testing.assert_allclose(got_first, first, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(got_second, second, rtol=rtol, atol=rtol)
