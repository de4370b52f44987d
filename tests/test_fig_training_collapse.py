"""fig_training_collapse at test scale: runs, caches, renders from disk, reads its result honestly."""

import numpy as np
import pytest
import xarray as xr

from experiments import fig_training_collapse as fig
from zipfrmt import sweep

CONFIG = fig.SCALES["test"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    return root, fig.run(CONFIG, root=root, progress=False)


def test_every_run_is_recorded_with_its_labels_and_status(result):
    _, ds = result
    assert ds.sizes["run"] == len(fig.points(CONFIG))
    assert list(ds["precision"].values[:3]) == ["fp32", "4", "2"]
    assert set(ds["status"].values.astype(str)) <= {"ok", "collapsed", "diverged"}
    assert np.all(np.isfinite(ds["loss"].values[:, 1:]))


def test_two_bit_quantized_embedding_has_a_higher_stable_rank_than_fp32(result):
    _, ds = result
    rows = {r["precision"]: r for r in fig.summary_rows(ds) if r["axis"] == "bits"}
    assert rows["2"]["emb_stable_rank_q"] > rows["fp32"]["emb_stable_rank_q"]


def test_renders_from_the_reopened_dataset_without_recomputing(result, tmp_path, monkeypatch):
    root, ds = result

    def fail(*args, **kwargs):
        raise AssertionError("retrained although the result was cached")

    import zipfrmt.nn.experiment as nx

    monkeypatch.setattr(nx, "train", fail)
    again = fig.run(CONFIG, root=root, progress=False)
    reopened = xr.open_dataset(sweep.result_path(fig.NAME, CONFIG, root), engine="netcdf4").load()
    xr.testing.assert_identical(again, reopened)
    paths = fig.render(reopened, tmp_path)
    assert sorted(p.suffix for p in paths) == [".pdf", ".png"] and all(p.stat().st_size > 1000 for p in paths)
    text = fig.describe(reopened)
    sr_fp = fig.summary_rows(reopened)[0]["emb_stable_rank_q"]
    assert f"{sr_fp:.3g}" in text and "collapse" in text
