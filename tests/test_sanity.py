"""Sanity checks (Adebayo et al. 2018): randomizing a model in place and putting it back, the
randomization metrics over the task contract, the shipped shuffled-label classifier, and
`vlx evaluate sanity`."""

from __future__ import annotations

import copy
import json
import zlib

import pytest
import torch
from torch import nn

import vlx
from vlx.cli import main
from vlx.evaluate.measures import DataRandomization, ModelRandomization
from vlx.evaluate.runner import measure
from vlx.evaluate.sanity import (
    parameter_blocks,
    passed,
    randomization_steps,
    randomize_,
    randomized,
)
from vlx.evaluate.sources import evaluation_data
from vlx.models.registry import checkpoint_path
from vlx.models.shapes_classifier import accuracy, load_shapes_classifier, predict
from vlx.tasks.loading import load_task


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                      nn.Conv2d(4, 5, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def trained_net() -> Net:
    torch.manual_seed(3)
    net = Net().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))  # far from any initialization
        net.features[1].running_mean.fill_(0.5)
    return net


def test_blocks_go_from_the_output_down() -> None:
    blocks = parameter_blocks(trained_net(), at_least=3)
    assert blocks == [("head", ["head"]), ("features.3", ["features.3"]),
                      ("features.1", ["features.1"]), ("features.0", ["features.0"])]
    assert parameter_blocks(trained_net(), at_least=2) == [
        ("head", ["head"]), ("features", ["features.0", "features.1", "features.3"])]
    steps = randomization_steps(trained_net(), "cascading", at_least=3)
    assert [names for _, names in steps] == [
        ["head"], ["head", "features.3"], ["head", "features.3", "features.1"],
        ["head", "features.3", "features.1", "features.0"]]


def test_randomized_weights_are_put_back_even_when_the_block_raises() -> None:
    net = trained_net()
    before = copy.deepcopy(net.state_dict())
    with pytest.raises(RuntimeError, match="inside"), randomized(net, ["head", "features.1"]):
        assert not torch.equal(net.head.weight, before["head.weight"])
        # A norm layer gets its initial scale and shift; its running statistics are kept.
        assert torch.equal(net.features[1].weight, torch.ones(4))
        assert torch.equal(net.features[1].bias, torch.zeros(4))
        assert torch.equal(net.features[1].running_mean, before["features.1.running_mean"])
        assert torch.equal(net.features[0].weight, before["features.0.weight"])
        raise RuntimeError("inside")
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_a_cascade_redraws_the_same_weights_at_every_step() -> None:
    net = trained_net()
    with randomized(net, ["head"], seed=4):
        head_alone = net.head.weight.clone()
    with randomized(net, ["head", "features.3"], seed=4):
        assert torch.equal(net.head.weight, head_alone)
    with randomized(net, ["head"], seed=5):
        assert not torch.equal(net.head.weight, head_alone)


def test_randomized_maps_equal_those_of_a_randomized_copy() -> None:
    """The metric randomizes the model in place; explaining an independently randomized deep
    copy gives the same maps, and the trained model explains as before afterwards."""
    net, image = trained_net(), torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    trained = vlx.explain(net, image, targets=[[0, 2]], layer="features.4").maps
    twin = copy.deepcopy(net)
    for name in ("head", "features.3"):
        seed = zlib.crc32(f"0|{name}".encode())
        randomize_(twin.get_submodule(name), torch.Generator().manual_seed(seed))
    expected = vlx.explain(twin, image, targets=[[0, 2]], layer="features.4").maps
    with randomized(net, ["head", "features.3"], seed=0):
        got = vlx.explain(net, image, targets=[[0, 2]], layer="features.4").maps
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert not torch.allclose(got, trained)
    torch.testing.assert_close(vlx.explain(net, image, targets=[[0, 2]], layer="features.4").maps,
                               trained, rtol=0, atol=0)


@pytest.fixture(scope="module")
def classifier():
    return load_task("classify", "shapes")


def test_a_model_compared_with_itself_is_the_same_by_every_measure(classifier) -> None:
    data = evaluation_data(classifier, "shapes", 2, "sanity")
    summary = measure(classifier, data, DataRandomization(classifier, ["gradcam"]))
    row = summary["methods"]["gradcam"]["steps"]["shuffled labels"]
    for name in ("spearman", "abs-spearman", "ssim", "hog"):
        assert row[name]["mean"] == pytest.approx(1.0, abs=1e-9), name
    assert summary["methods"]["gradcam"]["passed"] is False


def test_cascading_randomization_changes_the_classifier_and_leaves_it_as_it_was(
    classifier,
) -> None:
    before = copy.deepcopy(classifier.model.state_dict())
    data = evaluation_data(classifier, "shapes", 2, "sanity")
    summary = measure(classifier, data, ModelRandomization(["gradcam"], "cascading"))
    steps = summary["methods"]["gradcam"]["steps"]
    assert next(iter(steps)) == "classifier" and len(steps) >= 5
    assert all(row["count"] == 2 for row in steps.values())
    assert all(row["abs-spearman"]["mean"] < 0.99 for row in steps.values())
    for key, value in classifier.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_the_shuffled_label_classifier_memorised_its_labels() -> None:
    """Trained by the command in its metadata: measured here, it fits its 512 training scenes'
    shuffled labels, and held-out scenes are near chance (1/6), where the shipped classifier
    trained on true labels is far above it."""
    path = checkpoint_path("shapes_classifier_permuted")
    metadata = json.loads(path.with_suffix(".json").read_text())
    assert "--permuted-labels" in metadata["command"]
    model, data = load_shapes_classifier(path)
    assert data.permuted_labels and data.training_scenes == 512
    scenes, labels = data.training_set
    true_labels = [data.label(s) for s in scenes]
    assert sum(a != b for a, b in zip(labels, true_labels, strict=True)) > 300
    assert float((predict(model, scenes) == torch.tensor(labels)).float().mean()) >= 0.95
    held_out = data.scenes("val", 300)
    assert accuracy(model, data, held_out) <= 0.3
    trained, trained_data = load_shapes_classifier(checkpoint_path("shapes_classifier"))
    assert accuracy(trained, trained_data, held_out) >= 0.8


def test_sanity_command(classifier, tmp_path, capsys) -> None:
    figure = tmp_path / "fig2.png"
    code = main(["evaluate", "sanity", "--task", "classify", "--images", "2", "--method",
                 "gradcam", "--randomization", "independent", "--figure", str(figure), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["mode"] == "independent" and figure.is_file()
    blocks = [label for label, _ in parameter_blocks(classifier.model)]
    assert list(summary["methods"]["gradcam"]["steps"]) == blocks
    assert main(["evaluate", "sanity", "--task", "classify", "--against", "shapes"]) == 2
    assert "--against names the model trained on shuffled labels" in capsys.readouterr().err
    assert main(["evaluate", "sanity", "--task", "vqa", "--randomization", "data"]) == 2
    assert "needs --against MODEL" in capsys.readouterr().err


def test_a_verdict_needs_every_step_below_the_bar_and_is_undefined_without_ranks() -> None:
    assert passed([0.49, -0.9, 0.1]) is True
    assert passed([0.1, 0.5]) is False  # 0.5 is not below 0.5
    assert passed([0.1, float("nan")]) is None and passed([]) is None
