"""Where a generative VLM's image tokens lie on the image: views, their patch grids, one canvas.

A processor cuts an image into views: one fixed grid (LLaVA-1.5, PaliGemma), tiles of a
resized image plus a base image of the whole (LLaVA-NeXT, Idefics3), or one grid of a size
the image decides (Qwen2-VL). Each ``View`` is a patch grid and the box of the image it
covers (fractions, which may reach past the image where a processor pads or crops). A layer
of the vision tower (or the projector) gives one row of tokens per view (Qwen2-VL: one run of
rows per image, in 2x2 merge windows, which Qwen2.5-VL's blocks reorder again into attention
windows); ``ViewCanvas`` puts every view back in its box on one
grid per example, so Grad-CAM's map covers the image as it was given. Where two views cover
a place (a tile and the base image) their activations, and gradients, are added unit by unit:
the same vision tower's unit seen twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Box = tuple[float, float, float, float]
"""(top, left, bottom, right) as fractions of the image's height and width."""
WHOLE: Box = (0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class View:
    """A patch grid (rows, cols) and the part of the image it shows."""

    grid: tuple[int, int]
    box: Box = WHOLE


def cropped_box(height: int, width: int, shortest: int, crop: tuple[int, int]) -> Box:
    """The box a resize of the shortest side to ``shortest`` and a centre crop of ``crop``
    (height, width) keep of an H x W image (CLIP's preprocessing)."""
    scale = shortest / min(height, width)
    resized = (height * scale, width * scale)
    top = (resized[0] - crop[0]) / 2 / resized[0]
    left = (resized[1] - crop[1]) / 2 / resized[1]
    return (top, left, 1 - top, 1 - left)


def tile_boxes(frame: tuple[int, int], placed: tuple[int, int, int, int], tile: int
               ) -> list[Box]:
    """Boxes of the ``tile`` x ``tile`` tiles of a frame (height, width), row by row, where the
    image fills ``placed`` (top, left, height, width) of the frame and padding the rest."""
    top, left, height, width = placed
    return [((r * tile - top) / height, (c * tile - left) / width,
             ((r + 1) * tile - top) / height, ((c + 1) * tile - left) / width)
            for r in range(frame[0] // tile) for c in range(frame[1] // tile)]


class ViewCanvas:
    """A layer's tokens -> (N, C, h, w): each example's views resampled into their boxes of
    one canvas per example (at the finest view's resolution), every canvas resized to the
    batch's largest (an example alone keeps its own).

    ``layouts[n]`` are example n's views in the order the model stacks them. Tokens (B, L, C)
    hold one view per row (B = every view of the batch), patches last (a CLS token first is
    dropped); tokens (R, C) hold the views one after another (Qwen2-VL), each in windows of
    ``window`` x ``window`` patches. A layer whose token count is a factor f*f below the
    grids' (a merge, a pixel shuffle) is on grids f times coarser, row-major. ``orders[n]``
    (Qwen2.5-VL) says which of example n's merge windows each window of the layer's rows is.
    """

    def __init__(self, layouts: Sequence[Sequence[View]], window: int = 1,
                 orders: Sequence[torch.Tensor] | None = None) -> None:
        self.layouts = [list(views) for views in layouts]
        self.window = window
        self.orders = orders

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() == 4:
            return tokens
        if self.orders is not None:
            tokens = self._in_processor_order(tokens)
        views = [view for views in self.layouts for view in views]
        grids = self._view_grids(tokens, views)
        canvases, start = [], 0
        for layout in self.layouts:
            canvases.append(_canvas(grids[start : start + len(layout)], layout))
            start += len(layout)
        height = max(c.shape[-2] for c in canvases)
        width = max(c.shape[-1] for c in canvases)
        return torch.stack([_resized(c, (height, width)) for c in canvases])

    def _in_processor_order(self, tokens: torch.Tensor) -> torch.Tensor:
        """(R, C) rows in attention-window order -> the processor's: each merge window (or
        merged token) put back where the processor had it."""
        offsets = torch.tensor([0, *[len(o) for o in self.orders]]).cumsum(0)
        order = torch.cat([o + offset for o, offset in zip(self.orders, offsets)])
        units = tokens.reshape(len(order), -1, tokens.shape[-1])
        return units[torch.argsort(order.to(tokens.device))].reshape(tokens.shape)

    def _view_grids(self, tokens: torch.Tensor, views: list[View]) -> list[torch.Tensor]:
        """Each view's (C, h, w) grid from the layer's tokens."""
        patches = sum(v.grid[0] * v.grid[1] for v in views)
        if tokens.dim() == 3:
            if tokens.shape[0] != len(views):
                raise ValueError(f"{tokens.shape[0]} token rows for {len(views)} image views; "
                                 "explain a layer of the vision tower or the projector")
            per_view = views[0].grid[0] * views[0].grid[1]
            factor = _factor(per_view, tokens.shape[1])
            rows = [tokens[b, tokens.shape[1] - _count(v, factor):] for b, v in enumerate(views)]
        else:
            factor = _factor(patches, tokens.shape[0])
            sizes = [_count(v, factor) for v in views]
            if sum(sizes) != tokens.shape[0]:
                raise ValueError(f"{tokens.shape[0]} tokens do not hold the views' patches")
            rows = list(tokens.split(sizes))
        window = self.window if factor == 1 else 1
        return [_grid(row, view.grid[0] // factor, view.grid[1] // factor, window)
                for row, view in zip(rows, views)]


def _factor(patches: int, tokens: int) -> int:
    """How much coarser than the patch grid a layer's tokens are (1 with a CLS token)."""
    if tokens >= patches:
        return 1
    factor = math.isqrt(patches // tokens)
    if factor * factor * tokens != patches:
        raise ValueError(f"{tokens} tokens are not the patch grid of {patches} patches merged")
    return factor


def _count(view: View, factor: int) -> int:
    return (view.grid[0] // factor) * (view.grid[1] // factor)


def _grid(row: torch.Tensor, height: int, width: int, window: int) -> torch.Tensor:
    """(L, C) tokens -> (C, h, w); ``window`` > 1: the tokens run window by window."""
    channels = row.shape[-1]
    if window == 1:
        return row.reshape(height, width, channels).permute(2, 0, 1)
    blocks = row.reshape(height // window, width // window, window, window, channels)
    return blocks.permute(4, 0, 2, 1, 3).reshape(channels, height, width)


def _canvas(grids: list[torch.Tensor], views: list[View]) -> torch.Tensor:
    """(C, H, W): the views' grids added into their boxes of a canvas of the image."""
    def cells(g: torch.Tensor, v: View) -> tuple[float, float]:
        top, left, bottom, right = v.box
        return g.shape[-2] / (bottom - top), g.shape[-1] / (right - left)

    height = max(_nearest(cells(g, v)[0]) for g, v in zip(grids, views))
    width = max(_nearest(cells(g, v)[1]) for g, v in zip(grids, views))
    canvas = grids[0].new_zeros(grids[0].shape[0], height, width)
    for grid, view in zip(grids, views):
        top, left, bottom, right = view.box
        y0, x0 = _nearest(top * height), _nearest(left * width)
        y1, x1 = _nearest(bottom * height), _nearest(right * width)
        placed = _resized(grid, (y1 - y0, x1 - x0))
        inside = (slice(max(y0, 0), min(y1, height)), slice(max(x0, 0), min(x1, width)))
        canvas[:, inside[0], inside[1]] += placed[
            :, inside[0].start - y0 : inside[0].stop - y0, inside[1].start - x0 : inside[1].stop - x0]
    return canvas


def _nearest(x: float) -> int:
    """The nearest whole cell, halves up (``round`` sends 0.5 and 2.5 both to even)."""
    return math.floor(x + 0.5)


def _resized(grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(grid.shape[-2:]) == tuple(size):
        return grid
    return F.interpolate(grid[None], size=size, mode="bilinear", align_corners=False)[0]
