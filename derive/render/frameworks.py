"""Verified PyTorch and JAX modules of a derivation: :func:`to_torch` and :func:`to_jax`.

A torch module defines ``ARGS``, ``Function`` (a ``torch.autograd.Function`` whose backward is the
derivation's closed forms, saving with ``ctx.save_for_backward`` only what they read, and running no
autograd) and ``Module`` (a ``torch.nn.Module`` holding the parameters); a JAX module defines
``ARGS`` and ``fn``, a ``jax.custom_vjp`` function with the closed forms as its backward rule. A
layer (:func:`derive.vjp`) returns its output Y and takes the upstream gradient G; a loss
(:func:`derive.gradients`) returns the scalar loss, its gradients scaled by the scalar upstream.

Before the source is returned it is imported and checked in float64 at small dims: the forward
against :mod:`derive.core.truth`'s evaluation of the declared expression, the backward with
``torch.autograd.gradcheck`` or ``jax.test_util.check_grads``. A module that fails raises
:class:`~derive.errors.CodegenError`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping

import numpy as np
from sympy import MatrixSymbol

from ..core.derivation import Derivation
from ..core.layer import Layer
from ..core.truth import Draw, Program
from ..errors import CodegenError
from . import framework_runtime
from . import module as numpy_module
from .hvp import hvp_of, refuse_layer, verify_hvp
from .identifiers import safe_comment
from .jax import DeriveJaxPrinter
from .layer_numpy import check_output
from .layer_plan import LayerPlan, plan_layer
from .module import Input
from .templates import render as render_template
from .torch import DeriveTorchPrinter
from .torch_kernels import fuse_products, use_layer_norm_kernels

__all__ = ["to_jax", "to_torch", "verify_jax_module", "verify_torch_module"]

# torch's draws of each kind of matrix ({shape}, {rows}, {n}), as the NumPy module's EXAMPLE_DRAWS
TORCH_DRAWS = {
    "normal": ("torch.randn({shape}, generator=generator, dtype=dtype)", "standard normal"),
    "positive": ("(0.5 + torch.rand({shape}, generator=generator, dtype=dtype))", "positive: under a log or a root"),
    "probability": ("(0.05 + 0.9 * torch.rand({shape}, generator=generator, dtype=dtype))", "probabilities"),
    "nonnegative": ("torch.rand({shape}, generator=generator, dtype=dtype)", "non-negative targets"),
    "invertible": (("(torch.eye({rows}, dtype=dtype) + (torch.rand({shape}, generator=generator, dtype=dtype) - 0.5)"
                    " / {n})"), "I + E, |E_ij| < 1/(2n): det > 0, condition number < 3"),
    "invertible positive": (("(torch.eye({rows}, dtype=dtype) + (0.05 + 0.45 * torch.rand({shape}, "
                             "generator=generator, dtype=dtype)) / {n})"), "I + E, 0 < E_ij < 1/(2n)"),
    "nonzero": (("((0.5 + torch.rand({shape}, generator=generator, dtype=dtype)) * (2 * torch.randint(0, 2, {shape}, "
                 "generator=generator, dtype=dtype) - 1))"), "a divisor: 0.5 < |x| < 1.5"),
}


def _check(g) -> None:
    if not isinstance(g, Derivation):
        raise CodegenError(f"expects a Derivation from derive.gradients or derive.vjp, got {type(g).__name__}")


def _torch_example(symbol: MatrixSymbol, printer, draw: Draw) -> Input:
    rows, cols = (printer.doprint(d) for d in symbol.shape)
    key, local, shape = repr(symbol.name), printer.doprint(symbol), numpy_module._shape(symbol, printer)
    if draw.kind == "simplex":
        classes, examples = (rows, cols) if draw.axis == 0 else (cols, rows)
        code = (f"torch.eye({classes}, dtype=dtype)[torch.randint(0, {classes}, ({examples},), generator=generator)]"
                + (".T" if draw.axis == 0 else ""))
        return Input(key, local, shape, f"{code}.to(device)", safe_comment(f"{shape}, one-hot"))
    code, how = TORCH_DRAWS.get(draw.kind, TORCH_DRAWS["normal"])
    n = rows if re.fullmatch(r"\w+", rows) else f"({rows})"
    code = code.format(shape=f"({rows}, {cols})", rows=rows, n=n)
    return Input(key, local, shape, f"{code}.to(device)", safe_comment(f"{shape}, {how}"))


def _helpers(printer, framework: str) -> list[str]:
    torch_only = ["gradcheck_atol"] if framework == "torch" else []
    wanted = sorted(h for h in printer.helpers if h == "check_targets") + ["check_shapes", *torch_only]
    return [framework_runtime.source(framework, h) for h in wanted]


def to_torch(g: Derivation, name: str, *, dims: Mapping | None = None, verify: bool = True,
             hvp: bool = False) -> str:
    """The source of a torch module for ``g`` (ARGS, Function, Module), checked first (see the module);
    with ``hvp`` (a loss) also ``hvp(params, batch, directions)``, checked as to_numpy's is."""
    _check(g)
    plan, printer = plan_layer(g, name, lambda ids, definitions: DeriveTorchPrinter(ids, definitions, dtype="dtype"),
                               dims or {}, _torch_example, _second_order(g, name, hvp, verify))
    plan.helpers = _helpers(printer, "torch")
    if not use_layer_norm_kernels(plan, g, printer, printer.identifiers.fresh):
        tensors = _tensors(plan)
        shapes = {**printer.products, **{a.local: a.shape for a in [*plan.args, plan.upstream]}}
        plan.forward, plan.backward = (fuse_products(s, tensors, shapes) for s in (plan.forward, plan.backward))
    _module_arguments(plan, g)
    source = render_template("torch.py.j2", plan=plan)
    if verify:
        verify_torch_module(source, name, g)
        if hvp:
            verify_hvp(_TorchModule(_load(source, name)), name, g.loss)
    return source


def to_jax(g: Derivation, name: str, *, dims: Mapping | None = None, verify: bool = True, hvp: bool = False) -> str:
    """The source of a JAX module for ``g`` (ARGS, fn: a jax.custom_vjp function), checked first; with
    ``hvp`` (a loss) also ``hvp(params, batch, directions)``, checked as to_numpy's is."""
    _check(g)
    plan, printer = plan_layer(g, name, lambda ids, definitions: DeriveJaxPrinter(ids, definitions, dtype="dtype"),
                               dims or {}, numpy_module._input, _second_order(g, name, hvp, verify))
    plan.helpers = _helpers(printer, "jax")
    plan.extra["sizes"] = [local for local in plan.saved_values if local != "dtype"]   # dtype: the upstream's
    source = render_template("jax.py.j2", plan=plan)
    if verify:
        verify_jax_module(source, name, g)
        if hvp:
            verify_hvp(_JaxModule(_load(source, name)), name, g.loss)
    return source


def _second_order(g: Derivation, name: str, hvp: bool, verify: bool):
    """The derivation's HVP for a module with ``hvp``; the core checks it only where the module is not."""
    if not hvp:
        return None
    refuse_layer(g, name)
    return hvp_of(g, check=not verify)


def _tensors(plan: LayerPlan) -> set[str]:
    """The names in the plan that hold tensors: the arguments, the upstream, and what statements make of
    them (a size, or a constant made of numbers only, is none)."""
    tensors = {a.local for a in plan.args} | {plan.upstream.local}
    for statement in [*plan.forward, *plan.backward]:
        read = {n.id for n in ast.walk(ast.parse(statement.code, mode="eval")) if isinstance(n, ast.Name)}
        if statement.target and read & tensors:
            tensors.add(statement.target)
    return tensors


def _module_arguments(plan: LayerPlan, g: Derivation) -> None:
    """What torch's Module passes to Function in ARGS order: a parameter it holds, or an input."""
    plan.extra["call"] = [f"self.{a.local}" if a.key in plan.params else a.local for a in plan.args]
    plan.extra["inputs"] = [a.local for a in plan.args if a.key not in plan.params]
    plan.extra["param_args"] = [a for a in plan.args if a.key in plan.params]


# --- verification ------------------------------------------------------------------------------

def _load(source: str, name: str):
    try:
        return numpy_module.load_module(source, name)
    except Exception as error:
        raise CodegenError(f"the generated module for {name} does not import: {error}") from error


def _truth(g: Derivation, dims: Mapping) -> Program:
    return Program([g.output if isinstance(g, Layer) else g.loss], dims)


def _arguments(g: Derivation) -> tuple[MatrixSymbol, ...]:
    return g.arguments if isinstance(g, Layer) else g.inputs


GRADCHECK_STEP = 1e-6
# A loss whose evaluation cancels (a BCE of a saturated sigmoid's power) carries far more rounding than
# eps |Y|; there the differences at a coarser step are the truer ones. A wrong backward is off by far
# more than either step's error, so it fails at both.
COARSE_GRADCHECK_STEP = 1e-4


def verify_torch_module(source: str, name: str, g: Derivation, *, seed: int = 0) -> None:
    """Forward against derive.truth, backward with torch.autograd.gradcheck, float64 at DEFAULT_DIMS."""
    import torch

    module = _load(source, name)
    generator = torch.Generator().manual_seed(seed)
    args, _ = module.example_inputs(generator=generator, dtype=torch.float64)
    symbols = _arguments(g)
    try:
        output = module.Function.apply(*args)
    except Exception as error:
        raise CodegenError(f"the generated torch code for {name} fails on example inputs: "
                           f"{type(error).__name__}: {error}") from error
    check_output(name, output.detach().numpy(), _truth(g, module.DEFAULT_DIMS),
                 {s.name: a.numpy() for s, a in zip(symbols, args)})
    wrt = [a.detach().clone().requires_grad_(s in g.params) for s, a in zip(symbols, args)]
    # the module's own tolerance (its check_gradients reads it too): gradcheck's differences carry about
    # eps |Y| / GRADCHECK_STEP of rounding, as to_numpy's check allows for
    try:
        _gradcheck(torch, module, wrt, output)
    except Exception as error:
        raise CodegenError(f"the generated torch backward of {name} fails torch.autograd.gradcheck: "
                           f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from error


def _gradcheck(torch, module, wrt, output) -> None:
    """gradcheck at the fine step, or else at the coarse one; raises the fine step's error if both fail."""
    from torch.autograd.gradcheck import GradcheckError
    try:
        torch.autograd.gradcheck(module.Function.apply, wrt, eps=GRADCHECK_STEP,
                                 atol=module.gradcheck_atol(output, GRADCHECK_STEP), rtol=1e-6)
    except GradcheckError as fine:
        try:
            torch.autograd.gradcheck(module.Function.apply, wrt, eps=COARSE_GRADCHECK_STEP,
                                     atol=module.gradcheck_atol(output, COARSE_GRADCHECK_STEP), rtol=1e-6)
        except GradcheckError:
            raise fine from None


def verify_jax_module(source: str, name: str, g: Derivation, *, seed: int = 0) -> None:
    """Forward against derive.truth, backward with jax.test_util.check_grads, float64 at DEFAULT_DIMS."""
    import jax
    from jax.test_util import check_grads

    module = _load(source, name)
    args, _ = module.example_inputs(np.random.default_rng(seed))
    symbols = _arguments(g)
    with jax.enable_x64(True):
        arrays = [jax.numpy.asarray(a, dtype=jax.numpy.float64) for a in args]
        try:
            output = module.fn(*arrays)
        except Exception as error:
            raise CodegenError(f"the generated JAX code for {name} fails on example inputs: "
                               f"{type(error).__name__}: {error}") from error
        check_output(name, np.asarray(output), _truth(g, module.DEFAULT_DIMS),
                     {s.name: a for s, a in zip(symbols, args)})
        positions = [k for k, s in enumerate(symbols) if s in g.params]

        def of_wrt(*wrt):
            full = list(arrays)
            for k, value in zip(positions, wrt):
                full[k] = value
            return module.fn(*full)

        try:
            check_grads(of_wrt, [arrays[k] for k in positions], order=1, modes=("rev",), atol=1e-6, rtol=1e-6)
        except Exception as error:
            raise CodegenError(f"the generated JAX backward of {name} fails jax.test_util.check_grads: "
                               f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from error


# --- the HVP's check: the torch or JAX module seen as a NumPy one (float64 arrays in and out) ------

class _TorchModule:
    """``example_inputs``, ``loss_and_grads`` (derive's own backward, by Function) and ``hvp`` of a
    torch module on NumPy arrays, for :func:`derive.render.hvp.verify_hvp`."""

    def __init__(self, module):
        import torch
        self.torch, self.module, self.DEFAULT_DIMS = torch, module, module.DEFAULT_DIMS

    def example_inputs(self, rng):
        generator = self.torch.Generator().manual_seed(int(rng.integers(2 ** 31)))
        args, _ = self.module.example_inputs(generator=generator, dtype=self.torch.float64)
        values = {key: arg.numpy() for key, arg in zip(self.module.ARGS, args)}
        params = {k: v for k, v in values.items() if k in self.module.PARAMS}
        return params, {k: v for k, v in values.items() if k not in params}

    def loss_and_grads(self, params, batch):
        torch = self.torch
        values = {k: torch.tensor(v, dtype=torch.float64, requires_grad=k in params)
                  for k, v in {**batch, **params}.items()}
        loss = self.module.Function.apply(*(values[k] for k in self.module.ARGS))
        grads = torch.autograd.grad(loss, [values[k] for k in params])
        return float(loss.detach()), {k: g.numpy() for k, g in zip(params, grads)}

    def hvp(self, params, batch, directions):
        tensor = lambda arrays: {k: self.torch.tensor(v, dtype=self.torch.float64) for k, v in arrays.items()}
        products = self.module.hvp(tensor(params), tensor(batch), tensor(directions))
        return {k: v.numpy() for k, v in products.items()}


class _JaxModule:
    """The same for a JAX module (its gradient by jax.grad of fn: derive's custom_vjp backward), each
    function jitted once: the differences call them a dozen times per point."""

    def __init__(self, module):
        import jax
        self.jax, self.module, self.DEFAULT_DIMS = jax, module, module.DEFAULT_DIMS
        positions = tuple(k for k, key in enumerate(module.ARGS) if key in module.PARAMS)
        self._keys = [module.ARGS[k] for k in positions]
        self._value_and_grad = jax.jit(jax.value_and_grad(module.fn, argnums=positions))
        self._hvp = jax.jit(module.hvp)

    def example_inputs(self, rng):
        args, _ = self.module.example_inputs(rng)
        values = dict(zip(self.module.ARGS, args))
        params = {k: v for k, v in values.items() if k in self.module.PARAMS}
        return params, {k: v for k, v in values.items() if k not in params}

    def loss_and_grads(self, params, batch):
        with self.jax.enable_x64(True):
            values = self._arrays({**batch, **params})
            loss, grads = self._value_and_grad(*(values[k] for k in self.module.ARGS))
            by_key = dict(zip(self._keys, grads))
            return float(loss), {k: np.asarray(by_key[k]) for k in params}

    def hvp(self, params, batch, directions):
        with self.jax.enable_x64(True):
            products = self._hvp(self._arrays(params), self._arrays(batch), self._arrays(directions))
            return {k: np.asarray(v) for k, v in products.items()}

    def _arrays(self, values: dict) -> dict:
        return {k: self.jax.numpy.asarray(v, dtype=self.jax.numpy.float64) for k, v in values.items()}
