"""Scoring edited copies of one example: what occlusion, Score-CAM and Ablation-CAM share.

Each of them forwards many copies of one example that differ in one place (a window of the
image blanked, the image masked by a channel, a channel of the layer ablated) and reads every
target of that example from the same forwards. The example's other inputs (a question, a
caption) and tensor ``model_kwargs`` whose first dimension is N go along with each copy.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vlx.errors import InputError
from vlx.targets import Targets, target_scores


def copy_scores(
    model: nn.Module, inputs: tuple, model_kwargs: dict[str, Any], input_index: int,
    example: int, targets: Targets, copies: int, image: torch.Tensor | None = None,
) -> torch.Tensor:
    """(copies, T) target scores of ``copies`` copies of example ``example``, without gradients.

    ``image`` (copies, C, H, W) replaces the example's image in the copies; without it the
    image is repeated (the copies then differ inside the model, e.g. an ablating hook).
    ``targets`` are the ids the clean forward resolved (or a callable).
    """
    n = inputs[input_index].shape[0]
    edited = [
        image if k == input_index and image is not None else _repeat(value, example, n, copies)
        for k, value in enumerate(inputs)
    ]
    kwargs = {key: _repeat(value, example, n, copies) for key, value in model_kwargs.items()}
    with torch.no_grad():
        scores, _ = target_scores(model(*edited, **kwargs), _row(targets, example, copies))
    return scores


def chunks(count: int, batch_size: int) -> list[range]:
    """``range(count)`` in consecutive pieces of at most ``batch_size``."""
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    return [range(i, min(i + batch_size, count)) for i in range(0, count, batch_size)]


def _repeat(value: Any, index: int, n: int, copies: int) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n:
        return value[index : index + 1].expand(copies, *value.shape[1:])
    return value


def _row(targets: Any, index: int, copies: int) -> Any:
    """Example ``index``'s class targets repeated for each copy; callables pass through."""
    if isinstance(targets, list):
        return [targets[index]] * copies
    return targets
