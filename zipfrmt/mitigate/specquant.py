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
   (``coeff_dtype``); ``W′_j = irfft(F_j ⊙ 1[f < k_j])``.
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
``16 · #reals kept / (d_in·d_out)`` bits per weight beyond the ``b``-bit residual; the per-channel ``k_j`` and
scales, and ``λ`` (folded into the previous layer, as in SmoothQuant), are not counted. :func:`budget_bits`
converts a budget β to this overhead (β = 0.02: 0.26 bits per weight for n = 256, 0.165 for n = 64).
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
from zipfrmt.checks import check_choice, check_float_array, check_int, check_matrix, check_number, describe

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


# ---------------------------------------------------------------------------------------------------------
# Smoothing
# ---------------------------------------------------------------------------------------------------------


def _smoothing_factors(W: Float[Array, "d_in d_out"], x_max: Float[Array, " d_in"], alpha: Any) -> jax.Array:
    w_max = jnp.max(jnp.abs(W), axis=1)
    lam = jnp.power(jnp.maximum(x_max, _EPS), alpha) / jnp.power(jnp.maximum(w_max, _EPS), 1.0 - alpha)
    ok = (x_max > 0) & (w_max > 0) & jnp.isfinite(lam) & (lam > 0)
    return jnp.where(ok, lam, 1.0)


def _check_X(X: Any, d_in: int) -> Any:
    X = check_float_array(X, "X", ndim=2)
    if X.shape[1] != d_in:
        raise ValueError(
            f"X: expected calibration activations of width d_in={d_in} (rows = samples of the layer input, "
            f"y = x @ W with W of shape (d_in, d_out)), got shape {tuple(X.shape)}"
        )
    return X


def smoothing_factors(W: Float[Array, "d_in d_out"], X: Float[Array, "N d_in"], alpha: float) -> Float[Array, " d_in"]:
    """SmoothQuant factors ``λ_i = max|X_{:,i}|^α / max|W_{i,:}|^(1−α)`` per input channel (1 where undefined)."""
    W = check_matrix(W)
    X = _check_X(X, W.shape[0])
    alpha = check_number(alpha, "alpha", lo=0.0, hi=1.0)
    x_max = jnp.max(jnp.abs(jnp.asarray(X, jnp.float32)), axis=0)
    return _smoothing_factors(jnp.asarray(W, jnp.float32), x_max, alpha)


def smooth(
    W: Float[Array, "d_in d_out"], X: Float[Array, "N d_in"], lam: Float[Array, " d_in"]
) -> tuple[Float[Array, "d_in d_out"], Float[Array, "N d_in"]]:
    """``(Ŵ, X̂) = (diag(λ) W, X diag(λ)⁻¹)``; ``X̂ Ŵ = X W`` up to rounding."""
    W = check_matrix(W)
    X = _check_X(X, W.shape[0])
    lam = check_float_array(lam, "lam", ndim=1)
    if lam.shape[0] != W.shape[0]:
        raise ValueError(f"lam: expected {W.shape[0]} factors (one per input channel), got shape {tuple(lam.shape)}")
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


def _importance(kind: str, Wc: jax.Array, P: jax.Array, act: jax.Array | None) -> Float[Array, " C"]:
    if kind == "entropy":
        total = jnp.sum(P, axis=0, keepdims=True)
        p = P / jnp.where(total > 0, total, 1.0)
        H = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=0)
        return jnp.where(total[0] > 0, jnp.exp(H), 0.0)
    if kind == "mean-product":
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
    every importance is 0 the budgets are uniform. All ``F`` at β = 1, none at β = 0."""
    C = s.shape[0]
    s = jnp.maximum(s, 0.0)
    smax = jnp.max(s)
    # zero importance → a tiny positive one (so the target is always reachable); all zero → uniform
    s = jnp.where(smax > 0, jnp.where(s > 0, s, _EPS * smax), 1.0)
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


def _truncate(Wc: jax.Array, k: jax.Array, coeff_dtype: Any) -> tuple[jax.Array, jax.Array]:
    """(W′, kept energy per channel) for channel-columns ``Wc`` keeping ``k_j`` lowest coefficients."""
    n = Wc.shape[0]
    Fc = jnp.fft.rfft(Wc.astype(jnp.float32), axis=0)
    if coeff_dtype is not None:
        Fc = jax.lax.complex(jnp.real(Fc).astype(coeff_dtype).astype(jnp.float32),
                             jnp.imag(Fc).astype(coeff_dtype).astype(jnp.float32))
    keep = jnp.arange(Fc.shape[0])[:, None] < k[None, :]
    Fk = jnp.where(keep, Fc, 0.0)
    return jnp.fft.irfft(Fk, n=n, axis=0), jnp.sum(_power(Fk, n), axis=0)


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
    """(W′, Q(R), k, kept energy) in the original layout; the residual quantized per channel."""
    Wc = _to_channels(W_hat.astype(jnp.float32), axis)
    n = Wc.shape[0]
    F = n // 2 + 1
    P = _power(jnp.fft.rfft(Wc, axis=0), n)
    # Activations belong to W's rows (its input channels) whatever the channel axis.
    actc = None if act is None else _to_channels(jnp.broadcast_to(act[:, None], W_hat.shape), axis)
    k = _allocate(_importance(importance, Wc, P, actc), budget, F)
    Wp, energy = _truncate(Wc, k, coeff_dtype)
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
    """``‖XW − (X̂W′ + Q_a(X̂)·Q(R))‖_F²`` for each α: the 16-bit branch sees X̂ itself, the residual its
    quantized version (Zhao et al., eq. for XW ≈ X̂W′ + Q(X̂)Q(R))."""
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
        return jnp.sum(jnp.square(Y - (Xh @ Wp + Xq @ Rq)))

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
    budget, axis, importance = _check_common(budget, axis, importance)
    a = None
    if activations is not None:
        a = check_float_array(activations, "activations", ndim=1)
        if a.shape[0] != W.shape[0]:
            raise ValueError(f"activations: expected {W.shape[0]} values (one per input channel), "
                             f"got shape {tuple(a.shape)}")
        a = jnp.asarray(a, jnp.float32)
    return _budgets(jnp.asarray(W, jnp.float32), a, budget, importance, axis)


@partial(jax.jit, static_argnames=("importance", "axis"))
def _budgets(W: jax.Array, a: jax.Array | None, budget: Any, importance: str, axis: int) -> jax.Array:
    Wc = _to_channels(W, axis)
    n = Wc.shape[0]
    act = None if a is None else _to_channels(jnp.broadcast_to(a[:, None], W.shape), axis)
    P = _power(jnp.fft.rfft(Wc, axis=0), n)
    return _allocate(_importance(importance, Wc, P, act), budget, n // 2 + 1)


def low_frequency_energy(W: Float[Array, "d_in d_out"], fraction: float = 0.2, *, axis: int = 0) -> Float[Array, " C"]:
    """Per channel, the share of its energy in the lowest ``⌈fraction·F⌉`` rFFT coefficients (Parseval-weighted).

    SpecQuant (arXiv 2511.11663) reports ~92% in the lowest 20% for LLaMA weights after smoothing. Along an axis
    without an order (white noise, hidden units, features) the expected share is that of the reals the kept
    coefficients hold, ``(2k − 1)/n`` with ``k = ⌈fraction·F⌉ < F`` (0.203 for n = 64): ≈ ``fraction``, not more
    (``docs/mitigations.md``, Findings). A channel with zero energy has no share: it is a ValueError that names
    the channels.
    """
    W = check_matrix(W)
    fraction = check_number(fraction, "fraction", lo=0.0, hi=1.0)
    _check_common(0.0, axis, "entropy")
    Wc = _to_channels(jnp.asarray(W, jnp.float32), axis)
    n = Wc.shape[0]
    P = _power(jnp.fft.rfft(Wc, axis=0), n)
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
        Xj = jnp.asarray(X, jnp.float32)
        if alpha is None:
            if len(alpha_grid) == 0:
                raise ValueError("alpha_grid: expected at least one strength, got an empty grid")
            grid = [check_number(a, "alpha_grid", lo=0.0, hi=1.0) for a in alpha_grid]
            errs = _alpha_errors(Wj, Xj, jnp.asarray(grid, jnp.float32), budget, bits, act_bits, importance, axis,
                                 coeff_dtype, scheme, clip)
            alpha_used = float(grid[int(jnp.argmin(errs))])
        else:
            alpha_used = check_number(alpha, "alpha", lo=0.0, hi=1.0)
        x_max = jnp.max(jnp.abs(Xj), axis=0)
        lam = _smoothing_factors(Wj, x_max, alpha_used)
        act = jnp.mean(jnp.abs(Xj / lam[None, :]), axis=0)
    W_hat = Wj * lam[:, None]
    Wp, _, k, energy = _core(W_hat, act, budget, bits, importance, axis, coeff_dtype, scheme, clip)
    R = W_hat - Wp
    q = quant.quantize(R, bits, scheme=scheme, granularity="column" if axis == 0 else "row", clip=clip)
    W_hat_q = Wp + q.dequantized
    Wc = _to_channels(W_hat, axis)
    total = jnp.sum(Wc * Wc, axis=0)
    frac = np.asarray(jnp.where(total > 0, energy / jnp.where(total > 0, total, 1.0), 1.0))
    n = Wc.shape[0]
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
