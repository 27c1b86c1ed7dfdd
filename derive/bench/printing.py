"""How long printing a gradient takes as a network gets deeper: ``str``, derive's LaTeX and NumPy
printers on the gradient's tree, and the same three on its named form (derive/render/shared.py,
each shared subexpression printed once), for the sigmoid MLP of :mod:`.derivation`, with respect to
W1. Part of ``derive bench``'s derivation output (derivation.md).

The tree's printed size grows with the square of the depth (each layer's ``sigmoid(Z_k)`` is written
out again in every derivative below it), its DAG linearly. derive's LaTeX and NumPy printers print
each node once (memoised), so their time follows the DAG; ``str`` is SymPy's own printer and follows
the tree; the named form follows the DAG. Before derive registered a matrix product's precedence
(derive/core/precedence.py), SymPy's printers called ``doit`` on every product they parenthesized:
``str(g[W1])`` took 0.10 / 0.54 / 3.8 / 14.8 s at L = 2 / 4 / 8 / 12.
"""

from __future__ import annotations

import statistics
import time
from functools import partial

from sympy import preorder_traversal
from sympy.core.cache import clear_cache

from ..core.derivation import gradients
from ..render.latex import latex
from ..render.numpy import DeriveNumPyPrinter
from ..render.shared import named
from .derivation import build_raw

__all__ = ["PRINTERS", "full_report", "printing_table", "report"]

DEPTHS = (2, 4, 8, 12, 24)
PRINTERS = {"str": str, "LaTeX": latex, "NumPy": lambda expr: DeriveNumPyPrinter().doprint(expr)}


def printing_table(depths=DEPTHS, repeats: int = 3) -> list[dict]:
    """One row per depth: the DAG's and the tree's node counts, and the median seconds (cold SymPy
    cache) of each printer on the tree and of naming plus all three printers on the named form."""
    rows = []
    for depth in depths:
        loss, params = build_raw(depth)
        gradient = gradients(loss, [params[0]], check=False)[params[0]]
        row = {"L": depth, "dag": _dag_size(gradient), "tree": sum(1 for _ in preorder_traversal(gradient))}
        for name, printer in PRINTERS.items():
            row[name] = _median_seconds(partial(printer, gradient), repeats)
        row["named"] = _median_seconds(partial(_print_named, gradient), repeats)
        rows.append(row)
    return rows


def _print_named(expr) -> list[str]:
    definitions, result = named(expr)
    return [printer(value) for printer in PRINTERS.values() for value in [*(v for _, v in definitions), result]]


def _dag_size(root) -> int:
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(node.args)
    return len(seen)


def _median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        clear_cache()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(rows: list[dict]) -> str:
    lines = ["| L | DAG nodes | tree nodes | str s | LaTeX s | NumPy s | named form, all three s |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['L']} | {r['dag']} | {r['tree']} | {r['str']:.4f} | {r['LaTeX']:.4f} | {r['NumPy']:.4f} | "
              f"{r['named']:.4f} |" for r in rows]
    return "\n".join(lines)


def full_report(depths=DEPTHS, repeats: int = 3) -> str:
    """The printing-time table as a markdown section of derivation.md."""
    return "\n".join([f"\n## Printing the gradient with respect to W1 against depth (median of {repeats} cold runs)\n",
                      report(printing_table(depths, repeats))])
