"""What the ShapesWorld classifier experiments share: options, cached models, maps, outputs.

Every experiment script takes ``--fast`` (a tiny model trained for a few steps, for the
tests), ``--device``, ``--out`` (tables go to ``OUT/results/NAME.md``, figures to
``OUT/figures/NAME*.png``) and ``--work`` (where trained models are cached, so a rerun
reuses them: ``$VLX_CACHE/experiments``, else ``~/.cache/vlx/experiments``).
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from vlx.cam import GradCAM
from vlx.checkpoints import read_metadata
from vlx.data.shapes import Scene
from vlx.devices import resolve_device
from vlx.dissect.cache import cache_root
from vlx.errors import InputError
from vlx.explanation import normalize
from vlx.files import write_text_atomic
from vlx.models.classifier_training import ClassifierRecipe, ClassifierTraining
from vlx.models.shapes_classifier import (
    LAYER,
    WIDTHS,
    ShapesClassification,
    ShapesClassifier,
    load_shapes_classifier,
    scene_images,
)
from vlx.render import overlay
from vlx.training import train

FAST_WIDTHS = (8, 8, 16, 16)
_BATCH = 100


@dataclass(frozen=True)
class Recipe:
    """One classifier to train; every field is part of its cache key."""

    name: str
    data: ShapesClassification = field(default_factory=ShapesClassification)
    widths: tuple[int, ...] = WIDTHS
    steps: int = 2000
    batch: int = 32
    seed: int = 0

    def fast(self, steps: int = 20) -> Recipe:
        """The same recipe shrunk to run in seconds (for ``--fast``)."""
        data = replace(self.data, image_size=32)
        return replace(self, data=data, widths=FAST_WIDTHS, steps=min(self.steps, steps), batch=16)


@dataclass
class Trained:
    """A recipe's model (eval mode) and its validation accuracy from the checkpoint."""

    model: ShapesClassifier
    recipe: Recipe
    val_accuracy: float


def parser(description: str) -> argparse.ArgumentParser:
    """The options every experiment script shares."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--fast", action="store_true",
                        help="tiny models, few steps and images: runs in seconds (for tests)")
    result.add_argument("--device", default="cpu", type=_device,
                        help="torch device for training and maps: cpu, cuda, cuda:N")
    result.add_argument("--out", type=Path, default=Path("docs"),
                        help="writes OUT/results/NAME.md and OUT/figures/NAME*.png")
    result.add_argument("--work", type=Path, default=None,
                        help="trained-model cache (default $VLX_CACHE/experiments or "
                        "~/.cache/vlx/experiments)")
    return result


def _device(name: str) -> str:
    try:
        return str(resolve_device(name))
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def work_dir(work: Path | None) -> Path:
    return work if work is not None else cache_root() / "experiments"


def trained(recipe: Recipe, work: Path | None, device: str) -> Trained:
    """The recipe's model from the cache, trained and cached first when missing."""
    key = hashlib.sha256(repr(recipe).encode()).hexdigest()[:12]
    path = work_dir(work) / f"{recipe.name}-{key}.pt"
    if path.is_file():
        model, _ = load_shapes_classifier(path, device)
    else:
        options = ClassifierTraining(
            out=path, classification=recipe.data, widths=recipe.widths, steps=recipe.steps,
            batch=recipe.batch, seed=recipe.seed, device=device,
        )
        model = train(ClassifierRecipe, options).model
    return Trained(model, recipe, read_metadata(path)["metrics"]["val_accuracy"])


def gradcam(
    model: ShapesClassifier, scenes: list[Scene], classes: torch.Tensor, layer: str = LAYER,
    **ablation: object,
) -> torch.Tensor:
    """(N, H, W) Grad-CAM maps of one class per scene, upsampled bilinearly to the image;
    ``ablation`` is passed to ``vlx.cam.GradCAM`` (pooling, relu, absolute, backward_rule)."""
    device = next(model.parameters()).device
    size = scenes[0].image.shape[:2] if scenes else (0, 0)
    maps = []
    with GradCAM(model, layer, **ablation) as cam:
        for i in range(0, len(scenes), _BATCH):
            images = scene_images(scenes[i : i + _BATCH]).to(device)
            targets = [[int(c)] for c in classes[i : i + _BATCH]]
            maps.append(cam(images, targets=targets).upsampled(size).maps[:, 0].cpu())
    return torch.cat(maps) if maps else torch.zeros(0, *size)


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_results(out: Path, name: str, text: str) -> Path:
    """Print the results and write them atomically to ``OUT/results/NAME.md``."""
    print(text)
    return write_text_atomic(out / "results" / f"{name}.md", text)


def figure_path(out: Path, name: str, suffix: str = "") -> Path:
    return out / "figures" / f"{name}{suffix}.png"


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def panel(
    scene: Scene, heat: torch.Tensor | None = None, boxes: tuple = (), size: int = 160
) -> Image.Image:
    """The scene enlarged to ``size`` (pixels stay crisp), with the map normalised to [0, 1]
    as a jet overlay and inclusive ``(x0, y0, x1, y1, colour)`` boxes drawn on top."""
    image = Image.fromarray(scene.image).resize((size, size), Image.Resampling.NEAREST)
    if heat is not None:
        image = Image.fromarray(overlay(image, normalize(heat[None, None])[0, 0]))
    scale = size / scene.image.shape[1]
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, y1, colour in boxes:
        draw.rectangle(
            [x0 * scale, y0 * scale, (x1 + 1) * scale - 1, (y1 + 1) * scale - 1],
            outline=colour, width=2,
        )
    return image
