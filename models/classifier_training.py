"""Training a ShapesWorld shape classifier (``vlx train classifier``): a CAM model in minutes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vlx.errors import InputError
from vlx.models.registry import require_kind
from vlx.models.shapes_classifier import (
    WIDTHS,
    ShapesClassification,
    ShapesClassifier,
    accuracy,
    predict,
)
from vlx.training import Recipe, TrainingOptions


@dataclass
class ClassifierTraining(TrainingOptions):
    """``vlx train classifier`` options; ``classification`` says which scenes and classes."""

    classification: ShapesClassification = field(default_factory=ShapesClassification)
    widths: tuple[int, ...] = WIDTHS
    steps: int = 1000
    lr: float = 3e-3
    eval_images: int = 500


class ClassifierRecipe(Recipe):
    """Cross-entropy on random training scenes, AdamW with a little weight decay."""

    name = "shapes_classifier"

    def __init__(self, options: ClassifierTraining, saved: dict | None) -> None:
        super().__init__(options, saved)
        if options.data != "shapes":
            raise InputError(f"--data {options.data!r}: the classifier trains on ShapesWorld only")
        self.device = torch.device(options.device)
        if saved:
            self.model = ShapesClassifier.from_checkpoint(saved)
            if ShapesClassification.from_state(saved["data"]) != options.classification:
                raise InputError(
                    f"{str(options.out)!r} was trained on other scenes "
                    f"({saved['data']}); resume it with the same --image-size and --object-scale"
                )
        else:
            self.model = ShapesClassifier(options.classification.classes, options.widths)
        self.model.to(self.device).train()
        self.warmup = min(100, options.steps // 10)

    @classmethod
    def check_resumed(cls, saved: dict, path: Path) -> dict:
        return require_kind(saved, path, "classifier")

    @property
    def description(self) -> str:
        return f"train classifier ({Path(self.options.out).stem})"

    @property
    def data(self) -> dict[str, Any]:
        return self.options.classification.state()

    def optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.options.lr, weight_decay=1e-4)

    def step_loss(self, step: int) -> torch.Tensor:
        images, labels = self.options.classification.batch(step, self.options.batch)
        return F.cross_entropy(self.model(images.to(self.device)), labels.to(self.device))

    def evaluate(self) -> dict[str, Any]:
        data = self.options.classification
        val = data.scenes("val", self.options.eval_images)
        metrics = {"val_accuracy": accuracy(self.model, data, val), "eval_images": len(val)}
        if data.training_scenes:
            scenes, labels = data.training_set
            predicted = predict(self.model, scenes)
            metrics["train_accuracy"] = float((predicted == torch.tensor(labels)).float().mean())
        return metrics

    def payload(self) -> dict[str, Any]:
        return {**self.model.checkpoint(), "data": self.options.classification.state()}

    def metadata(self) -> dict[str, Any]:
        return {"widths": list(self.model.widths)}
