"""Grids of configs → ``xarray.Dataset``, cached on disk and resumable.

A result is stored at ``root/NAME/KEY.nc`` where ``KEY`` hashes the experiment name, its config and the package
version, so a changed config or a new release recomputes and an unchanged one is read back. A grid run stores
every finished point under ``root/NAME/KEY.parts/`` as it goes; an interrupted run (Ctrl-C, a crash, a killed
job) resumes from those parts and ends with exactly the result an uninterrupted run writes. Files are written
to a temporary name and renamed, so a file under its final name is complete. A cached file that cannot be read,
or whose stored key does not match, is recomputed, never trusted.

    ds = sweep.cached("fig_x", config, lambda: compute(config), root="results")
    ds = sweep.run_grid("fig_y", config, points, compute_point, root="results")
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import zipfrmt
from zipfrmt.tables import jsonable

__all__ = ["CacheWarning", "cached", "config_hash", "config_json", "load_cached", "result_path", "run_grid"]


class CacheWarning(UserWarning):
    """A cached result could not be used (unreadable or stale) and is being recomputed."""


def config_json(config: Any) -> str:
    """The canonical JSON form of a config (a dataclass, dict, or nesting of them): sorted keys, no spaces."""
    return json.dumps(jsonable(config), sort_keys=True, separators=(",", ":"))


def config_hash(name: str, config: Any) -> str:
    """``sha256(name, config JSON, zipfrmt.__version__)``, 16 hex digits: the cache key of a result."""
    payload = json.dumps([name, config_json(config), zipfrmt.__version__])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"name: expected an experiment name usable as a folder name (e.g. 'fig_noise_floor'), "
                         f"got {name!r}")
    return name


def result_path(name: str, config: Any, root: str | Path = "results") -> Path:
    """Where the result of experiment ``name`` at ``config`` is cached."""
    return Path(root) / _check_name(name) / f"{config_hash(name, config)}.nc"


def _check_root(root: str | Path) -> Path:
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"results folder {str(root)!r} cannot be created: {exc.strerror or exc}") from None
    if not os.access(root, os.W_OK):
        raise OSError(f"results folder {str(root)!r} is not writable")
    return root


def _read(path: Path, key: str) -> Any | None:
    """The dataset at ``path`` if it is a complete result with cache key ``key``; ``None`` otherwise."""
    import xarray as xr

    if not path.exists():
        return None
    try:
        with xr.open_dataset(path, engine="netcdf4") as f:
            ds = f.load()
    except Exception as exc:  # noqa: BLE001 — any unreadable file is recomputed, whatever the reason
        warnings.warn(f"cached result {path} is unreadable ({type(exc).__name__}: {exc}); recomputing",
                      CacheWarning, stacklevel=3)
        return None
    for var in ds.variables.values():  # forget the file's encoding (e.g. a fixed string width): merged parts of
        var.encoding = {}  # varying widths must be written afresh, or longer strings get cut
    if ds.attrs.get("cache_key") != key:
        warnings.warn(f"cached result {path} has key {ds.attrs.get('cache_key')!r}, expected {key!r}; recomputing",
                      CacheWarning, stacklevel=3)
        return None
    return ds


def _write(ds: Any, path: Path, name: str, config: Any, key: str) -> Any:
    ds = ds.copy()
    ds.attrs.update(experiment=name, config=config_json(config), zipfrmt_version=zipfrmt.__version__, cache_key=key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    ds.to_netcdf(tmp, engine="netcdf4")
    os.replace(tmp, path)
    return ds


def load_cached(name: str, config: Any, root: str | Path = "results") -> Any | None:
    """The cached result of experiment ``name`` at ``config``, or ``None`` when there is none (or it is corrupt)."""
    path = result_path(name, config, root)
    return _read(path, path.stem)


def cached(
    name: str,
    config: Any,
    compute: Callable[[], Any],
    *,
    root: str | Path = "results",
    force: bool = False,
) -> Any:
    """The result of ``compute()`` for experiment ``name`` at ``config``, computed once and then read from disk.

    ``force=True`` recomputes and overwrites. The stored dataset carries the config JSON, the package version
    and the cache key in its attributes.
    """
    if not callable(compute):
        raise TypeError(f"compute: expected a function of no arguments returning a Dataset, got {compute!r}")
    path = _check_root(root) / _check_name(name) / f"{config_hash(name, config)}.nc"
    key = path.stem
    if not force:
        ds = _read(path, key)
        if ds is not None:
            return ds
    return _write(compute(), path, name, config, key)


def _check_points(points: Sequence[Any]) -> None:
    """Every point a dict of the same labels (they become coordinates), each label a scalar."""
    first = points[0]
    for i, p in enumerate(points):
        if not isinstance(p, dict):
            raise TypeError(f"points[{i}]: expected a dict of scalar labels, got {type(p).__name__}")
        if set(p) != set(first):
            raise ValueError(f"points[{i}]: expected the labels of points[0], {sorted(first)}, got {sorted(p)}")
        for label, v in p.items():
            if not isinstance(v, (str, int, float, bool, np.generic)):
                raise TypeError(f"points[{i}][{label!r}]: expected a scalar label, got {type(v).__name__}")


def run_grid(
    name: str,
    config: Any,
    points: Sequence[dict[str, Any]],
    compute_point: Callable[[dict[str, Any]], Any],
    *,
    root: str | Path = "results",
    force: bool = False,
    progress: bool = True,
    dim: str = "point",
    combine: str = "concat",
) -> Any:
    """Runs ``compute_point`` over ``points`` and concatenates the datasets along ``dim``; cached and resumable.

    Each point is a dict of scalar labels (``{"bits": 4, "granularity": "row"}``); with ``combine="concat"`` they
    become coordinates along ``dim``. With ``combine="by_coords"`` each point's dataset already carries its
    labels as dimension coordinates (a block of a larger grid) and the blocks are joined by
    ``xarray.combine_by_coords``. Every finished point is written to ``root/NAME/KEY.parts/NNNNN.nc`` at once,
    so an interrupted run resumes where it stopped; when all points are done the parts are merged into
    ``root/NAME/KEY.nc`` and removed. The result is identical whether or not the run was interrupted, provided
    ``compute_point`` is a pure function of its point (every random draw seeded from the config).
    """
    import xarray as xr
    from tqdm.auto import tqdm

    if combine not in ("concat", "by_coords"):
        raise ValueError(f"combine: expected 'concat' or 'by_coords', got {combine!r}")
    if not points:
        raise ValueError(f"points: expected at least one grid point for experiment {name!r}, got none")
    _check_points(points)
    path = _check_root(root) / _check_name(name) / f"{config_hash(name, config)}.nc"
    key = path.stem
    parts = path.with_suffix(".parts")
    if force:
        shutil.rmtree(parts, ignore_errors=True)
    else:
        ds = _read(path, key)
        if ds is not None:
            return ds
    parts.mkdir(parents=True, exist_ok=True)

    results = []
    bar = tqdm(total=len(points), desc=name, disable=not progress, leave=False)
    for i, point in enumerate(points):
        part_key = f"{key}:{i}:{config_json(point)}"
        part = parts / f"{i:05d}.nc"
        ds = _read(part, part_key) if part.exists() else None
        if ds is None:
            ds = compute_point(point)
            if not isinstance(ds, xr.Dataset):
                raise TypeError(f"compute_point: expected an xarray.Dataset for point {point!r} of {name!r}, "
                                f"got {type(ds).__name__}")
            ds = _write(ds, part, name, point, part_key)
        ds.attrs = {}
        results.append(ds)
        bar.update(1)
    bar.close()

    if combine == "by_coords":
        merged = xr.combine_by_coords(results, combine_attrs="drop")
    else:
        merged = xr.concat(results, dim=dim, coords="minimal", compat="override", join="outer")
        for label in points[0]:
            merged = merged.assign_coords({label: (dim, [p[label] for p in points])})
    merged = _write(merged, path, name, config, key)
    shutil.rmtree(parts, ignore_errors=True)
    return merged
