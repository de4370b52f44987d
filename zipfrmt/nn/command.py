"""``zipfrmt train``: build a config from a preset or JSON file plus options, train, print a summary.

    zipfrmt train CONFIG_OR_PRESET [--bits fp32|8|4|nf4|...] [--act-bits ...] [--grad-bits ...]
                  [--granularity tensor|row|groupN] [--rounding nearest|stochastic] [--steps N] [--seed S]
                  [--corpus latent|zipf|PATH] [--out DIR] [--no-progress]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["config_from_args", "run"]


def _spec_from(text: str, granularity: str | None, rounding: str | None) -> Any:
    from zipfrmt.analyze import parse_granularity
    from zipfrmt.nn.config import parse_bits

    spec = parse_bits(text)
    if spec is None:
        return None
    if granularity is not None:
        gran, size = parse_granularity(granularity)
        spec = dataclasses.replace(spec, granularity=gran, group_size=size)
    if rounding is not None:
        spec = dataclasses.replace(spec, rounding=rounding)
    return spec


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~zipfrmt.nn.config.TrainConfig` the command line describes (validated)."""
    from zipfrmt.nn.config import PRESETS, config_from_dict, validate

    name = args.config
    if name in PRESETS:
        config = PRESETS[name]
    else:
        path = Path(name)
        if not path.exists():
            raise FileNotFoundError(f"CONFIG_OR_PRESET: expected a preset ({', '.join(PRESETS)}) or a JSON config "
                                    f"file, got {name!r}")
        try:
            config = config_from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise ValueError(f"CONFIG_OR_PRESET: '{path}' is not valid JSON ({exc})") from None
    kw: dict[str, Any] = {}
    if args.bits is None and (args.granularity is not None or args.rounding is not None):
        given = "--granularity" if args.granularity is not None else "--rounding"
        raise ValueError(f"{given}: applies to --bits, which was not given; add --bits (e.g. --bits 4)")
    if args.bits is not None:
        spec = _spec_from(args.bits, args.granularity, args.rounding)
        kw.update(quant_linear=spec, quant_embed=spec, quant_head=spec)
    if args.act_bits is not None:
        kw["quant_act"] = _spec_from(args.act_bits, None, None)
        if kw["quant_act"] is not None and kw["quant_act"].format is None:
            kw["quant_act"] = dataclasses.replace(kw["quant_act"], granularity="row")
    if args.grad_bits is not None:
        g = _spec_from(args.grad_bits, None, None)
        kw["quant_grad"] = None if g is None else dataclasses.replace(g, granularity="row")
    if args.steps is not None:
        kw["steps"] = args.steps
        kw["warmup"] = min(config.warmup, max(args.steps // 10, 0))
    if args.seed is not None:
        kw["seed"] = args.seed
    if args.corpus is not None:
        if args.corpus in ("latent", "zipf"):
            kw["data"] = dataclasses.replace(config.data, source=args.corpus)
        else:
            kw["data"] = dataclasses.replace(config.data, source="text", path=str(args.corpus))
    return validate(dataclasses.replace(config, **kw))


def run(args: argparse.Namespace) -> int:
    """Runs ``zipfrmt train``; returns the exit status (0, or 1 if the run diverged)."""
    from zipfrmt.nn.train import train

    config = config_from_args(args)
    bits = config.quant_embed.label if config.quant_embed is not None else "fp32"
    act = config.quant_act.label if config.quant_act is not None else "fp32"
    print(f"zipfrmt train: {config.model.kind} d={config.model.d_model} layers={config.model.n_layers} "
          f"V={config.model.vocab_size}, weights+embedding {bits}, activations {act}, {config.steps} steps "
          f"of {config.batch_size}x{config.context} tokens")
    ds = train(config, args.out, progress=not args.no_progress)
    last = {k: _last(ds, k) for k in ("loss", "eval_loss", "perplexity", "emb_stable_rank", "emb_stable_rank_q",
                                      "emb_rank_exponent", "emb_k_star_measured", "emb_k_star_predicted",
                                      "hidden_effective_rank", "hidden_anisotropy")}
    print("final: " + ", ".join(f"{k} {v:.4g}" for k, v in last.items()))
    print(f"status: {ds.attrs['status']}" + (f" ({ds.attrs['reason']})" if ds.attrs["reason"] else "")
          + f"; unigram entropy {ds.attrs['unigram_entropy']:.4f} nats")
    if args.out:
        print(f"wrote {Path(args.out) / 'history.nc'}")
    else:
        print("(no --out: history not written)")
    return 1 if ds.attrs["status"] == "diverged" else 0


def _last(ds: Any, name: str) -> float:
    import numpy as np

    v = ds[name].values
    v = v[np.isfinite(v)]
    return float(v[-1]) if v.size else math.nan
