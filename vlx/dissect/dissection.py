"""Network Dissection (Bau et al. 2017) of one layer: every unit named by its best concept.

Two passes over the probe. The first samples each unit's activations (before upsampling) to
set its threshold at the top-0.5% quantile. The second upsamples the activations bilinearly
to each image's label resolution, keeps the region above the threshold and tallies its IoU
with every concept. Both passes hold a fixed amount of state, so any probe size fits, and
the forward stops at the layer, so early layers of big models are cheap to dissect.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from vlx.capture import read_layer
from vlx.dissect.broden import BrodenProbe
from vlx.dissect.cache import cache_name, cache_root
from vlx.dissect.examples import TopImages
from vlx.dissect.names import MIN_IOU, UnitName
from vlx.dissect.probe import load_probe, probe_name
from vlx.dissect.quantile import UnitQuantiles
from vlx.dissect.tally import CategoryScore, IoUTally
from vlx.errors import InputError
from vlx.explanation import upsample
from vlx.files import sweep_temporaries, write_text_atomic
from vlx.layers import named_layer

QUANTILE = 0.005
"""Each unit's mask is where it exceeds the value only this fraction of its activations do."""
TOP_CONCEPTS = 5
"""Concepts kept per unit, best first, beside its name (explanations may show runners-up)."""
TALLY_FILE = "tally.csv"
JSON_FILE = "dissection.json"

Prepare = Callable[[list[Image.Image]], torch.Tensor]
Grid = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Dissection:
    """The result of dissecting ``layer`` on ``probe``: ``units[k]`` names channel k.

    Attributes:
        thresholds: per unit, the activation threshold (the top-``quantile`` quantile).
        categories: the probe's categories, in column order of ``tally.csv``.
        by_category: per unit, its best concept in each category with the tally counts.
        top: per unit, its best ``TOP_CONCEPTS`` concepts over all categories.
        examples: per unit, probe image indices where it peaks highest, highest first.
    """

    layer: str
    probe: str
    units: list[UnitName]
    thresholds: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    by_category: list[dict[str, CategoryScore]] = field(default_factory=list)
    top: list[list[UnitName]] = field(default_factory=list)
    examples: list[list[int]] = field(default_factory=list)
    quantile: float = QUANTILE
    images: int = 0

    def __post_init__(self) -> None:
        """Details left out (a result built by hand from names alone) become empty per unit,
        so every Dissection can be written; given details must cover every unit."""
        count = len(self.units)
        self.by_category = self.by_category or [{} for _ in range(count)]
        self.top = self.top or [[unit] for unit in self.units]
        self.examples = self.examples or [[] for _ in range(count)]
        details = (self.by_category, self.top, self.examples, self.thresholds or self.units)
        if any(len(detail) != count for detail in details):
            raise ValueError(f"per-unit details must have one entry for each of {count} units")
        if any(unit.unit != k for k, unit in enumerate(self.units)):
            raise ValueError("units[k] must describe unit k")

    def named_per_category(self) -> dict[str, int]:
        """How many units carry a name (IoU at least ``MIN_IOU``), per category."""
        counts = {category: 0 for category in self.categories}
        for unit in self.units:
            if unit.named:
                counts[unit.category] = counts.get(unit.category, 0) + 1
        return counts

    def write(self, directory: str | Path) -> list[Path]:
        """Write ``tally.csv`` (NetDissect's columns; units 1-based, best score first) and
        ``dissection.json`` (the same facts plus thresholds, runners-up and examples)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        return [
            write_text_atomic(out / TALLY_FILE, self._tally_csv()),
            write_text_atomic(out / JSON_FILE, json.dumps(self._json(), indent=1) + "\n"),
        ]

    @classmethod
    def read(cls, path: str | Path) -> Dissection:
        """A dissection from its ``dissection.json`` or the directory holding it."""
        file = Path(path)
        if file.is_dir():
            file = file / JSON_FILE
        if not file.is_file():
            raise InputError(f"no dissection at {str(file)!r}")
        try:
            data = json.loads(file.read_text())
            units = data["units"]
            return cls(
                layer=data["layer"],
                probe=data["probe"],
                units=[UnitName(u["unit"], u["category"], u["label"], u["iou"]) for u in units],
                thresholds=[u["threshold"] for u in units if u["threshold"] is not None],
                categories=list(data["categories"]),
                by_category=[
                    {c: CategoryScore(**score) for c, score in u["by_category"].items()}
                    for u in units
                ],
                top=[
                    [UnitName(u["unit"], t["category"], t["label"], t["iou"]) for t in u["top"]]
                    for u in units
                ],
                examples=[list(u["examples"]) for u in units],
                quantile=data["quantile"],
                images=data["images"],
            )
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(f"{file} is not a dissection written by vlx: {err!r}") from None

    def _tally_csv(self) -> str:
        columns = ["unit", "category", "label", "score"]
        for category in self.categories:
            columns += [f"{category}-{part}" for part in
                        ("label", "truth", "activation", "intersect", "iou")]
        stream = io.StringIO()
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        for unit in sorted(self.units, key=lambda u: (-u.iou, u.unit)):
            row: list[Any] = [unit.unit + 1, unit.category, unit.label, f"{unit.iou:.6f}"]
            for category in self.categories:
                s = self.by_category[unit.unit].get(category)
                row += [s.label, s.truth, s.activation, s.intersect, f"{s.iou:.6f}"] if s else [
                    "", 0, 0, 0, f"{0:.6f}"
                ]
            writer.writerow(row)
        return stream.getvalue()

    def _json(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "probe": self.probe,
            "images": self.images,
            "quantile": self.quantile,
            "min_iou": MIN_IOU,
            "categories": self.categories,
            "named_per_category": self.named_per_category(),
            "units": [
                {
                    "unit": unit.unit,
                    "category": unit.category,
                    "label": unit.label,
                    "iou": unit.iou,
                    "named": unit.named,
                    "threshold": self.thresholds[unit.unit] if self.thresholds else None,
                    "by_category": {
                        c: vars(score) for c, score in self.by_category[unit.unit].items()
                    },
                    "top": [
                        {"category": t.category, "label": t.label, "iou": t.iou}
                        for t in self.top[unit.unit]
                    ],
                    "examples": self.examples[unit.unit],
                }
                for unit in self.units
            ],
        }


def dissect(
    model: nn.Module,
    layer: str,
    probe: BrodenProbe,
    prepare: Prepare,
    *,
    forward: Callable[[torch.Tensor], Any] | None = None,
    to_grid: Grid | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    quantile: float = QUANTILE,
    progress: bool = True,
) -> Dissection:
    """Name every unit of ``layer`` by the probe concept its top activations overlap most.

    Args:
        model: the network, already on ``device``; ``layer`` is a dotted name inside it.
        probe: a ``BrodenProbe`` (``load_probe``); ``prepare`` turns its PIL images into
            the model's input batch.
        forward: runs the model far enough to reach the layer (default ``model(inputs)``),
            e.g. an image encoder alone, so no question or caption is needed.
        to_grid: turns the layer's output into (N, K, h, w) (transformer tokens to their
            patch grid, ``vlx.layers.TokenGrid``); default: the output as it is.
        quantile: the fraction of each unit's activations above its threshold.
    """
    if not 0.0 < quantile < 1.0:
        raise InputError(f"quantile must lie in (0, 1), got {quantile}")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    name, module = named_layer(model, layer)
    if model.training:
        warnings.warn(
            "the model is in training mode: batch statistics make activations depend on the "
            "batch; call model.eval() first",
            stacklevel=2,
        )
    device = torch.device(device)
    read = _LayerReader(module, name, forward or model, to_grid)

    quantiles: UnitQuantiles | None = None
    for indices in _batches(len(probe), batch_size, progress, f"thresholds {name}"):
        activations = read(prepare([probe.image(i) for i in indices]).to(device))
        if quantiles is None:
            quantiles = UnitQuantiles(activations.shape[1], device=device)
        quantiles.add(activations.transpose(0, 1).flatten(1))
    assert quantiles is not None  # the probe has at least one image
    thresholds = quantiles.quantile(quantile)

    units = thresholds.shape[0]
    tally = IoUTally(units, probe.labels, probe.categories, device)
    examples = TopImages(units)
    for indices in _batches(len(probe), batch_size, progress, f"IoU {name}"):
        items = [probe[i] for i in indices]
        activations = read(prepare([item.image for item in items]).to(device))
        examples.add(activations.amax(dim=(2, 3)), torch.tensor(indices))
        for n, item in enumerate(items):
            # Bilinear values never exceed the largest of the grid they interpolate, so a
            # unit whose grid stays below its threshold has an empty mask: skip upsampling it.
            active = torch.nonzero(activations[n].amax(dim=(1, 2)) > thresholds).flatten()
            grid = upsample(activations[n : n + 1, active], item.size)[0]
            tally.add(grid > thresholds[active, None, None], item, active)
    return _result(name, probe, tally, thresholds, examples, quantile)


def unit_activations(
    model: nn.Module, layer: str, inputs: torch.Tensor, *,
    forward: Callable[[torch.Tensor], Any] | None = None, to_grid: Grid | None = None,
) -> torch.Tensor:
    """(N, K, h, w) activations of ``layer`` for ``inputs``, stopping the forward there
    (for pictures of what a dissected unit detects)."""
    name, module = named_layer(model, layer)
    return _LayerReader(module, name, forward or model, to_grid)(inputs)


def cached_dissection(
    model: nn.Module,
    layer: str,
    probe_spec: str,
    prepare: Prepare,
    *,
    key: str,
    size: int | None = None,
    forward: Callable[[torch.Tensor], Any] | None = None,
    to_grid: Grid | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Dissection:
    """``dissect`` once per (``key``, layer, probe, size), then read back from the cache.

    ``key`` names the model's identity (its weights): two models with one key share results.
    The cache (dissections and the shapes probe) lives at ``cache_dir``, ``$VLX_CACHE`` or
    ``~/.cache/vlx``.
    """
    probe = probe_name(probe_spec, size)
    dissections = cache_root(cache_dir) / "dissections"
    sweep_temporaries(dissections)
    directory = dissections / cache_name(key, layer, probe)
    if (directory / JSON_FILE).is_file():
        try:
            return Dissection.read(directory)
        except InputError:
            pass  # vlx's own cache, damaged: dissected and written again below
    result = dissect(
        model, layer, load_probe(probe_spec, size, cache_dir=cache_dir), prepare,
        forward=forward, to_grid=to_grid, device=device, progress=progress,
    )
    result.write(directory)
    return result


class _LayerReader:
    """Runs ``forward`` until ``module`` has produced its output, and returns that output as
    an (N, K, h, w) float grid (``vlx.capture.read_layer``: the hook is removed whatever
    happens)."""

    def __init__(
        self, module: nn.Module, name: str, forward: Callable[[torch.Tensor], Any],
        to_grid: Grid | None,
    ) -> None:
        self.module, self.name, self.forward, self.to_grid = module, name, forward, to_grid

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        output = read_layer(self.module, self.name, lambda: self.forward(inputs))
        grid = self.to_grid(output) if self.to_grid is not None else output
        if grid.dim() != 4:
            raise InputError(
                f"layer {self.name!r} gives shape {tuple(output.shape)}; dissection needs "
                "(N, K, h, w): pick a convolutional layer or pass to_grid for token outputs"
            )
        return grid.float()


def _batches(count: int, size: int, progress: bool, label: str) -> Iterator[list[int]]:
    starts = range(0, count, size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=label, unit="batch")
    for start in starts:
        yield list(range(start, min(start + size, count)))


def _result(
    layer: str, probe: BrodenProbe, tally: IoUTally, thresholds: torch.Tensor,
    examples: TopImages, quantile: float,
) -> Dissection:
    iou = tally.iou().cpu()
    order = iou.argsort(dim=1, descending=True, stable=True)[:, :TOP_CONCEPTS]
    top = [
        [
            UnitName(k, tally.labels[j].category, tally.labels[j].name, float(iou[k, j]))
            for j in order[k].tolist()
        ]
        for k in range(iou.shape[0])
    ]
    return Dissection(
        layer=layer,
        probe=probe.name,
        units=[concepts[0] for concepts in top],
        thresholds=thresholds.cpu().tolist(),
        categories=list(probe.categories),
        by_category=tally.best_per_category(),
        top=top,
        examples=examples.per_unit(),
        quantile=quantile,
        images=len(probe),
    )
