"""GGUF files (llama.cpp's model format), read by ``gguf`` — llama.cpp's own Python reader — tensor by tensor.

A GGUF tensor has GGML dimensions ``ne = [ne0, ne1, …]`` with ``ne0`` contiguous: a 2-D tensor is the matrix of
``ne1`` rows of length ``ne0``. For a linear weight (``out×in`` in PyTorch) that is ``ne = [in, out]``, rows =
output channels running along the contraction axis; for ``token_embd.weight`` it is ``ne = [d, V]``, rows =
tokens. The package reports shapes in NumPy order, ``(ne1, ne0)``, and quantized blocks always run along a row.

Stored types: F32, F16, BF16 and every block type ``gguf.quants.dequantize`` supports (Q4_0…Q8_0, the k-quants
Q2_K…Q6_K, the i-quants, TQ1_0/TQ2_0, MXFP4) are read; a block-quantized tensor is dequantized in blocks of rows
into one float32 array, so memory is the output plus one block of rows. A type ``gguf`` cannot dequantize is an
error that names the file, the tensor and the type.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["gguf_tensors", "load_gguf_matrix"]

#: Rows dequantized at a time (a 262,144-row embedding is converted in 64 steps).
ROW_BLOCK = 4096


def _reader(p: Path) -> Any:
    """The file's ``GGUFReader``, parsed once per file version (a large vocabulary takes seconds to parse, and a
    whole-model run asks for every tensor)."""
    st = p.stat()
    return _cached_reader(str(p.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _cached_reader(p: str, size: int, mtime_ns: int) -> Any:
    from gguf import GGUFReader

    try:
        return GGUFReader(p, "r")
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # the reader raises ValueError, struct.error, IndexError… on a corrupt file
        if "GGMLQuantizationType" in str(exc):
            raise ValueError(f"{p}: holds a tensor type that gguf {_gguf_version()} does not know ({exc}); update "
                             "gguf") from None
        raise ValueError(f"{p}: corrupt or truncated GGUF file ({type(exc).__name__}: {exc})") from None


def gguf_tensors(p: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape in NumPy order, stored type name)}`` of a GGUF file (metadata only)."""
    return {t.name: (tuple(int(n) for n in reversed(t.shape)), t.tensor_type.name) for t in _reader(p).tensors}


def load_gguf_matrix(p: Path, name: str, dtype: Any = np.float32) -> np.ndarray:
    """The 2-D tensor ``name`` of GGUF file ``p`` as a ``(ne1, ne0)`` float matrix (``dtype``)."""
    from gguf import GGMLQuantizationType, quants

    tensors = {t.name: t for t in _reader(p).tensors}
    t = tensors[name]
    qtype = t.tensor_type
    rows = int(t.shape[1]) if len(t.shape) > 1 else 1
    cols = int(t.shape[0])
    data = t.data.reshape(rows, -1)
    if qtype in (GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.F64):
        return np.asarray(data).astype(dtype, copy=False)
    out = np.empty((rows, cols), dtype)
    for r0 in range(0, rows, ROW_BLOCK):
        block = np.asarray(data[r0:r0 + ROW_BLOCK])
        try:
            out[r0:r0 + ROW_BLOCK] = quants.dequantize(block, qtype).reshape(-1, cols)
        except NotImplementedError:
            raise ValueError(
                f"tensor: {name!r} in '{p}' is stored as {qtype.name}, which the gguf package (version "
                f"{_gguf_version()}) cannot dequantize; convert the file with llama.cpp's tools or update gguf"
            ) from None
    return out


def _gguf_version() -> str:
    from importlib.metadata import version

    try:
        return version("gguf")
    except Exception:
        return "unknown"
