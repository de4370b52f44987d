"""The uniform b-bit quantizer (the ``int`` format of the registry).

For a scale group with statistic ``m`` (its clipping range), as ``docs/conventions.md`` fixes it:

* symmetric, ``b ≥ 2``: ``L = 2^(b−1) − 1``, ``Δ = m / L``, ``q = clip(round(w/Δ), −L, L)·Δ``;
* asymmetric, ``b ≥ 2``: ``Δ = (hi − lo)/(2^b − 1)``, zero point ``z = round(−lo/Δ)``,
  ``q = (clip(round(w/Δ) + z, 0, 2^b − 1) − z)·Δ``;
* ``b = 1``: the sign quantizer ``q = sign(w)·mean|w|`` over the scale group (levels ``±m``, ``Δ = 2m``).

A group whose range is 0 has ``Δ = 1`` (its output is all zeros, exactly), never NaN.

The formulas hold at any magnitude float32 holds: ``m/L`` cannot overflow; the asymmetric span ``hi − lo``, which
can, is then taken as ``2·(hi/2 − lo/2)`` (exact); a step above ``2^126``, whose reciprocal XLA:CPU would flush to
0, divides a scaled copy; the MSE search runs on each group scaled by a power of two to ``max|w| ∈ [0.5, 1)``
(exact), where its squared errors neither overflow nor underflow; a 1-bit mean whose sum overflows likewise. So
``Q(c·W) = c·Q(W)`` (exactly for powers of two ``c``) while every step is at least ``2^−125`` (:data:`MIN_STEP`,
twice float32's smallest normal number): every nonzero level is then a normal number, and a subnormal entry, which
XLA:CPU reads as 0, would round to 0 anyway (the sign quantizer maps it to 0, as it maps 0). A nonzero group with a
smaller step — a tiny group beside large ones, or one of subnormal entries only — cannot be put on a float32 grid:
its step is reported as 0 (its output is the float32 rounding of its levels) and :func:`zipfrmt.quant.quantize`
raises.

Scale groups: ``tensor`` (one scale), ``row`` (one per token), ``column`` (one per feature), ``group`` (blocks
of ``group_size`` consecutive entries along a row; in a row whose length ``d`` is not a multiple, the last,
shorter block is padded by repeating its last entry, which changes neither its absmax nor its min and max;
the 1-bit mean ignores the padding, and percentile/MSE clipping see the repeated entry). Clipping ranges: ``absmax``
(``m = max|w|``), ``percentile`` (``m`` = the ``percentile``-th percentile of ``|w|``), ``mse`` (``m = c·max|w|`` with
``c`` on a grid minimising the group's squared error). Rounding: ``nearest`` (ties to even) or ``stochastic``
(``⌊w/Δ + u⌋``, ``u ~ U[0, 1)``: unbiased inside the clipping range; it needs an explicit PRNG key).

Noise model (Widrow 1956; Widrow & Kollár 2008): ``E = Q_b(W) − W ≈`` i.i.d. ``U(−Δ/2, Δ/2)``, variance
``s² = mean(Δ²)/12``; for stochastic rounding the error is unbiased with variance exactly ``f(1−f)Δ²`` at
fractional part ``f``, and ``s²`` is its mean (:func:`uniform_noise_var`).

Everything here is a pure, jit-able function of a :class:`~zipfrmt.quant.QuantSpec` (static), the matrix and
a PRNG key; validation happens in :func:`zipfrmt.quant.quantize`, the public entry point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from zipfrmt.quant import rowchunks

if TYPE_CHECKING:
    from zipfrmt.quant.spec import QuantSpec

__all__ = ["MIN_STEP", "MSE_GRID", "binary_exponent", "group_reduce", "quantize_uniform", "row_sums",
           "times_pow2", "uniform_noise_var"]

#: A bit width: a Python int, or a traced integer (one compiled program for every width; see quantize_uniform).
Bits = int | jax.Array

#: Grid of clipping ratios ``c`` (of the absmax) searched by ``clip="mse"``.
MSE_GRID = tuple(k / 100 for k in range(10, 101))

#: Smallest step a nonzero scale group may have, ``2^−125``: twice float32's smallest normal number, so that every
#: nonzero level (``kΔ``; the sign quantizer's ``±Δ/2``) is a normal number, and every subnormal entry, which XLA:CPU
#: reads as 0, would round to 0 anyway (nearest rounding).
MIN_STEP = 2.0**-125

# ---------------------------------------------------------------------------------------------------------
# Exact scaling by powers of two
# ---------------------------------------------------------------------------------------------------------


def _pow2(k: jax.Array) -> Float[Array, "..."]:
    """``2^k`` as a float32, built from its bit pattern, for integers ``k`` in ``[−126, 127]``."""
    return jax.lax.bitcast_convert_type((jnp.asarray(k, jnp.int32) + 127) << 23, jnp.float32)


def times_pow2(x: Float[Array, "..."], k: jax.Array | int) -> Float[Array, "..."]:
    """``x·2^k`` for integers ``k`` (broadcast against ``x``; clamped to ``[−252, 252]``), exact wherever ``x`` and the
    result are normal float32 numbers: two multiplications by normal powers of two ``2^⌊k/2⌋·2^(k−⌊k/2⌋)``, whose
    intermediate lies between ``x`` and the result. ``jnp.ldexp`` does the same with ~15 integer operations per entry.
    """
    k = jnp.clip(jnp.asarray(k, jnp.int32), -252, 252)
    h = k >> 1  # ⌊k/2⌋
    return x * _pow2(h) * _pow2(k - h)


def binary_exponent(m: Float[Array, "..."]) -> jax.Array:
    """The exponent ``e`` with ``m·2^−e ∈ [0.5, 1)`` (``frexp``'s) for a normal float32 ``m > 0``, 0 for ``m = 0``
    (−126 for a subnormal ``m``: ``m·2^126 < 0.5``), read from the exponent bits (``jnp.frexp`` costs ~20 ops)."""
    biased = (jax.lax.bitcast_convert_type(m, jnp.int32) >> 23) & 0xFF
    return jnp.where(m == 0, 0, biased - 126)

# ---------------------------------------------------------------------------------------------------------
# Scale-group layout: a 2-D array X whose groups run along one axis — rows of X (tensor, row, group), or its
# columns (column scales: X is W itself, reduced along axis 0, so no transpose is ever materialised)
# ---------------------------------------------------------------------------------------------------------


def _axis(spec: QuantSpec) -> int:
    """The axis of the group layout that a scale group runs along: 0 for ``column`` scales, else 1."""
    return 0 if spec.granularity == "column" else 1


def _max_min(X: jax.Array, ax: int) -> tuple[jax.Array, jax.Array]:
    """``(max x, min x)`` of each group (kept dims). Along rows (``ax = 1``), one variadic reduce: XLA:CPU compiles a
    plain ``max`` along rows, without YNNPACK (:mod:`zipfrmt.quant.core`), into a tree of reduce-windows that takes
    9× as long (131,072×640 on 2 cores: 181 ms for ``max`` and ``min`` against 19 ms for both at once). Down
    columns (``ax = 0``) the variadic loop is the slow one (the column program 2.2× slower): two reductions."""
    if ax == 0:
        return jnp.max(X, axis=0, keepdims=True), jnp.min(X, axis=0, keepdims=True)
    hi, lo = jax.lax.reduce((X, X), (jnp.array(-jnp.inf, X.dtype), jnp.array(jnp.inf, X.dtype)),
                            lambda a, b: (jnp.maximum(a[0], b[0]), jnp.minimum(a[1], b[1])), (ax,))
    return jnp.expand_dims(hi, ax), jnp.expand_dims(lo, ax)


def _absmax(X: jax.Array, ax: int) -> jax.Array:
    """``max|x|`` of each group (kept dims) as ``max(max x, −min x)`` (:func:`_max_min`), where ``max(|X|)`` would
    first write ``|X|`` out whole (a temporary of X's size)."""
    hi, lo = _max_min(X, ax)
    return jnp.maximum(hi, -lo) + 0.0  # −0 → 0


def _count(X: jax.Array, ax: int) -> jax.Array:
    """``Σ x`` over each group (kept dims) of an ``X`` of 0s and 1s: along rows a variadic reduce (one loop, as
    :func:`_max_min`; exact in any order below 2^24 entries), else, or for a longer group (the tensor layout),
    ``jnp.sum``."""
    if ax == 0 or X.shape[ax] >= 2**24:
        return jnp.sum(X, axis=ax, keepdims=True)
    (total,) = jax.lax.reduce((X,), (jnp.array(0, X.dtype),), lambda a, b: (a[0] + b[0],), (ax,))
    return jnp.expand_dims(total, ax)


def _to_groups(W: Float[Array, "V d"], spec: QuantSpec) -> Float[Array, "G n"]:
    V, d = W.shape
    if spec.granularity == "tensor":
        return W.reshape(1, V * d)
    if spec.granularity in ("row", "column"):
        return W
    g = spec.group_size
    pad = (-d) % g
    if pad:  # repeat each row's last entry: leaves the group's absmax, min and max unchanged
        W = jnp.pad(W, ((0, 0), (0, pad)), mode="edge")
    return W.reshape(V * ((d + pad) // g), g)


def _from_groups(X: Float[Array, "G n"], spec: QuantSpec, shape: tuple[int, int]) -> Float[Array, "V d"]:
    V, d = shape
    if spec.granularity == "group":
        return X.reshape(V, -1)[:, :d]
    return X.reshape(V, d)


def group_reduce(
    X: Float[Array, "V d"], spec: QuantSpec, reduce: str = "mean_square"
) -> Float[Array, "V d"]:
    """A statistic of each scale group of ``spec``, broadcast back to every entry of ``X`` (jit-able).

    ``reduce``: ``"mean_square"`` (mean of x² over the group's entries, padding excluded) or ``"max"``
    (largest entry). Used by the equal-energy noise control (the quantization error's variance per group)
    and by the optimizer-state quantizer (a group's largest second moment).
    """
    shape, ax = X.shape, _axis(spec)
    G = _to_groups(X.astype(jnp.float32), spec)
    valid = jnp.broadcast_to(_valid_mask(spec, shape), G.shape)
    if reduce == "max":
        stat = jnp.max(jnp.where(valid > 0, G, -jnp.inf), axis=ax, keepdims=True)
    else:
        stat = jnp.sum(jnp.square(G) * valid, axis=ax, keepdims=True) / jnp.sum(valid, axis=ax, keepdims=True)
    return _from_groups(jnp.broadcast_to(stat, G.shape), spec, shape)


def _step_layout(step: Float[Array, " G"], spec: QuantSpec, shape: tuple[int, int]) -> jax.Array:
    V, d = shape
    if spec.granularity == "tensor":
        return step.reshape(())
    if spec.granularity == "row":
        return step.reshape(V, 1)
    if spec.granularity == "column":
        return step.reshape(1, d)
    return step.reshape(V, -1)


# ---------------------------------------------------------------------------------------------------------
# The quantizer on groups. Every per-group statistic keeps the reduced axis (shape (G, 1), or (1, d) for column
# scales), so it broadcasts against X in either layout.
# ---------------------------------------------------------------------------------------------------------


def _divide(X: jax.Array, step: jax.Array) -> jax.Array:
    """``X / step`` (``step`` per group, broadcast), also for a step above ``2^126``: XLA:CPU divides by multiplying
    with ``1/step``, which is then subnormal and flushed to 0. A group with ``step > 2^64`` is divided as
    ``(x·2^−64)/(step·2^−64)``, the same quotient (an entry that underflows in ``x·2^−64`` is below ``2^−62`` and
    rounds to 0 anyway)."""
    f = jnp.where(step > 2.0**64, 2.0**-64, 1.0)
    return (X * f) / (step * f)


def _round(y: jax.Array, spec: QuantSpec, key: PRNGKeyArray | None) -> jax.Array:
    if spec.rounding == "nearest":
        return jnp.round(y)
    if spec.granularity == "column":  # the draws of the (d, V) layout column scales once had: same key, same Q
        return jnp.floor(y + jax.random.uniform(key, y.shape[::-1], y.dtype).T)
    return jnp.floor(y + jax.random.uniform(key, y.shape, y.dtype))


def _symmetric(
    X: jax.Array, m: jax.Array, spec: QuantSpec, key: Any, bits: Bits
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns (dequantized, step Δ per group, in-range mask) for symmetric b ≥ 2 with range m per group.

    ``Δ = m/L`` cannot overflow; where it underflows to 0 the group has a nonzero range but no float32 grid, and its
    step is reported as 0 (flagged by :func:`_quantize_groups`). A range of 0 gives ``Δ = 1`` and an all-zero output.
    """
    # L as an opaque scalar, whether ``bits`` is traced or not: ``m/L`` is then always a true division (XLA:CPU
    # rewrites a division by a constant as a product with its reciprocal, an ulp off at some m), and with L = 1
    # (2 bits) XLA:CPU does not write a V×d array of ones for the clip into the reductions that re-derive Q.
    L = jax.lax.optimization_barrier(jnp.asarray(2 ** (bits - 1) - 1, jnp.float32))
    raw = m / L
    ok = raw > 0
    step = jnp.where(ok, raw, 1.0)
    y = _divide(X, step)
    q = jnp.clip(_round(jnp.clip(y, -L, L), spec, key), -L, L) * step
    q = jnp.where(ok, q, 0.0)
    return q, jnp.where(m > 0, raw, 1.0), jnp.abs(X) <= m


def _asymmetric(
    X: jax.Array, lo: jax.Array, hi: jax.Array, spec: QuantSpec, key: Any, bits: Bits
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """As :func:`_symmetric`, asymmetric: ``Δ = (hi − lo)/(2^b − 1)``, zero point ``round(−lo/Δ)``.

    Near float32's largest numbers ``hi − lo`` overflows: then ``Δ = 2·(hi/2 − lo/2)/(2^b − 1)``, the same number
    (halving is exact). A constant group ``c`` gets ``Δ = |c|`` (reproduced exactly), an all-zero one ``Δ = 1``, and
    a group whose span is so small that ``Δ`` underflows to 0 is reported with step 0 (no float32 grid).
    """
    top = jax.lax.optimization_barrier(jnp.asarray(2**bits - 1, jnp.float32))  # opaque, as L in _symmetric
    raw = (hi - lo) / top
    raw = jnp.where(jnp.isfinite(raw), raw, (hi * 0.5 - lo * 0.5) / top * 2.0)
    constant = hi == lo
    step = jnp.where(constant, jnp.where(jnp.abs(lo) > 0, jnp.abs(lo), 1.0), jnp.where(raw > 0, raw, 1.0))
    zero = jnp.round(-lo / step)
    y = _divide(X, step) + zero
    q = (jnp.clip(_round(jnp.clip(y, 0, top), spec, key), 0, top) - zero) * step
    reported = jnp.where(constant | (raw > 0), step, 0.0)  # a span whose Δ underflows to 0: no float32 grid
    return q, reported, (X >= lo) & (X <= hi)


def _mse_ratio(X: jax.Array, spec: QuantSpec, bits: Bits) -> jax.Array:
    """Per-group clipping ratio c from MSE_GRID minimising Σ(Q_c(x) − x)² with nearest rounding (kept dims).

    ``c`` is scale-free, so the search runs on each group in its binary scale (``x·2^−e``, ``max|x·2^−e| ∈ [0.5, 1)``;
    exact), where the squared errors neither overflow (at 1e30 they would) nor underflow (at 1e−30).
    """
    nearest, ax = spec.replace(rounding="nearest"), _axis(spec)
    amax = _absmax(X, ax)
    X = times_pow2(X, -binary_exponent(amax))
    amax = _absmax(X, ax)
    hi0, lo0 = _max_min(X, ax)

    def error(c: jax.Array) -> jax.Array:
        if spec.scheme == "symmetric":
            q, _, _ = _symmetric(X, c * amax, nearest, None, bits)
        else:
            q, _, _ = _asymmetric(X, c * lo0, c * hi0, nearest, None, bits)
        return jnp.sum(jnp.square(q - X), axis=ax, keepdims=True)

    errs = jax.lax.map(error, jnp.asarray(MSE_GRID, X.dtype))  # (n_grid, *group shape)
    return jnp.asarray(MSE_GRID, X.dtype)[jnp.argmin(errs, axis=0)]


def _subnormal_only(X: Float[Array, "G n"], amax: jax.Array, ax: int) -> jax.Array:
    """Groups whose float ``max|x|`` is 0 but whose bits are not: subnormal entries only, which XLA:CPU reads as 0.

    The bit patterns are reduced only when some group reads as 0 (``lax.cond``), so a matrix without zero groups
    pays nothing for this (an int32 reduction is several times slower than a float one on XLA:CPU).
    """

    def from_bits(X: jax.Array, amax: jax.Array) -> jax.Array:
        return (amax == 0) & (_magnitude_bits_max(X, ax) > 0)

    return jax.lax.cond(jnp.any(amax == 0), from_bits, lambda X, amax: jnp.zeros(amax.shape, bool), X, amax)


#: Entries per chunk of :func:`_magnitude_bits_max` (the chunk size of :mod:`zipfrmt.quant.rowchunks`).
_BITS_CHUNK = rowchunks.CHUNK_ENTRIES


def _magnitude_bits_max(X: Float[Array, "G n"], ax: int) -> jax.Array:
    """The largest bit pattern of ``|x|`` (sign masked) in each group (kept dims), chunk by chunk.

    XLA:CPU writes the int32 view of its operand out before a reduction, so X is read in chunks of about
    :data:`_BITS_CHUNK` entries (cut along axis 0, or along axis 1 when X has one row): the temporary is one
    chunk, not a copy of X. The last chunk is moved back to end at X's edge (it overlaps the one before, which
    changes no maximum).
    """
    cut = 0 if X.shape[0] > 1 else 1
    size, other = X.shape[cut], X.shape[1 - cut]
    ch = max(1, min(size, _BITS_CHUNK // other))
    out_shape = tuple(1 if a == ax else X.shape[a] for a in range(2))

    def body(i: jax.Array, out: jax.Array) -> jax.Array:
        start = jnp.minimum(i * ch, size - ch)
        piece = jax.lax.dynamic_slice_in_dim(X, start, ch, cut)
        m = jnp.max(jax.lax.bitcast_convert_type(piece, jnp.int32) & 0x7FFFFFFF, axis=ax, keepdims=True)
        if cut == ax:  # the chunks cut the groups: a group's maximum is that of its chunks
            return jnp.maximum(out, m)
        return jax.lax.dynamic_update_slice_in_dim(out, m, start, cut)

    return jax.lax.fori_loop(0, -(-size // ch), body, jnp.zeros(out_shape, jnp.int32))


def _quantize_groups(
    X: Float[Array, "G n"], spec: QuantSpec, key: Any, valid: Float[Array, "G n"], bits: Bits
) -> tuple[jax.Array, ...]:
    """(dequantized, step per group, in-range mask) for every group of X; ``valid`` is 0 on padding, else 1.

    The formulas hold at any magnitude (see the module docstring): only the MSE search and a 1-bit mean that
    overflows run in the group's binary scale. A nonzero group whose step is below :data:`MIN_STEP` — among them
    a group of subnormal entries only, told apart from a zero group by its bits — gets step 0.
    """
    ax = _axis(spec)
    amax = _absmax(X, ax)
    if spec.bits == 1:
        count = jnp.sum(valid, axis=ax, keepdims=True)
        m = jnp.sum(jnp.abs(X) * valid, axis=ax, keepdims=True) / count  # mean|w| over the real entries
        e = binary_exponent(amax)  # Σ|w| overflows near float32's largest numbers: the mean of w·2^-e, scaled back
        m_scaled = times_pow2(jnp.sum(jnp.abs(times_pow2(X, -e)) * valid, axis=ax, keepdims=True) / count, e)
        m = jnp.where(jnp.isfinite(m), m, m_scaled)
        q = jnp.where(X >= 0, 1.0, -1.0) * m
        q = jnp.where(X == 0, 0.0, q)  # sign(0) = 0; XLA:CPU reads a subnormal entry as 0 here too
        q, step, inside = q, jnp.where(amax > 0, 2 * m, 1.0), jnp.ones(X.shape, bool)
    elif spec.scheme == "symmetric":
        if spec.clip == "absmax":
            m = amax
        elif spec.clip == "percentile":
            m = jnp.percentile(jnp.abs(X), spec.percentile, axis=ax, keepdims=True)
        else:
            m = _mse_ratio(X, spec, bits) * amax
        q, step, inside = _symmetric(X, m, spec, key, bits)
    else:
        hi, lo = _max_min(X, ax)
        if spec.clip == "percentile":
            lo = jnp.percentile(X, 100 - spec.percentile, axis=ax, keepdims=True)
            hi = jnp.percentile(X, spec.percentile, axis=ax, keepdims=True)
        elif spec.clip == "mse":
            c = _mse_ratio(X, spec, bits)
            lo, hi = c * lo, c * hi
        q, step, inside = _asymmetric(X, lo, hi, spec, key, bits)
    too_small = _subnormal_only(X, amax, ax) | ((amax > 0) & (step < MIN_STEP))
    return q, jnp.where(too_small, 0.0, step).reshape(-1), inside


def quantize_uniform(
    spec: QuantSpec, W: Float[Array, "V d"], key: PRNGKeyArray | None, bits: Bits | None = None
) -> tuple[Float[Array, "V d"], jax.Array, Bool[Array, "V d"]]:
    """(``Q_b(W)`` in W's dtype, the steps Δ in the granularity's layout, the in-clip-range mask). Pure, jit-able.

    Steps: a scalar (``tensor``), ``(V, 1)`` (``row``), ``(1, d)`` (``column``) or ``(V, ceil(d/g))``
    (``group``); for ``b = 1``, ``Δ = 2·mean|w|`` (the spacing of the levels ±mean|w|). A zero group has ``Δ = 1``;
    a nonzero group whose step would be below :data:`MIN_STEP` has ``Δ = 0`` (float32 cannot hold its grid).

    ``bits``: the width ``b`` as a traced integer, for a spec of ``b ≥ 2`` (``spec.bits`` then only says that it is
    not 1): one compiled program serves every width of a spec's other fields. Default: ``spec.bits``.
    """
    shape = W.shape
    Wf = W.astype(jnp.float32)
    X = _to_groups(Wf, spec)
    bits = spec.bits if bits is None else bits
    q, step, inside = _quantize_groups(X, spec, key, jnp.broadcast_to(_valid_mask(spec, shape), X.shape), bits)
    deq = _from_groups(q, spec, shape).astype(W.dtype)
    inside = _from_groups(inside, spec, shape)
    return deq, _step_layout(step, spec, shape), inside


def uniform_noise_var(
    spec: QuantSpec, W: Float[Array, "V d"], Q: Float[Array, "V d"], step: jax.Array, *, signal_free: bool = False
) -> Float[Array, ""]:
    """The model noise variance ``s²`` of the uniform quantizer, a mean over entries (``Q`` is unused).

    * Nearest rounding (Widrow): ``Δ²/12`` per entry.
    * Stochastic rounding: a value with fractional part ``f = w/Δ − ⌊w/Δ⌋`` errs by ``(1−f)Δ`` with probability
      ``f`` and by ``−fΔ`` otherwise, so given ``W`` its error has mean 0 and variance ``f(1−f)Δ²`` exactly;
      the model is the mean of that (``Δ²/6`` when ``f`` is uniform, which it is not at 2–3 bits).

    With ``signal_free`` the stochastic model is the signal-independent ``Δ²/6`` instead: the variance of the
    error when it does not depend on ``W`` (``f`` uniform on [0, 1)). Stochastic rounding is non-subtractive
    dither with a rectangular dither of one step, which makes the error's mean independent of the input but not
    its variance (Wannamaker, Lipshitz, Vanderkooy & Wright 2000): comparing the two models is how the regime
    rule detects signal-dependent noise (:func:`zipfrmt.quant.classify_regime`).

    Entries that the grid reproduces by construction count 0: those of all-zero groups, and, for symmetric
    absmax scaling, each group's extreme entries ``|w| = max|w| = L·Δ`` (one entry in ``n`` of a group of
    ``n``: without this the model overstates a group-32 quantizer's noise by 1/32 ≈ 3%).
    """
    X = _to_groups(W.astype(jnp.float32), spec)
    valid, ax = _valid_mask(spec, W.shape), _axis(spec)
    amax = _absmax(X, ax)
    if spec.rounding == "nearest" or signal_free:  # one variance per group: Σ = Σ_g var_g·(entries not exact)
        var_g = jnp.square(jnp.reshape(step, amax.shape).astype(jnp.float32)) / (12.0 if spec.rounding == "nearest"
                                                                                 else 6.0)
        count = jnp.sum(jnp.broadcast_to(valid, X.shape), axis=ax, keepdims=True)
        if spec.bits > 1 and spec.scheme == "symmetric" and spec.clip == "absmax":
            count = count - _count_at_absmax(X, amax, valid, ax)
        return jnp.sum(jnp.where(amax == 0, 0.0, var_g * count)) / W.size
    exact = jnp.broadcast_to(amax == 0, X.shape)
    if spec.bits > 1 and spec.scheme == "symmetric" and spec.clip == "absmax":
        exact = exact | (jnp.abs(X) == amax)
    step_groups = jnp.reshape(step, amax.shape).astype(jnp.float32)
    if spec.rounding == "stochastic" and signal_free:
        var = jnp.broadcast_to(jnp.square(step_groups) / 6.0, X.shape)
    elif spec.rounding == "stochastic":
        y = X / jnp.where(step_groups > 0, step_groups, 1.0)  # a step that underflowed contributes 0, not NaN
        frac = y - jnp.floor(y)
        var = frac * (1.0 - frac) * jnp.square(step_groups)
    else:
        var = jnp.broadcast_to(jnp.square(step_groups) / 12.0, X.shape)
    # Summed in the group layout, padding excluded.
    return row_sums(jnp.where(exact, 0.0, var) * valid)[0] / W.size


def _count_at_absmax(X: Float[Array, "G n"], amax: jax.Array, valid: jax.Array, ax: int) -> jax.Array:
    """How many valid entries of each group have ``|x| = max|x|`` (kept dims), by arithmetic alone.

    In the group's binary scale (exact) the gap ``max|x| − |x|`` is 0 at the maximum and at least ``2^−24``
    elsewhere (one unit in the last place of a number in ``[0.5, 1)``), so ``1 − min(2^25·gap, 1)`` is the indicator.
    Written so, the sum fuses into one read of ``X``; a comparison would make XLA:CPU write a mask of X's size first.
    """
    e = binary_exponent(amax)
    gap = times_pow2(amax, -e) - times_pow2(jnp.abs(X), -e)
    return _count((1.0 - jnp.minimum(gap * 2.0**25, 1.0)) * valid, ax)


def _valid_mask(spec: QuantSpec, shape: tuple[int, int]) -> Float[Array, "G n"]:
    """1 on the entries of the group layout that belong to W, 0 on the padding of ragged groups."""
    if spec.granularity != "group" or shape[1] % spec.group_size == 0:
        return jnp.ones((1, 1), jnp.float32)
    V, d = shape
    width = d + (-d) % spec.group_size
    return (jnp.arange(V * width) % width < d).reshape(-1, spec.group_size).astype(jnp.float32)


def row_sums(*xs: Float[Array, "V d"]) -> tuple[Float[Array, ""], ...]:
    """Sums of several same-shape matrices in one pass (a variadic reduce over rows, then over the row sums).

    One pass instead of one per statistic (5× faster on CPU). Two stages keep float32 accurate: the same
    variadic reduce over both axes at once lost 10% of a 50257×768 sum of squares on XLA:CPU; the sum of row
    sums agrees with float64 to ~1e-8.
    """
    zeros = tuple(jnp.zeros((), x.dtype) for x in xs)
    per_row = jax.lax.reduce(xs, zeros, lambda a, b: tuple(u + v for u, v in zip(a, b, strict=True)), (1,))
    return tuple(jnp.sum(r) for r in per_row)
