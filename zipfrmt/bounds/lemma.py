"""P1 — Zipf's law ⇒ a power-law spectrum (Lemma 3.1 of arXiv 2602.00969): the construction and its check."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from zipfrmt import corpus, embeddings, spectra
from zipfrmt.bounds.measure import f64, rel_error
from zipfrmt.checks import check_float_array, check_int, check_key, check_number, describe

__all__ = ["ZipfExponentCheck", "lemma_embedding", "zipf_rank_exponent"]

# ---------------------------------------------------------------------------------------------------------
# P1 — Zipf ⇒ power-law spectrum (Lemma 3.1)
# ---------------------------------------------------------------------------------------------------------


def lemma_embedding(key: PRNGKeyArray, V: int, d: int, s: float) -> Float[Array, "V d"]:
    """The Lemma 3.1 construction: row k is ``√p_k · e_k``, ``p_k = k^(−s)/H_{V,s}`` (Zipf over V ranks).

    For ``V ≤ d`` the token directions ``e_k`` are Haar-orthonormal (rows of a Haar ``d×V`` frame), so
    ``WᵀW = Σ_k p_k e_k e_kᵀ`` has eigenvalues exactly ``p_k`` and ``σ_k = √p_k ∝ k^(−s/2)`` (no limit
    needed). For ``V > d`` orthonormality is impossible; the ``e_k`` are independent uniform unit vectors
    (near-orthogonal: ``|⟨e_j, e_k⟩| ~ d^(−1/2)``), the regime in which the lemma is an approximation for the
    leading ranks.
    """
    key = check_key(key)
    V = check_int(V, "V", lo=2)
    d = check_int(d, "d", lo=1)
    s = check_number(s, "s", lo=0.0, lo_open=True)
    p = corpus.zipf_pmf(V, s)
    if V <= d:
        directions = embeddings.haar_orthonormal(key, d, V).T
    else:
        directions = _unit_rows(key, V, d)
    return jnp.sqrt(p)[:, None] * directions


@partial(jax.jit, static_argnums=(1, 2))
def _unit_rows(key: PRNGKeyArray, V: int, d: int) -> Float[Array, "V d"]:
    G = jax.random.normal(key, (V, d), jnp.float32)
    return G / jnp.linalg.norm(G, axis=1, keepdims=True)


@dataclasses.dataclass(frozen=True)
class ZipfExponentCheck:
    """P1: the rank-decay exponent predicted from a Zipf exponent, and measured on a spectrum.

    Attributes:
      s: the Zipf exponent of the token probabilities.
      predicted: ``s/2``.
      measured: the least-squares rank-decay exponent of the given spectrum over ``window`` (None if no
        spectrum was given).
      window: the rank window ``(k_lo, k_hi)`` of the fit actually used (None without a spectrum).
      r2: the fit's coefficient of determination.
      rel_error: ``(predicted − measured)/measured``.
    """

    proposition: ClassVar[str] = "P1"
    kind: ClassVar[str] = "asymptotic"
    s: float
    predicted: float
    measured: float | None = None
    window: tuple[int, int] | None = None
    r2: float | None = None
    rel_error: float | None = None


def zipf_rank_exponent(
    s: float, sigma: Float[Array, " r"] | np.ndarray | None = None, *, window: tuple[int, int] | None = None
) -> ZipfExponentCheck:
    """P1 (Lemma 3.1 of arXiv 2602.00969) — *asymptotic*.

    Assumptions: token probabilities ``p_k ∝ k^(−s)`` (Zipf), embedding rows ``√p_k e_k`` with near-orthogonal
    unit directions ``e_k``. Claim: ``WᵀW = Σ_k p_k e_k e_kᵀ`` has eigenvalues ``λ_k ≈ p_k`` at the leading
    ranks, hence ``σ_k = √λ_k ∝ k^(−s/2)``: rank-decay exponent ``a = s/2``. Exact when the e_k are orthonormal
    (``V ≤ d``, :func:`lemma_embedding`); for ``V > d`` the ranks beyond d fold onto the leading ones and the
    statement holds only where ``p_k`` dominates the folded mass ``≈ Σ_{j>d} p_j / d`` (fast decay, s > 1, or
    the very first ranks).

    Args:
      s: Zipf exponent (> 0).
      sigma: a measured spectrum (descending) to compare with, e.g. of :func:`lemma_embedding`.
      window: the rank window of the fit; default ``(1, max(2, r // 8))``, the leading ranks.
    """
    s = check_number(s, "s", lo=0.0, lo_open=True)
    pred = s / 2.0
    if sigma is None:
        return ZipfExponentCheck(s, pred)
    sig = f64(check_float_array(sigma, "sigma", ndim=1))
    r = sig.size
    if r < 2:
        raise ValueError(f"sigma: expected at least 2 singular values for a rank-decay fit, got {r}")
    if np.any(sig < 0) or np.any(np.diff(sig) > 0):
        raise ValueError("sigma: expected a measured spectrum, non-negative and descending, got "
                         f"{int(np.sum(sig < 0))} negative values and {int(np.sum(np.diff(sig) > 0))} ascending steps")
    if window is None:
        k_lo, k_hi = 1, max(2, r // 8)
    elif not isinstance(window, tuple) or len(window) != 2:
        raise TypeError(f"window: expected a tuple (k_lo, k_hi) of ranks, got {describe(window)}")
    else:
        k_lo = check_int(window[0], "window[0]", lo=1, hi=r - 1)
        k_hi = check_int(window[1], "window[1]", lo=k_lo + 1, hi=r)
    fit = spectra.rank_decay_exponent(sig, k_lo, k_hi)
    return ZipfExponentCheck(s, pred, fit.a, (fit.k_lo, fit.k_hi), fit.r2, rel_error(pred, fit.a))


