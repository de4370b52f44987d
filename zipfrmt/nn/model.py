"""Language models in Flax NNX: a pre-norm decoder-only transformer and an embedding-bag predictor.

Both map tokens ``x`` (B×L) to next-token logits (B×L×V) and the final hidden states (B×L×d) the probes read.
Every linear layer is a :class:`~zipfrmt.nn.layers.QLinear` and the embedding a
:class:`~zipfrmt.nn.layers.QEmbed`, quantized as the :class:`~zipfrmt.nn.config.TrainConfig` says. Positions
(learned, ``max_len × d``), LayerNorms, biases and the attention score products stay in float32.

Transformer block (pre-norm, GPT-2 style):

    x ← x + W_o · softmax(mask(q kᵀ/√d_h)) v,     [q k v] = W_qkv · LN₁(x)
    x ← x + W_2 · GELU(W_1 · LN₂(x))
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int, PRNGKeyArray

from zipfrmt.nn.config import ModelConfig, QuantSpec, TrainConfig, check_act_spec
from zipfrmt.nn.layers import Ctx, QEmbed, QLinear, init_std

__all__ = ["BagLM", "TransformerLM", "build_model", "collect_activations", "set_quant"]


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, qkw: dict[str, Any], out_std: float):
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.qkv = QLinear(d, 3 * d, rngs=rngs, std=init_std(d), **qkw)
        self.out = QLinear(d, d, rngs=rngs, std=out_std, **qkw)

    def __call__(self, x: Float[Array, "B L d"], ctx: Ctx) -> Float[Array, "B L d"]:
        B, L, d = x.shape
        H = self.n_heads
        q, k, v = jnp.split(self.qkv(x, ctx).reshape(B, L, 3, H, d // H), 3, axis=2)
        q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]  # B L H dh
        scores = jnp.einsum("blhd,bmhd->bhlm", q, k) / math.sqrt(d // H)
        mask = jnp.tril(jnp.ones((L, L), bool))
        scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
        att = jax.nn.softmax(scores, axis=-1)
        y = jnp.einsum("bhlm,bmhd->blhd", att, v).reshape(B, L, d)
        return self.out(y, ctx)


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, qkw: dict[str, Any], out_std: float):
        self.fc = QLinear(cfg.d_model, cfg.ff_dim, rngs=rngs, std=init_std(cfg.d_model), **qkw)
        self.proj = QLinear(cfg.ff_dim, cfg.d_model, rngs=rngs, std=out_std, **qkw)

    def __call__(self, x: Float[Array, "B L d"], ctx: Ctx) -> Float[Array, "B L d"]:
        return self.proj(jax.nn.gelu(self.fc(x, ctx)), ctx)


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, qkw: dict[str, Any]):
        out_std = init_std(cfg.d_model) / math.sqrt(2 * cfg.n_layers)
        self.ln1 = nnx.LayerNorm(cfg.d_model, rngs=rngs)
        self.attn = Attention(cfg, rngs, qkw, out_std)
        self.ln2 = nnx.LayerNorm(cfg.d_model, rngs=rngs)
        self.mlp = MLP(cfg, rngs, qkw, out_std)

    def __call__(self, x: Float[Array, "B L d"], ctx: Ctx) -> Float[Array, "B L d"]:
        x = x + self.attn(self.ln1(x), ctx)
        return x + self.mlp(self.ln2(x), ctx)


def _name_layers(model: nnx.Module) -> None:
    """Gives every quantized layer its parameter path and a distinct ``layer_id`` (for PRNG folding)."""
    i = 0
    for path, node in nnx.iter_graph(model):
        if isinstance(node, (QLinear, QEmbed)):
            node.path = "/".join(str(p) for p in path)
            node.layer_id = i
            i += 1


class _LM(nnx.Module):
    """Shared head logic."""

    def _head(self, h: Float[Array, "B L d"], ctx: Ctx) -> Float[Array, "B L V"]:
        if self.head is None:
            return self.embed.attend(h, ctx)
        return self.head(h, ctx)


class TransformerLM(_LM):
    """Decoder-only transformer LM; ``__call__(tokens, ctx) → (logits B×L×V, hidden B×L×d)``."""

    def __init__(self, cfg: ModelConfig, train: TrainConfig, rngs: nnx.Rngs):
        d, V = cfg.d_model, cfg.vocab_size
        qkw = {"w_spec": train.quant_linear, "act_spec": train.quant_act, "grad_spec": train.quant_grad}
        self.embed = QEmbed(V, d, rngs=rngs, std=init_std(d), spec=train.quant_embed,
                            head_spec=train.quant_head or train.quant_embed, act_spec=train.quant_act,
                            grad_spec=train.quant_grad)
        self.pos = nnx.Param(0.01 * jax.random.normal(rngs.params(), (cfg.max_len, d), jnp.float32))
        self.blocks = nnx.List([Block(cfg, rngs, qkw) for _ in range(cfg.n_layers)])
        self.ln_f = nnx.LayerNorm(d, rngs=rngs)
        self.head = None if cfg.tie_embeddings else QLinear(
            d, V, rngs=rngs, use_bias=False, std=init_std(d), w_spec=train.quant_head,
            act_spec=train.quant_act, grad_spec=train.quant_grad)
        _name_layers(self)

    def __call__(self, tokens: Int[Array, "B L"], ctx: Ctx) -> tuple[Float[Array, "B L V"], Float[Array, "B L d"]]:
        L = tokens.shape[1]
        x = self.embed(tokens, ctx) + self.pos[...][:L]
        for block in self.blocks:
            x = block(x, ctx)
        h = self.ln_f(x)
        return self._head(h, ctx), h


class BagLM(_LM):
    """Embedding-bag predictor: ``h_t = mean(E[x_{t−w+1}], …, E[x_t])``, ``logits_t = h_t Eᵀ`` (tied) or
    ``h_t W_head``. Its only representation is the embedding table: a fast check of the embedding spectrum."""

    def __init__(self, cfg: ModelConfig, train: TrainConfig, rngs: nnx.Rngs):
        d, V = cfg.d_model, cfg.vocab_size
        self.window = cfg.bag_window
        self.embed = QEmbed(V, d, rngs=rngs, std=init_std(d), spec=train.quant_embed,
                            head_spec=train.quant_head or train.quant_embed, act_spec=train.quant_act,
                            grad_spec=train.quant_grad)
        self.head = None if cfg.tie_embeddings else QLinear(
            d, V, rngs=rngs, use_bias=False, std=init_std(d), w_spec=train.quant_head,
            act_spec=train.quant_act, grad_spec=train.quant_grad)
        _name_layers(self)

    def __call__(self, tokens: Int[Array, "B L"], ctx: Ctx) -> tuple[Float[Array, "B L V"], Float[Array, "B L d"]]:
        e = self.embed(tokens, ctx)
        L, w = tokens.shape[1], self.window
        c = jnp.cumsum(e, axis=1)
        shifted = jnp.pad(c, ((0, 0), (w, 0), (0, 0)))[:, :L]
        counts = jnp.minimum(jnp.arange(1, L + 1), w).astype(e.dtype)[None, :, None]
        h = (c - shifted) / counts
        return self._head(h, ctx), h


def build_model(config: TrainConfig, key: PRNGKeyArray | None = None) -> TransformerLM | BagLM:
    """The model a config describes, initialised from ``key`` (default: ``fold_in(key(seed), 0)``)."""
    key = jax.random.fold_in(jax.random.key(config.seed), 0) if key is None else key
    rngs = nnx.Rngs(params=key)
    cls = TransformerLM if config.model.kind == "transformer" else BagLM
    return cls(config.model, config, rngs)


_KEEP: Any = object()


def set_quant(
    model: nnx.Module,
    *,
    linear: QuantSpec | None | Any = _KEEP,
    embed: QuantSpec | None | Any = _KEEP,
    head: QuantSpec | None | Any = _KEEP,
    act: QuantSpec | None | Any = _KEEP,
    grad: QuantSpec | None | Any = _KEEP,
) -> nnx.Module:
    """Sets the quantization of a model's layers in place (an omitted family keeps its spec) and returns it.

    Used for post-training quantization: ``set_quant(nnx.clone(model), linear=w4, act=a4)``. ``head`` sets the
    untied head's weight spec, or the tied head's view of the embedding table; as in training
    (:class:`~zipfrmt.nn.config.TrainConfig`), a tied head follows ``embed`` unless ``head`` is given. ``act``
    must be per token (see :func:`~zipfrmt.nn.config.check_act_spec`).
    """
    if act is not _KEEP:
        check_act_spec(act, "act")
    for _, node in nnx.iter_graph(model):
        if isinstance(node, QLinear):
            is_head = node.path == "head"
            if is_head and head is not _KEEP:
                node.w_spec = head
            elif not is_head and linear is not _KEEP:
                node.w_spec = linear
            if act is not _KEEP:
                node.act_spec = act
            if grad is not _KEEP:
                node.grad_spec = grad
        elif isinstance(node, QEmbed):
            if embed is not _KEEP:
                node.spec = embed
            if head is not _KEEP:
                node.head_spec = head
            elif embed is not _KEEP:
                node.head_spec = embed
            if act is not _KEEP:
                node.act_spec = act
            if grad is not _KEEP:
                node.grad_spec = grad
    return model


def collect_activations(model: nnx.Module, tokens: Int[Array, "B L"], key: PRNGKeyArray | None = None
                        ) -> dict[str, Float[Array, "N d_in"]]:
    """The input of every linear layer on ``tokens``, as a tokens × ``d_in`` matrix, keyed by the parameter
    path of the layer's weight (``blocks/0/attn/qkv/kernel``; the tied head's input under
    ``embed/embedding``, whose weight acts as ``Eᵀ``). Inputs are recorded *before* the smoothing divisor λ
    and before activation quantization."""
    tokens = jnp.asarray(tokens, jnp.int32)
    if tokens.ndim == 1:
        tokens = tokens[None]
    capture: dict[str, jax.Array] = {}
    model(tokens, Ctx(key, capture))
    return {k: v.reshape(-1, v.shape[-1]) for k, v in capture.items()}


def param_count(model: nnx.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def model_summary(config: TrainConfig) -> dict[str, Any]:
    """Shape facts of a config's model (for the history's attributes)."""
    return dataclasses.asdict(config.model)
