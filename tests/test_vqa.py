"""The VQA adapter on the shipped models: forced answers, phrasing, errors, CLI, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from vlx.cli import main
from vlx.data.shapes import SPLITS, ShapesWorld
from vlx.errors import InputError
from vlx.models.vqa_training import vqa_accuracy
from vlx.tasks.vqa import VisualQA, vqa_faithfulness, vqa_pointing

TEST = SPLITS["test"][0]


@pytest.fixture(scope="module")
def world() -> ShapesWorld:
    return ShapesWorld(seed=0)


@pytest.fixture(scope="module", params=["coattention", "lstm-cnn"])
def vqa(request) -> VisualQA:
    return VisualQA.load(request.param)


@pytest.fixture(scope="module")
def coattention() -> VisualQA:
    return VisualQA.load("coattention")


def _colour_question(world: ShapesWorld, offset: int = 0):
    for index in range(TEST + offset, TEST + offset + 50):
        scene = world.scene(index)
        for question in scene.questions():
            if question.kind == "colour":
                return scene, question
    raise AssertionError("no colour question in 50 scenes")


def test_forced_answers_batched_equal_one_at_a_time(vqa, world):
    scene, question = _colour_question(world)
    inputs = vqa.prepare([Image.fromarray(scene.image)])
    ids = vqa.encode(question.text)
    answers = [vqa.answer_index(a) for a in ("red", "yellow", "blue", "circle")]
    batched = vqa.explain(inputs, ids, [answers])
    assert batched.maps.shape[:2] == (1, 4)
    for t, answer in enumerate(answers):
        single = vqa.explain(inputs, ids, [[answer]])
        assert torch.allclose(single.maps[:, 0], batched.maps[:, t], atol=1e-6)
        assert torch.allclose(single.scores[:, 0], batched.scores[:, t], atol=1e-5)


def test_everyday_phrasing_reads_the_same(coattention):
    plain = coattention.encode("what color is the circle?")
    for variant in ("What COLOUR is the circle", "what colour is the circle ?!", "  What color is the Circle?"):
        assert torch.equal(coattention.encode(variant), plain)


def test_bad_questions_and_answers_are_clear_errors(coattention):
    with pytest.raises(InputError, match="no words"):
        coattention.encode("  ?? ")
    with pytest.raises(InputError, match="no word of"):
        coattention.encode("quelle heure est-il")
    with pytest.raises(InputError, match="'reed'.*red"):
        coattention.answer_index("reed")


def test_shipped_models_answer_held_out_questions(world):
    coattention, lstm_cnn = VisualQA.load("coattention"), VisualQA.load("lstm-cnn")
    co = vqa_accuracy(coattention.model, coattention.questions, coattention.answers, world, 40)
    lc = vqa_accuracy(lstm_cnn.model, lstm_cnn.questions, lstm_cnn.answers, world, 40)
    for kind in ("colour", "shape"):
        assert co["accuracy_by_kind"][kind] >= 0.9, co
    assert co["yes_no_accuracy"] >= 0.9, co
    assert co["accuracy"] >= lc["accuracy"] - 0.02, (co, lc)


def test_coattention_points_at_the_object_asked_about(coattention, world):
    result = vqa_pointing(coattention, world, TEST, 30, progress=False)
    for kind in ("colour", "shape"):
        assert result[kind]["accuracy"] >= 0.8, result
        assert result[kind]["accuracy"] > 5 * result[kind]["random"]


def test_gradcam_is_more_faithful_than_guided_backprop(coattention, world):
    result = vqa_faithfulness(coattention, world, TEST, 12, progress=False)
    assert result["gradcam"]["rank_correlation"] > result["guided-backprop"]["rank_correlation"]


@pytest.mark.parametrize(("layer", "side"), [("encoder.stages.0", 32), ("encoder.stages.1", 16)])
def test_coattention_is_explainable_at_several_stages(coattention, world, layer, side):
    scene, question = _colour_question(world)
    inputs = coattention.prepare([Image.fromarray(scene.image)])
    e = coattention.explain(inputs, coattention.encode(question.text), [[0, 1]], layer=layer)
    assert e.maps.shape == (1, 2, side, side) and e.layer == layer


def test_vqa_cli_json(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["vqa", "--answers", "red", "yellow", "--json", "--out", str(out),
                 "--method", "gradcam,guided-gradcam"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    texts = [a["answer"] for a in summary["answers"]]
    assert texts[0] == summary["answer"] and {"red", "yellow"} <= set(texts)
    for entry in summary["answers"]:
        assert set(entry["peaks"]) == {"gradcam", "guided-gradcam"}
        assert all(0 <= v < 128 for v in entry["peak"])
        assert isinstance(entry["score"], float)
    assert all(Path(f).is_file() for f in summary["files"]) and len(summary["files"]) == 2


def test_vqa_cli_own_image_and_lstm_cnn(tmp_path, capsys, world):
    scene, question = _colour_question(world, 7)
    image = tmp_path / "scene.png"
    Image.fromarray(scene.image).save(image)
    code = main(["vqa", str(image), question.text.upper(), "--model", "lstm-cnn", "--json",
                 "--out", str(tmp_path / "o")])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["question"] == question.text.upper()
    assert summary["unknown_words"] == []


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--answers", "reed"], "reed"),
        (["--model", "transformer"], "transformer"),
        (["--layer", "encoder.stage"], "encoder.stage"),
        (["--scene", "99999999"], "--scene"),
    ],
)
def test_vqa_cli_bad_input_exits_2(argv, named, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["vqa", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert named in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_vqa_cli_image_without_question(tmp_path, capsys):
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    assert main(["vqa", str(image), "--out", str(tmp_path / "o")]) == 2
    assert "QUESTION" in capsys.readouterr().err
