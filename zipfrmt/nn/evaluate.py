"""Held-out loss of a model, as trained or under other quantization rules (post-training quantization)."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Int

from zipfrmt.checks import check_int, describe
from zipfrmt.nn import checkpoint
from zipfrmt.nn.config import TrainConfig, validate
from zipfrmt.nn.data import cross_entropy, eval_windows, perplexity
from zipfrmt.nn.layers import Ctx
from zipfrmt.nn.model import apply_rules
from zipfrmt.nn.rules import Rules

__all__ = ["MAX_EVAL_WINDOWS", "eval_step", "evaluate"]

#: At most this many held-out windows are evaluated when a config leaves ``eval_windows`` unset.
MAX_EVAL_WINDOWS = 4096


@partial(jax.jit, static_argnums=0)
def eval_step(
    graphdef: Any, template: Any, rest: Any, params: dict[str, Any], windows_BxLp1: Int[Array, "B Lp1"]
) -> tuple[Float[Array, ""], Float[Array, "B L d"], Float[Array, "V d"]]:
    """Held-out loss on a batch of windows, the final hidden states, and the (master) embedding table."""
    model = checkpoint.merge(graphdef, template, rest, params)
    logits_BxLxV, hidden_BxLxd = model(windows_BxLp1[:, :-1], Ctx(jax.random.key(0)))
    return cross_entropy(logits_BxLxV, windows_BxLp1[:, 1:]), hidden_BxLxd, params["embed"]["embedding"]


def evaluate(
    model: nnx.Module,
    tokens: Any,
    config: TrainConfig,
    *,
    quant: str | Rules | None = None,
    n_windows: int | None = None,
) -> dict[str, float]:
    """Held-out loss (nats per token) and perplexity ``exp(loss)`` of ``model`` on ``tokens``.

    ``tokens``: a 1-D held-out stream (cut into ``n_windows`` non-overlapping windows of ``context + 1``,
    default the config's ``eval_windows``, i.e. every window up to :data:`MAX_EVAL_WINDOWS`, as the training
    loop evaluates) or a 2-D array of windows. Post-training quantization: ``quant``
    rules (:mod:`zipfrmt.nn.rules`) replace the specs of the sites they name on a copy of the model; the
    other sites stay as trained. W4A4: ``quant="linear=int4-row,embed=int4-row,head=int4-row,act=int4-row"``.
    Stochastic rounding uses a fixed key, so evaluation is deterministic.

    Raises before any work: ``tokens`` must be integer token ids in ``[0, vocab_size)``, non-empty, a stream of
    at least ``context + 1`` tokens or windows of 2 to ``max_len + 1`` tokens; ``n_windows`` an integer ≥ 1,
    for a stream only.
    """
    validate(config)
    windows = _windows(tokens, config, n_windows)
    if quant:
        model = apply_rules(nnx.clone(model), quant, keep_unmatched=True)
    graphdef, template, rest, params = checkpoint.split(model)
    chunk = config.eval_batches * config.batch_size  # the training loop's evaluation shape: shares its compilation
    losses, counts = [], []
    for i in range(0, windows.shape[0], chunk):
        w = jnp.asarray(windows[i : i + chunk])
        loss, _, _ = eval_step(graphdef, template, rest, params, w)
        losses.append(float(loss))
        counts.append(w.shape[0])
    loss = float(np.average(losses, weights=counts))
    if math.isnan(loss):  # the inputs were checked: the model's parameters are not finite
        raise ValueError("model: the held-out loss is NaN; the model's parameters hold NaN or Inf")
    return {"loss": loss, "perplexity": perplexity(loss), "n_tokens": int(sum(counts) * (windows.shape[1] - 1))}


def _windows(tokens: Any, config: TrainConfig, n_windows: Any) -> np.ndarray:
    """The ``(n, context + 1)`` int32 windows ``evaluate`` reads, after checking ``tokens`` and ``n_windows``."""
    if n_windows is not None:
        check_int(n_windows, "n_windows", lo=1)
    try:
        toks = np.asarray(tokens)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise TypeError(f"tokens: expected an integer array of token ids, got {describe(tokens)}") from exc
    if toks.dtype == np.bool_ or not np.issubdtype(toks.dtype, np.integer):
        raise TypeError(f"tokens: expected an integer array of token ids, got {describe(toks)}")
    if toks.ndim not in (1, 2):
        raise ValueError(f"tokens: expected a 1-D stream or 2-D windows, got shape {toks.shape}")
    if toks.size == 0:
        raise ValueError(f"tokens: expected a non-empty array of token ids, got shape {toks.shape}")
    V = config.model.vocab_size
    lo, hi = int(toks.min()), int(toks.max())
    if lo < 0 or hi >= V:
        bad = int(((toks < 0) | (toks >= V)).sum())
        raise ValueError(f"tokens: expected token ids in [0, model.vocab_size) = [0, {V}), got {bad} id(s) "
                         f"outside it (min {lo}, max {hi})")
    if toks.ndim == 2:
        if n_windows is not None:
            raise ValueError(f"n_windows: applies to a 1-D stream (cut into windows), got {n_windows} with 2-D "
                             f"windows of shape {toks.shape}; slice the windows instead")
        L = toks.shape[1] - 1  # inputs; the last column is only a target
        if L < 1:
            raise ValueError(f"tokens: expected windows of at least 2 tokens (inputs and next-token targets), got "
                             f"shape {toks.shape}")
        if config.model.kind == "transformer" and L > config.model.max_len:
            raise ValueError(f"tokens: expected windows of at most model.max_len + 1 = {config.model.max_len + 1} "
                             f"tokens (the model's positions), got shape {toks.shape}")
        return toks.astype(np.int32)
    if toks.size < config.context + 1:
        raise ValueError(f"tokens: expected at least context + 1 = {config.context + 1} tokens, got {toks.size}")
    toks = toks.astype(np.int32)
    windows = eval_windows(toks, config.context, n_windows or config.eval_windows or MAX_EVAL_WINDOWS)
    chunk = config.eval_batches * config.batch_size
    if n_windows is None and config.eval_windows is None and windows.shape[0] > chunk:
        windows = eval_windows(toks, config.context, windows.shape[0] // chunk * chunk)
    return windows
