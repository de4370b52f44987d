"""The history of a training run: one ``xarray.Dataset`` over steps, written to ``history.nc``.

Variables (NaN at steps where they were not measured): ``loss``, ``lr``, ``grad_norm`` every step;
``eval_loss``, ``perplexity`` every ``eval_every`` steps; the probes of :mod:`zipfrmt.nn.probes` every
``probe_every`` steps. Step 0 is the initialisation. Attributes: the config (JSON), the package version, the
run's status and the facts the collapse verdict needs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from zipfrmt.nn import probes

__all__ = ["FIELDS", "HISTORY_FILE", "history_config", "last", "last_stretch_start", "new_history", "read_history",
           "to_dataset", "write_history"]

STEP_FIELDS = ("loss", "lr", "grad_norm")
EVAL_FIELDS = ("eval_loss", "perplexity")
FIELDS = STEP_FIELDS + EVAL_FIELDS + probes.EMBED_FIELDS + probes.HIDDEN_FIELDS + probes.GRAD_FIELDS

HISTORY_FILE = "history.nc"


def new_history(steps: int) -> dict[str, np.ndarray]:
    """An empty history of ``steps + 1`` rows (all NaN), one float64 array per field."""
    return {k: np.full(steps + 1, np.nan, np.float64) for k in FIELDS}


def to_dataset(hist: dict[str, np.ndarray], n_rows: int, attrs: dict[str, Any]) -> xr.Dataset:
    """The first ``n_rows`` steps of a history as a Dataset over ``step``, with ``attrs``."""
    steps = np.arange(n_rows)
    ds = xr.Dataset({k: ("step", v[:n_rows].copy()) for k, v in hist.items()}, coords={"step": steps})
    ds.attrs.update(attrs)
    return ds


def write_history(ds: xr.Dataset, out: Path) -> Path:
    """Writes ``out/history.nc`` atomically (a temporary file, then a rename)."""
    tmp = Path(out) / (HISTORY_FILE + ".tmp")
    ds.to_netcdf(tmp, engine="netcdf4")
    return tmp.replace(Path(out) / HISTORY_FILE)


def read_history(out: Path) -> xr.Dataset:
    """The history a run wrote to ``out/history.nc``."""
    return xr.load_dataset(Path(out) / HISTORY_FILE, engine="netcdf4")


def last(ds: xr.Dataset, name: str) -> float:
    """The last finite value of variable ``name`` (NaN if it has none or does not exist)."""
    if name not in ds:
        return math.nan
    v = np.asarray(ds[name].values, np.float64)
    v = v[np.isfinite(v)]
    return float(v[-1]) if v.size else math.nan


def last_stretch_start(steps: np.ndarray, flags: np.ndarray) -> float:
    """The first step of the final run of True ``flags`` (NaN when the last flag is False): the step from which a
    condition holds at every later point."""
    flags = np.asarray(flags, bool)
    if flags.size == 0 or not flags[-1]:
        return math.nan
    first = flags.size - 1
    while first > 0 and flags[first - 1]:
        first -= 1
    return float(np.asarray(steps)[first])


def history_config(history: xr.Dataset) -> dict[str, Any]:
    """The config dict stored in a history's attributes."""
    return json.loads(history.attrs["config"])
