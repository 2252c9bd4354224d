"""Pictures of explanations: jet overlays as in the paper's figures, gradient images, grids.

Everything here takes tensors or arrays and returns uint8 RGB arrays or Pillow images;
``save_png`` writes atomically so an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from vlx.explanation import Explanation, normalize, upsample
from vlx.files import write_atomic

Picture = np.ndarray | Image.Image | torch.Tensor


def jet(values: np.ndarray | torch.Tensor) -> np.ndarray:
    """The classic jet colour map (blue low, red high) of values in [0, 1] -> uint8 RGB."""
    v = np.clip(_array(values).astype(np.float64), 0.0, 1.0)
    channels = [np.clip(1.5 - np.abs(4.0 * v - shift), 0.0, 1.0) for shift in (3.0, 2.0, 1.0)]
    return (np.stack(channels, axis=-1) * 255.0).round().astype(np.uint8)


def overlay(image: Picture, heatmap: np.ndarray | torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """Blend a jet-coloured [0, 1] ``heatmap`` over ``image``; the map is resized bilinearly
    to the image if needed (the paper's upsampling)."""
    rgb = as_rgb(image)
    heat = _array(heatmap).astype(np.float32)
    if heat.shape != rgb.shape[:2]:
        resized = Image.fromarray(heat).resize(
            (rgb.shape[1], rgb.shape[0]), Image.Resampling.BILINEAR
        )
        heat = np.asarray(resized)
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * jet(heat).astype(np.float32)
    return blended.round().clip(0, 255).astype(np.uint8)


def gradient_image(channels: torch.Tensor | np.ndarray) -> np.ndarray:
    """(C, H, W) input gradients as a picture, as the paper's code shows guided backprop:
    zero-centred, scaled to unit variance, then mapped to 0.5 +- 0.1 std."""
    g = _array(channels).astype(np.float64)
    if g.ndim != 3:
        raise ValueError(f"expected (C, H, W) gradients, got shape {g.shape}")
    g = g - g.mean()
    std = g.std()
    g = g / std * 0.1 + 0.5 if std > 0 else np.full_like(g, 0.5)
    g = np.clip(g, 0, 1)
    if g.shape[0] == 1:
        g = np.repeat(g, 3, axis=0)
    return (g.transpose(1, 2, 0)[..., :3] * 255).round().astype(np.uint8)


def as_rgb(image: Picture) -> np.ndarray:
    """uint8 (H, W, 3) from a Pillow image, an (H, W, 3) array or a (3, H, W) tensor in [0, 1]."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = _array(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    if array.ndim == 2 or array.shape[-1] == 1:
        array = np.repeat(array.reshape(*array.shape[:2], 1), 3, axis=-1)
    return array


def grid(
    panels: Sequence[tuple[str, Picture]],
    columns: int | None = None,
    caption: str | None = None,
    panel_size: int = 224,
) -> Image.Image:
    """Panels side by side (wrapping after ``columns``), each with its label above, and an
    optional caption underneath: the layout of the paper's per-word and per-answer figures."""
    if not panels:
        raise ValueError("grid needs at least one panel")
    columns = columns or len(panels)
    rows = (len(panels) + columns - 1) // columns
    font = font_of(14)
    label_h, pad = 22, 6
    tiles = []
    for _, picture in panels:
        tile = Image.fromarray(as_rgb(picture))
        tile.thumbnail((panel_size, panel_size), Image.Resampling.BILINEAR)
        tiles.append(tile)
    tile_h = max(tile.height for tile in tiles)
    cell_w, cell_h = panel_size + pad, tile_h + label_h + pad
    caption_lines = wrap_text(caption, font, columns * cell_w - 2 * pad) if caption else []
    caption_h = 20 * len(caption_lines) + (pad if caption_lines else 0)
    sheet = Image.new("RGB", (columns * cell_w + pad, rows * cell_h + pad + caption_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, ((label, _), tile) in enumerate(zip(panels, tiles)):
        x = pad + (i % columns) * cell_w
        y = pad + (i // columns) * cell_h
        draw.text((x, y + 2), fit_text(label, font, panel_size), fill="black", font=font)
        sheet.paste(tile, (x, y + label_h))
    for j, line in enumerate(caption_lines):
        draw.text((pad, rows * cell_h + pad + 20 * j), line, fill="black", font=font)
    return sheet


def explanation_picture(explanation: Explanation, n: int, t: int, image: Image.Image) -> np.ndarray:
    """The picture of map (n, t) over ``image``: a jet overlay of the normalised, bilinearly
    upsampled map, or the gradient image for the guided-backprop family."""
    size = (image.height, image.width)
    if explanation.channels is not None:
        channels = F.interpolate(
            explanation.channels[n, t][None].float(), size=size, mode="bilinear",
            align_corners=False,
        )[0]
        return gradient_image(channels)
    heat = normalize(upsample(explanation.maps[n : n + 1, t : t + 1], size))[0, 0]
    return overlay(image, heat)


def save_png(picture: Picture, path: str | Path) -> Path:
    """Write a PNG atomically (``vlx.files.write_atomic``)."""
    return write_atomic(path, lambda stream: _pillow(picture).save(stream, format="PNG"))


def png_bytes(picture: Picture) -> bytes:
    """A picture as PNG bytes, for what is sent rather than written (the page)."""
    stream = io.BytesIO()
    _pillow(picture).save(stream, format="PNG")
    return stream.getvalue()


def _pillow(picture: Picture) -> Image.Image:
    return picture if isinstance(picture, Image.Image) else Image.fromarray(as_rgb(picture))


def _array(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy() if values.is_floating_point() else (
            values.detach().cpu().numpy()
        )
    return np.asarray(values)


def font_of(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()


def fit_text(text: str, font: ImageFont.ImageFont, width: int) -> str:
    while text and font.getlength(text) > width:
        text = text[:-2] + "…" if len(text) > 2 else ""
    return text


def wrap_text(text: str, font: ImageFont.ImageFont, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines
