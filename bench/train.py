"""Benchmark of low-precision training: the cost per step of every mechanism of the collapse lab against fp32.

    python bench/train.py [--preset quick] [--steps 30] [--repeats 3] [--precision 4]

Times the jit-compiled training step of the ``quick`` preset (forward, backward and AdamW; no probes, no
evaluation) at fp32 and with each mechanism of :mod:`zipfrmt.nn.lab` switched on at ``--precision`` (``4``:
int4 per row; or a format such as ``nf4``): forward weights + embedding + head + activations, the embedding
alone, activation cotangents, weight gradients, master weights, optimizer state. Prints steps/s and the ratio
to fp32 time per step, the same process, the same batches. Goal: <= 1.6x for quantized gradients and
optimizer state.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from zipfrmt.nn import PRESETS, build_model, make_optimizer
from zipfrmt.nn.checkpoint import split
from zipfrmt.nn.data import load_tokens
from zipfrmt.nn.lab import MECHANISMS, mechanism_config
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
    ap.add_argument("--precision", default="4")
    args = ap.parse_args()
    base = PRESETS[args.preset]
    tokens = base.batch_size * base.context
    print(f"{args.preset}: d={base.model.d_model}, {base.model.n_layers} layers, V={base.model.vocab_size}, "
          f"batch {base.batch_size}x{base.context} = {tokens} tokens/step, {jax.devices()[0].platform}")
    t_fp = time_steps(mechanism_config(base, "forward", "fp32"), args.steps, args.repeats)
    print(f"{'fp32':10s} {1 / t_fp:8.2f} steps/s  {tokens / t_fp:10.0f} tokens/s")
    goal = {"actgrad", "wgrad", "opt"}
    for mech in MECHANISMS:
        t = time_steps(mechanism_config(base, mech, args.precision), args.steps, args.repeats)
        ratio = t / t_fp
        note = f"(goal <= 1.6x: {'OK' if ratio <= 1.6 else 'MISSED'})" if mech in goal else ""
        print(f"{mech:10s} {1 / t:8.2f} steps/s  {tokens / t:10.0f} tokens/s  {ratio:5.2f}x fp32 {note}")


if __name__ == "__main__":
    main()
