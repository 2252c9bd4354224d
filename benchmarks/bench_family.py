"""The CAM family against pytorch-grad-cam: the same maps, and 20 targets at the cost of one.

For torchvision ResNet-18 (``layer4``) and VGG-11 (``features.19``, its last ReLU), random
weights, every method vlx shares with pytorch-grad-cam is checked first: vlx's map on the
layer's grid, scaled to [0, 1], against pytorch-grad-cam's at the same grid (its output size
set to the grid, so nothing is resized), for two targets. Where the definitions differ on
purpose, the difference is shown and then removed to prove it is the only one:

- Grad-CAM++: pytorch-grad-cam adds 1e-6 to the alpha denominator; with the logits scaled by
  1e3 (gradients 1e3 larger, 2 g^2 >> 1e-6) the two agree.
- Score-CAM: pytorch-grad-cam upsamples the masks with aligned corners; with its upsampler
  switched to half-pixel centres (vlx's) the two agree.
- Ablation-CAM: the weights are differences of two nearly equal scores, rounded in float32
  (pytorch-grad-cam rounds them to float32 even for a float64 model), so batches of different
  sizes differ in the last bits; the difference is shown for float32 and float64.
- Eigen-CAM: vlx projects the activation itself (the paper), pytorch-grad-cam centres the
  channels first and keeps the SVD's arbitrary sign; the correlation is shown, not equality.

Then the timing, for 20 targets of one image: each method in vlx (one call) against
pytorch-grad-cam's same method called once per target (its only mode), and each gradient-based
vlx method against vlx's Grad-CAM for the same targets. Both sides return (20, H, W) maps scaled
to [0, 1] at the input size. Medians of ``--repeats`` rounds, methods interleaved; Score-CAM
and Ablation-CAM run once per round at ``--copy-size`` px (K forwards per call).

Run:
    python benchmarks/bench_family.py --threads 1 --markdown
    python benchmarks/bench_family.py --fast        # small inputs, one round: a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from bench_engine import Goal, correlation, print_table, time_methods
from torch import nn

from vlx.explanation import normalize, upsample
from vlx.methods import explain

GRADIENT = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam")
COPIES = ("scorecam", "ablationcam")
PEER_CLASS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "hirescam": "HiResCAM",
              "xgradcam": "XGradCAM", "layercam": "LayerCAM", "eigencam": "EigenCAM",
              "scorecam": "ScoreCAM", "ablationcam": "AblationCAM"}
MODELS = {"resnet18": "layer4", "vgg11": "features.19"}


class Scaled(nn.Module):
    """The model with its logits multiplied by ``factor``."""

    def __init__(self, model: nn.Module, factor: float) -> None:
        super().__init__()
        self.model, self.factor = model, factor
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.factor


@contextlib.contextmanager
def half_pixel_upsampling() -> Iterator[None]:
    """pytorch-grad-cam's Score-CAM builds ``torch.nn.UpsamplingBilinear2d`` (aligned corners)
    at call time; inside this block it gets vlx's half-pixel bilinear resize instead."""
    original = torch.nn.UpsamplingBilinear2d

    def resize(size: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=False)

    torch.nn.UpsamplingBilinear2d = resize
    try:
        yield
    finally:
        torch.nn.UpsamplingBilinear2d = original


def vlx_maps(model: nn.Module, layer: str, x: torch.Tensor, method: str,
             classes: list[int], size: tuple[int, int] | None = None) -> torch.Tensor:
    """(T, h, w) vlx maps scaled to [0, 1], at the layer's grid or upsampled to ``size``."""
    inner = model.model if isinstance(model, Scaled) else model
    maps = explain(model, x, method=method, targets=[classes], layer=inner.get_submodule(layer),
                   batch_size=64).maps
    if size is not None:
        maps = upsample(maps, size)
    return normalize(maps)[0]


def peer_maps(pgc, model: nn.Module, layer: str, x: torch.Tensor, method: str,
              classes: list[int], grid: tuple[int, int] | None = None) -> torch.Tensor:
    """(T, H, W) pytorch-grad-cam maps, one call per target; at ``grid`` when given (its
    output size set to the layer's grid, so it resizes nothing)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    inner = model.model if isinstance(model, Scaled) else model
    maps = []
    for c in classes:
        with getattr(pgc, PEER_CLASS[method])(model=model,
                                              target_layers=[inner.get_submodule(layer)]) as cam:
            if grid is not None:
                cam.get_target_width_height = lambda _x, grid=grid: (grid[1], grid[0])
            if method in COPIES:
                cam.batch_size = 64
            maps.append(torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(c)]))[0])
        model.zero_grad(set_to_none=True)
    return torch.stack(maps)


def agreement(pgc, name: str, model: nn.Module, layer: str, x: torch.Tensor) -> list[list[str]]:
    """One row per (method, variant): max |diff| of the [0, 1] maps and their correlation."""
    classes, rows = [3, 7], []

    def row(method: str, variant: str, model: nn.Module, x: torch.Tensor,
            context: contextlib.AbstractContextManager | None = None) -> None:
        ours = vlx_maps(model, layer, x, method, classes)
        with context or contextlib.nullcontext():
            theirs = peer_maps(pgc, model, layer, x, method, classes, tuple(ours.shape[-2:]))
        diff = float((ours.double() - theirs.double()).abs().max())
        corrs = [correlation(ours[t], theirs[t]) for t in range(len(classes))]
        defined = [c for c in corrs if not math.isnan(c)]
        shown = f"{min(defined):.4f}" if defined else "-"
        if len(defined) < len(corrs):
            shown += " (a map is all zero)"
        rows.append([name, method, variant, f"{diff:.1e}", shown])

    for method in PEER_CLASS:
        row(method, "as is", model, x)
        if method == "gradcam++":
            row(method, "logits x 1e3", Scaled(model, 1e3), x)
        if method == "scorecam":
            row(method, "peer upsamples at half-pixel centres", model, x, half_pixel_upsampling())
        if method == "ablationcam":
            row(method, "float64 model", model.double(), x.double())
            model.float()
    return rows


def timing(pgc, model: nn.Module, layer: str, x: torch.Tensor, classes: list[int],
           methods: tuple[str, ...], repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds of vlx's one call and the peer's call per target, per method."""
    size = tuple(x.shape[-2:])
    calls: dict[str, Callable[[], object]] = {}
    for method in methods:
        calls[f"vlx {method}"] = lambda m=method: vlx_maps(model, layer, x, m, classes, size)
        if pgc is not None:
            calls[f"pgc {method}"] = lambda m=method: peer_maps(pgc, model, layer, x, m, classes)
    return time_methods(calls, repeats, warmup, torch.device("cpu"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224, help="input side, gradient methods")
    parser.add_argument("--copy-size", type=int, default=112,
                        help="input side for Score-CAM and Ablation-CAM timing (112)")
    parser.add_argument("--check-size", type=int, default=96, help="input side, agreement")
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--copy-models", default="resnet18",
                        help="models Score-CAM and Ablation-CAM are timed on (resnet18; VGG-11's "
                        "peer side takes about 20 minutes at 96 px)")
    parser.add_argument("--fast", action="store_true",
                        help="64 px everywhere, 4 targets, one round: a smoke run")
    parser.add_argument("--markdown", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.fast:
        args.size = args.copy_size = args.check_size = 64
        args.targets, args.repeats, args.warmup = 4, 1, 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        import pytorch_grad_cam as pgc
    except ImportError:
        print('pytorch-grad-cam is missing: pip install -e ".[bench]"', file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.targets} "
          f"targets; gradient methods at {args.size} px, Score-/Ablation-CAM at "
          f"{args.copy_size} px; agreement at {args.check_size} px")
    agree, times, goals = [], [], []
    for name in args.models.split(","):
        layer = MODELS[name]
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None).eval()
        generator = torch.Generator().manual_seed(1)
        check = torch.randn(1, 3, args.check_size, args.check_size, generator=generator)
        agree += agreement(pgc, name, model, layer, check)
        classes = torch.randperm(1000, generator=generator)[: args.targets].tolist()
        x = torch.randn(1, 3, args.size, args.size, generator=generator)
        small = torch.randn(1, 3, args.copy_size, args.copy_size, generator=generator)
        medians = timing(pgc, model, layer, x, classes, (*GRADIENT, "eigencam"), args.repeats,
                         args.warmup)
        timed = (*GRADIENT, "eigencam")
        if name in args.copy_models.split(","):
            medians |= timing(pgc, model, layer, small, classes, COPIES, 1, 0)
            timed = (*timed, *COPIES)
        for method in timed:
            ours, theirs = medians[f"vlx {method}"], medians[f"pgc {method}"]
            row = [name, method, f"{ours * 1e3:.1f}", f"{theirs * 1e3:.1f}", f"{theirs / ours:.1f}x"]
            row.append(f"{ours / medians['vlx gradcam']:.2f}x" if method in GRADIENT else "")
            times.append(row)
            floor = 10 if method == "scorecam" else 20 if method in GRADIENT else None
            if floor is not None and args.targets == 20:
                goals.append(Goal(f"{name} {method}: pgc x{args.targets} / vlx", theirs / ours,
                                  floor, True))
            if method in GRADIENT and method != "gradcam":
                goals.append(Goal(f"{name} {method} / vlx gradcam",
                                  ours / medians["vlx gradcam"], 1.3, False))
    print("\nagreement (maps scaled to [0, 1] on the layer's grid, 2 targets):")
    print_table(["model", "method", "variant", "max |diff|", "min correlation"], agree,
                args.markdown)
    print(f"\ntiming ({args.targets} targets of one image; median ms):")
    print_table(["model", "method", "vlx (one call)", f"pgc ({args.targets} calls)",
                 "pgc / vlx", "vlx / vlx gradcam"], times, args.markdown)
    print("\ngoals" + ("" if args.targets == 20 else " (set for 20 targets; not judged here)") + ":")
    print_table(["goal", "measured", "target", "result"],
                [[g.label, f"{g.value:.2f}x", f"{'>=' if g.at_least else '<='} {g.target:g}x",
                  g.verdict] for g in goals], args.markdown)
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
