"""Helpers shared by the experiment modules: where outputs go, and tables as LaTeX (booktabs) and Markdown."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zipfrmt.tables import markdown_table

__all__ = ["DATA_DIR", "figure_path", "fmt", "write_table"]

#: Real text shipped with the repository (``data/``, with its attribution and licences): the main job needs
#: nothing outside the clone. An experiment whose text is missing drops that part and says so.
DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def figure_path(out_dir: str | Path, name: str) -> Path:
    """``out_dir/figures/NAME.png`` (:func:`zipfrmt.plots.save` writes the PDF beside it)."""
    return Path(out_dir) / "figures" / f"{name}.png"


def fmt(x: Any, digits: int = 3) -> str:
    """A table cell: integers as is, floats to ``digits`` significant digits, NaN/None as an en dash."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


_TEX_ESCAPES = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "~": r"\textasciitilde{}", "|": r"\ensuremath{|}"}
# The Unicode the tables use, as pdfLaTeX-safe text (no $…$, so adjacent symbols never form $$).
_TEX_UNICODE = {
    "σ": r"\ensuremath{\sigma}", "λ": r"\ensuremath{\lambda}", "α": r"\ensuremath{\alpha}",
    "Δ": r"\ensuremath{\Delta}", "τ": r"\ensuremath{\tau}", "‖": r"\ensuremath{\|}", "≤": r"\ensuremath{\le}",
    "≥": r"\ensuremath{\ge}", "±": r"\ensuremath{\pm}", "×": r"\ensuremath{\times}", "−": r"\ensuremath{-}",
    "√": r"\ensuremath{\surd}", "∞": r"\ensuremath{\infty}", "≈": r"\ensuremath{\approx}", "–": "--",
    "→": r"\ensuremath{\to}", "₂": r"\textsubscript{2}", "₁": r"\textsubscript{1}",
    "²": r"\textsuperscript{2}", "*": r"\ensuremath{^*}",
}


def _tex(cell: str) -> str:
    cell = cell.replace("_F", "\x00")  # ‖E‖_F: a subscript F, not an escaped underscore
    out = "".join(_TEX_UNICODE.get(c) or _TEX_ESCAPES.get(c, c) for c in cell)
    return out.replace("\x00", r"\textsubscript{F}")


def write_table(
    out_dir: str | Path,
    name: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    caption: str,
    *,
    align: str | None = None,
) -> list[Path]:
    """Writes ``out_dir/tables/NAME.tex`` (a booktabs ``table`` with ``\\label{tab:NAME}``) and ``NAME.md``.

    Cells are strings already formatted (see :func:`fmt`); LaTeX special characters are escaped and the
    symbols the tables use (σ, ≤, ‖, ₂ …) become pdfLaTeX commands, so ``paper/main.tex`` builds with pdfLaTeX.
    """
    tables = Path(out_dir) / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    align = align or "l" * len(header)
    label = name.removeprefix("tab_")
    tex = [
        r"\begin{table*}[t]",
        r"\centering\small",
        rf"\caption{{{_tex(caption)}}}\label{{tab:{label}}}",
        rf"\begin{{tabular}}{{{align}}}",
        r"\toprule",
        " & ".join(_tex(h) for h in header) + r" \\",
        r"\midrule",
        *(" & ".join(_tex(c) for c in row) + r" \\" for row in rows),
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table*}",
    ]
    paths = [tables / f"{name}.tex", tables / f"{name}.md"]
    paths[0].write_text("\n".join(tex) + "\n")
    paths[1].write_text(markdown_table(header, rows) + "\n")
    return paths
