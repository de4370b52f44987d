"""zipfrmt.quant: the uniform quantizer's convention, its noise against the Widrow model, STE, Qwix formats."""

from __future__ import annotations

import logging

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import qwix
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from zipfrmt import quant as zq


@pytest.fixture(scope="module")
def gaussian():
    return np.asarray(jax.random.normal(jax.random.key(0), (1024, 256), jnp.float32))


GRANS = [("tensor", None), ("row", None), ("column", None), ("group", 32)]


# --- the convention ------------------------------------------------------------------------------------------


def test_symmetric_absmax_matches_the_design_formula():
    W = np.array([[0.9, -0.3, 0.05, -1.4], [0.2, 0.0, -0.6, 0.61]], np.float32)
    r = zq.quantize(W, 3, granularity="row")
    L = 3
    step = np.abs(W).max(axis=1, keepdims=True) / L
    expected = np.clip(np.round(W / step), -L, L) * step
    np.testing.assert_allclose(np.asarray(r.dequantized), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(r.scale), step, rtol=1e-6)


def test_rounding_ties_go_to_even():
    W = np.array([[0.5, 1.5, 2.5, -0.5, 7.0]], np.float32)  # Δ = 7/7 = 1 at 4 bits
    r = zq.quantize(W, 4)
    np.testing.assert_array_equal(np.asarray(r.dequantized), [[0.0, 2.0, 2.0, -0.0, 7.0]])


def test_asymmetric_uses_min_max_and_a_zero_point():
    W = np.array([[0.0, 1.0, 2.0, 3.0, 0.4]], np.float32)
    r = zq.quantize(W, 2, scheme="asymmetric", granularity="row")
    np.testing.assert_allclose(np.asarray(r.scale), [[1.0]])
    np.testing.assert_allclose(np.asarray(r.dequantized), [[0.0, 1.0, 2.0, 3.0, 0.0]])


def test_asymmetric_reproduces_a_constant_group_exactly():
    W = np.full((3, 8), -0.37, np.float32)
    r = zq.quantize(W, 4, scheme="asymmetric", granularity="row")
    np.testing.assert_allclose(np.asarray(r.dequantized), W, rtol=1e-6)


def test_one_bit_is_the_sign_quantizer_over_the_scale_group():
    W = np.array([[1.0, -3.0, 2.0], [0.5, 0.5, -0.5]], np.float32)
    r = zq.quantize(W, 1, granularity="row")
    m = np.abs(W).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(r.dequantized), np.sign(W) * m, rtol=1e-6)


def test_group_granularity_blocks_rows_and_pads_a_ragged_tail():
    W = np.asarray(jax.random.normal(jax.random.key(1), (5, 20)))
    r = zq.quantize(W, 4, granularity="group", group_size=8)  # groups of 8, 8, 4 (padded to 8)
    assert r.scale.shape == (5, 3)
    for g, sl in enumerate([slice(0, 8), slice(8, 16), slice(16, 20)]):
        block = W[:, sl]
        np.testing.assert_allclose(np.asarray(r.scale)[:, g], np.abs(block).max(axis=1) / 7, rtol=1e-6)
    a = zq.quantize(W, 3, scheme="asymmetric", granularity="group", group_size=8)
    tail = W[:, 16:]
    np.testing.assert_allclose(np.asarray(a.scale)[:, 2], (tail.max(axis=1) - tail.min(axis=1)) / 7, rtol=1e-6)
    s = zq.quantize(W, 1, granularity="group", group_size=8)
    expected = np.sign(tail) * np.abs(tail).mean(axis=1, keepdims=True)  # the mean ignores the padding
    np.testing.assert_allclose(np.asarray(s.dequantized)[:, 16:], expected, rtol=1e-6)


def test_all_zero_group_has_unit_step_and_zero_output():
    W = np.zeros((4, 6), np.float32)
    W[0, :3] = [1.0, -2.0, 0.5]
    r = zq.quantize(W, 4, granularity="row")
    np.testing.assert_array_equal(np.asarray(r.scale)[1:], 1.0)
    np.testing.assert_array_equal(np.asarray(r.dequantized)[1:], 0.0)
    assert np.isfinite(r.noise_var_model) and r.regime in ("widrow", "dead-zone")
    z = zq.quantize(np.zeros((8, 8), np.float32), 2)
    assert float(z.scale) == 1.0 and not np.any(np.asarray(z.dequantized))
    assert (z.noise_var_model, z.noise_var_measured, z.bussgang_gain, z.regime) == (0.0, 0.0, 1.0, "widrow")


@pytest.mark.parametrize("bits", [2, 3, 4, 8, 16])
@pytest.mark.parametrize("gran,g", GRANS)
def test_output_lies_on_the_grid(gaussian, bits, gran, g):
    r = zq.quantize(gaussian, bits, granularity=gran, group_size=g)
    W = gaussian
    step = np.asarray(r.scale)
    if gran == "group":
        step = np.repeat(step, g, axis=1)[:, : W.shape[1]]
    codes = np.asarray(r.dequantized) / step
    np.testing.assert_allclose(codes, np.round(codes), atol=2e-3)
    assert np.abs(np.round(codes)).max() <= 2 ** (bits - 1) - 1


# --- noise against the model -------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [4, 5, 6, 8])
@pytest.mark.parametrize("gran,g", GRANS)
def test_error_variance_within_2_percent_of_widrow_model(gaussian, bits, gran, g):
    r = zq.quantize(gaussian, bits, granularity=gran, group_size=g)
    assert r.noise_var_measured == pytest.approx(r.noise_var_model, rel=0.02)
    assert r.regime == "widrow"
    E = np.asarray(r.dequantized) - gaussian
    assert r.noise_var_measured == pytest.approx(float(np.mean(E**2)), rel=1e-5)
    assert r.bussgang_gain == pytest.approx(float(np.sum(gaussian * np.asarray(r.dequantized)) / np.sum(gaussian**2)))


def test_two_bit_tensor_quantization_of_gaussians_is_dead_zone(gaussian):
    r = zq.quantize(gaussian, 2)
    assert r.regime == "dead-zone"
    assert r.zero_fraction > 0.9 and r.bussgang_gain < 0.5


def test_stochastic_rounding_is_unbiased(gaussian):
    r = zq.quantize(gaussian, 3, granularity="row", rounding="stochastic", key=jax.random.key(3))
    E = np.asarray(r.dequantized) - gaussian
    se = E.std() / np.sqrt(E.size)
    assert abs(E.mean()) < 4 * se
    assert r.noise_var_measured == pytest.approx(r.noise_var_model, rel=0.02)  # mean f(1−f)Δ²
    # Per entry: averaging many independent roundings of the same matrix converges to W, with the spread of
    # a Bernoulli: the standard error of the mean of n roundings is Δ·√(f(1−f)/n) at fractional part f.
    W = gaussian[:8, :16]
    n = 400
    keys = jax.random.split(jax.random.key(4), n)
    qs = np.stack([np.asarray(zq.fake_quant(jnp.asarray(W), 2, granularity="row", rounding="stochastic", key=k))
                   for k in keys])
    step = np.abs(W).max(axis=1, keepdims=True)  # L = 1 at 2 bits
    f = W / step - np.floor(W / step)
    se = step * np.sqrt(f * (1 - f) / n) + 1e-6
    z = (qs.mean(axis=0, dtype=np.float64) - W) / se
    assert np.mean(np.abs(z) < 4) > 0.99
    assert abs(z.mean()) < 4 / np.sqrt(z.size)


def test_stochastic_rounding_model_is_its_exact_conditional_variance(gaussian):
    """At 2 bits the fractional parts are far from uniform: Δ²/6 would be off, mean f(1−f)Δ² is not."""
    r = zq.quantize(gaussian, 2, granularity="row", rounding="stochastic", key=jax.random.key(11))
    step = np.abs(gaussian).max(axis=1, keepdims=True)
    f = gaussian / step - np.floor(gaussian / step)
    assert r.noise_var_model == pytest.approx(float(np.mean(f * (1 - f) * step**2)), rel=1e-4)
    assert abs(r.noise_var_model / float(np.mean(step**2) / 6) - 1) > 0.05
    assert r.noise_var_measured == pytest.approx(r.noise_var_model, rel=0.01)
    assert abs(r.bussgang_gain - 1) < 0.02  # unbiased and uncorrelated with W, yet ...


def test_stochastic_rounding_with_signal_dependent_noise_is_not_called_widrow(gaussian):
    # ... the error variance f(1−f)Δ² ≈ |w|Δ follows W when most entries sit in the first cell (the review's
    # example: 2 bits per tensor, 80%+ zeros, g ≈ 1 and variance ratio ≈ 1). Fine grids stay widrow.
    dead = zq.quantize(gaussian, "int2-tensor-stochastic", key=jax.random.key(3))
    assert dead.zero_fraction > 0.8 and abs(dead.bussgang_gain - 1) < 0.02
    assert dead.noise_var_measured == pytest.approx(dead.noise_var_model, rel=0.02)
    assert dead.regime == "dead-zone"
    for spec in ("int8-row-stochastic", "int4-group32-stochastic"):
        assert zq.quantize(gaussian, spec, key=jax.random.key(3)).regime == "widrow", spec
    assert zq.classify_regime(1.0, 1.0, 1.0, 1.0 / 0.8) == "dead-zone"
    assert zq.classify_regime(1.0, 1.0, 1.0, 1.02) == "widrow"


def test_stochastic_rounding_same_key_same_result_and_needs_a_key(gaussian):
    a = zq.quantize(gaussian, 4, rounding="stochastic", key=jax.random.key(9)).dequantized
    b = zq.quantize(gaussian, 4, rounding="stochastic", key=jax.random.key(9)).dequantized
    c = zq.quantize(gaussian, 4, rounding="stochastic", key=jax.random.key(10)).dequantized
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    with pytest.raises(ValueError, match="key: spec 'int4-tensor-stochastic' rounds stochastically and needs an"):
        zq.quantize(gaussian, 4, rounding="stochastic")


@pytest.mark.parametrize("clip", ["percentile", "mse"])
def test_clipping_shrinks_the_range_and_is_reported(gaussian, clip):
    r = zq.quantize(gaussian, 3, granularity="row", clip=clip, percentile=99.0)
    full = zq.quantize(gaussian, 3, granularity="row")
    assert np.all(np.asarray(r.scale) <= np.asarray(full.scale) + 1e-7)
    if clip == "mse":
        assert r.noise_var_measured <= full.noise_var_measured  # c = 1 is on the grid, so MSE can only improve


# --- straight-through gradient ---------------------------------------------------------------------------------


def test_fake_quant_forward_equals_quantize(gaussian):
    np.testing.assert_array_equal(
        np.asarray(zq.fake_quant(jnp.asarray(gaussian), 3, granularity="group", group_size=32)),
        np.asarray(zq.quantize(gaussian, 3, granularity="group", group_size=32).dequantized),
    )


def test_straight_through_gradient_is_identity_inside_the_clip_range(gaussian):
    W = jnp.asarray(gaussian)
    cot = jax.random.normal(jax.random.key(5), W.shape)
    grad = jax.grad(lambda w: jnp.sum(zq.fake_quant(w, 4, granularity="row") * cot))(W)
    np.testing.assert_array_equal(np.asarray(grad), np.asarray(cot))
    grad_p = jax.grad(lambda w: jnp.sum(zq.fake_quant(w, 4, granularity="row", clip="percentile",
                                                      percentile=98.0) * cot))(W)
    m = np.percentile(np.abs(gaussian), 98.0, axis=1, keepdims=True)
    inside = np.abs(gaussian) <= m * (1 + 1e-6)
    np.testing.assert_array_equal(np.asarray(grad_p)[inside], np.asarray(cot)[inside])
    assert np.all(np.asarray(grad_p)[np.abs(gaussian) > m * (1 + 1e-5)] == 0)


def test_fake_quant_works_under_jit_and_on_stacks():
    W = jax.random.normal(jax.random.key(6), (3, 16, 8))
    f = jax.jit(lambda w: zq.fake_quant(w, 4, granularity="row"))
    out = f(W)
    for i in range(3):
        expected = zq.quantize(W[i], 4, granularity="row").dequantized
        np.testing.assert_array_equal(np.asarray(out[i]), np.asarray(expected))


# --- properties --------------------------------------------------------------------------------------------------

matrices = hnp.arrays(
    np.float32, st.tuples(st.integers(1, 9), st.integers(2, 16)),
    elements=st.floats(-100, 100, width=32, allow_nan=False, allow_subnormal=False),
)


@settings(max_examples=60, deadline=None)
@given(W=matrices, bits=st.integers(1, 8), gran=st.sampled_from(["tensor", "row", "column", "group"]))
def test_quantizing_twice_changes_nothing_with_nearest_rounding(W, bits, gran):
    assume(bits > 1 or np.all(W != 0))  # sign(0) = 0 lowers mean|Q|, so the 1-bit map is idempotent only without zeros
    g = 2 if gran == "group" else None
    try:
        once = np.asarray(zq.quantize(W, bits, granularity=gran, group_size=g).dequantized)
    except ValueError as err:  # a nonzero group of entries ~1e-38, whose step float32 cannot hold
        assert "quantization step float32 can hold" in str(err)
        assert np.abs(W)[W != 0].min() < 1e-30
        return
    twice = np.asarray(zq.quantize(once, bits, granularity=gran, group_size=g).dequantized)
    np.testing.assert_allclose(twice, once, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(W).max())))


@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
def test_a_nonzero_group_whose_step_float32_cannot_hold_is_a_named_error_not_zeros(scheme):
    W = np.array([[1.1754944e-38, 0.0]], np.float32)  # max|w|/L is below float32's normal range
    with pytest.raises(ValueError, match=r"W: expected scale groups whose quantization step float32 can hold"):
        zq.quantize(W, 3, scheme=scheme)
    q = np.asarray(zq.fake_quant(W, 3, scheme=scheme))  # unchecked (training path): finite, never NaN
    assert np.all(np.isfinite(q))


@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
def test_an_all_zero_group_has_step_one_and_an_exactly_zero_output(scheme):
    W = np.array([[0.0, 0.0, 0.0], [0.5, -1.0, 0.25]], np.float32)
    r = zq.quantize(W, 3, scheme=scheme, granularity="row")
    assert float(np.asarray(r.scale)[0, 0]) == 1.0
    assert np.all(np.asarray(r.dequantized)[0] == 0)
    assert np.isfinite(r.rel_error) and np.isfinite(r.noise_var_model)


def test_a_tiny_nonzero_group_beside_large_ones_is_quantized_in_its_own_scale():
    """A row 1e-36 times smaller than the others still gets its own grid: Q(row) = 1e-36·Q(row·1e36)."""
    base = np.array([[0.9, -0.3, 0.05, -1.4], [0.2, 0.7, -0.6, 0.61]], np.float32)
    W = base.copy()
    W[1] *= np.float32(1e-36)
    q = np.asarray(zq.quantize(W, 4, granularity="row").dequantized)
    q_base = np.asarray(zq.quantize(base, 4, granularity="row").dequantized)
    np.testing.assert_allclose(q[0], q_base[0])
    np.testing.assert_allclose(q[1] / np.float32(1e-36), q_base[1], rtol=1e-5)
    assert np.any(q[1] != 0)


@pytest.mark.parametrize("spec", ["int4-tensor", "int4-row-asymmetric", "int3-group32-mse", "int1-row", "nf4",
                                  "fp8_e4m3"])
@pytest.mark.parametrize("k", [-100, 100])
def test_quantization_commutes_exactly_with_powers_of_two(gaussian, spec, k):
    W = gaussian[:64, :64]
    r, r_scaled = zq.quantize(W, spec), zq.quantize(W * np.float32(2.0**k), spec)
    np.testing.assert_array_equal(np.asarray(r_scaled.dequantized), np.asarray(r.dequantized) * np.float32(2.0**k))
    assert r_scaled.rel_error == r.rel_error
    assert r_scaled.regime == r.regime
    assert r_scaled.noise_var_measured == pytest.approx(r.noise_var_measured * 4.0**k, rel=1e-6)
    assert r_scaled.noise_var_model == pytest.approx(r.noise_var_model * 4.0**k, rel=1e-6)


@pytest.mark.parametrize("c", [1e-30, 1e30])
def test_rel_error_is_reported_right_at_extreme_magnitudes(gaussian, c):
    """Regression: at 1e-30 the float32 squares of the noise sums underflowed and rel_error read 0.0."""
    W = gaussian[:128, :64]
    ref = zq.quantize(W, 4)
    r = zq.quantize(W * np.float32(c), 4)
    true = np.linalg.norm(np.asarray(r.dequantized, np.float64) - W * c) / np.linalg.norm(W.astype(np.float64) * c)
    assert r.rel_error == pytest.approx(true, rel=1e-4)
    assert r.rel_error == pytest.approx(ref.rel_error, rel=1e-4)


@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
def test_a_matrix_near_float32s_largest_number_gives_finite_results(gaussian, scheme):
    """Regression: at max|W| = 3e38 the asymmetric span overflowed (NaN entries) and the error sums gave NaN."""
    W = gaussian[:128, :64]
    big = W / np.abs(W).max() * np.float32(3e38)
    r = zq.quantize(big, 4, scheme=scheme)
    assert np.all(np.isfinite(np.asarray(r.dequantized)))
    assert r.rel_error == pytest.approx(zq.quantize(W, 4, scheme=scheme).rel_error, rel=1e-3)
    assert r.regime == "widrow"


@pytest.mark.parametrize("spec,k", [("int2-row", 126), ("int2-row-percentile90", 126), ("int3-group32-mse", 126),
                                    ("int2-row-asymmetric", 125)])  # at 2^126 its top level would overflow
def test_steps_above_2_to_the_126_quantize_like_ordinary_ones(gaussian, spec, k):
    """XLA:CPU divides by multiplying with 1/Δ, which flushes to 0 for Δ > 2^126 (2-3 bits at max|W| ~ 3e38):
    every entry used to quantize to 0."""
    W = gaussian[:64, :64]
    c = np.float32(2.0**k)
    ref, big = zq.quantize(W, spec), zq.quantize(W * c, spec)
    np.testing.assert_array_equal(np.asarray(big.dequantized), np.asarray(ref.dequantized) * c)
    assert big.rel_error == pytest.approx(ref.rel_error, rel=1e-6)


def test_an_asymmetric_group_whose_span_underflows_is_a_named_error_not_a_constant_group():
    """Entries 5e-38 … 6e-38: Δ = 1e-38/15 underflows; the group must not be taken for a constant one (Δ = |lo|)."""
    W = np.array([[5e-38, 6e-38, 5.5e-38, 5.2e-38], [1.0, -2.0, 0.5, 0.25]], np.float32)
    with pytest.raises(ValueError, match=r"W: expected scale groups whose quantization step float32 can hold"):
        zq.quantize(W, 4, scheme="asymmetric", granularity="row")


def test_a_group_of_subnormal_entries_only_is_not_taken_for_a_zero_group():
    W = np.zeros((2, 4), np.float32)
    W[0, 1] = 1e-40  # XLA:CPU reads it as 0
    W[1] = 1.0
    with pytest.raises(ValueError, match=r"got 1 of 2 groups of 'int4-row' with a smaller step"):
        zq.quantize(W, 4, granularity="row")


def test_values_float32_cannot_hold_are_named_errors():
    with pytest.raises(ValueError, match=r"W: expected entries within float32's range .* got max\|W\| = 1e\+39"):
        zq.quantize(np.array([[1e39, 1.0]]), 4)
    with pytest.raises(ValueError, match=r"W: expected max\|W\| = 0 or at least float32's smallest normal number"):
        zq.quantize(np.array([[1e-40, 0.0]], np.float32), 4)
    with pytest.raises(ValueError, match=r"W: expected max\|W\| = 0 or at least"):
        zq.fake_quant(np.array([[1e-40, 0.0]], np.float32), 4)
    with pytest.raises(ValueError, match=r"W: expected max\|W\| far enough below float32's largest number"):
        zq.quantize(np.array([[3.4e38, -3.0e38, 1e38]], np.float32), 2, scheme="asymmetric")


# --- Qwix ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits,qtype", [(8, jnp.int8), (4, jnp.int4)])
def test_int_quantizer_equals_qwix_with_the_same_convention(gaussian, bits, qtype):
    """Qwix scales by absmax/(L + ½); calibrating its absmax by (L + ½)/L gives our Δ = absmax/L."""
    L = 2 ** (bits - 1) - 1
    ours = np.asarray(zq.quantize(gaussian, bits, granularity="row").dequantized)
    q = qwix.quantize(jnp.asarray(gaussian), qtype, channelwise_axes=(0,),
                      calibration_method=f"absmax,{(L + 0.5) / L!r}")
    theirs = np.asarray(qwix.dequantize(q))
    # Qwix divides by (absmax·c)/(L+½), we by absmax/L: equal in exact arithmetic, so the two agree except
    # where float rounding puts a value on the other side of a rounding boundary (then by exactly one step).
    step = np.abs(gaussian).max(axis=1, keepdims=True) / L
    levels = np.abs(theirs - ours) / step
    assert np.all((levels < 1e-4) | (np.abs(levels - 1) < 1e-4))
    assert np.mean(levels > 0.5) < 1e-4


@pytest.mark.parametrize("fmt", sorted(zq.FORMATS))
def test_every_format_reports_noise_statistics(gaussian, fmt):
    r = zq.quantize(gaussian, zq.QuantSpec(bits=4) if fmt == "int" else fmt)
    deq = np.asarray(r.dequantized)
    assert deq.shape == gaussian.shape and np.isfinite(deq).all()
    assert r.noise_var_measured == pytest.approx(float(np.mean((deq - gaussian) ** 2)), rel=1e-5)
    # Bennett's local-spacing model is an approximation for these non-uniform grids: within 25%.
    assert r.noise_var_measured == pytest.approx(r.noise_var_model, rel=0.25)
    # relative error of a float grid with m mantissa bits is about 2^-m/√12 (e4m3: m = 3, e5m2: m = 2)
    # (ternary llama.cpp formats, 3 levels per block of 256: most entries round to 0, about 0.8)
    bound = {"fp8_e4m3": 2**-3 / np.sqrt(12), "fp8_e5m2": 2**-2 / np.sqrt(12), "tq1_0": 0.85,
             "tq2_0": 0.85}.get(fmt, 0.2)
    assert 0.0 < r.rel_error < bound
    assert r.regime in ("widrow", "dead-zone")


def test_nvfp4_keeps_its_blocks_at_any_magnitude_through_its_per_tensor_scale():
    """NVFP4 encodes block scales in e4m3 relative to an fp32 per-tensor scale s = max|W|/(6·448): an embedding
    with max|W| ≈ 0.02 (most block maxima/6 below e4m3's smallest number 2^-9) keeps its blocks."""
    rng = np.random.default_rng(0)
    W = (0.004 * rng.standard_normal((64, 128))).astype(np.float32)
    r = zq.quantize(W, "nvfp4")
    assert np.abs(W).max() < 0.03 and r.zero_fraction < 0.15 and r.rel_error < 0.2
    # the largest block scale is e4m3's largest number 448 times s, i.e. max|W|/6
    scale = np.asarray(r.scale)
    assert scale.max() == pytest.approx(np.abs(W).max() / 6, rel=1e-6)
    s = np.abs(W).max() / (6 * 448)
    e4m3 = (scale / s).astype(jnp.float8_e4m3fn).astype(np.float32)
    assert np.allclose(scale / s, e4m3, rtol=1e-5)
    # a power of two c scales Q(W) exactly, across float32's range
    for c in (2.0**-100, 2.0**-20, 2.0**40):
        rc = zq.quantize(W * np.float32(c), "nvfp4")
        assert np.array_equal(np.asarray(rc.dequantized), np.asarray(r.dequantized) * np.float32(c))
    # a block far below the rest (max|w| < 2.2e-6·max|W|) is flushed to zero, as the format does: not an error
    W[3, :16] *= 1e-7
    flushed = zq.quantize(W, "nvfp4")
    assert np.all(np.asarray(flushed.dequantized)[3, :16] == 0) and float(np.asarray(flushed.scale)[3, 0]) == 0.0
    assert np.array_equal(np.asarray(zq.fake_quant(W, "nvfp4")), np.asarray(flushed.dequantized))


def test_fp8_is_more_accurate_than_int4(gaussian):
    assert zq.quantize(gaussian, "fp8_e4m3").rel_error < zq.quantize(gaussian, 4, granularity="row").rel_error


# --- bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,exc,pattern",
    [
        ({"bits": 0}, ValueError, r"bits: expected an integer in \[1, 16\], got 0"),
        ({"bits": 17}, ValueError, r"bits: expected an integer in \[1, 16\], got 17"),
        ({"bits": 4.5}, TypeError, r"bits: expected an integer, got 4.5"),
        ({"bits": 4, "scheme": "ternary"}, ValueError, r"scheme: expected one of 'symmetric', 'asymmetric'"),
        ({"bits": 4, "granularity": "block"}, ValueError, r"granularity: expected one of"),
        ({"bits": 4, "clip": "max"}, ValueError, r"clip: expected one of 'absmax', 'percentile', 'mse'"),
        ({"bits": 4, "rounding": "floor"}, ValueError, r"rounding: expected one of 'nearest', 'stochastic'"),
        ({"bits": 4, "granularity": "group"}, ValueError, r"group_size: expected an integer for granularity="),
        ({"bits": 4, "granularity": "group", "group_size": 0}, ValueError, r"group_size: expected .* got 0"),
        ({"bits": 4, "granularity": "group", "group_size": 64}, ValueError,
         r"W: spec 'int4-group64' has groups of 64 entries, longer than the rows of length 16"),
        ({"bits": 4, "group_size": 8}, ValueError, r"group_size: only used with granularity='group'"),
        ({"bits": 4, "clip": "percentile", "percentile": 0.0}, ValueError, r"percentile: expected .* \(0, 100"),
        ({"bits": 1, "scheme": "asymmetric"}, ValueError, r"scheme: the 1-bit sign quantizer is symmetric"),
        ({"bits": 4, "rounding": "stochastic", "key": 3}, TypeError, r"key: expected a JAX PRNG key"),
    ],
)
def test_quantize_rejects_bad_arguments(kwargs, exc, pattern):
    W = np.ones((4, 16), np.float32)
    with pytest.raises(exc, match=pattern):
        zq.quantize(W, **kwargs)


@pytest.mark.parametrize(
    "W,exc,pattern",
    [
        (np.ones(8, np.float32), ValueError, r"W: expected a 2-D array"),
        (np.full((2, 2), np.nan, np.float32), ValueError, r"W: expected finite entries"),
        (np.ones((2, 2), np.int8), TypeError, r"W: expected a real floating-point array"),
        (np.ones((0, 3), np.float32), ValueError, r"W: expected a non-empty array"),
    ],
)
def test_quantize_rejects_bad_matrices(W, exc, pattern):
    with pytest.raises(exc, match=pattern):
        zq.quantize(W, 4)


def test_formats_reject_bad_arguments(gaussian):
    with pytest.raises(ValueError, match=r"spec 'fp5': expected it to start with int<bits> .* nf4"):
        zq.quantize(gaussian, "fp5")
    with pytest.raises(ValueError, match=r"W: format 'mxfp4' needs rows whose length is a multiple of its block 32"):
        zq.quantize(gaussian[:, :40], "mxfp4")
    with pytest.raises(ValueError, match=r"W: spec 'nf4-group100' needs a group size that divides the row length 256"):
        zq.quantize(gaussian, "nf4-group100")
    with pytest.raises(TypeError, match=r"spec: keyword fields \(granularity\) go with a bit width"):
        zq.quantize(gaussian, "nf4", granularity="row")


@pytest.mark.parametrize("scheme", ["int3-{}", "int4-{}-stochastic", "int4-{}-asymmetric-mse", "int2-{}-percentile99",
                                    "int1-{}"])
def test_column_scales_on_w_are_row_scales_on_its_transpose_with_the_same_key(scheme):
    # column scales reduce along axis 0 in place (no transpose); the result, steps and draws are those of row
    # scales on Wᵀ — stochastic rounding included, so one key gives one Q whichever layout the code uses
    W = np.asarray(jax.random.normal(jax.random.key(2), (96, 40)) * jnp.linspace(0.1, 3.0, 40), np.float32)
    key = jax.random.key(7)
    col = zq.quantize(W, scheme.format("column"), key=key)
    row = zq.quantize(W.T.copy(), scheme.format("row"), key=key)
    np.testing.assert_array_equal(np.asarray(col.dequantized), np.asarray(row.dequantized).T)
    np.testing.assert_array_equal(np.asarray(col.scale).ravel(), np.asarray(row.scale).ravel())
    assert col.noise_var_model == pytest.approx(row.noise_var_model, rel=1e-5)  # float32 sums, another order


def _lowered_program(s, W):
    """The program ``zq.quantize(W, s)`` runs, lowered (``max|W|`` in [0.5, 1))."""
    from zipfrmt.quant import core

    return core._measure_program(s).lower(core._program_spec(s), W, None, jnp.int32(0), jnp.int32(s.bits or 0), False)


def test_the_widths_of_one_granularity_share_one_compiled_program(caplog):
    """An analysis asks for 8, 6, 4, 3 and 2 bits at each granularity: the width is a traced argument, so they run
    one compiled program (each costs ~0.2 s to compile and a few MB for the process's life), with results equal
    to quantizing each width on its own terms — Δ = m/L correctly rounded, the levels clip(round(w/Δ), −L, L)·Δ."""
    W = np.asarray(jax.random.normal(jax.random.key(5), (333, 96)), np.float32)  # a shape no other test uses
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG):
        for bits in (8, 6, 4, 3, 2):
            r = zq.quantize(W, f"int{bits}-column")
            L = np.float32(2 ** (bits - 1) - 1)
            step = np.abs(W).max(axis=0) / L  # float32 ÷ float32: the correctly rounded quotient
            np.testing.assert_array_equal(np.asarray(r.scale).ravel(), step)
            np.testing.assert_array_equal(np.asarray(r.dequantized), np.clip(np.round(W / step), -L, L) * step)
        compiled = [m for m in caplog.messages if m.startswith("Compiling jit(_quantize_and_measure)")]
        assert len(compiled) == 1
        zq.quantize(W, "int1-column")  # the sign quantizer is another program
        compiled = [m for m in caplog.messages if m.startswith("Compiling jit(_quantize_and_measure)")]
        assert len(compiled) == 2


@pytest.mark.parametrize("spec", ["int2-tensor", "int2-row", "int2-column", "int2-group32", "int4-row", "int8-group32"])
def test_the_quantize_program_needs_no_scratch_the_size_of_w(spec):
    """Round-to-nearest quantization and its statistics take one output the size of W and small temporaries: at
    2 bits (L = 1) XLA:CPU once wrote a V×d array of ones for the clip, a transient as large as W."""
    W = jnp.zeros((32768, 512), jnp.float32)  # large enough that the 2^20-entry chunks of a bit check are small
    s = zq.as_spec(spec)
    compiled = _lowered_program(s, W).compile()
    memory = compiled.memory_analysis()
    if memory is None:
        pytest.skip("this backend reports no memory analysis")
    assert memory.temp_size_in_bytes < 0.2 * W.nbytes


@pytest.mark.parametrize("spec,qtype,channel,tiles", [
    ("nf4", "nf4", (0,), {}),
    ("fp8_e4m3", jnp.float8_e4m3fn, (0,), {}),
    ("mxfp4", "mxfp4", (0,), {1: 32}),
])
def test_real_formats_quantized_in_chunks_of_rows_equal_qwix_on_the_whole_matrix(spec, qtype, channel, tiles):
    """A matrix larger than one chunk (3 chunks of 1,497 rows, the last overlapping) is quantized row block by row
    block: bit for bit Qwix's result on the whole matrix, and the Bennett model the same number as on the whole."""
    from zipfrmt.quant import formats, rowchunks

    W = np.asarray(jax.random.normal(jax.random.key(3), (3000, 704)), np.float32)
    assert -(-W.shape[0] // (rowchunks.CHUNK_ENTRIES // W.shape[1])) == 3
    r = zq.quantize(W, spec)
    whole = qwix.quantize(jnp.asarray(W), qtype, channelwise_axes=channel, tiled_axes=tiles)
    np.testing.assert_array_equal(np.asarray(r.dequantized), np.asarray(qwix.dequantize(whole)))
    np.testing.assert_array_equal(np.asarray(r.scale), np.asarray(whole.scale, np.float32))
    levels, widths = formats.code_book(qtype)
    scale = np.repeat(np.asarray(whole.scale, np.float64), W.shape[1] // whole.scale.shape[1], axis=1)
    code = np.asarray(r.dequantized, np.float64) / scale
    cell = widths[np.searchsorted((levels[1:] + levels[:-1]) / 2, code)] * scale
    assert r.noise_var_model == pytest.approx(np.mean(cell**2) / 12, rel=1e-5)


def test_row_chunks_sum_every_row_once_and_map_every_row():
    from zipfrmt.quant import rowchunks

    X = jnp.arange(5000 * 300, dtype=jnp.float32).reshape(5000, 300) % 7  # 3,495 rows a chunk: 2 chunks, overlapping
    assert float(rowchunks.sum_rows(lambda x: jnp.sum(x, axis=1), X)) == float(jnp.sum(X))
    doubled, first = rowchunks.map_rows(lambda x: (2 * x, x[:, :1]), X)
    np.testing.assert_array_equal(np.asarray(doubled), 2 * np.asarray(X))
    np.testing.assert_array_equal(np.asarray(first), np.asarray(X[:, :1]))


@pytest.mark.parametrize("spec", ["nf4", "mxfp4", "nvfp4", "fp8_e4m3", "fp8_e5m2-tensor", "q4_0", "q5_1", "tq2_0"])
def test_a_real_format_program_needs_at_most_one_more_copy_of_w(spec):
    """Qwix's code-book lookup and the Bennett model's search run in chunks of rows: at most one W-sized
    temporary (the scaled input or the chunks' output), where compiled whole they took six; llama.cpp's formats
    compile without YNNPACK's reductions, which took one more copy (two for q5_1)."""
    W = jnp.zeros((32768, 512), jnp.float32)
    s = zq.as_spec(spec)
    memory = _lowered_program(s, W).compile().memory_analysis()
    if memory is None:
        pytest.skip("this backend reports no memory analysis")
    assert memory.temp_size_in_bytes < 1.25 * W.nbytes


def test_row_chunks_name_an_input_that_is_not_a_matrix():
    from zipfrmt.quant import rowchunks

    with pytest.raises(ValueError, match=r"X: expected a V×d matrix, got shape \(5,\)"):
        rowchunks.map_rows(lambda x: x, jnp.zeros(5))
    with pytest.raises(ValueError, match=r"Xs: expected at least one V×d matrix"):
        rowchunks.sum_rows(lambda: jnp.zeros(1))
    with pytest.raises(ValueError, match=r"Xs\[0\]: expected a V×d matrix"):
        rowchunks.sum_rows(lambda x: x, jnp.zeros((2, 3, 4)))
