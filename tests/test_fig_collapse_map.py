"""fig_collapse_map at test scale: both phases run, every run is in the table, the cache is reused, the reading
takes its numbers from the dataset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from experiments import fig_collapse_map as fig
from zipfrmt import sweep


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    return root, fig.run(fig.SCALES["test"], root=root, progress=False)


def test_every_mechanism_runs_and_failures_get_their_controls(result):
    _, ds = result
    rs = fig.rows(ds)
    config = fig.SCALES["test"]
    base = [r for r in rs if r["control"] == "none"]
    assert {r["mechanism"] for r in base} == set(config.mechanisms)
    failing = {(r["mechanism"], r["precision"]) for r in base if fig._fails(r)}
    controls = {(r["mechanism"], r["control"]) for r in rs if r["control"] != "none"}
    for mech, _ in failing:  # at least two controls per failing mechanism (one only where just one applies)
        wanted = {c for c in config.controls if c != "frozen" or mech == "master"}
        assert {c for m, c in controls if m == mech} == wanted
    assert all(r["mechanism"] == "master" for r in rs if r["control"] == "frozen")
    for r in rs:
        assert r["status"] in ("ok", "collapsed", "diverged")
        assert math.isfinite(r["fp32_loss"]) and 0.0 <= r["below_edge"] <= 1.0


def test_the_actgrad_failure_is_attributed_to_the_gradient_not_the_embedding(result):
    """At 2 bits the logit cotangent loses its push-down mass; the embedding is not quantized (dose 0)."""
    _, ds = result
    r = next(r for r in fig.rows(ds) if (r["mechanism"], r["control"]) == ("actgrad", "none"))
    assert r["below_edge"] == 0.0 and r["pushdown_kept"] < 0.1


def test_table_lists_every_run_and_renders_from_disk(result, tmp_path, monkeypatch):
    root, ds = result
    again = fig.run(fig.SCALES["test"], root=root, progress=False)  # read back, not retrained

    def fail(*a, **k):
        raise AssertionError("retrained although cached")

    import zipfrmt.nn.experiment as nx

    monkeypatch.setattr(nx, "train", fail)
    np.testing.assert_array_equal(np.asarray(again["gap"].values), np.asarray(ds["gap"].values))
    paths = fig.render(ds, tmp_path)
    md = (tmp_path / "tables" / "fig_collapse_map.md").read_text()
    lines = [ln for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| corpus")]
    assert len(lines) == ds.sizes["run"]
    header = md.splitlines()[0]
    for col in ("corpus", "mechanism", "bits", "control", "seed", "lr", "loss", "fp32 loss", "gap", "status",
                "below-edge fraction"):
        assert f"| {col} |" in header or header.startswith(f"| {col} ")
    assert any(p.suffix == ".png" and p.stat().st_size > 10_000 for p in paths)
    config = fig.SCALES["test"]
    assert sweep.load_cached(fig.NAME, {"config": config, "points": fig.base_points(config)}, root) is not None


def test_reading_quotes_the_dataset(result):
    _, ds = result
    text = fig.describe(ds)
    assert f"{ds.sizes['run']} runs" in text and "Spearman" in text
    for r in fig.rows(ds):
        if r["control"] == "none" and fig._fails(r):
            assert f"**{r['mechanism']}**" in text


def test_departure_step_is_the_start_of_the_last_departed_stretch():
    from zipfrmt.nn.lab import departure_step

    steps = np.arange(6)
    ref = np.ones(6)
    v = np.array([1.0, 1.5, 1.0, 1.2, 1.3, 1.4])
    assert departure_step(steps, v, ref, 0.1, relative=True) == 3.0
    assert math.isnan(departure_step(steps, np.ones(6), ref, 0.1, relative=True))
    assert departure_step(steps, ref + np.array([0, 0, 0.2, 0.2, 0.2, 0.2]), ref, 0.05, relative=False) == 2.0


def test_mechanism_configs_are_the_documented_rules():
    from zipfrmt.nn import PRESETS, format_rules
    from zipfrmt.nn.lab import mechanism_config

    base = PRESETS["tiny"]
    assert format_rules(mechanism_config(base, "forward", "2").quant) == (
        "linear=int2-row,embed=int2-row,head=int2-row,act=int8-row")
    assert format_rules(mechanism_config(base, "opt", "nf4").quant) == "opt=nf4"
    frozen = mechanism_config(base, "master", "2", "frozen")
    assert frozen.freeze == ("embed",) and format_rules(frozen.quant) == "master/embed=fp32,master=int2-row"
    assert mechanism_config(base, "actgrad", "2", "noise").control == "noise"
    with pytest.raises(ValueError, match="control: 'frozen'"):
        mechanism_config(base, "wgrad", "2", "frozen")


def test_result_dataset_round_trips_through_netcdf(result, tmp_path):
    _, ds = result
    path = tmp_path / "m.nc"
    ds.to_netcdf(path, engine="netcdf4")
    back = xr.load_dataset(path, engine="netcdf4")
    assert fig.describe(back) == fig.describe(ds)


def _row(**kw):
    base = {"corpus": "latent", "mechanism": "master", "precision": "2", "control": "none", "seed": 0, "lr": 3e-3,
            "gap": 0.9, "status": "collapsed", "below_edge": 0.2, "emb_stable_rank_ratio": 20.0,
            "hidden_rank_ratio": 5.0, "pushdown_kept": math.nan, "lead_emb": math.nan, "fp32_plateau": True,
            "fp32_improvement": 0.01, "fp32_at_unigram": False}
    return base | kw


def test_reading_names_diverged_controls_and_verdicts_at_the_criterion_edge():
    rs = [_row(seed=0), _row(seed=1),
          _row(control="noise", gap=math.inf, status="diverged"), _row(control="noise", seed=1, gap=math.inf,
                                                                        status="diverged"),
          _row(control="stochastic", gap=0.01, status="ok", below_edge=0.0),
          _row(control="stochastic", seed=1, gap=0.02, status="collapsed", below_edge=0.0,
               reason="held-out loss 4.0 ≥ unigram loss 4.04 − 0.05 nats"),
          _row(mechanism="embed", gap=0.01, status="ok", below_edge=0.5),
          _row(mechanism="actgrad", gap=0.05, status="collapsed", below_edge=0.0,
               reason="hidden effective rank 2 < 0.5 x full-precision 8"),
          _row(mechanism="actgrad", seed=1, gap=math.inf, status="diverged", below_edge=0.0)]
    text = fig._reading(rs)
    assert "noise: gap ∞, diverged (fails too)" in text
    assert "1 run(s) (latent) are called collapsed by the unigram part of the criterion while within 0.1" in text
    assert "stochastic: gap 0.015 ± 0.005 (recovers)" in text  # the edge verdict is not a failure
    assert "- **master** at 2" in text
    assert "**actgrad** at 2 (latent, lr 0.003) fails in 2 of 2 seed(s): gap 0.05 (1 of 2 diverged) nats" in text
    assert "1 run(s) have ≥ 25% of the embedding's spectrum below the noise edge and do not fail (embed 1)" in text
    assert "over the 6 that did not diverge" in text


def test_the_map_marks_which_runs_fail(result):
    _, ds = result
    assert ds["fails"].dtype == bool
    for r in fig.rows(ds):
        assert r["fails"] == (r["status"] == "diverged" or not r["gap"] <= fig.FAIL_GAP
                              or (r["status"] == "collapsed" and not fig._edge(r)))
