"""Classification adapter: class names in, pre-softmax class scores as Grad-CAM targets."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from vlx.errors import InputError
from vlx.explanation import Explanation
from vlx.methods import explain
from vlx.models.classifiers import DEFAULT_CLASSIFIER, Classifier, load_classifier
from vlx.targets import logits_of


@dataclass(frozen=True)
class Prediction:
    index: int
    name: str
    probability: float
    logit: float


class ImageClassifier:
    """Explains any image classifier's classes; targets are class indices or names."""

    def __init__(self, classifier: Classifier, device: str | torch.device = "cpu") -> None:
        self.classifier = classifier
        self.device = torch.device(device)
        self.model = classifier.model.to(self.device).eval()
        self.class_names = classifier.class_names
        self.layer = classifier.layer
        self.to_grid = classifier.to_grid

    @classmethod
    def load(cls, name: str = DEFAULT_CLASSIFIER, device: str = "cpu") -> ImageClassifier:
        return cls(load_classifier(name), device)

    def prepare(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(N, 3, H, W) model input on the model's device."""
        return self.classifier.preprocess.batch(list(images)).to(self.device)

    def predict(self, inputs: torch.Tensor, top_k: int = 5) -> list[list[Prediction]]:
        """The ``top_k`` classes of each image, by probability."""
        with torch.no_grad():
            logits = logits_of(self.model(inputs)).float()
        probabilities = logits.softmax(dim=-1)
        k = min(top_k, logits.shape[-1])
        top = probabilities.topk(k, dim=-1)
        return [
            [
                Prediction(int(i), self.class_names[int(i)], float(p), float(logits[n, int(i)]))
                for p, i in zip(top.values[n], top.indices[n])
            ]
            for n in range(logits.shape[0])
        ]

    def class_index(self, target: str | int) -> int:
        """A class index from an index, a numeric string, or a (case-insensitive) class name.

        A name matches a class whose name, or one of its comma-separated synonyms, is equal.
        """
        count = len(self.class_names)
        if isinstance(target, int) or (isinstance(target, str) and target.strip().isdigit()):
            index = int(target)
            if not 0 <= index < count:
                raise InputError(f"class index {index} is out of range; valid: 0..{count - 1}")
            return index
        wanted = target.strip().lower()
        for index, name in enumerate(self.class_names):
            synonyms = {part.strip().lower() for part in name.split(",")}
            if wanted == name.lower() or wanted in synonyms:
                return index
        close = difflib.get_close_matches(wanted, [n.lower() for n in self.class_names], n=5)
        hint = ", ".join(repr(c) for c in close) or "see `vlx explain --list-classes`"
        raise InputError(f"unknown class {target!r}; closest classes: {hint}")

    def explain(
        self,
        inputs: torch.Tensor,
        method: str = "gradcam",
        targets: Sequence[Sequence[int]] | None = None,
        layer: str | None = None,
    ) -> Explanation:
        """Explain ``targets`` (per image, T class indices; ``None``: the top class) with
        ``method`` at ``layer`` (default: the classifier's own default layer)."""
        chosen = layer or self.layer
        return explain(
            self.model,
            inputs,
            method=method,
            targets=[list(row) for row in targets] if targets is not None else None,
            layer=chosen,
            to_grid=self.to_grid if chosen == self.layer else None,
        )
