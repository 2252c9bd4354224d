"""The Broden probe format (Bau et al. 2017): read it, and write probe sets in it.

Real Broden data and synthetic probes (ShapesWorld) share this one code path, so whatever
the dissection measures on a synthetic probe it measures the same way on real data.

A Broden directory holds ``index.csv`` (one row per image: ``image,split,ih,iw,sh,sw`` and one
column per category), ``label.csv`` (``number,name,...``), ``category.csv`` (``name,...``) and
one ``c_<category>.csv`` per category (``code,number,name,frequency,coverage``). A category
cell lists ``;``-separated entries: PNG paths (pixel labels, ``R + 256 * G``; several planes
where labels overlap) or label numbers (per-image labels such as scene and texture). Every
column is found by its name, since documented column orders differ.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vlx.errors import InputError
from vlx.files import write_folder_atomic

INDEX_COLUMNS = ("image", "ih", "iw", "sh", "sw")
LABEL_COLUMNS = ("number", "name")
CATEGORY_COLUMNS = ("name",)
CONCEPT_COLUMNS = ("code", "number", "name", "frequency", "coverage")


@dataclass(frozen=True)
class Label:
    """A concept: its global ``number`` (as stored in the label PNGs), name and category."""

    number: int
    name: str
    category: str


@dataclass(frozen=True)
class ProbeImage:
    """One probe image's labels, per category: planes of pixel labels and per-image labels.

    Attributes:
        planes: category -> (sh, sw) int32 label planes (0 = unlabelled); several planes
            where a pixel carries more than one label of the category.
        whole: category -> label numbers that cover the whole image.
    """

    image: Image.Image
    planes: Mapping[str, list[np.ndarray]]
    whole: Mapping[str, list[int]]
    size: tuple[int, int]


class BrodenProbe:
    """A Broden-format probe directory, read lazily: only the index lives in memory.

    Args:
        directory: the folder holding ``index.csv``, ``label.csv``, ``category.csv``,
            ``c_*.csv`` and ``images/``.
        size: use only the first ``size`` images of the index (default: all).
        name: how results name this probe (default: the directory).
    """

    def __init__(self, directory: str | Path, size: int | None = None, name: str | None = None):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise InputError(f"probe directory {str(self.directory)!r} does not exist")
        self.categories = [row["name"] for row in _rows(self.directory / "category.csv",
                                                        CATEGORY_COLUMNS)]
        names = {int(row["number"]): row["name"] for row in _rows(self.directory / "label.csv",
                                                                  LABEL_COLUMNS)}
        self.labels = _primary_labels(self.directory, self.categories, names)
        if not self.labels:
            raise InputError(f"{self.directory} defines no labels in its c_*.csv files")
        rows = _rows(self.directory / "index.csv", INDEX_COLUMNS + tuple(self.categories))
        if size is not None:
            if size < 1:
                raise InputError(f"probe size must be at least 1, got {size}")
            rows = rows[:size]
        if not rows:
            raise InputError(f"{self.directory / 'index.csv'} lists no images")
        self._rows = rows
        self.name = name or str(self.directory)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> ProbeImage:
        row = self._rows[i]
        images = self.directory / "images"
        size = (int(row["sh"]), int(row["sw"]))
        planes: dict[str, list[np.ndarray]] = {}
        whole: dict[str, list[int]] = {}
        for category in self.categories:
            for entry in filter(None, (e.strip() for e in row[category].split(";"))):
                if entry.isdigit():
                    whole.setdefault(category, []).append(int(entry))
                else:
                    plane = decode_labels(_open(images / entry))
                    if plane.shape != size:
                        raise InputError(
                            f"label image {entry!r} is {plane.shape[1]}x{plane.shape[0]}; "
                            f"index.csv says sw={size[1]}, sh={size[0]}"
                        )
                    planes.setdefault(category, []).append(plane)
        image = _open(images / row["image"]).convert("RGB")
        return ProbeImage(image, planes, whole, size)

    def __iter__(self) -> Iterator[ProbeImage]:
        return (self[i] for i in range(len(self)))

    def image(self, i: int) -> Image.Image:
        """Just the RGB image ``i`` (for pictures), without decoding its labels."""
        return _open(self.directory / "images" / self._rows[i]["image"]).convert("RGB")


def decode_labels(image: Image.Image) -> np.ndarray:
    """(H, W) int32 label numbers from a label PNG: R + 256 * G.

    The channels are widened to int32 before the multiplication: in uint8, 256 * G wraps to 0
    and every label above 255 would silently lose its high byte.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1]


def encode_labels(labels: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 PNG pixels for label numbers below 65536 (the inverse of decode)."""
    labels = np.asarray(labels)
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= 1 << 16:
        raise ValueError("Broden label numbers must lie in [0, 65535]")
    rgb = np.zeros((*labels.shape, 3), dtype=np.uint8)
    rgb[..., 0] = labels % 256
    rgb[..., 1] = labels // 256
    return rgb


@dataclass(frozen=True)
class ProbeRecord:
    """One image to write: the RGB image and, per category, label planes (H, W) of global
    label numbers (0 = none) or, for per-image categories, a list of label numbers."""

    image: np.ndarray
    labels: Mapping[str, np.ndarray | Sequence[int]]


def write_broden(
    directory: str | Path, categories: Sequence[str], labels: Sequence[Label],
    records: Iterator[ProbeRecord],
) -> Path:
    """Write images and their labels as a Broden directory.

    Everything goes to a temporary sibling first and is renamed into place at the end, so
    a reader never sees a half-written probe. Frequency (images with the label) and coverage
    (the label's area summed over images, in images) are counted while writing.
    """
    return write_folder_atomic(
        directory, lambda work: _write_contents(work, categories, labels, records)
    )


def _write_contents(
    work: Path, categories: Sequence[str], labels: Sequence[Label],
    records: Iterator[ProbeRecord],
) -> None:
    (work / "images").mkdir()
    top = max(label.number for label in labels)
    frequency = np.zeros(top + 1, dtype=np.int64)
    coverage = np.zeros(top + 1, dtype=np.float64)
    index = []
    for i, record in enumerate(records):
        h, w = record.image.shape[:2]
        stem = f"{i:06d}"
        Image.fromarray(record.image).save(work / "images" / f"{stem}.png")
        row: dict[str, object] = {"image": f"{stem}.png", "split": "val", "ih": h, "iw": w}
        sizes = set()
        for category in categories:
            value = record.labels.get(category)
            row[category] = ""
            if value is None:
                continue
            if isinstance(value, np.ndarray) and value.ndim == 2:
                present = np.unique(value[value > 0])
                if present.size == 0:
                    continue  # no label of this category on the image: leave it unlabelled
                file = f"{stem}_{category}.png"
                Image.fromarray(encode_labels(value)).save(work / "images" / file)
                row[category] = file
                sizes.add(value.shape)
                frequency[present] += 1
                coverage[present] += [np.count_nonzero(value == p) / value.size for p in present]
            else:
                numbers = sorted({int(n) for n in value})
                row[category] = ";".join(str(n) for n in numbers)
                frequency[numbers] += 1
                coverage[numbers] += 1.0
        if len(sizes) > 1:
            raise ValueError(f"image {i}: label planes of different sizes {sorted(sizes)}")
        sh, sw = sizes.pop() if sizes else (h, w)
        row.update(sh=sh, sw=sw)
        index.append(row)
    _write_csv(work / "index.csv", ["image", "split", "ih", "iw", "sh", "sw", *categories], index)
    _write_csv(
        work / "label.csv", ["number", "name", "category", "frequency", "coverage", "syns"],
        [
            {"number": lb.number, "name": lb.name,
             "category": f"{lb.category}({frequency[lb.number]})",
             "frequency": frequency[lb.number], "coverage": f"{coverage[lb.number]:.4f}",
             "syns": ""}
            for lb in labels
        ],
    )
    rows = []
    for category in categories:
        members = [lb for lb in labels if lb.category == category]
        numbers = [lb.number for lb in members] or [0]
        images_with = sum(1 for row in index if row[category])
        rows.append({"name": category, "first": min(numbers), "last": max(numbers),
                     "count": len(members), "frequency": images_with})
        _write_csv(
            work / f"c_{category}.csv", list(CONCEPT_COLUMNS),
            [
                {"code": code, "number": lb.number, "name": lb.name,
                 "frequency": frequency[lb.number], "coverage": f"{coverage[lb.number]:.4f}"}
                for code, lb in enumerate(members, start=1)
            ],
        )
    _write_csv(work / "category.csv", ["name", "first", "last", "count", "frequency"], rows)


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, columns)
        writer.writeheader()
        writer.writerows(rows)


def _rows(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts by column name; a missing file or column is an error
    naming both, since a malformed probe would otherwise fail far from its cause."""
    if not path.is_file():
        raise InputError(f"probe file {str(path)!r} does not exist")
    with path.open(newline="") as stream:
        reader = csv.DictReader(stream)
        columns = reader.fieldnames or []
        missing = [c for c in required if c not in columns]
        if missing:
            raise InputError(
                f"{path} has no column {missing[0]!r}; its columns: {', '.join(columns) or 'none'}"
            )
        rows = list(reader)
    for line, row in enumerate(rows, start=2):
        if None in row or any(row[c] is None for c in columns):
            count = sum(value is not None for key, value in row.items() if key is not None)
            raise InputError(
                f"{path} line {line} has {count} of {len(columns)} fields: the file is "
                "truncated or damaged"
            )
    return rows


def _primary_labels(
    directory: Path, categories: Sequence[str], names: Mapping[int, str]
) -> list[Label]:
    """Every label with one category: where a label belongs to several (Broden's ``wood`` is
    a material and a texture), the one where it covers most, as NetDissect assigns it."""
    best: dict[int, tuple[float, str]] = {}
    for category in categories:
        for row in _rows(directory / f"c_{category}.csv", CONCEPT_COLUMNS):
            number = int(row["number"])
            if number == 0:
                continue
            if number not in names:
                raise InputError(
                    f"{directory / f'c_{category}.csv'} names label {number}, "
                    "which label.csv does not list"
                )
            coverage = float(row["coverage"] or 0.0)
            if number not in best or coverage > best[number][0]:
                best[number] = (coverage, category)
    return [Label(n, names[n], best[n][1]) for n in sorted(best)]


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise InputError(f"probe image {str(path)!r} does not exist") from None
    except OSError as err:
        raise InputError(f"probe image {str(path)!r} cannot be read: {err}") from None
    return image
