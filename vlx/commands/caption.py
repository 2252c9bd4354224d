"""``vlx caption``: caption an image and explain each word (paper Fig. 11)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from vlx.cli import print_json
from vlx.commands.explain import resolve_device, slug
from vlx.commands.figures import write_figures
from vlx.commands.textual import LayerSubject, explain_text, layer_units, text_method
from vlx.errors import InputError
from vlx.images import load_image
from vlx.methods import check_methods
from vlx.tasks.captioning import WHOLE_CAPTION, Captioner

if TYPE_CHECKING:
    from vlx.tasks.hf_captioning import HFCaptioner


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    check_methods(args.method)
    reader = text_method(args.method) if args.text else None
    if args.beam < 0:
        raise InputError(f"--beam must be 0 (greedy) or a width of at least 2, got {args.beam}")
    if args.caption is not None and not args.caption.strip():
        raise InputError("--caption is empty; give the words to explain")
    image, name = _image(args)
    if args.model == "shapes":
        captioner = Captioner.load(args.checkpoint, device)
    else:
        from vlx.tasks.hf_loading import hf_directory, load_hf_captioner

        captioner = load_hf_captioner(hf_directory(args.model), device)
    if args.layer:
        from vlx.layers import named_layer

        named_layer(captioner.model, args.layer)
    inputs = captioner.prepare([image])
    generated = captioner.caption(inputs, beam=args.beam)[0]
    words = captioner.words(args.caption) if args.caption is not None else generated
    if not words:
        raise InputError("the model generated an empty caption; pass one with --caption")
    positions = _positions(words, args.words)
    explanations = {
        m: captioner.explain(
            inputs, words, m, whole_caption=args.whole, layer=args.layer, positions=positions
        )
        for m in args.method
    }

    out = Path(args.out)
    labels = [words[p] for p in positions] + ([WHOLE_CAPTION] if args.whole else [])
    places = positions + ([len(words)] if args.whole else [])
    scores = explanations[args.method[0]].scores[0].tolist()
    entries = [
        {"position": p, "word": label, "log_prob": score}
        for p, label, score in zip(places, labels, scores)
    ]
    files = write_figures(
        explanations, image, entries, label=lambda entry: entry["word"],
        caption=("caption: " if args.caption is not None else "generated: ") + " ".join(words),
        path=lambda method: out / f"{slug(name)}_{method}_words.png", columns=6, panel_size=160,
    )
    if reader:
        units = layer_units(_subject(captioner, args, inputs), args)
        files += explain_text(
            explanations[reader], 0, units, entries, labels, image,
            lambda t: out / f"{slug(name)}_{reader}_{places[t]:02d}-{slug(labels[t])}_text.png",
        )
    summary = {
        "command": "caption",
        "image": name,
        "generated": " ".join(generated),
        "caption": " ".join(words),
        "layer": args.layer or captioner.layer,
        "words": entries,
        "files": files,
    }
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


def _subject(
    captioner: Captioner | HFCaptioner, args: argparse.Namespace, inputs: torch.Tensor
) -> LayerSubject:
    """Dissect the explained layer through the image encoder alone: no caption needed."""
    layer = args.layer or captioner.layer
    if isinstance(captioner, Captioner):
        name = Path(args.checkpoint).stem if args.checkpoint else "captioner"
        return LayerSubject(captioner.model, layer, captioner.prepare, name,
                            forward=captioner.model.encoder)
    from vlx.tasks.hf_captioning import BlipCaptioner
    from vlx.tasks.hf_grid import PatchGrid, patch_grids

    model = captioner.model
    encoder = model.vision_model if isinstance(captioner, BlipCaptioner) else model.encoder
    return LayerSubject(
        model, layer, captioner.prepare, args.model,
        forward=lambda pixels: encoder(pixel_values=pixels),
        to_grid=PatchGrid(patch_grids(captioner.vision_config, *inputs.shape[-2:])),
    )


def _image(args: argparse.Namespace) -> tuple[Image.Image, str]:
    if args.image:
        return load_image(args.image), Path(args.image).stem
    from vlx.data.shapes import SPLITS, ShapesWorld

    first, length = SPLITS["test"]
    if not 0 <= args.scene < length:
        raise InputError(f"--scene {args.scene} is out of range; valid: 0..{length - 1}")
    scene = ShapesWorld(seed=0).scene(first + args.scene)
    return Image.fromarray(scene.image), f"shapes-test-{args.scene}"


def _positions(words: list[str], wanted: list[str] | None) -> list[int]:
    """Positions of the words to show: all, or every occurrence of the ``--words`` given."""
    if not wanted:
        return list(range(len(words)))
    positions = []
    for word in wanted:
        found = [t for t, w in enumerate(words) if w == word.lower()]
        if not found:
            raise InputError(f"word {word!r} is not in the caption; its words: {' '.join(words)}")
        positions.extend(found)
    return sorted(set(positions))
