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

The propositions (conventions of `docs/conventions.md`: ``W`` is ``V×d``, rows = tokens, ``E = Q(W) − W``, model noise
variance ``s² = noise_var``, ``r = min(V, d)``):

* **P1** (Lemma 3.1; asymptotic): token directions ``e_k`` near-orthogonal, ``p_k ∝ k^(−s)`` ⇒ the rows
  ``√p_k e_k`` have ``σ_k ∝ k^(−s/2)`` at the leading ranks — :func:`zipf_rank_exponent`, built by
  :func:`lemma_embedding`.
* **P2** (noise floor): asymptotic — ``‖E‖₂ → s(√V + √d)`` (MP edge) for i.i.d. noise of variance s²
  (:func:`noise_floor`); rigorous — ``|σ_k(Q) − σ_k(W)| ≤ ‖E‖₂ ≤ ‖E‖_F ≤ c‖Δ‖_F`` for every k (Weyl; c = ½ for
  round-to-nearest, 1 for stochastic rounding, no clipping) (:func:`weyl_bounds`).
* **P3** (truncation index; asymptotic): ``k* = #{k : σ_k > s(Vd)^(1/4)}`` signal values survive as outliers
  (BGN; on the Dozier–Silverstein bulk, the predicted values above the edge); observed as the number of
  ``σ_k(Q)`` above the edge ``s(√V + √d)`` (:func:`truncation_index`); the
  control :func:`count_with_shuffled_residual` counts the same on ``gW`` plus the residual's entries shuffled.
* **P4** (stable rank): asymptotic — ``r_s(Q) ≈ (Σσ_i² + V d s²)/σ̃_1²``, σ̃_1 the spiked map of σ_1 (for
  a finite-rank signal and noise independent of it: it does not say the stable rank rises for every W);
  rigorous — ``‖Q‖_F²/(‖W‖₂ + ‖E‖₂)² ≤ r_s(Q) ≤ ‖Q‖_F²/(‖W‖₂ − ‖E‖₂)²`` (:func:`stable_rank_increase`).
* **P5** (flattening; asymptotic/empirical): the rank-decay exponent over a fixed window is that of the
  predicted spectrum (:func:`spectral_flattening`); it falls, ``a(Q) < a(W)``, for steep spectra of tall
  matrices, and rises for slow spectra of square ones (:data:`CASES`).

:data:`CASES` are the counterexamples that bound P4a and P5 (:func:`check_counterexample` measures each one).

:func:`verify` sweeps a :class:`VerifyGrid` (power-law matrices × bits × scale groups × rounding × seeds) and
returns an ``xarray.Dataset``; :func:`verification_table` condenses it per proposition and regime, and
:func:`run_verify` is what ``zipfrmt verify`` calls.
"""

from __future__ import annotations

from zipfrmt.bounds.counterexamples import (
    CASES,
    Counterexample,
    check_counterexample,
    outlier_column_matrix,
    spectral_twins,
    twin_factors,
)
from zipfrmt.bounds.grid import FULL_GRID, QUICK_GRID, VerifyGrid, verify
from zipfrmt.bounds.lemma import ZipfExponentCheck, lemma_embedding, zipf_rank_exponent
from zipfrmt.bounds.measure import MEASURE_METHOD, RIGOROUS_RTOL, Measured, measure
from zipfrmt.bounds.outliers import (
    FlatteningCheck,
    StableRankCheck,
    TruncationCheck,
    count_with_shuffled_residual,
    spectral_flattening,
    stable_rank_increase,
    truncation_index,
)
from zipfrmt.bounds.perturbation import (
    NoiseFloorCheck,
    WeylCheck,
    noise_floor,
    separable_profile_edge,
    weyl_bounds,
)
from zipfrmt.bounds.table import format_table, run_verify, verification_table

__all__ = [
    "CASES",
    "Counterexample",
    "check_counterexample",
    "outlier_column_matrix",
    "spectral_twins",
    "twin_factors",
    "FULL_GRID",
    "MEASURE_METHOD",
    "QUICK_GRID",
    "RIGOROUS_RTOL",
    "FlatteningCheck",
    "Measured",
    "NoiseFloorCheck",
    "StableRankCheck",
    "TruncationCheck",
    "count_with_shuffled_residual",
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
