"""The COCO captions reader on a tiny fixture in COCO's layout, and captioner training on it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlx.cli import main
from vlx.data.coco import CocoCaptions
from vlx.errors import InputError
from vlx.models.captioner_training import CaptionerRecipe, CaptionerTraining
from vlx.models.show_and_tell import ShowAndTell
from vlx.text import tokenize
from vlx.training import train

# id -> (file name, (width, height), Pillow mode); listed out of id order on purpose.
IMAGES = {7: ("b.png", (40, 30), "RGB"), 2: ("a.png", (24, 16), "L"), 5: ("c.png", (32, 48), "RGB")}
# (annotation id, image id, caption) in file order: image 7 has two captions, split apart.
CAPTIONS = [
    (10, 7, "A red circle on grey.  "),
    (11, 2, "A gray square."),
    (12, 5, "Three blue stars"),
    (13, 7, "Two red circles, touching."),
]


def coco_json() -> dict:
    return {
        "info": {"description": "tiny"},
        "images": [
            {"id": i, "file_name": name, "width": size[0], "height": size[1]}
            for i, (name, size, _) in IMAGES.items()
        ],
        "annotations": [{"image_id": i, "id": a, "caption": c} for a, i, c in CAPTIONS],
    }


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """``annotations/captions_tiny.json`` with its images in ``tiny/``, as COCO lays it out."""
    (tmp_path / "annotations").mkdir()
    (tmp_path / "tiny").mkdir()
    rng = np.random.default_rng(0)
    for name, (width, height), mode in IMAGES.values():
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(tmp_path / "tiny" / name)
    path = tmp_path / "annotations" / "captions_tiny.json"
    path.write_text(json.dumps(coco_json()))
    return path


def test_reads_captions_and_images(tiny: Path) -> None:
    coco = CocoCaptions(tiny)
    assert coco.folder == tiny.parent.parent / "tiny"
    assert len(coco) == 3
    assert coco.image_ids() == [2, 5, 7]
    assert coco.captions(7) == ["A red circle on grey.", "Two red circles, touching."]
    assert coco.captions(2) == ["A gray square."]
    assert coco.pairs() == [
        (2, "A gray square."),
        (5, "Three blue stars"),
        (7, "A red circle on grey."),
        (7, "Two red circles, touching."),
    ]
    assert coco.pairs() is coco.pairs()
    assert coco.reference_captions() == {i: coco.captions(i) for i in (2, 5, 7)}
    for image_id, (name, size, _) in IMAGES.items():
        assert coco.image_path(image_id) == tiny.parent.parent / "tiny" / name
        image = coco.image(image_id)
        assert (image.mode, image.size) == ("RGB", size)
    gray = np.asarray(coco.image(2))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


def test_image_folder_argument_and_json_folder_fallback(tiny: Path, tmp_path: Path) -> None:
    explicit = CocoCaptions(str(tiny), str(tmp_path / "tiny"))
    assert explicit.folder == tmp_path / "tiny"
    assert explicit.pairs() == CocoCaptions(tiny).pairs()
    # No <split>/ folder beside annotations/: the images are looked for next to the JSON.
    flat = tmp_path / "flat"
    (tmp_path / "tiny").rename(flat)
    moved = flat / "captions.json"
    tiny.rename(moved)
    assert CocoCaptions(moved).image_path(5) == flat / "c.png"


def test_unknown_image_id(tiny: Path) -> None:
    coco = CocoCaptions(tiny)
    with pytest.raises(InputError, match=r"image id 3 .*known ids: 2, 5, 7"):
        coco.captions(3)
    with pytest.raises(InputError, match="image id 3"):
        coco.image_path(3)


def test_missing_or_broken_json(tmp_path: Path) -> None:
    missing = tmp_path / "captions_none.json"
    with pytest.raises(InputError, match="captions_none.json.* does not exist"):
        CocoCaptions(missing)
    broken = tmp_path / "captions_broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(InputError, match="captions_broken.json.* is not valid JSON"):
        CocoCaptions(broken)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("annotations"), "has no 'annotations' key"),
        (lambda d: d.pop("images"), "has no 'images' key"),
        (lambda d: d["images"][1].pop("file_name"), r"images\[1\] has no 'file_name' key"),
        (lambda d: d["annotations"][2].pop("caption"), r"annotations\[2\] has no 'caption' key"),
        (
            lambda d: d["annotations"][3].update(image_id=99),
            r"annotations\[3\] captions image id 99",
        ),
    ],
    ids=["no-annotations", "no-images", "no-file-name", "no-caption", "unknown-image-id"],
)
def test_malformed_json(tiny: Path, change, message: str) -> None:
    data = coco_json()
    change(data)
    tiny.write_text(json.dumps(data))
    with pytest.raises(InputError, match=message) as raised:
        CocoCaptions(tiny)
    assert "captions_tiny.json" in str(raised.value)


def test_missing_image_file_or_folder(tiny: Path, tmp_path: Path) -> None:
    (tmp_path / "tiny" / "c.png").unlink()
    with pytest.raises(InputError, match=r"1 of 3 captioned images are missing .*first: 'c.png'"):
        CocoCaptions(tiny)
    with pytest.raises(InputError, match="image folder .*nowhere.* does not exist"):
        CocoCaptions(tiny, tmp_path / "nowhere")


def test_train_captioner_on_coco(tiny: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cap.pt"
    options = CaptionerTraining(
        out=out, data=f"coco:{tiny}", steps=3, batch=4, checkpoint_every=2, eval_images=1
    )
    metrics = train(CaptionerRecipe, options).metrics
    assert math.isfinite(metrics["loss"])
    metadata = json.loads((tmp_path / "cap.json").read_text())
    assert metadata["data"].startswith("coco:") and metadata["steps"] == 3
    assert metadata["data_size"] == 3
    _, vocabulary = ShowAndTell.from_checkpoint(torch.load(out, weights_only=True))
    assert set(vocabulary.state()) == {w for _, _, c in CAPTIONS for w in tokenize(c)}

    argv = ["train", "captioner", "--data", f"coco:{tiny}", "--steps", "2", "--batch", "2"]
    assert main([*argv, "--out", str(tmp_path / "c2.pt")]) == 0
    assert json.loads(capsys.readouterr().out)["out"] == str(tmp_path / "c2.pt")
    assert (tmp_path / "c2.pt").is_file()
