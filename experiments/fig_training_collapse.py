"""Figure: training a small language model at decreasing precision — does the embedding spectrum flatten, and
does the representation collapse?

Weights of every linear layer, the embedding table and the output head are fake-quantized at b bits (straight-
through gradients, float32 master weights; activations at ``act_bits``), on a latent-semantic Zipfian corpus and
on real text. One curve per precision: held-out loss, the stable rank and rank-decay exponent of the quantized
embedding, the hidden-state effective rank and anisotropy. A second axis varies the scale groups and the
rounding at 3 and 4 bits. Every run is one grid point, trained by :func:`zipfrmt.nn.experiment.train_cached`:
its Orbax checkpoints live under ``results/runs/`` (shared with every experiment that trains the same config),
so an interrupted run resumes mid-training. Collapse is judged by :func:`zipfrmt.nn.collapse_verdict` against
the fp32 run of the same corpus and seed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from experiments.outputs import DATA_DIR, figure_path
from zipfrmt import sweep

NAME = "fig_training_collapse"
KIND = "figure"
CAPTION = ("Training a small transformer language model with weights, embedding and head quantized at b bits: "
           "held-out loss, stable rank and rank exponent of the quantized embedding, hidden-state effective "
           "rank and anisotropy over training, one curve per precision.")

#: Real texts this figure trains on when ``data_dir`` holds them (a synthetic corpus is always used).
TEXTS = {"tinyshakespeare": "tinyshakespeare.txt", "wikitext2": "wikitext2-valid.txt"}


def _base(kind: str) -> Any:
    from zipfrmt.nn import PRESETS, DataConfig, ModelConfig, TrainConfig

    if kind == "test":
        return TrainConfig(
            model=ModelConfig(vocab_size=128, d_model=32, n_layers=1, n_heads=2, max_len=16),
            data=DataConfig(source="latent", n_tokens=20_000, n_topics=8, doc_len=64),
            batch_size=8, context=16, steps=12, lr=3e-3, warmup=2,
            probe_every=6, eval_every=6, eval_batches=1, checkpoint_every=6,
        )
    if kind == "quick":
        return TrainConfig(
            model=ModelConfig(vocab_size=512, d_model=64, n_layers=2, n_heads=4, max_len=32),
            data=DataConfig(source="latent", n_tokens=200_000, n_topics=32, doc_len=128),
            batch_size=16, context=32, steps=150, lr=3e-3, warmup=15,
            probe_every=15, eval_every=15, eval_batches=2, eval_windows=256, checkpoint_every=75,
        )
    return PRESETS["full"]


@dataclasses.dataclass(frozen=True)
class Config:
    """Precisions × corpora × seeds, then scale groups × rounding at a few bit widths.

    ``precisions``: ``"fp32"`` or a bit width as a string. ``corpora``: ``"latent"`` and names of
    :data:`TEXTS` (skipped, with a note in the report, when ``data_dir`` does not hold them). ``seeds`` are the
    training seeds on the synthetic corpus, ``text_seeds`` on real text, ``text_precisions`` the precisions
    there (``None``: all; fewer at quick scale, for time). ``granularity``: the weights' scale groups on the
    bits axis (per row: the runs are shared with the ``forward`` mechanism of ``fig_collapse_map``).
    """

    base: Any
    precisions: tuple[str, ...] = ("fp32", "8", "6", "4", "3", "2")
    text_precisions: tuple[str, ...] | None = None
    granularity: str = "row"
    corpora: tuple[str, ...] = ("latent", "tinyshakespeare")
    seeds: tuple[int, ...] = (0, 1)
    text_seeds: tuple[int, ...] = (0,)
    act_bits: int = 8
    axis2_bits: tuple[int, ...] = (3,)
    axis2_granularities: tuple[str, ...] = ("tensor", "row", "group32")
    axis2_roundings: tuple[str, ...] = ("nearest", "stochastic")
    axis2_corpus: str = "latent"
    data_dir: str = str(DATA_DIR)


SCALES = {
    "test": Config(base=_base("test"), precisions=("fp32", "4", "2"), corpora=("latent",), seeds=(0,),
                   axis2_bits=(3,), axis2_granularities=("row",), axis2_roundings=("stochastic",)),
    "quick": Config(base=_base("quick"), precisions=("fp32", "4", "2"), text_precisions=("fp32", "4", "2")),
    "full": Config(base=_base("full"), corpora=("latent", "tinyshakespeare", "wikitext2"), seeds=(0, 1, 2),
                   text_seeds=(0, 1, 2), axis2_bits=(4, 3),
                   axis2_granularities=("tensor", "row", "group32", "group128")),
}


def points(config: Config) -> list[dict[str, Any]]:
    """The runs, fp32 first for each corpus and seed (it is the reference of the collapse criterion)."""
    corpora = [c for c in config.corpora if c == "latent" or (Path(config.data_dir) / TEXTS[c]).is_file()]
    out = [{"corpus": c, "precision": p, "granularity": config.granularity, "rounding": "nearest", "seed": s,
            "axis": "bits"}
           for c in corpora for s in (config.seeds if c == "latent" else config.text_seeds)
           for p in (config.precisions if c == "latent" else config.text_precisions or config.precisions)]
    for b in config.axis2_bits:
        for g in config.axis2_granularities:
            for r in config.axis2_roundings:
                if (g, r) == (config.granularity, "nearest") and str(b) in config.precisions:
                    continue  # already on the first axis
                out.append({"corpus": config.axis2_corpus, "precision": str(b), "granularity": g, "rounding": r,
                            "seed": config.seeds[0], "axis": "scales"})
    return out


def train_config(config: Config, point: dict[str, Any]) -> Any:
    """The :class:`zipfrmt.nn.TrainConfig` of one run."""
    from zipfrmt.nn import with_bits
    from zipfrmt.nn.experiment import corpus_config
    from zipfrmt.quant import QuantSpec, parse_granularity

    corpus = point["corpus"] if point["corpus"] == "latent" else Path(config.data_dir) / TEXTS[point["corpus"]]
    cfg = corpus_config(dataclasses.replace(config.base, seed=int(point["seed"])), corpus)
    if point["precision"] == "fp32":
        return with_bits(cfg, None, act=None)
    gran, size = parse_granularity(point["granularity"])
    spec = QuantSpec(bits=int(point["precision"]), granularity=gran, group_size=size, rounding=point["rounding"])
    return with_bits(cfg, spec, act=QuantSpec(bits=config.act_bits, granularity="row"))


def run(config: Config, *, root: str | Path = "results", force: bool = False, progress: bool = True) -> Any:
    from zipfrmt.nn.experiment import train_cached

    root = Path(root)
    forced: set[Any] = set()

    def compute(point: dict[str, Any]) -> Any:
        cfg = train_config(config, point)
        reference = None
        if point["precision"] != "fp32":
            reference = train_cached(train_config(config, dict(point, precision="fp32")), root)
        hist = train_cached(cfg, root, reference=reference, force=force and cfg not in forced)
        forced.add(cfg)
        ds = hist.copy()
        for key in ("status", "reason", "unigram_entropy", "unigram_loss", "stopped_at", "n_params",
                    "tokens_per_step"):
            ds[key] = ((), hist.attrs[key])
        ds.attrs = {}
        return ds

    ds = sweep.run_grid(NAME, config, points(config), compute, root=root, force=force, progress=progress,
                        dim="run")
    return ds


# ---------------------------------------------------------------------------------------------------------
# Reading the result
# ---------------------------------------------------------------------------------------------------------


def _label(ds: Any, i: int) -> str:
    p = str(ds["precision"].values[i])
    return "fp32" if p == "fp32" else f"int{p}"


def summary_rows(ds: Any) -> list[dict[str, Any]]:
    """One row per run: its labels, final measures and status."""
    from zipfrmt.plots import embedding_in_use, last_finite

    finals = {k: last_finite(ds[k].values) for k in ("eval_loss", "perplexity", "emb_k_star_measured",
                                                      "emb_k_star_predicted", "hidden_effective_rank",
                                                      "hidden_anisotropy", "emb_zero_fraction_q")}
    finals["emb_stable_rank_q"] = last_finite(embedding_in_use(ds, "stable_rank").values)
    finals["emb_rank_exponent_q"] = last_finite(embedding_in_use(ds, "rank_exponent").values)
    rows = []
    for i in range(ds.sizes["run"]):
        row = {k: ds[k].values[i].item() for k in ("corpus", "precision", "granularity", "rounding", "seed", "axis")}
        row.update({k: float(v[i]) for k, v in finals.items()})
        row["status"] = str(ds["status"].values[i])
        row["reason"] = str(ds["reason"].values[i])
        row["unigram_entropy"] = float(ds["unigram_entropy"].values[i])
        row["unigram_loss"] = float(ds["unigram_loss"].values[i])
        rows.append(row)
    return rows


def render(ds: Any, out_dir: str | Path) -> list[Path]:
    from zipfrmt import plots

    return plots.training_collapse(ds, figure_path(out_dir, NAME))


def describe(ds: Any) -> str:
    rows = summary_rows(ds)
    main = [r for r in rows if r["axis"] == "bits"]
    corpora = list(dict.fromkeys(r["corpus"] for r in main))
    parts = []
    for corpus in corpora:
        by_prec: dict[str, list[dict[str, Any]]] = {}
        for r in main:
            if r["corpus"] == corpus:
                by_prec.setdefault(r["precision"], []).append(r)
        cells = []
        for prec, rs in by_prec.items():
            loss = np.nanmean([r["eval_loss"] for r in rs])
            sr = np.nanmean([r["emb_stable_rank_q"] for r in rs])
            label = "fp32" if prec == "fp32" else f"{prec}-bit"
            cells.append(f"{label}: loss {loss:.3f}, embedding stable rank {sr:.3g}")
        n_seeds = len(by_prec.get("fp32", [])) or 1
        h_uni = float(np.nanmean([r["unigram_loss"] for r in main if r["corpus"] == corpus]))
        parts.append(f"On the {corpus} corpus ({n_seeds} seed{'s' if n_seeds > 1 else ''}, unigram loss on the "
                     "evaluation windows "
                     f"{h_uni:.3f} nats) — " + "; ".join(cells) + ".")
    low_bits = min(int(p) for p in {r["precision"] for r in main} - {"fp32"})
    fp = [r for r in main if r["precision"] == "fp32"]
    low = [r for r in main if r["precision"] == str(low_bits)]
    verdict = ""
    if fp and low:
        sr_fp, sr_lo = (np.nanmean([r["emb_stable_rank_q"] for r in rs]) for rs in (fp, low))
        exp_fp, exp_lo = (np.nanmean([r["emb_rank_exponent_q"] for r in rs]) for rs in (fp, low))
        zeros = np.nanmean([r["emb_zero_fraction_q"] for r in low])
        verdict = (f" At {low_bits} bits the stable rank of the quantized embedding rises to {sr_lo:.3g} from "
                   f"{sr_fp:.3g} at fp32 ({sr_lo / sr_fp:.2g}×), the rise the theory predicts. Its rank exponent "
                   f"(over every nonzero singular value) goes from {exp_fp:.3g} to {exp_lo:.3g}"
                   + (f": it does **not** fall — at this width {zeros:.0%} of the table rounds to zero (the dead "
                      "zone), and the smallest singular values drop towards zero instead of being lifted to a noise "
                      "floor."
                      if exp_lo >= exp_fp else ", the flattening the theory predicts."))
    collapsed = [r for r in main if r["status"] == "collapsed"]
    diverged = [r for r in rows if r["status"] == "diverged"]
    if collapsed:
        margins = {c: float(np.nanmean([r["unigram_loss"] - r["eval_loss"] for r in fp if r["corpus"] == c]))
                   for c in corpora}
        listed = "; ".join(f"{r['corpus']} {'fp32' if r['precision'] == 'fp32' else r['precision'] + '-bit'} seed "
                           f"{r['seed']}: {r['reason']}" for r in collapsed)
        verdict += (f" {len(collapsed)} of {len(main)} runs meet the collapse criterion ({listed}); the fp32 runs "
                    "of the same corpora end only " + ", ".join(f"{margins[c]:.3f}" for c in
                                                            dict.fromkeys(r["corpus"] for r in collapsed))
                    + " nats below the unigram loss, so at this training length this is a weak signal, not "
                    "the collapse the paper describes.")
    else:
        verdict += (f" None of the {len(main)} runs collapsed: with the forward pass quantized (float32 master "
                    "weights, straight-through gradients), collapse does **not** reproduce at this scale; the "
                    "collapse map below switches on the other mechanisms one by one.")
    if diverged:
        verdict += f" {len(diverged)} run(s) diverged."
    axis2 = [r for r in rows if r["axis"] == "scales"]
    extra = ""
    if axis2:
        best = min(axis2, key=lambda r: r["eval_loss"])
        worst = max(axis2, key=lambda r: r["eval_loss"])
        extra = (f" Across scale groups and rounding at {', '.join(sorted({r['precision'] for r in axis2}))} bits, "
                 f"the best held-out loss is {best['eval_loss']:.3f} ({best['precision']}-bit {best['granularity']} "
                 f"{best['rounding']}) and the worst {worst['eval_loss']:.3f} ({worst['precision']}-bit "
                 f"{worst['granularity']} {worst['rounding']}).")
    return " ".join(parts) + verdict + extra
