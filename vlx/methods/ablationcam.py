"""Ablation-CAM (Desai & Ramaswamy, WACV 2020): channels weighted by the score lost without them.

Each channel of the layer in turn is set to zero (in copies of the example, in batches) and a
target's weight for it is its relative drop, (y - y_k) / |y|; the map is ReLU(sum_k w_k A_k).
The paper divides by y, a class score it takes to be positive; |y| keeps a drop a drop for
scores that are negative, such as a caption word's log-probability (a zero score leaves the
drop unscaled). A token layer's channel is zeroed at every patch token ``to_grid`` selects.
"""

from __future__ import annotations

import torch

from vlx.cam import weighted_maps
from vlx.capture import LayerCapture
from vlx.methods.gradient_free import CopyScores, GradientFreeCAM


class AblationCAM(GradientFreeCAM):
    """Ablation-CAM: K ablated forwards per example (in batches), shared by all its targets."""

    method = "ablationcam"

    def combine(self, activations: torch.Tensor, scores: torch.Tensor, image: torch.Tensor,
                score_copies: CopyScores) -> tuple[torch.Tensor, torch.Tensor]:
        n, k = activations.shape[:2]
        drops = torch.zeros(n, scores.shape[1], k, device=activations.device)
        for example, piece in self.work(n, k):
            channels = torch.arange(piece.start, piece.stop, device=activations.device)

            def ablate(output: torch.Tensor, channels: torch.Tensor = channels) -> torch.Tensor:
                return self.ablated(output, channels)

            with LayerCapture(self.layer, self.layer_name, "edit", edit=ablate):
                ablated = score_copies(example, len(piece))
            drops[example, :, piece.start : piece.stop] = (scores[example] - ablated).T.float()
        scale = scores.abs().float()
        weights = drops / torch.where(scale == 0, torch.ones_like(scale), scale)[..., None]
        return weighted_maps(weights.to(activations.dtype), activations), weights

    def ablated(self, output: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        """The layer's output for len(channels) copies, copy j without channel channels[j].

        Where each grid channel lies in the layer's own layout is found by passing the
        positions' numbers through ``to_grid`` (which only selects and reshapes)."""
        copies = output.shape[0]
        numbers = torch.arange(output[0].numel(), dtype=torch.float64, device=output.device)
        numbers = numbers.view(1, *output.shape[1:]).expand(copies, *output.shape[1:])
        grid = self.to_grid(numbers) if self.to_grid is not None else numbers
        rows = torch.arange(copies, device=output.device)
        places = grid[rows, channels].flatten(1).long()
        edited = output.contiguous().clone()
        edited.view(copies, -1)[rows[:, None], places] = 0
        return edited
