"""HiResCAM (Draelos & Carin 2020): the gradient times the activation, position by position.

Grad-CAM averages the gradient over positions before it weights a channel, so a map can light
up where the score does not depend on the input; HiResCAM keeps the product at every position,
ReLU(sum_k dy/dA_k * A_k), which for a model whose score is linear in the layer is exactly each
position's contribution.
"""

from __future__ import annotations

import torch

from vlx.cam import CAM


class HiResCAM(CAM):
    """HiResCAM for any differentiable scalar; it has no channel weights."""

    method = "hirescam"

    def combine(self, activations: torch.Tensor, gradients: torch.Tensor
                ) -> tuple[torch.Tensor, None]:
        return (gradients * activations[:, None]).sum(dim=2).clamp_min(0), None
