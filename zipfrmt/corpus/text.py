"""Real text: read a file, tokenize (words or bytes), and map types to ids by descending frequency."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from jaxtyping import Int32, Int64

from zipfrmt.checks import (
    check_choice,
    check_int,
    describe,
)

__all__ = ["TextCorpus", "read_text"]


class TextCorpus(NamedTuple):
    """A tokenized text (see :func:`read_text`)."""

    tokens: Int32[np.ndarray, " N"]
    """Token ids; id i is ``vocab[i]``; ids are ranks − 1 (descending frequency)."""
    vocab: tuple[str, ...] | tuple[bytes, ...]
    """Types in id order: words as ``str``; bytes as 1-byte ``bytes`` (a capped unknown: ``unk`` encoded)."""
    counts: Int64[np.ndarray, " V"]
    """``counts[i]`` = occurrences of id i (descending)."""
    tokenizer: str
    paths: tuple[str, ...]
    n_distinct: int
    """Distinct types in the text before any vocabulary cap."""
    unk_id: int | None
    """Id of the unknown type when the vocabulary was capped, else None."""


def _read_one(path: Any, binary: bool) -> str | bytes:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"paths: expected a str or os.PathLike path, or a list of them, got {describe(path)}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"paths: no such file: '{p}'")
    if p.is_dir():
        raise IsADirectoryError(f"paths: expected a text file, got a directory: '{p}'")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise OSError(f"paths: cannot read '{p}': {exc}") from exc
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is not part of the first word
    except UnicodeDecodeError as exc:
        if not binary:
            raise ValueError(f"paths: '{p}' is not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
        text = data.decode("latin-1")
    if not text.split():
        raise ValueError(f"paths: '{p}' is empty or whitespace-only; expected text")
    return data if binary else text


def read_text(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    tokenizer: str = "word",
    *,
    max_vocab: int | None = None,
    unk: str = "<unk>",
) -> TextCorpus:
    """Reads and tokenizes one or more UTF-8 text files into ids ranked by frequency.

    Tokenizers: ``"word"`` — whitespace-separated words (``str.split()``: punctuation attached to words stays,
    nothing is lower-cased, as for the pre-tokenized WikiText); ``"byte"`` — the raw bytes of the file (no
    decoding). Several files are read in order and their token streams concatenated (counted together).

    Ids are ranks − 1: id 0 is the most frequent type, ties broken by first occurrence. The vocabulary holds
    only the types that occur.

    ``max_vocab`` caps the vocabulary at exactly ``max_vocab`` types: the ``max_vocab − 1`` most frequent
    types other than ``unk`` are kept and every other occurrence becomes ``unk``; if the text already contains
    the literal ``unk`` token (WikiText's ``<unk>``), those occurrences are merged into the same id. The
    ``unk`` id is ranked by its merged count like any other type. A cap equal to the number of distinct types
    keeps them all (no ``unk`` entry is added).

    Raises:
      FileNotFoundError / IsADirectoryError / OSError naming the path; ValueError for an empty or
      whitespace-only file, a file that is not UTF-8 (word tokenizer), ``max_vocab < 2`` or larger than the
      number of distinct types (reported), an unknown tokenizer.
    """
    tokenizer = check_choice(tokenizer, "tokenizer", ("word", "byte"))
    if max_vocab is not None:
        max_vocab = check_int(max_vocab, "max_vocab", lo=2)
    if not isinstance(unk, str) or not unk or unk.split() != [unk]:
        raise ValueError(f"unk: expected a non-empty string without whitespace, got {describe(unk)}")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    elif not isinstance(paths, Sequence) or isinstance(paths, (bytes, bytearray)):
        raise TypeError(f"paths: expected a path or a list of paths, got {describe(paths)}")
    if len(paths) == 0:
        raise ValueError("paths: expected at least one file, got an empty list")
    binary = tokenizer == "byte"
    datas = [_read_one(path, binary) for path in paths]
    if binary:
        raw = np.frombuffer(b"".join(datas), dtype=np.uint8)
        byte_counts = np.bincount(raw, minlength=256)
        values, first = np.unique(raw, return_index=True)
        # types in first-occurrence order, so the stable sort below breaks ties by first occurrence
        freq: dict[Any, int] = {bytes((int(b),)): int(byte_counts[b]) for b in values[np.argsort(first)]}
        unk_type: Any = unk.encode("utf-8")
        n_tokens = raw.size
    else:
        words = [w for data in datas for w in data.split()]
        freq = Counter(words)  # insertion order = first occurrence
        unk_type = unk
        n_tokens = len(words)
    n_distinct = len(freq)
    capped = max_vocab is not None and max_vocab < n_distinct
    if max_vocab is not None and max_vocab > n_distinct:
        raise ValueError(
            f"max_vocab: expected at most the number of distinct {tokenizer} types in the text, "
            f"{n_distinct}, got {max_vocab}"
        )
    ranked = sorted(freq.items(), key=lambda wc: -wc[1])  # stable: ties keep first-occurrence order
    if capped:
        kept = [(w, c) for w, c in ranked if w != unk_type][: max_vocab - 1]
        ranked = sorted(kept + [(unk_type, n_tokens - sum(c for _, c in kept))], key=lambda wc: -wc[1])
    vocab = tuple(w for w, _ in ranked)
    counts = np.array([c for _, c in ranked], dtype=np.int64)
    index = {w: i for i, w in enumerate(vocab)}
    unk_id = index[unk_type] if capped else None
    if binary:
        lut = np.full(256, -1 if unk_id is None else unk_id, dtype=np.int32)
        for w, i in index.items():
            if len(w) == 1 and not (capped and w == unk_type):
                lut[w[0]] = i
        ids = lut[raw]
    elif capped:
        ids = np.fromiter((index.get(w, unk_id) for w in words), dtype=np.int32, count=n_tokens)
    else:
        ids = np.fromiter((index[w] for w in words), dtype=np.int32, count=n_tokens)
    return TextCorpus(
        tokens=ids,
        vocab=vocab,
        counts=counts,
        tokenizer=tokenizer,
        paths=tuple(str(p) for p in paths),
        n_distinct=n_distinct,
        unk_id=unk_id,
    )

