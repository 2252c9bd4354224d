"""LayerCAM (Jiang et al., TIP 2021): each position weighted by its own positive gradient.

ReLU(sum_k ReLU(dy/dA_k) * A_k): no averaging over positions, so shallow layers, whose
positions are fine, give fine maps, which is what the method was made for.
"""

from __future__ import annotations

import torch

from vlx.cam import CAM


class LayerCAM(CAM):
    """LayerCAM for any differentiable scalar; it has no channel weights."""

    method = "layercam"

    def combine(self, activations: torch.Tensor, gradients: torch.Tensor
                ) -> tuple[torch.Tensor, None]:
        weighted = gradients.clamp_min(0) * activations[:, None]
        return weighted.sum(dim=2).clamp_min(0), None
