"""The generative VLM adapters (LLaVA, LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL, PaliGemma, Idefics3) on tiny
random models: teacher-forced scores equal generation's own, maps equal an independent
Grad-CAM (a hook, ``autograd.grad``, the mean over the grid) on each family's layout, one
batched call equals a loop, and the image is encoded once for every word and every answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hf_tiny import noise_image
from vlm_tiny import VLM_FAMILIES

from vlx.cli import main
from vlx.task import Example
from vlx.tasks.hf_loading import load_hf_captioner, load_hf_vqa

FAMILIES = list(VLM_FAMILIES)
QUESTION = "what color is the circle?"
IMAGE_SIZE = {"llava_next": (60, 60)}  # square: anyres tiles with no padding, for the reference


@pytest.fixture(scope="module")
def directories(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vlm")
    return {name: build(root / name) for name, build in VLM_FAMILIES.items()}


@pytest.fixture(scope="module")
def tasks(directories) -> dict[str, tuple]:
    return {name: (load_hf_captioner(path), load_hf_vqa(path))
            for name, path in directories.items()}


def image(family: str, seed: int = 0):
    return noise_image(*IMAGE_SIZE.get(family, (90, 60)), seed=seed)


def reference_map(task, batch, continuation: list[int], scored: list[int]) -> torch.Tensor:
    """Grad-CAM of the summed log-prob of ``continuation[k]`` for k in ``scored``: one plain
    forward of the model over prompt + continuation, a hook on the layer, autograd.grad, the
    views put on the image by hand (a CLS dropped, Qwen's 2x2 windows undone, tiles at their
    place, the base view bilinearly stretched over them), the mean gradient over the grid."""
    vlm, model = task.vlm, task.model
    prompt, types = batch.state["prompts"][0], batch.state["types"][0]
    ids = torch.tensor([prompt + continuation])
    extra = {k: torch.tensor([v + [1 if k == "token_type_ids" else 0] * len(continuation)])
             for k, v in types.items()}
    captured = []
    handle = model.get_submodule(task.layer).register_forward_hook(
        lambda m, i, o: captured.append(o))
    try:
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                       **vlm.vision_inputs(batch), **extra).logits[0]
    finally:
        handle.remove()
    log_probs = logits[len(prompt) - 1 : -1].log_softmax(-1)
    score = sum(log_probs[k, continuation[k]] for k in scored)
    tokens = captured[0]
    (gradient,) = torch.autograd.grad(score, tokens)
    views = batch.state["views"][0]
    if "Qwen2_5" in type(model).__name__:  # its blocks' rows run window by window
        gradient, tokens = (_unwindowed(model, batch, t) for t in (gradient, tokens))
    return F.relu(_reference_grid(gradient, views).mean((1, 2), keepdim=True)
                  .mul(_reference_grid(tokens.detach(), views)).sum(0))


def _unwindowed(model, batch, rows: torch.Tensor) -> torch.Tensor:
    """Qwen2.5-VL's block rows in the processor's order, by the model's own window index."""
    from transformers.vision_utils import get_vision_window_index

    vision = model.config.vision_config
    index, _ = get_vision_window_index(batch.state["image_grid_thw"], vision.spatial_merge_size,
                                       vision.window_size, vision.patch_size)
    restored = torch.empty_like(rows.reshape(len(index), -1, rows.shape[-1]))
    restored[index] = rows.reshape(len(index), -1, rows.shape[-1])
    return restored.reshape(rows.shape)


def _reference_grid(tokens: torch.Tensor, views) -> torch.Tensor:
    if tokens.dim() == 2:  # Qwen2-VL: (h*w, C) in 2x2 windows
        h, w = views[0].grid
        return tokens.view(h // 2, w // 2, 2, 2, -1).permute(0, 2, 1, 3, 4).reshape(h, w, -1
                                                                                   ).permute(2, 0, 1)
    side = views[0].grid[0]
    grids = [t[-side * side :].reshape(side, side, -1).permute(2, 0, 1) for t in tokens]
    if len(grids) == 1:
        left, right = views[0].box[1], views[0].box[3]  # CLIP's centre crop: columns aside
        width = round(side / (right - left))
        return F.pad(grids[0], ((width - side) // 2, (width - side) // 2))
    tiles = [(g, v) for g, v in zip(grids, views) if v.box != (0.0, 0.0, 1.0, 1.0)]
    base = next(g for g, v in zip(grids, views) if v.box == (0.0, 0.0, 1.0, 1.0))
    rows = round(1 / (tiles[0][1].box[2] - tiles[0][1].box[0]))
    cols = round(1 / (tiles[0][1].box[3] - tiles[0][1].box[1]))
    canvas = base.new_zeros(base.shape[0], rows * side, cols * side)
    for k, (grid, _) in enumerate(tiles):
        r, c = divmod(k, cols)
        canvas[:, r * side : (r + 1) * side, c * side : (c + 1) * side] = grid
    return canvas + F.interpolate(base[None], size=canvas.shape[1:], mode="bilinear")[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_teacher_forced_scores_are_generations_own(family, tasks):
    """The scorer's log-probs of the generated tokens equal those generate() computed."""
    captioner, _ = tasks[family]
    batch = captioner.prepare([Example(image(family))])
    vlm = captioner.vlm
    prompt = torch.tensor([batch.state["prompts"][0]])
    types = {k: torch.tensor([v]) for k, v in batch.state["types"][0].items()}
    with torch.no_grad():
        out = vlm.model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                 **types, **vlm.vision_inputs(batch), max_new_tokens=6,
                                 do_sample=False, output_logits=True, return_dict_in_generate=True)
    tokens = out.sequences[0, prompt.shape[1]:].tolist()
    generated = torch.stack(out.logits, 1)[0].log_softmax(-1)
    problem = vlm.problem(batch, [[tokens]])
    with torch.no_grad():
        forced = problem.model(*problem.inputs, **problem.model_kwargs)[0].log_softmax(-1)
    index = torch.tensor(tokens)[:, None]
    torch.testing.assert_close(forced.gather(1, index), generated.gather(1, index),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_word_maps_equal_the_reference(family, tasks):
    captioner, _ = tasks[family]
    batch = captioner.prepare([Example(image(family))])
    targets = captioner.targets(batch)
    explanation = captioner.explain(batch, targets)
    caption = targets.context[0]
    for t, target in enumerate(targets.rows[0]):
        expected = reference_map(captioner, batch, caption.ids, caption.groups[target.id])
        torch.testing.assert_close(explanation.maps[0, t], expected, atol=1e-6, rtol=1e-5)
    assert float(explanation.maps.abs().sum()) > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_forced_answer_maps_equal_the_reference(family, tasks):
    _, answerer = tasks[family]
    batch = answerer.prepare([Example(image(family), QUESTION)])
    answers = ["red", "a blue square", "no"]
    explanation = answerer.explain(batch, answerer.targets(batch, answers))
    for t, answer in enumerate(answers):
        ids = answerer.answer_ids(answer)
        expected = reference_map(answerer, batch, ids, list(range(len(ids))))
        torch.testing.assert_close(explanation.maps[0, t], expected, atol=1e-6, rtol=1e-5)
    scores = answerer.scores(batch, answers)
    torch.testing.assert_close(explanation.scores, scores, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_one_batched_call_equals_a_loop(family, tasks):
    """Words, answers and examples: each alone gives what they give together."""
    captioner, answerer = tasks[family]
    examples = [Example(image(family, seed), QUESTION) for seed in (0, 1)]
    batch = answerer.prepare(examples)
    answers = ["red", "a blue square"]
    together = answerer.explain(batch, answerer.targets(batch, answers))
    for n in range(2):
        one = batch.select(n)
        for t, answer in enumerate(answers):
            alone = answerer.explain(one, answerer.targets(one, [answer]))
            torch.testing.assert_close(together.maps[n, t], alone.maps[0, 0], atol=1e-6,
                                       rtol=1e-5)
    words = captioner.prepare(examples[:1])
    every = captioner.explain(words, captioner.targets(words))
    for t in range(min(3, every.maps.shape[1])):
        alone = captioner.explain(words, captioner.targets(words, [t]))
        torch.testing.assert_close(every.maps[0, t], alone.maps[0, 0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("family", ["llava", "idefics3"])
def test_the_image_is_encoded_once_for_all_answers(family, tasks):
    """K answers of different lengths: one vision-tower forward, one language-model forward."""
    _, answerer = tasks[family]
    batch = answerer.prepare([Example(image(family), QUESTION)])
    calls = {"vision": 0, "language": 0}
    vision = answerer.model.get_submodule(answerer.vlm.block_names()[0])
    language = answerer.model.lm_head
    hooks = [vision.register_forward_hook(lambda *a: calls.__setitem__("vision", calls["vision"] + 1)),
             language.register_forward_hook(
                 lambda *a: calls.__setitem__("language", calls["language"] + 1))]
    try:
        answerer.explain(batch, answerer.targets(batch, ["red", "a blue square", "no no no yes"]))
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == {"vision": 1, "language": 1}


@pytest.mark.parametrize("family", FAMILIES)
def test_projector_output_maps_on_its_grid(family, tasks):
    """The image tokens as the language model sees them (Qwen's merger, Idefics3's pixel
    shuffle: grids half as fine) are put on the same image."""
    _, answerer = tasks[family]
    layer = answerer.vlm.family.projector
    batch = answerer.prepare([Example(image(family), QUESTION)])
    vision = answerer.explain(batch, answerer.targets(batch, ["red"]))
    projected = answerer.explain(batch, answerer.targets(batch, ["red"]), layer=layer)
    halved = family in ("qwen2_vl", "qwen2_5_vl", "idefics3")
    expected = tuple(s // 2 if halved else s for s in vision.maps.shape[-2:])
    assert tuple(projected.maps.shape[-2:]) == expected
    assert float(projected.maps.sum()) > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_caption_and_vqa_commands(family, directories, tasks, tmp_path, capsys):
    path = tmp_path / "photo.png"
    image(family).save(path)
    model = f"hf:{directories[family]}"
    assert main(["vqa", str(path), QUESTION, "--model", model, "--answers", "red", "no",
                 "--out", str(tmp_path / "vqa"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    forced = {a["answer"]: a["score"] for a in record["answers"] if a["forced"]}
    _, answerer = tasks[family]
    batch = answerer.prepare([Example(image(family), QUESTION)])
    expected = answerer.scores(batch, ["red", "no"])[0].tolist()
    assert forced == pytest.approx(dict(zip(["red", "no"], expected)), abs=1e-4)
    assert record["answers"][0]["answer"] == answerer.predict(batch, 1)[0][0].name
    assert main(["caption", str(path), "--model", model, "--out", str(tmp_path / "cap"),
                 "--json"]) == 0
    caption = json.loads(capsys.readouterr().out)
    captioner = tasks[family][0]
    described = captioner.predict(captioner.prepare([Example(image(family))]))[0][0].words
    assert [w["word"] for w in caption["words"]] == list(described)
    assert len(list((tmp_path / "cap").glob("*.png"))) == 1


def test_an_unsupported_model_names_the_supported_ones(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps(
        {"architectures": ["Blip2ForConditionalGeneration"], "model_type": "blip-2"}))
    assert main(["vqa", "--model", f"hf:{tmp_path}", "--answers", "cat"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert "Blip2ForConditionalGeneration" in error[0]
    for supported in ("LlavaForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration",
                      "PaliGemmaForConditionalGeneration", "Idefics3ForConditionalGeneration"):
        assert supported in error[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_textual_explanations_dissect_the_explained_layer(family, directories, tmp_path,
                                                          capsys, monkeypatch):
    from test_textual_cli import check_text

    monkeypatch.setenv("VLX_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "photo.png"
    image(family).save(path)
    assert main(["vqa", str(path), QUESTION, "--model", f"hf:{directories[family]}",
                 "--answers", "red", "--out", str(tmp_path / "out"), "--text",
                 "--probe-images", "4", "--json"]) == 0
    for entry in json.loads(capsys.readouterr().out)["answers"]:
        check_text(entry["text"], entry["answer"])


def test_pixel_methods_are_refused_with_the_layer_methods_named(directories, tmp_path, capsys):
    path = tmp_path / "photo.png"
    image("llava").save(path)
    assert main(["vqa", str(path), QUESTION, "--model", f"hf:{directories['llava']}",
                 "--answers", "red", "--method", "occlusion", "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err.strip()
    assert "'occlusion' works on the input pixels" in error and "gradcam++, hirescam" in error
    assert not (tmp_path / "o").exists()
