"""Deletion and insertion curves (Petsiuk et al. 2018): faithfulness without a reference map.

A faithful map ranks pixels by how much the model needs them. Deleting pixels in that order
(replacing them with a baseline) should make the score fall fast: a small area under the
deletion curve. Inserting them into a baseline image should make it rise fast: a large area
under the insertion curve. A random map gives the chance level of both.

Ties in the saliency are broken in row-major order, so a constant map deletes top rows first.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from vlx.explanation import upsample

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
Baseline = str | torch.Tensor
BASELINES = ("blur", "zero", "mean")


def deletion_curve(
    score_fn: ScoreFn,
    image: torch.Tensor,
    saliency: torch.Tensor,
    steps: int = 20,
    baseline: Baseline = "zero",
    batch_size: int = 32,
) -> torch.Tensor:
    """(steps + 1,) scores of ``image`` after replacing its ``i / steps`` most salient
    pixels with ``baseline``, for i = 0..steps.

    ``score_fn`` maps a (B, C, H, W) batch to (B,) scores (e.g. the class probability);
    ``saliency`` (h, w) is upsampled bilinearly to (H, W). ``baseline`` is "zero" (0 in the
    image tensor's space: the dataset mean for mean/std-normalised inputs), "mean" (the
    image's per-channel mean), "blur" (a Gaussian blur of the image) or a tensor broadcast to
    (C, H, W). Petsiuk et al. delete to zero and insert into a blur: the defaults here.
    """
    return _curve(score_fn, image, saliency, steps, baseline, batch_size, insert=False)


def insertion_curve(
    score_fn: ScoreFn,
    image: torch.Tensor,
    saliency: torch.Tensor,
    steps: int = 20,
    baseline: Baseline = "blur",
    batch_size: int = 32,
) -> torch.Tensor:
    """(steps + 1,) scores of ``baseline`` with the ``i / steps`` most salient pixels of
    ``image`` put back, for i = 0..steps (arguments as in ``deletion_curve``)."""
    return _curve(score_fn, image, saliency, steps, baseline, batch_size, insert=True)


def curve_area(curve: torch.Tensor) -> float:
    """Area under a curve sampled at evenly spaced fractions of [0, 1] (trapezoid rule)."""
    if curve.dim() != 1 or curve.numel() < 2:
        raise ValueError(f"a curve needs at least 2 points in 1-D, got shape {tuple(curve.shape)}")
    return float(torch.trapezoid(curve.double(), dx=1.0 / (curve.numel() - 1)))


def baseline_image(image: torch.Tensor, baseline: Baseline) -> torch.Tensor:
    """The (C, H, W) image that removed pixels are replaced by (see ``deletion_curve``)."""
    if isinstance(baseline, torch.Tensor):
        return baseline.to(image).expand_as(image)
    if baseline == "zero":
        return torch.zeros_like(image)
    if baseline == "mean":
        return image.mean(dim=(-2, -1), keepdim=True).expand_as(image)
    if baseline == "blur":
        return gaussian_blur(image, sigma=5.0 * max(image.shape[-2:]) / 224)
    raise ValueError(f"unknown baseline {baseline!r}; valid: {', '.join(BASELINES)} or a tensor")


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (C, H, W) image, edges replicated."""
    radius = max(1, math.ceil(2 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = image.shape[0]
    out = F.pad(image[None], (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    out = F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return out[0]


def removal_order(saliency: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) rank of every pixel, 0 = most salient, from an (h, w) map resized to ``size``;
    equal values keep row-major order."""
    resized = upsample(saliency[None, None].float(), size)[0, 0].flatten()
    order = torch.argsort(-resized, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    return rank.reshape(size)


def _curve(
    score_fn: ScoreFn, image: torch.Tensor, saliency: torch.Tensor, steps: int,
    baseline: Baseline, batch_size: int, insert: bool,
) -> torch.Tensor:
    if image.dim() != 3:
        raise ValueError(f"image must be (C, H, W), got shape {tuple(image.shape)}")
    if saliency.dim() != 2:
        raise ValueError(f"saliency must be (h, w), got shape {tuple(saliency.shape)}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be at least 1, got {steps}, {batch_size}")
    size = tuple(image.shape[-2:])
    rank = removal_order(saliency.to(image.device), size)
    fill = baseline_image(image, baseline)
    pixels = size[0] * size[1]
    counts = [round(i * pixels / steps) for i in range(steps + 1)]
    scores = []
    for start in range(0, len(counts), batch_size):
        chosen = torch.tensor(counts[start : start + batch_size], device=image.device)
        changed = (rank[None] < chosen[:, None, None])[:, None]  # (B, 1, H, W)
        batch = torch.where(changed, image, fill) if insert else torch.where(changed, fill, image)
        with torch.no_grad():
            scores.append(score_fn(batch).reshape(-1).float())
    return torch.cat(scores)
