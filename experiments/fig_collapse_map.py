"""Figure and table: where low-precision training of a small LM collapses, and whether spectral flattening is
the cause.

Every mechanism of :mod:`zipfrmt.nn.lab` (forward weights, the embedding alone, activation cotangents, weight
gradients, master weights, optimizer state) is switched on alone at each precision, for each corpus, seed and
learning rate, against its fp32 twin. Then, for every (mechanism, precision) that collapsed or diverged in a
run whose twin did not, the controls are run at the same precision, seeds and learning rates: equal-energy
noise, stochastic rounding, a Hadamard rotation, and for master weights the embedding frozen at its float32
initialisation. Every run is one grid point of :func:`zipfrmt.sweep.run_grid`, trained by
:func:`zipfrmt.nn.experiment.train_cached` under ``results/runs/`` (the ``forward`` runs are
``fig_training_collapse``'s), so an interrupted map resumes run by run.

The figure: (a) the final held-out loss gap to fp32 per mechanism × precision, collapsed and diverged cells
marked; (b) dose–response — the gap against the fraction of the embedding's singular values below its
quantizer's noise edge, one point per run, mechanism by colour, controls hollow; (c) the time courses of the
failing runs: loss gap and the embedding and hidden-state probes against fp32, with the steps at which each
departs. ``paper/tables/fig_collapse_map.md`` lists every run that was tried.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from experiments import fig_training_collapse as ftc
from experiments.outputs import DATA_DIR, figure_path, fmt, write_table
from zipfrmt import sweep

NAME = "fig_collapse_map"
KIND = "figure"
CAPTION = ("Collapse map: final held-out loss gap to fp32 for each low-precision mechanism switched on alone "
           "(forward weights, embedding, activation cotangents, weight gradients, master weights, optimizer "
           "state) at each precision; the gap against the fraction of embedding singular values below the "
           "noise edge (controls hollow); time courses of the failing runs.")

#: How far above its fp32 twin a run's final held-out loss must be to count as failing in the map (nats),
#: besides a collapse or divergence verdict.
FAIL_GAP = 0.1


@dataclasses.dataclass(frozen=True)
class Config:
    """The map: ``mechanisms`` × ``precisions`` × corpora × ``seeds`` × ``lrs``; then ``controls`` at the
    precisions (of ``control_precisions``) where a mechanism failed.

    ``base`` is ``fig_training_collapse``'s training config at the same scale (so the ``forward`` mechanism at
    per-row scales and the fp32 twins are its runs). ``text_seeds`` are the seeds on real text; a mechanism's
    failure on any corpus triggers its controls on that corpus — a failure in any seed (``controls_when="any"``)
    or only one every seed shows (``"every"``; the quick scale, for time).
    """

    base: Any
    mechanisms: tuple[str, ...] = ("forward", "embed", "actgrad", "wgrad", "master", "opt")
    precisions: tuple[str, ...] = ("4", "2", "nf4")
    controls: tuple[str, ...] = ("noise", "stochastic", "hadamard", "frozen")
    control_precisions: tuple[str, ...] = ("2",)
    controls_when: str = "any"
    corpora: tuple[str, ...] = ("latent",)
    seeds: tuple[int, ...] = (0, 1)
    text_seeds: tuple[int, ...] = (0,)
    lrs: tuple[float, ...] = (3e-3,)
    data_dir: str = str(DATA_DIR)


#: The training config of the longer CPU scales behind docs/training.md: fig_training_collapse's quick model,
#: probed and evaluated every 10 steps (the quick scale of the report probes every 15, for time).
_LONG_BASE = dataclasses.replace(ftc.SCALES["quick"].base, probe_every=10, eval_every=10)

SCALES = {
    "test": Config(base=ftc.SCALES["test"].base, mechanisms=("forward", "actgrad", "master"), precisions=("2",),
                   controls=("noise", "frozen"), seeds=(0,), lrs=(3e-3,)),
    "quick": Config(base=ftc.SCALES["quick"].base, precisions=("2",), controls=("noise", "stochastic", "frozen"),
                    controls_when="every"),
    # The longer CPU scale behind docs/training.md (`python -m experiments.fig_collapse_map --scale long`): the
    # quick model (probed every 10 steps) and more — both corpora, every width, every control, a learning-rate axis.
    "long": Config(base=_LONG_BASE, precisions=("8", "4", "3", "2", "nf4"),
                   corpora=("latent", "tinyshakespeare"), seeds=(0, 1), text_seeds=(0, 1), lrs=(3e-3, 1e-2)),
    # A wider model with a longer Zipf tail (V = 2048, d = 128, 300 steps; its own fp32 twins, not
    # fig_training_collapse's runs) for the mechanisms that matter to the claim: does a larger vocabulary make
    # the forward pass or the embedding fail? (docs/training.md, "A larger vocabulary")
    "vocab": Config(base=dataclasses.replace(
        _LONG_BASE, steps=300, warmup=30, checkpoint_every=150,
        model=dataclasses.replace(_LONG_BASE.model, vocab_size=2048, d_model=128),
        data=dataclasses.replace(_LONG_BASE.data, n_tokens=400_000, n_topics=64)),
        mechanisms=("forward", "embed", "actgrad"), precisions=("2",), controls=("noise", "stochastic")),
    "full": Config(base=ftc.SCALES["full"].base, precisions=("8", "6", "4", "3", "2", "nf4", "mxfp4"),
                   control_precisions=("4", "3", "2"), corpora=("latent", "tinyshakespeare", "wikitext2"),
                   seeds=(0, 1, 2), text_seeds=(0, 1, 2), lrs=(3e-4, 6e-4, 1.2e-3)),
}


# ---------------------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------------------


def _corpora(config: Config) -> list[str]:
    return [c for c in config.corpora if c == "latent" or (Path(config.data_dir) / ftc.TEXTS[c]).is_file()]


def _seeds(config: Config, corpus: str) -> tuple[int, ...]:
    return config.seeds if corpus == "latent" else config.text_seeds


def train_config(config: Config, point: dict[str, Any]) -> Any:
    """The :class:`zipfrmt.nn.TrainConfig` of one run (``precision="fp32"``: the twin)."""
    from zipfrmt.nn.experiment import corpus_config
    from zipfrmt.nn.lab import mechanism_config

    corpus = point["corpus"] if point["corpus"] == "latent" else Path(config.data_dir) / ftc.TEXTS[point["corpus"]]
    base = dataclasses.replace(config.base, seed=int(point["seed"]), lr=float(point["lr"]))
    return mechanism_config(corpus_config(base, corpus), point["mechanism"], point["precision"], point["control"])


def _twin(point: dict[str, Any]) -> dict[str, Any]:
    """The fp32 twin of a run (with the frozen embedding for the ``frozen`` control)."""
    frozen = point["control"] == "frozen"
    return dict(point, mechanism="master" if frozen else "forward", precision="fp32",
                control="frozen" if frozen else "none")


def base_points(config: Config) -> list[dict[str, Any]]:
    """Phase 1: every mechanism at every precision, no control."""
    return [{"corpus": c, "seed": s, "lr": lr, "mechanism": m, "precision": p, "control": "none"}
            for c in _corpora(config) for s in _seeds(config, c) for lr in config.lrs
            for m in config.mechanisms for p in config.precisions]


def control_points(config: Config, phase1: Any) -> list[dict[str, Any]]:
    """Phase 2: the controls, for every (corpus, mechanism, precision, lr) that failed in phase 1 at a
    precision of ``control_precisions`` in any seed (``controls_when="any"``) or in every seed (``"every"``: the
    reading only reads controls of a failure every seed shows) — at that precision, for every seed."""
    from zipfrmt.nn.lab import applies

    if config.controls_when not in ("any", "every"):
        raise ValueError(f"controls_when: expected 'any' or 'every', got {config.controls_when!r}")
    verdicts: dict[tuple[Any, ...], list[bool]] = {}
    for i in range(phase1.sizes["run"]):
        r = {k: phase1[k].values[i].item() for k in ("corpus", "mechanism", "precision", "lr", "status", "gap",
                                                     "reason")}
        if r["precision"] in config.control_precisions:
            verdicts.setdefault((r["corpus"], r["mechanism"], r["precision"], r["lr"]), []).append(_triggers(r))
    seen = all if config.controls_when == "every" else any
    failing = {k for k, v in verdicts.items() if seen(v)}
    out = []
    for c, m, p, lr in sorted(failing, key=lambda t: (t[0], config.mechanisms.index(t[1]), t[2], t[3])):
        for ctrl in config.controls:
            if not applies(m, ctrl):
                continue
            out += [{"corpus": c, "seed": s, "lr": lr, "mechanism": m, "precision": p, "control": ctrl}
                    for s in _seeds(config, c)]
    return out


def _triggers(row: dict[str, Any]) -> bool:
    """Whether a phase-1 run calls for controls: any collapse or divergence verdict, or a gap above FAIL_GAP
    (conservative: verdicts at the criterion's edge run controls too)."""
    return row["status"] in ("collapsed", "diverged") or not (row["gap"] <= FAIL_GAP)


def _edge(row: dict[str, Any]) -> bool:
    """A collapse verdict at the criterion's edge: called collapsed by the unigram part alone while within
    FAIL_GAP of the fp32 twin — which means the twin itself ends less than FAIL_GAP + margin below the unigram
    loss (an undertrained reference), so a few hundredths of a nat flip the verdict."""
    reason = str(row.get("reason", ""))
    return (row["status"] == "collapsed" and row["gap"] <= FAIL_GAP and "unigram loss" in reason
            and "hidden effective rank" not in reason)


def _fails(row: dict[str, Any]) -> bool:
    """A failure in the map: diverged, a gap above FAIL_GAP, or a collapse verdict not at the criterion's edge."""
    return _triggers(row) and not _edge(row)


def _summaries(config: Config, points: list[dict[str, Any]], root: Path, force: bool, progress: bool, name: str,
               forced: set[Any]) -> Any:
    """The run summaries of ``points``, cached under ``name`` keyed by the config and the points (which depend on
    the texts found and, for the controls, on phase 1). ``forced``: the runs already retrained by ``force``."""
    from zipfrmt.nn.experiment import train_cached
    from zipfrmt.nn.lab import run_summary

    def train(cfg: Any, reference: Any = None) -> Any:
        hist = train_cached(cfg, root, reference=reference, force=force and cfg not in forced)
        forced.add(cfg)
        return hist

    def compute(point: dict[str, Any]) -> Any:
        import xarray as xr

        cfg = train_config(config, point)
        ref = train(train_config(config, _twin(point)))
        hist = train(cfg, ref)
        row = run_summary(hist, ref, cfg)
        steps = np.arange(config.base.steps + 1)
        curves = {k: ("step", np.asarray(hist[k].reindex(step=steps).values, np.float64))
                  for k in ("eval_loss", "hidden_effective_rank", "emb_stable_rank", "emb_stable_rank_q")}
        curves |= {f"fp32_{k}": ("step", np.asarray(ref[k].reindex(step=steps).values, np.float64))
                   for k in ("eval_loss", "hidden_effective_rank", "emb_stable_rank")}
        return xr.Dataset({**{k: ((), v) for k, v in row.items()}, **curves}, coords={"step": steps})

    return sweep.run_grid(name, _cache_key(config, points), points, compute, root=root, force=force,
                          progress=progress, dim="run")


def _cache_key(config: Config, points: list[dict[str, Any]]) -> dict[str, Any]:
    """What a phase's cached summaries are keyed by (:func:`run` and :func:`load_cached` both use it)."""
    return {"config": config, "points": points}


def _assemble(phase1: Any, phase2: Any | None) -> Any:
    """The result: phase 1's runs, then the controls' (if any), with the ``fails`` verdict of each run."""
    import xarray as xr

    if phase2 is not None:
        for ds in (phase1, phase2):
            for var in ds.variables.values():
                var.encoding = {}
        phase1 = xr.concat([phase1, phase2], dim="run", join="outer")
    return phase1.assign(fails=("run", [_fails(r) for r in rows(phase1)]))


def load_cached(config: Config, root: str | Path = "results") -> Any | None:
    """The result :func:`run` would return from its cache under ``root``, or ``None`` when either phase is not
    cached (nothing is computed)."""
    phase1 = sweep.load_cached(NAME, _cache_key(config, base_points(config)), root)
    if phase1 is None:
        return None
    controls = control_points(config, phase1)
    phase2 = None
    if controls:
        phase2 = sweep.load_cached(NAME + "_controls", _cache_key(config, controls), root)
        if phase2 is None:
            return None
    return _assemble(phase1, phase2)


def run(config: Config, *, root: str | Path = "results", force: bool = False, progress: bool = True) -> Any:
    root = Path(root)
    forced: set[Any] = set()  # shared fp32 twins are retrained once under force
    phase1 = _summaries(config, base_points(config), root, force, progress, NAME, forced)
    controls = control_points(config, phase1)
    phase2 = _summaries(config, controls, root, force, progress, NAME + "_controls", forced) if controls else None
    return _assemble(phase1, phase2)


# ---------------------------------------------------------------------------------------------------------
# Reading the result
# ---------------------------------------------------------------------------------------------------------

COLUMNS = ("corpus", "mechanism", "bits", "control", "seed", "lr", "loss", "fp32 loss", "gap", "status",
           "below-edge fraction", "below-edge predicted", "emb r_s / fp32", "hidden eff. rank / fp32",
           "push-down kept", "lead (emb, hidden)")


def rows(ds: Any) -> list[dict[str, Any]]:
    """One dict per run with its labels and summary numbers."""
    keys = [k for k in ds.data_vars if "step" not in ds[k].dims]
    out = []
    for i in range(ds.sizes["run"]):
        r = {k: ds[k].values[i].item() for k in ("corpus", "mechanism", "precision", "control", "seed", "lr")}
        r |= {k: ds[k].values[i].item() for k in keys}
        out.append(r)
    return out


def _lead(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{int(x):+d}"


def table_rows(ds: Any) -> list[list[str]]:
    out = []
    for r in rows(ds):
        out.append([r["corpus"], r["mechanism"], r["precision"], r["control"], str(r["seed"]), f"{r['lr']:g}",
                    fmt(r["loss"]), fmt(r["fp32_loss"]), fmt(r["gap"]), r["status"], fmt(r["below_edge"]),
                    fmt(r["below_edge_predicted"]), fmt(r["emb_stable_rank_ratio"]), fmt(r["hidden_rank_ratio"]),
                    fmt(r["pushdown_kept"]), f"{_lead(r['lead_emb'])}, {_lead(r['lead_hidden'])}"])
    return out


def render(ds: Any, out_dir: str | Path) -> list[Path]:
    from zipfrmt import plots

    paths = plots.collapse_map(ds, figure_path(out_dir, NAME))
    caption = ("Every run of the collapse map. gap = held-out loss − fp32 twin's (nats); status by the "
               "collapse criterion against the twin; below-edge fraction = share of the embedding's singular "
               "values below its quantizer's noise edge (0 also where no quantizer touches the embedding); "
               "lead = steps by which the embedding / hidden-state probe departed before the loss did.")
    paths += write_table(out_dir, NAME, COLUMNS, table_rows(ds), caption, align="llllrrrrrlrrrrrl")
    return paths


def _gap_spread(values: list[float]) -> str:
    """Mean ± half range of the finite gaps, and how many runs diverged (an infinite gap)."""
    n_inf = sum(1 for x in values if math.isinf(x))
    if n_inf == len(values):
        return "∞, diverged" if n_inf else "–"
    return _spread(values) + (f" ({n_inf} of {len(values)} diverged)" if n_inf else "")


def _spread(values: list[float], none: str = "–") -> str:
    """Mean ± half range of the finite values; ``none`` when there is no finite value."""
    v = [x for x in values if math.isfinite(x)]
    if not v:
        return none
    if len(v) == 1:
        return f"{v[0]:.3g}"
    return f"{np.mean(v):.3g} ± {(max(v) - min(v)) / 2:.2g}"


def describe(ds: Any) -> str:
    return _reading(rows(ds))


def _reading(rs: list[dict[str, Any]]) -> str:
    from zipfrmt.nn.lab import MECHANISMS

    base = [r for r in rs if r["control"] == "none"]
    groups: dict[tuple[str, str, str, float], list[dict[str, Any]]] = {}
    for r in base:
        groups.setdefault((r["corpus"], r["mechanism"], r["precision"], r["lr"]), []).append(r)
    failing = {k: g for k, g in groups.items() if any(_fails(r) for r in g)}
    n_ctrl = sum(r["control"] != "none" for r in rs)
    corpora = sorted({r["corpus"] for r in rs})
    text = [f"{len(rs)} runs ({len(base)} without a control, {n_ctrl} controls) on {', '.join(corpora)}; "
            f"every one is in the table. The fp32 twins "
            + ("all reached their plateau" if all(r["fp32_plateau"] for r in rs) else
               f"improved by up to {max(r['fp32_improvement'] for r in rs):.3f} nats over their last quarter "
               "(not all reached the 0.05-nat plateau of zipfrmt.nn.collapse.reached_plateau)") + "."]
    stuck = sorted({r["corpus"] for r in rs if r.get("fp32_at_unigram")})
    if stuck:
        text.append(f"On {', '.join(stuck)} some fp32 twins themselves end within the margin of the unigram "
                    "loss (the model is undertrained there at this scale), so the unigram part of the collapse "
                    "criterion is void against them and only the gap and the hidden rank count.")
    edge = [r for r in rs if _edge(r)]
    if edge:
        text.append(f"{len(edge)} run(s) ({', '.join(sorted({r['corpus'] for r in edge}))}) are called collapsed "
                    f"by the unigram part of the criterion while within {FAIL_GAP:g} nats of their fp32 twin, "
                    f"so the twin itself ends less than {FAIL_GAP:g} nats + the margin below the unigram loss "
                    "and a few hundredths of a nat flip the verdict: the criterion's edge. The table keeps the "
                    "verdict; the map does not count these runs as failures (they still triggered controls).")
    failures: list[str] = []
    ok = sorted({k[1] for k in groups} - {k[1] for k in failing}, key=list(MECHANISMS).index)
    if ok:
        text.append("No failure (every seed within "
                    f"{FAIL_GAP:g} nats of fp32, no collapse) for: {', '.join(ok)}.")
    for (corpus, mech, prec, lr), g in sorted(failing.items(), key=lambda kv: list(MECHANISMS).index(kv[0][1])):
        statuses = ", ".join(sorted({r["status"] for r in g}))
        n_fail = sum(_fails(r) for r in g)
        emb, hid = _spread([r["emb_stable_rank_ratio"] for r in g]), _spread([r["hidden_rank_ratio"] for r in g])
        gap = _gap_spread([r["gap"] for r in g]).replace(", diverged", "")
        line = (f"**{mech}** at {prec} ({corpus}, lr {lr:g}) fails in {n_fail} of {len(g)} seed(s): gap {gap} nats "
                f"({statuses}); stable rank of the table the forward pass reads ×{emb}, hidden effective rank "
                f"×{hid} of fp32, below-edge fraction {_spread([r['below_edge'] for r in g])}")
        push = [r["pushdown_kept"] for r in g if math.isfinite(r["pushdown_kept"])]
        if push:
            line += f", push-down mass kept {_spread(push)}"
        ctrls = [r for r in rs if r["control"] != "none" and (r["corpus"], r["mechanism"], r["precision"],
                                                              r["lr"]) == (corpus, mech, prec, lr)]
        by = {}
        for r in ctrls:
            by.setdefault(r["control"], []).append(r)
        if by:
            parts = []
            recovers = {}
            for ctrl, cg in by.items():
                recovers[ctrl] = not any(_fails(r) for r in cg)
                parts.append(f"{ctrl}: gap {_gap_spread([r['gap'] for r in cg])} "
                             f"({'recovers' if recovers[ctrl] else 'fails too'})")
            line += ". Controls — " + "; ".join(parts)
            if n_fail == len(g):  # read the controls only against a failure every seed shows
                line += _control_reading(mech, recovers)
            else:
                line += " — the failure is not consistent across seeds, so the controls are not read"
        elif n_fail < len(g):
            line += "; no controls were run: the failure is not consistent across seeds"
        leads = [r["lead_emb"] for r in g if math.isfinite(r["lead_emb"])]
        if leads:
            line += (f". The stored embedding's stable rank departed from fp32's {_spread(leads)} steps before the "
                     "loss did (negative: after)")
        failures.append("- " + line + ".")
    return "\n\n".join([" ".join(text), "\n".join(failures), _dose_reading(rs)] if failures else
                         [" ".join(text), _dose_reading(rs)])


def _control_reading(mechanism: str, recovers: dict[str, bool]) -> str:
    """What the controls of one (consistently) failing mechanism say about its cause."""
    out = []
    if recovers.get("stochastic"):
        out.append("stochastic rounding on the same grid recovers, so round-to-nearest's bias, not the grid's "
                   "resolution, makes it fail" if mechanism != "opt" else
                   "stochastic rounding of the stored moments recovers, so round-to-nearest's bias makes it fail")
    if recovers.get("noise"):
        out.append("noise of the same energy is harmless")
    elif "noise" in recovers:
        out.append("noise of the same energy fails too" + (" (for master weights it accumulates every step)"
                                                            if mechanism == "master" else ""))
    if "frozen" in recovers:
        out.append("with the embedding frozen at float32 it " +
                   ("recovers: the failure needs the embedding on the grid" if recovers["frozen"] else
                    "still fails: the failure does not need the embedding"))
    if "hadamard" in recovers:
        out.append("a Hadamard rotation " + ("recovers" if recovers["hadamard"] else "does not help"))
    return " — " + "; ".join(out) if out else ""


def _dose_reading(rs: list[dict[str, Any]]) -> str:
    """Does the failure follow the dose across mechanisms? Rank correlation and the two decisive counts.

    The dose is the share of the embedding's singular values below its quantizer's noise edge (0 where no
    quantizer touches the embedding). Failure without dose says flattening by a quantizer is not necessary;
    dose without failure says it is not sufficient. Whether it causes a given failure is the controls' question.
    """
    pts = [(r["below_edge"], r["gap"], r["mechanism"], _fails(r)) for r in rs if math.isfinite(r["below_edge"])]
    if len(pts) < 3:
        return "Too few runs for a dose–response reading."
    x = np.array([p[0] for p in pts])
    y = np.array([p[1] if math.isfinite(p[1]) else np.nan for p in pts])
    ok = np.isfinite(y)
    rho = _spearman(x[ok], y[ok])
    fail_no_dose = [p for p in pts if p[3] and p[0] == 0.0]
    dose_no_fail = [p for p in pts if not p[3] and p[0] >= 0.25]
    def by_mechanism(ps: list[Any]) -> str:
        counts: dict[str, int] = {}
        for p in ps:
            counts[p[2]] = counts.get(p[2], 0) + 1
        return " (" + ", ".join(f"{m} {n}" for m, n in sorted(counts.items())) + ")" if ps else ""

    out = (f"Dose–response over {len(pts)} runs: Spearman ρ(below-edge fraction, gap) = {rho:.2f} over the "
           f"{int(ok.sum())} that did not diverge. {len(fail_no_dose)} failing run(s) have dose 0 — none of the "
           f"embedding's spectrum below its quantizer's noise edge, or no quantizer on it{by_mechanism(fail_no_dose)}"
           f", and {len(dose_no_fail)} run(s) have ≥ 25% of the embedding's spectrum below the noise edge and do "
           f"not fail{by_mechanism(dose_no_fail)}. ")
    if fail_no_dose and dose_no_fail:
        out += ("The points do not fall on one curve: at this scale the embedding's spectral flattening by a "
                "quantizer is neither necessary nor sufficient for the failures; the controls above say what "
                "causes each.")
    elif fail_no_dose:
        out += "Failures happen without any flattening of the embedding: it is not necessary for them here."
    elif dose_no_fail:
        out += "Flattening happens without failure: it is not sufficient for failure here."
    else:
        out += "Failure and flattening go together here; the controls decide whether one causes the other."
    return out


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(spearmanr(x, y).statistic)


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - the CPU run behind docs/training.md
    """Runs the map at a scale (``long``: the one docs/training.md reads) and draws it into ``--out``."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description="the collapse map at any scale (docs/training.md: --scale long)")
    ap.add_argument("--scale", default="long", choices=tuple(SCALES))
    ap.add_argument("--results", default="results")
    ap.add_argument("--out", default=None,
                    help="where its figure and table go (default docs/collapse_map, docs/collapse_map_SCALE)")
    args = ap.parse_args(argv)
    out = args.out or ("docs/collapse_map" if args.scale == "long" else f"docs/collapse_map_{args.scale}")
    ds = run(SCALES[args.scale], root=args.results, progress=True)
    for p in render(ds, out):
        print(f"wrote {p}", file=sys.stderr)
    print(describe(ds))


if __name__ == "__main__":  # pragma: no cover
    main()
