"""The verification grid: every proposition checked at every point of a grid of power-law matrices × bit
widths × scale groups × rounding × seeds, one ``xarray.Dataset`` out, cached and resumable through
:mod:`zipfrmt.sweep` (one block per matrix)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any, ClassVar

import jax
import numpy as np

import zipfrmt
from zipfrmt import embeddings, quant, rmt, sketch, spectra, sweep, variance_profile
from zipfrmt.bounds.lemma import lemma_embedding, zipf_rank_exponent
from zipfrmt.bounds.measure import MEASURE_METHOD, RIGOROUS_RTOL, f64, measure
from zipfrmt.bounds.outliers import (
    count_with_shuffled_residual,
    spectral_flattening,
    stable_rank_increase,
    truncation_index,
)
from zipfrmt.bounds.perturbation import noise_floor, weyl_bounds
from zipfrmt.checks import check_choice, check_int, check_number, describe
from zipfrmt.quant import parse_granularity

__all__ = ["FULL_GRID", "QUICK_GRID", "VerifyGrid", "verify"]

# ---------------------------------------------------------------------------------------------------------
# The verification grid
# ---------------------------------------------------------------------------------------------------------

#: Stable indices folded into the stochastic-rounding key (independent of the order in a grid).
_GRAN_CODE = {"tensor": 0, "row": 1, "column": 2}


def _gran_code(label: str) -> int:
    kind, g = parse_granularity(label)
    return _GRAN_CODE[kind] if g is None else 1000 + g


@dataclasses.dataclass(frozen=True)
class VerifyGrid:
    """A grid of verification points: every combination of the tuples below.

    Each point is a power-law matrix ``σ_k = k^(−a)`` with Haar singular vectors
    (:func:`zipfrmt.embeddings.power_law_matrix`) of shape ``V×d``, quantized with the symmetric absmax
    quantizer at ``bits`` over the scale groups ``granularity`` (``tensor``, ``row``, ``column`` or
    ``group<N>``) with ``rounding`` (``nearest`` or ``stochastic``). Keys: ``jax.random.key(seed)`` is split
    into (matrix, Lemma 3.1 construction, rounding); the stochastic-rounding key folds in ``bits`` and the
    granularity, so each point is reproducible on its own, whatever the rest of the grid.

    Attributes:
      V, d, a, bits, granularity, rounding, seeds: the axes (non-empty tuples of distinct values).
      rank_window: ``(k_lo, k_hi)`` of the P5 exponent fits (``k_hi = None``: every nonzero σ); the same for
        every shape, so ``k_hi`` must not exceed any ``min(V, d)``.
      bulk: how the additive and Bussgang rows predict the bulk (:func:`zipfrmt.rmt.predict_quantized`):
        ``"auto"`` (what ``zipfrmt analyze`` does: DS at the dead-zone points, where σ_1 is no isolated spike and
        where the tail is cut near θ_c,
        :func:`zipfrmt.rmt.choose_bulk`), ``"mp"`` (fast) or ``"dozier-silverstein"`` (about 0.2–0.5 s per point
        on a CPU).
      sketch_bulk: the bulk of the sketch model's row (:func:`zipfrmt.rmt.predict_from_sketch`, whose k* is
        counted on it): ``"auto"`` (DS at the dead-zone points, where σ_1 is no isolated spike and where the tail
        is cut near θ_c,
        :func:`zipfrmt.rmt.choose_bulk`),
        ``"mp"`` or ``"dozier-silverstein"``.
    """

    V: tuple[int, ...]
    d: tuple[int, ...]
    a: tuple[float, ...]
    bits: tuple[int, ...]
    granularity: tuple[str, ...] = ("tensor", "row", "column", "group32")
    rounding: tuple[str, ...] = ("nearest", "stochastic")
    seeds: tuple[int, ...] = (0,)
    rank_window: tuple[int, int | None] | None = None
    bulk: str = "auto"
    sketch_bulk: str = "auto"

    AXES: ClassVar[tuple[str, ...]] = ("V", "d", "a", "bits", "granularity", "rounding", "seed")

    def __post_init__(self) -> None:
        for name in ("V", "d", "a", "bits", "granularity", "rounding", "seeds"):
            values = getattr(self, name)
            if not isinstance(values, tuple):
                raise TypeError(f"{name}: expected a tuple of values, got {describe(values)}")
            if len(values) == 0:
                raise ValueError(f"{name}: expected at least one value, got an empty tuple (a grid with no points)")
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: expected distinct values, got {values!r}")
        for V in self.V:
            check_int(V, "V", lo=2)
        for d in self.d:
            check_int(d, "d", lo=2)
        for a in self.a:
            check_number(a, "a", lo=0.0, lo_open=True)
        for b in self.bits:
            check_int(b, "bits", lo=2, hi=16)
        for seed in self.seeds:
            check_int(seed, "seeds", lo=0)
        for g in self.granularity:
            _, size = parse_granularity(g)
            if size is not None and not 1 <= size <= min(self.d):
                raise ValueError(f"granularity: expected a group size in [1, min(d) = {min(self.d)}], got {g!r}")
        for r in self.rounding:
            check_choice(r, "rounding", quant.ROUNDINGS)
        check_choice(self.bulk, "bulk", rmt.BULKS)
        check_choice(self.sketch_bulk, "sketch_bulk", rmt.BULKS)
        if self.rank_window is not None:
            w = self.rank_window
            if not isinstance(w, tuple) or len(w) != 2:
                raise TypeError(f"rank_window: expected a tuple (k_lo, k_hi) or None, got {describe(w)}")
            r_min = min(min(V, d) for V in self.V for d in self.d)
            k_lo = check_int(w[0], "rank_window[0]", lo=1, hi=r_min - 1)  # a fit needs two ranks
            if w[1] is not None:
                check_int(w[1], "rank_window[1]", lo=k_lo + 1, hi=r_min)

    @property
    def shape(self) -> tuple[int, ...]:
        """Length of each axis, in the order of :attr:`AXES`."""
        return tuple(len(getattr(self, "seeds" if ax == "seed" else ax)) for ax in self.AXES)

    @property
    def n_points(self) -> int:
        return math.prod(self.shape)

    def as_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON-able Python."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


#: About a minute on a 2-core CPU: 2·1·3·5·4·2·1 = 240 points (one seed: the main job's time goes to the
#: training experiments; FULL_GRID has three). The sketch's k* with the default "auto" bulk (DS at the ~50 dead-zone
#: points, about 0.05 s each since the solver's η-continuation quarters η per step on a 2048-point grid).
QUICK_GRID = VerifyGrid(
    V=(2048, 4096),
    d=(256,),
    a=(0.3, 0.5, 1.0),
    bits=(8, 6, 4, 3, 2),
    granularity=("tensor", "row", "column", "group32"),
    rounding=("nearest", "stochastic"),
    seeds=(0,),
)

#: For a GPU: 2·2·5·6·5·2·3 = 3600 points up to 16384×1024, with the Dozier–Silverstein bulk (better
#: P5 exponents where much of the signal sits near the threshold; about 0.2–0.5 s more per point on a CPU).
FULL_GRID = VerifyGrid(
    V=(4096, 16384),
    d=(512, 1024),
    a=(0.3, 0.5, 0.75, 1.0, 1.5),
    bits=(8, 6, 5, 4, 3, 2),
    granularity=("tensor", "row", "column", "group32", "group128"),
    rounding=("nearest", "stochastic"),
    seeds=(0, 1, 2),
    bulk="dozier-silverstein",
    sketch_bulk="dozier-silverstein",
)

#: Per-point variables of the dataset: name → (dims group, dtype, proposition, kind, description).
#: dims group "point" = all seven axes; "matrix" = (V, d, a, seed).
_VARIABLES: dict[str, tuple[str, str, str, str, str]] = {
    "regime": ("point", "U9", "-", "measured", "widrow or dead-zone (zipfrmt.quant.classify_regime)"),
    "noise_var_model": ("point", "f8", "-", "model", "model variance s² = mean(Δ²)/12 (mean f(1-f)Δ² stochastic)"),
    "noise_var_measured": ("point", "f8", "-", "measured", "mean((Q − W)²)"),
    "bussgang_gain": ("point", "f8", "-", "measured", "g = ⟨W, Q⟩/⟨W, W⟩"),
    "residual_var": ("point", "f8", "-", "measured", "per-entry variance of D = Q − gW"),
    "zero_fraction": ("point", "f8", "-", "measured", "fraction of entries of Q equal to 0"),
    "p1_exponent_predicted": ("matrix", "f8", "P1", "asymptotic", "s/2 with s = 2a"),
    "p1_exponent_measured": ("matrix", "f8", "P1", "measured", "rank exponent of the Lemma 3.1 construction"),
    "stable_rank_full": ("matrix", "f8", "P4", "measured", "r_s(W)"),
    "exponent_full": ("matrix", "f8", "P5", "measured", "a(W) over the rank window"),
    "edge_predicted": ("point", "f8", "P2", "asymptotic", "MP edge s(√V + √d)"),
    "edge_profile": ("point", "f8", "P2", "asymptotic", "edge for the row/column variance profile (NaN: group)"),
    "sigma_max_E": ("point", "f8", "P2", "measured", "‖E‖₂ = σ_1(Q − W)"),
    "fro_E": ("point", "f8", "P2", "measured", "‖E‖_F"),
    "apriori_bound": ("point", "f8", "P2", "rigorous", "c‖Δ‖_F, c = ½ nearest, 1 stochastic"),
    "weyl_violations": ("point", "i8", "P2", "rigorous", "#k with |σ_k(Q) − σ_k(W)| > ‖E‖₂ + tol"),
    "weyl_tightness": ("point", "f8", "P2", "measured", "max_k |σ_k(Q) − σ_k(W)| / ‖E‖₂"),
    "fro_bound_holds": ("point", "?", "P2", "rigorous", "‖E‖₂ ≤ ‖E‖_F"),
    "apriori_bound_holds": ("point", "?", "P2", "rigorous", "‖E‖_F ≤ c‖Δ‖_F"),
    "k_star_additive": ("point", "i8", "P3", "asymptotic", "#{σ_k > s(Vd)^(1/4)} (DS bulk: #{σ̃_k > s(√V + √d)})"),
    "k_star_bussgang": ("point", "i8", "P3", "asymptotic", "#{gσ_k > s_D(Vd)^(1/4)} (DS bulk: #{σ̃_k > s_D(√V+√d)})"),
    "k_measured": ("point", "i8", "P3", "measured", "#{σ_k(Q) > s(√V + √d)}"),
    "k_measured_bussgang": ("point", "i8", "P3", "measured", "#{σ_k(Q) > s_D(√V + √d)}, the residual's edge"),
    "k_measured_shuffled": ("point", "i8", "P3", "measured",
                            "#{σ_k(gW + P(D)) > s_D(√V + √d)}, the residual's entries shuffled (a control)"),
    "k_star_sketch": ("point", "i8", "P3", "asymptotic", "#{σ̃_k > floor} on the sketch model's spectrum"),
    "k_star_profile": ("point", "f8", "P3", "asymptotic",
                       "#{σ̃_k > s_D(√V+√d)} on the residual-profile law (dead-zone points; NaN elsewhere)"),
    "k_measured_profile": ("point", "f8", "P3", "measured", "#{σ_k(Q) > s_D(√V + √d)} (dead-zone points)"),
    "k_measured_sketch": ("point", "i8", "P3", "measured", "#{σ_k(Q) > floor of the sketch model's regime}"),
    "sigma1_additive": ("point", "f8", "P4", "asymptotic", "σ̃_1, spiked map of σ_1 (additive)"),
    "sigma1_bussgang": ("point", "f8", "P4", "asymptotic", "σ̃_1, spiked map of gσ_1 (Bussgang)"),
    "sigma1_sketch": ("point", "f8", "P4", "asymptotic", "σ̃_1 from the one-pass sketch (rmt.predict_from_sketch)"),
    "sigma1_profile": ("point", "f8", "P4", "asymptotic", "σ̃_1, top of the residual-profile law (dead-zone points)"),
    "sigma1_measured": ("point", "f8", "P4", "measured", "σ_1(Q)"),
    "stable_rank_additive": ("point", "f8", "P4", "asymptotic", "(Σσ² + Vds²)/σ̃_1²"),
    "stable_rank_bussgang": ("point", "f8", "P4", "asymptotic", "(g²Σσ² + Vds_D²)/σ̃_1²"),
    "stable_rank_profile": ("point", "f8", "P4", "asymptotic",
                            "(g²Σσ² + Vds_D²)/σ̃_1², σ̃_1 of the residual-profile law (dead-zone points)"),
    "stable_rank_sketch": ("point", "f8", "P4", "asymptotic", "‖Q‖_F²/σ̃_1² with the sketched σ̃_1"),
    "stable_rank_measured": ("point", "f8", "P4", "measured", "r_s(Q)"),
    "stable_rank_fluctuation": ("point", "f8", "P4", "asymptotic", "2s/σ̃_1, relative finite-size std"),
    "sr_lower_bound": ("point", "f8", "P4", "rigorous", "‖Q‖_F²/(‖W‖₂ + ‖E‖₂)²"),
    "sr_upper_bound": ("point", "f8", "P4", "rigorous", "‖Q‖_F²/(‖W‖₂ − ‖E‖₂)² (inf if ‖E‖₂ ≥ ‖W‖₂)"),
    "sr_bounds_hold": ("point", "?", "P4", "rigorous", "lower ≤ r_s(Q) ≤ upper"),
    "sr_increase_certified": ("point", "?", "P4", "rigorous", "lower bound > r_s(W)"),
    "exponent_additive": ("point", "f8", "P5", "asymptotic", "a of the predicted spectrum (additive)"),
    "exponent_bussgang": ("point", "f8", "P5", "asymptotic", "a of the predicted spectrum (Bussgang)"),
    "exponent_sketch": ("point", "f8", "P5", "asymptotic", "a of the sketch model's predicted spectrum"),
    "exponent_measured": ("point", "f8", "P5", "measured", "a(Q) over the rank window"),
}

_FILL = {"f8": math.nan, "i8": -1, "?": False, "U9": ""}


def _point_values(
    W: jax.Array, sW: np.ndarray, pair: tuple[np.ndarray, np.ndarray], V: int, d: int, bits: int, gran: str,
    rounding: str, key: Any, grid: VerifyGrid
) -> dict[str, Any]:
    """Quantizes W at one configuration, measures, predicts and checks every proposition (``pair``: W's top
    singular vectors, for the sketch model)."""
    kind, group = parse_granularity(gran)
    res = quant.quantize(W, bits, granularity=kind, group_size=group, rounding=rounding, key=key)
    m = measure(W, res.dequantized, sigma_W=sW)
    g = max(m.gain, 0.0)
    bulk_a = rmt.choose_bulk(grid.bulk, res.regime, sW, V, d, res.noise_var_model)
    bulk_b = rmt.choose_bulk(grid.bulk, res.regime, sW, V, d, m.residual_var, g)
    pa = rmt.predict_quantized(sW, V, d, res.noise_var_model, bulk=bulk_a, rank_window=grid.rank_window)
    pb = rmt.predict_quantized_bussgang(sW, V, d, g, m.residual_var, bulk=bulk_b, rank_window=grid.rank_window)
    nf = noise_floor(V, d, res.noise_var_model, m, result=res)
    wb = weyl_bounds(m, result=res)
    tr = truncation_index(pa, m, bussgang=pb)
    sr = stable_rank_increase(pa, m, bussgang=pb)
    fl = spectral_flattening(pa, m, bussgang=pb)
    ps = rmt.predict_from_sketch(sW, V, d, res, sketch.quant_sketch(res.dequantized, *pair), bulk=grid.sketch_bulk,
                                 rank_window=grid.rank_window)
    profile = _profile_values(W, res, sW, m.sigma_Q, grid)
    return {
        "regime": res.regime,
        "noise_var_model": res.noise_var_model,
        "noise_var_measured": m.fro2_E / (V * d),
        "bussgang_gain": g,
        "residual_var": m.residual_var,
        "zero_fraction": res.zero_fraction,
        "edge_predicted": nf.predicted,
        "edge_profile": math.nan if nf.profile_edge is None else nf.profile_edge,
        "sigma_max_E": nf.measured,
        "fro_E": wb.fro_E,
        "apriori_bound": math.nan if wb.apriori is None else wb.apriori,
        "weyl_violations": wb.violations,
        "weyl_tightness": wb.tightness,
        "fro_bound_holds": wb.fro_holds,
        "apriori_bound_holds": bool(wb.apriori_holds) if wb.apriori_holds is not None else True,
        "k_star_additive": tr.predicted,
        "k_star_bussgang": tr.predicted_bussgang,
        "k_measured": tr.measured,
        "k_measured_bussgang": tr.measured_bussgang,
        "k_measured_shuffled": count_with_shuffled_residual(W, res.dequantized, g, pb.noise_floor),
        "k_star_sketch": ps.truncation_index,
        "k_measured_sketch": rmt.count_above_floor(m.sigma_Q, ps),
        "sigma1_additive": sr.sigma1_predicted,
        "sigma1_bussgang": sr.sigma1_bussgang,
        "sigma1_sketch": ps.sigma1,
        "sigma1_measured": sr.sigma1_measured,
        "stable_rank_additive": sr.predicted,
        "stable_rank_bussgang": sr.predicted_bussgang,
        "stable_rank_sketch": ps.stable_rank,
        "stable_rank_measured": sr.measured,
        "stable_rank_fluctuation": sr.fluctuation,
        "sr_lower_bound": sr.lower_bound,
        "sr_upper_bound": sr.upper_bound,
        "sr_bounds_hold": sr.bounds_hold,
        "sr_increase_certified": sr.increase_certified,
        "exponent_additive": fl.predicted,
        "exponent_bussgang": fl.predicted_bussgang,
        "exponent_sketch": ps.decay.a,
        "exponent_measured": fl.measured,
        **profile,
    }


def _profile_values(W: jax.Array, res: Any, sW: np.ndarray, sigma_Q: np.ndarray, grid: VerifyGrid) -> dict[str, float]:
    """The residual-profile model (:func:`zipfrmt.variance_profile.predict_with_residual_profile`) at a dead-zone
    point — its solve costs 0.3–1.2 s at 4096×256 — and NaN at the Widrow points, where the i.i.d. law already holds."""
    if res.regime != "dead-zone":
        return {"k_star_profile": math.nan, "k_measured_profile": math.nan, "sigma1_profile": math.nan,
                "stable_rank_profile": math.nan}
    pp = variance_profile.predict_from_quantized(sW, W, res, rank_window=grid.rank_window)
    return {"k_star_profile": float(pp.truncation_index),
            "k_measured_profile": float(rmt.count_above_floor(sigma_Q, pp)),
            "sigma1_profile": pp.sigma1, "stable_rank_profile": pp.stable_rank}


def verify(
    grid: VerifyGrid,
    *,
    root: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    name: str = "verify",
) -> Any:
    """Sweeps every point of ``grid``: build, quantize, measure, predict, check. Returns an ``xarray.Dataset``.

    With ``root`` the sweep goes through :func:`zipfrmt.sweep.run_grid`, one block per matrix
    ``(V, d, a, seed)``: each finished block is stored under ``root/name/`` at once, so an interrupted sweep
    resumes at the matrix it stopped in and a finished one is read back; the joined blocks equal the dataset
    one pass over the whole grid gives (every point's keys depend on its own coordinates only). ``force``
    recomputes. Without ``root`` everything is computed in memory.

    Per ``(V, d, a, seed)`` one power-law matrix W is built and its singular values computed once
    (:func:`measure` reuses them for every bit width, scale group and rounding), and the Lemma 3.1
    construction with ``s = 2a`` is measured for P1. Per point W is quantized
    (:func:`zipfrmt.quant.quantize`), the spectra of Q and E = Q − W are computed through their Gram matrices
    (no full SVD), and both models are predicted: the additive one with the quantizer's *model* noise variance
    (:func:`zipfrmt.rmt.predict_quantized`) and the Bussgang one with the *measured* gain and residual
    variance (:func:`zipfrmt.rmt.predict_quantized_bussgang`); and the sketch model
    (:func:`zipfrmt.rmt.predict_from_sketch`, with W's top singular pair from
    :func:`zipfrmt.sketch.top_singular_pair`, once per matrix), whose ``k*`` is measured against its own
    regime's noise floor (``k_measured_sketch``).

    Returns:
      A Dataset with dims ``(V, d, a, bits, granularity, rounding, seed)`` (the matrix-level variables —
      ``p1_*``, ``stable_rank_full``, ``exponent_full`` — on ``(V, d, a, seed)``), one variable per predicted or
      measured quantity (each with attributes ``proposition``, ``kind`` and ``description``), ``regime`` per
      point, and attributes ``grid`` (JSON of the config), ``zipfrmt_version``, ``rigorous_rtol``.

    Raises:
      RuntimeError: a point failed; the message names its configuration (the sweep never skips silently).
    """
    if not isinstance(grid, VerifyGrid):
        raise TypeError(f"grid: expected a VerifyGrid, got {describe(grid)}")
    if root is None:
        return _verify_block(grid, progress)
    points = [{"V": V, "d": d, "a": a, "seed": s} for V in grid.V for d in grid.d for a in grid.a for s in grid.seeds]

    def block(p: dict[str, Any]) -> Any:
        sub = dataclasses.replace(grid, V=(p["V"],), d=(p["d"],), a=(p["a"],), seeds=(p["seed"],))
        return _verify_block(sub, False)

    ds = sweep.run_grid(name, grid, points, block, root=root, force=force, progress=progress, combine="by_coords")
    ds.attrs.update(_attrs(grid))
    return ds


def _attrs(grid: VerifyGrid) -> dict[str, Any]:
    return {
        "title": "zipfrmt numerical verification of the flattening propositions P1-P5",
        "grid": json.dumps(grid.as_dict()),
        "zipfrmt_version": zipfrmt.__version__,
        "jax_version": jax.__version__,
        "rigorous_rtol": RIGOROUS_RTOL,
        "measure_method": MEASURE_METHOD,
    }


def _verify_block(grid: VerifyGrid, progress: bool) -> Any:
    """Every point of ``grid`` in one pass (see :func:`verify`)."""
    import xarray as xr
    from tqdm import tqdm

    shape = grid.shape
    mshape = (shape[0], shape[1], shape[2], shape[6])
    arrays = {
        name: np.full(shape if group == "point" else mshape, _FILL[dt], dtype=dt)
        for name, (group, dt, *_rest) in _VARIABLES.items()
    }
    bar = tqdm(total=grid.n_points, desc="verify", file=sys.stderr, disable=not progress, unit="pt")
    try:
        for (iV, V), (id_, d), (ia, a), (iseed, seed) in itertools.product(
            enumerate(grid.V), enumerate(grid.d), enumerate(grid.a), enumerate(grid.seeds)
        ):
            where = f"V={V}, d={d}, a={a}, seed={seed}"
            try:
                k_matrix, k_lemma, k_round = jax.random.split(jax.random.key(seed), 3)
                W = embeddings.power_law_matrix(k_matrix, V, d, a)
                sW = f64(spectra.singular_values(W, MEASURE_METHOD))
                lemma = lemma_embedding(k_lemma, V, d, 2 * a)
                p1 = zipf_rank_exponent(2 * a, spectra.singular_values(lemma, MEASURE_METHOD))
                k_lo, k_hi = grid.rank_window if grid.rank_window is not None else (1, None)
                mi = (iV, id_, ia, iseed)
                arrays["p1_exponent_predicted"][mi] = p1.predicted
                arrays["p1_exponent_measured"][mi] = p1.measured
                arrays["stable_rank_full"][mi] = float(np.sum(sW**2) / sW[0] ** 2)
                arrays["exponent_full"][mi] = spectra.rank_decay_exponent(sW, k_lo, k_hi).a
                pair = sketch.top_singular_pair(W)
            except Exception as exc:  # noqa: BLE001 - re-raised with the point's configuration
                raise RuntimeError(f"verify: the matrix at {where} failed: {type(exc).__name__}: {exc}") from exc
            for (ib, bits), (ig, gran), (ir, rounding) in itertools.product(
                enumerate(grid.bits), enumerate(grid.granularity), enumerate(grid.rounding)
            ):
                key = None
                if rounding == "stochastic":
                    key = jax.random.fold_in(jax.random.fold_in(k_round, bits), _gran_code(gran))
                try:
                    values = _point_values(W, sW, pair, V, d, bits, gran, rounding, key, grid)
                except Exception as exc:  # noqa: BLE001 - re-raised with the point's configuration
                    raise RuntimeError(
                        f"verify: the point {where}, bits={bits}, granularity={gran!r}, rounding={rounding!r} "
                        f"failed: {type(exc).__name__}: {exc}"
                    ) from exc
                pi = (iV, id_, ia, ib, ig, ir, iseed)
                for name, value in values.items():
                    arrays[name][pi] = value
                bar.update(1)
    finally:
        bar.close()
    coords = {
        "V": list(grid.V),
        "d": list(grid.d),
        "a": list(grid.a),
        "bits": list(grid.bits),
        "granularity": list(grid.granularity),
        "rounding": list(grid.rounding),
        "seed": list(grid.seeds),
    }
    mdims = ("V", "d", "a", "seed")
    data_vars = {}
    for name, (group, _dt, prop, kind, desc) in _VARIABLES.items():
        dims = VerifyGrid.AXES if group == "point" else mdims
        data_vars[name] = (dims, arrays[name], {"proposition": prop, "kind": kind, "description": desc})
    return xr.Dataset(data_vars, coords=coords, attrs=_attrs(grid))


