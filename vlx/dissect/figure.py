"""Pictures of dissected units: where each unit fires above its threshold on the probe images
it responds to most, labelled with its concept and IoU (what Bau et al. show per unit)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from vlx.dissect.broden import BrodenProbe
from vlx.dissect.dissection import Dissection
from vlx.explanation import upsample
from vlx.render import as_rgb, grid

OUTLINE = (255, 230, 0)
DIM = 0.3
"""Brightness kept outside the unit's region, so the region stands out."""


def region_picture(image: Image.Image, activation: torch.Tensor, threshold: float) -> np.ndarray:
    """``image`` with the region where ``activation`` (h, w), bilinearly upsampled to the
    image, exceeds ``threshold`` kept bright and outlined, and the rest dimmed."""
    rgb = as_rgb(image).astype(np.float32)
    size = rgb.shape[:2]
    mask = (upsample(activation[None, None].float(), size)[0, 0] > threshold).cpu().numpy()
    picture = np.where(mask[..., None], rgb, rgb * DIM)
    padded = np.pad(mask, 1, mode="edge")
    inner = (
        padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask
    )
    picture[mask & ~inner] = OUTLINE
    return picture.round().astype(np.uint8)


def units_figure(
    dissection: Dissection,
    probe: BrodenProbe,
    activations: Callable[[list[Image.Image]], torch.Tensor],
    units: Sequence[int],
    per_unit: int = 4,
) -> Image.Image:
    """One row per unit: its top probe images with the region above its threshold.

    ``activations`` maps PIL images to the dissected layer's (N, K, h, w) output.
    """
    panels = []
    for k in units:
        name = dissection.units[k]
        images = [probe.image(i) for i in dissection.examples[k][:per_unit]]
        maps = activations(images)[:, k]
        for image, activation in zip(images, maps):
            label = f"unit {k}: {name.label} {name.iou:.2f}"
            panels.append((label, region_picture(image, activation, dissection.thresholds[k])))
    return grid(panels, columns=per_unit, panel_size=160)
