"""Paper Sec. 5.2 without humans: Grad-CAM tells a stronger model from a weaker one where
accuracy cannot.

The paper showed people Grad-CAM explanations of VGG-16 and AlexNet on images where both
predicted the same class, and people trusted VGG-16 more. Here the two models are ShapesWorld
classifiers, one trained longer than the other, compared on scenes whose objects are twice
ShapesWorld's default size and on default ones; the evaluation set is exactly the test scenes
where both predict the same, correct class, so both are 100% accurate on it. The pointing
game (is the map's maximum, after bilinear upsampling, on the object?) of Grad-CAM for that
class measures how well each model's evidence sits on the object, with the image centre and a
uniform random point as baselines.

    python examples/model_comparison.py          # trains (or reuses) both classifiers
    python examples/model_comparison.py --fast
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from _shapes_classifiers import (
    Recipe,
    Trained,
    figure_path,
    gradcam,
    markdown_table,
    panel,
    parser,
    percent,
    trained,
    write_results,
)
from PIL import Image

from vlx.data.shapes import Scene
from vlx.evaluate.pointing import (
    centre_hits,
    grown,
    pointing_hits,
    random_point_accuracy,
    zhang_tolerance,
)
from vlx.models.shapes_classifier import ShapesClassification, predict
from vlx.render import grid, save_png

NAME = "model_comparison"
LARGE_OBJECTS = ShapesClassification(object_scale=2.0)
PAIRS = {  # (stronger, weaker) per setting; the first setting's scenes make the figure
    "objects x2": (Recipe("classifier-large-objects", data=LARGE_OBJECTS),
                   Recipe("classifier-large-objects-short", data=LARGE_OBJECTS, steps=300)),
    "objects x1": (Recipe("classifier"), Recipe("classifier-short", steps=300)),
}
FIGURE_SCENES = 4


@dataclass
class Comparison:
    """Two models on the scenes where both predict the correct class."""

    models: list[Trained]
    scenes: list[Scene]
    labels: torch.Tensor
    hits: list[torch.Tensor]
    rows: list[list[object]]
    results: dict[str, dict]


def object_masks(scenes: list[Scene]) -> torch.Tensor:
    """(N, 1, H, W) bool: each scene's object."""
    return torch.stack([torch.from_numpy(s.objects[0].mask) for s in scenes])[:, None]


def compare(setting: str, models: list[Trained], count: int) -> Comparison:
    data = models[0].recipe.data
    scenes = data.scenes("test", count)
    labels = torch.tensor([data.label(s) for s in scenes])
    predictions = [predict(m.model, scenes) for m in models]
    agreed = (predictions[0] == labels) & (predictions[1] == labels)
    chosen = [s for s, keep in zip(scenes, agreed) if keep]
    masks = object_masks(chosen)
    near = grown(masks, zhang_tolerance(data.image_size))
    hits, rows, results = [], [], {}
    for model, predicted in zip(models, predictions):
        maps = gradcam(model.model, chosen, labels[agreed])[:, None]
        hits.append(pointing_hits(maps, masks)[:, 0])
        pointing = float(hits[-1].float().mean()) if chosen else float("nan")
        tolerant = float(pointing_hits(maps, near).float().mean()) if chosen else float("nan")
        accuracy = float((predicted == labels).float().mean())
        results[model.recipe.name] = {"accuracy": accuracy, "agreed_accuracy": 1.0,
                                      "pointing": pointing, "pointing_tolerant": tolerant,
                                      "agreed": len(chosen)}
        rows.append([setting, f"`{model.recipe.name}`", model.recipe.steps, percent(accuracy),
                     len(chosen), "100.0%", percent(pointing), percent(tolerant)])
    only = [int((hits[a] & ~hits[1 - a]).sum()) for a in (0, 1)]
    for row, alone in zip(rows, only):
        row.append(alone)
    results["only_hits"] = {m.recipe.name: alone for m, alone in zip(models, only)}
    baselines = [("image centre", centre_hits(masks), centre_hits(near)),
                 ("uniform random point", random_point_accuracy(masks),
                  random_point_accuracy(near))]
    rows += [[setting, f"baseline: {name}", "", "", "", "", percent(float(strict.float().mean())),
              percent(float(tolerant.float().mean())), ""]
             for name, strict, tolerant in baselines]
    return Comparison(models, chosen, labels[agreed], hits, rows, results)


def verdict(setting: str, comparison: Comparison) -> str:
    """Which model's maps point at the object more often, in words."""
    (a, b), results = comparison.models, comparison.results
    parts = []
    for key, what in (("pointing", "on the object"), ("pointing_tolerant", "with the tolerance")):
        gap = results[a.recipe.name][key] - results[b.recipe.name][key]
        better, worse = (a, b) if gap >= 0 else (b, a)
        parts.append(f"{what}, the {better.recipe.steps}-step model leads the "
                     f"{worse.recipe.steps}-step one by {100 * abs(gap):.1f} points")
    return f"- {setting}: " + "; ".join(parts) + " (accuracy on the agreed scenes: a tie)."


def main(argv: list[str] | None = None) -> dict:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    count = 40 if args.fast else 1000
    comparisons = {}
    for setting, (stronger, weaker) in PAIRS.items():
        recipes = [stronger.fast(40), weaker.fast(10)] if args.fast else [stronger, weaker]
        models = [trained(recipe, args.work, args.device) for recipe in recipes]
        comparisons[setting] = compare(setting, models, count)
    size = next(iter(comparisons.values())).models[0].recipe.data.image_size
    header = ["scenes", "model", "training steps", f"accuracy, all {count} test", "agreed scenes",
              "accuracy on the agreed", "Grad-CAM pointing on the agreed",
              f"pointing within {zhang_tolerance(size)} px", "agreed scenes only this model hits"]
    text = (
        "# Sec. 5.2 without humans: pointing separates models that accuracy cannot\n\n"
        f"{size}px one-object ShapesWorld test scenes, objects x2 and x1 ShapesWorld's default "
        "size; per setting a longer- and a shorter-trained classifier. The agreed "
        "scenes are those where both predict the same, correct class. Pointing: the maximum "
        "of the upsampled Grad-CAM map of that class lies on the object, or within "
        f"{zhang_tolerance(size)} px of it (Zhang et al.'s 15 px at 224 px, scaled). "
        "(The paper asked 54 "
        "people which of VGG-16 and AlexNet seemed more reliable from their Guided Grad-CAM "
        "explanations; here the ground-truth mask stands in for the people.)\n\n"
        + markdown_table(header, [row for c in comparisons.values() for row in c.rows])
        + "\n" + "\n".join(verdict(setting, c) for setting, c in comparisons.items()) + "\n"
    )
    write_results(args.out, NAME, text)
    setting, first = next(iter(comparisons.items()))
    shown = torch.nonzero(first.hits[0] & ~first.hits[1])[:, 0].tolist()
    shown = (shown + [i for i in range(len(first.scenes)) if i not in shown])[:FIGURE_SCENES]
    picture = figure(first.models, [first.scenes[i] for i in shown], first.labels[shown], setting)
    save_png(picture, figure_path(args.out, NAME))
    return {setting: c.results for setting, c in comparisons.items()}


def figure(
    models: list[Trained], scenes: list[Scene], labels: torch.Tensor, setting: str
) -> Image.Image:
    """Per agreed scene: the image and each model's Grad-CAM for the shared class."""
    maps = [gradcam(m.model, scenes, labels) for m in models]
    panels = []
    for i, scene in enumerate(scenes):
        name = models[0].model.classes[int(labels[i])]
        panels.append((f"both say: {name}", panel(scene)))
        panels += [(f"{m.recipe.steps} steps", panel(scene, per_model[i]))
                   for m, per_model in zip(models, maps)]
    return grid(panels, columns=1 + len(models), panel_size=160,
                caption=f"Same correct prediction, different evidence ({setting}): Grad-CAM "
                "per model")


if __name__ == "__main__":
    main()
