"""What the layer modules lay out (NumPy, PyTorch, JAX), printed to strings: :func:`plan_layer`.

A layer module computes a layer's output Y from its arguments (every matrix it uses but the upstream
G, in ``ARGS`` order) and, given G, the closed-form vector-Jacobian products of :func:`derive.vjp`. A
loss derivation (:func:`derive.gradients`) is laid out the same way, with the scalar loss as the
output and a scalar upstream: its gradients are the closed forms times that scalar. The statements
are the NumPy module's (:mod:`.module`), printed with the framework's printer, a subclass of
:class:`~.numpy.DeriveNumPyPrinter`; the templates only lay them out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from sympy import MatrixExpr, MatrixSymbol, Poly

from ..core.derivation import Derivation
from ..core.dims import dimension_symbols
from ..core.layer import Layer
from ..core.second_order import Hvp
from ..core.truth import Draw, domain
from . import module as numpy_module
from .hvp import plan_hvp
from .identifiers import Identifiers, safe_comment
from .module import Input, Statement, safe_docstring
from .reuse import share_products

__all__ = ["LayerPlan", "plan_layer"]


@dataclass
class LayerPlan:
    """Everything a layer template lays out, already printed to strings."""

    name: str
    title: str
    declared: str                        # the output (or loss) as declared, one line
    layer: bool                          # a vjp derivation (else a loss: scalar output and upstream)
    args: list[Input]                    # ARGS order
    params: list[str]                    # the keys of the layer's parameters (a torch Module holds them)
    upstream: Input                      # G (for a loss, a scalar named in the same way)
    dims: list[Statement]
    default_dims: list[tuple[str, str, int]]
    forward: list[Statement]
    output: str                          # the code of Y (or of the loss)
    saved: list[str]                     # the arrays backward reads (never G)
    saved_values: list[str]              # dims and the dtype backward reads
    backward: list[Statement]
    grads: list[tuple[str, str | None]]  # for each arg: (key, local of its gradient or None)
    shapes: str = "()"                   # SHAPES: each arg's declared shape, for the module's check_shapes
    uses_dtype: bool = False             # constants are made in the arguments' dtype (and device)
    helpers: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)   # what one framework's template needs besides


def plan_layer(g: Derivation, name: str, make_printer: Callable, dims: Mapping,
               example: Callable[[MatrixSymbol, object, Draw], Input], hvp: Hvp | None = None) -> tuple[LayerPlan, object]:
    """The plan of ``g``'s layer module with the printer ``make_printer(identifiers, definitions)``;
    ``example(symbol, printer, draw)`` writes one argument's example draw. Given a loss's ``hvp``,
    ``extra["hvp"]`` holds its statements and ``extra["hvp_forward"]`` the forward statements they read."""
    layer = isinstance(g, Layer)
    ids = Identifiers()
    args = list(g.arguments) if layer else list(g.inputs)
    for symbol in args:
        ids("value", symbol.name)
    for entry in g.forward:
        ids("value", entry.symbol.name)
    if layer:
        upstream_local = ids("value", g.upstream.name)
        ids.alias("adjoint", g.output_symbol.name, upstream_local)   # dL/dY is G itself
    else:
        upstream_local = ids("value", "upstream")
    printer = make_printer(ids, {f.symbol: f.definition for f in g.forward})
    printer.parameters = frozenset(g.params)   # numpy_module._in_place_split: terms reading only the weights
    dim_symbols = sorted(dimension_symbols(g.root), key=str)
    sizes = numpy_module._default_sizes(dim_symbols, dims, g.root)
    draws = domain(g.loss)

    every_forward = [*numpy_module._target_checks(g, printer),
                     *[line for f in g.forward
                       for line in _forward_statements(f, printer, full=layer and f.symbol == g.output_symbol)]]
    output = printer.doprint(g.output_symbol) if layer else numpy_module._loss_statement(g, printer).code
    identities = numpy_module._identity_gradients(g)
    backward, grads = numpy_module._backward(g, printer, ids, identities)
    backward = [s for s in backward if not (s.op == "=" and s.target == s.code)]   # dY = dY
    forward = _live(every_forward, [output, *(s.code for s in backward)])
    # after _live, so that a product of the unread display names is not bound; forward and backward
    # apart, for the backward sees of the forward only what it saves
    forward, backward = (share_products(statements, printer.products, ids.fresh)
                         for statements in (forward, backward))
    code = " ".join(s.code for s in [*forward, *backward]) + " " + output
    second = plan_hvp(g, hvp, printer, ids, numpy_module._assign, numpy_module._shape, identities) if hvp else None
    if second:
        code += " " + " ".join(s.code for s in [*every_forward, *second.statements])
    batch_first = [s for s in args if s not in g.params] + [s for s in args if s in g.params]
    dim_lines = [numpy_module._bind_dim(d, batch_first, printer) for d in dim_symbols
                 if numpy_module._mentions(code, printer.doprint(d))]
    cache = numpy_module._cache(g, backward, [*dim_symbols, *args], printer)
    dim_locals = {printer.doprint(d) for d in dim_symbols}
    saved = [local for _, local in cache if local not in dim_locals and local != "dtype" and local != upstream_local]
    saved_values = [local for _, local in cache if local in dim_locals or local == "dtype"]
    if printer.uses_dtype and numpy_module._mentions(" ".join(s.code for s in backward), "device"):
        saved_values.append("device")   # torch: constants are made on the arguments' device
    by_param = dict(grads)
    upstream_symbol = g.upstream if layer else MatrixSymbol("upstream", 1, 1)
    plan = LayerPlan(
        name=safe_comment(name), title=safe_docstring(name),
        declared=safe_docstring(str(g.output if layer else g.loss)), layer=layer,
        args=[example(s, printer, draws.get(s, Draw("normal"))) for s in args],
        params=[repr(p.name) for p in (g.layer_params if layer else g.params)],
        upstream=replace(example(upstream_symbol, printer, draws.get(upstream_symbol, Draw("normal"))),
                         local=upstream_local),
        dims=dim_lines, default_dims=[(repr(str(d)), printer.doprint(d), sizes[d]) for d in dim_symbols],
        forward=forward, output=output, saved=saved, saved_values=saved_values, backward=backward,
        grads=[(repr(s.name), by_param.get(repr(s.name))) for s in args], uses_dtype=printer.uses_dtype,
        shapes=repr(tuple(_declared_shape(s) for s in args)))
    if second:
        plan.extra["hvp"] = second
        plan.extra["hvp_forward"] = _live(every_forward, [s.code for s in second.statements])
    return plan, printer


def _declared_shape(symbol: MatrixSymbol) -> tuple:
    """An argument's shape for the module's check: each size a number, its name, or an expression as
    (its text, its terms) where it is a polynomial in the sizes with integer coefficients (None: another)."""
    return tuple(int(d) if d.is_Integer else str(d) if d.is_Symbol else _polynomial(d) for d in symbol.shape)


def _polynomial(size) -> tuple | None:
    """(text, ((coefficient, (name, ...)), ...)) of a size such as D + 1 or 2 N D: each term a coefficient
    times its sizes, a size written once per power; None where the size is not such a polynomial."""
    sizes = sorted(size.free_symbols, key=str)
    if not sizes or not size.is_polynomial(*sizes):
        return None
    terms = Poly(size, *sizes).terms()
    if not all(coefficient.is_Integer for _, coefficient in terms):
        return None
    return str(size), tuple((int(coefficient), tuple(str(s) for s, power in zip(sizes, powers) for _ in range(power)))
                            for powers, coefficient in terms)


def _live(forward: list[Statement], readers: list[str]) -> list[Statement]:
    """The forward statements whose values are read (by a later statement, the output or the
    backward): a display name the closed forms never use (Q = X Wq, inlined in S) is not computed."""
    read = " ".join(readers)
    live: list[Statement] = []
    for statement in reversed(forward):
        if not statement.target or numpy_module._mentions(read, statement.target):
            live.append(statement)
            read += " " + statement.code
    return live[::-1]


def _forward_statements(entry, printer, full: bool) -> list[Statement]:
    """A forward quantity's statements. One that is a row or column broadcast (layer norm's
    1/sqrt(var + eps), a gain 1 gamma) is held as that row or column, and the statements after it
    read it so, broadcasting where they combine it: N values computed and saved, not N x D."""
    target, shape = printer.doprint(entry.symbol), numpy_module._shape(entry.symbol, printer)
    if not full and isinstance(entry.definition, MatrixExpr):
        layout = printer.layout_of(entry.definition)
        if not layout.full and not layout.scalar:
            code = printer.doprint(entry.definition)
            printer._laid_out(entry.symbol, code, layout)
            held = "one row" if layout.rows else "one column"
            return [Statement(target, code, f"{shape}, held as {held}")]
    return numpy_module._assign(target, entry.definition, shape, printer)
