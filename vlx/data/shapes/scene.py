"""A ShapesWorld scene: its image, objects (masks, boxes) and what its words refer to."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlx.data.shapes import grammar
from vlx.data.shapes.grammar import Question, Token
from vlx.data.shapes.vocabulary import CATEGORY, COLOURS, GROUNDED_WORDS, PLURALS, SHAPES, TEXTURES


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
        return grammar.caption_grounding(self)

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
        category = CATEGORY.get(word)
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
        """Question/answer pairs whose answers follow from the ground truth, in kind order
        (``vlx.data.shapes.grammar.questions``)."""
        return grammar.questions(self)
