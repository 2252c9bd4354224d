"""Generative vision-language models: why did LLaVA, Qwen2-VL, PaliGemma or Idefics3 say this.

Each example is one prompt (the image with a question, or "Describe the image.") made by the
model's own processor and chat template. A target is a log-probability under teacher forcing,
given the image, the prompt and the tokens before it: a word of a generated answer or caption
(its sub-word tokens summed, as the other HF captioners do), or a whole forced answer (its
tokens and the end of the turn, as BLIP's answers are scored). The image is encoded once per
example and its features are handed to the language model for every scored sequence
(``mm_encoder_outputs``), so all words of an output, or K answers of any lengths, cost one
forward and one batched backward. The families differ in how they cut images into views and
which processor outputs the vision tower reads; ``FAMILIES`` says so for each.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from PIL import Image
from torch import nn

from vlx.errors import InputError
from vlx.explanation import Explanation
from vlx.images import to_rgb
from vlx.task import Batch, Example, LayerSubject, Prediction, Problem, Requested, Target, TargetSet
from vlx.task import broadcast as broadcast_targets
from vlx.tasks.captioning import Captioning, TokenizedText
from vlx.tasks.hf_grid import check_vision_layer
from vlx.tasks.hf_text import group_ids, split_words, tokenize_tokens, tokenize_words
from vlx.tasks.hf_vlm_layouts import WHOLE, View, ViewCanvas, cropped_box, tile_boxes
from vlx.tasks.vqa import CANDIDATES, QuestionAnswering, ranked_answers

DESCRIBE = "Describe the image."
PIXEL_METHODS = ("guided-backprop", "deconvolution", "guided-gradcam", "occlusion", "scorecam",
                 "ablationcam")
"""Methods that edit or differentiate the input pixels: a VLM's are its processor's views
(tiles, patch rows), not the image, so only the layer methods explain these models."""
TEXT_KEYS = ("input_ids", "attention_mask", "labels")
TYPE_KEYS = {"token_type_ids": 1, "mm_token_type_ids": 0}
"""Per-token types some models read with the prompt (PaliGemma's prefix / suffix, Qwen2-VL's
image tokens for its 3-D positions), and the type of an answer's or caption's tokens."""


@dataclass(frozen=True)
class Family:
    """What differs between the generative VLM families.

    Attributes:
        tower: the vision tower's module path: its layers (and the projector's) can be
            explained, the language model's hold no image grid.
        blocks: module paths of the vision tower's block list (tried in order).
        projector: the module whose output is the image tokens as the language model sees them.
        layouts: (processor, vision config, images, processor outputs) -> each image's
            views.
        window: Qwen2-VL's patches run in merge windows of this side (1: row-major).
        nested: the processor takes one list of images per prompt.
        per_sequence: processor outputs the language model reads again for every sequence
            (Qwen2-VL's grid, for its 3-D rotary positions).
        orders: (vision config, an image's grid) -> the processor's merge window each of the
            tower's windows of rows holds (Qwen2.5-VL attends within windows, and reorders).
    """

    tower: str
    blocks: tuple[str, ...]
    projector: str
    layouts: Callable[[Any, list[Image.Image], dict], list[list[View]]]
    window: int = 1
    nested: bool = False
    per_sequence: tuple[str, ...] = ()
    orders: Callable[[Any, torch.Tensor], torch.Tensor] | None = None


def _fixed_views(processor: Any, vision: Any, images: list[Image.Image], encoded: dict
                 ) -> list[list[View]]:
    """One grid per image: the processor's square, or CLIP's centre crop of the resized image."""
    config = processor.image_processor
    side = vision.image_size // vision.patch_size
    views = []
    for image in images:
        size, crop = _size(config.size), _size(getattr(config, "crop_size", None))
        box = WHOLE
        if getattr(config, "do_center_crop", False) and size.get("shortest_edge") and crop:
            box = cropped_box(image.height, image.width, size["shortest_edge"],
                              (crop["height"], crop["width"]))
        views.append([View((side, side), box)])
    return views


def _anyres_views(processor: Any, vision: Any, images: list[Image.Image], encoded: dict
                  ) -> list[list[View]]:
    """LLaVA-NeXT: the base image (the whole, squashed to the tile) and the tiles of the
    resolution it picks, the image centred in it with padding around."""
    from transformers.image_processing_utils import select_best_resolution

    config = processor.image_processor
    tile = _size(config.crop_size).get("height") or _size(config.size)["shortest_edge"]
    side = tile // vision.patch_size
    layouts = []
    for image in images:
        frame = select_best_resolution((image.height, image.width), config.image_grid_pinpoints)
        scale = min(frame[0] / image.height, frame[1] / image.width)
        height = min(math.ceil(image.height * scale), frame[0])
        width = min(math.ceil(image.width * scale), frame[1])
        placed = ((frame[0] - height) // 2, (frame[1] - width) // 2, height, width)
        tiles = [View((side, side), box) for box in tile_boxes(frame, placed, tile)]
        layouts.append([View((side, side)), *tiles])
    return layouts


def _split_views(processor: Any, vision: Any, images: list[Image.Image], encoded: dict
                 ) -> list[list[View]]:
    """Idefics3 / SmolVLM: the tiles of the image resized to whole tiles, row by row, then the
    whole image squashed to one tile (an image of one tile is that tile alone)."""
    config = processor.image_processor
    side = config.max_image_size["longest_edge"] // vision.patch_size
    info = config(images=[[to_rgb(i)] for i in images], return_row_col_info=True,
                  return_tensors="pt")
    layouts = []
    for rows, cols in zip(info["rows"], info["cols"]):
        rows, cols = int(rows[0]), int(cols[0])
        tiles = [View((side, side), (r / rows, c / cols, (r + 1) / rows, (c + 1) / cols))
                 for r in range(rows) for c in range(cols)]
        layouts.append([*tiles, View((side, side))])
    return layouts


def _dynamic_views(processor: Any, vision: Any, images: list[Image.Image], encoded: dict
                   ) -> list[list[View]]:
    """Qwen2-VL: one grid per image, of the size its resized image gives."""
    return [[View((int(h), int(w)))] for _, h, w in encoded["image_grid_thw"].tolist()]


def _window_order(vision: Any, grid: torch.Tensor) -> torch.Tensor:
    """Qwen2.5-VL's order of one image's merge windows in its vision blocks (the model's own
    index, from transformers)."""
    from transformers.vision_utils import get_vision_window_index

    order, _ = get_vision_window_index(grid[None], vision.spatial_merge_size,
                                       vision.window_size, vision.patch_size)
    return order


_TOWER = "model.vision_tower"
_TOWER_BLOCKS = (f"{_TOWER}.vision_model.encoder.layers", f"{_TOWER}.encoder.layers")
_PROJECTOR = "model.multi_modal_projector"
FAMILIES = {
    "LlavaForConditionalGeneration": Family(_TOWER, _TOWER_BLOCKS, _PROJECTOR, _fixed_views),
    "LlavaNextForConditionalGeneration": Family(_TOWER, _TOWER_BLOCKS, _PROJECTOR,
                                                _anyres_views),
    "PaliGemmaForConditionalGeneration": Family(_TOWER, _TOWER_BLOCKS, _PROJECTOR,
                                                _fixed_views),
    "Idefics3ForConditionalGeneration": Family("model.vision_model",
                                               ("model.vision_model.encoder.layers",),
                                               "model.connector", _split_views, nested=True),
    "Qwen2VLForConditionalGeneration": Family("model.visual", ("model.visual.blocks",),
                                              "model.visual.merger", _dynamic_views, window=2,
                                              per_sequence=("image_grid_thw",)),
    "Qwen2_5_VLForConditionalGeneration": Family(
        "model.visual", ("model.visual.blocks",), "model.visual.merger", _dynamic_views,
        window=2, per_sequence=("image_grid_thw",), orders=_window_order),
}


def _size(size: Any) -> dict:
    return dict(size) if size else {}


class ChatVLM:
    """A generative VLM with its processor: prompts, generation and teacher-forced scores."""

    def __init__(self, model: nn.Module, processor: Any, device: str | torch.device = "cpu",
                 layer: str | None = None, max_new_tokens: int = 20) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.family = FAMILIES[type(model).__name__]
        self.max_new_tokens = max_new_tokens
        self.layer = layer or self.default_layer()

    def default_layer(self) -> str:
        """The vision tower's last block whose output reaches the language model (LLaVA
        reads the penultimate block's tokens, so its last block gets no gradient)."""
        blocks = self.block_names()
        feature = getattr(self.model.config, "vision_feature_layer", -1)
        feature = feature if isinstance(feature, int) else max(feature)
        index = feature - 1 if feature > 0 else len(blocks) + feature
        return blocks[index]

    def block_names(self) -> list[str]:
        for path in self.family.blocks:
            try:
                blocks = self.model.get_submodule(path)
            except AttributeError:
                continue
            return [f"{path}.{i}" for i in range(len(blocks))]
        raise InputError(f"{type(self.model).__name__} has none of the vision block lists "
                         f"{', '.join(self.family.blocks)}; name the layer to explain")

    def check_method(self, method: str) -> None:
        if method in PIXEL_METHODS:
            from vlx.methods import METHODS

            layer_methods = [m for m in METHODS if m not in PIXEL_METHODS]
            raise InputError(
                f"method {method!r} works on the input pixels, which a generative VLM's "
                f"processor cuts into views; use a layer method: {', '.join(layer_methods)}")

    def check_layer(self, layer: str | None) -> None:
        """Layers of the vision tower or the projector hold the image's grid."""
        check_vision_layer(self.model, layer, (f"{self.family.tower}.", self.family.projector),
                           self.family.blocks)

    def prompt(self, text: str) -> str:
        """The model's own prompt for an image and ``text``: its chat template where it has
        one (a user turn, then the assistant's), else PaliGemma's task prefixes ("caption en",
        "answer en QUESTION") after the image."""
        if getattr(self.processor, "chat_template", None):
            turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
            return self.processor.apply_chat_template(turn, add_generation_prompt=True)
        task = "caption en" if text == DESCRIBE else f"answer en {text}"
        return f"{self.processor.image_token}{task}"

    def prepare(self, examples: Sequence[Example], texts: Sequence[str]) -> Batch:
        """The examples with one prompt each: the vision inputs (one row per example) and
        each prompt's token ids."""
        images = [to_rgb(e.image) for e in examples]
        encoded = self.processor(
            images=[[i] for i in images] if self.family.nested else images,
            text=[self.prompt(t) for t in texts], padding=True, return_tensors="pt",
        )
        mask = encoded["attention_mask"].bool()
        prompts = [ids[keep].tolist() for ids, keep in zip(encoded["input_ids"], mask)]
        types = [{k: encoded[k][n][mask[n]].tolist() for k in TYPE_KEYS if k in encoded}
                 for n in range(len(examples))]
        vision = {k: v for k, v in encoded.items() if k not in (*TEXT_KEYS, *TYPE_KEYS)}
        pixels = vision.pop("pixel_values")
        if "image_grid_thw" in vision:  # Qwen2-VL: every image's patches in one run of rows
            pixels = torch.nn.utils.rnn.pad_sequence(
                list(pixels.split(vision["image_grid_thw"].prod(-1).tolist())), batch_first=True)
        views = self.family.layouts(self.processor, self.model.config.vision_config, images,
                                    encoded)
        state = {**{k: torch.as_tensor(v) for k, v in vision.items()}, "prompts": prompts,
                 "types": types, "views": views}
        if self.family.orders is not None:
            vision_config = self.model.config.vision_config
            state["orders"] = [self.family.orders(vision_config, grid)
                               for grid in vision["image_grid_thw"]]
        return Batch(list(examples), pixels, state).to(self.device)

    def vision_inputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """What the model's vision tower reads for the batch, as its processor made it."""
        names = [k for k, v in batch.state.items() if isinstance(v, torch.Tensor)]
        inputs = {k: batch.state[k] for k in names}
        pixels = batch.inputs
        if "image_grid_thw" in inputs:
            counts = inputs["image_grid_thw"].prod(-1).tolist()
            pixels = torch.cat([row[:count] for row, count in zip(pixels, counts)])
        return {"pixel_values": pixels, **inputs}

    def generate(self, batch: Batch, beams: int = 1, count: int = 1) -> list[list[list[int]]]:
        """Per example, ``count`` outputs of greedy decoding (or beam search of ``beams``),
        as token ids up to the end of the turn."""
        prompts = batch.state["prompts"]
        ids, mask = _padded(prompts, self.tokenizer.pad_token_id or 0, left=True)
        types = {k: _padded([t[k] for t in batch.state["types"]], 0, left=True)[0]
                 for k in batch.state["types"][0]}
        beam = {"num_beams": beams, "length_penalty": 0.0} if beams > 1 else {}
        with torch.no_grad():
            generated = self.model.generate(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                **{k: v.to(self.device) for k, v in types.items()}, **self.vision_inputs(batch),
                max_new_tokens=self.max_new_tokens, do_sample=False,
                num_return_sequences=count, **beam,
            )
        ends = self.end_ids
        outputs = []
        for row in generated[:, ids.shape[1]:].tolist():
            stop = next((k for k, token in enumerate(row) if token in ends), len(row))
            outputs.append(row[:stop])
        return [outputs[n * count : (n + 1) * count] for n in range(len(batch))]

    @property
    def end_ids(self) -> set[int]:
        """Tokens that end the model's turn: the generation config's, and the tokenizer's."""
        found = self.model.generation_config.eos_token_id
        found = found if isinstance(found, list) else [found]
        return {int(t) for t in [*found, self.tokenizer.eos_token_id] if t is not None}

    @property
    def end_id(self) -> int:
        """The token a forced answer ends with: the end of the turn, as the model generates."""
        found = self.model.generation_config.eos_token_id
        found = found[0] if isinstance(found, list) else found
        return int(found if found is not None else self.tokenizer.eos_token_id)

    def problem(self, batch: Batch, continuations: Sequence[Sequence[Sequence[int]]],
                score: Any = None, probability: Any = None) -> Problem:
        """The forward scoring every example's continuations after its prompt."""
        vision = self.vision_inputs(batch)
        pixels = vision.pop("pixel_values")
        return Problem(SequenceScorer(self, batch, continuations), (pixels,), score=score,
                       probability=probability, model_kwargs=vision,
                       to_grid=self.canvas(batch))

    def canvas(self, batch: Batch) -> ViewCanvas:
        """The batch's layer tokens put back on each example's image."""
        return ViewCanvas(batch.state["views"], self.family.window, batch.state.get("orders"))

    def dissection_subject(self, layer: str | None, name: str) -> LayerSubject:
        """The layer read through the vision tower alone, probe images squashed to one
        square so that every probe has the same views."""
        side = _probe_side(self.processor.image_processor)
        grid = ViewCanvas([], self.family.window)  # each probe batch's views, as it comes
        prepared: list[Batch] = []  # the probe batch being read: its other vision inputs

        def prepare(images: list[Image.Image]) -> torch.Tensor:
            squashed = [to_rgb(i).resize((side, side)) for i in images]
            batch = self.prepare([Example(i) for i in squashed], [DESCRIBE] * len(squashed))
            grid.layouts, grid.orders = batch.state["views"], batch.state.get("orders")
            prepared[:] = [batch]
            return batch.inputs

        def forward(pixels: torch.Tensor) -> Any:
            batch = replace(prepared[0], inputs=pixels).to(pixels.device)
            return self.model.get_image_features(**self.vision_inputs(batch))

        return LayerSubject(self.model, layer or self.layer, prepare, name, forward=forward,
                            to_grid=grid)


def _probe_side(image_processor: Any) -> int:
    size = _size(getattr(image_processor, "max_image_size", None) or image_processor.size)
    return int(size.get("longest_edge") or size.get("height") or size.get("shortest_edge") or 224)


def _padded(rows: Sequence[Sequence[int]], pad: int, left: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, L) ids padded with ``pad`` and their attention mask."""
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    for s, row in enumerate(rows):
        where = slice(length - len(row), length) if left else slice(0, len(row))
        ids[s, where] = torch.tensor(list(row), dtype=torch.long)
        mask[s, where] = 1
    return ids, mask


class SequenceScorer(nn.Module):
    """(S, L, V) logits of S scored sequences at their continuation's positions, from the
    batch's vision inputs: sequence s is example ``owner[s]``'s prompt and a continuation.

    It holds the model's own children under their names, so layer names are the model's.
    The vision tower runs once per example; its features are repeated per sequence.
    """

    def __init__(self, vlm: ChatVLM, batch: Batch,
                 continuations: Sequence[Sequence[Sequence[int]]]) -> None:
        super().__init__()
        for name, child in vlm.model.named_children():
            self.add_module(name, child)
        self.__dict__["vlm"] = vlm  # not a child: its modules are already held
        prompts = batch.state["prompts"]
        self.owner = [n for n, rows in enumerate(continuations) for _ in rows]
        rows = [[*prompts[n], *c] for n, per in enumerate(continuations) for c in per]
        self.starts = torch.tensor([len(prompts[n]) for n in self.owner])
        self.length = max(len(c) for per in continuations for c in per)
        self.ids, self.mask = _padded(rows, vlm.tokenizer.pad_token_id or 0)
        image = getattr(vlm.model.config, "image_token_id", None)
        if image is None:
            image = vlm.model.config.image_token_index
        self.image_tokens = [sum(1 for t in prompt if t == image) for prompt in prompts]
        self.repeated = {k: batch.state[k][self.owner] for k in vlm.family.per_sequence}
        types = batch.state["types"]
        for key, fill in TYPE_KEYS.items():
            if key in types[0]:
                self.repeated[key] = _padded(
                    [[*types[n][key], *[fill] * len(c)]
                     for n, per in enumerate(continuations) for c in per], 0)[0]
        self.train(vlm.model.training)

    def forward(self, pixel_values: torch.Tensor, **vision: torch.Tensor) -> torch.Tensor:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        vlm, device = self.vlm, pixel_values.device
        features = vlm.model.get_image_features(pixel_values=pixel_values, **vision).pooler_output
        listed = isinstance(features, (list, tuple))
        width = features[0].shape[-1]
        flat = (torch.cat([f.reshape(-1, width) for f in features]) if listed
                else features.reshape(-1, width))
        per_example = flat.split(self.image_tokens)
        repeated = torch.cat([per_example[n] for n in self.owner])
        packed = [repeated] if listed else repeated[None]
        extra = {k: v.to(device) for k, v in self.repeated.items()}
        first = int(self.starts.min()) - 1
        logits = vlm.model(
            input_ids=self.ids.to(device), attention_mask=self.mask.to(device),
            mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=packed)},
            logits_to_keep=self.ids.shape[1] - first, **extra,
        ).logits
        where = (self.starts - 1 - first)[:, None] + torch.arange(self.length)[None]
        where = where.clamp(max=logits.shape[1] - 1).to(device)
        return logits.gather(1, where[..., None].expand(-1, -1, logits.shape[-1]))


class OnChatVLM:
    """What both generative tasks take from their ``ChatVLM``: which methods and layers
    explain it, and the forward that dissects a layer (first among the bases, so that the
    task's own checks run too)."""

    vlm: ChatVLM
    name: str

    def explain(self, batch: Batch, targets: TargetSet, method: str = "gradcam",
                layer: str | None = None, **options: Any) -> Explanation:
        self.vlm.check_method(method)
        return super().explain(batch, targets, method, layer, **options)

    def check_layer(self, layer: str | None) -> None:
        super().check_layer(layer)
        self.vlm.check_layer(layer)

    def dissection_subject(self, layer: str | None = None) -> LayerSubject:
        return self.vlm.dissection_subject(layer, self.name)


class VLMCaptioner(OnChatVLM, Captioning):
    """A generative VLM asked to describe the image; every word of its description (or of a
    given caption) is a target."""

    def __init__(self, model: nn.Module, processor: Any, device: str | torch.device = "cpu",
                 layer: str | None = None, group_words: bool = True, name: str = "hf",
                 prompt: str = DESCRIBE) -> None:
        self.vlm = ChatVLM(model, processor, device, layer)
        self.model, self.device, self.layer = self.vlm.model, self.vlm.device, self.vlm.layer
        self.tokenizer, self.group_words, self.name, self.instruction = (
            self.vlm.tokenizer, group_words, name, prompt)

    def prepare(self, examples: Sequence[Example]) -> Batch:
        return self.vlm.prepare(examples, [self.instruction] * len(examples))

    def images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.prepare([Example(i) for i in images]).inputs

    def generate(self, batch: Batch) -> list[TokenizedText]:
        outputs = self.vlm.generate(batch, beams=max(self.beam, 1))
        return [group_ids(self.tokenizer, ids[0], words=self.group_words) for ids in outputs]

    def tokenize(self, caption: str | Sequence[str]) -> TokenizedText:
        if self.group_words:
            return tokenize_words(self.tokenizer, split_words(caption))
        return tokenize_tokens(self.tokenizer, caption)

    @property
    def longest(self) -> int:
        """The language model's positions (the prompt takes some of them too)."""
        return self.model.config.text_config.max_position_embeddings - 1

    def teacher_forced(self, batch: Batch, ids: torch.Tensor) -> Problem:
        return self.vlm.problem(batch, [[row] for row in ids.tolist()])


class VLMQuestionAnswering(OnChatVLM, QuestionAnswering):
    """A generative VLM answering a question: its own answer, and any answer text forced,
    each scored by its log-probability given the image and the question."""

    def __init__(self, model: nn.Module, processor: Any, device: str | torch.device = "cpu",
                 layer: str | None = None, name: str = "hf") -> None:
        self.vlm = ChatVLM(model, processor, device, layer, max_new_tokens=10)
        self.model, self.device, self.layer = self.vlm.model, self.vlm.device, self.vlm.layer
        self.tokenizer, self.name = self.vlm.tokenizer, name

    def prepare(self, examples: Sequence[Example]) -> Batch:
        for example in examples:
            if example.text is None:
                raise InputError("a VQA example needs a question, e.g. 'what color is the circle?'")
            split_words(example.text, "question")
        return self.vlm.prepare(examples, [e.text for e in examples])

    def images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.prepare([Example(i, DESCRIBE) for i in images]).inputs

    def encode(self, questions: Sequence[str]) -> torch.Tensor:
        """(N, L) the questions' prompts as token ids, left-padded (the image tokens are the
        processor's to insert: ``prepare`` makes the prompts with the images)."""
        prompts = [self.tokenizer(self.vlm.prompt(q))["input_ids"] for q in questions]
        return _padded(prompts, self.tokenizer.pad_token_id or 0, left=True)[0]

    def unknown_words(self, question: str) -> list[str]:
        return []  # byte-level and SentencePiece tokenizers read any text

    def answer_ids(self, answer: str) -> list[int]:
        """An answer's tokens and the end of the turn."""
        words = split_words(answer, "answer")
        return [*self.tokenizer(" ".join(words), add_special_tokens=False)["input_ids"],
                self.vlm.end_id]

    def predict(self, batch: Batch, top_k: int = 3) -> list[list[Prediction]]:
        """The greedy answer and the beams' (beam search can lose the greedy path), ranked
        by their summed log-prob, as they are explained."""
        width = max(top_k, CANDIDATES)
        searches = [self.vlm.generate(batch), self.vlm.generate(batch, beams=width, count=width)]
        candidates = [[t for t in dict.fromkeys(self._text(ids) for ids in greedy + beams) if t]
                      for greedy, beams in zip(*searches)]
        return ranked_answers(self, batch, candidates, top_k)

    def _text(self, ids: Sequence[int]) -> str:
        return " ".join(self.tokenizer.decode(list(ids), skip_special_tokens=True).split())

    def scores(self, batch: Batch, answers: Sequence[str]) -> torch.Tensor:
        """(N, U) each answer's summed log-prob for each example, without gradients."""
        targets = TargetSet([[Target(u, a) for u, a in enumerate(answers)]] * len(batch),
                            context=[list(answers)] * len(batch))
        problem = self.problem(batch, targets)
        with torch.no_grad():
            return problem.score(problem.model(*problem.inputs, **problem.model_kwargs))

    def targets(self, batch: Batch, requested: Requested = None) -> TargetSet:
        rows = broadcast_targets(requested, len(batch))
        if rows is None:
            rows = [[p[0].name] for p in self.predict(batch, 1)]
        texts = [[" ".join(split_words(str(a), "answer")) for a in row] for row in rows]
        union = list(dict.fromkeys(t for row in texts for t in row))
        return TargetSet([[Target(union.index(t), t) for t in row] for row in texts],
                         context=[union] * len(batch))

    def problem(self, batch: Batch, targets: TargetSet, layer: str | None = None) -> Problem:
        union = targets.context[0]
        answers = [self.answer_ids(a) for a in union]
        score = AnswerScores(answers, targets.padded())
        return self.vlm.problem(batch, [answers] * len(batch), score,
                                lambda logits: score(logits).exp())


class AnswerScores:
    """(N*U, L, V) logits of every example's U answers -> (N, T): per target the summed
    log-prob of its answer's tokens."""

    def __init__(self, answers: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]):
        self.ids, self.mask = _padded(answers, 0)
        self.targets = torch.tensor(targets)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        count = self.ids.shape[0]
        ids, mask = self.ids.to(logits.device), self.mask.to(logits)
        log_probs = logits[:, : ids.shape[1]].log_softmax(-1)
        n = log_probs.shape[0] // count
        per_token = log_probs.gather(-1, ids.repeat(n, 1)[..., None])[..., 0]
        per_answer = (per_token * mask.repeat(n, 1)).sum(-1).view(n, count)
        return per_answer.gather(1, self.targets.to(logits.device))
