"""COCO captions: a ``captions_<split>.json`` file and its image folder.

Real photos with several human captions each, for training a captioner and for scoring its
captions against the references. The JSON is read once and every listed image file is checked
up front, so a half-downloaded dataset fails when it is opened, not hours into training.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from PIL import Image

from vlx.data.json_records import entries, field, integer_id, read_json_object, unknown_image_id
from vlx.errors import InputError
from vlx.images import load_image

COCO = "COCO captions"
_CAPTIONS_FILE = re.compile(r"captions_(?P<split>.+)\.json")


class CocoCaptions:
    """Captions indexed by image id, with the image files they describe.

    Only images with at least one caption count (``len``, ``image_ids``, ``pairs``); an
    image's captions keep the order of the file, with surrounding whitespace removed.
    """

    def __init__(self, annotations: str | Path, images: str | Path | None = None) -> None:
        self.annotations = Path(annotations)
        data = read_json_object(self.annotations, COCO)
        self.files = _image_files(data, self.annotations)
        self._captions = _captions_by_image(data, self.annotations, self.files)
        self.folder = _image_folder(self.annotations) if images is None else Path(images)
        if not self.folder.is_dir():
            raise InputError(f"image folder {str(self.folder)!r} does not exist or is not a folder")
        self._check_files(discovered=images is None)
        self._pairs = [
            (i, caption) for i, captions in self._captions.items() for caption in captions
        ]

    def __len__(self) -> int:
        return len(self._captions)

    def __repr__(self) -> str:
        return f"CocoCaptions({str(self.annotations)!r}, {str(self.folder)!r}, images={len(self)})"

    def pairs(self) -> list[tuple[int, str]]:
        """Every (image id, caption), by image id then file order: the same list on every call,
        so seeded sampling by index is reproducible. Do not modify it."""
        return self._pairs

    def image_ids(self) -> list[int]:
        """Ids of the captioned images, ascending."""
        return list(self._captions)

    def captions(self, image_id: int) -> list[str]:
        """The reference captions of one image (empty for a listed image nobody captioned)."""
        return list(self._captions.get(self._require(image_id), []))

    def reference_captions(self) -> dict[int, list[str]]:
        """Image id -> its captions, what caption metrics (BLEU, CIDEr) compare against."""
        return {i: list(captions) for i, captions in self._captions.items()}

    def image_path(self, image_id: int) -> Path:
        return self.folder / self.files[self._require(image_id)]

    def image(self, image_id: int) -> Image.Image:
        """The photo as 8-bit RGB, whatever its mode on disk (COCO has grayscale images)."""
        return load_image(self.image_path(image_id))

    def _require(self, image_id: int) -> int:
        if image_id not in self.files:
            raise unknown_image_id(image_id, self.files, repr(str(self.annotations)))
        return image_id

    def _check_files(self, discovered: bool) -> None:
        """Existence only: decoding 100k photos here would cost minutes."""
        missing = [
            self.files[i] for i in self._captions if not (self.folder / self.files[i]).is_file()
        ]
        if missing:
            hint = "; pass the image folder explicitly" if discovered else ""
            raise InputError(
                f"{len(missing)} of {len(self._captions)} captioned images are missing from "
                f"{str(self.folder)!r}, first: {missing[0]!r}{hint}"
            )


def _image_folder(annotations: Path) -> Path:
    """Where COCO keeps the images of ``annotations/captions_<split>.json``: ``<split>/``
    beside the ``annotations`` folder, else the JSON's own folder."""
    match = _CAPTIONS_FILE.fullmatch(annotations.name)
    if match:
        beside = annotations.parent.parent / match["split"]
        if beside.is_dir():
            return beside
    return annotations.parent


def _image_files(data: dict[str, Any], path: Path) -> dict[int, str]:
    files: dict[int, str] = {}
    for n, entry in enumerate(entries(data, "images", path, COCO)):
        where = f"images[{n}]"
        image_id = integer_id(entry, "id", where, path)
        if image_id in files:
            raise InputError(f"{str(path)!r}: image id {image_id} is listed twice ({where})")
        files[image_id] = str(field(entry, "file_name", where, path))
    return files


def _captions_by_image(
    data: dict[str, Any], path: Path, files: dict[int, str]
) -> dict[int, list[str]]:
    """Image id (ascending) -> captions in file order."""
    captions: dict[int, list[str]] = {}
    for n, entry in enumerate(entries(data, "annotations", path, COCO)):
        where = f"annotations[{n}]"
        image_id = integer_id(entry, "image_id", where, path)
        caption = field(entry, "caption", where, path)
        if image_id not in files:
            raise InputError(
                f"{str(path)!r}: {where} captions image id {image_id}, which has no entry in 'images'"
            )
        if not isinstance(caption, str):
            raise InputError(f"{str(path)!r}: {where} caption must be text, got {caption!r}")
        captions.setdefault(image_id, []).append(caption.strip())
    return dict(sorted(captions.items()))
