"""The ShapesWorld generator: scene ``i`` is a pure function of ``(seed, i, params)``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vlx.data.shapes.drawing import SIZE_RANGE, place_objects
from vlx.data.shapes.drawing import background as draw_background
from vlx.data.shapes.scene import Scene
from vlx.data.shapes.vocabulary import BACKGROUNDS, COLOUR_JITTER, COLOUR_RGB, COUNT_WORDS, TEXTURES

MAX_OBJECTS = len(COUNT_WORDS) - 1
IMAGE_SIZES = (32, 1024)
BACKGROUND_STREAM = 2  # a background forced by ``ShapesWorld.scene(..., background=)``


@dataclass(frozen=True)
class ShapesWorld:
    """The generator: scene ``i`` is a pure function of ``(seed, i, params)``.

    Any index can be regenerated alone, so splits are index ranges rather than stored files.

    Args:
        seed: non-negative world seed.
        image_size: side of the square images, 32-1024; object sizes scale with it.
        min_objects, max_objects: objects per scene, 1 <= min <= max <= 4.
        textured_fraction: probability that a scene's background is textured, 0-1.
        object_scale: object sides relative to the default (which scales with the image),
            e.g. 2 for objects that fill a large part of the image, as ImageNet objects do
            (localization by a coarse map needs that); the largest object must fit.
    """

    seed: int = 0
    image_size: int = 128
    min_objects: int = 1
    max_objects: int = 4
    textured_fraction: float = 0.5
    object_scale: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        lo, hi = IMAGE_SIZES
        if not (isinstance(self.image_size, int) and lo <= self.image_size <= hi):
            raise ValueError(f"image_size must be an int in [{lo}, {hi}], got {self.image_size!r}")
        if not (isinstance(self.min_objects, int) and 1 <= self.min_objects <= MAX_OBJECTS):
            raise ValueError(
                f"min_objects must be an int in [1, {MAX_OBJECTS}], got {self.min_objects!r}"
            )
        if not (
            isinstance(self.max_objects, int)
            and self.min_objects <= self.max_objects <= MAX_OBJECTS
        ):
            raise ValueError(
                f"max_objects must be an int in [min_objects={self.min_objects}, {MAX_OBJECTS}],"
                f" got {self.max_objects!r}"
            )
        if not 0.0 <= self.textured_fraction <= 1.0:
            raise ValueError(f"textured_fraction must be in [0, 1], got {self.textured_fraction!r}")
        largest = SIZE_RANGE["large"][1] / 128
        if not 0 < self.object_scale <= 1 / largest:
            raise ValueError(
                f"object_scale must be in (0, {1 / largest:.2f}] so objects fit, "
                f"got {self.object_scale!r}"
            )

    def scene(self, index: int, background: str | None = None) -> Scene:
        """Generate scene ``index`` (deterministic, independent of any other index).

        ``background`` (one of ``BACKGROUNDS``) redraws the scene on that background, with
        the same objects in the same places: the same scene with only its context changed,
        as a dataset-bias experiment needs (a texture that always comes with one class).
        """
        if not (isinstance(index, (int, np.integer)) and index >= 0):
            raise ValueError(f"index must be a non-negative int, got {index!r}")
        if background is not None and background not in BACKGROUNDS:
            raise ValueError(
                f"unknown background {background!r}; valid: {', '.join(BACKGROUNDS)}"
            )
        index = int(index)
        rng = np.random.default_rng([self.seed, index])
        n = self.image_size
        scale = n / 128
        n_objects = int(rng.integers(self.min_objects, self.max_objects + 1))
        if rng.random() < self.textured_fraction:
            drawn = TEXTURES[rng.integers(len(TEXTURES))]
        else:
            drawn = "plain"
        image = draw_background(rng, drawn, n, scale)  # drawn even when forced: same objects
        objects = place_objects(rng, n_objects, n, scale, self.object_scale)
        if background is None:
            background = drawn
        else:
            forced = np.random.default_rng([self.seed, index, BACKGROUND_STREAM])
            image = draw_background(forced, background, n, scale)
        for obj in objects:
            jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
            rgb = np.clip(np.array(COLOUR_RGB[obj.colour]) + jitter, 0, 255).astype(np.uint8)
            image[obj.mask] = rgb
        return Scene(image, objects, background, index, self.seed)

    def scenes(self, start: int, count: int) -> Iterator[Scene]:
        """Scenes ``start .. start + count - 1`` in order."""
        for index in range(start, start + count):
            yield self.scene(index)
