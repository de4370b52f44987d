"""Argument checks shared by the corpus modules (laws, ranks, keys, token arrays)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zipfrmt.checks import (
    check_float_dtype,
    check_int,
    check_number,
    describe,
)

__all__ = ["as_jax", "check_dtype", "check_key", "check_law", "check_tokens"]

def check_law(V: Any, s: Any, q: Any) -> tuple[int, float, float]:
    V = check_int(V, "V", lo=2)
    s = check_number(s, "s", lo=0.0, lo_open=True)
    q = check_number(q, "q", lo=-1.0, lo_open=True)
    return V, s, q


def check_key(key: Any) -> None:
    if isinstance(key, jax.Array):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.ndim == 0:
            return
        if key.dtype == jnp.uint32 and key.shape == (2,):  # legacy raw key, jax.random.PRNGKey(seed)
            return
    raise TypeError(f"key: expected a single JAX PRNG key (jax.random.key(seed)), got {describe(key)}")


def check_dtype(dtype: Any) -> np.dtype:
    return check_float_dtype(dtype)


def as_jax(x: np.ndarray, dtype: np.dtype) -> jax.Array:
    if dtype == np.float64:
        with jax.enable_x64(True):
            return jnp.asarray(x, dtype=jnp.float64)
    return jnp.asarray(x, dtype=dtype)


def check_tokens(tokens: Any, V: int, name: str = "tokens") -> np.ndarray:
    """Host copy of a 1-D integer token array with ids in [0, V)."""
    if not isinstance(tokens, (np.ndarray, jax.Array)):
        try:
            tokens = np.asarray(tokens)
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            msg = f"{name}: expected a 1-D integer array of token ids, got {describe(tokens)}"
            raise TypeError(msg) from exc
    if not np.issubdtype(np.dtype(tokens.dtype), np.integer):
        raise TypeError(f"{name}: expected an integer array of token ids, got {describe(tokens)}")
    if tokens.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of token ids, got shape {tuple(tokens.shape)}")
    t = np.asarray(tokens)
    if t.size and (int(t.min()) < 0 or int(t.max()) >= V):
        raise ValueError(
            f"{name}: expected token ids in [0, {V - 1}] (V={V}), got ids in [{int(t.min())}, {int(t.max())}]"
        )
    return t


