"""Paper Sec. 3.1: on a global-average-pooling model, Grad-CAM is CAM up to the constant 1/Z.

The classifier's score is ``y_c = sum_k w[c, k] (1/Z) sum_ij A_kij + b_c``, so Grad-CAM's
alpha for channel k is ``w[c, k] / Z`` and its map (before the ReLU) is ``CAM_c / Z``. This
script checks it numerically on a trained ShapesWorld classifier: for every test image and
every class, CAM computed from the linear layer's weights against Z times the Grad-CAM map
from vlx's engine (one forward, one batched backward), before and with the ReLU, in float32
and float64. It writes the table to ``OUT/results/gradcam_equals_cam.md`` and a figure of
CAM next to Grad-CAM to ``OUT/figures/gradcam_equals_cam.png``.

    python examples/gradcam_equals_cam.py            # trains (or reuses) the classifier
    python examples/gradcam_equals_cam.py --fast     # a tiny model, in seconds
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
    trained,
    write_results,
)
from PIL import Image

from vlx.cam import GradCAM
from vlx.data.shapes import Scene
from vlx.explanation import upsample
from vlx.models.shapes_classifier import LAYER, ShapesClassifier, predict, scene_images
from vlx.render import grid, save_png

NAME = "gradcam_equals_cam"
CLASSIFIER = Recipe("classifier")
FIGURE_SCENES = 4


def compare(model: ShapesClassifier, images: torch.Tensor, relu: bool) -> dict[str, float]:
    """Z * Grad-CAM against CAM for every class of every image (ReLU applied to both or
    neither): the largest absolute difference, the same relative to CAM's largest magnitude,
    the Pearson correlation over all values and the lowest correlation of a single map."""
    classes = list(range(len(model.classes)))
    with torch.no_grad():
        features = model.encoder(images)
    cam = model.class_activation_maps(features, torch.tensor([classes] * len(images)))
    with GradCAM(model, LAYER, relu=relu) as engine:
        explanation = engine(images, targets=[classes] * len(images))
    z = features.shape[-2] * features.shape[-1]
    grad_cam = explanation.maps * z
    if relu:
        cam = cam.clamp_min(0)
    difference = (grad_cam - cam).abs().max().item()
    flat_cam, flat_grad = cam.flatten(2).double(), grad_cam.flatten(2).double()
    per_map = [
        torch.corrcoef(torch.stack([a, b]))[0, 1].item()
        for a, b in zip(flat_cam.flatten(0, 1), flat_grad.flatten(0, 1))
        if a.std() > 0 and b.std() > 0
    ]
    weights = model.classifier.weight.detach()
    return {
        "maps": cam.shape[0] * cam.shape[1],
        "values": cam.numel(),
        "max_abs_difference": difference,
        "max_relative_difference": difference / cam.abs().max().item(),
        "correlation": torch.corrcoef(torch.stack([flat_cam.flatten(), flat_grad.flatten()]))[
            0, 1
        ].item(),
        "min_map_correlation": min(per_map),
        "max_alpha_difference": (explanation.alphas * z - weights).abs().max().item(),
    }


def main(argv: list[str] | None = None) -> dict:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    recipe = CLASSIFIER.fast() if args.fast else CLASSIFIER
    model = trained(recipe, args.work, args.device).model
    scenes = recipe.data.scenes("test", 16 if args.fast else 300)
    images = scene_images(scenes).to(args.device)
    rows, results = [], {}
    for dtype in (torch.float32, torch.float64):
        typed = model.to(dtype)
        for relu in (False, True):
            result = compare(typed, images.to(dtype), relu)
            key = f"{str(dtype).removeprefix('torch.')}_{'relu' if relu else 'no_relu'}"
            results[key] = result
            rows.append([
                str(dtype).removeprefix("torch."), "with ReLU" if relu else "before ReLU",
                result["maps"], result["values"], f"{result['max_abs_difference']:.2e}",
                f"{result['max_relative_difference']:.2e}", f"{1 - result['correlation']:.1e}",
                f"{1 - result['min_map_correlation']:.1e}", f"{result['max_alpha_difference']:.2e}",
            ])
    model.float()
    header = ["dtype", "ReLU", "maps", "values", "max abs diff", "max diff / max abs CAM",
              "1 - correlation", "1 - lowest per-map correlation", "max abs diff Z*alpha vs w"]
    text = (
        "# Grad-CAM equals CAM on a GAP model (paper Sec. 3.1)\n\n"
        f"ShapesWorld classifier `{recipe.name}` ({recipe.data.image_size}px scenes, encoder "
        f"widths {recipe.widths}, {recipe.steps} steps), layer `{LAYER}` "
        f"(Z = h*w positions); {len(scenes)} test scenes x {len(model.classes)} classes. "
        "CAM = sum_k w_k^c A_k from the linear layer's weights; Grad-CAM from vlx's engine, "
        "multiplied by Z.\n\n"
        + markdown_table(header, rows)
    )
    write_results(args.out, NAME, text)
    save_png(figure(model, scenes[:FIGURE_SCENES], args.device), figure_path(args.out, NAME))
    return results


def figure(model: ShapesClassifier, scenes: list[Scene], device: str) -> Image.Image:
    """Per scene: the image, CAM and Grad-CAM of the predicted class, each normalised."""
    predicted = predict(model, scenes)
    images = scene_images(scenes).to(device)
    with torch.no_grad():
        features = model.encoder(images)
    cams = model.class_activation_maps(features, predicted[:, None].to(device)).clamp_min(0)
    cams = upsample(cams, scenes[0].image.shape[:2]).cpu()
    grad_cams = gradcam(model, scenes, predicted)
    panels = []
    for scene, label, cam, grad_cam in zip(scenes, predicted, cams, grad_cams):
        name = model.classes[int(label)]
        panels += [(f"predicted: {name}", panel(scene)), (f"CAM ({name})", panel(scene, cam[0])),
                   (f"Grad-CAM ({name})", panel(scene, grad_cam))]
    return grid(panels, columns=3, panel_size=160,
                caption="CAM (w_k^c A_k) and Grad-CAM (vlx engine): the same map up to 1/Z")


if __name__ == "__main__":
    main()
