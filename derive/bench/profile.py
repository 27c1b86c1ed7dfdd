"""Where the generated step spends its time: every statement of ``forward`` and ``backward`` timed.

``derive bench`` writes this profile next to its table, so that a gap to the matmul floor is
explained by the statements that make it (an activation's erf, a mask, a sum) rather than guessed.
The module's source is instrumented with :mod:`ast` (each statement of the two functions between two
clock readings) and run as it is otherwise: helpers, threads and dtypes unchanged.
"""

from __future__ import annotations

import ast
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["StatementTime", "profile_markdown", "profile_step"]


@dataclass(frozen=True)
class StatementTime:
    function: str      # "forward" or "backward"
    code: str          # the statement as written in the module
    seconds: float     # median over the runs
    products: int      # matrix products (@) in it


class _Clocked(ast.NodeTransformer):
    """Puts ``_tick(k)`` after statement k of the functions named (forward and backward), ``_start()``
    before the first."""

    def __init__(self, functions: tuple[str, ...] = ("forward", "backward")):
        self.statements: list[tuple[str, ast.stmt]] = []
        self.functions = functions

    def visit_FunctionDef(self, node: ast.FunctionDef):
        if node.name not in self.functions:
            return node
        body = [self._call("_start")]
        for statement in node.body:
            if isinstance(statement, ast.Return):  # the return itself costs nothing to time
                body.append(statement)
                continue
            self.statements.append((node.name, statement))
            body += [statement, self._call("_tick", len(self.statements) - 1)]
        node.body = body
        return node

    @staticmethod
    def _call(name: str, *args: int) -> ast.Expr:
        return ast.Expr(ast.Call(ast.Name(name, ast.Load()), [ast.Constant(a) for a in args], []))


def _products(statement: ast.stmt) -> int:
    return sum(isinstance(n, ast.BinOp) and isinstance(n.op, ast.MatMult) for n in ast.walk(statement))


def profile_step(source: str, params: dict, batch: dict, *, repeats: int = 5, warmup: int = 1,
                 configure: Callable[[dict], None] | None = None) -> list[StatementTime]:
    """Median time of every statement of the module's forward and backward over ``repeats`` steps.

    ``configure`` gets the instrumented module's namespace before the runs (to set ``THREADS``).
    """
    clocked = _Clocked()
    tree = ast.fix_missing_locations(clocked.visit(ast.parse(source)))
    runs: list[list[float]] = [[] for _ in clocked.statements]
    last = [0.0]

    def start():
        last[0] = time.perf_counter()

    def tick(k: int):
        now = time.perf_counter()
        runs[k].append(now - last[0])
        last[0] = now

    namespace = {"__name__": "derive_profiled", "_start": start, "_tick": tick}
    exec(compile(tree, "<derive step profile>", "exec"), namespace)  # noqa: S102 - our own generated module
    if configure is not None:
        configure(namespace)
    for _ in range(warmup):
        namespace["loss_and_grads"](params, batch)
    for times in runs:
        times.clear()
    for _ in range(repeats):
        namespace["loss_and_grads"](params, batch)
    return [StatementTime(function, ast.unparse(statement), statistics.median(times), _products(statement))
            for (function, statement), times in zip(clocked.statements, runs)]


def profile_markdown(title: str, rows: list[StatementTime], floor_s: float | None = None, threshold: float = 0.005) -> str:
    """The statements that take at least ``threshold`` of the step, slowest first, and the split of the
    step between matrix products and the rest (elementwise work, sums, allocation)."""
    total = sum(r.seconds for r in rows) or 1e-12
    products = sum(r.seconds for r in rows if r.products)
    lines = [f"### {title}", "",
             f"Sum of the statements {total * 1e3:.1f} ms: matrix products {products * 1e3:.1f} ms, "
             f"everything else {(total - products) * 1e3:.1f} ms"
             + (f"; the floor's products alone {floor_s * 1e3:.1f} ms." if floor_s else "."), "",
             "| statement | pass | ms | share |", "| --- | --- | ---: | ---: |"]
    for r in sorted(rows, key=lambda r: -r.seconds):
        if r.seconds >= threshold * total:
            code = r.code.replace("|", "\\|")
            lines.append(f"| `{code}` | {r.function} | {r.seconds * 1e3:.1f} | {r.seconds / total:.0%} |")
    return "\n".join(lines) + "\n"
