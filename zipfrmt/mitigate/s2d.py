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

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int

from zipfrmt.checks import check_float_array, check_int, check_matrix, check_number, describe

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


def _check_activations(X: Any, d_in: int, name: str = "X") -> Any:
    X = check_float_array(X, name, ndim=2)
    if X.shape[1] != d_in:
        raise ValueError(
            f"{name}: expected calibration activations of width d_in={d_in} (rows = samples of the layer input, "
            f"y = x @ W with W of shape (d_in, d_out)), got shape {tuple(X.shape)}"
        )
    return X


# ---------------------------------------------------------------------------------------------------------
# The penalty and its gradient
# ---------------------------------------------------------------------------------------------------------


def _top_mask(r: int, k: Any) -> Float[Array, " r"]:
    return (jnp.arange(r) < k).astype(jnp.float32)


@partial(jax.jit, static_argnames=("n",))
def _penalty(W: Float[Array, "d_in d_out"], k: Any, n: float, lam: Any) -> Float[Array, ""]:
    s = jnp.linalg.svd(W.astype(jnp.float32), compute_uv=False)
    return lam / (n + 1) * jnp.sum(_top_mask(s.shape[0], k) * s ** (n + 1))


@partial(jax.jit, static_argnames=("n",))
def _gradient(W: Float[Array, "d_in d_out"], k: Any, n: float, lam: Any) -> Float[Array, "d_in d_out"]:
    U, s, Vt = jnp.linalg.svd(W.astype(jnp.float32), full_matrices=False)
    coef = lam * _top_mask(s.shape[0], k) * s**n
    return ((U * coef) @ Vt).astype(W.dtype)


def s2d_penalty(
    W: Float[Array, "d_in d_out"], k: int, *, n: float = DEFAULT_N, lam: float = DEFAULT_LAM
) -> Float[Array, ""]:
    """The S2D penalty ``λ/(n+1) · Σ_{i≤k} σ_i^(n+1)`` of one weight (Chavan et al., arXiv 2602.14432).

    Differentiable with ``jax.grad`` (through ``jnp.linalg.svd``) wherever the top ``k+1`` singular values are
    distinct; :func:`s2d_gradient` is its closed form. ``k = 0`` gives 0; ``k = min(d_in, d_out)`` with ``n = 1``
    gives ``λ/2·‖W‖_F²``.
    """
    W = check_matrix(W)
    k = _check_k(k, min(W.shape))
    return _penalty(jnp.asarray(W), k, _check_n(n), _check_lam(lam))


def s2d_gradient(
    W: Float[Array, "d_in d_out"], k: int, *, n: float = DEFAULT_N, lam: float = DEFAULT_LAM
) -> Float[Array, "d_in d_out"]:
    """The S2D gradient ``λ · Σ_{i≤k} σ_i^n u_i v_iᵀ`` from a full SVD ``W = Σ σ_i u_i v_iᵀ``.

    With ``n = 1`` and ``k = min(d_in, d_out)`` it is ``λW`` (L2 decay).
    """
    W = check_matrix(W)
    k = _check_k(k, min(W.shape))
    return _gradient(jnp.asarray(W), k, _check_n(n), _check_lam(lam))


def decay_spectrum(
    sigma: Float[Array, " r"], k: int, t: float, *, n: float = DEFAULT_N, lam: float = DEFAULT_LAM
) -> Float[Array, " r"]:
    """Singular values after gradient flow on ``L_S2D`` alone for time ``t`` (learning rate × steps).

    The flow ``Ẇ = −λ Σ_{i≤k} σ_i^n u_i v_iᵀ`` leaves every singular vector fixed and moves only the top ``k``
    values, ``σ̇_i = −λ σ_i^n``:

        σ_i(t) = σ_i e^(−λt)                              (n = 1)
        σ_i(t) = (σ_i^(1−n) + (n−1) λ t)^(1/(1−n))       (n ≠ 1)

    This is what S2D does to a matrix that no task loss holds in place (e.g. a stand-alone power-law matrix);
    the result is re-sorted in descending order.
    """
    s = check_float_array(sigma, "sigma", ndim=1)
    k = _check_k(k, s.shape[0])
    t = check_number(t, "t", lo=0.0)
    n = _check_n(n)
    lam = _check_lam(lam)
    s = jnp.asarray(s, jnp.float32)
    if n == 1:
        new = s * jnp.exp(-lam * t)
    else:
        # For n < 1 the flow reaches σ = 0 in finite time and stays there: clamp the base at 0.
        base = jnp.maximum(jnp.power(jnp.maximum(s, 1e-30), 1 - n) + (n - 1) * lam * t, 0.0)
        new = jnp.power(base, 1 / (1 - n))
    return -jnp.sort(-jnp.where(jnp.arange(s.shape[0]) < k, new, s))


# ---------------------------------------------------------------------------------------------------------
# PCDR selection of k
# ---------------------------------------------------------------------------------------------------------


class PCDRSelection(NamedTuple):
    """The choice of ``k`` for one layer.

    Attributes:
      k: smallest ``k ≤ K_max`` with ``PCDR_k ≥ τ``; 0 when no ``k ≤ K_max`` reaches ``τ`` (no S2D gradient).
      pcdr: ``PCDR_1 … PCDR_{K_max}`` on the outlier activations.
      n_outliers: how many entries of ``Y = XW`` counted as outliers.
    """

    k: int
    pcdr: np.ndarray
    n_outliers: int


@partial(jax.jit, static_argnames=("k_max", "n_out"))
def _pcdr_kernel(
    W: Float[Array, "d_in d_out"], X: Float[Array, "N d_in"], k_max: int, n_out: int
) -> Float[Array, " k_max"]:
    W = W.astype(jnp.float32)
    X = X.astype(jnp.float32)
    U, s, Vt = jnp.linalg.svd(W, full_matrices=False)
    Y = X @ W  # (N, d_out)
    _, flat = jax.lax.top_k(jnp.abs(Y).reshape(-1), n_out)  # the outlier activations
    rows, cols = flat // Y.shape[1], flat % Y.shape[1]
    coeff = (X[rows] @ U[:, :k_max]) * s[:k_max]  # σ_r (x·u_r), (n_out, k_max)
    parts = coeff * Vt[:k_max, cols].T  # σ_r (x·u_r) v_{jr}
    partial_k = jnp.cumsum(parts, axis=1)  # Σ_{r≤k}
    total = Y[rows, cols][:, None]
    return jnp.mean(jnp.abs(partial_k) / jnp.abs(total), axis=0)


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
    ``max(1, round(outlier_fraction·N·d_out))`` entries of ``Y`` with the largest ``|y|``.

    Args:
      W: ``(d_in, d_out)`` weight, ``y = x @ W``.
      X: calibration activations, rows = samples of the layer input, width ``d_in``.
      k_max: ``K_max ≥ 1`` (at most ``min(d_in, d_out)``).
      outlier_fraction: share of the entries of ``Y`` taken as outliers, in (0, 1].
    """
    W = check_matrix(W)
    k_max = check_int(_check_k_max(k_max), "k_max", hi=min(W.shape))
    X = _check_activations(X, W.shape[0])
    frac = check_number(outlier_fraction, "outlier_fraction", lo=0.0, hi=1.0, lo_open=True)
    n_out = _n_outliers(X.shape[0] * W.shape[1], frac)
    return _pcdr_kernel(jnp.asarray(W), jnp.asarray(X), k_max, n_out)


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
    k_max = min(k_max, min(W.shape))
    X = _check_activations(X, W.shape[0])
    frac = check_number(outlier_fraction, "outlier_fraction", lo=0.0, hi=1.0, lo_open=True)
    n_out = _n_outliers(X.shape[0] * W.shape[1], frac)
    ratios = np.asarray(_pcdr_kernel(jnp.asarray(W), jnp.asarray(X), k_max, n_out), np.float64)
    hits = np.flatnonzero(ratios >= tau)
    return PCDRSelection(int(hits[0]) + 1 if hits.size else 0, ratios, n_out)


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
    lookup: dict[str, Any] = {}
    for key, X in activations.items():
        lookup[path_name(tuple(key)) if isinstance(key, tuple) else str(key)] = X
    out = {}
    for name, (path, W) in _selected(params, param_filter or _default_filter).items():
        X = lookup.get(name, lookup.get(path_name(path[:-1])))
        if X is None:
            raise ValueError(f"activations: no calibration activations for the selected weight {name!r}")
        X = np.asarray(X)
        X = X.reshape(-1, X.shape[-1])
        if X.shape[1] == W.shape[1] != W.shape[0]:  # a tied embedding E (V×d) acts as Eᵀ in the head: y = x Eᵀ
            W = W.T
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
        new PCDR selection (``state._replace(k=...)``), as long as each ``k ≤ K``.
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
    values have relative error ~2⁻²⁴·σ_1²/σ_i², negligible for the few leading components S2D uses.
    """
    Wf = W.astype(jnp.float32)
    tall = Wf.shape[0] >= Wf.shape[1]
    G = Wf.T @ Wf if tall else Wf @ Wf.T
    lam, Q = jnp.linalg.eigh(G)
    Q = Q[:, ::-1][:, :K]
    s = jnp.sqrt(jnp.maximum(lam[::-1][:K], 0.0))
    other = (Wf @ Q if tall else Wf.T @ Q) / jnp.where(s > 0, s, 1.0)
    return (other, s, Q) if tall else (Q, s, other)


def _s2d_term(
    W: Float[Array, "d_in d_out"], u: jax.Array, v: jax.Array, k: jax.Array, n: float, lam: float
) -> tuple[Float[Array, "d_in d_out"], Float[Array, " K"]]:
    """``λ Σ_{i≤k} σ̂_i^n u_i v_iᵀ`` with ``σ̂_i = max(u_iᵀ W v_i, 0)``, and σ̂."""
    Wf = W.astype(jnp.float32)
    sig = jnp.maximum(jnp.einsum("ik,ij,jk->k", u, Wf, v), 0.0)
    coef = lam * (jnp.arange(u.shape[1]) < k) * sig**n
    return (u * coef) @ v.T, sig


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
