"""Where evaluations get examples with ground truth: ShapesWorld, Pascal-VOC boxes, COCO.

A source yields batches of ``vlx.task.Example`` whose ``truth`` says what each target refers
to, and says which referent categories each metric scores. ShapesWorld's grounded caption
words, its questions about one object and its one-object classifier scenes cover every task;
``voc:DIR`` gives any classifier real photos with boxes, ``coco:CAPTIONS,INSTANCES,IMAGES``
any captioner real photos with instance masks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from vlx.errors import InputError
from vlx.task import Example, Task

ExampleBatches = Callable[[], Iterator[list[Example]]]

SHAPES_CATEGORIES = {
    ("caption", "pointing"): ("colour", "shape", "texture"),
    ("caption", "localization"): ("colour", "shape", "size"),
    ("caption", "energy"): ("colour", "shape", "size", "texture"),
    ("caption", "deletion"): ("colour", "shape"),
}
"""Which grounded caption words each metric scores on ShapesWorld (a texture word refers to
the background, which has no box; size words name objects by a relation between them)."""
POINTED_KINDS = ("colour", "shape")
"""Questions whose correct answer refers to one object: what is asked about it."""


@dataclass
class EvaluationData:
    """Batches of examples with truth, how results name the data, and the categories of
    referent a metric counts (``None``: all)."""

    label: str
    batches: ExampleBatches
    size: int
    categories: tuple[str, ...] | None = None
    predicted: bool = False
    """Explain what the model predicts (deletion, faithfulness) rather than the truth."""
    notes: dict[str, object] = field(default_factory=dict)


def evaluation_data(task: Task, data: str, count: int, metric: str) -> EvaluationData:
    """The examples ``metric`` scores ``task`` on: ``data`` is ``shapes`` (the test split),
    ``voc:DIR`` (classifiers) or ``coco:CAPTIONS_JSON,INSTANCES_JSON,IMAGE_DIR`` (captioners)."""
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
        return _coco(rest, count, metric)
    raise InputError(
        f"unknown --data {data!r}; valid: shapes, voc:DIR, coco:CAPTIONS_JSON,INSTANCES_JSON,"
        "IMAGE_DIR"
    )


def _shapes(task: Task, count: int, metric: str) -> EvaluationData:
    from vlx.data.shapes import SPLITS, ShapesWorld

    first, length = SPLITS["test"]
    if count > length:
        raise InputError(f"--images {count}: the ShapesWorld test split holds {length} scenes")
    world = ShapesWorld(seed=0)
    if task.kind == "classify":
        return _shapes_classify(task, count, metric)

    def scenes() -> Iterator:
        return (world.scene(i) for i in _progress(range(first, first + count), metric))

    label = "ShapesWorld test split"
    if task.kind == "caption":
        from vlx.data.shapes.truth import CaptionWords

        def captions() -> Iterator[list[Example]]:
            for scene in scenes():
                yield [Example(Image.fromarray(scene.image), scene.caption(),
                               f"shapes-test-{scene.index - first}", CaptionWords(scene))]

        categories = SHAPES_CATEGORIES.get(("caption", metric))
        return EvaluationData(label, captions, count, categories)
    from vlx.data.shapes.truth import QuestionAnswer

    predicted = metric in ("deletion", "faithfulness")

    def questions() -> Iterator[list[Example]]:
        for scene in scenes():
            asked = scene.questions()[:1] if predicted else [
                q for q in scene.questions() if q.kind in POINTED_KINDS and q.referent is not None
            ]
            image = Image.fromarray(scene.image)
            name = f"shapes-test-{scene.index - first}"
            if asked:
                yield [Example(image, q.text, name, QuestionAnswer(scene, q)) for q in asked]

    return EvaluationData(label, questions, count, None, predicted)


def _shapes_classify(task: Task, count: int, metric: str) -> EvaluationData:
    """The held-out one-object scenes of a ShapesWorld classifier's own classes; any other
    classifier is scored for deletion on the bundled photos (it has no ShapesWorld classes)."""
    from vlx.data.shapes.truth import inclusive
    from vlx.data.truth import AnnotatedBoxes

    scenes = getattr(task, "scenes", None)
    if scenes is None:
        if metric == "deletion":
            return _bundled_photos(count)
        raise InputError(
            f"--task classify on ShapesWorld needs a ShapesWorld classifier (--model shapes or "
            f"shapes:CHECKPOINT), not {task.name!r}; for other classifiers pass images with "
            "boxes: --data voc:DIR"
        )
    names = task.class_names

    def batches() -> Iterator[list[Example]]:
        for scene in _progress(scenes.scenes("test", count), metric):
            boxes = {scenes.label(scene): [inclusive(scene.objects[0].box)]}
            truth = AnnotatedBoxes(boxes, names, scene.image.shape[:2])
            yield [Example(Image.fromarray(scene.image), None, f"shapes-{scene.index}", truth)]

    return EvaluationData("ShapesWorld test split", batches, count, None, metric == "deletion")


def _bundled_photos(count: int) -> EvaluationData:
    from vlx.images import DEMO_IMAGES, load_image

    photos = DEMO_IMAGES[:count]

    def batches() -> Iterator[list[Example]]:
        for path in _progress(photos, "deletion"):
            yield [Example(load_image(path), None, path.stem)]

    return EvaluationData("the bundled photos", batches, len(photos), None, True)


def _voc(task: Task, folder: Path, count: int, metric: str) -> EvaluationData:
    from vlx.data.truth import AnnotatedBoxes
    from vlx.data.voc import class_indices, read_voc
    from vlx.images import load_image

    items = read_voc(folder)[:count]
    names = [o.name for item in items for o in item.objects]
    indices = class_indices(names, task.class_names, _synsets(task.class_names))

    def batches() -> Iterator[list[Example]]:
        for item in _progress(items, "voc images"):
            image = load_image(item.path)
            if image.size != (item.width, item.height):
                raise InputError(
                    f"{str(item.path)!r} is {image.size[0]}x{image.size[1]} but its XML says "
                    f"{item.width}x{item.height}"
                )
            boxes: dict[int, list] = defaultdict(list)
            for obj in item.objects:
                boxes[indices[obj.name]].append(obj.box)
            truth = AnnotatedBoxes(boxes, task.class_names, (item.height, item.width))
            yield [Example(image, None, item.path.stem, truth)]

    return EvaluationData(f"voc:{folder}", batches, len(items), None, metric == "deletion")


def _coco(spec: str, count: int, metric: str) -> EvaluationData:
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

    def batches() -> Iterator[list[Example]]:
        for image_id in _progress(ids, "coco images"):
            text = captions.captions(image_id)[0]
            truth = instances.truth(image_id)
            yield [Example(captions.image(image_id), text, str(image_id), truth)]

    return EvaluationData(f"coco:{parts[0]}", batches, len(ids))


def _synsets(class_names: list[str]) -> list[str] | None:
    """ImageNet's WordNet ids in class order (timm ships them), for 1000-class models."""
    if len(class_names) != 1000:
        return None
    from timm.data import ImageNetInfo

    return list(ImageNetInfo("imagenet-1k").label_names())


def _progress(items, label: str):
    from tqdm.auto import tqdm

    return tqdm(items, desc=label, unit="image")
