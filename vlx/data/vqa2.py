"""VQA v2: a questions JSON, its annotations JSON and the COCO image folder they refer to.

Real photos with questions and human answers, for training a VQA model. Both files are read
once and every image a question needs is found up front, so a half-downloaded dataset fails
when it is opened, not hours into training.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from PIL import Image

from vlx.data.json_records import entries, field, integer_id, read_json_object, unknown_image_id
from vlx.errors import InputError
from vlx.images import load_image

FORMAT = "VQA v2"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# COCO_train2014_000000123456.jpg, 000000123456.jpg and 123456.png all name image 123456.
_TRAILING_ID = re.compile(r"(\d+)$")


class VQA2:
    """Questions with their most common human answer (``multiple_choice_answer``) and images.

    Args:
        questions: ``v2_OpenEnded_mscoco_<split>_questions.json`` (``questions``: image_id,
            question, question_id).
        annotations: ``v2_mscoco_<split>_annotations.json`` (``annotations``: question_id,
            image_id, multiple_choice_answer, ...).
        images: the folder of the split's images, named COCO-style or by their id.
    """

    def __init__(self, questions: str | Path, annotations: str | Path, images: str | Path) -> None:
        self.questions_path = Path(questions)
        self.annotations_path = Path(annotations)
        self.folder = Path(images)
        asked = _questions(self.questions_path)
        answers = _answers(self.annotations_path, asked)
        unanswered = [q for q in asked if q not in answers]
        if unanswered:
            raise InputError(
                f"{len(unanswered)} questions of {str(self.questions_path)!r} have no annotation "
                f"in {str(self.annotations_path)!r}, first: question id {unanswered[0]}"
            )
        self._items = [
            (question_id, image_id, text, answers[question_id])
            for question_id, (image_id, text) in sorted(asked.items())
        ]
        self.files = _image_files(self.folder, {image_id for _, image_id, _, _ in self._items})

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return (
            f"VQA2({str(self.questions_path)!r}, {str(self.annotations_path)!r}, "
            f"{str(self.folder)!r}, questions={len(self)})"
        )

    def items(self) -> list[tuple[int, int, str, str]]:
        """Every (question id, image id, question, answer), by question id: the same list on
        every call, so seeded sampling by index is reproducible. Do not modify it."""
        return self._items

    def answer_counts(self) -> dict[str, int]:
        """Answer -> number of questions with it, most frequent first (ties alphabetical): the
        answer vocabulary is a prefix of this."""
        counts = Counter(answer for *_, answer in self._items)
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def image_path(self, image_id: int) -> Path:
        if image_id not in self.files:
            raise unknown_image_id(
                image_id, self.files, f"the questions of {str(self.questions_path)!r}"
            )
        return self.files[image_id]

    def image(self, image_id: int) -> Image.Image:
        """The photo as 8-bit RGB, whatever its mode on disk (COCO has grayscale images)."""
        return load_image(self.image_path(image_id))


def _questions(path: Path) -> dict[int, tuple[int, str]]:
    """Question id -> (image id, question text)."""
    asked: dict[int, tuple[int, str]] = {}
    for n, entry in enumerate(entries(read_json_object(path, FORMAT), "questions", path, FORMAT)):
        where = f"questions[{n}]"
        question_id = integer_id(entry, "question_id", where, path)
        image_id = integer_id(entry, "image_id", where, path)
        text = field(entry, "question", where, path)
        if not isinstance(text, str):
            raise InputError(f"{str(path)!r}: {where} question must be text, got {text!r}")
        if question_id in asked:
            raise InputError(f"{str(path)!r}: question id {question_id} is listed twice ({where})")
        asked[question_id] = (image_id, text)
    if not asked:
        raise InputError(f"{str(path)!r} lists no questions")
    return asked


def _answers(path: Path, asked: dict[int, tuple[int, str]]) -> dict[int, str]:
    """Question id -> its ``multiple_choice_answer``; every annotation must match a question."""
    answers: dict[int, str] = {}
    for n, entry in enumerate(entries(read_json_object(path, FORMAT), "annotations", path, FORMAT)):
        where = f"annotations[{n}]"
        question_id = integer_id(entry, "question_id", where, path)
        image_id = integer_id(entry, "image_id", where, path)
        answer = field(entry, "multiple_choice_answer", where, path)
        if question_id not in asked:
            raise InputError(
                f"{str(path)!r}: {where} answers question id {question_id}, which is not in the "
                "questions file"
            )
        if image_id != asked[question_id][0]:
            raise InputError(
                f"{str(path)!r}: {where} puts question id {question_id} on image id {image_id}, "
                f"the questions file on image id {asked[question_id][0]}"
            )
        if not isinstance(answer, str):
            raise InputError(
                f"{str(path)!r}: {where} multiple_choice_answer must be text, got {answer!r}"
            )
        answers[question_id] = answer.strip()
    return answers


def _image_files(folder: Path, wanted: set[int]) -> dict[int, Path]:
    """Image id -> file, for the ids asked about; existence only (decoding costs minutes)."""
    if not folder.is_dir():
        raise InputError(f"image folder {str(folder)!r} does not exist or is not a folder")
    files: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        match = _TRAILING_ID.search(path.stem)
        if match and path.suffix.lower() in IMAGE_SUFFIXES and int(match[1]) in wanted:
            files.setdefault(int(match[1]), path)
    missing = sorted(wanted - files.keys())
    if missing:
        raise InputError(
            f"{len(missing)} of {len(wanted)} images asked about are missing from "
            f"{str(folder)!r}, first: image id {missing[0]} (looked for COCO_<split>_"
            f"{missing[0]:012d}.jpg or {missing[0]}.jpg/.png)"
        )
    return files
