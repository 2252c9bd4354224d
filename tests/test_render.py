"""Pictures: the jet colour map, overlays, gradient images, grids and atomic PNG writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vlx.explanation import Explanation
from vlx.render import explanation_picture, gradient_image, grid, jet, overlay, save_png


def test_jet_endpoints_and_middle():
    # r = 1.5 - |4v - 3|, g = 1.5 - |4v - 2|, b = 1.5 - |4v - 1|, clipped to [0, 1]
    colours = jet(np.array([0.0, 0.5, 1.0]))
    assert colours.tolist() == [[0, 0, 128], [128, 255, 128], [128, 0, 0]]
    assert jet(np.array([-3.0, 7.0])).tolist() == [[0, 0, 128], [128, 0, 0]]  # clipped


def test_overlay_blends_half_and_half_and_resizes_the_map():
    image = np.full((4, 6, 3), 100, dtype=np.uint8)
    result = overlay(image, torch.ones(2, 3), alpha=0.5)
    assert result.shape == (4, 6, 3)
    # 0.5 * 100 + 0.5 * jet(1) = (114, 50, 50)
    assert result[0, 0].tolist() == [114, 50, 50]


def test_gradient_image_maps_mean_to_grey_and_one_std_to_plus_point_one():
    g = torch.tensor([[[-1.0, 1.0], [-1.0, 1.0]]]).expand(3, 2, 2)  # mean 0, std 1
    picture = gradient_image(g)
    assert picture.shape == (2, 2, 3)
    assert picture[0, 0].tolist() == [102] * 3 and picture[0, 1].tolist() == [153] * 3
    assert (gradient_image(torch.zeros(3, 2, 2)) == 128).all()


def test_grid_lays_out_rows_and_keeps_aspect():
    panels = [(f"p{i}", np.zeros((50, 100, 3), dtype=np.uint8)) for i in range(5)]
    sheet = grid(panels, columns=2, caption="a caption", panel_size=100)
    assert sheet.width == 2 * 106 + 6
    rows = 3
    assert sheet.height > rows * 50 and sheet.height < rows * 106 + 60
    with pytest.raises(ValueError):
        grid([])


def test_explanation_picture_overlays_coarse_maps_and_draws_gradients():
    image = Image.new("RGB", (40, 20), "white")
    maps = torch.zeros(1, 1, 2, 2)
    maps[0, 0, 0, 0] = 1.0
    coarse = explanation_picture(Explanation(maps, torch.zeros(1, 1), None, "gradcam"), 0, 0, image)
    assert coarse.shape == (20, 40, 3)
    assert coarse[0, 0, 0] > coarse[0, 0, 2]  # red (high) in the top-left corner
    assert coarse[-1, -1, 2] > coarse[-1, -1, 0]  # blue (low) bottom-right
    channels = torch.randn(1, 1, 3, 8, 8)
    fine = Explanation(channels.abs().amax(2), torch.zeros(1, 1), None, "guided-backprop",
                       channels=channels)
    assert explanation_picture(fine, 0, 0, image).shape == (20, 40, 3)


def test_save_png_is_atomic(tmp_path):
    path = save_png(np.zeros((3, 3, 3), dtype=np.uint8), tmp_path / "a" / "x.png")
    assert Image.open(path).size == (3, 3)
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.png"]

    class Broken(Image.Image):
        def save(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_png(Broken(), tmp_path / "b" / "y.png")
    assert list((tmp_path / "b").iterdir()) == []
