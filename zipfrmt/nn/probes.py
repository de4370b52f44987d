"""Spectral probes of a model during training: the embedding table and the hidden states.

Embedding ``E`` (V×d, rows = tokens), full-precision master weights and the quantized view ``Q(E)`` the
forward pass reads:

* stable rank ``Σσ²/σ₁²``, effective rank ``exp H(σ/Σσ)``, rank-decay exponent ``a`` (``σ_k ≈ C k^−a`` over
  every nonzero σ) and ESD tail exponent α (Clauset–Shalizi–Newman), all from :mod:`zipfrmt.spectra`;
* truncation index: predicted ``k* = #{k : σ_k > s (V d)^¼}`` from the full-precision spectrum and the
  quantizer's noise statistics (:func:`zipfrmt.rmt.predict_from_result`: the additive model in the widrow
  regime, the Bussgang model in the dead zone), and measured — the singular values of ``Q(E)`` above the
  predicted noise floor (:func:`zipfrmt.rmt.count_above_floor`); both exactly as ``zipfrmt analyze`` does;
* the sketch model's stable rank and ``k*`` of ``Q(E)`` (:func:`zipfrmt.rmt.predict_from_sketch` on a one-pass
  :func:`zipfrmt.sketch.quant_sketch` of the view along E's top singular pair, with ``bulk="auto"``), the
  prediction that also holds in the dead zone; like ``analyze``'s ``predicted_sketch``, it reads ``Q(E)``;
* in the dead zone, the residual-profile law's stable rank and ``k*`` (``emb_stable_rank_q_profile``,
  ``emb_k_star_profile``; :func:`zipfrmt.variance_profile.predict_with_residual_profile` from the row and column
  variances of ``Q(E) − g·E``; NaN in the Widrow regime), like ``analyze --profile``.

The dose of the collapse experiment, from the embedding's quantizer (its forward spec, else its master-weight
spec) with additive model noise variance ``s²`` (Widrow's Δ²/12, Bennett's for a real format):

* ``emb_below_edge_measured``: the fraction of the singular values of the table the forward pass reads
  (``Q(E)``, or ``E`` itself when it is stored on its grid) below the noise edge ``s(√V + √d)``;
* ``emb_below_edge_predicted``: ``1 − k*/min(V, d)`` with ``k* = #{σ_k(E) > s(Vd)^¼}`` (BGN's threshold);
  both 0 when no quantizer touches the embedding.

Hidden states ``h`` (the final-norm outputs on fixed held-out windows, N×d):

* effective rank of the **centred** N×d matrix ``h − mean(h)`` (``hidden_effective_rank``), so that it does
  not count the common direction the anisotropy measures, and of the uncentred one
  (``hidden_effective_rank_uncentred``);
* anisotropy: the mean cosine between distinct hidden vectors,
  ``(|Σ_i u_i|² − N) / (N(N − 1))`` with ``u_i = h_i/|h_i|`` (0 for isotropic vectors, 1 when all align;
  Ethayarajh 2019).

The gradient diagnostic ``grad_pushdown_kept`` (:func:`pushdown_kept`): the fraction of the push-down mass of
the logit cotangent ``p − onehot(y)`` that survives the ``grad/head`` quantizer.

All probes are deterministic functions of the parameters (and, for stochastic rounding of the view, of an
explicit key), so a resumed run records identical values.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from zipfrmt import quant, rmt, sketch, spectra, variance_profile
from zipfrmt.nn.controls import control_spec, site_quantize, site_value
from zipfrmt.quant import QuantSpec

__all__ = ["EMBED_FIELDS", "GRAD_FIELDS", "HIDDEN_FIELDS", "anisotropy", "embedding_probes", "hidden_probes",
           "probe_all", "pushdown_kept", "quantized_view"]

EMBED_FIELDS = (
    "emb_stable_rank", "emb_effective_rank", "emb_rank_exponent", "emb_esd_alpha",
    "emb_stable_rank_q", "emb_effective_rank_q", "emb_rank_exponent_q", "emb_esd_alpha_q",
    "emb_k_star_predicted", "emb_k_star_measured", "emb_stable_rank_q_predicted", "emb_zero_fraction_q",
    "emb_bussgang_gain_q", "emb_widrow", "emb_below_edge_measured", "emb_below_edge_predicted",
    "emb_stable_rank_q_sketch", "emb_k_star_sketch", "emb_stable_rank_q_profile", "emb_k_star_profile",
)
HIDDEN_FIELDS = ("hidden_effective_rank", "hidden_effective_rank_uncentred", "hidden_stable_rank",
                 "hidden_anisotropy")
GRAD_FIELDS = ("grad_pushdown_kept",)


def quantized_view(E: Float[Array, "V d"], spec: QuantSpec, key: PRNGKeyArray | None = None) -> quant.QuantResult:
    """``Q(E)`` with its noise statistics (:func:`zipfrmt.quant.quantize`; stochastic rounding draws from
    ``key``, default ``jax.random.key(0)``)."""
    return quant.quantize(E, spec, key=jax.random.key(0) if key is None else key)


def _fields(summary: spectra.SpectralSummary, suffix: str) -> dict[str, float]:
    return {
        f"emb_stable_rank{suffix}": summary.stable_rank,
        f"emb_effective_rank{suffix}": summary.effective_rank,
        f"emb_rank_exponent{suffix}": summary.rank_exponent,
        f"emb_esd_alpha{suffix}": summary.esd_alpha,
    }


def embedding_probes(
    E: Float[Array, "V d"],
    spec: QuantSpec | None,
    key: PRNGKeyArray | None = None,
    *,
    master_spec: QuantSpec | None = None,
    control: str = "none",
) -> dict[str, float]:
    """Spectral probes of an embedding table and of its quantized view (NaN for the view when ``spec`` is None).

    ``master_spec``: the spec the table is stored on (low-precision master weights), used for the dose when
    the forward pass does not quantize it. ``control``: the view is what the forward pass reads under the
    run's control (:mod:`zipfrmt.nn.controls`: the noisy or rotated table), measured against the quantizer's
    model variance. Returns the :data:`EMBED_FIELDS` as floats (``emb_widrow`` is 1.0 in the widrow regime,
    0.0 in dead-zone).
    """
    E = jnp.asarray(E, jnp.float32)
    shape = (int(E.shape[0]), int(E.shape[1]))
    s_fp = np.asarray(spectra.singular_values(E), np.float64)
    out = {k: math.nan for k in EMBED_FIELDS}
    out.update(_fields(spectra.summarize_spectrum(s_fp, shape), ""))
    out["emb_below_edge_measured"] = out["emb_below_edge_predicted"] = 0.0
    if spec is None:
        if master_spec is not None:  # E is on its grid: the noise level of its grid, Widrow's mean Δ²/12
            grid = master_spec.replace(rounding="nearest")
            out.update(_below_edge(s_fp, s_fp, shape, quant.quantize(E, grid).noise_var_model))
        return out
    q = _view(E, spec, key, control)
    s_q = np.asarray(spectra.singular_values(q.dequantized), np.float64)
    out.update(_fields(spectra.summarize_spectrum(s_q, shape), "_q"))
    pred = rmt.predict_from_result(s_fp, *shape, q)
    out["emb_k_star_predicted"] = float(pred.truncation_index)
    out["emb_k_star_measured"] = float(rmt.count_above_floor(s_q, pred))
    out["emb_stable_rank_q_predicted"] = float(pred.stable_rank)
    u1, v1 = sketch.top_singular_pair(E)
    sk = rmt.predict_from_sketch(s_fp, *shape, q, sketch.quant_sketch(q.dequantized, u1, v1), bulk="auto", base=pred)
    out["emb_stable_rank_q_sketch"] = float(sk.stable_rank)
    out["emb_k_star_sketch"] = float(sk.truncation_index)
    if q.regime == "dead-zone":  # the residual-profile law: the dead zone's count above the floor
        pp = variance_profile.predict_from_quantized(s_fp, E, q)
        out["emb_stable_rank_q_profile"] = float(pp.stable_rank)
        out["emb_k_star_profile"] = float(pp.truncation_index)
    out["emb_zero_fraction_q"] = q.zero_fraction
    out["emb_bussgang_gain_q"] = q.bussgang_gain
    out["emb_widrow"] = 1.0 if q.regime == "widrow" else 0.0
    out.update(_below_edge(s_fp, s_q, shape, q.noise_var_model))
    return out


def _view(E: jax.Array, spec: QuantSpec, key: PRNGKeyArray | None, control: str) -> Any:
    """The table the forward pass reads and its noise statistics (a QuantResult, or its fields under noise and
    rotation controls, whose view is not a quantizer's output)."""
    if control in ("none", "stochastic"):
        return quantized_view(E, control_spec(spec, control), key)
    key = jax.random.key(0) if key is None else key
    view = site_value(E, spec, key, control)
    stats = quant.noise_statistics(E, view, quant.quantize(E, spec, key=key).noise_var_model)
    return SimpleNamespace(dequantized=view, **stats)


def _below_edge(s_fp: np.ndarray, s_used: np.ndarray, shape: tuple[int, int], noise_var: float) -> dict[str, float]:
    """The dose: the fractions of singular values below the quantizer's additive noise edge (module docstring)."""
    V, d = shape
    r = min(V, d)
    s = math.sqrt(max(noise_var, 0.0))
    edge, threshold = s * (math.sqrt(V) + math.sqrt(d)), s * (V * d) ** 0.25
    return {"emb_below_edge_measured": float(np.sum(s_used[:r] < edge)) / r if s > 0 else 0.0,
            "emb_below_edge_predicted": 1.0 - float(np.sum(s_fp[:r] > threshold)) / r if s > 0 else 0.0}


@jax.jit
def anisotropy(H: Float[Array, "N d"]) -> Float[Array, ""]:
    """Mean pairwise cosine similarity of the rows of H over distinct pairs: ``(|Σu_i|² − N)/(N(N−1))``."""
    n = H.shape[0]
    norms = jnp.linalg.norm(H, axis=1, keepdims=True)
    U = H / jnp.where(norms > 0, norms, 1.0)
    total = jnp.sum(U, axis=0)
    return (jnp.dot(total, total) - jnp.sum(U * U)) / (n * (n - 1))


def hidden_probes(H: Float[Array, "N d"]) -> dict[str, float]:
    """Effective rank (centred and not), stable rank and anisotropy of hidden states (rows = token positions).

    ``H``: N×d (or B×L×d) with at least two vectors: the anisotropy (a mean over distinct pairs) and the centred
    rank of a single vector are undefined, and raise a ValueError rather than come out as NaN or 0."""
    H = jnp.asarray(H, jnp.float32)
    shape = tuple(H.shape)
    if H.ndim < 2 or H.size == 0 or H.size // H.shape[-1] < 2:
        raise ValueError(f"H: expected at least 2 hidden vectors (rows of an N×d array) for the hidden-state "
                         f"probes, got shape {shape}")
    H = H.reshape(-1, H.shape[-1])
    s = spectra.singular_values(H)
    s_c = spectra.singular_values(H - jnp.mean(H, axis=0, keepdims=True))
    return {
        "hidden_effective_rank": float(spectra.effective_rank(s_c)),
        "hidden_effective_rank_uncentred": float(spectra.effective_rank(s)),
        "hidden_stable_rank": float(spectra.stable_rank(s)),
        "hidden_anisotropy": float(anisotropy(H)),
    }


def pushdown_kept(
    logits_NxV: Float[Array, "N V"], targets_N: Any, spec: QuantSpec, key: PRNGKeyArray, control: str = "none"
) -> Float[Array, ""]:
    """The fraction of the push-down mass of the logit cotangent that survives its quantizer (jit-able).

    The cotangent of the cross-entropy at token ``t`` is ``c = p − onehot(y)``: the target entry pulls up
    (``p_y − 1``, the row's largest magnitude) and every other entry pushes down by ``p_i``. Quantized per
    row with absmax scales at ``b`` bits, a push-down entry survives only if ``p_i ≥ (1 − p_y)/(2L)``. Returns
    ``Σ_t Σ_{i≠y} Q(c)_i / Σ_t Σ_{i≠y} p_i`` (signed, so an unbiased quantizer or noise keeps 1 on average).
    """
    p = jax.nn.softmax(logits_NxV.astype(jnp.float32), axis=-1)
    onehot = jax.nn.one_hot(targets_N, p.shape[-1], dtype=p.dtype)
    c = p - onehot
    qc = site_quantize(c, spec, key, control)
    others = 1.0 - onehot
    return jnp.sum(qc * others) / jnp.maximum(jnp.sum(p * others), 1e-30)


def probe_all(
    E: Any,
    spec: QuantSpec | None,
    H: Any,
    key: PRNGKeyArray | None = None,
    *,
    master_spec: QuantSpec | None = None,
    control: str = "none",
) -> dict[str, float]:
    """Embedding and hidden-state probes in one dict."""
    return {**embedding_probes(E, spec, key, master_spec=master_spec, control=control), **hidden_probes(H)}
