"""The threads of ``derive bench``'s contenders: set alike for all of them, and reported.

Every contender runs in one process on the same number of threads: NumPy's BLAS (the floor's
products and derive's), derive's elementwise helpers (a generated module's ``THREADS``), torch (its
OpenMP pool, ``torch.set_num_threads``) and JAX when it can be held to them (XLA's CPU backend takes
every core and has no flag that limits it, so it runs only when the bench uses every core).

Idle threads are told alike to sleep rather than spin: OpenBLAS's workers spin for 2^28 cycles (about
0.1 s) after each product, and on a 2-core machine they take a core from derive's elementwise threads
that run next, and from whichever contender runs after NumPy's; libgomp's (torch's) spin for a while
too. Both policies are read once, when each library loads, so ``derive bench`` measures in a child
process started with :func:`environment` (:func:`run_isolated`), and the results header reports what
each library says it runs on (:func:`in_effect`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from ..errors import DeriveError

__all__ = ["IDLE", "blas_threads", "describe", "environment", "in_effect", "run_isolated", "thread_count",
           "thread_limiter"]

# Idle threads sleep at once: OpenBLAS after 2^4 cycles (its least timeout), libgomp without spinning.
IDLE = {"OPENBLAS_THREAD_TIMEOUT": "1", "OMP_WAIT_POLICY": "PASSIVE"}
# The thread counts the libraries read when they load (OpenBLAS, libgomp, MKL).
COUNTS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Reported as found: XLA's flags (none limits its CPU threads, see above).
REPORTED = (*COUNTS, *IDLE, "XLA_FLAGS")
# Set in the child process, so that it does not start another one.
CHILD = "DERIVE_BENCH_ISOLATED"


def thread_count(threads: int) -> int:
    """The threads every contender gets: ``threads``, else what OPENBLAS_NUM_THREADS and the like say,
    else every core."""
    if threads:
        return threads
    for var in COUNTS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return os.cpu_count() or 1


def environment(threads: int, idle: str = "sleep") -> dict[str, str]:
    """The variables the libraries read when they load: ``threads`` for every pool; idle threads asleep
    (``idle="sleep"``), or spinning as each library does by default (``"spin"``: the variables unset)."""
    return {**{var: str(threads) for var in COUNTS}, **(IDLE if idle == "sleep" else dict.fromkeys(IDLE))}


def run_isolated(config: dict, threads: int, module: str = "derive.bench.step") -> int:
    """Run the bench (``config``: a BenchConfig as a dict) in a child process started with
    :func:`environment` (``config["idle"]``), as ``python -m module --isolated-config JSON``; its exit status."""
    child = {**os.environ, CHILD: "1"}
    for var, value in environment(threads, config.get("idle", "sleep")).items():
        if value is None:
            child.pop(var, None)
        else:
            child[var] = value
    # the child imports this very copy of derive, wherever it was imported from here
    child["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                         os.environ.get("PYTHONPATH")]))
    return subprocess.call([sys.executable, "-m", module, "--isolated-config", json.dumps(config)],
                           env=child)


def in_effect(threads: int, torch_version: str | None, jax_version: str | None) -> dict:
    """What each contender's libraries say they run on, and the variables as found."""
    found = {"threads": threads, "environment": {var: os.environ.get(var) for var in REPORTED},
             "isolated": os.environ.get(CHILD) == "1", "derive_helpers": threads}
    try:
        import threadpoolctl
    except ImportError:
        found["pools"] = None
    else:
        found["pools"] = [{"library": p["internal_api"], "prefix": p["prefix"], "threads": p["num_threads"]}
                          for p in threadpoolctl.threadpool_info()]
    if torch_version:
        import torch
        found["torch"] = torch.get_num_threads()
    found["jax"] = f"every core ({os.cpu_count()})" if jax_version else None
    return found


def describe(settings: dict) -> str:
    """The settings as a sentence of the results header."""
    env = settings["environment"]
    given = ", ".join(f"{var}={value}" for var, value in env.items() if value is not None) or "none"
    idle = ("idle threads sleep at once" if all(env.get(var) == value for var, value in IDLE.items())
            else "idle threads as each library leaves them (OpenBLAS's and libgomp's spin)")
    pools = settings.get("pools")
    counted = Counter((p["library"], p["prefix"], p["threads"]) for p in pools or ())  # NumPy's and SciPy's OpenBLAS
    pools = (", ".join(f"{library} ({prefix}{f', {n} copies' if n > 1 else ''}) {threads}"
                       for (library, prefix, threads), n in counted.items()) if pools is not None
             else "threadpoolctl not installed, pools not read back")
    contenders = [f"derive's elementwise helpers {settings['derive_helpers']}"]
    if settings.get("torch"):
        contenders.append(f"torch {settings['torch']}")
    if settings.get("jax"):
        contenders.append(f"JAX {settings['jax']}")
    where = ("in a child process started with them" if settings["isolated"]
             else "in this process, as it was started (`derive bench` starts a child with them)")
    return (f"Threads, alike for every contender: {settings['threads']}; variables {given} ({idle}), {where}; "
            f"thread pools read back: {pools}; {', '.join(contenders)}.")


@contextmanager
def blas_threads(threads: int):
    """NumPy's BLAS held to ``threads`` threads (with threadpoolctl) while the block runs; 0: as it is
    (every core, or what OPENBLAS_NUM_THREADS and the like say)."""
    limiter = thread_limiter(threads)
    if limiter is None:
        yield
        return
    with limiter(limits=threads, user_api="blas"):
        yield


def thread_limiter(threads: int):
    """threadpoolctl's threadpool_limits, or a DeriveError saying how to install it; None when
    ``threads`` needs no limit (0 or every CPU)."""
    if threads in (0, os.cpu_count()):
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise DeriveError(f"--threads {threads} limits NumPy's BLAS through threadpoolctl, which is not installed: "
                          "pip install -e \".[bench]\"") from None
    return threadpool_limits
