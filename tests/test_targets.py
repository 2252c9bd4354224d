"""Class targets: any integer type is a class, anything else is refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlx.errors import InputError
from vlx.targets import class_indices

LOGITS = torch.zeros(2, 5)


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        (3, [[3], [3]]),
        (np.int64(3), [[3], [3]]),
        (torch.tensor(4), [[4], [4]]),
        ([1, np.int32(2)], [[1], [2]]),
        ([[0, 4], [2, np.uint8(1)]], [[0, 4], [2, 1]]),
        (torch.tensor([[0, 1], [2, 3]]), [[0, 1], [2, 3]]),
        (np.array([[1], [2]]), [[1], [2]]),
    ],
)
def test_integer_targets_of_any_type(targets, expected) -> None:
    assert class_indices(targets, LOGITS).tolist() == expected


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        (True, "is a bool"),
        ([True, 1], "is a bool"),
        (torch.tensor([3.7, 2.2]), "float32 tensor; class targets are integer indices"),
        (torch.tensor([True, False]), "torch.bool tensor"),
        ("281", "'281' is text"),
        ([[], []], "no targets"),
        ([], "no targets"),
        (2.0, "is a float, not an integer class index"),
        ([[1], 2], "mix indices and lists"),
        (7, "class index 7 is out of range; valid indices are 0..4"),
    ],
)
def test_everything_else_is_refused_by_name(targets, message) -> None:
    with pytest.raises(InputError, match=message):
        class_indices(targets, LOGITS)
