"""ShapesWorld's vocabulary: the shapes, colours, sizes, textures, answers and splits."""

from __future__ import annotations

from types import MappingProxyType

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

CATEGORY = MappingProxyType(
    {
        **{w: "colour" for w in COLOURS},
        **{w: "shape" for w in SHAPES},
        **{w: "size" for w in SIZES},
        **{w: "texture" for w in TEXTURES},
    }
)
"""Grounded word -> its category."""
