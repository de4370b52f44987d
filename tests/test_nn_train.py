"""Training loop: learning, fp32 vs 8-bit, bit-for-bit resume, divergence, config validation, CLI."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import xarray as xr

from zipfrmt.cli import main
from zipfrmt.nn import (
    DataConfig,
    ModelConfig,
    QuantSpec,
    TrainConfig,
    config_from_json,
    config_to_json,
    evaluate,
    train,
    trained_model,
    validate,
    with_bits,
    with_quant,
)
from zipfrmt.nn.data import load_tokens

MICRO = TrainConfig(
    model=ModelConfig(vocab_size=128, d_model=32, n_layers=1, n_heads=2, max_len=16),
    data=DataConfig(source="latent", n_tokens=20_000, n_topics=16, doc_len=64),
    batch_size=8, context=16, steps=30, lr=1e-2, warmup=4,
    probe_every=10, eval_every=10, eval_batches=2, checkpoint_every=15,
)


def _same(a: xr.Dataset, b: xr.Dataset) -> None:
    assert list(a.data_vars) == list(b.data_vars)
    for k in a.data_vars:
        np.testing.assert_array_equal(a[k].values, b[k].values, err_msg=k)


def test_training_reduces_loss_and_8bit_stays_close_to_fp32():
    fp = train(MICRO, progress=False)
    q8 = train(with_bits(MICRO, QuantSpec(bits=8, granularity="row"), act=QuantSpec(bits=8, granularity="row")),
               progress=False)
    for ds in (fp, q8):
        assert ds.attrs["status"] in ("ok", "collapsed")
        assert ds.eval_loss.values[-1] < ds.eval_loss.values[0] - 0.5
        assert np.isfinite(ds.emb_stable_rank.values[-1]) and np.isfinite(ds.hidden_anisotropy.values[-1])
    assert abs(fp.eval_loss.values[-1] - q8.eval_loss.values[-1]) < 0.05
    assert np.isnan(fp.emb_k_star_measured.values[-1]) and q8.emb_k_star_measured.values[-1] > 0
    assert fp.step.values.tolist() == list(range(31))


def test_resume_is_bit_for_bit(tmp_path):
    cfg = with_bits(MICRO, QuantSpec(bits=4, granularity="row", rounding="stochastic"))
    straight = train(cfg, tmp_path / "a", progress=False)
    part = train(cfg, tmp_path / "b", progress=False, stop_after=15)
    assert part.attrs["status"] == "interrupted" and part.sizes["step"] == 16
    resumed = train(cfg, tmp_path / "b", progress=False)
    _same(straight, resumed)
    _same(straight, xr.load_dataset(tmp_path / "b" / "history.nc"))
    assert resumed.attrs["status"] == straight.attrs["status"]
    # the restored model evaluates like the run recorded; PTQ to W4A4 changes it
    model = trained_model(cfg, tmp_path / "b")
    held = load_tokens(cfg).eval
    ev = evaluate(model, held, cfg)  # the windows the training loop evaluates on
    assert math.isclose(ev["loss"], float(straight.eval_loss.values[-1]), rel_tol=1e-4)
    ptq = evaluate(model, held, cfg, quant="linear=int2-tensor,act=int2-row")
    assert ptq["loss"] != ev["loss"] and math.isclose(ev["perplexity"], math.exp(ev["loss"]))


def test_a_checkpoint_with_other_history_fields_restores_the_shared_ones_and_leaves_the_rest_nan(tmp_path):
    # a checkpoint written by a version that recorded other probes (fewer, or one since renamed) still resumes
    from zipfrmt.nn import checkpoint

    mgr = checkpoint.manager(tmp_path)
    old = {"params": {"w": np.arange(3, dtype=np.float32)}, "history": {"loss": np.arange(4.0), "gone": np.ones(4)}}
    checkpoint.save(mgr, 3, old)
    mgr = checkpoint.manager(tmp_path)  # a fresh one, as a resumed run opens
    template = {"params": {"w": np.zeros(3, np.float32)},
                "history": {"loss": np.full(4, np.nan), "emb_k_star_sketch": np.full(4, np.nan)}}
    step, tree = checkpoint.latest(mgr, template)
    assert step == 3 and sorted(tree["history"]) == ["emb_k_star_sketch", "loss"]
    np.testing.assert_array_equal(tree["history"]["loss"], np.arange(4.0))
    assert np.isnan(tree["history"]["emb_k_star_sketch"]).all()
    np.testing.assert_array_equal(tree["params"]["w"], np.arange(3, dtype=np.float32))


def _nan_at(step: int) -> optax.GradientTransformation:
    def update(g, state, params=None):
        bad = state >= step
        return jax.tree.map(lambda x: jnp.where(bad, jnp.nan, x), g), state + 1

    return optax.GradientTransformation(lambda p: jnp.zeros((), jnp.int32), update)


def test_divergence_stops_cleanly_and_saves_history(tmp_path):
    ds = train(MICRO, tmp_path, progress=False, extra_transform=_nan_at(12))
    assert ds.attrs["status"] == "diverged" and "non-finite" in ds.attrs["reason"]
    assert ds.attrs["stopped_at"] == 14  # update 13 writes NaN; step 14's loss is NaN
    saved = xr.load_dataset(tmp_path / "history.nc")
    assert saved.attrs["status"] == "diverged" and saved.sizes["step"] == 15
    assert np.all(np.isfinite(saved.loss.values[1:13]))


@pytest.mark.parametrize("change, match", [
    ({"model": ModelConfig(vocab_size=128, d_model=30, n_heads=4, max_len=16)},
     r"model\.d_model: expected a multiple of n_heads = 4, got 30"),
    ({"context": 32}, r"context: expected at most model\.max_len = 16"),
    ({"quant": (("embed", QuantSpec(bits=4, granularity="group", group_size=5)),)},
     r"quant: site embed: spec 'int4-group5' needs a group size that divides the row length 32"),
    ({"quant": (("act", QuantSpec(bits=8)),)}, r"quant: site act/.*expected 'row'.*causal leak"),
    ({"quant": (("grad", QuantSpec(bits=4, granularity="group", group_size=48)),)}, r"quant: site grad/"),
    ({"quant": (("lienar", QuantSpec(bits=4)),)}, r"quant: rule 'lienar=int4-tensor' matches no site"),
    ({"quant": ("linear=int4",)}, r"quant: expected rules as a tuple of \(pattern, spec\) pairs"),
    ({"b2": 1.5}, r"b2: expected"),
])
def test_bad_configs_fail_before_training(change, match):
    with pytest.raises((ValueError, TypeError), match=match):
        train(dataclasses.replace(MICRO, **change), progress=False)


@pytest.mark.parametrize("spec, match", [
    (dict(bits=0), r"bits: expected an integer in \[1, 16\], got 0"),
    (dict(format="fp5"), r"format: expected one of"),
    (dict(format="nf4", clip="mse"), r"clip: format 'nf4' supports 'absmax'"),
])
def test_bad_specs_fail_when_made(spec, match):
    with pytest.raises(ValueError, match=match):
        QuantSpec(**spec)


def test_context_longer_than_the_data_fails_before_training():
    cfg = dataclasses.replace(MICRO, model=dataclasses.replace(MICRO.model, max_len=4096), context=3000,
                              data=dataclasses.replace(MICRO.data, n_tokens=20_000))
    with pytest.raises(ValueError, match="context: expected a context shorter than the data"):
        train(cfg, progress=False)


def test_config_json_round_trip_and_hash():
    cfg = with_bits(MICRO, QuantSpec(format="nf4", granularity="row"), act=QuantSpec(bits=8, granularity="row"))
    assert config_from_json(config_to_json(cfg)) == cfg
    assert '["embed", "nf4"]' in config_to_json(cfg)  # specs as their text
    assert with_quant(MICRO, "linear=nf4,embed=nf4,head=nf4,act=int8-row").quant == cfg.quant
    assert hash(cfg) == hash(config_from_json(config_to_json(cfg)))
    assert validate(cfg) is cfg


def test_cli_train_writes_history(tmp_path, capsys):
    cfg_file = tmp_path / "micro.json"
    cfg_file.write_text(config_to_json(dataclasses.replace(MICRO, steps=10)))
    assert main(["train", str(cfg_file), "--bits", "4", "--act-bits", "8", "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    ds = xr.load_dataset(tmp_path / "run" / "history.nc")
    assert ds.sizes["step"] == 11 and "emb_stable_rank" in ds and ds.attrs["zipfrmt_version"]
    rules = dict(config_from_json(ds.attrs["config"]).quant)
    assert rules["embed"] == QuantSpec(bits=4) and rules["act"] == QuantSpec(bits=8, granularity="row")
    assert main(["train", "tiny", "--bits", "0"]) == 2
    assert "zipfrmt train: error: --bits" in capsys.readouterr().err
    assert main(["train", "tiny", "--quant", "embed=int2-row,lnear=int4"]) == 2
    assert "lnear" in capsys.readouterr().err
    assert main(["train", "tiny", "--rounding", "stochastic"]) == 2
    assert "--rounding: applies to --bits" in capsys.readouterr().err


def test_cli_quant_rules_and_grad_rounding(tmp_path):
    from zipfrmt.cli import build_parser
    from zipfrmt.nn.command import config_from_args

    args = build_parser().parse_args(["train", "tiny", "--quant", "embed=int2-row,linear=int4-row",
                                      "--grad-bits", "int2-row-stochastic"])
    rules = dict(config_from_args(args).quant)
    assert rules == {"grad": QuantSpec(bits=2, granularity="row", rounding="stochastic"),
                     "embed": QuantSpec(bits=2, granularity="row"), "linear": QuantSpec(bits=4, granularity="row")}
    args = build_parser().parse_args(["train", "tiny", "--grad-bits", "3"])
    assert dict(config_from_args(args).quant)["grad"] == QuantSpec(bits=3, granularity="row")  # per token


def test_experiment_settings_and_table():
    from zipfrmt.nn.experiment import bits_settings, granularity_settings, summary_table

    labels = [lbl for lbl, _, _ in bits_settings()]
    assert labels == ["fp32", "int8", "int6", "int4", "int3", "int2"]
    gran = granularity_settings()
    assert len(gran) == 12 and {s.granularity for _, s, _ in gran} == {"tensor", "row", "group"}
    table = summary_table([{"corpus": "latent", "setting": "int4", "seed": 0, "eval_loss": 4.1, "status": "ok"}])
    assert table.splitlines()[2].startswith("| latent | int4 | 0 | 4.1 |")


def test_ctrl_c_saves_a_checkpoint_and_the_history_then_resumes_bit_for_bit(tmp_path, monkeypatch):
    import importlib

    T = importlib.import_module("zipfrmt.nn.train")  # the module (zipfrmt.nn.train is also the function)

    cfg = dataclasses.replace(MICRO, checkpoint_every=100)  # no regular checkpoint before the end
    straight = train(cfg, tmp_path / "a", progress=False)
    real, calls = T.train_step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(T, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt, match="after 7 steps.*run the same command to resume"):
        train(cfg, tmp_path / "b", progress=False)
    saved = xr.load_dataset(tmp_path / "b" / "history.nc")
    assert saved.attrs["status"] == "interrupted" and saved.sizes["step"] == 8
    monkeypatch.setattr(T, "train_step", real)
    _same(straight, train(cfg, tmp_path / "b", progress=False))


def test_cli_train_out_must_be_a_folder(tmp_path, capsys):
    f = tmp_path / "afile.txt"
    f.write_text("x")
    assert main(["train", "tiny", "--steps", "2", "--out", str(f), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "out_dir" in err and "afile.txt" in err


def _train_module():
    import importlib

    return importlib.import_module("zipfrmt.nn.train")  # the module (zipfrmt.nn.train is also the function)


def test_a_started_folder_without_checkpoint_or_history_is_reused_by_another_config(tmp_path):
    short = dataclasses.replace(MICRO, steps=2, checkpoint_every=2)
    out = tmp_path / "runS"
    out.mkdir()
    (out / "config.json").write_text(config_to_json(dataclasses.replace(short, seed=99)))  # a crash before step 1
    ds = train(dataclasses.replace(short, seed=1), out, progress=False)
    assert ds.sizes["step"] == 3 and config_from_json((out / "config.json").read_text()).seed == 1
    # a folder that holds a run (checkpoints, history) still refuses another config, naming what differs
    with pytest.raises(ValueError, match=r"out_dir \(--out\): '.*runS' holds a run of a different config "
                                         r"\(it differs in seed\)"):
        train(dataclasses.replace(short, seed=2), out, progress=False)
    (out / "history.nc").unlink()
    with pytest.raises(ValueError, match=r"holds a run of a different config \(it differs in seed\)"):
        train(dataclasses.replace(short, seed=2), out, progress=False)  # the checkpoint alone is a run


def test_the_out_folder_is_checked_before_the_corpus_is_built(tmp_path, monkeypatch):
    T = _train_module()

    def fail(*args, **kwargs):
        raise AssertionError("built the corpus before checking the out folder")

    monkeypatch.setattr(T, "load_tokens", fail)
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(ValueError, match=r"out_dir \(--out\): expected a folder for the run, got the existing file"):
        train(MICRO, f, progress=False)
    with pytest.raises(OSError, match=r"out_dir \(--out\): cannot create or write the run folder '.*afile/sub'"):
        train(MICRO, f / "sub", progress=False)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    cfg = dataclasses.replace(MICRO, steps=4, checkpoint_every=2, eval_every=2, probe_every=2)
    out = tmp_path_factory.mktemp("short") / "run"
    return cfg, out, train(cfg, out, progress=False)


def test_an_unquantized_run_is_never_reported_collapsed(short_run):
    _, _, ds = short_run
    assert ds.attrs["status"] == "ok"  # 4 fp32 steps end above the unigram level: undertrained, said in the reason
    assert ds.attrs["reason"].startswith("undertrained, not collapsed: no site is quantized and held-out loss")


def test_trained_model_checks_the_folder_against_the_config_before_restoring(short_run, tmp_path):
    cfg, out, _ = short_run
    assert trained_model(cfg, out) is not None
    wider = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, d_model=64))
    with pytest.raises(ValueError, match=r"out_dir: '.*run' holds a run of a different config \(it differs in "
                                         r"model\.d_model\)"):
        trained_model(wider, out)
    with pytest.raises(ValueError, match=r"holds a run of a different config \(it differs in steps\)"):
        trained_model(dataclasses.replace(cfg, steps=3), out)  # steps are part of the run: documented, refused
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=r"out_dir: expected the folder of a run, got '.*nope', which does "
                                                r"not exist"):
        trained_model(cfg, missing)
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"out_dir: no checkpoint in"):
        trained_model(cfg, empty)
    assert list(empty.iterdir()) == []  # no checkpoints folder created


def test_train_cached_rebuilds_a_truncated_history_from_the_checkpoints(tmp_path, monkeypatch):
    from zipfrmt.nn.experiment import run_dir, train_cached
    from zipfrmt.sweep import CacheWarning

    cfg = dataclasses.replace(MICRO, steps=4, checkpoint_every=2, eval_every=2, probe_every=2)
    first = train_cached(cfg, tmp_path)
    path = run_dir(tmp_path, cfg) / "history.nc"
    path.write_bytes(path.read_bytes()[:100])  # truncated
    T = _train_module()

    def fail(*args, **kwargs):
        raise AssertionError("trained again although the checkpoint holds the finished run")

    monkeypatch.setattr(T, "train_step", fail)
    with pytest.warns(CacheWarning, match=r"history\.nc is unreadable .*rebuilding it from the run's checkpoints"):
        again = train_cached(cfg, tmp_path)
    _same(first, again)
    assert again.attrs["status"] == first.attrs["status"]
    _same(first, xr.load_dataset(path))
