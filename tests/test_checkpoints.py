"""Checkpoints and their metadata: one source of truth inside the checkpoint, a copy beside."""

from __future__ import annotations

import json

import pytest
import torch

from vlx import checkpoints
from vlx.checkpoints import load_checkpoint, read_metadata, save_checkpoint


def test_a_kill_between_the_two_writes_leaves_metadata_that_agrees(tmp_path, monkeypatch) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(2)}, {"steps": 1})
    real = checkpoints.write_text_atomic

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # after the checkpoint was replaced, before its copy

    monkeypatch.setattr(checkpoints, "write_text_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2, "w": torch.ones(2)}, {"steps": 2})
    monkeypatch.setattr(checkpoints, "write_text_atomic", real)
    assert load_checkpoint(path)["step"] == 2
    assert json.loads(path.with_suffix(".json").read_text())["steps"] == 1  # the lagging copy
    assert read_metadata(path)["steps"] == 2  # read from the checkpoint, the copy repaired
    assert json.loads(path.with_suffix(".json").read_text())["steps"] == 2


def test_metadata_of_checkpoints_written_before_it_was_kept_inside(tmp_path) -> None:
    path = tmp_path / "old.pt"
    torch.save({"step": 3}, path)
    path.with_suffix(".json").write_text(json.dumps({"steps": 3}))
    assert read_metadata(path) == {"steps": 3}
