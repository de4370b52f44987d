"""Validation at the nn boundary: evaluate's inputs, seeds, JSON configs, the probe set, the run's status."""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import numpy as np
import pytest
import xarray as xr

from zipfrmt.cli import main
from zipfrmt.nn import (
    DataConfig,
    ModelConfig,
    QuantSpec,
    TrainConfig,
    build_model,
    config_to_json,
    evaluate,
    validate,
    with_bits,
)
from zipfrmt.nn.collapse import judge
from zipfrmt.nn.config import check_data_length, config_from_dict
from zipfrmt.nn.probes import hidden_probes

MICRO = TrainConfig(
    model=ModelConfig(vocab_size=128, d_model=32, n_layers=1, n_heads=2, max_len=16),
    data=DataConfig(source="latent", n_tokens=20_000, n_topics=16, doc_len=64),
    batch_size=8, context=16, steps=30, lr=1e-2, warmup=4,
    probe_every=10, eval_every=10, eval_batches=2, checkpoint_every=15,
)


@pytest.fixture(scope="module")
def model():
    return build_model(MICRO)


def _stream(n: int = 400) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 128, n).astype(np.int32)


# --- evaluate -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tokens, kw, err, match", [
    (np.full(100, 128), {}, ValueError, r"tokens: expected token ids in \[0, model\.vocab_size\) = \[0, 128\), "
                                        r"got 100 id\(s\) outside it \(min 128, max 128\)"),
    (np.r_[_stream(99), -1], {}, ValueError, r"tokens: expected token ids in \[0, .*\(min -1,"),
    (_stream().astype(np.float32), {}, TypeError, r"tokens: expected an integer array of token ids, got .*float32"),
    (_stream() > 5, {}, TypeError, r"tokens: expected an integer array"),
    (np.zeros((0, 17), np.int32), {}, ValueError, r"tokens: expected a non-empty array .*\(0, 17\)"),
    (np.zeros(0, np.int32), {}, ValueError, r"tokens: expected a non-empty array"),
    (np.zeros((4, 1), np.int32), {}, ValueError, r"tokens: expected windows of at least 2 tokens"),
    (np.zeros((2, 40), np.int32), {}, ValueError, r"tokens: expected windows of at most model\.max_len \+ 1 = 17"),
    (np.zeros((2, 2, 2), np.int32), {}, ValueError, r"tokens: expected a 1-D stream or 2-D windows"),
    (_stream(), {"n_windows": 0}, ValueError, r"n_windows: expected an integer in \[1, inf\], got 0"),
    (_stream(), {"n_windows": -5}, ValueError, r"n_windows: expected an integer in \[1, inf\], got -5"),
    (_stream(), {"n_windows": 2.0}, TypeError, r"n_windows: expected an integer"),
    (_stream(68).reshape(4, 17), {"n_windows": 2}, ValueError, r"n_windows: applies to a 1-D stream"),
])
def test_evaluate_rejects_bad_tokens_and_window_counts_before_any_work(model, tokens, kw, err, match, monkeypatch):
    import importlib

    E = importlib.import_module("zipfrmt.nn.evaluate")  # the module (zipfrmt.nn.evaluate is also the function)

    def fail(*args, **kwargs):
        raise AssertionError("evaluated although the input is invalid")

    monkeypatch.setattr(E, "eval_step", fail)
    with pytest.raises(err, match=match):
        evaluate(model, tokens, MICRO, **kw)


def test_evaluate_counts_the_windows_it_was_given(model):
    one = evaluate(model, _stream(), MICRO, n_windows=1)
    assert one["n_tokens"] == MICRO.context and math.isfinite(one["loss"])
    short = evaluate(model, _stream(90).reshape(10, 9), MICRO)  # windows narrower than the context
    assert short["n_tokens"] == 10 * 8 and math.isfinite(short["loss"])
    assert math.isclose(short["perplexity"], math.exp(short["loss"]))


def test_evaluate_refuses_to_answer_nan_for_a_model_with_nan_weights():
    from flax import nnx

    bad = build_model(MICRO)
    params = nnx.state(bad, nnx.Param)
    nnx.update(bad, jax.tree.map(lambda x: x * np.nan, params))
    with pytest.raises(ValueError, match="model: the held-out loss is NaN"):
        evaluate(bad, _stream(), MICRO, n_windows=1)


# --- seeds ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, match", [
    ({"seed": 2**31}, r"seed: expected an integer in \[0, 2147483647\], got 2147483648"),
    ({"seed": -1}, r"seed: expected an integer in \[0, 2147483647\], got -1"),
    ({"data": DataConfig(data_seed=2**31)}, r"data\.data_seed: expected an integer in \[0, 2147483647\]"),
    ({"data": DataConfig(data_seed=1.5)}, r"data\.data_seed: expected an integer"),
])
def test_seeds_beyond_int32_fail_validation(change, match):
    with pytest.raises((ValueError, TypeError), match=match):
        validate(dataclasses.replace(MICRO, **change))
    assert validate(dataclasses.replace(MICRO, seed=2**31 - 1)).seed == 2**31 - 1


def test_cli_train_with_a_too_large_seed_fails_before_touching_the_out_folder(tmp_path, capsys):
    out = tmp_path / "runS"
    assert main(["train", "tiny", "--steps", "1", "--seed", "2147483648", "--out", str(out), "--no-progress"]) == 2
    assert "seed: expected an integer in [0, 2147483647], got 2147483648" in capsys.readouterr().err
    assert not out.exists()


# --- JSON configs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d, err, match", [
    ({"model": {"vocab_size": 64, "foo": 1}}, ValueError, r"model: unknown fields \['foo'\]; expected a subset of"),
    ({"data": {"bar": 2}}, ValueError, r"data: unknown fields \['bar'\]"),
    ([1, 2], TypeError, r"config: expected an object of TrainConfig fields \(a dict\), got \[1, 2\]"),
    ({"model": [1, 2]}, TypeError, r"model: expected an object of ModelConfig fields, got \[1, 2\]"),
    ({"data": "latent"}, TypeError, r"data: expected an object of DataConfig fields, got 'latent'"),
    ({"nope": 1}, ValueError, r"config: unknown fields \['nope'\]"),
])
def test_json_configs_with_bad_sections_fail_naming_the_section(d, err, match):
    with pytest.raises(err, match=match):
        config_from_dict(d)


def test_json_freeze_as_one_string_is_one_pattern_not_its_characters():
    assert config_from_dict({"freeze": "embed"}).freeze == ("embed",)
    assert config_from_dict({"freeze": "embed, pos"}).freeze == ("embed", "pos")
    assert config_from_dict({"freeze": ["embed"]}).freeze == ("embed",)
    validate(config_from_dict({"freeze": "embed"}))
    with pytest.raises(TypeError, match=r"freeze: expected a tuple of weight patterns"):
        validate(config_from_dict({"freeze": 3}))


@pytest.mark.parametrize("value", ["no", 0, 1, None])
def test_json_bool_fields_must_be_bools(value):
    cfg = config_from_dict({"model": {"tie_embeddings": value}})
    with pytest.raises(TypeError, match=rf"model\.tie_embeddings: expected true or false, got {value!r}"):
        validate(cfg)
    assert validate(config_from_dict({"model": {"tie_embeddings": False}})).model.tie_embeddings is False


def test_cli_train_json_with_an_unknown_nested_key_names_it(tmp_path, capsys):
    d = json.loads(config_to_json(MICRO))
    d["model"]["foo"] = 1
    f = tmp_path / "cfg.json"
    f.write_text(json.dumps(d))
    assert main(["train", str(f), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "model: unknown fields ['foo']" in err
    f.write_text("[1, 2]")
    assert main(["train", str(f), "--no-progress"]) == 2
    assert "config: expected an object of TrainConfig fields" in capsys.readouterr().err


# --- the probe set -------------------------------------------------------------------------------------------


def test_a_single_hidden_vector_probe_set_fails_validation():
    bad = dataclasses.replace(MICRO, batch_size=1, context=1, eval_batches=1)
    with pytest.raises(ValueError, match=r"eval_batches, batch_size, context: expected at least 2 hidden vectors"
                                         r".*got 1"):
        validate(bad)
    with pytest.raises(ValueError, match=r"expected at least 2 hidden vectors"):
        validate(dataclasses.replace(MICRO, context=1, eval_windows=1))
    validate(dataclasses.replace(bad, context=2))  # two vectors: a pair, an anisotropy


def test_a_held_out_stream_too_short_for_two_probe_vectors_fails():
    cfg = dataclasses.replace(MICRO, context=1)
    with pytest.raises(ValueError, match=r"data\.eval_fraction: .*at least 2 hidden vectors, got 3 held-out tokens"):
        check_data_length(cfg, 1000, 3)
    check_data_length(cfg, 1000, 4)


@pytest.mark.parametrize("shape", [(1, 8), (1, 1, 8), (0, 8), (8,)])
def test_hidden_probes_of_fewer_than_two_vectors_raise_instead_of_nan(shape):
    with pytest.raises(ValueError, match=r"H: expected at least 2 hidden vectors"):
        hidden_probes(np.ones(shape, np.float32))
    found = hidden_probes(np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32))
    assert all(math.isfinite(v) for v in found.values())


# --- the status of a run with no quantized site --------------------------------------------------------------


def _stuck(loss: float = 4.0, unigram: float = 4.0) -> xr.Dataset:
    return xr.Dataset({"eval_loss": ("step", [5.0, loss]), "hidden_effective_rank": ("step", [np.nan, np.nan])},
                      coords={"step": [0, 1]}, attrs={"unigram_loss": unigram})


def test_an_unquantized_run_at_the_unigram_level_is_undertrained_not_collapsed():
    status, reason = judge(_stuck(), None, MICRO)
    assert status == "ok" and reason.startswith("undertrained, not collapsed: no site is quantized")
    assert "unigram loss 4.0000" in reason
    fp32_rules = dataclasses.replace(MICRO, quant=(("embed", None),))  # an fp32 rule quantizes nothing
    assert judge(_stuck(), None, fp32_rules)[0] == "ok"
    q4 = with_bits(MICRO, QuantSpec(bits=4, granularity="row"))
    status, reason = judge(_stuck(), None, q4)
    assert status == "collapsed" and reason.startswith("held-out loss")
    assert judge(_stuck(loss=2.0), None, MICRO) == ("ok", "")
    assert judge(_stuck(loss=2.0), None, q4) == ("ok", "")


def test_an_interrupt_before_training_starts_says_so_instead_of_an_empty_message(monkeypatch, capsys, tmp_path):
    import importlib

    train_module = importlib.import_module("zipfrmt.nn.train")  # the module (zipfrmt.nn.train is also a function)

    def interrupted(*a, **k):
        raise KeyboardInterrupt  # as Ctrl-C while the corpus is built: no message of train()'s own

    monkeypatch.setattr(train_module, "train", interrupted)
    assert main(["train", "tiny", "--steps", "2", "--out", str(tmp_path / "run"), "--no-progress"]) == 130
    assert "zipfrmt train: interrupted before the first training step: nothing was saved" in capsys.readouterr().err
