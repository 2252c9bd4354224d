"""``vlx explain``: top-k predictions and one picture per (image, method, target)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vlx.cli import print_json
from vlx.commands.runner import (
    Run,
    check_outputs,
    explain_batch,
    grid_sheet,
    start_writing,
    text_subject,
)
from vlx.commands.textual import explain_text, layer_units
from vlx.devices import resolve_device
from vlx.errors import InputError
from vlx.files import slug
from vlx.images import DEMO_IMAGES, load_image
from vlx.render import Picture, explanation_picture, save_png
from vlx.task import Example


def run(args: argparse.Namespace) -> int:
    from vlx.tasks.loading import load_task

    if args.data:
        if args.images or args.demo or args.list_classes:
            raise InputError("--data explains a dataset: give it without IMAGE files or --demo")
        from vlx.runs.run import run_dataset

        return run_dataset(args, check_outputs(args),
                           lambda device: load_task("classify", args.model, device), "classify")
    device = resolve_device(args.device)
    if args.top_k < 1:
        raise InputError(f"--top-k must be at least 1, got {args.top_k}")
    paths = list(DEMO_IMAGES) if args.demo else [Path(p) for p in args.images]
    if not paths and not args.list_classes:
        raise InputError("no image given; pass IMAGE files or --demo")
    out = check_outputs(args)
    images = [load_image(path) for path in paths]
    task = load_task("classify", args.model, device)
    if args.list_classes:
        for index, name in enumerate(task.class_names):
            print(f"{index}\t{name}")
        return 0
    wanted = [task.class_index(t) for t in args.target] if args.target else None
    stems = [_unique_stem(path, n, paths) for n, path in enumerate(paths)]
    examples = [Example(image, None, stem) for image, stem in zip(images, stems)]
    done = explain_batch(task, examples, args, lambda predictions: wanted, top_k=args.top_k)
    units = None
    if args.text:
        subject, read = text_subject(done, args)
        units = layer_units(subject, args)
    start_writing(out)
    summary = {"command": "explain", "model": args.model, "layer": done.layer,
               "out": str(out), "images": []}
    for n, (path, stem) in enumerate(zip(paths, stems)):
        shown = done.shown[n]
        entries, panels = explained_targets(done, n)
        for entry, (_, picture) in zip(entries, panels):
            file = save_png(picture, out / f"{stem}_{entry['method']}_{slug(entry['name'])}.png")
            entry["files"] = [str(file)]
        if units is not None:
            own = [e for e in entries if e["method"] == read.method]
            explain_text(
                read, n, units, own, [e["name"] for e in own], shown,
                lambda t, own=own, stem=stem: out / f"{stem}_{read.method}_"
                f"{slug(own[t]['name'])}_text.png",
            )
        sheet = save_png(grid_sheet([("input", shown), *panels]), out / f"{stem}_grid.png")
        files = [str(sheet)] + [file for e in entries for file in e["files"]]
        summary["images"].append(image_record(done, n, str(path), entries, files))
    if args.json:
        print_json(summary)
    else:
        _print_human(summary)
    return 0


def explained_targets(done: Run, n: int) -> tuple[list[dict], list[tuple[str, Picture]]]:
    """Per (method, target) of example ``n``: its ``--json`` entry and its labelled picture,
    in the order of the image's grid."""
    entries, panels = [], []
    for method, explanation in done.explanations.items():
        for t, target in enumerate(done.targets.rows[n]):
            panels.append((f"{method}: {target.name}",
                           explanation_picture(explanation, n, t, done.shown[n])))
            entries.append({
                "method": method, "index": target.id, "name": target.name,
                "score": float(explanation.scores[n, t]), "peak": done.peak(explanation, n, t),
            })
    return entries, panels


def image_record(done: Run, n: int, image: str, entries: list[dict], files: list[str]) -> dict:
    """What ``--json`` prints for example ``n`` (the page offers the same record)."""
    size = done.batch.examples[n].image.size
    return {
        "image": image,
        "size": [size[0], size[1]],
        "predictions": [
            {"index": p.index, "name": p.name, "probability": p.probability, "logit": p.score}
            for p in done.predictions[n]
        ],
        "targets": entries,
        "files": files,
    }


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
