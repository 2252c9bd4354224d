"""Turning a target specification into an (N, T) tensor of differentiable scores.

Class targets are integer indices: one for every image, one per image, or T per image (a list
of lists or an (N, T) integer tensor). Any integer type counts (Python, NumPy, 0-d tensors);
a bool, a float, a string or an empty list is refused by name rather than silently turned
into some class. A callable target receives the model's outputs and returns any (N, T)
tensor of differentiable scalars.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
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


def class_index(value: Any) -> int:
    """``value`` as a class index: an integer of any integer type, never a bool or float."""
    if isinstance(value, (bool, np.bool_)):
        raise InputError(f"target {value!r} is a bool; a class target is an integer index")
    if isinstance(value, (numbers.Integral, np.integer)):
        return int(value)
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        _require_integer_tensor(value)
        return int(value)
    if isinstance(value, str):
        raise InputError(
            f"target {value!r} is text; a class target is an integer index (the task "
            "adapters and the vlx command read class names)"
        )
    raise InputError(f"target {value!r} is a {type(value).__name__}, not an integer class index")


def class_indices(targets: Targets, logits: torch.Tensor) -> torch.Tensor:
    """(N, T) long tensor of class indices; ``None`` means each image's top-1 class."""
    n, num_classes = logits.shape[0], logits.shape[-1]
    if isinstance(targets, np.ndarray):
        targets = torch.as_tensor(targets)
    if targets is None:
        index = logits.detach().argmax(dim=-1, keepdim=True)
    elif isinstance(targets, torch.Tensor) and targets.dim() > 0:
        _require_integer_tensor(targets)
        index = targets.long().reshape(n, -1) if targets.dim() < 2 else targets.long()
    elif not isinstance(targets, (list, tuple)):
        index = torch.full((n, 1), class_index(targets), dtype=torch.long)
    else:
        index = torch.tensor(_rows(targets, n), dtype=torch.long)
    if index.shape[0] != n:
        raise InputError(f"targets have {index.shape[0]} rows for {n} images")
    if index.shape[1] == 0:
        raise InputError("no targets: give each image at least one class")
    bad = index[(index < 0) | (index >= num_classes)]
    if bad.numel():
        raise InputError(
            f"class index {int(bad[0])} is out of range; valid indices are 0..{num_classes - 1}"
        )
    return index.to(logits.device)


def _rows(targets: Sequence[Any], n: int) -> list[list[int]]:
    """T class indices per image from one index per image or one list per image."""
    rows = list(targets)
    if not rows:
        raise InputError("no targets: give each image at least one class")
    if all(not isinstance(row, (list, tuple, torch.Tensor, np.ndarray)) for row in rows):
        if len(rows) != n:
            raise InputError(
                f"got {len(rows)} class targets for {n} images: give one per image, one integer "
                "for all, or a list of lists (T targets per image)"
            )
        return [[class_index(row)] for row in rows]
    if not all(isinstance(row, (list, tuple, torch.Tensor, np.ndarray)) for row in rows):
        raise InputError("targets mix indices and lists: give one per image or one list each")
    indices = [[class_index(value) for value in row] for row in rows]
    lengths = {len(row) for row in indices}
    if len(indices) != n or len(lengths) != 1:
        raise InputError(
            f"targets must be a list of {n} lists of equal length, got lengths "
            f"{[len(row) for row in indices]}"
        )
    if lengths == {0}:
        raise InputError("no targets: give each image at least one class")
    return indices


def _require_integer_tensor(tensor: torch.Tensor) -> None:
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise InputError(
            f"targets are a {tensor.dtype} tensor; class targets are integer indices "
            "(a float tensor would be truncated into other classes)"
        )


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


def gather_targets(values: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(B, T) ``values[b, ids[b]]`` of (B, C) values; a single row of ids serves every row
    (copies of one image, as deletion and occlusion score them)."""
    if ids.shape[0] == 1 and values.shape[0] != 1:
        ids = ids.expand(values.shape[0], -1)
    return values.gather(1, ids)
