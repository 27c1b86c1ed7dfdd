"""The generated modules' vectorised ndtr (derive/render/erf.py) against SciPy's scalar ``ndtr`` on one
activation-sized array, in float64 and float32, one thread and the module's THREADS, and GELU's
forward and backward helpers built on each: ``python -m derive.bench.erf [rows cols]``.

Every contender runs in the same blocks (:func:`derive.render.runtime.blockwise`), the rounds
interleaved so a loaded machine slows them alike; each line gives the median time per entry and the
ratio of ours to SciPy's, with the spread (min-max) of the per-round ratios.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import scipy.special

from ..render import runtime

__all__ = ["compare", "main"]


def _scipy_gelu(out, z):
    scipy.special.ndtr(z, out=out)
    out *= z


def _scipy_gelu_prime(times, z):
    slope = scipy.special.ndtr(z)
    slope += runtime._z_density(z)
    times *= slope


def _contenders(x):
    """name -> (ours, SciPy's): functions of no argument, each writing its own result array."""
    ours, theirs = np.empty_like(x), np.empty_like(x)
    return {
        "ndtr": (lambda: runtime.blockwise(lambda out, z: runtime.ndtr(z, out), ours, x),
                 lambda: runtime.blockwise(lambda out, z: scipy.special.ndtr(z, out=out), theirs, x)),
        "gelu forward": (lambda: runtime.gelu(x), lambda: runtime.blockwise(_scipy_gelu, theirs, x)),
        "gelu backward": (lambda: runtime.gelu_prime(x, times=np.ones_like(x)),
                          lambda: runtime.blockwise(_scipy_gelu_prime, np.ones_like(x), x)),
    }


def compare(shape=(4096, 1024), rounds=7, threads=(1, None), seed=0):
    """Rows (dtype, threads, what, ours ns/entry, SciPy's ns/entry, median ratio, min ratio, max ratio,
    largest difference of the results relative to their largest entry), the inputs standard normal."""
    rows, saved = [], runtime.THREADS
    try:
        for dtype in (np.float64, np.float32):
            x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
            for count in threads:
                runtime.THREADS = count or saved
                for what, (ours, theirs) in _contenders(x).items():
                    difference = _difference(ours(), theirs())
                    times = [(_seconds(ours), _seconds(theirs)) for _ in range(rounds)]
                    ratios = [a / b for a, b in times]
                    per_entry = [1e9 * statistics.median(t) / x.size for t in zip(*times, strict=True)]
                    rows.append((np.dtype(dtype).name, runtime.THREADS, what, *per_entry,
                                 statistics.median(ratios), min(ratios), max(ratios), difference))
    finally:
        runtime.THREADS = saved
    return rows


def _seconds(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _difference(ours, theirs):
    """The largest difference of the results, relative to the largest |entry| (GELU's slope crosses 0)."""
    return float(np.max(np.abs(ours.astype(np.float64) - theirs)) / np.max(np.abs(theirs)))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    shape = tuple(int(n) for n in argv[:2]) or (4096, 1024)
    print(f"ndtr and GELU on {shape[0]} x {shape[1]} standard normal entries, blocks of {runtime.BLOCK}")
    print("| dtype | threads | what | ours ns/entry | SciPy ns/entry | ours / SciPy (min-max) | max diff / max |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for dtype, count, what, ours, theirs, ratio, low, high, difference in compare(shape):
        print(f"| {dtype} | {count} | {what} | {ours:.2f} | {theirs:.2f} | {ratio:.2f} ({low:.2f}-{high:.2f}) "
              f"| {difference:.1e} |")


if __name__ == "__main__":
    main()
