"""Captioning adapters for Hugging Face models: VisionEncoderDecoder and BLIP (Sec. 8.1).

The captioning contract of ``vlx.tasks.captioning``: the target for token t is
log p(token_t | image, tokens before t) under teacher forcing, so every token of a caption
shares one forward and the engine takes all their gradients in one batched backward. A word
sums the log-probs of the sub-word tokens it is made of (the log-prob of the whole word);
``group_words=False`` explains each token on its own. A generated caption is explained on the
token ids that were generated.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torch import nn

from vlx.errors import InputError
from vlx.images import to_rgb
from vlx.task import Batch, LayerSubject, Problem
from vlx.tasks.captioning import Captioning, TokenizedText
from vlx.tasks.hf_grid import PatchGrid, check_vision_layer, last_block, patch_grids
from vlx.tasks.hf_text import group_ids, split_words, tokenize_tokens, tokenize_words


class HFCaptioner(Captioning):
    """A transformers captioning model with its processor.

    Subclasses say which encoder holds the patch tokens, which token starts and ends a
    caption, and under which keyword the decoder reads its tokens.
    """

    block_lists: tuple[str, ...] = ()
    vision_prefixes: tuple[str, ...] = ()
    """Module paths whose outputs hold the image's patch tokens: the layers that can be
    explained."""
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
        name: str = "hf",
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.layer = layer or last_block(self.model, self.block_lists)
        self.group_words = group_words
        self.max_new_tokens = max_new_tokens
        self.name = name

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

    @abstractmethod
    def vision_forward(self, pixels: torch.Tensor) -> Any:
        """The vision encoder alone on pixel values (dissection reads its layers so)."""

    @property
    def longest(self) -> int:
        return self.text_config.max_position_embeddings - 1

    def images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(N, 3, H, W) pixel values, sized as the model's own processor sizes them."""
        batch = self.image_processor(images=[to_rgb(i) for i in images], return_tensors="pt")
        return batch["pixel_values"].to(self.device)

    def generate(self, batch: Batch) -> list[TokenizedText]:
        """Greedy captions, or beam search of width ``beam``, on the ids generated."""
        with torch.no_grad():
            generated = self.model.generate(
                batch.inputs, num_beams=max(self.beam, 1), do_sample=False,
                max_new_tokens=self.max_new_tokens,
            )
        captions = []
        for row in generated.tolist():
            tokens = row[1:]  # after the start token
            ends = [t for t, token in enumerate(tokens) if token in self.end_ids]
            captions.append(group_ids(self.tokenizer, tokens[: ends[0]] if ends else tokens,
                                      words=self.group_words))
        return captions

    def tokenize(self, caption: str | Sequence[str]) -> TokenizedText:
        if self.group_words:
            return tokenize_words(self.tokenizer, split_words(caption))
        return tokenize_tokens(self.tokenizer, caption)

    def teacher_forced(self, batch: Batch, ids: torch.Tensor) -> Problem:
        start = torch.full((ids.shape[0], 1), self.start_id, device=self.device)
        height, width = batch.inputs.shape[-2:]
        return Problem(
            self.model, (batch.inputs,), score=None, probability=None,
            model_kwargs={self.token_argument: torch.cat([start, ids], dim=1)},
            to_grid=PatchGrid(patch_grids(self.vision_config, height, width)),
        )

    def check_layer(self, layer: str | None) -> None:
        super().check_layer(layer)
        check_vision_layer(self.model, layer, self.vision_prefixes, self.block_lists)

    def dissection_subject(self, layer: str | None = None) -> LayerSubject:
        """The explained layer read through the vision encoder alone; the grid is the one
        the processor's input size gives."""
        size = self.images([Image.new("RGB", (64, 64))]).shape[-2:]
        return LayerSubject(self.model, layer or self.layer, self.images, self.name,
                            forward=self.vision_forward,
                            to_grid=PatchGrid(patch_grids(self.vision_config, *size)))


class VisionEncoderDecoderCaptioner(HFCaptioner):
    """``VisionEncoderDecoderModel``: a ViT-like or Swin encoder and any causal LM decoder
    (GPT-2, BERT, ...) reading the encoder's tokens by cross-attention."""

    # The last encoder block: the decoder cross-attends to every patch token it outputs.
    block_lists = ("encoder.layers", "encoder.encoder.layer", "encoder.encoder.layers")
    vision_prefixes = ("encoder.",)
    token_argument = "decoder_input_ids"

    def vision_forward(self, pixels: torch.Tensor) -> Any:
        return self.model.encoder(pixel_values=pixels)

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
    vision_prefixes = ("vision_model.",)
    token_argument = "input_ids"

    def vision_forward(self, pixels: torch.Tensor) -> Any:
        return self.model.vision_model(pixel_values=pixels)

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
