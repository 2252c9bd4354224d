"""Occlusion sensitivity (vlx.methods.occlusion) on linear models whose drops are computed by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vlx.methods.occlusion import occlusion

T = torch.tensor

IMAGE = torch.arange(1.0, 17.0).reshape(1, 1, 4, 4)  # [[1..4], [5..8], [9..12], [13..16]]
WEIGHT = T([[1.0, 0, 0, 1], [0, 0, 0, 0], [0, 2, 0, 0], [0, 0, -1, 0]])
# WEIGHT * IMAGE = [[1, 0, 0, 4], [0, 0, 0, 0], [0, 20, 0, 0], [0, 0, -15, 0]]


class Linear(nn.Module):
    """Class 0 = sum(WEIGHT * x); class 1 = sum(x). An occluded window drops its own terms."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([(x[:, 0] * WEIGHT).sum((1, 2)), x.sum((1, 2, 3))], dim=1)


def test_non_overlapping_windows_exact() -> None:
    # window 2, stride 2, baseline 0: each pixel lies in one window; its value is that window's
    # drop = the window's sum of the class's terms.
    #   class 0: TL 1 + 0 + 0 + 0 = 1, TR 0 + 4 + 0 + 0 = 4, BL 0 + 20 + 0 + 0 = 20, BR -15
    #   class 1: TL 1+2+5+6 = 14, TR 3+4+7+8 = 22, BL 9+10+13+14 = 46, BR 11+12+15+16 = 54
    e = occlusion(Linear().eval(), IMAGE, targets=[[0, 1]], window=2, stride=2)
    expected = T([[[[1.0, 1, 4, 4], [1, 1, 4, 4], [20, 20, -15, -15], [20, 20, -15, -15]],
                   [[14.0, 14, 22, 22], [14, 14, 22, 22], [46, 46, 54, 54], [46, 46, 54, 54]]]])
    torch.testing.assert_close(e.maps, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(e.scores, T([[10.0, 136.0]]), rtol=0, atol=0)  # 1+4+20-15, 136
    assert e.targets == [[0, 1]] and e.method == "occlusion"
    assert e.meta == {"input_size": (4, 4), "window": (2, 2), "stride": (2, 2)}


def test_overlapping_windows_average_the_drops() -> None:
    # window 2, stride 1: windows start at rows/cols 0, 1, 2 (9 windows); class 0 drops:
    #   (0,0): 1   (0,1): 0   (0,2): 4   (1,0): 20   (1,1): 20   (1,2): 0
    #   (2,0): 20  (2,1): 20 - 15 = 5   (2,2): -15
    # pixel (0,0): window (0,0) only -> 1;  pixel (0,3): window (0,2) only -> 4
    # pixel (1,1): windows (0,0),(0,1),(1,0),(1,1) -> (1 + 0 + 20 + 20) / 4 = 10.25
    # pixel (3,2): windows (2,1),(2,2) -> (5 - 15) / 2 = -5
    e = occlusion(Linear().eval(), IMAGE, targets=0, window=2, stride=1)
    maps = e.maps[0, 0]
    assert maps[0, 0].item() == pytest.approx(1.0)
    assert maps[0, 3].item() == pytest.approx(4.0)
    assert maps[1, 1].item() == pytest.approx(10.25)
    assert maps[3, 2].item() == pytest.approx(-5.0)


def test_baseline_replaces_the_window() -> None:
    # baseline 1, class 1 (sum of pixels): drop of a window = sum(x - 1) over it
    #   TL 14 - 4 = 10, TR 22 - 4 = 18, BL 46 - 4 = 42, BR 54 - 4 = 50
    e = occlusion(Linear().eval(), IMAGE, targets=1, window=2, stride=2, baseline=1.0)
    assert e.maps[0, 0, ::2, ::2].tolist() == [[10.0, 18.0], [42.0, 50.0]]


def test_last_window_is_flush_with_the_edge() -> None:
    # window 3, stride 2 on 4 pixels: starts 0 and 1 (flush), so every pixel is covered.
    # class 1 drops: (0,0) rows 0-2 x cols 0-2 = 6 + 18 + 30 = 54, (0,1) = 9 + 21 + 33 = 63,
    # (1,0) = 18 + 30 + 42 = 90, (1,1) = 21 + 33 + 45 = 99
    # pixel (0,0): 54; pixel (3,3): 99; pixel (1,1) in all four: (54 + 63 + 90 + 99) / 4 = 76.5
    e = occlusion(Linear().eval(), IMAGE, targets=1, window=3, stride=2)
    assert e.maps[0, 0, 0, 0].item() == pytest.approx(54.0)
    assert e.maps[0, 0, 3, 3].item() == pytest.approx(99.0)
    assert e.maps[0, 0, 1, 1].item() == pytest.approx(76.5)


class TwoInputs(nn.Module):
    """score_t = sum(WEIGHT * image) * question[:, t] * scale: the other inputs must follow
    their own image into every occluded copy."""

    def forward(self, image: torch.Tensor, question: torch.Tensor, *, scale: torch.Tensor):
        return (image[:, 0] * WEIGHT).sum((1, 2))[:, None] * question * scale[:, None]


def test_extra_inputs_and_kwargs_follow_their_image() -> None:
    # image 0 = IMAGE, question (2, 1), scale 1 -> 2 * M and M; image 1 = -IMAGE, question
    # (3, 0), scale 0.5 -> -1.5 * M and 0, where M is the class-0 map of the first test.
    m = T([[1.0, 1, 4, 4], [1, 1, 4, 4], [20, 20, -15, -15], [20, 20, -15, -15]])
    images = torch.cat([IMAGE, -IMAGE])
    question = T([[2.0, 1.0], [3.0, 0.0]])
    scale = T([1.0, 0.5])
    for batch_size in (1, 3, 64):
        e = occlusion(TwoInputs().eval(), images, question, targets=[[0, 1], [0, 1]], window=2,
                      stride=2, batch_size=batch_size, model_kwargs={"scale": scale})
        expected = torch.stack([torch.stack([2 * m, m]), torch.stack([-1.5 * m, 0 * m])])
        torch.testing.assert_close(e.maps, expected, rtol=0, atol=1e-5)


def test_input_index_picks_the_occluded_input() -> None:
    class ImageSecond(nn.Module):
        def forward(self, question: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
            return TwoInputs()(image, question, scale=torch.ones(image.shape[0]))

    e = occlusion(ImageSecond().eval(), T([[2.0]]), IMAGE, targets=0, window=2, stride=2,
                  input_index=1)
    assert e.maps[0, 0, ::2, ::2].tolist() == [[2.0, 8.0], [40.0, -30.0]]


def test_batch_size_does_not_change_the_maps() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    one = occlusion(model, x, targets=[[0, 4], [2, 1]], window=3, stride=2, batch_size=1)
    many = occlusion(model, x, targets=[[0, 4], [2, 1]], window=3, stride=2, batch_size=1000)
    assert one.maps.abs().sum() > 0
    torch.testing.assert_close(one.maps, many.maps, rtol=1e-5, atol=1e-6)
    # each image explained alone gives the same map (no image left out)
    alone = occlusion(model, x[1:], targets=[[2, 1]], window=3, stride=2)
    torch.testing.assert_close(many.maps[1:], alone.maps, rtol=1e-5, atol=1e-6)
    # targets=None explains the argmax
    top = model(x).argmax(1).tolist()
    auto = occlusion(model, x, window=3, stride=2)
    assert auto.targets == [[c] for c in top]


def test_callable_target() -> None:
    e = occlusion(Linear().eval(), IMAGE, targets=lambda out: out[:, :1] - out[:, 1:], window=2, stride=2)
    # class 0 minus class 1 drops: TL 1 - 14, TR 4 - 22, BL 20 - 46, BR -15 - 54
    assert e.targets is None
    assert e.maps[0, 0, ::2, ::2].tolist() == [[-13.0, -18.0], [-26.0, -69.0]]


@pytest.mark.parametrize(("options", "message"), [
    ({"window": 5}, r"window \(5, 5\) is larger than the input \(4, 4\)"),
    ({"window": (2, 5)}, "larger than the input"),
    ({"window": 0}, "window must be a positive int"),
    ({"window": (1, 2, 3)}, "window must be"),
    ({"stride": 0}, "stride must be a positive int"),
    ({"batch_size": 0}, "batch_size must be at least 1, got 0"),
    ({"window": 2, "stride": 3}, r"stride \(3, 3\) is larger than the window \(2, 2\)"),
    ({"stride": (1, 3)}, "larger than the window"),
])
def test_bad_arguments_raise_value_error(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        occlusion(Linear().eval(), IMAGE, targets=0, **{"window": 2, "stride": 2, **options})
