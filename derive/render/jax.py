"""The JAX printer: derive's NumPy printer, subclassed to write ``jax.numpy`` code (:func:`derive.to_jax`).

``jax.numpy`` mirrors NumPy, so an activation's NumPy form from its record is its JAX form with
``jnp.`` for ``np.``; the forms that call derive's NumPy helpers (GELU, the SiLU slope, blocked and
in place) have their JAX spelling in :data:`JAX_FORMS`. Arrays are immutable: nothing is written in
place and gradients need no copy.
"""

from __future__ import annotations

import re

from sympy import Identity, MatrixSymbol, OneMatrix, ZeroMatrix

from ..errors import CodegenError
from . import runtime
from .layout import Layout
from .numpy import SECOND_FORMS
from .torch import _NORMAL_DENSITY, DeriveTorchPrinter

__all__ = ["JAX_FORMS", "DeriveJaxPrinter"]

JAX_FORMS = {
    "gelu": ("jax.nn.gelu({a}, approximate=False)",
             f"(jax.scipy.special.ndtr({{a}}) + {{a}} * jnp.exp(-0.5 * {{a}} ** 2) * {_NORMAL_DENSITY!r})"),
    "silu": ("jax.nn.silu({a})", "(jax.nn.sigmoid({a}) * (1 + {a} * (1 - jax.nn.sigmoid({a}))))"),
}


def _numpy_to_jax(form: str | None) -> str | None:
    if form is None:
        return None
    if any(h in runtime.HELPERS for h in re.findall(r"(?<![\w.])(\w+)\(", form)) or "scipy." in form:
        return None
    return re.sub(r"(?<![\w.])np\.", "jnp.", form)


class DeriveJaxPrinter(DeriveTorchPrinter):
    """``jax.numpy`` code for derive's expressions; constants take the variable ``dtype``."""

    framework = "jax"

    def _module_format(self, fqn, register=True):
        if fqn.startswith("numpy."):
            return "jnp." + fqn[len("numpy."):]
        if fqn.startswith("scipy.special."):
            return "jax.scipy.special." + fqn[len("scipy.special."):]
        return fqn

    def _form(self, record, prime: bool) -> str | None:
        if record.name in JAX_FORMS:
            return JAX_FORMS[record.name][prime]
        form = _numpy_to_jax(record.numpy_prime if prime else record.numpy)
        if form is None and (prime and record.numpy_prime is None):
            return None   # f' printed from the scalar derivative
        if form is None:
            raise CodegenError(f"the activation {record.name} has no jax form; add one to derive.render.jax")
        return form

    def _second_form(self, name: str) -> str | None:
        return _numpy_to_jax(SECOND_FORMS.get(name))

    def _broadcast(self, expr, code: str) -> str:
        shape = f"({self._print(expr.rows)}, {self._print(expr.cols)})"
        if not self.layout(expr).scalar:
            return f"jnp.broadcast_to({code}, {shape})"
        if expr.atoms(MatrixSymbol):
            return f"jnp.full({shape}, {code})"
        self.uses_dtype = True
        return f"jnp.full({shape}, {code}, dtype=dtype)"

    def full(self, expr, writable: bool = False) -> str:
        return super(DeriveTorchPrinter, self).full(expr, False)   # immutable arrays: no copy

    def _print_Identity(self, expr):
        if expr.rows == 1:
            return self._laid_out(expr, "1.0", Layout(scalar=True))
        return self._eye(expr.rows)

    def _eye(self, size) -> str:
        self.uses_dtype = True
        return f"jnp.eye({self._print(size)}, dtype=dtype)"

    def _dtype_argument(self) -> str:
        self.uses_dtype = True
        return ", dtype=dtype"

    def _print_Blocks(self, expr):
        rows = ", ".join("[" + ", ".join(self._block(b) for b in row) + "]" for row in expr.grid)
        return f"jnp.block([{rows}])"

    def _block(self, block) -> str:
        shape = f"({self._print(block.rows)}, {self._print(block.cols)})"
        if isinstance(block, (OneMatrix, ZeroMatrix)):
            return f"jnp.{'ones' if isinstance(block, OneMatrix) else 'zeros'}({shape}{self._dtype_argument()})"
        if isinstance(block, Identity):
            return self._eye(block.rows)
        if isinstance(block, MatrixSymbol):
            return self._print(block)
        return f"jnp.broadcast_to({self._print(block)}, {shape})"

    def _print_Entries(self, expr):
        rows = ", ".join("[" + ", ".join(self._print(e) for e in row) + "]" for row in expr.rows_of_entries)
        return f"jnp.array([{rows}]{self._dtype_argument()})"

    def _print_Trace(self, expr):
        return f"jnp.trace({self._print(expr.arg)})"

    def _print_Determinant(self, expr):
        return f"jnp.linalg.det({self._print(expr.arg)})"

    def _print_Inverse(self, expr):
        return f"jnp.linalg.inv({self._print(expr.arg)})"

    def _print_Function(self, expr):
        code = super()._print_Function(expr)
        return code.replace("torch.as_tensor(", "jnp.asarray(")

    # torch's kernels of a slope times G, softmax's backward and addcmul: XLA fuses the formula itself
    def _print_HadamardProduct(self, expr):
        return super(DeriveTorchPrinter, self)._print_HadamardProduct(expr)

    def _print_MatAdd(self, expr):
        return super(DeriveTorchPrinter, self)._print_MatAdd(expr)

    def slopes(self, first):   # the NumPy runtime's pair helpers are not this module's: f' and f'' apart
        return None

    def times_in_place(self, target, factor):
        return None   # immutable arrays

    def _print_Indicator(self, expr):
        return f"jnp.heaviside({self._print(expr.args[0])}, 0.0)"

    def _print_NormalCdf(self, expr):
        return f"jax.scipy.special.ndtr({self._print(expr.args[0])})"

    def _print_softmax(self, expr):
        return f"jax.nn.softmax({self._print(expr.arg)}, axis={expr.axis})"

    def _print_log_softmax(self, expr):
        return f"jax.nn.log_softmax({self._print(expr.arg)}, axis={expr.axis})"

    def _print_SquaredError(self, expr):
        residual = f"{self._wrap(expr.prediction)} - {self._wrap(expr.target)}"
        return f"{self._scalar(expr.scale)} * jnp.sum(({residual}) ** 2)"

    def _print_BinaryCrossEntropy(self, expr):
        logits = self._logits_of(expr.prediction)
        y = self._wrap(expr.target)
        if logits is not None:
            z = self._wrap(logits)
            return f"{self._scalar(expr.scale)} * jnp.sum(jnp.logaddexp(0, {z}) - {y} * {z})"
        p = self._wrap(expr.prediction)
        return f"-{self._scalar(expr.scale)} * jnp.sum({y} * jnp.log({p}) + (1 - {y}) * jnp.log1p(-{p}))"

    def _print_SoftmaxCrossEntropy(self, expr):
        log_p = f"jax.nn.log_softmax({self._print(expr.prediction)}, axis={expr.axis})"
        scale = "" if expr.scale == 1 else f"{self._scalar(expr.scale)} * "
        return f"-{scale}jnp.sum({self._wrap(expr.target)} * {log_p})"
