"""Quantized layers: fake-quant forward/backward, Qwix wiring, gradient quantization, smoothing, activations."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from zipfrmt import quant
from zipfrmt.nn import (
    PRESETS,
    ModelConfig,
    QuantSpec,
    TrainConfig,
    apply_rules,
    build_model,
    collect_activations,
    quant_sites,
    with_quant,
)
from zipfrmt.nn.controls import site_quantize as quantize_rows
from zipfrmt.nn.layers import Ctx, QLinear, quantize_grad

W = jax.random.normal(jax.random.key(0), (48, 32))


@pytest.mark.parametrize("spec", [QuantSpec(bits=4), QuantSpec(bits=3, granularity="row"),
                                  QuantSpec(bits=4, granularity="group", group_size=8)])
def test_fake_quant_forward_equals_quantize_and_gradient_is_straight_through(spec):
    q = quant.quantize(W, spec.bits, granularity=spec.granularity, group_size=spec.group_size)
    np.testing.assert_array_equal(np.asarray(quantize_rows(W, spec, None)), np.asarray(q.dequantized))
    C = jax.random.normal(jax.random.key(1), W.shape)
    g = jax.grad(lambda w: jnp.sum(quantize_rows(w, spec, None) * C))(W)
    np.testing.assert_array_equal(np.asarray(g), np.asarray(C))  # absmax: nothing clipped, dQ/dW = 1


def test_stochastic_rounding_uses_the_key():
    spec = QuantSpec(bits=3, rounding="stochastic")
    a = quantize_rows(W, spec, jax.random.key(1))
    b = quantize_rows(W, spec, jax.random.key(2))
    assert not np.array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(quantize_rows(W, spec, jax.random.key(1))))


@pytest.mark.parametrize("fmt", ["fp8_e4m3", "nf4", "mxfp4", "nvfp4"])
def test_qwix_formats_change_the_forward_as_configured(fmt):
    spec = QuantSpec.parse(fmt)
    out = np.asarray(quantize_rows(W, spec, None))
    ref = np.asarray(quant.quantize(W, fmt).dequantized)
    np.testing.assert_array_equal(out, ref)  # one quantizer for training and analysis
    assert not np.allclose(out, np.asarray(W))
    C = jnp.ones_like(W)
    np.testing.assert_array_equal(np.asarray(jax.grad(lambda w: jnp.sum(quantize_rows(w, spec, None) * C))(W)), 1.0)


def test_qwix_format_changes_model_logits():
    base = dataclasses.replace(PRESETS["tiny"], model=ModelConfig(vocab_size=64, d_model=32, n_layers=1,
                                                                  n_heads=2, max_len=16))
    toks = jnp.arange(16)[None] % 64
    fp, _ = build_model(base)(toks, Ctx())
    q4, _ = build_model(with_quant(base, "linear=nf4,embed=nf4"))(toks, Ctx())
    assert q4.shape == fp.shape
    assert float(jnp.max(jnp.abs(q4 - fp))) > 1e-4


def test_gradient_quantization_quantizes_the_cotangent():
    spec = QuantSpec(bits=4, granularity="row")
    x = jax.random.normal(jax.random.key(3), (8, 16))
    c = jax.random.normal(jax.random.key(4), (8, 16))
    y = quantize_grad(x, spec, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x))
    g = jax.grad(lambda v: jnp.sum(quantize_grad(v, spec, jax.random.key(0)) * c))(x)
    expect = quant.quantize(c, 4, granularity="row").dequantized
    np.testing.assert_allclose(np.asarray(g), np.asarray(expect), atol=1e-6)


def test_qlinear_quantizes_weights_and_activations_and_smoothing_is_exact():
    lin = QLinear(16, 8, rngs=nnx.Rngs(0), std=0.5)
    x = jax.random.normal(jax.random.key(5), (4, 16))
    fp = lin(x, Ctx())
    lin.w_spec, lin.act_spec = QuantSpec(bits=4, granularity="row"), QuantSpec(bits=8, granularity="row")
    got = lin(x, Ctx())
    Wq = quant.quantize(lin.kernel[...].T, 4, granularity="row").dequantized.T
    xq = quant.quantize(x, 8, granularity="row").dequantized
    np.testing.assert_allclose(np.asarray(got), np.asarray(xq @ Wq + lin.bias[...]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(got), np.asarray(fp))
    # SmoothQuant plug-in: x/λ with diag(λ) W is the same function at full precision
    lin.w_spec = lin.act_spec = None
    lam = jnp.linspace(0.5, 2.0, 16)
    lin.smooth[...] = lam
    lin.kernel[...] = lin.kernel[...] * lam[:, None]
    np.testing.assert_allclose(np.asarray(lin(x, Ctx())), np.asarray(fp), rtol=1e-5, atol=1e-6)


def test_collect_activations_and_post_training_rules():
    cfg = TrainConfig(model=ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, max_len=16))
    model = build_model(cfg)
    toks = jnp.arange(32).reshape(2, 16) % 64
    acts = collect_activations(model, toks)
    assert set(acts) == {f"blocks/{i}/{m}/kernel" for i in range(2) for m in ("attn/qkv", "attn/out", "mlp/fc",
                                                                                "mlp/proj")} | {"embed/embedding"}
    assert acts["blocks/0/mlp/proj/kernel"].shape == (32, 128)
    assert acts["blocks/1/attn/qkv/kernel"].shape == (32, 32)
    params = nnx.state(model, nnx.Param)
    assert nnx.to_pure_dict(params)["blocks"][0]["attn"]["qkv"]["kernel"].shape == (32, 96)
    ptq = apply_rules(nnx.clone(model), "linear=int4-row,act=int4-row")
    assert ptq.blocks[0].mlp.fc.w_spec.bits == 4 and model.blocks[0].mlp.fc.w_spec is None
    a, _ = model(toks, Ctx())
    b, _ = ptq(toks, Ctx())
    assert float(jnp.max(jnp.abs(a - b))) > 1e-5


def test_bag_model_shapes():
    cfg = TrainConfig(model=ModelConfig(kind="bag", vocab_size=64, d_model=16, n_layers=0, max_len=16, bag_window=3))
    logits, h = build_model(cfg)(jnp.arange(32).reshape(2, 16) % 64, Ctx())
    assert logits.shape == (2, 16, 64) and h.shape == (2, 16, 16)
    E = build_model(cfg).embed.embedding[...]
    np.testing.assert_allclose(np.asarray(h[0, 5]), np.asarray(E[3:6].mean(0)), rtol=1e-5, atol=1e-7)


def test_rules_give_each_site_its_spec_first_match_wins_and_tied_head_follows_embed():
    cfg = with_quant(TrainConfig(model=ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, max_len=16)),
                     "linear/blocks/0/*=fp32,linear=int4-row,embed=int2-row,act=int8-row,grad/*/mlp/*=int8-row")
    sites = {k: (v.label if v is not None else None) for k, v in quant_sites(build_model(cfg)).items()}
    assert sites["linear/blocks/0/attn/qkv"] is None and sites["linear/blocks/0/mlp/fc"] is None
    assert sites["linear/blocks/1/attn/qkv"] == "int4-row"
    assert sites["embed"] == "int2-row" and sites["head"] == "int2-row"  # tied head: as the lookup
    assert sites["act/blocks/1/mlp/proj"] == "int8-row" and sites["act/head"] == "int8-row"
    assert sites["grad/blocks/0/mlp/fc"] == "int8-row" and sites["grad/blocks/0/attn/qkv"] is None
    assert sites["grad/head"] is None


@pytest.mark.parametrize("rules, match", [
    ("linaer=int4-row", r"rule 'linaer=int4-row' matches no site"),
    ("embed=int4-rwo", r"rule embed=int4-rwo: .*rwo"),
    ("act=int8-tensor", r"site act/.*causal leak"),
    ("grad=int4-group48", r"site grad/.*groups of 48 entries, longer than the rows of length 32"),
    ("linear=int4-group24", r"site linear/.*divides the row length"),
    ("embed", r"PATTERN=SPEC"),
])
def test_bad_rules_are_named_before_anything_is_built(rules, match):
    from zipfrmt.nn import validate

    cfg = TrainConfig(model=ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, max_len=16), context=16)
    with pytest.raises(ValueError, match=match):
        validate(with_quant(cfg, rules))
