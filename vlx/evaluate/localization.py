"""Weakly-supervised localization (paper Sec. 4.1): a box from a map, scored by IoU.

The map is binarised at a fraction of its maximum (15% in the paper), the largest connected
segment is boxed, and the box counts as a localization when its IoU with a ground-truth box is
at least 0.5. ILSVRC's top-k localization error counts an image as correct when one of its
top-k predicted classes is a true class and that class's box localizes it.

Boxes are ``(x0, y0, x1, y1)`` in inclusive integer pixel coordinates of the map, so maps must
be given at the resolution of the boxes (upsample first, e.g. ``vlx.explanation.upsample``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

Box = tuple[int, int, int, int]


def connected_components(mask: torch.Tensor, connectivity: int = 8) -> torch.Tensor:
    """(H, W) long labels of the connected components of a bool mask; 0 outside the mask.

    A component's label is 1 + the row-major index of its first pixel, so labels are
    deterministic and order components by where they start. Labels spread by a neighbourhood
    minimum and then jump along label chains (pointer jumping), which takes a few dozen tensor
    steps for the blobs a map gives, with no scipy or skimage.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    if mask.dim() != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {tuple(mask.shape)}")
    mask = mask.bool()
    h, w = mask.shape
    size = h * w
    index = torch.arange(size, device=mask.device).reshape(h, w)
    # track size - index so a max-pool carries the smallest index; 0 marks "outside"
    labels = torch.where(mask, size - index, torch.zeros_like(index))
    flat_mask = mask.flatten()
    while True:
        spread = _neighbourhood_max(labels, connectivity)
        spread = torch.where(mask, spread, torch.zeros_like(spread)).flatten()
        # pointer jumping: a pixel takes the label of the pixel its label points at
        pointed = (size - spread).clamp(0, size - 1)
        jumped = torch.where(flat_mask, spread.maximum(labels.flatten()[pointed]), spread)
        jumped = jumped.reshape(h, w)
        if torch.equal(jumped, labels):
            break
        labels = jumped
    return torch.where(mask, size - labels + 1, torch.zeros_like(labels))


def _neighbourhood_max(labels: torch.Tensor, connectivity: int) -> torch.Tensor:
    grid = labels[None, None].double()  # max_pool2d has no integer kernel on every backend
    if connectivity == 8:
        return F.max_pool2d(grid, 3, stride=1, padding=1)[0, 0].long()
    padded = F.pad(grid, (1, 1, 1, 1))[0, 0]
    h, w = labels.shape
    shifts = [padded[1 : h + 1, 1 : w + 1], padded[:h, 1 : w + 1], padded[2:, 1 : w + 1],
              padded[1 : h + 1, :w], padded[1 : h + 1, 2:]]
    return torch.stack(shifts).amax(dim=0).long()


def largest_segment_box(
    map: torch.Tensor, threshold: float = 0.15, connectivity: int = 8
) -> Box | None:
    """Box around the largest connected segment of ``map >= threshold * map.max()``.

    ``None`` when the map has no positive value (all zero, empty, or all negative): such a
    map localizes nothing. Ties between segments of equal size go to the one holding the
    larger map value, then to the one whose first pixel comes first in row-major order.
    """
    if map.dim() != 2:
        raise ValueError(f"map must be 2-D (h, w), got shape {tuple(map.shape)}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if map.numel() == 0:
        return None
    peak = map.max()
    if not peak > 0:
        return None
    labels = connected_components(map >= threshold * peak, connectivity).flatten()
    inside = labels > 0
    ids, sizes = labels[inside].unique(return_counts=True)  # ids ascending: row-major order
    peaks = torch.full((len(ids),), -float("inf"), dtype=torch.float64, device=map.device)
    position = torch.searchsorted(ids, labels[inside])
    peaks = peaks.scatter_reduce(0, position, map.flatten()[inside].double(), reduce="amax")
    largest = sizes == sizes.max()
    strongest = largest & (peaks == peaks[largest].max())
    chosen = ids[strongest.nonzero()[0, 0]]
    ys, xs = torch.nonzero(labels.reshape(map.shape) == chosen, as_tuple=True)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def box_iou(a: Sequence[int], b: Sequence[int]) -> float:
    """Intersection over union of two inclusive integer boxes ``(x0, y0, x1, y1)``."""
    ax0, ay0, ax1, ay1 = a
    bx0, by0, bx1, by1 = b
    for box in (a, b):
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"box {tuple(box)} has x1 < x0 or y1 < y0")
    width = min(ax1, bx1) - max(ax0, bx0) + 1
    height = min(ay1, by1) - max(ay0, by0) + 1
    intersection = max(width, 0) * max(height, 0)
    area_a = (ax1 - ax0 + 1) * (ay1 - ay0 + 1)
    area_b = (bx1 - bx0 + 1) * (by1 - by0 + 1)
    return intersection / (area_a + area_b - intersection)


def localization_correct(
    map: torch.Tensor, true_boxes: Sequence[Sequence[int]], threshold: float = 0.15,
    iou: float = 0.5,
) -> bool:
    """Does the map's box reach ``iou`` with any of ``true_boxes``? A map that gives no box
    (see ``largest_segment_box``) or an empty ``true_boxes`` is not correct."""
    box = largest_segment_box(map, threshold)
    return box is not None and any(box_iou(box, truth) >= iou for truth in true_boxes)


@dataclass
class LocalizationTally:
    """ILSVRC top-1 / top-5 localization and classification error over a dataset.

    An image is localized at top-k when one of its first k predicted classes is a true class
    and that class's map boxes one of the class's true boxes with IoU >= ``iou``; it is
    classified at top-k when one of the first k is a true class.
    """

    threshold: float = 0.15
    iou: float = 0.5
    ks: tuple[int, ...] = (1, 5)
    localized: dict[int, int] = field(default_factory=dict)
    classified: dict[int, int] = field(default_factory=dict)
    images: int = 0

    def add(
        self,
        predicted: Sequence[int],
        maps: torch.Tensor | Sequence[torch.Tensor],
        truth: Mapping[int, Sequence[Sequence[int]]],
    ) -> None:
        """Score one image: ``predicted`` classes best first, one 2-D map per predicted class
        (at the boxes' resolution), and its true boxes per class index."""
        if len(maps) != len(predicted):
            raise ValueError(f"got {len(maps)} maps for {len(predicted)} predicted classes")
        first_hit = {"localized": None, "classified": None}
        for rank, (label, map) in enumerate(zip(predicted, maps)):
            if label not in truth:
                continue
            if first_hit["classified"] is None:
                first_hit["classified"] = rank
            if localization_correct(map, truth[label], self.threshold, self.iou):
                first_hit["localized"] = rank
                break
        for k in self.ks:
            for name, counts in (("localized", self.localized), ("classified", self.classified)):
                rank = first_hit[name]
                counts[k] = counts.get(k, 0) + (rank is not None and rank < k)
        self.images += 1

    def summary(self) -> dict[str, float]:
        """Errors (fractions in [0, 1]) per k, and the number of images scored."""
        if not self.images:
            raise ValueError("no images were added")
        out: dict[str, float] = {}
        for k in self.ks:
            out[f"top{k}_localization_error"] = 1 - self.localized.get(k, 0) / self.images
            out[f"top{k}_classification_error"] = 1 - self.classified.get(k, 0) / self.images
        out["images"] = self.images
        return out
