"""Which explanation deserves trust where: every method on every metric with ground truth.

The paper's methods and the CAM family, each scored by the same metrics on the shipped
ShapesWorld shape classifier (its class), captioner (the colour and shape words of the
reference caption) and co-attention VQA model (the correct answer of colour and shape
questions), with the held-out test scenes' ground truth: the pointing game, the energy inside
the referent, weakly-supervised localization, deletion / insertion, ROAD (MoRF / LeRF),
faithfulness (rank correlation with occlusion) and the sanity checks (cascading
model-parameter randomization; data randomization for the classifier). Cost: milliseconds to
explain 20 classes of one photo with EfficientNet-Lite0 (ImageNet weights), one thread.

    python examples/leaderboard.py           # the report's numbers
    python examples/leaderboard.py --fast    # 1 scene per metric, 2 methods, 2 classes timed
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from _shapes_classifiers import markdown_table, write_results

from vlx.evaluate import measures
from vlx.evaluate.runner import measure
from vlx.evaluate.sanity import VERDICTS
from vlx.evaluate.sources import evaluation_data
from vlx.images import DEMO_IMAGES, load_image
from vlx.task import Example, Task
from vlx.tasks.loading import load_task

NAME = "leaderboard"
METHODS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "scorecam",
           "ablationcam", "guided-gradcam", "guided-backprop", "deconvolution", "occlusion")
FAST_METHODS = ("gradcam", "guided-backprop")
TASKS = {"classify": ("shapes", "ShapesWorld classifier (its class)"),
         "caption": ("shapes", "captioner (colour and shape words)"),
         "vqa": ("coattention", "co-attention VQA (correct answers)")}
COUNTS = {"pointing": 100, "energy": 100, "localization": 100, "deletion": 20, "road": 20,
          "faithfulness": 30, "sanity": 10}
COST_TARGETS = 20


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    result.add_argument("--fast", action="store_true",
                        help="1 scene per metric, 2 methods, 2 classes timed (for the tests)")
    result.add_argument("--out", type=Path, default=Path("docs"),
                        help=f"writes OUT/results/{NAME}.md")
    result.add_argument("--scale", type=float, default=1.0,
                        help="multiplies every metric's scene count (1.0)")
    return result


def weighted(categories: dict[str, dict], key: str) -> float:
    """The mean of ``key`` over the categories, weighted by their counts."""
    total = sum(row["count"] for row in categories.values())
    return sum(row[key] * row["count"] for row in categories.values()) / total


def scores(task: Task, kind: str, methods: tuple[str, ...], count: dict[str, int]
           ) -> dict[str, dict[str, Any]]:
    """Per method, each metric's headline value on ``task``."""
    def data(metric: str):
        return evaluation_data(task, "shapes", count[metric], metric)

    table: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for method in methods:
        pointing = measure(task, data("pointing"), measures.Pointing(method=method))
        table[method]["pointing"] = weighted(pointing["categories"], "accuracy")
        if kind == "classify":
            located = measure(task, data("localization"),
                              measures.PredictedLocalization(method))["errors"]
            table[method]["localization"] = 1 - located["top1_localization_error"]
        else:
            located = measure(task, data("localization"), measures.Localization(method))
            table[method]["localization"] = weighted(located["categories"], "accuracy")
    energy = measure(task, data("energy"), measures.Energy(methods))["methods"]
    deletion = measure(task, data("deletion"), measures.Deletion([*methods, "random"]))["methods"]
    road = measure(task, data("road"), measures.Road([*methods, "random"]))["methods"]
    faithful = measure(task, data("faithfulness"), measures.Faithfulness(methods))["methods"]
    cascade = measure(task, data("sanity"), measures.ModelRandomization(methods))["methods"]
    shuffled = None
    if kind == "classify":
        other = load_task("classify", f"shapes:{permuted_classifier()}")
        shuffled = measure(task, data("sanity"),
                           measures.DataRandomization(other, methods))["methods"]
    for method in [*methods, "random"]:
        row = table.setdefault(method, {})
        row["deletion"] = deletion[method]["deletion"]["mean"]
        row["insertion"] = deletion[method]["insertion"]["mean"]
        row["morf"] = road[method]["morf"]["mean"]
        row["lerf"] = road[method]["lerf"]["mean"]
        if method == "random":
            continue
        row["energy"] = statistics.median(
            [r["median"] for r in energy[method].values() if r["count"]])
        row["faithfulness"] = faithful[method]["rank_correlation"]
        row["cascade"] = cascade[method]
        row["shuffled"] = None if shuffled is None else shuffled[method]
    return table


def permuted_classifier() -> Path:
    from vlx.models.registry import checkpoint_path

    return checkpoint_path("shapes_classifier_permuted")


def costs(methods: tuple[str, ...], repeats: int, classes: int) -> dict[str, float]:
    """Milliseconds to explain ``classes`` classes of the first bundled photo, one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        task = load_task("classify", "efficientnet_lite0")
        batch = task.prepare([Example(load_image(DEMO_IMAGES[0]))])
        targets = task.targets(batch, [[p.index for p in task.predict(batch, classes)[0]]])
        timed = {}
        for method in methods:
            task.explain(batch, targets, method)  # warm up
            runs = []
            for _ in range(1 if method in ("scorecam", "ablationcam", "occlusion") else repeats):
                start = time.perf_counter()
                task.explain(batch, targets, method)
                runs.append(time.perf_counter() - start)
            timed[method] = 1e3 * statistics.median(runs)
        return timed
    finally:
        torch.set_num_threads(threads)


def sanity_cell(row: dict | None) -> str:
    if row is None:
        return ""
    ranks = [step["abs-spearman"]["mean"] for step in row["steps"].values()]
    verdict = VERDICTS[row["passed"]]
    shown = f"{ranks[0]:.2f}" if len(ranks) == 1 else f"{ranks[0]:.2f} -> {ranks[-1]:.2f}"
    return f"{verdict} ({shown})"


def render(results: dict[str, dict], cost: dict[str, float], count: dict[str, int],
           classes: int) -> str:
    lines = [
        "# Leaderboard: which explanation to trust, measured on ground truth",
        "",
        ("Every method on the shipped ShapesWorld models' held-out test scenes "
        f"(scenes per metric: {', '.join(f'{k} {v}' for k, v in count.items())}). "
        "Pointing: the map's peak on the referent. Energy: median ratio of the mean map "
        "inside the referent to outside (1: uniform). Localization: the box around the map's "
        "largest segment at 15% of its max reaches IoU 0.5 (classifier: of its top class). "
        "Deletion (lower is better) / insertion (higher): areas under the target's "
        "probability as the most salient pixels go or come back. ROAD: mean probability "
        "with 10-90% of the pixels imputed, most relevant first (MoRF, lower is better) or "
        "least (LeRF, higher is better). Faithfulness: rank correlation with occlusion. "
        "Sanity: absolute rank correlation with the trained model's map after randomizing "
        "the output block, and after randomizing every block (pass: below 0.5 at every "
        "step; undefined: every map at some step constant); data: against the classifier "
        "trained on shuffled labels. Cost: ms for "
        f"{classes} classes of one photo, EfficientNet-Lite0, one thread."),
        "",
    ]
    for kind, table in results.items():
        lines += [f"## {TASKS[kind][1]}", ""]
        header = ["method", "pointing", "energy", "localization", "deletion / insertion",
                  "ROAD MoRF / LeRF", "faithfulness", "sanity: cascade"]
        if kind == "classify":
            header.append("sanity: data")
        header.append("cost (ms)")
        rows = []
        for method, row in table.items():
            cells = [method,
                     f"{row['pointing']:.1%}" if "pointing" in row else "",
                     f"{row['energy']:.2f}" if "energy" in row else "",
                     f"{row['localization']:.1%}" if "localization" in row else "",
                     f"{row['deletion']:.3f} / {row['insertion']:.3f}",
                     f"{row['morf']:.3f} / {row['lerf']:.3f}",
                     f"{row['faithfulness']:.3f}" if "faithfulness" in row else "",
                     sanity_cell(row.get("cascade"))]
            if kind == "classify":
                cells.append(sanity_cell(row.get("shuffled")))
            cells.append(f"{cost[method]:.0f}" if method in cost else "")
            rows.append(cells)
        lines += [markdown_table(header, rows)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    methods = FAST_METHODS if args.fast else METHODS
    count = ({k: 1 for k in COUNTS} if args.fast
             else {k: max(1, round(v * args.scale)) for k, v in COUNTS.items()})
    classes = 2 if args.fast else COST_TARGETS
    results = {kind: scores(load_task(kind, model), kind, methods, count)
               for kind, (model, _) in TASKS.items()}
    cost = costs(methods, 1 if args.fast else 3, classes)
    write_results(args.out, NAME, render(results, cost, count, classes))
    return {"results": results, "cost": cost, "count": count}


if __name__ == "__main__":
    main()
