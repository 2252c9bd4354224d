"""vlx: visual explanations (Grad-CAM and friends) for vision and vision-language models.

The public names are imported lazily so that ``import vlx`` and ``vlx --help`` stay fast; once
read, a name is kept, so it is the same object however often and in whatever order it is read.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "explain": "vlx.methods",
    "GradCAM": "vlx.cam",
    "grad_cam_maps": "vlx.cam",
    "Explanation": "vlx.explanation",
    "normalize": "vlx.explanation",
    "upsample": "vlx.explanation",
    "InputGradients": "vlx.methods.guided",
    "deconvolution": "vlx.methods.guided",
    "guided_backprop": "vlx.methods.guided",
    "guided_gradcam": "vlx.methods.guided",
    "occlusion": "vlx.methods.occlusion",
}
__all__ = [
    "Explanation",
    "GradCAM",
    "InputGradients",
    "deconvolution",
    "explain",
    "grad_cam_maps",
    "guided_backprop",
    "guided_gradcam",
    "normalize",
    "occlusion",
    "upsample",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vlx' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
