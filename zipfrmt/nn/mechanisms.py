"""Low-precision training beyond the forward pass: the mechanisms through which published low-bit training fails.

Each is named by rules on parameter sites (:mod:`zipfrmt.nn.rules`: ``wgrad/<param>``, ``master/<param>``,
``opt/<param>``, with ``<param>`` = ``embed``, ``pos``, ``head`` or ``linear/<layer>``) and is off unless a
rule names it:

* **Quantized weight gradients** (``wgrad``): ``g ← Q(∂L/∂W)`` for each named weight, before clipping and the
  optimiser — as MXFP4/NVFP4 training quantizes the weight-gradient GEMM's output (Tseng et al. 2025,
  arXiv 2502.20586; NVIDIA 2025, arXiv 2505.19115). The activation cotangents are the ``grad`` sites of the
  forward rules.
* **Low-precision master weights** (``master``): no float32 copy is kept; after every optimiser step the new
  weight is put back on its b-bit grid, ``W ← Q(W − η u)`` (nearest: updates smaller than half a step are
  lost, as in pure low-precision training, Zamirai et al. 2020, arXiv 2010.06192; stochastic rounding keeps
  them in expectation). The initial weights are put on the grid too.
* **Quantized optimizer state** (``opt``): AdamW's moments are stored quantized between steps, as 8-bit and
  4-bit optimizers do (Dettmers et al. 2022, arXiv 2110.02861; Li et al. 2023, arXiv 2309.01507). Each step
  dequantizes them, updates them with the new gradient in float32, computes the update from the float32
  moments, and stores the moments quantized again. The first moment ``m`` (signed) uses the site's spec; the
  second moment ``v ≥ 0`` uses a **zero-free** unsigned linear grid with the spec's bits and scale groups,
  levels ``k·M/2^b`` for ``k = 1 … 2^b`` with ``M`` the group's largest ``v`` — small entries round up to
  ``M/2^b``, never to 0 (the "zero-point problem" of Li et al. 2023: a second moment rounded to 0 divides the
  update by ``ε`` and blows it up).

Frozen parameters (``TrainConfig.freeze``, patterns over the same ``<param>`` names) get no update at all:
the control that keeps, e.g., the embedding at its float32 initialisation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from zipfrmt.nn.controls import control_spec, site_quantize
from zipfrmt.nn.rules import Rules, matches, param_sites, spec_of
from zipfrmt.quant import QuantSpec
from zipfrmt.quant.uniform import group_reduce

__all__ = ["QuantizedAdamState", "frozen_mask", "opt_specs", "quantize_params", "quantized_adam", "site_specs",
           "zero_free_quantize"]

Params = dict[str, Any]


def site_specs(rules: Rules, model: Any, kind: str) -> dict[tuple[str, ...], tuple[QuantSpec, bool, int]]:
    """``{path in the parameter dict: (spec, stored transposed, site index)}`` for the sites of ``kind``
    (``wgrad``, ``master`` or ``opt``) that the rules quantize."""
    out = {}
    for i, (name, (path, transposed, _)) in enumerate(param_sites(model).items()):
        spec = spec_of(rules, f"{kind}/{name}")
        if spec is not None:
            out[path] = (spec, transposed, i)
    return out


def _get(tree: Params, path: tuple[str, ...]) -> Any:
    for p in path:
        tree = tree[p]
    return tree


def _set(tree: Params, path: tuple[str, ...], value: Any) -> Params:
    """A copy of the nested dict ``tree`` with ``value`` at ``path`` (the other leaves shared)."""
    if len(path) == 1:
        return {**tree, path[0]: value}
    return {**tree, path[0]: _set(tree[path[0]], path[1:], value)}


def _on_rows(f: Callable[[jax.Array], jax.Array], W: jax.Array, transposed: bool) -> jax.Array:
    """``f`` applied to a weight in the layout specs see (a kernel as ``Wᵀ``), the result in W's layout."""
    return f(W.T).T if transposed else f(W)


def quantize_params(
    params: Params,
    specs: dict[tuple[str, ...], tuple[QuantSpec, bool, int]],
    key: PRNGKeyArray,
    control: str = "none",
) -> Params:
    """Every weight named in ``specs`` put through its site's quantizer (forward value; the rest unchanged).

    Used for quantized weight gradients and for low-precision master weights. ``key`` is the step's; each
    site folds in its index. The control (:mod:`zipfrmt.nn.controls`) applies as at the forward sites.
    """
    for path, (spec, transposed, i) in specs.items():
        k = jax.random.fold_in(key, i)
        W = _get(params, path)
        q = partial(site_quantize, spec=spec, key=k, control=control)
        params = _set(params, path, jax.lax.stop_gradient(_on_rows(q, W, transposed)))
    return params


def zero_free_quantize(v: Float[Array, "n d"], spec: QuantSpec, key: PRNGKeyArray | None) -> Float[Array, "n d"]:
    """A non-negative matrix on the zero-free grid ``{k·M/2^b : k = 1 … 2^b}`` of each scale group of ``spec``
    (``M`` the group's largest entry; a group whose entries are all 0 stays 0). Nearest or stochastic rounding
    as the spec says; entries below the first level round up to it, never to 0."""
    levels = 2.0**spec.bits
    M = group_reduce(v, spec, "max")
    step = jnp.where(M > 0, M / levels, 1.0)
    y = v / step
    if spec.rounding == "stochastic":
        y = jnp.floor(y + jax.random.uniform(key, y.shape, y.dtype))
    else:
        y = jnp.round(y)
    return jnp.where(M > 0, jnp.clip(y, 1.0, levels) * step, 0.0).astype(v.dtype)


class QuantizedAdamState(NamedTuple):
    """The state of :func:`quantized_adam`: optax's Adam state with quantized moments, and a key."""

    adam: optax.ScaleByAdamState
    key: PRNGKeyArray


def quantized_adam(
    specs: dict[tuple[str, ...], tuple[QuantSpec, bool, int]],
    seed: int,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    control: str = "none",
) -> optax.GradientTransformation:
    """``optax.scale_by_adam`` whose moments are stored quantized for the weights named in ``specs``.

    The update of a step is the float32 Adam update of the dequantized stored moments and the new gradient
    (as ``optax.scale_by_adam`` computes it); afterwards ``m`` is stored through its site's spec and ``v``
    through :func:`zero_free_quantize`. Stochastic rounding draws from ``fold_in(fold_in(key(seed), 4), count)``.
    With
    ``control="noise"`` the moments get equal-energy Gaussian noise instead (:func:`_noisy_moments`).
    """
    inner = optax.scale_by_adam(b1=b1, b2=b2, eps=eps)

    def init_fn(params: Params) -> QuantizedAdamState:  # a stream of its own (tag 4) beside batches, steps, probes
        return QuantizedAdamState(inner.init(params), jax.random.fold_in(jax.random.key(seed), 4))

    def update_fn(updates: Params, state: QuantizedAdamState, params: Params | None = None) -> tuple[Any, Any]:
        updates, adam = inner.update(updates, state.adam, params)
        key = jax.random.fold_in(state.key, adam.count)
        mu, nu = adam.mu, adam.nu
        for path, (spec, transposed, i) in specs.items():
            k_m, k_v = jax.random.split(jax.random.fold_in(key, i))
            if control == "noise":
                m0, v0 = _get(mu, path), _get(nu, path)
                m, v = _noisy_moments(m0.T, v0.T, spec, k_m) if transposed else _noisy_moments(m0, v0, spec, k_m)
                m, v = (m.T, v.T) if transposed else (m, v)
            else:
                m = _on_rows(partial(site_quantize, spec=spec, key=k_m), _get(mu, path), transposed)
                v = _on_rows(partial(zero_free_quantize, spec=spec, key=k_v), _get(nu, path), transposed)
            mu, nu = _set(mu, path, jax.lax.stop_gradient(m)), _set(nu, path, jax.lax.stop_gradient(v))
        return updates, QuantizedAdamState(adam._replace(mu=mu, nu=nu), state.key)

    return optax.GradientTransformation(init_fn, update_fn)


def frozen_mask(patterns: tuple[str, ...], model: Any) -> Callable[[Params], Any]:
    """``params → bool tree``: True on the weights whose ``<param>`` name matches one of ``patterns``."""
    frozen = [path for name, (path, _, _) in param_sites(model).items() if any(matches(p, name) for p in patterns)]

    def mask(params: Params) -> Any:
        tree = jax.tree.map(lambda _: False, params)
        for path in frozen:
            tree = _set(tree, path, True)
        return tree

    return mask


def opt_specs(rules: Rules, model: Any, control: str) -> dict[tuple[str, ...], tuple[QuantSpec, bool, int]]:
    """The optimizer-state specs, with the ``stochastic`` control applied (see :func:`quantized_adam` for
    ``noise``; a rotation does not apply to the state)."""
    return {p: (control_spec(s, control), t, i) for p, (s, t, i) in site_specs(rules, model, "opt").items()}


def _noisy_moments(m: jax.Array, v: jax.Array, spec: QuantSpec, key: PRNGKeyArray) -> tuple[jax.Array, ...]:
    """The ``noise`` control of the optimizer state: each moment plus Gaussian noise of its quantizer's error
    variance per scale group, the second moment kept on or above the zero-free grid's first level."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    em = group_reduce(site_quantize(m, spec, k1) - m, spec, "mean_square")
    ev = group_reduce(zero_free_quantize(v, spec, k2) - v, spec, "mean_square")
    floor = group_reduce(v, spec, "max") / 2.0**spec.bits
    m2 = m + jnp.sqrt(em) * jax.random.normal(k4, m.shape, m.dtype)
    v2 = jnp.maximum(v + jnp.sqrt(ev) * jax.random.normal(k3, v.shape, v.dtype), floor)
    return m2, v2
