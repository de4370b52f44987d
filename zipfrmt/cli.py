"""The ``zipfrmt`` command: spectral flattening of quantized embeddings.

    zipfrmt report  [--V 8192] [--d 512] [--exponent 0.5] [quantization options]
    zipfrmt analyze FILE --tensor NAME [--quant int4-row,int3-group32,nf4,fp8_e4m3,mxfp4,q4_0,...]
                    [--bits 8,6,4,3,2 --granularity tensor,row,column,group32 --rounding nearest]
                    [--json OUT.json] [--plot OUT.png] [--transpose]
    zipfrmt analyze FILE|FOLDER --tensors 'PATTERN,...' [--out DIR] [--reference OTHER_FILE] [quantization options]
                    [--plot OUT.png] [--json OUT.json] [--num-processes N --process-id I [--coordinator HOST:PORT]]
    zipfrmt verify  [--scale quick|full] [--json OUT.json]
    zipfrmt list    FILE
    zipfrmt reproduce [--scale test|quick|full] [--only NAME ...] [--force] [--checkpoint FILE --tensor NAME]
                      [--results DIR] [--paper DIR] [--experiments DIR]
    zipfrmt train   tiny|quick|full|CONFIG.json [--quant RULES] [--bits B [--granularity G] [--rounding R]]
                    [--act-bits B] [--grad-bits B] [--control none|noise|stochastic|hadamard] [--freeze WEIGHTS]
                    [--lr LR] [--steps N] [--seed S] [--corpus latent|zipf|FILE] [--out DIR] [--no-progress]

``report`` analyses a synthetic power-law matrix (σ_k = k^(-a), Haar singular vectors); ``analyze`` a real one
from a checkpoint. Both quantize at each spec (``--quant``, or the grid ``--bits`` × ``--granularity`` ×
``--rounding`` of integer specs) and print the spectral measures of the quantized matrix beside the
random-matrix prediction, the noise statistics and the regime. ``list`` prints the tensors of a checkpoint;
``verify`` checks the paper's propositions numerically; ``reproduce`` runs the paper's experiments and writes
its figures, tables and report; ``train`` trains a small language model at low precision with spectral probes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["build_parser", "main", "print_analysis"]


def parse_int_list(text: str, name: str) -> list[int]:
    """``"8,6,4"`` → ``[8, 6, 4]``, with an error naming the option on bad input."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{name}: expected comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"{name}: expected at least one integer, got {text!r}")
    return values


def parse_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


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
    widths = [max(9, len(h), *(len(str(r.get(k))) for r in rows if isinstance(r.get(k), str))) for k, h in columns]
    print("  ".join(f"{h:>{w}}" for (_, h), w in zip(columns, widths, strict=True)), file=out)
    for row in rows:
        print("  ".join(_fmt(row.get(k), w) for (k, _), w in zip(columns, widths, strict=True)), file=out)


TABLE_COLUMNS = (
    ("spec", "spec"),
    ("stable_rank", "stable_rank"),
    ("predicted_stable_rank", "predicted"),
    ("sketch_stable_rank", "sketch"),
    ("effective_rank", "eff_rank"),
    ("rank_exponent", "rank_exp"),
    ("esd_alpha", "esd_alpha"),
    ("truncation_index", "k*"),
    ("predicted_truncation_index", "k*_pred"),
    ("sketch_truncation_index", "k*_sketch"),
    ("rel_error", "rel_error"),
    ("zero_fraction", "zero_frac"),
    ("noise_ratio", "var/model"),
    ("bussgang_gain", "gain"),
    ("regime", "regime"),
)


def print_analysis(report: dict[str, Any], out: Any = None) -> None:
    """The human-readable form of an analysis (see :func:`zipfrmt.analyze.analyze_matrix`)."""
    out = out or sys.stdout
    fp = report["fp"]
    V, d = report["shape"]
    window = fp["rank_window"]
    print(f"{report['tensor']}: {V} x {d}", file=out)
    print(f"full precision: stable rank {fp['stable_rank']:.4g}, effective rank {fp['effective_rank']:.4g}, "
          f"participation ratio {fp['participation_ratio']:.4g}, rank exponent {_fmt(fp['rank_exponent'], 0)} "
          f"over ranks [{window[0]}, {window[1]}], ESD alpha {_fmt(fp['esd_alpha'], 0)} "
          f"(x_min {_fmt(fp['esd_xmin'], 0)}, KS {_fmt(fp['esd_ks'], 0)}), "
          f"sigma {fp['sigma_max']:.4g} .. {fp['sigma_min']:.4g}", file=out)
    for key, why in fp.get("reasons", {}).items():
        print(f"  {key} is undefined: {why}", file=out)
    rows = []
    for row in report["quantized"]:
        model = row["noise_var_model"]
        rows.append({
            **row,
            "predicted_stable_rank": row["predicted"]["stable_rank"],
            "predicted_truncation_index": row["predicted"]["truncation_index"],
            "sketch_stable_rank": row.get("predicted_sketch", {}).get("stable_rank", math.nan),
            "sketch_truncation_index": row.get("predicted_sketch", {}).get("truncation_index", math.nan),
            "profile_stable_rank": row.get("predicted_profile", {}).get("stable_rank", math.nan),
            "profile_truncation_index": row.get("predicted_profile", {}).get("truncation_index", math.nan),
            "noise_ratio": row["noise_var_measured"] / model if model else math.nan,
        })
    columns = TABLE_COLUMNS
    if any("predicted_profile" in row for row in report["quantized"]):
        columns = (*TABLE_COLUMNS[:10], ("profile_stable_rank", "profile"), ("profile_truncation_index", "k*_prof"),
                   *TABLE_COLUMNS[10:])
    print_table(rows, columns, out)
    print("k* = singular values above the noise floor s(sqrt(V)+sqrt(d)); 'predicted' and 'k*_pred' come from the "
          "full-precision spectrum alone (additive model in the widrow regime, Bussgang model in dead-zone); "
          "'sketch' and 'k*_sketch' add one pass over Q along W's top singular pair (rmt.predict_from_sketch), "
          "which holds in the dead zone too; 'profile' and 'k*_prof' (--profile, dead-zone specs) add the row and "
          "column variances of the residual Q - gW (variance_profile.predict_with_residual_profile).\n"
          "regime: 'widrow' = measured noise variance within 5% of the format's model (uniform grid: mean(step^2)/12; "
          "fp8/nf4/mxfp4/nvfp4: Bennett's cell widths) and Bussgang gain within 0.02 of 1; 'dead-zone' = the "
          "additive model does not hold.", file=out)


def _progress(total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="setting", file=sys.stderr, leave=False)


def specs_from_args(args: argparse.Namespace) -> list[Any]:
    """The specs of ``--quant``, or of the shorthand grid ``--bits`` × ``--granularity`` × ``--rounding``.

    Both forms together are an error (which one would win is not obvious). Spec text is checked here, before
    any file is read; shapes are checked against the matrix before anything is computed.
    """
    from zipfrmt import analyze
    from zipfrmt.quant import QuantSpec, parse_granularity

    shorthand = {"--bits": args.bits, "--granularity": args.granularity, "--rounding": args.rounding}
    given = [k for k, v in shorthand.items() if v is not None]
    if args.quant is not None:
        if given:
            raise ValueError(f"--quant: give either --quant or the shorthand {'/'.join(shorthand)}, not both "
                             f"(got --quant and {', '.join(given)})")
        texts = parse_list(args.quant)
        if not texts:
            raise ValueError(f"--quant: expected comma-separated specs such as int4-row,nf4, got {args.quant!r}")
        specs = []
        for t in texts:
            try:
                specs.append(QuantSpec.parse(t))
            except ValueError as exc:
                raise ValueError(f"--quant: {exc}") from None
        return specs
    bits = parse_int_list(args.bits or "8,6,4,3,2", "--bits")
    grans = parse_list(args.granularity or args.default_granularity)
    for g in grans:
        try:
            parse_granularity(g)
        except ValueError as exc:
            raise ValueError(f"--granularity: {exc}") from None
    roundings = parse_list(args.rounding or "nearest")
    try:
        return analyze.spec_grid(bits, grans, roundings)
    except ValueError as exc:
        raise ValueError(f"--bits/--granularity/--rounding: {exc}") from None


def check_outputs(args: argparse.Namespace) -> None:
    """``--json``/``--plot`` must be writable files of a known kind, checked before any work."""
    from pathlib import Path

    for opt, path in (("--json", args.json), ("--plot", args.plot)):
        if path is None:
            continue
        p = Path(path)
        if p.is_dir():
            raise ValueError(f"{opt}: expected a file to write, got the folder {path!r}")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise ValueError(f"{opt}: the folder of {path!r} does not exist")
        import os

        if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
            raise ValueError(f"{opt}: {path!r} is not writable")
    if args.plot is not None:
        from zipfrmt import plots

        plots.check_figure_path(args.plot, "--plot")


def _run_analysis(W: Any, name: str, specs: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    from zipfrmt import analyze

    with _progress(len(specs), "quantizing") as bar:
        report = analyze.analyze_matrix(
            W, specs, name=name, seed=args.seed, keep_spectra=bool(args.plot), profile=bool(args.profile),
            bulk=args.bulk, sketch_bulk=args.bulk,
            progress=lambda spec: (bar.set_postfix_str(spec.label), bar.update()),
        )
    print_analysis(report)
    spectra_arrays = report.pop("spectra", None)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        from zipfrmt import plots

        plots.quantized_spectra(spectra_arrays, report, args.plot)
        print(f"wrote {args.plot}")
    return report


def cmd_report(args: argparse.Namespace) -> int:
    import jax

    from zipfrmt import embeddings

    if args.V < 2 or args.d < 2:
        raise ValueError(f"--V/--d: expected sizes >= 2, got V={args.V}, d={args.d}")
    if args.exponent <= 0:
        raise ValueError(f"--exponent: expected a positive rank-decay exponent a, got {args.exponent}")
    specs = specs_from_args(args)
    check_outputs(args)
    print(f"zipfrmt report: synthetic matrix with sigma_k = k^(-{args.exponent:g}) and Haar singular vectors "
          f"(seed {args.seed}); the ESD exponent this implies is alpha = 1 + 1/(2a) = "
          f"{1 + 1 / (2 * args.exponent):.3f}")
    W = embeddings.power_law_matrix(jax.random.key(args.seed), args.V, args.d, args.exponent)
    _run_analysis(W, f"power-law matrix (a={args.exponent:g})", _checked(specs, W, "--quant"), args)
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from zipfrmt import checkpoints

    specs = specs_from_args(args)
    check_outputs(args)
    if args.tensors is not None:
        return _analyze_model(args, specs)
    for opt, value in (("--out", args.out), ("--reference", args.reference), ("--coordinator", args.coordinator),
                       ("--num-processes", None if args.num_processes == 1 else args.num_processes),
                       ("--process-id", None if args.process_id == 0 else args.process_id)):
        if value is not None:
            raise ValueError(f"{opt}: goes with --tensors (a whole model, e.g. --tensors '*' or a pattern); for one "
                             "--tensor use --json/--plot")
    W = checkpoints.load_matrix(args.file, tensor=args.tensor, transpose=args.transpose)
    _run_analysis(W, args.tensor or str(args.file), _checked(specs, W, "--quant"), args)
    return 0


def _analyze_model(args: argparse.Namespace, specs: list[Any]) -> int:
    """``analyze --tensors``: every matching 2-D tensor, one at a time, into ``--out`` (resumable)."""
    from pathlib import Path

    from zipfrmt import model_analysis, plots

    if args.tensor is not None:
        raise ValueError("--tensors: give either --tensor NAME (one matrix) or --tensors PATTERNS (a whole model), "
                         "not both")
    if args.transpose:
        raise ValueError("--transpose: applies to one --tensor; a whole model is read in its stored layout (rows "
                         "along the contraction axis)")
    if args.profile:
        raise ValueError("--profile: applies to one --tensor (its table and JSON gain the residual-profile "
                         "prediction); a whole-model run (--tensors) reports the regime's and the sketch model's")
    patterns = parse_list(args.tensors)
    n, pid = _check_processes(args)
    out = Path(args.out) if args.out else Path(str(Path(args.file).resolve()).rstrip("/") + ".analysis")
    if args.coordinator:
        import jax

        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # the barrier below, on CPU hosts
        jax.distributed.initialize(args.coordinator, num_processes=n, process_id=pid)
    try:
        result = model_analysis.analyze_model(args.file, specs, out, tensors=patterns, seed=args.seed,
                                              reference=args.reference, process_id=pid, num_processes=n,
                                              bulk=args.bulk)
        if args.coordinator:  # every process has finished its share: process 0 combines them
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("zipfrmt analyze: every share done")
            if pid == 0 and "pending" in result:
                result = model_analysis.analyze_model(args.file, specs, out, tensors=patterns, seed=args.seed,
                                                      reference=args.reference, progress=lambda m: None,
                                                      bulk=args.bulk)
    except ValueError as exc:  # name the command-line options, not the function's parameters
        msg = str(exc)
        for name in ("tensors", "out", "reference"):
            if msg.startswith(name + ":"):
                raise ValueError("--" + msg) from None
        raise
    except KeyboardInterrupt:
        print(f"zipfrmt analyze: interrupted; the finished tensors are kept in {out}/tensors — run the same command "
              "again to resume", file=sys.stderr)
        return 130
    if "pending" in result:
        who = "process 0 writes" if args.coordinator else "the run that finds every tensor done writes"
        print(f"zipfrmt analyze: process {pid} of {n} finished its tensors in {out}/tensors; {who} the combined "
              "analysis", file=sys.stderr)
        return 0
    ds = model_analysis.to_dataset(result)
    print(model_analysis.markdown(result))
    print(f"analysis of {len(result['tensors'])} tensors × {len(result['specs'])} specs in {out}/ "
          "(analysis.nc, analysis.json, analysis.md)", file=sys.stderr)
    if args.json:
        Path(args.json).write_text((out / "analysis.json").read_text())
    if args.plot:
        plots.model_damage(ds, args.plot)
    return 0


def _check_processes(args: argparse.Namespace) -> tuple[int, int]:
    """(``--num-processes``, ``--process-id``), checked against each other and ``--coordinator``."""
    n, pid = args.num_processes, args.process_id
    if n < 1:
        raise ValueError(f"--num-processes: expected at least 1, got {n}")
    if not 0 <= pid < n:
        raise ValueError(f"--process-id: expected an integer in [0, {n - 1}] (--num-processes {n}), got {pid}")
    if args.coordinator is not None:
        host, _, port = args.coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--coordinator: expected HOST:PORT (process 0's address, e.g. node0:1234), got "
                             f"{args.coordinator!r}")
    return n, pid


def _checked(specs: list[Any], W: Any, opt: str) -> list[Any]:
    from zipfrmt import analyze

    try:
        return analyze.check_specs(specs, tuple(W.shape), "the matrix")
    except ValueError as exc:
        raise ValueError(f"{opt}: {exc}") from None


def _add_quant_options(p: argparse.ArgumentParser, granularity: str) -> None:
    p.add_argument("--quant", default=None, metavar="SPECS",
                   help="comma-separated quantization specs: int<b>-<tensor|row|column|groupN>[-stochastic], "
                        "fp8_e4m3, fp8_e5m2, nf4, mxfp4, nvfp4 (e.g. int4-row,int3-group32,nf4,mxfp4); "
                        "or use the shorthand --bits/--granularity/--rounding")
    p.add_argument("--bits", default=None, help="shorthand: comma-separated bit widths (default 8,6,4,3,2)")
    p.add_argument("--granularity", default=None,
                   help=f"shorthand: comma-separated tensor, row, column, groupN (default {granularity})")
    p.add_argument("--rounding", default=None,
                   help="shorthand: comma-separated nearest, stochastic (default nearest)")
    p.set_defaults(default_granularity=granularity)
    p.add_argument("--seed", type=int, default=0, help="seed of the matrix and of stochastic rounding")
    p.add_argument("--json", default=None, metavar="OUT.json", help="write the results as JSON")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="draw the spectra on log-log axes")
    p.add_argument("--bulk", default="auto", choices=["auto", "mp", "dozier-silverstein"],
                   help="bulk law of the predictions: auto (default; Dozier-Silverstein where the spiked map is not "
                        "enough: a dense W, the dead zone, a tail cut near the threshold), mp (the spiked map and "
                        "Marchenko-Pastur: fastest, e.g. a whole model of dense weights 8x faster) or "
                        "dozier-silverstein")
    p.add_argument("--profile", action="store_true",
                   help="at dead-zone specs, also predict from the row and column variances of the residual Q - gW "
                        "(the dead zone's count above the floor; 0.3-1.2 s a spec at 4096x256)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zipfrmt", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    rep = sub.add_parser("report", help="spectral report of a synthetic power-law matrix quantized at several widths")
    rep.add_argument("--V", type=int, default=8192, help="rows (tokens), default 8192")
    rep.add_argument("--d", type=int, default=512, help="columns (features), default 512")
    rep.add_argument("--exponent", type=float, default=0.5, help="rank-decay exponent a of sigma_k = k^(-a)")
    _add_quant_options(rep, "tensor,row,group32")
    rep.set_defaults(func=cmd_report)

    ana = sub.add_parser("analyze", help="what b-bit quantization does to the spectrum of a real matrix")
    ana.add_argument("file", help="a .safetensors, .gguf, .npz or .npy file, or the folder of a sharded "
                                  "safetensors checkpoint (with model.safetensors.index.json)")
    ana.add_argument("--tensor", default=None, help="tensor name (safetensors, GGUF) or key (npz); `zipfrmt list "
                                                    "FILE` shows them")
    ana.add_argument("--tensors", default=None, metavar="PATTERNS",
                     help="comma-separated glob patterns ('*': every 2-D tensor): analyse every matching tensor, one "
                          "at a time, into --out (resumable; other tensors are listed as skipped, with the reason)")
    ana.add_argument("--reference", default=None, metavar="OTHER_FILE",
                     help="with --tensors: another export of the same model (an F16 or Q8_0 GGUF, safetensors): "
                          "compare each tensor as stored in FILE with it (row 'stored'), and apply the specs to it")
    ana.add_argument("--out", default=None, metavar="DIR",
                     help="with --tensors: the analysis folder (default FILE.analysis); an interrupted run resumes "
                          "there")
    ana.add_argument("--num-processes", type=int, default=1, metavar="N",
                     help="with --tensors: split the tensors over N processes (hosts) sharing --out; tensor i is "
                          "computed by process i mod N")
    ana.add_argument("--process-id", type=int, default=0, metavar="I", help="this process's index, 0..N-1")
    ana.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                     help="process 0's address: jax.distributed joins the N processes, and process 0 writes the "
                          "combined analysis once every share is done (without it, the last to finish does)")
    ana.add_argument("--transpose", action="store_true", help="the file stores the matrix as d x V")
    _add_quant_options(ana, "tensor,row,column,group32")
    ana.set_defaults(func=cmd_analyze)

    ver = sub.add_parser("verify", help="verify the paper's propositions numerically over a grid")
    ver.add_argument("--scale", choices=("quick", "full"), default="quick",
                     help="quick: a few minutes on a CPU; full: a GPU-sized grid")
    ver.add_argument("--json", default=None, metavar="OUT.json", help="write the verification table as JSON")
    ver.set_defaults(func=cmd_verify)

    lst = sub.add_parser("list", help="list the tensors of a .safetensors, .gguf, .npz or .npy file or a sharded "
                                      "folder, with each tensor's stored type")
    lst.add_argument("file")
    lst.set_defaults(func=cmd_list)

    repro = sub.add_parser("reproduce", help="run the experiments; write paper/figures, paper/tables, paper/REPORT.md")
    repro.add_argument("--scale", choices=("test", "quick", "full"), default="quick",
                       help="quick: this CPU, 10-15 minutes in all; full: a GPU, what a paper prints; test: seconds, "
                            "for the tests")
    repro.add_argument("--only", nargs="+", default=None, metavar="NAME",
                     help="run only these experiments (the report still shows the others from their cache)")
    repro.add_argument("--force", action="store_true",
                       help="recompute instead of reading cached results; also allows replacing a REPORT.md "
                            "written at another --scale")
    repro.add_argument("--results", default="results", metavar="DIR", help="cache of results (default results/)")
    repro.add_argument("--paper", default="paper", metavar="DIR",
                       help="where figures, tables and REPORT.md go (default paper/). A REPORT.md there at another "
                            "--scale is not replaced: the run stops before any work; pass another --paper folder "
                            "(or --force to replace it)")
    repro.add_argument("--checkpoint", default=None, metavar="FILE",
                     help="a .safetensors/.npz/.npy file for tab_checkpoint (skipped without one); checked, "
                          "with --tensor, before any experiment runs")
    repro.add_argument("--tensor", default=None, metavar="NAME",
                       help="the tensor of --checkpoint to analyse (`zipfrmt list FILE` shows them; may be omitted "
                            "when the file holds one)")
    repro.add_argument("--experiments", default=None, metavar="DIR",
                       help="the experiments/ folder of a zipfrmt checkout (default: ./experiments, or the one "
                            "beside the installed package)")
    repro.set_defaults(func=cmd_reproduce)

    trn = sub.add_parser("train", help="train a small LM at low precision, with spectral probes of its embedding")
    trn.add_argument("config", metavar="CONFIG_OR_PRESET", help="a preset (tiny, quick, full) or a JSON config file")
    trn.add_argument("--quant", default=None, metavar="RULES",
                     help="quantization rules PATTERN=SPEC,...: sites embed, head, linear, act, grad, and the "
                          "mechanisms wgrad (weight gradients), master (weights kept on the grid), opt (AdamW "
                          "moments) — or a path such as linear/blocks/0/mlp/fc; specs such as int4-row, "
                          "int3-group32-stochastic, nf4, mxfp4, or fp32; e.g. 'embed=int2-row,wgrad=int4-row'")
    trn.add_argument("--bits", default=None,
                     help="shorthand for linear,embed,head: fp32, a bit width (per tensor) or a spec")
    trn.add_argument("--act-bits", default=None,
                     help="shorthand for act: fp32, a bit width (per token) or a spec")
    trn.add_argument("--grad-bits", default=None,
                     help="shorthand for grad (the backward pass): fp32, a bit width (per token) or a spec, e.g. "
                          "int2-row-stochastic")
    trn.add_argument("--granularity", default=None,
                     help="scale groups of a quantized --bits: tensor, row, column or groupN")
    trn.add_argument("--rounding", default=None, choices=("nearest", "stochastic"),
                     help="rounding of a quantized --bits")
    trn.add_argument("--control", default=None, choices=("none", "noise", "stochastic", "hadamard"),
                     help="what every quantized site does instead: equal-energy noise, stochastic rounding, a "
                          "Hadamard rotation before quantizing (the collapse experiment's controls); needs a "
                          "quantized site (--bits, --act-bits, --grad-bits or --quant)")
    trn.add_argument("--freeze", default=None, metavar="WEIGHTS",
                     help="comma-separated weights never updated: embed, pos, head, linear/<layer>")
    trn.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    trn.add_argument("--steps", type=int, default=None,
                     help="training steps (default: the preset's); also shortens the learning-rate warmup to "
                          "min(the preset's warmup, N // 10) steps")
    trn.add_argument("--seed", type=int, default=None, help="training seed (default: the preset's)")
    trn.add_argument("--corpus", default=None, metavar="latent|zipf|FILE",
                     help="latent, zipf, or a text file (word tokens)")
    trn.add_argument("--out", default=None, metavar="DIR",
                     help="write checkpoints and history.nc here (a run found there is resumed)")
    trn.add_argument("--no-progress", action="store_true", help="no progress bar")
    trn.set_defaults(func=cmd_train)
    return parser


def cmd_verify(args: argparse.Namespace) -> int:
    from zipfrmt import bounds

    _, rows = bounds.run_verify(args.scale, json_path=args.json)
    print(bounds.format_table(rows))
    if args.json:
        print(f"wrote {args.json}")
    violations = sum(int(r.get("violations", 0) or 0) for r in rows)
    if violations:
        print(f"zipfrmt verify: {violations} violation(s) of rigorous bounds", file=sys.stderr)
        return 1
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from zipfrmt import checkpoints

    for name, (shape, dtype) in checkpoints.list_tensors(args.file).items():
        print(f"{name}\t{list(shape)}\t{dtype}")
    return 0


def experiments_dir(given: str | None) -> Any:
    """The ``experiments/`` folder of a zipfrmt checkout: ``--experiments`` if given, else ``./experiments``,
    else the one beside the installed package (an editable install from a clone)."""
    from pathlib import Path

    import zipfrmt

    candidates = [Path(given)] if given else [Path("experiments"), Path(zipfrmt.__file__).resolve().parents[1] /
                                              "experiments"]
    for c in candidates:
        if (c / "reproduce.py").is_file() and (c / "__init__.py").is_file():
            return c.resolve()
    where = given or "./experiments or beside the installed package"
    raise FileNotFoundError(f"--experiments: no experiments folder (with reproduce.py) at {where}; `zipfrmt "
                            "reproduce` runs the paper's experiments from a clone of the repository: run it in the "
                            "clone (pip install -e .), or pass --experiments PATH/TO/experiments")


def load_experiments(folder: Any) -> Any:
    """Imports the ``experiments`` package of ``folder`` (a checkout's), refusing any other of that name."""
    import importlib
    from pathlib import Path

    root = str(Path(folder).parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    module = importlib.import_module("experiments.reproduce")
    found = Path(module.__file__).resolve().parent
    if found != Path(folder).resolve():
        raise ImportError(f"--experiments: imported 'experiments' from {found}, expected {folder}; another "
                          "package named 'experiments' shadows the checkout's")
    return module


def cmd_reproduce(args: argparse.Namespace) -> int:
    reproduce = load_experiments(experiments_dir(args.experiments)).reproduce
    reproduce(args.scale, args.only, args.force, results=args.results, paper=args.paper,
              checkpoint=args.checkpoint, tensor=args.tensor)
    return 0


def check_train_args(args: argparse.Namespace) -> None:
    """What ``zipfrmt train``'s options need before the config is built, each error naming its option:
    ``--granularity`` is a granularity, ``--granularity``/``--rounding`` modify a quantized ``--bits`` (not
    fp32), and ``--corpus`` is latent, zipf or an existing text file."""
    from pathlib import Path

    from zipfrmt.nn.config import parse_precision
    from zipfrmt.quant import parse_granularity

    if args.granularity is not None:
        try:
            parse_granularity(args.granularity)
        except ValueError as exc:
            raise ValueError(f"--granularity: {str(exc).removeprefix('granularity: ')}") from None
    given = [o for o, v in (("--granularity", args.granularity), ("--rounding", args.rounding)) if v is not None]
    if given and args.bits is not None and parse_precision(args.bits, "--bits") is None:
        raise ValueError(f"{given[0]}: applies to a quantized --bits, got --bits {args.bits!r} (full precision has "
                         f"no scales and no rounding); give a bit width or a spec, or drop {' and '.join(given)}")
    if args.corpus is not None and args.corpus not in ("latent", "zipf"):
        path = Path(args.corpus)
        if path.is_dir():
            raise IsADirectoryError(f"--corpus: {args.corpus!r} is a directory; expected latent, zipf or a text file")
        if not path.is_file():
            raise FileNotFoundError(f"--corpus: no such file {args.corpus!r}; expected latent, zipf or a text file "
                                    "(word tokens)")


def _check_control(args: argparse.Namespace, config: Any) -> None:
    """``--control`` replaces what every quantized site does: a run that quantizes nothing has nothing to control."""
    if args.control is None or args.control == "none":
        return
    if not any(spec is not None for _, spec in config.quant):
        raise ValueError(f"--control: {args.control!r} acts on the quantized sites, but this run quantizes none (no "
                         "quantization rule of the preset, --quant, --bits, --act-bits or --grad-bits); add one, "
                         "e.g. --bits 4, or drop --control")


def cmd_train(args: argparse.Namespace) -> int:
    from zipfrmt.nn.command import config_from_args, run

    check_train_args(args)
    _check_control(args, config_from_args(args))
    return run(args)


#: Environment variable naming the folder of XLA's persistent compilation cache (``off`` disables it).
CACHE_ENV = "ZIPFRMT_COMPILATION_CACHE"
#: Commands that never use the program cache: ``reproduce`` caches its *results* (a finished experiment is read
#: back without compiling anything), so writing thousands of programs on its first run only cost time (6%).
NO_PROGRAM_CACHE = ("reproduce",)


def enable_compilation_cache() -> str | None:
    """Turns on JAX's persistent compilation cache for this process; returns its folder (None when off).

    Every quantization spec is its own XLA program per tensor shape (0.1-0.3 s to compile on a 2-core CPU; a
    20-spec whole-model run compiles ~60 of them), so a second run of a command loads them from disk instead:
    ``zipfrmt analyze`` on 9 tensors at 20 specs, 19 s → 6 s. The folder is ``$ZIPFRMT_COMPILATION_CACHE``, else
    ``$XDG_CACHE_HOME/zipfrmt/jax`` (``~/.cache/zipfrmt/jax``); ``ZIPFRMT_COMPILATION_CACHE=off`` disables it, and
    a ``JAX_COMPILATION_CACHE_DIR`` the user set is left to JAX.
    """
    import os
    from pathlib import Path

    import jax

    choice = os.environ.get(CACHE_ENV, "")
    if choice.lower() == "off":
        return None
    if os.environ.get("JAX_COMPILATION_CACHE_DIR") and not choice:
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = str(Path(choice) if choice else base / "zipfrmt" / "jax")
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # ours take 0.1-0.3 s each
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in NO_PROGRAM_CACHE:
        enable_compilation_cache()
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, OSError, ImportError) as exc:
        print(f"zipfrmt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:  # out of host or device memory (XLA: RESOURCE_EXHAUSTED), I/O backends
        print(f"zipfrmt {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
