"""``derive bench``: the generated NumPy step against PyTorch eager autograd and the matmul floor.

One process measures, side by side and on the same threads (:mod:`derive.bench.threads`), for a
3-layer MLP with softmax cross-entropy (the built-in ``mlp3_<activation>`` examples):

* ``derive``: ``loss_and_grads`` of the module :func:`derive.codegen.to_numpy` generates;
* ``workspace``: the same step generated with ``workspace=True`` and given a ``Workspace``, so each
  call writes into the previous call's arrays (a step called in a loop; its own row of the table);
* ``torch``: the same network in PyTorch eager mode, forward then ``loss.backward()``;
* ``floor``: the step's matrix products alone (3 forward, 5 backward), NumPy with preallocated
  ``out=`` buffers: no step that computes these gradients in closed form can be faster;
* ``jax``: ``jax.jit(jax.value_and_grad(loss))`` of the same network, when JAX is installed.

The steps take turns, one run of each per round, ``repeats`` rounds after ``warmup`` untimed ones, so
that a change in the machine's load affects the runs of one round alike: each ratio is taken per round
(derive's run over the floor's run of the same round) and reported as its median and its spread
(min-max) over the rounds; times are medians. Memory is measured with tracemalloc (NumPy reports its
buffers to it): the peak of the backward pass above what it starts with, next to the size of the
activations the forward pass caches for it, and the peak of the whole step. Results go to
``results.md`` and ``results.json`` (and ``results.png`` when matplotlib is installed); ``derive
bench`` measures in a child process whose libraries load with the thread settings (``run_isolated``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..core.elementwise import activations
from ..errors import DeriveError
from ..examples import get
from ..render.module import load_module, to_numpy
from .profile import profile_step
from .report import missed_targets, results_markdown, row_text, write_results
from .threads import CHILD, blas_threads, in_effect, run_isolated, thread_count, thread_limiter

__all__ = ["BenchConfig", "add_bench_arguments", "blas_threads", "config_from_json", "main_bench", "missed_targets",
           "paired_ratio", "results_markdown", "run_bench", "thread_limiter"]

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
    idle: str = "sleep"    # idle BLAS/OpenMP threads sleep ("spin": each library's default); derive bench only


# The activations whose records name the PyTorch and JAX functions to compare with (and a built-in mlp3).
BENCHED = [name for name, cls in activations().items() if cls.record.torch and cls.record.jax]

QUICK = {"n": 512, "widths": (256, 256, 256, 10), "repeats": 7, "warmup": 1}


def interleaved_medians(steps: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Run times of each step, taken in turns (one run of each per round) so that a change in the
    machine's load during the measurement affects every step alike; ``warmup`` untimed rounds first.
    Each round starts one step later than the one before, so that no step always runs right after the
    same other one (whose idle threads may still hold a core)."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(repeats):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            start = time.perf_counter()
            steps[name]()
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


def run_bench(config: BenchConfig = BenchConfig(), log: Callable[[str], None] = print) -> dict:
    """Measure every (activation, dtype); write results.md/.json (and .png) under ``config.out``."""
    threads = thread_count(config.threads)
    with blas_threads(config.threads):
        return _run_bench(config, threads, log)


def paired_ratio(times: dict[str, list[float]], step: str, other: str) -> tuple[float | None, list[float] | None]:
    """The median and [min, max] of ``step``'s run over ``other``'s run of the same round (None when
    one of them was not measured): the rounds' load cancels within each ratio."""
    if step not in times or other not in times:
        return None, None
    ratios = [mine / theirs for mine, theirs in zip(times[step], times[other])]
    return statistics.median(ratios), [min(ratios), max(ratios)]


def _ratios(times: dict[str, list[float]], step: str) -> dict:
    """A row's ratios, each with its spread (``<key>_range``): ``step`` over the floor and torch, and
    torch and JAX over the floor."""
    row = {}
    for key, (mine, theirs) in {"derive_over_floor": (step, "floor"), "derive_over_torch": (step, "torch"),
                                "torch_over_floor": ("torch", "floor"), "jax_over_floor": ("jax", "floor")}.items():
        row[key], row[f"{key}_range"] = paired_ratio(times, mine, theirs)
    return row


def _modules(config: BenchConfig, threads: int) -> dict:
    """For each activation: (source, module, the module with a workspace), derived once."""
    found = {}
    for activation in config.activations:
        g = get(f"mlp3_{activation}").derive()
        source = to_numpy(g, f"mlp3_{activation}")
        module, reusing = load_module(source, f"mlp3_{activation}"), load_module(
            to_numpy(g, f"mlp3_{activation}", workspace=True), f"mlp3_{activation} workspace")
        for m in (module, reusing):
            m.THREADS = threads  # its elementwise helpers, like torch, on the same threads as BLAS
        found[activation] = source, module, reusing
    return found


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
    modules = _modules(config, threads)
    for dtype in config.dtypes:
        params, batch = _data(config, dtype)
        for activation in config.activations:
            source, module, reusing = modules[activation]
            workspace = reusing.Workspace()
            step = partial(module.loss_and_grads, params, batch)
            steps = {"floor": floor_step(params, batch), "derive": step,
                     "workspace": partial(reusing.loss_and_grads, params, batch, workspace=workspace)}
            if torch_version:
                steps["torch"] = torch_step(params, batch, activation)
            if jax_version:
                steps["jax"] = jax_step(params, batch, activation)
            times = interleaved_medians(steps, config.repeats, config.warmup)
            row = {"activation": activation, "dtype": dtype,
                   **{f"{name}_s": statistics.median(times[name]) if name in times else None
                      for name in ("derive", "torch", "jax", "floor")},
                   **_ratios(times, "derive"), **_memory(module, step, params, batch)}
            loss, grads = step()
            row.update(dtype_out=str(grads["W1"].dtype), loss=float(loss), runs_s=times, profile=[
                asdict(t) for t in profile_step(source, params, batch, repeats=config.repeats, warmup=config.warmup,
                                                configure=lambda namespace: namespace.update(THREADS=threads))])
            row["workspace"] = {"derive_s": statistics.median(times["workspace"]), **_ratios(times, "workspace"),
                                **_memory(reusing, steps["workspace"], params, batch, workspace)}
            rows.append(row)
            log(row_text(row))
            log(row_text({**row, **row["workspace"]}, "workspace"))
    results = {
        "config": asdict(config), "threads": threads, "numpy": np.__version__, "torch": torch_version,
        "jax": jax_version, "threads_in_effect": in_effect(threads, torch_version, jax_version),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpus": os.cpu_count(),
        "load_average": [load_before, os.getloadavg()[0]],
        "targets": {"derive_over_torch": TARGET_VS_TORCH, "derive_over_floor": TARGET_VS_FLOOR,
                    "backward_over_cache": TARGET_BACKWARD_OVER_CACHE}, "rows": rows,
    }
    write_results(results, Path(config.out))
    return results


def _memory(module, step: Callable[[], object], params: dict, batch: dict, workspace=None) -> dict:
    """The backward pass's peak, the whole step's, and the activations the forward caches (the
    inputs left out); with a workspace, once its arrays are made (the steady state of a loop)."""
    if workspace is None:
        _, cache = module.forward(params, batch)
        backward = partial(module.backward, cache)
    else:
        step()
        _, cache = module.forward(params, batch, workspace)
        backward = partial(module.backward, cache, workspace)
    inputs = [*params.values(), *batch.values()]
    cached = sum(v.nbytes for v in cache.values() if isinstance(v, np.ndarray) and not any(v is a for a in inputs))
    return {"backward_peak_bytes": peak_memory(backward), "peak_bytes": peak_memory(step), "cached_bytes": cached}


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
    parser.add_argument("--idle-threads", choices=["sleep", "spin"], default="sleep",
                        help="idle BLAS and OpenMP threads of every contender sleep at once (default: "
                        "OPENBLAS_THREAD_TIMEOUT=1, OMP_WAIT_POLICY=PASSIVE), or spin as each library does by default")
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
    return BenchConfig(**values, threads=args.threads, out=out, torch=not args.no_torch, jax=not args.no_jax,
                       idle=getattr(args, "idle_threads", "sleep"))


def main_bench(args: argparse.Namespace) -> int:
    """``derive bench``: measured in a child process whose libraries load with the thread settings
    (:func:`derive.bench.threads.run_isolated`), unless this process is that child."""
    config = config_from_args(args)
    if os.environ.get(CHILD) == "1":
        found = run_bench(config)["rows"]
    else:
        found = run_isolated(asdict(config), thread_count(config.threads)) == 0
    if found:
        print(f"wrote {Path(config.out) / 'results.md'} and results.json")
    return 0 if found else 1


def config_from_json(config_json: str) -> BenchConfig:
    """The BenchConfig a parent process passed to its child (:func:`run_isolated`) as JSON."""
    values = json.loads(config_json)
    return BenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _isolated(config_json: str) -> int:
    """The child process's bench: the configuration as main_bench passed it."""
    return 0 if run_bench(config_from_json(config_json))["rows"] else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--isolated-config"]:
        raise SystemExit(_isolated(sys.argv[2]))
    parser = argparse.ArgumentParser(prog="derive bench", description=__doc__.splitlines()[0])
    add_bench_arguments(parser)
    raise SystemExit(main_bench(parser.parse_args()))
