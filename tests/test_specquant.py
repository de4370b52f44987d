"""zipfrmt.mitigate.specquant: smoothing, Fourier truncation, residual quantization, budgets, storage."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import power_law_np

from zipfrmt import quant
from zipfrmt.mitigate import specquant as SQ


@pytest.fixture(scope="module")
def W():
    return power_law_np(48, 20, 0.5, seed=4)


def _outlier_X(n=128, d=48, seed=5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    X[:, [3, 17]] *= 30.0  # two outlier input channels
    return X


@pytest.mark.parametrize("axis", [0, 1])
def test_full_budget_returns_the_weight_unchanged(W, axis):
    exact = SQ.specquant(W, 3, 1.0, axis=axis, coeff_dtype=None)
    np.testing.assert_allclose(exact.weight, W, atol=2e-6)
    half = SQ.specquant(W, 3, 1.0, axis=axis)  # float16 coefficients; the residual corrects their rounding
    np.testing.assert_allclose(half.weight, W, atol=1e-4 * np.abs(W).max())
    assert half.overhead_bits == pytest.approx(16.0)  # all coefficients in float16 cost 16 bits per weight
    assert exact.overhead_bits == pytest.approx(32.0)  # … and in float32, 32
    assert np.all(exact.budgets == exact.n_freq)


def test_full_budget_with_smoothing_returns_the_weight_unchanged(W):
    r = SQ.specquant(W, 2, 1.0, X=_outlier_X(), alpha=0.5, coeff_dtype=None)
    np.testing.assert_allclose(r.weight, W, atol=1e-5)


@pytest.mark.parametrize("axis,granularity", [(0, "column"), (1, "row")])
@pytest.mark.parametrize("bits", [4, 2])
def test_zero_budget_is_plain_per_channel_quantization(W, axis, granularity, bits):
    r = SQ.specquant(W, bits, 0.0, axis=axis)
    plain = quant.quantize(W, bits, granularity=granularity)
    np.testing.assert_array_equal(r.weight, plain.dequantized)
    assert r.overhead_bits == 0.0
    assert r.residual.noise_var_measured == pytest.approx(plain.noise_var_measured)


@pytest.mark.parametrize("shape", [(48, 20), (47, 9)])  # even and odd channel length
def test_kept_energy_matches_parseval(shape):
    W = power_law_np(*shape, 0.7, seed=6)
    r = SQ.specquant(W, 4, 0.3, coeff_dtype=None)
    branch = np.asarray(r.low_freq_branch, np.float64)
    np.testing.assert_allclose(r.energy_kept * (W.astype(np.float64) ** 2).sum(0), (branch**2).sum(0), rtol=1e-4)
    # the branch is exactly the inverse rFFT of the kept lowest coefficients
    F = np.fft.rfft(W.astype(np.float64), axis=0)
    kept = np.where(np.arange(F.shape[0])[:, None] < r.budgets[None, :], F, 0)
    np.testing.assert_allclose(branch, np.fft.irfft(kept, n=shape[0], axis=0), atol=1e-5)
    # storage: 32 bits (float32 coefficients) per real number held by the kept coefficients
    mult = np.r_[1, np.full(F.shape[0] - 1, 2)]
    if shape[0] % 2 == 0:
        mult[-1] = 1
    reals = sum(mult[:k].sum() for k in r.budgets)
    assert r.overhead_bits == pytest.approx(32 * reals / W.size)


def test_smoothing_preserves_xw_exactly_before_quantization(W):
    X = _outlier_X()
    lam = SQ.smoothing_factors(W, X, 0.5)
    W_hat, X_hat = SQ.smooth(W, X, lam)
    np.testing.assert_allclose(X_hat @ W_hat, X @ W, rtol=1e-5, atol=1e-5 * np.abs(X @ W).max())
    # λ_i = max|X_i|^α / max|W_i|^(1−α)
    want = np.abs(X).max(0) ** 0.5 / np.abs(W).max(1) ** 0.5
    np.testing.assert_allclose(lam, want, rtol=1e-5)


def test_alpha_search_does_not_lose_to_no_smoothing(W):
    X = _outlier_X()
    searched = SQ.specquant(W, 4, 0.2, X=X, act_bits=4)
    assert searched.alpha in SQ.ALPHA_GRID

    def out_err(r):
        Xh = jnp.asarray(X) / r.smoothing[None, :]
        Xq = quant.fake_quant(Xh, 4, granularity="row")
        return float(jnp.linalg.norm(X @ W - Xq @ r.smoothed_weight))

    plain = SQ.specquant(W, 4, 0.2, X=X, alpha=0.0)
    assert out_err(searched) <= out_err(plain) * (1 + 1e-5)


def test_budgets_fill_the_mean_budget_and_follow_importance(W):
    F = W.shape[0] // 2 + 1
    for kind in SQ.IMPORTANCES:
        k = np.asarray(SQ.channel_budgets(W, 0.4, importance=kind))
        assert abs(k.sum() - 0.4 * F * W.shape[1]) <= W.shape[1]  # rounding: at most 1/2 per channel
        assert k.min() >= 0 and k.max() <= F
    np.testing.assert_array_equal(SQ.channel_budgets(W, 0.4, importance="uniform"), 10)
    # a smooth (low-entropy) channel gets fewer coefficients than a noisy one
    n = 64
    smooth_col = np.cos(2 * np.pi * np.arange(n) / n)
    noisy = np.random.default_rng(0).standard_normal(n)
    k = np.asarray(SQ.channel_budgets(np.stack([smooth_col, noisy], 1).astype(np.float32), 0.3))
    assert k[0] < k[1]


def test_row_channels_with_activations_weigh_the_input_channels(W):
    X = _outlier_X()
    r = SQ.specquant(W, 4, 0.3, X=X, axis=1, importance="mean-product", alpha=0.5)
    act = jnp.mean(jnp.abs(jnp.asarray(X) / jnp.asarray(r.smoothing)[None, :]), axis=0)
    direct = np.asarray(SQ.channel_budgets(r.smoothed_weight, 0.3, importance="mean-product", axis=1,
                                           activations=act))
    got = np.asarray(r.budgets)
    # equal up to an allocation tie broken differently by float rounding (jit fusion) in at most one channel
    assert np.abs(got - direct).max() <= 1 and np.count_nonzero(got != direct) <= 1


def test_overhead_counts_the_coefficient_width(W):
    half = SQ.specquant(W, 4, 0.5).overhead_bits
    full = SQ.specquant(W, 4, 0.5, coeff_dtype=None).overhead_bits
    assert full == pytest.approx(2 * half)


def test_low_frequency_energy():
    n = 64
    t = np.arange(n)
    W = np.stack([np.cos(2 * np.pi * t / n), np.cos(2 * np.pi * 20 * t / n)], 1).astype(np.float32)
    e = np.asarray(SQ.low_frequency_energy(W, 0.2))
    assert e[0] == pytest.approx(1.0, abs=1e-5) and e[1] == pytest.approx(0.0, abs=1e-5)
    assert np.allclose(SQ.low_frequency_energy(W, 1.0), 1.0, atol=1e-5)


def test_embedding_table_has_no_smoothing(W):
    r = SQ.specquant(W, 3, 0.25, axis=1)
    assert np.isnan(r.alpha)
    np.testing.assert_array_equal(r.smoothing, 1.0)
    assert r.budgets.shape == (W.shape[0],)  # one channel per token row
    assert 0 < r.overhead_bits < 16
    assert r.residual.rel_error > 0


def test_bad_input_is_rejected_with_the_argument_named(W):
    for b in (-0.1, 1.5):
        with pytest.raises(ValueError, match="budget"):
            SQ.specquant(W, 4, b)
    with pytest.raises(ValueError, match="X: expected calibration activations of width d_in=48"):
        SQ.specquant(W, 4, 0.2, X=np.ones((10, 20), np.float32))
    with pytest.raises(ValueError, match="importance"):
        SQ.specquant(W, 4, 0.2, importance="fancy")
    with pytest.raises(ValueError, match="axis"):
        SQ.specquant(W, 4, 0.2, axis=2)
    with pytest.raises(ValueError, match="alpha"):
        SQ.specquant(W, 4, 0.2, alpha=0.5)
    with pytest.raises(ValueError, match="bits"):
        SQ.specquant(W, 0, 0.2)
    with pytest.raises(TypeError, match="W"):
        SQ.specquant(np.ones((4, 4), np.int32), 4, 0.2)
    with pytest.raises(ValueError, match="lam"):
        SQ.smooth(W, _outlier_X(), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="budget"):
        SQ.channel_budgets(W, 2.0)


def test_jit_friendly_core_matches_public_result(W):
    """The jit-compiled pipeline (used by the α search) agrees with the public function."""
    r = SQ.specquant(W, 4, 0.3)
    Wp, Rq, k, _ = SQ._core(jnp.asarray(W), None, 0.3, 4, "entropy", 0, jnp.float16, "symmetric", "absmax")
    np.testing.assert_array_equal(k, r.budgets)
    np.testing.assert_allclose(Wp + Rq, r.weight, atol=1e-6)
    assert jax.jit(lambda w: SQ._core(w, None, 0.3, 4, "l2", 1, None, "symmetric", "absmax")[0])(W).shape == W.shape


def test_compare_on_matrix_dataset():
    from zipfrmt.mitigate import compare

    W = power_law_np(256, 16, 0.5, seed=8)
    ds = compare.compare_on_matrix(W, (4, 2), budget=0.1)
    assert ds.sizes == {"mitigation": 3, "bits": 2}
    assert list(ds.mitigation.values) == ["rtn", "specquant", "s2d"]
    rtn4 = ds.sel(mitigation="rtn", bits=4)
    assert str(rtn4.regime.values) == "widrow"
    assert float(rtn4.stable_rank) == pytest.approx(float(rtn4.predicted_stable_rank), rel=0.05)
    assert float(ds.sel(mitigation="specquant", bits=4).overhead_bits) > 0
    assert float(ds.s2d_fp_sigma_max) == pytest.approx(0.5 * float(ds.fp_sigma_max), rel=1e-4)
    assert "zipfrmt_version" in ds.attrs and "budget" in ds.attrs["config"]
