"""VQA adapters for transformers models (ViLT, BLIP) and `vlx vqa --model hf:PATH`."""

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
from vlx.layers import TokenGrid
from vlx.methods import explain
from vlx.tasks.hf_loading import load_hf_vqa
from vlx.tasks.hf_vqa import ViltPatchOrder

QUESTION = "what color is the circle?"
FAMILIES = {"vilt": (hf_tiny.vilt, (4, 6)), "blip": (hf_tiny.blip_vqa, (4, 4))}


@pytest.fixture(scope="module")
def directories(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_vqa")
    return {name: build(root / name) for name, (build, _) in FAMILIES.items()}


@pytest.fixture(scope="module")
def models(directories):
    return {name: load_hf_vqa(path) for name, path in directories.items()}


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.effect_noise((90, 60), 60).convert("RGB")


@pytest.mark.parametrize("name", FAMILIES)
def test_answers_at_once_equal_one_at_a_time(models, image, name):
    vqa = models[name]
    inputs = vqa.prepare([image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
    questions = vqa.encode(QUESTION, count=2)
    answers = [vqa.answer_index(a) for a in ("red", "blue", "yes")]
    together = vqa.explain(inputs, questions, [answers, answers[::-1]])
    assert together.maps.shape == (2, 3, *FAMILIES[name][1])
    assert together.targets == [answers, answers[::-1]]
    for t in range(3):
        alone = vqa.explain(inputs, questions, [[answers[t]], [answers[::-1][t]]])
        scale = together.maps[:, t].abs().max()
        assert (alone.maps[:, 0] - together.maps[:, t]).abs().max() <= 1e-5 * scale
        assert torch.allclose(alone.scores[:, 0], together.scores[:, t], atol=1e-5)


def test_vilt_maps_do_not_change_with_the_patch_shuffle(models, image):
    vqa = models["vilt"]
    inputs, questions = vqa.prepare([image]), vqa.encode(QUESTION)
    mask = vqa.attention_mask(questions)
    orders, restored, shuffled = [], [], []
    for _ in range(2):
        with ViltPatchOrder(vqa.model) as order:
            e = explain(vqa.model, questions, mask, None, inputs, method="gradcam", targets=[[2, 3]],
                        layer=vqa.layer, to_grid=order, input_index=3)
            orders.append(order.index)
        restored.append(e.maps)
        shuffled.append(vqa.explain(inputs, questions, [[2, 3]]).maps)
    assert not torch.equal(orders[0], orders[1])  # ViLT did shuffle its patches
    scale = restored[0].abs().max()
    assert (restored[0] - restored[1]).abs().max() <= 1e-6 * scale
    assert (shuffled[0] - restored[0]).abs().max() <= 1e-6 * scale
    naive = TokenGrid(prefix=questions.shape[1] + 1, grid=(4, 6))
    unrestored = [
        explain(vqa.model, questions, mask, None, inputs, method="gradcam", targets=[[2, 3]],
                layer=vqa.layer, to_grid=naive, input_index=3).maps
        for _ in range(2)
    ]
    assert (unrestored[0] - unrestored[1]).abs().max() > 1e-3 * scale


@pytest.mark.parametrize(
    ("name", "layer", "conv", "zeroed"),
    [
        ("vilt", "vilt.encoder.layer.0.layernorm_before",
         "vilt.embeddings.patch_embeddings.projection",
         ["vilt.embeddings.position_embeddings", "vilt.embeddings.token_type_embeddings.weight"]),
        ("blip", "vision_model.encoder.layers.0.layer_norm1",
         "vision_model.embeddings.patch_embedding", ["vision_model.embeddings.position_embedding"]),
    ],
)
def test_planted_quadrant_is_found(directories, image, name, layer, conv, zeroed):
    vqa = load_hf_vqa(directories[name])
    handle = hf_tiny.plant_bottom_right(vqa.model, conv, zeroed)
    try:
        inputs, questions = vqa.prepare([image]), vqa.encode(QUESTION)
        answers = [[vqa.answer_index(a) for a in ("red", "blue", "yes", "no")]]
        maps = torch.cat([vqa.explain(inputs, questions, answers, m, layer).maps
                          for m in ("gradcam", "counterfactual")], dim=1)
    finally:
        handle.remove()
    assert hf_tiny.outside_bottom_right(maps).abs().max() == 0
    h, w = maps.shape[-2:]
    peaks = [divmod(int(m.argmax()), w) for m in maps[0] if m.max() > 0]
    assert len(peaks) >= 4 and all(y >= h // 2 and x >= w // 2 for y, x in peaks)


def test_vilt_scores_are_its_logits(models, image):
    vqa = models["vilt"]
    inputs, questions = vqa.prepare([image]), vqa.encode(QUESTION)
    with torch.no_grad():
        logits = vqa.model(input_ids=questions, pixel_values=inputs).logits
    assert vqa.answers == hf_tiny.LABELS
    e = vqa.explain(inputs, questions, [[4, 0]])
    assert torch.allclose(e.scores, logits[:, [4, 0]], atol=1e-5)
    assert torch.allclose(vqa.probabilities(inputs, questions), logits.sigmoid(), atol=1e-5)
    top = vqa.predict(inputs, questions, top_k=2)[0]
    assert top[0].index == int(logits.argmax()) and top[0].probability >= top[1].probability


def test_blip_answer_score_is_the_models_own_loss(models, image):
    """Scored through its parts, an answer's score is minus BLIP's own training loss (mean
    cross-entropy over the answer's tokens and [SEP]) times that token count."""
    vqa = models["blip"]
    inputs, questions = vqa.prepare([image]), vqa.encode(QUESTION)
    answer = "blue square"
    labels = vqa.tokenizer(answer, return_tensors="pt")["input_ids"]  # [CLS] blue square [SEP]
    labels[:, 0] = vqa.model.config.text_config.bos_token_id
    with torch.no_grad():
        loss = vqa.model(input_ids=questions, pixel_values=inputs, labels=labels).loss
    e = vqa.explain(inputs, questions, [[vqa.answer_index(answer)]])
    assert torch.allclose(e.scores[0, 0], -loss * (labels.shape[1] - 1), atol=1e-4)


def test_blip_answers_grow_with_generated_and_asked_answers(models, image):
    vqa = models["blip"]
    inputs, questions = vqa.prepare([image]), vqa.encode(QUESTION)
    top = vqa.predict(inputs, questions, top_k=2)[0]
    assert top and all(vqa.answers[a.index] == a.text for a in top)
    assert top[0].score >= top[-1].score
    index = vqa.answer_index("green star")
    assert vqa.answers[index] == "green star" and vqa.answer_index(" green  star ") == index
    probabilities = vqa.probabilities(inputs, questions)
    assert probabilities.shape == (1, len(vqa.answers)) and (probabilities <= 1).all()


def test_explaining_leaves_nothing_behind(models, image, watch):
    vqa = models["vilt"]
    inputs, questions = vqa.prepare([image]), vqa.encode(QUESTION)
    guard = watch(vqa.model, inputs, questions)
    for method in ("gradcam", "guided-gradcam"):
        vqa.explain(inputs, questions, [[0, 1]], method)
    guard.check()
    with pytest.raises(InputError):
        vqa.explain(inputs, questions, [[0, 99]])
    guard.check()


def test_bad_questions_and_answers_are_clear_errors(models):
    vilt, blip = models["vilt"], models["blip"]
    with pytest.raises(InputError, match="'purple'.*closest"):
        vilt.answer_index("purple")
    assert vilt.answer_index(" Blue ") == 3
    with pytest.raises(InputError, match="'purple'"):
        blip.answer_index("purple")
    with pytest.raises(InputError, match="no words"):
        blip.encode("  ")
    with pytest.raises(InputError, match="no word"):
        vilt.encode("zebra giraffe")
    assert vilt.unknown_words("what colour is the circle?") == ["colour"]


@pytest.mark.parametrize("name", FAMILIES)
def test_vqa_cli_json(directories, image, tmp_path, capsys, name):
    file = tmp_path / "scene.png"
    image.save(file)
    code = main(["vqa", str(file), QUESTION, "--model", f"hf:{directories[name]}",
                 "--answers", "red", "blue", "--method", "gradcam,counterfactual", "--json",
                 "--out", str(tmp_path / "out")])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(summary) == {"command", "image", "question", "unknown_words", "model", "layer",
                            "answer", "top", "answers", "files"}
    texts = [a["answer"] for a in summary["answers"]]
    assert texts[0] == summary["answer"] and {"red", "blue"} <= set(texts)
    for entry in summary["answers"]:
        assert set(entry) == {"answer", "index", "forced", "probability", "peaks", "files",
                              "score", "peak"}
        assert set(entry["peaks"]) == {"gradcam", "counterfactual"}
        assert 0 <= entry["peak"][0] < 90 and 0 <= entry["peak"][1] < 60
    assert all(Path(f).is_file() for f in summary["files"])


def test_missing_files_and_wrong_models_are_clear_errors(directories, tmp_path, capsys):
    with pytest.raises(InputError, match="does not exist"):
        load_hf_vqa(tmp_path / "nowhere")
    copy = Path(shutil.copytree(directories["vilt"], tmp_path / "copy"))
    (copy / "processor_config.json").unlink()
    with pytest.raises(InputError, match="preprocessor_config.json"):
        load_hf_vqa(copy)
    copy = Path(shutil.copytree(directories["blip"], tmp_path / "copy2"))
    (copy / "tokenizer.json").unlink()
    with pytest.raises(InputError, match="tokenizer"):
        load_hf_vqa(copy)
    captioner = hf_tiny.blip_captioner(tmp_path / "captioner")
    with pytest.raises(InputError, match="BlipForConditionalGeneration.*ViltForQuestionAnswering"):
        load_hf_vqa(captioner)
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    assert main(["vqa", str(image), QUESTION, "--model", f"hf:{tmp_path / 'nowhere'}",
                 "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
