"""Inside/outside energy ratio (Sec. 8.1) on maps worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from vlx.evaluate.energy import inside_outside_ratio

MASK = torch.tensor([[True, False], [False, False]])


def test_ratio_of_means() -> None:
    heat = torch.tensor([[4.0, 2.0], [1.0, 1.0]])  # inside 4, outside (2 + 1 + 1) / 3
    assert inside_outside_ratio(heat, MASK) == pytest.approx(3.0)


def test_a_uniform_map_scores_one() -> None:
    assert inside_outside_ratio(torch.full((2, 2), 0.3), MASK) == pytest.approx(1.0)


def test_all_zero_map_is_nan_and_zero_outside_is_infinite() -> None:
    assert math.isnan(inside_outside_ratio(torch.zeros(2, 2), MASK))
    assert inside_outside_ratio(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), MASK) == math.inf


def test_a_coarse_map_is_upsampled_to_the_mask() -> None:
    assert inside_outside_ratio(torch.tensor([[2.0]]), MASK) == pytest.approx(1.0)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2, :2] = True
    coarse = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # bilinear: inside 0.765625, outside 0.078125
    assert inside_outside_ratio(coarse, mask) == pytest.approx(0.765625 / 0.078125)


@pytest.mark.parametrize("mask", [torch.zeros(2, 2, dtype=torch.bool), torch.ones(2, 2)],
                         ids=["empty", "full"])
def test_a_mask_without_inside_or_outside_is_an_error(mask: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="no inside or no outside"):
        inside_outside_ratio(torch.ones(2, 2), mask)


def test_shapes_must_be_two_dimensional() -> None:
    with pytest.raises(ValueError, match="2-D"):
        inside_outside_ratio(torch.ones(1, 2, 2), MASK)
