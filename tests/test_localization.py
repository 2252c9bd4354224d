"""Weakly-supervised localization against boxes and errors worked out by hand."""

from __future__ import annotations

import pytest
import torch

from vlx.evaluate.localization import (
    LocalizationTally,
    box_iou,
    connected_components,
    largest_segment_box,
    localization_correct,
)


def test_components_are_labelled_by_their_first_pixel() -> None:
    mask = torch.tensor([[0, 1, 0, 0], [0, 1, 0, 1], [0, 0, 0, 1]], dtype=torch.bool)
    expected = torch.tensor([[0, 2, 0, 0], [0, 2, 0, 8], [0, 0, 0, 8]])
    assert torch.equal(connected_components(mask), expected)


def test_diagonal_neighbours_join_only_under_8_connectivity() -> None:
    mask = torch.tensor([[1, 0], [0, 1]], dtype=torch.bool)
    assert torch.equal(connected_components(mask, 8), torch.tensor([[1, 0], [0, 1]]))
    assert torch.equal(connected_components(mask, 4), torch.tensor([[1, 0], [0, 4]]))


def test_a_winding_component_is_one_label() -> None:
    mask = torch.zeros(9, 9, dtype=torch.bool)
    mask[::2] = True  # rows 0, 2, 4, 6, 8 joined alternately at the right and left edge
    mask[1::4, -1] = True
    mask[3::4, 0] = True
    labels = connected_components(mask, 4)
    assert set(labels[mask].tolist()) == {1}


def test_box_of_the_largest_segment() -> None:
    heat = torch.zeros(5, 5)
    heat[0, 0:3] = 1.0  # 3 pixels
    heat[3:5, 3:5] = 0.5  # 4 pixels, weaker but larger
    assert largest_segment_box(heat) == (3, 3, 4, 4)


def test_threshold_is_a_fraction_of_the_maximum() -> None:
    heat = torch.tensor([[1.0, 0.1], [0.2, 0.0]])
    assert largest_segment_box(heat, 0.15) == (0, 0, 0, 1)  # 0.1 < 0.15, 0.2 >= 0.15
    assert largest_segment_box(heat, 0.05) == (0, 0, 1, 1)


def test_ties_go_to_the_stronger_segment_then_to_row_major_order() -> None:
    stronger_second = torch.tensor([[0.5, 0.0], [0.0, 1.0]])
    assert largest_segment_box(stronger_second, connectivity=4) == (1, 1, 1, 1)
    equal = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert largest_segment_box(equal, connectivity=4) == (0, 0, 0, 0)
    assert largest_segment_box(equal, connectivity=8) == (0, 0, 1, 1)


@pytest.mark.parametrize(
    "heat", [torch.zeros(4, 4), torch.full((3, 3), -1.0), torch.zeros(0, 0)],
    ids=["all-zero", "all-negative", "empty"],
)
def test_a_map_without_positive_values_gives_no_box(heat: torch.Tensor) -> None:
    assert largest_segment_box(heat) is None
    assert not localization_correct(heat, [(0, 0, 1, 1)])


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="2-D"):
        largest_segment_box(torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="threshold"):
        largest_segment_box(torch.ones(2, 2), 1.5)
    with pytest.raises(ValueError, match="x1 < x0"):
        box_iou((2, 0, 1, 1), (0, 0, 1, 1))


def test_box_iou_counts_inclusive_pixels() -> None:
    assert box_iou((0, 0, 1, 1), (1, 1, 2, 2)) == pytest.approx(1 / 7)  # 1 / (4 + 4 - 1)
    assert box_iou((3, 3, 3, 3), (3, 3, 3, 3)) == 1.0
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert box_iou((0, 0, 9, 4), (5, 0, 14, 4)) == pytest.approx(25 / 75)


def test_localization_needs_the_iou_threshold() -> None:
    heat = torch.zeros(6, 6)
    heat[1:4, 1:4] = 1.0  # box (1, 1, 3, 3): 9 pixels
    truth = [(1, 1, 3, 4)]  # 12 pixels, IoU 9 / 12 = 0.75
    assert localization_correct(heat, truth)
    assert not localization_correct(heat, truth, iou=0.8)
    assert localization_correct(heat, [(5, 5, 5, 5), *truth])  # any true box counts
    assert not localization_correct(heat, [])


def test_tally_gives_ilsvrc_top1_and_top5_errors() -> None:
    good = torch.zeros(6, 6)
    good[1:4, 1:4] = 1.0
    bad = torch.zeros(6, 6)
    bad[5, 5] = 1.0
    box = [(1, 1, 3, 3)]
    tally = LocalizationTally()
    # true class 7 predicted second, its map localizes: wrong at top-1, right at top-5
    tally.add([3, 7, 1, 2, 5], [bad, good, good, good, good], {7: box})
    # true class 7 predicted first, its map misses: classified, never localized
    tally.add([7, 3, 1, 2, 5], [bad, good, good, good, good], {7: box})
    # the true class is not among the five
    tally.add([1, 2, 3, 4, 5], [good] * 5, {9: box})
    summary = tally.summary()
    assert summary["images"] == 3
    assert summary["top1_localization_error"] == pytest.approx(1.0)
    assert summary["top5_localization_error"] == pytest.approx(2 / 3)
    assert summary["top1_classification_error"] == pytest.approx(2 / 3)
    assert summary["top5_classification_error"] == pytest.approx(1 / 3)


def test_tally_checks_its_input() -> None:
    tally = LocalizationTally()
    with pytest.raises(ValueError, match="no images"):
        tally.summary()
    with pytest.raises(ValueError, match="2 maps for 3"):
        tally.add([1, 2, 3], torch.zeros(2, 4, 4), {1: [(0, 0, 1, 1)]})
