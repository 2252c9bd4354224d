"""`--text` on `vlx explain`, `vlx caption` and `vlx vqa`, end to end on a 4-image probe.

The dissection cache lives in a temporary $VLX_CACHE, so nothing is written to ~.
"""

from __future__ import annotations

import json
from pathlib import Path

import hf_tiny
import pytest
from PIL import Image

from vlx.cli import main
from vlx.dissect.names import MIN_IOU

PROBE = ["--text", "--probe-images", "4"]
CHELSEA = str(Path(__file__).resolve().parent.parent / "vlx" / "assets" / "chelsea.jpg")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vlx-cache")


@pytest.fixture(autouse=True)
def private_cache(cache, monkeypatch) -> None:
    monkeypatch.setenv("VLX_CACHE", str(cache))


def run_json(argv: list[str], capsys) -> dict:
    code = main(argv + ["--json"])
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)


def check_text(text: dict, target: str, method: str = "gradcam") -> None:
    """A textual explanation as --json gives it: ranked, signed, named from IoU 0.05."""
    assert text["target"] == target and text["method"] == method
    assert text["sentence"].startswith(f'"{target}"')
    persuasive, inhibitive = text["persuasive"], text["inhibitive"]
    assert 0 < len(persuasive) <= 5 and len(inhibitive) <= 5
    alphas = [u["alpha"] for u in persuasive]
    assert alphas == sorted(alphas, reverse=True) and all(a > 0 for a in alphas)
    alphas = [u["alpha"] for u in inhibitive]
    assert alphas == sorted(alphas) and all(a < 0 for a in alphas)
    for unit in persuasive + inhibitive:
        assert unit["named"] == (unit["iou"] >= MIN_IOU)
        assert unit["name"] == (unit["label"] if unit["named"] else f"unnamed unit {unit['unit']}")
    assert Image.open(text["file"]).format == "PNG"


def test_explain_text_on_efficientnet(tmp_path, cache, capsys):
    out = tmp_path / "out"
    summary = run_json(["explain", CHELSEA, "--out", str(out), "--method",
                        "guided-backprop,gradcam", *PROBE], capsys)
    targets = summary["images"][0]["targets"]
    guided, gradcam = targets
    assert "text" not in guided  # no alphas
    check_text(gradcam["text"], gradcam["name"])
    assert gradcam["text"]["layer"] == "bn2"
    assert {u["unit"] for u in gradcam["text"]["persuasive"]} <= set(range(1280))
    assert gradcam["text"]["file"] in summary["images"][0]["files"]
    tally = list(cache.glob("dissections/efficientnet_lite0*bn2*/tally.csv"))
    assert len(tally) == 1
    # A second call reuses the cached dissection: same names, nothing re-dissected.
    stamp = tally[0].stat().st_mtime_ns
    again = run_json(["explain", CHELSEA, "--out", str(out), *PROBE], capsys)
    assert again["images"][0]["targets"][0]["text"]["sentence"] == gradcam["text"]["sentence"]
    assert tally[0].stat().st_mtime_ns == stamp


def test_explain_text_on_hf_vit_reads_the_patch_grid(tmp_path, capsys):
    import torch
    import transformers

    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=3, id2label={0: "red", 1: "green", 2: "blue"},
        label2id={"red": 0, "green": 1, "blue": 2},
    )
    torch.manual_seed(0)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "vit"
    )
    summary = run_json(["explain", CHELSEA, "--model", f"hf:{tmp_path / 'vit'}", "--target",
                        "red", "blue", "--out", str(tmp_path / "out"), *PROBE], capsys)
    red, blue = summary["images"][0]["targets"]
    check_text(red["text"], "red")
    check_text(blue["text"], "blue")
    assert red["text"]["layer"].endswith("1.layernorm_before")
    assert {u["unit"] for u in red["text"]["persuasive"]} <= set(range(32))


def test_caption_text_for_every_word(tmp_path, capsys):
    summary = run_json(["caption", "--out", str(tmp_path), *PROBE], capsys)
    for entry in summary["words"]:
        check_text(entry["text"], entry["word"])
        assert entry["text"]["layer"] == "encoder.stages.2"
        assert entry["text"]["file"] in summary["files"]
    assert len({e["text"]["file"] for e in summary["words"]}) == len(summary["words"])


@pytest.mark.parametrize("model", ["coattention", "lstm-cnn"])
def test_vqa_text_for_predicted_and_forced_answers(model, tmp_path, capsys):
    summary = run_json(["vqa", "--model", model, "--answers", "red", "circle", "--method",
                        "counterfactual,gradcam", "--out", str(tmp_path), *PROBE], capsys)
    assert {"red", "circle"} <= {a["answer"] for a in summary["answers"]}
    # co-attention is explained at its attended map; its text names the encoder's units
    assert summary["layer"] == {"coattention": "attended", "lstm-cnn": "encoder.stages.2"}[model]
    for entry in summary["answers"]:
        check_text(entry["text"], entry["answer"])
        assert entry["text"]["layer"] == "encoder.stages.2"


def test_vqa_text_at_a_question_dependent_layer_is_an_error(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["vqa", "--layer", "attended", "--out", str(out), *PROBE]) == 2
    err = capsys.readouterr().err
    assert "'attended' depends on the question" in err and "encoder.stages.2" in err
    assert not out.exists()


def test_human_output_prints_the_sentences(tmp_path, capsys):
    assert main(["vqa", "--out", str(tmp_path), *PROBE]) == 0
    out = capsys.readouterr().out
    assert 'because of' in out and out.count('    "') == 1


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    builders = {"vit-gpt2": hf_tiny.vit_gpt2, "blip-caption": hf_tiny.blip_captioner,
                "vilt": hf_tiny.vilt, "blip-vqa": hf_tiny.blip_vqa}
    return {name: build(root / name) for name, build in builders.items()}


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("photo") / "noise.png"
    hf_tiny.noise_image().save(path)
    return str(path)


@pytest.mark.parametrize("name", ["vit-gpt2", "blip-caption"])
def test_caption_text_on_hf_captioners(name, hf_models, photo, tmp_path, capsys):
    summary = run_json(["caption", photo, "--model", f"hf:{hf_models[name]}", "--caption",
                        "a red circle", "--out", str(tmp_path), *PROBE], capsys)
    assert [e["word"] for e in summary["words"]] == ["a", "red", "circle"]
    for entry in summary["words"]:
        check_text(entry["text"], entry["word"])


@pytest.mark.parametrize("name", ["vilt", "blip-vqa"])
def test_vqa_text_on_hf_models(name, hf_models, photo, tmp_path, capsys):
    summary = run_json(["vqa", photo, "what color is the circle?", "--model",
                        f"hf:{hf_models[name]}", "--answers", "red", "--out", str(tmp_path),
                        *PROBE], capsys)
    for entry in summary["answers"]:
        check_text(entry["text"], entry["answer"])


@pytest.mark.parametrize("command", [["explain", CHELSEA], ["caption"], ["vqa"]])
def test_text_with_only_guided_methods_is_an_error_naming_the_alpha_methods(
    command, tmp_path, capsys
):
    out = tmp_path / "out"
    code = main([*command, "--method", "guided-backprop,deconvolution", "--out", str(out),
                 *PROBE])
    err = capsys.readouterr().err
    assert code == 2
    assert ("--text needs a method that gives alphas (gradcam, guided-gradcam, counterfactual, "
            "gradcam++, xgradcam, scorecam, ablationcam); got only guided-backprop, "
            "deconvolution") in err
    assert not out.exists()


def test_bad_probe_options_are_errors(tmp_path, capsys):
    assert main(["vqa", "--out", str(tmp_path), "--text", "--probe-images", "0"]) == 2
    assert "--probe-images must be at least 1" in capsys.readouterr().err
    assert main(["vqa", "--out", str(tmp_path), "--text", "--probe", str(tmp_path / "none")]) == 2
    assert "is neither 'shapes' nor a Broden directory" in capsys.readouterr().err


def test_dissection_report_fast(tmp_path, load_example):
    results = load_example("dissection_report").main(["--fast", "--out", str(tmp_path)])
    assert set(results["named"]) == {"captioner", "coattention", "lstm-cnn"}
    for shares in [*results["named"].values(), results["efficientnet"]]:
        assert all(0 <= share <= 1 for share in shares.values()) and sum(shares.values()) <= 1
    for rates in results["own_concept"].values():
        for rate, chance in rates.values():
            assert 0 <= rate <= 1 and 0 <= chance <= 1
    table = (tmp_path / "results" / "dissection.md").read_text()
    assert "| captioner | 96 |" in table and "EfficientNet-Lite0 `bn2`" in table
    figures = {p.name for p in (tmp_path / "figures").iterdir()}
    assert figures == {f"dissection_{name}.png" for name in
                       ("caption", "coattention", "lstm-cnn", "efficientnet", "efficientnet_units")}


def test_counterfactual_alone_gives_the_same_text_as_gradcam(tmp_path, capsys):
    texts = {}
    for method in ("gradcam", "counterfactual"):
        summary = run_json(["vqa", "--method", method, "--out", str(tmp_path), *PROBE], capsys)
        texts[method] = summary["answers"][0]["text"]
    assert texts["counterfactual"]["method"] == "counterfactual"
    assert texts["counterfactual"]["sentence"] == texts["gradcam"]["sentence"]


def test_text_on_a_broden_directory_probe(tmp_path, capsys):
    from vlx.dissect import write_shapes_probe

    broden = write_shapes_probe(tmp_path / "broden", 3)
    summary = run_json(["vqa", "--model", "lstm-cnn", "--out", str(tmp_path / "out"), "--text",
                        "--probe", str(broden)], capsys)
    check_text(summary["answers"][0]["text"], summary["answer"])
