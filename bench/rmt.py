"""Benchmarks of zipfrmt.rmt, printed as ratios against a reference implementation in the same process.

Run: ``.venv/bin/python bench/rmt.py [--repeat N]``.

Measurements (one function each; ``main`` runs them in turn):

* ``bench_dozier_silverstein``: :func:`zipfrmt.rmt.dozier_silverstein_density` on a 2000-point grid for a
  1000-value power-law signal spectrum (c = 1/4), against the same algorithm (Newton steps along an
  η-continuation, same tolerance) written in plain NumPy below. Compilation is excluded (one warm-up call);
  times are medians over ``--repeat`` calls.
* ``bench_verify_quick``: wall time of :func:`zipfrmt.bounds.run_verify` at ``"quick"`` scale (480 points,
  compilation included, one run whatever ``--repeat``), with the points per second and the number of rigorous
  violations (0 expected). Goal: at most 3 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import jax
import numpy as np

from zipfrmt import rmt


def _median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def numpy_dozier_silverstein(
    x: np.ndarray,
    t: np.ndarray,
    c: float,
    s2: float,
    eta: float,
    *,
    damping: float = 0.5,
    max_iter: int = 200,
    tol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Reference: the DS fixed point ``m = mean_k 1/(t_k/a − a z + s²(1−c))``, ``a = 1 + s²cm`` (c ≤ 1).

    Same scheme as the package: η halves from the support scale down to ``eta``, one Newton step per
    iteration (damped fixed-point step where Newton leaves the upper half-plane). Returns (density, m, iters).
    """
    eta0 = max((math.sqrt(t.max()) + math.sqrt(s2) * (1 + math.sqrt(c))) ** 2, eta)
    m = -1.0 / (x + 1j * eta0)
    it = 0
    while it < max_iter:
        e = max(eta, eta0 * 0.5 ** (it + 1))
        z = x + 1j * e
        a = 1 + s2 * c * m
        inv = 1.0 / (t[None, :] / a[:, None] + (s2 * (1 - c) - a * z)[:, None])
        f = inv.mean(axis=1)
        sq = (inv * inv) @ np.stack([t, np.ones_like(t)], axis=1) / t.size
        fp = s2 * c * (sq[:, 0] / a**2 + z * sq[:, 1])
        newton = m - (m - f) / (1 - fp)
        ok = np.isfinite(newton) & (newton.imag > 0)
        res = np.abs(m - f) / np.abs(m)
        m = np.where(ok, newton, m + damping * (f - m))
        it += 1
        if e <= eta and res.max() <= tol:
            break
    return np.maximum(m.imag, 0) / np.pi, m, it


def bench_dozier_silverstein(repeat: int = 5, n_grid: int = 2000, n_signal: int = 1000) -> dict[str, float]:
    """DS density, 2000-point grid × 1000 signal eigenvalues: JAX (jit, vectorised) vs plain NumPy."""
    c, s2 = 0.25, 1.0
    k = np.arange(1, n_signal + 1, dtype=np.float64)
    t = 4.0 * k**-1.0  # eigenvalues of (1/N) R Rᵀ: σ_k² ∝ 1/k, i.e. σ_k ∝ k^(-1/2)
    x = np.linspace(1e-3, 8.0, n_grid)
    eta = 1e-6 * s2 * (1 + math.sqrt(c)) ** 2  # the package's default η

    def run_jax() -> rmt.DSResult:
        return rmt.dozier_silverstein_density(x, t, c, s2, eta=eta)

    res = run_jax()  # warm-up: compilation excluded
    jax_s = _median_time(run_jax, repeat)
    ref_density, _, ref_iters = numpy_dozier_silverstein(x, t, c, s2, eta)
    numpy_s = _median_time(lambda: numpy_dozier_silverstein(x, t, c, s2, eta), repeat)
    diff = float(np.max(np.abs(np.asarray(res.density, np.float64) - ref_density)))
    print(
        f"dozier_silverstein_density  grid={n_grid} signal={n_signal} c={c}: "
        f"jax {jax_s * 1e3:.1f} ms ({int(res.iterations)} iterations, converged={bool(res.converged)}, "
        f"max residual {float(np.max(res.residual)):.1e}) | numpy reference {numpy_s * 1e3:.1f} ms "
        f"({ref_iters} iterations) | ratio numpy/jax {numpy_s / jax_s:.2f}x | max |Δdensity| {diff:.1e} "
        f"[{jax.devices()[0].platform}]"
    )
    return {"jax_s": jax_s, "numpy_s": numpy_s, "ratio": numpy_s / jax_s, "iterations": int(res.iterations)}


def bench_verify_quick(repeat: int = 1) -> dict[str, float]:
    """``run_verify("quick")`` end to end: wall time and points per second (``repeat`` is ignored: one run)."""
    from zipfrmt import bounds

    t0 = time.perf_counter()
    ds, rows = bounds.run_verify("quick", progress=False)
    wall = time.perf_counter() - t0
    points = int(ds["regime"].size)
    violations = sum(r["violations"] or 0 for r in rows if r["kind"] == "rigorous")
    print(
        f"verify --scale quick: {points} points in {wall:.1f} s ({points / wall:.2f} points/s), "
        f"rigorous violations {violations} [{jax.devices()[0].platform}]"
    )
    return {"wall_s": wall, "points": points, "points_per_s": points / wall, "rigorous_violations": violations}


#: One entry per measurement.
MEASUREMENTS: list[Callable[..., dict[str, float]]] = [bench_dozier_silverstein, bench_verify_quick]


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per measurement (median reported)")
    args = parser.parse_args(argv)
    return {fn.__name__: fn(repeat=args.repeat) for fn in MEASUREMENTS}


if __name__ == "__main__":
    main()
