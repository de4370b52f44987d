"""The paper's claims as explicit propositions, each checkable on a matrix, and the grid that verifies them.

Every claim of *On the Spectral Flattening of Quantized Embeddings* (arXiv 2602.00969) that the package relies
on is stated here as a proposition with its assumptions, and each proposition is a function that returns a
typed result: the predicted value, the bound (for an inequality), the measured value when a matrix is given,
and the slack or relative error. Each says whether it is

* **rigorous** — a deterministic inequality that holds for every matrix (Weyl 1912; the triangle inequality;
  ``‖E‖₂ ≤ ‖E‖_F``). A measured violation can only be a bug or floating-point round-off; the checks allow a
  tolerance :data:`RIGOROUS_RTOL` for the latter and count everything beyond it as a violation;
* **asymptotic** — a random-matrix limit (Marchenko & Pastur 1967; Benaych-Georges & Nadakuditi 2012; Dozier &
  Silverstein 2007) applied at finite V, d, and under a noise model (Widrow 1956 additive uniform noise, or the
  Bussgang 1952 decomposition). Its relative error is measured, never assumed.

The propositions (conventions of DESIGN.md: ``W`` is ``V×d``, rows = tokens, ``E = Q(W) − W``, model noise
variance ``s² = noise_var``, ``r = min(V, d)``):

* **P1** (Lemma 3.1; asymptotic): token directions ``e_k`` near-orthogonal, ``p_k ∝ k^(−s)`` ⇒ the rows
  ``√p_k e_k`` have ``σ_k ∝ k^(−s/2)`` at the leading ranks — :func:`zipf_rank_exponent`, built by
  :func:`lemma_embedding`.
* **P2** (noise floor): asymptotic — ``‖E‖₂ → s(√V + √d)`` (MP edge) for i.i.d. noise of variance s²
  (:func:`noise_floor`); rigorous — ``|σ_k(Q) − σ_k(W)| ≤ ‖E‖₂ ≤ ‖E‖_F ≤ c‖Δ‖_F`` for every k (Weyl; c = ½ for
  round-to-nearest, 1 for stochastic rounding, no clipping) (:func:`weyl_bounds`).
* **P3** (truncation index; asymptotic): ``k* = #{k : σ_k > s(Vd)^(1/4)}`` signal values survive as outliers
  (BGN); observed as the number of ``σ_k(Q)`` above the edge ``s(√V + √d)`` (:func:`truncation_index`).
* **P4** (stable rank): asymptotic — ``r_s(Q) ≈ (Σσ_i² + V d s²)/σ̃_1²``, σ̃_1 the spiked map of σ_1;
  rigorous — ``‖Q‖_F²/(‖W‖₂ + ‖E‖₂)² ≤ r_s(Q) ≤ ‖Q‖_F²/(‖W‖₂ − ‖E‖₂)²`` (:func:`stable_rank_increase`).
* **P5** (flattening; asymptotic/empirical): the rank-decay exponent over a fixed window falls,
  ``a(Q) < a(W)``, by the amount the predicted spectrum gives (:func:`spectral_flattening`).

:func:`verify` sweeps a :class:`VerifyGrid` (power-law matrices × bits × scale groups × rounding × seeds) and
returns an ``xarray.Dataset``; :func:`verification_table` condenses it per proposition and regime, and
:func:`run_verify` is what ``zipfrmt verify`` calls.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import sys
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

import zipfrmt
from zipfrmt import corpus, embeddings, quant, rmt, spectra
from zipfrmt._validate import check_choice, check_float_array, check_int, check_matrix, check_number, describe
from zipfrmt.analyze import parse_granularity

__all__ = [
    "FULL_GRID",
    "QUICK_GRID",
    "RIGOROUS_RTOL",
    "FlatteningCheck",
    "Measured",
    "NoiseFloorCheck",
    "StableRankCheck",
    "TruncationCheck",
    "VerifyGrid",
    "WeylCheck",
    "ZipfExponentCheck",
    "format_table",
    "lemma_embedding",
    "measure",
    "noise_floor",
    "run_verify",
    "separable_profile_edge",
    "spectral_flattening",
    "stable_rank_increase",
    "truncation_index",
    "verification_table",
    "verify",
    "weyl_bounds",
    "zipf_rank_exponent",
]

#: Tolerance of the rigorous checks, relative to their scale (``σ_1(W) + ‖E‖_F`` for singular-value
#: inequalities; the value itself for ratios). What it absorbs: singular values from ``method="gram64"``
#: (float64 Gram matrix, error ≲ √(r·2⁻⁵³)·σ_1 ≈ 3e-7·σ_1 on the tiniest σ, far less elsewhere) returned in
#: float32 (relative 6e-8), and ``E = Q − W`` formed in float32 (``‖δE‖₂ ≤ 2⁻²⁴‖E‖_F``).
RIGOROUS_RTOL = 1e-6

#: The singular-value method of :func:`measure`: accurate at any dynamic range, so the rigorous checks can
#: use a tolerance of 1e-6 (``"auto"`` guarantees 1e-4 only for σ ≥ 1e-3·σ_1).
MEASURE_METHOD = "gram64"

def _rel(pred: float, meas: float) -> float:
    """``(pred − meas)/|meas|``; 0 if both are 0, NaN if only the measurement is 0 or either is NaN."""
    if not (math.isfinite(pred) and math.isfinite(meas)):
        return math.nan
    if meas == 0:
        return 0.0 if pred == 0 else math.nan
    return (pred - meas) / abs(meas)


def _f64(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------
# Measurements of W, Q and E = Q − W, shared by the propositions
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Measured:
    """What a full-precision matrix ``W`` and its quantized ``Q`` measure, in float64.

    Attributes:
      shape: ``(V, d)``.
      sigma_W, sigma_Q, sigma_E: descending singular values of W, Q and ``E = Q − W`` (``r`` each).
      fro2_W, fro2_E: ``‖W‖_F²``, ``‖E‖_F²``.
      inner_WE: ``⟨W, E⟩ = Σ_ij W_ij E_ij``.
    """

    shape: tuple[int, int]
    sigma_W: np.ndarray = dataclasses.field(repr=False)
    sigma_Q: np.ndarray = dataclasses.field(repr=False)
    sigma_E: np.ndarray = dataclasses.field(repr=False)
    fro2_W: float
    fro2_E: float
    inner_WE: float

    @property
    def norm_E(self) -> float:
        """``‖E‖₂ = σ_1(E)``."""
        return float(self.sigma_E[0])

    @property
    def fro2_Q(self) -> float:
        """``‖Q‖_F² = ‖W‖_F² + ‖E‖_F² + 2⟨W, E⟩`` (an identity)."""
        return self.fro2_W + self.fro2_E + 2.0 * self.inner_WE

    @property
    def gain(self) -> float:
        """Bussgang gain ``g = ⟨W, Q⟩/⟨W, W⟩ = 1 + ⟨W, E⟩/‖W‖_F²`` (1 for W = 0)."""
        return 1.0 + self.inner_WE / self.fro2_W if self.fro2_W > 0 else 1.0

    @property
    def residual_var(self) -> float:
        """Per-entry variance of the Bussgang residual ``D = Q − gW = E + (1 − g)W``.

        ``‖D‖_F² = ‖E‖_F² + 2(1 − g)⟨W, E⟩ + (1 − g)²‖W‖_F²``, divided by ``V d``.
        """
        h = 1.0 - self.gain
        V, d = self.shape
        return max(self.fro2_E + 2.0 * h * self.inner_WE + h * h * self.fro2_W, 0.0) / (V * d)


@jax.jit
def _moments(W: Float[Array, "V d"], Q: Float[Array, "V d"]) -> tuple[jax.Array, ...]:
    W = W.astype(jnp.float64)
    E = Q.astype(jnp.float32).astype(jnp.float64) - W
    return jnp.vdot(W, W), jnp.vdot(E, E), jnp.vdot(W, E)


def measure(
    W: Float[Array, "V d"] | np.ndarray,
    Q: Float[Array, "V d"] | np.ndarray,
    *,
    sigma_W: Float[Array, " r"] | np.ndarray | None = None,
) -> Measured:
    """Singular values of W, Q and ``E = Q − W`` and the inner products the propositions need.

    Singular values come from :func:`zipfrmt.spectra.singular_values` with ``method="gram64"`` (the Gram path,
    float64 accumulation: no full SVD, accurate at any dynamic range). ``‖E‖₂`` is the top singular value of
    E, from its own Gram matrix. Pass ``sigma_W`` (W's singular values, e.g. computed once for many Q) to skip
    recomputing them. Norms and ``⟨W, E⟩`` are accumulated in float64.
    """
    W = check_matrix(W, "W")
    Q = check_matrix(Q, "Q")
    if tuple(W.shape) != tuple(Q.shape):
        raise ValueError(f"Q: expected the shape of W, {tuple(W.shape)}, got {tuple(Q.shape)}")
    V, d = (int(n) for n in W.shape)
    r = min(V, d)
    with jax.enable_x64(True):
        Wj = jnp.asarray(W, jnp.float32)
        Qj = jnp.asarray(Q, jnp.float32)
        if sigma_W is None:
            sW = _f64(spectra.singular_values(Wj, MEASURE_METHOD))
        else:
            sW = _f64(check_float_array(sigma_W, "sigma_W", ndim=1))
            if sW.size != r:
                raise ValueError(f"sigma_W: expected min(V, d) = {r} singular values, got {sW.size}")
        sQ = _f64(spectra.singular_values(Qj, MEASURE_METHOD))
        sE = _f64(spectra.singular_values(Qj - Wj, MEASURE_METHOD))
        fw, fe, ip = (float(x) for x in _moments(Wj, Qj))
    return Measured((V, d), sW, sQ, sE, fw, fe, ip)


# ---------------------------------------------------------------------------------------------------------
# P1 — Zipf ⇒ power-law spectrum (Lemma 3.1)
# ---------------------------------------------------------------------------------------------------------


def lemma_embedding(key: PRNGKeyArray, V: int, d: int, s: float) -> Float[Array, "V d"]:
    """The Lemma 3.1 construction: row k is ``√p_k · e_k``, ``p_k = k^(−s)/H_{V,s}`` (Zipf over V ranks).

    For ``V ≤ d`` the token directions ``e_k`` are Haar-orthonormal (rows of a Haar ``d×V`` frame), so
    ``WᵀW = Σ_k p_k e_k e_kᵀ`` has eigenvalues exactly ``p_k`` and ``σ_k = √p_k ∝ k^(−s/2)`` (no limit
    needed). For ``V > d`` orthonormality is impossible; the ``e_k`` are independent uniform unit vectors
    (near-orthogonal: ``|⟨e_j, e_k⟩| ~ d^(−1/2)``), the regime in which the lemma is an approximation for the
    leading ranks.
    """
    V = check_int(V, "V", lo=2)
    d = check_int(d, "d", lo=1)
    s = check_number(s, "s", lo=0.0, lo_open=True)
    p = corpus.zipf_pmf(V, s)
    if V <= d:
        directions = embeddings.haar_orthonormal(key, d, V).T
    else:
        directions = _unit_rows(key, V, d)
    return jnp.sqrt(p)[:, None] * directions


@partial(jax.jit, static_argnums=(1, 2))
def _unit_rows(key: PRNGKeyArray, V: int, d: int) -> Float[Array, "V d"]:
    G = jax.random.normal(key, (V, d), jnp.float32)
    return G / jnp.linalg.norm(G, axis=1, keepdims=True)


@dataclasses.dataclass(frozen=True)
class ZipfExponentCheck:
    """P1: the rank-decay exponent predicted from a Zipf exponent, and measured on a spectrum.

    Attributes:
      s: the Zipf exponent of the token probabilities.
      predicted: ``s/2``.
      measured: the least-squares rank-decay exponent of the given spectrum over ``window`` (None if no
        spectrum was given).
      window: the rank window ``(k_lo, k_hi)`` of the fit actually used (None without a spectrum).
      r2: the fit's coefficient of determination.
      rel_error: ``(predicted − measured)/measured``.
    """

    proposition: ClassVar[str] = "P1"
    kind: ClassVar[str] = "asymptotic"
    s: float
    predicted: float
    measured: float | None = None
    window: tuple[int, int] | None = None
    r2: float | None = None
    rel_error: float | None = None


def zipf_rank_exponent(
    s: float, sigma: Float[Array, " r"] | np.ndarray | None = None, *, window: tuple[int, int] | None = None
) -> ZipfExponentCheck:
    """P1 (Lemma 3.1 of arXiv 2602.00969) — *asymptotic*.

    Assumptions: token probabilities ``p_k ∝ k^(−s)`` (Zipf), embedding rows ``√p_k e_k`` with near-orthogonal
    unit directions ``e_k``. Claim: ``WᵀW = Σ_k p_k e_k e_kᵀ`` has eigenvalues ``λ_k ≈ p_k`` at the leading
    ranks, hence ``σ_k = √λ_k ∝ k^(−s/2)``: rank-decay exponent ``a = s/2``. Exact when the e_k are orthonormal
    (``V ≤ d``, :func:`lemma_embedding`); for ``V > d`` the ranks beyond d fold onto the leading ones and the
    statement holds only where ``p_k`` dominates the folded mass ``≈ Σ_{j>d} p_j / d`` (fast decay, s > 1, or
    the very first ranks).

    Args:
      s: Zipf exponent (> 0).
      sigma: a measured spectrum (descending) to compare with, e.g. of :func:`lemma_embedding`.
      window: the rank window of the fit; default ``(1, max(2, r // 8))``, the leading ranks.
    """
    s = check_number(s, "s", lo=0.0, lo_open=True)
    pred = s / 2.0
    if sigma is None:
        return ZipfExponentCheck(s, pred)
    sig = _f64(check_float_array(sigma, "sigma", ndim=1))
    r = sig.size
    if r < 2:
        raise ValueError(f"sigma: expected at least 2 singular values for a rank-decay fit, got {r}")
    k_lo, k_hi = window if window is not None else (1, max(2, r // 8))
    fit = spectra.rank_decay_exponent(sig, k_lo, k_hi)
    return ZipfExponentCheck(s, pred, fit.a, (fit.k_lo, fit.k_hi), fit.r2, _rel(pred, fit.a))


# ---------------------------------------------------------------------------------------------------------
# P2 — the noise floor: MP edge (asymptotic) and Weyl (rigorous)
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NoiseFloorCheck:
    """P2a: the Marchenko–Pastur edge of the quantization noise against ``‖E‖₂``.

    Attributes:
      predicted: the i.i.d. bulk edge ``s(√V + √d)``.
      lower_edge: ``s|√V − √d|``.
      threshold: the detection threshold ``s(Vd)^(1/4)`` (signal units, P3).
      profile_edge: the edge for the quantizer's variance profile (one variance per row, or per column; see
        :func:`noise_floor`), None where it was not computed (no quantizer result, or group scales).
      measured: ``‖E‖₂ = σ_1(Q − W)`` (None without a measurement).
      rel_error: ``(predicted − measured)/measured``; rel_error_profile: the same for ``profile_edge``.
    """

    proposition: ClassVar[str] = "P2"
    kind: ClassVar[str] = "asymptotic"
    predicted: float
    lower_edge: float
    threshold: float
    profile_edge: float | None = None
    measured: float | None = None
    rel_error: float | None = None
    rel_error_profile: float | None = None


def separable_profile_edge(variances: Float[Array, " n"] | np.ndarray, m: int) -> float:
    """Top edge of the singular values of ``E = diag(α)^(1/2) G`` (n×m, G i.i.d. standard): asymptotic.

    ``EᵀE = Σ_i α_i g_i g_iᵀ`` (``g_i ∈ R^m``), a sample-covariance-type matrix whose limiting spectrum
    (Marchenko & Pastur 1967; Silverstein & Bai 1995) has Stieltjes transform ``m(z)`` with
    ``z = −m/u + Σ_i α_i/(1 + α_i u)`` at ``u = m·m(z)``; the top edge is the minimum of that convex function of
    u over ``(−1/max α, 0)`` (Silverstein & Choi 1995). Found here by bisection on its derivative. With all
    ``α_i = s²`` it is ``s²(√n + √m)²``, the i.i.d. edge. Returns the singular-value edge ``√λ₊``.
    """
    a = _f64(check_float_array(variances, "variances", ndim=1))
    m = check_int(m, "m", lo=1)
    if (a < 0).any():
        raise ValueError(f"variances: expected non-negative variances, got min {a.min():g}")
    a = a[a > 0]
    if a.size == 0:
        return 0.0
    top = float(a.max())

    def slope(t: float) -> float:  # derivative in u = t/top, t ∈ (−1, 0)
        u = t / top
        return m / u**2 - float(np.sum((a / (1.0 + a * u)) ** 2))

    lo, hi = -1.0, 0.0  # slope → −∞ at t → −1⁺ (the largest α), → +∞ at t → 0⁻
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if slope(mid) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    u = 0.5 * (lo + hi) / top
    lam = -m / u + float(np.sum(a / (1.0 + a * u)))
    return math.sqrt(max(lam, 0.0))


def _profile_edge(result: quant.QuantResult, V: int, d: int, noise_var: float) -> float | None:
    """The edge for the per-row / per-column variance profile of a quantizer, its mean scaled to noise_var."""
    gran = result.config.granularity
    if gran == "group" or noise_var <= 0:
        return None
    if gran == "tensor":
        return math.sqrt(noise_var) * (math.sqrt(V) + math.sqrt(d))
    var = np.square(_f64(result.step)).reshape(-1)  # one Δ² per row (V) or per column (d)
    if var.sum() <= 0:
        return 0.0
    var = var * (noise_var / var.mean())  # the profile's shape from the steps, its level from the model
    return separable_profile_edge(var, d if gran == "row" else V)


def noise_floor(
    V: int,
    d: int,
    noise_var: float,
    measured: Measured | None = None,
    *,
    result: quant.QuantResult | None = None,
) -> NoiseFloorCheck:
    """P2a (Marchenko & Pastur 1967; Geman 1980 for the edge) — *asymptotic*.

    Assumptions: ``E`` has i.i.d. entries of mean 0 and variance ``s² = noise_var`` (the Widrow model:
    ``s² = mean(Δ²)/12``, ``mean(f(1−f)Δ²)`` for stochastic rounding). Claim: as V, d → ∞ at fixed d/V,
    ``σ_1(E) → s(√V + √d)`` and the singular values of E fill ``[s|√V − √d|, s(√V + √d)]``.

    Caveats: the quantization error is a deterministic function of W (uncorrelated with it only in the
    ``widrow`` regime), and with per-row, per-column or per-group steps its entries are not identically
    distributed: the step of a group follows its absmax, so E has a *variance profile*, which raises the top
    edge above the i.i.d. value even when the mean variance is exact. Given ``result`` (the
    :class:`zipfrmt.quant.QuantResult` of a row- or column-scaled quantizer) the profile's edge is reported too:
    E modelled as ``diag(α)^(1/2) G`` (row scales) or ``G diag(β)^(1/2)`` (column scales), ``α_i ∝ Δ_i²``
    normalised to mean ``s²``, edge from :func:`separable_profile_edge`. Group scales give a non-separable
    profile, for which no edge is computed here.
    """
    edges = rmt.mp_edges(V, d, noise_var)
    thr = rmt.detection_threshold(V, d, noise_var)
    prof = None
    if result is not None:
        if not isinstance(result, quant.QuantResult):
            raise TypeError(f"result: expected a zipfrmt.quant.QuantResult, got {describe(result)}")
        prof = _profile_edge(result, V, d, noise_var)
    if measured is None:
        return NoiseFloorCheck(edges.sigma_hi, edges.sigma_lo, thr, prof)
    _check_measured_shape(measured, V, d)
    nE = measured.norm_E
    rel_p = None if prof is None else _rel(prof, nE)
    return NoiseFloorCheck(edges.sigma_hi, edges.sigma_lo, thr, prof, nE, _rel(edges.sigma_hi, nE), rel_p)


def _check_measured_shape(m: Measured, V: int, d: int) -> None:
    if not isinstance(m, Measured):
        raise TypeError(f"measured: expected a Measured (from bounds.measure), got {describe(m)}")
    if m.shape != (V, d):
        raise ValueError(f"measured: expected measurements of a {V}×{d} matrix, got {m.shape[0]}×{m.shape[1]}")


@dataclasses.dataclass(frozen=True)
class WeylCheck:
    """P2b: the rigorous perturbation bounds of the quantized spectrum.

    Attributes:
      norm_E: ``‖E‖₂`` (the Weyl bound on every ``|σ_k(Q) − σ_k(W)|``).
      fro_E: ``‖E‖_F`` (a bound on ``‖E‖₂``).
      apriori: ``c‖Δ‖_F``, a bound on ``‖E‖_F`` from the step sizes alone (None where it does not apply:
        clipping other than absmax, the 1-bit quantizer, or no quantizer result given).
      max_shift: ``max_k |σ_k(Q) − σ_k(W)|``.
      slack: ``min_k (‖E‖₂ − |σ_k(Q) − σ_k(W)|)``, ≥ 0 when Weyl holds (up to ``tolerance``).
      tightness: ``max_shift / ‖E‖₂`` in [0, 1] (1: Weyl is attained at some k).
      violations: number of k with ``|σ_k(Q) − σ_k(W)| > ‖E‖₂ + tolerance`` (0 expected).
      fro_holds: ``‖E‖₂ ≤ ‖E‖_F + tolerance``.
      apriori_holds: ``‖E‖_F ≤ c‖Δ‖_F + tolerance`` (None when ``apriori`` is None).
      tolerance: the absolute floating-point tolerance used, ``RIGOROUS_RTOL·(σ_1(W) + ‖E‖_F)``.
      holds: every rigorous statement above held.
    """

    proposition: ClassVar[str] = "P2"
    kind: ClassVar[str] = "rigorous"
    norm_E: float
    fro_E: float
    apriori: float | None
    max_shift: float
    slack: float
    tightness: float
    violations: int
    fro_holds: bool
    apriori_holds: bool | None
    tolerance: float

    @property
    def holds(self) -> bool:
        return self.violations == 0 and self.fro_holds and self.apriori_holds is not False


def _step_fro2(result: quant.QuantResult, shape: tuple[int, int]) -> float:
    """``‖Δ‖_F² = Σ_ij Δ_ij²`` with Δ_ij the step of the scale group of entry (i, j)."""
    V, d = shape
    cfg = result.config
    step2 = np.square(_f64(result.step))
    if cfg.granularity == "tensor":
        return float(step2.reshape(())) * V * d
    if cfg.granularity == "row":
        return float(step2.sum()) * d
    if cfg.granularity == "column":
        return float(step2.sum()) * V
    g = cfg.group_size
    lengths = np.full(step2.shape[1], g, dtype=np.float64)
    lengths[-1] = d - g * (step2.shape[1] - 1)  # a ragged last block holds fewer entries
    return float(step2.sum(axis=0) @ lengths)


def weyl_bounds(measured: Measured, *, result: quant.QuantResult | None = None) -> WeylCheck:
    """P2b (Weyl 1912; the entrywise error of a uniform quantizer) — *rigorous*.

    For every matrix W and every perturbation E, with ``Q = W + E`` and every k:

        σ_k(W) − ‖E‖₂ ≤ σ_k(Q) ≤ σ_k(W) + ‖E‖₂            (Weyl's inequality for singular values)
        ‖E‖₂ ≤ ‖E‖_F                                        (σ_1² ≤ Σσ_i²)
        ‖E‖_F ≤ c‖Δ‖_F,  c = ½ (nearest), 1 (stochastic)    (|E_ij| ≤ cΔ_ij when nothing is clipped)

    The third needs a uniform quantizer with b ≥ 2 whose clipping range covers its group (``clip="absmax"``,
    symmetric or asymmetric — the asymmetric zero-point shift leaves at most Δ/2 outside the grid); given
    ``result`` (the :class:`zipfrmt.quant.QuantResult` of Q) it is evaluated from the steps alone, an a-priori
    bound on the noise floor. No randomness or limit is involved: a violation beyond ``tolerance`` is a bug.
    """
    if not isinstance(measured, Measured):
        raise TypeError(f"measured: expected a Measured (from bounds.measure), got {describe(measured)}")
    m = measured
    nE, fE = m.norm_E, math.sqrt(m.fro2_E)
    tol = RIGOROUS_RTOL * (float(m.sigma_W[0]) + fE)
    shift = np.abs(m.sigma_Q - m.sigma_W)
    max_shift = float(shift.max())
    apriori = apriori_ok = None
    if result is not None:
        if not isinstance(result, quant.QuantResult):
            raise TypeError(f"result: expected a zipfrmt.quant.QuantResult, got {describe(result)}")
        cfg = result.config
        if cfg.bits >= 2 and cfg.clip == "absmax":
            c = 1.0 if cfg.rounding == "stochastic" else 0.5
            apriori = c * math.sqrt(_step_fro2(result, m.shape))
            apriori_ok = bool(fE <= apriori * (1 + RIGOROUS_RTOL) + tol)
    return WeylCheck(
        norm_E=nE,
        fro_E=fE,
        apriori=apriori,
        max_shift=max_shift,
        slack=nE - max_shift,
        tightness=max_shift / nE if nE > 0 else 0.0,
        violations=int(np.sum(shift > nE + tol)),
        fro_holds=bool(nE <= fE + tol),
        apriori_holds=apriori_ok,
        tolerance=tol,
    )


# ---------------------------------------------------------------------------------------------------------
# P3 — the truncation index
# ---------------------------------------------------------------------------------------------------------


def _check_prediction(pred: Any, name: str, model: str | None = None) -> rmt.QuantizedPrediction:
    if not isinstance(pred, rmt.QuantizedPrediction):
        raise TypeError(f"{name}: expected a rmt.QuantizedPrediction, got {describe(pred)}")
    if model is not None and pred.model != model:
        raise ValueError(f"{name}: expected a prediction of the {model!r} model, got {pred.model!r}")
    return pred


@dataclasses.dataclass(frozen=True)
class TruncationCheck:
    """P3: how many signal singular values survive the noise floor.

    Attributes:
      predicted: ``k* = #{k : σ_k > s(Vd)^(1/4)}`` (additive model).
      predicted_bussgang: the same for the Bussgang model (``g σ_k`` against the residual's threshold), or None.
      measured: ``#{k : σ_k(Q) > s(√V + √d)}`` (None without a measurement).
      edge: the edge ``s(√V + √d)`` the measured values are counted against.
      threshold: ``s(Vd)^(1/4)``.
      error: ``predicted − measured``; rel_error: ``error / max(measured, 1)``; the same ``_bussgang``.
    """

    proposition: ClassVar[str] = "P3"
    kind: ClassVar[str] = "asymptotic"
    predicted: int
    edge: float
    threshold: float
    predicted_bussgang: int | None = None
    measured: int | None = None
    error: int | None = None
    rel_error: float | None = None
    rel_error_bussgang: float | None = None


def truncation_index(
    prediction: rmt.QuantizedPrediction,
    measured: Measured | None = None,
    *,
    bussgang: rmt.QuantizedPrediction | None = None,
) -> TruncationCheck:
    """P3 (Benaych-Georges & Nadakuditi 2012) — *asymptotic*.

    Assumptions: ``Q = W + E`` with E i.i.d. of variance s² (additive model; or ``Q = gW + D`` for
    Bussgang), a fixed number of signal values above the threshold as V, d → ∞. Claim: a signal value σ_k
    separates from the bulk iff ``σ_k > θ_c = s(Vd)^(1/4)``, so ``k* = #{k : σ_k > θ_c}`` values of a
    power-law tail survive at b bits and the rest are truncated into the noise floor. The observable is the
    number of quantized singular values above the edge ``s(√V + √d)`` (the image of θ_c under the spiked map).
    Caveat: values near θ_c emerge only O(n^(−2/3)) above the edge, within its fluctuations, and the
    sub-threshold signal widens the bulk (Dozier & Silverstein), so the count is noisy by a few ranks.

    Args:
      prediction: :func:`zipfrmt.rmt.predict_quantized` of W's spectrum with the model noise variance.
      measured: :func:`measure` of (W, Q).
      bussgang: :func:`zipfrmt.rmt.predict_quantized_bussgang` of the same spectrum, optional.
    """
    p = _check_prediction(prediction, "prediction", "additive")
    pb = None if bussgang is None else _check_prediction(bussgang, "bussgang", "bussgang")
    kb = None if pb is None else pb.truncation_index
    if measured is None:
        return TruncationCheck(p.truncation_index, p.noise_floor, p.threshold, kb)
    if not isinstance(measured, Measured):
        raise TypeError(f"measured: expected a Measured (from bounds.measure), got {describe(measured)}")
    meas = int(np.sum(measured.sigma_Q > p.noise_floor))
    err = p.truncation_index - meas
    rel_b = None if kb is None else (kb - meas) / max(meas, 1)
    return TruncationCheck(p.truncation_index, p.noise_floor, p.threshold, kb, meas, err, err / max(meas, 1), rel_b)


# ---------------------------------------------------------------------------------------------------------
# P4 — the stable rank increases
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StableRankCheck:
    """P4: stable rank of the quantized matrix — asymptotic prediction and rigorous bracket.

    Attributes:
      predicted: ``(Σσ_i² + V d s²)/σ̃_1²`` (additive model).
      predicted_bussgang: ``(g²Σσ_i² + V d s_D²)/σ̃_1²(gσ_1)`` (Bussgang model), or None.
      full: ``r_s(W)`` (measured when a measurement is given, else from the prediction's input spectrum).
      sigma1_predicted, sigma1_bussgang: the predicted ``σ̃_1`` of each model.
      fluctuation: ``2s/σ̃_1``, the first-order relative standard deviation of ``r_s(Q)`` about the
        prediction at finite size (``σ_1(Q) = σ̃_1 + u_1ᵀEv_1 + …``, ``u_1ᵀEv_1 ~ N(0, s²)``): the scale of
        the finite-size error, not a bound.
      measured: ``r_s(Q)``; sigma1_measured: ``σ_1(Q)`` (None without a measurement).
      lower_bound, upper_bound: the rigorous bracket ``‖Q‖_F²/(‖W‖₂ ± ‖E‖₂)²`` (upper: inf when
        ``‖E‖₂ ≥ ‖W‖₂``).
      bounds_hold: ``lower ≤ r_s(Q) ≤ upper`` (to ``RIGOROUS_RTOL``).
      increase_certified: ``lower_bound > r_s(W)``: the rigorous bracket alone proves that the stable rank rose.
      rel_error, rel_error_bussgang: ``(predicted − measured)/measured``.
    """

    proposition: ClassVar[str] = "P4"
    kind: ClassVar[str] = "asymptotic (prediction); rigorous (bracket)"
    predicted: float
    full: float
    sigma1_predicted: float
    fluctuation: float
    predicted_bussgang: float | None = None
    sigma1_bussgang: float | None = None
    measured: float | None = None
    sigma1_measured: float | None = None
    lower_bound: float | None = None
    upper_bound: float | None = None
    bounds_hold: bool | None = None
    increase_certified: bool | None = None
    rel_error: float | None = None
    rel_error_bussgang: float | None = None


def stable_rank_increase(
    prediction: rmt.QuantizedPrediction,
    measured: Measured | None = None,
    *,
    bussgang: rmt.QuantizedPrediction | None = None,
) -> StableRankCheck:
    """P4 — the stable rank of ``Q = Q_b(W)``: an *asymptotic* prediction and a *rigorous* bracket.

    **Asymptotic** (BGN 2012 for σ̃_1; the expected energy is exact): with E independent of W, i.i.d. of
    variance s², ``E‖Q‖_F² = ‖W‖_F² + V d s²`` and ``σ_1(Q) → σ̃_1 = √((σ_1² + s²V)(σ_1² + s²d))/σ_1`` for
    ``σ_1 > s(Vd)^(1/4)``, so ``r_s(Q) ≈ (Σσ_i² + V d s²)/σ̃_1²``. With ``σ̃_1² = σ_1² + s²(V + d) +
    s⁴Vd/σ_1²`` the prediction exceeds ``r_s(W) = Σσ_i²/σ_1²`` exactly when

        r_s(W) < V d / (V + d + s² V d / σ_1²),

    i.e. (noise small against σ_1) whenever ``r_s(W) ≲ Vd/(V + d)``, at least ``min(V, d)/2``: quantization
    is predicted to raise the stable rank of any matrix whose energy is not already spread over most of its
    ranks. For the Bussgang model the same with ``gσ`` and the residual variance.

    **Rigorous** (no model): ``‖Q‖_F² = ‖W‖_F² + ‖E‖_F² + 2⟨W, E⟩`` (identity) and
    ``‖W‖₂ − ‖E‖₂ ≤ ‖Q‖₂ ≤ ‖W‖₂ + ‖E‖₂`` (triangle inequality) give

        ‖Q‖_F² / (‖W‖₂ + ‖E‖₂)²  ≤  r_s(Q)  ≤  ‖Q‖_F² / (‖W‖₂ − ‖E‖₂)²   (the upper one if ‖E‖₂ < ‖W‖₂),

    evaluated from the measured ``‖E‖₂``, ``‖E‖_F`` and ``⟨W, E⟩``. What it does *not* prove: that the stable
    rank increases. The lower bound falls below ``r_s(W)`` whenever ``‖E‖₂`` is large against the energy the
    noise adds; only when ``lower_bound > r_s(W)`` (reported as ``increase_certified``) does the bracket alone
    certify an increase for that matrix. Nor does it say anything without measuring E.
    """
    p = _check_prediction(prediction, "prediction", "additive")
    pb = None if bussgang is None else _check_prediction(bussgang, "bussgang", "bussgang")
    s = math.sqrt(p.noise_var)
    fluct = 2.0 * s / p.sigma1 if p.sigma1 > 0 else math.nan
    kw: dict[str, Any] = {}
    if pb is not None:
        kw.update(predicted_bussgang=pb.stable_rank, sigma1_bussgang=pb.sigma1)
    if measured is None:
        return StableRankCheck(p.stable_rank, p.stable_rank_full, p.sigma1, fluct, **kw)
    if not isinstance(measured, Measured):
        raise TypeError(f"measured: expected a Measured (from bounds.measure), got {describe(measured)}")
    m = measured
    sQ, sW = m.sigma_Q, m.sigma_W
    rs_Q = float(np.sum(sQ**2) / sQ[0] ** 2) if sQ[0] > 0 else 0.0
    rs_W = float(np.sum(sW**2) / sW[0] ** 2) if sW[0] > 0 else 0.0
    fro2_Q = m.fro2_Q
    nW, nE = float(sW[0]), m.norm_E
    lower = fro2_Q / (nW + nE) ** 2 if nW + nE > 0 else 0.0
    upper = fro2_Q / (nW - nE) ** 2 if nW > nE else math.inf
    ok = (lower <= rs_Q * (1 + 10 * RIGOROUS_RTOL) + RIGOROUS_RTOL) and (rs_Q <= upper * (1 + 10 * RIGOROUS_RTOL))
    if pb is not None:
        kw["rel_error_bussgang"] = _rel(pb.stable_rank, rs_Q)
    return StableRankCheck(
        p.stable_rank,
        rs_W,
        p.sigma1,
        fluct,
        measured=rs_Q,
        sigma1_measured=float(sQ[0]),
        lower_bound=lower,
        upper_bound=upper,
        bounds_hold=bool(ok),
        increase_certified=bool(lower > rs_W),
        rel_error=_rel(p.stable_rank, rs_Q),
        **kw,
    )


# ---------------------------------------------------------------------------------------------------------
# P5 — flattening of the rank-decay exponent
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FlatteningCheck:
    """P5: the rank-decay exponent over a fixed window, before and after quantization.

    Attributes:
      window: ``(k_lo, k_hi)``, the window of the prediction's fit (the measured fits use the same).
      full: ``a(W)`` (measured on W when a measurement is given, else on the prediction's input).
      predicted: ``a`` of the predicted quantized spectrum (additive); predicted_bussgang: Bussgang, or None.
      flattened_predicted: ``predicted < full``.
      measured: ``a(Q)``; flattened_measured: ``measured < full`` (None without a measurement).
      rel_error, rel_error_bussgang: ``(predicted − measured)/|measured|``.
    """

    proposition: ClassVar[str] = "P5"
    kind: ClassVar[str] = "asymptotic"
    window: tuple[int, int | None]
    full: float
    predicted: float
    flattened_predicted: bool
    predicted_bussgang: float | None = None
    measured: float | None = None
    flattened_measured: bool | None = None
    rel_error: float | None = None
    rel_error_bussgang: float | None = None


def spectral_flattening(
    prediction: rmt.QuantizedPrediction,
    measured: Measured | None = None,
    *,
    bussgang: rmt.QuantizedPrediction | None = None,
) -> FlatteningCheck:
    """P5 — spectral flattening: ``a(Q) < a(W)`` over a fixed rank window — *asymptotic / empirical*.

    Assumptions: those of P3/P4 (additive or Bussgang noise, BGN spikes above the threshold, an MP or
    Dozier–Silverstein bulk below). Claim: the noise floor lifts the tail ``σ_k, k > k*`` to the bulk, whose
    singular values decay far more slowly than ``k^(−a)``; over a window reaching past k* the fitted
    exponent of Q is smaller than that of W, by the amount the predicted spectrum
    (:func:`zipfrmt.rmt.predict_quantized`, its ``rank_window``) gives. There is no inequality to prove here:
    flattening is reported per matrix (measured and predicted) and the predicted exponent is compared with the
    measured one over the same window.
    """
    p = _check_prediction(prediction, "prediction", "additive")
    pb = None if bussgang is None else _check_prediction(bussgang, "bussgang", "bussgang")
    window = (p.decay.k_lo, p.decay_full.k_hi)
    kw: dict[str, Any] = {}
    if pb is not None:
        kw["predicted_bussgang"] = pb.decay.a
    if measured is None:
        return FlatteningCheck(window, p.decay_full.a, p.decay.a, bool(p.decay.a < p.decay_full.a), **kw)
    if not isinstance(measured, Measured):
        raise TypeError(f"measured: expected a Measured (from bounds.measure), got {describe(measured)}")
    k_lo, k_hi = window
    a_W = spectra.rank_decay_exponent(measured.sigma_W, k_lo, k_hi).a
    a_Q = spectra.rank_decay_exponent(measured.sigma_Q, k_lo, k_hi).a
    if pb is not None:
        kw["rel_error_bussgang"] = _rel(pb.decay.a, a_Q)
    return FlatteningCheck(
        window,
        a_W,
        p.decay.a,
        bool(p.decay.a < a_W),
        measured=a_Q,
        flattened_measured=bool(a_Q < a_W),
        rel_error=_rel(p.decay.a, a_Q),
        **kw,
    )


# ---------------------------------------------------------------------------------------------------------
# The verification grid
# ---------------------------------------------------------------------------------------------------------

#: Stable indices folded into the stochastic-rounding key (independent of the order in a grid).
_GRAN_CODE = {"tensor": 0, "row": 1, "column": 2}


def _gran_code(label: str) -> int:
    kind, g = parse_granularity(label)
    return _GRAN_CODE[kind] if g is None else 1000 + g


@dataclasses.dataclass(frozen=True)
class VerifyGrid:
    """A grid of verification points: every combination of the tuples below.

    Each point is a power-law matrix ``σ_k = k^(−a)`` with Haar singular vectors
    (:func:`zipfrmt.embeddings.power_law_matrix`) of shape ``V×d``, quantized with the symmetric absmax
    quantizer at ``bits`` over the scale groups ``granularity`` (``tensor``, ``row``, ``column`` or
    ``group<N>``) with ``rounding`` (``nearest`` or ``stochastic``). Keys: ``jax.random.key(seed)`` is split
    into (matrix, Lemma 3.1 construction, rounding); the stochastic-rounding key folds in ``bits`` and the
    granularity, so each point is reproducible on its own, whatever the rest of the grid.

    Attributes:
      V, d, a, bits, granularity, rounding, seeds: the axes (non-empty tuples of distinct values).
      rank_window: ``(k_lo, k_hi)`` of the P5 exponent fits (``k_hi = None``: every nonzero σ); the same for
        every shape, so ``k_hi`` must not exceed any ``min(V, d)``.
      bulk: how :func:`zipfrmt.rmt.predict_quantized` predicts the bulk, ``"mp"`` (fast) or
        ``"dozier-silverstein"`` (about 0.2–0.5 s per point on a CPU).
    """

    V: tuple[int, ...]
    d: tuple[int, ...]
    a: tuple[float, ...]
    bits: tuple[int, ...]
    granularity: tuple[str, ...] = ("tensor", "row", "column", "group32")
    rounding: tuple[str, ...] = ("nearest", "stochastic")
    seeds: tuple[int, ...] = (0,)
    rank_window: tuple[int, int | None] | None = None
    bulk: str = "mp"

    AXES: ClassVar[tuple[str, ...]] = ("V", "d", "a", "bits", "granularity", "rounding", "seed")

    def __post_init__(self) -> None:
        for name in ("V", "d", "a", "bits", "granularity", "rounding", "seeds"):
            values = getattr(self, name)
            if not isinstance(values, tuple):
                raise TypeError(f"{name}: expected a tuple of values, got {describe(values)}")
            if len(values) == 0:
                raise ValueError(f"{name}: expected at least one value, got an empty tuple (a grid with no points)")
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: expected distinct values, got {values!r}")
        for V in self.V:
            check_int(V, "V", lo=2)
        for d in self.d:
            check_int(d, "d", lo=2)
        for a in self.a:
            check_number(a, "a", lo=0.0, lo_open=True)
        for b in self.bits:
            check_int(b, "bits", lo=2, hi=16)
        for seed in self.seeds:
            check_int(seed, "seeds", lo=0)
        for g in self.granularity:
            _, size = parse_granularity(g)
            if size is not None and not 1 <= size <= min(self.d):
                raise ValueError(f"granularity: expected a group size in [1, min(d) = {min(self.d)}], got {g!r}")
        for r in self.rounding:
            check_choice(r, "rounding", quant.ROUNDINGS)
        check_choice(self.bulk, "bulk", ("mp", "dozier-silverstein"))
        if self.rank_window is not None:
            w = self.rank_window
            if not isinstance(w, tuple) or len(w) != 2:
                raise TypeError(f"rank_window: expected a tuple (k_lo, k_hi) or None, got {describe(w)}")
            r_min = min(min(V, d) for V in self.V for d in self.d)
            k_lo = check_int(w[0], "rank_window[0]", lo=1, hi=r_min)
            if w[1] is not None:
                check_int(w[1], "rank_window[1]", lo=k_lo + 1, hi=r_min)

    @property
    def shape(self) -> tuple[int, ...]:
        """Length of each axis, in the order of :attr:`AXES`."""
        return tuple(len(getattr(self, "seeds" if ax == "seed" else ax)) for ax in self.AXES)

    @property
    def n_points(self) -> int:
        return math.prod(self.shape)

    def as_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON-able Python."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


#: ≥ 300 points in a few minutes on a 2-core CPU: 2·1·3·5·4·2·2 = 480 points.
QUICK_GRID = VerifyGrid(
    V=(2048, 4096),
    d=(256,),
    a=(0.3, 0.5, 1.0),
    bits=(8, 6, 4, 3, 2),
    granularity=("tensor", "row", "column", "group32"),
    rounding=("nearest", "stochastic"),
    seeds=(0, 1),
)

#: For a GPU: 2·2·5·6·5·2·3 = 3600 points up to 16384×1024, with the Dozier–Silverstein bulk (better
#: P5 exponents where much of the signal sits near the threshold; about 0.2–0.5 s more per point on a CPU).
FULL_GRID = VerifyGrid(
    V=(4096, 16384),
    d=(512, 1024),
    a=(0.3, 0.5, 0.75, 1.0, 1.5),
    bits=(8, 6, 5, 4, 3, 2),
    granularity=("tensor", "row", "column", "group32", "group128"),
    rounding=("nearest", "stochastic"),
    seeds=(0, 1, 2),
    bulk="dozier-silverstein",
)

#: Per-point variables of the dataset: name → (dims group, dtype, proposition, kind, description).
#: dims group "point" = all seven axes; "matrix" = (V, d, a, seed).
_VARIABLES: dict[str, tuple[str, str, str, str, str]] = {
    "regime": ("point", "U9", "-", "measured", "widrow or dead-zone (zipfrmt.quant.classify_regime)"),
    "noise_var_model": ("point", "f8", "-", "model", "model variance s² = mean(Δ²)/12 (mean f(1-f)Δ² stochastic)"),
    "noise_var_measured": ("point", "f8", "-", "measured", "mean((Q − W)²)"),
    "bussgang_gain": ("point", "f8", "-", "measured", "g = ⟨W, Q⟩/⟨W, W⟩"),
    "residual_var": ("point", "f8", "-", "measured", "per-entry variance of D = Q − gW"),
    "zero_fraction": ("point", "f8", "-", "measured", "fraction of entries of Q equal to 0"),
    "p1_exponent_predicted": ("matrix", "f8", "P1", "asymptotic", "s/2 with s = 2a"),
    "p1_exponent_measured": ("matrix", "f8", "P1", "measured", "rank exponent of the Lemma 3.1 construction"),
    "stable_rank_full": ("matrix", "f8", "P4", "measured", "r_s(W)"),
    "exponent_full": ("matrix", "f8", "P5", "measured", "a(W) over the rank window"),
    "edge_predicted": ("point", "f8", "P2", "asymptotic", "MP edge s(√V + √d)"),
    "edge_profile": ("point", "f8", "P2", "asymptotic", "edge for the row/column variance profile (NaN: group)"),
    "sigma_max_E": ("point", "f8", "P2", "measured", "‖E‖₂ = σ_1(Q − W)"),
    "fro_E": ("point", "f8", "P2", "measured", "‖E‖_F"),
    "apriori_bound": ("point", "f8", "P2", "rigorous", "c‖Δ‖_F, c = ½ nearest, 1 stochastic"),
    "weyl_violations": ("point", "i8", "P2", "rigorous", "#k with |σ_k(Q) − σ_k(W)| > ‖E‖₂ + tol"),
    "weyl_tightness": ("point", "f8", "P2", "measured", "max_k |σ_k(Q) − σ_k(W)| / ‖E‖₂"),
    "fro_bound_holds": ("point", "?", "P2", "rigorous", "‖E‖₂ ≤ ‖E‖_F"),
    "apriori_bound_holds": ("point", "?", "P2", "rigorous", "‖E‖_F ≤ c‖Δ‖_F"),
    "k_star_additive": ("point", "i8", "P3", "asymptotic", "#{σ_k > s(Vd)^(1/4)}"),
    "k_star_bussgang": ("point", "i8", "P3", "asymptotic", "#{gσ_k > s_D(Vd)^(1/4)}"),
    "k_measured": ("point", "i8", "P3", "measured", "#{σ_k(Q) > s(√V + √d)}"),
    "sigma1_additive": ("point", "f8", "P4", "asymptotic", "σ̃_1, spiked map of σ_1 (additive)"),
    "sigma1_bussgang": ("point", "f8", "P4", "asymptotic", "σ̃_1, spiked map of gσ_1 (Bussgang)"),
    "sigma1_measured": ("point", "f8", "P4", "measured", "σ_1(Q)"),
    "stable_rank_additive": ("point", "f8", "P4", "asymptotic", "(Σσ² + Vds²)/σ̃_1²"),
    "stable_rank_bussgang": ("point", "f8", "P4", "asymptotic", "(g²Σσ² + Vds_D²)/σ̃_1²"),
    "stable_rank_measured": ("point", "f8", "P4", "measured", "r_s(Q)"),
    "stable_rank_fluctuation": ("point", "f8", "P4", "asymptotic", "2s/σ̃_1, relative finite-size std"),
    "sr_lower_bound": ("point", "f8", "P4", "rigorous", "‖Q‖_F²/(‖W‖₂ + ‖E‖₂)²"),
    "sr_upper_bound": ("point", "f8", "P4", "rigorous", "‖Q‖_F²/(‖W‖₂ − ‖E‖₂)² (inf if ‖E‖₂ ≥ ‖W‖₂)"),
    "sr_bounds_hold": ("point", "?", "P4", "rigorous", "lower ≤ r_s(Q) ≤ upper"),
    "sr_increase_certified": ("point", "?", "P4", "rigorous", "lower bound > r_s(W)"),
    "exponent_additive": ("point", "f8", "P5", "asymptotic", "a of the predicted spectrum (additive)"),
    "exponent_bussgang": ("point", "f8", "P5", "asymptotic", "a of the predicted spectrum (Bussgang)"),
    "exponent_measured": ("point", "f8", "P5", "measured", "a(Q) over the rank window"),
}

_FILL = {"f8": math.nan, "i8": -1, "?": False, "U9": ""}


def _point_values(
    W: jax.Array, sW: np.ndarray, V: int, d: int, bits: int, gran: str, rounding: str, key: Any, grid: VerifyGrid
) -> dict[str, Any]:
    """Quantizes W at one configuration, measures, predicts and checks every proposition."""
    kind, group = parse_granularity(gran)
    res = quant.quantize(W, bits, granularity=kind, group_size=group, rounding=rounding, key=key)
    m = measure(W, res.dequantized, sigma_W=sW)
    g = max(m.gain, 0.0)
    pa = rmt.predict_quantized(sW, V, d, res.noise_var_model, bulk=grid.bulk, rank_window=grid.rank_window)
    pb = rmt.predict_quantized_bussgang(sW, V, d, g, m.residual_var, bulk=grid.bulk, rank_window=grid.rank_window)
    nf = noise_floor(V, d, res.noise_var_model, m, result=res)
    wb = weyl_bounds(m, result=res)
    tr = truncation_index(pa, m, bussgang=pb)
    sr = stable_rank_increase(pa, m, bussgang=pb)
    fl = spectral_flattening(pa, m, bussgang=pb)
    return {
        "regime": res.regime,
        "noise_var_model": res.noise_var_model,
        "noise_var_measured": m.fro2_E / (V * d),
        "bussgang_gain": g,
        "residual_var": m.residual_var,
        "zero_fraction": res.zero_fraction,
        "edge_predicted": nf.predicted,
        "edge_profile": math.nan if nf.profile_edge is None else nf.profile_edge,
        "sigma_max_E": nf.measured,
        "fro_E": wb.fro_E,
        "apriori_bound": math.nan if wb.apriori is None else wb.apriori,
        "weyl_violations": wb.violations,
        "weyl_tightness": wb.tightness,
        "fro_bound_holds": wb.fro_holds,
        "apriori_bound_holds": bool(wb.apriori_holds) if wb.apriori_holds is not None else True,
        "k_star_additive": tr.predicted,
        "k_star_bussgang": tr.predicted_bussgang,
        "k_measured": tr.measured,
        "sigma1_additive": sr.sigma1_predicted,
        "sigma1_bussgang": sr.sigma1_bussgang,
        "sigma1_measured": sr.sigma1_measured,
        "stable_rank_additive": sr.predicted,
        "stable_rank_bussgang": sr.predicted_bussgang,
        "stable_rank_measured": sr.measured,
        "stable_rank_fluctuation": sr.fluctuation,
        "sr_lower_bound": sr.lower_bound,
        "sr_upper_bound": sr.upper_bound,
        "sr_bounds_hold": sr.bounds_hold,
        "sr_increase_certified": sr.increase_certified,
        "exponent_additive": fl.predicted,
        "exponent_bussgang": fl.predicted_bussgang,
        "exponent_measured": fl.measured,
    }


def verify(grid: VerifyGrid, *, progress: bool = True) -> Any:
    """Sweeps every point of ``grid``: build, quantize, measure, predict, check. Returns an ``xarray.Dataset``.

    Per ``(V, d, a, seed)`` one power-law matrix W is built and its singular values computed once
    (:func:`measure` reuses them for every bit width, scale group and rounding), and the Lemma 3.1
    construction with ``s = 2a`` is measured for P1. Per point W is quantized
    (:func:`zipfrmt.quant.quantize`), the spectra of Q and E = Q − W are computed through their Gram matrices
    (no full SVD), and both models are predicted: the additive one with the quantizer's *model* noise variance
    (:func:`zipfrmt.rmt.predict_quantized`) and the Bussgang one with the *measured* gain and residual
    variance (:func:`zipfrmt.rmt.predict_quantized_bussgang`).

    Returns:
      A Dataset with dims ``(V, d, a, bits, granularity, rounding, seed)`` (the matrix-level variables —
      ``p1_*``, ``stable_rank_full``, ``exponent_full`` — on ``(V, d, a, seed)``), one variable per predicted or
      measured quantity (each with attributes ``proposition``, ``kind`` and ``description``), ``regime`` per
      point, and attributes ``grid`` (JSON of the config), ``zipfrmt_version``, ``rigorous_rtol``.

    Raises:
      RuntimeError: a point failed; the message names its configuration (the sweep never skips silently).
    """
    import xarray as xr
    from tqdm import tqdm

    if not isinstance(grid, VerifyGrid):
        raise TypeError(f"grid: expected a VerifyGrid, got {describe(grid)}")
    shape = grid.shape
    mshape = (shape[0], shape[1], shape[2], shape[6])
    arrays = {
        name: np.full(shape if group == "point" else mshape, _FILL[dt], dtype=dt)
        for name, (group, dt, *_rest) in _VARIABLES.items()
    }
    bar = tqdm(total=grid.n_points, desc="verify", file=sys.stderr, disable=not progress, unit="pt")
    try:
        for (iV, V), (id_, d), (ia, a), (iseed, seed) in itertools.product(
            enumerate(grid.V), enumerate(grid.d), enumerate(grid.a), enumerate(grid.seeds)
        ):
            where = f"V={V}, d={d}, a={a}, seed={seed}"
            try:
                k_matrix, k_lemma, k_round = jax.random.split(jax.random.key(seed), 3)
                W = embeddings.power_law_matrix(k_matrix, V, d, a)
                sW = _f64(spectra.singular_values(W, MEASURE_METHOD))
                lemma = lemma_embedding(k_lemma, V, d, 2 * a)
                p1 = zipf_rank_exponent(2 * a, spectra.singular_values(lemma, MEASURE_METHOD))
                k_lo, k_hi = grid.rank_window if grid.rank_window is not None else (1, None)
                mi = (iV, id_, ia, iseed)
                arrays["p1_exponent_predicted"][mi] = p1.predicted
                arrays["p1_exponent_measured"][mi] = p1.measured
                arrays["stable_rank_full"][mi] = float(np.sum(sW**2) / sW[0] ** 2)
                arrays["exponent_full"][mi] = spectra.rank_decay_exponent(sW, k_lo, k_hi).a
            except Exception as exc:  # noqa: BLE001 - re-raised with the point's configuration
                raise RuntimeError(f"verify: the matrix at {where} failed: {type(exc).__name__}: {exc}") from exc
            for (ib, bits), (ig, gran), (ir, rounding) in itertools.product(
                enumerate(grid.bits), enumerate(grid.granularity), enumerate(grid.rounding)
            ):
                key = None
                if rounding == "stochastic":
                    key = jax.random.fold_in(jax.random.fold_in(k_round, bits), _gran_code(gran))
                try:
                    values = _point_values(W, sW, V, d, bits, gran, rounding, key, grid)
                except Exception as exc:  # noqa: BLE001 - re-raised with the point's configuration
                    raise RuntimeError(
                        f"verify: the point {where}, bits={bits}, granularity={gran!r}, rounding={rounding!r} "
                        f"failed: {type(exc).__name__}: {exc}"
                    ) from exc
                pi = (iV, id_, ia, ib, ig, ir, iseed)
                for name, value in values.items():
                    arrays[name][pi] = value
                bar.update(1)
    finally:
        bar.close()
    coords = {
        "V": list(grid.V),
        "d": list(grid.d),
        "a": list(grid.a),
        "bits": list(grid.bits),
        "granularity": list(grid.granularity),
        "rounding": list(grid.rounding),
        "seed": list(grid.seeds),
    }
    mdims = ("V", "d", "a", "seed")
    data_vars = {}
    for name, (group, _dt, prop, kind, desc) in _VARIABLES.items():
        dims = VerifyGrid.AXES if group == "point" else mdims
        data_vars[name] = (dims, arrays[name], {"proposition": prop, "kind": kind, "description": desc})
    attrs = {
        "title": "zipfrmt numerical verification of the flattening propositions P1-P5",
        "grid": json.dumps(grid.as_dict()),
        "zipfrmt_version": zipfrmt.__version__,
        "jax_version": jax.__version__,
        "rigorous_rtol": RIGOROUS_RTOL,
        "measure_method": MEASURE_METHOD,
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


# ---------------------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------------------

#: Asymptotic comparisons: (proposition, quantity, model, predicted variable, measured variable, error kind).
#: Error kinds: "rel" = (pred − meas)/|meas|; "count" = (pred − meas)/max(meas, 1).
_ASYMPTOTIC: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("P1", "rank exponent s/2 (Lemma 3.1)", "-", "p1_exponent_predicted", "p1_exponent_measured", "rel"),
    ("P2", "‖E‖₂ vs MP edge s(√V+√d)", "additive", "edge_predicted", "sigma_max_E", "rel"),
    ("P2", "‖E‖₂ vs edge of the variance profile", "profile", "edge_profile", "sigma_max_E", "rel"),
    ("P3", "truncation index k*", "additive", "k_star_additive", "k_measured", "count"),
    ("P3", "truncation index k*", "bussgang", "k_star_bussgang", "k_measured", "count"),
    ("P4", "σ_1(Q) (spiked map)", "additive", "sigma1_additive", "sigma1_measured", "rel"),
    ("P4", "σ_1(Q) (spiked map)", "bussgang", "sigma1_bussgang", "sigma1_measured", "rel"),
    ("P4", "stable rank r_s(Q)", "additive", "stable_rank_additive", "stable_rank_measured", "rel"),
    ("P4", "stable rank r_s(Q)", "bussgang", "stable_rank_bussgang", "stable_rank_measured", "rel"),
    ("P5", "rank exponent a(Q)", "additive", "exponent_additive", "exponent_measured", "rel"),
    ("P5", "rank exponent a(Q)", "bussgang", "exponent_bussgang", "exponent_measured", "rel"),
)

_REGIMES = ("widrow", "dead-zone")


def _stats(err: np.ndarray) -> tuple[int, float, float]:
    """(n finite, median |err|, worst |err|) of an error array."""
    e = np.abs(err[np.isfinite(err)])
    if e.size == 0:
        return 0, math.nan, math.nan
    return int(e.size), float(np.median(e)), float(e.max())


def _errors(ds: Any, pred: str, meas: str, how: str) -> np.ndarray:
    p, m = _f64(ds[pred].values), _f64(ds[meas].values)
    with np.errstate(divide="ignore", invalid="ignore"):
        if how == "count":
            return (p - m) / np.maximum(m, 1.0)
        out = (p - m) / np.abs(m)
        return np.where((m == 0) & (p == 0), 0.0, out)


def _row(prop: str, quantity: str, kind: str, model: str, points: int, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "proposition": prop,
        "quantity": quantity,
        "kind": kind,
        "model": model,
        "points": points,
        "violations": None,
        "certified": None,
    }
    for group in ("all", *_REGIMES):
        row.update({f"{group}_n": None, f"{group}_median": None, f"{group}_worst": None})
    row.update(extra)
    return row


def verification_table(ds: Any) -> list[dict[str, Any]]:
    """Condenses a :func:`verify` Dataset: one row per proposition, quantity and model (plain Python, JSON-able).

    Each row has ``proposition``, ``quantity``, ``kind`` (rigorous / asymptotic / empirical), ``model``
    (additive / bussgang / -), ``points`` (how many were checked), ``violations`` (rigorous rows: must be 0),
    ``certified`` (rows that count successes, e.g. P4 increases certified by the rigorous bracket, P5 points
    that flattened), and for asymptotic rows ``{group}_n``, ``{group}_median`` and ``{group}_worst`` — the
    number of finite errors, the median and the worst absolute relative error — for ``group`` in ``all``,
    ``widrow`` and ``dead-zone`` (the regime of each point; P1 has no regime and fills only ``all``).
    The additive model's errors in the dead-zone regime are reported like any others, never hidden.
    A final P4 row restricts the stable rank to the pinned target set: widrow, b ≥ 3, non-tensor scale groups.
    """
    if not (hasattr(ds, "data_vars") and "regime" in ds.data_vars):
        raise TypeError(f"ds: expected the xarray.Dataset returned by bounds.verify, got {describe(ds)}")
    regime = np.asarray(ds["regime"].values).astype(str)
    n_points = int(regime.size)
    rows: list[dict[str, Any]] = []
    for prop, quantity, model, pred, meas, how in _ASYMPTOTIC:
        err = _errors(ds, pred, meas, how)
        if prop == "P1":
            n, med, worst = _stats(err)
            rows.append(
                _row(prop, quantity, "asymptotic", model, int(err.size), all_n=n, all_median=med, all_worst=worst)
            )
            continue
        extra: dict[str, Any] = {}
        for group in ("all", *_REGIMES):
            sel = np.ones(err.shape, bool) if group == "all" else regime == group
            n, med, worst = _stats(err[sel])
            extra.update({f"{group}_n": n, f"{group}_median": med, f"{group}_worst": worst})
        rows.append(_row(prop, quantity, "asymptotic", model, n_points, **extra))
        if pred == "stable_rank_additive":
            bits = ds["bits"].broadcast_like(ds["regime"]).values
            gran = ds["granularity"].broadcast_like(ds["regime"]).values.astype(str)
            target = (regime == "widrow") & (bits >= 3) & (gran != "tensor")
            n, med, worst = _stats(err[target])
            rows.append(
                _row(prop, "stable rank, target set (widrow, b≥3, no tensor)", "asymptotic", model, int(target.sum()),
                     widrow_n=n, widrow_median=med, widrow_worst=worst)
            )
    weyl = np.asarray(ds["weyl_violations"].values)
    rows.append(_row("P2", "Weyl |σ_k(Q)−σ_k(W)| ≤ ‖E‖₂ (all k)", "rigorous", "-", n_points,
                     violations=int(np.sum(weyl > 0)), note=f"{int(weyl.sum())} (point, k) violations"))
    rows.append(_row("P2", "‖E‖₂ ≤ ‖E‖_F", "rigorous", "-", n_points,
                     violations=int(np.sum(~np.asarray(ds["fro_bound_holds"].values)))))
    has_apriori = np.isfinite(_f64(ds["apriori_bound"].values))
    rows.append(_row("P2", "‖E‖_F ≤ c‖Δ‖_F (a priori, steps only)", "rigorous", "-", int(has_apriori.sum()),
                     violations=int(np.sum(~np.asarray(ds["apriori_bound_holds"].values) & has_apriori))))
    rows.append(_row("P4", "‖Q‖_F²/(‖W‖₂±‖E‖₂)² brackets r_s(Q)", "rigorous", "-", n_points,
                     violations=int(np.sum(~np.asarray(ds["sr_bounds_hold"].values))),
                     certified=int(np.sum(np.asarray(ds["sr_increase_certified"].values))),
                     note="certified = lower bound > r_s(W)"))
    rs_rise = _f64(ds["stable_rank_measured"].values) > _f64(ds["stable_rank_full"].broadcast_like(ds["regime"]).values)
    rows.append(_row("P4", "r_s(Q) > r_s(W) observed", "empirical", "-", n_points, certified=int(rs_rise.sum())))
    a_full = _f64(ds["exponent_full"].broadcast_like(ds["regime"]).values)
    flat_m = _f64(ds["exponent_measured"].values) < a_full
    flat_p = _f64(ds["exponent_additive"].values) < a_full
    rows.append(_row("P5", "a(Q) < a(W) observed", "empirical", "-", n_points, certified=int(flat_m.sum()),
                     note=f"additive prediction agrees at {int(np.sum(flat_m == flat_p))} points"))
    return rows


def _pct(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{100 * x:.2f}%" if abs(x) < 10 else f"{100 * x:.3g}%"


def format_table(rows: list[dict[str, Any]]) -> str:
    """A readable text table of :func:`verification_table` rows (errors as absolute relative errors, %)."""
    if not isinstance(rows, list):
        raise TypeError(f"rows: expected the list returned by verification_table, got {describe(rows)}")
    head = ("P", "quantity", "kind", "model", "points", "viol.", "certif.",
            "widrow n", "med", "worst", "dead-zone n", "med", "worst", "all med", "worst")
    body = []
    for r in rows:
        def cnt(k: str, r: dict[str, Any] = r) -> str:
            return "-" if r.get(k) is None else str(r[k])

        body.append((
            r["proposition"], r["quantity"], r["kind"], r["model"], str(r["points"]), cnt("violations"),
            cnt("certified"), cnt("widrow_n"), _pct(r.get("widrow_median")), _pct(r.get("widrow_worst")),
            cnt("dead-zone_n"), _pct(r.get("dead-zone_median")), _pct(r.get("dead-zone_worst")),
            _pct(r.get("all_median")), _pct(r.get("all_worst")),
        ))
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    left = {1, 2, 3}

    def line(cells: tuple[str, ...]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in pairs)

    out = [line(head), "  ".join("-" * w for w in widths), *(line(b) for b in body)]
    notes = [f"  {r['proposition']} {r['quantity']}: {r['note']}" for r in rows if r.get("note")]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def run_verify(
    scale: str = "quick", json_path: str | Path | None = None, *, progress: bool = True
) -> tuple[Any, list[dict[str, Any]]]:
    """Runs :func:`verify` on :data:`QUICK_GRID` (``"quick"``) or :data:`FULL_GRID` (``"full"``).

    Returns ``(dataset, rows)`` with ``rows = verification_table(dataset)``. With ``json_path`` it also writes
    ``{"scale", "grid", "zipfrmt_version", "rows"}`` there (NaN as null). This is ``zipfrmt verify
    [--scale quick|full] [--json OUT]``; print the rows with :func:`format_table`.
    """
    scale = check_choice(scale, "scale", ("quick", "full"))
    grid = QUICK_GRID if scale == "quick" else FULL_GRID
    ds = verify(grid, progress=progress)
    rows = verification_table(ds)
    if json_path is not None:
        payload = {"scale": scale, "grid": grid.as_dict(), "zipfrmt_version": zipfrmt.__version__, "rows": rows}
        Path(json_path).write_text(json.dumps(_jsonable(payload), indent=2, ensure_ascii=False) + "\n")
    return ds, rows
