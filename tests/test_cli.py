"""The zipfrmt command: report, analyze and list, as a user runs them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import power_law_np
from safetensors.numpy import save_file

from zipfrmt import cli as cli_module
from zipfrmt import quant, rmt, spectra
from zipfrmt.analyze import analyze_matrix
from zipfrmt.cli import main
from zipfrmt.quant import QuantSpec

FP_KEYS = {"stable_rank", "effective_rank", "participation_ratio", "rank_exponent", "rank_window", "esd_alpha",
           "esd_xmin", "esd_ks", "sigma_max", "sigma_min"}
Q_KEYS = {"spec", "format", "bits", "granularity", "rounding", "stable_rank", "effective_rank", "rank_exponent",
          "esd_alpha", "sigma_max", "sigma_min", "rel_error", "zero_fraction", "noise_var_model", "noise_var_measured",
          "bussgang_gain", "residual_var", "regime", "truncation_index", "predicted"}
PRED_KEYS = {"stable_rank", "truncation_index", "sigma_max", "model"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small safetensors checkpoint: an embedding, a bias vector and another layer."""
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    W = power_law_np(1500, 96, 0.6, seed=2) * 4.0
    save_file({"wte.weight": W, "ln.bias": np.zeros(96, np.float32),
               "h.0.w": np.ones((96, 32), np.float32)}, str(path))
    return path, W


def test_analyze_json_has_every_key_with_the_library_values(checkpoint, tmp_path, capsys):
    path, W = checkpoint
    out = tmp_path / "a.json"
    rc = main(["analyze", str(path), "--tensor", "wte.weight", "--bits", "8,3,2",
               "--granularity", "tensor,row,group32", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["tensor"] == "wte.weight" and report["shape"] == [1500, 96]
    assert FP_KEYS <= set(report["fp"])
    assert len(report["quantized"]) == 9
    for row in report["quantized"]:
        assert Q_KEYS <= set(row) and PRED_KEYS <= set(row["predicted"])
        assert row["predicted"]["model"] in ("additive", "bussgang")
    # The values are the library's.
    s = spectra.singular_values(W)
    fp = spectra.summarize_spectrum(s, W.shape)
    assert report["fp"]["stable_rank"] == pytest.approx(fp.stable_rank, rel=1e-6)
    assert report["fp"]["esd_alpha"] == pytest.approx(fp.esd_alpha, rel=1e-6)
    assert report["fp"]["rank_window"] == [fp.rank_fit.k_lo, fp.rank_fit.k_hi]
    row = next(r for r in report["quantized"] if r["bits"] == 3 and r["granularity"] == "group32")
    q = quant.quantize(W, 3, granularity="group", group_size=32)
    sq = spectra.summarize(q.dequantized)
    assert row["stable_rank"] == pytest.approx(sq.stable_rank, rel=1e-6)
    assert row["rank_exponent"] == pytest.approx(sq.rank_exponent, rel=1e-6)
    assert row["noise_var_model"] == pytest.approx(q.noise_var_model, rel=1e-6)
    assert row["regime"] == q.regime
    if row["regime"] == "widrow":
        pred = rmt.predict_quantized(np.asarray(s, np.float64), 1500, 96, q.noise_var_model)
        assert row["predicted"]["stable_rank"] == pytest.approx(pred.stable_rank, rel=1e-6)
        assert row["predicted"]["stable_rank"] == pytest.approx(row["stable_rank"], rel=0.02)
    printed = capsys.readouterr().out
    assert "wte.weight: 1500 x 96" in printed and "group32" in printed


def test_analyze_quant_evaluates_every_format_with_its_spec_text(checkpoint, tmp_path):
    """The issue's "done when": every spec reports spectrum, noise statistics, regime and prediction."""
    path, W = checkpoint
    out = tmp_path / "f.json"
    specs = ["int4-row", "nf4", "fp8_e4m3", "mxfp4", "nvfp4", "int3-group32-stochastic"]
    assert main(["analyze", str(path), "--tensor", "wte.weight", "--quant", ",".join(specs), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["quantized"]
    assert [r["spec"] for r in rows] == specs
    for r in rows:
        assert Q_KEYS <= set(r) and PRED_KEYS <= set(r["predicted"])
        assert r["regime"] in ("widrow", "dead-zone") and r["noise_var_model"] > 0
        assert r["predicted"]["model"] == ("additive" if r["regime"] == "widrow" else "bussgang")
        assert math.isfinite(r["stable_rank"]) and r["truncation_index"] >= 0
    nf4 = next(r for r in rows if r["spec"] == "nf4")
    q = quant.quantize(W, "nf4")
    assert (nf4["format"], nf4["bits"], nf4["granularity"]) == ("nf4", 4, "row")
    assert nf4["rel_error"] == pytest.approx(q.rel_error, rel=1e-6)
    assert nf4["stable_rank"] == pytest.approx(spectra.summarize(q.dequantized).stable_rank, rel=1e-6)


def test_analyze_quant_and_the_bits_shorthand_do_not_mix(checkpoint, capsys):
    path, _ = checkpoint
    assert main(["analyze", str(path), "--tensor", "wte.weight", "--quant", "int4-row", "--bits", "4"]) == 2
    assert "--quant" in capsys.readouterr().err
    assert main(["analyze", str(path), "--tensor", "wte.weight", "--quant", "int4-rwo"]) == 2
    err = capsys.readouterr().err
    assert "--quant" in err and "rwo" in err


def test_analyze_checks_outputs_and_groups_before_any_work(checkpoint, tmp_path, capsys, monkeypatch):
    """Bad --json/--plot paths and group sizes longer than a row fail at once, before the spectrum is computed."""
    path, _ = checkpoint

    def boom(*a, **k):
        raise AssertionError("the analysis ran before the options were checked")

    monkeypatch.setattr(spectra, "singular_values", boom)
    base = ["analyze", str(path), "--tensor", "wte.weight", "--quant", "int4-row"]
    assert main([*base, "--json", str(tmp_path)]) == 2
    assert "--json" in capsys.readouterr().err
    assert main([*base, "--json", str(tmp_path / "missing" / "a.json")]) == 2
    assert "--json" in capsys.readouterr().err
    assert main([*base, "--plot", str(tmp_path / "a.xyz")]) == 2
    err = capsys.readouterr().err
    assert "--plot" in err and "xyz" in err
    assert main(["analyze", str(path), "--tensor", "wte.weight", "--quant", "int4-group512"]) == 2
    err = capsys.readouterr().err
    assert "group" in err and "96" in err


def test_analyze_plot_writes_png_and_pdf(checkpoint, tmp_path):
    path, _ = checkpoint
    png = tmp_path / "spec.png"
    assert main(["analyze", str(path), "--tensor", "wte.weight", "--bits", "4,2", "--plot", str(png)]) == 0
    assert png.stat().st_size > 10_000 and png.with_suffix(".pdf").exists()


def test_analyze_unknown_tensor_lists_the_names(checkpoint, capsys):
    path, _ = checkpoint
    assert main(["analyze", str(path), "--tensor", "embed"]) == 2
    err = capsys.readouterr().err
    assert "embed" in err and "wte.weight" in err and "h.0.w" in err


def test_analyze_rejects_a_vector_and_a_missing_file(checkpoint, tmp_path, capsys):
    path, _ = checkpoint
    assert main(["analyze", str(path), "--tensor", "ln.bias"]) == 2
    assert "ln.bias" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "nope.safetensors"), "--tensor", "x"]) == 2
    assert "nope.safetensors" in capsys.readouterr().err


def test_bad_options_are_named(checkpoint, capsys):
    path, _ = checkpoint
    assert main(["analyze", str(path), "--tensor", "wte.weight", "--granularity", "block8"]) == 2
    assert "granularity" in capsys.readouterr().err
    assert main(["analyze", str(path), "--tensor", "wte.weight", "--bits", "4,x"]) == 2
    assert "--bits" in capsys.readouterr().err
    assert main(["analyze", str(path), "--tensor", "wte.weight", "--bits", "0"]) == 2
    assert "bits" in capsys.readouterr().err


def test_list_prints_names_shapes_and_dtypes(checkpoint, capsys):
    path, _ = checkpoint
    assert main(["list", str(path)]) == 0
    out = capsys.readouterr().out
    assert "wte.weight\t[1500, 96]" in out and "ln.bias\t[96]" in out


@pytest.mark.parametrize("setting", ["folder", "off"])
def test_compiled_programs_are_cached_on_disk_between_runs(tmp_path, setting):
    """The CLI keeps XLA's compiled programs in ZIPFRMT_COMPILATION_CACHE (default: under XDG_CACHE_HOME);
    ``off`` writes nothing."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    env["ZIPFRMT_COMPILATION_CACHE"] = str(tmp_path / "cache") if setting == "folder" else "off"
    cmd = [sys.executable, "-m", "zipfrmt.cli", "report", "--V", "256", "--d", "32", "--bits", "4",
           "--granularity", "row"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    if setting == "folder":
        assert written and all((tmp_path / "cache") in p.parents for p in written)
    else:
        assert written == []


def test_reproduce_writes_no_compiled_programs_it_caches_results_instead(tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr(cli_module, "enable_compilation_cache", lambda: called.append(True))
    monkeypatch.setattr(cli_module, "build_parser", lambda: _FakeParser("reproduce"))
    assert cli_module.main([]) == 0 and called == []
    monkeypatch.setattr(cli_module, "build_parser", lambda: _FakeParser("analyze"))
    assert cli_module.main([]) == 0 and called == [True]


class _FakeParser:
    """A parser whose parse_args returns ``command`` with a no-op handler (what main does around it)."""

    def __init__(self, command):
        self.command = command

    def parse_args(self, argv):
        import types

        return types.SimpleNamespace(command=self.command, func=lambda args: 0)


def test_report_is_real_package_output(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["report", "--V", "1024", "--d", "64", "--bits", "8,2", "--granularity", "row",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["fp"]["rank_exponent"] == pytest.approx(0.5, abs=1e-3)
    eight, two = report["quantized"]
    assert eight["regime"] == "widrow" and two["regime"] == "dead-zone"
    assert two["stable_rank"] > eight["stable_rank"]  # the noise floor raises the stable rank
    assert "dead-zone" in capsys.readouterr().out


def test_analysis_sketch_bulk_changes_only_its_truncation_index():
    W = power_law_np(600, 48, 0.5)
    specs = ["int2-row", "int4-row"]
    ds, mp, auto = (analyze_matrix(W, specs, seed=1, sketch_bulk=b)["quantized"]
                    for b in ("dozier-silverstein", "mp", "auto"))
    for a, b, c in zip(ds, mp, auto, strict=True):
        assert a["predicted_sketch"]["stable_rank"] == b["predicted_sketch"]["stable_rank"]
        assert a["predicted_sketch"]["sigma_max"] == b["predicted_sketch"]["sigma_max"]
        assert a["predicted"] == b["predicted"] == c["predicted"]
        # auto (the default): DS in the dead zone, MP in the Widrow regime
        same = a if c["regime"] == "dead-zone" else b
        assert c["predicted_sketch"]["truncation_index"] == same["predicted_sketch"]["truncation_index"]
    assert [c["regime"] for c in auto] == ["dead-zone", "widrow"]
    assert analyze_matrix(W, specs, seed=1)["quantized"] == auto
    with pytest.raises(ValueError, match=r"sketch_bulk: expected one of 'auto', 'mp', 'dozier-silverstein', got 'ds'"):
        analyze_matrix(W, ["int4-row"], sketch_bulk="ds")


def test_analysis_bulk_chooses_the_law_of_the_main_prediction_and_mp_keeps_the_spiked_map():
    """A Gaussian W has no spike: "auto" (the default) reads its σ_1(Q) off the Dozier–Silverstein law, "mp" keeps
    the spiked map (faster, and 9% off at int3-tensor here); the sketch is the same either way."""
    W = np.random.default_rng(1).standard_normal((512, 256)).astype(np.float32)
    auto, mp = (analyze_matrix(W, ["int3-tensor"], bulk=b)["quantized"][0] for b in ("auto", "mp"))
    measured = auto["stable_rank"]
    assert abs(auto["predicted"]["stable_rank"] / measured - 1) < 0.04
    assert mp["predicted"]["stable_rank"] > 1.06 * measured
    assert auto["predicted_sketch"] == mp["predicted_sketch"]
    with pytest.raises(ValueError, match=r"bulk: expected one of 'auto', 'mp', 'dozier-silverstein', got 'MP'"):
        analyze_matrix(W, ["int4-row"], bulk="MP")


def test_stochastic_rounding_in_an_analysis_is_reproducible():
    W = power_law_np(600, 48, 0.5)
    settings = [QuantSpec(bits=3, granularity="row", rounding="stochastic")]
    a = analyze_matrix(W, settings, seed=1)["quantized"][0]
    b = analyze_matrix(W, settings, seed=1)["quantized"][0]
    c = analyze_matrix(W, settings, seed=2)["quantized"][0]
    assert a["stable_rank"] == b["stable_rank"] and a["stable_rank"] != c["stable_rank"]
    assert not math.isnan(a["noise_var_measured"])


def test_all_zero_tensor_is_reported_not_crashed(tmp_path, capsys):
    path = tmp_path / "z.npy"
    np.save(path, np.zeros((64, 16), np.float32))
    out = tmp_path / "z.json"
    assert main(["analyze", str(path), "--bits", "4", "--granularity", "row", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["fp"]["stable_rank"] == 0 and report["fp"]["rank_exponent"] is None
    assert "all singular values are zero" in report["fp"]["reasons"]["rank_exponent"]


def test_verify_command_prints_the_table_and_writes_json(monkeypatch, tmp_path, capsys):
    """`zipfrmt verify` on a small grid (the quick grid itself runs in bench/rmt.py and the notes)."""
    from zipfrmt import bounds

    small = bounds.VerifyGrid(V=(512,), d=(64,), a=(0.5,), bits=(6, 2), granularity=("row",),
                              rounding=("nearest",), seeds=(0,))
    monkeypatch.setattr(bounds.table, "QUICK_GRID", small)
    out = tmp_path / "v.json"
    assert main(["verify", "--scale", "quick", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "P4" in text and "Weyl" in text
    data = json.loads(out.read_text())
    assert data["rows"] and all(r.get("violations", 0) == 0 for r in data["rows"] if r["kind"] == "rigorous")


def test_list_of_a_file_with_no_arrays_says_so_and_fails(tmp_path, capsys):
    np.savez(tmp_path / "empty.npz")
    assert main(["list", str(tmp_path / "empty.npz")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "empty.npz" in captured.err and "holds no arrays" in captured.err


def test_list_of_a_directory_says_it_is_a_directory(tmp_path, capsys):
    assert main(["list", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and "unsupported file type" not in err


@pytest.fixture
def no_training(monkeypatch):
    """``zipfrmt train`` must fail on its options before training starts."""
    from zipfrmt.nn import command

    def fail(*a, **k):
        raise AssertionError("training started although an option was wrong")

    monkeypatch.setattr(command, "run", fail)


@pytest.mark.parametrize(("args", "words"), [
    (["--bits", "fp32", "--granularity", "bogus"], ("--granularity", "'bogus'", "groupN")),
    (["--bits", "4", "--granularity", "bogus"], ("--granularity", "'bogus'", "groupN")),
    (["--bits", "fp32", "--granularity", "row"], ("--granularity", "quantized --bits", "'fp32'")),
    (["--bits", "fp32", "--rounding", "stochastic"], ("--rounding", "quantized --bits", "'fp32'")),
    (["--control", "hadamard"], ("--control", "'hadamard'", "quantizes none")),
    (["--corpus", "/nonexistent/corpus.txt"], ("--corpus", "no such file", "/nonexistent/corpus.txt")),
])
def test_train_options_are_checked_and_named_before_training(no_training, capsys, args, words):
    assert main(["train", "tiny", "--steps", "1", *args]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert "paths:" not in err


def test_train_control_with_a_quantized_site_is_accepted(monkeypatch):
    from zipfrmt.nn import command

    seen = []
    monkeypatch.setattr(command, "run", lambda args: seen.append(command.config_from_args(args).control) or 0)
    assert main(["train", "tiny", "--steps", "1", "--bits", "4", "--control", "hadamard"]) == 0
    assert seen == ["hadamard"]


def test_help_and_usage_say_what_the_commands_do(capsys):
    import zipfrmt.cli as cli

    doc = cli.__doc__
    assert "zipfrmt train" in doc and "--scale test|quick|full" in doc
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "warmup to min(the preset's warmup, N // 10)" in text


def test_analyze_profile_adds_the_residual_profile_prediction_at_dead_zone_specs(checkpoint, tmp_path, capsys):
    """``--profile`` (``analyze_matrix(profile=True)``): a ``"predicted_profile"`` at every dead-zone spec and none in
    the Widrow regime, its fields those of ``"predicted"``, its columns in the printed table; a whole-model run
    refuses it by name."""
    path, _ = checkpoint
    out = tmp_path / "p.json"
    assert main(["analyze", str(path), "--tensor", "wte.weight", "--quant", "int2-tensor,int8-row", "--profile",
                 "--json", str(out)]) == 0
    dead, widrow = json.loads(out.read_text())["quantized"]
    assert (dead["regime"], widrow["regime"]) == ("dead-zone", "widrow")
    assert PRED_KEYS <= set(dead["predicted_profile"]) and dead["predicted_profile"]["model"] == "bussgang-profile"
    assert "predicted_profile" not in widrow
    assert "k*_prof" in capsys.readouterr().out
    assert main(["analyze", str(path), "--tensors", "*", "--profile"]) == 2
    assert "--profile: applies to one --tensor" in capsys.readouterr().err
    with pytest.raises(TypeError, match="profile: expected True or False, got 'yes'"):
        analyze_matrix(power_law_np(64, 16, 0.5), ["int4-row"], profile="yes")
