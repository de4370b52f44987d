"""The low-precision training experiment: bit width (and granularity × rounding) against collapse.

Axis 1 — bits ∈ {fp32, 8, 6, 4, 3, 2} for linear weights + embedding + head (activations at 8 bits per token,
fp32 for the fp32 baseline), several seeds, on a latent-semantic Zipfian corpus and on a text file.
Axis 2 — at 3 and 4 bits: granularity (tensor, row, group) × rounding (nearest, stochastic).

Each run is :func:`zipfrmt.nn.train` in its own directory under ``out_root`` (so a finished run is read back
from its checkpoint instead of recomputed, and an interrupted sweep resumes), judged for collapse against
the fp32 run of the same corpus and seed. :func:`summary_table` gives one row per run with the final values.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from zipfrmt import sweep
from zipfrmt.nn.collapse import judge
from zipfrmt.nn.config import PRESETS, DataConfig, TrainConfig, config_to_json, with_bits
from zipfrmt.nn.history import HISTORY_FILE, last, read_history
from zipfrmt.nn.train import train
from zipfrmt.quant import QuantSpec
from zipfrmt.tables import markdown_table

__all__ = ["bits_settings", "granularity_settings", "run_dir", "run_experiment", "summarize", "summary_table",
           "train_cached"]


def run_dir(root: str | Path, config: TrainConfig, extra: dict[str, Any] | None = None) -> Path:
    """Where the run of ``config`` lives under a results root: ``root/runs/KEY``.

    ``KEY`` hashes the config (and ``extra``: anything else that changes the run, such as an S2D transform's
    settings) with the package version, so every experiment that trains the same config shares one run.
    """
    key = {"train": config_to_json(config), **(extra or {})}
    return Path(root) / "runs" / sweep.config_hash("train", key)


def train_cached(
    config: TrainConfig,
    root: str | Path,
    *,
    reference: xr.Dataset | None = None,
    extra_transform: Any = None,
    extra: dict[str, Any] | None = None,
    force: bool = False,
    progress: bool = False,
) -> xr.Dataset:
    """The history of the run of ``config`` under ``root`` (:func:`run_dir`): read back when it has finished,
    else trained — resumed from its last checkpoint if it was interrupted.

    ``reference`` (the fp32 run of the same setting) re-judges a finished run for collapse
    (:func:`zipfrmt.nn.collapse_verdict`) without restoring anything; ``extra_transform``/``extra`` as in
    :func:`zipfrmt.nn.train` and :func:`run_dir`; ``force`` deletes the run and trains it again.
    """
    out = run_dir(root, config, extra)
    if force:
        shutil.rmtree(out, ignore_errors=True)
    ds = _read_finished(out)
    if ds is not None:  # finished: read back
        if ds.attrs["status"] == "ok" and reference is not None:
            ds.attrs["status"], ds.attrs["reason"] = judge(ds, reference, config)
        return ds
    return train(config, out, progress=progress, extra_transform=extra_transform, reference=reference)


def _read_finished(out: Path) -> xr.Dataset | None:
    """The history of a finished run in ``out``; None when there is none, it is unfinished, or it is unreadable
    (truncated or corrupt: warned about, and rebuilt by :func:`zipfrmt.nn.train`, which resumes from the run's
    last checkpoint and writes the history afresh)."""
    path = out / HISTORY_FILE
    if not path.exists():
        return None
    try:
        ds = read_history(out)
        status = str(ds.attrs["status"])
    except Exception as exc:  # noqa: BLE001 - any unreadable history is rebuilt, whatever the reason
        warnings.warn(f"run history {path} is unreadable ({type(exc).__name__}: {exc}); rebuilding it from the "
                      "run's checkpoints (or training again if there are none)", sweep.CacheWarning, stacklevel=3)
        return None
    return ds if status in ("ok", "collapsed", "diverged") else None

ACT8 = QuantSpec(bits=8, granularity="row")


def bits_settings(bits: Sequence[int | None] = (None, 8, 6, 4, 3, 2), granularity: str = "row"
                  ) -> list[tuple[str, QuantSpec | None, QuantSpec | None]]:
    """(label, weight spec, activation spec) per bit width; None = fp32 everywhere."""
    out = []
    for b in bits:
        if b is None:
            out.append(("fp32", None, None))
        else:
            out.append((f"int{b}", QuantSpec(bits=b, granularity=granularity), ACT8))
    return out


def granularity_settings(bits: Sequence[int] = (3, 4), group_size: int = 16
                         ) -> list[tuple[str, QuantSpec | None, QuantSpec | None]]:
    """3 and 4 bits × (tensor, row, group) × (nearest, stochastic), activations at 8 bits."""
    out = []
    for b in bits:
        for gran in ("tensor", "row", "group"):
            for rnd in ("nearest", "stochastic"):
                spec = QuantSpec(bits=b, granularity=gran, group_size=group_size if gran == "group" else None,
                                 rounding=rnd)
                out.append((spec.label, spec, ACT8))
    return out


def corpus_config(base: TrainConfig, corpus: str) -> TrainConfig:
    """``latent``/``zipf`` synthetic corpora, or a path to a text file (word tokens)."""
    if corpus in ("latent", "zipf"):
        return dataclasses.replace(base, data=dataclasses.replace(base.data, source=corpus))
    return dataclasses.replace(base, data=DataConfig(source="text", path=str(corpus), tokenizer="word",
                                                     eval_fraction=base.data.eval_fraction))


def summarize(ds: xr.Dataset) -> dict[str, Any]:
    """Final values of one run's history (NaN where a probe never ran)."""
    def first_probe(name: str) -> float:
        v = ds[name].values
        v = v[np.isfinite(v)]
        return float(v[0]) if v.size else math.nan

    keys = ("eval_loss", "perplexity", "emb_stable_rank", "emb_stable_rank_q", "emb_effective_rank",
            "emb_effective_rank_q", "emb_rank_exponent", "emb_rank_exponent_q", "emb_esd_alpha",
            "emb_k_star_predicted", "emb_k_star_measured", "emb_stable_rank_q_sketch", "emb_k_star_sketch",
            "emb_widrow", "hidden_effective_rank", "hidden_anisotropy")
    row = {k: last(ds, k) for k in keys}
    row["emb_stable_rank_init"] = first_probe("emb_stable_rank")
    row["status"] = ds.attrs["status"]
    row["reason"] = ds.attrs["reason"]
    row["unigram_entropy"] = float(ds.attrs["unigram_entropy"])
    return row


def run_experiment(
    base: TrainConfig | None = None,
    settings: Iterable[tuple[str, QuantSpec | None, QuantSpec | None]] | None = None,
    *,
    seeds: Sequence[int] = (0, 1),
    corpora: Sequence[str] = ("latent",),
    out_root: str | Path | None = None,
    progress: bool = False,
    log: Any = None,
) -> tuple[list[dict[str, Any]], dict[tuple[str, str, int], xr.Dataset]]:
    """Runs every (corpus, setting, seed); returns (summary rows, histories keyed by (corpus, label, seed)).

    The fp32 run of each (corpus, seed) is run first (added if ``settings`` lacks it) and is the reference of
    the collapse criterion's rank part.
    """
    base = PRESETS["quick"] if base is None else base
    settings = list(settings) if settings is not None else bits_settings()
    if not any(lbl == "fp32" for lbl, _, _ in settings):
        settings = [("fp32", None, None), *settings]
    settings.sort(key=lambda s: s[0] != "fp32")
    rows, hists = [], {}
    for corpus in corpora:
        cname = corpus if corpus in ("latent", "zipf") else Path(corpus).stem
        for seed in seeds:
            ref = None
            for label, w, a in settings:
                cfg = with_bits(corpus_config(dataclasses.replace(base, seed=seed), corpus), w, act=a)
                out = None if out_root is None else Path(out_root) / cname / f"{label}-seed{seed}"
                ds = train(cfg, out, progress=progress, reference=ref)
                if label == "fp32":
                    ref = ds
                elif ds.attrs["status"] == "ok" and ref is not None:
                    ds.attrs["status"], ds.attrs["reason"] = judge(ds, ref, cfg)
                hists[(cname, label, seed)] = ds
                row = {"corpus": cname, "setting": label, "seed": seed, **summarize(ds)}
                rows.append(row)
                if log is not None:
                    log(row)
    return rows, hists


COLUMNS = ("corpus", "setting", "seed", "eval_loss", "perplexity", "emb_stable_rank", "emb_stable_rank_q",
           "emb_rank_exponent", "emb_k_star_predicted", "emb_k_star_measured", "emb_k_star_sketch",
           "hidden_effective_rank", "hidden_anisotropy", "status")


def summary_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] = COLUMNS) -> str:
    """A Markdown table of summary rows."""
    return markdown_table(columns, [[r.get(c) for c in columns] for r in rows])


def main() -> None:  # pragma: no cover - the CPU run behind docs/training.md
    import argparse
    import json
    import sys

    ap = argparse.ArgumentParser(description="the quantized-training experiment (docs/training.md)")
    ap.add_argument("--axis", choices=("bits", "granularity"), default="bits")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--corpora", default="latent")
    ap.add_argument("--out", default="results/nn")
    args = ap.parse_args()
    settings = bits_settings() if args.axis == "bits" else granularity_settings()
    seeds = [int(s) for s in args.seeds.split(",")]

    def log(row: dict[str, Any]) -> None:
        print(json.dumps(row), flush=True)

    rows, _ = run_experiment(PRESETS[args.preset], settings, seeds=seeds, corpora=args.corpora.split(","),
                             out_root=args.out, log=log)
    print(summary_table(rows), file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    main()
