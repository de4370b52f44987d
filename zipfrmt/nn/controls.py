"""Controls of the collapse experiment: what is done *instead of* quantizing, at every quantization site.

A control keeps one property of the quantizer and removes another, so that a failure seen with quantization
can be attributed:

* ``none`` — the quantizer itself, ``Q(W)``.
* ``noise`` — **equal-energy noise**: ``W + N`` with ``N`` Gaussian, of the same variance in every scale group
  as the quantizer's error ``Q(W) − W`` at that step, drawn fresh every step. It keeps the noise floor (its
  energy, and its profile over scale groups) and removes rounding bias, the dead zone and the error's
  correlation with ``W``.
* ``stochastic`` — the same spec with stochastic rounding (unbiased; integer specs only): keeps the grid and
  the noise energy's order, removes the bias of round-to-nearest.
* ``hadamard`` — a random orthogonal rotation ``R`` of the feature axis before quantizing,
  ``Q(W R) Rᵀ`` (a randomized Hadamard matrix when the width is a power of two, else a Haar rotation; fixed per
  width): spreads outlier features over all features, so a scale set by a few large entries no longer puts
  the rest in the dead zone (QuaRot, Ashkboos et al. 2024; QuIP#, Tseng et al. 2024).

All are straight-through in the backward pass, like :func:`zipfrmt.quant.fake_quant`. The control of a run is
``TrainConfig.control``; it applies to every site its rules quantize. For the optimizer state
(:mod:`zipfrmt.nn.mechanisms`) ``noise`` adds the equal-energy noise to both moments (the second kept positive)
and ``hadamard`` does not apply.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from zipfrmt import quant
from zipfrmt.quant import QuantSpec
from zipfrmt.quant.uniform import group_reduce

__all__ = ["CONTROLS", "control_spec", "rotation", "site_quantize", "site_value"]

CONTROLS = ("none", "noise", "stochastic", "hadamard")


def control_spec(spec: QuantSpec | None, control: str) -> QuantSpec | None:
    """The spec a control quantizes with: stochastic rounding for ``"stochastic"`` (integer specs), else as is."""
    if spec is None or control != "stochastic" or spec.format != "int" or spec.bits == 1:
        return spec
    return spec.replace(rounding="stochastic")


@functools.lru_cache(maxsize=64)
def _rotation_np(d: int) -> np.ndarray:
    rng = np.random.default_rng(1_000_003 + d)
    if d & (d - 1) == 0:  # Sylvester Hadamard with random signs
        H = np.ones((1, 1))
        while H.shape[0] < d:
            H = np.block([[H, H], [H, -H]])
        return (H * rng.choice([-1.0, 1.0], size=d)[None, :] / math.sqrt(d)).astype(np.float32)
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))  # Haar: QR with the signs of R's diagonal fixed
    return (Q * np.sign(np.diag(R))[None, :]).astype(np.float32)


def rotation(d: int) -> Float[Array, "d d"]:
    """The fixed random orthogonal ``d×d`` rotation of the ``hadamard`` control (``R Rᵀ = I``)."""
    with jax.ensure_compile_time_eval():
        return jnp.asarray(_rotation_np(int(d)))


def site_value(W: jax.Array, spec: QuantSpec, key: Any, control: str = "none") -> jax.Array:
    """The forward value of a site under a control (no gradient rule): what the model computes with."""
    spec = control_spec(spec, control)
    k_q, k_n = (None, None) if key is None else tuple(jax.random.split(key))
    if spec.rounding == "stochastic" and k_q is None:
        k_q = jax.random.key(0)
    if control == "hadamard":
        R = rotation(W.shape[-1])
        return quant.fake_quant(W @ R, spec, key=k_q) @ R.T
    Q = quant.fake_quant(W, spec, key=k_q)
    if control != "noise":
        return Q
    ms = group_reduce(Q.astype(jnp.float32) - W.astype(jnp.float32), spec, "mean_square")
    k_n = jax.random.key(1) if k_n is None else k_n
    return (W + jnp.sqrt(ms) * jax.random.normal(k_n, W.shape, jnp.float32)).astype(W.dtype)


def site_quantize(
    W: Float[Array, "n d"], spec: QuantSpec, key: PRNGKeyArray | None, control: str = "none"
) -> Float[Array, "n d"]:
    """The site's quantizer under ``control``, with a straight-through gradient (rows = scale-group rows).

    ``control="none"`` is exactly :func:`zipfrmt.quant.fake_quant` (its clipped straight-through gradient
    included); the others use ``W + stop_gradient(value − W)``.
    """
    if control in ("none", "stochastic"):
        spec = control_spec(spec, control)
        if spec.rounding == "stochastic" and key is None:
            key = jax.random.key(0)
        return quant.fake_quant(W, spec, key=key)
    return W + jax.lax.stop_gradient(site_value(W, spec, key, control) - W)
