"""``--text`` for ``vlx explain``, ``vlx caption`` and ``vlx vqa``: dissect the explained layer
(once; later calls reuse the cached result), then name each target's top and bottom units.

Each command says what dissecting its model needs as a ``LayerSubject``: the image encoder's
forward (so no caption or question is needed), the layer, and how its output becomes a grid.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from vlx.dissect.names import UnitName
from vlx.errors import InputError
from vlx.explanation import Explanation
from vlx.render import explanation_picture, save_png, textual_figure
from vlx.textual import ALPHA_METHODS, target_alphas, textual_explanation


def text_method(methods: list[str]) -> str:
    """The method whose alphas and map ``--text`` shows: Grad-CAM where it was asked for,
    else Guided Grad-CAM, else the counterfactual (its alphas negated back)."""
    for method in ALPHA_METHODS:
        if method in methods:
            return method
    raise InputError(
        f"--text needs a method that gives alphas ({', '.join(ALPHA_METHODS)}); "
        f"got only {', '.join(methods)}"
    )


@dataclass(frozen=True)
class LayerSubject:
    """What dissecting the explained layer of a model needs.

    Attributes:
        model: the model whose ``layer`` (dotted name) is dissected.
        layer: the explained layer.
        prepare: PIL images -> model input, as the explanation prepared them.
        name: how the person named the model; with a digest of its weights it keys the cache.
        forward: runs the model far enough to reach the layer (default ``model(inputs)``).
        to_grid: the layer's output -> (N, K, h, w), for token layers.
    """

    model: nn.Module
    layer: str
    prepare: Callable[[list[Image.Image]], torch.Tensor]
    name: str
    forward: Callable[[torch.Tensor], Any] | None = None
    to_grid: Callable[[torch.Tensor], torch.Tensor] | None = None


def layer_units(subject: LayerSubject, args: argparse.Namespace) -> list[UnitName]:
    """The dissection of the subject's layer on ``--probe`` (``--probe-images`` of them)."""
    from vlx.dissect import cached_dissection

    if args.probe_images < 1:
        raise InputError(f"--probe-images must be at least 1, got {args.probe_images}")
    device = next(subject.model.parameters()).device
    dissection = cached_dissection(
        subject.model,
        subject.layer,
        args.probe,
        subject.prepare,
        key=model_key(subject.name, subject.model),
        size=args.probe_images,
        forward=subject.forward,
        to_grid=subject.to_grid,
        device=device,
    )
    return dissection.units


def model_key(name: str, model: nn.Module) -> str:
    """A cache key for the model: its name and a digest of its weights, so a retrained
    checkpoint or a randomly initialised model is never confused with another."""
    digest = hashlib.blake2b(digest_size=8)
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().reshape(-1).contiguous().cpu().view(torch.uint8).numpy())
    base = Path(name.removeprefix("hf:")).name if name.startswith("hf:") else name
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in base) or "model"
    return f"{stem}-{digest.hexdigest()}"


def explain_text(
    explanation: Explanation,
    n: int,
    units: list[UnitName],
    entries: list[dict[str, Any]],
    labels: list[str],
    image: Image.Image,
    path: Callable[[int], Path],
) -> list[str]:
    """Per target t of image ``n``: its textual explanation goes into ``entries[t]["text"]``
    (as JSON, with the method read) and its Fig. 9 picture, written to ``path(t)``, into
    ``entries[t]["files"]``. Returns the pictures written."""
    files, alphas = [], target_alphas(explanation)
    for t, (label, entry) in enumerate(zip(labels, entries)):
        text = textual_explanation(alphas[n, t], units, label, layer=explanation.layer)
        picture = textual_figure(image, explanation_picture(explanation, n, t, image), text,
                                 method=explanation.method)
        file = str(save_png(picture, path(t)))
        entry["text"] = {**text.to_dict(), "method": explanation.method, "file": file}
        entry["files"].append(file)
        files.append(file)
    return files
