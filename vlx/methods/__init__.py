"""Every attribution method by name, behind one entry point that adapters and commands share.

Every method takes the same arguments: the model, its inputs, ``targets``, ``layer`` (the
Grad-CAM family), ``input_index`` (which input is the image), ``to_grid`` (token layers) and
``model_kwargs`` (keyword arguments for the model, never mistaken for a method's own).
The method names are importable without torch (the CLI's parser uses them); the methods
themselves are imported when ``explain`` runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vlx.errors import InputError

if TYPE_CHECKING:
    from torch import nn

    from vlx.cam import GridFn
    from vlx.explanation import Explanation
    from vlx.targets import Targets

CAM_FAMILY: dict[str, str] = {
    "gradcam": "vlx.cam:GradCAM",
    "gradcam++": "vlx.methods.gradcampp:GradCAMPlusPlus",
    "hirescam": "vlx.methods.hirescam:HiResCAM",
    "xgradcam": "vlx.methods.xgradcam:XGradCAM",
    "layercam": "vlx.methods.layercam:LayerCAM",
    "eigencam": "vlx.methods.eigencam:EigenCAM",
    "scorecam": "vlx.methods.scorecam:ScoreCAM",
    "ablationcam": "vlx.methods.ablationcam:AblationCAM",
}
"""The CAM family by name: each a way of weighting the explained layer's channels."""
METHODS: tuple[str, ...] = (
    "gradcam",
    "counterfactual",
    "guided-backprop",
    "deconvolution",
    "guided-gradcam",
    "occlusion",
    *(name for name in CAM_FAMILY if name != "gradcam"),
)
COPY_METHODS: tuple[str, ...] = ("occlusion", "scorecam", "ablationcam")
"""Methods that forward edited copies of each example, ``batch_size`` copies at a time."""
ALPHA_METHODS: tuple[str, ...] = (
    "gradcam", "guided-gradcam", "counterfactual", "gradcam++", "xgradcam", "scorecam",
    "ablationcam",
)
"""Methods whose explanations carry one weight per channel (alphas), in the order ``--text``
prefers them; the others weight positions, or no channels at all."""
CLASS_AGNOSTIC: tuple[str, ...] = ("eigencam",)
"""Methods whose map is the same for every target of an example."""
OCCLUSION_WINDOW = 32
"""Occlusion's default window and stride in input pixels, everywhere a method runs by name."""
OCCLUSION_STRIDE = 16
BATCH_SIZE = 32
"""Edited copies per forward of the ``COPY_METHODS``, everywhere they run by name."""


def check_methods(methods: list[str]) -> list[str]:
    """Validate method names early, before any work or any file is written."""
    if not methods:
        raise InputError(f"no method given; valid methods: {', '.join(METHODS)}")
    for method in methods:
        if method not in METHODS:
            raise InputError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    return methods


def explain(
    model: nn.Module,
    *inputs: Any,
    method: str = "gradcam",
    targets: Targets = None,
    layer: nn.Module | str | None = None,
    to_grid: GridFn | None = None,
    input_index: int = 0,
    model_kwargs: dict[str, Any] | None = None,
    window: int | tuple[int, int] = OCCLUSION_WINDOW,
    stride: int | tuple[int, int] = OCCLUSION_STRIDE,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
) -> Explanation:
    """Run ``method`` for ``targets`` on ``model(*inputs, **model_kwargs)``.

    ``window`` and ``stride`` are occlusion's; ``batch_size`` is the edited copies per
    forward of occlusion, Score-CAM and Ablation-CAM, and ``progress`` shows a bar for their
    forwards on a terminal; the other methods ignore them.
    """
    check_methods([method])
    from vlx.cam import GradCAM
    from vlx.methods.guided import InputGradients, guided_gradcam
    from vlx.methods.occlusion import occlusion

    common = {"targets": targets, "input_index": input_index, "model_kwargs": model_kwargs}
    if method == "counterfactual":
        with GradCAM(model, layer, to_grid=to_grid) as cam:
            return cam(*inputs, counterfactual=True, **common)
    if method in CAM_FAMILY:
        options = {"batch_size": batch_size, "progress": progress} if method in COPY_METHODS else {}
        with cam_class(method)(model, layer, to_grid=to_grid, **options) as cam:
            return cam(*inputs, **common)
    if method in ("guided-backprop", "deconvolution"):
        rule = "guided" if method == "guided-backprop" else "deconv"
        return InputGradients(model, rule)(*inputs, **common)
    if method == "guided-gradcam":
        return guided_gradcam(model, *inputs, layer=layer, to_grid=to_grid, **common)
    return occlusion(model, *inputs, window=window, stride=stride, batch_size=batch_size,
                     progress=progress, **common)


def cam_class(method: str) -> type:
    """The class of a CAM-family method, imported on first use."""
    module, name = CAM_FAMILY[method].split(":")
    return getattr(importlib.import_module(module), name)
