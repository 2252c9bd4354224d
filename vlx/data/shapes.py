"""ShapesWorld: a synthetic world whose ground truth lets every explanation be scored.

No pretrained captioning or VQA model exists offline, and a Grad-CAM map can only be measured
against the pixels it should point at. A scene is a pure function of ``(seed, index, params)``:
1-4 non-overlapping coloured shapes on a plain or textured background, with instance masks,
boxes, a grammatical caption whose words are grounded to pixels, question/answer pairs and
per-pixel concept maps (colour, shape, texture) for Network Dissection.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS = ("red", "green", "blue", "yellow", "purple", "white")
SIZES = ("small", "large")
TEXTURES = ("striped", "dotted", "checkered", "zigzag")
BACKGROUNDS = ("plain",) + TEXTURES
PLURALS = MappingProxyType({"crosses" if s == "cross" else s + "s": s for s in SHAPES})
# Saturated and far apart, so a colour is recognisable under jitter and never reads as the grey
# of a background.
COLOUR_RGB = MappingProxyType(
    {
        "red": (220, 30, 30),
        "green": (30, 190, 40),
        "blue": (40, 70, 235),
        "yellow": (235, 215, 30),
        "purple": (150, 40, 200),
        "white": (245, 245, 245),
    }
)
COLOUR_JITTER = 12
"""Per-channel jitter (+/-) of an object's colour around ``COLOUR_RGB``."""
COUNT_WORDS = ("zero", "one", "two", "three", "four")
QUESTION_KINDS = ("colour", "shape", "count", "exist", "relation")
ANSWERS = COLOURS + SHAPES + COUNT_WORDS + ("yes", "no")
GROUNDED_WORDS = COLOURS + SHAPES + tuple(PLURALS) + SIZES + TEXTURES
"""Words of the caption grammar that refer to pixels (``Scene.word_mask`` accepts these)."""
SPLITS = MappingProxyType(
    {"train": (0, 1_000_000), "val": (1_000_000, 10_000), "test": (2_000_000, 10_000)}
)
"""Split name -> (first index, maximum length); the ranges never overlap."""

_SIZE_RANGE = MappingProxyType({"small": (18.0, 22.0), "large": (34.0, 42.0)})  # px at 128
_MARGIN = 4  # px at 128 between object boxes
_GREY_DARK = (40, 70)  # background tones: dull greys, far below white (>= 233)
_GREY_STEP = (35, 55)  # the texture's lighter tone is this much brighter
_MAX_OBJECTS = len(COUNT_WORDS) - 1
_IMAGE_SIZES = (32, 1024)
_CATEGORY = MappingProxyType(
    {
        **{w: "colour" for w in COLOURS},
        **{w: "shape" for w in SHAPES},
        **{w: "size" for w in SIZES},
        **{w: "texture" for w in TEXTURES},
    }
)
_QUESTION_STREAM = 1  # third seed word: question choices never share the image's stream
_BACKGROUND_STREAM = 2  # a background forced by ``ShapesWorld.scene(..., background=)``
# The straight edge of the star from an outer point (radius 1, angle 0) to the next inner point
# (radius _STAR_INNER, angle pi/5), in polar form r(phi) = d_y / (d_y cos phi - d_x sin phi).
_STAR_INNER = 0.45
_STAR_DX = _STAR_INNER * math.cos(math.pi / 5) - 1.0
_STAR_DY = _STAR_INNER * math.sin(math.pi / 5)
_STAR_WIDTH = math.sin(2 * math.pi / 5)  # half-width of the unit star (side points)
_STAR_SHIFT = (1.0 - math.cos(math.pi / 5)) / 2  # centres the star vertically in its box


class Token(NamedTuple):
    """One caption word and what it refers to.

    Attributes:
        word: the word as it appears in the caption.
        category: "colour", "shape", "size", "texture", or None for function words.
        referent: the object index for colour/shape/size words, "background" for a texture
            word, None otherwise.
    """

    word: str
    category: str | None
    referent: int | str | None


class Question(NamedTuple):
    """A question about a scene with its one-word answer.

    Attributes:
        text: the question, lower-case, ending in "?" (spelt "color").
        answer: one of ``ANSWERS``.
        kind: one of ``QUESTION_KINDS``.
        referent: index of the object the answer is about, or None where no single object is
            (counts, "no" answers, a "yes" about several objects).
    """

    text: str
    answer: str
    kind: str
    referent: int | None


@dataclass(frozen=True, eq=False)
class SceneObject:
    """One drawn object.

    Attributes:
        shape, colour, size: its attributes (members of SHAPES, COLOURS, SIZES).
        box: tight (x0, y0, x1, y1) around the mask, x1 and y1 exclusive.
        mask: (H, W) bool, the object's pixels.
        centre: (x, y) of the shape's geometric centre, in pixels.
    """

    shape: str
    colour: str
    size: str
    box: tuple[int, int, int, int]
    mask: np.ndarray
    centre: tuple[float, float]


@dataclass(frozen=True, eq=False)
class Scene:
    """A generated image and its ground truth.

    Objects are stored in the caption's canonical order, left to right by centre x, so an object
    index means the same thing in captions, grounding, questions and masks.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        objects: the objects, left to right.
        background: "plain" or a texture from TEXTURES.
        index: the scene's index in its world.
        seed: the world's seed; with ``index`` it makes per-scene choices (questions)
            reproducible.
    """

    image: np.ndarray
    objects: list[SceneObject]
    background: str
    index: int
    seed: int = 0

    def object_mask(self, i: int) -> np.ndarray:
        """The (H, W) bool mask of object ``i`` (caption order)."""
        if not -len(self.objects) <= i < len(self.objects):
            raise IndexError(f"object {i} out of range: the scene has {len(self.objects)}")
        return self.objects[i].mask

    def background_mask(self) -> np.ndarray:
        """The (H, W) bool mask of the pixels no object covers."""
        covered = np.zeros(self.image.shape[:2], dtype=bool)
        for obj in self.objects:
            covered |= obj.mask
        return ~covered

    def caption_grounding(self) -> list[Token]:
        """The caption as grounded tokens, so each word can be scored against its pixels."""
        tokens: list[Token] = []
        for i, obj in enumerate(self.objects):
            if i > 0:
                relation = _relation(self.objects[i - 1].box, obj.box)
                tokens += [Token(w, None, None) for w in relation.split()]
            tokens += [
                Token("a", None, None),
                Token(obj.size, "size", i),
                Token(obj.colour, "colour", i),
                Token(obj.shape, "shape", i),
            ]
        tokens += [Token("on", None, None), Token("a", None, None)]
        if self.background == "plain":
            tokens.append(Token("plain", None, None))
        else:
            tokens.append(Token(self.background, "texture", "background"))
        tokens.append(Token("background", None, None))
        return tokens

    def caption(self) -> str:
        """The scene's caption from the grammar (objects left to right, true relations)."""
        return " ".join(t.word for t in self.caption_grounding())

    def word_mask(self, word: str) -> np.ndarray:
        """The pixels a grounded word refers to, as the pointing game defines it.

        Any instance counts: "blue" is every blue object, "circles" every circle, a texture word
        the uncovered background when the scene has that texture. A vocabulary word absent from
        the image gives an all-False mask.

        Raises:
            ValueError: ``word`` is not one of ``GROUNDED_WORDS``.
        """
        word = PLURALS.get(word, word)
        category = _CATEGORY.get(word)
        if category is None:
            raise ValueError(
                f"{word!r} is not a grounded word; grounded words: {', '.join(GROUNDED_WORDS)}"
            )
        if category == "texture":
            if self.background == word:
                return self.background_mask()
            return np.zeros(self.image.shape[:2], dtype=bool)
        mask = np.zeros(self.image.shape[:2], dtype=bool)
        for obj in self.objects:
            if getattr(obj, category) == word:
                mask |= obj.mask
        return mask

    def concept_maps(self) -> dict[str, np.ndarray]:
        """Per-pixel labels for dissection: "colour", "shape", "texture" -> (H, W) int32.

        0 means no concept; label ``i + 1`` is ``COLOURS[i]`` / ``SHAPES[i]`` / ``TEXTURES[i]``.
        The texture map labels the uncovered background (all 0 on a plain background).
        """
        shape = self.image.shape[:2]
        colour_map = np.zeros(shape, dtype=np.int32)
        shape_map = np.zeros(shape, dtype=np.int32)
        for obj in self.objects:
            colour_map[obj.mask] = COLOURS.index(obj.colour) + 1
            shape_map[obj.mask] = SHAPES.index(obj.shape) + 1
        texture_map = np.zeros(shape, dtype=np.int32)
        if self.background != "plain":
            texture_map[self.background_mask()] = TEXTURES.index(self.background) + 1
        return {"colour": colour_map, "shape": shape_map, "texture": texture_map}

    def questions(self) -> list[Question]:
        """Question/answer pairs whose answers follow from the ground truth, in kind order.

        Only unambiguous questions are asked: a shape or colour is named alone only where it is
        unique, relations only between objects unique by colour and shape whose boxes are
        horizontally apart. Existence questions are half "yes", half near-miss "no".
        """
        rng = np.random.default_rng([self.seed, self.index, _QUESTION_STREAM])
        objs = self.objects
        shapes = [o.shape for o in objs]
        colours = [o.colour for o in objs]
        pairs = [(o.colour, o.shape) for o in objs]
        out: list[Question] = []
        for i, o in enumerate(objs):
            if shapes.count(o.shape) == 1:
                out.append(Question(f"what color is the {o.shape}?", o.colour, "colour", i))
        for i, o in enumerate(objs):
            if colours.count(o.colour) == 1:
                out.append(Question(f"what shape is the {o.colour} object?", o.shape, "shape", i))

        out.append(Question("how many objects are there?", COUNT_WORDS[len(objs)], "count", None))
        absent_shapes = [s for s in SHAPES if s not in shapes]
        asked = sorted(set(shapes), key=SHAPES.index)
        if absent_shapes:
            asked.append(absent_shapes[rng.integers(len(absent_shapes))])
        for s in asked:
            out.append(
                Question(
                    f"how many {_plural(s)} are there?", COUNT_WORDS[shapes.count(s)], "count", None
                )
            )

        present = list(dict.fromkeys(pairs))
        for c, s in present:
            referent = pairs.index((c, s)) if pairs.count((c, s)) == 1 else None
            out.append(Question(f"is there a {c} {s}?", "yes", "exist", referent))
        near_misses = [
            (c, s)
            for c in COLOURS
            for s in SHAPES
            if (c, s) not in pairs and (c in colours or s in shapes)
        ]
        for k in rng.permutation(len(near_misses))[: len(present)]:
            c, s = near_misses[k]
            out.append(Question(f"is there a {c} {s}?", "no", "exist", None))

        unique = [i for i, p in enumerate(pairs) if pairs.count(p) == 1]
        for a_pos, a in enumerate(unique):
            for b in unique[a_pos + 1 :]:
                if objs[a].box[2] > objs[b].box[0]:
                    continue  # horizontal extents overlap: "left of" would be ambiguous
                first, second = (a, b) if rng.random() < 0.5 else (b, a)
                answer = "yes" if first == a else "no"
                text = (
                    f"is the {colours[first]} {shapes[first]} left of "
                    f"the {colours[second]} {shapes[second]}?"
                )
                out.append(Question(text, answer, "relation", first))
        return out


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
        lo, hi = _IMAGE_SIZES
        if not (isinstance(self.image_size, int) and lo <= self.image_size <= hi):
            raise ValueError(f"image_size must be an int in [{lo}, {hi}], got {self.image_size!r}")
        if not (isinstance(self.min_objects, int) and 1 <= self.min_objects <= _MAX_OBJECTS):
            raise ValueError(
                f"min_objects must be an int in [1, {_MAX_OBJECTS}], got {self.min_objects!r}"
            )
        if not (
            isinstance(self.max_objects, int)
            and self.min_objects <= self.max_objects <= _MAX_OBJECTS
        ):
            raise ValueError(
                f"max_objects must be an int in [min_objects={self.min_objects}, {_MAX_OBJECTS}],"
                f" got {self.max_objects!r}"
            )
        if not 0.0 <= self.textured_fraction <= 1.0:
            raise ValueError(f"textured_fraction must be in [0, 1], got {self.textured_fraction!r}")
        largest = _SIZE_RANGE["large"][1] / 128
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
        image = _background(rng, drawn, n, scale)  # drawn even when forced: same objects
        objects = _place_objects(rng, n_objects, n, scale, self.object_scale)
        if background is None:
            background = drawn
        else:
            forced = np.random.default_rng([self.seed, index, _BACKGROUND_STREAM])
            image = _background(forced, background, n, scale)
        for obj in objects:
            jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
            rgb = np.clip(np.array(COLOUR_RGB[obj.colour]) + jitter, 0, 255).astype(np.uint8)
            image[obj.mask] = rgb
        return Scene(image, objects, background, index, self.seed)

    def scenes(self, start: int, count: int) -> Iterator[Scene]:
        """Scenes ``start .. start + count - 1`` in order."""
        for index in range(start, start + count):
            yield self.scene(index)


class ShapesDataset(Dataset):
    """A contiguous range of a world's scenes as a torch dataset.

    Items are dicts: ``image`` (3, H, W) float in [0, 1], ``caption`` str, ``index`` (the world
    index). Use ``from_split`` for the standard splits, whose ranges never overlap.
    """

    def __init__(self, world: ShapesWorld, start: int, length: int) -> None:
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.world = world
        self.start = start
        self.length = length

    @classmethod
    def from_split(cls, world: ShapesWorld, split: str, length: int | None = None) -> ShapesDataset:
        """The first ``length`` scenes (default: all) of a standard split from ``SPLITS``."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        start, max_length = SPLITS[split]
        length = max_length if length is None else length
        if not 0 <= length <= max_length:
            raise ValueError(f"length must be in [0, {max_length}] for {split!r}, got {length}")
        return cls(world, start, length)

    def __len__(self) -> int:
        return self.length

    def _index(self, i: int) -> int:
        if not -self.length <= i < self.length:
            raise IndexError(f"item {i} out of range for a dataset of {self.length}")
        return self.start + (i % self.length)

    def scene(self, i: int) -> Scene:
        """The full scene (masks, questions, ...) behind item ``i``."""
        return self.world.scene(self._index(i))

    def __getitem__(self, i: int) -> dict[str, Any]:
        scene = self.scene(i)
        image = torch.from_numpy(scene.image).permute(2, 0, 1).float().div_(255.0)
        return {"image": image, "caption": scene.caption(), "index": scene.index}


def write_split(
    world: ShapesWorld, out_dir: str | Path, start: int, count: int, progress: bool = True
) -> Path:
    """Write scenes ``start .. start + count - 1`` as PNGs plus one ``annotations.json``.

    For tools that want files rather than a generator. Every file is written under a temporary
    name and renamed, so an interrupted run leaves no half-written file; ``annotations.json``
    is written last, so its presence means the split is complete.

    Returns:
        ``out_dir`` as a Path.
    """
    from PIL import Image
    from tqdm import tqdm

    if start < 0 or count < 0:
        raise ValueError(f"start and count must be >= 0, got start={start}, count={count}")
    out = Path(out_dir)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    records = []
    scenes = world.scenes(start, count)
    for scene in tqdm(scenes, total=count, disable=not progress, desc="ShapesWorld", unit="img"):
        name = f"{scene.index:07d}.png"
        tmp = images_dir / f".{name}.tmp"
        Image.fromarray(scene.image).save(tmp, format="PNG")
        os.replace(tmp, images_dir / name)
        records.append(_record(scene, f"images/{name}"))
    annotations = {
        "world": {
            "seed": world.seed,
            "image_size": world.image_size,
            "min_objects": world.min_objects,
            "max_objects": world.max_objects,
            "textured_fraction": world.textured_fraction,
            "object_scale": world.object_scale,
        },
        "start": start,
        "count": count,
        "images": records,
    }
    tmp = out / ".annotations.json.tmp"
    tmp.write_text(json.dumps(annotations))
    os.replace(tmp, out / "annotations.json")
    return out


def read_split(directory: str | Path) -> dict[str, Any]:
    """Read the annotations written by ``write_split``.

    Returns:
        A dict with "world" (the ShapesWorld parameters, so scenes can be regenerated),
        "start", "count" and "images" (per image: file_name relative to ``directory``, index,
        background, objects with shape/colour/size/box, caption, questions).
    """
    path = Path(directory) / "annotations.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a complete split written by write_split")
    annotations = json.loads(path.read_text())
    for record in annotations["images"]:
        for obj in record["objects"]:
            obj["box"] = tuple(obj["box"])
        record["questions"] = [Question(**q) for q in record["questions"]]
    return annotations


def _record(scene: Scene, file_name: str) -> dict[str, Any]:
    return {
        "file_name": file_name,
        "index": scene.index,
        "background": scene.background,
        "objects": [
            {"shape": o.shape, "colour": o.colour, "size": o.size, "box": list(o.box)}
            for o in scene.objects
        ],
        "caption": scene.caption(),
        "questions": [q._asdict() for q in scene.questions()],
    }


def _plural(shape: str) -> str:
    return next(p for p, s in PLURALS.items() if s == shape)


def _relation(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> str:
    """The true relation of box ``a`` to box ``b`` (``a`` not right of ``b``) with the widest gap.

    Boxes are a margin apart, so the widest gap is positive and the relation holds strictly.
    """
    gaps = {"left of": b[0] - a[2], "above": b[1] - a[3], "below": a[1] - b[3]}
    return max(gaps, key=gaps.__getitem__)


def _background(rng: np.random.Generator, background: str, n: int, scale: float) -> np.ndarray:
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


def _shape_patch(shape: str, d: int) -> np.ndarray:
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


def _place_objects(
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
        sides = [max(3, round(rng.uniform(*_SIZE_RANGE[s]) * scale * object_scale)) for s in sizes]
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
                patch = _shape_patch(shapes[k], d)
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
