"""Benchmark of low-precision training: the cost per step of every mechanism of the collapse lab against fp32.

    python bench/train.py [--preset quick] [--steps 30] [--repeats 3] [--precision 4]

Times the jit-compiled training step of the ``quick`` preset (forward, backward and AdamW; no probes, no
evaluation) at fp32 and with each mechanism of :mod:`zipfrmt.nn.lab` switched on at ``--precision`` (``4``:
int4 per row; or a format such as ``nf4``): forward weights + embedding + head + activations, the embedding
alone, activation cotangents, weight gradients, master weights, optimizer state. Prints steps/s and the ratio
to fp32 time per step: the same process, the same batches, best of ``--repeats`` rounds that each time every
setting in turn. Goal: <= 1.6x for quantized gradients and
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


def runner(config):
    """A compiled ``run(steps) -> seconds per step`` for ``config`` (the compiling step is taken here)."""
    data = load_tokens(config)
    graphdef, template, rest, params = split(build_model(config))
    state = {"params": params, "opt": make_optimizer(config).init(params), "t": 0}
    toks = jnp.asarray(data.train)

    def run(n: int) -> float:
        p, s, t = state["params"], state["opt"], state["t"]
        t0 = time.perf_counter()
        for step in range(t, t + n):
            p, s, loss, _ = train_step(graphdef, config, None, template, rest, p, s, jnp.asarray(step, jnp.int32),
                                       toks)
        jax.block_until_ready(loss)
        state.update(params=p, opt=s, t=t + n)
        return (time.perf_counter() - t0) / n

    run(1)
    return run


def best_times(configs: dict, steps: int, repeats: int) -> dict:
    """Best time per step of each config over ``repeats`` rounds; every round times every config in turn,
    starting one further along each round, so a change of machine load hits all of them alike."""
    if steps < 1 or repeats < 1:
        raise ValueError(f"steps, repeats: expected >= 1, got {steps}, {repeats}")
    runs = list({name: runner(cfg) for name, cfg in configs.items()}.items())
    best = {name: float("inf") for name in configs}
    for r in range(repeats):
        for name, run in runs[r % len(runs):] + runs[: r % len(runs)]:  # a new order each round
            best[name] = min(best[name], run(steps))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--precision", default="4")
    args = ap.parse_args()
    base = PRESETS[args.preset]
    tokens = base.batch_size * base.context
    print(f"{args.preset}: d={base.model.d_model}, {base.model.n_layers} layers, V={base.model.vocab_size}, "
          f"batch {base.batch_size}x{base.context} = {tokens} tokens/step, {jax.devices()[0].platform}")
    configs = {"fp32": mechanism_config(base, "forward", "fp32")}
    configs |= {mech: mechanism_config(base, mech, args.precision) for mech in MECHANISMS}
    best = best_times(configs, args.steps, args.repeats)
    t_fp = best["fp32"]
    print(f"{'fp32':10s} {1 / t_fp:8.2f} steps/s  {tokens / t_fp:10.0f} tokens/s")
    goal = {"actgrad", "wgrad", "opt"}
    for mech in MECHANISMS:
        ratio = best[mech] / t_fp
        note = f"(goal <= 1.6x: {'OK' if ratio <= 1.6 else 'MISSED'})" if mech in goal else ""
        print(f"{mech:10s} {1 / best[mech]:8.2f} steps/s  {tokens / best[mech]:10.0f} tokens/s  {ratio:5.2f}x fp32 "
              f"{note}")


if __name__ == "__main__":
    main()
