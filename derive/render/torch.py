"""The PyTorch printer: derive's NumPy printer, subclassed to write torch code (:func:`derive.to_torch`).

Everything the NumPy printer decides stays: the layouts (a broadcast ``1 b`` is the row ``b``), the
cheapest association of a product chain, column sums for ``1^T G``, masks for ReLU, stable losses.
What changes is the spelling: ``torch.`` for ``np.``, constants made on the arguments' device and in
their dtype, and each activation's torch form (:data:`TORCH_FORMS`, the record's torch spelling; an
activation defined by an elementary scalar is printed from it, and a derive activation without a
torch form is refused, never approximated).
"""

from __future__ import annotations

from sympy import HadamardProduct, Identity, MatrixSymbol, OneMatrix, ZeroMatrix

from ..core.activations import gelu
from ..core.elementwise import Elementwise, derivative_order, record_of, scalar_record
from ..errors import CodegenError
from .layout import FULL, Layout
from .numpy import DeriveNumPyPrinter

__all__ = ["TORCH_FORMS", "DeriveTorchPrinter"]

_NORMAL_DENSITY = 0.3989422804014327   # 1 / sqrt(2 pi)

# activation name -> (f(a), f'(a)): format strings of the argument {a} and parameters {p0} ..., that
# keep a's dtype and device (torch.where of two Python numbers would be float32). GELU's slope is Phi(a) + a phi(a), with Phi torch's ndtr.
TORCH_FORMS = {
    "relu": ("torch.relu({a})", "({a} > 0).to({a}.dtype)"),
    "leaky_relu": ("torch.where({a} > 0, {a}, {p0} * {a})", "torch.where({a} > 0, 1.0, torch.full_like({a}, {p0}))"),
    "elu": ("torch.where({a} > 0, {a}, {p0} * torch.expm1(torch.clamp({a}, max=0)))",
            "torch.where({a} > 0, 1.0, {p0} * torch.exp(torch.clamp({a}, max=0))).to({a}.dtype)"),
    "sigmoid": ("torch.sigmoid({a})", "(torch.sigmoid({a}) * (1 - torch.sigmoid({a})))"),
    "gelu": ("torch.nn.functional.gelu({a})",
             f"(torch.special.ndtr({{a}}) + {{a}} * torch.exp(-0.5 * {{a}} ** 2) * {_NORMAL_DENSITY!r})"),
    "silu": ("torch.nn.functional.silu({a})", "(torch.sigmoid({a}) * (1 + {a} * (1 - torch.sigmoid({a}))))"),
    "softplus": ("torch.nn.functional.softplus({a})", "torch.sigmoid({a})"),
    "tanh": ("torch.tanh({a})", "(1 - torch.tanh({a}) ** 2)"),
    "exp": ("torch.exp({a})", "torch.exp({a})"),
    "log": ("torch.log({a})", "(1 / {a})"),
}

# f'' as the NumPy printer's SECOND_FORMS, in torch
TORCH_SECOND = {"elu": "torch.where({a} > 0, 0.0, {p0} * torch.exp(torch.clamp({a}, max=0)))",
                "gelu": "(0.3989422804014327 * torch.exp(-0.5 * {a} ** 2) * (2 - {a} ** 2))"}


class DeriveTorchPrinter(DeriveNumPyPrinter):
    """torch code for derive's expressions; constants take the variables ``dtype`` and ``device``."""

    framework = "torch"
    forms = TORCH_FORMS

    def _module_format(self, fqn, register=True):
        if fqn.startswith("numpy."):
            return "torch." + fqn[len("numpy."):]
        if fqn.startswith("scipy.special."):
            return "torch.special." + fqn[len("scipy.special."):]
        return fqn

    # --- constants, on the arguments' device ------------------------------------------------------

    def _broadcast(self, expr, code: str) -> str:
        shape = f"({self._print(expr.rows)}, {self._print(expr.cols)})"
        if not self.layout(expr).scalar:
            return f"torch.broadcast_to({code}, {shape})"
        if expr.atoms(MatrixSymbol):
            return f"torch.broadcast_to(torch.as_tensor({code}), {shape})"   # a 0-d tensor
        self.uses_dtype = True
        return f"torch.full({shape}, {code}, dtype=dtype, device=device)"

    def full(self, expr, writable: bool = False) -> str:
        code = super().full(expr, writable)
        return code[:-len(".copy()")] + ".clone()" if writable and code.endswith(".copy()") else code

    def _print_Identity(self, expr):
        if expr.rows == 1:
            return self._laid_out(expr, "1.0", Layout(scalar=True))
        return self._eye(expr.rows)

    def _eye(self, size) -> str:
        self.uses_dtype = True
        return f"torch.eye({self._print(size)}, dtype=dtype, device=device)"

    def _dtype_argument(self) -> str:
        self.uses_dtype = True
        return ", dtype=dtype, device=device"

    def _print_Blocks(self, expr):
        rows = ", ".join("torch.cat([" + ", ".join(self._block(b) for b in row) + "], dim=1)" for row in expr.grid)
        return f"torch.cat([{rows}], dim=0)"

    def _block(self, block) -> str:
        shape = f"({self._print(block.rows)}, {self._print(block.cols)})"
        if isinstance(block, (OneMatrix, ZeroMatrix)):
            return f"torch.{'ones' if isinstance(block, OneMatrix) else 'zeros'}({shape}{self._dtype_argument()})"
        if isinstance(block, Identity):
            return self._eye(block.rows)
        if isinstance(block, MatrixSymbol):
            return self._print(block)
        return f"torch.broadcast_to({self._print(block)}, {shape})"

    def _print_Entries(self, expr):
        rows = ", ".join("torch.stack([" + ", ".join(f"torch.as_tensor({self._print(e)}{self._dtype_argument()})"
                                                      for e in row) + "])" for row in expr.rows_of_entries)
        return f"torch.stack([{rows}])"

    def _print_Trace(self, expr):
        return f"torch.trace({self._print(expr.arg)})"

    def _print_Determinant(self, expr):
        return f"torch.linalg.det({self._print(expr.arg)})"

    def _print_Inverse(self, expr):
        return f"torch.linalg.inv({self._print(expr.arg)})"

    # --- activations ---------------------------------------------------------------------------

    def _print_Elementwise(self, expr):
        if derivative_order(type(expr)) > 1:   # f'' (second order): SECOND_FORMS or its scalar
            return super()._print_Elementwise(expr)
        record, prime = record_of(type(expr))
        argument, layout = self._argument(expr.arg)
        if prime and record.name == "relu" and self._cached_value(expr) is not None:
            argument = self._cached_value(expr)   # relu'(Z) from relu(Z): the same mask, and no Z saved
        form = self._form(record, prime)
        if form is None:
            return self._laid_out(expr, self._generic_elementwise(expr, argument), layout)
        params = {f"p{k}": self._scalar(p) for k, p in enumerate(expr.params)}
        return self._laid_out(expr, form.format(a=argument, **params), layout)

    def _form(self, record, prime: bool) -> str | None:
        """The framework's form of f or f', None where the scalar function prints as it is."""
        forms = self.forms.get(record.name)
        if forms is not None:
            return forms[prime]
        if isinstance(record.scalar, type) and record.scalar.__module__.startswith("derive"):
            raise CodegenError(f"the activation {record.name} has no {self.framework} form; add one to "
                               f"derive.render.{self.framework}")
        return None

    def _second_form(self, name: str) -> str | None:
        return TORCH_SECOND.get(name)

    def _mask(self, factor) -> str | None:
        mask = super()._mask(factor)
        if mask is not None and record_of(type(factor))[0].name == "relu":
            value = self._cached_value(factor)
            if value is not None:   # relu(Z) > 0 exactly where Z > 0: the backward needs no Z saved
                return f"{value} > 0"
        return mask

    def _print_HadamardProduct(self, expr):
        # G ⊙ gelu'(A) in one pass with torch's kernel of that very product (aten's gelu_backward, the
        # exact GELU's slope times G; no autograd): the formula printed instead takes six passes
        slopes = [a for a in expr.args if isinstance(a, Elementwise) and derivative_order(type(a)) == 1
                  and record_of(type(a)) == (gelu.record, True)]
        if len(slopes) == 1 and len(expr.args) > 1:
            others = [a for a in expr.args if a is not slopes[0]]
            rest = others[0] if len(others) == 1 else HadamardProduct(*others)
            if self.layout_of(rest).full and self.layout_of(slopes[0].arg).full:
                code = f"torch.ops.aten.gelu_backward({self._print(rest)}, {self._print(slopes[0].arg)})"
                return self._laid_out(expr, code, FULL)
        return super()._print_HadamardProduct(expr)

    def times_in_place(self, target, factor):
        return None   # the NumPy helpers that multiply in place have no torch counterpart here

    def _print_Function(self, expr):
        record = scalar_record(type(expr))
        if record is None:
            return super(DeriveNumPyPrinter, self)._print_Function(expr)
        x, *params = expr.args
        code = self._print(x)
        argument = code if code.replace("_", "").replace(".", "").isalnum() else f"({code})"
        form = self._form(record, False)
        return form.format(a=f"torch.as_tensor({argument})", **{f"p{k}": self._scalar(p) for k, p in enumerate(params)})

    def _print_Indicator(self, expr):
        return f"(({self._print(expr.args[0])}) > 0) * 1.0"

    def _print_NormalCdf(self, expr):
        return f"torch.special.ndtr({self._print(expr.args[0])})"

    def _print_softmax(self, expr):
        return f"torch.softmax({self._print(expr.arg)}, dim={expr.axis})"

    def _print_log_softmax(self, expr):
        return f"torch.log_softmax({self._print(expr.arg)}, dim={expr.axis})"

    # --- losses ----------------------------------------------------------------------------------

    def _print_SquaredError(self, expr):
        residual = f"{self._wrap(expr.prediction)} - {self._wrap(expr.target)}"
        return f"{self._scalar(expr.scale)} * torch.sum(({residual}) ** 2)"

    def _print_BinaryCrossEntropy(self, expr):
        logits = self._logits_of(expr.prediction)
        y = self._wrap(expr.target)
        if logits is not None:
            z = self._wrap(logits)
            return f"{self._scalar(expr.scale)} * torch.sum(torch.nn.functional.softplus({z}) - {y} * {z})"
        p = self._wrap(expr.prediction)
        return f"-{self._scalar(expr.scale)} * torch.sum({y} * torch.log({p}) + (1 - {y}) * torch.log1p(-{p}))"

    def target_check(self, expr):
        self.helpers.add("check_targets")
        return f"check_targets({self._print(expr.target)}, axis={expr.axis}, name={str(expr.target)!r})"

    def _print_SoftmaxCrossEntropy(self, expr):
        log_p = f"torch.log_softmax({self._print(expr.prediction)}, dim={expr.axis})"
        scale = "" if expr.scale == 1 else f"{self._scalar(expr.scale)} * "
        return f"-{scale}torch.sum({self._wrap(expr.target)} * {log_p})"
