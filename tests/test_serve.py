"""`vlx serve` over HTTP: every map the page shows is the task contract's own, read from the
forward made for the caption where it can be; records are the commands' `--json`; bad
uploads and bad choices are messages; concurrent requests get what sequential ones get.

The server runs the shipped models in a thread (tests/served.py); textual explanations
dissect on a 4-image probe in a temporary $VLX_CACHE.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import urllib.parse
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import pytest
from PIL import Image
from served import call, fetch, need, picture, running

from vlx.cli import main
from vlx.images import bounded
from vlx.render import explanation_picture
from vlx.task import Example

need("fastapi")
SCENE = 0
QUESTION = "what color is the circle?"


class Served(NamedTuple):
    url: str
    demo: Any
    tasks: dict[str, Any]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    """The page on the shipped models (its base URL, ``Demo`` and tasks), caching under a
    temporary $VLX_CACHE."""
    from vlx.serve.session import Demo
    from vlx.tasks.loading import DEFAULTS, load_task

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLX_CACHE", str(tmp_path_factory.mktemp("vlx-cache")))
        tasks = {kind: load_task(kind) for kind in DEFAULTS}
        demo = Demo(tasks, dict(DEFAULTS), probe_images=4)
        with running(demo) as url:
            yield Served(url, demo, tasks)


def ask(url: str, path: str, **query) -> dict:
    status, body = call(f"{url}{path}?{urllib.parse.urlencode(query, doseq=True)}")
    assert status == 200, body
    return body


def scene(url: str, index: int = SCENE) -> str:
    status, body = call(f"{url}/api/samples/scene?index={index}", b"")
    assert status == 200 and body["name"] == f"shapes-test-{index}"
    return body["image"]


def held(demo, image: str) -> Image.Image:
    return demo._image(image).image


def direct_picture(task, image: Image.Image, text: str | None, wanted, method="gradcam",
                   layer=None) -> tuple[np.ndarray, float]:
    """The map of one target as `task.explain` draws it on its own (no page, no cache)."""
    batch = task.prepare([Example(image, text)])
    explanation = task.explain(batch, task.targets(batch, [[wanted]]), method, layer)
    shown = bounded(image, 512)
    return explanation_picture(explanation, 0, 0, shown), float(explanation.scores[0, 0])


def same_picture(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to one grey level where normalising rounds differently."""
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_a_clicked_word_is_its_own_map_read_from_the_captions_forward(served, monkeypatch):
    url, demo, tasks = served
    captioner = tasks["caption"]
    image = scene(url)
    calls = []
    explain = captioner.explain
    monkeypatch.setattr(captioner, "explain",
                        lambda *a, **k: calls.append(a[1]) or explain(*a, **k))
    listed = ask(url, "/api/analyze", task="caption", image=image)
    words = [t["name"] for t in listed["targets"]]
    assert listed["prediction"] == " ".join(words) and listed["layer"] == "encoder.stages.2"
    assert [len(row) for row in calls[0].rows] == [len(words)]  # every word in one call
    circle, triangle = words.index("circle"), words.index("triangle")
    maps = {}
    for position in (circle, triangle):
        shown = ask(url, "/api/explain", task="caption", image=image, target=position)
        assert shown["target"] == {"id": position, "name": words[position]}
        maps[position] = picture(shown["panels"][0]["png"])
    assert len(calls) == 1  # the clicks were read from the caption's explanation
    monkeypatch.undo()
    for position, drawn in maps.items():
        expected, _ = direct_picture(captioner, held(demo, image), None, position)
        same_picture(drawn, expected)
    assert np.abs(maps[circle].astype(int) - maps[triangle].astype(int)).mean() > 5


def test_a_typed_caption_is_explained_word_by_word(served):
    url, demo, tasks = served
    image = scene(url)
    typed = "a large red triangle on a plain background"
    listed = ask(url, "/api/analyze", task="caption", image=image, text=typed)
    assert [t["name"] for t in listed["targets"]] == typed.split()
    red = ask(url, "/api/explain", task="caption", image=image, text=typed, target=2)
    expected, score = direct_picture(tasks["caption"], held(demo, image), typed, 2)
    same_picture(picture(red["panels"][0]["png"]), expected)
    assert red["panels"][0]["score"] == pytest.approx(score, rel=1e-5)
    status, body = call(f"{url}/api/analyze?task=caption&image={image}&text=a+large+redd+cat")
    assert status == 400 and "'redd'" in body["error"]


def test_a_clicked_class_shows_gradcam_counterfactual_and_guided_gradcam(served):
    url, demo, tasks = served
    _, chelsea = call(f"{url}/api/samples/chelsea", b"")
    listed = ask(url, "/api/analyze", task="classify", image=chelsea["image"])
    assert listed["prediction"] == "Egyptian cat"
    probabilities = [t["probability"] for t in listed["targets"]]
    assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
    tabby = next(t for t in listed["targets"] if t["name"] == "tabby")
    shown = ask(url, "/api/explain", task="classify", image=chelsea["image"], target=tabby["id"])
    assert [p["method"] for p in shown["panels"]] == ["gradcam", "counterfactual",
                                                      "guided-gradcam"]
    for panel in shown["panels"]:
        expected, score = direct_picture(tasks["classify"], held(demo, chelsea["image"]), None,
                                         tabby["id"], panel["method"])
        same_picture(picture(panel["png"]), expected)
        assert panel["score"] == pytest.approx(score, rel=1e-5)
    figure, headers = fetch(f"{url}/api/figure.png?task=classify&image={chelsea['image']}"
                            f"&target={tabby['id']}")
    assert headers["Content-Disposition"] == 'attachment; filename="chelsea-classify-gradcam.png"'
    assert Image.open(io.BytesIO(figure)).width > 4 * 200  # the input and three maps


def test_a_forced_answer_is_its_own_map(served):
    url, demo, tasks = served
    image = scene(url)
    listed = ask(url, "/api/analyze", task="vqa", image=image, text=QUESTION)
    assert listed["prediction"] == "white" and listed["layer"] == "attended"
    predicted = ask(url, "/api/explain", task="vqa", image=image, text=QUESTION)
    forced = ask(url, "/api/explain", task="vqa", image=image, text=QUESTION, answer="Red")
    assert forced["target"]["name"] == "red"
    expected, score = direct_picture(tasks["vqa"], held(demo, image), QUESTION, "red")
    same_picture(picture(forced["panels"][0]["png"]), expected)
    assert forced["panels"][0]["score"] == pytest.approx(score, rel=1e-5)
    assert not np.array_equal(picture(forced["panels"][0]["png"]),
                              picture(predicted["panels"][0]["png"]))
    status, body = call(f"{url}/api/explain?task=vqa&image={image}&text=what+color+is+the+"
                        "circle%3F&answer=purpel")
    assert status == 400 and "closest answers: purple" in body["error"]


def test_other_methods_and_layers(served):
    url, demo, tasks = served
    image = scene(url)
    listed = ask(url, "/api/analyze", task="caption", image=image)
    assert listed["layers"][0] == "encoder" and "encoder.stages.1" in listed["layers"]
    for method, layer in [("gradcam++", "encoder.stages.1"), ("guided-backprop", None)]:
        query = {"task": "caption", "image": image, "method": method, "target": 3}
        shown = ask(url, "/api/explain", **query, **({"layer": layer} if layer else {}))
        expected, _ = direct_picture(tasks["caption"], held(demo, image), None, 3, method, layer)
        same_picture(picture(shown["panels"][0]["png"]), expected)
    status, body = call(f"{url}/api/explain?task=caption&image={image}&layer=encoder.stage.1")
    assert status == 400 and "closest layers: encoder.stages.1" in body["error"]
    status, body = call(f"{url}/api/explain?task=caption&image={image}&method=gradcam2")
    assert status == 400 and "valid: gradcam" in body["error"]
    status, body = call(f"{url}/api/explain?task=caption&image={image}&target=one")
    assert status == 400 and body["error"].startswith("bad request: target")


def test_records_are_the_commands_json(served, tmp_path, capsys):
    url = served.url
    image = scene(url)
    record = ask(url, "/api/record.json", task="vqa", image=image, text=QUESTION,
                 forced=["red", "blue"])
    assert main(["vqa", "--answers", "red", "blue", "--json", "--out", str(tmp_path)]) == 0
    command = json.loads(capsys.readouterr().out)
    for entry in command["answers"]:
        del entry["files"]
    assert record == {**command, "image": "shapes-test-0", "files": []}
    record = ask(url, "/api/record.json", task="caption", image=image)
    assert main(["caption", "--json", "--out", str(tmp_path)]) == 0
    command = json.loads(capsys.readouterr().out)
    for entry in command["words"]:
        del entry["files"]
    assert record == {**command, "files": []}
    figure, _ = fetch(f"{url}/api/figure.png?task=caption&image={image}")
    written = Image.open(tmp_path / "shapes-test-0_gradcam_words.png")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(figure))), np.asarray(written))


def tiny_png(width: int = 1, height: int = 1) -> bytes:
    """A 1 x 1 PNG whose header says ``width`` x ``height``: a decompression bomb's header."""
    stream = io.BytesIO()
    Image.new("RGB", (1, 1)).save(stream, "PNG")
    data = bytearray(stream.getvalue())
    header = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return bytes(data)


@pytest.mark.parametrize(("data", "status", "says"), [
    (b"", 400, "'x.png' is empty (0 bytes)"),
    (b"hello, not an image", 400, "'x.png' is not an image Pillow can read"),
    (None, 400, "cannot read image 'x.png'"),
    (tiny_png(20000, 20000), 400, "pixels, Pillow's limit against decompression bombs"),
    (b"\0" * (2**20 + 1), 413, "larger than the upload limit of 1 MB"),
], ids=["empty", "text", "truncated", "bomb", "too-large"])
def test_a_bad_upload_is_a_message_and_the_server_keeps_serving(served, data, status, says):
    url = served.url
    if data is None:
        stream = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 10, 10)).save(stream, "PNG")
        data = stream.getvalue()[:-40]
    got, body = call(f"{url}/api/images?name=x.png", data)
    assert (got, set(body)) == (status, {"error"}) and says in body["error"]
    stream = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 10)).save(stream, "JPEG")
    got, body = call(f"{url}/api/images?name=green.jpg", stream.getvalue())
    assert got == 200 and (body["name"], body["width"], body["height"]) == ("green", 40, 30)
    assert ask(url, "/api/analyze", task="caption", image=body["image"])["targets"]


def test_concurrent_requests_get_what_one_at_a_time_gets(served):
    """Fresh analyses (scenes and methods not asked for before) explained by 8 requests at
    once give the maps a fresh page gives one request at a time."""
    from vlx.serve.session import Choice, Demo

    url, demo, tasks = served
    images = [scene(url, index) for index in (11, 12)]
    jobs = [(task, image, method, target)
            for image in images
            for task, target in (("caption", 1), ("caption", 3), ("vqa", None))
            for method in ("gradcam", "counterfactual")]

    def request(job):
        task, image, method, target = job
        query = {"task": task, "image": image, "method": method,
                 **({"target": target} if target is not None else {}),
                 **({"text": QUESTION} if task == "vqa" else {})}
        return ask(url, "/api/explain", **query)

    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(request, jobs))
    alone = Demo(tasks, demo.models)
    for image in images:
        alone._keep(demo._image(image))
    for (task, image, method, target), got in zip(jobs, together):
        choice = Choice(task, image, QUESTION if task == "vqa" else None, method)
        expected = alone.explain(choice, target)
        assert got["target"] == expected["target"]
        same_picture(picture(got["panels"][0]["png"]), picture(expected["panels"][0]["png"]))
        assert got["panels"][0]["score"] == pytest.approx(expected["panels"][0]["score"],
                                                          rel=1e-5)


def test_textual_explanation_is_pending_then_the_named_units(served):
    url = served.url
    image = scene(url)
    query = {"task": "caption", "image": image, "target": 2, "method": "guided-backprop"}
    first = ask(url, "/api/text", **query)
    assert first["status"] in ("pending", "ready")
    if first["status"] == "pending":
        assert "dissecting it on 4 shapes probe images" in first["message"]
    text = first
    for _ in range(240):
        if text["status"] == "ready":
            break
        text = ask(url, "/api/text", **query)
    assert text["status"] == "ready" and text["method"] == "gradcam"  # guided-backprop: no alphas
    assert text["target"] == "white" and text["sentence"].startswith('"white"')
    alphas = [u["alpha"] for u in text["persuasive"]]
    assert 0 < len(alphas) <= 5 and alphas == sorted(alphas, reverse=True)
    assert all(a > 0 for a in alphas) and all(u["alpha"] < 0 for u in text["inhibitive"])
    status, body = call(f"{url}/api/text?task=vqa&image={image}&text=what+color+is+the+"
                        "circle%3F&layer=attended")
    assert status == 400 and "depends on the question" in body["error"]


def test_serve_command_bad_input_is_one_line(capsys, monkeypatch):
    for argv, says in [
        (["--model", "caption"], "--model 'caption': give TASK=NAME with TASK one of"),
        (["--model", "classify=nonesuch", "--port", "0"], "nonesuch"),
        (["--port", "70000"], "--port 70000 is out of range; valid: 0..65535"),
        (["--max-upload", "0"], "--max-upload must be a positive number of MB, got 0"),
        (["--probe", "nowhere"], "--probe 'nowhere' is neither 'shapes' nor a Broden"),
    ]:
        assert main(["serve", *argv]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    assert main(["serve", "--port", str(taken.getsockname()[1])]) == 2
    assert "cannot listen on 127.0.0.1:" in capsys.readouterr().err
    taken.close()
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == ("vlx serve needs the serve extra: "
                                       "pip install -e '.[serve]'\n")


def test_serve_command_listens_on_this_machine_and_stops_on_ctrl_c():
    process = subprocess.Popen(
        [sys.executable, "-m", "vlx", "serve", "--port", "0", "--model", "classify=shapes"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("vlx serve: http://127.0.0.1:"), line + process.stderr.read()
        base = line.split()[2].rstrip("/")
        page, _ = fetch(base + "/")
        script, _ = fetch(base + "/static/app.js")
        assert b'<script src="/static/app.js">' in page and b"fetch(" in script
        assert not any(b"://" in text for text in (page, script))  # nothing from elsewhere
        assert call(base + "/api/config")[1]["tasks"]["classify"]["model"] == "shapes"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
    finally:
        process.kill()
        process.wait()



@pytest.mark.parametrize("captioner,answerer", [("vit_gpt2", "vilt"), ("idefics3", "qwen2_vl")])
def test_hugging_face_models_are_served_through_the_same_contract(captioner, answerer, tmp_path):
    """`--model caption=hf:DIR` and `vqa=hf:DIR`: a tiny VisionEncoderDecoder and ViLT, and
    two generative VLMs (tiles, and Qwen2-VL's own grid)."""
    import hf_tiny
    import vlm_tiny

    from vlx.serve.session import Demo
    from vlx.tasks.loading import load_task

    builders = {**vars(hf_tiny), **vlm_tiny.VLM_FAMILIES}
    models = {"caption": f"hf:{builders[captioner](tmp_path / captioner)}",
              "vqa": f"hf:{builders[answerer](tmp_path / answerer)}"}
    tasks = {kind: load_task(kind, name) for kind, name in models.items()}
    photo = hf_tiny.noise_image()
    stream = io.BytesIO()
    photo.save(stream, "PNG")
    with running(Demo(tasks, models)) as url:
        status, body = call(f"{url}/api/images?name=noise.png", stream.getvalue())
        assert status == 200
        image = body["image"]
        listed = ask(url, "/api/analyze", task="caption", image=image)
        assert len(listed["targets"]) >= 2
        for position in (0, 1):
            shown = ask(url, "/api/explain", task="caption", image=image, target=position)
            expected, _ = direct_picture(tasks["caption"], photo, None, position)
            same_picture(picture(shown["panels"][0]["png"]), expected)
        forced = ask(url, "/api/explain", task="vqa", image=image, text=QUESTION, answer="blue")
        expected, _ = direct_picture(tasks["vqa"], photo, QUESTION, "blue")
        same_picture(picture(forced["panels"][0]["png"]), expected)
        assert ask(url, "/api/record.json", task="vqa", image=image, text=QUESTION,
                   forced=["blue"])["model"] == models["vqa"]
