"""What quantization does to one matrix: the measurement behind ``zipfrmt analyze``.

For a ``V×d`` matrix (rows = tokens) and each :class:`~zipfrmt.quant.QuantSpec` — an integer width with its
scale groups and rounding, or a real format (fp8, nf4, mxfp4, nvfp4) — quantize, measure the spectrum of
``Q(W)`` beside that of ``W``, and put the random-matrix prediction from the full-precision spectrum alone
beside the measurement (:func:`zipfrmt.rmt.predict_from_result`, which picks the model by regime):

* ``widrow`` regime → the additive model ``Q = W + E``, ``E`` i.i.d. with the format's model variance;
* ``dead-zone`` regime → the Bussgang model ``Q = g·W + D``, with the measured gain ``g = ⟨W,Q⟩/⟨W,W⟩`` and
  residual variance ``s_D² = ‖Q − gW‖_F²/(V d)``.

Beside it, :func:`zipfrmt.rmt.predict_from_sketch` adds three weighted sums of ``Q``'s entries along ``W``'s top
singular pair and its largest row and column norms (one pass, :mod:`zipfrmt.sketch`), which predict ``σ_1(Q)``
— hence the stable rank — in the dead zone too, and counts ``k*`` on the Dozier–Silverstein spectrum there.

The measured truncation index counts the quantized singular values above the predicted noise floor
``s(√V + √d)`` (:func:`zipfrmt.rmt.count_above_floor`), the observable counterpart of
``k* = #{k : gσ_k > s(Vd)^¼}``.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from zipfrmt import quant, rmt, sketch, spectra, variance_profile
from zipfrmt.checks import check_choice, check_matrix
from zipfrmt.quant import QuantSpec, as_spec, check_spec_shape, parse_granularity
from zipfrmt.tables import finite_or_none

__all__ = ["analyze_matrix", "as_float32_device", "check_specs", "compare_stored", "spec_grid", "spectral_fields"]


def spectral_fields(summary: spectra.SpectralSummary) -> dict[str, Any]:
    """The spectral measures of one matrix as the plain-Python fields of the analysis JSON."""
    d = summary.as_dict()
    return {
        "stable_rank": d["stable_rank"],
        "effective_rank": d["effective_rank"],
        "participation_ratio": d["participation_ratio"],
        "rank_exponent": finite_or_none(d["rank_exponent"]),
        "rank_window": d["rank_window"],
        "esd_alpha": finite_or_none(d["esd_alpha"]),
        "esd_xmin": finite_or_none(d["esd_xmin"]),
        "esd_ks": finite_or_none(d["esd_ks"]),
        "sigma_max": d["sigma_max"],
        "sigma_min": d["sigma_min"],
        "reasons": d["reasons"],
    }


def _predicted(pred: rmt.QuantizedPrediction) -> dict[str, Any]:
    return {
        "stable_rank": float(pred.stable_rank),
        "truncation_index": int(pred.truncation_index),
        "sigma_max": float(pred.sigma1),
        "effective_rank": float(pred.effective_rank),
        "rank_exponent": finite_or_none(pred.decay.a),
        "noise_floor": float(pred.noise_floor),
        "threshold": float(pred.threshold),
        "noise_var": float(pred.noise_var),
        "gain": float(pred.gain),
        "model": pred.model,
        "bulk": pred.bulk,
    }


def prediction_fields(
    pred: rmt.QuantizedPrediction, s_q: Float[np.ndarray, " r"], sketched: rmt.QuantizedPrediction | None = None
) -> dict[str, Any]:
    """A prediction (:func:`zipfrmt.rmt.predict_from_result`) and the measured truncation index against it, as
    the ``"predicted"`` and ``"truncation_index"`` fields of the analysis JSON; with ``sketched``
    (:func:`zipfrmt.rmt.predict_from_sketch`), its fields under ``"predicted_sketch"``."""
    out = {"predicted": _predicted(pred), "truncation_index": rmt.count_above_floor(s_q, pred)}
    if sketched is not None:
        out["predicted_sketch"] = _predicted(sketched)
    return out


def _quantized_row(head: dict[str, Any], s_q: np.ndarray, shape: tuple[int, int], stats: dict[str, Any],
                   pred: rmt.QuantizedPrediction, sketched: rmt.QuantizedPrediction) -> dict[str, Any]:
    """One row of the ``"quantized"`` list: ``head`` (spec, format, …), the spectral measures of ``Q`` from its
    singular values ``s_q``, its noise statistics and the two predictions beside them."""
    fields = spectral_fields(spectra.summarize_spectrum(s_q, shape))
    return {
        **head,
        **{k: fields[k] for k in ("stable_rank", "effective_rank", "participation_ratio", "rank_exponent",
                                  "rank_window", "esd_alpha", "sigma_max", "sigma_min")},
        **{k: v for k, v in stats.items() if k != "error_mean"},
        **prediction_fields(pred, s_q, sketched),
        "reasons": fields["reasons"],
    }


def _predict_sketched(s_fp: np.ndarray, shape: tuple[int, int], result: Any, Q: Any,
                      pair: tuple[np.ndarray, np.ndarray] | None, bulk: str = "auto",
                      pred: rmt.QuantizedPrediction | None = None) -> rmt.QuantizedPrediction:
    """:func:`zipfrmt.rmt.predict_from_sketch` for ``Q``, with W's top singular pair (None: W is zero); ``pred``,
    :func:`zipfrmt.rmt.predict_from_result`'s prediction on the ``"auto"`` bulk or None, is reused for
    ``bulk="auto"``."""
    sk = sketch.quant_sketch(Q, *pair) if pair is not None else sketch.QuantSketch(0, 0, 0, 0, 0, 0, 0, *shape)
    return rmt.predict_from_sketch(s_fp, *shape, result, sk, bulk=bulk, base=pred if bulk == "auto" else None)


def as_float32_device(W: Any) -> jax.Array:
    """``W`` as one float32 JAX array. NumPy data (a memmap too) goes through ``jax.device_put``, one copy:
    ``jnp.asarray`` makes a second, transient one, so a 262,144×640 tensor read from a file would briefly take
    three times its size (the mapped pages and two copies)."""
    if isinstance(W, jax.Array):
        return W if W.dtype == jnp.float32 else W.astype(jnp.float32)
    return jax.device_put(np.asarray(W, np.float32))


def check_specs(specs: Iterable[QuantSpec | str], shape: tuple[int, ...], name: str = "W") -> list[QuantSpec]:
    """Every spec as a :class:`~zipfrmt.quant.QuantSpec`, checked against the matrix shape before any work."""
    out = [as_spec(s, "specs") for s in specs]
    if not out:
        raise ValueError("specs: expected at least one quantization spec, got none")
    for spec in out:
        check_spec_shape(spec, shape, name)
    return out


def analyze_matrix(
    W: Float[Array, "V d"] | np.ndarray,
    specs: Iterable[QuantSpec | str],
    *,
    name: str = "W",
    seed: int = 0,
    keep_spectra: bool = False,
    progress: Callable[[QuantSpec], None] | None = None,
    sketch_bulk: str = "auto",
    bulk: str = "auto",
    profile: bool = False,
) -> dict[str, Any]:
    """Spectral analysis of ``W`` at full precision and at each quantization spec.

    ``specs``: :class:`~zipfrmt.quant.QuantSpec` values or their text (``"int4-row"``, ``"nf4"``,
    ``"mxfp4"`` …), all checked against ``W``'s shape before anything is computed. Returns the
    ``zipfrmt analyze --json`` structure::

        {"tensor", "shape", "fp": {stable_rank, effective_rank, participation_ratio, rank_exponent, rank_window,
                                   esd_alpha, esd_xmin, esd_ks, sigma_max, sigma_min, ...},
         "quantized": [{spec, format, bits, granularity, rounding, stable_rank, effective_rank, rank_exponent,
                        esd_alpha, sigma_max, sigma_min, rel_error, zero_fraction, noise_var_model,
                        noise_var_measured, bussgang_gain, residual_var, regime, truncation_index,
                        predicted: {stable_rank, truncation_index, sigma_max, model, ...},
                        predicted_sketch: {the same fields}}, ...]}

    ``"predicted"`` comes from the full-precision spectrum and the noise statistics alone
    (:func:`zipfrmt.rmt.predict_from_result`); ``"predicted_sketch"`` adds a one-pass sketch of ``Q`` along W's
    top singular pair (:func:`zipfrmt.rmt.predict_from_sketch`: ``O(Vd)`` work, no decomposition of ``Q``), the
    prediction that also holds in the dead zone. ``sketch_bulk`` is its bulk (its ``σ_1`` and stable rank do not
    depend on it; its ``k*`` does): ``"auto"`` (the default: the Dozier–Silverstein law in the dead-zone regime,
    where its count follows a truncated tail, for a dense W, whose σ_1 is no isolated spike, and where the tail is
    cut near θ_c; Marchenko–Pastur
    elsewhere, where MP's count is exact — :func:`zipfrmt.rmt.choose_bulk`, which ``"predicted"`` uses too),
    ``"mp"`` (the fastest) or ``"dozier-silverstein"`` for every spec
    (a solve of the DS law on 2 CPU cores: about 0.05 s at 4096×256, 0.1 s at 65,536×640, 0.1–0.25 s at
    16,384×1024; 0.4–1.3 s for a dense W far above the noise, at 8 bits).
    ``bulk`` is the bulk law of ``"predicted"`` (:func:`zipfrmt.rmt.predict_from_result`), ``"auto"`` by default;
    ``"mp"`` keeps the spiked map for σ_1 everywhere, which misses a dense W's (a Gaussian weight: stable rank
    6–30% off at 2–3 bits) but skips the DS solves: on a 65,536×640 Gaussian at the 20 default specs ``"auto"``
    takes 1.45× the time of ``"mp"``; on a matrix with a spiked top and no dead-zone spec the two are the same.

    ``profile``: at every dead-zone spec, add ``"predicted_profile"`` (the same fields), the prediction from W's
    spectrum and the row and column variances of the Bussgang residual ``Q − gW``
    (:func:`zipfrmt.variance_profile.predict_with_residual_profile`): the dead zone's count above the floor where
    the residual's error sits in the rows and columns of large entries (a 2-bit per-tensor power law: k* 33 for
    34 measured, i.i.d. law 2). A solve takes 0.3–1.2 s at 4096×256 on 2 cores (the first of a shape 1–3 s more,
    compiling), so it is asked for, not the default.

    ``"spec"`` is the spec's canonical text. With ``keep_spectra``, the singular values themselves are added
    under ``"spectra"``: ``{"fp": σ(W), "quantized": [σ(Q) per spec], "predicted": [predicted σ per spec]}``
    (NumPy arrays, for plotting).
    Stochastic rounding draws its key from ``seed`` (one fold per spec), so an analysis is reproducible.
    """
    W = check_matrix(W, name)
    shape = (int(W.shape[0]), int(W.shape[1]))
    specs = check_specs(specs, shape, name)
    sketch_bulk = check_choice(sketch_bulk, "sketch_bulk", rmt.BULKS)
    bulk = check_choice(bulk, "bulk", rmt.BULKS)
    if not isinstance(profile, bool):
        raise TypeError(f"profile: expected True or False, got {profile!r}")
    W = as_float32_device(W)  # one copy on the device, shared by every spec (a memmap is read once)
    s_fp = np.asarray(spectra.singular_values(W), np.float64)
    fp = spectra.summarize_spectrum(s_fp, shape)
    pair = sketch.top_singular_pair(W) if s_fp[0] > 0 else None
    rows, spectra_q, spectra_pred = [], [], []
    base_key = jax.random.key(seed)
    for i, spec in enumerate(specs):
        if progress is not None:
            progress(spec)
        q = quant.quantize(W, spec, key=jax.random.fold_in(base_key, i))
        s_q = np.asarray(spectra.singular_values(q.dequantized), np.float64)
        pred = rmt.predict_from_result(s_fp, *shape, q, bulk=bulk)
        spectra_q.append(s_q)
        spectra_pred.append(np.asarray(pred.sigma, np.float64))
        head = {"spec": spec.label, "format": spec.format, "bits": spec.bits,
                "granularity": spec.granularity_label, "rounding": spec.rounding}
        sketched = _predict_sketched(s_fp, shape, q, q.dequantized, pair, sketch_bulk,
                                     pred if bulk == sketch_bulk else None)
        rows.append(_quantized_row(head, s_q, shape, q.stats(), pred, sketched))
        if profile and q.regime == "dead-zone":
            rows[-1]["predicted_profile"] = _predicted(variance_profile.predict_from_quantized(s_fp, W, q))
        del q  # Q(W) is let go before the next spec's is made: W and one Q at a time
    report = {"tensor": name, "shape": list(shape), "fp": spectral_fields(fp), "quantized": rows}
    if keep_spectra:
        report["spectra"] = {"fp": s_fp, "quantized": spectra_q, "predicted": spectra_pred}
    return report


def compare_stored(
    W_ref: Float[Array, "V d"] | np.ndarray,
    Q: Float[Array, "V d"] | np.ndarray,
    label: str,
    *,
    name: str = "W",
    bulk: str = "auto",
) -> dict[str, Any]:
    """What a quantization that was *shipped* (``Q``, e.g. a GGUF tensor stored as Q4_K) did to the same tensor
    of a higher-precision export ``W_ref`` — one row in the schema of :func:`analyze_matrix`'s ``"quantized"``.

    There is no spec, hence no model noise variance: the noise is measured, ``E = Q − W_ref``, and the
    prediction from ``W_ref``'s spectrum uses the measured variance — the additive model when the error is
    uncorrelated with ``W_ref`` (``|g − 1| ≤ 0.02``), else the Bussgang model with the measured gain and
    residual (:func:`zipfrmt.rmt.predict_from_result`; ``regime`` is decided by the gain alone). ``bulk``: the
    bulk law of both predictions, as in :func:`analyze_matrix`.
    """
    W_ref = check_matrix(W_ref, "reference")
    Q = check_matrix(Q, name)
    if tuple(W_ref.shape) != tuple(Q.shape):
        raise ValueError(f"reference: expected the shape of {name}, {tuple(Q.shape)}, got {tuple(W_ref.shape)}")
    bulk = check_choice(bulk, "bulk", rmt.BULKS)
    shape = (int(Q.shape[0]), int(Q.shape[1]))
    Wj, Qj = as_float32_device(W_ref), as_float32_device(Q)
    s_fp = np.asarray(spectra.singular_values(Wj), np.float64)
    s_q = np.asarray(spectra.singular_values(Qj), np.float64)
    stats = quant.noise_statistics(Wj, Qj, 1.0)
    stats["noise_var_model"] = stats["noise_var_measured"]  # no model: the measured variance stands in for it
    stats["regime"] = quant.classify_regime(stats["noise_var_model"], stats["noise_var_measured"],
                                            stats["bussgang_gain"])

    result = types.SimpleNamespace(**stats)  # the fields a result has
    pred = rmt.predict_from_result(s_fp, *shape, result, bulk=bulk)
    sketched = _predict_sketched(s_fp, shape, result, Qj, sketch.top_singular_pair(Wj) if s_fp[0] > 0 else None,
                                 bulk, pred)
    head = {"spec": label, "format": "stored", "bits": None, "granularity": None, "rounding": None}
    return _quantized_row(head, s_q, shape, stats, pred, sketched)


def spec_grid(bits: Sequence[int], granularities: Sequence[str], roundings: Sequence[str]) -> list[QuantSpec]:
    """Every ``int`` spec of bit width × granularity (``tensor``, ``row``, ``column``, ``groupN``) × rounding."""
    out = []
    for b in bits:
        for g in granularities:
            gran, size = parse_granularity(g)
            for r in roundings:
                out.append(QuantSpec(bits=int(b), granularity=gran, group_size=size, rounding=r))
    return out
