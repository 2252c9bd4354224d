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
from vlx.models.captioner_training import encode_batch, object_naming
from vlx.models.show_and_tell import ShowAndTell, ShowAndTellConfig
from vlx.recurrent import plain_recurrent_kernels
from vlx.tasks.captioning import Captioner, WordLogProbs, caption_pointing
from vlx.text import Vocabulary


@pytest.fixture(scope="module")
def captioner() -> Captioner:
    return Captioner.load()


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
    scores = WordLogProbs([4, 5], whole_caption=True)(logits)
    expected = [math.log(4 / 11), math.log(2 / 11), math.log(8 / 121)]
    assert torch.allclose(scores, torch.tensor([expected]), atol=1e-6)


def test_word_log_probs_read_position_t_for_word_t():
    # logits (1, 3, 4): position t's distribution is one-hot-ish on word t + 1
    logits = torch.full((1, 3, 4), -1e4)
    logits[0, 0, 1] = logits[0, 1, 2] = logits[0, 2, 3] = 0.0
    assert torch.allclose(WordLogProbs([1, 2])(logits), torch.zeros(1, 2))
    assert WordLogProbs([2, 1])(logits).max() < -1e3


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


def test_shipped_captioner_points_at_the_words_referents(captioner, world):
    result = caption_pointing(captioner, world, SPLITS["test"][0], 60, progress=False)
    lenient = result["lenient"]
    assert lenient["colour"]["accuracy"] >= 0.78, lenient
    assert lenient["shape"]["accuracy"] >= 0.8, lenient
    # far above what the centre or a random point would score
    assert lenient["colour"]["accuracy"] > 3 * lenient["colour"]["random"]


def test_all_words_batched_equal_one_word_at_a_time(captioner, world):
    scene = world.scene(SPLITS["test"][0] + 3)
    inputs = captioner.prepare([Image.fromarray(scene.image)])
    words = scene.caption().split()
    batched = captioner.explain(inputs, words, whole_caption=True)
    assert batched.maps.shape == (1, len(words) + 1, 32, 32)  # stride 4 at 128 px
    tokens = captioner.teacher_forcing(words, 1)
    ids = captioner.vocabulary.encode(words)
    for t in range(len(words)):
        with vlx.GradCAM(captioner.model, captioner.layer) as cam:
            single = cam(inputs, tokens, targets=lambda logits, t=t: WordLogProbs(ids)(logits)[:, t : t + 1])
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
    inputs = captioner.prepare([Image.fromarray(scene.image)])
    words = scene.caption().split()[:4]
    plain = captioner.explain(inputs, words)
    counter = captioner.explain(inputs, words, method="counterfactual")
    assert torch.allclose(counter.alphas, -plain.alphas)
    guided = captioner.explain(inputs, words, method="guided-gradcam")
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
