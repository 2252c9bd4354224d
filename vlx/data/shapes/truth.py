"""ShapesWorld's ground truth for the tasks: what each caption word, answer and class refers to.

Each is an example's ``truth`` (``vlx.task.GroundTruth``): given a target it gives the pixels
the target refers to, so every metric scores every adapter on ShapesWorld the same way.
"""

from __future__ import annotations

import numpy as np
import torch

from vlx.data.shapes.grammar import Question
from vlx.data.shapes.scene import Scene
from vlx.task import Box, Referent, Target


def inclusive(box: tuple[int, int, int, int]) -> Box:
    """ShapesWorld boxes end exclusive; the metrics count inclusive pixels."""
    x0, y0, x1, y1 = box
    return x0, y0, x1 - 1, y1 - 1


def _mask(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array)


class CaptionWords:
    """A scene's reference caption (the example's text): each grounded word refers to every
    instance of its category ("blue": every blue object) and describes one object (a texture
    word: the background)."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.tokens = scene.caption_grounding()

    def requested(self) -> None:
        return None  # every word of the caption

    def referent(self, target: Target) -> Referent | None:
        if not 0 <= target.id < len(self.tokens):
            return None
        token = self.tokens[target.id]
        if token.category is None or token.word != target.name:
            return None
        scene = self.scene
        if isinstance(token.referent, int):
            own = _mask(scene.object_mask(token.referent))
            boxes = (inclusive(scene.objects[token.referent].box),)
        else:
            own, boxes = _mask(scene.background_mask()), ()
        return Referent(token.category, _mask(scene.word_mask(token.word)), own, boxes)


class QuestionAnswer:
    """A question about one object ("what color is the circle?"): its correct answer refers
    to that object."""

    def __init__(self, scene: Scene, question: Question) -> None:
        self.scene, self.question = scene, question

    def requested(self) -> list[str]:
        return [self.question.answer]

    def referent(self, target: Target) -> Referent | None:
        question = self.question
        if question.referent is None or target.name != question.answer:
            return None
        mask = _mask(self.scene.object_mask(question.referent))
        box = inclusive(self.scene.objects[question.referent].box)
        return Referent(question.kind, mask, None, (box,))
