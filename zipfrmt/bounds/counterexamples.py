"""Counterexamples: matrices on which a claim of the flattening argument fails, each stated and measured.

The propositions P4a (the stable rank rises) and P5 (the rank-decay exponent falls) are asymptotic statements
under assumptions — a finite-rank signal with Haar singular vectors, noise independent of it — and the
verification grid (:func:`zipfrmt.bounds.verify`) draws only matrices that satisfy them. A mathematical review
found where they stop holding; each case here is one such matrix, quantized, with what the claim predicts and
what is measured, so that the report shows the limits of the theory beside its successes:

* ``outlier-column`` — a ``V×d`` Gaussian matrix whose column 0 is scaled by ``factor`` (an *outlier
  dimension*, as real embeddings have). Per-tensor 2-bit quantization keeps essentially that column: Q has rank
  1 and ``r_s(Q) = 1 < r_s(W)`` — the stable rank *falls*, refuting an unconditional P4a. Exactly,
  ``r_s(Q) > r_s(W)`` ⇔ ``‖E‖_F² + 2⟨W, E⟩ > r_s(W)(‖Q‖₂² − ‖W‖₂²)`` (expand ``‖Q‖_F² = ‖W‖_F² + 2⟨W,E⟩ + ‖E‖_F²``),
  and the dead zone's ``⟨W, E⟩ < 0`` removes energy. With per-column scales (rated ``widrow``) the noise variance
  of column 0 is ``factor²`` times the others', aligned with the top right singular vector: ``σ_1(Q)²`` moves
  by about ``V·s_0²`` instead of the i.i.d. ``(V + d)s²``, and the i.i.d. prediction misses;
  :func:`zipfrmt.rmt.predict_with_profile`, which moves ``σ_1`` by the variance profile along W's top singular
  vectors, does not.
* ``power-law`` — ``σ_k = k^(−a)`` with Haar vectors, square or nearly so, with a slow decay: every σ_k lies
  above the threshold and the noise bulk (which for ``V = d`` reaches 0) decays faster than the signal, so
  ``a(Q) > a(W)`` inside the Widrow regime — P5's ``a(Q) < a(W)`` fails. The spiked map applied value by value
  (exact for finite rank only) misses it; the Dozier–Silverstein law predicts it.
* ``twin-diagonal`` / ``twin-row`` — *spectral twins* (:func:`spectral_twins`): ``W = A ⊗ B`` for a power-law
  ``A`` (exponent ``param``) and one of two ``2×2`` factors with the same singular values and the same entry
  magnitudes. The twins share their spectrum, ``σ(A) ⊗ σ(B)``, and the multiset of their ``|w|`` — hence every
  statistic of ``|w|/max|w|`` a per-tensor scale group has — yet at 2 bits per tensor ``r_s(Q)`` differs by
  exactly a factor 2. No prediction from the spectrum and entry statistics can be within 10% of both: this is
  the counterexample that shows the dead zone is not predictable from those quantities alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from zipfrmt import embeddings, quant, rmt, sketch, spectra
from zipfrmt.checks import check_choice, check_int, check_key, check_matrix, check_number

__all__ = ["CASES", "Counterexample", "check_counterexample", "outlier_column_matrix", "spectral_twins",
           "twin_factors"]


def outlier_column_matrix(key: PRNGKeyArray, V: int, d: int, factor: float) -> Float[Array, "V d"]:
    """A ``V×d`` matrix of i.i.d. standard normal entries whose column 0 is multiplied by ``factor``."""
    V = check_int(V, "V", lo=1)
    d = check_int(d, "d", lo=1)
    factor = check_number(factor, "factor", lo=0.0, lo_open=True)
    W = jax.random.normal(check_key(key), (V, d), jnp.float32)
    return W.at[:, 0].multiply(factor)


def twin_factors(b: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Two ``2×2`` matrices with the same singular values and the same entry magnitudes ``{1, 1, b, c}``.

    ``B_diag = [[1, b], [c, 1]]`` and ``B_row = [[1, 1], [−b, c]]`` with ``c = (1 − b)/(1 + b)``. Their Frobenius
    norms agree (same entries) and so do their determinants, ``1 − bc = b + c``, which fixes both singular values
    of a ``2×2`` matrix. For ``1/3 < b < 1/2`` both ``b`` and ``c`` are below ``1/2``, so a 2-bit per-tensor
    quantizer keeps only the two unit entries: on the diagonal of one, in the top row of the other.
    """
    b = check_number(b, "b", lo=1.0 / 3.0, hi=0.5, lo_open=True, hi_open=True)
    c = (1.0 - b) / (1.0 + b)
    return np.array([[1.0, b], [c, 1.0]]), np.array([[1.0, 1.0], [-b, c]])


def spectral_twins(
    A: Float[Array, "m n"] | np.ndarray, b: float = 0.4
) -> tuple[Float[Array, "2m 2n"], Float[Array, "2m 2n"]]:
    """``(A ⊗ B_diag, A ⊗ B_row)`` (:func:`twin_factors`): two matrices indistinguishable before quantization.

    The singular values of a Kronecker product are the products ``σ_i(A)σ_j(B)``, and its entries the products
    ``a_kl·b_ij``: the twins have the same spectrum and the same multiset of ``|w|`` (so, under one per-tensor
    scale, the same distribution of ``|w|/max|w|``; their signed entries differ only by the sign of the ``b``
    block, which for a matrix with Haar singular vectors has the same law). Quantized at 2 bits per tensor
    (``L = 1``, ``Δ = max|w| = max|A|``; an entry survives iff ``|w| > Δ/2``), every ``a·b`` and ``a·c`` rounds to
    0, so ``Q(A ⊗ B_diag) = Q(A) ⊗ I₂`` and ``Q(A ⊗ B_row) = Q(A) ⊗ [[1, 1], [0, 0]]``: each singular value of
    ``Q(A)`` appears twice in the first, once and times √2 in the second, and ``r_s`` differs by exactly 2.
    """
    A = check_matrix(A, "A")
    B_diag, B_row = twin_factors(b)
    A = jnp.asarray(A, jnp.float32)
    return jnp.kron(A, jnp.asarray(B_diag, jnp.float32)), jnp.kron(A, jnp.asarray(B_row, jnp.float32))


#: The kinds of matrix a counterexample is built from, and the meaning of its ``param``.
KINDS = {"outlier-column": "factor", "power-law": "a", "twin-diagonal": "a", "twin-row": "a"}

#: What a case can claim: ``holds`` tests it (see :func:`check_counterexample`).
CLAIMS = ("r_s(Q) > r_s(W)", "a(Q) < a(W)", "r_s(Q) predicted", "r_s(Q) predicted to 10%")


@dataclasses.dataclass(frozen=True)
class Counterexample:
    """One counterexample: a matrix family, a quantizer and the claim it tests.

    Attributes:
      name: a short label.
      kind: ``"outlier-column"`` (``param`` = the factor of column 0), ``"power-law"`` (``param`` = a) or
        ``"twin-diagonal"``/``"twin-row"`` (:func:`spectral_twins` of a ``V/2 × d/2`` power law, ``param`` = a).
      V, d: the shape (even for the twins).
      param: see ``kind``.
      spec: the quantizer, a :class:`zipfrmt.quant.QuantSpec` text (``"int2-tensor"``).
      claim: the statement it tests, one of :data:`CLAIMS`.
    """

    name: str
    kind: str
    V: int
    d: int
    param: float
    spec: str
    claim: str

    def __post_init__(self) -> None:
        check_choice(self.kind, "kind", tuple(KINDS))
        check_int(self.V, "V", lo=2)
        check_int(self.d, "d", lo=2)
        check_number(self.param, "param", lo=0.0, lo_open=True)
        if self.kind.startswith("twin") and (self.V % 2 or self.d % 2):
            raise ValueError(f"V, d: expected even sizes for the {self.kind!r} kind (a Kronecker product with a 2×2 "
                             f"factor), got {self.V}×{self.d}")
        quant.QuantSpec.parse(self.spec)
        check_choice(self.claim, "claim", CLAIMS)

    def matrix(self, seed: int) -> tuple[Float[Array, "V d"], np.ndarray]:
        """(W, its singular values in float64) for ``seed``."""
        key = jax.random.key(check_int(seed, "seed", lo=0))
        if self.kind == "outlier-column":
            W = outlier_column_matrix(key, self.V, self.d, self.param)
            return W, np.asarray(spectra.singular_values(W), np.float64)
        if self.kind.startswith("twin"):
            A = embeddings.power_law_matrix(key, self.V // 2, self.d // 2, self.param)
            W = spectral_twins(A)[0 if self.kind == "twin-diagonal" else 1]
            sigma_a = np.asarray(embeddings.power_law_spectrum(min(self.V, self.d) // 2, self.param), np.float64)
            sigma_b = np.linalg.svd(twin_factors()[0], compute_uv=False)  # the same for both factors
            return W, np.sort(np.outer(sigma_a, sigma_b).ravel())[::-1].copy()
        W = embeddings.power_law_matrix(key, self.V, self.d, self.param)
        return W, np.asarray(embeddings.power_law_spectrum(min(self.V, self.d), self.param), np.float64)


#: The review's cases (issue 15, items 4–6), at the shapes it measured.
CASES = (
    Counterexample("outlier column, per tensor", "outlier-column", 4096, 512, 10.0, "int2-tensor", "r_s(Q) > r_s(W)"),
    Counterexample("outlier column, per tensor", "outlier-column", 4096, 512, 10.0, "int3-tensor", "r_s(Q) > r_s(W)"),
    Counterexample("outlier column, per column", "outlier-column", 4096, 512, 10.0, "int4-column",
                   "r_s(Q) predicted"),
    Counterexample("slow power law, square", "power-law", 512, 512, 0.1, "int4-row", "a(Q) < a(W)"),
    Counterexample("slow power law, 2:1", "power-law", 1024, 512, 0.1, "int4-row", "a(Q) < a(W)"),
    Counterexample("power law a = 0.3, square", "power-law", 512, 512, 0.3, "int4-row", "a(Q) < a(W)"),
    # Issue 15's Goal allows "a counterexample: two matrices with the same spectrum and entry statistics whose
    # quantized spectra differ" where the dead zone cannot be predicted: here is one.
    Counterexample("spectral twin, diagonal", "twin-diagonal", 2048, 256, 0.3, "int2-tensor",
                   "r_s(Q) predicted to 10%"),
    Counterexample("spectral twin, row", "twin-row", 2048, 256, 0.3, "int2-tensor", "r_s(Q) predicted to 10%"),
)


def _stable_rank(s: np.ndarray) -> float:
    return float(np.sum(s**2) / s[0] ** 2) if s[0] > 0 else 0.0


def check_counterexample(case: Counterexample, seed: int = 0) -> dict[str, Any]:
    """Quantizes the case's matrix and measures the claim beside its predictions.

    Returns a dict of plain numbers: the ``regime``; ``stable_rank_full``/``_measured``/``_predicted`` (the
    prediction of :func:`zipfrmt.rmt.predict_from_result` with its ``auto`` model, recorded as ``model``);
    ``exponent_full``/``_measured`` and ``exponent_predicted_mp``/``_ds`` (the MP bulk with the spiked map, and
    the Dozier–Silverstein law — NaN unless the claim is about the exponent), all over every rank;
    ``stable_rank_predicted_profile`` (:func:`zipfrmt.rmt.predict_with_profile`: the additive prediction with
    ``σ_1`` moved by the noise's variance profile along W's top singular vectors; the plain prediction where it
    does not apply); ``stable_rank_predicted_sketch`` (:func:`zipfrmt.rmt.predict_from_sketch`: ``σ_1`` from one
    pass over Q along W's top singular pair); ``sigma1_shift_measured`` ``σ_1(Q)² − σ_1(W)²`` and
    ``sigma1_shift_iid`` ``σ̃_1² − (gσ_1)²``, the shift the model predicts for its signal ``gσ_1`` (g = 1 for the
    additive model); ``truncation_predicted``/``_measured`` (``k*`` and the count of quantized values above the
    predicted noise floor, :func:`zipfrmt.rmt.count_above_floor`); ``holds`` — whether the claim held (for
    ``"r_s(Q) predicted"``: within 1%, the Widrow-regime accuracy the package states; for
    ``"r_s(Q) predicted to 10%"``: within 10%, the dead-zone accuracy issue 15's Goal asks for).
    """
    if not isinstance(case, Counterexample):
        raise TypeError(f"case: expected a bounds.Counterexample, got {type(case).__name__}")
    W, sigma_w = case.matrix(seed)
    res = quant.quantize(W, case.spec)
    sigma_q = np.asarray(spectra.singular_values(res.dequantized), np.float64)
    pred = rmt.predict_from_result(sigma_w, case.V, case.d, res, bulk="mp")  # the spiked map, as the table says
    ds = (rmt.predict_from_result(sigma_w, case.V, case.d, res, bulk="dozier-silverstein")
          if case.claim == "a(Q) < a(W)" else None)  # the DS law on a 4096×512 matrix takes seconds
    U, _, Vt = np.linalg.svd(np.asarray(W, np.float64), full_matrices=False)
    prof = rmt.predict_with_profile(sigma_w, case.V, case.d, res, U[:, 0], Vt[0])
    sk = rmt.predict_from_sketch(sigma_w, case.V, case.d, res, sketch.quant_sketch(res.dequantized, U[:, 0], Vt[0]),
                                 bulk="mp")  # only its σ_1 and stable rank are read here
    out = {
        "regime": res.regime,
        "model": pred.model,
        "zero_fraction": float(res.zero_fraction),
        "stable_rank_full": _stable_rank(sigma_w),
        "stable_rank_measured": _stable_rank(sigma_q),
        "stable_rank_predicted": float(pred.stable_rank),
        "stable_rank_predicted_profile": float(prof.stable_rank),
        "stable_rank_predicted_sketch": float(sk.stable_rank),
        "exponent_full": float(spectra.rank_decay_exponent(sigma_w).a),
        "exponent_measured": float(spectra.rank_decay_exponent(sigma_q).a),
        "exponent_predicted_mp": float(pred.decay.a),
        "exponent_predicted_ds": float(ds.decay.a) if ds is not None else float("nan"),
        "sigma1_shift_measured": float(sigma_q[0] ** 2 - sigma_w[0] ** 2),
        "sigma1_shift_iid": float(pred.sigma1**2 - (pred.gain * sigma_w[0]) ** 2),
        "truncation_predicted": float(pred.truncation_index),
        "truncation_measured": float(rmt.count_above_floor(sigma_q, pred)),
    }
    if case.claim == "r_s(Q) > r_s(W)":
        out["holds"] = out["stable_rank_measured"] > out["stable_rank_full"]
    elif case.claim == "a(Q) < a(W)":
        out["holds"] = out["exponent_measured"] < out["exponent_full"]
    else:
        meas = out["stable_rank_measured"]
        tol = 0.01 if case.claim == "r_s(Q) predicted" else 0.10
        out["holds"] = meas > 0 and abs(out["stable_rank_predicted"] / meas - 1) <= tol
    return out
