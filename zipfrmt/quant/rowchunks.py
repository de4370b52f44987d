"""Row-local maps and sums over a V×d matrix evaluated in chunks of rows, so that a program's temporaries are the
size of one chunk, not of the matrix.

Why: some quantizers hold several V×d temporaries at once when XLA compiles them whole — Qwix's code-book lookup
(an arg-min over the levels, index and value) and a ``jnp.searchsorted`` over a code book (its loop carries two
``uint32`` arrays of the input's shape) — about 6× the matrix's size for ``nf4``, ``mxfp4``, ``nvfp4`` and fp8.
A function whose output row ``i`` depends on input row ``i`` only (a scale per row or per group along a row) gives
the same result chunk by chunk, bit for bit, with temporaries of :data:`CHUNK_ENTRIES` entries.

Both helpers run a ``lax.fori_loop`` over chunks of ``rows = max(1, CHUNK_ENTRIES // d)`` rows. The last chunk is
moved back to end at row ``V`` (a shape must be static): :func:`map_rows` writes the overlap twice with the same
values, :func:`sum_rows` weighs the rows already counted with 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["CHUNK_ENTRIES", "map_rows", "sum_rows"]

#: Entries per chunk: 2^20 (4 MiB of float32), small beside any matrix worth chunking and large enough that the
#: loop's per-chunk overhead is negligible.
CHUNK_ENTRIES = 2**20


def _rows_per_chunk(X: jax.Array, name: str) -> int:
    """Rows per chunk of a V×d ``X``; anything else is a named error."""
    if getattr(X, "ndim", None) != 2:
        raise ValueError(f"{name}: expected a V×d matrix, got shape {getattr(X, 'shape', type(X).__name__)}")
    return max(1, CHUNK_ENTRIES // max(1, X.shape[1]))


def map_rows(f: Callable[[jax.Array], Any], X: Float[Array, "V d"]) -> Any:
    """``f(X)`` for a row-local ``f`` (each output's leading axis is X's rows), evaluated chunk by chunk.

    ``f`` maps a ``rows×d`` block to a pytree of arrays whose leading axis has ``rows`` entries. A matrix of at most
    one chunk is passed to ``f`` whole.
    """
    V, rows = X.shape[0], _rows_per_chunk(X, "X")
    if V <= rows:
        return f(X)
    out_shapes = jax.eval_shape(f, jax.ShapeDtypeStruct((rows, *X.shape[1:]), X.dtype))
    init = jax.tree.map(lambda s: jnp.zeros((V, *s.shape[1:]), s.dtype), out_shapes)

    def body(i: jax.Array, out: Any) -> Any:
        start = jnp.minimum(i * rows, V - rows)
        block = f(jax.lax.dynamic_slice_in_dim(X, start, rows, 0))
        return jax.tree.map(lambda o, b: jax.lax.dynamic_update_slice_in_dim(o, b, start, 0), out, block)

    return jax.lax.fori_loop(0, -(-V // rows), body, init)


def sum_rows(f: Callable[..., jax.Array], *Xs: jax.Array) -> jax.Array:
    """``Σ_i f(Xs)[i]`` for a row-local ``f`` returning one value per row (shape ``(rows,)``), chunk by chunk.

    Every array of ``Xs`` whose leading axis has X's ``V`` rows (``V > 1``) is cut into the same chunks; any other
    (a scalar, a ``1×d`` row of column scales) is passed whole to every call.
    """
    if not Xs:
        raise ValueError("Xs: expected at least one V×d matrix, got none")
    rows = _rows_per_chunk(Xs[0], "Xs[0]")
    V = Xs[0].shape[0]
    if V <= rows:
        return jnp.sum(f(*Xs))
    cut = [x.ndim > 0 and x.shape[0] == V for x in Xs]

    def body(i: jax.Array, total: jax.Array) -> jax.Array:
        start = jnp.minimum(i * rows, V - rows)
        blocks = [jax.lax.dynamic_slice_in_dim(x, start, rows, 0) if c else x for x, c in zip(Xs, cut, strict=True)]
        fresh = (start + jnp.arange(rows)) >= i * rows  # rows an earlier chunk did not cover
        return total + jnp.sum(jnp.where(fresh, f(*blocks), 0.0))

    return jax.lax.fori_loop(0, -(-V // rows), body, jnp.zeros((), jnp.float32))
