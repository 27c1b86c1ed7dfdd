"""derive bench --layers at tiny sizes: every layer measured, its gradients checked against eager
autograd first, and the saved-tensor memory counted from autograd's own hooks."""

import pytest

from derive.bench.layers import layers_markdown, run_layers, saved_bytes

torch = pytest.importorskip("torch")


def test_every_layer_is_measured_and_checked():
    rows = run_layers(n=32, width=16, repeats=1, warmup=0, compile_=False, log=lambda _: None)
    assert [r["layer"] for r in rows] == ["layer_gelu_dense", "layer_norm", "layer_attention_head",
                                          "layer_gated_unit", "layer_residual_mlp"]
    assert all(r["derive_s"] > 0 and r["eager_s"] > 0 and r["derive_saved"] > 0 for r in rows)
    table = layers_markdown(rows)
    assert table.count("\n| layer_") == 5 and "Targets missed:" in table


def test_saved_bytes_counts_each_storage_once():
    x = torch.randn(8, 4, requires_grad=True)
    w = torch.randn(4, 4, requires_grad=True)
    # x @ w saves x and w (4 bytes each entry); (x @ w) * x saves x again and the product
    assert saved_bytes(torch, lambda: x @ w) == (8 * 4 + 4 * 4) * 4
    assert saved_bytes(torch, lambda: (x @ w) * x) == (8 * 4 + 4 * 4 + 8 * 4) * 4
