"""Where a generated torch layer spends its time: every statement of ``_forward`` and ``_backward`` timed.

``derive bench --layers`` writes this profile (``layers_profile.md``) for the layers that miss their
target, so that the gap to eager autograd is explained by the statements that make it (a pass over
the N x D array, a matrix product) rather than guessed. The module is instrumented as
:mod:`.profile` does the NumPy step (each statement between two clock readings, with :mod:`ast`) and
run as the bench runs it: ``Function.apply`` then autograd's backward into the same tensors. torch
runs on the CPU synchronously, so a statement's clock time is its kernels' time.
"""

from __future__ import annotations

import ast
import statistics
import time

from .profile import StatementTime, _Clocked, _products

__all__ = ["profile_layer"]


def profile_layer(source: str, args, upstream, *, repeats: int = 5, warmup: int = 1) -> list[StatementTime]:
    """Median time of every statement of the torch module's ``_forward`` and ``_backward`` over ``repeats``
    steps (forward, then backward with ``upstream``), on the tensors ``args`` in ARGS order."""
    clocked = _Clocked(functions=("_forward", "_backward"))
    tree = ast.fix_missing_locations(clocked.visit(ast.parse(source)))
    runs: list[list[float]] = [[] for _ in clocked.statements]
    last = [0.0]

    def start():
        last[0] = time.perf_counter()

    def tick(k: int):
        now = time.perf_counter()
        runs[k].append(now - last[0])
        last[0] = now

    namespace = {"__name__": "derive_profiled_layer", "_start": start, "_tick": tick}
    exec(compile(tree, "<derive layer profile>", "exec"), namespace)  # noqa: S102 - our own generated module
    for k in range(warmup + repeats):
        if k == warmup:
            for times in runs:
                times.clear()
        namespace["Function"].apply(*args).backward(upstream)
    return [StatementTime(function.lstrip("_"), ast.unparse(statement), statistics.median(times), _products(statement))
            for (function, statement), times in zip(clocked.statements, runs) if times]
