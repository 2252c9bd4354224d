"""Occlusion sensitivity (Zeiler & Fergus 2014): the reference the paper's faithfulness uses.

A window of ``baseline`` values slides over the input; a pixel's value is the mean drop of
the target score over all windows covering it. Windows are scored in batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from vlx.cam import input_size, warn_if_training
from vlx.errors import InputError
from vlx.explanation import Explanation
from vlx.methods import BATCH_SIZE, OCCLUSION_STRIDE, OCCLUSION_WINDOW
from vlx.methods.copies import chunks, copy_scores
from vlx.targets import Targets, target_scores


def occlusion(
    model: nn.Module,
    *inputs: Any,
    targets: Targets = None,
    window: int | tuple[int, int] = OCCLUSION_WINDOW,
    stride: int | tuple[int, int] = OCCLUSION_STRIDE,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int = BATCH_SIZE,
    input_index: int = 0,
    model_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
) -> Explanation:
    """(N, T, H, W) occlusion maps for T targets per input, at input resolution.

    Other inputs (questions, captions) and tensor ``model_kwargs`` whose first dimension is
    N are repeated alongside each occluded copy of their image; ``batch_size`` copies go
    through the model at a time. A stride larger than the
    window would leave pixels no window covers, so it is refused (as Captum does).
    """
    meta = input_size(inputs, input_index)
    warn_if_training(model)
    model_kwargs = dict(model_kwargs or {})
    image = inputs[input_index]
    n, _, height, width = image.shape
    win_h, win_w = _pair(window, "window")
    step_h, step_w = _pair(stride, "stride")
    if win_h > height or win_w > width:
        raise InputError(f"window {(win_h, win_w)} is larger than the input {(height, width)}")
    if step_h > win_h or step_w > win_w:
        raise InputError(
            f"stride {(step_h, step_w)} is larger than the window {(win_h, win_w)}: pixels "
            "between windows would get no value; use a stride of at most the window"
        )
    positions = [(y, x) for y in _starts(height, win_h, step_h) for x in _starts(width, win_w, step_w)]
    pieces = [[positions[k] for k in piece] for piece in chunks(len(positions), batch_size)]
    with torch.no_grad():
        clean, ids = target_scores(model(*inputs, **model_kwargs), targets)
    fixed_targets = targets if ids is None else ids
    maps = torch.zeros(n, clean.shape[1], height, width, device=image.device)
    work = [(i, piece) for i in range(n) for piece in pieces]
    if progress:
        from tqdm.auto import tqdm

        work = tqdm(work, desc="occlusion", unit="forward", disable=None, leave=False)
    coverage = torch.zeros(height, width, device=image.device)
    for y, x in positions:
        coverage[y : y + win_h, x : x + win_w] += 1
    for i, piece in work:
        masks = torch.zeros(len(piece), 1, height, width, device=image.device, dtype=image.dtype)
        for b, (y, x) in enumerate(piece):
            masks[b, :, y : y + win_h, x : x + win_w] = 1
        occluded = image[i : i + 1] * (1 - masks) + baseline * masks
        scores = copy_scores(model, inputs, model_kwargs, input_index, i, fixed_targets,
                             len(piece), occluded)
        drop = clean[i : i + 1] - scores
        maps[i] += torch.einsum("bt,bhw->thw", drop.float(), masks[:, 0].float())
    return Explanation(
        maps=maps / coverage,
        scores=clean,
        targets=ids,
        method="occlusion",
        meta={**meta, "window": (win_h, win_w), "stride": (step_h, step_w)},
    )


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or min(pair) < 1:
        raise InputError(f"{name} must be a positive int or (h, w), got {value!r}")
    return pair


def _starts(size: int, window: int, stride: int) -> Iterator[int]:
    """Window offsets that cover the whole extent, the last one flush with the edge."""
    last = size - window
    yield from range(0, last, stride)
    yield last
