"""Embedding matrices: constructions from token statistics and prescribed spectra.

Conventions (``docs/conventions.md``): an embedding is ``V×d`` with rows = tokens. Nothing here relies on the
token order (the samplers of :mod:`zipfrmt.corpus` give id 0 to the most frequent token, but a real vocabulary
need not).

* **Lemma 3.1** (Huang et al. 2026, arXiv 2602.00969): rows ``√p̂_k · e_k`` with near-orthogonal directions
  ``e_k`` — :func:`lemma31_embedding`, and the prediction of its spectrum, floor included,
  :func:`lemma31_spectrum`.
* **PPMI and shifted PPMI** of a co-occurrence matrix and their truncated SVD (Levy & Goldberg 2014;
  Levy, Goldberg & Dagan 2015) — :func:`ppmi`, :func:`ppmi_svd_embedding`.
* **Prescribed spectra** with Haar singular vectors — :func:`matrix_with_spectrum` with
  :func:`power_law_spectrum` or :func:`spectrum_profile`.

Real matrices are read from checkpoint files by :mod:`zipfrmt.checkpoints`.

Where things run: the random constructions are jit-compiled JAX kernels driven by explicit PRNG keys and return
float32 JAX arrays; PPMI and its SVD are host-side NumPy/SciPy and return NumPy arrays.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg
from jaxtyping import Array, Float, Float64, Int32, PRNGKeyArray

from zipfrmt.checks import (
    check_choice,
    check_float32_range,
    check_float_array,
    check_int,
    check_key,
    check_nonnegative_array,
    check_number,
    max_abs,
)

__all__ = [
    "DIRECTIONS",
    "PROFILES",
    "SVD_SOLVERS",
    "Lemma31Spectrum",
    "PPMIEmbedding",
    "haar_orthonormal",
    "lemma31_embedding",
    "lemma31_spectrum",
    "matrix_with_spectrum",
    "power_law_matrix",
    "power_law_spectrum",
    "ppmi",
    "ppmi_svd_embedding",
    "spectrum_profile",
]


def haar_orthonormal(key: PRNGKeyArray, n: int, k: int) -> Float[Array, "n k"]:
    """``n×k`` matrix with orthonormal columns, Haar-distributed (Mezzadri 2007).

    QR of a standard Gaussian ``n×k`` matrix ``G = QR``, with the signs fixed so that ``diag(R) > 0``
    (without the fix, ``Q`` is not Haar).
    """
    n = check_int(n, "n", lo=1)
    k = check_int(k, "k", lo=1, hi=n)
    return _haar(check_key(key), n, k)


@partial(jax.jit, static_argnums=(1, 2))
def _haar(key: PRNGKeyArray, n: int, k: int) -> Float[Array, "n k"]:
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, k), jnp.float32))
    return q * jnp.where(jnp.diag(r) < 0, -1.0, 1.0)


def power_law_spectrum(r: int, a: float, scale: float = 1.0) -> Float[Array, " r"]:
    """``σ_k = scale · k^(-a)`` for ``k = 1..r``."""
    r = check_int(r, "r", lo=1)
    a = check_number(a, "a", lo=0.0)
    scale = check_number(scale, "scale", lo=0.0, lo_open=True)
    check_float32_range(scale, "scale", "σ_1 = scale is float32")
    return scale * jnp.arange(1, r + 1, dtype=jnp.float32) ** (-a)


def matrix_with_spectrum(key: PRNGKeyArray, V: int, d: int, sigma: Float[Array, " r"]) -> Float[Array, "V d"]:
    """``W = U diag(σ) Vᵀ`` with Haar-random ``U`` (V×r) and ``V`` (d×r), ``r = min(V, d)``.

    The singular values of ``W`` are exactly ``σ`` (up to float32 rounding) and its singular vectors are
    uniformly random: the controlled input for the noise-floor experiments.
    """
    V = check_int(V, "V", lo=1)
    d = check_int(d, "d", lo=1)
    sigma = check_float_array(sigma, "sigma", ndim=1)
    r = min(V, d)
    if sigma.shape[0] != r:
        raise ValueError(f"sigma: expected min(V, d) = {r} singular values, got {sigma.shape[0]}")
    host = np.asarray(sigma)
    if np.any(host < 0):
        raise ValueError(f"sigma: expected non-negative singular values, got min {float(host.min()):g}")
    check_float32_range(max_abs(host), "sigma", "W is built in float32")
    ku, kv = jax.random.split(check_key(key))
    return _compose(_haar(ku, V, r), jnp.asarray(sigma, jnp.float32), _haar(kv, d, r))


@jax.jit
def _compose(U: jax.Array, sigma: jax.Array, Vt: jax.Array) -> jax.Array:
    return (U * sigma) @ Vt.T


def power_law_matrix(
    key: PRNGKeyArray, V: int, d: int, a: float, *, scale: float = 1.0
) -> Float[Array, "V d"]:
    """A ``V×d`` matrix with singular values ``σ_k = scale·k^(-a)`` and Haar singular vectors."""
    sigma = power_law_spectrum(min(check_int(V, "V", lo=1), check_int(d, "d", lo=1)), a, scale)
    return matrix_with_spectrum(key, V, d, sigma)


# ----------------------------------------------------------------------------------------------------------
# Prescribed spectra: other profiles
# ----------------------------------------------------------------------------------------------------------

#: The profiles of :func:`spectrum_profile` and the parameters each one takes (besides ``scale``).
PROFILES: dict[str, tuple[str, ...]] = {
    "power": ("a",),
    "broken_power": ("a1", "a2", "k_break"),
    "exponential": ("tau",),
    "marchenko_pastur": ("gamma",),
    "flat": (),
}

#: Grid points (in the angle θ) of the numerical Marchenko–Pastur CDF of ``spectrum_profile``.
_MP_GRID = 1 << 14


def spectrum_profile(r: int, kind: str, *, scale: float = 1.0, **params: float) -> Float[Array, " r"]:
    """A prescribed descending spectrum ``σ_1 ≥ … ≥ σ_r`` (float32), for :func:`matrix_with_spectrum`.

    Profiles (``C = scale``; every profile has ``σ_1 = C`` except ``marchenko_pastur``):

    * ``"power"`` (``a ≥ 0``): ``σ_k = C k^(−a)`` — :func:`power_law_spectrum`.
    * ``"broken_power"`` (``a1, a2 ≥ 0``, integer ``k_break ≥ 1``): ``σ_k = C k^(−a1)`` for ``k ≤ k_break``
      and ``C k_break^(−a1) (k/k_break)^(−a2)`` beyond, continuous at the break (a head and a tail with
      different exponents, as measured on pretrained embeddings).
    * ``"exponential"`` (``tau > 0``): ``σ_k = C e^(−(k−1)/τ)`` (an effectively finite-rank signal).
    * ``"marchenko_pastur"`` (``0 < gamma ≤ 1``): the classical locations of the Marchenko–Pastur law,
      ``σ_k = C √x_k`` with ``F_γ(x_k) = 1 − (k − ½)/r``, ``F_γ`` the CDF of the density
      ``ρ(x) = √((x₊ − x)(x − x₋)) / (2πγx)`` on ``x± = (1 ± √γ)²`` (Marchenko & Pastur 1967). With
      ``γ = min(V, d)/max(V, d)``, ``r = min(V, d)`` and ``C = s√max(V, d)`` these are the typical singular
      values of a ``V×d`` matrix of i.i.d. entries of variance ``s²`` — a "flat", structureless spectrum
      whose spread shrinks to nothing as ``γ → 0``. Computed by inverting the CDF, integrated by the midpoint
      rule in ``x = ½(x₊ + x₋) − ½(x₊ − x₋) cos θ`` on 2¹⁴ points (relative error < 1e-6).
    * ``"flat"``: ``σ_k = C`` (isotropic; stable rank ``r``).

    Args:
      r: number of singular values (``min(V, d)`` for :func:`matrix_with_spectrum`).
      kind: one of :data:`PROFILES`.
      scale: ``C > 0``.
      **params: the profile's parameters, by name (all required, no others accepted).
    """
    r = check_int(r, "r", lo=1)
    kind = check_choice(kind, "kind", PROFILES)
    scale = check_number(scale, "scale", lo=0.0, lo_open=True)
    wanted = PROFILES[kind]
    extra = sorted(set(params) - set(wanted))
    missing = [p for p in wanted if p not in params]
    if extra or missing:
        takes = ", ".join(wanted) if wanted else "no parameters besides scale"
        got = ", ".join(sorted(params)) or "none"
        raise TypeError(f"params: kind={kind!r} takes {takes}; got {got}")
    k = np.arange(1, r + 1, dtype=np.float64)
    if kind == "power":
        a = check_number(params["a"], "a", lo=0.0)
        sigma = k ** (-a)
    elif kind == "broken_power":
        a1 = check_number(params["a1"], "a1", lo=0.0)
        a2 = check_number(params["a2"], "a2", lo=0.0)
        kb = check_int(params["k_break"], "k_break", lo=1)
        sigma = np.where(k <= kb, k ** (-a1), float(kb) ** (-a1) * (k / kb) ** (-a2))
    elif kind == "exponential":
        tau = check_number(params["tau"], "tau", lo=0.0, lo_open=True)
        sigma = np.exp(-(k - 1.0) / tau)
    elif kind == "marchenko_pastur":
        gamma = check_number(params["gamma"], "gamma", lo=0.0, hi=1.0, lo_open=True)
        sigma = np.sqrt(_mp_classical_locations(r, gamma))
    else:
        sigma = np.ones(r)
    check_float32_range(scale * float(sigma.max()), "scale", f"σ_1 = {float(sigma.max()):.4g}·scale is float32")
    return jnp.asarray(scale * sigma, jnp.float32)


def _mp_classical_locations(r: int, gamma: float) -> Float64[np.ndarray, " r"]:
    """``x_k`` with ``F_γ(x_k) = 1 − (k − ½)/r`` for the unit-variance Marchenko–Pastur law, ``0 < γ ≤ 1``.

    In the angle θ (``x = a − b cos θ``, ``a = 1 + γ``, ``b = 2√γ``) the density element is
    ``ρ dx = b² sin²θ / (2πγ x(θ)) dθ``: smooth, so the midpoint rule on a uniform θ grid converges as h²
    (at γ = 1, ``sin²θ / x → 2`` as θ → 0 and the midpoints never touch θ = 0).
    """
    a, b = 1.0 + gamma, 2.0 * math.sqrt(gamma)
    h = math.pi / _MP_GRID
    mid = (np.arange(_MP_GRID) + 0.5) * h
    dens = b * b * np.sin(mid) ** 2 / (2.0 * math.pi * gamma * (a - b * np.cos(mid))) * h
    cdf = np.concatenate([[0.0], np.cumsum(dens)])
    cdf /= cdf[-1]  # removes the O(h²) quadrature error of the total mass
    theta = np.interp(1.0 - (np.arange(1, r + 1) - 0.5) / r, cdf, np.linspace(0.0, math.pi, _MP_GRID + 1))
    return a - b * np.cos(theta)


# ----------------------------------------------------------------------------------------------------------
# Lemma 3.1: rows √p̂_k · e_k
# ----------------------------------------------------------------------------------------------------------

#: Token-direction frames of :func:`lemma31_embedding`.
DIRECTIONS = ("head_orthonormal", "random")


def _check_weights(x: Any, name: str) -> Float64[np.ndarray, " V"]:
    """A 1-D array of counts or probabilities (integer or real, finite, ≥ 0, positive total), normalised."""
    w = check_nonnegative_array(x, name, ndim=1, what="counts or probabilities")
    total = w.sum()
    if not total > 0:
        raise ValueError(f"{name}: expected a positive total, got an all-zero array of {w.size} entries")
    return w / total


def lemma31_embedding(
    key: PRNGKeyArray,
    counts_or_pmf: Float[Array, " V"],
    d: int,
    *,
    directions: str = "head_orthonormal",
    noise_std: float = 0.0,
) -> Float[Array, "V d"]:
    """The embedding of Lemma 3.1 of Huang et al. (2026, arXiv 2602.00969): row ``k`` is ``√p̂_k · e_k``.

        W_k = √p̂_k · e_k + ν ξ_k,      p̂_k = c_k / Σ_j c_j,      |e_k| = 1,      ξ_k ~ N(0, I_d),

    so that ``WᵀW = Σ_k p̂_k e_k e_kᵀ`` (for ν = 0) is the second-moment matrix of the embedding of a token
    drawn from ``p̂``. Were the ``e_k`` orthonormal, its eigenvalues would be exactly the ``p̂_k`` and
    ``σ_(k) = √p̂_(k)``: with Zipfian ``p_k ∝ k^(−s)``, ``σ_k ∝ k^(−s/2)`` — the lemma (as given by secondary
    notes; the paper's statement is not public in full). With counts from a finite corpus, ``p̂`` carries the
    sampling noise of the corpus (relative error ``≈ 1/√c_k`` at each rank).

    Directions (``directions``):

    * ``"head_orthonormal"`` (default): the ``m = min(V, d)`` most frequent tokens get the rows of one
      Haar-random orthonormal frame of ``R^d`` (exactly orthogonal); the other ``V − m`` get i.i.d. uniform
      unit vectors. With ``V ≤ d`` every token is in the frame and ``σ_(k) = √p̂_(k)`` exactly.
    * ``"random"``: every ``e_k`` i.i.d. uniform on the sphere — the lemma's literal "near-orthogonal"
      setting, ``⟨e_j, e_k⟩ ≈ N(0, 1/d)``.

    **What V > d does.** ``V`` unit vectors cannot be orthogonal in ``R^d``: the mass of the tokens without
    their own direction spreads almost isotropically and lifts every eigenvalue by a floor,
    ``σ_k² ≈ p̂_(k) + τ_k`` with ``τ_k = (1/d) Σ_{j > max(k, h)} p̂_(j)``, ``h = d`` for ``head_orthonormal``
    and ``h = 0`` for ``random`` (:func:`lemma31_spectrum`). The ``k^(−s/2)`` law therefore holds only for the
    leading ranks, where ``p̂_(k) ≫ τ_k``; past them the spectrum flattens. Measured at V = 5000, d = 512, 10⁶
    Zipf tokens: the exponent over ranks ``[2, k_head]`` (``p̂_(k) ≥ 10 τ``) is within 0.023 of ``s/2`` for
    ``s`` = 0.8, 1.0, 1.2, while over ``[2, d/4]`` it is 0.29, 0.42, 0.55 (``s/2`` = 0.4, 0.5, 0.6).

    Args:
      key: PRNG key (directions and noise).
      counts_or_pmf: token counts or probabilities, shape (V,), normalised here; row ``k`` of ``W`` is token
        ``k`` (any order; the frequency ranking is taken from these weights).
      d: embedding dimension.
      directions: ``"head_orthonormal"`` or ``"random"``.
      noise_std: ν ≥ 0, the standard deviation of isotropic Gaussian noise added to every entry.

    Returns:
      ``W``, ``V×d`` float32.
    """
    p = _check_weights(counts_or_pmf, "counts_or_pmf")
    d = check_int(d, "d", lo=1)
    directions = check_choice(directions, "directions", DIRECTIONS)
    noise_std = check_number(noise_std, "noise_std", lo=0.0)
    V = p.size
    n_orth = min(V, d) if directions == "head_orthonormal" else 0
    head = np.argsort(-p, kind="stable")[:n_orth].astype(np.int32)
    return _lemma31_kernel(
        check_key(key),
        jnp.asarray(np.sqrt(p), jnp.float32),
        jnp.asarray(head),
        jnp.float32(noise_std),
        d=d,
        noisy=noise_std > 0,
    )


@partial(jax.jit, static_argnames=("d", "noisy"))
def _lemma31_kernel(
    key: PRNGKeyArray,
    sqrt_p: Float[Array, " V"],
    head: Int32[Array, " m"],
    noise_std: Float[Array, ""],
    *,
    d: int,
    noisy: bool,
) -> Float[Array, "V d"]:
    k_dir, k_frame, k_noise = jax.random.split(key, 3)
    V = sqrt_p.shape[0]
    E = jax.random.normal(k_dir, (V, d), jnp.float32)
    E = E / jnp.linalg.norm(E, axis=1, keepdims=True)
    if head.shape[0]:
        E = E.at[head].set(_haar(k_frame, d, head.shape[0]).T)
    W = sqrt_p[:, None] * E
    if noisy:
        W = W + noise_std * jax.random.normal(k_noise, (V, d), jnp.float32)
    return W


class Lemma31Spectrum(NamedTuple):
    """Predicted singular values of :func:`lemma31_embedding` (see :func:`lemma31_spectrum`)."""

    sigma: Float64[np.ndarray, " r"]
    """``√(p̂_(k) + floor_k)``, k = 1..r, r = min(V, d): the prediction, floor included."""
    sigma_lemma: Float64[np.ndarray, " r"]
    """``√p̂_(k)``: the lemma's idealisation (orthonormal directions, no noise)."""
    floor: Float64[np.ndarray, " r"]
    """``τ_k + max(V, d)·ν²``: what the non-orthogonal directions and the noise add to ``σ_k²``."""
    k_head: int
    """Largest k with ``p̂_(j) ≥ head_ratio · floor_j`` for every ``j ≤ k``: where ``σ_k ≈ √p̂_(k)``."""


def lemma31_spectrum(
    counts_or_pmf: Float[Array, " V"],
    d: int,
    *,
    directions: str = "head_orthonormal",
    noise_std: float = 0.0,
    head_ratio: float = 10.0,
) -> Lemma31Spectrum:
    """The spectrum :func:`lemma31_embedding` should have, and the leading ranks where Lemma 3.1 holds.

    With ``p̂_(1) ≥ p̂_(2) ≥ …`` the sorted frequencies,

        σ_k² ≈ p̂_(k) + τ_k + max(V, d) ν²,      τ_k = (1/d) Σ_{j > max(k, h)} p̂_(j),

    ``h = d`` for ``"head_orthonormal"`` (the tokens outside the orthonormal frame), ``h = 0`` for ``"random"``
    (every less frequent token). Reasoning: the tokens without a direction of their own have random
    directions, so their mass adds ``≈ mass/d`` along any fixed direction; a spike ``p̂_(k)`` well above that
    floor sits on top of it. The noise term is the mean of the Marchenko–Pastur bulk of the noise (its edge is
    ``ν(√V + √d)``); first order, for spikes far above the bulk. Measured at V = 5000, d = 512, 10⁶ Zipf tokens
    (s ∈ [0.8, 1.2]): σ_k is within 0.4% (``head_orthonormal``) or 2.3% (``random``) of the prediction up to
    ``k_head``, and within 5% or 6% up to d/4 (where the spread of the floor's own eigenvalues starts to
    show). With ``V ≤ d``, ``"head_orthonormal"`` and ν = 0 the floor is 0 and the prediction exact.

    ``k_head`` bounds the window of the ``k^(−s/2)`` law: the local log-slope of ``√(p + τ)`` is
    ``(s/2)·p/(p + τ)``, at least ``(s/2)·ρ/(1 + ρ)`` where ``p ≥ ρτ`` (ρ = ``head_ratio``).

    Args:
      counts_or_pmf: token counts or probabilities, shape (V,).
      d: embedding dimension.
      directions: as :func:`lemma31_embedding`.
      noise_std: ν ≥ 0, as :func:`lemma31_embedding`.
      head_ratio: ρ > 0 defining ``k_head``.

    Returns:
      A :class:`Lemma31Spectrum` (float64 NumPy arrays of length ``min(V, d)``).
    """
    p = np.sort(_check_weights(counts_or_pmf, "counts_or_pmf"))[::-1]
    d = check_int(d, "d", lo=1)
    directions = check_choice(directions, "directions", DIRECTIONS)
    noise_std = check_number(noise_std, "noise_std", lo=0.0)
    head_ratio = check_number(head_ratio, "head_ratio", lo=0.0, lo_open=True)
    V = p.size
    r = min(V, d)
    tail = np.concatenate([np.cumsum(p[::-1])[::-1][1:], [0.0]])  # tail[k-1] = Σ_{j>k} p_(j)
    if directions == "head_orthonormal":
        tau = np.full(r, tail[r - 1] / d)
    else:
        tau = tail[:r] / d
    floor = tau + max(V, d) * noise_std**2
    head = (p[:r] > 0) & (p[:r] >= head_ratio * floor)
    k_head = r if head.all() else int(np.argmin(head))
    return Lemma31Spectrum(np.sqrt(p[:r] + floor), np.sqrt(p[:r]), floor, k_head)


# ----------------------------------------------------------------------------------------------------------
# PPMI and its truncated SVD
# ----------------------------------------------------------------------------------------------------------

#: Solvers of :func:`ppmi_svd_embedding`.
SVD_SOLVERS = ("auto", "arpack", "dense")


def _check_cooc(cooc: Any) -> scipy.sparse.csr_array | np.ndarray:
    """Non-negative finite 2-D counts with a positive total, as float64 CSR (sparse input) or ndarray."""
    if not scipy.sparse.issparse(cooc):
        A = check_nonnegative_array(cooc, "cooc", ndim=2, what="co-occurrence counts")
        vals = A.ravel()
    else:
        if cooc.ndim != 2:
            raise ValueError(f"cooc: expected a 2-D co-occurrence matrix, got a sparse array of shape {cooc.shape}")
        A = scipy.sparse.csr_array(cooc, dtype=np.float64)
        A.sum_duplicates()
        vals = A.data
        if 0 in A.shape:
            raise ValueError(f"cooc: expected a non-empty matrix, got shape {A.shape}")
        if not np.isfinite(vals).all():
            raise ValueError(f"cooc: expected finite counts, got {int((~np.isfinite(vals)).sum())} NaN or Inf entries")
        if (vals < 0).any():
            raise ValueError(f"cooc: expected non-negative counts, got {int((vals < 0).sum())} negative entries")
    if not vals.sum() > 0:
        raise ValueError(f"cooc: expected a positive total count, got an all-zero matrix of shape {A.shape}")
    return A


def ppmi(
    cooc: scipy.sparse.sparray | np.ndarray, *, shift: float = 1.0, alpha: float = 0.75
) -> scipy.sparse.csr_array | np.ndarray:
    """Shifted positive pointwise mutual information of a co-occurrence matrix (float64).

        PMI_ij = ln[ P(i, j) / (P(i) · P_α(j)) ] = ln[ C_ij · Σ_l c_l^α / (r_i · c_j^α) ],
        SPPMI_ij = max(PMI_ij − ln k, 0),

    with ``r_i = Σ_j C_ij`` (word counts), ``c_j = Σ_i C_ij`` (context counts), ``P(i, j) = C_ij/N``,
    ``P(i) = r_i/N`` and the smoothed context law ``P_α(j) = c_j^α / Σ_l c_l^α``. At ``α = 1`` this is the
    classical ``ln(C_ij N / (r_i c_j))``; ``α = 0.75`` ("context distribution smoothing", Levy, Goldberg &
    Dagan 2015) raises the probability of rare contexts and so damps PMI's bias towards them; ``k`` = ``shift``
    (the number of negative samples of SGNS, whose optimum is PMI − ln k; Levy & Goldberg 2014) and ``k = 1``
    gives plain PPMI. Entries with ``C_ij = 0`` (PMI = −∞) are 0. The smoothing acts on contexts only, so a
    symmetric ``C`` gives a non-symmetric PPMI when ``α ≠ 1``.

    Args:
      cooc: ``V×V_c`` counts (words × contexts), a SciPy sparse matrix/array or a dense array — e.g.
        :func:`zipfrmt.corpus.cooccurrence`.
      shift: ``k > 0``.
      alpha: ``α > 0``.

    Returns:
      A ``scipy.sparse.csr_array`` (sparse input; only entries > 0 are stored) or a dense ``np.ndarray``.
    """
    A = _check_cooc(cooc)
    shift = check_number(shift, "shift", lo=0.0, lo_open=True)
    alpha = check_number(alpha, "alpha", lo=0.0, lo_open=True)
    rows = np.asarray(A.sum(axis=1)).ravel()
    cols = np.asarray(A.sum(axis=0)).ravel()
    with np.errstate(divide="ignore"):
        log_r, log_c = np.log(rows), np.log(cols)
    log_z = math.log(float(np.sum(cols[cols > 0] ** alpha)))
    offset = log_z - math.log(shift)
    if scipy.sparse.issparse(A):
        coo = A.tocoo()
        keep = coo.data > 0
        i, j, v = coo.row[keep], coo.col[keep], coo.data[keep]
        val = np.log(v) - log_r[i] - alpha * log_c[j] + offset
        pos = val > 0
        return scipy.sparse.csr_array((val[pos], (i[pos], j[pos])), shape=A.shape)
    out = np.zeros_like(A)
    i, j = np.nonzero(A)
    out[i, j] = np.maximum(np.log(A[i, j]) - log_r[i] - alpha * log_c[j] + offset, 0.0)
    return out


class PPMIEmbedding(NamedTuple):
    """Rank-d embedding from the truncated SVD of a PPMI matrix (see :func:`ppmi_svd_embedding`)."""

    embedding: Float[np.ndarray, "V d"]
    """``W = U_d Σ_d^p`` (float32), rows = tokens; its singular values are ``σ_k^p``."""
    singular_values: Float64[np.ndarray, " d"]
    """``σ_1 ≥ … ≥ σ_d`` of the PPMI matrix itself (float64)."""
    weight: float
    """The exponent ``p``."""


def ppmi_svd_embedding(
    cooc: scipy.sparse.sparray | np.ndarray,
    d: int,
    *,
    shift: float = 1.0,
    alpha: float = 0.75,
    weight: float = 0.5,
    solver: str = "auto",
) -> PPMIEmbedding:
    """Word embeddings from the rank-d truncated SVD of the (shifted) PPMI matrix.

        M = SPPMI(C) ≈ U_d Σ_d V_dᵀ,      W = U_d Σ_d^p,

    ``p = weight``: ``p = 1`` is the plain truncated factor, ``p = 0.5`` (default) the symmetric split
    ``W = U_d Σ_d^½`` that Levy, Goldberg & Dagan (2015) found better on word-similarity tasks, ``p = 0`` the
    bare singular vectors. The rank-decay exponent of ``W`` is ``p`` times that of ``M``. Signs are fixed so
    that the largest-magnitude entry of each column of ``U_d`` is positive (deterministic output).

    Solvers: ``"arpack"`` — ``scipy.sparse.linalg.svds`` (ARPACK, Lanczos on the Gram operator; never forms
    a dense matrix; needs ``d < min(V, V_c)``; started from a fixed seeded vector, so deterministic);
    ``"dense"`` — LAPACK ``gesdd`` on the dense float64 matrix (O(V·V_c·min(V, V_c))); ``"auto"`` — ``dense``
    when ``min(V, V_c) ≤ 512`` or ``d ≥ min(V, V_c)/4``, else ``arpack``.

    Args:
      cooc: ``V×V_c`` co-occurrence counts (sparse or dense), as :func:`ppmi`.
      d: embedding dimension, ``1 ≤ d ≤ min(V, V_c)``.
      shift, alpha: as :func:`ppmi`.
      weight: ``p ≥ 0``.
      solver: ``"auto"``, ``"arpack"`` or ``"dense"``.

    Returns:
      A :class:`PPMIEmbedding`: the ``V×d`` float32 embedding and the top-d singular values of the PPMI
      matrix.
    """
    M = ppmi(cooc, shift=shift, alpha=alpha)
    n = min(M.shape)
    d = check_int(d, "d", lo=1, hi=n)
    weight = check_number(weight, "weight", lo=0.0)
    solver = check_choice(solver, "solver", SVD_SOLVERS)
    if solver == "auto":
        solver = "dense" if n <= 512 or 4 * d >= n else "arpack"
    if (M.nnz if scipy.sparse.issparse(M) else np.count_nonzero(M)) == 0:  # every PMI ≤ ln k: nothing to factor
        return PPMIEmbedding(np.zeros((M.shape[0], d), np.float32), np.zeros(d), weight)
    if solver == "arpack":
        if d >= n:
            raise ValueError(f"d: solver='arpack' needs d < min(V, V_c) = {n}, got {d}; use solver='dense'")
        v0 = np.random.default_rng(0).standard_normal(n)
        U, s, _ = scipy.sparse.linalg.svds(scipy.sparse.csr_array(M), k=d, v0=v0)
    else:
        dense = M.toarray() if scipy.sparse.issparse(M) else M
        U, s, _ = scipy.linalg.svd(dense, full_matrices=False, check_finite=False, lapack_driver="gesdd")
    order = np.argsort(-s, kind="stable")[:d]
    U, s = U[:, order], np.maximum(s[order], 0.0)
    flip = np.sign(U[np.argmax(np.abs(U), axis=0), np.arange(d)])
    U = U * np.where(flip == 0, 1.0, flip)
    return PPMIEmbedding((U * s**weight).astype(np.float32), s, weight)
