"""The sheet's written-out section: each gradient entry by entry at concrete dims, as note 001 writes it.

Entries are written in the data and the parameters (and the named forward quantities, defined on the
sheet): every upstream gradient is replaced by its definition before the closed form is expanded, so
``dL/dw`` reads ``-(y_1 - yhat_1) x_{11} - ...``, not ``(dL/dyhat)_1 x_{11} + ...``. What is shown is
the first of these that fits the page (:mod:`.fit`): the whole matrix; its entries one per line;
one representative entry with a sentence; the same three in the upstream gradients; and past a size
(the expansion's cost, counted before expanding) one line saying what was left out and why.
"""

from __future__ import annotations

from collections.abc import Mapping

from sympy import Basic, Determinant, Inverse, MatPow, MatrixExpr

from ..core.derivation import Derivation
from ..core.dims import expansion_cost
from ..core.explicit import explicit
from ..core.symbols import LossGradient
from .fit import LINE_EM, term_lines, tex_width
from .latex import latex

__all__ = ["WRITE_COST_LIMIT", "in_data", "left_out_line", "written_out"]

# Scalar operations of an expansion worth writing out; beyond it the section says what it left out.
WRITE_COST_LIMIT = 600
# Entries listed one by one at most, and lines one entry may take.
MOST_ENTRIES = 12
MOST_LINES = 3
# A matrix has at most this many columns on the page (amsmath's bmatrix limit is raised to it).
MOST_COLUMNS = 10
# An inverse or determinant is written out up to this size (a 3 x 3 inverse already fills a page).
MOST_INVERTED = 2


def _largest_inverse(expr: Basic) -> int:
    """The size of the largest matrix inverted (or raised to a power, or its determinant) in ``expr``."""
    sizes = [int(node.arg.rows if isinstance(node, (Inverse, Determinant)) else node.base.rows)
             for node in expr.atoms(Inverse, Determinant, MatPow)]
    return max(sizes, default=0)


def in_data(g: Derivation, expr: Basic) -> Basic:
    """``expr`` with every upstream gradient replaced by its definition, until none is left."""
    upstream: dict = {}
    for name, definition in g.bindings:
        if isinstance(name, LossGradient) and definition != name:
            upstream.setdefault(name, definition)
    for _ in range(len(upstream) + 1):
        found = expr.atoms(LossGradient) & upstream.keys()
        if not found:
            break
        expr = expr.xreplace({k: upstream[k] for k in found})
    return expr


def entry_lhs(p, i: int, j: int) -> str:
    return latex(LossGradient(p.name, *p.shape)[i, j])


def _entry(matrix, p, i: int, j: int) -> dict:
    lhs = entry_lhs(p, i, j)
    lines = term_lines(matrix[i, j], latex, room=LINE_EM - 3, first_room=LINE_EM - tex_width(lhs) - 2)
    text = " ".join(lines) if lines is not None else ""
    return {"lhs": lhs, "relation": "=", "lines": lines, "whole": text, "text": text}


def _entries(matrix, p) -> list[dict]:
    rows, cols = matrix.shape
    return [_entry(matrix, p, i, j) for i in range(rows) for j in range(cols)]


def _as_matrix(matrix, entries: list[dict], lhs_width: float) -> str | None:
    """The bmatrix of ``entries`` when it fits on one line, else None."""
    rows, cols = matrix.shape
    if cols > MOST_COLUMNS or any(e["lines"] is None or len(e["lines"]) > 1 for e in entries):
        return None
    widths = [max(tex_width(entries[i * cols + j]["text"]) for i in range(rows)) for j in range(cols)]
    if lhs_width + sum(widths) + 1.2 * (cols - 1) + 2.0 > LINE_EM:
        return None
    grid = r" \\ ".join(" & ".join(entries[i * cols + j]["text"] for j in range(cols)) for i in range(rows))
    return rf"\begin{{bmatrix}} {grid} \end{{bmatrix}}"


def _shown(matrix, p, lhs_width: float) -> dict | None:
    """The matrix, its entries or one representative entry: the first that fits, or None."""
    first = _entry(matrix, p, 0, 0)
    if first["lines"] is None or len(first["lines"]) > MOST_LINES + 1:
        return None          # one entry is already too long: the others are like it
    rows, cols = matrix.shape
    if rows * cols > MOST_ENTRIES and (cols > MOST_COLUMNS or len(first["lines"]) > 1):
        return {"kind": "representative", "matrix": None, "entries": [first]}
    entries = _entries(matrix, p)
    whole = _as_matrix(matrix, entries, lhs_width)
    if whole is not None:
        return {"kind": "matrix", "matrix": whole, "entries": []}
    fitting = [e for e in entries if e["lines"] is not None and len(e["lines"]) <= MOST_LINES]
    if len(fitting) == len(entries) and len(entries) <= MOST_ENTRIES:
        return {"kind": "entries", "matrix": None, "entries": entries}
    return {"kind": "representative", "matrix": None, "entries": [first]}


def left_out_line(rows: list[dict], dims: Mapping) -> str | None:
    """One line for the whole section when every gradient was left out, else None."""
    if not rows or any(r["kind"] != "omitted" for r in rows):
        return None
    shown = ", ".join(f"{latex(k)} = {v}" for k, v in dims.items())
    return (rf"At ${shown}$ every gradient written out entry by entry runs too long for a page, so they are "
            "left out. The entry-by-entry form of each step above holds at any size; smaller dims (2 or 3 "
            "each) write them out.")


def written_out(g: Derivation, dims: Mapping) -> list[dict]:
    """For each parameter: what the written-out section shows of its gradient at ``dims``."""
    rows = []
    shown_dims = ", ".join(f"{latex(k)} = {v}" for k, v in dims.items())
    for p in g.params:
        compact = g.compact(p)
        gradient = latex(LossGradient(p.name, *p.shape))
        row = {"gradient": gradient, "compact": latex(compact), "kind": "omitted", "matrix": None,
               "entries": [], "in_data": True, "sentence": ""}
        if not isinstance(compact, MatrixExpr):
            rows.append(row)
            continue
        size = p.subs(dims).shape
        lhs_width = tex_width(f"{gradient} = {row['compact']} =")
        attempts = [(True, in_data(g, compact)), (False, compact)]
        for data, form in attempts:
            inverted = _largest_inverse(form.subs(dims))
            if inverted > MOST_INVERTED:
                row["sentence"] = (rf"${gradient}$ holds the inverse or determinant of a ${inverted}\times {inverted}$ "
                                   "matrix, which written out entry by entry would fill pages: it is left out.")
                continue
            cost = expansion_cost(form.subs(dims), {})
            if cost > WRITE_COST_LIMIT:
                row["sentence"] = (rf"At ${shown_dims}$, $\underset{{{latex(size[0])}\times {latex(size[1])}}}"
                                   rf"{{{gradient}}}$ written out would take about {cost:,} scalar operations, "
                                   "too many for a page: it is left out (the entry-by-entry form of its step "
                                   "holds at any size).")
                continue
            found = _shown(explicit(form.subs(dims)), p, lhs_width)
            if found is not None:
                row.update(found, in_data=data, sentence="")
                count = size[0] * size[1]
                if found["kind"] == "representative":
                    row["sentence"] = (f"Each of its {count} entries runs long, so one stands for all: the others "
                                       "have the same form with the indices changed.")
                if not data:
                    row["sentence"] += (" In the data and parameters each entry runs past a few lines; here the "
                                        "entries are in the upstream gradients of the backward pass.")
                break
            if not row["sentence"] or not data:
                row["sentence"] = (rf"Written out at ${shown_dims}$, an entry of ${gradient}$ runs past a few "
                                   "lines: it is left out (the entry-by-entry form of its step gives it).")
        rows.append(row)
    return rows
