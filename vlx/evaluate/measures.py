"""Every metric, measured on any adapter over any source of examples with ground truth.

A metric reads a batch of examples into records (plain values, one per scored case: did the
peak hit, what IoU, which rank correlation) and turns all records into its summary. Measuring
drives the task contract only: ``prepare`` a batch, ask ``targets`` for the truth's targets (or
the model's prediction), ``explain`` them and read each target's ``referents``. Nothing here
knows a task or a model; records are what a resumed or distributed evaluation keeps and merges
(``vlx.evaluate.runner``).
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vlx.errors import InputError
from vlx.evaluate.deletion import curve_area, deletion_curve, insertion_curve
from vlx.evaluate.energy import inside_outside_ratio
from vlx.evaluate.faithfulness import occlusion_agreement
from vlx.evaluate.localization import box_iou, largest_segment_box, localization_correct
from vlx.evaluate.pointing import OUTCOMES, centre_hits, pointing_hits, random_point_accuracy
from vlx.evaluate.sanity import MODES, PASS_BELOW, passed, randomization_steps, randomized
from vlx.evaluate.statistics import mean_and_error, ratio_summary
from vlx.explanation import upsample
from vlx.task import Batch, Example, Referent, Target, TargetSet, Task

REJECT_THRESHOLDS = tuple(2.0**k for k in range(-4, 7))
ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""The shares of pixels ROAD removes, as its paper's curves."""
FAITHFULNESS_WINDOW = 16
FAITHFULNESS_STRIDE = 8
"""Occlusion's window and stride for the faithfulness reference (px), as it was measured."""
Record = dict[str, Any]


@dataclass
class Case:
    """One explained target with its referent: example ``n`` of ``batch``, target ``t``."""

    batch: Batch
    targets: TargetSet
    n: int
    t: int
    referent: Referent | None
    correct: bool | None = None
    offset: int = 0
    """Where the batch's examples start among the examples measured (see ``example``)."""

    @property
    def example(self) -> int:
        """The case's example among those ``Metric.records`` was given."""
        return self.offset + self.n

    @property
    def target(self) -> Target:
        return self.targets.rows[self.n][self.t]

    @property
    def seed(self) -> int:
        """A number of this case alone, whatever the batch, the part or the process."""
        example = self.batch.examples[self.n]
        key = f"{example.name}|{example.text}|{self.target.id}|{self.target.name}"
        return zlib.crc32(key.encode())


class Metric(ABC):
    """What one metric reads from a batch, and what it makes of everything read."""

    categories: tuple[str, ...] | None = None
    """The referent categories scored (``None``: all); the source says which."""
    predicted: bool = False
    """Explain what the model predicts rather than the truth's targets; the source says."""

    @abstractmethod
    def records(self, task: Task, examples: list[Example]) -> list[Record]:
        """The records of one batch of examples, in order; each names its ``example`` (the
        position in ``examples``), which the summary ignores."""

    @abstractmethod
    def summary(self, records: list[Record]) -> dict[str, Any]:
        """The metric's results from every record, in source order."""

    def cases(self, task: Task, examples: list[Example], need_referent: bool = True,
              correct: bool = False, offset: int = 0
              ) -> Iterator[tuple[Batch, TargetSet, list[Case]]]:
        """The batch's targets and the (example, target) cases scored: those with a referent
        of a counted category (all of them where none is needed). A batch whose truth names
        a target the model cannot is tried example by example; what still fails is recorded
        as ``unanswerable``."""
        batch = task.prepare(examples)
        targets = self._targets(task, batch)
        if targets is None:
            if len(examples) > 1:
                for i, example in enumerate(examples):
                    yield from self.cases(task, [example], need_referent, correct, offset + i)
            else:
                self.skipped += 1
            return
        referents = task.referents(batch, targets)
        right = task.correct(batch, targets) if correct else None
        chosen = []
        for n, row in enumerate(targets.rows):
            for t in range(len(row)):
                referent = referents[n][t]
                counted = referent is not None and (
                    self.categories is None or referent.category in self.categories
                )
                if counted or not need_referent:
                    chosen.append(Case(batch, targets, n, t, referent,
                                       None if right is None else right[n][t], offset))
        if chosen:
            yield batch, targets, chosen

    skipped = 0
    """Examples whose true target the model cannot name (an answer outside its list)."""

    def _targets(self, task: Task, batch: Batch) -> TargetSet | None:
        requested = None if self.predicted else [
            e.truth.requested() if e.truth is not None else None for e in batch.examples
        ]
        if requested is not None and all(r is None for r in requested):
            requested = None
        if requested is not None and any(r is None for r in requested):
            raise InputError("examples of one batch mix targets given by their truth and none")
        try:
            return task.targets(batch, requested)
        except InputError:
            if self.predicted:
                raise
            return None


class Pointing(Metric):
    """The pointing game per referent category: the map's peak on any instance the target
    names (``accuracy``), on the one it describes (``described``), the centre and random
    baselines; ``answered`` where the targets are answers or classes (is the truth the model's
    prediction) and ``attention`` for models that attend (their own weights, scored alike)."""

    def __init__(self, layer: str | None = None, method: str = "gradcam") -> None:
        self.layer, self.method = layer, method

    def records(self, task: Task, examples: list[Example]) -> list[Record]:
        found = []
        for batch, targets, chosen in self.cases(task, examples, correct=True):
            maps = task.explain(batch, targets, self.method, self.layer).maps.cpu()
            attention = task.attention(batch, targets)
            for case in chosen:
                ref = case.referent
                one = maps[case.n : case.n + 1, case.t : case.t + 1]
                record = {
                    "example": case.example,
                    "category": ref.category,
                    "hit": bool(pointing_hits(one, ref.mask[None, None])[0, 0]),
                    "described": bool(pointing_hits(one, ref.described[None, None])[0, 0]),
                    "centre": bool(centre_hits(ref.mask)),
                    "random": float(random_point_accuracy(ref.mask)),
                    "answered": case.correct,
                }
                if attention is not None:
                    looked = attention[case.n : case.n + 1, None].cpu()
                    record["attention"] = bool(pointing_hits(looked, ref.mask[None, None])[0, 0])
                found.append(record)
        return found

    def summary(self, records: list[Record]) -> dict[str, Any]:
        rows: dict[str, dict[str, Any]] = {}
        for category in sorted({r["category"] for r in records}):
            mine = [r for r in records if r["category"] == category]
            count = len(mine)
            row = {
                "accuracy": sum(r["hit"] for r in mine) / count,
                "centre": sum(r["centre"] for r in mine) / count,
                "random": _sum(r["random"] for r in mine) / count,
                "count": count,
                "described": sum(r["described"] for r in mine) / count,
            }
            if "attention" in mine[0]:
                row["attention"] = sum(r["attention"] for r in mine) / count
            if mine[0]["answered"] is not None:
                row["answered"] = sum(r["answered"] for r in mine) / count
            rows[category] = row
        return {"categories": rows}


class Rejection(Metric):
    """The pointing game with rejection (paper Appendix D) on each example's top-k classes:
    a map whose raw maximum is under a threshold rejects its class."""

    def __init__(self, thresholds: Sequence[float] = REJECT_THRESHOLDS,
                 layer: str | None = None, top_k: int = 5) -> None:
        self.thresholds, self.layer, self.top_k = tuple(thresholds), layer, top_k

    def records(self, task: Task, examples: list[Example]) -> list[Record]:
        batch = task.prepare(examples)
        predicted = [[p.index for p in row] for row in task.predict(batch, self.top_k)]
        targets = task.targets(batch, predicted)
        maps = task.explain(batch, targets, "gradcam", self.layer).maps.cpu()
        found = []
        for n, (row, referents) in enumerate(zip(targets.rows, task.referents(batch, targets))):
            size = examples[n].image.size[::-1]
            for t, referent in enumerate(referents):
                mask = referent.mask if referent is not None else torch.zeros(size, dtype=torch.bool)
                one = maps[n : n + 1, t : t + 1]
                found.append({"example": n, "peak": float(one.max()),
                              "present": referent is not None,
                              "hit": bool(pointing_hits(one, mask[None, None].bool())[0, 0])})
        return found

    def summary(self, records: list[Record]) -> dict[str, Any]:
        if not records:
            raise InputError("no classes were scored")
        rows = []
        for threshold in self.thresholds:
            counts = dict.fromkeys(OUTCOMES, 0)
            for r in records:
                accepted = r["peak"] >= threshold
                outcome = (("hit" if accepted and r["hit"] else "miss") if r["present"]
                           else ("false_alarm" if accepted else "correct_rejection"))
                counts[outcome] += 1
            correct = counts["hit"] + counts["correct_rejection"]
            rows.append({"accuracy": correct / len(records), "threshold": threshold,
                         "count": len(records), **counts})
        best = max(rows, key=lambda row: row["accuracy"])
        return {"rejection": rows, "best_threshold": best["threshold"]}


class Localization(Metric):
    """Per referent category: the box around the map's largest segment above ``threshold``
    times its maximum, a hit at ``iou`` with the described instance's box."""

    def __init__(self, method: str = "gradcam", threshold: float = 0.15, iou: float = 0.5,
                 layer: str | None = None) -> None:
        self.method, self.threshold, self.iou, self.layer = method, threshold, iou, layer

    def records(self, task: Task, examples: list[Example]) -> list[Record]:
        found = []
        for batch, targets, chosen in self.cases(task, examples, correct=True):
            maps = task.explain(batch, targets, self.method, self.layer).maps
            for case in chosen:
                if not case.referent.boxes:
                    continue
                size = tuple(case.referent.mask.shape)
                heat = upsample(maps[case.n : case.n + 1, case.t : case.t + 1], size)[0, 0]
                box = largest_segment_box(heat, self.threshold)
                best = max(box_iou(box, truth) for truth in case.referent.boxes) if box else 0.0
                found.append({"example": case.example, "category": case.referent.category,
                              "iou": best, "answered": case.correct})
        return found

    def summary(self, records: list[Record]) -> dict[str, Any]:
        categories = {}
        for category in sorted({r["category"] for r in records}):
            mine = [r for r in records if r["category"] == category]
            values = [r["iou"] for r in mine]
            row = {"accuracy": sum(v >= self.iou for v in values) / len(values),
                   "mean_iou": sum(values) / len(values), "count": len(values)}
            if mine[0]["answered"] is not None:
                row["answered"] = sum(r["answered"] for r in mine) / len(mine)
            categories[category] = row
        return {"categories": categories}


class PredictedLocalization(Metric):
    """ILSVRC's top-1 / top-5 localization and classification error (paper Table 1): the
    model's top-k classes, each localized by its own map against its boxes."""

    def __init__(self, method: str = "gradcam", threshold: float = 0.15, iou: float = 0.5,
                 layer: str | None = None, ks: tuple[int, ...] = (1, 5)) -> None:
        self.method, self.threshold, self.iou, self.layer, self.ks = method, threshold, iou, layer, ks

    def records(self, task: Task, examples: list[Example]) -> list[Record]:
        batch = task.prepare(examples)
        predicted = [[p.index for p in row] for row in task.predict(batch, max(self.ks))]
        targets = task.targets(batch, predicted)
        maps = task.explain(batch, targets, self.method, self.layer).maps
        found = []
        for n, example in enumerate(examples):
            size = example.image.size[::-1]
            truth = example.truth.boxes
            heats = upsample(maps[n : n + 1], size)[0]
            first = {"localized": None, "classified": None}
            for rank, (label, heat) in enumerate(zip(predicted[n], heats)):
                if label not in truth:
                    continue
                if first["classified"] is None:
                    first["classified"] = rank
                if localization_correct(heat, truth[label], self.threshold, self.iou):
                    first["localized"] = rank
                    break
            found.append({"example": n, **first})
        return found

    def summary(self, records: list[Record]) -> dict[str, Any]:
        if not records:
            raise InputError("no images were scored")
        errors: dict[str, Any] = {}
        for k in self.ks:
            for name in ("localization", "classification"):
                key = "localized" if name == "localization" else "classified"
                right = sum(r[key] is not None and r[key] < k for r in records)
                errors[f"top{k}_{name}_error"] = 1 - right / len(records)
        errors["images"] = len(records)
        return {"errors": errors}


class Energy(Metric):
    """Per method and referent category, the mean map inside the described instance over the
    mean outside it (Sec. 8.1); all-zero maps (NaN) are counted and left out."""

    def __init__(self, methods: Sequence[str], layer: str | None = None) -> None:
        self.methods, self.layer = list(methods), layer

    def records(self, task: Task, examples: list[Example]) -> list[Record]:
        found = []
        for batch, targets, chosen in self.cases(task, examples):
            maps = {m: task.explain(batch, targets, m, self.layer).maps for m in self.methods}
            for case in chosen:
                for method, per_target in maps.items():
                    heat = per_target[case.n, case.t].cpu()
                    found.append({"example": case.example, "method": method,
                                  "category": case.referent.category,
                                  "ratio": inside_outside_ratio(heat, case.referent.described)})
        return found

    def summary(self, records: list[Record]) -> dict[str, Any]:
        return {
            "uniform_map": 1.0,
            "methods": {
                method: {
                    category: ratio_summary([r["ratio"] for r in records
                                             if r["method"] == method and r["category"] == category])
                    for category in sorted({r["category"] for r in records if r["method"] == method})
                }
                for method in self.methods
            },
        }


class Deletion(Metric):
    """Deletion and insertion areas (Petsiuk et al. 2018) of each target's probability, one
    target at a time; ``random`` is a noise map on Grad-CAM's grid, seeded by the case."""

    def __init__(self, methods: Sequence[str], steps: int = 20,
                 insertion_baseline: str = "blur", layer: str | None = None) -> None:
        if steps < 1:
            raise InputError(f"--steps must be at least 1, got {steps}")
        self.methods, self.steps, self.baseline, self.layer = (
            list(methods), steps, insertion_baseline, layer)

    def records(self, task: Task, examples: list[Example]) -> list[Record]:
        found = []
        for case, image, score, method, saliency in _target_maps(self, task, examples):
            deletion = deletion_curve(score, image, saliency, self.steps)
            insertion = insertion_curve(score, image, saliency, self.steps, self.baseline)
            found.append({"example": case.example, "method": method,
                          "deletion": curve_area(deletion.cpu()),
                          "insertion": curve_area(insertion.cpu())})
        return found

    def summary(self, records: list[Record]) -> dict[str, Any]:
        methods = {}
        for method in self.methods:
            mine = [r for r in records if r["method"] == method]
            methods[method] = {
                **{kind: _without_count(mean_and_error([r[kind] for r in mine]))
                   for kind in ("deletion", "insertion")},
                "count": len(mine),
            }
        return {"steps": self.steps, "insertion_baseline": self.baseline, "methods": methods}


class Road(Metric):
    """ROAD (Rong et al. 2022): each target's probability as its most (MoRF, lower is better)
    or least (LeRF, higher is better) salient pixels are removed and imputed from their
    neighbours with noise, at fixed fractions of the image; ``random`` as for deletion."""

    def __init__(self, methods: Sequence[str], fractions: Sequence[float] = ROAD_FRACTIONS,
                 noise: float = 0.01, layer: str | None = None) -> None:
        if not fractions or any(not 0 < f < 1 for f in fractions):
            raise InputError(f"--fractions must each be in (0, 1), got {list(fractions)}")
        self.methods, self.fractions, self.noise, self.layer = (
            list(methods), tuple(fractions), noise, layer)

    def records(self, task: Task, examples: list[Example]) -> list[Record]:
        from vlx.evaluate.road import road_scores

        found = []
        for case, image, score, method, saliency in _target_maps(self, task, examples):
            full = upsample(saliency[None, None].float(), tuple(image.shape[-2:]))[0, 0]
            curves = {order: road_scores(score, image, full, self.fractions, order, self.noise,
                                         case.seed).cpu().tolist()
                      for order in ("morf", "lerf")}
            found.append({"example": case.example, "method": method, **curves})
        return found

    def summary(self, records: list[Record]) -> dict[str, Any]:
        methods = {}
        for method in self.methods:
            mine = [r for r in records if r["method"] == method]
            methods[method] = {"count": len(mine)}
            for order in ("morf", "lerf"):
                curve = [mean_and_error([r[order][k] for r in mine])["mean"]
                         for k in range(len(self.fractions))]
                area = mean_and_error([sum(r[order]) / len(r[order]) for r in mine])
                methods[method][order] = {"curve": curve, **_without_count(area)}
        return {"fractions": list(self.fractions), "noise": self.noise, "methods": methods}


class Faithfulness(Metric):
    """Rank correlation of each method's map with the occlusion map of the predicted target
    (paper Sec. 5.3; 0.60 vs 0.42 on VQA). Every method after the first also gets the paired
    difference, first minus it, over the cases where both are defined: whether the first
    comes out ahead is a question about the same cases, which two separate standard errors
    overstate."""

    def __init__(self, methods: Sequence[str] = ("gradcam", "guided-backprop"),
                 layer: str | None = None) -> None:
        self.methods, self.layer = list(methods), layer

    def records(self, task: Task, examples: list[Example]) -> list[Record]:
        found = []
        for batch, targets, chosen in self.cases(task, examples, need_referent=False):
            reference = task.explain(batch, targets, "occlusion", self.layer,
                                     window=FAITHFULNESS_WINDOW, stride=FAITHFULNESS_STRIDE).maps
            agreement = {m: occlusion_agreement(task.explain(batch, targets, m, self.layer).maps,
                                                reference) for m in self.methods}
            # A constant map has no ranks: NaN, left out of its mean and of the differences.
            found += [{"example": case.example,
                       **{m: float(agreement[m][case.n, case.t]) for m in self.methods}}
                      for case in chosen]
        return found

    def summary(self, records: list[Record]) -> dict[str, Any]:
        first = self.methods[0]
        summary = {}
        for method in self.methods:
            spread = mean_and_error([r[method] for r in records])
            summary[method] = {"rank_correlation": spread["mean"],
                               "std_error": spread["std_error"], "count": spread["count"]}
            if method != first:
                lead = mean_and_error([r[first] - r[method] for r in records])
                summary[method].update(difference=lead["mean"],
                                       difference_std_error=lead["std_error"],
                                       difference_count=lead["count"])
        return {"methods": summary}


class Randomization(Metric):
    """Sanity checks (Adebayo et al. 2018): how similar each method's maps stay when the model
    is not the trained one. Maps are compared at the input's size by the four measures the
    paper reports; a method passes where its mean absolute rank correlation falls below
    ``PASS_BELOW``."""

    def __init__(self, methods: Sequence[str], layer: str | None = None) -> None:
        self.methods, self.layer = list(methods), layer

    def _maps(self, task: Task, batch: Batch, targets: TargetSet) -> dict[str, torch.Tensor]:
        maps = {}
        for method in self.methods:
            explanation = task.explain(batch, targets, method, self.layer)
            size = explanation.meta.get("input_size", tuple(explanation.maps.shape[-2:]))
            maps[method] = upsample(explanation.maps, size).cpu()
        return maps

    def _compared(self, case: Case, step: str, trained: dict[str, torch.Tensor],
                  other: dict[str, torch.Tensor]) -> list[Record]:
        from vlx.evaluate.similarity import MEASURES

        return [{"example": case.example, "method": method, "step": step,
                 **{name: measure(trained[method][case.n, case.t], other[method][case.n, case.t])
                    for name, measure in MEASURES.items()}}
                for method in self.methods]

    def _summary(self, records: list[Record], steps: list[str]) -> dict[str, Any]:
        from vlx.evaluate.similarity import MEASURES

        methods = {}
        for method in self.methods:
            rows = {}
            for step in steps:
                mine = [r for r in records if r["method"] == method and r["step"] == step]
                rows[step] = {name: _without_count(mean_and_error([r[name] for r in mine]))
                              for name in MEASURES} | {"count": len(mine)}
            methods[method] = {"steps": rows}
        return {"pass_below": PASS_BELOW, "methods": methods}


class ModelRandomization(Randomization):
    """The model-parameter randomization test: the maps of the trained model against the maps
    after randomizing its blocks from the output down (``cascading``; the last step leaves no
    trained weight) or one block at a time (``independent``). Passed: below ``PASS_BELOW`` at
    every step: a map that explains the model changes as soon as the output block is random,
    and does not come back."""

    def __init__(self, methods: Sequence[str], mode: str = "cascading",
                 layer: str | None = None, seed: int = 0) -> None:
        if mode not in MODES:
            raise InputError(f"unknown randomization {mode!r}; valid: {', '.join(MODES)}")
        super().__init__(methods, layer)
        self.mode, self.seed = mode, seed

    def records(self, task: Task, examples: list[Example]) -> list[Record]:

        steps = randomization_steps(task.model, self.mode)
        found = []
        for batch, targets, chosen in self.cases(task, examples, need_referent=False):
            trained = self._maps(task, batch, targets)
            for label, modules in steps:
                with randomized(task.model, modules, self.seed):
                    changed = self._maps(task, batch, targets)
                found += [r for case in chosen for r in self._compared(case, label, trained, changed)]
        return found

    def summary(self, records: list[Record]) -> dict[str, Any]:
        steps = list(dict.fromkeys(r["step"] for r in records))
        summary = self._summary(records, steps)
        for row in summary["methods"].values():
            row["passed"] = passed([row["steps"][s]["abs-spearman"]["mean"] for s in steps])
        return {"mode": self.mode, **summary}


class DataRandomization(Randomization):
    """The data randomization test: the maps of the model against those of ``other``, the same
    architecture trained on shuffled labels, for the same targets. Passed: below
    ``PASS_BELOW``."""

    def __init__(self, other: Task, methods: Sequence[str], layer: str | None = None) -> None:
        super().__init__(methods, layer)
        self.other = other

    def records(self, task: Task, examples: list[Example]) -> list[Record]:
        found = []
        for batch, targets, chosen in self.cases(task, examples, need_referent=False):
            trained = self._maps(task, batch, targets)
            shuffled = self._maps(self.other, self.other.prepare(examples), targets)
            found += [r for case in chosen
                      for r in self._compared(case, "shuffled labels", trained, shuffled)]
        return found

    def summary(self, records: list[Record]) -> dict[str, Any]:
        summary = self._summary(records, ["shuffled labels"])
        for row in summary["methods"].values():
            row["passed"] = passed([row["steps"]["shuffled labels"]["abs-spearman"]["mean"]])
        return summary


def _target_maps(metric: Deletion | Road, task: Task, examples: list[Example]
                 ) -> Iterator[tuple[Case, torch.Tensor, Any, str, torch.Tensor]]:
    """Per case and method of a perturbation metric: the case, its image (C, H, W), its
    target's probability of edited copies of that image, and the method's (h, w) map."""
    for batch, targets, chosen in metric.cases(task, examples, need_referent=not metric.predicted):
        for case in chosen:
            one = batch.select(case.n)
            alone = TargetSet([[case.target]], None if targets.context is None
                              else [targets.context[case.n]])

            def score(edited: torch.Tensor, one: Batch = one, alone: TargetSet = alone
                      ) -> torch.Tensor:
                return task.probabilities(one, alone, images=edited)[:, 0]

            maps = _saliency_maps(task, one, alone, metric.methods, metric.layer, case.seed)
            for method, saliency in maps.items():
                yield case, one.inputs[0], score, method, saliency


def _saliency_maps(task: Task, one: Batch, alone: TargetSet, methods: Sequence[str],
                   layer: str | None, seed: int) -> dict[str, torch.Tensor]:
    """Each method's (h, w) map of one example's one target; ``random`` is a uniform noise
    map on Grad-CAM's grid, drawn from the case's own seed."""
    maps = {m: task.explain(one, alone, m, layer).maps[0, 0] for m in methods if m != "random"}
    if "random" in methods:
        grid = (maps["gradcam"] if "gradcam" in maps
                else task.explain(one, alone, "gradcam", layer).maps[0, 0]).shape
        noise = torch.rand(grid, generator=torch.Generator().manual_seed(seed))
        maps["random"] = noise.to(one.inputs[0].device)
    return maps


def _sum(values: Iterator[float]) -> float:
    total = 0.0
    for value in values:
        total += value
    return total


def _without_count(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != "count"}
