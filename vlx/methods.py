"""One entry point for every attribution method, so task adapters and the CLI share it.

The method names are importable without torch (the CLI's parser uses them); the methods
themselves are imported when ``explain`` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vlx.errors import InputError

if TYPE_CHECKING:
    from torch import nn

    from vlx.cam import GridFn
    from vlx.explanation import Explanation
    from vlx.targets import Targets

METHODS: tuple[str, ...] = (
    "gradcam",
    "counterfactual",
    "guided-backprop",
    "deconvolution",
    "guided-gradcam",
    "occlusion",
)


def check_methods(methods: list[str]) -> list[str]:
    """Validate method names early, before any work or any file is written."""
    for method in methods:
        if method not in METHODS:
            raise InputError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    return methods


def explain(
    model: nn.Module,
    inputs: tuple[Any, ...],
    method: str,
    *,
    targets: Targets = None,
    layer: nn.Module | str | None = None,
    to_grid: GridFn | None = None,
    input_index: int = 0,
    occlusion_window: int = 32,
    occlusion_stride: int = 16,
    model_kwargs: dict[str, Any] | None = None,
) -> Explanation:
    """Run ``method`` for ``targets`` on ``model(*inputs, **model_kwargs)``."""
    check_methods([method])
    from vlx.cam import GradCAM
    from vlx.guided import InputGradients, guided_gradcam
    from vlx.occlusion import occlusion

    kwargs = model_kwargs or {}
    if method in ("gradcam", "counterfactual"):
        with GradCAM(model, layer, to_grid=to_grid) as cam:
            return cam(*inputs, targets=targets, counterfactual=method == "counterfactual", **kwargs)
    if method in ("guided-backprop", "deconvolution"):
        rule = "guided" if method == "guided-backprop" else "deconv"
        return InputGradients(model, rule, input_index)(*inputs, targets=targets, **kwargs)
    if method == "guided-gradcam":
        return guided_gradcam(
            model, *inputs, layer=layer, targets=targets, input_index=input_index,
            to_grid=to_grid, **kwargs,
        )
    return occlusion(
        model, *inputs, targets=targets, window=occlusion_window, stride=occlusion_stride,
        input_index=input_index, **kwargs,
    )
