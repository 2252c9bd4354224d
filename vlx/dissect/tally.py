"""The IoU tally of Network Dissection: how each unit's high-activation region overlaps each
concept, accumulated over the probe in counts whose size does not depend on the probe.

For unit k and concept c (Bau et al. 2017, as NetDissect counts it):
``IoU = intersect / (activation + truth - intersect)`` where ``intersect`` counts pixels in
both the unit's mask and the concept, ``truth`` the concept's pixels, and ``activation`` the
unit's mask pixels on the images that carry any label of the concept's category, so a
category annotated on few images is not penalised where it was never annotated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vlx.dissect.broden import Label, ProbeImage


@dataclass(frozen=True)
class CategoryScore:
    """A unit's best concept within one category, with the counts behind its IoU."""

    label: str
    truth: int
    activation: int
    intersect: int
    iou: float


class IoUTally:
    """Counts for K units over every label of a probe (global label numbers index columns).

    Args:
        units: K.
        labels: the probe's labels, each with its one category.
        categories: category names, in the order results list them.
    """

    def __init__(
        self, units: int, labels: Sequence[Label], categories: Sequence[str],
        device: str | torch.device = "cpu",
    ) -> None:
        self.labels = list(labels)
        self.categories = list(categories)
        self.device = torch.device(device)
        top = max((label.number for label in self.labels), default=0)
        self.category_of = torch.full((top + 1,), -1, dtype=torch.long, device=self.device)
        for label in self.labels:
            self.category_of[label.number] = self.categories.index(label.category)
        self.intersect = torch.zeros(units, top + 1, dtype=torch.long, device=self.device)
        self.truth = torch.zeros(top + 1, dtype=torch.long, device=self.device)
        self.activation = torch.zeros(
            units, len(self.categories), dtype=torch.long, device=self.device
        )

    @property
    def state_bytes(self) -> int:
        """Bytes held between images: fixed by units and labels, not by probe images."""
        tensors = (self.intersect, self.truth, self.activation)
        return sum(t.numel() * t.element_size() for t in tensors)

    def add(
        self, masks: torch.Tensor, image: ProbeImage, units: torch.Tensor | None = None
    ) -> None:
        """Count one image: ``masks`` (U, sh, sw) bool, the above-threshold regions at the
        image's label resolution of ``units`` (default: all K, in order); units left out had
        no activation above threshold on the image. Labels ``label.csv`` lacks are ignored."""
        numbers, concepts = self._concepts(image)
        if numbers.numel() == 0:
            return
        self.truth.index_add_(0, numbers, concepts.sum(dim=1).long())
        if units is None:
            units = torch.arange(masks.shape[0], device=self.device)
        if units.numel() == 0:
            return
        flat = masks.flatten(1).float()
        both = torch.zeros(len(units), self.intersect.shape[1], dtype=torch.long,
                           device=self.device)
        both[:, numbers] = (flat @ concepts.T).long()  # exact: per-image sums are < 2**24
        self.intersect.index_add_(0, units, both)
        present = self.category_of[numbers].unique()
        self.activation[units[:, None], present[None, :]] += flat.sum(dim=1).long()[:, None]

    def _concepts(self, image: ProbeImage) -> tuple[torch.Tensor, torch.Tensor]:
        """The image's label numbers (n,) and their masks (n, sh*sw): the union over planes,
        per-image labels covering everything."""
        sh, sw = image.size
        numbers, masks = [], []
        for planes in image.planes.values():
            stacked = torch.from_numpy(np.stack(planes)).to(self.device)
            present = stacked.unique()
            present = present[(present > 0) & (present < len(self.category_of))]
            numbers.append(present)
            masks.append((stacked[None] == present[:, None, None, None]).any(dim=1).flatten(1))
        for whole in image.whole.values():
            present = torch.tensor(whole, dtype=torch.long, device=self.device)
            present = present[(present > 0) & (present < len(self.category_of))]
            numbers.append(present)
            masks.append(torch.ones(len(present), sh * sw, dtype=torch.bool, device=self.device))
        if not numbers:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, sh * sw)
        every = torch.cat(numbers).long()
        known = self.category_of[every] >= 0
        every, stacked_masks = every[known], torch.cat(masks)[known].float()
        unique, inverse = every.unique(return_inverse=True)
        union = torch.zeros(len(unique), sh * sw, device=self.device)
        union.index_add_(0, inverse, stacked_masks)
        return unique, union.clamp_(max=1.0)

    def iou(self) -> torch.Tensor:
        """(K, number of labels) IoU, columns in ``labels`` order; 0 where nothing was seen."""
        numbers = torch.tensor([label.number for label in self.labels], device=self.device)
        intersect = self.intersect[:, numbers].double()
        activation = self.activation[:, self.category_of[numbers]].double()
        union = activation + self.truth[numbers].double() - intersect
        return torch.where(union > 0, intersect / union.clamp_min(1), torch.zeros_like(union))

    def best_per_category(self) -> list[dict[str, CategoryScore]]:
        """Per unit, per category, the concept with the highest IoU (the first on ties)."""
        iou = self.iou().cpu()
        intersect, truth = self.intersect.cpu(), self.truth.cpu()
        activation = self.activation.cpu()
        rows: list[dict[str, CategoryScore]] = [{} for _ in range(iou.shape[0])]
        for c, category in enumerate(self.categories):
            columns = [i for i, label in enumerate(self.labels) if label.category == category]
            if not columns:
                continue
            best = iou[:, columns].argmax(dim=1)
            for k, row in enumerate(rows):
                label = self.labels[columns[int(best[k])]]
                row[category] = CategoryScore(
                    label=label.name,
                    truth=int(truth[label.number]),
                    activation=int(activation[k, c]),
                    intersect=int(intersect[k, label.number]),
                    iou=float(iou[k, columns[int(best[k])]]),
                )
        return rows
