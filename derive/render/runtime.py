"""The helpers of generated NumPy modules, as real Python: softmax, log-softmax, binary
cross-entropy, the target check of a declared cross-entropy, the SiLU slope, and GELU (with f' and f''
together for second order) with its blocked, threaded machinery and the normal distribution function
``ndtr`` (vectorised erf, erfc and ndtr: derive/render/erf.py).

A generated module carries a copy of the helpers it calls, taken from this file's source with
:func:`inspect.getsource` (:func:`source`), so the module stays self-contained and ruff and the unit
tests (tests/render/test_runtime.py) read the very code that is copied. ``HELPERS`` groups each
helper with the private functions it calls; ``NEEDS`` says what a helper needs besides itself
(another helper, ``scipy``: the module imports scipy.special, ``threads``: it sets THREADS and BLOCK
and imports ThreadPoolExecutor, as this file does below).
"""

from __future__ import annotations

import inspect
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .erf import (
    _erf_regions,
    _erfc_tail,
    _in_chunks,
    _normal_tail32,
    _polynomial,
    _select,
    _workspace,
    erf,
    erfc,
    ndtr,
)

__all__ = ["HELPERS", "NEEDS", "Workspace", "closure", "source"]

# What the generated module's header sets when it uses the blockwise helpers (its template).
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
BLOCK = 1 << 16
_pools = {}  # (process, thread count) -> its ThreadPoolExecutor


# --- the helpers, exactly as generated modules hold them --------------------------------------------

def softmax(z, axis):
    """exp(z) normalised along axis, with the maximum subtracted first (no overflow)."""
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(z, axis):
    """z - log sum exp z along axis, with the maximum subtracted first (finite for huge logits)."""
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def binary_cross_entropy(p, y):
    """Entries of -(y log p + (1 - y) log(1 - p)), p clipped away from 0 and 1 (finite log)."""
    eps = np.finfo(p.dtype).eps
    p = np.clip(p, eps, 1 - eps)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def check_targets(y, axis, name):
    """Refuse targets y unless each example's target (summed along axis) is 1, as the cross-entropy was
    declared with targets_sum_to_one=True: its gradient softmax(z) - y holds only then."""
    sums = np.sum(y, axis=axis)
    tolerance = np.sqrt(np.finfo(np.result_type(y, np.float32)).eps)
    bad = np.flatnonzero(~(np.abs(sums - 1) <= tolerance))
    if bad.size:
        k = int(bad[0])
        raise ValueError(f"the targets {name} must sum to 1 for each example (the cross-entropy was declared "
                         f"with targets_sum_to_one=True), but example {k} sums to {float(sums[k])!r}")


def silu_prime(a):
    """The derivative of a sigmoid(a): s (1 + a (1 - s)) with s = sigmoid(a) (tanh form, no overflow)."""
    s = 0.5 + 0.5 * np.tanh(0.5 * a)
    return s * (1 + a * (1 - s))


def blockwise(kernel, out, *arrays):
    """kernel(out, *arrays) block by block, BLOCK entries at a time, in THREADS threads: a block and its
    temporaries stay in the CPU cache, and NumPy releases the GIL inside ufuncs, so a chain of ufuncs
    runs near the speed of one fused kernel. Whole arrays unless all are C-contiguous of one shape."""
    arrays = (out, *arrays)
    if out.size <= BLOCK or not all(a.shape == out.shape and a.flags.c_contiguous for a in arrays):
        kernel(*arrays)
        return out
    flat = [a.reshape(-1) for a in arrays]  # views, so the kernel writes into out
    starts = range(0, out.size, BLOCK)

    def run(start):
        kernel(*(a[start:start + BLOCK] for a in flat))
    if THREADS > 1:
        list(_pool().map(run, starts))
    else:
        for start in starts:
            run(start)
    return out


def _pool():
    """This process's pool of THREADS threads: a forked child has none of its parent's threads, and a
    pool of another size is shut down (its threads end)."""
    key = (os.getpid(), THREADS)
    pool = _pools.get(key)
    if pool is None:
        for other in [k for k in _pools if k != key]:
            _pools.pop(other).shutdown(wait=False)
        pool = _pools.setdefault(key, ThreadPoolExecutor(THREADS))  # atomic: one pool wins a race
    return pool


def gelu(z, out=None):
    """z Phi(z), Phi the standard normal distribution function (the exact GELU), block by block; into
    out when given (an array of z's shape, not z itself). In float32, max(z, 0) - |z| Phi(-|z|) with
    Phi(-|z|) from one rational (erf.py's _normal_tail32) where |z| <= 4, Cephes' ndtr elsewhere."""
    if out is None:
        out = np.empty_like(z, dtype=np.result_type(z, np.float32))
    return blockwise(_gelu_block, out, z)


def _gelu_block(out, z):
    if z.ndim == 0 or z.dtype != np.float32:
        ndtr(z, out)
        out *= z
        return
    beyond = _gelu_near32(out, z)
    if beyond[0].size:  # Cephes' ndtr on the entries the near form leaves (nan too), gathered
        far = z[beyond]
        out[beyond] = ndtr(far, np.empty_like(far)) * far


def _gelu_near32(out, z):
    """gelu(z) into out where |z| <= 4 as max(z, 0) - t Phi(-t), t = |z| (no mask, no cancellation on
    either side of 0; Phi(-t) from erf.py's _normal_tail32); returns the indices of the other entries."""
    t, tail, *rows = _workspace(np.float32, z.shape, 4)
    np.abs(z, out=t)
    beyond = np.nonzero(~(t <= 4))
    t[beyond] = 0
    _normal_tail32(t, tail, rows)
    tail *= t
    np.maximum(z, 0, out=out)
    out -= tail
    return beyond


def gelu_prime(z, times=None, value=None):
    """Phi(z) + z phi(z), phi the standard normal density: the derivative of z Phi(z), block by block;
    with times, the product times * gelu_prime(z) is made in times itself; with value = gelu(z) from
    the forward pass, Phi(z) is value / z (no erf computed again)."""
    if times is None:
        return blockwise(_gelu_prime_block, np.empty_like(z, dtype=np.result_type(z, np.float32)), z)
    if value is None:
        return blockwise(_times_gelu_prime_block, times, z)
    return blockwise(_times_gelu_prime_of_value_block, times, z, value)


def _gelu_prime_block(out, z):
    ndtr(z, out)
    out += _z_density(z)


def _times_gelu_prime_block(times, z):
    slope = np.empty_like(times)
    _gelu_prime_block(slope, z)
    times *= slope


def _times_gelu_prime_of_value_block(times, z, value):
    slope, density = _workspace(np.result_type(z, value, np.float32), z.shape, 2)  # contiguous rows
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(value, z, out=slope)
    np.square(z, out=density)
    # within 2**-20 of 0, value / z loses digits (0 / 0 at 0): there Phi(z) = 1/2 + z phi(0) to rounding;
    # those entries are rare, so they are mended alone (np.where on the whole block costs ten passes)
    near = np.flatnonzero(density < 2.0 ** -40)
    if near.size:
        slope.reshape(-1)[near] = 0.5 + 0.3989422804014327 * z.reshape(-1)[near]
    density *= -0.5
    np.exp(density, out=density)
    density *= z
    density *= 0.3989422804014327
    slope += density
    times *= slope


def gelu_slopes(z, value=None):
    """(GELU'(z), GELU''(z)) = (Phi(z) + z phi(z), phi(z) (2 - z^2)) in one pass, block by block: a
    second-order step reads both at one z, and the density phi (one exp) serves the two; with value =
    gelu(z) from the forward pass, Phi(z) is value / z (no erf computed again)."""
    dtype = np.result_type(z, np.float32)
    first, second = np.empty_like(z, dtype=dtype), np.empty_like(z, dtype=dtype)
    if value is None:
        blockwise(_gelu_slopes_block, first, z, second)
    else:
        blockwise(_gelu_slopes_of_value_block, first, z, value, second)
    return first, second


def _gelu_slopes_block(first, z, second):
    ndtr(z, first)
    _add_gelu_slopes(first, z, second)


def _gelu_slopes_of_value_block(first, z, value, second):
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(value, z, out=first)
    # within 2**-20 of 0, value / z loses digits (0 / 0 at 0): there Phi(z) = 1/2 + z phi(0) to rounding
    np.copyto(first, 0.5 + 0.3989422804014327 * z, where=np.abs(z) < 2.0 ** -20)
    _add_gelu_slopes(first, z, second)


def _add_gelu_slopes(first, z, second):
    """first += z phi(z), second = phi(z) (2 - z^2): one exp for both."""
    square = np.square(z)
    np.multiply(square, -0.5, out=second)
    np.exp(second, out=second)
    second *= 0.3989422804014327
    density = z * second
    first += density
    np.subtract(2, square, out=square)
    second *= square


def _z_density(z):
    """z phi(z), phi the standard normal density."""
    density = np.square(z)
    density *= -0.5
    np.exp(density, out=density)
    density *= z
    density *= 0.3989422804014327
    return density


class Workspace:
    """The arrays a step reuses from call to call: ``loss_and_grads(params, batch, workspace=ws)`` writes
    its activations and gradients into the arrays the previous call with ws made, instead of new ones
    (on big layers a fresh array costs its page faults, as much as a pass of arithmetic over it). So the
    results of a call with ws, its gradients and its cache, ALIAS the arrays of the previous call and are
    overwritten by the next one: copy what you keep. A function's arrays are made again when its inputs'
    shapes or dtypes change. One workspace per thread: two steps at once would write the same arrays."""

    def __init__(self):
        self.parts = {}  # function -> (its inputs' shapes and dtypes, {target: its array})

    def part(self, function, *inputs):
        """The arrays of ``function`` (a dict, target name -> array, that the function fills on its first
        call) for these inputs (dicts of arrays and sizes): empty when their shapes or dtypes changed,
        or when an input is one of the arrays (or a view of one): the previous call's result handed back
        in (``hvp(params, batch, previous_products)``) is read after the call has begun to write.
        Keyed by the function itself: a workspace handed to two modules gives each arrays of its own."""
        signature = tuple((key, np.shape(value), getattr(value, "dtype", type(value))) for values in inputs
                          for key, value in values.items())
        known = self.parts.get(function)
        if known is None or known[0] != signature or _hands_back(known[1], inputs):
            known = self.parts[function] = (signature, _Buffers())
        return known[1]


def _hands_back(buffers, inputs) -> bool:
    """Some input is one of ``buffers``' arrays or a view of one."""
    held = {id(array) for array in buffers.values()}
    return any(id(value) in held or id(getattr(value, "base", None)) in held
               for values in inputs for value in values.values())


class _Buffers(dict):
    """A function's reused arrays: ``get`` gives an array to write into (``out=``), never a scalar (a
    ufunc of scalars gave one on the first call, and takes no scalar as ``out``)."""

    def get(self, key, default=None):
        value = dict.get(self, key, default)
        return value if isinstance(value, np.ndarray) and value.ndim else default


# --- what a generated module copies ----------------------------------------------------------------

# Each helper with the private functions it calls, in the order the module holds them.
HELPERS = {
    "softmax": (softmax,),
    "log_softmax": (log_softmax,),
    "binary_cross_entropy": (binary_cross_entropy,),
    "check_targets": (check_targets,),
    "silu_prime": (silu_prime,),
    "blockwise": (blockwise, _pool),
    "erf": (erf,),
    "erfc": (erfc,),
    "ndtr": (ndtr,),
    "_erf_regions": (_erf_regions, _erfc_tail, _normal_tail32, _polynomial, _select, _in_chunks, _workspace),
    "gelu": (gelu, _gelu_block, _gelu_near32),
    "Workspace": (Workspace, _hands_back, _Buffers),
    "gelu_prime": (gelu_prime, _gelu_prime_block, _times_gelu_prime_block, _times_gelu_prime_of_value_block,
                   _z_density),
    "gelu_slopes": (gelu_slopes, _gelu_slopes_block, _gelu_slopes_of_value_block, _add_gelu_slopes),
}

NEEDS = {"gelu": ("ndtr", "blockwise"), "gelu_prime": ("ndtr", "blockwise"), "gelu_slopes": ("ndtr", "blockwise"),
         "ndtr": ("_erf_regions",),
         "erf": ("_erf_regions",), "erfc": ("_erf_regions",), "blockwise": ("threads",)}


def closure(names) -> set[str]:
    """``names`` and every helper (or import) they need, directly or through another helper."""
    found, pending = set(), list(names)
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(NEEDS.get(name, ()))
    return found


def source(name: str) -> str:
    """The source of helper ``name`` and its private functions, as a generated module holds it."""
    return "\n\n\n".join(inspect.getsource(function).rstrip("\n") for function in HELPERS[name])
