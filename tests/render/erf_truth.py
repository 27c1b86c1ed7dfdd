"""erf, erfc and the normal distribution function to 40 digits (mpmath), rounded once to float64: the
truth for the generated modules' vectorised erf helpers (derive/render/erf.py), which shares no code or
coefficient with them. SciPy's own ndtr is off by up to about 2000 ulp in its lower tail (it rounds
x / sqrt 2 before squaring it), so it cannot be the truth there."""

from __future__ import annotations

import mpmath
import numpy as np

FUNCTIONS = {"erf": mpmath.erf, "erfc": mpmath.erfc, "ndtr": mpmath.ncdf}


def truth(name: str, x: np.ndarray) -> np.ndarray:
    """FUNCTIONS[name] at each entry of x (any float dtype), correctly rounded to float64."""
    function = FUNCTIONS[name]
    with mpmath.workdps(40):
        flat = [float(function(mpmath.mpf(float(v)))) if np.isfinite(v) else float(function(float(v)))
                for v in np.asarray(x, dtype=np.float64).reshape(-1)]
    return np.array(flat).reshape(np.shape(x))
