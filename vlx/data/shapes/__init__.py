"""ShapesWorld: a synthetic world whose ground truth lets every explanation be scored.

No pretrained captioning or VQA model exists offline, and a Grad-CAM map can only be measured
against the pixels it should point at. A scene is a pure function of ``(seed, index, params)``:
1-4 non-overlapping coloured shapes on a plain or textured background, with instance masks,
boxes, a grammatical caption whose words are grounded to pixels, question/answer pairs and
per-pixel concept maps (colour, shape, texture) for Network Dissection.

One concept per module: ``vocabulary`` (the words and splits), ``scene`` (a scene and what
its words refer to), ``grammar`` (captions and questions), ``drawing`` (rasters and
placement), ``world`` (the generator), ``dataset`` (a torch Dataset), ``export`` (files),
``truth`` (ground truth for the tasks' evaluations).
"""

from vlx.data.shapes.dataset import ShapesDataset
from vlx.data.shapes.export import read_split, write_coco, write_split
from vlx.data.shapes.grammar import Question, Token
from vlx.data.shapes.scene import Scene, SceneObject
from vlx.data.shapes.vocabulary import (
    ANSWERS,
    BACKGROUNDS,
    COLOUR_JITTER,
    COLOUR_RGB,
    COLOURS,
    COUNT_WORDS,
    GROUNDED_WORDS,
    PLURALS,
    QUESTION_KINDS,
    SHAPES,
    SIZES,
    SPLITS,
    TEXTURES,
)
from vlx.data.shapes.world import ShapesWorld

__all__ = [
    "ANSWERS",
    "BACKGROUNDS",
    "COLOURS",
    "COLOUR_JITTER",
    "COLOUR_RGB",
    "COUNT_WORDS",
    "GROUNDED_WORDS",
    "PLURALS",
    "QUESTION_KINDS",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "TEXTURES",
    "Question",
    "Scene",
    "SceneObject",
    "ShapesDataset",
    "ShapesWorld",
    "Token",
    "read_split",
    "write_coco",
    "write_split",
]
