"""``vlx evaluate METRIC``: score explanations against ShapesWorld's ground truth."""

from __future__ import annotations

import argparse

from vlx.cli import print_json
from vlx.commands.explain import resolve_device
from vlx.errors import InputError

# The paper's pointing accuracy for per-word captioning maps on COCO (Sec. 8.1.1).
PAPER_CAPTION_POINTING = 0.300


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if args.images < 1:
        raise InputError(f"--images must be at least 1, got {args.images}")
    from vlx.data.shapes import SPLITS, ShapesWorld
    from vlx.tasks.captioning import Captioner, caption_pointing

    captioner = Captioner.load(args.checkpoint, device)
    if args.layer:
        from vlx.layers import named_layer

        named_layer(captioner.model, args.layer)
    first, _ = SPLITS["test"]
    result = caption_pointing(captioner, ShapesWorld(seed=0), first, args.images, args.layer)
    summary = {
        "metric": "pointing",
        "task": args.task,
        "split": "test",
        "images": args.images,
        "layer": args.layer or captioner.layer,
        "paper_coco_caption_pointing": PAPER_CAPTION_POINTING,
        **result,
    }
    if args.json:
        print_json(summary)
    else:
        print(pointing_table(summary))
    return 0


def pointing_table(summary: dict) -> str:
    """A markdown table: per category, Grad-CAM next to the baselines and the paper."""
    lines = [
        (
            f"pointing game, task {summary['task']}, {summary['images']} held-out ShapesWorld "
            f"scenes, layer {summary['layer']}"
        ),
        "",
        (
            "| words | scored | Grad-CAM (any instance) | Grad-CAM (described object) "
            "| centre | random point |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for category, lenient in summary["lenient"].items():
        strict = summary["strict"][category]
        lines.append(
            f"| {category} | {lenient['count']} | {lenient['accuracy']:.1%} | "
            f"{strict['accuracy']:.1%} | {lenient['centre']:.1%} | {lenient['random']:.1%} |"
        )
    lines.append("")
    lines.append(
        f"paper (COCO, per-word caption maps, Sec. 8.1.1): {summary['paper_coco_caption_pointing']:.1%}"
    )
    return "\n".join(lines)
