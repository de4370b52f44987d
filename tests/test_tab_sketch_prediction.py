"""experiments.tab_sketch_prediction: the predictions on real-text, trained and power-law embeddings, every format."""

import numpy as np
import pytest
from conftest import assert_table_read_back_and_redrawn

from experiments import tab_sketch_prediction as tab


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    config = tab.SCALES["test"]
    return config, root, tab.run(config, root=root, progress=False)


def test_run_render_and_rerender_from_disk_without_recomputing(result, tmp_path, monkeypatch):
    config, root, ds = result
    admitted = [s for s in config.specs if s != "tq2_0"]  # its blocks of 256 are longer than the rows of 64
    assert ds.sizes["row"] == len(config.matrices) * len(admitted)
    assert_table_read_back_and_redrawn(tab, config, root, ds, tmp_path, monkeypatch)


def test_the_sketch_predicts_the_stable_rank_on_real_text_and_trained_embeddings_at_every_format(result):
    _, _, ds = result
    matrix = ds["matrix"].values.astype(str)
    regime = ds["regime"].values.astype(str)
    zeros = ds["zero_fraction"].values
    real = np.char.startswith(matrix, "ppmi") | np.char.startswith(matrix, "trained")
    e_model = np.abs(tab.errors(ds, "stable_rank", "predicted"))
    e_sketch = np.abs(tab.errors(ds, "stable_rank", "sketch"))
    assert np.all(np.isfinite(e_sketch))
    # measured (512×64, seed 0): every format and int4 within 0.05%; the dead zone's median 0.02%
    formats = (matrix != "gaussian") & ~np.char.startswith(ds["spec"].values.astype(str), "int2")
    assert e_sketch[formats].max() < 0.005
    dead = real & (regime == "dead-zone")
    assert dead.sum() >= 3 and np.median(e_sketch[dead]) < 0.01
    # where one gain fails (int2 per row on PPMI: +83%), the sketch does not (0.8%)
    moderate = real & (regime == "dead-zone") & (zeros < 0.99)
    assert np.all(e_sketch[moderate] < 0.02) and e_model[moderate].max() > 0.5
    # the worst case is the near-empty matrix (99.6% zeros, 2 bits per tensor): 16%, against 343%
    w = int(np.argmax(np.where(real, e_sketch, -1.0)))
    assert zeros[w] > 0.99 and e_sketch[w] < 0.25 and e_model[w] > 1.0


def test_describe_reads_the_errors_and_names_the_worst_case(result):
    _, _, ds = result
    text = tab.describe(ds)
    assert "512×64" in text and "sketch model" in text and "int2-tensor" in text
    assert "real-text and trained" in text and "power-law" in text and "dense Gaussian" in text


def test_a_missing_text_drops_its_matrices_and_the_report_says_so(tmp_path):
    config = tab.Config(V=256, d=32, matrices=("ppmi:wikitext2", "power-law:1.0"), specs=("int4-row", "int2-tensor"),
                        data_dir=str(tmp_path))
    assert tab.available(config) == ["power-law:1.0"]
    ds = tab.run(config, root=tmp_path / "r", progress=False)
    assert ds.sizes["row"] == 2 and "ppmi:wikitext2" in tab.describe(ds)


def test_a_spec_the_shape_does_not_admit_is_left_out_not_an_error(tmp_path):
    config = tab.Config(V=256, d=64, matrices=("power-law:0.5",), specs=("int4-row", "tq2_0"))
    ds = tab.run(config, root=tmp_path, progress=False)
    assert list(ds["spec"].values.astype(str)) == ["int4-row"]  # tq2_0 needs rows of 256


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"matrices": ("ppmi:shakespeare",)}, r"matrices: expected ppmi:<one of tinyshakespeare, wikitext2>"),
        ({"matrices": ("random:1",)}, r"matrices: expected ppmi:<text>, trained:<text>, gaussian or power-law:<a>"),
        ({"matrices": ("power-law:-1",)}, r"matrices \(power-law exponent\)"),
        ({"specs": ("int9x",)}, r"spec"),
        ({"V": 1}, r"V: expected an integer"),
        ({"specs": ()}, r"matrices, specs: expected at least one of each"),
    ],
)
def test_bad_configs_are_clear_errors_before_any_work(kwargs, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        tab.Config(**kwargs)


def test_on_a_dense_gaussian_weight_the_default_prediction_reads_sigma1_off_the_ds_law(result):
    """A Gaussian weight has no spike: σ_1(W) is its own bulk's edge. The regime's model (bulk "auto") and the
    sketch take σ_1(Q) from the Dozier–Silverstein law there. Measured (512×64, seed 0): every spec within 1%
    but int2-tensor (97.5% zeros: 19%); with MP's spiked map int2-row misses by 16% (int2-tensor 39%)."""
    _, _, ds = result
    g = ds["matrix"].values.astype(str) == "gaussian"
    spec = ds["spec"].values.astype(str)
    e_model = np.abs(tab.errors(ds, "stable_rank", "predicted"))[g]
    e_sketch = np.abs(tab.errors(ds, "stable_rank", "sketch"))[g]
    ok = spec[g] != "int2-tensor"
    assert g.sum() >= 6 and e_model[ok].max() < 0.02 and e_sketch[ok].max() < 0.02
