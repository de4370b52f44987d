"""Quantizers whose noise the theory models.

The uniform quantizer (DESIGN.md, "Conventions"). For a scale group with statistic ``m`` (its clipping range):

* symmetric, ``b ≥ 2``: ``L = 2^(b−1) − 1``, ``Δ = m / L``, ``q = clip(round(w/Δ), −L, L)·Δ``;
* asymmetric, ``b ≥ 2``: ``Δ = (hi − lo)/(2^b − 1)``, zero point ``z = round(−lo/Δ)``,
  ``q = (clip(round(w/Δ) + z, 0, 2^b − 1) − z)·Δ``;
* ``b = 1``: the sign quantizer ``q = sign(w)·mean|w|`` over the scale group (levels ``±m``, ``Δ = 2m``).

A group whose range is 0 has ``Δ = 1`` (its output is all zeros, exactly), never NaN.

Scale groups: ``tensor`` (one scale), ``row`` (one per token), ``column`` (one per feature), ``group`` (blocks
of ``group_size`` consecutive entries along a row; in a row whose length ``d`` is not a multiple, the last,
shorter block is padded by repeating its last entry, which changes neither its absmax nor its min and max;
the 1-bit mean ignores the padding, and percentile/MSE clipping see the repeated entry). Clipping ranges: ``absmax``
(``m = max|w|``), ``percentile`` (``m`` = the ``percentile``-th percentile of ``|w|``), ``mse`` (``m = c·max|w|`` with
``c`` on a grid minimising the group's squared error). Rounding: ``nearest`` (ties to even) or ``stochastic``
(``⌊w/Δ + u⌋``, ``u ~ U[0, 1)``: unbiased inside the clipping range; it needs an explicit PRNG key).

Noise model (Widrow 1956; Widrow & Kollár 2008): ``E = Q_b(W) − W ≈`` i.i.d. ``U(−Δ/2, Δ/2)``, variance
``s² = mean(Δ²)/12``; for stochastic rounding the error is unbiased with variance exactly ``f(1−f)Δ²`` at
fractional part ``f``, and ``s²`` is its mean. Each result reports the model beside the measurement — error
variance, zero fraction, Bussgang gain ``g = ⟨W, Q⟩/⟨W, W⟩`` (Bussgang 1952) — and the regime in which the
model holds (see :func:`classify_regime`).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from zipfrmt._validate import check_choice, check_int, check_matrix, check_number, describe

__all__ = [
    "FORMATS",
    "QuantConfig",
    "QuantResult",
    "classify_regime",
    "fake_quant",
    "noise_statistics",
    "quantize",
    "quantize_format",
]

SCHEMES = ("symmetric", "asymmetric")
GRANULARITIES = ("tensor", "row", "column", "group")
CLIPS = ("absmax", "percentile", "mse")
ROUNDINGS = ("nearest", "stochastic")

#: Grid of clipping ratios ``c`` (of the absmax) searched by ``clip="mse"``.
MSE_GRID = tuple(k / 100 for k in range(10, 101))

#: Regime rule thresholds (see :func:`classify_regime`).
WIDROW_VAR_RTOL = 0.05
WIDROW_GAIN_TOL = 0.02


@dataclasses.dataclass(frozen=True)
class QuantConfig:
    """How to quantize: a hashable value, so it can be a static argument of a jit-compiled function."""

    bits: int = 4
    scheme: str = "symmetric"
    granularity: str = "tensor"
    group_size: int | None = None
    clip: str = "absmax"
    percentile: float = 99.9
    rounding: str = "nearest"

    @property
    def label(self) -> str:
        """A short name such as ``int4-row`` or ``int3-group32-stochastic``."""
        gran = f"group{self.group_size}" if self.granularity == "group" else self.granularity
        parts = [f"int{self.bits}", gran]
        if self.scheme != "symmetric":
            parts.append(self.scheme)
        if self.clip != "absmax":
            parts.append(self.clip)
        if self.rounding != "nearest":
            parts.append(self.rounding)
        return "-".join(parts)


def _check_config(cfg: QuantConfig, shape: tuple[int, ...], key: Any) -> QuantConfig:
    check_int(cfg.bits, "bits", lo=1, hi=16)
    check_choice(cfg.scheme, "scheme", SCHEMES)
    check_choice(cfg.granularity, "granularity", GRANULARITIES)
    check_choice(cfg.clip, "clip", CLIPS)
    check_choice(cfg.rounding, "rounding", ROUNDINGS)
    check_number(cfg.percentile, "percentile", lo=0.0, hi=100.0, lo_open=True)
    d = shape[-1]
    if cfg.granularity == "group":
        if cfg.group_size is None:
            raise ValueError("group_size: expected an integer for granularity='group', got None")
        check_int(cfg.group_size, "group_size", lo=1, hi=d)
    elif cfg.group_size is not None:
        raise ValueError(
            f"group_size: only used with granularity='group', got group_size={cfg.group_size!r} "
            f"with granularity={cfg.granularity!r}"
        )
    if cfg.bits == 1 and cfg.scheme == "asymmetric":
        raise ValueError("scheme: the 1-bit sign quantizer is symmetric; expected 'symmetric' for bits=1")
    if cfg.bits == 1 and cfg.rounding == "stochastic":
        raise ValueError("rounding: the 1-bit sign quantizer has no stochastic variant; expected 'nearest'")
    if cfg.rounding == "stochastic" and key is None:
        raise ValueError("key: rounding='stochastic' needs an explicit PRNG key (jax.random.key(seed)), got None")
    return cfg


# ---------------------------------------------------------------------------------------------------------
# Scale-group layout: every group becomes one row of a 2-D array X (n_groups, group_len)
# ---------------------------------------------------------------------------------------------------------


def _to_groups(W: Float[Array, "V d"], cfg: QuantConfig) -> Float[Array, "G n"]:
    V, d = W.shape
    if cfg.granularity == "tensor":
        return W.reshape(1, V * d)
    if cfg.granularity == "row":
        return W
    if cfg.granularity == "column":
        return W.T
    g = cfg.group_size
    pad = (-d) % g
    if pad:  # repeat each row's last entry: leaves the group's absmax, min and max unchanged
        W = jnp.pad(W, ((0, 0), (0, pad)), mode="edge")
    return W.reshape(V * ((d + pad) // g), g)


def _from_groups(X: Float[Array, "G n"], cfg: QuantConfig, shape: tuple[int, int]) -> Float[Array, "V d"]:
    V, d = shape
    if cfg.granularity == "column":
        return X.T
    if cfg.granularity == "group":
        return X.reshape(V, -1)[:, :d]
    return X.reshape(V, d)


def _step_layout(step: Float[Array, " G"], cfg: QuantConfig, shape: tuple[int, int]) -> jax.Array:
    V, d = shape
    if cfg.granularity == "tensor":
        return step.reshape(())
    if cfg.granularity == "row":
        return step.reshape(V, 1)
    if cfg.granularity == "column":
        return step.reshape(1, d)
    return step.reshape(V, -1)


# ---------------------------------------------------------------------------------------------------------
# The quantizer on groups
# ---------------------------------------------------------------------------------------------------------


def _round(y: jax.Array, cfg: QuantConfig, key: PRNGKeyArray | None) -> jax.Array:
    if cfg.rounding == "nearest":
        return jnp.round(y)
    return jnp.floor(y + jax.random.uniform(key, y.shape, y.dtype))


def _symmetric(X: jax.Array, m: jax.Array, cfg: QuantConfig, key: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns (dequantized, step Δ per group, in-range mask) for symmetric b ≥ 2 with range m per group."""
    L = 2 ** (cfg.bits - 1) - 1
    step = m / L
    step = jnp.where(step > 0, step, 1.0)  # a zero group, or a range so small that m/L underflows to 0
    y = X / step[:, None]
    q = jnp.clip(_round(jnp.clip(y, -L, L), cfg, key), -L, L) * step[:, None]
    return q, step, jnp.abs(X) <= m[:, None]


def _asymmetric(
    X: jax.Array, lo: jax.Array, hi: jax.Array, cfg: QuantConfig, key: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
    top = 2**cfg.bits - 1
    span = hi - lo
    step = span / top  # 0 for a constant group, or when the span is so small that it underflows
    step = jnp.where(step > 0, step, jnp.where(jnp.abs(lo) > 0, jnp.abs(lo), 1.0))
    zero = jnp.round(-lo / step)
    y = X / step[:, None] + zero[:, None]
    q = (jnp.clip(_round(jnp.clip(y, 0, top), cfg, key), 0, top) - zero[:, None]) * step[:, None]
    return q, step, (X >= lo[:, None]) & (X <= hi[:, None])


def _mse_ratio(X: jax.Array, cfg: QuantConfig) -> jax.Array:
    """Per-group clipping ratio c from MSE_GRID minimising Σ(Q_c(x) − x)² with nearest rounding."""
    nearest = dataclasses.replace(cfg, rounding="nearest")
    amax = jnp.max(jnp.abs(X), axis=1)
    lo0, hi0 = jnp.min(X, axis=1), jnp.max(X, axis=1)

    def error(c: jax.Array) -> jax.Array:
        if cfg.scheme == "symmetric":
            q, _, _ = _symmetric(X, c * amax, nearest, None)
        else:
            q, _, _ = _asymmetric(X, c * lo0, c * hi0, nearest, None)
        return jnp.sum(jnp.square(q - X), axis=1)

    errs = jax.lax.map(error, jnp.asarray(MSE_GRID, X.dtype))  # (n_grid, G)
    return jnp.asarray(MSE_GRID, X.dtype)[jnp.argmin(errs, axis=0)]


def _quantize_groups(
    X: Float[Array, "G n"], cfg: QuantConfig, key: Any, valid: Float[Array, "G n"]
) -> tuple[jax.Array, ...]:
    """(dequantized, step, in-range mask) for every group (row) of X; ``valid`` is 0 on padding, else 1."""
    if cfg.bits == 1:
        m = jnp.sum(jnp.abs(X) * valid, axis=1) / jnp.sum(valid, axis=1)  # mean|w| over the real entries
        q = jnp.where(X >= 0, 1.0, -1.0) * m[:, None]
        q = jnp.where(X == 0, 0.0, q)
        return q, jnp.where(m > 0, 2 * m, 1.0), jnp.ones(X.shape, bool)
    if cfg.scheme == "symmetric":
        amax = jnp.max(jnp.abs(X), axis=1)
        if cfg.clip == "absmax":
            m = amax
        elif cfg.clip == "percentile":
            m = jnp.percentile(jnp.abs(X), cfg.percentile, axis=1)
        else:
            m = _mse_ratio(X, cfg) * amax
        return _symmetric(X, m, cfg, key)
    lo, hi = jnp.min(X, axis=1), jnp.max(X, axis=1)
    if cfg.clip == "percentile":
        lo, hi = jnp.percentile(X, 100 - cfg.percentile, axis=1), jnp.percentile(X, cfg.percentile, axis=1)
    elif cfg.clip == "mse":
        c = _mse_ratio(X, cfg)
        lo, hi = c * lo, c * hi
    return _asymmetric(X, lo, hi, cfg, key)


def _quantize_core(
    cfg: QuantConfig, W: Float[Array, "V d"], key: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(dequantized W, step in the granularity's layout, per-entry in-clip-range mask). Pure and jit-able."""
    shape = W.shape
    Wf = W.astype(jnp.float32)
    X = _to_groups(Wf, cfg)
    q, step, inside = _quantize_groups(X, cfg, key, jnp.broadcast_to(_valid_mask(cfg, shape), X.shape))
    deq = _from_groups(q, cfg, shape).astype(W.dtype)
    inside = _from_groups(inside, cfg, shape)
    return deq, _step_layout(step, cfg, shape), inside


def _model_noise_var(cfg: QuantConfig, W: Float[Array, "V d"], step: jax.Array) -> jax.Array:
    """The model noise variance ``s²``, a mean over entries.

    * Nearest rounding (Widrow): ``Δ²/12`` per entry.
    * Stochastic rounding: a value with fractional part ``f = w/Δ − ⌊w/Δ⌋`` errs by ``(1−f)Δ`` with probability
      ``f`` and by ``−fΔ`` otherwise, so given ``W`` its error has mean 0 and variance ``f(1−f)Δ²`` exactly;
      the model is the mean of that (``Δ²/6`` when ``f`` is uniform, which it is not at 2–3 bits).

    Entries that the grid reproduces by construction count 0: those of all-zero groups, and, for symmetric
    absmax scaling, each group's extreme entries ``|w| = max|w| = L·Δ`` (one entry in ``n`` of a group of
    ``n``: without this the model overstates a group-32 quantizer's noise by 1/32 ≈ 3%).
    """
    X = _to_groups(W.astype(jnp.float32), cfg)
    valid = _valid_mask(cfg, W.shape)
    amax = jnp.max(jnp.abs(X), axis=1, keepdims=True)
    exact = jnp.broadcast_to(amax == 0, X.shape)
    if cfg.bits > 1 and cfg.scheme == "symmetric" and cfg.clip == "absmax":
        exact = exact | (jnp.abs(X) == amax)
    step_groups = jnp.reshape(step, (-1, 1)).astype(jnp.float32)
    if cfg.rounding == "stochastic":
        y = X / step_groups
        frac = y - jnp.floor(y)
        var = frac * (1.0 - frac) * jnp.square(step_groups)
    else:
        var = jnp.broadcast_to(jnp.square(step_groups) / 12.0, X.shape)
    # Summed in the group layout (no transpose back), padding excluded.
    return _row_sums(jnp.where(exact, 0.0, var) * valid)[0] / W.size


def _valid_mask(cfg: QuantConfig, shape: tuple[int, int]) -> Float[Array, "G n"]:
    """1 on the entries of the group layout that belong to W, 0 on the padding of ragged groups."""
    if cfg.granularity != "group" or shape[1] % cfg.group_size == 0:
        return jnp.ones((1, 1), jnp.float32)
    V, d = shape
    width = d + (-d) % cfg.group_size
    return (jnp.arange(V * width) % width < d).reshape(-1, cfg.group_size).astype(jnp.float32)


# ---------------------------------------------------------------------------------------------------------
# Noise statistics and regime
# ---------------------------------------------------------------------------------------------------------


def _row_sums(*xs: Float[Array, "V d"]) -> tuple[Float[Array, ""], ...]:
    """Sums of several same-shape matrices in one pass (a variadic reduce over rows, then over the row sums).

    One pass instead of one per statistic (5× faster on CPU). Two stages keep float32 accurate: the same
    variadic reduce over both axes at once lost 10% of a 50257×768 sum of squares on XLA:CPU; the sum of row
    sums agrees with float64 to ~1e-8.
    """
    zeros = tuple(jnp.zeros((), x.dtype) for x in xs)
    per_row = jax.lax.reduce(xs, zeros, lambda a, b: tuple(u + v for u, v in zip(a, b, strict=True)), (1,))
    return tuple(jnp.sum(r) for r in per_row)


def _noise_moments(W: jax.Array, Q: jax.Array) -> dict[str, jax.Array]:
    W = W.astype(jnp.float32)
    Q = Q.astype(jnp.float32)
    E = Q - W
    ww, ee, e, zeros, wq = _row_sums(W * W, E * E, E, (Q == 0).astype(jnp.float32), W * Q)
    safe_ww = jnp.where(ww > 0, ww, 1.0)
    return {
        "noise_var_measured": ee / E.size,
        "error_mean": e / E.size,
        "zero_fraction": zeros / E.size,
        "bussgang_gain": jnp.where(ww > 0, wq / safe_ww, 1.0),
        "rel_error": jnp.sqrt(ee / safe_ww),
    }


@partial(jax.jit, static_argnums=0)
def _quantize_and_measure(cfg: QuantConfig, W: Float[Array, "V d"], key: Any) -> tuple[jax.Array, ...]:
    """Quantization and all its noise statistics in one compiled program (XLA fuses the passes over W)."""
    deq, step, _ = _quantize_core(cfg, W, key)
    moments = _noise_moments(W, deq)
    moments["noise_var_model"] = _model_noise_var(cfg, W, step)
    return deq, step, moments


def classify_regime(noise_var_model: float, noise_var_measured: float, bussgang_gain: float) -> str:
    """``"widrow"`` where the additive-uniform noise model holds, else ``"dead-zone"``.

    The model ``E ≈ U(−Δ/2, Δ/2)``, independent of ``W``, predicts two measurable facts: the error variance is
    ``mean(Δ²)/12`` and the error is uncorrelated with ``W`` (Bussgang gain ``g = 1 + ⟨W,E⟩/⟨W,W⟩ = 1``).
    The regime is ``widrow`` when both hold to within

        |measured / model − 1| ≤ 5%   and   |g − 1| ≤ 0.02,

    and ``dead-zone`` otherwise: the step is large against the spread of its group, most entries round to 0
    (or are clipped), and the error is correlated with ``W``. For Gaussian entries this boundary lies near
    ``Δ ≈ 2σ`` (Widrow's characteristic-function criterion: the model's error is ~``exp(−2π²σ²/Δ²)``).
    An exactly reproduced matrix (zero error, zero model) is ``widrow``.
    """
    if noise_var_model == 0:
        return "widrow" if noise_var_measured == 0 else "dead-zone"
    ok_var = abs(noise_var_measured / noise_var_model - 1.0) <= WIDROW_VAR_RTOL
    ok_gain = abs(bussgang_gain - 1.0) <= WIDROW_GAIN_TOL
    return "widrow" if ok_var and ok_gain else "dead-zone"


def noise_statistics(W: Any, Q: Any, noise_var_model: float) -> dict[str, Any]:
    """Measured noise of a quantized matrix ``Q`` of ``W`` beside the model variance, with the regime.

    Returns a dict with ``noise_var_model``, ``noise_var_measured`` (mean of ``(Q − W)²``), ``error_mean``,
    ``zero_fraction`` (entries of ``Q`` equal to 0), ``bussgang_gain`` ``⟨W,Q⟩/⟨W,W⟩`` (1 for an all-zero ``W``),
    ``rel_error`` ``‖Q − W‖_F/‖W‖_F`` and ``regime``.
    """
    moments = _noise_moments_jit(jnp.asarray(W), jnp.asarray(Q))
    moments["noise_var_model"] = noise_var_model
    return _with_regime(moments)


_noise_moments_jit = jax.jit(_noise_moments)


def _with_regime(moments: dict[str, Any]) -> dict[str, Any]:
    """Device scalars → Python floats, plus the regime they imply."""
    stats = {k: float(v) for k, v in jax.device_get(moments).items()}
    stats["regime"] = classify_regime(stats["noise_var_model"], stats["noise_var_measured"], stats["bussgang_gain"])
    return stats


# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class QuantResult:
    """A quantized matrix and its noise statistics.

    Attributes:
      dequantized: ``Q_b(W)``, the matrix on the quantization grid (same shape and dtype as ``W``).
      step: the step sizes Δ: a scalar (``tensor``), ``(V, 1)`` (``row``), ``(1, d)`` (``column``) or
        ``(V, ceil(d/g))`` (``group``). For ``bits = 1``, ``Δ = 2·mean|w|`` (the spacing of the levels ±mean|w|).
      config: the :class:`QuantConfig` used.
      noise_var_model: ``mean(Δ²)/12`` over entries (``mean(f(1−f)Δ²)`` for stochastic rounding), where entries
        the grid reproduces by construction count 0 (see ``_model_noise_var``).
      noise_var_measured: ``mean((Q − W)²)``.
      error_mean: ``mean(Q − W)``.
      zero_fraction: fraction of entries quantized to 0.
      bussgang_gain: ``⟨W, Q⟩ / ⟨W, W⟩``.
      rel_error: ``‖Q − W‖_F / ‖W‖_F``.
      regime: ``"widrow"`` or ``"dead-zone"`` (:func:`classify_regime`).
    """

    dequantized: jax.Array = dataclasses.field(repr=False)
    step: jax.Array = dataclasses.field(repr=False)
    config: QuantConfig
    noise_var_model: float
    noise_var_measured: float
    error_mean: float
    zero_fraction: float
    bussgang_gain: float
    rel_error: float
    regime: str

    def stats(self) -> dict[str, Any]:
        """The noise statistics as a plain dict."""
        names = ("noise_var_model", "noise_var_measured", "error_mean", "zero_fraction", "bussgang_gain",
                 "rel_error", "regime")
        return {n: getattr(self, n) for n in names}


def quantize(
    W: Float[Array, "V d"] | np.ndarray,
    bits: int,
    *,
    scheme: str = "symmetric",
    granularity: str = "tensor",
    group_size: int | None = None,
    clip: str = "absmax",
    percentile: float = 99.9,
    rounding: str = "nearest",
    key: PRNGKeyArray | None = None,
) -> QuantResult:
    """Quantizes ``W`` on a uniform ``bits``-bit grid and measures the noise it adds.

    Args:
      W: a ``V×d`` floating-point matrix (rows = tokens).
      bits: 1…16 (1 is the sign quantizer).
      scheme: ``"symmetric"`` (absmax-style, zero exactly representable) or ``"asymmetric"`` (min/max with a
        zero point).
      granularity: scale groups — ``"tensor"``, ``"row"``, ``"column"`` or ``"group"`` (blocks of
        ``group_size`` along a row).
      group_size: block length for ``granularity="group"``; 1 ≤ group_size ≤ d.
      clip: clipping range — ``"absmax"``, ``"percentile"`` (at ``percentile``) or ``"mse"``.
      percentile: the percentile of ``|w|`` used by ``clip="percentile"`` (0 < p ≤ 100).
      rounding: ``"nearest"`` (ties to even) or ``"stochastic"`` (unbiased; needs ``key``).
      key: a PRNG key, required by stochastic rounding.

    Example:
      >>> import jax, zipfrmt.quant as zq
      >>> W = jax.random.normal(jax.random.key(0), (256, 64))
      >>> r = zq.quantize(W, 4, granularity="row")
      >>> r.regime, round(r.noise_var_measured / r.noise_var_model, 2)
      ('widrow', 1.0)
    """
    W = check_matrix(W)
    cfg = QuantConfig(bits, scheme, granularity, group_size, clip, percentile, rounding)
    _check_config(cfg, tuple(W.shape), key)
    if key is not None and not isinstance(key, jax.Array):
        raise TypeError(f"key: expected a JAX PRNG key (jax.random.key(seed)), got {describe(key)}")
    W = jnp.asarray(W)
    if W.dtype == jnp.float64:
        W = W.astype(jnp.float32)
    deq, step, moments = _quantize_and_measure(cfg, W, key)
    return QuantResult(dequantized=deq, step=step, config=cfg, **_with_regime(moments))


def fake_quant(
    W: Float[Array, "..."],
    bits: int,
    *,
    scheme: str = "symmetric",
    granularity: str = "tensor",
    group_size: int | None = None,
    clip: str = "absmax",
    percentile: float = 99.9,
    rounding: str = "nearest",
    key: PRNGKeyArray | None = None,
) -> Float[Array, "..."]:
    """``Q_b(W)`` with a straight-through gradient (Bengio et al. 2013), for quantization-aware training.

    Forward: exactly :func:`quantize`'s ``dequantized``. Backward: ``∂Q/∂W = 1`` where ``w`` lies inside the
    clipping range and 0 where it was clipped (the "clipped STE"; with ``clip="absmax"`` nothing is clipped, so
    the gradient is the identity). Works under ``jax.jit``/``grad``/``vmap``. A leading batch of matrices
    (``ndim > 2``) is quantized matrix by matrix over the last two axes; a 1-D vector is treated as one row.
    """
    if W.ndim == 1:
        return fake_quant(W[None], bits, scheme=scheme, granularity=granularity, group_size=group_size,
                          clip=clip, percentile=percentile, rounding=rounding, key=key)[0]
    if W.ndim < 1:
        raise ValueError(f"W: expected an array with at least 1 dimension, got {describe(W)}")
    cfg = QuantConfig(bits, scheme, granularity, group_size, clip, percentile, rounding)
    _check_config(cfg, tuple(W.shape), key)
    if W.ndim > 2:
        flat = W.reshape(-1, *W.shape[-2:])
        keys = None if key is None else jax.random.split(key, flat.shape[0])
        out = jax.vmap(lambda w, k: _fake_quant(cfg, w, k))(flat, keys)
        return out.reshape(W.shape)
    return _fake_quant(cfg, W, key)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fake_quant(cfg: QuantConfig, W: jax.Array, key: Any) -> jax.Array:
    return _quantize_core(cfg, W, key)[0]


def _fake_quant_fwd(cfg: QuantConfig, W: jax.Array, key: Any) -> tuple[jax.Array, Any]:
    deq, _, inside = _quantize_core(cfg, W, key)
    return deq, (inside, key)


def _fake_quant_bwd(cfg: QuantConfig, res: Any, g: jax.Array) -> tuple[jax.Array, Any]:
    inside, key = res
    key_ct = None if key is None else np.zeros(key.shape, jax.dtypes.float0)
    return jnp.where(inside, g, 0.0).astype(g.dtype), key_ct


_fake_quant.defvjp(_fake_quant_fwd, _fake_quant_bwd)


# ---------------------------------------------------------------------------------------------------------
# Real formats through Qwix
# ---------------------------------------------------------------------------------------------------------

#: Format name → (Qwix qtype, fixed block size along a row or None, bits per value).
FORMATS: dict[str, tuple[Any, int | None, int]] = {
    "fp8_e4m3": (jnp.float8_e4m3fn, None, 8),
    "fp8_e5m2": (jnp.float8_e5m2, None, 8),
    "nf4": ("nf4", None, 4),
    "mxfp4": ("mxfp4", 32, 4),
    "nvfp4": ("nvfp4", 16, 4),
}


def quantize_format(
    W: Float[Array, "V d"] | np.ndarray,
    fmt: str,
    *,
    granularity: str = "row",
    group_size: int | None = None,
) -> QuantResult:
    """Quantizes ``W`` to a real low-precision format with Qwix (``qwix.quantize`` → ``qwix.dequantize``).

    Formats: ``fp8_e4m3``, ``fp8_e5m2`` and ``nf4`` (scaled by absmax over the scale group given by
    ``granularity``/``group_size``), ``mxfp4`` (e2m1 values, power-of-two scale per block of 32 along a row) and
    ``nvfp4`` (e2m1 values, fp8-e4m3 scale per block of 16); the MX/NV block formats ignore ``granularity``.

    The grid is not uniform, so the noise model is Bennett's (1948) high-resolution formula: each entry's error
    variance is ``Δ_loc²/12`` with ``Δ_loc`` the width of the quantization cell it falls in (scale × the width
    of the cell of its level on the format's code book); ``noise_var_model`` is the mean over entries. ``step``
    holds Qwix's scales.
    """
    import qwix  # heavy import, only needed here

    W = check_matrix(W)
    check_choice(fmt, "fmt", tuple(FORMATS))
    qtype, block, bits = FORMATS[fmt]
    V, d = W.shape
    if block is not None:
        if d % block:
            raise ValueError(f"W: format {fmt!r} needs rows whose length is a multiple of {block}, got d={d}")
        channel, tiles = (0,), {1: block}
        cfg = QuantConfig(bits, "symmetric", "group", block)
    else:
        check_choice(granularity, "granularity", GRANULARITIES)
        if granularity == "group":
            check_int(group_size, "group_size", lo=1, hi=d)
            if d % group_size:
                raise ValueError(f"group_size: expected a divisor of d={d} for Qwix formats, got {group_size}")
        channel, tiles = {"tensor": ((), {}), "row": ((0,), {}), "column": ((1,), {}),
                          "group": ((0,), {1: group_size})}[granularity]
        cfg = QuantConfig(bits, "symmetric", granularity, group_size if granularity == "group" else None)
    Wj = jnp.asarray(W, dtype=jnp.float32)
    qarr = qwix.quantize(Wj, qtype, channelwise_axes=channel, tiled_axes=tiles)
    deq = qwix.dequantize(qarr).astype(jnp.float32)
    scale = jnp.asarray(qarr.scale, jnp.float32)
    levels, widths = _code_book(qtype)
    scale_full = _expand_scale(scale, (V, d))
    code = deq / jnp.where(scale_full > 0, scale_full, 1.0)
    cell = widths[jnp.searchsorted((levels[1:] + levels[:-1]) / 2, code)] * scale_full  # nearest level's cell
    model = float(jnp.mean(jnp.square(cell))) / 12.0
    stats = noise_statistics(Wj, deq, model)
    return QuantResult(dequantized=deq, step=scale, config=cfg, **stats)


def _expand_scale(scale: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """Broadcasts a Qwix scale (scalar, per row/column, or tiled along axis 1) to the matrix shape."""
    V, d = shape
    scale = jnp.broadcast_to(scale, (1, 1)) if scale.ndim == 0 else scale
    if scale.shape[1] not in (1, d):
        scale = jnp.repeat(scale, d // scale.shape[1], axis=1)
    return jnp.broadcast_to(scale, (V, d))


def _code_book(qtype: Any) -> tuple[jax.Array, jax.Array]:
    """Sorted finite values of a format (in units of its scale) and the width of each value's cell.

    The cell of level ``L_i`` runs between the midpoints to its neighbours, so its width is
    ``(L_{i+1} − L_{i−1})/2`` inside the grid and the one-sided gap at the two ends.
    """
    from qwix._src.core import numerics  # Qwix's own code books

    if qtype == "nf4":
        vals = np.asarray(numerics.get_nf4_buckets(), np.float64)
    else:
        dtype = jnp.float4_e2m1fn if qtype in ("mxfp4", "nvfp4") else jnp.dtype(qtype)
        nbits = jnp.finfo(dtype).bits
        codes = jnp.arange(2**nbits, dtype=jnp.uint8)
        if nbits == 4:
            vals = np.asarray(jax.lax.bitcast_convert_type(codes, jnp.uint4).astype(jnp.uint8))
            vals = np.asarray(jax.lax.bitcast_convert_type(jnp.asarray(vals, jnp.uint4), dtype), np.float64)
        else:
            vals = np.asarray(jax.lax.bitcast_convert_type(codes, dtype).astype(jnp.float32), np.float64)
    vals = np.unique(vals[np.isfinite(vals)])
    gaps = np.diff(vals)
    widths = np.empty_like(vals)
    widths[1:-1] = (gaps[:-1] + gaps[1:]) / 2
    widths[0], widths[-1] = gaps[0], gaps[-1]
    return jnp.asarray(vals, jnp.float32), jnp.asarray(widths, jnp.float32)
