"""Rectifier backward rules: guided backpropagation and deconvolution.

Guided backprop passes a gradient through a rectifier where the forward input AND the
gradient are positive; deconvolution where the gradient is positive, whatever the input.
The rule is applied by a torch-function mode that intercepts ``relu``/``relu6``/
``hardtanh(0, .)`` calls for the duration of one forward, so ``nn.ReLU``, ``nn.ReLU6``,
in-place or not, and functional ``F.relu`` calls all follow it, while the model itself is
never modified (no module swaps, no hooks left behind).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

Rule = Literal["guided", "deconv"]
RULES: tuple[str, ...] = ("guided", "deconv")

_RELU = {F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
_RELU6 = {F.relu6}


class _RectifierWithRule(torch.autograd.Function):
    """``clamp(x, 0, upper)`` forward; the guided or deconv rule backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, upper: float | None, rule: str) -> torch.Tensor:
        y = x.clamp(min=0) if upper is None else x.clamp(0, upper)
        ctx.rule = rule
        if rule == "guided":
            inside = x > 0 if upper is None else (x > 0) & (x < upper)
            ctx.save_for_backward(inside)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        positive = grad.clamp(min=0)
        if ctx.rule == "guided":
            (inside,) = ctx.saved_tensors
            positive = positive * inside
        return positive, None, None


class RectifierRule(TorchFunctionMode):
    """Context manager: every rectifier called inside uses ``rule`` in its backward.

    In-place calls are computed out of place (the result is what callers use), so the
    graph keeps the rectifier's input.
    """

    def __init__(self, rule: Rule) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown backward rule {rule!r}; valid rules: {', '.join(RULES)}")
        super().__init__()
        self.rule = rule

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None):
        kwargs = kwargs or {}
        if func in _RELU:
            return _RectifierWithRule.apply(args[0], None, self.rule)
        if func in _RELU6:
            return _RectifierWithRule.apply(args[0], 6.0, self.rule)
        if func is F.hardtanh:
            low = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
            high = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
            if low == 0:
                return _RectifierWithRule.apply(args[0], float(high), self.rule)
        return func(*args, **kwargs)
