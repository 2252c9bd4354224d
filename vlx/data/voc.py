"""Pascal-VOC box annotations: a folder of images with one XML file each.

This is the format ImageNet's localization boxes and many labelling tools write, so a person
with their own images and boxes can measure weakly-supervised localization and the pointing
game on them. Boxes are read as ``(x0, y0, x1, y1)`` inclusive pixel coordinates from 0; VOC
counts pixels from 1 (``origin=1``), ImageNet's ILSVRC XML from 0 (``origin=0``).

Class names in the XML are mapped to a classifier's indices by WordNet id (``n01440764``,
ImageNet's synsets in class order) or by the classifier's class names (case-insensitive,
any comma-separated synonym).
"""

from __future__ import annotations

import difflib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vlx.errors import InputError

IMAGE_FOLDERS = ("", "JPEGImages", "images")
ANNOTATION_FOLDERS = ("", "Annotations")


@dataclass(frozen=True)
class VOCObject:
    name: str
    box: tuple[int, int, int, int]
    difficult: bool = False


@dataclass(frozen=True)
class VOCImage:
    """One annotated image: its file, size (from the XML) and objects."""

    path: Path
    width: int
    height: int
    objects: tuple[VOCObject, ...]

    def boxes(self, name: str) -> list[tuple[int, int, int, int]]:
        """The boxes of every object called ``name``."""
        return [o.box for o in self.objects if o.name == name]


def read_voc(directory: str | Path, origin: int = 1) -> list[VOCImage]:
    """Every annotated image under ``directory``, sorted by XML file name.

    XML files are looked for in ``directory`` and ``directory/Annotations``; each XML's
    ``<filename>`` is looked for in ``directory``, ``JPEGImages/`` and ``images/``. A missing
    image, a malformed XML or a box outside its image is an ``InputError`` naming the file.
    """
    root = Path(directory)
    if not root.is_dir():
        raise InputError(f"VOC folder {str(root)!r} does not exist or is not a folder")
    files = sorted(
        {p for folder in ANNOTATION_FOLDERS for p in (root / folder).glob("*.xml")},
        key=lambda p: p.name,
    )
    if not files:
        raise InputError(f"no .xml annotation files in {str(root)!r} or {str(root / 'Annotations')!r}")
    return [read_annotation(file, root, origin) for file in files]


def read_annotation(file: Path, root: Path, origin: int = 1) -> VOCImage:
    """One XML file's image, size and boxes (see ``read_voc``)."""
    try:
        annotation = ET.parse(file).getroot()
        name = _text(annotation, "filename")
        width = int(_text(annotation, "size/width"))
        height = int(_text(annotation, "size/height"))
        objects = tuple(_object(node, origin) for node in annotation.iter("object"))
    except ET.ParseError as err:
        raise InputError(f"{str(file)!r} is not valid XML: {err}") from None
    except ValueError as err:
        raise InputError(f"{str(file)!r}: {err}") from None
    candidates = [root / folder / name for folder in IMAGE_FOLDERS] + [file.parent / name]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise InputError(f"{str(file)!r} names image {name!r}, which is not in {str(root)!r}")
    for obj in objects:
        x0, y0, x1, y1 = obj.box
        if not (0 <= x0 <= x1 < width and 0 <= y0 <= y1 < height):
            raise InputError(
                f"{str(file)!r}: box {obj.box} of {obj.name!r} is not inside the "
                f"{width}x{height} image"
            )
    return VOCImage(path, width, height, objects)


def class_indices(
    names: Sequence[str], class_names: Sequence[str], synsets: Sequence[str] | None = None
) -> dict[str, int]:
    """Map annotation names to class indices, by WordNet id (``synsets[i]`` is class i's id)
    or by class name. Unknown names are one ``InputError`` naming all of them, each with its
    closest classes."""
    lookup: dict[str, int] = {}
    for index, name in enumerate(class_names):
        for synonym in [name, *name.split(",")]:
            lookup.setdefault(synonym.strip().lower(), index)
    by_synset = {s: i for i, s in enumerate(synsets or ())}
    found: dict[str, int] = {}
    unknown: list[str] = []
    for name in dict.fromkeys(names):
        key = name.strip().lower()
        index = by_synset.get(name.strip(), lookup.get(key, lookup.get(key.replace("_", " "))))
        if index is None:
            unknown.append(name)
        else:
            found[name] = index
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name.lower(), list(lookup), n=3, cutoff=0.6)
            hints.append(f"{name!r} (closest: {', '.join(close)})" if close else repr(name))
        raise InputError(
            f"unknown class names in the annotations: {'; '.join(hints)}; use the "
            "classifier's class names or WordNet ids such as n01440764"
        )
    return found


def _text(node: ET.Element, path: str) -> str:
    found = node.find(path)
    if found is None or found.text is None or not found.text.strip():
        raise ValueError(f"missing <{path}>")
    return found.text.strip()


def _object(node: ET.Element, origin: int) -> VOCObject:
    name = _text(node, "name")
    box = tuple(
        round(float(_text(node, f"bndbox/{edge}"))) - origin
        for edge in ("xmin", "ymin", "xmax", "ymax")
    )
    difficult = (node.findtext("difficult") or "0").strip() == "1"
    return VOCObject(name, box, difficult)
