"""What a dataset run explains: ``--data SOURCE`` read into an ordered list of items.

An item names one example cheaply (a file, a scene number, the task's text and the targets to
explain); its image is decoded later, in a loader worker, so a million items cost a list, not a
million images. The order is fixed for a source, so a run can be cut into parts, resumed, and
split between processes. The readers of real formats (COCO, VQA v2, Pascal VOC) are the ones
training and evaluation use.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from vlx.errors import InputError
from vlx.images import load_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
FORMS = (
    "a folder of images (searched recursively)",
    "a text file of image paths (one a line)",
    "csv:FILE (columns image, and question / caption / targets)",
    "coco:CAPTIONS_JSON,IMAGE_DIR",
    "vqa2:QUESTIONS_JSON,ANNOTATIONS_JSON,IMAGE_DIR",
    "voc:DIR",
    "shapes:N (N ShapesWorld test scenes; for VQA, with their questions)",
)


@dataclass(frozen=True)
class Item:
    """One example of a source: where its image is (a file, or a ShapesWorld test scene),
    its text (a question, or a caption to explain) and the targets to explain (``()``: the
    model's prediction)."""

    name: str
    path: Path | None = None
    scene: int | None = None
    text: str | None = None
    targets: tuple[str, ...] = field(default=())

    def image(self) -> Image.Image:
        if self.path is not None:
            return load_image(self.path)
        from vlx.data.shapes import SPLITS, ShapesWorld

        return Image.fromarray(ShapesWorld(seed=0).scene(SPLITS["test"][0] + self.scene).image)


def read_source(spec: str, kind: str) -> list[Item]:
    """The items of ``--data`` ``spec`` for a task of ``kind`` (classify, caption, vqa)."""
    prefix, colon, rest = spec.partition(":")
    if colon and prefix in READERS:
        if not rest:
            raise InputError(f"--data {spec!r} names no {prefix} data; valid forms: {'; '.join(FORMS)}")
        items = READERS[prefix](rest, kind)
    else:
        path = Path(spec).expanduser()
        if path.is_dir():
            items = _folder(path)
        elif path.is_file():
            items = _listed(path)
        else:
            raise InputError(
                f"--data {spec!r} is neither a folder, a file nor a known form; valid forms: "
                f"{'; '.join(FORMS)}"
            )
    if not items:
        raise InputError(f"--data {spec!r} holds no examples")
    if kind == "vqa" and any(item.text is None for item in items):
        raise InputError(f"--data {spec!r} gives no questions; VQA needs csv:FILE with a "
                         "question column, vqa2:... or shapes:N")
    return items


def _folder(folder: Path) -> list[Item]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                   and p.is_file() and not p.name.startswith("."))
    return [Item(str(p.relative_to(folder)), p) for p in files]


def _listed(file: Path) -> list[Item]:
    """One image path a line (relative paths are relative to the list's folder)."""
    items = []
    for line in file.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            path = Path(line.strip()).expanduser()
            path = path if path.is_absolute() else file.parent / path
            items.append(Item(line.strip(), path))
    return items


def _csv(spec: str, kind: str) -> list[Item]:
    file = Path(spec).expanduser()
    if not file.is_file():
        raise InputError(f"--data csv:{spec}: {str(file)!r} does not exist")
    with file.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        columns = reader.fieldnames or []
        if "image" not in columns:
            raise InputError(f"{str(file)!r} has no 'image' column; its columns: "
                             f"{', '.join(columns) or 'none'}")
        text = "question" if kind == "vqa" else "caption" if kind == "caption" else None
        items = []
        for line, row in enumerate(reader, start=2):
            if not row.get("image"):
                raise InputError(f"{str(file)!r} line {line} has no image")
            path = Path(row["image"]).expanduser()
            path = path if path.is_absolute() else file.parent / path
            targets = tuple(t.strip() for t in (row.get("targets") or "").split(";") if t.strip())
            items.append(Item(row["image"], path, None, (row.get(text) or None) if text else None,
                              targets))
    return items


def _coco(spec: str, kind: str) -> list[Item]:
    """Each captioned image; a captioner explains its first reference caption."""
    from vlx.data.coco import CocoCaptions

    annotations, _, images = spec.partition(",")
    data = CocoCaptions(annotations, images or None)
    return [Item(f"coco:{i}", data.image_path(i), None,
                 data.captions(i)[0] if kind == "caption" else None)
            for i in data.image_ids()]


def _vqa2(spec: str, kind: str) -> list[Item]:
    from vlx.data.vqa2 import VQA2

    parts = spec.split(",")
    if len(parts) != 3 or not all(parts):
        raise InputError(f"--data vqa2:{spec} must name QUESTIONS_JSON,ANNOTATIONS_JSON,IMAGE_DIR")
    data = VQA2(*parts)
    return [Item(f"vqa2:{question_id}", data.image_path(image_id), None, question)
            for question_id, image_id, question, _ in data.items()]


def _voc(spec: str, kind: str) -> list[Item]:
    """Each annotated image; a classifier explains the classes its boxes name."""
    from vlx.data.voc import read_voc

    items = []
    for image in read_voc(spec):
        names = tuple(dict.fromkeys(o.name for o in image.objects))
        items.append(Item(image.path.name, image.path, None, None,
                          names if kind == "classify" else ()))
    return items


def _shapes(spec: str, kind: str) -> list[Item]:
    from vlx.data.shapes import SPLITS, ShapesWorld

    first, length = SPLITS["test"]
    if not spec.isdigit() or not 1 <= int(spec) <= length:
        raise InputError(f"--data shapes:{spec}: give a number of test scenes, 1..{length}")
    count = int(spec)
    if kind != "vqa":
        return [Item(f"shapes-test-{i}", None, i) for i in range(count)]
    world = ShapesWorld(seed=0)
    return [Item(f"shapes-test-{i}#{q}", None, i, question.text)
            for i in range(count) for q, question in enumerate(world.scene(first + i).questions())]


READERS = {"csv": _csv, "coco": _coco, "vqa2": _vqa2, "voc": _voc, "shapes": _shapes}
