"""The sheet's second-order section (``to_latex(g, hvp=True)``): the tangent pass, the boxed HVPs and,
for vector parameters, the boxed Hessians.

Everything shown is what the derivation publishes: :meth:`~derive.core.derivation.Derivation.hvp`'s tangent
steps (Pearlmutter's R-operator applied to each quantity, forward pass first, then the upstream
gradients) and its products, and :meth:`~derive.core.derivation.Derivation.hessian`'s n x n closed forms,
each checked by the core against second differences of the loss. Nothing here differentiates.
"""

from __future__ import annotations

from collections.abc import Callable

from sympy import MatrixSymbol, Transpose

from ..core.derivation import Derivation
from ..core.symbols import GradientTangent
from ..errors import UnsupportedOperation
from .hvp import hvp_of
from .latex import latex
from .shared import named as shared_parts

__all__ = ["second_order_view"]

# A Hessian or a product in the network's own symbols is shown when it fits on this many lines.
MAX_LINES = 4


def second_order_view(g: Derivation, equation_rows: Callable, with_shape: Callable) -> dict:
    """The section's strings; ``equation_rows`` and ``with_shape`` are the sheet's own layout helpers."""
    hvp = hvp_of(g, check=True)
    directions = [rf"{with_shape(latex(v), v.shape)} \text{{ for }} {latex(p)}" for p, v in hvp.directions.items()]
    tangents = equation_rows([(with_shape(latex(step.symbol), step.shape), "=", step.definition)
                              for step in hvp.steps])
    products = []
    for p, compact in hvp.compact.items():
        closed = equation_rows([(_product_name(p), "=", hvp[p])])[0]
        shown = closed["lines"] is not None and len(closed["lines"]) <= MAX_LINES and hvp[p] != compact
        products.append({"name": with_shape(_product_name(p), p.shape),
                         "tangent": latex(GradientTangent(p.name, *p.shape)), "compact": latex(compact),
                         "closed": closed if shown else None})
    hessians, named = [], {f.expression: f.symbol for f in g.forward}
    for p in g.params:
        if 1 not in p.shape:
            continue
        n = p.shape[0] if p.shape[1] == 1 else p.shape[1]
        lhs = rf"\frac{{\partial^2 L}}{{\partial {latex(p)}\, \partial {latex(p)}^{{\top}}}}"
        try:
            hessian = g.hessian(p)
        except UnsupportedOperation:   # the core cannot read this product's matrix off: the HVP stands alone
            hessians.append({"name": with_shape(lhs, (n, n)), "form": None, "fits": False, "closed": None, "where": [],
                             "note": rf"For ${latex(p)}$ derive cannot read the matrix off the product "
                                     rf"$(H V)_{{{latex(p)}}}$ above, which is its product with the direction."})
            continue
        # in the forward quantities the sheet names (h, p, ...), as notes write X^T diag(p (1 - p)) X: two
        # to four times shorter than in the network's own symbols, which follow when they fit
        rows, where = _broken(lhs, hessian.xreplace(named), equation_rows, with_shape)
        closed = equation_rows([(lhs, "=", hessian)])[0]
        shown = closed["lines"] is not None and len(closed["lines"]) <= MAX_LINES and closed["whole"] != rows["whole"]
        hessians.append({"name": with_shape(lhs, (n, n)), "form": rows, "note": None,
                         "fits": rows["lines"] is not None and len(rows["lines"]) == 1,   # boxed; else broken, not shrunk
                         "closed": closed if shown else None, "where": where})
    return {"directions": directions, "tangents": tangents, "products": products, "hessians": hessians}


def _broken(lhs: str, form, equation_rows: Callable, with_shape: Callable) -> tuple[dict, list[dict]]:
    """The row of ``lhs = form`` and, when it does not fit on MAX_LINES lines, the parts it uses more than
    once named first (S1, S2, ...: the rows of a "where"), so that no Hessian is shrunk past reading."""
    rows = equation_rows([(lhs, "=", form)])[0]
    if rows["lines"] is not None and len(rows["lines"]) <= MAX_LINES:
        return rows, []
    definitions, short = _without_transposed_leaves(*shared_parts(form, prefix="S"))
    if not definitions:
        return rows, []
    where = equation_rows([(with_shape(latex(symbol), symbol.shape), "=", value) for symbol, value in definitions])
    return equation_rows([(lhs, "=", short)])[0], where


def _without_transposed_leaves(definitions: list, short) -> tuple[list, object]:
    """The named parts less those that are a leaf transposed (``S4 = W_2^T`` names nothing worth a line):
    each is written back where it is used."""
    back = {symbol: value for symbol, value in definitions
            if isinstance(value, Transpose) and isinstance(value.arg, MatrixSymbol)}
    kept = [(symbol, value.xreplace(back)) for symbol, value in definitions if symbol not in back]
    short = short.xreplace(back)
    # numbered again from 1 (S1, S2, S3 rather than S1, S2, S4), unless the form itself uses such a name
    renamed = {symbol: MatrixSymbol(f"S{k}", *symbol.shape) for k, (symbol, _) in enumerate(kept, 1)}
    taken = {getattr(s, "name", None) for _, value in kept for s in value.free_symbols} | {
        getattr(s, "name", None) for s in short.free_symbols}
    if back and not taken & {new.name for new in renamed.values()} - {old.name for old in renamed}:
        kept = [(renamed[symbol], value.xreplace(renamed)) for symbol, value in kept]
        short = short.xreplace(renamed)
    return kept, short


def _product_name(param) -> str:
    return rf"(H V)_{{{latex(param)}}}"
