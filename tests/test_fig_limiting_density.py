"""experiments.fig_limiting_density at test scale: files, render from disk, describe, and DS against MP."""

import numpy as np
import pytest
import xarray as xr

from experiments import fig_limiting_density as fig
from zipfrmt import sweep


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    config = fig.SCALES["test"]
    return config, root, fig.run(config, root=root, progress=False)


def test_run_render_and_rerender_from_disk_without_recomputing(result, tmp_path, monkeypatch):
    config, root, ds = result
    assert list(ds["bits"].values) == list(config.bits)

    def fail(*a, **k):
        raise AssertionError("recomputed although the result was cached")

    monkeypatch.setattr(fig, "_point", fail)
    again = fig.run(config, root=root, progress=False)  # cache hit
    with xr.open_dataset(sweep.result_path(fig.NAME, config, root)) as f:
        on_disk = f.load()
    xr.testing.assert_identical(again, on_disk)
    paths = fig.render(on_disk, tmp_path)
    assert sorted(p.name for p in paths) == [f"{fig.NAME}.pdf", f"{fig.NAME}.png"]
    assert all(p.parent == tmp_path / "figures" and p.stat().st_size > 0 for p in paths)


def test_describe_reads_its_numbers_from_the_dataset(result):
    _, _, ds = result
    text = fig.describe(ds)
    for n in range(ds.sizes["bits"]):
        for j in range(ds.sizes["model"]):
            assert f"{ds['l1'].values[n, j]:.3f}" in text
    assert "dead zone" in text  # 2 bits is reported as the dead-zone regime it is


def test_histogram_is_a_density_and_masses_are_consistent(result):
    _, _, ds = result
    width = ds["bin_hi"] - ds["bin_lo"]
    np.testing.assert_allclose((ds["hist_density"] * width).sum("bin") + ds["mass_below"], 1.0, atol=1e-12)
    assert (ds["pred_mass"] >= -1e-12).all() and (ds["pred_mass"].sum("bin") <= 1 + 1e-9).all()
    assert ((ds["l1"] >= 0) & (ds["l1"] <= 2 + 1e-9)).all()


def test_dozier_silverstein_beats_marchenko_pastur(result):
    _, _, ds = result
    l1 = ds["l1"]
    ds_w, ds_b, mp = (l1.sel(model=m) for m in fig.MODELS)
    # At 1024×128, group32, σ_k = k^(−1/2): measured L1 (DS-Widrow, DS-Bussgang, MP) = 4 bits (0.114, 0.116, 2.0),
    # 3 bits (0.087, 0.088, 2.0), 2 bits (0.162, 0.105, 0.946); with d = 128 eigenvalues in 16 bins the
    # histogram's own sampling noise is ≈ 0.1. MP, the noise alone, misses the power-law signal at every width.
    assert (ds_w < mp).all() and (ds_b < mp).all()
    widrow = ds["regime"].values.astype(str) == "widrow"
    assert widrow[:2].all()  # 4 and 3 bits in the Widrow regime
    assert (ds_w[widrow] < 0.25).all()
    # In the dead zone (2 bits) the Bussgang variant is at least as close as the additive model.
    assert ds["regime"].sel(bits=2).item() == "dead-zone"
    assert ds_b.sel(bits=2) <= ds_w.sel(bits=2) + 0.02
