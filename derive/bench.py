"""``derive bench``: the generated NumPy step against PyTorch eager autograd and the matmul floor.

One process measures, side by side and with the same thread count, for a 3-layer MLP with softmax
cross-entropy (the built-in ``mlp3_<activation>`` examples):

* ``derive``: ``loss_and_grads`` of the module :func:`derive.codegen.to_numpy` generates;
* ``torch``: the same network in PyTorch eager mode, forward then ``loss.backward()``;
* ``floor``: the step's matrix products alone (3 forward, 5 backward), NumPy with preallocated
  ``out=`` buffers: no step that computes these gradients in closed form can be faster.

Each timing is the median of ``repeats`` runs after ``warmup`` runs, the three steps taking turns
(one run of each per round) so that other load on the machine affects their ratios as little as it can. Peak memory of the generated
step is measured with tracemalloc (NumPy reports its buffers to it) next to the size of the cached
activations. Results go to ``results.md`` and ``results.json`` (and ``results.png`` when matplotlib
is installed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .codegen import load_module, to_numpy
from .errors import DeriveError
from .examples import get

__all__ = ["BenchConfig", "add_bench_arguments", "main_bench", "run_bench"]

# Targets from the brief: the generated step against torch eager and against the matmul floor.
TARGET_VS_TORCH = 1.0
TARGET_VS_FLOOR = 1.15


@dataclass(frozen=True)
class BenchConfig:
    n: int = 4096
    widths: tuple[int, int, int, int] = (1024, 1024, 1024, 10)   # D, H, H, C
    activations: tuple[str, ...] = ("relu", "gelu")
    dtypes: tuple[str, ...] = ("float32", "float64")
    repeats: int = 7
    warmup: int = 1
    threads: int = 0                                                # 0: the BLAS default (all cores)
    out: str = "output/bench"
    torch: bool = True


QUICK = {"n": 512, "widths": (256, 256, 256, 10), "repeats": 7, "warmup": 1}


def interleaved_medians(steps: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Run times of each step, taken in turns (one run of each per round) so that a change in the
    machine's load during the measurement affects every step alike; ``warmup`` untimed rounds first."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


def _data(config: BenchConfig, dtype: str, seed: int = 0):
    d, h, _, c = config.widths
    rng = np.random.default_rng(seed)
    shapes = {"W1": (d, h), "b1": (1, h), "W2": (h, h), "b2": (1, h), "W3": (h, c), "b3": (1, c)}
    params = {k: (rng.standard_normal(s) / np.sqrt(s[0])).astype(dtype) for k, s in shapes.items()}
    batch = {"X": rng.standard_normal((config.n, d)).astype(dtype),
             "Y": np.eye(c, dtype=dtype)[rng.integers(0, c, size=config.n)]}
    return params, batch


def floor_step(params: dict, batch: dict) -> Callable[[], None]:
    """The eight matrix products of one step, into preallocated buffers (nothing else)."""
    X, W1, W2, W3 = batch["X"], params["W1"], params["W2"], params["W3"]
    n, h, c = X.shape[0], W1.shape[1], W3.shape[1]
    dtype = X.dtype
    Z1, Z2, S = np.empty((n, h), dtype), np.empty((n, h), dtype), np.empty((n, c), dtype)
    dS, dH2, dH1 = np.ones((n, c), dtype), np.empty((n, h), dtype), np.empty((n, h), dtype)
    dW1, dW2, dW3 = np.empty_like(W1), np.empty_like(W2), np.empty_like(W3)

    def step():
        np.matmul(X, W1, out=Z1)
        np.matmul(Z1, W2, out=Z2)
        np.matmul(Z2, W3, out=S)
        np.matmul(Z2.T, dS, out=dW3)
        np.matmul(dS, W3.T, out=dH2)
        np.matmul(Z1.T, dH2, out=dW2)
        np.matmul(dH2, W2.T, out=dH1)
        np.matmul(X.T, dH1, out=dW1)
    return step


def torch_step(params: dict, batch: dict, activation: str):
    """The same network in PyTorch eager mode (forward, loss, backward), on the same arrays."""
    import torch
    import torch.nn.functional as F

    act = {"relu": torch.relu, "gelu": F.gelu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "silu": F.silu}[activation]
    weights = {k: torch.from_numpy(v).requires_grad_() for k, v in params.items()}
    X, Y = torch.from_numpy(batch["X"]), torch.from_numpy(batch["Y"])

    def step():
        for w in weights.values():
            w.grad = None
        h1 = act(X @ weights["W1"] + weights["b1"])
        h2 = act(h1 @ weights["W2"] + weights["b2"])
        s = h2 @ weights["W3"] + weights["b3"]
        loss = -(Y * torch.log_softmax(s, dim=1)).sum() / X.shape[0]
        loss.backward()
        return loss
    return step


def peak_memory(step: Callable[[], object]) -> int:
    """Bytes allocated at the peak of one call, above what was allocated before it."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


def _threads(config: BenchConfig) -> int:
    if config.threads:
        return config.threads
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return os.cpu_count() or 1


def run_bench(config: BenchConfig = BenchConfig(), log: Callable[[str], None] = print) -> dict:
    """Measure every (activation, dtype); write results.md/.json (and .png) under ``config.out``."""
    threads = _threads(config)
    torch_version = None
    if config.torch:
        try:
            import torch
            torch.set_num_threads(threads)
            torch_version = torch.__version__
        except ImportError:
            log("torch is not installed: measuring derive and the floor only")
    rows = []
    load_before = os.getloadavg()[0]
    modules = {a: load_module(to_numpy(get(f"mlp3_{a}").derive(), f"mlp3_{a}"), f"mlp3_{a}")
               for a in config.activations}
    for dtype in config.dtypes:
        params, batch = _data(config, dtype)
        for activation in config.activations:
            module = modules[activation]

            def step(module=module, params=params, batch=batch):
                return module.loss_and_grads(params, batch)

            steps = {"floor": floor_step(params, batch), "derive": step}
            if torch_version:
                steps["torch"] = torch_step(params, batch, activation)
            times = interleaved_medians(steps, config.repeats, config.warmup)
            median = {name: statistics.median(runs) for name, runs in times.items()}
            best = {name: min(runs) for name, runs in times.items()}
            loss, grads = step()
            _, cache = module.forward(params, batch)
            inputs = [*params.values(), *batch.values()]
            cached = sum(v.nbytes for v in cache.values()
                         if isinstance(v, np.ndarray) and not any(v is a for a in inputs))
            row = {
                "activation": activation, "dtype": dtype, "derive_s": median["derive"],
                "torch_s": median.get("torch"), "floor_s": median["floor"],
                "derive_over_floor": median["derive"] / median["floor"],
                "derive_over_torch": median["derive"] / median["torch"] if "torch" in median else None,
                "best_derive_over_floor": best["derive"] / best["floor"],
                "best_derive_over_torch": best["derive"] / best["torch"] if "torch" in best else None,
                "peak_bytes": peak_memory(step), "cached_bytes": cached,
                "dtype_out": str(grads["W1"].dtype), "loss": float(loss), "runs_s": times,
            }
            rows.append(row)
            log(_row_text(row))
    results = {
        "config": asdict(config), "threads": threads, "numpy": np.__version__, "torch": torch_version,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpus": os.cpu_count(),
        "load_average": [load_before, os.getloadavg()[0]],
        "targets": {"derive_over_torch": TARGET_VS_TORCH, "derive_over_floor": TARGET_VS_FLOOR}, "rows": rows,
    }
    write_results(results, Path(config.out))
    return results


def _row_text(row: dict) -> str:
    torch_part = (f"torch {row['torch_s'] * 1e3:8.1f} ms  derive/torch {row['derive_over_torch']:.2f}  "
                  if row["torch_s"] else "")
    return (f"{row['activation']:>5} {row['dtype']}: derive {row['derive_s'] * 1e3:8.1f} ms  {torch_part}"
            f"floor {row['floor_s'] * 1e3:8.1f} ms  derive/floor {row['derive_over_floor']:.2f}  "
            f"peak {row['peak_bytes'] / 2**20:.0f} MiB (cache {row['cached_bytes'] / 2**20:.0f} MiB)")


def results_markdown(results: dict) -> str:
    config = results["config"]
    d, h, _, c = config["widths"]
    lines = [
        "<!-- Generated by derive bench. Do not edit: re-run `derive bench` to regenerate. -->",
        "# derive bench: generated NumPy step vs PyTorch eager vs the matmul floor",
        "",
        (f"MLP {d}-{h}-{h}-{c}, N = {config['n']}, softmax cross-entropy; median of {config['repeats']} runs "
         f"after {config['warmup']} warm-up, the three steps taking turns; {results['threads']} threads for both NumPy and torch; "
         f"numpy {results['numpy']}, torch {results['torch']}, {results['cpus']} CPUs."),
        "",
        (f"Load average (1 min) {results['load_average'][0]:.2f} before, {results['load_average'][1]:.2f} after: "
         "above the number of CPUs, other processes shared the cores and the times are noisy; the ratios, "
         "measured in turns, suffer less."),
        "",
        ("| activation | dtype | derive (ms) | torch eager (ms) | floor (ms) | derive/torch | derive/floor "
         "| best runs: derive/torch | best runs: derive/floor | peak memory (MiB) | cached activations (MiB) |"),
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results["rows"]:
        torch_ms = f"{r['torch_s'] * 1e3:.1f}" if r["torch_s"] else "-"
        ratio = f"{r['derive_over_torch']:.2f}" if r["derive_over_torch"] else "-"
        best_ratio = f"{r['best_derive_over_torch']:.2f}" if r["best_derive_over_torch"] else "-"
        lines.append(f"| {r['activation']} | {r['dtype']} | {r['derive_s'] * 1e3:.1f} | {torch_ms} | "
                     f"{r['floor_s'] * 1e3:.1f} | {ratio} | {r['derive_over_floor']:.2f} | {best_ratio} | "
                     f"{r['best_derive_over_floor']:.2f} | "
                     f"{r['peak_bytes'] / 2**20:.1f} | {r['cached_bytes'] / 2**20:.1f} |")
    targets = results["targets"]
    missed = [r for r in results["rows"] if r["derive_over_floor"] > targets["derive_over_floor"]
              or (r["derive_over_torch"] or 0) > targets["derive_over_torch"]]
    lines += ["", f"Targets: derive/torch <= {targets['derive_over_torch']}, derive/floor <= "
              f"{targets['derive_over_floor']}. " + ("All met." if not missed else
              "Missed: " + "; ".join(f"{r['activation']} {r['dtype']} (derive/torch "
                                     f"{r['derive_over_torch'] or float('nan'):.2f}, derive/floor "
                                     f"{r['derive_over_floor']:.2f})" for r in missed) + ".")]
    return "\n".join(lines) + "\n"


def write_results(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(results_markdown(results))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = results["rows"]
    labels = [f"{r['activation']}\n{r['dtype']}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, (key, name) in enumerate((("floor_s", "matmul floor"), ("derive_s", "derive"), ("torch_s", "torch eager"))):
        ax.bar(x + (k - 1) * 0.27, [(r[key] or 0) * 1e3 for r in rows], 0.27, label=name)
    ax.set_xticks(x, labels)
    ax.set_ylabel("ms per step (median)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=120)
    plt.close(fig)


# --- the command line hook (derive.cli adds the subcommand) ----------------------------------------

def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes (N=512, widths 256) for a fast check")
    parser.add_argument("--n", type=int, help="batch size (default 4096)")
    parser.add_argument("--widths", type=int, nargs=4, metavar=("D", "H1", "H2", "C"),
                        help="layer widths (default 1024 1024 1024 10)")
    parser.add_argument("--activations", nargs="+", choices=["relu", "gelu", "sigmoid", "tanh", "silu"],
                        help="activations to measure (default relu gelu)")
    parser.add_argument("--dtypes", nargs="+", choices=["float32", "float64"], help="default: both")
    parser.add_argument("--repeats", type=int, help="timed runs per measurement, median taken (default 7)")
    parser.add_argument("--threads", type=int, default=0, help="threads for torch (default: NumPy's BLAS default)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--out", help="directory for results.md/.json/.png (default: OUTPUT_DIR/bench, "
                        "with derive's --output-dir, else output/bench)")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    values = dict(QUICK) if args.quick else {}
    for key in ("n", "widths", "activations", "dtypes", "repeats"):
        value = getattr(args, key, None)
        if value is not None:
            values[key] = tuple(value) if isinstance(value, list) else value
    if values.get("repeats", 7) < 1 or values.get("n", 1) < 1:
        raise DeriveError("--repeats and --n must be positive")
    out = args.out or str(Path(getattr(args, "output_dir", None) or "output") / "bench")
    return BenchConfig(**values, threads=args.threads, out=out, torch=not args.no_torch)


def main_bench(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    results = run_bench(config)
    print(f"wrote {Path(config.out) / 'results.md'} and results.json")
    return 0 if results["rows"] else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="derive bench", description=__doc__.splitlines()[0])
    add_bench_arguments(parser)
    raise SystemExit(main_bench(parser.parse_args()))
