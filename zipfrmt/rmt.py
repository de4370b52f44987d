"""Random-matrix predictions for a V×d matrix plus noise: Marchenko–Pastur, spiked model, Dozier–Silverstein.

Conventions (``docs/conventions.md``): ``W`` is ``V×d`` with rows = tokens, unnormalised; the noise ``E`` (e.g. the
quantization error ``Q_b(W) − W`` under the Widrow model) has i.i.d. entries of variance ``s² = noise_var``.
Singular values ``σ_1 ≥ … ≥ σ_r``, ``r = min(V, d)``. The aspect ratio is ``γ = d/V``; every function accepts
``d > V`` too.

Which variable each density is of — one choice throughout the module:

* ``x = λ/V``, where ``λ = σ²`` are the ``d`` eigenvalues of ``WᵀW`` (equivalently the eigenvalues of the
  ``d×d`` matrix ``WᵀW/V``). ``mp_density``, ``mp_cdf``, ``mp_quantiles``, ``limiting_spectrum`` are all laws
  of ``x``. To change variable: ``ρ_λ(λ) = ρ(λ/V)/V`` and ``ρ_σ(σ) = ρ(σ²/V)·2σ/V``.
* When ``d > V`` the ``d×d`` matrix ``WᵀW`` has rank ``V``: the law of ``x`` has an atom of mass
  ``1 − V/d`` at 0. Densities here are the absolutely continuous part (integrating to ``min(1, V/d)``); CDFs
  and quantiles include the atom.
* Singular values are unnormalised: the pure-noise bulk is ``s|√V − √d| … s(√V + √d)``.

Sources: Marchenko & Pastur (1967), "Distribution of eigenvalues for some sets of random matrices",
Math. USSR Sbornik; Benaych-Georges & Nadakuditi (2012), "The singular values and vectors of low rank
perturbations of large rectangular random matrices", J. Multivariate Anal. 111 (BGN); Dozier & Silverstein
(2007), "On the empirical distribution of eigenvalues of large dimensional information-plus-noise-type
matrices", J. Multivariate Anal. 98 (DS).

Everything is computed in float64 (``jax.enable_x64`` is switched on locally inside each public function,
never globally) and returned in JAX's default precision: float32 / complex64 unless the user has enabled x64
globally (float64 arrays leaking out of the local x64 scope would be truncated, with warnings, by later JAX
operations). Scalars (edges, thresholds, ranks) are Python floats computed in float64.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Complex, Float, Int

from zipfrmt.checks import check_choice, check_float_array, check_int, check_number, describe
from zipfrmt.sketch import QuantSketch, sigma1_bracket, sketch_sigma1
from zipfrmt.spectra import RankDecayFit, effective_rank, rank_decay_exponent

__all__ = [
    "ConvergenceWarning",
    "DSResult",
    "MPEdges",
    "QuantizedPrediction",
    "SpikedOverlaps",
    "detection_threshold",
    "dozier_silverstein_density",
    "limiting_spectrum",
    "mp_cdf",
    "mp_density",
    "mp_edges",
    "mp_quantiles",
    "mp_typical_singular_values",
    "BULKS",
    "MODELS",
    "choose_bulk",
    "count_above_floor",
    "predict_from_result",
    "predict_from_sketch",
    "predict_quantized",
    "predict_quantized_bussgang",
    "predict_top_singular_values",
    "predict_with_profile",
    "spiked_overlaps",
    "spiked_singular_value",
]

#: Relative tolerance on "descending" for a spectrum given as input (float32 round-off in an SVD).
_DESC_RTOL = 1e-6
#: Factor by which the imaginary part η shrinks per iteration during the continuation of the DS solver.
_ETA_DECAY = 0.25
#: Default η of the DS solver, relative to the noise bulk's scale s²(1 + √c)² (not the signal's: a large
#: spike must not smooth the bulk).
_ETA_REL = 1e-6
#: Grid sizes (least, most) for the Dozier–Silverstein quantiles of ``predict_quantized(bulk=...)``.
_DS_QUANTILE_GRID, _DS_QUANTILE_GRID_MAX = 2048, 32768
#: Half-width, in units of s, kept clear around an outlier's island when cutting the DS quantile grid.
_ISLAND = 6.0
#: Grid points per block of the DS map (:func:`_ds_map`) on a grid of more than ``_DS_ONE_PASS`` points, which
#: is padded to a multiple of it.
_DS_BLOCK, _DS_ONE_PASS = 256, 4096


class ConvergenceWarning(RuntimeWarning):
    """The Dozier–Silverstein fixed point did not reach its tolerance; the result is reported, but suspect."""


# ---------------------------------------------------------------------------------------------------------
# Validation at the public boundary
# ---------------------------------------------------------------------------------------------------------


def _out(tree: Any) -> Any:
    """Casts every array of a result (computed under x64) to the default precision outside that scope.

    A result that the default precision cannot hold — a finite float64 value that overflows float32, or a nonzero
    result that underflows to all zeros — is a named error, never an Inf or a silent 0."""

    def cast(a: Any) -> Any:
        dtype = jax.dtypes.canonicalize_dtype(a.dtype)
        if isinstance(a, jax.core.Tracer):
            return a.astype(dtype)
        # Cast in NumPy and put back: a JAX cast compiles a program for every new length, and the lengths of grids
        # vary with every spec of an analysis (9 MB and 0.1 s each, never freed)
        a = np.asarray(a)
        with np.errstate(over="ignore"):  # an overflow is the named error below
            out = a.astype(dtype)
        if np.issubdtype(out.dtype, np.inexact):  # subnormals to 0, as XLA:CPU's cast (and arithmetic) would
            for part in (out.real, out.imag) if np.iscomplexobj(out) else (out,):
                part[np.abs(part) < np.finfo(out.dtype).tiny] = 0
        if out.dtype != a.dtype and np.issubdtype(a.dtype, np.floating) and a.size:
            a64, a32 = np.abs(a), np.abs(out)
            big = float(np.max(a64))
            if bool(np.any(np.isfinite(a64) & ~np.isfinite(a32))) or (big > 0 and float(np.max(a32)) == 0):
                raise ValueError(
                    f"noise_var: expected a scale whose results fit {out.dtype}, got results of magnitude up to "
                    f"{big:.4g}; rescale the inputs (the laws are homogeneous in the scale) or enable "
                    "jax.config.update('jax_enable_x64', True)"
                )
        return jax.device_put(out)  # jnp.asarray would compile a copy per length too

    return jax.tree.map(cast, tree)


def _check_shape(V: Any, d: Any) -> tuple[int, int]:
    return check_int(V, "V", lo=1), check_int(d, "d", lo=1)


def _check_var(value: Any, name: str, *, positive: bool) -> float:
    return check_number(value, name, lo=0.0, lo_open=positive)


def _as_array(x: Any, name: str, *, ndim: int | None = None) -> np.ndarray:
    """A real array (Python real scalars accepted) checked finite and non-empty, as float64 NumPy."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        x = np.float64(x)
    return np.asarray(check_float_array(x, name, ndim=ndim), dtype=np.float64)


def _check_nonnegative(x: np.ndarray, name: str, what: str) -> None:
    if (x < 0).any():
        raise ValueError(f"{name}: expected non-negative {what}, got min {x.min():g} in {describe(x)}")


def _check_spectrum(sigma: Any, name: str, V: int, d: int) -> np.ndarray:
    """Singular values of a V×d matrix: 1-D, finite, ≥ 0, descending, at most min(V, d) of them."""
    s = _as_array(sigma, name, ndim=1)
    _check_nonnegative(s, name, "singular values")
    if s.size > 1:
        rise = np.diff(s)
        tol = _DESC_RTOL * max(float(s[0]), 1e-300)
        if (rise > tol).any():
            k = int(np.argmax(rise > tol)) + 1
            raise ValueError(
                f"{name}: expected singular values in descending order, got σ_{k} = {s[k - 1]:g} < σ_{k + 1} = {s[k]:g}"
            )
    r = min(V, d)
    if s.size > r:
        raise ValueError(
            f"{name}: expected at most min(V, d) = {r} singular values for a {V}×{d} matrix, got {s.size} "
            f"(do V and d match the matrix the spectrum came from?)"
        )
    return s


def _check_grid(x_grid: Any, name: str = "x_grid") -> np.ndarray:
    return _as_array(x_grid, name, ndim=1)


def _check_solver(eta: Any, damping: Any, max_iter: Any, tol: Any) -> tuple[float | None, float, int, float]:
    eta = None if eta is None else check_number(eta, "eta", lo=0.0, lo_open=True)
    damping = check_number(damping, "damping", lo=0.0, hi=1.0, lo_open=True)
    max_iter = check_int(max_iter, "max_iter", lo=1)
    tol = check_number(tol, "tol", lo=0.0, lo_open=True)
    return eta, damping, max_iter, tol


# ---------------------------------------------------------------------------------------------------------
# Marchenko–Pastur
# ---------------------------------------------------------------------------------------------------------


class MPEdges(NamedTuple):
    """Edges of the Marchenko–Pastur bulk of a pure-noise V×d matrix with entries of variance s².

    Attributes:
      sigma_lo, sigma_hi: singular-value edges ``s|√V − √d|``, ``s(√V + √d)`` (unnormalised).
      lambda_lo, lambda_hi: eigenvalue edges of ``EᵀE``, ``λ = σ²``: ``s²(√V ∓ √d)²``.
      x_lo, x_hi: edges of ``x = λ/V``, the variable of :func:`mp_density`: ``s²(1 ∓ √γ)²``, ``γ = d/V``.
      atom: mass of the atom of the law of ``x`` at 0, ``max(0, 1 − V/d)`` (``d > V``: ``EᵀE`` is rank V).
    """

    sigma_lo: float
    sigma_hi: float
    lambda_lo: float
    lambda_hi: float
    x_lo: float
    x_hi: float
    atom: float


def mp_edges(V: int, d: int, noise_var: float) -> MPEdges:
    """Marchenko–Pastur bulk edges for V×d noise of entry variance ``noise_var = s²`` (Marchenko–Pastur 1967).

    ``σ± = s(√V ± √d)`` (the lower one as ``s|√V − √d|``, so any aspect ratio works), ``λ± = σ±²``,
    ``x± = λ±/V = s²(1 ± √γ)²`` with ``γ = d/V``. For ``d > V`` the ``d − V`` zero eigenvalues of ``EᵀE`` form
    an atom of mass ``1 − V/d`` at ``x = 0``, reported as ``atom``; the edges are those of the nonzero part.
    """
    V, d = _check_shape(V, d)
    s2 = _check_var(noise_var, "noise_var", positive=False)
    s = math.sqrt(s2)
    lo, hi = s * abs(math.sqrt(V) - math.sqrt(d)), s * (math.sqrt(V) + math.sqrt(d))
    return MPEdges(lo, hi, lo * lo, hi * hi, lo * lo / V, hi * hi / V, max(0.0, 1.0 - V / d))


@jax.jit
def _mp_density(x: Float[Array, "*s"], gamma: Float[Array, ""], s2: Float[Array, ""]) -> Float[Array, "*s"]:
    rg = jnp.sqrt(gamma)
    u = x / s2  # in units of s²: ρ(x; s²) = ρ(x/s²; 1)/s², no product of small numbers underflows
    u_lo, u_hi = (1 - rg) ** 2, (1 + rg) ** 2
    inside = (u > u_lo) & (u < u_hi)
    us = jnp.where(inside, u, 0.5 * (u_lo + u_hi))
    rho = jnp.sqrt((u_hi - us) * (us - u_lo)) / (2 * jnp.pi * gamma * us)
    return jnp.where(inside, rho / s2, 0.0)


@jax.jit
def _mp_cont_cdf_theta(theta: Float[Array, "*s"], gamma: Float[Array, ""], s2: Float[Array, ""]) -> Float[Array, "*s"]:
    """Mass of the continuous MP part on [x₋, x], in the angle ``x = a − b cos θ``, θ ∈ [0, π].

    With ``a = s²(1+γ)``, ``b = 2s²√γ``: ``√((x₊−x)(x−x₋)) = b sin θ`` and the integral of the density is
    ``[b sin θ + a θ − 2s²|1−γ| atan2((1+√γ) sin(θ/2), |1−√γ| cos(θ/2))] / (2π s² γ)``, which is
    ``min(1, 1/γ)`` at θ = π (atan2 keeps γ = 1 finite).
    """
    rg = jnp.sqrt(gamma)
    a, b = s2 * (1 + gamma), 2 * s2 * rg
    arc = jnp.arctan2((1 + rg) * jnp.sin(theta / 2), jnp.abs(1 - rg) * jnp.cos(theta / 2))
    return (b / s2 * jnp.sin(theta) + a / s2 * theta - 2 * jnp.abs(1 - gamma) * arc) / (2 * jnp.pi * gamma)


@jax.jit
def _mp_cdf(x: Float[Array, "*s"], gamma: Float[Array, ""], s2: Float[Array, ""]) -> Float[Array, "*s"]:
    a, b = s2 * (1 + gamma), 2 * s2 * jnp.sqrt(gamma)
    theta = jnp.arccos(jnp.clip((a - x) / b, -1.0, 1.0))
    atom = jnp.maximum(0.0, 1.0 - 1.0 / gamma)
    return jnp.where(x < 0, 0.0, atom + _mp_cont_cdf_theta(theta, gamma, s2))


@jax.jit
def _mp_quantiles(p: Float[Array, "*s"], gamma: Float[Array, ""], s2: Float[Array, ""]) -> Float[Array, "*s"]:
    """Inverse of :func:`_mp_cdf` by bisection on θ (the continuous CDF is monotone in θ ∈ [0, π])."""
    a, b = s2 * (1 + gamma), 2 * s2 * jnp.sqrt(gamma)
    atom = jnp.maximum(0.0, 1.0 - 1.0 / gamma)
    target = p - atom

    def step(_: int, bracket: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        below = _mp_cont_cdf_theta(mid, gamma, s2) < target
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 64, step, (jnp.zeros_like(p), jnp.full_like(p, jnp.pi)))
    x = a - b * jnp.cos(0.5 * (lo + hi))
    return jnp.where(target <= 0, 0.0, x)


def mp_density(x: Float[Array, "*s"], V: int, d: int, noise_var: float) -> Float[Array, "*s"]:
    """Marchenko–Pastur density of ``x = λ/V``, λ the eigenvalues of ``EᵀE`` for V×d noise of variance s².

    ``ρ(x) = √((x₊ − x)(x − x₋)) / (2π s² γ x)`` on ``[x₋, x₊]``, ``x± = s²(1 ± √γ)²``, ``γ = d/V``
    (Marchenko & Pastur 1967). It integrates to 1 for ``γ ≤ 1``; for ``γ > 1`` it is the continuous part, of
    mass ``1/γ = V/d``, and the law has in addition an atom of mass ``1 − V/d`` at 0 (:func:`mp_edges`).

    Args:
      x: points (any shape, finite) at which to evaluate.
      V, d: the matrix shape (rows = tokens); any aspect ratio.
      noise_var: entry variance ``s² > 0``.
    Returns:
      The density at ``x`` (same shape; float32 unless x64 is enabled), 0 outside the bulk.
    """
    V, d = _check_shape(V, d)
    s2 = _check_var(noise_var, "noise_var", positive=True)
    xs = _as_array(x, "x")
    with jax.enable_x64(True):
        out = _mp_density(jnp.asarray(xs), jnp.float64(d / V), jnp.float64(s2))
    return _out(out)


def mp_cdf(x: Float[Array, "*s"], V: int, d: int, noise_var: float) -> Float[Array, "*s"]:
    """Marchenko–Pastur CDF of ``x = λ/V`` (the law of :func:`mp_density`), with the atom at 0 when d > V.

    Closed form: with ``x = a − b cos θ``, ``a = s²(1+γ)``, ``b = 2s²√γ``,
    ``F(x) = (1 − 1/γ)₊ + [b sin θ + a θ − 2s²|1−γ| atan(√((a+b)/(a−b)) tan(θ/2))] / (2π s² γ)`` for x ≥ 0.
    """
    V, d = _check_shape(V, d)
    s2 = _check_var(noise_var, "noise_var", positive=True)
    xs = _as_array(x, "x")
    with jax.enable_x64(True):
        out = _mp_cdf(jnp.asarray(xs), jnp.float64(d / V), jnp.float64(s2))
    return _out(out)


def mp_quantiles(p: Float[Array, "*s"], V: int, d: int, noise_var: float) -> Float[Array, "*s"]:
    """Quantiles of the Marchenko–Pastur law of ``x = λ/V``: the smallest x with ``F(x) ≥ p``, p ∈ [0, 1].

    Inverts the closed-form :func:`mp_cdf` by 64 bisection steps on the angle θ (exact to float64). For d > V,
    ``p ≤ 1 − V/d`` gives 0 (the atom). To compare a sorted empirical spectrum ``x_(1) ≤ … ≤ x_(n)`` with MP,
    use ``p_i = (i − ½)/n`` (or :func:`mp_typical_singular_values` for singular values directly).
    """
    V, d = _check_shape(V, d)
    s2 = _check_var(noise_var, "noise_var", positive=True)
    ps = _as_array(p, "p")
    if ((ps < 0) | (ps > 1)).any():
        raise ValueError(f"p: expected probabilities in [0, 1], got range [{ps.min():g}, {ps.max():g}]")
    with jax.enable_x64(True):
        out = _mp_quantiles(jnp.asarray(ps), jnp.float64(d / V), jnp.float64(s2))
    return _out(out)


def mp_typical_singular_values(V: int, d: int, noise_var: float) -> Float[Array, " r"]:
    """Typical descending singular values of V×d noise: ``σ_i = √(V · Q(1 − (i − ½)/d))``, i = 1..min(V, d).

    ``Q`` is :func:`mp_quantiles`: the i-th largest of the d eigenvalues of ``EᵀE/V`` sits at probability
    level ``1 − (i − ½)/d``; for d > V only the top V are nonzero, and these levels stay above the atom at 0.
    """
    V, d = _check_shape(V, d)
    s2 = _check_var(noise_var, "noise_var", positive=True)
    with jax.enable_x64(True):
        out = jnp.asarray(_mp_typical(V, d, s2))
    return _out(out)


def _mp_typical(V: int, d: int, s2: float) -> Float[np.ndarray, " r"]:
    """The typical singular values as float64 NumPy: ``s·σ_i(V, d, 1)`` (the MP quantiles scale with ``s²``), the
    unit-variance ones computed once per shape (the bisection is the cost; an analysis asks for one shape often)."""
    return math.sqrt(s2) * _mp_typical_unit(V, d)


@functools.lru_cache(maxsize=64)
def _mp_typical_unit(V: int, d: int) -> Float[np.ndarray, " r"]:
    with jax.enable_x64(True):
        i = jnp.arange(1, min(V, d) + 1, dtype=jnp.float64)
        x = np.asarray(_mp_quantiles(1.0 - (i - 0.5) / d, jnp.float64(d / V), jnp.float64(1.0)))
    out = np.sqrt(V * x)
    out.flags.writeable = False  # shared by every caller
    return out


# ---------------------------------------------------------------------------------------------------------
# Spiked (information-plus-noise, finite rank) model — Benaych-Georges & Nadakuditi 2012
# ---------------------------------------------------------------------------------------------------------


def _threshold(V: int, d: int, s2: float) -> float:
    return math.sqrt(s2) * float(V) ** 0.25 * float(d) ** 0.25


@jax.jit
def _spiked_map(theta: Float[Array, "*s"], V: Any, d: Any, s2: Float[Array, ""]) -> Float[Array, "*s"]:
    s = jnp.sqrt(s2)
    unit = jnp.where(s > 0, s, 1.0)  # in units of s (no θ² or θ⁴ over/underflows); s = 0 maps θ to itself
    above = theta > s * V**0.25 * d**0.25
    th = jnp.where(above, theta / unit, 1.0)
    sn2 = s2 / unit**2
    value = unit * jnp.sqrt((th**2 + sn2 * V) * (th**2 + sn2 * d)) / th
    return jnp.where(above, value, s * (jnp.sqrt(V) + jnp.sqrt(d)))


def detection_threshold(V: int, d: int, noise_var: float) -> float:
    """BGN detection threshold ``θ_c = s (V d)^(1/4)``: a signal singular value separates iff θ > θ_c.

    It is in signal units: the observed image of θ_c under :func:`spiked_singular_value` is the bulk edge
    ``s(√V + √d)``, so count observed singular values above the edge to compare with the truncation index.
    """
    V, d = _check_shape(V, d)
    return _threshold(V, d, _check_var(noise_var, "noise_var", positive=False))


def spiked_singular_value(theta: Float[Array, "*s"], V: int, d: int, noise_var: float) -> Float[Array, "*s"]:
    """Limit of the observed singular value of ``θ u vᵀ + E`` (E: V×d, entries of variance s²), BGN 2012.

    ``σ̃(θ) = √((θ² + s²V)(θ² + s²d)) / θ`` for ``θ > θ_c = s(Vd)^(1/4)``, and the bulk edge ``s(√V + √d)``
    otherwise (BGN Section 3.1, Gaussian rectangular case, rescaled from their ``n×m`` noise of variance 1/m:
    ``θ̄ = θ/(s√max(V, d))``, ``c = min(V, d)/max(V, d)``, ``σ̄ = √((1+θ̄²)(c+θ̄²))/θ̄``; the result is
    symmetric in V and d). Increasing in θ above θ_c, equal to the edge at θ_c. Elementwise over ``theta``.
    """
    V, d = _check_shape(V, d)
    s2 = _check_var(noise_var, "noise_var", positive=False)
    th = _as_array(theta, "theta")
    _check_nonnegative(th, "theta", "signal singular values")
    with jax.enable_x64(True):
        out = _spiked_map(jnp.asarray(th), float(V), float(d), jnp.float64(s2))
    return _out(out)


class SpikedOverlaps(NamedTuple):
    """Squared cosines between a signal's singular vectors and the observed ones (limits, BGN 2012).

    Attributes:
      row: ``|⟨u, ũ⟩|²`` for the left singular vectors, in R^V (the token / row side).
      column: ``|⟨v, ṽ⟩|²`` for the right singular vectors, in R^d (the feature / column side).
    """

    row: Float[Array, "*s"]
    column: Float[Array, "*s"]


@jax.jit
def _overlaps(theta: Float[Array, "*s"], V: Any, d: Any, s2: Float[Array, ""]) -> SpikedOverlaps:
    unit = jnp.where(s2 > 0, s2, 1.0)  # in units of s² (θ⁴ under/overflows float64 beyond ~1e±77); ratios unchanged
    th2 = (theta / jnp.sqrt(unit)) ** 2
    s2 = s2 / unit
    num = th2**2 - s2**2 * V * d
    above = num > 0
    den_row = th2 * (th2 + s2 * V)
    den_col = th2 * (th2 + s2 * d)
    row = jnp.where(above, num / jnp.where(above, den_row, 1.0), 0.0)
    col = jnp.where(above, num / jnp.where(above, den_col, 1.0), 0.0)
    return SpikedOverlaps(row, col)


def spiked_overlaps(theta: Float[Array, "*s"], V: int, d: int, noise_var: float) -> SpikedOverlaps:
    """Singular-vector overlaps of a spike θ in V×d noise of variance s² (BGN 2012, Section 3.1).

    With ``θ̄ = θ/(s√V)`` and ``c = d/V`` (any c > 0), above the threshold ``θ̄⁴ > c``:

    * column side (right vectors, R^d):
      ``|⟨v, ṽ⟩|² = 1 − c(1 + θ̄²)/(θ̄²(θ̄² + c)) = (θ⁴ − s⁴Vd)/(θ²(θ² + s²d))``
    * row side (left vectors, R^V):
      ``|⟨u, ũ⟩|² = 1 − (c + θ̄²)/(θ̄²(θ̄² + 1)) = (θ⁴ − s⁴Vd)/(θ²(θ² + s²V))``

    and 0 at or below it. (BGN state them for an ``n×m`` noise, ``n ≤ m``, ``c = n/m``: their ``u`` is on
    the short side and their ``v`` on the long side; written in θ, s², V, d as above the two formulas hold for
    either orientation.) The longer side has the smaller overlap.
    """
    V, d = _check_shape(V, d)
    s2 = _check_var(noise_var, "noise_var", positive=False)
    th = _as_array(theta, "theta")
    _check_nonnegative(th, "theta", "signal singular values")
    with jax.enable_x64(True):
        out = _overlaps(jnp.asarray(th), float(V), float(d), jnp.float64(s2))
    return _out(out)


def predict_top_singular_values(sigma: Float[Array, " k"], V: int, d: int, noise_var: float) -> Float[Array, " k"]:
    """Observed spectrum of ``signal + noise`` predicted value by value with the spiked map (BGN 2012).

    Each signal singular value σ_k is mapped independently by :func:`spiked_singular_value`: those above
    ``θ_c = s(Vd)^(1/4)`` move out to ``√((σ_k² + s²V)(σ_k² + s²d))/σ_k``, the rest stick to the bulk edge
    ``s(√V + √d)``. Exact for a fixed number of spikes as V, d → ∞; for a whole power-law spectrum it is the
    leading-order prediction of the separated top values (the bulk itself is :func:`limiting_spectrum`).

    Args:
      sigma: signal singular values, descending, at most ``min(V, d)`` of them.
    Returns:
      The predicted observed values, descending, same length.
    """
    V, d = _check_shape(V, d)
    s2 = _check_var(noise_var, "noise_var", positive=False)
    s = _check_spectrum(sigma, "sigma", V, d)
    with jax.enable_x64(True):
        out = _spiked_map(jnp.asarray(s), float(V), float(d), jnp.float64(s2))
    return _out(out)


# ---------------------------------------------------------------------------------------------------------
# Dozier–Silverstein: the full limiting spectrum of information-plus-noise matrices
# ---------------------------------------------------------------------------------------------------------


class DSResult(NamedTuple):
    """Solution of the Dozier–Silverstein fixed point on a grid.

    Attributes:
      density: the density at each grid point, ``Im m(x + iη)/π`` (continuous part; ≥ 0).
      m: the Stieltjes transform ``m(z) = ∫ dF(λ)/(λ − z)`` of the whole law (atom included) at ``x + iη``.
      residual: relative residual ``|m − f(m)| / max(|m|, Σ_k w_k|1/D_k|)`` of the fixed-point equation at each
        grid point — relative to ``m``, or, where the terms of ``f`` cancel (a point in a gap between islands of
        outliers, where ``m ≈ 0``), to their size, which sets the rounding of the sum (``_ds_residual``).
      iterations: number of solver iterations (continuation steps included).
      converged: whether every grid point reached ``residual ≤ tol`` at the final η.
    """

    density: Float[Array, " g"]
    m: Complex[Array, " g"]
    residual: Float[Array, " g"]
    iterations: Int[Array, ""]
    converged: Bool[Array, ""]


def _by_blocks(fn: Callable[..., tuple[jax.Array, ...]], *parts: jax.Array) -> tuple[jax.Array, ...]:
    """``fn`` of grid-shaped ``parts`` (length g), evaluated on blocks of ``_DS_BLOCK`` points when g exceeds
    ``_DS_ONE_PASS`` (g a multiple of the block: :func:`_ds_core` pads), else in one pass; outputs of shape
    ``(g, …)``. The ``block × k`` terms of a block stay in cache between the division and the contractions:
    on XLA:CPU at 32,768 × 641 the DS map takes 0.14 s in blocks against 0.23 s in one pass (the same numbers: only
    the order of the work changes); on a smaller grid the loop over blocks would cost more than it saves."""
    g = parts[0].shape[0]
    if g <= _DS_ONE_PASS:
        return fn(*parts)
    outs = jax.lax.map(lambda ps: fn(*ps), tuple(x.reshape(g // _DS_BLOCK, _DS_BLOCK) for x in parts))
    return tuple(o.reshape(g, *o.shape[2:]) for o in outs)


def _ds_terms(
    m: Complex[Array, " g"], z: Complex[Array, " g"], t: Float[Array, " k"], c: Float[Array, ""], s2: Float[Array, ""]
) -> tuple[Complex[Array, " g"], tuple[jax.Array, ...], Callable[..., tuple[jax.Array, jax.Array]]]:
    """``a = 1 + s²cm``, the grid-shaped parts of ``D_k = t_k/a − a z + s²(1 − c)`` and a function of one block
    of them returning ``(Re 1/D_k, Im 1/D_k)``, block × k.

    1/D_k in real arithmetic, ``(p − iq)/(p² + q²)``: XLA:CPU's complex division guards against overflow with
    branches and costs several times more; D_k is of order 1 here (the law is solved in units of s)."""
    a = 1.0 + s2 * c * m
    inv_a = 1.0 / a
    shift = s2 * (1.0 - c) - a * z

    def inverse(ar: jax.Array, ai: jax.Array, sr: jax.Array, si: jax.Array) -> tuple[jax.Array, jax.Array]:
        p = t[None, :] * ar[:, None] + sr[:, None]
        q = t[None, :] * ai[:, None] + si[:, None]
        h = 1.0 / (p * p + q * q)
        return p * h, -q * h

    return a, (inv_a.real, inv_a.imag, shift.real, shift.imag), inverse


def _ds_map(
    m: Complex[Array, " g"],
    z: Complex[Array, " g"],
    t: Float[Array, " k"],
    w: Float[Array, " k"],
    c: Float[Array, ""],
    s2: Float[Array, ""],
) -> tuple[Complex[Array, " g"], Complex[Array, " g"]]:
    """``f(m) = Σ_k w_k / D_k`` with ``D_k = t_k/a − a z + s²(1 − c)``, ``a = 1 + s²cm``, and ``f'(m)``.

    ``dD_k/dm = −s²c (t_k/a² + z)``, and ``t_k/a² + z = D_k/a + 2z − s²(1 − c)/a``, so
    ``f'(m) = s²c (f/a + (2z − s²(1 − c)/a) Σ_k w_k/D_k²)``: one complex division per (grid point, signal value)
    and two complex contractions with the weights (:func:`_by_blocks`). (Written with ``Σ w_k t_k/D_k²`` it takes
    three, and the DS solves of the 20 default specs took 16% longer; the derivative only steers Newton's step, and
    the converged ``m`` is checked against ``f`` itself.)
    """
    a, parts, inverse = _ds_terms(m, z, t, c, s2)

    def block(*ps: jax.Array) -> tuple[jax.Array, ...]:
        re, im = inverse(*ps)
        return re @ w, im @ w, (re * re - im * im) @ w, (2.0 * re * im) @ w  # Σ_k w_k/D_k, Σ_k w_k/D_k²

    f_re, f_im, sq_re, sq_im = _by_blocks(block, *parts)
    f = f_re + 1j * f_im
    return f, s2 * c * (f / a + (2.0 * z - s2 * (1.0 - c) / a) * (sq_re + 1j * sq_im))


def _ds_term_size(
    m: Complex[Array, " g"],
    z: Complex[Array, " g"],
    t: Float[Array, " k"],
    w: Float[Array, " k"],
    c: Float[Array, ""],
    s2: Float[Array, ""],
) -> Float[Array, " g"]:
    """The size of the terms of ``f(m)``, ``Σ_k w_k (|Re 1/D_k| + |Im 1/D_k|)`` (within √2 of ``Σ_k w_k/|D_k|``,
    and ``≥ |f(m)|``): the scale of the sum's rounding error, where its terms cancel and ``m ≈ 0``."""
    _, parts, inverse = _ds_terms(m, z, t, c, s2)

    def block(*ps: jax.Array) -> tuple[jax.Array]:
        re, im = inverse(*ps)
        return ((jnp.abs(re) + jnp.abs(im)) @ w,)

    return _by_blocks(block, *parts)[0]


def _ds_residual(m: Complex[Array, " g"], f: Complex[Array, " g"], size: Float[Array, " g"]) -> Float[Array, " g"]:
    """``|m − f(m)| / max(|m|, size)``: relative to ``m``, or to the size of the terms of ``f`` where they cancel
    (a point in a gap between islands of outliers, ``m ≈ 0``), where ``|m − f|/|m|`` stalls at the rounding of the
    sum (131,072×640 Gaussian at int6-row: above 1e-10 for 200 iterations, the density there exact to 1e-15)."""
    return jnp.abs(m - f) / jnp.maximum(jnp.abs(m), size)


@jax.jit
def _ds_solve(
    x: Float[Array, " g"],
    t: Float[Array, " k"],
    w: Float[Array, " k"],
    c: Float[Array, ""],
    s2: Float[Array, ""],
    eta: Float[Array, ""],
    damping: Float[Array, ""],
    tol: Float[Array, ""],
    max_iter: Int[Array, ""],
) -> tuple[Complex[Array, " g"], Float[Array, " g"], Int[Array, ""], Bool[Array, ""]]:
    """Newton iteration with η-continuation for the DS fixed point, vectorised over the grid ``x``.

    η starts at the support scale ``(√t_max + s(1+√c))²`` (where the map is a strong contraction and
    ``m = −1/z`` is a good start) and halves every iteration down to ``eta``; each iteration takes one Newton
    step on ``F(m) = m − f(m)`` from the previous solution, so every grid point follows the physical branch
    (``Im m > 0``) continuously. A Newton step that leaves the upper half-plane or is not finite is replaced
    by the damped fixed-point step ``m + damping·(f(m) − m)``. The loop stops when every point's residual
    (:func:`_ds_residual`) is within ``tol`` at the final η; the size of the terms is computed only where
    ``|m − f|/|m|`` alone does not pass (one more pass over the grid, rarely).
    """
    eta0 = jnp.maximum((jnp.sqrt(jnp.max(t)) + jnp.sqrt(s2) * (1 + jnp.sqrt(c))) ** 2, eta)

    def eta_at(it: jax.Array) -> jax.Array:
        return jnp.maximum(eta, eta0 * _ETA_DECAY ** (it + 1).astype(x.dtype))

    def body(state: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
        it, m, _ = state
        e = eta_at(it)
        z = x + 1j * e
        f, fp = _ds_map(m, z, t, w, c, s2)
        newton = m - (m - f) / (1.0 - fp)
        ok = jnp.isfinite(newton) & (newton.imag > 0)
        m_next = jnp.where(ok, newton, m + damping * (f - m))
        plain = jnp.all(jnp.abs(m - f) <= tol * jnp.abs(m))
        done = (e <= eta) & jax.lax.cond(
            (e <= eta) & ~plain,
            lambda: jnp.all(_ds_residual(m, f, _ds_term_size(m, z, t, w, c, s2)) <= tol),
            lambda: plain,
        )
        return it + 1, jnp.where(done, m, m_next), done  # once converged, keep the m that was checked

    def cond(state: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
        it, _, done = state
        return (it < max_iter) & ~done

    m0 = -1.0 / (x + 1j * eta0)
    it, m, _ = jax.lax.while_loop(cond, body, (jnp.asarray(0), m0, jnp.asarray(False)))
    z = x + 1j * eta
    f, _ = _ds_map(m, z, t, w, c, s2)
    res = _ds_residual(m, f, _ds_term_size(m, z, t, w, c, s2))
    converged = (eta_at(it - 1) <= eta) & jnp.all(res <= tol)
    return m, res, it, converged


def _padded_size(g: int) -> int:
    """The grid size a DS solve of ``g`` points runs at: above ``_DS_BLOCK`` points, the next of the sizes
    ``_DS_BLOCK·⌈2^(k/4)⌉`` — whole blocks of the map, and a compiled solver serves every grid within 19% below
    its size (every spec of an analysis asks for a different grid; each new size compiled in about a second)."""
    if g <= _DS_BLOCK:
        return g
    k = math.ceil(4 * math.log2(g / _DS_BLOCK) - 1e-9)
    return _DS_BLOCK * math.ceil(2 ** (k / 4) - 1e-9)


def _ds_core(
    x: np.ndarray,
    t: np.ndarray,
    c: float,
    s2: float,
    eta: float | None,
    damping: float,
    max_iter: int,
    tol: float,
    caller: str,
) -> DSResult:
    """Reduces to ``c ≤ 1`` (no atom) and solves; ``t`` are the n signal eigenvalues, ``c = n/N``.

    For c > 1 the roles of n and N swap: ``C' = (1/n) Y*Y`` (N×N) has ratio ``1/c``, signal eigenvalues
    ``t_k/c`` (each of weight ``1/N = c/n``, the other ``N − r`` zero) and the nonzero eigenvalues of C are
    ``c`` times those of C'; hence ``m_C(z) = m_{C'}(z/c)/c² − (1 − 1/c)/z`` and ``ρ_C(x) = ρ_{C'}(x/c)/c²``.
    Zero signal eigenvalues are merged into one atom of H in either case.
    """
    n = t.size
    nonzero = t[t > 0]
    r = nonzero.size
    eta = _ETA_REL * s2 * (1 + math.sqrt(c)) ** 2 if eta is None else eta
    if c <= 1:
        tt, ww, cc, xx, ee, rescale = nonzero, np.full(r, 1.0 / n), c, x, eta, 1.0
    else:
        big_n = n / c
        tt, ww, cc, xx, ee, rescale = nonzero / c, np.full(r, 1.0 / big_n), 1.0 / c, x / c, eta / c, c
    tt = np.append(tt, 0.0)
    ww = np.append(ww, max(0.0, 1.0 - ww.sum()))
    g = xx.size
    xx = np.pad(xx, (0, _padded_size(g) - g), mode="edge")  # copies of the last point, dropped after the solve
    with jax.enable_x64(True):
        m, res, it, conv = _ds_solve(
            jax.device_put(xx),
            jax.device_put(tt),
            jax.device_put(ww),
            jnp.float64(cc),
            jnp.float64(s2),
            jnp.float64(ee),
            jnp.float64(damping),
            jnp.float64(tol),
            jnp.asarray(max_iter),
        )
    # The grid's own length from here on, in NumPy: a JAX op at a new length compiles (see _out)
    m, res = np.asarray(m)[:g], np.asarray(res)[:g]
    density = np.maximum(m.imag, 0.0) / (np.pi * rescale**2)
    if c > 1:
        m = m / c**2 - (1.0 - 1.0 / c) / (np.asarray(x, np.float64) + 1j * eta)
    result = DSResult(density, m, res, np.asarray(it), np.asarray(conv))
    if not bool(conv):
        worst = int(np.argmax(res))
        warnings.warn(
            f"{caller}: the Dozier–Silverstein fixed point did not converge in {int(it)} iterations "
            f"(max_iter={max_iter}): max relative residual {res[worst]:.3g} > tol={tol:g}, at "
            f"x = {x[worst]:.6g}; the density there is unreliable. Raise max_iter (or eta).",
            ConvergenceWarning,
            stacklevel=3,
        )
    return _out(result)


def dozier_silverstein_density(
    x_grid: Float[Array, " g"],
    signal_eigs: Float[Array, " n"],
    c: float,
    noise_var: float,
    *,
    eta: float | None = None,
    damping: float = 0.5,
    max_iter: int = 200,
    tol: float = 1e-10,
) -> DSResult:
    """Limiting eigenvalue density of ``C = (1/N)(R + σX)(R + σX)*`` (Dozier & Silverstein 2007).

    R is n×N, X is n×N with i.i.d. standardised entries, ``c = n/N``, ``σ² = noise_var``, and H is the
    spectral distribution of ``(1/N) R R*``, given here as its n eigenvalues ``signal_eigs`` (equal weights).
    The Stieltjes transform ``m(z) = ∫ dF(λ)/(λ − z)`` of the limit of the ESD of C solves

        m = ∫ dH(t) / [ t/(1 + σ²cm) − (1 + σ²cm) z + σ²(1 − c) ],

    and the density is ``Im m(x + i0)/π``. It is evaluated at ``z = x + iη`` (a Poisson smoothing of width
    η, negligible for the default below), solved for every grid point at once by Newton steps along a
    continuation from the support scale ``(√t_max + σ(1+√c))²`` down to ``eta``, always on the branch
    ``Im m > 0``. For c > 1 the law has an atom of mass ``1 − 1/c`` at 0: the problem is solved in the swapped
    (N×N, ratio 1/c) form, ``density`` is the continuous part (mass 1/c) and ``m`` includes the atom.

    Args:
      x_grid: points at which to evaluate the density (1-D).
      signal_eigs: the n eigenvalues of ``(1/N) R R*`` (≥ 0, any order); at most ``N = n/c`` are nonzero.
      c: ``n/N`` > 0.
      noise_var: ``σ² > 0``.
      eta: imaginary part of z (same units as x); default ``10⁻⁶ σ²(1 + √c)²``, a millionth of the noise
        bulk's scale (the finest structure: the bulk and the O(σ)-wide islands of outliers).
      damping: step of the fallback fixed-point iteration, in (0, 1].
      max_iter: iteration cap (the continuation takes about log2(scale/η), 20–50, of them).
      tol: relative residual required at every grid point (``DSResult.residual``).
    Returns:
      A :class:`DSResult`. If the tolerance is not met a :class:`ConvergenceWarning` names the max residual.
    """
    x = _check_grid(x_grid)
    t = _as_array(signal_eigs, "signal_eigs", ndim=1)
    _check_nonnegative(t, "signal_eigs", "eigenvalues")
    c = check_number(c, "c", lo=0.0, lo_open=True)
    s2 = _check_var(noise_var, "noise_var", positive=True)
    eta, damping, max_iter, tol = _check_solver(eta, damping, max_iter, tol)
    n, r = t.size, int((t > 0).sum())
    if r * c > n * (1 + 1e-9):
        raise ValueError(
            f"c: expected c ≤ n / rank = {n}/{r} = {n / r:g} (an n×N signal with N = n/c has rank at most "
            f"N), got c = {c:g}, i.e. N = {n / c:g} < {r} nonzero signal_eigs"
        )
    return _ds_core(x, t, c, s2, eta, damping, max_iter, tol, "dozier_silverstein_density")


def limiting_spectrum(
    signal_sigma: Float[Array, " k"],
    V: int,
    d: int,
    noise_var: float,
    x_grid: Float[Array, " g"],
    *,
    eta: float | None = None,
    damping: float = 0.5,
    max_iter: int = 200,
    tol: float = 1e-10,
) -> DSResult:
    """Limiting density of ``x = λ/V``, λ = σ² the d eigenvalues of ``WᵀW``, for ``W = S + E`` (V×d).

    ``S`` has singular values ``signal_sigma`` (missing ones are 0), ``E`` i.i.d. entries of variance
    ``s² = noise_var``. Mapping to :func:`dozier_silverstein_density`: ``Y = Wᵀ`` is n×N with ``n = d``,
    ``N = V``, ``c = d/V``; ``C = (1/V) WᵀW``; ``R = Sᵀ``, so H is the law of the d values ``σ_k²/V``;
    and ``σ = s``. With zero signal this is :func:`mp_density`. For d > V the law also has an atom of mass
    ``1 − V/d`` at 0, which ``density`` excludes. Convert with ``ρ_λ(λ) = ρ(λ/V)/V`` or
    ``ρ_σ(σ) = ρ(σ²/V)·2σ/V``. Solver arguments as in :func:`dozier_silverstein_density`.
    """
    V, d = _check_shape(V, d)
    s2 = _check_var(noise_var, "noise_var", positive=True)
    s = _check_spectrum(signal_sigma, "signal_sigma", V, d)
    x = _check_grid(x_grid)
    eta, damping, max_iter, tol = _check_solver(eta, damping, max_iter, tol)
    t = np.zeros(d)
    t[: s.size] = s**2 / V
    return _ds_core(x, t, d / V, s2, eta, damping, max_iter, tol, "limiting_spectrum")


# ---------------------------------------------------------------------------------------------------------
# Predicted spectrum of a quantized matrix
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class QuantizedPrediction:
    """What the full-precision spectrum predicts for ``Q(W) = g·W + noise`` (noise entries of variance s²).

    Attributes:
      sigma: the predicted singular values of the quantized matrix, descending, ``min(V, d)`` of them.
      noise_floor: bulk edge ``s(√V + √d)``.
      threshold: detection threshold ``θ_c = s(Vd)^(1/4)``, in signal units (of ``g·σ``).
      truncation_index: ``k* = #{k : g·σ_k > θ_c}``, the signal values that survive as outliers; on the DS bulk,
        counted as it is measured, ``#{k : σ̃_k > s(√V + √d)}`` on the predicted spectrum (a signal near the
        threshold widens the bulk, which the count by ``θ_c`` misses: on the dead-zone points of the verification
        grid the Bussgang model's k*, counted so and compared with the count above its own floor, misses by a
        median 12%; by ``θ_c`` on the MP bulk, against the additive model's floor, it missed by 74%).
      sigma1: ``σ̃_1``, the spiked map of ``g·σ_1`` (the bulk edge when below threshold); on the DS bulk, the larger
        of that and the top of the predicted spectrum (a dense W, whose σ_1 is its own bulk's edge, is no spike:
        512×256 Gaussian at int3-tensor-stochastic, stable rank 15% off with the map, 1.3% with DS).
      stable_rank: ``(g²Σσ_i² + V d s²) / σ̃_1²``, the expected energy over the predicted σ̃_1²
        (0 if σ̃_1 = 0).
      effective_rank: effective rank of ``sigma``.
      decay: rank-decay fit of ``sigma`` (window reported in it).
      stable_rank_full, effective_rank_full, decay_full: the same measures of the full-precision ``σ``.
      noise_var: s²; gain: g (1 for the additive model); model: "additive" or "bussgang".
      bulk: how the bulk of ``sigma`` was predicted, "mp" or "dozier-silverstein".
      reason: why some measure is undefined (all-zero prediction), else None.
    """

    sigma: Float[Array, " r"]
    noise_floor: float
    threshold: float
    truncation_index: int
    sigma1: float
    stable_rank: float
    effective_rank: float
    decay: RankDecayFit
    stable_rank_full: float
    effective_rank_full: float
    decay_full: RankDecayFit
    noise_var: float
    gain: float
    model: str
    bulk: str
    reason: str | None = None


def _isolated_run(images: np.ndarray, V: int, d: int, s: float) -> int:
    """How many of the descending spiked-map ``images`` lead as *isolated* outliers: each at or above 1.5× the
    noise floor ``s(√V + √d)`` plus ``_ISLAND``·s, and more than 2·``_ISLAND``·s above the next image (0: nothing
    below but the bulk). The count stops at the first image that is not isolated."""
    floor_cut = 1.5 * s * (math.sqrt(V) + math.sqrt(d))
    below = np.append(images[1:], 0.0)
    isolated = (images >= floor_cut + _ISLAND * s) & (images - below > 2 * _ISLAND * s)
    return images.size if isolated.all() else int(np.argmin(isolated))


def _ds_quantile_sigma(signal: np.ndarray, spikes: np.ndarray, V: int, d: int, s2: float, caller: str) -> np.ndarray:
    """Descending ``r = min(V, d)`` singular values at the quantiles ``(i − ½)/r`` of the DS law.

    Outliers far from the bulk form islands only O(s) wide in σ, which a uniform grid over their whole range
    cannot resolve. So the spiked-map images ``spikes`` are walked from the top: the ``j`` leading ones that are
    *isolated* — at or above 1.5× the noise floor and more than 2·``_ISLAND``·s above the next image — keep
    their spiked-map values (BGN is accurate for an isolated spike). The walk stops at the first image that is
    not isolated: from there down the images form a continuous band with the bulk, where they do not map one by
    one (the spiked map is a theorem for finitely many spikes, not for a dense signal). A cut ``U`` is placed
    ``_ISLAND``·s above that image, and the other ``r − j`` ranks take the quantiles of the DS law on a uniform
    grid of ``[L, U]``, normalised over that range. ``L = max(0, σ_r − s(√V + √d) − _ISLAND·s)`` (Weyl:
    ``σ_r(S + E) ≥ σ_r(S) − ‖E‖``, so no mass lies below it); the spacing is s/4, or that of
    ``_DS_QUANTILE_GRID_MAX`` points over ``[0, U]`` if coarser, with at least ``_DS_QUANTILE_GRID`` points.
    """
    r = min(V, d)
    # The law is homogeneous — σ(cS, c²s²) = c·σ(S, s²) — so it is solved in units of s (s = 1) and scaled back:
    # the density (of order 1/s² in x) is returned in float32 and would over- or underflow at extreme scales.
    unit = math.sqrt(s2)
    signal, spikes, s2 = signal / unit, spikes / unit, 1.0
    s = 1.0
    floor_cut = 1.5 * s * (math.sqrt(V) + math.sqrt(d))
    images = np.sort(spikes)[::-1]
    j = _isolated_run(images, V, d, s)
    top = images[:j]
    if j >= r:  # every rank is an isolated spike: nothing is left for the law (the solve would be discarded)
        return unit * top[:r]
    cut = floor_cut if j == images.size else max(floor_cut, images[j] + _ISLAND * s)
    # Weyl: σ_r(S + E) ≥ σ_r(S) − ‖E‖, ‖E‖ → s(√V + √d), so the law has no mass below `low`; the grid starts there
    # (with _ISLAND·s to spare) and keeps the spacing a grid from 0 would have: a tall W well above the noise
    # (a Gaussian at 8 bits: its values within ±√d of √V) needs a few thousand points, not 32,768
    low = max(0.0, float(np.min(signal[:r])) - s * (math.sqrt(V) + math.sqrt(d)) - _ISLAND * s)
    width = cut - low
    n_grid = int(min(max(_DS_QUANTILE_GRID, math.ceil(4 * width / s)),
                     math.ceil(_DS_QUANTILE_GRID_MAX * width / cut)))
    du = width / math.sqrt(V) / n_grid
    u = low / math.sqrt(V) + (np.arange(n_grid) + 0.5) * du  # midpoints in √x = σ/√V
    t = np.zeros(d)
    t[:r] = signal**2 / V
    res = _ds_core(u**2, t, d / V, s2, None, 0.5, 200, 1e-10, caller)
    mass = np.asarray(res.density, np.float64) * 2 * u * du  # ρ(x) dx with x = u²
    rest = math.sqrt(V) * _grid_quantiles(mass, du, r - top.size, low / math.sqrt(V))
    return unit * np.concatenate([top, rest])


def _grid_quantiles(mass: np.ndarray, du: float, n: int, start: float = 0.0) -> np.ndarray:
    """Descending values at the levels ``1 − (i − ½)/n`` of a law given by its ``mass`` on the cells of width
    ``du`` from ``start`` (normalised over them), linear within a cell."""
    cdf = np.concatenate([[0.0], np.cumsum(mass)])
    cdf /= cdf[-1]
    levels = 1.0 - (np.arange(1, n + 1) - 0.5) / n
    return np.interp(levels, cdf, start + np.arange(mass.size + 1) * du)


def _predict(
    sigma: np.ndarray,
    V: int,
    d: int,
    s2: float,
    gain: float,
    model: str,
    bulk: str,
    rank_window: tuple[int, int | None] | None,
    caller: str,
) -> QuantizedPrediction:
    r = min(V, d)
    full = np.zeros(r)
    full[: sigma.size] = sigma
    sig = gain * full
    thr = _threshold(V, d, s2)
    floor = math.sqrt(s2) * (math.sqrt(V) + math.sqrt(d))
    k_star = int((sig > thr).sum())
    with jax.enable_x64(True):
        mapped = np.asarray(_spiked_map(jnp.asarray(sig), float(V), float(d), jnp.float64(s2)))
    sigma1 = float(mapped[0])
    energy = float(np.sum(sig**2)) + V * d * s2
    if s2 == 0:
        pred = sig.copy()
    elif bulk == "mp":
        tail = _mp_typical(V, d, s2)[k_star:]
        target = energy - float(np.sum(mapped[:k_star] ** 2))
        tail_energy = float(np.sum(tail**2))
        if target > 0 and tail_energy > 0:
            tail = tail * math.sqrt(target / tail_energy)
        pred = np.concatenate([mapped[:k_star], tail])
    else:
        pred = _ds_quantile_sigma(sig, mapped[:k_star], V, d, s2, caller)
    pred = np.sort(pred)[::-1]
    if bulk != "mp" and s2 > 0:
        # σ_1 is the top of the predicted spectrum: where σ_1(W) is the edge of W's own bulk (a dense, Gaussian-like
        # W) the spiked map, a theorem for finite rank, puts it below the edge of the free sum, which DS finds
        sigma1 = max(sigma1, float(pred[0]))
        k_star = int(np.sum(pred > floor))  # as measured (count_above_floor): the law's bulk, not θ_c's count
    return _assemble(pred, full, V, d, s2, gain, sigma1, k_star, model, bulk, rank_window)


def _assemble(pred: np.ndarray, full: np.ndarray, V: int, d: int, s2: float, gain: float, sigma1: float, k_star: int,
              model: str, bulk: str, rank_window: tuple[int, int | None] | None) -> QuantizedPrediction:
    """A :class:`QuantizedPrediction` from the predicted spectrum ``pred`` (descending), W's ``full`` spectrum
    (``min(V, d)`` values), the noise variance, gain, ``σ̃_1`` and ``k*``: the floor, threshold, expected energy
    ``g²Σσ² + V d s²`` and the rank measures of both spectra."""
    k_lo, k_hi = rank_window if rank_window is not None else (1, None)
    energy = gain * gain * float(np.sum(full**2)) + V * d * s2
    with jax.enable_x64(True):
        eff, eff_full = float(effective_rank(pred)), float(effective_rank(full))
    return QuantizedPrediction(
        sigma=jnp.asarray(pred),  # default precision: float32 unless x64 is on globally
        noise_floor=math.sqrt(s2) * (math.sqrt(V) + math.sqrt(d)),
        threshold=_threshold(V, d, s2),
        truncation_index=k_star,
        sigma1=sigma1,
        stable_rank=energy / sigma1**2 if sigma1 > 0 else 0.0,
        effective_rank=eff,
        decay=rank_decay_exponent(pred, k_lo, k_hi),
        stable_rank_full=float(np.sum(full**2) / full[0] ** 2) if full[0] > 0 else 0.0,
        effective_rank_full=eff_full,
        decay_full=rank_decay_exponent(full, k_lo, k_hi),
        noise_var=s2,
        gain=gain,
        model=model,
        bulk=bulk,
        reason=None if pred[0] > 0 else "the predicted spectrum is all zero (no signal and no noise)",
    )


def _check_window(rank_window: Any, r: int) -> tuple[int, int | None] | None:
    if rank_window is None:
        return None
    if not isinstance(rank_window, tuple) or len(rank_window) != 2:
        raise TypeError(f"rank_window: expected a tuple (k_lo, k_hi) or None, got {describe(rank_window)}")
    k_lo = check_int(rank_window[0], "rank_window[0]", lo=1, hi=r)
    k_hi = None if rank_window[1] is None else check_int(rank_window[1], "rank_window[1]", lo=k_lo, hi=r)
    return k_lo, k_hi


def predict_quantized(
    sigma: Float[Array, " k"],
    V: int,
    d: int,
    noise_var: float,
    *,
    bulk: str = "mp",
    rank_window: tuple[int, int | None] | None = None,
) -> QuantizedPrediction:
    """Predicts the spectrum of ``Q(W) = W + E`` from the full-precision spectrum ``sigma`` of W alone.

    Additive (Widrow) noise model: E has i.i.d. entries of variance ``s² = noise_var`` (``mean(Δ²)/12`` for a
    uniform quantizer of step Δ), independent of W. It holds when Δ is small against the spread of the entries
    of its scale group (the ``widrow`` regime of :mod:`zipfrmt.quant`); when most entries round to zero (the
    ``dead-zone`` regime) use :func:`predict_quantized_bussgang`.

    Predicted (BGN 2012; Marchenko & Pastur 1967; Dozier & Silverstein 2007):

    * noise floor ``s(√V + √d)`` and detection threshold ``θ_c = s(Vd)^(1/4)``;
    * truncation index ``k* = #{k : σ_k > θ_c}`` (on the DS bulk: the predicted values above the noise floor)
      and ``σ̃_1 = √((σ_1² + s²V)(σ_1² + s²d))/σ_1``;
    * stable rank ``(Σσ_i² + V d s²)/σ̃_1²`` — exact expected energy over the predicted top value;
    * a full predicted spectrum, whose effective rank and rank-decay exponent are reported.

    ``bulk="mp"`` (default): the spiked map for the k* surviving values and, for ranks ``k*+1..min(V, d)``,
    the typical MP noise singular values at those ranks (:func:`mp_typical_singular_values`) rescaled by one
    common factor so that the total energy is the exact expectation ``Σσ_i² + V d s²``. The approximation: the
    sub-threshold signal only adds energy to the bulk without changing its shape, and the spikes are mapped
    independently (exact for finitely many spikes). If the spikes alone already exceed the total energy (k*
    close to min(V, d), where this fails) the bulk is left unscaled. ``bulk="dozier-silverstein"`` takes the
    values from the quantiles ``(i − ½)/r`` of the DS limiting law instead (:func:`limiting_spectrum` on a
    grid of 4096 or more points), except the isolated outliers far above the bulk (beyond 1.5× the noise floor,
    each more than 12s above the next), whose islands are too narrow for the grid and which keep their
    spiked-map values. Spiked-map images that crowd into a continuous band (a dense signal: every σ_k above
    θ_c, say) are not mapped one by one — the spiked map is exact only for finitely many spikes — but read off
    the DS law with the bulk. It accounts for the interaction of signal and noise: slower, more accurate when
    much of the signal sits near the threshold or forms a continuum above it.

    Args:
      sigma: singular values of the full-precision W, descending, at most ``min(V, d)`` (missing ones are 0).
      V, d: the shape of W (rows = tokens).
      noise_var: ``s² ≥ 0`` (0: no noise, the spectrum is unchanged).
      bulk: "mp" or "dozier-silverstein".
      rank_window: ``(k_lo, k_hi)`` for both rank-decay fits; default every nonzero value.
    Returns:
      A :class:`QuantizedPrediction`. An all-zero prediction gives stable and effective rank 0, NaN exponents
      and a ``reason``, not an error.
    """
    V, d = _check_shape(V, d)
    s2 = _check_var(noise_var, "noise_var", positive=False)
    s = _check_spectrum(sigma, "sigma", V, d)
    bulk = check_choice(bulk, "bulk", ("mp", "dozier-silverstein"))
    window = _check_window(rank_window, min(V, d))
    return _predict(s, V, d, s2, 1.0, "additive", bulk, window, "predict_quantized")


def predict_quantized_bussgang(
    sigma: Float[Array, " k"],
    V: int,
    d: int,
    gain: float,
    residual_var: float,
    *,
    bulk: str = "mp",
    rank_window: tuple[int, int | None] | None = None,
) -> QuantizedPrediction:
    """Dead-zone-aware prediction with the Bussgang decomposition ``Q(W) = g·W + D``, D uncorrelated with W.

    ``g = ⟨W, Q⟩/⟨W, W⟩`` is the Bussgang gain and ``residual_var`` the per-entry variance of
    ``D = Q(W) − g·W``, both measured (or modelled) on the quantized matrix. The prediction is that of
    :func:`predict_quantized` for the signal ``g·σ`` and noise variance ``residual_var``, treating D as i.i.d.
    noise (it is uncorrelated with W but not independent of it; this is the approximation).

    Where each model applies: the additive (Widrow) model, ``g = 1`` and noise variance ``Δ²/12``, holds when
    the step Δ is small against the spread of the entries of its scale group; when Δ is large and most entries
    round to zero (the ``dead-zone`` regime: 2–3 bits on heavy-tailed rows) the error is correlated with W,
    the additive model fails badly, and the shrinkage ``g < 1`` with the residual D is the right description.
    ``g = 0`` with ``residual_var = 0`` (everything rounds to 0) predicts the zero matrix.
    """
    V, d = _check_shape(V, d)
    g = check_number(gain, "gain", lo=0.0)
    s2 = _check_var(residual_var, "residual_var", positive=False)
    s = _check_spectrum(sigma, "sigma", V, d)
    bulk = check_choice(bulk, "bulk", ("mp", "dozier-silverstein"))
    window = _check_window(rank_window, min(V, d))
    return _predict(s, V, d, s2, g, "bussgang", bulk, window, "predict_quantized_bussgang")


#: How :func:`predict_from_result` models the quantized matrix (:func:`predict_with_profile` adds
#: ``"additive-profile"``).
MODELS = ("auto", "additive", "additive-measured", "bussgang")
#: Bulk laws of the result-aware predictions (:func:`predict_from_result`, :func:`predict_from_sketch`).
BULKS = ("auto", "mp", "dozier-silverstein")


def choose_bulk(bulk: str, regime: str, sigma: Float[Array, " k"], V: int, d: int, noise_var: float,
                gain: float = 1.0) -> str:
    """The bulk law of a prediction: ``bulk`` itself, or for ``bulk="auto"`` the Dozier–Silverstein law where
    the spiked map is not enough — in the ``dead-zone`` regime, where the image of ``g·σ_1`` under the spiked
    map is not an isolated outlier, or where its count ``#{g·σ_k > θ_c}`` is not settled (a surviving image
    below 1.5× the noise floor, or a value below ``θ_c`` above ``θ_c/2``: a dense tail cut near ``θ_c``) — and
    Marchenko–Pastur elsewhere.

    Why: where the top image is an isolated outlier (at or above 1.5× the noise floor, more than 12s above the next
    image) the two laws give the same ``σ̃_1`` and stable rank, and where, besides, every surviving image stands
    clear of the floor and nothing sits just below ``θ_c``, MP's count is exact, at a fraction of the cost. Where
    quantization cuts a power law's tail, the values near ``θ_c`` crowd into a band with the bulk and do not map one
    by one: on ``σ_k = k^(−1)``, 4096×256, at 3–6 bits with tensor, row and group32 scales (the 7 Widrow settings of
    ``fig_noise_floor`` that cut the tail) MP's count misses the measured by a median 30%, the DS law's by 1.3%
    (worst 14%). In the dead zone the signal pushed near the bulk by the gain ``g < 1`` widens it, which only the DS
    law sees (on 25 dead-zone points of 2048×256 power laws, a = 0.3, 0.5, 1 at 2–4 bits, the sketch model's median
    k* error falls from 56% with MP to 9.6% with DS). And where ``σ_1(W)`` is the edge of W's own bulk — a dense,
    Gaussian-like weight, or a slow power law — its image crowds into a band with the next ones, the spiked map (a
    theorem for finite rank) puts ``σ̃_1`` below the top of the free sum, and only DS finds it (Gaussian 512×256,
    1024×512, 4096×256 at int3-tensor: stable rank 6–11% off with MP, 10–17% with stochastic rounding, 19–30% at
    int2-row; under 3.2% with DS). A prediction on the DS law takes about 0.05 s at 4096×256 and 0.1 s at 65,536×640
    on 2 CPU cores (0.4 and 0.45 s for a dense W far above the noise, at 8 bits); on MP, milliseconds.

    Args:
      bulk: "auto", "mp" or "dozier-silverstein".
      regime: the result's regime, "widrow" or "dead-zone".
      sigma: W's singular values, descending; V, d: its shape.
      noise_var: the noise variance s² of the model (the residual's for the Bussgang model).
      gain: the model's gain g (1 for the additive model).
    """
    bulk = check_choice(bulk, "bulk", BULKS)
    regime = check_choice(regime, "regime", ("widrow", "dead-zone"))
    if bulk != "auto":
        return bulk
    if regime == "dead-zone":
        return "dozier-silverstein"
    V, d = _check_shape(V, d)
    s2 = _check_var(noise_var, "noise_var", positive=False)
    g = check_number(gain, "gain", lo=0.0)
    if s2 == 0:
        return "mp"  # no noise: the spectrum is W's
    signal = g * _check_spectrum(sigma, "sigma", V, d)
    settled = _top_is_spike(signal, V, d, s2) and _count_is_settled(signal, V, d, s2)
    return "mp" if settled else "dozier-silverstein"


def _top_is_spike(signal: np.ndarray, V: int, d: int, s2: float) -> bool:
    """Whether the spiked-map image of the top ``signal`` value (descending, g·σ) is an isolated outlier
    (:func:`_isolated_run`); True without noise or signal (then the map is exact)."""
    top = signal[:2]
    if s2 == 0 or top.size == 0 or top[0] == 0:
        return True
    with jax.enable_x64(True):
        images = np.asarray(_spiked_map(jnp.asarray(top), float(V), float(d), jnp.float64(s2)))
    return _isolated_run(images / math.sqrt(s2), V, d, 1.0) >= 1


def _count_is_settled(signal: np.ndarray, V: int, d: int, s2: float) -> bool:
    """Whether the spiked map's count ``k* = #{g·σ_k > θ_c}`` is the count above the noise floor: every surviving
    image at or above 1.5× the floor ``s(√V + √d)`` (far from the bulk edge) and no value below ``θ_c`` above
    ``θ_c/2`` (none about to emerge). Where a dense tail is cut — values crowding both sides of ``θ_c``, as on a
    power law at 4–6 bits per tensor — the images near the edge do not map one by one and the DS law counts
    them (``σ_k = k^(−1)``, 4096×256, 6 bits per tensor: MP counts 236, DS 160, measured 161)."""
    if s2 == 0:
        return True
    thr = _threshold(V, d, s2)
    k = int(np.sum(signal > thr))
    if k < signal.size and signal[k] > thr / 2:
        return False
    if k == 0:
        return True
    with jax.enable_x64(True):
        last = float(_spiked_map(jnp.asarray(signal[k - 1 : k]), float(V), float(d), jnp.float64(s2))[0])
    return last >= 1.5 * math.sqrt(s2) * (math.sqrt(V) + math.sqrt(d))


def predict_from_result(
    sigma: Float[Array, " k"],
    V: int,
    d: int,
    result: Any,
    *,
    model: str = "auto",
    bulk: str = "auto",
    rank_window: tuple[int, int | None] | None = None,
) -> QuantizedPrediction:
    """The spectrum of a quantized matrix predicted from the full-precision spectrum and its noise statistics.

    The one place where a model is chosen for a quantization result, for every caller (``zipfrmt analyze``,
    the mitigation comparison, the training probes). ``result`` is a :class:`zipfrmt.quant.QuantResult` (any
    spec: integer or real format) or anything with its ``regime``, ``noise_var_model``,
    ``noise_var_measured``, ``bussgang_gain`` and ``residual_var``. Models:

    * ``"additive"`` — ``Q = W + E``, E i.i.d. with the format's *model* variance (Widrow's ``mean(Δ²)/12``,
      Bennett's for the real formats): :func:`predict_quantized`;
    * ``"additive-measured"`` — the same with the *measured* error variance (for an error confined to part of
      the matrix, e.g. SpecQuant's quantized residual);
    * ``"bussgang"`` — ``Q = g·W + D`` with the measured gain g and residual variance ``‖Q − gW‖_F²/(Vd)``:
      :func:`predict_quantized_bussgang`;
    * ``"auto"`` (default) — ``additive`` in the ``widrow`` regime (or when ``g ≤ 0``, where the Bussgang
      signal vanishes), ``bussgang`` in the ``dead-zone`` regime.

    The chosen model is recorded in the prediction's ``model`` field, the bulk law in ``bulk``. ``bulk`` as in
    :func:`predict_quantized`, or ``"auto"`` (default): Dozier–Silverstein in the dead zone, where W's top value
    is no isolated spike (a dense W) and where the tail is cut near ``θ_c``; Marchenko–Pastur elsewhere
    (:func:`choose_bulk`). Other arguments as in
    :func:`predict_quantized`.
    """
    model = check_choice(model, "model", MODELS)
    _check_result(result)
    if model == "auto":
        model = _auto_model(result)
    g, s2 = _model_noise(result, model)
    bulk = choose_bulk(bulk, result.regime, sigma, V, d, s2, g)
    if model == "bussgang":
        return predict_quantized_bussgang(sigma, V, d, g, s2, bulk=bulk, rank_window=rank_window)
    pred = predict_quantized(sigma, V, d, s2, bulk=bulk, rank_window=rank_window)
    return dataclasses.replace(pred, model=model)


def _check_result(result: Any) -> None:
    for name in ("regime", "noise_var_model", "noise_var_measured", "bussgang_gain", "residual_var"):
        if not hasattr(result, name):
            raise TypeError(f"result: expected a zipfrmt.quant.QuantResult (or an object with {name}), "
                            f"got {describe(result)}")


def _auto_model(result: Any) -> str:
    """``additive`` in the Widrow regime (or where ``g ≤ 0``: no Bussgang signal), ``bussgang`` in the dead zone."""
    return "additive" if result.regime == "widrow" or result.bussgang_gain <= 0 else "bussgang"


def _model_noise(result: Any, model: str) -> tuple[float, float]:
    """The gain g and noise variance s² that ``model`` reads off a result."""
    if model == "bussgang":
        return max(float(result.bussgang_gain), 0.0), float(result.residual_var)
    return 1.0, float(result.noise_var_model if model == "additive" else result.noise_var_measured)


def _entry_variances(result: Any, V: int, d: int) -> np.ndarray:
    """The additive model's variance of every entry, ``Δ_ij²/12`` (uniform grid, nearest rounding), in float64,
    from the result's steps in their layout: a scalar, ``(V, 1)``, ``(1, d)`` or ``(V, ⌈d/g⌉)`` (ragged last)."""
    step = np.asarray(result.scale, np.float64)
    if step.ndim == 0:
        step = step.reshape(1, 1)
    if step.shape[1] not in (1, d):  # groups along a row
        g = result.spec.group_size
        step = np.repeat(step, g, axis=1)[:, :d]
    return np.broadcast_to(step**2 / 12.0, (V, d))


def predict_with_profile(
    sigma: Float[Array, " k"],
    V: int,
    d: int,
    result: Any,
    u1: Float[Array, " V"],
    v1: Float[Array, " d"],
    *,
    bulk: str = "mp",
    rank_window: tuple[int, int | None] | None = None,
) -> QuantizedPrediction:
    """:func:`predict_from_result`'s additive prediction with the top singular value moved by the noise's
    *variance profile* along the top singular vectors, for noise aligned with the signal.

    With per-row, per-column or per-group steps the entries of ``E`` have variances ``s_ij² = Δ_ij²/12`` that
    differ, and when the large steps sit on the top singular vectors (an outlier dimension with its own column
    scale) the i.i.d. spiked map misses the shift of ``σ_1``. To first order in the noise,
    ``E‖Qv_1‖² = σ_1² + Σ_ij s_ij² v_1j²`` and ``E‖Qᵀu_1‖²`` likewise, so

        σ̃_1² = σ_1² + Σ_ij s_ij² (u_1i² + v_1j²) + s̄⁴ V d / σ_1²,

    which is the spiked map's ``σ_1² + s²(V + d) + s⁴Vd/σ_1²`` when every ``s_ij² = s̄²``; the last term keeps the
    map's second order with the mean variance ``s̄²``. The stable rank is the expected energy over it. ``u1``,
    ``v1``: W's top left and right singular vectors (unit norm). Uniform (``int``) nearest-rounding results in the
    ``widrow`` regime only; anything else returns :func:`predict_from_result` unchanged (``model`` says which).
    """
    V, d = _check_shape(V, d)
    base = predict_from_result(sigma, V, d, result, bulk=bulk, rank_window=rank_window)
    spec = getattr(result, "spec", None)  # a result-like object without a spec has no steps to profile
    if base.model != "additive" or spec is None or spec.format != "int" or spec.rounding != "nearest":
        return base
    u = _as_array(u1, "u1", ndim=1)
    v = _as_array(v1, "v1", ndim=1)
    if u.size != V or v.size != d:
        raise ValueError(f"u1, v1: expected W's top singular vectors of lengths V = {V} and d = {d}, got {u.size} "
                         f"and {v.size}")
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    var = _entry_variances(result, V, d)
    s1 = float(np.asarray(sigma, np.float64)[0])
    mean_var = float(var.mean())
    shift = float(u**2 @ var.sum(axis=1) + var.sum(axis=0) @ v**2)
    sigma1 = math.sqrt(s1 * s1 + shift + (mean_var**2 * V * d / (s1 * s1) if s1 > 0 else 0.0))
    energy = base.stable_rank * base.sigma1**2  # the expected energy of the additive prediction
    pred = np.asarray(base.sigma, np.float64).copy()
    pred[0] = max(sigma1, pred[1] if pred.size > 1 else 0.0)
    return dataclasses.replace(base, sigma=jnp.asarray(pred), sigma1=sigma1, stable_rank=energy / sigma1**2,
                               model="additive-profile")


def predict_from_sketch(
    sigma: Float[Array, " k"],
    V: int,
    d: int,
    result: Any,
    sketch: QuantSketch,
    *,
    bulk: str = "dozier-silverstein",
    rank_window: tuple[int, int | None] | None = None,
    base: QuantizedPrediction | None = None,
) -> QuantizedPrediction:
    """The spectrum of a quantized matrix from the full-precision spectrum, the noise statistics and a one-pass
    :class:`~zipfrmt.sketch.QuantSketch` of ``Q`` — the prediction that also holds in the dead zone.

    :func:`predict_from_result` (model by regime) sees the quantizer through one gain and one variance; in the
    dead zone that misses ``σ_1`` badly (a 2-bit per-tensor power law: predicted stable rank 130, measured 6.7),
    because the gain along the top singular direction is not the global one and the noise is neither i.i.d. nor
    dense. Here:

    * ``σ̃_1`` is :func:`zipfrmt.sketch.sketch_sigma1`: the spiked map read off ``Q`` along ``W``'s top pair,
      ``‖Qv_1‖·‖Qᵀu_1‖/|u_1ᵀQv_1|`` (= BGN's ``√((θ²+s²V)(θ²+s²d))/θ`` in the spiked model), kept in the
      rigorous bracket of Rayleigh quotients, row and column norms and the Schur bound (below the detection
      threshold: the larger of that lower bound and the bulk edge); where ``σ_1(W)`` is no isolated spike (a dense
      W, on the DS bulk) the top of ``σ(Q)`` is the edge of the free sum, not a spike's map, and ``σ̃_1`` is the
      larger of the sketch's value and the top of the DS law, under the Schur bound;
    * the stable rank is ``‖Q‖_F²/σ̃_1²`` with the exact energy ``‖Q‖_F²`` (a sum over the entries);
    * the rest of the spectrum is the model's (``bulk="dozier-silverstein"`` by default: the quantiles of the DS
      law of ``g·W`` plus the residual noise; ``"auto"``: DS in the dead zone and for a dense W, :func:`choose_bulk`;
      ``"mp"``: the fastest, whose σ_1 and stable rank are the same), and the truncation index is counted on it
      as it is measured —
      ``k* = #{k : σ̃_k > s(√V + √d)}`` (:func:`count_above_floor`) — rather than by the threshold ``θ_c``, which
      misses the values a dense signal near the threshold pushes out of, or keeps inside, the bulk.

    Returns a :class:`QuantizedPrediction` whose ``model`` is the base model's name with ``"+sketch"``.
    ``base``: :func:`predict_from_result` for the same arguments (``sigma``, ``result``, ``bulk`` and
    ``rank_window``), when the caller has it already (``zipfrmt analyze`` does: it saves a second
    Dozier–Silverstein solve); one with another model, gain, noise variance or bulk law is an error.
    Other arguments as in :func:`predict_from_result`.
    """
    if not isinstance(sketch, QuantSketch):
        raise TypeError(f"sketch: expected a zipfrmt.sketch.QuantSketch (zipfrmt.sketch.quant_sketch(Q, u1, v1)), "
                        f"got {describe(sketch)}")
    bulk = check_choice(bulk, "bulk", BULKS)
    if base is None:
        base = predict_from_result(sigma, V, d, result, bulk=bulk, rank_window=rank_window)
    else:
        _check_base(base, sigma, V, d, result, bulk)
    sigma1 = sketch_sigma1(sketch)
    s_w = np.asarray(_check_spectrum(sigma, "sigma", V, d), np.float64)
    if base.bulk == "dozier-silverstein" and not _top_is_spike(base.gain * s_w, V, d, base.noise_var):
        # σ_1(W) may be the edge of W's own bulk (a dense W): the sketch reads a spike's map off Q, which puts it
        # too low, and the top of σ(Q) is the edge of the free sum, the DS law's (Gaussian 1024×256 at int2-row:
        # 23% → 1% off). The larger of the two, under the sketch's rigorous upper bound: where the sketch is the
        # higher (a sparse residual's heavy rows), it is kept.
        sigma1 = min(max(sigma1, float(np.max(np.asarray(base.sigma)))), sigma1_bracket(sketch)[1])
    pred = np.asarray(base.sigma, np.float64).copy()
    pred[0] = sigma1
    pred = np.sort(pred)[::-1]
    floor = base.noise_floor if base.noise_var > 0 else 0.0
    k_lo, k_hi = (1, None) if rank_window is None else _check_window(rank_window, min(V, d))
    with jax.enable_x64(True):
        eff = float(effective_rank(pred))
    return dataclasses.replace(
        base, sigma=jnp.asarray(pred), sigma1=sigma1, truncation_index=int(np.sum(pred > floor)),
        stable_rank=sketch.energy / sigma1**2 if sigma1 > 0 else 0.0, effective_rank=eff,
        decay=rank_decay_exponent(pred, k_lo, k_hi), model=f"{base.model}+sketch",
        reason=None if sigma1 > 0 else "the quantized matrix is zero")


def _check_base(base: Any, sigma: Any, V: int, d: int, result: Any, bulk: str) -> None:
    """``base`` must be what ``predict_from_result(sigma, V, d, result, bulk=bulk)`` returns: its model, gain, noise
    variance and bulk law, for min(V, d) values."""
    if not isinstance(base, QuantizedPrediction):
        raise TypeError(f"base: expected the rmt.QuantizedPrediction of predict_from_result, got {describe(base)}")
    _check_result(result)
    if base.sigma.shape[0] != min(V, d):
        raise ValueError(f"base: expected a prediction of min(V, d) = {min(V, d)} values for this {V}×{d} matrix, got "
                         f"{base.sigma.shape[0]}")
    model = _auto_model(result)
    g, s2 = _model_noise(result, model)
    want = (model, g, s2, choose_bulk(bulk, result.regime, sigma, V, d, s2, g))
    got = (base.model, base.gain, base.noise_var, base.bulk)
    if got != want:
        raise ValueError(f"base: expected predict_from_result's prediction for this result and bulk={bulk!r} (model, "
                         f"gain, noise variance, bulk law = {want}), got {got}")


def count_above_floor(sigma_q: Float[Array, " r"], prediction: QuantizedPrediction) -> int:
    """The measured truncation index: quantized singular values above the predicted noise floor ``s(√V + √d)``.

    The observable counterpart of ``k* = #{k : g·σ_k > s(Vd)^(1/4)}`` (the spiked map sends θ_c to the bulk
    edge). With no noise (``s = 0``) it counts the nonzero values.
    """
    if not isinstance(prediction, QuantizedPrediction):
        raise TypeError(f"prediction: expected a rmt.QuantizedPrediction, got {describe(prediction)}")
    s = np.asarray(check_float_array(sigma_q, "sigma_q", ndim=1), np.float64)
    floor = prediction.noise_floor if prediction.noise_var > 0 else 0.0
    return int(np.sum(s > floor))
