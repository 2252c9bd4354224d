"""``vlx train MODEL``: train a model and write its checkpoint with metadata."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlx.commands.explain import resolve_device
from vlx.errors import InputError


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    for name in ("steps", "batch", "checkpoint_every", "eval_images"):
        if name == "steps" and getattr(args, "init", None) and args.steps == 0:
            continue  # --init X --steps 0: X's weights as they are, e.g. at another --stride
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.trainee == "captioner":
        from vlx.models.captioner_training import CaptionerTraining, train_captioner

        options = CaptionerTraining(
            out=Path(args.out), data=args.data, steps=args.steps, batch=args.batch, lr=args.lr,
            seed=args.seed, checkpoint_every=args.checkpoint_every,
            eval_images=args.eval_images, resume=args.resume, device=str(device), pool=args.pool,
            coordinates=args.coordinates, stride=args.stride,
            init=Path(args.init) if args.init else None, receptive_field=args.receptive_field,
        )
        metrics = train_captioner(options)
    elif args.trainee == "classifier":
        from vlx.models.shapes_classifier import (
            ClassifierTraining,
            ShapesClassification,
            train_shapes_classifier,
        )

        if args.data != "shapes":
            raise InputError(f"--data {args.data!r}: the classifier trains on ShapesWorld only")
        if args.resume:
            raise InputError("--resume: the classifier trains in one go (2000 steps: minutes)")
        if not 32 <= args.image_size <= 256:
            raise InputError(f"--image-size must be 32..256 pixels, got {args.image_size}")
        data = ShapesClassification(image_size=args.image_size, object_scale=args.object_scale,
                                    seed=args.seed)
        options = ClassifierTraining(
            out=Path(args.out), data=data, steps=args.steps, batch=args.batch, lr=args.lr,
            seed=args.seed, eval_images=args.eval_images, device=str(device),
        )
        metrics = train_shapes_classifier(options)[1]
    else:
        from vlx.models.vqa_training import VQATraining, train_vqa

        options = VQATraining(
            out=Path(args.out), model=args.model, data=args.data, steps=args.steps,
            batch=args.batch, lr=args.lr, seed=args.seed, checkpoint_every=args.checkpoint_every,
            eval_images=args.eval_images, resume=args.resume, device=str(device),
        )
        metrics = train_vqa(options)
    print(json.dumps({"out": args.out, "metrics": metrics}, indent=2))
    return 0
