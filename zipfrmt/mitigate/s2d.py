"""S2D — Selective Spectral Decay (Chavan et al., arXiv 2602.14432, CVPR 2026).

Activation outliers of a linear layer are driven by the dominant singular values of its weight. S2D penalises
only the top ``k`` of them:

    L_S2D(W) = λ/(n+1) · Σ_{i≤k} σ_i^(n+1),        ∂L_S2D/∂W = λ · Σ_{i≤k} σ_i^n · u_i v_iᵀ

(``W = Σ_i σ_i u_i v_iᵀ``; the gradient formula is exact wherever σ_1 > … > σ_{k+1}, since ∂σ_i/∂W = u_i v_iᵀ).
With ``n = 1`` over all components the penalty is ``λ/2·‖W‖_F²`` and its gradient ``λW``: plain L2 decay.

Layout (Flax): a linear layer computes ``y = x @ W`` with ``W`` of shape ``(d_in, d_out)``, so ``u_i ∈ R^d_in``
(input side) and ``v_i ∈ R^d_out`` (output side). An embedding table ``V×d`` (rows = tokens) is the same with
``d_in = V`` (a one-hot input).

Choice of ``k`` per layer (the paper's principal-component dominance ratio, PCDR). For an input ``x`` the
output coordinate ``j`` is ``y_j = Σ_r σ_r (x·u_r) v_{jr}``; its top-``k`` share is

    PCDR_k(x, j) = |Σ_{r≤k} σ_r (x·u_r) v_{jr}| / |Σ_r σ_r (x·u_r) v_{jr}|.

:func:`pcdr` averages it over the *outlier activations* — the entries ``(x, j)`` of ``Y = XW`` with the largest
``|y|`` (the top ``outlier_fraction`` of them, at least one) — and :func:`select_k_pcdr` returns the smallest
``k ≤ K_max`` with ``PCDR_k ≥ τ``, or ``k = 0`` (no S2D gradient for that layer) where none reaches ``τ``.

Amortised SVD: the top singular triplets of every selected weight each ``every = m`` steps (the first step
included; from the smaller Gram matrix's eigendecomposition, equivalent to the full SVD's top factors), the top
factors ``(u_i, σ_i, v_i)`` cached in the optimizer state. Between refreshes the singular vectors are reused and
the singular values re-estimated from the current weight as ``σ̂_i = max(u_iᵀ W v_i, 0)`` — two mat-vecs per
component — so the decay tracks the shrinking σ_i instead of pushing with a stale, too-large value. The added
term is then exactly the gradient of the surrogate ``λ/(n+1) Σ_{i≤k} σ̂_i^(n+1)`` (vectors frozen), which equals
``L_S2D`` at each refresh.

Published defaults: ``τ = 0.95``, ``K_max = 3``, ``m = 100``, ``n = 2``, ``λ = 5e-4``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int

from zipfrmt.checks import (
    check_float32_range,
    check_float_array,
    check_int,
    check_matrix,
    check_number,
    describe,
    max_abs,
)
from zipfrmt.quant.uniform import binary_exponent, times_pow2

__all__ = [
    "DEFAULT_EVERY",
    "DEFAULT_K_MAX",
    "DEFAULT_LAM",
    "DEFAULT_N",
    "DEFAULT_TAU",
    "PCDRSelection",
    "S2DState",
    "decay_spectrum",
    "normalize_path",
    "path_name",
    "pcdr",
    "s2d",
    "s2d_gradient",
    "s2d_penalty",
    "select_k_pcdr",
    "select_k_tree",
]

#: The paper's published settings.
DEFAULT_TAU = 0.95
DEFAULT_K_MAX = 3
DEFAULT_EVERY = 100
DEFAULT_N = 2
DEFAULT_LAM = 5e-4

#: Default share of the entries of ``Y = XW`` that count as outlier activations.
DEFAULT_OUTLIER_FRACTION = 1e-3

PathFilter = Callable[[tuple[Any, ...], Any], bool]

_F32 = np.finfo(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------------


def _check_n(n: Any) -> float:
    return check_number(n, "n", lo=0.0, lo_open=True)


def _check_lam(lam: Any) -> float:
    return check_number(lam, "lam", lo=0.0)


def _check_k(k: Any, r: int | None = None, name: str = "k") -> int:
    return check_int(k, name, lo=0, hi=r)


def _check_tau(tau: Any) -> float:
    return check_number(tau, "tau", lo=0.0, hi=1.0, lo_open=True)


def _check_k_max(k_max: Any) -> int:
    return check_int(k_max, "k_max", lo=1)


def _check_range(x: Any, name: str) -> None:
    """``max|x|`` must be 0 or a normal float32 number (a float64 argument is not silently cast to inf or 0)."""
    if not isinstance(x, jax.core.Tracer):
        check_float32_range(max_abs(x), name, "S2D runs in float32")


def _check_activations(X: Any, d_in: int, name: str = "X") -> Any:
    X = check_float_array(X, name, ndim=2)
    if X.shape[1] != d_in:
        raise ValueError(
            f"{name}: expected calibration activations of width d_in={d_in} (rows = samples of the layer input, "
            f"y = x @ W with W of shape (d_in, d_out)), got shape {tuple(X.shape)}"
        )
    _check_range(X, name)
    return X


# ---------------------------------------------------------------------------------------------------------
# The penalty and its gradient
# ---------------------------------------------------------------------------------------------------------


def _top_mask(r: int, k: Any) -> jax.Array:
    return jnp.arange(r) < k


def _normalised(W: Float[Array, "d_in d_out"]) -> tuple[jax.Array, jax.Array]:
    """``(W·2^−e, e)`` in float32, ``e`` the binary exponent of ``max|W|`` (``max|W·2^−e| ∈ [0.5, 1)``; 0 for
    W = 0): exact, and ``σ(W) = 2^e·σ(W·2^−e)``."""
    Wf = W.astype(jnp.float32)
    e = binary_exponent(jax.lax.stop_gradient(jnp.max(jnp.abs(Wf))))
    return times_pow2(Wf, -e), e


def _times_scale(x: jax.Array, top: jax.Array, e: jax.Array, p: float, lam: Any) -> jax.Array:
    """``x · λ · σ^p`` for ``σ = top·2^e``, formed as ``x·2^f·2^i`` with ``i + f = log2 λ + p·(e + log2 top)``
    (``i`` an integer, ``0 ≤ f < 1``): powers of two apart from ``2^f``, so nothing overflows or underflows
    before the result itself does — a result beyond float32's range is ``±inf``, never ``inf·0 = NaN``. 0 where
    ``top = 0`` or ``λ = 0``."""
    pos = (top > 0) & (lam > 0)
    y = jnp.log2(jnp.where(pos, lam, 1.0)) + p * (e.astype(jnp.float32) + jnp.log2(jnp.where(pos, top, 1.0)))
    yi = jnp.floor(y)
    return jnp.where(pos, times_pow2(x * jnp.exp2(y - yi), yi.astype(jnp.int32)), 0.0)


def _relative_powers(s: jax.Array, k: Any, p: float) -> tuple[jax.Array, jax.Array]:
    """``((σ_i/σ_top)^p masked to i < k, σ_top)`` with ``σ_top`` the largest of the top-``k`` values: every
    power is in ``[0, 1]``."""
    mask = _top_mask(s.shape[0], k)
    top = jnp.max(jnp.where(mask, s, 0.0))
    r = s / jnp.where(top > 0, top, 1.0)
    return jnp.where(mask, r ** p, 0.0), top


@partial(jax.jit, static_argnames=("n",))
def _penalty(W: Float[Array, "d_in d_out"], k: Any, n: float, lam: Any) -> Float[Array, ""]:
    Wn, e = _normalised(W)
    rp, top = _relative_powers(jnp.linalg.svd(Wn, compute_uv=False), k, n + 1)
    return _times_scale(jnp.sum(rp) / (n + 1), top, e, n + 1, lam)


@partial(jax.jit, static_argnames=("n",))
def _gradient(W: Float[Array, "d_in d_out"], k: Any, n: float, lam: Any) -> Float[Array, "d_in d_out"]:
    Wn, e = _normalised(W)
    U, s, Vt = jnp.linalg.svd(Wn, full_matrices=False)
    rp, top = _relative_powers(s, k, n)
    return _times_scale((U * rp) @ Vt, top, e, n, lam).astype(W.dtype)


def _check_result(out: jax.Array, W: Any, what: str, n: float, lam: float) -> jax.Array:
    """A result beyond float32's range (it comes out ±inf) is a ValueError naming ``W`` (skipped under tracing)."""
    if isinstance(out, jax.core.Tracer) or bool(jnp.isfinite(out).all()):
        return out
    s1 = float(np.linalg.norm(np.asarray(W, np.float64), 2))
    raise ValueError(
        f"W: expected a matrix whose S2D {what} fits float32 (≤ {_F32.max:.4g}), got σ_1 = {s1:.4g} with n = {n:g}, "
        f"λ = {lam:g}; scale W down or lower λ"
    )


def s2d_penalty(
    W: Float[Array, "d_in d_out"], k: int, *, n: float = DEFAULT_N, lam: float = DEFAULT_LAM
) -> Float[Array, ""]:
    """The S2D penalty ``λ/(n+1) · Σ_{i≤k} σ_i^(n+1)`` of one weight (Chavan et al., arXiv 2602.14432).

    Differentiable with ``jax.grad`` (through ``jnp.linalg.svd``) wherever the top ``k+1`` singular values are
    distinct; :func:`s2d_gradient` is its closed form. ``k = 0`` gives 0; ``k = min(d_in, d_out)`` with ``n = 1``
    gives ``λ/2·‖W‖_F²``.

    Computed scale-free: the SVD of ``W·2^−e`` (``max`` in ``[0.5, 1)``), then ``λ/(n+1)·σ_1^(n+1)·Σ_{i≤k}
    (σ_i/σ_1)^(n+1)`` with the factor ``σ_1^(n+1)`` applied as a power of two times ``2^f``. A float64 ``W``
    beyond float32's range, or a penalty beyond it, is a ValueError (outside ``jax.grad``/``jit``).
    """
    W = check_matrix(W)
    _check_range(W, "W")
    k = _check_k(k, min(W.shape))
    n, lam = _check_n(n), _check_lam(lam)
    return _check_result(_penalty(jnp.asarray(W), k, n, lam), W, "penalty", n, lam)


def s2d_gradient(
    W: Float[Array, "d_in d_out"], k: int, *, n: float = DEFAULT_N, lam: float = DEFAULT_LAM
) -> Float[Array, "d_in d_out"]:
    """The S2D gradient ``λ · Σ_{i≤k} σ_i^n u_i v_iᵀ`` from a full SVD ``W = Σ σ_i u_i v_iᵀ``.

    With ``n = 1`` and ``k = min(d_in, d_out)`` it is ``λW`` (L2 decay). Computed as ``λσ_1^n · Σ_{i≤k}
    (σ_i/σ_1)^n u_i v_iᵀ`` from the SVD of ``W·2^−e`` (exact scaling), the factor applied as a power of two times
    ``2^f``: no ``σ^n`` overflows on its own, so there is no ``inf·0 = NaN``. A float64 ``W`` beyond float32's
    range, or a gradient beyond it, is a ValueError.
    """
    W = check_matrix(W)
    _check_range(W, "W")
    k = _check_k(k, min(W.shape))
    n, lam = _check_n(n), _check_lam(lam)
    return _check_result(_gradient(jnp.asarray(W), k, n, lam), W, "gradient", n, lam)


def decay_spectrum(
    sigma: Float[Array, " r"], k: int, t: float, *, n: float = DEFAULT_N, lam: float = DEFAULT_LAM
) -> Float[Array, " r"]:
    """Singular values after gradient flow on ``L_S2D`` alone for time ``t`` (learning rate × steps).

    The flow ``Ẇ = −λ Σ_{i≤k} σ_i^n u_i v_iᵀ`` leaves every singular vector fixed and moves only the top ``k``
    values, ``σ̇_i = −λ σ_i^n``:

        σ_i(t) = σ_i e^(−λt)                              (n = 1)
        σ_i(t) = (σ_i^(1−n) + (n−1) λ t)^(1/(1−n))       (n ≠ 1)

    This is what S2D does to a matrix that no task loss holds in place (e.g. a stand-alone power-law matrix);
    the result is re-sorted in descending order. ``sigma`` must be singular values: non-negative and in
    descending order (else a ValueError). A zero value stays 0; ``t = 0`` returns ``sigma`` unchanged.

    Computed in float64 relative to ``m = σ_1`` (``x_i = σ_i/m``), so it is scale-covariant at any scale float32
    holds: for ``n > 1``, ``log σ_i(t) = log m − logaddexp((1−n)·log x_i, log((n−1)λt) + (n−1)·log m)/(n−1)``;
    for ``n < 1``, ``σ_i(t) = m·max(x_i^(1−n) − (1−n)λt·m^(n−1), 0)^(1/(1−n))`` (the flow reaches 0 in finite
    time and stays there). Returned as float32.
    """
    s_in = check_float_array(sigma, "sigma", ndim=1)
    _check_range(s_in, "sigma")
    s = np.asarray(s_in, np.float64)
    neg = np.flatnonzero(s < 0)
    if neg.size:
        raise ValueError(f"sigma: expected non-negative singular values, got {neg.size} negative, the first "
                         f"σ_{neg[0] + 1} = {s[neg[0]]:.4g}")
    up = np.flatnonzero(np.diff(s) > 0)
    if up.size:
        i = int(up[0])
        raise ValueError(f"sigma: expected singular values in descending order (σ_1 ≥ σ_2 ≥ …), got "
                         f"σ_{i + 1} = {s[i]:.4g} < σ_{i + 2} = {s[i + 1]:.4g}")
    k = _check_k(k, s.shape[0])
    t = check_number(t, "t", lo=0.0)
    n = _check_n(n)
    lam = _check_lam(lam)
    m = float(s[0])
    lt = lam * t
    out = s.copy()
    if k > 0 and m > 0 and lt > 0:
        x = s[:k] / m
        if n == 1:
            new = s[:k] * math.exp(-lt)
        elif n > 1:
            with np.errstate(divide="ignore"):
                a = (1.0 - n) * np.log(x)  # +inf for σ_i = 0, which stays 0
            b = math.log((n - 1.0) * lt) + (n - 1.0) * math.log(m)
            new = np.exp(math.log(m) - np.logaddexp(a, b) / (n - 1.0))
        else:
            base = x ** (1.0 - n) - (1.0 - n) * lt * m ** (n - 1.0)
            new = m * np.maximum(base, 0.0) ** (1.0 / (1.0 - n))
        out[:k] = new
    return jnp.asarray(np.sort(out)[::-1].astype(np.float32))


# ---------------------------------------------------------------------------------------------------------
# PCDR selection of k
# ---------------------------------------------------------------------------------------------------------


class PCDRSelection(NamedTuple):
    """The choice of ``k`` for one layer.

    Attributes:
      k: smallest ``k ≤ K_max`` with ``PCDR_k ≥ τ``; 0 when no ``k ≤ K_max`` reaches ``τ`` (no S2D gradient).
      pcdr: ``PCDR_1 … PCDR_{K_max}`` on the outlier activations.
      n_outliers: how many entries of ``Y = XW`` counted as outliers (the nonzero ones among the largest
        ``|y|``, see :func:`pcdr`).
    """

    k: int
    pcdr: np.ndarray
    n_outliers: int


@partial(jax.jit, static_argnames=("k_max", "n_out"))
def _pcdr_kernel(
    W: Float[Array, "d_in d_out"], X: Float[Array, "N d_in"], k_max: int, n_out: int
) -> tuple[Float[Array, " k_max"], Int[Array, ""]]:
    """(mean PCDR over the outliers with ``y ≠ 0``, their number). ``W`` and ``X`` are scaled by powers of two to
    ``max ∈ [0.5, 1)`` first (exact; the ratios are scale-free), so ``Y`` neither overflows nor underflows."""
    W, _ = _normalised(W)
    X, _ = _normalised(X)
    U, s, Vt = jnp.linalg.svd(W, full_matrices=False)
    Y = X @ W  # (N, d_out)
    _, flat = jax.lax.top_k(jnp.abs(Y).reshape(-1), n_out)  # the outlier activations
    rows, cols = flat // Y.shape[1], flat % Y.shape[1]
    coeff = (X[rows] @ U[:, :k_max]) * s[:k_max]  # σ_r (x·u_r), (n_out, k_max)
    parts = coeff * Vt[:k_max, cols].T  # σ_r (x·u_r) v_{jr}
    partial_k = jnp.cumsum(parts, axis=1)  # Σ_{r≤k}
    total = jnp.abs(Y[rows, cols])
    valid = total > 0  # y = 0 has no share (0/0): excluded
    ratio = jnp.abs(partial_k) / jnp.where(valid, total, 1.0)[:, None]
    count = jnp.sum(valid)
    return jnp.sum(jnp.where(valid[:, None], ratio, 0.0), axis=0) / jnp.maximum(count, 1), count


def _no_output_error(W: Any, X: Any) -> ValueError:
    return ValueError(
        f"X, W: expected calibration activations with a nonzero output Y = X @ W (PCDR divides by |y|), got "
        f"Y = 0 everywhere (max|X| = {max_abs(X):.4g}, max|W| = {max_abs(W):.4g})"
    )


def _n_outliers(n_entries: int, fraction: float) -> int:
    return max(1, int(round(fraction * n_entries)))


def pcdr(
    W: Float[Array, "d_in d_out"],
    X: Float[Array, "N d_in"],
    k_max: int = DEFAULT_K_MAX,
    *,
    outlier_fraction: float = DEFAULT_OUTLIER_FRACTION,
) -> Float[Array, " k_max"]:
    """``PCDR_k`` for ``k = 1 … k_max``, averaged over the outlier activations of ``Y = X @ W``.

    ``PCDR_k(x, j) = |Σ_{r≤k} σ_r (x·u_r) v_{jr}| / |y_j|`` (Chavan et al., arXiv 2602.14432), averaged over the
    ``max(1, round(outlier_fraction·N·d_out))`` entries of ``Y`` with the largest ``|y|``, excluding any with
    ``y = 0`` (their ratio is 0/0; there are such only when fewer entries are nonzero). ``Y = 0`` everywhere is a
    ValueError. Scale-free: ``W`` and ``X`` are scaled by powers of two before the SVD.

    Args:
      W: ``(d_in, d_out)`` weight, ``y = x @ W``.
      X: calibration activations, rows = samples of the layer input, width ``d_in``.
      k_max: ``K_max ≥ 1`` (at most ``min(d_in, d_out)``).
      outlier_fraction: share of the entries of ``Y`` taken as outliers, in (0, 1].
    """
    W = check_matrix(W)
    _check_range(W, "W")
    k_max = check_int(_check_k_max(k_max), "k_max", hi=min(W.shape))
    X = _check_activations(X, W.shape[0])
    frac = check_number(outlier_fraction, "outlier_fraction", lo=0.0, hi=1.0, lo_open=True)
    n_out = _n_outliers(X.shape[0] * W.shape[1], frac)
    ratios, count = _pcdr_kernel(jnp.asarray(W), jnp.asarray(X), k_max, n_out)
    if int(count) == 0:
        raise _no_output_error(W, X)
    return ratios


def select_k_pcdr(
    W: Float[Array, "d_in d_out"],
    X: Float[Array, "N d_in"],
    tau: float = DEFAULT_TAU,
    k_max: int = DEFAULT_K_MAX,
    *,
    outlier_fraction: float = DEFAULT_OUTLIER_FRACTION,
) -> PCDRSelection:
    """The S2D choice of ``k`` for one layer: the smallest ``k ≤ K_max`` with ``PCDR_k ≥ τ``, else 0.

    See :func:`pcdr` for the ratio. ``τ ∈ (0, 1]`` (default 0.95), ``K_max ≥ 1`` (default 3; capped at
    ``min(d_in, d_out)``). ``k = 0`` means the layer's outliers are not dominated by a few components and S2D
    leaves it alone.
    """
    tau = _check_tau(tau)
    k_max = _check_k_max(k_max)
    W = check_matrix(W)
    _check_range(W, "W")
    k_max = min(k_max, min(W.shape))
    X = _check_activations(X, W.shape[0])
    frac = check_number(outlier_fraction, "outlier_fraction", lo=0.0, hi=1.0, lo_open=True)
    n_out = _n_outliers(X.shape[0] * W.shape[1], frac)
    ratios, count = _pcdr_kernel(jnp.asarray(W), jnp.asarray(X), k_max, n_out)
    if int(count) == 0:
        raise _no_output_error(W, X)
    ratios = np.asarray(ratios, np.float64)
    hits = np.flatnonzero(ratios >= tau)
    return PCDRSelection(int(hits[0]) + 1 if hits.size else 0, ratios, int(count))


# ---------------------------------------------------------------------------------------------------------
# Paths of a parameter pytree
# ---------------------------------------------------------------------------------------------------------


def normalize_path(key_path: tuple[Any, ...]) -> tuple[str | int, ...]:
    """A JAX key path as a plain tuple: ``DictKey('a')`` → ``'a'``, ``SequenceKey(0)`` → ``0``, attributes by name.

    The ``.value`` attribute of a Flax NNX ``Variable`` is dropped, so ``nnx.state(model)['lin']['kernel']`` has the
    path ``('lin', 'kernel')`` exactly as the nested dict ``{'lin': {'kernel': W}}`` does.
    """
    out: list[str | int] = []
    for entry in key_path:
        if isinstance(entry, jax.tree_util.DictKey):
            out.append(entry.key if isinstance(entry.key, (str, int)) else str(entry.key))
        elif isinstance(entry, jax.tree_util.SequenceKey):
            out.append(entry.idx)
        elif isinstance(entry, jax.tree_util.GetAttrKey):
            if entry.name != "value":
                out.append(entry.name)
        elif isinstance(entry, jax.tree_util.FlattenedIndexKey):
            out.append(entry.key)
        else:
            out.append(str(entry))
    return tuple(out)


def path_name(path: tuple[str | int, ...]) -> str:
    """``('layers', 0, 'kernel')`` → ``'layers/0/kernel'`` (the keys of :class:`S2DState`'s dicts)."""
    return "/".join(str(p) for p in path)


def _default_filter(path: tuple[Any, ...], x: Any) -> bool:
    return getattr(x, "ndim", 0) == 2


def _selected(params: Any, param_filter: PathFilter) -> dict[str, tuple[tuple[Any, ...], Any]]:
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    out = {}
    for key_path, x in leaves:
        path = normalize_path(key_path)
        if param_filter(path, x):
            if getattr(x, "ndim", None) != 2:
                raise ValueError(
                    f"param_filter: selected {path_name(path)!r}, expected only 2-D weights (d_in, d_out), "
                    f"got {describe(x)}"
                )
            out[path_name(path)] = (path, x)
    return out


def select_k_tree(
    params: Any,
    activations: Mapping[Any, Any],
    tau: float = DEFAULT_TAU,
    k_max: int = DEFAULT_K_MAX,
    *,
    param_filter: PathFilter | None = None,
    outlier_fraction: float = DEFAULT_OUTLIER_FRACTION,
) -> dict[str, int]:
    """``k`` per selected weight of a parameter pytree, by :func:`select_k_pcdr` on its calibration activations.

    Args:
      params: nested dicts or an ``nnx.State``.
      activations: the layer inputs ``X`` (rows = samples, width ``d_in``; leading batch axes are flattened),
        keyed by the weight's path as a tuple (``('lin', 'kernel')``), by the module path (``('lin',)``) or by the
        string ``'lin/kernel'``. Every selected weight needs an entry (a missing one raises); exclude a weight
        with ``param_filter`` or give it ``k = 0`` in ``s2d`` instead. A weight whose activations have the width
        of its *second* axis is taken as used transposed (a tied embedding table E, V×d, in the head ``x Eᵀ``:
        :func:`zipfrmt.nn.collect_activations` records the head's input under ``embed/embedding``).
      param_filter: ``(path, array) -> bool``; default every 2-D leaf.

    Returns:
      ``{'lin/kernel': k, ...}``, ready for ``s2d(k=...)``.
    """
    tau = _check_tau(tau)
    k_max = _check_k_max(k_max)
    if not isinstance(activations, Mapping):
        raise TypeError(
            f"activations: expected a mapping from weight paths (('lin', 'kernel'), ('lin',) or 'lin/kernel') to "
            f"calibration activations, got {describe(activations)}"
        )
    if param_filter is not None and not callable(param_filter):
        raise TypeError(f"param_filter: expected a callable (path, array) -> bool, got {describe(param_filter)}")
    lookup: dict[str, Any] = {}
    for key, X in activations.items():
        lookup[path_name(tuple(key)) if isinstance(key, tuple) else str(key)] = X
    out = {}
    for name, (path, W) in _selected(params, param_filter or _default_filter).items():
        X = lookup.get(name, lookup.get(path_name(path[:-1])))
        if X is None:
            raise ValueError(f"activations: no calibration activations for the selected weight {name!r}")
        label = f"activations[{name!r}]"
        X = check_float_array(X, label)
        if X.ndim < 2:
            raise ValueError(f"{label}: expected layer inputs of shape (..., d_in), got shape {tuple(X.shape)}")
        X = X.reshape(-1, X.shape[-1])
        if X.shape[1] == W.shape[1] != W.shape[0]:  # a tied embedding E (V×d) acts as Eᵀ in the head: y = x Eᵀ
            W = W.T
        if X.shape[1] != W.shape[0]:
            raise ValueError(
                f"{label}: expected calibration activations of width d_in={W.shape[0]} for the selected weight "
                f"{name!r} of shape {tuple(W.shape)} (or {W.shape[1]} if it is used transposed), got shape "
                f"{tuple(X.shape)}"
            )
        out[name] = select_k_pcdr(W, X, tau, k_max, outlier_fraction=outlier_fraction).k
    return out


# ---------------------------------------------------------------------------------------------------------
# The optax transform
# ---------------------------------------------------------------------------------------------------------


class S2DState(NamedTuple):
    """State of :func:`s2d`: a pytree of arrays only (Orbax-checkpointable), keyed by the weights' path names.

    Attributes:
      count: optimizer steps taken (int32); the SVD is refreshed when ``count % every == 0``.
      u: ``{name: (d_in, K)}`` cached left singular vectors (``K`` = the largest ``k`` of the transform).
      sigma: ``{name: (K,)}`` cached singular values at the last refresh.
      v: ``{name: (d_out, K)}`` cached right singular vectors.
      k: ``{name: int32 scalar}`` components penalised (0 = none); may be replaced between steps, e.g. after a
        new PCDR selection (``state._replace(k=...)``), as long as each ``0 ≤ k ≤ K`` of that weight (the
        columns of ``u[name]``): an eager ``update`` raises otherwise; under ``jax.jit`` it cannot, and a larger
        ``k`` acts as ``K``.
    """

    count: Int[Array, ""]
    u: dict[str, Float[Array, "d_in K"]]
    sigma: dict[str, Float[Array, " K"]]
    v: dict[str, Float[Array, "d_out K"]]
    k: dict[str, Int[Array, ""]]


def _top_factors(W: Float[Array, "d_in d_out"], K: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Top-``K`` singular triplets from the eigendecomposition of the smaller Gram matrix (float32).

    ``WᵀW = V Σ² Vᵀ`` (or ``WWᵀ``), then ``u_i = W v_i / σ_i``: ``d_in·d_out·min(d_in, d_out)`` flops plus a
    ``min(d_in, d_out)³`` eigensolver, ~20× faster than ``jnp.linalg.svd`` on CPU for an 8192×256 table. The top
    values have relative error ~2⁻²⁴·σ_1²/σ_i², negligible for the few leading components S2D uses. The Gram
    matrix is that of ``W·2^−e`` (``max`` in ``[0.5, 1)``; exact), so it neither overflows nor underflows, and the
    values are scaled back by ``2^e``.
    """
    Wf, e = _normalised(W)
    tall = Wf.shape[0] >= Wf.shape[1]
    G = Wf.T @ Wf if tall else Wf @ Wf.T
    lam, Q = jnp.linalg.eigh(G)
    Q = Q[:, ::-1][:, :K]
    s = jnp.sqrt(jnp.maximum(lam[::-1][:K], 0.0))
    other = (Wf @ Q if tall else Wf.T @ Q) / jnp.where(s > 0, s, 1.0)
    s = times_pow2(s, e)
    return (other, s, Q) if tall else (Q, s, other)


def _s2d_term(
    W: Float[Array, "d_in d_out"], u: jax.Array, v: jax.Array, k: jax.Array, n: float, lam: float
) -> tuple[Float[Array, "d_in d_out"], Float[Array, " K"]]:
    """``λ Σ_{i≤k} σ̂_i^n u_i v_iᵀ`` with ``σ̂_i = max(u_iᵀ W v_i, 0)``, and σ̂. Formed scale-free, as
    ``λσ̂_top^n · Σ_{i≤k} (σ̂_i/σ̂_top)^n u_i v_iᵀ`` on ``W·2^−e`` (see :func:`_times_scale`): a term beyond float32's
    range is ±inf, never NaN."""
    Wn, e = _normalised(W)
    sig = jnp.maximum(jnp.einsum("ik,ij,jk->k", u, Wn, v), 0.0)
    rp, top = _relative_powers(sig, k, n)
    return _times_scale((u * rp) @ v.T, top, e, n, jnp.float32(lam)), times_pow2(sig, e)


def s2d(
    lam: float = DEFAULT_LAM,
    n: float = DEFAULT_N,
    k: int | Mapping[str, int] = DEFAULT_K_MAX,
    every: int = DEFAULT_EVERY,
    *,
    param_filter: PathFilter | None = None,
) -> optax.GradientTransformation:
    """S2D as an optax transform: adds ``λ Σ_{i≤k} σ_i^n u_i v_iᵀ`` to the updates of the selected 2-D weights.

    Chain it before the optimizer, like a loss term (Chavan et al., arXiv 2602.14432)::

        tx = optax.chain(s2d(lam=5e-4, n=2, k=ks, every=100), optax.adamw(1e-4))

    The updates it receives are the loss gradients; it returns ``g + ∂L_S2D/∂W`` for selected weights and
    ``g`` untouched for the rest. Placed after a gradient clip (as ``zipfrmt.nn``'s ``make_optimizer`` does:
    ``clip_by_global_norm → s2d → AdamW``), what it adds is never clipped — ``clip(g) + ∂L_S2D/∂W``, where a loss
    term would give ``clip(g + ∂L_S2D/∂W)``. The SVD of each selected weight is recomputed every ``every`` steps (first
    step included) and its top-``K`` factors cached in :class:`S2DState`; between refreshes the singular values
    are re-estimated as ``σ̂_i = max(u_iᵀ W v_i, 0)`` with the cached vectors (see the module docstring). The
    refresh is a ``jax.lax.cond`` on the step counter, so ``update`` is jit-compatible and deterministic.

    Args:
      lam: ``λ ≥ 0`` (default 5e-4).
      n: exponent ``n > 0`` of the gradient ``σ^n`` (default 2; 1 with ``k`` = all components is L2 decay).
      k: components per weight — one integer for all, or a mapping from the weight's path name
        (``'layers/0/kernel'``, see :func:`path_name`) to its ``k`` (e.g. from :func:`select_k_tree`); selected
        weights missing from the mapping get ``k = 0``. Capped at ``min(d_in, d_out)``.
      every: ``m ≥ 1``, steps between SVDs (default 100).
      param_filter: ``(path, array) -> bool`` on the normalised path (:func:`normalize_path`); default every 2-D
        leaf. A selected leaf that is not 2-D raises.

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` needs ``params``.
    """
    lam = _check_lam(lam)
    n = _check_n(n)
    every = check_int(every, "every", lo=1)
    if isinstance(k, Mapping):
        k_map = {str(name): _check_k(kk, name=f"k[{name!r}]") for name, kk in k.items()}
        k_default = 0
    else:
        k_map, k_default = {}, _check_k(k)
    if param_filter is not None and not callable(param_filter):
        raise TypeError(f"param_filter: expected a callable (path, array) -> bool, got {describe(param_filter)}")
    filt = param_filter or _default_filter

    def ks_for(params: Any) -> dict[str, tuple[tuple[Any, ...], Any, int]]:
        sel = _selected(params, filt)
        unknown = set(k_map) - set(sel)
        if unknown:
            raise ValueError(
                f"k: names {sorted(unknown)} match no selected 2-D weight; selected: {sorted(sel)}"
            )
        return {name: (path, W, min(k_map.get(name, k_default), min(W.shape))) for name, (path, W) in sel.items()}

    def init_fn(params: Any) -> S2DState:
        sel = ks_for(params)
        K = max([kk for _, _, kk in sel.values()] + [1])
        u, sigma, v, kk = {}, {}, {}, {}
        for name, (_, W, k_i) in sel.items():
            d_in, d_out = W.shape
            Ki = min(K, d_in, d_out)
            u[name] = jnp.zeros((d_in, Ki), jnp.float32)
            sigma[name] = jnp.zeros((Ki,), jnp.float32)
            v[name] = jnp.zeros((d_out, Ki), jnp.float32)
            kk[name] = jnp.asarray(k_i, jnp.int32)
        return S2DState(jnp.zeros((), jnp.int32), u, sigma, v, kk)

    def update_fn(updates: Any, state: S2DState, params: Any = None) -> tuple[Any, S2DState]:
        if params is None:
            raise ValueError("params: s2d needs the current parameters (update(updates, state, params)), got None")
        p_leaves = jax.tree_util.tree_flatten_with_path(params)[0]
        g_leaves, treedef = jax.tree_util.tree_flatten(updates)
        if len(g_leaves) != len(p_leaves):
            raise ValueError(
                f"updates: expected the structure of params ({len(p_leaves)} leaves), got {len(g_leaves)} leaves"
            )
        g_paths = [normalize_path(kp) for kp, _ in jax.tree_util.tree_flatten_with_path(updates)[0]]
        for i, ((kp, W), gp, g) in enumerate(zip(p_leaves, g_paths, g_leaves, strict=True)):
            pp = normalize_path(kp)
            if gp != pp:
                raise ValueError(f"updates: expected the structure of params; leaf {i} is {path_name(gp)!r} in "
                                 f"updates but {path_name(pp)!r} in params")
            name = path_name(pp)
            if name not in state.u:
                continue
            if tuple(g.shape) != tuple(W.shape):
                raise ValueError(f"updates: expected {name!r} of shape {tuple(W.shape)} (as in params), got "
                                 f"{tuple(g.shape)}")
            d_in, d_out, K = state.u[name].shape[0], state.v[name].shape[0], state.u[name].shape[1]
            if (d_in, d_out) != tuple(W.shape):
                raise ValueError(f"params: expected {name!r} of shape {(d_in, d_out)} (as at init), got "
                                 f"{tuple(W.shape)}")
            k_i = state.k[name]
            if not isinstance(k_i, jax.core.Tracer) and not 0 <= int(k_i) <= K:
                raise ValueError(f"state.k[{name!r}]: expected an integer in [0, {K}] (K = the components cached "
                                 f"at init), got {int(k_i)}")
        refresh = state.count % every == 0
        new_u, new_sigma, new_v = dict(state.u), dict(state.sigma), dict(state.v)
        out = []
        for (key_path, W), g in zip(p_leaves, g_leaves, strict=True):
            name = path_name(normalize_path(key_path))
            if name not in state.u:
                out.append(g)
                continue
            K = state.u[name].shape[1]
            u, s, v = jax.lax.cond(
                refresh,
                lambda W=W, K=K: _top_factors(W, K),
                lambda name=name: (state.u[name], state.sigma[name], state.v[name]),
            )
            term, _ = _s2d_term(W, u, v, state.k[name], n, lam)
            new_u[name], new_sigma[name], new_v[name] = u, s, v
            out.append(g + term.astype(g.dtype))
        new_state = S2DState(state.count + 1, new_u, new_sigma, new_v, state.k)
        return jax.tree_util.tree_unflatten(treedef, out), new_state

    return optax.GradientTransformation(init_fn, update_fn)
