"""What makes a captioner's per-word Grad-CAM maps localize? A pointing-game study.

For one or more Show-and-Tell checkpoints, scores the pointing game on held-out ShapesWorld
scenes for every combination of
  - the layer explained (the encoder's three stages: strides 4, 8, 8; receptive fields
    about 15, 40 and 70 pixels),
  - the target (the word's log-probability, as the paper, or its pre-softmax logit),
and writes one markdown table (accuracy on any instance of the word's category / on the one
object the word describes) to ``OUT/results/caption_localization.md``. Checkpoints trained with
`vlx train captioner --pool what-where` or stopped early show what pooling and training length do.

    python examples/caption_localization.py --images 200 \\
        --checkpoint shipped=models/checkpoints/captioner_shapes.pt --checkpoint moments=m.pt
    python examples/caption_localization.py --fast
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _shapes_classifiers import markdown_table, percent, write_results

from vlx.data.shapes import ShapesWorld
from vlx.devices import resolve_device
from vlx.evaluate.measures import Pointing
from vlx.evaluate.runner import measure
from vlx.evaluate.sources import evaluation_data
from vlx.files import write_text_atomic
from vlx.models.captioner_training import object_naming
from vlx.tasks.captioning import WORD_SCORES, ShowAndTellCaptioner
from vlx.training import progress

LAYERS = ("encoder.stages.0", "encoder.stages.1", "encoder.stages.2")
CATEGORIES = ("colour", "shape", "texture")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="held-out test scenes (200)")
    parser.add_argument(
        "--checkpoint", action="append", metavar="NAME=PATH",
        help="checkpoints to compare (default: the shipped one)",
    )
    parser.add_argument("--fast", action="store_true", help="3 scenes: seconds, for the tests")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="results folder (docs)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    device = str(resolve_device(args.device))
    images = 3 if args.fast else args.images
    checkpoints = dict(c.split("=", 1) for c in args.checkpoint or []) or {"shipped": None}
    world = ShapesWorld(seed=0)
    rows = []
    runs = [(n, layer, s) for n in checkpoints for layer in LAYERS for s in WORD_SCORES]
    loaded: dict[str, tuple[ShowAndTellCaptioner, float]] = {}
    for step in progress(0, len(runs), "caption localization"):
        name, layer, score = runs[step]
        if name not in loaded:
            captioner = ShowAndTellCaptioner.load(checkpoints[name], device)
            naming = object_naming(captioner.model, captioner.vocabulary, world, images)
            loaded[name] = (captioner, naming["object_naming"])
        captioner, named = loaded[name]
        captioner.score = score
        data = evaluation_data(captioner, "shapes", images, "pointing")
        result = measure(captioner, data, Pointing(layer))["categories"]
        rows.append({"checkpoint": name, "pool": captioner.model.config.pool,
                     "object_naming": named, "layer": layer, "score": score, "pointing": result})
    table = markdown_table(
        ["checkpoint", "pool", "objects named", "layer", "target", *CATEGORIES],
        [
            [row["checkpoint"], row["pool"], percent(row["object_naming"]), row["layer"],
             row["score"], *(f"{percent(row['pointing'][c]['accuracy'])} / "
                             f"{percent(row['pointing'][c]['described'])}" for c in CATEGORIES)]
            for row in rows
        ],
    )
    write_results(
        args.out, "caption_localization",
        f"# Where per-word caption maps point, by layer and target\n\nPointing game on {images} "
        "held-out ShapesWorld scenes (any instance / described object).\n\n" + table,
    )
    if args.json:
        write_text_atomic(args.json, json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
