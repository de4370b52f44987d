"""experiments/fig_mitigations: runs at test scale, renders from the saved dataset, and the science holds."""


import numpy as np
import pytest
import xarray as xr

from experiments import fig_mitigations as fig
from experiments.outputs import fmt
from zipfrmt import sweep

CONFIG = fig.SCALES["test"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    return root, fig.run(CONFIG, root=root, progress=False)


def test_renders_from_the_reopened_dataset_without_recomputing(result, tmp_path, monkeypatch):
    root, ds = result
    path = sweep.result_path(fig.NAME, CONFIG, root)
    assert path.exists()

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although the result was cached")

    for part in ("part_power_law", "part_embedding", "part_ptq", "part_training"):
        monkeypatch.setattr(fig, part, fail)
    again = fig.run(CONFIG, root=root, progress=False)  # a cache hit
    reopened = xr.open_dataset(path, engine="netcdf4").load()
    xr.testing.assert_identical(again, reopened)
    assert list(reopened["matrix"].values) == ["power_law", "lm_embedding"]
    paths = fig.render(reopened, tmp_path)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in paths)
    assert names == ["figures/fig_mitigations.pdf", "figures/fig_mitigations.png",
                     "tables/fig_mitigations.md", "tables/fig_mitigations.tex",
                     "tables/fig_mitigations_lm.md", "tables/fig_mitigations_lm.tex"]
    assert all(p.stat().st_size > 200 for p in paths)
    tex = (tmp_path / "tables" / "fig_mitigations.tex").read_text()
    assert r"\label{tab:fig_mitigations}" in tex and "SpecQuant" in tex


def test_dataset_holds_all_three_parts(result):
    _, ds = result
    assert ds["stable_rank"].dims == ("matrix", "mitigation", "bits")
    assert list(ds["mitigation"].values) == ["rtn", "specquant", "s2d"]
    assert ds["ptq_perplexity"].dims == ("ptq_method", "ptq_setting")
    assert np.all(np.isfinite(ds["ptq_perplexity"].values))
    assert ds["train_emb_stable_rank"].dims == ("train_run", "step")
    assert set(ds["train_s2d"].values.tolist()) == {0, 1}
    assert str(ds["s2d_k_rule"].values) in ("pcdr", "fixed")


def test_describe_reads_its_numbers_from_the_dataset(result):
    _, ds = result
    text = fig.describe(ds)
    sel = dict(matrix="power_law", mitigation="rtn")
    assert fmt(float(ds["truncation_index"].sel(bits=2, **sel))) in text
    assert fmt(float(ds["stable_rank"].sel(bits=4, **sel))) in text
    assert fmt(float(ds["ptq_perplexity"].sel(ptq_method="specquant").values[0])) in text
    assert "S2D" in text and "\n" not in text.strip()


def test_rtn_matches_the_rmt_prediction_and_truncates_the_tail(result):
    _, ds = result
    pl = ds.sel(matrix="power_law")
    rtn = pl.sel(mitigation="rtn")
    # Widrow regime at 4 bits: the additive noise model predicts the quantized stable rank to within a few %
    assert str(rtn["regime"].sel(bits=4).values) == "widrow"
    meas, pred = float(rtn["stable_rank"].sel(bits=4)), float(rtn["predicted_stable_rank"].sel(bits=4))
    assert abs(meas - pred) / pred < 0.03
    # fewer bits raise the noise floor: fewer singular values survive and the stable rank rises
    assert float(rtn["truncation_index"].sel(bits=2)) < float(rtn["truncation_index"].sel(bits=4))
    assert float(rtn["stable_rank"].sel(bits=2)) > float(pl["fp_stable_rank"])
    # S2D halves sigma_1: it flattens the head and so raises the full-precision stable rank by construction
    assert float(pl["s2d_fp_stable_rank"]) > 2 * float(pl["fp_stable_rank"])
