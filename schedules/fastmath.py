"""Vectorizable float32 exp, tanh and erf for the lowering.

LLVM turns ``exp``/``tanh``/``erf`` of a vector into one libm call per lane, so every sigmoid, SiLU, softmax and
GELU ran scalar: on this machine a vectorized ``te.exp`` loop was 6× slower than the polynomial below, ``te.erf``
30× slower. These are written with ``+ - * /``, ``floor``, min/max, selects and a bit reinterpretation only, which
LLVM vectorizes.

Accuracy (float32, checked in tests/schedules/test_fastmath.py against float64 numpy):

* ``exp``: Cody–Waite range reduction ``x = n·ln2 + r`` and a degree-7 polynomial for ``e^r`` on
  ``|r| ≤ ln2/2`` (the cephes ``expf`` coefficients): ≤ 2 ulp over the normal range; ``+inf`` above
  ``ln(FLT_MAX)``; 0 below the smallest normal result (the true values there are denormals < 1.2e-38);
  NaN in, NaN out.
* ``tanh = sign(x)·(1 − e)/(1 + e)`` with ``e = exp(−2|x|)``: absolute error ≤ 2e-7 (relative error grows only
  for ``|x| < 1e-3``, where the absolute error stays ≤ 2e-7).
* ``erf``: a rational minimax approximation on [−4, 4]: absolute and relative error ≤ 5e-7 (no cancellation near 0).
* ``1 + exp`` as a divisor (sigmoid, SiLU; :func:`fast_one_plus_exp`): the same polynomial with two selects instead
  of three and one power of two; sigmoid and SiLU within 3 ulp.

Other dtypes keep TVM's intrinsics (float64 models ask for float64 accuracy).
"""

from __future__ import annotations

from schedules.tvm_env import tvm

te = tvm.te
tirx = tvm.tirx

F32 = "float32"
_EXP_HI = 88.72283935546875     # ln(FLT_MAX): above it exp overflows to +inf
_EXP_LO = -87.33654022216797    # ln(FLT_MIN): below it the result would be denormal
_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4   # ln 2 = hi + lo, hi with few mantissa bits: exact n·hi
_EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
             5.0000001201e-1)
# erf(x) ≈ x·P(x²)/Q(x²): the minimax rational approximation also used by Eigen and TVM's fast_erf
_ERF_NUM = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
            -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_DEN = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
            -1.42647390514189e-02)


def _c(value: float):
    return tirx.const(value, F32)


def _dtype(x) -> str:
    return str(getattr(x, "dtype", None) or getattr(x, "ty", ""))


def _is_f32(x) -> bool:
    """TIR expressions of TVM 0.27 carry their type as ``ty`` (``dtype`` only on some node kinds)."""
    return _dtype(x) == F32


def _pow2(k):
    """2^k as float32 for an int32 k in [-126, 127], by writing the exponent bits."""
    return tirx.reinterpret(F32, tirx.shift_left(k + tirx.const(127, "int32"), tirx.const(23, "int32")))


def _let(value, dtype: str, body_of):
    """``body_of(v)`` with ``v`` bound to ``value`` once (a TIR Let): written out, the polynomial repeats its
    subexpressions dozens of times, and inside a fused epilogue LLVM did not merge them (7 ns per exp)."""
    var = tirx.Var("fm", dtype)
    return tirx.Let(var, value, body_of(var))


def fast_exp(x):
    """e^x for a float32 TIR expression (see the module docstring for its accuracy)."""
    if not _is_f32(x):
        return te.exp(x)
    return _let(x, F32, _exp_of_var)


def _exp_poly(r):
    """e^r on |r| ≤ ln2/2."""
    p = _c(_EXP_POLY[0])
    for coeff in _EXP_POLY[1:]:
        p = p * r + _c(coeff)
    return p * r * r + r + _c(1.0)


def _reduced(xc, body_of):
    """``body_of(n, r)`` with ``xc = n·ln2 + r`` (n a whole float32, |r| ≤ ln2/2), each bound once."""
    def with_n(n):
        return _let(xc - n * _c(_LN2_HI) - n * _c(_LN2_LO), F32, lambda r: body_of(n, r))
    return _let(tirx.floor(xc * _c(1.4426950408889634) + _c(0.5)), F32, with_n)


def _exp_of_var(x):
    # clamped to the finite range; the selects below restore inf / 0 / NaN outside it
    xc = tirx.max(tirx.min(x, _c(_EXP_HI)), _c(_EXP_LO))

    def body(n, r):
        p = _exp_poly(r)

        # 2^n as two halves: n reaches 128 and -126 at the ends, one power of two would leave the normal range
        def with_ni(ni):
            half = tirx.shift_right(ni, tirx.const(1, "int32"))
            return p * _pow2(half) * _pow2(ni - half)
        y = _let(tirx.Cast("int32", n), "int32", with_ni)
        y = tirx.Select(x > _c(_EXP_HI), _c(float("inf")), y)
        y = tirx.Select(x < _c(_EXP_LO), _c(0.0), y)
        return tirx.Select(tirx.isnan(x), x, y)  # NaN: min/max above would have replaced it by a bound
    return _reduced(xc, body)


# 1 + e^x as a denominator: n stays within [-125, 127] over the clamped range, so 2^n is one power of two
_DEN_HI, _DEN_LO = 88.0, -87.0


def fast_one_plus_exp(x):
    """1 + e^x for a float32 TIR expression that is divided by — 1/(1 + e^−x) of sigmoid and SiLU — at fewer
    instructions than ``1 + fast_exp(x)``: below −87, 1 + e^x rounds to 1 whatever e^x is, so that end needs no
    select, and with x clamped to [−87, 88] 2^n is one power of two. Above 88 the denominator is +∞ (the quotient
    is then 0 or below 4e-39 in magnitude anyway; SiLU(−∞) stays NaN, as in PyTorch); NaN stays NaN."""
    if not _is_f32(x):
        return te.exp(x) + tirx.const(1.0, _dtype(x))

    def of(v):
        xc = tirx.max(tirx.min(v, _c(_DEN_HI)), _c(_DEN_LO))

        def body(n, r):
            y = _c(1.0) + _exp_poly(r) * _pow2(tirx.Cast("int32", n))
            y = tirx.Select(v > _c(_DEN_HI), _c(float("inf")), y)
            return tirx.Select(tirx.isnan(v), v, y)
        return _reduced(xc, body)
    return _let(x, F32, of)


def fast_tanh(x):
    """tanh for a float32 TIR expression, through :func:`fast_exp` of ``−2|x|`` (never overflows)."""
    if not _is_f32(x):
        return te.tanh(x)

    def of(v):
        def with_e(e):
            t = (_c(1.0) - e) / (_c(1.0) + e)
            return tirx.Select(v < _c(0.0), -t, t)
        return _let(fast_exp(_c(-2.0) * tirx.abs(v)), F32, with_e)
    return _let(x, F32, of)


def fast_erf(x):
    """erf for a float32 TIR expression: odd rational function of ``x`` on [−4, 4] (±1 beyond, where erf is 1
    within 2e-8)."""
    if not _is_f32(x):
        if _dtype(x) in ("float16", "bfloat16"):  # LLVM has no half-precision erf: compute it in float32
            return tirx.Cast(_dtype(x), fast_erf(tirx.Cast(F32, x)))
        return te.erf(x)

    def of(xc):
        def with_x2(x2):
            p = _c(_ERF_NUM[0])
            for coeff in _ERF_NUM[1:]:
                p = p * x2 + _c(coeff)
            q = _c(_ERF_DEN[0])
            for coeff in _ERF_DEN[1:]:
                q = q * x2 + _c(coeff)
            return xc * p / q
        return _let(xc * xc, F32, with_x2)
    # the clamp would turn NaN into ±1: NaN stays NaN, as in PyTorch
    return _let(x, F32, lambda v: tirx.Select(tirx.isnan(v), v,
                                              _let(tirx.max(tirx.min(v, _c(4.0)), _c(-4.0)), F32, of)))
