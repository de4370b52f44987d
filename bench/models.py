"""Benchmarks of whole-checkpoint analysis, printed as ratios against references in the same process.

Run: ``.venv/bin/python bench/models.py [--repeat N] [--large VxD]``.

* ``bench_large_tensor``: ``zipfrmt analyze`` of one 262,144×640 float32 tensor at the 20 default specs (a child
  process, cold and warm compilation cache) against one float32 Gram matrix of it, and its peak resident memory
  against the tensor; beside it the floor of that work: 21 bare spectra (float32 Gram and ``eigvalsh``), the same
  with one read of ``W`` per spec, and with one fused XLA pass per spec that writes ``Q``.
* ``bench_ggml_formats``: ``zipfrmt.quant.quantize(W, "q4_0")`` (the ``gguf`` package's quantizer through
  ``jax.pure_callback``, plus the noise statistics) against ``gguf.quants`` quantize → dequantize alone, on a
  4096×512 float32 matrix, for each llama.cpp format; and the entries per second of the ``gguf`` quantizer (the
  host-side cost ``docs/scaling.md`` uses).
* ``bench_model_analysis``: ``zipfrmt analyze --tensors '*'`` (``model_analysis.analyze_model``) over a
  safetensors file of 9 matrices (an embedding and 4 layers of two linears) at 4 specs, against the float32
  Gram matrices of every tensor (``WᵀW``, NumPy/OpenBLAS) — the floor of any spectral analysis — and the
  peak resident memory of the process against the largest tensor.
* ``bench_vs_weightwatcher``: the same model at the 20 default specs (the default bulk law, and ``--bulk mp``)
  against the fastest of ``--repeat`` ``WeightWatcher.analyze`` passes (the ``bench`` extra; WeightWatcher reads
  safetensors through torch, so a CPU build of torch is needed too — skipped with the reason when either is
  missing), and the floor of that work: 21 bare spectra per tensor (float32 Gram and ``eigvalsh``, nothing else).
"""

from __future__ import annotations

import argparse
import math
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


# The child reads its peak from /proc (VmHWM: this program's own; ru_maxrss would count the parent's pages at fork).
_LARGE_CHILD = """
import sys, time
import jax.numpy as jnp
from zipfrmt import analyze, cli, model_analysis
def vm(key):
    line = next(l for l in open("/proc/self/status") if l.startswith(key + ":"))
    return int(line.split()[1]) * 1024
path, out = sys.argv[1], sys.argv[2]
specs = analyze.spec_grid([8, 6, 4, 3, 2], ["tensor", "row", "column", "group32"], ["nearest"])
cli.enable_compilation_cache()
jnp.zeros(3).block_until_ready()
base = vm("VmHWM")
t0 = time.perf_counter()
model_analysis.analyze_model(path, specs, out, progress=lambda m: None)
print(time.perf_counter() - t0, base, vm("VmHWM"))
"""


def _gram_seconds(W: np.ndarray) -> float:
    """The reference: one float32 Gram matrix ``WᵀW`` (NumPy's BLAS ``syrk``)."""
    return best_time(lambda: W.T @ W, 2)


def _spectrum_seconds(W: np.ndarray, repeat: int = 2) -> float:
    """The least work of one spectrum: a float32 Gram matrix ``WᵀW`` (BLAS) and LAPACK's ``eigvalsh`` of it in
    float64 — nothing checked, quantized or predicted. ``n`` quantized spectra cost at least ``n`` times this."""
    return best_time(lambda: np.linalg.eigvalsh((W.T @ W).astype(np.float64)), repeat)


def _xla_pass_seconds(W: np.ndarray) -> tuple[float, float]:
    """The least work per spec that looks at every entry of ``W`` on the device (one copy of it for both):
    ``(one read — XLA's max, no write; one quantization that writes Q — a fused pass round(W/Δ)·Δ, no scales
    computed, no statistics)``."""
    import jax
    import jax.numpy as jnp

    Wj = jax.device_put(W)
    step = jnp.float32(float(np.abs(W).max()) / 7)
    largest = jax.jit(jnp.max)
    rounded = jax.jit(lambda X, s: jnp.round(X / s) * s)
    return best_time(lambda: largest(Wj), 2), best_time(lambda: rounded(Wj, step), 2)


def bench_large_tensor(V: int, d: int) -> None:
    """``zipfrmt analyze`` of one V×d float32 tensor (Gemma-3's vocabulary by default) at the 20 default specs,
    in a child process (its own peak RSS; the compilation cache of the CLI in a fresh folder, so the first
    run compiles and the second loads): wall time against one float32 Gram matrix ``WᵀW`` of the tensor (NumPy,
    this process), peak RSS against the tensor's size."""
    import os
    import subprocess

    from safetensors.numpy import save_file

    W = np.random.default_rng(0).standard_normal((V, d)).astype(np.float32)
    gram = _gram_seconds(W)
    spectra_floor = 21 * _spectrum_seconds(W)  # W and 20 quantized copies
    read, write = _xla_pass_seconds(W)
    read_floor, written_floor = spectra_floor + 20 * read, spectra_floor + 20 * write
    print(f"{V}×{d}: the floor of 20 specs — 21 spectra (float32 Gram + eigvalsh, nothing else) take "
          f"{spectra_floor / gram:.1f}× one float32 Gram; with one read of W per spec (XLA max) "
          f"{read_floor / gram:.1f}×; with one fused XLA pass that writes each Q {written_floor / gram:.1f}× "
          "(goal ≤ 25×)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_file({"embed.weight": W}, str(path))
        size = W.nbytes
        del W  # the child reads the file; this process keeps none of it
        env = {**os.environ, "ZIPFRMT_COMPILATION_CACHE": str(Path(tmp) / "cache")}
        for run in ("cold", "warm"):
            done = subprocess.run([sys.executable, "-c", _LARGE_CHILD, str(path), str(Path(tmp) / run)], env=env,
                                  capture_output=True, text=True, check=True)
            wall, base, peak = map(float, done.stdout.split()[-3:])
            print(f"{V}×{d} float32 ({size / 2**20:.0f} MiB) at 20 specs, {run} compilation cache: "
                  f"{wall / gram:.0f}× one float32 Gram (goal ≤ 25×); peak RSS {peak / size:.2f}× the tensor "
                  f"({(peak - base) / size:.2f}× above the {base / 2**20:.0f} MiB of Python, JAX and zipfrmt; "
                  "goal ≤ 3×)")


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
        t_ww = math.inf  # the reference at its best: the fastest of `repeat` passes, each with a fresh watcher
        for _ in range(repeat):
            watcher = ww.WeightWatcher(model=d)
            t0 = time.perf_counter()
            watcher.analyze()
            t_ww = min(t_ww, time.perf_counter() - t0)
        t0 = time.perf_counter()
        model_analysis.analyze_model(Path(d) / "model.safetensors", specs, Path(d) / "cold", progress=lambda m: None)
        cold = time.perf_counter() - t0  # one XLA compilation per (spec, tensor shape): 60 here
        t0 = time.perf_counter()
        model_analysis.analyze_model(Path(d) / "model.safetensors", specs, Path(d) / "warm", progress=lambda m: None)
        warm = time.perf_counter() - t0
        model_analysis.analyze_model(Path(d) / "model.safetensors", specs, Path(d) / "mp0", progress=lambda m: None,
                                     bulk="mp")  # its own kernels compiled
        t0 = time.perf_counter()
        model_analysis.analyze_model(Path(d) / "model.safetensors", specs, Path(d) / "mp", progress=lambda m: None,
                                     bulk="mp")
        mp = time.perf_counter() - t0
    floor = sum(21 * _spectrum_seconds(W, repeat) for W in tensors.values())
    print(f"vs WeightWatcher: the floor — 21 spectra per tensor (W and 20 quantized copies: float32 Gram + "
          f"eigvalsh, nothing else) take {floor / t_ww:.1f}× one WeightWatcher pass, which computes 9 (goal ≤ 2×)")
    print(f"vs WeightWatcher {ww.__version__}: 9 tensors (3 shapes) at {len(specs)} specs took {cold / t_ww:.1f}× one "
          f"WeightWatcher analyze pass over the same folder with compilation, {warm / t_ww:.1f}× compiled, "
          f"{mp / t_ww:.1f}× compiled with --bulk mp (goal ≤ 2×)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--large", default="262144x640", help="the V×d tensor of the large-tensor benchmark")
    args = parser.parse_args()
    V, d = (int(x) for x in args.large.lower().split("x"))
    bench_large_tensor(V, d)
    bench_ggml_formats(args.repeat)
    bench_model_analysis(args.repeat)
    bench_vs_weightwatcher(args.repeat)


if __name__ == "__main__":
    main()
