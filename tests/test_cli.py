"""The `vlx explain` command: the JSON summary, the files, and every bad-input case."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlx.cli import main

SMALL = ["--model", "mobilenet_v3_small"]  # random weights: fast, for input handling


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.warns(UserWarning) if "mobilenet_v3_small" in argv else _nothing():
        code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    gradient = np.linspace(0, 255, 64 * 48 * 3).reshape(48, 64, 3).astype(np.uint8)
    Image.fromarray(gradient).save(path)
    return path


def test_help_is_fast_to_reach_and_lists_commands():
    done = subprocess.run(
        [sys.executable, "-c", "import sys, vlx.cli; sys.exit(vlx.cli.main(['--help']))"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0 and "explain" in done.stdout
    # parsing the command line imports no torch: `vlx --help` stays fast
    probe = "import sys, vlx.cli; vlx.cli.build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    assert done.stdout.strip() == "False"


def test_demo_json_summary_and_files(tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run(
        ["explain", "--demo", "--json", "--top-k", "3", "--out", str(out),
         "--method", "gradcam,guided-gradcam"],
        capsys,
    )
    assert code == 0
    summary = json.loads(stdout)
    assert summary["layer"] == "bn2" and len(summary["images"]) == 2
    cat, coffee = summary["images"]
    assert cat["predictions"][0]["name"] in {"Egyptian cat", "tiger cat", "tabby"}
    assert coffee["predictions"][0]["name"] == "espresso"
    assert len(cat["predictions"]) == 3
    for entry, (width, height) in zip(summary["images"], [(451, 300), (600, 400)]):
        assert [t["method"] for t in entry["targets"]] == ["gradcam", "guided-gradcam"]
        for target in entry["targets"]:
            assert target["index"] == entry["predictions"][0]["index"]
            x, y = target["peak"]
            assert 0 <= x < width and 0 <= y < height
            written = Image.open(target["files"][0])
            assert written.size == (width, height)
        assert all(Path(f).is_file() for f in entry["files"])
    assert len(list(out.iterdir())) == 2 * 3  # two pictures and one grid per image


def test_targets_by_name_and_index(photo, tmp_path, capsys):
    code, stdout, _ = run(
        ["explain", str(photo), *SMALL, "--json", "--target", "tiger cat", "285",
         "--out", str(tmp_path / "o")], capsys,
    )
    assert code == 0
    targets = json.loads(stdout)["images"][0]["targets"]
    assert [(t["index"], t["name"]) for t in targets] == [(282, "tiger cat"), (285, "Egyptian cat")]


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "P"])
def test_grayscale_rgba_16bit_and_palette_images_are_accepted(mode, tmp_path, capsys):
    path = tmp_path / f"image-{mode.replace(';', '')}.png"
    if mode == "I;16":
        Image.fromarray(np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50).save(path)
    else:
        Image.new("RGB", (40, 30), (200, 30, 30)).convert(mode).save(path)
    code, stdout, _ = run(["explain", str(path), *SMALL, "--json", "--out", str(tmp_path / "o")], capsys)
    assert code == 0
    assert Path(json.loads(stdout)["images"][0]["targets"][0]["files"][0]).is_file()


def _truncated(tmp_path: Path) -> Path:
    path = tmp_path / "truncated.jpg"
    Image.new("RGB", (64, 64), "blue").save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _text(tmp_path: Path) -> Path:
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    return path


@pytest.mark.parametrize(
    ("make_args", "named"),
    [
        (lambda p, t: [str(_text(t))], "notes.png"),
        (lambda p, t: [str(_truncated(t))], "truncated.jpg"),
        (lambda p, t: [str(t / "missing.jpg")], "missing.jpg"),
        (lambda p, t: [str(p), "--target", "tigre cat"], "tiger cat"),
        (lambda p, t: [str(p), "--target", "1000"], "0..999"),
        (lambda p, t: [str(p), "--layer", "features.99"], "features.9"),
        (lambda p, t: [str(p), "--top-k", "0"], "--top-k"),
    ],
    ids=["not-an-image", "truncated", "missing", "unknown-class", "class-index", "layer", "top-k"],
)
def test_bad_input_exits_2_with_one_line_and_no_files(make_args, named, photo, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["explain", *make_args(photo, tmp_path), *SMALL, "--out", str(out)]
    needs_model = any(flag in argv for flag in ("--target", "--layer"))
    with pytest.warns(UserWarning) if needs_model else _nothing():
        code = main(argv)
    _, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if "error" in line]
    assert code == 2
    assert len(errors) == 1 and named in errors[0], err
    assert not out.exists() or not any(out.iterdir())


def test_unknown_model_exits_2(photo, tmp_path, capsys):
    code = main(["explain", str(photo), "--model", "resnet5O", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "resnet5O" in err and "resnet50" in err


def test_unknown_method_is_rejected_by_the_parser(photo, capsys):
    with pytest.raises(SystemExit) as info:
        main(["explain", str(photo), "--method", "gradcam,gradcam+++"])
    assert info.value.code == 2
    assert "unknown method 'gradcam+++'" in capsys.readouterr().err


def test_cuda_without_a_gpu_is_a_clear_error(photo, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["explain", str(photo), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_json_into_a_closed_pipe_exits_without_a_traceback(tmp_path):
    # `vlx caption --json | head -c 0`: the reader is gone before the summary is printed
    command = [sys.executable, "-m", "vlx.cli", "caption", "--json", "--out", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait() == 1
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert list(tmp_path.glob("*_words.png")), "the figure is written before the summary"
