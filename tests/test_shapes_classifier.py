"""The ShapesWorld GAP classifier: labels, data, forward, checkpoint, and Grad-CAM = CAM."""

from __future__ import annotations

import pytest
import torch

from vlx.cam import GradCAM
from vlx.checkpoints import read_metadata
from vlx.data.shapes import SHAPES, SPLITS, TEXTURES
from vlx.models.classifier_training import ClassifierRecipe, ClassifierTraining
from vlx.models.shapes_classifier import (
    LAYER,
    ShapesClassification,
    ShapesClassifier,
    load_shapes_classifier,
    predict,
    scene_images,
)
from vlx.training import train

TINY = (4, 4, 8, 8)


def test_labels_are_the_object_shape_and_subsets_skip_other_shapes() -> None:
    data = ShapesClassification(classes=("circle", "square"), image_size=32)
    scenes = data.scenes("test", 10)
    assert len(scenes) == 10
    assert all(len(s.objects) == 1 for s in scenes)
    assert [data.label(s) for s in scenes] == [
        ("circle", "square").index(s.objects[0].shape) for s in scenes
    ]
    indices = [s.index for s in scenes]
    assert indices == sorted(indices) and indices[0] >= SPLITS["test"][0]
    skipped = set(range(indices[0], indices[-1] + 1)) - set(indices)
    assert all(data.world.scene(i).objects[0].shape not in ("circle", "square") for i in skipped)


def test_biased_data_puts_every_class_on_its_background() -> None:
    classes = ("circle", "square", "triangle", "cross")
    biased = ShapesClassification(classes=classes, image_size=32, backgrounds=TEXTURES)
    unbiased = ShapesClassification(classes=classes, image_size=32, textured_fraction=1.0)
    for scene in biased.scenes("train", 40):
        assert scene.background == TEXTURES[biased.label(scene)]
    seen = {(s.objects[0].shape, s.background) for s in unbiased.scenes("train", 200)}
    assert len(seen) > len(classes)  # the texture does not follow the class


def test_batches_are_a_function_of_seed_and_step() -> None:
    data = ShapesClassification(image_size=32)
    images, labels = data.batch(3, 8)
    again, labels_again = data.batch(3, 8)
    assert images.shape == (8, 3, 32, 32) and labels.shape == (8,)
    assert torch.equal(images, again) and torch.equal(labels, labels_again)
    assert not torch.equal(images, data.batch(4, 8)[0])
    assert images.min() >= -1 and images.max() <= 1
    assert labels.min() >= 0 and labels.max() < len(SHAPES)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"classes": ("circle", "blob")}, "classes must be two or more distinct shapes"),
        ({"classes": ("circle",)}, "classes must be two or more"),
        ({"classes": ("circle", "circle")}, "distinct"),
        ({"classes": ("circle", "star"), "backgrounds": ("dotted",)}, "one of plain"),
        ({"classes": ("circle", "star"), "backgrounds": ("dotted", "wavy")}, "one of plain"),
    ],
)
def test_data_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ShapesClassification(**kwargs)


def test_forward_shapes_and_layer() -> None:
    torch.manual_seed(0)
    model = ShapesClassifier(("circle", "square", "star"), TINY).eval()
    images = torch.randn(2, 3, 32, 32)
    assert model(images).shape == (2, 3)
    assert model.encoder(images).shape == (2, TINY[-1], 4, 4)  # stride 8
    assert dict(model.named_modules())[LAYER] is model.encoder


def test_class_activation_maps_by_hand() -> None:
    model = ShapesClassifier(("circle", "square"), (2, 2, 2, 2))
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))
    features = torch.tensor([[[[1.0, 0.0]], [[2.0, 4.0]]]])  # (1, K=2, h=1, w=2)
    cam = model.class_activation_maps(features, torch.tensor([[1, 0]]))
    # class 1: 0.5 * [1, 0] + 3 * [2, 4] = [6.5, 12]; class 0: [1, 0] - 2 * [2, 4] = [-3, -8]
    assert torch.equal(cam, torch.tensor([[[[6.5, 12.0]], [[-3.0, -8.0]]]]))


@pytest.mark.parametrize("relu", [False, True])
def test_gradcam_equals_cam_over_z(relu: bool) -> None:
    """Paper Sec. 3.1: on a GAP model Grad-CAM's map is CAM / Z, alpha is w / Z."""
    torch.manual_seed(1)
    model = ShapesClassifier(SHAPES, TINY).double().eval()
    images = torch.randn(3, 3, 40, 40, dtype=torch.float64)
    classes = list(range(len(SHAPES)))
    with torch.no_grad():
        features = model.encoder(images)
    z = features.shape[-2] * features.shape[-1]
    assert z == 25
    cam = model.class_activation_maps(features, torch.tensor([classes] * 3))
    with GradCAM(model, LAYER, relu=relu) as engine:
        explanation = engine(images, targets=[classes] * 3)
    expected = cam.clamp_min(0) if relu else cam
    assert (cam < 0).any() and (cam > 0).any()  # the ReLU case is not trivial
    torch.testing.assert_close(explanation.maps * z, expected, rtol=1e-12, atol=1e-12)
    weights = model.classifier.weight.detach().expand(3, -1, -1)
    torch.testing.assert_close(explanation.alphas * z, weights, rtol=1e-12, atol=1e-12)


def test_training_writes_a_checkpoint_that_reloads(tmp_path) -> None:
    data = ShapesClassification(classes=("circle", "square"), image_size=32)
    options = ClassifierTraining(
        out=tmp_path / "c.pt", classification=data, widths=TINY, steps=3, batch=4, eval_images=8
    )
    trained = train(ClassifierRecipe, options)
    model, metrics = trained.model, trained.metrics
    assert set(metrics) == {"loss", "val_accuracy", "eval_images"}
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["eval_images"] == 8
    meta = read_metadata(tmp_path / "c.pt")
    assert meta["steps"] == 3 and meta["widths"] == list(TINY)
    assert meta["data"]["classes"] == ["circle", "square"]
    loaded, loaded_data = load_shapes_classifier(tmp_path / "c.pt")
    assert loaded_data == data and loaded.classes == ("circle", "square")
    scenes = data.scenes("val", 8)
    assert not loaded.training
    assert torch.equal(predict(loaded, scenes), predict(model, scenes))
    with torch.no_grad():
        torch.testing.assert_close(loaded(scene_images(scenes)), model(scene_images(scenes)))


def test_train_classifier_command_and_explaining_its_checkpoint(tmp_path, capsys) -> None:
    import json

    from PIL import Image

    from vlx.cli import main

    out = tmp_path / "shapes.pt"
    assert main(["train", "classifier", "--steps", "3", "--batch", "4", "--eval-images", "6",
                 "--image-size", "32", "--out", str(out)]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert metrics["eval_images"] == 6 and 0 <= metrics["val_accuracy"] <= 1
    assert read_metadata(out)["data"]["image_size"] == 32
    scene = ShapesClassification(image_size=32).scenes("test", 1)[0]
    Image.fromarray(scene.image).save(tmp_path / "scene.png")
    assert main(["explain", str(tmp_path / "scene.png"), "--model", f"shapes:{out}", "--json",
                 "--out", str(tmp_path / "maps"), "--top-k", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layer"] == "encoder"
    assert {p["name"] for p in summary["images"][0]["predictions"]} <= set(SHAPES)
    assert main(["train", "classifier", "--resume", "--steps", "2", "--out", str(out)]) == 2
    assert "has trained 3 steps already; --resume continues" in capsys.readouterr().err
    assert main(["train", "classifier", "--steps", "3", "--image-size", "32", "--out", str(out)]) == 2
    assert "already exists; --resume continues it, --force replaces it" in capsys.readouterr().err


def test_shipped_shape_classifier_is_small_and_accurate() -> None:
    """`vlx train classifier --out models/checkpoints/shapes_classifier.pt` (2000 steps)."""
    from vlx.models.classifiers import load_classifier
    from vlx.models.registry import checkpoint_path

    path = checkpoint_path("shapes_classifier")
    assert path.stat().st_size < 1_000_000 and read_metadata(path)["metrics"]["val_accuracy"] >= 0.99
    classifier = load_classifier("shapes")
    data = classifier.scenes
    scenes = data.scenes("test", 30)
    predicted = predict(classifier.model, scenes).tolist()
    assert sum(p == data.label(s) for p, s in zip(predicted, scenes)) >= 29
