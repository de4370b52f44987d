"""QuantSpec and the format registry: the text form, the JSON round trip, one entry point for every format."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zipfrmt import analyze, quant, rmt, spectra
from zipfrmt.quant import FORMATS, QuantSpec, formats

CANONICAL = ["int8-tensor", "int4-row", "int3-group32", "int4-row-stochastic", "int2-column-asymmetric",
             "int3-row-mse", "int4-group16-percentile", "int4-row-percentile99.5-stochastic", "int1-row",
             "nf4", "nf4-group64", "fp8_e4m3", "fp8_e4m3-tensor", "fp8_e5m2", "mxfp4", "nvfp4"]

W = jax.random.normal(jax.random.key(0), (128, 64))
W_WIDE = jax.random.normal(jax.random.key(0), (128, 256))  # for formats with blocks longer than 64 (tq1_0: 256)


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_text_parses_back_to_itself(text):
    spec = QuantSpec.parse(text)
    assert spec.label == text and str(spec) == text
    assert QuantSpec.parse(spec.label) == spec and hash(QuantSpec.parse(text)) == hash(spec)


@pytest.mark.parametrize("text", CANONICAL)
def test_json_round_trip_as_text_and_as_fields(text):
    spec = QuantSpec.parse(text)
    assert QuantSpec.parse(json.loads(json.dumps(spec.label))) == spec
    assert QuantSpec(**json.loads(json.dumps(dataclasses.asdict(spec)))) == spec


@pytest.mark.parametrize("alias, canonical", [
    ("int4", "int4-tensor"), ("INT4-ROW", "int4-row"), ("int4-stochastic-row", "int4-row-stochastic"),
    ("nf4-row", "nf4"), ("int4-row-symmetric-absmax-nearest", "int4-row"),
    ("int3-row-percentile99.9", "int3-row-percentile"),
])
def test_other_spellings_normalise_to_the_canonical_text(alias, canonical):
    assert QuantSpec.parse(alias).label == canonical


def test_keyword_construction_matches_the_text_and_formats_fill_their_own_fields():
    assert QuantSpec(bits=3, granularity="group", group_size=32) == QuantSpec.parse("int3-group32")
    mx = QuantSpec(format="mxfp4")
    assert (mx.bits, mx.granularity, mx.group_size) == (4, "group", 32)
    assert QuantSpec(format="nf4").granularity == "row" and QuantSpec(bits=4).granularity == "tensor"


@pytest.mark.parametrize("text, match", [
    ("int3-grop32", r"spec 'int3-grop32': cannot read the token 'grop32'"),
    ("fp4", r"spec 'fp4': expected it to start with int<bits>"),
    ("int0-row", r"spec 'int0-row': bits: expected an integer in \[1, 16\], got 0"),
    ("int4-row-tensor", r"granularity given twice"),
    ("nf4-stochastic", r"rounding: format 'nf4' supports 'nearest'"),
    ("mxfp4-row", r"format 'mxfp4' has fixed scale blocks of 32"),
    ("int1-row-stochastic", r"1-bit sign quantizer has no stochastic variant"),
    ("", r"expected a quantization spec"),
])
def test_bad_text_is_an_error_naming_the_text_and_the_token(text, match):
    with pytest.raises(ValueError, match=match):
        QuantSpec.parse(text)


def test_bad_fields_are_errors_when_the_spec_is_made():
    with pytest.raises(ValueError, match=r"bits: format 'nf4' stores 4-bit values, got bits=8"):
        QuantSpec(format="nf4", bits=8)
    with pytest.raises(ValueError, match=r"bits: expected an integer in \[1, 16\] for format 'int', got None"):
        QuantSpec()
    with pytest.raises(ValueError, match=r"group_size: only used with granularity='group'"):
        QuantSpec(bits=4, group_size=8)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_one_entry_point_for_every_format(name):
    """quantize, fake_quant and the prediction treat every registered format alike."""
    spec = QuantSpec(bits=4, granularity="row") if name == "int" else QuantSpec(format=name)
    block = FORMATS[name].block or 1
    M = W if block <= W.shape[1] else W_WIDE[:, :block]  # rows of whole blocks (tq1_0, tq2_0: 256)
    r = quant.quantize(M, spec)
    assert r.spec == spec and r.regime in ("widrow", "dead-zone")
    assert r.noise_var_measured == pytest.approx(float(jnp.mean((r.dequantized - M) ** 2)), rel=1e-5)
    assert 0 < r.noise_var_model and 0 < r.bussgang_gain <= 1.05 and r.residual_var >= 0
    fq = quant.fake_quant(M, spec)
    np.testing.assert_array_equal(np.asarray(fq), np.asarray(r.dequantized))
    g = jax.grad(lambda w: jnp.sum(quant.fake_quant(w, spec) * 2.0))(M)
    np.testing.assert_array_equal(np.asarray(g), 2.0)  # straight-through: nothing is clipped
    s = np.asarray(spectra.singular_values(M), np.float64)
    pred = rmt.predict_from_result(s, *M.shape, r)
    assert pred.model == ("additive" if r.regime == "widrow" else "bussgang")
    assert np.isfinite(pred.stable_rank) and pred.truncation_index >= 0


def test_residual_var_is_the_variance_of_q_minus_g_w():
    r = quant.quantize(W, "int2-tensor")
    D = np.asarray(r.dequantized, np.float64) - r.bussgang_gain * np.asarray(W, np.float64)
    assert r.residual_var == pytest.approx(float(np.mean(D**2)), rel=1e-4)
    assert abs(float(np.vdot(D, np.asarray(W, np.float64)))) < 1e-3 * float(np.vdot(D, D))  # uncorrelated with W


def test_prediction_models_by_regime_and_on_request():
    s = np.asarray(spectra.singular_values(W), np.float64)
    dz = quant.quantize(W, "int2-tensor")
    assert dz.regime == "dead-zone"
    auto = rmt.predict_from_result(s, *W.shape, dz)
    bus = rmt.predict_quantized_bussgang(s, *W.shape, dz.bussgang_gain, dz.residual_var, bulk="dozier-silverstein")
    assert auto.model == "bussgang" and auto.bulk == "dozier-silverstein" and auto.stable_rank == bus.stable_rank
    add = rmt.predict_from_result(s, *W.shape, dz, model="additive")
    assert add.model == "additive" and add.noise_var == dz.noise_var_model
    meas = rmt.predict_from_result(s, *W.shape, dz, model="additive-measured")
    assert meas.model == "additive-measured" and meas.noise_var == dz.noise_var_measured
    with pytest.raises(ValueError, match="model: expected one of"):
        rmt.predict_from_result(s, *W.shape, dz, model="gaussian")
    with pytest.raises(TypeError, match="result: expected a zipfrmt.quant.QuantResult"):
        rmt.predict_from_result(s, *W.shape, {"regime": "widrow"})


def test_a_new_format_is_one_registry_entry(monkeypatch):
    """The worked example of docs/quantization.md: Qwix's int8 with per-row scales, registered in one line,
    is at once a spec, a quantizer with noise statistics and regime, and an analysis setting."""
    monkeypatch.setitem(FORMATS, "qint8", formats.qwix_format("qint8", jnp.int8, 8, None, "Qwix int8"))
    spec = QuantSpec.parse("qint8")
    assert spec.label == "qint8" and spec.bits == 8 and spec.granularity == "row"
    r = quant.quantize(W, spec)
    ours = quant.quantize(W, "int8-row")
    assert r.rel_error == pytest.approx(ours.rel_error, rel=0.05)  # the same grid up to Qwix's scale rounding
    rep = analyze.analyze_matrix(W, ["qint8", "int8-row"])
    assert [row["spec"] for row in rep["quantized"]] == ["qint8", "int8-row"]
    assert rep["quantized"][0]["format"] == "qint8"
