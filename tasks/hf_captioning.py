"""Captioning adapters for Hugging Face models: VisionEncoderDecoder and BLIP (Sec. 8.1).

The same contract as ``vlx.tasks.captioning.Captioner``: the target for token t is
log p(token_t | image, tokens before t) under teacher forcing, so every token of a caption
shares one forward and the engine takes all their gradients in one batched backward. A word
sums the log-probs of the sub-word tokens it is made of (the log-prob of the whole word);
``group_words=False`` explains each token on its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from PIL import Image
from torch import nn

from vlx.errors import InputError
from vlx.explanation import Explanation
from vlx.methods import explain
from vlx.targets import logits_of
from vlx.tasks.captioning import WHOLE_CAPTION, WordLogProbs
from vlx.tasks.hf_grid import PatchGrid, last_block, patch_grids
from vlx.tasks.hf_text import TokenizedText, split_words, tokenize_tokens, tokenize_words


class GroupedLogProbs:
    """Callable target: model outputs -> (N, T), per target the summed scores of its tokens.

    ``groups[t]`` lists the token positions of target t: one word's sub-word tokens, or all
    tokens for the whole caption.
    """

    def __init__(
        self, token_ids: Sequence[int], groups: Sequence[Sequence[int]], score: str = "log-prob"
    ) -> None:
        self.per_token = WordLogProbs(token_ids, score=score)
        self.membership = torch.zeros(len(token_ids), len(groups))
        for t, group in enumerate(groups):
            self.membership[list(group), t] = 1.0

    def __call__(self, outputs: object) -> torch.Tensor:
        per_token = self.per_token(logits_of(outputs))
        return per_token @ self.membership.to(per_token)


class HFCaptioner(ABC):
    """A transformers captioning model with its processor, offering the ``Captioner`` API.

    Subclasses say which encoder holds the patch tokens, which token starts and ends a
    caption, and under which keyword the decoder reads its tokens.
    """

    block_lists: tuple[str, ...] = ()
    token_argument = "input_ids"

    def __init__(
        self,
        model: nn.Module,
        image_processor: Any,
        tokenizer: Any,
        device: str | torch.device = "cpu",
        layer: str | None = None,
        group_words: bool = True,
        max_new_tokens: int = 30,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.layer = layer or last_block(self.model, self.block_lists)
        self.group_words = group_words
        self.max_new_tokens = max_new_tokens

    @property
    @abstractmethod
    def start_id(self) -> int:
        """The token the decoder starts from."""

    @property
    @abstractmethod
    def end_ids(self) -> set[int]:
        """Tokens that end a caption."""

    @property
    @abstractmethod
    def vision_config(self) -> Any:
        """The config of the encoder whose patch tokens are explained."""

    @property
    @abstractmethod
    def text_config(self) -> Any:
        """The config of the decoder."""

    def prepare(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(N, 3, H, W) pixel values, sized as the model's own processor sizes them."""
        batch = self.image_processor(images=list(images), return_tensors="pt")
        return batch["pixel_values"].to(self.device)

    def caption(self, inputs: torch.Tensor, beam: int = 0) -> list[list[str]]:
        """Greedy captions, or beam search of width ``beam`` when it is above 1, as units."""
        with torch.no_grad():
            generated = self.model.generate(
                inputs, num_beams=max(beam, 1), do_sample=False, max_new_tokens=self.max_new_tokens
            )
        captions = []
        for row in generated.tolist():
            tokens = row[1:]  # after the start token
            ends = [t for t, token in enumerate(tokens) if token in self.end_ids]
            tokens = tokens[: ends[0]] if ends else tokens
            if self.group_words:
                captions.append(self.tokenizer.decode(tokens, skip_special_tokens=True).split())
            else:
                specials = set(self.tokenizer.all_special_ids)
                kept = [t for t in tokens if t not in specials]
                captions.append(self.tokenizer.convert_ids_to_tokens(kept))
        return captions

    def words(self, caption: str | Sequence[str]) -> list[str]:
        """Validated units of a caption (words, or tokens when not grouping); a word the
        tokenizer reads as unknown is an error naming the closest known words."""
        return self._tokenize(caption).units

    def explain(
        self,
        inputs: torch.Tensor,
        words: str | Sequence[str],
        method: str = "gradcam",
        whole_caption: bool = False,
        layer: str | None = None,
        positions: Sequence[int] | None = None,
        score: str = "log-prob",
    ) -> Explanation:
        """Maps for the units at ``positions`` (default: all) of one caption, the same for all
        N images, plus the whole-caption map last when ``whole_caption``."""
        tokenized = self._tokenize(words)
        units = tokenized.units
        chosen = list(range(len(units))) if positions is None else list(positions)
        bad = [p for p in chosen if not 0 <= p < len(units)]
        if bad:
            raise InputError(f"word position {bad[0]} is out of range; valid: 0..{len(units) - 1}")
        longest = self.text_config.max_position_embeddings - 1
        if len(tokenized.ids) > longest:
            raise InputError(
                f"the caption has {len(tokenized.ids)} tokens; the decoder reads at most {longest}"
            )
        groups = [tokenized.groups[p] for p in chosen]
        if whole_caption:
            groups.append(list(range(len(tokenized.ids))))
        n = inputs.shape[0]
        fed = torch.tensor([self.start_id, *tokenized.ids], device=self.device).expand(n, -1)
        height, width = inputs.shape[-2:]
        explanation = explain(
            self.model,
            inputs,
            method=method,
            targets=GroupedLogProbs(tokenized.ids, groups, score),
            layer=layer or self.layer,
            to_grid=PatchGrid(patch_grids(self.vision_config, height, width)),
            model_kwargs={self.token_argument: fed},
        )
        labels = [units[p] for p in chosen] + ([WHOLE_CAPTION] if whole_caption else [])
        return replace(explanation, targets=[labels] * n)

    def _tokenize(self, caption: str | Sequence[str]) -> TokenizedText:
        if self.group_words:
            return tokenize_words(self.tokenizer, split_words(caption))
        return tokenize_tokens(self.tokenizer, caption)


class VisionEncoderDecoderCaptioner(HFCaptioner):
    """``VisionEncoderDecoderModel``: a ViT-like or Swin encoder and any causal LM decoder
    (GPT-2, BERT, ...) reading the encoder's tokens by cross-attention."""

    # The last encoder block: the decoder cross-attends to every patch token it outputs.
    block_lists = ("encoder.layers", "encoder.encoder.layer", "encoder.encoder.layers")
    token_argument = "decoder_input_ids"

    @property
    def start_id(self) -> int:
        start = self.model.config.decoder_start_token_id
        if start is None:
            raise InputError("the model's config has no decoder_start_token_id; set it and save")
        return start

    @property
    def end_ids(self) -> set[int]:
        end = self.model.generation_config.eos_token_id
        if end is None:
            end = self.tokenizer.eos_token_id
        if end is None:
            end = self.tokenizer.sep_token_id
        return set(end) if isinstance(end, list) else {end}

    @property
    def vision_config(self) -> Any:
        return self.model.config.encoder

    @property
    def text_config(self) -> Any:
        return self.model.config.decoder


class BlipCaptioner(HFCaptioner):
    """``BlipForConditionalGeneration``: a ViT image encoder and a BERT-style decoder that
    starts from the [DEC] (bos) token and ends at [SEP]."""

    block_lists = ("vision_model.encoder.layers", "vision_model.encoder.layer")
    token_argument = "input_ids"

    @property
    def start_id(self) -> int:
        return self.model.config.text_config.bos_token_id

    @property
    def end_ids(self) -> set[int]:
        return {self.model.config.text_config.sep_token_id}

    @property
    def vision_config(self) -> Any:
        return self.model.config.vision_config

    @property
    def text_config(self) -> Any:
        return self.model.config.text_config
