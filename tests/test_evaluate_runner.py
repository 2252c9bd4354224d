"""Evaluation at scale: batched, built in loader workers, resumable from the parts written,
split between torchrun processes; the numbers are the same however the run is cut."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vlx.cli import main


def evaluate(argv: list[str], capsys) -> dict:
    assert main(["evaluate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_batches_and_workers_change_nothing(capsys) -> None:
    argv = ["pointing", "--task", "vqa", "--images", "8"]
    alone = evaluate(argv, capsys)["categories"]
    batched = evaluate([*argv, "--batch-size", "3", "--workers", "2"], capsys)["categories"]
    for category, row in alone.items():
        assert batched[category]["count"] == row["count"]
        for key in ("accuracy", "described", "centre", "answered", "attention"):
            assert batched[category][key] == row[key], (category, key)
        assert batched[category]["random"] == pytest.approx(row["random"], rel=1e-12)


def test_an_interrupted_evaluation_resumes_from_its_parts(tmp_path, capsys, monkeypatch) -> None:
    argv = ["energy", "--task", "caption", "--images", "5", "--method", "gradcam"]
    straight = evaluate(argv, capsys)
    from vlx.evaluate import runner

    real, calls = runner._write, []

    def interrupt(*args) -> None:
        if len(calls) == 1:
            raise KeyboardInterrupt
        calls.append(args)
        real(*args)

    monkeypatch.setattr(runner, "_write", interrupt)
    monkeypatch.setattr(runner, "measure", _with_part_size(runner.measure, 2))
    out = tmp_path / "eval"
    assert main(["evaluate", *argv, "--out", str(out), "--json"]) == 130
    capsys.readouterr()
    assert len(list((out / "records").glob("*.json"))) == 1
    monkeypatch.setattr(runner, "_write", real)
    resumed = evaluate([*argv, "--out", str(out)], capsys)
    assert resumed["methods"] == straight["methods"]
    assert json.loads((out / "summary.json").read_text())["methods"] == straight["methods"]
    assert len(list((out / "records").glob("*.json"))) == 3  # 5 scenes, parts of 2


def _with_part_size(measure, size):
    def measured(*args, **kwargs):
        return measure(*args, **{**kwargs, "part_size": size})

    return measured


def test_two_torchrun_processes_evaluate_as_one(tmp_path, capsys) -> None:
    argv = ["pointing", "--task", "caption", "--images", "6"]
    one = evaluate(argv, capsys)
    out = tmp_path / "eval"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", "29519", "-m", "vlx", "evaluate", *argv, "--out", str(out), "--json"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    two = json.loads(done.stdout)
    for category, row in one["categories"].items():
        assert two["categories"][category]["count"] == row["count"]
        assert two["categories"][category]["accuracy"] == row["accuracy"]
        assert two["categories"][category]["described"] == row["described"]
