"""Energy inside vs outside a region (paper Sec. 8.1, the DenseCap comparison).

The paper explains DenseCap's region captions on the whole image and asks whether the map
lands in the region the caption was generated for: the ratio of the mean map value inside
the region to the mean outside. A uniform map scores exactly 1; a map concentrated on the
region scores far above 1.
"""

from __future__ import annotations

import torch

from vlx.explanation import upsample


def inside_outside_ratio(map: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of ``map`` inside ``mask`` over its mean outside.

    ``map`` (h, w) is upsampled bilinearly to the (H, W) bool ``mask`` when sizes differ.
    A map that is zero everywhere has no energy to place: NaN. A map that is zero outside
    but not inside: infinity. A mask that is empty or covers every pixel has no inside or no
    outside to compare: ``ValueError``.
    """
    if map.dim() != 2 or mask.dim() != 2:
        raise ValueError(
            f"map and mask must be 2-D, got shapes {tuple(map.shape)} and {tuple(mask.shape)}"
        )
    mask = mask.to(map.device).bool()
    inside_count = int(mask.sum())
    if inside_count in (0, mask.numel()):
        raise ValueError(
            f"the mask covers {inside_count} of {mask.numel()} pixels: no inside or no outside"
        )
    if tuple(map.shape) != tuple(mask.shape):
        map = upsample(map[None, None].float(), tuple(mask.shape))[0, 0]
    values = map.double()
    inside = float(values[mask].mean())
    outside = float(values[~mask].mean())
    if outside == 0:
        return float("nan") if inside == 0 else float("inf")
    return inside / outside
