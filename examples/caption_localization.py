"""What makes a captioner's per-word Grad-CAM maps localize? A pointing-game study.

For one or more Show-and-Tell checkpoints, scores the pointing game on held-out ShapesWorld
scenes for every combination of
  - the layer explained (the encoder's three stages: strides 4, 8, 8; receptive fields
    about 15, 40 and 70 pixels),
  - the target (the word's log-probability, as the paper, or its pre-softmax logit),
and prints one markdown table (accuracy on any instance of the word's category / on the one
object the word describes). Checkpoints trained with `vlx train captioner --pool mean`
(global average pooling only) or stopped early show what pooling and training length do.

    python examples/caption_localization.py --images 200 \
        --checkpoint shipped=models/checkpoints/captioner_shapes.pt --checkpoint gap=gap.pt
"""

from __future__ import annotations

import argparse
import json

from vlx.data.shapes import SPLITS, ShapesWorld
from vlx.models.captioner_training import object_naming
from vlx.tasks.captioning import WORD_SCORES, Captioner, caption_pointing

LAYERS = ("encoder.stages.0", "encoder.stages.1", "encoder.stages.2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="held-out test scenes")
    parser.add_argument(
        "--checkpoint", action="append", metavar="NAME=PATH",
        help="checkpoints to compare (default: the shipped one)",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    checkpoints = dict(c.split("=", 1) for c in args.checkpoint or []) or {"shipped": None}
    world = ShapesWorld(seed=0)
    first = SPLITS["test"][0]
    rows = []
    for name, path in checkpoints.items():
        captioner = Captioner.load(path)
        naming = object_naming(captioner.model, captioner.vocabulary, world, args.images)
        for layer in LAYERS:
            for score in WORD_SCORES:
                result = caption_pointing(captioner, world, first, args.images, layer,
                                          progress=False, score=score)
                rows.append({"checkpoint": name, "pool": captioner.model.config.pool,
                             "object_naming": naming["object_naming"], "layer": layer,
                             "score": score, **result})
    print(f"pointing game on {args.images} held-out ShapesWorld scenes "
          "(any instance / described object)\n")
    print("| checkpoint | pool | objects named | layer | target | colour | shape | texture |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        cells = [
            f"{row['lenient'][c]['accuracy']:.1%} / {row['strict'][c]['accuracy']:.1%}"
            for c in ("colour", "shape", "texture")
        ]
        print(f"| {row['checkpoint']} | {row['pool']} | {row['object_naming']:.1%} | "
              f"{row['layer']} | {row['score']} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(rows, stream, indent=2)


if __name__ == "__main__":
    main()
