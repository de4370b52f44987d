"""Figure: from Zipf's law to power-law embedding spectra — where Lemma 3.1 holds and where it does not.

Panels (:func:`zipfrmt.plots.zipf_to_powerlaw`):

(a) rank–frequency of sampled corpora (latent-semantic corpora whose unigram law is exactly Zipf(s), so their
    co-occurrences carry structure for PPMI) and of real texts (word tokens), with the fitted Zipf exponent ŝ
    (MLE of the truncated Zipf law over all ranks, :func:`zipfrmt.corpus.fit_zipf`);
(b) singular values of the Lemma 3.1 embedding built from each corpus's counts (rows ``√p̂_k e_k``, d columns,
    :func:`zipfrmt.embeddings.lemma31_embedding`), with the predicted slope ``k^(−ŝ/2)`` dashed and the end of
    the head window ``k_head`` (:func:`zipfrmt.embeddings.lemma31_spectrum`) marked;
(c) the top singular values of the corpus's PPMI matrix (window ``window``, α = 0.75) — the spectrum of its
    rank-d PPMI-SVD embedding ``W = U_dΣ_d``; the embedding ``U_dΣ_d^p`` has the exponent times p;
(d) fitted rank-decay exponent against the prediction ŝ/2, over the grid of s, with the line y = x.

Fit windows (reported in the dataset): Lemma 3.1 over ``[2, k_head]`` (and, to show where the law fails, over
``[2, d/4]``); PPMI over ``ppmi_window`` (default ``[17, d_ppmi]``: past σ_1, the positive mean, and the 16 latent
directions of the sampled corpora). Known results this figure shows rather than hides: the ``k^(−s/2)`` law of
Lemma 3.1 holds only over the head ranks — past ``k_head`` the mass of the tokens without a direction of their
own lifts a floor and flattens the spectrum — and the PPMI-SVD spectrum decays as a much flatter power law
(a ≈ 0.09 on the sampled corpora) whatever s is: PMI divides out the unigram frequencies.

Real text comes from ``Config.data_dir`` (default the repository's ``data/``, which ships tinyshakespeare and
wikitext2-valid with their licences); when that folder or a file is missing the figure is drawn without it and
:func:`describe` says so. Nothing is downloaded.

Hook for a trained model: every spectrum lives on the ``embedding`` dimension (``"lemma31"``, ``"ppmi_svd"``).
To add an embedding learnt by training on each corpus, register a function in :data:`EMBEDDINGS` (it receives
the corpus's :class:`CorpusData` and the config and returns descending singular values and a fit window) and
name it in ``Config.embeddings``; :func:`zipfrmt.plots.zipf_to_powerlaw` draws one spectrum panel per embedding
and adds its exponents to panel (d).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from experiments.outputs import DATA_DIR, figure_path
from zipfrmt import corpus, embeddings, plots, spectra, sweep

NAME = "fig_zipf_to_powerlaw"
KIND = "figure"
CAPTION = ("From Zipf's law to power-law spectra: rank–frequency of sampled and real corpora with fitted Zipf "
           "exponents; singular values of the Lemma 3.1 and PPMI-SVD embeddings they induce, with the predicted "
           "slope s/2 dashed; and fitted rank-decay exponents against s/2.")

#: Real texts looked for in ``data_dir`` (``NAME.txt``).
TEXTS = ("tinyshakespeare", "wikitext2-valid")


def default_data_dir() -> str | None:
    """The repository's ``data/`` folder (:data:`experiments.outputs.DATA_DIR`) when it exists, else ``None``."""
    return str(DATA_DIR) if DATA_DIR.is_dir() else None


@dataclasses.dataclass(frozen=True)
class Config:
    """Corpora, embedding sizes, fit windows and seeds.

    ``s_grid``: Zipf exponents of the sampled corpora (all appear in panel d); ``s_show``: those drawn in
    panels a–c. ``V``/``n_tokens``: vocabulary and length of each sampled corpus; real texts keep their whole
    word vocabulary for (a), (b) and cap it at ``V`` types (the rest mapped to one unknown type) for PPMI.
    ``d``: columns of the Lemma 3.1 embedding; ``d_ppmi``: singular values kept of the PPMI matrix.
    ``data_dir``: folder of the real texts (``None``: :func:`default_data_dir`).
    """

    s_grid: tuple[float, ...] = (0.6, 0.8, 1.0, 1.2, 1.4)
    s_show: tuple[float, ...] = (0.8, 1.0, 1.2)
    V: int = 2000
    n_tokens: int = 500_000
    d: int = 512
    d_ppmi: int = 128
    window: int = 5
    ppmi_window: tuple[int, int] = (17, 128)
    latent_dim: int = 16
    texts: tuple[str, ...] = TEXTS
    data_dir: str | None = None
    embeddings: tuple[str, ...] = ("lemma31", "ppmi_svd", "trained")
    d_trained: int = 64
    train_steps: int = 150
    seed: int = 0


SCALES = {
    "test": Config(s_grid=(0.8, 1.2), s_show=(0.8, 1.2), V=500, n_tokens=100_000, d=128, d_ppmi=64,
                   ppmi_window=(17, 64), texts=("tinyshakespeare",), d_trained=16, train_steps=20),
    "quick": Config(),
    "full": Config(s_grid=tuple(round(0.5 + 0.1 * i, 1) for i in range(11)), s_show=(0.8, 1.0, 1.2),
                   V=10_000, n_tokens=20_000_000, d=1024, d_ppmi=512, ppmi_window=(17, 512),
                   d_trained=256, train_steps=5000),
}


class CorpusData(NamedTuple):
    """What an embedding is built from: the counts (ids ranked by frequency) and the capped token stream."""

    counts: np.ndarray  # full vocabulary, descending
    tokens: np.ndarray  # ids in [0, V_cap)
    V_cap: int
    s: float = math.nan  # nominal Zipf exponent of a sampled corpus (NaN for real text)
    path: str | None = None  # the file of a real text


def _lemma31(data: CorpusData, config: Config, key: Any) -> tuple[np.ndarray, tuple[int, int]]:
    W = embeddings.lemma31_embedding(key, data.counts, config.d)
    sigma = np.asarray(spectra.singular_values(W), np.float64)
    k_head = embeddings.lemma31_spectrum(data.counts, config.d).k_head
    return sigma, (2, k_head)  # k_head < 3 leaves no window: the fit is NaN (reported)


def _ppmi_svd(data: CorpusData, config: Config, key: Any) -> tuple[np.ndarray, tuple[int, int]]:
    # The top d_ppmi singular values of the PPMI matrix: those of its rank-d_ppmi SVD embedding W = U_dΣ_d.
    # Computed from the dense PPMI matrix's Gram matrix (spectra.singular_values), which is much faster than
    # ARPACK's Lanczos for the ~100 leading values of a V×V matrix with V of a few thousand.
    cooc = corpus.cooccurrence(data.tokens, data.V_cap, config.window)
    M = embeddings.ppmi(cooc).toarray()
    sigma = np.asarray(spectra.singular_values(M), np.float64)[: config.d_ppmi]
    return sigma, tuple(config.ppmi_window)


def _trained(data: CorpusData, config: Config, key: Any) -> tuple[np.ndarray, tuple[int, int]]:
    """The embedding table of an embedding-bag LM (:class:`zipfrmt.nn.BagLM`, tied head) trained in float32.

    A real text is trained on itself (vocabulary capped at ``V_cap`` like PPMI); a sampled corpus on a fresh
    latent-semantic corpus of the same Zipf law and vocabulary (:mod:`zipfrmt.nn` draws its own stream). The
    fit window is ``[2, d_trained/2]``. Training is seeded from ``config.seed``; ``key`` is unused.
    """
    import tempfile

    from zipfrmt import nn

    if data.path is not None:
        source = nn.DataConfig(source="text", path=data.path, tokenizer="word")
    else:
        source = nn.DataConfig(source="latent", zipf_s=float(data.s), n_tokens=config.n_tokens, dim=config.latent_dim,
                               data_seed=config.seed)
    steps = config.train_steps
    cfg = nn.TrainConfig(
        model=nn.ModelConfig(kind="bag", vocab_size=data.V_cap, d_model=config.d_trained, max_len=32),
        data=source, batch_size=32, context=32, steps=steps, lr=1e-2, warmup=max(1, steps // 10),
        probe_every=steps, eval_every=steps, eval_batches=2, checkpoint_every=steps, seed=config.seed,
    )
    with tempfile.TemporaryDirectory(prefix="zipfrmt-bag-") as tmp:
        nn.train(cfg, tmp, progress=False)
        table = nn.trained_model(cfg, tmp).embed.embedding[...]
    sigma = np.asarray(spectra.singular_values(table), np.float64)
    return sigma, (2, config.d_trained // 2)


#: Embeddings a corpus induces: name → f(data, config, key) → (descending σ, fit window [k_lo, k_hi]).
EMBEDDINGS: dict[str, Callable[[CorpusData, Config, Any], tuple[np.ndarray, tuple[int, int]]]] = {
    "lemma31": _lemma31,
    "ppmi_svd": _ppmi_svd,
    "trained": _trained,
}


def _corpus_name(s: float) -> str:
    return f"zipf-{s:g}"


def _load(config: Config, name: str, data_dir: str | None) -> tuple[CorpusData, float, int]:
    """The corpus behind a point: (data, nominal s or NaN, tokens)."""
    import jax

    if name.startswith("zipf-"):
        s = float(name.removeprefix("zipf-"))
        key = jax.random.fold_in(jax.random.key(config.seed), int(round(1000 * s)))
        lc = corpus.latent_semantic_corpus(key, config.n_tokens, config.V, s, dim=config.latent_dim)
        tokens = np.asarray(lc.tokens)
        counts = corpus.token_counts(tokens, config.V)
        return CorpusData(counts, tokens, config.V, s=s), s, int(tokens.size)
    path = Path(data_dir) / f"{name}.txt"
    text = corpus.read_text(path)
    V_cap = min(config.V, len(text.vocab))
    capped = text if V_cap == len(text.vocab) else corpus.read_text(path, max_vocab=V_cap)
    return (CorpusData(text.counts, np.asarray(capped.tokens), V_cap, path=str(path)), math.nan,
            int(text.tokens.size))


def _point(config: Config, point: dict[str, Any], data_dir: str | None) -> Any:
    import jax
    import xarray as xr

    name = point["corpus"]
    data, s_nominal, n_tokens = _load(config, name, data_dir)
    rf = corpus.rank_frequency(data.counts)
    fit = corpus.fit_zipf(data.counts)
    kh = embeddings.lemma31_spectrum(data.counts, config.d).k_head
    key = jax.random.fold_in(jax.random.key(config.seed + 1), sum(map(ord, name)))
    n_sv = max(config.d, config.d_ppmi)
    sig = np.full((len(config.embeddings), n_sv), np.nan)
    fits: dict[str, list[float]] = {k: [] for k in ("a", "log_c", "k_lo", "k_hi", "r2")}
    for i, emb in enumerate(config.embeddings):
        sigma, (k_lo, k_hi) = EMBEDDINGS[emb](data, config, jax.random.fold_in(key, i))
        sig[i, : sigma.size] = sigma
        k_hi = min(k_hi, sigma.size)
        if k_hi - k_lo >= 1:
            f = spectra.rank_decay_exponent(sigma, k_lo, k_hi)
            values = [f.a, f.log_c, f.k_lo, f.k_hi, f.r2]
        else:  # no window of two ranks (e.g. no head at all on real text with a small d)
            values = [math.nan, math.nan, k_lo, k_hi, math.nan]
        for k, v in zip(fits, values, strict=True):
            fits[k].append(float(v))
    lemma = sig[list(config.embeddings).index("lemma31")] if "lemma31" in config.embeddings else None
    wide = (spectra.rank_decay_exponent(lemma[: config.d], 2, config.d // 4).a if lemma is not None else math.nan)
    return xr.Dataset(
        {
            "frequency": ("rank", rf.frequencies),
            "zipf_s": fit.s,
            "zipf_s_stderr": fit.stderr,
            "zipf_ks": fit.ks,
            "s_nominal": s_nominal,
            "n_tokens": n_tokens,
            "n_types": int(np.count_nonzero(data.counts)),
            "vocab_ppmi": data.V_cap,
            "kind": "sampled" if name.startswith("zipf-") else "text",
            "k_head": kh,
            "lemma31_a_wide": wide,
            "sigma": (("embedding", "sv_rank"), sig),
            **{f"fit_{k}": ("embedding", np.asarray(v)) for k, v in fits.items()},
        },
        coords={"rank": np.arange(1, rf.frequencies.size + 1), "sv_rank": np.arange(1, n_sv + 1),
                "embedding": list(config.embeddings)},
    )


def _texts_found(config: Config) -> tuple[str | None, tuple[str, ...]]:
    data_dir = config.data_dir if config.data_dir is not None else default_data_dir()
    if data_dir is None:
        return None, ()
    return data_dir, tuple(t for t in config.texts if (Path(data_dir) / f"{t}.txt").is_file())


def cache_key(config: Config) -> dict[str, Any]:
    """What the cached result is keyed by (:func:`run` and :func:`load_cached` both use it). It holds which
    texts were found, so a folder that appears later is picked up, not a stale cache."""
    data_dir, found = _texts_found(config)
    return {"config": config, "data_dir": data_dir, "texts_found": found}


def load_cached(config: Config, root: str | Path = "results") -> Any | None:
    """The result :func:`run` cached for ``config`` under ``root``, or ``None`` (nothing is computed)."""
    return sweep.load_cached(NAME, cache_key(config), root)


def run(config: Config, *, root: str | Path = "results", force: bool = False, progress: bool = True) -> Any:
    unknown = [e for e in config.embeddings if e not in EMBEDDINGS]
    if unknown:
        raise ValueError(f"embeddings: unknown {', '.join(map(repr, unknown))}; expected names from "
                         f"{', '.join(EMBEDDINGS)}")
    key = cache_key(config)
    data_dir, found = key["data_dir"], key["texts_found"]
    points = [{"corpus": _corpus_name(s)} for s in config.s_grid] + [{"corpus": t} for t in found]
    return sweep.run_grid(NAME, key, points, lambda p: _point(config, p, data_dir), root=root, force=force,
                          progress=progress, dim="corpus")


def render(ds: Any, out_dir: str | Path) -> list[Path]:
    return plots.zipf_to_powerlaw(ds, figure_path(out_dir, NAME))


def _key(ds: Any) -> dict[str, Any]:
    try:
        return json.loads(ds.attrs.get("config", "{}"))
    except (TypeError, ValueError):
        return {}


def describe(ds: Any) -> str:
    key = _key(ds)
    cfg = key.get("config", {})
    kinds = ds["kind"].values.astype(str)
    sampled = [i for i, k in enumerate(kinds) if k == "sampled"]
    texts = [i for i, k in enumerate(kinds) if k == "text"]
    names = ds["corpus"].values.astype(str)
    embs = list(ds["embedding"].values.astype(str))
    s_hat = ds["zipf_s"].values
    s_nom = ds["s_nominal"].values
    err = max(abs(s_hat[i] - s_nom[i]) for i in sampled) if sampled else math.nan
    parts = []
    if sampled:
        parts.append(
            f"The {len(sampled)} sampled corpora ({int(ds['n_tokens'].values[sampled[0]]):,} tokens, "
            f"V = {int(ds['n_types'].values[sampled[0]]):,}, s = "
            f"{', '.join(f'{s_nom[i]:g}' for i in sampled)}) have fitted Zipf exponents within {err:.3f} of s.")
    for i in texts:
        parts.append(f"{names[i]} ({int(ds['n_tokens'].values[i]):,} words, {int(ds['n_types'].values[i]):,} "
                     f"types) has ŝ = {s_hat[i]:.3f} (KS distance {ds['zipf_ks'].values[i]:.3f}).")
    requested = cfg.get("texts", [])
    missing = [t for t in requested if t not in set(key.get("texts_found", []))]
    if missing:
        where = Path(key["data_dir"]).name + "/" if key.get("data_dir") else "data/ (not found)"
        parts.append(f"Real text not found in {where}: {', '.join(missing)} — drawn without "
                     f"{'it' if len(missing) == 1 else 'them'}.")
    if "lemma31" in embs:
        j = embs.index("lemma31")
        a = ds["fit_a"].values[:, j]
        dev = [a[i] - s_hat[i] / 2 for i in sampled]
        kh = ds["k_head"].values
        wide = ds["lemma31_a_wide"].values
        parts.append(
            "Lemma 3.1's σ_k ∝ k^(−s/2) holds over the head only: over ranks [2, k_head] (k_head = "
            f"{', '.join(str(int(kh[i])) for i in sampled)} for the sampled corpora, d = {cfg.get('d', '?')}) the "
            f"fitted exponent is {', '.join(f'{a[i]:.3f}' for i in sampled)} against ŝ/2 = "
            f"{', '.join(f'{s_hat[i] / 2:.3f}' for i in sampled)} (largest gap {max(map(abs, dev)):.3f}), while "
            f"over [2, d/4] it is {', '.join(f'{wide[i]:.3f}' for i in sampled)}: past the "
            "head the floor left by tokens without a direction of their own flattens the spectrum.")
        if texts:
            parts.append("On real text the head exponent is " + ", ".join(
                (f"{a[i]:.3f}" if np.isfinite(a[i]) else "undefined (no head window)")
                + f" for {names[i]} (ŝ/2 = {s_hat[i] / 2:.3f}, k_head = {int(kh[i])})" for i in texts)
                + ": the head of a real rank–frequency curve need not follow its global Zipf law.")
    if "ppmi_svd" in embs:
        j = embs.index("ppmi_svd")
        a = ds["fit_a"].values[:, j]
        lo, hi = int(ds["fit_k_lo"].values[0, j]), int(ds["fit_k_hi"].values[0, j])
        txt = (f"The PPMI-SVD spectrum is a much flatter power law: over ranks [{lo}, {hi}] its exponent is "
               f"{', '.join(f'{a[i]:.3f}' for i in sampled)} on the sampled corpora (range "
               f"{np.ptp(a[sampled]):.3f} while s/2 varies by {np.ptp(s_hat[sampled]) / 2:.2f}), "
               if sampled else "The PPMI-SVD spectrum exponent is ")
        if texts:
            txt += "and " + ", ".join(f"{a[i]:.3f} on {names[i]}" for i in texts) + ", "
        parts.append(txt + "roughly independent of s: PMI divides out the unigram frequencies that give Lemma 3.1 "
                     "its slope.")
    others = [e for e in embs if e not in ("lemma31", "ppmi_svd")]
    for e in others:
        j = embs.index(e)
        a = np.asarray(ds["fit_a"].values[:, j], np.float64)
        lo, hi = int(ds["fit_k_lo"].values[0, j]), int(ds["fit_k_hi"].values[0, j])
        what = "The embedding table of a float32 embedding-bag LM trained on each corpus" if e == "trained" else e
        txt = (f"{what} has fitted exponent (ranks [{lo}, {hi}]) "
               + ", ".join(f"{a[i]:.3f} ({names[i]})" for i in range(len(names))) + ".")
        if len(sampled) > 1:
            slope = np.polyfit(s_hat[sampled], a[sampled], 1)[0] if np.all(np.isfinite(a[sampled])) else np.nan
            if np.isfinite(slope):
                trend = "rises" if slope > 0 else "falls"
                txt += (f" Over the sampled corpora it {trend} with ŝ (slope {slope:.2f} per unit ŝ, against 0.5 "
                        f"for ŝ/2)" + (": training does not reproduce the s/2 law at this scale." if slope <= 0
                                       else "."))
        parts.append(txt)
    return " ".join(parts)
