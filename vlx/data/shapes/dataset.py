"""A range of ShapesWorld scenes as a torch ``Dataset``."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from vlx.data.shapes.scene import Scene
from vlx.data.shapes.vocabulary import SPLITS
from vlx.data.shapes.world import ShapesWorld


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
