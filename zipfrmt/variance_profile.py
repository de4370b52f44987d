"""The spectrum of a signal plus noise with a separable variance profile — the dead zone's residual.

In the dead zone the Bussgang residual ``D = Q(W) − g·W`` is no i.i.d. noise: its error sits where the large
entries are (rows and columns of W with large norms keep entries above the step; stochastic rounding's error
variance is about ``|w|Δ``), so a few rows and columns carry most of its energy. The i.i.d. law of
:func:`zipfrmt.rmt.predict_quantized_bussgang` then misses the count above the noise floor (power laws on the
quick verification grid: median 12%, worst 92%). Modelling ``D`` by independent entries with the separable profile

    E[D_ij²] = S_ij = r_i c_j / s²,    r_i = mean_j D_ij²,  c_j = mean_i D_ij²,  s² = mean D_ij²,

(which keeps every row and column energy of D exactly) and the signal ``g·W`` with singular vectors free of
that profile, the law of ``σ(Q)`` follows from the deterministic equivalent of Hachem, Loubaton & Najim (2007,
*Ann. Appl. Probab.* 17, "Deterministic equivalents for certain functionals of large random matrices") for
``Σ = A + Y``, Y with variance profile S. With ``A`` taken diagonal (the signal value ``a_k = g·σ_k`` on row
``π(k)`` and column ``τ(k)``, a fixed random pairing: the signal's vectors are free of the profile) and
``S = (r/s²)cᵀ`` separable, the resolvents are diagonal and reduce to two scalars ``α(z), β(z)``:

    T_i  = 1 / ( −z(1 + β ρ_i) + a_i² / (1 + α κ_i) ),      α = Σ_i ρ_i T_i,
    T̃_j = 1 / ( −z(1 + α κ_j) + a_j² / (1 + β ρ_j) ),      β = Σ_j κ_j T̃_j,

with ``ρ_i = r_i/s²`` and ``κ_j = c_j/s²`` (everything in units of ``s²``; a_i is the signal value paired with row
i, 0 for the rows without one, and κ_i the profile of its column; likewise a_j and ρ_j). ``m̃(z) = (1/d) Σ_j T̃_j``
is the Stieltjes transform of the law of the d eigenvalues of ``QᵀQ``; its density is ``Im m̃(x + i0)/π``. With
``r_i = c_j = s²`` this is the Dozier–Silverstein law (tested). Measured on the power laws of the quick
verification grid (50 dead-zone points, 2048 and 4096 × 256, a = 0.3, 0.5, 1; 2–4 bits, every scale group, both
roundings): the profile's alignment with W does not matter (simulated at six settings: the same counts with its
rows and columns permuted),
and the count above the floor this law predicts misses the count measured on Q by a median 2.8% (worst 127%),
against 12% (worst 92%) for the i.i.d. law. Where it fails: a dominant rank-one W at 2–3 bits with round-to-nearest
(a = 1, gain 0.5–0.9), whose residual is a deterministic function of ``σ_1 u_i v_j`` — structured, not noise — and
overshoots the count by 60–110%, while the i.i.d. law undershoots it by 30–50%.

A different profile, for the Widrow regime: noise whose variance follows W's top singular vectors (an outlier
column with per-column scales) moves σ_1 — :func:`zipfrmt.rmt.predict_with_profile`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from zipfrmt import rmt
from zipfrmt.checks import check_float_array, check_number, describe

__all__ = ["ResidualProfile", "predict_from_quantized", "predict_with_residual_profile", "profile_law_density",
           "residual_profile"]

#: Rows of largest variance kept one by one in the solve (they make the outliers); the rest in quantile bins.
_TOP_ROWS, _ROW_BINS = 64, 256
#: η continuation: start at the support scale, shrink by this factor per iteration, stop at _ETA_REL·s².
_ETA_DECAY, _ETA_REL = 0.25, 1e-6
_MAX_ITER, _TOL = 300, 1e-9
#: Grid sizes (least, most) of the quantiles, spacing s/4 in σ (as the DS quantiles of zipfrmt.rmt).
_GRID, _GRID_MAX = 2048, 32768


@dataclasses.dataclass(frozen=True)
class ResidualProfile:
    """The separable variance profile of the Bussgang residual ``D = Q − g·W`` (V×d).

    Attributes:
      row_var: ``r_i = mean_j D_ij²`` (V values).
      col_var: ``c_j = mean_i D_ij²`` (d values).
      gain: ``g``, the Bussgang gain the residual is taken against.
      noise_var: ``s² = mean D_ij²`` (the i.i.d. model's residual variance).
    """

    row_var: np.ndarray
    col_var: np.ndarray
    gain: float
    noise_var: float


def residual_profile(W: Float[Array, "V d"], Q: Float[Array, "V d"], gain: float) -> ResidualProfile:
    """Row and column mean squares of ``D = Q − g·W`` — one pass over the entries, no decomposition.

    They are statistics a user has before any spectrum of Q: the rounding of each entry, as ``quantize`` does it.
    """
    W, Q = check_float_array(W, "W", ndim=2), check_float_array(Q, "Q", ndim=2)
    if tuple(Q.shape) != tuple(W.shape):
        raise ValueError(f"Q: expected the shape of W, {tuple(W.shape)}, got {tuple(Q.shape)}")
    g = check_number(gain, "gain", lo=0.0)
    rows, cols = _residual_moments(jnp.asarray(W, jnp.float32), jnp.asarray(Q, jnp.float32), jnp.float32(g))
    rows, cols = np.asarray(rows, np.float64), np.asarray(cols, np.float64)
    return ResidualProfile(row_var=rows, col_var=cols, gain=g, noise_var=float(rows.mean()))


@jax.jit
def _residual_moments(W: jax.Array, Q: jax.Array, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Row and column means of ``(Q − gW)²`` in one fused pass (float32 entries, no V×d float64 copy)."""
    D2 = jnp.square(Q - g * W)
    return jnp.mean(D2, axis=1), jnp.mean(D2, axis=0)


def _check_profile(profile: Any, V: int, d: int) -> ResidualProfile:
    if not isinstance(profile, ResidualProfile):
        raise TypeError(f"profile: expected a variance_profile.ResidualProfile (residual_profile(W, Q, gain)), "
                        f"got {describe(profile)}")
    rows, cols = np.asarray(profile.row_var), np.asarray(profile.col_var)
    if rows.shape != (V,) or cols.shape != (d,):
        raise ValueError(f"profile: expected {V} row and {d} column variances for this {V}×{d} matrix, got shapes "
                         f"{rows.shape} and {cols.shape}")
    if not (np.all(np.isfinite(rows)) and np.all(np.isfinite(cols)) and rows.min() >= 0 and cols.min() >= 0):
        raise ValueError("profile: expected finite, nonnegative row and column variances")
    check_number(profile.noise_var, "profile.noise_var", lo=0.0)
    check_number(profile.gain, "profile.gain", lo=0.0)
    return profile


def _layout(sig: np.ndarray, rho: np.ndarray, kappa: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """The rows and columns of the diagonal signal: value k on row π(k) and column τ(k) (a fixed random pairing,
    the signal's vectors free of the profile); rows without signal in weighted bins (the ``_TOP_ROWS`` largest
    one by one)."""
    V, d = rho.size, kappa.size
    rng = np.random.default_rng(seed)
    rows = rng.permutation(V)
    cols = rng.permutation(d)
    a = np.zeros(d)
    a[: sig.size] = sig
    sig_rows, other = rows[:d], rows[d:]
    rest = np.sort(rho[other])[::-1]
    top, tail = rest[:_TOP_ROWS], rest[_TOP_ROWS:]
    n_bins = min(_ROW_BINS, tail.size)
    if n_bins:
        edges = np.linspace(0, tail.size, n_bins + 1).astype(int)
        bin_rho = np.array([tail[lo:hi].mean() for lo, hi in zip(edges[:-1], edges[1:], strict=True)])
        bin_w = np.diff(edges).astype(np.float64)
    else:
        bin_rho, bin_w = np.zeros(0), np.zeros(0)
    return {
        "a2": a**2,  # signal row/column pair k
        "rho_s": rho[sig_rows],  # the row of pair k
        "kappa_s": kappa[cols],  # the column of pair k
        "rho_n": np.concatenate([top, bin_rho]),  # rows without signal
        "w_n": np.concatenate([np.ones(top.size), bin_w]),
    }


def _inv(z: jax.Array) -> jax.Array:
    """``1/z`` as ``conj(z)/|z|²`` in real arithmetic: XLA:CPU's complex division guards against overflow with
    branches and costs several times more (every denominator here is of order 1: units of s²)."""
    n = z.real * z.real + z.imag * z.imag
    return jax.lax.complex(z.real / n, -z.imag / n)


def _wsum(x: jax.Array, w: jax.Array) -> jax.Array:
    """``Σ_k w_k x[:, k]`` for complex x and real weights w: two real matrix-vector products."""
    return jax.lax.complex(x.real @ w, x.imag @ w)


@jax.jit
def _solve(x: Float[Array, " g"], lay: dict[str, Any], eta: Float[Array, ""], eta0: Float[Array, ""]) -> Any:
    """Newton iteration on ``(α, β)`` with η-continuation, vectorised over the grid ``x`` (eigenvalues of QᵀQ in
    units of s²). A Newton step that leaves the upper half-plane or is not finite is replaced by a damped
    fixed-point step. Returns ``(m̃, residual, converged)``."""
    a2, rho_s, kap_s, rho_n, w_n = lay["a2"], lay["rho_s"], lay["kappa_s"], lay["rho_n"], lay["w_n"]

    def maps(al: jax.Array, be: jax.Array, z: jax.Array) -> tuple[jax.Array, ...]:
        al_, be_, z_ = al[:, None], be[:, None], z[:, None]
        gk = 1.0 + al_ * kap_s  # (1 + α κ) of the signal columns
        hk = 1.0 + be_ * rho_s  # (1 + β ρ) of the signal rows
        igk, ihk = _inv(gk), _inv(hk)
        i_s = _inv(-z_ * hk + a2 * igk)  # 1/D of the signal rows
        i_n = _inv(-z_ * (1.0 + be_ * rho_n))  # rows without signal
        i_t = _inv(-z_ * gk + a2 * ihk)  # columns
        i_s2, i_n2, i_t2 = i_s * i_s, i_n * i_n, i_t * i_t
        f_al = _wsum(i_s, rho_s) + _wsum(i_n, w_n * rho_n)
        f_be = _wsum(i_t, kap_s)
        j11 = _wsum(igk * igk * i_s2, rho_s * a2 * kap_s)
        j12 = z * (_wsum(i_s2, rho_s**2) + _wsum(i_n2, w_n * rho_n**2))
        j21 = z * _wsum(i_t2, kap_s**2)
        j22 = _wsum(ihk * ihk * i_t2, kap_s * a2 * rho_s)
        m_t = jnp.mean(i_t, axis=1)
        return f_al, f_be, j11, j12, j21, j22, m_t

    def step(z: jax.Array, al: jax.Array, be: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        f_al, f_be, j11, j12, j21, j22, _ = maps(al, be, z)
        r1, r2 = al - f_al, be - f_be
        # [1 − j11, −j12; −j21, 1 − j22] (dα, dβ) = −(r1, r2)
        det = (1.0 - j11) * (1.0 - j22) - j12 * j21
        d_al = -((1.0 - j22) * r1 + j12 * r2) / det
        d_be = -(j21 * r1 + (1.0 - j11) * r2) / det
        n_al, n_be = al + d_al, be + d_be
        ok = jnp.isfinite(n_al) & jnp.isfinite(n_be) & (n_al.imag >= 0) & (n_be.imag >= 0)
        n_al = jnp.where(ok, n_al, al + 0.5 * (f_al - al))
        n_be = jnp.where(ok, n_be, be + 0.5 * (f_be - be))
        res = (jnp.abs(r1) + jnp.abs(r2)) / (jnp.abs(al) + jnp.abs(be))
        return n_al, n_be, res

    def body(state: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        it, al, be, _ = state
        e = jnp.maximum(eta, eta0 * _ETA_DECAY ** (it + 1).astype(x.dtype))
        n_al, n_be, res = step(x + 1j * e, al, be)
        done = (e <= eta) & jnp.all(res <= _TOL)
        return it + 1, jnp.where(done, al, n_al), jnp.where(done, be, n_be), done

    def cond(state: tuple[jax.Array, ...]) -> jax.Array:
        it, _, _, done = state
        return (it < _MAX_ITER) & ~done

    z0 = x + 1j * eta0
    al0 = -(jnp.sum(rho_s) + jnp.sum(w_n * rho_n)) / z0
    be0 = -jnp.sum(kap_s) / z0
    _, al, be, done = jax.lax.while_loop(cond, body, (jnp.asarray(0), al0, be0, jnp.asarray(False)))
    f_al, f_be, *_, m_t = maps(al, be, x + 1j * eta)
    res = (jnp.abs(al - f_al) + jnp.abs(be - f_be)) / (jnp.abs(al) + jnp.abs(be))
    return m_t, res, done


def _density(lam: np.ndarray, sig: np.ndarray, rho: np.ndarray, kappa: np.ndarray, caller: str) -> np.ndarray:
    """The density of the d eigenvalues of QᵀQ at ``lam`` (units of s², V ≥ d); a
    :class:`zipfrmt.rmt.ConvergenceWarning` names the worst residual if the fixed point missed its tolerance."""
    lay = _layout(sig, rho, kappa)
    V, d = rho.size, kappa.size
    scale = (math.sqrt(float(np.max(lay["a2"], initial=0.0))) + math.sqrt(d * float(rho.max()))
             + math.sqrt(V * float(kappa.max()))) ** 2
    with jax.enable_x64(True):
        m_t, res, done = _solve(jnp.asarray(lam), {k: jnp.asarray(v) for k, v in lay.items()},
                                jnp.float64(_ETA_REL * (math.sqrt(V) + math.sqrt(d)) ** 2), jnp.float64(scale))
        dens = np.maximum(np.asarray(m_t.imag), 0.0) / math.pi
    if not bool(done):
        res = np.asarray(res)
        worst = int(np.argmax(res))
        warnings.warn(f"{caller}: the variance-profile fixed point did not converge in {_MAX_ITER} iterations: max "
                      f"relative residual {res[worst]:.3g} > {_TOL:g} at λ = {lam[worst]:.6g} (units of s²); the "
                      "density there is unreliable", rmt.ConvergenceWarning, stacklevel=3)
    return dens


def _oriented(profile: ResidualProfile) -> tuple[np.ndarray, np.ndarray]:
    """(ρ, κ) in units of s², for the orientation with more rows than columns (the transpose has the same singular
    values)."""
    rho, kappa = profile.row_var / profile.noise_var, profile.col_var / profile.noise_var
    return (kappa, rho) if rho.size < kappa.size else (rho, kappa)


def profile_law_density(
    x_grid: Float[Array, " g"], sigma: Float[Array, " k"], V: int, d: int, profile: ResidualProfile
) -> np.ndarray:
    """Density of ``x = λ/V`` over the ``min(V, d)`` eigenvalues λ of ``QᵀQ`` (or ``QQᵀ``), ``Q = g·W + D``
    with ``W``'s singular values ``sigma`` and ``D`` of the separable variance profile ``profile`` — the
    counterpart of :func:`zipfrmt.rmt.limiting_spectrum` (the same law when the profile is flat and V ≥ d; for
    V < d that one's continuous part has mass V/d, this one is normalised over the min(V, d) nonzero values)."""
    V, d = rmt._check_shape(V, d)
    _check_profile(profile, V, d)
    s = rmt._check_spectrum(sigma, "sigma", V, d)
    x = rmt._check_grid(x_grid)
    s2 = profile.noise_var
    if s2 <= 0:
        raise ValueError(f"profile: expected a nonzero residual (noise_var > 0), got noise_var = {s2!r}")
    rho, kappa = _oriented(profile)
    dens = _density(x * V / s2, profile.gain * s / math.sqrt(s2), rho, kappa, "profile_law_density")
    return dens * V / s2  # ρ_x(x) = ρ_λ(Vx)·V, λ in units of s²


def _quantile_sigma(sig: np.ndarray, rho: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """Descending ``r = d`` singular values (units of s, V ≥ d) at the quantiles ``(i − ½)/r`` of the law,
    isolated spikes above the noise's own support keeping the spiked map (as :func:`zipfrmt.rmt` does on DS)."""
    V, d = rho.size, kappa.size
    floor_cut = 1.5 * (math.sqrt(V) + math.sqrt(d))
    noise_top = math.sqrt(d * float(rho.max())) + math.sqrt(V * float(kappa.max()))  # ‖D‖ ≲ max row + col norm
    with jax.enable_x64(True):
        images = np.sort(np.asarray(rmt._spiked_map(jnp.asarray(sig), float(V), float(d), jnp.float64(1.0))))[::-1]
    j = rmt._isolated_run(images, V, d, 1.0)
    j = int(np.sum(images[:j] > noise_top + 2 * rmt._ISLAND))  # only the spikes clear of the noise's outliers
    top = images[:j]
    cut = max(floor_cut, noise_top + rmt._ISLAND, images[j] + rmt._ISLAND if j < images.size else 0.0)
    n_grid = int(min(_GRID * math.ceil(4 * cut / _GRID), _GRID_MAX))  # a multiple of _GRID: few compiled shapes
    du = cut / n_grid
    u = (np.arange(n_grid) + 0.5) * du  # midpoints in σ
    dens = _density(u**2, sig, rho, kappa, "predict_with_residual_profile")  # density of λ = σ²
    return np.concatenate([top, rmt._grid_quantiles(dens * 2 * u * du, du, d - j)])


def predict_with_residual_profile(
    sigma: Float[Array, " k"],
    V: int,
    d: int,
    profile: ResidualProfile,
    *,
    rank_window: tuple[int, int | None] | None = None,
) -> rmt.QuantizedPrediction:
    """The spectrum of ``Q = g·W + D`` predicted from W's singular values and the residual's row and column
    variances (:func:`residual_profile`): the quantiles of the separable-profile law (module docstring).

    * ``k*`` is counted as it is measured, the predicted values above the floor ``s(√V + √d)`` of the i.i.d.
      model with the same mean variance (:func:`zipfrmt.rmt.count_above_floor` uses that floor);
    * ``σ̃_1`` is the top predicted value, the stable rank ``(g²Σσ² + V d s²)/σ̃_1²``.

    Returns a :class:`zipfrmt.rmt.QuantizedPrediction` with ``model="bussgang-profile"``, ``bulk="profile"``.
    """
    V, d = rmt._check_shape(V, d)
    _check_profile(profile, V, d)
    s = rmt._check_spectrum(sigma, "sigma", V, d)
    window = rmt._check_window(rank_window, min(V, d))
    s2, g = profile.noise_var, profile.gain
    r = min(V, d)
    full = np.zeros(r)
    full[: s.size] = s
    if s2 <= 0:
        pred = g * full
    else:
        rho, kappa = _oriented(profile)
        pred = math.sqrt(s2) * _quantile_sigma(g * full / math.sqrt(s2), rho, kappa)
    pred = np.sort(pred)[::-1]
    floor = math.sqrt(s2) * (math.sqrt(V) + math.sqrt(d))
    k_star = int(np.sum(pred > floor))  # as measured (rmt.count_above_floor); with s² = 0, the nonzero values
    return rmt._assemble(pred, full, V, d, s2, g, float(pred[0]), k_star, "bussgang-profile", "profile", window)


def predict_from_quantized(
    sigma: Float[Array, " k"],
    W: Float[Array, "V d"],
    result: Any,
    *,
    rank_window: tuple[int, int | None] | None = None,
) -> rmt.QuantizedPrediction:
    """:func:`predict_with_residual_profile` for a quantization ``result`` of ``W`` (a
    :class:`zipfrmt.quant.QuantResult`, or anything with its ``dequantized`` and ``bussgang_gain``): the residual
    ``Q − g·W`` taken against the Bussgang gain clipped at 0, as :func:`zipfrmt.rmt.predict_from_result` does.
    The one call ``zipfrmt analyze --profile``, the verification grid, the training probes and the experiments make.
    """
    for name in ("dequantized", "bussgang_gain"):
        if not hasattr(result, name):
            raise TypeError(f"result: expected a zipfrmt.quant.QuantResult (or an object with {name}), "
                            f"got {describe(result)}")
    W = check_float_array(W, "W", ndim=2)
    profile = residual_profile(W, result.dequantized, max(float(result.bussgang_gain), 0.0))
    return predict_with_residual_profile(sigma, *(int(n) for n in W.shape), profile, rank_window=rank_window)
