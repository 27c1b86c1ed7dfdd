"""The derivation sheet: a :class:`~derive.derivation.Derivation` laid out as a LaTeX document.

The renderer reads the derivation (``g.forward``, ``g.steps``, ``g.paths``, ``g.compact``,
``g.index_form``) and prints every expression to a string with :mod:`derive.printing`; the Jinja2
template in ``templates/sheet.tex.j2`` only lays those strings out. Nothing here differentiates:
numbers on the figure are the derivation's own forward expressions and gradients evaluated at the
example's values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sympy import (
    Basic,
    Identity,
    ImmutableMatrix,
    Inverse,
    MatMul,
    MatPow,
    MatrixSymbol,
    OneMatrix,
    S,
    Transpose,
    sympify,
)
from sympy.matrices.expressions.matexpr import MatrixElement

from ..core.derivation import Derivation, set_latex_display
from ..core.dims import normalize_dims
from ..core.explicit import explicit
from ..core.graph import Step, topological_order
from ..core.symbols import Intermediate, LossGradient
from ..errors import DimsError
from ..version import __version__
from .explain import backward_summary, feeders, loss_scale, notation, step_title
from .fit import LINE_EM, term_lines, tex_width
from .latex import latex, latex_name, latex_text
from .sheet_hvp import second_order_view
from .templates import GENERATED_MARK, render, templates_dir
from .written import left_out_line, written_out

__all__ = ["GENERATED_MARK", "sheet_summary_latex", "templates_dir", "to_latex"]

# A closed form in the network's own symbols is shown only when it fits on this many lines.
CLOSED_FORM_MAX_LINES = 4
CLOSED_FORM_MAX_NODES = 400
# A step's entry form is shown when it breaks into at most this many lines.
ENTRY_MAX_LINES = 3
# Vertical distance between nodes of one column of the figure, in cm.
ROW_SPACING = 1.3


# --- small printing helpers -----------------------------------------------------------------------

def shape_latex(shape) -> str:
    rows, cols = shape
    return rf"{latex(rows)}\times {latex(cols)}"


def with_shape(symbol_tex: str, shape) -> str:
    return rf"\underset{{{shape_latex(shape)}}}{{{symbol_tex}}}"


def quantity_latex(expr: Basic) -> str:
    """A quantity by name, or its expression in parentheses when it has none."""
    if isinstance(expr, MatrixSymbol):
        return latex(expr)
    return rf"\left({latex(expr)}\right)"


def gradient_latex(expr: Basic) -> str:
    """dL/d(expr) for a named quantity, a parameter or an unnamed subexpression."""
    if isinstance(expr, MatrixSymbol):
        return latex(LossGradient(expr.name, *expr.shape))
    return rf"\frac{{\partial L}}{{\partial {quantity_latex(expr)}}}"


def is_batch_sum(expr: Basic) -> bool:
    """``1^T G`` or ``G 1``: a product with a ones vector, which sums G over rows or columns."""
    if not isinstance(expr, MatMul):
        return False
    ends = [a for a in (expr.args[0], expr.args[-1]) if isinstance(a, OneMatrix)]
    return any(1 in a.shape and a.shape != (1, 1) for a in ends)


def number(value) -> str:
    return f"{float(value):.2f}".replace("-0.00", "0.00")


# --- the sheet's data -----------------------------------------------------------------------------

@dataclass
class StepView:
    index: int
    title: str
    output: str
    argument: str
    shape: str
    rows: list[dict]
    entry_dropped: bool
    folded: list[dict]
    scale: str | None
    diagonal: bool
    batch_sum: bool
    several_paths: bool


@dataclass
class Figure:
    nodes: list[dict] = field(default_factory=list)
    edges: list[dict] = field(default_factory=list)
    output: dict | None = None


def equation_rows(rows) -> list[dict]:
    """``(lhs, relation, rhs)`` rows of one display, each rhs (an expression, or printed LaTeX) broken into
    lines that fit beside the widest lhs; a row that cannot be broken has ``lines`` None."""
    rows = list(rows)
    room = LINE_EM - max((tex_width(lhs) for lhs, _, _ in rows), default=0.0) - 1.5
    out = []
    for lhs, relation, rhs in rows:
        whole = rhs if isinstance(rhs, str) else latex(rhs)
        lines = ([whole] if tex_width(whole) <= room else None) if isinstance(rhs, str) else \
            term_lines(rhs, latex, room=room - 2.0, first_room=room)
        out.append({"lhs": lhs, "relation": relation, "whole": whole, "lines": lines})
    return out


def step_view(g: Derivation, k: int, step: Step, folded: list[Step]) -> StepView:
    root = g.root_compact
    output = "L" if step.output == root and not isinstance(root, Intermediate) else quantity_latex(step.output)
    formula = g.rule_of(step).formula_of(step.node)
    rows = [(r"\text{upstream } G", "=", step.upstream if step.upstream is not None else "1"),
            (r"\text{rule}", "", rf"\quad {formula}")]
    if step.local is not None:
        rows.append((r"\text{local factor}", "=", step.local))
    several = len(g.paths(step.target)) > 1
    rows.append((gradient_latex(step.target), r"\mathrel{+}=" if several else "=", step.result))
    # an entry of an inverse has no short form (SymPy would invert the matrix entry by entry): none is shown
    if not step.result.has(Inverse, MatPow):
        equation = g.index_form(step)
        lhs = (latex(equation.lhs) if isinstance(step.target, MatrixSymbol)
               else rf"\left(\frac{{\partial L}}{{\partial {quantity_latex(step.target)}}}\right)_{{ij}}")
        rows.append((lhs, "=", equation.rhs))
    shown = equation_rows(rows)
    # the entry form is a gloss: when it cannot be broken to fit the page it is left out, not shrunk
    entry_dropped = len(shown) == len(rows) and len(rows) > 3 and not step.result.has(Inverse, MatPow) and (
        shown[-1]["lines"] is None or len(shown[-1]["lines"]) > ENTRY_MAX_LINES)
    if entry_dropped:
        shown = shown[:-1]
    return StepView(
        index=k, title=step_title(step, folded), output=output, argument=quantity_latex(step.target),
        shape=shape_latex(step.shape), rows=shown, entry_dropped=entry_dropped,
        folded=[{"sum": latex(f.node), "term": latex(step.output), "gradient": latex(f.upstream)} for f in folded],
        scale=loss_scale(step, formula), diagonal=step.diagonal, batch_sum=is_batch_sum(step.result),
        several_paths=several)


def path_sums(g: Derivation) -> list[dict]:
    """Quantities reached along several paths: each path's contribution and their total."""
    rows = []
    for target, paths, total in g.sums_over_paths():
        terms = " + ".join(latex(p.result) for p in paths)
        rows.append((gradient_latex(target), "=", terms))
        rows.append(("", "=", total))
    return equation_rows(rows)


# --- numbers for a worked example -----------------------------------------------------------------

def evaluate(expr: Basic, mapping: dict, values: Mapping, dims: Mapping) -> float:
    """The number a 1 x 1 (or scalar) expression takes at ``values`` (keyed by symbol or name); the
    names in ``expr`` are written in the network's symbols with ``mapping`` (``g.closed_names``)."""
    by_name = {str(getattr(k, "name", k)): v for k, v in values.items()}
    closed = expr.xreplace(mapping)
    if hasattr(closed, "shape"):
        closed = explicit(closed.subs(dims))[0, 0]
    entries = {}
    for element in closed.atoms(MatrixElement):
        given = by_name[element.parent.name]
        entries[element] = sympify(given) if not hasattr(given, "__len__") else ImmutableMatrix(given)[element.i, element.j]
    return float(sympify(closed.xreplace(entries)).doit().evalf())


def numbers_apply(g: Derivation, values: Mapping) -> bool:
    """Numbers make sense on the figure when every quantity is a 1 x 1 matrix with a given value."""
    names = {str(getattr(k, "name", k)) for k in values}
    leaves = g.inputs
    return bool(values) and all(s.name in names for s in leaves) and \
        all(tuple(f.shape) == (1, 1) for f in g.forward) and all(tuple(s.shape) == (1, 1) for s in leaves)


# --- the computation graph figure ------------------------------------------------------------------

def figure(g: Derivation, values: Mapping | None, dims: Mapping) -> Figure:
    """Nodes in columns by depth, an edge from every symbol a quantity's definition uses."""
    root = g.root_compact
    quantities = [(f.symbol, f.definition) for f in g.forward]
    if not isinstance(root, Intermediate):
        quantities.append((None, root))     # the loss itself, drawn as L
    leaves = list(g.inputs)
    column: dict = {}
    inputs: dict = {}
    for symbol, definition in quantities:
        used = [a for a in dict.fromkeys(topological_order(definition))
                if isinstance(a, MatrixSymbol) and not isinstance(a, LossGradient)]
        inputs[symbol] = used
        column[symbol] = 1 + max((column[u] for u in used if u in column), default=0)
    for leaf in leaves:
        consumers = [column[q] for q, used in inputs.items() if leaf in used]
        column[leaf] = min(consumers, default=1) - 1
    nodes_in_order = leaves + [q for q, _ in quantities]
    ids = {node: f"(n{k})" for k, node in enumerate(nodes_in_order)}
    width = max(column.values()) + 1
    step_x = min(3.0, 15.0 / max(width, 1))
    fig = Figure()
    for node in nodes_in_order:
        same = [n for n in nodes_in_order if column[n] == column[node]]
        row = same.index(node)
        fig.nodes.append({
            "ref": ids[node], "at": f"({column[node] * step_x:.2f},{ROW_SPACING * ((len(same) - 1) / 2 - row):.2f})",
            "label": "L" if node is None else latex(node),
            "kind": "param" if node in g.params else "leaf" if node in leaves else "quantity"})
    numeric = values is not None and numbers_apply(g, values)
    mapping = g.closed_names if numeric else {}
    for symbol, _ in quantities:
        for used in inputs[symbol]:
            edge = {"source": ids[used], "target": ids[symbol], "value": None, "gradient": None}
            if numeric:
                edge["value"] = number(evaluate(used, mapping, values, dims))
                carried = [evaluate(step.result, mapping, values, dims) for step in g.edge_steps(used, symbol)]
                edge["gradient"] = number(sum(carried, 0.0))
            fig.edges.append(edge)
    out = {"source": ids[None if not isinstance(root, Intermediate) else root], "value": None, "gradient": None}
    if numeric:
        loss_value = root if isinstance(root, Intermediate) else g.root
        out["value"] = number(evaluate(loss_value, mapping, values, dims))
        out["gradient"] = number(1)
    fig.output = out
    return fig


# --- the public functions -------------------------------------------------------------------------

def _tree_leaves(expr: Basic) -> int:
    """How many leaves ``expr`` prints (each at least one character), counted over its DAG: a deep
    network's closed form repeats its shared parts so often that printing it to measure it took minutes."""
    count: dict = {}
    stack = [expr]
    while stack:
        node = stack[-1]
        if node in count:
            stack.pop()
            continue
        pending = [a for a in node.args if a not in count]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        count[node] = sum(count[a] for a in node.args) if node.args else 1
    return count[expr]


def final_views(g: Derivation) -> list[dict]:
    """The boxed results, each with its closed form in the network's own symbols when that fits
    (on at most CLOSED_FORM_MAX_LINES lines), else a sentence saying why it is not shown."""
    finals = []
    for p in g.params:
        gradient = with_shape(gradient_latex(p), p.shape)
        # counted before printing: a closed form of thousands of nodes is never shown, so never printed
        small = _tree_leaves(g[p]) <= CLOSED_FORM_MAX_NODES
        closed = equation_rows([(gradient_latex(p), "=", g[p])])[0] if small else None
        shown = closed is not None and closed["lines"] is not None and len(closed["lines"]) <= CLOSED_FORM_MAX_LINES
        finals.append({"gradient": gradient, "compact": latex(g.compact(p)), "closed": closed if shown else None,
                       "closed_note": None if shown or g[p] == g.compact(p) else
                       "In the network's own symbols it runs past "
                       f"{CLOSED_FORM_MAX_LINES} lines; the backward pass above builds it step by step."})
    return finals


def sheet_context(g: Derivation, *, title=None, dims=None, values=None, source=None, standalone=True,
                  hvp=False) -> dict:
    concrete = normalize_dims(dims, g.root) if dims is not None else None
    leaves = g.inputs
    fig = figure(g, values, concrete or {})
    numeric = any(e["gradient"] is not None for e in fig.edges)
    value_list = [rf"{latex_name(getattr(k, 'name', k))} = {latex(S(v)) if not hasattr(v, '__len__') else latex(ImmutableMatrix(v))}"
                  for k, v in (values or {}).items()]
    numbers = [{"gradient": gradient_latex(p), "value": number(evaluate(g.adjoint(p), {g.adjoint(p): g[p]},
                                                                         values, concrete or {}))}
               for p in g.params] if numeric else []
    folded = feeders(g)
    steps = [step_view(g, k, s, folded[s]) for k, s in enumerate(folded, start=1)]
    loss_rhs = latex(g.root_compact)
    if isinstance(g.root_compact, Intermediate):
        loss_rhs += " = " + latex(dict(g.bindings)[g.root_compact])
    forward = equation_rows([(with_shape(latex(f.symbol), f.shape), "=", f.definition) for f in g.forward]
                            + [("L", "=", g.root_compact if not isinstance(g.root_compact, Intermediate)
                                else loss_rhs)])
    context = {
        "standalone": standalone,
        "header": f"% {GENERATED_MARK} {__version__}: a derivation sheet. Do not edit; regenerate it instead.",
        "pdf_creator": f"({GENERATED_MARK} {__version__})",
        "title": latex_text(title or "A derivation"),
        "source": latex_text(source) if source else None,
        "params": [with_shape(latex(p), p.shape) for p in g.params],
        "others": [with_shape(latex(s), s.shape) for s in leaves if s not in g.params],
        "forward": forward,
        "summary": equation_rows(backward_summary(g)),
        "steps": steps,
        "paths": path_sums(g),
        "finals": final_views(g),
        "dims_heading": "$" + ", ".join(f"{latex(k)} = {v}" for k, v in concrete.items()) + "$"
                        if concrete else "the network's own sizes",
        "explicit": written_out(g, concrete) if concrete is not None else None,
        "left_out": None,
        "figure": fig,
        "values": ", ".join(value_list),
        "numbers": numbers,
        "second": second_order_view(g, equation_rows, with_shape) if hvp else None,
    }
    if concrete is not None:
        context["left_out"] = left_out_line(context["explicit"], concrete)
    context["notation"] = notation(g, repr(context))
    return context


def to_latex(g: Derivation, *, title: str | None = None, dims: Mapping | None = None,
             values: Mapping | None = None, source: str | None = None, standalone: bool = True,
             hvp: bool = False) -> str:
    """The derivation sheet of ``g``: a LaTeX document that compiles with pdflatex, or with
    ``standalone=False`` a fragment (no preamble, no ``\\begin{document}``) to paste into a course's
    own document, which then needs amsmath, amssymb, graphicx and TikZ (arrows.meta).

    ``dims`` (``{"N": 2}``) adds the gradients written out entry by entry at those sizes; ``values``
    (``{w0: 2, ...}``, for networks of 1 x 1 quantities) puts numbers on the computation graph.
    ``hvp`` adds the second order (:mod:`.sheet_hvp`): the tangent pass, the HVPs, the Hessians of
    vector parameters.
    """
    if dims is not None and not isinstance(dims, Mapping):
        raise DimsError(f"dims must be a mapping such as {{'N': 2}}, got {dims!r}")
    context = sheet_context(g, title=title, dims=dims, values=values, source=source, standalone=standalone, hvp=hvp)
    return render("sheet.tex.j2", **context)


def sheet_summary_latex(g: Derivation) -> str:
    """The final gradients, after the definitions of the names they use, as one display block for
    notebooks (``Derivation._repr_latex_``): forward quantities first, then upstream gradients."""
    # an upstream gradient that is an identity (a trace's) multiplies by nothing: it is put in, and dropped
    identities = {name: value for name, value in g.bindings if isinstance(name, LossGradient)
                  and isinstance(value.T if isinstance(value, Transpose) else value, Identity)}
    compact = {p: g.compact(p).xreplace(identities) for p in g.params}
    used: set = set()
    pending = list(compact.values())
    definitions = dict(reversed(g.bindings))
    while pending:
        expr = pending.pop()
        for name in expr.atoms(Intermediate, LossGradient) if isinstance(expr, Basic) else ():
            if name not in used and name in definitions and definitions[name] != name:
                used.add(name)
                pending.append(definitions[name])
    lines = [rf"{latex(name)} &= {latex(definition)}" for name, definition in g.bindings
             if name in used and definition != name and (used.discard(name) or True)]
    lines += [rf"{gradient_latex(p)} &= {latex(compact[p])}" for p in g.params]
    return "$$\\begin{aligned}" + r" \\ ".join(lines) + "\\end{aligned}$$"


set_latex_display(sheet_summary_latex)   # what a notebook shows for a derivation
