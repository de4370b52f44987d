"""Token streams with Zipfian statistics: laws, samplers, corpus models, text ingestion, counts and fits.

Conventions (DESIGN.md, "Zipf"). Ranks run over ``k = 1..V`` and token ids over ``0..V−1``; **id ``i`` is rank
``i + 1``** (id 0 is the most frequent token). The Zipf–Mandelbrot law is

    p_k = (k + q)^(−s) / H_{V,s,q},      H_{V,s,q} = Σ_{k=1}^{V} (k + q)^(−s),      s > 0, q > −1,

and plain Zipf is ``q = 0``. The Zipf exponent of a corpus is the maximum-likelihood ``s`` of the truncated
Zipf law over the ranks of its token counts (:func:`fit_zipf`), over all ranks or over a rank window.

Where things run. The laws are evaluated on the host in float64 (NumPy) and returned as JAX arrays; the
samplers are jit-compiled JAX kernels driven by explicit PRNG keys; counts, co-occurrence matrices, fits and
text ingestion are host-side NumPy/SciPy (exact integer counts, float64 fits) and return NumPy arrays.

Sampling (:func:`alias_table`, :func:`sample_alias`). Walker's alias method (Walker 1977; Vose 1991), O(1)
work per token: the table has ``M = 2^m ≥ V`` cells (padded with zero-probability cells, so the cell index is
the top ``m`` bits of a uniform 32-bit word, exactly uniform); cell ``i`` returns ``i`` when a second 32-bit
word is below its threshold and ``alias[i]`` otherwise. The table is built in exact integer arithmetic (units
of ``2^−32`` of a cell) with a vectorised form of the sweeping construction of Hübschle-Schneider & Sanders
(2022), so every probability — the rare tail included — is realised to within ``2^−32/M``, with none of the
tail loss of an inverse-CDF search in float32. The random words come from counter-mode Threefry-2x32 (Salmon
et al. 2011; the block function of ``jax.random``'s default generator) keyed by two words drawn from the
caller's key: token ``i`` uses counter ``i``, so a stream does not depend on the chunk size, and the first
``m`` tokens of a longer stream are the stream of ``m`` tokens.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
from jax import lax
from jaxtyping import Array, Float, Float64, Int, Int32, Int64, PRNGKeyArray, UInt32

from zipfrmt._validate import (
    check_choice,
    check_float_array,
    check_float_dtype,
    check_int,
    check_nonnegative_array,
    check_number,
    describe,
)

__all__ = [
    "AliasTable",
    "LatentCorpus",
    "RankFrequency",
    "TextCorpus",
    "ZipfFit",
    "alias_table",
    "cooccurrence",
    "fit_zipf",
    "latent_semantic_corpus",
    "rank_frequency",
    "read_text",
    "sample_alias",
    "sample_categorical",
    "sample_zipf",
    "token_counts",
    "zipf_cdf",
    "zipf_entropy",
    "zipf_normalizer",
    "zipf_pmf",
]

#: Default number of tokens drawn per fused sampling pass (longer streams loop over chunks of this size).
DEFAULT_CHUNK = 1 << 24
#: Largest stream a sampler draws in one call (token ids and counters are 32-bit).
MAX_TOKENS = (1 << 31) - 1
#: Ranks summed per block when computing a normaliser (bounds memory for very large V).
_SUM_BLOCK = 1 << 22
#: Sinkhorn sweeps allowed when calibrating the latent-semantic topics.
_SINKHORN_MAX_ITER = 20_000


# ----------------------------------------------------------------------------------------------------------
# Validation helpers local to this module
# ----------------------------------------------------------------------------------------------------------


def _check_law(V: Any, s: Any, q: Any) -> tuple[int, float, float]:
    V = check_int(V, "V", lo=2)
    s = check_number(s, "s", lo=0.0, lo_open=True)
    q = check_number(q, "q", lo=-1.0, lo_open=True)
    return V, s, q


def _check_key(key: Any) -> None:
    if isinstance(key, jax.Array):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.ndim == 0:
            return
        if key.dtype == jnp.uint32 and key.shape == (2,):  # legacy raw key, jax.random.PRNGKey(seed)
            return
    raise TypeError(f"key: expected a single JAX PRNG key (jax.random.key(seed)), got {describe(key)}")


def _check_dtype(dtype: Any) -> np.dtype:
    return check_float_dtype(dtype)


def _as_jax(x: np.ndarray, dtype: np.dtype) -> jax.Array:
    if dtype == np.float64:
        with jax.enable_x64(True):
            return jnp.asarray(x, dtype=jnp.float64)
    return jnp.asarray(x, dtype=dtype)


def _check_tokens(tokens: Any, V: int, name: str = "tokens") -> np.ndarray:
    """Host copy of a 1-D integer token array with ids in [0, V)."""
    if not isinstance(tokens, (np.ndarray, jax.Array)):
        try:
            tokens = np.asarray(tokens)
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            msg = f"{name}: expected a 1-D integer array of token ids, got {describe(tokens)}"
            raise TypeError(msg) from exc
    if not np.issubdtype(np.dtype(tokens.dtype), np.integer):
        raise TypeError(f"{name}: expected an integer array of token ids, got {describe(tokens)}")
    if tokens.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of token ids, got shape {tuple(tokens.shape)}")
    t = np.asarray(tokens)
    if t.size and (int(t.min()) < 0 or int(t.max()) >= V):
        raise ValueError(
            f"{name}: expected token ids in [0, {V - 1}] (V={V}), got ids in [{int(t.min())}, {int(t.max())}]"
        )
    return t


# ----------------------------------------------------------------------------------------------------------
# Zipf and Zipf–Mandelbrot laws
# ----------------------------------------------------------------------------------------------------------


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


def _pmf64(V: int, s: float, q: float) -> Float64[np.ndarray, " V"]:
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
    V, s, q = _check_law(V, s, q)
    return _normalizer64(V, s, q)


def zipf_pmf(V: int, s: float, q: float = 0.0, *, dtype: Any = jnp.float32) -> Float[Array, " V"]:
    """Zipf–Mandelbrot probabilities ``p_k = (k + q)^(−s) / H_{V,s,q}`` for ranks k = 1..V (entry k−1).

    Computed in float64 and cast to ``dtype`` (float32 by default; float64 returns a float64 JAX array).
    """
    V, s, q = _check_law(V, s, q)
    return _as_jax(_pmf64(V, s, q), _check_dtype(dtype))


def zipf_cdf(V: int, s: float, q: float = 0.0, *, dtype: Any = jnp.float32) -> Float[Array, " V"]:
    """Cumulative probabilities ``F_k = Σ_{j≤k} p_j`` (entry k−1), with ``F_V = 1`` exactly.

    Accumulated in float64. In float32 the tail saturates: increments below ~6e-8 vanish near 1, so a
    float32 CDF cannot resolve the rare ranks of a large vocabulary — ask for ``dtype=jnp.float64`` when the
    tail matters (the samplers here do not use the CDF).
    """
    V, s, q = _check_law(V, s, q)
    c = np.cumsum(_weights64(V, s, q))
    return _as_jax(c / c[-1], _check_dtype(dtype))


def zipf_entropy(V: int, s: float, q: float = 0.0) -> float:
    """Shannon entropy in nats, ``H(p) = −Σ p_k ln p_k = s·Σ p_k ln(k + q) + ln H_{V,s,q}``, in float64."""
    V, s, q = _check_law(V, s, q)
    Z = _normalizer64(V, s, q)
    total = 0.0
    for lo in range(1, V + 1, _SUM_BLOCK):
        k = np.arange(lo, min(lo + _SUM_BLOCK - 1, V) + 1, dtype=np.float64) + q
        total += float(np.sum(np.power(k, -s) * np.log(k)))
    return s * total / Z + math.log(Z)


# ----------------------------------------------------------------------------------------------------------
# Alias tables and the jit-compiled samplers
# ----------------------------------------------------------------------------------------------------------


class AliasTable(NamedTuple):
    """Walker alias table over ``M = 2^m`` cells (a pytree: it can be passed through ``jax.jit``).

    Cell ``i`` yields ``i`` with probability ``threshold[i] / 2^32`` and ``alias[i]`` otherwise (a cell with
    ``alias[i] = i`` always yields ``i``); cells past the number of outcomes have threshold 0.
    """

    threshold: UInt32[Array, "*rows M"]
    alias: Int32[Array, "*rows M"]


def _alias_arrays(p: Float64[np.ndarray, " V"]) -> tuple[np.ndarray, np.ndarray]:
    """Alias thresholds (uint32) and aliases (int32) of a normalised float64 pmf, in exact integer arithmetic.

    Masses are counted in units of ``2^−32`` of a cell: ``Q_i`` is ``M·2^32·p_i`` rounded by largest remainder
    (int64, ``|Q_i − M·2^32·p_i| < 1``), so that ``Σ Q_i = M·2^32`` exactly. Then the sweep
    of Hübschle-Schneider & Sanders (2022, "Parallel weighted random sampling", §4), vectorised with prefix
    sums: light cells (``Q < 2^32``) and heavy cells (``Q ≥ 2^32``), each in index order; with the heavies'
    cumulative surplus ``S_j = Σ_{h≤j}(Q_h − 2^32)`` and the lights' cumulative deficit
    ``D_i = Σ_{l≤i}(2^32 − Q_l)`` (``D_0 = 0``), light ``i`` keeps threshold ``Q_i`` and takes alias
    ``j = min{j : S_j > D_{i−1}}``; heavy ``j`` keeps threshold ``2^32 + S_j − min{D_i : D_i ≥ S_j}`` and
    takes alias ``j + 1``. Every outcome then has mass exactly ``Q_i`` units: the table realises
    ``Q_i/(M·2^32)``, within ``2^−32/M`` of ``p_i``; zero-probability outcomes get exactly zero.
    """
    V = p.size
    M = max(2, 1 << (V - 1).bit_length())
    unit = np.int64(1) << 32
    x = p * (M * 2.0**32)
    Q = np.zeros(M, dtype=np.int64)
    Q[:V] = np.floor(x).astype(np.int64)
    frac = x - np.floor(x)
    # largest-remainder rounding: the cells with the largest fractional parts get one more unit
    deficit = int(M * unit - Q.sum())
    bump = min(max(deficit, 0), int(np.count_nonzero(frac)))
    if bump:
        Q[np.argpartition(-frac, bump - 1)[:bump]] += 1
    Q[np.argmax(Q)] += deficit - bump  # float64 round-off in Σx only: a few units
    is_heavy = Q >= unit
    heavy = np.flatnonzero(is_heavy)
    light = np.flatnonzero(~is_heavy)
    t = Q.copy()
    alias = np.arange(M, dtype=np.int64)
    if light.size:
        S = np.cumsum(Q[heavy] - unit)
        D = np.concatenate([np.zeros(1, np.int64), np.cumsum(unit - Q[light])])
        alias[light] = heavy[np.searchsorted(S, D[:-1], side="right")]
        t[heavy] = unit + S - D[np.searchsorted(D, S, side="left")]
        alias[heavy[:-1]] = heavy[1:]
    full = t >= unit
    alias[full] = np.flatnonzero(full)
    threshold = np.minimum(t, unit - 1).astype(np.uint32)
    return threshold, alias.astype(np.int32)


def _check_pmf(pmf: Any, name: str = "pmf") -> Float64[np.ndarray, " V"]:
    p = np.asarray(check_float_array(pmf, name, ndim=1), dtype=np.float64)
    if p.size > MAX_TOKENS // 2:
        raise ValueError(f"{name}: expected at most {MAX_TOKENS // 2} outcomes, got {p.size}")
    if (p < 0).any():
        n_neg = int((p < 0).sum())
        raise ValueError(f"{name}: expected non-negative probabilities, got {n_neg} negative entries")
    total = p.sum()
    if not total > 0:
        raise ValueError(f"{name}: expected a positive total, got an all-zero array of size {p.size}")
    return p / total


def alias_table(pmf: Float[Array, " V"]) -> AliasTable:
    """The alias table of a categorical distribution over ``0..V−1`` (built on the host in float64).

    Args:
      pmf: non-negative weights, shape (V,); normalised here (it need not sum to 1 exactly).

    Returns:
      An :class:`AliasTable` with ``M = 2^⌈log2 V⌉`` cells; cell ``i`` carries mass ``1/M`` split between
      ``i`` and ``alias[i]`` at ``t_i = threshold[i]/2^32``, so
      ``P(j) = (1/M)[t_j + Σ_{i: alias_i=j}(1 − t_i)]``, which equals ``p_j`` to within ``2^−32/M``.
    """
    thr, ali = _alias_arrays(_check_pmf(pmf))
    return AliasTable(jnp.asarray(thr), jnp.asarray(ali))


def _rotl(x: jax.Array, r: int) -> jax.Array:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def _threefry2x32(
    k0: UInt32[Array, ""], k1: UInt32[Array, ""], x0: UInt32[Array, " n"], x1: UInt32[Array, " n"]
) -> tuple[UInt32[Array, " n"], UInt32[Array, " n"]]:
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011, Random123), the block function of ``jax.random``.

    Written in plain ``jnp`` uint32 arithmetic so that XLA fuses and vectorises it on CPU (several times
    faster there than the ``threefry2x32`` primitive); bit-identical to ``jax.extend.random.threefry_2x32``.
    """
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
    rotations = ((13, 15, 26, 6), (17, 29, 16, 24))
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for i in range(5):
        for r in rotations[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _alias_draw(
    seed: UInt32[Array, "2"],
    counter: UInt32[Array, " n"],
    threshold: UInt32[Array, " cells"],
    alias: Int32[Array, " cells"],
    log2_m: int,
    offset: Int32[Array, " n"] | int = 0,
) -> Int32[Array, " n"]:
    """One alias draw per counter: cell = top ``log2_m`` bits of word 0, coin = word 1 (row ``offset``)."""
    w0, w1 = _threefry2x32(seed[0], seed[1], counter, jnp.zeros_like(counter))
    cell = (w0 >> np.uint32(32 - log2_m)).astype(jnp.int32)
    flat = cell + offset
    return jnp.where(w1 < threshold[flat], cell, alias[flat])


def _stream(
    draw: Callable[[UInt32[Array, " n"]], Int32[Array, " n"]], n_tokens: int, chunk_size: int
) -> Int32[Array, " n_tokens"]:
    """``draw(counter)`` for counters 0..n_tokens−1: one fused pass, or a ``lax.map`` over chunks.

    ``draw`` is elementwise, so XLA fuses the Threefry rounds, the table gathers and the select into a single
    loop that keeps no intermediate arrays: the working memory is the output itself (a single pass also lets
    XLA split the loop over CPU threads). Streams longer than ``chunk_size`` go through ``lax.map`` in chunks
    of ``chunk_size`` counters, which bounds the size of any one fused loop. Both give the same stream.
    """
    if n_tokens <= chunk_size:
        return draw(lax.iota(jnp.uint32, n_tokens))
    n_chunks = -(-n_tokens // chunk_size)
    out = lax.map(
        lambda c: draw(c * np.uint32(chunk_size) + lax.iota(jnp.uint32, chunk_size)),
        jnp.arange(n_chunks, dtype=jnp.uint32),
    )
    return out.reshape(-1)[:n_tokens]


@partial(jax.jit, static_argnames=("n_tokens", "chunk_size"))
def _sample_alias_kernel(
    key: PRNGKeyArray, table: AliasTable, *, n_tokens: int, chunk_size: int
) -> Int32[Array, " n_tokens"]:
    seed = jax.random.bits(key, (2,), jnp.uint32)
    log2_m = table.threshold.shape[-1].bit_length() - 1
    return _stream(
        lambda counter: _alias_draw(seed, counter, table.threshold, table.alias, log2_m), n_tokens, chunk_size
    )


def _check_table(table: Any) -> AliasTable:
    if not isinstance(table, AliasTable):
        raise TypeError(f"table: expected an AliasTable (from alias_table(pmf)), got {describe(table)}")
    M = table.threshold.shape[-1]
    if table.threshold.ndim != 1 or M < 2 or M & (M - 1) or table.alias.shape != table.threshold.shape:
        raise ValueError(
            f"table: expected 1-D threshold and alias arrays of equal power-of-two length, got shapes "
            f"{tuple(table.threshold.shape)} and {tuple(table.alias.shape)}"
        )
    return table


def sample_alias(
    key: PRNGKeyArray, n_tokens: int, table: AliasTable, *, chunk_size: int = DEFAULT_CHUNK
) -> Int32[Array, " n_tokens"]:
    """Draws ``n_tokens`` i.i.d. ids from an alias table (jit-compiled; O(1) work per token).

    Token ``i`` uses Threefry counter ``i`` under a seed drawn from ``key``: the same key gives the same
    stream whatever ``chunk_size``, and a shorter stream is a prefix of a longer one. Up to ``chunk_size``
    tokens are drawn in one fused pass that keeps no intermediate arrays (longer streams loop over chunks);
    ``n_tokens`` and ``chunk_size`` are static (one compilation per value). Traceable in ``key`` and ``table``
    (vmap over keys works).
    """
    _check_key(key)
    n_tokens = check_int(n_tokens, "n_tokens", lo=1, hi=MAX_TOKENS)
    chunk_size = check_int(chunk_size, "chunk_size", lo=1, hi=1 << 26)
    table = _check_table(table)
    return _sample_alias_kernel(key, table, n_tokens=n_tokens, chunk_size=min(chunk_size, n_tokens))


def sample_categorical(
    key: PRNGKeyArray, n_tokens: int, pmf: Float[Array, " V"], *, chunk_size: int = DEFAULT_CHUNK
) -> Int32[Array, " n_tokens"]:
    """Draws ``n_tokens`` i.i.d. ids in ``0..V−1`` with probabilities ``pmf`` (normalised here).

    Builds :func:`alias_table` (O(V), on the host) and calls :func:`sample_alias`; to draw many streams from
    one distribution, build the table once and call :func:`sample_alias`.
    """
    _check_key(key)
    table = alias_table(pmf)
    return sample_alias(key, n_tokens, table, chunk_size=chunk_size)


def sample_zipf(
    key: PRNGKeyArray, n_tokens: int, V: int, s: float, q: float = 0.0, *, chunk_size: int = DEFAULT_CHUNK
) -> Int32[Array, " n_tokens"]:
    """The i.i.d. Zipf stream — the null corpus model, with no semantics: ``x_t ~ p_k ∝ (k + q)^(−s)``.

    Returns int32 ids in ``0..V−1`` with id ``k − 1`` for rank ``k`` (id 0 is the most frequent). The law is
    evaluated in float64 and sampled with the alias method (module docstring), so the rarest ranks of a large
    vocabulary keep their exact frequency.

    Example:
      >>> x = sample_zipf(jax.random.key(0), 10**6, V=50_000, s=1.0)
    """
    _check_key(key)
    V, s, q = _check_law(V, s, q)
    n_tokens = check_int(n_tokens, "n_tokens", lo=1, hi=MAX_TOKENS)
    chunk_size = check_int(chunk_size, "chunk_size", lo=1, hi=1 << 26)
    thr, ali = _alias_arrays(_pmf64(V, s, q))
    table = AliasTable(jnp.asarray(thr), jnp.asarray(ali))
    return _sample_alias_kernel(key, table, n_tokens=n_tokens, chunk_size=min(chunk_size, n_tokens))


# ----------------------------------------------------------------------------------------------------------
# The latent-semantic corpus
# ----------------------------------------------------------------------------------------------------------


class LatentCorpus(NamedTuple):
    """A latent-semantic Zipfian corpus (see :func:`latent_semantic_corpus`)."""

    tokens: Int32[Array, " N"]
    """Token ids, id ``k − 1`` = rank ``k`` of the marginal law."""
    token_vectors: Float[Array, "V dim"]
    """Latent token vectors ``u_k ~ N(0, I/dim)``."""
    topic_vectors: Float[Array, "T dim"]
    """Topic vectors ``c_t ~ N(0, I)``."""
    doc_topics: Int32[Array, " D"]
    """Topic index of each document; document ``d`` holds tokens ``d·doc_len .. (d+1)·doc_len − 1``."""
    topic_pmf: Float[Array, "T V"]
    """Token law ``φ_t`` of each topic (rows sum to 1; their mean over topics is ``pmf``)."""
    pmf: Float[Array, " V"]
    """The Zipf–Mandelbrot marginal ``p``."""
    doc_len: int
    calibration_error: float
    """``max_k |(1/T)Σ_t φ_t(k) / p_k − 1|`` after the Sinkhorn calibration (float64)."""


@partial(jax.jit, static_argnames=("V", "dim", "n_topics"))
def _latent_vectors(
    key: PRNGKeyArray, *, V: int, dim: int, n_topics: int
) -> tuple[Float[Array, "V dim"], Float[Array, "T dim"]]:
    """Token vectors u_k ~ N(0, I/dim) and topic vectors c_t ~ N(0, I), float32."""
    k_vec, k_top = jax.random.split(key)
    u = jax.random.normal(k_vec, (V, dim), jnp.float32) * np.float32(1.0 / math.sqrt(dim))
    return u, jax.random.normal(k_top, (n_topics, dim), jnp.float32)


@partial(jax.jit, static_argnames=("max_iter",))
def _sinkhorn_topics(
    topic_vectors: Float[Array, "T dim"],
    token_vectors: Float[Array, "V dim"],
    p: Float[Array, " V"],
    beta: Float[Array, ""],
    tol: Float[Array, ""],
    *,
    max_iter: int,
) -> tuple[Float[Array, "T V"], Float[Array, ""], Int32[Array, ""]]:
    """φ_tk = p_k e^{β⟨u_k,c_t⟩ + b_k} / Z_t with b such that (1/T) Σ_t φ_tk = p_k (call under float64).

    Sinkhorn–Knopp iteration on the positive kernel ``K_tk = p_k e^{β⟨u_k,c_t⟩}``: with ``e = e^b``,
    ``r_t = Σ_k K_tk e_k`` and column marginal ``m_k = (e_k/T) Σ_t K_tk / r_t``, update ``e ← e·p/m`` until
    ``max_k |m_k/p_k − 1| < tol``. Returns φ, the final error and the number of sweeps.
    """
    f = p.dtype
    T = topic_vectors.shape[0]
    logits = beta * (topic_vectors.astype(f) @ token_vectors.astype(f).T)
    K = jnp.exp(logits - logits.max(axis=1, keepdims=True)) * p[None, :]

    def marginal(e: jax.Array) -> tuple[jax.Array, jax.Array]:
        r = K @ e
        return (K.T @ (1.0 / r)) * e / T, r

    def cond(state: tuple) -> jax.Array:
        it, _, err = state
        return (it < max_iter) & (err >= tol)

    def body(state: tuple) -> tuple:
        it, e, _ = state
        m, _ = marginal(e)
        return it + 1, e * (p / m), jnp.max(jnp.abs(m / p - 1.0))

    it, e, _ = lax.while_loop(cond, body, (jnp.int32(0), jnp.ones_like(p), jnp.asarray(jnp.inf, f)))
    m, r = marginal(e)
    return K * e[None, :] / r[:, None], jnp.max(jnp.abs(m / p - 1.0)), it


@partial(jax.jit, static_argnames=("n_tokens", "doc_len", "chunk_size"))
def _sample_documents_kernel(
    key: PRNGKeyArray,
    tables: AliasTable,
    doc_topics: Int32[Array, " D"],
    *,
    n_tokens: int,
    doc_len: int,
    chunk_size: int,
) -> Int32[Array, " n_tokens"]:
    seed = jax.random.bits(key, (2,), jnp.uint32)
    M = tables.threshold.shape[-1]
    log2_m = M.bit_length() - 1
    thr, ali = tables.threshold.reshape(-1), tables.alias.reshape(-1)
    D = doc_topics.shape[0]

    def draw(counter: jax.Array) -> jax.Array:
        doc = jnp.minimum(counter // np.uint32(doc_len), np.uint32(D - 1)).astype(jnp.int32)
        return _alias_draw(seed, counter, thr, ali, log2_m, offset=doc_topics[doc] * M)

    return _stream(draw, n_tokens, chunk_size)


@partial(jax.jit, static_argnames=("n_docs", "n_topics"))
def _topic_sequence(
    key: PRNGKeyArray, persistence: Float[Array, ""], *, n_docs: int, n_topics: int
) -> Int32[Array, " D"]:
    """Markov chain on topics: z_0 ~ U{T}; z_{d+1} = z_d with probability ρ, else a fresh draw from U{T}."""
    k_fresh, k_stay = jax.random.split(key)
    fresh = jax.random.randint(k_fresh, (n_docs,), 0, n_topics, dtype=jnp.int32)
    stay = jax.random.bernoulli(k_stay, persistence, (n_docs,)).at[0].set(False)
    idx = jnp.arange(n_docs, dtype=jnp.int32)
    last_fresh = lax.cummax(jnp.where(stay, 0, idx))
    return fresh[last_fresh]


def latent_semantic_corpus(
    key: PRNGKeyArray,
    n_tokens: int,
    V: int,
    s: float,
    *,
    q: float = 0.0,
    dim: int = 16,
    beta: float = 1.0,
    doc_len: int = 256,
    n_topics: int = 128,
    persistence: float = 0.0,
    chunk_size: int = DEFAULT_CHUNK,
) -> LatentCorpus:
    """A Zipfian corpus whose co-occurrences carry latent semantic structure, with an exact Zipf marginal.

    Generative process (all randomness from ``key``):

    1. Token vectors ``u_k ~ N(0, I_dim/dim)`` (so ``|u_k| ≈ 1``), k = 1..V; topic vectors
       ``c_t ~ N(0, I_dim)``, t = 1..T (``T = n_topics``).
    2. Topic laws, an exponential tilt of the Zipf–Mandelbrot law ``p``:
       ``φ_t(k) = p_k · exp(β⟨u_k, c_t⟩ + b_k) / Z_t``,   ``Z_t = Σ_k p_k exp(β⟨u_k, c_t⟩ + b_k)``,
       with per-token corrections ``b_k`` solved (Sinkhorn matrix scaling, Sinkhorn 1964, in float64) so
       that ``(1/T) Σ_t φ_t(k) = p_k`` for every k. The scaling exists and is unique (up to a constant) since
       the kernel is positive; ``calibration_error`` reports the achieved ``max_k |mean_t φ_t(k)/p_k − 1|``
       (≤ 1e-9, else an error is raised). For a continuum of Gaussian topics and no normalisation, ``b_k``
       would be the closed form ``−β²|u_k|²/2`` (``E_c exp(β⟨u, c⟩) = exp(β²|u|²/2)``); with ``Z_t`` in the
       way, the correction is solved for instead.
    3. Documents ``d = 0..D−1`` of ``doc_len`` tokens (the last may be shorter); document topics follow a
       Markov chain ``z_0 ~ U{1..T}``, ``z_{d+1} = z_d`` with probability ``ρ = persistence``, otherwise a
       fresh uniform draw — a slowly drifting context when ρ is near 1. Its stationary law is uniform.
    4. Tokens of document d are i.i.d. ``x ~ φ_{z_d}`` (alias method, as :func:`sample_zipf`).

    Since every ``z_d`` is uniform on the topics, each token is marginally ``Σ_t (1/T) φ_t = p``: the unigram
    law is exactly Zipf–Mandelbrot(s, q), while tokens whose latent vectors align with the same topics
    co-occur more often: ``P(x_i = a, x_j = b | same document) = (1/T) Σ_t φ_t(a) φ_t(b) ≠ p_a p_b``. β sets
    the strength (β = 0 gives the i.i.d. stream). Cost: O(T·V) per Sinkhorn sweep on the host plus O(1) per
    token in the jit-compiled sampler.

    Args:
      key: PRNG key.
      n_tokens: corpus length N.
      V, s, q: the marginal law (as :func:`zipf_pmf`).
      dim: latent dimension k.
      beta: tilt strength β ≥ 0 (the standard deviation of the topic log-odds shift when ``|u_k| = 1``).
      doc_len: tokens per document.
      n_topics: number of topics T.
      persistence: probability ρ in [0, 1) that a document keeps the previous document's topic.
      chunk_size: tokens per fused sampling pass (as :func:`sample_alias`).

    Returns:
      A :class:`LatentCorpus`.
    """
    _check_key(key)
    V, s, q = _check_law(V, s, q)
    n_tokens = check_int(n_tokens, "n_tokens", lo=1, hi=MAX_TOKENS)
    dim = check_int(dim, "dim", lo=1)
    beta = check_number(beta, "beta", lo=0.0)
    doc_len = check_int(doc_len, "doc_len", lo=1)
    n_topics = check_int(n_topics, "n_topics", lo=1)
    persistence = check_number(persistence, "persistence", lo=0.0, hi=1.0, hi_open=True)
    chunk_size = check_int(chunk_size, "chunk_size", lo=1, hi=1 << 26)
    M = max(2, 1 << (V - 1).bit_length())
    if n_topics * M > MAX_TOKENS:
        raise ValueError(f"n_topics: n_topics·2^⌈log2 V⌉ must stay below 2^31, got {n_topics}·{M}")

    k_vec, k_doc, k_tok = jax.random.split(key, 3)
    token_vectors, topic_vectors = _latent_vectors(k_vec, V=V, dim=dim, n_topics=n_topics)
    p = _pmf64(V, s, q)
    with jax.enable_x64(True):
        phi, err, _ = _sinkhorn_topics(
            topic_vectors,
            token_vectors,
            jnp.asarray(p),
            jnp.float64(beta),
            jnp.float64(1e-11),
            max_iter=_SINKHORN_MAX_ITER,
        )
        phi, err = np.asarray(phi), float(err)
    if not err <= 1e-9:
        raise ValueError(
            f"beta: the topic calibration did not converge for beta={beta:g} (marginal error {err:.2e} after "
            f"{_SINKHORN_MAX_ITER} Sinkhorn sweeps); use a smaller beta"
        )
    rows = [_alias_arrays(row / row.sum()) for row in phi]
    tables = AliasTable(*(jnp.asarray(np.stack(parts)) for parts in zip(*rows, strict=True)))
    n_docs = -(-n_tokens // doc_len)
    doc_topics = _topic_sequence(k_doc, jnp.float32(persistence), n_docs=n_docs, n_topics=n_topics)
    tokens = _sample_documents_kernel(
        k_tok, tables, doc_topics, n_tokens=n_tokens, doc_len=doc_len, chunk_size=min(chunk_size, n_tokens)
    )
    return LatentCorpus(
        tokens=tokens,
        token_vectors=token_vectors,
        topic_vectors=topic_vectors,
        doc_topics=doc_topics,
        topic_pmf=jnp.asarray(phi, jnp.float32),
        pmf=jnp.asarray(p, jnp.float32),
        doc_len=doc_len,
        calibration_error=err,
    )


# ----------------------------------------------------------------------------------------------------------
# Counts, rank–frequency, co-occurrence
# ----------------------------------------------------------------------------------------------------------


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
    return np.bincount(_check_tokens(tokens, V), minlength=V).astype(np.int64)


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
    x = _check_tokens(tokens, V).astype(np.int64)
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


# ----------------------------------------------------------------------------------------------------------
# Real text
# ----------------------------------------------------------------------------------------------------------


class TextCorpus(NamedTuple):
    """A tokenized text (see :func:`read_text`)."""

    tokens: Int32[np.ndarray, " N"]
    """Token ids; id i is ``vocab[i]``; ids are ranks − 1 (descending frequency)."""
    vocab: tuple[str, ...] | tuple[bytes, ...]
    """Types in id order: words as ``str``; bytes as 1-byte ``bytes`` (a capped unknown: ``unk`` encoded)."""
    counts: Int64[np.ndarray, " V"]
    """``counts[i]`` = occurrences of id i (descending)."""
    tokenizer: str
    paths: tuple[str, ...]
    n_distinct: int
    """Distinct types in the text before any vocabulary cap."""
    unk_id: int | None
    """Id of the unknown type when the vocabulary was capped, else None."""


def _read_one(path: Any, binary: bool) -> str | bytes:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"paths: expected a str or os.PathLike path, or a list of them, got {describe(path)}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"paths: no such file: '{p}'")
    if p.is_dir():
        raise IsADirectoryError(f"paths: expected a text file, got a directory: '{p}'")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise OSError(f"paths: cannot read '{p}': {exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not binary:
            raise ValueError(f"paths: '{p}' is not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
        text = data.decode("latin-1")
    if not text.split():
        raise ValueError(f"paths: '{p}' is empty or whitespace-only; expected text")
    return data if binary else text


def read_text(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    tokenizer: str = "word",
    *,
    max_vocab: int | None = None,
    unk: str = "<unk>",
) -> TextCorpus:
    """Reads and tokenizes one or more UTF-8 text files into ids ranked by frequency.

    Tokenizers: ``"word"`` — whitespace-separated words (``str.split()``: punctuation attached to words stays,
    nothing is lower-cased, as for the pre-tokenized WikiText); ``"byte"`` — the raw bytes of the file (no
    decoding). Several files are read in order and their token streams concatenated (counted together).

    Ids are ranks − 1: id 0 is the most frequent type, ties broken by first occurrence. The vocabulary holds
    only the types that occur.

    ``max_vocab`` caps the vocabulary at exactly ``max_vocab`` types: the ``max_vocab − 1`` most frequent
    types other than ``unk`` are kept and every other occurrence becomes ``unk``; if the text already contains
    the literal ``unk`` token (WikiText's ``<unk>``), those occurrences are merged into the same id. The
    ``unk`` id is ranked by its merged count like any other type. A cap equal to the number of distinct types
    keeps them all (no ``unk`` entry is added).

    Raises:
      FileNotFoundError / IsADirectoryError / OSError naming the path; ValueError for an empty or
      whitespace-only file, a file that is not UTF-8 (word tokenizer), ``max_vocab < 2`` or larger than the
      number of distinct types (reported), an unknown tokenizer.
    """
    tokenizer = check_choice(tokenizer, "tokenizer", ("word", "byte"))
    if max_vocab is not None:
        max_vocab = check_int(max_vocab, "max_vocab", lo=2)
    if not isinstance(unk, str) or not unk or unk.split() != [unk]:
        raise ValueError(f"unk: expected a non-empty string without whitespace, got {describe(unk)}")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    elif not isinstance(paths, Sequence) or isinstance(paths, (bytes, bytearray)):
        raise TypeError(f"paths: expected a path or a list of paths, got {describe(paths)}")
    if len(paths) == 0:
        raise ValueError("paths: expected at least one file, got an empty list")
    binary = tokenizer == "byte"
    datas = [_read_one(path, binary) for path in paths]
    if binary:
        raw = np.frombuffer(b"".join(datas), dtype=np.uint8)
        byte_counts = np.bincount(raw, minlength=256)
        values, first = np.unique(raw, return_index=True)
        # types in first-occurrence order, so the stable sort below breaks ties by first occurrence
        freq: dict[Any, int] = {bytes((int(b),)): int(byte_counts[b]) for b in values[np.argsort(first)]}
        unk_type: Any = unk.encode("utf-8")
        n_tokens = raw.size
    else:
        words = [w for data in datas for w in data.split()]
        freq = Counter(words)  # insertion order = first occurrence
        unk_type = unk
        n_tokens = len(words)
    n_distinct = len(freq)
    capped = max_vocab is not None and max_vocab < n_distinct
    if max_vocab is not None and max_vocab > n_distinct:
        raise ValueError(
            f"max_vocab: expected at most the number of distinct {tokenizer} types in the text, "
            f"{n_distinct}, got {max_vocab}"
        )
    ranked = sorted(freq.items(), key=lambda wc: -wc[1])  # stable: ties keep first-occurrence order
    if capped:
        kept = [(w, c) for w, c in ranked if w != unk_type][: max_vocab - 1]
        ranked = sorted(kept + [(unk_type, n_tokens - sum(c for _, c in kept))], key=lambda wc: -wc[1])
    vocab = tuple(w for w, _ in ranked)
    counts = np.array([c for _, c in ranked], dtype=np.int64)
    index = {w: i for i, w in enumerate(vocab)}
    unk_id = index[unk_type] if capped else None
    if binary:
        lut = np.full(256, -1 if unk_id is None else unk_id, dtype=np.int32)
        for w, i in index.items():
            if len(w) == 1 and not (capped and w == unk_type):
                lut[w[0]] = i
        ids = lut[raw]
    elif capped:
        ids = np.fromiter((index.get(w, unk_id) for w in words), dtype=np.int32, count=n_tokens)
    else:
        ids = np.fromiter((index[w] for w in words), dtype=np.int32, count=n_tokens)
    return TextCorpus(
        tokens=ids,
        vocab=vocab,
        counts=counts,
        tokenizer=tokenizer,
        paths=tuple(str(p) for p in paths),
        n_distinct=n_distinct,
        unk_id=unk_id,
    )
