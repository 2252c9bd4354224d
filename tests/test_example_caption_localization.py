"""examples/caption_localization.py end to end in its --fast mode."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_fast_run_scores_every_layer_and_target(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    spec = importlib.util.spec_from_file_location("caption_localization",
                                                  EXAMPLES / "caption_localization.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "caption_localization", module)
    spec.loader.exec_module(module)
    rows = module.main(["--fast", "--out", str(tmp_path), "--json", str(tmp_path / "rows.json")])
    assert [(r["layer"], r["score"]) for r in rows] == [
        (layer, score) for layer in module.LAYERS for score in ("log-prob", "logit")
    ]
    for row in rows:
        assert 0 <= row["object_naming"] <= 1
        for category in ("colour", "shape"):
            assert row["lenient"][category]["accuracy"] >= row["strict"][category]["accuracy"]
    table = (tmp_path / "results" / "caption_localization.md").read_text()
    assert table in capsys.readouterr().out and table.count("| shipped | mean |") == 6
    assert json.loads((tmp_path / "rows.json").read_text()) == rows
    assert not list(tmp_path.rglob(".*"))
