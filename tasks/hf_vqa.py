"""VQA adapters for Hugging Face models: ViLT and BLIP (Sec. 8.2).

The VQA contract of ``vlx.tasks.vqa``: every answer of one request is a target of one forward
and one batched backward. ViLT classifies over a fixed answer list, so an answer's target is
its pre-sigmoid logit. BLIP generates its answer, so an answer's target is the sum of its
tokens' log-probs, end token included (the log-probability of exactly that answer); any
answer whose words the tokenizer knows can be asked about, and a request's answers are
numbered within that request alone.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Self

import torch
from PIL import Image
from torch import nn

from vlx.errors import InputError
from vlx.layers import TokenGrid, last_module_named
from vlx.targets import gather_targets
from vlx.task import Batch, LayerSubject, Prediction, Problem, Requested, Target, TargetSet
from vlx.task import broadcast as broadcast_targets
from vlx.tasks.hf_grid import PatchGrid, check_vision_layer, last_block, patch_grids
from vlx.tasks.hf_text import group_tokens, split_words, tokenize_words, unknown_units
from vlx.tasks.vqa import CANDIDATES, FixedAnswers, QuestionAnswering, ranked_answers


class HFQuestions:
    """What the transformers VQA models share: the processor's pixels, and questions as
    (N, L) token ids with the tokenizer's special tokens, right-padded with its pad token."""

    def __init__(
        self, model: nn.Module, image_processor: Any, tokenizer: Any,
        device: str | torch.device = "cpu", name: str = "hf",
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.image_processor, self.tokenizer, self.name = image_processor, tokenizer, name

    def images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(N, 3, H, W) pixel values, sized as the model's own processor sizes them."""
        batch = self.image_processor(images=list(images), return_tensors="pt")
        mask = batch.get("pixel_mask")
        if mask is not None and not bool(mask.all()):
            raise InputError(
                "the images have different sizes after resizing and would be padded; "
                "explain them one at a time"
            )
        return batch["pixel_values"].to(self.device)

    def encode(self, questions: Sequence[str]) -> torch.Tensor:
        for question in questions:
            words = split_words(question, "question")
            if len(self.unknown_words(question)) == len(words):
                raise InputError(f"no word of {question!r} is known to the model's tokenizer")
        config = getattr(self.model.config, "text_config", self.model.config)
        limit = min(self.tokenizer.model_max_length, config.max_position_embeddings)
        encoded = self.tokenizer(list(questions), truncation=True, max_length=limit,
                                 padding=True, return_tensors="pt")
        return encoded["input_ids"].to(self.device)

    def unknown_words(self, question: str) -> list[str]:
        """Words of ``question`` with a token the tokenizer reads as unknown."""
        if not question.strip():
            return []
        return unknown_units(self.tokenizer, group_tokens(self.tokenizer, question.split()))

    def attention_mask(self, questions: torch.Tensor) -> torch.Tensor:
        """1 for question tokens, 0 for padding."""
        pad = self.tokenizer.pad_token_id
        return (questions != pad).long() if pad is not None else torch.ones_like(questions)


_patch_orders: dict[int, int] = {}
_patch_lock = threading.Lock()
_recording = threading.local()


class ViltPatchOrder:
    """ViLT embeds its patch tokens in a new random order on every call (``visual_embed``
    samples them with ``torch.multinomial``). Inside this context each call's patch index is
    recorded, and as a ``to_grid`` it puts the image tokens back where their patches were.

    Threads may each hold a context on one shared model: the recording wrapper is installed
    while any context is open, and each call is recorded by the context of its own thread.
    """

    def __init__(self, model: nn.Module) -> None:
        found = [m for m in model.modules() if hasattr(type(m), "visual_embed")]
        if not found:
            raise InputError(f"{type(model).__name__} has no ViLT patch embedding (visual_embed)")
        self.embeddings = found[0]
        self.index: torch.Tensor | None = None
        self.size: tuple[int, int] = (0, 0)

    def __enter__(self) -> Self:
        key = id(self.embeddings)
        with _patch_lock:
            if not _patch_orders.get(key):
                embeddings = self.embeddings
                # An instance attribute shadows the method while any context is open.
                embeddings.visual_embed = lambda *a, **k: _recorded(embeddings, *a, **k)
            _patch_orders[key] = _patch_orders.get(key, 0) + 1
        stack = getattr(_recording, "stack", [])
        _recording.stack = [*stack, self]
        return self

    def __exit__(self, *exc_info: object) -> None:
        _recording.stack = [order for order in _recording.stack if order is not self]
        key = id(self.embeddings)
        with _patch_lock:
            _patch_orders[key] -= 1
            if not _patch_orders[key]:
                del _patch_orders[key]
                del self.embeddings.visual_embed

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


def _recorded(embeddings: nn.Module, *args: Any, **kwargs: Any) -> Any:
    embeds, masks, (index, size) = type(embeddings).visual_embed(embeddings, *args, **kwargs)
    for order in reversed(getattr(_recording, "stack", [])):
        if order.embeddings is embeddings:
            order.index, order.size = index, (int(size[0]), int(size[1]))
            break
    return embeds, masks, (index, size)


class ViltVQA(HFQuestions, FixedAnswers):
    """``ViltForQuestionAnswering``: one transformer over question and patch tokens, a
    classifier over the answer list on the pooled first token."""

    vision_prefixes = ("vilt.encoder.layer.", "vilt.embeddings.patch_embeddings")

    def __init__(
        self, model: nn.Module, image_processor: Any, tokenizer: Any,
        device: str | torch.device = "cpu", layer: str | None = None, name: str = "hf",
    ) -> None:
        super().__init__(model, image_processor, tokenizer, device, name)
        labels = model.config.id2label
        self.answers = [labels[i] for i in range(len(labels))]
        self.layer = layer or self.default_layer()

    def default_layer(self) -> str:
        # The head reads the first token only, so the last block's output gets no gradient
        # on patch tokens; its input norm does.
        layer = last_module_named(self.model, "layernorm_before")
        if layer is None:
            raise InputError("the ViLT model has no layernorm_before; name the layer to explain")
        return layer

    def forward(self, batch: Batch) -> Problem:
        questions = batch.state["questions"]
        order = ViltPatchOrder(self.model)
        return Problem(
            self.model, (questions, self.attention_mask(questions), None, batch.inputs),
            score=None, probability=None, input_index=3, to_grid=order, context=lambda: order,
        )

    def to_probability(self, logits: torch.Tensor) -> torch.Tensor:
        # Trained with binary cross-entropy on soft answer scores: one sigmoid per answer.
        return logits.sigmoid()

    def check_layer(self, layer: str | None) -> None:
        super().check_layer(layer)
        check_vision_layer(self.model, layer, self.vision_prefixes, ("vilt.encoder.layer",))

    def dissection_subject(self, layer: str | None = None) -> LayerSubject:
        """ViLT reads image and question in one transformer: its probe images go with an
        empty question."""
        order = ViltPatchOrder(self.model)
        empty = self.tokenizer("", return_tensors="pt")["input_ids"].to(self.device)

        def forward(pixels: torch.Tensor) -> object:
            questions = empty.expand(pixels.shape[0], -1)
            with order:
                return self.model(questions, self.attention_mask(questions), None, pixels)

        return LayerSubject(self.model, layer or self.layer, self.images, self.name,
                            forward=forward, to_grid=order)


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


class BlipVQA(HFQuestions, QuestionAnswering):
    """``BlipForQuestionAnswering``: a ViT image encoder, a text encoder reading the question
    against the image, and a decoder generating the answer from [DEC] (bos) to [SEP].

    Predictions come from beam search that ranks by the same score an answer is explained by
    (the summed log-prob, no length normalisation), and are reported by it.
    """

    max_new_tokens = 10
    block_lists = ("vision_model.encoder.layers", "vision_model.encoder.layer")
    vision_prefixes = ("vision_model.",)

    def __init__(
        self, model: nn.Module, image_processor: Any, tokenizer: Any,
        device: str | torch.device = "cpu", layer: str | None = None, name: str = "hf",
    ) -> None:
        super().__init__(model, image_processor, tokenizer, device, name)
        self.layer = layer or last_block(self.model, self.block_lists)

    def answer_text(self, answer: str) -> str:
        """An answer whose words the tokenizer knows, in one spacing."""
        words = split_words(answer, "answer")
        tokenize_words(self.tokenizer, words)
        return " ".join(words)

    def generated(self, batch: Batch, count: int) -> list[list[str]]:
        """Per example, the candidate answers: the greedy one and those beam search of width
        ``count`` keeps (beam search can lose the greedy path; both rank by summed log-prob)."""
        per_search = [self._search(batch, 1), self._search(batch, count)]
        return [list(dict.fromkeys(greedy + beams)) for greedy, beams in zip(*per_search)]

    def _search(self, batch: Batch, width: int) -> list[list[str]]:
        questions = batch.state["questions"]
        with torch.no_grad():
            generated = self.model.generate(
                input_ids=questions,
                pixel_values=batch.inputs,
                attention_mask=self.attention_mask(questions),
                num_beams=width,
                num_return_sequences=width,
                do_sample=False,
                length_penalty=0.0,
                max_new_tokens=self.max_new_tokens,
            )
        sep = self.model.config.text_config.sep_token_id
        texts = []
        for row in generated.tolist():
            tokens = row[1:]
            if sep in tokens:
                tokens = tokens[: tokens.index(sep)]
            texts.append(" ".join(self.tokenizer.decode(tokens, skip_special_tokens=True).split()))
        return [texts[n * width : (n + 1) * width] for n in range(len(batch))]

    def scores(self, batch: Batch, answers: Sequence[str]) -> torch.Tensor:
        """(N, U) the summed log-prob of each answer for each example, without gradients."""
        questions = batch.state["questions"]
        with torch.no_grad():
            return self._scorer(answers)(batch.inputs, questions, self.attention_mask(questions))

    def predict(self, batch: Batch, top_k: int = 3) -> list[list[Prediction]]:
        return ranked_answers(self, batch, self.generated(batch, max(top_k, CANDIDATES)), top_k)

    def targets(self, batch: Batch, requested: Requested = None) -> TargetSet:
        rows = broadcast_targets(requested, len(batch))
        if rows is None:
            rows = [[p[0].name] for p in self.predict(batch, 1)]
        texts = [[self.answer_text(str(answer)) for answer in row] for row in rows]
        union = list(dict.fromkeys(text for row in texts for text in row))
        return TargetSet([[Target(union.index(t), t) for t in row] for row in texts],
                         context=[union] * len(batch))

    def problem(self, batch: Batch, targets: TargetSet, layer: str | None = None) -> Problem:
        union = targets.context[0]
        questions = batch.state["questions"]
        height, width = batch.inputs.shape[-2:]
        ids = torch.tensor(targets.padded(), device=self.device)
        return Problem(
            self._scorer(union),
            (batch.inputs, questions, self.attention_mask(questions)),
            score=targets.padded(),
            probability=lambda log_probs: gather_targets(log_probs, ids).exp(),
            to_grid=PatchGrid(patch_grids(self.model.config.vision_config, height, width)),
        )

    def check_layer(self, layer: str | None) -> None:
        super().check_layer(layer)
        check_vision_layer(self.model, layer, self.vision_prefixes, self.block_lists)

    def dissection_subject(self, layer: str | None = None) -> LayerSubject:
        size = self.images([Image.new("RGB", (64, 64))]).shape[-2:]
        grid = PatchGrid(patch_grids(self.model.config.vision_config, *size))
        return LayerSubject(
            self.model, layer or self.layer, self.images, self.name,
            forward=lambda pixels: self.model.vision_model(pixel_values=pixels), to_grid=grid,
        )

    def _scorer(self, answers: Sequence[str]) -> BlipAnswerScorer:
        """A scorer for ``answers``: [DEC] answer tokens [SEP], right-padded."""
        text = self.model.config.text_config
        rows = [
            [text.bos_token_id, *self.tokenizer(a, add_special_tokens=False)["input_ids"],
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
