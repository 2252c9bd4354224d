"""The Explanation record and its explicit post-processing (vlx.explanation)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vlx.explanation import Explanation, normalize, peak_coordinates, upsample

T = torch.tensor


def record(maps: torch.Tensor, **fields) -> Explanation:
    n, t = maps.shape[:2]
    return Explanation(maps=maps, scores=torch.zeros(n, t), targets=None, method="test", **fields)


def test_upsample_is_bilinear_without_align_corners() -> None:
    maps = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    out = upsample(maps, (11, 13))
    expected = F.interpolate(maps.reshape(6, 1, 5, 7), size=(11, 13), mode="bilinear",
                             align_corners=False).reshape(2, 3, 11, 13)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    aligned = F.interpolate(maps.reshape(6, 1, 5, 7), size=(11, 13), mode="bilinear",
                            align_corners=True).reshape(2, 3, 11, 13)
    assert not torch.allclose(out, aligned)
    assert upsample(maps, (5, 7)) is maps


def test_upsample_literal_values() -> None:
    # 1x2 -> 1x4, align_corners=False: source x = (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25
    # clamped at the edges: [a, 0.75 a + 0.25 b, 0.25 a + 0.75 b, b] with a = 0, b = 4
    out = upsample(T([[[[0.0, 4.0]]]]), (1, 4))
    assert out.tolist() == [[[[0.0, 1.0, 3.0, 4.0]]]]


def test_normalize_each_map_to_unit_range() -> None:
    maps = T([[[[1.0, 3.0], [5.0, 9.0]], [[-2.0, -2.0], [0.0, 2.0]]],
              [[[7.0, 7.0], [7.0, 7.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    out = normalize(maps)
    # (x - min) / (max - min): [1, 3, 5, 9] -> [0, 2, 4, 8] / 8; [-2, -2, 0, 2] -> [0, 0, 2, 4] / 4
    expected = T([[[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.0], [0.5, 1.0]]],
                  [[[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]])  # constant -> zeros
    assert out.tolist() == expected.tolist()
    assert torch.isfinite(out).all()


def test_explanation_methods_return_new_records() -> None:
    maps = T([[[[0.0, 4.0], [2.0, 2.0]]]])
    e = record(maps, alphas=T([[[1.0]]]), layer="conv")
    n = e.normalized()
    assert n.maps.tolist() == [[[[0.0, 1.0], [0.5, 0.5]]]]
    assert n.alphas is e.alphas and n.layer == "conv" and e.maps is maps
    u = e.upsampled((4, 4))
    assert u.maps.shape == (1, 1, 4, 4) and u.scores is e.scores
    torch.testing.assert_close(u.maps, upsample(maps, (4, 4)), rtol=0, atol=0)
    assert (e.num_images, e.num_targets) == (1, 1)


def test_peaks_are_x_y_and_ties_go_to_first_in_row_major_order() -> None:
    maps = T([[[[0.0, 5.0, 1.0], [5.0, 0.0, 5.0]],   # tie between (1,0), (0,1), (2,1) -> (1, 0)
               [[0.0, 0.0, 0.0], [0.0, 0.0, 9.0]]],  # single max at row 1, col 2 -> (2, 1)
              [[[3.0, 3.0, 3.0], [3.0, 3.0, 3.0]],   # constant -> (0, 0)
               [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]]])  # row 1, col 0 -> (0, 1)
    peaks = record(maps).peaks()
    assert peaks.tolist() == [[[1, 0], [2, 1]], [[0, 0], [0, 1]]]
    assert peaks.dtype == torch.long
    assert peak_coordinates(maps).tolist() == peaks.tolist()


def test_peaks_with_size_upsample_first() -> None:
    # 2x2 with a single 1 at (x=1, y=0), upsampled to 4x4: row weights on row 0 are
    # [1, 0.75, 0.25, 0], column weights on col 1 are [0, 0.25, 0.75, 1] -> the maximum
    # 1 * 1 = 1 sits at (x=3, y=0) only (scaling the coarse peak would give x=2).
    e = record(T([[[[0.0, 1.0], [0.0, 0.0]]]]))
    assert e.peaks().tolist() == [[[1, 0]]]
    assert e.peaks((4, 4)).tolist() == [[[3, 0]]]
    # (H, W) = (2, 8): source x = (i + 0.5) / 4 - 0.5 -> weights on col 1
    # [0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1]: a tie at x = 6 and 7 -> the first, x = 6
    assert e.peaks((2, 8)).tolist() == [[[6, 0]]]


@pytest.mark.parametrize(("maps", "scores", "message"), [
    (torch.zeros(1, 4, 4), torch.zeros(1, 4), r"maps must be \(N, T, h, w\), got shape \(1, 4, 4"),
    (torch.zeros(2, 3, 4, 4), torch.zeros(2, 2), r"scores \(2, 2\) do not match maps \(2, 3, 4"),
    (torch.zeros(2, 3, 4, 4), torch.zeros(6), r"scores \(6,\) do not match"),
])
def test_shape_validation(maps, scores, message) -> None:
    with pytest.raises(ValueError, match=message):
        Explanation(maps=maps, scores=scores, targets=None, method="test")


def test_explanation_is_frozen() -> None:
    e = record(torch.zeros(1, 1, 2, 2))
    with pytest.raises(AttributeError):
        e.maps = torch.ones(1, 1, 2, 2)
