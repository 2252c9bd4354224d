"""The public API: ``vlx.explain`` as the one entry point, every exported name one object,
and the same argument names across methods."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
import torch
from torch import nn

import vlx
from vlx.methods import METHODS


def test_every_exported_name_stays_the_same_object_however_often_read() -> None:
    first = {name: getattr(vlx, name) for name in vlx.__all__}
    for module in pkgutil.walk_packages(vlx.__path__, "vlx."):
        if not module.name.startswith(("vlx.commands", "vlx.models", "vlx.tasks", "vlx.__main__")):
            importlib.import_module(module.name)
    for _ in range(2):
        for name in vlx.__all__:
            assert getattr(vlx, name) is first[name], name
    assert callable(vlx.occlusion) and callable(vlx.explain)


class Scaled(nn.Module):
    """A model with a keyword argument named like occlusion's own option."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)

    def forward(self, image: torch.Tensor, *, stride: float = 1.0) -> torch.Tensor:
        return self.conv(image).mean(dim=(2, 3)) * stride


@pytest.mark.parametrize("method", METHODS)
def test_model_kwargs_reach_the_model_and_never_the_method(method) -> None:
    torch.manual_seed(0)
    model, image = Scaled().eval(), torch.randn(1, 1, 8, 8)
    once = vlx.explain(model, image, method=method, targets=[[0]], layer="conv",
                       window=4, stride=4)
    twice = vlx.explain(model, image, method=method, targets=[[0]], layer="conv",
                        window=4, stride=4, model_kwargs={"stride": 2.0})
    torch.testing.assert_close(twice.scores, 2 * once.scores)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_warns_about_training_mode(method) -> None:
    model = Scaled().train()
    with pytest.warns(UserWarning, match="training mode"):
        vlx.explain(model, torch.randn(1, 1, 8, 8), method=method, targets=0, layer="conv",
                    window=4, stride=4)


def test_input_index_names_the_image_for_every_method() -> None:
    class Second(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Scaled()

        def forward(self, scale: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
            return self.inner(image) * scale

    model, image = Second().eval(), torch.randn(1, 1, 8, 8)
    for method in METHODS:
        e = vlx.explain(model, torch.ones(1, 1), image, method=method, targets=[[1]],
                        layer="inner.conv", input_index=1, window=4, stride=4)
        assert e.meta["input_size"] == (8, 8), method


def test_the_metrics_import_as_the_readme_says() -> None:
    from vlx import evaluate
    from vlx.evaluate import largest_segment_box, localization

    assert largest_segment_box is localization.largest_segment_box
    for name in evaluate.__all__:
        assert callable(getattr(evaluate, name)), name
