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
