"""Counts, rank–frequency, co-occurrence, and Zipf-exponent fits of token streams."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse
from jaxtyping import Array, Float, Float64, Int, Int64

from zipfrmt.checks import (
    check_choice,
    check_int,
    check_nonnegative_array,
    describe,
)
from zipfrmt.corpus.checks import check_tokens

__all__ = ["RankFrequency", "ZipfFit", "cooccurrence", "fit_zipf", "rank_frequency", "token_counts"]


class RankFrequency(NamedTuple):
    """Counts sorted in descending order with their ranks (ties keep id order; zero counts included)."""

    ranks: Int64[np.ndarray, " V"]
    """1, 2, …, V."""
    counts: Int64[np.ndarray, " V"] | Float64[np.ndarray, " V"]
    """The counts in descending order (int64 for integer input, float64 otherwise)."""
    frequencies: Float64[np.ndarray, " V"]
    """``counts / counts.sum()``."""
    ids: Int64[np.ndarray, " V"]
    """The id (index into the input) at each rank."""


def token_counts(tokens: Int[Array, " N"], V: int) -> Int64[np.ndarray, " V"]:
    """``counts[i] = #{t : x_t = i}`` for ids ``0..V−1`` (``np.bincount``, int64, on the host)."""
    V = check_int(V, "V", lo=1)
    return np.bincount(check_tokens(tokens, V), minlength=V).astype(np.int64)


def _check_counts(counts: Any, name: str = "counts") -> Float64[np.ndarray, " V"]:
    c = check_nonnegative_array(counts, name, ndim=1, what="counts")
    if c.size < 2:
        raise ValueError(f"{name}: expected at least 2 counts (ranks), got {c.size}")
    return c


def rank_frequency(counts: Int[Array, " V"]) -> RankFrequency:
    """Rank–frequency table: counts sorted descending (stable, so ties keep id order), ranks 1..V."""
    c = _check_counts(counts)
    order = np.argsort(-c, kind="stable")
    raw = np.asarray(counts)
    sorted_counts = raw[order].astype(np.int64) if np.issubdtype(raw.dtype, np.integer) else c[order]
    total = c.sum()
    freq = c[order] / total if total > 0 else np.zeros_like(c)
    ranks = np.arange(1, c.size + 1, dtype=np.int64)
    return RankFrequency(ranks, sorted_counts, freq, order.astype(np.int64))


def cooccurrence(
    tokens: Int[Array, " N"],
    V: int,
    window: int = 5,
    *,
    symmetric: bool = True,
    weighting: str = "uniform",
    dense: bool = False,
    chunk_size: int = 1 << 20,
) -> scipy.sparse.csr_array | np.ndarray:
    """Windowed co-occurrence counts of a token stream, as a sparse V×V matrix.

    With ``w(d) = 1`` (``weighting="uniform"``) or ``w(d) = 1/d`` (``"harmonic"``, GloVe's distance weighting,
    Pennington et al. 2014), the directed counts are

        C_ij = Σ_{d=1}^{window} w(d) · #{t : x_t = i, x_{t+d} = j}     (j follows i at distance d),

    and ``symmetric=True`` (the default, as in GloVe) returns ``C + Cᵀ``: every pair within the window is
    counted once from each side, so a pair of equal tokens adds 2 to the diagonal and the total is
    ``2·Σ_d w(d)(N − d)``. Pairs never cross the ends of the stream (concatenate documents yourself, or count
    them separately and add).

    Memory: pairs are accumulated in blocks of ``chunk_size`` positions as COO triplets, summed into CSR
    (O(pairs in a block + nnz + V)); no V×V array is built unless ``dense=True``. Counts are int64 for uniform
    weighting and float64 for harmonic weighting.

    Returns:
      ``scipy.sparse.csr_array`` of shape (V, V), or a dense ``np.ndarray`` if ``dense=True``.
    """
    V = check_int(V, "V", lo=1)
    x = check_tokens(tokens, V).astype(np.int64)
    window = check_int(window, "window", lo=1)
    weighting = check_choice(weighting, "weighting", ("uniform", "harmonic"))
    chunk_size = check_int(chunk_size, "chunk_size", lo=1)
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric: expected a bool, got {describe(symmetric)}")
    if not isinstance(dense, bool):
        raise TypeError(f"dense: expected a bool, got {describe(dense)}")
    dtype = np.int64 if weighting == "uniform" else np.float64
    N = x.size
    C = scipy.sparse.csr_array((V, V), dtype=dtype)
    for start in range(0, max(N - 1, 0), chunk_size):
        rows, cols, vals = [], [], []
        for d in range(1, min(window, N - 1) + 1):
            stop = min(start + chunk_size, N - d)
            if stop <= start:
                continue
            rows.append(x[start:stop])
            cols.append(x[start + d : stop + d])
            w = 1 if weighting == "uniform" else 1.0 / d
            vals.append(np.full(stop - start, w, dtype=dtype))
        if rows:
            block = scipy.sparse.coo_array(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(V, V)
            ).tocsr()
            C = C + block
    if symmetric:
        C = (C + C.T).tocsr()
    C.sum_duplicates()
    return C.toarray() if dense else C


# ----------------------------------------------------------------------------------------------------------
# Zipf-exponent fits
# ----------------------------------------------------------------------------------------------------------


class ZipfFit(NamedTuple):
    """Maximum-likelihood fit of a truncated Zipf law over a rank window (see :func:`fit_zipf`)."""

    s: float
    """The MLE of the exponent."""
    stderr: float
    """``1 / sqrt(N · Var_ŝ[ln k])``, from the Fisher information at the MLE."""
    ks: float
    """Kolmogorov–Smirnov distance between the empirical and fitted rank CDFs over the window."""
    log_likelihood: float
    """``−ŝ Σ n_k ln k − N ln Σ_{k=k_min}^{k_max} k^(−ŝ)``."""
    k_min: int
    k_max: int
    n_tokens: float
    """N, the total count inside the window."""


def _log_moments(s: float, lk: np.ndarray) -> tuple[float, float, float]:
    """(ln Σ e^{−s(l − l_0)}, E_s[l], Var_s[l]) for l = ln k over the window, weights ∝ k^(−s)."""
    w = np.exp(-s * (lk - lk[0]))
    Z = float(w.sum())
    m1 = float(np.sum(w * lk)) / Z
    var = float(np.sum(w * (lk - m1) ** 2)) / Z
    return math.log(Z), m1, var


def fit_zipf(counts: Float[Array, " V"], *, k_min: int = 1, k_max: int | None = None) -> ZipfFit:
    """The Zipf exponent of a corpus: MLE of ``s`` for the truncated Zipf law over a rank window.

    The counts (any order; length V = number of types, zeros allowed) are sorted descending, giving ``n_k`` at
    rank k. Over the window ``k_min ≤ k ≤ k_max`` (default: all ranks 1..V) the model is
    ``P(k) = k^(−s) / Σ_{j=k_min}^{k_max} j^(−s)``, with log-likelihood (N = Σ_window n_k)

        L(s) = −s Σ_k n_k ln k − N ln Σ_{j=k_min}^{k_max} j^(−s).

    ``L`` is concave; its maximiser solves ``E_s[ln k] = (1/N) Σ_k n_k ln k`` (the model's mean log-rank
    equals the data's), found by safeguarded Newton iteration in float64 (``dE_s[ln k]/ds = −Var_s[ln k]``).
    For rank-sorted counts the root is ≥ 0 (0 when all counts in the window are equal). Ranks with zero counts
    inside the window stay in the law: they are part of the truncated support.

    The windowed variant (``k_min > 1`` and/or ``k_max < V``) fits the same law restricted to ranks
    ``k_min..k_max``, e.g. to drop the head (which Zipf–Mandelbrot bends) or the noisy singleton tail; ranks
    keep their global values. Standard error: ``1/sqrt(N · Var_ŝ[ln k])`` (observed = expected Fisher
    information, an exponential family in s); it assumes independent tokens. Goodness of fit: the KS distance
    between the empirical CDF over ranks in the window and the fitted one.

    References: the discrete power-law MLE of Clauset, Shalizi & Newman (2009, §3), here with the support
    truncated to the ranks observed; used for Zipf's law by e.g. Piantadosi (2014).
    """
    c = _check_counts(counts)
    V = c.size
    k_min = check_int(k_min, "k_min", lo=1, hi=V - 1)
    k_max = V if k_max is None else check_int(k_max, "k_max", lo=k_min + 1, hi=V)
    n = np.sort(c)[::-1][k_min - 1 : k_max]
    N = float(n.sum())
    if N <= 0:
        raise ValueError(f"counts: expected a positive total in the rank window [{k_min}, {k_max}], got 0")
    lk = np.log(np.arange(k_min, k_max + 1, dtype=np.float64))
    target = float(np.sum(n * lk)) / N
    if target - lk[0] <= 1e-15 * max(1.0, lk[0]):
        raise ValueError(
            f"counts: all {N:g} tokens in the rank window [{k_min}, {k_max}] fall on rank {k_min}; "
            f"the MLE of s diverges"
        )

    def g(s: float) -> tuple[float, float]:
        _, m1, var = _log_moments(s, lk)
        return m1 - target, var

    lo, hi = 0.0, 1.0
    g_lo, _ = g(lo)
    if g_lo <= 1e-13 * max(1.0, target):  # all counts in the window equal (up to round-off): s = 0
        s_hat = 0.0
    else:
        while g(hi)[0] > 0:
            lo, hi = hi, 2.0 * hi
            if hi > 1e4:
                raise ValueError(f"counts: the MLE of s exceeds 1e4 in the rank window [{k_min}, {k_max}]")
        s_hat = 0.5 * (lo + hi)
        for _ in range(200):
            val, var = g(s_hat)
            if val > 0:
                lo = s_hat
            else:
                hi = s_hat
            step = val / var if var > 0 else 0.0
            new = s_hat + step
            if not (lo < new < hi):
                new = 0.5 * (lo + hi)
            if abs(new - s_hat) <= 1e-14 * max(1.0, s_hat) or hi - lo <= 1e-14 * max(1.0, hi):
                s_hat = new
                break
            s_hat = new
    log_z, _, var = _log_moments(s_hat, lk)
    log_z_full = log_z - s_hat * lk[0]
    p = np.exp(-s_hat * lk - log_z_full)
    ks = float(np.max(np.abs(np.cumsum(n) / N - np.cumsum(p))))
    stderr = 1.0 / math.sqrt(N * var) if var > 0 else math.inf
    log_lik = float(-s_hat * N * target - N * log_z_full)
    return ZipfFit(float(s_hat), stderr, ks, log_lik, k_min, k_max, N)


