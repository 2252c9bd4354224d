"""Deletion and insertion curves on a one-channel 2x2 image whose score is its pixel sum."""

from __future__ import annotations

import pytest
import torch

from vlx.evaluate.deletion import (
    baseline_image,
    curve_area,
    deletion_curve,
    gaussian_blur,
    insertion_curve,
)

IMAGE = torch.tensor([[[4.0, 3.0], [2.0, 1.0]]])  # (1, 2, 2), sum 10


def pixel_sum(batch: torch.Tensor) -> torch.Tensor:
    return batch.sum(dim=(1, 2, 3))


def test_deletion_removes_the_most_salient_pixels_first() -> None:
    curve = deletion_curve(pixel_sum, IMAGE, IMAGE[0], steps=4, baseline="zero")
    assert curve.tolist() == [10.0, 6.0, 3.0, 1.0, 0.0]
    reverse = deletion_curve(pixel_sum, IMAGE, -IMAGE[0], steps=4, baseline="zero")
    assert reverse.tolist() == [10.0, 9.0, 7.0, 4.0, 0.0]


def test_insertion_puts_the_most_salient_pixels_back_first() -> None:
    curve = insertion_curve(pixel_sum, IMAGE, IMAGE[0], steps=4, baseline="zero")
    assert curve.tolist() == [0.0, 4.0, 7.0, 9.0, 10.0]


def test_areas_by_the_trapezoid_rule() -> None:
    # deletion: 0.25 * (10 / 2 + 6 + 3 + 1 + 0 / 2) = 3.75; insertion: 0.25 * (5 + 4 + 7 + 9) = 6.25
    assert curve_area(torch.tensor([10.0, 6.0, 3.0, 1.0, 0.0])) == pytest.approx(3.75)
    assert curve_area(torch.tensor([0.0, 4.0, 7.0, 9.0, 10.0])) == pytest.approx(6.25)
    assert curve_area(torch.tensor([1.0, 1.0])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2"):
        curve_area(torch.tensor([1.0]))


def test_equal_saliency_removes_pixels_in_row_major_order() -> None:
    image = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    tied = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert deletion_curve(pixel_sum, image, tied, steps=4).tolist() == [10.0, 9.0, 7.0, 4.0, 0.0]
    flat = torch.zeros(2, 2)
    assert deletion_curve(pixel_sum, image, flat, steps=4).tolist() == [10.0, 9.0, 7.0, 4.0, 0.0]


def test_mean_and_tensor_baselines() -> None:
    # mean 2.5: removing half the pixels (4 and 3) gives 2.5 + 2.5 + 2 + 1 = 8
    curve = deletion_curve(pixel_sum, IMAGE, IMAGE[0], steps=2, baseline="mean")
    assert curve.tolist() == [10.0, 8.0, 10.0]
    curve = deletion_curve(pixel_sum, IMAGE, IMAGE[0], steps=1, baseline=torch.tensor(-1.0))
    assert curve.tolist() == [10.0, -4.0]
    with pytest.raises(ValueError, match="unknown baseline"):
        deletion_curve(pixel_sum, IMAGE, IMAGE[0], baseline="noise")


def test_coarse_saliency_is_upsampled_to_the_image() -> None:
    image = torch.ones(1, 4, 4)
    coarse = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # the top-left quadrant ranks first

    def top_left(batch: torch.Tensor) -> torch.Tensor:
        return batch[:, 0, :2, :2].sum(dim=(1, 2))

    curve = deletion_curve(top_left, image, coarse, steps=4)
    assert curve.tolist() == [4.0, 0.0, 0.0, 0.0, 0.0]


def test_batches_are_split_without_changing_the_curve() -> None:
    calls = []

    def counted(batch: torch.Tensor) -> torch.Tensor:
        calls.append(batch.shape[0])
        return pixel_sum(batch)

    curve = deletion_curve(counted, IMAGE, IMAGE[0], steps=4, batch_size=2)
    assert calls == [2, 2, 1]
    assert curve.tolist() == [10.0, 6.0, 3.0, 1.0, 0.0]


def test_blur_keeps_a_constant_image_and_its_total() -> None:
    constant = torch.full((3, 9, 9), 0.7)
    assert torch.allclose(gaussian_blur(constant, sigma=2.0), constant)
    spike = torch.zeros(1, 21, 21)
    spike[0, 10, 10] = 1.0
    blurred = gaussian_blur(spike, sigma=1.5)
    assert blurred.sum() == pytest.approx(1.0, abs=1e-5)
    assert blurred[0, 10, 10] < 0.2 and blurred[0, 10, 11] > 0
    assert torch.allclose(baseline_image(constant, "blur"), constant)


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        deletion_curve(pixel_sum, IMAGE[0], IMAGE[0])
    with pytest.raises(ValueError, match=r"\(h, w\)"):
        insertion_curve(pixel_sum, IMAGE, IMAGE)
    with pytest.raises(ValueError, match="at least 1"):
        deletion_curve(pixel_sum, IMAGE, IMAGE[0], steps=0)
