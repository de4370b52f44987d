"""The ``zipfrmt`` command.

    zipfrmt report [--V 8192] [--d 512] [--exponent 0.5] [--bits 8,6,4,3,2] [--granularity tensor,row,group32]
                   [--seed 0] [--json OUT.json]

``report`` builds a synthetic power-law matrix (σ_k = k^(-a), Haar singular vectors), quantizes it at each bit
width and granularity, and prints the spectral measures beside the noise statistics and regime.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "parse_granularity", "parse_int_list"]


def parse_int_list(text: str, name: str) -> list[int]:
    """``"8,6,4"`` → ``[8, 6, 4]``, with an error naming the option on bad input."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"{name}: expected at least one integer, got {text!r}")
    return values


def parse_granularity(text: str) -> tuple[str, int | None]:
    """``"row"`` → ``("row", None)``; ``"group32"`` → ``("group", 32)``."""
    text = text.strip()
    if text in ("tensor", "row", "column"):
        return text, None
    if text.startswith("group") and text[5:].isdigit() and int(text[5:]) > 0:
        return "group", int(text[5:])
    raise argparse.ArgumentTypeError(
        f"--granularity: expected tensor, row, column or groupN (e.g. group32), got {text!r}"
    )


def _fmt(x: Any, width: int = 9) -> str:
    if isinstance(x, str):
        return f"{x:>{width}}"
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return f"{'nan':>{width}}"
    if isinstance(x, int):
        return f"{x:>{width}d}"
    return f"{x:>{width}.4g}"


def print_table(rows: list[dict[str, Any]], columns: Sequence[tuple[str, str]], out: Any = None) -> None:
    """Prints ``rows`` as an aligned table; ``columns`` are (key, header) pairs."""
    out = out or sys.stdout
    widths = [max(9, len(h)) for _, h in columns]
    print("  ".join(f"{h:>{w}}" for (_, h), w in zip(columns, widths, strict=True)), file=out)
    for row in rows:
        print("  ".join(_fmt(row.get(k), w) for (k, _), w in zip(columns, widths, strict=True)), file=out)


REPORT_COLUMNS = (
    ("bits", "bits"),
    ("granularity", "granularity"),
    ("stable_rank", "stable_rank"),
    ("effective_rank", "eff_rank"),
    ("rank_exponent", "rank_exp"),
    ("esd_alpha", "esd_alpha"),
    ("rel_error", "rel_error"),
    ("zero_fraction", "zero_frac"),
    ("noise_ratio", "var/model"),
    ("bussgang_gain", "gain"),
    ("regime", "regime"),
)


def cmd_report(args: argparse.Namespace) -> int:
    import jax

    from zipfrmt import embeddings, quant, spectra

    bits = parse_int_list(args.bits, "--bits")
    grans = [parse_granularity(g) for g in args.granularity.split(",")]
    if args.V < 2 or args.d < 2:
        raise SystemExit(f"--V/--d: expected sizes >= 2, got V={args.V}, d={args.d}")
    if args.exponent <= 0:
        raise SystemExit(f"--exponent: expected a positive rank-decay exponent a, got {args.exponent}")
    W = embeddings.power_law_matrix(jax.random.key(args.seed), args.V, args.d, args.exponent)
    fp = spectra.summarize(W)
    print(f"zipfrmt report: {args.V}x{args.d} matrix, sigma_k = k^(-{args.exponent:g}), Haar singular vectors "
          f"(seed {args.seed})")
    print(f"full precision: stable rank {fp.stable_rank:.4g}, effective rank {fp.effective_rank:.4g}, "
          f"rank exponent {fp.rank_exponent:.4f} over ranks [{fp.rank_fit.k_lo}, {fp.rank_fit.k_hi}], "
          f"ESD alpha {fp.esd_alpha:.3f} "
          f"(predicted 1 + 1/(2a) = {spectra.alpha_from_rank_exponent(args.exponent):.3f})")
    rows = []
    for b in bits:
        for gran, g in grans:
            r = quant.quantize(W, b, granularity=gran, group_size=g)
            s = spectra.summarize(r.dequantized)
            rows.append({
                "bits": b, "granularity": gran if g is None else f"group{g}",
                **s.as_dict(), **r.stats(),
                "noise_ratio": r.noise_var_measured / r.noise_var_model if r.noise_var_model else math.nan,
            })
    print_table(rows, REPORT_COLUMNS)
    print("regime: 'widrow' = additive uniform-noise model holds (measured variance within 5% of mean(step^2)/12 "
          "and Bussgang gain within 0.02 of 1); 'dead-zone' = it does not.")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"fp": fp.as_dict(), "quantized": rows}, fh, indent=1, default=float)
        print(f"wrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zipfrmt", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="spectral report of a synthetic power-law matrix quantized at several widths")
    rep.add_argument("--V", type=int, default=8192, help="rows (tokens), default 8192")
    rep.add_argument("--d", type=int, default=512, help="columns (features), default 512")
    rep.add_argument("--exponent", type=float, default=0.5, help="rank-decay exponent a of sigma_k = k^(-a)")
    rep.add_argument("--bits", default="8,6,4,3,2", help="comma-separated bit widths (default 8,6,4,3,2)")
    rep.add_argument("--granularity", default="tensor,row,group32",
                     help="comma-separated: tensor, row, column, groupN (default tensor,row,group32)")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--json", default=None, help="also write the results as JSON to this path")
    rep.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"zipfrmt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
