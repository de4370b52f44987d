"""Results as plain data: JSON-able values and Markdown tables, one convention for the whole package.

* :func:`jsonable` — dataclasses to dicts, tuples to lists, NumPy scalars to Python numbers, paths to
  strings, and **NaN/±Inf to** ``None`` (JSON ``null``): a number that is not finite is "no value", the same
  in every JSON file zipfrmt writes and in every config hash.
* :func:`finite_or_none` — one number the same way.
* :func:`cell` and :func:`markdown_table` — the table cells of reports (NaN as ``nan``, floats to 4
  significant digits by default).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["cell", "finite_or_none", "jsonable", "markdown_table"]


def finite_or_none(x: Any) -> float | None:
    """A finite number as a Python float; NaN, ±Inf and None as None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def jsonable(x: Any) -> Any:
    """``x`` as plain JSON-able Python (see the module docstring for the rules)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def cell(x: Any, digits: int = 4) -> str:
    """One table cell: floats to ``digits`` significant digits (``nan`` when not finite), the rest as text."""
    if isinstance(x, float | np.floating):
        return "nan" if not math.isfinite(x) else f"{float(x):.{digits}g}"
    return str(x)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 4) -> str:
    """A Markdown table; cells go through :func:`cell` (``|`` inside a cell is escaped)."""
    def fmt(x: Any) -> str:
        return cell(x, digits).replace("|", r"\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
