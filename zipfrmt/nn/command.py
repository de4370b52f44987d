"""``zipfrmt train``: build a config from a preset or JSON file plus options, train, print a summary.

    zipfrmt train CONFIG_OR_PRESET [--quant 'embed=int2-row,linear=int4-row,act=int8-row,wgrad=int4-row']
                  [--bits fp32|8|int4-row|nf4|... [--granularity tensor|row|groupN] [--rounding nearest|stochastic]]
                  [--act-bits ...] [--grad-bits ...] [--control none|noise|stochastic|hadamard] [--freeze embed]
                  [--lr LR] [--steps N] [--seed S] [--corpus latent|zipf|PATH] [--out DIR] [--no-progress]

``--quant`` gives the quantization rules (:mod:`zipfrmt.nn.rules`); ``--bits``/``--act-bits``/``--grad-bits``
are a shorthand for the rules ``linear,embed,head=…``, ``act=…`` and ``grad=…`` (a bare bit width means
per-tensor weights and per-token activations and gradients). The shorthand replaces a ``--quant`` rule of the
same pattern and comes after the others, so a more specific ``--quant`` rule (an exemption such as
``linear/blocks/0/*=fp32``) still takes precedence.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["config_from_args", "run"]


def _spec_from(text: str, name: str, *, per_token: bool = False, granularity: str | None = None,
               rounding: str | None = None) -> Any:
    """The spec of one shorthand option (None for fp32); a bare bit width gets per-token scales if asked."""
    from zipfrmt.nn.config import parse_precision
    from zipfrmt.quant import parse_granularity

    spec = parse_precision(text, name)
    if spec is None:
        return None
    try:
        if per_token and str(text).strip().isdigit():
            spec = spec.replace(granularity="row")
        if granularity is not None:
            gran, size = parse_granularity(granularity)
            spec = spec.replace(granularity=gran, group_size=size)
        if rounding is not None:
            spec = spec.replace(rounding=rounding)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    return spec


def _base_config(name: str) -> Any:
    from zipfrmt.nn.config import PRESETS, config_from_dict

    if name in PRESETS:
        return PRESETS[name]
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"CONFIG_OR_PRESET: expected a preset ({', '.join(PRESETS)}) or a JSON config "
                                f"file, got {name!r}")
    try:
        return config_from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise ValueError(f"CONFIG_OR_PRESET: '{path}' is not valid JSON ({exc})") from None


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~zipfrmt.nn.config.TrainConfig` the command line describes (validated)."""
    from zipfrmt.nn.config import validate
    from zipfrmt.nn.rules import parse_rules

    config = _base_config(args.config)
    if args.bits is None and (args.granularity is not None or args.rounding is not None):
        given = "--granularity" if args.granularity is not None else "--rounding"
        raise ValueError(f"{given}: applies to --bits, which was not given; add --bits (e.g. --bits 4)")
    rules = list(config.quant)
    if args.quant is not None:
        try:
            rules = list(parse_rules(args.quant))
        except ValueError as exc:
            raise ValueError(f"--quant: {exc}") from None
    shorthand: dict[str, Any] = {}
    if args.bits is not None:
        spec = _spec_from(args.bits, "--bits", granularity=args.granularity, rounding=args.rounding)
        shorthand.update(linear=spec, embed=spec, head=spec)
    if args.act_bits is not None:
        shorthand["act"] = _spec_from(args.act_bits, "--act-bits", per_token=True)
    if args.grad_bits is not None:
        shorthand["grad"] = _spec_from(args.grad_bits, "--grad-bits", per_token=True)
    # --quant's own rules first (first match wins, so they keep their exemptions), then the shorthand
    rules = [(p, s) for p, s in rules if p not in shorthand] + [(p, s) for p, s in shorthand.items() if s is not None]
    kw: dict[str, Any] = {"quant": tuple(rules)}
    if args.control is not None:
        kw["control"] = args.control
    if args.freeze is not None:
        kw["freeze"] = tuple(p.strip() for p in args.freeze.split(",") if p.strip())
    if args.lr is not None:
        kw["lr"] = args.lr
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
    from zipfrmt.nn.history import last
    from zipfrmt.nn.rules import format_rules
    from zipfrmt.nn.train import train

    config = config_from_args(args)
    extra = (f", control {config.control}" if config.control != "none" else "") + (
        f", frozen {','.join(config.freeze)}" if config.freeze else "")
    print(f"zipfrmt train: {config.model.kind} d={config.model.d_model} layers={config.model.n_layers} "
          f"V={config.model.vocab_size}, quantization {format_rules(config.quant) or 'none (fp32)'}{extra}, "
          f"{config.steps} steps of {config.batch_size}x{config.context} tokens at lr {config.lr:g}")
    import signal

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)  # a killed job saves like Ctrl-C
    try:
        ds = train(config, args.out, progress=not args.no_progress)
    except KeyboardInterrupt as exc:
        # train() re-raises with a message saying what it saved and how to resume; an interrupt before training
        # started (building the corpus, compiling) carries none
        print(f"zipfrmt train: {str(exc) or 'interrupted before the first training step: nothing was saved'}",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    keys = ("loss", "eval_loss", "perplexity", "emb_stable_rank", "emb_stable_rank_q", "emb_rank_exponent",
            "emb_k_star_measured", "emb_k_star_predicted", "emb_k_star_sketch", "emb_stable_rank_q_sketch",
            "emb_below_edge_measured", "hidden_effective_rank",
            "hidden_anisotropy", "grad_pushdown_kept")
    print("final: " + ", ".join(f"{k} {last(ds, k):.4g}" for k in keys))
    print(f"status: {ds.attrs['status']}" + (f" ({ds.attrs['reason']})" if ds.attrs["reason"] else "")
          + f"; unigram loss on the evaluation windows {ds.attrs['unigram_loss']:.4f} nats")
    if args.out:
        print(f"wrote {Path(args.out) / 'history.nc'}")
    else:
        print("(no --out: history not written)")
    return 1 if ds.attrs["status"] == "diverged" else 0
