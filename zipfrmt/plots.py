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

__all__ = [
    "OKABE_ITO",
    "embedding_in_use",
    "check_figure_path",
    "collapse_map",
    "last_finite",
    "limiting_density",
    "mitigations",
    "model_damage",
    "noise_floor",
    "paper_style",
    "quantized_spectra",
    "save",
    "stable_rank_vs_bits",
    "training_collapse",
    "zipf_to_powerlaw",
]

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
    for p in paths:  # no creation date in the PDF: the same results give the same bytes
        fig.savefig(p, metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    plt.close(fig)
    return paths


_LINESTYLES = {"tensor": "-", "row": "--", "column": ":", "group": "-."}


def quantized_spectra(spectra: dict[str, Any], report: dict[str, Any], path: str | Path) -> list[Path]:
    """Singular values of a matrix and of its quantized versions on log–log axes, one curve per spec.

    Colour encodes the format and bit width, line style the scale groups; the highest predicted noise floor
    (the coarsest spec) is drawn dashed. ``spectra``/``report`` are what
    :func:`zipfrmt.analyze.analyze_matrix` returns (``keep_spectra=True``).
    """
    import matplotlib.pyplot as plt

    rows = report["quantized"]
    kinds = sorted({(r["format"], r["bits"]) for r in rows}, key=lambda fb: (fb[0] != "int", -fb[1], fb[0]))
    colour = {fb: LINE_COLOURS[i % len(LINE_COLOURS)] for i, fb in enumerate(kinds)}
    with paper_style():
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4))
        s_fp = np.asarray(spectra["fp"])
        k = np.arange(1, s_fp.size + 1)
        ax.loglog(k, s_fp, color="black", lw=1.6, label="full precision", zorder=5)
        for row, s_q in zip(rows, spectra["quantized"], strict=True):
            s_q = np.asarray(s_q)
            positive = s_q > 0  # exact zeros (rank lost at low bits) end the curve
            style = _LINESTYLES.get(row["granularity"].rstrip("0123456789"), "-")
            ax.loglog(k[positive], s_q[positive], color=colour[(row["format"], row["bits"])], ls=style, lw=0.9,
                      label=row["spec"])
        coarsest = max(rows, key=lambda r: r["predicted"]["noise_floor"])
        floor = coarsest["predicted"]["noise_floor"]
        if floor > 0:
            c = colour[(coarsest["format"], coarsest["bits"])]
            ax.axhline(floor, color=c, ls=(0, (4, 2)), lw=0.8)
            ax.annotate(f"noise floor, {coarsest['spec']} (predicted)", (1, floor), xytext=(2, 2),
                        textcoords="offset points", fontsize=6, color=c)
        ax.set_xlabel("rank $k$")
        ax.set_ylabel(r"singular value $\sigma_k$")
        V, d = report["shape"]
        ax.set_title(f"{report['tensor']} ({V}×{d})")
        # Values below 1e-3·σ_1 are beneath the accuracy that singular_values guarantees: cut the axis there.
        top = max([float(s_fp[0])] + [float(np.max(s)) for s in spectra["quantized"]])
        ax.set_ylim(1e-3 * top, 1.5 * top)
        ax.legend(ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0), handlelength=2.4)
        return save(fig, path)


def check_figure_path(path: str | Path, name: str = "path") -> Path:
    """Checks, before any work, that matplotlib can write a figure of ``path``'s type (png, pdf, svg, …)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    supported = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    if fmt not in supported:
        raise ValueError(f"{name}: cannot draw a figure of type {fmt or '(none)'!r} ({str(path)!r}); expected a file "
                         f"ending in one of {', '.join('.' + k for k in sorted(supported))}")
    return path


#: How each embedding of ``experiments.fig_zipf_to_powerlaw`` is named in the figure.
_EMBEDDING_TITLES = {"lemma31": "Lemma 3.1 embedding", "ppmi_svd": "PPMI-SVD embedding",
                     "trained": "trained embedding (bag LM)"}


def _corpus_label(ds: Any, i: int) -> str:
    kind, name = str(ds["kind"].values[i]), str(ds["corpus"].values[i])
    return f"Zipf $s$ = {float(ds['s_nominal'].values[i]):.1f}" if kind == "sampled" else name


def zipf_to_powerlaw(ds: Any, path: str | Path) -> list[Path]:
    """Zipf's law to power-law spectra (``experiments.fig_zipf_to_powerlaw``): one panel per quantity.

    (a) rank–frequency of the corpora drawn, with the fitted Zipf exponent ŝ in the legend; then one panel per
    embedding in ``ds.embedding`` (Lemma 3.1, PPMI-SVD, and any added later, e.g. a trained model's): σ_k on
    log–log axes with the fitted power law over its window (thin black) and the predicted slope ``k^(−ŝ/2)``
    dashed; Lemma 3.1 also marks ``k_head``; last, every fitted exponent against ŝ/2 with the line y = x.
    Which sampled corpora are drawn in the spectrum panels is ``s_show`` of the stored config (all by default);
    every corpus enters the last panel.
    """
    import json
    import math

    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    try:
        cfg = json.loads(ds.attrs.get("config", "{}")).get("config", {})
    except (TypeError, ValueError):
        cfg = {}
    kinds = np.asarray(ds["kind"].values).astype(str)
    s_nom = np.asarray(ds["s_nominal"].values, np.float64)
    s_hat = np.asarray(ds["zipf_s"].values, np.float64)
    show_s = cfg.get("s_show")
    shown = [i for i in range(kinds.size)
             if kinds[i] != "sampled" or show_s is None or any(abs(s_nom[i] - s) < 1e-9 for s in show_s)]
    embs = [str(e) for e in ds["embedding"].values]
    # sampled corpora from the front of the palette, real texts from its end (vermillion, purple, ...)
    colours = {i: LINE_COLOURS[j % 4] for j, i in enumerate(x for x in shown if kinds[x] == "sampled")}
    colours.update({i: LINE_COLOURS[4 + j % 3] for j, i in enumerate(x for x in shown if kinds[x] != "sampled")})
    n_panels = 2 + len(embs)
    ncols = 2 if n_panels == 4 else 3
    nrows = math.ceil(n_panels / ncols)
    with paper_style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(PAGE_WIDTH, 2.35 * nrows))
        axes = np.atleast_1d(axes).ravel()
        for ax in axes[n_panels:]:
            ax.set_visible(False)

        ax = axes[0]
        freq = np.asarray(ds["frequency"].values, np.float64)
        rank = np.asarray(ds["rank"].values)
        # log-spaced ranks (≤ ~800 per curve): the same picture on log axes, a fraction of the drawing time
        thin = np.zeros(rank.size, bool)
        thin[np.unique(np.geomspace(1, rank.size, 800).astype(int)) - 1] = True
        for i in shown:
            f = freq[i]
            keep = np.isfinite(f) & (f > 0) & thin
            ax.loglog(rank[keep], f[keep], color=colours[i], lw=1.0,
                      label=f"{_corpus_label(ds, i)}: $\\hat s$ = {s_hat[i]:.2f}")
        ax.set_xlabel("rank $k$")
        ax.set_ylabel("frequency $\\hat p_k$")
        ax.set_title("(a) rank–frequency", loc="left")
        ax.legend(loc="lower left")

        sigma = np.asarray(ds["sigma"].values, np.float64)
        k_sv = np.asarray(ds["sv_rank"].values)
        fit_a = np.asarray(ds["fit_a"].values, np.float64)
        fit_c = np.asarray(ds["fit_log_c"].values, np.float64)
        k_lo = np.asarray(ds["fit_k_lo"].values, np.float64)
        k_hi = np.asarray(ds["fit_k_hi"].values, np.float64)
        for j, emb in enumerate(embs):
            ax = axes[1 + j]
            for i in shown:
                s = sigma[i, j]
                keep = np.isfinite(s) & (s > 0)
                a = fit_a[i, j]
                ax.loglog(k_sv[keep], s[keep], color=colours[i], lw=1.0)
                if np.isfinite(a):
                    kk = np.array([k_lo[i, j], k_hi[i, j]])
                    ax.loglog(kk, np.exp(fit_c[i, j]) * kk ** (-a), color="black", lw=0.6, zorder=4)
                # prediction of Lemma 3.1: slope −ŝ/2, anchored at the first rank of the fit window
                k0 = int(k_lo[i, j]) if np.isfinite(k_lo[i, j]) else 2
                if keep[k0 - 1]:
                    kk = k_sv[keep][k_sv[keep] >= k0]
                    ax.loglog(kk, s[k0 - 1] * (kk / k0) ** (-s_hat[i] / 2), color=colours[i], ls=(0, (3, 2)),
                              lw=0.8)
                if emb == "lemma31" and "k_head" in ds:
                    kh = int(ds["k_head"].values[i])
                    if 1 <= kh <= s.size and keep[kh - 1]:
                        ax.plot(kh, s[kh - 1], "o", color=colours[i], ms=3.5, mec="black", mew=0.5, zorder=5)
            ax.set_xlabel("rank $k$")
            ax.set_ylabel("singular value $\\sigma_k$")
            ax.set_title(f"({'abcdef'[1 + j]}) {_EMBEDDING_TITLES.get(emb, emb)}", loc="left")
            # colours are the corpora of panel (a); this legend gives the line styles
            window = f"[{int(k_lo[shown[0], j])}, {int(k_hi[shown[0], j])}]" if emb != "lemma31" else \
                "[2, $k_{\\mathrm{head}}$]"
            handles = [Line2D([], [], color="grey", lw=1.0), Line2D([], [], color="grey", ls=(0, (3, 2)), lw=0.8),
                       Line2D([], [], color="black", lw=0.6)]
            labels = ["$\\sigma_k$ (colour: corpus, as in (a))", "predicted slope $k^{-\\hat s/2}$",
                      f"power-law fit over {window}"]
            if emb == "lemma31":
                handles.append(Line2D([], [], ls="", marker="o", color="grey", mec="black", mew=0.5, ms=3.5))
                labels.append("$k_{\\mathrm{head}}$ (end of head)")
            ax.legend(handles, labels, loc="lower left", ncol=1)

        ax = axes[1 + len(embs)]
        x = s_hat / 2
        lim = [0.0, max(0.1, float(np.nanmax(x)) * 1.1)]
        ax.plot(lim, lim, color="black", ls=(0, (4, 2)), lw=0.8, label="$y = x$ (Lemma 3.1)")
        markers = ("o", "^", "s", "D", "v")
        sampled = np.flatnonzero(kinds == "sampled")
        sampled = sampled[np.argsort(x[sampled])]
        texts = np.flatnonzero(kinds != "sampled")
        series = [(_EMBEDDING_TITLES.get(e, e).removesuffix(" embedding")
                   + (", ranks [2, $k_{\\mathrm{head}}$]" if e == "lemma31" else ""), fit_a[:, j], markers[j % 5],
                   "full", "-") for j, e in enumerate(embs)]
        if "lemma31_a_wide" in ds and "lemma31" in embs:
            series.insert(1, ("Lemma 3.1, ranks [2, $d/4$]", np.asarray(ds["lemma31_a_wide"].values, np.float64),
                              "o", "none", ":"))
        greys = ("#000000", "#000000", "#777777", "#8C6D31", "#009E73")  # the 4th (trained) avoids text colours
        for n, (label, y, m, fill, ls) in enumerate(series):
            c = greys[n % len(greys)]
            ax.plot(x[sampled], y[sampled], color=c, marker=m, ms=3.5, lw=0.8, ls=ls,
                    mfc=c if fill == "full" else "white", label=label)
            for i in texts:  # real texts: the marker of the series, filled with the corpus colour of panel (a)
                face = colours.get(i, "lightgrey") if fill == "full" else "white"
                ax.scatter(x[i], y[i], marker=m, s=24, facecolors=face, edgecolors=colours.get(i, "black"),
                           linewidths=0.9, zorder=5)
        for i in texts:
            ax.annotate(str(ds["corpus"].values[i]), (x[i], float(np.nanmin(fit_a[i]))), xytext=(5, 0),
                        textcoords="offset points", fontsize=5.5, color=colours.get(i, "black"), va="center")
        ax.set_xlim(lim)
        ax.set_ylim(0, 1.2 * max(lim[1], float(np.nanmax(fit_a))))
        ax.set_xlabel("predicted exponent $\\hat s/2$")
        ax.set_ylabel("fitted rank-decay exponent $a$")
        ax.set_title(f"({'abcdef'[1 + len(embs)]}) fitted vs predicted", loc="left")
        ax.legend(loc="upper left", title="lines: sampled corpora; colour: real text" if texts.size else None,
                  title_fontsize=6, alignment="left")
        fig.tight_layout()
        return save(fig, path)


#: Line styles of the predictions in ``limiting_density``: (label, colour, dashes).
_DENSITY_MODELS = {
    "ds_widrow": ("Dozier–Silverstein, Widrow noise (binned)", "#0072B2", (0, (4, 1.5))),
    "ds_bussgang": ("Dozier–Silverstein, Bussgang (binned)", "#D55E00", (0, (1.5, 1.2))),
    "mp": ("Marchenko–Pastur, noise only", "#E69F00", (0, (6, 2, 1.5, 2))),
}

_DENSITY_SHORT = {"ds_widrow": "DS, Widrow", "ds_bussgang": "DS, Bussgang", "mp": "MP"}


def limiting_density(ds: Any, path: str | Path) -> list[Path]:
    """Eigenvalue histograms of quantized matrices against the predicted densities (``fig_limiting_density``).

    One panel per bit width on log–log axes: the histogram of ``x = λ/V`` (log-spaced bins, density of x) in
    grey, each prediction in ``ds.model`` dashed with its L1 distance in the legend.
    """
    import json

    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    try:
        cfg = json.loads(ds.attrs.get("config", "{}"))
    except (TypeError, ValueError):
        cfg = {}
    gran = cfg.get("granularity", "")
    gran += str(cfg.get("group_size") or "") if gran == "group" else ""
    bits = [int(b) for b in ds["bits"].values]
    models = [str(m) for m in ds["model"].values]
    handles: dict[str, Any] = {}
    with paper_style():
        fig, axes = plt.subplots(1, len(bits), figsize=(PAGE_WIDTH, 2.45), squeeze=False)
        for n, (ax, b) in enumerate(zip(axes[0], bits, strict=True)):
            lo, hi = np.asarray(ds["bin_lo"].values[n], np.float64), np.asarray(ds["bin_hi"].values[n], np.float64)
            h = np.asarray(ds["hist_density"].values[n], np.float64)
            hist = ax.stairs(np.where(h > 0, h, np.nan), np.append(lo, hi[-1]), fill=True, color="#BBBBBB")
            handles.setdefault("hist", hist)
            grid = np.asarray(ds["x_grid"].values[n], np.float64)
            top = 0.0
            edges = np.append(lo, hi[-1])
            for j, m in enumerate(models):
                label, colour, dash = _DENSITY_MODELS.get(m, (m, LINE_COLOURS[j % len(LINE_COLOURS)], "--"))
                l1 = float(ds["l1"].values[n, j])
                if m == "mp":  # smooth: no outliers, so no islands for the grid to miss
                    y = np.asarray(ds["density"].values[n, j], np.float64)
                    ax.loglog(grid, np.where(y > 0, y, np.nan), color=colour, ls=dash, lw=1.0)
                else:  # binned like the histogram: the DS density of a power-law signal is a forest of islands
                    y = np.asarray(ds["pred_mass"].values[n, j], np.float64) / (hi - lo)
                    ax.stairs(np.where(y > 0, y, np.nan), edges, color=colour, ls=dash, lw=1.0, baseline=None)
                handles.setdefault(m, Line2D([], [], color=colour, ls=dash, lw=1.0, label=label))
                ax.plot([], [], ls="", label=f"{_DENSITY_SHORT.get(m, m)}: {l1:.2f}")
                top = max(top, float(np.nanmax(np.where(y > 0, y, np.nan), initial=0.0)))
            positive = h[h > 0]
            if positive.size:
                ax.set_ylim(positive.min() / 10, max(top, positive.max()) * 30)
            ax.set_xlim(min(lo[0], grid[0]), hi[-1])
            ax.set_xlabel("$x = \\lambda / V$")
            if n == 0:
                ax.set_ylabel("density $\\rho(x)$")
            regime = str(ds["regime"].values[n])
            ax.set_title(f"({'abcdef'[n]}) {b} bits, {gran} — {regime}", loc="left")
            ax.legend(loc="upper right", handlelength=0, handletextpad=0, title="L1 distance", title_fontsize=6.5)
        labels = {"hist": f"empirical histogram ({ds['sv_rank'].size} eigenvalues)"}
        fig.legend([handles[k] for k in handles], [labels.get(k, handles[k].get_label()) for k in handles],
                   loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, 0.0), handlelength=2.8)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        return save(fig, path)


def last_finite(values: Any) -> np.ndarray:
    """The last finite entry of each row of a (runs × steps) array; NaN for a row with none."""
    v = np.asarray(values, np.float64)
    out = np.full(v.shape[0], np.nan)
    for i, row in enumerate(v):
        finite = row[np.isfinite(row)]
        if finite.size:
            out[i] = finite[-1]
    return out


def embedding_in_use(ds: Any, name: str) -> Any:
    """Probe ``emb_<name>`` of the embedding a training run computes with: its quantized view where the run
    quantizes it (``emb_<name>_q``), the float32 table at full precision (where ``_q`` is NaN)."""
    q, fp = ds[f"emb_{name}_q"], ds[f"emb_{name}"]
    return q.where(np.isfinite(q), fp)


def _precision_colours(precisions: list[str]) -> dict[str, str]:
    """fp32 in black, then the bit widths from high to low in palette order."""
    low = sorted((p for p in precisions if p != "fp32"), key=int, reverse=True)
    out = {"fp32": "#000000"}
    out.update({p: LINE_COLOURS[i % len(LINE_COLOURS)] for i, p in enumerate(low)})
    return out


def training_collapse(ds: Any, path: str | Path) -> list[Path]:
    """Training curves per precision (mean over seeds, first corpus), and final loss against precision.

    ``ds`` is the dataset of ``experiments.fig_training_collapse`` (dims ``run`` × ``step``). Panels: held-out
    loss; stable rank and rank-decay exponent of the embedding the model computes with (its quantized view);
    hidden-state effective rank and anisotropy (mean pairwise cosine); final held-out loss against bits for
    every corpus, with the scale-group / rounding variants as markers.
    """
    import matplotlib.pyplot as plt

    axis = np.asarray(ds["axis"].values).astype(str)
    corpus = np.asarray(ds["corpus"].values).astype(str)
    precision = np.asarray(ds["precision"].values).astype(str)
    first = corpus[axis == "bits"][0]
    order = list(dict.fromkeys(precision[(axis == "bits") & (corpus == first)]))
    colours = _precision_colours(order)
    steps = np.asarray(ds["step"].values)
    curves = {
        "held-out loss (nats)": ds["eval_loss"],
        "embedding stable rank $r_s$": embedding_in_use(ds, "stable_rank"),
        "embedding rank exponent $a$": embedding_in_use(ds, "rank_exponent"),
        "hidden effective rank": ds["hidden_effective_rank"],
        "hidden anisotropy (mean cos)": ds["hidden_anisotropy"],
    }
    with paper_style():
        fig, axes = plt.subplots(2, 3, figsize=(PAGE_WIDTH, 4.0))
        for ax, (ylabel, var) in zip(axes.flat, curves.items(), strict=False):
            values = np.asarray(var.values, np.float64)
            for p in order:
                sel = (axis == "bits") & (corpus == first) & (precision == p)
                v = values[sel]
                keep = np.isfinite(v).any(axis=0)
                if not keep.any():
                    continue
                with np.errstate(all="ignore"):
                    mean = np.nanmean(v[:, keep], axis=0)
                ax.plot(steps[keep], mean, color=colours[p], marker="o", ms=2.0,
                        label="fp32" if p == "fp32" else f"int{p}")
            ax.set_xlabel("step")
            ax.set_ylabel(ylabel)
        axes.flat[0].legend(title=f"{first} corpus", ncol=2, title_fontsize=6.5)
        ax = axes.flat[5]
        final = last_finite(ds["eval_loss"].values)
        rows = [{"axis": axis[i], "corpus": corpus[i], "precision": precision[i], "eval_loss": final[i],
                 "granularity": str(ds["granularity"].values[i]), "rounding": str(ds["rounding"].values[i])}
                for i in range(final.size)]
        markers = ("o", "s", "^", "D")
        # the x axis: every width of the main axis and of the variants (fp32 first, then falling bit widths)
        xorder = sorted(dict.fromkeys([*order, *(r["precision"] for r in rows if r["axis"] == "scales")]),
                       key=lambda p: (0, 0) if p == "fp32" else ((1, -int(p)) if p.isdigit() else (2, 0)))
        for j, c in enumerate(dict.fromkeys(r["corpus"] for r in rows if r["axis"] == "bits")):
            main = [r for r in rows if r["axis"] == "bits" and r["corpus"] == c]
            xs = [p for p in xorder if any(r["precision"] == p for r in main)]
            ys = [np.nanmean([r["eval_loss"] for r in main if r["precision"] == p]) for p in xs]
            ax.plot([xorder.index(p) for p in xs], ys, color=LINE_COLOURS[j], marker=markers[j % 4], ms=3, label=c)
        ax.set_xticks(range(len(xorder)), xorder)
        variants = [r for r in rows if r["axis"] == "scales"]
        pos = {p: i for i, p in enumerate(xorder)}
        shapes = {"tensor": "o", "row": "s", "column": "v"}
        for r in variants:
            if r["precision"] not in pos:
                continue
            m = shapes.get(r["granularity"], "D")
            face = "none" if r["rounding"] == "stochastic" else "#555555"
            ax.scatter(pos[r["precision"]] + 0.12, r["eval_loss"], marker=m, s=12, facecolors=face,
                       edgecolors="#555555", linewidths=0.7, zorder=4)
        if variants:
            from matplotlib.lines import Line2D

            handles = [Line2D([], [], ls="", marker=shapes.get(g, "D"), color="#555555", ms=3.5, label=g)
                       for g in dict.fromkeys(r["granularity"] for r in variants)]
            handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="#555555", ms=3.5, label="stochastic"))
            leg = ax.legend(loc="upper left")
            ax.add_artist(leg)
            widths = "/".join(dict.fromkeys(r["precision"] for r in variants))
            ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=5.5, frameon=False,
                      title=f"{widths}-bit variants",
                      title_fontsize=5.5)
        else:
            ax.legend(loc="upper left")
        ax.set_xlabel("weight / embedding precision (bits)")
        ax.set_ylabel("final held-out loss (nats)")
        for letter, a in zip("abcdef", axes.flat, strict=True):
            a.set_title(f"({letter})", loc="left", fontsize=8)
        fig.tight_layout()
        return save(fig, path)


# ---------------------------------------------------------------------------------------------------------
# fig_noise_floor and fig_stable_rank_vs_bits
# ---------------------------------------------------------------------------------------------------------

_GRAN_MARKERS = {"tensor": "o", "row": "s", "column": "v", "group": "^"}


def _labels(ds: Any, name: str) -> np.ndarray:
    """A label coordinate of a sweep (strings come back from netCDF as objects)."""
    return np.asarray(ds[name].values).astype(str)


def _bit_colours(bits: Any) -> dict[int, str]:
    order = sorted({int(b) for b in bits}, reverse=True)
    return {b: LINE_COLOURS[i % len(LINE_COLOURS)] for i, b in enumerate(order)}


def _gran_marker(label: str) -> str:
    if label.startswith("group"):
        return {"group32": "^", "group64": "D", "group128": "D"}.get(label, "^")
    return _GRAN_MARKERS.get(label, "o")


def noise_floor(ds: Any, path: str | Path) -> list[Path]:
    """Figure ``fig_noise_floor``: (a) spectra at b bits with the predicted spectrum, noise floor and threshold;
    (b) measured against predicted truncation index k*.

    ``ds`` is the dataset of :mod:`experiments.fig_noise_floor` (a ``point`` dimension of settings with the
    spectra ``sigma_fp``, ``sigma_measured``, ``sigma_predicted`` along ``rank``), read back from netCDF or not.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    bits_all = np.asarray(ds["bits"].values).astype(int)
    colour = _bit_colours(bits_all)
    idx = np.flatnonzero(np.asarray(ds["spectrum_panel"].values).astype(bool))
    idx = idx[np.argsort(-bits_all[idx], kind="stable")]
    first = ds.isel(point=int(idx[0]))
    V, d, a = int(first["V"]), int(first["d"]), float(first["a"])
    gran = str(first["granularity"].values)
    with paper_style():
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(PAGE_WIDTH, 2.8), gridspec_kw={"width_ratios": [1.45, 1.0]})
        s_fp = np.asarray(first["sigma_fp"].values, np.float64)
        s_fp = s_fp[np.isfinite(s_fp)]
        r = s_fp.size
        k = np.arange(1, r + 1)
        ax.loglog(k, s_fp, color="black", lw=1.6, zorder=6)
        top = float(s_fp[0])
        bottom = 0.95e-3 * top  # singular_values guarantees accuracy down to 1e-3·σ_1 only
        for i in idx:
            p = ds.isel(point=int(i))
            c = colour[int(p["bits"])]
            s_q = np.asarray(p["sigma_measured"].values, np.float64)[:r]
            s_p = np.asarray(p["sigma_predicted"].values, np.float64)[:r]
            pos = s_q > 0
            ax.loglog(k[pos], s_q[pos], color=c, lw=1.0, zorder=4)
            ax.loglog(k[s_p > 0], s_p[s_p > 0], color=c, lw=0.9, ls=(0, (3, 1.5)), zorder=5, alpha=0.9)
            floor, kp = float(p["noise_floor"]), int(p["k_predicted"])
            thr = float(p["threshold"]) / max(float(p["gain_predicted"]), 1e-30)  # in units of σ_k(W)
            if floor > bottom:
                ax.axhline(floor, color=c, lw=0.7, ls=(0, (1, 1.5)), zorder=2)
            if 0 < kp < r and thr > bottom:
                ax.plot([kp], [thr], marker="v", ms=4.5, color=c, mec="black", mew=0.4, zorder=7, ls="none")
            top = max(top, float(np.nanmax(s_q)))
        ax.set_ylim(bottom, 1.6 * top)
        ax.set_xlim(1, r * 1.05)
        ax.set_xlabel("rank $k$")
        ax.set_ylabel(r"singular value $\sigma_k$")
        ax.set_title(f"(a) {V}×{d}, $\\sigma_k = k^{{-{a:g}}}$, per-{gran} round-to-nearest", loc="left")
        style = [
            Line2D([], [], color="black", lw=1.6, label="full precision $W$"),
            Line2D([], [], color="0.35", lw=1.0, label=r"measured $\sigma_k(Q_b(W))$"),
            Line2D([], [], color="0.35", lw=0.9, ls=(0, (3, 1.5)), label="predicted spectrum"),
            Line2D([], [], color="0.35", lw=0.7, ls=(0, (1, 1.5)), label=r"noise floor $s(\sqrt{V}+\sqrt{d})$"),
            Line2D([], [], color="0.35", marker="v", mec="black", mew=0.4, ls="none", ms=4.5,
                   label=r"threshold $\theta_c = s(Vd)^{1/4}$ at predicted $k^*$"),
        ]
        regimes = _labels(ds, "regime")
        bit_handles = [Line2D([], [], color=colour[int(bits_all[i])], lw=1.4,
                              label=f"{int(bits_all[i])} bits" + (" (dead zone)" if regimes[i] == "dead-zone" else ""))
                       for i in idx]
        ax.legend(handles=bit_handles, loc="upper right", fontsize=6, ncol=2, handlelength=1.4,
                  columnspacing=0.8)
        fig.legend(handles=style, loc="lower center", ncol=len(style), bbox_to_anchor=(0.5, -0.01), fontsize=6,
                   handlelength=2.2, columnspacing=1.0)

        # (b) measured vs predicted k*
        k_m = np.maximum(np.asarray(ds["k_measured"].values, float), 0.8)
        k_p = np.maximum(np.asarray(ds["k_predicted"].values, float), 0.8)
        grans = _labels(ds, "granularity")
        regime = _labels(ds, "regime")
        rounding = _labels(ds, "rounding")
        for i in range(k_m.size):
            c = colour[int(bits_all[i])]
            dead = regime[i] == "dead-zone"
            bx.plot([k_p[i]], [k_m[i]], marker=_gran_marker(grans[i]), ms=3.6 if rounding[i] == "nearest" else 3.0,
                    mfc="white" if dead else c, mec=c, mew=0.9, ls="none", alpha=0.9, zorder=4)
        k_s = np.maximum(np.asarray(ds["k_sketch"].values, float), 0.8) if "k_sketch" in ds else None
        if k_s is not None:  # the sketch model: k* counted on the predicted Dozier–Silverstein spectrum
            for i in range(k_m.size):
                bx.plot([k_s[i]], [k_m[i]], marker="x", ms=3.0, color=colour[int(bits_all[i])], mew=0.7,
                        ls="none", alpha=0.9, zorder=5)
        k_r = np.asarray(ds["k_profile"].values, float) if "k_profile" in ds else None
        if k_r is not None:  # dead-zone points: the residual-profile law's count (zipfrmt.variance_profile)
            for i in np.flatnonzero(np.isfinite(k_r)):
                bx.plot([max(k_r[i], 0.8)], [k_m[i]], marker="+", ms=4.0, color=colour[int(bits_all[i])], mew=0.8,
                        ls="none", alpha=0.95, zorder=6)
        lo = 0.7
        hi = 1.4 * max(float(k_m.max()), float(k_p.max()), 0.0 if k_s is None else float(k_s.max()),
                       0.0 if k_r is None or not np.isfinite(k_r).any() else float(np.nanmax(k_r)))
        bx.plot([lo, hi], [lo, hi], color="black", lw=0.7, zorder=2)
        bx.annotate("$y = x$", (4 * lo, 4 * lo), xytext=(-3, 3), textcoords="offset points", fontsize=6,
                    ha="right", va="bottom", rotation=45, rotation_mode="anchor")
        bx.set_xscale("log")
        bx.set_yscale("log")
        bx.set_xlim(lo, hi)
        bx.set_ylim(lo, hi)
        bx.set_aspect("equal")
        bx.set_xlabel(r"predicted $k^*$: $\#\{k: g\sigma_k > \theta_c\}$ or the DS law's count")
        bx.set_ylabel(r"measured $k^* = \#\{k: \sigma_k(Q) > s(\sqrt{V}+\sqrt{d})\}$")
        bx.set_title("(b) truncation index", loc="left")
        seen = list(dict.fromkeys(grans))
        handles = [Line2D([], [], marker=_gran_marker(g), color="0.3", ls="none", ms=3.6, label=g)
                   for g in seen]
        handles.append(Line2D([], [], marker="o", mfc="white", mec="0.3", ls="none", ms=3.6,
                              label="dead zone"))
        if k_s is not None:
            handles.append(Line2D([], [], marker="x", color="0.3", mew=0.7, ls="none", ms=3.0,
                                  label="sketch: DS count"))
        if k_r is not None and np.isfinite(k_r).any():
            handles.append(Line2D([], [], marker="+", color="0.3", mew=0.8, ls="none", ms=4.0,
                                  label="dead zone: residual profile"))
        bx.legend(handles=handles, loc="lower right", fontsize=6, handletextpad=0.3, borderaxespad=0.2,
                  title="colour: bits (a)", title_fontsize=6)
        fig.tight_layout(rect=(0, 0.06, 1, 1), w_pad=1.2)
        return save(fig, path)


def _regime_spans(bits: np.ndarray, dead: np.ndarray) -> list[tuple[float, float]]:
    """Bit ranges (±½ around each integer bit width) where ``dead`` holds, merged when adjacent."""
    spans: list[tuple[float, float]] = []
    for b in sorted(int(x) for x in bits[dead]):
        lo, hi = b - 0.5, b + 0.5
        if spans and abs(spans[-1][1] - lo) < 1e-9:
            spans[-1] = (spans[-1][0], hi)
        else:
            spans.append((lo, hi))
    return spans


def stable_rank_vs_bits(ds: Any, path: str | Path) -> list[Path]:
    """Figure ``fig_stable_rank_vs_bits``: measured and predicted stable rank (top) and rank-decay exponent
    (bottom) against bits, one column per scale group, colour = rounding, dead-zone bit ranges shaded.

    ``ds`` is the dataset of :mod:`experiments.fig_stable_rank_vs_bits` (a ``point`` dimension of settings);
    values are averaged over seeds. Filled markers are Widrow-regime points, open ones dead-zone points; the
    prediction (dashed) is the regime's model, additive or Bussgang; where the dataset has it, the sketch model's
    stable rank (:func:`zipfrmt.rmt.predict_from_sketch`) is drawn dotted. Values beyond the axes are drawn at
    its edge as arrows with the value written beside them.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    grans = list(dict.fromkeys(_labels(ds, "granularity")))
    roundings = list(dict.fromkeys(_labels(ds, "rounding")))
    rcolour = {"nearest": "#0072B2", "stochastic": "#D55E00"}
    g_all, r_all = _labels(ds, "granularity"), _labels(ds, "rounding")
    bits_all = np.asarray(ds["bits"].values).astype(int)
    bits = sorted(set(bits_all.tolist()))
    regime = _labels(ds, "regime")

    def series(name: str, g: str, r: str) -> np.ndarray:
        v = np.asarray(ds[name].values, float)
        out = []
        for b in bits:
            sel = v[(g_all == g) & (r_all == r) & (bits_all == b)]
            sel = sel[np.isfinite(sel)]
            out.append(float(sel.mean()) if sel.size else float("nan"))  # NaN: no finite value (a model not run)
        return np.array(out)

    def dead_frac(g: str, r: str) -> np.ndarray:
        return np.array([np.mean(regime[(g_all == g) & (r_all == r) & (bits_all == b)] == "dead-zone")
                         for b in bits])

    quantities = (("stable_rank", r"stable rank $r_s$", "log"), ("exponent", r"rank exponent $a$", "linear"))
    b_arr = np.asarray(bits, float)
    with paper_style():
        fig, axes = plt.subplots(2, len(grans), figsize=(PAGE_WIDTH, 3.9), sharex=True, sharey="row",
                                 squeeze=False)
        for row, (q, ylabel, scale) in enumerate(quantities):
            fp = float(np.nanmean(np.asarray(ds[f"{q}_fp"].values, float)))
            meas_all = np.asarray(ds[f"{q}_measured"].values, float)
            pred_all = np.asarray(ds[f"{q}_predicted"].values, float)
            if scale == "log":
                vals = np.concatenate([meas_all, pred_all, [fp]])
                vals = vals[np.isfinite(vals) & (vals > 0)]
                ylim = (0.8 * min(vals.min(), fp), 1.35 * vals.max())
            else:  # rank exponent: a few nonzero σ give absurd fits; keep the axis on the meaningful range
                ylim = (0.0, 1.45 * fp)
            for col, g in enumerate(grans):
                ax = axes[row, col]
                near = "nearest" if "nearest" in roundings else roundings[0]
                for lo, hi in _regime_spans(b_arr, dead_frac(g, near) > 0.5):
                    ax.axvspan(lo, hi, color="0.88", lw=0, zorder=0)
                    if row == 0:
                        ax.text(0.5 * (lo + hi), 0.97, "dead\nzone", transform=ax.get_xaxis_transform(),
                                ha="center", va="top", fontsize=5.5, color="0.35")
                ax.axhline(fp, color="black", lw=0.8, ls=(0, (1, 1.5)), zorder=1)
                for r in roundings:
                    c = rcolour.get(r, LINE_COLOURS[0])
                    m, p = series(f"{q}_measured", g, r), series(f"{q}_predicted", g, r)
                    dead = dead_frac(g, r) > 0.5
                    ax.plot(b_arr, np.clip(m, *ylim), color=c, lw=1.0, zorder=3)
                    ax.plot(b_arr, np.clip(p, *ylim), color=c, lw=1.0, ls=(0, (3, 1.5)), zorder=3)
                    if f"{q}_sketch" in ds and q == "stable_rank":
                        ax.plot(b_arr, np.clip(series(f"{q}_sketch", g, r), *ylim), color=c, lw=1.3,
                                ls=(0, (0.8, 1.2)), zorder=5)
                    if f"{q}_profile" in ds and q == "stable_rank":  # dead-zone points only (NaN elsewhere)
                        pr = series(f"{q}_profile", g, r)
                        ok = np.isfinite(pr)
                        ax.plot(b_arr[ok], np.clip(pr[ok], *ylim), marker="+", ms=4.5, mew=0.9, color=c,
                                ls="none", zorder=6)
                    for x, y, dz in zip(b_arr, m, dead, strict=True):
                        if not np.isfinite(y):
                            continue
                        inside = ylim[0] <= y <= ylim[1]
                        ax.plot([x], [np.clip(y, *ylim)], marker="o" if inside else ("^" if y > ylim[1] else "v"),
                                ms=3.5, mfc="white" if dz else c, mec=c, mew=0.9, ls="none", zorder=4,
                                clip_on=False)
                        if not inside:
                            ax.annotate(f"{y:.3g}", (x, ylim[1] if y > ylim[1] else ylim[0]), xytext=(3, -6),
                                        textcoords="offset points", fontsize=5.5, color=c)
                    for x, y in zip(b_arr, p, strict=True):
                        if np.isfinite(y) and not ylim[0] <= y <= ylim[1]:
                            ax.plot([x], [np.clip(y, *ylim)], marker="^" if y > ylim[1] else "v", ms=3.2,
                                    mfc="none", mec=c, mew=0.7, ls="none", zorder=4, clip_on=False)
                            ax.annotate(f"pred. {y:.3g}", (x, ylim[1] if y > ylim[1] else ylim[0]),
                                        xytext=(3, -12), textcoords="offset points", fontsize=5.5, color=c)
                ax.set_yscale(scale)
                ax.set_ylim(*ylim)
                if scale == "log":
                    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

                    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
                    ax.yaxis.set_minor_formatter(NullFormatter())
                ax.set_xlim(b_arr.max() + 0.5, b_arr.min() - 0.5)  # fewer bits to the right
                ax.set_xticks(bits)
                if row == 0:
                    ax.set_title(f"per {g}", loc="center")
                if col == 0:
                    ax.set_ylabel(ylabel)
                if row == len(quantities) - 1:
                    ax.set_xlabel("bits $b$")
        handles = [Line2D([], [], color=rcolour.get(r, LINE_COLOURS[0]), lw=1.0, marker="o", ms=3.5,
                          label=f"{r} rounding, measured") for r in roundings]
        handles += [Line2D([], [], color="0.3", lw=1.0, ls=(0, (3, 1.5)), label="predicted (RMT)")]
        if "stable_rank_sketch" in ds:
            handles.append(Line2D([], [], color="0.3", lw=1.3, ls=(0, (0.8, 1.2)), label="predicted (sketch)"))
        if "stable_rank_profile" in ds and np.isfinite(np.asarray(ds["stable_rank_profile"].values, float)).any():
            handles.append(Line2D([], [], color="0.3", marker="+", ms=4.5, mew=0.9, ls="none",
                                  label="residual profile (dead zone)"))
        handles += [Line2D([], [], color="black", lw=0.8, ls=(0, (1, 1.5)), label="full precision"),
                    Line2D([], [], color="0.3", marker="o", mfc="white", ls="none", ms=3.5,
                           label="open: dead-zone point"),
                    Patch(color="0.88", label="dead zone (nearest)")]
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, -0.01),
                   fontsize=5.5, handlelength=2.0, columnspacing=0.8)
        fig.tight_layout(rect=(0, 0.05, 1, 1), h_pad=0.6, w_pad=0.6)
        return save(fig, path)


_MITIGATION_STYLE = {"rtn": ("RTN", LINE_COLOURS[0]), "specquant": ("SpecQuant", LINE_COLOURS[1]),
                     "s2d": ("S2D + RTN", LINE_COLOURS[2])}


def mitigations(ds: Any, path: str | Path) -> list[Path]:
    """RTN vs SpecQuant vs S2D (``experiments.fig_mitigations``), eight panels.

    Top row: stable rank and truncation index ``k*`` against bits for the power-law matrix and the trained LM
    embedding, measured (solid) beside the RMT prediction (dashed), full precision dotted. Bottom row: relative
    error of both matrices; post-training W·A4 perplexity of the LM per method; low-bit training with S2D off
    (solid) and on (dashed): embedding stable rank and held-out loss over steps.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    bits = np.asarray(ds["bits"].values).astype(int)
    methods = [str(m) for m in ds["mitigation"].values]
    matrices = [str(m) for m in ds["matrix"].values]
    titles = {"power_law": "power-law matrix", "lm_embedding": "LM embedding"}
    pred_ls, fp_ls = (0, (3, 1.5)), (0, (1, 1.5))

    def bits_axis(ax: Any) -> None:
        ax.set_xlim(bits.max() + 0.3, bits.min() - 0.3)  # fewer bits to the right
        ax.set_xticks(sorted(set(bits.tolist())))
        ax.set_xlabel("bits $b$")

    with paper_style():
        fig, axes = plt.subplots(2, 4, figsize=(PAGE_WIDTH, 4.3))
        letters = iter("abcdefgh")
        for col, (var, label) in enumerate((("stable_rank", "stable rank $r_s$"),
                                            ("truncation_index", "truncation index $k^*$"))):
            for j, mat in enumerate(matrices):
                ax = axes[0, 2 * col + j]
                for meth in methods:
                    name, c = _MITIGATION_STYLE.get(meth, (meth, "grey"))
                    meas = np.asarray(ds[var].sel(matrix=mat, mitigation=meth).values, np.float64)
                    pred = np.asarray(ds[f"predicted_{var}"].sel(matrix=mat, mitigation=meth).values, np.float64)
                    ax.plot(bits, meas, color=c, marker="o", ms=3, lw=1.1)
                    ax.plot(bits, pred, color=c, ls=pred_ls, lw=0.9, marker="x", ms=3)
                if var == "stable_rank":
                    ax.axhline(float(ds["fp_stable_rank"].sel(matrix=mat)), color="black", ls=fp_ls, lw=0.8)
                    if "s2d" in methods:
                        ax.axhline(float(ds["s2d_fp_stable_rank"].sel(matrix=mat)), color=_MITIGATION_STYLE["s2d"][1],
                                   ls=fp_ls, lw=0.8)
                else:
                    ax.set_ylim(bottom=0)
                bits_axis(ax)
                ax.set_ylabel(label)
                ax.set_title(f"({next(letters)}) {titles.get(mat, mat)}", loc="left")

        ax = axes[1, 0]
        mstyle = {"power_law": ("o", "-"), "lm_embedding": ("s", (0, (4, 1, 1, 1)))}
        for mat in matrices:
            mk, ls = mstyle.get(mat, ("^", "-"))
            for meth in methods:
                c = _MITIGATION_STYLE.get(meth, (meth, "grey"))[1]
                err = np.asarray(ds["rel_error"].sel(matrix=mat, mitigation=meth).values, np.float64)
                ax.plot(bits, err, color=c, marker=mk, ms=3, ls=ls, lw=1.0)
        ax.set_yscale("log")
        bits_axis(ax)
        ax.set_ylabel(r"relative error $\|W_q - W\|_F / \|W\|_F$")
        ax.set_title(f"({next(letters)}) error", loc="left")
        ax.legend(handles=[Line2D([], [], color="0.3", marker=mstyle[m][0], ms=3, ls=mstyle[m][1], lw=1.0,
                                  label=titles.get(m, m)) for m in matrices if m in mstyle], loc="upper left")

        ax = axes[1, 1]
        settings = [str(s) for s in ds["ptq_setting"].values]
        pmethods = [str(m) for m in ds["ptq_method"].values]
        width = 0.8 / len(pmethods)
        x = np.arange(len(settings))
        for i, meth in enumerate(pmethods):
            name, c = _MITIGATION_STYLE.get(meth, (meth, "grey"))
            ppl = np.asarray(ds["ptq_perplexity"].sel(ptq_method=meth).values, np.float64)
            ax.bar(x + (i - (len(pmethods) - 1) / 2) * width, ppl, width * 0.9, color=c, label=name)
        fp_ppl = float(ds["ptq_fp_perplexity"].sel(ptq_method=pmethods[0]))
        ax.axhline(fp_ppl, color="black", ls=fp_ls, lw=0.8)
        all_ppl = np.asarray(ds["ptq_perplexity"].values, np.float64)
        finite = all_ppl[np.isfinite(all_ppl)]
        if finite.size:
            lo, hi = min(fp_ppl, finite.min()), max(fp_ppl, finite.max())
            ax.set_ylim(max(0.0, lo - 0.15 * (hi - lo + 1e-9) - 0.02 * lo), hi + 0.1 * (hi - lo + 1e-9) + 0.01 * hi)
        ax.set_xticks(x, settings)
        ax.set_ylabel("held-out perplexity")
        ax.set_title(f"({next(letters)}) LM post-training quant.", loc="left")

        precision = np.asarray(ds["train_precision"].values).astype(str)
        s2d_on = np.asarray(ds["train_s2d"].values).astype(int)
        low = sorted({p for p in precision if p != "fp32"}, key=int, reverse=True)
        colours = {"fp32": "#000000"} | {p: LINE_COLOURS[4 + i % 3] for i, p in enumerate(low)}  # not the methods'
        steps = np.asarray(ds["step"].values)
        after_init = steps > 0  # step 0 is the initialisation (r_s ~ d): it would squash the training curves
        for ax, var, label in ((axes[1, 2], "train_emb_stable_rank", "embedding stable rank $r_s$"),
                               (axes[1, 3], "train_eval_loss", "held-out loss (nats)")):
            values = np.asarray(ds[var].values, np.float64)
            for i in range(values.shape[0]):
                keep = np.isfinite(values[i]) & after_init
                ax.plot(steps[keep], values[i][keep], color=colours[precision[i]], lw=1.0,
                        ls=pred_ls if s2d_on[i] else "-", marker="." if keep.sum() < 12 else None, ms=3)
            ax.set_xlabel("training step")
            ax.set_ylabel(label)
            if var == "train_emb_stable_rank":
                ax.set_yscale("log")
                from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
                ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"({next(letters)}) training, S2D off/on", loc="left")
        handles = [Line2D([], [], color=colours[p], lw=1.0, label="fp32" if p == "fp32" else f"int{p}")
                   for p in colours]
        handles += [Line2D([], [], color="0.3", lw=1.0, label="S2D off"),
                    Line2D([], [], color="0.3", lw=1.0, ls=pred_ls, label="S2D on")]
        axes[1, 3].legend(handles=handles, loc="upper right", ncol=1, handlelength=1.8)

        handles = [Line2D([], [], color=_MITIGATION_STYLE[m][1], lw=4, label=_MITIGATION_STYLE[m][0])
                   for m in methods if m in _MITIGATION_STYLE]
        handles += [Line2D([], [], color="0.3", lw=1.1, marker="o", ms=3, label="measured"),
                    Line2D([], [], color="0.3", lw=0.9, ls=pred_ls, marker="x", ms=3, label="RMT prediction"),
                    Line2D([], [], color="black", lw=0.8, ls=fp_ls, label="full precision (green: S2D'd)")]
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, -0.01),
                   fontsize=6.5, handlelength=2.2, columnspacing=1.2)
        fig.tight_layout(rect=(0, 0.045, 1, 1), h_pad=0.8, w_pad=0.5)
        return save(fig, path)


_MECHANISM_ORDER = ("forward", "embed", "actgrad", "wgrad", "master", "opt")
_CONTROL_MARKERS = {"none": "o", "noise": "s", "stochastic": "^", "hadamard": "D", "frozen": "v"}


def _mechanism_colours(mechanisms: list[str]) -> dict[str, str]:
    order = [m for m in _MECHANISM_ORDER if m in mechanisms] + [m for m in mechanisms if m not in _MECHANISM_ORDER]
    return {m: LINE_COLOURS[i % len(LINE_COLOURS)] for i, m in enumerate(order)}


def collapse_map(ds: Any, path: str | Path) -> list[Path]:
    """The collapse map of ``experiments.fig_collapse_map`` (dims ``run`` × ``step``).

    (a) per corpus, the mean final loss gap to fp32 over seeds for each mechanism × precision (no control, the
    first learning rate; ∞ where a seed diverged; colours saturate at 2 nats), a cell marked C where a seed
    collapsed and D where one diverged; (b) dose–response,
    gap against the fraction of embedding singular values below the noise edge, one point per run, mechanism
    by colour, controls hollow with their own marker; (c–e) for the failing (mechanism, precision) cells, the
    loss gap, the stored embedding's stable-rank ratio and the centred hidden effective-rank ratio to fp32 over
    training (mean over seeds) — one curve per failing mechanism (``ds["fails"]`` when the experiment gives it),
    its cell with the most failing seeds and then the largest gap — each curve's departure marked. Panel (b)
    shows every run at every learning rate, on a symmetric-log axis (linear within ±1 nat) when the gaps reach
    beyond 2 nats.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    lab = {k: np.asarray(ds[k].values) for k in ("corpus", "mechanism", "precision", "control", "lr", "seed")}
    lab = {k: v.astype(str) if v.dtype.kind in "OUS" else v for k, v in lab.items()}
    gap = np.asarray(ds["gap"].values, np.float64)
    status = np.asarray(ds["status"].values).astype(str)
    mechs = [m for m in _MECHANISM_ORDER if m in set(lab["mechanism"])]
    colours = _mechanism_colours(mechs)
    precs = list(dict.fromkeys(lab["precision"][lab["control"] == "none"]))
    corpora = list(dict.fromkeys(lab["corpus"]))
    lr0 = lab["lr"][0]
    steps = np.asarray(ds["step"].values)
    # The experiment says which runs fail (``fails``); without it: a verdict or a gap above 0.1 nats.
    fails = (np.asarray(ds["fails"].values, bool) if "fails" in ds else
             ~(gap <= 0.1) | np.isin(status, ["collapsed", "diverged"]))
    finite_gaps = gap[np.isfinite(gap)]
    # The colour scale saturates at 2 nats (diverged runs are far beyond): the cells' text gives the value.
    top = min(2.0, max(0.5, float(np.max(np.abs(finite_gaps))) if finite_gaps.size else 0.5))
    with paper_style():
        fig = plt.figure(figsize=(PAGE_WIDTH, 5.2))
        grid = fig.add_gridspec(2, 3, hspace=0.55, wspace=0.5)
        upper = grid[0, :].subgridspec(1, 2, width_ratios=[2.0, 1.0], wspace=0.6)
        maps = upper[0, 0].subgridspec(1, len(corpora) + 1, wspace=0.5, width_ratios=[1.0] * len(corpora) + [0.06])
        for ci, corpus in enumerate(corpora):
            ax = fig.add_subplot(maps[0, ci])
            cell = np.full((len(mechs), len(precs)), np.nan)
            marks = np.full(cell.shape, "", dtype=object)
            for i, m in enumerate(mechs):
                for j, p in enumerate(precs):
                    sel = ((lab["corpus"] == corpus) & (lab["mechanism"] == m) & (lab["precision"] == p)
                           & (lab["control"] == "none") & (lab["lr"] == lr0))
                    if not sel.any():
                        continue
                    g = gap[sel]
                    cell[i, j] = np.inf if np.isinf(g).any() else np.nanmean(g)
                    st = set(status[sel])
                    marks[i, j] = "D" if "diverged" in st else ("C" if "collapsed" in st else "")
            im = ax.imshow(np.clip(cell, -top, top), cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -top, top),
                           aspect="auto")
            for i in range(len(mechs)):
                for j in range(len(precs)):
                    v = cell[i, j]
                    if np.isnan(v):
                        continue
                    text = "∞" if np.isinf(v) else (f"{v:.2f}" if abs(v) < 10 else f"{v:.0f}")
                    ax.text(j, i, text + (f"\n{marks[i, j]}" if marks[i, j] else ""), ha="center", va="center",
                            fontsize=5, color="white" if abs(v) > 0.7 * top else "black")
            ax.set_xticks(range(len(precs)), [p if not p.isdigit() else f"int{p}" for p in precs])
            ax.set_yticks(range(len(mechs)), mechs if ci == 0 else [])
            ax.set_title(f"(a) {corpus}" if ci == 0 else corpus)
            ax.spines[:].set_visible(False)
        fig.colorbar(im, cax=fig.add_subplot(maps[0, -1]), extend="both", label="gap (nats)")
        fig.axes[0].set_xlabel(f"lr {float(lr0):g}; C: a seed collapsed, D: a seed diverged", loc="left")

        ax = fig.add_subplot(upper[0, 1])
        dose = np.asarray(ds["below_edge"].values, np.float64)
        diverged_at = 1.12 * max(0.5, float(np.max(finite_gaps)) if finite_gaps.size else 0.5)
        if not np.isfinite(gap).all():
            ax.axhline(diverged_at, color="0.6", lw=0.5, ls=":")
            ax.text(1.0, diverged_at, "diverged", transform=ax.get_yaxis_transform(), ha="right", va="bottom",
                    fontsize=5.5, color="0.4")
        for ctrl, marker in _CONTROL_MARKERS.items():
            for m in mechs:
                sel = (lab["mechanism"] == m) & (lab["control"] == ctrl) & np.isfinite(dose)
                if not sel.any():
                    continue
                y = np.where(np.isfinite(gap[sel]), gap[sel], diverged_at)
                ax.scatter(dose[sel], y, s=14, marker=marker, linewidths=0.8,
                           facecolors=colours[m] if ctrl == "none" else "none", edgecolors=colours[m],
                           label=m if ctrl == "none" else None)
        for ctrl, marker in _CONTROL_MARKERS.items():
            if ctrl != "none" and (lab["control"] == ctrl).any():
                ax.scatter([], [], marker=marker, facecolors="none", edgecolors="0.3", s=14, label=f"control: {ctrl}")
        ax.axhline(0.0, color="0.6", lw=0.6)
        if diverged_at > 2.5:  # gaps over orders of magnitude: linear within ±1 nat, logarithmic beyond
            ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xlabel("embedding σ below the noise edge (fraction)")
        ax.set_ylabel("final loss gap to fp32 (nats)")
        ax.set_title("(b) dose–response" + (" (every lr)" if len(set(lab["lr"])) > 1 else ""))
        ax.set_ylim(bottom=min(-0.1, 1.3 * float(np.min(finite_gaps)) if finite_gaps.size else -0.1))
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=5.5, ncol=1, frameon=False)

        # One curve per failing mechanism: its cell (corpus, precision; first lr) with the most failing seeds,
        # then the largest finite mean gap.
        failing = []
        for m in mechs:
            cells = []
            for corpus in corpora:
                for p in precs:
                    sel = ((lab["corpus"] == corpus) & (lab["mechanism"] == m) & (lab["precision"] == p)
                           & (lab["control"] == "none") & (lab["lr"] == lr0))
                    bad = fails[sel]
                    if sel.any() and bad.any():
                        g = gap[sel]
                        cells.append((int(bad.sum()), np.inf if np.isinf(g).any() else float(np.nanmean(g)),
                                      corpus, p, sel))
            if cells:
                _, _, corpus, p, sel = max(cells, key=lambda c: c[:2])
                failing.append((m, f"{p if not p.isdigit() else 'int' + p}"
                                + (f", {corpus}" if len(corpora) > 1 else ""), sel))
        panels = (("(c) loss gap (nats)", lambda s: ds["eval_loss"].values[s] - ds["fp32_eval_loss"].values[s]),
                  ("(d) stored embedding $r_s$ / fp32", lambda s: ds["emb_stable_rank"].values[s]
                   / ds["fp32_emb_stable_rank"].values[s]),
                  ("(e) hidden eff. rank / fp32", lambda s: ds["hidden_effective_rank"].values[s]
                   / ds["fp32_hidden_effective_rank"].values[s]))
        styles = ("-", "--", ":", "-.")
        for k, (title, series) in enumerate(panels):
            ax = fig.add_subplot(grid[1, k])
            for n, (m, p, sel) in enumerate(failing[:8]):
                y = np.asarray(series(sel), np.float64)
                ok = np.isfinite(y).any(axis=0)
                if not ok.any():
                    continue
                with np.errstate(all="ignore"):
                    mean = np.nanmean(np.where(np.isfinite(y), y, np.nan)[:, ok], axis=0)
                ax.plot(steps[ok], mean, color=colours[m], ls=styles[n % len(styles)], marker=".", ms=2.5,
                        label=f"{m} {p}")
                dep = ds["departure_loss" if k == 0 else ("departure_emb" if k == 1 else "departure_hidden")]
                d = np.asarray(dep.values, np.float64)[sel]
                d = d[np.isfinite(d)]
                if d.size:
                    ax.axvline(float(np.min(d)), color=colours[m], lw=0.5, alpha=0.6)
            ax.axhline(0.0 if k == 0 else 1.0, color="0.6", lw=0.6)
            ax.set_xlabel("step")
            ax.set_title(title)
            if k == 0 and failing:
                ax.legend(fontsize=5.5)
            if not failing:
                ax.text(0.5, 0.5, "no failing run", transform=ax.transAxes, ha="center", va="center")
        return save(fig, path)


def model_damage(ds: Any, path: str | Path) -> list[Path]:
    """The model-level picture of :func:`zipfrmt.model_analysis.analyze_model`: one row per tensor (in file
    order), one column per spec; left, the stable-rank inflation ``r_s(Q)/r_s(W)`` (diverging around 1, log
    scale); right, the fraction of singular values below the predicted noise edge. Cells are annotated when the
    grid is small enough to read them; a dead-zone cell is marked with a dot."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    names = [str(t) for t in ds["tensor"].values]
    specs = [str(s) for s in ds["spec"].values]
    infl = np.asarray(ds["stable_rank_inflation"].values, float)
    below = np.asarray(ds["below_edge_fraction"].values, float)
    dead = np.asarray(ds["regime"].values).astype(str) == "dead-zone"
    n, m = len(names), len(specs)
    with paper_style():
        height = min(9.0, 1.2 + 0.22 * n)
        fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH, height), sharey=True, constrained_layout=True)
        finite = infl[np.isfinite(infl) & (infl > 0)]
        span = float(max(np.abs(np.log10(finite)).max(), np.log10(1.05))) if finite.size else 0.3
        panels = [  # log10 of the inflation, symmetric around 0 (no change): red up, blue down
            (axes[0], infl, "stable-rank inflation r_s(Q)/r_s(W)", "RdBu_r", Normalize(-span, span), True),
            (axes[1], below, "fraction of σ below the noise edge", "viridis", Normalize(0.0, 1.0), False),
        ]
        for ax, values, title, cmap, norm, is_log in panels:
            shown = np.log10(np.where(values > 0, values, np.nan)) if is_log else values
            im = ax.imshow(shown, aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
            ax.set_xticks(range(m), specs, rotation=60, ha="right")
            ax.set_title(title)
            ax.spines[:].set_visible(False)
            bar = fig.colorbar(im, ax=ax, shrink=0.9, pad=0.01)
            if is_log:
                ticks = np.linspace(-span, span, 5)
                bar.set_ticks(ticks, labels=[f"{10**t:.3g}" for t in ticks])
            if n * m <= 120:
                for i in range(n):
                    for j in range(m):
                        if np.isfinite(values[i, j]):
                            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=5.5,
                                    color="black" if is_log or values[i, j] > 0.5 else "white")
            yy, xx = np.nonzero(dead)
            ax.scatter(xx + 0.38, yy - 0.3, s=4, c="black", marker="o", linewidths=0)
        axes[0].set_yticks(range(n), names)
        fig.suptitle("What each spec does to each tensor (dot: dead-zone regime)", fontsize=8)
        return save(fig, path)
