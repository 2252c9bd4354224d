"""The tiny VLM fixtures of tests/vlm_tiny.py: each folder loads back offline with the Auto
classes, its prompt holds as many image tokens as the model has image features, it generates,
gradients reach the vision tower, and the tiling families really tile."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import vlm_tiny
from hf_tiny import noise_image
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

FAMILIES = list(vlm_tiny.VLM_FAMILIES)
CLASSES = {
    "llava": "LlavaForConditionalGeneration",
    "llava_next": "LlavaNextForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "paligemma": "PaliGemmaForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration",
}
IMAGE_KEYS = ("pixel_values", "image_sizes", "image_grid_thw", "pixel_attention_mask")


@pytest.fixture(scope="module")
def directories(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vlm_tiny")
    return {name: build(root / name) for name, build in vlm_tiny.VLM_FAMILIES.items()}


@pytest.fixture(scope="module")
def loaded(directories) -> dict[str, tuple]:
    return {
        name: (AutoProcessor.from_pretrained(path, local_files_only=True),
               AutoModelForImageTextToText.from_pretrained(path, local_files_only=True).eval())
        for name, path in directories.items()
    }


def _inputs(processor, image=None):
    image = noise_image() if image is None else image
    return processor(images=image, text=vlm_tiny.prompt(processor), return_tensors="pt")


def _feature_rows(model, inputs) -> int:
    """How many LM positions the image features fill (what the image tokens stand for)."""
    with torch.no_grad():
        features = model.get_image_features(
            **{k: inputs[k] for k in IMAGE_KEYS if k in inputs}).pooler_output
    if isinstance(features, torch.Tensor):
        features = [features]
    return sum(f.reshape(-1, f.shape[-1]).shape[0] for f in features)


@pytest.mark.parametrize("family", FAMILIES)
def test_folder_loads_back_offline(family, directories, loaded):
    processor, model = loaded[family]
    assert type(model).__name__ == CLASSES[family]
    files = {p.name for p in directories[family].iterdir()}
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json"} <= files
    assert ("chat_template.jinja" in files) == (family != "paligemma")
    assert processor.image_token_id == model.config.image_token_id
    assert len(processor.tokenizer) == model.config.get_text_config().vocab_size


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "paligemma"])
def test_chat_template_places_one_image(family, loaded):
    processor, _ = loaded[family]
    text = processor.apply_chat_template(vlm_tiny.user_turn(), add_generation_prompt=True)
    assert text.count(processor.image_token) == 1
    assert vlm_tiny.QUESTION in text


@pytest.mark.parametrize("family", FAMILIES)
def test_image_tokens_match_the_image_features(family, loaded):
    processor, model = loaded[family]
    inputs = _inputs(processor)
    n_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert n_tokens > 1
    assert n_tokens == _feature_rows(model, inputs)


@pytest.mark.parametrize("family", FAMILIES)
def test_generates_new_tokens_without_placeholders(family, loaded):
    processor, model = loaded[family]
    inputs = _inputs(processor)
    prompt_length = inputs["input_ids"].shape[1]
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=5)
    new = output[0, prompt_length:]
    assert 3 <= len(new) <= 5
    assert model.config.image_token_id not in new.tolist()
    assert processor.decode(new, skip_special_tokens=True).strip()


@pytest.mark.parametrize("family", FAMILIES)
def test_a_pass_over_prompt_and_answer_gives_the_answer(family, loaded):
    """What an explainer does: one forward over prompt + generated answer (the answer's
    positions extend the mask and the token-type inputs) predicts the same greedy tokens."""
    processor, model = loaded[family]
    inputs = _inputs(processor)
    prompt_length = inputs["input_ids"].shape[1]
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=4)
    answer = output[:, prompt_length:]
    full = {k: v for k, v in inputs.items() if k != "labels"}
    full["input_ids"], full["attention_mask"] = output, torch.ones_like(output)
    if "token_type_ids" in full:  # PaliGemma: 0 = prefix (bidirectional), 1 = answer
        full["token_type_ids"] = torch.cat([inputs["token_type_ids"], torch.ones_like(answer)], 1)
    if "mm_token_type_ids" in full:  # Qwen2-VL's M-RoPE: 0 = text
        full["mm_token_type_ids"] = torch.cat(
            [inputs["mm_token_type_ids"], torch.zeros_like(answer)], 1)
    with torch.no_grad():
        logits = model(**full).logits[0, prompt_length - 1 : -1]
    logits[:, model.generation_config.suppress_tokens] = -torch.inf
    assert logits.argmax(-1).tolist() == answer[0].tolist()


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_backward_reaches_the_patch_embedding(family, loaded):
    processor, model = loaded[family]
    inputs = _inputs(processor)
    model.zero_grad()
    model(**inputs).logits[0, -1].max().backward()
    patch = next(p for n, p in model.named_parameters() if "patch_embed" in n)
    assert patch.grad is not None and patch.grad.abs().sum() > 0
    model.zero_grad()


@pytest.mark.parametrize("family", FAMILIES)
def test_the_image_changes_the_features(family, loaded):
    processor, model = loaded[family]
    first, second = (_inputs(processor, noise_image(seed=s)) for s in (0, 1))
    with torch.no_grad():
        a, b = (model.get_image_features(**{k: x[k] for k in IMAGE_KEYS if k in x}).pooler_output
                for x in (first, second))
    a, b = (torch.cat(list(f)) if isinstance(f, (list, tuple)) else f for f in (a, b))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("family", FAMILIES)
def test_weights_are_seeded(family, directories, tmp_path):
    again = vlm_tiny.VLM_FAMILIES[family](tmp_path / family)
    first, second = (load_file(d / "model.safetensors") for d in (directories[family], again))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_llava_next_tiles_a_non_square_image(loaded):
    processor, _ = loaded["llava_next"]
    inputs = _inputs(processor, noise_image(90, 60))
    # The base image, then the tiles of the 64 x 64 grid resolution: 1 + 2 x 2.
    assert inputs["pixel_values"].shape == (1, 5, 3, 32, 32)
    assert inputs["image_sizes"].tolist() == [[60, 90]]


def test_idefics3_splits_a_non_square_image(loaded):
    processor, _ = loaded["idefics3"]
    inputs = _inputs(processor, noise_image(90, 40))
    # 1 x 2 tiles then the global image, each 4 x 4 = 16 image tokens after the pixel shuffle.
    assert inputs["pixel_values"].shape == (1, 3, 3, 32, 32)
    text = processor.decode(inputs["input_ids"][0])
    assert "<row_1_col_2>" in text and "<row_2_col_1>" not in text and "<global-img>" in text


def test_qwen2_vl_grid_follows_the_image_size(loaded):
    processor, model = loaded["qwen2_vl"]
    wide, square = (_inputs(processor, noise_image(w, h)) for w, h in ((90, 60), (60, 60)))
    assert wide["image_grid_thw"].tolist() != square["image_grid_thw"].tolist()
    for inputs in (wide, square):
        t, h, w = inputs["image_grid_thw"][0].tolist()
        assert inputs["pixel_values"].shape[0] == t * h * w
        assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == t * h * w // 4
