"""The Grad-CAM engine (Selvaraju et al., Sec. 3): one forward, one batched backward.

alpha[t, k] = mean_ij dy_t / dA_kij and map[t] = ReLU(sum_k alpha[t, k] A_k) for every target
t of every image, where A is the explained layer's activation. The layer's output is
replaced, for one call only, by a detached copy that requires grad, so the backward stops
at the layer: nothing flows into the backbone and no parameter gets a ``.grad``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, Literal, Self

import torch
from torch import nn

from vlx.backward import per_target_gradients
from vlx.explanation import Explanation
from vlx.layers import last_spatial_layer, named_layer, spatial_output
from vlx.rectifier import RULES, RectifierRule, Rule
from vlx.recurrent import plain_recurrent_kernels
from vlx.targets import Targets, target_scores

Pooling = Literal["mean", "max"]
POOLINGS: tuple[str, ...] = ("mean", "max")
GridFn = Callable[[torch.Tensor], torch.Tensor]


def grad_cam_maps(
    activations: torch.Tensor,
    gradients: torch.Tensor,
    *,
    pooling: Pooling = "mean",
    relu: bool = True,
    absolute: bool = False,
    counterfactual: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps (N, T, h, w) and alphas (N, T, K) from A (N, K, h, w) and dy/dA (N, T, K, h, w).

    ``counterfactual`` negates the gradients (Sec. 3.3: regions that would lower the score);
    ``pooling``, ``relu`` and ``absolute`` are the paper's Table 3 ablations.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
    grads = -gradients if counterfactual else gradients
    if absolute:
        grads = grads.abs()
    alphas = grads.mean(dim=(-2, -1)) if pooling == "mean" else grads.amax(dim=(-2, -1))
    maps = torch.einsum("ntk,nkhw->nthw", alphas, activations)
    if relu:
        maps = maps.clamp_min(0)
    return maps, alphas


class GradCAM:
    """Grad-CAM for any differentiable scalar of ``model`` w.r.t. any conv-like ``layer``.

    Use as a context manager; hooks live only for the duration of each call and are removed
    even when the call raises.

    Args:
        model: the network; called as ``model(*inputs, **model_kwargs)``.
        layer: a submodule or its dotted name; ``None`` picks the last layer whose output is
            spatial, found by a probing forward on the first call's inputs.
        pooling, relu, absolute: the paper's ablations (Table 3); defaults are Grad-CAM.
        backward_rule: ``"guided"`` or ``"deconv"`` applies that rectifier rule to the
            backward from the score to the layer (Table 3 ablations).
        to_grid: turns the layer's output into (N, K, h, w), e.g. transformer tokens to the
            patch grid (``vlx.layers.TokenGrid``); must only select and reshape.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module | str | None = None,
        *,
        pooling: Pooling = "mean",
        relu: bool = True,
        absolute: bool = False,
        backward_rule: Rule | None = None,
        to_grid: GridFn | None = None,
    ) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
        if backward_rule is not None and backward_rule not in RULES:
            raise ValueError(
                f"unknown backward rule {backward_rule!r}; valid: None, {', '.join(RULES)}"
            )
        self.model = model
        self.pooling = pooling
        self.relu = relu
        self.absolute = absolute
        self.backward_rule = backward_rule
        self.to_grid = to_grid
        self.layer_name: str | None = None
        self.layer: nn.Module | None = None
        if layer is not None:
            self.layer_name, self.layer = named_layer(model, layer)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Nothing to undo: hooks never outlive a call. Exceptions propagate."""

    def __call__(
        self,
        *inputs: Any,
        targets: Targets = None,
        counterfactual: bool = False,
        **model_kwargs: Any,
    ) -> Explanation:
        """Explain T targets for each of the N inputs; see ``vlx.targets`` for target forms."""
        if self.layer_name is None:
            name = last_spatial_layer(self.model, lambda: self.model(*inputs, **model_kwargs))
            self.layer_name, self.layer = named_layer(self.model, name)
        if self.model.training:
            warnings.warn(
                "the model is in training mode: dropout and batch statistics make the maps "
                "depend on the batch; call model.eval() first",
                stacklevel=2,
            )
        activation, scores, ids = self._forward(inputs, targets, model_kwargs)
        gradients = per_target_gradients(scores, activation)
        grid = self._grid(activation.detach())
        n, t = scores.shape
        grad_grid = self._grid(gradients.flatten(0, 1)).unflatten(0, (n, t))
        maps, alphas = grad_cam_maps(
            grid,
            grad_grid,
            pooling=self.pooling,
            relu=self.relu,
            absolute=self.absolute,
            counterfactual=counterfactual,
        )
        return Explanation(
            maps=maps.detach(),
            scores=scores.detach(),
            targets=ids,
            method="counterfactual" if counterfactual else "gradcam",
            alphas=alphas.detach(),
            layer=self.layer_name,
        )

    def _forward(
        self, inputs: tuple, targets: Targets, model_kwargs: dict
    ) -> tuple[torch.Tensor, torch.Tensor, list | None]:
        captured: list[torch.Tensor] = []

        def capture(module: nn.Module, args: Any, output: Any) -> Any:
            tensor = spatial_output(output)
            if tensor is None:
                raise TypeError(
                    f"layer {self.layer_name!r} returned a {type(output).__name__}, not a tensor"
                )
            leaf = tensor.detach().requires_grad_(True)
            captured.append(leaf)
            # A clone, so in-place ops after the layer (ReLU(inplace=True)) leave A intact.
            replacement = leaf.clone()
            if isinstance(output, torch.Tensor):
                return replacement
            return type(output)([replacement, *output[1:]])

        handle = self.layer.register_forward_hook(capture)
        rule = RectifierRule(self.backward_rule) if self.backward_rule else nullcontext()
        try:
            with torch.enable_grad(), rule, plain_recurrent_kernels(self.model):
                outputs = self.model(*inputs, **model_kwargs)
                scores, ids = target_scores(outputs, targets)
        finally:
            handle.remove()
        if len(captured) != 1:
            raise RuntimeError(
                f"layer {self.layer_name!r} ran {len(captured)} times in one forward; "
                "Grad-CAM needs a layer that runs exactly once"
            )
        return captured[0], scores, ids

    def _grid(self, tensor: torch.Tensor) -> torch.Tensor:
        grid = self.to_grid(tensor) if self.to_grid is not None else tensor
        if grid.dim() != 4:
            raise ValueError(
                f"layer {self.layer_name!r} gives shape {tuple(tensor.shape)}; Grad-CAM needs "
                "(N, C, h, w): pick a convolutional layer or pass to_grid for token outputs"
            )
        return grid
