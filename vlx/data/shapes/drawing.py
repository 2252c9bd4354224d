"""Drawing ShapesWorld: backgrounds, shape rasters, and object placement without overlap."""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np

from vlx.data.shapes.scene import SceneObject
from vlx.data.shapes.vocabulary import COLOURS, SHAPES, SIZES

SIZE_RANGE = MappingProxyType({"small": (18.0, 22.0), "large": (34.0, 42.0)})  # px at 128
_MARGIN = 4  # px at 128 between object boxes
_GREY_DARK = (40, 70)  # background tones: dull greys, far below white (>= 233)
_GREY_STEP = (35, 55)  # the texture's lighter tone is this much brighter
# The straight edge of the star from an outer point (radius 1, angle 0) to the next inner point
# (radius _STAR_INNER, angle pi/5), in polar form r(phi) = d_y / (d_y cos phi - d_x sin phi).
_STAR_INNER = 0.45
_STAR_DX = _STAR_INNER * math.cos(math.pi / 5) - 1.0
_STAR_DY = _STAR_INNER * math.sin(math.pi / 5)
_STAR_WIDTH = math.sin(2 * math.pi / 5)  # half-width of the unit star (side points)
_STAR_SHIFT = (1.0 - math.cos(math.pi / 5)) / 2  # centres the star vertically in its box


def background(rng: np.random.Generator, background: str, n: int, scale: float) -> np.ndarray:
    """An (n, n, 3) uint8 background: one dull grey, or a two-grey texture."""
    dark = int(rng.integers(*_GREY_DARK))
    image = np.empty((n, n, 3), dtype=np.uint8)
    if background == "plain":
        image[:] = dark
        return image
    light = dark + int(rng.integers(*_GREY_STEP))
    y, x = np.ogrid[:n, :n]
    x = x + 0.5
    y = y + 0.5
    if background == "striped":
        angle = math.radians(45 * int(rng.integers(4)))
        period = rng.uniform(8, 12) * scale
        t = (x * math.cos(angle) + y * math.sin(angle)) / period + rng.random()
        pattern = t % 1 < 0.5
    elif background == "dotted":
        period = rng.uniform(8, 11) * scale
        ox, oy = rng.uniform(0, period, size=2)
        dx = (x + ox) % period - period / 2
        dy = (y + oy) % period - period / 2
        pattern = dx * dx + dy * dy <= (0.27 * period) ** 2
    elif background == "checkered":
        cell = rng.uniform(6, 10) * scale
        ox, oy = rng.uniform(0, 2 * cell, size=2)
        pattern = (np.floor((x + ox) / cell) + np.floor((y + oy) / cell)) % 2 == 0
    else:  # zigzag: horizontal bands bent into chevrons
        wavelength = rng.uniform(12, 18) * scale
        amplitude = wavelength / 2
        band = rng.uniform(8, 12) * scale
        wave = np.abs((x / wavelength) % 1 - 0.5) * 2 * amplitude
        pattern = ((y + wave) / band + rng.random()) % 1 < 0.5
    image[:] = np.where(pattern, light, dark).astype(np.uint8)[..., None]
    return image


def shape_patch(shape: str, d: int) -> np.ndarray:
    """A (d, d) bool raster of ``shape`` filling a d x d box, from unit coordinates."""
    c = (np.arange(d) + 0.5 - d / 2) / (d / 2)
    u = c[None, :]
    v = c[:, None]
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.broadcast_to((np.abs(u) <= 1.0) & (np.abs(v) <= 1.0), (d, d))
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "triangle":  # apex up: below the two sloped edges, above the base
        return (v >= 2 * np.abs(u) - 1.0) & (v <= 1.0)
    if shape == "cross":
        return (np.abs(u) <= 0.3) | (np.abs(v) <= 0.3)
    # star: polar radius bound of five straight-edged points, the top one at angle 0, scaled
    # so its side points touch the box
    u = u * _STAR_WIDTH
    v = v * _STAR_WIDTH - _STAR_SHIFT
    seg = 2 * math.pi / 5
    theta = np.arctan2(u, -v)
    phi = np.abs((theta + seg / 2) % seg - seg / 2)
    bound = _STAR_DY / (_STAR_DY * np.cos(phi) - _STAR_DX * np.sin(phi))
    return u * u + v * v <= bound * bound


def place_objects(
    rng: np.random.Generator, n_objects: int, n: int, scale: float, object_scale: float = 1.0
) -> list[SceneObject]:
    """Draw attributes and place objects without overlap, left to right by centre x.

    Positions are drawn uniformly among all free ones (not by rejection), and a layout that
    leaves no room for an object is redrawn, so every scene has exactly ``n_objects``.
    """
    margin = max(2, round(_MARGIN * scale))
    for _ in range(100):
        sizes = [SIZES[k] for k in rng.integers(len(SIZES), size=n_objects)]
        shapes = [SHAPES[k] for k in rng.integers(len(SHAPES), size=n_objects)]
        colours = [COLOURS[k] for k in rng.integers(len(COLOURS), size=n_objects)]
        sides = [max(3, round(rng.uniform(*SIZE_RANGE[s]) * scale * object_scale)) for s in sizes]
        order = sorted(range(n_objects), key=lambda k: -sides[k])  # hardest to fit first
        placed: dict[int, tuple[int, int, int]] = {}
        for k in order:
            d = sides[k]
            free = np.ones((n - d + 1, n - d + 1), dtype=bool)
            for x0, y0, dd in placed.values():
                free[
                    max(0, y0 - margin - d + 1) : y0 + dd + margin,
                    max(0, x0 - margin - d + 1) : x0 + dd + margin,
                ] = False
            candidates = np.flatnonzero(free)
            if candidates.size == 0:
                break
            y0, x0 = divmod(int(candidates[rng.integers(candidates.size)]), free.shape[1])
            placed[k] = (x0, y0, d)
        else:
            objects = []
            for k in range(n_objects):
                x0, y0, d = placed[k]
                patch = shape_patch(shapes[k], d)
                mask = np.zeros((n, n), dtype=bool)
                mask[y0 : y0 + d, x0 : x0 + d] = patch
                rows = np.flatnonzero(patch.any(axis=1))
                cols = np.flatnonzero(patch.any(axis=0))
                box = (
                    x0 + int(cols[0]),
                    y0 + int(rows[0]),
                    x0 + int(cols[-1]) + 1,
                    y0 + int(rows[-1]) + 1,
                )
                centre = (x0 + d / 2, y0 + d / 2)
                objects.append(SceneObject(shapes[k], colours[k], sizes[k], box, mask, centre))
            objects.sort(key=lambda o: o.centre)
            return objects
    raise RuntimeError(f"could not place {n_objects} objects in a {n}x{n} image")
