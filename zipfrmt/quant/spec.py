"""``QuantSpec``: what one quantization is, as a value and as text.

A spec names a **format** from the registry (:data:`zipfrmt.quant.formats.FORMATS`) — ``int`` (the package's
uniform quantizer at ``bits`` bits) or a real low-precision format (``fp8_e4m3``, ``fp8_e5m2``, ``nf4``,
``mxfp4``, ``nvfp4``) — and how its scales are shared (the **scale groups**), clipped and rounded. It is a
frozen, hashable dataclass (a static argument of jit-compiled functions, a cache key) with a canonical text
form that parses back to an equal spec::

    int4-tensor          int3-group32            int4-row-stochastic     int2-row-asymmetric-mse
    nf4                  nf4-group64             fp8_e4m3-tensor         mxfp4          nvfp4

The grammar is ``HEAD[-GRANULARITY][-SCHEME][-CLIP][-ROUNDING]``: ``HEAD`` is ``int<b>`` or a format name;
``GRANULARITY`` is ``tensor``, ``row`` (one scale per row: per token for an embedding, per output channel
for a linear kernel), ``column`` or ``group<g>`` (blocks of ``g`` consecutive entries along a row);
``SCHEME`` ``symmetric``/``asymmetric``; ``CLIP`` ``absmax``, ``mse``, ``percentile`` (99.9) or
``percentile<p>``; ``ROUNDING`` ``nearest``/``stochastic``. The tokens after the head may come in any order;
the canonical form (:attr:`QuantSpec.label`, also ``str(spec)``) writes them in this order and leaves out
defaults — except that an ``int`` spec always names its scale groups (``int4`` alone parses as
``int4-tensor``). A format with fixed blocks (``mxfp4``: 32, ``nvfp4``: 16) takes no granularity.

Conventions: ``docs/conventions.md`` (the quantizer) and ``docs/quantization.md`` (the vocabulary, the
registry, and how to add a format).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np

from zipfrmt.checks import check_choice, check_int, check_number, describe
from zipfrmt.quant.formats import CLIPS, FORMATS, GRANULARITIES, ROUNDINGS, SCHEMES

__all__ = ["QuantSpec", "as_spec", "check_spec_shape", "parse_granularity"]

_DEFAULT_PERCENTILE = 99.9


def parse_granularity(text: str) -> tuple[str, int | None]:
    """``"row"`` → ``("row", None)``; ``"group32"`` → ``("group", 32)``."""
    text = str(text).strip()
    if text in ("tensor", "row", "column"):
        return text, None
    if text.startswith("group") and text[5:].isdigit() and int(text[5:]) > 0:
        return "group", int(text[5:])
    raise ValueError(f"granularity: expected tensor, row, column or groupN (e.g. group32), got {text!r}")


def granularity_label(granularity: str, group_size: int | None) -> str:
    """``("group", 32)`` → ``"group32"``; other granularities as they are."""
    return f"group{group_size}" if granularity == "group" else granularity


@dataclasses.dataclass(frozen=True)
class QuantSpec:
    """How to quantize one matrix (or one family of tensors): a hashable value with a canonical text form.

    Attributes:
      bits: bits per value. Required for ``format="int"`` (1…16; 1 is the sign quantizer); a named format
        fixes it (``nf4`` → 4, ``fp8_e4m3`` → 8), and giving another value is an error.
      granularity: scale groups — ``tensor``, ``row``, ``column`` or ``group`` (with ``group_size``).
        Default: the format's (``int``: ``tensor``; ``fp8_*``/``nf4``: ``row``); a format with fixed blocks
        sets ``group`` with its block length.
      group_size: block length along a row for ``granularity="group"``.
      rounding: ``nearest`` (ties to even) or ``stochastic`` (unbiased; ``int`` only; needs a PRNG key).
      scheme: ``symmetric`` (absmax-style, zero exactly representable) or ``asymmetric`` (``int`` only).
      clip: ``absmax``, ``percentile`` (at ``percentile``) or ``mse`` (``int`` only).
      percentile: the percentile of ``|w|`` used by ``clip="percentile"`` (0 < p ≤ 100).
      format: a name in :data:`zipfrmt.quant.formats.FORMATS`.

    Example:
      >>> from zipfrmt.quant import QuantSpec
      >>> QuantSpec(bits=3, granularity="group", group_size=32).label
      'int3-group32'
      >>> QuantSpec.parse("int4-row-stochastic") == QuantSpec(bits=4, granularity="row", rounding="stochastic")
      True
      >>> str(QuantSpec.parse("nf4"))
      'nf4'
    """

    bits: int | None = None
    granularity: str | None = None
    group_size: int | None = None
    rounding: str = "nearest"
    scheme: str = "symmetric"
    clip: str = "absmax"
    percentile: float = _DEFAULT_PERCENTILE
    format: str = "int"

    def __post_init__(self) -> None:
        fmt = FORMATS.get(self.format) if isinstance(self.format, str) else None
        if fmt is None:
            raise ValueError(f"format: expected one of {', '.join(map(repr, FORMATS))}, got {describe(self.format)}")
        if fmt.bits is None:
            if self.bits is None:
                raise ValueError(f"bits: expected an integer in [1, 16] for format {self.format!r}, got None")
            check_int(self.bits, "bits", lo=1, hi=16)
        elif self.bits is None:
            object.__setattr__(self, "bits", fmt.bits)
        elif self.bits != fmt.bits:
            raise ValueError(f"bits: format {self.format!r} stores {fmt.bits}-bit values, got bits={self.bits!r}")
        object.__setattr__(self, "bits", int(self.bits))
        if fmt.block is not None:
            if self.granularity not in (None, "group") or self.group_size not in (None, fmt.block):
                raise ValueError(
                    f"granularity: format {self.format!r} has fixed scale blocks of {fmt.block} along a row and takes "
                    f"no granularity, got granularity={self.granularity!r}, group_size={self.group_size!r}")
            object.__setattr__(self, "granularity", "group")
            object.__setattr__(self, "group_size", fmt.block)
        elif self.granularity is None:
            object.__setattr__(self, "granularity", fmt.default_granularity)
        check_choice(self.granularity, "granularity", GRANULARITIES)
        if self.granularity == "group":
            if self.group_size is None:
                raise ValueError("group_size: expected an integer for granularity='group', got None")
            check_int(self.group_size, "group_size", lo=1)
        elif self.group_size is not None:
            raise ValueError(f"group_size: only used with granularity='group', got group_size={self.group_size!r} "
                             f"with granularity={self.granularity!r}")
        check_choice(self.scheme, "scheme", SCHEMES)
        check_choice(self.clip, "clip", CLIPS)
        check_choice(self.rounding, "rounding", ROUNDINGS)
        check_number(self.percentile, "percentile", lo=0.0, hi=100.0, lo_open=True)
        for name, allowed in (("scheme", fmt.schemes), ("clip", fmt.clips), ("rounding", fmt.roundings)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: format {self.format!r} supports {', '.join(map(repr, allowed))}, "
                                 f"got {getattr(self, name)!r}")
        if self.bits == 1 and self.format == "int":
            if self.scheme != "symmetric":
                raise ValueError("scheme: the 1-bit sign quantizer is symmetric; expected 'symmetric' for bits=1")
            if self.rounding != "nearest":
                raise ValueError("rounding: the 1-bit sign quantizer has no stochastic variant; expected 'nearest'")

    # -----------------------------------------------------------------------------------------------------
    # Text form
    # -----------------------------------------------------------------------------------------------------

    @property
    def label(self) -> str:
        """The canonical text, e.g. ``int4-row``, ``int3-group32-stochastic``, ``nf4``, ``mxfp4``."""
        fmt = FORMATS[self.format]
        parts = [f"int{self.bits}" if self.format == "int" else self.format]
        gran = granularity_label(self.granularity, self.group_size)
        if fmt.block is None and (self.format == "int" or self.granularity != fmt.default_granularity):
            parts.append(gran)
        if self.scheme != "symmetric":
            parts.append(self.scheme)
        if self.clip == "percentile":
            parts.append("percentile" if self.percentile == _DEFAULT_PERCENTILE else f"percentile{self.percentile!r}")
        elif self.clip != "absmax":
            parts.append(self.clip)
        if self.rounding != "nearest":
            parts.append(self.rounding)
        return "-".join(parts)

    @property
    def granularity_label(self) -> str:
        """``tensor``, ``row``, ``column`` or ``group<g>``."""
        return granularity_label(self.granularity, self.group_size)

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, text: str) -> QuantSpec:
        """The spec a text names (see the module docstring for the grammar); ``parse(s).label == s`` for the
        canonical forms. Errors name the text and the token that could not be read."""
        if isinstance(text, QuantSpec):
            return text
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"spec: expected a quantization spec such as 'int4-row', 'int3-group32' or 'nf4', "
                             f"got {describe(text)}")
        tokens = text.strip().lower().split("-")
        head, rest = tokens[0], tokens[1:]
        kw: dict[str, Any] = {}
        m = re.fullmatch(r"int(\d+)", head)
        if m:
            kw.update(format="int", bits=int(m.group(1)))
        elif head in FORMATS and head != "int":
            kw["format"] = head
        else:
            names = ", ".join(f for f in FORMATS if f != "int")
            raise ValueError(f"spec {text!r}: expected it to start with int<bits> (e.g. int4) or a format "
                             f"({names}), got {head!r}")
        for tok in rest:
            field, value = _token(tok, text)
            if field in kw and field != "format":
                raise ValueError(f"spec {text!r}: {field} given twice (token {tok!r})")
            if field == "granularity":
                kw["granularity"], kw["group_size"] = value
            elif field == "clip":
                kw["clip"], pct = value
                if pct is not None:
                    kw["percentile"] = pct
            else:
                kw[field] = value
        try:
            return cls(**kw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"spec {text!r}: {exc}") from None

    def replace(self, **changes: Any) -> QuantSpec:
        """A copy with some fields changed (validated like a new spec)."""
        return dataclasses.replace(self, **changes)


def _token(tok: str, text: str) -> tuple[str, Any]:
    """(field, value) of one token after the head of a spec text."""
    if tok in GRANULARITIES and tok != "group" or re.fullmatch(r"group\d+", tok):
        try:
            return "granularity", parse_granularity(tok)
        except ValueError:
            pass
    if tok in SCHEMES:
        return "scheme", tok
    if tok in ROUNDINGS:
        return "rounding", tok
    if tok in ("absmax", "mse"):
        return "clip", (tok, None)
    m = re.fullmatch(r"percentile(\d+(?:\.\d+)?)?", tok)
    if m:
        return "clip", ("percentile", float(m.group(1)) if m.group(1) else None)
    raise ValueError(
        f"spec {text!r}: cannot read the token {tok!r}; expected a granularity (tensor, row, column, groupN), a "
        "scheme (symmetric, asymmetric), a clip (absmax, mse, percentile, percentileP) or a rounding (nearest, "
        "stochastic)")


def as_spec(spec: Any, name: str = "spec", **overrides: Any) -> QuantSpec:
    """A :class:`QuantSpec` from a spec, its text, or a bit width plus keyword fields.

    ``as_spec("int4-row")``, ``as_spec(QuantSpec(...))``, ``as_spec(4, granularity="row")`` and
    ``as_spec(None, bits=4, granularity="row")`` all give the same spec; ``overrides`` are only allowed with a
    bit width or None (a spec or its text is complete).
    """
    if spec is None:
        return QuantSpec(**overrides)
    if isinstance(spec, QuantSpec | str):
        if overrides:
            raise TypeError(f"{name}: keyword fields ({', '.join(sorted(overrides))}) go with a bit width, not with "
                            f"a spec or its text; got {describe(spec)}")
        return QuantSpec.parse(spec) if isinstance(spec, str) else spec
    if isinstance(spec, int | np.integer) and not isinstance(spec, bool):
        return QuantSpec(bits=int(spec), **overrides)
    raise TypeError(f"{name}: expected a QuantSpec, its text (e.g. 'int4-row', 'nf4') or a bit width, "
                    f"got {describe(spec)}")


def check_spec_shape(spec: QuantSpec, shape: tuple[int, ...], name: str = "W", *, exact_groups: bool = False) -> None:
    """Checks that ``spec`` can quantize a matrix whose rows have length ``shape[-1]``, before any work.

    The uniform quantizer pads a ragged last group (``group_size`` up to the row length); Qwix formats, fixed
    blocks and ``exact_groups=True`` (the training layers) need the group size to divide the row length.
    """
    d = int(shape[-1])
    fmt = FORMATS[spec.format]
    if spec.granularity != "group":
        return
    g = spec.group_size
    if fmt.block is not None:
        if d % g:
            raise ValueError(f"{name}: format {spec.format!r} needs rows whose length is a multiple of its block "
                             f"{g}, got rows of length {d}")
        return
    if g > d:
        raise ValueError(f"{name}: spec {spec.label!r} has groups of {g} entries, longer than the rows of length {d}; "
                         f"expected group_size ≤ {d}")
    if (exact_groups or spec.format != "int") and d % g:
        why = "the training layers need whole groups" if exact_groups else f"format {spec.format!r} needs it"
        raise ValueError(f"{name}: spec {spec.label!r} needs a group size that divides the row length {d} "
                         f"({why}), got {g}")
