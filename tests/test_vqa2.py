"""The VQA v2 reader on a tiny fixture in VQA v2's format, and VQA training on it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlx.cli import main
from vlx.data.vqa2 import VQA2
from vlx.errors import InputError
from vlx.models.vqa_training import VQARecipe, VQATraining, load_vqa
from vlx.training import train

# image id -> (file name, (width, height), Pillow mode): one COCO-style name, one bare id.
IMAGES = {42: ("COCO_val2014_000000000042.jpg", (40, 30), "RGB"), 7: ("7.png", (24, 16), "L")}
# (question id, image id, question, multiple_choice_answer), listed out of id order.
QUESTIONS = [
    (4201, 42, "What color is the bus?", "red"),
    (701, 7, "Is it raining?", "no"),
    (4202, 42, "Is there a bus?", "yes "),
]


def questions_json() -> dict:
    return {
        "data_subtype": "val2014",
        "questions": [{"image_id": i, "question": q, "question_id": n} for n, i, q, _ in QUESTIONS],
    }


def annotations_json() -> dict:
    return {
        "annotations": [
            {
                "question_id": n,
                "image_id": i,
                "question_type": "what color is the" if "color" in q else "is there",
                "answer_type": "other" if "color" in q else "yes/no",
                "multiple_choice_answer": a,
                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": 1}],
            }
            for n, i, q, a in QUESTIONS
        ]
    }


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(questions JSON, annotations JSON, image folder) plus a stray file the reader ignores."""
    folder = tmp_path / "val2014"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (width, height), mode in IMAGES.values():
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    questions = tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json"
    annotations = tmp_path / "v2_mscoco_val2014_annotations.json"
    questions.write_text(json.dumps(questions_json()))
    annotations.write_text(json.dumps(annotations_json()))
    return questions, annotations, folder


def test_reads_questions_answers_and_images(tiny) -> None:
    data = VQA2(*tiny)
    assert len(data) == 3
    assert data.items() == [
        (701, 7, "Is it raining?", "no"),
        (4201, 42, "What color is the bus?", "red"),
        (4202, 42, "Is there a bus?", "yes"),
    ]
    assert data.items() is data.items()
    assert data.answer_counts() == {"no": 1, "red": 1, "yes": 1}
    for image_id, (name, size, _) in IMAGES.items():
        assert data.image_path(image_id) == tiny[2] / name
        image = data.image(image_id)
        assert (image.mode, image.size) == ("RGB", size)


def test_unknown_image_id(tiny) -> None:
    with pytest.raises(InputError, match=r"image id 3 is not in the questions of .*known ids: 7, 42"):
        VQA2(*tiny).image(3)


def test_missing_or_broken_files(tiny, tmp_path: Path) -> None:
    questions, annotations, folder = tiny
    with pytest.raises(InputError, match="image folder .*nowhere.* does not exist"):
        VQA2(questions, annotations, tmp_path / "nowhere")
    with pytest.raises(InputError, match="nothing.json.* does not exist"):
        VQA2(tmp_path / "nothing.json", annotations, folder)
    annotations.write_text('{"annotations": [')
    with pytest.raises(InputError, match="annotations.json.* is not valid JSON"):
        VQA2(questions, annotations, folder)


def test_missing_image_file(tiny) -> None:
    (tiny[2] / "7.png").unlink()
    with pytest.raises(InputError, match=r"1 of 2 images .*missing .*first: image id 7 .*7.jpg"):
        VQA2(*tiny)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda q, a: q.pop("questions"), "questions.json.* has no 'questions' key"),
        (lambda q, a: a.pop("annotations"), "annotations.json.* has no 'annotations' key"),
        (lambda q, a: q["questions"][1].pop("image_id"), r"questions\[1\] has no 'image_id' key"),
        (
            lambda q, a: a["annotations"][2].pop("multiple_choice_answer"),
            r"annotations\[2\] has no 'multiple_choice_answer' key",
        ),
        (
            lambda q, a: a["annotations"][0].update(question_id=99),
            r"annotations\[0\] answers question id 99, which is not in the questions file",
        ),
        (
            lambda q, a: a["annotations"][0].update(image_id=7),
            r"annotations\[0\] puts question id 4201 on image id 7",
        ),
        (lambda q, a: a["annotations"].pop(1), r"1 questions .*first: question id 701"),
        (
            lambda q, a: q["questions"][2].update(question_id=4201),
            r"question id 4201 is listed twice \(questions\[2\]\)",
        ),
        (
            lambda q, a: q["questions"][0].update(question_id="4201"),
            r"questions\[0\] 'question_id' must be an integer, got '4201'",
        ),
    ],
    ids=[
        "no-questions",
        "no-annotations",
        "no-image-id",
        "no-answer",
        "unknown-question",
        "other-image",
        "unanswered",
        "duplicate",
        "text-id",
    ],
)
def test_malformed_json(tiny, change, message: str) -> None:
    questions, annotations, folder = tiny
    q, a = questions_json(), annotations_json()
    change(q, a)
    questions.write_text(json.dumps(q))
    annotations.write_text(json.dumps(a))
    with pytest.raises(InputError, match=message):
        VQA2(questions, annotations, folder)


def test_train_vqa_on_vqa2(tiny, tmp_path: Path, capsys) -> None:
    spec = "vqa2:" + ",".join(map(str, tiny))
    out = tmp_path / "vqa.pt"
    options = VQATraining(out=out, model="coattention", data=spec, steps=2, batch=4)
    metrics = train(VQARecipe, options).metrics
    assert math.isfinite(metrics["loss"]) and set(metrics) == {"loss"}
    metadata = json.loads((tmp_path / "vqa.json").read_text())
    assert metadata["data"] == spec and metadata["data_size"] == 3 and metadata["steps"] == 2
    _, vocabulary, answers = load_vqa(torch.load(out, weights_only=True))
    assert answers == ["no", "red", "yes"]
    assert {"color", "bus", "raining"} <= set(vocabulary.words)

    argv = ["train", "vqa", "--model", "lstm-cnn", "--data", spec, "--steps", "2", "--batch", "2"]
    assert main([*argv, "--out", str(tmp_path / "v2.pt")]) == 0
    assert json.loads(capsys.readouterr().out)["out"] == str(tmp_path / "v2.pt")
    assert load_vqa(torch.load(tmp_path / "v2.pt", weights_only=True))[0].name == "lstm-cnn"


def test_bad_vqa2_spec(tmp_path: Path) -> None:
    options = VQATraining(out=tmp_path / "x.pt", model="lstm-cnn", data="vqa2:a.json,b.json")
    with pytest.raises(InputError, match="must name QUESTIONS_JSON,ANNOTATIONS_JSON,IMAGE_DIR"):
        train(VQARecipe, options)
