"""Low-precision training of small language models in Flax NNX, with spectral probes of the embedding.

``train(PRESETS["tiny"])`` trains a 2-layer transformer on a latent-semantic Zipfian corpus and returns its
history (loss, held-out perplexity, embedding stable/effective rank, rank-decay and ESD exponents, truncation
index predicted vs measured, hidden-state effective rank and anisotropy) as an ``xarray.Dataset``.
See docs/training.md.
"""

from zipfrmt.nn.config import (
    PRESETS,
    DataConfig,
    ModelConfig,
    QuantSpec,
    TrainConfig,
    config_from_json,
    config_to_json,
    parse_bits,
    validate,
    with_bits,
)
from zipfrmt.nn.model import BagLM, TransformerLM, build_model, collect_activations, set_quant
from zipfrmt.nn.train import COLLAPSE_CRITERION, collapse_verdict, evaluate, make_optimizer, train, trained_model

__all__ = [
    "COLLAPSE_CRITERION",
    "PRESETS",
    "BagLM",
    "DataConfig",
    "ModelConfig",
    "QuantSpec",
    "TrainConfig",
    "TransformerLM",
    "build_model",
    "collapse_verdict",
    "collect_activations",
    "config_from_json",
    "config_to_json",
    "evaluate",
    "make_optimizer",
    "parse_bits",
    "set_quant",
    "train",
    "trained_model",
    "validate",
    "with_bits",
]
