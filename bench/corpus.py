"""Benchmarks of zipfrmt.corpus against reference implementations.

Run ``python bench/corpus.py``. Each measurement is one function returning its numbers; ``main`` prints them.

* ``sample_zipf`` vs ``numpy.random.Generator.choice(V, size=n, p=pmf)`` with the same float64 pmf, at
  n = 10^7 tokens and V = 50,000 (goal: ≥ 10x). Both sides are timed end to end, table or CDF construction
  included; the JAX kernel is compiled once before timing; best of ``repeats`` runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import numpy as np

from zipfrmt import corpus


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls (``time.perf_counter``), in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


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


def main() -> None:
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
    r = bench_sample_zipf()
    print(
        f"sample_zipf: {r['n']:.0e} tokens, V = {r['V']:,}, s = {r['s']:g}: "
        f"{r['ours_s'] * 1e3:.1f} ms ({r['n'] / r['ours_s'] / 1e6:.0f} M tokens/s); "
        f"numpy choice: {r['numpy_s'] * 1e3:.1f} ms"
    )
    print(f"sample_zipf vs numpy choice: {r['ratio']:.1f}x (goal >= 10x)")


if __name__ == "__main__":
    main()
