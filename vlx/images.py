"""Reading images people actually have, and turning them into model inputs."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from vlx.errors import InputError

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_IMAGES = (ASSETS / "chelsea.jpg", ASSETS / "coffee.jpg")
"""scikit-image's CC0 photos, bundled: a cat and a cup of coffee."""
MAX_SIDE = 1024
"""Default longest side of the pictures vlx draws: memory and time follow what is shown, not
the pixel count of the photo."""


def load_image(path: str | Path) -> Image.Image:
    """An 8-bit RGB image from any file Pillow reads: grayscale, RGBA, palette and 16-bit too,
    turned upright by its EXIF orientation, as a photo viewer shows it.

    Transparent pixels are composited on white; 16-bit and float images are rescaled from
    their full range rather than clipped. Unreadable, truncated or non-image files, and
    images of more pixels than Pillow's decompression-bomb limit, raise ``InputError``
    naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {str(path)!r} does not exist or is not a file")
    return _decoded(path, str(path))


def read_image(data: bytes, name: str) -> Image.Image:
    """``load_image`` for the bytes of an uploaded file called ``name``: the same checks, the
    same errors (an empty upload is one too)."""
    if not data:
        raise InputError(f"{name!r} is empty (0 bytes); choose an image file")
    return _decoded(io.BytesIO(data), name)


def _decoded(source: Path | BinaryIO, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as opened:
                opened.load()
                image = ImageOps.exif_transpose(opened)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"image {name!r} has more than {Image.MAX_IMAGE_PIXELS:,} pixels, Pillow's "
            "limit against decompression bombs; resize it first"
        ) from None
    except UnidentifiedImageError:
        raise InputError(f"{name!r} is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"cannot read image {name!r}: {err}") from None
    return to_rgb(image)


def bounded(image: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    """``image`` scaled down so its longest side is at most ``max_side`` (itself if it is
    already that small): what figures are drawn on."""
    if max_side < 1:
        raise InputError(f"--max-side must be at least 1 pixel, got {max_side}")
    if max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without clipping high-bit-depth data."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        if image.mode == "F":
            low, high = float(values.min()), float(values.max())
            values = (values - low) / (high - low or 1.0) * 255.0
        else:
            values = values / top * 255.0
        gray = np.clip(np.round(values), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class Preprocess:
    """How a classifier wants its input: resized to ``size``, scaled, normalised."""

    size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    resample: str = "bilinear"

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """(3, H, W) float tensor; the whole image is resized (no crop), so every input
        pixel maps onto the explanation."""
        height, width = self.size
        resized = image.convert("RGB").resize((width, height), _RESAMPLE[self.resample])
        array = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0)
        tensor = array.permute(2, 0, 1)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (tensor - mean) / std

    def batch(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self(image) for image in images])
