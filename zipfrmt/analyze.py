"""What b-bit quantization does to one embedding matrix: the measurement behind ``zipfrmt analyze``.

For a ``V×d`` matrix (rows = tokens) and each (bits, granularity, rounding) setting: quantize, measure the
spectrum of ``Q(W)`` beside that of ``W``, and put the random-matrix prediction from the full-precision spectrum
alone beside the measurement:

* ``widrow`` regime → the additive model ``Q = W + E``, ``E`` i.i.d. with the model variance ``mean(Δ²)/12``;
* ``dead-zone`` regime → the Bussgang model ``Q = g·W + D``, with the measured gain ``g = ⟨W,Q⟩/⟨W,W⟩`` and
  residual variance ``s_D² = (‖Q‖_F² − g²‖W‖_F²)/(V d)`` (``D`` is uncorrelated with ``W`` by construction).

The measured truncation index counts the quantized singular values above the predicted noise floor
``s(√V + √d)`` (the bulk edge of the noise alone), the observable counterpart of ``k* = #{k : gσ_k > s(Vd)^¼}``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zipfrmt import quant, rmt, spectra
from zipfrmt._validate import check_choice, check_int, check_matrix

__all__ = ["Setting", "analyze_matrix", "parse_granularity", "spectral_fields"]


@dataclasses.dataclass(frozen=True)
class Setting:
    """One quantization setting of an analysis."""

    bits: int
    granularity: str  # "tensor", "row", "column" or "group"
    group_size: int | None = None
    rounding: str = "nearest"

    @property
    def granularity_label(self) -> str:
        return f"group{self.group_size}" if self.granularity == "group" else self.granularity


def parse_granularity(text: str) -> tuple[str, int | None]:
    """``"row"`` → ``("row", None)``; ``"group32"`` → ``("group", 32)``."""
    text = str(text).strip()
    if text in ("tensor", "row", "column"):
        return text, None
    if text.startswith("group") and text[5:].isdigit() and int(text[5:]) > 0:
        return "group", int(text[5:])
    raise ValueError(f"granularity: expected tensor, row, column or groupN (e.g. group32), got {text!r}")


def _finite(x: float) -> float | None:
    """NaN/Inf → None (JSON null), else a plain float."""
    x = float(x)
    return x if math.isfinite(x) else None


def spectral_fields(summary: spectra.SpectralSummary) -> dict[str, Any]:
    """The spectral measures of one matrix as the plain-Python fields of the analysis JSON."""
    d = summary.as_dict()
    return {
        "stable_rank": d["stable_rank"],
        "effective_rank": d["effective_rank"],
        "participation_ratio": d["participation_ratio"],
        "rank_exponent": _finite(d["rank_exponent"]),
        "rank_window": d["rank_window"],
        "esd_alpha": _finite(d["esd_alpha"]),
        "esd_xmin": _finite(d["esd_xmin"]),
        "esd_ks": _finite(d["esd_ks"]),
        "sigma_max": d["sigma_max"],
        "sigma_min": d["sigma_min"],
        "reasons": d["reasons"],
    }


def _prediction(
    s_fp: np.ndarray, s_q: np.ndarray, shape: tuple[int, int], q: quant.QuantResult
) -> dict[str, Any]:
    """The RMT prediction for one quantized matrix, with the model its regime calls for."""
    V, d = shape
    if q.regime == "widrow" or q.bussgang_gain <= 0:
        model, gain, noise_var = "additive", 1.0, q.noise_var_model
        pred = rmt.predict_quantized(s_fp, V, d, noise_var)
    else:
        model, gain = "bussgang", q.bussgang_gain
        energy_q = float(np.sum(np.square(s_q, dtype=np.float64)))
        energy_w = float(np.sum(np.square(s_fp, dtype=np.float64)))
        noise_var = max(energy_q - gain**2 * energy_w, 0.0) / (V * d)
        pred = rmt.predict_quantized_bussgang(s_fp, V, d, gain, noise_var)
    measured_k = int(np.sum(s_q > pred.noise_floor)) if noise_var > 0 else int(np.sum(s_q > 0))
    return {
        "predicted": {
            "stable_rank": float(pred.stable_rank),
            "truncation_index": int(pred.truncation_index),
            "sigma_max": float(pred.sigma1),
            "effective_rank": float(pred.effective_rank),
            "rank_exponent": _finite(pred.decay.a),
            "noise_floor": float(pred.noise_floor),
            "threshold": float(pred.threshold),
            "noise_var": float(noise_var),
            "gain": float(gain),
            "model": model,
        },
        "truncation_index": measured_k,
    }


def analyze_matrix(
    W: Any,
    settings: Iterable[Setting],
    *,
    name: str = "W",
    seed: int = 0,
    keep_spectra: bool = False,
    progress: Callable[[Setting], None] | None = None,
) -> dict[str, Any]:
    """Spectral analysis of ``W`` at full precision and at each quantization setting.

    Returns the ``zipfrmt analyze --json`` structure::

        {"tensor", "shape", "fp": {stable_rank, effective_rank, participation_ratio, rank_exponent, rank_window,
                                   esd_alpha, esd_xmin, esd_ks, sigma_max, sigma_min, ...},
         "quantized": [{bits, granularity, rounding, stable_rank, effective_rank, rank_exponent, esd_alpha,
                        sigma_max, sigma_min, rel_error, zero_fraction, noise_var_model, noise_var_measured,
                        bussgang_gain, regime, truncation_index, predicted: {stable_rank, truncation_index,
                        sigma_max, model, ...}}, ...]}

    With ``keep_spectra``, the singular values themselves are added under ``"spectra"``: ``{"fp": σ(W),
    "quantized": [σ(Q) per setting]}`` (NumPy arrays, for plotting). Stochastic rounding draws its key from
    ``seed`` (one fold per setting), so an analysis is reproducible.
    """
    W = check_matrix(W, name)
    settings = list(settings)
    if not settings:
        raise ValueError("settings: expected at least one quantization setting, got none")
    for st in settings:
        check_int(st.bits, "bits", lo=1, hi=16)
        check_choice(st.rounding, "rounding", quant.ROUNDINGS)
    shape = (int(W.shape[0]), int(W.shape[1]))
    W = jnp.asarray(W, dtype=jnp.float32)  # one copy on the device, shared by every setting (a memmap is read once)
    s_fp = np.asarray(spectra.singular_values(W), np.float64)
    fp = spectra.summarize_spectrum(s_fp, shape)
    rows, spectra_q = [], []
    base_key = jax.random.key(seed)
    for i, st in enumerate(settings):
        if progress is not None:
            progress(st)
        key = jax.random.fold_in(base_key, i) if st.rounding == "stochastic" else None
        q = quant.quantize(W, st.bits, granularity=st.granularity, group_size=st.group_size,
                           rounding=st.rounding, key=key)
        s_q = np.asarray(spectra.singular_values(q.dequantized), np.float64)
        spectra_q.append(s_q)
        summary = spectra.summarize_spectrum(s_q, shape)
        fields = spectral_fields(summary)
        rows.append({
            "bits": st.bits,
            "granularity": st.granularity_label,
            "rounding": st.rounding,
            **{k: fields[k] for k in ("stable_rank", "effective_rank", "participation_ratio", "rank_exponent",
                                      "rank_window", "esd_alpha", "sigma_max", "sigma_min")},
            "rel_error": q.rel_error,
            "zero_fraction": q.zero_fraction,
            "noise_var_model": q.noise_var_model,
            "noise_var_measured": q.noise_var_measured,
            "bussgang_gain": q.bussgang_gain,
            "regime": q.regime,
            **_prediction(s_fp, s_q, shape, q),
            "reasons": fields["reasons"],
        })
    report = {"tensor": name, "shape": list(shape), "fp": spectral_fields(fp), "quantized": rows}
    if keep_spectra:
        report["spectra"] = {"fp": s_fp, "quantized": spectra_q}
    return report


def settings_grid(bits: Sequence[int], granularities: Sequence[str], roundings: Sequence[str]) -> list[Setting]:
    """Every combination of bit width × granularity (``tensor``, ``row``, ``column``, ``groupN``) × rounding."""
    out = []
    for b in bits:
        for g in granularities:
            gran, size = parse_granularity(g)
            for r in roundings:
                out.append(Setting(int(b), gran, size, r))
    return out
