"""One paper style for every figure; one function per figure kind. Figures are pure functions of results.

Style: sizes for a two-column paper (a column is 3.35 in wide), the Okabe–Ito colour-blind-safe palette,
log–log axes where spectra are drawn, predictions as dashed overlays with labels, vector PDF beside PNG.
No LaTeX is needed to draw.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OKABE_ITO", "paper_style", "quantized_spectra", "save"]

#: Okabe & Ito (2008) colour-blind-safe palette (black first).
OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
#: Line colours in order of use: the palette without black, the pale yellow last (it reads poorly on white).
LINE_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442")
COLUMN_WIDTH = 3.35  # inches, one column of a two-column paper
PAGE_WIDTH = 7.0

_RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 6.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.1,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,
    "text.usetex": False,
    "mathtext.fontset": "dejavusans",
}


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Context in which matplotlib draws in the package's paper style (Agg backend, no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from cycler import cycler

    rc = dict(_RC, **{"axes.prop_cycle": cycler(color=LINE_COLOURS)})
    with plt.rc_context(rc):
        yield


def save(fig: Any, path: str | Path) -> list[Path]:
    """Saves ``fig`` at ``path``; a ``.png`` or ``.pdf`` path also gets its sibling in the other format."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    paths = [path]
    if path.suffix in (".png", ".pdf"):
        paths.append(path.with_suffix(".pdf" if path.suffix == ".png" else ".png"))
    for p in paths:
        fig.savefig(p)
    plt.close(fig)
    return paths


_LINESTYLES = {"tensor": "-", "row": "--", "column": ":", "group": "-."}


def quantized_spectra(spectra: dict[str, Any], report: dict[str, Any], path: str | Path) -> list[Path]:
    """Singular values of a matrix and of its quantized versions on log–log axes, one curve per setting.

    Colour encodes the bit width, line style the granularity; the predicted noise floor of the lowest bit
    width is drawn dashed. ``spectra``/``report`` are what :func:`zipfrmt.analyze.analyze_matrix` returns
    (``keep_spectra=True``).
    """
    import matplotlib.pyplot as plt

    rows = report["quantized"]
    bits_order = sorted({r["bits"] for r in rows}, reverse=True)
    colour = {b: LINE_COLOURS[i % len(LINE_COLOURS)] for i, b in enumerate(bits_order)}
    with paper_style():
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4))
        s_fp = np.asarray(spectra["fp"])
        k = np.arange(1, s_fp.size + 1)
        ax.loglog(k, s_fp, color="black", lw=1.6, label="full precision", zorder=5)
        for row, s_q in zip(rows, spectra["quantized"], strict=True):
            s_q = np.asarray(s_q)
            positive = s_q > 0  # exact zeros (rank lost at low bits) end the curve
            style = _LINESTYLES.get(row["granularity"].rstrip("0123456789"), "-")
            label = f"int{row['bits']} {row['granularity']}" + (" SR" if row["rounding"] == "stochastic" else "")
            ax.loglog(k[positive], s_q[positive], color=colour[row["bits"]], ls=style, lw=0.9, label=label)
        lowest = [r for r in rows if r["bits"] == bits_order[-1]]
        if lowest and lowest[0]["predicted"]["noise_floor"] > 0:
            floor = lowest[0]["predicted"]["noise_floor"]
            ax.axhline(floor, color=colour[bits_order[-1]], ls=(0, (4, 2)), lw=0.8)
            ax.annotate(f"noise floor, int{bits_order[-1]} {lowest[0]['granularity']} (predicted)",
                        (1, floor), xytext=(2, 2), textcoords="offset points", fontsize=6,
                        color=colour[bits_order[-1]])
        ax.set_xlabel("rank $k$")
        ax.set_ylabel(r"singular value $\sigma_k$")
        V, d = report["shape"]
        ax.set_title(f"{report['tensor']} ({V}×{d})")
        # Values below 1e-3·σ_1 are beneath the accuracy that singular_values guarantees: cut the axis there.
        top = max([float(s_fp[0])] + [float(np.max(s)) for s in spectra["quantized"]])
        ax.set_ylim(1e-3 * top, 1.5 * top)
        ax.legend(ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0), handlelength=2.4)
        return save(fig, path)
