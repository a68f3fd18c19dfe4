"""The vectorizable exp/tanh/erf of schedules.fastmath against float64 numpy, compiled vectorized as in kernels."""

import math

import numpy as np
import pytest

from schedules.fastmath import fast_erf, fast_exp, fast_one_plus_exp, fast_tanh
from schedules.tvm_env import host_target, tvm

te = tvm.te


def _run(fn, x: np.ndarray, dtype: str = "float32") -> np.ndarray:
    a = te.placeholder(x.shape, dtype, name="A")
    b = te.compute(x.shape, lambda i: fn(a[i]), name="B")
    sch = tvm.s_tir.Schedule(te.create_prim_func([a, b]))
    (loop,) = sch.get_loops(sch.get_sblock("B"))
    _, lanes = sch.split(loop, [None, 8])
    sch.vectorize(lanes)  # the polynomial must survive vectorization, which is why it exists
    f = tvm.compile(sch.mod, target=host_target())["main"]
    out = tvm.runtime.tensor(np.zeros(x.shape, dtype))
    f(tvm.runtime.tensor(x.astype(dtype)), out)
    return out.numpy()


def _grid(lo: float, hi: float, n: int = 1 << 14) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([np.linspace(lo, hi, n), rng.uniform(lo, hi, n)]).astype(np.float32)


def test_exp_is_within_two_ulp_over_the_normal_range():
    x = _grid(-87.0, 88.5)
    got = _run(fast_exp, x).astype(np.float64)
    ref = np.exp(x.astype(np.float64))
    ulp = np.spacing(ref.astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got - ref) / ulp) <= 2.0


def test_exp_edges_overflow_underflow_and_nan():
    x = np.array([89.0, 1000.0, -88.0, -1000.0, np.nan, 0.0, np.inf, -np.inf, 1, 2, 3, 4, 5, 6, 7, 8],
                 dtype=np.float32)
    got = _run(fast_exp, x)
    assert np.isposinf(got[0]) and np.isposinf(got[1]) and np.isposinf(got[6])
    assert got[2] == 0.0 and got[3] == 0.0 and got[7] == 0.0
    assert np.isnan(got[4])
    assert got[5] == 1.0
    np.testing.assert_allclose(got[8:], np.exp(np.arange(1, 9, dtype=np.float64)), rtol=3e-7)


@pytest.mark.parametrize("fn, ref, lo, hi, tol", [
    (fast_tanh, np.tanh, -12.0, 12.0, 2e-7),
    (fast_erf, np.vectorize(math.erf), -6.0, 6.0, 5e-7),
])
def test_tanh_and_erf_absolute_error(fn, ref, lo, hi, tol):
    x = _grid(lo, hi)
    got = _run(fn, x).astype(np.float64)
    err = np.abs(got - ref(x.astype(np.float64)))
    assert err.max() <= tol
    odd = _run(fn, np.array([-3.0, 3.0, -0.5, 0.5, 0.0, 1e-6, -1e-6, 2.0], np.float32))
    assert odd[0] == -odd[1] and odd[2] == -odd[3] and odd[4] == 0.0


def test_other_dtypes_keep_the_tvm_intrinsic():
    x = np.linspace(-5, 5, 64)
    np.testing.assert_allclose(_run(fast_exp, x, "float64"), np.exp(x), rtol=1e-14)


def test_nested_and_repeated_uses_compile():
    """Each call binds its own variables: exp of an exp, tanh of an erf, and two exps in one body."""
    x = np.linspace(-3, 3, 64).astype(np.float32)
    got = _run(lambda v: fast_tanh(fast_erf(v)) + fast_exp(fast_exp(v * 0.1)) * fast_exp(v * 0.5), x)
    want = np.tanh(np.vectorize(math.erf)(x)) + np.exp(np.exp(x * 0.1)) * np.exp(x * 0.5)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


def test_one_plus_exp_as_a_denominator_gives_sigmoid_and_silu():
    """Sigmoid and SiLU through fast_one_plus_exp: within 3 float32 ulp of the float64 value, or 1e-36 absolute
    where the true result is below that; saturating at both ends, SiLU(−∞) NaN as in PyTorch, NaN kept."""
    x = np.concatenate([_grid(-120.0, 120.0), np.array([-1e30, 1e30, 0.0, 87.5, 88.5, -87.5, -88.5], np.float32)])
    xd = x.astype(np.float64)
    with np.errstate(over="ignore"):
        refs = (1.0 / (1.0 + np.exp(-xd)), xd / (1.0 + np.exp(-xd)))
    for fn, ref in zip((lambda v: 1.0 / fast_one_plus_exp(-v), lambda v: v / fast_one_plus_exp(-v)), refs):
        got = _run(fn, x).astype(np.float64)
        ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
        assert np.all(np.abs(got - ref) <= 3 * ulp + 1e-36)
    special = np.array([np.inf, -np.inf, np.nan, 0.0], np.float32)
    sig = _run(lambda v: 1.0 / fast_one_plus_exp(-v), special)
    assert sig[0] == 1.0 and sig[1] == 0.0 and np.isnan(sig[2]) and sig[3] == 0.5
    silu = _run(lambda v: v / fast_one_plus_exp(-v), special)
    assert silu[0] == np.inf and np.isnan(silu[1]) and np.isnan(silu[2]) and silu[3] == 0.0


def test_sigmoid_and_silu_lower_through_the_bounded_denominator():
    """The lowering spots 1/(1 + exp(u)) in sigmoid's and SiLU's instructions (and nowhere else): one select
    fewer than exp's three, and one power of two."""
    import sympy

    from schedules.lowering import _Translator

    a = te.placeholder((8,), "float32", name="A")
    x = sympy.IndexedBase("A")[sympy.Symbol("i")]
    env = {"A": a, sympy.Symbol("i"): tvm.tirx.const(0, "int32")}
    text = lambda e: str(_Translator(env, "float32").data(e))  # noqa: E731
    for bounded in (1 / (1 + sympy.exp(-x)), x / (1 + sympy.exp(-x))):
        assert text(bounded).count("T.Select") == 2
    assert text(sympy.log(1 + sympy.exp(x))).count("T.Select") == 3  # softplus keeps the guarded exp


def test_erf_keeps_nan():
    # the clamp to [−4, 4] turned NaN into 4, so erf(NaN) read 1.0
    got = _run(fast_erf, np.array([np.nan, 0.5, np.nan, 1.0, np.inf, -np.inf, 0.0, -np.nan], np.float32))
    assert np.isnan(got[[0, 2, 7]]).all()
    np.testing.assert_allclose(got[[1, 3, 4, 5, 6]], [math.erf(0.5), math.erf(1.0), 1.0, -1.0, 0.0], rtol=1e-6)


@pytest.mark.parametrize("fn, ref", [
    (fast_erf, np.vectorize(math.erf)),
    (fast_one_plus_exp, lambda x: 1.0 + np.exp(x)),
])
def test_half_precision_compiles_and_is_accurate(fn, ref):
    # LLVM has no float16 erf (it computes in float32), and 1 + e^x added a float32 constant to a float16 value
    x = np.linspace(-3, 3, 64)
    got = _run(fn, x, "float16").astype(np.float64)
    np.testing.assert_allclose(got, ref(x.astype(np.float16).astype(np.float64)), rtol=2e-3, atol=2e-3)
