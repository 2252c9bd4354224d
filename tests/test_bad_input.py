"""A battery of bad input, as a careless or hostile user would give it: each is exit status 2,
one line naming the bad value and what would be valid, and nothing new in ``--out``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlx.cli import main
from vlx.models.registry import checkpoint_path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Broken and wrong files, made once."""
    root = tmp_path_factory.mktemp("bad")
    found = {}
    found["empty.pt"] = root / "empty.pt"
    found["empty.pt"].write_bytes(b"")
    found["tensor.pt"] = root / "tensor.pt"
    torch.save(torch.zeros(3), found["tensor.pt"])
    good = checkpoint_path("captioner_shapes").read_bytes()
    found["truncated.pt"] = root / "truncated.pt"
    found["truncated.pt"].write_bytes(good[: len(good) // 2])
    found["noise.pt"] = root / "noise.pt"
    found["noise.pt"].write_bytes(np.random.default_rng(0).bytes(4096))

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > /dev/null",))

    found["pickle.pt"] = root / "pickle.pt"
    torch.save({"state_dict": Payload()}, found["pickle.pt"])
    photo = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    found["photo.png"] = root / "photo.png"
    Image.fromarray(photo).save(found["photo.png"])
    found["cut.png"] = root / "cut.png"
    whole = found["photo.png"].read_bytes()
    found["cut.png"].write_bytes(whole[: len(whole) // 2])
    found["file"] = root / "a-file"
    found["file"].write_text("not a folder")
    return found


def fails(argv: list[str], message: str, out: Path, capsys) -> None:
    """``argv`` exits 2 with ``message`` on one line, and writes nothing under ``out``."""
    before = set(out.rglob("*")) if out.exists() else None
    try:
        code = main(argv)
    except SystemExit as exit_:  # option errors exit from the parser
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert message in err, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    if before is None:
        assert not out.exists()
    else:
        assert set(out.rglob("*")) == before


CHECKPOINTS = [
    ("empty.pt", "is empty (0 bytes)"),
    ("tensor.pt", "holds a bare Tensor, not a checkpoint written by `vlx train`"),
    ("truncated.pt", "is not a readable checkpoint (corrupt or truncated)"),
    ("noise.pt", "is not a readable checkpoint"),
    ("pickle.pt", "is refused: it holds Python objects besides tensors"),
]


@pytest.mark.parametrize(("name", "message"), CHECKPOINTS)
def test_broken_checkpoints_for_every_command(name, message, files, tmp_path, capsys) -> None:
    path = str(files[name])
    out = tmp_path / "out"
    fails(["caption", "--checkpoint", path, "--out", str(out)], message, out, capsys)
    fails(["vqa", "--model", path, "--out", str(out)], message, out, capsys)
    fails(["explain", str(files["photo.png"]), "--model", f"shapes:{path}", "--out", str(out)],
          message, out, capsys)
    fails(["train", "captioner", "--init", path, "--out", str(tmp_path / "new.pt")], message,
          tmp_path / "new.pt", capsys)
    assert "weights_only=False" not in message


def test_checkpoints_of_the_wrong_kind(files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    vqa = str(checkpoint_path("vqa_coattention_shapes"))
    captioner = str(checkpoint_path("captioner_shapes"))
    fails(["caption", "--checkpoint", vqa, "--out", str(out)],
          "holds a VQA model (`vlx train vqa`), not a Show-and-Tell captioner", out, capsys)
    fails(["explain", str(files["photo.png"]), "--model", f"shapes:{captioner}", "--out",
           str(out)], "not a ShapesWorld classifier", out, capsys)
    fails(["vqa", "--model", captioner, "--out", str(out)], "not a VQA model", out, capsys)


def test_outputs_that_cannot_be_written_are_refused_before_any_work(files, tmp_path, capsys):
    photo = str(files["photo.png"])
    blocked = str(files["file"])
    fails(["explain", photo, "--model", "shapes", "--out", blocked], "is a file; give a folder",
          files["file"].parent / "never", capsys)
    fails(["caption", "--out", f"{blocked}/sub"], "is a file", files["file"].parent / "never",
          capsys)
    fails(["vqa", "--out", "/proc/vlx-out"], "cannot write in '/proc'", Path("/proc/vlx-out"),
          capsys)
    fails(["train", "classifier", "--out", str(tmp_path)], "is a folder; give a file name",
          tmp_path / "model.pt", capsys)
    fails(["train", "classifier", "--out", "/proc/model.pt"], "cannot write in '/proc'",
          Path("/proc/model.pt"), capsys)
    fails(["evaluate", "sanity", "--task", "classify", "--images", "1", "--figure",
           str(tmp_path)], f"is a folder; give a file name, e.g. '{tmp_path / 'fig2.png'}'",
          tmp_path, capsys)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explain", "--demo", "--layer", "classifier"],
         "layer 'classifier' gives shape (2, 1000), not a spatial map"),
        (["explain", "--demo", "--model", "torch.nn:Linear"],
         "torch.nn:Linear() could not build a model"),
        (["explain", "--demo", "--model", "torch.nn:Identity"], "not class scores"),
        (["explain", "--demo", "--method", ""], "unknown method ''"),
        (["explain", "--demo", "--max-side", "0"], "--max-side must be at least 16"),
        (["explain", "--demo", "--target", "281", "--target", "tigre cat"], "closest classes"),
        (["caption", "--layer", "lstm"], "spatial layers: "),
        (["caption", "--caption", "red " * 201], "captions of at most 200"),
        (["caption", "--beam", "1"], "--beam must be 0 (greedy) or a width of at least 2"),
        (["caption", "--text", "--probe", "/nowhere"], "--probe '/nowhere' is neither"),
        (["caption", "--text", "--probe-images", "0"], "--probe-images must be at least 1"),
        (["vqa", "--text", "--layer", "attended"], "depends on the question"),
        (["vqa", "--answers", "reed"], "cannot answer 'reed'; closest answers: red"),
        (["vqa", "--method", "gradcam,"], None),
        (["train", "vqa", "--model", "lstm-cnn", "--lr", "nan", "--out", "{tmp}/m.pt"],
         "--lr must be a positive number, got nan"),
        (["train", "classifier", "--steps", "0", "--out", "{tmp}/m.pt"],
         "--steps must be at least 1"),
        (["evaluate", "pointing", "--task", "vqa", "--checkpoint", "/nonexistent.pt"],
         "--checkpoint names a captioner checkpoint"),
        (["evaluate", "pointing", "--task", "caption", "--checkpoint", "/nonexistent.pt"],
         "does not exist"),
        (["evaluate", "deletion", "--task", "vqa", "--method", ""], "unknown method ''"),
        (["evaluate", "energy", "--task", "caption", "--images", "1000000"],
         "the ShapesWorld test split holds 10000 scenes"),
    ],
)
def test_one_line_errors(argv, message, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] in ("explain", "caption", "vqa"):
        argv += ["--out", str(out)]
    if message is None:  # a valid method list ("gradcam,") is not an error
        return
    fails(argv, message, out, capsys)


def test_images_pillow_cannot_read_or_refuses(files, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "out"
    fails(["explain", str(files["cut.png"]), "--out", str(out)], "cannot read image", out, capsys)
    fails(["explain", str(files["file"]), "--out", str(out)], "is not an image Pillow can read",
          out, capsys)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)  # a 40 x 30 photo is 1200 pixels
    fails(["explain", str(files["photo.png"]), "--out", str(out)],
          "has more than 600 pixels, Pillow's limit against decompression bombs", out, capsys)


def test_training_never_replaces_or_relabels_a_checkpoint(tmp_path, capsys) -> None:
    out = tmp_path / "c.pt"
    assert main(["train", "classifier", "--steps", "2", "--batch", "2", "--eval-images", "2",
                 "--image-size", "32", "--out", str(out)]) == 0
    capsys.readouterr()
    written = out.read_bytes()
    fails(["train", "classifier", "--steps", "3", "--image-size", "32", "--out", str(out)],
          "already exists; --resume continues it, --force replaces it", tmp_path, capsys)
    fails(["train", "classifier", "--resume", "--steps", "1", "--out", str(out)],
          "has trained 2 steps already", tmp_path, capsys)
    assert out.read_bytes() == written
    assert main(["train", "classifier", "--steps", "2", "--batch", "2", "--eval-images", "2",
                 "--image-size", "32", "--force", "--out", str(out)]) == 0
    fresh = tmp_path / "fresh.pt"
    with pytest.warns(UserWarning, match="does not exist yet; starting a new run"):
        assert main(["train", "classifier", "--resume", "--steps", "1", "--batch", "2",
                     "--eval-images", "2", "--image-size", "32", "--out", str(fresh)]) == 0


def test_a_damaged_probe_cache_is_rebuilt_and_a_damaged_broden_folder_is_one_line(
    tmp_path, capsys, monkeypatch
) -> None:
    from vlx.dissect import load_probe

    monkeypatch.setenv("VLX_CACHE", str(tmp_path / "cache"))
    probe = load_probe("shapes", 3)
    index = probe.directory / "index.csv"
    whole = index.read_text()
    index.write_text(whole[: len(whole) - 40])  # cut inside the last row
    again = load_probe("shapes", 3)  # vlx's own cache: written again
    assert len(again) == 3 and index.read_text() == whole
    broden = tmp_path / "broden"
    import shutil

    shutil.copytree(probe.directory, broden)
    (broden / "index.csv").write_text(whole[: len(whole) - 40])
    out = tmp_path / "out"
    fails(["dissect", "--model", "captioner", "--probe", str(broden), "--out", str(out)],
          "line 4 has", out, capsys)
