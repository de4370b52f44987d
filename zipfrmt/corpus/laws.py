"""The Zipf and Zipf–Mandelbrot laws over ranks 1..V: pmf, cdf, normaliser, entropy (float64 on the host)."""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Float64

from zipfrmt.corpus.checks import as_jax, check_dtype, check_law

#: Ranks summed per block when computing a normaliser (bounds memory for very large V).
_SUM_BLOCK = 1 << 22

__all__ = ["pmf64", "zipf_cdf", "zipf_entropy", "zipf_normalizer", "zipf_pmf"]

def _weights64(V: int, s: float, q: float, start: int = 1) -> Float64[np.ndarray, " n"]:
    """(k + q)^(−s) for k = start .. V, float64."""
    return np.power(np.arange(start, V + 1, dtype=np.float64) + q, -s)


def _normalizer64(V: int, s: float, q: float) -> float:
    # Direct summation in float64, in blocks: np.sum is pairwise inside a block (relative error ~ ε·log n) and
    # the few block sums are added exactly with math.fsum.
    parts = [
        float(np.sum(_weights64(min(lo + _SUM_BLOCK - 1, V), s, q, start=lo)))
        for lo in range(1, V + 1, _SUM_BLOCK)
    ]
    return math.fsum(parts)


def pmf64(V: int, s: float, q: float) -> Float64[np.ndarray, " V"]:
    w = _weights64(V, s, q)
    return w / _normalizer64(V, s, q)


def zipf_normalizer(V: int, s: float, q: float = 0.0) -> float:
    """The generalised harmonic number ``H_{V,s,q} = Σ_{k=1}^{V} (k + q)^(−s)``, in float64.

    Summed directly in float64 (pairwise within blocks of 2^22 ranks, blocks added with ``math.fsum``), so
    the relative error stays ~1e-15 for V = 10^7 and beyond. Identity for checking:
    ``H = ζ(s, 1+q) − ζ(s, V+1+q)`` (Hurwitz zeta, s ≠ 1) and ``H = ψ(V+1+q) − ψ(1+q)`` at s = 1.

    Args:
      V: number of ranks (≥ 2).
      s: exponent (> 0).
      q: Mandelbrot offset (> −1); 0 for plain Zipf.
    """
    V, s, q = check_law(V, s, q)
    return _normalizer64(V, s, q)


def zipf_pmf(V: int, s: float, q: float = 0.0, *, dtype: Any = jnp.float32) -> Float[Array, " V"]:
    """Zipf–Mandelbrot probabilities ``p_k = (k + q)^(−s) / H_{V,s,q}`` for ranks k = 1..V (entry k−1).

    Computed in float64 and cast to ``dtype`` (float32 by default; float64 returns a float64 JAX array).
    """
    V, s, q = check_law(V, s, q)
    return as_jax(pmf64(V, s, q), check_dtype(dtype))


def zipf_cdf(V: int, s: float, q: float = 0.0, *, dtype: Any = jnp.float32) -> Float[Array, " V"]:
    """Cumulative probabilities ``F_k = Σ_{j≤k} p_j`` (entry k−1), with ``F_V = 1`` exactly.

    Accumulated in float64. In float32 the tail saturates: increments below ~6e-8 vanish near 1, so a
    float32 CDF cannot resolve the rare ranks of a large vocabulary — ask for ``dtype=jnp.float64`` when the
    tail matters (the samplers here do not use the CDF).
    """
    V, s, q = check_law(V, s, q)
    c = np.cumsum(_weights64(V, s, q))
    return as_jax(c / c[-1], check_dtype(dtype))


def zipf_entropy(V: int, s: float, q: float = 0.0) -> float:
    """Shannon entropy in nats, ``H(p) = −Σ p_k ln p_k = s·Σ p_k ln(k + q) + ln H_{V,s,q}``, in float64."""
    V, s, q = check_law(V, s, q)
    Z = _normalizer64(V, s, q)
    total = 0.0
    for lo in range(1, V + 1, _SUM_BLOCK):
        k = np.arange(lo, min(lo + _SUM_BLOCK - 1, V) + 1, dtype=np.float64) + q
        total += float(np.sum(np.power(k, -s) * np.log(k)))
    return s * total / Z + math.log(Z)


