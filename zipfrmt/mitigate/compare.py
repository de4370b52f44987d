"""Plain round-to-nearest vs SpecQuant vs S2D on one matrix, measured beside the random-matrix predictions.

For a ``V×d`` matrix ``W`` and each bit width ``b``:

* ``rtn`` — :func:`zipfrmt.quant.quantize` per channel (``row`` = per token for ``axis=1``, ``column`` for
  ``axis=0``): ``W_eff = Q_b(W)``.
* ``specquant`` — :func:`zipfrmt.mitigate.specquant.specquant` at mean budget ``budget`` (smoothing off: a matrix
  on its own has no activations): ``W_eff = W′ + Q_b(R)``. Only the residual is quantized, so the noise is
  ``E = Q_b(R) − R`` and the prediction uses its variance.
* ``s2d`` — S2D with no task loss to hold ``W`` in place: the exact gradient flow of ``L_S2D`` on the top
  ``s2d_k`` singular values (:func:`zipfrmt.mitigate.s2d.decay_spectrum`, singular vectors unchanged) run until
  ``σ_1`` falls to ``s2d_sigma_ratio·σ_1`` (the paper reports a layer's σ_max 7.9 → 3.9, a ratio of ~0.5), then
  ``rtn`` on the result. Its ``rel_error`` against the original ``W`` includes the S2D change itself.

Measured per (mitigation, bits): stable and effective rank, rank-decay and ESD exponents, σ_max, the truncation index
(quantized singular values above the predicted noise floor ``s(√V + √d)``), relative errors, the noise variance
and regime, and the storage overhead; predicted (from the spectrum of the matrix that is quantized): ``k*``,
stable rank, σ̃_1 and the rank exponent — the additive model ``Q = W + E`` in the ``widrow`` regime, the
Bussgang model ``Q = gW + D`` (``rtn``/``s2d``) or the additive model with the measured variance
(``specquant``, whose error is confined to the residual) in the ``dead-zone`` regime.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

import zipfrmt
from zipfrmt import quant, rmt, spectra
from zipfrmt.checks import check_choice, check_float32_range, check_int, check_matrix, check_number, describe, max_abs
from zipfrmt.mitigate import specquant as sq_mod

__all__ = ["METHODS", "compare_on_matrix", "s2d_decayed"]

METHODS = ("rtn", "specquant", "s2d")

_MEASURES = (
    "stable_rank", "effective_rank", "rank_exponent", "esd_alpha", "sigma_max", "truncation_index", "rel_error",
    "quant_rel_error", "noise_var_model", "noise_var_measured", "zero_fraction", "overhead_bits",
    "predicted_stable_rank", "predicted_truncation_index", "predicted_sigma_max", "predicted_rank_exponent",
    "predicted_noise_floor",
)


def s2d_decayed(W: Any, k: int = 3, sigma_ratio: float = 0.5, *, n: float = 2.0) -> np.ndarray:
    """``W`` after the gradient flow of ``L_S2D`` alone (top ``k`` values) until ``σ_1 → sigma_ratio·σ_1``.

    ``σ̇_i = −λσ_i^n`` for ``i ≤ k``, singular vectors fixed (:func:`zipfrmt.mitigate.s2d.decay_spectrum`); the
    time ``λt`` is solved from ``σ_1(t) = sigma_ratio·σ_1``. Returns a float32 NumPy matrix.
    """
    W = np.asarray(check_matrix(W), np.float64)
    k = check_int(k, "k", lo=0, hi=min(W.shape))
    ratio = check_number(sigma_ratio, "sigma_ratio", lo=0.0, hi=1.0, lo_open=True)
    n = check_number(n, "n", lo=0.0, lo_open=True)
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    if k == 0 or s[0] == 0:
        return W.astype(np.float32)
    s1 = s[0]
    lam_t = -math.log(ratio) if n == 1 else ((ratio * s1) ** (1 - n) - s1 ** (1 - n)) / (n - 1)
    # the flow of decay_spectrum, each value kept on its own singular vectors (decay_spectrum re-sorts)
    moved = s.copy()
    if n == 1:
        moved[:k] = s[:k] * math.exp(-lam_t)
    else:
        moved[:k] = np.maximum(s[:k] ** (1 - n) + (n - 1) * lam_t, 0.0) ** (1 / (1 - n))
    return ((U * moved) @ Vt).astype(np.float32)


def _check_sequence(value: Any, name: str, example: str) -> list[Any]:
    """A list or tuple (or 1-D array) of items; a bare string or number is a TypeError naming ``name``."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return list(value)
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name}: expected a sequence such as {example}, got {describe(value)}")
    return list(value)


def _check_distinct(items: list[Any], name: str) -> None:
    dup = sorted({x for x in items if items.count(x) > 1}, key=str)
    if dup:
        raise ValueError(f"{name}: expected distinct entries, got {dup} more than once in {items}")


def _check_rank_window(rank_window: Any, r: int) -> tuple[int, int | None] | None:
    if rank_window is None:
        return None
    if not isinstance(rank_window, (tuple, list)) or len(rank_window) != 2:
        raise TypeError(f"rank_window: expected a pair (k_lo, k_hi) or None, got {describe(rank_window)}")
    k_lo = check_int(rank_window[0], "rank_window[0]", lo=1, hi=r)
    k_hi = None if rank_window[1] is None else check_int(rank_window[1], "rank_window[1]", lo=k_lo, hi=r)
    return k_lo, k_hi


def compare_on_matrix(
    W: Any,
    bits: Sequence[int] = (4, 3, 2),
    *,
    methods: Sequence[str] = METHODS,
    axis: int = 1,
    budget: float = 0.02,
    importance: str = "entropy",
    s2d_k: int = 3,
    s2d_sigma_ratio: float = 0.5,
    s2d_n: float = 2.0,
    rank_window: tuple[int, int | None] | None = None,
    name: str = "W",
) -> xr.Dataset:
    """RTN vs SpecQuant vs S2D+RTN on ``W`` at each bit width, measured and predicted (see the module docstring).

    Args:
      W: a ``V×d`` matrix (rows = tokens for an embedding).
      bits: bit widths (each 2…16).
      methods: a subset of ``("rtn", "specquant", "s2d")``.
      axis: SpecQuant's channel layout — 1 (default): channels are rows (per-token scales, the embedding
        layout), 0: channels are columns; RTN and S2D use the same per-channel scales (``row``/``column``).
      budget: SpecQuant's mean fraction of rFFT coefficients kept; it costs
        :func:`zipfrmt.mitigate.specquant.budget_bits` ``(budget, n)`` extra bits per weight for channels of
        length ``n`` (``d`` for ``axis=1``): 0.02 → 0.26 bits at n = 256, 0.165 at n = 64. The realised cost
        is the ``overhead_bits`` measure.
      importance: SpecQuant's budget importance score.
      s2d_k, s2d_sigma_ratio, s2d_n: S2D's components, how far σ_1 is driven down, and its exponent ``n``.
      rank_window: the rank-decay fit window ``(k_lo, k_hi)`` for measurement and prediction (``1 ≤ k_lo ≤ k_hi ≤
        min(V, d)``, ``k_hi`` may be None; default every nonzero σ).
      name: recorded in the attributes.

    Every argument is checked (and NumPy integers converted to ``int``) before any work; an error names it.

    Returns:
      An ``xarray.Dataset`` with dims ``(mitigation, bits)`` (not ``method``, a keyword of ``Dataset.sel``)
      holding the measures listed in the module docstring, ``regime`` and ``model`` (strings), and the
      full-precision measures ``fp_*`` of ``W`` (and ``s2d_fp_*`` of the S2D-decayed matrix) as scalars;
      attributes: the config (JSON) and the package version.
    """
    W = check_matrix(W)
    check_float32_range(max_abs(W), "W", "the comparison runs in float32")
    bits = [check_int(b, "bits", lo=2, hi=16) for b in _check_sequence(bits, "bits", "(4, 3, 2)")]
    if not bits:
        raise ValueError("bits: expected at least one bit width, got none")
    _check_distinct(bits, "bits")
    methods = [check_choice(m, "methods", METHODS) for m in _check_sequence(methods, "methods", "('rtn', 's2d')")]
    if not methods:
        raise ValueError("methods: expected at least one method, got none")
    _check_distinct(methods, "methods")
    axis = check_int(axis, "axis", lo=0, hi=1)
    budget = check_number(budget, "budget", lo=0.0, hi=1.0)
    importance = check_choice(importance, "importance", sq_mod.IMPORTANCES)
    # S2D's settings are checked even when "s2d" is not run (they are recorded); the bound k ≤ min(V, d) only
    # when it is.
    s2d_k = check_int(s2d_k, "s2d_k", lo=0, hi=min(W.shape) if "s2d" in methods else None)
    s2d_sigma_ratio = check_number(s2d_sigma_ratio, "s2d_sigma_ratio", lo=0.0, hi=1.0, lo_open=True)
    s2d_n = check_number(s2d_n, "s2d_n", lo=0.0, lo_open=True)
    rank_window = _check_rank_window(rank_window, min(W.shape))
    if not isinstance(name, str):
        raise TypeError(f"name: expected a string, got {describe(name)}")
    gran = "row" if axis == 1 else "column"
    Wn = np.asarray(W, np.float32)
    shape = (int(Wn.shape[0]), int(Wn.shape[1]))
    norm_w = float(np.linalg.norm(Wn.astype(np.float64)))
    s_fp = np.asarray(spectra.singular_values(Wn), np.float64)
    fp = spectra.summarize_spectrum(s_fp, shape, rank_window=rank_window)
    sources = {"rtn": (Wn, s_fp), "specquant": (Wn, s_fp)}
    fp_s2d = None
    if "s2d" in methods:
        Ws = s2d_decayed(Wn, s2d_k, s2d_sigma_ratio, n=s2d_n)
        s_s = np.asarray(spectra.singular_values(Ws), np.float64)
        sources["s2d"] = (Ws, s_s)
        fp_s2d = spectra.summarize_spectrum(s_s, shape, rank_window=rank_window)

    data = {m: np.full((len(methods), len(bits)), np.nan) for m in _MEASURES}
    regime = np.full((len(methods), len(bits)), "", dtype=object)
    model = np.full((len(methods), len(bits)), "", dtype=object)
    for i, method in enumerate(methods):
        src, s_src = sources[method]
        for j, b in enumerate(bits):
            if method == "specquant":
                r = sq_mod.specquant(src, b, budget, axis=axis, importance=importance)
                W_eff, q, overhead = np.asarray(r.weight), r.residual, r.overhead_bits
            else:
                q = quant.quantize(src, b, granularity=gran)
                W_eff, overhead = np.asarray(q.dequantized), 0.0
            s_q = np.asarray(spectra.singular_values(W_eff), np.float64)
            summ = spectra.summarize_spectrum(s_q, shape, rank_window=rank_window)
            # SpecQuant's error is confined to its residual, whose Bussgang gain says nothing about W: outside
            # the widrow regime it is predicted with the measured variance instead of the Bussgang model.
            which = "auto" if method != "specquant" or q.regime == "widrow" else "additive-measured"
            pred = rmt.predict_from_result(s_src, *shape, q, model=which, rank_window=rank_window)
            noise_var, mdl = pred.noise_var, pred.model
            vals = {
                "stable_rank": summ.stable_rank,
                "effective_rank": summ.effective_rank,
                "rank_exponent": summ.rank_exponent,
                "esd_alpha": summ.esd_alpha,
                "sigma_max": summ.sigma_max,
                "truncation_index": float(rmt.count_above_floor(s_q, pred)),
                "rel_error": float(np.linalg.norm((W_eff - Wn).astype(np.float64))) / norm_w if norm_w else 0.0,
                "quant_rel_error": float(np.linalg.norm((W_eff - src).astype(np.float64)))
                / max(float(np.linalg.norm(src.astype(np.float64))), 1e-300),
                "noise_var_model": noise_var,
                "noise_var_measured": q.noise_var_measured,
                "zero_fraction": float(np.mean(W_eff == 0)),
                "overhead_bits": overhead,
                "predicted_stable_rank": float(pred.stable_rank),
                "predicted_truncation_index": float(pred.truncation_index),
                "predicted_sigma_max": float(pred.sigma1),
                "predicted_rank_exponent": float(pred.decay.a),
                "predicted_noise_floor": float(pred.noise_floor),
            }
            for key, v in vals.items():
                data[key][i, j] = v
            regime[i, j], model[i, j] = q.regime, mdl

    dims = ("mitigation", "bits")
    ds = xr.Dataset(
        {key: (dims, arr) for key, arr in data.items()}
        | {"regime": (dims, regime.astype(str)), "model": (dims, model.astype(str))},
        coords={"mitigation": list(methods), "bits": bits},
    )
    for prefix, summ in (("fp_", fp), ("s2d_fp_", fp_s2d)):
        if summ is None:
            continue
        ds[prefix + "stable_rank"] = summ.stable_rank
        ds[prefix + "effective_rank"] = summ.effective_rank
        ds[prefix + "rank_exponent"] = summ.rank_exponent
        ds[prefix + "sigma_max"] = summ.sigma_max
    config = {"name": name, "shape": list(shape), "bits": bits, "methods": methods, "axis": axis,
              "granularity": gran, "budget": budget, "importance": importance, "s2d_k": s2d_k,
              "s2d_sigma_ratio": s2d_sigma_ratio, "s2d_n": s2d_n,
              "rank_window": list(rank_window) if rank_window else None}
    ds.attrs.update(config=json.dumps(config), zipfrmt_version=zipfrmt.__version__)
    return ds
