"""What ``vlx explain``, ``vlx caption`` and ``vlx vqa`` share: one run over the task contract.

Every option is checked before any work (the device, the methods, where files go, the layer,
``--text``'s probe and layer), then one batch is prepared, predicted, its targets resolved and
explained by every method; the commands only choose the examples and the targets and lay out
their figures and printout. Pictures are drawn on the image scaled to ``--max-side``, so memory
follows what is shown; peaks are reported in the image's own pixels.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from vlx.errors import InputError
from vlx.explanation import Explanation
from vlx.files import check_output_folder, sweep_temporaries
from vlx.images import bounded
from vlx.methods import check_methods
from vlx.render import Picture, explanation_picture, grid, save_png
from vlx.task import Batch, Example, LayerSubject, Prediction, Requested, TargetSet, Task


@dataclass
class Run:
    """One explained batch: the examples as drawn (``shown``), what the model predicted, the
    targets and one explanation per method."""

    task: Task
    batch: Batch
    predictions: list[list[Prediction]]
    targets: TargetSet
    explanations: dict[str, Explanation]
    shown: list[Image.Image]
    layer: str | None

    def peak(self, explanation: Explanation, n: int, t: int) -> list[int]:
        """``[x, y]`` of map (n, t)'s maximum in example n's own pixels, located on the
        overlay as drawn."""
        image, shown = self.batch.examples[n].image, self.shown[n]
        one = explanation.maps[n : n + 1, t : t + 1]
        located = Explanation(one, explanation.scores[n : n + 1, t : t + 1], None,
                              explanation.method)
        return located.peaks((shown.height, shown.width), (image.height, image.width))[0, 0].tolist()


def check_outputs(args: argparse.Namespace) -> Path:
    """The options every run checks before any work: methods, the drawing size, a dataset
    run's own options, the output folder and ``--text``'s probe. Returns the output folder."""
    check_methods(args.method)
    if args.max_side < 16:
        raise InputError(f"--max-side must be at least 16 pixels, got {args.max_side}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    if getattr(args, "data", None):
        from vlx.runs.run import check_run_options

        check_run_options(args)
    out = check_output_folder(args.out)
    if args.text:
        from vlx.commands.textual import check_probe, text_method

        text_method(args.method)
        check_probe(args)
    return out


def explain_batch(
    task: Task, examples: Sequence[Example], args: argparse.Namespace,
    requested: Callable[[list[list[Prediction]]], Requested] = lambda predictions: None,
    top_k: int = 5,
) -> Run:
    """Predict, resolve the targets (``requested`` sees the predictions) and explain them with
    every ``--method`` at ``--layer``; ``--text``'s dissection subject is checked first."""
    task.check_layer(args.layer)
    if args.text:
        task.dissection_subject(args.layer)
    batch = task.prepare(examples)
    predictions = task.predict(batch, top_k)
    targets = task.targets(batch, requested(predictions))
    options = {"batch_size": args.batch_size, "progress": True}
    explanations = {m: task.explain(batch, targets, m, args.layer, **options)
                    for m in args.method}
    shown = [bounded(e.image, args.max_side) for e in examples]
    layer = args.layer or task.layer or next(
        (e.layer for e in explanations.values() if e.layer), None)
    return Run(task, batch, predictions, targets, explanations, shown, layer)


def start_writing(out: Path) -> None:
    """Make the output folder and remove what killed runs left in it."""
    out.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(out)


@dataclass(frozen=True)
class Layout:
    """How a command draws example 0's figure: each entry's label, the caption underneath,
    the columns and the panel size. The page draws the same figure from the same layout."""

    label: Callable[[dict], str]
    caption: Callable[[Run], str]
    columns: int
    panel_size: int


def write_figures(run: Run, entries: list[dict], layout: Layout, path: Callable[[str], Path]
                  ) -> list[str]:
    """One figure per method (``path(method)``) of example 0: the input and one overlay per
    target. Each entry gets ``peaks`` per method, ``peak`` (the first method's, ``[x, y]`` in
    the image's pixels) and ``files``."""
    locate_peaks(run, entries)
    files = []
    for method in run.explanations:
        file = str(save_png(figure(run, method, entries, layout), path(method)))
        files.append(file)
        for entry in entries:
            entry.setdefault("files", []).append(file)
    return files


def locate_peaks(run: Run, entries: list[dict]) -> None:
    """Entry t (target t of example 0) gets ``peaks`` per method and ``peak``, the first
    method's: what ``--json`` reports of each map."""
    for method, explanation in run.explanations.items():
        for t, entry in enumerate(entries):
            entry.setdefault("peaks", {})[method] = run.peak(explanation, 0, t)
    first = next(iter(run.explanations))
    for entry in entries:
        entry["peak"] = entry["peaks"][first]


def figure(run: Run, method: str, entries: list[dict], layout: Layout) -> Image.Image:
    """Example 0's figure for ``method``: the input and one labelled overlay per target (the
    paper's Fig. 11 and 12)."""
    shown = run.shown[0]
    explanation = run.explanations[method]
    panels = [("input", shown)] + [
        (layout.label(entry), explanation_picture(explanation, 0, t, shown))
        for t, entry in enumerate(entries)
    ]
    return grid(panels, columns=min(len(panels), layout.columns), caption=layout.caption(run),
                panel_size=layout.panel_size)


def text_subject(run: Run, args: argparse.Namespace) -> tuple[LayerSubject, Explanation]:
    """The layer ``--text`` names units of, and the explanation whose alphas rank them (made
    again at that layer when it is not the explained one)."""
    from vlx.commands.textual import text_method

    reader = text_method(args.method)
    subject = run.task.dissection_subject(args.layer)
    explanation = run.explanations[reader]
    if subject.layer != run.layer:
        explanation = run.task.explain(run.batch, run.targets, reader, subject.layer)
    return subject, explanation


def grid_sheet(panels: list[tuple[str, Picture]]) -> Image.Image:
    """Labelled panels four to a row: ``vlx explain``'s sheet of an image."""
    return grid(panels, columns=min(len(panels), 4))
