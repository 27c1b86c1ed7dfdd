"""The built-in example networks: the five lecture notes' networks and a few beyond them.

Each example module defines ``EXAMPLES``, a list of :class:`Example`. ``catalogue()`` gathers them
by name; ``get(name)`` returns one, with a clear error naming the known ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from sympy import Basic, MatrixSymbol

from ..core.derivation import Derivation, gradients
from ..errors import DeriveError

MODULES = ("seed_000", "seed_001", "seed_002", "seed_003", "seed_004", "mlp3", "residual")
# the layers (derive.vjp; derive.examples.layer.LayerExample), apart from the losses
LAYER_MODULES = ("gelu_dense", "layer_norm", "attention_head", "gated_unit", "residual_mlp")


@dataclass(frozen=True)
class Example:
    """A network: its loss, the parameters to differentiate and how to present it."""

    name: str
    title: str
    source: str                      # the title of the note it comes from (shared/seeds), or "" beyond the notes
    loss: Basic
    wrt: tuple[MatrixSymbol, ...]
    names: Mapping = field(default_factory=dict)          # name -> intermediate expression
    dims: Mapping = field(default_factory=dict)           # small concrete dims for the explicit expansion
    values: Mapping = field(default_factory=dict)         # numbers for a worked example, keyed by symbol
    convention: str = "rows"                              # "rows" (X W + 1 b) or "columns" (W x + b)
    variants: Mapping = field(default_factory=dict)       # other convention -> a function building it

    def derive(self) -> Derivation:
        return gradients(self.loss, self.wrt, names=self.names)


def catalogue() -> dict[str, Example]:
    """Every built-in example, by name, in a stable order."""
    found: dict[str, Example] = {}
    for module in MODULES:
        for example in importlib.import_module(f"{__name__}.{module}").EXAMPLES:
            found[example.name] = example
    return found


def layers() -> dict:
    """Every built-in layer (a LayerExample: output, inputs, params), by name, in a stable order."""
    found: dict = {}
    for module in LAYER_MODULES:
        for example in importlib.import_module(f"{__name__}.{module}").EXAMPLES:
            found[example.name] = example
    return found


def get(name: str, convention: str | None = None) -> Example:
    """The example ``name`` (a network or a layer), written in ``convention`` ("rows" or "columns")
    when one is asked for."""
    examples = {**catalogue(), **layers()}
    if name not in examples:
        raise DeriveError(f"no built-in example named {name!r}; known: {', '.join(examples)}")
    example = examples[name]
    if convention is None or convention == example.convention:
        return example
    if convention not in example.variants:
        raise DeriveError(f"example {name!r} is written with {example.convention} as examples only; "
                          f"examples that also come with {convention}: "
                          + ", ".join(n for n, e in examples.items() if convention in e.variants))
    return example.variants[convention]()
