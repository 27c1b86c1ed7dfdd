"""``derive bench --layers``: each built-in layer's generated torch Function against torch eager autograd.

For each layer at batch N x width (4096 x 1024, float32 by default), side by side and taking turns:

* ``derive``: ``Function.apply`` of the module :func:`derive.to_torch` generates, forward then
  backward with a random upstream gradient;
* ``eager``: the same layer written in plain torch (below, from the textbook definitions), forward then
  autograd's backward;
* ``compiled``: ``torch.compile`` of the plain layer, where it compiles on this machine (else "n/a").

Saved-tensor memory is what autograd keeps between forward and backward: the bytes of the distinct
tensors its saved-tensor hooks see (``torch.autograd.graph.saved_tensors_hooks``), for derive's
Function (what ``ctx.save_for_backward`` holds) and for eager autograd. Before timing, derive's
gradients are compared with eager autograd's at the bench's own size.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import asdict

from ..errors import DeriveError
from ..examples.attention_head import attention_head
from ..examples.gated_unit import gated_unit
from ..examples.gelu_dense import gelu_dense
from ..examples.layer_norm import layer_norm
from ..examples.residual_mlp import residual_mlp
from ..render.frameworks import to_torch
from ..render.module import load_module
from .layer_profile import profile_layer
from .profile import StatementTime, profile_markdown
from .step import interleaved_medians

__all__ = ["eager_kernels", "layers_json", "layers_markdown", "profile_report", "run_layers", "saved_bytes"]

# Targets from the issue: at most eager autograd's time, and less saved memory for these layers.
TARGET_VS_EAGER = 1.0
LESS_MEMORY = ("layer_gelu_dense", "layer_norm", "layer_attention_head")


def _builders(width: int) -> dict[str, Callable]:
    return {"layer_gelu_dense": lambda: gelu_dense(width, width), "layer_norm": layer_norm,
            "layer_attention_head": lambda: attention_head(width, 64), "layer_gated_unit": lambda: gated_unit(width, width),
            "layer_residual_mlp": lambda: residual_mlp(width)}


def _plain(torch, name: str):
    """The layer in plain torch, as a user writes it (autograd differentiates it)."""
    F = torch.nn.functional
    return {
        "layer_gelu_dense": lambda X, W, b: F.gelu(X @ W + b),
        "layer_norm": lambda X, gamma, beta: F.layer_norm(X, (X.shape[1],), gamma.reshape(-1), beta.reshape(-1), eps=1e-5),
        "layer_attention_head": lambda X, Wq, Wk, Wv: torch.softmax((X @ Wq) @ (X @ Wk).T / Wq.shape[1] ** 0.5, dim=1)
        @ (X @ Wv),
        "layer_gated_unit": lambda X, Wg, bg, Wv, bv: torch.sigmoid(X @ Wg + bg) * torch.tanh(X @ Wv + bv),
        "layer_residual_mlp": lambda X, W1, b1, W2, b2: X + torch.relu(X @ W1 + b1) @ W2 + b2,
    }[name]


def saved_bytes(torch, step: Callable[[], object]) -> int:
    """Bytes of the distinct tensors autograd saves for backward while ``step`` runs its forward."""
    seen: dict[tuple, int] = {}

    def pack(tensor):
        seen[(tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))] = (
            tensor.untyped_storage().nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    by_storage: dict[int, int] = {}
    for (pointer, _, _), size in seen.items():
        by_storage[pointer] = size
    return sum(by_storage.values())


def run_layers(n: int = 4096, width: int = 1024, repeats: int = 5, warmup: int = 1, compile_: bool = True,
               log: Callable[[str], None] = print, profile: str = "missed") -> list[dict]:
    """The layers table's rows; ``profile``: the layers whose generated step is profiled statement by
    statement (with eager autograd's kernels beside it), "missed" (those slower than eager), "all" or "none"."""
    try:
        import torch
    except ImportError as error:
        raise DeriveError("derive bench --layers needs torch (pip install torch)") from error
    rows = []
    for name, build in _builders(width).items():
        layer = build().derive()
        source = to_torch(layer, name, verify=False)   # the tests verify these at small sizes
        module = load_module(source)
        sizes = {"N": n, "D": width}
        generator = torch.Generator().manual_seed(0)
        args, upstream = module.example_inputs(generator, dims=sizes, dtype=torch.float32)
        args = [a.requires_grad_(True) for a in args]
        plain = _plain(torch, name)
        _check(torch, name, module, plain, args, upstream)

        def derive_step(module=module, args=args, upstream=upstream):
            module.Function.apply(*args).backward(upstream)

        def eager_step(plain=plain, args=args, upstream=upstream, keys=module.ARGS):
            plain(**dict(zip(keys, args))).backward(upstream)

        steps = {"derive": derive_step, "eager": eager_step}
        compiled_note = ""
        if compile_:
            try:
                compiled = torch.compile(plain)
                compiled(**dict(zip(module.ARGS, args))).backward(upstream)
                steps["compiled"] = lambda compiled=compiled, args=args, keys=module.ARGS, upstream=upstream: (
                    compiled(**dict(zip(keys, args))).backward(upstream))
            except Exception as error:  # noqa: BLE001 - no compiler on this machine, or a graph it cannot take
                compiled_note = f"{type(error).__name__}"
        times = {k: statistics.median(v) for k, v in interleaved_medians(steps, repeats, warmup).items()}
        row = {"layer": name, "n": n, "width": width, **{f"{k}_s": v for k, v in times.items()},
               "derive_saved": saved_bytes(torch, lambda module=module, args=args: module.Function.apply(*args)),
               "eager_saved": saved_bytes(torch, lambda plain=plain, args=args, keys=module.ARGS:
                                          plain(**dict(zip(keys, args)))),
               "compiled_note": compiled_note}
        if profile == "all" or (profile == "missed" and times["derive"] > TARGET_VS_EAGER * times["eager"]):
            row["profile"] = [asdict(t) for t in profile_layer(source, args, upstream, repeats=repeats, warmup=warmup)]
            row["eager_kernels"] = eager_kernels(torch, eager_step, repeats)
        rows.append(row)
        log(f"{name}: derive {times['derive'] * 1e3:.1f} ms, eager {times['eager'] * 1e3:.1f} ms, saved "
            f"{row['derive_saved'] / 2**20:.1f} MiB against {row['eager_saved'] / 2**20:.1f} MiB")
    return rows


def _check(torch, name, module, plain, args, upstream) -> None:
    """derive's gradients against eager autograd's at the bench's size (float32: relative 1e-3)."""
    ours = torch.autograd.grad(module.Function.apply(*args), args, upstream)
    theirs = torch.autograd.grad(plain(**dict(zip(module.ARGS, args))), args, upstream)
    for key, a, b in zip(module.ARGS, ours, theirs):
        scale = float(b.abs().max()) or 1.0
        if float((a - b).abs().max()) > 1e-3 * scale:
            raise DeriveError(f"bench {name}: derive's gradient of {key} differs from eager autograd's")


def layers_markdown(rows: list[dict]) -> str:
    lines = ["| layer | derive ms | eager ms | compiled ms | derive / eager | saved derive MiB | saved eager MiB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        compiled = f"{row['compiled_s'] * 1e3:.1f}" if "compiled_s" in row else f"n/a {row['compiled_note']}".strip()
        lines.append(f"| {row['layer']} | {row['derive_s'] * 1e3:.1f} | {row['eager_s'] * 1e3:.1f} | {compiled} | "
                     f"{row['derive_s'] / row['eager_s']:.2f} | {row['derive_saved'] / 2**20:.1f} | "
                     f"{row['eager_saved'] / 2**20:.1f} |")
    missed = [f"{r['layer']}: {r['derive_s'] / r['eager_s']:.2f} x eager's time" for r in rows
              if r["derive_s"] > TARGET_VS_EAGER * r["eager_s"]]
    missed += [f"{r['layer']}: saves {r['derive_saved'] / 2**20:.1f} MiB, eager {r['eager_saved'] / 2**20:.1f} MiB"
               for r in rows if r["layer"] in LESS_MEMORY and r["derive_saved"] >= r["eager_saved"]]
    if rows:
        lines.append("")
        lines.append(f"Batch {rows[0]['n']} x width {rows[0]['width']}, float32, median of the runs.")
    lines.append("Targets missed: " + ("; ".join(missed) if missed else "none"))
    return "\n".join(lines)


def eager_kernels(torch, step: Callable[[], None], repeats: int) -> list[tuple[str, float, int]]:
    """(aten operator, seconds per step, calls per step) of eager autograd's step, slowest first, from
    torch.profiler: the kernels derive's statements are measured against."""
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            step()
    events = [e for e in prof.key_averages() if e.key.startswith("aten::") and e.self_cpu_time_total > 0]
    return [(e.key, e.self_cpu_time_total / 1e6 / repeats, e.count // repeats)
            for e in sorted(events, key=lambda e: -e.self_cpu_time_total)]


def profile_report(rows: list[dict], threshold: float = 0.01) -> str:
    """The profiled rows: derive's statements (bench.profile's table) and eager's kernels, side by side."""
    parts = ["# Where the generated torch layers spend their time", "",
             ("Each statement of the generated `_forward` and `_backward` timed between two clock readings "
              "(median of the runs; torch on the CPU runs synchronously), beside eager autograd's aten "
              "kernels (torch.profiler, self time per step). Measured in the run of layers.md."), ""]
    for row in rows:
        if "profile" not in row:
            continue
        statements = [StatementTime(**t) for t in row["profile"]]
        title = (f"{row['layer']}: derive {row['derive_s'] * 1e3:.1f} ms, eager {row['eager_s'] * 1e3:.1f} ms "
                 f"({row['derive_s'] / row['eager_s']:.2f} x)")
        parts.append(profile_markdown(title, statements, threshold=threshold))
        kernels = row["eager_kernels"]
        total = sum(seconds for _, seconds, _ in kernels) or 1e-12
        parts += [f"Eager autograd's kernels, {total * 1e3:.1f} ms of self time:", "",
                  "| kernel | calls | ms | share |", "| --- | ---: | ---: | ---: |"]
        parts += [f"| `{key}` | {calls} | {seconds * 1e3:.1f} | {seconds / total:.0%} |"
                  for key, seconds, calls in kernels if seconds >= threshold * total]
        parts.append("")
    if len(parts) == 5:
        parts.append("Every layer met its time target; none was profiled.")
    return "\n".join(parts) + "\n"


def layers_json(rows: list[dict]) -> str:
    return json.dumps(rows, indent=2) + "\n"
