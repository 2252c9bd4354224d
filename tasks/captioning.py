"""Captioning (paper Sec. 8.1): explain every word of a caption in one pass.

The target for word t is log p(w_t | image, w_<t) under teacher forcing, so all words of a
caption share one forward; the engine takes all their gradients in one batched backward.
A word made of several tokens (sub-words of a Hugging Face tokenizer) sums their log-probs;
the whole-caption target is the sum of every token's log-prob (the original code's single
map per caption). This module holds what every captioner shares; ``ShowAndTellCaptioner`` is
the ShapesWorld model, ``vlx.tasks.hf_captioning`` the transformers ones.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vlx.errors import InputError
from vlx.images import to_rgb
from vlx.models.encoders import shapes_batch
from vlx.models.registry import checkpoint_path, load_trained
from vlx.models.show_and_tell import EXPLAINED_LAYER, ShowAndTell
from vlx.targets import logits_of
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

WHOLE_CAPTION = "<caption>"
EVERY_WORD = "<words>"
"""Requested targets: the whole caption's summed log-prob, and every word of the caption."""
WORD_SCORES = ("log-prob", "logit")
"""The paper's target is the word's log-probability; the pre-softmax logit is the ablation."""
MAX_CAPTION_WORDS = 200
"""Longest caption explained: the models read captions of a few dozen words; far longer text
is a mistake, not a caption (its maps cost time quadratic in its length)."""


@dataclass(frozen=True)
class TokenizedText:
    """``units`` (words, or tokens when not grouped), the caption's token ids, and per unit
    the positions of its tokens in ``ids``."""

    units: list[str]
    ids: list[int]
    groups: list[list[int]]


class CaptionScores:
    """Callable target: (N, L, V) logits -> (N, T), per target the summed score (log-prob or
    logit) of its tokens. Row r of ``ids`` is caption r's tokens, and ``membership[r, l, t]``
    is 1 where token l belongs to target t; a single row serves any batch (copies of one
    image, as occlusion and deletion score them)."""

    def __init__(self, ids: torch.Tensor, membership: torch.Tensor, score: str = "log-prob"):
        if score not in WORD_SCORES:
            raise InputError(f"unknown word score {score!r}; valid: {', '.join(WORD_SCORES)}")
        self.ids, self.membership, self.score = ids, membership, score

    @classmethod
    def of(cls, captions: Sequence[TokenizedText], rows: Sequence[Sequence[Target]],
           score: str = "log-prob") -> CaptionScores:
        """Scores of the targets ``rows`` (word positions; ``len(units)`` for the whole
        caption) of each caption; rows are padded to the widest by their last target."""
        length = max(len(c.ids) for c in captions)
        width = max(len(row) for row in rows)
        ids = torch.zeros(len(captions), length, dtype=torch.long)
        membership = torch.zeros(len(captions), length, width)
        for r, (caption, row) in enumerate(zip(captions, rows)):
            ids[r, : len(caption.ids)] = torch.tensor(caption.ids)
            padded = [*row, *[row[-1]] * (width - len(row))]
            for t, target in enumerate(padded):
                tokens = (range(len(caption.ids)) if target.id == len(caption.units)
                          else caption.groups[target.id])
                membership[r, list(tokens), t] = 1.0
        return cls(ids, membership, score)

    def __call__(self, outputs: Any) -> torch.Tensor:
        logits = logits_of(outputs)
        ids, membership = self.ids.to(logits.device), self.membership.to(logits)
        if ids.shape[0] == 1 and logits.shape[0] != 1:
            ids, membership = ids.expand(logits.shape[0], -1), membership.expand(logits.shape[0], -1, -1)
        scores = logits[:, : ids.shape[1]]
        if self.score == "log-prob":
            scores = scores.log_softmax(dim=-1)
        per_token = scores.gather(2, ids.unsqueeze(-1))[..., 0]
        return torch.einsum("nl,nlt->nt", per_token, membership)


class Captioning(Task):
    """What every captioner shares: the caption an example is explained on (given, or the
    one the model generates), word positions as targets, teacher-forced scores."""

    kind = "caption"
    beam = 0
    """Beam width of generated captions (0: greedy)."""
    score = "log-prob"

    @abstractmethod
    def images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(N, 3, H, W) pixels on the model's device, as the model's preprocessing makes them."""

    @abstractmethod
    def generate(self, batch: Batch) -> list[TokenizedText]:
        """The model's caption of each example (greedy, or beam search of ``beam``), grouped
        into units from the token ids that were generated."""

    @abstractmethod
    def tokenize(self, caption: str | Sequence[str]) -> TokenizedText:
        """A given caption's units and token ids; an unknown word is an error naming the
        closest known ones."""

    @abstractmethod
    def teacher_forced(self, batch: Batch, ids: torch.Tensor) -> Problem:
        """The forward over ``ids`` (N, L) tokens (after the start token the model adds),
        with ``score`` and ``probability`` left for ``problem`` to fill in."""

    @property
    @abstractmethod
    def longest(self) -> int:
        """The most tokens a caption may have."""

    def words(self, caption: str | Sequence[str]) -> list[str]:
        """Validated units of a caption."""
        return self.checked(caption).units

    def checked(self, caption: str | Sequence[str]) -> TokenizedText:
        tokenized = self.tokenize(caption)
        if len(tokenized.units) > MAX_CAPTION_WORDS:
            raise InputError(
                f"the caption has {len(tokenized.units)} words; captions of at most "
                f"{MAX_CAPTION_WORDS} are explained"
            )
        if len(tokenized.ids) > self.longest:
            raise InputError(
                f"the caption has {len(tokenized.ids)} tokens; the decoder reads at most "
                f"{self.longest}"
            )
        return tokenized

    def prepare(self, examples: Sequence[Example]) -> Batch:
        return Batch(list(examples), self.images([to_rgb(e.image) for e in examples]))

    def generated(self, batch: Batch) -> list[TokenizedText]:
        """The generated captions, computed once per batch."""
        if "generated" not in batch.state:
            batch.state["generated"] = self.generate(batch)
        return batch.state["generated"]

    def correct(self, batch: Batch, targets: TargetSet) -> None:
        """A caption word is no prediction to be right or wrong about."""
        return

    def predict(self, batch: Batch, top_k: int = 1) -> list[list[Prediction]]:
        return [[Prediction(" ".join(c.units), words=tuple(c.units))]
                for c in self.generated(batch)]

    def captions(self, batch: Batch) -> list[TokenizedText]:
        """The caption each example is explained on: its own text, else the generated one."""
        given = [e.text for e in batch.examples]
        generated = self.generated(batch) if any(t is None for t in given) else None
        captions = [self.checked(text) if text is not None else generated[n]
                    for n, text in enumerate(given)]
        for n, caption in enumerate(captions):
            if not caption.units:
                raise InputError(f"the model generated an empty caption for example {n}; give "
                                 "one to explain")
        return captions

    def targets(self, batch: Batch, requested: Requested = None) -> TargetSet:
        """Words by position (ints) or by text (every occurrence), and ``WHOLE_CAPTION``;
        ``None``: every word."""
        captions = self.captions(batch)
        rows = broadcast(requested, len(batch))
        chosen = []
        for n, caption in enumerate(captions):
            wanted = list(range(len(caption.units))) if rows is None else rows[n]
            chosen.append(_positions(caption.units, wanted))
        return TargetSet(
            [[Target(p, caption.units[p] if p < len(caption.units) else WHOLE_CAPTION)
              for p in row] for caption, row in zip(captions, chosen)],
            context=captions,
        )

    def problem(self, batch: Batch, targets: TargetSet, layer: str | None = None) -> Problem:
        captions = targets.context
        length = max(len(c.ids) for c in captions)
        ids = torch.zeros(len(captions), length, dtype=torch.long)
        for n, caption in enumerate(captions):
            ids[n, : len(caption.ids)] = torch.tensor(caption.ids)
        problem = self.teacher_forced(batch, ids.to(self.device))
        problem.score = CaptionScores.of(captions, targets.rows, self.score)
        log_probs = CaptionScores.of(captions, targets.rows, "log-prob")
        problem.probability = lambda outputs: log_probs(outputs).exp()
        return problem


def _positions(units: Sequence[str], wanted: Sequence[str | int]) -> list[int]:
    """Positions of the wanted words: an int is a position (``len(units)``: the whole
    caption), a word every position it occurs at, ``WHOLE_CAPTION`` the whole caption."""
    positions: list[int] = []
    for item in wanted:
        if isinstance(item, int) and not isinstance(item, bool):
            if not 0 <= item <= len(units):
                raise InputError(
                    f"word position {item} is out of range; valid: 0..{len(units) - 1}"
                )
            positions.append(item)
        elif item == WHOLE_CAPTION:
            positions.append(len(units))
        elif item == EVERY_WORD:
            positions.extend(range(len(units)))
        else:
            found = [t for t, u in enumerate(units) if u.lower() == str(item).lower()]
            if not found:
                raise InputError(f"word {item!r} is not in the caption; its words: "
                                 f"{' '.join(units)}")
            positions.extend(found)
    whole = [p for p in positions if p == len(units)]
    return sorted({p for p in positions if p < len(units)}) + whole[:1]


class ShowAndTellCaptioner(Captioning):
    """The ShapesWorld Show-and-Tell model with its vocabulary: one token per word."""

    def __init__(
        self, model: ShowAndTell, vocabulary: Vocabulary, device: str | torch.device = "cpu",
        layer: str = EXPLAINED_LAYER, name: str = "shapes",
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.vocabulary = vocabulary
        self.layer = layer
        self.name = name

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu"
             ) -> ShowAndTellCaptioner:
        """The shipped ShapesWorld captioner, or a checkpoint from ``vlx train captioner``."""
        file = Path(path) if path is not None else checkpoint_path("captioner_shapes")
        model, vocabulary = load_trained(file, "captioner", ShowAndTell.from_checkpoint)
        return cls(model, vocabulary, device, name=Path(path).stem if path else "captioner")

    @property
    def longest(self) -> int:
        return 10 * MAX_CAPTION_WORDS

    def images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return shapes_batch(list(images)).to(self.device)

    def generate(self, batch: Batch) -> list[TokenizedText]:
        v = self.vocabulary
        if self.beam > 1:
            ids = [self.model.beam(x[None], v.start, v.end, self.beam) for x in batch.inputs]
        else:
            ids = self.model.greedy(batch.inputs, v.start, v.end)
        return [self._units(row) for row in ids]

    def tokenize(self, caption: str | Sequence[str]) -> TokenizedText:
        words = tokenize(caption) if isinstance(caption, str) else [str(w) for w in caption]
        if not words:
            raise InputError(f"caption {caption!r} has no words")
        return TokenizedText(words, [self.vocabulary.require(w) for w in words],
                             [[t] for t in range(len(words))])

    def _units(self, ids: Sequence[int]) -> TokenizedText:
        words = self.vocabulary.decode(ids)
        return TokenizedText(words, self.vocabulary.encode(words), [[t] for t in range(len(words))])

    def teacher_forced(self, batch: Batch, ids: torch.Tensor) -> Problem:
        start = torch.full((ids.shape[0], 1), self.vocabulary.start, device=self.device)
        tokens = torch.cat([start, ids], dim=1)
        return Problem(self.model, (batch.inputs, tokens), score=None, probability=None)

    def dissection_subject(self, layer: str | None = None) -> LayerSubject:
        """The explained layer, read through the image encoder alone: no caption needed."""
        return LayerSubject(self.model, layer or self.layer, self.images, self.name,
                            forward=self.model.encoder)
