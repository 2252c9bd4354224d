"""Turning a person's target specification into an (N, T) tensor of differentiable scores."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from vlx.errors import InputError

ScoreFn = Callable[[Any], torch.Tensor]
Targets = None | int | Sequence[int] | Sequence[Sequence[int]] | torch.Tensor | ScoreFn


def logits_of(outputs: Any) -> torch.Tensor:
    """The (N, C) pre-softmax scores of a classifier's output (tensor, HF output or tuple)."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    logits = getattr(outputs, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    raise TypeError(
        f"cannot read class scores from a {type(outputs).__name__}; pass a callable target "
        "that maps the model's outputs to an (N, T) tensor"
    )


def class_indices(targets: Targets, logits: torch.Tensor) -> torch.Tensor:
    """(N, T) long tensor of class indices; ``None`` means each image's top-1 class."""
    n, num_classes = logits.shape[0], logits.shape[-1]
    if targets is None:
        index = logits.detach().argmax(dim=-1, keepdim=True)
    elif isinstance(targets, int):
        index = torch.full((n, 1), targets, dtype=torch.long)
    elif isinstance(targets, torch.Tensor) and targets.dim() == 0:
        index = torch.full((n, 1), int(targets), dtype=torch.long)
    elif isinstance(targets, torch.Tensor):
        index = targets.long().reshape(n, -1) if targets.dim() < 2 else targets.long()
    else:
        rows = list(targets)
        if all(isinstance(row, int) for row in rows):
            if len(rows) != n:
                raise ValueError(
                    f"got {len(rows)} class targets for {n} images: give one per image, one int "
                    "for all, or a list of lists (T targets per image)"
                )
            rows = [[row] for row in rows]
        if not all(isinstance(row, (list, tuple)) for row in rows):
            raise ValueError("targets mix ints and lists: give one int per image or one list each")
        lengths = {len(row) for row in rows}
        if len(rows) != n or len(lengths) != 1:
            raise ValueError(
                f"targets must be a list of {n} lists of equal length, got lengths "
                f"{[len(row) for row in rows]}"
            )
        index = torch.tensor(rows, dtype=torch.long)
    if index.shape[0] != n:
        raise ValueError(f"targets have {index.shape[0]} rows for {n} images")
    bad = index[(index < 0) | (index >= num_classes)]
    if bad.numel():
        raise InputError(
            f"class index {int(bad[0])} is out of range; valid indices are 0..{num_classes - 1}"
        )
    return index.to(logits.device)


def target_scores(outputs: Any, targets: Targets) -> tuple[torch.Tensor, list[list[Any]] | None]:
    """(N, T) scores to explain and the target ids per image (``None`` for a callable).

    Class targets score the pre-softmax logit, as the paper does; a callable receives the
    model's raw outputs and returns any (N, T) tensor of differentiable scalars.
    """
    if callable(targets) and not isinstance(targets, torch.Tensor):
        scores = targets(outputs)
        if not isinstance(scores, torch.Tensor) or scores.dim() != 2:
            shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores)
            raise ValueError(f"a callable target must return an (N, T) tensor, got {shape}")
        return scores, None
    logits = logits_of(outputs)
    if logits.dim() != 2:
        raise ValueError(f"class targets need (N, C) logits, got shape {tuple(logits.shape)}")
    index = class_indices(targets, logits)
    return logits.gather(1, index), index.tolist()
