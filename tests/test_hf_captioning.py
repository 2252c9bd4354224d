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
from vlx.images import load_image
from vlx.methods import CAM_FAMILY
from vlx.task import Example
from vlx.tasks.captioning import EVERY_WORD, WHOLE_CAPTION
from vlx.tasks.hf_loading import load_hf_captioner

CAPTION = "a red circles left of the blue square"
FAMILIES = {  # builder, patch grid of the processor's input size
    "vit-gpt2": (hf_tiny.vit_gpt2, (4, 6)),
    "swin-bert": (hf_tiny.swin_bert, (5, 7)),
    "blip": (hf_tiny.blip_captioner, (4, 4)),
}

PLANTED_METHODS = [("gradcam", "counterfactual"), *((m,) for m in CAM_FAMILY if m != "gradcam")]
"""Every CAM-family map is a combination of the layer's activation, zero outside the quadrant."""


@pytest.fixture(scope="module")
def directories(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_captioners")
    return {name: build(root / name) for name, (build, _) in FAMILIES.items()}


@pytest.fixture(scope="module")
def captioners(directories):
    return {name: load_hf_captioner(path) for name, path in directories.items()}


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return hf_tiny.noise_image()


def teacher_forced_log_probs(captioner, pixels: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """log p(token_t | image, start token, tokens before t), off a plain forward."""
    fed = torch.tensor([[captioner.start_id, *ids]])
    with torch.no_grad():
        logits = captioner.model(pixels, **{captioner.token_argument: fed}).logits
    return logits[0, :-1].log_softmax(-1).gather(1, torch.tensor(ids)[:, None])[:, 0]


def test_tiny_tokenizers_read_their_words():
    for tokenizer in (hf_tiny.bert_tokenizer(), hf_tiny.gpt2_tokenizer()):
        ids = tokenizer(CAPTION, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids or tokenizer.unk_token_id == tokenizer.eos_token_id
        assert len(set(ids)) > 4


@pytest.mark.parametrize("name", FAMILIES)
def test_per_word_maps_on_the_patch_grid(captioners, image, name):
    captioner = captioners[name]
    batch = captioner.prepare([Example(image, CAPTION),
                               Example(image.rotate(90, expand=True), CAPTION)])
    words = captioner.words(CAPTION)
    targets = captioner.targets(batch, [EVERY_WORD, WHOLE_CAPTION])
    e = captioner.explain(batch, targets)
    assert e.maps.shape == (2, len(words) + 1, *FAMILIES[name][1])
    assert e.targets == [[*words, "<caption>"]] * 2 and e.layer == captioner.layer
    assert [[t.id for t in row] for row in targets.rows] == [list(range(len(words) + 1))] * 2
    assert torch.isfinite(e.maps).all() and (e.scores < 0).all()
    # the two images give the same caption different scores: each row is its own image's
    assert not torch.allclose(e.scores[0], e.scores[1])


@pytest.mark.parametrize(("layer", "grid"), [("encoder.embeddings", (10, 14)),
                                             ("encoder.encoder.layers.0", (5, 7))])
def test_swin_layers_keep_their_stage_grids(captioners, image, layer, grid):
    captioner = captioners["swin-bert"]
    batch = captioner.prepare([Example(image, CAPTION)])
    e = captioner.explain(batch, captioner.targets(batch, [1]), layer=layer)
    assert e.maps.shape == (1, 1, *grid) and e.layer == layer
    assert e.targets == [["red"]]


@pytest.mark.parametrize("name", FAMILIES)
def test_all_words_at_once_equal_one_at_a_time(captioners, image, name):
    captioner = captioners[name]
    batch = captioner.prepare([Example(image, CAPTION),
                               Example(image.transpose(Image.Transpose.FLIP_TOP_BOTTOM), CAPTION)])
    words = captioner.words(CAPTION)
    together = captioner.explain(batch, captioner.targets(batch, [EVERY_WORD, WHOLE_CAPTION]))
    for p in range(len(words)):
        alone = captioner.explain(batch, captioner.targets(batch, [p]))
        assert alone.targets == [[words[p]]] * 2
        scale = together.maps[:, p].abs().max()
        assert (alone.maps[:, 0] - together.maps[:, p]).abs().max() <= 1e-5 * scale
        assert torch.allclose(alone.scores[:, 0], together.scores[:, p], atol=1e-5)
    assert torch.allclose(together.scores[:, -1], together.scores[:, :-1].sum(1), atol=1e-4)
    # one list per example: rows of different lengths, each scored as when asked alone
    mixed = captioner.explain(batch, captioner.targets(batch, [["circles"], [0, WHOLE_CAPTION]]))
    circles = words.index("circles")
    assert mixed.targets == [["circles"], [words[0], "<caption>"]]
    assert torch.allclose(mixed.scores[0, 0], together.scores[0, circles], atol=1e-5)
    assert torch.allclose(mixed.scores[1], together.scores[1, [0, -1]], atol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_target_is_the_teacher_forced_log_prob(captioners, directories, image, name):
    """Token t's score is log p(token_t | image, start token, tokens before t), read off a
    plain forward of the model; a word's score sums its sub-word tokens'."""
    captioner = captioners[name]
    batch = captioner.prepare([Example(image, CAPTION)])
    ids = captioner.tokenizer(CAPTION, add_special_tokens=False)["input_ids"]
    expected = teacher_forced_log_probs(captioner, batch.inputs, ids)
    words = captioner.explain(batch, captioner.targets(batch))
    by_token = load_hf_captioner(directories[name], group_words=False)
    token_batch = by_token.prepare([Example(image, CAPTION)])
    tokens = by_token.explain(token_batch, by_token.targets(token_batch))
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
@pytest.mark.parametrize("methods", PLANTED_METHODS, ids="+".join)
def test_planted_quadrant_is_found(directories, image, name, layer, conv, zeroed, methods):
    captioner = load_hf_captioner(directories[name])
    handle = hf_tiny.plant_bottom_right(captioner.model, conv, zeroed)
    try:
        batch = captioner.prepare([Example(image, CAPTION)])
        targets = captioner.targets(batch)
        maps = torch.cat([captioner.explain(batch, targets, m, layer=layer).maps
                          for m in methods], dim=1)
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
    batch = captioner.prepare([Example(image)])
    ((generated,),) = captioner.predict(batch)
    assert len(generated.words) >= 3 and generated.name == " ".join(generated.words)
    try:
        captioner.beam = 2
        ((beam,),) = captioner.predict(captioner.prepare([Example(image)]))
    finally:
        captioner.beam = 0
    assert beam.words
    e = captioner.explain(batch, captioner.targets(batch))
    assert e.targets[0] == list(generated.words)
    # explained on the generated caption: the same scores as when it is given as text
    given = captioner.prepare([Example(image, generated.name)])
    again = captioner.explain(given, captioner.targets(given))
    assert torch.allclose(e.scores, again.scores, atol=1e-5)


def test_generated_ids_are_explained_not_retokenized(directories, image):
    """A byte-level BPE caption is explained on the ids generate() produced: " circle blue"
    generated as "Ġcir" "cle" "Ġblue" re-tokenizes to "Ġcircle" "Ġblue", whose log-probs
    would describe another sequence."""
    captioner = load_hf_captioner(directories["vit-gpt2"])
    vocab = captioner.tokenizer.get_vocab()
    cir, cle, blue, end = (vocab[t] for t in ("Ġcir", "cle", "Ġblue", "<|endoftext|>"))
    # Force the random decoder to generate start, Ġcir, cle, Ġblue, end.
    captioner.model.generation_config.sequence_bias = {
        (captioner.start_id, cir): 100.0, (cir, cle): 100.0, (cle, blue): 100.0,
        (blue, end): 100.0,
    }
    batch = captioner.prepare([Example(image)])
    with torch.no_grad():
        row = captioner.model.generate(batch.inputs, do_sample=False, num_beams=1,
                                       max_new_tokens=captioner.max_new_tokens)[0].tolist()
    assert row[0] == captioner.start_id and row[-1] in captioner.end_ids
    generated_ids = row[1:-1]
    assert generated_ids == [cir, cle, blue]
    text = captioner.tokenizer.decode(generated_ids)
    retokenized = captioner.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert retokenized != generated_ids  # the case this test is about
    targets = captioner.targets(batch)
    assert targets.context[0].ids == generated_ids
    assert [t.name for t in targets.rows[0]] == ["circle", "blue"]
    assert captioner.predict(batch)[0][0].words == ("circle", "blue")
    e = captioner.explain(batch, targets)
    expected = teacher_forced_log_probs(captioner, batch.inputs, generated_ids)
    assert torch.allclose(e.scores[0], torch.stack([expected[:2].sum(), expected[2]]), atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_grayscale_images_are_prepared_as_rgb(captioners, image, name):
    captioner = captioners[name]
    gray = image.convert("L")
    batch = captioner.prepare([Example(gray, CAPTION)])
    rgb = captioner.prepare([Example(gray.convert("RGB"), CAPTION)])
    assert batch.inputs.shape[1] == 3 and torch.equal(batch.inputs, rgb.inputs)
    e = captioner.explain(batch, captioner.targets(batch))
    assert e.maps.shape == (1, len(captioner.words(CAPTION)), *FAMILIES[name][1])
    assert torch.isfinite(e.maps).all()
    assert torch.allclose(e.scores, captioner.explain(rgb, captioner.targets(rgb)).scores,
                          atol=1e-6)


def test_blip_decoder_layers_are_not_explained(captioners):
    captioner = captioners["blip"]
    with pytest.raises(InputError) as raised:
        captioner.check_layer("text_decoder.bert.encoder.layer.0")
    message = str(raised.value)
    assert "\n" not in message and "text_decoder.bert.encoder.layer.0" in message
    for block in ("vision_model.encoder.layers.0", "vision_model.encoder.layers.1"):
        assert message.count(block) == 1, message
    captioner.check_layer("vision_model.encoder.layers.0")  # a vision layer is fine


def test_unknown_and_empty_captions_are_errors(captioners, image):
    captioner = captioners["blip"]
    with pytest.raises(InputError, match="'circel'.*circle"):
        captioner.words("a red circel")
    with pytest.raises(InputError, match="no words"):
        captioner.words("   ")
    batch = captioner.prepare([Example(image, "a red circle")])
    with pytest.raises(InputError, match="position 9"):
        captioner.targets(batch, [9])
    with pytest.raises(InputError, match="'square' is not in the caption"):
        captioner.targets(batch, ["square"])


def test_caption_cli_json(captioners, directories, image, tmp_path, capsys):
    file = tmp_path / "scene.png"
    image.save(file)
    out = tmp_path / "out"
    code = main(["caption", str(file), "--model", f"hf:{directories['vit-gpt2']}", "--json",
                 "--out", str(out)])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(summary) == {"command", "image", "generated", "caption", "layer", "words", "files"}
    captioner = captioners["vit-gpt2"]
    assert summary["layer"] == captioner.layer == "encoder.layers.1" and summary["words"]
    batch = captioner.prepare([Example(load_image(file))])
    ((generated,),) = captioner.predict(batch)
    targets = captioner.targets(batch)
    e = captioner.explain(batch, targets)
    assert summary["command"] == "caption" and summary["image"] == "scene"
    assert summary["generated"] == summary["caption"] == generated.name
    assert [w["word"] for w in summary["words"]] == list(generated.words)
    assert [w["position"] for w in summary["words"]] == list(range(len(generated.words)))
    peaks = e.peaks((60, 90))[0].tolist()
    for t, entry in enumerate(summary["words"]):
        assert set(entry) == {"position", "word", "files", "log_prob", "peaks", "peak"}
        assert entry["log_prob"] == pytest.approx(float(e.scores[0, t]), abs=1e-5)
        assert 0 <= entry["peak"][0] < 90 and 0 <= entry["peak"][1] < 60
        assert entry["peak"] == entry["peaks"]["gradcam"] == peaks[t]
        assert entry["files"] == summary["files"]
    assert len(summary["files"]) == 1 and all(Path(f).is_file() for f in summary["files"])


def test_caption_cli_given_caption_words_and_methods(captioners, directories, image, tmp_path,
                                                     capsys):
    file = tmp_path / "scene.png"
    image.save(file)
    code = main(["caption", str(file), "--model", f"hf:{directories['blip']}", "--caption",
                 CAPTION, "--words", "circles", "square", "--whole", "--method",
                 "gradcam,guided-gradcam", "--json", "--out", str(tmp_path / "out")])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["caption"] == CAPTION
    assert [w["word"] for w in summary["words"]] == ["circles", "square", "<caption>"]
    words = CAPTION.split()
    assert [w["position"] for w in summary["words"]] == [words.index("circles"),
                                                         words.index("square"), len(words)]
    assert set(summary["words"][0]["peaks"]) == {"gradcam", "guided-gradcam"}
    captioner = captioners["blip"]
    batch = captioner.prepare([Example(load_image(file), CAPTION)])
    e = captioner.explain(batch, captioner.targets(batch, ["circles", "square", WHOLE_CAPTION]))
    assert [w["log_prob"] for w in summary["words"]] == pytest.approx(e.scores[0].tolist(),
                                                                       abs=1e-5)
    assert summary["generated"] == captioner.predict(batch)[0][0].name
    assert len(summary["files"]) == 2 and all(Path(f).is_file() for f in summary["files"])


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
