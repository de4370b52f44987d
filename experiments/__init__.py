"""The paper's figures and tables, one module each.

Every module follows one protocol, so that ``zipfrmt reproduce`` can run any of them:

``NAME``
    the file stem of its outputs (``paper/figures/NAME.pdf|png`` or ``paper/tables/NAME.tex|md``).
``KIND``
    ``"figure"`` or ``"table"``.
``CAPTION``
    one sentence saying what is drawn, used in ``paper/REPORT.md`` and ``paper/main.tex``.
``Config``
    a frozen dataclass; ``SCALES`` maps ``"test"`` (seconds, for the tests), ``"quick"`` (this 2-core CPU;
    all experiments together in ≤ 15 minutes) and ``"full"`` (a GPU; what a paper would print) to instances.
``run(config, *, root="results", force=False, progress=True) -> xarray.Dataset``
    computes the results, cached under ``root`` by :mod:`zipfrmt.sweep` (config hash + package version);
    an interrupted run resumes, a second run reads the cache.
``render(ds, out_dir) -> list[Path]``
    draws the figure (or writes the table) from the saved dataset alone — no recomputation.
``describe(ds) -> str``
    one paragraph of Markdown reading the result, every number taken from ``ds``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: In the order of the paper.
EXPERIMENTS = (
    "fig_zipf_to_powerlaw",
    "fig_noise_floor",
    "fig_stable_rank_vs_bits",
    "fig_limiting_density",
    "fig_training_collapse",
    "fig_collapse_map",
    "fig_mitigations",
    "tab_bound_verification",
    "tab_counterexamples",
    "tab_sketch_prediction",
    "tab_checkpoint",
)


def load(name: str) -> ModuleType:
    """The module of experiment ``name``, with a clear error for an unknown name."""
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment: expected one of {', '.join(EXPERIMENTS)}, got {name!r}")
    return importlib.import_module(f"experiments.{name}")
