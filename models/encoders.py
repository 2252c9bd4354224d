"""Small ResNet-style image encoders for ShapesWorld models (captioning, VQA).

The encoder keeps a 16 x 16 spatial map at 128 x 128 input (stride 8); each position sees
71 pixels, or 55 or 39 with a smaller ``receptive_field`` (ShapesWorld objects span 18-42
pixels). Explanations are taken at its output, ``encoder.stages.2``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vlx.images import Preprocess

SHAPES_PREPROCESS = Preprocess(size=(128, 128), mean=(0.5,) * 3, std=(0.5,) * 3)
"""Input of the ShapesWorld models: 128 x 128, values scaled to [-1, 1]."""

LAST_STAGE_KERNELS = {71: (3, 3), 55: (3, 1), 39: (1, 1)}
"""The encoder's receptive field in pixels -> the kernels of its last stage's convolutions."""


def shapes_batch(images: list) -> torch.Tensor:
    """``SHAPES_PREPROCESS`` of PIL images, in the channels-last memory layout the ShapesWorld
    models are trained on (their convolutions run faster on it, and their numbers are the
    ones measured on it)."""
    return SHAPES_PREPROCESS.batch(images).contiguous(memory_format=torch.channels_last)


def arrays_to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """(N, 3, H, W) model input from uint8 (H, W, 3) arrays already at the model's size:
    ``SHAPES_PREPROCESS`` without the resize, for fast training batches."""
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return (batch - 0.5) / 0.5


class BasicBlock(nn.Module):
    """The ResNet basic block: two convolutions (3 x 3 unless ``kernels`` says otherwise) and
    a (projected) shortcut.

    ``dilation`` spaces the taps of the second convolution (and of the first, unless
    ``first_dilation`` says otherwise), as in a block whose stride was replaced by dilation.
    """

    def __init__(
        self,
        channels_in: int,
        channels_out: int,
        stride: int = 1,
        dilation: int = 1,
        first_dilation: int | None = None,
        kernels: tuple[int, int] = (3, 3),
    ) -> None:
        super().__init__()
        first = dilation if first_dilation is None else first_dilation
        k1, k2 = kernels
        self.conv1 = nn.Conv2d(
            channels_in, channels_out, k1, stride, first * (k1 // 2), first, bias=False
        )
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(
            channels_out, channels_out, k2, 1, dilation * (k2 // 2), dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride, bias=False),
                nn.BatchNorm2d(channels_out),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class ResNetEncoder(nn.Module):
    """Stem (stride 2) and three basic-block stages (strides 2, 2, 1): (N, C, H/8, W/8).

    With ``coordinates`` the last stage also sees two channels holding each position's x and
    y (CoordConv, Liu et al. 2018), so its units can encode *where* as part of *what* ("a
    triangle on the left"): after global average pooling, position survives in which units
    fire, and every unit's gradient stays spatially constant, as Grad-CAM's alphas assume.

    ``stride=4`` replaces the middle stage's stride by dilation (the "atrous" trick of
    DeepLab and Yu & Koltun 2016): the same weights then compute the stride-8 map at every
    other position of a map twice as fine, (N, C, H/4, W/4), with the same receptive field,
    so a model trained at either stride runs and is explained at the other.

    ``receptive_field`` (pixels) shrinks the last stage's convolutions to 1 x 1: the second
    (55) or both (39). A unit that sees an object from far away may fire anywhere within that
    distance of it; global average pooling does not care where, but the map does.
    """

    def __init__(
        self,
        widths: tuple[int, int, int, int] = (32, 48, 96, 128),
        coordinates: bool = False,
        stride: int = 8,
        receptive_field: int = 71,
    ) -> None:
        super().__init__()
        if stride not in (8, 4):
            raise ValueError(f"encoder stride {stride} is not supported; valid: 8, 4")
        if receptive_field not in LAST_STAGE_KERNELS:
            valid = ", ".join(map(str, LAST_STAGE_KERNELS))
            raise ValueError(f"receptive field {receptive_field} is not supported; valid: {valid}")
        stem, *stages = widths
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True)
        )
        self.coordinates = coordinates
        self.density = 8 // stride  # map positions per stride-8 cell, along each axis
        d = self.density
        blocks = [
            BasicBlock(stem, stages[0], 2),
            BasicBlock(stages[0], stages[1], 2 // d, dilation=d, first_dilation=1),
            BasicBlock(
                stages[1] + (2 if coordinates else 0), stages[2], 1, dilation=d,
                kernels=LAST_STAGE_KERNELS[receptive_field],
            ),
        ]
        self.stages = nn.Sequential(*blocks)
        self.channels = stages[2]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)
        for block in self.stages[:-1]:
            x = block(x)
        if self.coordinates:
            x = torch.cat([x, coordinate_channels(x, self.density)], dim=1)
        return self.stages[-1](x)


def coordinate_channels(features: torch.Tensor, density: int = 1) -> torch.Tensor:
    """(N, 2, h, w): x and y at every position of ``features``, from -1 at the first to 1 at
    the last stride-8 cell; a map ``density`` times finer steps between them (its last
    positions lie a little past 1), so that dilated and strided encoders agree."""
    n, _, h, w = features.shape
    ys = _cell_coordinates(h, density, features)
    xs = _cell_coordinates(w, density, features)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).expand(n, -1, -1, -1)


def _cell_coordinates(length: int, density: int, like: torch.Tensor) -> torch.Tensor:
    cells = -(-length // density)  # stride-8 cells: ceil
    step = 2 / max(cells - 1, 1)
    positions = torch.arange(length, device=like.device, dtype=like.dtype)
    return -1 + positions / density * step


class WhatWherePool(nn.Module):
    """Pool a feature map into, per channel, its mean activation and where it lies.

    Global average pooling keeps *what* is in the image but loses *where*, which a caption
    ("a red circle left of a blue star") needs. Adding each channel's first spatial moments
    (the mean of activation times x, and times y, with coordinates in [-1, 1]) tells where
    every concept lies, while each position's features still describe only what is there.
    The moments have zero-mean weights, so Grad-CAM's alphas (spatial means of the gradient)
    come from the *what* part alone.
    """

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h, w = features.shape[-2:]
        ys = torch.linspace(-1, 1, h, device=features.device, dtype=features.dtype)
        xs = torch.linspace(-1, 1, w, device=features.device, dtype=features.dtype)
        mean = features.mean(dim=(2, 3))
        mean_x = (features * xs.view(1, 1, 1, w)).mean(dim=(2, 3))
        mean_y = (features * ys.view(1, 1, h, 1)).mean(dim=(2, 3))
        return torch.cat([mean, mean_x, mean_y], dim=1)
