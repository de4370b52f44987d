"""experiments/fig_noise_floor: runs at test scale, renders from the saved dataset, reads the result honestly."""

import numpy as np
import pytest
import xarray as xr

from experiments import fig_noise_floor as fig
from zipfrmt import sweep

CONFIG = fig.SCALES["test"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    return root, fig.run(CONFIG, root=root, progress=False)


def _panel(ds):
    """The per-tensor round-to-nearest points of panel (a), most bits first."""
    return ds.isel(point=fig.spectrum_selection(ds))


def test_renders_from_the_reopened_dataset_without_recomputing(result, tmp_path, monkeypatch):
    root, ds = result
    path = sweep.result_path(fig.NAME, CONFIG, root)
    assert path.exists()

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although the result was cached")

    monkeypatch.setattr(fig, "measure_setting", fail)
    again = fig.run(CONFIG, root=root, progress=False)  # a cache hit
    reopened = xr.open_dataset(path, engine="netcdf4").load()
    xr.testing.assert_identical(again, reopened)
    paths = fig.render(reopened, tmp_path)
    assert sorted(p.suffix for p in paths) == [".pdf", ".png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert paths[0] == tmp_path / "figures" / f"{fig.NAME}.png"


def test_dataset_holds_every_setting_and_its_spectra(result):
    _, ds = result
    n = len(CONFIG.bits) * len(CONFIG.granularities) * len(CONFIG.roundings)
    assert ds.sizes["point"] == n
    V, d = CONFIG.shapes[0]
    assert ds.sizes["rank"] == min(V, d)
    for name in ("sigma_fp", "sigma_measured", "sigma_predicted"):
        assert ds[name].dims == ("point", "rank")
    assert set(np.asarray(ds["regime"].values).astype(str)) <= {"widrow", "dead-zone"}
    # the full-precision spectrum is the prescribed power law
    np.testing.assert_allclose(ds["sigma_fp"].values[0], np.arange(1, min(V, d) + 1) ** -CONFIG.exponents[0],
                               rtol=1e-3)


def test_describe_reads_its_numbers_from_the_dataset(result):
    _, ds = result
    text = fig.describe(ds)
    panel = _panel(ds)
    assert "k* = " + ", ".join(str(int(k)) for k in panel["k_measured"].values) in text
    assert "k* = " + ", ".join(str(int(k)) for k in panel["k_predicted"].values) in text
    V, d = CONFIG.shapes[0]
    assert f"{V}×{d}" in text


def test_the_noise_floor_truncates_the_tail_more_as_bits_fall(result):
    _, ds = result
    panel = _panel(ds)
    bits = panel["bits"].values
    assert list(bits) == sorted(CONFIG.bits, reverse=True)
    k = panel["k_measured"].values
    model_var = panel["noise_var_model"].values  # Widrow s² = mean(Δ²)/12: grows as bits fall
    r = ds.sizes["rank"]
    assert np.all(np.diff(k) <= 0), f"measured k* should not grow as bits fall: {dict(zip(bits, k, strict=True))}"
    assert k[0] == r and k[-1] < r // 4  # 8 bits keep the whole spectrum, 2 bits a small head of it
    assert np.all(np.diff(model_var) > 0)
    # The bulk sits at the predicted floor: the largest truncated singular value is within 15% below it
    # (it is below by definition of the measured k*; far below would mean a wrong floor).
    for p in range(ds.sizes["point"]):
        pt = ds.isel(point=p)
        km = int(pt["k_measured"])
        if str(pt["regime"].values) == "widrow" and km < r:
            below = float(pt["sigma_measured"].values[km]) / float(pt["noise_floor"])
            assert 0.85 < below <= 1.0, (int(pt["bits"]), str(pt["granularity"].values), below)


def test_describe_states_whether_each_regime_meets_the_ten_percent_aim():
    """The verdict on k* follows the numbers: within 10% at a median 5%, outside at 30%; the count by θ_c
    (``k_additive``) is reported beside it."""
    import xarray as xr

    k_meas = np.array([100.0, 50.0, 40.0])
    ds = xr.Dataset({"k_measured": (("point",), k_meas), "k_additive": (("point",), [150.0, 65.0, 40.0])})
    truncated = np.array([True, True, False])
    regime = np.array(["widrow", "widrow", "widrow"])
    within = fig._widrow_text(ds, truncated, regime, {"widrow": 0.05})
    assert "within the 10% aim" in within and "misses by a median 40%" in within
    assert "outside the 10% aim" in fig._widrow_text(ds, truncated, regime, {"widrow": 0.3})
    assert "not within the 10% aim" in fig._dead_zone_text({"dead-zone": 0.27})
    assert "within the 10% aim too" in fig._dead_zone_text({"dead-zone": 0.08})
    assert fig._widrow_text(ds, truncated, regime, {}) == fig._dead_zone_text({}) == ""


def test_the_residual_profile_count_is_read_at_dead_zone_points_only(result):
    _, ds = result
    dead = np.asarray(ds["regime"].values).astype(str) == "dead-zone"
    k = np.asarray(ds["k_profile"].values, float)
    assert dead.any() and np.all(np.isfinite(k[dead])) and np.all(np.isnan(k[~dead]))
    assert "residual-profile law" in fig.describe(ds)
