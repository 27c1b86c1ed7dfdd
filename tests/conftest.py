"""Shared fixtures: symbolic dims and the built-in examples; the hypothesis profiles."""

import os

import pytest
from hypothesis import HealthCheck, settings
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

# Property tests (tests/test_properties.py) draw random networks. HYPOTHESIS_PROFILE picks how many:
#   ci    (the default) 500 networks against autograd, finite differences and the generated code
#         (half the profile's count: tests/test_properties.py), 20 smaller ones against the
#         elementwise derivative
#   long  10000 and 400: hours, before a release or after touching the rules
#   dev   50 and 10, for a quick look while editing
# SymPy takes a variable time per network, so there is no per-example deadline.
_PROFILE = {"deadline": None, "print_blob": True,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
# ci draws the same networks on every run (derandomize): a red run names a network anyone can rerun,
# never a new draw's luck; long and dev draw afresh each time, to find what ci's draws do not
settings.register_profile("ci", max_examples=1000, derandomize=True, **_PROFILE)
settings.register_profile("long", max_examples=20000, **_PROFILE)
settings.register_profile("dev", max_examples=100, **_PROFILE)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def derivations():
    """Each built-in example derived once per session."""
    return {name: example.derive() for name, example in EXAMPLES.items()}
