"""The verification table: a :func:`~zipfrmt.bounds.verify` dataset condensed per proposition, quantity,
model and regime; printed for ``zipfrmt verify`` and written as JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

import zipfrmt
from zipfrmt.bounds.grid import FULL_GRID, QUICK_GRID, verify
from zipfrmt.bounds.measure import f64
from zipfrmt.checks import check_choice, describe
from zipfrmt.tables import jsonable

__all__ = ["format_table", "run_verify", "verification_table"]

# ---------------------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------------------

#: Asymptotic comparisons: (proposition, quantity, model, predicted variable, measured variable, error kind).
#: Error kinds: "rel" = (pred − meas)/|meas|; "count" = (pred − meas)/max(meas, 1).
_ASYMPTOTIC: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("P1", "rank exponent s/2 (Lemma 3.1)", "-", "p1_exponent_predicted", "p1_exponent_measured", "rel"),
    ("P2", "‖E‖₂ vs MP edge s(√V+√d)", "additive", "edge_predicted", "sigma_max_E", "rel"),
    ("P2", "‖E‖₂ vs edge of the variance profile", "profile", "edge_profile", "sigma_max_E", "rel"),
    ("P3", "truncation index k*", "additive", "k_star_additive", "k_measured", "count"),
    ("P3", "truncation index k*", "bussgang", "k_star_bussgang", "k_measured_bussgang", "count"),
    ("P3", "truncation index k*", "sketch", "k_star_sketch", "k_measured_sketch", "count"),
    ("P3", "truncation index k*", "bussgang-profile", "k_star_profile", "k_measured_profile", "count"),
    ("P3", "k* of gW + shuffled residual (control)", "bussgang", "k_star_bussgang", "k_measured_shuffled", "count"),
    ("P4", "σ_1(Q) (spiked map)", "additive", "sigma1_additive", "sigma1_measured", "rel"),
    ("P4", "σ_1(Q) (spiked map)", "bussgang", "sigma1_bussgang", "sigma1_measured", "rel"),
    ("P4", "σ_1(Q) (spiked map)", "sketch", "sigma1_sketch", "sigma1_measured", "rel"),
    ("P4", "σ_1(Q) (spiked map)", "bussgang-profile", "sigma1_profile", "sigma1_measured", "rel"),
    ("P4", "stable rank r_s(Q)", "additive", "stable_rank_additive", "stable_rank_measured", "rel"),
    ("P4", "stable rank r_s(Q)", "bussgang", "stable_rank_bussgang", "stable_rank_measured", "rel"),
    ("P4", "stable rank r_s(Q)", "sketch", "stable_rank_sketch", "stable_rank_measured", "rel"),
    ("P4", "stable rank r_s(Q)", "bussgang-profile", "stable_rank_profile", "stable_rank_measured", "rel"),
    ("P5", "rank exponent a(Q)", "additive", "exponent_additive", "exponent_measured", "rel"),
    ("P5", "rank exponent a(Q)", "bussgang", "exponent_bussgang", "exponent_measured", "rel"),
    ("P5", "rank exponent a(Q)", "sketch", "exponent_sketch", "exponent_measured", "rel"),
)

_REGIMES = ("widrow", "dead-zone")


def _stats(err: np.ndarray) -> tuple[int, float, float]:
    """(n finite, median |err|, worst |err|) of an error array."""
    e = np.abs(err[np.isfinite(err)])
    if e.size == 0:
        return 0, math.nan, math.nan
    return int(e.size), float(np.median(e)), float(e.max())


def _errors(ds: Any, pred: str, meas: str, how: str) -> np.ndarray:
    p, m = f64(ds[pred].values), f64(ds[meas].values)
    with np.errstate(divide="ignore", invalid="ignore"):
        if how == "count":
            return (p - m) / np.maximum(m, 1.0)
        out = (p - m) / np.abs(m)
        return np.where((m == 0) & (p == 0), 0.0, out)


def _row(prop: str, quantity: str, kind: str, model: str, points: int, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "proposition": prop,
        "quantity": quantity,
        "kind": kind,
        "model": model,
        "points": points,
        "violations": None,
        "certified": None,
    }
    for group in ("all", *_REGIMES):
        row.update({f"{group}_n": None, f"{group}_median": None, f"{group}_worst": None})
    row.update(extra)
    return row


def verification_table(ds: Any) -> list[dict[str, Any]]:
    """Condenses a :func:`verify` Dataset: one row per proposition, quantity and model (plain Python, JSON-able).

    Each row has ``proposition``, ``quantity``, ``kind`` (rigorous / asymptotic / empirical), ``model``
    (additive / bussgang / sketch / -), ``points`` (how many were checked), ``violations`` (rigorous rows: must be 0),
    ``certified`` (rows that count successes, e.g. P4 increases certified by the rigorous bracket, P5 points
    that flattened), and for asymptotic rows ``{group}_n``, ``{group}_median`` and ``{group}_worst`` — the
    number of finite errors, the median and the worst absolute relative error — for ``group`` in ``all``,
    ``widrow`` and ``dead-zone`` (the regime of each point; P1 has no regime and fills only ``all``).
    The additive model's errors in the dead-zone regime are reported like any others, never hidden.
    A final P4 row restricts the stable rank to the pinned target set: widrow, b ≥ 3, non-tensor scale groups.
    """
    if not (hasattr(ds, "data_vars") and "regime" in ds.data_vars):
        raise TypeError(f"ds: expected the xarray.Dataset returned by bounds.verify, got {describe(ds)}")
    regime = np.asarray(ds["regime"].values).astype(str)
    n_points = int(regime.size)
    rows: list[dict[str, Any]] = []
    for prop, quantity, model, pred, meas, how in _ASYMPTOTIC:
        if pred not in ds or meas not in ds:  # results stored before the variable existed: the row is left out
            continue
        err = _errors(ds, pred, meas, how)
        if prop == "P1":
            n, med, worst = _stats(err)
            rows.append(
                _row(prop, quantity, "asymptotic", model, int(err.size), all_n=n, all_median=med, all_worst=worst)
            )
            continue
        extra: dict[str, Any] = {}
        for group in ("all", *_REGIMES):
            sel = np.ones(err.shape, bool) if group == "all" else regime == group
            n, med, worst = _stats(err[sel])
            extra.update({f"{group}_n": n, f"{group}_median": med, f"{group}_worst": worst})
        rows.append(_row(prop, quantity, "asymptotic", model, n_points, **extra))
        if pred == "stable_rank_additive":
            bits = ds["bits"].broadcast_like(ds["regime"]).values
            gran = ds["granularity"].broadcast_like(ds["regime"]).values.astype(str)
            target = (regime == "widrow") & (bits >= 3) & (gran != "tensor")
            n, med, worst = _stats(err[target])
            rows.append(
                _row(prop, "stable rank, target set (widrow, b≥3, no tensor)", "asymptotic", model, int(target.sum()),
                     widrow_n=n, widrow_median=med, widrow_worst=worst)
            )
    weyl = np.asarray(ds["weyl_violations"].values)
    rows.append(_row("P2", "Weyl |σ_k(Q)−σ_k(W)| ≤ ‖E‖₂ (all k)", "rigorous", "-", n_points,
                     violations=int(np.sum(weyl > 0)), note=f"{int(weyl.sum())} (point, k) violations"))
    rows.append(_row("P2", "‖E‖₂ ≤ ‖E‖_F", "rigorous", "-", n_points,
                     violations=int(np.sum(~np.asarray(ds["fro_bound_holds"].values)))))
    has_apriori = np.isfinite(f64(ds["apriori_bound"].values))
    rows.append(_row("P2", "‖E‖_F ≤ c‖Δ‖_F (a priori, steps only)", "rigorous", "-", int(has_apriori.sum()),
                     violations=int(np.sum(~np.asarray(ds["apriori_bound_holds"].values) & has_apriori))))
    rows.append(_row("P4", "‖Q‖_F²/(‖W‖₂±‖E‖₂)² brackets r_s(Q)", "rigorous", "-", n_points,
                     violations=int(np.sum(~np.asarray(ds["sr_bounds_hold"].values))),
                     certified=int(np.sum(np.asarray(ds["sr_increase_certified"].values))),
                     note="certified = lower bound > r_s(W)"))
    rs_rise = f64(ds["stable_rank_measured"].values) > f64(ds["stable_rank_full"].broadcast_like(ds["regime"]).values)
    rows.append(_row("P4", "r_s(Q) > r_s(W) observed", "empirical", "-", n_points, certified=int(rs_rise.sum())))
    a_full = f64(ds["exponent_full"].broadcast_like(ds["regime"]).values)
    flat_m = f64(ds["exponent_measured"].values) < a_full
    flat_p = f64(ds["exponent_additive"].values) < a_full
    rows.append(_row("P5", "a(Q) < a(W) observed", "empirical", "-", n_points, certified=int(flat_m.sum()),
                     note=f"additive prediction agrees at {int(np.sum(flat_m == flat_p))} points"))
    return rows


def _pct(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{100 * x:.2f}%" if abs(x) < 10 else f"{100 * x:.3g}%"


def format_table(rows: list[dict[str, Any]]) -> str:
    """A readable text table of :func:`verification_table` rows (errors as absolute relative errors, %)."""
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"rows: expected the non-empty list of dicts returned by verification_table, "
                        f"got {describe(rows)}")
    head = ("P", "quantity", "kind", "model", "points", "viol.", "certif.",
            "widrow n", "med", "worst", "dead-zone n", "med", "worst", "all med", "worst")
    body = []
    for r in rows:
        def cnt(k: str, r: dict[str, Any] = r) -> str:
            return "-" if r.get(k) is None else str(r[k])

        body.append((
            r["proposition"], r["quantity"], r["kind"], r["model"], str(r["points"]), cnt("violations"),
            cnt("certified"), cnt("widrow_n"), _pct(r.get("widrow_median")), _pct(r.get("widrow_worst")),
            cnt("dead-zone_n"), _pct(r.get("dead-zone_median")), _pct(r.get("dead-zone_worst")),
            _pct(r.get("all_median")), _pct(r.get("all_worst")),
        ))
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    left = {1, 2, 3}

    def line(cells: tuple[str, ...]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in pairs)

    out = [line(head), "  ".join("-" * w for w in widths), *(line(b) for b in body)]
    notes = [f"  {r['proposition']} {r['quantity']}: {r['note']}" for r in rows if r.get("note")]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


def run_verify(
    scale: str = "quick", json_path: str | Path | None = None, *, progress: bool = True
) -> tuple[Any, list[dict[str, Any]]]:
    """Runs :func:`verify` on :data:`QUICK_GRID` (``"quick"``) or :data:`FULL_GRID` (``"full"``).

    Returns ``(dataset, rows)`` with ``rows = verification_table(dataset)``. With ``json_path`` it also writes
    ``{"scale", "grid", "zipfrmt_version", "rows"}`` there (NaN as null). This is ``zipfrmt verify
    [--scale quick|full] [--json OUT]``; print the rows with :func:`format_table`.
    """
    scale = check_choice(scale, "scale", ("quick", "full"))
    grid = QUICK_GRID if scale == "quick" else FULL_GRID
    ds = verify(grid, progress=progress)
    rows = verification_table(ds)
    if json_path is not None:
        payload = {"scale": scale, "grid": grid.as_dict(), "zipfrmt_version": zipfrmt.__version__, "rows": rows}
        Path(json_path).write_text(json.dumps(jsonable(payload), indent=2, ensure_ascii=False) + "\n")
    return ds, rows

