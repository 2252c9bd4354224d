"""VQA adapter (paper Sec. 8.2): explain the predicted answer and any forced answers.

An answer's target is its pre-softmax score, so the predicted answer and every forced answer
("red", "yellow", ...) are T class targets of one forward and one batched backward.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from vlx.checkpoints import load_checkpoint
from vlx.data.shapes import Question, Scene, ShapesWorld
from vlx.errors import InputError
from vlx.evaluate.faithfulness import occlusion_agreement
from vlx.evaluate.pointing import PointingTally
from vlx.explanation import Explanation
from vlx.methods import explain
from vlx.models.encoders import SHAPES_PREPROCESS, arrays_to_tensor
from vlx.models.registry import checkpoint_path
from vlx.models.vqa_lstm_cnn import VQAModel, encode_questions
from vlx.models.vqa_training import load_vqa
from vlx.text import Vocabulary, tokenize

SHIPPED = {"coattention": "vqa_coattention_shapes", "lstm-cnn": "vqa_lstm_cnn_shapes"}


def unanswerable(answer: str, wanted: str, answers: Sequence[str]) -> InputError:
    """The error for an answer a model cannot give, naming the closest ones it can."""
    close = difflib.get_close_matches(wanted, list(answers), n=5, cutoff=0.3)
    hint = ", ".join(close) if close else ", ".join(answers[:10]) + ", ..."
    return InputError(f"the model cannot answer {answer!r}; closest answers: {hint}")


@dataclass(frozen=True)
class Answer:
    index: int
    text: str
    probability: float
    score: float


class VisualQA:
    """A VQA model with its vocabularies, ready to answer and to be explained."""

    def __init__(
        self,
        model: VQAModel,
        questions: Vocabulary,
        answers: Sequence[str],
        device: str | torch.device = "cpu",
        layer: str | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.questions = questions
        self.answers = list(answers)
        self.layer = layer or model.explained_layer

    @classmethod
    def load(cls, model: str = "coattention", device: str = "cpu") -> VisualQA:
        """A shipped model by name (``coattention``, ``lstm-cnn``) or a checkpoint path."""
        path = checkpoint_path(SHIPPED[model]) if model in SHIPPED else Path(model)
        if model in SHIPPED and not path.is_file():
            raise InputError(
                f"the shipped {model} VQA checkpoint is not in this install; train it with "
                f"`vlx train vqa --model {model} --out {path}` or pass a checkpoint file"
            )
        if not path.is_file():
            valid = ", ".join(SHIPPED)
            raise InputError(f"unknown VQA model {model!r}; valid: {valid}, or a checkpoint file")
        vqa_model, questions, answers = load_vqa(load_checkpoint(path))
        return cls(vqa_model, questions, answers, device)

    def prepare(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return SHAPES_PREPROCESS.batch(list(images)).to(self.device)

    def encode(self, question: str, count: int = 1) -> torch.Tensor:
        """(count, L) word ids of an everyday-phrased question (any case, punctuation, "colour"
        or "color"); an empty question, or one without a known word, is an error."""
        words = tokenize(question)
        if not words:
            raise InputError(f"question {question!r} has no words")
        if all(w not in self.questions for w in words):
            known = ", ".join(self.questions.state()[:12])
            raise InputError(f"no word of {question!r} is known to the model; it knows: {known}, ...")
        ids = encode_questions(self.questions, [" ".join(words)])
        return ids.to(self.device).expand(count, -1)

    def unknown_words(self, question: str) -> list[str]:
        """Words of ``question`` the model reads as ``<unk>``."""
        return [w for w in tokenize(question) if w not in self.questions]

    def probabilities(self, inputs: torch.Tensor, questions: torch.Tensor) -> torch.Tensor:
        """(N, A) answer probabilities."""
        with torch.no_grad():
            return self.model(inputs, questions).softmax(-1)

    def predict(self, inputs: torch.Tensor, questions: torch.Tensor, top_k: int = 3) -> list[list[Answer]]:
        with torch.no_grad():
            scores = self.model(inputs, questions)
        probabilities = scores.softmax(-1)
        top = probabilities.topk(min(top_k, len(self.answers)), dim=-1)
        return [
            [
                Answer(int(i), self.answers[int(i)], float(p), float(scores[n, int(i)]))
                for p, i in zip(top.values[n], top.indices[n])
            ]
            for n in range(scores.shape[0])
        ]

    def answer_index(self, answer: str) -> int:
        """The index of an answer the model can give, or an error naming the closest ones."""
        wanted = " ".join(tokenize(answer)) or answer.strip().lower()
        if wanted in self.answers:
            return self.answers.index(wanted)
        raise unanswerable(answer, wanted, self.answers)

    def explain(
        self,
        inputs: torch.Tensor,
        questions: torch.Tensor,
        answers: Sequence[Sequence[int]],
        method: str = "gradcam",
        layer: str | None = None,
    ) -> Explanation:
        """Maps for T answers per image (answer indices), all from one forward and backward."""
        return explain(
            self.model,
            inputs, questions,
            method=method,
            targets=[list(row) for row in answers],
            layer=layer or self.layer,
        )


POINTED_KINDS = ("colour", "shape")


def _pointed_questions(scene: Scene) -> list[Question]:
    return [q for q in scene.questions() if q.kind in POINTED_KINDS and q.referent is not None]


def vqa_pointing(
    vqa: VisualQA,
    world: ShapesWorld,
    start: int,
    count: int,
    layer: str | None = None,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Pointing game for colour and shape questions, whose referent (the object asked about)
    is known. The map explained is the one for the correct answer, so localisation is scored
    apart from accuracy; ``answered`` is the share the model also answers correctly. For a
    model with attention, ``attention`` scores the peak of its question-level region weights
    the same way: where the model looked, next to where Grad-CAM says it looked."""
    tally, looked = PointingTally(), PointingTally()
    attends = hasattr(vqa.model, "attention")
    correct: dict[str, int] = {kind: 0 for kind in POINTED_KINDS}
    for scene in _scenes(world, start, count, progress, "pointing (vqa)"):
        asked = _pointed_questions(scene)
        if not asked:
            continue
        inputs, questions = _batch(vqa, scene, asked)
        truth = [[vqa.answers.index(q.answer)] for q in asked]
        maps = vqa.explain(inputs, questions, truth, layer=layer).maps
        with torch.no_grad():
            predicted = vqa.model(inputs, questions).argmax(-1).tolist()
            attention = (
                vqa.model.attention(inputs, questions)["question"].region_weights if attends else None
            )
        for i, question in enumerate(asked):
            mask = torch.from_numpy(scene.object_mask(question.referent))[None, None]
            tally.add(question.kind, maps[i : i + 1], mask)
            if attention is not None:
                looked.add(question.kind, attention[i : i + 1, None].cpu(), mask)
            correct[question.kind] += predicted[i] == truth[i][0]
    summary = tally.summary()
    attended = looked.summary()
    for kind, row in summary.items():
        row["answered"] = correct[kind] / row["count"]
        if kind in attended:
            row["attention"] = attended[kind]["accuracy"]
    return summary


def vqa_faithfulness(
    vqa: VisualQA,
    world: ShapesWorld,
    start: int,
    count: int,
    methods: Sequence[str] = ("gradcam", "guided-backprop"),
    window: int = 16,
    stride: int = 8,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Rank correlation of each method's map with the occlusion map for the predicted
    answer (paper: Grad-CAM 0.60 vs Guided Backprop 0.42 on VQA); one question per scene.

    Every method after the first also gets the paired difference, first minus it, over the
    scenes where both are defined: whether the first comes out ahead is a question about the
    same scenes, which two separate standard errors overstate."""
    rhos: dict[str, list[float]] = {m: [] for m in methods}
    for scene in _scenes(world, start, count, progress, "faithfulness (vqa)"):
        question = scene.questions()[0]
        inputs, questions = _batch(vqa, scene, [question])
        with torch.no_grad():
            answer = [[int(vqa.model(inputs, questions).argmax(-1))]]
        reference = explain(vqa.model, inputs, questions, method="occlusion", targets=answer,
                            window=window, stride=stride).maps
        for method in methods:
            maps = vqa.explain(inputs, questions, answer, method).maps
            # A constant map has no ranks: NaN, left out of its mean and of the differences.
            rhos[method].append(float(occlusion_agreement(maps, reference)[0, 0]))
    first = torch.tensor(rhos[methods[0]])
    summary = {}
    for method in methods:
        values = torch.tensor(rhos[method])
        mean, error, n = _mean_and_error(values)
        summary[method] = {"rank_correlation": mean, "std_error": error, "count": n}
        if method != methods[0]:
            mean, error, n = _mean_and_error(first - values)
            summary[method].update(difference=mean, difference_std_error=error, difference_count=n)
    return summary


def _mean_and_error(values: torch.Tensor) -> tuple[float, float, int]:
    """Mean, standard error and count of the values that are not NaN."""
    values = values[~values.isnan()]
    count = len(values)
    mean = float(values.mean()) if count else float("nan")
    return mean, float(values.std() / count**0.5) if count > 1 else float("nan"), count


def _scenes(world: ShapesWorld, start: int, count: int, progress: bool, label: str):
    indices = range(start, start + count)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc=label, unit="image")
    return (world.scene(i) for i in indices)


def _batch(vqa: VisualQA, scene: Scene, asked: Sequence[Question]) -> tuple[torch.Tensor, torch.Tensor]:
    """The scene's image once per question, and the questions' word ids."""
    image = arrays_to_tensor([scene.image]).to(vqa.device)
    questions = encode_questions(vqa.questions, [q.text for q in asked]).to(vqa.device)
    return image.expand(len(asked), -1, -1, -1), questions
