"""Table: ``zipfrmt analyze`` of a checkpoint the user names — what b-bit quantization does to its spectrum.

    zipfrmt reproduce --only tab_checkpoint --checkpoint model.safetensors --tensor wte.weight

Without ``--checkpoint`` the table is skipped with a message (nothing is downloaded). The cache key includes the
file's size and modification time, so a file rewritten under the same name is analysed again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from experiments.outputs import fmt, write_table
from zipfrmt import analyze, checkpoints, sweep

NAME = "tab_checkpoint"
KIND = "table"
CAPTION = ("Spectral analysis of a user-named checkpoint tensor under b-bit quantization: measured stable rank, "
           "rank exponent and truncation index k* beside the random-matrix prediction, with the noise regime.")
SKIP_MESSAGE = ("no checkpoint given; pass `--checkpoint FILE --tensor NAME` (a .safetensors, .npz or .npy file "
                "on this machine) to analyse one.")


@dataclasses.dataclass(frozen=True)
class Config:
    """The settings of the analysis; ``path``/``tensor`` name the matrix (``None``: skipped)."""

    bits: tuple[int, ...] = (8, 6, 4, 3, 2)
    granularity: tuple[str, ...] = ("tensor", "row", "group32")
    rounding: tuple[str, ...] = ("nearest",)
    seed: int = 0
    path: str | None = None
    tensor: str | None = None
    transpose: bool = False
    file_size: int = 0
    file_mtime_ns: int = 0


SCALES = {
    "test": Config(bits=(4, 2), granularity=("row",)),
    "quick": Config(),
    "full": Config(granularity=("tensor", "row", "column", "group32", "group128"), rounding=("nearest", "stochastic")),
}


def config_for(scale: str, *, checkpoint: str | None = None, tensor: str | None = None,
               transpose: bool = False) -> Config | None:
    """The scale's settings applied to ``checkpoint`` (``None`` when no checkpoint is given).

    Checks, from the file's headers alone and before any work, everything the analysis will need: the file
    exists and has a supported extension, ``tensor`` names one of its tensors (or the file holds just one), and
    that tensor is a non-empty 2-D floating-point matrix. Errors name ``checkpoint`` or ``tensor``.
    """
    if checkpoint is None:
        if tensor is not None:
            raise ValueError(f"tensor: {tensor!r} given without --checkpoint; name the file that holds it")
        return None
    path = Path(checkpoint)
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint: {str(path)!r} is a directory; expected a "
                                f"{', '.join(checkpoints.SUPPORTED_EXTENSIONS)} file")
    if path.suffix.lower() not in checkpoints.SUPPORTED_EXTENSIONS:
        raise ValueError(f"checkpoint: unsupported file type {path.suffix or '(no extension)'!r} of {str(path)!r}; "
                         f"expected one of {', '.join(checkpoints.SUPPORTED_EXTENSIONS)}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no such file {str(path)!r}")
    try:
        checkpoints.check_matrix_tensor(path, tensor)
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        raise type(exc)(msg if msg.startswith("tensor: ") else f"checkpoint: {msg}") from None
    st = path.stat()
    return dataclasses.replace(SCALES[scale], path=str(path.resolve()), tensor=tensor, transpose=transpose,
                               file_size=st.st_size, file_mtime_ns=st.st_mtime_ns)


_FIELDS = ("stable_rank", "effective_rank", "rank_exponent", "esd_alpha", "truncation_index", "rel_error",
           "zero_fraction", "noise_var_model", "noise_var_measured", "bussgang_gain")
_PREDICTED = ("stable_rank", "truncation_index", "sigma_max")


def _num(x: Any) -> float:
    return np.nan if x is None else float(x)


def run(config: Config, *, root: str | Path = "results", force: bool = False, progress: bool = True) -> Any:
    import xarray as xr

    if config.path is None:
        raise ValueError(f"config.path: expected a checkpoint file, got None ({SKIP_MESSAGE})")

    def compute() -> Any:
        W = checkpoints.load_matrix(config.path, tensor=config.tensor, transpose=config.transpose)
        specs = analyze.spec_grid(config.bits, config.granularity, config.rounding)
        rep = analyze.analyze_matrix(W, specs, name=config.tensor or Path(config.path).name, seed=config.seed)
        rows = rep["quantized"]
        data = {f: ("setting", np.array([_num(r[f]) for r in rows])) for f in _FIELDS}
        data.update({f"predicted_{f}": ("setting", np.array([_num(r["predicted"][f]) for r in rows]))
                     for f in _PREDICTED})
        data["regime"] = ("setting", np.array([r["regime"] for r in rows]))
        coords = {"spec": ("setting", [r["spec"] for r in rows]),
                  "bits": ("setting", [r["bits"] for r in rows]),
                  "granularity": ("setting", [r["granularity"] for r in rows]),
                  "rounding": ("setting", [r["rounding"] for r in rows])}
        fp = rep["fp"]
        attrs = {"tensor": rep["tensor"], "V": rep["shape"][0], "d": rep["shape"][1], "file": Path(config.path).name,
                 **{f"fp_{k}": _num(fp[k]) for k in ("stable_rank", "effective_rank", "rank_exponent", "esd_alpha")}}
        return xr.Dataset(data, coords=coords, attrs=attrs)

    return sweep.cached(NAME, config, compute, root=root, force=force)


HEADER = ("bits", "scale", "rounding", "r_s", "r_s pred.", "k*", "k* pred.", "a", "rel. error", "regime")


def render(ds: Any, out_dir: str | Path) -> list[Path]:
    rows = [["fp32", "–", "–", fmt(ds.attrs["fp_stable_rank"]), "–", "–", "–", fmt(ds.attrs["fp_rank_exponent"]),
             "–", "–"]]
    for i in range(ds.sizes["setting"]):
        v = {k: ds[k].values[i].item() for k in ds.variables if "setting" in ds[k].dims}
        rows.append([str(v["bits"]), str(v["granularity"]), str(v["rounding"]), fmt(v["stable_rank"]),
                     fmt(v["predicted_stable_rank"]), fmt(int(v["truncation_index"])),
                     fmt(int(v["predicted_truncation_index"])), fmt(v["rank_exponent"]), fmt(v["rel_error"]),
                     str(v["regime"])])
    caption = f"{CAPTION} Tensor {ds.attrs['tensor']} ({ds.attrs['V']}×{ds.attrs['d']}) of {ds.attrs['file']}."
    return write_table(out_dir, NAME, HEADER, rows, caption, align="lllrrrrrrl")


def describe(ds: Any) -> str:
    sr = ds["stable_rank"].values
    pred = ds["predicted_stable_rank"].values
    widrow = ds["regime"].values.astype(str) == "widrow"
    err = np.abs(pred - sr) / sr
    lowest = int(np.argmin(ds["bits"].values))
    text = (f"Tensor `{ds.attrs['tensor']}` ({ds.attrs['V']}×{ds.attrs['d']}) has stable rank "
            f"{ds.attrs['fp_stable_rank']:.3g} and rank exponent {ds.attrs['fp_rank_exponent']:.3g} at full "
            f"precision. At {int(ds['bits'].values[lowest])} bits ({ds['granularity'].values[lowest]} scales) the "
            f"stable rank is {sr[lowest]:.3g} and {int(ds['truncation_index'].values[lowest])} singular values stay "
            f"above the noise floor. ")
    if widrow.any():
        text += (f"In the Widrow regime ({int(widrow.sum())} of {widrow.size} settings) the predicted stable rank is "
                 f"within {100 * np.nanmax(err[widrow]):.2g}% of the measured one")
    else:
        text += "No setting is in the Widrow regime, so the additive-noise prediction is not expected to hold"
    if (~widrow).any():
        text += f"; in the dead zone the error reaches {100 * np.nanmax(err[~widrow]):.2g}%."
    else:
        text += "."
    return text
