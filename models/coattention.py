"""Hierarchical question-image co-attention (Lu et al. 2016, parallel co-attention).

The question is read at three levels (words, 1-3-gram phrases, an LSTM over the phrases); at
each level the question and the 16 x 16 image regions of ``encoder.stages.2`` attend to each
other through an affinity matrix, and a recursive MLP combines the attended pairs from the word
level up. Padded words get no attention and no affinity, so extra padding changes nothing.

Grad-CAM explains the last layer that is still a spatial map, ``attended``: the region codes
weighted by each level's attention. The encoder's output is question-blind; averaging its
gradient over space (Grad-CAM's alpha) throws away the attention that picks the object asked
about, so its maps follow activation strength instead (docs/REPORT.md, "VQA").
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
    """One level's result: the attended question vector (N, d) and the attention weights over
    words (N, L) and regions (N, R)."""

    question: torch.Tensor
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
        return Attended((word_weights.unsqueeze(1) @ question).squeeze(1), word_weights, region_weights)


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


class AttendedRegions(nn.Module):
    """Region codes (N, d, h, w) weighted by each level's region attention (N, levels, h * w):
    (N, levels * d, h, w). Summed over positions it is each level's attended image vector, so
    its gradient is the same at every position and Grad-CAM on it is attention times how much
    each region's code supports the answer, as CAM is for a pooled classifier."""

    def forward(self, codes: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        n, _, h, w = codes.shape
        return (weights.view(n, -1, 1, h, w) * codes.unsqueeze(1)).flatten(1, 2)


class CoAttention(VQAModel):
    """Word, phrase and question levels, each co-attending with the image regions; a recursive
    MLP from the word level up answers."""

    name = "coattention"
    config_class = CoAttentionConfig
    explained_layer = "attended"

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
        self.attended = AttendedRegions()
        self.dropout = nn.Dropout(config.dropout)
        self.mlp = nn.ModuleList(
            [nn.Linear(d, hidden), nn.Linear(d + hidden, hidden), nn.Linear(d + hidden, hidden)]
        )
        self.out = nn.Linear(hidden, config.answers)

    def image_code(self, feature_map: torch.Tensor) -> torch.Tensor:
        """What each position holds, (N, d, h, w): the encoder's map projected and squashed.
        Where it is joins in ``levels``, so the spatial map carries appearance alone."""
        return torch.tanh(self.regions(feature_map.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)

    def levels(
        self, codes: torch.Tensor, questions: torch.Tensor, rows: torch.Tensor | None = None
    ) -> list[Attended]:
        """The co-attended word, phrase and question levels over regions = code + place."""
        positions = torch.arange(questions.shape[1], device=questions.device)
        mask = positions < question_lengths(questions).unsqueeze(1)
        words = self.embed(questions) * mask.unsqueeze(-1).to(codes.dtype)
        phrases = self.phrases(words, mask)
        # Unidirectional: the state at a real word never sees the padding after it.
        sentence = self.lstm(phrases)[0] * mask.unsqueeze(-1).to(codes.dtype)
        regions = codes.flatten(2).transpose(1, 2) + self.where(_places(codes))
        return [
            coattend(q, regions, mask, rows)
            for coattend, q in zip(self.coattend, (words, phrases, sentence))
        ]

    def answer(
        self, features: torch.Tensor, questions: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        levels = self.levels(features, questions, rows)
        codes = features if rows is None else features[rows]
        weights = torch.stack([level.region_weights for level in levels], dim=1)  # (Q, 3, R)
        # Each level's attended vector: sum_r a_r (code_r + W xy_r) = the attended map summed
        # over space + W (the attended place); ``where`` is linear and bias-free.
        seen = self.attended(codes, weights).sum(dim=(2, 3)).unflatten(1, (len(LEVELS), -1))
        places = self.where(weights @ _places(codes))
        hidden = None
        for i, (level, layer) in enumerate(zip(levels, self.mlp)):
            joint = self.dropout(level.question + seen[:, i] + places[:, i])
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


def _places(codes: torch.Tensor) -> torch.Tensor:
    """(N, h * w, 2): each position's (x, y) in [-1, 1]."""
    return coordinate_channels(codes).flatten(2).transpose(1, 2)
