"""The CAM-family methods that need no gradient: one forward reads the layer, then the
channels are weighted by the activation alone (Eigen-CAM) or by forwards of edited copies
of each example (Score-CAM masks the image, Ablation-CAM zeroes a channel).

Every target of an example is read from the same edited forwards, so T targets cost what one
costs; ``batch_size`` copies go through the model at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from vlx.cam import GridFn, LayerModel, input_size, layer_activation, warn_if_training
from vlx.explanation import Explanation
from vlx.methods import BATCH_SIZE
from vlx.methods.copies import chunks, copy_scores
from vlx.targets import Targets

CopyScores = Callable[..., torch.Tensor]


class GradientFreeCAM(LayerModel):
    """A CAM-family method whose channel weights come from forwards alone; subclasses say
    how (``combine``). Use as a context manager or call directly."""

    method: ClassVar[str]

    def __init__(
        self, model: nn.Module, layer: nn.Module | str | None = None, *,
        to_grid: GridFn | None = None, batch_size: int = BATCH_SIZE, progress: bool = False,
    ) -> None:
        super().__init__(model, layer, to_grid)
        chunks(1, batch_size)  # refuses a batch size below 1 before any work
        self.batch_size, self.progress = batch_size, progress

    def __call__(
        self, *inputs: Any, targets: Targets = None,
        model_kwargs: dict[str, Any] | None = None, input_index: int = 0,
    ) -> Explanation:
        """Explain T targets for each of the N inputs; arguments as for ``vlx.cam.CAM``."""
        model_kwargs = dict(model_kwargs or {})
        meta = input_size(inputs, input_index)
        warn_if_training(self.model)
        activations, scores, ids = layer_activation(
            self.model, self, inputs, targets, model_kwargs)
        resolved = targets if ids is None else ids

        def score_copies(example: int, count: int, image: torch.Tensor | None = None
                         ) -> torch.Tensor:
            return copy_scores(self.model, inputs, model_kwargs, input_index, example,
                               resolved, count, image)

        maps, weights = self.combine(activations, scores, inputs[input_index], score_copies)
        return Explanation(
            maps=maps, scores=scores, targets=ids, method=self.method,
            alphas=weights, layer=self.layer_name, meta={**meta, **self.meta()},
        )

    def combine(self, activations: torch.Tensor, scores: torch.Tensor, image: torch.Tensor,
                score_copies: CopyScores) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, T, h, w) maps and (N, T, K) channel weights (or ``None``) from the layer's
        activation (N, K, h, w), the clean scores (N, T) and the image (N, C, H, W);
        ``score_copies(n, count, images)`` gives the (count, T) scores of ``count`` copies of
        example n (with ``images`` in place of its image, when given)."""
        raise NotImplementedError

    def work(self, examples: int, channels: int) -> Iterable[tuple[int, range]]:
        """(example, channels) pieces of the edited forwards, with a progress bar on a
        terminal when asked for."""
        pieces = [(n, piece) for n in range(examples) for piece in chunks(channels, self.batch_size)]
        if not self.progress:
            return pieces
        from tqdm.auto import tqdm

        return tqdm(pieces, desc=self.method, unit="forward", disable=None, leave=False)

    def meta(self) -> dict[str, Any]:
        """What the explanation records about the method besides the input size."""
        return {}
