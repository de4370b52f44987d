"""Held-out loss of a model, as trained or under other quantization rules (post-training quantization)."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Int

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
    """
    validate(config)
    toks = np.asarray(tokens)
    if toks.ndim == 1:
        n = n_windows or config.eval_windows or MAX_EVAL_WINDOWS
        if toks.size < config.context + 1:
            raise ValueError(f"tokens: expected at least context + 1 = {config.context + 1} tokens, got {toks.size}")
        windows = eval_windows(toks.astype(np.int32), config.context, n)
        chunk = config.eval_batches * config.batch_size
        if n_windows is None and config.eval_windows is None and windows.shape[0] > chunk:
            windows = eval_windows(toks.astype(np.int32), config.context, windows.shape[0] // chunk * chunk)
    elif toks.ndim == 2:
        windows = toks.astype(np.int32)
    else:
        raise ValueError(f"tokens: expected a 1-D stream or 2-D windows, got shape {toks.shape}")
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
    return {"loss": loss, "perplexity": perplexity(loss), "n_tokens": int(sum(counts) * config.context)}
