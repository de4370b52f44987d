"""Measurements of ``W``, ``Q`` and ``E = Q − W`` that the propositions share, in float64.

Singular values come from the Gram path with float64 accumulation (``method="gram64"``: no full SVD,
accurate at any dynamic range), so the rigorous checks can use a tolerance of :data:`RIGOROUS_RTOL`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from zipfrmt import spectra
from zipfrmt.checks import check_float32_range, check_float_array, check_matrix, max_abs

__all__ = ["MEASURE_METHOD", "RIGOROUS_RTOL", "Measured", "f64", "measure", "rel_error"]

#: Tolerance of the rigorous checks, relative to their scale (``σ_1(W) + ‖E‖_F`` for singular-value
#: inequalities; the value itself for ratios). What it absorbs: singular values from ``method="gram64"``
#: (float64 Gram matrix, error ≲ √(r·2⁻⁵³)·σ_1 ≈ 3e-7·σ_1 on the tiniest σ, far less elsewhere) returned in
#: float32 (relative 6e-8), and ``E = Q − W`` formed in float32 (``‖δE‖₂ ≤ 2⁻²⁴‖E‖_F``).
RIGOROUS_RTOL = 1e-6

#: The singular-value method of :func:`measure`: accurate at any dynamic range, so the rigorous checks can
#: use a tolerance of 1e-6 (``"auto"`` guarantees 1e-4 only for σ ≥ 1e-3·σ_1).
MEASURE_METHOD = "gram64"

def rel_error(pred: float, meas: float) -> float:
    """``(pred − meas)/|meas|``; 0 if both are 0, NaN if only the measurement is 0 or either is NaN."""
    if not (math.isfinite(pred) and math.isfinite(meas)):
        return math.nan
    if meas == 0:
        return 0.0 if pred == 0 else math.nan
    return (pred - meas) / abs(meas)


def f64(x: Any) -> np.ndarray:
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
    for name, X in (("W", W), ("Q", Q)):
        check_float32_range(max_abs(X), name, "the measurements run in float32")
    if sigma_W is not None:
        sW = f64(check_float_array(sigma_W, "sigma_W", ndim=1))
        if sW.size != r:
            raise ValueError(f"sigma_W: expected min(V, d) = {r} singular values, got {sW.size}")
        if np.any(sW < 0) or np.any(np.diff(sW) > 0):
            raise ValueError(f"sigma_W: expected W's singular values, non-negative and descending, got "
                             f"{int(np.sum(sW < 0))} negative and {int(np.sum(np.diff(sW) > 0))} ascending steps")
    with jax.enable_x64(True):
        Wj = jnp.asarray(W, jnp.float32)
        Qj = jnp.asarray(Q, jnp.float32)
        if sigma_W is None:
            sW = f64(spectra.singular_values(Wj, MEASURE_METHOD))
        sQ = f64(spectra.singular_values(Qj, MEASURE_METHOD))
        sE = f64(spectra.singular_values(Qj - Wj, MEASURE_METHOD))
        fw, fe, ip = (float(x) for x in _moments(Wj, Qj))
    return Measured((V, d), sW, sQ, sE, fw, fe, ip)


