"""``vlx vqa``: answer a question and explain the predicted and forced answers (Fig. 12)."""

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


def run(args: argparse.Namespace) -> int:
    from vlx.tasks.loading import load_task

    if args.data:
        if args.image or args.question:
            raise InputError("--data explains a dataset: give it without IMAGE and QUESTION")
        from vlx.runs.run import run_dataset

        return run_dataset(args, check_outputs(args), lambda device: load_task("vqa", args.model, device),
                           "vqa")
    device = resolve_device(args.device)
    out = check_outputs(args)
    image, question, name = _inputs(args)
    vqa = load_task("vqa", args.model, device)
    example = Example(image, question, name)
    forced = list(args.answers or [])
    if forced:  # checked before any explaining: an answer the model cannot give is an error
        vqa.targets(vqa.prepare([example]), [forced])

    def requested(predictions: list) -> list:
        return list(dict.fromkeys([predictions[0][0].name, *forced]))

    done = explain_batch(vqa, [example], args, requested, top_k=3)
    entries = answer_entries(done, forced)
    units = None
    if args.text:
        subject, read = text_subject(done, args)
        units = layer_units(subject, args)
    start_writing(out)
    files = write_figures(done, entries, LAYOUT,
                          lambda method: out / f"{slug(name)}_{method}_answers.png")
    if units is not None:
        labels = [entry["answer"] for entry in entries]
        files += explain_text(
            read, 0, units, entries, labels, done.shown[0],
            lambda t: out / f"{slug(name)}_{read.method}_{slug(labels[t])}_text.png",
        )
    summary = record(done, args.model, entries, files)
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


def answer_entries(done: Run, forced: list[str]) -> list[dict]:
    """Per explained answer of example 0: its name, index, whether it was forced, its
    probability and score (the first method's), as ``--json`` lists them."""
    task, row = done.task, done.targets.rows[0]
    probabilities = task.probabilities(done.batch, done.targets)[0].tolist()
    scores = next(iter(done.explanations.values())).scores[0].tolist()
    forced_names = {t.name for t in task.targets(done.batch, [forced]).rows[0]} if forced else set()
    return [
        {"answer": t.name, "index": t.id, "forced": t.name in forced_names,
         "probability": p, "score": s}
        for t, p, s in zip(row, probabilities, scores)
    ]


def record(done: Run, model: str, entries: list[dict], files: list[str]) -> dict:
    """What ``--json`` prints for example 0 (the page offers the same record)."""
    example, top = done.batch.examples[0], done.predictions[0]
    return {
        "command": "vqa",
        "image": example.name,
        "question": example.text,
        "unknown_words": done.task.unknown_words(example.text),
        "model": model,
        "layer": done.layer,
        "answer": top[0].name,
        "top": [{"answer": a.name, "probability": a.probability} for a in top],
        "answers": entries,
        "files": files,
    }


LAYOUT = Layout(label=lambda entry: f"{entry['answer']} ({entry['probability']:.2f})",
                caption=lambda done: f"Q: {done.batch.examples[0].text}", columns=5,
                panel_size=180)
"""The figure of the paper's Fig. 12: one overlay per answer, the question underneath."""


def _inputs(args: argparse.Namespace) -> tuple[Image.Image, str, str]:
    if args.image:
        if not args.question:
            raise InputError("a QUESTION is needed with an IMAGE, e.g. 'what color is the circle?'")
        if not args.question.strip():
            raise InputError("the QUESTION is empty; ask something, e.g. 'what color is the circle?'")
        return load_image(args.image), args.question, Path(args.image).stem
    from vlx.data.shapes import SPLITS, ShapesWorld

    first, length = SPLITS["test"]
    if not 0 <= args.scene < length:
        raise InputError(f"--scene {args.scene} is out of range; valid: 0..{length - 1}")
    scene = ShapesWorld(seed=0).scene(first + args.scene)
    questions = scene.questions()
    question = args.question or next((q.text for q in questions if q.kind == "colour"), questions[0].text)
    return Image.fromarray(scene.image), question, f"shapes-test-{args.scene}"
