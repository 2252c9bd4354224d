"""``vlx dissect``: name every unit of a layer by the probe concept it detects (Bau et al.)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from vlx.cli import print_json
from vlx.commands.textual import model_key
from vlx.devices import resolve_device
from vlx.errors import InputError
from vlx.files import check_output_folder, sweep_temporaries
from vlx.task import LayerSubject

if TYPE_CHECKING:
    import torch

SHAPES_MODELS = ("captioner", "coattention", "lstm-cnn")
PICTURED_UNITS = 8


def run(args: argparse.Namespace) -> int:
    from vlx.dissect import cached_dissection, load_probe, unit_activations
    from vlx.dissect.figure import units_figure
    from vlx.layers import named_layer
    from vlx.render import save_png

    device = resolve_device(args.device)
    if args.images is not None and args.images < 1:
        raise InputError(f"--images must be at least 1, got {args.images}")
    out = check_output_folder(args.out)
    subject = dissection_subject(args.model, args.layer, device)
    named_layer(subject.model, subject.layer)
    probe = load_probe(args.probe, args.images)
    dissection = cached_dissection(
        subject.model, subject.layer, args.probe, subject.prepare,
        key=model_key(subject.name, subject.model), size=args.images,
        forward=subject.forward, to_grid=subject.to_grid, device=device,
    )
    out.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(out)
    files = dissection.write(out)
    best = sorted(dissection.units, key=lambda u: (-u.iou, u.unit))[:PICTURED_UNITS]
    figure = units_figure(
        dissection, probe,
        lambda images: unit_activations(
            subject.model, subject.layer, subject.prepare(images).to(device),
            forward=subject.forward, to_grid=subject.to_grid,
        ),
        [u.unit for u in best],
    )
    files.append(save_png(figure, out / "units.png"))
    named = dissection.named_per_category()
    summary = {
        "command": "dissect",
        "model": args.model,
        "layer": subject.layer,
        "probe": dissection.probe,
        "images": dissection.images,
        "units": len(dissection.units),
        "named": sum(named.values()),
        "named_per_category": named,
        "top_units": [
            {"unit": u.unit, "category": u.category, "label": u.label, "iou": u.iou} for u in best
        ],
        "files": [str(f) for f in files],
    }
    if args.json:
        print_json(summary)
        return 0
    print(
        f"{args.model} {subject.layer} on {dissection.probe} ({dissection.images} images): "
        f"{summary['named']} of {summary['units']} units named (IoU >= 0.05)"
    )
    print("  " + ", ".join(f"{category} {count}" for category, count in named.items()))
    for u in best:
        print(f"  unit {u.unit:<5} {u.label:<12} {u.category:<10} IoU {u.iou:.3f}")
    print(f"wrote {', '.join(f.name for f in files)} to {out}")
    return 0


def dissection_subject(name: str, layer: str | None, device: torch.device) -> LayerSubject:
    """The model behind ``--model``, what its layer's dissection runs through, and the default
    layer: a ShapesWorld model's image encoder output (co-attention explains a later,
    question-dependent map by default, whose units no image probe can name), or a classifier's
    explained layer."""
    from vlx.tasks.loading import load_task

    if name == "captioner":
        return load_task("caption", "shapes", device).dissection_subject(layer)
    if name in SHAPES_MODELS:
        return load_task("vqa", name, device).dissection_subject(layer)
    return load_task("classify", name, device).dissection_subject(layer)
