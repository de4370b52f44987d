"""Token streams for training: synthetic Zipfian / latent-semantic corpora or text files, and batching.

Batches are a pure function of ``(seed, step)``: step ``t`` draws ``B`` window offsets uniformly from the
training stream with the key ``fold_in(fold_in(key(seed), 1), t)``, so an interrupted run that resumes at
step ``t`` sees exactly the batches an uninterrupted one would. Evaluation uses fixed, non-overlapping
windows from the held-out tail of the stream.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, Int32

from zipfrmt import corpus
from zipfrmt.nn.config import DataConfig, TrainConfig, check_data_length

__all__ = ["TokenData", "batch_at", "eval_windows", "load_tokens", "unigram_cross_entropy", "unigram_entropy"]


class TokenData(NamedTuple):
    """A corpus split for training."""

    train: Int32[np.ndarray, " N"]
    eval: Int32[np.ndarray, " M"]
    unigram_entropy: float
    """Entropy (nats) of the training stream's unigram distribution: the loss of a model that learned only
    token frequencies."""
    description: str


def unigram_entropy(tokens: Int[np.ndarray, " N"], V: int) -> float:
    """``H = −Σ_k p_k ln p_k`` of the empirical unigram law of ``tokens`` (nats)."""
    counts = np.bincount(np.asarray(tokens), minlength=V).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


@functools.lru_cache(maxsize=8)
def _stream(data: DataConfig, V: int) -> tuple[np.ndarray, str]:
    if data.source == "text":
        text = corpus.read_text(data.path, data.tokenizer, max_vocab=min(V, _distinct(data.path, data.tokenizer)))
        unk = "" if text.unk_id is None else f", <unk> = id {text.unk_id}"
        return text.tokens.astype(np.int32), f"text {data.path} ({data.tokenizer}, V={len(text.vocab)}{unk})"
    key = jax.random.key(data.data_seed)
    if data.source == "zipf":
        toks = corpus.sample_zipf(key, data.n_tokens, V, data.zipf_s)
        return np.asarray(toks, np.int32), f"i.i.d. Zipf(s={data.zipf_s:g}), V={V}"
    lat = corpus.latent_semantic_corpus(key, data.n_tokens, V, data.zipf_s, dim=data.dim, beta=data.beta,
                                        doc_len=data.doc_len, n_topics=data.n_topics,
                                        persistence=data.persistence)
    return (np.asarray(lat.tokens, np.int32),
            f"latent-semantic Zipf(s={data.zipf_s:g}), V={V}, beta={data.beta:g}, {data.n_topics} topics")


@functools.lru_cache(maxsize=8)
def _distinct(path: str, tokenizer: str) -> int:
    return corpus.read_text(path, tokenizer).n_distinct


def load_tokens(config: TrainConfig) -> TokenData:
    """The training and held-out streams of a config (cached per data config within a process).

    Raises ValueError if the context does not fit in either stream.
    """
    V = config.model.vocab_size
    toks, desc = _stream(config.data, V)
    if toks.size and int(toks.max()) >= V:
        raise ValueError(f"model.vocab_size: the corpus has token ids up to {int(toks.max())}, expected < {V}")
    n_eval = int(round(toks.size * config.data.eval_fraction))
    train, held = toks[: toks.size - n_eval], toks[toks.size - n_eval :]
    check_data_length(config, train.size, held.size)
    return TokenData(train, held, unigram_entropy(train, V), desc)


def unigram_cross_entropy(train: Int[np.ndarray, " N"], windows: Int[np.ndarray, "n Lp1"], V: int) -> float:
    """Cross-entropy (nats per token) on the targets of ``windows`` of the training stream's unigram law, the
    loss of a model that learned token frequencies and nothing else, on the very tokens a run is evaluated on.

    The unigram law is add-½ smoothed (Krichevsky–Trofimov), ``p_k = (c_k + ½)/(N + V/2)``, so a held-out token
    never seen in training costs a finite ``−ln p_k``.
    """
    counts = np.bincount(np.asarray(train), minlength=V).astype(np.float64)
    logp = np.log((counts + 0.5) / (counts.sum() + 0.5 * V))
    targets = np.asarray(windows)[:, 1:].reshape(-1)
    return float(-logp[targets].mean())


def batch_at(
    tokens: Int[Array, " N"], seed: int | jax.Array, step: int | jax.Array, batch_size: int, context: int
) -> Int[Array, "B Lp1"]:
    """The batch of step ``step``: ``batch_size`` windows of ``context + 1`` tokens at offsets drawn from
    ``fold_in(fold_in(key(seed), 1), step)``. Pure and jit-able (``batch_size``/``context`` static)."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 1), step)
    starts = jax.random.randint(key, (batch_size,), 0, tokens.shape[0] - context)
    return jax.vmap(lambda s: jax.lax.dynamic_slice(tokens, (s,), (context + 1,)))(starts)


def eval_windows(tokens: Int[np.ndarray, " M"], context: int, n: int) -> Int32[np.ndarray, "n Lp1"]:
    """Up to ``n`` non-overlapping windows of ``context + 1`` held-out tokens, evenly spread over the stream."""
    L = context + 1
    avail = tokens.size // L
    n = max(1, min(n, avail))
    idx = np.linspace(0, avail - 1, n).round().astype(np.int64)
    return np.stack([tokens[i * L : (i + 1) * L] for i in idx]).astype(np.int32)


def cross_entropy(logits: Float[Array, "B L V"], targets: Int[Array, "B L"]) -> Float[Array, ""]:
    """Mean next-token cross-entropy (nats)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))


def perplexity(loss: float) -> float:
    return math.exp(loss) if math.isfinite(loss) and loss < 700 else math.inf
