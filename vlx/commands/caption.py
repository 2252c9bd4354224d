"""``vlx caption``: caption an image and explain each word (paper Fig. 11)."""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from vlx.cli import print_json
from vlx.commands.runner import (
    Layout,
    Run,
    check_outputs,
    explain_batch,
    start_writing,
    text_subject,
    write_figures,
)
from vlx.commands.textual import explain_text, layer_units
from vlx.devices import resolve_device
from vlx.errors import InputError
from vlx.files import slug
from vlx.images import load_image
from vlx.task import Example
from vlx.tasks.captioning import EVERY_WORD, WHOLE_CAPTION


def run(args: argparse.Namespace) -> int:
    from vlx.tasks.loading import load_task

    if args.data:
        if args.image or args.caption is not None or args.whole:
            raise InputError("--data explains a dataset: give it without IMAGE, --caption or "
                             "--whole")
        from vlx.runs.run import run_dataset

        def load(device: object):
            captioner = load_task("caption", args.checkpoint or args.model, device)
            captioner.beam = args.beam
            return captioner

        return run_dataset(args, check_outputs(args), load, "caption")
    device = resolve_device(args.device)
    if args.beam < 0 or args.beam == 1:
        raise InputError(f"--beam must be 0 (greedy) or a width of at least 2, got {args.beam}")
    if args.caption is not None and not args.caption.strip():
        raise InputError("--caption is empty; give the words to explain")
    if args.checkpoint and args.model != "shapes":
        raise InputError("give the captioner once: --model or --checkpoint")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise InputError(f"captioner checkpoint {args.checkpoint!r} does not exist")
    out = check_outputs(args)
    image, name = _image(args)
    captioner = load_task("caption", args.checkpoint or args.model, device)
    captioner.beam = args.beam
    wanted = [w.lower() for w in args.words] if args.words else [EVERY_WORD]
    requested = wanted + ([WHOLE_CAPTION] if args.whole else [])
    done = explain_batch(captioner, [Example(image, args.caption, name)], args,
                         lambda predictions: requested)
    rows = done.targets.rows[0]
    entries = word_entries(done)
    units = None
    if args.text:
        subject, read = text_subject(done, args)
        units = layer_units(subject, args)
    start_writing(out)
    files = write_figures(done, entries, LAYOUT,
                          lambda method: out / f"{slug(name)}_{method}_words.png")
    if units is not None:
        files += explain_text(
            read, 0, units, entries, [t.name for t in rows], done.shown[0],
            lambda t: out / f"{slug(name)}_{read.method}_{rows[t].id:02d}-{slug(rows[t].name)}"
            "_text.png",
        )
    summary = record(done, entries, files)
    if args.json:
        print_json(summary)
    else:
        print(f"{name}: {summary['generated']}")
        for entry in summary["words"]:
            print(f"  {entry['word']:<12} log p = {entry['log_prob']:7.3f}  peak {entry['peak']}")
            if "text" in entry:
                print(f"    {entry['text']['sentence']}")
        print(f"wrote {len(files)} figure(s) to {out}")
    return 0


def word_entries(done: Run) -> list[dict]:
    """Per explained word of example 0: its position, text and log-prob (the score of the
    first method), as ``--json`` lists them."""
    scores = next(iter(done.explanations.values())).scores[0].tolist()
    return [{"position": t.id, "word": t.name, "log_prob": float(s)}
            for t, s in zip(done.targets.rows[0], scores)]


def record(done: Run, entries: list[dict], files: list[str]) -> dict:
    """What ``--json`` prints for example 0 (the page offers the same record)."""
    return {
        "command": "caption",
        "image": done.batch.examples[0].name,
        "generated": " ".join(done.predictions[0][0].words),
        "caption": " ".join(done.targets.context[0].units),
        "layer": done.layer,
        "words": entries,
        "files": files,
    }


def _figure_caption(done: Run) -> str:
    given = done.batch.examples[0].text is not None
    return ("caption: " if given else "generated: ") + " ".join(done.targets.context[0].units)


LAYOUT = Layout(label=lambda entry: entry["word"], caption=_figure_caption, columns=6,
                panel_size=160)
"""The figure of the paper's Fig. 11: one overlay per word, the caption underneath."""


def _image(args: argparse.Namespace) -> tuple[Image.Image, str]:
    if args.image:
        return load_image(args.image), Path(args.image).stem
    from vlx.data.shapes import SPLITS, ShapesWorld

    first, length = SPLITS["test"]
    if not 0 <= args.scene < length:
        raise InputError(f"--scene {args.scene} is out of range; valid: 0..{length - 1}")
    scene = ShapesWorld(seed=0).scene(first + args.scene)
    return Image.fromarray(scene.image), f"shapes-test-{args.scene}"
