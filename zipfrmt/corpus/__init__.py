"""Token streams with Zipfian statistics: laws, samplers, corpus models, text ingestion, counts and fits.

Modules: :mod:`~zipfrmt.corpus.laws` (Zipf and Zipf–Mandelbrot), :mod:`~zipfrmt.corpus.sampling` (alias
tables, samplers), :mod:`~zipfrmt.corpus.latent` (the latent-semantic corpus), :mod:`~zipfrmt.corpus.stats`
(counts, rank–frequency, co-occurrence, Zipf-exponent fits), :mod:`~zipfrmt.corpus.text` (real text).
Everything public is re-exported here: ``corpus.zipf_pmf``, ``corpus.read_text`` …

Conventions (``docs/conventions.md``, "Zipf"). Ranks run over ``k = 1..V`` and token ids over ``0..V−1``;
**id ``i`` is rank ``i + 1``** (id 0 is the most frequent token). The Zipf–Mandelbrot law is

    p_k = (k + q)^(−s) / H_{V,s,q},      H_{V,s,q} = Σ_{k=1}^{V} (k + q)^(−s),      s > 0, q > −1,

and plain Zipf is ``q = 0``. The Zipf exponent of a corpus is the maximum-likelihood ``s`` of the truncated
Zipf law over the ranks of its token counts (:func:`fit_zipf`), over all ranks or over a rank window.

Where things run. The laws are evaluated on the host in float64 (NumPy) and returned as JAX arrays; the
samplers are jit-compiled JAX kernels driven by explicit PRNG keys; counts, co-occurrence matrices, fits and
text ingestion are host-side NumPy/SciPy (exact integer counts, float64 fits) and return NumPy arrays.

Sampling (:func:`alias_table`, :func:`sample_alias`). Walker's alias method (Walker 1977; Vose 1991), O(1)
work per token: the table has ``M = 2^m ≥ V`` cells (padded with zero-probability cells, so the cell index is
the top ``m`` bits of a uniform 32-bit word, exactly uniform); cell ``i`` returns ``i`` when a second 32-bit
word is below its threshold and ``alias[i]`` otherwise. The table is built in exact integer arithmetic (units
of ``2^−32`` of a cell) with a vectorised form of the sweeping construction of Hübschle-Schneider & Sanders
(2022), so every probability — the rare tail included — is realised to within ``2^−32/M``, with none of the
tail loss of an inverse-CDF search in float32. The random words come from counter-mode Threefry-2x32 (Salmon
et al. 2011; the block function of ``jax.random``'s default generator) keyed by two words drawn from the
caller's key: token ``i`` uses counter ``i``, so a stream does not depend on the chunk size, and the first
``m`` tokens of a longer stream are the stream of ``m`` tokens.
"""

from zipfrmt.corpus.latent import LatentCorpus, latent_semantic_corpus
from zipfrmt.corpus.laws import zipf_cdf, zipf_entropy, zipf_normalizer, zipf_pmf
from zipfrmt.corpus.sampling import AliasTable, alias_table, sample_alias, sample_categorical, sample_zipf
from zipfrmt.corpus.stats import RankFrequency, ZipfFit, cooccurrence, fit_zipf, rank_frequency, token_counts
from zipfrmt.corpus.text import TextCorpus, read_text

__all__ = [
    "AliasTable",
    "LatentCorpus",
    "RankFrequency",
    "TextCorpus",
    "ZipfFit",
    "alias_table",
    "cooccurrence",
    "fit_zipf",
    "latent_semantic_corpus",
    "rank_frequency",
    "read_text",
    "sample_alias",
    "sample_categorical",
    "sample_zipf",
    "token_counts",
    "zipf_cdf",
    "zipf_entropy",
    "zipf_normalizer",
    "zipf_pmf",
]
