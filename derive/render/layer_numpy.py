"""Verified NumPy code for a layer (:func:`derive.vjp`); ``derive.to_numpy`` is :func:`to_numpy` here, which
hands a loss derivation to :func:`derive.render.module.to_numpy`.

The module has ``ARGS``, ``forward(*args) -> (output, cache)``, ``backward(cache, upstream)`` (the
closed-form vector-Jacobian products, one per argument in ARGS order, None for the constants),
``example_inputs`` and a finite-difference self-check. Before the source is returned it is imported,
its output compared with :mod:`derive.core.truth`'s evaluation of the declared output and its
backward with central differences of <G, forward(...)> in float64; a mismatch raises
:class:`~derive.errors.CodegenError`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..core.derivation import Derivation
from ..core.layer import Layer
from ..core.truth import Program
from ..errors import CodegenError
from . import framework_runtime, runtime
from . import module as numpy_module
from .hvp import refuse_layer
from .layer_plan import LayerPlan, plan_layer
from .numpy import DeriveNumPyPrinter
from .templates import render as render_template

__all__ = ["check_output", "to_numpy", "to_numpy_layer", "verify_layer_module"]

OUTPUT_TOLERANCE = 1e-9


def to_numpy(g: Derivation, name: str, *, dims: Mapping | None = None, verify: bool = True,
             workspace: bool = False, hvp: bool = False) -> str:
    """``derive.to_numpy``: a layer's module (:func:`to_numpy_layer`), or a loss's (:func:`.module.to_numpy`,
    with its opt-in ``workspace``, and with ``hvp`` its Hessian-vector product too)."""
    if hvp:
        refuse_layer(g, name)
    if isinstance(g, Layer):
        if workspace:
            raise CodegenError(f"{name} is a layer (derive.vjp): the workspace (reused buffers) is offered for a "
                               "loss's step only; call to_numpy without workspace=True")
        return to_numpy_layer(g, name, dims=dims, verify=verify)
    return numpy_module.to_numpy(g, name, dims=dims, verify=verify, workspace=workspace, hvp=hvp)


def to_numpy_layer(g: Layer, name: str, *, dims: Mapping | None = None, verify: bool = True) -> str:
    plan, printer = plan_layer(g, name, lambda ids, definitions: DeriveNumPyPrinter(ids, definitions, dtype="dtype"),
                               dims or {}, numpy_module._input)
    plan.helpers = [*(runtime.source(h) for h in sorted(printer.helpers) if h in runtime.HELPERS),
                    framework_runtime.source("numpy", "check_shapes")]
    plan.extra = {"imports_scipy": "scipy" in printer.helpers, "threads": "threads" in printer.helpers}
    source = render(plan)
    if verify:
        verify_layer_module(source, name, g)
    return source


def render(plan: LayerPlan) -> str:
    return render_template("layer_numpy.py.j2", plan=plan)


def check_output(name: str, generated, truth: Program, values: Mapping, tolerance: float = OUTPUT_TOLERANCE) -> None:
    """The generated forward's output against the independent evaluation of the declared output."""
    expected = np.asarray(truth.run(values)[0], dtype=float)
    generated = np.asarray(generated, dtype=float).reshape(expected.shape)
    scale = max(float(np.max(np.abs(expected), initial=0)), 1e-12)
    error = float(np.max(np.abs(generated - expected), initial=0)) / scale
    if not error <= tolerance:
        raise CodegenError(f"the generated forward of {name} disagrees with the independent evaluation of the "
                           f"declared output (derive.truth): relative error {error:.2e} > {tolerance:g}")


def verify_layer_module(source: str, name: str, g: Layer, *, points: int = 2, seed: int = 0) -> float:
    """Output against the truth, backward against central differences of <G, output>; the worst error."""
    try:
        module = numpy_module.load_module(source, name)
    except Exception as error:
        raise CodegenError(f"the generated module for {name} does not import: {error}") from error
    truth = Program([g.output], module.DEFAULT_DIMS)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(points):
        args, upstream = module.example_inputs(rng)
        try:
            output, cache = module.forward(*args)
            grads = module.backward(cache, upstream)
        except Exception as error:
            raise CodegenError(f"the generated code for {name} fails on example inputs: {type(error).__name__}: "
                               f"{error}") from error
        check_output(name, output, truth, {s.name: a for s, a in zip(g.arguments, args)})
        for symbol, value, grad in zip(g.arguments, args, grads):
            if (grad is None) != (symbol not in g.params):
                raise CodegenError(f"the generated backward of {name} returns {'no' if grad is None else 'a'} "
                                   f"gradient for {symbol.name}")
            if grad is None:
                continue
            numeric = numpy_module.central_differences(
                lambda args=args, upstream=upstream: float(np.sum(upstream * module.forward(*args)[0])), value)
            worst = max(worst, _compare(name, symbol.name, np.asarray(grad), numeric))
    return worst


def _compare(name: str, key: str, grad: np.ndarray, numeric: np.ndarray) -> float:
    if grad.shape != numeric.shape:
        raise CodegenError(f"the generated gradient of {key} in {name} has shape {grad.shape}, not {numeric.shape}")
    scale = max(float(np.max(np.abs(numeric), initial=0)), float(np.max(np.abs(grad), initial=0)), 1e-8)
    error = float(np.max(np.abs(numeric - grad), initial=0)) / scale
    if not error < numpy_module.TOLERANCE:
        at = np.unravel_index(int(np.argmax(np.abs(numeric - grad))), grad.shape)
        raise CodegenError(
            f"the generated gradient of {key} in {name} disagrees with central finite differences: entry "
            f"{tuple(int(i) for i in at)} is {grad[at]!r}, the differences give {numeric[at]!r} "
            f"(relative error {error:.2e} > {numpy_module.TOLERANCE:g})")
    return error
