"""``--text`` for ``vlx explain``, ``vlx caption`` and ``vlx vqa``: dissect the explained layer
(once; later calls reuse the cached result), then name each target's top and bottom units.

Each adapter says what dissecting its model needs (``Task.dissection_subject``): the image
encoder's forward (so no caption or question is needed), the layer, and how its output
becomes a grid.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from vlx.dissect.figure import textual_figure
from vlx.dissect.names import UnitName
from vlx.dissect.textual import target_alphas, textual_explanation
from vlx.errors import InputError
from vlx.explanation import Explanation
from vlx.methods import ALPHA_METHODS
from vlx.render import explanation_picture, save_png
from vlx.task import LayerSubject


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


def check_probe(args: argparse.Namespace) -> None:
    """``--probe`` and ``--probe-images``, checked before anything is computed or written."""
    from vlx.dissect.probe import SHAPES_PROBE

    if args.probe_images < 1:
        raise InputError(f"--probe-images must be at least 1, got {args.probe_images}")
    if args.probe != SHAPES_PROBE and not (Path(args.probe).expanduser() / "index.csv").is_file():
        raise InputError(
            f"--probe {args.probe!r} is neither {SHAPES_PROBE!r} nor a Broden directory "
            "(a folder with index.csv, label.csv, category.csv, c_*.csv and images/)"
        )


def layer_units(subject: LayerSubject, args: argparse.Namespace) -> list[UnitName]:
    """The dissection of the subject's layer on ``--probe`` (``--probe-images`` of them)."""
    from vlx.dissect import cached_dissection

    check_probe(args)
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
