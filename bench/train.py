"""Benchmark of quantized training: cost per step of fake-quantized training against full precision.

    python bench/train.py [--preset quick] [--steps 30] [--repeats 3] [--bits 4]

Times the jit-compiled training step of the ``quick`` preset (forward, backward and AdamW; no probes, no
evaluation) at fp32 and with ``--bits``-bit weights + embedding + head + activations (per-tensor weights,
per-token activations, the package's fake-quant with straight-through gradients). Prints steps/s, tokens/s
and the ratio quantized/fp32 time per step. Goal: <= 1.6x.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from zipfrmt.nn import PRESETS, build_model, make_optimizer, with_quant
from zipfrmt.nn.checkpoint import split
from zipfrmt.nn.data import load_tokens
from zipfrmt.nn.train import train_step


def time_steps(config, steps: int, repeats: int) -> float:
    """Best time per step over ``repeats`` runs of ``steps`` steps, after a compiling warm-up step."""
    data = load_tokens(config)
    graphdef, template, rest, params = split(build_model(config))
    opt_state = make_optimizer(config).init(params)
    toks = jnp.asarray(data.train)

    def run(p, s, n, start):
        for t in range(start, start + n):
            p, s, loss, _ = train_step(graphdef, config, None, template, rest, p, s, jnp.asarray(t, jnp.int32), toks)
        jax.block_until_ready(loss)
        return p, s

    params, opt_state = run(params, opt_state, 1, 0)
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        params, opt_state = run(params, opt_state, steps, 1 + r * steps)
        best = min(best, (time.perf_counter() - t0) / steps)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bits", type=int, default=4)
    args = ap.parse_args()
    base = PRESETS[args.preset]
    fp = with_quant(base, None)
    b = args.bits
    q = with_quant(base, f"linear=int{b}-tensor,embed=int{b}-tensor,head=int{b}-tensor,act=int{b}-row")
    tokens = base.batch_size * base.context
    t_fp = time_steps(fp, args.steps, args.repeats)
    t_q = time_steps(q, args.steps, args.repeats)
    print(f"{args.preset}: d={base.model.d_model}, {base.model.n_layers} layers, V={base.model.vocab_size}, "
          f"batch {base.batch_size}x{base.context} = {tokens} tokens/step, {jax.devices()[0].platform}")
    print(f"fp32:            {1 / t_fp:8.2f} steps/s  {tokens / t_fp:10.0f} tokens/s")
    print(f"int{args.bits} W+E+A:      {1 / t_q:8.2f} steps/s  {tokens / t_q:10.0f} tokens/s")
    ratio = t_q / t_fp
    print(f"quantized / fp32 time per step: {ratio:.2f}x (goal <= 1.6x) {'OK' if ratio <= 1.6 else 'MISSED'}")


if __name__ == "__main__":
    main()
