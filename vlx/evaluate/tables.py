"""Markdown tables of the evaluations' summaries, each next to the paper's figure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vlx.evaluate.sanity import VERDICTS

PAPER = {
    ("pointing", "caption"): "30.0% pointing accuracy of per-word caption maps on COCO (Sec. 8.1.1)",
    ("faithfulness", "vqa"): (
        "rank correlation with occlusion on VQA: Grad-CAM 0.60, Guided Backprop 0.42 (Sec. 8.2)"
    ),
    ("faithfulness", "classify"): (
        "rank correlation with occlusion on PASCAL: Grad-CAM 0.254, Guided Backprop 0.168 "
        "(Sec. 5.3)"
    ),
    ("localization", "classify"): (
        "ILSVRC-15 val, VGG-16: Grad-CAM top-1 / top-5 localization error 56.51% / 46.41%, "
        "classification error 30.38% / 10.89% (Table 1)"
    ),
    ("pointing", "classify"): (
        "pointing with rejection on the top-5 classes: Grad-CAM 70.58% vs c-MWP 60.30% "
        "(Appendix D)"
    ),
    ("sanity", "classify"): (
        "Adebayo et al. 2018: Grad-CAM's maps change under model-parameter and data "
        "randomization; Guided Backprop's stay similar to the trained model's"
    ),
    ("energy", "caption"): (
        "DenseCap regions: mean inside/outside ratio Grad-CAM 3.27, Guided Backprop 2.32, "
        "Guided Grad-CAM 6.38 (Sec. 8.1)"
    ),
}


def _heading(summary: dict) -> list[str]:
    model = f", model {summary['model']}" if summary.get("model") else ""
    method = f", method {summary['method']}" if isinstance(summary.get("method"), str) else ""
    title = (
        f"{summary['metric']}, task {summary['task']}{model}{method}, {summary['data']} "
        f"(up to {summary['images']} images), layer {summary['layer']}"
    )
    return [title, ""]


def _paper(summary: dict) -> list[str]:
    return ["", f"paper: {summary['paper']}"] if summary.get("paper") else []


def _columns(rows: dict[str, dict], columns: list[tuple[str, str, Callable]]) -> list[str]:
    """A table of ``rows`` (name -> values) with the ``columns`` some row has."""
    shown = [c for c in columns if any(c[1] in row for row in rows.values())]
    lines = ["| | " + " | ".join(title for title, _, _ in shown) + " |",
             "|---|" + "---|" * len(shown)]
    for name, row in rows.items():
        cells = [fmt(row[key]) if key in row else "" for _, key, fmt in shown]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _percent(value: float) -> str:
    return f"{value:.1%}"


def pointing_table(summary: dict) -> str:
    """Per referent category: Grad-CAM's hits (on any instance the target names, on the one
    it describes), the model's own attention, the baselines, how often it answered right;
    or, with rejection, per threshold."""
    if "rejection" in summary:
        lines = _heading(summary) + [
            "| threshold | accuracy | hits | misses | false alarms | correct rejections |",
            "|---|---|---|---|---|---|",
        ]
        for row in summary["rejection"]:
            best = " (best)" if row["threshold"] == summary["best_threshold"] else ""
            lines.append(
                f"| {row['threshold']:g}{best} | {row['accuracy']:.1%} | {row['hit']} | "
                f"{row['miss']} | {row['false_alarm']} | {row['correct_rejection']} |"
            )
        note = ["", "the best threshold is chosen on the same images: an optimistic figure"]
        return "\n".join(lines + note + _paper(summary))
    rows = summary["categories"]
    described = [] if all(r.get("described") == r["accuracy"] for r in rows.values()) else [
        ("Grad-CAM (described instance)", "described", _percent)]
    columns = [("scored", "count", str), ("Grad-CAM (any instance)", "accuracy", _percent),
               *described, ("its attention", "attention", _percent),
               ("centre", "centre", _percent), ("random point", "random", _percent),
               ("answered correctly", "answered", _percent)]
    return "\n".join(_heading(summary) + _columns(rows, columns) + _unanswerable(summary)
                     + _paper(summary))


def localization_table(summary: dict) -> str:
    """ILSVRC errors over predictions; per referent category box accuracy and mean IoU."""
    setting = (f"box of the largest segment >= {summary['threshold']:g} x max, IoU >= "
               f"{summary['iou']:g}")
    if "errors" in summary:
        errors = summary["errors"]
        lines = _heading(summary) + [setting, "", "| | top-1 | top-5 |", "|---|---|---|"]
        for kind in ("localization", "classification"):
            lines.append(
                f"| {kind} error | {errors[f'top1_{kind}_error']:.1%} | "
                f"{errors[f'top5_{kind}_error']:.1%} |"
            )
        return "\n".join([*lines, "", f"images scored: {errors['images']}", *_paper(summary)])
    columns = [("scored", "count", str), (f"localized (IoU >= {summary['iou']:g})", "accuracy",
               _percent), ("mean IoU", "mean_iou", lambda v: f"{v:.3f}"),
               ("answered correctly", "answered", _percent)]
    return "\n".join(_heading(summary) + [setting, ""] + _columns(summary["categories"], columns)
                     + _unanswerable(summary))


def faithfulness_table(summary: dict) -> str:
    """Mean rank correlation with occlusion per method, with its standard error, and the
    first method's paired lead over each other method on the same cases."""
    methods = list(summary["methods"])
    lines = _heading(summary) + [
        f"| method | rank correlation | std. error | maps | {methods[0]} minus it (paired) |",
        "|---|---|---|---|---|",
    ]
    for method, row in summary["methods"].items():
        lead = (f"{row['difference']:+.3f} +- {row['difference_std_error']:.3f} "
                f"({row['difference_count']} cases)" if "difference" in row else "")
        lines.append(f"| {method} | {row['rank_correlation']:.3f} | {row['std_error']:.3f} | "
                     f"{row['count']} | {lead} |")
    return "\n".join(lines + _paper(summary))


def deletion_table(summary: dict) -> str:
    """Mean deletion (lower is better) and insertion (higher is better) areas per method."""
    lines = _heading(summary) + [
        "| method | deletion area (lower is better) | insertion area (higher is better) | maps |",
        "|---|---|---|---|",
    ]
    for method, row in summary["methods"].items():
        d, i = row["deletion"], row["insertion"]
        lines.append(
            f"| {method} | {d['mean']:.3f} ± {d['std_error']:.3f} | "
            f"{i['mean']:.3f} ± {i['std_error']:.3f} | {row['count']} |"
        )
    note = (f"{summary['steps']} steps; deletion to the zero image (the mean colour of "
            f"normalised inputs), insertion into the {summary['insertion_baseline']} baseline "
            "(Petsiuk et al. insert into a blur); ± one standard error")
    return "\n".join([*lines, "", note])


def energy_table(summary: dict) -> str:
    """Inside/outside ratio per method and referent category, next to a uniform map's 1.0."""
    lines = _heading(summary) + [
        "| method | referent | scored | median ratio | mean ratio (finite) | all-zero maps "
        + "| zero outside |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, rows in summary["methods"].items():
        for category, row in rows.items():
            lines.append(
                f"| {method} | {category} | {row['count']} | {row['median']:.2f} | "
                f"{row['mean']:.2f} ± {row['std_error']:.2f} | {row['undefined']} | "
                f"{row['infinite']} |"
            )
    lines.append(f"| uniform map | any | | {summary['uniform_map']:.2f} | | | |")
    return "\n".join(lines + _paper(summary))


def road_table(summary: dict) -> str:
    """MoRF (lower is better) and LeRF (higher is better) curves and their mean per method."""
    fractions = " | ".join(f"{f:.0%}" for f in summary["fractions"])
    lines = _heading(summary) + [
        f"| method | order | mean | {fractions} | maps |",
        "|---|---|---|" + "---|" * len(summary["fractions"]) + "---|",
    ]
    for method, row in summary["methods"].items():
        for order in ("morf", "lerf"):
            curve = " | ".join(f"{v:.3f}" for v in row[order]["curve"])
            shown = {"morf": "MoRF", "lerf": "LeRF"}[order]
            lines.append(f"| {method} | {shown} | {row[order]['mean']:.3f} ± "
                         f"{row[order]['std_error']:.3f} | {curve} | {row['count']} |")
    note = ("the target's probability with that share of pixels removed, most relevant first "
            "(MoRF: lower is better) or least relevant first (LeRF: higher is better), imputed "
            f"from their neighbours with noise of std {summary['noise']:g}; ± one standard error")
    return "\n".join([*lines, "", note])


def sanity_table(summary: dict) -> str:
    """Per method and step, the four similarities to the trained model's maps, and a verdict."""
    lines = _heading(summary) + [
        "| method | randomized | rank corr. | absolute rank corr. | SSIM | HOG | maps |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, row in summary["methods"].items():
        for step, values in row["steps"].items():
            cells = " | ".join(f"{values[name]['mean']:.3f}"
                               for name in ("spearman", "abs-spearman", "ssim", "hog"))
            lines.append(f"| {method} | {step} | {cells} | {values['count']} |")
    verdicts = ", ".join(f"{method} {VERDICTS[row['passed']]}"
                         for method, row in summary["methods"].items())
    mode = summary.get("mode", "data")
    note = (f"{mode} randomization: mean similarity of each map to the trained model's (1: the "
            f"same). A method passes where the absolute rank correlation is below "
            f"{summary['pass_below']:g} at every step: {verdicts}")
    return "\n".join([*lines, "", " ".join(note.split())])


def _unanswerable(summary: dict) -> list[str]:
    skipped = summary.get("unanswerable")
    return ["", f"{skipped} examples skipped: the model cannot name their true target"] if (
        skipped) else []


TABLES: dict[str, Callable[[dict[str, Any]], str]] = {
    "pointing": pointing_table,
    "localization": localization_table,
    "faithfulness": faithfulness_table,
    "deletion": deletion_table,
    "energy": energy_table,
    "road": road_table,
    "sanity": sanity_table,
}
