"""A whole checkpoint, tensor by tensor: what each quantization spec does to every 2-D tensor of a model.

``zipfrmt analyze PATH --tensors PATTERN`` runs :func:`analyze_model`: it lists the file's tensors (headers only,
:func:`zipfrmt.checkpoints.list_tensors`), selects the 2-D floating-point ones that match the glob patterns, and
analyses them one at a time with :func:`zipfrmt.analyze.analyze_matrix` — only one tensor is in memory at a
time, so memory stays bounded by the largest tensor. Every other tensor is listed under ``skipped`` with the
reason (not matched, not 2-D, not floating point), never silently left out.

Each finished tensor is written at once to ``OUT/tensors/`` (atomically), so an interrupted run resumes without
recomputing it; the folder's ``config.json`` (file, specs, seed) must match, or the run stops with an error
naming ``out`` before any work. When all tensors are done, the labelled result — tensor × spec — is written as
``analysis.nc`` (xarray), ``analysis.json`` and ``analysis.md``.

Layout conventions (the rows of a matrix are what the quantizer's ``row`` and ``group`` scales run along):
an embedding is ``V×d`` with rows = tokens; a linear weight as stored by PyTorch/safetensors is ``out×in``, so
its rows run along the contraction (input) axis — the axis GGUF's blocks and Qwix's tiles run along too.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import zipfrmt
from zipfrmt import analyze, checkpoints, rmt
from zipfrmt.checks import check_choice, check_int, describe
from zipfrmt.quant import QuantSpec
from zipfrmt.tables import jsonable, markdown_table

__all__ = ["MODEL_FIELDS", "analyze_model", "select_tensors"]

#: Per (tensor, spec) numbers of the labelled result (``analysis.nc``).
MODEL_FIELDS = ("stable_rank", "stable_rank_predicted", "stable_rank_predicted_sketch", "stable_rank_inflation",
                "below_edge_fraction", "truncation_index", "truncation_index_predicted",
                "truncation_index_predicted_sketch", "rel_error", "zero_fraction", "bussgang_gain")

def _why_not(shape: tuple[int, ...], dtype: str, path: str | Path) -> str | None:
    """Why a tensor cannot be analysed as a matrix, or None (the float types are the loader's own)."""
    if len(shape) != 2:
        return f"{len(shape)}-D (shape {list(shape)}), not a matrix"
    if min(shape) < 2:
        return f"shape {list(shape)}: a spectrum needs at least 2 rows and 2 columns"
    if not checkpoints.is_float_dtype(path, dtype):
        return f"dtype {dtype}, not a floating-point type zipfrmt reads"
    return None


def select_tensors(listing: dict[str, tuple[tuple[int, ...], str]], patterns: Sequence[str],
                   path: str = "the file") -> tuple[list[str], dict[str, str]]:
    """(tensors to analyse in file order, ``{skipped tensor: reason}``) for glob ``patterns`` (``fnmatch``).

    A pattern that matches no tensor is an error that lists what the file holds.
    """
    if isinstance(patterns, str) or not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"tensors: expected one or more glob patterns (e.g. '*embed*'), got {describe(patterns)}")
    for pat in patterns:
        if not any(fnmatch.fnmatchcase(name, pat) for name in listing):
            held = ", ".join(f"{n} {list(s)}" for n, (s, _) in list(listing.items())[:40])
            more = f" … and {len(listing) - 40} more" if len(listing) > 40 else ""
            raise ValueError(f"tensors: pattern {pat!r} matches no tensor of {path}; it holds: {held}{more}")
    selected, skipped = [], {}
    for name, (shape, dtype) in listing.items():
        if not any(fnmatch.fnmatchcase(name, pat) for pat in patterns):
            skipped[name] = "not matched by --tensors"
            continue
        why = _why_not(tuple(shape), str(dtype), path)
        if why is None:
            selected.append(name)
        else:
            skipped[name] = why
    if not selected:
        raise ValueError(f"tensors: no 2-D floating-point tensor of {path} matches {list(patterns)}: "
                         + "; ".join(f"{n}: {r}" for n, r in skipped.items() if r != "not matched by --tensors"))
    return selected, skipped


def _atomic_json(path: Path, obj: Any) -> None:
    """``obj`` written to ``path`` all at once (a temporary file, then ``os.replace``). The temporary file is the
    process's own: two processes of a multi-host run write ``config.json`` together, and a shared temporary
    name let one of them move the other's file away (the second ``os.replace`` then failed)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(jsonable(obj), indent=1, allow_nan=False))
    os.replace(tmp, path)


def _prepare_out(out: Path, config: dict[str, Any]) -> Path:
    """The output folder, created or resumed; a folder of another analysis is an error naming ``out``."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {str(out)!r} exists and is not a folder")
    cfg = out / "config.json"
    if cfg.exists():
        try:
            old = json.loads(cfg.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict):
            old.setdefault("bulk", "auto")  # a folder written before --bulk existed: the default law
        if old != jsonable(config):
            raise ValueError(f"out: {str(out)!r} holds an analysis of another file, spec list, seed or bulk law "
                             f"({cfg}); choose another folder or remove it")
    try:
        (out / "tensors").mkdir(parents=True, exist_ok=True)
        if not cfg.exists():
            _atomic_json(cfg, config)
    except OSError as exc:
        raise OSError(f"out: cannot write the analysis folder {str(out)!r} ({exc.strerror or exc})") from None
    return out


def _tensor_file(out: Path, index: int, name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:120]
    return out / "tensors" / f"{index:05d}_{safe}.json"


def _row_fields(row: dict[str, Any], fp: dict[str, Any], r: int) -> dict[str, Any]:
    pred = row.get("predicted") or {}
    sketched = row.get("predicted_sketch") or {}
    k_meas = row.get("truncation_index")
    sr_fp = fp.get("stable_rank")
    return {
        "stable_rank": row.get("stable_rank"),
        "stable_rank_predicted": pred.get("stable_rank"),
        "stable_rank_predicted_sketch": sketched.get("stable_rank"),
        "stable_rank_inflation": (row["stable_rank"] / sr_fp if sr_fp and row.get("stable_rank") is not None
                                  else None),
        "below_edge_fraction": None if k_meas is None else 1.0 - k_meas / r,
        "truncation_index": k_meas,
        "truncation_index_predicted": pred.get("truncation_index"),
        "truncation_index_predicted_sketch": sketched.get("truncation_index"),
        "rel_error": row.get("rel_error"),
        "zero_fraction": row.get("zero_fraction"),
        "bussgang_gain": row.get("bussgang_gain"),
    }


def analyze_model(
    path: str | Path,
    specs: Sequence[QuantSpec | str],
    out: str | Path,
    *,
    tensors: Sequence[str] = ("*",),
    seed: int = 0,
    reference: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    process_id: int = 0,
    num_processes: int = 1,
    bulk: str = "auto",
) -> dict[str, Any]:
    """Analyses every selected 2-D tensor of the checkpoint at ``path`` at each spec; resumable (see the module).

    ``bulk``: the bulk law of both predictions (:func:`zipfrmt.analyze.analyze_matrix`'s ``bulk`` and
    ``sketch_bulk``): ``"auto"`` (the default), ``"mp"`` or ``"dozier-silverstein"``. On a model of dense,
    Gaussian-like weights ``"auto"`` takes the Dozier–Silverstein law at most specs, whose solve (0.05–0.5 s)
    costs more than a small tensor's spectrum; ``"mp"`` skips it (9 tensors of 256–4096 × 256 at the 20 default
    specs: 8–9× faster on 2 cores, 9.6× one WeightWatcher pass instead of 83×), at the accuracy the spiked map
    has there (a dense W's stable rank 6–30% off at 2–3 bits). Recorded in ``config.json``: a folder is resumed
    only with the same law.

    Split over processes (hosts): with ``num_processes = N``, this process computes the selected tensors ``i``
    with ``i mod N = process_id`` and reads the others' results from ``out/tensors/`` (a folder every process
    sees). Tensors are independent, so the processes never talk to each other; whichever finds every tensor
    done writes the combined ``analysis.{json,nc,md}`` — until then the result lists the others under
    ``"pending"`` and nothing combined is written. (``zipfrmt analyze --coordinator`` adds a barrier so that
    process 0 writes them; a later single-process run of the same command also does, reading every tensor.)

    With ``reference`` (another export of the same model: an F16 or Q8_0 GGUF, a safetensors folder), each
    tensor is also read there: the specs are applied to the reference tensor, and a first row ``"stored"``
    compares the tensor as stored in ``path`` with it — what the shipped quantization did to the stable rank,
    k* and the tail, beside the prediction from the reference's spectrum and the measured noise
    (:func:`zipfrmt.analyze.compare_stored`). Every selected tensor must be in the reference with the same shape
    (checked from the headers before any work).

    Returns ``{"file", "specs", "seed", "tensors": [analyze_matrix report + "stored_dtype" + per-spec "model"
    fields], "skipped": {name: reason}}``, the content of ``analysis.json``. ``progress`` (default: a line on
    stderr) is called with one message per tensor.
    """
    num_processes = check_int(num_processes, "num_processes", lo=1)
    bulk = check_choice(bulk, "bulk", rmt.BULKS)
    process_id = check_int(process_id, "process_id", lo=0, hi=num_processes - 1)
    listing = checkpoints.list_tensors(path)
    selected, skipped = select_tensors(listing, list(tensors), str(path))
    specs = [QuantSpec.parse(s) if isinstance(s, str) else s for s in specs]
    if not specs or not all(isinstance(s, QuantSpec) for s in specs):
        raise ValueError(f"specs: expected one or more quantization specs, got {describe(specs)}")
    for name in selected:  # every spec must fit every tensor's rows: checked before any work
        analyze.check_specs(specs, tuple(listing[name][0]), f"tensor {name!r}")
    if reference is not None:
        ref_listing = checkpoints.list_tensors(reference)
        for name in selected:
            if name not in ref_listing:
                raise ValueError(f"reference: {str(reference)!r} has no tensor {name!r} (of {path}); it holds "
                                 f"{len(ref_listing)} tensors, e.g. {', '.join(list(ref_listing)[:8])}")
            if tuple(ref_listing[name][0]) != tuple(listing[name][0]):
                raise ValueError(f"reference: tensor {name!r} has shape {list(ref_listing[name][0])} in "
                                 f"{str(reference)!r} and {list(listing[name][0])} in {path}; expected the same")
            why = _why_not(tuple(ref_listing[name][0]), str(ref_listing[name][1]), reference)
            if why is not None:
                raise ValueError(f"reference: tensor {name!r} in {str(reference)!r} cannot be read as a matrix: {why}")
    out = Path(out)
    config = {"file": str(Path(path).resolve()), "specs": [s.label for s in specs], "seed": int(seed),
              "tensors": list(tensors), "version": zipfrmt.__version__, "bulk": bulk,
              "reference": None if reference is None else str(Path(reference).resolve()),
              # what the files hold: a file rewritten in place is another analysis, not a resume
              "listing": {n: [list(sh), str(dt)] for n, (sh, dt) in listing.items()},
              "stat": checkpoints.fingerprint(path),
              "reference_stat": None if reference is None else checkpoints.fingerprint(reference)}
    _prepare_out(out, config)
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    reports: dict[int, dict[str, Any]] = {}
    for i, name in enumerate(selected):
        f = _tensor_file(out, i, name)
        shape, dtype = listing[name]
        rep = _finished(f, name, shape, dtype)
        if rep is not None:
            reports[i] = rep
            say(f"[{i + 1}/{len(selected)}] {name} {list(shape)}: read from {f.name}")
            continue
        if i % num_processes != process_id:
            continue  # another process's tensor
        if f.exists():
            say(f"[{i + 1}/{len(selected)}] {name}: unreadable or stale {f.name}, recomputing")
        say(f"[{i + 1}/{len(selected)}] {name} {list(shape)} {dtype}: {len(specs)} specs")
        # one float32 copy in memory: the file's mapped pages are let go before the specs run
        W = analyze.as_float32_device(checkpoints.load_matrix(path if reference is None else reference, tensor=name))
        rep = analyze.analyze_matrix(W, specs, name=name, seed=seed, bulk=bulk, sketch_bulk=bulk)
        if reference is not None:
            rep["quantized"].insert(0, analyze.compare_stored(W, checkpoints.load_matrix(path, tensor=name),
                                                              "stored", name=name, bulk=bulk))
        del W
        rep["stored_dtype"] = str(dtype)
        r = min(rep["shape"])
        for row in rep["quantized"]:
            row["model"] = _row_fields(row, rep["fp"], r)
        _atomic_json(f, rep)
        reports[i] = rep
    for i, name in enumerate(selected):  # the other processes' tensors, as far as they are done by now
        if i not in reports:
            rep = _finished(_tensor_file(out, i, name), name, *listing[name])
            if rep is not None:
                reports[i] = rep
    labels = (["stored"] if reference is not None else []) + [s.label for s in specs]
    result = {"file": str(path), "reference": None if reference is None else str(reference), "specs": labels,
              "seed": int(seed), "tensors": [reports[i] for i in sorted(reports)], "skipped": skipped}
    pending = [name for i, name in enumerate(selected) if i not in reports]
    if pending:
        result["pending"] = pending
        say(f"process {process_id} of {num_processes}: its tensors are done; {len(pending)} of {len(selected)} "
            f"tensors are other processes' and not finished yet — the combined analysis is written by the run "
            "that finds every tensor done")
        return result
    _write_outputs(out, result)
    return result


def _finished(f: Path, name: str, shape: Sequence[int], dtype: Any) -> dict[str, Any] | None:
    """The stored report of tensor ``name`` in ``f``, or None when it is missing, unreadable or of another tensor."""
    if not f.exists():
        return None
    try:
        rep = json.loads(f.read_text())
        if (rep.get("tensor"), list(rep.get("shape", [])), rep.get("stored_dtype")) != (name, list(shape), str(dtype)):
            return None
        return rep
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def to_dataset(result: dict[str, Any]) -> Any:
    """The labelled result: variables of :data:`MODEL_FIELDS` over ``(tensor, spec)`` plus per-tensor
    full-precision measures and the regime, as an ``xarray.Dataset``."""
    import xarray as xr

    names = [t["tensor"] for t in result["tensors"]]
    specs = list(result["specs"])
    data: dict[str, Any] = {}
    for field in MODEL_FIELDS:
        arr = np.full((len(names), len(specs)), np.nan)
        for i, t in enumerate(result["tensors"]):
            for j, row in enumerate(t["quantized"]):
                v = row["model"].get(field)  # None in a tensor file written before the field existed
                arr[i, j] = np.nan if v is None else float(v)
        data[field] = (("tensor", "spec"), arr)
    data["regime"] = (("tensor", "spec"), np.array([[row["regime"] for row in t["quantized"]]
                                                    for t in result["tensors"]], dtype=str))
    for field in ("stable_rank", "effective_rank", "rank_exponent"):
        data[f"fp_{field}"] = ("tensor", np.array([np.nan if t["fp"].get(field) is None else t["fp"][field]
                                                   for t in result["tensors"]], dtype=float))
    data["rows"] = ("tensor", np.array([t["shape"][0] for t in result["tensors"]]))
    data["cols"] = ("tensor", np.array([t["shape"][1] for t in result["tensors"]]))
    data["stored_dtype"] = ("tensor", np.array([t["stored_dtype"] for t in result["tensors"]], dtype=str))
    ds = xr.Dataset(data, coords={"tensor": names, "spec": specs})
    ds.attrs.update(file=result["file"], seed=result["seed"], zipfrmt_version=zipfrmt.__version__,
                    skipped=json.dumps(result["skipped"]))
    return ds


def markdown(result: dict[str, Any]) -> str:
    """One row per (tensor, spec): stable rank before → after (inflation), predicted, fraction below the edge."""
    rows = []
    for t in result["tensors"]:
        for row in t["quantized"]:
            m = row["model"]
            rows.append([t["tensor"], "×".join(map(str, t["shape"])), t["stored_dtype"], row["spec"], row["regime"],
                         t["fp"]["stable_rank"], m["stable_rank"], m["stable_rank_predicted"],
                         m.get("stable_rank_predicted_sketch"), m["stable_rank_inflation"], m["below_edge_fraction"],
                         m["rel_error"]])
    head = ["tensor", "shape", "stored", "spec", "regime", "r_s(W)", "r_s(Q)", "r_s predicted", "r_s sketch",
            "inflation", "below edge", "rel. error"]
    text = markdown_table(head, rows)
    if result["skipped"]:
        text += "\n\nSkipped:\n" + "\n".join(f"- `{n}`: {r}" for n, r in result["skipped"].items())
    return text + "\n"


def _write_outputs(out: Path, result: dict[str, Any]) -> None:
    _atomic_json(out / "analysis.json", result)
    ds = to_dataset(result)
    tmp = out / "analysis.nc.partial"
    ds.to_netcdf(tmp)
    os.replace(tmp, out / "analysis.nc")
    md = out / "analysis.md.partial"
    md.write_text(markdown(result))
    os.replace(md, out / "analysis.md")
