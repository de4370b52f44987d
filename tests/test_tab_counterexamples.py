"""experiments.tab_counterexamples and zipfrmt.bounds.counterexamples: the cases where P4a and P5 fail."""

import jax
import numpy as np
import pytest
from conftest import assert_table_read_back_and_redrawn

from experiments import tab_counterexamples as tab
from zipfrmt import bounds, quant, spectra


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    config = tab.SCALES["test"]
    return config, root, tab.run(config, root=root, progress=False)


def test_run_render_and_rerender_from_disk_without_recomputing(result, tmp_path, monkeypatch):
    config, root, ds = result
    assert ds.sizes["row"] == len(config.cases) * len(config.seeds)
    assert_table_read_back_and_redrawn(tab, config, root, ds, tmp_path, monkeypatch)


def test_each_test_scale_case_refutes_its_claim_and_describe_says_so(result):
    _, _, ds = result
    assert not ds["holds"].values.any()
    text = tab.describe(ds)
    rise = ds["claim"].values.astype(str) == "r_s(Q) > r_s(W)"
    assert f"it failed in {int(rise.sum())}" in text
    assert f"{float(ds['exponent_measured'].values[~rise].max()):.3f}" in text


def test_outlier_column_at_two_bits_per_tensor_has_rank_one_and_a_lower_stable_rank():
    case = bounds.Counterexample("t", "outlier-column", 1024, 128, 10.0, "int2-tensor", "r_s(Q) > r_s(W)")
    out = bounds.check_counterexample(case, 0)
    assert out["stable_rank_measured"] == pytest.approx(1.0, abs=1e-3)
    assert out["stable_rank_full"] > 2 and not out["holds"]
    assert out["stable_rank_predicted"] > 5 * out["stable_rank_full"]  # neither model foresees the fall
    # the sketch does: Q keeps little but the outlier column, W's top right singular vector, so ‖Qv_1‖ = σ_1(Q)
    assert out["stable_rank_predicted_sketch"] == pytest.approx(out["stable_rank_measured"], rel=1e-3)


@pytest.mark.parametrize("spec", ["int2-tensor", "int4-row", "int3-column", "nf4"])
def test_the_stable_rank_rises_exactly_when_the_energy_criterion_says(spec):
    # r_s(Q) > r_s(W)  ⇔  ‖E‖_F² + 2⟨W,E⟩ > r_s(W)(‖Q‖₂² − ‖W‖₂²): the identity behind theory.tex's P4a remark.
    W = np.asarray(bounds.outlier_column_matrix(jax.random.key(1), 512, 64, 6.0), np.float64)
    Q = np.asarray(quant.quantize(W.astype(np.float32), spec).dequantized, np.float64)
    E = Q - W
    sw = np.asarray(spectra.singular_values(W, method="svd"), np.float64)
    sq = np.asarray(spectra.singular_values(Q, method="svd"), np.float64)
    rs_w, rs_q = np.sum(sw**2) / sw[0] ** 2, np.sum(sq**2) / sq[0] ** 2
    lhs = np.sum(E**2) + 2 * np.sum(W * E)
    rhs = rs_w * (sq[0] ** 2 - sw[0] ** 2)
    assert (rs_q > rs_w) == (lhs > rhs)
    assert (rs_q - rs_w) * sq[0] ** 2 == pytest.approx(lhs - rhs, abs=1e-6 * np.sum(Q**2))  # the identity itself


def test_a_counterexample_is_checked_on_construction():
    with pytest.raises(ValueError, match="kind"):
        bounds.Counterexample("t", "gaussian", 64, 64, 1.0, "int4-row", "a(Q) < a(W)")
    with pytest.raises(ValueError, match="claim"):
        bounds.Counterexample("t", "power-law", 64, 64, 0.1, "int4-row", "a(Q) > a(W)")
    with pytest.raises(ValueError, match="factor"):
        bounds.outlier_column_matrix(jax.random.key(0), 8, 8, 0.0)
