"""The classification adapter on the real ImageNet default and on scikit-image's photos."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vlx.errors import InputError
from vlx.task import Example
from vlx.tasks.classification import ImageClassification

data = pytest.importorskip("skimage.data")

CAT_CLASSES = {"Egyptian cat", "tiger cat", "tabby", "lynx", "Persian cat", "Siamese cat"}
CUP_CLASSES = {"espresso", "cup", "coffee mug"}
# Hand-drawn boxes (x0, y0, x1, y1) in the photos' pixels: the cat's face in `chelsea`
# (451 x 300) and the cup with its handle in `coffee` (600 x 400). The rest of each photo is
# background (the cushion on the right of the cat, the table and saucer rim around the cup).
CAT_FACE = (80, 20, 400, 300)
CUP = (150, 10, 470, 300)


@pytest.fixture(scope="module")
def classifier() -> ImageClassification:
    return ImageClassification.load()


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return {"chelsea": Image.fromarray(data.chelsea()), "coffee": Image.fromarray(data.coffee())}


def _inside(point: list[int] | torch.Tensor, box: tuple[int, int, int, int]) -> bool:
    x, y = (int(v) for v in point)
    return box[0] <= x < box[2] and box[1] <= y < box[3]


def test_real_weights_recognise_the_photos(classifier, photos):
    batch = classifier.prepare([Example(photos["chelsea"]), Example(photos["coffee"])])
    cat, coffee = classifier.predict(batch, top_k=3)
    assert cat[0].name in CAT_CLASSES and cat[0].probability > 0.3
    assert coffee[0].name in CUP_CLASSES and coffee[0].probability > 0.3
    # the cat photo's top three are all cats: the weights are ImageNet's, not random
    assert {p.name for p in cat} <= CAT_CLASSES


def test_gradcam_peak_lies_on_the_object(classifier, photos):
    batch = classifier.prepare([Example(photos["chelsea"]), Example(photos["coffee"])])
    e = classifier.explain(batch, classifier.targets(batch), "gradcam")
    assert e.layer == "bn2" and e.maps.shape == (2, 1, 7, 7)
    cat_peak = e.peaks((300, 451))[0, 0]
    cup_peak = e.peaks((400, 600))[1, 0]
    assert _inside(cat_peak, CAT_FACE), cat_peak
    assert _inside(cup_peak, CUP), cup_peak


def test_map_energy_is_on_the_cup_not_the_table(classifier, photos):
    batch = classifier.prepare([Example(photos["coffee"])])
    e = classifier.explain(batch, classifier.targets(batch), "gradcam")
    heat = e.upsampled((400, 600)).normalized().maps[0, 0]
    x0, y0, x1, y1 = CUP
    inside = heat[y0:y1, x0:x1].mean()
    outside = (heat.sum() - heat[y0:y1, x0:x1].sum()) / (heat.numel() - (y1 - y0) * (x1 - x0))
    assert inside > 2 * outside


def test_class_names_resolve_case_insensitively_and_by_synonym(classifier):
    assert classifier.class_index("Egyptian cat") == 285
    assert classifier.class_index("egyptian CAT") == 285
    assert classifier.class_index("285") == 285
    assert classifier.class_index(967) == 967


@pytest.mark.parametrize(
    ("target", "fragment"),
    [("egyptian dog", "egyptian cat"), (1000, "0..999"), ("-3", "closest")],
)
def test_unknown_class_names_the_closest(classifier, target, fragment):
    with pytest.raises(InputError) as info:
        classifier.class_index(target)
    assert str(target) in str(info.value)
    assert fragment in str(info.value).lower()


def test_hf_vit_classifier_from_a_local_directory(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, num_labels=3,
        id2label={0: "red", 1: "green", 2: "blue"}, label2id={"red": 0, "green": 1, "blue": 2},
    )
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)

    vit = ImageClassification.load(f"hf:{tmp_path}")
    assert vit.layer.endswith("1.layernorm_before")
    batch = vit.prepare([Example(Image.new("RGB", (40, 40), "red"))])
    e = vit.explain(batch, vit.targets(batch, [0, "green", 2]), "gradcam")
    assert e.targets == [["red", "green", "blue"]]
    assert e.maps.shape == (1, 3, 4, 4)  # 32 / 8 = a 4 x 4 patch grid, CLS dropped
    assert e.alphas.shape == (1, 3, 32)
    # the layer input norm carries gradient to the patch tokens: the maps are not all zero
    assert e.alphas.abs().sum() > 0


def test_hf_directory_without_processor_is_a_clear_error(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=2,
    )
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path)
    with pytest.raises(InputError, match="preprocessor_config.json"):
        ImageClassification.load(f"hf:{tmp_path}")


def test_unknown_model_lists_valid_forms():
    with pytest.raises(InputError) as info:
        ImageClassification.load("resnet5O")
    message = str(info.value)
    assert "resnet5O" in message and "resnet50" in message and "hf:PATH" in message


def test_hf_convolutional_classifier_is_probed_for_its_last_spatial_layer(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=4,
    )
    torch.manual_seed(0)
    transformers.ResNetForImageClassification(config).save_pretrained(tmp_path)
    transformers.ConvNextImageProcessor(size={"shortest_edge": 64}).save_pretrained(tmp_path)
    hf = ImageClassification.load(f"hf:{tmp_path}")
    batch = hf.prepare([Example(Image.new("RGB", (50, 70), "blue"))])
    assert batch.inputs.shape == (1, 3, 64, 64)
    e = hf.explain(batch, hf.targets(batch, [0, 3]), "gradcam")
    assert e.layer.startswith("resnet.encoder.stages")
    # stem stride 4 (64 -> 16), first stage stride 1, second stride 2: an 8 x 8 map
    assert e.maps.shape == (1, 2, 8, 8) and e.alphas.shape == (1, 2, 16)


def test_timm_and_torchvision_models_by_name_warn_about_random_weights():
    with pytest.warns(UserWarning, match="random weights"):
        timm_model = ImageClassification.load("timm:resnet10t")
    with pytest.warns(UserWarning, match="random weights"):
        tv_model = ImageClassification.load("torchvision:resnet18")
    image = [Example(Image.new("RGB", (64, 64), "green"))]
    for classifier, layer in ((timm_model, "layer4"), (tv_model, "layer4")):
        batch = classifier.prepare(image)
        e = classifier.explain(batch, classifier.targets(batch, [1]), "gradcam")
        assert e.layer == layer and e.maps.shape[:2] == (1, 1)


def test_grayscale_and_exif_rotated_photos_are_read_upright(classifier, photos, tmp_path):
    """A portrait photo stored sideways with an EXIF orientation is classified and drawn as a
    viewer shows it: the same as the upright photo."""
    from vlx.images import load_image

    upright = photos["chelsea"]
    sideways = upright.transpose(Image.Transpose.ROTATE_270)  # what the camera stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    path = tmp_path / "portrait.jpg"
    sideways.save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.size == upright.size
    batch = classifier.prepare([Example(upright), Example(loaded)])
    first, second = classifier.predict(batch, 1)
    assert first[0].index == second[0].index
    gray = classifier.prepare([Example(upright.convert("L"))])
    assert gray.inputs.shape == (1, 3, 224, 224)


def test_probabilities_of_edited_copies_are_the_softmax_of_the_target(classifier, photos):
    batch = classifier.prepare([Example(photos["coffee"])])
    targets = classifier.targets(batch)
    copies = torch.stack([batch.inputs[0], torch.zeros_like(batch.inputs[0])])
    with torch.no_grad():
        expected = classifier.model(copies).softmax(-1)[:, [targets.rows[0][0].id]]
    torch.testing.assert_close(classifier.probabilities(batch, targets, copies), expected)
