"""Spectral probes of a model during training: the embedding table and the hidden states.

Embedding ``E`` (V×d, rows = tokens), full-precision master weights and the quantized view ``Q(E)`` the
forward pass reads:

* stable rank ``Σσ²/σ₁²``, effective rank ``exp H(σ/Σσ)``, rank-decay exponent ``a`` (``σ_k ≈ C k^−a`` over
  every nonzero σ) and ESD tail exponent α (Clauset–Shalizi–Newman), all from :mod:`zipfrmt.spectra`;
* truncation index: predicted ``k* = #{k : σ_k > s (V d)^¼}`` from the full-precision spectrum and the
  quantizer's noise variance (:func:`zipfrmt.rmt.predict_quantized`, or the Bussgang model in the dead-zone
  regime), and measured — the singular values of ``Q(E)`` above the predicted noise floor ``s(√V + √d)``;
  both exactly as :func:`zipfrmt.analyze.analyze_matrix` computes them (``zipfrmt analyze``).

Hidden states ``h`` (the final-norm outputs on fixed held-out windows, N×d):

* effective rank of the N×d matrix of hidden vectors;
* anisotropy: the mean cosine between distinct hidden vectors,
  ``(|Σ_i u_i|² − N) / (N(N − 1))`` with ``u_i = h_i/|h_i|`` (0 for isotropic vectors, 1 when all align;
  Ethayarajh 2019).

All probes are deterministic functions of the parameters (and, for stochastic rounding of the view, of an
explicit key), so a resumed run records identical values.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from zipfrmt import analyze, quant, spectra
from zipfrmt.nn.config import QuantSpec

__all__ = ["EMBED_FIELDS", "HIDDEN_FIELDS", "anisotropy", "embedding_probes", "hidden_probes", "quantized_view"]

EMBED_FIELDS = (
    "emb_stable_rank", "emb_effective_rank", "emb_rank_exponent", "emb_esd_alpha",
    "emb_stable_rank_q", "emb_effective_rank_q", "emb_rank_exponent_q", "emb_esd_alpha_q",
    "emb_k_star_predicted", "emb_k_star_measured", "emb_stable_rank_q_predicted", "emb_zero_fraction_q",
    "emb_bussgang_gain_q", "emb_widrow",
)
HIDDEN_FIELDS = ("hidden_effective_rank", "hidden_stable_rank", "hidden_anisotropy")


def quantized_view(E: Float[Array, "V d"], spec: QuantSpec, key: PRNGKeyArray | None = None) -> quant.QuantResult:
    """``Q(E)`` with its noise statistics (:func:`zipfrmt.quant.quantize` or :func:`zipfrmt.quant.quantize_format`)."""
    if spec.bits is not None:
        key = (jax.random.key(0) if key is None else key) if spec.rounding == "stochastic" else None
        return quant.quantize(E, spec.bits, scheme=spec.scheme, granularity=spec.granularity,
                              group_size=spec.group_size, clip=spec.clip, rounding=spec.rounding, key=key)
    gran = spec.granularity if spec.granularity != "column" else "column"
    return quant.quantize_format(E, spec.format, granularity=gran, group_size=spec.group_size)


def _fields(summary: spectra.SpectralSummary, suffix: str) -> dict[str, float]:
    return {
        f"emb_stable_rank{suffix}": summary.stable_rank,
        f"emb_effective_rank{suffix}": summary.effective_rank,
        f"emb_rank_exponent{suffix}": summary.rank_exponent,
        f"emb_esd_alpha{suffix}": summary.esd_alpha,
    }


def embedding_probes(
    E: Float[Array, "V d"], spec: QuantSpec | None, key: PRNGKeyArray | None = None
) -> dict[str, float]:
    """Spectral probes of an embedding table and of its quantized view (NaN for the view when ``spec`` is None).

    Returns the :data:`EMBED_FIELDS` as floats (``emb_widrow`` is 1.0 in the widrow regime, 0.0 in dead-zone).
    """
    E = jnp.asarray(E, jnp.float32)
    shape = (int(E.shape[0]), int(E.shape[1]))
    s_fp = np.asarray(spectra.singular_values(E), np.float64)
    out = {k: math.nan for k in EMBED_FIELDS}
    out.update(_fields(spectra.summarize_spectrum(s_fp, shape), ""))
    if spec is None:
        return out
    q = quantized_view(E, spec, key)
    s_q = np.asarray(spectra.singular_values(q.dequantized), np.float64)
    out.update(_fields(spectra.summarize_spectrum(s_q, shape), "_q"))
    pred = analyze._prediction(s_fp, s_q, shape, q)  # the `zipfrmt analyze` convention for k*
    out["emb_k_star_predicted"] = float(pred["predicted"]["truncation_index"])
    out["emb_k_star_measured"] = float(pred["truncation_index"])
    out["emb_stable_rank_q_predicted"] = float(pred["predicted"]["stable_rank"])
    out["emb_zero_fraction_q"] = q.zero_fraction
    out["emb_bussgang_gain_q"] = q.bussgang_gain
    out["emb_widrow"] = 1.0 if q.regime == "widrow" else 0.0
    return out


@jax.jit
def anisotropy(H: Float[Array, "N d"]) -> Float[Array, ""]:
    """Mean pairwise cosine similarity of the rows of H over distinct pairs: ``(|Σu_i|² − N)/(N(N−1))``."""
    n = H.shape[0]
    norms = jnp.linalg.norm(H, axis=1, keepdims=True)
    U = H / jnp.where(norms > 0, norms, 1.0)
    total = jnp.sum(U, axis=0)
    return (jnp.dot(total, total) - jnp.sum(U * U)) / (n * (n - 1))


def hidden_probes(H: Float[Array, "N d"]) -> dict[str, float]:
    """Effective rank, stable rank and anisotropy of a matrix of hidden states (rows = token positions)."""
    H = jnp.asarray(H, jnp.float32).reshape(-1, H.shape[-1])
    s = spectra.singular_values(H)
    return {
        "hidden_effective_rank": float(spectra.effective_rank(s)),
        "hidden_stable_rank": float(spectra.stable_rank(s)),
        "hidden_anisotropy": float(anisotropy(H)),
    }


def probe_all(E: Any, spec: QuantSpec | None, H: Any, key: PRNGKeyArray | None = None) -> dict[str, float]:
    """Embedding and hidden-state probes in one dict."""
    return {**embedding_probes(E, spec, key), **hidden_probes(H)}
