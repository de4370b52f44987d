"""Benchmarks of zipfrmt.mitigate, as ratios against reference runs in the same process.

    python bench/mitigate.py [--d 256] [--layers 4] [--vocab 8192] [--every 100] [--repeats 3]

1. S2D's overhead per optimizer step, amortised over m = ``--every`` steps: time of ``every`` jit-compiled
   updates of ``optax.chain(s2d(...), optax.adamw(...))`` / the same with ``optax.adamw`` alone, on the 2-D
   weights of a small transformer-shaped parameter tree (an embedding ``vocab×d`` and ``layers`` MLP pairs
   ``d×4d``, ``4d×d``; every weight selected, k = 3). The refresh step (full SVDs) and a cached step are also
   timed on their own.
2. SpecQuant's time per matrix / plain per-channel quantization (``quant.quantize``) of the same matrix:
   (a) an embedding table ``vocab×d`` (no smoothing), (b) a linear layer ``d×4d`` with 512 calibration rows and
   the 21-point α search.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _timing import best_time

from zipfrmt import embeddings, quant
from zipfrmt.mitigate import s2d as s2d_mod
from zipfrmt.mitigate import specquant as sq_mod


def make_params(key: jax.Array, vocab: int, d: int, layers: int) -> dict:
    keys = jax.random.split(key, 2 * layers + 1)
    params = {"embed": {"embedding": jax.random.normal(keys[0], (vocab, d)) / np.sqrt(d)}}
    for i in range(layers):
        params[f"block{i}"] = {
            "up": {"kernel": jax.random.normal(keys[2 * i + 1], (d, 4 * d)) / np.sqrt(d),
                   "bias": jnp.zeros(4 * d)},
            "down": {"kernel": jax.random.normal(keys[2 * i + 2], (4 * d, d)) / np.sqrt(4 * d),
                     "bias": jnp.zeros(d)},
        }
    return params


def bench_s2d(vocab: int, d: int, layers: int, every: int, repeats: int) -> None:
    params = make_params(jax.random.key(0), vocab, d, layers)
    grads = jax.tree.map(lambda p: 1e-3 * jnp.ones_like(p), params)
    base = optax.adamw(1e-4)
    with_s2d = optax.chain(s2d_mod.s2d(lam=5e-4, n=2, k=3, every=every), optax.adamw(1e-4))

    def run(tx):
        update = jax.jit(tx.update)
        state0 = tx.init(params)

        def steps():
            state = state0
            for _ in range(every):
                upd, state = update(grads, state, params)
            return upd

        return steps, update, state0

    steps_base, _, _ = run(base)
    steps_s2d, update_s2d, st0 = run(with_s2d)
    t_base = best_time(steps_base, repeats)
    t_s2d = best_time(steps_s2d, repeats)
    _, st1 = update_s2d(grads, st0, params)
    t_refresh = best_time(lambda: update_s2d(grads, st0, params), repeats)
    t_cached = best_time(lambda: update_s2d(grads, st1, params), repeats)
    n_w = sum(x.size for x in jax.tree.leaves(params))
    print(f"[1] S2D overhead ({n_w / 1e6:.1f}M params, {2 * layers + 1} selected weights, m={every}): "
          f"chain(s2d, adamw) / adamw over {every} steps = {t_s2d / t_base:.2f}x "
          f"({1e3 * t_s2d / every:.2f} vs {1e3 * t_base / every:.2f} ms/step); "
          f"refresh step {1e3 * t_refresh:.1f} ms, cached step {1e3 * t_cached:.2f} ms "
          f"(cached / adamw step = {t_cached / (t_base / every):.2f}x)")


def bench_specquant(vocab: int, d: int, repeats: int) -> None:
    E = embeddings.power_law_matrix(jax.random.key(1), vocab, d, 0.5)
    t_q = best_time(lambda: quant.quantize(E, 4, granularity="row").dequantized, repeats)
    t_sq = best_time(lambda: sq_mod.specquant(E, 4, 0.02, axis=1).weight, repeats)
    print(f"[2a] SpecQuant / plain quantization, embedding {vocab}x{d} (no smoothing, budget 0.02): "
          f"{t_sq / t_q:.1f}x ({1e3 * t_sq:.1f} vs {1e3 * t_q:.1f} ms)")
    W = jax.random.normal(jax.random.key(2), (d, 4 * d)) / np.sqrt(d)
    X = np.array(jax.random.normal(jax.random.key(3), (512, d)))
    X[:, :4] *= 30.0
    t_q = best_time(lambda: quant.quantize(W, 4, granularity="column").dequantized, repeats)
    t_sq = best_time(lambda: sq_mod.specquant(W, 4, 0.1, X=X).weight, repeats)
    print(f"[2b] SpecQuant / plain quantization, linear {d}x{4 * d} with 512 calibration rows and the "
          f"{len(sq_mod.ALPHA_GRID)}-point alpha search: {t_sq / t_q:.1f}x ({1e3 * t_sq:.1f} vs {1e3 * t_q:.1f} ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"device: {jax.devices()[0].platform}")
    bench_s2d(args.vocab, args.d, args.layers, args.every, args.repeats)
    bench_specquant(args.vocab, args.d, args.repeats)


if __name__ == "__main__":
    main()
