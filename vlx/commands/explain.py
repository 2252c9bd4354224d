"""``vlx explain``: top-k predictions and one picture per (image, method, target)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch
from PIL import Image

from vlx.cli import print_json
from vlx.commands.textual import LayerSubject, explain_text, layer_units, text_method
from vlx.dissect.names import UnitName
from vlx.errors import InputError
from vlx.explanation import Explanation
from vlx.images import load_image
from vlx.render import explanation_picture, grid, save_png
from vlx.tasks.classification import ImageClassifier

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEMO_IMAGES = (ASSETS / "chelsea.jpg", ASSETS / "coffee.jpg")


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    reader = text_method(args.method) if args.text else None
    if args.top_k < 1:
        raise InputError(f"--top-k must be at least 1, got {args.top_k}")
    paths = list(DEMO_IMAGES) if args.demo else [Path(p) for p in args.images]
    if not paths and not args.list_classes:
        raise InputError("no image given; pass IMAGE files or --demo")
    images = [load_image(path) for path in paths]
    classifier = ImageClassifier.load(args.model, device)
    if args.list_classes:
        for index, name in enumerate(classifier.class_names):
            print(f"{index}\t{name}")
        return 0
    if args.layer:
        from vlx.layers import named_layer

        named_layer(classifier.model, args.layer)
    wanted = [classifier.class_index(t) for t in args.target] if args.target else None

    inputs = classifier.prepare(images)
    predictions = classifier.predict(inputs, args.top_k)
    targets = [wanted] * len(images) if wanted else [[p[0].index] for p in predictions]
    explanations = {
        method: classifier.explain(inputs, method, targets, layer=args.layer)
        for method in args.method
    }
    summary = {
        "command": "explain",
        "model": args.model,
        "layer": args.layer or classifier.layer or _first_layer(explanations),
        "out": str(Path(args.out)),
        "images": [],
    }
    units = layer_units(_subject(classifier, args, explanations[reader]), args) if reader else None
    out = Path(args.out)
    for n, (path, image) in enumerate(zip(paths, images)):
        stem = _unique_stem(path, n, paths)
        entries, panels = [], [("input", image)]
        for method, explanation in explanations.items():
            for t, index in enumerate(targets[n]):
                name = classifier.class_names[index]
                picture = explanation_picture(explanation, n, t, image)
                file = save_png(picture, out / f"{stem}_{method}_{slug(name)}.png")
                panels.append((f"{method}: {name}", picture))
                entries.append(
                    {
                        "method": method,
                        "index": index,
                        "name": name,
                        "score": float(explanation.scores[n, t]),
                        "peak": explanation.peaks((image.height, image.width))[n, t].tolist(),
                        "files": [str(file)],
                    }
                )
        if units is not None:
            _add_text(entries, explanations[reader], n, units, image, out, stem)
        sheet = save_png(grid(panels, columns=min(len(panels), 4)), out / f"{stem}_grid.png")
        summary["images"].append(
            {
                "image": str(path),
                "predictions": [
                    {"index": p.index, "name": p.name, "probability": p.probability, "logit": p.logit}
                    for p in predictions[n]
                ],
                "targets": entries,
                "files": [str(sheet)] + [file for e in entries for file in e["files"]],
            }
        )
    if args.json:
        print_json(summary)
    else:
        _print_human(summary)
    return 0


def _subject(
    classifier: ImageClassifier, args: argparse.Namespace, explanation: Explanation
) -> LayerSubject:
    layer = explanation.layer or classifier.layer
    to_grid = classifier.to_grid if layer == classifier.layer else None
    return LayerSubject(classifier.model, layer, classifier.prepare, args.model, to_grid=to_grid)


def _add_text(
    entries: list[dict], explanation: Explanation, n: int, units: list[UnitName],
    image: Image.Image, out: Path, stem: str,
) -> None:
    """The textual explanation of each target of image ``n`` into its entry of that method."""
    own = [e for e in entries if e["method"] == explanation.method]
    explain_text(
        explanation, n, units, own, [e["name"] for e in own], image,
        lambda t: out / f"{stem}_{explanation.method}_{slug(own[t]['name'])}_text.png",
    )


def resolve_device(name: str) -> torch.device:
    """A torch device from ``--device``; asking for a missing GPU is a clear error."""
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise InputError(f"unknown device {name!r}; valid: cpu, cuda, cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return torch.device(name)


def _first_layer(explanations: dict[str, Explanation]) -> str | None:
    return next((e.layer for e in explanations.values() if e.layer), None)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "target"


def _unique_stem(path: Path, index: int, paths: list[Path]) -> str:
    same = [p for p in paths if p.stem == path.stem]
    return path.stem if len(same) == 1 else f"{path.stem}-{index}"


def _print_human(summary: dict) -> None:
    for entry in summary["images"]:
        print(entry["image"])
        for rank, p in enumerate(entry["predictions"], start=1):
            print(f"  {rank}. {p['name']} ({p['index']})  p={p['probability']:.3f}")
        for target in entry["targets"]:
            print(f"  {target['method']} for {target['name']}: peak {target['peak']} -> "
                  f"{target['files'][0]}")
            if "text" in target:
                print(f"    {target['text']['sentence']}")
    print(f"wrote {sum(len(e['files']) for e in summary['images'])} files to {summary['out']}")
