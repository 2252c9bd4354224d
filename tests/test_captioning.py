"""The Show-and-Tell captioner, its adapter, the pointing game and `vlx caption`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

import vlx
from vlx.cli import main
from vlx.data.shapes import SPLITS, ShapesWorld
from vlx.errors import InputError
from vlx.evaluate.measures import Pointing
from vlx.evaluate.runner import measure
from vlx.evaluate.sources import evaluation_data
from vlx.models.captioner_training import encode_batch, object_naming
from vlx.models.show_and_tell import ShowAndTell, ShowAndTellConfig
from vlx.recurrent import plain_recurrent_kernels
from vlx.task import Example, Target
from vlx.tasks.captioning import (
    EVERY_WORD,
    WHOLE_CAPTION,
    CaptionScores,
    ShowAndTellCaptioner,
    TokenizedText,
)
from vlx.text import Vocabulary


@pytest.fixture(scope="module")
def captioner() -> ShowAndTellCaptioner:
    return ShowAndTellCaptioner.load()


def word_scores(ids: list[int], positions: list[int], whole: bool = False) -> CaptionScores:
    """The per-word targets of one caption of ``ids`` (one token per word)."""
    caption = TokenizedText([str(i) for i in ids], ids, [[t] for t in range(len(ids))])
    rows = [[Target(p, str(p)) for p in positions] + ([Target(len(ids), WHOLE_CAPTION)]
                                                       if whole else [])]
    return CaptionScores.of([caption], rows)


@pytest.fixture(scope="module")
def world() -> ShapesWorld:
    return ShapesWorld(seed=0)


def _tiny(vocabulary: Vocabulary, bias: list[float]) -> ShowAndTell:
    """An LSTM with all weights zero: gates are sigmoid(0) = 0.5 and the candidate tanh(0) = 0,
    so c_t = 0.5 c_{t-1} + 0.5 * 0 = 0 and h_t = 0.5 tanh(0) = 0 at every step. The logits are
    then the output bias alone, whatever the image and the words."""
    model = ShowAndTell(ShowAndTellConfig(vocab_size=len(vocabulary), embed=4, hidden=3,
                                          widths=(4, 4, 4, 4)))
    with torch.no_grad():
        for name, param in model.lstm.named_parameters():
            param.zero_()
        model.out.weight.zero_()
        model.out.bias.copy_(torch.tensor(bias))
    return model.eval()


def test_log_probs_of_a_hand_checked_configuration():
    vocabulary = Vocabulary(["red", "circle"])  # ids: 0-3 specials, red 4, circle 5
    bias = [0.0, 0.0, math.log(2.0), 0.0, math.log(4.0), math.log(2.0)]
    model = _tiny(vocabulary, bias)
    # softmax(bias) = [1, 1, 2, 1, 4, 2] / 11
    tokens = torch.tensor([[vocabulary.start, 4, 5]])
    logits = model(torch.zeros(1, 3, 32, 32), tokens)
    scores = word_scores([4, 5], [0, 1], whole=True)(logits)
    expected = [math.log(4 / 11), math.log(2 / 11), math.log(8 / 121)]
    assert torch.allclose(scores, torch.tensor([expected]), atol=1e-6)


def test_word_log_probs_read_position_t_for_word_t():
    # logits (1, 3, 4): position t's distribution is one-hot-ish on word t + 1
    logits = torch.full((1, 3, 4), -1e4)
    logits[0, 0, 1] = logits[0, 1, 2] = logits[0, 2, 3] = 0.0
    assert torch.allclose(word_scores([1, 2], [0, 1])(logits), torch.zeros(1, 2))
    assert word_scores([2, 1], [0, 1])(logits).max() < -1e3
    # one caption's row serves a batch of copies (occlusion, deletion)
    assert word_scores([1, 2], [1])(logits.expand(3, -1, -1)).shape == (3, 1)


def test_teacher_forcing_batches_are_shifted_by_one():
    vocabulary = Vocabulary(["a", "red", "circle"])
    inputs, targets = encode_batch(vocabulary, ["a red circle", "a circle"], max_length=10)
    a, red, circle = (vocabulary.index[w] for w in ("a", "red", "circle"))
    assert inputs.tolist() == [[1, a, red, circle], [1, a, circle, 0]]
    assert targets.tolist() == [[a, red, circle, 2], [a, circle, 2, 0]]


# The shipped checkpoint names 90.9% of the 300 held-out validation objects (goal 90%: checked
# on the same 300 scenes, 1-2 s) and points 81.7% / 86.5% for colour / shape words on 300 test
# scenes (docs/REPORT.md; goals 80%). The pointing bounds guard the 60 test scenes that keep CI
# fast (measured 81.2% / 86.6%).
def test_shipped_captioner_names_objects(captioner, world):
    metrics = object_naming(captioner.model, captioner.vocabulary, world, 300)
    assert metrics["object_naming"] >= 0.9, metrics


def test_shipped_captioner_points_at_the_words_referents(captioner):
    result = measure(captioner, evaluation_data(captioner, "shapes", 60, "pointing"), Pointing())
    lenient = result["categories"]
    assert lenient["colour"]["accuracy"] >= 0.78, lenient
    assert lenient["shape"]["accuracy"] >= 0.8, lenient
    # far above what the centre or a random point would score
    assert lenient["colour"]["accuracy"] > 3 * lenient["colour"]["random"]
    # the described object is one of the word's instances: never more hits than any instance
    assert all(row["described"] <= row["accuracy"] for row in lenient.values())
    assert "answered" not in lenient["colour"]  # a caption word is no answer to be right about


def test_all_words_batched_equal_one_word_at_a_time(captioner, world):
    scene = world.scene(SPLITS["test"][0] + 3)
    batch = captioner.prepare([Example(Image.fromarray(scene.image), scene.caption())])
    inputs = batch.inputs
    words = scene.caption().split()
    batched = captioner.explain(batch, captioner.targets(batch, [EVERY_WORD, WHOLE_CAPTION]))
    assert batched.maps.shape == (1, len(words) + 1, 32, 32)  # stride 4 at 128 px
    ids = captioner.vocabulary.encode(words)
    tokens = torch.tensor([[captioner.vocabulary.start, *ids]])
    for t in range(len(words)):
        with vlx.GradCAM(captioner.model, captioner.layer) as cam:
            single = cam(inputs, tokens, targets=word_scores(ids, [t]))
        assert torch.allclose(single.maps[:, 0], batched.maps[:, t], atol=1e-6)
        assert torch.allclose(single.alphas[:, 0], batched.alphas[:, t], atol=1e-7)
    # the whole-caption map is the map of the summed log-probs: its alphas are the sum
    assert torch.allclose(batched.alphas[:, -1], batched.alphas[:, :-1].sum(1), atol=1e-6)
    assert torch.allclose(batched.scores[:, -1], batched.scores[:, :-1].sum(1), atol=1e-5)


def test_recurrent_kernels_are_plain_during_attribution_and_restored_after(captioner):
    seen = []
    hook = captioner.model.lstm.register_forward_hook(
        lambda *_: seen.append((torch._C._get_mkldnn_enabled(), torch._C._get_cudnn_enabled()))
    )
    before = (torch._C._get_mkldnn_enabled(), torch._C._get_cudnn_enabled())
    try:
        with plain_recurrent_kernels(captioner.model):
            captioner.model(torch.zeros(1, 3, 128, 128), torch.tensor([[1]]))
    finally:
        hook.remove()
    assert seen == [(False, False)]
    assert (torch._C._get_mkldnn_enabled(), torch._C._get_cudnn_enabled()) == before


def test_counterfactual_and_guided_gradcam_per_word(captioner, world):
    scene = world.scene(SPLITS["test"][0])
    words = scene.caption().split()[:4]
    batch = captioner.prepare([Example(Image.fromarray(scene.image), " ".join(words))])
    targets = captioner.targets(batch)
    plain = captioner.explain(batch, targets)
    counter = captioner.explain(batch, targets, method="counterfactual")
    assert torch.allclose(counter.alphas, -plain.alphas)
    guided = captioner.explain(batch, targets, method="guided-gradcam")
    assert guided.channels.shape == (1, 4, 3, 128, 128)
    assert guided.targets == [words]


def test_out_of_vocabulary_and_empty_captions_are_clear_errors(captioner):
    with pytest.raises(InputError, match="'circel'.*circle"):
        captioner.words("a red circel")
    with pytest.raises(InputError, match="no words"):
        captioner.words(" ?! ")


def test_caption_cli_json(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["caption", "--json", "--out", str(out), "--whole", "--method", "gradcam,counterfactual"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    words = summary["caption"].split()
    assert [w["word"] for w in summary["words"]] == words + ["<caption>"]
    for entry in summary["words"]:
        assert entry["log_prob"] <= 0.0
        x, y = entry["peak"]
        assert 0 <= x < 128 and 0 <= y < 128
        assert set(entry["peaks"]) == {"gradcam", "counterfactual"}
    assert [Path(f).name for f in summary["files"]] == [
        "shapes-test-0_gradcam_words.png", "shapes-test-0_counterfactual_words.png",
    ]
    assert all(Path(f).is_file() for f in summary["files"])


def test_caption_cli_given_caption_and_word_subset(tmp_path, capsys, world):
    image = tmp_path / "scene.png"
    scene = world.scene(SPLITS["test"][0] + 5)
    Image.fromarray(scene.image).save(image)
    colour = scene.objects[0].colour
    code = main(["caption", str(image), "--caption", scene.caption(), "--words", colour,
                 "--json", "--out", str(tmp_path / "o")])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["caption"] == scene.caption()
    assert {w["word"] for w in summary["words"]} == {colour}


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--caption", "a red circel"], "circel"),
        (["--caption", "   "], "--caption"),
        (["--caption", "a red circle", "--words", "blue"], "blue"),
        (["--scene", "-1"], "--scene"),
        (["--layer", "encoder.stages.9"], "encoder.stages"),
    ],
)
def test_caption_cli_bad_input_exits_2(argv, named, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["caption", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert named in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_caption_cli_not_an_image(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("hello")
    assert main(["caption", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.png" in capsys.readouterr().err


def test_captions_of_different_lengths_in_one_batch_equal_each_alone(captioner, world):
    """Rows of different lengths are padded; each example's maps are its own."""
    scenes = [world.scene(SPLITS["test"][0] + i) for i in (1, 2)]
    captions = ["a small red circle on a plain background", scenes[1].caption()]
    examples = [Example(Image.fromarray(s.image), c) for s, c in zip(scenes, captions)]
    batch = captioner.prepare(examples)
    together = captioner.explain(batch, captioner.targets(batch))
    assert [len(row) for row in together.targets] == [len(c.split()) for c in captions]
    for n, example in enumerate(examples):
        one = captioner.prepare([example])
        alone = captioner.explain(one, captioner.targets(one))
        count = len(captions[n].split())
        torch.testing.assert_close(together.maps[n, :count], alone.maps[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(together.scores[n, :count], alone.scores[0], rtol=0, atol=1e-6)


def test_words_by_text_position_and_whole_caption(captioner, world):
    scene = world.scene(SPLITS["test"][0])
    batch = captioner.prepare([Example(Image.fromarray(scene.image), "a red circle left of a red star")])
    targets = captioner.targets(batch, ["red", 2, WHOLE_CAPTION])
    assert [(t.id, t.name) for t in targets.rows[0]] == [
        (1, "red"), (2, "circle"), (6, "red"), (8, WHOLE_CAPTION)]
    e = captioner.explain(batch, targets)
    assert torch.allclose(e.scores[0, 3], e.scores[0, :3].sum() + captioner.explain(
        batch, captioner.targets(batch, [0, 3, 4, 5, 7])).scores[0].sum(), atol=1e-5)
    with pytest.raises(InputError, match="'blue' is not in the caption"):
        captioner.targets(batch, ["blue"])
    with pytest.raises(InputError, match="position 12 is out of range; valid: 0..7"):
        captioner.targets(batch, [12])


def test_absurdly_long_captions_are_refused(captioner, world):
    scene = world.scene(SPLITS["test"][0])
    batch = captioner.prepare([Example(Image.fromarray(scene.image), "red " * 201)])
    with pytest.raises(InputError, match="201 words; captions of at most 200"):
        captioner.targets(batch)
