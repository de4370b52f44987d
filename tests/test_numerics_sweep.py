"""Numerical sweep: magnitudes 1e-30 … 1e30, four dtypes, degenerate shapes, through the public spectral and
quantization functions. Each call either returns the documented result or raises a named error; never NaN or inf.

References are independent of the package: NumPy LAPACK in float64 for singular values, float64 NumPy for the
quantization error, and, for scale equivariance, the package itself on the same matrix moved to max|W| ∈ [0.5, 1)
by a power of two (exact in floating point).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import lapack_sv
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from zipfrmt import quant as zq
from zipfrmt import spectra as S

DTYPES = [
    pytest.param(np.float16, id="float16"),
    pytest.param(jnp.bfloat16, id="bfloat16"),
    pytest.param(np.float32, id="float32"),
    pytest.param(np.float64, id="float64"),
]
KINDS = ("gaussian", "rank1", "zero")
SWEEP = settings(max_examples=10, deadline=None)

exponents = st.integers(-30, 30)
seeds = st.integers(0, 2**16)


def base_matrix(kind: str, shape: tuple[int, int], seed: int) -> np.ndarray:
    """float64, max|B| = 1 (or all zero)."""
    rng = np.random.default_rng(seed)
    if kind == "zero":
        return np.zeros(shape)
    if kind == "rank1":
        B = np.outer(rng.standard_normal(shape[0]), rng.standard_normal(shape[1]))
    else:
        B = rng.standard_normal(shape)
    return B / np.abs(B).max()


def at_magnitude(B: np.ndarray, exponent: int, dtype) -> np.ndarray:
    """``B·10^exponent`` rounded to ``dtype`` (inf where the dtype overflows, 0 where it underflows)."""
    with np.errstate(over="ignore", under="ignore"):
        return (B * 10.0**exponent).astype(dtype)


def as_f64(x) -> np.ndarray:
    return np.asarray(x).astype(np.float64)


# --- singular values and the measures on them -----------------------------------------------------------------------

SV_SHAPES = [(1, 7), (7, 1), (12, 5), (5, 12)]
#: Absolute tolerance on every σ_k, relative to σ_1. A float32 Gram matrix resolves σ_k only down to ~√u·σ_1
#: (u = 2^-24), so a rank-deficient matrix's zero σ come out near 1e-4·σ_1 with "gram" and "auto".
SV_TOL = {"svd": 2e-5, "gram": 3e-3, "auto": 3e-3, "gram64": 1e-6, "chunked": 1e-6}


@pytest.mark.parametrize("dtype", DTYPES)
@SWEEP
@given(method=st.sampled_from(sorted(SV_TOL)), shape=st.sampled_from(SV_SHAPES), kind=st.sampled_from(KINDS),
       exponent=exponents, seed=seeds)
def test_singular_values_equal_lapack_relative_to_the_largest_at_every_magnitude(
    dtype, method, shape, kind, exponent, seed
):
    W = at_magnitude(base_matrix(kind, shape, seed), exponent, dtype)
    if method == "chunked" and shape[0] < shape[1]:
        with pytest.raises(ValueError, match=r"W: method='chunked' streams rows and needs V >= d"):
            S.singular_values(W, method)
        return
    if not np.isfinite(as_f64(W)).all():  # e.g. float16 at 1e5: the dtype cannot hold the magnitude
        with pytest.raises(ValueError, match=r"W(\[0:8192\])?: expected finite entries"):  # chunked names the block
            S.singular_values(W, method)
        return
    s = np.asarray(S.singular_values(W, method))
    ref = lapack_sv(W)
    assert s.dtype == np.float32 and s.shape == ref.shape
    assert np.isfinite(s).all()
    np.testing.assert_allclose(s, ref, rtol=0, atol=SV_TOL[method] * ref[0])
    if ref[0] == 0:
        assert np.all(s == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@SWEEP
@given(shape=st.sampled_from(SV_SHAPES), kind=st.sampled_from(KINDS), exponent=exponents, seed=seeds)
def test_summarize_gives_scale_free_measures_and_no_nan_without_a_reason(dtype, shape, kind, exponent, seed):
    W = at_magnitude(base_matrix(kind, shape, seed), exponent, dtype)
    if not np.isfinite(as_f64(W)).all():
        with pytest.raises(ValueError, match=r"W: expected finite entries"):
            S.summarize(W)
        return
    sm = S.summarize(W)
    for name in ("sigma_max", "sigma_min", "stable_rank", "effective_rank", "participation_ratio"):
        assert math.isfinite(getattr(sm, name)), name
    assert math.isnan(sm.rank_exponent) == ("rank_exponent" in sm.reasons)
    assert math.isnan(sm.esd_alpha) == ("esd_alpha" in sm.reasons)
    ref = lapack_sv(W)
    if ref[0] == 0:
        assert sm.stable_rank == 0 and sm.effective_rank == 0 and sm.participation_ratio == 0
        assert sm.reasons["rank_exponent"] == "all singular values are zero"
        return
    unit = ref / ref[0]
    assert sm.sigma_max == pytest.approx(ref[0], rel=1e-4)
    assert sm.stable_rank == pytest.approx(np.sum(unit**2), rel=1e-3)
    assert sm.participation_ratio == pytest.approx(np.sum(unit**2) ** 2 / np.sum(unit**4), rel=1e-3)


@settings(max_examples=25, deadline=None)
@given(
    s=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12).map(lambda v: np.sort(np.asarray(v))[::-1]),
    exponent=st.integers(-300, 300),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_rank_measures_are_scale_free_wherever_the_dtype_holds_the_singular_values(s, exponent, dtype):
    """r(c·σ) = r(σ) for stable rank, effective rank and participation ratio, over float64's whole range."""
    with np.errstate(over="ignore", under="ignore"):
        scaled = (s * 10.0**exponent).astype(dtype)
    if not np.isfinite(scaled).all():
        with pytest.raises(ValueError, match=r"s: expected finite entries"):
            S.stable_rank(scaled)
        return
    assume(np.all((scaled > 0) == (s > 0)))  # no σ lost to underflow: otherwise it is another spectrum
    ref = s / s[0] if s[0] > 0 else s
    for fn in (S.stable_rank, S.effective_rank, S.participation_ratio):
        got, want = float(fn(scaled)), float(fn(ref))
        assert math.isfinite(got)
        assert got == pytest.approx(want, rel=1e-5), fn.__name__


@pytest.mark.parametrize("exponent", [-30, 0, 30])
@pytest.mark.parametrize("kind", ["gaussian", "rank1"])
def test_singular_values_auto_under_jit_meets_the_eager_calls_accuracy(exponent, kind):
    """Under jit "auto" runs the compiled kernels; eagerly, a CPU matrix goes to the host BLAS path. Two
    algorithms, one guarantee: σ_1 to float32 precision, every σ_k within the documented SV_TOL·σ_1 of LAPACK
    (a rank-1 matrix's zero σ come out as float32 Gram noise near 1e-4·σ_1 under jit, near 1e-8·σ_1 eagerly)."""
    W = at_magnitude(base_matrix(kind, (24, 8), 3), exponent, np.float32)
    eager = np.asarray(S.singular_values(W))
    jitted = np.asarray(jax.jit(S.singular_values)(jnp.asarray(W)))
    ref = lapack_sv(W)
    assert jitted[0] == pytest.approx(eager[0], rel=1e-6)
    for s in (eager, jitted):
        np.testing.assert_allclose(s, ref, rtol=0, atol=SV_TOL["auto"] * ref[0])


def test_singular_values_auto_under_jit_takes_the_float64_gram_for_a_wide_spectrum():
    """The accuracy rule of "auto" is applied inside the compiled program (lax.cond), not skipped."""
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((64, 8)))
    V, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    sigma = np.logspace(0, -2.9, 8)  # 58 dB: too wide for the float32 Gram matrix
    W = ((U * sigma) @ V.T).astype(np.float32)
    assert not S.gram_is_accurate(np.asarray(S.singular_values(W, "gram")))
    jitted = np.asarray(jax.jit(S.singular_values)(jnp.asarray(W)))
    np.testing.assert_allclose(jitted, lapack_sv(W), rtol=1e-4)


# --- quantization ----------------------------------------------------------------------------------------------------

SPECS = ["int4-row", "int3-group32", "int8-tensor", "nf4", "fp8_e4m3"]
Q_SHAPES = [(1, 64), (64, 1), (16, 40)]
STATS = ("noise_var_model", "noise_var_measured", "error_mean", "zero_fraction", "bussgang_gain", "residual_var",
         "rel_error")


@pytest.mark.parametrize("dtype", DTYPES)
@SWEEP
@given(spec=st.sampled_from(SPECS), shape=st.sampled_from(Q_SHAPES), kind=st.sampled_from(KINDS),
       exponent=exponents, seed=seeds)
def test_quantization_is_scale_equivariant_or_a_named_error_at_every_magnitude(
    dtype, spec, shape, kind, exponent, seed
):
    assume(not (spec == "int3-group32" and shape[1] < 32))  # groups of 32 need rows at least that long
    W = at_magnitude(base_matrix(kind, shape, seed), exponent, dtype)
    W64 = as_f64(W)
    if not np.isfinite(W64).all():
        with pytest.raises(ValueError, match=r"W: expected finite entries"):
            zq.quantize(W, spec)
        with pytest.raises(ValueError, match=r"W: expected finite entries"):
            zq.fake_quant(W, spec)
        return
    r = zq.quantize(W, spec)
    deq = as_f64(r.dequantized)
    assert np.isfinite(deq).all()
    for name in STATS:
        assert math.isfinite(getattr(r, name)), name
    np.testing.assert_array_equal(as_f64(zq.fake_quant(W, spec)), as_f64(np.asarray(r.dequantized).astype(W.dtype)))
    if not W64.any():
        assert r.rel_error == 0 and not deq.any()
        return
    # The error the result reports is the error it has.
    true_rel = np.linalg.norm(deq - W64) / np.linalg.norm(W64)
    assert r.rel_error == pytest.approx(true_rel, rel=1e-4, abs=1e-7)
    # The same matrix at max|W| ∈ [0.5, 1), moved there by a power of two: the same grid, scaled.
    k = int(np.frexp(np.abs(W64).max())[1])
    r0 = zq.quantize(np.ldexp(W64, -k).astype(np.float32), spec)
    assert r.rel_error == pytest.approx(r0.rel_error, rel=1e-6, abs=1e-7)
    assert r.bussgang_gain == pytest.approx(r0.bussgang_gain, rel=1e-6)
    assert r.noise_var_measured == pytest.approx(math.ldexp(r0.noise_var_measured, 2 * k), rel=1e-5)
    # Equal up to float32's normal range (an entry below 2^-126 may be flushed to 0).
    np.testing.assert_allclose(deq, np.ldexp(as_f64(r0.dequantized), k), rtol=0, atol=2.0**-125)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("exponent", [-30, 30])
def test_fake_quant_under_jit_equals_quantize_at_extreme_magnitudes(spec, exponent):
    W = at_magnitude(base_matrix("gaussian", (8, 64), 5), exponent, np.float32)
    want = np.asarray(zq.quantize(W, spec).dequantized)
    got = np.asarray(jax.jit(lambda w: zq.fake_quant(w, spec))(jnp.asarray(W)))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("spec", ["int4-row", "int3-group32", "int8-row"])
def test_quantize_names_an_int_group_whose_grid_float32_cannot_hold(spec):
    """A row 1e-38 in size beside normal rows (steps below 2^-125) is a named error, not a silently zeroed row."""
    W = base_matrix("gaussian", (4, 64), 7).astype(np.float32)
    W[2] *= np.float32(1e-38)
    with pytest.raises(ValueError, match=r"W: expected scale groups whose quantization step float32 can hold"):
        zq.quantize(W, spec)


def test_quantize_names_a_real_format_scale_float32_cannot_hold():
    """fp8 at max|W| = 1e-37: its scale max|w|/448 is below 2^-125."""
    W = at_magnitude(base_matrix("gaussian", (4, 64), 7), -37, np.float32)
    with pytest.raises(ValueError, match=r"W: expected scale groups whose quantization step float32 can hold"):
        zq.quantize(W, "fp8_e4m3")
