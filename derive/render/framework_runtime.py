"""The helpers of generated torch and JAX modules, as real Python (copied with :func:`inspect.getsource`,
as :mod:`.runtime` is for NumPy): the target check of a cross-entropy declared with
``targets_sum_to_one=True``, the check of the arguments' shapes (one function for the torch, JAX and
NumPy layer modules: it reads only ``.shape``), and torch's gradcheck tolerance (the module's own check and :func:`derive.to_torch`'s read the same one). The JAX one can only look at concrete values: under ``jax.jit`` the
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


def torch_gradcheck_atol(output, step):
    """gradcheck's absolute tolerance at the output ``output`` and the difference step ``step``: its
    differences carry about 16 eps |Y| / step of rounding (a loss of 1500 rounds a zero gradient's
    difference to 3e-7), and it is never under 1e-7."""
    eps = torch.finfo(output.dtype).eps  # noqa: F821 (the generated module imports torch)
    return max(1e-7, 16 * eps * float(output.detach().abs().max()) / step)


def check_shapes(arrays):
    """Refuse arguments whose shapes do not fit the declared ones (ARGS, SHAPES: a size by its name, a
    number, or an expression as (text, terms), a polynomial in the named sizes), naming the argument and
    both shapes; each named size is read off its first argument, and an expression is checked once the
    sizes it reads are known (a second pass: they may be read off a later argument). Under jax.jit and
    jax.vmap the shapes are static (vmap's: one example's), so it checks them too."""
    sizes = {}

    def size_of(declared):   # the number a declared size stands for here; a name or None where not known
        if not isinstance(declared, tuple):
            return sizes.get(declared, declared)
        if any(name not in sizes for _, names in declared[1] for name in names):
            return None
        total = 0
        for coefficient, names in declared[1]:
            for name in names:
                coefficient *= sizes[name]
            total += coefficient
        return total

    def refuse_unless_fits(name, actual, declared):
        expected = tuple(size_of(d) for d in declared)
        if len(actual) != len(declared) or any(isinstance(e, int) and a != e for a, e in zip(actual, expected)):
            written = " x ".join(d[0] if isinstance(d, tuple) else "?" if d is None else str(d) for d in declared)
            known = " x ".join("?" if e is None else str(e) for e in expected)
            shown = " x ".join(map(str, actual)) or "() (a 0-d array)"
            raise ValueError(f"the argument {name} has shape {shown}, but it is declared "
                             f"{written}" + (f" (here {known})" if known != written else ""))

    for name, array, declared in zip(ARGS, arrays, SHAPES):  # noqa: F821 (the generated module's own)
        refuse_unless_fits(name, tuple(array.shape), declared)
        for d, a in zip(declared, array.shape):
            if isinstance(d, str):
                sizes.setdefault(d, a)
    for name, array, declared in zip(ARGS, arrays, SHAPES):  # noqa: F821
        if any(isinstance(d, tuple) for d in declared):
            refuse_unless_fits(name, tuple(array.shape), declared)


def jax_check_targets(y, axis, name):
    """Refuse concrete targets y unless each example's target sums to 1 (traced targets: skipped)."""
    if isinstance(y, jax.core.Tracer):  # noqa: F821 (the generated module imports jax)
        return
    totals = np.asarray(y).sum(axis=axis)  # noqa: F821 (the generated module imports numpy as np)
    bad = np.flatnonzero(np.abs(totals - 1) > 1e-6)  # noqa: F821
    if bad.size:
        raise ValueError(f"the target {name} was declared to sum to 1 per example (targets_sum_to_one=True), "
                         f"but example {int(bad[0])} sums to {float(totals[bad[0]])!r}")


HELPERS = {("torch", "check_targets"): torch_check_targets, ("jax", "check_targets"): jax_check_targets,
           ("torch", "gradcheck_atol"): torch_gradcheck_atol,
           **{(framework, "check_shapes"): check_shapes for framework in ("torch", "jax", "numpy")}}


def source(framework: str, name: str) -> str:
    """The helper ``name`` of ``framework``'s modules, named as the generated code calls it."""
    function = HELPERS[(framework, name)]
    return inspect.getsource(function).replace(function.__name__, name, 1).rstrip("\n")
