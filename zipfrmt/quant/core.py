"""The two entry points: ``quantize`` (measure what a spec does to a matrix) and ``fake_quant`` (train through it).

Both take a :class:`~zipfrmt.quant.QuantSpec` (or its text, or a bit width with keyword fields), look its
format up in the registry (:data:`zipfrmt.quant.formats.FORMATS`) and run the format's quantizer; nothing
here depends on which format it is.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from zipfrmt.checks import check_matrix, describe
from zipfrmt.quant.formats import FORMATS
from zipfrmt.quant.noise import QuantResult, noise_moments, with_regime
from zipfrmt.quant.spec import QuantSpec, as_spec, check_spec_shape

__all__ = ["fake_quant", "quantize"]


def _check_key(spec: QuantSpec, key: Any) -> Any:
    if spec.rounding != "stochastic":
        return None  # nearest rounding draws nothing: a key is accepted and ignored
    if key is None:
        raise ValueError(f"key: spec {spec.label!r} rounds stochastically and needs an explicit PRNG key "
                         "(jax.random.key(seed)), got None")
    if not isinstance(key, jax.Array):
        raise TypeError(f"key: expected a JAX PRNG key (jax.random.key(seed)), got {describe(key)}")
    return key


@partial(jax.jit, static_argnums=0)
def _quantize_and_measure(spec: QuantSpec, W: Float[Array, "V d"], key: Any) -> tuple[jax.Array, ...]:
    """Quantization and all its noise statistics in one compiled program (XLA fuses the passes over W)."""
    fmt = FORMATS[spec.format]
    deq, scale, _ = fmt.quantize(spec, W, key)
    moments = noise_moments(W, deq)
    moments["noise_var_model"] = fmt.noise_var(spec, W, deq, scale)
    return deq, scale, moments


def quantize(
    W: Float[Array, "V d"] | np.ndarray,
    spec: QuantSpec | str | int | None = None,
    *,
    key: PRNGKeyArray | None = None,
    **fields: Any,
) -> QuantResult:
    """Quantizes ``W`` as ``spec`` says and measures the noise it adds.

    Args:
      W: a ``V×d`` floating-point matrix (rows = tokens; for a linear weight, rows = output channels, so the
        scale groups run along the contraction axis). float64 is quantized in float32.
      spec: a :class:`~zipfrmt.quant.QuantSpec`, its text (``"int4-row"``, ``"int3-group32"``, ``"nf4"``,
        ``"fp8_e4m3-tensor"``, ``"mxfp4"``), or a bit width with the other fields as keywords
        (``quantize(W, 4, granularity="row")`` or ``quantize(W, bits=4, granularity="row")``, the uniform
        quantizer).
      key: a PRNG key, required by stochastic rounding (ignored otherwise).
      **fields: :class:`~zipfrmt.quant.QuantSpec` fields, only with a bit width.

    Returns:
      A :class:`~zipfrmt.quant.QuantResult`: ``Q(W)``, its scales, the measured noise beside the format's
      model, and the regime.

    Example:
      >>> import jax, zipfrmt.quant as zq
      >>> W = jax.random.normal(jax.random.key(0), (256, 64))
      >>> r = zq.quantize(W, "int4-row")
      >>> r.regime, round(r.noise_var_measured / r.noise_var_model, 2)
      ('widrow', 1.0)
    """
    W = check_matrix(W)
    spec = as_spec(spec, **fields)
    check_spec_shape(spec, tuple(W.shape))
    key = _check_key(spec, key)
    W = jnp.asarray(W)
    if W.dtype != jnp.float32:
        W = W.astype(jnp.float32)
    deq, scale, moments = _quantize_and_measure(spec, W, key)
    return QuantResult(dequantized=deq, scale=scale, spec=spec, **with_regime(moments))


def fake_quant(
    W: Float[Array, "..."],
    spec: QuantSpec | str | int | None = None,
    *,
    key: PRNGKeyArray | None = None,
    **fields: Any,
) -> Float[Array, "..."]:
    """``Q(W)`` with a straight-through gradient (Bengio et al. 2013), for quantization-aware training.

    Forward: exactly :func:`quantize`'s ``dequantized`` (in ``W``'s dtype). Backward: ``∂Q/∂W = 1`` where ``w``
    lies inside the clipping range and 0 where it was clipped (the "clipped STE"; with ``clip="absmax"``, and
    for the real formats, nothing is clipped, so the gradient is the identity). Works under
    ``jax.jit``/``grad``/``vmap``. A leading batch of matrices (``ndim > 2``) is quantized matrix by matrix
    over the last two axes (keys split per matrix); a 1-D vector is treated as one row. ``spec`` as in
    :func:`quantize`.
    """
    spec = as_spec(spec, **fields)
    if W.ndim < 1:
        raise ValueError(f"W: expected an array with at least 1 dimension, got {describe(W)}")
    if W.ndim == 1:
        return fake_quant(W[None], spec, key=key)[0]
    check_spec_shape(spec, tuple(W.shape))
    key = _check_key(spec, key)
    if W.ndim > 2:
        flat = W.reshape(-1, *W.shape[-2:])
        keys = None if key is None else jax.random.split(key, flat.shape[0])
        out = jax.vmap(lambda w, k: _fake_quant(spec, w, k))(flat, keys)
        return out.reshape(W.shape)
    return _fake_quant(spec, W, key)


def _quantize_as(spec: QuantSpec, W: jax.Array, key: Any) -> tuple[jax.Array, jax.Array]:
    """(Q(W) in W's dtype, in-range mask): the format's quantizer on a float32 copy."""
    deq, _, inside = FORMATS[spec.format].quantize(spec, W.astype(jnp.float32), key)
    return deq.astype(W.dtype), inside


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fake_quant(spec: QuantSpec, W: jax.Array, key: Any) -> jax.Array:
    return _quantize_as(spec, W, key)[0]


def _fake_quant_fwd(spec: QuantSpec, W: jax.Array, key: Any) -> tuple[jax.Array, Any]:
    deq, inside = _quantize_as(spec, W, key)
    return deq, (inside, key)


def _fake_quant_bwd(spec: QuantSpec, res: Any, g: jax.Array) -> tuple[jax.Array, Any]:
    inside, key = res
    key_ct = None if key is None else np.zeros(key.shape, jax.dtypes.float0)
    return jnp.where(inside, g, 0.0).astype(g.dtype), key_ct


_fake_quant.defvjp(_fake_quant_fwd, _fake_quant_bwd)
