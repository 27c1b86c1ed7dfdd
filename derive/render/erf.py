"""erf, erfc and the normal distribution function ndtr for the generated NumPy modules, vectorised: NumPy
has no erf, and SciPy's ``ndtr`` is a scalar loop (about 15-30 ns an entry).

The approximations are Cephes' (S. L. Moshier, Cephes Math Library 2.2, 1992, ``ndtr.c``; the tables
SciPy still uses in ``xsf/cephes/ndtr.h``): erf(y) = y T(y^2) / U(y^2) for |y| < 1, erfc(y) =
exp(-y^2) P(y) / Q(y) for 1 <= y < 8 and exp(-y^2) R(y) / S(y) beyond, each a rational function of
relative error near 1e-16. Each is evaluated on a whole block with in-place ufuncs (the callers run in
:func:`derive.render.runtime.blockwise`'s cache-sized blocks, in a workspace each thread reuses), the
regions joined by exact products with 0/1 masks (``np.where`` on a random mask costs 10 multiplications);
erfc only on the entries that need it when they are few, R / S only where a block has an entry past 8. float32 runs in float32 arithmetic, with
the tail of Cephes' single-precision erfcf.c (exp(-y^2) P(1 / y^2) / y on [1, 2), R beyond: no division
but one reciprocal, lower degrees); its erf is the float64 one's T / U. GELU in float32 reads Phi(-|x|)
for |x| <= 4 off one rational of derive's own fit instead (_normal_tail32): a third of the passes.

Unlike Cephes (and SciPy, up to about 1800 ulp in ndtr's lower tail), exp(-c^2 x^2) is computed from x
split as m + f, m a multiple of 1/32: c^2 m^2 is exact, so the rounding of x^2 (an absolute error of
x^2 ulp in the exponent) no longer spoils the tail; the small rest goes through a second exp.

These are real Python copied into the generated modules by :func:`derive.render.runtime.source`: each
function holds its own constants, as a copied function can read nothing else of this file.
"""

from __future__ import annotations

import numpy as np

__all__ = ["erf", "erfc", "ndtr"]


def erf(x, out):
    """erf(x) into out (float64 or float32): Cephes' rational approximations (see _erf_regions)."""
    if x.size > 1 << 16:
        return _in_chunks(erf, x, out)
    work = _workspace(out.dtype, x.shape, 12)
    inner, tail, small, spare = _erf_regions(x, 1.0, work)
    np.subtract(1, tail, out=tail)  # |erf(x)| = 1 - erfc(|x|) for |x| >= 1
    _select(small, inner, tail, spare, out=work[8])
    np.copysign(work[8], x, out=out)  # erf is odd: erf(-0) = -0
    return out


def erfc(x, out):
    """erfc(x) = 1 - erf(x) into out (float64 or float32), without cancellation for large x."""
    if x.size > 1 << 16:
        return _in_chunks(erfc, x, out)
    work = _workspace(out.dtype, x.shape, 12)
    inner, tail, small, spare = _erf_regions(x, 1.0, work)
    np.less(x, 0, out=work[7])
    np.copysign(inner, x, out=inner)
    np.subtract(1, inner, out=inner)  # 1 - erf(x) for |x| < 1
    np.subtract(2, tail, out=work[8])  # erfc(x) = 2 - erfc(-x) for x <= -1
    _select(work[7], work[8], tail, spare, out=tail)
    _select(small, inner, tail, spare, out=out)
    return out


def ndtr(x, out):
    """Phi(x), the standard normal distribution function, (1 + erf(x / sqrt 2)) / 2 into out (float64 or
    float32): Cephes' rational approximations (see _erf_regions), the lower tail Phi(x) = erfc(-x / sqrt 2)
    / 2 computed without subtraction."""
    if x.size > 1 << 16:
        return _in_chunks(ndtr, x, out)
    work = _workspace(out.dtype, x.shape, 12)
    inner, tail, small, spare = _erf_regions(x, 0.5, work)
    upper = np.greater(x, 0, out=work[7])
    np.subtract(1, inner, out=inner)
    inner *= small
    np.subtract(1, small, out=spare)
    tail *= spare
    tail += inner  # erfc(|x| / sqrt 2): each product with 0 or 1 is exact
    np.subtract(0.5, upper, out=spare)
    tail *= spare
    np.add(tail, upper, out=out)  # Phi(x) = 1 - erfc / 2 for x > 0, erfc / 2 for x <= 0 (no subtraction)
    return out


def _erf_regions(x, c2, work):
    """Rows of work: (erf(c |x|), valid where |c x| < 1; erfc(c |x|), valid where |c x| >= 1, 0 where an
    entry is not evaluated; that mask as 0 or 1; a spare row), c^2 = c2 (1 or 1/2: exact products), in
    work's dtype (12 rows). erf is evaluated over the whole array; erfc too where most entries need it,
    else only on those, gathered (GELU's inputs lie mostly where |x| < sqrt 2). Coefficients: Cephes
    ndtr.c (Moshier 1992), tables T, U (erf on |y| < 1), P, Q (erfc on [1, 8)), R, S (erfc beyond)."""
    a, y, z, inner, tail, spare, small = work[:7]
    c = c2 ** 0.5
    np.abs(x, out=a)
    np.minimum(a, 28.5 / c, out=a)  # erfc(28.5) underflows; this keeps 32 a finite (nan stays nan)
    np.multiply(a, c, out=y)
    np.less(y, 1, out=small)
    # erf(y) = y T(y^2) / U(y^2) for y < 1, y^2 = c^2 a^2, in float32 too: with Cephes' erff.c instead,
    # y T(y^2), ndtr's (1 - erf) / 2 near x = -1.4 reached 1.02e-6 (8.4e-7 so), float32's 1e-6 bound
    np.square(a, out=z)
    z *= c2
    _polynomial(z, (9.60497373987051638749E0, 9.00260197203842689217E1, 2.23200534594684319226E3,
                    7.00332514112805075473E3, 5.55923013010394962768E4), False, out=inner)
    _polynomial(z, (3.35617141647503099647E1, 5.21357949780152679795E2, 4.59432382970980127987E3,
                    2.26290000613890934246E4, 4.92673942608635921086E4), True, out=spare)
    inner /= spare
    inner *= y
    a, y, tail, spare, m, rest = (row.reshape(-1) for row in (a, y, tail, spare, z, work[7]))
    wanted = np.flatnonzero(y >= 1)
    if 2 * wanted.size > y.size:
        _erfc_tail(a, y, c2, tail, spare, m, rest)
    else:
        k = wanted.size
        gathered = [np.take(row, wanted, out=work[9 + n].reshape(-1)[:k]) for n, row in enumerate((a, y))]
        _erfc_tail(*gathered, c2, work[11].reshape(-1)[:k], spare[:k], m[:k], rest[:k])
        tail.fill(0)
        tail[wanted] = work[11].reshape(-1)[:k]
    return inner, work[4], small, work[5]


def _erfc_tail(a, y, c2, out, spare, m, rest):
    """erfc(y), y = c a >= 1, into out (1-d rows): exp(-y^2) P(y) / Q(y) for y < 8, exp(-y^2) R(y) / S(y)
    beyond (Cephes ndtr.c); in float32 exp(-y^2) P(1 / y^2) / y for y < 2, R(1 / y^2) / y beyond (Cephes
    erfcf.c: no division but 1 / y, and lower degrees)."""
    if out.dtype == np.float32:
        np.maximum(y, 1, out=spare)  # entries below 1 (computed, then not selected) stay finite
        np.reciprocal(spare, out=spare)
        np.square(spare, out=m)
        _polynomial(m, (2.326819970068386E-2, -1.387039388740657E-1, 3.687424674597105E-1, -5.824733027278666E-1,
                        6.210004621745983E-1, -4.944515323274145E-1, 3.404879937665872E-1, -2.741127028184656E-1,
                        5.638259427386472E-1), False, out=out)
        far = np.flatnonzero(y >= 2)
        if far.size:
            out[far] = _polynomial(m[far], (-1.047766399936249E+1, 1.297719955372516E+1, -7.495518717768503E+0,
                                            2.921019019210786E+0, -1.015265279202700E+0, 4.218463358204948E-1,
                                            -2.820767439740514E-1, 5.641895067754075E-1), False,
                                   out=np.empty(far.size, out.dtype))
        out *= spare
    else:
        _polynomial(y, (2.46196981473530512524E-10, 5.64189564831068821977E-1, 7.46321056442269912687E0,
                        4.86371970985681366614E1, 1.96520832956077098242E2, 5.26445194995477358631E2,
                        9.34528527171957607540E2, 1.02755188689515710272E3, 5.57535335369399327526E2),
                    False, out=out)
        _polynomial(y, (1.32281951154744992508E1, 8.67072140885989742329E1, 3.54937778887819891062E2,
                        9.75708501743205489753E2, 1.82390916687909736289E3, 2.24633760818710981792E3,
                        1.65666309194161350182E3, 5.57535340817727675546E2), True, out=spare)
        out /= spare
        far = np.flatnonzero(y >= 8)
        if far.size:  # rare: only where a block has such an entry
            w = y[far]
            ratio = _polynomial(w, (5.64189583547755073984E-1, 1.27536670759978104416E0, 5.01905042251180477414E0,
                                    6.16021097993053585195E0, 7.40974269950448939160E0, 2.97886665372100240670E0),
                                False, out=np.empty_like(w))
            ratio /= _polynomial(w, (2.26052863220117276590E0, 9.39603524938001434673E0, 1.20489539808096656605E1,
                                     1.70814450747565897222E1, 9.60896809063285878198E0, 3.36907645100081516050E0),
                                 True, out=np.empty_like(w))
            out[far] = ratio
    # exp(-c^2 a^2) with a = m + f, m = rint(32 a) / 32: c^2 m^2 is exact, the rest c^2 f (2 m + f) small
    f = spare
    np.multiply(a, 32, out=m)
    np.rint(m, out=m)
    m *= 1 / 32
    np.subtract(a, m, out=f)
    np.multiply(m, 2, out=rest)
    rest += f
    rest *= f
    rest *= -c2
    np.exp(rest, out=rest)
    np.square(m, out=m)
    m *= -c2
    np.exp(m, out=m)
    m *= rest
    out *= m
    return out


def _normal_tail32(t, out, work):
    """Phi(-t) = erfc(t / sqrt 2) / 2 into out for float32 t in [0, 4] (GELU's entries but about 6e-5 of
    them): exp(-t^2 / 2) P(t) / Q(t), one rational of degree 3 / 4 in t itself, within 1.6e-8 of
    exp(t^2 / 2) Phi(-t) over [0, 4] (fitted for derive: Loeb's linearised least squares in a Chebyshev
    basis with Lawson's reweighting, against SciPy's erfcx; tests/render/test_erf.py checks the bound).
    No region to join and one exp: about 20 passes
    where the Cephes path (ndtr) makes 60. On [0, 4] t^2 rounds by at most 2^-22 t^2, 2.4e-7 relative in
    the exp; with the exp's own error and the fit, within 1e-6 of Phi(-t). work: two rows of t's shape."""
    square, spare = work
    np.square(t, out=square)
    square *= -0.5
    np.exp(square, out=square)
    _polynomial(t, (0.3984290107031191, 3.2160253025861536, 10.623833820192875, 16.64337138985156), False,
                out=out)
    _polynomial(t, (8.03238527451454, 27.93321403440022, 47.80661202185017, 33.28674327927011), True, out=spare)
    out /= spare
    out *= square
    return out


def _polynomial(t, coefficients, monic, out):
    """The polynomial with these coefficients (highest power first; with monic, a leading 1 before them)
    at t, by Horner's rule in out's dtype, into out."""
    if monic:
        np.add(t, coefficients[0], out=out)
    else:
        np.multiply(t, coefficients[0], out=out)
    for k, coefficient in enumerate(coefficients[1:]):
        if k or monic:
            out *= t
        out += coefficient
    return out


def _select(mask, one, zero, spare, out):
    """one where mask is 1, zero where it is 0, into out (which may be one or zero): products with 0 and 1
    are exact, and run at the speed of a multiplication, unlike np.where on a random mask."""
    np.subtract(1, mask, out=spare)
    spare *= zero
    np.multiply(one, mask, out=out)
    out += spare
    return out


def _in_chunks(function, x, out):
    """function(x, out) on chunks of 2^16 entries: the workspace holds one, and a chunk stays in cache."""
    flat_x = np.ascontiguousarray(x).reshape(-1)
    flat_out = out.reshape(-1) if out.flags.c_contiguous else np.empty(out.size, out.dtype)
    for start in range(0, flat_x.size, 1 << 16):
        function(flat_x[start:start + (1 << 16)], flat_out[start:start + (1 << 16)])
    if not out.flags.c_contiguous:
        out[...] = flat_out.reshape(out.shape)
    return out


def _workspace(dtype, shape, rows):
    """rows empty arrays of this shape (at most 2^16 entries) and dtype, views of one buffer this thread
    reuses: a block's dozen fresh temporaries cost more in page faults than the arithmetic on them."""
    from threading import get_ident
    size = int(np.prod(shape))
    buffers = _workspace.__dict__.setdefault("buffers", {})  # (thread, dtype) -> its buffer
    key = (get_ident(), np.dtype(dtype))
    buffer = buffers.get(key)
    if buffer is None or buffer.size < rows * size:
        buffer = buffers[key] = np.empty(rows * max(size, 1 << 16), dtype)
    return [buffer[k * size:(k + 1) * size].reshape(shape) for k in range(rows)]
