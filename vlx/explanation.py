"""The record every attribution method returns, and the explicit post-processing steps.

Maps stay raw (after the ReLU, unnormalised, at the layer's resolution) so that alphas, scores
and maps remain comparable across targets; normalising and upsampling are separate, explicit
steps because the metrics of the paper need them in different orders.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Explanation:
    """Maps for N inputs x T targets.

    Attributes:
        maps: (N, T, h, w) attribution maps (raw: not normalised, not upsampled).
        scores: (N, T) the value of each explained scalar at the input.
        targets: what was explained, one entry per image, each a list of T target ids
            (class indices, word positions, answers), or ``None`` for a callable target.
        method: "gradcam", "counterfactual", "guided-backprop", ...
        alphas: (N, T, K) per-channel weights (Grad-CAM family only; textual explanations
            rank units by them).
        layer: dotted name of the explained layer, where there is one.
        channels: (N, T, C, H, W) input-gradient images for guided backprop and deconvolution,
            before they are reduced to the 2-D ``maps``.
    """

    maps: torch.Tensor
    scores: torch.Tensor
    targets: list[list[Any]] | None
    method: str
    alphas: torch.Tensor | None = None
    layer: str | None = None
    channels: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.maps.dim() != 4:
            raise ValueError(f"maps must be (N, T, h, w), got shape {tuple(self.maps.shape)}")
        if tuple(self.scores.shape) != tuple(self.maps.shape[:2]):
            raise ValueError(
                f"scores {tuple(self.scores.shape)} do not match maps {tuple(self.maps.shape)}"
            )

    @property
    def num_images(self) -> int:
        return self.maps.shape[0]

    @property
    def num_targets(self) -> int:
        return self.maps.shape[1]

    def upsampled(self, size: tuple[int, int]) -> Explanation:
        """The same explanation with maps bilinearly resized to ``size`` (H, W)."""
        return replace(self, maps=upsample(self.maps, size))

    def normalized(self) -> Explanation:
        """The same explanation with every map scaled to [0, 1] on its own."""
        return replace(self, maps=normalize(self.maps))

    def peaks(
        self, size: tuple[int, int] | None = None, image_size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """(N, T, 2) integer ``(x, y)`` of each map's maximum, in ``size`` pixel coordinates.

        With ``size`` the map is first upsampled bilinearly, so the peak is located the way a
        person sees it on the overlay. With ``image_size`` as well (the photo, when the
        overlay is drawn smaller), the peak found at ``size`` is given in the photo's pixels:
        the pixel under the centre of the overlay pixel. Ties go to the first maximum in
        row-major order.
        """
        maps = upsample(self.maps, size) if size is not None else self.maps
        peaks = peak_coordinates(maps)
        if image_size is None or size is None or tuple(image_size) == tuple(size):
            return peaks
        (height, width), (shown_h, shown_w) = image_size, size
        x = ((peaks[..., 0] + 0.5) * width / shown_w).floor().clamp(max=width - 1)
        y = ((peaks[..., 1] + 0.5) * height / shown_h).floor().clamp(max=height - 1)
        return torch.stack([x, y], dim=-1).long()


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (N, T, h, w) maps to ``size`` (the paper upsamples bilinearly)."""
    n, t, h, w = maps.shape
    if (h, w) == tuple(size):
        return maps
    flat = maps.reshape(n * t, 1, h, w).float()
    out = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
    return out.reshape(n, t, *size)


def normalize(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale each (h, w) map to [0, 1]; an all-constant map becomes all zeros."""
    flat = maps.flatten(-2)
    low = flat.min(dim=-1, keepdim=True).values
    high = flat.max(dim=-1, keepdim=True).values
    span = high - low
    out = torch.where(span > eps, (flat - low) / span.clamp_min(eps), torch.zeros_like(flat))
    return out.reshape(maps.shape)


def peak_coordinates(maps: torch.Tensor) -> torch.Tensor:
    """(…, h, w) maps -> (…, 2) integer ``(x, y)`` of the first maximum of each map."""
    w = maps.shape[-1]
    index = maps.flatten(-2).argmax(dim=-1)
    return torch.stack([index % w, index // w], dim=-1)
