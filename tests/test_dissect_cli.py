"""`vlx dissect`: the files it writes on a small probe, its cache, and bad input."""

from __future__ import annotations

import json

import pytest
from test_dissect_broden import write_fixture

from vlx.cli import main


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VLX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_dissects_the_captioner_encoder_on_a_small_probe(tmp_path, capsys, cache):
    out = tmp_path / "out"
    argv = ["dissect", "--model", "captioner", "--images", "4", "--out", str(out), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layer"] == "encoder.stages.2" and summary["probe"] == "shapes:4"
    assert summary["images"] == 4 and summary["units"] == 96
    assert set(summary["named_per_category"]) == {"colour", "shape", "texture"}
    assert sum(summary["named_per_category"].values()) == summary["named"]
    assert sorted(p.name for p in out.iterdir()) == ["dissection.json", "tally.csv", "units.png"]
    header = (out / "tally.csv").read_text().splitlines()[0]
    assert header.startswith("unit,category,label,score,colour-label,colour-truth")
    assert len((out / "tally.csv").read_text().splitlines()) == 97
    ious = [u["iou"] for u in summary["top_units"]]
    assert ious == sorted(ious, reverse=True) and len(ious) == 8
    # the second run reads the cached dissection instead of dissecting again
    assert len(list((cache / "dissections").iterdir())) == 1
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["top_units"] == summary["top_units"]
    assert len(list((cache / "dissections").iterdir())) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--layer", "encoder.stages.9"], "unknown layer 'encoder.stages.9'"),
        (["--probe", "/no/such/probe"], "neither 'shapes' nor a Broden directory"),
        (["--images", "0"], "--images must be at least 1"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path):
    code = main(["dissect", "--model", "captioner", "--out", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_malformed_broden_probe_names_file_and_column(tmp_path, capsys):
    root = write_fixture(tmp_path / "broden")
    (root / "category.csv").write_text("title,first\ncolour,1\n")
    code = main(["dissect", "--model", "captioner", "--probe", str(root), "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "category.csv has no column 'name'" in err


def test_dissects_on_a_broden_directory(tmp_path, capsys):
    root = write_fixture(tmp_path / "broden")
    out = tmp_path / "out"
    argv = ["dissect", "--model", "coattention", "--probe", str(root), "--out", str(out), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["probe"] == str(root.resolve()) and summary["images"] == 2
    assert set(summary["named_per_category"]) == {"colour", "scene"}
    assert (out / "units.png").is_file()


def test_a_classifier_without_a_default_layer_is_probed_for_one(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="random weights"):
        code = main(["dissect", "--model", "mobilenet_v3_small", "--images", "2", "--out",
                     str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layer"] == "features" and summary["units"] == 576


def test_token_layers_of_a_vit_are_dissected_on_their_patch_grid(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, num_labels=3,
    )
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "vit"
    )
    out = tmp_path / "out"
    assert main(["dissect", "--model", f"hf:{tmp_path / 'vit'}", "--images", "2", "--out",
                 str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layer"].endswith("1.layernorm_before") and summary["units"] == 32
