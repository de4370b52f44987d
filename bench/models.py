"""Benchmarks of whole-checkpoint analysis, printed as ratios against references in the same process.

Run: ``.venv/bin/python bench/models.py [--repeat N]``.

* ``bench_ggml_formats``: ``zipfrmt.quant.quantize(W, "q4_0")`` (the ``gguf`` package's quantizer through
  ``jax.pure_callback``, plus the noise statistics) against ``gguf.quants`` quantize → dequantize alone, on a
  4096×512 float32 matrix, for each llama.cpp format; and the entries per second of the ``gguf`` quantizer (the
  host-side cost ``docs/scaling.md`` uses).
* ``bench_model_analysis``: ``zipfrmt analyze --tensors '*'`` (``model_analysis.analyze_model``) over a
  safetensors file of 9 matrices (an embedding and 4 layers of two linears) at 4 specs, against the float32
  Gram matrices of every tensor (``WᵀW``, NumPy/OpenBLAS) — the floor of any spectral analysis — and the
  peak resident memory of the process against the largest tensor.
* ``bench_vs_weightwatcher``: the same model at the 20 default specs against one ``WeightWatcher.analyze``
  pass (the ``bench`` extra; WeightWatcher reads safetensors through torch, so a CPU build of torch is needed
  too — skipped with the reason when either is missing).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _timing import best_time  # noqa: E402


def bench_ggml_formats(repeat: int) -> None:
    from gguf import GGMLQuantizationType, quants

    from zipfrmt import quant
    from zipfrmt.quant.ggml import GGML_FORMATS

    W = np.random.default_rng(0).standard_normal((4096, 512)).astype(np.float32)
    print("llama.cpp formats, 4096×512: zipfrmt.quant.quantize vs gguf quantize+dequantize")
    for name, layout in GGML_FORMATS.items():
        qtype = GGMLQuantizationType[layout.qtype]
        ref = best_time(lambda q=qtype: quants.dequantize(quants.quantize(W, q), q), repeat)
        ours = best_time(lambda n=name: quant.quantize(W, n).dequantized, repeat)
        print(f"  {name:11s} ratio {ours / ref:5.2f}×   gguf {W.size / ref / 1e6:6.1f} M entries/s")


def bench_model_analysis(repeat: int) -> None:
    from safetensors.numpy import save_file

    from zipfrmt import model_analysis

    rng = np.random.default_rng(0)
    tensors = {"embed.weight": rng.standard_normal((32768, 256)).astype(np.float32)}
    for i in range(4):
        tensors[f"layers.{i}.attn.weight"] = rng.standard_normal((256, 256)).astype(np.float32)
        tensors[f"layers.{i}.mlp.weight"] = rng.standard_normal((1024, 256)).astype(np.float32)
    specs = ["int8-row", "int4-row", "q4_0", "nf4"]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.safetensors"
        save_file(tensors, str(path))
        grams = best_time(lambda: [W.T @ W for W in tensors.values()], repeat)
        t0 = time.perf_counter()
        model_analysis.analyze_model(path, specs, Path(d) / "cold", progress=lambda m: None)
        cold = time.perf_counter() - t0
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        t0 = time.perf_counter()  # a fresh folder: every tensor computed again, with the kernels compiled
        model_analysis.analyze_model(path, specs, Path(d) / "warm", progress=lambda m: None)
        warm = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    largest = max(W.nbytes for W in tensors.values())
    print(f"whole model, 9 tensors × {len(specs)} specs: {cold / grams:.0f}× the float32 Gram matrices of every "
          f"tensor (NumPy) with compilation, {warm / grams:.0f}× compiled; peak RSS grew by "
          f"{max(after - before, 0) / largest:.1f}× the largest tensor over the compiled run")


def bench_vs_weightwatcher(repeat: int) -> None:
    """Every 2-D tensor at 20 specs (``--bits 8,6,4,3,2 --granularity tensor,row,column,group32``, the CLI's
    default grid) against one pass of WeightWatcher's ``analyze`` over the same safetensors folder."""
    try:
        import torch  # noqa: F401  (WeightWatcher opens safetensors through torch)
        import weightwatcher as ww
    except ImportError as exc:
        print(f"vs WeightWatcher: skipped ({exc}); install the bench extra (pip install -e '.[bench]') and a CPU "
              "build of torch (pip install torch --index-url https://download.pytorch.org/whl/cpu)")
        return
    from safetensors.numpy import save_file

    from zipfrmt import analyze, model_analysis

    rng = np.random.default_rng(0)
    tensors = {"embed.weight": rng.standard_normal((4096, 256)).astype(np.float32)}
    for i in range(4):
        tensors[f"layers.{i}.attn.weight"] = rng.standard_normal((256, 256)).astype(np.float32)
        tensors[f"layers.{i}.mlp.weight"] = rng.standard_normal((1024, 256)).astype(np.float32)
    specs = analyze.spec_grid([8, 6, 4, 3, 2], ["tensor", "row", "column", "group32"], ["nearest"])
    with tempfile.TemporaryDirectory() as d:
        save_file(tensors, str(Path(d) / "model.safetensors"))
        watcher = ww.WeightWatcher(model=d)
        t0 = time.perf_counter()
        watcher.analyze()
        t_ww = time.perf_counter() - t0
        t0 = time.perf_counter()
        model_analysis.analyze_model(Path(d) / "model.safetensors", specs, Path(d) / "cold", progress=lambda m: None)
        cold = time.perf_counter() - t0  # one XLA compilation per (spec, tensor shape): 60 here
        t0 = time.perf_counter()
        model_analysis.analyze_model(Path(d) / "model.safetensors", specs, Path(d) / "warm", progress=lambda m: None)
        warm = time.perf_counter() - t0
    print(f"vs WeightWatcher {ww.__version__}: 9 tensors (3 shapes) at {len(specs)} specs took {cold / t_ww:.1f}× one "
          f"WeightWatcher analyze pass over the same folder with compilation, {warm / t_ww:.1f}× compiled "
          "(goal ≤ 2×)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bench_ggml_formats(args.repeat)
    bench_model_analysis(args.repeat)
    bench_vs_weightwatcher(args.repeat)


if __name__ == "__main__":
    main()
