"""Table: the prediction of a quantized spectrum on real-text and trained embeddings, at every format.

The verification grid (``tab_bound_verification``) checks the predictions on power-law matrices with Haar
singular vectors. Here the matrices are the ones a user meets: the PPMI–SVD embeddings of the two texts in
``data/`` (Levy, Goldberg & Dagan 2015; word tokens, ``V`` types, window 5, ``d`` columns), the embedding table
of an embedding-bag language model trained on wikitext2 (:mod:`zipfrmt.nn`, float32), a dense Gaussian matrix
(a linear weight at initialisation, entries ``N(0, 1/d)``: its ``σ_1`` is the edge of its own Marchenko–Pastur
bulk, no spike) and, for reference, a power-law matrix ``σ_k = k^(−a)`` with Haar vectors. Each is quantized
with every spec of ``specs`` (the ``int`` quantizer in the Widrow and dead-zone regimes, and every real format:
fp8, nf4, mxfp4, nvfp4 and the llama.cpp block formats). Per point, beside the measured stable rank, ``σ_1``
and truncation index ``k*``:

* the regime's model from the full-precision spectrum and the noise statistics
  (:func:`zipfrmt.rmt.predict_from_result`: additive in the Widrow regime, Bussgang in the dead zone);
* the sketch model (:func:`zipfrmt.rmt.predict_from_sketch`: ``σ_1`` from one pass over ``Q`` along ``W``'s top
  singular pair, the stable rank from ``‖Q‖_F²``, ``k*`` counted on the Dozier–Silverstein spectrum).

One point per (matrix, spec) through :func:`zipfrmt.sweep.run_grid`, so an interrupted run resumes; a text that
is missing from ``data_dir`` drops its matrices, and the report says so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from experiments.fig_training_collapse import TEXTS as TRAINING_TEXTS
from experiments.outputs import DATA_DIR, fmt, write_table
from zipfrmt.checks import check_int, check_number
from zipfrmt.quant import QuantSpec, check_spec_shape

NAME = "tab_sketch_prediction"
KIND = "table"
CAPTION = ("The stable rank and truncation index of quantized real-text (PPMI–SVD), trained, dense Gaussian and "
           "power-law matrices at every format, measured beside the regime's model (additive or Bussgang, from the "
           "full-precision spectrum), the sketch model (σ_1 from one pass over Q) and, at dead-zone points, the "
           "residual-profile law (the residual's row and column variances): relative errors in %.")

#: The texts in ``data/`` a PPMI–SVD embedding is built from (those the training experiments use), and the one
#: the embedding-bag model trains on.
TEXTS = TRAINING_TEXTS
TRAIN_TEXT = "wikitext2"

#: Every format, and the int quantizer where its regimes differ.
SPECS = ("int4-row", "int3-row", "int4-tensor", "int3-tensor", "int2-row", "int2-group32", "int2-tensor",
         "int2-row-stochastic", "fp8_e4m3", "fp8_e5m2-tensor", "nf4", "mxfp4", "nvfp4", "q8_0", "q5_0", "q4_0",
         "q4_1", "ggml_mxfp4", "tq2_0", "tq1_0")


@dataclasses.dataclass(frozen=True)
class Config:
    """The matrices (``V×d`` each) and the specs.

    ``matrices`` names them: ``ppmi:<text>``, ``trained:<text>`` (an embedding-bag LM trained ``train_steps``
    steps), ``gaussian`` (entries ``N(0, 1/d)``) or ``power-law:<a>``. A spec a shape does not admit (a block
    longer than ``d``) is left out of that matrix's rows, and the report lists it.
    """

    V: int = 4096
    d: int = 256
    matrices: tuple[str, ...] = ("ppmi:tinyshakespeare", "ppmi:wikitext2", f"trained:{TRAIN_TEXT}",
                                 "power-law:0.5")
    specs: tuple[str, ...] = SPECS
    window: int = 5
    train_steps: int = 200
    seed: int = 0
    data_dir: str = str(DATA_DIR)

    def __post_init__(self) -> None:
        check_int(self.V, "V", lo=2)
        check_int(self.d, "d", lo=2)
        check_int(self.window, "window", lo=1)
        check_int(self.train_steps, "train_steps", lo=1)
        check_int(self.seed, "seed", lo=0)
        if not self.matrices or not self.specs:
            raise ValueError("matrices, specs: expected at least one of each, got none")
        for m in self.matrices:
            kind, _, arg = m.partition(":")
            if kind in ("ppmi", "trained"):
                if arg not in TEXTS:
                    raise ValueError(f"matrices: expected {kind}:<one of {', '.join(TEXTS)}>, got {m!r}")
            elif kind == "power-law":
                check_number(float(arg) if _is_float(arg) else arg, "matrices (power-law exponent)", lo=0.0,
                             lo_open=True)
            elif m != "gaussian":
                raise ValueError(f"matrices: expected ppmi:<text>, trained:<text>, gaussian or power-law:<a>, got "
                                 f"{m!r}")
        for s in self.specs:
            QuantSpec.parse(s)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


SCALES = {
    "test": Config(V=512, d=64, matrices=("ppmi:tinyshakespeare", "trained:tinyshakespeare", "gaussian",
                                          "power-law:0.5"),
                   specs=("int4-row", "int2-row", "int2-tensor", "nf4", "mxfp4", "nvfp4", "q4_0", "tq2_0"),
                   train_steps=20),
    # about 40 s on 2 cores: wikitext2's PPMI-SVD and trained embeddings; the power law is in the grid
    "quick": Config(V=1024, d=256, matrices=("ppmi:wikitext2", f"trained:{TRAIN_TEXT}", "gaussian"),
                    specs=tuple(s for s in SPECS if s != "int3-row"), train_steps=150),
    "full": Config(V=16384, d=512, train_steps=2000),
}


# ---------------------------------------------------------------------------------------------------------
# The matrices
# ---------------------------------------------------------------------------------------------------------


def _ppmi(config: Config, text: str) -> np.ndarray:
    from zipfrmt import corpus, embeddings

    tokens = corpus.read_text(Path(config.data_dir) / TEXTS[text], "word", max_vocab=config.V).tokens
    cooc = corpus.cooccurrence(np.asarray(tokens), config.V, config.window)
    return np.asarray(embeddings.ppmi_svd_embedding(cooc, config.d).embedding)


def _trained(config: Config, text: str) -> np.ndarray:
    """The embedding table of :class:`zipfrmt.nn.BagLM` (tied head) trained on ``text`` in float32."""
    import tempfile

    from zipfrmt import nn

    steps = config.train_steps
    cfg = nn.TrainConfig(
        model=nn.ModelConfig(kind="bag", vocab_size=config.V, d_model=config.d, max_len=32),
        data=nn.DataConfig(source="text", path=str(Path(config.data_dir) / TEXTS[text]), tokenizer="word"),
        batch_size=32, context=32, steps=steps, lr=1e-2, warmup=max(1, steps // 10), probe_every=steps,
        eval_every=steps, eval_batches=2, checkpoint_every=steps, seed=config.seed,
    )
    with tempfile.TemporaryDirectory(prefix="zipfrmt-bag-") as tmp:
        nn.train(cfg, tmp, progress=False)
        return np.asarray(nn.trained_model(cfg, tmp).embed.embedding[...])


def _power_law(config: Config, a: str) -> np.ndarray:
    import jax

    from zipfrmt import embeddings

    return np.asarray(embeddings.power_law_matrix(jax.random.key(config.seed), config.V, config.d, float(a)))


def _gaussian(config: Config, _: str) -> np.ndarray:
    """A dense ``V×d`` weight at initialisation, i.i.d. ``N(0, 1/d)`` (no spike: σ_1 ≈ (√V + √d)/√d)."""
    return np.random.default_rng(config.seed).standard_normal((config.V, config.d)) / math.sqrt(config.d)


BUILDERS: dict[str, Callable[[Config, str], np.ndarray]] = {"ppmi": _ppmi, "trained": _trained,
                                                            "gaussian": _gaussian, "power-law": _power_law}


def available(config: Config) -> list[str]:
    """The matrices whose text is in ``data_dir`` (every Gaussian and power-law matrix)."""
    out = []
    for m in config.matrices:
        kind, _, arg = m.partition(":")
        if kind in ("gaussian", "power-law") or (Path(config.data_dir) / TEXTS[arg]).is_file():
            out.append(m)
    return out


def _admits(spec: str, d: int) -> bool:
    try:
        check_spec_shape(QuantSpec.parse(spec), (2, d))
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------
# One point
# ---------------------------------------------------------------------------------------------------------


def _point(W: np.ndarray, prep: dict[str, Any], spec: str) -> Any:
    import jax
    import xarray as xr

    from zipfrmt import quant, rmt, sketch, spectra, variance_profile

    V, d = W.shape
    s_fp = prep["sigma"]
    q = quant.quantize(W, spec, key=jax.random.key(1))
    s_q = np.asarray(spectra.singular_values(q.dequantized), np.float64)
    pred = rmt.predict_from_result(s_fp, V, d, q)
    sk = rmt.predict_from_sketch(s_fp, V, d, q, sketch.quant_sketch(q.dequantized, *prep["pair"]))
    pp = None  # the residual-profile law, at dead-zone points (zipfrmt.variance_profile)
    if q.regime == "dead-zone":
        pp = variance_profile.predict_from_quantized(s_fp, W, q)
    data = {
        "regime": q.regime,
        "model": pred.model,
        "zero_fraction": float(q.zero_fraction),
        "stable_rank_fp": float(np.sum(s_fp**2) / s_fp[0] ** 2),
        "stable_rank_measured": float(np.sum(s_q**2) / s_q[0] ** 2) if s_q[0] > 0 else 0.0,
        "stable_rank_predicted": float(pred.stable_rank),
        "stable_rank_sketch": float(sk.stable_rank),
        "sigma1_measured": float(s_q[0]),
        "sigma1_predicted": float(pred.sigma1),
        "sigma1_sketch": float(sk.sigma1),
        "k_measured": rmt.count_above_floor(s_q, pred),  # the regime's floor, which the sketch model shares
        "k_predicted": int(pred.truncation_index),
        "k_sketch": int(sk.truncation_index),
        "stable_rank_profile": math.nan if pp is None else float(pp.stable_rank),
        "k_profile": math.nan if pp is None else float(pp.truncation_index),
        "rank": int(min(V, d)),
    }
    return xr.Dataset({k: ((), v) for k, v in data.items()})


def run(config: Config, *, root: str | Path = "results", force: bool = False, progress: bool = True) -> Any:
    from zipfrmt import sketch, spectra, sweep

    points = [{"matrix": m, "spec": s} for m in available(config) for s in config.specs if _admits(s, config.d)]
    if not points:
        raise ValueError(f"data_dir: none of the matrices {config.matrices} can be built from "
                         f"'{config.data_dir}' (no power-law matrix either)")
    held: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}

    def compute(p: dict[str, Any]) -> Any:
        if p["matrix"] not in held:  # points are ordered by matrix: hold one at a time
            held.clear()
            kind, _, arg = p["matrix"].partition(":")
            W = BUILDERS[kind](config, arg).astype(np.float32)
            held[p["matrix"]] = W, {"sigma": np.asarray(spectra.singular_values(W), np.float64),
                                    "pair": sketch.top_singular_pair(W)}
        W, prep = held[p["matrix"]]
        return _point(W, prep, p["spec"])

    return sweep.run_grid(NAME, config, points, compute, root=root, force=force, progress=progress, dim="row")


def load_cached(config: Config, root: str | Path) -> Any:
    from zipfrmt import sweep

    return sweep.load_cached(NAME, config, root)


# ---------------------------------------------------------------------------------------------------------
# Reading the result
# ---------------------------------------------------------------------------------------------------------


def _v(ds: Any, name: str) -> np.ndarray:
    v = np.asarray(ds[name].values)
    return v.astype(str) if v.dtype.kind in "OUS" else v


def errors(ds: Any, quantity: str, model: str) -> np.ndarray:
    """Signed relative error per row: ``(pred − meas)/|meas|`` (stable rank, σ_1) or ``/max(meas, 1)`` (k)."""
    p, m = _v(ds, f"{quantity}_{model}").astype(float), _v(ds, f"{quantity}_measured").astype(float)
    den = np.maximum(m, 1.0) if quantity == "k" else np.abs(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (p - m) / den


def truncated(ds: Any) -> np.ndarray:
    """Rows where ``k*`` says something: the measured or the predicted count is below the rank."""
    r = _v(ds, "rank")
    return (_v(ds, "k_measured") < r) | (_v(ds, "k_predicted") < r) | (_v(ds, "k_sketch") < r)


def _pct(x: float) -> str:
    if not math.isfinite(x):
        return "–"
    return f"{100 * x:+.2g}%" if abs(x) < 0.1 else f"{100 * x:+.0f}%"


HEADER = ("matrix", "spec", "regime", "zeros", "r_s(W)", "r_s(Q)", "r_s model", "r_s sketch", "r_s profile", "k*",
          "k* model", "k* sketch", "k* profile")


def table_rows(ds: Any) -> list[list[str]]:
    e_m, e_s = errors(ds, "stable_rank", "predicted"), errors(ds, "stable_rank", "sketch")
    has_p = "k_profile" in ds
    e_p = errors(ds, "stable_rank", "profile") if has_p else np.full(ds.sizes["row"], math.nan)
    k_p = _v(ds, "k_profile").astype(float) if has_p else np.full(ds.sizes["row"], math.nan)
    rows = []
    for i in range(ds.sizes["row"]):
        r = ds.isel(row=i)
        rows.append([str(r["matrix"].values), str(r["spec"].values), str(r["regime"].values),
                     f"{100 * float(r['zero_fraction']):.1f}%", fmt(float(r["stable_rank_fp"])),
                     fmt(float(r["stable_rank_measured"])), _pct(float(e_m[i])), _pct(float(e_s[i])),
                     _pct(float(e_p[i])), fmt(int(r["k_measured"])), fmt(int(r["k_predicted"])),
                     fmt(int(r["k_sketch"])), fmt(int(k_p[i])) if math.isfinite(k_p[i]) else "–"])
    return rows


def render(ds: Any, out_dir: str | Path) -> list[Path]:
    return write_table(out_dir, NAME, HEADER, table_rows(ds), CAPTION, align="lllrrrrrrrrrr")


def _stat(err: np.ndarray, mask: np.ndarray) -> tuple[int, float, float]:
    e = np.abs(err[mask & np.isfinite(err)])
    return (int(e.size), float(np.median(e)), float(e.max())) if e.size else (0, math.nan, math.nan)


def _abs_pct(x: float) -> str:
    return "–" if not math.isfinite(x) else (f"{100 * x:.2g}%" if x < 0.1 else f"{100 * x:.0f}%")


def _profile_text(ds: Any, mask: np.ndarray, trunc: np.ndarray) -> str:
    """The residual-profile law's errors on the dead-zone rows ``mask`` (k* where the tail is truncated)."""
    e_p, k_p = errors(ds, "stable_rank", "profile"), errors(ds, "k", "profile")
    n, med, worst = _stat(e_p, mask)
    nk, kmed, kworst = _stat(k_p, mask & trunc)
    if not n:
        return ""
    text = (f"With the residual's row and column variances (the residual-profile law, "
            f"`variance_profile.predict_with_residual_profile`) the stable rank misses by a median {_abs_pct(med)} "
            f"(worst {_abs_pct(worst)})")
    if nk:
        text += f" and k* by {_abs_pct(kmed)} (worst {_abs_pct(kworst)})"
    return text + "."


def describe(ds: Any) -> str:
    import json

    cfg = json.loads(ds.attrs["config"])
    matrices = list(dict.fromkeys(_v(ds, "matrix")))
    missing = [m for m in cfg["matrices"] if m not in matrices]
    regime, matrix = _v(ds, "regime"), _v(ds, "matrix")
    kind = np.char.partition(matrix.astype(str), ":")[:, 0]
    real = (kind == "ppmi") | (kind == "trained")
    e_m, e_s = errors(ds, "stable_rank", "predicted"), errors(ds, "stable_rank", "sketch")
    k_m, k_s = errors(ds, "k", "predicted"), errors(ds, "k", "sketch")
    trunc = truncated(ds)
    text = [f"On {len(matrices)} matrices of {cfg['V']}×{cfg['d']} ({', '.join(matrices)}) at "
            f"{len(set(_v(ds, 'spec')))} specs ({ds.sizes['row']} rows)"]
    if missing:
        text[-1] += f"; left out for want of their text in data/: {', '.join(missing)}"
    text[-1] += "."
    for label, sel in (("real-text and trained", real), ("dense Gaussian", kind == "gaussian"),
                       ("power-law", kind == "power-law")):
        for reg in ("widrow", "dead-zone"):
            mask = sel & (regime == reg)
            if not mask.any():
                continue
            n, med_m, worst_m = _stat(e_m, mask)
            _, med_s, worst_s = _stat(e_s, mask)
            w = int(np.argmax(np.where(mask & np.isfinite(e_s), np.abs(e_s), -1.0)))
            text.append(
                f"On the {label} matrices in the {reg} regime ({n} rows) the stable rank predicted by the "
                f"regime's model misses by a median {_abs_pct(med_m)} (worst {_abs_pct(worst_m)}), the sketch "
                f"model's by {_abs_pct(med_s)} (worst {_abs_pct(worst_s)}: {matrix[w]} at {_v(ds, 'spec')[w]}, "
                f"{100 * float(_v(ds, 'zero_fraction')[w]):.2f}% zeros, measured "
                f"{float(_v(ds, 'stable_rank_measured')[w]):.3g}, predicted "
                f"{float(_v(ds, 'stable_rank_sketch')[w]):.3g}).")
            nk, kmed_m, kworst_m = _stat(k_m, mask & trunc)
            _, kmed_s, kworst_s = _stat(k_s, mask & trunc)
            if nk:
                text.append(f"Where the tail is truncated ({nk} of them), k* misses by a median {_abs_pct(kmed_m)} "
                            f"(worst {_abs_pct(kworst_m)}) with the regime's model and {_abs_pct(kmed_s)} (worst "
                            f"{_abs_pct(kworst_s)}) counted on the sketch model's Dozier–Silverstein spectrum.")
            if reg == "dead-zone" and "k_profile" in ds:
                text.append(_profile_text(ds, mask, trunc))
    return " ".join(text)
