"""Network Dissection: probe data (Broden format), thresholds, the IoU tally, unit names.

Public names load lazily, so ``import vlx.dissect.names`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BrodenProbe": "vlx.dissect.broden",
    "Dissection": "vlx.dissect.dissection",
    "cached_dissection": "vlx.dissect.dissection",
    "dissect": "vlx.dissect.dissection",
    "unit_activations": "vlx.dissect.dissection",
    "load_probe": "vlx.dissect.probe",
    "write_shapes_probe": "vlx.dissect.probe",
    "MIN_IOU": "vlx.dissect.names",
    "UnitName": "vlx.dissect.names",
}
__all__ = [
    "MIN_IOU",
    "BrodenProbe",
    "Dissection",
    "UnitName",
    "cached_dissection",
    "dissect",
    "load_probe",
    "unit_activations",
    "write_shapes_probe",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vlx.dissect' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
