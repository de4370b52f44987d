"""Configuration of a quantized training run: frozen, hashable dataclasses, presets and validation.

A run is one :class:`TrainConfig`: the model (:class:`ModelConfig`), the data (:class:`DataConfig`), the
optimiser schedule, and the quantization **rules** (:mod:`zipfrmt.nn.rules`): which
:class:`~zipfrmt.quant.QuantSpec` each site — the embedding table, the head, every linear kernel, the
activations entering and the gradients leaving every linear layer — is quantized with. No rule: float32.

Every config is JSON-able and back (:func:`config_to_json`, :func:`config_from_json`; specs as their text)
and hashable, so the experiments layer can key caches on it. :func:`validate` checks a whole config at the
public boundary, before any work starts, with errors that name the field, the value and the expectation.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from zipfrmt.checks import check_choice, check_int, check_number, describe
from zipfrmt.nn.controls import CONTROLS
from zipfrmt.nn.rules import FULL_PRECISION, Rules, check_rules, matches, param_sites, parse_rules
from zipfrmt.quant import QuantSpec

__all__ = [
    "MAX_SEED",
    "MIN_PROBE_VECTORS",
    "DataConfig",
    "ModelConfig",
    "PRESETS",
    "TrainConfig",
    "config_from_json",
    "config_to_json",
    "parse_precision",
    "validate",
    "with_bits",
    "with_quant",
]


#: The largest training or data seed (seeds are int32 on the device).
MAX_SEED = 2**31 - 1

#: The fewest hidden vectors the hidden-state probes are computed on (an anisotropy needs two).
MIN_PROBE_VECTORS = 2


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
    ``eval_windows`` fixed non-overlapping held-out windows (``None``: every window of the held-out stream, up to
    4096, rounded down to whole batches of ``eval_batches · batch_size``), Orbax checkpoints every
    ``checkpoint_every`` steps (when an output directory is given). The hidden states the probes read are those
    of the first ``eval_batches · batch_size`` windows.

    Divergence stops the run: a non-finite loss or gradient, or a training loss above ``blowup_factor · ln V``
    (three times the loss of a uniform guess by default). Collapse is recorded, not stopped on (see
    :mod:`zipfrmt.nn.collapse`): ``collapse_fraction`` is the fraction of the full-precision reference's
    hidden-state effective rank under which a quantized run counts as collapsed, ``unigram_margin`` (nats) how
    close to the training unigram's cross-entropy on the same windows the final held-out loss must be to count
    as "stuck at unigram statistics".

    Mechanisms and controls of the collapse experiment: ``quant`` rules on ``wgrad/…``, ``master/…`` and
    ``opt/…`` sites (:mod:`zipfrmt.nn.mechanisms`); ``control`` (:mod:`zipfrmt.nn.controls`: ``none``,
    ``noise``, ``stochastic``, ``hadamard``) applied at every quantized site; ``freeze``, weights (``embed``,
    ``pos``, ``head``, ``linear/<layer>`` patterns) that are never updated.

    Quantization: ``quant`` holds the rules (``(pattern, spec)`` pairs, first match wins; see
    :mod:`zipfrmt.nn.rules`), e.g. ``parse_rules("embed=int2-row,linear=int4-row,act=int8-row")``. A tied
    head no rule names follows ``embed``; activation scales must be per token (``row``) or per ``group``.
    Integer specs go through :func:`zipfrmt.quant.fake_quant` with a clipped straight-through gradient; real
    formats through Qwix, also straight-through.
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
    quant: Rules = ()
    control: str = "none"
    freeze: tuple[str, ...] = ()
    probe_every: int = 50
    eval_every: int = 50
    eval_batches: int = 4
    eval_windows: int | None = None
    checkpoint_every: int = 100
    seed: int = 0
    blowup_factor: float = 3.0
    collapse_fraction: float = 0.5
    unigram_margin: float = 0.05


# ---------------------------------------------------------------------------------------------------------
# JSON round trip
# ---------------------------------------------------------------------------------------------------------


def config_to_json(config: TrainConfig) -> str:
    """The config as canonical JSON (sorted keys; rules as ``[pattern, spec text or null]``): equal configs give
    equal strings."""
    d = dataclasses.asdict(config)
    d["quant"] = [[p, None if spec is None else spec.label] for p, spec in config.quant]
    return json.dumps(d, sort_keys=True)


def _section(value: Any, name: str, cls: type) -> Any:
    """A nested config section (``model``/``data``) from its JSON object, unknown keys an error."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"{name}: expected an object of {cls.__name__} fields, got {describe(value)}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(value) - names
    if unknown:
        raise ValueError(f"{name}: unknown fields {sorted(unknown)}; expected a subset of {sorted(names)}")
    return cls(**value)


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Inverse of :func:`config_to_json` after ``json.loads`` (unknown keys, at the top level or in ``model``
    and ``data``, are an error). ``freeze`` may also be one string: a pattern, or patterns separated by commas
    as ``zipfrmt train --freeze`` takes them. The result is not validated: :func:`validate` checks the values."""
    if not isinstance(d, dict):
        raise TypeError(f"config: expected an object of TrainConfig fields (a dict), got {describe(d)}")
    d = dict(d)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"config: unknown fields {sorted(unknown)}; expected a subset of {sorted(names)}")
    if "model" in d:
        d["model"] = _section(d["model"], "model", ModelConfig)
    if "data" in d:
        d["data"] = _section(d["data"], "data", DataConfig)
    if "quant" in d:
        d["quant"] = parse_rules(d["quant"])
    if "freeze" in d:
        freeze = d["freeze"]
        if isinstance(freeze, str):
            d["freeze"] = tuple(p.strip() for p in freeze.split(",") if p.strip())
        elif isinstance(freeze, (list, tuple)):
            d["freeze"] = tuple(freeze)
        # anything else is left for validate(), which names the field
    return TrainConfig(**d)


def config_from_json(text: str) -> TrainConfig:
    """Inverse of :func:`config_to_json`."""
    return config_from_dict(json.loads(text))


# ---------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------


def validate(config: Any) -> TrainConfig:
    """Checks a whole :class:`TrainConfig` and returns it; raises before any work starts.

    Raises ValueError/TypeError naming the field, e.g. ``model.d_model: expected a multiple of n_heads = 3,
    got 64`` or ``quant: site linear/blocks/0/mlp/fc: spec 'int4-group48' needs a group size that divides …``.
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
    if not isinstance(m.tie_embeddings, bool):
        raise TypeError(f"model.tie_embeddings: expected true or false, got {describe(m.tie_embeddings)}")
    check_choice(dcfg.source, "data.source", ("latent", "zipf", "text"))
    check_int(dcfg.n_tokens, "data.n_tokens", lo=2)
    check_number(dcfg.zipf_s, "data.zipf_s", lo=0.0, lo_open=True)
    check_number(dcfg.beta, "data.beta", lo=0.0)
    check_number(dcfg.eval_fraction, "data.eval_fraction", lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    check_int(dcfg.data_seed, "data.data_seed", lo=0, hi=MAX_SEED)
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
    check_int(config.seed, "seed", lo=0, hi=MAX_SEED)
    check_number(config.b1, "b1", lo=0.0, hi=1.0, hi_open=True)
    check_number(config.b2, "b2", lo=0.0, hi=1.0, hi_open=True)
    check_number(config.blowup_factor, "blowup_factor", lo=1.0, lo_open=True)
    check_number(config.collapse_fraction, "collapse_fraction", lo=0.0, hi=1.0)
    check_number(config.unigram_margin, "unigram_margin", lo=0.0)
    if config.eval_windows is not None:
        check_int(config.eval_windows, "eval_windows", lo=1)
    n_probe = probe_windows(config) * config.context
    if n_probe < MIN_PROBE_VECTORS:
        raise ValueError(
            f"eval_batches, batch_size, context: expected at least {MIN_PROBE_VECTORS} hidden vectors for the "
            f"hidden-state probes (min(eval_windows, eval_batches·batch_size)·context), got {n_probe} "
            f"(eval_batches={config.eval_batches}, batch_size={config.batch_size}, context={config.context}, "
            f"eval_windows={config.eval_windows}); an anisotropy or rank of fewer vectors is undefined")
    check_rules(config.quant, m, "quant")
    check_choice(config.control, "control", CONTROLS)
    if not isinstance(config.freeze, tuple) or not all(isinstance(p, str) for p in config.freeze):
        raise TypeError(f"freeze: expected a tuple of weight patterns (e.g. ('embed',)), got {describe(config.freeze)}")
    names = param_sites(m)
    for p in config.freeze:
        if not any(matches(p, n) for n in names):
            raise ValueError(f"freeze: pattern {p!r} matches no weight; weights are {', '.join(names)}")
    return config


def probe_windows(config: TrainConfig, available: int | None = None) -> int:
    """How many held-out windows the hidden-state probes read: the first evaluation chunk, ``eval_batches ·
    batch_size`` windows, or fewer when ``eval_windows`` (or the ``available`` windows of the data) are fewer."""
    n = config.eval_batches * config.batch_size
    if config.eval_windows is not None:
        n = min(n, config.eval_windows)
    return n if available is None else min(n, available)


def check_data_length(config: TrainConfig, n_train: int, n_eval: int) -> None:
    """The context must fit in the data: a training window needs ``context + 1`` tokens, and so does evaluation;
    the held-out windows must give the hidden-state probes at least :data:`MIN_PROBE_VECTORS` vectors."""
    need = config.context + 1
    if n_train < need or n_eval < need:
        raise ValueError(
            f"context: expected a context shorter than the data, got context={config.context} with "
            f"{n_train} training and {n_eval} held-out tokens (each window needs context + 1 = {need})"
        )
    n_probe = probe_windows(config, n_eval // need) * config.context
    if n_probe < MIN_PROBE_VECTORS:
        raise ValueError(
            f"data.eval_fraction: expected a held-out stream giving the hidden-state probes at least "
            f"{MIN_PROBE_VECTORS} hidden vectors, got {n_eval} held-out tokens: {n_eval // need} window(s) of "
            f"context + 1 = {need}, {n_probe} vector(s)"
        )


# ---------------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------------


def parse_precision(text: str, name: str = "bits") -> QuantSpec | None:
    """``"fp32"`` → None; ``"4"`` → ``int4-tensor``; any spec text (``"int4-row"``, ``"nf4"``) → that spec."""
    text = str(text).strip().lower()
    if text in (*FULL_PRECISION, "32"):
        return None
    try:
        return QuantSpec(bits=int(text)) if text.isdigit() else QuantSpec.parse(text)
    except ValueError as exc:
        raise ValueError(f"{name}: expected fp32, a bit width 1..16 or a spec (int4-row, nf4, mxfp4 …): "
                         f"{exc}") from None


def with_quant(config: TrainConfig, rules: str | Rules | None) -> TrainConfig:
    """``config`` with its quantization rules replaced (text, pairs, or None for full precision)."""
    return dataclasses.replace(config, quant=parse_rules(rules))


def with_bits(
    config: TrainConfig,
    bits: QuantSpec | None,
    *,
    act: QuantSpec | None | str = "keep",
    grad: QuantSpec | None | str = "keep",
) -> TrainConfig:
    """``config`` with the weights — every linear kernel, the embedding and the head — quantized by ``bits``
    (None = full precision), and, unless ``"keep"``, the activations by ``act`` and the gradients by ``grad``.

    A shorthand for the rules ``linear=…, embed=…, head=…, act=…, grad=…``; rules for other sites are kept.
    """
    families = {"linear": bits, "embed": bits, "head": bits}
    if act != "keep":
        families["act"] = act
    if grad != "keep":
        families["grad"] = grad
    kept = tuple((p, s) for p, s in config.quant if p not in families)
    new = tuple((p, s) for p, s in families.items() if s is not None)
    return dataclasses.replace(config, quant=new + kept)


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
