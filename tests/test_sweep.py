"""Caching and resuming of results (zipfrmt.sweep)."""

import numpy as np
import pytest
import xarray as xr

from zipfrmt import sweep


def _point_ds(point):
    rng = np.random.default_rng(point["seed"] * 100 + point["bits"])
    return xr.Dataset({"y": ("rank", rng.standard_normal(5)), "label": ((), f"b{point['bits']}")})


POINTS = [{"bits": b, "seed": s} for b in (8, 4, 2) for s in (0, 1)]


def test_cached_computes_once_and_recomputes_on_a_changed_config(tmp_path):
    calls = []

    def compute(c):
        calls.append(c)
        return xr.Dataset({"x": ("i", np.arange(3.0) * c["scale"])})

    a = sweep.cached("exp", {"scale": 2}, lambda: compute({"scale": 2}), root=tmp_path)
    b = sweep.cached("exp", {"scale": 2}, lambda: compute({"scale": 2}), root=tmp_path)
    assert len(calls) == 1
    xr.testing.assert_identical(a, b)
    assert b.attrs["cache_key"] == sweep.config_hash("exp", {"scale": 2})
    sweep.cached("exp", {"scale": 3}, lambda: compute({"scale": 3}), root=tmp_path)
    assert len(calls) == 2
    sweep.cached("exp", {"scale": 2}, lambda: compute({"scale": 2}), root=tmp_path, force=True)
    assert len(calls) == 3


def test_config_hash_depends_on_name_config_and_version(monkeypatch):
    h = sweep.config_hash("exp", {"a": 1})
    assert h != sweep.config_hash("exp2", {"a": 1})
    assert h != sweep.config_hash("exp", {"a": 2})
    monkeypatch.setattr("zipfrmt.__version__", "99.0")
    assert h != sweep.config_hash("exp", {"a": 1})


def test_a_corrupt_cache_file_is_recomputed_not_trusted(tmp_path):
    compute = lambda: xr.Dataset({"x": ("i", np.arange(4.0))})  # noqa: E731
    sweep.cached("exp", {"n": 4}, compute, root=tmp_path)
    path = sweep.result_path("exp", {"n": 4}, tmp_path)
    path.write_bytes(b"this is not netCDF")
    with pytest.warns(sweep.CacheWarning, match="unreadable"):
        ds = sweep.cached("exp", {"n": 4}, compute, root=tmp_path)
    np.testing.assert_array_equal(ds["x"].values, np.arange(4.0))
    assert sweep.load_cached("exp", {"n": 4}, tmp_path) is not None


def test_run_grid_labels_points_and_reads_its_cache(tmp_path):
    calls = []

    def compute(p):
        calls.append(p)
        return _point_ds(p)

    ds = sweep.run_grid("grid", {"v": 1}, POINTS, compute, root=tmp_path, progress=False)
    assert ds.sizes["point"] == len(POINTS)
    assert list(ds["bits"].values) == [8, 8, 4, 4, 2, 2]
    assert len(calls) == len(POINTS)
    again = sweep.run_grid("grid", {"v": 1}, POINTS, compute, root=tmp_path, progress=False)
    assert len(calls) == len(POINTS)
    xr.testing.assert_identical(ds, again)
    assert not sweep.result_path("grid", {"v": 1}, tmp_path).with_suffix(".parts").exists()


def test_an_interrupted_grid_resumes_and_ends_identical_to_an_uninterrupted_one(tmp_path):
    straight = sweep.run_grid("grid", {"v": 1}, POINTS, _point_ds, root=tmp_path / "a", progress=False)

    done = []

    def dies_at_third(p):
        if len(done) == 3:
            raise KeyboardInterrupt
        done.append(p)
        return _point_ds(p)

    with pytest.raises(KeyboardInterrupt):
        sweep.run_grid("grid", {"v": 1}, POINTS, dies_at_third, root=tmp_path / "b", progress=False)
    parts = sweep.result_path("grid", {"v": 1}, tmp_path / "b").with_suffix(".parts")
    assert len(list(parts.glob("*.nc"))) == 3

    resumed_calls = []

    def compute(p):
        resumed_calls.append(p)
        return _point_ds(p)

    resumed = sweep.run_grid("grid", {"v": 1}, POINTS, compute, root=tmp_path / "b", progress=False)
    assert resumed_calls == POINTS[3:]
    xr.testing.assert_identical(straight, resumed)


def test_strings_of_different_lengths_survive_a_resumed_merge(tmp_path):
    labels = {0: "a", 1: "a much longer label"}

    def compute(p):
        return xr.Dataset({"name": ((), labels[p["i"]]), "kind": ("k", [labels[p["i"]], "b"])})

    with pytest.raises(KeyboardInterrupt):
        sweep.run_grid("s", {}, [{"i": 0}, {"i": 1}], lambda p: compute(p) if p["i"] == 0 else (_ for _ in ()).throw(
            KeyboardInterrupt), root=tmp_path, progress=False)
    ds = sweep.run_grid("s", {}, [{"i": 0}, {"i": 1}], compute, root=tmp_path, progress=False)
    assert list(ds["name"].values) == ["a", "a much longer label"]
    again = sweep.load_cached("s", {}, tmp_path)
    assert list(again["name"].values) == ["a", "a much longer label"]
    assert again["kind"].values[1, 0] == "a much longer label"


def test_run_grid_joins_blocks_by_coordinates(tmp_path):
    def block(p):
        return xr.Dataset({"y": (("a", "b"), np.full((1, 2), p["a"] * 10.0))}, coords={"a": [p["a"]], "b": [0, 1]})

    ds = sweep.run_grid("blocks", {}, [{"a": 1}, {"a": 2}], block, root=tmp_path, progress=False, combine="by_coords")
    assert ds["y"].dims == ("a", "b")
    np.testing.assert_array_equal(ds["y"].values, [[10, 10], [20, 20]])


def test_bad_arguments_are_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="results folder"):
        sweep.cached("exp", {}, lambda: xr.Dataset(), root=blocker / "sub")
    with pytest.raises(ValueError, match="points"):
        sweep.run_grid("exp", {}, [], _point_ds, root=tmp_path)
    with pytest.raises(ValueError, match="name: expected an experiment name"):
        sweep.cached("../escape", {}, lambda: xr.Dataset(), root=tmp_path)
    with pytest.raises(TypeError, match="compute"):
        sweep.cached("exp", {}, xr.Dataset(), root=tmp_path)
    with pytest.raises(ValueError, match="combine"):
        sweep.run_grid("exp", {}, POINTS, _point_ds, root=tmp_path, combine="stack")


def test_points_with_different_labels_are_rejected_before_any_work(tmp_path):
    calls = []

    def compute(p):
        calls.append(p)
        return xr.Dataset({"y": float(p["bits"])})

    with pytest.raises(ValueError, match=r"points\[1\]: expected the labels of points\[0\], \['bits', 'g'\]"):
        sweep.run_grid("labels", {"a": 1}, [{"bits": 4, "g": "row"}, {"bits": 3}], compute, root=tmp_path,
                       progress=False)
    with pytest.raises(TypeError, match=r"points\[0\]: expected a dict of scalar labels, got int"):
        sweep.run_grid("labels", {"a": 1}, [4], compute, root=tmp_path, progress=False)
    assert calls == []


def test_a_compute_that_returns_no_dataset_is_named(tmp_path):
    with pytest.raises(TypeError, match=r"compute_point: expected an xarray.Dataset for point \{'bits': 4\}"):
        sweep.run_grid("nods", {"a": 1}, [{"bits": 4}], lambda p: {"y": 1.0}, root=tmp_path, progress=False)
