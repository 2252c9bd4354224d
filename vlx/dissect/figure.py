"""Pictures of dissected units: where each unit fires above its threshold on the probe images
it responds to most, labelled with its concept and IoU (what Bau et al. show per unit); and a
target's textual explanation beside its map (the Grad-CAM paper's Fig. 9)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from vlx.dissect.broden import BrodenProbe
from vlx.dissect.dissection import Dissection
from vlx.dissect.textual import RankedUnit, TextualExplanation
from vlx.explanation import upsample
from vlx.render import Picture, as_rgb, fit_text, font_of, grid, wrap_text

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


PERSUASIVE_RGB = (46, 139, 87)
INHIBITIVE_RGB = (200, 50, 50)


def textual_figure(
    image: Picture, heatmap: Picture, text: TextualExplanation, panel_size: int = 224,
    method: str = "Grad-CAM",
) -> Image.Image:
    """The paper's Fig. 9: the image, its Grad-CAM overlay, and beside them the top units for
    (green) and against (red) the target, each a bar as long as its |alpha| with the unit's
    name, IoU and alpha; the sentence underneath."""
    font, small = font_of(14), font_of(12)
    pad, row_h, header_h, bar_w, text_w = 6, 18, 20, 110, 320
    tiles = []
    for picture in (image, heatmap):
        tile = Image.fromarray(as_rgb(picture))
        scale = panel_size / max(tile.size)
        size = (max(1, round(tile.width * scale)), max(1, round(tile.height * scale)))
        tiles.append(tile.resize(size, Image.Resampling.BILINEAR))
    rows = [(text.persuasive, PERSUASIVE_RGB, "for"), (text.inhibitive, INHIBITIVE_RGB, "against")]
    units_h = sum(header_h + row_h * max(len(units), 1) for units, _, _ in rows)
    top_h = max(max(t.height for t in tiles) + header_h, units_h)
    width = 2 * (panel_size + pad) + bar_w + text_w + 2 * pad
    lines = wrap_text(text.sentence(), small, width - 2 * pad)
    sheet = Image.new("RGB", (width, pad + top_h + 16 * len(lines) + 2 * pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, tile) in enumerate(zip(("input", f"{method}: {text.target}"), tiles)):
        x = pad + i * (panel_size + pad)
        draw.text((x, pad), fit_text(label, font, panel_size), fill="black", font=font)
        sheet.paste(tile, (x, pad + header_h))
    largest = max((abs(u.alpha) for units, _, _ in rows for u in units), default=0.0) or 1.0
    x, y = pad + 2 * (panel_size + pad), pad
    for units, colour, side in rows:
        title = f"top {len(units)} units {side} {text.target!r}" if units else f"no units {side}"
        draw.text((x, y), fit_text(title, font, bar_w + text_w), fill="black", font=font)
        y += header_h
        for unit in units:
            length = max(1, round(bar_w * abs(unit.alpha) / largest))
            draw.rectangle((x, y + 3, x + length, y + row_h - 3), fill=colour)
            draw.text((x + bar_w + pad, y + 2), fit_text(_unit_label(unit), small, text_w - pad),
                      fill="black", font=small)
            y += row_h
        y += 0 if units else row_h
    for j, line in enumerate(lines):
        draw.text((pad, pad + top_h + pad + 16 * j), line, fill="black", font=small)
    return sheet


def _unit_label(unit: RankedUnit) -> str:
    iou = f"IoU {unit.iou:.2f}" if unit.named else f"{unit.label} {unit.iou:.2f}"
    return f"{unit.name} ({iou})  alpha {unit.alpha:+.3g}"
