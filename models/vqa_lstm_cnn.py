"""VQA LSTM-CNN (Lu et al. 2015, "deeper LSTM Q + norm I"), and what every VQA model shares.

The image is one L2-normalised, globally pooled CNN feature; the question is the final hidden and
cell states of a 2-layer LSTM; their element-wise product feeds an MLP over the answers. Both VQA
models answer ``forward(images, questions)`` with pre-softmax scores, the score Grad-CAM explains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from vlx.errors import InputError
from vlx.models.encoders import ResNetEncoder
from vlx.text import Vocabulary

ENCODER_LAYER = "encoder.stages.2"
"""The image encoder's output: the last layer that sees the image alone, whose units can be
dissected and named."""
MAX_QUESTION_LENGTH = 26
"""Longest question read, in words (the original Grad-CAM VQA code's limit); the rest is cut."""


def encode_questions(
    vocabulary: Vocabulary, questions: Sequence[str], max_length: int = MAX_QUESTION_LENGTH
) -> torch.Tensor:
    """(N, L) word ids, 0-padded to the longest question: the ``questions`` input of a VQA model."""
    rows = [vocabulary.encode(q)[:max_length] for q in questions]
    ids = torch.zeros(len(rows), max([1, *map(len, rows)]), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids


def question_lengths(questions: torch.Tensor) -> torch.Tensor:
    """Words per question; at least 1, so an empty question still reads one (padding) step."""
    return (questions != 0).sum(dim=1).clamp(min=1)


class VQAModel(nn.Module):
    """The shared shape of a VQA model: ``answer(image_features(images), questions)``.

    Splitting the forward lets training and evaluation encode a scene once for all its
    questions (``rows``); the explained layer still runs inside ``forward``.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    explained_layer: ClassVar[str] = ENCODER_LAYER
    """The layer Grad-CAM explains by default: the model's last spatial map."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_code(self.encoder(images))

    def image_code(self, feature_map: torch.Tensor) -> torch.Tensor:
        """What the answering part reads from the encoder's (N, C, h, w) map."""
        raise NotImplementedError

    def answer(
        self, features: torch.Tensor, questions: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (Q, A) for questions (Q, L) about the encoded images; ``rows[i]`` is the
        image question ``i`` asks about (default: image ``i``)."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor, questions: torch.Tensor) -> torch.Tensor:
        """Answer logits (N, A), pre-softmax, for images (N, 3, H, W) and 0-padded word ids
        (N, L); extra padding does not change them."""
        return self.answer(self.image_features(images), questions)

    def checkpoint(self, question_vocab: Vocabulary, answer_vocab: Sequence[str]) -> dict:
        """Everything ``from_checkpoint`` needs, in types ``torch.load(weights_only=True)``
        accepts; the answer index is the position in ``answer_vocab``."""
        config = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.config).items()}
        return {
            "architecture": self.name,
            "config": config,
            "question_vocabulary": question_vocab.state(),
            "answers": list(answer_vocab),
            "state_dict": self.state_dict(),
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> tuple[VQAModel, Vocabulary, list[str]]:
        """(model in eval mode, question vocabulary, answers) from ``checkpoint()``'s dict."""
        if checkpoint.get("architecture") != cls.name:
            raise InputError(
                f"the checkpoint holds a {checkpoint.get('architecture')!r} model, not {cls.name!r}"
            )
        config = {
            **getattr(cls.config_class, "LEGACY", {}),
            **{k: tuple(v) if isinstance(v, list) else v for k, v in checkpoint["config"].items()},
        }
        model = cls(cls.config_class(**config))
        model.load_state_dict(checkpoint["state_dict"])
        return (
            model.eval(),
            Vocabulary(checkpoint["question_vocabulary"]),
            list(checkpoint["answers"]),
        )


IMAGE_POOLS = ("mean", "max")


@dataclass(frozen=True)
class LSTMCNNConfig:
    """``pool`` makes the global image feature: the spatial mean (the paper's, a VGG fc7 in
    spirit) or the spatial maximum, which says "somewhere in the image" whatever an object's
    size; ``coordinates`` gives the encoder's last stage x/y channels, so a unit can fire for
    "a red circle on the left" and a pooled feature still knows where things are;
    ``question_norm`` layer-normalises the LSTM's states before the question's tanh layer: the
    cell state grows in training until that tanh saturates, and then every "is there a red
    star?" question gets one and the same code (measured: 36 such questions 0.003 apart, at
    norm 16), so yes/no questions stay at chance."""

    vocab_size: int
    answers: int
    embed: int = 64
    hidden: int = 128
    common: int = 256
    mlp: int = 256
    dropout: float = 0.3
    widths: tuple[int, int, int, int] = (16, 32, 48, 128)
    pool: str = "max"
    coordinates: bool = True
    question_norm: bool = True

    LEGACY: ClassVar[dict[str, Any]] = {"pool": "mean", "coordinates": False,
                                        "question_norm": False}
    """What checkpoints written before these fields existed were trained with."""


class VQALSTMCNN(VQAModel):
    """normalised pooled CNN feature x LSTM question code -> MLP -> answer logits."""

    name = "lstm-cnn"
    config_class = LSTMCNNConfig

    def __init__(self, config: LSTMCNNConfig) -> None:
        super().__init__(config)
        if config.pool not in IMAGE_POOLS:
            raise ValueError(f"unknown pool {config.pool!r}; valid: {', '.join(IMAGE_POOLS)}")
        self.encoder = ResNetEncoder(config.widths, coordinates=config.coordinates)
        self.image = nn.Linear(self.encoder.channels, config.common)
        self.embed = nn.Embedding(config.vocab_size, config.embed, padding_idx=0)
        self.lstm = nn.LSTM(config.embed, config.hidden, num_layers=2, batch_first=True)
        self.question_norm = nn.LayerNorm(4 * config.hidden) if config.question_norm else None
        self.question = nn.Linear(4 * config.hidden, config.common)
        self.classifier = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(config.common, config.mlp),
            nn.Tanh(),
            nn.Dropout(config.dropout),
            nn.Linear(config.mlp, config.answers),
        )

    def image_code(self, feature_map: torch.Tensor) -> torch.Tensor:
        """The L2-normalised global pool (mean or max): scale-free, as in the paper."""
        pooled = feature_map.mean(dim=(2, 3)) if self.config.pool == "mean" else feature_map.amax(dim=(2, 3))
        return F.normalize(pooled, dim=1)

    def question_code(self, questions: torch.Tensor) -> torch.Tensor:
        """Final (h, c) of both LSTM layers, taken at each question's own length."""
        words = torch.tanh(self.embed(questions))
        lengths = question_lengths(questions).cpu()
        packed = pack_padded_sequence(words, lengths, batch_first=True, enforce_sorted=False)
        _, (hidden, cell) = self.lstm(packed)
        code = torch.cat([hidden[0], cell[0], hidden[1], cell[1]], dim=1)
        return self.question_norm(code) if self.question_norm is not None else code

    def answer(
        self, features: torch.Tensor, questions: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        image = torch.tanh(self.image(features if rows is None else features[rows]))
        question = torch.tanh(self.question(self.question_code(questions)))
        return self.classifier(image * question)
