"""Real matrices from checkpoint files: ``.npy``, ``.npz``, ``.safetensors`` (one file, or a sharded folder with
its ``model.safetensors.index.json``) and ``.gguf`` (llama.cpp; :mod:`zipfrmt.gguf_io`), one tensor at a time.

:func:`list_tensors` reads only the headers; :func:`load_matrix` returns one 2-D floating-point tensor as a
NumPy array (rows = tokens; ``transpose=True`` for a file that stores ``d×V``). A tensor already stored in
the requested dtype comes back as a read-only ``np.memmap`` of the file, so nothing is copied; half
precision and fp8 are converted. Every error names the file, the tensor and what was expected, and comes
before any large read. A float64 tensor loaded as float32 (the default) must fit float32's range: an entry
beyond it would silently become inf, so it is an error naming the tensor.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import ml_dtypes
import numpy as np

from zipfrmt.checks import check_float32_range, check_float_dtype, describe

__all__ = ["SHARD_INDEX", "SUPPORTED_EXTENSIONS", "check_matrix_tensor", "fingerprint", "is_float_dtype",
           "list_tensors", "load_matrix"]


#: File types :func:`load_matrix` and :func:`list_tensors` read (and a folder holding :data:`SHARD_INDEX`).
SUPPORTED_EXTENSIONS = (".npy", ".npz", ".safetensors", ".gguf", ".safetensors.index.json")

#: The index of a sharded safetensors checkpoint (Hugging Face's layout): ``{"weight_map": {tensor: shard}}``.
SHARD_INDEX = "model.safetensors.index.json"

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
    if p.is_dir() and (p / SHARD_INDEX).is_file():  # a sharded checkpoint: read through its index
        p = p / SHARD_INDEX
    ext = ".safetensors.index.json" if p.name.lower().endswith(".safetensors.index.json") else p.suffix.lower()
    if p.is_dir():
        raise IsADirectoryError(
            f"path: '{p}' is a directory without a {SHARD_INDEX}; expected a "
            f"{ext if ext in SUPPORTED_EXTENSIONS else 'checkpoint'} file ({', '.join(SUPPORTED_EXTENSIONS)}) or "
            "the folder of a sharded safetensors checkpoint"
        )
    if ext not in SUPPORTED_EXTENSIONS:
        raise ValueError(
            f"path: unsupported file type {ext or '(no extension)'!r} of '{p}'; expected one of "
            f"{', '.join(SUPPORTED_EXTENSIONS)}"
        )
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


def _npy_header(f: Any, size: int) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of a ``.npy`` stream of ``size`` bytes (NEP 1 format; the data are not
    read). The data that follow the header must be at least as long as the header's shape and dtype say (an
    object array's size is not known from its header and is not checked)."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:  # (3, 0): utf-8 field names; NumPy has no public reader for it
        shape, _, dtype = np.lib.format._read_array_header(f, version)
    if not dtype.hasobject:
        need, have = math.prod(shape) * dtype.itemsize, size - f.tell()
        if have < need:
            raise EOFError(f"the header says shape {list(shape)} and dtype {dtype}, {need} data bytes, but only "
                           f"{have} bytes follow it")
    return tuple(shape), dtype


def _corrupt(p: Path, kind: str, exc: BaseException) -> ValueError:
    return ValueError(f"{p}: corrupt or truncated {kind} file ({type(exc).__name__}: {exc})")


def list_tensors(path: str | Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, dtype)}`` of the arrays in a ``.safetensors``, ``.npz`` or ``.npy`` file.

    Reads headers only (no tensor data), and checks that every array's data are as long as its header says
    (a truncated file is an error for every format). dtypes are NumPy-style names (``"float32"``,
    ``"bfloat16"``, …; safetensors codes outside the table, e.g. future formats, are reported as stored). A
    ``.npy`` file holds one array, listed under the file's stem. Order: as stored.

    Raises:
      FileNotFoundError, IsADirectoryError, ValueError (unsupported extension, corrupt or truncated file, a file
      that holds no arrays): as :func:`load_matrix`.
    """
    p, ext = _check_path(path)
    if ext == ".safetensors":
        out = {
            name: (e.shape, _ST_DTYPES[e.dtype][1] if e.dtype in _ST_DTYPES else e.dtype)
            for name, e in _read_safetensors_header(p).items()
        }
    elif ext == ".safetensors.index.json":
        out = {}
        for shard, names in _shards(p).items():
            listing = list_tensors(shard)
            for name in names:
                if name not in listing:
                    raise ValueError(f"{p}: the index maps tensor {name!r} to shard '{shard.name}', which does not "
                                     "hold it")
                out[name] = listing[name]
    elif ext == ".gguf":
        from zipfrmt.gguf_io import gguf_tensors

        out = gguf_tensors(p)
    else:
        try:
            if ext == ".npy":
                with open(p, "rb") as f:
                    shape, dtype = _npy_header(f, p.stat().st_size)
                return {p.stem: (shape, str(dtype))}
            out = {}
            with zipfile.ZipFile(p) as z:
                for info in z.infolist():
                    if info.filename.endswith(".npy"):
                        with z.open(info) as f:
                            shape, dtype = _npy_header(f, info.file_size)
                        out[info.filename[: -len(".npy")]] = (shape, str(dtype))
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise _corrupt(p, ext, exc) from exc
    if not out:
        raise ValueError(f"{p}: the {ext} file holds no arrays (nothing to list or load)")
    return out


def check_matrix_tensor(path: str | Path, tensor: str | None = None) -> tuple[str, tuple[int, ...], str]:
    """``(name, shape, dtype)`` of the tensor :func:`load_matrix` would load, from the headers alone.

    The same checks as :func:`load_matrix` (file, extension, tensor name, a 2-D floating-point non-empty
    matrix, data as long as the header says) with the same errors, before any tensor data are read.
    """
    p, ext = _check_path(path)
    if tensor is not None and not isinstance(tensor, str):
        raise TypeError(f"tensor: expected a tensor name (str) or None, got {describe(tensor)}")
    listing = list_tensors(p)
    if ext == ".npy" and tensor not in (None, p.stem):
        raise ValueError(f"tensor: a .npy file holds one array (listed as {p.stem!r}), got tensor={tensor!r}")
    name = _pick(p, tensor, list(listing), {n: s for n, (s, _) in listing.items()})
    shape, kind = listing[name]
    _check_matrix_meta(p, name, shape, kind, _is_float(ext, kind))
    return name, shape, kind


def _shards(index: Path) -> dict[Path, list[str]]:
    """``{shard file: [tensor names]}`` of a sharded checkpoint's index; every shard must exist."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise TypeError("weight_map is not a mapping of tensor names to shard files")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{index}: not a safetensors index ({type(exc).__name__}: {exc}); expected JSON with "
                         '{"weight_map": {tensor: shard file}}') from None
    out: dict[Path, list[str]] = {}
    for name, shard in weight_map.items():
        out.setdefault(index.parent / shard, []).append(name)
    for shard, names in out.items():
        if not shard.is_file():
            raise FileNotFoundError(f"{index}: shard '{shard.name}' (holding {names[0]!r} and {len(names) - 1} "
                                    "more tensors) is listed in the index but missing")
    if not out:
        raise ValueError(f"{index}: the index lists no tensors (nothing to list or load)")
    return out


def is_float_dtype(path: str | Path, dtype: str) -> bool:
    """Whether ``dtype`` — a type name :func:`list_tensors` reports for ``path`` — is one :func:`load_matrix` reads
    as a floating-point matrix."""
    return _is_float(_check_path(path)[1], str(dtype))


def fingerprint(path: str | Path) -> list[list[Any]]:
    """``[[file, size, mtime_ns], …]`` of the file(s) a checkpoint is read from (every shard of a folder): a file
    rewritten in place gets another fingerprint."""
    p, ext = _check_path(path)
    files = [p] if ext != ".safetensors.index.json" else [p, *sorted(_shards(p))]
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def _is_float(ext: str, kind: str) -> bool:
    """Whether a dtype name of :func:`list_tensors` is a floating-point type :func:`load_matrix` reads."""
    if ext in (".safetensors", ".safetensors.index.json"):
        return kind in _FLOAT_NAMES
    if ext == ".gguf":  # GGML type names: F32, F16, BF16, block types Q*/IQ*/TQ*/MXFP4; I8…I64 are integers
        return not kind.startswith("I") or kind.startswith("IQ")
    try:
        return bool(np.issubdtype(np.dtype(kind), np.floating))
    except TypeError:  # a structured dtype's name, say
        return False


def _pick(p: Path, tensor: str | None, names: list[str], shapes: dict[str, Any]) -> str:
    listing = ", ".join(f"{n!r} {list(shapes[n])}" for n in names) or "none"
    if not names:
        raise ValueError(f"{p}: the file holds no arrays (nothing to load)")
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
      FileNotFoundError: no such file. IsADirectoryError: a folder. ValueError: unsupported extension; unknown
      tensor name (the message lists the names in the file); a file with no arrays; not 2-D or empty; a corrupt
      or truncated file (header length beyond the file, invalid JSON, ``data_offsets`` beyond the file, data
      shorter than a ``.npy`` header says, bad zip); a float64 tensor with entries beyond float32's range loaded
      as float32. TypeError: a non-float tensor (an object-dtype ``.npy`` included: it is not supported).
    """
    p, ext = _check_path(path)
    if tensor is not None and not isinstance(tensor, str):
        raise TypeError(f"tensor: expected a tensor name (str) or None, got {describe(tensor)}")
    if not isinstance(transpose, bool):
        raise TypeError(f"transpose: expected a bool, got {describe(transpose)}")
    out_dtype = check_float_dtype(dtype)

    if ext == ".safetensors.index.json":
        shards = _shards(p)  # the index alone (every shard must exist); the shard's own header is read below
        owner = {name: f for f, names in shards.items() for name in names}
        name = tensor if tensor in owner else _pick(  # only then every shard's header: errors list the shapes
            p, tensor, list(owner), {n: sh for n, (sh, _) in list_tensors(p).items()})
        return load_matrix(owner[name], tensor=name, transpose=transpose, dtype=out_dtype)
    if ext == ".gguf":
        from zipfrmt.gguf_io import load_gguf_matrix

        listing = list_tensors(p)
        name = _pick(p, tensor, list(listing), {n: s for n, (s, _) in listing.items()})
        shape, kind = listing[name]
        _check_matrix_meta(p, name, shape, kind, _is_float(ext, kind))
        if kind == "F64" and out_dtype == np.float32:  # float64 → float32 would turn large entries to inf
            W = load_gguf_matrix(p, name, np.float64)
            _check_fits_float32(p, name, W)
            W = W.astype(np.float32)
        else:
            W = load_gguf_matrix(p, name, out_dtype)
        return W.T if transpose else W
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
        name = p.stem
        (shape, kind), = list_tensors(p).values()  # the header first: truncation, object dtype, shape
        _check_matrix_meta(p, name, shape, kind, _is_float(ext, kind))
        try:
            W = np.load(p, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise _corrupt(p, ext, exc) from exc
    else:
        shapes = list_tensors(p)
        name = _pick(p, tensor, list(shapes), {n: s for n, (s, _) in shapes.items()})
        shape, kind = shapes[name]
        _check_matrix_meta(p, name, shape, kind, _is_float(ext, kind))
        try:
            with np.load(p, allow_pickle=False) as z:
                W = z[name]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise _corrupt(p, ext, exc) from exc
    if W.dtype != out_dtype:
        W = np.asarray(W)
        if out_dtype == np.float32 and W.dtype.itemsize > 4:  # float64 → float32 would turn large entries to inf
            _check_fits_float32(p, name, W)
        W = W.astype(out_dtype)  # in memory: a plain ndarray, not a memmap subclass
    return W.T if transpose else W


def _check_fits_float32(p: Path, name: str, W: np.ndarray) -> None:
    """The finite entries of ``W`` (a float64 tensor) are within float32's range (NaN/Inf are left to the
    spectral functions, which check what they use)."""
    finite = np.abs(W[np.isfinite(W)])
    amax = float(finite.max()) if finite.size else 0.0
    try:
        check_float32_range(amax, "W", "the tensor is loaded as float32; pass dtype=np.float64 to keep it")
    except ValueError as exc:
        raise ValueError(f"tensor: {name!r} in '{p}' (float64): {exc}") from None


def _check_matrix_meta(p: Path, name: str, shape: tuple[int, ...], dtype: str, is_float: bool) -> None:
    if dtype == "object":
        raise TypeError(
            f"tensor: {name!r} in '{p}' has dtype object (pickled Python objects), which is not supported: it "
            f"cannot be read without running pickle; a floating-point tensor is needed ({', '.join(_FLOAT_NAMES)})"
        )
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
