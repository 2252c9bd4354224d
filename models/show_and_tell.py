"""Show and Tell (Vinyals et al. 2015): a CNN image embedding as the LSTM's first input.

Sequence layout under teacher forcing: inputs ``[image, <start>, w1, ..., wn]`` and the
outputs after ``<start>`` predict ``[w1, ..., wn, <end>]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from vlx.models.encoders import ResNetEncoder, WhatWherePool
from vlx.text import Vocabulary

EXPLAINED_LAYER = "encoder.stages.2"
POOLS = ("mean", "what-where")


@dataclass(frozen=True)
class ShowAndTellConfig:
    vocab_size: int
    embed: int = 128
    hidden: int = 256
    widths: tuple[int, int, int, int] = (24, 32, 64, 96)
    max_length: int = 32
    pool: str = "mean"
    coordinates: bool = True
    stride: int = 8
    receptive_field: int = 71


class ShowAndTell(nn.Module):
    """CNN encoder -> image embedding -> LSTM -> next-word logits."""

    def __init__(self, config: ShowAndTellConfig) -> None:
        super().__init__()
        if config.pool not in POOLS:
            raise ValueError(f"unknown pool {config.pool!r}; valid: {', '.join(POOLS)}")
        self.config = config
        self.encoder = ResNetEncoder(
            config.widths, coordinates=config.coordinates, stride=config.stride,
            receptive_field=config.receptive_field,
        )
        # Global average pooling keeps every unit's gradient spatially constant, which is what
        # Grad-CAM's alphas (spatial means of gradients) capture; "what-where" adds spatial
        # moments whose gradients vary in space and are averaged away by Grad-CAM (see
        # examples/caption_localization.py for the measured difference).
        self.pool = WhatWherePool() if config.pool == "what-where" else nn.AdaptiveAvgPool2d(1)
        pooled = 3 if config.pool == "what-where" else 1
        # Objects cover a few percent of the image, so their channels' means are tiny next to
        # the background's: normalising the pooled features lets them speak from the start.
        self.norm = nn.BatchNorm1d(pooled * self.encoder.channels)
        self.features = pooled * self.encoder.channels
        self.project = nn.Linear(pooled * self.encoder.channels, config.embed)
        self.embed = nn.Embedding(config.vocab_size, config.embed, padding_idx=0)
        self.lstm = nn.LSTM(config.embed, config.hidden, batch_first=True)
        self.out = nn.Linear(config.hidden, config.vocab_size)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """The normalised pooled image vector the embedding is projected from."""
        return self.norm(self.pool(self.encoder(images)).flatten(1))

    def image_embedding(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(self.image_features(images))

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (N, L, V) for ``tokens`` = ``[<start>, w1, ..., wn]`` (N, L): position t
        predicts the token after ``tokens[:, t]``."""
        return self.decode(self.image_embedding(images), tokens)

    def decode(self, embedding: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits from an image embedding (N, E) and tokens (N, L)."""
        inputs = torch.cat([embedding.unsqueeze(1), self.embed(tokens)], dim=1)
        hidden, _ = self.lstm(inputs)
        return self.out(hidden[:, 1:])

    @torch.no_grad()
    def greedy(self, images: torch.Tensor, start: int, end: int) -> list[list[int]]:
        """The most likely word at every step, until ``<end>`` or ``max_length``."""
        n = images.shape[0]
        _, state = self.lstm(self.image_embedding(images).unsqueeze(1))
        word = torch.full((n,), start, dtype=torch.long, device=images.device)
        words = []
        done = torch.zeros(n, dtype=torch.bool, device=images.device)
        for _ in range(self.config.max_length):
            hidden, state = self.lstm(self.embed(word).unsqueeze(1), state)
            word = self.out(hidden[:, 0]).argmax(dim=-1)
            words.append(word)
            done |= word == end
            if bool(done.all()):
                break
        sequences = torch.stack(words, dim=1).tolist()
        return [_until(seq, end) for seq in sequences]

    @torch.no_grad()
    def beam(self, image: torch.Tensor, start: int, end: int, width: int = 3) -> list[int]:
        """Beam search for one image (1, 3, H, W): the highest total log-probability."""
        _, state = self.lstm(self.image_embedding(image).unsqueeze(1))
        beams = [(0.0, [start], state)]
        finished: list[tuple[float, list[int]]] = []
        for _ in range(self.config.max_length):
            candidates = []
            for score, seq, (h, c) in beams:
                word = torch.tensor([[seq[-1]]], device=image.device)
                hidden, new_state = self.lstm(self.embed(word), (h, c))
                log_probs = self.out(hidden[:, 0]).log_softmax(-1)[0]
                top = log_probs.topk(width)
                for lp, w in zip(top.values.tolist(), top.indices.tolist()):
                    candidates.append((score + lp, seq + [w], new_state))
            candidates.sort(key=lambda item: item[0], reverse=True)
            beams = []
            for score, seq, state in candidates[:width]:
                (finished if seq[-1] == end else beams).append(
                    (score, seq) if seq[-1] == end else (score, seq, state)
                )
            if not beams:
                break
        finished.extend((score, seq) for score, seq, _ in beams)
        best = max(finished, key=lambda item: item[0])[1]
        return _until(best[1:], end)

    def checkpoint(self, vocabulary: Vocabulary) -> dict:
        """Everything ``load`` needs, in types ``torch.load(weights_only=True)`` accepts."""
        config = asdict(self.config)
        config["widths"] = list(config["widths"])
        return {"config": config, "vocabulary": vocabulary.state(), "state_dict": self.state_dict()}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> tuple[ShowAndTell, Vocabulary]:
        config = dict(checkpoint["config"])
        config["widths"] = tuple(config["widths"])
        model = cls(ShowAndTellConfig(**config))
        model.load_state_dict(checkpoint["state_dict"])
        return model.eval(), Vocabulary(checkpoint["vocabulary"])


def _until(sequence: list[int], end: int) -> list[int]:
    return sequence[: sequence.index(end)] if end in sequence else sequence
