"""The picture of a sanity check (the paper's Fig. 2): one row per method, the trained model's
map first, then the map at every randomization step, so a map that does not change is seen."""

from __future__ import annotations

from PIL import Image

from vlx.evaluate.measures import DataRandomization, ModelRandomization, Randomization
from vlx.evaluate.sanity import randomization_steps, randomized
from vlx.images import bounded
from vlx.render import explanation_picture, grid
from vlx.task import Example, Task

PANEL = 160


def randomization_figure(task: Task, example: Example, metric: Randomization,
                         layer: str | None = None) -> Image.Image:
    """One example's maps for the model's own top target, trained and randomized as
    ``metric`` randomizes (blocks from the output down, one block, or shuffled labels)."""
    batch = task.prepare([example])
    targets = task.targets(batch)
    shown = bounded(example.image, PANEL * 2)
    target = targets.rows[0][0].name
    panels, width = [], 0
    for method in metric.methods:
        columns = [("trained", task.explain(batch, targets, method, layer))]
        if isinstance(metric, ModelRandomization):
            for label, modules in randomization_steps(task.model, metric.mode):
                with randomized(task.model, modules, metric.seed):
                    columns.append((label, task.explain(batch, targets, method, layer)))
        elif isinstance(metric, DataRandomization):
            other = metric.other
            columns.append(("shuffled labels",
                            other.explain(other.prepare([example]), targets, method, layer)))
        panels.append((f"{method} / input", shown))
        panels += [(label, explanation_picture(e, 0, 0, shown)) for label, e in columns]
        width = len(columns) + 1
    if isinstance(metric, ModelRandomization):
        caption = (f"{metric.mode} randomization: maps of '{target}', the trained model's first, "
                   "then with the named blocks' weights random")
    else:
        caption = f"data randomization: maps of '{target}', true labels, then shuffled labels"
    return grid(panels, columns=width, panel_size=PANEL, caption=caption)
