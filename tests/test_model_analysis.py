"""zipfrmt.model_analysis: every 2-D tensor of a checkpoint, streamed, resumable, labelled tensor × spec."""

import json

import numpy as np
import pytest
import xarray as xr
from conftest import write_gguf
from safetensors.numpy import save_file

from zipfrmt import model_analysis as ma

SPECS = ["int4-row", "q4_0"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("model")
    tensors = {
        "embed.weight": (rng.standard_normal((96, 64)) * np.arange(1, 65) ** -0.5).astype(np.float32),
        "layers.0.mlp.weight": rng.standard_normal((64, 64)).astype(np.float16),
        "layers.0.norm.weight": np.ones(64, np.float32),
        "layers.0.mlp.bias": np.zeros((1, 64), np.float32),
        "step": np.array([[3]], np.int64),
    }
    path = d / "model.safetensors"
    save_file(tensors, str(path))
    return path, tensors


def test_every_2d_float_tensor_is_analysed_and_every_other_one_skipped_with_its_reason(model_file, tmp_path):
    path, tensors = model_file
    msgs = []
    res = ma.analyze_model(path, SPECS, tmp_path / "out", progress=msgs.append)
    assert [t["tensor"] for t in res["tensors"]] == ["embed.weight", "layers.0.mlp.weight"]
    assert res["skipped"]["layers.0.norm.weight"].startswith("1-D")
    assert "at least 2 rows" in res["skipped"]["layers.0.mlp.bias"]
    assert "not floating point" in res["skipped"]["step"] or "at least 2 rows" in res["skipped"]["step"]
    assert len(msgs) == 2 and msgs[0].startswith("[1/2] embed.weight [96, 64]")
    assert res["tensors"][1]["stored_dtype"] == "float16"
    ds = xr.open_dataset(tmp_path / "out" / "analysis.nc")
    assert list(ds["spec"].values) == SPECS and ds["stable_rank"].shape == (2, 2)
    row = res["tensors"][0]["quantized"][0]
    assert ds["stable_rank_inflation"].values[0, 0] == pytest.approx(
        row["stable_rank"] / res["tensors"][0]["fp"]["stable_rank"])
    assert np.all((ds["below_edge_fraction"].values >= 0) & (ds["below_edge_fraction"].values <= 1))
    md = (tmp_path / "out" / "analysis.md").read_text()
    assert "`layers.0.norm.weight`: 1-D" in md and "| embed.weight |" in md
    assert json.loads((tmp_path / "out" / "analysis.json").read_text())["specs"] == SPECS


def test_an_interrupted_model_run_resumes_without_recomputing_finished_tensors(model_file, tmp_path, monkeypatch):
    path, _ = model_file
    out = tmp_path / "out"
    calls = []
    real = ma.analyze.analyze_matrix

    def flaky(W, specs, **kw):
        calls.append(kw["name"])
        if kw["name"] == "layers.0.mlp.weight" and calls.count(kw["name"]) == 1:
            raise KeyboardInterrupt
        return real(W, specs, **kw)

    monkeypatch.setattr(ma.analyze, "analyze_matrix", flaky)
    with pytest.raises(KeyboardInterrupt):
        ma.analyze_model(path, SPECS, out, progress=lambda m: None)
    assert not (out / "analysis.nc").exists()
    msgs = []
    res = ma.analyze_model(path, SPECS, out, progress=msgs.append)
    assert calls == ["embed.weight", "layers.0.mlp.weight", "layers.0.mlp.weight"]
    assert "read from" in msgs[0] and len(res["tensors"]) == 2


def test_patterns_select_and_a_pattern_matching_nothing_lists_what_exists(model_file, tmp_path):
    path, _ = model_file
    res = ma.analyze_model(path, ["int8-row"], tmp_path / "a", tensors=["embed*"], progress=lambda m: None)
    assert [t["tensor"] for t in res["tensors"]] == ["embed.weight"]
    assert res["skipped"]["layers.0.mlp.weight"] == "not matched by --tensors"
    with pytest.raises(ValueError, match=r"tensors: pattern .lm_head\*. matches no tensor .* holds: .*embed.weight"):
        ma.analyze_model(path, ["int8-row"], tmp_path / "b", tensors=["lm_head*"])
    assert not (tmp_path / "b").exists()  # nothing written before the error


def test_a_folder_of_another_analysis_is_refused_before_any_work(model_file, tmp_path):
    path, _ = model_file
    ma.analyze_model(path, ["int8-row"], tmp_path / "o", tensors=["embed*"], progress=lambda m: None)
    with pytest.raises(ValueError, match="out: .* holds an analysis of another file, spec list, seed or bulk law"):
        ma.analyze_model(path, ["int4-row"], tmp_path / "o", tensors=["embed*"])


def test_a_spec_that_does_not_fit_a_tensor_is_an_error_before_any_work(model_file, tmp_path):
    path, _ = model_file
    with pytest.raises(ValueError, match="tensor 'embed.weight'.*tq1_0"):
        ma.analyze_model(path, ["tq1_0"], tmp_path / "x")  # blocks of 256 on rows of 64
    assert not (tmp_path / "x").exists()


def test_cli_analyses_a_whole_model_and_draws_the_model_level_picture(model_file, tmp_path, capsys):
    from zipfrmt.cli import main

    path, _ = model_file
    out, plot = tmp_path / "o", tmp_path / "damage.png"
    rc = main(["analyze", str(path), "--tensors", "*", "--quant", "int4-row,q8_0", "--out", str(out),
               "--plot", str(plot), "--json", str(tmp_path / "a.json")])
    assert rc == 0
    printed = capsys.readouterr()
    assert "| embed.weight |" in printed.out and "[2/2] layers.0.mlp.weight" in printed.err
    assert plot.stat().st_size > 0 and plot.with_suffix(".pdf").exists()
    assert json.loads((tmp_path / "a.json").read_text())["specs"] == ["int4-row", "q8_0"]
    assert main(["analyze", str(path), "--tensors", "*", "--tensor", "embed.weight"]) == 2
    assert "give either --tensor NAME" in capsys.readouterr().err


def test_cli_lists_a_gguf_file_with_stored_types(tmp_path, capsys):
    from zipfrmt.cli import main

    path = write_gguf(tmp_path / "m.gguf", {"token_embd.weight": np.ones((8, 32), np.float16)})
    assert main(["list", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "token_embd.weight\t[8, 32]\tF16"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    from gguf import GGMLQuantizationType as T
    from gguf import quants

    d = tmp_path_factory.mktemp("shipped")
    rng = np.random.default_rng(2)
    E = (rng.standard_normal((128, 64)) * np.arange(1, 65) ** -0.8).astype(np.float32)
    L = rng.standard_normal((64, 64)).astype(np.float32)
    ref = write_gguf(d / "model-f32.gguf", {"token_embd.weight": E, "blk.0.ffn.weight": L})
    q = write_gguf(d / "model-q4_0.gguf", {"token_embd.weight": (quants.quantize(E, T.Q4_0), T.Q4_0),
                                       "blk.0.ffn.weight": (quants.quantize(L, T.Q8_0), T.Q8_0)})
    return ref, q, E


def test_a_shipped_gguf_is_compared_with_its_reference_export(shipped, tmp_path):
    ref, q, E = shipped
    res = ma.analyze_model(q, ["q4_0", "int8-row"], tmp_path / "o", reference=ref, progress=lambda m: None)
    assert res["specs"] == ["stored", "q4_0", "int8-row"]
    emb = res["tensors"][0]
    assert emb["stored_dtype"] == "Q4_0"
    stored, again = emb["quantized"][0], emb["quantized"][1]
    # the shipped Q4_0 tensor is exactly what q4_0 does to the reference: the same spectrum and noise
    assert stored["spec"] == "stored" and stored["format"] == "stored"
    assert stored["stable_rank"] == pytest.approx(again["stable_rank"], rel=1e-6)
    assert stored["noise_var_measured"] == pytest.approx(again["noise_var_measured"], rel=1e-6)
    assert stored["predicted"]["model"] in ("additive", "bussgang")
    ds = xr.open_dataset(tmp_path / "o" / "analysis.nc")
    assert list(ds["stored_dtype"].values) == ["Q4_0", "Q8_0"]
    fast = ma.analyze_model(q, ["q4_0"], tmp_path / "mp", reference=ref, progress=lambda m: None, bulk="mp")
    assert {row["predicted"]["bulk"] for t in fast["tensors"] for row in t["quantized"]} == {"mp"}  # "stored" too


def test_a_reference_without_the_tensor_or_with_another_shape_is_refused_before_any_work(shipped, tmp_path):
    ref, q, E = shipped
    partial = write_gguf(tmp_path / "partial.gguf", {"token_embd.weight": E})
    with pytest.raises(ValueError, match=r"reference: .* has no tensor 'blk.0.ffn.weight'"):
        ma.analyze_model(q, ["int8-row"], tmp_path / "a", reference=partial)
    other = write_gguf(tmp_path / "other.gguf", {"token_embd.weight": E[:, :32]})
    with pytest.raises(ValueError, match=r"reference: tensor 'token_embd.weight' has shape \[128, 32\] in .* and "
                                         r"\[128, 64\]"):
        ma.analyze_model(q, ["int8-row"], tmp_path / "b", tensors=["token_embd*"], reference=other)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_file_rewritten_in_place_is_not_resumed_from_its_old_results(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"w": np.eye(8, dtype=np.float32) * 16}, str(path))
    ma.analyze_model(path, ["int8-row"], tmp_path / "o", progress=lambda m: None)
    save_file({"w": np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32)}, str(path))
    with pytest.raises(ValueError, match="out: .* holds an analysis of another file"):
        ma.analyze_model(path, ["int8-row"], tmp_path / "o", progress=lambda m: None)


def test_cli_names_its_options_in_errors(model_file, tmp_path, capsys):
    from zipfrmt.cli import main

    path, _ = model_file
    assert main(["analyze", str(path), "--tensors", "nothing*", "--quant", "int8-row"]) == 2
    assert "error: --tensors: pattern 'nothing*' matches no tensor" in capsys.readouterr().err


def test_tensors_split_over_processes_are_each_computed_once_and_combined_by_the_last(model_file, tmp_path):
    path, _ = model_file
    out = tmp_path / "out"
    msgs = []
    first = ma.analyze_model(path, SPECS, out, process_id=1, num_processes=2, progress=msgs.append)
    assert first["pending"] == ["embed.weight"] and [t["tensor"] for t in first["tensors"]] == ["layers.0.mlp.weight"]
    assert not (out / "analysis.json").exists()  # nothing combined until every tensor is done
    assert sum("specs" in m for m in msgs) == 1
    msgs.clear()
    last = ma.analyze_model(path, SPECS, out, process_id=0, num_processes=2, progress=msgs.append)
    assert "pending" not in last and [t["tensor"] for t in last["tensors"]] == ["embed.weight", "layers.0.mlp.weight"]
    assert sum("specs" in m for m in msgs) == 1 and any("read from" in m for m in msgs)
    assert json.loads((out / "analysis.json").read_text())["tensors"][1]["tensor"] == "layers.0.mlp.weight"


@pytest.mark.parametrize("pid,n,match", [(2, 2, r"process_id: expected an integer in \[0, 1\], got 2"),
                                         (0, 0, r"num_processes: expected an integer in \[1, inf\], got 0")])
def test_a_process_split_that_cannot_be_is_refused(model_file, tmp_path, pid, n, match):
    with pytest.raises(ValueError, match=match):
        ma.analyze_model(model_file[0], SPECS, tmp_path / "out", process_id=pid, num_processes=n)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,match", [
    (["--num-processes", "2", "--process-id", "2"], r"--process-id: expected an integer in \[0, 1\]"),
    (["--num-processes", "2", "--coordinator", "node0"], r"--coordinator: expected HOST:PORT"),
])
def test_cli_process_options_are_checked_first(model_file, tmp_path, capsys, argv, match):
    import re

    from zipfrmt.cli import main

    assert main(["analyze", str(model_file[0]), "--tensors", "*", "--quant", "int8-row", "--out",
                 str(tmp_path / "o"), *argv]) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_two_local_processes_joined_by_jax_distributed_analyse_a_model_once(model_file, tmp_path):
    """``zipfrmt analyze --num-processes 2 --process-id I --coordinator localhost:PORT``, as on two hosts: each
    process computes its own tensor, and process 0 writes the combined analysis after the barrier."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    out = tmp_path / "shared"
    procs = [subprocess.Popen([sys.executable, "-m", "zipfrmt.cli", "analyze", str(model_file[0]), "--tensors", "*",
                               "--quant", "int4-row", "--out", str(out), "--num-processes", "2", "--process-id",
                               str(i), "--coordinator", f"localhost:{port}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    done = [p.communicate(timeout=300) for p in procs]
    for p, (_, se) in zip(procs, done, strict=True):
        assert p.returncode == 0, se[-3000:]
    (out0, err0), (out1, err1) = done
    assert "[1/2] embed.weight [96, 64] float32: 1 specs" in err0 and "embed.weight [96, 64] float32" not in err1
    assert "[2/2] layers.0.mlp.weight [64, 64] float16: 1 specs" in err1
    assert "| embed.weight |" in out0 and "| layers.0.mlp.weight |" in out0
    result = json.loads((out / "analysis.json").read_text())
    assert [t["tensor"] for t in result["tensors"]] == ["embed.weight", "layers.0.mlp.weight"]


def test_the_bulk_law_is_chosen_for_every_tensor_and_a_folder_resumes_only_with_the_same_law(model_file, tmp_path):
    """``bulk="mp"`` (``--bulk mp``) puts every prediction on the spiked map and Marchenko–Pastur — the fast law for a
    model of dense weights; the folder records it, so a run with another law is refused before any work, and a
    folder written before the option existed resumes as the default law."""
    path, _ = model_file
    out = tmp_path / "out"
    res = ma.analyze_model(path, SPECS, out, bulk="mp", progress=lambda m: None)
    rows = [row for t in res["tensors"] for row in t["quantized"]]
    assert {row["predicted"]["bulk"] for row in rows} == {row["predicted_sketch"]["bulk"] for row in rows} == {"mp"}
    assert json.loads((out / "config.json").read_text())["bulk"] == "mp"
    with pytest.raises(ValueError, match="bulk law"):
        ma.analyze_model(path, SPECS, out, progress=lambda m: None)
    with pytest.raises(ValueError, match=r"bulk: expected one of .*got 'fast'"):
        ma.analyze_model(path, SPECS, tmp_path / "other", bulk="fast")
    assert not (tmp_path / "other").exists()
    auto = tmp_path / "auto"
    ma.analyze_model(path, SPECS, auto, progress=lambda m: None)
    cfg = json.loads((auto / "config.json").read_text())
    del cfg["bulk"]  # as written before --bulk
    (auto / "config.json").write_text(json.dumps(cfg))
    again = ma.analyze_model(path, SPECS, auto, progress=lambda m: None)
    assert [t["tensor"] for t in again["tensors"]] == ["embed.weight", "layers.0.mlp.weight"]


def test_cli_bulk_option_reaches_every_prediction_and_a_bad_law_is_refused(model_file, tmp_path, capsys):
    from zipfrmt.cli import main

    path, _ = model_file
    out = tmp_path / "o"
    assert main(["analyze", str(path), "--tensors", "*", "--quant", "int4-row", "--out", str(out),
                 "--bulk", "mp"]) == 0
    res = json.loads((out / "analysis.json").read_text())
    assert {t["quantized"][0]["predicted"]["bulk"] for t in res["tensors"]} == {"mp"}
    single = tmp_path / "one.json"
    assert main(["analyze", str(path), "--tensor", "embed.weight", "--quant", "int2-tensor", "--bulk", "mp",
                 "--json", str(single)]) == 0
    assert json.loads(single.read_text())["quantized"][0]["predicted"]["bulk"] == "mp"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["analyze", str(path), "--tensors", "*", "--bulk", "fast"])
    assert "--bulk: invalid choice: 'fast'" in capsys.readouterr().err
