"""Benchmarks of zipfrmt.corpus against reference implementations.

Run ``python bench/corpus.py``. Each measurement is one function returning its numbers; ``main`` prints them.

* ``sample_zipf`` vs ``numpy.random.Generator.choice(V, size=n, p=pmf)`` with the same float64 pmf, at
  n = 10^7 tokens and V = 50,000 (goal: ≥ 10x). Both sides are timed end to end, table or CDF construction
  included; the JAX kernel is compiled once before timing; best of ``repeats`` runs.
* ``zipfrmt analyze`` on a 50257×768 float32 matrix (GPT-2's embedding shape) read from a safetensors file,
  with 5 bit widths × 4 granularities: its wall time (compilation included, as a user meets it), and that time
  divided by the time of one ``numpy.linalg.svd(compute_uv=False)`` of the same matrix, the reference a user
  would otherwise run once per setting.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from _timing import best_time

from zipfrmt import corpus


def bench_sample_zipf(n: int = 10**7, V: int = 50_000, s: float = 1.0, repeats: int = 5) -> dict[str, float]:
    """Throughput of :func:`zipfrmt.corpus.sample_zipf` against NumPy's ``Generator.choice``."""
    key = jax.random.key(0)
    pmf = np.asarray(corpus.zipf_pmf(V, s, dtype=np.float64))
    rng = np.random.default_rng(0)

    def ours() -> None:
        corpus.sample_zipf(key, n, V, s).block_until_ready()

    def numpy_choice() -> None:
        rng.choice(V, size=n, p=pmf)

    ours()  # compile
    t_ours = best_time(ours, repeats)
    t_numpy = best_time(numpy_choice, max(2, repeats // 2))
    return {"n": n, "V": V, "s": s, "ours_s": t_ours, "numpy_s": t_numpy, "ratio": t_numpy / t_ours}


def bench_analyze(V: int = 50257, d: int = 768) -> dict[str, float]:
    """Wall time of ``zipfrmt analyze`` (20 settings) on a V×d safetensors tensor, against one NumPy SVD."""
    import contextlib
    import io
    import tempfile
    from pathlib import Path

    from safetensors.numpy import save_file

    from zipfrmt import embeddings
    from zipfrmt.cli import main as cli_main

    W = np.asarray(embeddings.power_law_matrix(jax.random.key(0), V, d, 0.5, scale=10.0))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "emb.safetensors"
        save_file({"wte.weight": W}, str(path))
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            rc = cli_main(["analyze", str(path), "--tensor", "wte.weight", "--bits", "8,6,4,3,2",
                           "--granularity", "tensor,row,column,group32"])
        t_analyze = time.perf_counter() - t0
    assert rc == 0
    t_svd = best_time(lambda: np.linalg.svd(W, compute_uv=False), 1)
    return {"V": V, "d": d, "settings": 20, "analyze_s": t_analyze, "svd_s": t_svd, "ratio": t_analyze / t_svd}


def main() -> None:
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
    r = bench_sample_zipf()
    print(
        f"sample_zipf: {r['n']:.0e} tokens, V = {r['V']:,}, s = {r['s']:g}: "
        f"{r['ours_s'] * 1e3:.1f} ms ({r['n'] / r['ours_s'] / 1e6:.0f} M tokens/s); "
        f"numpy choice: {r['numpy_s'] * 1e3:.1f} ms"
    )
    print(f"sample_zipf vs numpy choice: {r['ratio']:.1f}x (goal >= 10x)")
    a = bench_analyze()
    print(f"analyze {a['V']}x{a['d']}, {a['settings']} settings (5 bit widths x 4 granularities): "
          f"{a['analyze_s']:.1f} s wall = {a['ratio']:.1f}x one numpy svd of the matrix ({a['svd_s']:.1f} s)")


if __name__ == "__main__":
    main()
