"""Collect the experiments' tables into docs/REPORT.md.

Each experiment script writes ``docs/results/<name>.md``; this appends them, in the paper's
order, under one heading at the end of the report (replacing what an earlier run appended), so
the report always holds the tables the scripts last produced. The sections above that heading
are written by hand.

    python examples/collect_report.py [--docs docs]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from vlx.files import write_text_atomic

HEADING = "## Experiments, as the scripts wrote them"
EXPERIMENTS = (  # (results name, the script that writes it), in the paper's order
    ("gradcam_equals_cam", "gradcam_equals_cam.py"),
    ("table3_ablations", "table3_ablations.py"),
    ("model_comparison", "model_comparison.py"),
    ("adversarial", "adversarial.py"),
    ("dataset_bias", "dataset_bias.py"),
    ("caption_words", "caption_words.py"),
    ("vqa_answers", "vqa_answers.py"),
    ("dissection", "dissection_report.py"),
    ("leaderboard", "leaderboard.py"),
)
FIGURES_PER_SECTION = 4


def section(docs: Path, name: str, script: str) -> str:
    """One results file as a report section: its title one level down, its figures linked
    relative to the report (files that embed their figures keep their own links)."""
    lines = (docs / "results" / f"{name}.md").read_text().strip().splitlines()
    title, body = lines[0].lstrip("# ").strip(), "\n".join(lines[1:]).strip()
    body = re.sub(r"^## ", "#### ", body, flags=re.MULTILINE).replace("](../figures/", "](figures/")
    text = f"### {title}\n\nRerun: `python examples/{script}`\n\n{body}\n"
    if "](figures/" not in body:
        figures = sorted((docs / "figures").glob(f"{name}*.png"))[:FIGURES_PER_SECTION]
        text += "".join(f"\n![{f.stem}](figures/{f.name})\n" for f in figures)
    return text


def collect(docs: Path) -> Path:
    report = docs / "REPORT.md"
    written = report.read_text()
    kept = written[: written.index(HEADING)] if HEADING in written else written
    missing = [n for n, _ in EXPERIMENTS if not (docs / "results" / f"{n}.md").is_file()]
    if missing:
        raise SystemExit(f"no results yet for {', '.join(missing)}: run their scripts first")
    intro = (
        "Each section below is the file `docs/results/<name>.md` its script wrote on this repo's "
        "shipped models (figures in `docs/figures/`); rerun the command to regenerate it, then "
        "`python examples/collect_report.py`. Every script takes `--fast` (seconds, what the "
        "tests run) and `--device`.\n"
    )
    sections = "\n".join(section(docs, name, script) for name, script in EXPERIMENTS)
    return write_text_atomic(report, f"{kept.rstrip()}\n\n{HEADING}\n\n{intro}\n{sections}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="docs folder (docs)")
    print(collect(parser.parse_args().docs))


if __name__ == "__main__":
    main()
