"""Finding the layer to explain: by module, by dotted name, or by one probing forward."""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from vlx.errors import InputError


def named_layer(model: nn.Module, layer: nn.Module | str) -> tuple[str, nn.Module]:
    """Resolve ``layer`` (a submodule or its dotted name) to ``(name, module)``.

    An unknown name is an error listing the closest valid names, because layer names are
    long and people type them from memory.
    """
    modules = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer:
                return name, module
        raise InputError(f"layer {type(layer).__name__} is not a submodule of the model")
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module or a dotted name, got {type(layer).__name__}")
    if layer in modules and layer != "":
        return layer, modules[layer]
    names = [name for name in modules if name]
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.4)
    if not close:
        close = [name for name in names if layer.split(".")[-1] in name][:5] or names[-5:]
    raise InputError(f"unknown layer {layer!r}; closest layers: {', '.join(close)}")


def spatial_output(output: Any) -> torch.Tensor | None:
    """The tensor a layer's output contributes to Grad-CAM: the tensor, or a tuple's first."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def spatial_layers(
    model: nn.Module,
    run_forward: Callable[[], Any],
    to_grid: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[str]:
    """Names of the modules whose output is a spatial map (N, C, h, w) with more than one
    position, in the order they finish during one probing forward.

    ``run_forward`` runs the model on real inputs once, so multi-input models (captioning,
    VQA) are probed exactly as they will be explained; ``to_grid`` (token layers to their
    patch grid) is tried on outputs that are not maps themselves. Containers finish after
    their children, so a stage such as ResNet's ``layer4`` comes after its last ReLU. Only
    forwards of the calling thread are recorded.
    """
    order: list[str] = []
    handles = []
    thread = threading.get_ident()

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if threading.get_ident() == thread and _is_spatial(spatial_output(output), to_grid):
                order.append(name)

        return hook

    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(record(name)))
        with torch.no_grad():
            run_forward()
    finally:
        for handle in handles:
            handle.remove()
    return list(dict.fromkeys(order))


def last_spatial_layer(model: nn.Module, run_forward: Callable[[], Any]) -> str:
    """Name of the last module (in execution order) whose output is still a spatial map."""
    order = spatial_layers(model, run_forward)
    if not order:
        raise InputError(
            "no layer of the model produced a spatial (N, C, h, w) output; name one with `layer=`"
        )
    return order[-1]


def _is_spatial(tensor: torch.Tensor | None, to_grid: Callable | None) -> bool:
    if tensor is None:
        return False
    grid = tensor
    if tensor.dim() != 4 and to_grid is not None:
        try:
            grid = to_grid(tensor)
        except (ValueError, RuntimeError, IndexError, InputError):
            return False
    return grid.dim() == 4 and grid.shape[-1] * grid.shape[-2] > 1


def describe_layers(names: list[str], limit: int = 6) -> str:
    """A short list of layer names for a message: the last ``limit`` (the likeliest choices)."""
    shown = names[-limit:]
    return ("..., " if len(names) > limit else "") + ", ".join(shown)


class TokenGrid:
    """Reshape transformer tokens (N, L, C) to a patch grid (N, C, h, w).

    Args:
        prefix: tokens before the patches (CLS, distillation or text tokens) to drop.
        grid: (h, w) of the patch grid; ``None`` assumes a square grid of the remaining tokens.
    """

    def __init__(self, prefix: int = 1, grid: tuple[int, int] | None = None) -> None:
        self.prefix = prefix
        self.grid = grid

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() == 4:
            return tokens
        if tokens.dim() != 3:
            raise ValueError(f"expected (N, L, C) tokens, got shape {tuple(tokens.shape)}")
        patches = tokens[:, self.prefix :]
        if self.grid is None:
            side = round(patches.shape[1] ** 0.5)
            if side * side != patches.shape[1]:
                raise ValueError(
                    f"{patches.shape[1]} patch tokens do not form a square grid; pass grid=(h, w)"
                )
            h, w = side, side
        else:
            h, w = self.grid
        patches = patches[:, : h * w]
        return patches.reshape(tokens.shape[0], h, w, tokens.shape[-1]).permute(0, 3, 1, 2)


def last_module_named(model: nn.Module, suffix: str) -> str | None:
    """Dotted name of the last module whose name ends with ``suffix`` (e.g. the last block's
    ``layernorm_before``), robust to module paths that moved between library versions."""
    matches = [name for name, _ in model.named_modules() if name.endswith(suffix)]
    return matches[-1] if matches else None
