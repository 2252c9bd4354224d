"""The task contract: what every adapter says about its model, so everything above is written once.

An adapter (classification, captioning, VQA; ShapesWorld models and Hugging Face ones) owns a
model and says, for its task:

- how raw ``Example`` s (an image, and the task's text: a question, or a caption to explain)
  become a ``Batch`` on the model's device, through the model's own preprocessing (``prepare``);
- what the model says about them (``predict``: classes, a caption, answers);
- how a person names targets ("tiger cat", the word "circle", the answer "red") and which
  model scalars they are (``targets``: ``requested=None`` means what was predicted);
- how one forward computes those scalars (``problem``): the model, its inputs, which input is
  the image, the score and probability of every target, and how a token layer maps back to
  the image grid.

Everything else is written here once, against that: ``explain`` runs any method through
``vlx.methods.explain``; ``probabilities`` scores edited images (deletion, insertion);
``referents`` reads each target's ground truth from its example (pointing, energy,
localization), so an adapter with ground truth is scored by every metric.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol

import torch
from PIL import Image
from torch import nn

from vlx.errors import InputError
from vlx.explanation import Explanation
from vlx.methods import COPY_METHODS

Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1), inclusive pixel coordinates of the example's image."""
Requested = Sequence[str | int] | Sequence[Sequence[str | int]] | None
"""Targets as a person names them: one list for every example, or one list per example."""


@dataclass(frozen=True)
class Target:
    """One explained scalar: ``id`` is the task's index (a class, a word's position in the
    caption, an answer), ``name`` how a person reads it."""

    id: int
    name: str


@dataclass(frozen=True)
class Referent:
    """What a target refers to in its example's image, where ground truth says.

    Attributes:
        category: how results are grouped ("colour", "shape", a class name, ...).
        mask: (H, W) bool in the example's image pixels: every instance of what the target
            names (the pointing game's hit region).
        own: the one instance the target describes, where that is known (stricter pointing,
            energy); else ``mask``.
        boxes: boxes of ``own`` (localization), inclusive; empty where it has none (a
            background).
    """

    category: str
    mask: torch.Tensor
    own: torch.Tensor | None = None
    boxes: tuple[Box, ...] = ()

    @property
    def described(self) -> torch.Tensor:
        return self.mask if self.own is None else self.own


class GroundTruth(Protocol):
    """An example's ground truth: what a target refers to, and which targets to score."""

    def referent(self, target: Target) -> Referent | None:
        """The target's referent, or ``None`` where the truth says nothing about it."""

    def requested(self) -> list[str | int] | None:
        """The targets an evaluation explains for this example (``None``: the task's own
        default, e.g. every word of the example's caption)."""


@dataclass(frozen=True)
class Example:
    """One input: an image, the task's text (a VQA question; a caption to explain, else the
    generated one is), a name for results, and ground truth where there is some."""

    image: Image.Image
    text: str | None = None
    name: str = ""
    truth: GroundTruth | None = None


@dataclass
class Batch:
    """Examples prepared for the model: ``inputs`` on its device, and whatever the adapter
    keeps about them in ``state`` (encoded questions, generated captions, ...): tensors and
    lists with one row per example, so a batch can be cut into examples."""

    examples: list[Example]
    inputs: torch.Tensor
    state: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.examples)

    def to(self, device: torch.device) -> Batch:
        """The batch with its tensors on ``device`` (a loader worker prepares on the CPU)."""
        state = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                 for k, v in self.state.items()}
        return Batch(self.examples, self.inputs.to(device), state)

    def select(self, index: int) -> Batch:
        """Example ``index`` alone, as a batch of one."""
        n = len(self)
        state = {key: _row(value, index, n) for key, value in self.state.items()}
        return Batch([self.examples[index]], self.inputs[index : index + 1], state)


@dataclass(frozen=True)
class Prediction:
    """What the model says: a class or an answer (``index``, ``probability``, ``score``), or
    a generated caption (``words``)."""

    name: str
    index: int | None = None
    probability: float | None = None
    score: float | None = None
    words: tuple[str, ...] = ()


@dataclass(frozen=True)
class TargetSet:
    """T targets per example; rows may differ in length (the engine pads them). ``context``
    holds the adapter's own per example (the caption its words come from, ...)."""

    rows: list[list[Target]]
    context: list[Any] | None = None

    @property
    def width(self) -> int:
        return max((len(row) for row in self.rows), default=0)

    def padded(self) -> list[list[int]]:
        """Each row's ids, padded to ``width`` by repeating its last target."""
        width = self.width
        return [[t.id for t in row] + [row[-1].id] * (width - len(row)) for row in self.rows]

    def select(self, index: int) -> TargetSet:
        """Example ``index``'s targets alone."""
        context = None if self.context is None else [self.context[index]]
        return TargetSet([self.rows[index]], context)


@dataclass
class Problem:
    """One forward that computes every target's scalar: what ``vlx.methods.explain`` needs.

    Attributes:
        model: called as ``model(*inputs, **model_kwargs)``.
        inputs: its positional inputs; ``inputs[input_index]`` is the image batch.
        score: the explained scalars, (N, T): class indices per example, or a callable of
            the model's outputs.
        probability: the outputs -> (N, T) probability of each target (deletion, insertion).
        to_grid: the explained layer's output -> (N, C, h, w), for token layers.
        context: a context manager factory every forward runs inside (ViLT's patch order).
    """

    model: nn.Module
    inputs: tuple[Any, ...]
    score: Any
    probability: Callable[[Any], torch.Tensor]
    input_index: int = 0
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    to_grid: Callable[[torch.Tensor], torch.Tensor] | None = None
    context: Callable[[], AbstractContextManager] = nullcontext


@dataclass(frozen=True)
class LayerSubject:
    """What dissecting an explained layer needs: the model, the layer, how images become its
    input, the name that keys the cache (with the weights), the forward that reaches the layer
    from images alone (no question or caption) and the layer's ``to_grid``."""

    model: nn.Module
    layer: str
    prepare: Callable[[list[Image.Image]], torch.Tensor]
    name: str
    forward: Callable[[torch.Tensor], Any] | None = None
    to_grid: Callable[[torch.Tensor], torch.Tensor] | None = None


class Task(ABC):
    """The contract every adapter implements; see the module's docstring."""

    kind: ClassVar[str]
    """"classify", "caption" or "vqa": which command and figures fit the adapter."""

    model: nn.Module
    device: torch.device
    layer: str | None
    """The layer explained by default: the model's last spatial map."""
    name: str = ""
    """How the person named the model (``--model``): results and caches carry it."""

    @abstractmethod
    def prepare(self, examples: Sequence[Example]) -> Batch:
        """Examples -> a batch on the model's device, through the model's preprocessing."""

    @abstractmethod
    def predict(self, batch: Batch, top_k: int = 5) -> list[list[Prediction]]:
        """Per example, what the model says: the top-k classes or answers, most probable
        first, or the generated caption (one prediction)."""

    @abstractmethod
    def targets(self, batch: Batch, requested: Requested = None) -> TargetSet:
        """A person's target names (or the task's indices) -> targets; ``None``: what was
        predicted (the top class; every word of the caption; the predicted answer). An
        unknown name is an ``InputError`` naming the closest valid ones."""

    @abstractmethod
    def problem(self, batch: Batch, targets: TargetSet, layer: str | None = None) -> Problem:
        """The forward that computes ``targets``' scalars, with ``layer``'s ``to_grid``."""

    def dissection_subject(self, layer: str | None = None) -> LayerSubject:
        """What dissecting ``layer`` (default: the explained one) reads it through."""
        raise InputError(f"textual explanations are not available for {type(self).__name__}")

    def attention(self, batch: Batch, targets: TargetSet) -> torch.Tensor | None:
        """(N, h, w) where the model itself looked, for models that attend; else ``None``."""
        return None

    def correct(self, batch: Batch, targets: TargetSet) -> list[list[bool]] | None:
        """Per target, whether it is the model's top prediction (``None`` where that is no
        question, e.g. a caption word)."""
        top = [predictions[0].name for predictions in self.predict(batch, 1)]
        return [[t.name == best for t in row] for row, best in zip(targets.rows, top)]

    def explain(
        self, batch: Batch, targets: TargetSet, method: str = "gradcam",
        layer: str | None = None, **options: Any,
    ) -> Explanation:
        """``method`` for every target of every example, in one forward and one batched
        backward (the methods that forward edited copies, one example at a time);
        ``options`` are the method's own (occlusion's ``window``, ``stride``, the copies'
        ``batch_size``). Rows shorter
        than the widest are padded: their extra maps repeat the row's last target."""
        from vlx.methods import explain

        if not targets.rows or any(not row for row in targets.rows):
            raise InputError("no targets to explain: every example needs at least one")
        if method in COPY_METHODS and len(batch) > 1:
            parts = [self.explain(batch.select(i), targets.select(i), method, layer, **options)
                     for i in range(len(batch))]
            return _concatenated(parts, targets)
        problem = self.problem(batch, targets, layer)
        with problem.context():
            explanation = explain(
                problem.model, *problem.inputs, method=method, targets=problem.score,
                layer=layer or self.layer, to_grid=problem.to_grid,
                input_index=problem.input_index, model_kwargs=problem.model_kwargs, **options,
            )
        return replace(explanation, targets=[[t.name for t in row] for row in targets.rows])

    def explain_predicted(
        self, batch: Batch, method: str = "gradcam", layer: str | None = None, **options: Any
    ) -> tuple[TargetSet, Explanation]:
        """The predicted targets and their explanation. Adapters whose prediction is the
        argmax of the explained scores (classes, fixed answers) find it in the explaining
        forward itself, so explaining what a model predicts costs one forward, not two."""
        targets = self.targets(batch)
        return targets, self.explain(batch, targets, method, layer, **options)

    def probabilities(
        self, batch: Batch, targets: TargetSet, images: torch.Tensor | None = None,
        example: int = 0,
    ) -> torch.Tensor:
        """(N, T) each target's probability; with ``images`` (B, C, H, W), (B, T) for those
        edited copies of example ``example``'s image, its other inputs repeated alongside."""
        if images is not None:
            batch, targets = batch.select(example), targets.select(example)
        problem = self.problem(batch, targets)
        inputs, kwargs = list(problem.inputs), dict(problem.model_kwargs)
        if images is not None:
            copies = images.shape[0]
            inputs = [images if k == problem.input_index else _repeat(value, copies)
                      for k, value in enumerate(inputs)]
            kwargs = {key: _repeat(value, copies) for key, value in kwargs.items()}
        with torch.no_grad(), problem.context():
            return problem.probability(problem.model(*inputs, **kwargs))

    def referents(self, batch: Batch, targets: TargetSet) -> list[list[Referent | None]]:
        """Each target's referent from its example's ground truth (``None`` where unknown)."""
        return [
            [example.truth.referent(t) if example.truth is not None else None for t in row]
            for example, row in zip(batch.examples, targets.rows)
        ]

    def check_layer(self, layer: str | None) -> None:
        """A named layer must exist in the model (an error lists the closest names)."""
        if layer:
            from vlx.layers import named_layer

            named_layer(self.model, layer)


def broadcast(requested: Requested, count: int) -> list[list[str | int]] | None:
    """``requested`` as one list per example: a flat list is every example's."""
    if requested is None:
        return None
    rows = list(requested)
    if rows and all(isinstance(row, (list, tuple)) for row in rows):
        if len(rows) != count:
            raise InputError(f"got {len(rows)} lists of targets for {count} examples")
        return [list(row) for row in rows]
    if any(isinstance(row, (list, tuple)) for row in rows):
        raise InputError("targets mix names and lists: give one list, or one list per example")
    return [list(rows) for _ in range(count)]


def examples_of(images: Sequence[Image.Image], texts: Sequence[str | None] | None = None
                ) -> list[Example]:
    """Examples from images (and one text each, where the task reads one)."""
    texts = list(texts) if texts is not None else [None] * len(images)
    return [Example(image, text) for image, text in zip(images, texts)]


def _repeat(value: Any, copies: int) -> Any:
    """A one-example input repeated for ``copies`` edited images."""
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == 1:
        return value.expand(copies, *value.shape[1:])
    return value


def _row(value: Any, index: int, n: int) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n:
        return value[index : index + 1]
    if isinstance(value, list) and len(value) == n:
        return [value[index]]
    return value


def _concatenated(parts: list[Explanation], targets: TargetSet) -> Explanation:
    """One explanation from per-example ones (rows padded to the widest)."""
    width = max(part.num_targets for part in parts)

    def pad(tensor: torch.Tensor | None) -> torch.Tensor | None:
        if tensor is None:
            return None
        extra = width - tensor.shape[1]
        return torch.cat([tensor, tensor[:, -1:].expand(-1, extra, *tensor.shape[2:])], 1) if (
            extra) else tensor

    first = parts[0]
    return replace(
        first,
        maps=torch.cat([pad(p.maps) for p in parts]),
        scores=torch.cat([pad(p.scores) for p in parts]),
        alphas=None if first.alphas is None else torch.cat([pad(p.alphas) for p in parts]),
        channels=None if first.channels is None else torch.cat([pad(p.channels) for p in parts]),
        targets=[[t.name for t in row] for row in targets.rows],
    )


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
