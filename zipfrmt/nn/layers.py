"""Quantized building blocks in Flax NNX: fake-quantized weights, activations and gradients.

Quantization-aware training keeps float32 *master* weights and quantizes them in every forward pass:

    y = Q_a(x / λ) · Q_w(W) + b,

with straight-through gradients ``∂Q(w)/∂w = 1`` (inside the clipping range) so the optimiser updates the
master weights (Bengio et al. 2013; Jacob et al. 2018). ``Q`` is :func:`zipfrmt.quant.fake_quant` of the
site's :class:`~zipfrmt.quant.QuantSpec` (the uniform quantizer or a real format through Qwix), given to each
layer by the model's rules (:mod:`zipfrmt.nn.rules`). λ (``smooth``) is a non-trainable per-input-channel
divisor, 1 by default, so SmoothQuant-style smoothing ``X̂ = X diag(λ)⁻¹, Ŵ = diag(λ) W`` plugs in by setting
λ and replacing the kernel.

Optionally the gradient flowing back into each linear layer, ``∂L/∂y``, is quantized too (the package's
quantizer applied to the cotangent, per token row): with quantized weights and activations this makes both
the forward and backward matrix products low-precision ("fully quantized training").

Qwix's own quantized-training rules (``QtRule``) intercept dot products only; an embedding *lookup* is a
gather, so the embedding table is fake-quantized here directly, which also covers the tied output head.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Int, PRNGKeyArray

from zipfrmt.nn.controls import site_quantize
from zipfrmt.quant import QuantSpec

__all__ = ["Ctx", "QEmbed", "QLinear", "Smooth", "quantize_activations", "quantize_grad"]


# ---------------------------------------------------------------------------------------------------------
# Quantizers on matrices whose rows are scale-group rows
# ---------------------------------------------------------------------------------------------------------


def quantize_activations(
    x: Float[Array, "*b d"], spec: QuantSpec, key: PRNGKeyArray | None, control: str = "none"
) -> Float[Array, "*b d"]:
    """Fake-quantizes activations as a (tokens × features) matrix: ``row`` = per-token scales."""
    shape = x.shape
    return site_quantize(x.reshape(-1, shape[-1]), spec, key, control).reshape(shape)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _grad_quant(spec: QuantSpec, control: str, x: jax.Array, key: jax.Array) -> jax.Array:
    return x


def _grad_quant_fwd(spec: QuantSpec, control: str, x: jax.Array, key: jax.Array) -> tuple[jax.Array, Any]:
    return x, key


def _grad_quant_bwd(spec: QuantSpec, control: str, key: jax.Array, g: jax.Array) -> tuple[jax.Array, Any]:
    shape = g.shape
    g2 = jax.lax.stop_gradient(site_quantize(g.reshape(-1, shape[-1]), spec, key, control)).reshape(shape)
    return g2.astype(g.dtype), np.zeros(key.shape, jax.dtypes.float0)


_grad_quant.defvjp(_grad_quant_fwd, _grad_quant_bwd)


def quantize_grad(
    x: Float[Array, "*b d"], spec: QuantSpec, key: PRNGKeyArray, control: str = "none"
) -> Float[Array, "*b d"]:
    """Identity in the forward pass; in the backward pass the cotangent ``∂L/∂x`` is replaced by ``Q(∂L/∂x)``
    (scale groups over token rows of the cotangent)."""
    return _grad_quant(spec, control, x, key)


# ---------------------------------------------------------------------------------------------------------
# Forward context: PRNG key and optional activation capture
# ---------------------------------------------------------------------------------------------------------


class Ctx:
    """What a forward pass carries besides the tokens: the step's PRNG key (for stochastic rounding; each
    layer folds in its own ``layer_id``) and, when collecting activations, a dict filled with each linear
    layer's input keyed by its kernel's parameter path."""

    def __init__(self, key: PRNGKeyArray | None = None, capture: dict[str, jax.Array] | None = None):
        self.key = jax.random.key(0) if key is None else key
        self.capture = capture

    def keys(self, layer_id: int) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(weight key, activation key, gradient key) of one layer."""
        k = jax.random.split(jax.random.fold_in(self.key, layer_id), 3)
        return k[0], k[1], k[2]


class Smooth(nnx.Variable):
    """A non-trainable per-input-channel divisor λ of a linear layer's input (SmoothQuant-style)."""


class QLinear(nnx.Module):
    """``y = Q_a(x/λ) Q_w(W) + b`` with W (``d_in × d_out``) kept in float32.

    The kernel is quantized as ``Wᵀ`` (``d_out × d_in``): a scale-group *row* is one output channel and groups
    run along the contraction axis. Activations are quantized as a tokens × ``d_in`` matrix.
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        *,
        rngs: nnx.Rngs,
        use_bias: bool = True,
        std: float = 0.02,
        w_spec: QuantSpec | None = None,
        act_spec: QuantSpec | None = None,
        grad_spec: QuantSpec | None = None,
    ):
        self.kernel = nnx.Param(std * jax.random.normal(rngs.params(), (d_in, d_out), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((d_out,), jnp.float32)) if use_bias else None
        self.smooth = Smooth(jnp.ones((d_in,), jnp.float32))
        self.w_spec, self.act_spec, self.grad_spec = w_spec, act_spec, grad_spec
        self.control = "none"
        self.layer_id = 0
        self.path = ""

    def quantized_kernel(self, key: PRNGKeyArray | None = None) -> Float[Array, "d_in d_out"]:
        """``Q_w(W)`` as the forward pass sees it (W itself at full precision)."""
        w = self.kernel[...]
        return w if self.w_spec is None else site_quantize(w.T, self.w_spec, key, self.control).T

    def __call__(self, x: Float[Array, "*b d_in"], ctx: Ctx) -> Float[Array, "*b d_out"]:
        if ctx.capture is not None:
            ctx.capture[self.path + "/kernel"] = x
        k_w, k_a, k_g = ctx.keys(self.layer_id)
        x = x / self.smooth[...]
        if self.act_spec is not None:
            x = quantize_activations(x, self.act_spec, k_a, self.control)
        y = x @ self.quantized_kernel(k_w)
        if self.bias is not None:
            y = y + self.bias[...]
        if self.grad_spec is not None:
            y = quantize_grad(y, self.grad_spec, k_g, self.control)
        return y


class QEmbed(nnx.Module):
    """Token embedding E (``V × d``, rows = tokens) looked up from ``Q_e(E)``; ``attend`` is the tied head
    ``logits = Q_a(h) Q_h(E)ᵀ``."""

    def __init__(
        self,
        V: int,
        d: int,
        *,
        rngs: nnx.Rngs,
        std: float = 0.02,
        spec: QuantSpec | None = None,
        head_spec: QuantSpec | None = None,
        act_spec: QuantSpec | None = None,
        grad_spec: QuantSpec | None = None,
    ):
        self.embedding = nnx.Param(std * jax.random.normal(rngs.params(), (V, d), jnp.float32))
        self.spec, self.head_spec, self.act_spec, self.grad_spec = spec, head_spec, act_spec, grad_spec
        self.control = "none"
        self.layer_id = 0
        self.path = ""

    def quantized_table(self, key: PRNGKeyArray | None = None) -> Float[Array, "V d"]:
        """``Q_e(E)``, the table the lookup reads."""
        E = self.embedding[...]
        return E if self.spec is None else site_quantize(E, self.spec, key, self.control)

    def __call__(self, ids: Int[Array, "*b"], ctx: Ctx) -> Float[Array, "*b d"]:
        k_w, _, _ = ctx.keys(self.layer_id)
        return jnp.take(self.quantized_table(k_w), ids, axis=0)

    def attend(self, h: Float[Array, "*b d"], ctx: Ctx) -> Float[Array, "*b V"]:
        if ctx.capture is not None:
            ctx.capture[self.path + "/embedding"] = h
        _, k_a, k_g = ctx.keys(self.layer_id + 1_000_003)
        k_table, _, _ = ctx.keys(self.layer_id)  # the lookup's key: a tied head reads the very table it reads
        if self.act_spec is not None:
            h = quantize_activations(h, self.act_spec, k_a, self.control)
        E = self.embedding[...]
        table = E if self.head_spec is None else site_quantize(E, self.head_spec, k_table, self.control)
        logits = h @ table.T
        if self.grad_spec is not None:
            logits = quantize_grad(logits, self.grad_spec, k_g, self.control)
        return logits


def init_std(d: int) -> float:
    """Default initial standard deviation of weights (GPT-2's 0.02, or 1/√d if smaller)."""
    return min(0.02, 1 / math.sqrt(d))
