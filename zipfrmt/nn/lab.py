"""The collapse lab: which low-precision mechanism makes a small LM fail, and is spectral flattening the cause?

A **mechanism** is one way low precision enters training, switched on alone, at one precision (an integer
width ``b`` with per-row scales, or a format such as ``nf4``); everything else stays float32:

==========  ========================================================================================
forward     the weights of every linear layer, the embedding and the head at ``b`` bits, activations
            at 8 bits per token (the corner ``fig_training_collapse`` sweeps)
embed       the embedding table alone (and the tied head that reads it): the paper's claim proper
actgrad     the activation cotangents ∂L/∂y entering every layer on the backward pass, per token
wgrad       the weight gradients before the optimizer
master      the weights stored on their ``b``-bit grid, no float32 copy (round to nearest)
opt         AdamW's moments stored at ``b`` bits (the second moment on a zero-free grid)
==========  ========================================================================================

A **control** (:mod:`zipfrmt.nn.controls`) replaces the quantizer at the same sites: equal-energy Gaussian
noise, stochastic rounding, a Hadamard rotation — and for ``master`` the embedding frozen at its float32
initialisation (``frozen``; its reference is the fp32 run with the same frozen embedding). A frozen tied table
would freeze the output head too, so the ``frozen`` run and its twin untie the head. For master weights the
noise control adds the equal-energy noise to the weights every step, where it accumulates (a random walk),
while round-to-nearest snaps back to the grid: it is the harsher of the two.

:func:`run_summary` reduces a run to the quantities the attribution needs, against its fp32 twin: the final
held-out loss gap, the status, the **dose** (the fraction of the embedding's singular values below its
quantizer's noise edge, :mod:`zipfrmt.nn.probes`), the ranks in both directions (embedding stable rank up,
hidden effective rank down), the push-down mass the gradient quantizer keeps, and the **lead time**: how many
steps before the loss departs from fp32 a spectral probe did (:func:`departure_step`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import xarray as xr

from zipfrmt.nn.collapse import collapse_verdict, reached_plateau
from zipfrmt.nn.config import TrainConfig, with_quant
from zipfrmt.nn.history import last, last_stretch_start
from zipfrmt.quant import QuantSpec

__all__ = ["CONTROLS", "MECHANISMS", "departure_step", "mechanism_config", "run_summary"]

#: Mechanism → (what it quantizes, its rules with ``{s}`` for the spec text).
MECHANISMS: dict[str, tuple[str, str]] = {
    "forward": ("weights, embedding and head at b bits, activations at 8 bits",
                "linear={s},embed={s},head={s},act=int8-row"),
    "embed": ("the embedding table alone (and the tied head)", "embed={s}"),
    "actgrad": ("activation cotangents on the backward pass", "grad={s}"),
    "wgrad": ("weight gradients before the optimizer", "wgrad={s}"),
    "master": ("master weights on the b-bit grid (no float32 copy)", "master={s}"),
    "opt": ("AdamW moments stored at b bits", "opt={s}"),
}

#: The controls of the map: ``none`` (the quantizer), three at every site (``hadamard`` not for ``opt``), and
#: one for ``master`` only.
CONTROLS = ("none", "noise", "stochastic", "hadamard", "frozen")


def applies(mechanism: str, control: str) -> bool:
    """Whether ``control`` is a control of ``mechanism`` (``frozen``: master only; ``hadamard``: not opt)."""
    return not (control == "frozen" and mechanism != "master") and not (control == "hadamard" and mechanism == "opt")


def precision_spec(precision: str) -> QuantSpec:
    """``"4"`` → ``int4-row``; a format or spec text as it is (``"nf4"``)."""
    return QuantSpec(bits=int(precision), granularity="row") if precision.isdigit() else QuantSpec.parse(precision)


def mechanism_config(base: TrainConfig, mechanism: str, precision: str, control: str = "none") -> TrainConfig:
    """The config of one run of the map: ``base`` with one mechanism at one precision under one control.

    ``precision="fp32"`` is the fp32 twin (with ``control="frozen"``: the twin with the frozen embedding).
    """
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism: expected one of {', '.join(MECHANISMS)}, got {mechanism!r}")
    if control not in CONTROLS:
        raise ValueError(f"control: expected one of {', '.join(CONTROLS)}, got {control!r}")
    if control == "frozen" and mechanism != "master":
        raise ValueError(f"control: 'frozen' (an embedding frozen at its float32 initialisation) is the control of "
                         f"mechanism 'master', got mechanism {mechanism!r}")
    if control == "hadamard" and mechanism == "opt":
        raise ValueError("control: 'hadamard' does not apply to the optimizer state (a rotation of the moments "
                         "would mix those of different weights and make the second moment negative)")
    freeze = ("embed",) if control == "frozen" else ()
    if control == "frozen":  # a frozen tied table would freeze the head as well
        base = dataclasses.replace(base, model=dataclasses.replace(base.model, tie_embeddings=False))
    if precision == "fp32":
        return dataclasses.replace(with_quant(base, None), control="none", freeze=freeze)
    spec = precision_spec(precision).label
    rules = MECHANISMS[mechanism][1].format(s=spec)
    if control == "frozen":
        rules = f"master/embed=fp32,{rules}"
    return dataclasses.replace(with_quant(base, rules), control="none" if control == "frozen" else control,
                               freeze=freeze)


def departure_step(steps: np.ndarray, values: np.ndarray, reference: np.ndarray, threshold: float,
                   *, relative: bool) -> float:
    """The first step from which ``values`` stay departed from ``reference`` by more than ``threshold``
    (relative: ``|v/r − 1|``; absolute: ``v − r``) at every later finite point; NaN if they end undeparted."""
    ok = np.isfinite(values) & np.isfinite(reference)
    if not ok.any():
        return math.nan
    s, v, r = steps[ok], values[ok], reference[ok]
    with np.errstate(divide="ignore", invalid="ignore"):
        away = np.abs(v / np.where(r != 0, r, np.nan) - 1.0) > threshold if relative else (v - r) > threshold
    return last_stretch_start(s, np.where(np.isfinite(away), away, False))


def _aligned(hist: xr.Dataset, ref: xr.Dataset, name: str, ref_name: str | None = None) -> tuple[np.ndarray, ...]:
    steps = np.asarray(hist["step"].values)
    r = ref[ref_name or name].reindex(step=steps)
    return steps, np.asarray(hist[name].values, np.float64), np.asarray(r.values, np.float64)


#: Departure thresholds of the lead-time analysis: loss gap (nats), relative change of a spectral probe.
LOSS_DEPARTURE = 0.05
PROBE_DEPARTURE = 0.10


def run_summary(hist: xr.Dataset, ref: xr.Dataset, config: TrainConfig) -> dict[str, Any]:
    """One run of the map against its fp32 twin ``ref``: every number its row of the table and the figure need.

    ``gap`` is the final held-out loss minus the twin's (infinite for a diverged run); ``status`` is
    ``diverged`` (the loop stopped it), ``collapsed`` (:func:`zipfrmt.nn.collapse_verdict` against the twin) or
    ``ok``. ``lead_*`` are the loss departure step minus each probe's departure step (positive: the probe moved
    first), with departures at a loss gap above :data:`LOSS_DEPARTURE` nats and a probe more than
    :data:`PROBE_DEPARTURE` from the twin's; the probes compare like with like: the stored embedding ``E``
    (its stable rank; the quantized view differs from fp32 from the first step by construction) and the
    centred hidden-state effective rank.
    """
    status = str(hist.attrs["status"])
    if status in ("ok", "collapsed"):
        collapsed, why = collapse_verdict(hist, ref, config)
        status, reason = ("collapsed", why) if collapsed else ("ok", "")
    else:
        reason = str(hist.attrs.get("reason", ""))
    loss, ref_loss = last(hist, "eval_loss"), last(ref, "eval_loss")
    steps, ev, ev_ref = _aligned(hist, ref, "eval_loss")
    loss_dep = departure_step(steps, ev, ev_ref, LOSS_DEPARTURE, relative=False)
    probes = {"emb": ("emb_stable_rank", "emb_stable_rank"),
              "hidden": ("hidden_effective_rank", "hidden_effective_rank")}
    lead = {}
    for label, (name, ref_name) in probes.items():
        dep = departure_step(*_aligned(hist, ref, name, ref_name), PROBE_DEPARTURE, relative=True)
        lead[f"lead_{label}"] = loss_dep - dep if math.isfinite(loss_dep) and math.isfinite(dep) else math.nan
        lead[f"departure_{label}"] = dep
    emb_sr = last(hist, "emb_stable_rank_q" if np.isfinite(hist["emb_stable_rank_q"].values).any()
                  else "emb_stable_rank")  # the table the forward pass reads
    plateau, improvement = reached_plateau(ref)
    _, twin_why = collapse_verdict(ref, None, config)
    return {
        "loss": loss,
        "fp32_loss": ref_loss,
        "gap": loss - ref_loss if math.isfinite(loss) and status != "diverged" else math.inf,
        "status": status,
        "reason": reason,
        "unigram_loss": float(hist.attrs.get("unigram_loss", math.nan)),
        "below_edge": last(hist, "emb_below_edge_measured"),
        "below_edge_predicted": last(hist, "emb_below_edge_predicted"),
        "emb_stable_rank_ratio": emb_sr / last(ref, "emb_stable_rank"),
        "hidden_rank_ratio": last(hist, "hidden_effective_rank") / last(ref, "hidden_effective_rank"),
        "pushdown_kept": last(hist, "grad_pushdown_kept"),
        "departure_loss": loss_dep,
        **lead,
        "fp32_plateau": plateau,
        "fp32_improvement": improvement,
        "fp32_at_unigram": bool(twin_why),  # the twin itself ends at the unigram level: undertrained
    }
