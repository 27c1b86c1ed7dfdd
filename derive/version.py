"""The version of derive (one place: the package, the sheets and generated modules read it here)."""

__version__ = "0.1.0"
