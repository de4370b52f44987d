"""Singular values and what is measured on them.

Conventions (``docs/conventions.md``): a matrix ``W`` is ``V×d`` with rows = tokens; its singular values are
``σ_1 ≥ … ≥ σ_r``, ``r = min(V, d)``; the eigenvalues of the (unnormalised) Gram matrix are ``λ_i = σ_i²``.

Measures:

* stable rank            ``r_s = Σσ_i² / σ_1²``
* effective rank         ``exp(H(p))``, ``p_i = σ_i / Σσ_j``  (Roy & Vetterli 2007)
* participation ratio    ``(Σσ_i²)² / Σσ_i⁴``
* rank-decay exponent    ``a`` in ``σ_k ≈ C k^(-a)``, least squares in log–log over an explicit window
* ESD tail exponent      ``α`` in ``ρ(λ) ∝ λ^(-α)``, Clauset, Shalizi & Newman (2009) continuous MLE with the
  x_min that minimises the Kolmogorov–Smirnov distance over every candidate (WeightWatcher's convention)

A zero matrix is a legitimate outcome of 2-bit quantization: it has stable rank 0 and effective rank 0, and its
exponents are NaN with a reason attached (``summarize``), never an exception.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from zipfrmt.checks import (
    check_choice,
    check_float32_range,
    check_float_array,
    check_int,
    check_matrix,
    check_matrix_max_abs,
    describe,
    host_view,
    max_abs,
)

__all__ = [
    "EsdFit",
    "RankDecayFit",
    "SpectralSummary",
    "alpha_from_rank_exponent",
    "alpha_hat",
    "effective_rank",
    "fit_esd_powerlaw",
    "gram_is_accurate",
    "host_gram",
    "participation_ratio",
    "rank_decay_exponent",
    "rank_exponent_from_alpha",
    "singular_values",
    "singular_values_batched",
    "stable_rank",
    "summarize",
    "summarize_spectrum",
]

METHODS = ("auto", "svd", "gram", "gram64", "chunked")

#: Unit roundoff of float32, 2^-24.
U32 = 2.0**-24
#: Accuracy that ``method="auto"`` guarantees, as a relative error on every σ_k ≥ AUTO_FLOOR·σ_1.
AUTO_RTOL = 1e-4
AUTO_FLOOR = 1e-3

_F32_MAX = float(np.finfo(np.float32).max)
_F32_TINY = float(np.finfo(np.float32).tiny)


# ---------------------------------------------------------------------------------------------------------
# Magnitudes float32 can hold
# ---------------------------------------------------------------------------------------------------------


def _is_tracer(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _check_float32_range(amax: float, name: str) -> None:
    """Singular values are computed from float32 entries: ``max|W|`` must be 0 or a normal float32 number."""
    check_float32_range(amax, name, "singular values are computed in float32")


def _check_sigma_fits(s: jax.Array, name: str) -> None:
    """The float64 singular values must fit the float32 they are returned in."""
    top = float(np.max(np.asarray(s)))
    if top > _F32_MAX:
        raise ValueError(
            f"{name}: expected a matrix whose largest singular value float32 can hold (≤ {_F32_MAX:.4g}; singular "
            f"values are returned in float32), got σ_1 = {top:.4g}; scale {name} down by a power of two first"
        )


# ---------------------------------------------------------------------------------------------------------
# Singular values
# ---------------------------------------------------------------------------------------------------------


def _normalized(W: Float[Array, "V d"]) -> tuple[Float[Array, "V d"], jax.Array]:
    """``(W·2^−e, e)`` in float32, ``e`` the binary exponent of ``max|W|`` (``max|W·2^−e| ∈ [0.5, 1)``; 0 for W = 0).

    Scaling by a power of two is exact, and σ(W) = 2^e·σ(W·2^−e): every kernel works on the normalised matrix, so
    its Gram matrix (entries up to ``V·max|W|²``) neither overflows (W ~ 1e19) nor underflows (W ~ 1e−20) in float32.
    Entries are read from their bit patterns, so subnormal ones (``±m·2^−149``, which XLA:CPU reads as 0) are scaled
    as what they are: at ``max|W| ~ 1e−37`` a tenth of a Gaussian matrix's entries is subnormal.
    """
    W = W.astype(jnp.float32)
    bits = jax.lax.bitcast_convert_type(W, jnp.int32)
    mag = bits & 0x7FFFFFFF
    top = jnp.max(mag)  # the bit pattern of max|W|
    e_sub = jnp.frexp(top.astype(jnp.float32))[1] - 149  # a subnormal max is top·2^-149
    e = jnp.where(top >= 0x00800000, (top >> 23) - 126, jnp.where(top > 0, e_sub, 0))
    a1, a2 = _pow2_pair(-e)
    b1, b2 = _pow2_pair(-e - 149)
    sub = mag.astype(jnp.float32) * b1 * b2
    sub = jnp.where(bits < 0, -sub, sub)
    return jnp.where(mag < 0x00800000, sub, W * a1 * a2), e


def _pow2_pair(k: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Two normal float32 powers of two whose product is ``2^k`` (``k`` clipped to ``[−252, 252]``): multiplying by
    them in turn scales exactly where the input and the result are normal, at two multiplications per entry."""
    k = jnp.clip(k, -252, 252)
    h = k // 2
    return jnp.ldexp(jnp.float32(1.0), h), jnp.ldexp(jnp.float32(1.0), k - h)


def _scaled_back(s: Float[Array, " r"], e: jax.Array) -> Float[Array, " r"]:
    """``s·2^e`` in float64 (exact)."""
    return jnp.ldexp(s.astype(jnp.float64), e)


def _gram(W: Float[Array, "V d"], accumulate: Any) -> Float[Array, "n n"]:
    """Gram matrix of the smaller side, ``WᵀW`` (d ≤ V) or ``WWᵀ``, accumulated in ``accumulate`` dtype."""
    W = W.astype(accumulate)
    contract = 0 if W.shape[0] >= W.shape[1] else 1
    return jax.lax.dot_general(W, W, (((contract,), (contract,)), ((), ())))


def _sigma_from_eigs(lam: Float[Array, " n"]) -> Float[Array, " n"]:
    """Descending σ = √max(λ, 0) from ascending eigenvalues (tiny negative rounding is clipped to 0)."""
    return jnp.sqrt(jnp.clip(lam[::-1], 0.0, None))


# The kernels run under jax.enable_x64 and return σ in float64, exactly scaled back from the normalised matrix.


@jax.jit
def _sv_svd(W: Float[Array, "V d"]) -> Float[Array, " r"]:
    Wn, e = _normalized(W)
    return _scaled_back(jnp.linalg.svd(Wn, compute_uv=False), e)


@jax.jit
def _sv_gram(W: Float[Array, "V d"]) -> Float[Array, " r"]:
    # float32 accumulation (the cost: V·d² flops), float64 eigenvalues (d³, small).
    Wn, e = _normalized(W)
    G = _gram(Wn, jnp.float32).astype(jnp.float64)
    return _scaled_back(_sigma_from_eigs(jnp.linalg.eigvalsh(G)), e)


@jax.jit
def _sv_gram64(W: Float[Array, "V d"]) -> Float[Array, " r"]:
    Wn, e = _normalized(W)
    return _scaled_back(_sigma_from_eigs(jnp.linalg.eigvalsh(_gram(Wn, jnp.float64))), e)


def _gram_is_accurate_traced(s: Float[Array, " r"]) -> jax.Array:
    """:func:`gram_is_accurate` as a traceable boolean (the same rule on the same numbers)."""
    s0 = s[0]
    smallest = jnp.min(jnp.where(s >= AUTO_FLOOR * s0, s, jnp.inf))
    return (s0 <= 0) | (smallest / jnp.where(s0 > 0, s0, 1.0) >= math.sqrt(U32 / (2 * AUTO_RTOL)))


@jax.jit
def _sv_auto(W: Float[Array, "V d"]) -> Float[Array, " r"]:
    """``"gram"``, redone by ``"gram64"`` when the rule of :func:`gram_is_accurate` fails: one program, the choice
    made on the device by ``lax.cond`` (so ``"auto"`` traces under ``jax.jit``; only the branch taken runs)."""
    s = _sv_gram(W)
    return jax.lax.cond(_gram_is_accurate_traced(s), lambda: s, lambda: _sv_gram64(W))


_KERNELS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "auto": _sv_auto, "svd": _sv_svd, "gram": _sv_gram, "gram64": _sv_gram64,
}


# ---------------------------------------------------------------------------------------------------------
# The host path: a matrix already in CPU memory goes to NumPy's BLAS
# ---------------------------------------------------------------------------------------------------------

#: Rows per block of the host Gram matrix: products summed in the block's dtype, blocks summed in float64. 8192
#: rather than 4096: 4-12% faster in float32 (50,257×768, 262,144×640), the eigenvalue error 1.1-1.4× larger.
HOST_BLOCK_ROWS = 8192
#: Rows per block of the host's float64 Gram matrix (bounds the float64 copy to 4096·d entries).
HOST_BLOCK_ROWS_64 = 4096


#: Largest |binary exponent| of max|W| at which the float32 Gram matrix needs no scaling: entries up to
#: ``V·2^80`` (no overflow below V = 2^46), eigenvalues ≥ (1e-3·σ_1)² ≥ 2^-100 (no underflow).
HOST_SAFE_EXPONENT = 40


def host_gram(
    W: Float[np.ndarray, "V d"], e: int = 0, dtype: Any = np.float32, block_rows: int = HOST_BLOCK_ROWS
) -> Float[np.ndarray, "d d"]:
    """``Σ_b (2^−e·W_b)ᵀ(2^−e·W_b)`` over blocks ``W_b`` of ``block_rows`` rows, each product in ``dtype``
    (``B.T @ B``: NumPy calls BLAS ``syrk``, half the flops of a general product), the sum in float64.

    Blocked summation (Higham 2002, §4.2): a float32 sum of ``V`` products errs by up to ``γ_V`` relatively, one
    of ``b`` products then ``V/b`` float64 additions by about ``γ_b``; measured on 50,257×768 power-law matrices
    (a = 1, 1.5, 2; blocks of 8192 rows) the eigenvalues' error is 2-8× below that of one float32 product ``WᵀW``.
    ``ldexp`` scales exactly, subnormal entries included (NumPy does not flush them); ``e = 0`` skips it.

    A block that must be cast or scaled is copied into one buffer reused for every block: a fresh float64 copy
    per block costs its page faults each time (measured 0.29 s against 0.25 s on 50,257×768, where ``syrk`` on a
    float64 copy made beforehand takes 0.23 s). A contiguous block already in ``dtype`` is used in place."""
    V, d = W.shape
    G = np.zeros((d, d), np.float64)
    P = np.empty((d, d), dtype)  # each block's product, written in place (no d×d allocation per block)
    buffer = None
    for i in range(0, V, block_rows):
        B = W[i:i + block_rows]
        if e or B.dtype != dtype or not B.flags.c_contiguous:
            if buffer is None:
                buffer = np.empty((min(block_rows, V), d), dtype)
            X = buffer[:B.shape[0]]
            np.copyto(X, B, casting="unsafe")
            if e:
                np.ldexp(X, np.int32(-e), out=X)
            B = X
        np.matmul(B.T, B, out=P)
        G += P
    return G


def _host_sigma(W: Float[np.ndarray, "V d"], e: int, dtype: Any) -> Float[np.ndarray, " d"]:
    """Descending σ of ``2^−e·W`` (``V ≥ d``) from the blocked host Gram matrix in ``dtype``, diagonalised in
    float64 (LAPACK ``dsyevd``)."""
    rows = HOST_BLOCK_ROWS if dtype == np.float32 else HOST_BLOCK_ROWS_64
    lam = np.linalg.eigvalsh(host_gram(W, e, dtype, rows))
    return np.sqrt(np.clip(lam[::-1], 0.0, None))


def _looks_narrow(G: Float[np.ndarray, "d d"]) -> bool:
    """A quick reading of :func:`gram_is_accurate` off the Gram matrix of ``m = 4d`` sampled rows: every
    relevant eigenvalue (``λ ≥ λ_0 = 1e-6·λ_1/9``, i.e. ``σ ≥ 1e-3·σ_1/3``) at least ``τ = λ_1·u/(2·1e-4)/9``.

    By inertia, with Cholesky factorisations (d³/3 flops each, a tenth of ``eigvalsh``; ``λ_1`` by power
    iteration): ``G − τI`` positive definite means no eigenvalue below ``τ`` (narrow); otherwise ``G − λ_0·I``
    positive definite means one lies in ``[λ_0, τ)`` (wide). Where both fail (eigenvalues below ``λ_0``: a
    rank-deficient sample), the spectrum in full decides.

    The 1/9 in both: a sample of ``m`` rows of ``W = UΣVᵀ`` (U incoherent) scales ``σ_k`` by factors within
    ``1 ± √(d/m)`` (Marchenko–Pastur), so the ratio ``σ_k/σ_1`` of the sample can be ``(1−½)/(1+½) = 1/3`` of
    ``W``'s (at a = 1, GPT-2's shape, the sample's smallest eigenvalue falls below ``1e-6·λ_1``). A heuristic
    that only picks the first pass: the result is always checked by the rule itself."""
    v = np.ones(G.shape[0]) / math.sqrt(G.shape[0])
    lam1 = 0.0
    for _ in range(30):
        w = G @ v
        lam1 = float(np.linalg.norm(w))
        if lam1 == 0.0:
            return True
        v = w / lam1
    tau, lam0 = lam1 * U32 / (2 * AUTO_RTOL) / 9, AUTO_FLOOR**2 * lam1 / 9
    if _positive_definite(G, tau):
        return True
    if _positive_definite(G, lam0):
        return False
    lam = np.clip(np.linalg.eigvalsh(G)[::-1], 0.0, None)
    return bool(lam[0] <= 0 or lam[lam >= lam0][-1] >= tau)


def _positive_definite(G: Float[np.ndarray, "d d"], shift: float) -> bool:
    """``G − shift·I`` has a Cholesky factor (every eigenvalue of ``G`` above ``shift``, to rounding)."""
    try:
        np.linalg.cholesky(G - shift * np.eye(G.shape[0]))
        return True
    except np.linalg.LinAlgError:
        return False


def _host_singular_values(W: Float[np.ndarray, "V d"], method: str, amax: float) -> Float[np.ndarray, " r"]:
    """σ of a matrix in CPU memory, in float64, by ``"gram"``, ``"gram64"`` or ``"auto"`` — the same rule and
    guarantee as the compiled kernels, with NumPy's BLAS doing the ``V·d²`` work (:func:`host_gram`).

    ``"auto"`` first reads the rule off the Gram matrix of ~4d evenly spaced rows (a twelfth of the work at
    GPT-2's shape, :func:`_looks_narrow`): a spectrum already too wide there goes straight to float64, skipping
    a float32 pass it would throw away. A matrix with fewer than ``8d`` rows (its ``V·d²`` Gram costs about what
    the ``d³`` eigenvalues cost) takes one float64 pass.
    """
    if W.shape[0] < W.shape[1]:
        W = W.T
    e = math.frexp(amax)[1] if amax > 0 else 0
    e32 = e if abs(e) > HOST_SAFE_EXPONENT else 0  # float64 needs no scaling at any float32 magnitude
    if method == "gram64":
        return _host_sigma(W, 0, np.float64)
    if method == "gram":
        return np.ldexp(_host_sigma(W, e32, np.float32), e32)
    step = W.shape[0] // (4 * W.shape[1])
    if step < 2:  # V < 8d: the Gram matrix costs no more than its eigenvalues; one float64 pass
        return _host_sigma(W, 0, np.float64)
    if _looks_narrow(host_gram(W[::step], e32, np.float32, HOST_BLOCK_ROWS)):
        s = np.ldexp(_host_sigma(W, e32, np.float32), e32)
        if gram_is_accurate(s):
            return s
    return _host_sigma(W, 0, np.float64)


def gram_is_accurate(sigma: Float[Array, " r"] | np.ndarray) -> bool:
    """The rule ``method="auto"`` uses to trust the float32-accumulated Gram matrix.

    Rounding the Gram matrix ``G = WᵀW`` to float32 perturbs its eigenvalues by at most about ``u·λ_1``
    (``u = 2⁻²⁴``; the float32 product errors are far smaller in practice, ~u·λ_1/50 measured), so the
    relative error of ``σ_k = √λ_k`` is at most ``u·σ_1² / (2σ_k²)``. ``auto`` needs it below ``1e-4`` for every
    ``σ_k ≥ 1e-3·σ_1``; that holds when the smallest such σ satisfies

        σ_min,rel / σ_1 ≥ √(u / (2·1e-4)) ≈ 0.0173,

    i.e. when the part of the spectrum that counts spans less than ~35 dB. Wider spectra fall back to a Gram
    matrix accumulated in float64 (relative error ≤ 2⁻⁵³·10⁶/2 ≈ 6e-11 at σ = 1e-3·σ_1).
    """
    s = np.asarray(sigma, dtype=np.float64)
    if s.size == 0 or s[0] <= 0:
        return True
    relevant = s[s >= AUTO_FLOOR * s[0]]
    return bool(relevant[-1] / s[0] >= math.sqrt(U32 / (2 * AUTO_RTOL)))


def singular_values(
    W: Float[Array, "V d"] | np.ndarray, method: str = "auto", *, block_rows: int = 8192
) -> Float[Array, " r"]:
    """Singular values of a matrix, in descending order, as a float32 array of length ``min(V, d)``.

    Args:
      W: a ``V×d`` floating-point matrix (NumPy or JAX; a NumPy memmap works with ``"chunked"``).
      method:
        * ``"svd"``: exact SVD (LAPACK/cuSOLVER through ``jnp.linalg.svd``); absolute error ~u·σ_1.
        * ``"gram"``: eigenvalues of the smaller Gram matrix (``WᵀW``, d×d), accumulated in float32 and
          diagonalised in float64 — the fast path, ``V·d²`` flops instead of ``~4V·d²``.
        * ``"gram64"``: the same with float64 accumulation (for spectra with a wide dynamic range).
        * ``"chunked"``: ``WᵀW`` accumulated in float64 over blocks of ``block_rows`` rows, so a matrix streamed
          from disk or larger than device memory needs only O(d²) extra memory. Only blocks are moved to the
          device. Requires ``V ≥ d`` (rows are streamed). As accurate as ``"gram64"`` at any dynamic range.
        * ``"auto"``: ``"gram"``, then the rule of :func:`gram_is_accurate` on the result; where the spectrum is too
          wide for it, ``"gram64"``. Every σ_k ≥ 1e-3·σ_1 then has relative error ≤ 1e-4. The choice is made inside
          one compiled program (``lax.cond``), so ``"auto"`` works under ``jax.jit``/``vmap`` like the others.
      block_rows: rows per block for ``"chunked"``.

    Where the matrix lives decides who does the ``V·d²`` work of ``"gram"``/``"gram64"``/``"auto"``: a concrete
    matrix in CPU memory (NumPy, or a JAX array on CPU devices) goes to NumPy's BLAS (:func:`host_gram`: a
    symmetric rank-k update in blocks of 8,192 rows (4,096 in float64), summed in float64 — half XLA:CPU's flops
    and a smaller float32 error; ``"auto"`` also skips a float32 pass a row sample already shows too wide); under
    ``jax.jit`` and on accelerators, the compiled kernels above. Both meet the same accuracy rule.

    Every method except ``"chunked"`` (float64 throughout) works on ``W·2^−e``, ``e`` the binary exponent of
    ``max|W|``, and returns ``2^e·σ(W·2^−e)`` (exact: a power of two), so ``σ(c·W) = |c|·σ(W)`` holds at any
    magnitude float32 holds — the float32 Gram matrix of ``W·1e19`` would overflow, that of ``W·1e−20`` underflow.

    Returns:
      ``σ_1 ≥ … ≥ σ_r`` (float32; values below float32's normal range come out as 0).

    Raises:
      ValueError: ``max|W|`` above float32's largest number (float64 input), or nonzero but below its smallest
        normal number; ``σ_1`` above float32's largest number. These value checks are skipped under tracing
        (``jax.jit``), where a ``σ_1`` too large for float32 comes out as ``inf``.
    """
    check_choice(method, "method", METHODS)
    if method == "chunked":
        check_int(block_rows, "block_rows", lo=1)
        return _singular_values_chunked(W, block_rows)
    traced = _is_tracer(W)
    if traced:
        W = check_matrix(W)
    else:
        W, amax = check_matrix_max_abs(W)
        _check_float32_range(amax, "W")
        host = host_view(W)
        if method != "svd" and host is not None:
            s = _host_singular_values(host, method, amax)
            _check_sigma_fits(s[:1], "W")
            return jnp.asarray(s.astype(np.float32))
    with jax.enable_x64(True):
        W = jnp.asarray(W)
        if W.dtype == jnp.float64:
            W = W.astype(jnp.float32)
        s = _KERNELS[method](W)
        if not traced:
            _check_sigma_fits(s[:1], "W")
        return s.astype(jnp.float32)


def _singular_values_chunked(W: Any, block_rows: int) -> Float[Array, " r"]:
    if not (hasattr(W, "shape") and hasattr(W, "dtype") and len(W.shape) == 2):
        raise ValueError(f"W: expected a 2-D array (or memmap) for method='chunked', got {describe(W)}")
    V, d = W.shape
    if V < d:
        raise ValueError(f"W: method='chunked' streams rows and needs V >= d, got shape {tuple(W.shape)}")
    if V == 0 or d == 0:
        raise ValueError(f"W: expected a non-empty array, got shape {tuple(W.shape)}")
    amax = 0.0
    with jax.enable_x64(True):
        G = jnp.zeros((d, d), jnp.float64)
        for start in range(0, V, block_rows):
            name = f"W[{start}:{start + block_rows}]"
            block = check_float_array(np.asarray(W[start : start + block_rows]), name)
            block_max = float(np.max(np.abs(block)))
            _check_float32_range(max(block_max, _F32_TINY), name)  # too large (float64 input)
            amax = max(amax, block_max)
            block = block.astype(np.float32)
            if np.any((np.abs(block) < _F32_TINY) & (block != 0)):  # subnormals, which XLA:CPU reads as 0: widen
                block = block.astype(np.float64)  # on the host instead (exact)
            G = _accumulate_gram(G, jnp.asarray(block))
        _check_float32_range(amax, "W")  # nonzero, but every entry subnormal
        s = _sigma_from_eigs(jnp.linalg.eigvalsh(G))
        _check_sigma_fits(s[:1], "W")
        return s.astype(jnp.float32)


@partial(jax.jit, donate_argnums=0)
def _accumulate_gram(G: Float[Array, "d d"], block: Float[Array, "b d"]) -> Float[Array, "d d"]:
    """``G + blockᵀ·block`` in float64 (the blocks arrive as float32 and are widened on the device; a block with
    subnormal entries arrives as float64)."""
    block = block.astype(jnp.float64)
    return G + jax.lax.dot_general(block, block, (((0,), (0,)), ((), ())))


def singular_values_batched(
    Ws: Float[Array, "B V d"] | np.ndarray,
    method: str = "auto",
    *,
    devices: Iterable[jax.Device] | None = None,
) -> Float[Array, "B r"]:
    """Singular values of a stack of matrices ``Ws[b]`` in one jit-compiled call, sharded over devices.

    The leading (batch) axis is split across ``devices`` (default: all of ``jax.devices()``) with a 1-D
    ``jax.sharding.Mesh``; a batch that does not divide evenly is padded with zero matrices, whose spectra are
    dropped. On one device this is a plain vmapped call. Methods as in :func:`singular_values` except
    ``"chunked"``; ``"auto"`` runs ``"gram"`` on the whole stack and redoes it with ``"gram64"`` if any matrix of
    the stack fails the accuracy rule.

    Returns:
      ``(B, min(V, d))`` descending singular values (float32).
    """
    check_choice(method, "method", ("auto", "svd", "gram", "gram64"))
    Ws = check_float_array(Ws, "Ws", ndim=3)
    _check_float32_range(max_abs(Ws), "Ws")
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices: expected at least one device, got none")
    B = Ws.shape[0]
    pad = (-B) % len(devices)
    with jax.enable_x64(True):
        Ws = jnp.asarray(Ws).astype(jnp.float32)
        if pad:
            Ws = jnp.concatenate([Ws, jnp.zeros((pad, *Ws.shape[1:]), Ws.dtype)])
        mesh = jax.sharding.Mesh(np.array(devices), ("batch",))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
        Ws = jax.device_put(Ws, sharding)
        kernel = "gram" if method == "auto" else method
        s = _batched_kernel(kernel, sharding, Ws)
        if method == "auto" and not all(gram_is_accurate(row) for row in np.asarray(s[:B])):
            s = _batched_kernel("gram64", sharding, Ws)
        _check_sigma_fits(s[:B, 0], "Ws")
        return s[:B].astype(jnp.float32)


@partial(jax.jit, static_argnums=(0, 1))
def _batched_kernel(kernel: str, sharding: jax.sharding.Sharding, Ws: jax.Array) -> jax.Array:
    """One of the single-matrix kernels vmapped over the stack, its output kept sharded like its input."""
    s = jax.vmap(_KERNELS[kernel])(Ws)
    return jax.lax.with_sharding_constraint(s, sharding)


# ---------------------------------------------------------------------------------------------------------
# Scalar measures on σ (jit-able; an all-zero spectrum gives 0)
# ---------------------------------------------------------------------------------------------------------


def _check_sigma(s: Any, name: str = "s") -> jax.Array | np.ndarray:
    s = check_float_array(s, name, ndim=1)
    if not isinstance(s, jax.core.Tracer):
        arr = np.asarray(s)
        if (arr < 0).any():
            raise ValueError(f"{name}: expected non-negative singular values, got min {arr.min():g}")
    return s


def _unit_max(s: Float[Array, " r"]) -> Float[Array, " r"]:
    """``s / max(s)`` (``s`` for a zero spectrum): the measures are scale-free, and σ² of σ ~ 1e20 or 1e−20
    would overflow or underflow in float32."""
    top = jnp.max(s)
    return s / jnp.where(top > 0, top, 1.0)


def _as_unit_sigma(s: Any) -> jax.Array:
    """Checked σ divided by its maximum, on the host in float64 when concrete (any magnitude float64 holds)."""
    s = _check_sigma(s)
    if _is_tracer(s):
        return jnp.asarray(s)
    a = np.asarray(s, dtype=np.float64)
    top = a.max()
    return jnp.asarray(a / top if top > 0 else a, jnp.float32)


@jax.jit
def _stable_rank(s: Float[Array, " r"]) -> Float[Array, ""]:
    s2 = jnp.square(_unit_max(s))
    top = jnp.max(s2)
    return jnp.where(top > 0, jnp.sum(s2) / jnp.where(top > 0, top, 1.0), 0.0)


@jax.jit
def _effective_rank(s: Float[Array, " r"]) -> Float[Array, ""]:
    s = _unit_max(s)
    total = jnp.sum(s)
    p = s / jnp.where(total > 0, total, 1.0)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return jnp.where(total > 0, jnp.exp(entropy), 0.0)


@jax.jit
def _participation_ratio(s: Float[Array, " r"]) -> Float[Array, ""]:
    s2 = jnp.square(s / jnp.where(jnp.max(s) > 0, jnp.max(s), 1.0))  # scale-free, avoids overflow of σ⁴
    num = jnp.square(jnp.sum(s2))
    den = jnp.sum(jnp.square(s2))
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def stable_rank(s: Float[Array, " r"]) -> Float[Array, ""]:
    """Stable rank ``r_s = Σσ_i² / σ_1² = ‖W‖_F² / ‖W‖_2²`` (Rudelson & Vershynin 2007); 0 for a zero matrix."""
    return _stable_rank(_as_unit_sigma(s))


def effective_rank(s: Float[Array, " r"]) -> Float[Array, ""]:
    """Effective rank ``exp(−Σ p_i ln p_i)``, ``p_i = σ_i / Σσ_j`` (Roy & Vetterli 2007); 0 for a zero matrix."""
    return _effective_rank(_as_unit_sigma(s))


def participation_ratio(s: Float[Array, " r"]) -> Float[Array, ""]:
    """Participation ratio ``(Σσ_i²)² / Σσ_i⁴`` of the eigenvalues ``λ_i = σ_i²``; 0 for a zero matrix."""
    return _participation_ratio(_as_unit_sigma(s))


# ---------------------------------------------------------------------------------------------------------
# Rank-decay exponent
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RankDecayFit:
    """``σ_k ≈ C k^(-a)`` fitted by least squares of ``ln σ_k`` on ``ln k`` over ranks ``k_lo..k_hi``.

    Attributes:
      a: the rank-decay exponent (NaN when undefined, with ``reason``).
      log_c: the intercept ``ln C``.
      k_lo, k_hi: the rank window actually used (1-based, inclusive).
      r2: coefficient of determination of the log–log fit.
      reason: why ``a`` is NaN, else ``None``.
    """

    a: float
    log_c: float
    k_lo: int
    k_hi: int
    r2: float
    reason: str | None = None


def rank_decay_exponent(s: Float[Array, " r"], k_lo: int = 1, k_hi: int | None = None) -> RankDecayFit:
    """Rank-decay exponent ``a`` of ``σ_k ≈ C k^(-a)`` over the rank window ``[k_lo, k_hi]`` (1-based, inclusive).

    ``a = −cov(ln k, ln σ_k) / var(ln k)`` over the window. ``k_hi`` defaults to the number of nonzero singular
    values (``ln 0`` is undefined); an explicit window that holds a zero σ is cut at the last nonzero one and the
    window used is reported. Fewer than two usable ranks give ``a = NaN`` with a reason.
    """
    s = np.asarray(_check_sigma(s), dtype=np.float64)
    r = s.size
    k_lo = check_int(k_lo, "k_lo", lo=1, hi=r)
    if k_hi is not None:
        k_hi = check_int(k_hi, "k_hi", lo=k_lo, hi=r)
    if np.any(np.diff(s) > 1e-6 * s.max()):
        raise ValueError("s: expected singular values in descending order")
    n_pos = int((s > 0).sum())
    hi = n_pos if k_hi is None else min(k_hi, n_pos)
    if hi - k_lo + 1 < 2:
        reason = (
            "all singular values are zero"
            if n_pos == 0
            else f"fewer than 2 nonzero singular values in the rank window [{k_lo}, {k_hi or r}]"
        )
        return RankDecayFit(math.nan, math.nan, k_lo, hi, math.nan, reason)
    k = np.arange(k_lo, hi + 1, dtype=np.float64)
    x, y = np.log(k), np.log(s[k_lo - 1 : hi])
    xm, ym = x.mean(), y.mean()
    sxx = np.sum((x - xm) ** 2)
    slope = np.sum((x - xm) * (y - ym)) / sxx
    resid = y - (ym + slope * (x - xm))
    syy = np.sum((y - ym) ** 2)
    r2 = 1.0 - np.sum(resid**2) / syy if syy > 0 else 1.0
    return RankDecayFit(float(-slope), float(ym - slope * xm), k_lo, hi, float(r2))


def alpha_from_rank_exponent(a: float | Float[Array, "..."]) -> Any:
    """ESD tail exponent implied by a rank-decay exponent: ``α = 1 + 1/(2a)``.

    If ``σ_k = C k^(-a)``, the eigenvalues ``λ_k = C² k^(-2a)`` have counting function ``N(>λ) ∝ λ^(-1/(2a))``
    and density ``ρ(λ) = −dN/dλ ∝ λ^(-1 - 1/(2a))``.
    """
    return 1.0 + 1.0 / (2.0 * a)


def rank_exponent_from_alpha(alpha: float | Float[Array, "..."]) -> Any:
    """Inverse of :func:`alpha_from_rank_exponent`: ``a = 1 / (2(α − 1))``."""
    return 1.0 / (2.0 * (alpha - 1.0))


# ---------------------------------------------------------------------------------------------------------
# ESD power-law fit (Clauset, Shalizi & Newman 2009; WeightWatcher's x_min scan)
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EsdFit:
    """Power-law fit ``ρ(λ) ∝ λ^(-α)`` of the eigenvalues ``λ_i = σ_i²`` over ``λ ≥ x_min``.

    Attributes:
      alpha: continuous MLE ``α = 1 + n_tail / Σ ln(λ_i / x_min)``.
      x_min: the lower cut-off.
      ks: Kolmogorov–Smirnov distance ``D`` between the tail and the fitted law.
      n_tail: number of eigenvalues ``≥ x_min``.
      sigma_alpha: standard error ``(α − 1)/√n_tail``.
      n_used: number of positive eigenvalues the fit saw (zeros are excluded).
    """

    alpha: float
    x_min: float
    ks: float
    n_tail: int
    sigma_alpha: float
    n_used: int


#: Fewest positive eigenvalues a power-law fit accepts.
MIN_EIGS_FOR_FIT = 3


#: The candidates of the x_min scan are split into this many ranges, each evaluated on the tail of its first
#: candidate only: ``n²(1/2 + 1/(2S))`` terms instead of ``n²`` (4096 eigenvalues: 0.016 → 0.010 s at S = 4), at the
#: price of S loops to compile per length.
ESD_SEGMENTS = 4
#: Terms per batch of the scan (about 8 MB of float64 temporaries whatever n).
_ESD_BATCH_TERMS = 2**20


def _esd_candidates(lam_sorted: Float[Array, " n"]) -> tuple[jax.Array, jax.Array, jax.Array]:
    """α_j and D_j for every candidate x_min = λ_j (ascending λ; ties use the first occurrence), float64.

    ``D`` depends on ``j`` only through the tail's first index ``f = first[j]``: ``D_f = max_{i≥f} |1 −
    e^{(1−α_f)(ln λ_i − ln λ_f)} − (i−f)/(n−f)|``, computed once per ``f`` and read back per candidate. The ``f`` of
    one of :data:`ESD_SEGMENTS` ranges ``[lo, hi)`` are evaluated on ``λ_lo … λ_{n−1}`` only (a static slice), the
    terms ``i < f`` masked out."""
    n = lam_sorted.shape[0]
    logl = jnp.log(lam_sorted)
    suffix = jnp.cumsum(logl[::-1])[::-1]  # Σ_{i≥f} ln λ_i
    tail = n - jnp.arange(n)  # n − f
    alpha_f = 1.0 + tail / (suffix - tail * logl)  # inf where the tail is all ties (its log-sum is 0)
    bounds = sorted({s * n // ESD_SEGMENTS for s in range(ESD_SEGMENTS)} | {n})
    parts = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        x, idx = logl[lo:], jnp.arange(lo, n)

        def ks_one(f: jax.Array, x: jax.Array = x, idx: jax.Array = idx) -> jax.Array:
            model = 1.0 - jnp.exp((1.0 - alpha_f[f]) * (x - logl[f]))  # CDF of the fitted law at each λ_i
            empirical = (idx - f) / tail[f]
            return jnp.max(jnp.where(idx >= f, jnp.abs(model - empirical), 0.0))

        batch = max(1, min(hi - lo, _ESD_BATCH_TERMS // (n - lo)))
        parts.append(jax.lax.map(ks_one, jnp.arange(lo, hi), batch_size=batch))
    first = jnp.searchsorted(lam_sorted, lam_sorted, side="left")  # tail = all λ ≥ λ_j (ties included)
    alpha, ks, n_tail = alpha_f[first], jnp.concatenate(parts)[first], tail[first]
    ks = jnp.where(jnp.isfinite(alpha) & (n_tail >= 2), ks, jnp.inf)
    return alpha, ks, n_tail


@jax.jit
def _esd_scan(lam_sorted: Float[Array, " n"]) -> tuple[jax.Array, ...]:
    alpha, ks, n_tail = _esd_candidates(lam_sorted)
    ks = ks.at[-1].set(jnp.inf)  # every candidate but the largest eigenvalue
    j = jnp.argmin(ks)
    return alpha[j], lam_sorted[j], ks[j], n_tail[j]


@jax.jit
def _esd_fixed(lam_sorted: Float[Array, " n"], x_min: Float[Array, ""]) -> tuple[jax.Array, ...]:
    logl = jnp.log(lam_sorted)
    in_tail = lam_sorted >= x_min
    n_tail = jnp.sum(in_tail)
    alpha = 1.0 + n_tail / jnp.sum(jnp.where(in_tail, logl - jnp.log(x_min), 0.0))
    f = lam_sorted.shape[0] - n_tail
    idx = jnp.arange(lam_sorted.shape[0])
    model = 1.0 - jnp.exp((1.0 - alpha) * (logl - jnp.log(x_min)))
    ks = jnp.max(jnp.where(in_tail, jnp.abs(model - (idx - f) / n_tail), 0.0))
    return alpha, x_min, ks, n_tail


def fit_esd_powerlaw(s: Float[Array, " r"], x_min: float | None = None) -> EsdFit:
    """Clauset–Shalizi–Newman power-law fit of the empirical spectral density of ``λ = σ²``.

    For a cut-off ``x_min`` the continuous MLE is ``α = 1 + n_tail / Σ_{λ_i ≥ x_min} ln(λ_i / x_min)``. With the
    tail sorted ascending ``x_0 = x_min ≤ … ≤ x_{n−1}``, the Kolmogorov–Smirnov distance is
    ``D = max_i |1 − (x_i/x_min)^(1−α) − i/n|``. Without ``x_min``, every eigenvalue but the largest is a
    candidate and the one with the smallest ``D`` wins (WeightWatcher's convention; Clauset et al. 2009, §3.3).
    All candidates are evaluated at once in one jit-compiled float64 kernel (O(n²) work in
    batches of about 2²⁰ terms, so memory stays near 8 MB whatever n; :func:`_esd_candidates`).

    Args:
      s: singular values (any order; zeros are excluded from the fit).
      x_min: a fixed cut-off (in units of λ = σ²); ``None`` scans every candidate.

    Raises:
      ValueError: fewer than 3 positive eigenvalues, or an ``x_min`` that leaves fewer than 2 in the tail.
    """
    s = np.asarray(_check_sigma(s), dtype=np.float64)
    lam = np.sort(np.square(s[s > 0]))
    if lam.size and not (lam[0] > 0 and np.isfinite(lam[-1])):
        raise ValueError(
            f"s: expected singular values whose squares float64 can hold (about 1e-154 … 1e154), "
            f"got σ from {s[s > 0].min():.4g} to {s.max():.4g}"
        )
    if lam.size < MIN_EIGS_FOR_FIT:
        raise ValueError(
            f"s: a power-law fit needs at least {MIN_EIGS_FOR_FIT} positive eigenvalues, got {lam.size}"
        )
    with jax.enable_x64(True):
        lam_j = jnp.asarray(lam, dtype=jnp.float64)
        if x_min is None:
            alpha, xm, ks, n_tail = _esd_scan(lam_j)
        else:
            if not (isinstance(x_min, (int, float)) and x_min > 0 and math.isfinite(x_min)):
                raise ValueError(f"x_min: expected a positive finite number, got {describe(x_min)}")
            if int((lam >= x_min).sum()) < 2:
                raise ValueError(
                    f"x_min: expected a cut-off with at least 2 eigenvalues above it, got {x_min:g} "
                    f"(largest eigenvalue {lam[-1]:g})"
                )
            alpha, xm, ks, n_tail = _esd_fixed(lam_j, jnp.float64(x_min))
        alpha, n_tail = float(alpha), int(n_tail)
    return EsdFit(alpha, float(xm), float(ks), n_tail, (alpha - 1.0) / math.sqrt(n_tail), int(lam.size))


def alpha_hat(alpha: float, lambda_max: float) -> float:
    """WeightWatcher's weighted exponent ``α̂ = α · log10(λ_max)`` (Martin, Peng & Mahoney 2021, Nat. Commun.)."""
    return float(alpha) * math.log10(lambda_max) if lambda_max > 0 else math.nan


# ---------------------------------------------------------------------------------------------------------
# Everything at once
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SpectralSummary:
    """Every spectral measure of one matrix. NaN fields carry their reason in ``reasons``."""

    shape: tuple[int, int]
    singular_values: np.ndarray = dataclasses.field(repr=False)
    sigma_max: float
    sigma_min: float
    stable_rank: float
    effective_rank: float
    participation_ratio: float
    rank_fit: RankDecayFit
    esd: EsdFit | None
    alpha_hat: float
    reasons: dict[str, str]

    @property
    def rank_exponent(self) -> float:
        return self.rank_fit.a

    @property
    def esd_alpha(self) -> float:
        return self.esd.alpha if self.esd is not None else math.nan

    def as_dict(self) -> dict[str, Any]:
        """Plain-Python dict (no arrays), e.g. for JSON."""
        esd = self.esd
        return {
            "shape": list(self.shape),
            "stable_rank": self.stable_rank,
            "effective_rank": self.effective_rank,
            "participation_ratio": self.participation_ratio,
            "rank_exponent": self.rank_fit.a,
            "rank_window": [self.rank_fit.k_lo, self.rank_fit.k_hi],
            "esd_alpha": esd.alpha if esd else math.nan,
            "esd_xmin": esd.x_min if esd else math.nan,
            "esd_ks": esd.ks if esd else math.nan,
            "esd_n_tail": esd.n_tail if esd else 0,
            "esd_sigma_alpha": esd.sigma_alpha if esd else math.nan,
            "alpha_hat": self.alpha_hat,
            "sigma_max": self.sigma_max,
            "sigma_min": self.sigma_min,
            "reasons": dict(self.reasons),
        }


def summarize_spectrum(
    s: Float[Array, " r"], shape: tuple[int, int], *, rank_window: tuple[int, int | None] | None = None
) -> SpectralSummary:
    """:func:`summarize` for singular values already computed (``shape`` is the matrix's, for the record)."""
    s = np.sort(np.asarray(_check_sigma(s), dtype=np.float64))[::-1]
    k_lo, k_hi = rank_window if rank_window is not None else (1, None)
    reasons: dict[str, str] = {}
    rank_fit = rank_decay_exponent(s, k_lo, k_hi)
    if rank_fit.reason:
        reasons["rank_exponent"] = rank_fit.reason
    esd = None
    n_pos = int((s > 0).sum())
    if n_pos == 0:
        reasons["esd_alpha"] = "all singular values are zero"
    elif n_pos < MIN_EIGS_FOR_FIT:
        reasons["esd_alpha"] = f"only {n_pos} positive eigenvalues; a power-law fit needs {MIN_EIGS_FOR_FIT}"
    else:
        esd = fit_esd_powerlaw(s)
    ahat = alpha_hat(esd.alpha, s[0] ** 2) if esd is not None else math.nan
    unit = jnp.asarray(s / s[0] if s[0] > 0 else s, jnp.float32)  # the ranks are scale-free; σ² may not fit float32
    return SpectralSummary(
        shape=tuple(int(n) for n in shape),
        singular_values=s.astype(np.float32),
        sigma_max=float(s[0]),
        sigma_min=float(s[-1]),
        stable_rank=float(_stable_rank(unit)),
        effective_rank=float(_effective_rank(unit)),
        participation_ratio=float(_participation_ratio(unit)),
        rank_fit=rank_fit,
        esd=esd,
        alpha_hat=ahat,
        reasons=reasons,
    )


def summarize(
    W: Float[Array, "V d"] | np.ndarray,
    *,
    method: str = "auto",
    rank_window: tuple[int, int | None] | None = None,
) -> SpectralSummary:
    """All spectral measures of ``W`` as one typed result (:class:`SpectralSummary`).

    ``rank_window = (k_lo, k_hi)`` sets the window of the rank-decay fit (default: every nonzero σ).
    An all-zero matrix gives stable rank 0, effective rank 0 and NaN exponents with reasons.
    """
    s = singular_values(W, method)
    return summarize_spectrum(s, tuple(W.shape), rank_window=rank_window)

