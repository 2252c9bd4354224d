"""Where Grad-CAM reads a Hugging Face vision transformer: its patch grid and default layer.

Encoders emit tokens (N, L, C); Grad-CAM needs (N, C, h, w). The grid is computed from the
patch size and the ``pixel_values`` actually fed, not assumed square, so any size the
processor produces keeps its layout. Patch tokens come last: CLS (and ViLT's text tokens)
come first and are dropped. Hierarchical encoders (Swin) have no such prefix and halve the
grid at each stage, so each stage's grid is known in advance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vlx.errors import InputError
from vlx.layers import TokenGrid


def patch_grids(config: Any, height: int, width: int) -> list[tuple[int, int]]:
    """The token grids a vision encoder with ``config`` produces for an H x W input.

    ViT-style patch convolutions drop a partial last patch (floor); Swin pads to whole
    patches and pads odd sizes before every merge (ceil), once per stage after the first.
    """
    patch = config.patch_size
    ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
    depths = getattr(config, "depths", None)
    if not depths:
        return [(height // ph, width // pw)]
    grids = [(math.ceil(height / ph), math.ceil(width / pw))]
    for _ in depths[1:]:
        h, w = grids[-1]
        grids.append((math.ceil(h / 2), math.ceil(w / 2)))
    return grids


class PatchGrid:
    """Reshape a layer's tokens to the patch grid they hold (``to_grid`` for ``GradCAM``).

    A token count equal to one of ``grids`` is that grid (Swin stages); otherwise the last
    h*w tokens of the single grid are the patches and the tokens before them are dropped.
    Conv-like (N, C, h, w) outputs, such as the patch embedding, pass through.
    """

    def __init__(self, grids: Sequence[tuple[int, int]]) -> None:
        self.grids = list(grids)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 3:
            return TokenGrid()(tokens)
        count = tokens.shape[1]
        for grid in self.grids:
            if count == grid[0] * grid[1]:
                return TokenGrid(prefix=0, grid=grid)(tokens)
        h, w = self.grids[-1]
        if len(self.grids) > 1 or count < h * w:
            raise ValueError(
                f"{count} tokens do not hold a patch grid of the input (grids {self.grids}); "
                "explain a layer of the vision encoder"
            )
        return TokenGrid(prefix=count - h * w, grid=(h, w))(tokens)


def last_block(model: nn.Module, paths: Sequence[str]) -> str:
    """Dotted name of the last block of the first block list in ``paths`` that the model has.

    Several paths are tried because module paths moved between transformers versions.
    """
    for path in paths:
        try:
            blocks = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(blocks, nn.ModuleList) and len(blocks):
            return f"{path}.{len(blocks) - 1}"
    raise InputError(
        f"{type(model).__name__} has none of the block lists {', '.join(paths)}; "
        "name the layer to explain"
    )


def check_vision_layer(
    model: nn.Module, layer: str | None, prefixes: Sequence[str], block_lists: Sequence[str]
) -> None:
    """A layer to explain must lie in the module paths that hold the image's patch tokens
    (a text decoder's layers, a pooler, hold none); an error names the vision blocks."""
    if not layer or any(layer.startswith(prefix) for prefix in prefixes):
        return
    blocks = []
    for path in block_lists:
        try:
            found = model.get_submodule(path)
        except AttributeError:
            continue
        blocks = [f"{path}.{i}" for i in range(len(found))]
        break
    shown = ", ".join(blocks if len(blocks) <= 3 else [*blocks[:2], "...", blocks[-1]])
    raise InputError(
        f"layer {layer!r} is outside the vision encoder, whose tokens are the image's patches; "
        f"explain a layer under {' or '.join(prefixes)}, e.g. {shown or 'its last block'}"
    )
