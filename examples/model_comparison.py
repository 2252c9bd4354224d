"""Paper Sec. 5.2 without humans: Grad-CAM tells a stronger model from a weaker one where
accuracy cannot.

The paper showed people Grad-CAM explanations of VGG-16 and AlexNet on images where both
predicted the same class, and people trusted VGG-16 more. Here the two models are ShapesWorld
classifiers (one trained longer than the other); the evaluation set is exactly the test scenes
where both predict the same, correct class, so both are 100% accurate on it. The pointing
game (is the map's maximum, after bilinear upsampling, on the object?) of Grad-CAM for that
class measures how well each model's evidence sits on the object, with the image centre and a
uniform random point as baselines.

    python examples/model_comparison.py          # trains (or reuses) both classifiers
    python examples/model_comparison.py --fast
"""

from __future__ import annotations

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
from vlx.evaluate.pointing import PointingTally, pointing_hits
from vlx.models.shapes_classifier import ShapesClassification, predict
from vlx.render import grid, save_png

NAME = "model_comparison"
LARGE_OBJECTS = ShapesClassification(object_scale=2.0)
STRONGER = Recipe("classifier-large-objects", data=LARGE_OBJECTS)
WEAKER = Recipe("classifier-large-objects-short", data=LARGE_OBJECTS, steps=300)
FIGURE_SCENES = 4


def object_masks(scenes: list[Scene]) -> torch.Tensor:
    """(N, 1, H, W) bool: each scene's object."""
    return torch.stack([torch.from_numpy(s.objects[0].mask) for s in scenes])[:, None]


def main(argv: list[str] | None = None) -> dict:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    recipes = [STRONGER.fast(40), WEAKER.fast(10)] if args.fast else [STRONGER, WEAKER]
    models = [trained(recipe, args.work, args.device) for recipe in recipes]
    data = recipes[0].data
    scenes = data.scenes("test", 40 if args.fast else 1000)
    labels = torch.tensor([data.label(s) for s in scenes])
    predictions = [predict(m.model, scenes) for m in models]
    agreed = (predictions[0] == labels) & (predictions[1] == labels)
    chosen = [s for s, keep in zip(scenes, agreed) if keep]
    chosen_labels = labels[agreed]
    masks = object_masks(chosen)
    results, rows, hits = {}, [], []
    for model, predicted in zip(models, predictions):
        tally = PointingTally()
        maps = gradcam(model.model, chosen, chosen_labels)
        tally.add("object", maps[:, None], masks)
        hits.append(pointing_hits(maps[:, None], masks)[:, 0])
        summary = tally.summary().get("object", {"accuracy": float("nan"), "centre": float("nan"),
                                                 "random": float("nan"), "count": 0})
        accuracy = float((predicted == labels).float().mean())
        results[model.recipe.name] = {"accuracy": accuracy, "agreed_accuracy": 1.0,
                                      "pointing": summary["accuracy"], "agreed": len(chosen)}
        rows.append([f"`{model.recipe.name}`", str(model.recipe.widths), model.recipe.steps,
                     percent(accuracy), "100.0%", percent(summary["accuracy"])])
    rows.append(["baseline: image centre", "", "", "", "", percent(summary["centre"])])
    rows.append(["baseline: uniform random point", "", "", "", "", percent(summary["random"])])
    header = ["model", "encoder widths", "training steps", f"accuracy, all {len(scenes)} test",
              f"accuracy on the {len(chosen)} agreed", "Grad-CAM pointing on the agreed"]
    text = (
        "# Sec. 5.2 without humans: pointing separates models that accuracy cannot\n\n"
        f"{data.image_size}px one-object ShapesWorld test scenes (objects x{data.object_scale} "
        "ShapesWorld's default size); the agreed set holds the "
        f"{len(chosen)} scenes where both models predict the same, correct class. Pointing: "
        "the maximum of the upsampled Grad-CAM map of that class lies on the object. (The "
        "paper asked 54 people which of VGG-16 and AlexNet seemed more reliable from their "
        "Guided Grad-CAM explanations; here the ground-truth mask stands in for the people.)"
        "\n\n" + markdown_table(header, rows)
    )
    only = [int((hits[a] & ~hits[1 - a]).sum()) for a in (0, 1)]
    text += (
        f"\nOn the same scenes: only `{models[0].recipe.name}` points at the object in "
        f"{only[0]}, only `{models[1].recipe.name}` in {only[1]}.\n"
    )
    results["only_hits"] = dict(zip((m.recipe.name for m in models), only))
    write_results(args.out, NAME, text)
    shown = torch.nonzero(hits[0] & ~hits[1])[:, 0].tolist()
    shown = (shown + [i for i in range(len(chosen)) if i not in shown])[:FIGURE_SCENES]
    picture = figure(models, [chosen[i] for i in shown], chosen_labels[shown])
    save_png(picture, figure_path(args.out, NAME))
    return results


def figure(models: list[Trained], scenes: list[Scene], labels: torch.Tensor) -> Image.Image:
    """Per agreed scene: the image and each model's Grad-CAM for the shared class."""
    maps = [gradcam(m.model, scenes, labels) for m in models]
    panels = []
    for i, scene in enumerate(scenes):
        name = models[0].model.classes[int(labels[i])]
        panels.append((f"both say: {name}", panel(scene)))
        panels += [(f"{m.recipe.steps} steps", panel(scene, per_model[i]))
                   for m, per_model in zip(models, maps)]
    return grid(panels, columns=1 + len(models), panel_size=160,
                caption="Same correct prediction, different evidence: Grad-CAM per model")


if __name__ == "__main__":
    main()
