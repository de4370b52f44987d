"""What a quantization did to a matrix: the measured noise beside the model's, and the regime.

For ``Q = Q(W)`` and ``E = Q − W`` (``N = V·d`` entries):

* ``noise_var_measured = ‖E‖_F²/N``, ``error_mean = ΣE/N``, ``zero_fraction`` (entries of Q equal to 0),
  ``rel_error = ‖E‖_F/‖W‖_F``;
* the Bussgang (1952) decomposition ``Q = g·W + D`` with ``D`` uncorrelated with ``W``:
  ``g = ⟨W, Q⟩/⟨W, W⟩`` and ``residual_var = ‖D‖_F²/N = (‖Q‖_F² − g²‖W‖_F²)/N``;
* the regime (:func:`classify_regime`) in which the model noise variance of the format describes the error.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from zipfrmt.quant.spec import QuantSpec
from zipfrmt.quant.uniform import binary_exponent, row_sums, times_pow2

__all__ = ["WIDROW_GAIN_TOL", "WIDROW_VAR_RTOL", "QuantResult", "classify_regime", "noise_moments",
           "noise_statistics", "scaled_noise_moments"]

#: Regime rule thresholds (see :func:`classify_regime`).
WIDROW_VAR_RTOL = 0.05
WIDROW_GAIN_TOL = 0.02

STAT_NAMES = ("noise_var_model", "noise_var_measured", "error_mean", "zero_fraction", "bussgang_gain",
              "residual_var", "rel_error", "regime")


def noise_moments(W: Float[Array, "V d"], Q: Float[Array, "V d"]) -> dict[str, Float[Array, ""]]:
    """The measured statistics of ``E = Q − W`` in one pass over the matrices (jit-able).

    The sums run on ``W·2^−u`` and ``Q·2^−u``, ``u`` the binary exponent of ``max|W|`` (``max|W|·2^−u ∈ [0.5, 1)``):
    scaling by a power of two is exact, and it keeps ``‖W‖_F²``, ``‖E‖_F²``, ``⟨W, Q⟩`` and ``‖Q‖_F²`` inside
    float32's range whatever the magnitude of ``W`` (at ``max|W| = 1e−30`` the plain squares underflow to 0, at
    ``3e38`` they overflow). The ratios (``rel_error``, ``bussgang_gain``, ``zero_fraction``) come out as they are;
    ``noise_var_measured`` and ``residual_var`` are in units of ``2^(2u)``, ``error_mean`` in units of ``2^u``, and
    ``u`` is returned as ``log2_unit`` (:func:`with_regime` turns them into absolute Python floats).
    """
    W = W.astype(jnp.float32)
    Q = Q.astype(jnp.float32)
    u = binary_exponent(jnp.max(jnp.abs(W)))
    return scaled_noise_moments(times_pow2(W, -u), times_pow2(Q, -u), Q == 0, u)


def scaled_noise_moments(
    W: Float[Array, "V d"], Q: Float[Array, "V d"], q_is_zero: Bool[Array, "V d"], log2_unit: jax.Array
) -> dict[str, Float[Array, ""]]:
    """:func:`noise_moments` of ``W`` and ``Q`` already divided by ``2^log2_unit`` (``q_is_zero``: where the unscaled
    ``Q`` is 0, as an entry far below ``max|W|`` may underflow in the scaled ``Q``)."""
    E = Q - W
    ww, ee, e, zeros, wq, qq = row_sums(W * W, E * E, E, q_is_zero.astype(jnp.float32), W * Q, Q * Q)
    safe_ww = jnp.where(ww > 0, ww, 1.0)
    gain = jnp.where(ww > 0, wq / safe_ww, 1.0)
    return {
        "noise_var_measured": ee / E.size,
        "error_mean": e / E.size,
        "zero_fraction": zeros / E.size,
        "bussgang_gain": gain,
        "residual_var": jnp.maximum(qq - gain * wq, 0.0) / E.size,  # ‖Q‖² − g²‖W‖², as g·⟨W,Q⟩ = g²‖W‖²
        "rel_error": jnp.sqrt(ee / safe_ww),
        "log2_unit": jnp.asarray(log2_unit, jnp.int32),
    }


def classify_regime(
    noise_var_model: float,
    noise_var_measured: float,
    bussgang_gain: float,
    noise_var_signal_free: float | None = None,
) -> str:
    """``"widrow"`` where the format's additive noise model holds, else ``"dead-zone"``.

    The model ``E ≈ U(−Δ/2, Δ/2)``, independent of ``W`` (Bennett's cell widths for non-uniform formats),
    predicts two measurable facts: the error variance is the model's and the error is uncorrelated with ``W``
    (Bussgang gain ``g = 1 + ⟨W,E⟩/⟨W,W⟩ = 1``). The regime is ``widrow`` when both hold to within

        |measured / model − 1| ≤ 5%   and   |g − 1| ≤ 0.02,

    and ``dead-zone`` otherwise: the step is large against the spread of its group, most entries round to 0
    (or are clipped), and the error is correlated with ``W``. For Gaussian entries this boundary lies near
    ``Δ ≈ 2σ`` (Widrow's characteristic-function criterion: the model's error is ~``exp(−2π²σ²/Δ²)``).
    An exactly reproduced matrix (zero error, zero model) is ``widrow``.

    Stochastic rounding passes both tests by construction — its error has mean 0 given ``W`` (g = 1) and its
    model variance ``mean f(1−f)Δ²`` is exact — although in the dead zone that variance (≈ ``|w|Δ`` for
    ``|w| < Δ``) depends on ``W``. ``noise_var_signal_free`` (``mean Δ²/6``, the variance when ``f`` is uniform and
    the noise independent of ``W``) adds the third test ``|model / signal_free − 1| ≤ 5%``: a larger departure
    means signal-dependent noise, ``dead-zone``.
    """
    if noise_var_model == 0:
        return "widrow" if noise_var_measured == 0 else "dead-zone"
    ok_var = abs(noise_var_measured / noise_var_model - 1.0) <= WIDROW_VAR_RTOL
    ok_gain = abs(bussgang_gain - 1.0) <= WIDROW_GAIN_TOL
    ok_free = noise_var_signal_free is None or (
        noise_var_signal_free > 0 and abs(noise_var_model / noise_var_signal_free - 1.0) <= WIDROW_VAR_RTOL
    )
    return "widrow" if ok_var and ok_gain and ok_free else "dead-zone"


#: The statistics that are variances (in units of ``2^(2u)`` in the moments) and means (units of ``2^u``).
_VARIANCES = ("noise_var_measured", "residual_var", "noise_var_model", "noise_var_signal_free")


def with_regime(moments: dict[str, Any]) -> dict[str, Any]:
    """Device scalars → Python floats in absolute units (variances × ``2^(2u)``, ``error_mean`` × ``2^u``, with
    ``u = log2_unit``, in float64, which holds the square of every float32), plus the regime they imply."""
    stats = {k: float(v) for k, v in jax.device_get(moments).items()}
    unit = 2.0 ** int(stats.pop("log2_unit", 0))
    for name in _VARIANCES:
        if name in stats:
            stats[name] *= unit * unit
    stats["error_mean"] *= unit
    free = stats.pop("noise_var_signal_free", None)  # a regime test only (stochastic rounding), not a statistic
    stats["regime"] = classify_regime(stats["noise_var_model"], stats["noise_var_measured"], stats["bussgang_gain"],
                                      free)
    return stats


_noise_moments_jit = jax.jit(noise_moments)


def noise_statistics(W: Any, Q: Any, noise_var_model: float) -> dict[str, Any]:
    """Measured noise of a quantized matrix ``Q`` of ``W`` beside the model variance, with the regime.

    Returns a dict with the names of :data:`STAT_NAMES`: ``noise_var_model``, ``noise_var_measured``
    (mean of ``(Q − W)²``), ``error_mean``, ``zero_fraction`` (entries of ``Q`` equal to 0), ``bussgang_gain``
    ``⟨W,Q⟩/⟨W,W⟩`` (1 for an all-zero ``W``), ``residual_var`` (per-entry variance of ``Q − gW``),
    ``rel_error`` ``‖Q − W‖_F/‖W‖_F`` and ``regime``.
    """
    moments = _noise_moments_jit(jnp.asarray(W), jnp.asarray(Q))
    unit = 2.0 ** int(moments["log2_unit"])
    moments["noise_var_model"] = float(noise_var_model) / (unit * unit)
    return with_regime(moments)


@dataclasses.dataclass(frozen=True)
class QuantResult:
    """A quantized matrix and its noise statistics, for every spec alike (integer or real format).

    Attributes:
      dequantized: ``Q(W)``, the matrix on the quantization grid (same shape as ``W``, float32).
      scale: the scales of the scale groups. For ``int`` specs the step Δ: a scalar (``tensor``), ``(V, 1)``
        (``row``), ``(1, d)`` (``column``) or ``(V, ceil(d/g))`` (``group``); for ``bits = 1``
        ``Δ = 2·mean|w|``. For a real format Qwix's scale (the absmax over the format's largest level, or the
        block scale) — *not* a grid spacing.
      spec: the :class:`~zipfrmt.quant.QuantSpec` used.
      noise_var_model: the format's model variance, a mean over entries: ``mean(Δ²)/12`` for ``int``
        (``mean(f(1−f)Δ²)`` for stochastic rounding), where entries the grid reproduces by construction count
        0; Bennett's cell-width formula for real formats.
      noise_var_measured: ``mean((Q − W)²)``.
      error_mean: ``mean(Q − W)``.
      zero_fraction: fraction of entries quantized to 0.
      bussgang_gain: ``g = ⟨W, Q⟩ / ⟨W, W⟩``.
      residual_var: ``‖Q − gW‖_F²/(V d)``, the variance of the Bussgang residual.
      rel_error: ``‖Q − W‖_F / ‖W‖_F``.
      regime: ``"widrow"`` or ``"dead-zone"`` (:func:`classify_regime`).
    """

    dequantized: jax.Array = dataclasses.field(repr=False)
    scale: jax.Array = dataclasses.field(repr=False)
    spec: QuantSpec
    noise_var_model: float
    noise_var_measured: float
    error_mean: float
    zero_fraction: float
    bussgang_gain: float
    residual_var: float
    rel_error: float
    regime: str

    def stats(self) -> dict[str, Any]:
        """The noise statistics as a plain dict (the names of :data:`STAT_NAMES`)."""
        return {n: getattr(self, n) for n in STAT_NAMES}
