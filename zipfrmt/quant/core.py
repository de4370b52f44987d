"""The two entry points: ``quantize`` (measure what a spec does to a matrix) and ``fake_quant`` (train through it).

Both take a :class:`~zipfrmt.quant.QuantSpec` (or its text, or a bit width with keyword fields), look its
format up in the registry (:data:`zipfrmt.quant.formats.FORMATS`) and run the format's quantizer; nothing
here depends on which format it is.
"""

from __future__ import annotations

import functools
import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from zipfrmt.checks import check_float32_range, check_float_array, check_matrix_max_abs, describe, max_abs
from zipfrmt.quant import ggml, uniform
from zipfrmt.quant.formats import FORMATS
from zipfrmt.quant.noise import QuantResult, scaled_noise_moments, with_regime
from zipfrmt.quant.spec import QuantSpec, as_spec, check_spec_shape
from zipfrmt.quant.uniform import MIN_STEP, binary_exponent, times_pow2

__all__ = ["fake_quant", "quantize"]

_F32 = np.finfo(np.float32)
#: Binary exponents ``u`` (``max|W| ∈ [2^(u−1), 2^u)``) for which a real format sees ``W`` as it is: ``max|W|`` in
#: ``[2^−16, 2^11)``. Outside, it sees ``W·2^−u`` (see :func:`_format_quantize`).
_REAL_FORMAT_WINDOW = (-15, 11)


def _check_float32_range(W: Any, name: str = "W") -> float:
    """Checks that ``max|W|`` is 0 or a normal float32 number (float64 input is quantized in float32); returns it."""
    amax = max_abs(W)
    check_float32_range(amax, name, "quantization runs in float32")
    return amax


def _check_key(spec: QuantSpec, key: Any) -> Any:
    if spec.rounding != "stochastic":
        return None  # nearest rounding draws nothing: a key is accepted and ignored
    if key is None:
        raise ValueError(f"key: spec {spec.label!r} rounds stochastically and needs an explicit PRNG key "
                         "(jax.random.key(seed)), got None")
    if not isinstance(key, jax.Array):
        raise TypeError(f"key: expected a JAX PRNG key (jax.random.key(seed)), got {describe(key)}")
    return key


def _format_quantize(
    spec: QuantSpec, W: Float[Array, "V d"], key: Any, u: jax.Array, bits: uniform.Bits
) -> tuple[jax.Array, ...]:
    """(Q(W), scales, in-range mask, scales in units of ``2^u``) from the spec's format; ``W`` float32, ``u`` the
    binary exponent of ``max|W|``, ``bits`` the ``int`` format's width (an int, or traced: see :func:`_program_spec`;
    the registry's ``int`` quantizer, :func:`~zipfrmt.quant.uniform.quantize_uniform`, is called with it).

    The ``int`` quantizer scales each group by a power of two itself (:mod:`zipfrmt.quant.uniform`). A real format
    (Qwix) sees ``W`` as it is while ``max|W| ∈ [2^−16, 2^11)``, and ``W·2^−u`` (``max|W·2^−u| ∈ [0.5, 1)``)
    outside, its output and scales multiplied back by ``2^u``: for the absmax-scaled formats (fp8, nf4) and mxfp4's
    power-of-two scales this is exact, and it keeps Qwix's scale floor (a scale below √tiny ≈ 1e−19 becomes 1, so
    its group is zeroed) and nvfp4's fp8 block scales (at most 448) from deciding the result at extreme magnitudes.
    A group Qwix gave scale 1 (a zero group) keeps scale 1.
    """
    fmt = FORMATS[spec.format]
    if spec.format == "int":
        deq, scale, inside = uniform.quantize_uniform(spec, W, key, bits if spec.bits > 1 else 1)
        return deq, scale, inside, times_pow2(scale, -u)
    lo, hi = _REAL_FORMAT_WINDOW
    shift = jnp.where((u >= lo) & (u <= hi), 0, u)
    deq, scale, inside = fmt.quantize(spec, times_pow2(W, -shift), key)
    scale_u = times_pow2(scale, shift - u)
    scale = jnp.where((shift != 0) & (scale == 1.0), 1.0, times_pow2(scale, shift))
    return times_pow2(deq, shift), scale, inside, scale_u


#: ``max|W| ∈ [2^(u−1), 2^u)`` with ``|u|`` at most this: the statistics' float32 sums of squares can neither overflow
#: nor lose their leading terms to underflow, so they are measured on ``W`` itself (the fastest program).
_PLAIN_STATS_EXPONENT = 32


def _quantize_and_measure(
    spec: QuantSpec, W: Float[Array, "V d"], key: Any, u: jax.Array, bits: uniform.Bits, scaled: bool
) -> tuple[jax.Array, ...]:
    """Quantization and all its noise statistics in one compiled program (XLA fuses the passes over W).

    ``u`` is the binary exponent of ``max|W|`` (from the caller, who has ``max|W|`` already), ``bits`` the width of
    an ``int`` spec (traced: ``spec`` is :func:`_program_spec`'s, one program for every width ≥ 2). With ``scaled``, the
    statistics are measured on ``W``, ``Q(W)`` and the scales divided by ``2^u`` (exact), so that no square overflows
    or underflows in float32 (:func:`~zipfrmt.quant.noise_moments`); without, on them as they are. An entry of
    ``Q(W)`` that overflowed float32 makes ``noise_var_measured`` infinite.
    """
    fmt = FORMATS[spec.format]
    deq, scale, _, scale_u = _format_quantize(spec, W, key, u, bits)
    flushed = (scale_u == 0) & (spec.format != "int")  # a real format's own zero scale (nvfp4's e4m3 flush)
    if scaled:
        W_u, deq_u = times_pow2(W, -u), times_pow2(deq, -u)
    else:
        W_u, deq_u, scale_u, u = W, deq, scale, jnp.int32(0)
    moments = scaled_noise_moments(W_u, deq_u, deq == 0, u)
    moments["noise_var_model"] = fmt.noise_var(spec, W_u, deq_u, scale_u)
    if spec.format == "int" and spec.rounding == "stochastic":  # its model variance depends on W: say how much
        moments["noise_var_signal_free"] = uniform.uniform_noise_var(spec, W_u, deq_u, scale_u, signal_free=True)
    return deq, scale, moments, flushed


#: XLA:CPU compiles reductions into YNNPACK fusions by default. Along rows (a scale per row or per group) they take
#: a scratch of ¾ of W's size that XLA's buffer assignment does not see, and the statistics' sums run slower than
#: XLA's own loops (131,072×640 on 2 cores, with the groups' max and min in one variadic reduce,
#: :func:`zipfrmt.quant.uniform._max_min`: row 546 against 301 ms, group32 444 against 382 ms); per tensor and per
#: column they are as fast or faster (tensor: 324 against 353 ms) with no such scratch. llama.cpp's block formats
#: take one more copy of W with them (temporaries 2.0× against 1.04× W's size; time −34% to +20% by format). So a
#: row or group spec's program and a llama.cpp format's are compiled without them.
_NO_YNN_FUSIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
_measure = jax.jit(_quantize_and_measure, static_argnums=(0, 5))
_measure_no_ynn = jax.jit(_quantize_and_measure, static_argnums=(0, 5), compiler_options=_NO_YNN_FUSIONS)


def _program_spec(spec: QuantSpec) -> QuantSpec:
    """The spec a compiled program is keyed on: an ``int`` spec of ``b ≥ 2`` bits with ``b`` replaced by 2 (the width
    is a traced argument), so that the widths of an analysis (8, 6, 4, 3, 2 at one granularity) share one program —
    each costs ~0.2 s to compile and a few MB kept for the process's life."""
    return spec.replace(bits=2) if spec.format == "int" and spec.bits > 1 else spec


@functools.cache
def _no_ynn_supported() -> bool:
    """Whether this jaxlib's CPU compiler takes :data:`_NO_YNN_FUSIONS` (an XLA debug option older versions lack)."""
    if jax.default_backend() != "cpu":
        return False
    try:
        jax.jit(lambda x: x.sum(axis=1), compiler_options=_NO_YNN_FUSIONS).lower(jnp.zeros((2, 2))).compile()
    except Exception:  # noqa: BLE001 — an unknown option is reported as a generic runtime error
        return False
    return True


def _measure_program(spec: QuantSpec) -> Any:
    lean = spec.granularity in ("row", "group") or spec.format in ggml.GGML_FORMATS
    return _measure_no_ynn if lean and _no_ynn_supported() else _measure


def _check_result(spec: QuantSpec, scale: jax.Array, flushed: jax.Array, overflow: bool, amax: float) -> None:
    """Named errors for a result float32 cannot hold: a scale group whose grid is below float32's normal numbers
    (the int quantizer reports its step as 0; a real format's scale is below 2^-125), or levels above its largest
    number. A real format's scale that is 0 in units of ``max|W|`` (``flushed``: nvfp4's e4m3 block scale rounded
    to 0, the block flushed to zero) is the format's behaviour, not float32's, and is not an error."""
    scale = np.asarray(scale)
    small = int(((scale < MIN_STEP) & ~np.asarray(flushed)).sum())
    if small:
        raise ValueError(
            f"W: expected scale groups whose quantization step float32 can hold (at least 2^-125 ≈ {MIN_STEP:.3g}), "
            f"got {small} of {scale.size} groups of {spec.label!r} with a smaller step (max|W| = {amax:.3g}); "
            "quantize W·2^k for an integer k that lifts them and divide the result by 2^k"
        )
    if overflow:
        raise ValueError(
            f"W: expected max|W| far enough below float32's largest number {_F32.max:.4g} for the grid of "
            f"{spec.label!r}, got max|W| = {amax:.4g}: quantized entries overflow; "
            "quantize W·2^-k for a small integer k and multiply the result by 2^k"
        )


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
      model, and the regime. The statistics are measured in a binary scale of ``W`` (exact), so they are right at any
      magnitude float32 holds: ``rel_error``, the gain and the regime of ``c·W`` are those of ``W``.

    Raises:
      ValueError: ``max|W|`` above float32's largest number, or nonzero but below its smallest normal number
        (checked first); after quantizing, a nonzero scale group whose step (a real format: its scale) would be
        below ``2^−125`` (:data:`~zipfrmt.quant.uniform.MIN_STEP`; float32 cannot hold its grid), or quantized
        entries that overflow float32 (``max|W|`` within a step of float32's largest number).

    Example:
      >>> import jax, zipfrmt.quant as zq
      >>> W = jax.random.normal(jax.random.key(0), (256, 64))
      >>> r = zq.quantize(W, "int4-row")
      >>> r.regime, round(r.noise_var_measured / r.noise_var_model, 2)
      ('widrow', 1.0)
    """
    W, amax = check_matrix_max_abs(W)
    spec = as_spec(spec, **fields)
    check_spec_shape(spec, tuple(W.shape))
    key = _check_key(spec, key)
    check_float32_range(amax, "W", "quantization runs in float32")
    W = jnp.asarray(W)
    if W.dtype != jnp.float32:
        W = W.astype(jnp.float32)
    u = math.frexp(amax)[1]  # max|W|·2^-u ∈ [0.5, 1)
    measure = _measure_program(spec)
    deq, scale, moments, flushed = measure(_program_spec(spec), W, key, jnp.int32(u), jnp.int32(spec.bits or 0),
                                           abs(u) > _PLAIN_STATS_EXPONENT)
    stats = with_regime(moments)
    _check_result(spec, scale, flushed, not math.isfinite(stats["noise_var_measured"]), amax)
    return QuantResult(dequantized=deq, scale=scale, spec=spec, **stats)


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

    Outside tracing, ``W`` is checked like :func:`quantize`'s (finite, ``max|W|`` 0 or a normal float32 number).
    The result is not checked (this runs inside training steps): a scale group whose step float32 cannot hold
    comes out as the float32 rounding of its levels (0 where they are subnormal), never NaN.
    """
    spec = as_spec(spec, **fields)
    if getattr(W, "ndim", None) == 0:
        raise ValueError(f"W: expected an array with at least 1 dimension, got {describe(W)}")
    W = check_float_array(W, "W")
    if not isinstance(W, jax.core.Tracer):
        _check_float32_range(W)
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


@partial(jax.jit, static_argnums=0)
def _quantize_as(spec: QuantSpec, W: jax.Array, key: Any) -> tuple[jax.Array, jax.Array]:
    """(Q(W) in W's dtype, in-range mask): the format's quantizer on a float32 copy, as :func:`quantize` runs it.

    Compiled like :func:`quantize` also when called eagerly: XLA may rewrite arithmetic inside a compiled program
    (it once turned ``m/L`` into a product with ``1/L``, an ulp off), and the forward must equal ``quantize``'s
    exactly. The width is a constant here and traced there; both divide by an opaque ``L``, so the steps agree."""
    W32 = W.astype(jnp.float32)
    deq, _, inside, _ = _format_quantize(spec, W32, key, binary_exponent(jnp.max(jnp.abs(W32))), spec.bits)
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
