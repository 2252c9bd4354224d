"""Training the Show-and-Tell captioner on ShapesWorld or on COCO-format captions.

Batches are a pure function of (seed, step), so a resumed run sees exactly the data an
uninterrupted one would have seen. On ShapesWorld an auxiliary head also predicts which
concepts (colour-shape pairs, background texture) the image holds, from the same pooled
features the caption is generated from: it teaches the encoder what is in the image many
times faster than the caption loss alone, which must first pass through the LSTM. The head
is training-only; the shipped model is plain Show-and-Tell.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from vlx.checkpoints import load_checkpoint, read_metadata
from vlx.data.shapes import COLOURS, SHAPES, SPLITS, TEXTURES, ShapesWorld
from vlx.errors import InputError
from vlx.models.encoders import SHAPES_PREPROCESS, arrays_to_tensor
from vlx.models.registry import require_kind
from vlx.models.show_and_tell import ShowAndTell, ShowAndTellConfig
from vlx.text import Vocabulary
from vlx.training import Recipe, TrainingOptions

VOCABULARY_CAPTIONS = 5000
CONCEPTS = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES) + TEXTURES
AUXILIARY_WEIGHT = 1.0


@dataclass
class CaptionBatch:
    images: torch.Tensor
    captions: list[str]
    concepts: torch.Tensor | None = None  # (N, len(CONCEPTS)) multi-hot, where known


class CaptionSource(Protocol):
    name: str
    size: int

    def captions(self) -> list[str]: ...

    def batch(self, step: int, size: int) -> CaptionBatch: ...


class ShapesCaptions:
    """Endless ShapesWorld training scenes; ``size`` is the train split's length."""

    name = "shapes"

    def __init__(self, seed: int) -> None:
        self.world = ShapesWorld(seed=seed)
        self.seed = seed
        self.start, self.size = SPLITS["train"]

    def captions(self) -> list[str]:
        return [self.world.scene(self.start + i).caption() for i in range(VOCABULARY_CAPTIONS)]

    def batch(self, step: int, size: int) -> CaptionBatch:
        rng = np.random.default_rng([self.seed, step])
        scenes = [self.world.scene(self.start + int(i)) for i in rng.integers(0, self.size, size)]
        concepts = torch.zeros(size, len(CONCEPTS))
        for row, scene in enumerate(scenes):
            names = [f"{o.colour} {o.shape}" for o in scene.objects] + [scene.background]
            for name in names:
                if name in CONCEPTS:
                    concepts[row, CONCEPTS.index(name)] = 1.0
        images = arrays_to_tensor([s.image for s in scenes])
        return CaptionBatch(images, [s.caption() for s in scenes], concepts)


class CocoCaptionsSource:
    """Images and captions from a COCO ``captions_*.json`` and its image folder."""

    def __init__(self, spec: str, seed: int) -> None:
        from vlx.data.coco import CocoCaptions

        annotations, _, images = spec.partition(",")
        self.name = f"coco:{spec}"
        self.data = CocoCaptions(annotations, images or None)
        self.size = len(self.data)
        self.seed = seed

    def captions(self) -> list[str]:
        return [caption for _, caption in self.data.pairs()]

    def batch(self, step: int, size: int) -> CaptionBatch:
        rng = np.random.default_rng([self.seed, step])
        pairs = self.data.pairs()
        chosen = [pairs[int(i)] for i in rng.integers(0, len(pairs), size)]
        images = [self.data.image(image_id) for image_id, _ in chosen]
        return CaptionBatch(SHAPES_PREPROCESS.batch(images), [caption for _, caption in chosen])


@dataclass
class CaptionerTraining(TrainingOptions):
    """``vlx train captioner`` options."""

    min_count: int = 1
    pool: str = "mean"
    coordinates: bool = True
    stride: int | None = None  # None: 8 for a new model, the checkpoint's otherwise
    init: Path | None = None
    receptive_field: int | None = None  # None: 71 for a new model; a checkpoint keeps its own


def caption_source(data: str, seed: int) -> CaptionSource:
    if data == "shapes":
        return ShapesCaptions(seed)
    if data.startswith("coco:") and len(data) > 5:
        return CocoCaptionsSource(data[5:], seed)
    raise InputError(f"unknown data {data!r}; valid: shapes, coco:CAPTIONS_JSON[,IMAGE_DIR]")


def encode_batch(vocabulary: Vocabulary, captions: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forcing inputs ``[<start>, w1..wn]`` and targets ``[w1..wn, <end>]``, 0-padded."""
    rows = [vocabulary.encode(c)[: max_length - 1] for c in captions]
    length = max(len(r) for r in rows) + 1
    inputs = torch.zeros(len(rows), length, dtype=torch.long)
    targets = torch.zeros(len(rows), length, dtype=torch.long)
    for i, row in enumerate(rows):
        inputs[i, : len(row) + 1] = torch.tensor([vocabulary.start, *row])
        targets[i, : len(row) + 1] = torch.tensor([*row, vocabulary.end])
    return inputs, targets


class CaptionerRecipe(Recipe):
    """Show-and-Tell: a new model, a resumed run, or a new run from a trained captioner
    (``init``), with the training-only concept head beside it."""

    name = "show_and_tell"

    def __init__(self, options: CaptionerTraining, saved: dict | None) -> None:
        super().__init__(options, saved)
        if options.resume and options.init is not None:
            raise InputError("--resume continues --out; --init starts a new run: give one of them")
        if options.receptive_field is not None and (saved or options.init is not None):
            raise InputError("--receptive-field shapes a new model; a trained one keeps its own")
        self.device = torch.device(options.device)
        self.source = caption_source(options.data, options.seed)
        saved = saved or {}
        if saved:
            trained_stride = saved["config"].get("stride", 8)  # checkpoints before strides: 8
            if options.stride not in (None, trained_stride):
                raise InputError(
                    f"--stride {options.stride}: {options.out} was trained at stride "
                    f"{trained_stride}; change it with --init, not --resume"
                )
            model, self.vocabulary = ShowAndTell.from_checkpoint(saved)
        elif options.init is not None:
            initial = _captioner_checkpoint(options.init, options.out)
            if options.stride is not None:
                initial["config"] = {**initial["config"], "stride": options.stride}
            model, self.vocabulary = ShowAndTell.from_checkpoint(initial)
        else:
            self.vocabulary = Vocabulary.build(self.source.captions(), min_count=options.min_count)
            config = ShowAndTellConfig(
                vocab_size=len(self.vocabulary), pool=options.pool,
                coordinates=options.coordinates, stride=options.stride or 8,
                receptive_field=options.receptive_field or 71,
            )
            model = ShowAndTell(config)
        # channels_last: the encoder's convolutions run about 1.5x faster on CPU.
        self.model = model.to(self.device, memory_format=torch.channels_last).train()
        self.auxiliary = torch.nn.Linear(model.features, len(CONCEPTS)).to(self.device)
        self.add_head("auxiliary", self.auxiliary, saved)

    @classmethod
    def check_resumed(cls, saved: dict, path: Path) -> dict:
        return require_kind(saved, path, "captioner")

    @property
    def description(self) -> str:
        return f"train captioner ({self.source.name})"

    @property
    def data(self) -> str:
        return self.source.name

    def clipped(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    def step_loss(self, step: int) -> torch.Tensor:
        batch = self.source.batch(step, self.options.batch)
        inputs, targets = encode_batch(self.vocabulary, batch.captions, self.model.config.max_length)
        images = batch.images.to(self.device, memory_format=torch.channels_last)
        features = self.model.image_features(images)
        logits = self.model.decode(self.model.project(features), inputs.to(self.device))
        loss = F.cross_entropy(
            logits.flatten(0, 1), targets.to(self.device).flatten(), ignore_index=0
        )
        if batch.concepts is None:
            return loss
        concepts = self.auxiliary(features)
        return loss + AUXILIARY_WEIGHT * F.binary_cross_entropy_with_logits(
            concepts, batch.concepts.to(self.device)
        )

    def evaluate(self) -> dict:
        if self.source.name != "shapes":
            return {}
        world = ShapesWorld(seed=self.options.seed)
        return object_naming(self.model, self.vocabulary, world, self.options.eval_images)

    def payload(self) -> dict:
        return self.model.checkpoint(self.vocabulary)

    def metadata(self) -> dict:
        metadata = {"data_size": self.source.size, "config": self.payload()["config"]}
        if self.options.init is not None:  # the run this one started from, with its lineage
            metadata["init"] = {
                "checkpoint": str(self.options.init),
                "metadata": read_metadata(self.options.init),
            }
        return metadata


def object_naming(model: ShowAndTell, vocabulary: Vocabulary, world: ShapesWorld, count: int) -> dict:
    """Share of held-out (validation) objects whose colour AND shape the greedy caption names.

    A caption names an object when a "<colour> <shape>" phrase for it appears (size words
    may stand before the colour); each phrase names at most one object.
    """
    start = SPLITS["val"][0]
    device = next(model.parameters()).device
    named = total = exact = 0
    for first in range(0, count, 50):
        scenes = [world.scene(start + i) for i in range(first, min(count, first + 50))]
        images = arrays_to_tensor([s.image for s in scenes]).to(device)
        for scene, ids in zip(scenes, model.greedy(images, vocabulary.start, vocabulary.end)):
            words = vocabulary.decode(ids)
            said = Counter(_phrases(words))
            wanted = Counter((o.colour, o.shape) for o in scene.objects)
            named += sum((said & wanted).values())
            total += len(scene.objects)
            exact += " ".join(words) == scene.caption()
    return {"object_naming": named / total, "exact_captions": exact / count, "eval_images": count}


def _phrases(words: list[str]) -> list[tuple[str, str]]:
    text = " ".join(words)
    pattern = rf"\b({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})\b"
    return [(m.group(1), m.group(2)) for m in re.finditer(pattern, text)]


def _captioner_checkpoint(path: Path, out: Path) -> dict:
    if not path.is_file():
        raise InputError(f"--init {path}: no such file")
    if path.resolve() == Path(out).resolve():
        raise InputError(f"--init {path} is also --out: write the new run to another file")
    return require_kind(load_checkpoint(path, what="--init checkpoint"), path, "captioner")
