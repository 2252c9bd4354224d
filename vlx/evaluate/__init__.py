"""Metrics of explanations against ground truth, and the runners that drive any adapter.

Public names load lazily, so ``import vlx.evaluate`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "pointing_hits": "vlx.evaluate.pointing",
    "PointingTally": "vlx.evaluate.pointing",
    "RejectionTally": "vlx.evaluate.pointing",
    "rejection_outcomes": "vlx.evaluate.pointing",
    "largest_segment_box": "vlx.evaluate.localization",
    "box_iou": "vlx.evaluate.localization",
    "connected_components": "vlx.evaluate.localization",
    "LocalizationTally": "vlx.evaluate.localization",
    "deletion_curve": "vlx.evaluate.deletion",
    "insertion_curve": "vlx.evaluate.deletion",
    "curve_area": "vlx.evaluate.deletion",
    "inside_outside_ratio": "vlx.evaluate.energy",
    "rank_correlation": "vlx.evaluate.faithfulness",
    "occlusion_agreement": "vlx.evaluate.faithfulness",
    "evaluation_data": "vlx.evaluate.sources",
    "noisy_linear_imputation": "vlx.evaluate.road",
    "road_scores": "vlx.evaluate.road",
    "spearman": "vlx.evaluate.similarity",
    "absolute_spearman": "vlx.evaluate.similarity",
    "ssim": "vlx.evaluate.similarity",
    "hog_similarity": "vlx.evaluate.similarity",
    "parameter_blocks": "vlx.evaluate.sanity",
    "randomized": "vlx.evaluate.sanity",
}
__all__ = [
    "LocalizationTally",
    "PointingTally",
    "RejectionTally",
    "absolute_spearman",
    "box_iou",
    "connected_components",
    "curve_area",
    "deletion_curve",
    "evaluation_data",
    "hog_similarity",
    "insertion_curve",
    "inside_outside_ratio",
    "largest_segment_box",
    "noisy_linear_imputation",
    "occlusion_agreement",
    "parameter_blocks",
    "pointing_hits",
    "randomized",
    "rank_correlation",
    "rejection_outcomes",
    "road_scores",
    "spearman",
    "ssim",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vlx.evaluate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
