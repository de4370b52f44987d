"""The format registry: every number format a :class:`~zipfrmt.quant.QuantSpec` can name, in one table.

A format is *how* values are put on a grid: its code book, its block constraints and the noise model the
theory uses for it. *What* is quantized (a matrix, the embedding of a model, the gradients of its linear
layers) is the caller's business: :func:`zipfrmt.quant.quantize` and :func:`zipfrmt.quant.fake_quant` take a
spec, look its format up here, and treat every format alike — noise statistics, regime, random-matrix
prediction. Adding a format is one :class:`Format` entry in :data:`FORMATS` plus its tests
(``docs/quantization.md`` works one through).

Entries:

* ``int`` — the package's uniform quantizer at any width ``b`` (:mod:`zipfrmt.quant.uniform`); noise model
  Widrow's ``Δ²/12`` (``f(1−f)Δ²`` for stochastic rounding).
* ``fp8_e4m3``, ``fp8_e5m2`` — OCP 8-bit floats; ``nf4`` — the 4-bit NormalFloat code book (Dettmers et al.
  2023); scales by absmax over the spec's scale group.
* ``mxfp4`` — OCP Microscaling e2m1 values with a power-of-two scale per block of 32 along a row;
  ``nvfp4`` — e2m1 values with an fp8-e4m3 scale per block of 16.
* ``q8_0``, ``q5_0``, ``q5_1``, ``q4_0``, ``q4_1``, ``tq1_0``, ``tq2_0``, ``ggml_mxfp4`` — llama.cpp's GGUF block
  formats, quantized by llama.cpp's own ``gguf`` package (:mod:`zipfrmt.quant.ggml`).

The real formats are quantized by Qwix (``qwix.quantize`` → ``qwix.dequantize``), never hand-written tables.
Their grids are not uniform, so their noise model is Bennett's (1948) high-resolution formula: an entry's
error variance is ``Δ_loc²/12`` with ``Δ_loc`` the width of the quantization cell it falls in (scale × the
width of its level's cell on the format's code book).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from zipfrmt.quant import ggml, rowchunks, uniform

if TYPE_CHECKING:
    from zipfrmt.quant.spec import QuantSpec

__all__ = ["CLIPS", "FORMATS", "GRANULARITIES", "ROUNDINGS", "SCHEMES", "Format", "code_book", "qwix_format"]

SCHEMES = ("symmetric", "asymmetric")
GRANULARITIES = ("tensor", "row", "column", "group")
CLIPS = ("absmax", "percentile", "mse")
ROUNDINGS = ("nearest", "stochastic")

#: ``quantize(spec, W, key) -> (Q(W), scales, in-range mask)``: pure and jit-able (``spec`` static).
QuantizeFn = Callable[["QuantSpec", Float[Array, "V d"], Any], tuple[jax.Array, jax.Array, Bool[Array, "V d"]]]
#: ``noise_var(spec, W, Q, scales) -> model variance``: the mean over entries of the model's error variance.
NoiseVarFn = Callable[["QuantSpec", Float[Array, "V d"], Float[Array, "V d"], jax.Array], Float[Array, ""]]


@dataclasses.dataclass(frozen=True)
class Format:
    """One number format of the registry.

    Attributes:
      name: the spec's head (``int`` is written ``int<b>`` in spec text).
      bits: bits per stored value, or None when the spec chooses it (``int``).
      block: a fixed scale-block length along a row (the format takes no granularity), or None.
      default_granularity: the scale groups a spec gets when it names none.
      schemes, clips, roundings: what the format supports.
      quantize: ``(spec, W, key) -> (Q(W), scales, in-range mask)``.
      noise_var: ``(spec, W, Q, scales) -> model noise variance`` (mean over entries).
      noise_model: the model's name and formula, for reports.
      source: where the format is defined.
    """

    name: str
    bits: int | None
    block: int | None
    default_granularity: str
    schemes: tuple[str, ...]
    clips: tuple[str, ...]
    roundings: tuple[str, ...]
    quantize: QuantizeFn = dataclasses.field(repr=False)
    noise_var: NoiseVarFn = dataclasses.field(repr=False)
    noise_model: str
    source: str


# ---------------------------------------------------------------------------------------------------------
# Real formats through Qwix
# ---------------------------------------------------------------------------------------------------------


def _qwix_layout(spec: QuantSpec) -> tuple[tuple[int, ...], dict[int, int]]:
    """Qwix's (channelwise axes, tiled axes) for the spec's scale groups on a V×d matrix (rows = tokens)."""
    if spec.granularity == "group":
        return (0,), {1: spec.group_size}
    return {"tensor": ((), {}), "row": ((0,), {}), "column": ((1,), {})}[spec.granularity]


def _qwix_quantize(qtype: Any) -> QuantizeFn:
    def quantize(spec: QuantSpec, W: Float[Array, "V d"], key: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
        import qwix  # heavy import, only needed here

        channel, tiles = _qwix_layout(spec)

        def run(X: jax.Array) -> tuple[jax.Array, jax.Array]:
            qarr = qwix.quantize(X, qtype, channelwise_axes=channel, tiled_axes=tiles)
            return qwix.dequantize(qarr).astype(X.dtype), jnp.asarray(qarr.scale, jnp.float32)

        if spec.granularity in ("row", "group"):  # scales along rows: the same result in chunks of rows
            deq, scale = rowchunks.map_rows(run, W)
        else:
            deq, scale = run(W)
        return deq, scale, jnp.ones(W.shape, bool)

    return quantize


#: NVFP4's largest e2m1 code times e4m3's largest number: the per-tensor scale maps ``max|W|`` here.
_NVFP4_TENSOR_RANGE = 6.0 * 448.0


def _nvfp4_quantize() -> QuantizeFn:
    """NVFP4 with its two-level scaling: a float32 per-tensor scale ``s = max|W| / (6 · 448)`` and Qwix's e2m1
    codes with e4m3 scales per 16 entries of ``W / s``; ``Q(W) = s · Q_qwix(W / s)``, scales ``s · e4m3``.

    NVIDIA's format (the NVFP4 training recipe, arXiv 2509.25149, §2; Transformer Engine) encodes each block
    scale in e4m3 *relative to* the per-tensor scale, so that the largest block scale is e4m3's largest number
    and a tensor of any magnitude keeps e4m3's full range for its blocks. Qwix's ``nvfp4`` stores the block scale
    in e4m3 directly: without ``s``, every block whose ``max|w|/6`` is below e4m3's smallest number 2^−9 is
    flushed to zero, which on an embedding with ``max|W| ≈ 0.02`` is most blocks. A block whose scale relative
    to ``s`` is still below 2^−10 (``max|w| < 2.2·10^−6 · max|W|``) is flushed, as in the format itself; its
    scale is reported as 0.
    """
    qwix_nvfp4 = _qwix_quantize("nvfp4")

    def quantize(spec: QuantSpec, W: Float[Array, "V d"], key: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
        amax = jnp.max(jnp.abs(W))
        s = jnp.where(amax > 0, amax / _NVFP4_TENSOR_RANGE, 1.0).astype(W.dtype)
        deq, scale, inside = qwix_nvfp4(spec, W / s, key)
        return deq * s, scale * s, inside

    return quantize


def _expand_scale(scale: jax.Array, shape: tuple[int, int]) -> Float[Array, "V d"]:
    """A Qwix scale (scalar, per row/column, or tiled along axis 1) broadcast to the matrix shape."""
    V, d = shape
    scale = jnp.broadcast_to(scale, (1, 1)) if scale.ndim == 0 else scale
    if scale.shape[1] not in (1, d):
        scale = jnp.repeat(scale, d // scale.shape[1], axis=1)
    return jnp.broadcast_to(scale, (V, d))


@functools.cache
def code_book(qtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """Sorted finite values of a Qwix format (in units of its scale) and the width of each value's cell.

    The cell of level ``L_i`` runs between the midpoints to its neighbours, so its width is
    ``(L_{i+1} − L_{i−1})/2`` inside the grid and the one-sided gap at the two ends.
    """
    from qwix._src.core import numerics  # Qwix's own code books

    with jax.ensure_compile_time_eval():  # constants, also when called while tracing
        return _code_book(qtype, numerics)


def _code_book(qtype: Any, numerics: Any) -> tuple[np.ndarray, np.ndarray]:
    if qtype == "nf4":
        vals = np.asarray(numerics.get_nf4_buckets(), np.float64)
    elif not isinstance(qtype, str) and jnp.issubdtype(jnp.dtype(qtype), jnp.integer):
        info = jnp.iinfo(jnp.dtype(qtype))
        vals = np.arange(int(info.min), int(info.max) + 1, dtype=np.float64)
    else:
        dtype = jnp.float4_e2m1fn if qtype in ("mxfp4", "nvfp4") else jnp.dtype(qtype)
        nbits = jnp.finfo(dtype).bits
        codes = jnp.arange(2**nbits, dtype=jnp.uint8)
        if nbits == 4:
            vals = np.asarray(jax.lax.bitcast_convert_type(codes, jnp.uint4).astype(jnp.uint8))
            vals = np.asarray(jax.lax.bitcast_convert_type(jnp.asarray(vals, jnp.uint4), dtype), np.float64)
        else:
            vals = np.asarray(jax.lax.bitcast_convert_type(codes, dtype).astype(jnp.float32), np.float64)
    vals = np.unique(vals[np.isfinite(vals)])
    gaps = np.diff(vals)
    widths = np.empty_like(vals)
    widths[1:-1] = (gaps[:-1] + gaps[1:]) / 2
    widths[0], widths[-1] = gaps[0], gaps[-1]
    return vals, widths


def _bennett_noise_var(qtype: Any) -> NoiseVarFn:
    """Bennett's formula on the format's code book: mean over entries of ``(scale · cell width)²/12``; an entry that
    is exactly 0 (every code book holds 0) counts 0 — so does every entry of an all-zero group, whose scale is 1."""

    def noise_var(spec: QuantSpec, W: jax.Array, Q: jax.Array, scale: jax.Array) -> jax.Array:
        levels, widths = code_book(qtype)
        levels, widths = jnp.asarray(levels, jnp.float32), jnp.asarray(widths, jnp.float32)

        def row_sums(W: jax.Array, Q: jax.Array, scale: jax.Array) -> jax.Array:
            scale_full = _expand_scale(scale, W.shape)
            code = Q.astype(jnp.float32) / jnp.where(scale_full > 0, scale_full, 1.0)
            cell = widths[jnp.searchsorted((levels[1:] + levels[:-1]) / 2, code)] * scale_full  # its level's cell
            cell = jnp.where(W == 0, 0.0, cell)  # 0 is on every code book: an exact zero (a zero group) counts 0
            return jnp.sum(jnp.square(cell), axis=1)

        # in chunks of rows: the search's loop carries two arrays of its input's shape
        return rowchunks.sum_rows(row_sums, W, Q, scale) / W.size / 12.0

    return noise_var


def qwix_format(name: str, qtype: Any, bits: int, block: int | None, source: str) -> Format:
    return Format(
        name=name, bits=bits, block=block, default_granularity="group" if block else "row",
        schemes=("symmetric",), clips=("absmax",), roundings=("nearest",),
        quantize=_nvfp4_quantize() if qtype == "nvfp4" else _qwix_quantize(qtype),
        noise_var=_bennett_noise_var(qtype),
        noise_model="Bennett: mean (scale × code-book cell width)²/12", source=source,
    )


def ggml_format(name: str) -> Format:
    """A llama.cpp block format (:mod:`zipfrmt.quant.ggml`), quantized by the ``gguf`` package."""
    layout = ggml.GGML_FORMATS[name]
    mx = layout.scale_at is None
    return Format(
        name=name, bits=layout.bits, block=layout.block, default_granularity="group",
        schemes=("symmetric",), clips=("absmax",), roundings=("nearest",),
        quantize=ggml.ggml_quantizer(name),
        noise_var=_bennett_noise_var("mxfp4") if mx else ggml.widrow_block_noise_var,
        noise_model=("Bennett: mean (scale × e2m1 cell width)²/12" if mx
                     else "Widrow on the block grid: mean d²/12, d the fp16 step of each block"),
        source=layout.source,
    )


# ---------------------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------------------

#: Every format a spec can name. One entry per format: a new format is one line here plus its tests.
FORMATS: dict[str, Format] = {
    "int": Format(
        name="int", bits=None, block=None, default_granularity="tensor",
        schemes=SCHEMES, clips=CLIPS, roundings=ROUNDINGS,
        quantize=uniform.quantize_uniform, noise_var=uniform.uniform_noise_var,
        noise_model="Widrow: mean Δ²/12 (stochastic rounding: mean f(1−f)Δ²)",
        source="uniform b-bit grid, docs/conventions.md",
    ),
    "fp8_e4m3": qwix_format("fp8_e4m3", jnp.float8_e4m3fn, 8, None, "OCP 8-bit floating point (E4M3)"),
    "fp8_e5m2": qwix_format("fp8_e5m2", jnp.float8_e5m2, 8, None, "OCP 8-bit floating point (E5M2)"),
    "nf4": qwix_format("nf4", "nf4", 4, None, "4-bit NormalFloat, Dettmers et al. 2023 (QLoRA)"),
    "mxfp4": qwix_format("mxfp4", "mxfp4", 4, 32, "OCP Microscaling MXFP4: e2m1, power-of-two scale per 32"),
    "nvfp4": qwix_format("nvfp4", "nvfp4", 4, 16, "NVIDIA NVFP4: e2m1, fp8-e4m3 scale per 16 under an fp32 "
                                                  "per-tensor scale"),
    **{name: ggml_format(name) for name in ggml.GGML_FORMATS},
}
