"""derive's core: the vocabulary (symbols, activations, softmax, losses), the rule table, the graph
and its reverse sweep, the derivation, and the independent truths (explicit expansion, numeric
evaluation). It imports nothing of derive but :mod:`derive.errors`; renderers and the checker read
what it publishes."""

from . import precedence as _precedence  # noqa: F401 - registers a matrix product's precedence with SymPy
