"""Language models in Flax NNX: a pre-norm decoder-only transformer and an embedding-bag predictor.

Both map tokens ``x`` (B×L) to next-token logits (B×L×V) and the final hidden states (B×L×d) the probes read.
Every linear layer is a :class:`~zipfrmt.nn.layers.QLinear` and the embedding a
:class:`~zipfrmt.nn.layers.QEmbed`, quantized as the rules of the :class:`~zipfrmt.nn.config.TrainConfig`
say (:func:`apply_rules`). Positions
(learned, ``max_len × d``), LayerNorms, biases and the attention score products stay in float32.

Transformer block (pre-norm, GPT-2 style):

    x ← x + W_o · softmax(mask(q kᵀ/√d_h)) v,     [q k v] = W_qkv · LN₁(x)
    x ← x + W_2 · GELU(W_1 · LN₂(x))
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int, PRNGKeyArray

from zipfrmt.nn.config import ModelConfig, TrainConfig
from zipfrmt.nn.layers import Ctx, QEmbed, QLinear, init_std
from zipfrmt.nn.rules import UNMATCHED, Rules, check_rules, parse_rules, resolve

__all__ = ["BagLM", "TransformerLM", "apply_rules", "build_model", "collect_activations", "quant_sites"]


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, out_std: float):
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.qkv = QLinear(d, 3 * d, rngs=rngs, std=init_std(d))
        self.out = QLinear(d, d, rngs=rngs, std=out_std)

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
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, out_std: float):
        self.fc = QLinear(cfg.d_model, cfg.ff_dim, rngs=rngs, std=init_std(cfg.d_model))
        self.proj = QLinear(cfg.ff_dim, cfg.d_model, rngs=rngs, std=out_std)

    def __call__(self, x: Float[Array, "B L d"], ctx: Ctx) -> Float[Array, "B L d"]:
        return self.proj(jax.nn.gelu(self.fc(x, ctx)), ctx)


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        out_std = init_std(cfg.d_model) / math.sqrt(2 * cfg.n_layers)
        self.ln1 = nnx.LayerNorm(cfg.d_model, rngs=rngs)
        self.attn = Attention(cfg, rngs, out_std)
        self.ln2 = nnx.LayerNorm(cfg.d_model, rngs=rngs)
        self.mlp = MLP(cfg, rngs, out_std)

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

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, V = cfg.d_model, cfg.vocab_size
        self.config = cfg
        self.embed = QEmbed(V, d, rngs=rngs, std=init_std(d))
        self.pos = nnx.Param(0.01 * jax.random.normal(rngs.params(), (cfg.max_len, d), jnp.float32))
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.ln_f = nnx.LayerNorm(d, rngs=rngs)
        self.head = None if cfg.tie_embeddings else QLinear(d, V, rngs=rngs, use_bias=False, std=init_std(d))
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

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, V = cfg.d_model, cfg.vocab_size
        self.config = cfg
        self.window = cfg.bag_window
        self.embed = QEmbed(V, d, rngs=rngs, std=init_std(d))
        self.head = None if cfg.tie_embeddings else QLinear(d, V, rngs=rngs, use_bias=False, std=init_std(d))
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
    """The model a config describes, initialised from ``key`` (default: ``fold_in(key(seed), 0)``), with its
    quantization rules and its control applied."""
    key = jax.random.fold_in(jax.random.key(config.seed), 0) if key is None else key
    rngs = nnx.Rngs(params=key)
    cls = TransformerLM if config.model.kind == "transformer" else BagLM
    model = apply_rules(cls(config.model, rngs), config.quant, keep_unmatched=False)
    for _, node in nnx.iter_graph(model):
        if isinstance(node, (QLinear, QEmbed)):
            node.control = config.control  # what every quantized site does (zipfrmt.nn.controls)
    return model


def quant_sites(model: nnx.Module) -> dict[str, Any]:
    """The quantization sites of a built model and the spec each has now (see :mod:`zipfrmt.nn.rules`)."""
    out: dict[str, Any] = {}
    for _, node in nnx.iter_graph(model):
        if isinstance(node, QLinear):
            out["head" if node.path == "head" else f"linear/{node.path}"] = node.w_spec
            out[f"act/{node.path}"], out[f"grad/{node.path}"] = node.act_spec, node.grad_spec
        elif isinstance(node, QEmbed):
            out["embed"] = node.spec
            if model.head is None:  # tied: the table is the head, and its input and output are the head's
                out["head"] = node.head_spec
                out["act/head"], out["grad/head"] = node.act_spec, node.grad_spec
    return out


def apply_rules(model: nnx.Module, rules: str | Rules | None, *, keep_unmatched: bool = True) -> nnx.Module:
    """Sets the spec of every quantization site of ``model`` from ``rules`` (in place) and returns it.

    Post-training quantization: ``apply_rules(nnx.clone(model), "linear=int4-row,embed=int4-row,act=int4-row")``.
    With ``keep_unmatched`` (default) a site no rule names keeps its spec; otherwise it becomes full precision.
    A tied head no rule names follows ``embed`` whenever ``embed`` is named. Rules are checked against the
    model first (:func:`zipfrmt.nn.rules.check_rules`): a pattern that names no site is an error.
    """
    rules = parse_rules(rules)
    check_rules(rules, _model_config(model), "rules")

    def pick(site: str, current: Any) -> Any:
        spec = resolve(rules, site)
        return (current if keep_unmatched else None) if spec is UNMATCHED else spec

    for _, node in nnx.iter_graph(model):
        if isinstance(node, QLinear):
            name = node.path
            node.w_spec = pick("head" if name == "head" else f"linear/{name}", node.w_spec)
            node.act_spec = pick(f"act/{name}", node.act_spec)
            node.grad_spec = pick(f"grad/{name}", node.grad_spec)
        elif isinstance(node, QEmbed):
            node.spec = pick("embed", node.spec)
            head = resolve(rules, "head")
            if head is UNMATCHED and (resolve(rules, "embed") is not UNMATCHED or not keep_unmatched):
                head = node.spec  # the tied head reads the table the lookup reads
            node.head_spec = node.head_spec if head is UNMATCHED else head
            node.act_spec = pick("act/head", node.act_spec)
            node.grad_spec = pick("grad/head", node.grad_spec)
    return model


def _model_config(model: nnx.Module) -> ModelConfig:
    """The :class:`ModelConfig` a built model was made from (stored at construction)."""
    return model.config


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
