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
        assert k.sum() == round(0.4 * F * W.shape[1])  # the total is rounded, not each channel
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
    # equal up to one remainder coefficient that a near-tie of fractional parts (float rounding under jit
    # fusion) gives to a different channel: same total, at most two channels differing by one
    assert got.sum() == direct.sum()
    assert np.abs(got - direct).max() <= 1 and np.count_nonzero(got != direct) <= 2


@pytest.mark.parametrize("importance", SQ.IMPORTANCES)
@pytest.mark.parametrize("budget", [0.01, 0.02, 0.1, 0.37])
def test_total_kept_coefficients_is_round_beta_times_total(importance, budget):
    """Per-channel rounding drifted: on 512×64 rows β = 0.02 kept 1.00 coefficient per channel instead of 0.66
    and β = 0.01 kept none. The allocation rounds the total instead (largest remainder)."""
    E = np.random.default_rng(1).standard_normal((512, 64)).astype(np.float32)
    C, F = 512, 33
    k = np.asarray(SQ.channel_budgets(E, budget, importance=importance, axis=1))
    assert k.sum() == round(budget * C * F)
    assert k.min() >= 0 and k.max() <= F


@pytest.mark.parametrize("budget", [0.01, 0.02, 0.1, 0.37])
def test_result_records_the_realised_budget(budget):
    E = np.random.default_rng(1).standard_normal((512, 64)).astype(np.float32)
    C, F = 512, 33
    r = SQ.specquant(E, 4, budget, axis=1)
    assert r.budgets.sum() == round(budget * C * F)
    assert r.realised_budget == r.budgets.sum() / (C * F)
    assert r.realised_budget == pytest.approx(budget, abs=0.5 / (C * F))


def test_small_budget_is_not_silently_zero():
    E = np.random.default_rng(2).standard_normal((512, 64)).astype(np.float32)
    r = SQ.specquant(E, 4, 0.01, axis=1)
    assert r.budgets.sum() == 169  # round(0.01 · 512 · 33); per-channel rounding gave 0
    assert r.overhead_bits > 0
    assert not np.array_equal(r.weight, quant.quantize(E, 4, granularity="row").dequantized)


def test_realised_budget_is_exact_at_the_ends(W):
    assert SQ.specquant(W, 4, 0.0).realised_budget == 0.0
    assert SQ.specquant(W, 4, 1.0).realised_budget == 1.0


def test_budget_bits_worked_examples():
    # n = 256: F = 129, βF = 2.58 → 1 + 2 + 2 + 0.58·2 = 4.16 reals of 16 bits per 256 weights
    assert SQ.budget_bits(0.02, 256) == pytest.approx(16 * 4.16 / 256)
    assert SQ.budget_bits(0.02, 256) == pytest.approx(0.26)
    # n = 64: F = 33, βF = 0.66 → 0.66 reals (DC only) per 64 weights
    assert SQ.budget_bits(0.02, 64) == pytest.approx(0.165)
    # everything kept costs as much as storing the channel; float32 coefficients cost twice float16
    for n in (63, 64):
        assert SQ.budget_bits(1.0, n) == pytest.approx(16.0)
        assert SQ.budget_bits(1.0, n, coeff_dtype=None) == pytest.approx(32.0)
    assert SQ.budget_bits(0.0, 64) == 0.0
    # the "16·β" rule of thumb overstates it (DC is one real, not two)
    assert SQ.budget_bits(0.02, 256) < 16 * 0.02


@pytest.mark.parametrize("shape", [(300, 64), (200, 63), (128, 256)])
@pytest.mark.parametrize("budget", [0.01, 0.02, 0.1, 0.5])
def test_budget_bits_is_the_measured_overhead_of_a_uniform_budget(shape, budget):
    E = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    C, n = shape
    r = SQ.specquant(E, 4, budget, axis=1, importance="uniform")
    # equal up to the rounding of the total to a whole coefficient (≤ 1/2 coefficient = 1 real)
    assert abs(r.overhead_bits - SQ.budget_bits(budget, n)) <= 16 * 1.0 / (C * n) + 1e-9


def test_budget_bits_rejects_bad_input():
    with pytest.raises(ValueError, match="budget"):
        SQ.budget_bits(1.5, 64)
    with pytest.raises(ValueError, match="n"):
        SQ.budget_bits(0.1, 0)
    with pytest.raises(ValueError, match="coeff_dtype"):
        SQ.budget_bits(0.1, 64, coeff_dtype=np.int8)


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


def test_low_frequency_energy_of_a_zero_channel_is_an_error_not_nan():
    W = np.ones((16, 3), np.float32)
    W[:, 1] = 0.0
    with pytest.raises(ValueError, match=r"W: .*nonzero energy.*1 zero channel\(s\): \[1\]"):
        SQ.low_frequency_energy(W, 0.2)


def _kept_share(n, fraction=0.2):
    """Share of a flat (white) spectrum in the lowest k = ⌈fraction·F⌉ rFFT coefficients, 1 ≤ k < F: the reals
    they hold (DC one, the others two) over n — what low_frequency_energy gives an axis without an order."""
    k = int(np.ceil(fraction * (n // 2 + 1)))
    return (2 * k - 1) / n


@pytest.mark.parametrize("axis", [0, 1])
def test_low_frequency_energy_of_iid_gaussian_is_the_fraction_kept(axis):
    """Control for SpecQuant's "lowest 20% hold ~92%": an axis without an order has a flat Fourier profile."""
    G = np.random.default_rng(7).standard_normal((512, 64)).astype(np.float32)
    n = G.shape[axis]
    e = float(np.mean(SQ.low_frequency_energy(G, 0.2, axis=axis)))
    assert _kept_share(n) == pytest.approx(0.2, abs=0.005)  # 13/64, 103/512
    assert e == pytest.approx(_kept_share(n), abs=0.01)


def test_low_frequency_energy_of_fresh_lm_kernels_is_the_fraction_kept():
    """The linear kernels of a freshly initialised zipfrmt LM (fig_mitigations' quick-scale shape) along d_in."""
    from flax import nnx

    from experiments import fig_mitigations as fig
    from zipfrmt.nn import build_model

    model = build_model(fig._lm_config(fig.SCALES["quick"], "fp32"))
    shares = {}
    for path, node in nnx.iter_graph(model):
        if hasattr(node, "kernel"):
            W = np.asarray(node.kernel[...])
            e = float(np.mean(SQ.low_frequency_energy(W, 0.2)))  # along d_in (axis 0)
            shares["/".join(map(str, path))] = (e, _kept_share(W.shape[0]))
    assert len(shares) == 8
    for name, (e, want) in shares.items():
        assert e == pytest.approx(want, abs=0.02), name


def test_low_frequency_energy_is_high_only_along_an_ordered_axis():
    """A sinusoidal position table (Vaswani et al. 2017) is smooth along positions: most of its energy is low
    frequency there, and permuting the positions (destroying the order) brings it back to the fraction kept."""
    L, d = 256, 64
    pos = np.arange(L)[:, None]
    freq = 1.0 / 10000 ** (np.arange(0, d, 2) / d)
    P = np.concatenate([np.sin(pos * freq), np.cos(pos * freq)], axis=1).astype(np.float32)
    P -= P.mean(0)  # no DC help: the DC coefficient does not depend on the order
    ordered = float(np.mean(SQ.low_frequency_energy(P, 0.2, axis=0)))
    shuffled = float(np.mean(SQ.low_frequency_energy(P[np.random.default_rng(0).permutation(L)], 0.2, axis=0)))
    assert ordered > 0.6
    assert shuffled == pytest.approx(_kept_share(L), abs=0.05)


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


# --- scale: float16 coefficients, Parseval powers, the α search, smoothing ----------------------------------------


def _gauss(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _random_walk_columns(seed=0):
    """Channels with most energy at low frequency (cumulative sums along d_in)."""
    return np.cumsum(np.random.default_rng(seed).standard_normal((64, 32)), 0).astype(np.float32)


def test_specquant_rescales_float16_coefficients_instead_of_overflowing():
    """Coefficients above float16's 65504 became inf and surfaced as "W: expected finite entries". Each channel's
    coefficients are now scaled by a power of two before the cast: W·2^m gives exactly 2^m times the result."""
    W, X = _gauss((32, 16)), _gauss((50, 32), 1)
    base = SQ.specquant(W, 4, 0.1)
    big = SQ.specquant(W * np.float32(2.0**14), 4, 0.1)  # coefficients up to ~2^14·32
    np.testing.assert_array_equal(big.budgets, base.budgets)
    np.testing.assert_array_equal(np.asarray(big.weight), np.asarray(base.weight) * np.float32(2.0**14))
    scaled = SQ.specquant(W * 1e4, 4, 0.1)  # the reviewer's example
    assert np.all(np.isfinite(scaled.weight))
    np.testing.assert_allclose(np.asarray(scaled.weight) / 1e4, base.weight, atol=1e-3)
    with_x = SQ.specquant(W, 4, 0.1, X=X * 3e3)  # large activations → large smoothed weight
    assert np.all(np.isfinite(with_x.weight)) and with_x.alpha in SQ.ALPHA_GRID


def test_specquant_rescaling_leaves_ordinary_float16_coefficients_unchanged(W):
    """At ordinary scales every kept coefficient is the plain float16 rounding of the float32 one."""
    r = SQ.specquant(W, 4, 0.5)
    F = jnp.fft.rfft(jnp.asarray(W), axis=0)
    F16 = jax.lax.complex(jnp.real(F).astype(jnp.float16).astype(jnp.float32),
                          jnp.imag(F).astype(jnp.float16).astype(jnp.float32))
    keep = jnp.arange(F.shape[0])[:, None] < jnp.asarray(r.budgets)[None, :]
    want = jnp.fft.irfft(jnp.where(keep, F16, 0.0), n=W.shape[0], axis=0)
    np.testing.assert_allclose(r.low_freq_branch, want, atol=1e-6 * float(np.abs(W).max()))


def test_specquant_skips_an_alpha_whose_error_is_not_finite(W, monkeypatch):
    errs = jnp.asarray([jnp.nan, 3.0, 2.0, jnp.inf], jnp.float32)  # argmin over NaN picked α = 0.0
    monkeypatch.setattr(SQ, "_alpha_errors", lambda *a, **k: errs)
    r = SQ.specquant(W, 4, 0.2, X=_outlier_X(), alpha_grid=(0.0, 0.25, 0.5, 0.75))
    assert r.alpha == 0.5


def test_specquant_raises_when_no_alpha_gives_a_finite_error(W, monkeypatch):
    monkeypatch.setattr(SQ, "_alpha_errors", lambda *a, **k: jnp.full((3,), jnp.nan, jnp.float32))
    with pytest.raises(ValueError, match="X: expected some migration strength in alpha_grid to give a finite"):
        SQ.specquant(W, 4, 0.2, X=_outlier_X(), alpha_grid=(0.0, 0.5, 1.0))


def test_low_frequency_energy_is_scale_invariant():
    """|F|² in float32 underflowed at 1e-20 (a false "zero channel" error) and overflowed at 1e20 (NaN)."""
    Wc = _random_walk_columns()
    e0 = np.asarray(SQ.low_frequency_energy(Wc, 0.2))
    np.testing.assert_array_equal(SQ.low_frequency_energy(Wc * np.float32(2.0**-66), 0.2), e0)
    for c in (1e-20, 1e20):
        np.testing.assert_allclose(SQ.low_frequency_energy(Wc * np.float32(c), 0.2), e0, atol=1e-5)


@pytest.mark.parametrize("importance", SQ.IMPORTANCES)
def test_channel_budgets_are_scale_invariant(importance):
    Wc = _random_walk_columns()
    k0 = np.asarray(SQ.channel_budgets(Wc, 0.1, importance=importance))
    for c in (2.0**-66, 2.0**66, 1e-20, 1e20):
        np.testing.assert_array_equal(SQ.channel_budgets(Wc * np.float32(c), 0.1, importance=importance), k0)


def test_specquant_energy_kept_is_scale_invariant():
    """The kept share was 1.0 for every channel at 1e-20 (both energies underflowed to 0)."""
    Wc = _random_walk_columns()
    e0 = SQ.specquant(Wc, 4, 0.1).energy_kept
    assert np.all(e0 < 0.99)
    np.testing.assert_array_equal(SQ.specquant(Wc * np.float32(2.0**-66), 4, 0.1).energy_kept, e0)
    np.testing.assert_allclose(SQ.specquant(Wc * np.float32(1e-20), 4, 0.1).energy_kept, e0, atol=5e-3)


def test_smooth_rejects_non_positive_factors(W):
    X = _outlier_X()
    with pytest.raises(ValueError, match=r"lam: expected positive smoothing factors .* 48 entries ≤ 0"):
        SQ.smooth(W, X, np.zeros(48, np.float32))  # gave all-inf X̂ silently
    with pytest.raises(ValueError, match=r"lam: expected positive smoothing factors .* 48 entries ≤ 0"):
        SQ.smooth(W, X, -np.ones(48, np.float32))
    with pytest.raises(ValueError, match="lam: expected finite entries"):
        SQ.smooth(W, X, np.full(48, np.inf, np.float32))


def test_smoothing_factors_scale_as_c_to_the_alpha(W):
    """A 1e-12 clamp on max|X_i| made λ(W, 1e-30·X) 1e-6·λ instead of 1e-15·λ at α = 0.5."""
    X = _outlier_X()
    lam = np.asarray(SQ.smoothing_factors(W, X, 0.5), np.float64)
    for c, alpha in ((1e-30, 0.5), (1e-30, 0.8), (1e20, 0.5)):
        got = np.asarray(SQ.smoothing_factors(W, X * np.float32(c), alpha), np.float64)
        want = np.asarray(SQ.smoothing_factors(W, X, alpha), np.float64) * c**alpha
        np.testing.assert_allclose(got, want, rtol=1e-5)
    assert lam.min() > 0


def test_specquant_alpha_search_is_scale_invariant(W):
    """The α minimising the output error does not depend on the scales of X and W; at X·1e-20 the search
    returned α = 0 (the squared errors underflowed)."""
    X = _outlier_X()
    a0 = SQ.specquant(W, 4, 0.2, X=X).alpha
    for cw, cx in ((1.0, 2.0**-66), (1.0, 2.0**60), (2.0**-50, 1.0), (2.0**40, 2.0**-70)):
        assert SQ.specquant(W * np.float32(cw), 4, 0.2, X=X * np.float32(cx)).alpha == a0
    assert abs(SQ.specquant(W, 4, 0.2, X=X * np.float32(1e-20)).alpha - a0) <= 0.1


def test_specquant_rejects_inputs_beyond_float32_range(W):
    """float64 inputs were cast to float32 silently (X·1e50 → inf)."""
    X = _outlier_X().astype(np.float64)
    with pytest.raises(ValueError, match=r"X: expected entries within float32's range .* max\|X\| = "):
        SQ.specquant(W, 4, 0.2, X=X * 1e50)
    with pytest.raises(ValueError, match=r"W: expected entries within float32's range"):
        SQ.specquant(W.astype(np.float64) * 1e50, 4, 0.2)
    with pytest.raises(ValueError, match=r"W: expected entries within float32's range"):
        SQ.low_frequency_energy(W.astype(np.float64) * 1e50)


# --- compare_on_matrix: every argument checked up front ----------------------------------------------------------


@pytest.mark.parametrize("kwargs,error,match", [
    ({"s2d_k": -5}, ValueError, r"s2d_k: expected an integer in \[0, 20\], got -5"),
    ({"s2d_k": 2.0}, TypeError, "s2d_k: expected an integer"),
    ({"s2d_sigma_ratio": 7.0}, ValueError, r"s2d_sigma_ratio: expected a number in \(0, 1\]"),
    ({"s2d_n": 0.0}, ValueError, "s2d_n"),
    ({"axis": 1.0}, TypeError, "axis: expected an integer, got 1.0"),
    ({"axis": 2}, ValueError, "axis"),
    ({"bits": 4}, TypeError, r"bits: expected a sequence such as \(4, 3, 2\), got 4"),
    ({"bits": (4, 4)}, ValueError, "bits: expected distinct entries"),
    ({"methods": "rtn"}, TypeError, "methods: expected a sequence .* got 'rtn'"),
    ({"methods": ("rtn", "fancy")}, ValueError, "methods: expected one of"),
    ({"rank_window": (0, 3)}, ValueError, r"rank_window\[0\]"),
    ({"rank_window": (2, 99)}, ValueError, r"rank_window\[1\]"),
    ({"rank_window": 3}, TypeError, "rank_window: expected a pair"),
    ({"importance": "fancy"}, ValueError, "importance"),
    ({"name": 3}, TypeError, "name: expected a string"),
])
def test_compare_on_matrix_checks_every_argument_before_any_work(W, kwargs, error, match, monkeypatch):
    from zipfrmt.mitigate import compare

    def no_work(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(compare.spectra, "singular_values", no_work)
    with pytest.raises(error, match=match):
        compare.compare_on_matrix(W, **kwargs)


def test_compare_on_matrix_names_s2d_k_when_it_exceeds_the_rank(W):
    from zipfrmt.mitigate import compare

    with pytest.raises(ValueError, match=r"s2d_k: expected an integer in \[0, 1\], got 3"):
        compare.compare_on_matrix(W[:1])


def test_compare_on_matrix_accepts_numpy_integers(W):
    """np.int64 s2d_k/axis/bits reached json.dumps and failed there after all the work."""
    import json

    from zipfrmt.mitigate import compare

    ds = compare.compare_on_matrix(W, (np.int64(4),), methods=("rtn",), axis=np.int64(0), s2d_k=np.int64(2),
                                   rank_window=(np.int64(1), None))
    config = json.loads(ds.attrs["config"])
    assert config["axis"] == 0 and config["s2d_k"] == 2 and config["bits"] == [4]
    assert config["rank_window"] == [1, None] and config["granularity"] == "column"
