"""The shared training loop: schedule, clipping, checkpoints, resumption."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from torch import nn

from vlx.models import captioner_training
from vlx.models.captioner_training import CaptionerRecipe, CaptionerTraining, ShapesCaptions
from vlx.training import cosine_lr, optimise, recent_mean, train


def train_captioner(options: CaptionerTraining) -> dict:
    return train(CaptionerRecipe, options).metrics


def test_optimise_follows_the_schedule_and_checkpoints_before_the_end() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    rates, checkpoints, losses = [], [], []

    def step_loss(step: int) -> torch.Tensor:
        rates.append(optimizer.param_groups[0]["lr"])
        loss = model(torch.full((1, 3), float(step))).pow(2).sum()
        losses.append(loss.item())
        return loss

    mean = optimise(optimizer, 5, 0.1, step_loss, "test", start=1,
                    checkpoint=lambda done, loss: checkpoints.append((done, loss)),
                    checkpoint_every=2)
    assert rates == [cosine_lr(step, 5, 0.1) for step in range(1, 5)]
    assert [done for done, _ in checkpoints] == [2, 4]  # never at the last step: the caller saves
    assert checkpoints[0][1] == pytest.approx(losses[0])
    assert mean == pytest.approx(sum(losses) / 4)


def test_optimise_clips_only_the_given_parameters() -> None:
    clipped, free = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([clipped, free], lr=1.0)
    optimise(optimizer, 1, 1.0, lambda step: -(100 * clipped + 100 * free).sum(), "test",
             clipped=[clipped])
    # warm-up lr at step 0 is lr / 100; the clipped gradient has norm 5, the free one 100
    assert clipped.item() == pytest.approx(5 / 100) and free.item() == pytest.approx(100 / 100)


def test_recent_mean_and_fresh_optimizer_warning(tmp_path, monkeypatch) -> None:
    assert recent_mean([1.0] * 50 + [3.0] * 100) == 3.0 and math.isnan(recent_mean([]))
    monkeypatch.setattr(captioner_training, "VOCABULARY_CAPTIONS", 200)
    first = CaptionerTraining(out=tmp_path / "c.pt", steps=1, batch=2, eval_images=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_captioner(first)
    with pytest.warns(UserWarning, match="fresh optimizer"):  # a finished run keeps no state
        train_captioner(CaptionerTraining(out=first.out, steps=2, batch=2, eval_images=1,
                                          resume=True))


def test_resumed_captioner_training_equals_uninterrupted(tmp_path, monkeypatch) -> None:
    def options(name: str, **changes) -> CaptionerTraining:
        return CaptionerTraining(out=tmp_path / name, steps=4, batch=2, checkpoint_every=2,
                                 eval_images=2, **changes)

    monkeypatch.setattr(captioner_training, "VOCABULARY_CAPTIONS", 200)  # all the grammar's words
    train_captioner(options("straight.pt"))
    batch = ShapesCaptions.batch

    def crash_at_step_2(self, step: int, size: int):
        if step == 2:
            raise KeyboardInterrupt
        return batch(self, step, size)

    monkeypatch.setattr(ShapesCaptions, "batch", crash_at_step_2)
    with pytest.raises(KeyboardInterrupt):
        train_captioner(options("resumed.pt"))
    half = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert half["step"] == 2 and "optimizer" in half and "auxiliary" in half
    monkeypatch.setattr(ShapesCaptions, "batch", batch)
    train_captioner(options("resumed.pt", resume=True))
    expected = torch.load(tmp_path / "straight.pt", weights_only=True)["state_dict"]
    resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)["state_dict"]
    assert resumed.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=1e-6, msg=key)


def test_init_starts_a_new_run_from_a_captioner_at_another_stride(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(captioner_training, "VOCABULARY_CAPTIONS", 200)
    first = CaptionerTraining(out=tmp_path / "first.pt", steps=2, batch=2, eval_images=2)
    train_captioner(first)
    trained = torch.load(first.out, weights_only=True)
    calls = []
    original_load = captioner_training.ShowAndTell.load_state_dict

    def record(self, state, *args, **kwargs):
        calls.append({k: v.clone() for k, v in state.items()})
        return original_load(self, state, *args, **kwargs)

    monkeypatch.setattr(captioner_training.ShowAndTell, "load_state_dict", record)
    second = CaptionerTraining(out=tmp_path / "second.pt", steps=1, batch=2, eval_images=2,
                               init=first.out, stride=4)
    train_captioner(second)
    assert calls and all(torch.equal(calls[0][k], v) for k, v in trained["state_dict"].items())
    fine = torch.load(second.out, weights_only=True)
    assert fine["step"] == 1 and fine["config"]["stride"] == 4
    assert json.loads(second.out.with_suffix(".json").read_text())["config"]["stride"] == 4
    assert fine["vocabulary"] == trained["vocabulary"]
    lineage = json.loads(second.out.with_suffix(".json").read_text())["init"]
    assert lineage["checkpoint"] == str(first.out) and lineage["metadata"]["steps"] == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"resume": True, "init": "first.pt"}, "give one of them"),
        ({"resume": True, "stride": 4}, "trained at stride 8"),
        ({"init": "missing.pt", "force": True}, "missing.pt: no such file"),
        ({"init": "first.pt", "force": True}, "also --out"),
        ({}, "already exists; --resume continues it, --force replaces it"),
        ({"resume": True, "force": True}, "--resume continues --out and --force replaces it"),
        ({"resume": True, "steps": 0}, "has trained 1 steps already"),
        ({"resume": True, "receptive_field": 39}, "a trained one keeps its own"),
    ],
)
def test_captioner_training_start_errors(tmp_path, monkeypatch, changes, message) -> None:
    from vlx.errors import InputError

    monkeypatch.setattr(captioner_training, "VOCABULARY_CAPTIONS", 200)
    train_captioner(CaptionerTraining(out=tmp_path / "first.pt", steps=1, batch=2, eval_images=1))
    if "init" in changes:
        changes["init"] = tmp_path / changes["init"]
    fields = {"steps": 2, "batch": 2, "eval_images": 1, **changes}
    options = CaptionerTraining(out=tmp_path / "first.pt", **fields)
    with pytest.raises(InputError, match=message):
        train_captioner(options)


def test_init_with_no_steps_converts_a_captioner_to_stride_4(tmp_path, monkeypatch, capsys) -> None:
    from vlx.cli import main

    monkeypatch.setattr(captioner_training, "VOCABULARY_CAPTIONS", 200)
    first = tmp_path / "first.pt"
    train_captioner(CaptionerTraining(out=first, steps=1, batch=2, eval_images=1))
    converted = tmp_path / "converted.pt"
    args = ["train", "captioner", "--init", str(first), "--stride", "4", "--steps", "0",
            "--eval-images", "2", "--out", str(converted)]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "loss" not in printed["metrics"] and printed["metrics"]["eval_images"] == 2
    before = torch.load(first, weights_only=True)
    after = torch.load(converted, weights_only=True)
    assert after["config"] == {**before["config"], "stride": 4} and after["step"] == 0
    for key, value in before["state_dict"].items():
        assert torch.equal(after["state_dict"][key], value), key
    assert main(["train", "captioner", "--steps", "0", "--out", str(tmp_path / "x.pt")]) == 2
