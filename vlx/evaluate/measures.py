"""Every metric, measured on any adapter over any source of examples with ground truth.

Each runner drives the task contract only: ``prepare`` a batch, ask ``targets`` for the truth's
targets (or the model's prediction), ``explain`` them, read each target's ``referents``, and
tally. Nothing here knows a task or a model: a new adapter with referents is scored by every
metric as it is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vlx.errors import InputError
from vlx.evaluate.deletion import curve_area, deletion_curve, insertion_curve
from vlx.evaluate.energy import inside_outside_ratio
from vlx.evaluate.faithfulness import occlusion_agreement
from vlx.evaluate.localization import LocalizationTally, box_iou, largest_segment_box
from vlx.evaluate.pointing import PointingTally, RejectionTally
from vlx.evaluate.sources import EvaluationData
from vlx.evaluate.statistics import mean_and_error, ratio_summary
from vlx.explanation import upsample
from vlx.task import Batch, Referent, Target, TargetSet, Task

REJECT_THRESHOLDS = tuple(2.0**k for k in range(-4, 7))
FAITHFULNESS_WINDOW = 16
FAITHFULNESS_STRIDE = 8
"""Occlusion's window and stride for the faithfulness reference (px), as it was measured."""


@dataclass
class Case:
    """One explained target with its referent: example ``n`` of ``batch``, target ``t``."""

    batch: Batch
    targets: TargetSet
    n: int
    t: int
    referent: Referent | None
    correct: bool | None = None

    @property
    def target(self) -> Target:
        return self.targets.rows[self.n][self.t]


def truth_targets(task: Task, batch: Batch, predicted: bool = False) -> TargetSet | None:
    """The targets an example's truth asks for (or the model's predictions); ``None`` when
    the model cannot name them (an answer outside its list), so the batch is skipped."""
    requested = None if predicted else [
        e.truth.requested() if e.truth is not None else None for e in batch.examples
    ]
    if requested is not None and all(r is None for r in requested):
        requested = None
    if requested is not None and any(r is None for r in requested):
        raise InputError("examples of one batch mix targets given by their truth and none")
    try:
        return task.targets(batch, requested)
    except InputError:
        if predicted:
            raise
        return None


def cases(task: Task, data: EvaluationData, need_referent: bool = True,
          correct: bool = False) -> Iterator[tuple[Batch, TargetSet, list[Case]]]:
    """Per batch of ``data``: its targets and the (example, target) cases scored, those
    with a referent of a counted category (all of them where none is needed)."""
    for examples in data.batches():
        yield from _cases(task, data, examples, need_referent, correct)


def _cases(task: Task, data: EvaluationData, examples: list, need_referent: bool,
           correct: bool) -> Iterator[tuple[Batch, TargetSet, list[Case]]]:
    batch = task.prepare(examples)
    targets = truth_targets(task, batch, data.predicted)
    if targets is None:
        if len(examples) > 1:  # one example's target the model cannot name: try each alone
            for example in examples:
                yield from _cases(task, data, [example], need_referent, correct)
        else:
            data.notes["unanswerable"] = int(data.notes.get("unanswerable", 0)) + 1
        return
    referents = task.referents(batch, targets)
    right = task.correct(batch, targets) if correct else None
    chosen = []
    for n, row in enumerate(targets.rows):
        for t in range(len(row)):
            referent = referents[n][t]
            counted = referent is not None and (
                data.categories is None or referent.category in data.categories
            )
            if counted or not need_referent:
                flag = None if right is None else right[n][t]
                chosen.append(Case(batch, targets, n, t, referent, flag))
    if chosen:
        yield batch, targets, chosen


def pointing(task: Task, data: EvaluationData, layer: str | None = None) -> dict[str, Any]:
    """The pointing game per referent category: the map's peak on any instance the target
    names (``accuracy``), on the one it describes (``described``), the centre and random
    baselines; ``answered`` where the targets are answers or classes (is the truth the model's
    prediction) and ``attention`` for models that attend (their own weights, scored alike)."""
    hits, described, looked = PointingTally(), PointingTally(), PointingTally()
    answered: dict[str, list[bool]] = defaultdict(list)
    for batch, targets, chosen in cases(task, data, correct=True):
        maps = task.explain(batch, targets, "gradcam", layer).maps.cpu()
        attention = task.attention(batch, targets)
        for case in chosen:
            ref, category = case.referent, case.referent.category
            hits.add(category, maps[case.n : case.n + 1, case.t : case.t + 1], ref.mask[None, None])
            described.add(category, maps[case.n : case.n + 1, case.t : case.t + 1],
                          ref.described[None, None])
            if attention is not None:
                looked.add(category, attention[case.n : case.n + 1, None].cpu(),
                           ref.mask[None, None])
            if case.correct is not None:
                answered[category].append(case.correct)
    summary = hits.summary()
    strict, attended = described.summary(), looked.summary()
    for category, row in summary.items():
        row["described"] = strict[category]["accuracy"]
        if category in attended:
            row["attention"] = attended[category]["accuracy"]
        if answered[category]:
            row["answered"] = sum(answered[category]) / len(answered[category])
    return {"categories": summary}


def rejection(task: Task, data: EvaluationData, thresholds: Sequence[float] = REJECT_THRESHOLDS,
              layer: str | None = None, top_k: int = 5) -> dict[str, Any]:
    """The pointing game with rejection (paper Appendix D) on each example's top-k classes."""
    tallies = [RejectionTally(t) for t in thresholds]
    for examples in data.batches():
        batch = task.prepare(examples)
        predicted = [[p.index for p in row] for row in task.predict(batch, top_k)]
        targets = task.targets(batch, predicted)
        maps = task.explain(batch, targets, "gradcam", layer).maps.cpu()
        for n, (row, referents) in enumerate(zip(targets.rows, task.referents(batch, targets))):
            size = examples[n].image.size[::-1]
            masks = torch.stack([r.mask if r is not None else torch.zeros(size, dtype=torch.bool)
                                 for r in referents])
            present = torch.tensor([r is not None for r in referents])
            for tally in tallies:
                tally.add(maps[n, : len(row)], masks, present)
    rows = [tally.summary() for tally in tallies]
    best = max(rows, key=lambda row: row["accuracy"])
    return {"rejection": rows, "best_threshold": best["threshold"]}


def localization(task: Task, data: EvaluationData, method: str = "gradcam",
                 threshold: float = 0.15, iou: float = 0.5, layer: str | None = None
                 ) -> dict[str, Any]:
    """Per referent category: the box around the map's largest segment above ``threshold``
    times its maximum, a hit at ``iou`` with the described instance's box."""
    ious: dict[str, list[float]] = defaultdict(list)
    answered: dict[str, list[bool]] = defaultdict(list)
    for batch, targets, chosen in cases(task, data, correct=True):
        maps = task.explain(batch, targets, method, layer).maps
        for case in chosen:
            if not case.referent.boxes:
                continue
            size = tuple(case.referent.mask.shape)
            heat = upsample(maps[case.n : case.n + 1, case.t : case.t + 1], size)[0, 0]
            box = largest_segment_box(heat, threshold)
            best = max(box_iou(box, truth) for truth in case.referent.boxes) if box else 0.0
            ious[case.referent.category].append(best)
            if case.correct is not None:
                answered[case.referent.category].append(case.correct)
    categories = {}
    for category, values in sorted(ious.items()):
        row = {"accuracy": sum(v >= iou for v in values) / len(values),
               "mean_iou": sum(values) / len(values), "count": len(values)}
        if answered[category]:
            row["answered"] = sum(answered[category]) / len(answered[category])
        categories[category] = row
    return {"categories": categories}


def predicted_localization(task: Task, data: EvaluationData, method: str = "gradcam",
                           threshold: float = 0.15, iou: float = 0.5, layer: str | None = None,
                           top_k: int = 5) -> dict[str, Any]:
    """ILSVRC's top-1 / top-5 localization and classification error (paper Table 1): the
    model's top-k classes, each localized by its own map against its boxes."""
    tally = LocalizationTally(threshold=threshold, iou=iou)
    for examples in data.batches():
        batch = task.prepare(examples)
        predicted = [[p.index for p in row] for row in task.predict(batch, top_k)]
        targets = task.targets(batch, predicted)
        maps = task.explain(batch, targets, method, layer).maps
        for n, example in enumerate(examples):
            size = example.image.size[::-1]
            truth = {c: list(b) for c, b in example.truth.boxes.items()}
            tally.add(predicted[n], upsample(maps[n : n + 1], size)[0], truth)
    return {"errors": tally.summary()}


def energy(task: Task, data: EvaluationData, methods: Sequence[str],
           layer: str | None = None) -> dict[str, Any]:
    """Per method and referent category, the mean map inside the described instance over the
    mean outside it (Sec. 8.1); all-zero maps (NaN) are counted and left out."""
    ratios: dict[str, dict[str, list[float]]] = {m: defaultdict(list) for m in methods}
    for batch, targets, chosen in cases(task, data):
        maps = {m: task.explain(batch, targets, m, layer).maps for m in methods}
        for case in chosen:
            for method, per_target in maps.items():
                heat = per_target[case.n, case.t].cpu()
                ratios[method][case.referent.category].append(
                    inside_outside_ratio(heat, case.referent.described)
                )
    return {
        "uniform_map": 1.0,
        "methods": {
            method: {category: ratio_summary(values) for category, values in sorted(rows.items())}
            for method, rows in ratios.items()
        },
    }


def deletion(task: Task, data: EvaluationData, methods: Sequence[str], steps: int = 20,
             insertion_baseline: str = "blur", layer: str | None = None) -> dict[str, Any]:
    """Deletion and insertion areas (Petsiuk et al. 2018) of each target's probability, one
    target at a time; ``random`` is a noise map on Grad-CAM's grid, seeded by the case."""
    if steps < 1:
        raise InputError(f"--steps must be at least 1, got {steps}")
    areas: dict[str, dict[str, list[float]]] = {
        m: {"deletion": [], "insertion": []} for m in methods
    }
    number = 0
    for batch, targets, chosen in cases(task, data, need_referent=not data.predicted):
        for case in chosen:
            one = batch.select(case.n)
            alone = TargetSet([[case.target]], None if targets.context is None
                              else [targets.context[case.n]])
            image = one.inputs[0]

            def score(edited: torch.Tensor, one=one, alone=alone) -> torch.Tensor:
                return task.probabilities(one, alone, images=edited)[:, 0]

            maps = {m: task.explain(one, alone, m, layer).maps[0, 0]
                    for m in methods if m != "random"}
            if "random" in methods:
                grid = (maps["gradcam"] if "gradcam" in maps
                        else task.explain(one, alone, "gradcam", layer).maps[0, 0]).shape
                noise = torch.rand(grid, generator=torch.Generator().manual_seed(number))
                maps["random"] = noise.to(image.device)
            for method, saliency in maps.items():
                curves = {
                    "deletion": deletion_curve(score, image, saliency, steps),
                    "insertion": insertion_curve(score, image, saliency, steps,
                                                 insertion_baseline),
                }
                for kind, curve in curves.items():
                    areas[method][kind].append(curve_area(curve.cpu()))
            number += 1
    return {
        "steps": steps,
        "insertion_baseline": insertion_baseline,
        "methods": {
            method: {
                **{kind: _without_count(mean_and_error(values)) for kind, values in kinds.items()},
                "count": len(kinds["deletion"]),
            }
            for method, kinds in areas.items()
        },
    }


def faithfulness(task: Task, data: EvaluationData,
                 methods: Sequence[str] = ("gradcam", "guided-backprop"),
                 layer: str | None = None) -> dict[str, Any]:
    """Rank correlation of each method's map with the occlusion map of the predicted target
    (paper Sec. 5.3; 0.60 vs 0.42 on VQA). Every method after the first also gets the paired
    difference, first minus it, over the cases where both are defined: whether the first
    comes out ahead is a question about the same cases, which two separate standard errors
    overstate."""
    rhos: dict[str, list[float]] = {m: [] for m in methods}
    for batch, targets, chosen in cases(task, data, need_referent=False):
        reference = task.explain(batch, targets, "occlusion", layer,
                                 window=FAITHFULNESS_WINDOW, stride=FAITHFULNESS_STRIDE).maps
        for method in methods:
            maps = task.explain(batch, targets, method, layer).maps
            agreement = occlusion_agreement(maps, reference)
            # A constant map has no ranks: NaN, left out of its mean and of the differences.
            rhos[method] += [float(agreement[case.n, case.t]) for case in chosen]
    first = rhos[methods[0]]
    summary = {}
    for method in methods:
        spread = mean_and_error(rhos[method])
        summary[method] = {"rank_correlation": spread["mean"], "std_error": spread["std_error"],
                           "count": spread["count"]}
        if method != methods[0]:
            lead = mean_and_error([a - b for a, b in zip(first, rhos[method])])
            summary[method].update(difference=lead["mean"],
                                   difference_std_error=lead["std_error"],
                                   difference_count=lead["count"])
    return {"methods": summary}


def _without_count(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != "count"}
