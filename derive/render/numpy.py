"""The NumPy printer: SymPy's, subclassed to write the code of :func:`derive.render.module.to_numpy`.

Expressions come from a derivation in compact form: Intermediate symbols (Z_1) are cached forward
values, LossGradient symbols (dL/dZ_1) are upstream gradients computed earlier in the backward
pass. The printer never differentiates; it only chooses a cheap, numerically stable NumPy spelling:
``@`` and ``.T``, ``1^T G`` as a column sum, the cheapest association of a matrix chain, each
activation's forms from its record, stable losses, user names mangled into safe identifiers
(:mod:`.identifiers`). It tracks the shape of every array it prints (a :class:`~.layout.Layout`):
a broadcast ``1 b`` prints as the row ``b``, and only the operations that broadcast it back (a sum,
a Hadamard product, a product's outer side) receive it so; everything else receives its declared
shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sympy import (
    Basic,
    Expr,
    HadamardPower,
    HadamardProduct,
    Identity,
    Integer,
    MatAdd,
    MatMul,
    MatrixExpr,
    MatrixSymbol,
    OneMatrix,
    Rational,
    S,
    Symbol,
    Transpose,
    ZeroMatrix,
)
from sympy.matrices.expressions.matexpr import MatrixElement
from sympy.matrices.expressions.slice import MatrixSlice
from sympy.printing.numpy import NumPyPrinter

from ..core.activations import sigmoid
from ..core.canonical import Blocks, Entries
from ..core.elementwise import Elementwise, derivative_order, record_of, scalar_record
from ..core.losses import BinaryCrossEntropy, SoftmaxCrossEntropy, SquaredError
from ..core.softmax import log_softmax, softmax
from . import runtime
from .chain import ProductChains
from .identifiers import Identifiers
from .layout import FULL, Layout, Operand, combined

__all__ = ["SECOND_FORMS", "SLOPE_PAIRS", "DeriveNumPyPrinter"]

# f'' of an activation whose scalar prints through NumPy's select and heaviside (ELU's: 0 above 0,
# alpha e^a below) or takes several passes (GELU's); the others print from their scalar second derivative
SECOND_FORMS = {"elu": "np.where({a} > 0, 0.0, {p0} * np.exp(np.minimum({a}, 0)))",
                "gelu": "(0.3989422804014327 * np.exp(-0.5 * {a} ** 2) * (2 - {a} ** 2))"}   # phi (2 - a^2): one exp
# f' and f'' at one argument made together by a runtime helper, where a second-order module reads both
# (GELU's share the density phi and Phi = f(A) / A): (the form, the form given f(A) from the forward pass)
SLOPE_PAIRS = {"gelu": ("gelu_slopes({a})", "gelu_slopes({a}, value={value})")}


class DeriveNumPyPrinter(ProductChains, NumPyPrinter):
    """NumPy code for derive's expressions: ``@``, ``.T``, column sums, stable activations and losses.

    ``identifiers`` gives Python names for symbols (see :class:`Identifiers`); ``definitions`` maps
    a named quantity to its definition, so a binary cross-entropy on ``p = sigmoid(z)`` can be
    computed from the logits ``z``. ``helpers`` collects the runtime helpers (:mod:`derive.render.runtime`) the printed code calls.

    Every printed matrix has a :class:`Layout` (:meth:`layout`): a ones-matrix product ``1 b`` prints
    as the row ``b``, a sum of such rows stays a row, a 1 x 1 identity or ``t[0, 0] I_1`` prints as a
    scalar. Only the node types in ``_READS_LAYOUTS`` receive such arrays and account for them (a
    product whose shared axis is broadcast multiplies by a sum instead); every other node (trace,
    inverse, softmax, losses, SymPy's own printers) receives its operands at their declared shapes,
    and :meth:`full` gives a statement's value at its declared shape.
    """

    # A sum's terms added into its first fresh term one by one (R = A @ V; R += H @ U): NumPy makes a
    # fresh array per "+", and on big layers fresh arrays cost their page faults.
    adds_terms_in_place = True
    # The network's parameters (set by the module renderer): a sum starts from a term that reads more.
    parameters: frozenset = frozenset()

    # Nodes whose printers read their operands' layouts: elementwise combinations broadcast, a
    # product handles a broadcast factor, an entry is read off a broadcast array.
    _READS_LAYOUTS = (MatMul, MatAdd, Transpose, HadamardProduct, HadamardPower, MatrixElement, Elementwise)

    def __init__(self, identifiers: Identifiers | None = None, definitions: Mapping | None = None, settings=None,
                 dtype: str | None = None):
        super().__init__(settings or {})
        self.identifiers = identifiers or Identifiers()
        self.definitions = dict(definitions or {})
        self.helpers: set[str] = set()
        self._placeholders: dict[Symbol, str] = {}
        # the name of a variable holding the parameters' dtype: constant matrices (I) take it, so that
        # float32 stays float32 through the products they enter; None: NumPy's default, float64
        self.dtype = dtype
        self.uses_dtype = False
        self._layouts: dict[Basic, Layout] = {}   # the printed matrices that are not at their declared shape
        self._readers: list[bool] = []            # whether each node being printed reads its operands' layouts
        self.products: dict[str, str] = {}   # each matrix product printed -> its shape, for a comment

    # --- layouts -----------------------------------------------------------------------------

    def _print(self, expr, **kwargs):
        if isinstance(expr, Expr) and not isinstance(expr, (MatrixExpr, Rational)) and expr.is_number:
            value = complex(expr)
            if value.imag == 0:
                return repr(value.real)  # a Python float: never promotes a float32 array
        parent_reads_layouts = self._readers[-1] if self._readers else True
        # a matrix node is printed once per printer (its layout too): a deep gradient's tree repeats
        # sigmoid(Z_k) in every derivative below it, its DAG does not
        printed = self.__dict__.setdefault("_printed", {})
        code = printed.get(expr) if isinstance(expr, MatrixExpr) and not kwargs else None
        if code is None:
            self._readers.append(isinstance(expr, self._READS_LAYOUTS))
            try:
                # an activation prints by its record even where SymPy has a printer of that name (tanh, exp)
                code = self._print_Elementwise(expr) if isinstance(expr, Elementwise) else super()._print(expr, **kwargs)
            finally:
                self._readers.pop()
            if isinstance(expr, MatrixExpr) and not kwargs:
                printed[expr] = code
        if not parent_reads_layouts and isinstance(expr, MatrixExpr) and not self.layout(expr).full:
            return self._broadcast(expr, code)
        return code

    def layout(self, expr) -> Layout:
        """The layout of the array this printer printed for ``expr`` (declared, if not printed yet)."""
        return self._layouts.get(expr, FULL)

    def layout_of(self, expr) -> Layout:
        """The layout of the array printed for ``expr``, printing it."""
        self._print(expr)
        return self.layout(expr)

    def _laid_out(self, expr, code: str, layout: Layout) -> str:
        if layout.full:
            self._layouts.pop(expr, None)
        else:
            self._layouts[expr] = layout
        return code

    def full(self, expr, writable: bool = False) -> str:
        """The code of ``expr`` as an array of its declared shape (the value of a statement); with
        ``writable``, never a read-only view (a gradient handed to the caller)."""
        code = self._print(expr)
        if not isinstance(expr, MatrixExpr) or self.layout(expr).full:
            return code
        if writable and not self.layout(expr).scalar:
            return f"{self._broadcast(expr, code)}.copy()"
        return self._broadcast(expr, code)

    def _broadcast(self, expr, code: str) -> str:
        """``code``, printed with a smaller layout, as an array of ``expr``'s declared shape: a view of
        the row (or column) repeated, or for a 0-d value a new array of it."""
        shape = f"({self._print(expr.rows)}, {self._print(expr.cols)})"
        if not self.layout(expr).scalar:
            return f"np.broadcast_to({code}, {shape})"
        if expr.atoms(MatrixSymbol) or self.dtype is None:
            return f"np.full({shape}, {code})"  # the dtype of the value
        # a constant (a Python number): made in the parameters' dtype, so a constant gradient keeps float32
        self.uses_dtype = True
        return f"np.full({shape}, {code}, dtype={self.dtype})"

    # --- names and numbers -------------------------------------------------------------------

    def _module_format(self, fqn, register=True):
        if fqn.startswith("numpy."):
            return "np." + fqn[len("numpy."):]
        if fqn.startswith("scipy.special."):
            self.helpers.add("scipy")
        return fqn

    def _print_Pow(self, expr, rational=False):
        base, power = expr.args
        if isinstance(expr.base, MatrixExpr) or not power.is_Integer:
            return super()._print_Pow(expr, rational)
        if power == -1:
            return f"1/{self._scalar(base)}"
        return f"{self._scalar(base)}**{self._scalar(power)}"

    def _print_Symbol(self, expr):
        if expr in self._placeholders:
            return self._placeholders[expr]
        return self.identifiers("dim", expr.name)

    def _print_MatrixSymbol(self, expr):
        return self.identifiers("value", expr.name)

    def _print_Intermediate(self, expr):
        return self.identifiers("value", expr.name)

    def _print_LossGradient(self, expr):
        return self.identifiers("adjoint", expr.name)

    def _print_Tangent(self, expr):   # R{Z}, a second-order module's tangent of a forward quantity
        return self.identifiers("tangent", expr.name)

    def _print_GradientTangent(self, expr):   # R{dL/dZ}
        return self.identifiers("gradient tangent", expr.name)

    def _print_Identity(self, expr):
        if expr.rows == 1:
            # a 1 x 1 factor multiplies by broadcasting (see _pair); a scalar of the parameters' dtype
            if self.dtype is None:
                return self._laid_out(expr, "1", Layout(scalar=True))
            self.uses_dtype = True
            return self._laid_out(expr, f"{self.dtype}.type(1)", Layout(scalar=True))
        return self._eye(expr.rows)

    def _eye(self, size) -> str:
        if self.dtype is None:
            return f"np.eye({self._print(size)})"
        self.uses_dtype = True
        return f"np.eye({self._print(size)}, dtype={self.dtype})"

    def _print_OneMatrix(self, expr):
        # stands in a sum or Hadamard product, where it broadcasts
        return self._laid_out(expr, "1", Layout.of(expr.shape, scalar=True))

    def _print_ZeroMatrix(self, expr):
        return self._laid_out(expr, "0", Layout.of(expr.shape, scalar=True))

    # --- linear algebra ----------------------------------------------------------------------

    def _atomic(self, expr) -> bool:
        # names, numbers and function calls need no parentheses around them
        if isinstance(expr, Transpose):
            return self._atomic(expr.arg)
        return isinstance(expr, (MatrixSymbol, OneMatrix, Identity, ZeroMatrix, Symbol, Integer, Elementwise,
                                 softmax, log_softmax, Blocks, Entries, MatrixSlice))

    def _wrap(self, expr) -> str:
        code = self._print(expr)
        return code if self._atomic(expr) else f"({code})"

    def _print_Transpose(self, expr):
        code, layout = self._print(expr.arg), self.layout(expr.arg)
        if expr.shape == (1, 1) or layout.scalar:
            # itself; and the 1 x 1 identity prints as 1, which has no .T
            return self._laid_out(expr, code, layout.transposed())
        wrapped = code if self._atomic(expr.arg) else f"({code})"
        return self._laid_out(expr, f"{wrapped}.T", layout.transposed())

    def _print_MatAdd(self, expr):
        parts, layouts = [], []
        # broadcast terms (a bias 1 b) last: the sum then starts from a full-size array
        # and subtracted terms after added ones: 1 - f rather than -f + 1
        for term in sorted(expr.args, key=lambda t: (_is_broadcast(t) and not isinstance(t, OneMatrix),
                                                      _split_coeff(t)[0] == -1)):
            coeff, rest = _split_coeff(term)
            if coeff == -1:
                parts.append(("-", self._print_term(rest)))
                layouts.append(self.layout(rest))
            else:
                parts.append(("+", self._print_term(term)))
                layouts.append(self.layout(term))
        first_sign, first = parts[0]
        code = ("-" if first_sign == "-" else "") + first
        for sign, part in parts[1:]:
            code += f" {sign} {part}"
        return self._laid_out(expr, code, combined(layouts))

    def _print_term(self, term) -> str:
        return self._wrap(term) if isinstance(term, MatAdd) else self._print(term)

    def _print_MatMul(self, expr):
        coeff, _ = _split_coeff(expr)
        matrices = [a for a in expr.args if isinstance(a, MatrixExpr) and not isinstance(a, Identity)]
        if not matrices:
            # c I: the gradient of a trace's argument; it stays a matrix, for the products it enters
            identity = next((a for a in expr.args if isinstance(a, Identity)), None)
            if identity is None:
                return self._print(coeff) if coeff != 1 else "1"
            eye = self._print(identity)
            code = eye if coeff == 1 else f"{self._scalar(coeff)} * {eye}"
            return self._laid_out(expr, code, self.layout(identity))
        if coeff not in (1, -1) and len(matrices) == 1 and isinstance(matrices[0], HadamardProduct):
            folded = self._scaled_factor(coeff, matrices[0])
            if folded is not None:
                return self._laid_out(expr, self._print(folded), self.layout(folded))
        product = self._chain([self._operand(m) for m in matrices])
        if coeff not in (1, -1) and product.parts is not None:
            product, coeff = self._scaled_side(coeff, product)
        if coeff == 1:
            code = product.code
        elif coeff == -1:
            code = f"-{product.wrapped()}"
        else:
            code = f"{self._scalar(coeff)} * {product.wrapped()}"
        return self._laid_out(expr, code, product.layout)

    def _scaled_factor(self, coeff, product: HadamardProduct):
        """``c (A ⊙ b)`` as ``A ⊙ (c b)`` for a factor b printed as a row or column, where A is full: one
        pass over the full array fewer. None where there is no such pair."""
        layouts = [self.layout_of(a) for a in product.args]
        small = [k for k, lay in enumerate(layouts) if not lay.full and not isinstance(product.args[k], OneMatrix)]
        if not small or all(not lay.full for lay in layouts):
            return None
        return HadamardProduct(*(MatMul(coeff, a) if k == small[0] else a for k, a in enumerate(product.args)))

    def _scalar(self, coeff) -> str:
        code = self._print(coeff)
        return code if re.fullmatch(r"[\w.]+", code) else f"({code})"

    def _operand(self, matrix) -> Operand:
        code = self._print(matrix)
        return Operand(code, matrix.rows, matrix.cols, self.layout(matrix), isinstance(matrix, OneMatrix),
                        self._atomic(matrix))

    def _print_HadamardProduct(self, expr):
        factors, layouts = [], []
        # ones (and the 1 x 1 identity) are the unit of the Hadamard product; a larger I is a mask
        args = [a for a in expr.args if not isinstance(a, OneMatrix) and not (isinstance(a, Identity) and a.rows == 1)]
        for arg in args or [expr.args[0]]:
            mask = self._mask(arg)
            if mask is not None:
                factors.append(f"({mask})")  # a boolean mask multiplies in one pass
                layouts.append(self.layout(arg.arg))
            else:
                factors.append(self._wrap(arg))
                layouts.append(self.layout(arg))
        return self._laid_out(expr, " * ".join(factors), combined(layouts))

    def _mask(self, factor) -> str | None:
        """f'(A) as a boolean mask (relu': A > 0), where its record has one and A is a name."""
        if (not isinstance(factor, Elementwise) or derivative_order(type(factor)) > 1
                or not self._atomic(factor.arg)):
            return None
        record, prime = record_of(type(factor))
        if not prime or record.numpy_mask is None:
            return None
        return record.numpy_mask.format(a=self._print(factor.arg))

    def _print_HadamardPower(self, expr):
        base, power = expr.args
        if power == -1:
            code = f"1 / {self._wrap(base)}"
        else:
            code = f"{self._wrap(base)} ** {self._scalar(power)}"
        return self._laid_out(expr, code, self.layout(base))

    def _print_MatrixElement(self, expr):
        matrix, i, j = expr.args
        code, layout = self._wrap(matrix), self.layout(matrix)
        if layout.scalar:
            return code  # every entry is the value itself
        # along a broadcast axis every index reads the one row (or column) printed
        return f"{code}[{self._print(S.Zero if layout.rows else i)}, {self._print(S.Zero if layout.cols else j)}]"

    def _print_MatrixSlice(self, expr):
        parent, rows, cols = expr.args
        return f"{self._wrap(parent)}[{self._span(rows)}, {self._span(cols)}]"

    def _span(self, span) -> str:
        start, stop, _ = span
        return f"{'' if start == 0 else self._print(start)}:{self._print(stop)}"

    def _print_Blocks(self, expr):
        rows = ", ".join("[" + ", ".join(self._block(b) for b in row) + "]" for row in expr.grid)
        return f"np.block([{rows}])"

    def _block(self, block) -> str:
        """A block as a full 2-d array: np.block cannot broadcast, and constants print as scalars elsewhere."""
        shape = f"({self._print(block.rows)}, {self._print(block.cols)})"
        if isinstance(block, (OneMatrix, ZeroMatrix)):
            return f"np.{'ones' if isinstance(block, OneMatrix) else 'zeros'}({shape}{self._dtype_argument()})"
        if isinstance(block, Identity):
            return self._eye(block.rows)
        if isinstance(block, MatrixSymbol):
            return self._print(block)
        return f"np.broadcast_to({self._print(block)}, {shape})"

    def _dtype_argument(self) -> str:
        if self.dtype is None:
            return ""
        self.uses_dtype = True
        return f", dtype={self.dtype}"

    def _print_Entries(self, expr):
        rows = ", ".join("[" + ", ".join(self._print(e) for e in row) + "]" for row in expr.rows_of_entries)
        return f"np.array([{rows}]{self._dtype_argument() or ', dtype=float'})"

    def _print_Trace(self, expr):
        return f"np.trace({self._print(expr.arg)})"

    def _print_Determinant(self, expr):
        return f"np.linalg.det({self._print(expr.arg)})"

    def _print_Inverse(self, expr):
        return f"np.linalg.inv({self._print(expr.arg)})"

    # --- elementwise functions, softmax --------------------------------------------------------

    def _print_Elementwise(self, expr):
        # f of a broadcast row is the broadcast row of f: the layout passes through
        if derivative_order(type(expr)) > 1:   # f'' (second order): records hold f and f' only
            argument, layout = self._argument(expr.arg)
            form = self._second_form(type(expr).of.record.name) if derivative_order(type(expr)) == 2 else None
            if form is None:
                return self._laid_out(expr, self._generic_elementwise(expr, argument), layout)
            params = {f"p{k}": self._scalar(p) for k, p in enumerate(expr.params)}
            return self._laid_out(expr, form.format(a=argument, **params), layout)
        record, prime = record_of(type(expr))
        form = record.numpy_prime if prime else record.numpy
        argument, layout = self._argument(expr.arg)
        if form is None:
            return self._laid_out(expr, self._generic_elementwise(expr, argument), layout)
        self._use_helpers(form)
        params = {f"p{k}": self._scalar(p) for k, p in enumerate(expr.params)}
        # arguments are names in practice (the deriver names every activation's input)
        return self._laid_out(expr, form.format(a=argument, **params), layout)

    def _second_form(self, name: str) -> str | None:
        return SECOND_FORMS.get(name)

    def _argument(self, arg) -> tuple[str, Layout]:
        """An elementwise function's argument and its layout; an array (the forms read its dtype), so
        a 0-d value is made the array it stands for."""
        code = self._wrap(arg)
        if self.layout(arg).scalar:
            return self.full(arg), FULL
        return code, self.layout(arg)

    def times_in_place(self, target: str, factor) -> tuple[str, str] | None:
        """(operator, code) that multiply the array ``target`` by ``factor`` in place with no temporary
        of its size and dtype (``dZ *= Z > 0``, ``dZ = gelu_prime(Z, times=dZ)``); None if none can."""
        if not isinstance(factor, Elementwise) or derivative_order(type(factor)) > 1:
            return None
        record, prime = record_of(type(factor))
        forms = record.numpy_in_place if prime else None
        if forms is None or not self._atomic(factor.arg) or not self.layout_of(factor.arg).full:
            return None
        op, form, with_value = forms
        value = self._cached_value(factor) if with_value else None
        form = form if value is None else with_value
        self._use_helpers(form)
        return op, form.format(a=self._print(factor.arg), target=target, value=value)

    def slopes(self, first) -> str | None:
        """Code for the pair (f'(A), f''(A)) in one call, where a runtime helper makes both (f' the
        derivative ``first``); None where there is none."""
        forms = SLOPE_PAIRS.get(type(first).of.record.name)
        if forms is None or not self._atomic(first.arg) or not self.layout_of(first.arg).full:
            return None
        value = self._cached_value(first)
        form = forms[0] if value is None else forms[1]
        self._use_helpers(form)
        return form.format(a=self._print(first.arg), value=value)

    def _cached_value(self, prime) -> str | None:
        """The name of the forward quantity defined as f(A), for the derivative f'(A), if there is one."""
        for symbol, definition in self.definitions.items():
            if (type(definition) is prime.of and definition.arg == prime.arg
                    and definition.params == prime.params):
                return self._print(symbol)
        return None

    def _use_helpers(self, form: str) -> None:
        calls = [h for h in re.findall(r"(?<![\w.])(\w+)\(", form) if h in runtime.HELPERS]
        self.helpers.update(runtime.closure(calls))
        if "scipy." in form:
            self.helpers.add("scipy")

    def _generic_elementwise(self, expr, argument: str):
        """f(A) for an elementwise function without a hand-written form: the scalar f, printed."""
        placeholder = Symbol("a")
        body = expr.scalar(placeholder, *expr.params)
        self._placeholders[placeholder] = argument
        try:
            return f"({self._print(body)})"
        finally:
            del self._placeholders[placeholder]

    def _print_Function(self, expr):
        # an activation's scalar function (met where a closed form has scalar entries): its record's form
        record = scalar_record(type(expr))
        if record is None:
            return super()._print_Function(expr)
        x, *params = expr.args
        code = self._print(x)
        argument = code if re.fullmatch(r"[\w.]+(\[[^\]]*\])?", code) else f"({code})"
        self._use_helpers(record.numpy)
        return record.numpy.format(a=argument, **{f"p{k}": self._scalar(p) for k, p in enumerate(params)})

    def _print_Indicator(self, expr):
        # relu'(x) = 1 for x > 0, else 0 (SymPy prints Heaviside through Piecewise, seconds per call)
        return f"np.heaviside({self._print(expr.args[0])}, 0.0)"

    def _print_NormalCdf(self, expr):
        self.helpers.add("scipy")
        return f"(0.5*(1 + scipy.special.erf(({self._print(expr.args[0])})/{2 ** 0.5!r})))"

    def _print_softmax(self, expr):
        self.helpers.add("softmax")
        return f"softmax({self._print(expr.arg)}, axis={expr.axis})"

    def _print_log_softmax(self, expr):
        self.helpers.add("log_softmax")
        return f"log_softmax({self._print(expr.arg)}, axis={expr.axis})"

    # --- losses --------------------------------------------------------------------------------

    def _print_SquaredError(self, expr: SquaredError):
        residual = f"{self._wrap(expr.prediction)} - {self._wrap(expr.target)}"
        return f"{self._scalar(expr.scale)} * np.sum(({residual}) ** 2)"

    def _print_BinaryCrossEntropy(self, expr: BinaryCrossEntropy):
        logits = self._logits_of(expr.prediction)
        y = self._wrap(expr.target)
        if logits is not None:
            # -(y log s(z) + (1 - y) log(1 - s(z))) = softplus(z) - y z: finite for any logits
            z = self._wrap(logits)
            return f"{self._scalar(expr.scale)} * np.sum(np.logaddexp(0, {z}) - {y} * {z})"
        self.helpers.add("binary_cross_entropy")
        return f"{self._scalar(expr.scale)} * np.sum(binary_cross_entropy({self._print(expr.prediction)}, {y}))"

    def _logits_of(self, prediction) -> Basic | None:
        definition = self.definitions.get(prediction, prediction)
        return definition.arg if isinstance(definition, sigmoid) else None

    def target_check(self, expr: SoftmaxCrossEntropy) -> str:
        """The statement refusing targets that break the declaration targets_sum_to_one=True."""
        self.helpers.add("check_targets")
        return f"check_targets({self._print(expr.target)}, axis={expr.axis}, name={str(expr.target)!r})"

    def _print_SoftmaxCrossEntropy(self, expr: SoftmaxCrossEntropy):
        self.helpers.add("log_softmax")
        log_p = f"log_softmax({self._print(expr.prediction)}, axis={expr.axis})"
        scale = "" if expr.scale == 1 else f"{self._scalar(expr.scale)} * "
        return f"-{scale}np.sum({self._wrap(expr.target)} * {log_p})"


def _is_broadcast(expr) -> bool:
    """A product that starts with a ones-column or ends with a ones-row: printed as a row or column."""
    _, rest = _split_coeff(expr)
    if not isinstance(rest, MatMul):
        return isinstance(rest, OneMatrix)
    matrices = [a for a in rest.args if isinstance(a, MatrixExpr)]
    return (isinstance(matrices[0], OneMatrix) and matrices[0].rows != 1) or (
        isinstance(matrices[-1], OneMatrix) and matrices[-1].cols != 1)


def _split_coeff(expr):
    """``c * M`` -> (c, M) for a MatMul with a scalar factor; (1, expr) otherwise."""
    if isinstance(expr, MatMul):
        scalars = [a for a in expr.args if not isinstance(a, MatrixExpr)]
        if scalars:
            coeff = 1
            for s in scalars:
                coeff *= s
            matrices = [a for a in expr.args if isinstance(a, MatrixExpr)]
            rest = matrices[0] if len(matrices) == 1 else MatMul(*matrices)
            return coeff, rest
    return 1, expr


