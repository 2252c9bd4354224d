"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020): the activation's first principal component.

Each example's activation, as a (positions x channels) matrix, is projected on its first right
singular vector, so the map is where the layer's dominant pattern is. It reads no score: the
map is class-agnostic, the same for every target of an example (the scores are still
reported). The projection is of the activation itself, as in the paper (pytorch-grad-cam
centres the channels first); the singular vector's sign is chosen so that the projection sums
to at least zero, which for a non-negative (post-ReLU) layer makes it the non-negative
Perron vector, and the map is the projection's ReLU.
"""

from __future__ import annotations

from typing import Any

import torch

from vlx.methods.gradient_free import CopyScores, GradientFreeCAM


def first_component(activation: torch.Tensor) -> torch.Tensor:
    """(h, w) projection of one (K, h, w) activation on its first right singular vector."""
    k, h, w = activation.shape
    matrix = activation.reshape(k, h * w).T.double()
    direction = torch.linalg.svd(matrix, full_matrices=False).Vh[0]
    projection = matrix @ direction
    if projection.sum() < 0:
        projection = -projection
    return projection.reshape(h, w).to(activation.dtype)


class EigenCAM(GradientFreeCAM):
    """Eigen-CAM: one forward, no gradient, one map per example shared by its targets."""

    method = "eigencam"

    def combine(self, activations: torch.Tensor, scores: torch.Tensor, image: torch.Tensor,
                score_copies: CopyScores) -> tuple[torch.Tensor, None]:
        maps = torch.stack([first_component(a) for a in activations]).clamp_min(0)
        return maps[:, None].expand(-1, scores.shape[1], -1, -1).contiguous(), None

    def meta(self) -> dict[str, Any]:
        return {"class_agnostic": True}
