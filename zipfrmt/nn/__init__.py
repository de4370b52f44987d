"""Low-precision training of small language models in Flax NNX, with spectral probes of the embedding.

``train(PRESETS["tiny"])`` trains a 2-layer transformer on a latent-semantic Zipfian corpus and returns its
history (loss, held-out perplexity, embedding stable/effective rank, rank-decay and ESD exponents, truncation
index predicted vs measured, hidden-state effective rank and anisotropy) as an ``xarray.Dataset``.
Quantization is said by rules (:mod:`zipfrmt.nn.rules`): ``with_quant(config, "embed=int2-row,linear=int4-row")``.
See docs/training.md.

Modules: ``config`` (the run), ``rules`` (what is quantized), ``layers`` and ``model`` (Flax NNX), ``data``,
``optim``, ``probes``, ``history``, ``checkpoint``, ``collapse``, ``evaluate``, ``train`` (the loop),
``experiment`` (sweeps of runs), ``command`` (``zipfrmt train``).
"""

from zipfrmt.nn.collapse import COLLAPSE_CRITERION, collapse_verdict
from zipfrmt.nn.config import (
    PRESETS,
    DataConfig,
    ModelConfig,
    TrainConfig,
    config_from_json,
    config_to_json,
    parse_precision,
    validate,
    with_bits,
    with_quant,
)
from zipfrmt.nn.evaluate import evaluate
from zipfrmt.nn.model import BagLM, TransformerLM, apply_rules, build_model, collect_activations, quant_sites
from zipfrmt.nn.optim import make_optimizer
from zipfrmt.nn.rules import format_rules, parse_rules
from zipfrmt.nn.train import train, trained_model
from zipfrmt.quant import QuantSpec

__all__ = [
    "COLLAPSE_CRITERION",
    "PRESETS",
    "BagLM",
    "DataConfig",
    "ModelConfig",
    "QuantSpec",
    "TrainConfig",
    "TransformerLM",
    "apply_rules",
    "build_model",
    "collapse_verdict",
    "collect_activations",
    "config_from_json",
    "config_to_json",
    "evaluate",
    "format_rules",
    "make_optimizer",
    "parse_precision",
    "parse_rules",
    "quant_sites",
    "train",
    "trained_model",
    "validate",
    "with_bits",
    "with_quant",
]
