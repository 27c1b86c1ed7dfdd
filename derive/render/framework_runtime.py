"""The helpers of generated torch and JAX modules, as real Python (copied with :func:`inspect.getsource`,
as :mod:`.runtime` is for NumPy): the target check of a cross-entropy declared with
``targets_sum_to_one=True``. The JAX one can only look at concrete values: under ``jax.jit`` the
targets are traced and the check is skipped (the module's docstring says so)."""

from __future__ import annotations

import inspect

__all__ = ["source"]


def torch_check_targets(y, axis, name):
    """Refuse targets y unless each example's target (summed along axis) is 1, as declared."""
    totals = y.sum(dim=axis)
    bad = (totals - 1).abs() > 1e-6
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise ValueError(f"the target {name} was declared to sum to 1 per example (targets_sum_to_one=True), "
                         f"but example {first} sums to {float(totals[first])!r}")


def jax_check_targets(y, axis, name):
    """Refuse concrete targets y unless each example's target sums to 1 (traced targets: skipped)."""
    if isinstance(y, jax.core.Tracer):  # noqa: F821 (the generated module imports jax)
        return
    totals = np.asarray(y).sum(axis=axis)  # noqa: F821 (the generated module imports numpy as np)
    bad = np.flatnonzero(np.abs(totals - 1) > 1e-6)  # noqa: F821
    if bad.size:
        raise ValueError(f"the target {name} was declared to sum to 1 per example (targets_sum_to_one=True), "
                         f"but example {int(bad[0])} sums to {float(totals[bad[0]])!r}")


def source(framework: str, name: str) -> str:
    """The helper ``name`` of ``framework``'s modules, named as the generated code calls it."""
    function = {"torch": torch_check_targets, "jax": jax_check_targets}[framework]
    assert name == "check_targets"
    return inspect.getsource(function).replace(function.__name__, name, 1).rstrip("\n")
