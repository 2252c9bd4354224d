"""``vlx evaluate METRIC``: score an adapter's explanations against ground truth.

The adapter comes from ``--task`` and ``--model``, the examples from ``--data``
(``vlx.evaluate.sources``), the measuring from ``vlx.evaluate.measures`` and the printing from
``vlx.evaluate.tables``: this command only reads the options and wires the three together.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from vlx.cli import print_json
from vlx.devices import resolve_device
from vlx.errors import InputError

DEFAULT_MODELS = {"classify": "shapes", "voc": "efficientnet_lite0"}
PERMUTED_CLASSIFIER = "shapes_classifier_permuted"
"""The shipped ShapesWorld classifier trained on shuffled labels (the data randomization test)."""


def run(args: argparse.Namespace) -> int:
    from vlx.evaluate import measures
    from vlx.evaluate.runner import measure
    from vlx.evaluate.sources import evaluation_data
    from vlx.evaluate.tables import PAPER, TABLES
    from vlx.files import check_output_folder
    from vlx.runs.distributed import current_rank, rank_device
    from vlx.tasks.loading import load_task

    rank = current_rank()
    device = rank_device(rank, resolve_device(args.device))
    _check_options(args)
    out = check_output_folder(args.out) if args.out else None
    kind = _kind(args)
    task = load_task(kind, _model(args, kind), device)
    layer = getattr(args, "layer", None)
    task.check_layer(layer)
    data = evaluation_data(task, args.data, args.images, args.metric)
    if args.metric == "pointing":
        metric = (measures.Rejection(args.reject_threshold or measures.REJECT_THRESHOLDS, layer)
                  if args.rejection else measures.Pointing(layer, args.method))
    elif args.metric == "localization":
        measured = measures.PredictedLocalization if kind == "classify" else measures.Localization
        metric = measured(args.method, args.threshold, args.iou, layer)
    elif args.metric == "energy":
        metric = measures.Energy(args.method, layer)
    elif args.metric == "deletion":
        metric = measures.Deletion(args.method, args.steps, args.insertion_baseline, layer)
    elif args.metric == "road":
        metric = measures.Road(args.method, args.fractions, args.noise, layer)
    elif args.metric == "sanity":
        metric = _sanity(args, kind, layer, device)
    else:
        metric = measures.Faithfulness(args.method, layer)
    result = measure(task, data, metric, batch_size=args.batch_size, workers=args.workers,
                     out=out, rank=rank)
    if not rank.main:
        return 0
    if args.metric == "localization":
        result.update(method=args.method, threshold=args.threshold, iou=args.iou)
    elif args.metric == "pointing" and not args.rejection:
        result.update(method=args.method)
    summary: dict[str, Any] = {
        "metric": args.metric,
        "task": kind,
        "data": data.label,
        "images": args.images,
        "layer": layer or task.layer,
        "paper": PAPER.get((args.metric, kind)),
        "model": task.name,
        **result,
    }
    if getattr(args, "figure", None):
        from vlx.evaluate.sanity_figure import randomization_figure
        from vlx.render import save_png

        example = data.build(data.groups[0])[0]
        figure = randomization_figure(task, example, metric, layer)
        summary["figure"] = str(save_png(figure, Path(args.figure)))
    if out is not None:
        from vlx.files import write_text_atomic

        write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    if args.json:
        print_json(summary)
    else:
        print(TABLES[args.metric](summary))
    return 0


def _check_options(args: argparse.Namespace) -> None:
    """Every option's value, checked before a model is loaded or a map computed."""
    if args.images < 1:
        raise InputError(f"--images must be at least 1, got {args.images}")
    if args.batch_size < 1 or args.workers < 0:
        raise InputError(f"--batch-size must be at least 1 and --workers at least 0, got "
                         f"{args.batch_size} and {args.workers}")
    if args.metric == "localization":
        if not 0 <= args.threshold <= 1:
            raise InputError(f"--threshold must be in [0, 1] (a fraction of the map's max), "
                             f"got {args.threshold}")
        if not 0 < args.iou <= 1:
            raise InputError(f"--iou must be in (0, 1], got {args.iou}")
    if getattr(args, "figure", None):
        from vlx.files import check_output_file

        check_output_file(args.figure, "--figure", "fig2.png")
    if args.metric == "deletion" and args.steps < 1:
        raise InputError(f"--steps must be at least 1, got {args.steps}")
    for value in getattr(args, "reject_threshold", None) or ():
        if not math.isfinite(value):
            raise InputError(f"--reject-threshold {value} is not a number")


def _sanity(args: argparse.Namespace, kind: str, layer: str | None, device: Any) -> Any:
    from vlx.evaluate import measures

    if args.randomization != "data":
        if args.against:
            raise InputError("--against names the model trained on shuffled labels: it goes "
                             "with --randomization data")
        return measures.ModelRandomization(args.method, args.randomization, layer, args.seed)
    from vlx.tasks.loading import load_task

    against = args.against
    if against is None:
        if kind != "classify" or _model(args, kind) != DEFAULT_MODELS["classify"]:
            raise InputError("--randomization data needs --against MODEL, the same model "
                             "trained on shuffled labels (shipped for the ShapesWorld classifier "
                             "only)")
        from vlx.models.registry import checkpoint_path

        against = f"shapes:{checkpoint_path(PERMUTED_CLASSIFIER)}"
    return measures.DataRandomization(load_task(kind, against, device), args.method, layer)


def _kind(args: argparse.Namespace) -> str:
    prefix = args.data.partition(":")[0]
    kind = args.task or {"voc": "classify", "coco": "caption"}.get(prefix)
    if kind is None:
        raise InputError("--task is required on ShapesWorld: classify, caption or vqa")
    if getattr(args, "rejection", False) and kind != "classify":
        raise InputError("--rejection scores a classifier's top-5 classes: use --task classify")
    return kind


def _model(args: argparse.Namespace, kind: str) -> str | None:
    """``--model`` (``--checkpoint``: a captioner checkpoint, as ``vlx caption`` takes it)."""
    if args.checkpoint is not None:
        if kind != "caption":
            raise InputError(f"--checkpoint names a captioner checkpoint; for --task {kind} "
                             "give the model with --model")
        if args.model:
            raise InputError("give the captioner once: --model or --checkpoint")
        if not Path(args.checkpoint).is_file():
            raise InputError(f"captioner checkpoint {args.checkpoint!r} does not exist")
        return args.checkpoint
    if args.model is None and kind == "classify":
        return DEFAULT_MODELS["voc" if args.data.startswith("voc:") else "classify"]
    return args.model
