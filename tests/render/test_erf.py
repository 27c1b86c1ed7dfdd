"""The generated modules' vectorised erf, erfc and ndtr (derive/render/erf.py) against the truth to 40
digits (tests/render/erf_truth.py, mpmath) over their whole range, against SciPy's, at the edges, in
float64 and float32, on both of erfc's paths (whole array, gathered entries) and in threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from scipy import special

from derive.render import erf as helpers

from .erf_truth import truth

# The largest error measured over RANGES and 200 000 random points, in units in the last place of the
# float64 truth: 3 for erf, 10 for erfc (at 0.87: below 1 it is 1 - erf, which loses 3 bits there;
# SciPy's erfc, the same formula, reaches 11) and 10 for ndtr (at -1.35, (1 + erf) / 2 for the same
# reason; 9 at -10.8). SciPy's own reach 2, 507 and 1892 ulp over RANGES.
MAX_ULP = {"erf": 3, "erfc": 10, "ndtr": 10}
FLOAT32_RTOL = 1e-6

# Each function's whole range: from where it underflows (erfc at 27.3, ndtr at -38.5) to where it is 1.
RANGES = {"erf": np.concatenate([np.linspace(-7, 7, 14_001), np.geomspace(1e-300, 1, 301)]),
          "erfc": np.concatenate([np.linspace(-7, 27.25, 30_001), -np.geomspace(1e-300, 1, 301)]),
          "ndtr": np.concatenate([np.linspace(-38.4, 9, 30_001), np.geomspace(1e-300, 1, 301)])}


def evaluate(name, x):
    return getattr(helpers, name)(x, np.empty_like(x))


def ulp_error(got, expected):
    """|got - expected| in units in the last place of expected (float64), at the entries where expected
    is a normal number (a subnormal's error is counted in the smallest subnormal instead)."""
    normal = np.abs(expected) >= np.finfo(np.float64).tiny
    return np.abs(got - expected)[normal] / np.spacing(np.abs(expected[normal]))


@pytest.mark.parametrize("name", list(RANGES))
def test_float64_is_within_a_few_ulp_of_the_truth_over_the_whole_range(name):
    x = RANGES[name]
    got, expected = evaluate(name, x), truth(name, x)
    assert got.dtype == np.float64
    assert ulp_error(got, expected).max() <= MAX_ULP[name]
    subnormal = np.abs(expected) < np.finfo(np.float64).tiny
    assert np.all(np.abs(got - expected)[subnormal] <= 4 * 2.0 ** -1074)


@pytest.mark.parametrize("name", list(RANGES))
def test_float32_is_within_1e_6_of_the_truth_lower_tail_included(name):
    x = RANGES[name].astype(np.float32)
    got, expected = evaluate(name, x), truth(name, x)  # the truth at the float32 points themselves
    assert got.dtype == np.float32
    normal = np.abs(expected) >= np.finfo(np.float32).tiny
    assert normal.sum() > 0.4 * x.size  # float32 underflows sooner
    np.testing.assert_allclose(got[normal], expected[normal], rtol=FLOAT32_RTOL, atol=0)
    assert np.all(np.abs(got - expected)[~normal] <= 4 * 2.0 ** -149)


@pytest.mark.parametrize("name", list(RANGES))
def test_float64_agrees_with_scipy_where_scipy_is_accurate_and_is_nearer_the_truth_elsewhere(name):
    x = RANGES[name]
    got, expected, scipys = evaluate(name, x), truth(name, x), getattr(special, name)(x)
    normal = np.abs(expected) >= np.finfo(np.float64).tiny
    ours, theirs = ulp_error(got, expected), ulp_error(scipys, expected)
    accurate = theirs <= 3
    distance = np.abs(got - scipys)[normal] / np.spacing(np.abs(expected[normal]))
    assert accurate.mean() > 0.25 and distance[accurate].max() <= MAX_ULP[name] + 3
    assert np.all(ours[~accurate] <= np.maximum(theirs[~accurate], MAX_ULP[name]))


INF, NAN = np.inf, np.nan
TINY = 5e-324  # the smallest subnormal

# (function, x, its value exactly): zeros keep their sign, infinities saturate, nan propagates,
# a subnormal argument gives erf(x) = 2 x / sqrt(pi) rounded, and the tails underflow to exact 0 or 2.
EDGES = [
    ("erf", 0.0, 0.0), ("erf", -0.0, -0.0), ("erf", INF, 1.0), ("erf", -INF, -1.0), ("erf", NAN, NAN),
    ("erf", TINY, TINY), ("erf", 1e-310, 2 / np.sqrt(np.pi) * 1e-310), ("erf", 6.5, 1.0), ("erf", -27.0, -1.0),
    ("erfc", 0.0, 1.0), ("erfc", -0.0, 1.0), ("erfc", INF, 0.0), ("erfc", -INF, 2.0), ("erfc", NAN, NAN),
    ("erfc", TINY, 1.0), ("erfc", 6.5, None), ("erfc", 27.0, None), ("erfc", 28.0, 0.0), ("erfc", -27.0, 2.0),
    ("erfc", 1e300, 0.0),
    ("ndtr", 0.0, 0.5), ("ndtr", -0.0, 0.5), ("ndtr", INF, 1.0), ("ndtr", -INF, 0.0), ("ndtr", NAN, NAN),
    ("ndtr", TINY, 0.5), ("ndtr", -6.5, None), ("ndtr", -27.0, None), ("ndtr", -38.4, None), ("ndtr", -39.0, 0.0),
    ("ndtr", 9.0, 1.0), ("ndtr", -1e300, 0.0), ("ndtr", 1e300, 1.0),
]


@pytest.mark.parametrize(("name", "x", "exact"), EDGES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_edges(name, x, exact, dtype):
    with np.errstate(over="ignore"):  # 1e300 is inf in float32
        point = np.array([x, x], dtype=dtype)  # an array: the helpers write into an array out
    got = evaluate(name, point)
    expected = truth(name, point) if exact is None else np.full(2, exact)
    if np.isnan(expected[0]):
        assert np.all(np.isnan(got))
    elif exact is not None and dtype == np.float64:
        assert got.tolist() == expected.tolist() and np.all(np.signbit(got) == np.signbit(expected))
    else:  # a tail value, or a float32 rounding of one
        tiny, ulp = (2.0 ** -1074, 2.0 ** -52) if dtype == np.float64 else (2.0 ** -149, FLOAT32_RTOL)
        assert np.all(np.abs(got - expected) <= np.maximum(MAX_ULP[name] * ulp * np.abs(expected), 4 * tiny))
        assert np.all(np.signbit(got) == np.signbit(expected))


# Mostly |x| < sqrt 2 (erfc's tail computed on the few entries that need it, gathered), mostly beyond
# (computed on the whole array), more entries than a workspace holds, 2-D, 0-d and a strided view.
RNG = np.random.default_rng(17)
SHAPES = {"gathered": RNG.standard_normal(5000) * 0.5, "whole": RNG.standard_normal(5000) * 8,
          "past a block": RNG.standard_normal(1 << 16 | 1) * 2, "2-d": RNG.standard_normal((40, 30)) * 3, "0-d": np.array(-3.2), "strided": (RNG.standard_normal((30, 40)) * 3)[::2, ::3]}


@pytest.mark.parametrize("name", list(RANGES))
@pytest.mark.parametrize("case", list(SHAPES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_both_paths_and_any_shape(name, case, dtype):
    x = SHAPES[case].astype(dtype)
    got, expected = evaluate(name, x), truth(name, x)
    assert got.shape == x.shape and got.dtype == dtype
    if dtype == np.float64:
        assert ulp_error(got.reshape(-1), expected.reshape(-1)).max() <= MAX_ULP[name]
    else:
        normal = np.abs(expected) >= np.finfo(np.float32).tiny
        np.testing.assert_allclose(got[normal], expected[normal], rtol=FLOAT32_RTOL)


def test_threads_each_use_their_own_workspace():
    blocks = [RNG.standard_normal(1 << 14) * (1 + k) for k in range(16)]
    alone = [evaluate("ndtr", block) for block in blocks]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda block: evaluate("ndtr", block), blocks))
    assert all(a.tobytes() == b.tobytes() for a, b in zip(alone, together, strict=True))


# --- float32's one rational on [0, 4] (GELU's entries): its fit, and the float32 evaluation ----------

def _tail32_coefficients():
    import inspect
    import re
    found = re.findall(r"_polynomial\(t, \(([^)]*)\)", inspect.getsource(helpers._normal_tail32))
    return [[float(c) for c in group.split(",")] for group in found]


def test_float32_tail_rational_fits_exp_t2_over_2_phi_minus_t_within_1_6e_8_on_0_to_4():
    numerator, denominator = _tail32_coefficients()
    t = np.linspace(0, 4, 400_001)
    fit = np.polyval(numerator, t) / np.polyval([1.0, *denominator], t)
    exact = special.erfcx(t / np.sqrt(2)) / 2  # exp(t^2 / 2) Phi(-t), SciPy's own scaled erfc
    assert np.max(np.abs(fit / exact - 1)) <= 1.6e-8


def test_float32_tail_is_within_1e_6_of_the_truth_on_0_to_4():
    t = np.concatenate([np.linspace(0, 4, 40_001), np.geomspace(1e-30, 1, 101)]).astype(np.float32)
    got = helpers._normal_tail32(t, np.empty_like(t), [np.empty_like(t), np.empty_like(t)])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, truth("ndtr", -t), rtol=FLOAT32_RTOL, atol=0)
