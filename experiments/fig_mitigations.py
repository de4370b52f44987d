"""Figure and table: what the published mitigations — SpecQuant and S2D — do to the spectral tail that uniform
quantization truncates, on matrices and on a small language model.

Three parts, one dataset:

A. **Matrices** (dims ``matrix × mitigation × bits``). :func:`zipfrmt.mitigate.compare.compare_on_matrix` on a
   power-law matrix (``σ_k = k^(−a)``, Haar vectors) and on the embedding table of the fp32 language model of
   ``fig_training_collapse`` (the same run directory under the same results root, so that run is shared): plain
   round-to-nearest per token (``rtn``), SpecQuant (``specquant``, a 16-bit low-frequency branch + quantized
   residual), and S2D then RTN (``s2d``). For the power-law matrix ``s2d`` is the gradient flow of the S2D
   penalty alone until ``σ_1`` halves; for the LM embedding it is the embedding of a model *trained with S2D
   from the start* (``extra_transform = s2d(...)`` on the embedding and every linear kernel), and its relative
   error is measured against that model's own float32 table. Measured truncation index ``k*``, stable rank,
   rank exponent and relative error, beside the random-matrix predictions of :mod:`zipfrmt.rmt`.
B. **Post-training quantization of the LM** (dims ``ptq_method × ptq_setting``): held-out perplexity at
   W4A4 and W3A4 (per-output-channel weights, per-token activations; embedding and tied head per token at the
   weight bits) for RTN, SpecQuant (each linear kernel replaced by SpecQuant's smoothed effective weight with
   its smoothing divisor λ set and weight fake-quant off, activations still quantized; the embedding table by
   its SpecQuant weight along tokens) and S2D-trained-then-RTN.
C. **Low-precision training with S2D on vs off** (dims ``train_run × step``): the fp32 and low-bit runs of
   ``fig_training_collapse`` (reused) beside the same configs trained with S2D; held-out loss, the embedding's
   stable rank, collapse status and the step from which the collapse criterion holds.

The S2D ``k`` per layer is chosen once by PCDR (:func:`zipfrmt.mitigate.s2d.select_k_pcdr`, τ and K_max of the
paper) on calibration activations of the trained fp32 model; if no layer reaches τ, every selected weight gets
a fixed ``k`` instead (``s2d_k_rule`` says which). Every run, with S2D or without, is trained by
:func:`zipfrmt.nn.experiment.train_cached` under ``root/runs/`` (shared with ``fig_training_collapse``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from experiments import fig_training_collapse as ftc
from experiments.outputs import figure_path, fmt, write_table
from zipfrmt import sweep

NAME = "fig_mitigations"
KIND = "figure"
CAPTION = ("Round-to-nearest vs SpecQuant vs S2D at 4, 3 and 2 bits: stable rank, truncation index k* and "
           "relative error of a power-law matrix and of a trained LM embedding (measured solid, RMT prediction "
           "dashed), post-training W4A4/W3A4 perplexity of the LM, and low-bit training with S2D on vs off.")

METHOD_LABELS = {"rtn": "RTN", "specquant": "SpecQuant", "s2d": "S2D + RTN"}
MATRIX_LABELS = {"power_law": "power-law", "lm_embedding": "LM embedding"}


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of the three parts.

    ``base`` and ``act_bits``: the training config of ``fig_training_collapse`` at the same scale (so its fp32
    and low-bit latent-corpus runs are shared). ``budget``: SpecQuant's mean fraction of rFFT coefficients kept,
    costing :func:`zipfrmt.mitigate.specquant.budget_bits` ``(budget, n)`` extra bits per weight on rows of length
    ``n`` (0.02: 0.26 bits on the 256-wide power-law matrix, 0.165 on the 64-wide quick-scale LM embedding; the
    dataset's ``overhead_bits`` and ``ptq_overhead_bits`` are the measured costs); ``specquant_alpha``: a fixed
    smoothing strength for the LM's linear layers instead of SpecQuant's per-layer search (None: search).
    ``s2d_*``: the paper's defaults (λ, n, m = every, τ, K_max); the power-law matrix's S2D flow runs until σ_1
    is ``s2d_sigma_ratio`` of its start.
    """

    base: Any
    act_bits: int = 8
    matrix_shape: tuple[int, int] = (2048, 256)
    matrix_a: float = 0.5
    matrix_seed: int = 0
    bits: tuple[int, ...] = (4, 3, 2)
    budget: float = 0.02
    importance: str = "entropy"
    specquant_alpha: float | None = None
    s2d_sigma_ratio: float = 0.5
    s2d_lam: float = 5e-4
    s2d_n: float = 2.0
    s2d_every: int = 100
    s2d_tau: float = 0.95
    s2d_k_max: int = 3
    s2d_k_fallback: int = 3
    ptq_weight_bits: tuple[int, ...] = (4, 3)
    ptq_act_bits: int = 4
    ptq_windows: int = 256
    calib_windows: int = 32
    train_bits: tuple[int, ...] = (3, 2)
    seed: int = 0


SCALES = {
    "test": Config(base=ftc.SCALES["test"].base, act_bits=ftc.SCALES["test"].act_bits, matrix_shape=(256, 64),
                   bits=(4, 2), specquant_alpha=0.5, ptq_weight_bits=(4,), ptq_windows=32, calib_windows=8,
                   train_bits=(2,), s2d_every=6),
    "quick": Config(base=ftc.SCALES["quick"].base, act_bits=ftc.SCALES["quick"].act_bits),
    "full": Config(base=ftc.SCALES["full"].base, act_bits=ftc.SCALES["full"].act_bits, matrix_shape=(16384, 768),
                   ptq_windows=1024, calib_windows=128),
}


# ---------------------------------------------------------------------------------------------------------
# Training runs (shared with fig_training_collapse, plus the S2D runs of this figure)
# ---------------------------------------------------------------------------------------------------------


def _lm_config(config: Config, precision: str) -> Any:
    """The ``fig_training_collapse`` run config of the latent corpus, seed ``config.seed``, at ``precision``."""
    cc = ftc.Config(base=config.base, act_bits=config.act_bits)
    return ftc.train_config(cc, {"corpus": "latent", "precision": precision, "granularity": cc.granularity,
                                 "rounding": "nearest", "seed": config.seed})


def _s2d_transform(config: Config, ks: dict[str, int]) -> Any:
    from zipfrmt.mitigate import lm as mlm
    from zipfrmt.mitigate import s2d

    return s2d.s2d(lam=config.s2d_lam, n=config.s2d_n, k=ks, every=config.s2d_every, param_filter=mlm.s2d_weights)


def _s2d_key(config: Config, ks: dict[str, int]) -> dict[str, Any]:
    """What, besides the training config, makes an S2D run (part of its run folder's key)."""
    return {"s2d": {"lam": config.s2d_lam, "n": config.s2d_n, "every": config.s2d_every, "k": dict(sorted(ks.items()))}}


def _calibration(cfg: Any, n: int) -> np.ndarray:
    from zipfrmt.nn.data import eval_windows, load_tokens

    return eval_windows(load_tokens(cfg).train, cfg.context, n)[:, :-1]


def _heldout(cfg: Any) -> np.ndarray:
    from zipfrmt.nn.data import load_tokens

    return load_tokens(cfg).eval


def _activations(model: Any, windows: np.ndarray) -> dict[str, np.ndarray]:
    from zipfrmt.nn import collect_activations

    return {k: np.asarray(v) for k, v in collect_activations(model, windows).items()}


class _LM:
    """The trained models and runs this figure needs, trained (or read back) on first use."""

    def __init__(self, config: Config, root: Path, force: bool):
        self.config, self.root, self.force = config, root, force
        self.cfg = _lm_config(config, "fp32")
        self._ks: tuple[dict[str, int], str] | None = None
        self._models: dict[str, Any] = {}
        self._forced: set[Any] = set()

    def history(self, precision: str, s2d_on: bool) -> Any:
        from zipfrmt.nn.experiment import train_cached

        cfg = _lm_config(self.config, precision)
        reference = None if precision == "fp32" else train_cached(self.cfg, self.root)
        if not s2d_on:
            return train_cached(cfg, self.root, reference=reference)
        ks, _ = self.ks()
        key = _s2d_key(self.config, ks)
        force = self.force and (cfg, "s2d") not in self._forced
        self._forced.add((cfg, "s2d"))
        return train_cached(cfg, self.root, reference=reference, extra_transform=_s2d_transform(self.config, ks),
                            extra=key, force=force)

    def model(self, which: str) -> Any:
        from zipfrmt.nn import trained_model
        from zipfrmt.nn.experiment import run_dir

        if which not in self._models:
            self.history("fp32", which == "s2d")
            if which == "fp32":
                self._models[which] = trained_model(self.cfg, run_dir(self.root, self.cfg))
            else:
                ks, _ = self.ks()
                self._models[which] = trained_model(self.cfg, run_dir(self.root, self.cfg, _s2d_key(self.config, ks)),
                                                    extra_transform=_s2d_transform(self.config, ks))
        return self._models[which]

    def ks(self) -> tuple[dict[str, int], str]:
        from zipfrmt.mitigate.lm import select_s2d_k

        if self._ks is None:
            model = self.model("fp32")
            acts = _activations(model, _calibration(self.cfg, self.config.calib_windows))
            c = self.config
            self._ks = select_s2d_k(model, acts, tau=c.s2d_tau, k_max=c.s2d_k_max, fallback=c.s2d_k_fallback)
        return self._ks


# ---------------------------------------------------------------------------------------------------------
# Part A: matrices
# ---------------------------------------------------------------------------------------------------------


def _compare(config: Config, W: Any, methods: tuple[str, ...], name: str) -> Any:
    from zipfrmt.mitigate.compare import compare_on_matrix

    return compare_on_matrix(W, config.bits, methods=methods, axis=1, budget=config.budget,
                             importance=config.importance, s2d_k=config.s2d_k_max,
                             s2d_sigma_ratio=config.s2d_sigma_ratio, s2d_n=config.s2d_n, name=name)


def _fp_vars(ds: Any, prefix: str) -> dict[str, float]:
    return {prefix + k: float(ds["fp_" + k]) for k in ("stable_rank", "effective_rank", "rank_exponent", "sigma_max")}


def part_power_law(config: Config) -> Any:
    import jax

    from zipfrmt.embeddings import power_law_matrix

    V, d = config.matrix_shape
    W = power_law_matrix(jax.random.key(config.matrix_seed), V, d, config.matrix_a)
    ds = _compare(config, W, ("rtn", "specquant", "s2d"), "power_law")
    ds.attrs = {}
    ds["s2d_source"] = "S2D penalty flow until sigma_1 halves, then RTN"
    return ds.expand_dims(matrix=["power_law"])


def part_embedding(config: Config, lm: _LM) -> Any:
    import xarray as xr

    E = np.asarray(lm.model("fp32").embed.embedding[...])
    E_s2d = np.asarray(lm.model("s2d").embed.embedding[...])
    base = _compare(config, E, ("rtn", "specquant"), "lm_embedding")
    trained = _compare(config, E_s2d, ("rtn",), "lm_embedding_s2d").assign_coords(mitigation=["s2d"])
    # the S2D model's error is against its own float32 table (it is a different model)
    trained["rel_error"] = trained["quant_rel_error"]
    grid = [v for v in base.data_vars if "mitigation" in base[v].dims]
    ds = xr.concat([base[grid], trained[grid]], dim="mitigation")
    for k, v in (_fp_vars(base, "fp_") | _fp_vars(trained, "s2d_fp_")).items():
        ds[k] = v
    ds["s2d_source"] = "embedding of the LM trained with S2D, then RTN"
    return ds.expand_dims(matrix=["lm_embedding"])


# ---------------------------------------------------------------------------------------------------------
# Part B: post-training quantization of the LM
# ---------------------------------------------------------------------------------------------------------


def part_ptq(config: Config, lm: _LM) -> Any:
    import xarray as xr

    from zipfrmt.mitigate.lm import specquant_model
    from zipfrmt.nn import evaluate

    cfg = lm.cfg
    toks = _heldout(cfg)
    calib = _calibration(cfg, config.calib_windows)
    base, s2d_model = lm.model("fp32"), lm.model("s2d")
    acts = _activations(base, calib)
    n = config.ptq_windows
    A = f"act=int{config.ptq_act_bits}-row"
    methods = ("rtn", "specquant", "s2d")
    settings = [f"W{b}A{config.ptq_act_bits}" for b in config.ptq_weight_bits]
    loss = np.full((len(methods), len(settings)), np.nan)
    overhead = np.zeros((len(methods), len(settings)))
    for j, b in enumerate(config.ptq_weight_bits):
        W = f"linear=int{b}-row,embed=int{b}-row,head=int{b}-row"
        for method, model in (("rtn", base), ("s2d", s2d_model)):
            loss[methods.index(method), j] = evaluate(model, toks, cfg, quant=f"{W},{A}", n_windows=n)["loss"]
        sq, overhead[1, j] = specquant_model(base, acts, b, config.budget, act_bits=config.ptq_act_bits,
                                             alpha=config.specquant_alpha, importance=config.importance)
        loss[1, j] = evaluate(sq, toks, cfg, quant=A, n_windows=n)["loss"]
    fp_loss = np.array([evaluate(m, toks, cfg, n_windows=n)["loss"] for m in (base, base, s2d_model)])
    act_max = [max(float(np.max(np.abs(v))) for v in _activations(m, calib).values()) for m in (base, s2d_model)]
    ks, rule = lm.ks()
    names = list(ks)
    return xr.Dataset(
        {
            "ptq_loss": (("ptq_method", "ptq_setting"), loss),
            "ptq_perplexity": (("ptq_method", "ptq_setting"), np.exp(loss)),
            "ptq_overhead_bits": (("ptq_method", "ptq_setting"), overhead),
            "ptq_fp_loss": ("ptq_method", fp_loss),
            "ptq_fp_perplexity": ("ptq_method", np.exp(fp_loss)),
            "act_absmax": ("model_kind", act_max),
            "s2d_k": ("layer", [ks[k] for k in names]),
            "s2d_k_rule": rule,
        },
        coords={"ptq_method": list(methods), "ptq_setting": settings, "layer": names,
                "model_kind": ["fp32", "s2d"]},
    )


# ---------------------------------------------------------------------------------------------------------
# Part C: low-precision training with S2D on vs off
# ---------------------------------------------------------------------------------------------------------


def part_training(config: Config, lm: _LM) -> Any:
    import xarray as xr

    from zipfrmt.nn.collapse import collapse_step
    from zipfrmt.plots import embedding_in_use, last_finite

    steps = np.arange(config.base.steps + 1)
    reference = lm.history("fp32", False)
    precisions = ["fp32", *(str(b) for b in config.train_bits)]
    runs, curves, scalars = [], {k: [] for k in ("loss", "eval_loss", "emb_stable_rank", "hidden_effective_rank")}, {
        k: [] for k in ("status", "reason", "stopped_at", "collapse_step", "final_eval_loss",
                        "final_emb_stable_rank")}
    for p in precisions:
        for on in (False, True):
            h = lm.history(p, on).reindex(step=steps)
            runs.append({"train_precision": p, "train_s2d": int(on)})
            vals = {"loss": h["loss"], "eval_loss": h["eval_loss"],
                    "emb_stable_rank": embedding_in_use(h, "stable_rank"),
                    "hidden_effective_rank": h["hidden_effective_rank"]}
            for k, v in vals.items():
                curves[k].append(np.asarray(v.values, np.float64))
            scalars["status"].append(str(h.attrs["status"]))
            scalars["reason"].append(str(h.attrs["reason"]))
            scalars["stopped_at"].append(float(h.attrs["stopped_at"]))
            scalars["collapse_step"].append(collapse_step(h, None if p == "fp32" else reference,
                                                          _lm_config(config, p)))
            scalars["final_eval_loss"].append(float(last_finite(curves["eval_loss"][-1][None])[0]))
            scalars["final_emb_stable_rank"].append(float(last_finite(curves["emb_stable_rank"][-1][None])[0]))
    labels = [("fp32" if r["train_precision"] == "fp32" else f"int{r['train_precision']}")
              + (" + S2D" if r["train_s2d"] else "") for r in runs]
    data = {f"train_{k}": (("train_run", "step"), np.stack(v)) for k, v in curves.items()}
    data |= {f"train_{k}": ("train_run", np.asarray(v)) for k, v in scalars.items()}
    return xr.Dataset(data, coords={"train_run": labels, "step": steps,
                                    "train_precision": ("train_run", [r["train_precision"] for r in runs]),
                                    "train_s2d": ("train_run", [r["train_s2d"] for r in runs])})


# ---------------------------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------------------------

PARTS = ("power_law", "lm_embedding", "ptq", "training")


def run(config: Config, *, root: str | Path = "results", force: bool = False, progress: bool = True) -> Any:
    import xarray as xr

    root = Path(root)
    lm = _LM(config, root, force)
    compute = {
        "power_law": lambda: part_power_law(config),
        "lm_embedding": lambda: part_embedding(config, lm),
        "ptq": lambda: part_ptq(config, lm),
        "training": lambda: part_training(config, lm),
    }

    def merge() -> Any:
        from tqdm.auto import tqdm

        parts = {}
        for name in tqdm(PARTS, desc=NAME, disable=not progress, leave=False):
            ds = sweep.cached(NAME, {"part": name, "config": config}, compute[name], root=root, force=force)
            ds.attrs = {}
            parts[name] = ds
        for ds in parts.values():  # the parts' on-disk encodings (fixed string widths) must not carry over
            for var in ds.variables.values():
                var.encoding = {}
        matrices = xr.concat([parts["power_law"], parts["lm_embedding"]], dim="matrix", join="outer")
        ds = xr.merge([matrices, parts["ptq"], parts["training"]], combine_attrs="drop")
        ds = ds.assign_coords(matrix=np.array(list(PARTS[:2]), dtype=object))
        ds["specquant_budget"] = config.budget
        return ds

    return sweep.cached(NAME, config, merge, root=root, force=force)


# ---------------------------------------------------------------------------------------------------------
# Reading the result
# ---------------------------------------------------------------------------------------------------------


def _v(ds: Any, name: str, **sel: Any) -> float:
    return float(ds[name].sel(**sel).values)


def _table_rows(ds: Any) -> list[list[str]]:
    rows = []
    for m in ds["matrix"].values:
        for meth in ds["mitigation"].values:
            for b in ds["bits"].values:
                s = dict(matrix=m, mitigation=meth, bits=b)
                rows.append([MATRIX_LABELS.get(str(m), str(m)), METHOD_LABELS.get(str(meth), str(meth)), str(int(b)),
                             fmt(_v(ds, "truncation_index", **s)), fmt(_v(ds, "predicted_truncation_index", **s)),
                             fmt(_v(ds, "stable_rank", **s)), fmt(_v(ds, "predicted_stable_rank", **s)),
                             fmt(_v(ds, "rank_exponent", **s)), fmt(_v(ds, "predicted_rank_exponent", **s)),
                             fmt(_v(ds, "rel_error", **s)), str(ds["regime"].sel(**s).values)])
    return rows


def _lm_rows(ds: Any) -> list[list[str]]:
    rows = []
    for meth in ds["ptq_method"].values:
        cells = [fmt(_v(ds, "ptq_perplexity", ptq_method=meth, ptq_setting=s)) for s in ds["ptq_setting"].values]
        rows.append(["PTQ", METHOD_LABELS[str(meth)], fmt(_v(ds, "ptq_fp_perplexity", ptq_method=meth)),
                     " / ".join(cells), "–", "–"])
    for run_label in ds["train_run"].values:
        r = dict(train_run=run_label)
        status = str(ds["train_status"].sel(**r).values)
        step = _v(ds, "train_collapse_step", **r)
        if status == "diverged":
            when = f"diverged at {int(_v(ds, 'train_stopped_at', **r))}"
        elif math.isfinite(step):
            when = f"collapsed from step {int(step)}"
        else:
            when = status
        rows.append(["training", str(run_label), fmt(math.exp(_v(ds, "train_final_eval_loss", **r))), "–",
                     fmt(_v(ds, "train_final_emb_stable_rank", **r)), when])
    return rows


def render(ds: Any, out_dir: str | Path) -> list[Path]:
    from zipfrmt import plots

    paths = plots.mitigations(ds, figure_path(out_dir, NAME))
    header = ["matrix", "method", "b", "k* meas.", "k* pred.", "r_s meas.", "r_s pred.", "a meas.", "a pred.",
              "rel. error", "regime"]
    cost = " / ".join(f"{fmt(_v(ds, 'overhead_bits', matrix=m, mitigation='specquant', bits=ds['bits'].values[0]))}"
                      f" on the {MATRIX_LABELS.get(str(m), str(m))}" for m in ds["matrix"].values)
    caption = (f"RTN vs SpecQuant (budget {fmt(float(ds['specquant_budget']))}: {cost} extra bits per weight) "
               "vs S2D + RTN: "
               "truncation index k*, stable rank r_s and rank exponent a, measured and predicted "
               "by the random-matrix model, and relative error ‖Q(W) − W‖_F / ‖W‖_F.")
    paths += write_table(out_dir, NAME, header, _table_rows(ds), caption, align="lllrrrrrrrl")
    settings = " / ".join(str(s) for s in ds["ptq_setting"].values)
    lm_header = ["part", "method / run", "fp ppl (final ppl)", f"{settings} ppl", "emb. r_s", "collapse"]
    paths += write_table(out_dir, NAME + "_lm", lm_header, _lm_rows(ds),
                         "The small LM: held-out perplexity after post-training quantization per method, and "
                         "low-bit training with S2D off vs on (final perplexity, embedding stable rank, collapse).")
    return paths


def describe(ds: Any) -> str:
    bits = [int(b) for b in ds["bits"].values]
    lo = min(bits)
    hi = max(bits)
    out = []
    for m in ds["matrix"].values:
        s = {meth: dict(matrix=m, mitigation=meth) for meth in ds["mitigation"].values}
        fp_sr = _v(ds, "fp_stable_rank", matrix=m)
        cells = []
        for meth in ("rtn", "specquant", "s2d"):
            cells.append(f"{METHOD_LABELS[meth]} k* {fmt(_v(ds, 'truncation_index', bits=hi, **s[meth]))}→"
                         f"{fmt(_v(ds, 'truncation_index', bits=lo, **s[meth]))} (predicted "
                         f"{fmt(_v(ds, 'predicted_truncation_index', bits=hi, **s[meth]))}→"
                         f"{fmt(_v(ds, 'predicted_truncation_index', bits=lo, **s[meth]))}), stable rank "
                         f"{fmt(_v(ds, 'stable_rank', bits=hi, **s[meth]))}→"
                         f"{fmt(_v(ds, 'stable_rank', bits=lo, **s[meth]))}"
                         f", error {fmt(_v(ds, 'rel_error', bits=hi, **s[meth]))}→"
                         f"{fmt(_v(ds, 'rel_error', bits=lo, **s[meth]))}")
        out.append(f"On the {MATRIX_LABELS.get(str(m), str(m))} (fp stable rank {fmt(fp_sr)}, S2D's "
                   f"{fmt(_v(ds, 's2d_fp_stable_rank', matrix=m))}), from {hi} to {lo} bits: " + "; ".join(cells) + ".")
    ptq = []
    for st in ds["ptq_setting"].values:
        ptq.append(f"{st}: " + ", ".join(
            f"{METHOD_LABELS[str(meth)]} {fmt(_v(ds, 'ptq_perplexity', ptq_method=meth, ptq_setting=st))}"
            for meth in ds["ptq_method"].values))
    rule = str(ds["s2d_k_rule"].values)
    ks = ", ".join(f"{k}={int(v)}" for k, v in zip(ds["layer"].values, ds["s2d_k"].values, strict=True) if v)
    act = (_v(ds, "act_absmax", model_kind="fp32"), _v(ds, "act_absmax", model_kind="s2d"))
    out.append(
        f"On the small LM (fp32 perplexity {fmt(_v(ds, 'ptq_fp_perplexity', ptq_method='rtn'))}, S2D-trained "
        f"{fmt(_v(ds, 'ptq_fp_perplexity', ptq_method='s2d'))}), post-training quantization gives " + "; ".join(ptq)
        + f". S2D's k came from {'PCDR' if rule == 'pcdr' else 'the fixed fallback (PCDR reached τ nowhere)'}"
        + (f" ({ks})" if ks else " (k = 0 everywhere)")
        + f"; it changed the largest linear-layer input |x| from {fmt(act[0])} to {fmt(act[1])}."
    )
    tr = []
    for lbl in ds["train_run"].values:
        r = dict(train_run=lbl)
        status = str(ds["train_status"].sel(**r).values)
        step = _v(ds, "train_collapse_step", **r)
        extra = ""
        if status == "diverged":
            extra = f", diverged at step {int(_v(ds, 'train_stopped_at', **r))}"
        elif math.isfinite(step):
            extra = f", collapse criterion met from step {int(step)}"
        tr.append(f"{lbl}: loss {fmt(_v(ds, 'train_final_eval_loss', **r))}, embedding stable rank "
                  f"{fmt(_v(ds, 'train_final_emb_stable_rank', **r))} ({status}{extra})")
    n_bad = int(sum(str(s) != "ok" for s in ds["train_status"].values))
    out.append("Low-precision training with S2D off vs on — " + "; ".join(tr) + "."
               + (" No run collapsed or diverged, so whether S2D delays collapse cannot be judged at this scale."
                  if n_bad == 0 else ""))
    return " ".join(out)
