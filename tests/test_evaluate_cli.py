"""``vlx evaluate`` on a few images: every metric runs, prints its table or JSON, and bad
input is one clear line with exit status 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vlx.cli import main
from vlx.images import DEMO_IMAGES

CHELSEA, COFFEE = DEMO_IMAGES
# Boxes drawn by hand on the bundled photos (1-based, as VOC writes them).
OBJECTS = {
    "chelsea.jpg": (451, 300, "n02124075", (1, 1, 400, 300)),  # Egyptian cat: the cat's head
    "coffee.jpg": (600, 400, "espresso", (172, 18, 410, 305)),  # the cup
}


def write_photos_voc(root: Path) -> Path:
    for photo in (CHELSEA, COFFEE):
        shutil.copy(photo, root / photo.name)
        width, height, name, (x0, y0, x1, y1) = OBJECTS[photo.name]
        (root / f"{photo.stem}.xml").write_text(
            f"<annotation><filename>{photo.name}</filename><size><width>{width}</width>"
            f"<height>{height}</height></size><object><name>{name}</name><bndbox><xmin>{x0}"
            f"</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            "</annotation>"
        )
    return root


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["evaluate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def photos_voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photos_voc(tmp_path_factory.mktemp("voc"))


def test_localization_on_voc_photos(photos_voc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = run_json(capsys, "localization", "--data", f"voc:{photos_voc}")
    errors = summary["errors"]
    assert summary["task"] == "classify" and summary["model"] == "efficientnet_lite0"
    assert errors["images"] == 2
    # both photos' classes are in the top 5 (cat classes for chelsea, espresso for coffee)
    assert errors["top5_classification_error"] == 0.0
    assert 0.0 <= errors["top5_localization_error"] <= errors["top1_localization_error"] <= 1.0


def test_classify_metrics_on_shapesworld_with_the_shipped_classifier(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --data, --task classify scores the shipped ShapesWorld shape classifier on its
    held-out one-object scenes (the object's box is the truth)."""
    localization = run_json(capsys, "localization", "--task", "classify", "--images", "4")
    assert localization["model"] == "shapes" and localization["data"] == "ShapesWorld test split"
    assert localization["errors"]["images"] == 4
    assert localization["errors"]["top1_classification_error"] == 0.0  # 100% on validation
    pointing = run_json(capsys, "pointing", "--task", "classify", "--images", "4")
    classes = pointing["categories"]
    assert sum(row["count"] for row in classes.values()) == 4
    assert all(0 <= row["accuracy"] <= 1 for row in classes.values())
    deletion = run_json(capsys, "deletion", "--task", "classify", "--images", "2",
                        "--method", "gradcam,random", "--steps", "4")
    assert deletion["methods"]["gradcam"]["count"] == 2
    photos = run_json(capsys, "deletion", "--task", "classify", "--model", "efficientnet_lite0",
                      "--images", "1", "--method", "gradcam", "--steps", "2")
    assert photos["data"] == "the bundled photos" and photos["methods"]["gradcam"]["count"] == 1


def test_pointing_with_rejection_on_voc_photos(
    photos_voc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "pointing", "--data", f"voc:{photos_voc}", "--rejection",
                 "--reject-threshold", "0", "1000"]) == 0
    table = capsys.readouterr().out
    assert "| threshold | accuracy |" in table and "Appendix D" in table
    summary = run_json(capsys, "pointing", "--data", f"voc:{photos_voc}", "--rejection",
                       "--reject-threshold", "0", "1000")
    low, high = summary["rejection"]
    assert low["count"] == high["count"] == 10  # 2 images x top-5 classes
    # threshold 0 rejects nothing: the 8 absent classes are false alarms
    assert low["false_alarm"] == 8 and low["correct_rejection"] == 0
    # a huge threshold rejects everything: 8 correct rejections, the 2 true classes missed
    assert high["correct_rejection"] == 8 and high["miss"] == 2 and high["accuracy"] == 0.8


def test_localization_on_shapes_caption_and_vqa(capsys: pytest.CaptureFixture[str]) -> None:
    caption = run_json(capsys, "localization", "--task", "caption", "--images", "2")
    assert set(caption["categories"]) == {"colour", "shape", "size"}
    assert all(0 <= row["mean_iou"] <= 1 and row["count"] > 0 for row in caption["categories"].values())
    vqa = run_json(capsys, "localization", "--task", "vqa", "--images", "2")
    assert set(vqa["categories"]) <= {"colour", "shape"} and vqa["model"] == "coattention"
    assert main(["evaluate", "localization", "--task", "caption", "--images", "1"]) == 0
    assert "| | scored | localized (IoU >= 0.5) | mean IoU |" in capsys.readouterr().out


def test_deletion_on_vqa(capsys: pytest.CaptureFixture[str]) -> None:
    summary = run_json(capsys, "deletion", "--task", "vqa", "--images", "1", "--steps", "4",
                       "--method", "gradcam,random")
    assert set(summary["methods"]) == {"gradcam", "random"}
    for row in summary["methods"].values():
        assert row["count"] == 1
        assert 0 <= row["deletion"]["mean"] <= 1 and 0 <= row["insertion"]["mean"] <= 1


def test_energy_on_captions(capsys: pytest.CaptureFixture[str]) -> None:
    summary = run_json(capsys, "energy", "--task", "caption", "--images", "1", "--method", "gradcam")
    rows = summary["methods"]["gradcam"]
    assert summary["uniform_map"] == 1.0 and {"colour", "shape"} <= set(rows)
    assert rows["colour"]["count"] >= 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["localization"], "--task is required"),
        (["localization", "--task", "classify", "--model", "efficientnet_lite0"],
         "needs a ShapesWorld classifier"),
        (["localization", "--data", "coco:x"], "--data coco:x must name CAPTIONS_JSON,INSTANCES_JSON"),
        (["localization", "--data", "imagenet:x", "--task", "caption"],
         "--data 'imagenet:x' has no ground truth for localization; valid: shapes, voc:DIR"),
        (["pointing", "--task", "caption", "--data", "voc:/x"], "--data voc:DIR is for classifiers"),
        (["localization", "--data", "voc:/nowhere"], "VOC folder '/nowhere' does not exist"),
        (["localization", "--task", "caption", "--threshold", "2"], "--threshold must be in"),
        (["pointing", "--task", "vqa", "--rejection"], "--rejection scores a classifier"),
        (["deletion", "--task", "vqa", "--steps", "0"], "--steps must be at least 1"),
        (["energy", "--task", "caption", "--images", "0"], "--images must be at least 1"),
        (["localization", "--task", "caption", "--model", "lstm-cnn"], "unknown captioner 'lstm-cnn'"),
        (["pointing", "--task", "vqa", "--checkpoint", "/nonexistent.pt"],
         "--checkpoint names a captioner checkpoint"),
        (["pointing", "--task", "caption", "--checkpoint", "/nonexistent.pt"],
         "captioner checkpoint '/nonexistent.pt' does not exist"),
        (["energy", "--task", "caption", "--images", "1000000"],
         "--images 1000000: the ShapesWorld test split holds 10000 scenes"),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_unknown_annotation_class_names_the_closest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_photos_voc(tmp_path)
    text = (root / "coffee.xml").read_text().replace("espresso", "espreso")
    (root / "coffee.xml").write_text(text)
    assert main(["evaluate", "localization", "--data", f"voc:{root}"]) == 2
    assert "'espreso' (closest: espresso" in capsys.readouterr().err


def test_unknown_deletion_method_is_a_parse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "deletion", "--task", "vqa", "--method", "gradcam,noise"])
    assert exit_.value.code == 2
    assert "unknown method 'noise'" in capsys.readouterr().err


def test_pointing_table_shows_the_columns_the_summary_has() -> None:
    from vlx.evaluate.tables import pointing_table

    row = {"count": 4, "accuracy": 0.25, "described": 0.25, "centre": 0.0, "random": 0.05,
           "answered": 1.0}
    base = {"metric": "pointing", "task": "vqa", "model": "m", "data": "d", "images": 2,
            "layer": "l"}
    plain = pointing_table({**base, "categories": {"colour": row}})
    attended = pointing_table({**base, "categories": {"colour": {**row, "attention": 0.75}}})
    assert "attention" not in plain and "| colour | 4 | 25.0% | 0.0% | 5.0% | 100.0% |" in plain
    assert "| colour | 4 | 25.0% | 75.0% | 0.0% | 5.0% | 100.0% |" in attended
    assert attended.splitlines()[3].count("---") == 7
    strict = pointing_table({**base, "categories": {"colour": {**row, "described": 0.125}}})
    assert "| colour | 4 | 25.0% | 12.5% | 0.0% | 5.0% | 100.0% |" in strict


def test_metrics_of_predictions_read_any_dataset_source(tmp_path: Path, capsys) -> None:
    """A folder of photos (here: the bundled ones, one of them twice, nested) gives deletion the
    examples the bundled-photo default gives, scored the same."""
    (tmp_path / "nested").mkdir()
    for i, photo in enumerate(DEMO_IMAGES):
        shutil.copy(photo, tmp_path / f"{i}-{photo.name}")
    shutil.copy(DEMO_IMAGES[0], tmp_path / "nested" / DEMO_IMAGES[0].name)
    common = ["deletion", "--task", "classify", "--model", "efficientnet_lite0", "--method",
              "gradcam", "--steps", "4"]
    bundled = run_json(capsys, *common, "--images", str(len(DEMO_IMAGES)))
    folder = run_json(capsys, *common, "--data", str(tmp_path), "--images", str(len(DEMO_IMAGES)))
    assert folder["methods"]["gradcam"] == bundled["methods"]["gradcam"]
    assert run_json(capsys, *common, "--data", str(tmp_path))["methods"]["gradcam"]["count"] == 3
    assert main(["evaluate", "pointing", "--task", "classify", "--data", str(tmp_path)]) == 2
    assert "has no ground truth for pointing" in capsys.readouterr().err
