"""The task contract: a new adapter is one class, and everything above it works unchanged.

A toy adapter written here explains and is evaluated through the code the CLI uses; COCO-format
data is scored for the shipped captioner and for a Hugging Face one; a Hugging Face VQA model is
scored on ShapesWorld questions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import hf_tiny
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from vlx.cli import main
from vlx.commands.runner import explain_batch
from vlx.data.shapes import SHAPES, SPLITS, ShapesWorld, write_coco
from vlx.data.truth import AnnotatedBoxes
from vlx.evaluate.measures import Localization, Pointing
from vlx.evaluate.runner import measure
from vlx.evaluate.sources import EvaluationData, evaluation_data
from vlx.images import Preprocess
from vlx.task import Batch, Example, Prediction, Problem, Target, TargetSet, Task, broadcast

COLOURS = ("red", "green", "blue")


class ChannelMeans(nn.Module):
    """A 1 x 1 convolution that passes the RGB channels through, then their spatial means:
    class c's score is the mean of channel c, so its Grad-CAM map is channel c itself."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(3)[:, :, None, None])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images).mean(dim=(2, 3))


class ColourTask(Task):
    """A toy adapter in a dozen lines: a class per colour channel."""

    kind = "classify"

    def __init__(self) -> None:
        self.model, self.device, self.layer, self.name = ChannelMeans().eval(), torch.device("cpu"), "features", "toy"
        self.preprocess = Preprocess(size=(16, 16), mean=(0.0,) * 3, std=(1.0,) * 3)

    def prepare(self, examples: Sequence[Example]) -> Batch:
        return Batch(list(examples), self.preprocess.batch([e.image for e in examples]))

    def predict(self, batch: Batch, top_k: int = 5) -> list[list[Prediction]]:
        with torch.no_grad():
            scores = self.model(batch.inputs)
        order = scores.argsort(dim=1, descending=True)[:, :top_k]
        return [[Prediction(COLOURS[int(c)], int(c), None, float(scores[n, c])) for c in row]
                for n, row in enumerate(order)]

    def targets(self, batch: Batch, requested=None) -> TargetSet:
        rows = broadcast(requested, len(batch)) or [[p[0].index] for p in self.predict(batch, 1)]
        ids = [[r if isinstance(r, int) else COLOURS.index(r) for r in row] for row in rows]
        return TargetSet([[Target(i, COLOURS[i]) for i in row] for row in ids])

    def problem(self, batch: Batch, targets: TargetSet, layer: str | None = None) -> Problem:
        ids = torch.tensor(targets.padded())
        return Problem(self.model, (batch.inputs,), score=targets.padded(),
                       probability=lambda out: out.softmax(-1).gather(1, ids.expand(out.shape[0], -1)))


def square(colour: int, corner: tuple[int, int]) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A black 16 x 16 image with a 4 x 4 square of one pure colour, and its box."""
    pixels = np.zeros((16, 16, 3), dtype=np.uint8)
    y, x = corner
    pixels[y : y + 4, x : x + 4, colour] = 255
    return Image.fromarray(pixels), (x, y, x + 3, y + 3)


def test_a_toy_adapter_is_explained_and_evaluated_through_the_shared_code(tmp_path) -> None:
    images = [square(0, (2, 2)), square(2, (10, 9)), square(1, (11, 1))]
    examples = [Example(image, None, f"toy{i}", AnnotatedBoxes({c: [box]}, COLOURS, (16, 16)))
                for i, ((image, box), c) in enumerate(zip(images, (0, 2, 1)))]
    task = ColourTask()

    class Args:
        layer, text, method, max_side, batch_size = None, False, ["gradcam", "guided-backprop"], 1024, 32

    done = explain_batch(task, examples, Args, lambda predictions: None)
    assert [row[0].name for row in done.targets.rows] == ["red", "blue", "green"]
    # Grad-CAM of a channel mean at the identity conv: alpha = 1/256, map = the channel / 256
    red = done.explanations["gradcam"].maps[0, 0]
    torch.testing.assert_close(red * 256, task.prepare(examples[:1]).inputs[0, 0])
    assert done.peak(done.explanations["gradcam"], 1, 0) == [9, 10]  # the blue square's corner (x, y)
    data = EvaluationData("toy squares", [0, 1, 2], lambda i: [examples[i]])
    pointing = measure(task, data, Pointing())["categories"]
    assert {c: row["accuracy"] for c, row in pointing.items()} == {"red": 1, "green": 1, "blue": 1}
    assert all(row["centre"] == 0 and row["random"] == 16 / 256 for row in pointing.values())
    assert all(row["answered"] == 1 for row in pointing.values())
    localization = measure(task, data, Localization())["categories"]
    assert all(row["accuracy"] == 1 and row["mean_iou"] == 1 for row in localization.values())


@pytest.fixture(scope="module")
def shapes_coco(tmp_path_factory) -> Path:
    return write_coco(ShapesWorld(seed=0), tmp_path_factory.mktemp("coco"), SPLITS["test"][0], 6)


def _coco(folder: Path) -> str:
    return f"coco:{folder / 'captions.json'},{folder / 'instances.json'},{folder / 'images'}"


def test_shipped_captioner_on_shapesworld_written_as_coco(shapes_coco, capsys) -> None:
    """COCO's protocol scores a shape word against every instance of its category: on
    ShapesWorld written as COCO, exactly the hits of ShapesWorld's own shape words."""
    assert main(["evaluate", "pointing", "--data", _coco(shapes_coco), "--images", "6",
                 "--json"]) == 0
    coco = json.loads(capsys.readouterr().out)
    assert coco["task"] == "caption" and set(coco["categories"]) <= set(SHAPES)
    from vlx.tasks.loading import load_task

    captioner = load_task("caption")
    shapes = measure(captioner, evaluation_data(captioner, "shapes", 6, "pointing"), Pointing())
    own = shapes["categories"]["shape"]
    total = sum(row["count"] for row in coco["categories"].values())
    hits = sum(row["accuracy"] * row["count"] for row in coco["categories"].values())
    assert total == own["count"] and round(hits) == round(own["accuracy"] * own["count"])


def _tiny_coco(root: Path) -> Path:
    """Two images with captions in the tiny tokenizer's words and polygon instances."""
    (root / "images").mkdir(parents=True)
    images, captions, instances = [], [], []
    for image_id, (caption, shapes) in enumerate([
        ("a red circle left of a blue square", {"circle": (4, 4, 20, 20), "square": (40, 30, 60, 50)}),
        ("a green star on the left of a red circle", {"star": (2, 30, 22, 50), "circle": (50, 5, 70, 25)}),
    ], start=1):
        hf_tiny.noise_image(seed=image_id).save(root / "images" / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": 60, "width": 90})
        captions.append({"id": image_id, "image_id": image_id, "caption": caption})
        for name, (x0, y0, x1, y1) in shapes.items():
            instances.append({"id": len(instances) + 1, "image_id": image_id, "iscrowd": 0,
                              "category_id": ["circle", "square", "star"].index(name) + 1,
                              "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                              "bbox": [x0, y0, x1 - x0, y1 - y0]})
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(["circle", "square", "star"])]
    (root / "captions.json").write_text(json.dumps({"images": images, "annotations": captions}))
    (root / "instances.json").write_text(json.dumps(
        {"images": images, "categories": categories, "annotations": instances}))
    return root


def test_hf_captioner_caption_pointing_on_coco(tmp_path, capsys) -> None:
    directory = hf_tiny.vit_gpt2(tmp_path / "vit-gpt2")
    coco = _tiny_coco(tmp_path / "coco")
    assert main(["evaluate", "pointing", "--model", f"hf:{directory}", "--data", _coco(coco),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = summary["categories"]
    # circle twice (one per caption), square once, star once; colours name no category
    assert {c: r["count"] for c, r in rows.items()} == {"circle": 2, "square": 1, "star": 1}
    # the image centre (45, 30) lies on the square's top edge and on no other instance
    assert {c: r["centre"] for c, r in rows.items()} == {"circle": 0, "square": 1, "star": 0}
    assert rows["square"]["random"] == pytest.approx(21 * 21 / (90 * 60), abs=0.02)


@pytest.mark.parametrize("family", ["vilt", "blip"])
def test_hf_vqa_is_scored_on_shapesworld_questions(family, tmp_path, capsys) -> None:
    build = hf_tiny.vilt if family == "vilt" else hf_tiny.blip_vqa
    directory = build(tmp_path / family)
    assert main(["evaluate", "pointing", "--task", "vqa", "--model", f"hf:{directory}",
                 "--images", "4", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    world, first = ShapesWorld(seed=0), SPLITS["test"][0]
    asked = [q for s in world.scenes(first, 4) for q in s.questions()
             if q.kind in ("colour", "shape") and q.referent is not None]
    scored = sum(r["count"] for r in summary["categories"].values())
    assert scored + summary.get("unanswerable", 0) == len(asked)
    if family == "vilt":  # its answers: yes, no, red, blue, green
        assert scored == sum(q.answer in hf_tiny.LABELS for q in asked)
    assert main(["evaluate", "faithfulness", "--task", "vqa", "--model", f"hf:{directory}",
                 "--images", "2", "--json"]) == 0
    methods = json.loads(capsys.readouterr().out)["methods"]
    assert set(methods) == {"gradcam", "guided-backprop"}
    assert all(-1 <= m["rank_correlation"] <= 1 for m in methods.values() if m["count"])
