"""Dataset runs (`--data`): streamed batches into a Parquet table, bad files recorded and
skipped, resumable after an interruption, and split between torchrun processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vlx.cli import main
from vlx.data.shapes import SPLITS, ShapesWorld, write_coco
from vlx.task import Example
from vlx.tasks.loading import load_task

FIRST = SPLITS["test"][0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Eight ShapesWorld scenes as PNGs (some in a subfolder), a file that is no image and a
    truncated PNG."""
    root = tmp_path_factory.mktemp("images")
    world = ShapesWorld(seed=0)
    (root / "sub").mkdir()
    for i in range(8):
        Image.fromarray(world.scene(FIRST + i).image).save(
            root / ("sub" if i % 3 == 0 else ".") / f"scene{i}.png")
    (root / "notes.png").write_text("not an image")
    whole = (root / "scene1.png").read_bytes()
    (root / "cut.png").write_bytes(whole[: len(whole) // 3])
    return root


def table(out: Path) -> pd.DataFrame:
    frame = pd.read_parquet(out / "explanations")
    return frame.sort_values(["index", "method", "target"]).reset_index(drop=True)


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_a_folder_in_batches_equals_each_image_alone(folder, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code, _ = run(["explain", "--data", str(folder), "--model", "shapes", "--out", str(out),
                   "--batch-size", "3", "--part-size", "4", "--workers", "2",
                   "--method", "gradcam,guided-backprop", "--save-alphas"], capsys)
    assert code == 1  # two files failed
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["example"] for e in errors] == ["cut.png", "notes.png"]
    assert "cannot read image" in errors[0]["reason"] and "not an image" in errors[1]["reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["examples"], summary["explained"], summary["failed"]) == (10, 8, 2)
    rows = table(out)
    assert len(rows) == summary["rows"] == 8 * 2
    task = load_task("classify", "shapes")
    for _, row in rows[rows.method == "gradcam"].iterrows():
        image = Image.open(folder / row.example).convert("RGB")
        batch = task.prepare([Example(image)])
        alone = task.explain(batch, task.targets(batch), "gradcam")
        expected = alone.maps[0, 0]
        assert row.target_name == alone.targets[0][0]
        grid = np.asarray(row["map"], dtype=np.float32).reshape(row.map_height, row.map_width)
        np.testing.assert_allclose(grid, expected.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(row.alphas, alone.alphas[0, 0].numpy(), rtol=1e-5, atol=1e-7)
        assert row.predicted == task.predict(batch, 1)[0][0].name
        assert [row.peak_x, row.peak_y] == alone.peaks((128, 128))[0, 0].tolist()
    # every part is on disk, and nothing half-written is left
    assert sorted(p.name for p in (out / "explanations").iterdir()) == [
        "part-00000-000000.parquet", "part-00000-000001.parquet", "part-00000-000002.parquet"]
    assert not [p for p in out.rglob(".*")]


def test_an_interrupted_run_resumed_equals_an_uninterrupted_one(folder, tmp_path, capsys,
                                                                monkeypatch) -> None:
    argv = ["explain", "--data", str(folder), "--model", "shapes", "--batch-size", "2",
            "--part-size", "3", "--workers", "0"]
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    run([*argv, "--out", str(straight)], capsys)
    import vlx.runs.run as runner

    real = runner.write_part
    written = []

    def interrupt(out, rank, part, *rest):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(part)
        return real(out, rank, part, *rest)

    monkeypatch.setattr(runner, "write_part", interrupt)
    code, err = run([*argv, "--out", str(cut)], capsys)
    assert code == 130 and "interrupted" in err
    assert len(list((cut / "explanations").glob("*.parquet"))) == 2
    monkeypatch.setattr(runner, "write_part", real)
    assert run([*argv, "--out", str(cut)], capsys)[0] == 1
    a, b = table(straight), table(cut)
    assert a.drop(columns="map").equals(b.drop(columns="map"))
    assert all(np.array_equal(x, y) for x, y in zip(a["map"], b["map"]))
    assert (cut / "errors.jsonl").read_text() == (straight / "errors.jsonl").read_text()
    code, err = run([*argv[:-4], "--batch-size", "4", "--part-size", "3", "--workers", "0",
                     "--out", str(cut)], capsys)
    assert code == 2 and "holds a run with batch_size 2, not 4" in err


def test_two_torchrun_processes_equal_one(folder, tmp_path, capsys) -> None:
    args = ["explain", "--data", str(folder), "--model", "shapes", "--batch-size", "2",
            "--part-size", "3", "--workers", "0"]
    one = tmp_path / "one"
    run([*args, "--out", str(one)], capsys)
    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", "29517", "-m", "vlx", *args, "--out", str(two)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert "explained 8 of 10 examples" in done.stdout, done.stderr[-2000:]
    names = sorted(p.name for p in (two / "explanations").iterdir())
    assert names[0].startswith("part-00000-") and names[-1].startswith("part-00001-")
    a, b = table(one), table(two)
    exact = [c for c in a.columns if c not in ("map", "score")]
    assert a[exact].equals(b[exact])  # the same rows: examples, targets, peaks
    np.testing.assert_allclose(a.score, b.score, rtol=1e-5)
    assert all(np.allclose(x, y, rtol=1e-5, atol=1e-5) for x, y in zip(a["map"], b["map"]))
    summary = json.loads((two / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["explained"] == 8


def test_captions_and_questions_through_data(tmp_path, capsys) -> None:
    out = tmp_path / "caption"
    assert run(["caption", "--data", "shapes:3", "--out", str(out), "--batch-size", "2",
                "--workers", "0"], capsys)[0] == 0
    rows = table(out)
    captioner = load_task("caption")
    world = ShapesWorld(seed=0)
    for i in range(3):
        batch = captioner.prepare([Example(Image.fromarray(world.scene(FIRST + i).image))])
        words = captioner.predict(batch)[0][0].words
        mine = rows[rows.example == f"shapes-test-{i}"]
        assert list(mine.target_name) == list(words) and set(mine.caption) == {" ".join(words)}
        alone = captioner.explain(batch, captioner.targets(batch))
        np.testing.assert_allclose(mine.score, alone.scores[0].numpy(), rtol=1e-5, atol=1e-6)
    out = tmp_path / "vqa"
    assert run(["vqa", "--data", "shapes:2", "--out", str(out), "--workers", "0",
                "--answers", "red"], capsys)[0] == 0
    rows = table(out)
    asked = [q.text for i in range(2) for q in world.scene(FIRST + i).questions()]
    assert sorted(set(rows.question)) == sorted(set(asked))
    vqa = load_task("vqa")
    first = rows[rows["index"] == 0]
    batch = vqa.prepare([Example(Image.fromarray(world.scene(FIRST).image), asked[0])])
    predicted = vqa.predict(batch, 1)[0][0].name
    assert set(first.target_name) == {predicted, "red"}  # the prediction and the forced answer
    assert set(first.predicted) == {predicted}


def test_sources_csv_lists_coco_and_voc(folder, tmp_path, capsys) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text(f"{folder / 'scene1.png'}\n# a comment\n{folder / 'scene2.png'}\n")
    out = tmp_path / "list"
    assert run(["explain", "--data", str(listing), "--model", "shapes", "--out", str(out),
                "--workers", "0"], capsys)[0] == 0
    assert list(table(out).example) == [str(folder / "scene1.png"), str(folder / "scene2.png")]
    questions = tmp_path / "q.csv"
    questions.write_text(f"image,question,targets\n{folder / 'scene2.png'},what color is the "
                         "star?,red;blue\n")
    out = tmp_path / "csv"
    assert run(["vqa", "--data", f"csv:{questions}", "--out", str(out), "--workers", "0"],
               capsys)[0] == 0
    rows = table(out)
    assert list(rows.target_name) == ["red", "blue"] and set(rows.question) == {
        "what color is the star?"}
    coco = write_coco(ShapesWorld(seed=0), tmp_path / "coco", FIRST, 2)
    out = tmp_path / "coco-out"
    assert run(["caption", "--data", f"coco:{coco / 'captions.json'},{coco / 'images'}",
                "--out", str(out), "--workers", "0"], capsys)[0] == 0
    captions = set(table(out).caption)
    assert captions == {ShapesWorld(seed=0).scene(FIRST + i).caption() for i in range(2)}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explain", "--data", "/nowhere"], "is neither a folder, a file nor a known form"),
        (["explain", "--data", "shapes:0"], "give a number of test scenes, 1..10000"),
        (["vqa", "--data", "{folder}"], "gives no questions"),
        (["explain", "--data", "shapes:2", "--demo"], "give it without IMAGE files or --demo"),
        (["explain", "--data", "shapes:2", "--text"], "--text is for single images"),
        (["explain", "--data", "shapes:2", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["explain", "--data", "shapes:2", "--part-size", "0"], "--part-size must be at least 1"),
        (["explain", "--data", "{folder}", "--model", "shapes", "--fail-fast", "--workers", "0"],
         "example 'cut.png': cannot read image"),
    ],
)
def test_dataset_run_errors(argv, message, folder, tmp_path, capsys) -> None:
    argv = [a.replace("{folder}", str(folder)) for a in argv]
    code, err = run([*argv, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_python_dash_m_vlx_is_the_command() -> None:
    done = subprocess.run([sys.executable, "-m", "vlx", "explain", "--help"],
                          capture_output=True, text=True, check=True)
    assert "--data SOURCE" in done.stdout and "--save-alphas" in done.stdout
