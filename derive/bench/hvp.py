"""``derive bench --hvp``: the generated NumPy Hessian-vector product against ``torch.func`` and JAX.

On the bench MLP (:class:`~derive.bench.step.BenchConfig`: the built-in ``mlp3_<activation>``, softmax
cross-entropy) one process times, taking turns (one run of each per round):

* ``hvp``: ``hvp(params, batch, directions)`` of the module ``to_numpy(g, name, hvp=True)`` generates,
  every parameter moving;
* ``step``: ``loss_and_grads`` of the same module, one generated gradient step;
* ``hvp, workspace`` and ``step, workspace``: both again from the module ``to_numpy(g, name, hvp=True,
  workspace=True)`` generates, each given a ``Workspace`` of its own, so each call writes into the
  previous call's arrays (Newton-CG calls hvp many times at one point); their ratio is its own row;
* ``torch``: ``torch.func.jvp(torch.func.grad(loss))`` of the network written in PyTorch;
* ``jax``: ``jax.jit`` of ``jax.jvp(jax.grad(loss))``, when JAX is installed (compiled first).

Like ``derive bench``, it measures in a child process started with the thread settings, alike for
every contender (:func:`~derive.bench.threads.run_isolated`): idle BLAS threads spin after each product
otherwise, and the HVP, which runs twice the products of a step, takes the most from that.

A ratio is taken run by run (the HVP and the step of one round, measured next to each other): its
median and its range over the rounds are reported. Before timing, the three HVPs are compared with each
other (their largest relative difference is reported). Results go to ``hvp.md`` and ``hvp.json``.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np

from ..core.elementwise import activations
from ..examples import get
from ..render.module import load_module, to_numpy
from .step import BenchConfig, _data, _jax_version, config_from_json, interleaved_medians
from .threads import CHILD, blas_threads, describe, in_effect, run_isolated, thread_count

__all__ = ["TARGET_VS_STEP", "TARGET_VS_TORCH", "hvp_markdown", "main_hvp", "run_hvp_bench"]

# Targets from the issue: Pearlmutter's bound is a small constant times the gradient's cost.
TARGET_VS_STEP = 2.5
TARGET_VS_TORCH = 1.0


def _directions(params: dict, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(v.shape) / np.sqrt(v.shape[0])).astype(v.dtype) for k, v in params.items()}


def _network(act, X, Y, matmul_softmax):
    """The bench MLP's loss of a dict of weights, in whichever array library ``act`` belongs to."""
    def loss(w):
        h1 = act(X @ w["W1"] + w["b1"])
        h2 = act(h1 @ w["W2"] + w["b2"])
        return -(Y * matmul_softmax(h2 @ w["W3"] + w["b3"])).sum() / X.shape[0]
    return loss


def torch_hvp(params: dict, batch: dict, directions: dict, activation: str) -> Callable[[], dict]:
    """``torch.func.jvp`` of ``torch.func.grad`` of the network in PyTorch: forward over reverse."""
    import torch
    from torch.func import grad, jvp

    act = activations()[activation].record.torch(torch)
    X, Y = torch.from_numpy(batch["X"]), torch.from_numpy(batch["Y"])
    loss = _network(act, X, Y, lambda s: torch.log_softmax(s, dim=1))
    at = {k: torch.from_numpy(v) for k, v in params.items()}
    along = {k: torch.from_numpy(v) for k, v in directions.items()}
    return lambda: jvp(grad(loss), (at,), (along,))[1]


def jax_hvp(params: dict, batch: dict, directions: dict, activation: str) -> Callable[[], dict]:
    """``jax.jit`` of ``jax.jvp(jax.grad(loss))``, compiled before it is returned."""
    import jax
    import jax.numpy as jnp

    act = activations()[activation].record.jax(jax)

    def product(w, v, X, Y):
        loss = _network(act, X, Y, lambda s: jax.nn.log_softmax(s, axis=1))
        return jax.jvp(jax.grad(loss), (w,), (v,))[1]

    compiled = jax.jit(product)
    arrays = [{k: jnp.asarray(v) for k, v in d.items()} for d in (params, directions)]
    X, Y = jnp.asarray(batch["X"]), jnp.asarray(batch["Y"])

    def run():
        return jax.block_until_ready(compiled(*arrays, X, Y))
    run()
    return run


def _difference(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(np.asarray(a[k], dtype=float) - np.asarray(b[k], dtype=float))))
               / max(float(np.max(np.abs(np.asarray(b[k], dtype=float)))), 1e-30) for k in b)


def _spread(numerator: list[float], denominator: list[float]) -> dict:
    ratios = [a / b for a, b in zip(numerator, denominator)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def main_hvp(config: BenchConfig) -> bool:
    """``derive bench --hvp``: measured in a child process whose libraries load with the thread settings,
    unless this process is that child; True when rows were measured."""
    if os.environ.get(CHILD) == "1":
        return bool(run_hvp_bench(config)["rows"])
    return run_isolated(asdict(config), thread_count(config.threads), module=__name__) == 0


def run_hvp_bench(config: BenchConfig | None = None, log: Callable[[str], None] = print) -> dict:
    """Measure every (activation, dtype) of ``config``; write hvp.md and hvp.json under ``config.out``."""
    config = config or BenchConfig()
    threads = thread_count(config.threads)
    with blas_threads(config.threads):
        return _run(config, threads, log)


def _run(config: BenchConfig, threads: int, log) -> dict:
    torch_version = None
    if config.torch:
        try:
            import torch
            torch.set_num_threads(threads)
            torch_version = torch.__version__
        except ImportError:
            log("torch is not installed: measuring derive only")
    jax_version = _jax_version(threads, log) if config.jax else None
    modules = {}
    for a in config.activations:
        g = get(f"mlp3_{a}").derive()
        modules[a] = tuple(load_module(to_numpy(g, f"mlp3_{a}", hvp=True, workspace=reuse), f"mlp3_{a}{tag}")
                           for reuse, tag in ((False, ""), (True, " workspace")))
    load_before, rows = os.getloadavg()[0], []
    for dtype in config.dtypes:
        params, batch = _data(config, dtype)
        directions = _directions(params)
        for activation, (module, reusing) in modules.items():
            module.THREADS = reusing.THREADS = threads
            steps = {"hvp": partial(module.hvp, params, batch, directions),
                     "step": partial(module.loss_and_grads, params, batch),
                     "hvp_ws": partial(reusing.hvp, params, batch, directions, workspace=reusing.Workspace()),
                     "step_ws": partial(reusing.loss_and_grads, params, batch, workspace=reusing.Workspace())}
            if torch_version:
                steps["torch"] = torch_hvp(params, batch, directions, activation)
            if jax_version:
                steps["jax"] = jax_hvp(params, batch, directions, activation)
            theirs = {name: steps[name]() for name in ("torch", "jax") if name in steps}
            ours = steps["hvp"]()
            agreement = {name: _difference(ours, products) for name, products in theirs.items()}
            steps["hvp_ws"]()   # the workspace's arrays made: the next call writes into them
            reused_products = steps["hvp_ws"]()
            reused = {name: _difference(reused_products, products) for name, products in theirs.items()}
            times = interleaved_medians(steps, config.repeats, config.warmup)
            row = {"activation": activation, "dtype": dtype, "dtype_out": str(ours["W1"].dtype),
                   **{f"{name}_s": statistics.median(runs) for name, runs in times.items()},
                   "hvp_over_step": _spread(times["hvp"], times["step"]),
                   **{f"hvp_over_{name}": _spread(times["hvp"], times[name]) for name in ("torch", "jax") if name in times},
                   "workspace": {"hvp_s": statistics.median(times["hvp_ws"]), "step_s": statistics.median(times["step_ws"]),
                                 "hvp_over_step": _spread(times["hvp_ws"], times["step_ws"]), "difference": reused,
                                 **{f"hvp_over_{name}": _spread(times["hvp_ws"], times[name])
                                    for name in ("torch", "jax") if name in times}},
                   "difference": agreement, "runs_s": times}
            rows.append(row)
            log(_row_text(row))
            log(_row_text({**row, **row["workspace"], "activation": f"{activation}, workspace"}))
    results = {"config": asdict(config), "threads": threads, "numpy": np.__version__, "torch": torch_version,
               "jax": jax_version, "cpus": os.cpu_count(), "load_average": [load_before, os.getloadavg()[0]],
               "threads_in_effect": in_effect(threads, torch_version, jax_version),
               "targets": {"hvp_over_step": TARGET_VS_STEP, "hvp_over_torch": TARGET_VS_TORCH}, "rows": rows}
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hvp.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "hvp.md").write_text(hvp_markdown(results))
    return results


def _row_text(row: dict) -> str:
    others = "".join(f"{name} {row[f'{name}_s'] * 1e3:.1f} ms  " for name in ("torch", "jax") if f"{name}_s" in row)
    return (f"{row['activation']:>5} {row['dtype']}: hvp {row['hvp_s'] * 1e3:.1f} ms  step {row['step_s'] * 1e3:.1f} "
            f"ms  {others}hvp/step {row['hvp_over_step']['median']:.2f}")


def _spread_text(spread: dict | None) -> str:
    return "-" if spread is None else f"{spread['median']:.2f} ({spread['min']:.2f}-{spread['max']:.2f})"


def hvp_markdown(results: dict) -> str:
    config, load = results["config"], results["load_average"]
    d, h, _, c = config["widths"]
    lines = [
        "<!-- Generated by derive bench --hvp. Do not edit: re-run `derive bench --hvp` to regenerate. -->",
        "# derive bench --hvp: the generated Hessian-vector product",
        "",
        (f"MLP {d}-{h}-{h}-{c}, N = {config['n']}, softmax cross-entropy, every parameter moving; median of "
         f"{config['repeats']} runs after {config['warmup']} warm-up, the contenders taking turns; ratios taken "
         f"run by run, median (min-max); {results['threads']} threads; numpy {results['numpy']}, torch "
         f"{results['torch'] or 'not measured'}, jax {results.get('jax') or 'not measured'}, {results['cpus']} CPUs; "
         f"load average {load[0]:.2f} before."),
        "",
        *([describe(results["threads_in_effect"]), ""] if "threads_in_effect" in results else []),
        ("| activation | dtype | derive hvp (ms) | generated step (ms) | torch.func (ms) | jax (ms) | hvp / step "
         "| hvp / torch.func | hvp / jax | largest difference from torch, jax |"),
        "| --- | --- |" + " ---: |" * 8,
    ]
    rows = list(_labelled(results["rows"]))
    for r in rows:
        differences = ", ".join(f"{v:.1e}" for v in r["difference"].values()) or "-"
        lines.append(f"| {r['activation']} | {r['dtype']} | {r['hvp_s'] * 1e3:.1f} | {r['step_s'] * 1e3:.1f} "
                     f"| {_ms(r.get('torch_s'))} | {_ms(r.get('jax_s'))} | {_spread_text(r['hvp_over_step'])} "
                     f"| {_spread_text(r.get('hvp_over_torch'))} | {_spread_text(r.get('hvp_over_jax'))} | {differences} |")
    targets = results["targets"]
    missed = [f"{r['activation']} {r['dtype']} ({name} {r[key]['median']:.2f} > {targets[key]})"
              for r in rows for name, key in (("hvp/step", "hvp_over_step"), ("hvp/torch.func", "hvp_over_torch"))
              if r.get(key) and r[key]["median"] > targets[key]]
    lines += ["", ("The workspace rows: the hvp and the step of the module generated with `workspace=True`, each given "
                   "a `Workspace` of its own (each call writes into the previous call's arrays), in the same rounds; "
                   "their hvp / step is the workspace hvp over the workspace step.")] if len(rows) > len(results["rows"]) else []
    lines += ["", f"Targets: hvp <= {targets['hvp_over_step']} x the generated step, <= {targets['hvp_over_torch']} x "
              "torch.func's. " + ("All met." if not missed else "Missed: " + "; ".join(missed) + ".")]
    return "\n".join(lines) + "\n"


def _labelled(rows: list[dict]):
    """Each row, then (when measured) its workspace row, labelled "<activation>, workspace"."""
    for row in rows:
        yield row
        if row.get("workspace"):
            yield {**row, **row["workspace"], "activation": f"{row['activation']}, workspace"}


def _ms(seconds: float | None) -> str:
    return f"{seconds * 1e3:.1f}" if seconds else "-"


if __name__ == "__main__":  # the child process of main_hvp
    import sys
    if sys.argv[1:2] != ["--isolated-config"]:
        raise SystemExit("run as: derive bench --hvp")
    raise SystemExit(0 if main_hvp(config_from_json(sys.argv[2])) else 1)
