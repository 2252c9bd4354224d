"""Views put back on the image, on numbers worked out by hand."""

from __future__ import annotations

import pytest
import torch

from vlx.tasks.hf_vlm_layouts import View, ViewCanvas, cropped_box, tile_boxes


def tokens(*rows: list[float]) -> torch.Tensor:
    """(B, L, 1) tokens, one row of values per view."""
    return torch.tensor(rows, dtype=torch.float32)[..., None]


def test_a_tile_lands_in_its_box_and_the_base_is_stretched_over_the_canvas():
    # The tile (2 x 2 patches) covers the left half: the canvas is 2 x 4 cells. The base
    # view [[1, 2], [3, 4]] is stretched to 4 columns bilinearly (half-pixel centres:
    # 1, 1.25, 1.75, 2) and the tile's tokens are added over the left two columns.
    layout = [View((2, 2), (0.0, 0.0, 1.0, 0.5)), View((2, 2))]
    grid = ViewCanvas([layout])(tokens([10, 20, 30, 40], [1, 2, 3, 4]))
    assert grid.shape == (1, 1, 2, 4)
    assert grid[0, 0].tolist() == [[11, 21.25, 1.75, 2], [33, 43.25, 3.75, 4]]


def test_a_cls_token_is_dropped_and_a_crop_leaves_zeros_either_side():
    # CLIP's centre crop of a 90 x 60 image keeps the middle 60 columns: 1/6 on each side.
    box = cropped_box(60, 90, 32, (32, 32))
    assert box == pytest.approx((0.0, 1 / 6, 1.0, 5 / 6))
    grid = ViewCanvas([[View((2, 2), box)]])(tokens([99, 1, 2, 3, 4]))
    # 2 columns over 2/3 of the width: a canvas of 3, the crop from 0.5 to 2.5 (halves up)
    assert grid[0, 0].tolist() == [[0, 1, 2], [0, 3, 4]]
    wide = ViewCanvas([[View((1, 4), box)]])(tokens([99, 1, 2, 3, 4]))
    assert wide[0, 0].tolist() == [[0, 1, 2, 3, 4, 0]]


def test_padding_around_the_image_is_cut_off():
    # A 64 x 64 frame of 32 px tiles holding an image 43 px high placed 10 px down: the top
    # tiles start 10/43 of the image above it, the bottom ones end 11/43 below it.
    boxes = tile_boxes((64, 64), (10, 0, 43, 64), 32)
    assert boxes[0] == pytest.approx((-10 / 43, 0.0, 22 / 43, 0.5))
    assert boxes[3] == pytest.approx((22 / 43, 0.5, 54 / 43, 1.0))


def test_qwen_merge_windows_are_undone_and_merged_tokens_are_row_major():
    # A 2 x 4 grid in 2 x 2 windows: tokens 0-3 are the left window, 4-7 the right one.
    flat = torch.arange(8, dtype=torch.float32)[:, None]
    grid = ViewCanvas([[View((2, 4))]], window=2)(flat)
    assert grid[0, 0].tolist() == [[0, 1, 4, 5], [2, 3, 6, 7]]
    merged = ViewCanvas([[View((2, 4))]], window=2)(torch.tensor([[7.0], [9.0]]))
    assert merged[0, 0].tolist() == [[7, 9]]


def test_a_batch_of_different_layouts_is_on_the_largest_grid():
    layouts = [[View((2, 2))], [View((1, 1))]]
    grid = ViewCanvas(layouts)(tokens([1, 2, 3, 4], [0, 0, 0, 5]))  # patches last
    assert grid.shape == (2, 1, 2, 2)
    assert grid[1, 0].tolist() == [[5, 5], [5, 5]]
