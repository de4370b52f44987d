"""The collapse lab's mechanisms and controls: quantized weight gradients, low-precision master weights,
quantized optimizer state, frozen weights, equal-energy noise, stochastic rounding, Hadamard rotation."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zipfrmt import quant
from zipfrmt.nn import DataConfig, ModelConfig, TrainConfig, build_model, train, validate, with_quant
from zipfrmt.nn.checkpoint import split
from zipfrmt.nn.controls import control_spec, rotation, site_quantize
from zipfrmt.nn.data import load_tokens, unigram_cross_entropy
from zipfrmt.nn.mechanisms import quantize_params, quantized_adam, site_specs, zero_free_quantize
from zipfrmt.nn.probes import pushdown_kept
from zipfrmt.nn.train import train_step
from zipfrmt.quant import QuantSpec

MICRO = TrainConfig(
    model=ModelConfig(vocab_size=128, d_model=32, n_layers=1, n_heads=2, max_len=16),
    data=DataConfig(source="latent", n_tokens=20_000, n_topics=16, doc_len=64),
    batch_size=8, context=16, steps=12, lr=1e-2, warmup=0,  # no warm-up: the first update is not 0
    probe_every=6, eval_every=6, eval_batches=2, checkpoint_every=12,
)
W = jax.random.normal(jax.random.key(0), (64, 32))


def _step(cfg, params=None):
    """One training step from the initial parameters: (params before, params after, grad norm)."""
    graphdef, template, rest, p0 = split(build_model(cfg))
    p0 = p0 if params is None else params
    from zipfrmt.nn.optim import make_optimizer

    opt = make_optimizer(cfg)
    toks = jnp.asarray(load_tokens(cfg).train)
    p1, _, loss, gnorm = train_step(graphdef, cfg, None, template, rest, p0, opt.init(p0), jnp.asarray(5), toks)
    return p0, p1, float(gnorm)


def test_master_weights_stay_on_their_grid_and_nearest_rounding_loses_small_updates():
    cfg = validate(with_quant(dataclasses.replace(MICRO, lr=1e-4), "master/linear=int3-row"))
    specs = site_specs(cfg.quant, cfg.model, "master")
    assert set(specs) == {("blocks", "0", "attn", "qkv", "kernel"), ("blocks", "0", "attn", "out", "kernel"),
                          ("blocks", "0", "mlp", "fc", "kernel"), ("blocks", "0", "mlp", "proj", "kernel")}
    _, p0, _ = _step(cfg)  # parameters after step 1, on the grid
    on_grid = quantize_params(p0, specs, jax.random.key(0))
    _, p1, _ = _step(cfg, on_grid)
    K0 = np.asarray(on_grid["blocks"]["0"]["mlp"]["fc"]["kernel"])
    K1 = np.asarray(p1["blocks"]["0"]["mlp"]["fc"]["kernel"])
    again = np.asarray(quantize_params(p1, specs, jax.random.key(0))["blocks"]["0"]["mlp"]["fc"]["kernel"])
    np.testing.assert_allclose(K1, again, rtol=0, atol=1e-7)  # already on its grid: no float32 copy is kept
    def codes(K):  # integer codes of a kernel quantized as Kᵀ per row (output channel), 3 bits: L = 3
        Kt = K.T
        return np.round(Kt / (np.abs(Kt).max(axis=1, keepdims=True) / 3))

    # at lr 1e-4 almost every update is below half a 3-bit step: the codes do not move (the values move only
    # by the rescaling when a row's absmax entry itself moves)
    assert np.mean(codes(K1) == codes(K0)) > 0.99
    emb0, emb1 = np.asarray(on_grid["embed"]["embedding"]), np.asarray(p1["embed"]["embedding"])
    assert np.mean(emb1 != emb0) > 0.5  # the embedding has no master rule: it keeps its float32 updates


def test_stochastic_master_rounding_keeps_small_updates_in_expectation():
    """An update of a fifth of a step: nearest rounding returns the old grid point, stochastic rounding moves
    by the update on average (the row's absmax entry, which sets the scale, is left alone)."""
    W0 = quant.quantize(W, "int4-row").dequantized  # on its grid
    step = jnp.max(jnp.abs(W0), axis=1, keepdims=True) / 7
    keep = jnp.abs(W0) == jnp.max(jnp.abs(W0), axis=1, keepdims=True)
    update = jnp.where(keep, 0.0, 0.2 * step)
    nearest = site_quantize(W0 + update, QuantSpec.parse("int4-row"), None)
    np.testing.assert_allclose(np.asarray(nearest), np.asarray(W0), atol=1e-6)  # the update is lost
    spec = QuantSpec.parse("int4-row-stochastic")
    moved = np.mean([np.asarray(site_quantize(W0 + update, spec, jax.random.key(i)) - W0) for i in range(100)], 0)
    ratio = moved[~np.asarray(keep)].mean() / float(jnp.mean(update[~keep]))
    assert abs(ratio - 1.0) < 0.05  # kept in expectation


def test_weight_gradients_are_quantized_before_the_optimizer():
    cfg = validate(with_quant(MICRO, "wgrad=int2-row"))
    _, _, gnorm_q = _step(cfg)
    _, _, gnorm = _step(MICRO)
    assert gnorm_q != gnorm
    specs = site_specs(cfg.quant, cfg.model, "wgrad")
    assert ("embed", "embedding") in specs and ("pos",) in specs
    g = {"embed": {"embedding": W}, "pos": W[:16]}
    q = quantize_params(g, {("embed", "embedding"): specs[("embed", "embedding")]}, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(q["embed"]["embedding"]),
                                  np.asarray(quant.quantize(W, "int2-row").dequantized))
    np.testing.assert_array_equal(np.asarray(q["pos"]), np.asarray(W[:16]))


def test_kernels_are_quantized_along_the_contraction_axis():
    """A kernel (d_in × d_out) is quantized as Wᵀ: one scale per output channel."""
    spec = QuantSpec.parse("int2-row")
    q = quantize_params({"k": W}, {("k",): (spec, True, 0)}, jax.random.key(0))["k"]
    np.testing.assert_array_equal(np.asarray(q), np.asarray(quant.quantize(W.T, spec).dequantized.T))


def test_zero_free_second_moment_never_rounds_to_zero():
    v = jnp.abs(W) ** 4  # a wide range of second moments, many tiny
    spec = QuantSpec.parse("int4-row")
    q = np.asarray(zero_free_quantize(v, spec, None))
    assert (q > 0).all() and q.min() >= np.asarray(v).max(axis=1).min() / 16 * 0.999
    plain = np.asarray(quant.quantize(v, "int4-row").dequantized)
    assert (plain == 0).mean() > 0.3  # the linear grid with a zero point loses them
    np.testing.assert_array_equal(np.asarray(zero_free_quantize(jnp.zeros((2, 4)), spec, None)), 0.0)


def test_quantized_adam_matches_adam_at_high_precision_and_stores_quantized_moments():
    params = {"w": W}
    g = {"w": jax.random.normal(jax.random.key(1), W.shape)}
    ref = optax.scale_by_adam(b1=0.9, b2=0.95)
    u_ref, s_ref = ref.update(g, ref.init(params), params)
    spec = QuantSpec.parse("int4-group16")
    opt = quantized_adam({("w",): (spec, False, 0)}, seed=0, b1=0.9, b2=0.95)
    u, s = opt.update(g, opt.init(params), params)
    np.testing.assert_allclose(np.asarray(u["w"]), np.asarray(u_ref["w"]), rtol=1e-6)  # first step: same update
    mu = np.asarray(s.adam.mu["w"])
    np.testing.assert_array_equal(mu, np.asarray(quant.quantize(s_ref.mu["w"], spec).dequantized))
    assert len(np.unique(np.abs(mu[0, :16]))) <= 8  # 4-bit codes in each block of 16
    assert (np.asarray(s.adam.nu["w"]) > 0).all()


def test_frozen_embedding_is_never_updated():
    cfg = validate(dataclasses.replace(MICRO, freeze=("embed",)))
    p0, p1, _ = _step(cfg)
    np.testing.assert_array_equal(np.asarray(p0["embed"]["embedding"]), np.asarray(p1["embed"]["embedding"]))
    assert not np.array_equal(np.asarray(p0["pos"]), np.asarray(p1["pos"]))


def test_equal_energy_noise_matches_the_quantizers_error_per_group_and_is_fresh():
    spec = QuantSpec.parse("int2-row")
    q = np.asarray(quant.quantize(W, spec).dequantized)
    n1 = np.asarray(site_quantize(W, spec, jax.random.key(1), "noise"))
    n2 = np.asarray(site_quantize(W, spec, jax.random.key(2), "noise"))
    w = np.asarray(W)
    err_q = ((q - w) ** 2).mean(axis=1)
    err_n = ((n1 - w) ** 2).mean(axis=1)
    np.testing.assert_allclose(err_n.mean(), err_q.mean(), rtol=0.1)
    assert np.corrcoef(err_n, err_q)[0, 1] > 0.5  # the profile over scale groups is kept
    assert not np.array_equal(n1, n2) and not np.allclose(n1, q)  # fresh noise, not rounding
    assert abs(np.vdot(n1 - w, w)) < 0.1 * np.vdot(q - w, q - w) * 10  # no correlation with W to speak of
    g = jax.grad(lambda x: jnp.sum(site_quantize(x, spec, jax.random.key(1), "noise") * 3.0))(W)
    np.testing.assert_array_equal(np.asarray(g), 3.0)


def test_hadamard_control_rotates_the_feature_axis():
    R = np.asarray(rotation(32))
    np.testing.assert_allclose(R @ R.T, np.eye(32), atol=1e-5)
    R48 = np.asarray(rotation(48))  # not a power of two: a Haar rotation
    np.testing.assert_allclose(R48 @ R48.T, np.eye(48), atol=1e-5)
    spec = QuantSpec.parse("int4-row")
    h = np.asarray(site_quantize(W, spec, None, "hadamard"))
    expect = np.asarray(quant.quantize(W @ R, spec).dequantized) @ R.T
    np.testing.assert_allclose(h, expect, atol=1e-5)
    outlier = W.at[:, 0].multiply(30.0)
    plain = quant.quantize(outlier, spec).rel_error
    rot = float(jnp.linalg.norm(site_quantize(outlier, spec, None, "hadamard") - outlier) / jnp.linalg.norm(outlier))
    assert rot < plain  # the rotation spreads an outlier feature


def test_stochastic_control_changes_only_integer_rounding():
    assert control_spec(QuantSpec.parse("int3-row"), "stochastic").label == "int3-row-stochastic"
    assert control_spec(QuantSpec.parse("nf4"), "stochastic").label == "nf4"
    assert control_spec(QuantSpec.parse("int3-row"), "noise").label == "int3-row"


def test_pushdown_mass_is_deleted_at_low_bits_and_kept_at_high_bits():
    logits = jax.random.normal(jax.random.key(3), (256, 512))
    targets = jax.random.randint(jax.random.key(4), (256,), 0, 512)
    lo = float(pushdown_kept(logits, targets, QuantSpec.parse("int2-row"), jax.random.key(0)))
    hi = float(pushdown_kept(logits, targets, QuantSpec.parse("int8-row"), jax.random.key(0)))
    sr = float(pushdown_kept(logits, targets, QuantSpec.parse("int2-row-stochastic"), jax.random.key(0)))
    assert lo == 0.0 and hi > 0.5 and 0.5 < sr < 2.0  # stochastic rounding keeps it in expectation


def test_unigram_loss_is_measured_on_the_evaluation_windows():
    train_toks = np.array([0, 0, 0, 1])
    windows = np.array([[0, 1, 1], [1, 0, 0]])
    p = (np.array([3, 1, 0]) + 0.5) / (4 + 1.5)
    expect = -np.mean(np.log(p[[1, 1, 0, 0]]))
    assert unigram_cross_entropy(train_toks, windows, 3) == pytest.approx(expect)


def test_a_run_records_the_new_probes_and_the_unigram_loss():
    ds = train(with_quant(MICRO, "grad/head=int3-row,embed=int4-row"), progress=False)
    assert ds.attrs["eval_windows"] > MICRO.eval_batches * MICRO.batch_size  # every held-out window
    assert 0 < ds.attrs["unigram_loss"] < 2 * ds.attrs["unigram_entropy"]
    last = {k: float(ds[k].values[-1]) for k in ("hidden_effective_rank", "hidden_effective_rank_uncentred",
                                                   "grad_pushdown_kept", "emb_below_edge_measured",
                                                   "emb_below_edge_predicted", "emb_stable_rank_q_sketch",
                                                   "emb_k_star_sketch")}
    assert all(np.isfinite(v) for v in last.values())
    assert 0 <= last["emb_below_edge_measured"] <= 1 and 0 <= last["grad_pushdown_kept"] <= 1.5
    # 4-bit per-row scales: the Widrow regime, where the sketch and the plain prediction agree closely
    sr_q, sr_sketch = float(ds["emb_stable_rank_q"].values[-1]), last["emb_stable_rank_q_sketch"]
    assert sr_sketch == pytest.approx(sr_q, rel=0.02)


def test_the_embedding_probes_sketch_follows_the_dead_zone_where_the_bussgang_model_does_not():
    from zipfrmt import embeddings
    from zipfrmt.nn import probes

    E = embeddings.power_law_matrix(jax.random.key(0), 2000, 64, 0.5)
    out = probes.embedding_probes(E, QuantSpec.parse("int2-tensor"))
    meas = out["emb_stable_rank_q"]
    assert out["emb_widrow"] == 0.0  # 2 bits per tensor: the dead zone
    assert abs(out["emb_stable_rank_q_predicted"] / meas - 1) > 5  # Bussgang: 44 against 5.1
    assert abs(out["emb_stable_rank_q_sketch"] / meas - 1) < 0.3  # the sketch: 6.1
    assert 1 <= out["emb_k_star_sketch"] <= 64
    # the residual-profile law (row and column variances of Q − gE): stable rank 5.9, k* 12 for 9 measured, where
    # the i.i.d. law counts 2; NaN in the Widrow regime
    k_meas = out["emb_k_star_measured"]
    assert abs(out["emb_stable_rank_q_profile"] / meas - 1) < 0.2
    assert abs(out["emb_k_star_profile"] - k_meas) < abs(out["emb_k_star_predicted"] - k_meas)
    assert np.isnan(probes.embedding_probes(E, QuantSpec.parse("int4-row"))["emb_k_star_profile"])


def test_tied_head_reads_the_table_the_lookup_reads_with_stochastic_rounding():
    from zipfrmt.nn.layers import Ctx

    cfg = validate(with_quant(MICRO, "embed=int3-row-stochastic"))
    model = build_model(cfg)
    ctx = Ctx(jax.random.key(5))
    k_w, _, _ = ctx.keys(model.embed.layer_id)
    table = model.embed.quantized_table(k_w)
    h = jax.random.normal(jax.random.key(6), (4, 32))
    np.testing.assert_allclose(np.asarray(model.embed.attend(h, ctx)), np.asarray(h @ table.T), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("change, match", [
    ({"control": "dither"}, r"control: expected one of 'none', 'noise', 'stochastic', 'hadamard'"),
    ({"freeze": ("embd",)}, r"freeze: pattern 'embd' matches no weight"),
    ({"freeze": "embed"}, r"freeze: expected a tuple"),
    ({"quant": (("opt/head", QuantSpec(bits=4)),)}, r"rule 'opt/head=int4-tensor' matches no site"),  # tied
    ({"eval_windows": 0}, r"eval_windows: expected an integer in \[1, inf\]"),
])
def test_bad_mechanism_settings_fail_before_training(change, match):
    with pytest.raises((ValueError, TypeError), match=match):
        validate(dataclasses.replace(MICRO, **change))


def test_equal_energy_noise_on_the_optimizer_state_keeps_the_second_moment_positive():
    params = {"w": W}
    g = {"w": jax.random.normal(jax.random.key(1), W.shape)}
    spec = QuantSpec.parse("int2-row")
    quantized = quantized_adam({("w",): (spec, False, 0)}, seed=0, b1=0.9, b2=0.95)
    noisy = quantized_adam({("w",): (spec, False, 0)}, seed=0, b1=0.9, b2=0.95, control="noise")
    _, sq = quantized.update(g, quantized.init(params), params)
    _, sn = noisy.update(g, noisy.init(params), params)
    ref = optax.scale_by_adam(b1=0.9, b2=0.95)
    _, s0 = ref.update(g, ref.init(params), params)
    m0, mq, mn = (np.asarray(s.mu["w"]) for s in (s0, sq.adam, sn.adam))
    assert ((mn - m0) ** 2).mean() == pytest.approx(((mq - m0) ** 2).mean(), rel=0.25)  # equal energy
    assert len(np.unique(mn)) > 10 * len(np.unique(mq))  # noise, not a grid
    assert (np.asarray(sn.adam.nu["w"]) > 0).all()


def test_hadamard_is_not_a_control_of_the_optimizer_state():
    from zipfrmt.nn.lab import applies, mechanism_config

    assert not applies("opt", "hadamard") and not applies("wgrad", "frozen") and applies("master", "frozen")
    with pytest.raises(ValueError, match="hadamard"):
        mechanism_config(MICRO, "opt", "2", "hadamard")
