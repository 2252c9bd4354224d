"""`vlx evaluate road` over the task contract: the command's curves are the ROAD scores of each
scene's own map, and its options are checked before any work."""

from __future__ import annotations

import json
import zlib

import torch

from vlx.cli import main
from vlx.evaluate.road import road_scores
from vlx.evaluate.sources import evaluation_data
from vlx.explanation import upsample
from vlx.tasks.loading import load_task


def test_road_command_scores_each_scenes_own_map(capsys) -> None:
    code = main(["evaluate", "road", "--task", "classify", "--images", "2", "--method",
                 "gradcam", "--fractions", "0.25,0.75", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["fractions"] == [0.25, 0.75]
    task = load_task("classify", "shapes")
    data = evaluation_data(task, "shapes", 2, "road")
    curves = {"morf": [], "lerf": []}
    for group in data.groups:
        example = data.build(group)[0]
        batch = task.prepare([example])
        targets = task.targets(batch)  # the model's top class: ROAD needs no truth
        saliency = task.explain(batch, targets, "gradcam").maps
        image = batch.inputs[0]
        full = upsample(saliency, tuple(image.shape[-2:]))[0, 0]
        key = f"{example.name}|{example.text}|{targets.rows[0][0].id}|{targets.rows[0][0].name}"

        def score(edited: torch.Tensor, batch=batch, targets=targets) -> torch.Tensor:
            return task.probabilities(batch, targets, images=edited)[:, 0]

        for order, found in curves.items():
            found.append(road_scores(score, image, full, (0.25, 0.75), order, 0.01,
                                     zlib.crc32(key.encode())))
    for order, found in curves.items():
        expected = torch.stack(found).mean(dim=0)
        got = torch.tensor(summary["methods"]["gradcam"][order]["curve"])
        torch.testing.assert_close(got, expected.float(), rtol=0, atol=1e-5)
    # The most relevant pixels removed first cost the class more than the least relevant.
    assert summary["methods"]["gradcam"]["morf"]["mean"] < summary["methods"]["gradcam"]["lerf"]["mean"]


def test_bad_road_and_sanity_options_are_one_line_errors(tmp_path, capsys) -> None:
    for argv, message in [
        (["road", "--fractions", "0.5,1.5"], "fraction 1.5 is not in (0, 1)"),
        (["road", "--method", "gradcam,noise"], "unknown method 'noise'"),
        (["sanity", "--randomization", "shuffle"], "invalid choice: 'shuffle'"),
    ]:
        try:
            code = main(["evaluate", *argv, "--task", "classify"])
        except SystemExit as stop:
            code = stop.code
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main(["evaluate", "sanity", "--task", "classify", "--figure", str(folder)]) == 2
    assert "--figure" in capsys.readouterr().err
