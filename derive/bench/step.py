"""``derive bench``: the generated NumPy step against PyTorch eager autograd and the matmul floor.

One process measures, side by side and with the same thread count, for a 3-layer MLP with softmax
cross-entropy (the built-in ``mlp3_<activation>`` examples):

* ``derive``: ``loss_and_grads`` of the module :func:`derive.codegen.to_numpy` generates;
* ``torch``: the same network in PyTorch eager mode, forward then ``loss.backward()``;
* ``floor``: the step's matrix products alone (3 forward, 5 backward), NumPy with preallocated
  ``out=`` buffers: no step that computes these gradients in closed form can be faster;
* ``jax``: ``jax.jit(jax.value_and_grad(loss))`` of the same network, when JAX is installed.

Each timing is the median of ``repeats`` runs after ``warmup`` runs, the three steps taking turns
(one run of each per round) so that other load on the machine affects their ratios as little as it
can. Memory is measured with tracemalloc (NumPy reports its buffers to it): the peak of the backward
pass above what it starts with, next to the size of the activations the forward pass caches for it,
and the peak of the whole step. Results go to ``results.md`` and ``results.json`` (and
``results.png`` when matplotlib is installed).
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
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..core.elementwise import activations
from ..errors import DeriveError
from ..examples import get
from ..render.module import load_module, to_numpy
from .profile import StatementTime, profile_markdown, profile_step

__all__ = ["BenchConfig", "add_bench_arguments", "main_bench", "run_bench"]

# Targets from the brief: the generated step against torch eager and against the matmul floor.
TARGET_VS_TORCH = 1.0
TARGET_VS_FLOOR = 1.15
# ... and the backward pass's peak memory against the activations the forward pass caches for it.
TARGET_BACKWARD_OVER_CACHE = 1.5


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
    jax: bool = True                                                # when JAX is installed


# The activations whose records name the PyTorch and JAX functions to compare with (and a built-in mlp3).
BENCHED = [name for name, cls in activations().items() if cls.record.torch and cls.record.jax]

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

    act = activations()[activation].record.torch(torch)
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
        return loss, {k: w.grad for k, w in weights.items()}
    return step


def jax_step(params: dict, batch: dict, activation: str):
    """``jax.jit(jax.value_and_grad(loss))`` of the same network on the same arrays, compiled first."""
    import jax
    import jax.numpy as jnp

    act = activations()[activation].record.jax(jax)

    def loss(w, X, Y):
        h1 = act(X @ w["W1"] + w["b1"])
        h2 = act(h1 @ w["W2"] + w["b2"])
        s = h2 @ w["W3"] + w["b3"]
        return -(Y * jax.nn.log_softmax(s, axis=1)).sum() / X.shape[0]

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    weights = {k: jnp.asarray(v) for k, v in params.items()}
    X, Y = jnp.asarray(batch["X"]), jnp.asarray(batch["Y"])
    if weights["W1"].dtype != params["W1"].dtype:
        raise DeriveError(f"JAX computes in {weights['W1'].dtype}, not {params['W1'].dtype}: "
                          "set JAX_ENABLE_X64=1 for float64")

    def step():
        value, grads = value_and_grad(weights, X, Y)
        return value, jax.block_until_ready(grads)
    step()  # compile outside the timed runs
    return step


def _jax_version(threads: int, log: Callable[[str], None]) -> str | None:
    """JAX's version when it is installed and can run on ``threads`` threads; float64 enabled."""
    try:
        import jax
    except ImportError:
        return None
    if threads != os.cpu_count():
        # XLA's CPU backend takes every core and offers no setting that limits it (its flags for
        # that are gone in recent releases): measured on more threads, it would not be comparable
        log(f"JAX is left out: its CPU backend cannot be held to {threads} of {os.cpu_count()} threads")
        return None
    jax.config.update("jax_enable_x64", True)
    return jax.__version__


@contextmanager
def blas_threads(threads: int):
    """NumPy's BLAS held to ``threads`` threads (with threadpoolctl) while the block runs; 0: as it is
    (every core, or what OPENBLAS_NUM_THREADS and the like say)."""
    limiter = thread_limiter(threads)
    if limiter is None:
        yield
        return
    with limiter(limits=threads, user_api="blas"):
        yield


def thread_limiter(threads: int):
    """threadpoolctl's threadpool_limits, or a DeriveError saying how to install it; None when
    ``threads`` needs no limit (0 or every CPU)."""
    if threads in (0, os.cpu_count()):
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise DeriveError(f"--threads {threads} limits NumPy's BLAS through threadpoolctl, which is not installed: "
                          "pip install -e \".[bench]\"") from None
    return threadpool_limits


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
    with blas_threads(config.threads):
        return _run_bench(config, threads, log)


def _run_bench(config: BenchConfig, threads: int, log: Callable[[str], None]) -> dict:
    torch_version = None
    if config.torch:
        try:
            import torch
            torch.set_num_threads(threads)
            torch_version = torch.__version__
        except ImportError:
            log("torch is not installed: measuring derive and the floor only")
    jax_version = _jax_version(threads, log) if config.jax else None
    rows = []
    load_before = os.getloadavg()[0]
    sources = {a: to_numpy(get(f"mlp3_{a}").derive(), f"mlp3_{a}") for a in config.activations}
    modules = {a: load_module(source, f"mlp3_{a}") for a, source in sources.items()}
    for module in modules.values():
        module.THREADS = threads  # its elementwise helpers, like torch, on the same threads as BLAS
    for dtype in config.dtypes:
        params, batch = _data(config, dtype)
        for activation in config.activations:
            module = modules[activation]

            def step(module=module, params=params, batch=batch):
                return module.loss_and_grads(params, batch)

            steps = {"floor": floor_step(params, batch), "derive": step}
            if torch_version:
                steps["torch"] = torch_step(params, batch, activation)
            if jax_version:
                steps["jax"] = jax_step(params, batch, activation)
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
                "torch_s": median.get("torch"), "jax_s": median.get("jax"), "floor_s": median["floor"],
                "derive_over_floor": median["derive"] / median["floor"],
                "derive_over_torch": median["derive"] / median["torch"] if "torch" in median else None,
                "jax_over_floor": median["jax"] / median["floor"] if "jax" in median else None,
                "torch_over_floor": median["torch"] / median["floor"] if "torch" in median else None,
                "best_derive_over_floor": best["derive"] / best["floor"],
                "best_derive_over_torch": best["derive"] / best["torch"] if "torch" in best else None,
                "backward_peak_bytes": peak_memory(partial(module.backward, cache)),
                "peak_bytes": peak_memory(step), "cached_bytes": cached,
                "dtype_out": str(grads["W1"].dtype), "loss": float(loss), "runs_s": times,
                "profile": [asdict(t) for t in profile_step(
                    sources[activation], params, batch, repeats=config.repeats, warmup=config.warmup,
                    configure=lambda namespace: namespace.update(THREADS=threads))],
            }
            rows.append(row)
            log(_row_text(row))
    results = {
        "config": asdict(config), "threads": threads, "numpy": np.__version__, "torch": torch_version,
        "jax": jax_version,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpus": os.cpu_count(),
        "load_average": [load_before, os.getloadavg()[0]],
        "targets": {"derive_over_torch": TARGET_VS_TORCH, "derive_over_floor": TARGET_VS_FLOOR,
                    "backward_over_cache": TARGET_BACKWARD_OVER_CACHE}, "rows": rows,
    }
    write_results(results, Path(config.out))
    return results


def _row_text(row: dict) -> str:
    others = "".join(f"{name} {row[f'{name}_s'] * 1e3:8.1f} ms  " for name in ("torch", "jax") if row.get(f"{name}_s"))
    ratio = f"derive/torch {row['derive_over_torch']:.2f}  " if row["derive_over_torch"] else ""
    return (f"{row['activation']:>5} {row['dtype']}: derive {row['derive_s'] * 1e3:8.1f} ms  {others}"
            f"floor {row['floor_s'] * 1e3:8.1f} ms  {ratio}derive/floor {row['derive_over_floor']:.2f}  "
            f"backward {row['backward_peak_bytes'] / 2**20:.0f} MiB over a cache of {row['cached_bytes'] / 2**20:.0f} MiB")


def _ms(seconds: float | None) -> str:
    return f"{seconds * 1e3:.1f}" if seconds else "-"


def _ratio(value: float | None) -> str:
    return f"{value:.2f}" if value else "-"


def missed_targets(row: dict, targets: dict) -> list[str]:
    """The targets a row misses, as text ("derive/floor 1.31 > 1.15")."""
    checks = [("derive/torch", row["derive_over_torch"], targets["derive_over_torch"]),
              ("derive/floor", row["derive_over_floor"], targets["derive_over_floor"]),
              ("backward memory / cache", row["backward_peak_bytes"] / row["cached_bytes"], targets["backward_over_cache"])]
    return [f"{name} {value:.3f} > {target}" for name, value, target in checks if value is not None and value > target]


def results_markdown(results: dict) -> str:
    config = results["config"]
    d, h, _, c = config["widths"]
    cpus, load = results["cpus"], results["load_average"]
    busy = load[0] >= 1  # before: afterwards the load is the benchmark's own threads
    lines = [
        "<!-- Generated by derive bench. Do not edit: re-run `derive bench` to regenerate. -->",
        "# derive bench: generated NumPy step vs PyTorch eager vs the matmul floor",
        "",
        (f"MLP {d}-{h}-{h}-{c}, N = {config['n']}, softmax cross-entropy; median of {config['repeats']} runs "
         f"after {config['warmup']} warm-up, the steps taking turns; {results['threads']} threads for NumPy "
         f"(BLAS and derive's elementwise helpers), torch{' and JAX' if results.get('jax') else ''}; numpy "
         f"{results['numpy']}, torch {results['torch'] or 'not measured'}, jax {results.get('jax') or 'not measured'}, "
         f"{cpus} CPUs."),
        "",
        (f"Load average (1 min) {load[0]:.2f} before, {load[1]:.2f} after (its own threads): "
         + ("other work kept a core busy the minute before, so the times are noisy; the ratios, measured "
            "in turns, suffer less." if busy else "the machine was otherwise idle.")),
        "",
        ("| activation | dtype | floor (ms) | derive (ms) | torch eager (ms) | jax jit (ms) | derive/floor "
         "| torch/floor | jax/floor | derive/torch | best runs: derive/floor | best runs: derive/torch "
         "| backward peak (MiB) | cached activations (MiB) | backward / cache | whole step peak (MiB) |"),
        "| --- | --- |" + " ---: |" * 14,
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['activation']} | {r['dtype']} | {_ms(r['floor_s'])} | {_ms(r['derive_s'])} | {_ms(r['torch_s'])} "
            f"| {_ms(r.get('jax_s'))} | {_ratio(r['derive_over_floor'])} | {_ratio(r.get('torch_over_floor'))} "
            f"| {_ratio(r.get('jax_over_floor'))} | {_ratio(r['derive_over_torch'])} "
            f"| {_ratio(r['best_derive_over_floor'])} | {_ratio(r['best_derive_over_torch'])} "
            f"| {r['backward_peak_bytes'] / 2**20:.1f} | {r['cached_bytes'] / 2**20:.1f} "
            f"| {r['backward_peak_bytes'] / r['cached_bytes']:.2f} | {r['peak_bytes'] / 2**20:.1f} |")
    targets = results["targets"]
    missed = [(r, missed_targets(r, targets)) for r in results["rows"]]
    missed = [f"{r['activation']} {r['dtype']} ({', '.join(m)})" for r, m in missed if m]
    lines += ["", f"Targets: derive/torch <= {targets['derive_over_torch']}, derive/floor <= "
              f"{targets['derive_over_floor']}, backward peak <= {targets['backward_over_cache']} x the cached "
              "activations. " + ("All met." if not missed else "Missed: " + "; ".join(missed) + ".")]
    return "\n".join(lines) + "\n"


def profile_report(results: dict) -> str:
    """Every row's generated step, statement by statement (derive.step_profile)."""
    parts = ["<!-- Generated by derive bench. Do not edit: re-run `derive bench` to regenerate. -->",
             "# Where the generated step spends its time", "",
             ("Each statement of the generated forward and backward timed on its own (median of "
              f"{results['config']['repeats']} steps), in the same process as results.md; statements under "
              "0.5% of the step are left out."), ""]
    for r in results["rows"]:
        rows = [StatementTime(**t) for t in r["profile"]]
        parts.append(profile_markdown(f"{r['activation']} {r['dtype']}", rows, r["floor_s"]))
    return "\n".join(parts)


def write_results(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(results_markdown(results))
    (out / "profile.md").write_text(profile_report(results))
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
    bars = [(key, name) for key, name in (("floor_s", "matmul floor"), ("derive_s", "derive"),
                                          ("torch_s", "torch eager"), ("jax_s", "jax jit")) if any(r.get(key) for r in rows)]
    width = 0.8 / len(bars)
    for k, (key, name) in enumerate(bars):
        ax.bar(x + (k - (len(bars) - 1) / 2) * width, [(r.get(key) or 0) * 1e3 for r in rows], width, label=name)
    ax.set_xticks(x, labels)
    ax.set_ylabel("ms per step (median)")
    config = results["config"]
    ax.set_title(f"MLP {'-'.join(map(str, config['widths']))}, N = {config['n']}, {results['threads']} threads")
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
    parser.add_argument("--activations", nargs="+", choices=BENCHED,
                        help="activations to measure (default relu gelu)")
    parser.add_argument("--dtypes", nargs="+", choices=["float32", "float64"], help="default: both")
    parser.add_argument("--repeats", type=int, help="timed runs per measurement, median taken (default 7)")
    parser.add_argument("--threads", type=int, default=0, help="threads for torch (default: NumPy's BLAS default)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--no-jax", action="store_true", help="skip the JAX comparison (run when JAX is installed)")
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
    return BenchConfig(**values, threads=args.threads, out=out, torch=not args.no_torch, jax=not args.no_jax)


def main_bench(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    results = run_bench(config)
    print(f"wrote {Path(config.out) / 'results.md'} and results.json")
    return 0 if results["rows"] else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="derive bench", description=__doc__.splitlines()[0])
    add_bench_arguments(parser)
    raise SystemExit(main_bench(parser.parse_args()))
