"""Guided Backpropagation, Deconvolution and Guided Grad-CAM (paper Sec. 3.2).

Gradients w.r.t. the input under a rectifier backward rule (``vlx.rectifier``), for T
targets per image in one batched backward; nothing is accumulated in parameter ``.grad``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vlx.backward import per_target_gradients
from vlx.cam import GradCAM, GridFn
from vlx.explanation import Explanation, upsample
from vlx.rectifier import RULES, RectifierRule, Rule
from vlx.recurrent import plain_recurrent_kernels
from vlx.targets import Targets, target_scores


class InputGradients:
    """Guided backprop (``rule="guided"``) or deconvolution (``rule="deconv"``) for a model.

    Gradients of every target are taken w.r.t. the input at ``input_index`` in one batched
    backward. ``.channels`` holds the (N, T, C, H, W) gradient images; ``.maps`` their
    per-pixel maximum absolute value over channels.
    """

    def __init__(self, model: nn.Module, rule: Rule = "guided", input_index: int = 0) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown backward rule {rule!r}; valid rules: {', '.join(RULES)}")
        self.model = model
        self.rule = rule
        self.input_index = input_index

    @property
    def method(self) -> str:
        return "guided-backprop" if self.rule == "guided" else "deconvolution"

    def __call__(self, *inputs: Any, targets: Targets = None, **model_kwargs: Any) -> Explanation:
        attributed = inputs[self.input_index].detach().clone().requires_grad_(True)
        call_inputs = list(inputs)
        call_inputs[self.input_index] = attributed
        with torch.enable_grad(), RectifierRule(self.rule), plain_recurrent_kernels(self.model):
            outputs = self.model(*call_inputs, **model_kwargs)
            scores, ids = target_scores(outputs, targets)
        channels = per_target_gradients(scores, attributed).detach()
        return Explanation(
            maps=channels.abs().amax(dim=2),
            scores=scores.detach(),
            targets=ids,
            method=self.method,
            channels=channels,
        )


def guided_backprop(model: nn.Module, *inputs: Any, targets: Targets = None, **kw: Any) -> Explanation:
    """Guided Backpropagation (Springenberg et al. 2015) for T targets per input."""
    return InputGradients(model, "guided")(*inputs, targets=targets, **kw)


def deconvolution(model: nn.Module, *inputs: Any, targets: Targets = None, **kw: Any) -> Explanation:
    """Deconvolution (Zeiler & Fergus 2014) for T targets per input."""
    return InputGradients(model, "deconv")(*inputs, targets=targets, **kw)


def guided_gradcam(
    model: nn.Module,
    *inputs: Any,
    layer: nn.Module | str | None = None,
    targets: Targets = None,
    input_index: int = 0,
    to_grid: GridFn | None = None,
    **model_kwargs: Any,
) -> Explanation:
    """Guided Grad-CAM: guided backprop times the bilinearly upsampled Grad-CAM map.

    The Grad-CAM part uses plain gradients (the paper's definition); targets are resolved
    once, by the Grad-CAM pass, so both factors explain the same targets.
    """
    with GradCAM(model, layer, to_grid=to_grid) as cam:
        coarse = cam(*inputs, targets=targets, **model_kwargs)
    ids = coarse.targets if coarse.targets is not None else targets
    guided = InputGradients(model, "guided", input_index)(*inputs, targets=ids, **model_kwargs)
    size = tuple(guided.channels.shape[-2:])
    channels = guided.channels * upsample(coarse.maps, size).unsqueeze(2)
    return Explanation(
        maps=channels.abs().amax(dim=2),
        scores=coarse.scores,
        targets=coarse.targets,
        method="guided-gradcam",
        alphas=coarse.alphas,
        layer=coarse.layer,
        channels=channels,
    )
