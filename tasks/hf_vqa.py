"""VQA adapters for Hugging Face models: ViLT and BLIP (Sec. 8.2).

The same contract as ``vlx.tasks.vqa.VisualQA``: every answer of one request is a target of
one forward and one batched backward. ViLT classifies over a fixed answer list, so an
answer's target is its pre-sigmoid logit. BLIP generates its answer, so an answer's target
is the sum of its tokens' log-probs, end token included (the log-probability of exactly that
answer); its ``answers`` are the texts asked about or generated so far.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Self

import torch
from PIL import Image
from torch import nn

from vlx.errors import InputError
from vlx.explanation import Explanation
from vlx.layers import TokenGrid, last_module_named
from vlx.methods import explain
from vlx.tasks.hf_grid import PatchGrid, last_block, patch_grids
from vlx.tasks.hf_text import group_tokens, split_words, tokenize_words, unknown_units
from vlx.tasks.vqa import Answer, unanswerable


class HFVisualQA(ABC):
    """A transformers VQA model with its processor, offering the ``VisualQA`` API.

    Questions are (N, L) token ids with the tokenizer's special tokens; padding, where
    questions of different lengths share a batch, is the tokenizer's pad token.
    """

    answers: list[str]

    def __init__(
        self,
        model: nn.Module,
        image_processor: Any,
        tokenizer: Any,
        device: str | torch.device = "cpu",
        layer: str | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.layer = layer or self.default_layer()

    @abstractmethod
    def default_layer(self) -> str:
        """The layer explained by default: one whose gradient reaches the patch tokens."""

    @abstractmethod
    def scores(
        self, inputs: torch.Tensor, questions: torch.Tensor, answers: Sequence[int]
    ) -> torch.Tensor:
        """(N, A) target scores of ``answers`` (indices into ``self.answers``), no gradients."""

    @abstractmethod
    def to_probability(self, scores: torch.Tensor) -> torch.Tensor:
        """Each answer's probability from its score."""

    @abstractmethod
    def answer_index(self, answer: str) -> int:
        """The index of an answer the model can give, or an error naming the closest ones."""

    @abstractmethod
    def explain(
        self,
        inputs: torch.Tensor,
        questions: torch.Tensor,
        answers: Sequence[Sequence[int]],
        method: str = "gradcam",
        layer: str | None = None,
    ) -> Explanation:
        """Maps for T answers per image (answer indices), all from one forward and backward."""

    def candidates(self, inputs: torch.Tensor, questions: torch.Tensor, top_k: int) -> list[int]:
        """Indices of the answers ``predict`` ranks: every answer of a fixed list."""
        return list(range(len(self.answers)))

    def prepare(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(N, 3, H, W) pixel values, sized as the model's own processor sizes them."""
        batch = self.image_processor(images=list(images), return_tensors="pt")
        mask = batch.get("pixel_mask")
        if mask is not None and not bool(mask.all()):
            raise InputError(
                "the images have different sizes after resizing and would be padded; "
                "explain them one at a time"
            )
        return batch["pixel_values"].to(self.device)

    def encode(self, question: str, count: int = 1) -> torch.Tensor:
        """(count, L) token ids of a question; one without a single known word is an error."""
        words = split_words(question, "question")
        if len(self.unknown_words(question)) == len(words):
            raise InputError(f"no word of {question!r} is known to the model's tokenizer")
        config = getattr(self.model.config, "text_config", self.model.config)
        limit = min(self.tokenizer.model_max_length, config.max_position_embeddings)
        ids = self.tokenizer(question, truncation=True, max_length=limit)["input_ids"]
        return torch.tensor([ids], device=self.device).expand(count, -1)

    def unknown_words(self, question: str) -> list[str]:
        """Words of ``question`` with a token the tokenizer reads as unknown."""
        if not question.strip():
            return []
        return unknown_units(self.tokenizer, group_tokens(self.tokenizer, question.split()))

    def probabilities(self, inputs: torch.Tensor, questions: torch.Tensor) -> torch.Tensor:
        """(N, A) probability of every answer in ``self.answers``."""
        return self.to_probability(self.scores(inputs, questions, range(len(self.answers))))

    def predict(
        self, inputs: torch.Tensor, questions: torch.Tensor, top_k: int = 3
    ) -> list[list[Answer]]:
        """The ``top_k`` answers of each image, most probable first."""
        candidates = self.candidates(inputs, questions, top_k)
        scores = self.scores(inputs, questions, candidates)
        probabilities = self.to_probability(scores)
        top = scores.topk(min(top_k, len(candidates)), dim=-1).indices.tolist()
        return [
            [
                Answer(candidates[i], self.answers[candidates[i]], float(probabilities[n, i]),
                       float(scores[n, i]))
                for i in row
            ]
            for n, row in enumerate(top)
        ]

    def attention_mask(self, questions: torch.Tensor) -> torch.Tensor:
        """1 for question tokens, 0 for padding."""
        pad = self.tokenizer.pad_token_id
        return (questions != pad).long() if pad is not None else torch.ones_like(questions)


class ViltPatchOrder:
    """ViLT embeds its patch tokens in a new random order on every call (``visual_embed``
    samples them with ``torch.multinomial``). Inside this context each call's patch index is
    recorded, and as a ``to_grid`` it puts the image tokens back where their patches were.
    """

    def __init__(self, model: nn.Module) -> None:
        found = [m for m in model.modules() if hasattr(type(m), "visual_embed")]
        if not found:
            raise InputError(f"{type(model).__name__} has no ViLT patch embedding (visual_embed)")
        self.embeddings = found[0]
        self.index: torch.Tensor | None = None
        self.size: tuple[int, int] = (0, 0)

    def __enter__(self) -> Self:
        # An instance attribute shadows the method for this context only.
        self.embeddings.visual_embed = self._recorded
        return self

    def __exit__(self, *exc_info: object) -> None:
        del self.embeddings.visual_embed

    def _recorded(self, *args: Any, **kwargs: Any) -> Any:
        embeds, masks, (index, size) = type(self.embeddings).visual_embed(
            self.embeddings, *args, **kwargs
        )
        self.index, self.size = index, (int(size[0]), int(size[1]))
        return embeds, masks, (index, size)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L, C) tokens, image tokens last, -> (B, C, h, w) on the patch grid; B may be a
        multiple of the recorded batch (gradients of T targets per image, image-major)."""
        if tokens.dim() != 3:
            return TokenGrid()(tokens)
        if self.index is None:
            raise RuntimeError("no ViLT forward ran inside this context: no patch order to restore")
        h, w = self.size
        batch, count, channels = tokens.shape
        places = self.index[..., 0] * w + self.index[..., 1]
        places = places.repeat_interleave(batch // places.shape[0], dim=0)
        patches = tokens[:, count - places.shape[1] :]
        where = places.unsqueeze(-1).expand(-1, -1, channels)
        grid = tokens.new_zeros(batch, h * w, channels).scatter(1, where, patches)
        return grid.transpose(1, 2).reshape(batch, channels, h, w)


class ViltVQA(HFVisualQA):
    """``ViltForQuestionAnswering``: one transformer over question and patch tokens, a
    classifier over the answer list on the pooled first token."""

    def __init__(self, model: nn.Module, *args: Any, **kwargs: Any) -> None:
        labels = model.config.id2label
        self.answers = [labels[i] for i in range(len(labels))]
        self._index = {answer.lower(): i for i, answer in enumerate(self.answers)}
        super().__init__(model, *args, **kwargs)

    def default_layer(self) -> str:
        # The head reads the first token only, so the last block's output gets no gradient
        # on patch tokens; its input norm does.
        layer = last_module_named(self.model, "layernorm_before")
        if layer is None:
            raise InputError("the ViLT model has no layernorm_before; name the layer to explain")
        return layer

    def scores(
        self, inputs: torch.Tensor, questions: torch.Tensor, answers: Sequence[int]
    ) -> torch.Tensor:
        with torch.no_grad():
            logits = self.model(questions, self.attention_mask(questions), None, inputs).logits
        return logits[:, list(answers)]

    def to_probability(self, scores: torch.Tensor) -> torch.Tensor:
        # Trained with binary cross-entropy on soft answer scores: one sigmoid per answer.
        return scores.sigmoid()

    def answer_index(self, answer: str) -> int:
        wanted = " ".join(answer.lower().split())
        if wanted in self._index:
            return self._index[wanted]
        raise unanswerable(answer, wanted, list(self._index))

    def explain(
        self,
        inputs: torch.Tensor,
        questions: torch.Tensor,
        answers: Sequence[Sequence[int]],
        method: str = "gradcam",
        layer: str | None = None,
    ) -> Explanation:
        with ViltPatchOrder(self.model) as order:
            return explain(
                self.model,
                questions, self.attention_mask(questions), None, inputs,
                method=method,
                targets=[list(row) for row in answers],
                layer=layer or self.layer,
                to_grid=order,
                input_index=3,
            )


class BlipAnswerScorer(nn.Module):
    """``BlipForQuestionAnswering`` scored through its parts (its forward returns only a
    loss): (N, U) summed log-probs of U answer sequences for N image-question pairs.

    It holds the model's own vision_model, text_encoder and text_decoder under the same
    names, so layer names are the model's. Each question's states are repeated once per
    answer for the decoder; the vision encoder runs once per image.
    """

    def __init__(self, blip: nn.Module, sequences: torch.Tensor, mask: torch.Tensor) -> None:
        super().__init__()
        self.vision_model = blip.vision_model
        self.text_encoder = blip.text_encoder
        self.text_decoder = blip.text_decoder
        self.sequences = sequences
        self.mask = mask
        self.train(blip.training)

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        image = self.vision_model(pixel_values=pixel_values).last_hidden_state
        image_mask = torch.ones(image.shape[:-1], dtype=torch.long, device=image.device)
        question = self.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image,
            encoder_attention_mask=image_mask,
        ).last_hidden_state
        n, u = input_ids.shape[0], self.sequences.shape[0]
        logits = self.text_decoder(
            input_ids=self.sequences[:, :-1].repeat(n, 1),
            attention_mask=self.mask[:, :-1].repeat(n, 1),
            encoder_hidden_states=question.repeat_interleave(u, dim=0),
            encoder_attention_mask=attention_mask.repeat_interleave(u, dim=0),
        ).logits
        targets = self.sequences[:, 1:].repeat(n, 1)
        log_probs = logits.log_softmax(dim=-1).gather(-1, targets.unsqueeze(-1))[..., 0]
        return (log_probs * self.mask[:, 1:].repeat(n, 1)).sum(dim=-1).view(n, u)


class BlipVQA(HFVisualQA):
    """``BlipForQuestionAnswering``: a ViT image encoder, a text encoder reading the question
    against the image, and a decoder generating the answer from [DEC] (bos) to [SEP]."""

    max_new_tokens = 10

    def __init__(self, model: nn.Module, *args: Any, **kwargs: Any) -> None:
        self.answers = []
        super().__init__(model, *args, **kwargs)

    def default_layer(self) -> str:
        return last_block(self.model, ("vision_model.encoder.layers", "vision_model.encoder.layer"))

    def answer_index(self, answer: str) -> int:
        """Any answer whose words the tokenizer knows; new ones are appended to ``answers``."""
        words = split_words(answer, "answer")
        tokenize_words(self.tokenizer, words)
        return self._register(" ".join(words))

    def candidates(self, inputs: torch.Tensor, questions: torch.Tensor, top_k: int) -> list[int]:
        """The answers beam search of width ``top_k`` generates for any of the images."""
        text = self.model.config.text_config
        with torch.no_grad():
            generated = self.model.generate(
                input_ids=questions,
                pixel_values=inputs,
                attention_mask=self.attention_mask(questions),
                num_beams=max(top_k, 1),
                num_return_sequences=max(top_k, 1),
                do_sample=False,
                max_new_tokens=self.max_new_tokens,
            )
        found = []
        for row in generated.tolist():
            tokens = row[1:]
            if text.sep_token_id in tokens:
                tokens = tokens[: tokens.index(text.sep_token_id)]
            found.append(" ".join(self.tokenizer.decode(tokens, skip_special_tokens=True).split()))
        return list(dict.fromkeys(self._register(answer) for answer in found))

    def scores(
        self, inputs: torch.Tensor, questions: torch.Tensor, answers: Sequence[int]
    ) -> torch.Tensor:
        if not answers:
            return inputs.new_zeros(inputs.shape[0], 0)
        with torch.no_grad():
            return self._scorer(answers)(inputs, questions, self.attention_mask(questions))

    def to_probability(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.exp()

    def explain(
        self,
        inputs: torch.Tensor,
        questions: torch.Tensor,
        answers: Sequence[Sequence[int]],
        method: str = "gradcam",
        layer: str | None = None,
    ) -> Explanation:
        union = sorted({a for row in answers for a in row})
        column = {a: i for i, a in enumerate(union)}
        height, width = inputs.shape[-2:]
        explanation = explain(
            self._scorer(union),
            inputs, questions, self.attention_mask(questions),
            method=method,
            targets=[[column[a] for a in row] for row in answers],
            layer=layer or self.layer,
            to_grid=PatchGrid(patch_grids(self.model.config.vision_config, height, width)),
        )
        return replace(explanation, targets=[list(row) for row in answers])

    def _register(self, answer: str) -> int:
        if answer not in self.answers:
            self.answers.append(answer)
        return self.answers.index(answer)

    def _scorer(self, answers: Sequence[int]) -> BlipAnswerScorer:
        """A scorer for the answers at ``answers``: [DEC] answer tokens [SEP], right-padded."""
        text = self.model.config.text_config
        bad = [a for a in answers if not 0 <= a < len(self.answers)]
        if bad:
            raise InputError(f"answer index {bad[0]} is out of range; valid: 0..{len(self.answers) - 1}")
        rows = [
            [text.bos_token_id, *self.tokenizer(self.answers[a], add_special_tokens=False)["input_ids"],
             text.sep_token_id]
            for a in answers
        ]
        length = max(len(row) for row in rows)
        sequences = torch.full((len(rows), length), text.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        for i, row in enumerate(rows):
            sequences[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return BlipAnswerScorer(self.model, sequences.to(self.device), mask.to(self.device))
