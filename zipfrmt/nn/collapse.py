"""When a run counts as collapsed: the criterion, and the verdict on a finished history.

In the low-bit training literature "collapse" is a failure of the *representation*: the loss stuck at the
level of a model that only learned token frequencies, or hidden states that lose rank (all tokens mapped to a
few directions). Quantization, by contrast, *raises* the stable rank of the embedding it acts on (the noise
floor lifts the tail): that rise is the flattening the theory predicts and is measured separately
(``emb_stable_rank_q`` against ``emb_stable_rank``), never counted as collapse. So a run has **collapsed** if

1. its final held-out loss is within ``unigram_margin`` nats of the training unigram's cross-entropy on the
   same evaluation windows (``unigram_loss``), or above it (not applied to i.i.d. ``zipf`` data, where the
   unigram law is the best model there is, nor against a ``reference`` that is itself that close: an fp32
   run stuck there says the model is undertrained, and the test cannot tell the run from it); or
2. given a full-precision ``reference`` history (same config at fp32), its final **centred** hidden-state
   effective rank is below ``collapse_fraction`` (0.5) of the reference's.

A history written before ``unigram_loss`` was recorded falls back to the training stream's unigram entropy.

A run with **no quantized site** (every rule fp32, or none) cannot collapse from quantization: when the
criterion holds for it, :func:`judge` keeps its status ``ok`` and says why in the reason ("undertrained:
held-out loss … at the unigram level …").
Divergence (a non-finite or exploding loss) is decided by the training loop, which stops the run.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from zipfrmt.nn.config import TrainConfig
from zipfrmt.nn.history import last, last_stretch_start

__all__ = ["COLLAPSE_CRITERION", "collapse_step", "collapse_verdict", "judge", "quantized", "reached_plateau",
           "unigram_level"]

COLLAPSE_CRITERION = (
    "collapsed if the final held-out loss is within unigram_margin nats of the training unigram's cross-entropy "
    "on the evaluation windows (or above) while the full-precision reference, if given, is not, or, against "
    "that reference, if the final centred hidden-state effective rank falls below collapse_fraction of its"
)


def unigram_level(history: xr.Dataset) -> float:
    """The loss of a unigram model on the run's evaluation windows (``unigram_loss``; older histories: the
    training stream's unigram entropy)."""
    return float(history.attrs.get("unigram_loss", history.attrs.get("unigram_entropy", math.nan)))


def collapse_verdict(
    history: xr.Dataset, reference: xr.Dataset | None = None, config: TrainConfig | None = None
) -> tuple[bool, str]:
    """Whether a finished run collapsed, and why (see the module docstring for the criterion)."""
    frac = config.collapse_fraction if config is not None else 0.5
    margin = config.unigram_margin if config is not None else 0.05
    h_uni = unigram_level(history)
    final = last(history, "eval_loss")
    reasons = []
    # On i.i.d. data the unigram law is the best model there is: the criterion would flag every run.
    iid = config is not None and config.data.source == "zipf"
    if not iid and not _reference_stuck(reference, margin) and math.isfinite(final) and math.isfinite(h_uni) \
            and final >= h_uni - margin:
        reasons.append(f"held-out loss {final:.4f} ≥ unigram loss {h_uni:.4f} − {margin:g} nats")
    if reference is not None:
        mine, ref = last(history, "hidden_effective_rank"), last(reference, "hidden_effective_rank")
        if math.isfinite(mine) and math.isfinite(ref) and mine < frac * ref:
            reasons.append(f"hidden effective rank {mine:.3g} < {frac:g} x full-precision {ref:.3g}")
    return bool(reasons), "; ".join(reasons)


def quantized(config: TrainConfig) -> bool:
    """Whether a config quantizes anything (a rule with a spec; rules that keep sites in fp32 do not count)."""
    return any(spec is not None for _, spec in config.quant)


def judge(history: xr.Dataset, reference: xr.Dataset | None, config: TrainConfig) -> tuple[str, str]:
    """``(status, reason)`` of a run that finished ``ok``: ``collapsed`` when :func:`collapse_verdict` says so
    for a quantized run; a run with no quantized site stays ``ok``, and when the criterion holds for it the reason
    says it is undertrained (at the unigram level), which is not a collapse."""
    collapsed, why = collapse_verdict(history, reference, config)
    if not collapsed:
        return "ok", ""
    if quantized(config):
        return "collapsed", why
    return "ok", f"undertrained, not collapsed: no site is quantized and {why}"


def _reference_stuck(reference: xr.Dataset | None, margin: float) -> bool:
    """Whether a full-precision reference itself ends within ``margin`` of its unigram level."""
    if reference is None:
        return False
    final, level = last(reference, "eval_loss"), unigram_level(reference)
    return math.isfinite(final) and math.isfinite(level) and final >= level - margin


def collapse_step(history: xr.Dataset, reference: xr.Dataset | None, config: TrainConfig) -> float:
    """The first probe step from which the collapse criterion holds at every later probe (NaN if it does not
    hold at the last one): the criterion of :func:`collapse_verdict` applied at each probe instead of the end."""
    h_uni = unigram_level(history)
    ref_h = math.nan if reference is None else last(reference, "hidden_effective_rank")
    steps = np.asarray(history["step"].values)
    ev, hid = (np.asarray(history[k].values, np.float64) for k in ("eval_loss", "hidden_effective_rank"))
    probed = np.flatnonzero(np.isfinite(ev) | np.isfinite(hid))
    unigram_part = config.data.source != "zipf" and not _reference_stuck(reference, config.unigram_margin)
    crit = []
    for i in probed:
        c = bool(unigram_part and np.isfinite(ev[i]) and ev[i] >= h_uni - config.unigram_margin)
        c |= bool(np.isfinite(hid[i]) and hid[i] < config.collapse_fraction * ref_h)
        crit.append(c)
    return last_stretch_start(steps[probed], np.array(crit, bool))


def reached_plateau(history: xr.Dataset, *, tol: float = 0.05, fraction: float = 0.25) -> tuple[bool, float]:
    """Whether a run's held-out loss has stopped improving: ``(plateaued, improvement)``.

    ``improvement`` is the fall of the held-out loss over the last ``fraction`` of training (from the last
    evaluation at or before step ``(1 − fraction)·steps`` to the final one), in nats; the run has reached its
    plateau when it is below ``tol`` (0.05 nats: half the 0.1-nat gap from which the collapse map counts a run
    as failing, so that such a gap is not a slower run stopped too early). The collapse experiment checks it
    for every fp32 twin and reports those that fall short.
    """
    ev = np.asarray(history["eval_loss"].values, np.float64)
    steps = np.asarray(history["step"].values)
    ok = np.flatnonzero(np.isfinite(ev))
    if ok.size < 2:
        return False, math.nan
    cut = (1.0 - fraction) * steps[ok[-1]]
    before = ok[steps[ok] <= cut]
    start = before[-1] if before.size else ok[0]
    improvement = float(ev[start] - ev[ok[-1]])
    return bool(improvement < tol), improvement
