"""SpecQuant — smoothing, channel-wise Fourier truncation and residual quantization (Zhao et al., arXiv 2511.11663,
AAAI 2026).

Layout (Flax): a linear layer computes ``y = x @ W`` with ``W`` of shape ``(d_in, d_out)``. An *output channel*
is a column ``W[:, j]``; the paper's "per output channel, rFFT along the input dimension" is ``rfft(W, axis=0)``
(``axis=0``, the default). For an embedding table ``E`` (``V×d``, rows = tokens) use ``axis=1``: each token's row
is a channel, transformed along its ``d`` features, and its residual gets one scale per token (the package's
``row`` granularity). There are no activations for a table, so smoothing is off.

The pipeline, for weight bits ``b`` and a mean budget ``β`` (fraction of the ``F = ⌊n/2⌋ + 1`` rFFT coefficients
of a channel of length ``n`` kept, averaged over channels):

1. *Smoothing* (SmoothQuant, Xiao et al. 2023): ``X̂ = X diag(λ)⁻¹``, ``Ŵ = diag(λ) W``, so ``X̂Ŵ = XW`` exactly,
   with ``λ_i = max|X_{:,i}|^α / max|W_{i,:}|^(1−α)`` per input channel ``i``; ``α`` is searched on a grid per
   layer to minimise ``‖XW − (X̂W′ + Q_a(X̂)·Q(R))‖_F`` (``W′``, ``R`` below; ``Q_a`` per-token activation
   quantization at ``act_bits``).
2. *Truncation*: ``F_j = rfft(ŵ_j)``; keep its ``k_j`` lowest-frequency coefficients, stored in 16 bit
   (``coeff_dtype``) as ``round(F_j·2^s_j)·2^−s_j`` with a per-channel power of two ``2^s_j`` that brings the
   channel's largest ``|Re F|``, ``|Im F|`` to ``[2^14, 2^15)`` (so float16 never overflows, and its rounding is
   that of the unscaled coefficients wherever those are normal float16 numbers); ``W′_j = irfft(F_j ⊙ 1[f < k_j])``.
3. *Residual*: ``R = Ŵ − W′`` quantized per channel with :func:`zipfrmt.quant.quantize` (symmetric absmax by
   default); ``Ŵ_q = W′ + Q_b(R)`` and ``XW ≈ X̂W′ + Q(X̂)Q(R)``.
4. *Budget* ``x_j = min(F, c·s_j)`` with ``c`` chosen so ``Σ_j x_j = β·C·F`` (water-filling proportional to an
   importance score ``s_j``), rounded by largest remainder so that ``Σ_j k_j = round(β·C·F)`` exactly: the
   realised mean ``Σk_j/(C·F)`` is β to within ``1/(2·C·F)`` (:attr:`SpecQuantResult.realised_budget`).
   Scores: ``"entropy"`` (``exp`` of the spectral entropy of ``|F_j|²``: the effective number of occupied
   frequencies, so a spread-out channel gets more coefficients — the paper's ablation ranks spectral entropy
   best, but this mapping of the score to ``k_j`` is this package's reading, not a rule the paper states),
   ``"mean-product"`` (mean of ``|x̂_i|·|ŵ_ij|`` along the channel, ``|x̂_i|`` the mean activation magnitude;
   ``|ŵ_ij|`` alone without activations), ``"abs-max"``, ``"l2"``, or ``"uniform"`` (``k_j ∈ {⌊βF⌋, ⌈βF⌉}``).
   ``β = 1`` keeps everything, ``β = 0`` nothing.

Storage: a real channel of length ``n`` has ``F`` rFFT coefficients; coefficient 0 (and ``n/2`` for even ``n``)
is real, the others complex. A kept coefficient costs 16 bits per real number it holds (16 for a real one, 32 for
a complex one), so keeping all ``F`` costs exactly ``16·n`` bits, as storing the channel would. The overhead is
``16 · #reals kept / (d_in·d_out)`` bits per weight beyond the ``b``-bit residual; the per-channel ``k_j``,
coefficient exponents ``s_j`` and scales, and ``λ`` (folded into the previous layer, as in SmoothQuant), are not
counted. :func:`budget_bits` converts a budget β to this overhead (β = 0.02: 0.26 bits per weight for n = 256,
0.165 for n = 64).

Scale: every power and Fourier spectrum is computed on the weight scaled by a power of two (exact), the α search
on ``W`` and ``X`` scaled so, and ``λ`` in float64; a ``W``, ``X`` or smoothed weight beyond float32's range is a
ValueError that names it.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from zipfrmt import quant
from zipfrmt.checks import (
    check_choice,
    check_float32_range,
    check_float_array,
    check_int,
    check_matrix,
    check_number,
    describe,
    max_abs,
)
from zipfrmt.quant.uniform import binary_exponent, times_pow2

__all__ = [
    "ALPHA_GRID",
    "IMPORTANCES",
    "SpecQuantResult",
    "budget_bits",
    "channel_budgets",
    "low_frequency_energy",
    "smooth",
    "smoothing_factors",
    "specquant",
]

IMPORTANCES = ("entropy", "mean-product", "abs-max", "l2", "uniform")

#: Migration strengths α searched per layer.
ALPHA_GRID = tuple(round(0.05 * i, 2) for i in range(21))

_EPS = 1e-12
_F32 = np.finfo(np.float32)

#: Each channel's kept coefficients are scaled by ``2^(15 − c_j)`` before they are rounded to ``coeff_dtype``
#: (``c_j`` the binary exponent of the channel's largest ``|Re F|``, ``|Im F|``), so the largest lies in
#: ``[2^14, 2^15)``: below float16's largest number 65504 (no overflow), and with float16's whole normal range
#: beneath it. Scaling by a power of two commutes with rounding to float16/bfloat16 wherever both values are
#: normal numbers, so the stored values are the dtype's rounding of the coefficients at the channel's own scale.
_COEFF_EXP = 15


# ---------------------------------------------------------------------------------------------------------
# Smoothing
# ---------------------------------------------------------------------------------------------------------


def _smoothing_factors(W: Float[Array, "d_in d_out"], x_max: Float[Array, " d_in"], alpha: Any) -> jax.Array:
    """λ in float32 under jit (the α search, on inputs scaled to ``max ∈ [0.5, 1)``): no clamp, so tiny maxima
    give the scale-correct ``x^α``; 1 for an all-zero channel (or a factor float32 cannot hold)."""
    w_max = jnp.max(jnp.abs(W), axis=1)
    ok = (x_max > 0) & (w_max > 0)
    lam = jnp.power(jnp.where(ok, x_max, 1.0), alpha) / jnp.power(jnp.where(ok, w_max, 1.0), 1.0 - alpha)
    ok = ok & jnp.isfinite(lam) & (lam > 0)
    return jnp.where(ok, lam, 1.0)


def _check_range(x: Any, name: str) -> None:
    check_float32_range(max_abs(x), name, "SpecQuant runs in float32")


def _check_X(X: Any, d_in: int) -> Any:
    X = check_float_array(X, "X", ndim=2)
    if X.shape[1] != d_in:
        raise ValueError(
            f"X: expected calibration activations of width d_in={d_in} (rows = samples of the layer input, "
            f"y = x @ W with W of shape (d_in, d_out)), got shape {tuple(X.shape)}"
        )
    _check_range(X, "X")
    return X


def _channel_max(a: Any, axis: int) -> np.ndarray:
    """``max|a|`` along ``axis`` in float64 on the host (exact, subnormal float32 entries included)."""
    return np.max(np.abs(np.asarray(a, np.float64)), axis=axis)


def _check_smoothed_range(lam: np.ndarray, w_max: np.ndarray, x_max: np.ndarray, what: str) -> None:
    """``diag(λ)W`` and ``X diag(λ)⁻¹`` (bounded by ``λ_i·max|W_i|`` and ``max|X_i|/λ_i``) must fit float32."""
    w_hat = float(np.max(lam * w_max))
    x_hat = float(np.max(x_max / lam))
    if max(w_hat, x_hat) > float(_F32.max):
        raise ValueError(
            f"X: expected activations and weights whose smoothed versions fit float32 (|x| ≤ {_F32.max:.4g}; "
            f"{what}), got max|diag(λ)W| = {w_hat:.4g} and max|X diag(λ)⁻¹| = {x_hat:.4g}; scale X or W down"
        )


def _smoothing_host(W: Any, X: Any, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``(λ, x_max)`` in float64: ``λ_i = max|X_i|^α / max|W_i|^(1−α)``, 1 where either maximum is 0.

    Computed in float64 from the exact maxima (no clamp): ``λ(cX) = c^α·λ(X)`` at any scale. A factor outside
    float32's normal range, or a smoothed weight/input beyond float32's range, is a ValueError.
    """
    w_max = _channel_max(W, 1)
    x_max = _channel_max(X, 0)
    ok = (x_max > 0) & (w_max > 0)
    lam = np.where(ok, np.where(ok, x_max, 1.0) ** alpha / np.where(ok, w_max, 1.0) ** (1.0 - alpha), 1.0)
    lo, hi = float(lam.min()), float(lam.max())
    if hi > float(_F32.max) or lo < float(_F32.tiny):
        raise ValueError(
            f"X: expected smoothing factors λ_i = max|X_i|^α / max|W_i|^(1−α) within float32's normal range "
            f"[{_F32.tiny:.4g}, {_F32.max:.4g}], got λ in [{lo:.4g}, {hi:.4g}] at α = {alpha:g}; scale X or W"
        )
    _check_smoothed_range(lam, w_max, x_max, f"α = {alpha:g}")
    return lam, x_max


def smoothing_factors(W: Float[Array, "d_in d_out"], X: Float[Array, "N d_in"], alpha: float) -> Float[Array, " d_in"]:
    """SmoothQuant factors ``λ_i = max|X_{:,i}|^α / max|W_{i,:}|^(1−α)`` per input channel, as float32.

    Computed in float64 from the exact maxima, so ``λ(W, cX) = c^α·λ(W, X)`` at any scale. ``λ_i = 1`` where
    ``X_{:,i}`` or ``W_{i,:}`` is all zero (undefined); a factor outside float32's normal range is a ValueError.
    """
    W = check_matrix(W)
    _check_range(W, "W")
    X = _check_X(X, W.shape[0])
    alpha = check_number(alpha, "alpha", lo=0.0, hi=1.0)
    lam, _ = _smoothing_host(W, X, alpha)
    return jnp.asarray(lam, jnp.float32)


def smooth(
    W: Float[Array, "d_in d_out"], X: Float[Array, "N d_in"], lam: Float[Array, " d_in"]
) -> tuple[Float[Array, "d_in d_out"], Float[Array, "N d_in"]]:
    """``(Ŵ, X̂) = (diag(λ) W, X diag(λ)⁻¹)``; ``X̂ Ŵ = X W`` up to rounding.

    ``λ`` must be positive and finite, within float32's normal range, and such that ``Ŵ`` and ``X̂`` fit float32.
    """
    W = check_matrix(W)
    _check_range(W, "W")
    X = _check_X(X, W.shape[0])
    lam = check_float_array(lam, "lam", ndim=1)
    if lam.shape[0] != W.shape[0]:
        raise ValueError(f"lam: expected {W.shape[0]} factors (one per input channel), got shape {tuple(lam.shape)}")
    lam64 = np.asarray(lam, np.float64)
    bad = int((lam64 <= 0).sum())
    if bad:
        raise ValueError(f"lam: expected positive smoothing factors (X̂ = X/λ divides by them), got {bad} entries ≤ 0 "
                         f"in {describe(lam)}")
    lo, hi = float(lam64.min()), float(lam64.max())
    if hi > float(_F32.max) or lo < float(_F32.tiny):
        raise ValueError(f"lam: expected factors within float32's normal range [{_F32.tiny:.4g}, {_F32.max:.4g}], "
                         f"got λ in [{lo:.4g}, {hi:.4g}]")
    _check_smoothed_range(lam64, _channel_max(W, 1), _channel_max(X, 0), "the given λ")
    lam = jnp.asarray(lam, jnp.float32)
    return jnp.asarray(W) * lam[:, None], jnp.asarray(X) / lam[None, :]


# ---------------------------------------------------------------------------------------------------------
# Fourier truncation and budgets (on the channel-columns layout: FFT along axis 0, channel j = column j)
# ---------------------------------------------------------------------------------------------------------


def _multiplicity(n: int) -> np.ndarray:
    """Reals held by each rFFT coefficient of a length-n real signal (1 for DC and even-n Nyquist, else 2)."""
    F = n // 2 + 1
    m = np.full(F, 2, np.int64)
    m[0] = 1
    if n % 2 == 0:
        m[-1] = 1
    return m


def _power(Fc: jax.Array, n: int) -> Float[Array, "F C"]:
    """Parseval-weighted power ``m_f |F_f|² / n``: sums to the channel's energy ``‖w_j‖²``."""
    m = jnp.asarray(_multiplicity(n), jnp.float32)[:, None]
    return m * (jnp.real(Fc) ** 2 + jnp.imag(Fc) ** 2) / n


def _normalised(Wc: Float[Array, "n C"]) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(W_g, E, e)``: ``W_g = W_c·2^−E`` with ``E`` the binary exponent of ``max|W_c|`` (``max|W_g| ∈ [0.5, 1)``),
    and ``e_j`` that of channel ``j``'s ``max|W_g,j|`` (0 for a zero channel). Powers of two scale exactly, so
    everything computed from ``W_g`` is ``W_c``'s up to that factor — and squares neither overflow nor underflow."""
    E = binary_exponent(jnp.max(jnp.abs(Wc)))
    Wg = times_pow2(Wc, -E)
    return Wg, E, binary_exponent(jnp.max(jnp.abs(Wg), axis=0))


def _unit_power(Fc: jax.Array, e: jax.Array, n: int) -> Float[Array, "F C"]:
    """:func:`_power` of each channel's coefficients scaled by ``2^−e_j`` (the channel's own max ``|w|`` brought to
    ``[0.5, 1)``): ratios of these — the spectral entropy, the kept share — are those of ``|F|²`` at any scale."""
    return _power(times_pow2(Fc, -e[None, :]), n)


def _importance(kind: str, Wc: jax.Array, P: jax.Array, act: jax.Array | None) -> Float[Array, " C"]:
    """Scores on the globally normalised channels ``Wc`` (``max|Wc| ∈ [0.5, 1)``) and per-channel powers ``P``;
    ``act`` is scaled by a power of two to ``max ∈ [0.5, 1)`` (only ratios of scores matter)."""
    if kind == "entropy":
        total = jnp.sum(P, axis=0, keepdims=True)
        p = P / jnp.where(total > 0, total, 1.0)
        H = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=0)
        return jnp.where(total[0] > 0, jnp.exp(H), 0.0)
    if kind == "mean-product":
        if act is not None:
            act = times_pow2(act, -binary_exponent(jnp.max(jnp.abs(act))))
        A = jnp.abs(Wc) if act is None else jnp.abs(Wc) * act
        return jnp.mean(A, axis=0)
    if kind == "abs-max":
        return jnp.max(jnp.abs(Wc), axis=0)
    if kind == "l2":
        return jnp.sqrt(jnp.sum(Wc * Wc, axis=0))
    return jnp.ones(Wc.shape[1], Wc.dtype)


def _allocate(s: Float[Array, " C"], budget: Any, F: int) -> Int[Array, " C"]:
    """Water-filling ``x_j = min(F, c·s_j)`` with ``Σ_j x_j = β·C·F`` (bisection on ``c``), then largest-remainder
    rounding: ``k_j = ⌊x_j⌋``, plus one for the ``T − Σ⌊x_j⌋`` channels with the largest fractional parts (ties to
    the lower index; a channel already at ``F`` gets none), so ``Σ_j k_j = T = round(β·C·F)`` exactly (the product
    taken in float32). A channel of importance 0 gets coefficients only once every other channel is full; if
    every importance is 0 the budgets are uniform. All ``F`` at β = 1, none at β = 0. The scores are divided by
    their maximum first: only their ratios matter."""
    C = s.shape[0]
    s = jnp.maximum(s, 0.0)
    smax = jnp.max(s)
    s = s / jnp.where(smax > 0, smax, 1.0)
    # zero importance → a tiny positive one (so the target is always reachable); all zero → uniform
    s = jnp.where(smax > 0, jnp.where(s > 0, s, _EPS), 1.0)
    target = budget * (C * F)
    hi0 = F / jnp.min(s)

    def body(_: int, lohi: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        over = jnp.sum(jnp.minimum(F, mid * s)) > target
        return jnp.where(over, lo, mid), jnp.where(over, mid, hi)

    _, c = jax.lax.fori_loop(0, 100, body, (jnp.zeros(()), hi0 * 1.0))
    x = jnp.minimum(F, c * s)
    base = jnp.clip(jnp.floor(x), 0, F).astype(jnp.int32)
    T = jnp.round(target).astype(jnp.int32)
    open_ = base < F
    extra = jnp.clip(T - jnp.sum(base), 0, jnp.sum(open_))
    order = jnp.argsort(-jnp.where(open_, x - base, -1.0), stable=True)  # largest remainder first
    rank = jnp.zeros(C, jnp.int32).at[order].set(jnp.arange(C, dtype=jnp.int32))
    k = base + ((rank < extra) & open_).astype(jnp.int32)
    k = jnp.where(budget >= 1.0, F, k)
    return jnp.where(budget <= 0.0, 0, k)


def _to_coeff_dtype(Fc: jax.Array, coeff_dtype: Any) -> jax.Array:
    """The coefficients as stored: each channel scaled by ``2^s_j`` (``s_j = 15 − c_j``, see :data:`_COEFF_EXP`),
    rounded to ``coeff_dtype``, and scaled back — exact powers of two, so no coefficient overflows float16."""
    re, im = jnp.real(Fc), jnp.imag(Fc)
    c = binary_exponent(jnp.max(jnp.maximum(jnp.abs(re), jnp.abs(im)), axis=0))
    s = (_COEFF_EXP - c)[None, :]

    def store(x: jax.Array) -> jax.Array:
        return times_pow2(times_pow2(x, s).astype(coeff_dtype).astype(jnp.float32), -s)

    return jax.lax.complex(store(re), store(im))


def _truncate(
    Wg: jax.Array, e: jax.Array, k: jax.Array, coeff_dtype: Any
) -> tuple[jax.Array, jax.Array]:
    """(W′, kept share of the energy per channel) for normalised channel-columns ``Wg`` (per-channel exponents
    ``e``, :func:`_normalised`) keeping ``k_j`` lowest coefficients; the share of a zero channel is 1."""
    n = Wg.shape[0]
    Fc = jnp.fft.rfft(Wg, axis=0)
    if coeff_dtype is not None:
        Fc = _to_coeff_dtype(Fc, coeff_dtype)
    keep = jnp.arange(Fc.shape[0])[:, None] < k[None, :]
    Fk = jnp.where(keep, Fc, 0.0)
    Wu = times_pow2(Wg, -e[None, :])
    total = jnp.sum(Wu * Wu, axis=0)
    kept = jnp.sum(_unit_power(Fk, e, n), axis=0)
    share = jnp.where(total > 0, kept / jnp.where(total > 0, total, 1.0), 1.0)
    return jnp.fft.irfft(Fk, n=n, axis=0), share


def _to_channels(W: jax.Array, axis: int) -> jax.Array:
    return W if axis == 0 else W.T


@partial(jax.jit, static_argnames=("bits", "importance", "axis", "coeff_dtype", "scheme", "clip"))
def _core(
    W_hat: Float[Array, "d_in d_out"],
    act: Float[Array, " d_in"] | None,
    budget: Any,
    bits: int,
    importance: str,
    axis: int,
    coeff_dtype: Any,
    scheme: str,
    clip: str,
) -> tuple[jax.Array, ...]:
    """(W′, Q(R), k, kept share of each channel's energy) in the original layout; the residual quantized per
    channel. The spectra are computed on the matrix scaled by a power of two (:func:`_normalised`): exact, so
    ``W′(2^m·W) = 2^m·W′(W)``, and no power overflows or underflows at any scale."""
    Wc = _to_channels(W_hat.astype(jnp.float32), axis)
    n = Wc.shape[0]
    F = n // 2 + 1
    Wg, E, e = _normalised(Wc)
    P = _unit_power(jnp.fft.rfft(Wg, axis=0), e, n)
    # Activations belong to W's rows (its input channels) whatever the channel axis.
    actc = None if act is None else _to_channels(jnp.broadcast_to(act[:, None], W_hat.shape), axis)
    k = _allocate(_importance(importance, Wg, P, actc), budget, F)
    Wpg, energy = _truncate(Wg, e, k, coeff_dtype)
    Wp = times_pow2(Wpg, E)
    R = Wc - Wp
    Rq = quant.fake_quant(R, bits, scheme=scheme, granularity="column", clip=clip)
    return _to_channels(Wp, axis), _to_channels(Rq, axis), k, energy


@partial(jax.jit, static_argnames=("bits", "act_bits", "importance", "axis", "coeff_dtype", "scheme", "clip"))
def _alpha_errors(
    W: Float[Array, "d_in d_out"],
    X: Float[Array, "N d_in"],
    alphas: Float[Array, " A"],
    budget: Any,
    bits: int,
    act_bits: int | None,
    importance: str,
    axis: int,
    coeff_dtype: Any,
    scheme: str,
    clip: str,
) -> Float[Array, " A"]:
    """``‖XW − (X̂W′ + Q_a(X̂)·Q(R))‖_F`` for each α: the 16-bit branch sees X̂ itself, the residual its
    quantized version (Zhao et al., eq. for XW ≈ X̂W′ + Q(X̂)Q(R)). The caller scales ``W`` and ``X`` by powers of
    two to ``max ∈ [0.5, 1)``; the norm is taken as ``m·‖D/m‖`` (``m = max|D|``), so it overflows only if it
    exceeds float32's range. A non-finite entry is a broken α, which the caller skips."""
    W = W.astype(jnp.float32)
    X = X.astype(jnp.float32)
    Y = X @ W
    x_max = jnp.max(jnp.abs(X), axis=0)

    def err(alpha: jax.Array) -> jax.Array:
        lam = _smoothing_factors(W, x_max, alpha)
        Xh = X / lam[None, :]
        Wh = W * lam[:, None]
        act = jnp.mean(jnp.abs(Xh), axis=0)
        Wp, Rq, _, _ = _core(Wh, act, budget, bits, importance, axis, coeff_dtype, scheme, clip)
        Xq = Xh if act_bits is None else quant.fake_quant(Xh, act_bits, granularity="row")
        D = Y - (Xh @ Wp + Xq @ Rq)
        m = jnp.max(jnp.abs(D))
        return m * jnp.sqrt(jnp.sum(jnp.square(D / jnp.where(m > 0, m, 1.0))))

    return jax.lax.map(err, alphas)


# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SpecQuantResult:
    """A SpecQuant-quantized weight.

    Attributes:
      weight: the effective dequantized weight in the original basis, ``diag(λ)⁻¹ (W′ + Q_b(R))`` — what a
        full-precision input sees (``x @ weight ≈ x @ W``); shape and layout of ``W``.
      smoothed_weight: ``Ŵ_q = W′ + Q_b(R)``, the weight that multiplies the smoothed input ``X̂``.
      low_freq_branch: ``W′``, the 16-bit low-frequency branch (smoothed basis).
      residual: the :class:`zipfrmt.quant.QuantResult` of ``R = Ŵ − W′`` (per-channel scales; its noise
        statistics are those of the whole weight's quantization error in the smoothed basis).
      budgets: ``k_j``, rFFT coefficients kept per channel (``C`` channels, ``F = ⌊n/2⌋+1`` possible each).
      n_freq: ``F``.
      smoothing: ``λ`` per input channel (all ones without activations).
      alpha: the migration strength used (NaN without activations).
      energy_kept: per channel, the fraction of ``‖ŵ_j‖²`` in the kept coefficients (Parseval).
      overhead_bits: storage of the kept coefficients (16 bits per real number for the default float16
        ``coeff_dtype``, 32 for ``None``), in bits per weight beyond the ``b``-bit residual; equal to
        :func:`budget_bits` ``(budget, n)`` whenever every channel keeps between 1 and ``F − 1`` coefficients
        or all keep ``⌊βF⌋`` or ``⌈βF⌉`` (always for ``"uniform"``).
      realised_budget: ``Σ_j k_j / (C·F)``, the mean fraction of coefficients actually kept; the allocation
        rounds the total, so it differs from ``budget`` by at most ``1/(2·C·F)``.
      bits, budget, importance, axis: the settings.
    """

    weight: jax.Array = dataclasses.field(repr=False)
    smoothed_weight: jax.Array = dataclasses.field(repr=False)
    low_freq_branch: jax.Array = dataclasses.field(repr=False)
    residual: quant.QuantResult = dataclasses.field(repr=False)
    budgets: np.ndarray = dataclasses.field(repr=False)
    n_freq: int
    smoothing: jax.Array = dataclasses.field(repr=False)
    alpha: float
    energy_kept: np.ndarray = dataclasses.field(repr=False)
    overhead_bits: float
    realised_budget: float
    bits: int
    budget: float
    importance: str
    axis: int


def _bits_per_real(coeff_dtype: Any) -> float:
    return 32.0 if coeff_dtype is None else 8.0 * np.dtype(coeff_dtype).itemsize


def _reals_kept(n: int) -> np.ndarray:
    """``m(k)`` for ``k = 0…F``: reals held by the ``k`` lowest rFFT coefficients of a length-n channel."""
    return np.concatenate([[0], np.cumsum(_multiplicity(n))])


def _overhead_bits(k: np.ndarray, n: int, n_weights: int, coeff_dtype: Any) -> float:
    return _bits_per_real(coeff_dtype) * float(_reals_kept(n)[np.asarray(k, np.int64)].sum()) / n_weights


def budget_bits(budget: float, n: int, *, coeff_dtype: Any = jnp.float16) -> float:
    """Storage of SpecQuant's low-frequency branch at mean budget β, in bits per weight (beyond the residual).

    What is stored per kept coefficient: a real channel of length ``n`` has ``F = ⌊n/2⌋ + 1`` rFFT
    coefficients; coefficient 0 (and ``n/2`` for even ``n``) is real — one number — and every other is complex —
    two numbers; each number is stored in ``b_c`` bits (16 for the default float16/bfloat16 ``coeff_dtype``, 32
    for float32/``None``). So the ``k`` lowest coefficients hold ``m(k)`` reals: ``m(0) = 0``, ``m(k) = 2k − 1``
    for ``1 ≤ k < F``, and ``m(F) = n`` (all ``F`` cost ``b_c·n`` bits, as storing the channel would). Budget β
    keeps ``βF`` coefficients per channel on average; with the exact-total allocation (:func:`specquant`, module
    docstring step 4) a uniform budget keeps ``⌊βF⌋`` or ``⌈βF⌉``, so the cost is

        budget_bits(β, n) = b_c · m̄(βF) / n,   m̄ the piecewise-linear interpolation of m between integers.

    Examples (float16): β = 0.02, n = 256 (F = 129): βF = 2.58, m̄ = 3 + 0.58·2 = 4.16 reals, 16·4.16/256 =
    0.26 bits per weight; β = 0.02, n = 64 (F = 33): βF = 0.66, m̄ = 0.66, 16·0.66/64 = 0.165. For
    ``1 ≤ βF ≤ F − 1`` it is ``b_c(2βF − 1)/n = b_c·β·(n + 2)/n − b_c/n`` (even n); the rule of thumb ``16·β``
    drops both corrections (F is n/2 + 1, not n/2; the DC coefficient is one real, not two) and gives 0.32
    instead of 0.26 at β = 0.02, n = 256.

    It is exactly :attr:`SpecQuantResult.overhead_bits` (up to the rounding of the total ``round(β·C·F)``) for
    ``importance="uniform"`` and for any allocation in which every channel keeps between 1 and ``F − 1``
    coefficients (``m`` is linear there); an importance-weighted allocation with ``βF < 1`` can cost more (a
    channel given 2 coefficients holds 3 reals).
    """
    budget = check_number(budget, "budget", lo=0.0, hi=1.0)
    n = check_int(n, "n", lo=1)
    if coeff_dtype is not None and np.dtype(coeff_dtype) not in (np.dtype(jnp.float16), np.dtype(jnp.bfloat16),
                                                                np.dtype(np.float32)):
        raise ValueError(f"coeff_dtype: expected float16, bfloat16, float32 or None, got {describe(coeff_dtype)}")
    F = n // 2 + 1
    m = _reals_kept(n).astype(np.float64)
    return _bits_per_real(coeff_dtype) * float(np.interp(budget * F, np.arange(F + 1), m)) / n


def _check_common(budget: Any, axis: Any, importance: Any) -> tuple[float, int, str]:
    budget = check_number(budget, "budget", lo=0.0, hi=1.0)
    if axis not in (0, 1) or isinstance(axis, bool):
        raise ValueError(f"axis: expected 0 (rfft along d_in, channels = columns) or 1 (channels = rows), got "
                         f"{describe(axis)}")
    importance = check_choice(importance, "importance", IMPORTANCES)
    return budget, int(axis), importance


def channel_budgets(
    W: Float[Array, "d_in d_out"], budget: float, *, importance: str = "entropy", axis: int = 0,
    activations: Float[Array, " d_in"] | None = None,
) -> Int[Array, " C"]:
    """The per-channel budgets ``k_j`` SpecQuant gives ``W`` (no smoothing): see the module docstring, step 4.

    ``activations`` (mean ``|x_i|`` per input channel) is used by ``"mean-product"`` only.
    """
    W = check_matrix(W)
    _check_range(W, "W")
    budget, axis, importance = _check_common(budget, axis, importance)
    a = None
    if activations is not None:
        a = check_float_array(activations, "activations", ndim=1)
        if a.shape[0] != W.shape[0]:
            raise ValueError(f"activations: expected {W.shape[0]} values (one per input channel), "
                             f"got shape {tuple(a.shape)}")
        _check_range(a, "activations")
        a = jnp.asarray(a, jnp.float32)
    return _budgets(jnp.asarray(W, jnp.float32), a, budget, importance, axis)


@partial(jax.jit, static_argnames=("importance", "axis"))
def _budgets(W: jax.Array, a: jax.Array | None, budget: Any, importance: str, axis: int) -> jax.Array:
    Wc = _to_channels(W, axis)
    n = Wc.shape[0]
    act = None if a is None else _to_channels(jnp.broadcast_to(a[:, None], W.shape), axis)
    Wg, _, e = _normalised(Wc)
    P = _unit_power(jnp.fft.rfft(Wg, axis=0), e, n)
    return _allocate(_importance(importance, Wg, P, act), budget, n // 2 + 1)


def low_frequency_energy(W: Float[Array, "d_in d_out"], fraction: float = 0.2, *, axis: int = 0) -> Float[Array, " C"]:
    """Per channel, the share of its energy in the lowest ``⌈fraction·F⌉`` rFFT coefficients (Parseval-weighted).

    SpecQuant (arXiv 2511.11663) reports ~92% in the lowest 20% for LLaMA weights after smoothing. Along an axis
    without an order (white noise, hidden units, features) the expected share is that of the reals the kept
    coefficients hold, ``(2k − 1)/n`` with ``k = ⌈fraction·F⌉ < F`` (0.203 for n = 64): ≈ ``fraction``, not more
    (``docs/mitigations.md``, Findings). A channel with zero energy has no share: it is a ValueError that names
    the channels. Each channel is scaled by a power of two to ``max|w| ∈ [0.5, 1)`` before squaring, so the
    share of ``c·W`` is that of ``W`` at any scale float32 holds.
    """
    W = check_matrix(W)
    _check_range(W, "W")
    fraction = check_number(fraction, "fraction", lo=0.0, hi=1.0)
    _check_common(0.0, axis, "entropy")
    Wc = _to_channels(jnp.asarray(W, jnp.float32), axis)
    n = Wc.shape[0]
    Wg, _, e = _normalised(Wc)
    P = _unit_power(jnp.fft.rfft(Wg, axis=0), e, n)
    k = math.ceil(fraction * (n // 2 + 1))
    total = jnp.sum(P, axis=0)
    zero = np.flatnonzero(np.asarray(total) <= 0)
    if zero.size:
        raise ValueError(f"W: expected every channel along axis {axis} to have nonzero energy (the low-frequency "
                         f"share of a zero channel is undefined), got {zero.size} zero channel(s): "
                         f"{zero[:8].tolist()}{' …' if zero.size > 8 else ''}")
    return jnp.sum(P[:k], axis=0) / total


def specquant(
    W: Float[Array, "d_in d_out"],
    bits: int,
    budget: float,
    *,
    X: Float[Array, "N d_in"] | None = None,
    act_bits: int | None = 4,
    alpha: float | None = None,
    alpha_grid: tuple[float, ...] = ALPHA_GRID,
    importance: str = "entropy",
    axis: int = 0,
    coeff_dtype: Any = jnp.float16,
    scheme: str = "symmetric",
    clip: str = "absmax",
) -> SpecQuantResult:
    """SpecQuant (Zhao et al., arXiv 2511.11663): smoothing, low-frequency rFFT branch, per-channel residual.

    Args:
      W: weight ``(d_in, d_out)`` with ``y = x @ W`` (or an embedding table ``V×d`` with ``axis=1``).
      bits: residual bits ``b`` (1…16), symmetric per-channel quantization by default.
      budget: ``β ∈ [0, 1]``, mean fraction of the rFFT coefficients kept per channel. ``β = 0`` is plain
        per-channel quantization (of the smoothed weight); ``β = 1`` keeps the whole weight in 16 bit.
      X: calibration activations (rows = samples of the layer input, width ``d_in``); ``None`` turns smoothing
        off (an embedding table).
      act_bits: per-token activation bits of the ``α`` search's output error (``None``: unquantized inputs).
      alpha: a fixed migration strength in [0, 1] instead of the search over ``alpha_grid``.
      importance: the budget's importance score, one of :data:`IMPORTANCES` (default ``"entropy"``).
      axis: 0 — channels are columns (output channels), rFFT along ``d_in``; 1 — channels are rows.
      coeff_dtype: the 16-bit storage of the kept coefficients (``jnp.float16``, ``jnp.bfloat16``, or ``None``
        to keep them in float32).
      scheme, clip: of the residual quantizer (:func:`zipfrmt.quant.quantize`).

    Returns:
      A :class:`SpecQuantResult`.
    """
    W = check_matrix(W)
    _check_range(W, "W")
    bits = check_int(bits, "bits", lo=1, hi=16)
    budget, axis, importance = _check_common(budget, axis, importance)
    if act_bits is not None:
        act_bits = check_int(act_bits, "act_bits", lo=1, hi=16)
    check_choice(scheme, "scheme", quant.SCHEMES)
    check_choice(clip, "clip", quant.CLIPS)
    if coeff_dtype is not None and np.dtype(coeff_dtype) not in (np.dtype(jnp.float16), np.dtype(jnp.bfloat16),
                                                                np.dtype(np.float32)):
        raise ValueError(f"coeff_dtype: expected float16, bfloat16, float32 or None, got {describe(coeff_dtype)}")
    coeff_dtype = None if coeff_dtype is None or np.dtype(coeff_dtype) == np.dtype(np.float32) else coeff_dtype
    Wj = jnp.asarray(W, jnp.float32)
    d_in = Wj.shape[0]
    if X is None:
        if alpha is not None:
            raise ValueError(f"alpha: smoothing needs calibration activations X, got alpha={alpha!r} with X=None")
        lam = jnp.ones((d_in,), jnp.float32)
        alpha_used = math.nan
        act = None
    else:
        X = _check_X(X, d_in)
        if alpha is None:
            if len(alpha_grid) == 0:
                raise ValueError("alpha_grid: expected at least one strength, got an empty grid")
            grid = [check_number(a, "alpha_grid", lo=0.0, hi=1.0) for a in alpha_grid]
            # The search runs on W and X scaled by powers of two to max ∈ [0.5, 1): exact, and the argmin of the
            # error does not depend on their scales (the error of (cX, c′W) is c·c′ times that of (X, W)).
            Wn = times_pow2(Wj, -math.frexp(max_abs(W))[1])
            Xn = times_pow2(jnp.asarray(X, jnp.float32), -math.frexp(max_abs(X))[1])
            errs = np.asarray(_alpha_errors(Wn, Xn, jnp.asarray(grid, jnp.float32), budget, bits, act_bits,
                                            importance, axis, coeff_dtype, scheme, clip), np.float64)
            finite = np.isfinite(errs)
            if not finite.any():
                raise ValueError(
                    f"X: expected some migration strength in alpha_grid to give a finite output error "
                    f"‖XW − (X̂W′ + Q(X̂)Q(R))‖, got none finite for α in {grid}"
                )
            alpha_used = float(grid[int(np.argmin(np.where(finite, errs, np.inf)))])
        else:
            alpha_used = check_number(alpha, "alpha", lo=0.0, hi=1.0)
        lam64, _ = _smoothing_host(W, X, alpha_used)
        act64 = np.mean(np.abs(np.asarray(X, np.float64) / lam64[None, :]), axis=0)
        top = float(act64.max())
        act = jnp.asarray(np.ldexp(act64, -math.frexp(top)[1]) if top > 0 else act64, jnp.float32)
        lam = jnp.asarray(lam64, jnp.float32)
    W_hat = Wj * lam[:, None]
    Wp, _, k, energy = _core(W_hat, act, budget, bits, importance, axis, coeff_dtype, scheme, clip)
    R = W_hat - Wp
    q = quant.quantize(R, bits, scheme=scheme, granularity="column" if axis == 0 else "row", clip=clip)
    W_hat_q = Wp + q.dequantized
    frac = np.asarray(energy)
    n = W_hat.shape[axis]
    k_np = np.asarray(k)
    return SpecQuantResult(
        weight=(W_hat_q / lam[:, None]).astype(Wj.dtype),
        smoothed_weight=W_hat_q,
        low_freq_branch=Wp,
        residual=q,
        budgets=k_np,
        n_freq=n // 2 + 1,
        smoothing=lam,
        alpha=alpha_used,
        energy_kept=frac,
        overhead_bits=_overhead_bits(k_np, n, Wj.size, coeff_dtype),
        realised_budget=float(k_np.sum()) / (k_np.size * (n // 2 + 1)),
        bits=bits,
        budget=budget,
        importance=importance,
        axis=axis,
    )
