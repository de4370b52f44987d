"""Past one device and one host, through JAX itself: the Gram matrix of a tall tensor over row blocks sharded
across devices, and many tensors spread over devices.

* :func:`sharded_gram` — ``G = WᵀW = Σ_blocks W_bᵀ W_b``: the rows of ``W`` are split over the devices of a
  mesh axis (``jax.sharding``), each device forms the float64 Gram matrix of its own rows
  (``jax.shard_map``) and ``jax.lax.psum`` adds them. Only a ``d×d`` matrix crosses devices; a device holds
  ``V/N`` rows. :func:`sharded_singular_values` takes ``σ = √eig(G)`` (the package's ``gram64`` method,
  :func:`zipfrmt.spectra.singular_values`: relative error ≈ ε·σ₁²/σ_k² in float64).
* :func:`spread` — many tensors over devices: tensor ``i`` goes to device ``i mod N`` of this process
  (``jax.device_put``), so their spectra are computed concurrently by XLA's asynchronous dispatch.

Several hosts: start every process with ``jax.distributed.initialize(coordinator, num_processes, process_id)``
(on CPU also ``jax.config.update("jax_cpu_collectives_implementation", "gloo")``); the mesh then spans every
process's devices (``jax.devices()``), and each process passes the rows it holds of ``W`` to
:func:`sharded_gram` via ``jax.make_array_from_process_local_data``. ``docs/scaling.md`` works out a 70B model.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Float

from zipfrmt.checks import check_matrix

__all__ = ["row_mesh", "sharded_gram", "sharded_singular_values", "spread"]


def row_mesh(devices: Any = None) -> Mesh:
    """A 1-D mesh named ``"rows"`` over ``devices`` (default: every device of every process)."""
    devs = np.asarray(jax.devices() if devices is None else list(devices))
    if devs.size == 0:
        raise ValueError("devices: expected at least one device, got none")
    return Mesh(devs, ("rows",))


def _local_gram(block: jax.Array) -> jax.Array:
    b = block.astype(jnp.float64)
    return jax.lax.psum(b.T @ b, "rows")


@functools.lru_cache(maxsize=8)
def _gram_program(mesh: Mesh) -> Any:
    """The jitted sharded Gram for ``mesh`` (built once per mesh, so many tensors reuse its compilations)."""
    return jax.jit(jax.shard_map(_local_gram, mesh=mesh, in_specs=PartitionSpec("rows", None),
                                 out_specs=PartitionSpec(None, None)))


def sharded_gram(W: Float[Array, "V d"] | np.ndarray, mesh: Mesh | None = None) -> np.ndarray:
    """``WᵀW`` in float64, its rows summed block by block on the devices of ``mesh`` (default :func:`row_mesh`).

    ``W`` is either a host array (split here into ``N`` row blocks, padded with zero rows to a multiple of
    ``N`` — zero rows add nothing to the Gram matrix) or a global ``jax.Array`` already sharded by rows over
    the mesh (e.g. from ``jax.make_array_from_process_local_data`` on several hosts). Returns a ``d×d``
    float64 NumPy array (replicated: every process gets it).
    """
    mesh = mesh or row_mesh()
    n = mesh.devices.size
    with jax.enable_x64(True):
        if not isinstance(W, jax.Array) or W.sharding.num_devices == 1 and n > 1:
            W = np.asarray(check_matrix(W, "W"), np.float32)
            pad = (-W.shape[0]) % n
            if pad:
                W = np.concatenate([W, np.zeros((pad, W.shape[1]), W.dtype)])
            W = jax.device_put(W, NamedSharding(mesh, PartitionSpec("rows", None)))
        gram = _gram_program(mesh)(W)
        return np.asarray(jax.device_get(gram), np.float64)


def sharded_singular_values(W: Float[Array, "V d"] | np.ndarray, mesh: Mesh | None = None) -> np.ndarray:
    """The ``d`` singular values of a tall ``W`` (``V ≥ d``), descending, from :func:`sharded_gram`."""
    if W.shape[0] < W.shape[1]:
        raise ValueError(f"W: expected a tall matrix (V ≥ d; its rows are sharded, its d×d Gram matrix reduced), got "
                         f"{W.shape[0]}×{W.shape[1]}; pass Wᵀ, which has the same singular values")
    G = sharded_gram(W, mesh)
    lam = np.linalg.eigvalsh(G)[::-1]
    return np.sqrt(np.clip(lam, 0.0, None))


def spread(tensors: list[Any], devices: Any = None) -> list[jax.Array]:
    """Tensor ``i`` placed on device ``i mod N`` of this process (``devices``: default ``jax.local_devices()``)."""
    devs = list(jax.local_devices() if devices is None else devices)
    return [jax.device_put(np.asarray(t, np.float32), devs[i % len(devs)]) for i, t in enumerate(tensors)]
