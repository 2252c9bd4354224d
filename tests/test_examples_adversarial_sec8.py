"""The Sec. 6.2 and Sec. 8 experiments (examples/) end to end in their --fast mode."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(name: str, out: Path, load_example, capsys) -> object:
    """Run ``examples/NAME.py --fast --out OUT`` in-process; check its table and leftovers."""
    results = load_example(name).main(["--fast", "--out", str(out)])
    table = (out / "results" / f"{name}.md").read_text()
    assert table.startswith("# ") and "\n|---|" in table
    assert table in capsys.readouterr().out
    assert not list(out.rglob(".*"))  # no temporary files left behind
    return results


def figure(path: Path, min_width: int, min_height: int) -> Image.Image:
    image = Image.open(path)
    assert image.width >= min_width and image.height >= min_height
    return image


def test_adversarial(tmp_path, load_example, capsys) -> None:
    rows = run("adversarial", tmp_path, load_example, capsys)
    assert len(rows) == 1
    row = rows[0]
    assert row["photo"] == "chelsea" and row["target"] == "airliner" and row["epsilon"] == 4.0
    assert row["original"] in ("Egyptian cat", "tiger cat", "tabby, tabby cat")
    assert 0 < row["max_change"] <= 4.0 + 1e-4  # in 1/255 units: the ball holds
    # even 3 small steps move probability from the cat toward the airliner
    assert row["p_target_after"] > row["p_target_before"]
    assert row["p_original_after"] < row["p_original_before"]
    assert row["original_hit_clean"]  # the clean cat map peaks on the cat's face
    assert row["original_ratio_clean"] > 1.0
    assert 0.3 < row["box_share"] < 0.5
    # five Fig. 7 panels of ~224 x 149 at the photo's aspect, in one row
    figure(tmp_path / "figures" / "adversarial_chelsea.png", 5 * 224, 149)


def test_box_mask_scales_a_photo_box_to_the_model_input(load_example) -> None:
    module = load_example("adversarial")
    # a 400 x 200 photo shown to the model at 4 x 8 (H, W): x / 50, y / 50
    mask = module.box_mask((100, 50, 300, 150), (400, 200), (4, 8))
    expected = [[0] * 8, [0, 0, 1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 0, 0], [0] * 8]
    assert mask.int().tolist() == expected


def test_caption_words(tmp_path, load_example, capsys) -> None:
    result = run("caption_words", tmp_path, load_example, capsys)
    assert set(result) == {"categories", "peaks"}
    # scenes 0-2: 6 colour words, 6 shape words, at least one textured background
    assert result["categories"]["colour"]["count"] == 6
    assert result["categories"]["shape"]["count"] == 6
    for row in result["categories"].values():
        assert 0 <= row["described"] <= row["accuracy"] <= 1
    for category, places in result["peaks"]["places"].items():
        assert places["count"] == 6
        # the places split every word, and the described object is the strict score
        assert abs(sum(v for k, v in places.items() if k != "count") - 1) < 1e-9
        assert places["described object"] == result["categories"][category]["described"]
        # scenes 0-2 hold 6 objects, 3 of them first in their caption; the mentions split the
        # words, their hits add up to the strict score, and a first object has none before it
        first, later = (result["peaks"]["mentions"][f"{category}, {m}"]
                        for m in ("first object", "later object"))
        assert (first["count"], later["count"]) == (3, 3)
        hits = first["described object"] * 3 + later["described object"] * 3
        assert abs(hits / 6 - places["described object"]) < 1e-9
        assert first["object named before"] == 0
        assert all(abs(v) < 128 for v in first["offset"] + later["offset"])
    table = (tmp_path / "results" / "caption_words.md").read_text()
    assert "| all grounded words |" in table and "30.0%" in table
    figure(tmp_path / "figures" / "caption_words_scene0.png", 7 * 192, 2 * 192)
    figure(tmp_path / "figures" / "caption_words_pointing_scene0.png", 4 * 192, 192)


def test_vqa_answers(tmp_path, load_example, capsys) -> None:
    results = run("vqa_answers", tmp_path, load_example, capsys)
    assert set(results) == {"coattention", "lstm-cnn"}
    for result in results.values():
        assert set(result["pointing"]) == {"colour", "shape"}
        assert set(result["faithfulness"]) == {"gradcam", "guided-backprop"}
        for row in result["faithfulness"].values():
            assert -1 <= row["rank_correlation"] <= 1
        lead = result["faithfulness"]["guided-backprop"]
        assert -2 <= lead["difference"] <= 2 and lead["difference_count"] <= 2
    assert set(results["coattention"]["encoder pointing"]) == {"colour", "shape"}
    table = (tmp_path / "results" / "vqa_answers.md").read_text()
    assert "| *paper* (VQA, VGG-16) | 0.60 | 0.42 | +0.18 |" in table
    assert "| co-attention at encoder.stages.2 | colour |" in table
    # one row per model: the input and three forced answers
    figure(tmp_path / "figures" / "vqa_answers_scene0.png", 4 * 176, 2 * 176)


def test_forced_answers_put_the_truth_first_then_other_objects_colours(load_example) -> None:
    module = load_example("vqa_answers")
    from vlx.data.shapes import SPLITS, ShapesWorld

    scene, question = module.colour_questions(ShapesWorld(seed=0), SPLITS["test"][0], 1)[0]
    answers = module.forced_answers(scene, question)
    assert answers[0] == question.answer and len(set(answers)) == 3
    others = list(dict.fromkeys(o.colour for o in scene.objects if o.colour != question.answer))
    assert answers[1 : 1 + len(others[:2])] == others[:2]
