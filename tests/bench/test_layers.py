"""derive bench --layers at tiny sizes: every layer measured, its gradients checked against eager
autograd first, and the saved-tensor memory counted from autograd's own hooks."""

import ast

import pytest

from derive.bench.layers import layers_markdown, profile_report, run_layers, saved_bytes

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def rows():
    return run_layers(n=32, width=16, repeats=1, warmup=0, compile_=False, log=lambda _: None, profile="all")


def test_every_layer_is_measured_and_checked(rows):
    assert [r["layer"] for r in rows] == ["layer_gelu_dense", "layer_norm", "layer_attention_head",
                                          "layer_gated_unit", "layer_residual_mlp"]
    assert all(r["derive_s"] > 0 and r["eager_s"] > 0 and r["derive_saved"] > 0 for r in rows)
    table = layers_markdown(rows)
    assert table.count("\n| layer_") == 5 and "Targets missed:" in table


def test_the_profile_times_every_statement_and_eagers_kernels(rows):
    from derive.bench.layers import _builders
    from derive.render.frameworks import to_torch

    report = profile_report(rows, threshold=0)
    for row in rows:
        source = to_torch(_builders(16)[row["layer"]]().derive(), row["layer"], verify=False)
        functions = {f.name: f for f in ast.parse(source).body if isinstance(f, ast.FunctionDef)}
        written = [ast.unparse(s) for name in ("_forward", "_backward") for s in functions[name].body
                   if not isinstance(s, ast.Return)]
        assert [t["code"] for t in row["profile"]] == written
        assert all(t["seconds"] >= 0 for t in row["profile"]) and sum(t["seconds"] for t in row["profile"]) > 0
        # eager's own kernels beside them: matrix products where the layer has them
        kernels = [key for key, _, _ in row["eager_kernels"]]
        assert kernels and (row["layer"] == "layer_norm" or "aten::mm" in kernels)
        assert f"### {row['layer']}: derive " in report
    assert report.count("Eager autograd's kernels") == 5


def test_saved_bytes_counts_each_storage_once():
    x = torch.randn(8, 4, requires_grad=True)
    w = torch.randn(4, 4, requires_grad=True)
    # x @ w saves x and w (4 bytes each entry); (x @ w) * x saves x again and the product
    assert saved_bytes(torch, lambda: x @ w) == (8 * 4 + 4 * 4) * 4
    assert saved_bytes(torch, lambda: (x @ w) * x) == (8 * 4 + 4 * 4 + 8 * 4) * 4
