"""Walker's alias method and the jit-compiled samplers of token streams (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, Float64, Int32, PRNGKeyArray, UInt32

from zipfrmt.checks import (
    check_float_array,
    check_int,
    describe,
)
from zipfrmt.corpus.checks import check_key, check_law
from zipfrmt.corpus.laws import pmf64

#: Default number of tokens drawn per fused sampling pass (longer streams loop over chunks of this size).
DEFAULT_CHUNK = 1 << 24
#: Largest stream a sampler draws in one call (token ids and counters are 32-bit).
MAX_TOKENS = (1 << 31) - 1

__all__ = [
    "AliasTable",
    "DEFAULT_CHUNK",
    "MAX_TOKENS",
    "alias_arrays",
    "alias_draw",
    "alias_table",
    "draw_stream",
    "sample_alias",
    "sample_categorical",
    "sample_zipf",
]


class AliasTable(NamedTuple):
    """Walker alias table over ``M = 2^m`` cells (a pytree: it can be passed through ``jax.jit``).

    Cell ``i`` yields ``i`` with probability ``threshold[i] / 2^32`` and ``alias[i]`` otherwise (a cell with
    ``alias[i] = i`` always yields ``i``); cells past the number of outcomes have threshold 0.
    """

    threshold: UInt32[Array, "*rows M"]
    alias: Int32[Array, "*rows M"]


def alias_arrays(p: Float64[np.ndarray, " V"]) -> tuple[np.ndarray, np.ndarray]:
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
    thr, ali = alias_arrays(_check_pmf(pmf))
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


def alias_draw(
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


def draw_stream(
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
    return draw_stream(
        lambda counter: alias_draw(seed, counter, table.threshold, table.alias, log2_m), n_tokens, chunk_size
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
    check_key(key)
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
    check_key(key)
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
    check_key(key)
    V, s, q = check_law(V, s, q)
    n_tokens = check_int(n_tokens, "n_tokens", lo=1, hi=MAX_TOKENS)
    chunk_size = check_int(chunk_size, "chunk_size", lo=1, hi=1 << 26)
    thr, ali = alias_arrays(pmf64(V, s, q))
    table = AliasTable(jnp.asarray(thr), jnp.asarray(ali))
    return _sample_alias_kernel(key, table, n_tokens=n_tokens, chunk_size=min(chunk_size, n_tokens))


