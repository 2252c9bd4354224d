"""The pointing game with rejection (Appendix D), on maps and masks worked out by hand."""

from __future__ import annotations

import pytest
import torch

from vlx.evaluate.pointing import RejectionTally, grown, rejection_outcomes, zhang_tolerance


def _maps_and_masks() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    maps = torch.tensor(
        [
            [[2.0, 0.0], [0.0, 0.0]],  # present, peak (0, 0) in its mask: hit
            [[0.3, 0.0], [0.0, 0.0]],  # absent, max 0.3 < 0.5: correct rejection
            [[0.0, 0.0], [0.0, 1.0]],  # absent, max 1 >= 0.5: false alarm
            [[0.2, 0.0], [0.0, 0.0]],  # present, max 0.2 < 0.5: rejected, a miss
            [[0.0, 3.0], [0.0, 0.0]],  # present, peak (1, 0) outside its mask: miss
        ]
    )
    masks = torch.zeros(5, 2, 2, dtype=torch.bool)
    masks[0, 0, 0] = masks[3, 0, 0] = masks[4, 1, 1] = True
    present = torch.tensor([True, False, False, True, True])
    return maps, masks, present


def test_outcomes_of_each_kind() -> None:
    outcomes = rejection_outcomes(*_maps_and_masks(), threshold=0.5)
    assert outcomes == ["hit", "correct_rejection", "false_alarm", "miss", "miss"]


def test_tally_accuracy_counts_hits_and_correct_rejections() -> None:
    tally = RejectionTally(threshold=0.5)
    tally.add(*_maps_and_masks())
    summary = tally.summary()
    assert summary["accuracy"] == pytest.approx(2 / 5)
    assert (summary["hit"], summary["miss"], summary["false_alarm"]) == (1, 2, 1)
    assert summary["correct_rejection"] == 1 and summary["count"] == 5


def test_a_zero_threshold_rejects_nothing_and_a_high_one_everything() -> None:
    maps, masks, present = _maps_and_masks()
    assert "correct_rejection" not in rejection_outcomes(maps, masks, present, 0.0)
    assert rejection_outcomes(maps, masks, present, 10.0) == [
        "miss", "correct_rejection", "correct_rejection", "miss", "miss"
    ]


def test_all_zero_map_of_a_present_class_is_a_miss() -> None:
    outcome = rejection_outcomes(
        torch.zeros(1, 2, 2), torch.ones(1, 2, 2, dtype=torch.bool), torch.tensor([True]), 0.0
    )
    assert outcome == ["miss"]  # accepted at 0, but a flat map has no peak


def test_mismatched_lengths_and_empty_tally_are_errors() -> None:
    with pytest.raises(ValueError, match="differ in K"):
        rejection_outcomes(torch.zeros(2, 2, 2), torch.zeros(1, 2, 2), torch.ones(2), 0.5)
    with pytest.raises(ValueError, match="no classes"):
        RejectionTally(0.5).summary()


def test_pointing_tolerance_disk_by_hand() -> None:
    assert zhang_tolerance(224) == 15 and zhang_tolerance(64) == 4 and zhang_tolerance(128) == 9
    mask = torch.zeros(1, 1, 7, 7, dtype=torch.bool)
    mask[0, 0, 3, 3] = True
    near = grown(mask, 2)[0, 0]
    # every pixel within Euclidean distance 2 of (3, 3): 13 pixels, (1, 1) off-diagonal in
    assert int(near.sum()) == 13
    assert near[1, 3] and near[2, 2] and not near[1, 2] and not near[0, 3]
