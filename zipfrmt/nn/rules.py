"""Quantization rules: which :class:`~zipfrmt.quant.QuantSpec` each quantization site of a model gets.

*What* is quantized is said by rules, *how* by specs (as Qwix separates rules from quantizers). A rule is a
pair ``(pattern, spec)``; a model's **sites** are named by what they quantize and where:

=======================  ===================================================================  ============
site                     what                                                                 rows × width
=======================  ===================================================================  ============
``embed``                the embedding table ``E`` as the lookup reads it                     V × d
``head``                 the output head's weight (tied: the view of ``E`` it multiplies by)  V × d
``linear/<layer>``       a linear kernel, as ``Wᵀ`` (rows = output channels)                  d_out × d_in
``act/<layer>``          the input of a linear layer (or of the head), per token              tokens × d_in
``grad/<layer>``         the cotangent ``∂L/∂y`` flowing back into a layer's output           tokens × d_out
``wgrad/<param>``        a weight's gradient, before the optimiser sees it                    as the weight
``master/<param>``       the weight itself, stored on its grid: re-quantized after each step  as the weight
``opt/<param>``          the AdamW moments of a weight, stored quantized                      as the weight
=======================  ===================================================================  ============

``<layer>`` is the layer's path in the model, e.g. ``blocks/0/attn/qkv``, ``blocks/1/mlp/fc`` or ``head``;
``<param>`` names a weight matrix: ``embed``, ``pos`` (positions), ``head`` (an untied head) or
``linear/<layer>`` — laid out as the forward sites lay it (a kernel as ``Wᵀ``, rows = output channels). The
last three kinds are the training mechanisms of :mod:`zipfrmt.nn.mechanisms`.
A pattern matches a site when it equals the site, is a prefix of it at a ``/`` (``linear`` matches every
linear kernel, ``act`` every activation), or matches it as a glob (``linear/*/mlp/*``; ``*`` also matches
``/``). The **first** rule that matches a site decides; a rule whose spec is ``None`` (written ``fp32``)
keeps the site in full precision, so ``linear/blocks/0/*=fp32,linear=int4-row`` exempts the first block.
A site no rule matches is full precision — except a tied ``head``, which then follows ``embed`` (the head
multiplies by the very table the lookup reads).

Text form, for the command line and JSON: ``embed=int2-row,linear=int4-row,act=int8-row``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

from zipfrmt.checks import describe
from zipfrmt.quant import FORMATS, QuantSpec, check_spec_shape

__all__ = ["FULL_PRECISION", "KINDS", "PARAM_KINDS", "Rules", "check_rules", "format_rules", "matches",
           "param_sites", "parse_rules", "resolve", "sites", "spec_of"]

#: A rule set: ``((pattern, spec or None), …)``, first match wins.
Rules = tuple[tuple[str, QuantSpec | None], ...]

#: The kinds of site (the first component of a site's name).
KINDS = ("embed", "head", "linear", "act", "grad", "wgrad", "master", "opt")

#: The kinds whose sites are weight matrices of the parameter tree (``<kind>/<param>``).
PARAM_KINDS = ("wgrad", "master", "opt")

#: Spellings of "no quantization" in rule text.
FULL_PRECISION = ("fp32", "float32", "none")

#: A sentinel: no rule matched the site.
UNMATCHED: Any = object()


def parse_rules(text: str | Iterable[Any] | None) -> Rules:
    """Rules from text (``"embed=int2-row,linear=int4-row"``), from pairs, or ``None`` (no rules).

    Pairs may hold a :class:`~zipfrmt.quant.QuantSpec`, its text, or ``None``/``"fp32"`` for full precision.
    """
    if text is None:
        return ()
    if isinstance(text, str):
        pairs = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            if "=" not in part:
                raise ValueError(f"quant: expected rules PATTERN=SPEC separated by commas (e.g. "
                                 f"'embed=int2-row,linear=int4-row'), got {part!r} in {text!r}")
            pattern, spec = (x.strip() for x in part.split("=", 1))
            pairs.append((pattern, spec))
    else:
        try:
            pairs = [tuple(p) for p in text]
        except TypeError:
            raise TypeError(f"quant: expected rule text or (pattern, spec) pairs, got {describe(text)}") from None
    rules = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"quant: expected (pattern, spec) pairs, got {pair!r}")
        pattern, spec = pair
        if not isinstance(pattern, str) or not pattern.strip("/ "):
            raise ValueError(f"quant: expected a site pattern such as 'embed', 'linear' or 'act', got {pattern!r}")
        if spec is None or isinstance(spec, str) and spec.strip().lower() in FULL_PRECISION:
            rules.append((pattern, None))
            continue
        try:
            rules.append((pattern, QuantSpec.parse(spec) if isinstance(spec, str) else spec))
        except ValueError as exc:
            raise ValueError(f"quant: rule {pattern}={spec}: {exc}") from None
        if not isinstance(rules[-1][1], QuantSpec):
            raise TypeError(f"quant: rule {pattern!r}: expected a QuantSpec, its text or None, got {describe(spec)}")
    return tuple(rules)


def format_rules(rules: Rules) -> str:
    """The text form of rules (inverse of :func:`parse_rules`); ``""`` for no rules."""
    return ",".join(f"{p}={'fp32' if s is None else s.label}" for p, s in rules)


def matches(pattern: str, site: str) -> bool:
    """Whether ``pattern`` names ``site``: equal, a ``/``-prefix of it, or a glob matching it."""
    pattern = pattern.strip("/")
    return site == pattern or site.startswith(pattern + "/") or fnmatch.fnmatchcase(site, pattern)


def resolve(rules: Rules, site: str) -> QuantSpec | None | Any:
    """The spec of ``site`` under ``rules`` (first match), or :data:`UNMATCHED` when no rule names it."""
    for pattern, spec in rules:
        if matches(pattern, site):
            return spec
    return UNMATCHED


def spec_of(rules: Rules, site: str, *, tied_head: bool = True) -> QuantSpec | None:
    """The spec a site is quantized with (``None``: full precision), including the tied-head fallback."""
    spec = resolve(rules, site)
    if spec is UNMATCHED and site == "head" and tied_head:
        spec = resolve(rules, "embed")
    return None if spec is UNMATCHED else spec


def _layers(model: Any) -> list[tuple[str, int, int]]:
    """(path, d_in, d_out) of every linear layer of a model config but the head."""
    d = model.d_model
    out: list[tuple[str, int, int]] = []
    if model.kind == "transformer":
        for i in range(model.n_layers):
            out += [(f"blocks/{i}/attn/qkv", d, 3 * d), (f"blocks/{i}/attn/out", d, d),
                    (f"blocks/{i}/mlp/fc", d, model.ff_dim), (f"blocks/{i}/mlp/proj", model.ff_dim, d)]
    return out


def param_sites(model: Any) -> dict[str, tuple[tuple[str, ...], bool, tuple[int, int]]]:
    """The weight matrices of a model config: ``<param>`` → (path in the parameter dict, stored transposed,
    (rows, width) as a spec sees it). Biases, LayerNorm scales and offsets are not sites."""
    d, V = model.d_model, model.vocab_size
    out: dict[str, tuple[tuple[str, ...], bool, tuple[int, int]]] = {"embed": (("embed", "embedding"), False, (V, d))}
    if model.kind == "transformer":
        out["pos"] = (("pos",), False, (model.max_len, d))
    for path, d_in, d_out in _layers(model):
        out[f"linear/{path}"] = ((*path.split("/"), "kernel"), True, (d_out, d_in))
    if not model.tie_embeddings:
        out["head"] = (("head", "kernel"), True, (V, d))
    return out


def sites(model: Any) -> dict[str, tuple[int | None, int]]:
    """Every quantization site of a :class:`~zipfrmt.nn.config.ModelConfig`: name → (rows, width) of the
    matrix the spec sees (rows ``None`` for token rows, whose number varies)."""
    d, V = model.d_model, model.vocab_size
    out: dict[str, tuple[int | None, int]] = {"embed": (V, d), "head": (V, d)}
    layers = _layers(model)
    for path, d_in, d_out in layers:
        out[f"linear/{path}"] = (d_out, d_in)
    for path, d_in, d_out in [*layers, ("head", d, V)]:
        out[f"act/{path}"] = (None, d_in)
        out[f"grad/{path}"] = (None, d_out)
    for kind in PARAM_KINDS:
        for name, (_, _, shape) in param_sites(model).items():
            out[f"{kind}/{name}"] = shape
    return out


def check_act_spec(spec: QuantSpec | None, name: str) -> None:
    """Activation scales must be per token (``row``) or per block of a token's features (``group``).

    A scale shared across tokens (``tensor``/``column``) lets later tokens, and other sequences of the batch,
    change earlier positions' outputs: a causal leak, and evaluation results that depend on batching.
    """
    if spec is not None and FORMATS[spec.format].block is None and spec.granularity not in ("row", "group"):
        raise ValueError(
            f"{name}: expected 'row' (per token) or 'group' (blocks of a token's features) scales, got "
            f"{spec.label!r}; a scale shared across tokens would let later tokens and other sequences of the batch "
            "change earlier positions' outputs (a causal leak)"
        )


def check_rules(rules: Any, model: Any, name: str = "quant") -> Rules:
    """Checks rules against a model config before any work: every pattern names at least one site, every
    site's spec fits its matrix (groups that divide the width), activation scales are per token.

    Errors name the rule and the site, e.g. ``quant: rule 'linaer=int4-row' matches no site; sites: …``.
    """
    if not isinstance(rules, tuple) or not all(isinstance(r, tuple) and len(r) == 2 for r in rules):
        raise TypeError(f"{name}: expected rules as a tuple of (pattern, spec) pairs (see nn.parse_rules), "
                        f"got {describe(rules)}")
    for pattern, spec in rules:
        if not isinstance(pattern, str) or (spec is not None and not isinstance(spec, QuantSpec)):
            raise TypeError(f"{name}: expected (pattern, QuantSpec or None) pairs, got ({pattern!r}, {describe(spec)})")
    table = sites(model)
    for pattern, spec in rules:
        if not any(matches(pattern, s) for s in table):
            kinds = ", ".join(KINDS)
            raise ValueError(f"{name}: rule '{pattern}={'fp32' if spec is None else spec.label}' matches no site of "
                             f"this model; sites are {kinds} with layer paths, e.g. "
                             f"{', '.join(list(table)[:6])}")
    for site, (rows, width) in table.items():
        spec = spec_of(rules, site, tied_head=model.tie_embeddings)
        if spec is None:
            continue
        where = f"{name}: site {site}"
        check_spec_shape(spec, (rows or 1, width), where, exact_groups=True)
        if site.startswith("act/"):
            check_act_spec(spec, where)
    return rules
