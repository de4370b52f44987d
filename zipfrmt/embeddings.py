"""Embedding matrices: prescribed spectra (the controlled input of the noise-floor experiments).

Conventions: an embedding is ``V×d`` with rows = tokens.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from zipfrmt._validate import check_float_array, check_int, check_number

__all__ = ["haar_orthonormal", "power_law_spectrum", "matrix_with_spectrum", "power_law_matrix"]


def haar_orthonormal(key: PRNGKeyArray, n: int, k: int) -> Float[Array, "n k"]:
    """``n×k`` matrix with orthonormal columns, Haar-distributed (Mezzadri 2007).

    QR of a standard Gaussian ``n×k`` matrix ``G = QR``, with the signs fixed so that ``diag(R) > 0``
    (without the fix, ``Q`` is not Haar).
    """
    n = check_int(n, "n", lo=1)
    k = check_int(k, "k", lo=1, hi=n)
    return _haar(key, n, k)


@partial(jax.jit, static_argnums=(1, 2))
def _haar(key: PRNGKeyArray, n: int, k: int) -> Float[Array, "n k"]:
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, k), jnp.float32))
    return q * jnp.where(jnp.diag(r) < 0, -1.0, 1.0)


def power_law_spectrum(r: int, a: float, scale: float = 1.0) -> Float[Array, " r"]:
    """``σ_k = scale · k^(-a)`` for ``k = 1..r``."""
    r = check_int(r, "r", lo=1)
    a = check_number(a, "a", lo=0.0)
    scale = check_number(scale, "scale", lo=0.0, lo_open=True)
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
    ku, kv = jax.random.split(key)
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
