"""``vlx train MODEL``: train a model and write its checkpoint with metadata."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlx.devices import resolve_device
from vlx.errors import InputError

COMMON = ("data", "steps", "batch", "lr", "seed", "checkpoint_every", "eval_images", "resume",
          "force")


def run(args: argparse.Namespace) -> int:
    from vlx.training import train

    device = resolve_device(args.device)
    if args.steps < 1 and not getattr(args, "init", None):
        raise InputError(f"--steps must be at least 1, got {args.steps} (--steps 0 only "
                         "converts an --init captioner)")
    common = {name: getattr(args, name) for name in COMMON}
    common.update(out=Path(args.out), device=str(device))
    if args.trainee == "captioner":
        from vlx.models.captioner_training import CaptionerRecipe, CaptionerTraining

        recipe, options = CaptionerRecipe, CaptionerTraining(
            **common, pool=args.pool, coordinates=args.coordinates, stride=args.stride,
            init=Path(args.init) if args.init else None, receptive_field=args.receptive_field,
        )
    elif args.trainee == "classifier":
        from vlx.models.classifier_training import ClassifierRecipe, ClassifierTraining
        from vlx.models.shapes_classifier import ShapesClassification

        if not 32 <= args.image_size <= 256:
            raise InputError(f"--image-size must be 32..256 pixels, got {args.image_size}")
        if not 0 < args.object_scale <= 3:
            raise InputError(f"--object-scale must be in (0, 3], got {args.object_scale}")
        if args.training_scenes < 0 or (args.permuted_labels and not args.training_scenes):
            raise InputError("--permuted-labels needs --training-scenes N (N >= 1), got "
                             f"{args.training_scenes}")
        classification = ShapesClassification(
            image_size=args.image_size, object_scale=args.object_scale, seed=args.seed,
            training_scenes=args.training_scenes, permuted_labels=args.permuted_labels,
        )
        recipe, options = ClassifierRecipe, ClassifierTraining(
            **common, classification=classification
        )
    else:
        from vlx.models.vqa_training import VQARecipe, VQATraining

        recipe, options = VQARecipe, VQATraining(**common, model=args.model)
    metrics = train(recipe, options).metrics
    print(json.dumps({"out": args.out, "metrics": metrics}, indent=2))
    return 0
