"""Hierarchical question-image co-attention (Lu et al. 2016, parallel co-attention).

The question is read at three levels (words, 1-3-gram phrases, an LSTM over the phrases); at
each level the question and the 16 x 16 image regions of ``encoder.stages.2`` attend to each
other through an affinity matrix, and a recursive MLP combines the attended pairs from the word
level up. Padded words get no attention and no affinity, so extra padding changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from vlx.models.encoders import ResNetEncoder, coordinate_channels
from vlx.models.vqa_lstm_cnn import VQAModel, question_lengths

LEVELS = ("word", "phrase", "question")
NGRAMS = (1, 2, 3)


@dataclass(frozen=True)
class CoAttentionConfig:
    vocab_size: int
    answers: int
    d: int = 128
    attention: int = 64
    hidden: int = 256
    dropout: float = 0.1
    widths: tuple[int, int, int, int] = (16, 32, 48, 64)


class Attended(NamedTuple):
    """One level's result: attended question and image vectors (N, d) and the attention
    weights over words (N, L) and regions (N, R)."""

    question: torch.Tensor
    image: torch.Tensor
    word_weights: torch.Tensor
    region_weights: torch.Tensor


class ParallelCoAttention(nn.Module):
    """C = tanh(Q^T W_b V); H_v = tanh(W_v V + (W_q Q) C); H_q = tanh(W_q Q + (W_v V) C^T);
    a_v = softmax(w_hv^T H_v), a_q = softmax(w_hq^T H_q) over the real words only."""

    def __init__(self, d: int, attention: int) -> None:
        super().__init__()
        self.affinity = nn.Linear(d, d, bias=False)
        # Small W_b: with the default init Q^T W_b V is a sum of d terms of order one, and
        # the tanh of C starts saturated (85% of entries past 0.95), where it has no gradient.
        nn.init.normal_(self.affinity.weight, std=1 / d)
        self.image = nn.Linear(d, attention, bias=False)
        self.question = nn.Linear(d, attention, bias=False)
        self.image_score = nn.Linear(attention, 1, bias=False)
        self.question_score = nn.Linear(attention, 1, bias=False)

    def forward(
        self,
        question: torch.Tensor,
        regions: torch.Tensor,
        mask: torch.Tensor,
        rows: torch.Tensor | None = None,
    ) -> Attended:
        """``question`` (Q, L, d), ``mask`` (Q, L) True at real words, ``regions`` (N, R, d) of
        the images, ``rows`` (Q,) the image of each question (default: the same index)."""
        image = self.image(regions)  # once per image, however many questions it has
        if rows is not None:
            regions, image = regions[rows], image[rows]
        affinity = torch.tanh(self.affinity(question) @ regions.transpose(1, 2))
        affinity = affinity * mask.unsqueeze(-1).to(affinity.dtype)  # (Q, L, R)
        words = self.question(question)
        h_image = torch.tanh(image + affinity.transpose(1, 2) @ words)
        h_question = torch.tanh(words + affinity @ image)
        region_weights = self.image_score(h_image).squeeze(-1).softmax(dim=1)
        word_scores = self.question_score(h_question).squeeze(-1).masked_fill(~mask, float("-inf"))
        word_weights = word_scores.softmax(dim=1)
        return Attended(
            (word_weights.unsqueeze(1) @ question).squeeze(1),
            (region_weights.unsqueeze(1) @ regions).squeeze(1),
            word_weights,
            region_weights,
        )


class PhraseFeatures(nn.Module):
    """Per word, the element-wise max over the unigram, bigram and trigram starting there
    (zero-padded past the end): q^p_t = max_s tanh(W_s q^w_{t:t+s-1})."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(d, d, n) for n in NGRAMS)

    def forward(self, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        length = words.shape[1]
        padded = nn.functional.pad(words.transpose(1, 2), (0, max(NGRAMS) - 1))
        grams = [
            torch.tanh(conv(padded[..., : length + n - 1])) for n, conv in zip(NGRAMS, self.convs)
        ]
        phrases = torch.stack(grams).amax(dim=0).transpose(1, 2)
        return phrases * mask.unsqueeze(-1).to(phrases.dtype)


class CoAttention(VQAModel):
    """Word, phrase and question levels, each co-attending with the image regions; a recursive
    MLP from the word level up answers."""

    name = "coattention"
    config_class = CoAttentionConfig

    def __init__(self, config: CoAttentionConfig) -> None:
        super().__init__(config)
        d, hidden = config.d, config.hidden
        self.encoder = ResNetEncoder(config.widths)
        self.regions = nn.Linear(self.encoder.channels, d)
        # Each region's (x, y), embedded linearly and added outside the tanh: an attended vector
        # then holds exactly where its level looked, which "is A left of B" compares.
        self.where = nn.Linear(2, d, bias=False)
        self.embed = nn.Embedding(config.vocab_size, d, padding_idx=0)
        self.phrases = PhraseFeatures(d)
        self.lstm = nn.LSTM(d, d, batch_first=True)
        self.coattend = nn.ModuleList(ParallelCoAttention(d, config.attention) for _ in LEVELS)
        self.dropout = nn.Dropout(config.dropout)
        self.mlp = nn.ModuleList(
            [nn.Linear(d, hidden), nn.Linear(d + hidden, hidden), nn.Linear(d + hidden, hidden)]
        )
        self.out = nn.Linear(hidden, config.answers)

    def image_code(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Regions (N, R, d): each position of the map, projected, plus its place."""
        what = torch.tanh(self.regions(feature_map.flatten(2).transpose(1, 2)))
        return what + self.where(coordinate_channels(feature_map).flatten(2).transpose(1, 2))

    def levels(
        self, regions: torch.Tensor, questions: torch.Tensor, rows: torch.Tensor | None = None
    ) -> list[Attended]:
        """The co-attended word, phrase and question levels."""
        positions = torch.arange(questions.shape[1], device=questions.device)
        mask = positions < question_lengths(questions).unsqueeze(1)
        words = self.embed(questions) * mask.unsqueeze(-1).to(regions.dtype)
        phrases = self.phrases(words, mask)
        # Unidirectional: the state at a real word never sees the padding after it.
        sentence = self.lstm(phrases)[0] * mask.unsqueeze(-1).to(regions.dtype)
        return [
            coattend(q, regions, mask, rows)
            for coattend, q in zip(self.coattend, (words, phrases, sentence))
        ]

    def answer(
        self, features: torch.Tensor, questions: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        hidden = None
        for level, layer in zip(self.levels(features, questions, rows), self.mlp):
            joint = self.dropout(level.question + level.image)
            inputs = joint if hidden is None else torch.cat([joint, hidden], dim=1)
            hidden = torch.tanh(layer(inputs))
        return self.out(self.dropout(hidden))

    @torch.no_grad()
    def attention(self, images: torch.Tensor, questions: torch.Tensor) -> dict[str, Attended]:
        """Per level, what the model looked at: word weights (N, L) and region weights
        on the feature map's grid (N, h, w)."""
        features = self.encoder(images)
        grid = features.shape[-2:]
        levels = self.levels(self.image_code(features), questions)
        return {
            name: level._replace(region_weights=level.region_weights.unflatten(1, grid))
            for name, level in zip(LEVELS, levels)
        }
