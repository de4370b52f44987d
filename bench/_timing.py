"""Timing shared by the benchmarks: the best wall time of repeated calls, after a warm-up (compilation)."""

from __future__ import annotations

import time
from collections.abc import Callable

import jax


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time (seconds) of ``repeats`` calls of ``fn``, each blocked on, after one warm-up call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)
