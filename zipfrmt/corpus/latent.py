"""The latent-semantic corpus: documents whose topics tilt a Zipfian unigram law."""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, Int32, PRNGKeyArray

from zipfrmt.checks import (
    check_int,
    check_number,
)
from zipfrmt.corpus.checks import check_key, check_law
from zipfrmt.corpus.laws import pmf64
from zipfrmt.corpus.sampling import DEFAULT_CHUNK, MAX_TOKENS, AliasTable, alias_arrays, alias_draw, draw_stream

#: Sinkhorn sweeps allowed when calibrating the latent-semantic topics.
_SINKHORN_MAX_ITER = 20_000

__all__ = ["LatentCorpus", "latent_semantic_corpus"]


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
        return alias_draw(seed, counter, thr, ali, log2_m, offset=doc_topics[doc] * M)

    return draw_stream(draw, n_tokens, chunk_size)


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
    check_key(key)
    V, s, q = check_law(V, s, q)
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
    p = pmf64(V, s, q)
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
    rows = [alias_arrays(row / row.sum()) for row in phi]
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


