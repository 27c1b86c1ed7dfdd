"""scipy.special, imported at its first use: importing it is a quarter of derive's import time, and
``derive check`` or ``derive grade`` never evaluate an activation's reference formula with it.

``special.expit`` is a function that imports scipy.special when called, so the activation records
and the truth's function table can name SciPy's functions at import time without importing SciPy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


class LazyModule:
    """A module whose attributes are functions calling the module's own, imported on first call."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str) -> Callable:
        if attribute.startswith("__"):
            raise AttributeError(attribute)

        def call(*args, **kwargs):
            return getattr(importlib.import_module(self._name), attribute)(*args, **kwargs)
        call.__name__ = call.__qualname__ = attribute
        return call


special = LazyModule("scipy.special")
