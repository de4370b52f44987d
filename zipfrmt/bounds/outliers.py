"""P3–P5 — what survives the noise floor: the truncation index, the stable rank, the flattening of the
rank-decay exponent (asymptotic predictions, a rigorous stable-rank bracket)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np

from zipfrmt import rmt, spectra
from zipfrmt.bounds.measure import RIGOROUS_RTOL, Measured, rel_error
from zipfrmt.checks import check_number, describe

__all__ = ["FlatteningCheck", "StableRankCheck", "TruncationCheck", "count_with_shuffled_residual",
           "spectral_flattening", "stable_rank_increase", "truncation_index"]

# ---------------------------------------------------------------------------------------------------------
# P3 — the truncation index
# ---------------------------------------------------------------------------------------------------------


def _check_prediction(pred: Any, name: str, model: str | None = None) -> rmt.QuantizedPrediction:
    if not isinstance(pred, rmt.QuantizedPrediction):
        raise TypeError(f"{name}: expected a rmt.QuantizedPrediction, got {describe(pred)}")
    if model is not None and pred.model != model:
        raise ValueError(f"{name}: expected a prediction of the {model!r} model, got {pred.model!r}")
    return pred


def _check_measured(measured: Any, p: rmt.QuantizedPrediction) -> Measured:
    """``measured`` must be a :class:`Measured` of a matrix of the prediction's size (``min(V, d)`` values)."""
    if not isinstance(measured, Measured):
        raise TypeError(f"measured: expected a Measured (from bounds.measure), got {describe(measured)}")
    r = p.sigma.shape[0]
    if measured.sigma_Q.size != r:
        raise ValueError(f"measured: expected the measurements of a matrix with min(V, d) = {r}, as the prediction "
                         f"was made for, got {measured.shape[0]}×{measured.shape[1]}")
    return measured


@dataclasses.dataclass(frozen=True)
class TruncationCheck:
    """P3: how many signal singular values survive the noise floor.

    Attributes:
      predicted: ``k* = #{k : σ_k > s(Vd)^(1/4)}`` (additive model; on the Dozier–Silverstein bulk, the predicted
        values above ``s(√V + √d)``: the prediction's ``truncation_index``).
      predicted_bussgang: the same for the Bussgang model (``g σ_k`` against the residual's threshold, or its DS
        count above the residual's edge), or None.
      measured: ``#{k : σ_k(Q) > s(√V + √d)}`` (None without a measurement).
      edge: the edge ``s(√V + √d)`` the measured values are counted against.
      threshold: ``s(Vd)^(1/4)``.
      measured_bussgang: the same count against the Bussgang model's own edge ``s_D(√V + √d)`` (the residual's),
        which its ``k*`` predicts (None without a Bussgang prediction or a measurement).
      error: ``predicted − measured``; rel_error: ``error / max(measured, 1)``; ``rel_error_bussgang``:
        ``(predicted_bussgang − measured_bussgang) / max(measured_bussgang, 1)``.
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
    measured_bussgang: int | None = None


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
    number of quantized singular values above the edge ``s(√V + √d)`` (the image of θ_c under the spiked map). A
    prediction on the Dozier–Silverstein bulk counts its own predicted values above that edge instead, which sees
    the values a dense signal near θ_c keeps inside or pushes out of the bulk.
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
    _check_measured(measured, p)
    meas = int(np.sum(measured.sigma_Q > p.noise_floor))
    err = p.truncation_index - meas
    meas_b = None if pb is None else rmt.count_above_floor(measured.sigma_Q, pb)  # each model against its own edge
    rel_b = None if kb is None else (kb - meas_b) / max(meas_b, 1)
    return TruncationCheck(p.truncation_index, p.noise_floor, p.threshold, kb, meas, err, err / max(meas, 1), rel_b,
                           meas_b)


def count_with_shuffled_residual(W: Any, Q: Any, gain: float, edge: float, seed: int = 0) -> int:
    """A control for P3: ``#{k : σ_k(g·W + P(D)) > edge}``, where ``D = Q − g·W`` is the Bussgang residual and
    ``P`` a uniformly random permutation of its ``V·d`` entries.

    ``g·W + P(D)`` has the signal and the residual's entries of the quantized matrix, with the residual's positions
    made exchangeable: no variance profile, no alignment with W — the matrix the Dozier–Silverstein law with
    i.i.d. noise describes. Where the predicted k* matches this count and misses the count on ``Q`` itself, the
    miss is the residual's structure (which entries carry how much error), not the law: the case the spectral
    twins (:func:`zipfrmt.bounds.spectral_twins`) make rigorous. One SVD of a V×d matrix (float64 Gram path);
    ``seed`` fixes the permutation.
    """
    W, Q = np.asarray(W, np.float64), np.asarray(Q, np.float64)
    if W.ndim != 2:
        raise ValueError(f"W: expected a V×d matrix, got shape {W.shape}")
    if Q.shape != W.shape:
        raise ValueError(f"Q: expected the shape of W, {W.shape}, got {Q.shape}")
    gain = check_number(gain, "gain")
    edge = check_number(edge, "edge", lo=0.0)
    D = Q - gain * W
    shuffled = np.random.default_rng(seed).permutation(D.ravel()).reshape(D.shape)
    s = np.asarray(spectra.singular_values(gain * W + shuffled, method="gram64"), np.float64)
    return int(np.sum(s > edge))


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
    _check_measured(measured, p)
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
        kw["rel_error_bussgang"] = rel_error(pb.stable_rank, rs_Q)
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
        rel_error=rel_error(p.stable_rank, rs_Q),
        **kw,
    )


# ---------------------------------------------------------------------------------------------------------
# P5 — flattening of the rank-decay exponent
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FlatteningCheck:
    """P5: the rank-decay exponent over a fixed window, before and after quantization.

    Attributes:
      window: ``(k_lo, k_hi)``, the one window of every fit: the prediction's, cut to the nonzero ranks of W.
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
    # One window for every fit: the prediction's, cut to the ranks where W's spectrum is nonzero (a fit of W over
    # zeros is undefined, and fits over different windows are not comparable).
    k_lo, k_hi = p.decay.k_lo, min(p.decay.k_hi, p.decay_full.k_hi)
    if k_hi < k_lo + 1:
        raise ValueError(
            f"prediction: expected a full-precision spectrum with at least two nonzero singular values in the rank "
            f"window from {k_lo}, got {p.decay_full.k_hi} nonzero ({p.decay_full.reason or 'rank-deficient W'}): "
            "no exponent to flatten"
        )
    window = (k_lo, k_hi)
    if measured is not None:
        _check_measured(measured, p)
    a_pred = spectra.rank_decay_exponent(p.sigma, k_lo, k_hi).a
    a_full = p.decay_full.a  # fitted over (k_lo, its own k_hi) = this window: k_hi ≤ the prediction's
    kw: dict[str, Any] = {}
    if pb is not None:
        kw["predicted_bussgang"] = spectra.rank_decay_exponent(pb.sigma, k_lo, k_hi).a
    if measured is None:
        return FlatteningCheck(window, a_full, a_pred, bool(a_pred < a_full), **kw)
    a_W = spectra.rank_decay_exponent(measured.sigma_W, k_lo, k_hi).a
    a_Q = spectra.rank_decay_exponent(measured.sigma_Q, k_lo, k_hi).a
    if pb is not None:
        kw["rel_error_bussgang"] = rel_error(kw["predicted_bussgang"], a_Q)
    return FlatteningCheck(
        window,
        a_W,
        a_pred,
        bool(a_pred < a_W),
        measured=a_Q,
        flattened_measured=bool(a_Q < a_W),
        rel_error=rel_error(a_pred, a_Q),
        **kw,
    )


