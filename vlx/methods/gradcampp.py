"""Grad-CAM++ (Chattopadhyay et al., WACV 2018): pixel-weighted gradients in closed form.

Each channel's weight sums the positive gradients over positions, each position weighted by
alpha_kij = g^2 / (2 g^2 + sum_ab A_kab g^3), with g = dy/dA_kij. The paper derives this
closed form from first-order gradients by taking the class score through an exponential, Y =
exp(y): the exp(y) factors cancel in alpha, and the one left on the weights is a positive
constant per target, dropped here (it scales a map, never shapes it). Positions whose
denominator vanishes get alpha 0. No epsilon is added: with small gradients an epsilon of
1e-6 (pytorch-grad-cam's) is not small against g^2 and changes the map.
"""

from __future__ import annotations

import torch

from vlx.cam import CAM, weighted_maps


class GradCAMPlusPlus(CAM):
    """Grad-CAM++ for any differentiable scalar; the maps are ReLU(sum_k w_k A_k)."""

    method = "gradcam++"

    def combine(self, activations: torch.Tensor, gradients: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        squared = gradients.pow(2)
        totals = activations.sum(dim=(-2, -1))[:, None, :, None, None]
        denominator = 2 * squared + totals * squared * gradients
        safe = torch.where(denominator == 0, torch.ones_like(denominator), denominator)
        alphas = torch.where(denominator == 0, torch.zeros_like(squared), squared / safe)
        weights = (alphas * gradients.clamp_min(0)).sum(dim=(-2, -1))
        return weighted_maps(weights, activations), weights
