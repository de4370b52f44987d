"""Figure: the quantization noise floor truncates the tail of a power-law spectrum, where RMT says it does.

A ``V×d`` matrix with ``σ_k = k^(−a)`` and Haar singular vectors (:func:`zipfrmt.embeddings.power_law_matrix`)
is quantized at each bit width, scale group and rounding mode, and :func:`zipfrmt.analyze.analyze_matrix`
measures the spectrum of ``Q(W)`` beside the random-matrix prediction made from the full-precision spectrum
alone (additive Widrow model in the ``widrow`` regime, Bussgang model in the ``dead-zone`` regime). Panel (a)
draws the spectra with the predicted spectrum, bulk edge ``s(√V + √d)`` (the noise floor) and the detection
threshold ``θ_c = s(Vd)^(1/4)``; panel (b) the measured truncation index ``k*`` against the predicted one.

Every setting is one point of :func:`zipfrmt.sweep.run_grid`, so an interrupted run resumes at the setting it
stopped in. The singular values of ``W``, ``Q(W)`` and the prediction are stored along a ``rank`` dimension, so
the figure is redrawn from the saved dataset alone. :func:`measure_setting` is shared with
:mod:`experiments.fig_stable_rank_vs_bits`.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from experiments.outputs import figure_path
from zipfrmt import analyze, rmt, sweep
from zipfrmt.checks import check_choice, check_int, check_number
from zipfrmt.quant import QuantSpec, parse_granularity

NAME = "fig_noise_floor"
KIND = "figure"
CAPTION = ("Singular values of a power-law matrix (σ_k = k^(−a), Haar vectors) and of its b-bit quantizations, "
           "with the predicted spectrum, noise floor s(√V+√d) and detection threshold θ_c = s(Vd)^(1/4) "
           "(dashed, from the full-precision spectrum alone); and the measured truncation index k* against the "
           "predicted one for every bit width and scale group (crosses: k* counted on the sketch model's "
           "Dozier–Silverstein spectrum).")


def check_settings(config: Any) -> None:
    """Validates a config's ``seeds``, ``bits``, ``granularities`` and ``roundings`` (shared with
    fig_stable_rank_vs_bits)."""
    for name in ("seeds", "bits", "granularities", "roundings"):
        if not getattr(config, name):
            raise ValueError(f"{name}: expected at least one value, got none")
    for s in config.seeds:
        check_int(s, "seeds", lo=0)
    for b in config.bits:
        check_int(b, "bits", lo=2, hi=16)
    for g in config.granularities:
        parse_granularity(g)
    for r in config.roundings:
        check_choice(r, "roundings", ("nearest", "stochastic"))


@dataclasses.dataclass(frozen=True)
class Config:
    """The matrices (shapes × exponents × seeds) and quantization settings to sweep.

    Panel (a) draws the first shape, exponent and seed at ``spectrum_granularity`` with round-to-nearest;
    panel (b) every setting.
    """

    shapes: tuple[tuple[int, int], ...] = ((4096, 256),)
    exponents: tuple[float, ...] = (1.0, 0.5)
    seeds: tuple[int, ...] = (0,)
    bits: tuple[int, ...] = (8, 6, 5, 4, 3, 2)
    granularities: tuple[str, ...] = ("tensor", "row", "group32")
    roundings: tuple[str, ...] = ("nearest",)
    spectrum_granularity: str = "tensor"
    #: the sketch model's bulk: ``"dozier-silverstein"`` adds its k* (counted on that law) to panel b as
    #: crosses, 0.3–0.8 s a setting; ``"mp"`` leaves them out (the quick scale, for time)
    sketch_bulk: str = "mp"

    def __post_init__(self) -> None:
        for name in ("shapes", "exponents"):
            if not getattr(self, name):
                raise ValueError(f"{name}: expected at least one value, got none")
        for V, d in self.shapes:
            check_int(V, "shapes (V)", lo=2)
            check_int(d, "shapes (d)", lo=2)
        for a in self.exponents:
            check_number(a, "exponents", lo=0.0)
        check_settings(self)
        check_choice(self.spectrum_granularity, "spectrum_granularity", self.granularities)
        check_choice(self.sketch_bulk, "sketch_bulk", ("mp", "dozier-silverstein"))
        if "nearest" not in self.roundings:
            raise ValueError(f"roundings: expected 'nearest' among them (panel a draws it), got {self.roundings!r}")


SCALES = {
    "test": Config(shapes=((512, 64),), exponents=(1.0,), bits=(8, 3, 2), granularities=("tensor", "row"),
                   sketch_bulk="dozier-silverstein"),
    "quick": Config(),
    "full": Config(shapes=((50257, 768), (16384, 1024)), exponents=(1.0, 0.75, 0.5), seeds=(0, 1, 2),
                   granularities=("tensor", "row", "group32", "group128"), sketch_bulk="dozier-silverstein"),
}


# ---------------------------------------------------------------------------------------------------------
# One setting: shared with fig_stable_rank_vs_bits
# ---------------------------------------------------------------------------------------------------------


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def matrix_cache() -> Callable[[int, int, float, int], Any]:
    """``(V, d, a, seed) → W`` for one run, keeping only the latest matrix (points are ordered by matrix)."""
    import jax

    from zipfrmt import embeddings

    held: dict[tuple[int, int, float, int], Any] = {}

    def get(V: int, d: int, a: float, seed: int) -> Any:
        key = (V, d, a, seed)
        if key not in held:
            held.clear()
            held[key] = embeddings.power_law_matrix(jax.random.key(seed), V, d, a)
        return held[key]

    return get


def measure_setting(W: Any, point: dict[str, Any], sketch_bulk: str = "dozier-silverstein") -> Any:
    """Quantizes ``W`` at ``point`` (``bits``, ``granularity``, ``rounding``), measures and predicts.

    Uses :func:`zipfrmt.analyze.analyze_matrix` (one setting), so ``k*`` is measured exactly as ``zipfrmt
    analyze`` measures it (quantized σ above the predicted noise floor of the regime's model). Adds the full
    predicted spectrum of that model, the additive (Widrow) prediction at every point, whatever the regime, and
    the sketch model's (:func:`zipfrmt.rmt.predict_from_sketch`: ``σ_1`` from one pass over ``Q``, ``k*``
    counted on the Dozier–Silverstein spectrum) as ``*_sketch`` (with ``sketch_bulk="mp"``, for a figure that
    reads only its stable rank, ``k_sketch`` is left out), and at dead-zone points the residual-profile law's
    (:func:`zipfrmt.variance_profile.predict_with_residual_profile`) as ``k_profile``, ``stable_rank_profile``
    (NaN at Widrow points).
    Stochastic rounding draws its key from a hash of the point, so the result is a pure function of it.
    Returns a dataset with scalar variables and the spectra along ``rank``.
    """
    import xarray as xr

    V, d = (int(n) for n in W.shape)
    gran, size = parse_granularity(point["granularity"])
    spec = QuantSpec(bits=int(point["bits"]), granularity=gran, group_size=size, rounding=point["rounding"])
    seed = zlib.crc32(sweep.config_json(point).encode()) & 0x7FFFFFFF
    rep = analyze.analyze_matrix(W, [spec], seed=seed, keep_spectra=True, sketch_bulk=sketch_bulk, profile=True)
    row, fp = rep["quantized"][0], rep["fp"]
    s_fp = rep["spectra"]["fp"]
    s_q = rep["spectra"]["quantized"][0]
    p, ps = row["predicted"], row["predicted_sketch"]
    add = rmt.predict_quantized(s_fp, V, d, row["noise_var_model"])
    lo = rmt.mp_edges(V, d, p["noise_var"]).sigma_lo if p["noise_var"] > 0 else 0.0
    scalars = {
        "regime": row["regime"],
        "model": p["model"],
        "noise_var_model": row["noise_var_model"],
        "noise_var_measured": row["noise_var_measured"],
        "noise_var_predicted": p["noise_var"],
        "bussgang_gain": row["bussgang_gain"],
        "zero_fraction": row["zero_fraction"],
        "rel_error": row["rel_error"],
        "noise_floor": p["noise_floor"],
        "bulk_lower_edge": lo,
        "threshold": p["threshold"],
        "gain_predicted": p["gain"],
        "k_measured": row["truncation_index"],
        "k_predicted": p["truncation_index"],
        "k_additive": add.truncation_index,
        "stable_rank_fp": fp["stable_rank"],
        "stable_rank_measured": row["stable_rank"],
        "stable_rank_predicted": p["stable_rank"],
        "stable_rank_additive": add.stable_rank,
        "exponent_fp": _num(fp["rank_exponent"]),
        "exponent_measured": _num(row["rank_exponent"]),
        "exponent_predicted": _num(p["rank_exponent"]),
        "exponent_additive": _num(add.decay.a),
        "sigma1_measured": row["sigma_max"],
        "sigma1_predicted": p["sigma_max"],
        "stable_rank_sketch": ps["stable_rank"],
        "exponent_sketch": _num(ps["rank_exponent"]),
        "sigma1_sketch": ps["sigma_max"],
    }
    if sketch_bulk == "dozier-silverstein":
        scalars["k_sketch"] = ps["truncation_index"]
    pp = row.get("predicted_profile")  # dead-zone points: the residual-profile law (zipfrmt.variance_profile)
    scalars["k_profile"] = math.nan if pp is None else float(pp["truncation_index"])
    scalars["stable_rank_profile"] = math.nan if pp is None else pp["stable_rank"]
    rank = np.arange(1, s_fp.size + 1)
    data = {k: ((), v) for k, v in scalars.items()}
    data["sigma_fp"] = (("rank",), np.asarray(s_fp, np.float64))
    data["sigma_measured"] = (("rank",), np.asarray(s_q, np.float64))
    data["sigma_predicted"] = (("rank",), rep["spectra"]["predicted"][0])
    return xr.Dataset(data, coords={"rank": rank})


def grid_points(config: Any, shapes: Any, exponents: Any, seeds: Any) -> list[dict[str, Any]]:
    """One point per (matrix, bits, granularity, rounding), ordered by matrix."""
    return [{"V": int(V), "d": int(d), "a": float(a), "seed": int(s), "bits": int(b), "granularity": g,
             "rounding": r}
            for V, d in shapes for a in exponents for s in seeds
            for b in config.bits for g in config.granularities for r in config.roundings]


def run_settings(name: str, config: Any, points: list[dict[str, Any]], *, root: str | Path, force: bool,
                 progress: bool, extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 sketch_bulk: str = "dozier-silverstein") -> Any:
    """:func:`zipfrmt.sweep.run_grid` over ``points`` with :func:`measure_setting`, one matrix held at a time.

    ``extra(point)`` adds scalar variables to each point (e.g. which points a panel draws).
    """
    get = matrix_cache()

    def compute(p: dict[str, Any]) -> Any:
        ds = measure_setting(get(p["V"], p["d"], p["a"], p["seed"]), p, sketch_bulk)
        return ds.assign(**{k: ((), v) for k, v in (extra(p) if extra else {}).items()})

    return sweep.run_grid(name, config, points, compute, root=root, force=force, progress=progress)


# ---------------------------------------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------------------------------------


def _in_spectrum_panel(config: Config, p: dict[str, Any]) -> bool:
    return ((p["V"], p["d"]) == tuple(config.shapes[0]) and p["a"] == config.exponents[0]
            and p["seed"] == config.seeds[0] and p["granularity"] == config.spectrum_granularity
            and p["rounding"] == "nearest")


def run(config: Config, *, root: str | Path = "results", force: bool = False, progress: bool = True) -> Any:
    points = grid_points(config, config.shapes, config.exponents, config.seeds)
    return run_settings(NAME, config, points, root=root, force=force, progress=progress,
                        extra=lambda p: {"spectrum_panel": _in_spectrum_panel(config, p)},
                        sketch_bulk=config.sketch_bulk)


def render(ds: Any, out_dir: str | Path) -> list[Path]:
    from zipfrmt import plots

    return plots.noise_floor(ds, figure_path(out_dir, NAME))


def _values(ds: Any, name: str) -> np.ndarray:
    return np.asarray(ds[name].values)


def spectrum_selection(ds: Any) -> np.ndarray:
    """Indices of the points drawn in panel (a) (``spectrum_panel``), most bits first."""
    idx = np.flatnonzero(_values(ds, "spectrum_panel").astype(bool))
    return idx[np.argsort(-_values(ds, "bits")[idx], kind="stable")]


def _pct(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{100 * x:.0f}%"


def describe(ds: Any) -> str:
    idx = spectrum_selection(ds)
    first = ds.isel(point=int(idx[0]))
    V, d, a = int(first["V"]), int(first["d"]), float(first["a"])
    r = int(np.isfinite(first["sigma_fp"].values).sum())
    gran = str(first["granularity"].values)
    bits = ", ".join(str(int(ds["bits"].values[i])) for i in idx)
    k_meas = ", ".join(str(int(ds["k_measured"].values[i])) for i in idx)
    k_pred = ", ".join(str(int(ds["k_predicted"].values[i])) for i in idx)
    dz = [int(ds["bits"].values[i]) for i in idx if str(ds["regime"].values[i]) == "dead-zone"]
    dz_text = (f"; the regime is dead-zone at {', '.join(map(str, dz))} bits, where the Bussgang model is used"
               if dz else "; every one of them is in the Widrow regime")
    k_m, k_p = _values(ds, "k_measured").astype(float), _values(ds, "k_predicted").astype(float)
    r_all = np.isfinite(_values(ds, "sigma_fp")).sum(axis=-1)
    truncated = ~((k_m == r_all) & (k_p == r_all))  # both full: nothing to predict
    err = np.abs(k_p - k_m) / np.maximum(k_m, 1)
    regime = _values(ds, "regime").astype(str)
    parts, medians = [], {}
    for reg, label in (("widrow", "Widrow-regime settings (additive model)"),
                       ("dead-zone", "dead-zone settings (Bussgang model)")):
        m = truncated & (regime == reg)
        if m.any():
            over = int((k_p[m] > k_m[m]).sum())
            medians[reg] = float(np.median(err[m]))
            parts.append(f"a median {_pct(float(np.median(err[m])))} (worst {_pct(float(err[m].max()))}) over "
                         f"{int(m.sum())} {label}, predicting more than measured at {over} of them")
    summary = ("; ".join(parts) + ".") if parts else "nothing to compare: no setting truncates the spectrum."
    worst = int(np.argmax(np.where(truncated, err, -1.0))) if truncated.any() else None
    worst_text = ""
    if worst is not None:
        w = ds.isel(point=worst)
        worst_text = (f" The worst miss is {int(w['bits'])} bits per {str(w['granularity'].values)} "
                      f"({int(w['V'])}×{int(w['d'])}, a = {float(w['a']):g}, seed {int(w['seed'])}, "
                      f"{str(w['regime'].values)}): predicted {int(w['k_predicted'])}, "
                      f"measured {int(w['k_measured'])}.")
    n_full = int((~truncated).sum())
    return (
        f"For the {V}×{d} matrix with σ_k = k^(−{a:g}), {gran} round-to-nearest quantization at {bits} bits leaves "
        f"k* = {k_meas} of its {r} singular values above the noise floor; the random-matrix prediction from the "
        f"full-precision spectrum alone is k* = {k_pred}{dz_text}. Over all {int(k_m.size)} settings, {n_full} "
        f"truncate nothing (measured and predicted); where the tail is truncated, the predicted k* misses the "
        f"measured by {summary}{worst_text}{_widrow_text(ds, truncated, regime, medians)}"
        f"{_dead_zone_text(medians)}{_profile_text(ds, truncated, regime)}{_sketch_text(ds, truncated)}"
    )


def _widrow_text(ds: Any, truncated: np.ndarray, regime: np.ndarray, medians: dict[str, float]) -> str:
    """The Widrow-regime count against the count by θ_c (the spiked map, ``k_additive``), which it replaces where
    the tail is cut near θ_c."""
    if "widrow" not in medians:
        return ""
    m = truncated & (regime == "widrow")
    k_m, k_a = _values(ds, "k_measured").astype(float), _values(ds, "k_additive").astype(float)
    err_a = float(np.median(np.abs(k_a[m] - k_m[m]) / np.maximum(k_m[m], 1)))
    verdict = "within" if medians["widrow"] <= 0.10 else "outside"
    return (f" In the Widrow regime the count is {verdict} the 10% aim: where the tail is cut near θ_c the values "
            f"there crowd into a band with the bulk and do not map one by one, so k* is counted on the "
            f"Dozier–Silverstein law, as it is measured (counted by θ_c, the spiked map's count, it misses by a "
            f"median {_pct(err_a)} at the same settings).")


def _dead_zone_text(medians: dict[str, float]) -> str:
    if "dead-zone" not in medians:
        return ""
    if medians["dead-zone"] <= 0.10:
        return " In the dead zone the Bussgang model's count is within the 10% aim too."
    return (" In the dead zone the Bussgang model's count is not within the 10% aim: the residual Q − gW is "
            "neither i.i.d. nor independent of W — its error sits where the large entries are (a variance profile "
            "along W's heavy rows and columns), which a law with one noise variance does not see.")


def _profile_text(ds: Any, truncated: np.ndarray, regime: np.ndarray) -> str:
    """The residual-profile law's dead-zone count (``k_profile``, crosses "+" in panel b) against the measured."""
    if "k_profile" not in ds:
        return ""
    m = truncated & (regime == "dead-zone")
    k_m, k_r = _values(ds, "k_measured").astype(float), _values(ds, "k_profile").astype(float)
    m &= np.isfinite(k_r)
    if not m.any():
        return ""
    err = np.abs(k_r[m] - k_m[m]) / np.maximum(k_m[m], 1)
    aim = "within" if np.median(err) <= 0.10 else "outside"
    return (f" With the residual's row and column variances (the residual-profile law, crosses “+” in panel b) the "
            f"dead-zone count misses by a median {_pct(float(np.median(err)))} (worst {_pct(float(err.max()))}), "
            f"{aim} the 10% aim.")


def _sketch_text(ds: Any, truncated: np.ndarray) -> str:
    """The sketch model's k* (counted on the Dozier–Silverstein spectrum) against the measured, per regime."""
    if "k_sketch" not in ds:
        return ""
    k_m, k_s = _values(ds, "k_measured").astype(float), _values(ds, "k_sketch").astype(float)
    err = np.abs(k_s - k_m) / np.maximum(k_m, 1)
    regime = _values(ds, "regime").astype(str)
    parts = []
    for reg, label in (("widrow", "Widrow"), ("dead-zone", "dead-zone")):
        m = truncated & (regime == reg)
        if m.any():
            parts.append(f"{_pct(float(np.median(err[m])))} in the {label} regime (worst {_pct(float(err[m].max()))})")
    if not parts:
        return ""
    return (" Counting k* on the predicted Dozier–Silverstein spectrum instead (the sketch model, crosses in "
            f"panel b) misses by a median {' and '.join(parts)}.")
