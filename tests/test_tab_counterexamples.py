"""experiments.tab_counterexamples and zipfrmt.bounds.counterexamples: the cases where P4a and P5 fail."""

import jax
import numpy as np
import pytest
from conftest import assert_table_read_back_and_redrawn

from experiments import tab_counterexamples as tab
from zipfrmt import bounds, embeddings, quant, spectra


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
    claim = ds["claim"].values.astype(str)
    rise, flat = claim == "r_s(Q) > r_s(W)", claim == "a(Q) < a(W)"
    assert f"it failed in {int(rise.sum())}" in text
    assert f"{float(ds['exponent_measured'].values[flat].max()):.3f}" in text
    assert "The spectral twins" in text and "(ratio 2.000)" in text


def test_the_full_table_has_both_twins_and_describe_reads_their_factor_two(tmp_path):
    config = tab.Config(cases=tuple(c for c in bounds.CASES if c.kind.startswith("twin")))
    ds = tab.run(config, root=tmp_path, progress=False)
    sr_q = ds["stable_rank_measured"].values
    assert sorted(ds["name"].values.astype(str)) == ["spectral twin, diagonal", "spectral twin, row"]
    assert ds["stable_rank_full"].values[0] == ds["stable_rank_full"].values[1]
    # the Bussgang gain and residual read Q, but mathematically agree for the twins (⟨W, Q⟩ = 2⟨A, Q(A)⟩ for both)
    assert ds["stable_rank_predicted"].values[0] == pytest.approx(ds["stable_rank_predicted"].values[1], rel=1e-6)
    assert sr_q.max() / sr_q.min() == pytest.approx(2.0, rel=1e-4)
    text = tab.describe(ds)
    assert f"(ratio {sr_q.max() / sr_q.min():.3f})" in text and "within 33% of both stable ranks" in text
    k = ds["truncation_measured"].values
    assert (k.max() - k.min()) / (k.max() + k.min()) > 0.10  # nor k* to the Goal's 10%, at this seed
    print(text)


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


def test_spectral_twins_share_spectrum_and_entry_magnitudes_but_not_the_quantized_stable_rank():
    A = np.asarray(embeddings.power_law_matrix(jax.random.key(3), 256, 32, 0.5))
    W_diag, W_row = (np.asarray(W) for W in bounds.spectral_twins(A))
    s_diag = np.linalg.svd(W_diag.astype(np.float64), compute_uv=False)
    s_row = np.linalg.svd(W_row.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(s_diag, s_row, rtol=1e-5, atol=1e-6 * s_diag[0])
    np.testing.assert_array_equal(np.sort(np.abs(W_diag).ravel()), np.sort(np.abs(W_row).ravel()))
    # at 2 bits per tensor only the unit entries of B survive:
    # Q(A ⊗ B_diag) = Q(A) ⊗ I, Q(A ⊗ B_row) = Q(A) ⊗ [[1,1],[0,0]]
    QA = np.asarray(quant.quantize(A.astype(np.float32), "int2-tensor").dequantized)
    Q_diag = np.asarray(quant.quantize(W_diag, "int2-tensor").dequantized)
    Q_row = np.asarray(quant.quantize(W_row, "int2-tensor").dequantized)
    np.testing.assert_array_equal(Q_diag, np.kron(QA, np.eye(2, dtype=np.float32)))
    np.testing.assert_array_equal(Q_row, np.kron(QA, np.array([[1, 1], [0, 0]], np.float32)))
    rs = [float(np.sum(s**2) / s[0] ** 2) for s in (np.linalg.svd(Q.astype(np.float64), compute_uv=False)
                                                   for Q in (Q_diag, Q_row))]
    assert rs[0] == pytest.approx(2 * rs[1], rel=1e-9) and rs[1] > 1.5


def test_twin_cases_get_one_prediction_and_two_measurements():
    outs = [bounds.check_counterexample(bounds.Counterexample("t", kind, 512, 64, 0.5, "int2-tensor",
                                                              "r_s(Q) predicted to 10%"), 0)
            for kind in ("twin-diagonal", "twin-row")]
    assert outs[0]["stable_rank_full"] == outs[1]["stable_rank_full"]
    assert outs[0]["stable_rank_predicted"] == pytest.approx(outs[1]["stable_rank_predicted"], rel=1e-6)
    assert outs[0]["stable_rank_measured"] == pytest.approx(2 * outs[1]["stable_rank_measured"], rel=1e-5)
    assert not (outs[0]["holds"] and outs[1]["holds"])  # one number cannot be within 10% of both


def test_twins_need_even_shapes_and_b_between_a_third_and_a_half():
    with pytest.raises(ValueError, match=r"V, d: expected even sizes .* 63×64"):
        bounds.Counterexample("t", "twin-row", 63, 64, 0.5, "int2-tensor", "r_s(Q) predicted to 10%")
    with pytest.raises(ValueError, match=r"b: expected a number in \(0.333333, 0.5\), got 0.3"):
        bounds.twin_factors(0.3)
