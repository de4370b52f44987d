"""zipfrmt.embeddings: Lemma 3.1, PPMI and PPMI-SVD, spectrum profiles, and the .npy/.npz/.safetensors loaders.

References are independent of the code under test: hand-computed PPMI entries, NumPy/LAPACK singular values,
``zipfrmt.rmt`` for the Marchenko–Pastur quantiles (a different algorithm), ``safetensors.numpy.save_file`` and a
byte-level safetensors writer written here from the format description.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse

from zipfrmt import corpus as C
from zipfrmt import embeddings as E
from zipfrmt import rmt
from zipfrmt import spectra as S

KEY = jax.random.key(0)


def sv_np(W) -> np.ndarray:
    return np.linalg.svd(np.asarray(W, np.float64), compute_uv=False)


# ----------------------------------------------------------------------------------------------------------
# Lemma 3.1
# ----------------------------------------------------------------------------------------------------------

LEMMA_V, LEMMA_D, LEMMA_N = 5000, 512, 10**6


@pytest.fixture(scope="module", params=[0.8, 1.0, 1.2], ids=lambda s: f"s={s}")
def zipf_counts(request):
    s = request.param
    tokens = C.sample_zipf(jax.random.key(11), LEMMA_N, LEMMA_V, s)
    return s, C.token_counts(tokens, LEMMA_V)


def test_lemma31_rank_exponent_is_half_the_zipf_exponent_on_the_leading_ranks(zipf_counts):
    # V = 5000 tokens in d = 512 dimensions, p̂ from 10^6 sampled tokens. The window is [2, k_head], the ranks
    # whose frequency is at least 10x the floor τ = P(rank > d)/d that the V − d non-orthogonal directions add
    # to every eigenvalue: k_head = 7, 22, 46 for s = 0.8, 1.0, 1.2. Measured a − s/2 = −0.022, −0.020, −0.017
    # (the residual flattening (s/2)·τ/(p + τ) inside the window); across seeds it moves by < 0.003.
    s, counts = zipf_counts
    W = E.lemma31_embedding(jax.random.key(1), counts, LEMMA_D)
    assert W.shape == (LEMMA_V, LEMMA_D) and W.dtype == jnp.float32
    sigma = np.asarray(S.singular_values(W))
    pred = E.lemma31_spectrum(counts, LEMMA_D)
    assert 5 <= pred.k_head <= LEMMA_D // 4
    fit = S.rank_decay_exponent(sigma, 2, pred.k_head)
    assert fit.a == pytest.approx(s / 2, abs=0.03)
    # Past the head the floor flattens the spectrum: over [2, d/4] the exponent is well below s/2
    # (measured 0.29, 0.42, 0.55), and the floor-corrected prediction accounts for it.
    wide = S.rank_decay_exponent(sigma, 2, LEMMA_D // 4).a
    assert wide < s / 2 - 0.04
    assert wide == pytest.approx(S.rank_decay_exponent(pred.sigma, 2, LEMMA_D // 4).a, abs=0.02)


@pytest.mark.parametrize("directions", E.DIRECTIONS)
def test_lemma31_spectrum_predicts_singular_values_with_floor(zipf_counts, directions):
    # σ_k ≈ √(p̂_(k) + τ_k). Largest relative error over the head (k ≤ k_head), measured for s = 0.8, 1.0, 1.2:
    # 0.09%, 0.19%, 0.36% (head_orthonormal) and 2.3%, 1.8%, 2.3% (random); over [1, d/4]: 4.8%, 2.9%, 1.7% and
    # 4.1%, 4.0%, 6.1%. Without the floor, σ_(d/4) would be underestimated by 18-51%.
    _, counts = zipf_counts
    W = E.lemma31_embedding(jax.random.key(2), counts, LEMMA_D, directions=directions)
    sigma = np.asarray(S.singular_values(W), np.float64)
    pred = E.lemma31_spectrum(counts, LEMMA_D, directions=directions)
    kh = max(pred.k_head, 1)
    assert np.max(np.abs(sigma[:kh] / pred.sigma[:kh] - 1)) < (0.01 if directions == "head_orthonormal" else 0.035)
    assert np.max(np.abs(sigma[: LEMMA_D // 4] / pred.sigma[: LEMMA_D // 4] - 1)) < 0.08
    # without the floor (the lemma's idealisation) the tail of the window is far off
    q = LEMMA_D // 4
    assert sigma[q - 1] / pred.sigma_lemma[q - 1] > 1.15


def test_lemma31_with_fewer_tokens_than_dimensions_is_exactly_sqrt_pmf():
    p = np.asarray(C.zipf_pmf(300, 1.1), np.float64)
    perm = np.random.default_rng(0).permutation(300)  # token order does not matter
    W = E.lemma31_embedding(KEY, p[perm], 512)
    sigma = sv_np(W)
    np.testing.assert_allclose(sigma[:300], np.sqrt(p), rtol=2e-5)
    # rows are √p̂_k e_k with orthonormal e_k: W Wᵀ = diag(p̂)
    G = np.asarray(W, np.float64) @ np.asarray(W, np.float64).T
    np.testing.assert_allclose(G, np.diag(p[perm]), atol=1e-6)
    pred = E.lemma31_spectrum(p[perm], 512)
    assert pred.floor.max() == 0.0 and pred.k_head == 300
    np.testing.assert_allclose(pred.sigma, np.sqrt(p))


def test_lemma31_rows_have_norm_sqrt_p_and_are_deterministic_in_the_key():
    counts = np.array([50, 0, 30, 20, 7, 3, 1, 9], np.int64)
    W = np.asarray(E.lemma31_embedding(KEY, counts, 4, directions="random"))
    np.testing.assert_allclose(np.linalg.norm(W, axis=1), np.sqrt(counts / counts.sum()), rtol=1e-6)
    np.testing.assert_array_equal(W, np.asarray(E.lemma31_embedding(KEY, counts, 4, directions="random")))
    assert not np.allclose(W, np.asarray(E.lemma31_embedding(jax.random.key(9), counts, 4, directions="random")))
    # head_orthonormal: the 4 most frequent tokens (ids 0, 2, 3, 7) get mutually orthogonal rows
    H = np.asarray(E.lemma31_embedding(KEY, counts, 4), np.float64)[[0, 2, 3, 7]]
    G = H @ H.T
    np.testing.assert_allclose(G - np.diag(np.diag(G)), 0.0, atol=1e-7)


def test_lemma31_noise_adds_its_bulk_mean_to_the_floor():
    counts = C.token_counts(C.sample_zipf(jax.random.key(3), LEMMA_N, LEMMA_V, 1.2), LEMMA_V)
    nu = 3e-4  # V·ν² = 4.5e-4, about 2.5x the direction floor τ
    W = E.lemma31_embedding(jax.random.key(4), counts, LEMMA_D, noise_std=nu)
    pred = E.lemma31_spectrum(counts, LEMMA_D, noise_std=nu)
    np.testing.assert_allclose(pred.floor, pred.floor[0])
    assert pred.floor[0] == pytest.approx(E.lemma31_spectrum(counts, LEMMA_D).floor[0] + LEMMA_V * nu**2)
    sigma = np.asarray(S.singular_values(W), np.float64)
    kh = pred.k_head
    assert kh >= 10
    assert np.max(np.abs(sigma[:kh] / pred.sigma[:kh] - 1)) < 0.02  # measured 0.010


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(counts_or_pmf=np.array([1, -1, 2]), d=2), ValueError, "counts_or_pmf: .*negative"),
        (dict(counts_or_pmf=np.zeros(4), d=2), ValueError, "counts_or_pmf: .*positive total"),
        (dict(counts_or_pmf=np.ones((2, 2)), d=2), ValueError, r"counts_or_pmf: .*1-D.*\(2, 2\)"),
        (dict(counts_or_pmf=np.array([1.0, np.nan]), d=2), ValueError, "counts_or_pmf: .*NaN"),
        (dict(counts_or_pmf=np.array(["a", "b"]), d=2), TypeError, "counts_or_pmf"),
        (dict(counts_or_pmf=np.ones(4), d=0), ValueError, "d: "),
        (dict(counts_or_pmf=np.ones(4), d=2, directions="gaussian"), ValueError, "directions: .*'random'"),
        (dict(counts_or_pmf=np.ones(4), d=2, noise_std=-1.0), ValueError, "noise_std: "),
    ],
)
def test_lemma31_rejects_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        E.lemma31_embedding(KEY, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# PPMI
# ----------------------------------------------------------------------------------------------------------

COOC = np.array([[4, 1, 0], [1, 2, 3]])  # rows r = (5, 6), columns c = (5, 3, 3), N = 11


def test_ppmi_matches_hand_computation():
    # α = 1, k = 1: PMI = ln(C·N / (r_i c_j)); negative PMI and zero counts give 0.
    expected = np.array(
        [
            [math.log(4 * 11 / (5 * 5)), 0.0, 0.0],  # ln 1.76; ln(11/15) < 0; C = 0
            [0.0, math.log(2 * 11 / (6 * 3)), math.log(3 * 11 / (6 * 3))],  # ln(11/30) < 0; ln 1.22; ln 1.83
        ]
    )
    np.testing.assert_allclose(E.ppmi(COOC, alpha=1.0), expected, rtol=1e-14)
    # shift k = 1.5: ln(1.76/1.5) > 0, ln(1.222/1.5) < 0 → 0, ln(1.833/1.5)
    shifted = np.array([[math.log(1.76 / 1.5), 0.0, 0.0], [0.0, 0.0, math.log(33 / 18 / 1.5)]])
    np.testing.assert_allclose(E.ppmi(COOC, alpha=1.0, shift=1.5), shifted, rtol=1e-14)
    # α = 0.75 smooths the context law only: P_α(j) = c_j^¾ / (5^¾ + 2·3^¾)
    z = 5**0.75 + 2 * 3**0.75
    smoothed = np.array(
        [
            [math.log(4 / 5 / (5**0.75 / z)), math.log(1 / 5 / (3**0.75 / z)), 0.0],
            [math.log(1 / 6 / (5**0.75 / z)), math.log(2 / 6 / (3**0.75 / z)), math.log(3 / 6 / (3**0.75 / z))],
        ]
    )
    np.testing.assert_allclose(E.ppmi(COOC), np.maximum(smoothed, 0.0), rtol=1e-14)
    # smoothing lifts the rare contexts' probability (3/11 → 0.288), so their PMI drops; the common one's rises
    assert smoothed[1, 2] < expected[1, 2] and smoothed[0, 0] > expected[0, 0]


@pytest.mark.parametrize("alpha, shift", [(0.75, 1.0), (1.0, 1.0), (0.75, 5.0)])
def test_ppmi_sparse_and_dense_agree_and_sparse_stores_only_positive_entries(alpha, shift):
    rng = np.random.default_rng(0)
    dense = rng.poisson(0.7, size=(40, 30)) * rng.integers(1, 5, size=(40, 30))
    P_dense = E.ppmi(dense, alpha=alpha, shift=shift)
    P_sparse = E.ppmi(scipy.sparse.coo_matrix(dense), alpha=alpha, shift=shift)
    assert isinstance(P_sparse, scipy.sparse.csr_array)
    assert (P_sparse.data > 0).all() and P_sparse.nnz == int((P_dense > 0).sum())
    np.testing.assert_allclose(P_sparse.toarray(), P_dense, rtol=1e-13)


def test_ppmi_svd_embedding_is_u_sigma_to_the_weight_and_solvers_agree():
    rng = np.random.default_rng(1)
    cooc = scipy.sparse.csr_array(rng.poisson(1.5, size=(600, 600)).astype(np.int64))
    M = E.ppmi(cooc).toarray()
    ref = sv_np(M)
    a = E.ppmi_svd_embedding(cooc, 20, solver="arpack")
    b = E.ppmi_svd_embedding(cooc, 20, solver="dense")
    np.testing.assert_allclose(a.singular_values, ref[:20], rtol=1e-10)
    np.testing.assert_allclose(b.singular_values, ref[:20], rtol=1e-10)
    assert a.embedding.shape == (600, 20) and a.embedding.dtype == np.float32 and a.weight == 0.5
    np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-5)  # same signs: the sign convention is fixed
    np.testing.assert_allclose(sv_np(a.embedding), np.sqrt(ref[:20]), rtol=1e-5)  # σ(W) = σ^p, p = 0.5
    full = E.ppmi_svd_embedding(cooc, 20, weight=1.0)
    np.testing.assert_allclose(sv_np(full.embedding), ref[:20], rtol=1e-5)


@pytest.fixture(scope="module")
def latent_ppmi_spectra():
    out = {}
    for s in (0.8, 1.0, 1.2):
        corpus = C.latent_semantic_corpus(jax.random.key(0), 500_000, 2000, s)  # dim = 16 latent directions
        out[s] = E.ppmi_svd_embedding(C.cooccurrence(corpus.tokens, 2000, 5), 128)
    return out


def test_ppmi_svd_spectrum_of_latent_corpus_is_a_flat_power_law_independent_of_zipf_exponent(latent_ppmi_spectra):
    # V = 2000, 5·10^5 tokens, window 5, α = 0.75, k = 1. The PPMI spectrum is σ_1 (the positive mean), ~16 latent
    # spikes, then a bulk that is a clean power law over ranks [17, 128] (R² ≥ 0.98) with exponent
    # a = 0.095, 0.089, 0.090 for s = 0.8, 1.0, 1.2 (seeds 1, 2: 0.093, 0.091, 0.093 and 0.096, 0.090, 0.096):
    # the same for every s, and 4-6x flatter than Lemma 3.1's s/2 — PMI divides out the unigram frequencies that
    # make √p_k decay, so the Zipf law does not reach the PPMI spectrum. Over seeds 0-2 all nine values lie in
    # [0.088, 0.096]; the tolerance ±0.015 around 0.092 is about 3x the seed-to-seed spread (≤ 0.0055).
    fits = {s: S.rank_decay_exponent(e.singular_values, 17, 128) for s, e in latent_ppmi_spectra.items()}
    for s, fit in fits.items():
        assert fit.r2 > 0.97
        assert fit.a == pytest.approx(0.092, abs=0.015)
        assert fit.a < s / 2 - 0.25
    a = [f.a for f in fits.values()]
    assert max(a) - min(a) < 0.02  # measured ≤ 0.006 for each seed: no dependence on s
    for s, emb in latent_ppmi_spectra.items():  # the embedding W = U Σ^½ decays at half the rate
        w = S.rank_decay_exponent(sv_np(emb.embedding), 17, 128).a
        assert w == pytest.approx(0.5 * fits[s].a, abs=1e-4)


@pytest.mark.parametrize(
    "cooc, kwargs, exc, match",
    [
        (np.array([[1, -2], [0, 1]]), {}, ValueError, "cooc: .*negative"),
        (np.zeros((3, 3)), {}, ValueError, "cooc: .*all-zero"),
        (np.ones(3), {}, ValueError, r"cooc: .*2-D.*\(3,\)"),
        (np.array([[1.0, np.inf], [1.0, 1.0]]), {}, ValueError, "cooc: .*Inf"),
        (np.ones((2, 2), bool), {}, TypeError, "cooc: "),
        (COOC, dict(shift=0.0), ValueError, "shift: "),
        (COOC, dict(alpha=-0.5), ValueError, "alpha: "),
    ],
)
def test_ppmi_rejects_bad_input(cooc, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        E.ppmi(cooc, **kwargs)


def test_ppmi_svd_embedding_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"d: expected an integer in \[1, 2\], got 3"):
        E.ppmi_svd_embedding(COOC, 3)
    with pytest.raises(ValueError, match="d: solver='arpack' needs d < min"):
        E.ppmi_svd_embedding(COOC, 2, solver="arpack")
    with pytest.raises(ValueError, match="solver: "):
        E.ppmi_svd_embedding(COOC, 1, solver="lanczos")
    with pytest.raises(ValueError, match="weight: "):
        E.ppmi_svd_embedding(COOC, 1, weight=-1.0)


# ----------------------------------------------------------------------------------------------------------
# Spectrum profiles
# ----------------------------------------------------------------------------------------------------------


def test_power_profile_is_power_law_spectrum():
    # float64 then rounded, against float32 arithmetic: equal to a float32 ulp
    np.testing.assert_allclose(
        E.spectrum_profile(50, "power", a=0.7, scale=2.0), E.power_law_spectrum(50, 0.7, 2.0), rtol=2e-7
    )


def test_broken_power_profile_has_both_exponents_and_is_continuous():
    sigma = np.asarray(E.spectrum_profile(400, "broken_power", a1=0.3, a2=1.1, k_break=40, scale=3.0), np.float64)
    assert sigma[0] == pytest.approx(3.0)
    assert S.rank_decay_exponent(sigma, 1, 40).a == pytest.approx(0.3, abs=1e-5)
    assert S.rank_decay_exponent(sigma, 40, 400).a == pytest.approx(1.1, abs=1e-5)
    assert sigma[40] / sigma[39] == pytest.approx((41 / 40) ** -1.1, rel=1e-6)  # no jump at the break
    W = E.matrix_with_spectrum(KEY, 500, 400, jnp.asarray(sigma, jnp.float32))
    np.testing.assert_allclose(sv_np(W), sigma, rtol=2e-4)


def test_exponential_profile_has_constant_ratio():
    sigma = np.asarray(E.spectrum_profile(30, "exponential", tau=4.0, scale=2.0), np.float64)
    assert sigma[0] == pytest.approx(2.0)
    np.testing.assert_allclose(sigma[1:] / sigma[:-1], math.exp(-1 / 4.0), rtol=1e-6)


@pytest.mark.parametrize("V, d", [(4000, 400), (800, 800), (10_000, 50)])
def test_marchenko_pastur_profile_matches_rmt_typical_singular_values(V, d):
    s = 0.3
    sigma = np.asarray(E.spectrum_profile(d, "marchenko_pastur", gamma=d / V, scale=s * math.sqrt(V)))
    ref = np.asarray(rmt.mp_typical_singular_values(V, d, s**2))
    np.testing.assert_allclose(sigma, ref, rtol=2e-6)
    edge = s * (math.sqrt(V) + math.sqrt(d))
    assert sigma[0] < edge and sigma[-1] > s * (math.sqrt(V) - math.sqrt(d))
    # and the classical locations are where a Gaussian matrix's singular values actually sit (to ~1% of σ_1;
    # relative to each σ_k the hard edge at γ = 1 fluctuates far more)
    if V * d <= 4_000_000:
        G = s * np.random.default_rng(0).standard_normal((V, d))
        assert np.max(np.abs(sv_np(G) - sigma)) < 0.02 * sigma[0]


def test_flat_profile():
    np.testing.assert_array_equal(E.spectrum_profile(7, "flat", scale=1.5), np.full(7, 1.5, np.float32))


@pytest.mark.parametrize(
    "kind, params, exc, match",
    [
        ("zigzag", {}, ValueError, "kind: expected one of 'power'"),
        ("power", {}, TypeError, "kind='power' takes a; got none"),
        ("broken_power", dict(a1=1.0, a2=2.0), TypeError, "takes a1, a2, k_break; got a1, a2"),
        ("exponential", dict(tau=1.0, a=1.0), TypeError, "takes tau; got a, tau"),
        ("flat", dict(a=1.0), TypeError, "takes no parameters besides scale"),
        ("exponential", dict(tau=0.0), ValueError, "tau: "),
        ("marchenko_pastur", dict(gamma=1.5), ValueError, "gamma: "),
        ("broken_power", dict(a1=1.0, a2=2.0, k_break=2.5), TypeError, "k_break: expected an integer"),
    ],
)
def test_spectrum_profile_rejects_bad_parameters(kind, params, exc, match):
    with pytest.raises(exc, match=match):
        E.spectrum_profile(10, kind, **params)


def test_spectra_beyond_float32_and_negative_sigma_are_named_errors():
    with pytest.raises(ValueError, match="scale: expected entries within float32's range"):
        E.power_law_spectrum(5, 0.5, scale=1e39)
    with pytest.raises(ValueError, match="scale: expected entries within float32's range"):
        E.spectrum_profile(5, "flat", scale=1e39)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="sigma: expected entries within float32's range"):
        E.matrix_with_spectrum(key, 6, 3, np.array([1e300, 1.0, 1.0]))
    with pytest.raises(ValueError, match="sigma: expected non-negative singular values"):
        E.matrix_with_spectrum(key, 6, 3, np.array([-3.0, 2.0, -1.0]))


def test_an_integer_seed_is_not_taken_for_a_prng_key():
    with pytest.raises(TypeError, match=r"key: expected a JAX PRNG key \(jax.random.key\(seed\)\), got 0"):
        E.power_law_matrix(0, 8, 4, 0.5)
    with pytest.raises(TypeError, match="key: expected a JAX PRNG key"):
        E.haar_orthonormal(7, 8, 4)
    assert E.haar_orthonormal(jax.random.PRNGKey(0), 8, 4).shape == (8, 4)  # raw uint32[2] keys still work
