"""Shared test fixtures: reference matrices built with NumPy (float64), independent of the package."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# The CLI's persistent compilation cache stays out of the tests (no writes to ~/.cache; each worker compiles
# afresh); tests/test_cli.py turns it on in a folder of its own.
os.environ["ZIPFRMT_COMPILATION_CACHE"] = "off"

#: Real text for tests: the repository's own data/ (tinyshakespeare, wikitext2-valid, with their licences).
DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def power_law_np(V: int, d: int, a: float, seed: int = 0, dtype=np.float32) -> np.ndarray:
    """V×d matrix with σ_k = k^(-a) and Haar-like singular vectors (QR of Gaussians), built in float64."""
    rng = np.random.default_rng(seed)
    r = min(V, d)
    U, _ = np.linalg.qr(rng.standard_normal((V, r)))
    Q, _ = np.linalg.qr(rng.standard_normal((d, r)))
    return ((U * np.arange(1, r + 1, dtype=np.float64) ** -a) @ Q.T).astype(dtype)


def lapack_sv(W: np.ndarray) -> np.ndarray:
    """Reference singular values: NumPy LAPACK in float64."""
    return np.linalg.svd(np.asarray(W, np.float64), compute_uv=False)


def write_gguf(path: Path, tensors: dict) -> Path:
    """A GGUF file written with llama.cpp's own ``gguf.GGUFWriter``; ``tensors``: name → float array, or
    (raw quantized bytes, GGMLQuantizationType)."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    for name, t in tensors.items():
        if isinstance(t, tuple):
            w.add_tensor(name, t[0], raw_dtype=t[1])
        else:
            w.add_tensor(name, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def text_data() -> Path:
    assert DATA_DIR.is_dir(), f"the repository's texts are missing from {DATA_DIR}"
    return DATA_DIR


def assert_table_read_back_and_redrawn(module, config, root: Path, ds, out_dir: Path, monkeypatch) -> None:
    """A second ``module.run`` reads the cached result (its ``_point`` is never called) and equals the file;
    ``render`` writes the table (.md with a header, a rule and one line per row of ``ds``; .tex) from it alone."""
    import xarray as xr

    from zipfrmt import sweep

    def fail(*a, **k):
        raise AssertionError("recomputed although the result was cached")

    monkeypatch.setattr(module, "_point", fail)
    again = module.run(config, root=root, progress=False)
    with xr.open_dataset(sweep.result_path(module.NAME, config, root)) as f:
        on_disk = f.load()
    xr.testing.assert_identical(again, on_disk)
    paths = module.render(on_disk, out_dir)
    assert sorted(p.name for p in paths) == [f"{module.NAME}.md", f"{module.NAME}.tex"]
    md = (out_dir / "tables" / f"{module.NAME}.md").read_text()
    assert md.count("\n") == 2 + ds.sizes["row"]
