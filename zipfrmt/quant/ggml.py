"""llama.cpp's block formats (GGUF ``Q8_0``, ``Q5_0``, ``Q5_1``, ``Q4_0``, ``Q4_1``, ``TQ1_0``, ``TQ2_0``, ``MXFP4``)
as formats of the registry, quantized by ``gguf`` — llama.cpp's own Python package — never re-implemented.

Every format stores blocks of ``n`` consecutive entries along a row (the contraction axis of a linear weight,
the feature axis of an embedding: ``ne0`` in GGML's order), each with an fp16 scale ``d`` (and, for the ``_1``
formats, an fp16 offset ``m``), so that an entry is ``d·q`` or ``d·q + m`` with an integer code ``q``:

========  =====  ================================  ===========================
format    block  value                             code ``q``
========  =====  ================================  ===========================
q8_0      32     ``d·q``, ``d = max|w|/127``        −127…127
q5_0      32     ``d·q``, ``d = w_max/−16``         −16…15 (``w_max``: the entry of largest ``|w|``)
q5_1      32     ``d·q + min w``, ``d = range/31``  0…31
q4_0      32     ``d·q``, ``d = w_max/−8``          −8…7
q4_1      32     ``d·q + min w``, ``d = range/15``  0…15
tq1_0     256    ``d·q``, ``d = max|w|``            −1, 0, 1 (ternary, 1.69 bits per weight)
tq2_0     256    ``d·q``, ``d = max|w|``            −1, 0, 1 (ternary, 2 bits per weight)
========  =====  ================================  ===========================

``ggml_mxfp4`` is llama.cpp's MXFP4: e2m1 values times a power of two ``2^(e−127)`` per block of 32. It is the
OCP format of the spec ``mxfp4`` (quantized by Qwix), but llama.cpp picks the shared exponent differently: on a
Gaussian matrix 7.7% of the entries differ between the two, so they are two formats.

The scale reported for each block is its step ``d`` (``2^(e−127)`` for ``ggml_mxfp4``), read from the block's
bytes (1 for an all-zero block, as Qwix reports it; 2^−24, fp16's finest step, for a nonzero block whose fp16
step underflowed to 0 and which therefore rounds to 0 entirely); the noise model is Widrow's ``d²/12`` per
entry on the integer grids and Bennett's on the e2m1 code book.
Quantization runs on the host (NumPy, through ``jax.pure_callback``), so it also runs inside ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

if TYPE_CHECKING:
    from zipfrmt.quant.spec import QuantSpec

__all__ = ["GGML_FORMATS", "GGMLBlock", "ggml_quantize_numpy"]


@dataclasses.dataclass(frozen=True)
class GGMLBlock:
    """The byte layout of one llama.cpp block type, as far as the package reads it.

    Attributes:
      qtype: the name of the ``gguf.GGMLQuantizationType``.
      block: entries per block.
      scale_at: byte offset of the fp16 scale ``d`` in the block (negative: from the end), or None for an e8m0
        exponent byte at offset 0 (``MXFP4``).
      bits: bits per stored value (the spec's ``bits``; ternary values count as 2).
      source: where the format is defined.
      offset: whether a block also stores an offset ``m`` (its minimum): values ``d·q + m``.
    """

    qtype: str
    block: int
    scale_at: int | None
    bits: int
    source: str
    offset: bool = False


#: The llama.cpp formats the ``gguf`` package can quantize, by spec name.
GGML_FORMATS: dict[str, GGMLBlock] = {
    "q8_0": GGMLBlock("Q8_0", 32, 0, 8, "llama.cpp Q8_0: int8 codes, fp16 scale per 32"),
    "q5_0": GGMLBlock("Q5_0", 32, 0, 5, "llama.cpp Q5_0: 5-bit codes, fp16 scale per 32"),
    "q5_1": GGMLBlock("Q5_1", 32, 0, 5, "llama.cpp Q5_1: 5-bit codes, fp16 scale and offset per 32", True),
    "q4_0": GGMLBlock("Q4_0", 32, 0, 4, "llama.cpp Q4_0: 4-bit codes, fp16 scale per 32"),
    "q4_1": GGMLBlock("Q4_1", 32, 0, 4, "llama.cpp Q4_1: 4-bit codes, fp16 scale and offset per 32", True),
    "tq1_0": GGMLBlock("TQ1_0", 256, -2, 2, "llama.cpp TQ1_0: ternary, 1.69 bits per weight, fp16 scale per 256"),
    "tq2_0": GGMLBlock("TQ2_0", 256, -2, 2, "llama.cpp TQ2_0: ternary in 2 bits, fp16 scale per 256"),
    "ggml_mxfp4": GGMLBlock("MXFP4", 32, None, 4, "llama.cpp MXFP4: e2m1, power-of-two scale per 32"),
}


def _block_scales(raw: np.ndarray, layout: GGMLBlock, shape: tuple[int, int]) -> np.ndarray:
    """The step of every block, ``(V, d/block)`` float32, read from the quantized bytes."""
    V, d = shape
    blocks = raw.reshape(V, d // layout.block, -1)
    if layout.scale_at is None:  # MXFP4: an e8m0 exponent byte, values e2m1 × 2^(e − 127)
        return np.ldexp(np.float32(1.0), blocks[..., 0].astype(np.int32) - 127).astype(np.float32)
    at = layout.scale_at % blocks.shape[-1]
    d = np.ascontiguousarray(blocks[..., at:at + 2]).view(np.float16)[..., 0].astype(np.float32)
    return np.abs(d)  # q4_0/q5_0 store d = w_max/−8 (/−16): negative when the largest |w| is positive


def ggml_quantize_numpy(name: str, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Q(W), block steps)`` of format ``name`` by the ``gguf`` package: ``dequantize(quantize(W))`` exactly."""
    from gguf import GGMLQuantizationType, quants

    layout = GGML_FORMATS[name]
    qtype = GGMLQuantizationType[layout.qtype]
    W = np.ascontiguousarray(W, np.float32)
    raw = quants.quantize(W, qtype)
    scale = _block_scales(raw, layout, W.shape)
    V, d = W.shape
    zero = ~np.any(W.reshape(V, d // layout.block, layout.block), axis=-1)
    flushed = (scale == 0) & ~zero  # an fp16 step that underflowed: the whole block rounds to 0
    scale = np.where(zero, np.float32(1.0), np.where(flushed, np.float32(2.0**-24), scale))  # 2^-24: fp16's finest
    return quants.dequantize(raw, qtype).astype(np.float32), scale.astype(np.float32)


def ggml_quantizer(name: str) -> Any:
    """The registry's ``quantize(spec, W, key) -> (Q(W), scales, in-range mask)`` for llama.cpp format ``name``."""
    block = GGML_FORMATS[name].block

    def quantize(spec: QuantSpec, W: Float[Array, "V d"], key: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
        V, d = W.shape
        out = (jax.ShapeDtypeStruct((V, d), jnp.float32), jax.ShapeDtypeStruct((V, d // block), jnp.float32))
        deq, scale = jax.pure_callback(lambda w: ggml_quantize_numpy(name, np.asarray(w)), out,
                                       W.astype(jnp.float32), vmap_method="sequential")
        return deq.astype(W.dtype), scale, jnp.ones(W.shape, bool)

    return quantize


def widrow_block_noise_var(spec: QuantSpec, W: jax.Array, Q: jax.Array, scale: jax.Array) -> jax.Array:
    """Widrow's model on the blocks' integer grids: the mean over entries of ``d²/12``, ``d`` the block's step.

    Entries the grid reproduces by construction (up to the fp16 rounding of the stored scale) count 0: each
    block's entry of largest ``|w|``, which sets ``d``; for the offset formats (``q4_1``, ``q5_1``) its minimum
    (the offset) and maximum; and every entry of an all-zero block. Without this the model overstates the noise
    of a block of 32 by 1/32 ≈ 3% (2/32 with an offset).
    """
    V, d = W.shape
    X = W.reshape(V, d // spec.group_size, spec.group_size).astype(jnp.float32)
    if GGML_FORMATS[spec.format].offset:
        exact = (X == X.max(axis=-1, keepdims=True)) | (X == X.min(axis=-1, keepdims=True))
    else:
        exact = jnp.abs(X) == jnp.abs(X).max(axis=-1, keepdims=True)  # also every entry of an all-zero block
    var = jnp.where(exact, 0.0, jnp.square(scale.astype(jnp.float32))[..., None])
    return jnp.mean(var) / 12.0
