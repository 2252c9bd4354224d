"""examples/collect_report.py: the report holds the tables the scripts last wrote."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def collect_report(load_example):
    return load_example("collect_report")


def _docs(tmp_path: Path, names: list[str], value: str) -> Path:
    (tmp_path / "results").mkdir(exist_ok=True)
    (tmp_path / "figures").mkdir(exist_ok=True)
    for name in names:
        (tmp_path / "results" / f"{name}.md").write_text(
            f"# Title of {name}\n\nIntro.\n\n## Part\n\n| a |\n|---|\n| {value} |\n"
        )
        (tmp_path / "figures" / f"{name}_1.png").write_bytes(b"png")
    (tmp_path / "REPORT.md").write_text("# Report\n\nWritten by hand.\n")
    return tmp_path


def test_collects_every_experiment_in_order_and_replaces_an_earlier_run(tmp_path, collect_report):
    names = [name for name, _ in collect_report.EXPERIMENTS]
    docs = _docs(tmp_path, names, "first")
    collect_report.collect(docs)
    (docs / "results" / f"{names[0]}.md").write_text("# Title again\n\n| a |\n|---|\n| second |\n")
    collect_report.collect(docs)
    report = (docs / "REPORT.md").read_text()
    assert report.startswith("# Report\n\nWritten by hand.\n")
    assert report.count(collect_report.HEADING) == 1
    titles = [line for line in report.splitlines() if line.startswith("### ")]
    assert titles == ["### Title again"] + [f"### Title of {n}" for n in names[1:]]
    assert "| second |" in report and report.count("| first |") == len(names) - 1
    assert "#### Part" in report and f"![{names[1]}_1](figures/{names[1]}_1.png)" in report
    assert f"Rerun: `python examples/{collect_report.EXPERIMENTS[1][1]}`" in report


def test_refuses_while_a_script_has_not_run(tmp_path, collect_report):
    docs = _docs(tmp_path, [collect_report.EXPERIMENTS[0][0]], "x")
    with pytest.raises(SystemExit, match="no results yet for"):
        collect_report.collect(docs)
    assert (docs / "REPORT.md").read_text() == "# Report\n\nWritten by hand.\n"
