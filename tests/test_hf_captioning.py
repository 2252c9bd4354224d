"""Captioning adapters for transformers models (VisionEncoderDecoder, BLIP) and `vlx caption`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import hf_tiny
import pytest
import torch
from PIL import Image

from vlx.cli import main
from vlx.errors import InputError
from vlx.tasks.hf_loading import load_hf_captioner

CAPTION = "a red circles left of the blue square"
FAMILIES = {  # builder, patch grid of the processor's input size
    "vit-gpt2": (hf_tiny.vit_gpt2, (4, 6)),
    "swin-bert": (hf_tiny.swin_bert, (5, 7)),
    "blip": (hf_tiny.blip_captioner, (4, 4)),
}


@pytest.fixture(scope="module")
def directories(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_captioners")
    return {name: build(root / name) for name, (build, _) in FAMILIES.items()}


@pytest.fixture(scope="module")
def captioners(directories):
    return {name: load_hf_captioner(path) for name, path in directories.items()}


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.effect_noise((90, 60), 60).convert("RGB")


def test_tiny_tokenizers_read_their_words():
    for tokenizer in (hf_tiny.bert_tokenizer(), hf_tiny.gpt2_tokenizer()):
        ids = tokenizer(CAPTION, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids or tokenizer.unk_token_id == tokenizer.eos_token_id
        assert len(set(ids)) > 4


@pytest.mark.parametrize("name", FAMILIES)
def test_per_word_maps_on_the_patch_grid(captioners, image, name):
    captioner = captioners[name]
    inputs = captioner.prepare([image, image.rotate(90, expand=True)])
    words = captioner.words(CAPTION)
    e = captioner.explain(inputs, words, whole_caption=True)
    assert e.maps.shape == (2, len(words) + 1, *FAMILIES[name][1])
    assert e.targets == [[*words, "<caption>"]] * 2 and e.layer == captioner.layer
    assert torch.isfinite(e.maps).all() and (e.scores < 0).all()


@pytest.mark.parametrize(("layer", "grid"), [("encoder.embeddings", (10, 14)),
                                             ("encoder.encoder.layers.0", (5, 7))])
def test_swin_layers_keep_their_stage_grids(captioners, image, layer, grid):
    captioner = captioners["swin-bert"]
    e = captioner.explain(captioner.prepare([image]), CAPTION, layer=layer, positions=[1])
    assert e.maps.shape == (1, 1, *grid) and e.layer == layer


@pytest.mark.parametrize("name", FAMILIES)
def test_all_words_at_once_equal_one_at_a_time(captioners, image, name):
    captioner = captioners[name]
    inputs = captioner.prepare([image, image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)])
    words = captioner.words(CAPTION)
    together = captioner.explain(inputs, words, whole_caption=True)
    for p in range(len(words)):
        alone = captioner.explain(inputs, words, positions=[p])
        scale = together.maps[:, p].abs().max()
        assert (alone.maps[:, 0] - together.maps[:, p]).abs().max() <= 1e-5 * scale
        assert torch.allclose(alone.scores[:, 0], together.scores[:, p], atol=1e-5)
    assert torch.allclose(together.scores[:, -1], together.scores[:, :-1].sum(1), atol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_target_is_the_teacher_forced_log_prob(captioners, directories, image, name):
    """Token t's score is log p(token_t | image, start token, tokens before t), read off a
    plain forward of the model; a word's score sums its sub-word tokens'."""
    captioner = captioners[name]
    inputs = captioner.prepare([image])
    ids = captioner.tokenizer(CAPTION, add_special_tokens=False)["input_ids"]
    fed = torch.tensor([[captioner.start_id, *ids]])
    with torch.no_grad():
        logits = captioner.model(inputs, **{captioner.token_argument: fed}).logits
    expected = logits[0, :-1].log_softmax(-1).gather(1, torch.tensor(ids)[:, None])[:, 0]
    words = captioner.explain(inputs, CAPTION)
    tokens = load_hf_captioner(directories[name], group_words=False).explain(inputs, CAPTION)
    assert tokens.targets[0] == captioner.tokenizer.convert_ids_to_tokens(ids)
    assert torch.allclose(tokens.scores[0], expected, atol=1e-5)
    circles = words.targets[0].index("circles")  # "circle" + "s" / "##s"
    assert torch.allclose(words.scores[0, circles], expected[2:4].sum(), atol=1e-5)


@pytest.mark.parametrize(
    ("name", "layer", "conv", "zeroed"),
    [
        ("vit-gpt2", "encoder.layers.0.layernorm_before",
         "encoder.embeddings.patch_embeddings.projection",
         ["encoder.embeddings.position_embeddings"]),
        ("blip", "vision_model.encoder.layers.0.layer_norm1",
         "vision_model.embeddings.patch_embedding", ["vision_model.embeddings.position_embedding"]),
    ],
)
def test_planted_quadrant_is_found(directories, image, name, layer, conv, zeroed):
    captioner = load_hf_captioner(directories[name])
    handle = hf_tiny.plant_bottom_right(captioner.model, conv, zeroed)
    try:
        inputs = captioner.prepare([image])
        maps = torch.cat([captioner.explain(inputs, CAPTION, m, layer=layer).maps
                          for m in ("gradcam", "counterfactual")], dim=1)
    finally:
        handle.remove()
    assert hf_tiny.outside_bottom_right(maps).abs().max() == 0
    h, w = maps.shape[-2:]
    for word in maps[0]:  # each word's map (or its counterfactual) lies in the quadrant
        if word.max() > 0:
            y, x = divmod(int(word.argmax()), w)
            assert y >= h // 2 and x >= w // 2
    assert (maps[0].amax(dim=(-2, -1)) > 0).sum() >= maps.shape[1] // 2


def test_generated_caption_is_explained(captioners, image):
    captioner = captioners["swin-bert"]
    inputs = captioner.prepare([image])
    (generated,) = captioner.caption(inputs)
    beam = captioner.caption(inputs, beam=2)[0]
    assert len(generated) >= 3 and beam
    e = captioner.explain(inputs, generated)
    assert e.targets[0] == generated


def test_unknown_and_empty_captions_are_errors(captioners):
    captioner = captioners["blip"]
    with pytest.raises(InputError, match="'circel'.*circle"):
        captioner.words("a red circel")
    with pytest.raises(InputError, match="no words"):
        captioner.words("   ")
    with pytest.raises(InputError, match="position 9"):
        captioner.explain(torch.zeros(1, 3, 32, 32), "a red circle", positions=[9])


def test_caption_cli_json(directories, image, tmp_path, capsys):
    file = tmp_path / "scene.png"
    image.save(file)
    out = tmp_path / "out"
    code = main(["caption", str(file), "--model", f"hf:{directories['vit-gpt2']}", "--json",
                 "--out", str(out)])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(summary) == {"command", "image", "generated", "caption", "layer", "words", "files"}
    assert summary["layer"] == "encoder.layers.1" and summary["words"]
    for entry in summary["words"]:
        assert set(entry) == {"position", "word", "files", "log_prob", "peaks", "peak"}
        assert 0 <= entry["peak"][0] < 90 and 0 <= entry["peak"][1] < 60
    assert all(Path(f).is_file() for f in summary["files"])


def test_caption_cli_given_caption_words_and_methods(directories, image, tmp_path, capsys):
    file = tmp_path / "scene.png"
    image.save(file)
    code = main(["caption", str(file), "--model", f"hf:{directories['blip']}", "--caption",
                 CAPTION, "--words", "circles", "square", "--whole", "--method",
                 "gradcam,guided-gradcam", "--json", "--out", str(tmp_path / "out")])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["caption"] == CAPTION
    assert [w["word"] for w in summary["words"]] == ["circles", "square", "<caption>"]
    assert set(summary["words"][0]["peaks"]) == {"gradcam", "guided-gradcam"}


def test_missing_files_are_clear_errors(directories, tmp_path, capsys):
    with pytest.raises(InputError, match="does not exist"):
        load_hf_captioner(tmp_path / "nowhere")
    copy = Path(shutil.copytree(directories["vit-gpt2"], tmp_path / "copy"))
    (copy / "preprocessor_config.json").unlink()
    with pytest.raises(InputError, match="preprocessor_config.json"):
        load_hf_captioner(copy)
    copy = Path(shutil.copytree(directories["blip"], tmp_path / "copy2"))
    (copy / "tokenizer.json").unlink()
    with pytest.raises(InputError, match="tokenizer"):
        load_hf_captioner(copy)
    assert main(["caption", "--model", f"hf:{tmp_path / 'nowhere'}",
                 "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["caption", "--model", "blip", "--out", str(tmp_path / "o")]) == 2
    assert "hf:PATH" in capsys.readouterr().err
