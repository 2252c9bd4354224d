"""Guided Backpropagation, Deconvolution and Guided Grad-CAM (paper Sec. 3.2).

Gradients w.r.t. the input under a rectifier backward rule (``vlx.rectifier``), for T
targets per image in one batched backward; nothing is accumulated in parameter ``.grad``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vlx.backward import FrozenParameters, GraphMeter, per_target_gradients, targets_per_backward
from vlx.cam import GradCAM, GridFn, input_size, warn_if_training
from vlx.explanation import Explanation, upsample
from vlx.rectifier import RULES, RectifierRule, Rule
from vlx.recurrent import plain_recurrent_kernels
from vlx.targets import Targets, target_scores


class InputGradients:
    """Guided backprop (``rule="guided"``) or deconvolution (``rule="deconv"``) for a model.

    Gradients of every target are taken w.r.t. the input at ``input_index`` in one batched
    backward (in chunks when the graph is large). ``.channels`` holds the (N, T, C, H, W)
    gradient images; ``.maps`` their per-pixel maximum absolute value over channels.
    """

    def __init__(self, model: nn.Module, rule: Rule = "guided") -> None:
        if rule not in RULES:
            raise ValueError(f"unknown backward rule {rule!r}; valid rules: {', '.join(RULES)}")
        self.model = model
        self.rule = rule

    @property
    def method(self) -> str:
        return "guided-backprop" if self.rule == "guided" else "deconvolution"

    def __call__(
        self,
        *inputs: Any,
        targets: Targets = None,
        input_index: int = 0,
        model_kwargs: dict[str, Any] | None = None,
    ) -> Explanation:
        meta = input_size(inputs, input_index)
        warn_if_training(self.model)
        attributed = inputs[input_index].detach().clone().requires_grad_(True)
        call_inputs = list(inputs)
        call_inputs[input_index] = attributed
        meter = GraphMeter(exclude=list(self.model.parameters()), counting=True)
        with meter, torch.enable_grad(), RectifierRule(self.rule), plain_recurrent_kernels(
            self.model
        ), FrozenParameters(self.model):
            outputs = self.model(*call_inputs, **(model_kwargs or {}))
            scores, ids = target_scores(outputs, targets)
        chunk = targets_per_backward(meter.bytes)
        channels = per_target_gradients(scores, attributed, chunk).detach()
        return Explanation(
            maps=channels.abs().amax(dim=2),
            scores=scores.detach(),
            targets=ids,
            method=self.method,
            channels=channels,
            meta=meta,
        )


def guided_backprop(
    model: nn.Module, *inputs: Any, targets: Targets = None, input_index: int = 0,
    model_kwargs: dict[str, Any] | None = None,
) -> Explanation:
    """Guided Backpropagation (Springenberg et al. 2015) for T targets per input."""
    return InputGradients(model, "guided")(
        *inputs, targets=targets, input_index=input_index, model_kwargs=model_kwargs
    )


def deconvolution(
    model: nn.Module, *inputs: Any, targets: Targets = None, input_index: int = 0,
    model_kwargs: dict[str, Any] | None = None,
) -> Explanation:
    """Deconvolution (Zeiler & Fergus 2014) for T targets per input."""
    return InputGradients(model, "deconv")(
        *inputs, targets=targets, input_index=input_index, model_kwargs=model_kwargs
    )


def guided_gradcam(
    model: nn.Module,
    *inputs: Any,
    layer: nn.Module | str | None = None,
    targets: Targets = None,
    input_index: int = 0,
    to_grid: GridFn | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Explanation:
    """Guided Grad-CAM: guided backprop times the bilinearly upsampled Grad-CAM map.

    The Grad-CAM part uses plain gradients (the paper's definition); targets are resolved
    once, by the Grad-CAM pass, so both factors explain the same targets.
    """
    common = {"input_index": input_index, "model_kwargs": model_kwargs}
    with GradCAM(model, layer, to_grid=to_grid) as cam:
        coarse = cam(*inputs, targets=targets, **common)
    ids = coarse.targets if coarse.targets is not None else targets
    guided = InputGradients(model, "guided")(*inputs, targets=ids, **common)
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
        meta=coarse.meta,
    )
