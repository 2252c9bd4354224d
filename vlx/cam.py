"""The CAM engine (Selvaraju et al., Sec. 3): one forward, one batched backward, any combination.

For every target t of every image the engine gives the explained layer's activation A (N, K,
h, w) and the target's gradient dy_t/dA (N, T, K, h, w), from one forward and one batched
backward. The layer's output is replaced, for one call only, by a detached copy that requires
grad, so the backward stops at the layer: nothing flows into the backbone and no parameter gets
a ``.grad``. A method of the CAM family is a way of combining the two into maps
(``CAM.combine``): Grad-CAM weights each channel by its spatially averaged gradient,
alpha[t, k] = mean_ij dy_t / dA_kij, and map[t] = ReLU(sum_k alpha[t, k] A_k). Methods that
need no gradient (Score-CAM, Ablation-CAM) read the activation alone (``layer_activation``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import torch
from torch import nn

from vlx.backward import (
    FrozenParameters,
    GraphMeter,
    per_target_gradients,
    targets_per_backward,
)
from vlx.capture import LayerCapture
from vlx.errors import InputError
from vlx.explanation import Explanation
from vlx.layers import describe_layers, last_spatial_layer, named_layer, spatial_layers
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
    return weighted_maps(alphas, activations, relu), alphas


def weighted_maps(weights: torch.Tensor, activations: torch.Tensor, relu: bool = True
                  ) -> torch.Tensor:
    """(N, T, h, w) maps ReLU(sum_k w[t, k] A_k) from weights (N, T, K) and A (N, K, h, w)."""
    maps = torch.einsum("ntk,nkhw->nthw", weights, activations)
    return maps.clamp_min(0) if relu else maps


@dataclass(frozen=True)
class Evidence:
    """What one forward and one batched backward give: the layer's activation (N, K, h, w)
    on its grid, every target's gradient there (N, T, K, h, w), the scores (N, T) and the
    target ids."""

    activations: torch.Tensor
    gradients: torch.Tensor
    scores: torch.Tensor
    targets: list[list[Any]] | None
    layer: str


class LayerModel:
    """A model and the layer explained in it: resolved once, found by a probing forward when
    not named, checked to give a spatial map (``to_grid`` turns token layers into one)."""

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None,
                 to_grid: GridFn | None = None) -> None:
        self.model, self.to_grid = model, to_grid
        self.layer_name: str | None = None
        self.layer: nn.Module | None = None
        if layer is not None:
            self.layer_name, self.layer = named_layer(model, layer)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Nothing to undo: hooks never outlive a call. Exceptions propagate."""

    def resolve(self, inputs: tuple, model_kwargs: dict) -> None:
        if self.layer_name is None:
            name = last_spatial_layer(self.model, lambda: self.model(*inputs, **model_kwargs))
            self.layer_name, self.layer = named_layer(self.model, name)

    def grid(self, tensor: torch.Tensor, inputs: tuple, model_kwargs: dict) -> torch.Tensor:
        grid = self.to_grid(tensor) if self.to_grid is not None else tensor
        if grid.dim() != 4:
            spatial = spatial_layers(
                self.model, lambda: self.model(*inputs, **model_kwargs), self.to_grid
            )
            raise InputError(
                f"layer {self.layer_name!r} gives shape {tuple(tensor.shape)}, not a spatial "
                f"map (N, C, h, w); spatial layers: {describe_layers(spatial) or 'none found'} "
                "(a transformer's token layers need a to_grid)"
            )
        return grid


class CAM(LayerModel):
    """A method of the CAM family for any differentiable scalar of ``model`` w.r.t. any
    conv-like ``layer``; subclasses say how activations and gradients become maps.

    Use as a context manager or call directly; hooks live only for the duration of each call
    and are removed even when the call raises.

    Args:
        model: the network; called as ``model(*inputs, **model_kwargs)``.
        layer: a submodule or its dotted name; ``None`` picks the last layer whose output is
            spatial, found by a probing forward on the first call's inputs.
        to_grid: turns the layer's output into (N, K, h, w), e.g. transformer tokens to the
            patch grid (``vlx.layers.TokenGrid``); must only select and reshape.
        backward_rule: ``"guided"`` or ``"deconv"`` applies that rectifier rule to the
            backward from the score to the layer (Table 3 ablations).
    """

    method: ClassVar[str]

    def __init__(
        self, model: nn.Module, layer: nn.Module | str | None = None, *,
        to_grid: GridFn | None = None, backward_rule: Rule | None = None,
    ) -> None:
        if backward_rule is not None and backward_rule not in RULES:
            raise ValueError(
                f"unknown backward rule {backward_rule!r}; valid: None, {', '.join(RULES)}"
            )
        super().__init__(model, layer, to_grid)
        self.backward_rule = backward_rule

    def combine(self, activations: torch.Tensor, gradients: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, T, h, w) maps and (N, T, K) channel weights (``None`` where the method has
        none) from A (N, K, h, w) and dy/dA (N, T, K, h, w)."""
        raise NotImplementedError

    def __call__(
        self, *inputs: Any, targets: Targets = None,
        model_kwargs: dict[str, Any] | None = None, input_index: int = 0,
    ) -> Explanation:
        """Explain T targets for each of the N inputs; see ``vlx.targets`` for target forms.

        ``model_kwargs`` are passed to the model; ``input_index`` says which input is the
        image (its size is recorded in the explanation's ``meta["input_size"]``).
        """
        return self._explained(inputs, targets, model_kwargs, input_index, self.combine,
                               self.method)

    def _explained(self, inputs: tuple, targets: Targets, model_kwargs: dict[str, Any] | None,
                   input_index: int, combine: Callable, method: str) -> Explanation:
        evidence = self.evidence(inputs, targets, dict(model_kwargs or {}))
        maps, weights = combine(evidence.activations, evidence.gradients)
        return Explanation(
            maps=maps.detach(), scores=evidence.scores.detach(), targets=evidence.targets,
            method=method, alphas=None if weights is None else weights.detach(),
            layer=evidence.layer, meta=input_size(inputs, input_index),
        )

    def evidence(self, inputs: tuple, targets: Targets, model_kwargs: dict) -> Evidence:
        """The layer's activation and every target's gradient, on the layer's grid."""
        self.resolve(inputs, model_kwargs)
        warn_if_training(self.model)
        activation, scores, ids, graph_bytes = self._forward(inputs, targets, model_kwargs)
        grid = self.grid(activation.detach(), inputs, model_kwargs)
        gradients = per_target_gradients(scores, activation, targets_per_backward(graph_bytes))
        t = scores.shape[1]
        # One target at a time: the layer's batch need not be the examples' (a tiled image's
        # views are one batch row each), and to_grid puts each example's views together.
        grad_grid = torch.stack(
            [self.grid(gradients[:, k], inputs, model_kwargs) for k in range(t)], dim=1)
        if not bool(grad_grid.any()):
            warnings.warn(
                f"no gradient reaches the grid of layer {self.layer_name!r} from any target: "
                "every map is zero; explain a layer whose positions the scores are computed "
                "from (for a transformer whose head reads one token, the last block's input)",
                stacklevel=3,
            )
        return Evidence(grid, grad_grid, scores, ids, self.layer_name)

    def _forward(
        self, inputs: tuple, targets: Targets, model_kwargs: dict
    ) -> tuple[torch.Tensor, torch.Tensor, list | None, int]:
        """The layer's activation (a leaf), the target scores, their ids, and the bytes the
        graph after the layer holds (what one target's batched gradient costs)."""
        rule = RectifierRule(self.backward_rule) if self.backward_rule else nullcontext()
        meter = GraphMeter(exclude=list(self.model.parameters()))
        capture = LayerCapture(self.layer, self.layer_name, "leaf", on_output=meter.start)
        with capture, meter, torch.enable_grad(), rule, plain_recurrent_kernels(self.model), \
                FrozenParameters(self.model):
            outputs = self.model(*inputs, **model_kwargs)
            scores, ids = target_scores(outputs, targets)
        return capture.single(), scores, ids, meter.bytes


class GradCAM(CAM):
    """Grad-CAM: each channel weighted by its spatially averaged gradient, then ReLU.

    ``pooling``, ``relu`` and ``absolute`` are the paper's Table 3 ablations (defaults are
    Grad-CAM); ``counterfactual=True`` at call time negates the gradients (Sec. 3.3).
    """

    method = "gradcam"

    def __init__(
        self, model: nn.Module, layer: nn.Module | str | None = None, *,
        pooling: Pooling = "mean", relu: bool = True, absolute: bool = False,
        backward_rule: Rule | None = None, to_grid: GridFn | None = None,
    ) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
        super().__init__(model, layer, to_grid=to_grid, backward_rule=backward_rule)
        self.pooling, self.relu, self.absolute = pooling, relu, absolute

    def combine(self, activations: torch.Tensor, gradients: torch.Tensor,
                counterfactual: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        return grad_cam_maps(activations, gradients, pooling=self.pooling, relu=self.relu,
                             absolute=self.absolute, counterfactual=counterfactual)

    def __call__(
        self, *inputs: Any, targets: Targets = None, counterfactual: bool = False,
        model_kwargs: dict[str, Any] | None = None, input_index: int = 0,
    ) -> Explanation:
        def combine(activations: torch.Tensor, gradients: torch.Tensor) -> tuple:
            return self.combine(activations, gradients, counterfactual)

        method = "counterfactual" if counterfactual else self.method
        return self._explained(inputs, targets, model_kwargs, input_index, combine, method)


def layer_activation(
    model: nn.Module, layer: LayerModel, inputs: tuple, targets: Targets, model_kwargs: dict
) -> tuple[torch.Tensor, torch.Tensor, list | None]:
    """The layer's activation on its grid (N, K, h, w), the targets' scores (N, T) and their
    ids, from one forward without gradients (for the methods that perturb instead)."""
    layer.resolve(inputs, model_kwargs)
    with LayerCapture(layer.layer, layer.layer_name, "record") as capture, torch.no_grad():
        outputs = model(*inputs, **model_kwargs)
        scores, ids = target_scores(outputs, targets)
    return layer.grid(capture.single(), inputs, model_kwargs), scores, ids


def warn_if_training(model: nn.Module) -> None:
    """Every method says so when the model is in training mode (``stacklevel`` reaches the
    caller of the method)."""
    if model.training:
        warnings.warn(
            "the model is in training mode: dropout and batch statistics make the maps "
            "depend on the batch; call model.eval() first",
            stacklevel=3,
        )


def input_size(inputs: tuple, input_index: int) -> dict[str, Any]:
    """``{"input_size": (H, W)}`` of the image input, for whoever draws or scores the maps."""
    if not 0 <= input_index < len(inputs):
        raise InputError(f"input_index {input_index} is out of range for {len(inputs)} inputs")
    image = inputs[input_index]
    if isinstance(image, torch.Tensor) and image.dim() >= 3:
        return {"input_size": tuple(int(s) for s in image.shape[-2:])}
    return {}
