"""COCO instances: an ``instances_<split>.json`` file's instance masks, by image and category.

What the Grad-CAM paper's caption pointing game (Sec. 8.1.1) scores against: a caption word that
names a COCO category, or a synonym of one, hits when its map's peak lies on any instance of
that category. Every entry is checked when the file is opened (keys, ids, segmentation forms,
RLE sizes and run lengths), so a broken file fails then; masks are drawn only when an image's
truth is asked for, since all of COCO's masks at once would not fit in memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from vlx.data.json_records import entries, field, integer_id, read_json_object, unknown_image_id
from vlx.data.truth import NamedInstances
from vlx.errors import InputError
from vlx.task import Box

COCO_INSTANCES = "COCO instances"


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(height, width) bool: the pixels of a COCO segmentation, polygons or RLE.

    Polygons are a list of flat ``[x1, y1, x2, y2, ...]`` lists in pixel coordinates; RLE is
    ``{"size": [h, w], "counts": ...}`` with run lengths (zeros first, column-major) as a list
    or in COCO's compressed string form.
    """
    if isinstance(segmentation, list):
        return _polygon_mask(segmentation, height, width)
    if isinstance(segmentation, dict):
        return _runs_mask(_rle_runs(segmentation, height, width), height, width)
    raise _unknown_form(segmentation)


def _unknown_form(segmentation: Any) -> InputError:
    text = repr(segmentation)
    text = text if len(text) <= 60 else text[:57] + "..."
    return InputError(
        f"segmentation {text} is neither polygons (a list of coordinate lists) nor RLE "
        "(a dict with 'size' and 'counts')"
    )


def _polygon_mask(polygons: list[Any], height: int, width: int) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for n, polygon in enumerate(polygons):
        points = _polygon_points(polygon, n)
        if len(points) == 1:
            draw.point(points, fill=1)  # a degenerate polygon: its one pixel
        else:
            draw.polygon(points, fill=1, outline=1)
    return np.asarray(canvas, dtype=bool)


def _polygon_points(polygon: Any, n: int) -> list[tuple[float, float]]:
    if not isinstance(polygon, list):
        raise InputError(f"polygon {n} must be a list of coordinates, got {polygon!r}")
    if not polygon or len(polygon) % 2:
        raise InputError(
            f"polygon {n} must have an even, non-zero number of coordinates, got {len(polygon)}"
        )
    for value in polygon:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InputError(f"polygon {n} coordinate {value!r} is not a number")
    return [(float(polygon[i]), float(polygon[i + 1])) for i in range(0, len(polygon), 2)]


def _rle_runs(rle: dict[str, Any], height: int, width: int) -> list[int]:
    """The run lengths of an RLE, checked against the image's size."""
    if "size" not in rle or "counts" not in rle:
        raise _unknown_form(rle)
    size = rle["size"]
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in size)):
        raise InputError(f"RLE size must be [height, width], got {size!r}")
    if size != [height, width]:
        raise InputError(f"RLE size {size!r} disagrees with its image's [height, width] "
                         f"[{height}, {width}]")
    counts = rle["counts"]
    if isinstance(counts, str):
        runs = decode_counts(counts)
    elif isinstance(counts, list):
        for value in counts:
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(f"RLE run length {value!r} is not an integer")
        runs = counts
    else:
        raise InputError(
            f"RLE counts must be a list of run lengths or a compressed string, got {counts!r}"
        )
    negative = [r for r in runs if r < 0]
    if negative:
        raise InputError(f"RLE run length {negative[0]} is negative")
    if sum(runs) != height * width:
        raise InputError(f"RLE run lengths sum to {sum(runs)}, not height * width = "
                         f"{height} * {width} = {height * width}")
    return runs


def decode_counts(counts: str) -> list[int]:
    """The run lengths in COCO's compressed RLE string.

    Each character carries 5 bits (``ord(c) - 48``), least significant first; bit 0x20 says
    another character follows, and bit 0x10 of a value's last character is its sign. From the
    fourth value on, each is stored as its difference from the value two places before it.
    """
    runs: list[int] = []
    value, shift = 0, 0
    for p, char in enumerate(counts):
        code = ord(char) - 48
        if not 0 <= code < 64:
            raise InputError(f"RLE counts {_short(counts)!r}: character {char!r} at {p} is not "
                             "in COCO's compressed alphabet ('0' to 'o')")
        value |= (code & 0x1F) << shift
        shift += 5
        if code & 0x20:
            continue
        if code & 0x10:
            value -= 1 << shift  # sign-extend from the bits read so far
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
        value, shift = 0, 0
    if shift:
        raise InputError(f"RLE counts {_short(counts)!r} end in the middle of a value")
    return runs


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _runs_mask(runs: list[int], height: int, width: int) -> np.ndarray:
    """Alternating runs (zeros first) in column-major order -> (height, width) bool."""
    values = np.arange(len(runs)) % 2 == 1
    flat = np.repeat(values, runs)
    return flat.reshape((height, width), order="F")


@dataclass(frozen=True)
class _Image:
    file_name: str
    height: int
    width: int


@dataclass(frozen=True)
class _Instance:
    category: str
    segmentation: Any
    box: Box
    crowd: bool


class CocoInstances:
    """Instance masks and boxes of every image in a COCO instances file, by category name.

    ``image_ids`` lists every image the file has, annotated or not; ``categories`` the
    category names in id order.
    """

    def __init__(self, annotations: str | Path) -> None:
        self.annotations = Path(annotations)
        data = read_json_object(self.annotations, COCO_INSTANCES)
        self._images = _images(data, self.annotations)
        self._categories = _categories(data, self.annotations)
        self._instances = _instances(data, self.annotations, self._images, self._categories)

    def __len__(self) -> int:
        return len(self._images)

    def __repr__(self) -> str:
        return f"CocoInstances({str(self.annotations)!r}, images={len(self)})"

    def categories(self) -> list[str]:
        """Category names, by category id."""
        return list(self._categories.values())

    def image_ids(self) -> list[int]:
        """Ids of every listed image, ascending."""
        return sorted(self._images)

    def file_name(self, image_id: int) -> str:
        return self._image(image_id).file_name

    def size(self, image_id: int) -> tuple[int, int]:
        """(height, width) of the image, the size of its masks."""
        image = self._image(image_id)
        return image.height, image.width

    def truth(self, image_id: int, synonyms: Mapping[str, str] | None = None,
              crowd: bool = True) -> NamedInstances:
        """The image's instances as ground truth for caption words.

        Masks are the union of each present category's instances, boxes theirs, inclusive.
        Words map to this file's categories: ``synonyms`` (default ``COCO_WORDS``) and each
        one-word category name itself. ``crowd=False`` leaves out crowd regions.
        """
        image = self._image(image_id)
        masks: dict[str, torch.Tensor] = {}
        boxes: dict[str, list[Box]] = {}
        for instance in self._instances.get(image_id, []):
            if instance.crowd and not crowd:
                continue
            mask = decode_segmentation(instance.segmentation, image.height, image.width)
            if instance.category in masks:
                masks[instance.category] |= torch.from_numpy(mask)
            else:
                masks[instance.category] = torch.from_numpy(mask)
            boxes.setdefault(instance.category, []).append(instance.box)
        order = {name: n for n, name in enumerate(self.categories())}
        masks = dict(sorted(masks.items(), key=lambda item: order[item[0]]))
        return NamedInstances(masks, boxes, self.words(synonyms))

    def words(self, synonyms: Mapping[str, str] | None = None) -> dict[str, str]:
        """Caption word -> category name, for this file's categories."""
        synonyms = COCO_WORDS if synonyms is None else synonyms
        names = set(self._categories.values())
        words: dict[str, str] = {}
        for word, category in synonyms.items():
            key = word.strip().lower()
            if not key or len(key.split()) != 1:
                raise InputError(f"synonym {word!r} (for {category!r}) must be a single word")
            if category in names:
                words[key] = category
        for name in names:
            if len(name.split()) == 1:
                words[name.lower()] = name  # a category's own name wins over any synonym
        return words

    def _image(self, image_id: int) -> _Image:
        if image_id not in self._images:
            raise unknown_image_id(image_id, self._images, repr(str(self.annotations)))
        return self._images[image_id]


def _positive(entry: Any, key: str, where: str, path: Path) -> int:
    value = integer_id(entry, key, where, path)
    if value <= 0:
        raise InputError(f"{str(path)!r}: {where} {key!r} must be positive, got {value}")
    return value


def _images(data: dict[str, Any], path: Path) -> dict[int, _Image]:
    images: dict[int, _Image] = {}
    for n, entry in enumerate(entries(data, "images", path, COCO_INSTANCES)):
        where = f"images[{n}]"
        image_id = integer_id(entry, "id", where, path)
        if image_id in images:
            raise InputError(f"{str(path)!r}: image id {image_id} is listed twice ({where})")
        images[image_id] = _Image(
            str(field(entry, "file_name", where, path)),
            _positive(entry, "height", where, path),
            _positive(entry, "width", where, path),
        )
    return images


def _categories(data: dict[str, Any], path: Path) -> dict[int, str]:
    """Category id (ascending) -> name."""
    categories: dict[int, str] = {}
    for n, entry in enumerate(entries(data, "categories", path, COCO_INSTANCES)):
        where = f"categories[{n}]"
        category_id = integer_id(entry, "id", where, path)
        name = field(entry, "name", where, path)
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{str(path)!r}: {where} 'name' must be text, got {name!r}")
        if category_id in categories:
            raise InputError(
                f"{str(path)!r}: category id {category_id} is listed twice ({where})"
            )
        if name in categories.values():
            raise InputError(f"{str(path)!r}: category name {name!r} is listed twice ({where})")
        categories[category_id] = name
    return dict(sorted(categories.items()))


def _instances(data: dict[str, Any], path: Path, images: dict[int, _Image],
               categories: dict[int, str]) -> dict[int, list[_Instance]]:
    """Image id -> its instances in file order, each checked but not yet drawn."""
    instances: dict[int, list[_Instance]] = {}
    for n, entry in enumerate(entries(data, "annotations", path, COCO_INSTANCES)):
        where = f"annotations[{n}]"
        image_id = integer_id(entry, "image_id", where, path)
        category_id = integer_id(entry, "category_id", where, path)
        segmentation = field(entry, "segmentation", where, path)
        bbox = field(entry, "bbox", where, path)
        crowd = field(entry, "iscrowd", where, path)
        if image_id not in images:
            raise InputError(f"{str(path)!r}: {where} annotates image id {image_id}, which has "
                             "no entry in 'images'")
        if category_id not in categories:
            raise InputError(f"{str(path)!r}: {where} names category id {category_id}, which "
                             "has no entry in 'categories'")
        if not isinstance(crowd, int) or isinstance(crowd, bool) or crowd not in (0, 1):
            raise InputError(f"{str(path)!r}: {where} 'iscrowd' must be 0 or 1, got {crowd!r}")
        image = images[image_id]
        try:
            _check_segmentation(segmentation, image.height, image.width)
        except InputError as err:
            raise InputError(f"{str(path)!r}: {where} 'segmentation': {err}") from None
        box = _box(bbox, image, where, path)
        instances.setdefault(image_id, []).append(
            _Instance(categories[category_id], segmentation, box, bool(crowd))
        )
    return instances


def _check_segmentation(segmentation: Any, height: int, width: int) -> None:
    """Everything ``decode_segmentation`` would reject, without drawing the mask."""
    if isinstance(segmentation, list):
        for n, polygon in enumerate(segmentation):
            _polygon_points(polygon, n)
    elif isinstance(segmentation, dict):
        _rle_runs(segmentation, height, width)
    else:
        raise _unknown_form(segmentation)


def _box(bbox: Any, image: _Image, where: str, path: Path) -> Box:
    """COCO's [x, y, width, height] -> inclusive pixels (x0, y0, x1, y1) inside the image."""
    if (not isinstance(bbox, list) or len(bbox) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
            or not all(math.isfinite(v) for v in bbox) or bbox[2] < 0 or bbox[3] < 0):
        raise InputError(f"{str(path)!r}: {where} 'bbox' must be [x, y, width, height] with "
                         f"width and height >= 0, got {bbox!r}")
    x, y, w, h = bbox
    x0 = min(max(math.floor(x), 0), image.width - 1)
    y0 = min(max(math.floor(y), 0), image.height - 1)
    x1 = min(max(math.ceil(x + w) - 1, x0), image.width - 1)
    y1 = min(max(math.ceil(y + h) - 1, y0), image.height - 1)
    return x0, y0, x1, y1


def _table(words_by_category: dict[str, str]) -> dict[str, str]:
    """Word -> category from category -> space-separated words, refusing a word twice."""
    table: dict[str, str] = {}
    for category, words in words_by_category.items():
        for word in words.split():
            if word in table:
                raise AssertionError(f"{word!r} names both {table[word]!r} and {category!r}")
            table[word] = category
    return table


COCO_WORDS: dict[str, str] = _table({
    "person": "person persons people man men woman women boy girl child children kid baby "
              "babies toddler lady ladies guy gentleman gentlemen adult teenager teen player "
              "skier surfer skateboarder snowboarder rider catcher umpire chef policeman "
              "policemen",
    "bicycle": "bicycle bike",
    "car": "car vehicle taxi cab suv sedan",
    "motorcycle": "motorcycle motorbike moped",
    "airplane": "airplane plane jet aircraft airliner aeroplane",
    "bus": "bus",
    "train": "train locomotive",
    "truck": "truck lorry lorries",
    "boat": "boat ship sailboat canoe kayak yacht ferry ferries",
    "traffic light": "stoplight",
    "fire hydrant": "hydrant",
    "stop sign": "stopsign",
    "parking meter": "meter",
    "bench": "bench",
    "bird": "bird pigeon seagull gull duck goose geese parrot swan owl eagle sparrow pelican",
    "cat": "cat kitten kitty kitties",
    "dog": "dog puppy puppies pup",
    "horse": "horse pony ponies foal",
    "sheep": "sheep lamb",
    "cow": "cow cattle bull calf calves ox oxen",
    "elephant": "elephant",
    "bear": "bear",
    "zebra": "zebra",
    "giraffe": "giraffe",
    "backpack": "backpack rucksack",
    "umbrella": "umbrella parasol",
    "handbag": "handbag purse",
    "tie": "tie necktie",
    "suitcase": "suitcase luggage baggage",
    "frisbee": "frisbee",
    "skis": "skis",
    "snowboard": "snowboard",
    "sports ball": "ball",
    "kite": "kite",
    "baseball bat": "bat",
    "baseball glove": "glove mitt",
    "skateboard": "skateboard",
    "surfboard": "surfboard",
    "tennis racket": "racket racquet",
    "bottle": "bottle",
    "wine glass": "wineglass goblet",
    "cup": "cup mug",
    "fork": "fork",
    "knife": "knife knives",
    "spoon": "spoon",
    "bowl": "bowl",
    "banana": "banana",
    "apple": "apple",
    "sandwich": "sandwich burger hamburger",
    "orange": "orange",
    "broccoli": "broccoli",
    "carrot": "carrot",
    "hot dog": "hotdog",
    "pizza": "pizza",
    "donut": "donut doughnut",
    "cake": "cake cupcake",
    "chair": "chair",
    "couch": "couch sofa",
    "potted plant": "plant houseplant",
    "bed": "bed",
    "dining table": "table",
    "toilet": "toilet",
    "tv": "tv television",
    "laptop": "laptop",
    "mouse": "mouse mice",
    "remote": "remote controller",
    "keyboard": "keyboard",
    "cell phone": "phone cellphone smartphone",
    "microwave": "microwave",
    "oven": "oven stove",
    "toaster": "toaster",
    "sink": "sink",
    "refrigerator": "refrigerator fridge",
    "book": "book",
    "clock": "clock",
    "vase": "vase",
    "scissors": "scissors",
    "teddy bear": "teddy teddies",
    "hair drier": "hairdryer blowdryer",
    "toothbrush": "toothbrush",
})
"""Single lower-case words a caption uses for each of COCO's 80 categories (singular, plus
irregular plurals, since ``NamedInstances`` only strips a trailing s or es). Words that often
mean something else are left out ("sign", "light", "glass", "bag", "ski", which "skies" would
reach), so a word names at most one category."""
