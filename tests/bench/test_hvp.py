"""derive bench --hvp at tiny sizes: every configuration measured and written, the contenders'
HVPs (torch.func's jvp of grad, JAX's jvp of grad) computing what the generated one does, and the
bench's torch HVP itself against finite differences of torch autograd's gradient."""

import json

import numpy as np
import pytest

from derive.bench import hvp as bench_hvp
from derive.bench import step as bench

TINY = {"n": 16, "widths": (5, 4, 4, 3), "repeats": 2, "warmup": 0}


def test_every_configuration_is_measured_and_reported(tmp_path):
    config = bench.BenchConfig(**TINY, activations=("relu",), dtypes=("float32", "float64"), out=str(tmp_path))
    results = bench_hvp.run_hvp_bench(config, log=lambda line: None)
    assert [(r["activation"], r["dtype"]) for r in results["rows"]] == [("relu", "float32"), ("relu", "float64")]
    for row in results["rows"]:
        assert row["hvp_over_step"]["min"] <= row["hvp_over_step"]["median"] <= row["hvp_over_step"]["max"]
        assert all(len(runs) == 2 for runs in row["runs_s"].values())
        tolerance = 1e-4 if row["dtype"] == "float32" else 1e-10
        assert row["dtype_out"] == row["dtype"]
        assert all(difference < tolerance for difference in row["difference"].values()), row["difference"]
        reused = row["workspace"]
        assert reused["hvp_over_step"]["min"] <= reused["hvp_over_step"]["median"] <= reused["hvp_over_step"]["max"]
        assert all(difference < tolerance for difference in reused["difference"].values()), reused["difference"]
        assert set(reused["difference"]) == set(row["difference"])
    written = (tmp_path / "hvp.md").read_text()
    assert "| relu | float64 |" in written and "Targets: hvp <= 2.5 x the generated step" in written
    assert "| relu, workspace | float64 |" in written
    assert json.loads((tmp_path / "hvp.json").read_text())["rows"][0]["activation"] == "relu"


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_the_torch_hvp_is_forward_over_reverse_of_autograds_gradient(activation):
    pytest.importorskip("torch")
    params, batch = bench._data(bench.BenchConfig(**TINY), "float64")
    directions = bench_hvp._directions(params)
    products = bench_hvp.torch_hvp(params, batch, directions, activation)()
    h = 1e-6

    def grads(t):
        moved = {k: v + t * directions[k] for k, v in params.items()}
        return {k: g.detach().numpy().copy() for k, g in bench.torch_step(moved, batch, activation)()[1].items()}

    up, down = grads(h), grads(-h)
    for k in params:
        numeric = (up[k] - down[k]) / (2 * h)
        assert np.allclose(products[k].numpy(), numeric, rtol=1e-5, atol=1e-7), k


def test_derive_bench_hvp_measures_in_a_child_started_with_the_thread_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("DERIVE_BENCH_ISOLATED", raising=False)
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "7")  # this process's own: the child's are the bench's
    config = bench.BenchConfig(**TINY, activations=("relu",), dtypes=("float64",), out=str(tmp_path),
                               torch=False, jax=False)
    assert bench_hvp.main_hvp(config)
    found = json.loads((tmp_path / "hvp.json").read_text())
    settings = found["threads_in_effect"]
    assert settings["isolated"] and settings["environment"]["OPENBLAS_THREAD_TIMEOUT"] == "1"
    assert settings["environment"]["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "idle threads sleep at once" in (tmp_path / "hvp.md").read_text()
