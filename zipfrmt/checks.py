"""Validation at the public boundary.

Every public function of zipfrmt checks its arguments once, here, and raises an error that names the
argument, the value it got and what was expected. Inside the package, code trusts its inputs.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zipfrmt import rowthreads

__all__ = [
    "check_choice",
    "check_float_array",
    "check_float_dtype",
    "check_int",
    "check_key",
    "check_matrix",
    "check_nonnegative_array",
    "check_number",
    "describe",
]


def describe(value: Any) -> str:
    """A short description of `value` for error messages (arrays by shape and dtype, not contents)."""
    if isinstance(value, (np.ndarray, jax.Array)):
        return f"array of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_tracer(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def host_view(x: Any) -> np.ndarray | None:
    """``x`` as a NumPy array without a copy when it is concrete data in this process's CPU memory (a NumPy
    array, or a fully addressable JAX array on CPU devices); None otherwise (a tracer, data on an accelerator)."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, jax.Array) and not _is_tracer(x) and x.is_fully_addressable:
        if all(d.platform == "cpu" for d in x.devices()):
            return np.asarray(x)
    return None


def host_max_min(h: np.ndarray) -> tuple[float, float]:
    """``(max h, min h)`` of a non-empty host array, a NaN propagating to both; a large array's row ranges read by
    one thread per core (:func:`zipfrmt.rowthreads.map_row_ranges`: 2.5× faster on 2 cores, 50,257×768)."""
    if h.ndim == 0:
        return float(h), float(h)
    parts = np.array(rowthreads.map_row_ranges(lambda a, b: (np.max(h[a:b]), np.min(h[a:b])), h.shape[0], h.size))
    return float(np.max(parts[:, 0])), float(np.min(parts[:, 1]))  # np.max/min: a range's NaN propagates


def _all_finite(x: np.ndarray | jax.Array) -> bool:
    """Every entry finite. On the host by two reductions (a NaN propagates through ``max``, ``±inf`` shows in
    ``max``/``min``, :func:`host_max_min`) instead of a boolean array of ``x``'s size; elsewhere by XLA."""
    h = host_view(x)
    if h is None:
        return bool(jax.numpy.isfinite(x).all())
    if h.size == 0:
        return True
    hi, lo = host_max_min(h)
    return math.isfinite(hi) and math.isfinite(lo)


def check_float_array(
    x: Any, name: str, *, ndim: int | Iterable[int] | None = None, finite: bool = True
) -> np.ndarray | jax.Array:
    """Checks that `x` is a non-empty floating-point array (of the given rank), with finite entries.

    Returns `x` as an array (NumPy arrays stay NumPy, JAX arrays stay JAX; lists become NumPy).
    Under tracing (inside `jax.jit`) the value checks are skipped; shape and dtype are still checked.
    """
    if not isinstance(x, (np.ndarray, jax.Array)):
        if hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "__array__"):
            x = np.asarray(x)
        else:
            try:
                x = np.asarray(x)
            except Exception as exc:  # noqa: BLE001 - re-raised with context
                raise TypeError(f"{name}: expected a floating-point array, got {describe(x)}") from exc
    dtype = np.dtype(x.dtype)
    if not jnp.issubdtype(dtype, jnp.floating):  # NumPy's issubdtype does not know bfloat16
        kind = "complex" if np.issubdtype(dtype, np.complexfloating) else "non-float"
        raise TypeError(
            f"{name}: expected a real floating-point array (float16, bfloat16, float32 or float64), "
            f"got a {kind} array of dtype {dtype}"
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            want = " or ".join(f"{n}-D" for n in allowed)
            raise ValueError(f"{name}: expected a {want} array, got shape {tuple(x.shape)} ({x.ndim}-D)")
    if x.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {tuple(x.shape)}")
    if finite and not _is_tracer(x):
        if not _all_finite(x):
            _raise_nonfinite(x, name)
    return x


def _raise_nonfinite(x: Any, name: str) -> None:
    bad = int((~np.isfinite(np.asarray(x, dtype=np.float32))).sum())
    raise ValueError(f"{name}: expected finite entries, got {bad} NaN or Inf entries in {describe(x)}")


def check_nonnegative_array(x: Any, name: str, *, ndim: int, what: str = "counts") -> np.ndarray:
    """Checks counts-like data — integer or real, ``ndim``-D, non-empty, finite, ≥ 0 — and returns float64 NumPy.

    ``what`` names the entries in the messages (e.g. "counts", "counts or probabilities").
    """
    if not isinstance(x, (np.ndarray, jax.Array)):
        try:
            x = np.asarray(x)
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            raise TypeError(f"{name}: expected a {ndim}-D array of {what}, got {describe(x)}") from exc
    dt = np.dtype(x.dtype)
    if dt == np.bool_ or not (np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating)):
        raise TypeError(f"{name}: expected an integer or real array of {what}, got {describe(x)}")
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array of {what}, got shape {tuple(a.shape)}")
    if a.size == 0:
        raise ValueError(f"{name}: expected a non-empty array of {what}, got shape {tuple(a.shape)}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: expected finite {what}, got {int((~np.isfinite(a)).sum())} NaN or Inf entries")
    if (a < 0).any():
        raise ValueError(f"{name}: expected non-negative {what}, got {int((a < 0).sum())} negative entries")
    return a


def check_matrix(W: Any, name: str = "W", *, batched: bool = False) -> np.ndarray | jax.Array:
    """Checks a matrix argument: 2-D (or 3-D, a stack of matrices, when `batched`), float, finite, non-empty."""
    return check_float_array(W, name, ndim=(2, 3) if batched else 2)


def check_float_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """Checks that ``dtype`` names float32 or float64 (the precisions results are returned in)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"{name}: expected float32 or float64, got {describe(dtype)}")
    return dt


def check_choice(value: Any, name: str, choices: Iterable[str]) -> str:
    """Checks that `value` is one of `choices` (strings)."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {describe(value)}")
    return value


def check_int(
    value: Any, name: str, *, lo: int | None = None, hi: int | None = None
) -> int:
    """Checks that `value` is an integer in [lo, hi] (either bound may be open: None)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {describe(value)}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else str(lo)
        hi_s = "inf" if hi is None else str(hi)
        raise ValueError(f"{name}: expected an integer in [{lo_s}, {hi_s}], got {value}")
    return value


def check_number(
    value: Any,
    name: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """Checks that `value` is a finite real number in the interval given by lo/hi (open or closed ends)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a real number, got {describe(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    below = lo is not None and (value <= lo if lo_open else value < lo)
    above = hi is not None and (value >= hi if hi_open else value > hi)
    if below or above:
        left = "-inf" if lo is None else f"{lo:g}"
        right = "inf" if hi is None else f"{hi:g}"
        interval = f"{'(' if lo_open or lo is None else '['}{left}, {right}{')' if hi_open or hi is None else ']'}"
        raise ValueError(f"{name}: expected a number in {interval}, got {value:g}")
    return value


_F32 = np.finfo(np.float32)


def max_abs(W: Any) -> float:
    """``max|W|`` exactly, also when it is subnormal in float32 (XLA:CPU reads subnormals as 0): NumPy arrays are
    reduced by NumPy, JAX arrays of ≤ 32 bits by their bit patterns (for finite floats, ordered like ``|w|``)."""
    h = host_view(W) if isinstance(W, jax.Array) else np.asarray(W)
    if h is not None:  # NumPy reads subnormals as what they are
        return float(max(np.max(h), -np.min(h)))
    dt = np.dtype(W.dtype)
    if dt.itemsize == 8:
        return float(jnp.max(jnp.abs(W)))
    ints = {2: np.int16, 4: np.int32}[dt.itemsize]
    top = jnp.max(jax.lax.bitcast_convert_type(W, ints) & ((1 << (8 * dt.itemsize - 1)) - 1))
    return float(np.asarray(top, ints).view(dt))


#: ``id(x) → (weak reference to x, max|x|)`` for the JAX arrays :func:`check_matrix_max_abs` has read: a JAX array
#: is immutable, so a second check of the same array (an analysis quantizes one W at 20 specs) reads nothing. An
#: entry leaves with its array (the weak reference's callback), so an ``id`` reused by a later array never hits.
_CHECKED_MAX_ABS: dict[int, tuple[weakref.ref, float]] = {}


def check_matrix_max_abs(W: Any, name: str = "W") -> tuple[np.ndarray | jax.Array, float]:
    """:func:`check_matrix` and :func:`max_abs` together: ``(W, max|W|)``. A matrix in CPU memory is read twice
    (its ``max`` and ``min`` give both the finiteness test and ``max|W|``), not four times — on a 262,144×640
    tensor quantized at 20 specs, the reads this saves cost about two of its Gram matrices. A JAX array already
    checked is not read again (immutable: its ``max|W|`` is remembered while it lives)."""
    W = check_float_array(W, name, ndim=2, finite=False)
    immutable = isinstance(W, jax.Array)  # NumPy arrays are mutable: read at every call
    h = host_view(W) if immutable else W
    if h is None:
        return check_matrix(W, name), max_abs(W)
    key = id(W)
    seen = _CHECKED_MAX_ABS.get(key) if immutable else None
    if seen is not None and seen[0]() is W:
        return W, seen[1]
    hi, lo = host_max_min(h)
    if not (math.isfinite(hi) and math.isfinite(lo)):  # a NaN propagates through max, ±inf shows in max/min
        _raise_nonfinite(W, name)
    amax = max(hi, -lo)
    if immutable:
        _CHECKED_MAX_ABS[key] = (weakref.ref(W, lambda _, key=key: _CHECKED_MAX_ABS.pop(key, None)), amax)
    return W, amax


def check_float32_range(amax: float, name: str, why: str) -> None:
    """``max|W| = amax`` must be 0 or a normal float32 number (``why``: what runs in float32, for the message)."""
    if amax > float(_F32.max):
        raise ValueError(
            f"{name}: expected entries within float32's range (|w| ≤ {_F32.max:.4g}; {why}), "
            f"got max|{name}| = {amax:.4g}"
        )
    if 0 < amax < float(_F32.tiny):
        raise ValueError(
            f"{name}: expected max|{name}| = 0 or at least float32's smallest normal number {_F32.tiny:.4g} "
            f"(smaller numbers are flushed to zero), got max|{name}| = {amax:.4g}"
        )


def check_key(key: Any, name: str = "key") -> jax.Array:
    """Checks a PRNG key: a typed key (``jax.random.key(seed)``) or a raw ``uint32[2]`` one
    (``jax.random.PRNGKey(seed)``); an integer seed is not a key."""
    if _is_tracer(key):
        return key
    ok = isinstance(key, jax.Array) and (
        jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ()
        or key.dtype == jnp.uint32 and key.shape == (2,)
    )
    if not ok:
        raise TypeError(f"{name}: expected a JAX PRNG key (jax.random.key(seed)), got {describe(key)}")
    return key
