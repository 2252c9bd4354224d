"""The pointing game (Zhang et al. 2016; Grad-CAM paper Sec. 4.3 and 8.1.1).

A map scores a hit when its maximum, located after bilinear upsampling to the mask's
resolution, lies inside the mask of what the target refers to. A map without a maximum (all
values equal, e.g. all zero) points nowhere and misses. Two baselines say what chance and a
centre bias alone would score: the image centre, and a uniform random point (its expected
accuracy, the mask's area fraction, rather than one noisy draw).

The variant with rejection (Appendix D) also scores classes that are not in the image: a map
for an absent class should say so by staying small, so a map whose raw maximum is under a
threshold rejects its class.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch

from vlx.explanation import peak_coordinates, upsample


def pointing_hits(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N, T) bool hits of (N, T, h, w) maps against (N, T, H, W) bool masks."""
    if maps.shape[:2] != masks.shape[:2]:
        raise ValueError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ in N, T")
    size = tuple(masks.shape[-2:])
    resized = upsample(maps.float(), size)
    peaks = peak_coordinates(resized)
    x, y = peaks[..., 0], peaks[..., 1]
    n, t = torch.meshgrid(torch.arange(maps.shape[0]), torch.arange(maps.shape[1]), indexing="ij")
    inside = masks[n, t, y, x]
    flat = resized.flatten(-2)
    has_peak = flat.amax(dim=-1) > flat.amin(dim=-1)
    return inside & has_peak


def zhang_tolerance(image_size: int) -> int:
    """Zhang et al.'s pointing game forgives a maximum within 15 px of the object at about
    224 px; the same share of a ``image_size`` px image."""
    return round(15 * image_size / 224)


def grown(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """(..., H, W) bool masks grown by every pixel within ``radius`` px (Euclidean)."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    disk = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).float()
    flat = masks.reshape(-1, 1, *masks.shape[-2:]).float()
    near = torch.nn.functional.conv2d(flat, disk[None, None], padding=radius) > 0
    return near.reshape(masks.shape)


def centre_hits(masks: torch.Tensor) -> torch.Tensor:
    """(…) bool: does the centre pixel lie in each (…, H, W) mask?"""
    h, w = masks.shape[-2:]
    return masks[..., h // 2, w // 2]


def random_point_accuracy(masks: torch.Tensor) -> torch.Tensor:
    """(…) expected hit rate of a uniform random point: each mask's area fraction."""
    return masks.flatten(-2).float().mean(dim=-1)


@dataclass
class PointingTally:
    """Hits per category for a method and the two baselines, accumulated over a dataset."""

    hits: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    centre: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    random: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    count: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, category: str, maps: torch.Tensor, masks: torch.Tensor) -> None:
        """Add (N, T, h, w) maps scored against (N, T, H, W) masks, all of ``category``."""
        self.hits[category] += int(pointing_hits(maps, masks).sum())
        self.centre[category] += int(centre_hits(masks).sum())
        self.random[category] += float(random_point_accuracy(masks).sum())
        self.count[category] += masks.shape[0] * masks.shape[1]

    def summary(self) -> dict[str, dict[str, float]]:
        """Per category: accuracy, centre and random baselines, and the number scored."""
        return {
            category: {
                "accuracy": self.hits[category] / total,
                "centre": self.centre[category] / total,
                "random": self.random[category] / total,
                "count": total,
            }
            for category, total in sorted(self.count.items())
            if total
        }


OUTCOMES = ("hit", "miss", "false_alarm", "correct_rejection")


def rejection_outcomes(
    maps: torch.Tensor, masks: torch.Tensor, present: torch.Tensor, threshold: float
) -> list[str]:
    """The pointing game with rejection (paper Appendix D) for the K top classes of one image.

    ``maps`` (K, h, w) are raw maps (before normalisation), ``masks`` (K, H, W) the true
    regions (ignored where the class is absent) and ``present`` (K,) bool whether each class
    is in the image. A map whose maximum is under ``threshold`` rejects its class: correctly
    when the class is absent, a miss when it is present; a map that does not reject scores a
    hit when its peak lies in a present class's mask, and a false alarm for an absent class.
    """
    if not (maps.shape[0] == masks.shape[0] == present.shape[0]):
        raise ValueError(
            f"maps {tuple(maps.shape)}, masks {tuple(masks.shape)} and present "
            f"{tuple(present.shape)} differ in K"
        )
    accepted = maps.flatten(-2).amax(dim=-1) >= threshold
    hits = pointing_hits(maps[None], masks[None].bool())[0]
    outcomes = []
    for k in range(maps.shape[0]):
        if bool(present[k]):
            outcomes.append("hit" if bool(accepted[k]) and bool(hits[k]) else "miss")
        else:
            outcomes.append("false_alarm" if bool(accepted[k]) else "correct_rejection")
    return outcomes


@dataclass
class RejectionTally:
    """Outcomes of the pointing game with rejection at one threshold, over a dataset.

    Accuracy counts hits and correct rejections over every scored (image, class) pair,
    present or absent, as the paper reports it.
    """

    threshold: float
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    def add(self, maps: torch.Tensor, masks: torch.Tensor, present: torch.Tensor) -> None:
        """Score one image's K classes (see ``rejection_outcomes``)."""
        for outcome in rejection_outcomes(maps, masks, present, self.threshold):
            self.counts[outcome] += 1

    def summary(self) -> dict[str, float]:
        """Accuracy, the threshold, and the count of each outcome."""
        total = sum(self.counts.values())
        if not total:
            raise ValueError("no classes were scored")
        correct = self.counts["hit"] + self.counts["correct_rejection"]
        return {"accuracy": correct / total, "threshold": self.threshold, "count": total,
                **self.counts}
