"""Training the VQA models (LSTM-CNN, co-attention) on ShapesWorld or on VQA v2.

Batches, dropout masks and the learning rate are pure functions of (seed, step), so a resumed
run computes exactly what an uninterrupted one would have.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from vlx.data.shapes import (
    ANSWERS,
    COLOURS,
    QUESTION_KINDS,
    SHAPES,
    SPLITS,
    Question,
    ShapesWorld,
)
from vlx.errors import InputError
from vlx.models.coattention import CoAttention
from vlx.models.encoders import SHAPES_PREPROCESS, arrays_to_tensor
from vlx.models.registry import require_kind
from vlx.models.vqa_lstm_cnn import VQALSTMCNN, VQAModel, encode_questions
from vlx.text import Vocabulary
from vlx.training import Recipe, TrainingOptions

VQA_MODELS: dict[str, type[VQAModel]] = {cls.name: cls for cls in (VQALSTMCNN, CoAttention)}
VOCABULARY_SCENES = 5000
MAX_ANSWERS = 1000
"""VQA v2 answer vocabulary: the most frequent answers (Lu et al. and the Grad-CAM code: 1000)."""
YES_NO_KINDS = ("exist", "relation")


class QuestionBatch(NamedTuple):
    """Images (N, 3, H, W) and Q questions about them; ``rows[i]`` is question i's image;
    ``objects`` (N, colours x shapes) marks the colour-shape pairs each image holds, where
    known."""

    images: torch.Tensor
    questions: list[str]
    answers: list[str]
    rows: torch.Tensor
    objects: torch.Tensor | None = None


class QuestionSource(Protocol):
    name: str
    size: int
    answers: list[str]

    def questions(self) -> list[str]: ...

    def batch(self, step: int, size: int) -> QuestionBatch: ...


class ShapesQuestions:
    """Endless ShapesWorld training scenes; ``size`` is the train split's length."""

    name = "shapes"

    def __init__(self, seed: int) -> None:
        self.answers = list(ANSWERS)
        self.world = ShapesWorld(seed=seed)
        self.seed = seed
        self.start, self.size = SPLITS["train"]

    def questions(self) -> list[str]:
        scenes = self.world.scenes(self.start, VOCABULARY_SCENES)
        return sorted({q.text for scene in scenes for q in scene.questions()})

    def batch(self, step: int, size: int) -> QuestionBatch:
        """``size`` scenes, each asked one random question of every kind it has, and all of
        its relation questions.

        One question per image teaches too slowly: after 2500 steps of 32 the co-attention
        model still answered shape questions at chance. Several questions share one encoding,
        every kind is asked as often as the scene allows, so the rarer kinds are not drowned
        out by existence and count questions, and relations, the last kind learnt (they need
        two objects told apart by position), get every example a scene has.
        """
        rng = np.random.default_rng([self.seed, step])
        scenes = [self.world.scene(self.start + int(i)) for i in rng.integers(0, self.size, size)]
        asked, rows = [], []
        for row, scene in enumerate(scenes):
            by_kind: dict[str, list[Question]] = {}
            for question in scene.questions():
                by_kind.setdefault(question.kind, []).append(question)
            for kind, questions in by_kind.items():
                chosen = (
                    questions if kind == "relation" else [questions[rng.integers(len(questions))]]
                )
                asked += chosen
                rows += [row] * len(chosen)
        objects = torch.zeros(size, len(COLOURS), len(SHAPES))
        for row, scene in enumerate(scenes):
            for o in scene.objects:
                objects[row, COLOURS.index(o.colour), SHAPES.index(o.shape)] = 1.0
        images = arrays_to_tensor([s.image for s in scenes])
        questions, answers = [q.text for q in asked], [q.answer for q in asked]
        return QuestionBatch(images, questions, answers, torch.tensor(rows), objects.flatten(1))


class VQA2Questions:
    """VQA v2 questions whose answer is among the ``MAX_ANSWERS`` most frequent, with their
    images resized to the ShapesWorld models' input."""

    def __init__(self, spec: str, seed: int) -> None:
        from vlx.data.vqa2 import VQA2

        parts = spec.split(",")
        if len(parts) != 3 or not all(parts):
            raise InputError(
                f"--data vqa2:{spec} must name QUESTIONS_JSON,ANNOTATIONS_JSON,IMAGE_DIR"
            )
        self.name = f"vqa2:{spec}"
        self.data = VQA2(*parts)
        self.answers = list(self.data.answer_counts())[:MAX_ANSWERS]
        known = set(self.answers)
        self.items = [item for item in self.data.items() if item[3] in known]
        self.size = len(self.items)
        self.seed = seed

    def questions(self) -> list[str]:
        return [question for _, _, question, _ in self.items]

    def batch(self, step: int, size: int) -> QuestionBatch:
        """``size`` random questions, each with its own image."""
        rng = np.random.default_rng([self.seed, step])
        chosen = [self.items[int(i)] for i in rng.integers(0, self.size, size)]
        images = SHAPES_PREPROCESS.batch(
            [self.data.image(image_id) for _, image_id, _, _ in chosen]
        )
        questions, answers = [q for _, _, q, _ in chosen], [a for *_, a in chosen]
        return QuestionBatch(images, questions, answers, torch.arange(size))


@dataclass
class VQATraining(TrainingOptions):
    """``vlx train vqa`` options."""

    model: str = "coattention"
    steps: int = 5000
    eval_images: int = 500


def question_source(data: str, seed: int) -> QuestionSource:
    if data == "shapes":
        return ShapesQuestions(seed)
    if data.startswith("vqa2:") and len(data) > 5:
        return VQA2Questions(data[5:], seed)
    raise InputError(f"unknown data {data!r}; valid: shapes, vqa2:QUESTIONS,ANNOTATIONS,IMAGE_DIR")


def load_vqa(checkpoint: dict) -> tuple[VQAModel, Vocabulary, list[str]]:
    """(model, question vocabulary, answers) from a checkpoint of either VQA architecture."""
    architecture = checkpoint.get("architecture")
    if architecture not in VQA_MODELS:
        raise InputError(
            f"not a VQA checkpoint: architecture {architecture!r}; valid: {', '.join(VQA_MODELS)}"
        )
    return VQA_MODELS[architecture].from_checkpoint(checkpoint)


class VQARecipe(Recipe):
    """Either VQA architecture, with the training-only presence head on its encoder map."""

    def __init__(self, options: VQATraining, saved: dict | None) -> None:
        super().__init__(options, saved)
        if options.model not in VQA_MODELS:
            raise InputError(f"unknown VQA model {options.model!r}; valid: {', '.join(VQA_MODELS)}")
        self.device = torch.device(options.device)
        self.source = question_source(options.data, options.seed)
        saved = saved or {}
        if saved:
            if saved.get("architecture") != options.model:
                raise InputError(
                    f"{str(options.out)!r} holds a {saved.get('architecture')!r} model; "
                    f"cannot resume it as {options.model!r}"
                )
            model, self.vocabulary, self.answers = load_vqa(saved)
        else:
            self.vocabulary, self.answers = Vocabulary.build(self.source.questions()), self.source.answers
            cls = VQA_MODELS[options.model]
            model = cls(cls.config_class(vocab_size=len(self.vocabulary), answers=len(self.answers)))
        # channels_last: the encoder's convolutions run about 1.5x faster on CPU.
        self.model = model.to(self.device, memory_format=torch.channels_last).train()
        # Training-only: which colours, shapes and colour-shape pairs the image holds, from the
        # encoder map's spatial maximum. Answers alone teach the encoder shapes too slowly
        # (chance on shape questions after 2500 steps). The maximum says "somewhere" whatever
        # the object's size; the mean confounds presence with area (alone on this task, 400
        # steps: 96% against 72% per-label accuracy).
        presence = len(COLOURS) * len(SHAPES) + len(COLOURS) + len(SHAPES)
        self.auxiliary = torch.nn.Linear(model.encoder.channels, presence).to(self.device)
        self.add_head("auxiliary", self.auxiliary, saved)
        self.answer_index = {a: i for i, a in enumerate(self.answers)}

    @classmethod
    def check_resumed(cls, saved: dict, path: Path) -> dict:
        return require_kind(saved, path, "vqa")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"vqa_{self.options.model.replace('-', '_')}"

    @property
    def description(self) -> str:
        return f"train vqa {self.options.model} ({self.source.name})"

    @property
    def data(self) -> str:
        return self.source.name

    def clipped(self) -> list[torch.nn.Parameter]:
        return self.parameters()

    def step_loss(self, step: int) -> torch.Tensor:
        batch = self.source.batch(step, self.options.batch)
        images = batch.images.to(self.device, memory_format=torch.channels_last)
        questions = encode_questions(self.vocabulary, batch.questions).to(self.device)
        targets = torch.tensor([self.answer_index[a] for a in batch.answers], device=self.device)
        torch.manual_seed(_step_seed(self.options.seed, step))  # dropout masks
        feature_map = self.model.encoder(images)
        logits = self.model.answer(
            self.model.image_code(feature_map), questions, batch.rows.to(self.device)
        )
        loss = F.cross_entropy(logits, targets)
        if batch.objects is None:
            return loss
        guess = self.auxiliary(feature_map.amax(dim=(2, 3)))
        return loss + F.binary_cross_entropy_with_logits(
            guess, _presence(batch.objects).to(self.device)
        )

    def evaluate(self) -> dict:
        if self.source.name != "shapes":
            return {}
        world = ShapesWorld(seed=self.options.seed)
        return vqa_accuracy(self.model, self.vocabulary, self.answers, world,
                            self.options.eval_images)

    def payload(self) -> dict:
        return self.model.checkpoint(self.vocabulary, self.answers)

    def metadata(self) -> dict:
        return {"data_size": self.source.size}


@torch.no_grad()
def vqa_accuracy(
    model: VQAModel, qvocab: Vocabulary, answers: list[str], world: ShapesWorld, count: int
) -> dict:
    """Accuracy on every question of the first ``count`` held-out (validation) scenes, overall,
    per question kind and on the yes/no kinds (exist, relation) together."""
    start = SPLITS["val"][0]
    device = next(model.parameters()).device
    right: Counter[str] = Counter()
    asked: Counter[str] = Counter()
    for first in range(0, count, 50):
        scenes = [world.scene(start + i) for i in range(first, min(count, first + 50))]
        features = model.image_features(arrays_to_tensor([s.image for s in scenes]).to(device))
        pairs = [(k, q) for k, scene in enumerate(scenes) for q in scene.questions()]
        rows = torch.tensor([k for k, _ in pairs], device=device)
        questions = encode_questions(qvocab, [q.text for _, q in pairs]).to(device)
        predicted = model.answer(features, questions, rows).argmax(dim=1).tolist()
        for (_, question), guess in zip(pairs, predicted):
            asked[question.kind] += 1
            right[question.kind] += answers[guess] == question.answer
    yes_no = sum(asked[k] for k in YES_NO_KINDS)
    return {
        "accuracy": sum(right.values()) / sum(asked.values()),
        "accuracy_by_kind": {k: right[k] / asked[k] for k in QUESTION_KINDS if asked[k]},
        "yes_no_accuracy": sum(right[k] for k in YES_NO_KINDS) / yes_no if yes_no else None,
        "eval_images": count,
        "eval_questions": sum(asked.values()),
    }


def _presence(objects: torch.Tensor) -> torch.Tensor:
    """(N, colours x shapes) pairs -> the pairs, then which colours, then which shapes."""
    pairs = objects.view(len(objects), len(COLOURS), len(SHAPES))
    return torch.cat([objects, pairs.amax(dim=2), pairs.amax(dim=1)], dim=1)


def _step_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])
