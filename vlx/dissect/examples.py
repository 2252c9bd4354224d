"""The probe images on which each unit fires most: what a picture of a unit shows."""

from __future__ import annotations

import torch


class TopImages:
    """Per unit, the ``count`` probe images with the highest peak activation (fixed memory)."""

    def __init__(self, units: int, count: int = 4) -> None:
        self.values = torch.full((units, 0), float("-inf"))
        self.indices = torch.zeros((units, 0), dtype=torch.long)
        self.count = count

    def add(self, peaks: torch.Tensor, indices: torch.Tensor) -> None:
        """``peaks`` (B, K): each image's maximum per unit; ``indices`` (B,): probe indices."""
        values = torch.cat([self.values, peaks.T.float().cpu()], dim=1)
        every = torch.cat([self.indices, indices.expand(peaks.shape[1], -1).cpu()], dim=1)
        top = values.topk(min(self.count, values.shape[1]), dim=1)
        self.values, self.indices = top.values, every.gather(1, top.indices)

    def per_unit(self) -> list[list[int]]:
        return self.indices.tolist()
