"""VQA (paper Sec. 8.2): explain the predicted answer and any forced answers.

What every VQA adapter shares: an example is an image and its question; a target is an answer.
Models that classify over a fixed answer list (the ShapesWorld models, ViLT) score an answer
by its pre-softmax logit, so the predicted answer and every forced answer ("red", "yellow",
...) are T class targets of one forward and one batched backward. ``ShapesVQA`` is the
ShapesWorld LSTM-CNN and co-attention models; ``vlx.tasks.hf_vqa`` holds ViLT and BLIP.
"""

from __future__ import annotations

import difflib
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vlx.errors import InputError
from vlx.explanation import Explanation
from vlx.images import to_rgb
from vlx.models.encoders import shapes_batch
from vlx.models.registry import checkpoint_path, load_trained
from vlx.models.vqa_lstm_cnn import ENCODER_LAYER, VQAModel, encode_questions
from vlx.models.vqa_training import load_vqa
from vlx.targets import gather_targets
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
from vlx.text import Vocabulary, tokenize

SHIPPED = {"coattention": "vqa_coattention_shapes", "lstm-cnn": "vqa_lstm_cnn_shapes"}


def unanswerable(answer: str, wanted: str, answers: Sequence[str]) -> InputError:
    """The error for an answer a model cannot give, naming the closest ones it can."""
    close = difflib.get_close_matches(wanted, list(answers), n=5, cutoff=0.3)
    hint = ", ".join(close) if close else ", ".join(answers[:10]) + ", ..."
    return InputError(f"the model cannot answer {answer!r}; closest answers: {hint}")


CANDIDATES = 3
"""Beam width of a generative model's answer search, whatever ``top_k`` is asked: the top
answer must not depend on how many are shown."""


def ranked_answers(task: QuestionAnswering, batch: Batch, candidates: list[list[str]],
                   top_k: int) -> list[list[Prediction]]:
    """Per example, its candidate answers ranked by the score they are explained by (the
    summed log-prob: ``task.scores``), the top ``top_k``."""
    predictions = []
    for n, texts in enumerate(candidates):
        if not texts:
            raise InputError(f"the model generated an empty answer for example {n}; force one "
                             "with --answers")
        scores = task.scores(batch.select(n), texts)[0].tolist()
        ranked = sorted(zip(texts, scores), key=lambda item: -item[1])[:top_k]
        predictions.append([Prediction(text, i, float(torch.tensor(s).exp()), s)
                            for i, (text, s) in enumerate(ranked)])
    return predictions


class QuestionAnswering(Task):
    """An image and a question per example; answers as targets."""

    kind = "vqa"

    @abstractmethod
    def images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(N, 3, H, W) pixels on the model's device, as the model's preprocessing makes them."""

    @abstractmethod
    def encode(self, questions: Sequence[str]) -> torch.Tensor:
        """(N, L) token ids of the questions; one without a known word is an error."""

    @abstractmethod
    def unknown_words(self, question: str) -> list[str]:
        """Words of ``question`` the model reads as unknown."""

    def prepare(self, examples: Sequence[Example]) -> Batch:
        for example in examples:
            if example.text is None:
                raise InputError("a VQA example needs a question, e.g. 'what color is the circle?'")
        return Batch(list(examples), self.images([to_rgb(e.image) for e in examples]),
                     {"questions": self.encode([e.text for e in examples])})


class FixedAnswers(QuestionAnswering):
    """A model that classifies over a fixed answer list; an answer's score is its logit."""

    answers: list[str]

    @abstractmethod
    def forward(self, batch: Batch) -> Problem:
        """The model's forward over the batch (``score``, ``probability`` left unset)."""

    @abstractmethod
    def to_probability(self, logits: torch.Tensor) -> torch.Tensor:
        """Each answer's probability from the (N, A) logits."""

    def normalised(self, answer: str) -> str:
        """How an answer is matched against the list: case and spacing do not matter."""
        return " ".join(answer.lower().split())

    def answer_index(self, answer: str) -> int:
        """The index of an answer the model can give, or an error naming the closest ones."""
        wanted = self.normalised(answer)
        lowered = [a.lower() for a in self.answers]
        if wanted in lowered:
            return lowered.index(wanted)
        raise unanswerable(answer, wanted, self.answers)

    def logits(self, batch: Batch) -> torch.Tensor:
        """(N, A) scores of every answer, without gradients."""
        problem = self.forward(batch)
        with torch.no_grad(), problem.context():
            return _logits(problem.model(*problem.inputs, **problem.model_kwargs))

    def predict(self, batch: Batch, top_k: int = 3) -> list[list[Prediction]]:
        logits = self.logits(batch).float()
        probabilities = self.to_probability(logits)
        top = probabilities.topk(min(top_k, len(self.answers)), dim=-1)
        return [
            [
                Prediction(self.answers[int(i)], int(i), float(p), float(logits[n, int(i)]))
                for p, i in zip(top.values[n], top.indices[n])
            ]
            for n in range(logits.shape[0])
        ]

    def targets(self, batch: Batch, requested: Requested = None) -> TargetSet:
        rows = broadcast(requested, len(batch))
        if rows is None:
            rows = [[p[0].index] for p in self.predict(batch, 1)]
        return TargetSet([
            [Target(i, self.answers[i]) for i in (self._index(r) for r in row)] for row in rows
        ])

    def problem(self, batch: Batch, targets: TargetSet, layer: str | None = None) -> Problem:
        problem = self.forward(batch)
        ids = torch.tensor(targets.padded(), device=self.device)
        problem.score = targets.padded()
        problem.probability = lambda outputs: gather_targets(self.to_probability(_logits(outputs)), ids)
        return problem

    def explain_predicted(
        self, batch: Batch, method: str = "gradcam", layer: str | None = None, **options: Any
    ) -> tuple[TargetSet, Explanation]:
        from vlx.tasks.classification import explained_argmax

        return explained_argmax(self, batch, method, layer, self.answers, options)

    def _index(self, answer: str | int) -> int:
        if isinstance(answer, int) and not isinstance(answer, bool):
            if not 0 <= answer < len(self.answers):
                raise InputError(f"answer index {answer} is out of range; valid: "
                                 f"0..{len(self.answers) - 1}")
            return answer
        return self.answer_index(str(answer))


class ShapesVQA(FixedAnswers):
    """A ShapesWorld VQA model (LSTM-CNN or co-attention) with its vocabularies."""

    def __init__(
        self, model: VQAModel, questions: Vocabulary, answers: Sequence[str],
        device: str | torch.device = "cpu", layer: str | None = None, name: str = "",
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.questions = questions
        self.answers = list(answers)
        self.layer = layer or model.explained_layer
        self.name = name or model.name

    @classmethod
    def load(cls, model: str = "coattention", device: str | torch.device = "cpu") -> ShapesVQA:
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
        vqa_model, questions, answers = load_trained(path, "vqa", load_vqa)
        return cls(vqa_model, questions, answers, device, name=model)

    def images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return shapes_batch(list(images)).to(self.device)

    def encode(self, questions: Sequence[str]) -> torch.Tensor:
        """Everyday phrasing (any case, punctuation, "colour" or "color") reads the same."""
        texts = []
        for question in questions:
            words = tokenize(question)
            if not words:
                raise InputError(f"question {question!r} has no words")
            if all(w not in self.questions for w in words):
                known = ", ".join(self.questions.state()[:12])
                raise InputError(
                    f"no word of {question!r} is known to the model; it knows: {known}, ..."
                )
            texts.append(" ".join(words))
        return encode_questions(self.questions, texts).to(self.device)

    def unknown_words(self, question: str) -> list[str]:
        return [w for w in tokenize(question) if w not in self.questions]

    def normalised(self, answer: str) -> str:
        """Answers read like questions: punctuation and spelling variants folded."""
        return " ".join(tokenize(answer)) or answer.strip().lower()

    def forward(self, batch: Batch) -> Problem:
        return Problem(self.model, (batch.inputs, batch.state["questions"]), score=None,
                       probability=None)

    def to_probability(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(-1)

    def attention(self, batch: Batch, targets: TargetSet) -> torch.Tensor | None:
        """The co-attention model's question-level region weights on its grid."""
        if not hasattr(self.model, "attention"):
            return None
        levels = self.model.attention(batch.inputs, batch.state["questions"])
        return levels["question"].region_weights

    def dissection_subject(self, layer: str | None = None) -> LayerSubject:
        """The image encoder's layers, read through the encoder alone. A layer that depends on
        the question (co-attention's ``attended``) has no question-free units to name, so by
        default the text reads the encoder's output."""
        if layer is None:
            layer = ENCODER_LAYER
        elif not layer.startswith("encoder."):
            raise InputError(
                f"--text names the units of an image layer, and {layer!r} depends on the "
                f"question; valid: a layer of the image encoder, e.g. {ENCODER_LAYER}"
            )
        return LayerSubject(self.model, layer, self.images, self.name, forward=self.model.encoder)


def _logits(outputs: Any) -> torch.Tensor:
    return outputs.logits if hasattr(outputs, "logits") else outputs
