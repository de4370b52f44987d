"""Benchmarks of zipfrmt.spectra, as ratios against reference runs in the same process.

    python bench/spectra.py [--V 50257] [--d 768] [--repeats 3]

1. numpy.linalg.svd(compute_uv=False) time / singular_values(method="auto") time on a V×d float32 power-law
   matrix (GPT-2's embedding shape by default), with the accuracy reached. Goal >= 6x.
2. Time of a sweep of 21 quantized spectra (bits 8..2 × tensor/row/group32) / (21 × one bare Gram matmul
   W.T @ W). Goal <= 1.3x.
3. powerlaw.Fit time (its own x_min search) / fit_esd_powerlaw time on 4096 eigenvalues. Goal >= 20x.
"""

from __future__ import annotations

import argparse
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from _timing import best_time

from zipfrmt import embeddings, quant, spectra


def bench_singular_values(W: np.ndarray, repeats: int, label: str) -> None:
    t_np = best_time(lambda: np.linalg.svd(W, compute_uv=False), 1)
    ref = np.linalg.svd(W.astype(np.float64), compute_uv=False)
    Wj = jnp.asarray(W)
    t_auto = best_time(lambda: spectra.singular_values(Wj), repeats)
    s = np.asarray(spectra.singular_values(Wj), np.float64)
    keep = ref >= 1e-3 * ref[0]
    err = np.max(np.abs(s[keep] - ref[keep]) / ref[keep])
    path = "gram (float32)" if spectra.gram_is_accurate(ref) else "gram64 fallback"
    print(f"[1] {label}: numpy svd / singular_values(auto) = {t_np / t_auto:.1f}x  (goal >= 6x; auto took the "
          f"{path} path; max rel. error {err:.1e} on sigma >= 1e-3 sigma_1)")


def bench_quantized_sweep(W: np.ndarray, repeats: int) -> None:
    Wj = jnp.asarray(W)
    gram = jax.jit(lambda w: w.T @ w)
    t_gram = best_time(lambda: gram(Wj), repeats)
    settings = [(b, g, gs) for b in range(8, 1, -1) for g, gs in (("tensor", None), ("row", None), ("group", 32))]

    def sweep():
        out = []
        for b, g, gs in settings:
            r = quant.quantize(Wj, b, granularity=g, group_size=gs)
            out.append(spectra.singular_values(r.dequantized))
        return out

    t_sweep = best_time(sweep, max(1, repeats - 1))
    fallbacks = sum(not spectra.gram_is_accurate(s) for s in sweep())
    print(f"[2] sweep of {len(settings)} quantized spectra / ({len(settings)} x bare Gram matmul) = "
          f"{t_sweep / (len(settings) * t_gram):.2f}x  (goal <= 1.3x; {fallbacks} of {len(settings)} took the "
          f"float64 fallback)")


def bench_powerlaw_fit(repeats: int) -> None:
    import powerlaw

    rng = np.random.default_rng(0)
    lam = (1 - rng.random(4096)) ** (-1 / 1.5)  # Pareto, alpha = 2.5
    s = np.sqrt(lam)

    def reference():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return powerlaw.Fit(lam, discrete=False, verbose=False).power_law.alpha

    t_ref = best_time(reference, 1)
    t_ours = best_time(lambda: spectra.fit_esd_powerlaw(s).alpha, repeats)
    fit = spectra.fit_esd_powerlaw(s)
    print(f"[3] powerlaw.Fit / fit_esd_powerlaw on 4096 eigenvalues = {t_ref / t_ours:.0f}x  (goal >= 20x; "
          f"alpha {fit.alpha:.3f} vs powerlaw's {reference():.3f}, x_min chosen by each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--V", type=int, default=50257)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"zipfrmt bench/spectra.py — {args.V}x{args.d} float32, jax {jax.__version__} on "
          f"{jax.devices()[0].platform} ({jax.device_count()} device(s))")
    for a in (0.5, 1.0):
        W = np.asarray(embeddings.power_law_matrix(jax.random.key(0), args.V, args.d, a, scale=10.0))
        bench_singular_values(W, args.repeats, f"power law a={a}")
    W = np.asarray(embeddings.power_law_matrix(jax.random.key(0), args.V, args.d, 0.5, scale=10.0))
    bench_quantized_sweep(W, args.repeats)
    bench_powerlaw_fit(args.repeats)


if __name__ == "__main__":
    main()
