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
from vlx.images import load_image
from vlx.layers import TokenGrid
from vlx.methods import CAM_FAMILY, explain
from vlx.task import Example
from vlx.tasks.hf_loading import load_hf_vqa
from vlx.tasks.hf_vqa import ViltPatchOrder

QUESTION = "what color is the circle?"
FAMILIES = {"vilt": (hf_tiny.vilt, (4, 6)), "blip": (hf_tiny.blip_vqa, (4, 4))}

PLANTED_METHODS = [("gradcam", "counterfactual"), *((m,) for m in CAM_FAMILY if m != "gradcam")]
"""Every CAM-family map is a combination of the layer's activation, zero outside the quadrant."""


@pytest.fixture(scope="module")
def directories(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_vqa")
    return {name: build(root / name) for name, (build, _) in FAMILIES.items()}


@pytest.fixture(scope="module")
def models(directories):
    return {name: load_hf_vqa(path) for name, path in directories.items()}


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return hf_tiny.noise_image()


def explained_score(vqa, batch, answer: str) -> float:
    """The score ``explain`` gives ``answer`` for example 0, asked alone."""
    one = batch.select(0) if len(batch) > 1 else batch
    return float(vqa.explain(one, vqa.targets(one, [answer])).scores[0, 0])


@pytest.mark.parametrize("name", FAMILIES)
def test_answers_at_once_equal_one_at_a_time(models, image, name):
    vqa = models[name]
    batch = vqa.prepare([Example(image, QUESTION),
                         Example(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), QUESTION)])
    answers = ["red", "blue", "yes"]
    targets = vqa.targets(batch, [answers, answers[::-1]])
    together = vqa.explain(batch, targets)
    assert together.maps.shape == (2, 3, *FAMILIES[name][1])
    assert together.targets == [answers, answers[::-1]]
    if name == "vilt":
        assert [[t.id for t in row] for row in targets.rows] == [[2, 3, 0], [0, 3, 2]]
    for t in range(3):
        alone = vqa.explain(batch, vqa.targets(batch, [[answers[t]], [answers[::-1][t]]]))
        scale = together.maps[:, t].abs().max()
        assert scale > 0
        assert (alone.maps[:, 0] - together.maps[:, t]).abs().max() <= 1e-5 * scale
        assert torch.allclose(alone.scores[:, 0], together.scores[:, t], atol=1e-5)
    # each row is its own image's: "red" is explained otherwise on the flipped image
    assert not torch.allclose(together.maps[0, 0], together.maps[1, 2])


def test_vilt_maps_do_not_change_with_the_patch_shuffle(models, image):
    vqa = models["vilt"]
    batch = vqa.prepare([Example(image, QUESTION)])
    inputs, questions = batch.inputs, batch.state["questions"]
    mask = vqa.attention_mask(questions)
    orders, restored, shuffled = [], [], []
    for _ in range(2):
        with ViltPatchOrder(vqa.model) as order:
            e = explain(vqa.model, questions, mask, None, inputs, method="gradcam", targets=[[2, 3]],
                        layer=vqa.layer, to_grid=order, input_index=3)
            orders.append(order.index)
        restored.append(e.maps)
        shuffled.append(vqa.explain(batch, vqa.targets(batch, [[2, 3]])).maps)
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
@pytest.mark.parametrize("methods", PLANTED_METHODS, ids="+".join)
def test_planted_quadrant_is_found(directories, image, name, layer, conv, zeroed, methods):
    vqa = load_hf_vqa(directories[name])
    handle = hf_tiny.plant_bottom_right(vqa.model, conv, zeroed)
    try:
        batch = vqa.prepare([Example(image, QUESTION)])
        targets = vqa.targets(batch, [["red", "blue", "yes", "no"]])
        maps = torch.cat([vqa.explain(batch, targets, m, layer).maps
                          for m in methods], dim=1)
    finally:
        handle.remove()
    assert hf_tiny.outside_bottom_right(maps).abs().max() == 0
    h, w = maps.shape[-2:]
    # A gradient-free map of this random model can be empty (no channel weighted up): each map
    # that is not peaks in the quadrant.
    peaks = [divmod(int(m.argmax()), w) for m in maps[0] if m.max() > 0]
    assert peaks and all(y >= h // 2 and x >= w // 2 for y, x in peaks)


def test_vilt_scores_are_its_logits(models, image):
    vqa = models["vilt"]
    batch = vqa.prepare([Example(image, QUESTION)])
    questions = batch.state["questions"]
    assert torch.equal(questions, vqa.tokenizer([QUESTION], return_tensors="pt")["input_ids"])
    with torch.no_grad():
        logits = vqa.model(input_ids=questions, pixel_values=batch.inputs).logits
    assert vqa.answers == hf_tiny.LABELS
    assert [vqa.answer_index(a) for a in hf_tiny.LABELS] == list(range(len(hf_tiny.LABELS)))
    e = vqa.explain(batch, vqa.targets(batch, [[4, 0]]))
    assert e.targets == [["green", "yes"]]
    assert torch.allclose(e.scores, logits[:, [4, 0]], atol=1e-5)
    every = vqa.targets(batch, [list(range(len(vqa.answers)))])
    assert torch.allclose(vqa.probabilities(batch, every), logits.sigmoid(), atol=1e-5)
    top = vqa.predict(batch, top_k=2)[0]
    assert len(top) == 2
    assert top[0].index == int(logits.argmax()) and top[0].probability >= top[1].probability
    for p in top:
        assert p.name == vqa.answers[p.index]
        assert p.score == pytest.approx(float(logits[0, p.index]), abs=1e-5)
        assert p.probability == pytest.approx(float(logits[0, p.index].sigmoid()), abs=1e-6)
    # requested=None explains the predicted answer
    predicted = vqa.targets(batch)
    assert [[t.id for t in row] for row in predicted.rows] == [[top[0].index]]


def test_blip_answer_score_is_the_models_own_loss(models, image):
    """Scored through its parts, an answer's score is minus BLIP's own training loss (mean
    cross-entropy over the answer's tokens and [SEP]) times that token count."""
    vqa = models["blip"]
    batch = vqa.prepare([Example(image, QUESTION)])
    questions = batch.state["questions"]
    answer = "blue square"
    labels = vqa.tokenizer(answer, return_tensors="pt")["input_ids"]  # [CLS] blue square [SEP]
    labels[:, 0] = vqa.model.config.text_config.bos_token_id
    with torch.no_grad():
        loss = vqa.model(input_ids=questions, pixel_values=batch.inputs, labels=labels).loss
    e = vqa.explain(batch, vqa.targets(batch, [[answer]]))
    assert e.targets == [[answer]]
    assert torch.allclose(e.scores[0, 0], -loss * (labels.shape[1] - 1), atol=1e-4)


def test_blip_scores_do_not_depend_on_what_else_was_asked(models, image):
    """BLIP numbers a request's answers within that request alone: an answer's score is the
    same asked alone, with others, after others, in any spacing, in a batch."""
    vqa = models["blip"]
    batch = vqa.prepare([Example(image, QUESTION)])
    alone = explained_score(vqa, batch, "green star")
    vqa.explain(batch, vqa.targets(batch, [["blue square", "yes", "red"]]))  # asked before
    assert explained_score(vqa, batch, "green star") == pytest.approx(alone, abs=1e-5)
    targets = vqa.targets(batch, [["red", "green star", "no"]])
    assert targets.context[0] == ["red", "green star", "no"]
    assert all(targets.context[0][t.id] == t.name for t in targets.rows[0])
    e = vqa.explain(batch, targets)
    assert float(e.scores[0, 1]) == pytest.approx(alone, abs=1e-5)
    assert vqa.answer_text(" green  star ") == "green star"
    assert explained_score(vqa, batch, " green  star ") == pytest.approx(alone, abs=1e-5)
    probabilities = vqa.probabilities(batch, targets)
    assert torch.allclose(probabilities, e.scores.exp(), atol=1e-6) and (probabilities <= 1).all()
    # in a batch whose other example asks other answers, first or not
    two = vqa.prepare([Example(image, QUESTION), Example(image.rotate(180), "is there a star?")])
    rows = vqa.targets(two, [["green star"], ["yes", "no", "green star", "red circle"]])
    assert rows.context[0] == rows.context[1]
    for n, row in enumerate(rows.rows):
        assert all(rows.context[n][t.id] == t.name for t in row)
    scores = vqa.explain(two, rows).scores
    assert float(scores[0, 0]) == pytest.approx(alone, abs=1e-5)
    assert float(scores[1, 2]) == pytest.approx(explained_score(vqa, two.select(1), "green star"),
                                                abs=1e-5)
    assert float(scores[1, 2]) != pytest.approx(alone, abs=1e-5)  # its own image and question


def test_blip_predictions_are_ranked_by_the_explained_score(models, image):
    vqa = models["blip"]
    batch = vqa.prepare([Example(image, QUESTION)])
    top = vqa.predict(batch, top_k=3)[0]
    assert top and len({p.name for p in top}) == len(top)
    for p in top:
        assert p.score == pytest.approx(explained_score(vqa, batch, p.name), abs=1e-4)
        assert p.probability == pytest.approx(float(torch.tensor(p.score).exp()), rel=1e-5)
    assert all(top[0].score >= p.score for p in top)
    assert [p.score for p in top] == sorted((p.score for p in top), reverse=True)


def test_blip_predicted_answer_does_not_depend_on_top_k(models, image):
    """The model's answer is one answer: asking for more alternatives (the CLI asks for 3,
    ``targets(batch)`` and ``correct`` for 1) must not change which answer is first, and the
    first is the best-scored of all those predicted."""
    vqa = models["blip"]
    batch = vqa.prepare([Example(image, QUESTION)])
    ranked = {k: vqa.predict(batch, top_k=k)[0] for k in (1, 3)}
    best = max((p for row in ranked.values() for p in row), key=lambda p: p.score)
    assert ranked[1][0].name == ranked[3][0].name == best.name, {
        k: [(p.name, round(p.score, 3)) for p in row] for k, row in ranked.items()}
    # requested=None explains the predicted answer
    predicted = vqa.targets(batch)
    assert [t.name for t in predicted.rows[0]] == [best.name]
    assert float(vqa.explain(batch, predicted).scores[0, 0]) == pytest.approx(best.score,
                                                                              abs=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_grayscale_images_are_prepared_as_rgb(models, image, name):
    vqa = models[name]
    gray = image.convert("L")
    batch = vqa.prepare([Example(gray, QUESTION)])
    rgb = vqa.prepare([Example(gray.convert("RGB"), QUESTION)])
    assert batch.inputs.shape[1] == 3 and torch.equal(batch.inputs, rgb.inputs)
    e = vqa.explain(batch, vqa.targets(batch, [["red", "blue"]]))
    assert e.maps.shape == (1, 2, *FAMILIES[name][1]) and torch.isfinite(e.maps).all()
    again = vqa.explain(rgb, vqa.targets(rgb, [["red", "blue"]]))
    assert torch.allclose(e.scores, again.scores, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "layer", "blocks"),
    [("vilt", "vilt.pooler", ["vilt.encoder.layer.0", "vilt.encoder.layer.1"]),
     ("blip", "text_decoder.bert.encoder.layer.0",
      ["vision_model.encoder.layers.0", "vision_model.encoder.layers.1"])],
)
def test_layers_outside_the_vision_encoder_are_errors(models, name, layer, blocks):
    vqa = models[name]
    with pytest.raises(InputError) as raised:
        vqa.check_layer(layer)
    message = str(raised.value)
    assert "\n" not in message and repr(layer) in message
    for block in blocks:
        assert message.count(block) == 1, message
    vqa.check_layer(vqa.layer)  # the default layer is fine


def test_vilt_last_block_output_gets_no_gradient(models, image):
    """ViLT's head reads the first token only: the last block's output (the tiny model has
    two blocks) gets no gradient on its patch tokens, and every map is zero, with a warning."""
    vqa = models["vilt"]
    batch = vqa.prepare([Example(image, QUESTION)])
    targets = vqa.targets(batch, [["red", "blue"]])
    with pytest.warns(UserWarning, match="no gradient reaches"):
        e = vqa.explain(batch, targets, layer="vilt.encoder.layer.1")
    assert e.layer == "vilt.encoder.layer.1" and e.maps.shape == (1, 2, 4, 6)
    assert torch.equal(e.maps, torch.zeros_like(e.maps))
    assert vqa.explain(batch, targets).maps.abs().max() > 0  # the default layer's are not


def test_explaining_leaves_nothing_behind(models, image, watch):
    vqa = models["vilt"]
    batch = vqa.prepare([Example(image, QUESTION)])
    guard = watch(vqa.model, batch.inputs, batch.state["questions"])
    for method in ("gradcam", "guided-gradcam"):
        vqa.explain(batch, vqa.targets(batch, [[0, 1]]), method)
    guard.check()
    with pytest.raises(InputError, match="99"):
        vqa.explain(batch, vqa.targets(batch, [[0, 99]]))
    guard.check()


def test_bad_questions_and_answers_are_clear_errors(models, image):
    vilt, blip = models["vilt"], models["blip"]
    with pytest.raises(InputError, match="'purple'.*closest"):
        vilt.answer_index("purple")
    assert vilt.answer_index(" Blue ") == 3
    with pytest.raises(InputError, match="'purple'"):
        blip.answer_text("purple")
    batch = blip.prepare([Example(image, QUESTION)])
    with pytest.raises(InputError, match="'purple'"):
        blip.targets(batch, [["purple"]])
    with pytest.raises(InputError, match="no words"):
        blip.prepare([Example(image, "  ")])
    with pytest.raises(InputError, match="no word"):
        vilt.prepare([Example(image, "zebra giraffe")])
    with pytest.raises(InputError, match="needs a question"):
        vilt.prepare([Example(image)])
    assert vilt.unknown_words("what colour is the circle?") == ["colour"]


@pytest.mark.parametrize("name", FAMILIES)
def test_vqa_cli_json(models, directories, image, tmp_path, capsys, name):
    file = tmp_path / "scene.png"
    image.save(file)
    code = main(["vqa", str(file), QUESTION, "--model", f"hf:{directories[name]}",
                 "--answers", "red", "blue", "--method", "gradcam,counterfactual", "--json",
                 "--out", str(tmp_path / "out")])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(summary) == {"command", "image", "question", "unknown_words", "model", "layer",
                            "answer", "top", "answers", "files"}
    vqa = models[name]
    batch = vqa.prepare([Example(load_image(file), QUESTION)])
    top = vqa.predict(batch, 3)[0]
    expected = list(dict.fromkeys([top[0].name, "red", "blue"]))
    targets = vqa.targets(batch, [expected])
    e = vqa.explain(batch, targets)
    probabilities = vqa.probabilities(batch, targets)[0].tolist()
    assert summary["command"] == "vqa" and summary["image"] == "scene"
    assert summary["question"] == QUESTION and summary["unknown_words"] == []
    assert summary["model"] == f"hf:{directories[name]}" and summary["layer"] == vqa.layer
    assert summary["answer"] == top[0].name
    assert [a["answer"] for a in summary["top"]] == [p.name for p in top]
    assert [a["probability"] for a in summary["top"]] == pytest.approx(
        [p.probability for p in top], abs=1e-5)
    texts = [a["answer"] for a in summary["answers"]]
    assert texts == expected and texts[0] == summary["answer"] and {"red", "blue"} <= set(texts)
    peaks = e.peaks((60, 90))[0].tolist()
    for t, entry in enumerate(summary["answers"]):
        assert set(entry) == {"answer", "index", "forced", "probability", "peaks", "files",
                              "score", "peak"}
        assert entry["index"] == targets.rows[0][t].id
        if name == "vilt":
            assert entry["index"] == vqa.answer_index(entry["answer"])
        assert entry["forced"] == (entry["answer"] in ("red", "blue"))
        assert entry["score"] == pytest.approx(float(e.scores[0, t]), abs=1e-4)
        assert entry["probability"] == pytest.approx(probabilities[t], abs=1e-5)
        assert set(entry["peaks"]) == {"gradcam", "counterfactual"}
        assert 0 <= entry["peak"][0] < 90 and 0 <= entry["peak"][1] < 60
        assert entry["peak"] == entry["peaks"]["gradcam"] == peaks[t]
        assert entry["files"] == summary["files"]
    assert len(summary["files"]) == 2 and all(Path(f).is_file() for f in summary["files"])


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
