"""P2 — the noise floor: the Marchenko–Pastur edge of the quantization error (asymptotic) and Weyl's
perturbation bounds (rigorous)."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
from jaxtyping import Array, Float

from zipfrmt import quant, rmt
from zipfrmt.bounds.measure import RIGOROUS_RTOL, Measured, f64, rel_error
from zipfrmt.checks import check_float_array, check_int, describe

__all__ = ["NoiseFloorCheck", "WeylCheck", "check_measured_shape", "noise_floor", "separable_profile_edge",
           "weyl_bounds"]

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
    a = f64(check_float_array(variances, "variances", ndim=1))
    m = check_int(m, "m", lo=1)
    if (a < 0).any():
        raise ValueError(f"variances: expected non-negative variances, got min {a.min():g}")
    a = a[a > 0]
    if a.size == 0:
        return 0.0
    top = float(a.max())
    a = a / top  # λ₊(cα) = c·λ₊(α): solved for α/max α (in (0, 1]), so no power of the variances over/underflows

    def slope(t: float) -> float:  # derivative in u = t (max α = 1), t ∈ (−1, 0)
        u = t
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
    u = 0.5 * (lo + hi)
    lam = -m / u + float(np.sum(a / (1.0 + a * u)))
    return math.sqrt(max(lam, 0.0)) * math.sqrt(top)


def _profile_edge(result: quant.QuantResult, V: int, d: int, noise_var: float) -> float | None:
    """The edge for the per-row / per-column variance profile of a quantizer, its mean scaled to noise_var."""
    gran = result.spec.granularity
    if gran == "group" or noise_var <= 0:
        return None
    if gran == "tensor":
        return math.sqrt(noise_var) * (math.sqrt(V) + math.sqrt(d))
    var = np.square(f64(result.scale)).reshape(-1)  # one Δ² per row (V) or per column (d)
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
        if tuple(result.dequantized.shape) != (V, d):
            raise ValueError(f"result: expected the quantization of a {V}×{d} matrix, got a result of shape "
                             f"{tuple(result.dequantized.shape)}")
        prof = _profile_edge(result, V, d, noise_var)
    if measured is None:
        return NoiseFloorCheck(edges.sigma_hi, edges.sigma_lo, thr, prof)
    check_measured_shape(measured, V, d)
    nE = measured.norm_E
    rel_p = None if prof is None else rel_error(prof, nE)
    return NoiseFloorCheck(edges.sigma_hi, edges.sigma_lo, thr, prof, nE, rel_error(edges.sigma_hi, nE), rel_p)


def check_measured_shape(m: Measured, V: int, d: int) -> None:
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
      tightness: ``max_shift / ‖E‖₂``, in [0, 1] up to ``tolerance/‖E‖₂`` (1: Weyl is attained at some k).
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
    cfg = result.spec
    step2 = np.square(f64(result.scale))
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

    The third needs a uniform quantizer (an ``int`` spec) with b ≥ 2 whose clipping range covers its group
    (``clip="absmax"``, symmetric or asymmetric — the asymmetric zero-point shift leaves at most Δ/2 outside the
    grid); given ``result`` (the :class:`zipfrmt.quant.QuantResult` of Q) it is evaluated from the steps alone,
    an a-priori bound on the noise floor. For a real format (fp8, nf4, mxfp4, …) the result's ``scale`` is not
    a grid spacing and the cells are not uniform, so no a-priori bound is formed (``apriori`` is None). No
    randomness or limit is involved: a violation beyond ``tolerance`` is a bug.
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
        if tuple(result.dequantized.shape) != m.shape:
            raise ValueError(f"result: expected the quantization of the measured {m.shape[0]}×{m.shape[1]} matrix, "
                             f"got a result of shape {tuple(result.dequantized.shape)}")
        cfg = result.spec
        if cfg.format == "int" and cfg.bits >= 2 and cfg.clip == "absmax":  # Δ is a grid spacing only for int
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


