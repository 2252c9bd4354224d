"""examples/leaderboard.py --fast: every metric per method and task, read the way the
`vlx evaluate` commands read them."""

from __future__ import annotations

import json

import pytest

from vlx.cli import main


def cli(capsys, *argv: str) -> dict:
    assert main(["evaluate", *argv, "--images", "1", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_board_has_every_method_and_reads_what_the_commands_report(
    tmp_path, load_example, capsys,
) -> None:
    results = load_example("leaderboard").main(["--fast", "--out", str(tmp_path)])
    capsys.readouterr()
    table = (tmp_path / "results" / "leaderboard.md").read_text()
    for kind in ("classify", "caption", "vqa"):
        assert set(results["results"][kind]) == {"gradcam", "guided-backprop", "random"}
    assert table.count("| gradcam |") == 3 and table.count("| random |") == 3
    assert set(results["cost"]) == {"gradcam", "guided-backprop"}
    assert all(ms > 0 for ms in results["cost"].values())
    classify = results["results"]["classify"]
    pointing = cli(capsys, "pointing", "--task", "classify", "--method", "guided-backprop")
    (row,) = pointing["categories"].values()
    assert classify["guided-backprop"]["pointing"] == row["accuracy"]
    deletion = cli(capsys, "deletion", "--task", "caption", "--method", "gradcam,random")
    for method in ("gradcam", "random"):
        assert results["results"]["caption"][method]["deletion"] == pytest.approx(
            deletion["methods"][method]["deletion"]["mean"], abs=1e-9)
    sanity = cli(capsys, "sanity", "--task", "classify", "--randomization", "data",
                 "--method", "gradcam")
    assert classify["gradcam"]["shuffled"]["passed"] == sanity["methods"]["gradcam"]["passed"]
    # as JSON text, where the undefined standard error of one scene (NaN) equals itself
    assert (json.dumps(classify["gradcam"]["shuffled"]["steps"], sort_keys=True)
            == json.dumps(sanity["methods"]["gradcam"]["steps"], sort_keys=True))
