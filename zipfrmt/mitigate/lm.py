"""S2D and SpecQuant applied to a :mod:`zipfrmt.nn` language model (model surgery for the baselines).

* :func:`s2d_weights` — which parameters S2D acts on in a zipfrmt LM: every linear kernel and the embedding
  table (a path filter for :func:`zipfrmt.mitigate.s2d.s2d`).
* :func:`select_s2d_k` — S2D's ``k`` per weight by PCDR on calibration activations
  (:func:`zipfrmt.mitigate.s2d.select_k_tree`), with a fixed fallback when no layer reaches τ.
* :func:`specquant_model` — a copy of a model whose weights are replaced by SpecQuant's effective weights, for
  post-training quantization.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from zipfrmt.mitigate import s2d, specquant
from zipfrmt.nn.layers import QEmbed, QLinear
from zipfrmt.nn.model import apply_rules

__all__ = ["s2d_weights", "select_s2d_k", "specquant_model"]


def s2d_weights(path: tuple[Any, ...], x: Any) -> bool:
    """S2D's parameter filter for a zipfrmt LM: the 2-D ``kernel`` of every linear layer and the ``embedding``."""
    return bool(path) and path[-1] in ("kernel", "embedding") and getattr(x, "ndim", 0) == 2


def select_s2d_k(
    model: nnx.Module,
    activations: Mapping[str, Any],
    *,
    tau: float = s2d.DEFAULT_TAU,
    k_max: int = s2d.DEFAULT_K_MAX,
    fallback: int = s2d.DEFAULT_K_MAX,
) -> tuple[dict[str, int], str]:
    """``({weight path: k}, rule)``: PCDR's ``k`` per S2D weight (``rule = "pcdr"``), or ``fallback`` for every
    weight when no layer reaches τ (``rule = "fixed"``: S2D would otherwise do nothing).

    ``activations``: :func:`zipfrmt.nn.collect_activations` of the model on calibration windows (the tied
    head's input is recorded under ``embed/embedding``, and the table is used as ``Eᵀ`` there).
    """
    ks = s2d.select_k_tree(nnx.state(model, nnx.Param), activations, tau, k_max, param_filter=s2d_weights)
    if any(ks.values()):
        return ks, "pcdr"
    return {k: fallback for k in ks}, "fixed"


def specquant_model(
    model: nnx.Module,
    activations: Mapping[str, Any],
    bits: int,
    budget: float,
    *,
    act_bits: int | None = 4,
    alpha: float | None = None,
    importance: str = "entropy",
) -> tuple[nnx.Module, float]:
    """A copy of ``model`` with SpecQuant applied to every weight, and the mean overhead in bits per weight.

    Every linear kernel is replaced by SpecQuant's smoothed effective weight ``Ŵ′ + Q_b(R̂)`` (channels along
    the output axis; smoothing strength ``alpha`` or searched; its smoothing divisor λ set on the layer) and the
    embedding table by its SpecQuant weight along tokens (no smoothing: a lookup has no activations); the
    weight fake-quantization of the copy is switched off (``linear``, ``embed`` and ``head`` at full
    precision), so activations keep whatever quantization the caller applies. ``activations``: as for
    :func:`select_s2d_k`; ``act_bits`` is the activation width SpecQuant's smoothing search assumes.
    """
    m = apply_rules(nnx.clone(model), "linear=fp32,embed=fp32,head=fp32")
    overhead, sizes = [], []
    for _, node in nnx.iter_graph(m):
        if isinstance(node, QLinear):
            W = node.kernel[...]
            r = specquant.specquant(W, bits, budget, X=activations[node.path + "/kernel"], act_bits=act_bits,
                                    alpha=alpha, importance=importance, axis=0)
            node.kernel[...] = jnp.asarray(r.smoothed_weight, jnp.float32)
            node.smooth[...] = jnp.asarray(r.smoothing, jnp.float32)
        elif isinstance(node, QEmbed):
            W = node.embedding[...]
            r = specquant.specquant(W, bits, budget, importance=importance, axis=1)
            node.embedding[...] = jnp.asarray(r.weight, jnp.float32)
        else:
            continue
        overhead.append(float(r.overhead_bits))
        sizes.append(int(W.size))
    return m, float(np.average(overhead, weights=sizes))
