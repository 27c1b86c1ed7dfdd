"""The PyTorch printer: derive's NumPy printer, subclassed to write torch code (:func:`derive.to_torch`).

Everything the NumPy printer decides stays: the layouts (a broadcast ``1 b`` is the row ``b``), the
cheapest association of a product chain, column sums for ``1^T G``, masks for ReLU, stable losses.
What changes is the spelling: ``torch.`` for ``np.``, constants made on the arguments' device and in
their dtype, and each activation's torch form (:data:`TORCH_FORMS`, the record's torch spelling; an
activation defined by an elementary scalar is printed from it, and a derive activation without a
torch form is refused, never approximated).
"""

from __future__ import annotations

from sympy import HadamardProduct, Identity, MatAdd, MatrixSymbol, OneMatrix, ZeroMatrix, sympify

from ..core.elementwise import Elementwise, derivative_order, record_of, scalar_record
from ..core.rules import softmax_rule
from ..core.softmax import softmax
from ..errors import CodegenError
from .layout import FULL, Layout, combined
from .numpy import DeriveNumPyPrinter, _split_coeff

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


# activation name -> (torch's kernel of G times its slope, of {g} and {a}; what {a} is): "argument", the
# activation's input A (or, for relu, its cached output, which is positive exactly where A is);
# "output", the cached output f(A), in which the derivation writes the slope
SLOPE_KERNELS = {
    "gelu": ("torch.ops.aten.gelu_backward({g}, {a})", "argument"),
    "relu": ("torch.ops.aten.threshold_backward({g}, {a}, 0)", "argument"),
    "sigmoid": ("torch.ops.aten.sigmoid_backward({g}, {a})", "output"),
    "tanh": ("torch.ops.aten.tanh_backward({g}, {a})", "output"),
}


def _product(factors: list):
    return factors[0] if len(factors) == 1 else HadamardProduct(*factors)


class DeriveTorchPrinter(DeriveNumPyPrinter):
    """torch code for derive's expressions; constants take the variables ``dtype`` and ``device``."""

    framework = "torch"
    forms = TORCH_FORMS
    adds_terms_in_place = False   # a product plus a product is one torch.addmm (torch_kernels.fuse_products)

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
        softmax_backward = self._softmax_backward(expr)
        if softmax_backward is not None:
            return self._laid_out(expr, softmax_backward, FULL)
        kernel = self._slope_kernel(list(expr.args))
        if kernel is not None:
            form, rest = kernel
            if self.layout_of(rest).full:
                return self._laid_out(expr, form.format(g=self._print(rest)), FULL)
        return super()._print_HadamardProduct(expr)

    def _print_MatAdd(self, expr):
        # R + c (A ⊙ B) in one pass with torch.addcmul, where the formula takes three (a layer norm's
        # dC = G ⊙ gamma ⊙ r + 2 (dH ⊙ C)): the product and its scaling are not made as arrays
        for k, term in enumerate(expr.args):
            coeff, rest = _split_coeff(term)
            if not isinstance(rest, HadamardProduct) or len(rest.args) != 2 or not sympify(coeff).is_number:
                continue
            if self._slope_kernel(list(rest.args)) is not None or self._softmax_backward(rest) is not None:
                continue   # a kernel of torch's own does this product in one pass already
            others = expr.args[:k] + expr.args[k + 1:]
            base = others[0] if len(others) == 1 else MatAdd(*others)
            factors = [self._wrap(a) for a in rest.args]
            layout = combined([self.layout_of(base), *(self.layout(a) for a in rest.args)])
            if not self.layout(base).full and not layout.full:
                continue   # an addcmul of a row and a row is no pass saved; keep the formula's layout
            value = "" if coeff == 1 else f", value={self._scalar(coeff)}"
            return self._laid_out(expr, f"torch.addcmul({self._print(base)}, {factors[0]}, {factors[1]}{value})", layout)
        return super()._print_MatAdd(expr)

    def _softmax_backward(self, expr) -> str | None:
        """P ⊙ (G - (G ⊙ P) 1 1^T), softmax's rule at P = softmax(S), by torch's kernel of it: two
        passes over the N x N scores where the formula takes four. Recognised by building the rule's
        own result from the factors and comparing (so only that very form is)."""
        for symbol, definition in self.definitions.items():
            if not isinstance(definition, softmax) or symbol not in expr.args or len(expr.args) != 2:
                continue
            centred = expr.args[1] if expr.args[0] == symbol else expr.args[0]
            for upstream in centred.args if isinstance(centred, MatAdd) else ():
                if softmax_rule(definition, symbol, upstream)[0] == expr and self.layout_of(upstream).full:
                    return (f"torch._softmax_backward_data({self._print(upstream)}, {self._print(symbol)}, "
                            f"{definition.axis}, {self._print(upstream)}.dtype)")
        return None

    def _slope_kernel(self, factors: list):
        """(form of {g}, the other factors) where ``factors`` hold an activation's slope that one of
        torch's own backward kernels multiplies by in one pass (:data:`SLOPE_KERNELS`, no autograd):
        the slope as the derivation wrote it (gelu'(A), relu'(A), or in the cached output, sigmoid's
        S ⊙ (1 - S) and tanh's 1 - T^2 as their records' derivatives give them) read off the factors."""
        for k, factor in enumerate(factors):
            if isinstance(factor, Elementwise) and derivative_order(type(factor)) == 1:
                name = record_of(type(factor))[0].name
                value = self._cached_value(factor) if name == "relu" else None
                argument = factor.arg if value is None else None
                if name in SLOPE_KERNELS and SLOPE_KERNELS[name][1] == "argument" and len(factors) > 1 and (
                        argument is None or self.layout_of(argument).full):
                    operand = value if value is not None else self._print(argument)
                    return SLOPE_KERNELS[name][0].format(g="{g}", a=operand), _product(factors[:k] + factors[k + 1:])
        for symbol, definition in self.definitions.items():
            if not isinstance(definition, Elementwise) or derivative_order(type(definition)) != 0:
                continue
            name = definition.record.name
            if name not in SLOPE_KERNELS or SLOPE_KERNELS[name][1] != "output":
                continue
            slope = definition.derivative(symbol)
            parts = list(slope.args) if isinstance(slope, HadamardProduct) else [slope]
            rest = list(factors)
            if all(part in rest and not rest.remove(part) for part in parts) and rest:
                return SLOPE_KERNELS[name][0].format(g="{g}", a=self._print(symbol)), _product(rest)
        return None

    def slopes(self, first):   # the NumPy runtime's pair helpers are not this module's: f' and f'' apart
        return None

    def times_in_place(self, target, factor):
        # the NumPy helpers that multiply in place have no torch counterpart; torch's backward kernels
        # multiply by an activation's slope in one pass, into a new array (the mask takes three)
        kernel = self._slope_kernel([factor, MatrixSymbol(target, *factor.shape)])
        return None if kernel is None else ("=", kernel[0].format(g=target))

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
