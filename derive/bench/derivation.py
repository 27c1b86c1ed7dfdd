"""How long deriving takes as a network gets deeper, and what SymPy's own ``diff`` gives instead.

Run ``python -m derive.derivation_bench`` (or ``derive bench --derivation``). For an L-layer MLP with
symbolic dims (``X W_k + 1 b_k``, sigmoid between layers, mean squared error) it measures, in one
process and side by side:

* building the loss with SymPy's operators (what a user's script does; each ``*`` and ``+`` calls
  ``doit`` on the whole tree, so this grows quadratically),
* building the same tree with the raw constructors (the least the tree can cost),
* ``derive.gradients`` plus every closed form ``g[W]``, with its built-in numeric check of every
  closed form (the default) and without it (``check=False``),

and prints the ratios. It then asks SymPy 1.14's ``MatrixExpr.diff`` for the same gradients, on the
same network written with SymPy's own elementwise functions, and prints what comes back.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

from sympy import (
    Lambda,
    MatAdd,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    Symbol,
    Trace,
    exp,
)
from sympy import log as sympy_log
from sympy.core.cache import clear_cache
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from ..core.activations import sigmoid
from ..core.derivation import gradients
from ..core.losses import bce, mse

N, H = Symbol("N", integer=True, positive=True), Symbol("H", integer=True, positive=True)
DEPTHS = (1, 2, 4, 8, 16, 32, 64)


def layers(depth: int):
    X, Y = MatrixSymbol("X", N, H), MatrixSymbol("Y", N, H)
    Ws = [MatrixSymbol(f"W{k}", H, H) for k in range(1, depth + 1)]
    bs = [MatrixSymbol(f"b{k}", 1, H) for k in range(1, depth + 1)]
    return X, Y, Ws, bs


def build_with_operators(depth: int):
    X, Y, Ws, bs = layers(depth)
    A = X
    for k, (W, b) in enumerate(zip(Ws, bs)):
        Z = A * W + OneMatrix(N, 1) * b
        A = sigmoid(Z) if k < depth - 1 else Z
    return mse(A, Y), Ws + bs


def build_raw(depth: int):
    X, Y, Ws, bs = layers(depth)
    A = X
    for k, (W, b) in enumerate(zip(Ws, bs)):
        Z = MatAdd(MatMul(A, W), MatMul(OneMatrix(N, 1), b))
        A = sigmoid(Z) if k < depth - 1 else Z
    return mse(A, Y), Ws + bs


def derive_all(loss, params, check: bool = True):
    g = gradients(loss, params, check=check)
    return [g[p] for p in params]


def median_time(fn: Callable, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        # Every run starts from a cold SymPy cache: a warm one flatters small networks, whose whole
        # construction fits in it, and so hides how the cost grows.
        clear_cache()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed_table(depths=DEPTHS, repeats: int = 5) -> list[dict]:
    rows = []
    for depth in depths:
        loss, params = build_raw(depth)
        rows.append({
            "L": depth,
            "build_operators_s": median_time(partial(build_with_operators, depth), max(1, repeats // 2)),
            "build_raw_s": median_time(partial(build_raw, depth), repeats),
            "derive_s": median_time(partial(derive_all, loss, params), repeats),
            "derive_unchecked_s": median_time(partial(derive_all, loss, params, check=False), repeats),
        })
    return rows


# --- SymPy's own MatrixExpr.diff on the same networks ----------------------------------------------

def sympy_network(depth: int, loss_kind: str):
    """The MLP with SymPy's ElementwiseApplyFunction for sigmoid and log, and a SymPy-only loss."""
    x = Symbol("x")
    sig = Lambda(x, 1 / (1 + exp(-x)))
    X, Y, Ws, bs = layers(depth)
    A = X
    for k, (W, b) in enumerate(zip(Ws, bs)):
        Z = A * W + OneMatrix(N, 1) * b
        A = ElementwiseApplyFunction(sig, Z) if k < depth - 1 or loss_kind == "bce" else Z
    if loss_kind == "bce":
        log = Lambda(x, sympy_log(x))
        ones = OneMatrix(N, H)
        loss = -Trace(Y.T * ElementwiseApplyFunction(log, A)
                      + (ones - Y).T * ElementwiseApplyFunction(log, ones - A)) / N
    else:
        loss = Trace((A - Y).T * (A - Y)) / N
    return loss, Ws[0]


def sympy_diff_outcome(depth: int, loss_kind: str) -> str:
    loss, W1 = sympy_network(depth, loss_kind)
    try:
        result = loss.diff(W1)
    except Exception as error:  # noqa: BLE001 - SymPy's failures are what this column reports
        return f"raises {type(error).__name__}: {str(error)[:60]}"
    text = str(result)
    return "0 (wrong)" if result == 0 else (text[:70] + ("..." if len(text) > 70 else ""))


def derive_outcome(depth: int, loss_kind: str) -> str:
    X, Y, Ws, bs = layers(depth)
    A = X
    for k, (W, b) in enumerate(zip(Ws, bs)):
        Z = A * W + OneMatrix(N, 1) * b
        A = sigmoid(Z) if k < depth - 1 or loss_kind == "bce" else Z
    loss = bce(A, Y) if loss_kind == "bce" else mse(A, Y)
    g = gradients(loss, [Ws[0]])
    text = str(g.compact(Ws[0]))
    return text[:70]


def report(rows: list[dict]) -> str:
    header = ("| L | build (operators) s | build (raw) s | derive + closed forms, checked s | the same, check=False s | "
              "derive / operators | derive / raw |")
    lines = [header, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['L']} | {r['build_operators_s']:.4f} | {r['build_raw_s']:.4f} | {r['derive_s']:.4f} | "
                     f"{r['derive_unchecked_s']:.4f} | {r['derive_s'] / r['build_operators_s']:.2f} | "
                     f"{r['derive_s'] / r['build_raw_s']:.2f} |")
    by_depth = {r["L"]: r for r in rows}
    if 8 in by_depth and 64 in by_depth:
        checked, unchecked = by_depth[64]["derive_s"], by_depth[64]["derive_unchecked_s"]
        lines.append(f"\ngrowth t(64) / t(8) = {checked / by_depth[8]['derive_s']:.2f} (target < 10); "
                     f"t(64) = {checked:.3f} s with the numeric check (target < 0.5 s), {unchecked:.3f} s without")
    return "\n".join(lines)


def comparison() -> str:
    lines = ["| network | SymPy MatrixExpr.diff | derive |", "|---|---|---|"]
    for depth, kind in ((1, "bce"), (1, "mse"), (2, "mse"), (3, "mse")):
        label = f"{depth} layer(s), {'mean BCE' if kind == 'bce' else 'MSE'}"
        lines.append(f"| {label} | {sympy_diff_outcome(depth, kind)} | {derive_outcome(depth, kind)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (median)")
    parser.add_argument("--max-depth", type=int, default=64)
    args = parser.parse_args(argv)
    print(full_report(args.repeats, args.max_depth))
    return 0


def full_report(repeats: int = 5, max_depth: int = 64) -> str:
    """Both tables as markdown: derivation time against depth, and SymPy's diff beside derive."""
    depths = [d for d in DEPTHS if d <= max_depth]
    return "\n".join([
        f"## Derivation time against depth (sigmoid MLP, symbolic dims, median of {repeats} cold runs)\n",
        report(speed_table(depths, repeats)),
        "\n## SymPy's own MatrixExpr.diff on the same networks (gradient with respect to W1)\n",
        comparison(),
    ])


if __name__ == "__main__":
    raise SystemExit(main())
