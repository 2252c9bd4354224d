"""examples/caption_localization.py end to end in its --fast mode."""

from __future__ import annotations

import json


def test_fast_run_scores_every_layer_and_target(tmp_path, load_example, capsys) -> None:
    module = load_example("caption_localization")
    rows = module.main(["--fast", "--out", str(tmp_path), "--json", str(tmp_path / "rows.json")])
    assert [(r["layer"], r["score"]) for r in rows] == [
        (layer, score) for layer in module.LAYERS for score in ("log-prob", "logit")
    ]
    for row in rows:
        assert 0 <= row["object_naming"] <= 1
        for category in ("colour", "shape"):
            assert row["pointing"][category]["accuracy"] >= row["pointing"][category]["described"]
    table = (tmp_path / "results" / "caption_localization.md").read_text()
    assert table in capsys.readouterr().out and table.count("| shipped | mean |") == 6
    assert json.loads((tmp_path / "rows.json").read_text()) == rows
    assert not list(tmp_path.rglob(".*"))
