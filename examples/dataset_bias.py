"""Paper Sec. 6.3: Grad-CAM exposes a model that learned a dataset's bias.

The paper's biased doctor/nurse classifier looked at faces and hair (gender) instead of the
clothes; Grad-CAM showed it, and a rebalanced training set fixed it. Here the task is to name
the one shape in a ShapesWorld scene (circle, square, triangle, cross), every scene on a
textured background. In the biased training set the background gives the label away (every
circle on stripes, every square on dots, ...); in the unbiased one the texture is independent
of the shape. Both models are tested on unbiased scenes: accuracy, and the share of the
Grad-CAM map's energy (sum of the upsampled map, predicted class) that lies on the object
rather than on the background. A map spread evenly would put the object's area share there.

    python examples/dataset_bias.py              # trains (or reuses) both classifiers
    python examples/dataset_bias.py --fast
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

from vlx.data.shapes import TEXTURES, Scene
from vlx.models.shapes_classifier import ShapesClassification, predict
from vlx.render import grid, save_png

NAME = "dataset_bias"
CLASSES = ("circle", "square", "triangle", "cross")
UNBIASED_DATA = ShapesClassification(classes=CLASSES, textured_fraction=1.0)
BIASED_DATA = ShapesClassification(classes=CLASSES, textured_fraction=1.0, backgrounds=TEXTURES)
BIASED = Recipe("bias-biased", data=BIASED_DATA, steps=1000)
UNBIASED = Recipe("bias-unbiased", data=UNBIASED_DATA, steps=1000)
FIGURE_SCENES = 4


def object_energy_share(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N,) share of each (H, W) map's total on its object's mask; NaN for a map that is
    zero everywhere (it places no energy anywhere)."""
    total = maps.flatten(1).sum(dim=1)
    inside = (maps * masks).flatten(1).sum(dim=1)
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.nan)


def main(argv: list[str] | None = None) -> dict:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    recipes = [BIASED.fast(40), UNBIASED.fast(40)] if args.fast else [BIASED, UNBIASED]
    models = [trained(recipe, args.work, args.device) for recipe in recipes]
    count = 32 if args.fast else 1000
    test = recipes[1].data.scenes("test", count)
    biased_test = recipes[0].data.scenes("test", count)
    labels = torch.tensor([UNBIASED_DATA.label(s) for s in test])
    masks = torch.stack([torch.from_numpy(s.objects[0].mask) for s in test]).float()
    area = float(masks.flatten(1).mean(dim=1).mean())
    results, rows = {}, []
    for model in models:
        predicted = predict(model.model, test)
        shares = object_energy_share(gradcam(model.model, test, predicted), masks)
        valid = shares[~shares.isnan()]
        on_object = float(valid.mean()) if len(valid) else float("nan")
        biased_accuracy = float((predict(model.model, biased_test) == torch.tensor(
            [BIASED_DATA.label(s) for s in biased_test])).float().mean())
        results[model.recipe.name] = {
            "accuracy": float((predicted == labels).float().mean()),
            "accuracy_where_bias_holds": biased_accuracy,
            "object_energy": on_object,
            "background_energy": 1 - on_object,
            "empty_maps": int(shares.isnan().sum()),
        }
        r = results[model.recipe.name]
        rows.append([f"`{model.recipe.name}`", percent(r["accuracy"]),
                     percent(r["accuracy_where_bias_holds"]), percent(r["object_energy"]),
                     percent(r["background_energy"]), r["empty_maps"]])
    rows.append(["uniform map (object's area)", "", "", percent(area), percent(1 - area), ""])
    header = ["training set", "accuracy, unbiased test", "accuracy where the bias holds",
              "Grad-CAM energy on object", "on background", "all-zero maps"]
    pairs = ", ".join(f"{c} on {t}" for c, t in zip(CLASSES, TEXTURES))
    text = (
        "# Sec. 6.3: dataset bias, seen by Grad-CAM\n\n"
        f"Classes {', '.join(CLASSES)}; {recipes[0].data.image_size}px one-object ShapesWorld "
        f"scenes on textured backgrounds; {recipes[0].steps} training steps each. Biased "
        f"training set: {pairs}, always; unbiased: texture independent of the shape. Test: "
        f"{len(test)} unbiased scenes (and {len(biased_test)} where the bias holds). Energy: "
        "share of the upsampled Grad-CAM map (predicted class) on the object's pixels, mean "
        "over scenes.\n\n" + markdown_table(header, rows)
    )
    write_results(args.out, NAME, text)
    save_png(figure(models, test[:FIGURE_SCENES]), figure_path(args.out, NAME))
    return results


def figure(models: list[Trained], scenes: list[Scene]) -> Image.Image:
    """Per unbiased test scene: the image and each model's Grad-CAM for its prediction."""
    panels = [[(f"{s.objects[0].shape} on {s.background}", panel(s))] for s in scenes]
    for model in models:
        predicted = predict(model.model, scenes)
        maps = gradcam(model.model, scenes, predicted)
        for row, scene, guess, map in zip(panels, scenes, predicted, maps):
            label = f"{model.recipe.name}: {model.model.classes[int(guess)]}"
            row.append((label, panel(scene, map)))
    return grid([p for row in panels for p in row], columns=1 + len(models), panel_size=160,
                caption="Unbiased test scenes: the biased model's evidence vs the unbiased one's")


if __name__ == "__main__":
    main()
