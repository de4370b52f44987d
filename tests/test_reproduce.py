"""``zipfrmt reproduce``: output files, report, cache reuse and clear errors."""

import io

import numpy as np
import pytest

from experiments import EXPERIMENTS, load, reproduce, tab_bound_verification, tab_checkpoint
from zipfrmt import bounds, cli, embeddings, sweep


def test_every_experiment_follows_the_protocol():
    for name in EXPERIMENTS:
        m = load(name)
        assert m.NAME == name and m.KIND in ("figure", "table") and m.CAPTION
        assert {"test", "quick", "full"} <= set(m.SCALES)  # and any longer CPU scale of its own
        for fn in ("run", "render", "describe"):
            assert callable(getattr(m, fn))


def test_unknown_only_name_is_a_clear_cli_error(tmp_path, capsys):
    rc = cli.main(["reproduce", "--only", "fig_nonsense", "--paper", str(tmp_path / "p"),
                   "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "only" in err and "'fig_nonsense'" in err and "fig_noise_floor" in err


def test_unwritable_output_folder_is_a_clear_cli_error(tmp_path, capsys):
    blocker = tmp_path / "paper"
    blocker.write_text("a file where the folder should be")
    rc = cli.main(["reproduce", "--only", "tab_checkpoint", "--paper", str(blocker), "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "paper" in err and str(blocker) in err


def test_missing_checkpoint_file_is_a_clear_error(tmp_path, capsys):
    rc = cli.main(["reproduce", "--only", "tab_checkpoint", "--checkpoint", str(tmp_path / "none.safetensors"),
                   "--paper", str(tmp_path / "p"), "--results", str(tmp_path / "r")])
    assert rc == 2 and "checkpoint" in capsys.readouterr().err


@pytest.fixture
def checkpoint(tmp_path):
    import jax
    from safetensors.numpy import save_file

    W = np.asarray(embeddings.power_law_matrix(jax.random.key(3), 512, 64, a=0.5))
    path = tmp_path / "model.safetensors"
    save_file({"wte.weight": W, "other": np.ones((2, 2), np.float32)}, str(path))
    return path


def test_reproduce_writes_tables_and_report_then_reuses_the_cache(tmp_path, checkpoint, monkeypatch):
    paper, results = tmp_path / "paper", tmp_path / "results"
    only = ["tab_bound_verification", "tab_checkpoint"]
    report = reproduce.reproduce("test", only, results=results, paper=paper, checkpoint=str(checkpoint),
                                 tensor="wte.weight", progress=False)
    text = report.read_text()
    for name in only:
        assert (paper / "tables" / f"{name}.tex").stat().st_size > 0
        assert (paper / "tables" / f"{name}.md").read_text() in text
    assert "wte.weight" in text and "512×64" in text
    assert "\\label{tab:bound_verification}" in (paper / "tables" / "tab_bound_verification.tex").read_text()
    # Experiments not run are listed with the command that runs them.
    assert "--only fig_noise_floor" in text

    def fail(*a, **k):
        raise AssertionError("recomputed although the result was cached")

    monkeypatch.setattr(bounds.grid, "_verify_block", fail)
    monkeypatch.setattr(tab_checkpoint.analyze, "analyze_matrix", fail)
    log = io.StringIO()
    again = reproduce.reproduce("test", only, results=results, paper=paper, checkpoint=str(checkpoint),
                                tensor="wte.weight", progress=False, log=log)
    assert "tab_checkpoint: read from cache" in log.getvalue()
    assert again.read_text() == text  # the report is a pure function of the results


def test_a_corrupt_cached_result_is_recomputed(tmp_path, checkpoint):
    config = tab_checkpoint.config_for("test", checkpoint=str(checkpoint), tensor="wte.weight")
    first = tab_checkpoint.run(config, root=tmp_path, progress=False)
    sweep.result_path(tab_checkpoint.NAME, config, tmp_path).write_bytes(b"\x89HDF garbage")
    with pytest.warns(sweep.CacheWarning):
        second = tab_checkpoint.run(config, root=tmp_path, progress=False)
    np.testing.assert_array_equal(first["stable_rank"].values, second["stable_rank"].values)


def test_tab_checkpoint_is_skipped_without_a_checkpoint(tmp_path):
    assert tab_checkpoint.config_for("quick") is None
    with pytest.raises(ValueError, match="tensor"):
        tab_checkpoint.config_for("quick", tensor="wte.weight")
    report = reproduce.reproduce("test", ["tab_checkpoint"], results=tmp_path / "r", paper=tmp_path / "p",
                                 progress=False)
    assert "Skipped: no checkpoint given" in report.read_text()


def test_bound_table_reports_no_rigorous_violation_at_test_scale(tmp_path):
    ds = tab_bound_verification.run(tab_bound_verification.SCALES["test"], root=tmp_path, progress=False)
    rows = tab_bound_verification.table_rows(ds)
    rigorous = [r for r in rows if r[2] == "rigorous"]
    assert rigorous and all(r[5] == "0" for r in rigorous)
    assert "no rigorous bound was violated" in tab_bound_verification.describe(ds)


def test_a_partial_run_keeps_the_sections_a_complete_run_wrote(tmp_path, checkpoint):
    paper, results = tmp_path / "paper", tmp_path / "results"
    only = ["tab_bound_verification", "tab_checkpoint"]
    report = reproduce.reproduce("test", only, results=results, paper=paper, checkpoint=str(checkpoint),
                                 tensor="wte.weight", progress=False)
    before = report.read_text()
    import shutil

    shutil.rmtree(results)  # a fresh clone: the report is committed, the results are not
    log = io.StringIO()
    reproduce.reproduce("test", ["tab_checkpoint"], results=results, paper=paper, checkpoint=str(checkpoint),
                        tensor="wte.weight", progress=False, log=log)
    after = (paper / "REPORT.md").read_text()
    section = before[before.index("## tab bound verification"):before.index("## tab checkpoint")]
    assert section in after and "keeping its section" in log.getvalue()


# ---------------------------------------------------------------------------------------------------------
# Arguments checked before any work; one cache path for run and report; a report at another scale is kept
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing", "tensor_without_checkpoint", "extension", "wrong_tensor", "vector"])
def test_checkpoint_and_tensor_are_checked_before_any_experiment_runs(tmp_path, checkpoint, capsys, monkeypatch,
                                                                      case):
    from experiments import fig_zipf_to_powerlaw

    def fail(*a, **k):
        raise AssertionError("an experiment ran before the arguments were checked")

    monkeypatch.setattr(fig_zipf_to_powerlaw, "run", fail)
    (tmp_path / "model.pt").write_bytes(b"\0" * 16)
    args = {"missing": ["--checkpoint", str(tmp_path / "missing.npy")],
            "tensor_without_checkpoint": ["--tensor", "wte.weight"],
            "extension": ["--checkpoint", str(tmp_path / "model.pt")],
            "wrong_tensor": ["--checkpoint", str(checkpoint), "--tensor", "wte"],
            "vector": ["--checkpoint", str(checkpoint), "--tensor", "other_vec"]}[case]
    if case == "vector":
        from safetensors.numpy import save_file

        save_file({"other_vec": np.ones(4, np.float32), "wte.weight": np.ones((4, 4), np.float32)}, str(checkpoint))
    paper = tmp_path / "p"
    rc = cli.main(["reproduce", "--scale", "test", "--only", "fig_zipf_to_powerlaw", *args, "--paper", str(paper),
                   "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2
    want = {"missing": ("checkpoint", "no such file", "missing.npy"),
            "tensor_without_checkpoint": ("tensor", "'wte.weight'", "without --checkpoint"),
            "extension": ("checkpoint", "unsupported file type '.pt'", ".safetensors"),
            "wrong_tensor": ("tensor", "no tensor 'wte'", "'wte.weight'"),
            "vector": ("tensor", "'other_vec'", "2-D")}[case]
    assert all(w in err for w in want), err
    assert not (paper / "REPORT.md").exists() and not list(paper.rglob("*.png"))


class _Looked(Exception):
    """Raised by the patched cache functions: the (name, key) that was asked for."""


def test_the_report_looks_up_every_result_where_its_run_caches_it(tmp_path, checkpoint, monkeypatch):
    """Each experiment's first cache access by ``run`` is the one ``reproduce`` looks up for the report."""
    def record(name, config, *a, **k):
        raise _Looked(name, sweep.config_hash(name, config))

    for name in EXPERIMENTS:
        module = load(name)
        config = reproduce._config(module, "test", str(checkpoint) if name == "tab_checkpoint" else None,
                                   "wte.weight" if name == "tab_checkpoint" else None)
        with monkeypatch.context() as m:
            m.setattr(sweep, "run_grid", record)
            m.setattr(sweep, "cached", record)
            with pytest.raises(_Looked) as ran:
                module.run(config, root=tmp_path, force=False, progress=False)
        with monkeypatch.context() as m:
            m.setattr(sweep, "load_cached", record)
            with pytest.raises(_Looked) as looked:
                reproduce._load_cached(module, config, tmp_path)
        assert looked.value.args == ran.value.args, name


def test_a_result_cached_under_a_module_key_is_in_the_report_and_read_from_cache(tmp_path, checkpoint, monkeypatch):
    from experiments import fig_zipf_to_powerlaw

    results = tmp_path / "r1"
    reproduce.reproduce("test", ["fig_zipf_to_powerlaw"], results=results, paper=tmp_path / "p1", progress=False,
                        log=io.StringIO())
    # Another run that does not run it draws it from the cache instead of saying "Not computed yet".
    report = reproduce.reproduce("test", ["tab_checkpoint"], results=results, paper=tmp_path / "p2",
                                 checkpoint=str(checkpoint), tensor="wte.weight", progress=False, log=io.StringIO())
    text = report.read_text()
    section = text[text.index("## fig zipf to powerlaw"):text.index("## fig noise floor")]
    assert "Not computed yet" not in section and "figures/fig_zipf_to_powerlaw.png" in section
    assert (tmp_path / "p2" / "figures" / "fig_zipf_to_powerlaw.png").is_file()

    # Running it again reads the cache, and the log says so.
    def fail(*a, **k):
        raise AssertionError("recomputed although the result was cached")

    monkeypatch.setattr(fig_zipf_to_powerlaw, "_point", fail)
    log = io.StringIO()
    reproduce.reproduce("test", ["fig_zipf_to_powerlaw"], results=results, paper=tmp_path / "p1", progress=False,
                        log=log)
    assert "fig_zipf_to_powerlaw: read from cache" in log.getvalue()
    assert "running" not in log.getvalue() and "computed in" not in log.getvalue()


QUICK_REPORT = ("# zipfrmt — reproduction report (quick scale)\n\nGenerated by `zipfrmt reproduce --scale quick`.\n\n"
                "## fig noise floor\n\n*caption*\n\n![fig_noise_floor](figures/fig_noise_floor.png)\n\nquick text\n")


def test_a_report_at_another_scale_is_not_replaced_without_force(tmp_path, capsys):
    paper = tmp_path / "p3"
    (paper / "figures").mkdir(parents=True)
    (paper / "REPORT.md").write_text(QUICK_REPORT)
    (paper / "figures" / "fig_noise_floor.png").write_bytes(b"quick figure")
    with pytest.raises(ValueError, match=r"paper: .*REPORT\.md.* is a quick-scale reproduction report; a --scale "
                                         r"test run would replace it.*another --paper folder"):
        reproduce.reproduce("test", ["tab_checkpoint"], results=tmp_path / "r", paper=paper, progress=False)
    rc = cli.main(["reproduce", "--scale", "test", "--only", "tab_checkpoint", "--paper", str(paper),
                   "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "--paper" in err and "--scale test" in err and "quick-scale" in err
    assert (paper / "REPORT.md").read_text() == QUICK_REPORT
    assert (paper / "figures" / "fig_noise_floor.png").read_bytes() == b"quick figure"
    # A report that is not a reproduction report is not replaced either.
    (paper / "REPORT.md").write_text("# my notes\n")
    with pytest.raises(ValueError, match="not a zipfrmt reproduction report"):
        reproduce.reproduce("test", ["tab_checkpoint"], results=tmp_path / "r", paper=paper, progress=False)
    assert (paper / "REPORT.md").read_text() == "# my notes\n"
    # --force replaces it, as the help says.
    (paper / "REPORT.md").write_text(QUICK_REPORT)
    reproduce.reproduce("test", ["tab_checkpoint"], force=True, results=tmp_path / "r", paper=paper, progress=False,
                        log=io.StringIO())
    assert (paper / "REPORT.md").read_text().startswith("# zipfrmt — reproduction report (test scale)")
    assert "--paper" in cli.build_parser()._subparsers._group_actions[0].choices["reproduce"].format_help()
