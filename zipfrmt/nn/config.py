"""Configuration of a quantized training run: frozen, hashable dataclasses, presets and validation.

A run is one :class:`TrainConfig`: the model (:class:`ModelConfig`), the data (:class:`DataConfig`), the
optimiser schedule, and one :class:`QuantSpec` per quantized tensor family — linear weights, the embedding
table, the output head, the activations entering every linear layer, and the gradients flowing back into
every linear layer. ``None`` means full precision (float32).

Every config is ``dataclasses.asdict``-able to JSON and back (:func:`config_to_json`, :func:`config_from_json`)
and hashable, so the experiments layer can key caches on it. :func:`validate` checks a whole config at the
public boundary, before any work starts, with errors that name the field, the value and the expectation.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from zipfrmt import quant
from zipfrmt._validate import check_choice, check_int, check_number, describe

__all__ = [
    "DataConfig",
    "ModelConfig",
    "PRESETS",
    "QuantSpec",
    "TrainConfig",
    "config_from_json",
    "config_to_json",
    "validate",
    "with_bits",
]

#: Real low-precision formats, quantized through Qwix (see :data:`zipfrmt.quant.FORMATS`).
FORMATS = tuple(quant.FORMATS)


@dataclasses.dataclass(frozen=True)
class QuantSpec:
    """How one tensor family is quantized in the forward (or backward) pass.

    Exactly one of ``bits`` (the package's uniform quantizer, :func:`zipfrmt.quant.fake_quant`, with a
    straight-through gradient) or ``format`` (``fp8_e4m3``, ``fp8_e5m2``, ``nf4``, ``mxfp4``, ``nvfp4`` through
    Qwix, also straight-through) is set. Scale groups follow the rows = tokens convention: for the embedding
    table and the tied head a row is a token; for a linear kernel a row is an *output channel* (groups run
    along the contraction axis); for activations a row is a token position (``row`` = per-token scales).

    Attributes:
      bits: 1…16 for the uniform quantizer, else None.
      format: a Qwix format name, else None.
      scheme: ``symmetric`` or ``asymmetric`` (uniform quantizer only).
      granularity: ``tensor``, ``row``, ``column`` or ``group``.
      group_size: block length for ``group``.
      rounding: ``nearest`` or ``stochastic`` (a fresh key per step and per layer, folded from the run seed).
      clip: ``absmax``, ``percentile`` or ``mse``.
    """

    bits: int | None = None
    format: str | None = None
    scheme: str = "symmetric"
    granularity: str = "tensor"
    group_size: int | None = None
    rounding: str = "nearest"
    clip: str = "absmax"

    @property
    def label(self) -> str:
        """``int4-row``, ``int3-group32-stochastic``, ``nf4-row``… (:attr:`zipfrmt.quant.QuantConfig.label`)."""
        label = quant.QuantConfig(bits=self.bits if self.bits is not None else 4, scheme=self.scheme,
                                  granularity=self.granularity, group_size=self.group_size, clip=self.clip,
                                  rounding=self.rounding).label
        return label if self.bits is not None else f"{self.format}{label.removeprefix('int4')}"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer (``kind="transformer"``) or an embedding-bag predictor (``kind="bag"``).

    The transformer: token embedding ``E`` (V×d) + learned positions, ``n_layers`` pre-norm blocks
    ``x ← x + Attn(LN(x))``, ``x ← x + MLP(LN(x))`` (causal multi-head attention with ``n_heads`` heads,
    MLP d → ``d_ff`` → d with GELU), a final LayerNorm, and the head: ``logits = h Eᵀ`` when ``tie_embeddings``
    else a separate d×V linear layer. The bag model predicts token t+1 from the mean of the embeddings of
    tokens t−w+1…t (``w = bag_window``) through the same head: ``logits = mean(E[x]) Eᵀ`` (tied) — a
    skip-gram-like model whose only representation is the embedding table.
    """

    kind: str = "transformer"
    vocab_size: int = 512
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int | None = None  # None: 4·d_model
    max_len: int = 128
    tie_embeddings: bool = True
    bag_window: int = 4

    @property
    def ff_dim(self) -> int:
        return self.d_ff if self.d_ff is not None else 4 * self.d_model


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the tokens come from.

    ``source``: ``latent`` (:func:`zipfrmt.corpus.latent_semantic_corpus` with Zipf exponent ``zipf_s``, tilt
    ``beta``, ``n_topics`` topics, ``doc_len``-token documents of topic persistence ``persistence``), ``zipf``
    (i.i.d. :func:`zipfrmt.corpus.sample_zipf`), or ``text`` (:func:`zipfrmt.corpus.read_text` of ``path`` with
    ``tokenizer``, vocabulary capped at the model's ``vocab_size``). Synthetic corpora are drawn from
    ``data_seed`` (independent of the training seed, so seeds vary the model, not the data). The last
    ``eval_fraction`` of the stream is held out for evaluation.
    """

    source: str = "latent"
    n_tokens: int = 200_000
    zipf_s: float = 1.1
    beta: float = 2.0
    n_topics: int = 64
    dim: int = 16
    doc_len: int = 256
    persistence: float = 0.0
    path: str | None = None
    tokenizer: str = "word"
    eval_fraction: float = 0.1
    data_seed: int = 0


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A whole training run.

    Optimiser: AdamW (``b1``, ``b2``, ``weight_decay``) after global-norm clipping at ``grad_clip``, learning
    rate linear warm-up over ``warmup`` steps to ``lr`` then cosine decay to ``lr·min_lr_ratio`` at ``steps``.
    Each step draws ``batch_size`` windows of ``context + 1`` tokens from the training stream at offsets that
    are a pure function of ``(seed, step)``.

    Probes every ``probe_every`` steps (and at the last step), evaluation every ``eval_every`` steps on
    ``eval_batches`` fixed batches of held-out windows, Orbax checkpoints every ``checkpoint_every`` steps
    (when an output directory is given).

    Divergence stops the run: a non-finite loss or gradient, or a training loss above ``blowup_factor · ln V``
    (three times the loss of a uniform guess by default). Collapse is recorded, not stopped on (see
    :mod:`zipfrmt.nn.train`): ``collapse_fraction`` is the fraction of the full-precision reference's effective
    rank under which a quantized run counts as collapsed, ``unigram_margin`` (nats) how close to the unigram
    entropy the final held-out loss must be to count as "stuck at unigram statistics".

    Quantization: one :class:`QuantSpec` per family, ``None`` = float32 — except ``quant_head`` of a tied head,
    which is the embedding table itself: there ``None`` means "as ``quant_embed``" (the head multiplies by the
    same quantized table the lookup reads). ``quant_act`` must be per token (``row``) or per ``group``.
    """

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    batch_size: int = 16
    context: int = 64
    steps: int = 200
    lr: float = 3e-3
    warmup: int = 20
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    b1: float = 0.9
    b2: float = 0.95
    grad_clip: float = 1.0
    quant_linear: QuantSpec | None = None
    quant_embed: QuantSpec | None = None
    quant_head: QuantSpec | None = None
    quant_act: QuantSpec | None = None
    quant_grad: QuantSpec | None = None
    probe_every: int = 50
    eval_every: int = 50
    eval_batches: int = 4
    checkpoint_every: int = 100
    seed: int = 0
    blowup_factor: float = 3.0
    collapse_fraction: float = 0.5
    unigram_margin: float = 0.05


# ---------------------------------------------------------------------------------------------------------
# JSON round trip
# ---------------------------------------------------------------------------------------------------------


def config_to_json(config: TrainConfig) -> str:
    """The config as canonical JSON (sorted keys): equal configs give equal strings."""
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def _spec(d: Any) -> QuantSpec | None:
    return None if d is None else QuantSpec(**d)


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Inverse of ``dataclasses.asdict`` for a :class:`TrainConfig` (unknown keys are an error)."""
    d = dict(d)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"config: unknown fields {sorted(unknown)}; expected a subset of {sorted(names)}")
    if "model" in d:
        d["model"] = ModelConfig(**d["model"])
    if "data" in d:
        d["data"] = DataConfig(**d["data"])
    for k in ("quant_linear", "quant_embed", "quant_head", "quant_act", "quant_grad"):
        if k in d:
            d[k] = _spec(d[k])
    return TrainConfig(**d)


def config_from_json(text: str) -> TrainConfig:
    """Inverse of :func:`config_to_json`."""
    return config_from_dict(json.loads(text))


# ---------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------


def _validate_spec(spec: Any, name: str) -> None:
    if spec is None:
        return
    if not isinstance(spec, QuantSpec):
        raise TypeError(f"{name}: expected a QuantSpec or None, got {describe(spec)}")
    if (spec.bits is None) == (spec.format is None):
        raise ValueError(f"{name}: expected exactly one of bits or format, got bits={spec.bits!r}, "
                         f"format={spec.format!r}")
    if spec.bits is not None:
        check_int(spec.bits, f"{name}.bits", lo=1, hi=16)
        check_choice(spec.scheme, f"{name}.scheme", quant.SCHEMES)
        check_choice(spec.clip, f"{name}.clip", quant.CLIPS)
        if spec.bits == 1 and (spec.scheme != "symmetric" or spec.rounding != "nearest"):
            raise ValueError(f"{name}: the 1-bit sign quantizer is symmetric with nearest rounding, got "
                             f"scheme={spec.scheme!r}, rounding={spec.rounding!r}")
    else:
        check_choice(spec.format, f"{name}.format", FORMATS)
        if spec.rounding != "nearest":
            raise ValueError(f"{name}.rounding: Qwix formats use nearest rounding here, got {spec.rounding!r}")
        if (spec.scheme, spec.clip) != ("symmetric", "absmax"):
            raise ValueError(f"{name}: Qwix formats use their own symmetric absmax scales; scheme and clip must be "
                             f"'symmetric' and 'absmax', got scheme={spec.scheme!r}, clip={spec.clip!r}")
    check_choice(spec.granularity, f"{name}.granularity", quant.GRANULARITIES)
    check_choice(spec.rounding, f"{name}.rounding", quant.ROUNDINGS)
    if spec.granularity == "group":
        check_int(spec.group_size, f"{name}.group_size", lo=1)
    elif spec.group_size is not None:
        raise ValueError(f"{name}.group_size: only used with granularity='group', got {spec.group_size!r}")


def _check_group(spec: QuantSpec | None, name: str, widths: dict[str, int]) -> None:
    """Group sizes must divide the rows they tile (Qwix needs it; padding would make the probes ambiguous)."""
    if spec is None:
        return
    if spec.format in ("mxfp4", "nvfp4"):
        block = quant.FORMATS[spec.format][1]
        for what, w in widths.items():
            if w % block:
                raise ValueError(f"{name}.format: {spec.format} needs {what} = {w} to be a multiple of {block}")
    if spec.granularity == "group":
        for what, w in widths.items():
            if w % spec.group_size:
                raise ValueError(f"{name}.group_size: expected a divisor of {what} = {w}, got {spec.group_size}")


def validate(config: Any) -> TrainConfig:
    """Checks a whole :class:`TrainConfig` and returns it; raises before any work starts.

    Raises ValueError/TypeError naming the field, e.g. ``quant_embed.bits: expected an integer in [1, 16],
    got 0``, ``model.d_model: expected a multiple of n_heads = 3, got 64``.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config: expected a TrainConfig, got {describe(config)}")
    m, dcfg = config.model, config.data
    if not isinstance(m, ModelConfig):
        raise TypeError(f"model: expected a ModelConfig, got {describe(m)}")
    if not isinstance(dcfg, DataConfig):
        raise TypeError(f"data: expected a DataConfig, got {describe(dcfg)}")
    check_choice(m.kind, "model.kind", ("transformer", "bag"))
    check_int(m.vocab_size, "model.vocab_size", lo=2)
    check_int(m.d_model, "model.d_model", lo=1)
    check_int(m.n_layers, "model.n_layers", lo=0 if m.kind == "bag" else 1)
    check_int(m.n_heads, "model.n_heads", lo=1)
    if m.d_model % m.n_heads:
        raise ValueError(f"model.d_model: expected a multiple of n_heads = {m.n_heads}, got {m.d_model}")
    if m.d_ff is not None:
        check_int(m.d_ff, "model.d_ff", lo=1)
    check_int(m.max_len, "model.max_len", lo=1)
    check_int(m.bag_window, "model.bag_window", lo=1)
    check_choice(dcfg.source, "data.source", ("latent", "zipf", "text"))
    check_int(dcfg.n_tokens, "data.n_tokens", lo=2)
    check_number(dcfg.zipf_s, "data.zipf_s", lo=0.0, lo_open=True)
    check_number(dcfg.beta, "data.beta", lo=0.0)
    check_number(dcfg.eval_fraction, "data.eval_fraction", lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    if dcfg.source == "text" and not dcfg.path:
        raise ValueError("data.path: expected a text file for source='text', got None")
    check_int(config.batch_size, "batch_size", lo=1)
    check_int(config.context, "context", lo=1)
    if config.context > m.max_len:
        raise ValueError(f"context: expected at most model.max_len = {m.max_len}, got {config.context}")
    check_int(config.steps, "steps", lo=1)
    check_number(config.lr, "lr", lo=0.0, lo_open=True)
    check_int(config.warmup, "warmup", lo=0)
    check_number(config.min_lr_ratio, "min_lr_ratio", lo=0.0, hi=1.0)
    check_number(config.weight_decay, "weight_decay", lo=0.0)
    check_number(config.grad_clip, "grad_clip", lo=0.0, lo_open=True)
    for k in ("probe_every", "eval_every", "eval_batches", "checkpoint_every"):
        check_int(getattr(config, k), k, lo=1)
    check_int(config.seed, "seed", lo=0)
    check_number(config.b1, "b1", lo=0.0, hi=1.0, hi_open=True)
    check_number(config.b2, "b2", lo=0.0, hi=1.0, hi_open=True)
    check_number(config.blowup_factor, "blowup_factor", lo=1.0, lo_open=True)
    check_number(config.collapse_fraction, "collapse_fraction", lo=0.0, hi=1.0)
    check_number(config.unigram_margin, "unigram_margin", lo=0.0)
    check_act_spec(config.quant_act, "quant_act")
    for k in ("quant_linear", "quant_embed", "quant_head", "quant_act", "quant_grad"):
        _validate_spec(getattr(config, k), k)
    d = m.d_model
    _check_group(config.quant_embed, "quant_embed", {"d_model": d})
    _check_group(config.quant_head, "quant_head", {"d_model": d})
    _check_group(config.quant_linear, "quant_linear",
                 {"d_model": d, "d_ff": m.ff_dim} if m.kind == "transformer" else {"d_model": d})
    _check_group(config.quant_act, "quant_act",
                 {"d_model": d, "d_ff": m.ff_dim} if m.kind == "transformer" else {"d_model": d})
    return config


def check_act_spec(spec: QuantSpec | None, name: str) -> None:
    """Activation scales must be per token (``row``) or per block of a token's features (``group``).

    A scale shared across tokens (``tensor``/``column``) lets later tokens, and other sequences of the batch,
    change earlier positions' outputs: a causal leak, and evaluation results that depend on batching.
    """
    if spec is not None and spec.format not in ("mxfp4", "nvfp4") and spec.granularity not in ("row", "group"):
        raise ValueError(
            f"{name}.granularity: expected 'row' (per token) or 'group' (blocks of a token's features), got "
            f"{spec.granularity!r}; a scale shared across tokens would let later tokens and other sequences of "
            "the batch change earlier positions' outputs (a causal leak)"
        )


def check_data_length(config: TrainConfig, n_train: int, n_eval: int) -> None:
    """The context must fit in the data: a training window needs ``context + 1`` tokens, and so does evaluation."""
    need = config.context + 1
    if n_train < need or n_eval < need:
        raise ValueError(
            f"context: expected a context shorter than the data, got context={config.context} with "
            f"{n_train} training and {n_eval} held-out tokens (each window needs context + 1 = {need})"
        )


# ---------------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------------


def parse_bits(text: str) -> QuantSpec | None:
    """``"fp32"`` → None; ``"4"`` → int4 per tensor; ``"nf4"`` → Qwix nf4 per row."""
    text = str(text).strip().lower()
    if text in ("fp32", "32", "none", "float32"):
        return None
    if text.isdigit():
        bits = int(text)
        check_int(bits, "bits", lo=1, hi=16)
        return QuantSpec(bits=bits)
    if text in FORMATS:
        return QuantSpec(format=text, granularity="row")
    raise ValueError(f"bits: expected fp32, an integer 1..16 or one of {', '.join(FORMATS)}, got {text!r}")


def with_bits(
    config: TrainConfig,
    bits: QuantSpec | None,
    *,
    act: QuantSpec | None | str = "keep",
    grad: QuantSpec | None | str = "keep",
) -> TrainConfig:
    """``config`` with weights, embedding and head all quantized by ``bits`` (None = full precision).

    ``act``/``grad``: a spec, None, or ``"keep"`` to leave the config's own.
    """
    kw: dict[str, Any] = {"quant_linear": bits, "quant_embed": bits, "quant_head": bits}
    if act != "keep":
        kw["quant_act"] = act
    if grad != "keep":
        kw["quant_grad"] = grad
    return dataclasses.replace(config, **kw)


PRESETS: dict[str, TrainConfig] = {
    # 50 steps on a 2-core CPU in well under a minute, compilation included.
    "tiny": TrainConfig(
        model=ModelConfig(vocab_size=256, d_model=64, n_layers=2, n_heads=4, max_len=32),
        data=DataConfig(source="latent", n_tokens=60_000, n_topics=32, doc_len=128),
        batch_size=16, context=32, steps=50, lr=3e-3, warmup=5,
        probe_every=10, eval_every=25, eval_batches=2, checkpoint_every=25,
    ),
    # The CPU scale of the experiment figure (about a minute per run).
    "quick": TrainConfig(
        model=ModelConfig(vocab_size=1024, d_model=64, n_layers=2, n_heads=4, max_len=64),
        data=DataConfig(source="latent", n_tokens=400_000, n_topics=64, doc_len=256),
        batch_size=32, context=64, steps=300, lr=3e-3, warmup=30,
        probe_every=50, eval_every=100, eval_batches=4, checkpoint_every=200,
    ),
    # GPT-2-small shape, for a GPU.
    "full": TrainConfig(
        model=ModelConfig(vocab_size=16384, d_model=768, n_layers=12, n_heads=12, max_len=512),
        data=DataConfig(source="latent", n_tokens=50_000_000, n_topics=512, doc_len=512),
        batch_size=64, context=512, steps=20_000, lr=6e-4, warmup=1000,
        probe_every=500, eval_every=500, eval_batches=16, checkpoint_every=1000,
    ),
}
