"""Small ResNet-style image encoders for ShapesWorld models (captioning, VQA).

The encoder keeps a 16 x 16 spatial map at 128 x 128 input (stride 8) and a receptive field
of about 60 pixels: enough to see a whole object, small enough that each position describes
what is there. Explanations are taken at its output, ``encoder.stages.2``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vlx.images import Preprocess

SHAPES_PREPROCESS = Preprocess(size=(128, 128), mean=(0.5,) * 3, std=(0.5,) * 3)
"""Input of the ShapesWorld models: 128 x 128, values scaled to [-1, 1]."""


def arrays_to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """(N, 3, H, W) model input from uint8 (H, W, 3) arrays already at the model's size:
    ``SHAPES_PREPROCESS`` without the resize, for fast training batches."""
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return (batch - 0.5) / 0.5


class BasicBlock(nn.Module):
    """The ResNet basic block: two 3 x 3 convolutions and a (projected) shortcut."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
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
    """

    def __init__(
        self, widths: tuple[int, int, int, int] = (32, 48, 96, 128), coordinates: bool = False
    ) -> None:
        super().__init__()
        stem, *stages = widths
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True)
        )
        self.coordinates = coordinates
        strides = (2, 2, 1)
        blocks, channels = [], stem
        for i, (width, stride) in enumerate(zip(stages, strides)):
            extra = 2 if coordinates and i == len(stages) - 1 else 0
            blocks.append(BasicBlock(channels + extra, width, stride))
            channels = width
        self.stages = nn.Sequential(*blocks)
        self.channels = channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)
        for block in self.stages[:-1]:
            x = block(x)
        if self.coordinates:
            x = torch.cat([x, coordinate_channels(x)], dim=1)
        return self.stages[-1](x)


def coordinate_channels(features: torch.Tensor) -> torch.Tensor:
    """(N, 2, h, w): x and y in [-1, 1] at every position of ``features``."""
    n, _, h, w = features.shape
    ys = torch.linspace(-1, 1, h, device=features.device, dtype=features.dtype)
    xs = torch.linspace(-1, 1, w, device=features.device, dtype=features.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).expand(n, -1, -1, -1)


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
