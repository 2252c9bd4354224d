"""Classification adapter: class names in, pre-softmax class scores as Grad-CAM targets."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from vlx.errors import InputError
from vlx.explanation import Explanation
from vlx.images import to_rgb
from vlx.layers import last_spatial_layer
from vlx.models.classifiers import DEFAULT_CLASSIFIER, Classifier, load_classifier
from vlx.targets import gather_targets, logits_of
from vlx.task import (
    Batch,
    Example,
    LayerSubject,
    Prediction,
    Problem,
    Requested,
    Target,
    TargetSet,
    Task,
    broadcast,
)


class ImageClassification(Task):
    """Any image classifier; a target is a class, named by its index or name."""

    kind = "classify"

    def __init__(self, classifier: Classifier, device: str | torch.device = "cpu") -> None:
        self.classifier = classifier
        self.device = torch.device(device)
        self.model = classifier.model.to(self.device).eval()
        self.class_names = classifier.class_names
        self.layer = classifier.layer
        self.name = classifier.name

    @classmethod
    def load(cls, name: str = DEFAULT_CLASSIFIER, device: str | torch.device = "cpu"
             ) -> ImageClassification:
        return cls(load_classifier(name), device)

    @property
    def scenes(self) -> Any:
        """For ShapesWorld classifiers, the scenes they were trained on (else ``None``)."""
        return self.classifier.scenes

    def images(self, images: Sequence[Any]) -> torch.Tensor:
        """(N, 3, H, W) model input on the model's device."""
        return self.classifier.preprocess.batch([to_rgb(i) for i in images]).to(self.device)

    def prepare(self, examples: Sequence[Example]) -> Batch:
        return Batch(list(examples), self.images([e.image for e in examples]))

    def predict(self, batch: Batch, top_k: int = 5) -> list[list[Prediction]]:
        with torch.no_grad():
            logits = logits_of(self.model(batch.inputs)).float()
        probabilities = logits.softmax(dim=-1)
        top = probabilities.topk(min(top_k, logits.shape[-1]), dim=-1)
        return [
            [
                Prediction(self.class_names[int(i)], int(i), float(p), float(logits[n, int(i)]))
                for p, i in zip(top.values[n], top.indices[n])
            ]
            for n in range(logits.shape[0])
        ]

    def class_index(self, target: str | int) -> int:
        """A class index from an index, a numeric string, or a (case-insensitive) class name.

        A name matches a class whose name, or one of its comma-separated synonyms, is equal.
        """
        count = len(self.class_names)
        if isinstance(target, bool):
            raise InputError(f"class {target!r} is a bool; give a class name or index")
        if isinstance(target, int) or (isinstance(target, str) and target.strip().isdigit()):
            index = int(target)
            if not 0 <= index < count:
                raise InputError(f"class index {index} is out of range; valid: 0..{count - 1}")
            return index
        wanted = str(target).strip().lower()
        for index, name in enumerate(self.class_names):
            synonyms = {part.strip().lower() for part in name.split(",")}
            if wanted == name.lower() or wanted in synonyms:
                return index
        close = difflib.get_close_matches(wanted, [n.lower() for n in self.class_names], n=5)
        hint = ", ".join(repr(c) for c in close) or "see `vlx explain --list-classes`"
        raise InputError(f"unknown class {target!r}; closest classes: {hint}")

    def targets(self, batch: Batch, requested: Requested = None) -> TargetSet:
        rows = broadcast(requested, len(batch))
        if rows is None:
            rows = [[p[0].index] for p in self.predict(batch, 1)]
        return TargetSet([
            [Target(i, self.class_names[i]) for i in (self.class_index(r) for r in row)]
            for row in rows
        ])

    def problem(self, batch: Batch, targets: TargetSet, layer: str | None = None) -> Problem:
        ids = torch.tensor(targets.padded(), device=self.device)
        return Problem(
            model=self.model,
            inputs=(batch.inputs,),
            score=targets.padded(),
            probability=lambda outputs: gather_targets(logits_of(outputs).softmax(-1), ids),
            to_grid=self.classifier.to_grid if layer in (None, self.layer) else None,
        )

    def explain_predicted(
        self, batch: Batch, method: str = "gradcam", layer: str | None = None, **options: Any
    ) -> tuple[TargetSet, Explanation]:
        return explained_argmax(self, batch, method, layer, self.class_names, options)

    def dissection_subject(self, layer: str | None = None) -> LayerSubject:
        chosen = layer or self.layer or self.default_layer()
        to_grid = self.classifier.to_grid if chosen == self.layer else None
        return LayerSubject(self.model, chosen, self.images, self.name, to_grid=to_grid)

    def default_layer(self) -> str:
        """The explained layer: the classifier's own, else the last spatial one (probed)."""
        if self.layer:
            return self.layer
        from PIL import Image

        blank = self.images([Image.new("RGB", (64, 64))])
        return last_spatial_layer(self.model, lambda: self.model(blank))


def explained_argmax(task: Task, batch: Batch, method: str, layer: str | None,
                     names: list[str], options: dict) -> tuple[TargetSet, Explanation]:
    """Explain each example's top-scoring class, chosen by the explaining forward (the engine
    explains the argmax where it is given no target)."""
    from vlx.methods import explain

    if method == "occlusion":  # its clean forward chooses the class too, but one image at a time
        return Task.explain_predicted(task, batch, method, layer, **options)
    problem = task.problem(batch, TargetSet([[Target(0, "")]] * len(batch)), layer)
    with problem.context():
        explanation = explain(
            problem.model, *problem.inputs, method=method, targets=None,
            layer=layer or task.layer, to_grid=problem.to_grid,
            input_index=problem.input_index, model_kwargs=problem.model_kwargs, **options,
        )
    targets = TargetSet([[Target(int(i), names[int(i)]) for i in row] for row in explanation.targets])
    return targets, replace(explanation, targets=[[t.name for t in row] for row in targets.rows])
