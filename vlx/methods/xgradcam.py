"""XGrad-CAM (Fu et al., BMVC 2020): gradients averaged with the activation as the weight.

A channel's weight is sum_ij (A_kij / sum_ab A_kab) dy/dA_kij, the weights that make the map
satisfy the paper's sensitivity and conservation axioms for a ReLU network. A channel whose
activations sum to zero gets weight 0.
"""

from __future__ import annotations

import torch

from vlx.cam import CAM, weighted_maps


class XGradCAM(CAM):
    """XGrad-CAM for any differentiable scalar; the maps are ReLU(sum_k w_k A_k)."""

    method = "xgradcam"

    def combine(self, activations: torch.Tensor, gradients: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        totals = activations.sum(dim=(-2, -1))[:, None]
        products = (gradients * activations[:, None]).sum(dim=(-2, -1))
        safe = torch.where(totals == 0, torch.ones_like(totals), totals)
        weights = torch.where(totals == 0, torch.zeros_like(products), products / safe)
        return weighted_maps(weights, activations), weights
