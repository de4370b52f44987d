"""One pass over a quantized matrix: the few numbers that predict its largest singular value.

:func:`zipfrmt.rmt.predict_from_sketch` predicts the spectrum of ``Q = Q(W)`` from ``W``'s spectrum and a
*sketch* of ``Q``: weighted sums of its entries whose weights are known before quantizing (``W``'s top singular
pair ``u_1, v_1``) and its largest row and column norms. Each is one pass over the entries, ``O(Vd)`` work and
``O(V + d)`` memory — what :func:`zipfrmt.quant.quantize` already spends on its noise statistics — against the
``O(Vd²)`` of the spectrum itself. No decomposition of ``Q`` is made.

Why these numbers. In the spiked model ``Q = θ·u vᵀ + N`` (N with i.i.d. entries of variance s², Benaych-Georges
& Nadakuditi 2012), ``‖Qv‖² ≈ θ² + s²V``, ``‖Qᵀu‖² ≈ θ² + s²d`` and ``uᵀQv ≈ θ``, so

    ‖Qv‖·‖Qᵀu‖ / |uᵀQv|  ≈  √((θ² + s²V)(θ² + s²d)) / θ  =  σ̃_1,

the spiked map of θ. Read off ``Q`` itself, ``θ`` is the gain *along* ``u_1 v_1ᵀ`` (in the dead zone it differs
from the global Bussgang gain) and ``s²V``, ``s²d`` are the noise energies along ``v_1`` and ``u_1`` (a variance
profile aligned with the signal is counted, not averaged away). The estimate is then clipped into the rigorous
bracket ``max(‖Qv_1‖, ‖Qᵀu_1‖, max_i‖Q_i:‖, max_j‖Q_:j‖) ≤ σ_1(Q) ≤ √(max_i Σ_j|q_ij| · max_j Σ_i|q_ij|)``
(Rayleigh quotients; the Schur test). Where the signal along ``u_1 v_1ᵀ`` is below BGN's detection threshold
``θ ≤ s(Vd)^¼`` — the quantizer wiped it out, as 2 bits per tensor does on a trained embedding, keeping 0.1% of
the entries — the spiked model does not describe ``Q`` and ``σ_1`` is predicted by the larger of that lower
bound (which then follows ``Q``'s heaviest row or column) and the bulk edge ``s(√V + √d)``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from zipfrmt import spectra
from zipfrmt.checks import check_float_array, check_int, check_matrix, describe, host_view, max_abs

__all__ = ["QuantSketch", "quant_sketch", "sigma1_bracket", "sketch_sigma1", "top_singular_pair"]


class QuantSketch(NamedTuple):
    """One pass over ``Q`` with ``W``'s top singular pair ``u_1, v_1`` (unit vectors). All float64 scalars."""

    q_v1: float  #: ``‖Q v_1‖``
    qt_u1: float  #: ``‖Qᵀ u_1‖``
    u1_q_v1: float  #: ``|u_1ᵀ Q v_1|``
    row_max: float  #: ``max_i ‖Q_i:‖``
    col_max: float  #: ``max_j ‖Q_:j‖``
    schur: float  #: ``√(max_i Σ_j |q_ij| · max_j Σ_i |q_ij|)``, an upper bound on ``σ_1(Q)``
    energy: float  #: ``‖Q‖_F²``
    V: int = 0  #: rows of ``Q``
    d: int = 0  #: columns of ``Q``


def _unit_scaled(X: Any, amax: float) -> tuple[Float[Array, "V d"], int]:
    """``(X·2^−e, e)`` in float32, ``e`` the binary exponent of ``amax = max|X| > 0`` (exact: a power of two)."""
    e = math.frexp(amax)[1]
    if abs(e) < 126:  # 2^−e is a normal float32 number
        return jnp.asarray(X, jnp.float32) * jnp.float32(2.0**-e), e
    return jnp.asarray(np.ldexp(np.asarray(X, np.float32), -e)), e


@jax.jit
def _sketch(
    Q: Float[Array, "V d"], u: Float[Array, " V"], v: Float[Array, " d"], scale: Float[Array, ""]
) -> tuple[jax.Array, ...]:
    """The sketch of ``Q·scale`` (``scale`` a power of two) in one compiled program, for ``Q`` on an accelerator:
    the scale goes into ``u``, ``v`` and the elementwise terms that XLA fuses into the reductions, so no scaled
    copy of ``Q`` is made (``uᵀQ``, not ``Qᵀu``: XLA:CPU would transpose ``Q``)."""
    Qv, uQ = Q @ (v * scale), (u * scale) @ Q
    A = jnp.abs(Q * scale)
    rows1, cols1 = jnp.sum(A, axis=1), jnp.sum(A, axis=0)
    rows2, cols2 = jnp.sum(A * A, axis=1), jnp.sum(A * A, axis=0)
    return (jnp.linalg.norm(Qv), jnp.linalg.norm(uQ), jnp.abs(u @ Qv), jnp.sqrt(jnp.max(rows2)),
            jnp.sqrt(jnp.max(cols2)), jnp.sqrt(jnp.max(rows1) * jnp.max(cols1)), jnp.sum(rows2))


#: Rows per block of the host pass: a 256×d float32 block and its |·| stay in cache, and every sum is a BLAS
#: matrix-vector product (65,536×640: 0.07 s, against 0.46 s for the fused XLA:CPU program on 2 cores).
HOST_BLOCK_ROWS = 256
#: A block whose ``max|q|`` has a binary exponent within ±40 is summed as it is (a sum of up to 2^40 of its float32
#: squares, each below 2^80, cannot overflow; its largest squares, above 2^−84, are normal numbers); outside, it is
#: scaled by ``2^−e`` first (exact).
_HOST_SAFE_EXPONENT = 40


def _host_sketch(Q: np.ndarray, u: Float[np.ndarray, " V"], v: Float[np.ndarray, " d"]) -> tuple[float, ...]:
    """The seven sums of :class:`QuantSketch` for a matrix in CPU memory, in blocks of :data:`HOST_BLOCK_ROWS` rows:
    each block's ``Q_b v``, ``u_bᵀQ_b``, ``|Q_b|·1``, ``1ᵀ|Q_b|`` and the same of ``Q_b²`` by BLAS in float32,
    accumulated across blocks in float64. A block far from 1 in magnitude is scaled by its own power of two
    (exact) and its sums scaled back in float64, so any float32 (or float64) magnitude is summed without
    overflow. Raises on a NaN or infinite entry (named by its block of rows)."""
    V, d = Q.shape
    B = min(HOST_BLOCK_ROWS, V)
    u32, v32 = u.astype(np.float32), v.astype(np.float32)
    Qv, r1, r2 = np.zeros(V), np.zeros(V), np.zeros(V)
    uQ, c1, c2 = np.zeros(d), np.zeros(d), np.zeros(d)
    t = np.empty((B, d), np.float32)
    ones_d, ones_b = np.ones(d, np.float32), np.ones(B, np.float32)
    for i in range(0, V, B):
        blk = Q[i:i + B]
        n = blk.shape[0]
        m = max(float(np.max(blk)), -float(np.min(blk)))  # a NaN propagates through max, ±inf shows in max/min
        if not math.isfinite(m):
            raise ValueError(f"Q: expected finite entries, got NaN or Inf in rows {i}..{i + n - 1}")
        if m == 0:
            continue
        e = math.frexp(m)[1]
        e = e if abs(e) > _HOST_SAFE_EXPONENT else 0
        src = blk if blk.dtype == np.float64 else blk.astype(np.float32, copy=False)
        if e:
            src = np.ldexp(src, -e)  # exact: a power of two, in the source's precision
        f = np.float64(2.0**e)  # float64: a Python float would keep the float32 products in float32
        Qb = src if src.dtype == np.float32 else src.astype(np.float32)
        Qv[i:i + n] = f * (Qb @ v32)
        uQ += f * (u32[i:i + n] @ Qb)
        a = np.abs(Qb, out=t[:n])
        r1[i:i + n] = f * (a @ ones_d)
        c1 += f * (ones_b[:n] @ a)
        np.square(a, out=a)
        r2[i:i + n] = (f * f) * (a @ ones_d)
        c2 += (f * f) * (ones_b[:n] @ a)
    return (float(np.linalg.norm(Qv)), float(np.linalg.norm(uQ)), abs(float(u @ Qv)), math.sqrt(r2.max()),
            math.sqrt(c2.max()), math.sqrt(r1.max() * c1.max()), float(r2.sum()))


def quant_sketch(
    Q: Float[Array, "V d"] | np.ndarray, u1: Float[Array, " V"] | np.ndarray, v1: Float[Array, " d"] | np.ndarray
) -> QuantSketch:
    """The :class:`QuantSketch` of ``Q`` (e.g. ``quantize(W, spec).dequantized``) with ``W``'s top singular
    vectors ``u1`` (length V) and ``v1`` (length d; both normalised here).

    A matrix in CPU memory (NumPy, or a JAX array on CPU devices, read without a copy) is summed by NumPy's
    BLAS in row blocks (:func:`_host_sketch`, float32 products, float64 accumulation, each block scaled by a
    power of two when far from 1); elsewhere by one compiled program in float32 on ``Q·2^−e`` (``e`` the
    binary exponent of ``max|Q|``), scaled back in float64. Both are exact scalings, so no square overflows or
    underflows at any magnitude float32 holds.
    """
    Q = check_float_array(Q, "Q", ndim=2, finite=False)  # finiteness: checked by the pass itself
    V, d = (int(n) for n in Q.shape)
    u = np.asarray(check_float_array(u1, "u1", ndim=1), np.float64)
    v = np.asarray(check_float_array(v1, "v1", ndim=1), np.float64)
    if u.size != V or v.size != d:
        raise ValueError(f"u1, v1: expected W's top singular vectors of lengths V = {V} and d = {d} (Q's shape), "
                         f"got {u.size} and {v.size}")
    nu, nv = float(np.linalg.norm(u)), float(np.linalg.norm(v))
    if nu == 0 or nv == 0:
        raise ValueError(f"u1, v1: expected nonzero vectors, got norms {nu:g} and {nv:g}")
    u, v = u / nu, v / nv
    host = host_view(Q) if isinstance(Q, jax.Array) else np.asarray(Q)
    if host is not None:
        return QuantSketch(*_host_sketch(host, u, v), V, d)
    Q = check_matrix(Q, "Q")
    amax = max_abs(Q)
    if amax == 0:
        return QuantSketch(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, V, d)
    e = math.frexp(amax)[1]
    if abs(e) < 126:  # 2^−e is a normal float32 number: scaled inside the reductions, no copy of Q
        Qs, scale = jnp.asarray(Q, jnp.float32), jnp.float32(2.0**-e)
    else:
        Qs, scale = _unit_scaled(Q, amax)[0], jnp.float32(1.0)
    out = _sketch(Qs, jnp.asarray(u, jnp.float32), jnp.asarray(v, jnp.float32), scale)
    q_v1, qt_u1, uqv, row, col, schur, energy = (float(x) for x in out)
    scale = 2.0**e
    return QuantSketch(q_v1 * scale, qt_u1 * scale, uqv * scale, row * scale, col * scale, schur * scale,
                       energy * scale * scale, V, d)


def sigma1_bracket(sk: QuantSketch) -> tuple[float, float]:
    """The rigorous bracket ``lo ≤ σ_1(Q) ≤ hi`` a sketch holds: ``lo = max(‖Qv_1‖, ‖Qᵀu_1‖, max row norm, max
    column norm)`` (Rayleigh quotients of unit vectors), ``hi`` the Schur bound
    ``√(max_i Σ_j |q_ij| · max_j Σ_i |q_ij|)``."""
    if not isinstance(sk, QuantSketch):
        raise TypeError(f"sk: expected a zipfrmt.sketch.QuantSketch, got {describe(sk)}")
    return max(sk.q_v1, sk.qt_u1, sk.row_max, sk.col_max), sk.schur


def sketch_sigma1(sk: QuantSketch) -> float:
    """The predicted ``σ_1(Q)`` from a sketch (module docstring).

    With ``θ = |u_1ᵀQv_1|`` and the noise variance off the spike ``s² = (‖Q‖_F² − θ²)/(Vd)``:

    * the signal is detectable (``θ > s(Vd)^¼``, BGN's threshold) and the spiked estimate
      ``‖Qv_1‖·‖Qᵀu_1‖/θ`` lies below the Schur bound: that estimate, raised to the rigorous lower bound
      ``lo = max(‖Qv_1‖, ‖Qᵀu_1‖, max row norm, max column norm)`` if below it;
    * otherwise (the quantizer wiped out the signal along ``u_1 v_1ᵀ``, e.g. 2 bits per tensor on a trained
      embedding, where 99.9% of the entries round to zero): the spiked model does not describe ``Q``, and the
      prediction is the larger of ``lo`` and the bulk edge ``s(√V + √d)``, capped by the Schur bound.
    """
    lo, _ = sigma1_bracket(sk)
    theta = sk.u1_q_v1
    s = math.sqrt(max(sk.energy - theta**2, 0.0) / max(sk.V * sk.d, 1))
    if theta > s * (sk.V * sk.d) ** 0.25 and theta > 0:
        est = sk.q_v1 * sk.qt_u1 / theta
        if est <= sk.schur:
            return max(est, lo)
    return min(max(lo, s * (math.sqrt(sk.V) + math.sqrt(sk.d))), sk.schur)


#: Power iterations stop once ``v`` moves by less than this between steps (float32 resolves ~1e-7).
_POWER_TOL = 1e-6
#: Up to this many columns the top pair comes from the eigenvectors of the d×d Gram matrix ``WᵀW`` (one BLAS
#: product and a d×d eigh: 65,536×640 in 0.5 s, where 100 power iterations on a matrix with σ_1 ≈ σ_2 take 9 s).
_GRAM_MAX_D = 4096


@jax.jit
def _power(W: Float[Array, "V d"], v0: Float[Array, " d"], steps: int) -> tuple[jax.Array, jax.Array]:
    def body(state):
        i, v, _ = state
        w = W.T @ (W @ v)
        w = w / jnp.linalg.norm(w)
        return i + 1, w, jnp.linalg.norm(w - v)

    def more(state):
        i, _, moved = state
        return (i < steps) & (moved > _POWER_TOL)

    _, v, _ = jax.lax.while_loop(more, body, (0, v0 / jnp.linalg.norm(v0), jnp.float32(jnp.inf)))
    u = W @ v
    return u / jnp.linalg.norm(u), v


def top_singular_pair(
    W: Float[Array, "V d"] | np.ndarray, *, steps: int = 100, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(u_1, v_1)``: ``W``'s top left and right singular vectors (unit norm, float64 on the host).

    For ``d ≤ 4096``: ``v_1`` is the top eigenvector of the Gram matrix ``WᵀW`` (float32 product, float64 eigh)
    and ``u_1 = Wv_1/‖Wv_1‖``; ``steps`` and ``seed`` are not used. Wider: at most ``steps`` power iterations on
    ``WᵀW`` (Golub & Van Loan 2013, §8.2.1), each ``O(Vd)``, stopping once ``v`` moves by less than 1e-6 in a
    step.

    The error in ``v_1`` falls like ``(σ_2/σ_1)^(2·steps)``: for a power law ``σ_k = k^(−a)``, by ``4^(−a)`` a step.
    Where ``σ_1 ≈ σ_2`` the pair is some unit combination of the top singular vectors, which the spiked estimate
    of :func:`sketch_sigma1` tolerates (it only needs a direction that carries the largest signal).
    """
    W = check_matrix(W)
    steps = check_int(steps, "steps", lo=1)
    amax = max_abs(W)
    if amax == 0:
        raise ValueError("W: expected a nonzero matrix (the zero matrix has no top singular pair)")
    host = host_view(W)
    if host is not None and host.shape[1] <= _GRAM_MAX_D:
        # In CPU memory: the Gram matrix by NumPy's BLAS in row blocks (spectra's host Gram, in W's binary scale),
        # then u = Wv in float32 — no scaled or float64 copy of W
        e = math.frexp(amax)[1]
        e = e if abs(e) > spectra.HOST_SAFE_EXPONENT else 0
        _, vecs = np.linalg.eigh(spectra.host_gram(host, e, np.float32))
        v = vecs[:, -1]
        u = np.asarray(host @ v.astype(np.float32), np.float64)
        return u / np.linalg.norm(u), v
    Wj, _ = _unit_scaled(W, amax)
    if Wj.shape[1] <= _GRAM_MAX_D:  # the top eigenvector of the d×d Gram: one product, no iteration
        Wn = np.asarray(Wj)
        _, vecs = np.linalg.eigh(np.dot(Wn.T, Wn).astype(np.float64))
        v = vecs[:, -1]
        u = Wn.astype(np.float64) @ v
        return u / np.linalg.norm(u), v
    v0 = jax.random.normal(jax.random.key(seed), (Wj.shape[1],), jnp.float32)
    u, v = _power(Wj, v0, steps)
    return np.asarray(u, np.float64), np.asarray(v, np.float64)
