"""Score-CAM (Wang et al., CVPR-W 2020): channels weighted by what they make the model say.

Each channel of the layer, upsampled bilinearly to the image and scaled to [0, 1], masks the
image; the masked copies are scored, and a target's channel weights are the softmax over
channels of its scores on them; the map is ReLU(sum_k w_k A_k) on the layer's grid. The paper
weights a channel by the target's softmax probability over classes on its masked copy, which
presumes a classifier; the softmax over channels (pytorch-grad-cam's choice too) is defined for
any scalar, a caption word's or an answer's. The masks are upsampled as vlx upsamples every map
(half-pixel centres, ``align_corners=False``); pytorch-grad-cam aligns the corners.
"""

from __future__ import annotations

import torch

from vlx.cam import weighted_maps
from vlx.explanation import normalize, upsample
from vlx.methods.gradient_free import CopyScores, GradientFreeCAM


class ScoreCAM(GradientFreeCAM):
    """Score-CAM: K masked forwards per example (in batches), shared by all its targets."""

    method = "scorecam"

    def combine(self, activations: torch.Tensor, scores: torch.Tensor, image: torch.Tensor,
                score_copies: CopyScores) -> tuple[torch.Tensor, torch.Tensor]:
        n, k = activations.shape[:2]
        weights = torch.zeros(n, scores.shape[1], k, device=activations.device)
        masked_scores: list[list[torch.Tensor]] = [[] for _ in range(n)]
        for example, piece in self.work(n, k):
            chosen = activations[example : example + 1, piece.start : piece.stop]
            masks = normalize(upsample(chosen, tuple(image.shape[-2:])))[0]
            masked = image[example : example + 1] * masks[:, None].to(image.dtype)
            masked_scores[example].append(score_copies(example, len(piece), masked))
        for example, pieces in enumerate(masked_scores):
            weights[example] = torch.cat(pieces).T.float().softmax(dim=-1)
        return weighted_maps(weights.to(activations.dtype), activations), weights
