"""``vlx vqa``: answer a question and explain the predicted and forced answers (Fig. 12)."""

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
from vlx.models.vqa_lstm_cnn import ENCODER_LAYER
from vlx.tasks.vqa import VisualQA

if TYPE_CHECKING:
    from vlx.tasks.hf_vqa import HFVisualQA


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    check_methods(args.method)
    reader = text_method(args.method) if args.text else None
    image, question, name = _inputs(args)
    if args.model.startswith("hf:"):
        from vlx.tasks.hf_loading import hf_directory, load_hf_vqa

        vqa = load_hf_vqa(hf_directory(args.model), device)
    else:
        vqa = VisualQA.load(args.model, device)
    if args.layer:
        from vlx.layers import named_layer

        named_layer(vqa.model, args.layer)
    questions = vqa.encode(question)
    forced = [vqa.answer_index(a) for a in args.answers or []]
    inputs = vqa.prepare([image])
    subject = _subject(vqa, args, inputs) if reader else None
    predicted = vqa.predict(inputs, questions, top_k=3)[0]
    targets = list(dict.fromkeys([predicted[0].index, *forced]))
    explanations = {m: vqa.explain(inputs, questions, [targets], m, args.layer) for m in args.method}

    out = Path(args.out)
    probabilities = vqa.probabilities(inputs, questions)[0].tolist()
    scores = explanations[args.method[0]].scores[0].tolist()
    entries = [
        {"answer": vqa.answers[i], "index": i, "forced": i in forced,
         "probability": probabilities[i], "score": score}
        for i, score in zip(targets, scores)
    ]
    files = write_figures(
        explanations, image, entries,
        label=lambda entry: f"{entry['answer']} ({entry['probability']:.2f})",
        caption=f"Q: {question}", path=lambda method: out / f"{slug(name)}_{method}_answers.png",
        columns=5, panel_size=180,
    )
    if reader and subject is not None:
        units = layer_units(subject, args)
        labels = [entry["answer"] for entry in entries]
        read = explanations[reader]
        if subject.layer != (args.layer or vqa.layer):
            read = vqa.explain(inputs, questions, [targets], reader, subject.layer)
        files += explain_text(
            read, 0, units, entries, labels, image,
            lambda t: out / f"{slug(name)}_{reader}_{slug(labels[t])}_text.png",
        )
    summary = {
        "command": "vqa",
        "image": name,
        "question": question,
        "unknown_words": vqa.unknown_words(question),
        "model": args.model,
        "layer": args.layer or vqa.layer,
        "answer": predicted[0].text,
        "top": [{"answer": a.text, "probability": a.probability} for a in predicted],
        "answers": entries,
        "files": files,
    }
    if args.json:
        print_json(summary)
    else:
        print(f"{name}: Q: {question}  A: {summary['answer']}")
        for entry in entries:
            tag = " (forced)" if entry["forced"] else ""
            print(f"  {entry['answer']:<10}{tag} p = {entry['probability']:.3f}  "
                  f"score {entry['score']:.3f}  peak {entry['peak']}")
            if "text" in entry:
                print(f"    {entry['text']['sentence']}")
        print(f"wrote {len(files)} figure(s) to {out}")
    return 0


def _subject(
    vqa: VisualQA | HFVisualQA, args: argparse.Namespace, inputs: torch.Tensor
) -> LayerSubject:
    """Dissect the explained layer through the image encoder alone where the model has one;
    ViLT reads image and question in one transformer, so its probe images go with an empty
    question. A layer that depends on the question (co-attention's ``attended``) has no
    question-free units to name, so its text reads the encoder's output instead."""
    layer = args.layer or vqa.layer
    if isinstance(vqa, VisualQA):
        if args.layer is None:
            layer = ENCODER_LAYER
        elif not layer.startswith("encoder."):
            raise InputError(
                f"--text names the units of an image layer, and {layer!r} depends on the "
                f"question; valid: a layer of the image encoder, e.g. {ENCODER_LAYER}"
            )
        return LayerSubject(vqa.model, layer, vqa.prepare, args.model, forward=vqa.model.encoder)
    from vlx.tasks.hf_grid import PatchGrid, patch_grids
    from vlx.tasks.hf_vqa import BlipVQA, ViltPatchOrder

    model = vqa.model
    if isinstance(vqa, BlipVQA):
        grid = PatchGrid(patch_grids(model.config.vision_config, *inputs.shape[-2:]))
        return LayerSubject(
            model, layer, vqa.prepare, args.model,
            forward=lambda pixels: model.vision_model(pixel_values=pixels), to_grid=grid,
        )
    order = ViltPatchOrder(model)
    empty = vqa.tokenizer("", return_tensors="pt")["input_ids"].to(vqa.device)

    def forward(pixels: torch.Tensor) -> object:
        questions = empty.expand(pixels.shape[0], -1)
        with order:
            return model(questions, vqa.attention_mask(questions), None, pixels)

    return LayerSubject(model, layer, vqa.prepare, args.model, forward=forward, to_grid=order)


def _inputs(args: argparse.Namespace) -> tuple[Image.Image, str, str]:
    if args.image:
        if not args.question:
            raise InputError("a QUESTION is needed with an IMAGE, e.g. 'what color is the circle?'")
        return load_image(args.image), args.question, Path(args.image).stem
    from vlx.data.shapes import SPLITS, ShapesWorld

    first, length = SPLITS["test"]
    if not 0 <= args.scene < length:
        raise InputError(f"--scene {args.scene} is out of range; valid: 0..{length - 1}")
    scene = ShapesWorld(seed=0).scene(first + args.scene)
    questions = scene.questions()
    question = args.question or next((q.text for q in questions if q.kind == "colour"), questions[0].text)
    return Image.fromarray(scene.image), question, f"shapes-test-{args.scene}"
