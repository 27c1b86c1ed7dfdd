"""Networks from files: a network file (Python that defines ``loss`` and ``wrt``) run with runpy and
read into an :class:`~derive.examples.Example` (or, when it defines ``output``, ``inputs`` and ``params``,
a :class:`~derive.examples.layer.LayerExample`), or a built-in example by name. The ``derive`` command
and the grading of assignments (:mod:`derive.grading`) load their networks here.
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path

from sympy import MatrixSymbol

from ..errors import NetworkFileError
from . import Example

CONVENTIONS = ("rows", "columns")


def load_network(spec: str, convention: str | None = None) -> Example:
    """A built-in example by name (in ``convention`` when given), or a network file (any argument
    that is a path or ends in .py), as an :class:`~derive.examples.Example`."""
    from . import catalogue, get, layers
    if spec in catalogue() or spec in layers():
        return get(spec, convention)
    path = Path(spec)
    if path.suffix == ".py" or os.sep in spec or path.exists():
        network = load_network_file(path)
        if convention is not None and network.convention != convention:
            raise NetworkFileError(f"{path} is written with {network.convention} as examples (its `convention`), "
                                   f"not {convention}")
        return network
    raise NetworkFileError(f"no built-in example named {spec!r} and no file {spec!r}; "
                           "'derive list' shows the built-in ones")


def load_network_file(path: Path) -> Example:
    if not path.is_file():
        raise NetworkFileError(f"network file {str(path)!r} does not exist")
    try:
        namespace = runpy.run_path(str(path), run_name="derive_network")
    except SystemExit as error:  # exit() in the file would otherwise end derive silently with its code
        raise NetworkFileError(f"{path}: it called exit({error.code!r}) instead of defining loss and wrt") from error
    except Exception as error:  # the user's code: report it in one line, whatever it raised
        raise NetworkFileError(f"{path}: running it failed with {type(error).__name__}: {error}") from error
    layer_keys = [key for key in ("inputs", "params") if key in namespace]
    if "loss" in namespace and "output" in namespace and layer_keys:
        # both forms: derive would have to guess which one the author meant
        raise NetworkFileError(f"{path} defines both a loss (loss, wrt) and a layer (output, "
                               f"{', '.join(layer_keys)}); a network file defines one of them")
    if "output" in namespace and "loss" not in namespace:
        return _layer_file(path, namespace)
    missing = [key for key in ("loss", "wrt") if key not in namespace]
    if missing:
        raise NetworkFileError(f"{path} must define {' and '.join(missing)} (the scalar loss and the list of "
                               "MatrixSymbols to differentiate with respect to)")
    wrt = namespace["wrt"]
    wrt = (wrt,) if isinstance(wrt, MatrixSymbol) else tuple(wrt) if isinstance(wrt, (list, tuple)) else wrt
    optional = {}
    for key in ("names", "dims", "values"):
        value = namespace.get(key, {}) or {}
        if not isinstance(value, dict):
            raise NetworkFileError(f"{path}: {key} must be a dict, got {type(value).__name__}")
        optional[key] = value
    title = str(namespace.get("title", f"The network of {path.name}"))
    convention = namespace.get("convention", "rows")
    if convention not in CONVENTIONS:
        raise NetworkFileError(f"{path}: convention must be 'rows' or 'columns', got {convention!r}")
    return Example(path.stem, title, str(path), namespace["loss"], wrt, **optional, convention=convention)


def _layer_file(path: Path, namespace: dict):
    """A network file that defines a layer: ``output``, ``inputs`` and ``params`` (derive.vjp)."""
    from .layer import LayerExample
    matrices = {}
    for key in ("inputs", "params"):
        value = namespace.get(key, ())
        if not isinstance(value, (MatrixSymbol, list, tuple)):
            raise NetworkFileError(f"{path}: {key} must be a MatrixSymbol or a list of them, got "
                                   f"{type(value).__name__}")
        matrices[key] = (value,) if isinstance(value, MatrixSymbol) else tuple(value)
    names = namespace.get("names", {}) or {}
    dims = namespace.get("dims", {}) or {}
    if not isinstance(names, dict) or not isinstance(dims, dict):
        raise NetworkFileError(f"{path}: names and dims must be dicts")
    title = str(namespace.get("title", f"The layer of {path.name}"))
    return LayerExample(path.stem, title, str(path), namespace["output"], matrices["inputs"], matrices["params"],
                        names=names, dims=dims)
