"""Tests for zipfrmt.corpus: Zipf laws, samplers, corpus models, counts, co-occurrence, fits and text.

References are independent of the package: NumPy float64 formulas, mpmath (Hurwitz zeta, digamma), brute-force
loops, and the published figures of the shared data (README beside the files).
"""

from __future__ import annotations

import math
import tracemalloc

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
import scipy.sparse
import scipy.stats
from jax.extend.random import threefry_2x32

from zipfrmt import corpus as C
from zipfrmt.corpus import sampling

KEY = jax.random.key(0)


def zipf_np(V: int, s: float, q: float = 0.0) -> np.ndarray:
    w = (np.arange(1, V + 1, dtype=np.float64) + q) ** -s
    return w / w.sum()


# ----------------------------------------------------------------------------------------------------------
# Laws
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("s, q", [(0.8, 0.0), (1.0, 0.0), (1.2, 0.0), (1.1, 2.7), (0.5, -0.5)])
def test_zipf_pmf_sums_to_one_and_matches_formula(s, q):
    V = 20_000
    p = C.zipf_pmf(V, s, q, dtype=jnp.float64)
    assert p.dtype == jnp.float64 and p.shape == (V,)
    p = np.asarray(p)
    assert p.sum() == pytest.approx(1.0, abs=1e-14)
    np.testing.assert_allclose(p, zipf_np(V, s, q), rtol=1e-13)
    p32 = C.zipf_pmf(V, s, q)
    assert p32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(p32), p, rtol=1e-6)


@pytest.mark.parametrize("s", [0.8, 1.0, 1.2])
@pytest.mark.parametrize("q", [0.0, 2.5])
def test_zipf_normalizer_is_accurate_at_ten_million_ranks(s, q):
    """H_{V,s,q} = ζ(s, 1+q) − ζ(s, V+1+q) (s ≠ 1), ψ(V+1+q) − ψ(1+q) (s = 1), evaluated in mpmath."""
    V = 10**7
    mpmath.mp.dps = 30
    if s == 1.0:
        ref = mpmath.digamma(V + 1 + q) - mpmath.digamma(1 + q)
    else:
        ref = mpmath.zeta(s, 1 + q) - mpmath.zeta(s, V + 1 + q)
    assert C.zipf_normalizer(V, s, q) == pytest.approx(float(ref), rel=1e-13)


def test_zipf_cdf_is_the_float64_cumulative_sum_ending_at_one():
    V, s = 50_000, 1.1
    F = np.asarray(C.zipf_cdf(V, s, dtype=jnp.float64))
    assert F[-1] == 1.0
    np.testing.assert_allclose(F, np.cumsum(zipf_np(V, s)), rtol=1e-13)
    assert np.all(np.diff(F) > 0)


@pytest.mark.parametrize("s, q", [(0.8, 0.0), (1.0, 0.0), (1.3, 4.0)])
def test_zipf_entropy_matches_minus_sum_p_log_p(s, q):
    V = 100_000
    p = zipf_np(V, s, q)
    assert C.zipf_entropy(V, s, q) == pytest.approx(-np.sum(p * np.log(p)), rel=1e-12)


# ----------------------------------------------------------------------------------------------------------
# Samplers
# ----------------------------------------------------------------------------------------------------------


def test_threefry_block_function_is_bit_identical_to_jax():
    k = jnp.array([0x13198A2E, 0x03707344], jnp.uint32)
    x0 = jnp.arange(1000, dtype=jnp.uint32) * np.uint32(2654435761)
    x1 = jnp.arange(1000, dtype=jnp.uint32) + np.uint32(7)
    y0, y1 = sampling._threefry2x32(k[0], k[1], x0, x1)
    ref = threefry_2x32(k, jnp.concatenate([x0, x1]))
    np.testing.assert_array_equal(np.concatenate([y0, y1]), np.asarray(ref))


def implied_pmf(table: C.AliasTable) -> np.ndarray:
    """Exact outcome probabilities of an alias table (float64 from integer masses)."""
    thr = np.asarray(table.threshold).astype(np.int64)
    ali = np.asarray(table.alias).astype(np.int64)
    M = thr.size
    own = np.where(ali == np.arange(M), 1 << 32, thr)
    mass = own.copy()
    np.add.at(mass, ali, (1 << 32) - own)
    return mass / (M * 2.0**32)


@pytest.mark.parametrize("V, s", [(10**6, 1.2), (50_000, 0.8), (3, 1.0), (4, 1e-3)])
def test_alias_table_realises_the_pmf_to_2_to_the_minus_32(V, s):
    p = zipf_np(V, s)
    P = implied_pmf(C.alias_table(p))
    M = P.size
    assert M >= V and M & (M - 1) == 0
    assert np.all(P[V:] == 0)
    # one unit of 2^-32 of a cell, plus the float64 round-off of p itself
    assert np.all(np.abs(P[:V] - p) <= 2.0**-32 / M + 4e-16 * p)
    assert P.sum() == pytest.approx(1.0, abs=1e-15)


def test_alias_table_handles_zeros_and_arbitrary_weights():
    rng = np.random.default_rng(0)
    for _ in range(50):
        V = int(rng.integers(1, 5000))
        w = rng.random(V) ** int(rng.integers(1, 10))
        w[rng.random(V) < 0.3] = 0.0
        w[rng.integers(V)] += 0.1
        P = implied_pmf(C.alias_table(w))
        assert np.all(P[:V][w == 0] == 0)
        p = w / w.sum()
        assert np.all(np.abs(P[:V] - p) <= 2.0**-32 / P.size + 4e-16 * p)


@pytest.mark.parametrize("s", [0.8, 1.0, 1.2])
def test_sampled_iid_corpus_recovers_the_zipf_exponent(s):
    """10^6 tokens, V = 50,000: the all-ranks MLE is within ±0.02 of the generating s."""
    V = 50_000
    x = C.sample_zipf(KEY, 10**6, V, s)
    assert x.dtype == jnp.int32 and x.shape == (10**6,)
    assert int(x.min()) >= 0 and int(x.max()) < V
    fit = C.fit_zipf(C.token_counts(x, V))
    assert abs(fit.s - s) <= 0.02


def test_sampler_reproduces_rare_tail_ranks_at_a_million_types():
    """V = 10^6, s = 1.2, 10^7 tokens: ranks 500,001..10^6 have p_k ≈ 1e-8, below float32 resolution near 1
    (a float32 inverse CDF gives 70% of them zero mass). The block count, the number of distinct tail
    ranks seen and a chi-square over 40 log-spaced rank bins all match the exact law."""
    V, s, N = 10**6, 1.2, 10**7
    p = zipf_np(V, s)
    counts = C.token_counts(C.sample_zipf(jax.random.key(7), N, V, s), V)
    tail = slice(V // 2, V)
    P = p[tail].sum()
    z_block = (counts[tail].sum() - N * P) / math.sqrt(N * P * (1 - P))
    assert abs(z_block) < 4
    q = 1.0 - np.exp(-N * p[tail])  # P(rank seen at least once), Poisson approximation
    z_seen = (np.count_nonzero(counts[tail]) - q.sum()) / math.sqrt(np.sum(q * (1 - q)))
    assert abs(z_seen) < 4
    edges = np.unique(np.geomspace(1, V + 1, 41).astype(np.int64))
    obs = np.add.reduceat(counts, edges[:-1] - 1)
    exp = N * np.add.reduceat(p, edges[:-1] - 1)
    assert scipy.stats.chisquare(obs, exp).pvalue > 1e-4
    # the test has power: a float32 CDF loses the per-rank tail
    d32 = np.diff(np.concatenate([[0.0], np.cumsum(p).astype(np.float32).astype(np.float64)]))
    assert np.count_nonzero(d32[tail] == 0) > V // 10


def test_sample_categorical_matches_its_pmf_and_never_draws_zero_mass():
    pmf = np.array([0.5, 0.0, 0.25, 0.125, 0.125, 0.0, 1e-4])
    x = np.asarray(C.sample_categorical(jax.random.key(3), 10**6, pmf))
    counts = np.bincount(x, minlength=pmf.size)
    assert counts[1] == 0 and counts[5] == 0
    p = pmf / pmf.sum()
    nz = p > 0
    assert scipy.stats.chisquare(counts[nz], 10**6 * p[nz]).pvalue > 1e-4


def test_same_key_same_stream_and_different_keys_different_streams():
    a = C.sample_zipf(jax.random.key(1), 100_000, 5_000, 1.0)
    b = C.sample_zipf(jax.random.key(1), 100_000, 5_000, 1.0)
    c = C.sample_zipf(jax.random.key(2), 100_000, 5_000, 1.0)
    np.testing.assert_array_equal(a, b)
    assert np.mean(np.asarray(a) == np.asarray(c)) < 0.2  # P(equal) = Σp² ≈ 0.02 for independent streams


def test_stream_is_prefix_consistent_and_independent_of_chunk_size():
    """Token i uses Threefry counter i: the chunked loop (chunk_size=4096) and the single fused pass
    (default) produce the same stream, and a shorter stream is a prefix of a longer one."""
    long = C.sample_zipf(KEY, 100_003, 5_000, 1.0, chunk_size=4096)
    short = C.sample_zipf(KEY, 50_000, 5_000, 1.0)
    np.testing.assert_array_equal(long[:50_000], short)
    np.testing.assert_array_equal(long, C.sample_zipf(KEY, 100_003, 5_000, 1.0))
    legacy = C.sample_zipf(jax.random.PRNGKey(0), 1000, 5_000, 1.0)
    assert legacy.shape == (1000,)


def test_sampling_kernel_keeps_no_intermediate_arrays():
    """The fused pass needs no scratch beyond its output (XLA's compiled memory analysis)."""
    table = C.alias_table(zipf_np(50_000, 1.0))
    n = 10**6
    compiled = sampling._sample_alias_kernel.lower(KEY, table, n_tokens=n, chunk_size=n).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
        pytest.skip("this backend reports no memory analysis")
    assert analysis.output_size_in_bytes == 4 * n
    assert analysis.temp_size_in_bytes < 64 * 1024


def test_sample_alias_vmaps_over_keys():
    table = C.alias_table(zipf_np(1000, 1.0))
    keys = jax.random.split(KEY, 4)
    batch = jax.vmap(lambda k: C.sample_alias(k, 2048, table))(keys)
    assert batch.shape == (4, 2048)
    np.testing.assert_array_equal(batch[2], C.sample_alias(keys[2], 2048, table))


# ----------------------------------------------------------------------------------------------------------
# Latent-semantic corpus
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def latent_corpus() -> C.LatentCorpus:
    return C.latent_semantic_corpus(jax.random.key(11), 10**6, 10_000, 1.0)


def test_latent_corpus_keeps_its_zipf_marginal(latent_corpus):
    lc = latent_corpus
    assert lc.calibration_error < 1e-9
    np.testing.assert_allclose(np.asarray(lc.topic_pmf, np.float64).sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(lc.topic_pmf).mean(axis=0), zipf_np(10_000, 1.0), rtol=1e-5)
    assert lc.tokens.shape == (10**6,) and lc.doc_topics.shape == (-(-(10**6) // 256),)
    fit = C.fit_zipf(C.token_counts(lc.tokens, 10_000))
    assert abs(fit.s - 1.0) <= 0.02


def _pmi_alignment(tokens, U: np.ndarray, V: int, top: int = 50) -> float:
    """Correlation, over pairs of the `top` most frequent types, of windowed PMI with ⟨u_i, u_j⟩."""
    M = C.cooccurrence(tokens, V, window=5)
    sub = M[:top, :top].toarray().astype(np.float64)
    row = np.asarray(M.sum(axis=1)).ravel()[:top].astype(np.float64)
    pmi = np.log(sub * M.sum() / np.outer(row, row))
    iu = np.triu_indices(top, 1)
    return float(np.corrcoef(pmi[iu], (U[:top] @ U[:top].T)[iu])[0, 1])


def test_latent_corpus_cooccurrence_follows_latent_alignment_unlike_the_iid_stream(latent_corpus):
    """Tokens with aligned latent vectors co-occur more: PMI tracks ⟨u_i, u_j⟩ (r ≈ 0.8 measured); for the
    i.i.d. Zipf stream with the same marginal it does not (r ≈ 0)."""
    U = np.asarray(latent_corpus.token_vectors, np.float64)
    r_latent = _pmi_alignment(latent_corpus.tokens, U, 10_000)
    r_iid = _pmi_alignment(C.sample_zipf(jax.random.key(12), 10**6, 10_000, 1.0), U, 10_000)
    assert r_latent > 0.6
    assert abs(r_iid) < 0.1


def test_latent_topics_persist_with_the_requested_probability():
    rho, T = 0.9, 64
    lc = C.latent_semantic_corpus(
        jax.random.key(5), 2_000_000, 1000, 1.0, doc_len=100, n_topics=T, persistence=rho
    )
    z = np.asarray(lc.doc_topics)
    same = np.mean(z[1:] == z[:-1])
    expected = rho + (1 - rho) / T
    # the indicators [z_{d+1} = z_d] are independent Bernoulli(ρ + (1 − ρ)/T)
    assert abs(same - expected) < 4 * math.sqrt(expected * (1 - expected) / (z.size - 1))
    assert np.all(np.bincount(z, minlength=T) > 0)


def test_latent_corpus_with_beta_zero_is_the_iid_law():
    lc = C.latent_semantic_corpus(jax.random.key(6), 10_000, 500, 1.1, beta=0.0, n_topics=8)
    np.testing.assert_allclose(np.asarray(lc.topic_pmf), np.tile(zipf_np(500, 1.1), (8, 1)), rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------
# Counts, rank–frequency, co-occurrence
# ----------------------------------------------------------------------------------------------------------


def test_token_counts_and_rank_frequency():
    x = np.array([3, 1, 3, 3, 0, 1, 4])
    counts = C.token_counts(x, 6)
    np.testing.assert_array_equal(counts, [1, 2, 0, 3, 1, 0])
    rf = C.rank_frequency(counts)
    np.testing.assert_array_equal(rf.ranks, [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(rf.counts, [3, 2, 1, 1, 0, 0])
    np.testing.assert_array_equal(rf.ids, [3, 1, 0, 4, 2, 5])
    np.testing.assert_allclose(rf.frequencies, np.array([3, 2, 1, 1, 0, 0]) / 7)


def brute_force_cooccurrence(x, V, window, symmetric, harmonic):
    M = np.zeros((V, V))
    for t in range(len(x)):
        for d in range(1, window + 1):
            if t + d < len(x):
                w = 1.0 / d if harmonic else 1.0
                M[x[t], x[t + d]] += w
                if symmetric:
                    M[x[t + d], x[t]] += w
    return M


@pytest.mark.parametrize("window", [1, 2, 3, 7])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("weighting", ["uniform", "harmonic"])
def test_cooccurrence_equals_brute_force_count(window, symmetric, weighting):
    x = np.array([0, 1, 2, 1, 1, 3, 0, 2, 2, 4, 1, 0])
    M = C.cooccurrence(x, 6, window, symmetric=symmetric, weighting=weighting, chunk_size=5)
    assert isinstance(M, scipy.sparse.csr_array) and M.shape == (6, 6)
    ref = brute_force_cooccurrence(x, 6, window, symmetric, weighting == "harmonic")
    np.testing.assert_allclose(M.toarray(), ref, rtol=1e-15)
    dense = C.cooccurrence(x, 6, window, symmetric=symmetric, weighting=weighting, dense=True)
    assert isinstance(dense, np.ndarray)
    np.testing.assert_allclose(dense, ref, rtol=1e-15)
    if symmetric:
        np.testing.assert_array_equal(M.toarray(), M.toarray().T)


def test_cooccurrence_of_a_large_vocabulary_stays_sparse():
    """V = 50,000 (a dense int64 V×V would take 20 GB): peak traced memory stays under 200 MB."""
    V = 50_000
    x = C.sample_zipf(KEY, 200_000, V, 1.0)
    tracemalloc.start()
    try:
        M = C.cooccurrence(x, V, window=5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert scipy.sparse.issparse(M) and M.shape == (V, V)
    assert M.sum() == 2 * sum(200_000 - d for d in range(1, 6))
    assert peak < 200 * 2**20


# ----------------------------------------------------------------------------------------------------------
# Zipf-exponent fits
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("s", [0.6, 1.0, 1.5])
def test_fit_zipf_recovers_s_from_exact_expected_counts(s):
    V = 20_000
    n = 1e6 * zipf_np(V, s)
    fit = C.fit_zipf(n)
    assert fit.s == pytest.approx(s, abs=1e-9)
    assert fit.ks < 1e-9
    assert (fit.k_min, fit.k_max, fit.n_tokens) == (1, V, pytest.approx(1e6))
    shuffled = np.random.default_rng(0).permutation(n)
    assert C.fit_zipf(shuffled).s == pytest.approx(fit.s, abs=1e-12)
    win = C.fit_zipf(n, k_min=10, k_max=5_000)
    assert win.s == pytest.approx(s, abs=1e-9)
    assert (win.k_min, win.k_max) == (10, 5_000)


def test_fit_zipf_stderr_shrinks_like_one_over_sqrt_n():
    n = zipf_np(5_000, 1.1)
    e1 = C.fit_zipf(1e4 * n).stderr
    e4 = C.fit_zipf(4e4 * n).stderr
    assert e1 / e4 == pytest.approx(2.0, rel=1e-9)


def test_fit_zipf_stderr_matches_the_spread_over_independent_corpora():
    """60 corpora of 10^5 tokens (V = 1000, s = 1): sd(ŝ)/stderr measured 0.87."""
    V, N = 1000, 100_000
    fits = [C.fit_zipf(C.token_counts(C.sample_zipf(k, N, V, 1.0), V)) for k in jax.random.split(KEY, 60)]
    ratio = np.std([f.s for f in fits], ddof=1) / fits[0].stderr
    assert 0.65 < ratio < 1.25


def test_windowed_fit_removes_the_mandelbrot_head():
    """Expected counts of Zipf–Mandelbrot(s = 1.1, q = 10): the all-ranks fit is pulled to ≈ 0.955 by the bent
    head; the window [1000, V] recovers s within 0.005."""
    V = 100_000
    n = 1e7 * zipf_np(V, 1.1, 10.0)
    assert abs(C.fit_zipf(n).s - 1.1) > 0.1
    assert abs(C.fit_zipf(n, k_min=1000).s - 1.1) < 0.005


def test_fit_zipf_keeps_zero_count_ranks_inside_the_window():
    """Zeros are part of the truncated support: appending empty types raises the fitted exponent."""
    n = 1e5 * zipf_np(1000, 1.0)
    with_zeros = np.concatenate([n, np.zeros(1000)])
    assert C.fit_zipf(with_zeros).k_max == 2000
    assert C.fit_zipf(with_zeros).s > C.fit_zipf(n).s
    assert C.fit_zipf(with_zeros, k_max=1000).s == pytest.approx(1.0, abs=1e-9)


def test_fit_zipf_of_equal_counts_is_zero():
    assert C.fit_zipf(np.full(100, 7)).s == 0.0


# ----------------------------------------------------------------------------------------------------------
# Real text
# ----------------------------------------------------------------------------------------------------------


def test_wikitext2_valid_zipf_exponent(text_data):
    """Convention: whitespace tokens exactly as in the file (str.split: punctuation tokens and the literal
    <unk> count as types), no vocabulary cap, MLE of the truncated Zipf law over all ranks 1..V (V = 13,776
    types, N = 213,886 tokens). Measured ŝ = 1.01185 (data README: ≈ 1.01); pinned to ±1e-4."""
    tc = C.read_text(text_data / "wikitext2-valid.txt")
    assert len(tc.tokens) == 213_886 and len(tc.vocab) == 13_776
    fit = C.fit_zipf(tc.counts)
    assert fit.s == pytest.approx(1.01185, abs=1e-4)


def test_tinyshakespeare_zipf_exponent(text_data):
    """Same convention (case and punctuation kept: "king," and "King" are distinct types), V = 25,670 types,
    N = 202,651 tokens. Measured ŝ = 0.94963 (data README: ≈ 0.95); pinned to ±1e-4."""
    tc = C.read_text(text_data / "tinyshakespeare.txt")
    assert len(tc.tokens) == 202_651 and len(tc.vocab) == 25_670
    fit = C.fit_zipf(tc.counts)
    assert fit.s == pytest.approx(0.94963, abs=1e-4)


def test_read_text_ids_are_ranks_and_counts_add_up(text_data):
    tc = C.read_text(text_data / "wikitext2-valid.txt")
    np.testing.assert_array_equal(np.bincount(tc.tokens, minlength=len(tc.vocab)), tc.counts)
    assert np.all(np.diff(tc.counts) <= 0)
    words = (text_data / "wikitext2-valid.txt").read_text(encoding="utf-8").split()
    assert [tc.vocab[i] for i in tc.tokens[:50]] == words[:50]
    assert tc.unk_id is None and tc.n_distinct == len(tc.vocab)


def test_read_text_max_vocab_maps_the_rest_to_unk_and_merges_the_literal_unk(text_data):
    path = text_data / "wikitext2-valid.txt"
    full = C.read_text(path)
    tc = C.read_text(path, max_vocab=1000)
    assert len(tc.vocab) == 1000 and tc.tokens.dtype == np.int32
    assert tc.counts.sum() == len(tc.tokens) == full.counts.sum()
    np.testing.assert_array_equal(np.bincount(tc.tokens, minlength=1000), tc.counts)
    assert np.all(np.diff(tc.counts) <= 0)
    assert tc.vocab[tc.unk_id] == "<unk>" and tc.vocab.count("<unk>") == 1
    kept = [w for w in full.vocab if w != "<unk>"][:999]
    assert set(tc.vocab) == set(kept) | {"<unk>"}
    freq = dict(zip(full.vocab, full.counts, strict=True))
    assert tc.counts[tc.unk_id] == sum(c for w, c in freq.items() if w not in set(kept))
    assert tc.counts[tc.unk_id] > freq["<unk>"]
    assert len(C.read_text(path, max_vocab=full.n_distinct).vocab) == full.n_distinct


def test_read_text_byte_tokenizer_round_trips(text_data):
    path = text_data / "tinyshakespeare.txt"
    tc = C.read_text(path, "byte")
    raw = path.read_bytes()
    assert len(tc.tokens) == len(raw) == 1_115_394
    assert b"".join(tc.vocab[i] for i in tc.tokens[:2000]) == raw[:2000]
    lut = np.array([tc.vocab[i][0] for i in range(len(tc.vocab))], dtype=np.uint8)
    assert lut[tc.tokens].tobytes() == raw
    assert np.all(np.diff(tc.counts) <= 0)
    capped = C.read_text(path, "byte", max_vocab=10)
    assert len(capped.vocab) == 10 and capped.vocab[capped.unk_id] == b"<unk>"
    assert capped.counts.sum() == len(raw)


def test_read_text_concatenates_several_files(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("the cat the\n", encoding="utf-8")
    b.write_text("dog  the cat\n\n", encoding="utf-8")
    tc = C.read_text([a, str(b)])
    assert tc.vocab == ("the", "cat", "dog")
    np.testing.assert_array_equal(tc.tokens, [0, 1, 0, 2, 0, 1])
    np.testing.assert_array_equal(tc.counts, [3, 2, 1])
    assert tc.paths == (str(a), str(b))


# ----------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [C.zipf_pmf, C.zipf_cdf, C.zipf_entropy, C.zipf_normalizer])
def test_laws_reject_bad_parameters(fn):
    with pytest.raises(ValueError, match=r"s: expected a number in \(0, inf\), got 0"):
        fn(100, 0.0)
    with pytest.raises(ValueError, match=r"s: .* got -1"):
        fn(100, -1.0)
    with pytest.raises(ValueError, match=r"V: expected an integer in \[2, inf\], got 1"):
        fn(1, 1.0)
    with pytest.raises(ValueError, match=r"q: expected a number in \(-1, inf\), got -1"):
        fn(100, 1.0, -1.0)
    with pytest.raises(TypeError, match="V: expected an integer"):
        fn(100.0, 1.0)


def test_zipf_pmf_rejects_a_non_float_dtype():
    with pytest.raises(ValueError, match="dtype: expected float32 or float64"):
        C.zipf_pmf(10, 1.0, dtype=jnp.int32)


def test_samplers_reject_bad_input():
    with pytest.raises(ValueError, match=r"n_tokens: expected an integer in \[1, "):
        C.sample_zipf(KEY, 0, 100, 1.0)
    with pytest.raises(TypeError, match="key: expected a single JAX PRNG key"):
        C.sample_zipf(0, 10, 100, 1.0)
    with pytest.raises(ValueError, match="s: expected a number"):
        C.sample_zipf(KEY, 10, 100, -0.5)
    with pytest.raises(ValueError, match="chunk_size: expected an integer"):
        C.sample_zipf(KEY, 10, 100, 1.0, chunk_size=0)
    with pytest.raises(ValueError, match="pmf: expected non-negative probabilities, got 1 negative"):
        C.sample_categorical(KEY, 10, np.array([0.5, -0.1, 0.6]))
    with pytest.raises(ValueError, match="pmf: expected a positive total"):
        C.sample_categorical(KEY, 10, np.zeros(4))
    with pytest.raises(TypeError, match="table: expected an AliasTable"):
        C.sample_alias(KEY, 10, np.ones(4))


def test_latent_corpus_rejects_bad_input():
    with pytest.raises(ValueError, match=r"persistence: expected a number in \[0, 1\), got 1"):
        C.latent_semantic_corpus(KEY, 1000, 100, 1.0, persistence=1.0)
    with pytest.raises(ValueError, match=r"beta: expected a number in \[0, inf\), got -1"):
        C.latent_semantic_corpus(KEY, 1000, 100, 1.0, beta=-1.0)
    with pytest.raises(ValueError, match=r"dim: expected an integer in \[1, inf\], got 0"):
        C.latent_semantic_corpus(KEY, 1000, 100, 1.0, dim=0)


def test_counts_and_cooccurrence_reject_bad_tokens():
    with pytest.raises(ValueError, match=r"tokens: expected token ids in \[0, 9\] \(V=10\), got .*\[0, 10\]"):
        C.token_counts(np.array([0, 10]), 10)
    with pytest.raises(TypeError, match="tokens: expected an integer array"):
        C.token_counts(np.array([0.0, 1.0]), 10)
    with pytest.raises(ValueError, match=r"window: expected an integer in \[1, inf\], got 0"):
        C.cooccurrence(np.array([0, 1]), 2, window=0)
    with pytest.raises(ValueError, match="weighting: expected one of 'uniform', 'harmonic'"):
        C.cooccurrence(np.array([0, 1]), 2, weighting="glove")


def test_fit_zipf_rejects_bad_input():
    with pytest.raises(ValueError, match="counts: expected non-negative counts, got 1 negative"):
        C.fit_zipf(np.array([5.0, -1.0, 2.0]))
    with pytest.raises(ValueError, match="counts: expected a 1-D array"):
        C.fit_zipf(np.ones((3, 3)))
    with pytest.raises(ValueError, match="counts: expected at least 2 counts"):
        C.fit_zipf(np.array([3]))
    with pytest.raises(ValueError, match=r"k_max: expected an integer in \[6, 10\], got 11"):
        C.fit_zipf(np.arange(10, 0, -1), k_min=5, k_max=11)
    with pytest.raises(ValueError, match=r"k_max: expected an integer in \[6, 10\], got 5"):
        C.fit_zipf(np.arange(10, 0, -1), k_min=5, k_max=5)
    with pytest.raises(ValueError, match=r"k_min: expected an integer in \[1, 9\], got 0"):
        C.fit_zipf(np.arange(10, 0, -1), k_min=0)
    with pytest.raises(ValueError, match="counts: all 5 tokens in the rank window .* on rank 1; the MLE"):
        C.fit_zipf(np.array([5, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"counts: expected a positive total in the rank window \[3, 4\]"):
        C.fit_zipf(np.array([5, 1, 0, 0]), k_min=3)


def test_read_text_rejects_bad_input(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\t \n", encoding="utf-8")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait".encode("latin-1"))
    text = tmp_path / "text.txt"
    text.write_text("a b c a b a\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"paths: '.*empty\.txt' is empty or whitespace-only"):
        C.read_text(empty)
    with pytest.raises(ValueError, match=r"paths: '.*blank\.txt' is empty or whitespace-only"):
        C.read_text(blank)
    with pytest.raises(ValueError, match=r"paths: '.*blank\.txt' is empty or whitespace-only"):
        C.read_text([text, blank], "byte")
    with pytest.raises(ValueError, match=r"paths: '.*latin\.txt' is not valid UTF-8"):
        C.read_text(latin)
    with pytest.raises(FileNotFoundError, match=r"paths: no such file: '.*missing\.txt'"):
        C.read_text(tmp_path / "missing.txt")
    with pytest.raises(FileNotFoundError, match=r"paths: no such file: '.*missing\.txt'"):
        C.read_text([text, tmp_path / "missing.txt"])
    with pytest.raises(IsADirectoryError, match="paths: expected a text file, got a directory"):
        C.read_text(tmp_path)
    with pytest.raises(ValueError, match="paths: expected at least one file"):
        C.read_text([])
    with pytest.raises(TypeError, match="paths: expected a str or os.PathLike path"):
        C.read_text([text, 3])
    with pytest.raises(ValueError, match="tokenizer: expected one of 'word', 'byte', got 'bpe'"):
        C.read_text(text, tokenizer="bpe")
    with pytest.raises(ValueError, match=r"max_vocab: expected an integer in \[2, inf\], got 1"):
        C.read_text(text, max_vocab=1)
    with pytest.raises(ValueError, match="max_vocab: .*distinct word types in the text, 3, got 4"):
        C.read_text(text, max_vocab=4)
    with pytest.raises(ValueError, match="max_vocab: .*distinct byte types in the text, 5, got 6"):
        C.read_text(text, "byte", max_vocab=6)
    with pytest.raises(ValueError, match="unk: expected a non-empty string without whitespace"):
        C.read_text(text, max_vocab=2, unk="un k")
    capped = C.read_text(text, max_vocab=2)
    assert capped.vocab == ("a", "<unk>") and list(capped.counts) == [3, 3]


def test_read_text_ignores_a_byte_order_mark(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes("\ufeffhello world hello".encode("utf-8"))
    text = C.read_text(p, "word")
    assert text.vocab[0] == "hello" and "\ufeffhello" not in text.vocab
