"""A small ShapesWorld image classifier with global average pooling: CAM's architecture.

ResNet-style features, global average pooling and one linear layer is the architecture CAM
(Zhou et al. 2016) needs, so Grad-CAM on it can be checked against CAM (paper Sec. 3.1). Its
scenes hold one object, so every prediction has a box and a mask that a map can be scored
against (localization, pointing, share of map energy on the object).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vlx.data.shapes import BACKGROUNDS, SHAPES, SPLITS, Scene, ShapesWorld
from vlx.models.encoders import ResNetEncoder, arrays_to_tensor
from vlx.models.registry import load_trained

LAYER = "encoder"
"""The layer to explain: the encoder's output, the activations A the pooling averages."""
WIDTHS = (16, 24, 32, 48)
_EVAL_BATCH = 100


@dataclass(frozen=True)
class ShapesClassification:
    """Single-object ShapesWorld scenes labelled by their object's shape.

    Attributes:
        classes: the shapes told apart; a label is an index into this tuple, and scenes
            holding another shape are skipped.
        image_size: side of the rendered scenes in pixels.
        textured_fraction: share of scenes on a textured background (as in ShapesWorld).
        object_scale: object size relative to ShapesWorld's default (as in ShapesWorld).
        backgrounds: ``None``, or one background per class on which every scene of that
            class is drawn: a context that predicts the label (the biased data of Sec. 6.3).
        seed: the world's seed.
        training_scenes: train on the first this many training scenes only (0: draw from the
            whole training split).
        permuted_labels: shuffle the labels among those scenes, seeded: the data
            randomization test of Adebayo et al. 2018, a model that can only memorise.
    """

    classes: tuple[str, ...] = SHAPES
    image_size: int = 64
    textured_fraction: float = 0.5
    object_scale: float = 1.0
    backgrounds: tuple[str, ...] | None = None
    seed: int = 0
    training_scenes: int = 0
    permuted_labels: bool = False

    def __post_init__(self) -> None:
        if self.training_scenes < 0 or (self.permuted_labels and not self.training_scenes):
            raise ValueError(
                "permuted labels need a fixed set of training scenes (training_scenes >= 1); "
                f"got training_scenes={self.training_scenes}"
            )
        unknown = [c for c in self.classes if c not in SHAPES]
        if unknown or len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise ValueError(
                f"classes must be two or more distinct shapes of {', '.join(SHAPES)}; "
                f"got {self.classes!r}"
            )
        if self.backgrounds is not None and (
            len(self.backgrounds) != len(self.classes)
            or any(b not in BACKGROUNDS for b in self.backgrounds)
        ):
            raise ValueError(
                f"backgrounds must name one of {', '.join(BACKGROUNDS)} per class "
                f"({len(self.classes)}); got {self.backgrounds!r}"
            )

    @cached_property
    def world(self) -> ShapesWorld:
        return ShapesWorld(
            seed=self.seed, image_size=self.image_size, min_objects=1, max_objects=1,
            textured_fraction=self.textured_fraction, object_scale=self.object_scale,
        )

    def scene(self, index: int) -> Scene | None:
        """World scene ``index``, on its class's background where the data is biased;
        ``None`` when its object is not one of ``classes``."""
        scene = self.world.scene(index)
        shape = scene.objects[0].shape
        if shape not in self.classes:
            return None
        if self.backgrounds is not None:
            scene = self.world.scene(index, background=self.backgrounds[self.classes.index(shape)])
        return scene

    def label(self, scene: Scene) -> int:
        return self.classes.index(scene.objects[0].shape)

    def scenes(self, split: str, count: int) -> list[Scene]:
        """The first ``count`` scenes of a ShapesWorld split (``SPLITS``) that hold a class."""
        start, length = SPLITS[split]
        out: list[Scene] = []
        for index in range(start, start + length):
            if len(out) == count:
                return out
            scene = self.scene(index)
            if scene is not None:
                out.append(scene)
        raise ValueError(f"split {split!r} holds fewer than {count} scenes of {self.classes}")

    def batch(self, step: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, 3, H, W) and labels (N,) of random training scenes: a pure function of
        ``(seed, step)``, so a rerun sees the same data."""
        rng = np.random.default_rng([self.seed, step])
        if self.training_scenes:
            fixed, labels = self.training_set
            picks = rng.integers(len(fixed), size=size)
            return scene_images([fixed[i] for i in picks]), torch.tensor(labels)[picks]
        start, length = SPLITS["train"]
        scenes: list[Scene] = []
        while len(scenes) < size:
            scene = self.scene(start + int(rng.integers(length)))
            if scene is not None:
                scenes.append(scene)
        return scene_images(scenes), torch.tensor([self.label(s) for s in scenes])

    @cached_property
    def training_set(self) -> tuple[list[Scene], list[int]]:
        """The fixed training scenes and their labels (shuffled among them when
        ``permuted_labels``: the label counts stay, the link to the image goes)."""
        scenes = self.scenes("train", self.training_scenes)
        labels = [self.label(s) for s in scenes]
        if self.permuted_labels:
            order = np.random.default_rng([self.seed, len(scenes)]).permutation(len(labels))
            labels = [labels[i] for i in order]
        return scenes, labels

    def state(self) -> dict[str, Any]:
        """The fields as plain values a ``weights_only`` checkpoint can hold."""
        state = asdict(self)
        state["classes"] = list(self.classes)
        state["backgrounds"] = None if self.backgrounds is None else list(self.backgrounds)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ShapesClassification:
        backgrounds = state.get("backgrounds")
        return cls(**{
            **state,
            "classes": tuple(state["classes"]),
            "backgrounds": None if backgrounds is None else tuple(backgrounds),
        })


def scene_images(scenes: list[Scene]) -> torch.Tensor:
    """(N, 3, H, W) model input from scenes."""
    return arrays_to_tensor([s.image for s in scenes])


class ShapesClassifier(nn.Module):
    """ResNet encoder, global average pooling, linear: pre-softmax class scores.

    The score of class c is ``sum_k w[c, k] * mean_ij A[k, i, j] + b[c]``, so its gradient
    with respect to ``A[k, i, j]`` is ``w[c, k] / Z`` everywhere (Z = h * w): Grad-CAM's
    alpha is CAM's weight divided by Z.
    """

    def __init__(self, classes: tuple[str, ...] = SHAPES, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        self.classes = tuple(classes)
        self.widths = tuple(widths)
        self.encoder = ResNetEncoder(self.widths)
        self.classifier = nn.Linear(self.encoder.channels, len(self.classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(images).mean(dim=(2, 3)))

    def class_activation_maps(self, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """CAM (Zhou et al. 2016): ``M_c = sum_k w[c, k] A_k`` as (N, T, h, w), from the
        encoder's (N, K, h, w) ``features`` and (N, T) class indices."""
        return torch.einsum("ntk,nkhw->nthw", self.classifier.weight[classes], features)

    def checkpoint(self) -> dict[str, Any]:
        """Everything ``from_checkpoint`` needs, in types ``weights_only`` loading accepts."""
        return {
            "classes": list(self.classes),
            "widths": list(self.widths),
            "state_dict": self.state_dict(),
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> ShapesClassifier:
        model = cls(tuple(checkpoint["classes"]), tuple(checkpoint["widths"]))
        model.load_state_dict(checkpoint["state_dict"])
        return model.eval()


def load_shapes_classifier(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[ShapesClassifier, ShapesClassification]:
    """A trained classifier (eval mode, on ``device``) and the data it was trained on."""

    def build(checkpoint: dict) -> tuple[ShapesClassifier, ShapesClassification]:
        model = ShapesClassifier.from_checkpoint(checkpoint).to(device)
        return model, ShapesClassification.from_state(checkpoint["data"])

    return load_trained(path, "classifier", build)


@torch.no_grad()
def predict(model: ShapesClassifier, scenes: list[Scene]) -> torch.Tensor:
    """(N,) predicted class indices, on the CPU."""
    device = next(model.parameters()).device
    out = [
        model(scene_images(scenes[i : i + _EVAL_BATCH]).to(device)).argmax(dim=1).cpu()
        for i in range(0, len(scenes), _EVAL_BATCH)
    ]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(model: ShapesClassifier, data: ShapesClassification, scenes: list[Scene]) -> float:
    """Share of ``scenes`` whose predicted class is their label."""
    labels = torch.tensor([data.label(s) for s in scenes])
    return float((predict(model, scenes) == labels).float().mean())
