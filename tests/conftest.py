"""Shared fixtures: symbolic dims and the built-in examples."""

import pytest
from sympy import MatrixSymbol, OneMatrix, Symbol

from derive.examples import catalogue


@pytest.fixture(scope="session")
def dims():
    """Symbolic dimensions N (batch), D (inputs), H (hidden), C (classes)."""
    return {name: Symbol(name, integer=True, positive=True) for name in ("N", "D", "H", "C")}


@pytest.fixture(scope="session")
def layer(dims):
    """A dense layer's symbols: X (N x D), W (D x H), b (1 x H), ones (N x 1), Y (N x H)."""
    N, D, H = dims["N"], dims["D"], dims["H"]
    return {"X": MatrixSymbol("X", N, D), "W": MatrixSymbol("W", D, H), "b": MatrixSymbol("b", 1, H),
            "ones": OneMatrix(N, 1), "Y": MatrixSymbol("Y", N, H)}


EXAMPLES = catalogue()


@pytest.fixture(scope="session")
def derivations():
    """Each built-in example derived once per session."""
    return {name: example.derive() for name, example in EXAMPLES.items()}
