"""Tests of zipfrmt.rmt: closed forms against quadrature, and every prediction against simulated matrices.

Simulations are NumPy float64, independent of the package: Gaussian noise of variance s², signals with
Haar singular vectors (QR of Gaussians with the sign fix). Tolerances are set from the finite-size
fluctuations they have to absorb, stated beside each one.
"""

from __future__ import annotations

import logging
import math
import warnings

import jax
import numpy as np
import pytest

from zipfrmt import rmt
from zipfrmt.spectra import effective_rank


def haar(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """n×k matrix with Haar-distributed orthonormal columns."""
    q, r = np.linalg.qr(rng.standard_normal((n, k)))
    return q * np.sign(np.diag(r))


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal(n)
    return v / np.linalg.norm(v)


def power_law_signal(r: int, a: float, energy: float) -> np.ndarray:
    """σ_k ∝ k^(-a), k = 1..r, scaled so that Σσ_k² = energy."""
    sigma = np.arange(1, r + 1, dtype=np.float64) ** -a
    return sigma * math.sqrt(energy / np.sum(sigma**2))


def signal_plus_noise(sigma: np.ndarray, V: int, d: int, s: float, seed: int, *, rotate: bool = True) -> np.ndarray:
    """``U diag(σ) Qᵀ + s·G`` with Haar U, Q and Gaussian G.

    ``rotate=False`` puts σ on the diagonal instead: the same law of the singular values, since
    ``U_fullᵀ G Q_full`` is again i.i.d. Gaussian (rotation invariance), at a fraction of the cost.
    """
    rng = np.random.default_rng(seed)
    r = sigma.size
    if rotate:
        signal = (haar(rng, V, r) * sigma) @ haar(rng, d, r).T
    else:
        signal = np.zeros((V, d))
        signal[np.arange(r), np.arange(r)] = sigma
    return signal + s * rng.standard_normal((V, d))


def singular_values(W: np.ndarray) -> np.ndarray:
    """Descending singular values through the smaller Gram matrix (well conditioned here: no tiny σ)."""
    G = W.T @ W if W.shape[0] >= W.shape[1] else W @ W.T
    return np.sqrt(np.clip(np.linalg.eigvalsh(G), 0, None))[::-1]


# ---------------------------------------------------------------------------------------------------------
# Marchenko–Pastur
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("V, d", [(4000, 1000), (1000, 500), (1000, 1000), (500, 2000)])
def test_mp_density_integrates_to_one_or_to_v_over_d_beside_the_atom(V, d):
    e = rmt.mp_edges(V, d, 2.0)
    # x = x₋ + (x₊ − x₋)(1 − cos φ)/2 removes the square-root (and, at γ = 1, 1/√x) endpoint behaviour
    phi = np.linspace(0, np.pi, 200_001)
    x = e.x_lo + (e.x_hi - e.x_lo) * (1 - np.cos(phi)) / 2
    rho = np.asarray(rmt.mp_density(x, V, d, 2.0), np.float64) * (e.x_hi - e.x_lo) * np.sin(phi) / 2
    mass = np.trapezoid(rho, phi)
    assert mass == pytest.approx(min(1.0, V / d), abs=2e-4)
    assert e.atom == pytest.approx(max(0.0, 1 - V / d))
    assert float(rmt.mp_cdf(e.x_hi * 1.01, V, d, 2.0)) == pytest.approx(1.0, abs=1e-6)
    assert float(rmt.mp_cdf(-1.0, V, d, 2.0)) == 0.0
    assert float(rmt.mp_cdf(0.0, V, d, 2.0)) == pytest.approx(e.atom, abs=1e-6)


@pytest.mark.parametrize("V, d", [(3000, 1000), (1000, 3000)])
def test_mp_cdf_is_the_integral_of_the_density_and_quantiles_invert_it(V, d):
    e = rmt.mp_edges(V, d, 0.5)
    x = np.linspace(e.x_lo, e.x_hi, 100_001)
    rho = np.asarray(rmt.mp_density(x, V, d, 0.5), np.float64)
    cum = e.atom + np.concatenate([[0.0], np.cumsum(0.5 * (rho[1:] + rho[:-1]) * np.diff(x))])
    F = np.asarray(rmt.mp_cdf(x, V, d, 0.5), np.float64)
    assert np.max(np.abs(F - cum)) < 1e-5
    p = np.linspace(e.atom + 1e-3, 1.0, 101)
    q = rmt.mp_quantiles(p, V, d, 0.5)
    np.testing.assert_allclose(np.asarray(rmt.mp_cdf(q, V, d, 0.5)), p, atol=1e-6)
    if e.atom > 0:
        assert np.all(np.asarray(rmt.mp_quantiles(np.array([0.0, e.atom / 2]), V, d, 0.5)) == 0)


@pytest.mark.parametrize("V, d", [(2000, 500), (500, 2000)])
def test_mp_law_matches_simulated_gaussian_eigenvalues_and_extreme_singular_values(V, d):
    s2 = 0.3
    E = math.sqrt(s2) * np.random.default_rng(1).standard_normal((V, d))
    sv = singular_values(E)  # the min(V, d) nonzero ones
    x = np.sort(sv**2 / V)
    e = rmt.mp_edges(V, d, s2)
    # Kolmogorov–Smirnov distance between the empirical CDF of the nonzero eigenvalues of EᵀE/V and MP
    # conditioned on x > 0; eigenvalue rigidity keeps it O(log n / n) — 0.02 is a generous bound at n = 500.
    F = (np.asarray(rmt.mp_cdf(x, V, d, s2), np.float64) - e.atom) / (1 - e.atom)
    n = x.size
    ks = max(np.max(np.arange(1, n + 1) / n - F), np.max(F - np.arange(n) / n))
    assert ks < 0.02
    # extremes: Tracy–Widom fluctuations, O(n^(-2/3)) relative, larger at the lower edge (σ₋ is 3× smaller
    # than σ₊ here); over seeds 1–6 the largest deviations measured were 1.1 % (top) and 2.3 % (bottom)
    assert sv[0] == pytest.approx(e.sigma_hi, rel=0.02)
    assert sv[-1] == pytest.approx(e.sigma_lo, rel=0.05)
    typical = np.asarray(rmt.mp_typical_singular_values(V, d, s2), np.float64)
    assert typical.shape == (min(V, d),)
    assert np.all(np.diff(typical) <= 0)
    np.testing.assert_allclose(typical, sv, rtol=0.03)


# ---------------------------------------------------------------------------------------------------------
# Spiked model
# ---------------------------------------------------------------------------------------------------------


def test_spiked_map_is_continuous_at_the_threshold_and_symmetric_in_v_and_d():
    V, d, s2 = 3000, 700, 0.7
    thr = rmt.detection_threshold(V, d, s2)
    edge = rmt.mp_edges(V, d, s2).sigma_hi
    assert thr == pytest.approx(math.sqrt(s2) * (V * d) ** 0.25)
    below = np.asarray(rmt.spiked_singular_value(np.array([0.0, 0.5 * thr, thr]), V, d, s2))
    np.testing.assert_allclose(below, edge, rtol=1e-6)
    just_above = float(rmt.spiked_singular_value(thr * (1 + 1e-6), V, d, s2))
    assert just_above == pytest.approx(edge, rel=1e-5)
    th = np.array([1.2, 2.0, 5.0]) * thr
    np.testing.assert_allclose(
        np.asarray(rmt.spiked_singular_value(th, V, d, s2)),
        np.asarray(rmt.spiked_singular_value(th, d, V, s2)),
        rtol=1e-6,
    )
    # no noise: the signal is observed as it is
    np.testing.assert_allclose(np.asarray(rmt.spiked_singular_value(th, V, d, 0.0)), th, rtol=1e-6)


def test_top_singular_value_within_one_percent_at_8000x1000_for_a_spike_at_twice_the_threshold():
    # The outlier fluctuates by about s (≈ u'Ev ~ N(0, s²)), i.e. ≈ 0.7 % of σ̃ = 145 per realisation: the mean
    # of 4 seeds (standard error ≈ 0.35 %) must be within 1 %, each seed within 2.5 % (≈ 3.5 standard deviations).
    V, d, s = 8000, 1000, 1.0
    theta = 2.0 * rmt.detection_threshold(V, d, s**2)
    predicted = float(rmt.spiked_singular_value(theta, V, d, s**2))
    tops = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        W = theta * np.outer(unit(rng, V), unit(rng, d)) + s * rng.standard_normal((V, d))
        tops.append(math.sqrt(np.linalg.eigvalsh(W.T @ W)[-1]))
    errors = np.array(tops) / predicted - 1
    assert abs(errors.mean()) < 0.01, errors
    assert np.all(np.abs(errors) < 0.025), errors


def test_spike_below_the_threshold_sticks_to_the_bulk_edge():
    V, d, s = 4000, 1000, 1.0
    theta = 0.5 * rmt.detection_threshold(V, d, s**2)
    rng = np.random.default_rng(3)
    W = theta * np.outer(unit(rng, V), unit(rng, d)) + s * rng.standard_normal((V, d))
    top = math.sqrt(np.linalg.eigvalsh(W.T @ W)[-1])
    assert top == pytest.approx(float(rmt.spiked_singular_value(theta, V, d, s**2)), rel=0.01)
    assert float(rmt.spiked_singular_value(theta, V, d, s**2)) == pytest.approx(rmt.mp_edges(V, d, 1).sigma_hi)


@pytest.mark.parametrize("V, d", [(2000, 500), (500, 2000)])
@pytest.mark.parametrize("mult, tol", [(1.5, 0.04), (3.0, 0.015)])
def test_singular_vector_overlaps_match_simulation_on_the_row_and_column_sides(V, d, mult, tol):
    # Overlaps fluctuate by O(n^(-1/2)) per realisation, most near the threshold: over 40 seeds the standard
    # deviation was ≈ 0.027 at 1.5 θ_c and ≈ 0.006 at 3 θ_c (min(V, d) = 500), the bias < 0.007. The tolerances
    # are ≈ 3 and 5 standard errors of the 4-seed mean. At 3 θ_c the row and column predictions differ by
    # > 0.12, so a swapped side fails.
    s2 = 1.0
    theta = mult * rmt.detection_threshold(V, d, s2)
    rows, cols = [], []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        u, v = unit(rng, V), unit(rng, d)
        W = theta * np.outer(u, v) + rng.standard_normal((V, d))
        if d <= V:
            v_hat = np.linalg.eigh(W.T @ W)[1][:, -1]
            u_hat = W @ v_hat / np.linalg.norm(W @ v_hat)
        else:
            u_hat = np.linalg.eigh(W @ W.T)[1][:, -1]
            v_hat = W.T @ u_hat / np.linalg.norm(W.T @ u_hat)
        rows.append((u @ u_hat) ** 2)
        cols.append((v @ v_hat) ** 2)
    pred = rmt.spiked_overlaps(theta, V, d, s2)
    assert np.mean(rows) == pytest.approx(float(pred.row), abs=tol)
    assert np.mean(cols) == pytest.approx(float(pred.column), abs=tol)
    # the closed forms in BGN's normalised units, θ̄ = θ/(s√V), c = d/V
    tb2, c = theta**2 / (s2 * V), d / V
    assert float(pred.column) == pytest.approx(1 - c * (1 + tb2) / (tb2 * (tb2 + c)), rel=1e-5)
    assert float(pred.row) == pytest.approx(1 - (c + tb2) / (tb2 * (tb2 + 1)), rel=1e-5)


def test_overlaps_vanish_below_the_threshold():
    pred = rmt.spiked_overlaps(np.array([0.0, 10.0, 44.0]), 4000, 1000, 1.0)  # θ_c = 44.72
    assert np.all(np.asarray(pred.row) == 0) and np.all(np.asarray(pred.column) == 0)


def test_predict_top_singular_values_maps_each_value_and_sticks_the_rest_to_the_edge():
    V, d, s2 = 4000, 1000, 1.0
    sigma = np.array([200.0, 100.0, 50.0, 40.0, 10.0])
    out = np.asarray(rmt.predict_top_singular_values(sigma, V, d, s2), np.float64)
    edge = rmt.mp_edges(V, d, s2).sigma_hi
    np.testing.assert_allclose(out[:3], np.sqrt((sigma[:3] ** 2 + V) * (sigma[:3] ** 2 + d)) / sigma[:3])
    np.testing.assert_allclose(out[3:], edge)
    assert np.all(np.diff(out) <= 1e-9)


# ---------------------------------------------------------------------------------------------------------
# Dozier–Silverstein
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def power_law_matrix():
    """V = 4000, d = 1000, σ_k ∝ k^(-1/2) with Haar vectors, signal energy = noise energy V d s² (s = 1)."""
    V, d, s = 4000, 1000, 1.0
    sigma = power_law_signal(d, 0.5, V * d * s**2)
    W = signal_plus_noise(sigma, V, d, s, seed=0)
    return sigma, V, d, s, singular_values(W)


def binned_l1(result_density: np.ndarray, u_grid: np.ndarray, sv_over_root_v: np.ndarray, n_bins: int) -> float:
    """L1 distance Σ_b |P_b − F_b| between predicted and empirical bin masses.

    Bins: ``n_bins`` equal widths in ``u = σ/√V = √x`` over [0, u_max] (the grid's end). ``P_b`` integrates
    the predicted density (converted to u: ρ_u(u) = ρ(u²)·2u) over the bin by the trapezoid rule on the grid;
    ``F_b`` is the fraction of the d eigenvalues in the bin.
    """
    dens_u = np.concatenate([[0.0], np.asarray(result_density, np.float64) * 2 * u_grid])
    u = np.concatenate([[0.0], u_grid])
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (dens_u[1:] + dens_u[:-1]) * np.diff(u))])
    edges = np.linspace(0.0, u_grid[-1], n_bins + 1)
    P = np.diff(np.interp(edges, u, cum))
    F = np.histogram(sv_over_root_v, edges)[0] / sv_over_root_v.size
    return float(np.abs(P - F).sum())


def test_dozier_silverstein_density_matches_the_simulated_histogram_of_a_power_law_plus_noise(
    power_law_matrix,
):
    sigma, V, d, s, sv = power_law_matrix
    u_grid = np.linspace(0, 1.05 * sv[0] / math.sqrt(V), 4001)[1:]
    res = rmt.limiting_spectrum(sigma, V, d, s**2, u_grid**2)
    assert bool(res.converged)
    assert float(np.max(res.residual)) < 1e-10
    dens = np.asarray(res.density, np.float64)
    assert np.all(dens >= 0)
    x = u_grid**2
    assert np.trapezoid(dens, x) == pytest.approx(1.0, abs=2e-3)
    # 60 equal bins in σ/√V over [0, 1.05 σ_max/√V]: measured 0.010 (eigenvalue rigidity keeps the binning
    # noise of 1000 eigenvalues near 60 × O(1)/1000 ≈ 0.01-0.03)
    assert binned_l1(dens, u_grid, sv / math.sqrt(V), 60) < 0.05


def test_dozier_silverstein_top_outlier_matches_the_spiked_map(power_law_matrix):
    sigma, V, d, s, sv = power_law_matrix
    spike = float(rmt.spiked_singular_value(sigma[0], V, d, s**2))
    assert sv[0] == pytest.approx(spike, rel=0.01)


def test_limiting_spectrum_with_zero_signal_is_marchenko_pastur_for_any_aspect_ratio():
    for V, d in [(3000, 1000), (1000, 3000)]:
        e = rmt.mp_edges(V, d, 0.8)
        x = np.linspace(0.01 * e.x_hi, 1.1 * e.x_hi, 500)
        res = rmt.limiting_spectrum(np.zeros(1), V, d, 0.8, x)
        mp = np.asarray(rmt.mp_density(x, V, d, 0.8), np.float64)
        # away from the edges, where the η-smoothing (√η ≈ 1e-3 of the scale) does not matter
        inner = (x > e.x_lo * 1.02) & (x < e.x_hi * 0.98) | (x < e.x_lo * 0.98) | (x > e.x_hi * 1.02)
        np.testing.assert_allclose(np.asarray(res.density, np.float64)[inner], mp[inner], atol=2e-4 / e.x_hi)


def test_limiting_spectrum_with_more_columns_than_rows_matches_simulation():
    V, d, s = 500, 1500, 1.0  # c = d/V = 3: solved in the swapped form; atom of mass 2/3 at 0 excluded
    sigma = power_law_signal(V, 0.5, V * d * s**2)
    sv = singular_values(signal_plus_noise(sigma, V, d, s, seed=2))
    u_grid = np.linspace(0, 1.05 * sv[0] / math.sqrt(V), 3001)[1:]
    res = rmt.limiting_spectrum(sigma, V, d, s**2, u_grid**2)
    assert bool(res.converged)
    dens = np.asarray(res.density, np.float64)
    assert np.trapezoid(dens, u_grid**2) == pytest.approx(V / d, abs=2e-3)
    # the V nonzero eigenvalues of WᵀW/V carry mass V/d: compare after normalising both to 1
    assert binned_l1(dens * d / V, u_grid, sv / math.sqrt(V), 40) < 0.05


def test_dozier_silverstein_density_in_the_normalised_form_agrees_with_limiting_spectrum():
    V, d, s2 = 2000, 500, 0.5
    sigma = power_law_signal(d, 0.7, V * d * s2)
    x = np.linspace(0.05, 8.0, 300)
    a = rmt.limiting_spectrum(sigma, V, d, s2, x)
    b = rmt.dozier_silverstein_density(x, sigma**2 / V, d / V, s2)
    np.testing.assert_allclose(np.asarray(a.density), np.asarray(b.density), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("c", [0.25, 1.0, 2.5])
def test_the_ds_maps_derivative_is_the_complex_derivative_of_the_map(c):
    # f'(m) is written through Σ w/D² and f itself (the identity t/a² + z = D/a + 2z − s²(1−c)/a); it steers every
    # Newton step of the solver, so it must be the derivative of f, checked by central differences along 1 and i
    rng = np.random.default_rng(3)
    k, s2 = 40, 0.7
    t = np.append(np.sort(rng.uniform(0.0, 6.0, k - 1)), 0.0)
    w = np.append(np.full(k - 1, 0.9 / (k - 1)), 0.1)
    x = np.linspace(0.2, 9.0, 11)
    z = x + 0.3j
    m = -1.0 / (z + 0.5 + 0.4j)
    h = 1e-6
    with jax.enable_x64(True):
        def f(mm):
            return np.asarray(rmt._ds_map(mm, z, t, w, np.float64(c), np.float64(s2))[0])

        _, fp = rmt._ds_map(m, z, t, w, np.float64(c), np.float64(s2))
        along_real = (f(m + h) - f(m - h)) / (2 * h)
        along_imag = (f(m + 1j * h) - f(m - 1j * h)) / (2j * h)
    np.testing.assert_allclose(np.asarray(fp), along_real, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(fp), along_imag, rtol=1e-6)


def test_a_huge_outlier_neither_smears_the_bulk_nor_escapes_the_quantile_grid():
    # the default η scales with the noise bulk, not with the largest signal eigenvalue
    V, d, s2 = 4000, 1000, 1.0
    e = rmt.mp_edges(V, d, s2)
    sigma = np.zeros(d)
    sigma[0] = 1e5
    x = np.linspace(e.x_lo * 1.05, e.x_hi * 0.95, 200)
    res = rmt.limiting_spectrum(sigma, V, d, s2, x)
    mp = np.asarray(rmt.mp_density(x, V, d, s2), np.float64)
    # one atom of weight 1/d moves the bulk by O(1/d)
    np.testing.assert_allclose(np.asarray(res.density, np.float64), mp * (1 - 1 / d), rtol=5e-3, atol=1e-3)
    sigma[1:] = 30.0 * np.arange(2, d + 1) ** -0.5
    ds = rmt.predict_quantized(sigma, V, d, s2, bulk="dozier-silverstein")
    mp_pred = rmt.predict_quantized(sigma, V, d, s2)
    top = np.asarray(ds.sigma, np.float64)
    assert top[0] == pytest.approx(ds.sigma1, rel=1e-6)
    assert top[1] < e.sigma_hi * 1.01
    assert ds.effective_rank == pytest.approx(mp_pred.effective_rank, rel=0.01)


def test_ds_prediction_reads_a_dense_band_of_spikes_off_the_law_not_the_spiked_map():
    # Every σ_k = k^-0.1 is above θ_c (k* = r): the spiked-map images form one continuous band with the bulk,
    # where the map is not a theorem (finite rank only). The DS option must read that band off the DS law —
    # the review's example: the map gives exponent 0.097 and smallest value 0.548; measured 0.134 and 0.459.
    from zipfrmt import quant, spectra

    V = d = 512
    rng = np.random.default_rng(0)
    sigma = np.arange(1, d + 1) ** -0.1
    W = ((haar(rng, V, d) * sigma) @ haar(rng, d, d).T).astype(np.float32)
    res = quant.quantize(W, "int4-row")
    sq = np.asarray(spectra.singular_values(res.dequantized), np.float64)
    measured = spectra.rank_decay_exponent(sq).a
    ds = rmt.predict_from_result(sigma, V, d, res, bulk="dozier-silverstein")
    mp = rmt.predict_from_result(sigma, V, d, res, bulk="mp")
    assert ds.truncation_index == d
    assert ds.decay.a == pytest.approx(measured, rel=0.02)
    assert float(ds.sigma[-1]) == pytest.approx(sq[-1], rel=0.02)
    assert abs(mp.decay.a - measured) > 0.2 * measured  # the spiked map one by one misses by ~28%


def test_a_solve_that_stopped_early_converged_and_does_not_warn():
    """The loop stops when the residual at m is within tol; it returns that m, not one more Newton step (whose
    residual, at the float floor, may exceed tol: 4.1e-13 > 3e-13 here, a false 'did not converge in 32')."""
    t, x = np.arange(1, 129) ** -1.0, np.linspace(0.001, 2.0, 400)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for tol in (1e-10, 1e-12, 3e-13):
            r = rmt.dozier_silverstein_density(x, t, 0.25, 1e-3, tol=tol, max_iter=200)
            assert int(r.iterations) < 200 and bool(r.converged) and float(np.max(r.residual)) <= tol


def gaussian_singular_values(rng: np.random.Generator, V: int, d: int) -> np.ndarray:
    """Singular values of a V×d standard Gaussian matrix (V ≥ d), drawn through the d×d bidiagonal with χ entries
    that has the same law (Dumitriu & Edelman 2002): a 131,072×640 draw without the 131,072×640 matrix."""
    a = np.sqrt(rng.chisquare(V - np.arange(d)))
    b = np.sqrt(rng.chisquare(d - 1 - np.arange(d - 1)))
    return np.linalg.svd(np.diag(a) + np.diag(b, 1), compute_uv=False)


def test_a_dense_spectrum_far_above_the_noise_converges_where_the_terms_of_f_cancel():
    """A 131,072×640 Gaussian W at s = σ_W/32 (int6-row): between the islands of its 640 values the terms of
    f(m) = Σ_k w_k/D_k cancel and m ≈ 0, where |m − f|/|m| stalled above 1e-10 for 200 iterations (43 s, and a
    ConvergenceWarning); measured against the size of the terms, those points converge with the rest."""
    sigma = gaussian_singular_values(np.random.default_rng(1), 131072, 640)
    seen = []
    core = rmt._ds_core

    def spy(*args):
        seen.append(core(*args))
        return seen[-1]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rmt._ds_core = spy
        try:
            pred = rmt.predict_quantized(sigma, 131072, 640, (1 / 32.238) ** 2, bulk="dozier-silverstein")
        finally:
            rmt._ds_core = core
    assert len(seen) == 1 and bool(seen[0].converged) and int(seen[0].iterations) < 40
    assert pred.truncation_index == 640


def test_the_quantile_grid_starts_at_weyls_bound_and_the_prediction_matches_simulation(monkeypatch):
    """σ_r(S + E) ≥ σ_r(S) − ‖E‖: a tall W far above the noise has no singular value near 0, so the DS quantile
    grid starts near σ_r(S) − s(√V + √d) instead of 0 (the grid from 0 spent 7/8 of its points on nothing), at
    the same spacing; the predicted spectrum still matches a simulated W + E value by value (within 0.3%)."""
    V, d, s = 8192, 128, 0.2
    rng = np.random.default_rng(0)
    S = rng.standard_normal((V, d))
    sigma = singular_values(S)
    grids = []
    core = rmt._ds_core
    monkeypatch.setattr(rmt, "_ds_core", lambda x, *a: grids.append(x) or core(x, *a))
    pred = np.asarray(rmt.predict_quantized(sigma, V, d, s * s, bulk="dozier-silverstein").sigma, np.float64)
    low = (sigma[-1] - s * (math.sqrt(V) + math.sqrt(d))) / s  # the solve runs in units of s
    x = grids[0]
    assert math.sqrt(x[0] * V) >= low - 6.0 and math.sqrt(x[-1] * V) <= 1.01 * (sigma[0] / s + 2 * math.sqrt(V))
    assert x.size < 0.25 * rmt._DS_QUANTILE_GRID_MAX
    measured = singular_values(S + s * rng.standard_normal((V, d)))
    np.testing.assert_allclose(pred, measured, rtol=5e-3)  # W's own values miss by 2.3%, the spiked map's by 0.8%


def test_a_solve_on_a_grid_in_blocks_equals_the_solve_point_by_point():
    """Above 4,096 points the map runs in blocks of 256 and the grid is padded to a size of a short ladder
    (copies of its last point, dropped): neither changes the density at a point."""
    t, x = np.arange(1, 129) ** -1.0, np.linspace(0.001, 2.0, 5000)
    whole = rmt.dozier_silverstein_density(x, t, 0.25, 1e-3)
    part = rmt.dozier_silverstein_density(x[::50], t, 0.25, 1e-3)
    assert np.asarray(whole.density).shape == (5000,)
    np.testing.assert_allclose(np.asarray(whole.density)[::50], np.asarray(part.density), rtol=1e-9, atol=1e-12)
    for g in (1, 256, 257, 2325, 4097, 32768, 40000):
        n = rmt._padded_size(g)
        assert g <= n <= max(g, 1.19 * g + rmt._DS_BLOCK) and (g <= rmt._DS_BLOCK or n % rmt._DS_BLOCK == 0)


def test_grids_of_new_lengths_on_one_padded_size_compile_nothing(caplog):
    """Every spec of an analysis solves on a grid of its own length: with the solver compiled for a padded size,
    grids of other lengths that pad to it run without compiling anything (a JAX op at each new length compiled a
    program, 9 MB and 0.1 s each, never freed: 20 specs took 0.3 GB)."""
    t = np.arange(1, 65) ** -1.0
    rmt.dozier_silverstein_density(np.linspace(0.01, 2.0, 4400), t, 0.25, 1e-3)
    assert {rmt._padded_size(g) for g in (4400, 4501, 4600, 4700)} == {rmt._padded_size(4400)}
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG):
        for g in (4501, 4600, 4700):
            rmt.dozier_silverstein_density(np.linspace(0.01, 2.0, g), t, 0.25, 1e-3)
    assert not [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiling")]


def test_non_convergence_warns_with_the_max_residual():
    sigma = power_law_signal(200, 0.5, 800 * 200)
    with pytest.warns(rmt.ConvergenceWarning, match=r"max relative residual .* > tol"):
        res = rmt.limiting_spectrum(sigma, 800, 200, 1.0, np.linspace(0.1, 3, 50), max_iter=3)
    assert not bool(res.converged)
    assert int(res.iterations) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bool(rmt.limiting_spectrum(sigma, 800, 200, 1.0, np.linspace(0.1, 3, 50)).converged)


# ---------------------------------------------------------------------------------------------------------
# Predicted quantized spectrum
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def steep_power_law_matrix():
    """σ_k ∝ 1/k (V = 4000, d = 1000), signal energy = noise energy: few signal values near the threshold.

    Unrotated (``rotate=False``): the law of the singular values is the same, see :func:`signal_plus_noise`.
    """
    V, d, s = 4000, 1000, 1.0
    sigma = power_law_signal(d, 1.0, V * d * s**2)
    return sigma, V, d, s, singular_values(signal_plus_noise(sigma, V, d, s, seed=1, rotate=False))


@pytest.mark.parametrize("bulk", ["mp", "dozier-silverstein"])
def test_predict_quantized_stable_rank_and_truncation_index_match_the_measured_spectrum(steep_power_law_matrix, bulk):
    sigma, V, d, s, sv = steep_power_law_matrix
    p = rmt.predict_quantized(sigma, V, d, s**2, bulk=bulk)
    measured_stable_rank = np.sum(sv**2) / sv[0] ** 2
    assert p.stable_rank == pytest.approx(measured_stable_rank, rel=0.03)
    assert p.sigma1 == pytest.approx(sv[0], rel=0.01)
    # k* counts signal values above θ_c; its observable image is the number of measured values above the noise
    # floor (the spiked map sends θ_c to the edge). Values just above θ_c emerge within the edge's O(n^-2/3)
    # fluctuations, so allow a few (k* = 34 against 31-32 measured over seeds 1-4). On the DS bulk k* is counted on
    # the predicted spectrum as it is measured, and sees the values the sub-threshold signal keeps inside: 32.
    by_threshold = int(np.sum(sigma > s * (V * d) ** 0.25))
    counted = int(np.sum(np.asarray(p.sigma) > p.noise_floor))
    assert p.truncation_index == (by_threshold if bulk == "mp" else counted)
    assert abs(p.truncation_index - int(np.sum(sv > p.noise_floor))) <= max(4, 0.1 * p.truncation_index)
    if bulk == "dozier-silverstein":
        assert abs(p.truncation_index - int(np.sum(sv > p.noise_floor))) <= 1 < by_threshold - p.truncation_index
    pred = np.asarray(p.sigma, np.float64)
    assert pred.shape == (d,) and np.all(np.diff(pred) <= 1e-6 * pred[0])
    assert p.effective_rank == pytest.approx(float(effective_rank(sv)), rel=0.02)
    # flattening: the quantized exponent is well below the full-precision one and close to the measured one
    fit_measured = -np.polyfit(np.log(np.arange(1, d + 1)), np.log(sv), 1)[0]
    assert p.decay_full.a == pytest.approx(1.0, abs=1e-9)
    assert p.decay.a == pytest.approx(fit_measured, abs=0.02)
    assert p.stable_rank > p.stable_rank_full


def test_predict_quantized_on_the_comparable_power_law_case(power_law_matrix):
    sigma, V, d, s, sv = power_law_matrix
    p = rmt.predict_quantized(sigma, V, d, s**2)
    assert p.stable_rank == pytest.approx(np.sum(sv**2) / sv[0] ** 2, rel=0.03)
    assert p.effective_rank == pytest.approx(float(effective_rank(sv)), rel=0.02)


def test_bussgang_prediction_is_the_additive_one_applied_to_the_scaled_spectrum():
    V, d = 3000, 600
    sigma = power_law_signal(d, 0.8, 50.0 * V * d)
    a = rmt.predict_quantized_bussgang(sigma, V, d, 0.6, 2.0)
    b = rmt.predict_quantized(0.6 * sigma, V, d, 2.0)
    np.testing.assert_allclose(np.asarray(a.sigma), np.asarray(b.sigma), rtol=1e-6)
    assert (a.stable_rank, a.truncation_index, a.sigma1) == pytest.approx((b.stable_rank, b.truncation_index, b.sigma1))
    assert (a.model, a.gain, b.model, b.gain) == ("bussgang", 0.6, "additive", 1.0)


def test_an_all_zero_prediction_has_zero_ranks_and_nan_exponents_with_a_reason():
    p = rmt.predict_quantized_bussgang(power_law_signal(100, 0.5, 1.0), 400, 100, 0.0, 0.0)
    assert np.all(np.asarray(p.sigma) == 0)
    assert p.stable_rank == 0 and p.effective_rank == 0
    assert math.isnan(p.decay.a) and p.decay.reason and p.reason
    assert p.stable_rank_full > 0  # the full-precision side is still measured


def test_noise_free_prediction_returns_the_input_spectrum():
    sigma = power_law_signal(100, 0.5, 1.0)
    p = rmt.predict_quantized(sigma, 400, 100, 0.0)
    np.testing.assert_allclose(np.asarray(p.sigma), sigma, rtol=1e-6)
    assert p.truncation_index == 100 and p.stable_rank == pytest.approx(p.stable_rank_full)


# ---------------------------------------------------------------------------------------------------------
# Bad input: every error names the argument
# ---------------------------------------------------------------------------------------------------------

GOOD_SIGMA = np.array([3.0, 2.0, 1.0])
GRID = np.linspace(0.1, 2.0, 5)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: rmt.mp_edges(100, 50, -1.0), ValueError, "noise_var"),
        (lambda: rmt.mp_density(GRID, 100, 50, 0.0), ValueError, "noise_var"),
        (lambda: rmt.mp_density(GRID, 0, 50, 1.0), ValueError, "V"),
        (lambda: rmt.mp_density(GRID, 100, 0, 1.0), ValueError, "d"),
        (lambda: rmt.mp_density(GRID, 100.0, 50, 1.0), TypeError, "V"),
        (lambda: rmt.mp_cdf(np.array([0.1, np.nan]), 100, 50, 1.0), ValueError, "x"),
        (lambda: rmt.mp_quantiles(np.array([0.5, 1.5]), 100, 50, 1.0), ValueError, "p"),
        (lambda: rmt.spiked_singular_value(-1.0, 100, 50, 1.0), ValueError, "theta"),
        (lambda: rmt.spiked_overlaps(1.0, 100, 50, -0.1), ValueError, "noise_var"),
        (lambda: rmt.predict_top_singular_values(np.array([1.0, 2.0]), 100, 50, 1.0), ValueError, "sigma"),
        (lambda: rmt.predict_top_singular_values(np.array([2.0, np.nan]), 100, 50, 1.0), ValueError, "sigma"),
        (lambda: rmt.predict_top_singular_values(np.ones(60), 100, 50, 1.0), ValueError, "sigma.*min"),
        (lambda: rmt.predict_quantized(np.array([[1.0]]), 100, 50, 1.0), ValueError, "sigma"),
        (lambda: rmt.predict_quantized(np.array([1.0, -1.0]), 100, 50, 1.0), ValueError, "sigma"),
        (lambda: rmt.predict_quantized(np.array([], np.float64), 100, 50, 1.0), ValueError, "sigma"),
        (lambda: rmt.predict_quantized(GOOD_SIGMA, 2, 50, 1.0), ValueError, "sigma.*min"),
        (lambda: rmt.predict_quantized(GOOD_SIGMA, 100, 50, -2.0), ValueError, "noise_var"),
        (lambda: rmt.predict_quantized(GOOD_SIGMA, 100, 50, 1.0, bulk="exact"), ValueError, "bulk"),
        (
            lambda: rmt.predict_quantized(GOOD_SIGMA, 100, 50, 1.0, rank_window=(0, 3)),
            ValueError,
            "rank_window",
        ),
        (lambda: rmt.predict_quantized_bussgang(GOOD_SIGMA, 100, 50, -0.5, 1.0), ValueError, "gain"),
        (lambda: rmt.predict_quantized_bussgang(GOOD_SIGMA, 100, 50, 0.5, -1.0), ValueError, "residual_var"),
        (
            lambda: rmt.limiting_spectrum(GOOD_SIGMA, 100, 50, 1.0, np.array([], np.float64)),
            ValueError,
            "x_grid",
        ),
        (
            lambda: rmt.limiting_spectrum(GOOD_SIGMA, 100, 50, 1.0, np.array([0.1, np.inf])),
            ValueError,
            "x_grid",
        ),
        (
            lambda: rmt.limiting_spectrum(GOOD_SIGMA[::-1].copy(), 100, 50, 1.0, GRID),
            ValueError,
            "signal_sigma",
        ),
        (lambda: rmt.limiting_spectrum(np.ones(51), 100, 50, 1.0, GRID), ValueError, "signal_sigma"),
        (lambda: rmt.limiting_spectrum(GOOD_SIGMA, 100, 50, 0.0, GRID), ValueError, "noise_var"),
        (lambda: rmt.limiting_spectrum(GOOD_SIGMA, 100, 50, 1.0, GRID, max_iter=0), ValueError, "max_iter"),
        (lambda: rmt.limiting_spectrum(GOOD_SIGMA, 100, 50, 1.0, GRID, damping=0.0), ValueError, "damping"),
        (lambda: rmt.dozier_silverstein_density(GRID, GOOD_SIGMA, 0.0, 1.0), ValueError, "c"),
        (lambda: rmt.dozier_silverstein_density(GRID, GOOD_SIGMA, 2.0, 1.0), ValueError, "c.*rank"),
        (lambda: rmt.dozier_silverstein_density(GRID, -GOOD_SIGMA, 0.5, 1.0), ValueError, "signal_eigs"),
        (lambda: rmt.dozier_silverstein_density(GRID, GOOD_SIGMA, 0.5, 1.0, eta=-1.0), ValueError, "eta"),
        (lambda: rmt.dozier_silverstein_density(GRID, np.array([1, 2]), 0.5, 1.0), TypeError, "signal_eigs"),
    ],
)
def test_bad_input_raises_an_error_naming_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_descending_error_names_the_offending_ranks():
    with pytest.raises(ValueError, match=r"sigma: expected singular values in descending order, got σ_2"):
        rmt.predict_quantized(np.array([3.0, 1.0, 2.0]), 100, 50, 1.0)


# ---------------------------------------------------------------------------------------------------------
# Scale: the laws are homogeneous, the results must be too (or a named error)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("c", [1e-30, 1e-20, 1e20, 1e30])
def test_ds_prediction_is_homogeneous_in_the_scale(c):
    s = np.arange(1, 33) ** -0.5 * 10
    base = rmt.predict_quantized(s, 64, 32, 0.01, bulk="dozier-silverstein")
    p = rmt.predict_quantized(s * c, 64, 32, 0.01 * c * c, bulk="dozier-silverstein")
    np.testing.assert_allclose(np.asarray(p.sigma, np.float64) / c, np.asarray(base.sigma, np.float64), rtol=1e-6)
    assert p.stable_rank == pytest.approx(base.stable_rank, rel=1e-9)


def test_spiked_map_and_overlaps_are_homogeneous_where_theta_to_the_fourth_would_underflow():
    o = rmt.spiked_overlaps(np.array([30e-100]), 100, 100, 1e-200)
    ref = rmt.spiked_overlaps(np.array([30.0]), 100, 100, 1.0)
    np.testing.assert_allclose(np.asarray(o.row), np.asarray(ref.row), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(o.column), np.asarray(ref.column), rtol=1e-6)
    small = rmt.spiked_singular_value(np.array([30e-15, 1e-16]), 100, 100, 1e-30)
    np.testing.assert_allclose(np.asarray(small) / 1e-15, [100 / 3 + 0.0, 20.0], rtol=1e-5)
    assert float(rmt.spiked_singular_value(np.array([3.0]), 100, 100, 0.0)[0]) == pytest.approx(3.0)
    assert rmt.detection_threshold(10**200, 10**200, 1.0) == pytest.approx(1e100, rel=1e-12)


@pytest.mark.parametrize("call", [
    lambda: rmt.mp_density(np.array([1e-200]), 10, 20, 1e-200),
    lambda: rmt.mp_typical_singular_values(64, 32, 1e80),
    lambda: rmt.mp_typical_singular_values(64, 32, 1e-90),
])
def test_a_result_float32_cannot_hold_is_a_named_error_not_inf_or_zero(call):
    with pytest.raises(ValueError, match="noise_var: expected a scale whose results fit float32"):
        call()


def test_profile_prediction_follows_noise_aligned_with_the_top_singular_vector():
    # The review's case: an outlier column (×10) with per-column scales, rated widrow. Its noise variance is
    # 100× the others' along v_1: the i.i.d. spiked map misses r_s by 2.5-3%, the profile shift does not.
    from zipfrmt import bounds, quant, spectra

    W = np.asarray(bounds.outlier_column_matrix(jax.random.key(0), 4096, 512, 10.0), np.float64)
    U, S, Vt = np.linalg.svd(W, full_matrices=False)
    r = quant.quantize(W.astype(np.float32), "int4-column")
    assert r.regime == "widrow"
    sq = np.asarray(spectra.singular_values(r.dequantized), np.float64)
    measured = np.sum(sq**2) / sq[0] ** 2
    iid = rmt.predict_from_result(S, 4096, 512, r)
    prof = rmt.predict_with_profile(S, 4096, 512, r, U[:, 0], Vt[0])
    assert abs(iid.stable_rank / measured - 1) > 0.02
    assert prof.model == "additive-profile" and prof.stable_rank == pytest.approx(measured, rel=0.005)
    assert prof.sigma1 == pytest.approx(sq[0], rel=3e-3)  # iid: 1.2% off


def test_profile_prediction_equals_the_iid_one_for_constant_steps_and_falls_back_elsewhere():
    from zipfrmt import embeddings, quant

    W = np.asarray(embeddings.power_law_matrix(jax.random.key(1), 1024, 128, 0.5), np.float64)
    U, S, Vt = np.linalg.svd(W, full_matrices=False)
    r = quant.quantize(W.astype(np.float32), "int6-tensor")  # one step: every s_ij² is the same
    iid, prof = rmt.predict_from_result(S, 1024, 128, r), rmt.predict_with_profile(S, 1024, 128, r, U[:, 0], Vt[0])
    assert prof.sigma1 == pytest.approx(iid.sigma1, rel=1e-9) and prof.stable_rank == pytest.approx(iid.stable_rank)
    dead = quant.quantize(W.astype(np.float32), "int2-tensor")
    assert rmt.predict_with_profile(S, 1024, 128, dead, U[:, 0], Vt[0]).model == "bussgang"
    with pytest.raises(ValueError, match="u1, v1: expected W's top singular vectors of lengths V = 1024 and d = 128"):
        rmt.predict_with_profile(S, 1024, 128, r, U[:10, 0], Vt[0])


def test_on_the_dozier_silverstein_bulk_sigma1_of_a_dense_w_is_the_free_sums_edge_not_the_spiked_map():
    """A Gaussian W has no spike: σ_1(W) is its own bulk's edge, and the spiked map (a theorem for finite rank)
    puts σ_1(Q) below the edge of W + E. On the DS bulk, σ_1 is the top of the predicted spectrum."""
    from zipfrmt import quant, spectra

    W = np.random.default_rng(0).standard_normal((512, 256)).astype(np.float32)
    s = np.asarray(spectra.singular_values(W), np.float64)
    q = quant.quantize(W, "int3-tensor-stochastic", key=jax.random.key(1))
    sq = np.asarray(spectra.singular_values(q.dequantized), np.float64)
    measured = float(np.sum(sq**2) / sq[0] ** 2)
    ds = rmt.predict_from_result(s, 512, 256, q, bulk="dozier-silverstein")
    mp = rmt.predict_from_result(s, 512, 256, q, bulk="mp")
    assert ds.sigma1 == pytest.approx(float(np.max(np.asarray(ds.sigma))), rel=1e-6)
    assert ds.sigma1 == pytest.approx(sq[0], rel=0.02)
    assert ds.stable_rank == pytest.approx(measured, rel=0.03)
    assert mp.stable_rank > 1.1 * measured  # the MP bulk keeps the spiked map's σ_1: the known limitation


def test_the_auto_bulk_reads_a_dense_w_off_the_ds_law_and_keeps_mp_for_an_isolated_spike():
    """``bulk="auto"`` (predict_from_result's default, what ``zipfrmt analyze`` reports): a Gaussian W's σ_1 is
    no isolated spike, so its prediction comes from the Dozier–Silverstein law (stable rank 9.3% off with MP at
    int3-tensor, 2.5% with DS); a power law's σ_1 is isolated, and there MP gives the same σ̃_1 and stable rank at
    a fraction of the cost; in the dead zone the law is DS."""
    from zipfrmt import quant, spectra

    rng = np.random.default_rng(1)
    W = rng.standard_normal((512, 256)).astype(np.float32)
    s = np.asarray(spectra.singular_values(W), np.float64)
    q = quant.quantize(W, "int3-tensor")
    assert q.regime == "widrow"
    sq = np.asarray(spectra.singular_values(q.dequantized), np.float64)
    measured = float(np.sum(sq**2) / sq[0] ** 2)
    auto = rmt.predict_from_result(s, 512, 256, q)
    mp = rmt.predict_from_result(s, 512, 256, q, bulk="mp")
    assert auto.bulk == "dozier-silverstein"
    assert auto.stable_rank == pytest.approx(measured, rel=0.04)
    assert mp.stable_rank > 1.06 * measured

    P = ((haar(rng, 2048, 256) * np.arange(1, 257) ** -0.5) @ haar(rng, 256, 256).T).astype(np.float32)
    sp = np.asarray(spectra.singular_values(P), np.float64)
    q = quant.quantize(P, "int4-row")
    auto = rmt.predict_from_result(sp, 2048, 256, q)
    assert auto.bulk == "mp"
    assert auto.stable_rank == rmt.predict_from_result(sp, 2048, 256, q, bulk="mp").stable_rank
    dead = quant.quantize(P, "int2-row")
    assert dead.regime == "dead-zone"
    assert rmt.predict_from_result(sp, 2048, 256, dead).bulk == "dozier-silverstein"
    assert rmt.choose_bulk("auto", "widrow", sp, 2048, 256, 0.0) == "mp"  # no noise: W's own spectrum
    with pytest.raises(ValueError, match="bulk: expected one of"):
        rmt.choose_bulk("exact", "widrow", sp, 2048, 256, 1e-4)
    with pytest.raises(ValueError, match="regime: expected one of"):
        rmt.choose_bulk("auto", "deadzone", sp, 2048, 256, 1e-4)


def test_the_auto_bulk_counts_a_cut_dense_tail_on_the_ds_law():
    """Where quantization cuts a power law's tail in the Widrow regime (σ_k = k^(−1), 6 bits per tensor), the values
    near θ_c crowd into a band with the bulk and do not map one by one: MP's count ``#{σ_k > θ_c}`` overshoots
    the measured count above the noise floor by about half, the DS law's is within a few percent. The stable rank
    (set by an isolated σ_1) is the same on both laws, and a finite-rank W whose spikes sit far above the floor
    keeps the spiked map, whose count is exact there."""
    from zipfrmt import quant, spectra

    rng = np.random.default_rng(0)
    V, d = 4096, 256
    sig = np.arange(1, d + 1, dtype=np.float64) ** -1.0
    W = ((haar(rng, V, d) * sig) @ haar(rng, d, d).T).astype(np.float32)
    s = np.asarray(spectra.singular_values(W), np.float64)
    q = quant.quantize(W, "int6-tensor")
    assert q.regime == "widrow"
    sq = np.asarray(spectra.singular_values(q.dequantized), np.float64)
    auto = rmt.predict_from_result(s, V, d, q)
    mp = rmt.predict_from_result(s, V, d, q, bulk="mp")
    measured = rmt.count_above_floor(sq, auto)
    assert 0 < measured < d  # the tail is cut
    assert auto.bulk == "dozier-silverstein"
    assert auto.truncation_index == pytest.approx(measured, rel=0.05)
    assert mp.truncation_index > 1.3 * measured
    assert auto.stable_rank == pytest.approx(mp.stable_rank, rel=1e-3)

    spikes = np.zeros(d)
    spikes[:4] = [40.0, 30.0, 20.0, 10.0]
    s2 = (0.5 / (math.sqrt(V) + math.sqrt(d))) ** 2  # floor 0.5: every spike far above it
    assert rmt.choose_bulk("auto", "widrow", spikes, V, d, s2) == "mp"
    assert rmt.choose_bulk("auto", "widrow", sig, V, d, (0.01 / (math.sqrt(V) + math.sqrt(d))) ** 2) == \
        "dozier-silverstein"
