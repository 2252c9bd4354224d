"""Where evaluations get examples with ground truth: ShapesWorld, Pascal-VOC boxes, COCO.

A source is an ordered list of groups (a ShapesWorld scene, a photo) and a builder that turns
one group into its examples, whose ``truth`` says what each target refers to: the builder runs
in loader workers, so scenes are drawn and photos decoded beside the model. A source also says
which referent categories each metric scores. ShapesWorld's grounded caption words, its
questions about one object and its one-object classifier scenes cover every task; ``voc:DIR``
gives any classifier real photos with boxes, ``coco:CAPTIONS,INSTANCES,IMAGES`` any captioner
real photos with instance masks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image

from vlx.errors import InputError
from vlx.task import Example, Task

SHAPES_CATEGORIES = {
    ("caption", "pointing"): ("colour", "shape", "texture"),
    ("caption", "localization"): ("colour", "shape", "size"),
    ("caption", "energy"): ("colour", "shape", "size", "texture"),
    ("caption", "deletion"): ("colour", "shape"),
    ("caption", "road"): ("colour", "shape"),
    ("caption", "sanity"): ("colour", "shape"),
}
"""Which grounded caption words each metric scores on ShapesWorld (a texture word refers to
the background, which has no box; size words name objects by a relation between them)."""
UNGROUNDED = ("deletion", "faithfulness", "road", "sanity")
"""Metrics that need no ground truth: they explain what the model predicts (a VQA model's
answer, a classifier's top class), and a classifier without ShapesWorld classes is scored on
the bundled photos."""
POINTED_KINDS = ("colour", "shape")
"""Questions whose correct answer refers to one object: what is asked about it."""


@dataclass
class EvaluationData:
    """The groups of a source, how one group becomes examples with truth, how results name
    the data, and what a metric counts: the referent categories (``None``: all) and whether
    it explains the model's predictions rather than the truth's targets."""

    label: str
    groups: Sequence[Any]
    build: Callable[[Any], list[Example]]
    categories: tuple[str, ...] | None = None
    predicted: bool = False

    @property
    def size(self) -> int:
        return len(self.groups)

    def batches(self) -> Iterator[list[Example]]:
        """The examples of each group in turn, built here (``runner.measure`` builds them in
        loader workers)."""
        for group in self.groups:
            examples = self.build(group)
            if examples:
                yield examples


def evaluation_data(task: Task, data: str, count: int, metric: str) -> EvaluationData:
    """The examples ``metric`` scores ``task`` on: ``data`` is ``shapes`` (the test split),
    ``voc:DIR`` (classifiers) or ``coco:CAPTIONS_JSON,INSTANCES_JSON,IMAGE_DIR`` (captioners);
    a metric in ``UNGROUNDED`` also takes any ``vlx explain --data`` source."""
    kind = task.kind
    prefix, _, rest = data.partition(":")
    if data == "shapes":
        return _shapes(task, count, metric)
    if prefix == "voc" and rest:
        if kind != "classify":
            raise InputError(f"--data voc:DIR is for classifiers, not --task {kind}")
        return _voc(task, Path(rest), count, metric)
    if prefix == "coco" and rest:
        if kind != "caption":
            raise InputError(f"--data coco:... is for captioners, not --task {kind}")
        return _coco(rest, count)
    if metric in UNGROUNDED:
        return _unannotated(data, kind, count)
    raise InputError(
        f"--data {data!r} has no ground truth for {metric}; valid: shapes, voc:DIR, "
        "coco:CAPTIONS_JSON,INSTANCES_JSON,IMAGE_DIR (deletion, faithfulness, road and sanity "
        "also take any `vlx explain --data` source)"
    )


def _shapes(task: Task, count: int, metric: str) -> EvaluationData:
    from vlx.data.shapes import SPLITS

    first, length = SPLITS["test"]
    if count > length:
        raise InputError(f"--images {count}: the ShapesWorld test split holds {length} scenes")
    if task.kind == "classify":
        return _shapes_classify(task, count, metric)
    label, scenes = "ShapesWorld test split", list(range(first, first + count))
    if task.kind == "caption":
        categories = SHAPES_CATEGORIES.get(("caption", metric))
        return EvaluationData(label, scenes, _caption_scene, categories)
    predicted = metric in UNGROUNDED
    return EvaluationData(label, scenes, partial(_question_scene, first=not predicted),
                          None, predicted)


def _caption_scene(index: int) -> list[Example]:
    """A test scene with its reference caption, each grounded word its truth."""
    from vlx.data.shapes import SPLITS, ShapesWorld
    from vlx.data.shapes.truth import CaptionWords

    scene = ShapesWorld(seed=0).scene(index)
    name = f"shapes-test-{index - SPLITS['test'][0]}"
    return [Example(Image.fromarray(scene.image), scene.caption(), name, CaptionWords(scene))]


def _question_scene(index: int, first: bool) -> list[Example]:
    """A test scene's colour and shape questions about one object (``first``), or its first
    question (explained at the model's own answer)."""
    from vlx.data.shapes import SPLITS, ShapesWorld
    from vlx.data.shapes.truth import QuestionAnswer

    scene = ShapesWorld(seed=0).scene(index)
    asked = [q for q in scene.questions() if q.kind in POINTED_KINDS and q.referent is not None
             ] if first else scene.questions()[:1]
    image = Image.fromarray(scene.image)
    name = f"shapes-test-{index - SPLITS['test'][0]}"
    return [Example(image, q.text, name, QuestionAnswer(scene, q)) for q in asked]


def _shapes_classify(task: Task, count: int, metric: str) -> EvaluationData:
    """The held-out one-object scenes of a ShapesWorld classifier's own classes; any other
    classifier is scored on the bundled photos (it has no ShapesWorld classes) where the metric
    needs no truth."""
    scenes = getattr(task, "scenes", None)
    if scenes is None:
        if metric in UNGROUNDED:
            return _bundled_photos(count)
        raise InputError(
            f"--task classify on ShapesWorld needs a ShapesWorld classifier (--model shapes or "
            f"shapes:CHECKPOINT), not {task.name!r}; for other classifiers pass images with "
            "boxes: --data voc:DIR"
        )
    indices = [scene.index for scene in scenes.scenes("test", count)]
    build = partial(_classifier_scene, scenes=scenes, names=tuple(task.class_names))
    return EvaluationData("ShapesWorld test split", indices, build, None, metric in UNGROUNDED)


def _classifier_scene(index: int, scenes: Any, names: tuple[str, ...]) -> list[Example]:
    """A classifier's test scene: its object's box is the truth, as photos' boxes are."""
    from vlx.data.shapes.truth import inclusive
    from vlx.data.truth import AnnotatedBoxes

    scene = scenes.scene(index)
    boxes = {scenes.label(scene): [inclusive(scene.objects[0].box)]}
    truth = AnnotatedBoxes(boxes, names, scene.image.shape[:2])
    return [Example(Image.fromarray(scene.image), None, f"shapes-{scene.index}", truth)]


def _bundled_photos(count: int) -> EvaluationData:
    from vlx.images import DEMO_IMAGES
    from vlx.runs.sources import Item

    items = [Item(path.stem, path) for path in DEMO_IMAGES[:count]]
    return EvaluationData("the bundled photos", items, _item, None, True)


def _unannotated(spec: str, kind: str, count: int) -> EvaluationData:
    """Any dataset-run source (a folder, a list of paths, ``csv:FILE``...), for the metrics that
    explain the model's own predictions."""
    from vlx.runs.sources import read_source

    return EvaluationData(spec, read_source(spec, kind)[:count], _item, None, True)


def _item(item: Any) -> list[Example]:
    """A dataset-run item as the example it names (its text a question or caption, if any)."""
    return [Example(item.image(), item.text, item.name)]


def _voc(task: Task, folder: Path, count: int, metric: str) -> EvaluationData:
    from vlx.data.voc import class_indices, read_voc

    items = read_voc(folder)[:count]
    names = [o.name for item in items for o in item.objects]
    indices = class_indices(names, task.class_names, _synsets(task.class_names))
    build = partial(_voc_image, indices=indices, names=tuple(task.class_names))
    return EvaluationData(f"voc:{folder}", items, build, None, metric in UNGROUNDED)


def _voc_image(item: Any, indices: dict[str, int], names: tuple[str, ...]) -> list[Example]:
    from vlx.data.truth import AnnotatedBoxes
    from vlx.images import load_image

    image = load_image(item.path)
    if image.size != (item.width, item.height):
        raise InputError(
            f"{str(item.path)!r} is {image.size[0]}x{image.size[1]} but its XML says "
            f"{item.width}x{item.height}"
        )
    boxes: dict[int, list] = defaultdict(list)
    for obj in item.objects:
        boxes[indices[obj.name]].append(obj.box)
    truth = AnnotatedBoxes(boxes, names, (item.height, item.width))
    return [Example(image, None, item.path.stem, truth)]


def _coco(spec: str, count: int) -> EvaluationData:
    """Each image with its first reference caption; a word that names a COCO category (or a
    synonym of one) refers to the category's instance masks (the paper's Sec. 8.1.1)."""
    from vlx.data.coco import CocoCaptions
    from vlx.data.coco_instances import CocoInstances

    parts = spec.split(",")
    if len(parts) != 3 or not all(parts):
        raise InputError(f"--data coco:{spec} must name CAPTIONS_JSON,INSTANCES_JSON,IMAGE_DIR")
    captions = CocoCaptions(parts[0], parts[2])
    instances = CocoInstances(parts[1])
    ids = [i for i in captions.image_ids() if captions.captions(i)][:count]
    build = partial(_coco_image, captions=captions, instances=instances)
    return EvaluationData(f"coco:{parts[0]}", ids, build)


def _coco_image(image_id: int, captions: Any, instances: Any) -> list[Example]:
    text = captions.captions(image_id)[0]
    return [Example(captions.image(image_id), text, str(image_id), instances.truth(image_id))]


def _synsets(class_names: list[str]) -> list[str] | None:
    """ImageNet's WordNet ids in class order (timm ships them), for 1000-class models."""
    if len(class_names) != 1000:
        return None
    from timm.data import ImageNetInfo

    return list(ImageNetInfo("imagenet-1k").label_names())
