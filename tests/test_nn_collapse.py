"""The collapse criterion: the verdict on a finished run and the step from which it holds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from zipfrmt.nn import DataConfig, TrainConfig, collapse_verdict
from zipfrmt.nn.collapse import collapse_step

NAN = math.nan


def _history(eval_loss, hidden=None, emb=None, unigram=4.0):
    n = len(eval_loss)
    return xr.Dataset(
        {"eval_loss": ("step", eval_loss), "hidden_effective_rank": ("step", hidden or [NAN] * n),
         "emb_effective_rank_q": ("step", emb or [NAN] * n)},
        coords={"step": np.arange(n)}, attrs={"unigram_entropy": unigram})


def test_collapse_step_is_the_start_of_the_last_collapsed_stretch():
    cfg = TrainConfig()
    hist = _history([5.0, 3.0, 2.0, 3.96, 4.0])
    assert collapse_step(hist, None, cfg) == 3.0
    assert collapse_verdict(hist, None, cfg)[0]
    healthy = _history([5.0, 3.0, 2.0, 2.0, 2.0])
    assert math.isnan(collapse_step(healthy, None, cfg))
    assert not collapse_verdict(healthy, None, cfg)[0]


def test_rank_part_needs_the_reference_and_iid_data_skips_the_unigram_part():
    cfg = TrainConfig()
    ref = xr.Dataset({"hidden_effective_rank": ("step", [9.0]), "emb_effective_rank": ("step", [20.0])},
                     coords={"step": [0]})
    low_rank = _history([2.0, 2.0], hidden=[8.0, 4.0])
    assert not collapse_verdict(low_rank, None, cfg)[0]
    collapsed, why = collapse_verdict(low_rank, ref, cfg)
    assert collapsed and "hidden effective rank" in why
    assert collapse_step(low_rank, ref, cfg) == 1.0
    iid = TrainConfig(data=DataConfig(source="zipf"))
    stuck = _history([4.0, 4.0])
    assert collapse_verdict(stuck, None, cfg)[0] and not collapse_verdict(stuck, None, iid)[0]
    assert math.isnan(collapse_step(stuck, None, iid))


def test_the_unigram_level_is_measured_on_the_evaluation_windows_when_recorded():
    cfg = TrainConfig()
    hist = _history([3.95, 3.95], unigram=4.3)
    assert collapse_verdict(hist, None, cfg)[0] is False  # 0.35 nats below the training stream's entropy
    hist.attrs["unigram_loss"] = 3.97  # but a unigram model scores 3.97 on these very windows
    collapsed, why = collapse_verdict(hist, None, cfg)
    assert collapsed and "unigram loss 3.9700" in why


def test_embedding_rank_changes_are_not_collapse():
    """Quantization raises (or, in the dead zone, lowers) the embedding's ranks: reported, never a verdict."""
    cfg = TrainConfig()
    ref = xr.Dataset({"hidden_effective_rank": ("step", [9.0]), "emb_effective_rank": ("step", [20.0])},
                     coords={"step": [0]})
    hist = _history([2.0, 2.0], hidden=[9.0, 8.5], emb=[20.0, 2.0])
    assert not collapse_verdict(hist, ref, cfg)[0]


def test_plateau_is_a_small_improvement_over_the_last_quarter():
    from zipfrmt.nn.collapse import reached_plateau

    steps = np.arange(0, 101, 10)
    flat = xr.Dataset({"eval_loss": ("step", 5.0 - 2.0 * (1 - np.exp(-steps / 10.0)))}, coords={"step": steps})
    ok, gain = reached_plateau(flat)
    assert ok and 0 <= gain < 0.05
    still = xr.Dataset({"eval_loss": ("step", 5.0 - 0.01 * steps)}, coords={"step": steps})
    ok, gain = reached_plateau(still)
    assert not ok and gain == pytest.approx(0.3)


def test_the_unigram_part_is_void_against_a_reference_stuck_there_too():
    cfg = TrainConfig()
    run = _history([4.0, 3.98], hidden=[9.0, 9.0], unigram=4.0)
    run.attrs["unigram_loss"] = 4.0
    fine_ref = _history([4.0, 3.5], hidden=[9.0, 9.0])
    fine_ref.attrs["unigram_loss"] = 4.0
    stuck_ref = _history([4.0, 3.97], hidden=[9.0, 9.0])
    stuck_ref.attrs["unigram_loss"] = 4.0
    assert collapse_verdict(run, fine_ref, cfg)[0]
    assert not collapse_verdict(run, stuck_ref, cfg)[0]
    assert math.isnan(collapse_step(run, stuck_ref, cfg))
