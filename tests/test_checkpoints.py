"""Loading real matrices from checkpoint files: .npy, .npz, .safetensors (round trips, memmaps, errors)."""

from __future__ import annotations

import json
import struct
import tracemalloc

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
from conftest import write_gguf

from zipfrmt import checkpoints as CK

# ----------------------------------------------------------------------------------------------------------
# Loaders
# ----------------------------------------------------------------------------------------------------------

ST_CODES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int32): "I32"}


def write_safetensors(path, tensors: dict, *, total_size: int | None = None) -> int:
    """Byte-level safetensors writer (the format: u64-LE header length, JSON header padded with spaces to a
    multiple of 8, then the data). ``tensors``: name → (code, shape, bytes) or (code, shape, nbytes, None) to
    declare a region left unwritten (a sparse hole when ``total_size`` extends the file). Returns the data start.
    """
    header, offset, blobs = {}, 0, []
    for name, spec in tensors.items():
        code, shape, data = spec[0], spec[1], spec[2]
        n = data if isinstance(data, int) else len(data)
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + n]}
        blobs.append((offset, None if isinstance(data, int) else data))
        offset += n
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    start = 8 + len(text)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        if total_size is not None:
            f.truncate(total_size)
        for off, blob in blobs:
            if blob is not None:
                f.seek(start + off)
                f.write(blob)
        if total_size is None:
            f.truncate(start + offset)
    return start


def bf16_bytes(x: np.ndarray) -> bytes:
    """Values exactly representable in bfloat16, as their top 16 bits (little-endian)."""
    u32 = np.ascontiguousarray(x, np.float32).view(np.uint32)
    assert (u32 & 0xFFFF == 0).all()
    return (u32 >> 16).astype("<u2").tobytes()


@pytest.fixture
def W_small():
    # multiples of 1/4 in [-8, 8): exact in float16 and bfloat16
    return (np.random.default_rng(0).integers(-32, 32, size=(6, 4)) / 4).astype(np.float32)


def test_npy_round_trip_is_memmapped(tmp_path, W_small):
    path = tmp_path / "emb.npy"
    np.save(path, W_small)
    W = CK.load_matrix(path)
    assert isinstance(W, np.memmap) and W.dtype == np.float32 and not W.flags.writeable
    np.testing.assert_array_equal(W, W_small)
    Wt = CK.load_matrix(path, transpose=True)
    assert isinstance(Wt, np.memmap) and Wt.shape == (4, 6)
    np.testing.assert_array_equal(Wt, W_small.T)
    W64 = CK.load_matrix(str(path), dtype=np.float64)
    assert W64.dtype == np.float64
    np.testing.assert_array_equal(W64, W_small)
    assert CK.list_tensors(path) == {"emb": ((6, 4), "float32")}
    np.save(tmp_path / "be.npy", W_small.astype(">f4"))  # big-endian is converted, not misread
    np.testing.assert_array_equal(CK.load_matrix(tmp_path / "be.npy"), W_small)


def test_npz_round_trip_by_key(tmp_path, W_small):
    path = tmp_path / "emb.npz"
    np.savez_compressed(path, wte=W_small, bias=np.ones(4, np.float32), ids=np.arange(6, dtype=np.int32))
    assert CK.list_tensors(path) == {"wte": ((6, 4), "float32"), "bias": ((4,), "float32"), "ids": ((6,), "int32")}
    W = CK.load_matrix(path, tensor="wte")
    assert W.dtype == np.float32
    np.testing.assert_array_equal(W, W_small)
    np.testing.assert_array_equal(CK.load_matrix(path, tensor="wte", transpose=True), W_small.T)
    single = tmp_path / "one.npz"
    np.savez(single, W_small.astype(np.float16))
    np.testing.assert_array_equal(CK.load_matrix(single), W_small)  # one array: no key needed
    with pytest.raises(ValueError, match=r"no tensor 'wpe' in .*emb\.npz.*'wte' \[6, 4\], 'bias' \[4\], 'ids' \[6\]"):
        CK.load_matrix(path, tensor="wpe")
    with pytest.raises(ValueError, match=r"holds 3 arrays, name one with tensor=.*'wte'"):
        CK.load_matrix(path)
    with pytest.raises(ValueError, match=r"'bias' .* has shape \[4\] \(1-D\); a matrix"):
        CK.load_matrix(path, tensor="bias")
    with pytest.raises(TypeError, match=r"'ids' .* has dtype int32; a floating-point tensor is needed"):
        CK.load_matrix(path, tensor="ids")


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_safetensors_round_trip_written_by_the_library(tmp_path, W_small, dtype):
    path = tmp_path / "model.safetensors"
    safetensors.numpy.save_file({"wte": W_small.astype(dtype), "ln": np.ones((3, 3, 3), dtype)}, str(path))
    W = CK.load_matrix(path, tensor="wte")
    assert W.dtype == np.float32
    np.testing.assert_array_equal(W, W_small)
    assert isinstance(W, np.memmap) == (dtype == np.float32)
    np.testing.assert_array_equal(CK.load_matrix(path, tensor="wte", transpose=True), W_small.T)
    name = np.dtype(dtype).name
    assert CK.list_tensors(path) == {"ln": ((3, 3, 3), name), "wte": ((6, 4), name)}
    with pytest.raises(ValueError, match=r"'ln' .* has shape \[3, 3, 3\] \(3-D\); a matrix"):
        CK.load_matrix(path, tensor="ln")


def test_safetensors_bfloat16_round_trip(tmp_path, W_small):
    path = tmp_path / "bf16.safetensors"
    write_safetensors(path, {"emb": ("BF16", W_small.shape, bf16_bytes(W_small))})
    assert CK.list_tensors(path) == {"emb": ((6, 4), "bfloat16")}
    W = CK.load_matrix(path)
    assert W.dtype == np.float32 and W.shape == (6, 4)
    np.testing.assert_array_equal(W, W_small)
    np.testing.assert_array_equal(CK.load_matrix(path, transpose=True, dtype=np.float64), W_small.T)
    # and a file from the library's own writer (ml_dtypes bfloat16) reads back the same
    lib = tmp_path / "lib.safetensors"
    safetensors.numpy.save_file({"emb": W_small.astype(ml_dtypes.bfloat16)}, str(lib))
    np.testing.assert_array_equal(CK.load_matrix(lib), W_small)


def test_safetensors_float8_and_float64(tmp_path):
    W = np.array([[0.5, 1.0, 2.0], [-3.0, 0.25, 448.0]], np.float32)  # exact in float8 e4m3fn
    path = tmp_path / "f8.safetensors"
    safetensors.numpy.save_file({"q": W.astype(ml_dtypes.float8_e4m3fn), "w": W.astype(np.float64)}, str(path))
    assert CK.list_tensors(path) == {"q": ((2, 3), "float8_e4m3fn"), "w": ((2, 3), "float64")}
    np.testing.assert_array_equal(CK.load_matrix(path, tensor="q"), W)
    W64 = CK.load_matrix(path, tensor="w", dtype=np.float64)
    assert isinstance(W64, np.memmap) and W64.dtype == np.float64  # stored dtype = requested dtype: mapped
    W32 = CK.load_matrix(path, tensor="w")
    assert type(W32) is np.ndarray and W32.dtype == np.float32  # converted in memory
    np.testing.assert_array_equal(W32, W)


def test_safetensors_float32_tensor_is_a_memmap_of_its_own_byte_range(tmp_path, W_small):
    path = tmp_path / "two.safetensors"
    first = np.full((5, 3), 7.0, np.float32)
    start = write_safetensors(
        path, {"a": ("F32", first.shape, first.tobytes()), "b": ("F32", W_small.shape, W_small.tobytes())}
    )
    W = CK.load_matrix(path, tensor="b")
    assert isinstance(W, np.memmap) and W.offset == start + first.nbytes
    np.testing.assert_array_equal(W, W_small)
    assert str(W.filename) == str(path.resolve())
    Wt = CK.load_matrix(path, tensor="b", transpose=True)
    assert isinstance(Wt, np.memmap) and Wt.offset == W.offset and Wt.shape == (4, 6)
    np.testing.assert_array_equal(Wt, W_small.T)


@pytest.mark.parametrize("code", ["F32", "BF16"])
def test_safetensors_loading_one_tensor_does_not_read_the_others(tmp_path, W_small, code):
    # A 256 MiB tensor "big" sits before "emb"; the file is sparse (its region was never written). Loading
    # "emb" must touch only its own bytes: allocations stay far below the size of "big".
    path = tmp_path / "big.safetensors"
    data = W_small.tobytes() if code == "F32" else bf16_bytes(W_small)
    big = 1 << 28
    header_probe = write_safetensors(path, {"big": ("F32", (1 << 16, 1 << 10), big), "emb": (code, (6, 4), data)})
    write_safetensors(
        path,
        {"big": ("F32", (1 << 16, 1 << 10), big), "emb": (code, (6, 4), data)},
        total_size=header_probe + big + len(data),
    )
    tracemalloc.start()
    try:
        W = CK.load_matrix(path, tensor="emb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(W, W_small)
    assert peak < 1 << 20


def test_loaders_reject_missing_unknown_and_non_float(tmp_path, W_small):
    with pytest.raises(FileNotFoundError, match=r"no such file: '.*nothere\.npy'"):
        CK.load_matrix(tmp_path / "nothere.npy")
    with pytest.raises(FileNotFoundError, match="nothere.safetensors"):
        CK.list_tensors(tmp_path / "nothere.safetensors")
    (tmp_path / "w.pt").write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match=r"unsupported file type '\.pt'.*\.npy, \.npz, \.safetensors"):
        CK.load_matrix(tmp_path / "w.pt")
    (tmp_path / "dir.npy").mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        CK.load_matrix(tmp_path / "dir.npy")
    path = tmp_path / "m.safetensors"
    write_safetensors(
        path,
        {
            "ids": ("I32", (6, 4), np.arange(24, dtype="<i4").tobytes()),
            "vec": ("F32", (4,), np.ones(4, "<f4").tobytes()),
        },
    )
    with pytest.raises(ValueError, match=r"no tensor 'wte' in .*m\.safetensors.*'ids' \[6, 4\], 'vec' \[4\]"):
        CK.load_matrix(path, tensor="wte")
    with pytest.raises(TypeError, match=r"'ids' .* has dtype int32; a floating-point tensor is needed"):
        CK.load_matrix(path, tensor="ids")
    with pytest.raises(ValueError, match=r"'vec' .* has shape \[4\] \(1-D\)"):
        CK.load_matrix(path, tensor="vec")
    np.save(tmp_path / "i.npy", np.arange(6).reshape(2, 3))
    with pytest.raises(TypeError, match="has dtype int64"):
        CK.load_matrix(tmp_path / "i.npy")
    np.save(tmp_path / "x.npy", W_small)
    with pytest.raises(ValueError, match="a .npy file holds one array"):
        CK.load_matrix(tmp_path / "x.npy", tensor="wte")
    with pytest.raises(ValueError, match="dtype: expected float32 or float64"):
        CK.load_matrix(tmp_path / "x.npy", dtype=np.float16)


def _valid_file(tmp_path, W_small) -> tuple:
    path = tmp_path / "ok.safetensors"
    start = write_safetensors(path, {"emb": ("F32", W_small.shape, W_small.tobytes())})
    return path, start, path.read_bytes()


def test_safetensors_truncated_or_corrupt_files_raise_value_error_naming_the_path(tmp_path, W_small):
    path, start, raw = _valid_file(tmp_path, W_small)
    np.testing.assert_array_equal(CK.load_matrix(path), W_small)
    cases = {
        "short": (raw[:5], "too short for the 8-byte header length"),
        "header_len": (struct.pack("<Q", 10**6) + raw[8:], "header length field says 1000000 bytes"),
        "cut_header": (raw[: start - 4], "header length field says"),
        "json": (raw[:8] + b"{" + b"x" * (start - 9) + raw[start:], "header is not valid JSON"),
        "truncated_data": (raw[:-8], r"data_offsets \[0, 96\] but the data region holds 88 bytes"),
    }
    for name, (content, match) in cases.items():
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=rf"{name}\.safetensors.*{match}"):
            CK.load_matrix(bad)
        with pytest.raises(ValueError, match=rf"{name}\.safetensors"):
            CK.list_tensors(bad)
    wrong = tmp_path / "wrong_size.safetensors"
    write_safetensors(wrong, {"emb": ("F32", (6, 5), W_small.tobytes())})
    with pytest.raises(ValueError, match=r"wrong_size.*shape \[6, 5\] and dtype F32 needs 120 bytes"):
        CK.load_matrix(wrong)


def test_npy_and_npz_truncated_files_raise_value_error_naming_the_path(tmp_path, W_small):
    np.save(tmp_path / "t.npy", W_small)
    raw = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[:-10])
    with pytest.raises(ValueError, match=r"t\.npy: corrupt or truncated \.npy file"):
        CK.load_matrix(tmp_path / "t.npy")
    np.savez(tmp_path / "t.npz", a=W_small)
    raw = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"t\.npz: corrupt or truncated \.npz file"):
        CK.load_matrix(tmp_path / "t.npz")


# ----------------------------------------------------------------------------------------------------------
# Files that are not a matrix: said as such, before any data are read
# ----------------------------------------------------------------------------------------------------------


def test_an_object_dtype_npy_is_unsupported_not_corrupt(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    with pytest.raises(TypeError, match=r"'obj' in .*obj\.npy.* has dtype object .*not supported") as info:
        CK.load_matrix(tmp_path / "obj.npy")
    assert "corrupt" not in str(info.value)


def test_a_directory_is_named_as_a_directory_whatever_its_name(tmp_path):
    for name in ("plain", "dir.npz"):
        (tmp_path / name).mkdir()
        for fn in (CK.list_tensors, CK.load_matrix):
            with pytest.raises(IsADirectoryError, match=rf"{name}' is a directory") as info:
                fn(tmp_path / name)
            assert "unsupported file type" not in str(info.value)


def test_a_file_with_no_arrays_is_an_error(tmp_path):
    np.savez(tmp_path / "empty.npz")
    write_safetensors(tmp_path / "empty.safetensors", {})
    for name in ("empty.npz", "empty.safetensors"):
        with pytest.raises(ValueError, match=rf"{name}: the .* file holds no arrays"):
            CK.list_tensors(tmp_path / name)
        with pytest.raises(ValueError, match=rf"{name}: the .*file holds no arrays"):
            CK.load_matrix(tmp_path / name)


def test_list_rejects_a_truncated_npy_as_it_rejects_a_truncated_safetensors(tmp_path, W_small):
    np.save(tmp_path / "t.npy", W_small)
    raw = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[:-10])  # the header is intact, the data are not
    with pytest.raises(ValueError, match=r"t\.npy: corrupt or truncated \.npy file.*96 data bytes, but only 86"):
        CK.list_tensors(tmp_path / "t.npy")
    with pytest.raises(ValueError, match=r"t\.npy: corrupt or truncated \.npy file"):
        CK.check_matrix_tensor(tmp_path / "t.npy")
    # a .npz whose member was truncated before it was zipped
    import zipfile

    with zipfile.ZipFile(tmp_path / "t.npz", "w") as z:
        z.writestr("a.npy", raw[:-10])
    with pytest.raises(ValueError, match=r"t\.npz: corrupt or truncated \.npz file"):
        CK.list_tensors(tmp_path / "t.npz")
    np.save(tmp_path / "ok.npy", W_small)  # a complete file still lists
    assert CK.list_tensors(tmp_path / "ok.npy") == {"ok": ((6, 4), "float32")}


def test_float64_beyond_float32_range_is_a_named_error_not_inf(tmp_path, W_small):
    big = W_small.astype(np.float64)
    big[0, 0] = 1e39
    np.save(tmp_path / "big.npy", big)
    np.savez(tmp_path / "big.npz", wte=big)
    safetensors.numpy.save_file({"wte": big}, str(tmp_path / "big.safetensors"))
    for name in ("big.npy", "big.npz", "big.safetensors"):
        with pytest.raises(ValueError, match=r"tensor: '(big|wte)' in .*big.*float64.*float32's range.*1e\+39"):
            CK.load_matrix(tmp_path / name)
        W = CK.load_matrix(tmp_path / name, dtype=np.float64)  # kept as stored when asked
        assert W[0, 0] == 1e39 and np.isfinite(W).all()
    ok = W_small.astype(np.float64)
    ok[1, 1] = np.inf  # stored non-finite entries are left to the spectral functions, as before
    np.save(tmp_path / "ok.npy", ok)
    assert np.isinf(CK.load_matrix(tmp_path / "ok.npy")[1, 1])


def test_check_matrix_tensor_checks_from_the_headers_what_load_matrix_needs(tmp_path, W_small):
    path = tmp_path / "m.safetensors"
    safetensors.numpy.save_file({"wte": W_small, "vec": np.ones(4, np.float32),
                                 "ids": np.ones((2, 2), np.int32)}, str(path))
    assert CK.check_matrix_tensor(path, "wte") == ("wte", (6, 4), "float32")
    with pytest.raises(ValueError, match=r"no tensor 'x' in .*'wte' \[6, 4\]"):
        CK.check_matrix_tensor(path, "x")
    with pytest.raises(ValueError, match=r"holds 3 arrays, name one"):
        CK.check_matrix_tensor(path)
    with pytest.raises(ValueError, match=r"'vec' .* has shape \[4\] \(1-D\)"):
        CK.check_matrix_tensor(path, "vec")
    with pytest.raises(TypeError, match=r"'ids' .* has dtype int32"):
        CK.check_matrix_tensor(path, "ids")
    np.save(tmp_path / "one.npy", W_small)
    assert CK.check_matrix_tensor(tmp_path / "one.npy") == ("one", (6, 4), "float32")
    with pytest.raises(ValueError, match="a .npy file holds one array"):
        CK.check_matrix_tensor(tmp_path / "one.npy", "wte")


# ---------------------------------------------------------------------------------------------------------
# GGUF (written with gguf.GGUFWriter) and sharded safetensors folders
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    from gguf import GGMLQuantizationType as T
    from gguf import quants

    rng = np.random.default_rng(0)
    E = rng.standard_normal((64, 32)).astype(np.float32)
    L = rng.standard_normal((48, 64)).astype(np.float32)  # an out×in linear weight: 48 rows of length 64
    path = tmp_path_factory.mktemp("gguf") / "model.gguf"
    write_gguf(path, {
        "token_embd.weight": E,
        "blk.0.ffn.weight": (quants.quantize(L, T.Q4_0), T.Q4_0),
        "blk.0.attn.weight": L.astype(np.float16),
        "output_norm.weight": np.ones(32, np.float32),
        "blk.0.k.weight": (np.zeros((4, 144), np.uint8), T.Q4_K),  # a k-quant: dequantized by gguf, all zero
    })
    return path, E, L


def test_gguf_tensors_are_listed_with_their_stored_type_in_numpy_order(gguf_file):
    path, E, L = gguf_file
    listing = CK.list_tensors(path)
    assert listing["token_embd.weight"] == ((64, 32), "F32")
    assert listing["blk.0.ffn.weight"] == ((48, 64), "Q4_0")
    assert listing["blk.0.attn.weight"] == ((48, 64), "F16")
    assert listing["output_norm.weight"] == ((32,), "F32")
    assert listing["blk.0.k.weight"] == ((4, 256), "Q4_K")


def test_gguf_block_quantized_tensors_are_dequantized_by_gguf_row_block_by_row_block(gguf_file, monkeypatch):
    from gguf import GGMLQuantizationType as T
    from gguf import quants

    from zipfrmt import gguf_io

    path, E, L = gguf_file
    np.testing.assert_array_equal(CK.load_matrix(path, tensor="token_embd.weight"), E)
    monkeypatch.setattr(gguf_io, "ROW_BLOCK", 10)  # 48 rows in 5 blocks: the same bytes as one call
    W = CK.load_matrix(path, tensor="blk.0.ffn.weight")
    np.testing.assert_array_equal(W, quants.dequantize(quants.quantize(L, T.Q4_0), T.Q4_0))
    assert W.dtype == np.float32 and W.shape == (48, 64)
    np.testing.assert_array_equal(CK.load_matrix(path, tensor="blk.0.attn.weight"), L.astype(np.float16))
    assert CK.load_matrix(path, tensor="blk.0.k.weight").shape == (4, 256)
    with pytest.raises(ValueError, match=r"tensor: 'output_norm.weight' in .* has shape \[32\] \(1-D\)"):
        CK.load_matrix(path, tensor="output_norm.weight")


def test_a_gguf_type_gguf_cannot_dequantize_names_file_tensor_and_type(gguf_file, monkeypatch):
    from gguf import quants

    path, _, _ = gguf_file

    def refuse(data, qtype):
        raise NotImplementedError

    monkeypatch.setattr(quants, "dequantize", refuse)
    with pytest.raises(ValueError, match=r"tensor: 'blk.0.ffn.weight' in '.*model.gguf' is stored as Q4_0, which the "
                                         r"gguf package .* cannot dequantize"):
        CK.load_matrix(path, tensor="blk.0.ffn.weight")


def test_a_truncated_gguf_is_a_named_error(gguf_file, tmp_path):
    path, _, _ = gguf_file
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="corrupt or truncated GGUF file"):
        CK.list_tensors(bad)


@pytest.fixture()
def sharded(tmp_path):
    rng = np.random.default_rng(1)
    a = {"embed.weight": rng.standard_normal((40, 16)).astype(np.float32)}
    b = {"layers.0.weight": rng.standard_normal((16, 16)).astype(np.float16), "norm": np.ones(16, np.float32)}
    safetensors.numpy.save_file(a, str(tmp_path / "model-00001-of-00002.safetensors"))
    safetensors.numpy.save_file(b, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {"metadata": {}, "weight_map": {"embed.weight": "model-00001-of-00002.safetensors",
                                            "layers.0.weight": "model-00002-of-00002.safetensors",
                                            "norm": "model-00002-of-00002.safetensors"}}
    (tmp_path / CK.SHARD_INDEX).write_text(json.dumps(index))
    return tmp_path, a, b


def test_a_sharded_folder_reads_like_one_file(sharded):
    folder, a, b = sharded
    listing = CK.list_tensors(folder)
    assert listing == {"embed.weight": ((40, 16), "float32"), "layers.0.weight": ((16, 16), "float16"),
                       "norm": ((16,), "float32")}
    np.testing.assert_array_equal(CK.load_matrix(folder, tensor="embed.weight"), a["embed.weight"])
    np.testing.assert_array_equal(CK.load_matrix(folder / CK.SHARD_INDEX, tensor="layers.0.weight"),
                                  b["layers.0.weight"].astype(np.float32))


def test_a_shard_listed_in_the_index_but_missing_is_named(sharded):
    folder, _, _ = sharded
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"shard 'model-00002-of-00002.safetensors' \(holding "
                                                r"'layers.0.weight' and 1 more tensors\) is listed in the index"):
        CK.load_matrix(folder, tensor="embed.weight")
