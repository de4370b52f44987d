"""zipfrmt.spectra: singular values against LAPACK, the measures, the CSN fit, edge cases and bad input."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import powerlaw
import pytest
from conftest import lapack_sv, power_law_np
from hypothesis import given, settings
from hypothesis import strategies as st

from zipfrmt import spectra as S

U32 = 2.0**-24


def rel_err(s: np.ndarray, ref: np.ndarray, floor: float = 1e-3) -> float:
    """Largest relative error over the singular values ≥ floor·σ_1 (the range the accuracy rule covers)."""
    s = np.asarray(s, np.float64)
    keep = ref >= floor * ref[0]
    return float(np.max(np.abs(s[keep] - ref[keep]) / ref[keep]))


# --- singular values ---------------------------------------------------------------------------------------

SPECTRA = {
    "gaussian": lambda: np.random.default_rng(1).standard_normal((1500, 200)).astype(np.float32),
    "powerlaw-0.5": lambda: power_law_np(1500, 200, 0.5),
    "powerlaw-1.0": lambda: power_law_np(1500, 200, 1.0),
    "powerlaw-1.5": lambda: power_law_np(1500, 200, 1.5),
}


@pytest.mark.parametrize("name", SPECTRA)
def test_auto_meets_documented_accuracy_against_lapack(name):
    W = SPECTRA[name]()
    ref = lapack_sv(W)
    s = S.singular_values(W)
    assert s.shape == (200,) and s.dtype == jnp.float32
    assert rel_err(s, ref) <= S.AUTO_RTOL


@pytest.mark.parametrize("name", SPECTRA)
@pytest.mark.parametrize("method", ["svd", "gram64", "chunked"])
def test_exact_methods_agree_with_lapack(name, method):
    W = SPECTRA[name]()
    ref = lapack_sv(W)
    s = np.asarray(S.singular_values(W, method, block_rows=256))
    # svd: absolute error ~u·σ_1 in float32; gram64/chunked: float64 Gram, float32 output.
    assert np.max(np.abs(s - ref)) <= 20 * U32 * ref[0]
    assert rel_err(s, ref) <= 1e-4


@pytest.mark.parametrize("name", SPECTRA)
def test_gram_error_within_its_documented_bound(name):
    """Float32 Gram: |δσ_k|/σ_k ≤ u·σ_1²/(2σ_k²) (the bound the auto rule is built on)."""
    W = SPECTRA[name]()
    ref = lapack_sv(W)
    s = np.asarray(S.singular_values(W, "gram"), np.float64)
    keep = ref >= 1e-3 * ref[0]
    bound = U32 * ref[0] ** 2 / (2 * ref[keep] ** 2) + 1e-6
    assert np.all(np.abs(s[keep] - ref[keep]) / ref[keep] <= bound)


def test_auto_rule_falls_back_where_float32_gram_is_not_accurate_enough():
    W = power_law_np(1500, 200, 1.5)
    ref = lapack_sv(W)
    assert S.gram_is_accurate(ref) is False
    assert rel_err(S.singular_values(W, "gram"), ref) > S.AUTO_RTOL  # the fast path alone would miss the target
    assert rel_err(S.singular_values(W, "auto"), ref) <= S.AUTO_RTOL
    assert S.gram_is_accurate(lapack_sv(power_law_np(1500, 200, 0.5))) is True


def test_host_gram_in_blocks_is_more_accurate_than_one_float32_product():
    """A matrix in CPU memory: float32 products in blocks of 4096 rows summed in float64 (NumPy's BLAS) err less
    than XLA's single float32 ``WᵀW`` (the compiled kernel, taken under ``jax.jit``)."""
    W = power_law_np(40000, 96, 1.5)
    ref = lapack_sv(W)
    host = rel_err(S.singular_values(W, "gram"), ref)
    compiled = rel_err(jax.jit(lambda w: S.singular_values(w, "gram"))(W), ref)
    assert host < compiled / 2


@pytest.mark.parametrize("layout", ["rows", "a transposed view"])
def test_host_gram_in_float64_is_the_float64_product_whole_and_symmetric(layout):
    """The float64 Gram matrix summed over row blocks is the float64 product ``WᵀW`` of the whole matrix to rounding,
    across a last, shorter block, for a strided input too; symmetric, and scaled exactly by ``2^−2e``."""
    rng = np.random.default_rng(4)
    W = rng.standard_normal((5000, 70)).astype(np.float32) if layout == "rows" else \
        rng.standard_normal((70, 5000)).astype(np.float32).T
    W64 = W.astype(np.float64)
    ref = W64.T @ W64
    G = S.host_gram(W, 0, np.float64, 2048)  # blocks of 2048, 2048 and 904 rows
    np.testing.assert_array_equal(G, G.T)
    np.testing.assert_allclose(G, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_array_equal(S.host_gram(W * 2.0**40, 40, np.float64, 2048), G)


@pytest.mark.parametrize("V,a,first", [(800, 0.5, np.float32), (800, 1.5, np.float64), (799, 0.5, np.float64)])
def test_auto_on_the_host_takes_one_pass(monkeypatch, V, a, first):
    """A spectrum already too wide in ~4d sampled rows goes straight to the float64 Gram matrix; a narrow one
    takes one float32 pass (and only one: the rule accepts it); under 8d rows, one float64 pass."""
    W = power_law_np(V, 100, a)
    passes = []
    real = S._host_sigma
    monkeypatch.setattr(S, "_host_sigma", lambda W, e, dtype: passes.append(dtype) or real(W, e, dtype))
    s = S.singular_values(W)
    assert passes == [first]
    assert rel_err(s, lapack_sv(W)) <= S.AUTO_RTOL


@pytest.mark.parametrize("eigenvalues,narrow,eigvalsh_calls", [
    ([1.0, 0.5, 0.1], True, 0),  # every eigenvalue above τ: the first Cholesky succeeds
    ([1.0, 1e-5, 1e-6], False, 0),  # one in [λ_0, τ): the second Cholesky says so
    ([1.0, 0.5, 0.0], True, 1),  # rank-deficient, the rest narrow: the full spectrum decides
    ([1.0, 1e-5, 0.0], False, 1),  # rank-deficient and wide
])
def test_the_row_sample_reading_of_the_rule_decides_by_inertia(monkeypatch, eigenvalues, narrow, eigvalsh_calls):
    """``_looks_narrow`` on Gram matrices of known spectra (τ = λ_1·3.3e-5/9 ≈ 3.7e-6·λ_1, λ_0 = 1e-6·λ_1/9):
    two Cholesky factorisations tell narrow from wide; ``eigvalsh`` runs only where eigenvalues lie below λ_0."""
    rng = np.random.default_rng(5)
    Q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    G = (Q * np.array(eigenvalues)) @ Q.T
    calls = []
    real = np.linalg.eigvalsh
    monkeypatch.setattr(np.linalg, "eigvalsh", lambda a: calls.append(1) or real(a))
    assert S._looks_narrow(G) is narrow
    assert len(calls) == eigvalsh_calls


def test_jax_and_numpy_inputs_on_the_cpu_agree():
    W = power_law_np(3000, 80, 0.8)
    np.testing.assert_array_equal(np.asarray(S.singular_values(jnp.asarray(W))), np.asarray(S.singular_values(W)))


def test_wide_matrix_uses_the_smaller_gram():
    W = power_law_np(120, 700, 0.7)
    ref = lapack_sv(W)
    for method in ("auto", "svd", "gram", "gram64"):
        s = S.singular_values(W, method)
        assert s.shape == (120,)
        assert rel_err(s, ref) <= 1e-4


def test_chunked_streams_a_memmap_from_disk(tmp_path):
    W = power_law_np(3000, 150, 0.8)
    path = tmp_path / "w.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=W.shape)
    mm[:] = W
    mm.flush()
    ro = np.memmap(path, dtype=np.float32, mode="r", shape=W.shape)
    s = S.singular_values(ro, "chunked", block_rows=257)  # blocks that don't divide V, some shorter than d
    assert rel_err(s, lapack_sv(W)) <= 1e-5


def test_chunked_rejects_nan_in_a_later_block():
    W = power_law_np(600, 50, 0.5)
    W[550, 3] = np.nan
    with pytest.raises(ValueError, match=r"W\[512:768\].*NaN or Inf"):
        S.singular_values(W, "chunked", block_rows=256)


def test_float64_and_float16_inputs_are_accepted():
    W = power_law_np(800, 100, 0.5, dtype=np.float64)
    ref = lapack_sv(W)
    assert rel_err(S.singular_values(W), ref) <= 1e-4
    s16 = S.singular_values(W.astype(np.float16))
    assert rel_err(s16, lapack_sv(W.astype(np.float16))) <= 1e-4


@pytest.mark.parametrize("method", ["auto", "svd", "gram", "gram64"])
def test_batched_equals_unbatched(method):
    Ws = np.stack([power_law_np(400, 60, a, seed=i) for i, a in enumerate([0.3, 0.6, 1.0, 1.4, 0.5])])
    sb = np.asarray(S.singular_values_batched(Ws, method))
    assert sb.shape == (5, 60)
    for i, W in enumerate(Ws):  # against the compiled kernel (a NumPy input takes the host's BLAS path)
        m = "gram64" if method == "auto" else method
        one = np.asarray(jax.jit(lambda w, m=m: S.singular_values(w, m))(W))
        if method == "auto":  # the stack has a wide spectrum, so auto must have taken the float64 path
            np.testing.assert_allclose(sb[i], one, rtol=1e-6)
        else:
            np.testing.assert_allclose(sb[i], one, rtol=1e-5, atol=1e-7)


def test_batched_sharded_over_four_cpu_devices_equals_unbatched():
    script = textwrap.dedent(
        """
        import numpy as np, jax
        from zipfrmt import spectra as S
        assert jax.device_count() == 4, jax.devices()
        rng = np.random.default_rng(0)
        Ws = rng.standard_normal((6, 300, 40)).astype(np.float32)  # 6 matrices: padded to 8 over 4 devices
        sb = S.singular_values_batched(Ws, "gram")
        ref = np.stack([np.asarray(S.singular_values(w, "gram")) for w in Ws])
        np.testing.assert_allclose(np.asarray(sb), ref, rtol=1e-5)
        exact = np.stack([np.linalg.svd(w.astype(np.float64), compute_uv=False) for w in Ws])
        np.testing.assert_allclose(np.asarray(S.singular_values_batched(Ws, "svd")), exact, rtol=1e-4)
        print("OK", sb.shape)
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK (6, 40)" in out.stdout


# --- measures ----------------------------------------------------------------------------------------------


def test_measures_match_their_formulas():
    s = np.array([4.0, 2.0, 1.0, 0.5])
    assert float(S.stable_rank(s)) == pytest.approx((16 + 4 + 1 + 0.25) / 16, rel=1e-6)
    p = s / s.sum()
    assert float(S.effective_rank(s)) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-6)
    lam = s**2
    assert float(S.participation_ratio(s)) == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=1e-6)


def test_flat_spectrum_has_full_ranks():
    s = np.ones(50)
    for f in (S.stable_rank, S.effective_rank, S.participation_ratio):
        assert float(f(s)) == pytest.approx(50.0, rel=1e-5)


def test_rank_decay_exponent_recovers_power_law_and_reports_window():
    s = 3.0 * np.arange(1, 301, dtype=np.float64) ** -0.7
    fit = S.rank_decay_exponent(s, 5, 200)
    assert fit.a == pytest.approx(0.7, abs=1e-9)
    assert fit.log_c == pytest.approx(math.log(3.0), abs=1e-9)
    assert (fit.k_lo, fit.k_hi) == (5, 200)
    assert fit.r2 == pytest.approx(1.0)


def test_rank_decay_window_stops_at_zero_singular_values():
    s = np.concatenate([np.arange(1, 41, dtype=np.float64) ** -0.5, np.zeros(10)])
    fit = S.rank_decay_exponent(s)
    assert (fit.k_lo, fit.k_hi) == (1, 40)
    assert fit.a == pytest.approx(0.5, abs=1e-9)


def test_rank_exponent_and_esd_exponent_convert_both_ways():
    for a in (0.25, 0.5, 1.0, 2.0):
        alpha = S.alpha_from_rank_exponent(a)
        assert alpha == pytest.approx(1 + 1 / (2 * a))
        assert S.rank_exponent_from_alpha(alpha) == pytest.approx(a)


def test_esd_alpha_of_power_law_matrix_is_near_the_converted_rank_exponent():
    W = power_law_np(4000, 400, 0.5)
    summary = S.summarize(W)
    assert summary.rank_exponent == pytest.approx(0.5, abs=1e-3)
    # The CSN tail fit over a finite, deterministic spectrum; α = 1 + 1/(2a) = 2 asymptotically.
    assert summary.esd_alpha == pytest.approx(S.alpha_from_rank_exponent(0.5), abs=0.1)


# --- CSN power-law fit ---------------------------------------------------------------------------------------


def csn_reference(lam: np.ndarray) -> tuple[float, float, float, int]:
    """A direct float64 loop over the docs/conventions.md convention (WeightWatcher's x_min scan)."""
    lam = np.sort(lam[lam > 0])
    best = (math.inf, math.nan, math.nan, 0)
    for x_min in lam[:-1]:
        tail = lam[lam >= x_min]
        n = tail.size
        denom = np.sum(np.log(tail / x_min))
        if denom <= 0:
            continue
        alpha = 1 + n / denom
        D = np.max(np.abs(1 - (tail / x_min) ** (1 - alpha) - np.arange(n) / n))
        if D < best[0]:
            best = (D, alpha, x_min, n)
    D, alpha, x_min, n = best
    return alpha, x_min, D, n


def pareto_sigma(n: int, alpha: float, seed: int) -> np.ndarray:
    """Singular values whose squares are Pareto(α) with x_min = 1."""
    u = np.random.default_rng(seed).random(n)
    lam = (1 - u) ** (-1 / (alpha - 1))
    return np.sqrt(lam)


def real_spectrum(text_data) -> np.ndarray:
    """Singular values of log(1 + co-occurrence counts) of tiny Shakespeare (600 words × 300 contexts)."""
    words = (text_data / "tinyshakespeare.txt").read_text().lower().split()
    vocab, counts = np.unique(words, return_counts=True)
    order = np.argsort(-counts)
    rank = {w: i for i, w in enumerate(vocab[order])}
    ids = np.array([rank[w] for w in words])
    rows, cols = ids[:-1], ids[1:]
    keep = (rows < 600) & (cols < 300)
    M = np.zeros((600, 300))
    np.add.at(M, (rows[keep], cols[keep]), 1.0)
    return np.linalg.svd(np.log1p(M), compute_uv=False)


@pytest.mark.parametrize("alpha,seed", [(2.0, 0), (2.5, 1), (3.5, 2)])
def test_fixed_xmin_alpha_agrees_with_powerlaw_package(alpha, seed):
    s = pareto_sigma(2000, alpha, seed)
    lam = s**2
    x_min = float(np.quantile(lam, 0.3))
    ours = S.fit_esd_powerlaw(s, x_min=x_min)
    # powerlaw's default α range is [1, 3]; widen it so that its analytic MLE is not clipped.
    fit = powerlaw.Fit(lam, xmin=x_min, discrete=False, verbose=False, parameter_ranges={"alpha": [1, 20]})
    ref = fit.power_law.alpha
    assert ours.alpha == pytest.approx(ref, rel=1e-6)
    assert ours.n_tail == int((lam >= x_min).sum())


@pytest.mark.parametrize("alpha,seed", [(2.0, 3), (2.7, 4), (4.0, 5)])
def test_xmin_scan_equals_direct_float64_loop_on_pareto_samples(alpha, seed):
    s = pareto_sigma(1500, alpha, seed)
    ours = S.fit_esd_powerlaw(s)
    a_ref, x_ref, d_ref, n_ref = csn_reference(s**2)
    assert ours.alpha == pytest.approx(a_ref, rel=1e-9)
    assert ours.x_min == pytest.approx(x_ref, rel=1e-12)
    assert ours.ks == pytest.approx(d_ref, rel=1e-9)
    assert ours.n_tail == n_ref
    assert ours.sigma_alpha == pytest.approx((a_ref - 1) / math.sqrt(n_ref))
    assert ours.alpha == pytest.approx(alpha, abs=4 * ours.sigma_alpha + 0.05)


def test_xmin_scan_equals_direct_float64_loop_on_real_spectra(text_data):
    spectra = {
        "tinyshakespeare co-occurrence": real_spectrum(text_data),
        "power-law matrix": lapack_sv(power_law_np(2000, 300, 0.6)),
        "gaussian matrix": lapack_sv(np.random.default_rng(7).standard_normal((900, 300))),
    }
    for name, s in spectra.items():
        ours = S.fit_esd_powerlaw(s)
        a_ref, x_ref, d_ref, n_ref = csn_reference(s**2)
        assert (ours.alpha, ours.x_min, ours.n_tail) == pytest.approx((a_ref, x_ref, n_ref), rel=1e-9), name
        assert ours.ks == pytest.approx(d_ref, rel=1e-9), name


def test_xmin_scan_handles_tied_eigenvalues_like_the_loop():
    s = np.sqrt(np.array([1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 5.0, 5.0, 8.0, 13.0, 21.0, 40.0]))
    ours = S.fit_esd_powerlaw(s)
    a_ref, x_ref, d_ref, n_ref = csn_reference(s**2)
    assert (ours.alpha, ours.x_min, ours.ks, ours.n_tail) == pytest.approx((a_ref, x_ref, d_ref, n_ref))


@pytest.mark.parametrize("n", [7, 13, 64])
def test_every_candidates_ks_distance_equals_the_direct_loop_across_the_scan_ranges(n):
    """The scan evaluates its candidates in ``ESD_SEGMENTS`` ranges, each on the tail of its first candidate: every
    D_j (not only the winner's) is the direct float64 value, ties that straddle a range's edge included."""
    lam = np.sort(pareto_sigma(n, 2.5, n) ** 2)
    lam[n // 4 - 1: n // 4 + 2] = lam[n // 4 - 1]  # a tie run across the first range boundary
    with jax.enable_x64(True):
        alpha, ks, n_tail = jax.jit(S._esd_candidates)(jnp.asarray(lam))
    for j in range(n - 1):
        tail = lam[lam >= lam[j]]
        a = 1 + tail.size / np.sum(np.log(tail / lam[j]))
        d = np.max(np.abs(1 - (tail / lam[j]) ** (1 - a) - np.arange(tail.size) / tail.size))
        assert (float(alpha[j]), float(ks[j]), int(n_tail[j])) == pytest.approx((a, d, tail.size), rel=1e-12), j


def test_alpha_hat_is_alpha_times_log10_lambda_max():
    assert S.alpha_hat(2.5, 100.0) == pytest.approx(5.0)
    summary = S.summarize(power_law_np(500, 100, 0.5) * 10)
    assert summary.alpha_hat == pytest.approx(summary.esd_alpha * math.log10(summary.sigma_max**2), rel=1e-6)


# --- edge cases ----------------------------------------------------------------------------------------------


def test_all_zero_matrix_is_an_outcome_not_a_crash():
    summary = S.summarize(np.zeros((64, 16), np.float32))
    assert summary.stable_rank == 0 and summary.effective_rank == 0 and summary.participation_ratio == 0
    assert math.isnan(summary.rank_exponent) and math.isnan(summary.esd_alpha)
    assert summary.reasons["rank_exponent"] == "all singular values are zero"
    assert summary.reasons["esd_alpha"] == "all singular values are zero"
    assert summary.sigma_max == 0
    assert math.isnan(summary.as_dict()["esd_xmin"])


def test_single_nonzero_singular_value():
    W = np.outer(np.arange(1, 41, dtype=np.float32), np.ones(10, np.float32))
    summary = S.summarize(W)
    assert summary.stable_rank == pytest.approx(1.0, rel=1e-5)
    assert summary.effective_rank == pytest.approx(1.0, rel=1e-2)  # the rounding floor of the zero σ's
    assert summary.participation_ratio == pytest.approx(1.0, rel=1e-5)
    assert np.all(summary.singular_values[1:] <= 1e-3 * summary.sigma_max)


def test_rank_deficient_matrix():
    rng = np.random.default_rng(3)
    W = (rng.standard_normal((200, 3)) @ rng.standard_normal((3, 30))).astype(np.float32)
    ref = lapack_sv(W)
    s = np.asarray(S.singular_values(W))
    np.testing.assert_allclose(s[:3], ref[:3], rtol=1e-4)
    assert np.all(s[3:] <= 1e-3 * s[0])
    assert float(S.stable_rank(s)) == pytest.approx(float(S.stable_rank(ref)), rel=1e-5)


def test_fit_with_too_few_eigenvalues_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 3 positive eigenvalues, got 2"):
        S.fit_esd_powerlaw(np.array([3.0, 1.0, 0.0, 0.0]))
    summary = S.summarize(np.diag([3.0, 1.0]).astype(np.float32))
    assert math.isnan(summary.esd_alpha) and "needs 3" in summary.reasons["esd_alpha"]


def test_fixed_xmin_above_the_tail_is_a_clear_error():
    with pytest.raises(ValueError, match="x_min: expected a cut-off with at least 2"):
        S.fit_esd_powerlaw(np.arange(10.0, 0, -1), x_min=99.5)


# --- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "W,exc,pattern",
    [
        (np.ones(5, np.float32), ValueError, r"W: expected a 2-D array, got shape \(5,\)"),
        (np.ones((2, 3, 4), np.float32), ValueError, r"W: expected a 2-D array, got shape \(2, 3, 4\)"),
        (np.zeros((0, 4), np.float32), ValueError, r"W: expected a non-empty array"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), ValueError, r"W: expected finite entries, got 1 NaN or Inf"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), ValueError, r"W: expected finite entries"),
        (np.array([[1.0, -np.inf], [0.0, 1.0]]), ValueError, r"W: expected finite entries, got 1 NaN or Inf"),
        (jnp.array([[1.0, -np.inf], [np.nan, 1.0]]), ValueError, r"W: expected finite entries, got 2 NaN or Inf"),
        (np.ones((3, 3), np.int32), TypeError, r"W: expected a real floating-point array.*int32"),
        (np.ones((3, 3), np.complex64), TypeError, r"W: expected a real floating-point array.*complex"),
    ],
)
def test_singular_values_rejects_bad_matrices(W, exc, pattern):
    with pytest.raises(exc, match=pattern):
        S.singular_values(W)


@pytest.mark.parametrize("where", ["first rows", "middle", "last row"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_large_matrix_is_scanned_in_row_ranges_that_miss_nothing(where, bad):
    """From ``rowthreads.MIN_ENTRIES`` entries the max/min check reads row ranges in threads: a NaN or ±inf in any
    range is still named, and the largest |w| is found wherever it lies."""
    from zipfrmt import checks, rowthreads

    V = rowthreads.MIN_ENTRIES // 64 + 3  # above the threshold, rows not divisible by the ranges
    W = np.random.default_rng(6).standard_normal((V, 64)).astype(np.float32)
    row = {"first rows": 1, "middle": V // 2, "last row": V - 1}[where]
    W[row, 5] = -1e6
    assert checks.check_matrix_max_abs(W)[1] == 1e6
    assert checks.host_max_min(W.T) == (float(W.max()), float(W.min()))  # a strided view, ranges of columns
    W[row, 7] = bad
    with pytest.raises(ValueError, match="W: expected finite entries, got 1 NaN or Inf"):
        S.singular_values(W)


def test_a_jax_array_is_read_for_its_max_once_while_it_lives(monkeypatch):
    """JAX arrays are immutable: an analysis that quantizes one W at many specs reads it for max|W| once. A NumPy
    array (mutable) is read at every call, and an array that died takes its entry with it."""
    import gc

    from zipfrmt import checks

    reads = []
    real = checks.host_max_min
    monkeypatch.setattr(checks, "host_max_min", lambda h: reads.append(h.shape) or real(h))
    W = jnp.asarray(power_law_np(300, 40, 0.5))
    assert [checks.check_matrix_max_abs(W)[1] for _ in range(3)] == [float(jnp.max(jnp.abs(W)))] * 3
    assert len(reads) == 1
    Wn = np.array(W)
    checks.check_matrix_max_abs(Wn)
    Wn[0, 0] = 1e6  # mutated in place: read again, so the new max is seen
    assert checks.check_matrix_max_abs(Wn)[1] == 1e6 and len(reads) == 3
    key = id(W)
    del W
    gc.collect()
    assert key not in checks._CHECKED_MAX_ABS


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match=r"method: expected one of 'auto', 'svd'.*got 'qr'"):
        S.singular_values(np.ones((3, 3), np.float32), method="qr")


def test_bad_spectra_for_measures():
    with pytest.raises(ValueError, match="s: expected non-negative"):
        S.stable_rank(np.array([1.0, -0.5]))
    with pytest.raises(ValueError, match="s: expected a 1-D array"):
        S.effective_rank(np.ones((2, 2)))
    with pytest.raises(ValueError, match="s: expected singular values in descending order"):
        S.rank_decay_exponent(np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"k_hi: expected an integer in \[3, 4\], got 9"):
        S.rank_decay_exponent(np.array([4.0, 3.0, 2.0, 1.0]), 3, 9)
    with pytest.raises(ValueError, match="Ws: expected a 3-D array"):
        S.singular_values_batched(np.ones((3, 3), np.float32))


# --- properties ------------------------------------------------------------------------------------------------

matrices = hnp.arrays(
    np.float32,
    st.tuples(st.integers(2, 12), st.integers(2, 8)),
    elements=st.floats(-10, 10, width=32, allow_nan=False),
).filter(lambda W: np.abs(W).max() > 1e-2)


@settings(max_examples=40, deadline=None)
@given(W=matrices, c=st.floats(0.01, 100.0), seed=st.integers(0, 2**16))
def test_stable_rank_is_invariant_to_scaling_and_permutations(W, c, seed):
    rng = np.random.default_rng(seed)
    base = float(S.stable_rank(S.singular_values(W, "svd")))
    scaled = float(S.stable_rank(S.singular_values(W * np.float32(c), "svd")))
    permuted = W[rng.permutation(W.shape[0])][:, rng.permutation(W.shape[1])]
    perm = float(S.stable_rank(S.singular_values(permuted, "svd")))
    assert scaled == pytest.approx(base, rel=1e-4)
    assert perm == pytest.approx(base, rel=1e-4)
    assert 1.0 - 1e-5 <= base <= min(W.shape) + 1e-4


# --- magnitudes at the edges of float32 ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gauss_128x64():
    return np.random.default_rng(0).standard_normal((128, 64)).astype(np.float32)


@pytest.mark.parametrize("method", ["auto", "svd", "gram", "gram64", "chunked"])
@pytest.mark.parametrize("c", [1e19, 1e-20, 1e-37])
def test_singular_values_scale_with_the_matrix_at_extreme_magnitudes(gauss_128x64, method, c):
    """Regression: at 1e19 the float32 Gram matrix overflowed ("auto" crashed with IndexError, "gram" gave NaN),
    at 1e-20 it underflowed (every σ read 0); at 1e-37 a tenth of the entries are subnormal."""
    W = gauss_128x64 * np.float32(c)
    s = np.asarray(S.singular_values(W, method), np.float64)
    ref = lapack_sv(W)
    assert np.all(s > 0)
    np.testing.assert_allclose(s, ref, rtol=1e-5)


@pytest.mark.parametrize("c", [1e19, 1e-20])
def test_summarize_is_scale_free_at_extreme_magnitudes(gauss_128x64, c):
    base, scaled = S.summarize(gauss_128x64), S.summarize(gauss_128x64 * np.float32(c))
    assert scaled.reasons == {}
    assert scaled.sigma_max == pytest.approx(base.sigma_max * c, rel=1e-5)
    for name in ("stable_rank", "effective_rank", "participation_ratio", "rank_exponent", "esd_alpha"):
        assert getattr(scaled, name) == pytest.approx(getattr(base, name), rel=1e-4), name


@pytest.mark.parametrize("method", ["auto", "svd", "gram", "gram64"])
def test_singular_values_trace_under_jit_with_every_method(gauss_128x64, method):
    """Regression: "auto" decided on the host and raised TracerArrayConversionError under jax.jit."""
    import jax

    jitted = np.asarray(jax.jit(lambda w: S.singular_values(w, method))(jnp.asarray(gauss_128x64)))
    np.testing.assert_allclose(jitted, np.asarray(S.singular_values(gauss_128x64, method)), rtol=1e-6)


def test_magnitudes_float32_cannot_hold_are_named_errors():
    with pytest.raises(ValueError, match=r"W: expected entries within float32's range .* got max\|W\| = 1e\+39"):
        S.singular_values(np.array([[1e39, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"W: expected max\|W\| = 0 or at least float32's smallest normal"):
        S.singular_values(np.array([[1e-40, 0.0], [0.0, 0.0]], np.float32))
    with pytest.raises(ValueError, match=r"W: expected max\|W\| = 0 or at least"):
        S.singular_values(np.array([[1e-40, 0.0], [0.0, 0.0]], np.float32), "chunked")
    with pytest.raises(ValueError, match=r"W: expected a matrix whose largest singular value float32 can hold"):
        S.singular_values(np.full((4, 4), 3e38, np.float32))
    with pytest.raises(ValueError, match=r"Ws: expected entries within float32's range"):
        S.singular_values_batched(np.full((2, 3, 3), 1e39))


def test_rank_measures_hold_for_spectra_beyond_float32s_range():
    """σ² of σ ~ 1e20 overflows float32 and of σ ~ 1e-20 underflows; the measures are scale-free."""
    s = np.array([3.0, 2.0, 1.0, 0.5])
    for c in (1e-300, 1e-20, 1e20, 1e300):
        assert float(S.stable_rank(s * c)) == pytest.approx(float(S.stable_rank(s)), rel=1e-6)
        assert float(S.effective_rank(s * c)) == pytest.approx(float(S.effective_rank(s)), rel=1e-6)
        assert float(S.participation_ratio(s * c)) == pytest.approx(float(S.participation_ratio(s)), rel=1e-6)
