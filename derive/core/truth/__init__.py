"""The independent truths of the core: numeric evaluation (:mod:`.evaluate`), the loss's domain
(:mod:`.domain`) and the numeric check every closed form passes (:mod:`.numeric`).

Nothing here reads derive's rule table or its renderers: a check built from them would share
their mistakes. (The explicit expansion, SymPy's own truth, is :mod:`derive.core.explicit`.)
"""

from .domain import Draw, canonical_dims, domain, sample
from .evaluate import Program, evaluate
from .numeric import NumericCheck, check_gradients

__all__ = ["Draw", "NumericCheck", "Program", "canonical_dims", "check_gradients", "domain", "evaluate", "sample"]
