"""The VQA adapter on the shipped models: forced answers, phrasing, errors, CLI, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from vlx.checkpoints import save_checkpoint
from vlx.cli import main
from vlx.data.shapes import ANSWERS, SPLITS, ShapesWorld
from vlx.errors import InputError
from vlx.evaluate.measures import Faithfulness, Pointing
from vlx.evaluate.runner import measure
from vlx.evaluate.sources import evaluation_data
from vlx.models.coattention import CoAttention
from vlx.models.vqa_lstm_cnn import VQALSTMCNN
from vlx.task import Example
from vlx.tasks.vqa import ShapesVQA
from vlx.text import Vocabulary

TEST = SPLITS["test"][0]
MODELS = {"coattention": CoAttention, "lstm-cnn": VQALSTMCNN}


@pytest.fixture(scope="module")
def world() -> ShapesWorld:
    return ShapesWorld(seed=0)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, world) -> dict[str, Path]:
    """Untrained models of both architectures, saved as `vlx train vqa` saves them: the
    adapter's mechanics do not depend on what the weights learned. (The shipped checkpoints'
    quality is tested in tests/test_vqa_models.py once they are trained.)"""
    folder = tmp_path_factory.mktemp("vqa")
    questions = [q.text for i in range(200) for q in world.scene(i).questions()]
    vocabulary = Vocabulary.build(questions)
    paths = {}
    for name, cls in MODELS.items():
        torch.manual_seed(0)
        model = cls(cls.config_class(vocab_size=len(vocabulary), answers=len(ANSWERS))).eval()
        paths[name] = save_checkpoint(folder / f"{name}.pt", model.checkpoint(vocabulary, ANSWERS),
                                      {"data": "shapes"})
    return paths


@pytest.fixture(scope="module", params=list(MODELS))
def vqa(request, checkpoints) -> ShapesVQA:
    return ShapesVQA.load(str(checkpoints[request.param]))


@pytest.fixture(scope="module")
def coattention(checkpoints) -> ShapesVQA:
    return ShapesVQA.load(str(checkpoints["coattention"]))


def _colour_question(world: ShapesWorld, offset: int = 0):
    for index in range(TEST + offset, TEST + offset + 50):
        scene = world.scene(index)
        for question in scene.questions():
            if question.kind == "colour":
                return scene, question
    raise AssertionError("no colour question in 50 scenes")


def test_forced_answers_batched_equal_one_at_a_time(vqa, world):
    scene, question = _colour_question(world)
    batch = vqa.prepare([Example(Image.fromarray(scene.image), question.text)])
    answers = ["red", "yellow", "blue", "circle"]
    batched = vqa.explain(batch, vqa.targets(batch, answers))
    assert batched.maps.shape[:2] == (1, 4) and batched.targets == [answers]
    for t, answer in enumerate(answers):
        single = vqa.explain(batch, vqa.targets(batch, [answer]))
        assert torch.allclose(single.maps[:, 0], batched.maps[:, t], atol=1e-6)
        assert torch.allclose(single.scores[:, 0], batched.scores[:, t], atol=1e-5)


def test_everyday_phrasing_reads_the_same(coattention):
    plain = coattention.encode(["what color is the circle?"])
    for variant in ("What COLOUR is the circle", "what colour is the circle ?!", "  What color is the Circle?"):
        assert torch.equal(coattention.encode([variant]), plain)


def test_bad_questions_and_answers_are_clear_errors(coattention):
    with pytest.raises(InputError, match="no words"):
        coattention.encode(["  ?? "])
    with pytest.raises(InputError, match="no word of"):
        coattention.encode(["quelle heure est-il"])
    with pytest.raises(InputError, match="'reed'.*red"):
        coattention.answer_index("reed")


@pytest.mark.parametrize(("layer", "side"), [("encoder.stages.0", 32), ("encoder.stages.1", 16)])
def test_coattention_is_explainable_at_several_stages(coattention, world, layer, side):
    scene, question = _colour_question(world)
    batch = coattention.prepare([Example(Image.fromarray(scene.image), question.text)])
    e = coattention.explain(batch, coattention.targets(batch, [0, 1]), layer=layer)
    assert e.maps.shape == (1, 2, side, side) and e.layer == layer


def test_pointing_and_faithfulness_report_every_kind(coattention, world):
    pointing = measure(coattention, evaluation_data(coattention, "shapes", 3, "pointing"), Pointing())
    rows = pointing["categories"]
    assert set(rows) == {"colour", "shape"}
    # the colour and shape questions of the 3 scenes, counted by hand from the grammar
    asked = [q for s in world.scenes(TEST, 3) for q in s.questions()
             if q.kind in ("colour", "shape") and q.referent is not None]
    assert sum(row["count"] for row in rows.values()) == len(asked)
    for row in rows.values():
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["answered"] <= 1 and row["count"] > 0
        assert 0 <= row["attention"] <= 1  # the co-attention model's own weights, scored alike
    data = evaluation_data(coattention, "shapes", 2, "faithfulness")
    faithfulness = measure(coattention, data, Faithfulness())["methods"]
    assert set(faithfulness) == {"gradcam", "guided-backprop"}
    assert all(-1 <= row["rank_correlation"] <= 1 for row in faithfulness.values())
    assert faithfulness["gradcam"]["count"] <= 2


def test_vqa_cli_json(tmp_path, capsys, checkpoints):
    out = tmp_path / "out"
    code = main(["vqa", "--model", str(checkpoints["coattention"]), "--answers", "red", "yellow",
                 "--json", "--out", str(out),
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


def test_vqa_cli_own_image_and_lstm_cnn(tmp_path, capsys, world, checkpoints):
    scene, question = _colour_question(world, 7)
    image = tmp_path / "scene.png"
    Image.fromarray(scene.image).save(image)
    code = main(["vqa", str(image), question.text.upper(), "--model", str(checkpoints["lstm-cnn"]), "--json",
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
def test_vqa_cli_bad_input_exits_2(argv, named, tmp_path, capsys, checkpoints):
    out = tmp_path / "out"
    model = [] if "--model" in argv else ["--model", str(checkpoints["coattention"])]
    assert main(["vqa", *argv, *model, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert named in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_vqa_cli_image_without_question(tmp_path, capsys, checkpoints):
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    assert main(["vqa", str(image), "--model", str(checkpoints["coattention"]),
                 "--out", str(tmp_path / "o")]) == 2
    assert "QUESTION" in capsys.readouterr().err
