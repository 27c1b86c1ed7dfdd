"""The erf timing script (derive/bench/erf.py): every contender runs and ours agrees with SciPy's."""

import numpy as np

from derive.bench import erf

TOLERANCE = {"float64": 1e-14, "float32": 1e-6}  # of the results' largest entry


def test_every_row_is_timed_and_agrees_with_scipy():
    rows = erf.compare(shape=(300, 400), rounds=2, threads=(1, 2))
    assert {(r[0], r[1], r[2]) for r in rows} == {(d, t, w) for d in TOLERANCE for t in (1, 2)
                                                  for w in ("ndtr", "gelu forward", "gelu backward")}
    for dtype, _, _, ours, theirs, ratio, low, high, difference in rows:
        assert ours > 0 and theirs > 0 and low <= ratio <= high
        assert difference <= TOLERANCE[dtype]
    assert np.isfinite([r[3] for r in rows]).all()
