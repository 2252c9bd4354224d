"""vlx: visual explanations (Grad-CAM and friends) for vision and vision-language models.

The public names are imported lazily so that ``import vlx`` and ``vlx --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "GradCAM": "vlx.cam",
    "grad_cam_maps": "vlx.cam",
    "Explanation": "vlx.explanation",
    "normalize": "vlx.explanation",
    "upsample": "vlx.explanation",
    "InputGradients": "vlx.guided",
    "deconvolution": "vlx.guided",
    "guided_backprop": "vlx.guided",
    "guided_gradcam": "vlx.guided",
    "occlusion": "vlx.occlusion",
}
__all__ = [
    "Explanation",
    "GradCAM",
    "InputGradients",
    "deconvolution",
    "grad_cam_maps",
    "guided_backprop",
    "guided_gradcam",
    "normalize",
    "occlusion",
    "upsample",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vlx' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
