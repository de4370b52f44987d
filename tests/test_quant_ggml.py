"""llama.cpp's block formats as specs: bit-identical to the gguf package, with noise statistics like any format."""

import jax
import numpy as np
import pytest
from gguf import GGMLQuantizationType, quants

from zipfrmt import quant, rmt, spectra
from zipfrmt.quant.ggml import GGML_FORMATS

NAMES = list(GGML_FORMATS)


@pytest.fixture(scope="module")
def gaussian():
    W = np.asarray(jax.random.normal(jax.random.key(0), (256, 512)), np.float32).copy()
    W[3] = 0.0  # an all-zero row: every block exact
    W[5, :256] *= 1e-9  # blocks whose fp16 step underflows
    return W


def gguf_roundtrip(name: str, W: np.ndarray) -> np.ndarray:
    qtype = GGMLQuantizationType[GGML_FORMATS[name].qtype]
    return quants.dequantize(quants.quantize(W, qtype), qtype)


@pytest.mark.parametrize("name", NAMES)
def test_block_format_is_bit_identical_to_the_gguf_quantizer(gaussian, name):
    r = quant.quantize(gaussian, name)
    np.testing.assert_array_equal(np.asarray(r.dequantized), gguf_roundtrip(name, gaussian))
    assert str(r.spec) == name and quant.QuantSpec.parse(name) == r.spec
    assert r.spec.granularity == "group" and r.spec.group_size == GGML_FORMATS[name].block


@pytest.mark.parametrize("name", ["q8_0", "q5_0", "q5_1", "q4_0", "q4_1"])
def test_integer_block_formats_are_widrow_on_a_gaussian_and_their_steps_are_the_stored_scales(gaussian, name):
    r = quant.quantize(gaussian, name)
    assert r.regime == "widrow"
    assert r.noise_var_measured == pytest.approx(r.noise_var_model, rel=0.03)
    # every entry is d·q (+ m) on its block's grid: the reported step is the stored fp16 d
    block = GGML_FORMATS[name].block
    step = np.asarray(r.scale)
    assert step.shape == (256, 512 // block) and np.all(step[3] == 1.0)
    Q = np.asarray(r.dequantized).reshape(256, -1, block)
    offset = Q.min(axis=-1, keepdims=True) if GGML_FORMATS[name].offset else 0.0
    codes = (Q - offset) / step[..., None]
    live = np.abs(gaussian).reshape(256, -1, block).max(axis=-1) > 1e-3
    assert np.max(np.abs(codes - np.round(codes))[live]) < 1e-2


def test_ternary_formats_are_the_dead_zone_and_predicted_by_bussgang(gaussian):
    r = quant.quantize(gaussian, "tq2_0")
    assert r.regime == "dead-zone" and 0 < r.bussgang_gain < 1
    levels = np.unique(np.round(np.asarray(r.dequantized) / np.repeat(np.asarray(r.scale), 256, axis=1), 6))
    assert set(levels) <= {-1.0, 0.0, 1.0}
    sigma = np.asarray(spectra.singular_values(gaussian), np.float64)
    p = rmt.predict_from_result(sigma, 256, 512, r)
    assert p.model == "bussgang" and np.isfinite(p.stable_rank)


def test_block_formats_need_rows_of_whole_blocks_and_take_no_granularity():
    W = np.ones((4, 48), np.float32)
    with pytest.raises(ValueError, match="format 'q4_0' needs rows whose length is a multiple of its block 32"):
        quant.quantize(W, "q4_0")
    with pytest.raises(ValueError, match="format 'q8_0' has fixed scale blocks of 32"):
        quant.QuantSpec.parse("q8_0-row")


def test_block_formats_run_inside_jit_and_fake_quant(gaussian):
    spec = quant.QuantSpec.parse("q4_1")
    out = jax.jit(lambda w: quant.fake_quant(w, spec))(gaussian)
    np.testing.assert_array_equal(np.asarray(out), gguf_roundtrip("q4_1", gaussian))
    g = jax.grad(lambda w: quant.fake_quant(w, spec).sum())(gaussian)
    np.testing.assert_array_equal(np.asarray(g), np.ones_like(gaussian))  # straight-through


def test_llama_cpp_mxfp4_is_its_own_format_beside_the_ocp_one(gaussian):
    ggml = np.asarray(quant.quantize(gaussian, "ggml_mxfp4").dequantized)
    ocp = np.asarray(quant.quantize(gaussian, "mxfp4").dequantized)
    assert not np.array_equal(ggml, ocp)  # llama.cpp picks the shared exponent differently


def test_a_stack_of_matrices_is_quantized_matrix_by_matrix(gaussian):
    stack = np.stack([gaussian[:128], gaussian[128:]])
    out = np.asarray(quant.fake_quant(stack, "q5_0"))
    np.testing.assert_array_equal(out[1], gguf_roundtrip("q5_0", gaussian[128:]))
