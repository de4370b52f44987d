"""Real matrices from checkpoint files: ``.npy``, ``.npz`` and ``.safetensors``, one tensor at a time.

:func:`list_tensors` reads only the headers; :func:`load_matrix` returns one 2-D floating-point tensor as a
NumPy array (rows = tokens; ``transpose=True`` for a file that stores ``d×V``). A tensor already stored in
the requested dtype comes back as a read-only ``np.memmap`` of the file, so nothing is copied; half
precision and fp8 are converted. Every error names the file, the tensor and what was expected, and comes
before any large read.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import ml_dtypes
import numpy as np

from zipfrmt.checks import check_float_dtype, describe

__all__ = ["SUPPORTED_EXTENSIONS", "list_tensors", "load_matrix"]


#: File types :func:`load_matrix` and :func:`list_tensors` read.
SUPPORTED_EXTENSIONS = (".npy", ".npz", ".safetensors")

#: safetensors dtype codes → (NumPy dtype of the stored words, name reported by :func:`list_tensors`).
_ST_DTYPES: dict[str, tuple[Any, str]] = {
    "F64": (np.dtype("<f8"), "float64"),
    "F32": (np.dtype("<f4"), "float32"),
    "F16": (np.dtype("<f2"), "float16"),
    "BF16": (np.dtype("<u2"), "bfloat16"),
    "F8_E4M3": (np.dtype(ml_dtypes.float8_e4m3fn), "float8_e4m3fn"),
    "F8_E5M2": (np.dtype(ml_dtypes.float8_e5m2), "float8_e5m2"),
    "I64": (np.dtype("<i8"), "int64"),
    "I32": (np.dtype("<i4"), "int32"),
    "I16": (np.dtype("<i2"), "int16"),
    "I8": (np.dtype("i1"), "int8"),
    "U64": (np.dtype("<u8"), "uint64"),
    "U32": (np.dtype("<u4"), "uint32"),
    "U16": (np.dtype("<u2"), "uint16"),
    "U8": (np.dtype("u1"), "uint8"),
    "BOOL": (np.dtype("?"), "bool"),
}
_FLOAT_NAMES = ("float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2")


class _StEntry(NamedTuple):
    dtype: str  # the safetensors code, e.g. "BF16"
    shape: tuple[int, ...]
    start: int  # absolute byte offsets in the file
    stop: int


def _check_path(path: Any) -> tuple[Path, str]:
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path: expected a file path (str or pathlib.Path), got {describe(path)}")
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise ValueError(
            f"path: unsupported file type {ext or '(no extension)'!r} of '{p}'; expected one of "
            f"{', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if p.is_dir():
        raise IsADirectoryError(f"path: '{p}' is a directory, expected a {ext} file")
    if not p.is_file():
        raise FileNotFoundError(f"path: no such file: '{p}'")
    return p, ext


def _read_safetensors_header(p: Path) -> dict[str, _StEntry]:
    """Parse and check the header: 8-byte little-endian length N, then N bytes of JSON; data follow.

    Every entry must have a dtype string, a shape of non-negative integers and ``data_offsets [b, e]``
    (relative to the data region) with ``0 ≤ b ≤ e ≤`` the data size and, for a known dtype,
    ``e − b = prod(shape) · itemsize``. Only the header is read.
    """
    size = p.stat().st_size
    with open(p, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError(f"{p}: not a safetensors file: {size} bytes, too short for the 8-byte header length")
        n = int.from_bytes(raw, "little")
        if n > size - 8:
            raise ValueError(
                f"{p}: corrupt or truncated safetensors file: the header length field says {n} bytes but only "
                f"{size - 8} bytes follow it"
            )
        text = f.read(n)
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: corrupt safetensors file: its header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        what = type(header).__name__
        raise ValueError(f"{p}: corrupt safetensors file: expected a JSON object as header, got a JSON {what}")
    data_start, data_size = 8 + n, size - 8 - n
    entries = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        ok = (
            isinstance(info, dict)
            and isinstance(info.get("dtype"), str)
            and isinstance(info.get("shape"), list)
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in info["shape"])
            and isinstance(info.get("data_offsets"), list)
            and len(info["data_offsets"]) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in info["data_offsets"])
        )
        if not ok:
            raise ValueError(
                f"{p}: corrupt safetensors header: entry {name!r} needs dtype, shape and data_offsets, got "
                f"{describe(info)}"
            )
        b, e = info["data_offsets"]
        if not 0 <= b <= e <= data_size:
            raise ValueError(
                f"{p}: corrupt or truncated safetensors file: tensor {name!r} has data_offsets [{b}, {e}] but the "
                f"data region holds {data_size} bytes"
            )
        shape = tuple(info["shape"])
        if info["dtype"] in _ST_DTYPES:
            want = math.prod(shape) * _ST_DTYPES[info["dtype"]][0].itemsize
            if e - b != want:
                raise ValueError(
                    f"{p}: corrupt safetensors header: tensor {name!r} of shape {list(shape)} and dtype "
                    f"{info['dtype']} needs {want} bytes, its data_offsets [{b}, {e}] span {e - b}"
                )
        entries[name] = _StEntry(info["dtype"], shape, data_start + b, data_start + e)
    return entries


def _npy_header(f: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of a ``.npy`` stream (NEP 1 format; the data are not read)."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:  # (3, 0): utf-8 field names; NumPy has no public reader for it
        shape, _, dtype = np.lib.format._read_array_header(f, version)
    return tuple(shape), dtype


def _corrupt(p: Path, kind: str, exc: BaseException) -> ValueError:
    return ValueError(f"{p}: corrupt or truncated {kind} file ({type(exc).__name__}: {exc})")


def list_tensors(path: str | Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, dtype)}`` of the arrays in a ``.safetensors``, ``.npz`` or ``.npy`` file.

    Reads headers only (no tensor data). dtypes are NumPy-style names (``"float32"``, ``"bfloat16"``, …;
    safetensors codes outside the table, e.g. future formats, are reported as stored). A ``.npy`` file holds one
    array, listed under the file's stem. Order: as stored.
    """
    p, ext = _check_path(path)
    if ext == ".safetensors":
        return {
            name: (e.shape, _ST_DTYPES[e.dtype][1] if e.dtype in _ST_DTYPES else e.dtype)
            for name, e in _read_safetensors_header(p).items()
        }
    try:
        if ext == ".npy":
            with open(p, "rb") as f:
                shape, dtype = _npy_header(f)
            return {p.stem: (shape, str(dtype))}
        out = {}
        with zipfile.ZipFile(p) as z:
            for member in z.namelist():
                if member.endswith(".npy"):
                    with z.open(member) as f:
                        shape, dtype = _npy_header(f)
                    out[member[: -len(".npy")]] = (shape, str(dtype))
        return out
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _corrupt(p, ext, exc) from exc


def _pick(p: Path, tensor: str | None, names: list[str], shapes: dict[str, Any]) -> str:
    listing = ", ".join(f"{n!r} {list(shapes[n])}" for n in names) or "none"
    if tensor is None:
        if len(names) == 1:
            return names[0]
        raise ValueError(f"tensor: '{p}' holds {len(names)} arrays, name one with tensor=...; it holds: {listing}")
    if tensor not in shapes:
        raise ValueError(f"tensor: no tensor {tensor!r} in '{p}'; it holds: {listing}")
    return tensor


def load_matrix(
    path: str | Path,
    *,
    tensor: str | None = None,
    transpose: bool = False,
    dtype: Any = np.float32,
) -> np.ndarray:
    """A 2-D floating-point matrix from a ``.npy``, ``.npz`` or ``.safetensors`` file, rows = tokens.

    * ``.npy``: ``np.load(path, mmap_mode="r")`` — nothing is read until used.
    * ``.npz``: the array named ``tensor`` (a zip member; only that member is read); ``tensor`` may be omitted
      when the file holds one array.
    * ``.safetensors``: the tensor named ``tensor`` (may be omitted when there is one). The header is parsed
      here (8-byte little-endian length, JSON ``{name: {dtype, shape, data_offsets}}``, Narsil et al.,
      huggingface/safetensors) and only the tensor's own byte range is mapped: no other tensor is read.
      Stored dtypes F64, F32, F16, BF16, F8_E4M3, F8_E5M2; BF16 (not a NumPy dtype) is widened exactly as
      ``(u16 << 16).view(float32)``.

    A tensor stored in ``dtype`` already (little-endian) comes back as a read-only ``np.memmap`` of the file
    (so a 128k-row float32 embedding costs no memory until used); any other float dtype is converted in
    memory. Entries are not checked for NaN/Inf here (that would read the whole file); the spectral functions
    check what they use.

    Args:
      path: the file; its extension picks the format.
      tensor: the array's name (safetensors tensor name or npz key); see :func:`list_tensors`.
      transpose: return ``Wᵀ`` (a view) — for files that store the matrix as ``d×V``.
      dtype: float32 (default) or float64.

    Raises:
      FileNotFoundError: no such file. ValueError: unsupported extension; unknown tensor name (the message
      lists the names in the file); not 2-D or empty; a corrupt or truncated file (header length beyond the
      file, invalid JSON, ``data_offsets`` beyond the file, bad ``.npy``/zip). TypeError: a non-float tensor.
    """
    p, ext = _check_path(path)
    if tensor is not None and not isinstance(tensor, str):
        raise TypeError(f"tensor: expected a tensor name (str) or None, got {describe(tensor)}")
    if not isinstance(transpose, bool):
        raise TypeError(f"transpose: expected a bool, got {describe(transpose)}")
    out_dtype = check_float_dtype(dtype)

    if ext == ".safetensors":
        entries = _read_safetensors_header(p)
        name = _pick(p, tensor, list(entries), {n: e.shape for n, e in entries.items()})
        e = entries[name]
        if e.dtype not in _ST_DTYPES:
            raise TypeError(
                f"tensor: {name!r} in '{p}' has safetensors dtype {e.dtype}, which this loader does not read "
                f"(it reads {', '.join(c for c, (_, k) in _ST_DTYPES.items() if k in _FLOAT_NAMES)})"
            )
        kind = _ST_DTYPES[e.dtype][1]
        _check_matrix_meta(p, name, e.shape, kind, kind in _FLOAT_NAMES)
        word = _ST_DTYPES[e.dtype][0]
        W = np.memmap(p, dtype=word, mode="r", offset=e.start, shape=e.shape)
        if e.dtype == "BF16":
            W = (np.asarray(W).astype(np.uint32) << 16).view(np.float32)
    elif ext == ".npy":
        if tensor not in (None, p.stem):
            raise ValueError(f"tensor: a .npy file holds one array (listed as {p.stem!r}), got tensor={tensor!r}")
        try:
            W = np.load(p, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise _corrupt(p, ext, exc) from exc
        _check_matrix_meta(p, p.stem, W.shape, str(W.dtype), np.issubdtype(W.dtype, np.floating))
    else:
        shapes = list_tensors(p)
        name = _pick(p, tensor, list(shapes), {n: s for n, (s, _) in shapes.items()})
        shape, kind = shapes[name]
        _check_matrix_meta(p, name, shape, kind, np.issubdtype(np.dtype(kind), np.floating))
        try:
            with np.load(p, allow_pickle=False) as z:
                W = z[name]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise _corrupt(p, ext, exc) from exc
    if W.dtype != out_dtype:
        W = np.asarray(W).astype(out_dtype)  # in memory: a plain ndarray, not a memmap subclass
    return W.T if transpose else W


def _check_matrix_meta(p: Path, name: str, shape: tuple[int, ...], dtype: str, is_float: bool) -> None:
    if not is_float:
        raise TypeError(
            f"tensor: {name!r} in '{p}' has dtype {dtype}; a floating-point tensor is needed "
            f"({', '.join(_FLOAT_NAMES)})"
        )
    if len(shape) != 2:
        raise ValueError(
            f"tensor: {name!r} in '{p}' has shape {list(shape)} ({len(shape)}-D); a matrix (2-D, rows = tokens) "
            "is needed"
        )
    if 0 in shape:
        raise ValueError(f"tensor: {name!r} in '{p}' has shape {list(shape)}; a non-empty matrix is needed")
