"""Ground truth that any dataset can give: objects marked by boxes, objects marked by masks.

Each is an example's ``truth`` (``vlx.task.GroundTruth``). Boxes are what ILSVRC, Pascal VOC
and labelling tools give for classes; instance masks what COCO gives for its categories, which
caption words name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from vlx.task import Box, Referent, Target


def box_mask(boxes: Sequence[Box], size: tuple[int, int]) -> torch.Tensor:
    """(H, W) bool: the pixels inside any of the inclusive boxes."""
    mask = torch.zeros(size, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


class AnnotatedBoxes:
    """Classes present in an image with their boxes; a class target refers to its boxes.

    ``boxes`` maps a classifier's class index to the class's inclusive boxes, ``names`` gives
    the class names that results are grouped by.
    """

    def __init__(self, boxes: Mapping[int, Sequence[Box]], names: Sequence[str],
                 size: tuple[int, int]) -> None:
        self.boxes = {c: tuple(b) for c, b in boxes.items()}
        self.names, self.size = names, size

    def requested(self) -> list[int]:
        return sorted(self.boxes)

    def referent(self, target: Target) -> Referent | None:
        boxes = self.boxes.get(target.id)
        if not boxes:
            return None
        return Referent(self.names[target.id], box_mask(boxes, self.size), None, boxes)


class NamedInstances:
    """Instance masks by category, and the words that name each category (COCO): a caption
    word names a category when it, or its singular, is one of the category's words."""

    def __init__(self, masks: Mapping[str, torch.Tensor], boxes: Mapping[str, Sequence[Box]],
                 words: Mapping[str, str]) -> None:
        self.masks, self.boxes, self.words = masks, boxes, words

    def requested(self) -> None:
        return None  # every word of the caption

    def category(self, word: str) -> str | None:
        """The category ``word`` names, if any (case, plurals and punctuation folded)."""
        word = word.lower().strip(".,;:!?\"'()")
        for form in (word, word.removesuffix("s"),
                     word.removesuffix("es")):
            if form in self.words:
                return self.words[form]
        return None

    def referent(self, target: Target) -> Referent | None:
        category = self.category(target.name)
        if category is None or category not in self.masks:
            return None
        return Referent(category, self.masks[category], None, tuple(self.boxes.get(category, ())))
