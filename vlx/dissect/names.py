"""What a dissection concludes about one unit: its best concept and how well it matches.

Textual explanations read only this, so they work the same for every probe and model.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_IOU = 0.05
"""A unit is named only where its best concept reaches this IoU (Bau et al. 2017)."""


@dataclass(frozen=True)
class UnitName:
    """Unit ``unit`` (0-based channel index) best matches ``label`` of ``category`` with ``iou``."""

    unit: int
    category: str
    label: str
    iou: float

    @property
    def named(self) -> bool:
        return self.iou >= MIN_IOU
