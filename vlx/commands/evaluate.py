"""``vlx evaluate METRIC``: score explanations against ground truth.

ShapesWorld gives the ground truth for captioning and VQA (the pixels and box of every word's
and answer's referent); for classifiers, a folder of images with Pascal-VOC box XML
(``--data voc:DIR``). Each metric prints a table (or ``--json``) next to the paper's figure
for the same protocol, which the paper measured on ImageNet, PASCAL, COCO and VQA.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from vlx.cli import print_json
from vlx.commands.explain import DEMO_IMAGES, resolve_device
from vlx.errors import InputError

# The paper's figures for the same protocols (measured on ImageNet, PASCAL, COCO and VQA).
PAPER = {
    ("pointing", "caption"): "30.0% pointing accuracy of per-word caption maps on COCO (Sec. 8.1.1)",
    ("faithfulness", "vqa"): (
        "rank correlation with occlusion on VQA: Grad-CAM 0.60, Guided Backprop 0.42 (Sec. 8.2)"
    ),
    ("localization", "classify"): (
        "ILSVRC-15 val, VGG-16: Grad-CAM top-1 / top-5 localization error 56.51% / 46.41%, "
        "classification error 30.38% / 10.89% (Table 1)"
    ),
    ("pointing", "classify"): (
        "pointing with rejection on the top-5 classes: Grad-CAM 70.58% vs c-MWP 60.30% "
        "(Appendix D)"
    ),
    ("energy", "caption"): (
        "DenseCap regions: mean inside/outside ratio Grad-CAM 3.27, Guided Backprop 2.32, "
        "Guided Grad-CAM 6.38 (Sec. 8.1)"
    ),
}
DEFAULT_MODELS = {"vqa": "coattention", "classify": "shapes", "voc": "efficientnet_lite0"}
REFERRED = {"caption": ("colour", "shape", "size"), "vqa": ("colour", "shape")}
ENERGY_CATEGORIES = ("colour", "shape", "size", "texture")
REJECT_THRESHOLDS = tuple(2.0**k for k in range(-4, 7))


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if args.images < 1:
        raise InputError(f"--images must be at least 1, got {args.images}")
    voc = _voc_folder(getattr(args, "data", "shapes"))
    task = _task(args, voc)
    model = _adapter(args, task, device)
    layer = getattr(args, "layer", None)
    if layer:
        from vlx.layers import named_layer

        named_layer(model.model, layer)
    summary: dict[str, Any] = {
        "metric": args.metric,
        "task": task,
        "data": _data_label(task, voc, model),
        "images": args.images,
        "layer": layer or model.layer,
        "paper": PAPER.get((args.metric, task)),
    }
    if args.model:
        summary["model"] = args.model
    metric = METRICS[args.metric]
    summary.update(metric.measure(args, task, model, voc, layer))
    if args.json:
        print_json(summary)
    else:
        print(metric.table(summary))
    return 0


def _data_label(task: str, voc: Path | None, model: Any) -> str:
    if voc is not None:
        return f"voc:{voc}"
    if task == "classify" and model.classifier.scenes is None:
        return "the bundled photos"
    return "ShapesWorld test split"


def _voc_folder(data: str) -> Path | None:
    if data == "shapes":
        return None
    prefix, _, folder = data.partition(":")
    if prefix != "voc" or not folder:
        raise InputError(f"unknown --data {data!r}; valid: shapes, voc:DIR")
    return Path(folder)


def _task(args: argparse.Namespace, voc: Path | None) -> str:
    task = args.task or ("classify" if voc else None)
    if task is None:
        raise InputError("--task is required on ShapesWorld: caption or vqa (or --data voc:DIR)")
    if task != "classify" and voc is not None:
        raise InputError(f"--data voc:DIR is for classifiers, not --task {task}")
    if getattr(args, "rejection", False) and task != "classify":
        raise InputError("--rejection scores a classifier's top-5 classes: use --data voc:DIR")
    if task == "caption" and args.model:
        raise InputError(f"--model {args.model!r} names a VQA model or classifier; the "
                         "captioner is chosen with --checkpoint")
    args.model = args.model or DEFAULT_MODELS.get("voc" if voc else task)
    return task


def _adapter(args: argparse.Namespace, task: str, device: torch.device) -> Any:
    if task == "caption":
        from vlx.tasks.captioning import Captioner

        return Captioner.load(args.checkpoint, device)
    if task == "vqa":
        from vlx.tasks.vqa import VisualQA

        return VisualQA.load(args.model, device)
    from vlx.tasks.classification import ImageClassifier

    return ImageClassifier.load(args.model, device)


def _progress(items: Any, label: str, total: int | None = None) -> Any:
    from tqdm.auto import tqdm

    return tqdm(items, desc=label, unit="image", total=total)


def _scenes(count: int, label: str) -> Iterator[Any]:
    from vlx.data.shapes import SPLITS, ShapesWorld

    world, first = ShapesWorld(seed=0), SPLITS["test"][0]
    for index in _progress(range(first, first + count), label):
        yield world.scene(index)


def _scene_input(scene: Any, device: torch.device) -> torch.Tensor:
    from vlx.models.encoders import arrays_to_tensor

    return arrays_to_tensor([scene.image]).to(device)


def _inclusive(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """ShapesWorld boxes end exclusive; the metrics count inclusive pixels."""
    x0, y0, x1, y1 = box
    return x0, y0, x1 - 1, y1 - 1


def _referent_mask(scene: Any, referent: int | str) -> torch.Tensor:
    mask = scene.object_mask(referent) if isinstance(referent, int) else scene.background_mask()
    return torch.from_numpy(mask)


# ShapesWorld referents: one map per grounded caption word or per colour/shape question.


@dataclass
class Referred:
    """A word or answer with its maps (one per method, at the layer's or input resolution)
    and what it refers to in the scene."""

    scene: Any
    category: str
    referent: int | str
    maps: dict[str, torch.Tensor]
    answered: bool = True


def _caption_words(
    captioner: Any, count: int, methods: list[str], layer: str | None, categories: tuple[str, ...]
) -> Iterator[Referred]:
    """The grounded words of each scene's reference caption; all words of a caption are
    explained in one pass per method (teacher forcing)."""
    for scene in _scenes(count, "caption words"):
        tokens = scene.caption_grounding()
        inputs = _scene_input(scene, captioner.device)
        words = [t.word for t in tokens]
        maps = {m: captioner.explain(inputs, words, m, layer=layer).maps[0] for m in methods}
        for t, token in enumerate(tokens):
            if token.category in categories:
                chosen = {m: per_word[t] for m, per_word in maps.items()}
                yield Referred(scene, token.category, token.referent, chosen)


def _vqa_answers(vqa: Any, count: int, methods: list[str], layer: str | None) -> Iterator[Referred]:
    """Colour and shape questions about one object, with the maps of their correct answer
    (so localization is scored apart from accuracy) and whether the model answers right."""
    from vlx.models.vqa_lstm_cnn import encode_questions
    from vlx.tasks.vqa import POINTED_KINDS

    for scene in _scenes(count, "vqa questions"):
        asked = [q for q in scene.questions() if q.kind in POINTED_KINDS and q.referent is not None]
        if not asked:
            continue
        inputs = _scene_input(scene, vqa.device).expand(len(asked), -1, -1, -1)
        questions = encode_questions(vqa.questions, [q.text for q in asked]).to(vqa.device)
        truth = [[vqa.answers.index(q.answer)] for q in asked]
        maps = {m: vqa.explain(inputs, questions, truth, m, layer).maps[:, 0] for m in methods}
        with torch.no_grad():
            predicted = vqa.model(inputs, questions).argmax(-1).tolist()
        for i, question in enumerate(asked):
            chosen = {m: per_question[i] for m, per_question in maps.items()}
            yield Referred(scene, question.kind, question.referent, chosen,
                           predicted[i] == truth[i][0])


def _referred(args: argparse.Namespace, task: str, model: Any, methods: list[str],
              layer: str | None, categories: tuple[str, ...]) -> Iterator[Referred]:
    if task == "caption":
        return _caption_words(model, args.images, methods, layer, categories)
    return _vqa_answers(model, args.images, methods, layer)


# Pascal-VOC images for classifiers.


@dataclass
class Annotated:
    """A VOC image prepared for a classifier: input, top-5 classes, true boxes per class."""

    inputs: torch.Tensor
    size: tuple[int, int]
    predicted: list[int]
    truth: dict[int, list[tuple[int, int, int, int]]]


def _annotated_images(classifier: Any, voc: Path | None, count: int) -> Iterator[Annotated]:
    """VOC images, or without ``--data voc:DIR`` the held-out one-object scenes of the
    ShapesWorld classifier's own classes (its object's box is the truth)."""
    if voc is not None:
        yield from _voc_images(classifier, voc, count)
        return
    scenes = classifier.classifier.scenes
    if scenes is None:
        raise InputError(
            f"--task classify on ShapesWorld needs a ShapesWorld classifier (--model shapes or "
            f"shapes:CHECKPOINT), not {classifier.classifier.name!r}; for other classifiers "
            "pass images with boxes: --data voc:DIR"
        )
    from PIL import Image

    for scene in _progress(scenes.scenes("test", count), "shapes scenes"):
        inputs = classifier.prepare([Image.fromarray(scene.image)])
        predicted = [p.index for p in classifier.predict(inputs, 5)[0]]
        truth = {scenes.label(scene): [_inclusive(scene.objects[0].box)]}
        yield Annotated(inputs, scene.image.shape[:2], predicted, truth)


def _voc_images(classifier: Any, folder: Path, count: int) -> Iterator[Annotated]:
    from vlx.data.voc import class_indices, read_voc
    from vlx.images import load_image

    items = read_voc(folder)[:count]
    names = [o.name for item in items for o in item.objects]
    indices = class_indices(names, classifier.class_names, _synsets(classifier.class_names))
    for item in _progress(items, "voc images"):
        image = load_image(item.path)
        if image.size != (item.width, item.height):
            raise InputError(
                f"{str(item.path)!r} is {image.size[0]}x{image.size[1]} but its XML says "
                f"{item.width}x{item.height}"
            )
        inputs = classifier.prepare([image])
        predicted = [p.index for p in classifier.predict(inputs, 5)[0]]
        truth: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)
        for obj in item.objects:
            truth[indices[obj.name]].append(obj.box)
        yield Annotated(inputs, (item.height, item.width), predicted, dict(truth))


def _synsets(class_names: list[str]) -> list[str] | None:
    """ImageNet's WordNet ids in class order (timm ships them), for 1000-class models."""
    if len(class_names) != 1000:
        return None
    from timm.data import ImageNetInfo

    return list(ImageNetInfo("imagenet-1k").label_names())


def _box_mask(boxes: list[tuple[int, int, int, int]], size: tuple[int, int]) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


# Metrics: each measures into a summary and turns a summary into a table.


def _localization(args: argparse.Namespace, task: str, model: Any, voc: Path | None,
                  layer: str | None) -> dict[str, Any]:
    from vlx.evaluate.localization import LocalizationTally, box_iou, largest_segment_box
    from vlx.explanation import upsample

    if not 0 <= args.threshold <= 1:
        raise InputError(f"--threshold must be in [0, 1] (a fraction of the map's max), "
                         f"got {args.threshold}")
    if not 0 < args.iou <= 1:
        raise InputError(f"--iou must be in (0, 1], got {args.iou}")
    settings = {"method": args.method, "threshold": args.threshold, "iou": args.iou}
    if task == "classify":
        tally = LocalizationTally(threshold=args.threshold, iou=args.iou)
        for item in _annotated_images(model, voc, args.images):
            maps = model.explain(item.inputs, args.method, [item.predicted], layer).maps
            tally.add(item.predicted, upsample(maps, item.size)[0], item.truth)
        return {**settings, "errors": tally.summary()}
    ious: dict[str, list[float]] = defaultdict(list)
    answered: dict[str, int] = defaultdict(int)
    for ref in _referred(args, task, model, [args.method], layer, REFERRED[task]):
        size = ref.scene.image.shape[:2]
        heat = upsample(ref.maps[args.method][None, None], size)[0, 0]
        box = largest_segment_box(heat, args.threshold)
        truth = _inclusive(ref.scene.objects[ref.referent].box)
        ious[ref.category].append(box_iou(box, truth) if box is not None else 0.0)
        answered[ref.category] += ref.answered
    categories = {
        category: {
            "accuracy": sum(v >= args.iou for v in values) / len(values),
            "mean_iou": statistics.fmean(values),
            "count": len(values),
            **({"answered": answered[category] / len(values)} if task == "vqa" else {}),
        }
        for category, values in sorted(ious.items())
    }
    return {**settings, "categories": categories}


def _pointing(args: argparse.Namespace, task: str, model: Any, voc: Path | None,
              layer: str | None) -> dict[str, Any]:
    if task == "classify":
        return _classify_pointing(args, model, voc, layer)
    from vlx.data.shapes import SPLITS, ShapesWorld

    world, first = ShapesWorld(seed=0), SPLITS["test"][0]
    if task == "caption":
        from vlx.tasks.captioning import caption_pointing

        return caption_pointing(model, world, first, args.images, layer)
    from vlx.tasks.vqa import vqa_pointing

    return {"kinds": vqa_pointing(model, world, first, args.images, layer)}


def _classify_pointing(args: argparse.Namespace, classifier: Any, voc: Path | None,
                       layer: str | None) -> dict[str, Any]:
    """Without rejection: the map of every true class, a hit when its peak is in one of the
    class's boxes. With rejection: the top-5 predicted classes (Appendix D)."""
    from vlx.evaluate.pointing import PointingTally, RejectionTally

    thresholds = args.reject_threshold or REJECT_THRESHOLDS
    tallies = [RejectionTally(t) for t in thresholds]
    plain = PointingTally()
    for item in _annotated_images(classifier, voc, args.images):
        if args.rejection:
            maps = classifier.explain(item.inputs, "gradcam", [item.predicted], layer).maps[0]
            masks = torch.stack([_box_mask(item.truth.get(c, []), item.size) for c in item.predicted])
            present = torch.tensor([c in item.truth for c in item.predicted])
            for tally in tallies:
                tally.add(maps.cpu(), masks, present)
            continue
        classes = sorted(item.truth)
        if not classes:
            continue
        maps = classifier.explain(item.inputs, "gradcam", [classes], layer).maps.cpu()
        for t, c in enumerate(classes):
            mask = _box_mask(item.truth[c], item.size)[None, None]
            plain.add(classifier.class_names[c], maps[:, t : t + 1], mask)
    if args.rejection:
        rows = [tally.summary() for tally in tallies]
        best = max(rows, key=lambda row: row["accuracy"])
        return {"rejection": rows, "best_threshold": best["threshold"]}
    return {"classes": plain.summary()}


def _deletion(args: argparse.Namespace, task: str, model: Any, voc: Path | None,
              layer: str | None) -> dict[str, Any]:
    from vlx.evaluate.deletion import curve_area, deletion_curve, insertion_curve

    if args.steps < 1:
        raise InputError(f"--steps must be at least 1, got {args.steps}")
    areas: dict[str, dict[str, list[float]]] = {
        m: {"deletion": [], "insertion": []} for m in args.method
    }
    for number, case in enumerate(_deletion_cases(args, task, model, voc, layer)):
        maps = {m: case.saliency(m) for m in args.method if m != "random"}
        if "random" in args.method:  # noise on Grad-CAM's grid: a map that knows nothing
            grid = (maps["gradcam"] if "gradcam" in maps else case.saliency("gradcam")).shape
            noise = torch.rand(grid, generator=torch.Generator().manual_seed(number))
            maps["random"] = noise.to(case.image.device)
        for method, saliency in maps.items():
            curves = {
                "deletion": deletion_curve(case.score, case.image, saliency, args.steps),
                "insertion": insertion_curve(
                    case.score, case.image, saliency, args.steps, args.insertion_baseline
                ),
            }
            for kind, curve in curves.items():
                areas[method][kind].append(curve_area(curve.cpu()))
    return {
        "steps": args.steps,
        "insertion_baseline": args.insertion_baseline,
        "methods": {
            method: {
                **{kind: _mean_and_error(values) for kind, values in kinds.items()},
                "count": len(kinds["deletion"]),
            }
            for method, kinds in areas.items()
        },
    }


@dataclass
class DeletionCase:
    """One explained score: the model input, the score of a batch of edited copies of it,
    and the saliency map each method gives it."""

    image: torch.Tensor
    score: Callable[[torch.Tensor], torch.Tensor]
    saliency: Callable[[str], torch.Tensor]


def _deletion_cases(args: argparse.Namespace, task: str, model: Any, voc: Path | None,
                    layer: str | None) -> Iterator[DeletionCase]:
    if task == "classify":
        yield from _classify_cases(model, voc, args.images, layer)
    elif task == "vqa":
        yield from _vqa_cases(model, args.images, layer)
    else:
        yield from _caption_cases(model, args.images, layer)


def _classify_cases(classifier: Any, voc: Path | None, count: int,
                    layer: str | None) -> Iterator[DeletionCase]:
    """The top class's probability: on VOC images, ShapesWorld scenes (a ShapesWorld
    classifier) or the bundled photos (any other classifier)."""
    if voc is None and classifier.classifier.scenes is None:
        from vlx.images import load_image

        photos = _progress(DEMO_IMAGES[:count], "deletion (classify)")
        inputs_of = (classifier.prepare([load_image(path)]) for path in photos)
    else:
        inputs_of = (item.inputs for item in _annotated_images(classifier, voc, count))
    for inputs in inputs_of:
        top = classifier.predict(inputs, 1)[0][0].index
        yield DeletionCase(
            inputs[0],
            partial(_class_probability, classifier.model, top),
            lambda method, inputs=inputs, top=top: classifier.explain(
                inputs, method, [[top]], layer).maps[0, 0],
        )


def _class_probability(model: Any, top: int, batch: torch.Tensor) -> torch.Tensor:
    from vlx.targets import logits_of

    return logits_of(model(batch)).softmax(-1)[:, top]


def _vqa_cases(vqa: Any, count: int, layer: str | None) -> Iterator[DeletionCase]:
    """The predicted answer's probability for each scene's first question."""
    from vlx.models.vqa_lstm_cnn import encode_questions

    for scene in _scenes(count, "deletion (vqa)"):
        inputs = _scene_input(scene, vqa.device)
        question = encode_questions(vqa.questions, [scene.questions()[0].text]).to(vqa.device)
        with torch.no_grad():
            answer = int(vqa.model(inputs, question).argmax(-1))
        yield DeletionCase(
            inputs[0],
            partial(_answer_probability, vqa.model, question, answer),
            lambda method, inputs=inputs, question=question, answer=answer: vqa.explain(
                inputs, question, [[answer]], method, layer).maps[0, 0],
        )


def _answer_probability(
    model: Any, question: torch.Tensor, answer: int, batch: torch.Tensor
) -> torch.Tensor:
    return model(batch, question.expand(batch.shape[0], -1)).softmax(-1)[:, answer]


def _caption_cases(captioner: Any, count: int, layer: str | None) -> Iterator[DeletionCase]:
    """p(word | image, words before) of every colour and shape word of the reference caption."""
    from vlx.tasks.captioning import WordLogProbs

    for scene in _scenes(count, "deletion (caption)"):
        inputs = _scene_input(scene, captioner.device)
        tokens = scene.caption_grounding()
        words = [t.word for t in tokens]
        forced = captioner.teacher_forcing(words, 1)
        ids = captioner.vocabulary.encode(words)
        for t, token in enumerate(tokens):
            if token.category in ("colour", "shape"):
                yield DeletionCase(
                    inputs[0],
                    partial(_word_probability, captioner.model, forced, WordLogProbs(ids, positions=[t])),
                    lambda method, inputs=inputs, words=words, t=t: captioner.explain(
                        inputs, words, method, layer=layer, positions=[t]).maps[0, 0],
                )


def _word_probability(
    model: Any, forced: torch.Tensor, target: Callable[[torch.Tensor], torch.Tensor],
    batch: torch.Tensor,
) -> torch.Tensor:
    return target(model(batch, forced.expand(batch.shape[0], -1)))[:, 0].exp()


def _energy(args: argparse.Namespace, task: str, model: Any, voc: Path | None,
            layer: str | None) -> dict[str, Any]:
    """Inside/outside ratio of each word's map on its referent's pixels (an object, or the
    background for a texture word); NaN ratios (all-zero maps) are counted and left out."""
    from vlx.evaluate.energy import inside_outside_ratio

    ratios: dict[str, dict[str, list[float]]] = {m: defaultdict(list) for m in args.method}
    for ref in _referred(args, task, model, args.method, layer, ENERGY_CATEGORIES):
        mask = _referent_mask(ref.scene, ref.referent)
        for method, heat in ref.maps.items():
            ratios[method][ref.category].append(inside_outside_ratio(heat.cpu(), mask))
    return {
        "uniform_map": 1.0,
        "methods": {
            method: {category: _ratio_summary(values) for category, values in sorted(rows.items())}
            for method, rows in ratios.items()
        },
    }


def _ratio_summary(values: list[float]) -> dict[str, float]:
    """Median over defined ratios (robust to infinite ones), mean and standard error over
    finite ones, and how many were NaN or infinite."""
    defined = [v for v in values if not math.isnan(v)]
    finite = [v for v in defined if math.isfinite(v)]
    return {
        "median": statistics.median(defined) if defined else float("nan"),
        **_mean_and_error(finite),
        "count": len(values),
        "undefined": len(values) - len(defined),
        "infinite": len(defined) - len(finite),
    }


def _mean_and_error(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values) if values else float("nan"),
        "std_error": statistics.stdev(values) / math.sqrt(len(values))
        if len(values) > 1 else float("nan"),
    }


def _faithfulness(args: argparse.Namespace, task: str, model: Any, voc: Path | None,
                  layer: str | None) -> dict[str, Any]:
    from vlx.data.shapes import SPLITS, ShapesWorld
    from vlx.tasks.vqa import vqa_faithfulness

    world, first = ShapesWorld(seed=0), SPLITS["test"][0]
    return {"methods": vqa_faithfulness(model, world, first, args.images)}


# Tables.


def _heading(summary: dict) -> list[str]:
    model = f", model {summary['model']}" if summary.get("model") else ""
    method = f", method {summary['method']}" if isinstance(summary.get("method"), str) else ""
    title = (
        f"{summary['metric']}, task {summary['task']}{model}{method}, {summary['data']} "
        f"(up to {summary['images']} images), layer {summary['layer']}"
    )
    return [title, ""]


def _paper(summary: dict) -> list[str]:
    return ["", f"paper: {summary['paper']}"] if summary.get("paper") else []


def caption_pointing_table(summary: dict) -> str:
    """Per word category: Grad-CAM (any instance / described object) and the baselines."""
    header = (
        "| words | scored | Grad-CAM (any instance) | Grad-CAM (described object) | centre "
        "| random point |"
    )
    lines = [*_heading(summary), header, "|---|---|---|---|---|---|"]
    for category, lenient in summary["lenient"].items():
        strict = summary["strict"][category]
        lines.append(
            f"| {category} | {lenient['count']} | {lenient['accuracy']:.1%} | "
            f"{strict['accuracy']:.1%} | {lenient['centre']:.1%} | {lenient['random']:.1%} |"
        )
    return "\n".join(lines + _paper(summary))


def vqa_pointing_table(summary: dict) -> str:
    """Per question kind: Grad-CAM on the object asked about, the model's own attention
    (models that attend), the baselines, accuracy."""
    attends = any("attention" in row for row in summary["kinds"].values())
    looked = " its attention |" if attends else ""
    lines = _heading(summary) + [
        f"| questions | scored | Grad-CAM |{looked} centre | random point | answered correctly |",
        "|---|---|---|" + ("---|" if attends else "") + "---|---|---|",
    ]
    for kind, row in summary["kinds"].items():
        attention = f" {row['attention']:.1%} |" if attends else ""
        lines.append(
            f"| {kind} | {row['count']} | {row['accuracy']:.1%} |{attention} {row['centre']:.1%}"
            f" | {row['random']:.1%} | {row['answered']:.1%} |"
        )
    return "\n".join(lines)


def classify_pointing_table(summary: dict) -> str:
    """Per true class (plain pointing game), or per rejection threshold."""
    if "rejection" in summary:
        lines = _heading(summary) + [
            "| threshold | accuracy | hits | misses | false alarms | correct rejections |",
            "|---|---|---|---|---|---|",
        ]
        for row in summary["rejection"]:
            best = " (best)" if row["threshold"] == summary["best_threshold"] else ""
            lines.append(
                f"| {row['threshold']:g}{best} | {row['accuracy']:.1%} | {row['hit']} | "
                f"{row['miss']} | {row['false_alarm']} | {row['correct_rejection']} |"
            )
        note = ["", "the best threshold is chosen on the same images: an optimistic figure"]
        return "\n".join(lines + note + _paper(summary))
    lines = _heading(summary) + ["| class | scored | Grad-CAM | centre | random point |",
                                 "|---|---|---|---|---|"]
    for name, row in summary["classes"].items():
        lines.append(
            f"| {name} | {row['count']} | {row['accuracy']:.1%} | {row['centre']:.1%} | "
            f"{row['random']:.1%} |"
        )
    return "\n".join(lines)


def pointing_table(summary: dict) -> str:
    if summary["task"] == "caption":
        return caption_pointing_table(summary)
    if summary["task"] == "vqa":
        return vqa_pointing_table(summary)
    return classify_pointing_table(summary)


def faithfulness_table(summary: dict) -> str:
    """Mean rank correlation with occlusion per method, with its standard error, and the
    first method's paired lead over each other method on the same scenes."""
    methods = list(summary["methods"])
    lines = _heading(summary) + [
        f"| method | rank correlation | std. error | maps | {methods[0]} minus it (paired) |",
        "|---|---|---|---|---|",
    ]
    for method, row in summary["methods"].items():
        lead = (f"{row['difference']:+.3f} +- {row['difference_std_error']:.3f} "
                f"({row['difference_count']} scenes)" if "difference" in row else "")
        lines.append(f"| {method} | {row['rank_correlation']:.3f} | {row['std_error']:.3f} | "
                     f"{row['count']} | {lead} |")
    return "\n".join(lines + _paper(summary))


def localization_table(summary: dict) -> str:
    """ILSVRC errors for classifiers; per category box accuracy and mean IoU on ShapesWorld."""
    setting = f"box of the largest segment >= {summary['threshold']:g} x max, IoU >= {summary['iou']:g}"
    if "errors" in summary:
        errors = summary["errors"]
        lines = _heading(summary) + [setting, "", "| | top-1 | top-5 |", "|---|---|---|"]
        for kind in ("localization", "classification"):
            lines.append(
                f"| {kind} error | {errors[f'top1_{kind}_error']:.1%} | "
                f"{errors[f'top5_{kind}_error']:.1%} |"
            )
        return "\n".join([*lines, "", f"images scored: {errors['images']}", *_paper(summary)])
    vqa = summary["task"] == "vqa"
    header = "| referent of | scored | localized (IoU >= 0.5) | mean IoU |" + (
        " answered correctly |" if vqa else "")
    lines = _heading(summary) + [setting, "", header, "|---|---|---|---|" + ("---|" if vqa else "")]
    for category, row in summary["categories"].items():
        answered = f" {row['answered']:.1%} |" if vqa else ""
        lines.append(
            f"| {category} | {row['count']} | {row['accuracy']:.1%} | {row['mean_iou']:.3f} |"
            + answered
        )
    return "\n".join(lines)


def deletion_table(summary: dict) -> str:
    """Mean deletion (lower is better) and insertion (higher is better) areas per method."""
    lines = _heading(summary) + [
        "| method | deletion area (lower is better) | insertion area (higher is better) | maps |",
        "|---|---|---|---|",
    ]
    for method, row in summary["methods"].items():
        d, i = row["deletion"], row["insertion"]
        lines.append(
            f"| {method} | {d['mean']:.3f} ± {d['std_error']:.3f} | "
            f"{i['mean']:.3f} ± {i['std_error']:.3f} | {row['count']} |"
        )
    note = (f"{summary['steps']} steps; deletion to the zero image (the mean colour of "
            f"normalised inputs), insertion into the {summary['insertion_baseline']} baseline "
            "(Petsiuk et al. insert into a blur); ± one standard error")
    return "\n".join([*lines, "", note])


def energy_table(summary: dict) -> str:
    """Inside/outside ratio per method and word category, next to a uniform map's 1.0."""
    lines = _heading(summary) + [
        "| method | words | scored | median ratio | mean ratio (finite) | all-zero maps "
        + "| zero outside |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, rows in summary["methods"].items():
        for category, row in rows.items():
            lines.append(
                f"| {method} | {category} | {row['count']} | {row['median']:.2f} | "
                f"{row['mean']:.2f} ± {row['std_error']:.2f} | {row['undefined']} | "
                f"{row['infinite']} |"
            )
    lines.append(f"| uniform map | any | | {summary['uniform_map']:.2f} | | | |")
    return "\n".join(lines + _paper(summary))


@dataclass(frozen=True)
class Metric:
    measure: Callable[..., dict[str, Any]]
    table: Callable[[dict], str]


METRICS = {
    "pointing": Metric(_pointing, pointing_table),
    "faithfulness": Metric(_faithfulness, faithfulness_table),
    "localization": Metric(_localization, localization_table),
    "deletion": Metric(_deletion, deletion_table),
    "energy": Metric(_energy, energy_table),
}
