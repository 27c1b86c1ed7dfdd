"""A built-in layer: :class:`LayerExample`, a matrix output of inputs and parameters derived with
``derive.vjp``, and the symbols the layers share (one small file each: gelu_dense.py, layer_norm.py,
attention_head.py, gated_unit.py, residual_mlp.py). They are found with ``derive.examples.layers()``
(and ``get``), apart from the networks' ``catalogue()``, whose examples are losses. Rows are examples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sympy import MatrixExpr, MatrixSymbol, OneMatrix, Rational, Symbol

from ..core.layer import Layer, vjp

N = Symbol("N", integer=True, positive=True)   # the batch stays symbolic
D = Symbol("D", integer=True, positive=True)   # the width of layer norm and of the residual block
EPSILON = Rational(1, 100000)                  # layer norm's epsilon, as torch's default


@dataclass(frozen=True)
class LayerExample:
    """A layer: its output, the inputs and parameters to differentiate, and how to present it."""

    name: str
    title: str
    source: str
    output: MatrixExpr
    inputs: tuple[MatrixSymbol, ...]
    params: tuple[MatrixSymbol, ...]
    names: Mapping = field(default_factory=dict)
    dims: Mapping = field(default_factory=dict)
    values: Mapping = field(default_factory=dict)
    convention: str = "rows"
    variants: Mapping = field(default_factory=dict)

    def derive(self) -> Layer:
        return vjp(self.output, self.inputs, self.params, names=self.names)


def row_bias(b: MatrixSymbol) -> MatrixExpr:
    return OneMatrix(N, 1) * b
