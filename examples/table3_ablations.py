"""Paper Table 3: Grad-CAM's ablations as weakly-supervised localization error on ShapesWorld.

Each test scene holds one object, drawn twice ShapesWorld's default size so that objects fill
much of the image, as ImageNet's do (``object_scale=2``). Its map for the top-1 predicted class is upsampled to the
image, binarised at 15% of its maximum, and the largest connected segment is boxed (paper
Sec. 4.1); the scene is localized when the class is right and the box reaches IoU >= 0.5 with
the object's box. Top-1 localization error is the share of scenes not localized (so it is at
least the classification error). Ablations (``vlx.cam.GradCAM`` options): max instead of mean
pooling of the gradients, no ReLU on the map, absolute gradients, and the guided or deconv
ReLU rule in the backward from the score to the layer.

On this global-average-pooling classifier the gradient reaching the last layer is the same at
every position and passes no ReLU, so at that layer max pooling and both ReLU rules change
nothing (Sec. 3.1); the table therefore also explains two inner layers (the outputs of the
first and second residual stages, strides 4 and 8), where gradients vary in space and pass
the later stages' ReLUs, as at VGG-16's conv5_3 under its fully connected layers.

    python examples/table3_ablations.py          # trains (or reuses) the classifier
    python examples/table3_ablations.py --fast
"""

from __future__ import annotations

import torch
from _shapes_classifiers import (
    Recipe,
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
from vlx.evaluate.localization import LocalizationTally, largest_segment_box
from vlx.models.shapes_classifier import LAYER, ShapesClassification, ShapesClassifier, predict
from vlx.render import grid, save_png
from vlx.training import progress

NAME = "table3_ablations"
CLASSIFIER = Recipe("classifier-large-objects", data=ShapesClassification(object_scale=2.0))
INNER_LAYERS = ("encoder.stages.1", "encoder.stages.0")
FIGURE_LAYER = INNER_LAYERS[0]
ABLATIONS = {
    "Grad-CAM": {},
    "Grad-CAM without ReLU": {"relu": False},
    "Grad-CAM with absolute gradients": {"absolute": True},
    "Grad-CAM with max-pooled gradients": {"pooling": "max"},
    "Grad-CAM with deconv ReLU backward": {"backward_rule": "deconv"},
    "Grad-CAM with guided ReLU backward": {"backward_rule": "guided"},
}
PAPER_TOP1_ERROR = {  # the paper's ablation table: ILSVRC-15 val, VGG-16 (not ours)
    "Grad-CAM": 59.65,
    "Grad-CAM without ReLU": 74.98,
    "Grad-CAM with absolute gradients": 58.19,
    "Grad-CAM with max-pooled gradients": 59.96,
    "Grad-CAM with deconv ReLU backward": 83.95,
    "Grad-CAM with guided ReLU backward": 59.14,
}
FIGURE_SCENES = 3


def true_box(scene: Scene) -> tuple[int, int, int, int]:
    """The object's box as the localization metric's inclusive ``(x0, y0, x1, y1)``
    (ShapesWorld's boxes end one pixel past the object)."""
    x0, y0, x1, y1 = scene.objects[0].box
    return x0, y0, x1 - 1, y1 - 1


def localization(
    model: ShapesClassifier, scenes: list[Scene], labels: torch.Tensor, predicted: torch.Tensor,
    layer: str, ablation: dict,
) -> dict[str, float]:
    """Top-1 localization and classification error of one ablation at one layer."""
    maps = gradcam(model, scenes, predicted, layer=layer, **ablation)
    tally = LocalizationTally(ks=(1,))
    for scene, label, guess, map in zip(scenes, labels, predicted, maps):
        tally.add([int(guess)], [map], {int(label): [true_box(scene)]})
    return tally.summary()


def main(argv: list[str] | None = None) -> dict:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    recipe = CLASSIFIER.fast() if args.fast else CLASSIFIER
    model = trained(recipe, args.work, args.device).model
    scenes = recipe.data.scenes("test", 24 if args.fast else 1000)
    labels = torch.tensor([recipe.data.label(s) for s in scenes])
    predicted = predict(model, scenes)
    layers = (LAYER, *INNER_LAYERS)
    results: dict[str, dict[str, dict[str, float]]] = {layer: {} for layer in layers}
    runs = [(layer, name) for layer in layers for name in ABLATIONS]
    for i in progress(0, len(runs), "ablations"):
        layer, name = runs[i]
        results[layer][name] = localization(
            model, scenes, labels, predicted, layer, ABLATIONS[name]
        )
    rows = [
        [name, f"{PAPER_TOP1_ERROR[name]:.2f}%",
         *(percent(results[layer][name]["top1_localization_error"]) for layer in layers)]
        for name in ABLATIONS
    ]
    classification = results[LAYER]["Grad-CAM"]["top1_classification_error"]
    rows.append(["(top-1 classification error)", "",
                 *(percent(classification) for _ in layers)])
    header = ["method", "paper: ILSVRC-15 val, VGG-16", f"ours: `{LAYER}` (last, 8x8)",
              *(f"ours: `{layer}` ({'8x8' if layer.endswith('1') else '16x16'})"
                for layer in INNER_LAYERS)]
    text = (
        "# Table 3: Grad-CAM ablations, top-1 localization error (lower is better)\n\n"
        f"Ours: ShapesWorld classifier `{recipe.name}` ({recipe.data.image_size}px one-object "
        f"scenes, objects x{recipe.data.object_scale} ShapesWorld's size, encoder widths {recipe.widths}, {recipe.steps} steps), {len(scenes)} test "
        "scenes; box of the largest segment of the map at 15% of its max, correct when the "
        "top-1 class is right and IoU >= 0.5 with the object's box. The paper's column is "
        "the paper's own measurement on ImageNet with VGG-16, not ours.\n\n"
        + markdown_table(header, rows)
    )
    write_results(args.out, NAME, text)
    save_png(figure(model, scenes[:FIGURE_SCENES], predicted), figure_path(args.out, NAME))
    return results


def figure(model: ShapesClassifier, scenes: list[Scene], predicted: torch.Tensor) -> Image.Image:
    """Per scene and ablation at ``FIGURE_LAYER``: the map, its box (yellow) and the
    object's box (white)."""
    panels = []
    for name, ablation in ABLATIONS.items():
        maps = gradcam(model, scenes, predicted[: len(scenes)], layer=FIGURE_LAYER, **ablation)
        for scene, map in zip(scenes, maps):
            boxes = [(*true_box(scene), "white")]
            box = largest_segment_box(map)
            if box is not None:
                boxes.append((*box, "yellow"))
            short = name.removeprefix("Grad-CAM").removeprefix(" with").strip() or "Grad-CAM"
            panels.append((short, panel(scene, map, tuple(boxes))))
    # one row per scene, one column per ablation
    columns = len(ABLATIONS)
    order = [panels[a * len(scenes) + s] for s in range(len(scenes)) for a in range(columns)]
    return grid(order, columns=columns, panel_size=160,
                caption=f"Grad-CAM ablations at {FIGURE_LAYER}: box of the largest segment at "
                "15% (yellow) and the object's box (white)")


if __name__ == "__main__":
    main()
