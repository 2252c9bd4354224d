"""The ShapesWorld classifier experiments (examples/) end to end in their --fast mode."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the module, so scripts sharing a recipe train it once."""
    return tmp_path_factory.mktemp("work")


def run(name: str, out: Path, work: Path, load_example, capsys) -> dict:
    results = load_example(name).main(["--fast", "--out", str(out), "--work", str(work)])
    table = (out / "results" / f"{name}.md").read_text()
    assert table.startswith("# ") and "\n|---|" in table
    assert table in capsys.readouterr().out
    figure = Image.open(out / "figures" / f"{name}.png")
    assert figure.width > 300 and figure.height > 150
    assert not [p for p in out.rglob(".*")]  # no temporary files left behind
    return results


def test_gradcam_equals_cam(tmp_path, work, load_example, capsys) -> None:
    results = run("gradcam_equals_cam", tmp_path, work, load_example, capsys)
    assert set(results) == {"float32_no_relu", "float32_relu", "float64_no_relu", "float64_relu"}
    for key, result in results.items():
        tolerance = 1e-5 if key.startswith("float32") else 1e-12
        assert result["max_relative_difference"] < tolerance
        assert result["max_alpha_difference"] < tolerance
        assert result["correlation"] > 1 - tolerance
        assert result["maps"] == 16 * 6


def test_table3_ablations(tmp_path, work, load_example, capsys) -> None:
    results = run("table3_ablations", tmp_path, work, load_example, capsys)
    module = sys.modules["table3_ablations"]
    assert set(results) == {"encoder", *module.INNER_LAYERS}
    for layer in results.values():
        assert set(layer) == set(module.ABLATIONS)
        for summary in layer.values():
            assert summary["images"] == 24
            assert summary["top1_classification_error"] <= summary["top1_localization_error"] <= 1
    # At the GAP layer the gradient is the same at every position and passes no ReLU, so
    # max pooling and both ReLU rules give exactly Grad-CAM's maps (Sec. 3.1).
    last = results["encoder"]
    for name in ("Grad-CAM with max-pooled gradients", "Grad-CAM with deconv ReLU backward",
                 "Grad-CAM with guided ReLU backward"):
        assert last[name] == last["Grad-CAM"]
    table = (tmp_path / "results" / "table3_ablations.md").read_text()
    assert "| Grad-CAM | 59.65% |" in table


def test_model_comparison(tmp_path, work, load_example, capsys) -> None:
    results = run("model_comparison", tmp_path, work, load_example, capsys)
    pairs = sys.modules["model_comparison"].PAIRS
    assert set(results) == set(pairs)
    for setting, (stronger, weaker) in pairs.items():
        names = {stronger.name, weaker.name}
        assert set(results[setting]) == names | {"only_hits"}
        only = results[setting].pop("only_hits")
        assert set(only) == names
        agreed = {r["agreed"] for r in results[setting].values()}
        assert len(agreed) == 1 and sum(only.values()) <= agreed.pop() <= 40
        for result in results[setting].values():
            assert result["agreed_accuracy"] == 1.0
            assert 0 <= result["accuracy"] <= 1
            assert math.isnan(result["pointing"]) or 0 <= result["pointing"] <= 1


def test_dataset_bias(tmp_path, work, load_example, capsys) -> None:
    results = run("dataset_bias", tmp_path, work, load_example, capsys)
    assert set(results) == {"bias-biased", "bias-unbiased"}
    for result in results.values():
        assert 0 <= result["accuracy"] <= 1 and 0 <= result["accuracy_where_bias_holds"] <= 1
        assert result["object_energy"] + result["background_energy"] == pytest.approx(1)
        assert 0 <= result["empty_maps"] <= 32


def test_object_energy_share_by_hand(load_example) -> None:
    import torch

    share = load_example("dataset_bias").object_energy_share
    maps = torch.tensor([[[1.0, 3.0], [0.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    masks = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]])
    result = share(maps, masks)
    assert result[0].item() == pytest.approx(5 / 8)
    assert math.isnan(result[1].item())


def test_trained_models_are_cached_by_recipe(tmp_path, monkeypatch, load_example) -> None:
    import torch

    helpers = load_example("_shapes_classifiers")
    recipe = helpers.Recipe("tiny").fast(steps=2)
    first = helpers.trained(recipe, tmp_path, "cpu")
    assert len(list(tmp_path.glob("tiny-*.pt"))) == 1
    assert len(list(tmp_path.glob("tiny-*.json"))) == 1

    def no_training(*args: object) -> None:
        raise AssertionError("a cached recipe was trained again")

    monkeypatch.setattr(helpers, "train", no_training)
    again = helpers.trained(recipe, tmp_path, "cpu")
    assert again.val_accuracy == first.val_accuracy
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(AssertionError, match="trained again"):
        helpers.trained(helpers.Recipe("tiny", steps=3).fast(steps=3), tmp_path, "cpu")


def test_a_bad_device_is_one_clear_error(tmp_path, load_example, capsys) -> None:
    module = load_example("dataset_bias")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--fast", "--device", "gpu", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "unknown device 'gpu'; valid: cpu, cuda, cuda:N" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
