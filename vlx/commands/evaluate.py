"""``vlx evaluate METRIC``: score explanations against ShapesWorld's ground truth."""

from __future__ import annotations

import argparse

from vlx.cli import print_json
from vlx.commands.explain import resolve_device
from vlx.errors import InputError

# The paper's figures for the same protocols (measured on COCO and VQA, not ShapesWorld).
PAPER = {
    ("pointing", "caption"): "30.0% pointing accuracy of per-word caption maps on COCO (Sec. 8.1.1)",
    ("faithfulness", "vqa"): (
        "rank correlation with occlusion on VQA: Grad-CAM 0.60, Guided Backprop 0.42 (Sec. 8.2)"
    ),
}


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if args.images < 1:
        raise InputError(f"--images must be at least 1, got {args.images}")
    from vlx.data.shapes import SPLITS, ShapesWorld

    world, first = ShapesWorld(seed=0), SPLITS["test"][0]
    layer = getattr(args, "layer", None)
    if args.task == "caption":
        from vlx.tasks.captioning import Captioner, caption_pointing

        model = Captioner.load(args.checkpoint, device)
    else:
        from vlx.tasks.vqa import VisualQA, vqa_faithfulness, vqa_pointing

        model = VisualQA.load(args.model, device)
    if layer:
        from vlx.layers import named_layer

        named_layer(model.model, layer)
    summary = {
        "metric": args.metric,
        "task": args.task,
        "split": "test",
        "images": args.images,
        "layer": layer or model.layer,
        "paper": PAPER.get((args.metric, args.task)),
    }
    if args.task == "caption":
        summary.update(caption_pointing(model, world, first, args.images, layer))
        table = caption_pointing_table
    elif args.metric == "pointing":
        summary["model"] = args.model
        summary["kinds"] = vqa_pointing(model, world, first, args.images, layer)
        table = vqa_pointing_table
    else:
        summary["model"] = args.model
        summary["methods"] = vqa_faithfulness(model, world, first, args.images)
        table = faithfulness_table
    if args.json:
        print_json(summary)
    else:
        print(table(summary))
    return 0


def _heading(summary: dict) -> list[str]:
    model = f", model {summary['model']}" if "model" in summary else ""
    title = (
        f"{summary['metric']}, task {summary['task']}{model}, {summary['images']} held-out "
        f"ShapesWorld scenes, layer {summary['layer']}"
    )
    return [title, ""]


def caption_pointing_table(summary: dict) -> str:
    """Per word category: Grad-CAM (any instance / described object) and the baselines."""
    header = (
        "| words | scored | Grad-CAM (any instance) | Grad-CAM (described object) | centre "
        "| random point |"
    )
    lines = [*_heading(summary), header, "|---|---|---|---|---|---|"]
    for category, lenient in summary["lenient"].items():
        strict = summary["strict"][category]
        lines.append(
            f"| {category} | {lenient['count']} | {lenient['accuracy']:.1%} | "
            f"{strict['accuracy']:.1%} | {lenient['centre']:.1%} | {lenient['random']:.1%} |"
        )
    return "\n".join([*lines, "", f"paper: {summary['paper']}"])


def vqa_pointing_table(summary: dict) -> str:
    """Per question kind: Grad-CAM on the object asked about, the baselines, accuracy."""
    lines = _heading(summary) + [
        "| questions | scored | Grad-CAM | centre | random point | answered correctly |",
        "|---|---|---|---|---|---|",
    ]
    for kind, row in summary["kinds"].items():
        lines.append(
            f"| {kind} | {row['count']} | {row['accuracy']:.1%} | {row['centre']:.1%} | "
            f"{row['random']:.1%} | {row['answered']:.1%} |"
        )
    return "\n".join(lines)


def faithfulness_table(summary: dict) -> str:
    """Mean rank correlation with occlusion per method, with its standard error."""
    lines = _heading(summary) + ["| method | rank correlation | std. error | maps |",
                                 "|---|---|---|---|"]
    for method, row in summary["methods"].items():
        lines.append(
            f"| {method} | {row['rank_correlation']:.3f} | {row['std_error']:.3f} | {row['count']} |"
        )
    return "\n".join([*lines, "", f"paper: {summary['paper']}"])
