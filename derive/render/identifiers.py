"""Python identifiers for the user's names in generated code, and text made safe for a comment.

A name that is not a plain identifier, is a keyword or a builtin, starts with an underscore or is
one the generated module defines itself (``RESERVED``) is mangled, so no symbol name can inject
code into a generated module or shadow one of its own names.
"""

from __future__ import annotations

import builtins
import keyword
import re

__all__ = ["RESERVED", "Identifiers", "safe_comment"]

# Names the generated module defines or imports itself; a user's symbol never takes one of them.
RESERVED = {
    "np", "scipy", "params", "batch", "cache", "loss", "grads", "rng", "dims", "forward", "backward",
    "loss_and_grads", "example_inputs", "check_gradients", "hvp", "directions", "check_hvp", "softmax", "log_softmax",
    "binary_cross_entropy", "dtype", "ndtr", "erf", "erfc", "blockwise", "THREADS", "BLOCK", "ThreadPoolExecutor", "os",
    "silu_prime", "gelu", "gelu_prime", "gelu_slopes", "ws", "workspace", "Workspace", "PARAMS", "BATCH", "SHAPES", "DEFAULT_DIMS", "main", "check_targets",
    # the layer modules' own (NumPy, torch, JAX): their imports, arguments and locals beside the user's
    "torch", "jax", "jnp", "ctx", "self", "device", "generator", "saved", "values", "residuals", "sizes",
    "size", "args", "output", "fn", "vjp", "Function", "Module", "ARGS", "UPSTREAM", "parameters",
    "check_shapes", "gradcheck_atol",
}

_UNSAFE = re.compile(r"[^0-9A-Za-z_]")


def _clean(name: str) -> str | None:
    """``name`` itself when it is a plain, harmless Python identifier; None when it must be mangled."""
    if (name.isascii() and name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")
            and name not in RESERVED and not hasattr(builtins, name)):
        return name
    return None


def safe_comment(text: str) -> str:
    """``text`` reduced to one line of printable ASCII, so it cannot leave a comment in generated code."""
    return "".join(c if " " <= c <= "~" else "?" for c in str(text))


class Identifiers:
    """Python identifiers for the user's names: ``Z_1`` stays ``Z_1``, ``dL/dZ_1`` becomes ``dZ_1``.

    Names that are not identifiers, are keywords or builtins, or start with an underscore
    (``x; import os``, ``class``, ``__import__``) are mangled (``v_x__import_os``); every name gets
    one identifier and no two names share one.
    """

    def __init__(self):
        self._by_key: dict[tuple[str, str], str] = {}
        self._taken: set[str] = set(RESERVED)

    def __call__(self, kind: str, name: str) -> str:
        key = (kind, str(name))
        if key not in self._by_key:
            self._by_key[key] = self._fresh(kind, str(name))
        return self._by_key[key]

    def fresh(self, name: str) -> str:
        """An identifier made from ``name`` that no one has yet, every call a new one (a product bound
        by render/reuse.py: two products may read alike, ``W @ A`` and ``W @ A.sum(...)``)."""
        return self._fresh("value", str(name))

    def alias(self, kind: str, name: str, identifier: str) -> None:
        """Print ``name`` of ``kind`` as the identifier another name already has (a layer's dL/dY is
        its upstream gradient G)."""
        self._by_key[(kind, str(name))] = identifier

    def _fresh(self, kind: str, name: str) -> str:
        base = _clean(name) or "v_" + _UNSAFE.sub("_", name).strip("_")
        prefix = {"adjoint": "d", "tangent": "R_", "gradient tangent": "R_d", "hvp": "Hv_"}.get(kind)
        if prefix:   # dZ_1 = dL/dZ_1; R_Z_1 = R{Z_1}, R_dZ_1 = R{dL/dZ_1}; Hv_W = (H V)_W
            base = prefix + (_clean(name) or _UNSAFE.sub("_", name).strip("_") or "v")
        candidate, k = base, 1
        while candidate in self._taken or keyword.iskeyword(candidate) or hasattr(builtins, candidate):
            k += 1
            candidate = f"{base}_{k}"
        self._taken.add(candidate)
        return candidate

