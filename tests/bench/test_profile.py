"""derive.step_profile: every statement of the generated step timed, nothing else changed."""

from __future__ import annotations

import ast

import numpy as np
import pytest

from derive.bench import step as bench
from derive.bench.profile import StatementTime, profile_markdown, profile_step
from derive.examples import get
from derive.render.module import load_module, to_numpy

TINY = bench.BenchConfig(n=32, widths=(6, 5, 5, 3))


@pytest.fixture(scope="module", params=["relu", "gelu"])
def profiled(request):
    source = to_numpy(get(f"mlp3_{request.param}").derive(), request.param)
    params, batch = bench._data(TINY, "float64")
    seen = {}
    rows = profile_step(source, params, batch, repeats=3, configure=lambda namespace: seen.update(namespace))
    return source, rows, seen, params, batch


def _body(source: str, name: str) -> list[str]:
    function = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == name)
    return [ast.unparse(s) for s in function.body if not isinstance(s, ast.Return)]


def test_every_statement_of_forward_and_backward_is_timed_in_order(profiled):
    source, rows, _, _, _ = profiled
    assert [r.code for r in rows if r.function == "forward"] == _body(source, "forward")
    assert [r.code for r in rows if r.function == "backward"] == _body(source, "backward")
    assert all(r.seconds > 0 for r in rows)
    assert sum(r.products for r in rows) == 3 * 3 - 1  # the products the structure test counts


def test_the_instrumented_module_computes_what_the_module_does(profiled):
    source, _, namespace, params, batch = profiled
    loss, grads = namespace["loss_and_grads"](params, batch)
    plain_loss, plain_grads = load_module(source).loss_and_grads(params, batch)
    assert loss == plain_loss
    for key, grad in plain_grads.items():
        np.testing.assert_array_equal(grads[key], grad)


def test_markdown_lists_the_slow_statements_and_the_split():
    rows = [StatementTime("forward", "Z = X @ W", 0.030, 1), StatementTime("forward", "H = gelu(Z)", 0.010, 0),
            StatementTime("backward", "db = dZ.sum(axis=0, keepdims=True)", 0.0001, 0)]
    text = profile_markdown("gelu float32", rows, floor_s=0.025)
    assert "matrix products 30.0 ms, everything else 10.1 ms; the floor's products alone 25.0 ms" in text
    table = [line for line in text.splitlines() if line.startswith("| `")]
    assert table == ["| `Z = X @ W` | forward | 30.0 | 75% |", "| `H = gelu(Z)` | forward | 10.0 | 25% |"]
