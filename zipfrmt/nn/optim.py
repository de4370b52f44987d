"""The optimiser of a training run: global-norm clipping, an optional extra transform, AdamW on a schedule.

    θ ← θ − lr_t · AdamW(clip(g) [+ extra(g, θ)])

with ``lr_t`` a linear warm-up from 0 to ``lr`` over ``warmup`` steps, then a cosine decay to
``lr·min_lr_ratio`` at ``steps`` (Loshchilov & Hutter 2017, 2019). With ``opt/…`` rules AdamW's moments are
stored quantized (:func:`zipfrmt.nn.mechanisms.quantized_adam`); weights named by ``freeze`` get no update.
"""

from __future__ import annotations

import optax

from zipfrmt.nn.config import TrainConfig
from zipfrmt.nn.mechanisms import frozen_mask, opt_specs, quantized_adam

__all__ = ["lr_schedule", "make_optimizer"]


def lr_schedule(config: TrainConfig) -> optax.Schedule:
    """Linear warm-up from 0 to ``lr`` over ``warmup`` steps, then cosine decay to ``lr·min_lr_ratio``."""
    return optax.warmup_cosine_decay_schedule(
        0.0, config.lr, config.warmup, max(config.steps, config.warmup + 1), config.lr * config.min_lr_ratio)


def make_optimizer(
    config: TrainConfig, extra_transform: optax.GradientTransformation | None = None
) -> optax.GradientTransformation:
    """``clip_by_global_norm(grad_clip) → [extra_transform] → AdamW(schedule)``.

    ``extra_transform`` sees the clipped loss gradient and the parameters (``update(g, state, params)``) and
    may add to it, e.g. a spectral penalty's gradient; AdamW then treats the sum as the gradient. What it adds
    is *not* clipped (it comes after the clip), unlike a term of the loss.
    """
    parts = [optax.clip_by_global_norm(config.grad_clip)]
    if extra_transform is not None:
        parts.append(extra_transform)
    specs = opt_specs(config.quant, config.model, config.control)
    if specs:  # optax.adamw, spelled out, with the moments stored quantized
        parts += [quantized_adam(specs, config.seed, b1=config.b1, b2=config.b2, control=config.control),
                  optax.add_decayed_weights(config.weight_decay), optax.scale_by_learning_rate(lr_schedule(config))]
    else:
        parts.append(optax.adamw(lr_schedule(config), b1=config.b1, b2=config.b2, weight_decay=config.weight_decay))
    if config.freeze:
        parts.append(optax.masked(optax.set_to_zero(), frozen_mask(config.freeze, config.model)))
    return optax.chain(*parts)
