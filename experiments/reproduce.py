"""``zipfrmt reproduce``: run the experiments, draw every figure and table, write ``paper/REPORT.md``.

    zipfrmt reproduce [--scale test|quick|full] [--only NAME ...] [--force] [--checkpoint FILE --tensor NAME]
                      [--results DIR] [--paper DIR]

Results are cached under ``results/`` (see :mod:`zipfrmt.sweep`), so a second run only re-draws. The report
always lists every experiment: those not run this time are drawn from their cached results when there are some
(an experiment module that caches under a key of its own says how to find it with ``load_cached(config, root)``;
the others are found by :func:`zipfrmt.sweep.load_cached` of their name and config).

Every argument is checked before anything runs: the scale, the names, the checkpoint and its tensor (from the
file's headers), and the report already in ``paper``: a report at another scale is never replaced (its sections
and figures would be lost) unless ``force`` is given; write the new one to another ``paper`` folder.
"""

from __future__ import annotations

import os
import re
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zipfrmt
from experiments import EXPERIMENTS, load
from zipfrmt import sweep

__all__ = ["SCALES", "reproduce", "writable_dir"]

SCALES = ("test", "quick", "full")


def writable_dir(path: str | Path, name: str) -> Path:
    """Creates ``path`` if needed and checks that files can be written there; the error names the option."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"{name}: cannot create output folder {str(path)!r} ({exc.strerror or exc})") from None
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise OSError(f"{name}: output folder {str(path)!r} is not writable")
    return path


def _config(module: Any, scale: str, checkpoint: str | None, tensor: str | None) -> Any:
    if hasattr(module, "config_for"):  # tab_checkpoint: its config names the user's file
        return module.config_for(scale, checkpoint=checkpoint, tensor=tensor)
    return module.SCALES[scale]


def _load_cached(module: Any, config: Any, root: Path) -> Any | None:
    """The cached result of ``module`` at ``config``, found where its ``run`` caches it (``None``: none).
    ``tests/test_reproduce.py`` checks, for every experiment, that this lookup is where ``run`` caches."""
    if hasattr(module, "load_cached"):  # a module whose cache key is not its config says how to find it
        return module.load_cached(config, root)
    return sweep.load_cached(module.NAME, config, root)


def _report_scale(report: Path) -> str | None:
    """The scale of the reproduction report at ``report`` ("" when the file is not one; None: no file)."""
    if not report.is_file():
        return None
    with open(report, encoding="utf-8", errors="replace") as f:
        m = re.search(r"reproduction report \((\w+) scale\)", f.readline())
    return m.group(1) if m else ""


def _check_report(paper: Path, scale: str, force: bool) -> None:
    """A finished report at another scale (or a file that is no reproduction report) is not replaced unless
    ``force``: the new report would drop its sections and redraw its figures."""
    report = paper / "REPORT.md"
    found = _report_scale(report)
    if found is None or found == scale or force:
        return
    what = f"a {found}-scale reproduction report" if found else "not a zipfrmt reproduction report"
    raise ValueError(f"paper: {str(report)!r} is {what}; a --scale {scale} run would replace it and redraw its "
                     f"figures and tables. Pass another --paper folder for the {scale}-scale report (or --force to "
                     "replace this one)")


def _section(module: Any, paths: list[Path], paper: Path, text: str) -> str:
    title = module.NAME.replace("_", " ")
    lines = [f"## {title}", "", f"*{module.CAPTION}*", ""]
    for p in paths:
        rel = p.relative_to(paper).as_posix()
        if p.suffix == ".png":
            lines += [f"![{module.NAME}]({rel})", ""]
        elif p.suffix == ".md":
            lines += [p.read_text().rstrip(), ""]
    lines += [text.strip(), ""]
    lines += ["<sub>files: " + ", ".join(f"`{p.relative_to(paper).as_posix()}`" for p in paths) + "</sub>", ""]
    return "\n".join(lines)


def _sections(report: Path, scale: str) -> dict[str, str]:
    """The ``## …`` sections of an existing report at the same scale, by heading (empty when there is none)."""
    if not report.is_file() or f"reproduction report ({scale} scale)" not in report.read_text().split("\n", 1)[0]:
        return {}
    out: dict[str, str] = {}
    for block in ("\n" + report.read_text()).split("\n## ")[1:]:
        title = "## " + block.split("\n", 1)[0]
        if "Not computed yet" not in block:
            out[title] = ("## " + block).rstrip() + "\n"
    return out


def reproduce(
    scale: str = "quick",
    only: Sequence[str] | None = None,
    force: bool = False,
    *,
    results: str | Path = "results",
    paper: str | Path = "paper",
    checkpoint: str | None = None,
    tensor: str | None = None,
    progress: bool = True,
    log: Any = None,
) -> Path:
    """Runs the experiments named in ``only`` (default: all) at ``scale`` and writes ``paper/REPORT.md``.

    Figures go to ``paper/figures/NAME.{pdf,png}``, tables to ``paper/tables/NAME.{tex,md}``. ``force``
    recomputes instead of reading cached results, and allows replacing a report at another scale (without it,
    an existing ``paper/REPORT.md`` at another scale is an error: nothing is run or written).
    ``checkpoint``/``tensor`` name the matrix that ``tab_checkpoint`` analyses, checked before anything runs;
    without them that table is skipped with a message. Returns the report's path.
    """
    log = log or sys.stderr
    if scale not in SCALES:
        raise ValueError(f"scale: expected one of {', '.join(SCALES)}, got {scale!r}")
    names = list(EXPERIMENTS) if not only else list(dict.fromkeys(only))
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"only: unknown experiment {', '.join(map(repr, unknown))}; expected names from "
                         f"{', '.join(EXPERIMENTS)}")
    # Every argument is checked before any work: the checkpoint and tensor too, whichever experiments run.
    modules = {name: load(name) for name in EXPERIMENTS}
    configs = {name: _config(m, scale, checkpoint, tensor) for name, m in modules.items()}
    _check_report(Path(paper), scale, force)
    paper = writable_dir(paper, "paper")
    writable_dir(paper / "figures", "paper")
    writable_dir(paper / "tables", "paper")
    results = writable_dir(results, "results")

    previous = _sections(paper / "REPORT.md", scale)  # a partial run keeps what a complete run wrote
    sections: list[str] = []
    total = time.perf_counter()
    for i, name in enumerate(EXPERIMENTS):
        module, config = modules[name], configs[name]
        prefix = f"[{i + 1}/{len(EXPERIMENTS)}] {name}"
        if config is None:
            print(f"{prefix}: skipped — {module.SKIP_MESSAGE}", file=log)
            sections.append(f"## {name.replace('_', ' ')}\n\n*{module.CAPTION}*\n\nSkipped: {module.SKIP_MESSAGE}\n")
            continue
        seconds = None
        if name in names:
            was_cached = False
            if not force:  # looked up where run caches it; an unreadable or stale file is run's to report
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", sweep.CacheWarning)
                    was_cached = _load_cached(module, config, results) is not None
            print(f"{prefix}: {'reading cache' if was_cached else 'running'} …", file=log, flush=True)
            t0 = time.perf_counter()
            ds = module.run(config, root=results, force=force, progress=progress)  # reads the cache when it can
            seconds = time.perf_counter() - t0
        else:
            ds = _load_cached(module, config, results)
            if ds is None:
                title = f"## {name.replace('_', ' ')}"
                if title in previous:  # keep the section (and the figure or table files) of an earlier run
                    print(f"{prefix}: not run and no cached result here; keeping its section of the existing "
                          f"{paper / 'REPORT.md'}", file=log)
                    sections.append(previous[title])
                else:
                    sections.append(f"{title}\n\n*{module.CAPTION}*\n\nNot computed yet at scale `{scale}`: run "
                                    f"`zipfrmt reproduce --scale {scale} --only {name}`.\n")
                continue
        paths = module.render(ds, paper)
        sections.append(_section(module, paths, paper, module.describe(ds)))
        if seconds is not None:
            how = "read from cache" if was_cached else "computed"
            print(f"{prefix}: {how} in {seconds:.1f} s → " + ", ".join(str(p) for p in paths), file=log, flush=True)

    head = (f"# zipfrmt — reproduction report ({scale} scale)\n\n"
            f"Generated by `zipfrmt reproduce --scale {scale}` with zipfrmt {zipfrmt.__version__}. Every number "
            "below is read from the saved results under `results/`; the figures are drawn from the same files. "
            "The propositions and their proofs are in `paper/theory.tex`; `make paper-pdf` builds `paper/main.pdf`.\n")
    report = paper / "REPORT.md"
    report.write_text(head + "\n" + "\n".join(sections))
    print(f"wrote {report} ({time.perf_counter() - total:.1f} s)", file=log)
    return report
